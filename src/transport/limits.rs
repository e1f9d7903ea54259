//! Decode limits: every count and size a peer can make the decoder allocate or walk is
//! bounded here, and the flatbuffers verifier options are derived from the same limits.
//!
//! Invariant: an honest encoder whose output respects these limits is always accepted
//! (the verifier bounds below are proven against the encoding, see
//! [`DecodeLimits::verifier_options`]).

use flatbuffers::VerifierOptions;

/// Bounds on what one decoded frame may contain. The runtime derives them from its
/// configuration; [`DecodeLimits::default`] matches the defaults of `GroupConfig::new`
/// with headroom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Most bytes in one frame (the flatbuffer, without the u32 length header).
    pub frame_size_max: usize,
    /// Most messages in one `MessageBatch`.
    pub messages_max: usize,
    /// Most entries in one `Accept`, `Promise` or `CatchUpChunk` (the protocol's
    /// `promise_entries_max`, `catch_up_entries_max` and window must fit).
    pub entries_max: usize,
    /// Most values in one entry (the protocol's `batch_values_max` must fit).
    pub values_max: usize,
    /// Largest single value in bytes (the protocol's `value_size_max` must fit).
    pub value_size_max: usize,
    /// Most ranges in one `Accepted`.
    pub ranges_max: usize,
    /// Most voters in one membership.
    pub voters_max: usize,
    /// Most heartbeats (or heartbeat acks) in one batch: one per group of a shard.
    pub heartbeats_max: usize,
}

impl Default for DecodeLimits {
    fn default() -> DecodeLimits {
        DecodeLimits {
            frame_size_max: 16 << 20,
            messages_max: 65_536,
            entries_max: 4_096,
            values_max: 4_096,
            value_size_max: 1 << 20,
            ranges_max: 4_096,
            voters_max: 64,
            heartbeats_max: 65_536,
        }
    }
}

/// Deepest table nesting the schema allows: Frame > MessageBatch > Message > Promise >
/// PromisedEntry > Entry > Value. The verifier is driven by the schema, so no input can
/// nest deeper; the bound is stated anyway so that a schema change must revisit it.
pub const TABLE_DEPTH_MAX: usize = 7;

/// Every table of an honest frame owns at least 8 bytes the verifier reads: its own
/// 4-byte `soffset` to its vtable and the 4-byte `uoffset` that points at it (the
/// builder shares vtables, never tables). A frame of `n` bytes thus holds at most
/// `n / 8 + 1` tables; more means the input points many offsets at one table (a DAG),
/// which would make decoding cost more than the frame's size.
pub const TABLE_BYTES_MIN: usize = 8;

/// The verifier's "apparent size" counts every byte it reads, re-counting shared
/// vtables once per table and 2 bytes per vtable slot it consults. For the frames this
/// codec builds that is below 4 times the frame size (measured by
/// `tests/codec.rs::verifier_bounds_accept_honest_frames`); a larger apparent size
/// means a DAG that expands past the frame.
pub const APPARENT_SIZE_FACTOR: usize = 4;

impl DecodeLimits {
    /// The verifier options for one frame of `frame_size` bytes (already checked to be
    /// at most `frame_size_max`). Bounds derive from the actual frame size, so a small
    /// frame cannot make the decoder visit (or allocate) more than a small multiple of
    /// its own size, even when its offsets alias.
    #[must_use]
    pub fn verifier_options(&self, frame_size: usize) -> VerifierOptions {
        let frame_size = frame_size.min(self.frame_size_max);
        VerifierOptions {
            max_depth: TABLE_DEPTH_MAX,
            max_tables: frame_size / TABLE_BYTES_MIN + 1,
            max_apparent_size: frame_size.saturating_mul(APPARENT_SIZE_FACTOR),
            // The schema has no strings.
            ignore_missing_null_terminator: false,
        }
    }
}
