//! `synod bench`: a local three-node cluster (real WALs with fdatasync, real TCP on
//! loopback) under a closed-loop load, with the disk's limit measured in the same run.
//!
//! The load: `--clients` tasks on one client thread, each with one proposal in flight
//! (closed loop), spread round-robin over the groups and sent to each group's leader.
//! Before the load, the raw limit of the disk is measured: 4 KiB O_DIRECT write +
//! fdatasync, one at a time, on a pre-zeroed file reused across runs.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use synod::api::{Config, Error, Node, NodeHandle};
use synod::paxos::{GroupId, NodeId, Role};
use synod::runtime::clock::MonotonicClock;
use synod::runtime::driver::null_factory;
use synod::wal::dma_disk::{run_local, DmaDisk};
use synod::wal::BLOCK_SIZE;

use super::{check_flags, parsed, value};

/// Usage lines of `synod bench`.
pub const USAGE: &str = "  synod bench [--groups G] [--clients C] [--value-size B] [--seconds S] [--warmup S]
              [--window W] [--batch N] [--shards S] [--dir DIR] [--no-fsync] [--json]
                                                      a local 3-node cluster under load, with the disk limit";

struct Options {
    groups: u32,
    clients: usize,
    value_size: usize,
    seconds: f64,
    warmup: f64,
    window: u64,
    batch: usize,
    shards: u16,
    dir: PathBuf,
    fsync: bool,
    json: bool,
}

fn options(args: &[String]) -> Result<Options, String> {
    check_flags(
        args,
        &[
            "--groups",
            "--clients",
            "--value-size",
            "--seconds",
            "--warmup",
            "--window",
            "--batch",
            "--shards",
            "--dir",
        ],
        &["--no-fsync", "--json"],
    )?;
    Ok(Options {
        groups: parsed(args, "--groups")?.unwrap_or(4),
        clients: parsed(args, "--clients")?.unwrap_or(256),
        value_size: parsed(args, "--value-size")?.unwrap_or(100),
        seconds: parsed(args, "--seconds")?.unwrap_or(10.0),
        warmup: parsed(args, "--warmup")?.unwrap_or(2.0),
        window: parsed(args, "--window")?.unwrap_or(64),
        batch: parsed(args, "--batch")?.unwrap_or(1),
        shards: parsed(args, "--shards")?.unwrap_or(1),
        dir: value(args, "--dir")?.map_or_else(|| PathBuf::from("synod-bench"), PathBuf::from),
        fsync: !args.iter().any(|a| a == "--no-fsync"),
        json: args.iter().any(|a| a == "--json"),
    })
}

/// 4 KiB write + fdatasync rate and latencies (ns) over `seconds`, on a pre-zeroed
/// file in `dir` (created once, reused).
fn fdatasync_limit(dir: &Path, seconds: f64) -> Result<(f64, Vec<u64>), String> {
    const FILE_SIZE: u64 = 64 << 20;
    let path = dir.join("fdatasync-probe.dat");
    run_local(async move {
        let e = |e: std::io::Error| e.to_string();
        if !std::fs::metadata(&path).is_ok_and(|m| m.len() == FILE_SIZE) {
            DmaDisk::create_zeroed(&path, FILE_SIZE).await.map_err(e)?;
        }
        let disk = DmaDisk::open(&path).await.map_err(e)?;
        let block = vec![0x5Au8; BLOCK_SIZE];
        let start = MonotonicClock::start();
        let mut latencies = Vec::new();
        let mut offset = 0u64;
        while start.elapsed_s() < seconds {
            let at = MonotonicClock::start();
            disk.write_at(offset, &block).await.map_err(e)?;
            disk.sync().await.map_err(e)?;
            latencies.push(at.now().0);
            offset = (offset + BLOCK_SIZE as u64) % FILE_SIZE;
        }
        let rate = latencies.len() as f64 / start.elapsed_s();
        disk.close().await.map_err(e)?;
        Ok((rate, latencies))
    })
    .map_err(|e| e.to_string())?
}

