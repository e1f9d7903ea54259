//! The log head hint, pure: a durable lower bound of where the records recovery needs
//! begin, so that a restart reads the live suffix of the log instead of the whole first
//! segment (segments are freed only whole). `compaction::plan` finds the lowest needed
//! record (`TruncationPlan::head`); the store writes its place into one block of the file
//! `wal-<shard>.head` (`file::store::Store::truncate`); recovery starts its scan there
//! when the hint holds (`log_recovery`, row S11) and scans in full otherwise.
//!
//! Invariants (the safety argument; `schema/wal.md`, Log head hint):
//! - needed records only move forward: watermarks never decrease, a group's latest
//!   Promise, Chosen and Installed records are only ever replaced by newer ones, and
//!   compaction copies records forward. So a hint that named the lowest needed record
//!   when every indexed record was durable stays a lower bound of what is needed;
//! - the hint is written only when every indexed record is durable (the store checks
//!   that its last write was synced), so its record survives any later crash;
//! - recovery trusts a hint only when it decodes (magic, version, CRC32C, zero tail),
//!   names this shard and a used segment at or above `log_start` whose header carries
//!   the same salt (a recycled segment gets a fresh salt), and the record at its offset
//!   verifies with its LSN. Anything else falls back to the full scan, which is always
//!   safe. A recovery that keeps a corrupt prefix removes the hint before appending.

use super::layout::{BLOCK_SIZE, RECORD_ALIGN};
use super::segment_format::SEGMENT_HEADER_SIZE;
use crate::paxos::Lsn;

/// Size of the hint file: one block, written in place with one O_DIRECT write.
pub const LOG_HEAD_SIZE: usize = BLOCK_SIZE;

/// "SYNH" little-endian: the first bytes of a hint file.
const MAGIC: u32 = u32::from_le_bytes(*b"SYNH");
/// The layout below.
const VERSION: u32 = 1;
/// Bytes covered by the checksum (every field before it).
const CHECKED_SIZE: usize = 40;
/// Bytes of fields, checksum included; the rest of the block is zero.
const FIELDS_SIZE: usize = CHECKED_SIZE + 4;

// All fields lie in the first sector, which a torn write cannot split.
const _: () = assert!(FIELDS_SIZE <= super::layout::SECTOR_SIZE);

/// Where the records a recovery needs begin: the lowest needed record of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogHead {
    /// The shard whose log this is.
    pub shard: u32,
    /// Salt of the segment (its header's): a recycled segment never matches.
    pub salt: u32,
    /// Segment holding the record.
    pub segment: u64,
    /// File offset of the record in that segment (at or after the header, 8-aligned).
    pub file_offset: u64,
    /// LSN of the record there.
    pub lsn: Lsn,
}

/// Why a hint file's bytes are not a hint.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeadError {
    /// Not `LOG_HEAD_SIZE` bytes.
    Size {
        /// Bytes found.
        size: usize,
    },
    /// Wrong magic.
    Magic,
    /// A version this build does not read.
    Version {
        /// The version found.
        version: u32,
    },
    /// The checksum does not match (a torn or damaged write).
    Checksum,
    /// A nonzero byte after the fields, an LSN of 0, or an offset inside the segment
    /// header or not 8-aligned.
    Field {
        /// Which.
        why: &'static str,
    },
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::Size { size } => write!(f, "{size} bytes, not {LOG_HEAD_SIZE}"),
            HeadError::Magic => write!(f, "bad magic"),
            HeadError::Version { version } => write!(f, "version {version}, reads {VERSION}"),
            HeadError::Checksum => write!(f, "checksum mismatch"),
            HeadError::Field { why } => write!(f, "{why}"),
        }
    }
}

/// The hint file of `shard` (in the log directory, next to its segments).
#[must_use]
pub fn log_head_file_name(shard: u32) -> String {
    format!("wal-{shard}.head")
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut field = [0u8; 4];
    field.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(field)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut field = [0u8; 8];
    field.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(field)
}

