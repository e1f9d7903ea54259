//! The StartWorking filters a group applied, by instance: which chosen entries its
//! apply path skipped (the ghost replay guard of `group::apply_chosen`), so that the
//! log can be read back as the state machine saw it, from memory or from the WAL.
//!
//! An entry at instance `i` is skipped when its origin ballot is below the ballot of
//! the latest StartWorking applied at an instance below `i`. The filters keep, in
//! ascending order, `(after, ballot)`: from `after + 1` on (until the next pair),
//! entries first proposed below `ballot` are skipped. The first pair is the base: the
//! start of the log (`(0, Ballot::ZERO)`) or a restored checkpoint (`(C, its
//! StartWorking ballot)`); below `base.after + 1` nothing can be decided.
//!
//! Invariants:
//! - the pairs ascend strictly by instance and never by a lower ballot;
//! - at most `FILTERS_COUNT_MAX` pairs: one more drops the base, and the next pair
//!   becomes the base (the readable log then starts after it).

use std::collections::VecDeque;

use super::types::{Ballot, Instance};

/// StartWorking filters a group keeps (one per leader that started serving); beyond
/// it the oldest goes and the log's readable start moves up past it. A leader change
/// per minute for 17 hours fills it.
pub const FILTERS_COUNT_MAX: usize = 1_024;

/// See the module docs.
#[derive(Clone, Debug)]
pub(super) struct Filters {
    pairs: VecDeque<(Instance, Ballot)>,
}

impl Filters {
    /// Filters whose base is `ballot` after `after` (the log's start or a checkpoint).
    pub(super) fn new(after: Instance, ballot: Ballot) -> Filters {
        Filters {
            pairs: VecDeque::from([(after, ballot)]),
        }
    }

    /// A StartWorking of `ballot` was applied at `instance`.
    pub(super) fn push(&mut self, instance: Instance, ballot: Ballot) {
        let (last_instance, last_ballot) = *self.pairs.back().expect("never empty");
        assert!(
            instance > last_instance && ballot >= last_ballot,
            "StartWorking {ballot:?} at {} after {last_ballot:?} at {}",
            instance.0,
            last_instance.0
        );
        self.pairs.push_back((instance, ballot));
        if self.pairs.len() > FILTERS_COUNT_MAX {
            self.pairs.pop_front();
        }
    }

    /// The first instance whose skip can be decided.
    pub(super) fn readable_from(&self) -> Instance {
        self.pairs.front().expect("never empty").0.next()
    }

    /// Whether the entry at `instance` first proposed at `origin` was skipped; `None`
    /// below `readable_from`.
    pub(super) fn skipped(&self, instance: Instance, origin: Ballot) -> Option<bool> {
        if instance < self.readable_from() {
            return None;
        }
        // The last pair whose `after` is below `instance`: at least the base.
        let count = self.pairs.partition_point(|(after, _)| *after < instance);
        let (_, ballot) = self.pairs[count - 1];
        Some(origin < ballot)
    }

    /// The latest filter's ballot (the group's `start_working_applied`).
    pub(super) fn latest(&self) -> Ballot {
        self.pairs.back().expect("never empty").1
    }

    /// Checks the invariants of the module docs.
    pub(super) fn invariants(&self) {
        assert!(!self.pairs.is_empty() && self.pairs.len() <= FILTERS_COUNT_MAX);
        for pair in self.pairs.iter().zip(self.pairs.iter().skip(1)) {
            let ((a, x), (b, y)) = pair;
            assert!(a < b && x <= y, "filters out of order: {pair:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Filters, FILTERS_COUNT_MAX};
    use crate::paxos::{Ballot, Instance, NodeId};

    fn b(round: u64) -> Ballot {
        Ballot {
            round,
            node: NodeId(1),
        }
    }

    // Goal: an entry is skipped exactly when its origin is below the latest
    // StartWorking applied strictly before its instance; nothing is decided below the
    // base. Method: a base at a checkpoint, two StartWorkings, probes around each.
    #[test]
    fn skip_follows_the_latest_earlier_start_working() {
        let mut filters = Filters::new(Instance(10), b(2));
        filters.push(Instance(15), b(5));
        filters.push(Instance(20), b(7));
        assert_eq!(filters.readable_from(), Instance(11));
        assert_eq!(filters.skipped(Instance(10), b(9)), None);
        assert_eq!(filters.skipped(Instance(11), b(1)), Some(true));
        assert_eq!(filters.skipped(Instance(11), b(2)), Some(false));
        // The StartWorking at 15 is judged by the filter before it.
        assert_eq!(filters.skipped(Instance(15), b(5)), Some(false));
        assert_eq!(filters.skipped(Instance(16), b(4)), Some(true));
        assert_eq!(filters.skipped(Instance(20), b(5)), Some(false));
        assert_eq!(filters.skipped(Instance(21), b(5)), Some(true));
        assert_eq!(filters.skipped(Instance(21), b(7)), Some(false));
        assert_eq!(filters.latest(), b(7));
        filters.invariants();
    }

    // Goal: the filters stay bounded; dropping the base moves the readable start.
    // Method: push one more than the bound and check the new base.
    #[test]
    fn bounded_by_dropping_the_base() {
        let mut filters = Filters::new(Instance(0), Ballot::ZERO);
        for i in 1..=FILTERS_COUNT_MAX as u64 {
            filters.push(Instance(i * 2), b(i));
        }
        assert_eq!(filters.readable_from(), Instance(3));
        assert_eq!(filters.skipped(Instance(2), b(9)), None);
        assert_eq!(filters.skipped(Instance(3), b(0)), Some(true));
        filters.invariants();
    }
}
