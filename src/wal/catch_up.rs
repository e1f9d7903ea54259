//! Catch-up reads below a group's in-memory log (`paxos::WalRead`), decided here and
//! executed by whoever holds the bytes: `plan` picks the indexed records to read,
//! `answer` turns the records read back into the read's answer. The node's store
//! (`file::store::CatchUpRead`) and the simulator's disk do the reading. A peer's read
//! is answered by raw records (`raw_runs`: grouped as they lie, one run per segment and
//! salt, slices of the read buffers, never decoded), which its receiver verifies
//! whole before using any (`verify_raw`); a log read is answered by entries
//! (`entries`: decoded, since it returns values).
//!
//! Invariants:
//! - a plan names consecutive instances from the read's `from`, none above its
//!   `through`, at most `count_max` of them, within `size_max` record bytes beyond the
//!   first (the first whatever its size, so a reader always progresses); it stops at
//!   the first instance the index lacks (a hole: the entries must be consecutive);
//! - a plan is `Truncated` only when the index released `from`, or `from` lies at or
//!   below the highest checkpoint the group installed from a peer (`Record::Installed`:
//!   its records there are votes of its own, not applied values). A checkpoint covers
//!   it: only a checkpoint transfer can serve it;
//! - `entries` returns the plan's entries in order, or says which record is not the
//!   Accept or Learn of the planned (group, instance): nothing is served from bytes
//!   that are not the indexed record.
//! - `raw_runs` never decodes: its runs hold the planned records in plan order, byte for
//!   byte, consecutive instances of one segment each, within the read's `size_max` as
//!   `CatchUpRaw` messages (the first record whatever its size);
//! - `verify_raw` yields entries only for a run whose every record verifies (size,
//!   checksum with the run's salt, decoding within the limits, the Accept or Learn of
//!   the run's group at each consecutive instance from its first through its last);
//!   any fault refuses the whole run.
//!
//! Why the indexed record holds the chosen value: the index keeps per instance the
//! latest Learn, else the latest Accept of the highest ballot (`index`), the record
//! `replay` rebuilds the group's slot from; a Learn is the chosen value, and any
//! Accept at or above the ballot that chose the instance carries the chosen value
//! (Paxos). A group reads only instances it applied, whose records are durable before
//! the read is asked (`runtime::shard` holds reads until then); instances it did not
//! apply itself, covered by a peer's checkpoint it installed, are answered
//! `Truncated`.

use super::index::{IndexEntry, LogIndex};
use super::record::{self, Content, DecodeLimits};
use crate::paxos::size::{MESSAGE_OVERHEAD_SIZE, PIECE_OVERHEAD_SIZE};
use crate::paxos::{Entry, GroupId, Instance, RawRun, Record, WalRead, WalReadOutcome, WalReader};
use bytes::Bytes;

/// What to read for one `WalRead`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadPlan {
    /// These indexed records, consecutive from the read's `from` (possibly none: the
    /// index holds nothing at `from`).
    Records(Vec<(Instance, IndexEntry)>),
    /// The index released `from`: its first instance is `first_available`.
    Truncated {
        /// The first instance the log still indexes for the group.
        first_available: Instance,
    },
}

/// The records of `index` that answer `read` (see the module invariants).
#[must_use]
pub fn plan(index: &LogIndex, read: &WalRead) -> ReadPlan {
    let Some(group) = index.group(read.group) else {
        return ReadPlan::Records(Vec::new());
    };
    let released = released_through(index, read.group);
    if read.from <= released {
        return ReadPlan::Truncated {
            first_available: released.next(),
        };
    }
    let mut records = Vec::new();
    let mut size = 0usize;
    let mut expected = read.from;
    for (instance, entry) in group.range_from(read.from) {
        if instance != expected || instance > read.through || records.len() >= read.count_max {
            break;
        }
        size = size.saturating_add(entry.size as usize);
        if !records.is_empty() && size > read.size_max {
            break;
        }
        records.push((instance, entry));
        expected = expected.next();
    }
    ReadPlan::Records(records)
}

