//! Recovery: a pure scan of a log image that returns the records to replay and decides
//! what the tail means: clean end, torn last write (truncate), or damage to durable
//! records (keep the prefix; the replica becomes a non-voting learner).
//!
//! The scan works on one contiguous slice (today the whole log; with segments, one
//! segment, chained through `ScanConfig::lsn_prev`). Offsets are relative to the slice.
//!
//! # Decision table
//!
//! Let `last` be the LSN of the last record accepted so far and `p` the first position
//! (after the short-block-tail skip of `wal::record_start`) where the log does not
//! continue: no valid record there (checksum, zeros, garbage, truncated, limits), or a
//! valid one that is not next (a real record must have LSN `last + 1`, a Pad LSN `last`),
//! or a Pad that does not end on a block boundary. The scan then *surveys* the rest of
//! the slice: valid records at `p` and at every block boundary after it, plus the chains
//! of valid records that follow each, keeping those *ahead* of the log (real LSN > `last`,
//! Pad LSN >= `last`; older ones cannot be this log's future and are ignored). In the
//! survey, *first* is the earliest found by position and *newest* the one with the
//! highest LSN. A found record *loses LSNs* when LSNs between `last` and it are missing
//! (real: LSN > `last + 1`; Pad: LSN > `last`).
//!
//! | # | `p` | survey | decision | resume, scrub |
//! |---|-----|--------|----------|---------------|
//! | 1 | on a block boundary | nothing | `Clean { end: p }` | resume at `p`; no scrub |
//! | 2 | inside a block | nothing | `TornTail { truncate_at: p }` | resume at `⌈p⌉`; no scrub |
//! | 3 | any | *first* loses no LSN | skip `[p, first)`, record it in `gaps`, continue scanning at *first* | — |
//! | 4 | any | *first* loses LSNs; *newest*'s `unsynced_from <= last + 1` | `TornTail { truncate_at: p }` | resume at `⌈p⌉`; scrub `[⌈p⌉, ⌈end of survey⌉)` |
//! | 5 | any | *first* loses LSNs; *newest*'s `unsynced_from > last + 1` | `Corrupt { at: p, .. }` | as 4, AFTER the caller made learner status durable |
//! | 6 | holds an *invalid* record | not row 3 | `Invalid { at: p, lsn, violation }` | as 5; the scrub also covers the invalid record's own blocks after `⌈p⌉` |
//! | 7 | holds a *damaged* record | rows 1, 2 or 4 would apply | `Damaged { at: p, lsn, next_at }` | as 5 |
//!
//! An *invalid* record verifies (checksum, framing) and would continue the log (LSN
//! `last + 1`), but breaks `content::check_bounds`: a ballot round above
//! `Ballot::ROUND_MAX` or an instance outside `1..=Instance::MAX`. Everywhere else
//! (survey, chains) it counts as no record at all, so rows 1-5 see it as damage; row 6
//! takes precedence over rows 1, 2, 4 and 5.
//!
//! A *damaged* record is one that does not verify while its header (read without the
//! checksum) still names LSN `last + 1` and a size that ends where a record starts that
//! does verify, in the same sector as `p`, and continues the log as if the one at `p`
//! had (real: LSN `last + 2`; Pad: LSN `last + 1`). Sectors are written whole or not at
//! all (`SECTOR_SIZE`), so that sector was written, and with it every byte of the record
//! at `p` (it lies between `p` and the next record, inside the sector): the record was
//! damaged after it was written. No torn write looks like this. The header check keeps
//! remnants of a write cut by an earlier recovery (left after `⌈p⌉` by rows 2 and 4 when
//! they do not start a block) from posing as witnesses: such a remnant would have to sit
//! right after a header naming LSN `last + 1` and its own offset.
//!
//! Why these rows are right:
//! - Row 1/2: nothing after `p` belongs to this log, so nothing is lost by ending there.
//!   A batch always ends on a block boundary (Pad or short-tail skip); a log that stops
//!   inside a block lost the end of its last batch (row 2), one that stops on a boundary
//!   lost at most whole batches that nothing later depends on (row 1). The action is the
//!   same; only the report differs.
//! - Row 3: LSNs are contiguous, so no record of the log lies in the gap (every real
//!   record takes the next LSN): it is a damaged Pad, or the remnant of a write cut by an
//!   earlier recovery (rows 2, 4, 5, 6; appends resume at the next block, leaving
//!   `[p, ⌈p⌉)` as it was), whose loss that recovery already judged.
//! - Rows 4/5: a record's `unsynced_from` (`Stamp`, the `batch_delta` field) is an LSN
//!   below which everything was durable when its batch was submitted (`group_commit`:
//!   the contiguity rule). With one write in flight it is the batch's first LSN; with
//!   several, an earlier batch's. If *newest*'s `unsynced_from` lies past the missing
//!   LSN `last + 1`, that LSN was durable, perhaps acknowledged, before *newest* was
//!   even submitted: its loss is corruption (row 5; Paxos Made Live §5.1: rebuild as a
//!   non-voting learner, never vote on a log that forgot a promise or an accept).
//!   Otherwise `last + 1` may belong to a write that was in flight when the crash came
//!   (the newest one found, or one submitted before it and still running): a torn
//!   write, nothing of which was acknowledged, since the durable watermark never passes
//!   a write that has not completed, nor any write after it (row 4). A torn batch `k`
//!   followed by a whole batch `k + 1` submitted while `k` was in flight is row 4:
//!   `k + 1` was never durable, so truncating at `p` and scrubbing `k + 1` drops nothing
//!   acknowledged.
//! - Row 6: a record whose checksum verifies was written whole; it is not a torn write
//!   (rows 2, 4) but corruption or the work of a writer that persisted what it should
//!   have refused (a forged Prepare at round `u64::MAX`, before rounds were bounded).
//!   Restoring it would poison the group (a promise no leader can exceed, round
//!   arithmetic that overflows); dropping it silently would forget a durable promise or
//!   accept while voting. So the log ends before it and the replica rebuilds as a
//!   non-voting learner, as in row 5. After that recovery appends resume at `⌈p⌉` with
//!   LSN `last + 1`, so the next scan finds the invalid record superseded: row 3, a gap.
//! - Row 7: rows 1, 2 and 4 drop the end of the newest write because a torn write cannot
//!   be told from damage to it. When the sector holding the record at `p` provably was
//!   written (row 7's definition), it can: the record was durable, perhaps acknowledged,
//!   and then damaged (a flipped bit in the last batch), so dropping it while voting
//!   could forget a promise or an accept. The replica rebuilds as a learner, as in row 5.
//!   This narrows the residual risk below to damage that no later record of the same
//!   sector witnesses.
//! - Scrub: records of the discarded write must not resurface later with LSNs the new
//!   appends reuse, so the caller zeroes `scrub` durably BEFORE appending anything.
//!
//! Residual risk (shared by every torn-tail rule): damage to the newest batch found, after
//! it became durable, while no later write survives and no later record of the damaged
//! record's sector verifies (row 7), looks exactly like a torn write and is truncated
//! (rows 1, 2, 4). With several writes in flight the same holds for damage to any batch
//! at or after *newest*'s `unsynced_from` (typically the last durable batch, damaged
//! while the next one was in flight): the price of pipelining, bounded by
//! `writes_in_flight_max` batches. The simulator's fault atlas flips bits only below
//! the `unsynced_from` of the newest durable batch of a replica that is then restarted.
//!
//! Bounds: the scan never panics on any input; it allocates at most the decoded records
//! (bounded by the slice length) and visits each position a bounded number of times.

