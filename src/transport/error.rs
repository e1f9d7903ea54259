//! Typed decode errors: what a peer sent that the codec refuses, with the numbers.
//!
//! Every variant names the field (by its schema path, e.g. `Accept.entries`), the value
//! found and the limit it broke, so a log line alone says what the peer did wrong.

use crate::paxos::OutOfBounds;
use flatbuffers::InvalidFlatbuffer;
use std::fmt;

/// Why a frame from a peer was refused. The frame is dropped whole: no part of a
/// refused frame reaches the protocol core.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame is larger than `DecodeLimits::frame_size_max`.
    FrameTooLarge {
        /// Bytes in the frame.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The frame does not carry the schema's file identifier (`SYNW`) at bytes 4..8.
    BadIdentifier {
        /// The four bytes found there (zero-padded when the frame is shorter).
        found: [u8; 4],
    },
    /// The flatbuffers verifier refused the buffer (out-of-bounds offset, misalignment,
    /// missing required field, too many tables, apparent size above the bound, ...).
    Verifier(InvalidFlatbuffer),
    /// A union tag this build does not know (or `NONE`).
    UnknownUnion {
        /// The union field, e.g. `Message.body`.
        field: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// An enum value this build does not know.
    UnknownEnum {
        /// The enum field, e.g. `Entry.body_kind`.
        field: &'static str,
        /// The value found.
        value: u8,
    },
    /// The frame holds another body than the one the caller decodes.
    UnexpectedFrameBody {
        /// The body the caller asked for.
        expected: &'static str,
        /// The body the frame holds.
        found: &'static str,
    },
    /// A vector has more elements than its limit.
    TooMany {
        /// The vector, e.g. `Accept.entries`.
        field: &'static str,
        /// Elements found.
        count: usize,
        /// The limit (a `DecodeLimits` field).
        max: usize,
    },
    /// A value is larger than `DecodeLimits::value_size_max`.
    ValueTooLarge {
        /// Bytes in the value.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An instance (or LSN) that must be a log position (>= 1) is 0.
    Zero {
        /// The field, e.g. `Accept.first`.
        field: &'static str,
    },
    /// The last instance of a run (`first + count - 1`) does not fit in a u64.
    InstanceOverflow {
        /// The field holding the run's first instance.
        field: &'static str,
        /// The run's first instance.
        first: u64,
        /// Elements in the run.
        count: usize,
    },
    /// An `InstanceRange` with `first > last`.
    RangeInverted {
        /// The range's first instance.
        first: u64,
        /// The range's last instance.
        last: u64,
    },
    /// A vector that must be strictly ascending is not (for ranges: not disjoint).
    NotAscending {
        /// The vector, e.g. `Accepted.ranges`.
        field: &'static str,
        /// The previous element's (last) value.
        previous: u64,
        /// The next element's (first) value.
        next: u64,
    },
    /// A membership without voters.
    EmptyMembership,
    /// A field present where the entry's body kind does not allow it (e.g. `values`
    /// on a `Noop` entry).
    UnexpectedField {
        /// The field.
        field: &'static str,
        /// The entry's body kind.
        body_kind: &'static str,
    },
    /// A checkpoint chunk whose bytes fall outside the checkpoint, or a last chunk
    /// that does not end it.
    CheckpointChunkBounds {
        /// The chunk's offset.
        offset: u64,
        /// Bytes in the chunk.
        size: usize,
        /// The checkpoint's size.
        total_size: u64,
        /// Whether the chunk says it is the last.
        last: bool,
    },
    /// A ballot round or an instance beyond the bounds no honest replica crosses
    /// (`Ballot::ROUND_MAX`, `Instance::MAX`, see `paxos::bounds`): forged or corrupt.
    OutOfBounds(OutOfBounds),
    /// The values, records or data of the frame add up to more bytes than the frame
    /// holds: offsets alias one payload many times (an amplification attempt).
    PayloadAliased {
        /// Payload bytes the frame would decode into.
        payload_size: usize,
        /// Bytes in the frame.
        frame_size: usize,
    },
    /// A fixed-size byte field (a handshake's nonce or proof) of another size.
    WrongSize {
        /// The field, e.g. `Handshake.nonce`.
        field: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The size it must have.
        expected: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::FrameTooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds frame_size_max = {max}")
            }
            DecodeError::BadIdentifier { found } => {
                write!(f, "frame identifier is {found:?}, expected b\"SYNW\"")
            }
            DecodeError::Verifier(error) => write!(f, "flatbuffers verifier: {error}"),
            DecodeError::UnknownUnion { field, tag } => {
                write!(f, "{field}: unknown union tag {tag}")
            }
            DecodeError::UnknownEnum { field, value } => {
                write!(f, "{field}: unknown enum value {value}")
            }
            DecodeError::UnexpectedFrameBody { expected, found } => {
                write!(f, "frame holds a {found}, expected a {expected}")
            }
            DecodeError::TooMany { field, count, max } => {
                write!(f, "{field} has {count} elements, limit {max}")
            }
            DecodeError::ValueTooLarge { size, max } => {
                write!(
                    f,
                    "Value.data of {size} bytes exceeds value_size_max = {max}"
                )
            }
            DecodeError::Zero { field } => write!(f, "{field} is 0, must be >= 1"),
            DecodeError::InstanceOverflow {
                field,
                first,
                count,
            } => write!(f, "{field} = {first} with {count} entries overflows u64"),
            DecodeError::RangeInverted { first, last } => {
                write!(f, "InstanceRange first = {first} > last = {last}")
            }
            DecodeError::NotAscending {
                field,
                previous,
                next,
            } => write!(
                f,
                "{field} not strictly ascending: {next} follows {previous}"
            ),
            DecodeError::EmptyMembership => write!(f, "Entry.voters is empty for a Config entry"),
            DecodeError::UnexpectedField { field, body_kind } => {
                write!(f, "{field} present on an entry of body_kind {body_kind}")
            }
            DecodeError::CheckpointChunkBounds {
                offset,
                size,
                total_size,
                last,
            } => write!(
                f,
                "CheckpointChunk offset = {offset} + {size} bytes (last = {last}) \
                 does not fit total_size = {total_size}"
            ),
            DecodeError::OutOfBounds(out_of_bounds) => write!(f, "{out_of_bounds}"),
            DecodeError::PayloadAliased {
                payload_size,
                frame_size,
            } => write!(
                f,
                "payload of {payload_size} bytes decoded from a frame of {frame_size} bytes \
                 (aliased offsets)"
            ),
            DecodeError::WrongSize {
                field,
                size,
                expected,
            } => write!(f, "{field} has {size} bytes, must have {expected}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<InvalidFlatbuffer> for DecodeError {
    fn from(error: InvalidFlatbuffer) -> DecodeError {
        DecodeError::Verifier(error)
    }
}
