//! Segments: the shard's log as a sequence of fixed-size files, and recovery over them.
//! Pure: the executor (`store`, on `dma_disk`) lists, reads and writes the files; this
//! module names them, encodes their headers, maps log offsets to (segment, file offset)
//! and decides what a directory of segment images means (`recover`, decision table
//! below and in `schema/wal.md`).
//!
//! Log offsets are the concatenated payloads of the segments: segment `i` holds log
//! offsets `[i * payload_size, (i + 1) * payload_size)` at file offsets
//! `[SEGMENT_HEADER_SIZE, segment_size)`. `GroupCommit::segmented` never lets a batch
//! straddle two segments, so every write lands in one file and every segment scans on
//! its own, chained by its header's `lsn_prev` (`ScanConfig::lsn_prev`).
//!
//! Invariants:
//! - a segment's header is written and made durable BEFORE any record is written to it,
//!   and its first batch starts at payload offset 0 (so a segment whose header is torn
//!   and whose first payload block is zero never held a record);
//! - segment `i + 1` is initialised only after every batch of segment `i` is durable
//!   (one write in flight), so its `lsn_prev` is the last LSN of segment `i`;
//! - a segment (re)initialised gets a fresh salt (`segment_salt` of a seed drawn at every
//!   open), so records of an earlier use of the file or the index never verify.

use super::content::Violation;
use super::group_commit::{GroupCommit, GroupCommitConfig, Resume, SegmentPlacement};
use super::record::DecodeLimits;
use super::recovery::{scan, RecoveredRecord, Recovery, ScanConfig};
use super::BLOCK_SIZE;
use crate::paxos::Lsn;
use crate::support::{le_u32, le_u64};
use std::fmt;
use std::ops::Range;

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

/// The header to write, and make durable, BEFORE `plan` when `plan` starts a segment's
/// payload (`None` otherwise). `lsn_prev` is the last LSN written before `plan` (the
/// previous plan's `lsn_through`, or the recovered one); `log_start` the log's first
/// segment (clamped to the new segment's index). Asserts that the plan does not
/// straddle a segment.
#[must_use]
pub fn header_for(
    plan: &super::WritePlan,
    geometry: &SegmentGeometry,
    shard: u32,
    lsn_prev: Lsn,
    log_start: u64,
) -> Option<SegmentHeader> {
    let (index, file_offset) = geometry.locate(plan.offset);
    assert!(
        file_offset + plan.bytes.len() as u64 <= geometry.segment_size,
        "write at log offset {} of {} bytes straddles segment {index}",
        plan.offset,
        plan.bytes.len()
    );
    (file_offset == SEGMENT_HEADER_SIZE as u64).then_some(SegmentHeader {
        shard,
        salt: plan.salt,
        segment_index: index,
        lsn_prev,
        segment_size: geometry.segment_size,
        log_start: log_start.min(index),
    })
}

/// One file of the log directory, as read: its name and its bytes (the whole file).
#[derive(Clone, Copy, Debug)]
pub struct SegmentImage<'a> {
    /// File name (no directory).
    pub name: &'a str,
    /// Contents.
    pub bytes: &'a [u8],
}

/// How to recover a segmented log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// The shard whose files to read (others are ignored).
    pub shard: u32,
    /// Sizes.
    pub geometry: SegmentGeometry,
    /// Decoder limits; must admit the writer's largest record.
    pub limits: DecodeLimits,
}

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

/// What the end of a segmented log means (`recover`'s decision table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogDecision {
    /// Rows S1, S8 with a clean record scan: nothing lost.
    Clean,
    /// Rows S5 (torn segment initialisation) and S8 with a torn tail: the last write was
    /// torn; nothing acknowledged was lost.
    TornTail {
        /// Segment where the log ends.
        index: u64,
        /// File offset in it of the first byte not part of the log.
        file_offset: u64,
    },
    /// Rows S3, S4, S6, S7, S7i, S7d and S8 with corrupt records: durable records were lost
    /// or are invalid; the prefix is kept and the replica must rebuild as a non-voting
    /// learner.
    Corrupt(Corruption),
}

/// State of one segment file after recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentReport {
    /// Its index.
    pub index: u64,
    /// Its file name.
    pub name: String,
    /// Its header, if valid.
    pub header: Option<SegmentHeader>,
    /// Why the header is not valid (`Blank` for a preallocated spare).
    pub header_error: Option<HeaderError>,
    /// Recovered records in it.
    pub records: usize,
    /// Its file is shorter than `segment_size` (it must be re-extended before reuse).
    pub short: bool,
}

/// The result of `recover`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecovery {
    /// Recovered protocol records in LSN order; `offset` is the LOG offset.
    pub records: Vec<RecoveredRecord>,
    /// What the end means.
    pub decision: LogDecision,
    /// LSN of the last recovered record.
    pub lsn_through: Lsn,
    /// Where appends resume (log offsets; `GroupCommit::segmented`).
    pub resume: Resume,
    /// Salt of the segment holding `resume.offset` when it is inside a segment's payload
    /// (the `GroupCommitConfig::salt` to resume with); unused at a segment start.
    pub resume_salt: u32,
    /// Log range to zero and make durable BEFORE the first append (see `recovery`).
    pub scrub: Range<u64>,
    /// Damaged ranges skipped because nothing was lost there (log offsets).
    pub gaps: Vec<Range<u64>>,
    /// Segment files to delete BEFORE the first append (after learner status is durable
    /// when the decision is `Corrupt`): every non-blank file after the resume segment.
    pub discard: Vec<String>,
    /// Files in the directory that are not segments of this shard (left alone).
    pub ignored: Vec<String>,
    /// The log's first segment: the highest `log_start` of any valid header (row S10).
    /// New headers must name at least this.
    pub log_start: u64,
    /// Segment files below `log_start` (truncated; not read): to recycle or delete.
    pub truncated: Vec<String>,
    /// Every segment file of this shard, in index order.
    pub segments: Vec<SegmentReport>,
}

