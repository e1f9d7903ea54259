//! Segment format: the shard's log as a sequence of fixed-size files. This module names
//! the files, encodes and decodes their header block, draws each segment's salt and maps
//! log offsets to (segment, file offset). Pure; the lowest wal module after `record`.
//!
//! Log offsets are the concatenated payloads of the segments: segment `i` holds log
//! offsets `[i * payload_size, (i + 1) * payload_size)` at file offsets
//! `[SEGMENT_HEADER_SIZE, segment_size)`. `GroupCommit::segmented` never lets a batch
//! straddle two segments, so every write lands in one file and every segment scans on
//! its own, chained by its header's `lsn_prev` (`ScanConfig::lsn_prev`).
//!
//! Invariants (kept by the writer, `group_commit::header_for` and `file::store`; relied
//! on by `log_recovery`):
//! - a segment's header is written and made durable BEFORE any record is written to it,
//!   and its first batch starts at payload offset 0 (so a segment whose header is torn
//!   and whose first payload block is zero never held a record);
//! - segment `i + 1` is initialised only after every batch of segment `i` is durable
//!   (one write in flight), so its `lsn_prev` is the last LSN of segment `i`;
//! - a segment (re)initialised gets a fresh salt (`segment_salt` of a seed drawn at every
//!   open), so records of an earlier use of the file or the index never verify.

use super::layout::BLOCK_SIZE;
use crate::paxos::Lsn;
use crate::support::{le_u32, le_u64};
use std::fmt;

/// Bytes of the segment header: one block; records start right after it.
pub const SEGMENT_HEADER_SIZE: usize = BLOCK_SIZE;

/// First bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"synodWAL";

/// Format version written in every header (2: `log_start` added).
pub const SEGMENT_VERSION: u16 = 2;

/// Smallest segment: the header and one block of records.
pub const SEGMENT_SIZE_MIN: u64 = 2 * BLOCK_SIZE as u64;

const OFFSET_CHECKSUM: usize = 8;
const OFFSET_VERSION: usize = 12;
const OFFSET_RESERVED: usize = 14;
const OFFSET_SHARD: usize = 16;
const OFFSET_SALT: usize = 20;
const OFFSET_INDEX: usize = 24;
const OFFSET_LSN_PREV: usize = 32;
const OFFSET_SEGMENT_SIZE: usize = 40;
const OFFSET_LOG_START: usize = 48;
const HEADER_FIELDS_END: usize = 56;

/// The salt of segment `index` of a log opened with `seed` (see the module invariants).
#[must_use]
pub fn segment_salt(seed: u64, index: u64) -> u32 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..].copy_from_slice(&index.to_le_bytes());
    crc32c::crc32c(&bytes)
}

/// File name of segment `index` of `shard`: `wal-<shard:010>-<index:020>.seg`. Fixed
/// width, so lexical order is log order. Named by index rather than first LSN: a gap in
/// indices reveals a missing segment, which LSN names cannot.
#[must_use]
pub fn segment_file_name(shard: u32, index: u64) -> String {
    format!("wal-{shard:010}-{index:020}.seg")
}

/// `(shard, index)` of a segment file name, or `None` if `name` is not exactly one.
#[must_use]
pub fn parse_segment_file_name(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix("wal-")?.strip_suffix(".seg")?;
    let (shard, index) = rest.split_once('-')?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(shard, 10) || !digits(index, 20) {
        return None;
    }
    Some((shard.parse().ok()?, index.parse().ok()?))
}

/// Sizes of a segmented log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentGeometry {
    /// Bytes of one segment file, header included; a multiple of `BLOCK_SIZE`, at least
    /// `SEGMENT_SIZE_MIN`.
    pub segment_size: u64,
}

impl SegmentGeometry {
    /// A geometry; panics (programmer error) on a size that is not a multiple of
    /// `BLOCK_SIZE` or is below `SEGMENT_SIZE_MIN`.
    #[must_use]
    pub fn new(segment_size: u64) -> SegmentGeometry {
        assert!(
            segment_size % BLOCK_SIZE as u64 == 0 && segment_size >= SEGMENT_SIZE_MIN,
            "segment_size {segment_size} must be a multiple of {BLOCK_SIZE} and >= {SEGMENT_SIZE_MIN}"
        );
        SegmentGeometry { segment_size }
    }

