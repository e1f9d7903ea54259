//! WAL recovery: the decision table of `synod::wal::recovery`, enumerated exhaustively,
//! and seed-driven fuzzing of the scan over arbitrary bytes and mutated valid logs.
//!
//! The exhaustive test builds small logs with `GroupCommit` (every batch partition of 4
//! records, four record layouts), damages them in every combination (each record valid,
//! torn, zeroed, bit-flipped or invalid: rewritten whole, checksum included, with a round
//! above `Ballot::ROUND_MAX`; each Pad valid or flipped; the image cut at every record;
//! trailing zeros or garbage), and compares `scan` with an oracle that applies the table
//! to an abstract list of items (no bytes), so the two are written independently.

use std::ops::Range;

use bytes::Bytes;
use synod::paxos::{Ballot, Body, Entry, GroupId, Instance, Lsn, Membership, NodeId, Record};
use synod::prng::Prng;
use synod::wal::{
    decode, encode, record_start, replay, scan, Content, DecodeLimits, GroupCommit,
    GroupCommitConfig, Recovery, Resume, Scan, ScanConfig, Stamp, Violation, BLOCK_SIZE,
    SECTOR_SIZE,
};

const SALT: u32 = 0xa11c_e5a1;
const RECORDS: usize = 4;

// ---------------------------------------------------------------------------------------
// Allocation accounting: the peak bytes this thread holds while scanning.

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

/// Scans `image` and returns the result with the peak extra bytes allocated meanwhile.
fn scan_measured(image: &[u8], config: &ScanConfig) -> (Scan, usize) {
    counting_alloc::measured(|| scan(image, config))
}

fn scan_config() -> ScanConfig {
    ScanConfig {
        salt: SALT,
        lsn_prev: Lsn(0),
        limits: DecodeLimits::default(),
    }
}

/// Checks what every scan must satisfy, whatever the input.
fn check_scan(image: &[u8], result: &Scan, context: &str) {
    let block = BLOCK_SIZE as u64;
    assert_eq!(result.resume.offset % block, 0, "{context}");
    assert_eq!(result.scrub.start, result.resume.offset, "{context}");
    assert!(
        result.scrub.start <= result.scrub.end && result.scrub.end % block == 0,
        "{context}"
    );
    assert_eq!(result.resume.lsn_through, result.lsn_through, "{context}");
    let mut expected = 1;
    let mut previous_end = 0;
    for recovered in &result.records {
        assert_eq!(
            recovered.lsn,
            Lsn(expected),
            "{context}: LSNs contiguous from 1"
        );
        assert!(
            recovered.offset >= previous_end,
            "{context}: records in order"
        );
        assert!((recovered.offset as usize) < image.len(), "{context}");
        previous_end = recovered.offset + 48;
        expected += 1;
    }
    assert_eq!(result.lsn_through, Lsn(expected - 1), "{context}");
    let end = match result.recovery {
        Recovery::Clean { end } => {
            assert_eq!(end % block, 0, "{context}");
            end
        }
        Recovery::TornTail { truncate_at } => truncate_at,
        Recovery::Corrupt {
            at,
            lsn_expected,
            lsn_found,
            found_at,
        } => {
            assert_eq!(lsn_expected.0, result.lsn_through.0 + 1, "{context}");
            assert!(lsn_found > lsn_expected && found_at >= at, "{context}");
            at
        }
        Recovery::Invalid { at, lsn, .. } => {
            assert_eq!(lsn.0, result.lsn_through.0 + 1, "{context}");
            at
        }
        Recovery::Damaged { at, lsn, next_at } => {
            assert_eq!(lsn.0, result.lsn_through.0 + 1, "{context}");
            assert!(
                next_at > at && next_at / SECTOR_SIZE as u64 == at / SECTOR_SIZE as u64,
                "{context}"
            );
            at
        }
    };
    assert!(
        previous_end <= end,
        "{context}: records end before the log does"
    );
    assert!(result.resume.offset >= end, "{context}");
    let _ = replay(&result.records);
}

// ---------------------------------------------------------------------------------------
// Exhaustive decision table.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Valid,
    /// The second half of the record is lost (a sector that did not make it).
    Torn,
    /// The whole record is zeros (never written, or a zeroed sector).
    Zeroed,
    /// One bit flipped in the middle of the record.
    Flipped,
    /// Rewritten whole (it verifies) with a ballot round above `Ballot::ROUND_MAX`.
    Invalid,
}

