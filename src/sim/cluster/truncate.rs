//! WAL truncation in the simulator: carrying out a shard's `Effects::wal_truncate` on
//! its flat disk image, by what a node's store makes observable. The shard's index
//! (`LogIndex::release_through`) is released at and below each group's watermark, so
//! later catch-up reads there are answered `WalReadOutcome::Truncated` by the real
//! `wal::catch_up`; the real `wal::compaction::plan` runs over the index with notional
//! segments of `SEGMENT_PAYLOAD_SIZE` bytes of the image, and its rewrites (state
//! records, and copies of the pinned Accepts and Learns read back from the image and
//! decoded) go back to the shard as `ShardInput::WalTruncateDone`, which appends them
//! as a node's shard does. `checkers::truncation` sees every watermark with the group's
//! durable checkpoint.
//!
//! The image is never shortened and no segment is freed; instead a restart's recovery
//! drops every Accept and Learn at or below the group's released watermark
//! (`ShardSlot::released`) before the replay, the worst a store that freed segments
//! can leave, so restores on a truncated log (and a damaged newest checkpoint's
//! fallback below the watermark) run here as on a node.
//!
//! Invariant: the answer comes after a fixed disk latency (the shortest write latency:
//! no draw, so the PRNG streams are unchanged) and is dropped if the node restarts.

use super::{Cluster, Event};
use crate::paxos::{GroupId, Instance, Record};
use crate::runtime::{ShardInput, WalTruncate};
use crate::sim::checkers::Violation;
use crate::wal::compaction::{self, CompactionConfig, Rewrite};
use crate::wal::record::{self, Content, DecodeLimits};

/// Bytes of the image taken as one segment by the compaction plan.
pub(super) const SEGMENT_PAYLOAD_SIZE: u64 = 256 << 10;

impl Cluster {
    /// Truncates the WAL of `node`'s `shard` below `truncate.watermarks` now and
    /// schedules the answer with the records to carry forward.
    pub(super) fn wal_truncate(
        &mut self,
        node: usize,
        shard: usize,
        truncate: &WalTruncate,
    ) -> Result<(), Violation> {
        let id = self.nodes[node].id;
        let slot = &mut self.nodes[node].shards[shard];
        let core = slot.shard.as_ref().expect("a shard that truncates runs");
        for (group, watermark) in &truncate.watermarks {
            let durable = core.checkpoints().durable_through(*group);
            self.checkers
                .truncation
                .observe_truncate(id, *group, *watermark, durable)?;
        }
        for (group, watermark) in &truncate.watermarks {
            slot.index.release_through(*group, *watermark);
            let released = slot.released.entry(*group).or_insert(Instance(0));
            *released = (*released).max(*watermark);
        }
        let current = core.commit().offset_next() / SEGMENT_PAYLOAD_SIZE;
        let plan = compaction::plan(
            &slot.index,
            &truncate.watermarks,
            SEGMENT_PAYLOAD_SIZE,
            slot.log_start.min(current),
            current,
            &CompactionConfig::default(),
        );
        slot.log_start = slot.log_start.max(plan.log_start);
        let rewrites = plan
            .rewrites
            .into_iter()
            .map(|rewrite| match rewrite {
                Rewrite::State(record) => Ok(record),
                Rewrite::Copy {
                    group,
                    instance,
                    entry,
                } => {
                    let bytes = slot.disk.read(entry.offset, entry.size as usize);
                    decode_copy(&bytes, slot.salt, group, instance)
                        .map_err(|why| Violation::new("wal_read", format!("node {}: {why}", id.0)))
                }
            })
            .collect::<Result<Vec<Record>, Violation>>()?;
        self.report.wal_truncations += 1;
        self.report.wal_rewrites += rewrites.len() as u64;
        let incarnation = self.nodes[node].incarnation;
        self.schedule(
            self.now + self.options.disk_write_latency_ns_min,
            Event::WalTruncateDone {
                node,
                shard,
                incarnation,
                rewrites,
            },
        );
        Ok(())
    }

    /// The answer of a truncation, unless `node` restarted meanwhile.
    pub(super) fn on_wal_truncate_done(
        &mut self,
        node: usize,
        shard: usize,
        incarnation: u32,
        rewrites: Vec<Record>,
    ) -> Result<(), Violation> {
        if self.nodes[node].up && self.nodes[node].incarnation == incarnation {
            self.step_shard(node, shard, ShardInput::WalTruncateDone { rewrites })?;
        }
        Ok(())
    }
}

/// The record compaction copies: the indexed Accept or Learn of (`group`, `instance`).
fn decode_copy(
    bytes: &[u8],
    salt: u32,
    group: GroupId,
    instance: Instance,
) -> Result<Record, String> {
    let what = || format!("group {} instance {}", group.0, instance.0);
    let (decoded, _) = record::decode(bytes, salt, &DecodeLimits::default())
        .map_err(|e| format!("compaction copy of {}: {e}", what()))?;
    match decoded.content {
        Content::Record(record) => Ok(record),
        Content::Pad => Err(format!("compaction copy of {}: a pad", what())),
    }
}
