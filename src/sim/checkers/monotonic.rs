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
//! Across a disk loss (the rejoin floor). A replica that lost its disk does not vote
//! until its own Phase 1, at a round above every round it heard of from n − quorum + 1
//! other voters, completed with a quorum of the other voters (`learner`, "Rejoin").
//! That does NOT keep it at or above its own old promise: a promise it made to a
//! candidate whose Phase 1 had not completed is forgotten, and the rejoiner may vote
//! below it (`learner` names the hole that leaves), so "never below its old promise" is
//! not the property checked. What the rule does guarantee: every ballot LED before the
//! loss had a Phase 1 quorum of durable promises, which meets any n − quorum + 1 other
//! voters, so the rejoiner's ballot, hence every vote it sends afterwards (a Promise at
//! b needs b >= its promise, an Accepted at b too), is above the highest ballot led in
//! the group, by any node, before it restarted. The
//! checker keeps that ballot per group (ground truth: leader ballots observed after every
//! step) and, at a disk loss, makes it the node's rejoin floor for every group;
//! [`MonotonicChecker::observe_vote`] checks each Promise and Accepted the node sends
//! against it. Assumes one replica with lost state at a time (the simulator's fault
//! atlas). A replica that completes its rejoin heard n − quorum + 1 voters report an
//! unchanged membership, so the group never changed before the loss and the quorum
//! size of every ballot led before it is the initial one.
//!
//! Retirement. A replica that lost its state in a group whose membership changed
//! retires (`learner`, "Retirement") and never votes again under its node id: from the
//! moment the shard reports it ([`MonotonicChecker::observe_retired`]) it must send no
//! Promise, Accepted, Prepare, Accept or HeartbeatAck in that group, across restarts
//! and later disk losses too (a wiped retiree must retire again rather than rejoin).
//!
//! Invariant of the checker: the remembered values are the maxima observed since the
//! last reset that forgot them; `led` is the maximum leader ballot ever observed per
//! group; a rejoin floor is never lowered.

use super::Violation;
use crate::paxos::{Ballot, GroupId, Instance, NodeId};
use std::collections::{BTreeMap, BTreeSet};

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
    /// The highest ballot the node is known to have made durable: a message that
    /// depends on it (a promise, an ack, a prepare, an accept) left the node.
    promised_floor: Ballot,
    /// Highest ballot led at in earlier incarnations; `Ballot::ZERO` = never led.
    leader_ballot_before: Ballot,
}

/// What a restart forgets.
#[derive(Clone, Copy, Debug, Default)]
struct Volatile {
    promised: Ballot,
    leader_ballot: Ballot,
    chosen_through: Instance,
    applied_through: Instance,
}

/// Checks that ballots and watermarks never go back.
#[derive(Debug, Default)]
pub struct MonotonicChecker {
    persisted: BTreeMap<(NodeId, GroupId), Persisted>,
    volatile: BTreeMap<(NodeId, GroupId), Volatile>,
    /// Highest ballot led in each group by any node.
    led: BTreeMap<GroupId, Ballot>,
    /// Per (node, group) that lost its disk: the highest ballot led in the group before
    /// the loss, and the highest the node itself had made durable then (for messages).
    rejoin_floor: BTreeMap<(NodeId, GroupId), (Ballot, Ballot)>,
    /// The (node, group) pairs that retired (`learner`, "Retirement"): they never send
    /// a vote, a prepare or an accept again, whatever happens to their disk.
    retired: BTreeSet<(NodeId, GroupId)>,
}

impl MonotonicChecker {
    /// A checker that has seen nothing.
    #[must_use]
    pub fn new() -> MonotonicChecker {
        MonotonicChecker::default()
    }

    /// A message that `node` may send only once `ballot` is durable (a promise, an
    /// ack, a prepare or an accept at `ballot`) left it: no later incarnation may
    /// promise less.
    pub fn observe_durable(&mut self, node: NodeId, group: GroupId, ballot: Ballot) {
        let persisted = self.persisted.entry((node, group)).or_default();
        persisted.promised_floor = persisted.promised_floor.max(ballot);
    }

    /// `node` retired in `group`: it lost its state after the membership changed
    /// (`learner`, "Retirement"). For good: a later disk loss must retire it again.
    pub fn observe_retired(&mut self, node: NodeId, group: GroupId) {
        self.retired.insert((node, group));
    }

