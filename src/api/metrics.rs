//! A node's metrics: a snapshot of every shard's counters ([`Metrics`], taken by
//! [`NodeHandle::metrics`](super::NodeHandle::metrics)) and its exposition in the
//! Prometheus text format ([`Metrics::encode`], or the snapshot as a
//! `prometheus_client` [`Collector`] for a program that serves its own registry).
//!
//! Each shard keeps its own numbers on its own core (plain fields and cells, no locks
//! and no cross-core traffic on the hot path); a snapshot asks every shard for its
//! status between two steps of its loop, as `NodeHandle::status` does. Names are
//! `synod_*`; counters end in `_total`; times are in seconds and sizes in bytes; every
//! per-shard series has a `shard` label, every per-group one a `group` label.
//!
//! Invariants: encoding reads the snapshot only; a series' type never changes; one
//! name per concept, the same as in the status (`chosen_through`, `applied_through`,
//! `durable_lsn`, ...).

use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::paxos::{NodeId, Role};
use crate::runtime::histogram::Histogram;
use crate::runtime::request::{GroupStatus, LogMemory, ShardStatus};

/// The `Content-Type` of [`Metrics::encode`]'s text (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Nanoseconds per second, for the `_seconds` series.
const NS_PER_S: f64 = 1e9;

/// One node's counters at one moment: every shard's status, in shard order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metrics {
    /// The node.
    pub node: NodeId,
    /// Its shards' statuses, in shard order (`ShardStatus::metrics` included).
    pub shards: Vec<ShardStatus>,
}

impl Metrics {
    /// The snapshot in the Prometheus text exposition format (version 0.0.4, served
    /// as [`CONTENT_TYPE`]): `# HELP` and `# TYPE` lines, then one line per series.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut registry = Registry::with_prefix("synod");
        registry.register_collector(Box::new(self.clone()));
        let mut text = String::new();
        // Writing into a `String` cannot fail, and every value here encodes.
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("encoding into a String does not fail");
        text
    }
}

impl Collector for Metrics {
    /// Writes every family of the snapshot (names without the registry's prefix: a
    /// registry made `with_prefix("synod")` gives the documented `synod_*` names).
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let out = &mut encoder;
        gauge(
            out,
            "node_info",
            "The node's id (value 1).",
            [([("node", self.node.0)], 1u64)],
        )?;
        self.encode_shards(out)?;
        self.encode_peers(out)?;
        self.encode_groups(out)
    }
}

/// The `shard` label of `status`.
fn shard(status: &ShardStatus) -> [(&'static str, u16); 1] {
    [("shard", status.shard)]
}

/// A family of counters, one series per `(labels, value)`.
fn counter<L: EncodeLabelSet, V: EncodeCounterValue>(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, V)>,
) -> Result<(), fmt::Error> {
    let mut metric = out.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        metric
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, V, u64>(&value, None)?;
    }
    Ok(())
}

