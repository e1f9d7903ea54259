//! Membership changes at the leader: a new voter is added only once it has caught up,
//! and a chosen change is brought into effect without waiting for client values.
//!
//! # Why a caught-up voter
//!
//! Adding an empty voter is safe: a replica that never promised nor accepted anything
//! is an acceptor in its initial state, and Paxos holds for any quorums of a membership
//! whatever their members hold. It is a liveness hazard: from the change's effect on,
//! every quorum of the new membership must reach the newcomer's accepts, and a
//! follower accepts only within `accept_window_instances_max` above its chosen
//! watermark (`acceptor`). Three voters plus an empty fourth need three of the four,
//! so one of the old three failing before the newcomer has caught up stops the group.
//! The leader therefore holds an add (outside the proposal queue, so client values
//! still flow) until the newcomer reports a position within `window_instances_max` of
//! the leader's chosen watermark, or fails it after `JOIN_ELECTION_TIMEOUTS` election
//! timeouts with `Rejected`.
//!
//! How the leader learns the newcomer's position: while an add waits, the leader
//! heartbeats the newcomer as it does its voters; the newcomer, behind the heartbeat's
//! watermark, asks the leader for catch-up from its next instance (`learner`), and
//! each request and renewal of that stream reports it (`note_join_progress`). A
//! replica that is not a voter of its newest membership and is not behind answers a
//! heartbeat with the same request (`acceptor::on_heartbeat`): the leader sends back an
//! empty chunk, and the newcomer's position is known even when it has nothing to learn.
//!
//! # Effect without load
//!
//! A change chosen at i takes effect at i + W. A leader with no client values to send
//! fills the instances below the effect of the newest chosen change with no-ops (all
//! within its window: the change is chosen, so `chosen_through + W >= i + W`), so a
//! change asked of an idle group takes effect within a round trip rather than never.
//!
//! # A retired newcomer
//!
//! A replica that lost its state in a group whose membership changed never votes
//! again under its node id (`learner`, "Retirement"), and says so in its catch-up
//! requests (`retired`). The newcomer of a waiting add reports its position in the same
//! requests, so the add is refused (`RETIRED_REASON`) before it is proposed: added, it
//! would be a voter that never votes. The operator starts the node under a new id.
//!
//! Invariants: at most one add waits per group (another change is refused meanwhile,
//! as one is while a change is queued or in flight); the waiting add's caller is
//! answered exactly once: refused at the deadline, failed with `NotLeader` at a step
//! down, or queued as an ordinary change.

use super::group::{Group, Pending, Role};
use super::output::{Completion, Output, ProposeError};
use super::types::{Instance, Membership, Nanos, NodeId, ProposalId};

/// Election timeouts a leader holds an add for the newcomer to catch up before it
/// refuses it.
pub const JOIN_ELECTION_TIMEOUTS: u64 = 10;

/// Why an add of a retired replica is refused (`learner`, "Retirement").
pub const RETIRED_REASON: &str = "the node lost its state in a group whose membership \
     changed and never votes again under its node id; start it under a new node id";

/// An add that waits for its newcomer to catch up.
#[derive(Clone, Debug)]
pub(super) struct Joining {
    /// The change's proposal.
    pub id: ProposalId,
    /// The membership with the newcomer.
    pub membership: Membership,
    /// The newcomer.
    pub node: NodeId,
    /// When the add is refused if the newcomer has not caught up.
    pub deadline: Nanos,
    /// The newcomer's next instance, as its catch-up requests reported it.
    pub next_reported: Instance,
}

impl Group {
    /// A membership change asked of this replica: refused (another pending, not one
    /// voter), held until the newcomer caught up (an add), or queued.
    pub(super) fn on_change_membership(
        &mut self,
        now: Nanos,
        id: ProposalId,
        membership: Membership,
        out: &mut Output,
    ) {
        let latest = self.latest_membership().clone();
        let reason = if self.config_change_pending
            || self.join_waiting()
            || self.queue.iter().any(|p| matches!(p, Pending::Config(..)))
        {
            Some("another membership change is not yet in effect")
        } else if !latest.is_single_change(&membership) {
            Some("a membership change must add or remove exactly one voter")
        } else {
            None
        };
        if let Some(reason) = reason {
            if self.role == Role::Leader {
                out.complete.push(Completion {
                    id,
                    error: ProposeError::Rejected { reason },
                });
                return;
            }
        }
        // An add waits for the newcomer to catch up (`joining`); a refused change, or
        // one asked of a follower, is answered by `on_propose`.
        let adds = membership.voters().len() > latest.voters().len();
        if reason.is_none() && adds && self.role == Role::Leader && self.transferring_to().is_none()
        {
            self.hold_join(now, id, membership, out);
            return;
        }
        self.on_propose(id, Pending::Config(id, membership), out);
    }