    /// `node` sends a message of `kind` for `group` that depends on a durable ballot (a
    /// promise, an ack, a prepare, an accept): Err if it retired in `group`.
    pub fn observe_retired_send(
        &self,
        node: NodeId,
        group: GroupId,
        kind: &str,
    ) -> Result<(), Violation> {
        if self.retired.contains(&(node, group)) {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {} node {}: sent a {kind} after it retired (lost its state in a \
                     group whose membership changed)",
                    group.0, node.0
                ),
            ));
        }
        Ok(())
    }

    /// `node` sends a vote (a Promise or an Accepted) at `ballot` for `group`.
    ///
    /// Err if `node` lost its disk and the vote is below the highest ballot led in
    /// `group` before the loss (its rejoin floor; see the module docs).
    pub fn observe_vote(
        &mut self,
        node: NodeId,
        group: GroupId,
        ballot: Ballot,
    ) -> Result<(), Violation> {
        match self.rejoin_floor.get(&(node, group)) {
            Some(&(floor, own)) if ballot < floor => Err(Violation::new(
                NAME,
                format!(
                    "group {} node {}: voted at {ballot} after losing its disk, below \
                     {floor}, led in the group before the loss (its own durable promise \
                     then: {own})",
                    group.0, node.0
                ),
            )),
            Some(_) | None => Ok(()),
        }
    }

    /// `node`'s state for `group` after a step (call after each step that touched it).
    ///
    /// Err naming the value that went back, with the old and new values: the promised
    /// ballot below the durable floor or below its value earlier in this incarnation; a
    /// leader ballot below one of this incarnation, or not above every ballot led in an
    /// earlier incarnation (a ballot must never be led twice); a watermark going back
    /// within an incarnation.
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
        if now.promised < persisted.promised_floor {
            return back(
                "promised ballot (below what it made durable)",
                persisted.promised_floor.to_string(),
                now.promised.to_string(),
            );
        }
        if now.promised < volatile.promised {
            return back(
                "promised ballot",
                volatile.promised.to_string(),
                now.promised.to_string(),
            );
        }
        if let Some(ballot) = now.leader_ballot {
            if ballot < volatile.leader_ballot {
                return back(
                    "leader ballot",
                    volatile.leader_ballot.to_string(),
                    ballot.to_string(),
                );
            }
            if ballot <= persisted.leader_ballot_before
                && persisted.leader_ballot_before != Ballot::ZERO
            {
                return back(
                    "leader ballot (led again after a restart)",
                    persisted.leader_ballot_before.to_string(),
                    ballot.to_string(),
                );
            }
            volatile.leader_ballot = ballot;
            let led = self.led.entry(group).or_default();
            *led = (*led).max(ballot);
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
        volatile.promised = now.promised;
        volatile.chosen_through = now.chosen_through;
        volatile.applied_through = now.applied_through;
        Ok(())
    }

    /// `node` restarted as a new process. Its watermarks start over; the durable floor
    /// and the ballots it led persist in the groups whose log did not lose state
    /// (`lost`: per group, since a node's shards recover each their own log).
    pub fn reset(&mut self, node: NodeId, lost: impl Fn(GroupId) -> bool) {
        let keys: Vec<(NodeId, GroupId)> = self
            .volatile
            .keys()
            .filter(|(n, _)| *n == node)
            .copied()
            .collect();
        for key in keys {
            let led = self
                .volatile
                .remove(&key)
                .map_or(Ballot::ZERO, |v| v.leader_ballot);
            let persisted = self.persisted.entry(key).or_default();
            persisted.leader_ballot_before = persisted.leader_ballot_before.max(led);
        }
        {
            // A replica that lost state keeps no durable floor; it must still never lead
            // at a ballot it led before (its rejoin raises its promise above its
            // peers'), nor vote below a ballot led before the loss (module docs).
            for (&group, &led) in self.led.iter().filter(|(group, _)| lost(**group)) {
                let own = self
                    .persisted
                    .get(&(node, group))
                    .map_or(Ballot::ZERO, |p| p.promised_floor);
                let floor = self.rejoin_floor.entry((node, group)).or_default();
                floor.0 = floor.0.max(led);
                floor.1 = floor.1.max(own);
            }
            for (key, persisted) in self.persisted.iter_mut() {
                if key.0 == node && lost(key.1) {
                    persisted.promised_floor = Ballot::ZERO;
                }
            }
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

    // Goal: growth and repeats pass; a restart lets watermarks and an undurable promise
    // start over; a disk loss forgets the durable floor but not the ballots led.
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
        checker.reset(N, |_| false);
        checker
            .observe_watermarks(N, G, &marks(2, 2, 0, None))
            .unwrap();
        checker.reset(N, |_| true);
        checker
            .observe_watermarks(N, G, &marks(0, 0, 0, Some(3)))
            .unwrap();
        checker
            .observe_watermarks(NodeId(2), G, &marks(0, 0, 0, None))
            .unwrap();
    }

    // Goal: after a disk loss a vote below a ballot led before the loss is caught, while
    // one below the node's own unled old promise passes (the protocol may forget it).
    // Method: node 2 leads at 4, node 1 promised 6 (never led); node 1 loses its disk.
    #[test]
    fn rejoin_floor_is_the_highest_ballot_led_before_the_loss() {
        let mut checker = MonotonicChecker::new();
        let at = |round| Ballot {
            round,
            node: NodeId(2),
        };
        let led = Watermarks {
            promised: at(4),
            leader_ballot: Some(at(4)),
            ..Watermarks::default()
        };
        checker.observe_watermarks(NodeId(2), G, &led).unwrap();
        checker.observe_vote(N, G, at(6)).unwrap();
        checker.observe_durable(N, G, at(6));
        checker.reset(N, |_| true);
        checker.observe_vote(N, G, at(5)).unwrap();
        checker.observe_vote(N, G, at(4)).unwrap();
        checker.observe_vote(N, GroupId(2), at(1)).unwrap();
        let violation = checker.observe_vote(N, G, at(3)).unwrap_err();
        assert!(
            violation.message.contains("after losing its disk"),
            "{violation}"
        );
        assert!(
            violation.message.contains("own durable promise"),
            "{violation}"
        );
        // A node that did not lose its disk has no rejoin floor.
        checker.observe_vote(NodeId(3), G, at(1)).unwrap();
    }

    // Goal: each regression is caught and named: a promise below the durable floor
    // (restart or not), a ballot led twice across a restart, watermarks going back.
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
                "below what it made durable",
                marks(3, 0, 0, None),
                true,
                marks(2, 0, 0, None),
            ),
            (
                "led again after a restart",
                marks(5, 0, 0, Some(5)),
                true,
                marks(5, 0, 0, Some(5)),
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
            // A message depending on the promise left: it is durable.
            checker.observe_durable(N, G, before.promised);
            if restart {
                checker.reset(N, |_| false);
            }
            let violation = checker.observe_watermarks(N, G, &after).unwrap_err();
            assert_eq!(violation.checker, "monotonic");
            assert!(violation.message.contains(what), "{what}: {violation}");
            assert!(violation.message.contains("group 1 node 1"), "{violation}");
        }
    }
}
