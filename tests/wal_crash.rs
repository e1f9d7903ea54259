//! Crash tests of the WAL on real files: a child process (`synod wal crash-child`)
//! appends under load with real fdatasync and reports every durable LSN; the parent
//! SIGKILLs it at random points and checks the log on reopen. Then damage cases on real
//! files (truncated file, zeroed block, flipped bits mid-log and at the tail, missing
//! segment), each giving the decision `schema/wal.md` documents, never a panic.
//!
//! `SYNOD_WAL_KILLS=200 cargo test --release --test wal_crash` is the long mode (CI: 10).
//! `SYNOD_SEED=…` replays one sequence of kill delays.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use synod::paxos::{Ballot, Body, Entry, GroupId, Instance, Lsn, NodeId, Record};
use synod::prng::Prng;
use synod::runtime::clock::entropy_seed;
use synod::wal::dma_disk::run_local;
use synod::wal::segment::{segment_file_name, Corruption, LogDecision, SegmentGeometry};
use synod::wal::store::{recover_dir, Store, StoreConfig};
use synod::wal::{replay, DecodeLimits, BLOCK_SIZE};

const SEGMENT_SIZE: u64 = 512 << 10;

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_synod")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("synod-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        shard: 0,
        geometry: SegmentGeometry::new(SEGMENT_SIZE),
        limits: DecodeLimits::default(),
        spare_count_min: 1,
    }
}

/// What one child run reported: the LSN it started after, and its last durable LSN.
struct Run {
    start: Option<u64>,
    durable: Option<u64>,
}

/// When to SIGKILL the child.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// Let `--batches` end it.
    Never,
    /// This long after spawning (may land in startup: recovery, scrub, spares).
    AfterSpawn(Duration),
    /// This long after it reported `start` (lands among appends and rolls).
    AfterStart(Duration),
}

/// Runs the child on `dir` and kills it per `kill`.
fn run_child(dir: &Path, incarnation: u64, kill: Kill, batches: Option<u64>) -> Run {
    run_child_seeded(dir, incarnation, kill, batches, None)
}

fn run_child_seeded(
    dir: &Path,
    incarnation: u64,
    kill: Kill,
    batches: Option<u64>,
    seed: Option<u64>,
) -> Run {
    let mut command = Command::new(binary());
    command
        .args(["wal", "crash-child"])
        .arg(dir)
        .args(["--incarnation", &incarnation.to_string()])
        .args(["--segment-size", &SEGMENT_SIZE.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(batches) = batches {
        command.args(["--batches", &batches.to_string()]);
    }
    if let Some(seed) = seed {
        command.args(["--seed", &seed.to_string()]);
    }
    let mut child = command.spawn().expect("spawn synod wal crash-child");
    let stdout = child.stdout.take().expect("piped");
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut run = Run {
            start: None,
            durable: None,
        };
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("child output");
            let (word, number) = line.split_once(' ').expect("`word number`");
            match word {
                "start" => {
                    run.start = Some(number.parse().expect("LSN"));
                    let _ = started_tx.send(());
                }
                "durable" => run.durable = Some(number.parse().expect("LSN")),
                other => panic!("child says {other}: {line}"),
            }
        }
        run
    });
    let delay = match kill {
        Kill::Never => None,
        Kill::AfterSpawn(delay) => Some(delay),
        Kill::AfterStart(delay) => {
            // A child that dies before starting (it must not) shows in the result.
            let _ = started_rx.recv_timeout(Duration::from_secs(30));
            Some(delay)
        }
    };
    if let Some(delay) = delay {
        std::thread::sleep(delay);
        // `Child::kill` is SIGKILL on Unix: no destructor, no flush, no close.
        let _ = child.kill();
    }
    let status = child.wait().expect("wait");
    if delay.is_none() {
        assert!(status.success(), "child failed: {status}");
    }
    reader.join().expect("reader thread")
}