/// Per-segment scan outcome, kept to resume after the last good segment.
struct Scanned {
    index: u64,
    salt: u32,
    lsn_through: Lsn,
    resume_file_offset: u64,
    scrub: Range<u64>,
}

/// Recovers a segmented log from the images of the files of its directory.
///
/// # Decision table (segments; within a segment the record table of `recovery` applies)
///
/// Segments are taken in index order. *Used* segments are those at or above `log_start`
/// whose header block is not all zero; a blank header after the last used segment is a
/// preallocated spare. `log_start` is the highest `log_start` field of any valid header
/// that matches its name, shard and geometry (0 if none).
///
/// | # | situation | decision | resume |
/// |---|-----------|----------|--------|
/// | S0 | a file name that is not `wal-<this shard>-<index>.seg` | ignored (reported) | — |
/// | S1 | no used segment | `Clean`, empty log | log offset 0, LSN 0 |
/// | S2 | blank segments after the last used one | spares, kept for later initialisation | — |
/// | S3 | an index between `log_start` and the last used segment is absent or blank | `Corrupt(MissingSegment)` | after the segment before it (at `log_start`, LSN 0, when it is `log_start` itself) |
/// | S4 | a header that does not decode or does not match its name, shard or geometry, and is not S5 | `Corrupt(BadHeader)` | after the segment before it (log start if none) |
/// | S5 | the last used segment's header does not decode, its first payload block is zero, and a segment precedes it or it is segment 0 | `TornTail` (a torn initialisation: no record was written) | after the segment before it |
/// | S6 | `lsn_prev` differs from the last LSN of the segment before | `Corrupt(ChainBroken)` | after the segment before it |
/// | S7 | a segment before the last used one scans `Corrupt` | `Corrupt(Records)` | at its break |
/// | S7i | any used segment scans `Invalid` (record row 6) | `Corrupt(Invalid)` | before the invalid record |
/// | S7d | any used segment scans `Damaged` (record row 7) | `Corrupt(Damaged)` | before the damaged record |
/// | S7' | a segment before the last used one scans `Clean` or `TornTail` | continue; S6 on the next header detects any lost LSN (a torn remnant left by an earlier recovery is not a loss) | — |
/// | S8 | a used segment file shorter than `segment_size` | `Corrupt(Truncated)`, its remaining records kept | its scan's resume |
/// | S9 | the last used segment | its record-table decision | its resume, scrub |
/// | S10 | a segment file below `log_start` (any header, or blank) | truncated: not read, listed in `truncated` (to recycle or delete) | — |
///
/// The segment `log_start` anchors the chain with its own `lsn_prev` (segments before it
/// were truncated; a header is written with `log_start = L` BEFORE any segment below `L`
/// is deleted, so a missing `log_start` segment is loss, never truncation). After a corruption, later segments are discarded: the
/// replica keeps the prefix and rebuilds as a learner. Never panics on any input.
#[must_use]
pub fn recover(files: &[SegmentImage<'_>], config: &LogConfig) -> LogRecovery {
    let heads: Vec<SegmentFile<'_>> = files
        .iter()
        .map(|f| SegmentFile {
            name: f.name,
            size: f.bytes.len() as u64,
            head: &f.bytes[..f.bytes.len().min(SEGMENT_HEAD_SIZE)],
        })
        .collect();
    let read = |name: &str| -> Result<Vec<u8>, std::convert::Infallible> {
        Ok(files
            .iter()
            .find(|f| f.name == name)
            .map_or_else(Vec::new, |f| f.bytes.to_vec()))
    };
    match recover_from(&heads, config, read) {
        Ok(recovered) => recovered,
        Err(never) => match never {},
    }
}

/// Bytes of a segment file `recover_from` needs up front: the header and the first
/// payload block (S5).
pub const SEGMENT_HEAD_SIZE: usize = 2 * SEGMENT_HEADER_SIZE;

/// One file of the log directory, described without reading all of it.
#[derive(Clone, Copy, Debug)]
pub struct SegmentFile<'a> {
    /// File name (no directory).
    pub name: &'a str,
    /// Its length in bytes.
    pub size: u64,
    /// Its first `SEGMENT_HEAD_SIZE` bytes (fewer if the file is shorter).
    pub head: &'a [u8],
}