const STATES: [State; 5] = [
    State::Valid,
    State::Torn,
    State::Zeroed,
    State::Flipped,
    State::Invalid,
];

/// The ballot of the records `accept` builds; `POISON` is the one of an invalid record.
const ROUND: u64 = 1;
const POISON: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// 112-byte records, several per block; every batch ends with a Pad.
    Small,
    /// 3000-byte records straddling block boundaries; batches end with a Pad.
    Straddle,
    /// 4096-byte records: every record starts a block; no Pads.
    Exact,
    /// 4056-byte records: 40 bytes left per block are skipped; no Pads.
    Skip,
}

const LAYOUTS: [Layout; 4] = [Layout::Small, Layout::Straddle, Layout::Exact, Layout::Skip];

impl Layout {
    fn value_size(self) -> usize {
        // An Accept with one value takes 72 bytes of framing.
        match self {
            Layout::Small => 40,
            Layout::Straddle => 2928,
            Layout::Exact => 4024,
            Layout::Skip => 3984,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tail {
    Zeros,
    Garbage,
    /// The image ends at `offset` (records after it are missing).
    Cut(usize),
}

/// One record or Pad of the pristine log, in position order.
#[derive(Clone, Debug)]
struct Item {
    offset: usize,
    size: usize,
    lsn: u64,
    unsynced_from: u64,
    /// Index of the record (None for a Pad).
    record: Option<usize>,
}

impl Item {
    fn end(&self) -> usize {
        self.offset + self.size
    }
}

fn accept(instance: u64, value_size: usize) -> Record {
    accept_at(instance, value_size, ROUND)
}

fn accept_at(instance: u64, value_size: usize, round: u64) -> Record {
    let ballot = Ballot {
        round,
        node: NodeId(1),
    };
    Record::Accept {
        group: GroupId(1),
        instance: Instance(instance),
        ballot,
        entry: Entry {
            origin: ballot,
            body: Body::Values(smallvec::smallvec![Bytes::from(vec![0x5a; value_size])]),
        },
    }
}

/// The pristine log for `partition` (records per batch) and its items.
fn build(layout: Layout, partition: &[usize]) -> (Vec<u8>, Vec<Item>) {
    let mut commit = GroupCommit::new(
        GroupCommitConfig {
            buffer_size_max: 1 << 16,
            salt: SALT,
            writes_in_flight_max: 1,
        },
        Resume::EMPTY,
    );
    let mut log = Vec::new();
    let mut instance = 0;
    for batch in partition {
        for _ in 0..*batch {
            instance += 1;
            commit
                .append(&accept(instance, layout.value_size()))
                .expect("fits");
        }
        let plan = commit.take_write().expect("a batch");
        assert_eq!(plan.offset as usize, log.len());
        log.extend_from_slice(&plan.bytes);
        commit.on_durable(plan.lsn_through);
        commit.invariants();
    }
    let mut items = Vec::new();
    let mut at = 0;
    let mut records = 0;
    while at < log.len() {
        let (decoded, size) = decode(&log[at..], SALT, &DecodeLimits::default()).expect("valid");
        let is_pad = decoded.content == Content::Pad;
        items.push(Item {
            offset: at,
            size,
            lsn: decoded.stamp.lsn.0,
            unsynced_from: decoded.stamp.unsynced_from.0,
            record: (!is_pad).then_some(records),
        });
        records += usize::from(!is_pad);
        at = record_start((at + size) as u64) as usize;
    }
    assert_eq!(records, RECORDS);
    (log, items)
}

/// Every way to split `RECORDS` records into consecutive non-empty batches.
fn partitions() -> Vec<Vec<usize>> {
    (0..1u32 << (RECORDS - 1))
        .map(|cuts| {
            let mut batches = vec![1];
            for i in 0..RECORDS - 1 {
                if cuts & (1 << i) != 0 {
                    batches.push(1);
                } else if let Some(last) = batches.last_mut() {
                    *last += 1;
                }
            }
            batches
        })
        .collect()
}

struct Case<'a> {
    layout: Layout,
    items: &'a [Item],
    states: [State; RECORDS],
    /// Per Pad (in order): flipped?
    pads_flipped: Vec<bool>,
    tail: Tail,
}

impl Case<'_> {
    fn image(&self, log: &[u8]) -> Vec<u8> {
        let mut image = log.to_vec();
        image.resize(log.len() + 2 * BLOCK_SIZE, 0);
        let mut pad_index = 0;
        for item in self.items {
            match item.record {
                Some(index) => match self.states[index] {
                    State::Valid => {}
                    State::Torn => image[item.offset + item.size / 2..item.end()].fill(0),
                    State::Zeroed => image[item.offset..item.end()].fill(0),
                    State::Flipped => image[item.offset + item.size / 2] ^= 0x08,
                    State::Invalid => {
                        let record = accept_at(index as u64 + 1, self.layout.value_size(), POISON);
                        let stamp = Stamp {
                            lsn: Lsn(item.lsn),
                            unsynced_from: Lsn(item.unsynced_from),
                        };
                        let mut bytes = Vec::new();
                        encode(&record, stamp, SALT, &mut bytes);
                        assert_eq!(bytes.len(), item.size);
                        image[item.offset..item.end()].copy_from_slice(&bytes);
                    }
                },
                None => {
                    if self.pads_flipped[pad_index] {
                        image[item.offset + item.size / 2] ^= 0x08;
                    }
                    pad_index += 1;
                }
            }
        }
        match self.tail {
            Tail::Zeros => {}
            Tail::Garbage => Prng::new(7).fill(&mut image[log.len()..log.len() + BLOCK_SIZE]),
            Tail::Cut(at) => image.truncate(at),
        }
        image
    }

    fn item_valid(&self, index: usize, image_len: usize) -> bool {
        let item = &self.items[index];
        if item.end() > image_len {
            return false;
        }
        match item.record {
            Some(record) => self.states[record] == State::Valid,
            None => {
                let pad = self.items[..index]
                    .iter()
                    .filter(|i| i.record.is_none())
                    .count();
                !self.pads_flipped[pad]
            }
        }
    }
}

/// What the decision table says, computed on items, not bytes.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    lsns: Vec<u64>,
    recovery: Recovery,
    resume: u64,
    scrub: Range<u64>,
    gaps: Vec<Range<u64>>,
    /// Table rows that fired (1..=7).
    rows: Vec<u8>,
}

