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
