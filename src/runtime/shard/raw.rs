//! The shard's side of catch-up by raw WAL records (`MessageBody::CatchUpRaw`): the
//! receiver verifies a run whole (`wal::catch_up::verify_raw`: sizes, CRC32C with the
//! run's salt, decoding within limits, the Accept or Learn of the group at each
//! consecutive instance) BEFORE its group sees any entry, then hands the group the
//! `CatchUpChunk` of the verified entries, which it appends through its own group
//! commit like any other chunk. The paxos layer knows nothing of the WAL's format.
//!
//! Invariants:
//! - a run that fails verification, or names another group than its message, is
//!   refused whole (`CatchUpCounters::raw_refused`): nothing of it reaches the group,
//!   so nothing of it is persisted, and the peer asks again (the group's catch-up
//!   request is still outstanding);
//! - a run is bounded by the group's `message_size_max` bytes and
//!   `catch_up_entries_max` instances, as a chunk of entries is.

use super::Shard;
use crate::paxos::{Input, Message, MessageBody, Nanos};
use crate::wal::catch_up::verify_raw;
use crate::wal::record::DecodeLimits;

/// Catch-up by raw runs as one shard saw it: runs it sent (their bytes) and runs it
/// received, verified or refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatchUpCounters {
    /// `CatchUpRaw` messages its groups sent (one run each).
    pub raw_runs_sent: u64,
    /// Bytes of records in those runs.
    pub raw_bytes_sent: u64,
    /// Runs received that verified and went to their group as entries.
    pub raw_runs_received: u64,
    /// Runs received and refused whole (a record that does not verify, bounds, another
    /// group).
    pub raw_refused: u64,
}

impl Shard {
    /// A `CatchUpRaw` addressed to this node, in bounds, for a group of the shard:
    /// verified whole, then stepped into the group as the `CatchUpChunk` of its
    /// entries; refused whole otherwise.
    pub(super) fn on_catch_up_raw(&mut self, now: Nanos, message: Message) {
        let MessageBody::CatchUpRaw {
            chosen_through,
            promised,
            accepted_max,
            run,
            from_voter,
            membership_changed,
        } = message.body
        else {
            unreachable!("the caller matched a CatchUpRaw")
        };
        let Some(group) = self.groups.get(&message.group) else {
            unreachable!("the caller checked the group exists")
        };
        let config = group.config();
        let verified = if run.group == message.group {
            verify_raw(
                &run,
                config.message_size_max,
                config.catch_up_entries_max,
                &DecodeLimits::default(),
            )
            .ok()
        } else {
            None
        };
        let entries = match verified {
            Some(entries) => entries,
            None => {
                // Counted, not logged: a flood of forged runs must not become a flood
                // of log lines.
                self.catch_up.raw_refused += 1;
                return;
            }
        };
        self.catch_up.raw_runs_received += 1;
        let chunk = Message {
            body: MessageBody::CatchUpChunk {
                chosen_through,
                promised,
                accepted_max,
                first: run.first_instance,
                entries,
                from_voter,
                membership_changed,
            },
            ..message
        };
        self.step_group(now, chunk.group, Input::Message(chunk));
    }

    /// Catch-up by raw runs, as this shard saw it.
    #[must_use]
    pub fn catch_up_counters(&self) -> &CatchUpCounters {
        &self.catch_up
    }
}

/// Counts `message` in `counters` when it is a run a group step sends (`absorb`).
pub(super) fn count_sent(counters: &mut CatchUpCounters, message: &Message) {
    if let MessageBody::CatchUpRaw { run, .. } = &message.body {
        counters.raw_runs_sent += 1;
        counters.raw_bytes_sent += run.size() as u64;
    }
}
