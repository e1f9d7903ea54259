//! Monotonicity of each replica's state, per (node, group): the promised ballot never
//! decreases, not even across restarts (it is persisted); the ballots a node leads at
//! never decrease, also across restarts; `chosen_through` and `applied_through` never
//! decrease within an incarnation.
//!
//! Source: Lamport, "Paxos Made Simple" (2001), §2.2–2.3: an acceptor that promised
//! `n` never accepts a proposal numbered below `n`, and "an acceptor must remember this
//! information even if it fails and then restarts"; a proposer uses each number once and
//! only ever larger ones (§2.3, "different proposers choose their numbers from disjoint
//! sets ... each proposer remembers the highest-numbered proposal it has tried").
//! Watermarks: chosen is stable (§2.1 "once chosen, always chosen") and the state
//! machine applies each command once, in order (§3).
//!
//! Method: remember the last values per (node, group). Persisted values (promised,
//! leader ballot) survive [`MonotonicChecker::reset`] unless the disk was lost — a node
//! with an empty data directory rebuilds as a non-voting learner (design: disk faults),
//! so its promise restarts from zero. Volatile values (watermarks) are forgotten at
//! every restart: a new process recovers them from its WAL and re-applies from 1.
//!
//! Invariant of the checker: the remembered values are the maxima observed since the
//! last reset that forgot them.

use super::Violation;
use crate::paxos::{Ballot, GroupId, Instance, NodeId};
use std::collections::BTreeMap;

const NAME: &str = "monotonic";

/// A replica's state for one group after a step, as the driver reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermarks {
    /// The acceptor's promised ballot.
    pub promised: Ballot,
    /// Highest instance through which the replica knows every value chosen (inclusive).
    pub chosen_through: Instance,
    /// Highest instance applied in this incarnation (inclusive).
    pub applied_through: Instance,
    /// The ballot the replica leads at, if it currently leads.
    pub leader_ballot: Option<Ballot>,
}

/// What survives a restart (while the disk survives).
#[derive(Clone, Copy, Debug, Default)]
struct Persisted {
    promised: Ballot,
    /// Highest ballot led at; `Ballot::ZERO` = never led.
    leader_ballot: Ballot,
}

/// What a restart forgets.
#[derive(Clone, Copy, Debug, Default)]
struct Volatile {
    chosen_through: Instance,
    applied_through: Instance,
}

/// Checks that ballots and watermarks never go back.
#[derive(Debug, Default)]
pub struct MonotonicChecker {
    persisted: BTreeMap<(NodeId, GroupId), Persisted>,
    volatile: BTreeMap<(NodeId, GroupId), Volatile>,
}

impl MonotonicChecker {
    /// A checker that has seen nothing.
    #[must_use]
    pub fn new() -> MonotonicChecker {
        MonotonicChecker::default()
    }

    /// `node`'s state for `group` after a step (call after each step that touched it).
    ///
    /// Err naming the value that went back, with the old and new values.
    pub fn observe_watermarks(
        &mut self,
        node: NodeId,
        group: GroupId,
        now: &Watermarks,
    ) -> Result<(), Violation> {
        let persisted = self.persisted.entry((node, group)).or_default();
        let volatile = self.volatile.entry((node, group)).or_default();
        let back = |what: &str, before: String, after: String| {
            Err(Violation::new(
                NAME,
                format!(
                    "group {} node {}: {what} went back from {before} to {after}",
                    group.0, node.0
                ),
            ))
        };
        if now.promised < persisted.promised {
            return back(
                "promised ballot (persisted)",
                persisted.promised.to_string(),
                now.promised.to_string(),
            );
        }
        if let Some(ballot) = now.leader_ballot {
            if ballot < persisted.leader_ballot {
                return back(
                    "leader ballot",
                    persisted.leader_ballot.to_string(),
                    ballot.to_string(),
                );
            }
        }
        if now.chosen_through < volatile.chosen_through {
            return back(
                "chosen_through",
                volatile.chosen_through.0.to_string(),
                now.chosen_through.0.to_string(),
            );
        }
        if now.applied_through < volatile.applied_through {
            return back(
                "applied_through",
                volatile.applied_through.0.to_string(),
                now.applied_through.0.to_string(),
            );
        }
        persisted.promised = now.promised;
        if let Some(ballot) = now.leader_ballot {
            persisted.leader_ballot = ballot;
        }
        volatile.chosen_through = now.chosen_through;
        volatile.applied_through = now.applied_through;
        Ok(())
    }

