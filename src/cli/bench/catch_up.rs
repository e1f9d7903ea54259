//! `synod bench --catch-up MIB`: how fast a node that was down catches up. One
//! follower is stopped, MIB mebibytes of values are written to the other two, the
//! follower is restarted on its log, and the bench times until it has applied, in
//! every group, what the leaders had chosen when it restarted. The rate is printed
//! beside the disk's sequential read and write limits measured in the same run (the
//! catch-up is served by reading the peers' WALs and written to the follower's).
//!
//! How it was served comes from the nodes' counters: catch-up chunks the peers read
//! back from their WALs (`LogMemory::catch_up_wal_served`) and checkpoints the
//! follower installed from a peer (`LogMemory::checkpoints_installed`).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};
use synod::paxos::{GroupId, Instance, NodeId};
use synod::runtime::clock::MonotonicClock;

use super::cluster::{group_statuses, snapshot, Cluster, NodeSample};
use super::fill::{self, Until, Written};
use super::limits::Limits;
use super::options::Options;

/// How often the restarted follower's watermarks are read.
const POLL_MS: u64 = 5;
/// The slowest catch-up rate waited for before giving up (1 MB/s), with a floor of
/// `TIMEOUT_MIN_S` seconds.
const TIMEOUT_BYTES_PER_S: f64 = 1e6;
/// The least time a catch-up is waited for.
const TIMEOUT_MIN_S: f64 = 60.0;
/// The share of the slower disk limit the catch-up should reach.
const GOAL_SHARE: f64 = 0.5;

/// What a catch-up run measured.
#[derive(Debug)]
pub struct CatchUp {
    /// The follower stopped and restarted.
    pub node: NodeId,
    /// What was written while it was down.
    pub written: Written,
    /// Seconds `Node::start` took on the restarted follower (its own recovery).
    pub start_s: f64,
    /// Seconds from the restart (before `Node::start`) to every group applied
    /// through the leaders' chosen watermark.
    pub total_s: f64,
    /// Instances the follower had to catch up, summed over groups.
    pub instances: u64,
    /// Catch-up chunks the other nodes read back from their WALs meanwhile.
    pub wal_chunks: u64,
    /// Catch-up streams the other nodes started over with chunks in flight meanwhile
    /// (each resends up to the credit's chunks).
    pub stream_restarts: u64,
    /// Checkpoints the follower installed from peers.
    pub checkpoint_installs: u64,
    /// Whether every group caught up before the timeout.
    pub complete: bool,
    /// The restarted follower's counters from its restart to the end (its WAL
    /// writes and disk time, messages refused for want of WAL room, messages its
    /// groups ignored, by reason).
    pub follower: NodeSample,
    /// The other nodes' counters over the same time, summed (messages their groups
    /// ignored, by reason; messages they refused).
    pub senders: NodeSample,
}

impl CatchUp {
    /// Bytes of values caught up per second, from the restart (its recovery
    /// included) to the last group caught up: MB/s.
    pub fn mb_s(&self) -> f64 {
        self.written.bytes as f64 / self.total_s.max(1e-9) / 1e6
    }

    /// The same over the streaming alone (after `Node::start` returned): MB/s.
    pub fn streaming_mb_s(&self) -> f64 {
        self.written.bytes as f64 / (self.total_s - self.start_s).max(1e-9) / 1e6
    }
}

