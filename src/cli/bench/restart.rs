//! `synod bench --restart N,...`: whether a node's restart time is independent of its
//! history. The cluster is loaded until one follower's groups have chosen N instances
//! in all; the load pauses, the follower is stopped and started again on its log
//! (`Node::start` returns once every shard restored its checkpoints, replayed its WAL
//! suffix and listens: that is the recovery time), the bench waits until it has caught
//! up with the leaders, and the load resumes toward the next N. One run thus shows how
//! recovery scales with history, on the same log.
//!
//! Small values (16 B by default) and many groups make instances cheap; what is counted
//! is instances, not values (with `--batch` above 1 an instance holds several).

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};
use synod::api::RecoveryReport;
use synod::paxos::NodeId;
use synod::runtime::clock::MonotonicClock;

use super::cluster::{group_statuses, node_dir, Cluster};
use super::fill::{self, Until};
use super::options::Options;
use super::resources::wal_bytes;

/// How often the restarted node's watermarks are read while it catches up.
const POLL_MS: u64 = 10;
/// How long the restarted node may take to catch up with the leaders.
const CATCH_UP_TIMEOUT_S: f64 = 300.0;

/// One stop and reopen.
#[derive(Clone, Debug)]
pub struct Restart {
    /// Instances the node's groups had chosen when it stopped, summed (its history).
    pub instances: u64,
    /// Bytes of WAL segment files in its directory when it stopped (live segments and
    /// blank spares).
    pub wal_size: u64,
    /// Instances above its groups' durable checkpoints when it stopped, summed: what
    /// its recovery replays from the WAL (the rest is restored from checkpoints).
    pub suffix_instances: u64,
    /// Seconds of `Node::shutdown`.
    pub stop_s: f64,
    /// Seconds of `Node::start` on its log: the recovery.
    pub start_s: f64,
    /// Seconds from `Node::start` returning to every group applied through the
    /// leaders' chosen watermark.
    pub catch_up_s: f64,
    /// Seconds of load before this restart.
    pub load_s: f64,
    /// What the recovery read, summed over the node's shards, and the phases of its
    /// slowest shard (the one `Node::start` waited for).
    pub report: RecoveryReport,
}

