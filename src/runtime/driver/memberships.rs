//! Membership changes asked through `NodeHandle::change_membership`. The group decides
//! (`paxos::joining`: an add waits for the newcomer to catch up; one change at a time;
//! one voter per change); this turns the change into the group's next membership, asks
//! it, and answers the caller once the change is chosen AND in effect (the group's
//! applied watermark reached the instance before its effect, so the new voters govern
//! every instance from the next on), or why not.
//!
//! Invariants: at most one change waits per group (so the list is bounded by the
//! shard's groups); every caller is answered exactly once (here, or `fail_all` when
//! the shard stops); a change's proposal id is the driver's, unique on the shard.

use std::collections::BTreeSet;

use crate::paxos::{GroupId, Instance, Membership, Nanos, NodeId, ProposalId, Role};
use crate::runtime::mailbox::Sender;
use crate::runtime::request::{Error, MembershipChange};
use crate::runtime::shard::ProposalOutcome;
use crate::runtime::{Shard, ShardInput};

/// Election timeouts a caller waits beyond the core's catch-up wait
/// (`paxos::JOIN_ELECTION_TIMEOUTS`) for the change to be chosen and take effect.
const EFFECT_ELECTION_TIMEOUTS: u64 = 4;

/// Where a change stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Asked of the group: not yet chosen.
    Asked,
    /// Chosen; in effect once `applied_through + 1 >= effective`.
    Chosen { effective: Instance },
}

struct Pending {
    group: GroupId,
    id: ProposalId,
    stage: Stage,
    deadline: Nanos,
    reply: Sender<Result<(), Error>>,
}

/// The membership changes waiting for their outcome on one shard.
#[derive(Default)]
pub(super) struct Memberships {
    pending: Vec<Pending>,
}

impl Memberships {
    /// Asks `group`'s leader on this shard for `change` under proposal `id`, or answers
    /// at once why it cannot: no such group, not the leader (with its hint), a change
    /// of the group already waiting here, a node outside `address_book`, a removal of
    /// the last voter. A change already made (adding a voter, removing a non-voter) is
    /// answered `Ok` at once.
    pub(super) fn ask(
        &mut self,
        now: Nanos,
        shard: &mut Shard,
        (group, change, id): (GroupId, MembershipChange, ProposalId),
        address_book: &BTreeSet<NodeId>,
        reply: Sender<Result<(), Error>>,
    ) {
        let Some(replica) = shard.group(group) else {
            reply.send(Err(Error::NoSuchGroup { group }));
            return;
        };
        if replica.role() != Role::Leader {
            let hint = replica.leader_hint();
            reply.send(Err(Error::NotLeader { hint }));
            return;
        }
        if self.pending.iter().any(|p| p.group == group) {
            reply.send(Err(Error::Rejected {
                reason: "a membership change of this group is already under way",
            }));
            return;
        }
        let latest = replica.latest_membership();
        let mut voters = latest.voters().to_vec();
        match change {
            MembershipChange::AddVoter(node) => {
                if !address_book.contains(&node) {
                    reply.send(Err(Error::Rejected {
                        reason: "the node is not in this node's address book (every node's \
                                 `nodes` must list it)",
                    }));
                    return;
                }
                if latest.contains(node) {
                    reply.send(Ok(()));
                    return;
                }
                voters.push(node);
            }
            MembershipChange::RemoveVoter(node) => {
                if !latest.contains(node) {
                    reply.send(Ok(()));
                    return;
                }
                if voters.len() == 1 {
                    reply.send(Err(Error::Rejected {
                        reason: "the last voter of a group cannot be removed",
                    }));
                    return;
                }
                voters.retain(|v| *v != node);
            }
        }
        let config = replica.config();
        let wait_ns = (crate::paxos::JOIN_ELECTION_TIMEOUTS + EFFECT_ELECTION_TIMEOUTS)
            .saturating_mul(config.election_timeout_ns);
        self.pending.push(Pending {
            group,
            id,
            stage: Stage::Asked,
            deadline: now.plus(wait_ns),
            reply,
        });
        let membership = Membership::new(voters);
        shard.step(
            now,
            ShardInput::ChangeMembership {
                group,
                id,
                membership,
            },
        );
    }

    /// Takes the outcomes of this module's proposals out of `replies` (the shard's
    /// `Effects::replies`), leaving the others: a failure answers the caller, a
    /// change applied waits for its effect.
    pub(super) fn take_replies(
        &mut self,
        shard: &Shard,
        replies: &mut Vec<(ProposalId, ProposalOutcome)>,
    ) {
        if self.pending.is_empty() {
            return;
        }
        replies.retain(|(id, outcome)| {
            let Some(index) = self.pending.iter().position(|p| p.id == *id) else {
                return true;
            };
            match outcome {
                ProposalOutcome::Applied {
                    group, instance, ..
                } => {
                    let window = shard
                        .group(*group)
                        .map_or(0, |g| g.config().window_instances_max);
                    let effective = Instance(instance.0.saturating_add(window));
                    self.pending[index].stage = Stage::Chosen { effective };
                }
                ProposalOutcome::Aborted => {
                    let pending = self.pending.swap_remove(index);
                    pending.reply.send(Err(Error::Aborted));
                }
                ProposalOutcome::Failed(error) => {
                    let pending = self.pending.swap_remove(index);
                    pending.reply.send(Err(Error::from(error.clone())));
                }
            }
            false
        });
    }

    /// Answers the changes in effect, and those whose deadline passed.
    pub(super) fn poll(&mut self, now: Nanos, shard: &Shard) {
        if self.pending.is_empty() {
            return;
        }
        for pending in std::mem::take(&mut self.pending) {
            let applied_next = shard
                .group(pending.group)
                .map_or(Instance(0), |g| g.applied_through().next());
            let outcome = match pending.stage {
                Stage::Chosen { effective } if applied_next >= effective => Ok(()),
                Stage::Chosen { .. } if now >= pending.deadline => Err(Error::Rejected {
                    reason: "the change was chosen but did not take effect in time",
                }),
                Stage::Asked if now >= pending.deadline => Err(Error::Rejected {
                    reason: "the change was not chosen in time; it may still be",
                }),
                Stage::Asked | Stage::Chosen { .. } => {
                    self.pending.push(pending);
                    continue;
                }
            };
            pending.reply.send(outcome);
        }
    }

    /// Answers every waiting change with `error` (the shard stops).
    pub(super) fn fail_all(&mut self, error: &Error) {
        for pending in self.pending.drain(..) {
            pending.reply.send(Err(error.clone()));
        }
    }
}
