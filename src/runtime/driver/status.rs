//! The shard's status, as a `Request::Status` answers it: every group's role and
//! watermarks, and the counters of the shard, its WAL writer, its links and its loop.
//!
//! Invariant: read-only; building a status changes nothing in the shard (it is served
//! between steps, from what the pure shard and the executors already count).

use std::collections::BTreeMap;

use super::Driver;
use crate::runtime::fatal::Fatal;
use crate::runtime::histogram::Histogram;
use crate::runtime::net::NetCounters;
use crate::runtime::request::{
    CatchUpStatus, GroupStatus, LogMemory, QueueDepths, ShardMetrics, ShardStatus,
};

impl Driver {
    /// The status of this shard now.
    pub(super) fn status(&self) -> ShardStatus {
        let counters = self.shard.counters();
        let net = self.net.counters();
        let wal = self.wal.counters();
        ShardStatus {
            shard: self.plan.shard,
            groups: self
                .shard
                .groups()
                .map(|g| GroupStatus {
                    group: g.config().group,
                    role: g.role(),
                    leader_hint: g.leader_hint(),
                    promised: g.promised(),
                    chosen_through: g.chosen_through(),
                    applied_through: g.applied_through(),
                    checksum: g.checksum(),
                    voting: g.is_voting(),
                    fenced: g.is_fenced(),
                    retired: g.is_retired(),
                    checkpoint_through: self.shard.checkpoints().durable_through(g.config().group),
                    memory: Some(LogMemory::of(g)),
                    voters: Some(g.latest_membership().voters().to_vec()),
                })
                .collect(),
            writes: counters.writes,
            write_busy_ns: wal.write_busy_ns,
            iterations: self.iterations,
            disk_ns: wal.disk_ns,
            sync_ns: wal.sync_ns,
            records: counters.records,
            elections: self.shard.groups().map(|g| g.counters().campaigns).sum(),
            chosen_as_leader: self
                .shard
                .groups()
                .map(|g| g.counters().chosen_as_leader)
                .sum(),
            value_instances_applied: self.value_instances_applied,
            values_applied: self.values_applied,
            checkpoints_saved: self.shard.checkpoints().counters().saved,
            checkpoints_failed: self.shard.checkpoints().counters().failed,
            thread_id: self.thread_id,
            dropped_messages: net.messages_dropped_unknown_peer
                + net.messages_dropped_disconnected
                + net.messages_dropped_queue_full
                + net.messages_dropped_too_large,
            refused_connections: net.closes.values().sum(),
            refused_messages: counters.refused_messages,
            ignored: {
                let mut ignored = BTreeMap::new();
                for group in self.shard.groups() {
                    for (reason, count) in &group.counters().ignored {
                        *ignored.entry(*reason).or_default() += count;
                    }
                }
                ignored
            },
            log_reads: self.shard.log_reads().counters.clone(),
            wal_index_slots: wal.index_slots,
            wal_index_size: wal.index_size,
            net_buffer_size: self.net.buffer_capacity() as u64,
            catch_up: {
                let raw = self.shard.catch_up_counters();
                CatchUpStatus {
                    raw_runs_sent: raw.raw_runs_sent,
                    raw_bytes_sent: raw.raw_bytes_sent,
                    raw_runs_received: raw.raw_runs_received,
                    raw_refused: raw.raw_refused,
                    records_decoded_for_peers: self.wal_reads.peer_records_decoded(),
                    records_decoded_for_log_reads: self.wal_reads.log_records_decoded(),
                }
            },
            fatal: self.shard.poisoned().map(Fatal::to_string),
            recovery: self.recovery,
            metrics: self.metrics(wal.sync_latency, wal.write_size, net),
        }
    }

    /// The status's `metrics`: the WAL writer's histograms and the links' counters
    /// (already taken by `status`), the rest read now.
    fn metrics(
        &self,
        sync_latency: Histogram,
        write_size: Histogram,
        net: NetCounters,
    ) -> ShardMetrics {
        let sum = |f: fn(&crate::paxos::Group) -> u64| self.shard.groups().map(f).sum();
        ShardMetrics {
            sync_latency,
            write_size,
            durable_lsn: self.shard.commit().durable_through().0,
            planned_lsn: self.shard.lsn_planned().0,
            proposals: self.proposal_counters.clone(),
            queues: QueueDepths {
                proposals_waiting: self.proposals.len() as u64,
                values_queued: sum(|g| g.queued_count() as u64),
                instances_in_flight: sum(|g| g.inflight_count() as u64),
                reads_waiting: self.reads.len() as u64,
                log_reads_waiting: self.log_reads.len() as u64,
                held_messages: self.shard.held_count() as u64,
                wal_write_in_flight: self.wal.writes_in_flight() as u64,
            },
            elections_won: sum(|g| g.counters().elections_won),
            checksum_mismatches: sum(|g| g.counters().checksum_mismatches),
            net,
            peers: self.net.peer_links(),
        }
    }
}