/// `count` base ports on 127.0.0.1, each followed by `shards - 1` free ports (checked
/// by binding them all at once).
fn free_bases(count: usize, shards: u16) -> Result<Vec<u16>, String> {
    let mut held: Vec<TcpListener> = Vec::new();
    let mut bases = Vec::new();
    let mut candidate = 21_000 + (std::process::id() % 20_000) as u16;
    while bases.len() < count {
        if candidate > 60_000 {
            return Err("no free ports on 127.0.0.1".into());
        }
        let run: Vec<TcpListener> = (0..shards)
            .filter_map(|i| TcpListener::bind(("127.0.0.1", candidate + i)).ok())
            .collect();
        if run.len() == usize::from(shards) {
            bases.push(candidate);
            held.extend(run);
        }
        candidate += shards + 7;
    }
    Ok(bases)
}

/// Shared between the client tasks.
#[derive(Default)]
struct Tally {
    measuring: bool,
    histogram: Option<Histogram<u64>>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    done: u64,
    /// Seconds measured (from the end of the warm-up to the stop).
    window_s: f64,
}

/// Prints a human line: on stdout, or on stderr when stdout carries JSON.
macro_rules! say {
    ($json:expr, $($arg:tt)*) => {
        if $json {
            eprintln!($($arg)*);
        } else {
            println!($($arg)*);
        }
    };
}

