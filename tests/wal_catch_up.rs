//! Catch-up reads on real segment files: the per-group index finds each group's records
//! after a reopen, and reads planned from it (`Store::plan_read`, `CatchUpRead::run`: what
//! a peer's catch-up and compaction read) return them byte for byte, verifiable with
//! their segment's salt, across segment boundaries.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use synod::paxos::{Ballot, Body, Entry, GroupId, Instance, NodeId, Record};
use synod::wal::dma_disk::run_local;
use synod::wal::segment::SegmentGeometry;
use synod::wal::store::{recover_dir, Store, StoreConfig};
use synod::wal::{decode, Content, DecodeLimits, Kind, BLOCK_SIZE};

const GROUPS: u32 = 4;
const INSTANCES: u64 = 150;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        shard: 1,
        geometry: SegmentGeometry::new(16 * BLOCK_SIZE as u64),
        limits: DecodeLimits::default(),
        spare_count_min: 2,
    }
}

fn ballot(round: u64) -> Ballot {
    Ballot {
        round,
        node: NodeId(2),
    }
}

fn value(group: u32, instance: u64, round: u64) -> Entry {
    let size = ((group as u64 * 7919 + instance * 104_729 + round) % 700) as usize;
    let byte = (group as u64 + instance + round) as u8;
    Entry {
        origin: ballot(round),
        body: Body::Values(smallvec::smallvec![Bytes::from(vec![byte; size])]),
    }
}

/// The workload, in log order: per instance, every group accepts in round 1; every 5th
/// instance is accepted again in round 2 (the latest wins); every 3rd is then learned
/// (a Learn is kept over later Accepts); promises and chosen watermarks in between.
fn workload() -> Vec<Record> {
    let mut records = Vec::new();
    for instance in 1..=INSTANCES {
        for g in 1..=GROUPS {
            let group = GroupId(g);
            let at = Instance(instance);
            records.push(Record::Accept {
                group,
                instance: at,
                ballot: ballot(1),
                entry: value(g, instance, 1),
            });
            if instance % 5 == 0 {
                records.push(Record::Accept {
                    group,
                    instance: at,
                    ballot: ballot(2),
                    entry: value(g, instance, 2),
                });
            }
            if instance % 3 == 0 {
                records.push(Record::Learn {
                    group,
                    instance: at,
                    entry: value(g, instance, 2),
                });
            }
            if instance % 7 == 0 {
                records.push(Record::Accept {
                    group,
                    instance: at,
                    ballot: ballot(3),
                    entry: value(g, instance, 3),
                });
                records.push(Record::Chosen {
                    group,
                    through: Instance(instance - 1),
                });
                records.push(Record::Promise {
                    group,
                    ballot: ballot(instance),
                });
            }
        }
    }
    records
}

/// What the index must name per (group, instance): the latest Accept or Learn, a Learn
/// never replaced by an Accept.
fn expected(records: &[Record]) -> BTreeMap<(GroupId, Instance), Record> {
    let mut out: BTreeMap<(GroupId, Instance), Record> = BTreeMap::new();
    for record in records {
        if let Record::Accept {
            group, instance, ..
        }
        | Record::Learn {
            group, instance, ..
        } = record
        {
            let keep = matches!(out.get(&(*group, *instance)), Some(Record::Learn { .. }))
                && matches!(record, Record::Accept { .. });
            if !keep {
                out.insert((*group, *instance), record.clone());
            }
        }
    }
    out
}

/// Appends `records` to the log in `dir` (new), returns the index's view of it.
async fn write(dir: PathBuf, records: Vec<Record>) -> Vec<(GroupId, Instance, u64)> {
    let config = config(&dir);
    let recovery = recover_dir(&config).expect("read");
    let mut store = Store::prepare(config.clone(), &recovery)
        .await
        .expect("prepare");
    let mut commit = recovery.group_commit(config.geometry, 4 * BLOCK_SIZE, 77);
    for record in &records {
        if commit.append(record).is_err() {
            let plan = commit.take_write().expect("a batch");
            store.write(&plan).await.expect("write");
            commit.on_durable(plan.lsn_through);
            commit.append(record).expect("fits an empty batch");
        }
    }
    let plan = commit.take_write().expect("a batch");
    store.write(&plan).await.expect("write");
    commit.on_durable(plan.lsn_through);
    let view = index_view(&store);
    store.close().await.expect("close");
    view
}

