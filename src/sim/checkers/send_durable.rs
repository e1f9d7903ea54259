//! Durability at send time: a vote leaves a node only once the record it depends on is
//! durable on that node's disk. A Promise at ballot `b` for group `g` leaves only if a
//! Promise record for `g` at `b` or above is durable there; an Accepted at `b` for an
//! instance leaves only if an Accept record for that instance at `b` or above is durable
//! there, or the node already knows the instance chosen (the acceptor acknowledges a
//! chosen instance again without a record: `acceptor`, "An instance already chosen").
//!
//! Source: Lamport, "Paxos Made Simple" (2001), §2.3: "an acceptor must remember this
//! information even if it fails and then restarts", i.e. it records its promise and its
//! acceptance in stable storage before it answers; Chandra, Griesemer and Redstone,
//! "Paxos Made Live" (2007), §4: the acceptor writes to disk before it replies.
//!
//! Method: ground truth from the simulated disk, not from the shard's own bookkeeping.
//! The executor reports every record it writes (read back from the write plan's bytes,
//! with its LSN) and every completed sync (`WriteDone`, durable through an LSN): a
//! written record becomes durable when a sync covers its LSN. A restart forgets what the
//! node had and re-learns it from what recovery read off its disk (an emptied disk: none).
//! Each Promise and Accepted the node sends is checked against that, at the moment it
//! leaves (loopback votes to itself do not leave and are not checked); so is each
//! Prepare and Accept, against the sender's own durable promise of its ballot (a
//! candidate or leader holds its ballot only once it could not forget it).
//!
//! Invariant of the checker: `durable_*` hold, per node, exactly the Promise and Accept
//! facts of records a completed sync or a recovery put on its disk since its last restart;
//! `pending` holds the records written and not yet synced, in LSN order per shard.

use super::Violation;
use crate::paxos::{Ballot, GroupId, Instance, Lsn, Message, MessageBody, NodeId};
use std::collections::{BTreeMap, VecDeque};

const NAME: &str = "send_durable";

/// A fact a record makes durable, as far as votes depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fact {
    /// A Promise record: `group` promised `ballot`.
    Promise {
        /// The group.
        group: GroupId,
        /// The promised ballot.
        ballot: Ballot,
    },
    /// An Accept record: `group` accepted a value at `instance` in `ballot`.
    Accept {
        /// The group.
        group: GroupId,
        /// The log position.
        instance: Instance,
        /// The ballot it was accepted in.
        ballot: Ballot,
    },
}

/// Checks that every Promise and Accepted leaves only once its record is durable.
#[derive(Debug, Default)]
pub struct SendDurableChecker {
    /// Written, not yet synced: per (node, shard), `(lsn, fact)` in LSN order.
    pending: BTreeMap<(NodeId, usize), VecDeque<(Lsn, Fact)>>,
    /// Highest durable promise per (node, group).
    durable_promise: BTreeMap<(NodeId, GroupId), Ballot>,
    /// Highest durable accept ballot per (node, group, instance).
    durable_accept: BTreeMap<(NodeId, GroupId, Instance), Ballot>,
    /// Votes checked (Promise and Accepted messages that left a node).
    checked: u64,
}

impl SendDurableChecker {
    /// A checker that has seen nothing.
    #[must_use]
    pub fn new() -> SendDurableChecker {
        SendDurableChecker::default()
    }

    /// `node`'s `shard` wrote a record holding `fact` at `lsn` (not yet synced). Call in
    /// write order.
    pub fn observe_written(&mut self, node: NodeId, shard: usize, lsn: Lsn, fact: Fact) {
        self.pending
            .entry((node, shard))
            .or_default()
            .push_back((lsn, fact));
    }

