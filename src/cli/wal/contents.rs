//! The content half of `synod wal verify` and `synod wal dump`: every record recovery
//! keeps is checked against `wal::content` (bounds and per-group order) and, when the
//! data directory's `synod.id` names the shard count, against the shard that owns its
//! group. Each violation is printed with its rule, LSN, segment, offset, group and
//! instance; output is bounded (`VIOLATIONS_SHOWN_MAX` lines per shard, then a count).
//! A range recovery skipped (record table row 3) is described by what its first header
//! still says: a damaged Pad, or the remnant of a write an earlier recovery cut.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

use synod::paxos::{GroupId, Instance, Record};
use synod::runtime::shard_of;
use synod::wal::segment::{segment_file_name, Corruption, LogRecovery, SegmentGeometry};
use synod::wal::{decode, peek, Content, ContentCheck, DecodeLimits, Kind};

/// Violations printed per shard; the rest are counted.
pub const VIOLATIONS_SHOWN_MAX: usize = 20;

/// The identity file of a data directory (written by `Node::start`).
const IDENTITY_FILE: &str = "synod.id";

/// The shard count `dir/synod.id` names (its `shards N` line), if the file exists and
/// names one. The WAL directory of a node is its data directory.
pub fn shard_count_in(dir: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(dir.join(IDENTITY_FILE)).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("shards "))
        .and_then(|count| count.trim().parse().ok())
        .filter(|count| *count > 0)
}

/// The instance a record names: Accept and Learn their instance, Chosen its watermark.
fn instance_of(record: &Record) -> Option<Instance> {
    match record {
        Record::Promise { .. } => None,
        Record::Accept { instance, .. } | Record::Learn { instance, .. } => Some(*instance),
        Record::Chosen { through, .. } | Record::Installed { through, .. } => Some(*through),
    }
}

/// `lsn L seg S off O group G instance I` of a record.
fn place(lsn: u64, index: u64, file_offset: u64, record: &Record) -> String {
    let instance = instance_of(record).map_or_else(|| "-".to_string(), |i| i.0.to_string());
    format!(
        "lsn {lsn} seg {index} off {file_offset} group {} instance {instance}",
        record.group().0
    )
}

/// Checks the contents of the records `recovery` keeps, in log order; prints each
/// violation (the first `VIOLATIONS_SHOWN_MAX`) and returns how many there are.
pub fn check_contents(
    shard: u32,
    geometry: SegmentGeometry,
    shard_count: Option<u16>,
    recovery: &LogRecovery,
) -> usize {
    let mut check = ContentCheck::new();
    let mut foreign: BTreeSet<GroupId> = BTreeSet::new();
    let mut count = 0;
    for recovered in &recovery.records {
        let record = &recovered.record;
        let mut broken: Vec<(&str, String)> = Vec::new();
        if let Err(violation) = check.check(record) {
            broken.push((violation.rule(), violation.to_string()));
        }
        if let Some(shards) = shard_count {
            let owner = shard_of(record.group(), shards);
            // One line per foreign group: its first record.
            if u32::from(owner) != shard && foreign.insert(record.group()) {
                broken.push((
                    "group-owner",
                    format!(
                        "group {} belongs to shard {owner} of {shards} (synod.id), not shard {shard}",
                        record.group().0
                    ),
                ));
            }
        }
        for (rule, why) in broken {
            count += 1;
            if count <= VIOLATIONS_SHOWN_MAX {
                let (index, offset) = geometry.locate(recovered.offset);
                println!(
                    "  INVALID {}: {why} (rule {rule})",
                    place(recovered.lsn.0, index, offset, record)
                );
            }
        }
    }
    if count > VIOLATIONS_SHOWN_MAX {
        println!(
            "  ... and {} more content violations",
            count - VIOLATIONS_SHOWN_MAX
        );
    }
    count
}

/// The record where recovery stopped on a `Corruption::Invalid`, read again from its
/// segment file and described (`None` for other corruptions or if it cannot be read).
pub fn describe_invalid(dir: &Path, shard: u32, recovery: &LogRecovery) -> Option<String> {
    let Some(Corruption::Invalid {
        index,
        lsn,
        file_offset,
        ..
    }) = recovery.corruption()
    else {
        return None;
    };
    let salt = recovery
        .segments
        .iter()
        .find(|s| s.index == *index)
        .and_then(|s| s.header)?
        .salt;
    let bytes = std::fs::read(dir.join(segment_file_name(shard, *index))).ok()?;
    let at = usize::try_from(*file_offset).ok()?;
    let (decoded, _) = decode(bytes.get(at..)?, salt, &DecodeLimits::default()).ok()?;
    let Content::Record(record) = decoded.content else {
        return None;
    };
    Some(format!(
        "{}: {}",
        place(lsn.0, *index, *file_offset, &record),
        super::dump::describe(&record)
    ))
}

/// One line on a range recovery skipped because the LSNs continue across it (record
/// table row 3): where it lies, between which LSNs, and what its first header (read
/// without its checksum, so a guess) says it was:
/// - a Pad carrying the LSN before the gap: a damaged Pad, no record was ever there;
/// - a record carrying the LSN after the gap or a later one: the remnant of a write an
///   earlier recovery cut at this offset and resumed after (row 2, 4, 5 or 6). The log as
///   it is now lost nothing, but that recovery dropped what the remnant held: a torn last
///   write, or damage to the last batch, which it cannot tell apart (the residual risk
///   of `schema/wal.md`), or records it found corrupt or invalid.
pub fn describe_gap(
    dir: &Path,
    shard: u32,
    geometry: SegmentGeometry,
    recovery: &LogRecovery,
    gap: &Range<u64>,
) -> String {
    let (index, offset) = geometry.locate(gap.start);
    // The record before the gap; the one after it has the next LSN (row 3).
    let before = recovery
        .records
        .iter()
        .rev()
        .find(|r| r.offset < gap.start)
        .map_or_else(
            || {
                recovery
                    .records
                    .first()
                    .map_or(0, |r| r.lsn.0.saturating_sub(1))
            },
            |r| r.lsn.0,
        );
    let head = std::fs::read(dir.join(segment_file_name(shard, index)))
        .ok()
        .and_then(|bytes| {
            let at = usize::try_from(offset).ok()?;
            peek(bytes.get(at..)?)
        });
    let what = match head {
        Some(h) if h.kind == Kind::Pad && h.lsn.0 == before => {
            "a damaged Pad: no record was there".to_string()
        }
        Some(h) if h.kind != Kind::Pad && h.lsn.0 > before => format!(
            "the remnant of a write an earlier recovery cut here and resumed after: its \
             header reads {:?} group {} instance {} LSN {}; that recovery dropped it (a torn \
             last write, or damage to the last batch, which recovery cannot tell apart, or \
             a record found corrupt or invalid)",
            h.kind, h.group.0, h.instance.0, h.lsn.0
        ),
        Some(_) | None => "its header is unreadable: a damaged Pad or remnant".to_string(),
    };
    format!(
        "skipped {} damaged bytes at segment {index} offset {offset}, between LSN {before} and \
         LSN {}: no record of the log lost (the LSNs continue); they held {what}",
        gap.end - gap.start,
        before + 1
    )
}
