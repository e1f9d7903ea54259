//! WAL truncation releases nothing a replica still needs: a group's log is released
//! only below a checkpoint the replica holds durably, and a restart restores every
//! group at or above everything its WAL released.
//!
//! Source: Chandra, Griesemer, Redstone, "Paxos Made Live" (PODC 2007), §5.5: a
//! replica's log prefix may be discarded only once a snapshot covering it is durable,
//! since the snapshot then replaces it; Ongaro's Raft thesis §5.1 states the same rule
//! for log compaction (the snapshot is written before the log is discarded).
//!
//! Property, per (node, group):
//! - a truncation's watermark is at or below the group's durable checkpoint on that
//!   replica when the executor carries it out;
//! - after a restart (disk kept), the group is restored from a checkpoint at or above
//!   the highest watermark its WAL was ever truncated to, or else (its newest
//!   checkpoint damaged) it does not promise from the released range: its vote floor
//!   lies above the watermark (`paxos::checkpoint`: the votes there are gone, and
//!   reporting them as holes could overwrite a chosen value).
//!
//! Method: the executor reports each truncation with the group's durable checkpoint
//! ([`TruncationChecker::observe_truncate`]) and each restart's restored checkpoint
//! ([`TruncationChecker::observe_restore`]); a lost disk forgets the node's watermarks
//! (its WAL is gone, and it rejoins as a learner).

use super::Violation;
use crate::paxos::{GroupId, Instance, NodeId};
use std::collections::BTreeMap;

const NAME: &str = "truncation";

/// Checks that truncation releases only what a durable checkpoint covers.
#[derive(Debug, Default)]
pub struct TruncationChecker {
    /// The highest watermark each replica's WAL was truncated to.
    released: BTreeMap<(NodeId, GroupId), Instance>,
}

impl TruncationChecker {
    /// A checker that has seen nothing.
    #[must_use]
    pub fn new() -> TruncationChecker {
        TruncationChecker::default()
    }

    /// `node` truncates `group`'s WAL at and below `watermark`, its durable checkpoint
    /// being `durable` now.
    ///
    /// # Errors
    ///
    /// The watermark lies above the durable checkpoint.
    pub fn observe_truncate(
        &mut self,
        node: NodeId,
        group: GroupId,
        watermark: Instance,
        durable: Instance,
    ) -> Result<(), Violation> {
        if watermark > durable {
            return Err(Violation::new(
                NAME,
                format!(
                    "node {} group {}: WAL truncated through {} above its durable \
                     checkpoint {}",
                    node.0, group.0, watermark.0, durable.0
                ),
            ));
        }
        let released = self.released.entry((node, group)).or_insert(Instance(0));
        *released = (*released).max(watermark);
        Ok(())
    }

    /// `node` restarted `group` from the checkpoint at `restored` (`None`: none), its
    /// vote floor then at `vote_floor`.
    ///
    /// # Errors
    ///
    /// Its WAL was truncated above what it restored and it would promise there.
    pub fn observe_restore(
        &self,
        node: NodeId,
        group: GroupId,
        restored: Option<Instance>,
        vote_floor: Instance,
    ) -> Result<(), Violation> {
        let released = self
            .released
            .get(&(node, group))
            .copied()
            .unwrap_or(Instance(0));
        let restored = restored.unwrap_or(Instance(0));
        if restored < released && vote_floor <= released {
            return Err(Violation::new(
                NAME,
                format!(
                    "node {} group {}: restarted from checkpoint {} but its WAL was \
                     truncated through {} (instances {}..={} are lost) and it would \
                     promise from there (vote floor {})",
                    node.0,
                    group.0,
                    restored.0,
                    released.0,
                    restored.0 + 1,
                    released.0,
                    vote_floor.0
                ),
            ));
        }
        Ok(())
    }

    /// `node` restarted; with `disk_lost` its WAL is gone and so are its watermarks.
    pub fn reset(&mut self, node: NodeId, disk_lost: bool) {
        if disk_lost {
            self.released.retain(|(n, _), _| *n != node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: NodeId = NodeId(1);
    const G: GroupId = GroupId(3);

    // Goal: truncation at or below the durable checkpoint and a restart at or above
    // the released watermark pass; a lost disk forgets the watermark.
    // Method: truncate to 10 with checkpoint 12, restore at 12, lose the disk, restore none.
    #[test]
    fn within_the_checkpoint_passes() {
        let mut c = TruncationChecker::new();
        c.observe_truncate(N, G, Instance(10), Instance(12))
            .expect("below");
        let one = Instance(1);
        c.observe_restore(N, G, Some(Instance(12)), one)
            .expect("above");
        c.observe_restore(N, G, Some(Instance(10)), one)
            .expect("at");
        c.observe_restore(N, G, Some(Instance(5)), Instance(11))
            .expect("below, not promising there");
        c.reset(N, false);
        assert!(
            c.observe_restore(N, G, None, one).is_err(),
            "kept across a crash"
        );
        c.reset(N, true);
        c.observe_restore(N, G, None, one).expect("disk lost");
    }

    // Goal: a watermark above the durable checkpoint, and a restart below a released
    // watermark, are both violations.
    // Method: report each.
    #[test]
    fn beyond_the_checkpoint_fails() {
        let mut c = TruncationChecker::new();
        let err = c
            .observe_truncate(N, G, Instance(13), Instance(12))
            .expect_err("above");
        assert_eq!(err.checker, "truncation");
        c.observe_truncate(N, G, Instance(12), Instance(12))
            .expect("at");
        let err = c
            .observe_restore(N, G, Some(Instance(11)), Instance(12))
            .expect_err("below, promising there");
        assert!(err.message.contains("12..=12"), "{}", err.message);
    }
}
