//! Why a segmented log stops being trustworthy before its end: one variant per corrupt
//! row of the segment table, each naming the segment and the file offset where the log
//! stops (for the operator and `synod wal verify`).

use crate::paxos::Lsn;
use crate::wal::content::Violation;
use std::fmt;

/// Why the log stops being trustworthy before its end (mid-log corruption).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// Records of a durable batch inside segment `index` are missing (row 5 of the
    /// record table, or a torn tail in a segment that a later one follows).
    Records {
        /// The segment.
        index: u64,
        /// The missing LSN.
        lsn_expected: Lsn,
        /// The LSN found instead (0 if none).
        lsn_found: Lsn,
        /// File offset in the segment where the log stops continuing.
        file_offset: u64,
    },
    /// A segment between the first and the last used one is absent or blank.
    MissingSegment {
        /// Its index.
        index: u64,
    },
    /// A segment's header does not decode, or does not match its name and the log.
    BadHeader {
        /// The segment.
        index: u64,
        /// Why.
        why: String,
    },
    /// A used segment file is shorter than `segment_size` (files are created full-size
    /// and renamed into place, so only outside damage shortens one). The records in what
    /// remains are kept.
    Truncated {
        /// The segment.
        index: u64,
        /// Its length in bytes.
        file_size: u64,
    },
    /// A record of segment `index` verifies but breaks `content::check_bounds` (row 6
    /// of the record table): the log ends before it.
    Invalid {
        /// The segment.
        index: u64,
        /// The record's LSN.
        lsn: Lsn,
        /// File offset of the record in the segment.
        file_offset: u64,
        /// The bound it breaks.
        violation: Violation,
    },
    /// A record of segment `index` does not verify while the next one, in the same
    /// sector, does (row 7 of the record table): it was damaged after it was written.
    Damaged {
        /// The segment.
        index: u64,
        /// The damaged record's LSN.
        lsn: Lsn,
        /// File offset of the damaged record.
        file_offset: u64,
        /// File offset of the record after it, which verifies.
        next_file_offset: u64,
    },
    /// A segment's `lsn_prev` is not the last LSN before it.
    ChainBroken {
        /// The segment.
        index: u64,
        /// The last LSN recovered before it.
        lsn_expected: Lsn,
        /// Its header's `lsn_prev`.
        lsn_prev: Lsn,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::Records {
                index,
                lsn_expected,
                lsn_found,
                file_offset,
            } => write!(
                f,
                "segment {index} offset {file_offset}: LSN {} missing (found LSN {} further on)",
                lsn_expected.0, lsn_found.0
            ),
            Corruption::MissingSegment { index } => {
                write!(
                    f,
                    "segment {index} is missing or blank between used segments"
                )
            }
            Corruption::BadHeader { index, why } => {
                write!(f, "segment {index} offset 0: bad header: {why}")
            }
            Corruption::Truncated { index, file_size } => write!(
                f,
                "segment {index} offset {file_size}: file truncated to {file_size} bytes"
            ),
            Corruption::Invalid {
                index,
                lsn,
                file_offset,
                violation,
            } => write!(
                f,
                "segment {index} offset {file_offset}: LSN {} verifies but is invalid: {violation} (rule {})",
                lsn.0,
                violation.rule()
            ),
            Corruption::Damaged {
                index,
                lsn,
                file_offset,
                next_file_offset,
            } => write!(
                f,
                "segment {index} offset {file_offset}: LSN {} damaged after it was written (the \
                 record after it, at offset {next_file_offset} in the same sector, verifies)",
                lsn.0
            ),
            Corruption::ChainBroken {
                index,
                lsn_expected,
                lsn_prev,
            } => write!(
                f,
                "segment {index} offset 0: header lsn_prev {} but the log before ends at LSN {}",
                lsn_prev.0, lsn_expected.0
            ),
        }
    }
}