/// `recover` with bounded memory: `read(name)` is called for the used segments only,
/// one at a time in log order, and each image is dropped after its scan. An error from
/// `read` is returned as is.
pub fn recover_from<E>(
    files: &[SegmentFile<'_>],
    config: &LogConfig,
    mut read: impl FnMut(&str) -> Result<Vec<u8>, E>,
) -> Result<LogRecovery, E> {
    let geometry = config.geometry;
    let payload = geometry.payload_size();
    let mut ignored = Vec::new();
    let mut segments: Vec<(u64, SegmentFile<'_>)> = Vec::new();
    for file in files {
        match parse_segment_file_name(file.name) {
            Some((shard, index)) if shard == config.shard => segments.push((index, *file)),
            _ => ignored.push(file.name.to_string()),
        }
    }
    segments.sort_by_key(|(index, _)| *index);
    ignored.sort();

    let mut reports: Vec<SegmentReport> = segments
        .iter()
        .map(|(index, file)| {
            let header = SegmentHeader::decode(file.head);
            SegmentReport {
                index: *index,
                name: file.name.to_string(),
                header: header.as_ref().ok().copied(),
                header_error: header.err(),
                records: 0,
                short: file.size < geometry.segment_size,
            }
        })
        .collect();
    // S10: the highest `log_start` any valid header of this log names. A segment is
    // deleted only after a header naming a higher `log_start` is durable, so files below
    // it are leftovers of a truncation (not read), and the segment `log_start` itself
    // must be present.
    let log_start = reports
        .iter()
        .filter_map(|r| {
            r.header.filter(|h| {
                h.shard == config.shard
                    && h.segment_index == r.index
                    && h.segment_size == geometry.segment_size
                    && h.log_start <= h.segment_index
            })
        })
        .map(|h| h.log_start)
        .max()
        .unwrap_or(0);
    let truncated: Vec<String> = reports
        .iter()
        .filter(|r| r.index < log_start)
        .map(|r| r.name.clone())
        .collect();
    let used: Vec<usize> = (0..reports.len())
        .filter(|i| {
            reports[*i].index >= log_start && reports[*i].header_error != Some(HeaderError::Blank)
        })
        .collect();

    let mut records = Vec::new();
    let mut gaps = Vec::new();
    let mut previous: Option<Scanned> = None;
    let mut decision = LogDecision::Clean;

    let start_missing = used
        .first()
        .is_some_and(|first| reports[*first].index != log_start);
    if start_missing {
        // S3 at the log's start: the first segment of the log is absent or blank.
        decision = LogDecision::Corrupt(Corruption::MissingSegment { index: log_start });
    } else if let (Some(first), Some(last)) = (used.first().copied(), used.last().copied()) {
        let first_index = reports[first].index;
        let last_index = reports[last].index;
        // Reports are sorted with unique indices and the walk stops at the first gap, so
        // segment `index` is at `position` or absent.
        for (position, index) in (first..).zip(first_index..=last_index) {
            let found =
                (position < reports.len() && reports[position].index == index).then_some(position);
            let Some(at) = found else {
                decision = LogDecision::Corrupt(Corruption::MissingSegment { index });
                break;
            };
            let file = segments[at].1;
            let header = match (&reports[at].header, &reports[at].header_error) {
                (_, Some(HeaderError::Blank)) => {
                    decision = LogDecision::Corrupt(Corruption::MissingSegment { index });
                    break;
                }
                (Some(header), _) => *header,
                (None, error) => {
                    let why = error
                        .as_ref()
                        .map_or_else(|| "no header".to_string(), ToString::to_string);
                    let first_payload_zero = file
                        .head
                        .get(SEGMENT_HEADER_SIZE..2 * SEGMENT_HEADER_SIZE)
                        .is_none_or(|block| block.iter().all(|b| *b == 0));
                    let torn_init = index == last_index
                        && first_payload_zero
                        && (previous.is_some() || index == 0);
                    decision = if torn_init {
                        LogDecision::TornTail {
                            index,
                            file_offset: 0,
                        }
                    } else {
                        LogDecision::Corrupt(Corruption::BadHeader { index, why })
                    };
                    break;
                }
            };
            let mismatch = if header.shard != config.shard {
                Some(format!("header names shard {}", header.shard))
            } else if header.segment_index != index {
                Some(format!("header names index {}", header.segment_index))
            } else if header.segment_size != geometry.segment_size {
                Some(format!(
                    "header names segment_size {}, the log uses {}",
                    header.segment_size, geometry.segment_size
                ))
            } else if header.log_start > index {
                Some(format!("header names log_start {}", header.log_start))
            } else {
                None
            };
            if let Some(why) = mismatch {
                decision = LogDecision::Corrupt(Corruption::BadHeader { index, why });
                break;
            }
            if let Some(prev) = &previous {
                if header.lsn_prev != prev.lsn_through {
                    decision = LogDecision::Corrupt(Corruption::ChainBroken {
                        index,
                        lsn_expected: prev.lsn_through,
                        lsn_prev: header.lsn_prev,
                    });
                    break;
                }
            }
            let bytes = read(file.name)?;
            let end = bytes.len().min(geometry.segment_size as usize);
            let image = bytes.get(SEGMENT_HEADER_SIZE..end).unwrap_or(&[]);
            let scanned = scan(
                image,
                &ScanConfig {
                    salt: header.salt,
                    lsn_prev: header.lsn_prev,
                    limits: config.limits,
                },
            );
            let base = index * payload;
            reports[at].records = scanned.records.len();
            records.extend(scanned.records.into_iter().map(|mut r| {
                r.offset += base;
                r
            }));
            gaps.extend(scanned.gaps.iter().map(|g| g.start + base..g.end + base));
            let to_file = |o: u64| o + SEGMENT_HEADER_SIZE as u64;
            previous = Some(Scanned {
                index,
                salt: header.salt,
                lsn_through: scanned.lsn_through,
                resume_file_offset: to_file(scanned.resume.offset),
                scrub: base + scanned.scrub.start..base + scanned.scrub.end,
            });
            if reports[at].short {
                // Segment files are created full-size and renamed into place, so a short
                // one was cut by something else: what it held past its end is unknown.
                decision = LogDecision::Corrupt(Corruption::Truncated {
                    index,
                    file_size: bytes.len() as u64,
                });
                break;
            }
            match scanned.recovery {
                Recovery::Corrupt {
                    at: break_at,
                    lsn_expected,
                    lsn_found,
                    ..
                } => {
                    decision = LogDecision::Corrupt(Corruption::Records {
                        index,
                        lsn_expected,
                        lsn_found,
                        file_offset: to_file(break_at),
                    });
                    break;
                }
                Recovery::Damaged {
                    at: damaged_at,
                    lsn,
                    next_at,
                } => {
                    decision = LogDecision::Corrupt(Corruption::Damaged {
                        index,
                        lsn,
                        file_offset: to_file(damaged_at),
                        next_file_offset: to_file(next_at),
                    });
                    break;
                }
                Recovery::Invalid {
                    at: invalid_at,
                    lsn,
                    violation,
                } => {
                    decision = LogDecision::Corrupt(Corruption::Invalid {
                        index,
                        lsn,
                        file_offset: to_file(invalid_at),
                        violation,
                    });
                    break;
                }
                Recovery::TornTail { truncate_at } if index == last_index => {
                    decision = LogDecision::TornTail {
                        index,
                        file_offset: to_file(truncate_at),
                    };
                }
                Recovery::Clean { .. } | Recovery::TornTail { .. } => {}
            }
        }
    }

    let (resume, resume_salt, scrub) = match &previous {
        Some(prev) => {
            let offset = geometry.log_offset(prev.index, prev.resume_file_offset);
            (
                Resume {
                    offset,
                    lsn_through: prev.lsn_through,
                },
                prev.salt,
                prev.scrub.clone(),
            )
        }
        None => {
            // Nothing scanned: an empty log, or the log's first segment is missing or
            // unreadable (appends restart at the log's start, later files discarded).
            let index = if start_missing {
                log_start
            } else {
                used.first().map_or(log_start, |i| reports[*i].index)
            };
            let offset = index * payload;
            (
                Resume {
                    offset,
                    lsn_through: Lsn(0),
                },
                0,
                offset..offset,
            )
        }
    };
    let resume_index = geometry.locate(resume.offset).0;
    let discard = reports
        .iter()
        .filter(|r| r.index > resume_index && r.header_error != Some(HeaderError::Blank))
        .map(|r| r.name.clone())
        .collect();
    let recovered = LogRecovery {
        lsn_through: resume.lsn_through,
        records,
        decision,
        resume,
        resume_salt,
        scrub,
        gaps,
        discard,
        ignored,
        log_start,
        truncated,
        segments: reports,
    };
    recovered.check(&geometry);
    Ok(recovered)
}

impl LogRecovery {
    /// The group commit that appends after this recovery: it resumes at `resume` with
    /// the salt of the resume segment, batches of at most `buffer_size_max` bytes, and
    /// draws the salts of new segments from `salt_seed`.
    #[must_use]
    pub fn group_commit(
        &self,
        geometry: SegmentGeometry,
        buffer_size_max: usize,
        salt_seed: u64,
    ) -> GroupCommit {
        GroupCommit::segmented(
            GroupCommitConfig {
                buffer_size_max,
                salt: self.resume_salt,
            },
            self.resume,
            SegmentPlacement {
                payload_size: geometry.payload_size(),
                salt_seed,
            },
        )
    }

    /// Postconditions of `recover`.
    fn check(&self, geometry: &SegmentGeometry) {
        let block = BLOCK_SIZE as u64;
        assert!(self.resume.offset % block == 0, "resume not block-aligned");
        assert!(self.scrub.start == self.scrub.end || self.scrub.start == self.resume.offset);
        assert!(
            self.scrub.end <= (geometry.locate(self.resume.offset).0 + 1) * geometry.payload_size(),
            "scrub crosses a segment"
        );
        for pair in self.records.windows(2) {
            assert_eq!(pair[0].lsn.0 + 1, pair[1].lsn.0, "LSNs not contiguous");
            assert!(pair[0].offset < pair[1].offset);
        }
        if let Some(last) = self.records.last() {
            assert_eq!(last.lsn, self.lsn_through);
            assert!(last.offset < self.resume.offset);
        }
    }

    /// Segment and file offset where the log first stops being trustworthy, if it does
    /// (`Corrupt`), for tools.
    #[must_use]
    pub fn corruption(&self) -> Option<&Corruption> {
        match &self.decision {
            LogDecision::Corrupt(c) => Some(c),
            _ => None,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Ballot, GroupId, NodeId, Record};
    use crate::prng::Prng;
    use crate::wal::{GroupCommit, GroupCommitConfig, SegmentPlacement, SECTOR_SIZE};
    use std::collections::BTreeMap;

    const SHARD: u32 = 3;
    /// Header plus three blocks of records.
    const SEGMENT_SIZE: u64 = 4 * BLOCK_SIZE as u64;

    fn geometry() -> SegmentGeometry {
        SegmentGeometry::new(SEGMENT_SIZE)
    }

    fn config() -> LogConfig {
        LogConfig {
            shard: SHARD,
            geometry: geometry(),
            limits: DecodeLimits::default(),
        }
    }

    fn promise(round: u64) -> Record {
        Record::Promise {
            group: GroupId(1),
            ballot: Ballot {
                round,
                node: NodeId(1),
            },
        }
    }

    /// A directory: file name -> bytes.
    type Dir = BTreeMap<String, Vec<u8>>;

    fn images(dir: &Dir) -> Vec<SegmentImage<'_>> {
        dir.iter()
            .map(|(name, bytes)| SegmentImage { name, bytes })
            .collect()
    }

    fn name(index: u64) -> String {
        segment_file_name(SHARD, index)
    }

    /// Executes `plan` on `dir` as the store does: header first when it starts a
    /// segment (creating the zero-filled file), then the batch.
    fn execute(dir: &mut Dir, plan: &crate::wal::WritePlan, lsn_prev: Lsn) {
        let geometry = geometry();
        let (index, file_offset) = geometry.locate(plan.offset);
        let file = dir
            .entry(name(index))
            .or_insert_with(|| vec![0; SEGMENT_SIZE as usize]);
        if let Some(header) = header_for(plan, &geometry, SHARD, lsn_prev, 0) {
            file[..SEGMENT_HEADER_SIZE].copy_from_slice(&header.encode());
        }
        let at = file_offset as usize;
        file[at..at + plan.bytes.len()].copy_from_slice(&plan.bytes);
    }

    /// A log of `batches` batches of `per_batch` promises each (4 promises: 192 bytes,
    /// one block per batch; 3 batches per segment).
    fn log(batches: usize, per_batch: usize) -> Dir {
        let mut dir = Dir::new();
        let mut commit = GroupCommit::segmented(
            GroupCommitConfig {
                buffer_size_max: BLOCK_SIZE * 2,
                salt: 0,
            },
            Resume::EMPTY,
            SegmentPlacement {
                payload_size: geometry().payload_size(),
                salt_seed: 42,
            },
        );
        let mut round = 0;
        for _ in 0..batches {
            for _ in 0..per_batch {
                round += 1;
                commit.append(&promise(round)).expect("fits");
            }
            let plan = commit.take_write().expect("a batch");
            execute(&mut dir, &plan, commit.durable_through());
            commit.on_durable(plan.lsn_through);
            commit.invariants();
        }
        dir
    }

    /// Rewrites the header of segment `index` in `dir` with `log_start`.
    fn set_log_start(dir: &mut Dir, index: u64, log_start: u64) {
        let file = dir.get_mut(&name(index)).expect("exists");
        let mut header = SegmentHeader::decode(file).expect("valid");
        header.log_start = log_start;
        file[..SEGMENT_HEADER_SIZE].copy_from_slice(&header.encode());
    }

    fn corrupt(recovered: &LogRecovery) -> Corruption {
        recovered.corruption().cloned().expect("a corruption")
    }

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

    // Goal: log offsets map to (segment, file offset) and back; batches never straddle
    // a segment and the rest of a segment a batch skipped stays zero.
    // Method: batches of 2 blocks into 3-block segments.
    #[test]
    fn batches_never_straddle() {
        let g = geometry();
        assert_eq!(g.payload_size(), 3 * 4096);
        assert_eq!(g.locate(0), (0, 4096));
        assert_eq!(g.locate(3 * 4096), (1, 4096));
        assert_eq!(g.log_offset(1, 8192), 4 * 4096);
        let mut commit = GroupCommit::segmented(
            GroupCommitConfig {
                buffer_size_max: 2 * BLOCK_SIZE,
                salt: 0,
            },
            Resume::EMPTY,
            SegmentPlacement {
                payload_size: g.payload_size(),
                salt_seed: 1,
            },
        );
        let mut dir = Dir::new();
        let mut offsets = Vec::new();
        let mut round = 0;
        // Batches of up to 100 promises (4800 bytes: two blocks) close early at a
        // segment's end; then one record of 5000 bytes cannot fit the single block left
        // in segment 2 and moves to segment 3 (the block stays zero).
        for batch in 0..6 {
            if batch == 5 {
                let big = Record::Accept {
                    group: GroupId(1),
                    instance: crate::paxos::Instance(1),
                    ballot: Ballot::ZERO,
                    entry: crate::paxos::Entry {
                        origin: Ballot::ZERO,
                        body: crate::paxos::Body::Values(vec![bytes::Bytes::from(vec![1; 5000])]),
                    },
                };
                commit.append(&big).expect("fits a segment");
            }
            for _ in 0..100 {
                round += 1;
                if commit.append(&promise(round)).is_err() {
                    round -= 1;
                    break;
                }
            }
            let plan = commit.take_write().expect("a batch");
            offsets.push((plan.offset, plan.bytes.len() / BLOCK_SIZE));
            execute(&mut dir, &plan, commit.durable_through());
            commit.on_durable(plan.lsn_through);
            commit.invariants();
        }
        assert_eq!(
            offsets,
            [
                (0, 2),
                (2 * 4096, 1),
                (3 * 4096, 2),
                (5 * 4096, 1),
                (6 * 4096, 2),
                (9 * 4096, 2)
            ]
        );
        assert_eq!(dir.len(), 4);
        let recovered = recover(&images(&dir), &config());
        assert_eq!(recovered.decision, LogDecision::Clean);
        assert_eq!(recovered.records.len() as u64, round + 1);
        assert_eq!(recovered.resume.offset, 11 * 4096);
        let salts: std::collections::BTreeSet<u32> = recovered
            .segments
            .iter()
            .map(|s| s.header.expect("valid").salt)
            .collect();
        assert_eq!(salts.len(), 4, "one salt per segment");
    }

    // Goal: every row of the segment decision table, on concrete directories.
    // Method: build a 3-segment log (7 batches of one block: segments 0, 1 full, 2 with
    // one batch), damage it per row, recover, compare decision, resume and discards.
    #[test]
    fn decision_table_rows() {
        let base = log(7, 4);
        assert_eq!(base.len(), 3);
        let all = recover(&images(&base), &config());
        assert_eq!(all.decision, LogDecision::Clean);
        assert_eq!(all.lsn_through, Lsn(28));
        assert_eq!(all.resume.offset, 7 * 4096);
        assert!(all.discard.is_empty() && all.ignored.is_empty());
        let p = geometry().payload_size();

        // S0: foreign and misnamed files are ignored.
        let mut dir = base.clone();
        dir.insert("wal-0000000003-12.seg".into(), vec![1; 10]);
        dir.insert(segment_file_name(SHARD + 1, 0), vec![1; 10]);
        dir.insert("identity".into(), vec![]);
        let r = recover(&images(&dir), &config());
        assert_eq!(
            (r.decision.clone(), r.lsn_through),
            (LogDecision::Clean, Lsn(28))
        );
        assert_eq!(r.ignored.len(), 3);

        // S1: nothing at all.
        let r = recover(&[], &config());
        assert_eq!(r.decision, LogDecision::Clean);
        assert_eq!(r.resume, Resume::EMPTY);

        // S2: blank spares after the last used segment are kept.
        let mut dir = base.clone();
        dir.insert(name(3), vec![0; SEGMENT_SIZE as usize]);
        dir.insert(name(5), vec![0; SEGMENT_SIZE as usize]);
        let r = recover(&images(&dir), &config());
        assert_eq!(r.decision, LogDecision::Clean);
        assert!(r.discard.is_empty());

        // S3: a missing middle segment, then a blank one.
        for blank in [false, true] {
            let mut dir = base.clone();
            if blank {
                dir.insert(name(1), vec![0; SEGMENT_SIZE as usize]);
            } else {
                dir.remove(&name(1));
            }
            let r = recover(&images(&dir), &config());
            assert_eq!(corrupt(&r), Corruption::MissingSegment { index: 1 });
            assert_eq!(r.lsn_through, Lsn(12));
            assert_eq!(r.resume.offset, p, "after segment 0");
            assert_eq!(r.discard, vec![name(2)]);
        }

        // S3 at the end is no corruption: the last segment missing is a shorter log.
        let mut dir = base.clone();
        dir.remove(&name(2));
        let r = recover(&images(&dir), &config());
        assert_eq!(
            (r.decision.clone(), r.lsn_through),
            (LogDecision::Clean, Lsn(24))
        );

        // S4: a damaged header in the middle; a header naming another index (misnamed).
        let mut dir = base.clone();
        dir.get_mut(&name(1)).expect("exists")[20] ^= 1;
        let r = recover(&images(&dir), &config());
        assert!(matches!(
            corrupt(&r),
            Corruption::BadHeader { index: 1, .. }
        ));
        assert_eq!(r.lsn_through, Lsn(12));
        let mut dir = base.clone();
        let two = dir.remove(&name(2)).expect("exists");
        dir.insert(name(5), two);
        let r = recover(&images(&dir), &config());
        assert!(matches!(
            corrupt(&r),
            Corruption::MissingSegment { index: 2 }
        ));
        let mut dir = base.clone();
        let one = dir.remove(&name(1)).expect("exists");
        let two = dir.remove(&name(2)).expect("exists");
        dir.insert(name(1), two);
        dir.insert(name(2), one);
        let r = recover(&images(&dir), &config());
        let Corruption::BadHeader { index: 1, why } = corrupt(&r) else {
            panic!("{:?}", r.decision)
        };
        assert!(why.contains("index 2"), "{why}");

        // S3 at the start: segment 0 gone while every header says the log starts there.
        let mut dir = base.clone();
        dir.remove(&name(0));
        let r = recover(&images(&dir), &config());
        assert_eq!(corrupt(&r), Corruption::MissingSegment { index: 0 });
        assert_eq!((r.resume.offset, r.lsn_through), (0, Lsn(0)));
        assert_eq!(r.discard, vec![name(1), name(2)]);

        // S10: segment 2's header says the log starts at 1 (a truncation), so segment 0
        // is a leftover (valid or not) and is not read; without it the log is the same.
        let mut truncated = base.clone();
        set_log_start(&mut truncated, 2, 1);
        for leftover in [
            None,
            Some(vec![0; SEGMENT_SIZE as usize]),
            Some(vec![7; 100]),
        ] {
            let mut dir = truncated.clone();
            if let Some(bytes) = leftover {
                dir.insert(name(0), bytes);
            }
            let r = recover(&images(&dir), &config());
            assert_eq!((r.decision.clone(), r.log_start), (LogDecision::Clean, 1));
            assert_eq!(r.truncated, vec![name(0)]);
            assert_eq!(r.records.first().map(|r| r.lsn), Some(Lsn(13)));
            assert_eq!((r.lsn_through, r.resume.offset), (Lsn(28), 7 * 4096));
        }
        let mut dir = truncated.clone();
        dir.remove(&name(0));
        let r = recover(&images(&dir), &config());
        assert_eq!(
            (r.decision.clone(), r.truncated.len()),
            (LogDecision::Clean, 0)
        );
        // ... and then segment 1 missing is loss at the log's start (S3).
        let mut dir = truncated.clone();
        dir.remove(&name(1));
        let r = recover(&images(&dir), &config());
        assert_eq!(corrupt(&r), Corruption::MissingSegment { index: 1 });
        assert_eq!((r.resume.offset, r.lsn_through), (p, Lsn(0)));

        // S4: the log's first segment (index > 0 after a truncation) with a bad header.
        let mut dir = truncated.clone();
        dir.remove(&name(0));
        dir.get_mut(&name(1)).expect("exists")[20] ^= 1;
        let r = recover(&images(&dir), &config());
        assert!(matches!(
            corrupt(&r),
            Corruption::BadHeader { index: 1, .. }
        ));
        assert_eq!(r.resume.offset, p);
        // S4: a header naming a log_start above its own index.
        let mut dir = base.clone();
        set_log_start(&mut dir, 1, 2);
        let r = recover(&images(&dir), &config());
        let Corruption::BadHeader { index: 1, why } = corrupt(&r) else {
            panic!("{:?}", r.decision)
        };
        assert!(why.contains("log_start 2"), "{why}");

        // S5: the last segment's header torn during initialisation (payload zero).
        let mut dir = log(6, 4);
        let mut torn = vec![0; SEGMENT_SIZE as usize];
        torn[..512].copy_from_slice(&[0x5a; 512]);
        dir.insert(name(2), torn);
        let r = recover(&images(&dir), &config());
        assert_eq!(
            r.decision,
            LogDecision::TornTail {
                index: 2,
                file_offset: 0
            }
        );
        assert_eq!((r.lsn_through, r.resume.offset), (Lsn(24), 2 * p));
        assert_eq!(
            r.discard,
            Vec::<String>::new(),
            "segment 2 is re-initialised"
        );
        // ... but with records behind it, it is corruption.
        let mut dir = base.clone();
        dir.get_mut(&name(2)).expect("exists")[20] ^= 1;
        let r = recover(&images(&dir), &config());
        assert!(matches!(
            corrupt(&r),
            Corruption::BadHeader { index: 2, .. }
        ));
        assert_eq!(r.lsn_through, Lsn(24));

        // S6: an extra segment whose chain does not continue (a stale file).
        let mut dir = base.clone();
        let stale = SegmentHeader {
            shard: SHARD,
            salt: 5,
            segment_index: 3,
            lsn_prev: Lsn(100),
            segment_size: SEGMENT_SIZE,
            log_start: 0,
        };
        let mut file = stale.encode();
        file.resize(SEGMENT_SIZE as usize, 0);
        dir.insert(name(3), file);
        let r = recover(&images(&dir), &config());
        assert_eq!(
            corrupt(&r),
            Corruption::ChainBroken {
                index: 3,
                lsn_expected: Lsn(28),
                lsn_prev: Lsn(100)
            }
        );
        assert_eq!(r.lsn_through, Lsn(28));
        assert_eq!(r.discard, vec![name(3)]);

        // S7 / S6: a lost record in a segment that a later one follows.
        let mut dir = base.clone();
        dir.get_mut(&name(0)).expect("exists")[4096 + 4096 + 10] ^= 1;
        let r = recover(&images(&dir), &config());
        assert!(matches!(
            corrupt(&r),
            Corruption::Records {
                index: 0,
                lsn_expected: Lsn(5),
                ..
            }
        ));
        assert_eq!(r.lsn_through, Lsn(4));
        assert_eq!(r.discard, vec![name(1), name(2)]);
        // The last batch of a full segment: the record after the damaged one, in the
        // same sector, verifies, so the segment itself says damaged (S7d); with the
        // witness damaged too, the next header's chain says it (S6).
        let mut dir = base.clone();
        dir.get_mut(&name(0)).expect("exists")[3 * 4096 + 10] ^= 1;
        let r = recover(&images(&dir), &config());
        assert!(
            matches!(
                corrupt(&r),
                Corruption::Damaged {
                    index: 0,
                    lsn: Lsn(9),
                    ..
                }
            ),
            "the last batch of a full segment lost: {:?}",
            r.decision
        );
        dir.get_mut(&name(0)).expect("exists")[3 * 4096 + 48 + 10] ^= 1;
        let r = recover(&images(&dir), &config());
        assert!(
            matches!(corrupt(&r), Corruption::ChainBroken { index: 1, .. }),
            "the last batch of a full segment lost: {:?}",
            r.decision
        );

        // S7': a torn remnant (a damaged Pad) in an earlier segment loses nothing.
        let mut dir = base.clone();
        dir.get_mut(&name(0)).expect("exists")[3 * 4096 + 4000] ^= 1;
        let r = recover(&images(&dir), &config());
        assert_eq!(
            (r.decision.clone(), r.lsn_through),
            (LogDecision::Clean, Lsn(28))
        );

        // S9: the last segment's torn tail. S8: a truncated last file.
        let mut dir = base.clone();
        dir.get_mut(&name(2)).expect("exists")[4096 + 4000] ^= 1;
        let r = recover(&images(&dir), &config());
        assert_eq!(
            r.decision,
            LogDecision::TornTail {
                index: 2,
                file_offset: 4096 + 192
            }
        );
        assert_eq!((r.lsn_through, r.resume.offset), (Lsn(28), 7 * 4096));
        let mut dir = base.clone();
        dir.get_mut(&name(2)).expect("exists").truncate(4096 + 100);
        let r = recover(&images(&dir), &config());
        assert_eq!(
            corrupt(&r),
            Corruption::Truncated {
                index: 2,
                file_size: 4096 + 100
            }
        );
        assert_eq!(r.lsn_through, Lsn(26));
        assert!(r.segments[2].short);
    }

    // Goal: arbitrary bytes in segment files never panic recovery.
    // Method: random mutations of a valid directory (bytes, truncation, renames).
    #[test]
    fn random_damage_never_panics() {
        let base = log(7, 4);
        let mut prng = Prng::new(0x5e9);
        for _ in 0..300 {
            let mut dir = base.clone();
            for _ in 0..prng.range(1, 6) {
                let index = prng.below(4);
                let file = dir
                    .entry(name(index))
                    .or_insert_with(|| vec![0; SEGMENT_SIZE as usize]);
                match prng.below(3) {
                    0 if !file.is_empty() => {
                        let at = prng.index(file.len());
                        file[at] ^= 1 << prng.below(8);
                    }
                    1 => file.truncate(prng.index(SEGMENT_SIZE as usize)),
                    _ => {
                        let at = prng.index(SEGMENT_SIZE as usize / SECTOR_SIZE) * SECTOR_SIZE;
                        if at + SECTOR_SIZE <= file.len() {
                            file[at..at + SECTOR_SIZE].fill(0);
                        }
                    }
                }
            }
            let r = recover(&images(&dir), &config());
            assert!(r.lsn_through <= Lsn(28));
        }
    }

    // Goal: end to end on segments, acknowledged records survive crashes that tear the
    // write in flight (header writes included), and appends continue after recovery.
    // Method: group commit into 3-block segments; crash with a random subset of the
    // in-flight write's sectors kept; recover, scrub, discard, resume; repeat.
    #[test]
    fn crash_recover_loop() {
        for seed in 0..30 {
            let mut prng = Prng::new(seed);
            let mut dir = Dir::new();
            let mut acknowledged: u64 = 0;
            let mut round = 0;
            for restart in 0..8 {
                let recovered = recover(&images(&dir), &config());
                assert!(
                    recovered.corruption().is_none(),
                    "seed {seed} restart {restart}: {:?}",
                    recovered.decision
                );
                assert!(
                    recovered.lsn_through.0 >= acknowledged,
                    "seed {seed}: acknowledged {acknowledged} lost ({:?})",
                    recovered.decision
                );
                for (i, r) in recovered.records.iter().enumerate() {
                    assert_eq!(r.lsn.0, i as u64 + 1);
                }
                // Scrub and discard, then resume.
                let scrub = recovered.scrub.clone();
                if !scrub.is_empty() {
                    let (index, at) = geometry().locate(scrub.start);
                    let file = dir.get_mut(&name(index)).expect("scrubbed segment exists");
                    file[at as usize..(at + scrub.end - scrub.start) as usize].fill(0);
                }
                for gone in &recovered.discard {
                    dir.remove(gone);
                }
                acknowledged = recovered.lsn_through.0;
                let mut commit =
                    recovered.group_commit(geometry(), 2 * BLOCK_SIZE, prng.next_u64());
                for _ in 0..prng.range(1, 12) {
                    for _ in 0..prng.range(1, 90) {
                        round += 1;
                        if commit.append(&promise(round)).is_err() {
                            break;
                        }
                    }
                    let Some(plan) = commit.take_write() else {
                        continue;
                    };
                    let before = dir.clone();
                    execute(&mut dir, &plan, commit.durable_through());
                    if prng.below(4) == 0 {
                        // Crash mid-write: each sector of the touched file keeps or
                        // reverts (header and batch alike).
                        let (index, _) = geometry().locate(plan.offset);
                        let key = name(index);
                        let old = before
                            .get(&key)
                            .cloned()
                            .unwrap_or_else(|| vec![0; SEGMENT_SIZE as usize]);
                        let file = dir.get_mut(&key).expect("written");
                        for (sector, chunk) in file.chunks_mut(SECTOR_SIZE).enumerate() {
                            if prng.coin() {
                                let at = sector * SECTOR_SIZE;
                                chunk.copy_from_slice(&old[at..at + SECTOR_SIZE]);
                            }
                        }
                        break;
                    }
                    commit.on_durable(plan.lsn_through);
                    acknowledged = plan.lsn_through.0;
                    commit.invariants();
                }
            }
        }
    }
}
