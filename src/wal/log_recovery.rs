//! Recovery of a segmented log: what a sequence of segment images means, by the decision
//! table on `recover` (also in `schema/wal.md`), one helper function per row. Within a
//! segment the record table of `recovery` applies. Pure: `file::recover_dir` lists and
//! reads the files and hands them to `recover_from`; the simulator and the tests hand
//! images to `recover`.
//!
//! Invariants (`LogRecovery::check`, asserted before every return): the recovered LSNs
//! are contiguous and end at `lsn_through`; appends resume on a block boundary after the
//! last recovered record; the scrub starts at the resume offset and stays in its segment.

use super::content::Violation;
use super::group_commit::{GroupCommit, GroupCommitConfig, Resume, SegmentPlacement};
use super::layout::BLOCK_SIZE;
use super::record::DecodeLimits;
use super::recovery::{scan_from, RecoveredRecord, Recovery, ScanConfig};
use super::segment_format::{
    parse_segment_file_name, HeaderError, SegmentGeometry, SegmentHeader, SEGMENT_HEADER_SIZE,
};
use crate::paxos::Lsn;
use std::ops::Range;

mod corruption;
mod head;
pub use corruption::Corruption;
pub use head::HeadUse;

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
    /// What the scan read and decoded.
    pub scanned: ScanCounters,
    /// Whether the scan started at the log head hint (row S11).
    pub head: HeadUse,
}

