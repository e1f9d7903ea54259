//! Leadership transfers asked through `NodeHandle::transfer_leadership`. The group
//! decides everything (`paxos::leadership`: when to hand over, to whom, when to give
//! up); this only asks it, watches the group's view of its leader, and answers the
//! caller once the target leads, another replica took over, or the time ran out.
//!
//! Invariants: at most one transfer waits per group (so the list is bounded by the
//! shard's groups); every caller is answered exactly once (here, or `fail_all` when
//! the shard stops).

use crate::paxos::{GroupId, Nanos, NodeId, Role};

/// The `Rejected` reason of a transfer to a replica that is not a voter of the group:
/// the one refusal that asking again cannot change (the others leave the target not
/// leading yet, and a new ask goes to whoever leads then).
pub const TRANSFER_TARGET_NOT_A_VOTER: &str = "the target is not a voter of the group";
use crate::runtime::mailbox::Sender;
use crate::runtime::request::Error;
use crate::runtime::{Shard, ShardInput};

/// How many election timeouts a caller waits for the target to lead: the leader may
/// wait one for its values in flight, the target's Phase 1 takes a round trip, and
/// the caller learns of it with the target's first heartbeat.
const ELECTION_TIMEOUTS: u64 = 3;

struct Pending {
    group: GroupId,
    to: NodeId,
    deadline: Nanos,
    reply: Sender<Result<(), Error>>,
}

/// The transfers waiting for their outcome on one shard.
#[derive(Default)]
pub(super) struct Transfers {
    pending: Vec<Pending>,
}

impl Transfers {
    /// Asks `group`'s leader on this shard to hand over to `to`, or answers at once
    /// why it cannot (not the leader, no such group, a transfer already waiting, a
    /// target the group refuses).
    pub(super) fn ask(
        &mut self,
        now: Nanos,
        shard: &mut Shard,
        (group, to): (GroupId, NodeId),
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
        if to == replica.config().node {
            reply.send(Ok(()));
            return;
        }
        if self.pending.iter().any(|p| p.group == group) {
            reply.send(Err(Error::Rejected {
                reason: "a transfer of this group is already under way",
            }));
            return;
        }
        let deadline = now.plus(ELECTION_TIMEOUTS * replica.config().election_timeout_ns);
        shard.step(now, ShardInput::TransferLeadership { group, to });
        let replica = shard.group(group).expect("the group was there a step ago");
        if replica.role() == Role::Leader && replica.transferring_to() != Some(to) {
            reply.send(Err(Error::Rejected {
                reason: TRANSFER_TARGET_NOT_A_VOTER,
            }));
            return;
        }
        self.pending.push(Pending {
            group,
            to,
            deadline,
            reply,
        });
    }

    /// Answers the transfers whose outcome is known: the target leads (this replica
    /// follows it), another replica took over, the leader gave up (its values in
    /// flight were not chosen in time), or the deadline passed.
    pub(super) fn poll(&mut self, now: Nanos, shard: &Shard) {
        if self.pending.is_empty() {
            return;
        }
        for pending in std::mem::take(&mut self.pending) {
            let Some(replica) = shard.group(pending.group) else {
                self.pending.push(pending);
                continue;
            };
            let outcome = match (replica.role(), replica.leader_hint()) {
                (Role::Follower, Some(leader)) if leader == pending.to => Ok(()),
                (Role::Follower | Role::Candidate, Some(leader))
                    if leader != replica.config().node =>
                {
                    Err(Error::Rejected {
                        reason: "another replica took over before the target",
                    })
                }
                (Role::Leader, _) if replica.transferring_to().is_none() => Err(Error::Rejected {
                    reason: "the values in flight were not chosen in time; this replica \
                             leads on",
                }),
                _ if now >= pending.deadline => Err(Error::Rejected {
                    reason: "the target did not take over in time",
                }),
                _ => {
                    self.pending.push(pending);
                    continue;
                }
            };
            pending.reply.send(outcome);
        }
    }

    /// Answers every waiting transfer with `error` (the shard stops).
    pub(super) fn fail_all(&mut self, error: &Error) {
        for pending in self.pending.drain(..) {
            pending.reply.send(Err(error.clone()));
        }
    }
}