    /// Holds `membership` (a single change that adds a voter, checked by the caller) at
    /// this leader until the newcomer has caught up (module docs).
    pub(super) fn hold_join(
        &mut self,
        now: Nanos,
        id: ProposalId,
        membership: Membership,
        out: &mut Output,
    ) {
        let latest = self.latest_membership();
        let node = membership
            .voters()
            .iter()
            .copied()
            .find(|n| !latest.contains(*n))
            .expect("the caller checked that the change adds a voter");
        let deadline =
            now.plus(JOIN_ELECTION_TIMEOUTS.saturating_mul(self.config.election_timeout_ns));
        let leading = self
            .leading
            .as_mut()
            .expect("the caller checked leadership");
        leading.joining = Some(Joining {
            id,
            membership,
            node,
            deadline,
            next_reported: Instance(0),
        });
        // Heartbeat the newcomer now: its first report comes a round trip later.
        self.send_heartbeats(now, out);
    }

    /// Whether an add waits for its newcomer here.
    pub(super) fn join_waiting(&self) -> bool {
        self.leading.as_ref().is_some_and(|l| l.joining.is_some())
    }

    /// The newcomer an add waits for, if any: heartbeated with the voters.
    pub(super) fn joining_node(&self) -> Option<NodeId> {
        self.leading.as_ref()?.joining.as_ref().map(|j| j.node)
    }

    /// `from` asked for catch-up from `next`: if it is the newcomer of a waiting add,
    /// notes its position and queues the add once it is close enough, or refuses the
    /// add when the newcomer says it is `retired` (module docs).
    pub(super) fn note_join_progress(
        &mut self,
        from: NodeId,
        next: Instance,
        retired: bool,
        out: &mut Output,
    ) {
        let chosen_next = self.chosen_through.next();
        let window = self.config.window_instances_max;
        let Some(joining) = self.leading.as_mut().and_then(|l| l.joining.as_mut()) else {
            return;
        };
        if joining.node != from {
            return;
        }
        if retired {
            let joining = self
                .leading
                .as_mut()
                .and_then(|l| l.joining.take())
                .expect("checked above");
            self.counters.adds_refused_retired += 1;
            out.complete.push(Completion {
                id: joining.id,
                error: ProposeError::Rejected {
                    reason: RETIRED_REASON,
                },
            });
            return;
        }
        joining.next_reported = joining.next_reported.max(next);
        if joining.next_reported.0.saturating_add(window) < chosen_next.0 {
            return;
        }
        let joining = self
            .leading
            .as_mut()
            .and_then(|l| l.joining.take())
            .expect("checked above");
        self.on_propose(
            joining.id,
            Pending::Config(joining.id, joining.membership),
            out,
        );
    }

    /// Refuses a waiting add whose deadline passed (the leader's tick).
    pub(super) fn join_tick(&mut self, now: Nanos, out: &mut Output) {
        let Some(leading) = self.leading.as_mut() else {
            return;
        };
        if leading.joining.as_ref().is_none_or(|j| now < j.deadline) {
            return;
        }
        let joining = leading.joining.take().expect("checked above");
        out.complete.push(Completion {
            id: joining.id,
            error: ProposeError::Rejected {
                reason: "the new voter did not catch up with the leader in time",
            },
        });
    }

    /// A step down ends a waiting add: nothing was proposed, so `NotLeader`.
    pub(super) fn fail_join(joining: Option<Joining>, out: &mut Output) {
        if let Some(joining) = joining {
            out.complete.push(Completion {
                id: joining.id,
                error: ProposeError::NotLeader { hint: None },
            });
        }
    }

    /// Whether a leader with nothing else to send fills `instance` with a no-op to
    /// bring the newest chosen change into effect (module docs).
    pub(super) fn fills_for_effect(&self, instance: Instance) -> bool {
        let effective = self.configs.last().expect("configs is never empty").0;
        instance < effective
            && self.queue.is_empty()
            && self.leading.as_ref().is_some_and(|l| l.transfer.is_none())
    }
}