use super::content::{check_bounds, Violation};
use super::group_commit::Resume;
use super::layout::{block_align_up, record_start, BLOCK_SIZE, SECTOR_SIZE};
use super::record::{self, Content, DecodeLimits, DecodedRecord, Kind, Stamp};
use crate::paxos::{Lsn, Record};
use std::ops::Range;

/// How to read one log slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanConfig {
    /// The log's salt (see `record`).
    pub salt: u32,
    /// LSN of the last record before this slice (0 for a log's first slice): the first
    /// record must have `lsn_prev + 1`.
    pub lsn_prev: Lsn,
    /// Decoder limits; must admit the writer's largest record.
    pub limits: DecodeLimits,
}

/// One recovered protocol record and where it lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredRecord {
    /// Offset of its first byte in the slice (for the catch-up index).
    pub offset: u64,
    /// Its LSN.
    pub lsn: Lsn,
    /// The fact.
    pub record: Record,
}

/// What the end of the recovered log means (see the decision table in the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Row 1: the log ends on a block boundary with nothing of it after.
    Clean {
        /// Offset just past the last batch.
        end: u64,
    },
    /// Rows 2 and 4: the last write was torn; everything from `truncate_at` on is dropped.
    TornTail {
        /// Offset of the first byte not part of the log.
        truncate_at: u64,
    },
    /// Row 5: records of a durable batch are missing. The records before `at` are kept;
    /// the replica must rebuild as a non-voting learner.
    Corrupt {
        /// Offset where the log stops continuing.
        at: u64,
        /// The LSN that is missing.
        lsn_expected: Lsn,
        /// LSN of the first valid record found after `at`.
        lsn_found: Lsn,
        /// Offset of that record.
        found_at: u64,
    },
    /// Row 7: the record that would continue the log does not verify, but the next one,
    /// in the same sector, does: it was damaged after it was written. The records before
    /// `at` are kept; the replica must rebuild as a non-voting learner.
    Damaged {
        /// Offset of the damaged record.
        at: u64,
        /// The LSN it held (`lsn_through + 1`).
        lsn: Lsn,
        /// Offset of the record after it, which verifies.
        next_at: u64,
    },
    /// Row 6: the record that would continue the log verifies but breaks
    /// `content::check_bounds`. The records before `at` are kept; the replica must
    /// rebuild as a non-voting learner.
    Invalid {
        /// Offset of the invalid record.
        at: u64,
        /// Its LSN (`lsn_through + 1`).
        lsn: Lsn,
        /// The bound it breaks.
        violation: Violation,
    },
}

