//! Truncation and compaction on real segment files: under a steady workload with moving
//! per-group watermarks the log's files stay bounded, and a reopened truncated log
//! replays to the same per-group state (above the watermarks) as the whole log would.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use synod::paxos::{Ballot, Body, Entry, GroupId, Instance, Lsn, NodeId, Record};
use synod::wal::compaction::CompactionConfig;
use synod::wal::dma_disk::run_local;
use synod::wal::segment::{parse_segment_file_name, LogDecision, SegmentGeometry};
use synod::wal::store::{recover_dir, Store, StoreConfig};
use synod::wal::{replay, DecodeLimits, GroupCommit, RecoveredGroup, RecoveredRecord, BLOCK_SIZE};

const SEGMENT_SIZE: u64 = 16 * BLOCK_SIZE as u64;
const BUSY: u32 = 4;
const IDLE: GroupId = GroupId(100);
const STRAGGLER: GroupId = GroupId(101);
/// Instances each busy group keeps above its watermark.
const LIVE_INSTANCES: u64 = 50;
/// Segments' worth of appends the workload writes.
const SEGMENTS_WRITTEN: u64 = 200;
/// The bound asserted on segment files in the directory (used + spares + leftovers).
const FILES_MAX: usize = 8;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        shard: 0,
        geometry: SegmentGeometry::new(SEGMENT_SIZE),
        limits: DecodeLimits::default(),
        spare_count_min: 2,
    }
}

fn ballot(round: u64) -> Ballot {
    Ballot {
        round,
        node: NodeId(1),
    }
}

fn value(group: GroupId, instance: u64, round: u64) -> Entry {
    let mut bytes = vec![0u8; 300];
    bytes[..8].copy_from_slice(&instance.to_le_bytes());
    bytes[8..12].copy_from_slice(&group.0.to_le_bytes());
    bytes[12..20].copy_from_slice(&round.to_le_bytes());
    Entry {
        origin: ballot(round),
        body: Body::Values(smallvec::smallvec![Bytes::from(bytes)]),
    }
}

/// Per group: promised, chosen_through, and per instance above the watermark the
/// learned value or else the accepted (ballot, value).
type Normal = BTreeMap<
    GroupId,
    (
        Ballot,
        Instance,
        BTreeMap<Instance, (Option<Ballot>, Entry)>,
    ),
>;

fn normalise(
    groups: &BTreeMap<GroupId, RecoveredGroup>,
    watermarks: &BTreeMap<GroupId, Instance>,
) -> Normal {
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
            (*group, (state.promised, state.chosen_through, facts))
        })
        .collect()
}

fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("list")
        .flatten()
        .filter(|e| parse_segment_file_name(&e.file_name().to_string_lossy()).is_some())
        .count()
}

/// The shard's side: GroupCommit, the store, and every record appended (the whole log).
struct Shard {
    commit: GroupCommit,
    store: Store,
    appended: Vec<Record>,
}

impl Shard {
    async fn open(dir: &Path, seed: u64) -> (Shard, synod::wal::segment::LogRecovery) {
        let config = config(dir);
        let recovery = recover_dir(&config).expect("read");
        let store = Store::prepare(config.clone(), &recovery)
            .await
            .expect("prepare");
        let commit = recovery.group_commit(config.geometry, 4 * BLOCK_SIZE, seed);
        let shard = Shard {
            commit,
            store,
            appended: Vec::new(),
        };
        (shard, recovery)
    }

    async fn append(&mut self, record: Record) {
        if self.commit.append(&record).is_err() {
            self.flush().await;
            self.commit.append(&record).expect("fits an empty batch");
        }
        self.appended.push(record);
    }

    async fn flush(&mut self) {
        if let Some(plan) = self.commit.take_write() {
            self.store.write(&plan).await.expect("write");
            self.commit.on_durable(plan.lsn_through);
            self.commit.recycle(plan.bytes);
        }
    }
}

struct Outcome {
    files_max: usize,
    inline_spares: u64,
    recycled: usize,
    deleted: usize,
    rewritten: usize,
    appended: Vec<Record>,
    watermarks: BTreeMap<GroupId, Instance>,
    lsn_through: Lsn,
    index_size: usize,
    index_slots: usize,
}