fn align(at: usize) -> u64 {
    (at.div_ceil(BLOCK_SIZE) * BLOCK_SIZE) as u64
}

#[expect(
    clippy::too_many_lines,
    reason = "the decision table restated as one loop, row by row, independently of the scan it checks"
)]
fn oracle(case: &Case<'_>, image_len: usize, log_len: usize) -> Expected {
    let items = case.items;
    let valid: Vec<bool> = (0..items.len())
        .map(|i| case.item_valid(i, image_len))
        .collect();
    // Findable by the survey: valid, and on a block boundary or right after a findable item.
    let mut findable = vec![false; items.len()];
    for i in 0..items.len() {
        findable[i] = valid[i] && (items[i].offset % BLOCK_SIZE == 0 || (i > 0 && findable[i - 1]));
    }
    let is_pad = |i: usize| items[i].record.is_none();
    let continues = |i: usize, last: u64| {
        if is_pad(i) {
            items[i].lsn == last
        } else {
            items[i].lsn == last + 1
        }
    };
    let loses = |i: usize, last: u64| {
        if is_pad(i) {
            items[i].lsn > last
        } else {
            items[i].lsn > last + 1
        }
    };
    let mut lsns = Vec::new();
    let mut gaps = Vec::new();
    let mut rows = Vec::new();
    let mut last = 0;
    let mut index = 0;
    loop {
        if index < items.len() && valid[index] && continues(index, last) {
            if !is_pad(index) {
                last = items[index].lsn;
                lsns.push(last);
            }
            index += 1;
            continue;
        }
        let p = if index < items.len() {
            items[index].offset
        } else {
            log_len
        };
        let survey: Vec<usize> = (index..items.len()).filter(|i| findable[*i]).collect();
        // Row 6: the record at `p` verifies, would continue, and is out of bounds.
        let invalid = index < items.len()
            && items[index].end() <= image_len
            && items[index]
                .record
                .is_some_and(|r| case.states[r] == State::Invalid)
            && continues(index, last);
        let superseded = survey.first().is_some_and(|first| !loses(*first, last));
        // Row 7: the record at `p` kept its header (flipped in the middle, or torn in its
        // second half) and the next one, valid, starts in its sector and continues as if
        // `p` had.
        let header_kept = index < items.len()
            && items[index]
                .record
                .is_some_and(|r| matches!(case.states[r], State::Flipped | State::Torn))
            && items[index].offset + 48 <= image_len
            && items[index].lsn == last + 1;
        let j = index + 1;
        let witness = (header_kept
            && j < items.len()
            && valid[j]
            && items[j].offset / SECTOR_SIZE == p / SECTOR_SIZE
            && if is_pad(j) {
                items[j].lsn == last + 1
            } else {
                items[j].lsn == last + 2
            })
        .then_some(j);
        let damaged = |scrub_end: usize, rows: &mut Vec<u8>| {
            witness.map(|j| {
                rows.push(7);
                (
                    Recovery::Damaged {
                        at: p as u64,
                        lsn: Lsn(last + 1),
                        next_at: items[j].offset as u64,
                    },
                    align(p)..align(scrub_end).max(align(p)),
                )
            })
        };
        if invalid && !superseded {
            let data_end = survey
                .iter()
                .map(|i| items[*i].end())
                .chain([items[index].end()])
                .max()
                .unwrap_or(p);
            rows.push(6);
            return Expected {
                lsns,
                recovery: Recovery::Invalid {
                    at: p as u64,
                    lsn: Lsn(last + 1),
                    violation: Violation::RoundTooLarge {
                        field: "ballot",
                        round: POISON,
                    },
                },
                resume: align(p),
                scrub: align(p)..align(data_end).max(align(p)),
                gaps,
                rows,
            };
        }
        let Some(&first) = survey.first() else {
            if let Some((recovery, scrub)) = damaged(p, &mut rows) {
                return Expected {
                    lsns,
                    recovery,
                    resume: align(p),
                    scrub,
                    gaps,
                    rows,
                };
            }
            let (recovery, row) = if p % BLOCK_SIZE == 0 {
                (Recovery::Clean { end: p as u64 }, 1)
            } else {
                (
                    Recovery::TornTail {
                        truncate_at: p as u64,
                    },
                    2,
                )
            };
            rows.push(row);
            return Expected {
                lsns,
                recovery,
                resume: align(p),
                scrub: align(p)..align(p),
                gaps,
                rows,
            };
        };
        if !loses(first, last) {
            rows.push(3);
            gaps.push(p as u64..items[first].offset as u64);
            index = first;
            continue;
        }
        let newest = survey
            .iter()
            .copied()
            .max_by_key(|i| (items[*i].lsn, *i))
            .expect("survey is not empty");
        let data_end = survey.iter().map(|i| items[*i].end()).max().unwrap_or(0);
        if items[newest].unsynced_from <= last + 1 {
            if let Some((recovery, scrub)) = damaged(data_end, &mut rows) {
                return Expected {
                    lsns,
                    recovery,
                    resume: align(p),
                    scrub,
                    gaps,
                    rows,
                };
            }
        }
        let (recovery, row) = if items[newest].unsynced_from <= last + 1 {
            (
                Recovery::TornTail {
                    truncate_at: p as u64,
                },
                4,
            )
        } else {
            (
                Recovery::Corrupt {
                    at: p as u64,
                    lsn_expected: Lsn(last + 1),
                    lsn_found: Lsn(items[first].lsn),
                    found_at: items[first].offset as u64,
                },
                5,
            )
        };
        rows.push(row);
        return Expected {
            lsns,
            recovery,
            resume: align(p),
            scrub: align(p)..align(data_end).max(align(p)),
            gaps,
            rows,
        };
    }
}