/// Checks the log in `dir` against what the children reported: not corrupt, every
/// reported-durable LSN present, each record written by the run that last wrote its
/// LSN (so nothing from a torn tail resurfaced), contiguous from 1.
fn check_log(dir: &Path, starts: &[(u64, u64)], durable_max: u64) -> Lsn {
    let recovery = recover_dir(&config(dir)).expect("read the log");
    assert!(
        recovery.corruption().is_none(),
        "a crash is not corruption: {:?}",
        recovery.decision
    );
    assert!(
        recovery.lsn_through.0 >= durable_max,
        "LSN {durable_max} was reported durable, recovered through {} ({:?})",
        recovery.lsn_through.0,
        recovery.decision
    );
    for (i, r) in recovery.records.iter().enumerate() {
        let lsn = r.lsn.0;
        assert_eq!(lsn, i as u64 + 1, "LSNs contiguous from 1");
        // The run that wrote `lsn` last: the latest that started below it.
        let incarnation = starts
            .iter()
            .filter(|(start, _)| *start < lsn)
            .map(|(_, incarnation)| *incarnation)
            .max()
            .expect("some run wrote it");
        let Record::Accept {
            instance, entry, ..
        } = &r.record
        else {
            panic!("LSN {lsn}: not an Accept: {:?}", r.record)
        };
        assert_eq!(instance.0, lsn);
        let Body::Values(values) = &entry.body else {
            panic!("LSN {lsn}: no values")
        };
        assert!(
            values.len() == 1
                && values[0][..] == synod::wal::store::crash_value(lsn, incarnation)[..],
            "LSN {lsn}: not the value run {incarnation} wrote (a stale record resurfaced?)"
        );
    }
    recovery.lsn_through
}

