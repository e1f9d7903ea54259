//! The shard's backpressure: when records pending for the WAL or messages held for
//! durability exceed the shard's bounds, proposals fail `Overloaded` and peer messages
//! are refused (as if lost on the network: always safe, the sender retransmits).
//!
//! Invariants:
//! - records pending for the WAL stay below `wal_pending_size_max` plus one message,
//!   or `CATCH_UP_PENDING_FACTOR` times that for catch-up chunks: their streams'
//!   credits bound them (`paxos::stream`), and refusing one costs its stream a restart,
//!   every chunk in flight sent again;
//! - the messages that keep leadership and catch-up alive and append at most a small
//!   record each (heartbeats and their acks, rejections, pre-votes and their replies,
//!   handovers, catch-up requests) are refused
//!   only beyond `CONTROL_PENDING_FACTOR` times that: bulk data (accepts, catch-up
//!   chunks) never holds them up, so a follower whose WAL is full of a catch-up does
//!   not miss its leader's heartbeats and campaign (a leader's lease and a follower's
//!   election timer both depend on them);
//! - a refused catch-up chunk addressed to this node, for one of its groups, is told
//!   to that group (`Input::CatchUpRefused`), which asks its stream to start over once
//!   what the WAL holds is durable, rather than when its retransmit timer runs out.

use super::Shard;
use crate::paxos::{Input, Message, MessageBody, Nanos};

/// Catch-up chunks are refused only beyond this many times `wal_pending_size_max`
/// bytes pending for the WAL (`Shard::refuses`).
const CATCH_UP_PENDING_FACTOR: usize = 2;

/// Heartbeats, their acks, rejections, pre-votes, handovers and catch-up requests are
/// refused only beyond
/// this many times `wal_pending_size_max` bytes pending for the WAL (module docs).
const CONTROL_PENDING_FACTOR: usize = 4;

impl Shard {
    /// Whether the records pending for the WAL or the held messages exceed the
    /// shard's bounds.
    pub(super) fn over_limits(&self) -> bool {
        self.over_limits_by(1)
    }

    /// `over_limits` with `wal_pending_size_max` multiplied by `factor`.
    fn over_limits_by(&self, factor: usize) -> bool {
        let pending_max = self.config.wal_pending_size_max.saturating_mul(factor);
        self.commit.buffered_size() + self.overflow_size > pending_max
            || self.held.len() > self.config.held_count_max
    }

    /// Whether a peer message is refused for want of room (module docs).
    pub(super) fn refuses(&self, message: &Message) -> bool {
        match message.body {
            MessageBody::CatchUpChunk { .. } | MessageBody::CatchUpRaw { .. } => {
                self.over_limits_by(CATCH_UP_PENDING_FACTOR)
            }
            MessageBody::Heartbeat { .. }
            | MessageBody::HeartbeatAck { .. }
            | MessageBody::Reject { .. }
            | MessageBody::PreVote { .. }
            | MessageBody::PreVoteReply { .. }
            | MessageBody::Handover { .. }
            | MessageBody::CatchUpRequest { .. } => self.over_limits_by(CONTROL_PENDING_FACTOR),
            MessageBody::Prepare { .. }
            | MessageBody::Promise { .. }
            | MessageBody::Accept { .. }
            | MessageBody::Accepted { .. }
            | MessageBody::CheckpointRequest { .. }
            | MessageBody::CheckpointChunk { .. } => self.over_limits(),
        }
    }

    /// Counts a refused peer message and tells a refused catch-up chunk to its group.
    pub(super) fn refuse(&mut self, now: Nanos, message: &Message) {
        self.counters.refused_messages += 1;
        let first = match &message.body {
            MessageBody::CatchUpChunk { first, entries, .. } if !entries.is_empty() => Some(*first),
            MessageBody::CatchUpRaw { run, .. } => Some(run.first_instance),
            _ => None,
        };
        let Some(first) = first else {
            return;
        };
        if message.to == self.config.node && self.groups.contains_key(&message.group) {
            self.counters.catch_up_refused += 1;
            let input = Input::CatchUpRefused {
                from: message.from,
                first,
            };
            self.step_group(now, message.group, input);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{
        Ballot, Body, Entry, GroupConfig, GroupId, Instance, Lsn, Membership, NodeId, Restore,
        Values,
    };
    use crate::runtime::{CheckpointPolicy, ShardConfig, TransferPolicy, TruncationPolicy};
    use crate::wal::{GroupCommit, GroupCommitConfig, Resume};
    use bytes::Bytes;

    // Goal: with the WAL's pending bytes over the bound, bulk data is refused while the
    // leader's heartbeats still get through, up to their own larger bound.
    #[test]
    fn heartbeats_pass_where_bulk_data_is_refused() {
        let (node, leader, group) = (NodeId(2), NodeId(1), GroupId(0));
        let members = Membership::new(vec![leader, node, NodeId(3)]);
        let config = ShardConfig {
            node,
            wal_pending_size_max: 16 << 10,
            held_count_max: 10_000,
            reads_pending_count_max: 64,
            log_reads_wal_count_max: crate::runtime::log_reads::LOG_READS_WAL_COUNT_MAX,
            checkpoint: CheckpointPolicy::OFF,
            transfer: TransferPolicy::default(),
            truncation: TruncationPolicy::OFF,
        };
        let new_shard = || {
            let groups = vec![(
                GroupConfig::new(node, group, members.clone()),
                Restore::default(),
            )];
            let commit = GroupCommit::new(
                GroupCommitConfig {
                    buffer_size_max: 1 << 20,
                    salt: 7,
                    writes_in_flight_max: 1,
                },
                Resume {
                    offset: 0,
                    lsn_through: Lsn(0),
                },
            );
            Shard::new(config.clone(), groups, commit, false, Nanos(0))
        };
        let mut shard = new_shard();
        let ballot = Ballot {
            round: 1,
            node: leader,
        };
        let message = |body| Message {
            from: leader,
            to: node,
            group,
            body,
        };
        let heartbeat = message(MessageBody::Heartbeat {
            ballot,
            chosen_through: Instance(0),
            sent_at: Nanos(0),
            checksum_through: Instance(0),
            checksum: 0,
        });
        let accept = |instance: u64, size: usize| {
            message(MessageBody::Accept {
                ballot,
                first: Instance(instance),
                entries: vec![Entry {
                    origin: ballot,
                    body: Body::Values(Values::from_buf([Bytes::from(vec![7u8; size])])),
                }],
                chosen_through: Instance(0),
            })
        };
        assert!(!shard.refuses(&heartbeat) && !shard.refuses(&accept(1, 10)));
        // An accept the shard takes but cannot write (no write completes here) puts
        // its pending bytes over the bound: one message may, none after it.
        let step =
            |shard: &mut Shard, m| shard.step(Nanos(1), crate::runtime::ShardInput::Message(m));
        step(&mut shard, accept(1, 20 << 10));
        assert!(shard.over_limits(), "pending over the bound");
        assert!(shard.refuses(&accept(2, 10)), "bulk data is refused");
        assert!(!shard.refuses(&heartbeat), "a heartbeat is not");
        // A larger accept (one message may pass the bound) takes pending past a
        // heartbeat's own bound: then heartbeats are refused too.
        let mut shard = new_shard();
        step(&mut shard, accept(1, 70 << 10));
        assert!(
            shard.over_limits_by(CONTROL_PENDING_FACTOR),
            "pending over 4 bounds"
        );
        assert!(
            shard.refuses(&heartbeat),
            "a heartbeat is refused beyond its own bound"
        );
    }
}
