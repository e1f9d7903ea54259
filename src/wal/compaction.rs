//! Truncation and compaction planning, pure: from the per-group index (`wal::index`) and
//! per-group watermarks, which prefix of segments the log no longer needs, and which
//! few records to rewrite forward so that the oldest needed segment stops being needed.
//! The store executes the plan (`file::store::Store::truncate`, called by the driver
//! with the shard's watermarks; the simulator runs `plan` over its own index); the
//! rules and the recovery side are in `schema/wal.md` (Truncation).
//!
//! A group's *watermark* is the instance through which a checkpoint covers it: its
//! records of instances at or below it are not needed. Segment `s` is *needed* while it
//! holds, for some group, (a) the latest record (per the index) of an instance above the
//! watermark, (b) the record carrying the group's highest promised ballot (a Promise or
//! an Accept: `replay` takes the maximum of both), (c) the record carrying its highest
//! Chosen watermark, or (d) the record carrying its highest Installed (a checkpoint
//! installed from a peer: `replay` must still see it, or a restart would take the
//! voided records at or below it for evidence). The log may start at the first needed segment (never beyond the
//! segment being written).
//!
//! Invariants (asserted in `plan`): `log_start` never decreases; a compaction names only
//! records of the segment `log_start`, and only when it is below the segment being
//! written; after every rewrite of a plan is appended, that segment is no longer needed
//! (`tests::compaction_frees_the_oldest_segment`).

use super::index::{IndexEntry, LogIndex};
use super::layout::HEADER_SIZE;
use crate::paxos::{GroupId, Instance, Record};
use std::collections::BTreeMap;

/// When to compact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionConfig {
    /// Compact the oldest needed segment when the bytes of its needed records are at
    /// most this many parts per million of the segment's payload (0: never compact).
    /// Higher frees segments sooner and rewrites more bytes.
    pub pinned_ppm_max: u32,
}

impl Default for CompactionConfig {
    fn default() -> CompactionConfig {
        // 5 %: a segment's worth of log is rewritten at most once per 20 segments freed.
        CompactionConfig {
            pinned_ppm_max: 50_000,
        }
    }
}

/// A record to append again (through `GroupCommit`) so that an old segment stops being
/// needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// The group's state: a Promise of its highest ballot, a Chosen of its highest
    /// watermark, or an Installed of its highest install. Always safe to append (replay takes maxima).
    State(Record),
    /// A copy of the indexed Accept or Learn of `instance` (at `entry`), to read from the
    /// log and append unchanged. Safe even when a newer record of the instance is
    /// appended first: the index, like `replay`, keeps the highest-ballot Accept (and any
    /// Learn), so a stale copy never becomes the needed record.
    Copy {
        /// The group.
        group: GroupId,
        /// The instance.
        instance: Instance,
        /// Where the original lies.
        entry: IndexEntry,
    },
}

/// What `plan` decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruncationPlan {
    /// The first needed segment (or the segment being written): every segment below it
    /// may be deleted once a header naming it is durable.
    pub log_start: u64,
    /// Bytes of needed records in segment `log_start` (0 when it is the one being
    /// written and holds none).
    pub pinned_size: u64,
    /// Records to append so that segment `log_start` stops being needed: empty unless
    /// it is below the segment being written and `pinned_size` is within
    /// `CompactionConfig::pinned_ppm_max`.
    pub rewrites: Vec<Rewrite>,
    /// Log offset of the needed record with the lowest offset, in any segment (`None`
    /// when no record is needed): no record recovery needs lies below it
    /// (`wal::log_head`).
    pub head: Option<u64>,
}

