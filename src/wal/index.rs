//! The per-group index of the log: for each group, instance → where its record lies
//! (log offset, size) and its ballot, plus where the group's promise and chosen
//! watermark were last written. Catch-up reads (`wal::catch_up`, `file::store::Store::plan_read`)
//! find records with it, and truncation (`compaction`) decides from it which segments
//! are still needed.
//!
//! Memory: [`INDEX_SLOT_SIZE`] (32) bytes per indexed instance (instance + a 24-byte
//! entry, sorted; holes in a group's instances cost nothing: a dense array of 24-byte
//! entries costs 24 bytes per instance of the span, which measured 100 MB of RSS for a
//! 59,184-record `synod wal crash-child` log, whose 64 groups share one instance
//! counter), times the `VecDeque`'s spare capacity (at
//! most 2x), plus [`GROUP_INDEX_SIZE`] bytes per group and the map's nodes.
//! `release_through` drops the instances a checkpoint covers.
//!
//! Invariants (`LogIndex::invariants`):
//! - per instance the entry is the latest Learn of it if there is one (a Learn says the
//!   value is chosen; any Accept of the instance can only carry the same value), else
//!   the latest Accept of the highest ballot: the record `replay` keeps. So a copy
//!   appended by compaction (`compaction::Rewrite::Copy`) after a newer, higher-ballot
//!   Accept of its instance never becomes the entry, in any of the three ways the index
//!   is built (appends, written plans, recovery);
//! - entries lie strictly above the group's `floor` (instances at or below it are
//!   covered by a checkpoint and are neither indexed nor needed);
//! - `promised` is the highest ballot of any Promise or Accept of the group (what
//!   `replay` derives) and `promised_at` the latest record carrying it; likewise
//!   `chosen_through` / `chosen_at` for Chosen records, and `installed_through` /
//!   `installed_at` for Installed records (an install's marker: compaction carries the
//!   highest forward, as replay keeps the highest).

use super::group_commit::{Placed, WritePlan};
use super::layout::{record_start, HEADER_SIZE};
use super::record::{self, Kind};
use super::recovery::RecoveredRecord;
use crate::paxos::{Ballot, GroupId, Instance, Lsn, NodeId, Record};
use std::collections::{BTreeMap, VecDeque};

/// Where one Accept or Learn lies in the log, and its ballot. 24 bytes: the ballot is
/// stored flat (a `Ballot` field would add 4 bytes of padding), and a Learn is the
/// ballot `(u64::MAX, u32::MAX)` (above any real ballot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Log offset of its first byte.
    pub offset: u64,
    round: u64,
    node: u32,
    /// Its size in bytes.
    pub size: u32,
}

const _: () = assert!(std::mem::size_of::<IndexEntry>() == 24);

const LEARN_ROUND: u64 = u64::MAX;
const LEARN_NODE: u32 = u32::MAX;

impl IndexEntry {
    fn new(kind: Kind, ballot: Ballot, offset: u64, size: u32) -> IndexEntry {
        assert!(size as usize >= HEADER_SIZE, "record size {size}");
        let (round, node) = match kind {
            Kind::Learn => (LEARN_ROUND, LEARN_NODE),
            _ => {
                assert!(
                    (ballot.round, ballot.node.0) != (LEARN_ROUND, LEARN_NODE),
                    "ballot {ballot:?} is reserved"
                );
                (ballot.round, ballot.node.0)
            }
        };
        IndexEntry {
            offset,
            round,
            node,
            size,
        }
    }

    /// Accept or Learn.
    #[must_use]
    pub fn kind(&self) -> Kind {
        if (self.round, self.node) == (LEARN_ROUND, LEARN_NODE) {
            Kind::Learn
        } else {
            Kind::Accept
        }
    }

    /// The Accept's ballot (`Ballot::ZERO` for a Learn, as in the record).
    #[must_use]
    pub fn ballot(&self) -> Ballot {
        match self.kind() {
            Kind::Learn => Ballot::ZERO,
            _ => Ballot {
                round: self.round,
                node: NodeId(self.node),
            },
        }
    }

    /// Whether `self`, later in the log, is the record `replay` keeps over `old`.
    fn supersedes(&self, old: &IndexEntry) -> bool {
        (self.round, self.node) >= (old.round, old.node)
    }
}

/// Where a Promise, Accept, Chosen or Installed that carries a group's current state lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    /// Its LSN.
    pub lsn: Lsn,
    /// Log offset of its first byte.
    pub offset: u64,
}

/// One indexed instance: the instance and its entry (32 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    instance: u64,
    entry: IndexEntry,
}