// Goal: every input pattern of the decision table yields the decision the table states,
// with the right records, resume point, scrub range and gaps, and never a panic.
// Method: enumerate layouts x batch partitions x record states x pad states x tails and
// compare `scan` with the item-level oracle; count the rows that fired.
#[test]
fn decision_table_exhaustive() {
    let config = scan_config();
    let mut row_counts = [0usize; 8];
    let mut cases = 0;
    for layout in LAYOUTS {
        for partition in partitions() {
            let (log, items) = build(layout, &partition);
            let pads = items.iter().filter(|i| i.record.is_none()).count();
            let mut tails = vec![Tail::Zeros, Tail::Garbage];
            for item in items.iter().filter(|i| i.record.is_some()) {
                tails.push(Tail::Cut(item.offset));
                tails.push(Tail::Cut(item.offset + item.size / 2));
            }
            for pattern in 0..STATES.len().pow(RECORDS as u32) {
                let mut states = [State::Valid; RECORDS];
                let mut rest = pattern;
                for state in &mut states {
                    *state = STATES[rest % STATES.len()];
                    rest /= STATES.len();
                }
                for pad_pattern in 0..1usize << pads {
                    for tail in &tails {
                        // Cuts only with intact pads: enough to cover "missing" records.
                        if matches!(tail, Tail::Cut(_)) && pad_pattern != 0 {
                            continue;
                        }
                        let case = Case {
                            layout,
                            items: &items,
                            states,
                            pads_flipped: (0..pads).map(|b| pad_pattern & (1 << b) != 0).collect(),
                            tail: *tail,
                        };
                        let image = case.image(&log);
                        let context = format!(
                            "{:?} batches {partition:?} states {:?} pads {:?} tail {:?}",
                            case.layout, case.states, case.pads_flipped, case.tail
                        );
                        let result = scan(&image, &config);
                        check_scan(&image, &result, &context);
                        let expected = oracle(&case, image.len(), log.len());
                        let actual = Expected {
                            lsns: result.records.iter().map(|r| r.lsn.0).collect(),
                            recovery: result.recovery.clone(),
                            resume: result.resume.offset,
                            scrub: result.scrub.clone(),
                            gaps: result.gaps.clone(),
                            rows: expected.rows.clone(),
                        };
                        assert_eq!(actual, expected, "{context}");
                        for row in &expected.rows {
                            row_counts[*row as usize] += 1;
                        }
                        cases += 1;
                    }
                }
            }
        }
    }
    eprintln!("{cases} cases; rows fired: {:?}", &row_counts[1..]);
    for (row, count) in row_counts.iter().enumerate().skip(1) {
        assert!(*count > 0, "row {row} of the table was never exercised");
    }
}

