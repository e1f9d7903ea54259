//! Segments at one path: their format (`segment_format`), the header a write plan opens
//! a segment with (`group_commit::header_for`) and recovery over a sequence of them
//! (`log_recovery`). Defines nothing: it hands those names on, so `wal::segment::…`
//! stays one place to import them from, above all three in the dependency order.

pub use super::group_commit::header_for;
pub use super::log_recovery::{
    recover, recover_from, recover_with_head, Corruption, HeadUse, LogConfig, LogDecision,
    LogRecovery, SegmentFile, SegmentImage, SegmentReport, SEGMENT_HEAD_SIZE,
};
pub use super::segment_format::{
    parse_segment_file_name, segment_file_name, segment_salt, HeaderError, SegmentGeometry,
    SegmentHeader, SEGMENT_HEADER_SIZE, SEGMENT_MAGIC, SEGMENT_SIZE_MIN, SEGMENT_VERSION,
};
