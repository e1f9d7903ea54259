//! `synod wal crash-child` (hidden): the appender that tests/wal_crash.rs kills.
//! Recovers `<dir>`, prints `start <lsn_through>`, then appends records
//! (`crash_record`, instance = LSN) in `--batches` batches (default: until killed),
//! printing `durable <lsn>` after each fdatasync. Exits 3 on recovery corruption.
//! `--seed` fixes the batch sizes (default: a new random seed each run).

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::Args;
use synod::paxos::{Ballot, Body, Entry, GroupId, Instance, NodeId, Record};
use synod::runtime::clock::entropy_seed;
use synod::wal::dma_disk::run_local;
use synod::wal::segment::SEGMENT_SIZE_MIN;
use synod::wal::store::{recover_dir, Store};
use synod::wal::BLOCK_SIZE;

use super::store_config;

/// The flags of `synod wal crash-child`.
#[derive(Clone, Debug, Args)]
pub struct CrashChildArgs {
    /// The WAL directory (shard 0).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The run's number: part of every record's contents and ballot.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub incarnation: u64,
    /// Segment size in bytes (a multiple of the block size).
    #[arg(long, value_name = "B", default_value_t = 1 << 20, value_parser = segment_size)]
    pub segment_size: u64,
    /// Batches to append, then exit [default: until killed].
    #[arg(long, value_name = "N")]
    pub batches: Option<u64>,
    /// Seed of the batch sizes [default: a new random seed each run].
    #[arg(long, value_name = "SEED")]
    pub seed: Option<u64>,
}

/// A segment size `SegmentGeometry` takes (a clap value parser).
fn segment_size(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(size) if size % BLOCK_SIZE as u64 == 0 && size >= SEGMENT_SIZE_MIN => Ok(size),
        _ => Err(format!(
            "must be a multiple of {BLOCK_SIZE} and at least {SEGMENT_SIZE_MIN}"
        )),
    }
}

/// The record of `lsn` in run `incarnation` (`crash_value` names both).
fn crash_record(lsn: u64, incarnation: u64) -> Record {
    let ballot = Ballot {
        round: incarnation + 1,
        node: NodeId(1),
    };
    Record::Accept {
        group: GroupId((lsn % 64) as u32),
        instance: Instance(lsn),
        ballot,
        entry: Entry {
            origin: ballot,
            body: Body::Values(smallvec::smallvec![Bytes::from(
                synod::wal::store::crash_value(lsn, incarnation,)
            )]),
        },
    }
}

/// Runs the appender (module docs).
pub fn main(args: CrashChildArgs) -> Result<ExitCode, String> {
    let CrashChildArgs {
        dir,
        incarnation,
        segment_size,
        batches,
        seed,
    } = args;
    let batches = batches.unwrap_or(u64::MAX);
    let config = store_config(&dir, 0, segment_size);
    let buffer_size_max = (config.geometry.payload_size() as usize).min(256 << 10);
    let result = run_local(async move {
        let recovery = recover_dir(&config).map_err(|e| e.to_string())?;
        if recovery.corruption().is_some() {
            println!("corrupt {:?}", recovery.decision);
            return Ok(ExitCode::from(3));
        }
        let mut store = Store::prepare(config.clone(), &recovery)
            .await
            .map_err(|e| e.to_string())?;
        let mut commit = recovery.group_commit(
            config.geometry,
            buffer_size_max,
            entropy_seed() ^ u64::from(std::process::id()),
        );
        println!("start {}", recovery.lsn_through.0);
        let mut prng = synod::prng::Prng::new(seed.unwrap_or_else(entropy_seed) ^ incarnation);
        for _ in 0..batches {
            let count = prng.range(1, 40);
            for _ in 0..count {
                let lsn = commit.assigned_through().0 + 1;
                if commit.append(&crash_record(lsn, incarnation)).is_err() {
                    break;
                }
            }
            let plan = commit.take_write().expect("records were appended");
            store.write(&plan).await.map_err(|e| e.to_string())?;
            commit.on_durable(plan.lsn_through);
            commit.recycle(plan.bytes);
            // The driver's idle work, off the write path: spares ahead of the next roll.
            store.prepare_spares().await.map_err(|e| e.to_string())?;
            // One line per durable batch, flushed before the next write starts.
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "durable {}", commit.durable_through().0).map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
        }
        store.close().await.map_err(|e| e.to_string())?;
        Ok(ExitCode::SUCCESS)
    })
    .map_err(|e| e.to_string())?;
    result
}