// Goal: a valid record of this log with an older LSN after the end (stale data, e.g. a
// block copied by a faulty device) is ignored, and one from another log never verifies.
// Method: copy the first batch's block behind the end; scan under the log's salt.
#[test]
fn stale_and_foreign_records_after_the_end() {
    let (log, _) = build(Layout::Small, &[2, 2]);
    let mut image = log.clone();
    image.extend_from_slice(&log[..BLOCK_SIZE]);
    image.resize(image.len() + BLOCK_SIZE, 0);
    let result = scan(&image, &scan_config());
    assert_eq!(
        result.recovery,
        Recovery::Clean {
            end: log.len() as u64
        }
    );
    assert_eq!(result.lsn_through, Lsn(4));

    let other = ScanConfig {
        salt: SALT ^ 0x8000_0000,
        ..scan_config()
    };
    let result = scan(&image, &other);
    assert_eq!(result.recovery, Recovery::Clean { end: 0 });
    assert!(result.records.is_empty());
}

// Goal: a torn tail truncated by one recovery, then appended after, recovers cleanly: the
// remnant of the torn record is a gap that loses no LSN (row 3).
// Method: the last record of the last batch crosses a sector boundary; the sector holding
// its end is lost (a torn write keeps or loses whole sectors); recover, resume with
// GroupCommit, append, scan.
#[test]
fn resume_after_torn_tail() {
    let mut commit = GroupCommit::new(
        GroupCommitConfig {
            buffer_size_max: 1 << 16,
            salt: SALT,
            writes_in_flight_max: 1,
        },
        Resume::EMPTY,
    );
    let mut image = vec![0; 8 * BLOCK_SIZE];
    for batch in [vec![accept(1, 40)], vec![accept(2, 40), accept(3, 500)]] {
        for record in &batch {
            commit.append(record).expect("fits");
        }
        let plan = commit.take_write().expect("a batch");
        let at = plan.offset as usize;
        image[at..at + plan.bytes.len()].copy_from_slice(&plan.bytes);
        commit.on_durable(plan.lsn_through);
    }
    // Record 3 lies at [4096 + 112, 4096 + 684): its end is in the sector [4608, 5120).
    let torn = BLOCK_SIZE + 112;
    image[BLOCK_SIZE + SECTOR_SIZE..BLOCK_SIZE + 2 * SECTOR_SIZE].fill(0);
    let first = scan(&image, &scan_config());
    assert_eq!(
        first.recovery,
        Recovery::TornTail {
            truncate_at: torn as u64
        }
    );
    assert!(first.scrub.is_empty());
    let mut commit = GroupCommit::new(
        GroupCommitConfig {
            buffer_size_max: 1 << 16,
            salt: SALT,
            writes_in_flight_max: 1,
        },
        first.resume,
    );
    assert_eq!(commit.append(&accept(3, 10)), Ok(Lsn(3)));
    let plan = commit.take_write().expect("a batch");
    let at = plan.offset as usize;
    image[at..at + plan.bytes.len()].copy_from_slice(&plan.bytes);
    let second = scan(&image, &scan_config());
    assert_eq!(second.lsn_through, Lsn(3));
    assert_eq!(second.gaps, vec![torn as u64..plan.offset]);
    assert_eq!(
        second.recovery,
        Recovery::Clean {
            end: plan.offset + BLOCK_SIZE as u64
        }
    );
}