impl Recovery {
    /// Durable records were lost (rows 5, 7) or are invalid (row 6): the caller must make
    /// learner status durable before acting on the scan, and the replica votes only
    /// after re-learning from its peers.
    #[must_use]
    pub fn is_corrupt(&self) -> bool {
        match self {
            Recovery::Corrupt { .. } | Recovery::Invalid { .. } | Recovery::Damaged { .. } => true,
            Recovery::Clean { .. } | Recovery::TornTail { .. } => false,
        }
    }
}

/// The result of scanning one log slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    /// The recovered protocol records, in log (LSN) order, Pads left out.
    pub records: Vec<RecoveredRecord>,
    /// What the end means.
    pub recovery: Recovery,
    /// LSN of the last recovered record (`lsn_prev` if none).
    pub lsn_through: Lsn,
    /// Where appends resume (`GroupCommit::new`): the block at or after the end.
    pub resume: Resume,
    /// Bytes the caller must zero, and make durable, BEFORE the first append (empty when
    /// nothing is to be scrubbed). Block-aligned; starts at `resume.offset`.
    pub scrub: Range<u64>,
    /// Damaged ranges skipped because no record was lost there (row 3), in order.
    pub gaps: Vec<Range<u64>>,
}

/// A valid record found at `offset`.
#[derive(Clone, Copy, Debug)]
struct Found {
    offset: usize,
    stamp: Stamp,
    is_pad: bool,
}

impl Found {
    /// Real records take `last + 1`; a Pad repeats its batch's last LSN.
    fn continues(&self, last: Lsn) -> bool {
        if self.is_pad {
            self.stamp.lsn == last
        } else {
            self.stamp.lsn.0 == last.0 + 1
        }
    }
    /// Could be part of the log's future.
    fn ahead(&self, last: Lsn) -> bool {
        if self.is_pad {
            self.stamp.lsn >= last
        } else {
            self.stamp.lsn > last
        }
    }
    /// LSNs between `last` and this record are missing.
    fn loses(&self, last: Lsn) -> bool {
        if self.is_pad {
            self.stamp.lsn > last
        } else {
            self.stamp.lsn.0 > last.0 + 1
        }
    }
}

/// What the survey after a break found.
#[derive(Clone, Copy, Debug)]
struct Survey {
    first: Found,
    newest: Found,
    /// End of the last byte of any record found.
    data_end: usize,
}