    /// `node`'s `shard` synced its log through `lsn_through`: the records written up to
    /// it are durable.
    pub fn observe_synced(&mut self, node: NodeId, shard: usize, lsn_through: Lsn) {
        let Some(pending) = self.pending.get_mut(&(node, shard)) else {
            return;
        };
        let mut facts = Vec::new();
        while pending.front().is_some_and(|(lsn, _)| *lsn <= lsn_through) {
            let (_, fact) = pending.pop_front().expect("front exists");
            facts.push(fact);
        }
        for fact in facts {
            self.make_durable(node, fact);
        }
    }

    /// `node` restarts: it forgets everything; the caller then reports what recovery
    /// read off its disks with [`SendDurableChecker::observe_recovered`].
    pub fn reset(&mut self, node: NodeId) {
        self.pending.retain(|(n, _), _| *n != node);
        self.durable_promise.retain(|(n, _), _| *n != node);
        self.durable_accept.retain(|(n, _, _), _| *n != node);
    }

    /// Recovery read a record holding `fact` off `node`'s disk: it is durable.
    pub fn observe_recovered(&mut self, node: NodeId, fact: Fact) {
        self.make_durable(node, fact);
    }

    fn make_durable(&mut self, node: NodeId, fact: Fact) {
        match fact {
            Fact::Promise { group, ballot } => {
                let durable = self.durable_promise.entry((node, group)).or_default();
                *durable = (*durable).max(ballot);
            }
            Fact::Accept {
                group,
                instance,
                ballot,
            } => {
                let durable = self
                    .durable_accept
                    .entry((node, group, instance))
                    .or_default();
                *durable = (*durable).max(ballot);
            }
        }
    }

    /// `message` leaves `node` now, whose group of the message knows every instance
    /// through `chosen_through` chosen.
    ///
    /// Err naming the vote and the record it lacks: a Promise above the node's durable
    /// promise, or an Accepted for an instance neither durably accepted at its ballot
    /// (or above) nor known chosen.
    pub fn observe_sent(
        &mut self,
        node: NodeId,
        message: &Message,
        chosen_through: Instance,
    ) -> Result<(), Violation> {
        let group = message.group;
        match &message.body {
            MessageBody::Promise { ballot, .. } => {
                self.checked += 1;
                self.promise_durable(node, message, "Promise", *ballot)?;
            }
            MessageBody::Accepted { ballot, ranges } => {
                self.checked += 1;
                for range in ranges {
                    for i in range.first.0.max(chosen_through.0.saturating_add(1))..=range.last.0 {
                        let instance = Instance(i);
                        let durable = self.durable_accept.get(&(node, group, instance));
                        if durable.is_none_or(|d| d < ballot) {
                            return Err(Violation::new(
                                NAME,
                                format!(
                                    "group {} node {}: Accepted at {ballot} for instance {i} \
                                     to node {} left with no durable Accept there at or \
                                     above it (durable: {durable:?}, chosen through {})",
                                    group.0, node.0, message.to.0, chosen_through.0
                                ),
                            ));
                        }
                    }
                }
            }
            MessageBody::Prepare { ballot, .. } | MessageBody::Accept { ballot, .. } => {
                // The sender holds this ballot: its own promise of it is durable first
                // (a retransmitted prepare once left while that write stalled: seed
                // 920000277).
                self.checked += 1;
                let what = if matches!(message.body, MessageBody::Prepare { .. }) {
                    "Prepare"
                } else {
                    "Accept"
                };
                self.promise_durable(node, message, what, *ballot)?;
            }
            MessageBody::Reject { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::HeartbeatAck { .. }
            | MessageBody::CatchUpRequest { .. }
            | MessageBody::CatchUpChunk { .. }
            | MessageBody::CheckpointRequest { .. }
            | MessageBody::CheckpointChunk { .. }
            | MessageBody::CatchUpRaw { .. }
            | MessageBody::Handover { .. }
            | MessageBody::PreVote { .. }
            | MessageBody::PreVoteReply { .. } => {}
        }
        Ok(())
    }

    /// Err unless `node`'s durable promise for the message's group is at or above
    /// `ballot` (`what` names the message in the violation).
    fn promise_durable(
        &self,
        node: NodeId,
        message: &Message,
        what: &str,
        ballot: Ballot,
    ) -> Result<(), Violation> {
        let durable = self
            .durable_promise
            .get(&(node, message.group))
            .copied()
            .unwrap_or(Ballot::ZERO);
        if ballot > durable {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {} node {}: {what} at {ballot} to node {} left with its durable \
                     promise at {durable}",
                    message.group.0, node.0, message.to.0
                ),
            ));
        }
        Ok(())
    }

    /// Votes checked so far.
    #[must_use]
    pub fn checked(&self) -> u64 {
        self.checked
    }
}

