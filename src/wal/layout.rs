//! Where bytes lie in the log: the unit of every write (block), the unit of atomicity a
//! crash respects (sector), record alignment and the rule for where a record starts.
//! The lowest wal module: every other one may use it, it uses none.
//!
//! Invariants: the `const` assertions below relate the units (a block is whole sectors
//! and whole record-alignment units; a record header fits a block).

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