// Goal: a record damaged after it was written is told from a torn write when a record
// after it in the same sector verifies (row 7): the replica becomes a learner, where the
// same damage without such a witness is still cut as a torn tail.
// Method: the last batch [112-byte accept, 572-byte accept, Pad]; flip a byte of the
// first record (its successor starts in its sector), then of the second (its successor,
// the Pad, starts in another sector).
#[test]
fn damage_witnessed_by_the_same_sector() {
    let mut commit = GroupCommit::new(
        GroupCommitConfig {
            buffer_size_max: 1 << 16,
            salt: SALT,
            writes_in_flight_max: 1,
        },
        Resume::EMPTY,
    );
    let mut image = vec![0; 4 * BLOCK_SIZE];
    for batch in [vec![accept(1, 40)], vec![accept(2, 40), accept(3, 500)]] {
        for record in &batch {
            commit.append(record).expect("fits");
        }
        let plan = commit.take_write().expect("a batch");
        let at = plan.offset as usize;
        image[at..at + plan.bytes.len()].copy_from_slice(&plan.bytes);
        commit.on_durable(plan.lsn_through);
    }
    let mut damaged = image.clone();
    damaged[BLOCK_SIZE + 60] ^= 0x04;
    let result = scan(&damaged, &scan_config());
    assert_eq!(
        result.recovery,
        Recovery::Damaged {
            at: BLOCK_SIZE as u64,
            lsn: Lsn(2),
            next_at: BLOCK_SIZE as u64 + 112
        }
    );
    assert!(result.recovery.is_corrupt());
    assert_eq!(result.lsn_through, Lsn(1));

    let mut damaged = image.clone();
    damaged[BLOCK_SIZE + 112 + 60] ^= 0x04;
    let result = scan(&damaged, &scan_config());
    assert_eq!(
        result.recovery,
        Recovery::TornTail {
            truncate_at: BLOCK_SIZE as u64 + 112
        }
    );
    assert_eq!(result.lsn_through, Lsn(2));
}

// Goal: a remnant of an earlier write lying after the end of the log, in the sector
// where the log ends, never poses as the witness of row 7, even with the LSN a witness
// would carry: without a header naming LSN `last + 1` at the end, the end is clean.
// Method: a one-batch log; after it, bytes that are no header, then a valid record of
// LSN `last + 2` in the same sector; then the same with a header at the end.
#[test]
fn remnant_is_no_witness() {
    let (log, _) = build(Layout::Small, &[2, 2]);
    let end = BLOCK_SIZE;
    let mut image = log[..end].to_vec();
    image.resize(4 * BLOCK_SIZE, 0);
    image[end..end + 104].fill(0xab);
    let mut remnant = Vec::new();
    let stamp = Stamp {
        lsn: Lsn(4),
        unsynced_from: Lsn(3),
    };
    encode(&accept(4, 10), stamp, SALT, &mut remnant);
    image[end + 104..end + 104 + remnant.len()].copy_from_slice(&remnant);
    let result = scan(&image, &scan_config());
    assert_eq!(result.recovery, Recovery::Clean { end: end as u64 });
    assert_eq!(result.lsn_through, Lsn(2));

    // A header naming LSN 3 and ending where the LSN 4 record starts: row 7.
    let mut header = Vec::new();
    let stamp = Stamp {
        lsn: Lsn(3),
        unsynced_from: Lsn(3),
    };
    encode(&accept(3, 32), stamp, SALT, &mut header);
    assert_eq!(header.len(), 104);
    header[60] ^= 1;
    image[end..end + 104].copy_from_slice(&header);
    let result = scan(&image, &scan_config());
    assert_eq!(
        result.recovery,
        Recovery::Damaged {
            at: end as u64,
            lsn: Lsn(3),
            next_at: (end + 104) as u64
        }
    );
}