/// The highest instance of `group` that reads of `index` answer `Truncated` at or
/// below: the index's release floor, or the highest checkpoint the group installed
/// from a peer, whichever is higher. At or below an install the WAL holds at most this
/// replica's own votes from before it, which need not be the chosen values (it never
/// applied those instances): only a checkpoint serves them. `Instance(0)`: none.
#[must_use]
pub fn released_through(index: &LogIndex, group: GroupId) -> Instance {
    index
        .group(group)
        .map_or(Instance(0), |g| g.floor().max(g.installed().0))
}

/// A record read back that is not the one the plan named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The group read.
    pub group: GroupId,
    /// The instance whose record did not match.
    pub instance: Instance,
    /// What was wrong.
    pub reason: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "group {} instance {}: the WAL read did not return its record: {}",
            self.group.0, self.instance.0, self.reason
        )
    }
}

impl std::error::Error for Mismatch {}

/// The chosen entries of `records` (planned for `read`, in plan order: the instance,
/// the record's bytes as they lie in the log, and the salt its checksum is seeded
/// with), each decoded and checked to be the Accept or Learn of `read.group` at its
/// instance.
///
/// # Errors
///
/// The first record that does not decode or is not the planned one.
pub fn entries<'a>(
    read: &WalRead,
    records: impl IntoIterator<Item = (Instance, &'a [u8], u32)>,
) -> Result<Vec<Entry>, Mismatch> {
    let limits = DecodeLimits::default();
    let mut entries = Vec::new();
    for (instance, bytes, salt) in records {
        let mismatch = |reason: String| Mismatch {
            group: read.group,
            instance,
            reason,
        };
        let (decoded, _) =
            record::decode(bytes, salt, &limits).map_err(|e| mismatch(e.to_string()))?;
        entries.push(chosen_entry(decoded.content, read.group, instance).map_err(mismatch)?);
    }
    Ok(entries)
}

/// The entry of `content` when it is the Accept or Learn of `group` at `instance` (the
/// record a catch-up read serves), else what it is instead.
fn chosen_entry(content: Content, group: GroupId, instance: Instance) -> Result<Entry, String> {
    match content {
        Content::Record(
            Record::Accept {
                group: of,
                instance: at,
                entry,
                ..
            }
            | Record::Learn {
                group: of,
                instance: at,
                entry,
            },
        ) if of == group && at == instance => Ok(entry),
        Content::Record(other) => Err(format!("found {other:?}")),
        Content::Pad => Err("found a pad".to_string()),
    }
}

/// One record as a reader read it back: `range` of `span`, the buffer its read went
/// into (a DMA span copied once out of the kernel's buffer, or the simulated disk's
/// bytes), with the salt its checksum is seeded with and the segment it lies in.
/// Records of one span share it: slicing copies nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordRead {
    /// The buffer the record was read into.
    pub span: Bytes,
    /// Where the record lies in `span`.
    pub range: std::ops::Range<usize>,
    /// Salt of the record's segment.
    pub salt: u32,
    /// The segment the record lies in.
    pub segment: u64,
}

impl RecordRead {
    /// The record's bytes, as they lie in the log.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.span[self.range.clone()]
    }

    /// Whether `next` lies right after this record in the same buffer.
    fn adjacent(&self, next: &RecordRead) -> bool {
        self.span.as_ptr() == next.span.as_ptr()
            && self.span.len() == next.span.len()
            && self.range.end == next.range.start
    }
}

