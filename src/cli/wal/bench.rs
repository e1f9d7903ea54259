//! `synod wal bench`: the raw disk's limits and the WAL in the same run, interleaved
//! (ABBA across rounds) so that both see the same disk, with the WAL's figures as
//! ratios of the raw ones. Files under `--dir` are reused across runs.

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::process::ExitCode;
use std::task::Poll;

use bytes::Bytes;
use clap::Args;
use synod::paxos::{Ballot, Body, Entry, GroupId, Instance, Lsn, Record};
use synod::runtime::clock::{entropy_seed, MonotonicClock};
use synod::support::percentile;
use synod::wal::dma_disk::{run_local, DmaDisk};
use synod::wal::segment::SegmentGeometry;
use synod::wal::store::{recover_dir, recycle_all, Store, StoreConfig};
use synod::wal::{DecodeLimits, GroupCommit, BLOCK_SIZE};

use crate::cli::positive;

/// The flags of `synod wal bench`.
#[derive(Clone, Debug, Args)]
pub struct WalBenchArgs {
    /// Where the raw file (raw.dat, 1 GiB) and the WAL's segments (wal/, up to 6 GiB)
    /// go; reused across runs, never deleted.
    #[arg(long, value_name = "DIR", default_value = "synod-wal-bench")]
    pub dir: PathBuf,
    /// Seconds of each phase.
    #[arg(long, value_name = "S", default_value_t = 1,
          value_parser = positive::<u64>)]
    pub seconds: u64,
    /// Rounds of the four phases.
    #[arg(long, value_name = "R", default_value_t = 5,
          value_parser = positive::<u64>)]
    pub rounds: u64,
}

/// Polls `io` once (queueing it), runs `meanwhile`, then completes `io`: the WAL bench
/// encodes the next batch while the fdatasync of this one runs (on this machine a write
/// completes quickly and the time is in the fdatasync).
async fn overlap<T>(io: impl Future<Output = T>, meanwhile: impl FnOnce()) -> T {
    let mut io = pin!(io);
    let first = std::future::poll_fn(|cx| Poll::Ready(io.as_mut().poll(cx))).await;
    if first.is_pending() {
        // glommio hands queued I/O to the kernel when its reactor polls, which a yield
        // does not reach (measured: no overlap with `yield_task_queue_now`); a short
        // sleep parks the executor, so the fdatasync is submitted before encoding.
        glommio::timer::sleep(std::time::Duration::from_micros(50)).await;
    }
    meanwhile();
    match first {
        Poll::Ready(done) => done,
        Poll::Pending => io.await,
    }
}

/// What `synod wal bench` measured, in one run (sums over its rounds).
#[derive(Debug, Default)]
struct BenchFigures {
    raw_bytes: u64,
    raw_s: f64,
    raw_syncs: u64,
    raw_sync_s: f64,
    raw_latencies_ns: Vec<u64>,
    wal_bytes: u64,
    wal_s: f64,
    groups_records: u64,
    groups_syncs: u64,
    groups_s: f64,
    groups_latencies_ns: Vec<u64>,
}

const BENCH_BLOCK_SIZE: usize = 8 << 20;
const BENCH_RAW_FILE_SIZE: u64 = 1 << 30;
const BENCH_SEGMENT_SIZE: u64 = 256 << 20;
/// Bytes the WAL phases may write in one run (segments reused across runs).
const BENCH_WAL_SIZE_MAX: u64 = 6 << 30;
const BENCH_GROUPS: u64 = 64;
const BENCH_SMALL_VALUE_SIZE: usize = 4096;