    /// Bytes of records one segment holds.
    #[must_use]
    pub fn payload_size(&self) -> u64 {
        self.segment_size - SEGMENT_HEADER_SIZE as u64
    }

    /// `(segment index, file offset)` of a log offset.
    #[must_use]
    pub fn locate(&self, log_offset: u64) -> (u64, u64) {
        let payload = self.payload_size();
        (
            log_offset / payload,
            SEGMENT_HEADER_SIZE as u64 + log_offset % payload,
        )
    }

    /// The log offset of `file_offset` (at or after the header) in segment `index`.
    #[must_use]
    pub fn log_offset(&self, index: u64, file_offset: u64) -> u64 {
        assert!(
            file_offset >= SEGMENT_HEADER_SIZE as u64 && file_offset <= self.segment_size,
            "file offset {file_offset} outside the payload"
        );
        index * self.payload_size() + file_offset - SEGMENT_HEADER_SIZE as u64
    }
}

/// The header of one segment (layout in `schema/wal.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The shard whose log this is.
    pub shard: u32,
    /// Salt of every record in the segment.
    pub salt: u32,
    /// Position of the segment in the log, from 0.
    pub segment_index: u64,
    /// LSN of the last record before this segment.
    pub lsn_prev: Lsn,
    /// Bytes of the segment, header included.
    pub segment_size: u64,
    /// Index of the log's first segment when this one was initialised (at most
    /// `segment_index`): segments below it may have been deleted by truncation, which
    /// deletes a segment only AFTER a header naming a higher `log_start` is durable.
    pub log_start: u64,
}

/// Why a header block is not a valid header.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer than `SEGMENT_HEADER_SIZE` bytes.
    Truncated {
        /// Bytes available.
        available: usize,
    },
    /// Every byte is zero: a preallocated segment never initialised.
    Blank,
    /// The magic bytes are wrong.
    Magic,
    /// The checksum does not match.
    Checksum {
        /// Stored.
        stored: u32,
        /// Computed over bytes `[12, 4096)`.
        computed: u32,
    },
    /// Unknown format version.
    Version {
        /// The version field.
        version: u16,
    },
    /// A reserved field or byte is not zero.
    ReservedNotZero,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Truncated { available } => write!(
                f,
                "segment header truncated: {available} of {SEGMENT_HEADER_SIZE} bytes"
            ),
            HeaderError::Blank => write!(f, "segment header is blank (never initialised)"),
            HeaderError::Magic => write!(f, "segment header magic is not synodWAL"),
            HeaderError::Checksum { stored, computed } => write!(
                f,
                "segment header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            HeaderError::Version { version } => write!(
                f,
                "segment header version {version}, expected {SEGMENT_VERSION}"
            ),
            HeaderError::ReservedNotZero => write!(f, "segment header reserved bytes not zero"),
        }
    }
}

impl std::error::Error for HeaderError {}

