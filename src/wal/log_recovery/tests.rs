//! Tests of segmented-log recovery: every row of the decision table on concrete
//! directories, random damage, and a crash-recover loop with torn writes.

use super::*;
use crate::paxos::{Ballot, GroupId, Record};
use crate::prng::Prng;
use crate::wal::group_commit::header_for;
use crate::wal::recovery::fixture::{promise, write_promises};
use crate::wal::segment_format::segment_file_name;
use crate::wal::{GroupCommit, GroupCommitConfig, SegmentPlacement, SECTOR_SIZE};
use std::collections::BTreeMap;

const SHARD: u32 = 3;
/// Header plus three blocks of records.
const SEGMENT_SIZE: u64 = 4 * BLOCK_SIZE as u64;

fn geometry() -> SegmentGeometry {
    SegmentGeometry::new(SEGMENT_SIZE)
}

fn config() -> LogConfig {
    LogConfig {
        shard: SHARD,
        geometry: geometry(),
        limits: DecodeLimits::default(),
    }
}

/// A directory: file name -> bytes.
type Dir = BTreeMap<String, Vec<u8>>;

fn images(dir: &Dir) -> Vec<SegmentImage<'_>> {
    dir.iter()
        .map(|(name, bytes)| SegmentImage { name, bytes })
        .collect()
}

fn name(index: u64) -> String {
    segment_file_name(SHARD, index)
}

/// Executes `plan` on `dir` as the store does: header first when it starts a
/// segment (creating the zero-filled file), then the batch.
fn execute(dir: &mut Dir, plan: &crate::wal::WritePlan, lsn_prev: Lsn) {
    let geometry = geometry();
    let (index, file_offset) = geometry.locate(plan.offset);
    let file = dir
        .entry(name(index))
        .or_insert_with(|| vec![0; SEGMENT_SIZE as usize]);
    if let Some(header) = header_for(plan, &geometry, SHARD, lsn_prev, 0) {
        file[..SEGMENT_HEADER_SIZE].copy_from_slice(&header.encode());
    }
    let at = file_offset as usize;
    file[at..at + plan.bytes.len()].copy_from_slice(&plan.bytes);
}

/// A log of `batches` batches of `per_batch` promises each (4 promises: 192 bytes,
/// one block per batch; 3 batches per segment).
fn log(batches: usize, per_batch: usize) -> Dir {
    let mut dir = Dir::new();
    let mut commit = GroupCommit::segmented(
        GroupCommitConfig {
            buffer_size_max: BLOCK_SIZE * 2,
            salt: 0,
            writes_in_flight_max: 1,
        },
        Resume::EMPTY,
        SegmentPlacement {
            payload_size: geometry().payload_size(),
            salt_seed: 42,
        },
    );
    write_promises(&mut commit, batches, per_batch, |plan, lsn_prev| {
        execute(&mut dir, plan, lsn_prev);
    });
    dir
}

/// Rewrites the header of segment `index` in `dir` with `log_start`.
/// A crash in the middle of the write at log `offset`: each sector of the file it
/// touched keeps its new contents or reverts to `before`'s (header and batch alike).
fn tear(dir: &mut Dir, before: &Dir, offset: u64, prng: &mut Prng) {
    let (index, _) = geometry().locate(offset);
    let key = name(index);
    let old = before
        .get(&key)
        .cloned()
        .unwrap_or_else(|| vec![0; SEGMENT_SIZE as usize]);
    let file = dir.get_mut(&key).expect("written");
    for (sector, chunk) in file.chunks_mut(SECTOR_SIZE).enumerate() {
        if prng.coin() {
            let at = sector * SECTOR_SIZE;
            chunk.copy_from_slice(&old[at..at + SECTOR_SIZE]);
        }
    }
}

fn set_log_start(dir: &mut Dir, index: u64, log_start: u64) {
    let file = dir.get_mut(&name(index)).expect("exists");
    let mut header = SegmentHeader::decode(file).expect("valid");
    header.log_start = log_start;
    file[..SEGMENT_HEADER_SIZE].copy_from_slice(&header.encode());
}

fn corrupt(recovered: &LogRecovery) -> Corruption {
    recovered.corruption().cloned().expect("a corruption")
}