/// Runs the restart mode on a fresh cluster and prints the result.
pub fn main(o: &Options) -> Result<ExitCode, String> {
    let mut cluster = Cluster::start(o)?;
    let node = cluster.quietest_follower();
    say!(
        o.json,
        "restart mode: node {} stopped and reopened at {:?} instances of history",
        node.0,
        o.restart_instances
    );
    let mut restarts = Vec::new();
    let mut result = Ok(());
    for &count in &o.restart_instances {
        match restart_at(o, &mut cluster, node, count) {
            Ok(restart) => {
                say!(o.json, "{}", line(&restart));
                restarts.push(restart);
            }
            Err(error) => {
                result = Err(error);
                break;
            }
        }
    }
    let stopped = cluster.shutdown();
    result?;
    for line in text(&restarts) {
        say!(o.json, "{line}");
    }
    if o.json {
        println!("{}", json(o, node, &restarts));
    }
    for error in &stopped {
        eprintln!("synod bench: {error}");
    }
    Ok(if stopped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Loads until `node` holds `count` instances, then stops and reopens it and waits
/// until it caught up.
fn restart_at(
    o: &Options,
    cluster: &mut Cluster,
    node: NodeId,
    count: u64,
) -> Result<Restart, String> {
    let written = fill::run(
        o,
        &cluster.handles,
        &cluster.leaders,
        Until::Instances { node, count },
        true,
    )?;
    let handle = cluster.handles.get(&node).ok_or("no handle")?;
    let statuses = group_statuses(handle)?;
    let instances = statuses.iter().map(|g| g.chosen_through.0).sum();
    let suffix_instances = statuses
        .iter()
        .map(|g| g.chosen_through.0.saturating_sub(g.checkpoint_through.0))
        .sum();
    say!(
        o.json,
        "  stopping node {} at {instances} instances ({suffix_instances} above its checkpoints)",
        node.0
    );
    let stop_s = cluster.stop(node)?;
    let wal_size = wal_bytes(&node_dir(o, node));
    let start_s = cluster.restart(node)?;
    let report = recovery_report(cluster, node)?;
    let catch_up_s = wait_caught_up(cluster, node)?;
    Ok(Restart {
        instances,
        wal_size,
        suffix_instances,
        stop_s,
        start_s,
        catch_up_s,
        load_s: written.seconds,
        report,
    })
}

/// The recovery of `node`'s last start: its shards' counters summed, the phases of the
/// shard that took longest.
fn recovery_report(cluster: &Cluster, node: NodeId) -> Result<RecoveryReport, String> {
    let handle = cluster.handles.get(&node).ok_or("no handle")?;
    let shards = futures_lite::future::block_on(handle.status()).map_err(|e| e.to_string())?;
    let slowest = shards
        .iter()
        .map(|s| s.recovery)
        .max_by_key(|r| r.total_ns)
        .unwrap_or_default();
    Ok(RecoveryReport {
        segments: shards.iter().map(|s| s.recovery.segments).sum(),
        bytes: shards.iter().map(|s| s.recovery.bytes).sum(),
        records: shards.iter().map(|s| s.recovery.records).sum(),
        head_used: shards.iter().map(|s| s.recovery.head_used).sum(),
        head_refused: shards.iter().map(|s| s.recovery.head_refused).sum(),
        skipped_bytes: shards.iter().map(|s| s.recovery.skipped_bytes).sum(),
        ..slowest
    })
}

/// Nanoseconds as seconds.
fn s(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The recovery's counters and phases, for the progress line.
fn phases(r: &RecoveryReport) -> String {
    format!(
        "read {} segments ({:.0} MiB), {} records; log head hint used by {} shards, refused \
         by {}, {:.0} MiB skipped; probe {:.3} s, scan {:.3} s, index {:.3} s, \
         replay {:.3} s, restore {:.3} s, groups {:.3} s (shard total {:.3} s)",
        r.segments,
        r.bytes as f64 / f64::from(1u32 << 20),
        r.records,
        r.head_used,
        r.head_refused,
        r.skipped_bytes as f64 / f64::from(1u32 << 20),
        s(r.probe_ns),
        s(r.scan_ns),
        s(r.index_ns),
        s(r.replay_ns),
        s(r.restore_ns),
        s(r.groups_ns),
        s(r.total_ns)
    )
}

/// Seconds until `node` has applied, in every group, what the others have chosen.
fn wait_caught_up(cluster: &Cluster, node: NodeId) -> Result<f64, String> {
    let clock = MonotonicClock::start();
    let mut targets = std::collections::BTreeMap::new();
    for (id, handle) in &cluster.handles {
        if *id == node {
            continue;
        }
        for g in group_statuses(handle)? {
            let target = targets.entry(g.group).or_insert(g.chosen_through);
            *target = (*target).max(g.chosen_through);
        }
    }
    let handle = cluster.handles.get(&node).ok_or("no handle")?;
    loop {
        let behind = group_statuses(handle)?.iter().any(|g| {
            targets
                .get(&g.group)
                .is_some_and(|t| g.applied_through < *t)
        });
        if !behind {
            return Ok(clock.elapsed_s());
        }
        if clock.elapsed_s() > CATCH_UP_TIMEOUT_S {
            return Err(format!(
                "node {} did not catch up within {CATCH_UP_TIMEOUT_S} s of its restart",
                node.0
            ));
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

fn line(r: &Restart) -> String {
    format!(
        "restart at {} instances ({} above the checkpoints; segment files {:.0} MiB): \
         stop {:.3} s, recovery {:.3} s, caught up {:.3} s later\n    recovery: {}",
        r.instances,
        r.suffix_instances,
        r.wal_size as f64 / f64::from(1u32 << 20),
        r.stop_s,
        r.start_s,
        r.catch_up_s,
        phases(&r.report)
    )
}

/// The summary: every restart, then the ratio of the last recovery to the first.
fn text(restarts: &[Restart]) -> Vec<String> {
    let mut lines = vec![
        String::new(),
        "instances    suffix  segments MiB   load s   stop s   recovery s   caught up s"
            .to_string(),
    ];
    for r in restarts {
        lines.push(format!(
            "{:>9} {:>9} {:>13.0} {:>8.1} {:>8.3} {:>12.3} {:>13.3}",
            r.instances,
            r.suffix_instances,
            r.wal_size as f64 / f64::from(1u32 << 20),
            r.load_s,
            r.stop_s,
            r.start_s,
            r.catch_up_s
        ));
    }
    if let (Some(first), Some(last)) = (restarts.first(), restarts.last()) {
        lines.push(format!(
            "recovery: {:.3} s after {} instances vs {:.3} s after {}: ratio {:.2} (goal <= 2)",
            last.start_s,
            last.instances,
            first.start_s,
            first.instances,
            last.start_s / first.start_s.max(1e-9)
        ));
    }
    lines
}

/// The result as one JSON object.
fn json(o: &Options, node: NodeId, restarts: &[Restart]) -> Value {
    let ratio = match (restarts.first(), restarts.last()) {
        (Some(first), Some(last)) => last.start_s / first.start_s.max(1e-9),
        _ => 0.0,
    };
    json!({
        "mode": "restart",
        "groups": o.groups,
        "shards": o.shards,
        "window": o.window,
        "batch": o.batch,
        "clients": o.clients,
        "value_size": o.value_sizes.to_string(),
        "fsync": o.fsync,
        "node": node.0,
        "restarts": restarts.iter().map(|r| json!({
            "instances": r.instances,
            "wal_bytes": r.wal_size,
            "suffix_instances": r.suffix_instances,
            "load_seconds": r.load_s,
            "stop_seconds": r.stop_s,
            "recovery_seconds": r.start_s,
            "catch_up_seconds": r.catch_up_s,
            "recovery": {
                "segments_read": r.report.segments,
                "bytes_read": r.report.bytes,
                "records_decoded": r.report.records,
                "head_used_shards": r.report.head_used,
                "head_refused_shards": r.report.head_refused,
                "bytes_skipped": r.report.skipped_bytes,
                "probe_seconds": s(r.report.probe_ns),
                "scan_seconds": s(r.report.scan_ns),
                "index_seconds": s(r.report.index_ns),
                "replay_seconds": s(r.report.replay_ns),
                "restore_seconds": s(r.report.restore_ns),
                "groups_seconds": s(r.report.groups_ns),
                "shard_seconds": s(r.report.total_ns),
            },
        })).collect::<Vec<_>>(),
        "recovery_ratio_last_to_first": ratio,
    })
}