/// What a recovery read and decoded: the work it did, which should follow the live log
/// (from `log_start`), never the history below it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanCounters {
    /// Segment files read whole (used segments walked; truncated ones and spares are
    /// only listed, their heads read).
    pub segments: u64,
    /// Bytes of those files read.
    pub bytes: u64,
    /// Records decoded and recovered from them.
    pub records: u64,
    /// Bytes of used segments not read because the log head hint proved nothing
    /// needed lies there (row S11): whole segments below the hint's, and the part of
    /// its segment below the hint.
    pub skipped_bytes: u64,
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
/// | # | situation | decision | resume | helper |
/// |---|-----------|----------|--------|--------|
/// | S0 | a file name that is not `wal-<this shard>-<index>.seg` | ignored (reported) | — | `segments_of_shard` |
/// | S1 | no used segment | `Clean`, empty log | log offset 0, LSN 0 | `resume_at_start` |
/// | S2 | blank segments after the last used one | spares, kept for later initialisation | — | `used_positions` |
/// | S3 | an index between `log_start` and the last used segment is absent or blank | `Corrupt(MissingSegment)` | after the segment before it (at `log_start`, LSN 0, when it is `log_start` itself) | `missing_segment` |
/// | S4 | a header that does not decode or does not match its name, shard or geometry, and is not S5 | `Corrupt(BadHeader)` | after the segment before it (log start if none) | `bad_header` |
/// | S5 | the last used segment's header does not decode, its first payload block is zero, and a segment precedes it or it is segment 0 | `TornTail` (a torn initialisation: no record was written) | after the segment before it | `torn_initialisation` |
/// | S6 | `lsn_prev` differs from the last LSN of the segment before | `Corrupt(ChainBroken)` | after the segment before it | `chain_broken` |
/// | S7 | a segment before the last used one scans `Corrupt` | `Corrupt(Records)` | at its break | `records_lost` |
/// | S7i | any used segment scans `Invalid` (record row 6) | `Corrupt(Invalid)` | before the invalid record | `record_invalid` |
/// | S7d | any used segment scans `Damaged` (record row 7) | `Corrupt(Damaged)` | before the damaged record | `record_damaged` |
/// | S7' | a segment before the last used one scans `Clean` or `TornTail` | continue; S6 on the next header detects any lost LSN (a torn remnant left by an earlier recovery is not a loss) | — | `continues` |
/// | S8 | a used segment file shorter than `segment_size` | `Corrupt(Truncated)`, its remaining records kept | its scan's resume | `short_file` |
/// | S9 | the last used segment | its record-table decision | its resume, scrub | `torn_tail` |
/// | S10 | a segment file below `log_start` (any header, or blank) | truncated: not read, listed in `truncated` (to recycle or delete) | — | `truncation` |
/// | S11 | a log head hint that decodes, names this shard and a used segment at or above `log_start` with a valid header of the same salt, whose record at the hint's offset verifies with the hint's LSN (and `log_start`'s segment is present) | the walk starts at that record with `lsn_prev` = its LSN - 1: used segments below it and its bytes below the offset are not read (nor listed in `truncated`: their files stay until a header moves `log_start`); any other hint: the full scan, `HeadUse::Refused` | — | `head::candidate`, `head::record_holds` |
///
/// The segment `log_start` anchors the chain with its own `lsn_prev` (segments before it
/// were truncated; a header is written with `log_start = L` BEFORE any segment below `L`
/// is deleted, so a missing `log_start` segment is loss, never truncation). After a
/// corruption, later segments are discarded (`discarded_names`): the replica keeps the
/// prefix and rebuilds as a learner. Where appends resume after a scanned segment is
/// `resume_after`'s (rows S3 to S9). Never panics on any input.
#[must_use]
pub fn recover(files: &[SegmentImage<'_>], config: &LogConfig) -> LogRecovery {
    recover_with_head(files, None, config)
}

/// `recover` with the bytes of the log head hint file, if there is one (row S11). The
/// image of a segment read from an offset has its bytes below that offset zeroed, as
/// the file reader leaves them.
#[must_use]
pub fn recover_with_head(
    files: &[SegmentImage<'_>],
    head: Option<&[u8]>,
    config: &LogConfig,
) -> LogRecovery {
    let heads: Vec<SegmentFile<'_>> = files
        .iter()
        .map(|f| SegmentFile {
            name: f.name,
            size: f.bytes.len() as u64,
            head: &f.bytes[..f.bytes.len().min(SEGMENT_HEAD_SIZE)],
        })
        .collect();
    let read = |name: &str, from: u64| -> Result<Vec<u8>, std::convert::Infallible> {
        let mut bytes = files
            .iter()
            .find(|f| f.name == name)
            .map_or_else(Vec::new, |f| f.bytes.to_vec());
        let below = usize::try_from(from).map_or(bytes.len(), |from| from.min(bytes.len()));
        bytes[..below].fill(0);
        Ok(bytes)
    };
    match recover_from(&heads, head, config, read) {
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

/// `recover_with_head` with bounded memory: `read(name, from)` is called for the used
/// segments only, one at a time in log order, and each image is dropped after its scan.
/// It returns the whole file, except that bytes below `from` (block-aligned; 0 but for
/// the hint's segment) need not be read and may be zero. An error from `read` is
/// returned as is.
#[expect(
    clippy::too_many_lines,
    reason = "the walk of the decision table in one place; each row is a helper"
)]
pub fn recover_from<E>(
    files: &[SegmentFile<'_>],
    head_bytes: Option<&[u8]>,
    config: &LogConfig,
    mut read: impl FnMut(&str, u64) -> Result<Vec<u8>, E>,
) -> Result<LogRecovery, E> {
    let geometry = config.geometry;
    let (segments, ignored) = segments_of_shard(files, config.shard);
    let mut reports: Vec<SegmentReport> = segments
        .iter()
        .map(|(index, file)| report(*index, file, &geometry))
        .collect();
    let (log_start, truncated) = truncation(&reports, config);
    let used = used_positions(&reports, log_start);

    let mut records = Vec::new();
    let mut gaps = Vec::new();
    let mut previous: Option<Scanned> = None;
    let mut decision = LogDecision::Clean;
    let mut counters = ScanCounters::default();

    let start_missing = used
        .first()
        .is_some_and(|first| reports[*first].index != log_start);
    // Row S11: the hint, checked before the walk; its segment read once, kept for it.
    let (head_use, mut start) = head::start(
        head_bytes,
        &reports,
        &segments,
        &used,
        (log_start, start_missing),
        config,
        &mut read,
        &mut counters,
    )?;
    if start_missing {
        decision = missing_segment(log_start);
    } else if let (Some(first), Some(last)) = (used.first().copied(), used.last().copied()) {
        let first = start.as_ref().map_or(first, |start| start.position);
        let last_index = reports[last].index;
        // Reports are sorted with unique indices and the walk stops at the first gap, so
        // segment `index` is at `position` or absent.
        for (position, index) in (first..).zip(reports[first].index..=last_index) {
            let found =
                (position < reports.len() && reports[position].index == index).then_some(position);
            let Some(at) = found else {
                decision = missing_segment(index);
                break;
            };
            let file = segments[at].1;
            let walk = Walk {
                index,
                last_index,
                previous: previous.as_ref(),
            };
            let header = match checked_header(&reports[at], &file, &walk, config) {
                Ok(header) => header,
                Err(stop) => {
                    decision = stop;
                    break;
                }
            };
            // The hint's segment (the first of the walk) starts at its record.
            let (bytes, scan_start, lsn_prev) = match start.take() {
                Some(start) => start.into_scan(),
                None => {
                    let bytes = read(file.name, 0)?;
                    counters.bytes += bytes.len() as u64;
                    (bytes, 0, header.lsn_prev)
                }
            };
            counters.segments += 1;
            let end = bytes.len().min(geometry.segment_size as usize);
            let image = bytes.get(SEGMENT_HEADER_SIZE..end).unwrap_or(&[]);
            let scanned = scan_from(
                image,
                scan_start,
                &ScanConfig {
                    salt: header.salt,
                    lsn_prev,
                    limits: config.limits,
                },
            );
            let base = index * geometry.payload_size();
            reports[at].records = scanned.records.len();
            counters.records += scanned.records.len() as u64;
            records.extend(scanned.records.into_iter().map(|mut r| {
                r.offset += base;
                r
            }));
            gaps.extend(scanned.gaps.iter().map(|g| g.start + base..g.end + base));
            previous = Some(Scanned {
                index,
                salt: header.salt,
                lsn_through: scanned.lsn_through,
                resume_file_offset: to_file(scanned.resume.offset),
                scrub: base + scanned.scrub.start..base + scanned.scrub.end,
            });
            if let Some(stop) = short_file(&reports[at], bytes.len()) {
                decision = stop;
                break;
            }
            if let Some(stop) = segment_end(index, last_index, &scanned.recovery) {
                decision = stop;
                break;
            }
        }
    }

    let (resume, resume_salt, scrub) = match &previous {
        Some(prev) => resume_after(prev, &geometry),
        None => {
            let index = if start_missing {
                log_start
            } else {
                used.first().map_or(log_start, |i| reports[*i].index)
            };
            resume_at_start(index, &geometry)
        }
    };
    let discard = discarded_names(&reports, geometry.locate(resume.offset).0);
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
        scanned: counters,
        head: head_use,
    };
    recovered.check(&geometry);
    Ok(recovered)
}

/// Where the walk over used segments stands when it checks segment `index`.
struct Walk<'a> {
    index: u64,
    last_index: u64,
    /// The segment before, scanned.
    previous: Option<&'a Scanned>,
}

/// The file offset of a payload offset.
fn to_file(payload_offset: u64) -> u64 {
    payload_offset + SEGMENT_HEADER_SIZE as u64
}

/// The report of one segment file before its scan.
fn report(index: u64, file: &SegmentFile<'_>, geometry: &SegmentGeometry) -> SegmentReport {
    let header = SegmentHeader::decode(file.head);
    SegmentReport {
        index,
        name: file.name.to_string(),
        header: header.as_ref().ok().copied(),
        header_error: header.err(),
        records: 0,
        short: file.size < geometry.segment_size,
    }
}

/// Row S0: the segment files of `shard` in index order, and the names of every other
/// file (sorted, reported as ignored).
fn segments_of_shard<'a>(
    files: &[SegmentFile<'a>],
    shard: u32,
) -> (Vec<(u64, SegmentFile<'a>)>, Vec<String>) {
    let mut ignored = Vec::new();
    let mut segments = Vec::new();
    for file in files {
        match parse_segment_file_name(file.name) {
            Some((of, index)) if of == shard => segments.push((index, *file)),
            _ => ignored.push(file.name.to_string()),
        }
    }
    segments.sort_by_key(|(index, _)| *index);
    ignored.sort();
    (segments, ignored)
}

/// Row S1: where appends resume when no segment was scanned: an empty log, or the log's
/// first segment is missing or unreadable (appends restart at segment `index`, the log's
/// start, with LSN 0; later files are discarded).
fn resume_at_start(index: u64, geometry: &SegmentGeometry) -> (Resume, u32, Range<u64>) {
    let offset = index * geometry.payload_size();
    (
        Resume {
            offset,
            lsn_through: Lsn(0),
        },
        0,
        offset..offset,
    )
}

/// Row S2: positions (in `reports`) of the used segments: at or above `log_start`, header
/// block not blank. Blank ones after the last used segment are spares; a blank one
/// before it is S3, found by the walk.
fn used_positions(reports: &[SegmentReport], log_start: u64) -> Vec<usize> {
    (0..reports.len())
        .filter(|i| {
            reports[*i].index >= log_start && reports[*i].header_error != Some(HeaderError::Blank)
        })
        .collect()
}

/// Row S3: segment `index`, at or above `log_start` and before the last used one, is
/// absent or blank.
fn missing_segment(index: u64) -> LogDecision {
    LogDecision::Corrupt(Corruption::MissingSegment { index })
}

/// Row S4: a header that does not decode (and is not S5), or that does not belong where
/// it lies (shard, index, geometry, a `log_start` above its own index).
fn bad_header(report: &SegmentReport, config: &LogConfig) -> Option<LogDecision> {
    let why = match &report.header {
        None => Some(
            report
                .header_error
                .as_ref()
                .map_or_else(|| "no header".to_string(), ToString::to_string),
        ),
        Some(header) if header.shard != config.shard => {
            Some(format!("header names shard {}", header.shard))
        }
        Some(header) if header.segment_index != report.index => {
            Some(format!("header names index {}", header.segment_index))
        }
        Some(header) if header.segment_size != config.geometry.segment_size => Some(format!(
            "header names segment_size {}, the log uses {}",
            header.segment_size, config.geometry.segment_size
        )),
        Some(header) if header.log_start > report.index => {
            Some(format!("header names log_start {}", header.log_start))
        }
        Some(_) => None,
    };
    why.map(|why| {
        LogDecision::Corrupt(Corruption::BadHeader {
            index: report.index,
            why,
        })
    })
}

/// Row S5: the header of the last used segment does not decode, its first payload block
/// is zero, and a segment precedes it or it is segment 0: its initialisation was torn
/// and no record was ever written to it.
fn torn_initialisation(
    report: &SegmentReport,
    file: &SegmentFile<'_>,
    walk: &Walk<'_>,
) -> Option<LogDecision> {
    let first_payload_zero = file
        .head
        .get(SEGMENT_HEADER_SIZE..2 * SEGMENT_HEADER_SIZE)
        .is_none_or(|block| block.iter().all(|b| *b == 0));
    let torn = report.header.is_none()
        && walk.index == walk.last_index
        && first_payload_zero
        && (walk.previous.is_some() || walk.index == 0);
    torn.then_some(LogDecision::TornTail {
        index: walk.index,
        file_offset: 0,
    })
}

/// Row S6: the header's `lsn_prev` is not the last LSN of the segment before.
fn chain_broken(header: &SegmentHeader, walk: &Walk<'_>) -> Option<LogDecision> {
    let prev = walk.previous?;
    (header.lsn_prev != prev.lsn_through).then_some(LogDecision::Corrupt(Corruption::ChainBroken {
        index: walk.index,
        lsn_expected: prev.lsn_through,
        lsn_prev: header.lsn_prev,
    }))
}

/// The header of used segment `walk.index` if it holds (rows S3 blank, S5, S4 and S6
/// checked in this order), or the decision that ends the walk at it.
fn checked_header(
    report: &SegmentReport,
    file: &SegmentFile<'_>,
    walk: &Walk<'_>,
    config: &LogConfig,
) -> Result<SegmentHeader, LogDecision> {
    if report.header_error == Some(HeaderError::Blank) {
        return Err(missing_segment(walk.index));
    }
    if let Some(torn) = torn_initialisation(report, file, walk) {
        return Err(torn);
    }
    if let Some(bad) = bad_header(report, config) {
        return Err(bad);
    }
    let header = report
        .header
        .expect("bad_header rejects every report without a valid header");
    chain_broken(&header, walk).map_or(Ok(header), Err)
}

/// Row S7 (and S9 when the last segment scans `Corrupt`): records of a durable batch are
/// missing at payload offset `at`.
fn records_lost(index: u64, at: u64, lsn_expected: Lsn, lsn_found: Lsn) -> LogDecision {
    LogDecision::Corrupt(Corruption::Records {
        index,
        lsn_expected,
        lsn_found,
        file_offset: to_file(at),
    })
}

/// Row S7i: a record at payload offset `at` verifies but breaks `content::check_bounds`.
fn record_invalid(index: u64, at: u64, lsn: Lsn, violation: &Violation) -> LogDecision {
    LogDecision::Corrupt(Corruption::Invalid {
        index,
        lsn,
        file_offset: to_file(at),
        violation: violation.clone(),
    })
}

/// Row S7d: a record at payload offset `at` was damaged after it was written (the next
/// one, at `next_at` in the same sector, verifies).
fn record_damaged(index: u64, at: u64, lsn: Lsn, next_at: u64) -> LogDecision {
    LogDecision::Corrupt(Corruption::Damaged {
        index,
        lsn,
        file_offset: to_file(at),
        next_file_offset: to_file(next_at),
    })
}

/// Row S7': a segment before the last used one that scans `Clean` or `TornTail` lets the
/// walk go on (S6 on the next header detects any lost LSN; a torn remnant left by an
/// earlier recovery is not a loss).
fn continues(index: u64, last_index: u64) -> bool {
    index < last_index
}

/// Row S8: a used segment file shorter than `segment_size`. Segment files are created
/// full-size and renamed into place, so a short one was cut by something else: what it
/// held past its end is unknown (its remaining records are kept).
fn short_file(report: &SegmentReport, file_size: usize) -> Option<LogDecision> {
    report
        .short
        .then_some(LogDecision::Corrupt(Corruption::Truncated {
            index: report.index,
            file_size: file_size as u64,
        }))
}

/// Row S9: the last used segment ends the log where its record table says: a torn tail
/// at payload offset `truncate_at`.
fn torn_tail(index: u64, truncate_at: u64) -> LogDecision {
    LogDecision::TornTail {
        index,
        file_offset: to_file(truncate_at),
    }
}

/// Rows S7, S7i, S7d, S7' and S9: what segment `index`'s scan means for the log, or
/// `None` when the walk goes on (or the log ends clean).
fn segment_end(index: u64, last_index: u64, recovery: &Recovery) -> Option<LogDecision> {
    match recovery {
        Recovery::Corrupt {
            at,
            lsn_expected,
            lsn_found,
            ..
        } => Some(records_lost(index, *at, *lsn_expected, *lsn_found)),
        Recovery::Damaged { at, lsn, next_at } => Some(record_damaged(index, *at, *lsn, *next_at)),
        Recovery::Invalid { at, lsn, violation } => {
            Some(record_invalid(index, *at, *lsn, violation))
        }
        Recovery::TornTail { truncate_at } if !continues(index, last_index) => {
            Some(torn_tail(index, *truncate_at))
        }
        Recovery::Clean { .. } | Recovery::TornTail { .. } => None,
    }
}

/// Where appends resume after the last segment scanned (rows S3 to S9: after the segment
/// before a bad one, at a break, or at the end): its scan's resume, with its salt and
/// scrub (log offsets).
fn resume_after(prev: &Scanned, geometry: &SegmentGeometry) -> (Resume, u32, Range<u64>) {
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

/// Row S10: the log's first segment and the files below it. `log_start` is the highest
/// `log_start` any valid header of this log names. A segment is deleted only after a
/// header naming a higher `log_start` is durable, so files below it are leftovers of a
/// truncation (not read; to recycle or delete), and the segment `log_start` itself must
/// be present.
fn truncation(reports: &[SegmentReport], config: &LogConfig) -> (u64, Vec<String>) {
    let log_start = reports
        .iter()
        .filter_map(|r| {
            r.header.filter(|h| {
                h.shard == config.shard
                    && h.segment_index == r.index
                    && h.segment_size == config.geometry.segment_size
                    && h.log_start <= h.segment_index
            })
        })
        .map(|h| h.log_start)
        .max()
        .unwrap_or(0);
    let truncated = reports
        .iter()
        .filter(|r| r.index < log_start)
        .map(|r| r.name.clone())
        .collect();
    (log_start, truncated)
}

/// After a corruption the replica keeps the prefix: every non-blank segment file after
/// the resume segment is discarded.
fn discarded_names(reports: &[SegmentReport], resume_index: u64) -> Vec<String> {
    reports
        .iter()
        .filter(|r| r.index > resume_index && r.header_error != Some(HeaderError::Blank))
        .map(|r| r.name.clone())
        .collect()
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
        self.group_commit_pipelined(geometry, buffer_size_max, salt_seed, 1)
    }

    /// `group_commit` with up to `writes_in_flight_max` writes in flight at once (in
    /// `1..=WRITES_IN_FLIGHT_MAX_LIMIT`; `GroupCommit` panics otherwise).
    #[must_use]
    pub fn group_commit_pipelined(
        &self,
        geometry: SegmentGeometry,
        buffer_size_max: usize,
        salt_seed: u64,
        writes_in_flight_max: usize,
    ) -> GroupCommit {
        GroupCommit::segmented(
            GroupCommitConfig {
                buffer_size_max,
                salt: self.resume_salt,
                writes_in_flight_max,
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

#[cfg(test)]
mod tests;