/// Bytes per indexed instance in a group's index.
pub const INDEX_SLOT_SIZE: usize = std::mem::size_of::<Slot>();

const _: () = assert!(INDEX_SLOT_SIZE == 32);

/// One group's index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupIndex {
    /// Instances at or below this are released (covered by a checkpoint).
    floor: Instance,
    /// Sorted by instance, unique, all above `floor`.
    slots: VecDeque<Slot>,
    promised: Ballot,
    promised_at: Option<Pin>,
    chosen_through: Instance,
    chosen_at: Option<Pin>,
    installed_through: Instance,
    installed_at: Option<Pin>,
}

/// Bytes of a `GroupIndex` itself, before its slots.
pub const GROUP_INDEX_SIZE: usize = std::mem::size_of::<GroupIndex>();

impl GroupIndex {
    /// Position of the first slot at or above `instance`.
    fn position(&self, instance: Instance) -> usize {
        self.slots.partition_point(|s| s.instance < instance.0)
    }

    /// The entry of `instance`, if indexed.
    #[must_use]
    pub fn get(&self, instance: Instance) -> Option<IndexEntry> {
        self.slots
            .get(self.position(instance))
            .filter(|s| s.instance == instance.0)
            .map(|s| s.entry)
    }

    /// Indexed instances from `from` upward, in instance order.
    pub fn range_from(&self, from: Instance) -> impl Iterator<Item = (Instance, IndexEntry)> + '_ {
        self.slots
            .range(self.position(from)..)
            .map(|s| (Instance(s.instance), s.entry))
    }

    /// Every indexed instance, in instance order.
    pub fn iter(&self) -> impl Iterator<Item = (Instance, IndexEntry)> + '_ {
        self.range_from(Instance(0))
    }

    /// Instances at or below this are released.
    #[must_use]
    pub fn floor(&self) -> Instance {
        self.floor
    }

    /// Highest ballot promised or accepted in, and where it was last written.
    #[must_use]
    pub fn promised(&self) -> (Ballot, Option<Pin>) {
        (self.promised, self.promised_at)
    }

    /// Highest chosen watermark written, and where.
    #[must_use]
    pub fn chosen(&self) -> (Instance, Option<Pin>) {
        (self.chosen_through, self.chosen_at)
    }

    /// Highest checkpoint installed from a peer (`Record::Installed`), and where.
    #[must_use]
    pub fn installed(&self) -> (Instance, Option<Pin>) {
        (self.installed_through, self.installed_at)
    }

    /// Instances indexed.
    #[must_use]
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Bytes held by this group's index (its slots' capacity and itself).
    #[must_use]
    pub fn memory_size(&self) -> usize {
        GROUP_INDEX_SIZE + self.slots.capacity() * INDEX_SLOT_SIZE
    }

    fn note_ballot(&mut self, ballot: Ballot, pin: Pin) {
        if ballot >= self.promised && ballot != Ballot::ZERO {
            self.promised = ballot;
            self.promised_at = Some(pin);
        }
    }

    fn insert_entry(&mut self, instance: Instance, entry: IndexEntry) {
        assert!(instance.0 >= 1, "instance 0 is never indexed");
        if instance <= self.floor {
            return;
        }
        let slot = Slot {
            instance: instance.0,
            entry,
        };
        // Instances mostly arrive in order: the common case is a push at the back.
        if self
            .slots
            .back()
            .is_none_or(|last| last.instance < instance.0)
        {
            self.slots.push_back(slot);
            return;
        }
        let at = self.position(instance);
        match self.slots.get_mut(at) {
            Some(old) if old.instance == instance.0 => {
                if entry.supersedes(&old.entry) {
                    old.entry = entry;
                }
            }
            _ => self.slots.insert(at, slot),
        }
    }

    /// Drops the instances at or below `through` (a checkpoint covers them). The floor
    /// never moves down.
    ///
    /// The slots' capacity is kept while it is at most 4 times what this cycle (since
    /// the last release) held at its highest: the next cycle refills it, and giving
    /// it back only to grow it again by doubling reallocates megabytes per group and
    /// checkpoint, which fragments the allocator's arenas (measured: RSS rising run
    /// after run). Beyond that (the group's rate fell) it shrinks to twice that.
    pub fn release_through(&mut self, through: Instance) {
        if through <= self.floor {
            return;
        }
        self.floor = through;
        // Slots only grow between releases: this is the cycle's high-water mark.
        let cycle_len_max = self.slots.len().max(16);
        while self.slots.front().is_some_and(|s| s.instance <= through.0) {
            self.slots.pop_front();
        }
        if self.slots.capacity() > 4 * cycle_len_max {
            self.slots.shrink_to(2 * cycle_len_max);
        }
    }

    fn invariants(&self, group: GroupId) {
        if let Some(front) = self.slots.front() {
            assert!(
                front.instance > self.floor.0,
                "group {}: instance {} indexed at or below the floor {}",
                group.0,
                front.instance,
                self.floor.0
            );
        }
        for pair in self.slots.iter().zip(self.slots.iter().skip(1)) {
            assert!(
                pair.0.instance < pair.1.instance,
                "group {}: slots out of order",
                group.0
            );
        }
        for (instance, entry) in self.iter() {
            assert!(
                entry.size as usize >= HEADER_SIZE,
                "group {} instance {}: {entry:?}",
                group.0,
                instance.0
            );
        }
        assert_eq!(self.promised == Ballot::ZERO, self.promised_at.is_none());
        assert!(self.chosen_through.0 == 0 || self.chosen_at.is_some());
        assert!(self.installed_through.0 == 0 || self.installed_at.is_some());
    }
}