/// The answer to `read` once its plan was read (`records`: the planned records as read,
/// in plan order): `Truncated` as planned; for a peer (`WalReader::Peer`) the records as
/// raw runs, not decoded (`raw_runs`); for a log read the entries, decoded and checked
/// (`entries`: a log read returns values). Also returns how many records were decoded.
///
/// # Errors
///
/// For a log read, the first record that does not decode or is not the planned one.
pub fn answer(
    read: &WalRead,
    plan: &ReadPlan,
    records: &[RecordRead],
) -> Result<(WalReadOutcome, usize), Mismatch> {
    let planned: &[(Instance, IndexEntry)] = match plan {
        ReadPlan::Truncated { first_available } => {
            let first_available = *first_available;
            return Ok((WalReadOutcome::Truncated { first_available }, 0));
        }
        ReadPlan::Records(planned) => planned,
    };
    assert_eq!(
        planned.len(),
        records.len(),
        "one record read per record planned"
    );
    let instances = planned.iter().map(|(instance, _)| *instance);
    match read.reader {
        WalReader::Peer(_) => {
            let runs = raw_runs(read.group, instances.zip(records), read.size_max);
            Ok((WalReadOutcome::Raw(runs), 0))
        }
        WalReader::Log(_) => {
            let found = entries(
                read,
                instances
                    .zip(records)
                    .map(|(instance, record)| (instance, record.bytes(), record.salt)),
            )?;
            let decoded = found.len();
            Ok((WalReadOutcome::Entries(found), decoded))
        }
    }
}

/// The raw runs of `group` made of `records` (a plan's records as read, in plan order),
/// within `size_max` bytes as `CatchUpRaw` messages (one per run: its message overhead,
/// its records, and a piece overhead per piece), the first record whatever its size
/// (a reader always progresses; a record of the largest entry fits a message by
/// `GroupConfig::message_size_min`). Consecutive records of one segment form one run,
/// so one salt covers it; within a run, records adjacent in one read buffer share one
/// piece (a `Bytes::slice` of it: no copy). The records are not decoded here: the
/// reader checked each one's header and checksum against the index, and the receiver
/// verifies them all (`verify_raw`).
#[must_use]
pub fn raw_runs<'a>(
    group: GroupId,
    records: impl IntoIterator<Item = (Instance, &'a RecordRead)>,
    size_max: usize,
) -> Vec<RawRun> {
    // Per run: its segment, the run, and its open piece (the last record read of it
    // and where the piece starts in that record's buffer).
    let mut runs: Vec<(u64, RawRun, &RecordRead, usize)> = Vec::new();
    let mut size = 0usize;
    for (instance, record) in records {
        let continues = runs.last().is_some_and(|(segment, run, _, _)| {
            *segment == record.segment
                && run.salt == record.salt
                && run.last_instance.next() == instance
        });
        let adjacent = continues
            && runs
                .last()
                .is_some_and(|(_, _, last, _)| last.adjacent(record));
        let overhead = match (continues, adjacent) {
            (false, _) => MESSAGE_OVERHEAD_SIZE + PIECE_OVERHEAD_SIZE,
            (true, false) => PIECE_OVERHEAD_SIZE,
            (true, true) => 0,
        };
        let cost = record.range.len().saturating_add(overhead);
        if !runs.is_empty() && size.saturating_add(cost) > size_max {
            break;
        }
        size = size.saturating_add(cost);
        match runs.last_mut() {
            Some((_, run, last, _)) if adjacent => {
                run.last_instance = instance;
                *last = record;
            }
            Some((_, run, last, start)) if continues => {
                run.records.push(last.span.slice(*start..last.range.end));
                run.last_instance = instance;
                *last = record;
                *start = record.range.start;
            }
            _ => {
                if let Some((_, run, last, start)) = runs.last_mut() {
                    run.records.push(last.span.slice(*start..last.range.end));
                }
                let run = RawRun {
                    group,
                    first_instance: instance,
                    last_instance: instance,
                    salt: record.salt,
                    records: Vec::new(),
                };
                runs.push((record.segment, run, record, record.range.start));
            }
        }
    }
    if let Some((_, run, last, start)) = runs.last_mut() {
        run.records.push(last.span.slice(*start..last.range.end));
    }
    runs.into_iter().map(|(_, run, _, _)| run).collect()
}