/// Plans truncation. `log_start` is the log's current first segment, `current` the
/// segment being written (`log_start <= current`), `payload_size` the segment payload
/// (`SegmentGeometry::payload_size`). Groups absent from `watermarks` have watermark 0.
#[must_use]
pub fn plan(
    index: &LogIndex,
    watermarks: &BTreeMap<GroupId, Instance>,
    payload_size: u64,
    log_start: u64,
    current: u64,
    config: &CompactionConfig,
) -> TruncationPlan {
    assert!(
        log_start <= current,
        "log_start {log_start} above the segment being written {current}"
    );
    assert!(payload_size > 0);
    let segment_of = |offset: u64| offset / payload_size;
    // Needed bytes per segment below `current` (segments at or above it are kept anyway).
    let mut pinned: BTreeMap<u64, u64> = BTreeMap::new();
    let mut head: Option<u64> = None;
    let mut pin = |offset: u64, size: u64| {
        if head.is_none_or(|h| offset < h) {
            head = Some(offset);
        }
        let segment = segment_of(offset);
        if segment < current {
            *pinned.entry(segment).or_default() += size;
        }
    };
    for (group, group_index) in index.groups() {
        let watermark = watermarks.get(&group).copied().unwrap_or(Instance(0));
        for (_, entry) in group_index.range_from(Instance(watermark.0.saturating_add(1))) {
            pin(entry.offset, u64::from(entry.size));
        }
        if let (_, Some(at)) = group_index.promised() {
            pin(at.offset, HEADER_SIZE as u64);
        }
        if let (_, Some(at)) = group_index.chosen() {
            pin(at.offset, HEADER_SIZE as u64);
        }
        if let (_, Some(at)) = group_index.installed() {
            pin(at.offset, HEADER_SIZE as u64);
        }
    }
    let first_needed = pinned
        .range(log_start..)
        .next()
        .map_or(current, |(segment, _)| *segment);
    let pinned_size = pinned.get(&first_needed).copied().unwrap_or(0);
    let size_max = u128::from(payload_size) * u128::from(config.pinned_ppm_max) / 1_000_000;
    let mut rewrites = Vec::new();
    if first_needed < current && u128::from(pinned_size) <= size_max {
        for (group, group_index) in index.groups() {
            let watermark = watermarks.get(&group).copied().unwrap_or(Instance(0));
            let (promised, promised_at) = group_index.promised();
            if promised_at.is_some_and(|at| segment_of(at.offset) == first_needed) {
                rewrites.push(Rewrite::State(Record::Promise {
                    group,
                    ballot: promised,
                }));
            }
            let (through, chosen_at) = group_index.chosen();
            if chosen_at.is_some_and(|at| segment_of(at.offset) == first_needed) {
                rewrites.push(Rewrite::State(Record::Chosen { group, through }));
            }
            let (through, installed_at) = group_index.installed();
            if installed_at.is_some_and(|at| segment_of(at.offset) == first_needed) {
                rewrites.push(Rewrite::State(Record::Installed { group, through }));
            }
            for (instance, entry) in group_index.range_from(Instance(watermark.0.saturating_add(1)))
            {
                if segment_of(entry.offset) == first_needed {
                    rewrites.push(Rewrite::Copy {
                        group,
                        instance,
                        entry,
                    });
                }
            }
        }
        assert!(!rewrites.is_empty(), "a needed segment pins some record");
    }
    TruncationPlan {
        log_start: first_needed,
        pinned_size,
        rewrites,
        head,
    }
}