// ---------------------------------------------------------------------------------------
// Fuzzing.

fn random_record(prng: &mut Prng, instance: u64) -> Record {
    let group = GroupId(prng.below(4) as u32);
    let ballot = Ballot {
        round: prng.range(1, 9),
        node: NodeId(prng.below(5) as u32),
    };
    let body = match prng.below(4) {
        0 => {
            let count = prng.index(4);
            Body::Values(
                (0..count)
                    .map(|_| {
                        let mut value = vec![0; prng.index(700)];
                        prng.fill(&mut value);
                        Bytes::from(value)
                    })
                    .collect(),
            )
        }
        1 => Body::Noop,
        2 => Body::StartWorking,
        _ => Body::Config(Membership::new(
            (0..prng.range(1, 5)).map(|n| NodeId(n as u32)).collect(),
        )),
    };
    let entry = Entry {
        origin: ballot,
        body,
    };
    match prng.below(4) {
        0 => Record::Promise { group, ballot },
        1 => Record::Chosen {
            group,
            through: Instance(instance),
        },
        2 => Record::Learn {
            group,
            instance: Instance(instance),
            entry,
        },
        _ => Record::Accept {
            group,
            instance: Instance(instance),
            ballot,
            entry,
        },
    }
}

/// A random valid log in an image of `blocks` blocks, and its records by LSN - 1.
fn random_log(prng: &mut Prng, blocks: usize) -> (Vec<u8>, Vec<Record>) {
    let mut commit = GroupCommit::new(
        GroupCommitConfig {
            buffer_size_max: 4 * BLOCK_SIZE,
            salt: SALT,
            writes_in_flight_max: 1,
        },
        Resume::EMPTY,
    );
    let mut image = vec![0; blocks * BLOCK_SIZE];
    let mut records = Vec::new();
    loop {
        for _ in 0..prng.range(1, 12) {
            let record = random_record(prng, records.len() as u64 + 1);
            if commit.append(&record).is_err() {
                break;
            }
            records.push(record);
        }
        let Some(plan) = commit.take_write() else {
            return (image, records);
        };
        let at = plan.offset as usize;
        if at + plan.bytes.len() > image.len() {
            records.truncate(commit.durable_through().0 as usize);
            return (image, records);
        }
        image[at..at + plan.bytes.len()].copy_from_slice(&plan.bytes);
        commit.on_durable(plan.lsn_through);
    }
}

/// Applies one random fault; returns true when it planted a record that verifies.
fn mutate(prng: &mut Prng, image: &mut Vec<u8>) -> bool {
    if image.is_empty() {
        return false;
    }
    let len = image.len();
    match prng.below(7) {
        0 => {
            let at = prng.index(len);
            image[at] ^= 1 << prng.below(8);
        }
        1 => {
            let start = prng.index(len) / SECTOR_SIZE * SECTOR_SIZE;
            let end = (start + SECTOR_SIZE).min(len);
            image[start..end].fill(0);
        }
        2 => {
            let start = prng.index(len);
            let end = (start + prng.index(200)).min(len);
            prng.fill(&mut image[start..end]);
        }
        3 => image.truncate(prng.index(len)),
        4 => {
            // A device that wrote a block at the wrong place.
            let blocks = len / BLOCK_SIZE;
            if blocks >= 2 {
                let from = prng.index(blocks) * BLOCK_SIZE;
                let to = prng.index(blocks) * BLOCK_SIZE;
                let copy = image[from..from + BLOCK_SIZE].to_vec();
                image[to..to + BLOCK_SIZE].copy_from_slice(&copy);
            }
        }
        5 => {
            // A record with this log's salt and an arbitrary LSN, on a block boundary.
            let blocks = len / BLOCK_SIZE;
            if blocks >= 1 {
                let lsn = prng.range(1, 200);
                let stamp = Stamp {
                    lsn: Lsn(lsn),
                    unsynced_from: Lsn(prng.range(1, lsn)),
                };
                let mut bytes = Vec::new();
                let record = match random_record(prng, lsn) {
                    // Some planted promises are out of bounds (row 6 when they continue).
                    Record::Promise { group, ballot } if prng.below(2) == 0 => Record::Promise {
                        group,
                        ballot: Ballot {
                            round: u64::MAX - prng.below(4),
                            ..ballot
                        },
                    },
                    record => record,
                };
                encode(&record, stamp, SALT, &mut bytes);
                let at = prng.index(blocks) * BLOCK_SIZE;
                let end = (at + bytes.len()).min(len);
                image[at..end].copy_from_slice(&bytes[..end - at]);
                return true;
            }
        }
        _ => {
            // Zero a whole block (a lost write).
            let blocks = len / BLOCK_SIZE;
            if blocks >= 1 {
                let at = prng.index(blocks) * BLOCK_SIZE;
                image[at..at + BLOCK_SIZE].fill(0);
            }
        }
    }
    false
}

