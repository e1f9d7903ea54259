//! Bounds: every ballot and instance a replica holds or sends stays within
//! `Ballot::ROUND_MAX` and `Instance::MAX`, and a forged message out of bounds changes
//! nothing where it lands.
//!
//! Source: the refusal rule of `paxos::bounds` (a value no honest replica sends is
//! refused first, counted, never persisted), after the failure it prevents: one forged
//! `Prepare` at round `u64::MAX` raised every node's highest round seen, the next
//! campaign computed `round + 1` and panicked, and the persisted promise made every
//! restart panic again. A message an honest shard sends must pass the same check the
//! receiver applies, or the receiver would refuse honest traffic; the replica's own
//! rounds and watermarks must stay in bounds, or some arithmetic derived them wrong.
//!
//! Method: check every message as it leaves a shard and every replica's watermarks
//! after every step; for each forged message delivered, compare what the target shard
//! and group show before and after the message step (before the flush): equal, and
//! the refusal counted once.
//!
//! Invariant of the checker: `forged_refused <= forged_delivered`; both only grow.

use super::{Violation, Watermarks};
use crate::paxos::{Ballot, GroupId, Instance, Lsn, Message, Nanos, NodeId, Role};

const NAME: &str = "bounds";

/// What a shard and one of its groups show, before and after a forged message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The group's role.
    pub role: Role,
    /// The group's leader or candidate ballot.
    pub ballot: Option<Ballot>,
    /// The group's promise.
    pub promised: Ballot,
    /// The highest round the group has seen.
    pub highest_round_seen: u64,
    /// The group's chosen watermark.
    pub chosen_through: Instance,
    /// The group's applied watermark.
    pub applied_through: Instance,
    /// The leader the group believes in.
    pub leader_hint: Option<NodeId>,
    /// Whether the group votes.
    pub voting: bool,
    /// The group's next timer.
    pub next_deadline: Nanos,
    /// The LSN the shard's last record got (a new record would raise it).
    pub lsn_planned: Lsn,
    /// Messages the shard holds until durable.
    pub held_count: usize,
    /// Refusals counted so far: the group's `*_out_of_bounds` reasons plus the shard's
    /// backpressure refusals (a refusal for backpressure is as good as one for bounds).
    pub refusals: u64,
}

/// The bounds property. See the module docs.
#[derive(Debug, Default)]
pub struct BoundsChecker {
    forged_delivered: u64,
    forged_refused: u64,
}

impl BoundsChecker {
    /// `node` sent `message` (an honest shard's output): it must be in bounds.
    pub fn observe_sent(&mut self, node: NodeId, message: &Message) -> Result<(), Violation> {
        match message.body.check_bounds() {
            Ok(()) => Ok(()),
            Err(out_of_bounds) => Err(Violation::new(
                NAME,
                format!(
                    "node {} sent a {} to node {} in group {} out of bounds: {out_of_bounds}",
                    node.0,
                    message.body.kind(),
                    message.to.0,
                    message.group.0
                ),
            )),
        }
    }

    /// `node`'s state for `group` after a step: rounds and watermarks in bounds.
    pub fn observe_watermarks(
        &mut self,
        node: NodeId,
        group: GroupId,
        watermarks: &Watermarks,
    ) -> Result<(), Violation> {
        let rounds = [Some(watermarks.promised), watermarks.leader_ballot];
        for ballot in rounds.into_iter().flatten() {
            if ballot.round > Ballot::ROUND_MAX {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "node {} group {}: ballot {ballot} above ROUND_MAX {}",
                        node.0,
                        group.0,
                        Ballot::ROUND_MAX
                    ),
                ));
            }
        }
        for (name, instance) in [
            ("chosen_through", watermarks.chosen_through),
            ("applied_through", watermarks.applied_through),
        ] {
            if instance > Instance::MAX {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "node {} group {}: {name} {} above Instance::MAX {}",
                        node.0,
                        group.0,
                        instance.0,
                        Instance::MAX.0
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A forged `message` reached `node`, whose shard and group showed `before` and,
    /// after the message step, `after`: nothing may differ but one more refusal.
    pub fn observe_forged(
        &mut self,
        node: NodeId,
        message: &Message,
        before: &Probe,
        after: &Probe,
    ) -> Result<(), Violation> {
        self.forged_delivered += 1;
        let expected = Probe {
            refusals: before.refusals + 1,
            ..before.clone()
        };
        if *after != expected {
            return Err(Violation::new(
                NAME,
                format!(
                    "a forged {} from node {} to node {} in group {} changed state or was \
                     not counted: before {before:?}, after {after:?}",
                    message.body.kind(),
                    message.from.0,
                    node.0,
                    message.group.0
                ),
            ));
        }
        self.forged_refused += 1;
        Ok(())
    }

    /// Forged messages delivered to a running shard.
    #[must_use]
    pub fn forged_delivered(&self) -> u64 {
        self.forged_delivered
    }

    /// Forged messages refused without effect.
    #[must_use]
    pub fn forged_refused(&self) -> u64 {
        self.forged_refused
    }
}

#[cfg(test)]
mod tests {
    use super::{BoundsChecker, Probe};
    use crate::paxos::{Ballot, GroupId, Instance, Lsn, Message, MessageBody, Nanos, NodeId, Role};

    fn probe() -> Probe {
        Probe {
            role: Role::Follower,
            ballot: None,
            promised: Ballot::ZERO,
            highest_round_seen: 3,
            chosen_through: Instance(4),
            applied_through: Instance(4),
            leader_hint: None,
            voting: true,
            next_deadline: Nanos(9),
            lsn_planned: Lsn(5),
            held_count: 0,
            refusals: 2,
        }
    }

    // Goal: the checker catches an honest message out of bounds, a forged message
    // that changed state, and one that was not counted; it passes a clean refusal.
    // Method: feed each case by hand.
    #[test]
    fn catches_each_breach() {
        let mut checker = BoundsChecker::default();
        let message = Message {
            group: GroupId(1),
            from: NodeId(2),
            to: NodeId(1),
            body: MessageBody::Prepare {
                ballot: Ballot {
                    round: u64::MAX,
                    node: NodeId(2),
                },
                from: Instance(1),
            },
        };
        assert!(checker.observe_sent(NodeId(2), &message).is_err());
        let before = probe();
        let counted = Probe {
            refusals: 3,
            ..probe()
        };
        assert!(checker
            .observe_forged(NodeId(1), &message, &before, &counted)
            .is_ok());
        assert!(checker
            .observe_forged(NodeId(1), &message, &before, &before)
            .is_err());
        let raised = Probe {
            highest_round_seen: u64::MAX,
            ..counted
        };
        assert!(checker
            .observe_forged(NodeId(1), &message, &before, &raised)
            .is_err());
        assert_eq!(checker.forged_delivered(), 3);
        assert_eq!(checker.forged_refused(), 1);
    }
}