/// Runs `synod bench`.
pub fn main(args: &[String]) -> Result<ExitCode, String> {
    let o = options(args)?;
    std::fs::create_dir_all(&o.dir).map_err(|e| format!("{}: {e}", o.dir.display()))?;
    say!(
        o.json,
        "synod bench: 3 nodes x {} shard(s), {} groups, {} clients (closed loop), {} B values, \
         window {}, batch {}, {} s after {} s warm-up, {}, in {}",
        o.shards,
        o.groups,
        o.clients,
        o.value_size,
        o.window,
        o.batch,
        o.seconds,
        o.warmup,
        if o.fsync {
            "fdatasync on"
        } else {
            "UNSAFE: fdatasync OFF (acknowledged values are not durable)"
        },
        o.dir.display()
    );
    let (sync_rate, mut sync_latencies) = fdatasync_limit(&o.dir, 2.0)?;
    sync_latencies.sort_unstable();
    let pct = |v: &[u64], p: f64| v[((v.len() - 1) as f64 * p) as usize] as f64 / 1e3;
    say!(
        o.json,
        "disk limit: 4 KiB write + fdatasync {sync_rate:.0}/s, p50 {:.0} us, p99 {:.0} us",
        pct(&sync_latencies, 0.5),
        pct(&sync_latencies, 0.99)
    );

    let addresses: BTreeMap<NodeId, SocketAddr> = (1..=3)
        .map(NodeId)
        .zip(free_bases(3, o.shards)?)
        .map(|(id, port)| (id, SocketAddr::from(([127, 0, 0, 1], port))))
        .collect();
    let mut nodes = BTreeMap::new();
    for id in addresses.keys() {
        let dir = o.dir.join(format!("node-{}", id.0));
        // A fresh log each run (the bench measures steady state, not recovery).
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = Config::new(*id, 0xBE4C, addresses.clone(), dir);
        config.shards = o.shards;
        config.cores = Vec::new();
        config.group_count = o.groups;
        config.group.window_instances_max = o.window;
        config.group.accept_window_instances_max = o.window.max(256);
        config.group.batch_values_max = o.batch.max(1);
        config.unsafe_skip_fsync = !o.fsync;
        let node = Node::start(config, null_factory()).map_err(|e| e.to_string())?;
        nodes.insert(*id, node);
    }
    let handles: BTreeMap<NodeId, NodeHandle> =
        nodes.iter().map(|(id, n)| (*id, n.handle())).collect();
    let leaders = wait_for_leaders(&handles, o.groups, Duration::from_secs(30))?;
    let status_before = totals(&handles)?;

    let tally = run_clients(&o, &handles, &leaders)?;
    let status_after = totals(&handles)?;
    let histogram = tally.histogram.as_ref().ok_or("no histogram")?;
    let ops = tally.ok as f64 / tally.window_s;
    let writes = (status_after.0 - status_before.0) as f64;
    let records = (status_after.1 - status_before.1) as f64;
    let busy_ms = (status_after.3 - status_before.3) as f64 / 1e6;
    let iterations = (status_after.4 - status_before.4) as f64;
    let disk_ms = (status_after.5 - status_before.5) as f64 / 1e6;
    say!(o.json, "");
    say!(
        o.json,
        "throughput: {ops:.0} ops/s, {:.2} MB/s payload ({} ok{})",
        ops * o.value_size as f64 / 1e6,
        tally.ok,
        if tally.errors.is_empty() {
            String::new()
        } else {
            format!(", errors {:?}", tally.errors)
        }
    );
    say!(
        o.json,
        "latency: p50 {:.0} us, p90 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us",
        histogram.value_at_quantile(0.5) as f64 / 1e3,
        histogram.value_at_quantile(0.9) as f64 / 1e3,
        histogram.value_at_quantile(0.99) as f64 / 1e3,
        histogram.value_at_quantile(0.999) as f64 / 1e3,
        histogram.max() as f64 / 1e3
    );
    say!(
        o.json,
        "WAL (3 nodes together, whole run incl. warm-up): {:.0} fdatasyncs/s = {:.2} x the raw \
         fdatasync rate per node; {:.1} records per fdatasync",
        writes / (o.seconds + o.warmup),
        writes / (o.seconds + o.warmup) / 3.0 / sync_rate,
        records / writes.max(1.0)
    );
    say!(
        o.json,
        "WAL busy {:.0} % of the time per node; {:.2} ms per write as the loop sees it, {:.2} ms in the disk; {:.0} loop iterations/s per node",
        busy_ms / 1e3 / (o.seconds + o.warmup) / 3.0 * 100.0,
        busy_ms / writes.max(1.0),
        disk_ms / writes.max(1.0),
        iterations / (o.seconds + o.warmup) / 3.0
    );
    say!(
        o.json,
        "ratios: ops/s / raw fdatasync rate = {:.1}; p99 / fdatasync p99 = {:.1}; elections {}",
        ops / sync_rate,
        histogram.value_at_quantile(0.99) as f64 / 1e3 / pct(&sync_latencies, 0.99),
        status_after.2
    );
    if o.json {
        println!(
            "{{\"ops_per_s\":{ops:.1},\"mb_per_s\":{:.3},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\"fsync_rate_limit\":{sync_rate:.1},\"fsync_p50_us\":{:.1},\"fsync_p99_us\":{:.1},\"fdatasyncs_per_s\":{:.1},\"records_per_fdatasync\":{:.2},\"elections\":{},\"fsync\":{},\"groups\":{},\"clients\":{},\"value_size\":{},\"ok\":{},\"errors\":{}}}",
            ops * o.value_size as f64 / 1e6,
            histogram.value_at_quantile(0.5) as f64 / 1e3,
            histogram.value_at_quantile(0.9) as f64 / 1e3,
            histogram.value_at_quantile(0.99) as f64 / 1e3,
            histogram.value_at_quantile(0.999) as f64 / 1e3,
            histogram.max() as f64 / 1e3,
            pct(&sync_latencies, 0.5),
            pct(&sync_latencies, 0.99),
            writes / (o.seconds + o.warmup),
            records / writes.max(1.0),
            status_after.2,
            o.fsync,
            o.groups,
            o.clients,
            o.value_size,
            tally.ok,
            tally.errors.values().sum::<u64>()
        );
    }
    for (_, node) in nodes {
        for error in node.shutdown() {
            eprintln!("shutdown: {error}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// (WAL writes, records, elections, write busy ns, loop iterations) summed over all
/// nodes and shards.
fn totals(
    handles: &BTreeMap<NodeId, NodeHandle>,
) -> Result<(u64, u64, u64, u64, u64, u64), String> {
    let mut sum = (0, 0, 0, 0, 0, 0);
    for handle in handles.values() {
        for status in futures_lite::future::block_on(handle.status()).map_err(|e| e.to_string())? {
            sum.0 += status.writes;
            sum.1 += status.records;
            sum.2 += status.elections;
            sum.3 += status.write_busy_ns;
            sum.4 += status.iterations;
            sum.5 += status.disk_ns;
        }
    }
    Ok(sum)
}

fn wait_for_leaders(
    handles: &BTreeMap<NodeId, NodeHandle>,
    groups: u32,
    timeout: Duration,
) -> Result<BTreeMap<GroupId, NodeId>, String> {
    let clock = MonotonicClock::start();
    loop {
        let mut leaders = BTreeMap::new();
        for (id, handle) in handles {
            for status in
                futures_lite::future::block_on(handle.status()).map_err(|e| e.to_string())?
            {
                for group in status.groups {
                    if group.role == Role::Leader {
                        leaders.insert(group.group, *id);
                    }
                }
            }
        }
        if leaders.len() == groups as usize {
            return Ok(leaders);
        }
        if clock.elapsed_s() > timeout.as_secs_f64() {
            return Err(format!(
                "only {} of {groups} groups elected a leader",
                leaders.len()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_clients(
    o: &Options,
    handles: &BTreeMap<NodeId, NodeHandle>,
    leaders: &BTreeMap<GroupId, NodeId>,
) -> Result<Tally, String> {
    let handles = handles.clone();
    let leaders = leaders.clone();
    let (clients, groups, value_size) = (o.clients, o.groups, o.value_size);
    let (warmup, seconds, json) = (o.warmup, o.seconds, o.json);
    run_local(async move {
        let tally = Rc::new(RefCell::new(Tally::default()));
        let leaders = Rc::new(RefCell::new(leaders));
        let stop = Rc::new(std::cell::Cell::new(false));
        let value = Bytes::from(vec![0xA5u8; value_size]);
        let mut tasks = Vec::new();
        for client in 0..clients {
            let (tally, leaders, stop) = (Rc::clone(&tally), Rc::clone(&leaders), Rc::clone(&stop));
            let handles = handles.clone();
            let value = value.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut next = client as u32;
                while !stop.get() {
                    let group = GroupId(next % groups);
                    next = next.wrapping_add(clients as u32);
                    let leader = leaders.borrow().get(&group).copied().unwrap_or(NodeId(1));
                    let start = MonotonicClock::start();
                    let result = handles[&leader].propose(group, value.clone()).await;
                    let elapsed = start.now().0;
                    let failed = {
                        let mut t = tally.borrow_mut();
                        t.done += 1;
                        match result {
                            Ok(_) => {
                                if t.measuring {
                                    t.ok += 1;
                                    if let Some(h) = t.histogram.as_mut() {
                                        let _ = h.record(elapsed.max(1));
                                    }
                                }
                                false
                            }
                            Err(error) => {
                                if let Error::NotLeader { hint: Some(hint) } = &error {
                                    leaders.borrow_mut().insert(group, *hint);
                                }
                                if t.measuring {
                                    *t.errors
                                        .entry(format!("{error:?}").chars().take(24).collect())
                                        .or_default() += 1;
                                }
                                true
                            }
                        }
                    };
                    if failed {
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                    }
                }
            }));
        }
        let start = MonotonicClock::start();
        let mut measure_start = start;
        let mut last = (MonotonicClock::start(), 0u64);
        let total = warmup + seconds;
        while start.elapsed_s() < total {
            glommio::timer::sleep(Duration::from_secs(1)).await;
            let elapsed = start.elapsed_s();
            {
                let mut t = tally.borrow_mut();
                if !t.measuring && elapsed >= warmup {
                    t.measuring = true;
                    measure_start = MonotonicClock::start();
                    t.histogram = Histogram::new_with_bounds(1, 60_000_000_000, 3).ok();
                }
                let rate = (t.done - last.1) as f64 / last.0.elapsed_s();
                say!(
                    json,
                    "  {elapsed:>5.1} s  {rate:>10.0} ops/s{}",
                    if t.measuring { "" } else { "  (warm-up)" }
                );
                last = (MonotonicClock::start(), t.done);
            }
        }
        stop.set(true);
        tally.borrow_mut().measuring = false;
        tally.borrow_mut().window_s = measure_start.elapsed_s();
        for task in tasks {
            task.await;
        }
        Rc::try_unwrap(tally)
            .map(RefCell::into_inner)
            .map_err(|_| "tally still shared".to_string())
    })
    .map_err(|e| e.to_string())?
}
