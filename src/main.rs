//! The `synod` binary: `synod bench` (a local three-node cluster under load, against
//! the machine's limits), `synod serve` (one node), `synod sim` (the deterministic
//! simulator over many seeds) and the WAL tools `synod wal verify|dump|bench`.

mod cli;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::ExitCode;
use std::task::Poll;
use synod::support::percentile;

use bytes::Bytes;
use synod::paxos::{Ballot, Body, Entry, GroupId, Instance, Lsn, NodeId, Record};
use synod::runtime::clock::{entropy_seed, MonotonicClock};
use synod::sim::swarm::run_many;
use synod::wal::dma_disk::{run_local, DmaDisk};
use synod::wal::segment::{
    parse_segment_file_name, LogDecision, LogRecovery, SegmentGeometry, SegmentHeader,
};
use synod::wal::store::{recover_dir, recycle_all, Store, StoreConfig};
use synod::wal::{replay, DecodeLimits, GroupCommit, BLOCK_SIZE};

const USAGE: &str = "usage:
  synod bench ...                                     (see below)
  synod serve ...                                     (see below)
  synod keygen                                        print a new random peer key (hex) for --key-file
  synod sim [--seeds N] [--base SEED] [--threads T]   run N seeds from SEED (default: 300 from a random base)
  synod sim --seed SEED                               replay one seed
  synod wal verify <dir> [--shard N]                  check every record's framing and contents; exit 1 on corruption or a content violation
  synod wal dump <dir> [--shard N]                    print every record and a per-group summary
  synod wal bench [--dir DIR] [--seconds S] [--rounds R]  raw disk limits and the WAL, interleaved, with ratios";

fn usage() -> String {
    format!("{USAGE}\n{}\n{}", cli::bench::USAGE, cli::serve::USAGE)
}

fn main() -> ExitCode {
    cli::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let subcommand = |result: Result<ExitCode, String>| {
        result.unwrap_or_else(|error| {
            eprintln!("synod: {error}");
            ExitCode::FAILURE
        })
    };
    match args.first().map(String::as_str) {
        Some("bench") => subcommand(cli::bench::main(&args[1..])),
        Some("serve") => subcommand(cli::serve::main(&args[1..])),
        Some("keygen") => subcommand(keygen(&args[1..])),
        Some("sim") => sim(&args[1..]),
        Some("wal") => wal(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{}", usage());
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{}", usage());
            ExitCode::from(2)
        }
    }
}

