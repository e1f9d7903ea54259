//! `synod wal verify` and `synod wal dump`: recovery of each shard's log as a node's
//! start runs it (read-only), then the verdict: a clean end, a torn tail, or the first
//! corrupt record with its file; and the content checks of `contents`.

use std::path::Path;
use std::process::ExitCode;

use synod::wal::segment::{
    segment_file_name, Corruption, LogDecision, LogRecovery, SegmentGeometry,
};
use synod::wal::store::recover_dir_with;

use super::{contents, shards_in, store_config, InspectArgs};

/// Runs `synod wal verify` (dump = false) and `synod wal dump` (dump = true): exit
/// status 1 when a shard's log is corrupt or breaks a content rule.
pub fn main(args: InspectArgs, dump: bool) -> Result<ExitCode, String> {
    let InspectArgs { dir, shard: only } = args;
    let shards = shards_in(&dir)?;
    if shards.is_empty() {
        println!("{}: no segment files", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let shard_count = contents::shard_count_in(&dir);
    let mut corrupt = false;
    for (shard, segment_size) in shards {
        if only.is_some_and(|s| s != shard) {
            continue;
        }
        let config = store_config(&dir, shard, segment_size);
        // The whole live log, not only the part past the log head hint.
        let recovery = recover_dir_with(&config, false).map_err(|e| e.to_string())?;
        let geometry = config.geometry;
        if dump {
            super::dump::records(geometry, &recovery);
        }
        corrupt |= report(&dir, shard, segment_size, shard_count, &recovery, dump);
    }
    Ok(if corrupt {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints the verdict on one shard's log; returns whether it is corrupt or breaks a
/// content rule (`wal::content`; group ownership when `shard_count` is known).
fn report(
    dir: &Path,
    shard: u32,
    segment_size: u64,
    shard_count: Option<u16>,
    recovery: &LogRecovery,
    dump: bool,
) -> bool {
    let used = recovery
        .segments
        .iter()
        .filter(|s| s.header.is_some())
        .count();
    let first = recovery.records.first().map_or(0, |r| r.lsn.0);
    println!(
        "shard {shard}: {} segment files ({used} initialised, {segment_size} bytes each), {} records, LSN {first}..={}",
        recovery.segments.len(),
        recovery.records.len(),
        recovery.lsn_through.0
    );
    if recovery.log_start > 0 || !recovery.truncated.is_empty() {
        println!(
            "  log starts at segment {} ({} truncated leftover files below it, not read)",
            recovery.log_start,
            recovery.truncated.len()
        );
    }
    for name in &recovery.ignored {
        println!("  ignored (not a segment of shard {shard}): {name}");
    }
    let geometry = SegmentGeometry::new(segment_size);
    for gap in &recovery.gaps {
        println!(
            "  {}",
            contents::describe_gap(dir, shard, geometry, recovery, gap)
        );
    }
    let violations = contents::check_contents(shard, geometry, shard_count, recovery);
    if shard_count.is_none() {
        println!("  group ownership not checked (no synod.id naming the shard count)");
    }
    if dump {
        super::dump::groups(recovery);
    }
    let end = match &recovery.decision {
        LogDecision::Clean => Some("clean end".to_string()),
        LogDecision::TornTail { index, file_offset } => Some(format!(
            "torn tail at segment {index} offset {file_offset} (the last write was cut short; nothing acknowledged lost)"
        )),
        LogDecision::Corrupt(corruption) => {
            let name = segment_file_name(shard, corruption_index(corruption));
            println!(
                "  CORRUPT: first bad record: {corruption} ({})",
                dir.join(name).display()
            );
            if let Some(record) = contents::describe_invalid(dir, shard, recovery) {
                println!("  invalid record: {record}");
            }
            println!(
                "  a node recovering this log rebuilds the shard's groups as non-voting learners"
            );
            None
        }
    };
    match end {
        Some(end) if violations == 0 => {
            println!("  ok: {end}");
            false
        }
        Some(end) => {
            println!("  INVALID: {violations} content violations ({end})");
            true
        }
        None => {
            if violations > 0 {
                println!("  INVALID: {violations} content violations in the records kept");
            }
            true
        }
    }
}

/// The segment a corruption is in.
fn corruption_index(corruption: &Corruption) -> u64 {
    match corruption {
        Corruption::Records { index, .. }
        | Corruption::MissingSegment { index }
        | Corruption::BadHeader { index, .. }
        | Corruption::Truncated { index, .. }
        | Corruption::Invalid { index, .. }
        | Corruption::Damaged { index, .. }
        | Corruption::ChainBroken { index, .. } => *index,
        _ => unreachable!("a new corruption kind needs a position"),
    }
}