/// The chosen entries of `run`, in instance order, once every record verifies: the run
/// holds at most `size_max` bytes and at most `count_max` instances, each record's
/// length is within `limits` and the bytes left, its CRC32C seeded with `run.salt`
/// holds, it decodes within `limits`, and it is the Accept or Learn of `run.group` at
/// the next instance from `run.first_instance`; the records end exactly at the end of
/// the bytes, with `run.last_instance` (no record spans two pieces). Anything else
/// refuses the whole run: nothing of it may be persisted. Values are zero-copy slices
/// of `run.records`.
///
/// Pure: the receiver's core and the simulator call it alike.
///
/// # Errors
///
/// The first instance whose record (or whose absence) breaks a rule, and why.
pub fn verify_raw(
    run: &RawRun,
    size_max: usize,
    count_max: usize,
    limits: &DecodeLimits,
) -> Result<Vec<Entry>, Mismatch> {
    let refuse = |instance: Instance, reason: String| Mismatch {
        group: run.group,
        instance,
        reason,
    };
    let first = run.first_instance;
    let last = run.last_instance;
    if first.0 == 0 || last < first {
        return Err(refuse(
            first,
            format!("no instances ({}..={})", first.0, last.0),
        ));
    }
    let count = last.0 - first.0 + 1;
    if count > count_max as u64 {
        return Err(refuse(
            first,
            format!("{count} instances, above {count_max}"),
        ));
    }
    let size = run.size();
    if size > size_max {
        return Err(refuse(first, format!("{size} bytes, above {size_max}")));
    }
    // `count <= count_max`: bounded by what the receiver admits.
    let mut entries = Vec::with_capacity(count as usize);
    for piece in &run.records {
        let mut at = 0usize;
        while at < piece.len() {
            if entries.len() as u64 == count {
                return Err(refuse(last, "bytes beyond the last instance".to_string()));
            }
            // `first + entries.len() <= last`: no overflow.
            let expected = Instance(first.0 + entries.len() as u64);
            let rest = piece.slice(at..);
            let (decoded, size) = record::decode_shared(&rest, run.salt, limits)
                .map_err(|e| refuse(expected, e.to_string()))?;
            let entry = chosen_entry(decoded.content, run.group, expected)
                .map_err(|reason| refuse(expected, reason))?;
            entries.push(entry);
            at += size;
        }
    }
    if (entries.len() as u64) < count {
        let missing = Instance(first.0 + entries.len() as u64);
        return Err(refuse(missing, format!("the run ends before {}", last.0)));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Ballot, Body, Lsn, NodeId};
    use crate::wal::group_commit::Placed;
    use crate::wal::record::{encode, Stamp};

    const SALT: u32 = 0x5A17;

    fn entry(value: u64) -> Entry {
        Entry {
            origin: Ballot {
                round: 1,
                node: NodeId(1),
            },
            body: Body::Values(smallvec::smallvec![Bytes::from(
                value.to_le_bytes().to_vec()
            )]),
        }
    }

    fn accept(group: u32, instance: u64) -> Record {
        Record::Accept {
            group: GroupId(group),
            instance: Instance(instance),
            ballot: Ballot {
                round: 1,
                node: NodeId(1),
            },
            entry: entry(instance),
        }
    }

    /// A log of `records` (one flat image) and its index.
    fn log(records: &[Record]) -> (Vec<u8>, LogIndex) {
        let mut bytes = Vec::new();
        let mut index = LogIndex::new();
        for (at, record) in records.iter().enumerate() {
            let offset = bytes.len() as u64;
            let lsn = Lsn(at as u64 + 1);
            let size = encode(
                record,
                Stamp {
                    lsn,
                    unsynced_from: lsn,
                },
                SALT,
                &mut bytes,
            );
            index.insert(
                record,
                Placed {
                    lsn,
                    offset,
                    size: size as u32,
                },
            );
        }
        (bytes, index)
    }

    fn read(from: u64, through: u64, count_max: usize, size_max: usize) -> WalRead {
        WalRead {
            group: GroupId(1),
            reader: crate::paxos::WalReader::Peer(NodeId(2)),
            from: Instance(from),
            through: Instance(through),
            size_max,
            count_max,
        }
    }

    fn run(bytes: &[u8], plan: &ReadPlan, wanted: &WalRead) -> Result<Vec<Entry>, Mismatch> {
        let ReadPlan::Records(records) = plan else {
            return Ok(Vec::new());
        };
        entries(
            wanted,
            records.iter().map(|(instance, e)| {
                let at = e.offset as usize;
                (*instance, &bytes[at..at + e.size as usize], SALT)
            }),
        )
    }

    // Goal: a plan is consecutive from `from`, stops at a hole, at `through`, at the
    // count and at the byte budget (the first record always), and its entries decode.
    // Method: a log of group 1 with a hole at 6 and another group interleaved; plan
    // several reads and read them back from the image.
    #[test]
    fn plans_consecutive_bounded_runs() {
        let mut records = Vec::new();
        for i in [1, 2, 3, 4, 5, 7, 8] {
            records.push(accept(1, i));
            records.push(accept(2, i));
        }
        let (bytes, index) = log(&records);
        let instances = |plan: &ReadPlan| match plan {
            ReadPlan::Records(r) => r.iter().map(|(i, _)| i.0).collect::<Vec<_>>(),
            ReadPlan::Truncated { .. } => panic!("not truncated"),
        };
        let all = read(2, 100, 100, usize::MAX);
        let plan = plan(&index, &all);
        assert_eq!(instances(&plan), vec![2, 3, 4, 5], "stops at the hole");
        let found = run(&bytes, &plan, &all).expect("decodes");
        assert_eq!(found, (2..=5).map(entry).collect::<Vec<_>>());
        assert_eq!(
            instances(&super::plan(&index, &read(1, 3, 100, usize::MAX))),
            vec![1, 2, 3]
        );
        assert_eq!(
            instances(&super::plan(&index, &read(1, 9, 2, usize::MAX))),
            vec![1, 2]
        );
        assert_eq!(
            instances(&super::plan(&index, &read(1, 9, 9, 0))),
            vec![1],
            "first always"
        );
        assert!(instances(&super::plan(&index, &read(6, 9, 9, 0))).is_empty());
        let mut other = read(1, 9, 9, usize::MAX);
        other.group = GroupId(3);
        assert_eq!(super::plan(&index, &other), ReadPlan::Records(Vec::new()));
    }

    // Goal: a released instance is reported truncated, with the first one kept.
    // Method: release group 1 through 3, then plan from 2 and from 4.
    #[test]
    fn released_instances_are_truncated() {
        let records: Vec<Record> = (1..=6).map(|i| accept(1, i)).collect();
        let (_, mut index) = log(&records);
        index.release_through(GroupId(1), Instance(3));
        assert_released_below(&index, 2, 4, 3);
    }

    // Goal: instances at or below a peer's checkpoint the group installed are never
    // served from its own records there (votes, not applied values): `Truncated`.
    // Method: accepts at 1..=6, then `Installed { 4 }`; reads from 2 and from 5.
    #[test]
    fn instances_below_an_install_are_truncated() {
        let mut records: Vec<Record> = (1..=6).map(|i| accept(1, i)).collect();
        records.push(Record::Installed {
            group: GroupId(1),
            through: Instance(4),
        });
        let (_, index) = log(&records);
        assert_released_below(&index, 2, 5, 2);
    }

    /// Group 1's reads through 6: from `below` the plan is `Truncated` at
    /// `first_available`; from `first_available` it names `kept` records.
    fn assert_released_below(index: &LogIndex, below: u64, first_available: u64, kept: usize) {
        assert_eq!(
            plan(index, &read(below, 6, 9, usize::MAX)),
            ReadPlan::Truncated {
                first_available: Instance(first_available)
            }
        );
        let ReadPlan::Records(records) = plan(index, &read(first_available, 6, 9, usize::MAX))
        else {
            panic!("records from {first_available}");
        };
        assert_eq!(records.len(), kept);
    }

    // Goal: bytes that are not the planned record are refused, never served.
    // Method: read instance 2's plan against instance 3's bytes, and a flipped byte.
    #[test]
    fn wrong_bytes_are_refused() {
        let records: Vec<Record> = (1..=3).map(|i| accept(1, i)).collect();
        let (mut bytes, index) = log(&records);
        let wanted = read(2, 2, 1, usize::MAX);
        let ReadPlan::Records(planned) = plan(&index, &wanted) else {
            panic!("records");
        };
        let third = index
            .group(GroupId(1))
            .and_then(|g| g.get(Instance(3)))
            .expect("3");
        let at = third.offset as usize;
        let wrong = entries(
            &wanted,
            [(Instance(2), &bytes[at..at + third.size as usize], SALT)],
        );
        assert!(wrong.is_err_and(|m| m.instance == Instance(2)));
        let at = planned[0].1.offset as usize;
        bytes[at + 40] ^= 1;
        let size = planned[0].1.size as usize;
        assert!(entries(&wanted, [(Instance(2), &bytes[at..at + size], SALT)]).is_err());
    }

    /// Records of `group` at `instances`, concatenated, as one raw run of group 1.
    fn raw(group: u32, instances: &[u64], first: u64, last: u64) -> RawRun {
        let mut bytes = Vec::new();
        for (at, i) in instances.iter().enumerate() {
            let lsn = Lsn(at as u64 + 10);
            let record = if i % 2 == 0 {
                accept(group, *i)
            } else {
                Record::Learn {
                    group: GroupId(group),
                    instance: Instance(*i),
                    entry: entry(*i),
                }
            };
            encode(
                &record,
                Stamp {
                    lsn,
                    unsynced_from: lsn,
                },
                SALT,
                &mut bytes,
            );
        }
        RawRun {
            group: GroupId(1),
            first_instance: Instance(first),
            last_instance: Instance(last),
            salt: SALT,
            records: vec![Bytes::from(bytes)],
        }
    }

    /// `run` with its records as one piece of `bytes`.
    fn with_bytes(run: &RawRun, bytes: Vec<u8>) -> RawRun {
        RawRun {
            records: vec![Bytes::from(bytes)],
            ..run.clone()
        }
    }

    fn verify(run: &RawRun) -> Result<Vec<Entry>, Mismatch> {
        verify_raw(run, 1 << 20, 64, &DecodeLimits::default())
    }

    // Goal: a raw run of consecutive Accepts and Learns of the group verifies into its
    // entries, in order.
    // Method: encode instances 4..=8 (Accepts and Learns) and verify them.
    #[test]
    fn raw_run_verifies() {
        let run = raw(1, &[4, 5, 6, 7, 8], 4, 8);
        let found = verify(&run).expect("verifies");
        assert_eq!(found, (4..=8).map(entry).collect::<Vec<_>>());
    }

    // Goal: every way a raw run can lie is refused as a whole, at the right instance.
    // Method: a wrong salt, a flipped byte in each record, another group, a gap,
    // a run shorter or longer than its named instances, a cut record, bytes or counts
    // above the bounds, an empty range.
    #[test]
    fn raw_run_lies_are_refused() {
        let good = raw(1, &[4, 5, 6], 4, 6);
        let at = |run: &RawRun| verify(run).expect_err("refused").instance.0;
        let mut wrong_salt = good.clone();
        wrong_salt.salt ^= 1;
        assert_eq!(at(&wrong_salt), 4);
        let whole = good.records[0].to_vec();
        let size = whole.len() / 3;
        for record in 0..3 {
            for offset in [0, 5, 17, 40, size - 1] {
                let mut bytes = whole.clone();
                bytes[record * size + offset] ^= 0x10;
                let flipped = with_bytes(&good, bytes);
                assert!(verify(&flipped).is_err(), "flip {record}/{offset}");
            }
        }
        let split = RawRun {
            records: vec![
                Bytes::from(whole[..size + 8].to_vec()),
                Bytes::from(whole[size + 8..].to_vec()),
            ],
            ..good.clone()
        };
        assert_eq!(at(&split), 5, "a record across two pieces");
        assert_eq!(at(&raw(2, &[4, 5, 6], 4, 6)), 4, "another group");
        assert_eq!(at(&raw(1, &[4, 6, 7], 4, 6)), 5, "a gap");
        assert_eq!(at(&raw(1, &[4, 5], 4, 6)), 6, "ends early");
        assert_eq!(at(&raw(1, &[4, 5, 6, 7], 4, 6)), 6, "bytes beyond");
        let cut = with_bytes(&good, whole[..whole.len() - 8].to_vec());
        assert_eq!(at(&cut), 6, "a cut record");
        assert!(verify_raw(&good, whole.len() - 1, 64, &DecodeLimits::default()).is_err());
        assert!(verify_raw(&good, 1 << 20, 2, &DecodeLimits::default()).is_err());
        let small = DecodeLimits {
            record_size_max: 8,
            ..DecodeLimits::default()
        };
        assert!(verify_raw(&good, 1 << 20, 64, &small).is_err());
        assert!(verify(&raw(1, &[], 4, 3)).is_err(), "no instances");
        assert!(verify(&raw(1, &[], 0, 0)).is_err(), "instance 0");
        let far = raw(1, &[], u64::MAX, u64::MAX);
        assert_eq!(at(&far), u64::MAX, "no overflow at the top");
    }

    // Goal: a plan's records as read become runs cut at segment boundaries (one salt
    // each), records adjacent in a buffer share a piece, a byte budget cuts the runs
    // (the first record always), and each run verifies on the receiver into the
    // planned entries.
    // Method: instances 1..=5 of group 1 among group 2's, read back as if 1..=3 lay in
    // segment 7 and 4..=5 in segment 8, all from one buffer; then group 1 alone (one
    // piece); then budgets of one byte and of two records.
    #[test]
    fn raw_runs_cut_at_segments_and_verify() {
        let mut records = Vec::new();
        for i in 1..=5 {
            records.push(accept(1, i));
            records.push(accept(2, i));
        }
        let (bytes, index) = log(&records);
        let wanted = read(1, 5, 100, usize::MAX);
        let ReadPlan::Records(planned) = plan(&index, &wanted) else {
            panic!("records");
        };
        let span = Bytes::from(bytes);
        let read: Vec<(Instance, RecordRead)> = planned
            .iter()
            .map(|(instance, e)| {
                let at = e.offset as usize;
                let record = RecordRead {
                    span: span.clone(),
                    range: at..at + e.size as usize,
                    salt: SALT,
                    segment: if instance.0 <= 3 { 7 } else { 8 },
                };
                (*instance, record)
            })
            .collect();
        let runs_of =
            |size_max: usize| raw_runs(GroupId(1), read.iter().map(|(i, r)| (*i, r)), size_max);
        let runs = runs_of(usize::MAX);
        let spans: Vec<(u64, u64, usize)> = runs
            .iter()
            .map(|r| (r.first_instance.0, r.last_instance.0, r.records.len()))
            .collect();
        assert_eq!(
            spans,
            vec![(1, 3, 3), (4, 5, 2)],
            "group 2's records between"
        );
        let found: Vec<Entry> = runs
            .iter()
            .flat_map(|run| verify(run).expect("verifies"))
            .collect();
        assert_eq!(found, (1..=5).map(entry).collect::<Vec<_>>());
        let one = runs_of(1);
        assert_eq!(one.len(), 1, "the first record whatever the budget");
        assert_eq!(one[0].last_instance, Instance(1));
        let record_size = read[0].1.range.len();
        let two = MESSAGE_OVERHEAD_SIZE + 2 * (PIECE_OVERHEAD_SIZE + record_size);
        assert_eq!(runs_of(two)[0].last_instance, Instance(2));
        let (bytes, index) = log(&(1..=4).map(|i| accept(1, i)).collect::<Vec<_>>());
        let ReadPlan::Records(planned) = plan(&index, &wanted) else {
            panic!("records");
        };
        let span = Bytes::from(bytes);
        let read: Vec<(Instance, RecordRead)> = planned
            .iter()
            .map(|(instance, e)| {
                let at = e.offset as usize;
                let range = at..at + e.size as usize;
                let record = RecordRead {
                    span: span.clone(),
                    range,
                    salt: SALT,
                    segment: 7,
                };
                (*instance, record)
            })
            .collect();
        let runs = raw_runs(GroupId(1), read.iter().map(|(i, r)| (*i, r)), usize::MAX);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].records, vec![span.clone()], "adjacent: one slice");
        assert_eq!(verify(&runs[0]).expect("verifies").len(), 4);
    }
}
