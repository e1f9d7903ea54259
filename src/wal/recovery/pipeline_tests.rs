//! The decision table with several writes in flight (`group_commit`: the contiguity
//! rule), exhaustively over what a crash or damage can leave of the last two batches.

use super::*;
use crate::paxos::{Ballot, Body, Entry, GroupId, Instance, NodeId};
use crate::wal::{GroupCommit, GroupCommitConfig, WritePlan};
use bytes::Bytes;

const SALT: u32 = 0x9195;
const SECTORS: usize = 2 * BLOCK_SIZE / SECTOR_SIZE;

/// What is left of one batch's sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Left {
    Whole,
    Missing,
    /// The first `n` sectors kept, the rest lost (a tear).
    Prefix(usize),
    /// Every sector but sector `n` kept.
    Hole(usize),
}

impl Left {
    fn all() -> Vec<Left> {
        let mut all = vec![Left::Whole, Left::Missing];
        all.extend((1..SECTORS).map(Left::Prefix));
        all.extend((0..SECTORS).map(Left::Hole));
        all
    }
    fn keeps(self, sector: usize) -> bool {
        match self {
            Left::Whole => true,
            Left::Missing => false,
            Left::Prefix(n) => sector < n,
            Left::Hole(n) => sector != n,
        }
    }
}

/// When batch `k + 1` was begun and submitted relative to batch `k`'s durability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Begun and submitted while `k` was in flight: neither is durable at the crash.
    InFlight,
    /// Begun and submitted after `k` was durable.
    After,
    /// Begun while `k` was in flight, submitted after `k` was durable: its stamp can
    /// only promise what the contiguity rule guaranteed when it was begun.
    BegunBefore,
}

fn accept(instance: u64, value_size: usize) -> Record {
    let ballot = Ballot {
        round: 1,
        node: NodeId(1),
    };
    Record::Accept {
        group: GroupId(1),
        instance: Instance(instance),
        ballot,
        entry: Entry {
            origin: ballot,
            body: Body::Values(smallvec::smallvec![Bytes::from(vec![
                instance as u8;
                value_size
            ])]),
        },
    }
}

/// The log: two small durable batches, then batches `k` and `k + 1` of two blocks each
/// (records of 700-odd bytes, across sector boundaries). Returns the plans of all four,
/// every record appended in order, and the number of records in each batch.
fn build(mode: Mode) -> (Vec<WritePlan>, Vec<Record>, [usize; 4]) {
    let mut commit = GroupCommit::new(
        GroupCommitConfig {
            buffer_size_max: 1 << 16,
            salt: SALT,
            writes_in_flight_max: 2,
        },
        Resume::EMPTY,
    );
    let mut records = Vec::new();
    let mut counts = [0; 4];
    let mut append = |commit: &mut GroupCommit, batch: usize, count: usize, size: usize| {
        for _ in 0..count {
            let record = accept(records.len() as u64 + 1, size);
            commit.append(&record).expect("fits");
            records.push(record);
            counts[batch] += 1;
        }
    };
    let mut plans = Vec::new();
    for batch in 0..2 {
        append(&mut commit, batch, 3, 100);
        let plan = commit.take_write().expect("a batch");
        commit.on_durable(plan.lsn_through);
        plans.push(plan);
    }
    append(&mut commit, 2, 10, 700 + 8);
    let k = commit.take_write().expect("batch k");
    match mode {
        Mode::InFlight => {
            append(&mut commit, 3, 10, 690);
            plans.push(k);
            plans.push(commit.take_write().expect("k + 1 beside k"));
        }
        Mode::After => {
            commit.on_durable(k.lsn_through);
            append(&mut commit, 3, 10, 690);
            plans.push(k);
            plans.push(commit.take_write().expect("k + 1"));
        }
        Mode::BegunBefore => {
            append(&mut commit, 3, 10, 690);
            commit.on_durable(k.lsn_through);
            plans.push(k);
            plans.push(commit.take_write().expect("k + 1"));
        }
    }
    commit.invariants();
    assert!(plans[2..].iter().all(|p| p.bytes.len() == 2 * BLOCK_SIZE));
    (plans, records, counts)
}