/// The valid record at `at`, if any: it decodes, a Pad ends on a block boundary, and a
/// protocol record keeps `content::check_bounds`.
fn valid_at(image: &[u8], at: usize, config: &ScanConfig) -> Option<(DecodedRecord, usize, Found)> {
    let bytes = image.get(at..)?;
    let (decoded, size) = record::decode(bytes, config.salt, &config.limits).ok()?;
    let is_pad = match &decoded.content {
        Content::Pad => true,
        Content::Record(record) => {
            check_bounds(record).ok()?;
            false
        }
    };
    if is_pad && (at + size) % BLOCK_SIZE != 0 {
        return None;
    }
    let found = Found {
        offset: at,
        stamp: decoded.stamp,
        is_pad,
    };
    Some((decoded, size, found))
}

/// The invalid record at `at` (module docs, row 6), if any: it decodes and would
/// continue the log after `last`, but breaks `check_bounds`. Returns its LSN, the
/// violation and its end.
fn invalid_at(
    image: &[u8],
    at: usize,
    last: Lsn,
    config: &ScanConfig,
) -> Option<(Lsn, Violation, usize)> {
    let bytes = image.get(at..)?;
    let (decoded, size) = record::decode(bytes, config.salt, &config.limits).ok()?;
    let Content::Record(record) = decoded.content else {
        return None;
    };
    if decoded.stamp.lsn.0 != last.0 + 1 {
        return None;
    }
    let violation = check_bounds(&record).err()?;
    Some((decoded.stamp.lsn, violation, at + size))
}

/// Row 7: the offset of the record after the damaged one at `at`, when it proves the
/// damage: the header at `at` (read without its checksum) names LSN `last + 1` and a
/// size that ends where a valid record starts, in the same sector as `at`, continuing
/// the log as if the record at `at` had been valid.
fn witness_after(image: &[u8], at: usize, last: Lsn, config: &ScanConfig) -> Option<usize> {
    let head = record::peek(image.get(at..)?)?;
    if head.kind == Kind::Pad || head.lsn.0 != last.0 + 1 {
        return None;
    }
    let next = usize::try_from(record_start(at as u64 + u64::from(head.size))).ok()?;
    if next / SECTOR_SIZE != at / SECTOR_SIZE {
        return None;
    }
    let (_, _, found) = valid_at(image, next, config)?;
    let continues = if found.is_pad {
        found.stamp.lsn.0 == last.0 + 1
    } else {
        found.stamp.lsn.0 == last.0 + 2
    };
    continues.then_some(next)
}

fn align_up(at: usize) -> usize {
    at.div_ceil(BLOCK_SIZE) * BLOCK_SIZE
}

/// Valid records ahead of `last` at `from` and at every block boundary after it, with
/// the chains that follow them.
fn survey(image: &[u8], from: usize, last: Lsn, config: &ScanConfig) -> Option<Survey> {
    let mut survey: Option<Survey> = None;
    let mut probe = from;
    while probe < image.len() {
        let mut at = probe;
        let mut chain_end = probe;
        while at < image.len() {
            let Some((_, size, found)) = valid_at(image, at, config) else {
                break;
            };
            if !found.ahead(last) {
                break;
            }
            let end = at + size;
            survey = Some(match survey {
                None => Survey {
                    first: found,
                    newest: found,
                    data_end: end,
                },
                Some(s) => Survey {
                    first: s.first,
                    newest: if found.stamp.lsn >= s.newest.stamp.lsn {
                        found
                    } else {
                        s.newest
                    },
                    data_end: s.data_end.max(end),
                },
            });
            at = record_start(end as u64) as usize;
            chain_end = at;
        }
        // Boundaries inside a chain were read as part of it; go on after it.
        probe = align_up(chain_end.max(probe + 1));
    }
    survey
}

/// Scans `image` and decides how the log ends (module docs: decision table).
/// Never panics; see the module docs for its bounds.
#[must_use]
pub fn scan(image: &[u8], config: &ScanConfig) -> Scan {
    scan_from(image, 0, config)
}