/// `synod keygen`: a new random key, as hex, for `synod serve --key-file`.
fn keygen(args: &[String]) -> Result<ExitCode, String> {
    if let Some(arg) = args.first() {
        return Err(format!("keygen: unknown argument {arg:?}"));
    }
    let key = synod::transport::auth::AuthKey::generate().map_err(|e| e.to_string())?;
    println!("{}", key.to_hex());
    Ok(ExitCode::SUCCESS)
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
    let summary = run_many(&seeds, threads, &|done, failures, failure| {
        if let Some(failure) = failure {
            println!("{failure}");
        }
        if done % step == 0 || done == count as usize {
            println!("  {done}/{count} seeds, {failures} failures");
        }
    });
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

/// The shards with segment files in `dir`, and the segment size their headers name
/// (reads only the first block of each file).
fn shards_in(dir: &Path) -> Result<Vec<(u32, u64)>, String> {
    use std::io::Read;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut shards: BTreeMap<u32, Option<u64>> = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((shard, _)) = parse_segment_file_name(&name) else {
            continue;
        };
        let size = shards.entry(shard).or_default();
        if size.is_none() {
            let mut head = Vec::new();
            std::fs::File::open(entry.path())
                .and_then(|f| f.take(BLOCK_SIZE as u64).read_to_end(&mut head))
                .map_err(|e| format!("{name}: {e}"))?;
            *size = SegmentHeader::decode(&head)
                .ok()
                .map(|h| h.segment_size)
                .filter(|s| *s % BLOCK_SIZE as u64 == 0 && *s >= 2 * BLOCK_SIZE as u64);
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
    let shard_count = cli::wal_verify::shard_count_in(&dir);
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
        corrupt |= report(&dir, shard, segment_size, shard_count, &recovery, dump);
    }
    Ok(if corrupt {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints the verdict on one shard's log; returns whether it is corrupt or breaks a
/// content rule (`wal::content`; group ownership when `shard_count` is known).
fn report(
    dir: &Path,
    shard: u32,
    segment_size: u64,
    shard_count: Option<u16>,
    recovery: &LogRecovery,
    dump: bool,
) -> bool {
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
    if recovery.log_start > 0 || !recovery.truncated.is_empty() {
        println!(
            "  log starts at segment {} ({} truncated leftover files below it, not read)",
            recovery.log_start,
            recovery.truncated.len()
        );
    }
    for name in &recovery.ignored {
        println!("  ignored (not a segment of shard {shard}): {name}");
    }
    let geometry = SegmentGeometry::new(segment_size);
    for gap in &recovery.gaps {
        println!(
            "  {}",
            cli::wal_verify::describe_gap(dir, shard, geometry, recovery, gap)
        );
    }
    let violations = cli::wal_verify::check_contents(shard, geometry, shard_count, recovery);
    if shard_count.is_none() {
        println!("  group ownership not checked (no synod.id naming the shard count)");
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
    let end = match &recovery.decision {
        LogDecision::Clean => Some("clean end".to_string()),
        LogDecision::TornTail { index, file_offset } => Some(format!(
            "torn tail at segment {index} offset {file_offset} (the last write was cut short; nothing acknowledged lost)"
        )),
        LogDecision::Corrupt(corruption) => {
            let name = synod::wal::segment::segment_file_name(shard, corruption_index(corruption));
            println!(
                "  CORRUPT: first bad record: {corruption} ({})",
                dir.join(name).display()
            );
            if let Some(record) = cli::wal_verify::describe_invalid(dir, shard, recovery) {
                println!("  invalid record: {record}");
            }
            println!(
                "  a node recovering this log rebuilds the shard's groups as non-voting learners"
            );
            None
        }
    };
    match end {
        Some(end) if violations == 0 => {
            println!("  ok: {end}");
            false
        }
        Some(end) => {
            println!("  INVALID: {violations} content violations ({end})");
            true
        }
        None => {
            if violations > 0 {
                println!("  INVALID: {violations} content violations in the records kept");
            }
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
        | Corruption::Invalid { index, .. }
        | Corruption::Damaged { index, .. }
        | Corruption::ChainBroken { index, .. } => *index,
        _ => unreachable!("a new corruption kind needs a position"),
    }
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
            body: Body::Values(vec![Bytes::from(synod::wal::store::crash_value(
                lsn,
                incarnation,
            ))]),
        },
    }
}

/// Hidden: recovers `<dir>`, prints `start <lsn_through>`, then appends records
/// (`crash_record`, instance = LSN) in `--batches` batches (default: until killed),
/// printing `durable <lsn>` after each fdatasync. Exits 3 on recovery corruption.
/// `--seed` fixes the batch sizes (default: a new random seed each run).
fn wal_crash_child(args: &[String]) -> Result<ExitCode, String> {
    let (dir, args) = dir_and_flags(
        args,
        &["--incarnation", "--segment-size", "--batches", "--seed"],
    )?;
    let incarnation = flag(&args, "--incarnation")?.unwrap_or(0);
    let seed = flag(&args, "--seed")?;
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
        let mut commit = recovery.group_commit(
            config.geometry,
            buffer_size_max,
            entropy_seed() ^ u64::from(std::process::id()),
        );
        println!("start {}", recovery.lsn_through.0);
        let mut prng = synod::prng::Prng::new(seed.unwrap_or_else(entropy_seed) ^ incarnation);
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
            // The driver's idle work, off the write path: spares ahead of the next roll.
            store.prepare_spares().await.map_err(|e| e.to_string())?;
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

/// Polls `io` once (queueing it), runs `meanwhile`, then completes `io`: the WAL bench
/// encodes the next batch while the fdatasync of this one runs (on this machine a write
/// completes quickly and the time is in the fdatasync).
async fn overlap<T>(io: impl Future<Output = T>, meanwhile: impl FnOnce()) -> T {
    let mut io = pin!(io);
    let first = std::future::poll_fn(|cx| Poll::Ready(io.as_mut().poll(cx))).await;
    if first.is_pending() {
        // glommio hands queued I/O to the kernel when its reactor polls, which a yield
        // does not reach (measured: no overlap with `yield_task_queue_now`); a short
        // sleep parks the executor, so the fdatasync is submitted before encoding.
        glommio::timer::sleep(std::time::Duration::from_micros(50)).await;
    }
    meanwhile();
    match first {
        Poll::Ready(done) => done,
        Poll::Pending => io.await,
    }
}

/// What `synod wal bench` measured, in one run (sums over its rounds).
#[derive(Debug, Default)]
struct BenchFigures {
    raw_bytes: u64,
    raw_s: f64,
    raw_syncs: u64,
    raw_sync_s: f64,
    raw_latencies_ns: Vec<u64>,
    wal_bytes: u64,
    wal_s: f64,
    groups_records: u64,
    groups_syncs: u64,
    groups_s: f64,
    groups_latencies_ns: Vec<u64>,
}

const BENCH_BLOCK_SIZE: usize = 8 << 20;
const BENCH_RAW_FILE_SIZE: u64 = 1 << 30;
const BENCH_SEGMENT_SIZE: u64 = 256 << 20;
/// Bytes the WAL phases may write in one run (segments reused across runs).
const BENCH_WAL_SIZE_MAX: u64 = 6 << 30;
const BENCH_GROUPS: u64 = 64;
const BENCH_SMALL_VALUE_SIZE: usize = 4096;

fn wal_bench(args: &[String]) -> Result<ExitCode, String> {
    let known = ["--dir", "--seconds", "--rounds"];
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
    let seconds = flag(args, "--seconds")?.unwrap_or(1) as f64;
    let rounds = flag(args, "--rounds")?.unwrap_or(5);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!(
        "synod wal bench in {}: {rounds} rounds of 4 phases x {seconds} s, interleaved so raw and WAL see the same disk (files reused across runs)",
        dir.display()
    );
    let mut f = run_local(bench_all(dir, seconds, rounds)).map_err(|e| e.to_string())??;
    f.raw_latencies_ns.sort_unstable();
    f.groups_latencies_ns.sort_unstable();
    let raw_mb_s = f.raw_bytes as f64 / f.raw_s / 1e6;
    let raw_sync_rate = f.raw_syncs as f64 / f.raw_sync_s;
    let wal_mb_s = f.wal_bytes as f64 / f.wal_s / 1e6;
    let records_s = f.groups_records as f64 / f.groups_s;
    let syncs_s = f.groups_syncs as f64 / f.groups_s;
    println!();
    println!(
        "raw  sequential {} MiB O_DIRECT writes + fdatasync : {raw_mb_s:>9.1} MB/s",
        BENCH_BLOCK_SIZE >> 20
    );
    println!(
        "raw  4 KiB write + fdatasync                   : {raw_sync_rate:>9.0} /s  p50 {:.0} us  p99 {:.0} us",
        percentile(&f.raw_latencies_ns, 0.50) / 1e3,
        percentile(&f.raw_latencies_ns, 0.99) / 1e3
    );
    println!(
        "wal  large batches ({} MiB, 1 MiB records)      : {wal_mb_s:>9.1} MB/s = {:.1} % of raw",
        BENCH_BLOCK_SIZE >> 20,
        100.0 * wal_mb_s / raw_mb_s
    );
    println!(
        "wal  {BENCH_GROUPS} groups x 4 KiB records, 1 in flight each : {records_s:>9.0} records/s = {:.1} x raw fdatasync rate; {syncs_s:.0} fdatasyncs/s = {:.2} x raw rate; {:.1} records per fdatasync; ack p50 {:.0} us p99 {:.0} us",
        records_s / raw_sync_rate,
        syncs_s / raw_sync_rate,
        f.groups_records as f64 / f.groups_syncs as f64,
        percentile(&f.groups_latencies_ns, 0.50) / 1e3,
        percentile(&f.groups_latencies_ns, 0.99) / 1e3
    );
    Ok(ExitCode::SUCCESS)
}

async fn bench_all(dir: PathBuf, seconds: f64, rounds: u64) -> Result<BenchFigures, String> {
    let mut f = BenchFigures::default();
    let e = |e: std::io::Error| e.to_string();
    let s = |e: synod::wal::store::StoreError| e.to_string();
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

    // WAL: segment files of earlier runs recycled; spares for the whole run made now.
    let wal_dir = dir.join("wal");
    std::fs::create_dir_all(&wal_dir).map_err(e)?;
    let config = StoreConfig {
        dir: wal_dir.clone(),
        shard: 0,
        geometry: SegmentGeometry::new(BENCH_SEGMENT_SIZE),
        limits: DecodeLimits::default(),
        spare_count_min: BENCH_WAL_SIZE_MAX.div_ceil(BENCH_SEGMENT_SIZE - BLOCK_SIZE as u64)
            as usize
            + 2,
    };
    let recycled = recycle_all(&config).await.map_err(s)?;
    println!(
        "WAL: {recycled} segment files recycled, {} wanted (missing ones are created zero-filled before measuring)",
        config.spare_count_min
    );
    let recovery = recover_dir(&config).map_err(s)?;
    let mut store = Store::prepare(config.clone(), &recovery).await.map_err(s)?;
    let mut commit = recovery.group_commit(config.geometry, BENCH_BLOCK_SIZE, entropy_seed());
    // Incompressible contents everywhere, in case the storage below compresses.
    let mut prng = synod::prng::Prng::new(entropy_seed());
    let mut random = |size: usize| {
        let mut bytes = vec![0u8; size];
        prng.fill(&mut bytes);
        bytes
    };
    let large = Bytes::from(random((1 << 20) - 256));
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
    let value = Bytes::from(random(BENCH_SMALL_VALUE_SIZE));
    let small_record = |group: u64, instance: u64| Record::Accept {
        group: GroupId(group as u32),
        instance: Instance(instance),
        ballot: Ballot::ZERO,
        entry: Entry {
            origin: Ballot::ZERO,
            body: Body::Values(vec![value.clone()]),
        },
    };
    let mut instance = [0u64; BENCH_GROUPS as usize];
    let block = random(BENCH_BLOCK_SIZE);
    let small = random(BLOCK_SIZE);
    let (mut raw_offset, mut small_offset) = (0u64, 0u64);
    for round in 0..rounds {
        // Phases alternate their order (ABBA) so that neither raw nor WAL always runs
        // right after the other's burst: this disk's speed drifts between phases.
        let order = if round % 2 == 0 {
            [0, 1, 2, 3]
        } else {
            [1, 0, 3, 2]
        };
        for phase in order {
            match phase {
                0 => {
                    // 1. Raw sequential large writes.
                    let clock = MonotonicClock::start();
                    while clock.elapsed_s() < seconds {
                        raw.write_at(raw_offset, &block).await.map_err(e)?;
                        raw.sync().await.map_err(e)?;
                        f.raw_bytes += BENCH_BLOCK_SIZE as u64;
                        raw_offset = (raw_offset + BENCH_BLOCK_SIZE as u64) % BENCH_RAW_FILE_SIZE;
                    }
                    f.raw_s += clock.elapsed_s();
                }
                1 => {
                    // 2. WAL large batches, the next one encoded while the write is in flight.
                    let budget = BENCH_WAL_SIZE_MAX / rounds;
                    let clock = MonotonicClock::start();
                    let mut bytes = 0u64;
                    fill(&mut commit);
                    while clock.elapsed_s() < seconds && bytes < budget {
                        let plan = commit.take_write().expect("a full batch");
                        store.write_unsynced(&plan).await.map_err(s)?;
                        overlap(store.sync(), || fill(&mut commit))
                            .await
                            .map_err(s)?;
                        bytes += plan.bytes.len() as u64;
                        commit.on_durable(plan.lsn_through);
                        commit.recycle(plan.bytes);
                    }
                    f.wal_s += clock.elapsed_s();
                    f.wal_bytes += bytes;
                    // Flush what the last overlap encoded, outside the measurement.
                    if let Some(plan) = commit.take_write() {
                        store.write(&plan).await.map_err(s)?;
                        commit.on_durable(plan.lsn_through);
                    }
                }
                2 => {
                    // 3. Raw 4 KiB write + fdatasync.
                    let clock = MonotonicClock::start();
                    while clock.elapsed_s() < seconds {
                        let start = clock.now();
                        raw.write_at(small_offset, &small).await.map_err(e)?;
                        raw.sync().await.map_err(e)?;
                        f.raw_latencies_ns.push(clock.now().0 - start.0);
                        f.raw_syncs += 1;
                        small_offset = (small_offset + BLOCK_SIZE as u64) % BENCH_RAW_FILE_SIZE;
                    }
                    f.raw_sync_s += clock.elapsed_s();
                }
                _ => {
                    // 4. 64 groups, 4 KiB records; a group appends its next record once the previous
                    // one is durable (acknowledged): group commit must batch them.
                    let syncs_before = store.sync_count;
                    let clock = MonotonicClock::start();
                    let mut appended_at: Vec<(Lsn, u64)> = Vec::new();
                    while clock.elapsed_s() < seconds {
                        let now = clock.now().0;
                        for (group, next) in instance.iter_mut().enumerate() {
                            *next += 1;
                            let record = small_record(group as u64, *next);
                            let lsn = match commit.append(&record) {
                                Ok(lsn) => lsn,
                                Err(_) => {
                                    // The batch closed at a segment's end: write it first.
                                    let plan = commit.take_write().expect("a batch");
                                    store.write(&plan).await.map_err(s)?;
                                    commit.on_durable(plan.lsn_through);
                                    commit.append(&record).map_err(|e| e.to_string())?
                                }
                            };
                            appended_at.push((lsn, now));
                        }
                        let plan = commit.take_write().expect("a batch");
                        store.write(&plan).await.map_err(s)?;
                        commit.on_durable(plan.lsn_through);
                        commit.recycle(plan.bytes);
                        let done = clock.now().0;
                        for (lsn, at) in appended_at.drain(..) {
                            assert!(lsn <= commit.durable_through());
                            f.groups_latencies_ns.push(done - at);
                            f.groups_records += 1;
                        }
                    }
                    f.groups_s += clock.elapsed_s();
                    f.groups_syncs += store.sync_count - syncs_before;
                }
            }
        }
        println!(
            "  round {}: raw {:.0} MB/s, wal {:.0} MB/s, raw {:.0} syncs/s, wal {:.0} records/s",
            round + 1,
            f.raw_bytes as f64 / f.raw_s / 1e6,
            f.wal_bytes as f64 / f.wal_s / 1e6,
            f.raw_syncs as f64 / f.raw_sync_s,
            f.groups_records as f64 / f.groups_s
        );
    }
    raw.close().await.map_err(e)?;
    store.close().await.map_err(s)?;
    Ok(f)
}