/// Runs `synod wal bench`.
pub fn main(args: WalBenchArgs) -> Result<ExitCode, String> {
    let WalBenchArgs {
        dir,
        seconds,
        rounds,
    } = args;
    let seconds = seconds as f64;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!(
        "synod wal bench in {}: {rounds} rounds of 4 phases x {seconds} s, interleaved so raw and WAL see the same disk (files reused across runs)",
        dir.display()
    );
    let mut f = run_local(bench_all(dir, seconds, rounds)).map_err(|e| e.to_string())??;
    f.raw_latencies_ns.sort_unstable();
    f.groups_latencies_ns.sort_unstable();
    let raw_mb_s = f.raw_bytes as f64 / f.raw_s / 1e6;
    let raw_sync_rate = f.raw_syncs as f64 / f.raw_sync_s;
    let wal_mb_s = f.wal_bytes as f64 / f.wal_s / 1e6;
    let records_s = f.groups_records as f64 / f.groups_s;
    let syncs_s = f.groups_syncs as f64 / f.groups_s;
    println!();
    println!(
        "raw  sequential {} MiB O_DIRECT writes + fdatasync : {raw_mb_s:>9.1} MB/s",
        BENCH_BLOCK_SIZE >> 20
    );
    println!(
        "raw  4 KiB write + fdatasync                   : {raw_sync_rate:>9.0} /s  p50 {:.0} us  p99 {:.0} us",
        percentile(&f.raw_latencies_ns, 0.50) / 1e3,
        percentile(&f.raw_latencies_ns, 0.99) / 1e3
    );
    println!(
        "wal  large batches ({} MiB, 1 MiB records)      : {wal_mb_s:>9.1} MB/s = {:.1} % of raw",
        BENCH_BLOCK_SIZE >> 20,
        100.0 * wal_mb_s / raw_mb_s
    );
    println!(
        "wal  {BENCH_GROUPS} groups x 4 KiB records, 1 in flight each : {records_s:>9.0} records/s = {:.1} x raw fdatasync rate; {syncs_s:.0} fdatasyncs/s = {:.2} x raw rate; {:.1} records per fdatasync; ack p50 {:.0} us p99 {:.0} us",
        records_s / raw_sync_rate,
        syncs_s / raw_sync_rate,
        f.groups_records as f64 / f.groups_syncs as f64,
        percentile(&f.groups_latencies_ns, 0.50) / 1e3,
        percentile(&f.groups_latencies_ns, 0.99) / 1e3
    );
    Ok(ExitCode::SUCCESS)
}

async fn bench_all(dir: PathBuf, seconds: f64, rounds: u64) -> Result<BenchFigures, String> {
    let mut bench = Bench::open(dir, seconds, rounds).await?;
    for round in 0..rounds {
        // Phases alternate their order (ABBA) so that neither raw nor WAL always runs
        // right after the other's burst: this disk's speed drifts between phases.
        let order = if round % 2 == 0 {
            [
                Phase::RawLarge,
                Phase::WalLarge,
                Phase::RawSmall,
                Phase::WalGroups,
            ]
        } else {
            [
                Phase::WalLarge,
                Phase::RawLarge,
                Phase::WalGroups,
                Phase::RawSmall,
            ]
        };
        for phase in order {
            match phase {
                Phase::RawLarge => bench.raw_large().await?,
                Phase::WalLarge => bench.wal_large().await?,
                Phase::RawSmall => bench.raw_small().await?,
                Phase::WalGroups => bench.wal_groups().await?,
            }
        }
        let f = &bench.f;
        println!(
            "  round {}: raw {:.0} MB/s, wal {:.0} MB/s, raw {:.0} syncs/s, wal {:.0} records/s",
            round + 1,
            f.raw_bytes as f64 / f.raw_s / 1e6,
            f.wal_bytes as f64 / f.wal_s / 1e6,
            f.raw_syncs as f64 / f.raw_sync_s,
            f.groups_records as f64 / f.groups_s
        );
    }
    bench.raw.close().await.map_err(io_error)?;
    bench.store.close().await.map_err(store_error)?;
    Ok(bench.f)
}

/// The four phases of a round.
#[derive(Clone, Copy)]
enum Phase {
    /// Raw sequential large writes.
    RawLarge,
    /// WAL large batches, the next one encoded while the write is in flight.
    WalLarge,
    /// Raw 4 KiB write + fdatasync.
    RawSmall,
    /// `BENCH_GROUPS` groups of 4 KiB records, one in flight each.
    WalGroups,
}

fn io_error(e: std::io::Error) -> String {
    e.to_string()
}

fn store_error(e: synod::wal::store::StoreError) -> String {
    e.to_string()
}