/// Runs the catch-up mode on a fresh cluster and prints the result.
pub fn main(o: &Options, limits: &Limits, mib: u64) -> Result<ExitCode, String> {
    let mut cluster = Cluster::start(o)?;
    let result = run(o, &mut cluster, mib);
    let stopped = cluster.shutdown();
    let result = result?;
    for line in text(&result, limits) {
        say!(o.json, "{line}");
    }
    if o.json {
        println!("{}", json(o, &result, limits));
    }
    for error in &stopped {
        eprintln!("synod bench: {error}");
    }
    Ok(if stopped.is_empty() && result.complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Stop a follower, write, restart it, wait for it.
fn run(o: &Options, cluster: &mut Cluster, mib: u64) -> Result<CatchUp, String> {
    let node = cluster.quietest_follower();
    let handle = cluster.handles.get(&node).ok_or("no handle")?;
    let had: u64 = group_statuses(handle)?
        .iter()
        .map(|g| g.chosen_through.0)
        .sum();
    let stop_s = cluster.stop(node)?;
    say!(
        o.json,
        "node {} stopped ({stop_s:.2} s); writing {mib} MiB of {} values to the other two",
        node.0,
        o.value_sizes
    );
    let written = fill::run(
        o,
        &cluster.handles,
        &cluster.leaders,
        Until::Bytes(mib << 20),
        true,
    )?;
    say!(
        o.json,
        "written: {} values, {:.0} MiB in {:.1} s ({:.0} MB/s){}",
        written.values,
        written.bytes as f64 / f64::from(1u32 << 20),
        written.seconds,
        written.bytes as f64 / written.seconds.max(1e-9) / 1e6,
        errors_text(&written.errors)
    );
    let targets = chosen_watermarks(cluster)?;
    let (wal_before, restarts_before) = wal_chunks_served(cluster)?;
    let before = futures_lite::future::block_on(snapshot(&cluster.handles, None))?;
    let timeout_s = (written.bytes as f64 / TIMEOUT_BYTES_PER_S).max(TIMEOUT_MIN_S);
    let clock = MonotonicClock::start();
    let start_s = cluster.restart(node)?;
    let handle = cluster
        .handles
        .get(&node)
        .ok_or("the restarted node has no handle")?
        .clone();
    let (complete, statuses) = loop {
        let statuses = group_statuses(&handle)?;
        let behind = statuses
            .iter()
            .any(|g| g.applied_through < targets.get(&g.group).copied().unwrap_or_default());
        if !behind || clock.elapsed_s() > timeout_s {
            break (!behind, statuses);
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    };
    let total_s = clock.elapsed_s();
    let (wal_after, restarts_after) = wal_chunks_served(cluster)?;
    let mut after = futures_lite::future::block_on(snapshot(&cluster.handles, None))?;
    let follower = after.nodes.remove(&node).unwrap_or_default();
    let mut senders = NodeSample::default();
    for (id, sample) in &after.nodes {
        let since = sample.since(before.nodes.get(id).unwrap_or(&NodeSample::default()));
        for (reason, count) in since.ignored {
            *senders.ignored.entry(reason).or_default() += count;
        }
        senders.refused_messages += since.refused_messages;
    }
    Ok(CatchUp {
        node,
        instances: targets
            .values()
            .map(|t| t.0)
            .sum::<u64>()
            .saturating_sub(had),
        written,
        start_s,
        total_s,
        wal_chunks: wal_after.saturating_sub(wal_before),
        stream_restarts: restarts_after.saturating_sub(restarts_before),
        checkpoint_installs: statuses
            .iter()
            .filter_map(|g| g.memory)
            .map(|m| m.checkpoints_installed)
            .sum(),
        complete,
        follower,
        senders,
    })
}

/// Each group's chosen watermark, the highest over the running nodes.
fn chosen_watermarks(cluster: &Cluster) -> Result<BTreeMap<GroupId, Instance>, String> {
    let mut targets: BTreeMap<GroupId, Instance> = BTreeMap::new();
    for handle in cluster.handles.values() {
        for g in group_statuses(handle)? {
            let target = targets.entry(g.group).or_default();
            *target = (*target).max(g.chosen_through);
        }
    }
    Ok(targets)
}

/// Catch-up chunks the running nodes have read back from their WALs, and catch-up
/// streams they started over with chunks in flight, summed.
fn wal_chunks_served(cluster: &Cluster) -> Result<(u64, u64), String> {
    let (mut chunks, mut restarts) = (0, 0);
    for handle in cluster.handles.values() {
        for memory in group_statuses(handle)?.iter().filter_map(|g| g.memory) {
            chunks += memory.catch_up_wal_served;
            restarts += memory.catch_up_streams_restarted;
        }
    }
    Ok((chunks, restarts))
}

/// `reason count` pairs, comma-separated (empty for none).
fn counts_text<K: std::fmt::Display>(counts: &BTreeMap<K, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    parts.join(", ")
}

fn ignored_text(ignored: &BTreeMap<&'static str, u64>) -> String {
    if ignored.is_empty() {
        return "none".to_string();
    }
    counts_text(ignored)
}

fn errors_text(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return String::new();
    }
    format!("; retried: {}", counts_text(errors))
}

/// The result as lines of text.
fn text(r: &CatchUp, limits: &Limits) -> Vec<String> {
    let slower = limits.disk_mb_s.min(limits.disk_read_mb_s);
    let share = r.mb_s() / slower.max(1e-9);
    vec![
        String::new(),
        format!(
            "catch-up: node {} {} {:.0} MiB ({} values, {} instances) in {:.2} s: {:.1} MB/s \
             (restart {:.2} s + streaming {:.2} s at {:.1} MB/s)",
            r.node.0,
            if r.complete {
                "caught up"
            } else {
                "did NOT catch up (timeout):"
            },
            r.written.bytes as f64 / f64::from(1u32 << 20),
            r.written.values,
            r.instances,
            r.total_s,
            r.mb_s(),
            r.start_s,
            r.total_s - r.start_s,
            r.streaming_mb_s()
        ),
        format!(
            "served: {} catch-up chunks read from the peers' WALs ({} stream restarts), {} \
             checkpoints installed",
            r.wal_chunks, r.stream_restarts, r.checkpoint_installs
        ),
        format!(
            "follower: {} WAL writes ({:.2} MiB each), disk busy {:.2} s of which fdatasync \
             {:.2} s, {} messages refused (WAL full), ignored: {}",
            r.follower.writes,
            r.written.bytes as f64 / r.follower.writes.max(1) as f64 / f64::from(1u32 << 20),
            r.follower.disk_ns as f64 / 1e9,
            r.follower.sync_ns as f64 / 1e9,
            r.follower.refused_messages,
            ignored_text(&r.follower.ignored)
        ),
        format!(
            "senders: {} messages refused, ignored: {}",
            r.senders.refused_messages,
            ignored_text(&r.senders.ignored)
        ),
        format!(
            "limits: disk write {:.0} MB/s, read {:.0} MB/s: catch-up at {:.0} % of the \
             slower ({}: goal {:.0} %); same-disk copy {:.0} MB/s: catch-up at {:.0} % of it \
             (the nodes share one disk: the senders read what the follower writes)",
            limits.disk_mb_s,
            limits.disk_read_mb_s,
            share * 100.0,
            if share >= GOAL_SHARE {
                "met"
            } else {
                "NOT met"
            },
            GOAL_SHARE * 100.0,
            limits.disk_copy_mb_s,
            r.mb_s() / limits.disk_copy_mb_s.max(1e-9) * 100.0
        ),
    ]
}

/// The result as one JSON object.
fn json(o: &Options, r: &CatchUp, limits: &Limits) -> Value {
    let slower = limits.disk_mb_s.min(limits.disk_read_mb_s);
    json!({
        "mode": "catch_up",
        "groups": o.groups,
        "shards": o.shards,
        "value_size": o.value_sizes.to_string(),
        "fsync": o.fsync,
        "node": r.node.0,
        "complete": r.complete,
        "written": {
            "values": r.written.values,
            "bytes": r.written.bytes,
            "seconds": r.written.seconds,
            "errors": r.written.errors,
        },
        "catch_up": {
            "bytes": r.written.bytes,
            "instances": r.instances,
            "seconds": r.total_s,
            "start_seconds": r.start_s,
            "mb_per_s": r.mb_s(),
            "streaming_mb_per_s": r.streaming_mb_s(),
            "wal_chunks": r.wal_chunks,
            "stream_restarts": r.stream_restarts,
            "checkpoint_installs": r.checkpoint_installs,
            "follower_wal_writes": r.follower.writes,
            "follower_disk_seconds": r.follower.disk_ns as f64 / 1e9,
            "follower_sync_seconds": r.follower.sync_ns as f64 / 1e9,
            "follower_refused_messages": r.follower.refused_messages,
            "follower_ignored": r.follower.ignored,
            "senders_refused_messages": r.senders.refused_messages,
            "senders_ignored": r.senders.ignored,
            "share_of_slower_disk_limit": r.mb_s() / slower.max(1e-9),
            "share_of_disk_copy_limit": r.mb_s() / limits.disk_copy_mb_s.max(1e-9),
        },
        "limits": limits.json(),
    })
}