fn index_view(store: &Store) -> Vec<(GroupId, Instance, u64)> {
    store
        .index()
        .groups()
        .flat_map(|(g, index)| index.iter().map(move |(i, e)| (g, i, e.offset)))
        .collect()
}

// Goal: after a reopen, catch-up reads by index return exactly the latest record of each
// instance, byte for byte, verifiable with its segment's salt, including ranges that span
// segments and budgets that cut a range anywhere.
// Method: 4 groups x 150 instances with re-accepts and learns into 64 KiB segments;
// reopen; read every group from several starting instances with several budgets,
// continuing from the last instance returned; decode each record under its salt.
#[test]
fn catch_up_reads_by_index_across_segments() {
    let dir = std::env::temp_dir().join(format!("synod-catch-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let records = workload();
    let expected = expected(&records);
    let written = run_local(write(dir.clone(), records)).expect("executor");

    let (reopened, reads) = run_local({
        let dir = dir.clone();
        async move {
            let config = config(&dir);
            let recovery = recover_dir(&config).expect("read");
            assert!(recovery.corruption().is_none(), "{:?}", recovery.decision);
            let store = Store::prepare(config, &recovery).await.expect("prepare");
            let mut reads = Vec::new();
            for g in 1..=GROUPS {
                for (from, budget) in [(1, 1), (1, 3000), (40, 20_000), (100, 1 << 20)] {
                    let mut next = Instance(from);
                    let mut chunks = Vec::new();
                    loop {
                        // As a catch-up read plans: the records from `next` on, the
                        // first whatever its size, until the budget is spent.
                        let index = store.index().group(GroupId(g)).expect("indexed");
                        let mut wanted = Vec::new();
                        let mut total = 0usize;
                        for (instance, entry) in index.range_from(next) {
                            if !wanted.is_empty() && total + entry.size as usize > budget {
                                break;
                            }
                            total += entry.size as usize;
                            wanted.push((GroupId(g), instance, entry));
                        }
                        let Some(&(_, last, _)) = wanted.last() else {
                            break;
                        };
                        let got = store.plan_read(&wanted).run().await.expect("read");
                        assert_eq!(got.len(), wanted.len());
                        for read in got {
                            chunks.push((read.salt, read.bytes().to_vec()));
                        }
                        next = Instance(last.0 + 1);
                    }
                    reads.push((GroupId(g), from, chunks));
                }
            }
            let view = index_view(&store);
            store.close().await.expect("close");
            (view, reads)
        }
    })
    .expect("executor");
    assert_eq!(
        reopened, written,
        "the index rebuilt by recovery is the written one"
    );

    let limits = DecodeLimits::default();
    let mut salts = std::collections::BTreeSet::new();
    for (group, from, chunks) in reads {
        let mut instances = Vec::new();
        for (salt, bytes) in &chunks {
            salts.insert(*salt);
            let (decoded, size) = decode(bytes, *salt, &limits).expect("verifies");
            assert_eq!(size, bytes.len(), "one whole record");
            let Content::Record(record) = decoded.content else {
                panic!("a pad read");
            };
            let instance = match &record {
                Record::Accept { instance, .. } | Record::Learn { instance, .. } => *instance,
                other => panic!("{:?} read", Kind::of(other)),
            };
            assert_eq!(record.group(), group);
            assert_eq!(Some(&record), expected.get(&(group, instance)));
            instances.push(instance.0);
        }
        let all: Vec<u64> = (from..=INSTANCES).collect();
        assert_eq!(instances, all, "group {} from {from}", group.0);
    }
    assert!(salts.len() >= 5, "reads spanned {} segments", salts.len());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