/// Recovers `dir` after flipping a bit in the header of segment `index`; asserts the
/// recovery names that header as bad.
fn with_bad_header(mut dir: Dir, index: u64) -> LogRecovery {
    dir.get_mut(&name(index)).expect("exists")[20] ^= 1;
    let r = recover(&images(&dir), &config());
    assert!(
        matches!(corrupt(&r), Corruption::BadHeader { index: i, .. } if i == index),
        "{:?}",
        r.decision
    );
    r
}

// Goal: log offsets map to (segment, file offset) and back; batches never straddle
// a segment and the rest of a segment a batch skipped stays zero.
// Method: batches of 2 blocks into 3-block segments.
#[test]
fn batches_never_straddle() {
    let g = geometry();
    assert_eq!(g.payload_size(), 3 * 4096);
    assert_eq!(g.locate(0), (0, 4096));
    assert_eq!(g.locate(3 * 4096), (1, 4096));
    assert_eq!(g.log_offset(1, 8192), 4 * 4096);
    let mut commit = GroupCommit::segmented(
        GroupCommitConfig {
            buffer_size_max: 2 * BLOCK_SIZE,
            salt: 0,
            writes_in_flight_max: 1,
        },
        Resume::EMPTY,
        SegmentPlacement {
            payload_size: g.payload_size(),
            salt_seed: 1,
        },
    );
    let mut dir = Dir::new();
    let mut offsets = Vec::new();
    let mut round = 0;
    // Batches of up to 100 promises (4800 bytes: two blocks) close early at a
    // segment's end; then one record of 5000 bytes cannot fit the single block left
    // in segment 2 and moves to segment 3 (the block stays zero).
    for batch in 0..6 {
        if batch == 5 {
            let big = Record::Accept {
                group: GroupId(1),
                instance: crate::paxos::Instance(1),
                ballot: Ballot::ZERO,
                entry: crate::paxos::Entry {
                    origin: Ballot::ZERO,
                    body: crate::paxos::Body::Values(smallvec::smallvec![bytes::Bytes::from(
                        vec![1; 5000]
                    )]),
                },
            };
            commit.append(&big).expect("fits a segment");
        }
        for _ in 0..100 {
            round += 1;
            if commit.append(&promise(round)).is_err() {
                round -= 1;
                break;
            }
        }
        let plan = commit.take_write().expect("a batch");
        offsets.push((plan.offset, plan.bytes.len() / BLOCK_SIZE));
        execute(&mut dir, &plan, commit.durable_through());
        commit.on_durable(plan.lsn_through);
        commit.invariants();
    }
    assert_eq!(
        offsets,
        [
            (0, 2),
            (2 * 4096, 1),
            (3 * 4096, 2),
            (5 * 4096, 1),
            (6 * 4096, 2),
            (9 * 4096, 2)
        ]
    );
    assert_eq!(dir.len(), 4);
    let recovered = recover(&images(&dir), &config());
    assert_eq!(recovered.decision, LogDecision::Clean);
    assert_eq!(recovered.records.len() as u64, round + 1);
    assert_eq!(recovered.resume.offset, 11 * 4096);
    let salts: std::collections::BTreeSet<u32> = recovered
        .segments
        .iter()
        .map(|s| s.header.expect("valid").salt)
        .collect();
    assert_eq!(salts.len(), 4, "one salt per segment");
}