/// `scan` from byte `start` of `image` on: the bytes below `start` are not looked at
/// (they may be zero, never read), and the first record must lie at `start` with LSN
/// `config.lsn_prev + 1`. Offsets stay relative to `image`, so block boundaries are
/// those of the whole slice. Used where a log head hint (`wal::log_head`) proves that
/// nothing recovery needs lies below `start`.
#[must_use]
pub fn scan_from(image: &[u8], start: usize, config: &ScanConfig) -> Scan {
    let mut records = Vec::new();
    let mut gaps = Vec::new();
    let mut last = config.lsn_prev;
    let mut pos = start.min(image.len());
    loop {
        pos = record_start(pos as u64) as usize;
        if let Some((decoded, size, found)) = valid_at(image, pos, config) {
            if found.continues(last) {
                if let Content::Record(record) = decoded.content {
                    records.push(RecoveredRecord {
                        offset: pos as u64,
                        lsn: decoded.stamp.lsn,
                        record,
                    });
                    last = decoded.stamp.lsn;
                }
                pos += size;
                continue;
            }
        }
        // The log does not continue at `pos`.
        let survey = survey(image, pos, last, config);
        let invalid = invalid_at(image, pos, last, config);
        let (recovery, data_end) = match (survey, invalid) {
            (Some(s), _) if !s.first.loses(last) => {
                // Row 3: nothing lost in the gap.
                assert!(
                    s.first.offset > pos,
                    "a record that continues the log was rejected"
                );
                gaps.push(pos as u64..s.first.offset as u64);
                pos = s.first.offset;
                continue;
            }
            (s, Some((lsn, violation, end))) => (
                // Row 6.
                Recovery::Invalid {
                    at: pos as u64,
                    lsn,
                    violation,
                },
                Some(s.map_or(end, |s| s.data_end.max(end))),
            ),
            // Row 5.
            (Some(s), None) if s.newest.stamp.unsynced_from.0 > last.0 + 1 => (
                Recovery::Corrupt {
                    at: pos as u64,
                    lsn_expected: Lsn(last.0 + 1),
                    lsn_found: s.first.stamp.lsn,
                    found_at: s.first.offset as u64,
                },
                Some(s.data_end),
            ),
            (s, None) => {
                match witness_after(image, pos, last, config) {
                    // Row 7.
                    Some(next_at) => (
                        Recovery::Damaged {
                            at: pos as u64,
                            lsn: Lsn(last.0 + 1),
                            next_at: next_at as u64,
                        },
                        s.map(|s| s.data_end),
                    ),
                    // Row 1.
                    None if s.is_none() && pos % BLOCK_SIZE == 0 => {
                        (Recovery::Clean { end: pos as u64 }, None)
                    }
                    // Rows 2 and 4.
                    None => (
                        Recovery::TornTail {
                            truncate_at: pos as u64,
                        },
                        s.map(|s| s.data_end),
                    ),
                }
            }
        };
        let resume = Resume {
            offset: block_align_up(pos as u64),
            lsn_through: last,
        };
        let scrub_end = data_end.map_or(resume.offset, |end| {
            block_align_up(end as u64).max(resume.offset)
        });
        let scan = Scan {
            records,
            recovery,
            lsn_through: last,
            resume,
            scrub: resume.offset..scrub_end,
            gaps,
        };
        scan.check();
        return scan;
    }
}

impl Scan {
    /// Postconditions of `scan`.
    fn check(&self) {
        let block = BLOCK_SIZE as u64;
        assert!(self.resume.offset % block == 0 && self.scrub.end % block == 0);
        assert!(self.scrub.start == self.resume.offset && self.scrub.start <= self.scrub.end);
        assert_eq!(self.resume.lsn_through, self.lsn_through);
        for pair in self.records.windows(2) {
            assert_eq!(
                pair[0].lsn.0 + 1,
                pair[1].lsn.0,
                "recovered LSNs not contiguous"
            );
            assert!(pair[0].offset < pair[1].offset);
        }
        if let Some(last) = self.records.last() {
            assert_eq!(last.lsn, self.lsn_through);
            assert!(last.offset < self.resume.offset);
        }
    }
}

/// Logs of promises for the tests of recovery, of one image and of segments.
#[cfg(test)]
pub(crate) mod fixture {
    use crate::paxos::{Ballot, GroupId, Lsn, NodeId, Record};
    use crate::wal::{GroupCommit, WritePlan};

    /// A promise of group 1 at `round` by node 1.
    pub fn promise(round: u64) -> Record {
        Record::Promise {
            group: GroupId(1),
            ballot: Ballot {
                round,
                node: NodeId(1),
            },
        }
    }