/// The index of one shard's log: a [`GroupIndex`] per group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogIndex {
    groups: BTreeMap<GroupId, GroupIndex>,
}

impl LogIndex {
    /// An empty index.
    #[must_use]
    pub fn new() -> LogIndex {
        LogIndex::default()
    }

    /// The index of recovered records (`LogRecovery::records`, log order).
    #[must_use]
    pub fn from_recovered(records: &[RecoveredRecord]) -> LogIndex {
        let mut index = LogIndex::new();
        for recovered in records {
            let size = record::encoded_size(&recovered.record);
            index.insert(
                &recovered.record,
                Placed {
                    lsn: recovered.lsn,
                    offset: recovered.offset,
                    size: u32::try_from(size).expect("a recovered record fits u32"),
                },
            );
        }
        index
    }

    /// Indexes one record appended at `placed` (`GroupCommit::append_placed`). Records
    /// must be inserted in log order.
    pub fn insert(&mut self, record: &Record, placed: Placed) {
        let kind = Kind::of(record);
        self.insert_fields(
            kind,
            record.group(),
            match record {
                Record::Accept { instance, .. } | Record::Learn { instance, .. } => *instance,
                Record::Chosen { through, .. } | Record::Installed { through, .. } => *through,
                Record::Promise { .. } => Instance(0),
            },
            match record {
                Record::Promise { ballot, .. } | Record::Accept { ballot, .. } => *ballot,
                Record::Chosen { .. } | Record::Learn { .. } | Record::Installed { .. } => {
                    Ballot::ZERO
                }
            },
            placed,
        );
    }

    fn insert_fields(
        &mut self,
        kind: Kind,
        group: GroupId,
        instance: Instance,
        ballot: Ballot,
        placed: Placed,
    ) {
        let pin = Pin {
            lsn: placed.lsn,
            offset: placed.offset,
        };
        match kind {
            Kind::Pad => {}
            Kind::Promise => self
                .groups
                .entry(group)
                .or_default()
                .note_ballot(ballot, pin),
            Kind::Accept | Kind::Learn => {
                let index = self.groups.entry(group).or_default();
                if kind == Kind::Accept {
                    index.note_ballot(ballot, pin);
                }
                index.insert_entry(
                    instance,
                    IndexEntry::new(kind, ballot, placed.offset, placed.size),
                );
            }
            Kind::Chosen => {
                let index = self.groups.entry(group).or_default();
                if instance >= index.chosen_through {
                    index.chosen_through = instance;
                    index.chosen_at = Some(pin);
                }
            }
            // An install's marker, read by recovery (`replay`): compaction keeps the
            // highest while the WAL may hold records at or below it.
            Kind::Installed => {
                let index = self.groups.entry(group).or_default();
                if instance >= index.installed_through {
                    index.installed_through = instance;
                    index.installed_at = Some(pin);
                }
            }
        }
    }

    /// Indexes every record of `plan` as written (the bytes this process encoded; headers
    /// are read in place, checksums are not recomputed).
    pub fn insert_plan(&mut self, plan: &WritePlan) {
        let mut at = 0u64;
        loop {
            at = record_start(at);
            let Some(rest) = plan.bytes.get(at as usize..) else {
                return;
            };
            let Some(peeked) = record::peek(rest) else {
                return;
            };
            self.insert_fields(
                peeked.kind,
                peeked.group,
                peeked.instance,
                peeked.ballot,
                Placed {
                    lsn: peeked.lsn,
                    offset: plan.offset + at,
                    size: peeked.size,
                },
            );
            at += u64::from(peeked.size);
        }
    }

