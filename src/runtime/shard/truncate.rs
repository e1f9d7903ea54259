//! The shard's side of WAL truncation (`runtime::truncation`): the watermarks it hands
//! the executor (`Effects::wal_truncate`) from the groups' durable checkpoints, and the
//! records the executor's compaction carries forward, appended like any other record.

use super::{Effects, Shard};
use crate::paxos::{Nanos, Record};
use crate::runtime::truncation::Truncation;

impl Shard {
    /// At the end of a flush: asks for a truncation when a durable checkpoint rose
    /// (at most one in flight, at most one per interval); log reads from at or below a
    /// watermark handed out are answered `Truncated` from then on.
    pub(super) fn decide_truncation(&mut self, now: Nanos, effects: &mut Effects) {
        let checkpoints = &self.checkpoints;
        let durable = self
            .groups
            .keys()
            .map(|id| (*id, checkpoints.durable_through(*id)));
        if let Some(truncate) = self.truncation.decide(now, durable) {
            for (group, through) in &truncate.watermarks {
                self.log_reads.on_wal_released(*group, *through);
            }
            effects.wal_truncate = Some(truncate);
        }
    }

    /// The truncation asked is done: `rewrites` are appended through the group commit.
    pub(super) fn on_wal_truncate_done(&mut self, rewrites: Vec<Record>) {
        self.truncation.on_done(rewrites.len());
        self.out.persist.extend(rewrites);
        self.absorb();
    }

    /// The WAL truncation decisions (watermarks handed out, counters).
    #[must_use]
    pub fn truncation(&self) -> &Truncation {
        &self.truncation
    }
}