/// The image a crash (or damage) leaves: every plan written, then the sectors of `k`
/// and `k + 1` not kept by `left` back to zeros (the log is new: zeros before).
fn image_of(plans: &[WritePlan], left: [Left; 2]) -> Vec<u8> {
    let end = plans
        .last()
        .map_or(0, |p| p.offset as usize + p.bytes.len());
    let mut image = vec![0; end + 2 * BLOCK_SIZE];
    for plan in plans {
        let at = plan.offset as usize;
        image[at..at + plan.bytes.len()].copy_from_slice(&plan.bytes);
    }
    for (plan, left) in plans[2..].iter().zip(left) {
        for sector in 0..SECTORS {
            if !left.keeps(sector) {
                let at = plan.offset as usize + sector * SECTOR_SIZE;
                image[at..at + SECTOR_SIZE].fill(0);
            }
        }
    }
    image
}

/// Per record, in LSN order: do its bytes on `image` equal those written?
fn intact(plans: &[WritePlan], image: &[u8]) -> Vec<bool> {
    let mut out = Vec::new();
    for plan in plans {
        let mut at = 0u64;
        loop {
            at = record_start(at);
            let Some(head) = plan.bytes.get(at as usize..).and_then(record::peek) else {
                break;
            };
            let (start, end) = (at as usize, at as usize + head.size as usize);
            if head.kind != Kind::Pad {
                let on_image = &image[plan.offset as usize + start..plan.offset as usize + end];
                out.push(on_image == &plan.bytes[start..end]);
            }
            at = end as u64;
        }
    }
    out
}

fn config() -> ScanConfig {
    ScanConfig {
        salt: SALT,
        lsn_prev: Lsn(0),
        limits: DecodeLimits::default(),
    }
}

/// Checks one combination; returns the scan's row (1..=7) for the tallies.
fn check(mode: Mode, left: [Left; 2]) -> usize {
    let (plans, records, counts) = build(mode);
    let image = image_of(&plans, left);
    let scan = scan(&image, &config());
    let what = format!("{mode:?} {left:?}: {:?}", scan.recovery);
    let intact = intact(&plans, &image);
    let intact_run = intact.iter().take_while(|i| **i).count();
    // Recovered records are the log's, in order, from its start.
    for (at, recovered) in scan.records.iter().enumerate() {
        assert_eq!(recovered.lsn, Lsn(at as u64 + 1), "{what}");
        assert_eq!(recovered.record, records[at], "{what}");
    }
    let n = scan.records.len();
    let prefix = counts[0] + counts[1];
    let k_end = prefix + counts[2];
    // Durable under the contiguity rule at the crash: the prefix, and `k` unless both
    // were in flight. `k` damaged while durable is damage on the medium, not a tear.
    let k_durable = mode != Mode::InFlight;
    let k_damaged = k_durable && left[0] != Left::Whole;
    assert!(n >= prefix, "{what}: a durable batch before k lost");
    if !scan.recovery.is_corrupt() {
        assert_eq!(n, intact_run, "{what}: not exactly the intact run");
    }
    if !k_damaged {
        assert!(
            !scan.recovery.is_corrupt(),
            "{what}: torn writes read as damage"
        );
        if k_durable {
            assert!(n >= k_end, "{what}: durable batch k lost");
        }
    } else if scan.recovery.is_corrupt() {
        let first_damaged = intact[prefix..].iter().position(|i| !i).map(|i| i + prefix);
        assert_eq!(
            Some(n),
            first_damaged,
            "{what}: records before the damage lost"
        );
    } else {
        // Damage to `k` read as a torn write: only when no record after it proves `k`
        // durable. Under `After`, `k + 1`'s first record does, when it survives.
        assert!(
            !(mode == Mode::After && intact[k_end]),
            "{what}: damage to durable batch k not detected"
        );
    }
    // Torn `k` beside a whole `k + 1` submitted while `k` ran: row 4, `k + 1` scrubbed.
    if mode == Mode::InFlight && left == [Left::Missing, Left::Whole] {
        assert_eq!(
            scan.recovery,
            Recovery::TornTail {
                truncate_at: plans[2].offset
            },
            "{what}"
        );
        assert_eq!(
            scan.scrub,
            plans[2].offset..plans[3].offset + 2 * BLOCK_SIZE as u64
        );
    }
    resume_after(&scan, image, &what);
    row_of(&scan)
}