    /// Appends `batches` batches of `per_batch` promises (rounds 1, 2, ...) to
    /// `commit`; each batch's write plan goes to `write` with the LSN durable BEFORE
    /// it, then the batch is made durable and `commit`'s invariants are checked.
    pub fn write_promises(
        commit: &mut GroupCommit,
        batches: usize,
        per_batch: usize,
        mut write: impl FnMut(&WritePlan, Lsn),
    ) {
        let mut round = 0;
        for _ in 0..batches {
            for _ in 0..per_batch {
                round += 1;
                commit.append(&promise(round)).expect("fits");
            }
            let plan = commit.take_write().expect("a batch");
            write(&plan, commit.durable_through());
            commit.on_durable(plan.lsn_through);
            commit.invariants();
        }
    }
}

#[cfg(test)]
mod pipeline_tests;

#[cfg(test)]
mod tests {
    use super::fixture::write_promises;
    use super::*;
    use crate::wal::{GroupCommit, GroupCommitConfig};

    const SALT: u32 = 0xfeed;

    fn config() -> ScanConfig {
        ScanConfig {
            salt: SALT,
            lsn_prev: Lsn(0),
            limits: DecodeLimits::default(),
        }
    }

    /// A log of `batches` batches of `per_batch` promises, in a `blocks`-block image.
    fn log(batches: usize, per_batch: usize, blocks: usize) -> Vec<u8> {
        let mut commit = GroupCommit::new(
            GroupCommitConfig {
                buffer_size_max: 1 << 16,
                salt: SALT,
                writes_in_flight_max: 1,
            },
            Resume::EMPTY,
        );
        let mut image = vec![0; blocks * BLOCK_SIZE];
        write_promises(&mut commit, batches, per_batch, |plan, _| {
            let at = plan.offset as usize;
            image[at..at + plan.bytes.len()].copy_from_slice(&plan.bytes);
        });
        image
    }

    // Goal: a clean log recovers every record and resumes after its last batch.
    // Method: three batches in a larger zeroed image.
    #[test]
    fn clean_log() {
        let image = log(3, 5, 8);
        let scan = scan(&image, &config());
        assert_eq!(scan.recovery, Recovery::Clean { end: 3 * 4096 });
        assert_eq!(scan.records.len(), 15);
        assert_eq!(scan.lsn_through, Lsn(15));
        assert_eq!(scan.resume.offset, 3 * 4096);
        assert!(scan.scrub.is_empty() && scan.gaps.is_empty());
    }

    // Goal: a damaged Pad loses nothing (row 3); the same damage in the last batch is a
    // torn tail (row 2).
    // Method: flip a byte inside the first and the last batch's pad.
    #[test]
    fn damaged_pads() {
        let mut image = log(3, 2, 4);
        image[4000] ^= 1;
        let scan = scan(&image, &config());
        assert_eq!(scan.recovery, Recovery::Clean { end: 3 * 4096 });
        assert_eq!(scan.records.len(), 6);
        assert_eq!(scan.gaps, vec![96..4096]);
        image[2 * 4096 + 4000] ^= 1;
        let scan = super::scan(&image, &config());
        assert_eq!(
            scan.recovery,
            Recovery::TornTail {
                truncate_at: 2 * 4096 + 96
            }
        );
        assert_eq!(scan.records.len(), 6);
        assert_eq!(scan.resume.offset, 3 * 4096);
    }

    // Goal: a lost record in an earlier batch is corruption (row 5); in the newest batch a
    // torn tail (row 4).
    // Method: damage the first record of batch 1 of 3, then of batch 3 of 3 where a
    // later record of that batch sits at a block boundary.
    #[test]
    fn lost_records() {
        let mut image = log(3, 2, 4);
        image[10] ^= 1;
        let scan = scan(&image, &config());
        assert_eq!(
            scan.recovery,
            Recovery::Corrupt {
                at: 0,
                lsn_expected: Lsn(1),
                lsn_found: Lsn(3),
                found_at: 4096
            }
        );
        assert!(scan.records.is_empty());
        assert_eq!(scan.scrub, 0..3 * 4096);

        // 86 promises of 48 bytes fill 4128 bytes: the 86th starts at 4096.
        let mut image = log(1, 86, 4);
        image[48 * 84 + 10] ^= 1;
        let scan = super::scan(&image, &config());
        assert_eq!(
            scan.recovery,
            Recovery::TornTail {
                truncate_at: 48 * 84
            }
        );
        assert_eq!(scan.records.len(), 84);
        assert_eq!(scan.resume.offset, 4096);
        assert_eq!(scan.scrub, 4096..8192);
    }
}