    /// `node` restarted as a new process. Its watermarks start over; its promised and
    /// leader ballots persist unless `disk_lost` (empty data directory).
    pub fn reset(&mut self, node: NodeId, disk_lost: bool) {
        self.volatile.retain(|(n, _), _| *n != node);
        if disk_lost {
            self.persisted.retain(|(n, _), _| *n != node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MonotonicChecker, Watermarks};
    use crate::paxos::{Ballot, GroupId, Instance, NodeId};

    const N: NodeId = NodeId(1);
    const G: GroupId = GroupId(1);

    fn marks(promised: u64, chosen: u64, applied: u64, leader: Option<u64>) -> Watermarks {
        let ballot = |round| Ballot { round, node: N };
        Watermarks {
            promised: ballot(promised),
            chosen_through: Instance(chosen),
            applied_through: Instance(applied),
            leader_ballot: leader.map(ballot),
        }
    }

    // Goal: growth and repeats pass; a restart lets watermarks start over but keeps
    // ballots; a disk loss forgets ballots too.
    // Method: observe, restart, observe lower watermarks; lose the disk, lower promise.
    #[test]
    fn growth_and_restarts_pass() {
        let mut checker = MonotonicChecker::new();
        checker
            .observe_watermarks(N, G, &marks(1, 5, 3, None))
            .unwrap();
        checker
            .observe_watermarks(N, G, &marks(2, 5, 5, Some(2)))
            .unwrap();
        checker
            .observe_watermarks(N, G, &marks(2, 5, 5, None))
            .unwrap();
        checker.reset(N, false);
        checker
            .observe_watermarks(N, G, &marks(2, 2, 0, None))
            .unwrap();
        checker.reset(N, true);
        checker
            .observe_watermarks(N, G, &marks(0, 0, 0, Some(1)))
            .unwrap();
        checker
            .observe_watermarks(NodeId(2), G, &marks(0, 0, 0, None))
            .unwrap();
    }

    // Goal: each regression is caught and named, and a restart (disk intact) does not
    // excuse a lower promise or leader ballot.
    // Method: one fresh checker per regression, optionally restarting in between.
    #[test]
    fn regressions_are_violations() {
        let cases = [
            (
                "promised ballot",
                marks(3, 0, 0, None),
                false,
                marks(2, 0, 0, None),
            ),
            (
                "promised ballot",
                marks(3, 0, 0, None),
                true,
                marks(2, 0, 0, None),
            ),
            (
                "leader ballot",
                marks(5, 0, 0, Some(5)),
                true,
                marks(5, 0, 0, Some(4)),
            ),
            (
                "leader ballot",
                marks(4, 0, 0, Some(4)),
                false,
                marks(4, 0, 0, Some(3)),
            ),
            (
                "chosen_through",
                marks(1, 9, 1, None),
                false,
                marks(1, 8, 1, None),
            ),
            (
                "applied_through",
                marks(1, 9, 7, None),
                false,
                marks(1, 9, 6, None),
            ),
        ];
        for (what, before, restart, after) in cases {
            let mut checker = MonotonicChecker::new();
            checker.observe_watermarks(N, G, &before).unwrap();
            if restart {
                // A restart without disk loss keeps the promise: a lower one is caught.
                checker.reset(N, false);
            }
            let violation = checker.observe_watermarks(N, G, &after).unwrap_err();
            assert_eq!(violation.checker, "monotonic");
            assert!(violation.message.contains(what), "{what}: {violation}");
            assert!(violation.message.contains("group 1 node 1"), "{violation}");
        }
    }
}
