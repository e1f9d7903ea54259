//! Tests of the segment store on real files: spares prepared in slices, and a log
//! written across segment rolls, recovered and continued.

use super::*;
use crate::paxos::{Ballot, GroupId, NodeId, Record};
use crate::wal::dma_disk::run_local;
use crate::wal::record::DecodeLimits;
use crate::wal::segment::LogDecision;
use crate::wal::segment_format::SegmentGeometry;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        shard: 0,
        geometry: SegmentGeometry::new(16 * BLOCK_SIZE as u64),
        limits: DecodeLimits::default(),
        spare_count_min: 2,
    }
}

/// Opens the log in `dir`, appends `batches` batches of 100 promises, closes it.
async fn append(dir: PathBuf, batches: usize, seed: u64) -> Lsn {
    let (lsn, inline) = append_with(dir, batches, seed, None).await;
    assert_eq!(inline, 0, "every roll found a spare");
    lsn
}

/// `append`, with spare maintenance after each batch either whole
/// (`prepare_spares`) or one slice of `slice` bytes (`prepare_spares_slice`, as
/// the driver does). Returns the durable LSN and the rolls that had to finish or
/// create a spare inline.
async fn append_with(dir: PathBuf, batches: usize, seed: u64, slice: Option<u64>) -> (Lsn, u64) {
    let config = config(&dir);
    let recovery = recover_dir(&config).expect("read");
    assert!(recovery.corruption().is_none(), "{:?}", recovery.decision);
    let mut store = Store::prepare(config.clone(), &recovery)
        .await
        .expect("prepare");
    let mut commit = recovery.group_commit(config.geometry, 4 * BLOCK_SIZE, seed);
    for _ in 0..batches {
        for round in 0..100 {
            let record = Record::Promise {
                group: GroupId(1),
                ballot: Ballot {
                    round,
                    node: NodeId(1),
                },
            };
            if commit.append(&record).is_err() {
                // The batch closed early at a segment's end: write it, go on.
                let plan = commit.take_write().expect("a batch");
                store.write(&plan).await.expect("write");
                commit.on_durable(plan.lsn_through);
                commit.append(&record).expect("fits an empty batch");
            }
        }
        let plan = commit.take_write().expect("a batch");
        store.write(&plan).await.expect("write");
        commit.on_durable(plan.lsn_through);
        // The driver's idle work: spares stay ahead, off the write path.
        match slice {
            None => {
                store.prepare_spares().await.expect("spares");
            }
            Some(budget) => {
                store.prepare_spares_slice(budget).await.expect("spares");
            }
        }
    }
    let inline = store.inline_spare_count;
    store.close().await.expect("close");
    (commit.durable_through(), inline)
}