/// The files and buffers of one run, and what it measured so far.
struct Bench {
    f: BenchFigures,
    seconds: f64,
    rounds: u64,
    raw: DmaDisk,
    store: Store,
    commit: GroupCommit,
    /// The value of a large WAL record (1 MiB less its header).
    large: Bytes,
    /// The value of a small WAL record (`BENCH_SMALL_VALUE_SIZE`).
    value: Bytes,
    /// One raw large write (`BENCH_BLOCK_SIZE`).
    block: Vec<u8>,
    /// One raw small write (`BLOCK_SIZE`).
    small: Vec<u8>,
    /// The last instance each group appended.
    instance: [u64; BENCH_GROUPS as usize],
    raw_offset: u64,
    small_offset: u64,
}

impl Bench {
    /// Opens the raw file (created zero-filled once, then reused) and the WAL (segments
    /// of earlier runs recycled, spares for the whole run made now), and fills the
    /// buffers with incompressible bytes, in case the storage below compresses.
    async fn open(dir: PathBuf, seconds: f64, rounds: u64) -> Result<Bench, String> {
        let raw_path = dir.join("raw.dat");
        let reuse = std::fs::metadata(&raw_path).is_ok_and(|m| m.len() == BENCH_RAW_FILE_SIZE);
        if !reuse {
            println!(
                "creating {} (zero-filled, {} MiB)",
                raw_path.display(),
                BENCH_RAW_FILE_SIZE >> 20
            );
            DmaDisk::create_zeroed(&raw_path, BENCH_RAW_FILE_SIZE)
                .await
                .map_err(io_error)?;
        }
        let raw = DmaDisk::open(&raw_path).await.map_err(io_error)?;

        let wal_dir = dir.join("wal");
        std::fs::create_dir_all(&wal_dir).map_err(io_error)?;
        let config = StoreConfig {
            dir: wal_dir.clone(),
            shard: 0,
            geometry: SegmentGeometry::new(BENCH_SEGMENT_SIZE),
            limits: DecodeLimits::default(),
            spare_count_min: BENCH_WAL_SIZE_MAX.div_ceil(BENCH_SEGMENT_SIZE - BLOCK_SIZE as u64)
                as usize
                + 2,
        };
        let recycled = recycle_all(&config).await.map_err(store_error)?;
        println!(
            "WAL: {recycled} segment files recycled, {} wanted (missing ones are created zero-filled before measuring)",
            config.spare_count_min
        );
        let recovery = recover_dir(&config).map_err(store_error)?;
        let store = Store::prepare(config.clone(), &recovery)
            .await
            .map_err(store_error)?;
        let commit = recovery.group_commit(config.geometry, BENCH_BLOCK_SIZE, entropy_seed());
        let mut prng = synod::prng::Prng::new(entropy_seed());
        let mut random = |size: usize| {
            let mut bytes = vec![0u8; size];
            prng.fill(&mut bytes);
            bytes
        };
        Ok(Bench {
            f: BenchFigures::default(),
            seconds,
            rounds,
            raw,
            store,
            commit,
            large: Bytes::from(random((1 << 20) - 256)),
            value: Bytes::from(random(BENCH_SMALL_VALUE_SIZE)),
            block: random(BENCH_BLOCK_SIZE),
            small: random(BLOCK_SIZE),
            instance: [0; BENCH_GROUPS as usize],
            raw_offset: 0,
            small_offset: 0,
        })
    }

    /// Appends large records until the batch is full.
    fn fill(commit: &mut GroupCommit, large: &Bytes) {
        loop {
            let lsn = commit.assigned_through().0 + 1;
            let record = Record::Accept {
                group: GroupId((lsn % BENCH_GROUPS) as u32),
                instance: Instance(lsn),
                ballot: Ballot::ZERO,
                entry: Entry {
                    origin: Ballot::ZERO,
                    body: Body::Values(smallvec::smallvec![large.clone()]),
                },
            };
            if commit.append(&record).is_err() {
                break;
            }
        }
    }

    /// Raw sequential large writes, each followed by an fdatasync.
    async fn raw_large(&mut self) -> Result<(), String> {
        let clock = MonotonicClock::start();
        while clock.elapsed_s() < self.seconds {
            self.raw
                .write_at(self.raw_offset, &self.block)
                .await
                .map_err(io_error)?;
            self.raw.sync().await.map_err(io_error)?;
            self.f.raw_bytes += BENCH_BLOCK_SIZE as u64;
            self.raw_offset = (self.raw_offset + BENCH_BLOCK_SIZE as u64) % BENCH_RAW_FILE_SIZE;
        }
        self.f.raw_s += clock.elapsed_s();
        Ok(())
    }