/// The group state records to append so that the log head (`TruncationPlan::head`)
/// can move up to the lowest needed Accept or Learn: a Promise of the group's highest
/// ballot, a Chosen of its highest watermark or an Installed of its highest install,
/// for each of those whose record lies below every needed entry record. A stable
/// leader never writes a new Promise, so without this its election's Promise would
/// hold the head at the log's first bytes forever. Always safe to append (replay takes
/// maxima); once they are durable, the next plan's head is past the old ones. Empty
/// when no entry record is needed (nothing to move the head to). Each group's state
/// records then lie above its entries, so they are rewritten again only after the
/// suffix of needed entries has moved past them.
#[must_use]
pub fn head_rewrites(index: &LogIndex, watermarks: &BTreeMap<GroupId, Instance>) -> Vec<Record> {
    let mut lowest_entry: Option<u64> = None;
    for (group, group_index) in index.groups() {
        let watermark = watermarks.get(&group).copied().unwrap_or(Instance(0));
        for (_, entry) in group_index.range_from(Instance(watermark.0.saturating_add(1))) {
            lowest_entry = Some(lowest_entry.map_or(entry.offset, |l| l.min(entry.offset)));
        }
    }
    let Some(lowest_entry) = lowest_entry else {
        return Vec::new();
    };
    let below = |at: Option<super::index::Pin>| at.is_some_and(|at| at.offset < lowest_entry);
    let mut rewrites = Vec::new();
    for (group, group_index) in index.groups() {
        let (ballot, promised_at) = group_index.promised();
        if below(promised_at) {
            rewrites.push(Record::Promise { group, ballot });
        }
        let (through, chosen_at) = group_index.chosen();
        if below(chosen_at) {
            rewrites.push(Record::Chosen { group, through });
        }
        let (through, installed_at) = group_index.installed();
        if below(installed_at) {
            rewrites.push(Record::Installed { group, through });
        }
    }
    rewrites
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::paxos::{Ballot, Body, Entry, NodeId};
    use crate::prng::Prng;
    use crate::wal::recovery::RecoveredRecord;
    use crate::wal::replay::{replay, RecoveredGroup};
    use crate::wal::{GroupCommit, GroupCommitConfig, Resume, SegmentPlacement, BLOCK_SIZE};
    use bytes::Bytes;

    const PAYLOAD: u64 = 4 * BLOCK_SIZE as u64;

    /// What a group's replayed state says about instances above `watermark`: promised,
    /// chosen, installed, and per instance the learned value or else the accepted
    /// (ballot, value).
    pub(crate) type Normal = (
        Ballot,
        Instance,
        Instance,
        BTreeMap<Instance, (Option<Ballot>, Entry)>,
    );

    pub(crate) fn normalise(
        groups: &BTreeMap<GroupId, RecoveredGroup>,
        watermarks: &BTreeMap<GroupId, Instance>,
    ) -> BTreeMap<GroupId, Normal> {
        groups
            .iter()
            .map(|(group, state)| {
                let watermark = watermarks.get(group).copied().unwrap_or(Instance(0));
                let mut facts = BTreeMap::new();
                for (instance, (ballot, entry)) in &state.accepted {
                    if *instance > watermark {
                        facts.insert(*instance, (Some(*ballot), entry.clone()));
                    }
                }
                for (instance, entry) in &state.learned {
                    if *instance > watermark {
                        facts.insert(*instance, (None, entry.clone()));
                    }
                }
                (
                    *group,
                    (
                        state.promised,
                        state.chosen_through,
                        state.installed_through,
                        facts,
                    ),
                )
            })
            .collect()
    }

    /// A log in memory: records with their placement, appended through GroupCommit.
    struct Log {
        commit: GroupCommit,
        records: Vec<RecoveredRecord>,
        index: LogIndex,
    }

    impl Log {
        fn new() -> Log {
            Log {
                commit: GroupCommit::segmented(
                    GroupCommitConfig {
                        buffer_size_max: 2 * BLOCK_SIZE,
                        salt: 0,
                        writes_in_flight_max: 1,
                    },
                    Resume::EMPTY,
                    SegmentPlacement {
                        payload_size: PAYLOAD,
                        salt_seed: 1,
                    },
                ),
                records: Vec::new(),
                index: LogIndex::new(),
            }
        }

        fn append(&mut self, record: Record) {
            let placed = match self.commit.append_placed(&record) {
                Ok(placed) => placed,
                Err(_) => {
                    let plan = self.commit.take_write().expect("a batch");
                    self.commit.on_durable(plan.lsn_through);
                    self.commit.append_placed(&record).expect("fits")
                }
            };
            self.index.insert(&record, placed);
            self.records.push(RecoveredRecord {
                offset: placed.offset,
                lsn: placed.lsn,
                record,
            });
        }

        fn current(&self) -> u64 {
            self.records.last().map_or(0, |r| r.offset / PAYLOAD)
        }

        /// Appends a plan's rewrites as a shard would.
        fn apply(&mut self, rewrites: &[Rewrite]) {
            for rewrite in rewrites {
                match rewrite {
                    Rewrite::State(record) => self.append(record.clone()),
                    Rewrite::Copy { entry, .. } => {
                        let original = self
                            .records
                            .iter()
                            .find(|r| r.offset == entry.offset)
                            .expect("the original")
                            .record
                            .clone();
                        self.append(original);
                    }
                }
            }
        }
    }

    fn ballot(round: u64) -> Ballot {
        Ballot {
            round,
            node: NodeId(1),
        }
    }

    pub(crate) fn random_record(prng: &mut Prng, groups: u32, instances: u64) -> Record {
        let group = GroupId(1 + prng.below(u64::from(groups)) as u32);
        let instance = Instance(1 + prng.below(instances));
        let entry = Entry {
            origin: ballot(1),
            body: Body::Values(smallvec::smallvec![Bytes::from(vec![
                prng.below(256) as u8;
                prng.below(400)
                    as usize
            ])]),
        };
        match prng.below(10) {
            0 => Record::Promise {
                group,
                ballot: ballot(prng.below(20)),
            },
            1 => Record::Chosen {
                group,
                through: instance,
            },
            2 if prng.below(4) == 0 => Record::Installed {
                group,
                through: instance,
            },
            2 | 3 => Record::Learn {
                group,
                instance,
                entry,
            },
            _ => Record::Accept {
                group,
                instance,
                ballot: ballot(1 + prng.below(20)),
                entry,
            },
        }
    }

    // Goal: the plan is safe (deleting the segments below `log_start` changes no group's
    // state above its watermark) and tight (segment `log_start`, when below the one being
    // written, is needed: deleting it too would change some state).
    // Method: 400 seeded random logs of 1..5 groups, random watermarks; replay the log
    // with and without the segments (and without the records below the plan's head),
    // compare the normalised states.
    #[test]
    fn plan_is_safe_and_tight() {
        for seed in 0..400 {
            let mut prng = Prng::new(seed);
            let groups = 1 + prng.below(5) as u32;
            let instances = 1 + prng.below(60);
            let mut log = Log::new();
            for _ in 0..prng.range(1, 400) {
                log.append(random_record(&mut prng, groups, instances));
            }
            let mut watermarks: BTreeMap<GroupId, Instance> = BTreeMap::new();
            for g in 1..=groups {
                if prng.coin() {
                    watermarks.insert(GroupId(g), Instance(prng.below(instances + 2)));
                }
            }
            let current = log.current();
            let plan = plan(
                &log.index,
                &watermarks,
                PAYLOAD,
                0,
                current,
                &CompactionConfig::default(),
            );
            assert!(plan.log_start <= current);
            let full = normalise(&replay(&log.records), &watermarks);
            let from = |segment: u64| {
                normalise(
                    &replay(log.records.iter().filter(|r| r.offset / PAYLOAD >= segment)),
                    &watermarks,
                )
            };
            assert_eq!(from(plan.log_start), full, "seed {seed}: unsafe");
            // The head: a record's offset in segment `log_start`, and the log from it
            // on replays to the same state.
            if let Some(head) = plan.head {
                assert!(log.records.iter().any(|r| r.offset == head), "seed {seed}");
                assert_eq!(head / PAYLOAD, plan.log_start, "seed {seed}");
                let from_head = normalise(
                    &replay(log.records.iter().filter(|r| r.offset >= head)),
                    &watermarks,
                );
                assert_eq!(from_head, full, "seed {seed}: head unsafe");
            } else {
                assert_eq!(plan.log_start, current, "seed {seed}");
            }
            if plan.log_start < current {
                assert_ne!(from(plan.log_start + 1), full, "seed {seed}: not tight");
                assert!(plan.pinned_size > 0);
            }
        }
    }

    // Goal: a stable leader's old Promise and Chosen no longer hold the log head: after
    // `head_rewrites` are appended the head is the lowest needed entry, and the log from
    // it replays to the full state.
    // Method: a Promise and a Chosen, then 300 Accepts of one group; watermark 250; plan,
    // append the head rewrites, plan again.
    #[test]
    fn head_rewrites_let_the_head_pass_old_state() {
        let mut log = Log::new();
        let group = GroupId(1);
        // The Promise's ballot above the Accepts': no Accept carries it.
        log.append(Record::Promise {
            group,
            ballot: ballot(6),
        });
        log.append(Record::Chosen {
            group,
            through: Instance(3),
        });
        for i in 1..=300 {
            log.append(Record::Accept {
                group,
                instance: Instance(i),
                ballot: ballot(5),
                entry: Entry {
                    origin: ballot(5),
                    body: Body::Noop,
                },
            });
        }
        let watermarks: BTreeMap<GroupId, Instance> = [(group, Instance(250))].into();
        let before = plan(
            &log.index,
            &watermarks,
            PAYLOAD,
            0,
            log.current(),
            &CompactionConfig::default(),
        );
        assert_eq!(before.head, Some(0), "the Promise holds the head");
        let moved = head_rewrites(&log.index, &watermarks);
        assert_eq!(moved.len(), 2, "{moved:?}");
        for record in moved {
            log.append(record);
        }
        let after = plan(
            &log.index,
            &watermarks,
            PAYLOAD,
            0,
            log.current(),
            &CompactionConfig::default(),
        );
        let lowest = log
            .records
            .iter()
            .find(|r| matches!(r.record, Record::Accept { instance, .. } if instance.0 == 251))
            .expect("instance 251")
            .offset;
        assert_eq!(after.head, Some(lowest));
        assert!(
            head_rewrites(&log.index, &watermarks).is_empty(),
            "moved once"
        );
        let full = normalise(&replay(&log.records), &watermarks);
        let from_head = normalise(
            &replay(log.records.iter().filter(|r| r.offset >= lowest)),
            &watermarks,
        );
        assert_eq!(from_head, full);
    }

    // Goal: appending a compaction's rewrites frees the compacted segment, and the log
    // without it replays to the same state, also when a copy was made stale by a newer
    // Accept appended before it.
    // Method: an idle group's promise and a straggler's few instances pin segment 0; a busy
    // group with a moving watermark; plan, apply, plan again; also a copy made stale by a
    // newer Accept between planning and appending.
    #[test]
    fn compaction_frees_the_oldest_segment() {
        for seed in 0..200 {
            let mut prng = Prng::new(seed);
            let mut log = Log::new();
            let (idle, busy, straggler) = (GroupId(1), GroupId(2), GroupId(3));
            log.append(Record::Promise {
                group: idle,
                ballot: ballot(3),
            });
            let old = 1 + prng.below(3);
            for instance in 1..=old {
                log.append(Record::Accept {
                    group: straggler,
                    instance: Instance(instance),
                    ballot: ballot(2),
                    entry: Entry {
                        origin: ballot(2),
                        body: Body::Noop,
                    },
                });
            }
            for instance in 1..=200u64 {
                log.append(Record::Accept {
                    group: busy,
                    instance: Instance(instance),
                    ballot: ballot(1),
                    entry: Entry {
                        origin: ballot(1),
                        body: Body::Values(smallvec::smallvec![Bytes::from(vec![1; 200])]),
                    },
                });
            }
            // `busy` is checkpointed through 150; `straggler` not at all.
            let watermarks = BTreeMap::from([(busy, Instance(150)), (idle, Instance(0))]);
            let config = CompactionConfig {
                pinned_ppm_max: 1_000_000,
            };
            let first = plan(&log.index, &watermarks, PAYLOAD, 0, log.current(), &config);
            assert_eq!(first.log_start, 0, "the idle promise pins segment 0");
            let copies = first
                .rewrites
                .iter()
                .filter(|r| matches!(r, Rewrite::Copy { .. }))
                .count();
            assert_eq!(copies as u64, old, "{:?}", first.rewrites);
            let full = normalise(&replay(&log.records), &watermarks);
            if seed % 2 == 1 {
                // A newer Accept of a copied instance lands before the copy is appended.
                for rewrite in &first.rewrites {
                    if let Rewrite::Copy {
                        group, instance, ..
                    } = rewrite
                    {
                        log.append(Record::Accept {
                            group: *group,
                            instance: *instance,
                            ballot: ballot(9),
                            entry: Entry {
                                origin: ballot(9),
                                body: Body::Noop,
                            },
                        });
                    }
                }
            }
            let full = if seed % 2 == 1 {
                normalise(&replay(&log.records), &watermarks)
            } else {
                full
            };
            log.apply(&first.rewrites);
            let second = plan(&log.index, &watermarks, PAYLOAD, 0, log.current(), &config);
            assert!(
                second.log_start > 0,
                "seed {seed}: segment 0 still needed: {second:?}"
            );
            let rest = log
                .records
                .iter()
                .filter(|r| r.offset / PAYLOAD >= second.log_start);
            assert_eq!(
                normalise(&replay(rest), &watermarks),
                full,
                "seed {seed} (old {old})"
            );
        }
    }

    // Goal: a truncation never drops a group's only `Installed` record: compaction
    // carries the highest forward like the highest Chosen, so a restart still sees the
    // install (else it would take the voided records at or below it for evidence).
    // Method: an install's marker in segment 0 beside a busy group's Accepts, all of
    // them below the watermarks; plan with compaction on, append the rewrites, plan
    // again; the log from the new start replays the same `installed_through`.
    #[test]
    fn compaction_carries_the_installed_record_forward() {
        let mut log = Log::new();
        let (installed, busy) = (GroupId(1), GroupId(2));
        log.append(Record::Installed {
            group: installed,
            through: Instance(40),
        });
        for instance in 1..=200u64 {
            log.append(Record::Accept {
                group: busy,
                instance: Instance(instance),
                ballot: ballot(1),
                entry: Entry {
                    origin: ballot(1),
                    body: Body::Values(smallvec::smallvec![Bytes::from(vec![1; 200])]),
                },
            });
        }
        let watermarks = BTreeMap::from([(busy, Instance(150)), (installed, Instance(40))]);
        let config = CompactionConfig {
            pinned_ppm_max: 1_000_000,
        };
        let first = plan(&log.index, &watermarks, PAYLOAD, 0, log.current(), &config);
        assert_eq!(first.log_start, 0, "the Installed record pins segment 0");
        assert_eq!(
            first.rewrites,
            vec![Rewrite::State(Record::Installed {
                group: installed,
                through: Instance(40),
            })]
        );
        log.apply(&first.rewrites);
        let second = plan(&log.index, &watermarks, PAYLOAD, 0, log.current(), &config);
        assert!(second.log_start > 0, "segment 0 still needed: {second:?}");
        let rest = replay(
            log.records
                .iter()
                .filter(|r| r.offset / PAYLOAD >= second.log_start),
        );
        assert_eq!(rest[&installed].installed_through, Instance(40));
        assert_eq!(
            normalise(&rest, &watermarks),
            normalise(&replay(&log.records), &watermarks)
        );
    }
}
