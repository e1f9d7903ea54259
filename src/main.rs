//! The `synod` binary. Today: `synod sim`, the deterministic simulator over many seeds,
//! and the WAL tools `synod wal verify|dump|bench`. (`serve` and `bench` arrive with the
//! runtime.)

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::ExitCode;
use std::task::Poll;

use bytes::Bytes;
use synod::paxos::{Ballot, Body, Entry, GroupId, Instance, Lsn, NodeId, Record};
use synod::runtime::clock::{entropy_seed, MonotonicClock};
use synod::sim::swarm::run_many;
use synod::wal::dma_disk::{run_local, DmaDisk};
use synod::wal::segment::{
    parse_segment_file_name, LogDecision, LogRecovery, SegmentGeometry, SegmentHeader,
};
use synod::wal::store::{read_dir_files, recover_dir, recycle_all, Store, StoreConfig};
use synod::wal::{
    replay, DecodeLimits, GroupCommit, GroupCommitConfig, SegmentPlacement, BLOCK_SIZE,
};

const USAGE: &str = "usage:
  synod sim [--seeds N] [--base SEED] [--threads T]   run N seeds from SEED (default: 300 from a random base)
  synod sim --seed SEED                               replay one seed
  synod wal verify <dir> [--shard N]                  check every record; exit 1 on mid-log corruption
  synod wal dump <dir> [--shard N]                    print every record and a per-group summary
  synod wal bench [--dir DIR] [--seconds S]           raw disk limits and the WAL, with their ratios";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sim") => sim(&args[1..]),
        Some("wal") => wal(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn flag(args: &[String], name: &str) -> Result<Option<u64>, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => {
            let value = args
                .get(i + 1)
                .ok_or_else(|| format!("{name} needs a value"))?;
            value
                .parse()
                .map(Some)
                .map_err(|_| format!("{name} {value}: not a non-negative integer"))
        }
    }
}