/// A family of gauges, one series per `(labels, value)`.
fn gauge<L: EncodeLabelSet, V: EncodeGaugeValue>(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, V)>,
) -> Result<(), fmt::Error> {
    let mut metric = out.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        metric.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

/// A family of histograms, one per `(labels, histogram)`; bounds and sums are
/// divided by `scale` (1e9 turns nanoseconds into seconds).
fn histogram<'h, L: EncodeLabelSet>(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    scale: f64,
    rows: impl IntoIterator<Item = (L, &'h Histogram)>,
) -> Result<(), fmt::Error> {
    let mut metric = out.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in rows {
        // Per-bucket counts; the encoder makes them cumulative and adds `+Inf`.
        let buckets: Vec<(f64, u64)> = h
            .bounds()
            .iter()
            .map(|&bound| bound as f64 / scale)
            .chain(std::iter::once(f64::INFINITY))
            .zip(h.counts().iter().copied())
            .collect();
        metric
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(h.sum() as f64 / scale, h.count(), &buckets, None)?;
    }
    Ok(())
}

/// A per-shard number of the status.
type ShardValue = fn(&ShardStatus) -> u64;

/// A per-group number of the status.
type GroupValue = fn(&GroupStatus) -> u64;

/// Counters with one series per shard: name (without `synod_` and `_total`), help,
/// value.
const SHARD_COUNTERS: &[(&str, &str, ShardValue)] = &[
    ("loop_iterations", "Iterations of the shard loop.", |s| {
        s.iterations
    }),
    (
        "elections_started",
        "Elections (Phase 1 campaigns) this node started, summed over groups.",
        |s| s.elections,
    ),
    (
        "elections_won",
        "Times this node became a group's leader (leader changes toward it).",
        |s| s.metrics.elections_won,
    ),
    (
        "checksum_mismatches",
        "Heartbeat checksum mismatches seen (each fences the replica).",
        |s| s.metrics.checksum_mismatches,
    ),
    (
        "chosen_as_leader",
        "Instances this node chose as leader, summed over groups.",
        |s| s.chosen_as_leader,
    ),
    (
        "value_instances_applied",
        "Chosen instances carrying client values that were applied.",
        |s| s.value_instances_applied,
    ),
    (
        "values_applied",
        "Client values applied (over value_instances_applied: the batching factor).",
        |s| s.values_applied,
    ),
    ("checkpoints_saved", "Checkpoints saved.", |s| {
        s.checkpoints_saved
    }),
    (
        "checkpoints_failed",
        "Checkpoints that failed (retried by the policy).",
        |s| s.checkpoints_failed,
    ),
    (
        "checkpoints_installed",
        "Checkpoints received from peers and installed in process.",
        |s| memory_sum(s, |m| m.checkpoints_installed),
    ),
    (
        "peer_messages_refused",
        "Peer messages refused for backpressure (WAL or held-ack limits).",
        |s| s.refused_messages,
    ),
    (
        "catch_up_raw_runs_sent",
        "Catch-up runs of raw WAL records sent to peers.",
        |s| s.catch_up.raw_runs_sent,
    ),
    (
        "catch_up_raw_bytes_sent",
        "Bytes of raw WAL records sent to peers catching up.",
        |s| s.catch_up.raw_bytes_sent,
    ),
    (
        "catch_up_raw_runs_received",
        "Catch-up runs of raw WAL records received and verified.",
        |s| s.catch_up.raw_runs_received,
    ),
    (
        "catch_up_raw_refused",
        "Catch-up runs of raw WAL records received and refused.",
        |s| s.catch_up.raw_refused,
    ),
    (
        "catch_up_wal_chunks_served",
        "Catch-up chunks sent from entries read back from the WAL.",
        |s| memory_sum(s, |m| m.catch_up_wal_served),
    ),
    (
        "catch_up_streams_restarted",
        "Catch-up streams started over with chunks in flight.",
        |s| memory_sum(s, |m| m.catch_up_streams_restarted),
    ),
    (
        "wal_writes",
        "WAL writes (one write and one fdatasync each, for all groups of the shard).",
        |s| s.writes,
    ),
    (
        "wal_records",
        "WAL records written (over wal_writes: the group commit batch).",
        |s| s.records,
    ),
    (
        "proposals_received",
        "Proposals handed to the shard.",
        |s| s.metrics.proposals.received,
    ),
    ("proposals_applied", "Proposals chosen and applied.", |s| {
        s.metrics.proposals.applied
    }),
    ("net_frames_sent", "Frames written to peers.", |s| {
        s.metrics.net.frames_sent
    }),
    (
        "net_bytes_sent",
        "Bytes written to peers, frame headers included.",
        |s| s.metrics.net.bytes_sent,
    ),
    ("net_messages_sent", "Messages written to peers.", |s| {
        s.metrics.net.messages_sent
    }),
    (
        "net_frames_received",
        "Frames received from peers and delivered.",
        |s| s.metrics.net.frames_received,
    ),
    (
        "net_bytes_received",
        "Bytes of frames received from peers, headers included.",
        |s| s.metrics.net.bytes_received,
    ),
    (
        "net_messages_received",
        "Messages received from peers.",
        |s| s.metrics.net.messages_received,
    ),
];

/// Counters of seconds (from nanoseconds) with one series per shard.
const SHARD_SECONDS: &[(&str, &str, ShardValue)] = &[
    (
        "wal_write_busy_seconds",
        "Seconds with a WAL write in flight, as the shard loop sees it.",
        |s| s.write_busy_ns,
    ),
    (
        "wal_disk_seconds",
        "Seconds the WAL writes took on the disk (write and fdatasync).",
        |s| s.disk_ns,
    ),
    (
        "wal_fdatasync_busy_seconds",
        "Seconds spent in fdatasync, summed.",
        |s| s.sync_ns,
    ),
];

/// Gauges with one series per shard.
const SHARD_GAUGES: &[(&str, &str, ShardValue)] = &[
    (
        "shard_up",
        "1 while the shard runs, 0 once it stopped for good.",
        |s| u64::from(s.fatal.is_none()),
    ),
    (
        "wal_durable_lsn",
        "The WAL's durable watermark: every record through this LSN is on disk.",
        |s| s.metrics.durable_lsn,
    ),
    (
        "wal_planned_lsn",
        "The last LSN assigned (minus wal_durable_lsn: records waiting for the disk).",
        |s| s.metrics.planned_lsn,
    ),
    (
        "wal_write_in_flight",
        "WAL writes (with their fdatasync) in flight.",
        |s| s.metrics.queues.wal_write_in_flight,
    ),
    ("wal_index_slots", "Instances the WAL's index holds.", |s| {
        s.wal_index_slots
    }),
    ("wal_index_bytes", "Bytes the WAL's index holds.", |s| {
        s.wal_index_size
    }),
    (
        "net_buffer_bytes",
        "Bytes of capacity the peer links' reusable buffers keep.",
        |s| s.net_buffer_size,
    ),
    (
        "recovery_records",
        "Records the shard's start decoded from its WAL.",
        |s| s.recovery.records,
    ),
];

/// The `queue` label values of `synod_queue_depth`.
const QUEUES: &[(&str, ShardValue)] = &[
    ("proposals_waiting", |s| s.metrics.queues.proposals_waiting),
    ("values_queued", |s| s.metrics.queues.values_queued),
    ("instances_in_flight", |s| {
        s.metrics.queues.instances_in_flight
    }),
    ("reads_waiting", |s| s.metrics.queues.reads_waiting),
    ("log_reads_waiting", |s| s.metrics.queues.log_reads_waiting),
    ("held_messages", |s| s.metrics.queues.held_messages),
];

/// The `reason` label values of `synod_net_messages_dropped_total`.
const DROPS: &[(&str, ShardValue)] = &[
    ("unknown_peer", |s| {
        s.metrics.net.messages_dropped_unknown_peer
    }),
    ("disconnected", |s| {
        s.metrics.net.messages_dropped_disconnected
    }),
    ("queue_full", |s| s.metrics.net.messages_dropped_queue_full),
    ("too_large", |s| s.metrics.net.messages_dropped_too_large),
];

/// The `outcome` label values of `synod_log_reads_total`.
const LOG_READS: &[(&str, ShardValue)] = &[
    ("served", |s| s.log_reads.served),
    ("served_from_wal", |s| s.log_reads.served_from_wal),
    ("refused", |s| s.log_reads.refused),
    ("waited", |s| s.log_reads.waited),
];

/// Gauges with one series per group.
const GROUP_GAUGES: &[(&str, &str, GroupValue)] = &[
    (
        "group_chosen_through",
        "The group's chosen watermark (inclusive) on this replica.",
        |g| g.chosen_through.0,
    ),
    (
        "group_applied_through",
        "The group's applied watermark (inclusive) on this replica.",
        |g| g.applied_through.0,
    ),
    (
        "group_checkpoint_through",
        "The group's last durable checkpoint (0: none); the WAL below is not needed.",
        |g| g.checkpoint_through.0,
    ),
    (
        "group_leader",
        "1 while this replica leads the group.",
        |g| u64::from(g.role == Role::Leader),
    ),
    (
        "group_voting",
        "1 while this replica votes (0 while it re-learns lost state).",
        |g| u64::from(g.voting),
    ),
    (
        "group_retired",
        "1 when this replica lost its state after a membership change and never votes \
         again under this node id (remove it, restart the node under a new id).",
        |g| u64::from(g.retired),
    ),
    (
        "group_promised_round",
        "The round of the highest ballot promised: each leader change raises it.",
        |g| g.promised.round,
    ),
];

/// A number of the groups' in-memory logs, summed over the shard's groups.
fn memory_sum(s: &ShardStatus, value: fn(&LogMemory) -> u64) -> u64 {
    s.groups
        .iter()
        .filter_map(|g| g.memory.as_ref())
        .map(value)
        .sum()
}

impl Metrics {
    /// One family per row of `table`, one series per shard (counters, or gauges).
    fn per_shard(
        &self,
        out: &mut DescriptorEncoder,
        table: &[(&str, &str, ShardValue)],
        kind: MetricType,
    ) -> Result<(), fmt::Error> {
        for (name, help, value) in table {
            let rows = self.shards.iter().map(|s| (shard(s), value(s)));
            match kind {
                MetricType::Gauge => gauge(out, name, help, rows)?,
                _ => counter(out, name, help, rows)?,
            }
        }
        Ok(())
    }

    /// One family with one series per shard and per row of `table` (its label
    /// `label`).
    fn per_shard_labelled(
        &self,
        out: &mut DescriptorEncoder,
        (name, help, label): (&str, &str, &'static str),
        table: &[(&'static str, ShardValue)],
        kind: MetricType,
    ) -> Result<(), fmt::Error> {
        let rows = self.shards.iter().flat_map(|s| {
            table
                .iter()
                .map(move |(value_of, value)| ((shard(s), [(label, *value_of)]), value(s)))
        });
        match kind {
            MetricType::Gauge => gauge(out, name, help, rows),
            _ => counter(out, name, help, rows),
        }
    }

    /// One counter family from a by-reason map of each shard, labelled `label`.
    fn per_shard_map(
        &self,
        out: &mut DescriptorEncoder,
        (name, help, label): (&str, &str, &'static str),
        map: fn(&ShardStatus) -> &BTreeMap<&'static str, u64>,
    ) -> Result<(), fmt::Error> {
        let rows = self.shards.iter().flat_map(|s| {
            map(s)
                .iter()
                .map(move |(reason, n)| ((shard(s), [(label, *reason)]), *n))
        });
        counter(out, name, help, rows)
    }

    /// Every per-shard family.
    fn encode_shards(&self, out: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        self.per_shard(out, SHARD_COUNTERS, MetricType::Counter)?;
        self.per_shard(out, SHARD_GAUGES, MetricType::Gauge)?;
        for (name, help, ns) in SHARD_SECONDS {
            let rows = self
                .shards
                .iter()
                .map(|s| (shard(s), ns(s) as f64 / NS_PER_S));
            counter(out, name, help, rows)?;
        }
        let rows = self
            .shards
            .iter()
            .map(|s| (shard(s), s.recovery.total_ns as f64 / NS_PER_S));
        let help = "Seconds the shard's start took, from the directory probe to listening.";
        gauge(out, "recovery_seconds", help, rows)?;
        let sizes = self
            .shards
            .iter()
            .map(|s| (shard(s), &s.metrics.write_size));
        let help = "Bytes of each WAL write (whole 4 KiB blocks).";
        histogram(out, "wal_write_size_bytes", help, 1.0, sizes)?;
        let syncs = self
            .shards
            .iter()
            .map(|s| (shard(s), &s.metrics.sync_latency));
        let help = "Seconds of each WAL fdatasync.";
        histogram(out, "wal_fdatasync_seconds", help, NS_PER_S, syncs)?;
        let help = "What waits in the shard now, by queue.";
        self.per_shard_labelled(
            out,
            ("queue_depth", help, "queue"),
            QUEUES,
            MetricType::Gauge,
        )?;
        let help = "Messages to peers dropped, by reason.";
        let family = ("net_messages_dropped", help, "reason");
        self.per_shard_labelled(out, family, DROPS, MetricType::Counter)?;
        let help = "Log reads by outcome (served, of which from the WAL; refused; waited).";
        self.per_shard_labelled(
            out,
            ("log_reads", help, "outcome"),
            LOG_READS,
            MetricType::Counter,
        )?;
        let help = "Proposals answered with an error, by kind.";
        self.per_shard_map(out, ("proposals_failed", help, "kind"), |s| {
            &s.metrics.proposals.failed
        })?;
        let help = "Messages and requests the groups ignored, by reason.";
        self.per_shard_map(out, ("messages_ignored", help, "reason"), |s| &s.ignored)?;
        let help = "Peer connections closed or refused, by reason.";
        self.per_shard_map(out, ("net_connections_closed", help, "reason"), |s| {
            &s.metrics.net.closes
        })
    }

    /// The peer links: connections by direction, each peer's state.
    fn encode_peers(&self, out: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let rows = self.shards.iter().flat_map(|s| {
            let net = &s.metrics.net;
            [
                ("outbound", net.connects_outbound),
                ("inbound", net.connects_inbound),
            ]
            .map(|(direction, n)| ((shard(s), [("direction", direction)]), n))
        });
        let help = "Peer connections that completed their handshake, by direction.";
        counter(out, "net_connects", help, rows)?;
        let rows = self.shards.iter().flat_map(|s| {
            s.metrics.peers.iter().flat_map(move |p| {
                [
                    ("outbound", p.outbound_connected),
                    ("inbound", p.inbound_connected),
                ]
                .map(|(direction, up)| {
                    let labels = ([("peer", p.node.0)], [("direction", direction)]);
                    ((shard(s), labels), u64::from(up))
                })
            })
        });
        let help =
            "1 while a handshaken connection to (outbound) or from (inbound) the peer is up.";
        gauge(out, "peer_connected", help, rows)?;
        let rows = self.shards.iter().flat_map(|s| {
            s.metrics
                .peers
                .iter()
                .map(move |p| ((shard(s), [("peer", p.node.0)]), p.queue_size))
        });
        let help = "Bytes queued toward the peer, not yet handed to its socket.";
        gauge(out, "peer_queue_bytes", help, rows)
    }

    /// Every group: watermarks, leadership, ballot.
    fn encode_groups(&self, out: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        for (name, help, value) in GROUP_GAUGES {
            let rows = self
                .shards
                .iter()
                .flat_map(|s| &s.groups)
                .map(|g| ([("group", g.group.0)], value(g)));
            gauge(out, name, help, rows)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