/// Allocation bound of a scan: decoded records are at most a small multiple of the input.
fn allocation_bound(image_len: usize) -> usize {
    64 * image_len + 64 * 1024
}

// Goal: the scan never panics and never allocates beyond a fixed multiple of its input,
// whatever the bytes.
// Method: scan random buffers (some seeded with valid records) under many seeds.
#[test]
fn fuzz_arbitrary_bytes() {
    let config = scan_config();
    for seed in 0..3000u64 {
        let mut prng = Prng::new(seed);
        let mut image = vec![0; prng.index(6 * BLOCK_SIZE)];
        if prng.coin() {
            prng.fill(&mut image);
        }
        // Plant a few valid records at random 8-byte positions.
        for _ in 0..prng.index(4) {
            let lsn = prng.range(1, 8);
            let mut bytes = Vec::new();
            encode(
                &random_record(&mut prng, lsn),
                Stamp {
                    lsn: Lsn(lsn),
                    unsynced_from: Lsn(1),
                },
                SALT,
                &mut bytes,
            );
            if image.len() > bytes.len() {
                let at = prng.index(image.len() - bytes.len()) / 8 * 8;
                image[at..at + bytes.len()].copy_from_slice(&bytes);
            }
        }
        let (result, peak) = scan_measured(&image, &config);
        let context = format!("seed {seed}");
        check_scan(&image, &result, &context);
        assert!(
            peak <= allocation_bound(image.len()),
            "{context}: {peak} bytes allocated for {} bytes",
            image.len()
        );
    }
}

// Goal: on mutated valid logs the scan never panics, stays within its allocation bound,
// and recovers only records the writer wrote, at their LSNs (a prefix of the log).
// Method: random logs of every record kind, 1-4 random faults each, under many seeds.
#[test]
fn fuzz_mutated_logs() {
    let config = scan_config();
    let mut decisions = [0usize; 3];
    for seed in 0..1500u64 {
        let mut prng = Prng::new(seed);
        let blocks = prng.range(1, 12) as usize;
        let (mut image, records) = random_log(&mut prng, blocks);
        let mut planted = false;
        for _ in 0..prng.range(1, 4) {
            planted |= mutate(&mut prng, &mut image);
        }
        let (result, peak) = scan_measured(&image, &config);
        let context = format!("seed {seed}");
        check_scan(&image, &result, &context);
        assert!(
            peak <= allocation_bound(image.len()),
            "{context}: {peak} bytes"
        );
        if !planted {
            for recovered in &result.records {
                let index = recovered.lsn.0 as usize - 1;
                assert_eq!(
                    Some(&recovered.record),
                    records.get(index),
                    "{context}: recovered a record the writer did not write at LSN {}",
                    recovered.lsn.0
                );
            }
        }
        decisions[match result.recovery {
            Recovery::Clean { .. } => 0,
            Recovery::TornTail { .. } => 1,
            Recovery::Corrupt { .. } | Recovery::Invalid { .. } | Recovery::Damaged { .. } => 2,
        }] += 1;
    }
    eprintln!("clean, torn, corrupt: {decisions:?}");
    assert!(decisions.iter().all(|n| *n > 0), "every decision reached");
}
