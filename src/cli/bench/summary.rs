//! The figures of one `synod bench` run, computed once from the load, the cluster's
//! counters and the limits, then printed as text or JSON (`docs/measurements.md`,
//! "Reading the output", explains each).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::cluster::{NodeSample, REPLICAS};
use super::limits::Limits;
use super::load::{Load, BUCKET_MS, DRAIN_S};
use super::options::Options;
use super::resources::{Growth, ResourceSample};

/// Latency percentiles in µs.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// One node's share of the measured window.
#[derive(Clone, Debug, Default)]
pub struct NodeFigures {
    /// CPU of its shard threads, in % of one core.
    pub cpu_percent: f64,
    /// CPU of its shard threads per successful proposal in the window, µs (its whole
    /// share of each acknowledged value: leader or follower work, codec, links, WAL).
    pub cpu_us_per_op: f64,
    /// fdatasyncs (WAL writes) per second.
    pub fdatasyncs_per_s: f64,
    /// WAL busy: % of the window with a write in flight, averaged over its shards.
    pub wal_busy_percent: f64,
    /// Shard loop iterations per second.
    pub iterations_per_s: f64,
    /// Instances it chose as leader, per second.
    pub chosen_as_leader_per_s: f64,
}

/// Everything one run reports.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Successful proposals per second in the window.
    pub ops_per_s: f64,
    /// Their payload, MB/s (10^6 bytes).
    pub mb_per_s: f64,
    /// Successful proposals in the window.
    pub ok: u64,
    /// Failed proposals in the window, by error.
    pub errors: BTreeMap<String, u64>,
    /// Open loop: scheduled in the window, never issued.
    pub missed: u64,
    /// Latency, µs.
    pub latency: Latency,
    /// Elections started during the window, all nodes together.
    pub elections: u64,
    /// Elections since the cluster started (the first ones included).
    pub elections_total: u64,
    /// Values per instance applied (the batching factor).
    pub values_per_instance: f64,
    /// WAL records per fdatasync, all nodes together.
    pub records_per_fdatasync: f64,
    /// fdatasyncs per second, all nodes together.
    pub fdatasyncs_per_s: f64,
    /// Mean ms per WAL write as the shard loop sees it, and inside the disk.
    pub write_ms: f64,
    /// Mean ms per WAL write inside the disk.
    pub disk_ms: f64,
    /// Of `disk_ms`, the mean milliseconds inside fdatasync.
    pub sync_ms: f64,
    /// Per node.
    pub nodes: BTreeMap<u32, NodeFigures>,
    /// CPU of the client thread, % of one core.
    pub client_cpu_percent: f64,
    /// CPU of the whole process, % of one core.
    pub process_cpu_percent: f64,
    /// Peer messages dropped in the window.
    pub dropped_messages: u64,
    /// Peer messages the shards refused in the window (backpressure).
    pub refused_messages: u64,
    /// Messages the groups ignored in the window, by reason.
    pub ignored: BTreeMap<&'static str, u64>,
    /// Fatal errors of shards.
    pub fatal: Vec<String>,
    /// The machine's limits.
    pub limits: Limits,
    /// Payload MB/s × replicas ÷ disk sequential MB/s.
    pub disk_efficiency: f64,
    /// Payload MB/s × (replicas − 1) ÷ loopback TCP MB/s: the leader's outgoing copies.
    pub network_efficiency: f64,
    /// p99 ÷ fdatasync p99.
    pub p99_over_fsync_p99: f64,
    /// ops/s ÷ 4 KiB fdatasync rate.
    pub ops_over_fsync_rate: f64,
    /// Successful completions per second in each `BUCKET_MS` bucket, warm-up included.
    pub throughput: Vec<f64>,
    /// Latency CDF: (quantile, µs).
    pub cdf: Vec<(f64, f64)>,
    /// Memory and WAL bytes on disk over the run (empty for a remote cluster).
    pub resources: Vec<ResourceSample>,
}

