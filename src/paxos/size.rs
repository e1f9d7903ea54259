//! Sizes of peer messages in the wire encoding, bounded from above without encoding, so
//! that the core can split what it sends by bytes (see `GroupConfig::message_size_max`).
//!
//! The wire codec (`transport::codec`, flatbuffers) lives in a layer above `paxos`, so
//! the core cannot ask it. Instead every table, vtable, vector header and alignment pad
//! the encoding may add is bounded by a constant here, per message, per entry and per
//! value; the payload bytes are counted exactly. The real codec checks the bound
//! (`tests/message_size.rs` encodes random messages of every kind).
//!
//! Invariants:
//! - a frame holding the single message `m` encodes into at most
//!   `m.body.encoded_size()` bytes; a frame holding several messages into at most the
//!   sum of theirs (each estimate counts a whole frame's overhead);
//! - the bound is tight up to the constants: at most [`MESSAGE_OVERHEAD_SIZE`] plus the
//!   per-entry and per-value overheads above the real size, so a budget of a few MiB
//!   is not wasted on slack.

use super::message::{MessageBody, PromisedEntry};
use super::types::{Body, Entry};

/// Bytes a frame holding one message of any kind may take beyond its entries and
/// ranges: the frame's root offset and file identifier, the `Frame`, `MessageBatch` and
/// `Message` tables, the batch's vector, the body table with its fixed fields, their
/// vtables and alignment pads. (The codec was measured at up to 168; the rest is
/// margin.)
pub const MESSAGE_OVERHEAD_SIZE: usize = 256;

/// Bytes one entry may take beyond its values or voters: its offset in the entries
/// vector, the `Entry` table (origin ballot, body kind, two offsets), its vtable, the
/// header of its values or voters vector, and alignment. (Measured: up to 46.)
pub const ENTRY_OVERHEAD_SIZE: usize = 96;

/// Bytes one value may take beyond its payload: its offset in the values vector, the
/// `Value` table and vtable, the data vector's length and its pad to 4 bytes.
/// (Measured: up to 23.)
pub const VALUE_OVERHEAD_SIZE: usize = 32;

/// Bytes one piece of a `CatchUpRaw` run may take beyond its records: its offset in
/// the pieces vector, the `RawPiece` table and vtable, the records vector's length and
/// its pad to 4 bytes (as a value's).
pub const PIECE_OVERHEAD_SIZE: usize = 32;

/// Bytes one voter of a `Config` entry takes.
pub const VOTER_SIZE: usize = 4;

/// Bytes a promised entry may take beyond its entry: its offset in the vector, the
/// `PromisedEntry` table (instance, ballot, chosen flag, entry offset), its vtable and
/// alignment. (Measured: up to 48.)
pub const PROMISED_ENTRY_OVERHEAD_SIZE: usize = 64;

/// Bytes one range of an `Accepted` takes (two u64, inline).
pub const RANGE_SIZE: usize = 16;

/// The largest `Entry::encoded_size` of a batch of at most `batch_values_max` values
/// and `batch_size_max` payload bytes (what batch propose builds from values no larger
/// than `value_size_max <= batch_size_max`).
#[must_use]
pub fn batch_entry_size_max(batch_size_max: usize, batch_values_max: usize) -> usize {
    ENTRY_OVERHEAD_SIZE
        .saturating_add(batch_size_max)
        .saturating_add(batch_values_max.saturating_mul(VALUE_OVERHEAD_SIZE))
}

impl Entry {
    /// An upper bound on the bytes this entry takes in an `Accept` or `CatchUpChunk`
    /// (payload exactly, structure by the constants of `paxos::size`).
    #[must_use]
    pub fn encoded_size(&self) -> usize {
        let body = match &self.body {
            Body::Values(values) => values.iter().fold(0usize, |sum, value| {
                sum.saturating_add(value.len())
                    .saturating_add(VALUE_OVERHEAD_SIZE)
            }),
            Body::Noop | Body::StartWorking => 0,
            Body::Config(membership) => membership.voters().len().saturating_mul(VOTER_SIZE),
        };
        ENTRY_OVERHEAD_SIZE.saturating_add(body)
    }
}