impl LogHead {
    /// The block to write: magic u32, version u32, shard u32, salt u32, segment u64,
    /// file_offset u64, lsn u64, crc32c u32 of the 40 bytes before it, zeros.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.lsn.0 >= 1, "a hint names a record");
        assert!(self.file_offset >= SEGMENT_HEADER_SIZE as u64);
        assert!(self.file_offset % RECORD_ALIGN as u64 == 0);
        let mut block = vec![0u8; LOG_HEAD_SIZE];
        block[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        block[4..8].copy_from_slice(&VERSION.to_le_bytes());
        block[8..12].copy_from_slice(&self.shard.to_le_bytes());
        block[12..16].copy_from_slice(&self.salt.to_le_bytes());
        block[16..24].copy_from_slice(&self.segment.to_le_bytes());
        block[24..32].copy_from_slice(&self.file_offset.to_le_bytes());
        block[32..40].copy_from_slice(&self.lsn.0.to_le_bytes());
        let checksum = crc32c::crc32c(&block[..CHECKED_SIZE]);
        block[CHECKED_SIZE..FIELDS_SIZE].copy_from_slice(&checksum.to_le_bytes());
        block
    }

    /// Decodes a hint file; verifies everything `encode` guarantees.
    ///
    /// # Errors
    ///
    /// `HeadError` says which check failed.
    pub fn decode(bytes: &[u8]) -> Result<LogHead, HeadError> {
        if bytes.len() != LOG_HEAD_SIZE {
            return Err(HeadError::Size { size: bytes.len() });
        }
        if u32_at(bytes, 0) != MAGIC {
            return Err(HeadError::Magic);
        }
        let version = u32_at(bytes, 4);
        if version != VERSION {
            return Err(HeadError::Version { version });
        }
        if u32_at(bytes, CHECKED_SIZE) != crc32c::crc32c(&bytes[..CHECKED_SIZE]) {
            return Err(HeadError::Checksum);
        }
        if bytes[FIELDS_SIZE..].iter().any(|b| *b != 0) {
            return Err(HeadError::Field {
                why: "nonzero bytes after the fields",
            });
        }
        let head = LogHead {
            shard: u32_at(bytes, 8),
            salt: u32_at(bytes, 12),
            segment: u64_at(bytes, 16),
            file_offset: u64_at(bytes, 24),
            lsn: Lsn(u64_at(bytes, 32)),
        };
        if head.lsn.0 == 0 {
            return Err(HeadError::Field { why: "LSN 0" });
        }
        if head.file_offset < SEGMENT_HEADER_SIZE as u64
            || head.file_offset % RECORD_ALIGN as u64 != 0
        {
            return Err(HeadError::Field {
                why: "offset inside the segment header or not 8-aligned",
            });
        }
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> LogHead {
        LogHead {
            shard: 3,
            salt: 0xdead_beef,
            segment: 7,
            file_offset: SEGMENT_HEADER_SIZE as u64 + 4096 + 96,
            lsn: Lsn(12_345),
        }
    }

    #[test]
    fn round_trip() {
        // Goal: a hint decodes to what was encoded.
        // Method: encode, decode, compare.
        assert_eq!(LogHead::decode(&head().encode()), Ok(head()));
    }

    #[test]
    fn every_flipped_bit_of_the_fields_is_refused() {
        // Goal: a damaged or torn hint is never taken for a hint (the recovery then
        // scans in full).
        // Method: flip each bit of the fields and of a sample of the tail; decode.
        let good = head().encode();
        for bit in (0..FIELDS_SIZE * 8).chain([FIELDS_SIZE * 8 + 3, LOG_HEAD_SIZE * 8 - 1]) {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(LogHead::decode(&bad).is_err(), "bit {bit}");
        }
        assert_eq!(
            LogHead::decode(&good[..100]),
            Err(HeadError::Size { size: 100 })
        );
        assert_eq!(
            LogHead::decode(&vec![0u8; LOG_HEAD_SIZE]),
            Err(HeadError::Magic)
        );
    }
}