    /// WAL large batches, the next one encoded while the write is in flight.
    async fn wal_large(&mut self) -> Result<(), String> {
        let budget = BENCH_WAL_SIZE_MAX / self.rounds;
        let clock = MonotonicClock::start();
        let mut bytes = 0u64;
        Bench::fill(&mut self.commit, &self.large);
        while clock.elapsed_s() < self.seconds && bytes < budget {
            let plan = self.commit.take_write().expect("a full batch");
            self.store
                .write_unsynced(&plan)
                .await
                .map_err(store_error)?;
            overlap(self.store.sync(), || {
                Bench::fill(&mut self.commit, &self.large);
            })
            .await
            .map_err(store_error)?;
            bytes += plan.bytes.len() as u64;
            self.commit.on_durable(plan.lsn_through);
            self.commit.recycle(plan.bytes);
        }
        self.f.wal_s += clock.elapsed_s();
        self.f.wal_bytes += bytes;
        // Flush what the last overlap encoded, outside the measurement.
        if let Some(plan) = self.commit.take_write() {
            self.store.write(&plan).await.map_err(store_error)?;
            self.commit.on_durable(plan.lsn_through);
        }
        Ok(())
    }

    /// Raw 4 KiB write + fdatasync.
    async fn raw_small(&mut self) -> Result<(), String> {
        let clock = MonotonicClock::start();
        while clock.elapsed_s() < self.seconds {
            let start = clock.now();
            self.raw
                .write_at(self.small_offset, &self.small)
                .await
                .map_err(io_error)?;
            self.raw.sync().await.map_err(io_error)?;
            self.f.raw_latencies_ns.push(clock.now().0 - start.0);
            self.f.raw_syncs += 1;
            self.small_offset = (self.small_offset + BLOCK_SIZE as u64) % BENCH_RAW_FILE_SIZE;
        }
        self.f.raw_sync_s += clock.elapsed_s();
        Ok(())
    }

    /// `BENCH_GROUPS` groups, 4 KiB records; a group appends its next record once the
    /// previous one is durable (acknowledged): group commit must batch them.
    async fn wal_groups(&mut self) -> Result<(), String> {
        let syncs_before = self.store.sync_count;
        let clock = MonotonicClock::start();
        let mut appended_at: Vec<(Lsn, u64)> = Vec::new();
        while clock.elapsed_s() < self.seconds {
            let now = clock.now().0;
            for (group, next) in self.instance.iter_mut().enumerate() {
                *next += 1;
                let record = Record::Accept {
                    group: GroupId(group as u32),
                    instance: Instance(*next),
                    ballot: Ballot::ZERO,
                    entry: Entry {
                        origin: Ballot::ZERO,
                        body: Body::Values(smallvec::smallvec![self.value.clone()]),
                    },
                };
                let lsn = match self.commit.append(&record) {
                    Ok(lsn) => lsn,
                    Err(_) => {
                        // The batch closed at a segment's end: write it first.
                        let plan = self.commit.take_write().expect("a batch");
                        self.store.write(&plan).await.map_err(store_error)?;
                        self.commit.on_durable(plan.lsn_through);
                        self.commit.append(&record).map_err(|e| e.to_string())?
                    }
                };
                appended_at.push((lsn, now));
            }
            let plan = self.commit.take_write().expect("a batch");
            self.store.write(&plan).await.map_err(store_error)?;
            self.commit.on_durable(plan.lsn_through);
            self.commit.recycle(plan.bytes);
            let done = clock.now().0;
            for (lsn, at) in appended_at.drain(..) {
                assert!(lsn <= self.commit.durable_through());
                self.f.groups_latencies_ns.push(done - at);
                self.f.groups_records += 1;
            }
        }
        self.f.groups_s += clock.elapsed_s();
        self.f.groups_syncs += self.store.sync_count - syncs_before;
        Ok(())
    }
}
