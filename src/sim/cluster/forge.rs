//! Forged messages: made out of bounds beside real ones, and delivered with a check
//! that they change nothing.

use super::Cluster;
use crate::paxos::{
    Ballot, Body, Entry, GroupId, Instance, InstanceRange, Message, MessageBody, Nanos, NodeId,
    PromisedEntry,
};
use crate::prng::Prng;
use crate::runtime::{Shard, ShardInput};
use crate::sim::checkers::bounds::Probe;
use crate::sim::checkers::Violation;

impl Cluster {
    /// Delivers a forged message: the shard and the group it names must show the same
    /// state after the message step as before, with the refusal counted; then the
    /// shard flushes as after any step.
    pub(super) fn deliver_forged(
        &mut self,
        node: usize,
        shard: usize,
        message: Message,
    ) -> Result<(), Violation> {
        let id = self.nodes[node].id;
        let local = self.nodes[node].clock.local(self.now);
        let Some(core) = self.nodes[node].shards[shard].shard.as_mut() else {
            return Ok(());
        };
        let Some(before) = probe(core, message.group) else {
            return Ok(());
        };
        core.step(local, ShardInput::Message(message.clone()));
        let after = probe(core, message.group).expect("a shard keeps its groups");
        self.checkers
            .bounds
            .observe_forged(id, &message, &before, &after)?;
        self.flush_shard(node, shard)
    }
}

/// What a shard and its group `group` show, for comparing around a forged message.
pub(super) fn probe(core: &Shard, group: GroupId) -> Option<Probe> {
    let g = core.group(group)?;
    let out_of_bounds: u64 = g
        .counters()
        .ignored
        .iter()
        .filter(|(reason, _)| reason.ends_with("_out_of_bounds"))
        .map(|(_, count)| *count)
        .sum();
    Some(Probe {
        role: g.role(),
        ballot: g.ballot(),
        promised: g.promised(),
        highest_round_seen: g.highest_round_seen(),
        chosen_through: g.chosen_through(),
        applied_through: g.applied_through(),
        leader_hint: g.leader_hint(),
        voting: g.is_voting(),
        next_deadline: g.next_deadline(),
        lsn_planned: core.lsn_planned(),
        held_count: core.held_count(),
        refusals: out_of_bounds + core.counters().refused_messages,
    })
}

/// A round no honest replica reaches.
pub(super) fn round_over(prng: &mut Prng) -> u64 {
    match prng.below(3) {
        0 => u64::MAX,
        1 => Ballot::ROUND_MAX + 1,
        _ => prng.range(Ballot::ROUND_MAX + 1, u64::MAX),
    }
}

/// An instance beyond the log's end (or 0, which is no position).
pub(super) fn instance_over(prng: &mut Prng) -> u64 {
    match prng.below(4) {
        0 => u64::MAX,
        1 => Instance::MAX.0 + 1,
        2 => 0,
        _ => prng.range(Instance::MAX.0 + 1, u64::MAX),
    }
}

/// A forged message toward `real.to` in `real.group`: a random kind, claiming a random
/// node as its sender, plausible fields around the real message's, and one ballot or
/// instance out of bounds. Never in bounds: a peer forging messages in bounds is a
/// Byzantine peer, which Paxos does not tolerate (authentication keeps it out).
pub(super) fn forge_message(real: &Message, node_count: usize, prng: &mut Prng) -> Message {
    let from = NodeId(prng.range(1, node_count as u64) as u32);
    let near = match &real.body {
        MessageBody::Prepare { ballot, .. }
        | MessageBody::Promise { ballot, .. }
        | MessageBody::Accept { ballot, .. }
        | MessageBody::Accepted { ballot, .. }
        | MessageBody::Heartbeat { ballot, .. }
        | MessageBody::HeartbeatAck { ballot, .. }
        | MessageBody::Handover { ballot, .. }
        | MessageBody::PreVote { ballot }
        | MessageBody::PreVoteReply { ballot, .. } => ballot.round,
        MessageBody::Reject { promised }
        | MessageBody::CatchUpChunk { promised, .. }
        | MessageBody::CatchUpRaw { promised, .. } => promised.round,
        MessageBody::CatchUpRequest { .. }
        | MessageBody::CheckpointRequest { .. }
        | MessageBody::CheckpointChunk { .. } => 1,
    };
    let ballot = |round| Ballot { round, node: from };
    let plausible = ballot(near.clamp(1, Ballot::ROUND_MAX));
    let small = Instance(prng.range(1, 64));
    let noop = |origin| Entry {
        origin,
        body: Body::Noop,
    };
    // Which field goes out of bounds: a round, or else an instance (`position` may be
    // 0, which is no log position; `watermark` may not: 0 is a valid watermark).
    let bad_round = prng.coin();
    let round = if bad_round {
        round_over(prng)
    } else {
        near.max(1)
    };
    let (position, watermark) = if bad_round {
        (small, small)
    } else {
        let over = instance_over(prng);
        (Instance(over), Instance(over.max(Instance::MAX.0 + 1)))
    };
    let body = match prng.below(9) {
        0 => MessageBody::Prepare {
            ballot: ballot(round),
            from: position,
        },
        1 => MessageBody::Promise {
            ballot: plausible,
            chosen_through: small,
            entries: vec![PromisedEntry {
                instance: position,
                ballot: ballot(round),
                chosen: prng.coin(),
                entry: noop(plausible),
            }],
            truncated: false,
        },
        2 => MessageBody::Reject {
            promised: ballot(round_over(prng)),
        },
        3 => MessageBody::Accept {
            ballot: ballot(round),
            chosen_through: small,
            first: position,
            entries: vec![noop(plausible)],
        },
        4 => MessageBody::Accepted {
            ballot: plausible,
            ranges: vec![if bad_round {
                // Inverted.
                InstanceRange {
                    first: Instance(small.0 + 1),
                    last: small,
                }
            } else if position.0 == 0 {
                InstanceRange {
                    first: position,
                    last: small,
                }
            } else {
                InstanceRange {
                    first: small,
                    last: position,
                }
            }],
        },
        5 => MessageBody::Heartbeat {
            ballot: ballot(round),
            chosen_through: watermark,
            sent_at: Nanos(prng.next_u64()),
            checksum_through: Instance(0),
            checksum: 0,
        },
        6 => MessageBody::HeartbeatAck {
            ballot: ballot(round_over(prng)),
            sent_at: Nanos(prng.next_u64()),
        },
        7 => MessageBody::CatchUpRequest {
            from: Instance(instance_over(prng)),
            credit: u32::try_from(prng.next_u64() >> 32).expect("32 bits fit a u32"),
            retired: round % 2 == 1,
        },
        _ => MessageBody::CatchUpChunk {
            chosen_through: watermark,
            promised: ballot(round),
            accepted_max: small,
            first: small,
            entries: vec![noop(plausible)],
            from_voter: round % 2 == 0,
            membership_changed: round % 3 == 0,
        },
    };
    let forged = Message {
        group: real.group,
        from,
        to: real.to,
        body,
    };
    assert!(
        forged.body.check_bounds().is_err(),
        "the forger made a message in bounds: {forged:?}"
    );
    forged
}
