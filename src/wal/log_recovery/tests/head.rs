//! Tests of row S11: the log head hint, used when it holds, refused (full scan) in every
//! other case, and a crash loop where recovery from the hint replays to the state of the
//! full scan.

use super::*;
use crate::paxos::Instance;
use crate::wal::compaction::tests::{normalise, random_record};
use crate::wal::compaction::{plan, CompactionConfig, Rewrite};
use crate::wal::index::LogIndex;
use crate::wal::log_head::LogHead;
use crate::wal::replay::replay;

/// The hint naming file offset `file_offset` of `segment` in `dir`, with `lsn`.
fn hint(dir: &Dir, segment: u64, file_offset: u64, lsn: u64) -> LogHead {
    let header = SegmentHeader::decode(&dir[&name(segment)]).expect("valid header");
    LogHead {
        shard: SHARD,
        salt: header.salt,
        segment,
        file_offset,
        lsn: Lsn(lsn),
    }
}

fn refused(r: &LogRecovery) -> String {
    match &r.head {
        HeadUse::Refused { why } => why.clone(),
        other => panic!("hint not refused: {other:?}"),
    }
}

// Goal: a hint that holds starts the scan at its record: segments below it and its
// bytes below the offset are not read (the images zero them), the rest is as the full
// scan's; a damaged byte below the hint does not matter.
// Method: the 3-segment log of `decision_table_rows` (4 promises a block); hints at the
// first record of a block and mid-block; compare with the full scan.
#[test]
fn a_hint_that_holds_skips_the_bytes_below_it() {
    let base = log(7, 4);
    let full = recover(&images(&base), &config());
    assert_eq!(full.head, HeadUse::Absent);
    // Segment 1's second block: its first record is LSN 17 (12 in segment 0, 4 in the
    // block before), the next one 48 bytes on is LSN 18.
    let block_two = SEGMENT_HEADER_SIZE as u64 + BLOCK_SIZE as u64;
    for (file_offset, lsn) in [(block_two, 17), (block_two + 48, 18)] {
        let head = hint(&base, 1, file_offset, lsn).encode();
        let r = recover_with_head(&images(&base), Some(&head), &config());
        assert_eq!(
            r.head,
            HeadUse::Used {
                segment: 1,
                file_offset
            }
        );
        assert_eq!(r.decision, LogDecision::Clean);
        assert_eq!(
            (r.lsn_through, r.resume, r.resume_salt, r.scrub.clone()),
            (
                full.lsn_through,
                full.resume,
                full.resume_salt,
                full.scrub.clone()
            )
        );
        assert_eq!(r.records[0].lsn, Lsn(lsn));
        assert_eq!(&r.records[..], &full.records[lsn as usize - 1..]);
        assert_eq!(r.scanned.segments, 2);
        assert_eq!(r.scanned.skipped_bytes, SEGMENT_SIZE + block_two);
        assert_eq!(r.scanned.bytes, 2 * SEGMENT_SIZE - block_two);
        assert_eq!(r.log_start, 0);
        assert!(r.truncated.is_empty(), "skipped segments are not truncated");
    }
    // Damage below the hint: the full scan stops there, the hinted one never sees it.
    let mut dir = base.clone();
    dir.get_mut(&name(1)).expect("exists")[SEGMENT_HEADER_SIZE + 100] ^= 1;
    assert!(recover(&images(&dir), &config()).corruption().is_some());
    let head = hint(&dir, 1, block_two, 17).encode();
    let r = recover_with_head(&images(&dir), Some(&head), &config());
    assert_eq!((r.decision, r.lsn_through), (LogDecision::Clean, Lsn(28)));
}

