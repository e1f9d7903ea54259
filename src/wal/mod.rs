//! The shard write-ahead log, in two rooms. The pure part decides everything and is run
//! by the simulator as by the node; the `file` room is the only part that performs I/O.
//!
//! Pure (no I/O, no clock), grouped by concern; their imports form no circle
//! (`tests/tidy.rs`):
//! - format: `record` (record bytes), `content` (what a record may say),
//!   `segment_format` (segment header, file names, salt, geometry), `checkpoint`
//!   (checkpoint files: a group's protocol state and state machine image);
//! - planning: `group_commit` (one aligned write per batch), `index` (where each group's
//!   records lie), `catch_up` (what a catch-up read below a group's in-memory log
//!   reads, and the entries it finds), `compaction` (what truncation keeps);
//! - recovery: `recovery` (one image, the record table), `log_recovery` (a sequence of
//!   segments, the segment table), `replay` (records to per-group state).
//!
//! `segment` hands the names of `segment_format` and `log_recovery` on at one path.
//! I/O: `file` (`file::store` executes write plans on segment files, `file::dma_disk` is
//! the O_DIRECT seam, `file::recover_dir` reads a directory for `log_recovery`); the
//! simulator's `sim::disk` stands in for it. The byte layout and its rationale live in
//! `schema/wal.md`.
//!
//! `layout` (blocks, sectors, record placement) is the ground every module stands on;
//! this file only declares the modules and hands their names on.
//!
//! Invariants (checked by `const` assertions in `layout` and by `GroupCommit::invariants`):
//! - every write is `BLOCK_SIZE`-aligned in offset and length, and never touches a block
//!   that an earlier write made durable;
//! - records start on `RECORD_ALIGN` boundaries, and never where fewer than `HEADER_SIZE`
//!   bytes remain in the block (writer and reader both use [`record_start`]);
//! - LSNs of real records increase by exactly one along the log; a Pad carries the LSN
//!   of the last real record of its batch and consumes none.

pub mod catch_up;
pub mod checkpoint;
pub mod compaction;
pub mod content;
pub mod file;
pub mod group_commit;
pub mod index;
pub mod layout;
pub mod log_head;
pub mod log_recovery;
pub mod record;
pub mod recovery;
pub mod replay;
pub mod segment;
pub mod segment_format;

pub use content::{check_bounds, ContentCheck, Violation};
pub use layout::{
    block_align_up, record_start, BLOCK_SIZE, HEADER_SIZE, RECORD_ALIGN, SECTOR_SIZE,
};
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
pub use replay::{replay, replay_owned, RecoveredGroup};
