//! Where a shard's log lives (`StoreConfig`) and how a file operation fails
//! (`StoreError`): what the directory scan and the store both need.
//!
//! Invariant: every I/O error names its operation and path, and is fatal to the shard
//! (never retried).

use crate::paxos::Instance;
use crate::wal::log_recovery::LogConfig;
use crate::wal::record::{self, DecodeLimits};
use crate::wal::segment_format::{segment_file_name, SegmentGeometry};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where and how a shard's log lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Directory of the segment files.
    pub dir: PathBuf,
    /// The shard.
    pub shard: u32,
    /// Segment sizes.
    pub geometry: SegmentGeometry,
    /// Decoder limits for recovery.
    pub limits: DecodeLimits,
    /// Zero-filled segments kept ready after the one being written, by `prepare_spares`
    /// (and `prepare`); a roll that finds none creates one inline.
    pub spare_count_min: usize,
}

impl StoreConfig {
    /// The recovery configuration of this log.
    #[must_use]
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            shard: self.shard,
            geometry: self.geometry,
            limits: self.limits,
        }
    }

    /// The path of segment `index`.
    pub(super) fn path(&self, index: u64) -> PathBuf {
        self.dir.join(segment_file_name(self.shard, index))
    }
}

/// A failed store operation: fatal to the shard (never retried).
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O call failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file or directory.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// A catch-up read found bytes that are not the indexed record (damage after it was
    /// written, or an index bug): nothing is streamed from them.
    CatchUpMismatch {
        /// The segment.
        segment: u64,
        /// File offset of the record.
        file_offset: u64,
        /// The instance the index names there.
        instance: Instance,
    },
    /// A record to copy forward (compaction) does not decode.
    CompactionRead {
        /// The segment.
        segment: u64,
        /// File offset of the record.
        file_offset: u64,
        /// Why.
        why: record::RecordError,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { op, path, error } => {
                write!(f, "WAL {op} {}: {error}", path.display())
            }
            StoreError::CatchUpMismatch {
                segment,
                file_offset,
                instance,
            } => write!(
                f,
                "WAL read: segment {segment} offset {file_offset} does not hold the \
                 indexed record of instance {}",
                instance.0
            ),
            StoreError::CompactionRead {
                segment,
                file_offset,
                why,
            } => write!(
                f,
                "WAL compaction read: segment {segment} offset {file_offset}: {why}"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

/// Maps an `io::Error` of `op` on `path` to a `StoreError`.
pub(super) fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |error| StoreError::Io {
        op,
        path: path.to_path_buf(),
        error,
    }
}

/// fdatasync of the directory `dir` (names created, renamed or removed in it).
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    crate::support::sync_dir(dir).map_err(io_error("sync directory", dir))
}