// Goal: every hint that does not hold is refused and the full scan runs: torn or
// damaged, another shard, below `log_start`, a segment not used, a recycled segment
// (salt), another LSN, a Pad or zeros at the offset, an offset past the segment, the
// log's first segment missing.
// Method: one hint per kind on the log of `decision_table_rows`; the recovery must be
// the full scan's with `HeadUse::Refused`.
#[test]
fn every_invalid_hint_falls_back_to_the_full_scan() {
    let base = log(7, 4);
    let full = recover(&images(&base), &config());
    let block_two = SEGMENT_HEADER_SIZE as u64 + BLOCK_SIZE as u64;
    let good = hint(&base, 1, block_two, 17);
    let check = |dir: &Dir, head: Vec<u8>, expect: &LogRecovery, why: &str| {
        let r = recover_with_head(&images(dir), Some(&head), &config());
        let reason = refused(&r);
        assert!(reason.contains(why), "{why}: refused for {reason}");
        assert_eq!(
            (&r.records, &r.decision, r.resume, r.scanned.skipped_bytes),
            (&expect.records, &expect.decision, expect.resume, 0),
            "{why}"
        );
    };
    let mut torn = good.encode();
    torn[24] ^= 0x10;
    check(&base, torn, &full, "checksum");
    check(&base, good.encode()[..512].to_vec(), &full, "bytes");
    check(
        &base,
        LogHead {
            shard: SHARD + 1,
            ..good
        }
        .encode(),
        &full,
        "shard",
    );
    check(
        &base,
        LogHead { segment: 5, ..good }.encode(),
        &full,
        "not a used",
    );
    check(
        &base,
        LogHead {
            salt: good.salt ^ 1,
            ..good
        }
        .encode(),
        &full,
        "recycled",
    );
    check(
        &base,
        LogHead {
            lsn: Lsn(16),
            ..good
        }
        .encode(),
        &full,
        "LSN 17",
    );
    // The batch's Pad lies after its 4 promises (192 bytes).
    check(
        &base,
        LogHead {
            file_offset: block_two + 192,
            ..good
        }
        .encode(),
        &full,
        "Pad",
    );
    // Segment 2 holds one batch: its second block is zeros.
    check(
        &base,
        LogHead {
            segment: 2,
            file_offset: block_two + BLOCK_SIZE as u64,
            ..hint(&base, 2, block_two, 1)
        }
        .encode(),
        &full,
        "no record",
    );
    check(
        &base,
        LogHead {
            file_offset: SEGMENT_SIZE,
            ..good
        }
        .encode(),
        &full,
        "beyond",
    );
    // Below `log_start`: segment 2's header moved the log's start to 2.
    let mut dir = base.clone();
    set_log_start(&mut dir, 2, 2);
    let moved = recover(&images(&dir), &config());
    check(&dir, good.encode(), &moved, "below log_start");
    // The log's first segment is missing: the full scan's corruption stands.
    let mut dir = base.clone();
    dir.remove(&name(0));
    let missing = recover(&images(&dir), &config());
    assert!(missing.corruption().is_some());
    check(&dir, good.encode(), &missing, "missing");
}

/// Per group, the normalised replay of `records` above `watermarks`.
fn state(
    records: &[RecoveredRecord],
    watermarks: &BTreeMap<GroupId, Instance>,
) -> BTreeMap<GroupId, crate::wal::compaction::tests::Normal> {
    normalise(&replay(records), watermarks)
}

