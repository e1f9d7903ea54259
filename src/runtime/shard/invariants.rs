//! The shard's invariants (`Shard::invariants`), as the module docs of `runtime::shard`
//! state them, checked after every step by the simulator and the tests.

use super::{Shard, RECORD_QUEUE_KEEP};
use crate::paxos::Lsn;

impl Shard {
    /// Checks the invariants of the module docs and of every group.
    pub fn invariants(&self) {
        self.commit.invariants();
        self.checkpoints.invariants();
        self.transfers.invariants();
        self.truncation
            .invariants(|id| self.checkpoints.durable_through(id));
        for (id, group) in &self.groups {
            group.invariants();
            assert!(
                self.deadlines.contains(&(group.next_deadline(), *id)),
                "group {} deadline {} not indexed",
                id.0,
                group.next_deadline().0
            );
        }
        assert_eq!(self.deadlines.len(), self.groups.len(), "stale deadlines");
        assert!(
            self.out.persist.capacity() <= RECORD_QUEUE_KEEP,
            "persist queue keeps {} records of capacity, max {RECORD_QUEUE_KEEP}",
            self.out.persist.capacity()
        );
        assert!(
            !self.overflow.is_empty() || self.overflow.capacity() <= RECORD_QUEUE_KEEP,
            "empty overflow keeps {} records of capacity, max {RECORD_QUEUE_KEEP}",
            self.overflow.capacity()
        );
        assert!(
            self.reads.len() <= self.config.reads_pending_count_max,
            "{} reads wait, max {}",
            self.reads.len(),
            self.config.reads_pending_count_max
        );
        let mut previous = Lsn(0);
        for (lsn, _) in &self.held {
            assert!(*lsn >= previous, "held messages out of LSN order");
            previous = *lsn;
        }
        let mut previous = Lsn(0);
        for (lsn, read) in &self.wal_reads_held {
            assert!(*lsn >= previous, "held WAL reads out of LSN order");
            previous = *lsn;
            assert!(
                self.wal_reads_in_flight
                    .contains(&(read.group, read.reader)),
                "held WAL read of group {} for {:?} not counted in flight",
                read.group.0,
                read.reader
            );
        }
        self.log_reads
            .invariants(self.config.log_reads_wal_count_max);
    }
}
