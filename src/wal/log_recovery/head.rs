//! Row S11 of the segment table: whether the log head hint (`wal::log_head`) may start
//! the scan past the log's first bytes. Pure: the hint's bytes and the segment reports
//! in, the decision out. Every doubt falls back to the full scan, which is always safe;
//! a hint that is used only ever skips records nothing needs (`wal::log_head`, safety).

use super::{bad_header, LogConfig, ScanCounters, SegmentFile, SegmentReport};
use crate::wal::layout::BLOCK_SIZE;
use crate::wal::log_head::LogHead;
use crate::wal::record::{decode, Content};
use crate::wal::segment_format::SEGMENT_HEADER_SIZE;

/// How a recovery used the log head hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadUse {
    /// No hint file: the full scan.
    Absent,
    /// The scan started at the hint: segments below `segment` and the bytes of
    /// `segment` below `file_offset` were not read.
    Used {
        /// The segment the scan started in.
        segment: u64,
        /// File offset of the first record scanned (`lsn`).
        file_offset: u64,
    },
    /// A hint file that does not hold: the full scan.
    Refused {
        /// Why (for the log and the recovery report).
        why: String,
    },
}

/// Where the walk starts when the hint holds.
pub(super) struct Start {
    /// Position of the hint's segment among the reports.
    pub(super) position: usize,
    /// The hint.
    head: LogHead,
    /// The segment's image, read from the hint's block on.
    image: Vec<u8>,
}

impl Start {
    /// The image, the payload offset where the scan starts, and the `lsn_prev` it
    /// starts with.
    pub(super) fn into_scan(self) -> (Vec<u8>, usize, crate::paxos::Lsn) {
        let payload = self.head.file_offset - SEGMENT_HEADER_SIZE as u64;
        let at = usize::try_from(payload).unwrap_or(usize::MAX);
        (self.image, at, crate::paxos::Lsn(self.head.lsn.0 - 1))
    }
}

/// A hint that passed the checks before any segment is read: the hint and the position
/// of its segment among the reports.
pub(super) struct Candidate {
    pub(super) head: LogHead,
    pub(super) position: usize,
}

/// Row S11, before reading: the hint decodes, names this shard, and a used segment
/// (`used`: positions of the used segments) at or above `log_start`, whose header
/// holds (row S4) and carries the hint's salt, at an offset inside the segment.
/// `Ok(None)` when there is no hint file.
pub(super) fn candidate(
    bytes: Option<&[u8]>,
    reports: &[SegmentReport],
    used: &[usize],
    log_start: u64,
    config: &LogConfig,
) -> Result<Option<Candidate>, String> {
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let head = LogHead::decode(bytes).map_err(|e| format!("hint does not decode: {e}"))?;
    if head.shard != config.shard {
        return Err(format!("hint names shard {}", head.shard));
    }
    if head.segment < log_start {
        return Err(format!(
            "hint names segment {}, below log_start {log_start}",
            head.segment
        ));
    }
    if head.file_offset >= config.geometry.segment_size {
        return Err(format!(
            "hint offset {} beyond the segment size {}",
            head.file_offset, config.geometry.segment_size
        ));
    }
    let position = used
        .iter()
        .copied()
        .find(|p| reports[*p].index == head.segment)
        .ok_or_else(|| format!("hint names segment {}, not a used segment", head.segment))?;
    let report = &reports[position];
    if let Some(bad) = bad_header(report, config) {
        return Err(format!("hint segment: {bad:?}"));
    }
    let salt = report.header.map(|h| h.salt);
    if salt != Some(head.salt) {
        return Err(format!(
            "hint salt {:#x}, segment {} has {salt:x?} (recycled)",
            head.salt, head.segment
        ));
    }
    Ok(Some(Candidate { head, position }))
}

/// The block-aligned file offset from which the hint's segment is read.
pub(super) fn read_from(head: &LogHead) -> u64 {
    let from = head.file_offset / BLOCK_SIZE as u64 * BLOCK_SIZE as u64;
    assert!(
        from >= SEGMENT_HEADER_SIZE as u64,
        "a hint lies after the header"
    );
    from
}

/// Row S11, after reading the hint's segment (`image`: the whole file, bytes below
/// `read_from` possibly zero): the record at the hint's offset verifies under the
/// segment's salt, is a protocol record (not a Pad), and carries the hint's LSN.
pub(super) fn record_holds(image: &[u8], head: &LogHead, config: &LogConfig) -> Result<(), String> {
    let at = usize::try_from(head.file_offset).map_err(|_| "offset overflows".to_string())?;
    let end = image.len().min(config.geometry.segment_size as usize);
    let bytes = image
        .get(at..end)
        .ok_or_else(|| format!("hint offset {at} beyond the file ({} bytes)", image.len()))?;
    match decode(bytes, head.salt, &config.limits) {
        Ok((decoded, _)) => match decoded.content {
            Content::Record(_) if decoded.stamp.lsn == head.lsn => Ok(()),
            Content::Record(_) => Err(format!(
                "record at the hint has LSN {}, the hint names {}",
                decoded.stamp.lsn.0, head.lsn.0
            )),
            Content::Pad => Err("a Pad at the hint".to_string()),
        },
        Err(why) => Err(format!("no record at the hint: {why}")),
    }
}

/// Where the walk starts by row S11, and how the hint was used: the position of the
/// hint's segment, the hint and the segment's image (read from the hint's block on),
/// when the hint holds. `log_start` is the log's first segment and whether it is
/// missing (then the hint is refused: the full walk reports the loss). The bytes read
/// and skipped are added to `counters`.
#[expect(
    clippy::too_many_arguments,
    reason = "the walk's state at its start, passed in, so the row stays one pure function"
)]
pub(super) fn start<E>(
    head_bytes: Option<&[u8]>,
    reports: &[SegmentReport],
    segments: &[(u64, SegmentFile<'_>)],
    used: &[usize],
    (log_start, start_missing): (u64, bool),
    config: &LogConfig,
    read: &mut impl FnMut(&str, u64) -> Result<Vec<u8>, E>,
    counters: &mut ScanCounters,
) -> Result<(HeadUse, Option<Start>), E> {
    let candidate = match candidate(head_bytes, reports, used, log_start, config) {
        Ok(None) => return Ok((HeadUse::Absent, None)),
        Err(why) => return Ok((HeadUse::Refused { why }, None)),
        Ok(Some(_)) if start_missing => {
            let why = format!("segment {log_start} (log_start) is missing");
            return Ok((HeadUse::Refused { why }, None));
        }
        Ok(Some(candidate)) => candidate,
    };
    let from = read_from(&candidate.head);
    let image = read(segments[candidate.position].1.name, from)?;
    counters.bytes += (image.len() as u64).saturating_sub(from);
    if let Err(why) = record_holds(&image, &candidate.head, config) {
        return Ok((HeadUse::Refused { why }, None));
    }
    counters.skipped_bytes = used
        .iter()
        .filter(|p| reports[**p].index < candidate.head.segment)
        .map(|p| segments[*p].1.size)
        .sum::<u64>()
        + from;
    let used_at = HeadUse::Used {
        segment: candidate.head.segment,
        file_offset: candidate.head.file_offset,
    };
    let start = Start {
        position: candidate.position,
        head: candidate.head,
        image,
    };
    Ok((used_at, Some(start)))
}