// Goal: spares made a slice at a time (the driver's way) keep the log correct
// whether a roll finds its spare ready, partly filled (finished inline) or missing,
// and a fill left partial at close is harmless.
// Method: 40 batches with one 4 KiB slice after each (a 16-block segment needs 16:
// rolls meet partial fills), then 40 with 64 KiB slices (each fill done in one),
// recovering in between and after.
#[test]
fn spares_in_slices() {
    let dir = std::env::temp_dir().join(format!("synod-store-slices-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (first, inline) =
        run_local(append_with(dir.clone(), 40, 1, Some(BLOCK_SIZE as u64))).expect("executor");
    assert_eq!(first, Lsn(4000));
    assert!(
        inline > 0,
        "tiny slices: some roll finished its spare inline"
    );
    let recovery = recover_dir(&config(&dir)).expect("read");
    assert_eq!(recovery.decision, LogDecision::Clean);
    assert_eq!(recovery.records.len(), 4000);
    let (second, inline) = run_local(append_with(
        dir.clone(),
        40,
        2,
        Some(16 * BLOCK_SIZE as u64),
    ))
    .expect("executor");
    assert_eq!(second, Lsn(8000));
    assert_eq!(inline, 0, "a slice of a whole segment keeps spares ahead");
    let recovery = recover_dir(&config(&dir)).expect("read");
    assert_eq!(recovery.decision, LogDecision::Clean);
    assert_eq!(recovery.records.len(), 8000);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

// Goal: plans land in segment files across rolls, recover cleanly, and a reopened
// log continues; recycling turns every file back into a spare.
// Method: 40 two-block batches into 15-block segments, twice; recover; recycle.
#[test]
fn write_roll_recover_continue() {
    let dir = std::env::temp_dir().join(format!("synod-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = run_local(append(dir.clone(), 40, 1)).expect("executor");
    assert_eq!(first, Lsn(4000));
    let second = run_local(append(dir.clone(), 40, 2)).expect("executor");
    assert_eq!(second, Lsn(8000));
    let recovery = recover_dir(&config(&dir)).expect("read");
    assert_eq!(recovery.decision, LogDecision::Clean);
    assert_eq!(recovery.records.len(), 8000);
    let used = recovery
        .segments
        .iter()
        .filter(|s| s.header.is_some())
        .count();
    assert!(used >= 11, "{used} segments used");
    assert!(recovery.segments.len() >= used + 2, "spares kept ahead");
    let files = recovery.segments.len();
    let recycled = run_local({
        let config = config(&dir);
        async move { recycle_all(&config).await.expect("recycle") }
    })
    .expect("executor");
    assert_eq!(recycled, files);
    let empty = recover_dir(&config(&dir)).expect("read");
    assert_eq!(
        (empty.decision, empty.lsn_through),
        (LogDecision::Clean, Lsn(0))
    );
    assert_eq!(
        run_local(append(dir.clone(), 3, 3)).expect("executor"),
        Lsn(300)
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// An Accept of group 1 at `instance`, in ballot `instance` (so that the highest ballot
/// is the newest record and pins nothing old), with a 40-byte value.
fn accept(instance: u64) -> Record {
    Record::Accept {
        group: GroupId(1),
        instance: crate::paxos::Instance(instance),
        ballot: Ballot {
            round: instance,
            node: NodeId(1),
        },
        entry: crate::paxos::Entry {
            origin: Ballot::ZERO,
            body: crate::paxos::Body::Values(smallvec::smallvec![bytes::Bytes::from(vec![
                7u8;
                40
            ])]),
        },
    }
}

// Goal: after a truncation wrote the log head hint, a restart decodes only the records
// from the lowest needed one on, and replays to the state of the full scan; the hint is
// written only when every write is durable; a damaged hint is refused (full scan) and
// removed by `prepare` before any append.
// Method: 3000 Accepts in 16-block segments, a checkpoint watermark at 2950, truncate;
// recover with and without the hint; then an unsynced write and a truncation (no new
// hint); then flip a byte of the hint file.
#[test]
fn restart_after_truncation_reads_from_the_hint() {
    let dir = std::env::temp_dir().join(format!("synod-store-head-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = config(&dir);
    let watermarks: BTreeMap<GroupId, crate::paxos::Instance> =
        [(GroupId(1), crate::paxos::Instance(2950))].into();
    run_local({
        let config = config.clone();
        let watermarks = watermarks.clone();
        async move {
            let recovery = recover_dir(&config).expect("read");
            let mut store = Store::prepare(config.clone(), &recovery)
                .await
                .expect("prepare");
            let mut commit = recovery.group_commit(config.geometry, 4 * BLOCK_SIZE, 5);
            for instance in 1..=3000 {
                if commit.append(&accept(instance)).is_err() {
                    let plan = commit.take_write().expect("a batch");
                    store.write(&plan).await.expect("write");
                    commit.on_durable(plan.lsn_through);
                    commit.append(&accept(instance)).expect("fits");
                }
            }
            let plan = commit.take_write().expect("a batch");
            store.write(&plan).await.expect("write");
            commit.on_durable(plan.lsn_through);
            store
                .truncate(&watermarks, &CompactionConfig::default())
                .await
                .expect("truncate");
            assert_eq!(
                store.head_write_count, 1,
                "all durable: the hint is written"
            );
            // A write not yet synced: a truncation now writes no hint.
            commit.append(&accept(3001)).expect("fits");
            let plan = commit.take_write().expect("a batch");
            store.write_unsynced(&plan).await.expect("write");
            let more = [(GroupId(1), crate::paxos::Instance(2990))].into();
            store
                .truncate(&more, &CompactionConfig::default())
                .await
                .expect("truncate");
            assert_eq!(store.head_write_count, 1, "a write in flight: no hint");
            store.sync().await.expect("sync");
            store.close().await.expect("close");
        }
    })
    .expect("executor");
    let full = recover_dir_with(&config, false).expect("read");
    let hinted = recover_dir(&config).expect("read");
    assert_eq!(full.records.len(), 3001);
    assert!(
        matches!(hinted.head, crate::wal::log_recovery::HeadUse::Used { .. }),
        "{:?}",
        hinted.head
    );
    assert_eq!(
        (&hinted.decision, hinted.resume),
        (&full.decision, full.resume)
    );
    // From instance 2951 on (the hint of the first truncation) and the unsynced one.
    assert_eq!(hinted.records.len(), 51, "{}", hinted.records.len());
    assert!(hinted.scanned.records * 50 < full.scanned.records);
    assert!(hinted.scanned.bytes < full.scanned.bytes);
    assert!(hinted.scanned.skipped_bytes > 0);
    let normal = |r: &LogRecovery| {
        crate::wal::compaction::tests::normalise(&crate::wal::replay(&r.records), &watermarks)
    };
    assert_eq!(normal(&hinted), normal(&full));
    // A damaged hint: refused, the full scan runs, `prepare` removes it.
    let head_path = super::super::log_head::path(&dir, config.shard);
    let mut bytes = std::fs::read(&head_path).expect("hint file");
    bytes[30] ^= 1;
    std::fs::write(&head_path, &bytes).expect("damage");
    let refused = recover_dir(&config).expect("read");
    assert!(matches!(
        refused.head,
        crate::wal::log_recovery::HeadUse::Refused { .. }
    ));
    assert_eq!(refused.records, full.records);
    run_local({
        let config = config.clone();
        async move {
            let store = Store::prepare(config, &refused).await.expect("prepare");
            store.close().await.expect("close");
        }
    })
    .expect("executor");
    assert!(!head_path.exists(), "a refused hint is removed");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
