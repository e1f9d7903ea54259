//! The shard write-ahead log, in two rooms. The pure part decides everything and is run
//! by the simulator as by the node; the `file` room is the only part that performs I/O.
//!
//! Pure (no I/O, no clock), grouped by concern; their imports form no circle
//! (`tests/tidy.rs`):
//! - format: `record` (record bytes), `content` (what a record may say),
//!   `segment_format` (segment header, file names, salt, geometry);
//! - planning: `group_commit` (one aligned write per batch), `index` (where each group's
//!   records lie), `compaction` (what truncation keeps);
//! - recovery: `recovery` (one image, the record table), `log_recovery` (a sequence of
//!   segments, the segment table), `replay` (records to per-group state).
//!
//! `segment` hands the names of `segment_format` and `log_recovery` on at one path.
//! I/O: `file` (`file::store` executes write plans on segment files, `file::dma_disk` is
//! the O_DIRECT seam, `file::recover_dir` reads a directory for `log_recovery`); the
//! simulator's `sim::disk` stands in for it. The byte layout and its rationale live in
//! `schema/wal.md`.
//!
//! Invariants (checked by `const` assertions below and by `GroupCommit::invariants`):
//! - every write is `BLOCK_SIZE`-aligned in offset and length, and never touches a block
//!   that an earlier write made durable;
//! - records start on `RECORD_ALIGN` boundaries, and never where fewer than `HEADER_SIZE`
//!   bytes remain in the block (writer and reader both use [`record_start`]);
//! - LSNs of real records increase by exactly one along the log; a Pad carries the LSN
//!   of the last real record of its batch and consumes none.

pub mod compaction;
pub mod content;
pub mod file;
pub mod group_commit;
pub mod index;
pub mod log_recovery;
pub mod record;
pub mod recovery;
pub mod replay;
pub mod segment;
pub mod segment_format;

pub use content::{check_bounds, ContentCheck, Violation};
// The files at their old paths (`wal::store::…`, `wal::dma_disk::…`).
pub use file::{dma_disk, store};
pub use group_commit::{
    AppendError, GroupCommit, GroupCommitConfig, InFlight, Placed, Resume, SegmentPlacement,
    WritePlan,
};
pub use record::{
    decode, decode_shared, encode, encode_pad, encoded_size, peek, restamp, Content, DecodeLimits,
    DecodedRecord, Kind, Peeked, RecordError, Stamp,
};
pub use recovery::{scan, RecoveredRecord, Recovery, Scan, ScanConfig};
pub use replay::{replay, RecoveredGroup};

/// Unit of every write: offset and length of a `WritePlan` are multiples of this
/// (O_DIRECT on 4 KiB logical-block devices).
pub const BLOCK_SIZE: usize = 4096;

/// Unit of atomicity the simulator assumes for a device write (a sector is either all
/// old or all new after a crash).
pub const SECTOR_SIZE: usize = 512;

/// Every record starts at a multiple of this and its size is a multiple of it.
pub const RECORD_ALIGN: usize = 8;

/// Bytes of the fixed record header (see `schema/wal.md`).
pub const HEADER_SIZE: usize = 48;

const _: () = assert!(BLOCK_SIZE % SECTOR_SIZE == 0);
const _: () = assert!(BLOCK_SIZE % RECORD_ALIGN == 0);
const _: () = assert!(HEADER_SIZE % RECORD_ALIGN == 0);
const _: () = assert!(HEADER_SIZE <= BLOCK_SIZE);
const _: () = assert!(BLOCK_SIZE.is_power_of_two() && RECORD_ALIGN.is_power_of_two());

/// `offset` rounded up to a multiple of `BLOCK_SIZE`.
#[must_use]
pub const fn block_align_up(offset: u64) -> u64 {
    let block = BLOCK_SIZE as u64;
    offset.div_ceil(block) * block
}

/// Where the record that would be placed at `offset` actually starts: `offset` itself,
/// or the next block boundary when fewer than `HEADER_SIZE` bytes remain in the block
/// (those bytes are zero and are skipped). The writer and the reader both call this, so
/// a header never straddles a block boundary.
#[must_use]
pub const fn record_start(offset: u64) -> u64 {
    let block = BLOCK_SIZE as u64;
    let remaining = block - offset % block;
    if remaining < HEADER_SIZE as u64 {
        offset + remaining
    } else {
        offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the placement rule is the one `schema/wal.md` describes.
    // Method: probe offsets at, just before and just after the skip threshold.
    #[test]
    fn record_start_skips_short_block_tails() {
        let block = BLOCK_SIZE as u64;
        assert_eq!(record_start(0), 0);
        assert_eq!(
            record_start(block - HEADER_SIZE as u64),
            block - HEADER_SIZE as u64
        );
        assert_eq!(record_start(block - HEADER_SIZE as u64 + 8), block);
        assert_eq!(record_start(block - 8), block);
        assert_eq!(record_start(block), block);
        assert_eq!(block_align_up(0), 0);
        assert_eq!(block_align_up(1), block);
        assert_eq!(block_align_up(block), block);
    }
}