impl SegmentHeader {
    /// The header block, `SEGMENT_HEADER_SIZE` bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut block = vec![0u8; SEGMENT_HEADER_SIZE];
        block[..8].copy_from_slice(&SEGMENT_MAGIC);
        block[OFFSET_VERSION..OFFSET_RESERVED].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        block[OFFSET_SHARD..OFFSET_SALT].copy_from_slice(&self.shard.to_le_bytes());
        block[OFFSET_SALT..OFFSET_INDEX].copy_from_slice(&self.salt.to_le_bytes());
        block[OFFSET_INDEX..OFFSET_LSN_PREV].copy_from_slice(&self.segment_index.to_le_bytes());
        block[OFFSET_LSN_PREV..OFFSET_SEGMENT_SIZE].copy_from_slice(&self.lsn_prev.0.to_le_bytes());
        block[OFFSET_SEGMENT_SIZE..OFFSET_LOG_START]
            .copy_from_slice(&self.segment_size.to_le_bytes());
        block[OFFSET_LOG_START..HEADER_FIELDS_END].copy_from_slice(&self.log_start.to_le_bytes());
        let checksum = crc32c::crc32c(&block[OFFSET_VERSION..]);
        block[OFFSET_CHECKSUM..OFFSET_VERSION].copy_from_slice(&checksum.to_le_bytes());
        block
    }

    /// Decodes a header from the first `SEGMENT_HEADER_SIZE` bytes of `bytes`. Never
    /// panics.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let Some(block) = bytes.get(..SEGMENT_HEADER_SIZE) else {
            return Err(HeaderError::Truncated {
                available: bytes.len(),
            });
        };
        if block.iter().all(|b| *b == 0) {
            return Err(HeaderError::Blank);
        }
        if block[..8] != SEGMENT_MAGIC {
            return Err(HeaderError::Magic);
        }
        let stored = le_u32(block, OFFSET_CHECKSUM);
        let computed = crc32c::crc32c(&block[OFFSET_VERSION..]);
        if stored != computed {
            return Err(HeaderError::Checksum { stored, computed });
        }
        let version = u16::from_le_bytes([block[OFFSET_VERSION], block[OFFSET_VERSION + 1]]);
        if version != SEGMENT_VERSION {
            return Err(HeaderError::Version { version });
        }
        if block[OFFSET_RESERVED..OFFSET_SHARD] != [0, 0]
            || block[HEADER_FIELDS_END..].iter().any(|b| *b != 0)
        {
            return Err(HeaderError::ReservedNotZero);
        }
        Ok(SegmentHeader {
            shard: le_u32(block, OFFSET_SHARD),
            salt: le_u32(block, OFFSET_SALT),
            segment_index: le_u64(block, OFFSET_INDEX),
            lsn_prev: Lsn(le_u64(block, OFFSET_LSN_PREV)),
            segment_size: le_u64(block, OFFSET_SEGMENT_SIZE),
            log_start: le_u64(block, OFFSET_LOG_START),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEGMENT_SIZE: u64 = 4 * BLOCK_SIZE as u64;

    // Goal: names sort in log order and parse back; anything else is not a segment.
    // Method: round-trip, then near misses.
    #[test]
    fn names() {
        assert_eq!(
            segment_file_name(7, 12),
            "wal-0000000007-00000000000000000012.seg"
        );
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u32::MAX, u64::MAX)),
            Some((u32::MAX, u64::MAX))
        );
        assert!(segment_file_name(1, 9) < segment_file_name(1, 10));
        for bad in [
            "wal-0000000007-0000000000000000012.seg",
            "wal-0000000007-00000000000000000012.seg.tmp",
            "wal-000000000a-00000000000000000012.seg",
            "wal-0000000007_00000000000000000012.seg",
            "wal-9999999999-00000000000000000012.seg",
            "",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
    }

    // Goal: the header round-trips and every single-bit flip is detected, never a panic.
    // Method: encode, decode, flip each bit of the first 64 bytes and some of the tail.
    #[test]
    fn header_round_trip_and_damage() {
        let header = SegmentHeader {
            shard: 9,
            salt: 0xabcd,
            segment_index: 5,
            lsn_prev: Lsn(77),
            segment_size: SEGMENT_SIZE,
            log_start: 4,
        };
        let mut block = header.encode();
        assert_eq!(block.len(), SEGMENT_HEADER_SIZE);
        assert_eq!(SegmentHeader::decode(&block), Ok(header));
        for bit in (0..64 * 8).chain(4000 * 8..4001 * 8) {
            block[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&block).is_err(), "bit {bit}");
            block[bit / 8] ^= 1 << (bit % 8);
        }
        assert_eq!(
            SegmentHeader::decode(&[0; SEGMENT_HEADER_SIZE]),
            Err(HeaderError::Blank)
        );
        assert_eq!(
            SegmentHeader::decode(&block[..100]),
            Err(HeaderError::Truncated { available: 100 })
        );
    }
}
