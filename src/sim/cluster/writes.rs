//! The WAL writes a simulated shard has in flight, as the simulator itself sees them:
//! ground truth of the contiguity rule (`wal::group_commit`), kept apart from the
//! shard's own `GroupCommit`, for the checkers; and the offset below which a bit flip
//! is provably detectable.
//!
//! Invariants (per incarnation of the shard):
//! - `in_flight` holds the writes issued and not yet passed by the durable watermark,
//!   in issue (LSN) order; its oldest write has not completed;
//! - `flip_limit` is the offset of the batch whose first LSN is the largest
//!   `unsynced_from` of a durable write: every record below it was durable when that
//!   write was submitted, so a flip there is reported as corruption by recovery (rows
//!   5 and 7 of `wal::recovery`), never truncated as a torn write. It never decreases.

use crate::paxos::Lsn;
use crate::wal::group_commit::WRITES_IN_FLIGHT_MAX_LIMIT;
use crate::wal::{record, WritePlan};
use std::collections::VecDeque;

/// Recent writes remembered to place an `unsynced_from`: it names a batch at most
/// `writes_in_flight_max` writes back.
const RECENT_MAX: usize = WRITES_IN_FLIGHT_MAX_LIMIT + 1;

#[derive(Clone, Copy, Debug)]
struct SimWrite {
    lsn_through: Lsn,
    /// `Stamp::unsynced_from` of its records.
    unsynced_from: Lsn,
    completed: bool,
}

/// A shard's writes in flight and its flip limit (module docs).
#[derive(Clone, Debug, Default)]
pub(super) struct SimWrites {
    in_flight: VecDeque<SimWrite>,
    /// (first LSN, offset) of the last `RECENT_MAX` writes issued.
    recent: VecDeque<(Lsn, u64)>,
    flip_limit: u64,
}

impl SimWrites {
    /// `plan` was just written (not synced). Returns whether another write was in
    /// flight.
    pub(super) fn issue(&mut self, plan: &WritePlan) -> bool {
        let overlapped = !self.in_flight.is_empty();
        let head = record::peek(&plan.bytes).expect("a write plan starts with a record");
        assert!(
            self.in_flight
                .back()
                .is_none_or(|w| w.lsn_through < plan.lsn_through),
            "writes issued out of LSN order"
        );
        self.in_flight.push_back(SimWrite {
            lsn_through: plan.lsn_through,
            unsynced_from: head.unsynced_from,
            completed: false,
        });
        self.recent.push_back((head.lsn, plan.offset));
        if self.recent.len() > RECENT_MAX {
            self.recent.pop_front();
        }
        overlapped
    }

    /// The write ending at `lsn` and its sync completed. Returns the new durable
    /// watermark when it advanced (the contiguity rule).
    pub(super) fn complete(&mut self, lsn: Lsn) -> Option<Lsn> {
        let write = self
            .in_flight
            .iter_mut()
            .find(|w| w.lsn_through == lsn && !w.completed)
            .expect("a completion for a write in flight");
        write.completed = true;
        let mut durable = None;
        while let Some(oldest) = self.in_flight.front().copied().filter(|w| w.completed) {
            self.in_flight.pop_front();
            durable = Some(oldest.lsn_through);
            let named = self
                .recent
                .iter()
                .find(|(first, _)| *first == oldest.unsynced_from);
            if let Some(&(_, offset)) = named {
                self.flip_limit = self.flip_limit.max(offset);
            }
        }
        durable
    }

    /// Bit flips land only below this offset (module docs; 0: none may land).
    pub(super) fn flip_limit(&self) -> u64 {
        self.flip_limit
    }
}