// Goal: every row of the segment decision table, on concrete directories.
// Method: build a 3-segment log (7 batches of one block: segments 0, 1 full, 2 with
// one batch), damage it per row, recover, compare decision, resume and discards.
#[expect(
    clippy::too_many_lines,
    reason = "a table: one damaged log per row of the decision table, in row order"
)]
#[test]
fn decision_table_rows() {
    let base = log(7, 4);
    assert_eq!(base.len(), 3);
    let all = recover(&images(&base), &config());
    assert_eq!(all.decision, LogDecision::Clean);
    assert_eq!(all.lsn_through, Lsn(28));
    assert_eq!(all.resume.offset, 7 * 4096);
    assert!(all.discard.is_empty() && all.ignored.is_empty());
    let p = geometry().payload_size();

    // S0: foreign and misnamed files are ignored.
    let mut dir = base.clone();
    dir.insert("wal-0000000003-12.seg".into(), vec![1; 10]);
    dir.insert(segment_file_name(SHARD + 1, 0), vec![1; 10]);
    dir.insert("identity".into(), vec![]);
    let r = recover(&images(&dir), &config());
    assert_eq!(
        (r.decision.clone(), r.lsn_through),
        (LogDecision::Clean, Lsn(28))
    );
    assert_eq!(r.ignored.len(), 3);

    // S1: nothing at all.
    let r = recover(&[], &config());
    assert_eq!(r.decision, LogDecision::Clean);
    assert_eq!(r.resume, Resume::EMPTY);

    // S2: blank spares after the last used segment are kept.
    let mut dir = base.clone();
    dir.insert(name(3), vec![0; SEGMENT_SIZE as usize]);
    dir.insert(name(5), vec![0; SEGMENT_SIZE as usize]);
    let r = recover(&images(&dir), &config());
    assert_eq!(r.decision, LogDecision::Clean);
    assert!(r.discard.is_empty());

    // S3: a missing middle segment, then a blank one.
    for blank in [false, true] {
        let mut dir = base.clone();
        if blank {
            dir.insert(name(1), vec![0; SEGMENT_SIZE as usize]);
        } else {
            dir.remove(&name(1));
        }
        let r = recover(&images(&dir), &config());
        assert_eq!(corrupt(&r), Corruption::MissingSegment { index: 1 });
        assert_eq!(r.lsn_through, Lsn(12));
        assert_eq!(r.resume.offset, p, "after segment 0");
        assert_eq!(r.discard, vec![name(2)]);
    }

    // S3 at the end is no corruption: the last segment missing is a shorter log.
    let mut dir = base.clone();
    dir.remove(&name(2));
    let r = recover(&images(&dir), &config());
    assert_eq!(
        (r.decision.clone(), r.lsn_through),
        (LogDecision::Clean, Lsn(24))
    );

    // S4: a damaged header in the middle; a header naming another index (misnamed).
    assert_eq!(with_bad_header(base.clone(), 1).lsn_through, Lsn(12));
    let mut dir = base.clone();
    let two = dir.remove(&name(2)).expect("exists");
    dir.insert(name(5), two);
    let r = recover(&images(&dir), &config());
    assert!(matches!(
        corrupt(&r),
        Corruption::MissingSegment { index: 2 }
    ));
    let mut dir = base.clone();
    let one = dir.remove(&name(1)).expect("exists");
    let two = dir.remove(&name(2)).expect("exists");
    dir.insert(name(1), two);
    dir.insert(name(2), one);
    let r = recover(&images(&dir), &config());
    let Corruption::BadHeader { index: 1, why } = corrupt(&r) else {
        panic!("{:?}", r.decision)
    };
    assert!(why.contains("index 2"), "{why}");

    // S3 at the start: segment 0 gone while every header says the log starts there.
    let mut dir = base.clone();
    dir.remove(&name(0));
    let r = recover(&images(&dir), &config());
    assert_eq!(corrupt(&r), Corruption::MissingSegment { index: 0 });
    assert_eq!((r.resume.offset, r.lsn_through), (0, Lsn(0)));
    assert_eq!(r.discard, vec![name(1), name(2)]);

    // S10: segment 2's header says the log starts at 1 (a truncation), so segment 0
    // is a leftover (valid or not) and is not read; without it the log is the same.
    let mut truncated = base.clone();
    set_log_start(&mut truncated, 2, 1);
    for leftover in [
        None,
        Some(vec![0; SEGMENT_SIZE as usize]),
        Some(vec![7; 100]),
    ] {
        let mut dir = truncated.clone();
        if let Some(bytes) = leftover {
            dir.insert(name(0), bytes);
        }
        let r = recover(&images(&dir), &config());
        assert_eq!((r.decision.clone(), r.log_start), (LogDecision::Clean, 1));
        assert_eq!(r.truncated, vec![name(0)]);
        assert_eq!(r.records.first().map(|r| r.lsn), Some(Lsn(13)));
        assert_eq!((r.lsn_through, r.resume.offset), (Lsn(28), 7 * 4096));
    }
    let mut dir = truncated.clone();
    dir.remove(&name(0));
    let r = recover(&images(&dir), &config());
    assert_eq!(
        (r.decision.clone(), r.truncated.len()),
        (LogDecision::Clean, 0)
    );
    // ... and then segment 1 missing is loss at the log's start (S3).
    let mut dir = truncated.clone();
    dir.remove(&name(1));
    let r = recover(&images(&dir), &config());
    assert_eq!(corrupt(&r), Corruption::MissingSegment { index: 1 });
    assert_eq!((r.resume.offset, r.lsn_through), (p, Lsn(0)));

    // S4: the log's first segment (index > 0 after a truncation) with a bad header.
    let mut dir = truncated.clone();
    dir.remove(&name(0));
    assert_eq!(with_bad_header(dir, 1).resume.offset, p);
    // S4: a header naming a log_start above its own index.
    let mut dir = base.clone();
    set_log_start(&mut dir, 1, 2);
    let r = recover(&images(&dir), &config());
    let Corruption::BadHeader { index: 1, why } = corrupt(&r) else {
        panic!("{:?}", r.decision)
    };
    assert!(why.contains("log_start 2"), "{why}");

    // S5: the last segment's header torn during initialisation (payload zero).
    let mut dir = log(6, 4);
    let mut torn = vec![0; SEGMENT_SIZE as usize];
    torn[..512].copy_from_slice(&[0x5a; 512]);
    dir.insert(name(2), torn);
    let r = recover(&images(&dir), &config());
    assert_eq!(
        r.decision,
        LogDecision::TornTail {
            index: 2,
            file_offset: 0
        }
    );
    assert_eq!((r.lsn_through, r.resume.offset), (Lsn(24), 2 * p));
    assert_eq!(
        r.discard,
        Vec::<String>::new(),
        "segment 2 is re-initialised"
    );
    // ... but with records behind it, it is corruption.
    assert_eq!(with_bad_header(base.clone(), 2).lsn_through, Lsn(24));

    // S6: an extra segment whose chain does not continue (a stale file).
    let mut dir = base.clone();
    let stale = SegmentHeader {
        shard: SHARD,
        salt: 5,
        segment_index: 3,
        lsn_prev: Lsn(100),
        segment_size: SEGMENT_SIZE,
        log_start: 0,
    };
    let mut file = stale.encode();
    file.resize(SEGMENT_SIZE as usize, 0);
    dir.insert(name(3), file);
    let r = recover(&images(&dir), &config());
    assert_eq!(
        corrupt(&r),
        Corruption::ChainBroken {
            index: 3,
            lsn_expected: Lsn(28),
            lsn_prev: Lsn(100)
        }
    );
    assert_eq!(r.lsn_through, Lsn(28));
    assert_eq!(r.discard, vec![name(3)]);

    // S7 / S6: a lost record in a segment that a later one follows.
    let mut dir = base.clone();
    dir.get_mut(&name(0)).expect("exists")[4096 + 4096 + 10] ^= 1;
    let r = recover(&images(&dir), &config());
    assert!(matches!(
        corrupt(&r),
        Corruption::Records {
            index: 0,
            lsn_expected: Lsn(5),
            ..
        }
    ));
    assert_eq!(r.lsn_through, Lsn(4));
    assert_eq!(r.discard, vec![name(1), name(2)]);
    // The last batch of a full segment: the record after the damaged one, in the
    // same sector, verifies, so the segment itself says damaged (S7d); with the
    // witness damaged too, the next header's chain says it (S6).
    let mut dir = base.clone();
    dir.get_mut(&name(0)).expect("exists")[3 * 4096 + 10] ^= 1;
    let r = recover(&images(&dir), &config());
    assert!(
        matches!(
            corrupt(&r),
            Corruption::Damaged {
                index: 0,
                lsn: Lsn(9),
                ..
            }
        ),
        "the last batch of a full segment lost: {:?}",
        r.decision
    );
    dir.get_mut(&name(0)).expect("exists")[3 * 4096 + 48 + 10] ^= 1;
    let r = recover(&images(&dir), &config());
    assert!(
        matches!(corrupt(&r), Corruption::ChainBroken { index: 1, .. }),
        "the last batch of a full segment lost: {:?}",
        r.decision
    );

    // S7': a torn remnant (a damaged Pad) in an earlier segment loses nothing.
    let mut dir = base.clone();
    dir.get_mut(&name(0)).expect("exists")[3 * 4096 + 4000] ^= 1;
    let r = recover(&images(&dir), &config());
    assert_eq!(
        (r.decision.clone(), r.lsn_through),
        (LogDecision::Clean, Lsn(28))
    );

    // S9: the last segment's torn tail. S8: a truncated last file.
    let mut dir = base.clone();
    dir.get_mut(&name(2)).expect("exists")[4096 + 4000] ^= 1;
    let r = recover(&images(&dir), &config());
    assert_eq!(
        r.decision,
        LogDecision::TornTail {
            index: 2,
            file_offset: 4096 + 192
        }
    );
    assert_eq!((r.lsn_through, r.resume.offset), (Lsn(28), 7 * 4096));
    let mut dir = base.clone();
    dir.get_mut(&name(2)).expect("exists").truncate(4096 + 100);
    let r = recover(&images(&dir), &config());
    assert_eq!(
        corrupt(&r),
        Corruption::Truncated {
            index: 2,
            file_size: 4096 + 100
        }
    );
    assert_eq!(r.lsn_through, Lsn(26));
    assert!(r.segments[2].short);
}