#[cfg(test)]
mod tests {
    use super::{Fact, SendDurableChecker};
    use crate::paxos::{
        Ballot, GroupId, Instance, InstanceRange, Lsn, Message, MessageBody, NodeId,
    };

    const N: NodeId = NodeId(1);
    const G: GroupId = GroupId(1);

    fn ballot(round: u64) -> Ballot {
        Ballot {
            round,
            node: NodeId(2),
        }
    }

    fn promise(round: u64) -> Message {
        Message {
            group: G,
            from: N,
            to: NodeId(2),
            body: MessageBody::Promise {
                ballot: ballot(round),
                chosen_through: Instance(0),
                entries: Vec::new(),
                truncated: false,
            },
        }
    }

    fn accepted(round: u64, first: u64, last: u64) -> Message {
        Message {
            group: G,
            from: N,
            to: NodeId(2),
            body: MessageBody::Accepted {
                ballot: ballot(round),
                ranges: vec![InstanceRange {
                    first: Instance(first),
                    last: Instance(last),
                }],
            },
        }
    }

    fn accept(instance: u64, round: u64) -> Fact {
        Fact::Accept {
            group: G,
            instance: Instance(instance),
            ballot: ballot(round),
        }
    }

    // Goal: a vote whose record is synced (or recovered, or covered by a higher one, or
    // chosen) passes; one whose record is only written, or lost by a restart, is caught.
    // Method: write, send before and after the sync; restart and recover part of it.
    #[test]
    fn votes_leave_only_after_their_records_are_durable() {
        let mut checker = SendDurableChecker::new();
        let promise_fact = Fact::Promise {
            group: G,
            ballot: ballot(3),
        };
        checker.observe_written(N, 0, Lsn(1), promise_fact);
        checker.observe_written(N, 0, Lsn(2), accept(1, 3));
        checker.observe_written(N, 0, Lsn(3), accept(2, 3));
        let early = checker.observe_sent(N, &promise(3), Instance(0));
        assert!(early.unwrap_err().message.contains("Promise at"));
        checker.observe_synced(N, 0, Lsn(2));
        checker.observe_sent(N, &promise(3), Instance(0)).unwrap();
        checker.observe_sent(N, &promise(2), Instance(0)).unwrap();
        checker
            .observe_sent(N, &accepted(3, 1, 1), Instance(0))
            .unwrap();
        checker
            .observe_sent(N, &accepted(2, 1, 1), Instance(0))
            .unwrap();
        let unsynced = checker.observe_sent(N, &accepted(3, 1, 2), Instance(0));
        assert!(unsynced.unwrap_err().message.contains("instance 2"));
        checker
            .observe_sent(N, &accepted(3, 1, 2), Instance(2))
            .unwrap();
        // Another shard's sync does not cover this one's records.
        checker.observe_synced(N, 1, Lsn(9));
        assert!(checker
            .observe_sent(N, &accepted(3, 2, 2), Instance(0))
            .is_err());
        checker.reset(N);
        checker.observe_synced(N, 0, Lsn(9));
        assert!(checker.observe_sent(N, &promise(3), Instance(0)).is_err());
        checker.observe_recovered(N, promise_fact);
        checker.observe_sent(N, &promise(3), Instance(0)).unwrap();
        assert!(checker
            .observe_sent(N, &accepted(3, 1, 1), Instance(0))
            .is_err());
        assert_eq!(checker.checked(), 11);
    }
}