impl Summary {
    /// Computes the figures.
    pub fn new(load: &Load, limits: &Limits, shards: u16) -> Summary {
        let h = &load.histogram;
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        let latency = if h.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50: us(0.5),
                p90: us(0.9),
                p99: us(0.99),
                p999: us(0.999),
                max: h.max() as f64 / 1e3,
                mean: h.mean() / 1e3,
            }
        };
        let w = load.window_s;
        let mut all = NodeSample::default();
        let mut nodes = BTreeMap::new();
        for (id, after) in &load.after.nodes {
            let before = load.before.nodes.get(id).cloned().unwrap_or_default();
            let d = after.since(&before);
            nodes.insert(
                id.0,
                NodeFigures {
                    cpu_percent: d.cpu_s / w * 100.0,
                    cpu_us_per_op: if load.ok == 0 {
                        0.0
                    } else {
                        d.cpu_s * 1e6 / load.ok as f64
                    },
                    fdatasyncs_per_s: d.writes as f64 / w,
                    wal_busy_percent: d.write_busy_ns as f64 / 1e9 / w * 100.0 / f64::from(shards),
                    iterations_per_s: d.iterations as f64 / w,
                    chosen_as_leader_per_s: d.chosen_as_leader as f64 / w,
                },
            );
            all.writes += d.writes;
            all.records += d.records;
            all.elections += d.elections;
            all.write_busy_ns += d.write_busy_ns;
            all.disk_ns += d.disk_ns;
            all.sync_ns += d.sync_ns;
            all.value_instances_applied += d.value_instances_applied;
            all.values_applied += d.values_applied;
            all.dropped_messages += d.dropped_messages;
            all.refused_messages += d.refused_messages;
            for (reason, count) in &d.ignored {
                *all.ignored.entry(*reason).or_default() += count;
            }
            all.fatal.extend(d.fatal);
        }
        let ops_per_s = load.ok as f64 / w;
        let mb_per_s = load.ok_bytes as f64 / w / 1e6;
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let bucket_s = BUCKET_MS as f64 / 1e3;
        Summary {
            ops_per_s,
            mb_per_s,
            ok: load.ok,
            errors: load.errors.clone(),
            missed: load.missed,
            elections: all.elections,
            elections_total: load.after.nodes.values().map(|n| n.elections).sum(),
            values_per_instance: ratio(
                all.values_applied as f64,
                all.value_instances_applied as f64,
            ),
            records_per_fdatasync: ratio(all.records as f64, all.writes as f64),
            fdatasyncs_per_s: all.writes as f64 / w,
            write_ms: ratio(all.write_busy_ns as f64 / 1e6, all.writes as f64),
            disk_ms: ratio(all.disk_ns as f64 / 1e6, all.writes as f64),
            sync_ms: ratio(all.sync_ns as f64 / 1e6, all.writes as f64),
            nodes,
            client_cpu_percent: (load.after.client_cpu_s - load.before.client_cpu_s) / w * 100.0,
            process_cpu_percent: (load.after.process_cpu_s - load.before.process_cpu_s) / w * 100.0,
            dropped_messages: all.dropped_messages,
            refused_messages: all.refused_messages,
            ignored: all.ignored,
            fatal: all.fatal,
            limits: limits.clone(),
            disk_efficiency: ratio(mb_per_s * f64::from(REPLICAS), limits.disk_mb_s),
            network_efficiency: ratio(mb_per_s * f64::from(REPLICAS - 1), limits.tcp_mb_s),
            p99_over_fsync_p99: ratio(latency.p99, limits.fsync_p99_us),
            ops_over_fsync_rate: ratio(ops_per_s, limits.fsync_rate),
            throughput: load.buckets.iter().map(|c| *c as f64 / bucket_s).collect(),
            cdf: if h.is_empty() {
                Vec::new()
            } else {
                h.iter_quantiles(10)
                    .map(|v| (v.quantile_iterated_to(), v.value_iterated_to() as f64 / 1e3))
                    .collect()
            },
            latency,
            resources: load.resources.clone(),
        }
    }

    /// The human summary, one figure per line.
    pub fn text(&self, o: &Options) -> Vec<String> {
        let mut lines = vec![format!(
            "throughput: {:.0} ops/s, {:.2} MB/s payload ({} ok{}{})",
            self.ops_per_s,
            self.mb_per_s,
            self.ok,
            if self.errors.is_empty() {
                String::new()
            } else {
                format!(", errors {:?}", self.errors)
            },
            if o.rate.is_some() {
                format!(", {} scheduled but never sent", self.missed)
            } else {
                String::new()
            }
        )];
        if self.missed > 0 {
            lines.push(format!(
                "open loop fell behind: {} of the proposals scheduled in the window were not \
                 sent by {DRAIN_S} s after it; offer a lower --rate or allow more --clients",
                self.missed
            ));
        }
        if self.cdf.is_empty() {
            lines.push("latency: no proposal of the window completed".to_string());
        } else {
            lines.push(self.latency_line(o));
        }
        lines.push(format!(
            "batching: {:.2} values per instance; {:.1} WAL records per fdatasync",
            self.values_per_instance, self.records_per_fdatasync
        ));
        let remote = o.target.is_some();
        lines.push(format!(
            "WAL: {:.0} fdatasyncs/s ({} nodes together{}); {:.2} ms per write as the loop sees it, {:.2} ms in the disk ({:.2} write + {:.2} fdatasync)",
            self.fdatasyncs_per_s,
            self.nodes.len(),
            if remote {
                ", from their status counters"
            } else if o.fsync {
                ""
            } else {
                "; UNSAFE: writes only, no fdatasync"
            },
            self.write_ms,
            self.disk_ms,
            self.disk_ms - self.sync_ms,
            self.sync_ms
        ));
        lines.push(format!(
            "elections: {} during the window ({} since start); dropped peer messages {}",
            self.elections, self.elections_total, self.dropped_messages
        ));
        if self.refused_messages > 0 || !self.ignored.is_empty() {
            lines.push(format!(
                "refused by shards (backpressure): {}; ignored by groups: {:?}",
                self.refused_messages, self.ignored
            ));
        }
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|(id, n)| {
                // A remote node's threads are in another process: no CPU figure.
                let cpu = if remote {
                    "n/a (remote)".to_string()
                } else {
                    format!("{:.0} %, {:.2} us/op", n.cpu_percent, n.cpu_us_per_op)
                };
                format!(
                    "node {id} {cpu} (WAL busy {:.0} % per shard, {:.0} loops/s, leads {:.0} inst/s)",
                    n.wal_busy_percent, n.iterations_per_s, n.chosen_as_leader_per_s
                )
            })
            .collect();
        lines.push(format!(
            "CPU (% of one core, and us of CPU per acknowledged value): {}; client thread {:.0} %; {} {:.0} %",
            nodes.join(", "),
            self.client_cpu_percent,
            if remote { "this process" } else { "process" },
            self.process_cpu_percent
        ));
        let lim = &self.limits;
        if remote {
            lines.push(
                "efficiency: n/a (remote): the cluster's disk and network limits are not measured from here"
                    .to_string(),
            );
        } else if lim.disk_mb_s > 0.0 {
            lines.push(format!(
                "efficiency: payload x {REPLICAS} replicas / disk = {:.3}; payload x {} copies / loopback TCP = {:.3}; p99 / fdatasync p99 = {:.1}; ops/s / fdatasync rate = {:.1}",
                self.disk_efficiency,
                REPLICAS - 1,
                self.network_efficiency,
                self.p99_over_fsync_p99,
                self.ops_over_fsync_rate
            ));
        }
        lines.extend(self.resources.iter().map(ResourceSample::line));
        lines.extend(Growth::of(&self.resources).map(|growth| growth.line()));
        for fatal in &self.fatal {
            lines.push(format!("FATAL: {fatal}"));
        }
        lines
    }

    fn latency_line(&self, o: &Options) -> String {
        let l = &self.latency;
        format!(
            "latency{}: p50 {:.0} us, p90 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us",
            if o.rate.is_some() {
                " (from the scheduled send)"
            } else {
                ""
            },
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max
        )
    }

    /// Every figure, the configuration and the limits, as JSON.
    pub fn json(&self, o: &Options) -> Value {
        let l = &self.latency;
        json!({
            "config": config_json(o),
            "ops_per_s": self.ops_per_s,
            "mb_per_s": self.mb_per_s,
            "ok": self.ok,
            "errors": self.errors,
            "missed": self.missed,
            "latency_us": {
                "p50": l.p50, "p90": l.p90, "p99": l.p99, "p999": l.p999,
                "max": l.max, "mean": l.mean,
            },
            "values_per_instance": self.values_per_instance,
            "records_per_fdatasync": self.records_per_fdatasync,
            "fdatasyncs_per_s": self.fdatasyncs_per_s,
            "wal_write_ms": self.write_ms,
            "wal_disk_ms": self.disk_ms,
            "wal_fdatasync_ms": self.sync_ms,
            "elections": self.elections,
            "elections_total": self.elections_total,
            "dropped_messages": self.dropped_messages,
            "nodes": self.nodes.iter().map(|(id, n)| json!({
                "node": id,
                "cpu_percent": n.cpu_percent,
                "cpu_us_per_op": n.cpu_us_per_op,
                "fdatasyncs_per_s": n.fdatasyncs_per_s,
                "wal_busy_percent": n.wal_busy_percent,
                "loop_iterations_per_s": n.iterations_per_s,
                "chosen_as_leader_per_s": n.chosen_as_leader_per_s,
            })).collect::<Vec<_>>(),
            "client_cpu_percent": self.client_cpu_percent,
            "process_cpu_percent": self.process_cpu_percent,
            "fatal": self.fatal,
            "limits": self.limits.json(),
            "efficiency": {
                "disk": self.disk_efficiency,
                "network": self.network_efficiency,
                "p99_over_fdatasync_p99": self.p99_over_fsync_p99,
                "ops_over_fdatasync_rate": self.ops_over_fsync_rate,
            },
            "throughput": {
                "bucket_ms": BUCKET_MS,
                "warmup_s": o.warmup,
                "ops_per_s": self.throughput,
            },
            "latency_cdf": self.cdf.iter().map(|(q, v)| json!([q, v])).collect::<Vec<_>>(),
            "resources": self.resources.iter().map(ResourceSample::json).collect::<Vec<_>>(),
            "resource_growth": Growth::of(&self.resources).map(|growth| growth.json()),
        })
    }
}

/// The run's settings as JSON.
pub fn config_json(o: &Options) -> Value {
    let mut config = json!({
        "groups": o.groups,
        "clients": o.clients,
        "value_size": o.value_sizes.to_string(),
        "value_size_mean": o.value_sizes.mean(),
        "loop": if o.rate.is_some() { "open" } else { "closed" },
        "rate": o.rate,
        "seconds": o.seconds,
        "warmup": o.warmup,
    });
    let own = if let Some(target) = &o.target {
        // The running cluster's own configuration decides the rest.
        json!({
            "remote": true,
            "target": target,
            "cluster": o.cluster,
        })
    } else {
        json!({
            "replicas": REPLICAS,
            "window": o.window,
            "batch": o.batch,
            "batch_bytes": o.batch_bytes,
            "shards": o.shards,
            "pin": o.pin,
            "fsync": o.fsync,
            "truncation": o.truncation,
        })
    };
    if let (Some(config), Value::Object(own)) = (config.as_object_mut(), own) {
        config.extend(own);
    }
    config
}
