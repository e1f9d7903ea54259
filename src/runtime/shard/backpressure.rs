//! The shard's backpressure: when records pending for the WAL or messages held for
//! durability exceed the shard's bounds, proposals fail `Overloaded` and peer messages
//! are refused (as if lost on the network: always safe, the sender retransmits).
//!
//! Invariants:
//! - records pending for the WAL stay below `wal_pending_size_max` plus one message,
//!   or `CATCH_UP_PENDING_FACTOR` times that for catch-up chunks: their streams'
//!   credits bound them (`paxos::stream`), and refusing one costs its stream a restart,
//!   every chunk in flight sent again;
//! - a refused catch-up chunk addressed to this node, for one of its groups, is told
//!   to that group (`Input::CatchUpRefused`), which asks its stream to start over once
//!   what the WAL holds is durable, rather than when its retransmit timer runs out.

use super::Shard;
use crate::paxos::{Input, Message, MessageBody, Nanos};

/// Catch-up chunks are refused only beyond this many times `wal_pending_size_max`
/// bytes pending for the WAL (`Shard::refuses`).
const CATCH_UP_PENDING_FACTOR: usize = 2;

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
            _ => self.over_limits(),
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