impl PromisedEntry {
    /// An upper bound on the bytes this report takes in a `Promise`.
    #[must_use]
    pub fn encoded_size(&self) -> usize {
        PROMISED_ENTRY_OVERHEAD_SIZE.saturating_add(self.entry.encoded_size())
    }
}

impl MessageBody {
    /// An upper bound on the bytes of a frame holding this message alone (see the
    /// invariants of `paxos::size`). O(entries + values); allocates nothing.
    #[must_use]
    pub fn encoded_size(&self) -> usize {
        // No wildcard: a new message kind must say what it costs.
        let variable = match self {
            MessageBody::Promise { entries, .. } => entries
                .iter()
                .fold(0usize, |sum, e| sum.saturating_add(e.encoded_size())),
            MessageBody::Accept { entries, .. } | MessageBody::CatchUpChunk { entries, .. } => {
                entries
                    .iter()
                    .fold(0usize, |sum, e| sum.saturating_add(e.encoded_size()))
            }
            MessageBody::Accepted { ranges, .. } => ranges.len().saturating_mul(RANGE_SIZE),
            MessageBody::CheckpointChunk { data, .. } => data.len(),
            // Each piece is a vector in a table of its own.
            MessageBody::CatchUpRaw { run, .. } => run
                .size()
                .saturating_add(run.records.len().saturating_mul(PIECE_OVERHEAD_SIZE)),
            MessageBody::CheckpointRequest { .. }
            | MessageBody::Prepare { .. }
            | MessageBody::Reject { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::HeartbeatAck { .. }
            | MessageBody::CatchUpRequest { .. }
            | MessageBody::Handover { .. }
            | MessageBody::PreVote { .. }
            | MessageBody::PreVoteReply { .. } => 0,
        };
        MESSAGE_OVERHEAD_SIZE.saturating_add(variable)
    }
}

/// Packs entries into one message under a byte budget and a count limit: the first
/// entry always goes (a message must make progress), every later one only if the
/// message stays within both. `size` starts at [`MESSAGE_OVERHEAD_SIZE`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Packer {
    size: usize,
    count: usize,
    size_max: usize,
    count_max: usize,
}

impl Packer {
    /// An empty message with a budget of `size_max` bytes and `count_max` entries.
    pub(super) fn new(size_max: usize, count_max: usize) -> Packer {
        Packer {
            size: MESSAGE_OVERHEAD_SIZE,
            count: 0,
            size_max,
            count_max,
        }
    }

    /// Adds an entry of `entry_size` bytes if it fits (or is the first); returns
    /// whether it was added.
    pub(super) fn add(&mut self, entry_size: usize) -> bool {
        let size = self.size.saturating_add(entry_size);
        let fits = self.count == 0 || (self.count < self.count_max && size <= self.size_max);
        if fits {
            self.size = size;
            self.count += 1;
        }
        fits
    }
}

#[cfg(test)]
mod tests {
    use super::{Packer, MESSAGE_OVERHEAD_SIZE};

    // Goal: the packer always takes a first entry, then respects bytes and count.
    // Method: feed sizes by hand around both limits.
    #[test]
    fn packer_respects_both_limits() {
        let mut p = Packer::new(MESSAGE_OVERHEAD_SIZE + 100, 3);
        assert!(p.add(1_000), "the first entry always goes");
        assert!(!p.add(1), "over the byte budget");
        let mut p = Packer::new(MESSAGE_OVERHEAD_SIZE + 100, 3);
        assert!(p.add(40) && p.add(60));
        assert!(!p.add(1), "exactly at the budget, nothing more");
        let mut p = Packer::new(usize::MAX, 2);
        assert!(p.add(1) && p.add(1));
        assert!(!p.add(1), "over the count");
    }
}
