//! Why bytes are not a valid record: one variant per check of the decoder, with the
//! numbers in the message. Offsets are relative to the record's first byte.

use super::Kind;
use crate::wal::layout::{HEADER_SIZE, RECORD_ALIGN};
use std::fmt;

/// Why bytes are not a valid record. Offsets are relative to the record's first byte.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// Fewer bytes than the header, or than the record's `size`.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// `size` is below the header size or not a multiple of the record alignment.
    SizeInvalid {
        /// The `size` field.
        size: u32,
    },
    /// `size` exceeds `DecodeLimits::record_size_max`.
    SizeTooLarge {
        /// The `size` field.
        size: u32,
        /// The limit.
        max: u32,
    },
    /// The `kind` byte names no kind.
    KindUnknown {
        /// The `kind` byte.
        kind: u8,
    },
    /// A reserved byte is not zero.
    ReservedNotZero {
        /// Offset of the byte.
        offset: usize,
    },
    /// The LSN is 0.
    LsnZero,
    /// `batch_delta` exceeds `lsn - 1` (the batch would start at or before LSN 0).
    BatchDeltaInvalid {
        /// The LSN.
        lsn: u64,
        /// The `batch_delta` field.
        batch_delta: u32,
    },
    /// The checksum does not match the bytes (damage, a torn write, or another log).
    Checksum {
        /// Checksum stored in the record.
        stored: u32,
        /// Checksum computed over the bytes.
        computed: u32,
    },
    /// A field this kind does not use is not zero.
    FieldNotZero {
        /// The kind.
        kind: Kind,
        /// The field.
        field: &'static str,
    },
    /// An Accept or Learn names instance 0, which is never a log position.
    InstanceZero {
        /// The kind.
        kind: Kind,
    },
    /// The payload ends inside the entry.
    PayloadTruncated {
        /// Offset where more bytes were needed.
        offset: usize,
        /// Bytes needed there.
        needed: usize,
    },
    /// Bytes after the entry (or in a Pad) are not a zero tail shorter than the alignment.
    PayloadTrailing {
        /// Offset of the first unexpected byte.
        offset: usize,
        /// Bytes from there to the end of the record.
        bytes: usize,
    },
    /// The entry's body tag names no body.
    BodyTagUnknown {
        /// The tag.
        tag: u8,
    },
    /// More values than `DecodeLimits::values_count_max`.
    ValuesCountTooLarge {
        /// Count in the record.
        count: u32,
        /// The limit.
        max: u32,
    },
    /// A membership with no voter or more than `DecodeLimits::voters_count_max`.
    VotersCountInvalid {
        /// Count in the record.
        count: u32,
        /// The limit.
        max: u32,
    },
    /// Voters are not strictly increasing (the canonical form of a `Membership`).
    VotersNotSorted {
        /// Index of the first voter out of order.
        index: u32,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Truncated { needed, available } => {
                write!(
                    f,
                    "record truncated: {needed} bytes needed, {available} available"
                )
            }
            RecordError::SizeInvalid { size } => write!(
                f,
                "record size {size} is below {HEADER_SIZE} or not a multiple of {RECORD_ALIGN}"
            ),
            RecordError::SizeTooLarge { size, max } => {
                write!(f, "record size {size} exceeds record_size_max {max}")
            }
            RecordError::KindUnknown { kind } => write!(f, "unknown record kind {kind}"),
            RecordError::ReservedNotZero { offset } => {
                write!(f, "reserved byte at offset {offset} is not zero")
            }
            RecordError::LsnZero => write!(f, "record LSN is 0"),
            RecordError::BatchDeltaInvalid { lsn, batch_delta } => {
                write!(f, "batch_delta {batch_delta} is not below LSN {lsn}")
            }
            RecordError::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            RecordError::FieldNotZero { kind, field } => {
                write!(f, "{kind:?} record has a non-zero {field}")
            }
            RecordError::InstanceZero { kind } => write!(f, "{kind:?} record at instance 0"),
            RecordError::PayloadTruncated { offset, needed } => {
                write!(
                    f,
                    "payload truncated: {needed} bytes needed at offset {offset}"
                )
            }
            RecordError::PayloadTrailing { offset, bytes } => write!(
                f,
                "{bytes} unexpected trailing bytes at offset {offset} (at most {} zero bytes)",
                RECORD_ALIGN - 1
            ),
            RecordError::BodyTagUnknown { tag } => write!(f, "unknown entry body tag {tag}"),
            RecordError::ValuesCountTooLarge { count, max } => {
                write!(f, "{count} values exceed values_count_max {max}")
            }
            RecordError::VotersCountInvalid { count, max } => {
                write!(f, "{count} voters: need 1 to voters_count_max {max}")
            }
            RecordError::VotersNotSorted { index } => {
                write!(f, "voter {index} is not above the one before it")
            }
        }
    }
}

impl std::error::Error for RecordError {}