// Goal: arbitrary bytes in segment files never panic recovery.
// Method: random mutations of a valid directory (bytes, truncation, renames).
#[test]
fn random_damage_never_panics() {
    let base = log(7, 4);
    let mut prng = Prng::new(0x5e9);
    for _ in 0..300 {
        let mut dir = base.clone();
        for _ in 0..prng.range(1, 6) {
            let index = prng.below(4);
            let file = dir
                .entry(name(index))
                .or_insert_with(|| vec![0; SEGMENT_SIZE as usize]);
            match prng.below(3) {
                0 if !file.is_empty() => {
                    let at = prng.index(file.len());
                    file[at] ^= 1 << prng.below(8);
                }
                1 => file.truncate(prng.index(SEGMENT_SIZE as usize)),
                _ => {
                    let at = prng.index(SEGMENT_SIZE as usize / SECTOR_SIZE) * SECTOR_SIZE;
                    if at + SECTOR_SIZE <= file.len() {
                        file[at..at + SECTOR_SIZE].fill(0);
                    }
                }
            }
        }
        let r = recover(&images(&dir), &config());
        assert!(r.lsn_through <= Lsn(28));
    }
}

// Goal: end to end on segments, acknowledged records survive crashes that tear the
// write in flight (header writes included), and appends continue after recovery.
// Method: group commit into 3-block segments; crash with a random subset of the
// in-flight write's sectors kept; recover, scrub, discard, resume; repeat.
#[test]
fn crash_recover_loop() {
    for seed in 0..30 {
        let mut prng = Prng::new(seed);
        let mut dir = Dir::new();
        let mut acknowledged: u64 = 0;
        let mut round = 0;
        for restart in 0..8 {
            let recovered = recover(&images(&dir), &config());
            assert!(
                recovered.corruption().is_none(),
                "seed {seed} restart {restart}: {:?}",
                recovered.decision
            );
            assert!(
                recovered.lsn_through.0 >= acknowledged,
                "seed {seed}: acknowledged {acknowledged} lost ({:?})",
                recovered.decision
            );
            for (i, r) in recovered.records.iter().enumerate() {
                assert_eq!(r.lsn.0, i as u64 + 1);
            }
            // Scrub and discard, then resume.
            let scrub = recovered.scrub.clone();
            if !scrub.is_empty() {
                let (index, at) = geometry().locate(scrub.start);
                let file = dir.get_mut(&name(index)).expect("scrubbed segment exists");
                file[at as usize..(at + scrub.end - scrub.start) as usize].fill(0);
            }
            for gone in &recovered.discard {
                dir.remove(gone);
            }
            acknowledged = recovered.lsn_through.0;
            let mut commit = recovered.group_commit(geometry(), 2 * BLOCK_SIZE, prng.next_u64());
            for _ in 0..prng.range(1, 12) {
                for _ in 0..prng.range(1, 90) {
                    round += 1;
                    if commit.append(&promise(round)).is_err() {
                        break;
                    }
                }
                let Some(plan) = commit.take_write() else {
                    continue;
                };
                let before = dir.clone();
                execute(&mut dir, &plan, commit.durable_through());
                if prng.below(4) == 0 {
                    tear(&mut dir, &before, plan.offset, &mut prng);
                    break;
                }
                commit.on_durable(plan.lsn_through);
                acknowledged = plan.lsn_through.0;
                commit.invariants();
            }
        }
    }
}

mod head;