// Goal: every LSN reported durable survives SIGKILL at random points, nothing from a
// torn tail resurfaces, and appends continue after each restart.
// Method: SYNOD_WAL_KILLS (10) runs of the child on one directory, each killed after a
// random delay; after each, recover and check against everything reported so far.
#[test]
fn sigkill_under_load() {
    let kills: u64 = std::env::var("SYNOD_WAL_KILLS")
        .ok()
        .map_or(10, |v| v.parse().expect("SYNOD_WAL_KILLS is a number"));
    let seed: u64 = std::env::var("SYNOD_SEED")
        .ok()
        .map_or_else(entropy_seed, |v| v.parse().expect("SYNOD_SEED is a number"));
    eprintln!("sigkill_under_load: {kills} kills, SYNOD_SEED={seed}");
    let mut prng = Prng::new(seed);
    let dir = temp_dir("wal-crash");
    let mut starts: Vec<(u64, u64)> = Vec::new();
    let mut durable_max = 0;
    let mut progressed = 0;
    for incarnation in 0..kills {
        // Mostly among appends (rolls included), one in five during startup.
        let kill = if prng.below(5) == 0 {
            Kill::AfterSpawn(Duration::from_millis(prng.range(1, 40)))
        } else {
            Kill::AfterStart(Duration::from_micros(prng.range(0, 150_000)))
        };
        let run = run_child(&dir, incarnation, kill, None);
        if let Some(start) = run.start {
            assert!(
                start >= durable_max,
                "run {incarnation} started after LSN {start}, below durable {durable_max}"
            );
            starts.push((start, incarnation));
            if run.durable.is_some_and(|d| d > start) {
                progressed += 1;
            }
        }
        durable_max = durable_max.max(run.durable.unwrap_or(0));
        check_log(&dir, &starts, durable_max);
    }
    // Appends continue: a last run to completion.
    let run = run_child(&dir, kills, Kill::Never, Some(20));
    starts.push((run.start.expect("started"), kills));
    let last = run.durable.expect("appended");
    assert!(last > run.start.expect("started"));
    assert_eq!(check_log(&dir, &starts, last), Lsn(last));
    assert!(progressed > 0, "no killed run made progress");
    let verify = Command::new(binary())
        .args(["wal", "verify"])
        .arg(&dir)
        .output()
        .expect("synod wal verify");
    assert!(verify.status.success(), "{verify:?}");
    eprintln!("{kills} kills, {progressed} runs appended before their kill, {last} LSNs");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// A clean log of `batches` batches, written by the child (3+ segments).
/// A log of `batches` batches whose sizes come from a fixed seed (`SYNOD_DAMAGE_SEED`,
/// default 1), so each damage case hits the same layout on every run.
fn clean_log(name: &str, batches: u64) -> (PathBuf, u64) {
    let dir = temp_dir(name);
    let seed = std::env::var("SYNOD_DAMAGE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let run = run_child_seeded(&dir, 0, Kill::Never, Some(batches), Some(seed));
    (dir, run.durable.expect("appended"))
}

fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(segment_file_name(0, index))
}

fn verify_exit(dir: &Path) -> (i32, String) {
    let out = Command::new(binary())
        .args(["wal", "verify"])
        .arg(dir)
        .output()
        .expect("synod wal verify");
    (
        out.status.code().expect("exited"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// After the decision: prepare (discard, scrub), append 5 batches, recover again; the
/// log must be clean and continue after the kept prefix.
fn appends_continue(dir: &Path) {
    let config = config(dir);
    let recovery = recover_dir(&config).expect("read");
    let kept = recovery.lsn_through;
    let appended = run_local({
        let config = config.clone();
        async move {
            let mut store = Store::prepare(config.clone(), &recovery)
                .await
                .expect("prepare");
            let mut commit = recovery.group_commit(config.geometry, 64 << 10, entropy_seed());
            for round in 0..5 {
                commit
                    .append(&Record::Promise {
                        group: synod::paxos::GroupId(1),
                        ballot: synod::paxos::Ballot {
                            round,
                            node: synod::paxos::NodeId(2),
                        },
                    })
                    .expect("fits");
                let plan = commit.take_write().expect("a batch");
                store.write(&plan).await.expect("write");
                commit.on_durable(plan.lsn_through);
            }
            store.close().await.expect("close");
            commit.durable_through()
        }
    })
    .expect("executor");
    assert_eq!(appended.0, kept.0 + 5);
    let again = recover_dir(&config).expect("read");
    assert_eq!(again.decision, LogDecision::Clean, "after damage {again:?}");
    assert_eq!(again.lsn_through, appended);
}

fn damage(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).expect("read segment");
    edit(&mut bytes);
    std::fs::write(path, &bytes).expect("write segment");
}

/// The last used segment's index.
fn last_used(dir: &Path) -> u64 {
    let recovery = recover_dir(&config(dir)).expect("read");
    recovery
        .segments
        .iter()
        .filter(|s| s.header.is_some())
        .map(|s| s.index)
        .max()
        .expect("segments")
}

// Goal: damage to real segment files gives the documented decision (schema/wal.md:
// S3, S8, record rows 2/4/5), `synod wal verify` exits accordingly, nothing panics, and
// the log takes appends afterwards.
// Method: one clean multi-segment log per case, damaged with plain file writes.
#[test]
fn damage_cases() {
    // Flipped bit mid-log (inside the first batch of segment 0): corruption.
    let (dir, _) = clean_log("wal-flip-mid", 200);
    assert!(last_used(&dir) >= 2, "the log spans several segments");
    damage(&segment_path(&dir, 0), |b| b[BLOCK_SIZE + 100] ^= 0x10);
    let r = recover_dir(&config(&dir)).expect("read");
    assert!(
        matches!(r.corruption(), Some(Corruption::Records { index: 0, .. })),
        "{:?}",
        r.decision
    );
    let (code, out) = verify_exit(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("segment 0 offset 4096"), "{out}");
    appends_continue(&dir);
    std::fs::remove_dir_all(&dir).expect("cleanup");

    // Zeroed block mid-log (block 2 of segment 1): corruption.
    let (dir, _) = clean_log("wal-zero-mid", 200);
    damage(&segment_path(&dir, 1), |b| {
        b[2 * BLOCK_SIZE..3 * BLOCK_SIZE].fill(0);
    });
    let r = recover_dir(&config(&dir)).expect("read");
    assert!(r.corruption().is_some(), "{:?}", r.decision);
    assert_eq!(verify_exit(&dir).0, 1);
    appends_continue(&dir);
    std::fs::remove_dir_all(&dir).expect("cleanup");

    // Flipped bit at the tail (in the last batch): the batch is dropped. Reported as a
    // torn tail (row 2) when the damaged record starts inside a block, as a clean end
    // (row 1) when it starts on a block boundary: nothing after it belongs to the log.
    let (dir, durable) = clean_log("wal-flip-tail", 200);
    let last = last_used(&dir);
    let tail = recover_dir(&config(&dir)).expect("read");
    let last_record = tail.records.last().expect("records");
    let (index, offset) = config(&dir).geometry.locate(last_record.offset);
    assert_eq!(index, last);
    damage(&segment_path(&dir, last), |b| b[offset as usize + 60] ^= 1);
    let r = recover_dir(&config(&dir)).expect("read");
    let on_boundary = offset % BLOCK_SIZE as u64 == 0;
    assert!(
        if on_boundary {
            r.decision == LogDecision::Clean
        } else {
            matches!(r.decision, LogDecision::TornTail { .. })
        },
        "{:?} after flipping log offset {} + 60 (block boundary: {on_boundary})",
        r.decision,
        last_record.offset
    );
    assert_eq!(r.lsn_through.0 + 1, last_record.lsn.0);
    assert!(r.lsn_through.0 < durable);
    let (code, out) = verify_exit(&dir);
    assert_eq!(code, 0, "{out}");
    let report = if on_boundary {
        "clean end"
    } else {
        "torn tail"
    };
    assert!(out.contains(report), "{out}");
    appends_continue(&dir);
    std::fs::remove_dir_all(&dir).expect("cleanup");

    // Truncated file (the last used segment cut in half): S8, corruption, prefix kept.
    let (dir, _) = clean_log("wal-truncate", 200);
    let last = last_used(&dir);
    damage(&segment_path(&dir, last), |b| {
        b.truncate(SEGMENT_SIZE as usize / 2 + 100)
    });
    let r = recover_dir(&config(&dir)).expect("read");
    assert!(
        matches!(r.corruption(), Some(Corruption::Truncated { index, .. }) if *index == last),
        "{:?}",
        r.decision
    );
    assert_eq!(verify_exit(&dir).0, 1);
    appends_continue(&dir);
    std::fs::remove_dir_all(&dir).expect("cleanup");

    // Missing segment (segment 1 of 3+ deleted): S3, corruption, later segments dropped.
    let (dir, _) = clean_log("wal-missing", 200);
    std::fs::remove_file(segment_path(&dir, 1)).expect("delete segment 1");
    let r = recover_dir(&config(&dir)).expect("read");
    assert_eq!(
        r.corruption(),
        Some(&Corruption::MissingSegment { index: 1 })
    );
    assert!(!r.discard.is_empty());
    let (code, out) = verify_exit(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("segment 1 is missing"), "{out}");
    appends_continue(&dir);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

// ---------------------------------------------------------------------------------------
// Record contents: damage inside a Chosen record, out-of-bounds records, order rules.

/// Writes `batches` (one write and fdatasync each) through the real store, after what
/// `dir` already holds; returns the LSN of the last record.
fn write_batches(dir: &Path, batches: Vec<Vec<Record>>) -> Lsn {
    let config = config(dir);
    let recovery = recover_dir(&config).expect("read");
    run_local({
        let config = config.clone();
        async move {
            let mut store = Store::prepare(config.clone(), &recovery)
                .await
                .expect("prepare");
            let mut commit = recovery.group_commit(config.geometry, 64 << 10, entropy_seed());
            for batch in batches {
                for record in &batch {
                    commit.append(record).expect("fits");
                }
                let plan = commit.take_write().expect("a batch");
                store.write(&plan).await.expect("write");
                commit.on_durable(plan.lsn_through);
            }
            store.close().await.expect("close");
            commit.durable_through()
        }
    })
    .expect("executor")
}

fn ballot(round: u64) -> Ballot {
    Ballot {
        round,
        node: NodeId(3),
    }
}

fn promise(group: u32, round: u64) -> Record {
    Record::Promise {
        group: GroupId(group),
        ballot: ballot(round),
    }
}

/// An Accept of 176 bytes (48 header + 16 entry head + 8 framing + 104 value bytes).
fn accept(group: u32, instance: u64, round: u64) -> Record {
    Record::Accept {
        group: GroupId(group),
        instance: Instance(instance),
        ballot: ballot(round),
        entry: Entry {
            origin: ballot(round),
            body: Body::Values(smallvec::smallvec![Bytes::from(vec![0x5a; 104])]),
        },
    }
}

fn chosen(group: u32, through: u64) -> Record {
    Record::Chosen {
        group: GroupId(group),
        through: Instance(through),
    }
}

/// A follower's steady state: each step persists its accept, then the watermark the
/// leader piggybacked (`Group::on_chosen_advanced` pushes Chosen last), so each batch is
/// [Accept (176 bytes), Chosen (48 bytes)] and a Pad fills the block from offset 224.
fn follower_log(name: &str, batches: u64) -> PathBuf {
    let dir = temp_dir(name);
    let log = (1..=batches)
        .map(|i| vec![accept(1, i, 2), chosen(1, i)])
        .collect();
    write_batches(&dir, log);
    dir
}

/// File offset of the `n`th (from 0) Chosen record of segment 0.
fn chosen_offset(dir: &Path, n: usize) -> (u64, Lsn) {
    let recovery = recover_dir(&config(dir)).expect("read");
    let r = recovery
        .records
        .iter()
        .filter(|r| matches!(r.record, Record::Chosen { .. }))
        .nth(n)
        .expect("a chosen record");
    let (index, offset) = config(dir).geometry.locate(r.offset);
    assert_eq!(index, 0);
    (offset, r.lsn)
}

// Goal: find out what one flipped byte "inside a chosen record" does. A Chosen record is
// a 48-byte header with no payload: a byte inside it is caught by the checksum and, in a
// durable batch that a later one follows, is corruption (learner); the byte right after
// it, where a reader of `synod wal dump` would look for a payload, is the batch's Pad,
// whose loss loses no record (LSNs continue): the "skipped 3872 damaged bytes" report,
// and voting is then correct. In the last batch the damaged record used to be cut as a
// torn tail while the replica voted; the Pad after it in the same sector now proves the
// damage (learner), while a real torn write (a lost sector) still ends the log cleanly.
// After new appends a verify reports the cut as a gap naming the remnant.
// Method: a follower-shaped log through the real store; flip every byte of one mid-log
// Chosen record (each on a fresh copy), then bytes of the Pad after it, then lose the
// last batch's sector, then flip a byte of its Chosen and restart with an append;
// recover and verify each.
#[test]
fn damage_inside_and_after_a_chosen_record() {
    let pristine_dir = follower_log("wal-chosen-pristine", 6);
    let pristine = recover_dir(&config(&pristine_dir)).expect("read");
    assert_eq!(pristine.decision, LogDecision::Clean);
    assert_eq!(pristine.records.len(), 12);
    let segment = std::fs::read(segment_path(&pristine_dir, 0)).expect("read segment");
    // The second batch's Chosen record: LSN 4, file offset 4096 + 4096 + 176.
    let (offset, lsn) = chosen_offset(&pristine_dir, 1);
    assert_eq!((offset, lsn), (2 * BLOCK_SIZE as u64 + 176, Lsn(4)));
    let offset = offset as usize;
    let dir = temp_dir("wal-chosen-damaged");
    let path = segment_path(&dir, 0);
    for byte in 0..48 {
        std::fs::copy(segment_path(&pristine_dir, 0), &path).expect("copy");
        damage(&path, |b| b[offset + byte] ^= 0x20);
        let r = recover_dir(&config(&dir)).expect("read");
        // Inside the record: LSN 4 is missing and batch 3 follows; the replica becomes
        // a learner (the driver's rule: `corruption().is_some()`).
        assert_eq!(
            r.corruption(),
            Some(&Corruption::Records {
                index: 0,
                lsn_expected: Lsn(4),
                lsn_found: Lsn(5),
                file_offset: offset as u64,
            }),
            "byte {byte}"
        );
        assert_eq!(r.lsn_through, Lsn(3));
        assert!(r.gaps.is_empty());
    }
    let (code, out) = verify_exit(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("CORRUPT") && out.contains("LSN 4 missing") && out.contains("learners"),
        "{out}"
    );

    // Just after it: the Pad [offset + 48, next block). Nothing is lost.
    for byte in [48, 48 + 20, 48 + 200, BLOCK_SIZE - 176 - 1] {
        std::fs::write(&path, &segment).expect("restore");
        damage(&path, |b| b[offset + byte] ^= 0x20);
        let r = recover_dir(&config(&dir)).expect("read");
        assert_eq!(r.decision, LogDecision::Clean, "byte {byte}");
        assert_eq!(r.records, pristine.records, "every record recovered");
        let pad_start = BLOCK_SIZE as u64 + 224; // log offsets
        assert_eq!(r.gaps, vec![pad_start..2 * BLOCK_SIZE as u64]);
        let (code, out) = verify_exit(&dir);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("skipped 3872 damaged bytes")
                && out.contains("between LSN 4 and LSN 5")
                && out.contains("a damaged Pad: no record was there")
                && out.contains("ok: clean end"),
            "{out}"
        );
    }

    // The last batch lost to a torn write keeps or loses whole sectors: its one sector
    // lost, the log ends cleanly before it and the replica keeps voting (nothing of that
    // write was acknowledged).
    std::fs::write(&path, &segment).expect("restore");
    let (last, lsn) = chosen_offset(&pristine_dir, 5);
    assert_eq!(lsn, Lsn(12));
    let sector = last as usize / 512 * 512;
    damage(&path, |b| b[sector..sector + 512].fill(0));
    let r = recover_dir(&config(&dir)).expect("read");
    assert_eq!(r.decision, LogDecision::Clean);
    assert_eq!(r.lsn_through, Lsn(10));

    // A flipped byte inside the last batch's Chosen: before the same-sector witness rule
    // this was cut as a torn tail and the replica voted (a durable record dropped without
    // learner status). The Pad after it starts in the same sector and verifies, so that
    // sector was written whole and the record was damaged afterwards: learner.
    std::fs::write(&path, &segment).expect("restore");
    damage(&path, |b| b[last as usize + 30] ^= 0x20);
    let r = recover_dir(&config(&dir)).expect("read");
    assert_eq!(
        r.corruption(),
        Some(&Corruption::Damaged {
            index: 0,
            lsn: Lsn(12),
            file_offset: last,
            next_file_offset: last + 48,
        })
    );
    assert_eq!(r.lsn_through, Lsn(11));
    let (code, out) = verify_exit(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("LSN 12 damaged after it was written") && out.contains("learners"),
        "{out}"
    );
    // After the restart (learner marker first) the node appends from the next block with
    // LSN 12 again, and a later verify sees the cut record as a gap the LSNs continue
    // across: "no record lost" of the log as it is, naming what the recovery dropped.
    write_batches(&dir, vec![vec![chosen(1, 6)]]);
    let r = recover_dir(&config(&dir)).expect("read");
    assert_eq!(r.decision, LogDecision::Clean);
    assert_eq!(r.lsn_through, Lsn(12));
    let (code, out) = verify_exit(&dir);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("skipped 3920 damaged bytes")
            && out.contains("between LSN 11 and LSN 12")
            && out.contains(
                "header reads Chosen group 1 instance 6 LSN 12; that recovery dropped it"
            ),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
    std::fs::remove_dir_all(&pristine_dir).expect("cleanup");
}

// Goal: a WAL holding a promise at round u64::MAX (a forged Prepare persisted before
// rounds were bounded) recovers without panic as corruption (row 6): the records before
// it are kept, the replica becomes a learner, `synod wal verify` names the record and the
// rule and exits 1; after the scrub, appends continue and the next recovery is clean.
// Method: real store; the poisoned promise as the last record (as the node left it when
// it panicked), then with a batch after it; recover, verify, append, recover.
#[test]
fn promise_beyond_round_max() {
    for poisoned_last in [true, false] {
        let dir = temp_dir(&format!("wal-poisoned-{poisoned_last}"));
        let mut batches = vec![
            vec![promise(1, 2), accept(1, 1, 2)],
            vec![accept(1, 2, 2), chosen(1, 2), promise(1, u64::MAX)],
        ];
        if !poisoned_last {
            batches.push(vec![accept(1, 3, 2)]);
        }
        write_batches(&dir, batches);
        let r = recover_dir(&config(&dir)).expect("read");
        let Some(Corruption::Invalid {
            index: 0,
            lsn,
            file_offset,
            violation,
        }) = r.corruption()
        else {
            panic!("poisoned last {poisoned_last}: {:?}", r.decision);
        };
        assert_eq!(*lsn, Lsn(5));
        assert_eq!(*file_offset, 2 * BLOCK_SIZE as u64 + 224);
        assert_eq!(violation.rule(), "round-bound");
        assert_eq!(r.lsn_through, Lsn(4));
        let groups = replay(&r.records);
        assert_eq!(groups[&GroupId(1)].promised, ballot(2));
        assert_eq!(groups[&GroupId(1)].chosen_through, Instance(2));
        let (code, out) = verify_exit(&dir);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("LSN 5 verifies but is invalid")
                && out.contains("rule round-bound")
                && out.contains("promise  group 1 ballot 18446744073709551615.3")
                && out.contains("learners"),
            "{out}"
        );

        // The node's start: learner marker (not modelled here), then prepare scrubs,
        // then appends. The invalid record is then superseded: a gap, nothing lost.
        let appended = write_batches(&dir, vec![vec![promise(1, 3)], vec![accept(1, 3, 3)]]);
        assert_eq!(appended, Lsn(6));
        let again = recover_dir(&config(&dir)).expect("read");
        assert_eq!(again.decision, LogDecision::Clean, "{again:?}");
        assert_eq!(again.lsn_through, Lsn(6));
        assert_eq!(again.gaps.len(), 1, "the invalid record is skipped");
        assert_eq!(replay(&again.records)[&GroupId(1)].promised, ballot(3));
        let (code, out) = verify_exit(&dir);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("header reads Promise group 1 instance 0 LSN 5"),
            "{out}"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}

// Goal: `synod wal verify` checks what records say, not only their framing: each order
// rule and group ownership is reported with its rule, LSN, place, group and instance, and
// the exit code is 1; recovery itself keeps such records (they are within bounds).
// Method: a log with a decreasing promise, an accept below the promise, two different
// chosen values for one instance and a group another shard owns (synod.id: 4 shards).
#[test]
fn verify_reports_content_violations() {
    let dir = temp_dir("wal-content");
    let foreign = (0..100u32)
        .find(|g| synod::runtime::shard_of(GroupId(*g), 4) != 0)
        .expect("a group of another shard");
    let own = (0..100u32)
        .find(|g| synod::runtime::shard_of(GroupId(*g), 4) == 0)
        .expect("a group of shard 0");
    let learn = |body: Body| Record::Learn {
        group: GroupId(own),
        instance: Instance(7),
        entry: Entry {
            origin: ballot(1),
            body,
        },
    };
    write_batches(
        &dir,
        vec![
            vec![promise(own, 5), promise(own, 4)],
            vec![accept(own, 1, 3)],
            vec![learn(Body::Noop), learn(Body::StartWorking)],
            vec![promise(foreign, 1)],
        ],
    );
    let r = recover_dir(&config(&dir)).expect("read");
    assert_eq!(r.decision, LogDecision::Clean);
    assert_eq!(r.lsn_through, Lsn(6));

    let (code, out) = verify_exit(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("group ownership not checked"), "{out}");
    for expected in [
        format!("lsn 2 seg 0 off 4144 group {own} instance -: promise 4.3 below"),
        "(rule promise-monotonic)".to_string(),
        format!("lsn 3 seg 0 off 8192 group {own} instance 1: accept at ballot 3.3 below"),
        "(rule accept-above-promise)".to_string(),
        format!("group {own} instance 7: a second, different chosen value"),
        "(rule one-chosen-value)".to_string(),
        "INVALID: 3 content violations (clean end)".to_string(),
    ] {
        assert!(out.contains(&expected), "{expected:?} in {out}");
    }
    std::fs::write(dir.join("synod.id"), "cluster 1\nnode 1\nshards 4\n").expect("synod.id");
    let (code, out) = verify_exit(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "lsn 6 seg 0 off 16384 group {foreign} instance -: group {foreign} belongs to shard"
        )) && out.contains("(rule group-owner)")
            && out.contains("INVALID: 4 content violations"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