fn sim(args: &[String]) -> ExitCode {
    let known = ["--seeds", "--base", "--threads", "--seed"];
    for (i, arg) in args.iter().enumerate() {
        let is_value = i > 0 && known.contains(&args[i - 1].as_str());
        if !is_value && !known.contains(&arg.as_str()) {
            eprintln!("synod sim: unknown argument {arg}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let parsed = (|| -> Result<_, String> {
        Ok((
            flag(args, "--seed")?,
            flag(args, "--seeds")?.unwrap_or(300),
            flag(args, "--base")?,
            flag(args, "--threads")?,
        ))
    })();
    let (one, count, base, threads) = match parsed {
        Ok(values) => values,
        Err(why) => {
            eprintln!("synod sim: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(seed) = one {
        return match synod::sim::cluster::run_seed(seed) {
            Ok(report) => {
                println!("seed {seed}: ok ({report:?})");
                ExitCode::SUCCESS
            }
            Err(failure) => {
                eprintln!("{failure}");
                ExitCode::FAILURE
            }
        };
    }
    let base = base.unwrap_or_else(synod::runtime::clock::entropy_seed);
    let threads = threads.map_or_else(
        || std::thread::available_parallelism().map_or(2, |n| n.get()),
        |t| t as usize,
    );
    let seeds: Vec<u64> = (base..base + count).collect();
    println!("synod sim: {count} seeds from {base} on {threads} threads");
    let step = (count as usize / 20).max(1);
    let summary = run_many(&seeds, threads, &|done, failures| {
        if done % step == 0 || done == count as usize {
            println!("  {done}/{count} seeds, {failures} failures");
        }
    });
    for failure in &summary.failures {
        eprintln!("{failure}");
    }
    println!(
        "{} seeds, {} failures (seeds {base}..{}) in {:.1}s",
        summary.seeds,
        summary.failures.len(),
        base + count,
        summary.elapsed_s
    );
    println!("{}", summary.totals());
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

// ---------------------------------------------------------------------------------------
// synod wal

/// Default segment size of the tools when no header says otherwise.
const SEGMENT_SIZE_DEFAULT: u64 = 64 << 20;

fn wal(args: &[String]) -> ExitCode {
    let result = match args.first().map(String::as_str) {
        Some("verify") => wal_inspect(&args[1..], false),
        Some("dump") => wal_inspect(&args[1..], true),
        Some("bench") => wal_bench(&args[1..]),
        // Hidden: the appender that tests/wal_crash.rs kills.
        Some("crash-child") => wal_crash_child(&args[1..]),
        _ => Err(format!("unknown wal subcommand\n{USAGE}")),
    };
    match result {
        Ok(code) => code,
        Err(why) => {
            eprintln!("synod wal: {why}");
            ExitCode::from(2)
        }
    }
}

/// The positional directory and the flags of a wal subcommand.
fn dir_and_flags(args: &[String], known: &[&str]) -> Result<(PathBuf, Vec<String>), String> {
    let mut dir = None;
    let mut i = 0;
    while i < args.len() {
        if known.contains(&args[i].as_str()) {
            i += 2;
        } else if args[i].starts_with("--") {
            return Err(format!("unknown argument {}\n{USAGE}", args[i]));
        } else if dir.replace(PathBuf::from(&args[i])).is_some() {
            return Err(format!("one directory expected\n{USAGE}"));
        } else {
            i += 1;
        }
    }
    let dir = dir.ok_or_else(|| format!("a directory is needed\n{USAGE}"))?;
    Ok((dir, args.to_vec()))
}

/// The shards with segment files in `dir`, and the segment size their headers name.
fn shards_in(dir: &Path) -> Result<Vec<(u32, u64)>, String> {
    let files = read_dir_files(dir).map_err(|e| e.to_string())?;
    let mut shards: BTreeMap<u32, Option<u64>> = BTreeMap::new();
    for (name, bytes) in &files {
        if let Some((shard, _)) = parse_segment_file_name(name) {
            let size = shards.entry(shard).or_default();
            if size.is_none() {
                *size = SegmentHeader::decode(bytes)
                    .ok()
                    .map(|h| h.segment_size)
                    .filter(|s| *s % BLOCK_SIZE as u64 == 0 && *s >= 2 * BLOCK_SIZE as u64);
            }
        }
    }
    Ok(shards
        .into_iter()
        .map(|(shard, size)| (shard, size.unwrap_or(SEGMENT_SIZE_DEFAULT)))
        .collect())
}

fn store_config(dir: &Path, shard: u32, segment_size: u64) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        shard,
        geometry: SegmentGeometry::new(segment_size),
        limits: DecodeLimits::default(),
        spare_count_min: 1,
    }
}

fn describe(record: &Record) -> String {
    let entry = |entry: &Entry| {
        let body = match &entry.body {
            Body::Values(values) => format!(
                "values {} ({} bytes)",
                values.len(),
                values.iter().map(Bytes::len).sum::<usize>()
            ),
            Body::Noop => "noop".to_string(),
            Body::StartWorking => "start-working".to_string(),
            Body::Config(membership) => format!("config {:?}", membership.voters()),
        };
        format!("origin {} {body}", entry.origin)
    };
    match record {
        Record::Promise { group, ballot } => format!("promise  group {} ballot {ballot}", group.0),
        Record::Accept {
            group,
            instance,
            ballot,
            entry: e,
        } => format!(
            "accept   group {} instance {} ballot {ballot} {}",
            group.0,
            instance.0,
            entry(e)
        ),
        Record::Chosen { group, through } => {
            format!("chosen   group {} through {}", group.0, through.0)
        }
        Record::Learn {
            group,
            instance,
            entry: e,
        } => format!(
            "learn    group {} instance {} {}",
            group.0,
            instance.0,
            entry(e)
        ),
    }
}

/// `synod wal verify` (dump = false) and `synod wal dump` (dump = true).
fn wal_inspect(args: &[String], dump: bool) -> Result<ExitCode, String> {
    let (dir, args) = dir_and_flags(args, &["--shard"])?;
    let only = flag(&args, "--shard")?;
    let shards = shards_in(&dir)?;
    if shards.is_empty() {
        println!("{}: no segment files", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut corrupt = false;
    for (shard, segment_size) in shards {
        if only.is_some_and(|s| s != u64::from(shard)) {
            continue;
        }
        let config = store_config(&dir, shard, segment_size);
        let recovery = recover_dir(&config).map_err(|e| e.to_string())?;
        let geometry = config.geometry;
        if dump {
            for r in &recovery.records {
                let (index, offset) = geometry.locate(r.offset);
                println!(
                    "seg {index} off {offset:>10} lsn {:>10} {}",
                    r.lsn.0,
                    describe(&r.record)
                );
            }
        }
        corrupt |= report(&dir, shard, segment_size, &recovery, dump);
    }
    Ok(if corrupt {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints the verdict on one shard's log; returns whether it is corrupt.
fn report(dir: &Path, shard: u32, segment_size: u64, recovery: &LogRecovery, dump: bool) -> bool {
    let used = recovery
        .segments
        .iter()
        .filter(|s| s.header.is_some())
        .count();
    let first = recovery.records.first().map_or(0, |r| r.lsn.0);
    println!(
        "shard {shard}: {} segment files ({used} initialised, {segment_size} bytes each), {} records, LSN {first}..={}",
        recovery.segments.len(),
        recovery.records.len(),
        recovery.lsn_through.0
    );
    for name in &recovery.ignored {
        println!("  ignored (not a segment of shard {shard}): {name}");
    }
    let geometry = SegmentGeometry::new(segment_size);
    for gap in &recovery.gaps {
        let (index, offset) = geometry.locate(gap.start);
        println!(
            "  skipped {} damaged bytes at segment {index} offset {offset} (no record lost: LSNs continue)",
            gap.end - gap.start
        );
    }
    if dump {
        let groups = replay(&recovery.records);
        let mut kinds: BTreeMap<GroupId, [u64; 4]> = BTreeMap::new();
        for r in &recovery.records {
            let slot = match r.record {
                Record::Promise { .. } => 0,
                Record::Accept { .. } => 1,
                Record::Chosen { .. } => 2,
                Record::Learn { .. } => 3,
            };
            kinds.entry(r.record.group()).or_default()[slot] += 1;
        }
        println!("  group     promises   accepts    chosen    learns  promised   accepted instances      chosen_through");
        for (group, g) in &groups {
            let k = kinds[group];
            let range = match (g.accepted.keys().next(), g.accepted.keys().last()) {
                (Some(a), Some(b)) => format!("{}..={}", a.0, b.0),
                _ => "-".to_string(),
            };
            println!(
                "  {:<8} {:>9} {:>9} {:>9} {:>9}  {:<9} {:<22} {}",
                group.0,
                k[0],
                k[1],
                k[2],
                k[3],
                g.promised.to_string(),
                range,
                g.chosen_through.0
            );
        }
    }
    match &recovery.decision {
        LogDecision::Clean => {
            println!("  ok: clean end");
            false
        }
        LogDecision::TornTail { index, file_offset } => {
            println!(
                "  ok: torn tail at segment {index} offset {file_offset} (the last write was cut short; nothing acknowledged lost)"
            );
            false
        }
        LogDecision::Corrupt(corruption) => {
            let name = synod::wal::segment::segment_file_name(shard, corruption_index(corruption));
            println!(
                "  CORRUPT: first bad record: {corruption} ({})",
                dir.join(name).display()
            );
            true
        }
    }
}

fn corruption_index(corruption: &synod::wal::segment::Corruption) -> u64 {
    use synod::wal::segment::Corruption;
    match corruption {
        Corruption::Records { index, .. }
        | Corruption::MissingSegment { index }
        | Corruption::BadHeader { index, .. }
        | Corruption::Truncated { index, .. }
        | Corruption::ChainBroken { index, .. } => *index,
        _ => unreachable!("a new corruption kind needs a position"),
    }
}

/// The value `synod wal crash-child` writes at `lsn` in run `incarnation`: its first 16
/// bytes say both, the rest is a pattern of them, so a stale record is recognisable.
pub fn crash_value(lsn: u64, incarnation: u64) -> Vec<u8> {
    let size = 16 + (lsn.wrapping_mul(2_654_435_761) % 6000) as usize;
    let mut value = Vec::with_capacity(size);
    value.extend_from_slice(&lsn.to_le_bytes());
    value.extend_from_slice(&incarnation.to_le_bytes());
    let seed = lsn ^ (incarnation << 40);
    value.extend((16..size).map(|i| (seed.wrapping_add(i as u64 * 131) % 251) as u8));
    value
}

fn crash_record(lsn: u64, incarnation: u64) -> Record {
    let ballot = Ballot {
        round: incarnation + 1,
        node: NodeId(1),
    };
    Record::Accept {
        group: GroupId((lsn % 64) as u32),
        instance: Instance(lsn),
        ballot,
        entry: Entry {
            origin: ballot,
            body: Body::Values(vec![Bytes::from(crash_value(lsn, incarnation))]),
        },
    }
}

/// Hidden: recovers `<dir>`, prints `start <lsn_through>`, then appends records
/// (`crash_record`, instance = LSN) in `--batches` batches (default: until killed),
/// printing `durable <lsn>` after each fdatasync. Exits 3 on recovery corruption.
fn wal_crash_child(args: &[String]) -> Result<ExitCode, String> {
    let (dir, args) = dir_and_flags(args, &["--incarnation", "--segment-size", "--batches"])?;
    let incarnation = flag(&args, "--incarnation")?.unwrap_or(0);
    let segment_size = flag(&args, "--segment-size")?.unwrap_or(1 << 20);
    let batches = flag(&args, "--batches")?.unwrap_or(u64::MAX);
    let config = store_config(&dir, 0, segment_size);
    let buffer_size_max = (config.geometry.payload_size() as usize).min(256 << 10);
    let result = run_local(async move {
        let recovery = recover_dir(&config).map_err(|e| e.to_string())?;
        if recovery.corruption().is_some() {
            println!("corrupt {:?}", recovery.decision);
            return Ok(ExitCode::from(3));
        }
        let mut store = Store::prepare(config.clone(), &recovery)
            .await
            .map_err(|e| e.to_string())?;
        let mut commit = GroupCommit::segmented(
            GroupCommitConfig {
                buffer_size_max,
                salt: recovery.resume_salt,
            },
            recovery.resume,
            SegmentPlacement {
                payload_size: config.geometry.payload_size(),
                salt_seed: entropy_seed() ^ u64::from(std::process::id()),
            },
        );
        println!("start {}", recovery.lsn_through.0);
        let mut prng = synod::prng::Prng::new(entropy_seed() ^ incarnation);
        for _ in 0..batches {
            let count = prng.range(1, 40);
            for _ in 0..count {
                let lsn = commit.assigned_through().0 + 1;
                if commit.append(&crash_record(lsn, incarnation)).is_err() {
                    break;
                }
            }
            let plan = commit.take_write().expect("records were appended");
            store.write(&plan).await.map_err(|e| e.to_string())?;
            commit.on_durable(plan.lsn_through);
            commit.recycle(plan.bytes);
            // One line per durable batch, flushed before the next write starts.
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "durable {}", commit.durable_through().0).map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
        }
        store.close().await.map_err(|e| e.to_string())?;
        Ok(ExitCode::SUCCESS)
    })
    .map_err(|e| e.to_string())?;
    result
}

/// Polls `write` once (submitting its I/O), runs `meanwhile`, then completes `write`:
/// the next batch is encoded while this one is on its way to the disk.
async fn overlap<T>(write: impl Future<Output = T>, meanwhile: impl FnOnce()) -> T {
    let mut write = pin!(write);
    let first = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
    meanwhile();
    match first {
        Poll::Ready(done) => done,
        Poll::Pending => write.await,
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at] as f64
}

/// What `synod wal bench` measured, in one run.
#[derive(Debug, Default)]
struct BenchFigures {
    raw_mb_s: f64,
    raw_sync_rate: f64,
    raw_sync_p50_us: f64,
    raw_sync_p99_us: f64,
    wal_mb_s: f64,
    groups_records_s: f64,
    groups_syncs_s: f64,
    groups_p50_us: f64,
    groups_p99_us: f64,
}

const BENCH_BLOCK_SIZE: usize = 8 << 20;
const BENCH_RAW_FILE_SIZE: u64 = 1 << 30;
const BENCH_SEGMENT_SIZE: u64 = 256 << 20;
const BENCH_GROUPS: u64 = 64;
const BENCH_SMALL_VALUE_SIZE: usize = 4096;

fn wal_bench(args: &[String]) -> Result<ExitCode, String> {
    let known = ["--dir", "--seconds"];
    for (i, arg) in args.iter().enumerate() {
        let is_value = i > 0 && known.contains(&args[i - 1].as_str());
        if !is_value && !known.contains(&arg.as_str()) {
            return Err(format!("bench: unknown argument {arg}\n{USAGE}"));
        }
    }
    let dir = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| PathBuf::from("synod-wal-bench"), PathBuf::from);
    let seconds = flag(args, "--seconds")?.unwrap_or(5) as f64;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!(
        "synod wal bench in {} ({seconds} s per phase; files are reused across runs)",
        dir.display()
    );
    let figures = run_local(bench_all(dir, seconds)).map_err(|e| e.to_string())??;
    let f = &figures;
    println!();
    println!(
        "raw  sequential {} MiB O_DIRECT writes + fdatasync : {:>9.1} MB/s",
        BENCH_BLOCK_SIZE >> 20,
        f.raw_mb_s
    );
    println!(
        "raw  4 KiB write + fdatasync                   : {:>9.0} /s  p50 {:.0} us  p99 {:.0} us",
        f.raw_sync_rate, f.raw_sync_p50_us, f.raw_sync_p99_us
    );
    println!(
        "wal  large batches ({} MiB, 1 MiB records)      : {:>9.1} MB/s  = {:.1} % of raw",
        BENCH_BLOCK_SIZE >> 20,
        f.wal_mb_s,
        100.0 * f.wal_mb_s / f.raw_mb_s
    );
    println!(
        "wal  {BENCH_GROUPS} groups x 4 KiB records, 1 in flight each : {:>9.0} records/s, {:.0} fdatasyncs/s ({:.2} x raw rate), {:.1} records per fdatasync, records/s = {:.1} x raw fdatasync rate, ack p50 {:.0} us p99 {:.0} us",
        f.groups_records_s,
        f.groups_syncs_s,
        f.groups_syncs_s / f.raw_sync_rate,
        f.groups_records_s / f.groups_syncs_s,
        f.groups_records_s / f.raw_sync_rate,
        f.groups_p50_us,
        f.groups_p99_us
    );
    Ok(ExitCode::SUCCESS)
}

async fn bench_all(dir: PathBuf, seconds: f64) -> Result<BenchFigures, String> {
    let mut figures = BenchFigures::default();
    let e = |e: std::io::Error| e.to_string();
    // Raw: one pre-zeroed file, reused across runs (never deleted).
    let raw_path = dir.join("raw.dat");
    let reuse = std::fs::metadata(&raw_path).is_ok_and(|m| m.len() == BENCH_RAW_FILE_SIZE);
    if !reuse {
        println!(
            "creating {} (zero-filled, {} MiB)",
            raw_path.display(),
            BENCH_RAW_FILE_SIZE >> 20
        );
        DmaDisk::create_zeroed(&raw_path, BENCH_RAW_FILE_SIZE)
            .await
            .map_err(e)?;
    }
    let raw = DmaDisk::open(&raw_path).await.map_err(e)?;
    let block = vec![0x5au8; BENCH_BLOCK_SIZE];
    let clock = MonotonicClock::start();
    let (mut bytes, mut offset) = (0u64, 0u64);
    while clock.elapsed_s() < seconds {
        raw.write_at(offset, &block).await.map_err(e)?;
        raw.sync().await.map_err(e)?;
        bytes += BENCH_BLOCK_SIZE as u64;
        offset = (offset + BENCH_BLOCK_SIZE as u64) % BENCH_RAW_FILE_SIZE;
    }
    figures.raw_mb_s = bytes as f64 / clock.elapsed_s() / 1e6;
    let small = vec![0xa5u8; BLOCK_SIZE];
    let mut latencies = Vec::new();
    let clock = MonotonicClock::start();
    offset = 0;
    while clock.elapsed_s() < seconds {
        let start = clock.now();
        raw.write_at(offset, &small).await.map_err(e)?;
        raw.sync().await.map_err(e)?;
        latencies.push(clock.now().0 - start.0);
        offset = (offset + BLOCK_SIZE as u64) % BENCH_RAW_FILE_SIZE;
    }
    figures.raw_sync_rate = latencies.len() as f64 / clock.elapsed_s();
    latencies.sort_unstable();
    figures.raw_sync_p50_us = percentile(&latencies, 0.50) / 1e3;
    figures.raw_sync_p99_us = percentile(&latencies, 0.99) / 1e3;
    raw.close().await.map_err(e)?;

    // WAL: segments recycled from earlier runs, enough spares for the volume at raw speed.
    let wal_dir = dir.join("wal");
    let volume = (figures.raw_mb_s * 1e6 * seconds * 1.3) as u64 + 2 * BENCH_SEGMENT_SIZE;
    let config = StoreConfig {
        dir: wal_dir.clone(),
        shard: 0,
        geometry: SegmentGeometry::new(BENCH_SEGMENT_SIZE),
        limits: DecodeLimits::default(),
        spare_count_min: volume.div_ceil(BENCH_SEGMENT_SIZE - BLOCK_SIZE as u64) as usize,
    };
    std::fs::create_dir_all(&wal_dir).map_err(e)?;
    let recycled = recycle_all(&config).await.map_err(|e| e.to_string())?;
    println!(
        "raw done; WAL: {recycled} segment files recycled, {} needed (new ones are created zero-filled now)",
        config.spare_count_min
    );
    let recovery = recover_dir(&config).map_err(|e| e.to_string())?;
    let mut store = Store::prepare(config.clone(), &recovery)
        .await
        .map_err(|e| e.to_string())?;
    let placement = SegmentPlacement {
        payload_size: config.geometry.payload_size(),
        salt_seed: entropy_seed(),
    };
    let mut commit = GroupCommit::segmented(
        GroupCommitConfig {
            buffer_size_max: BENCH_BLOCK_SIZE,
            salt: recovery.resume_salt,
        },
        recovery.resume,
        placement,
    );
    let large = Bytes::from(vec![0x11u8; (1 << 20) - 256]);
    let large_record = |lsn: u64| Record::Accept {
        group: GroupId((lsn % BENCH_GROUPS) as u32),
        instance: Instance(lsn),
        ballot: Ballot::ZERO,
        entry: Entry {
            origin: Ballot::ZERO,
            body: Body::Values(vec![large.clone()]),
        },
    };
    let fill = |commit: &mut GroupCommit| {
        while commit
            .append(&large_record(commit.assigned_through().0 + 1))
            .is_ok()
        {}
    };
    let volume_max = volume - 2 * BENCH_SEGMENT_SIZE;
    fill(&mut commit);
    let clock = MonotonicClock::start();
    let mut bytes = 0u64;
    while clock.elapsed_s() < seconds && bytes < volume_max {
        let plan = commit.take_write().expect("a full batch");
        overlap(store.write(&plan), || fill(&mut commit))
            .await
            .map_err(|e| e.to_string())?;
        bytes += plan.bytes.len() as u64;
        commit.on_durable(plan.lsn_through);
        commit.recycle(plan.bytes);
        fill(&mut commit);
    }
    figures.wal_mb_s = bytes as f64 / clock.elapsed_s() / 1e6;
    store.close().await.map_err(|e| e.to_string())?;

    // 64 groups, 4 KiB records, each group's next record appended once the previous is
    // durable (acknowledged): group commit must batch them.
    recycle_all(&config).await.map_err(|e| e.to_string())?;
    let recovery = recover_dir(&config).map_err(|e| e.to_string())?;
    let mut store = Store::prepare(config.clone(), &recovery)
        .await
        .map_err(|e| e.to_string())?;
    let mut commit = GroupCommit::segmented(
        GroupCommitConfig {
            buffer_size_max: 1 << 20,
            salt: recovery.resume_salt,
        },
        recovery.resume,
        SegmentPlacement {
            salt_seed: entropy_seed() ^ 1,
            ..placement
        },
    );
    let value = Bytes::from(vec![0x22u8; BENCH_SMALL_VALUE_SIZE]);
    let mut instance = [0u64; BENCH_GROUPS as usize];
    let small_record = |group: u64, instance: u64| Record::Accept {
        group: GroupId(group as u32),
        instance: Instance(instance),
        ballot: Ballot::ZERO,
        entry: Entry {
            origin: Ballot::ZERO,
            body: Body::Values(vec![value.clone()]),
        },
    };
    let syncs_before = store.sync_count;
    let mut latencies = Vec::new();
    let clock = MonotonicClock::start();
    let mut records = 0u64;
    let mut appended_at: Vec<(Lsn, u64)> = Vec::new();
    while clock.elapsed_s() < seconds {
        // Every group is acknowledged here (window 1): each appends its next record.
        let now = clock.now().0;
        for (group, next) in instance.iter_mut().enumerate() {
            *next += 1;
            let record = small_record(group as u64, *next);
            let lsn = match commit.append(&record) {
                Ok(lsn) => lsn,
                Err(_) => {
                    // The batch closed at a segment's end: write it first.
                    let plan = commit.take_write().expect("a batch");
                    store.write(&plan).await.map_err(|e| e.to_string())?;
                    commit.on_durable(plan.lsn_through);
                    commit.append(&record).map_err(|e| e.to_string())?
                }
            };
            appended_at.push((lsn, now));
        }
        let plan = commit.take_write().expect("a batch");
        store.write(&plan).await.map_err(|e| e.to_string())?;
        commit.on_durable(plan.lsn_through);
        commit.recycle(plan.bytes);
        let done = clock.now().0;
        for (lsn, at) in appended_at.drain(..) {
            assert!(lsn <= commit.durable_through());
            latencies.push(done - at);
            records += 1;
        }
    }
    let elapsed = clock.elapsed_s();
    figures.groups_records_s = records as f64 / elapsed;
    figures.groups_syncs_s = (store.sync_count - syncs_before) as f64 / elapsed;
    latencies.sort_unstable();
    figures.groups_p50_us = percentile(&latencies, 0.50) / 1e3;
    figures.groups_p99_us = percentile(&latencies, 0.99) / 1e3;
    store.close().await.map_err(|e| e.to_string())?;
    Ok(figures)
}