/// Busy groups append accepts (with chosen watermarks, learns and promises now and
/// then) while their watermarks trail by `LIVE_INSTANCES`; an idle group's promise and
/// a straggler's two accepts (watermark 0) stay needed forever and must be compacted
/// forward. Every 4 batches the driver truncates and appends the rewrites.
async fn workload(dir: PathBuf) -> Outcome {
    let (mut shard, _) = Shard::open(&dir, 1).await;
    shard
        .append(Record::Promise {
            group: IDLE,
            ballot: ballot(7),
        })
        .await;
    for instance in 1..=2 {
        shard
            .append(Record::Accept {
                group: STRAGGLER,
                instance: Instance(instance),
                ballot: ballot(2),
                entry: value(STRAGGLER, instance, 2),
            })
            .await;
    }
    let payload = SEGMENT_SIZE - BLOCK_SIZE as u64;
    let mut watermarks: BTreeMap<GroupId, Instance> = BTreeMap::new();
    let compaction = CompactionConfig::default();
    let mut outcome = Outcome {
        files_max: 0,
        inline_spares: 0,
        recycled: 0,
        deleted: 0,
        rewritten: 0,
        appended: Vec::new(),
        watermarks: BTreeMap::new(),
        lsn_through: Lsn(0),
        index_size: 0,
        index_slots: 0,
    };
    let mut instance = 0u64;
    let mut round = 1u64;
    let mut batches = 0u64;
    while shard.commit.offset_next() < SEGMENTS_WRITTEN * payload {
        instance += 1;
        if instance % 97 == 0 {
            round += 1;
        }
        for g in 1..=BUSY {
            let group = GroupId(g);
            if instance % 97 == 0 {
                shard
                    .append(Record::Promise {
                        group,
                        ballot: ballot(round),
                    })
                    .await;
            }
            shard
                .append(Record::Accept {
                    group,
                    instance: Instance(instance),
                    ballot: ballot(round),
                    entry: value(group, instance, round),
                })
                .await;
            if instance % 10 == 0 {
                shard
                    .append(Record::Chosen {
                        group,
                        through: Instance(instance - 2),
                    })
                    .await;
            }
            if instance % 25 == 0 {
                shard
                    .append(Record::Learn {
                        group,
                        instance: Instance(instance - 5),
                        entry: value(group, instance - 5, round),
                    })
                    .await;
            }
            watermarks.insert(group, Instance(instance.saturating_sub(LIVE_INSTANCES)));
        }
        if instance % 3 == 0 {
            shard.flush().await;
            batches += 1;
            if batches % 4 == 0 {
                let truncation = shard
                    .store
                    .truncate(&watermarks, &compaction)
                    .await
                    .expect("truncate");
                outcome.recycled += truncation.recycled_count;
                outcome.deleted += truncation.deleted_count;
                outcome.rewritten += truncation.rewrites.len();
                for record in truncation.rewrites {
                    shard.append(record).await;
                }
            } else {
                let (recycled, deleted, _) = shard.store.prepare_spares().await.expect("spares");
                outcome.recycled += recycled;
                outcome.deleted += deleted;
            }
            outcome.files_max = outcome.files_max.max(segment_files(&dir));
        }
    }
    shard.flush().await;
    outcome.inline_spares = shard.store.inline_spare_count;
    outcome.index_size = shard.store.index().memory_size();
    outcome.index_slots = shard
        .store
        .index()
        .groups()
        .map(|(_, g)| g.slot_count())
        .sum();
    outcome.lsn_through = shard.commit.durable_through();
    shard.store.close().await.expect("close");
    outcome.appended = shard.appended;
    outcome.watermarks = watermarks;
    outcome
}

fn as_recovered(records: &[Record]) -> Vec<RecoveredRecord> {
    records
        .iter()
        .enumerate()
        .map(|(i, record)| RecoveredRecord {
            offset: 0,
            lsn: Lsn(i as u64 + 1),
            record: record.clone(),
        })
        .collect()
}

// Goal: disk usage stays bounded under a steady workload with moving watermarks
// (compaction moves what idle groups pin), and reopening the truncated log recovers the
// same per-group state as replaying the whole, untruncated log, above the watermarks;
// the reopened log continues.
// Method: 200 segments of appends into 64 KiB segments, truncating every 4 batches;
// count segment files after every batch; reopen, replay, compare; append and reopen.
#[test]
fn bounded_disk_and_same_state_after_truncation() {
    let dir = std::env::temp_dir().join(format!("synod-truncate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = run_local(workload(dir.clone())).expect("executor");
    println!(
        "files max {}, recycled {}, deleted {}, rewritten {} of {} records, inline spares {}, \
         index {} bytes for {} slots",
        outcome.files_max,
        outcome.recycled,
        outcome.deleted,
        outcome.rewritten,
        outcome.appended.len(),
        outcome.inline_spares,
        outcome.index_size,
        outcome.index_slots
    );
    assert!(
        outcome.files_max <= FILES_MAX,
        "{} segment files on disk for {SEGMENTS_WRITTEN} segments written",
        outcome.files_max
    );
    assert!(outcome.recycled > 0 && outcome.rewritten > 0);
    assert_eq!(outcome.inline_spares, 0, "every roll found a spare ready");

    let recovery = recover_dir(&config(&dir)).expect("read");
    assert_eq!(recovery.decision, LogDecision::Clean);
    assert!(
        recovery.log_start > SEGMENTS_WRITTEN / 2,
        "{}",
        recovery.log_start
    );
    assert_eq!(recovery.lsn_through, outcome.lsn_through);
    let first_lsn = recovery.records.first().map(|r| r.lsn).expect("records");
    assert!(first_lsn.0 > 1000, "the log starts at LSN {}", first_lsn.0);
    let whole = normalise(
        &replay(&as_recovered(&outcome.appended)),
        &outcome.watermarks,
    );
    let truncated = normalise(&replay(&recovery.records), &outcome.watermarks);
    assert_eq!(truncated.len(), whole.len());
    assert_eq!(truncated, whole);
    assert!(whole[&IDLE].0 == ballot(7) && whole[&STRAGGLER].2.len() == 2);

    // The truncated log reopens, continues and reopens again.
    let lsn = run_local({
        let dir = dir.clone();
        async move {
            let (mut shard, recovery) = Shard::open(&dir, 2).await;
            assert_eq!(recovery.decision, LogDecision::Clean);
            for instance in 1..=200 {
                shard
                    .append(Record::Learn {
                        group: GroupId(9),
                        instance: Instance(instance),
                        entry: value(GroupId(9), instance, 1),
                    })
                    .await;
            }
            shard.flush().await;
            let lsn = shard.commit.durable_through();
            shard.store.close().await.expect("close");
            lsn
        }
    })
    .expect("executor");
    let again = recover_dir(&config(&dir)).expect("read");
    assert_eq!(
        (again.decision, again.lsn_through),
        (LogDecision::Clean, lsn)
    );
    assert_eq!(lsn.0, outcome.lsn_through.0 + 200);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
