//! The shard's status, as a `Request::Status` answers it: every group's role and
//! watermarks, and the counters of the shard, its WAL writer, its links and its loop.
//!
//! Invariant: read-only; building a status changes nothing in the shard (it is served
//! between steps, from what the pure shard and the executors already count).

use std::collections::BTreeMap;

use super::Driver;
use crate::runtime::fatal::Fatal;
use crate::runtime::request::{CatchUpStatus, GroupStatus, LogMemory, ShardStatus};

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
                    checkpoint_through: self.shard.checkpoints().durable_through(g.config().group),
                    memory: Some(LogMemory::of(g)),
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
        }
    }
}