// Goal: with random truncation plans, hints written only when every write is durable,
// compaction rewrites and crashes that tear the write in flight, the recovery from the
// hint replays to the state of the full scan (per group: promised, chosen, installed,
// entries above the watermark), with the same end of log.
// Method: 40 seeds x 6 restarts of random records in 4 groups; after each durable write
// maybe raise watermarks, plan (`compaction::plan`), append its rewrites and the head
// rewrites (`compaction::head_rewrites`), and write the hint of its head; a quarter of
// the writes crash torn. Recover with and without the hint; compare; resume as the
// store does (a refused hint is removed).
#[test]
fn crash_loop_with_hints_replays_as_the_full_scan() {
    let mut used = 0;
    for seed in 0..40 {
        let mut prng = Prng::new(1000 + seed);
        let mut dir = Dir::new();
        let mut head_file: Option<Vec<u8>> = None;
        let mut watermarks: BTreeMap<GroupId, Instance> = BTreeMap::new();
        for restart in 0..6 {
            let full = recover(&images(&dir), &config());
            let hinted = recover_with_head(&images(&dir), head_file.as_deref(), &config());
            assert!(
                full.corruption().is_none(),
                "seed {seed}: {:?}",
                full.decision
            );
            assert_eq!(
                (
                    &hinted.decision,
                    hinted.resume,
                    &hinted.scrub,
                    &hinted.discard
                ),
                (&full.decision, full.resume, &full.scrub, &full.discard),
                "seed {seed} restart {restart}"
            );
            assert_eq!(
                state(&hinted.records, &watermarks),
                state(&full.records, &watermarks),
                "seed {seed} restart {restart}: {:?}",
                hinted.head
            );
            match &hinted.head {
                HeadUse::Used { .. } => used += 1,
                HeadUse::Refused { why } => {
                    panic!("seed {seed} restart {restart}: a durable hint refused: {why}")
                }
                HeadUse::Absent => {}
            }
            let scrub = hinted.scrub.clone();
            if !scrub.is_empty() {
                let (index, at) = geometry().locate(scrub.start);
                let file = dir.get_mut(&name(index)).expect("scrubbed segment exists");
                file[at as usize..(at + scrub.end - scrub.start) as usize].fill(0);
            }
            // As the store: the index of what was recovered, records by offset for
            // the copies and the hint's LSN.
            let mut index = LogIndex::from_recovered(&hinted.records);
            let mut by_offset: BTreeMap<u64, (Lsn, Record)> = hinted
                .records
                .iter()
                .map(|r| (r.offset, (r.lsn, r.record.clone())))
                .collect();
            let mut commit = hinted.group_commit(geometry(), 2 * BLOCK_SIZE, prng.next_u64());
            let mut pending: Vec<Record> = Vec::new();
            for _ in 0..prng.range(1, 14) {
                for _ in 0..prng.range(1, 20) {
                    let record = pending
                        .pop()
                        .unwrap_or_else(|| random_record(&mut prng, 4, 40));
                    match commit.append_placed(&record) {
                        Ok(placed) => {
                            index.insert(&record, placed);
                            by_offset.insert(placed.offset, (placed.lsn, record));
                        }
                        Err(_) => {
                            pending.push(record);
                            break;
                        }
                    }
                }
                let Some(write) = commit.take_write() else {
                    continue;
                };
                let before = dir.clone();
                execute(&mut dir, &write, commit.durable_through());
                if prng.below(4) == 0 {
                    tear(&mut dir, &before, write.offset, &mut prng);
                    break;
                }
                commit.on_durable(write.lsn_through);
                if prng.below(3) != 0 {
                    continue;
                }
                // Every write is durable: truncate as the store does.
                for g in 1..=4 {
                    if prng.coin() {
                        let w = watermarks.entry(GroupId(g)).or_insert(Instance(0));
                        *w = Instance(w.0 + prng.below(8));
                        index.release_through(GroupId(g), *w);
                    }
                }
                let (current, _) = geometry().locate(write.offset);
                let planned = plan(
                    &index,
                    &watermarks,
                    geometry().payload_size(),
                    0,
                    current,
                    &CompactionConfig::default(),
                );
                if let Some(offset) = planned.head {
                    let (segment, file_offset) = geometry().locate(offset);
                    let lsn = by_offset[&offset].0;
                    head_file = Some(hint(&dir, segment, file_offset, lsn.0).encode());
                }
                pending.extend(crate::wal::compaction::head_rewrites(&index, &watermarks));
                for rewrite in planned.rewrites {
                    pending.push(match rewrite {
                        Rewrite::State(record) => record,
                        Rewrite::Copy { entry, .. } => by_offset[&entry.offset].1.clone(),
                    });
                }
            }
        }
    }
    assert!(used > 40, "the hint was used {used} times");
}