/// Scrub, append one batch at the resume point, scan again: the log continues cleanly
/// with nothing of the discarded writes coming back.
fn resume_after(scan: &Scan, mut image: Vec<u8>, what: &str) {
    image[scan.scrub.start as usize..scan.scrub.end as usize].fill(0);
    let mut commit = GroupCommit::new(
        GroupCommitConfig {
            buffer_size_max: 1 << 16,
            salt: SALT,
            writes_in_flight_max: 2,
        },
        scan.resume,
    );
    commit
        .append(&accept(scan.lsn_through.0 + 1, 100))
        .expect("fits");
    let plan = commit.take_write().expect("a batch");
    let end = plan.offset as usize + plan.bytes.len();
    image.resize(image.len().max(end + BLOCK_SIZE), 0);
    image[plan.offset as usize..end].copy_from_slice(&plan.bytes);
    let again = super::scan(&image, &config());
    assert!(
        !scan.recovery.is_corrupt() || again.records.len() as u64 == scan.lsn_through.0 + 1,
        "{what}: after resuming"
    );
    if !scan.recovery.is_corrupt() {
        assert_eq!(
            again.recovery,
            Recovery::Clean { end: end as u64 },
            "{what}: after resuming"
        );
    }
    assert_eq!(
        again.lsn_through, plan.lsn_through,
        "{what}: after resuming"
    );
}

fn row_of(scan: &Scan) -> usize {
    match scan.recovery {
        Recovery::Clean { .. } => 1,
        Recovery::TornTail { .. } if scan.scrub.is_empty() => 2,
        Recovery::TornTail { .. } => 4,
        Recovery::Corrupt { .. } => 5,
        Recovery::Invalid { .. } => 6,
        Recovery::Damaged { .. } => 7,
    }
}

// Goal: with two writes in flight, every combination of what is left of batch k and
// batch k + 1 (whole, torn after each sector, one sector lost, missing), with k + 1
// submitted while k ran, after k was durable, or begun before and submitted after,
// gives the right row and never loses a record durable under the contiguity rule.
// Method: build each log with the real group commit, zero the lost sectors, scan,
// compare with the ground truth of what was durable and what is intact; resume.
#[test]
fn two_writes_in_flight_exhaustive() {
    let mut rows = [[0usize; 8]; 3];
    for (m, mode) in [Mode::InFlight, Mode::After, Mode::BegunBefore]
        .into_iter()
        .enumerate()
    {
        for k in Left::all() {
            for next in Left::all() {
                rows[m][check(mode, [k, next])] += 1;
            }
        }
    }
    eprintln!("rows per mode (InFlight, After, BegunBefore): {rows:?}");
    // In flight: torn writes only, never corruption; rows 1, 2 and 4 all occur.
    assert!(rows[0][1] > 0 && rows[0][2] > 0 && rows[0][4] > 0);
    assert_eq!(rows[0][5] + rows[0][6] + rows[0][7], 0);
    // After: damage to k is detected (row 5) whenever k + 1 survives.
    assert!(rows[1][5] > 0);
    // Begun before: the stamp cannot prove k durable, the price of pipelining.
    assert_eq!(rows[2][5], 0);
}