    /// The index of `group`, if it has records.
    #[must_use]
    pub fn group(&self, group: GroupId) -> Option<&GroupIndex> {
        self.groups.get(&group)
    }

    /// Every group's index, by group.
    pub fn groups(&self) -> impl Iterator<Item = (GroupId, &GroupIndex)> + '_ {
        self.groups.iter().map(|(g, i)| (*g, i))
    }

    /// Releases `group`'s instances at or below `through` (see `GroupIndex`).
    pub fn release_through(&mut self, group: GroupId, through: Instance) {
        if let Some(index) = self.groups.get_mut(&group) {
            index.release_through(through);
        }
    }

    /// Bytes held by the index (entries' capacity and per-group structs; map nodes not
    /// counted: about 2 words per group more).
    #[must_use]
    pub fn memory_size(&self) -> usize {
        self.groups.values().map(GroupIndex::memory_size).sum()
    }

    /// Instances indexed, summed over the groups.
    #[must_use]
    pub fn slot_count(&self) -> usize {
        self.groups.values().map(GroupIndex::slot_count).sum()
    }

    /// Asserts the module invariants.
    pub fn invariants(&self) {
        for (group, index) in &self.groups {
            index.invariants(*group);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Body, Entry, NodeId};
    use crate::prng::Prng;
    use crate::wal::{GroupCommit, GroupCommitConfig, Resume};
    use bytes::Bytes;

    fn ballot(round: u64) -> Ballot {
        Ballot {
            round,
            node: NodeId(1),
        }
    }

    fn entry(size: usize) -> Entry {
        Entry {
            origin: ballot(1),
            body: Body::Values(smallvec::smallvec![Bytes::from(vec![9; size])]),
        }
    }

    /// A random record of one of 3 groups over instances 1..=40.
    fn random_record(prng: &mut Prng) -> Record {
        let group = GroupId(1 + prng.below(3) as u32);
        let instance = Instance(1 + prng.below(40));
        match prng.below(4) {
            0 => Record::Promise {
                group,
                ballot: ballot(prng.below(5)),
            },
            1 => Record::Chosen {
                group,
                through: instance,
            },
            2 => Record::Learn {
                group,
                instance,
                entry: entry(prng.below(300) as usize),
            },
            _ => Record::Accept {
                group,
                instance,
                ballot: ballot(1 + prng.below(5)),
                entry: entry(prng.below(300) as usize),
            },
        }
    }

    // Goal: the three ways to build the index agree: from `append_placed`, from the
    // written plans, and from recovered records; every entry is the record replay keeps
    // (the latest Learn, else the latest Accept of the highest ballot).
    // Method: random records through GroupCommit; a naive oracle of the same rule.
    #[test]
    fn placed_plans_and_recovery_agree() {
        for seed in 0..50 {
            let mut prng = Prng::new(seed);
            let mut commit = GroupCommit::new(
                GroupCommitConfig {
                    buffer_size_max: 1 << 14,
                    salt: 5,
                    writes_in_flight_max: 1,
                },
                Resume::EMPTY,
            );
            let mut by_placed = LogIndex::new();
            let mut by_plans = LogIndex::new();
            let mut recovered = Vec::new();
            // The record replay keeps: (is a Learn, ballot, offset) of the latest such.
            let mut oracle: BTreeMap<(GroupId, Instance), (bool, Ballot, u64)> = BTreeMap::new();
            for _ in 0..300 {
                let record = random_record(&mut prng);
                let placed = match commit.append_placed(&record) {
                    Ok(placed) => placed,
                    Err(_) => {
                        let plan = commit.take_write().expect("a batch");
                        by_plans.insert_plan(&plan);
                        commit.on_durable(plan.lsn_through);
                        commit.append_placed(&record).expect("fits an empty batch")
                    }
                };
                by_placed.insert(&record, placed);
                recovered.push(RecoveredRecord {
                    offset: placed.offset,
                    lsn: placed.lsn,
                    record: record.clone(),
                });
                let fact = match &record {
                    Record::Accept {
                        group,
                        instance,
                        ballot,
                        ..
                    } => Some(((*group, *instance), (false, *ballot))),
                    Record::Learn {
                        group, instance, ..
                    } => Some(((*group, *instance), (true, Ballot::ZERO))),
                    _ => None,
                };
                if let Some((key, (learn, ballot))) = fact {
                    let keep_old = oracle.get(&key).is_some_and(|(old_learn, old_ballot, _)| {
                        !learn && (*old_learn || *old_ballot > ballot)
                    });
                    if !keep_old {
                        oracle.insert(key, (learn, ballot, placed.offset));
                    }
                }
            }
            if let Some(plan) = commit.take_write() {
                by_plans.insert_plan(&plan);
            }
            by_placed.invariants();
            assert_eq!(by_placed, by_plans, "seed {seed}");
            assert_eq!(
                by_placed,
                LogIndex::from_recovered(&recovered),
                "seed {seed}"
            );
            let indexed: BTreeMap<(GroupId, Instance), (bool, Ballot, u64)> = by_placed
                .groups()
                .flat_map(|(g, i)| {
                    i.iter().map(move |(n, e)| {
                        ((g, n), (e.kind() == Kind::Learn, e.ballot(), e.offset))
                    })
                })
                .collect();
            assert_eq!(indexed, oracle, "seed {seed}");
        }
    }

    // Goal: releasing drops exactly the instances at or below the floor, keeps holes
    // out of the front, and ignores records below the floor afterwards.
    // Method: index instances 1..=10 except 6, release through 5, insert at 3 and 12.
    #[test]
    fn release_moves_the_floor() {
        let mut index = LogIndex::new();
        let group = GroupId(1);
        for (lsn, instance) in (1..=10).filter(|i| *i != 6).enumerate() {
            let record = Record::Learn {
                group,
                instance: Instance(instance),
                entry: entry(1),
            };
            let placed = Placed {
                lsn: Lsn(lsn as u64 + 1),
                offset: 100 * lsn as u64,
                size: 72,
            };
            index.insert(&record, placed);
        }
        index.release_through(group, Instance(5));
        index.invariants();
        let g = index.group(group).expect("indexed");
        assert_eq!(
            g.iter().map(|(i, _)| i.0).collect::<Vec<_>>(),
            [7, 8, 9, 10]
        );
        assert_eq!(g.slot_count(), 4);
        let placed = Placed {
            lsn: Lsn(20),
            offset: 5000,
            size: 72,
        };
        for instance in [3, 12] {
            let record = Record::Learn {
                group,
                instance: Instance(instance),
                entry: entry(1),
            };
            index.insert(&record, placed);
        }
        index.invariants();
        let g = index.group(group).expect("indexed");
        assert_eq!(
            g.iter().map(|(i, _)| i.0).collect::<Vec<_>>(),
            [7, 8, 9, 10, 12]
        );
        assert_eq!(g.get(Instance(11)), None);
        assert_eq!(
            g.range_from(Instance(9))
                .map(|(i, _)| i.0)
                .collect::<Vec<_>>(),
            [9, 10, 12]
        );
        assert_eq!(g.floor(), Instance(5));
    }

    fn learn_at(index: &mut LogIndex, group: GroupId, instance: u64) {
        let record = Record::Learn {
            group,
            instance: Instance(instance),
            entry: entry(1),
        };
        let placed = Placed {
            lsn: Lsn(instance),
            offset: 100 * instance,
            size: 72,
        };
        index.insert(&record, placed);
    }

    // Goal: a steady cycle (fill, release below a checkpoint, fill again) reuses the
    // slots' capacity instead of shrinking and regrowing it, and a cycle far smaller
    // than the capacity gives most of it back; the bytes stay within a bound of the
    // cycle's size either way.
    // Method: a tail of 100, then 10 cycles of 4,000 instances each released to a
    // tail of 100, the capacity checked after each; then 3 cycles of 100 instances.
    #[test]
    fn release_keeps_the_capacity_of_a_steady_cycle() {
        let mut index = LogIndex::new();
        let group = GroupId(1);
        let mut next = 1;
        for _ in 0..100 {
            learn_at(&mut index, group, next);
            next += 1;
        }
        let mut capacity_first = None;
        for _ in 0..10 {
            for _ in 0..4_000 {
                learn_at(&mut index, group, next);
                next += 1;
            }
            index.release_through(group, Instance(next - 101));
            index.invariants();
            let g = index.group(group).expect("indexed");
            assert_eq!(g.slot_count(), 100);
            let capacity = g.slots.capacity();
            assert!((4_100..=2 * 4_100).contains(&capacity), "{capacity}");
            assert_eq!(*capacity_first.get_or_insert(capacity), capacity);
            assert!(index.memory_size() <= GROUP_INDEX_SIZE + 2 * 4_100 * INDEX_SLOT_SIZE);
        }
        for _ in 0..3 {
            for _ in 0..100 {
                learn_at(&mut index, group, next);
                next += 1;
            }
            index.release_through(group, Instance(next - 11));
        }
        let g = index.group(group).expect("indexed");
        assert_eq!(g.slot_count(), 10);
        assert!(g.slots.capacity() <= 4 * 200, "{}", g.slots.capacity());
    }
}
