//! The shard's WAL writer: the one owner of its `Store` (the segment files). It opens
//! the log at start (probe, recovery, the rejoin marker), executes the `WritePlan`s the
//! shard plans, keeps spare segments ready in slices, and reports each write's outcome
//! back to the shard as a `ShardInput` (`WriteDone`, `WriteFailed`). It decides
//! nothing: when to write, what, and when the rejoin marker goes are the shard's calls.
//!
//! Up to `writes_in_flight_max` writes run at once (`GroupCommit` plans no more), each
//! in its own task: the task holds the store for its `write_at` (and the segment
//! header's write and fdatasync when it starts a segment, and the index update), gives
//! it back, then fdatasyncs the segment through a shared handle (`Store::segment_sync`)
//! while the next task writes. The store is lent to one task at a time (a write's
//! `write_at`, one slice of spare maintenance, a truncation) and comes back when that
//! part ends, so no two operations change the store at once. Catch-up reads (`Store::plan_read`, `wal::catch_up`) are
//! planned against the idle store's index (`with_idle_store`, `runtime::wal_reads`)
//! and run on files of their own. Truncation (`Effects::wal_truncate`) is one more
//! kind of task lent the store while idle: `Store::truncate` releases the index below
//! the watermarks, recycles or deletes the segments no longer needed, and reads the
//! records compaction carries forward, which go back to the shard as
//! `ShardInput::WalTruncateDone`.
//!
//! Invariants:
//! - at most `writes_in_flight_max` writes are handed in and not reported (`submit`
//!   asserts it); they take the store in the order handed in, so their `write_at`s
//!   are issued in LSN order, and each one's fdatasync is issued after its own
//!   `write_at` completed: when it completes, that write and every earlier one of the
//!   segment are durable (a segment-starting write is planned only when none is in
//!   flight, so earlier segments were synced before it). `WriteDone { lsn_through }` is
//!   reported per write as its fdatasync completes, in any order; the shard's
//!   `GroupCommit` applies the contiguity rule;
//! - a write waits for the store only while another write's `write_at` or one slice
//!   of spare maintenance (`SPARE_SLICE_SIZE`) finishes; zero-filling whole segments
//!   never sits on the write path. A slice runs after a write's fdatasync even while
//!   other writes are in flight: it touches only spare files and segments below the
//!   log's durable start, never the open segment;
//! - a truncation starts only while no write is pending or in flight and no WAL read
//!   runs (a read opens its segment files by name after it was planned: a truncation
//!   could recycle one under it); while one waits with no read running, new writes
//!   queue until the writes in flight drained and it ran (so a steady load cannot
//!   starve it); the store learns what is durable (`Store::note_synced`) just before,
//!   when no write is in flight;
//! - a failed write, fdatasync, spare preparation or truncation is reported as
//!   `WriteFailed` and
//!   never retried (fsyncgate: the page cache may have dropped what it could not
//!   write); the store is not closed after a failure;
//! - a replica whose log lost state writes a durable rejoin marker BEFORE `Store::prepare`
//!   erases the evidence, and removes it only when the shard says so (every group votes
//!   again and what it re-learned is durable, as the simulator's fault atlas models it).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use super::retired::{read_retired, write_retired};
use super::thread::ShardStartError;
use crate::paxos::{GroupId, Lsn, Nanos, Record};
use crate::runtime::clock::MonotonicClock;
use crate::runtime::fatal::{DiskError, DiskOperation, Fatal};
use crate::runtime::histogram::{Histogram, SYNC_NS_BOUNDS, WRITE_SIZE_BOUNDS};
use crate::runtime::notify::Notify;
use crate::runtime::request::RecoveryReport;
use crate::runtime::shard::{Shard, ShardInput};
use crate::runtime::truncation::WalTruncate;
use crate::support::sync_dir;
use crate::wal::compaction::CompactionConfig;
use crate::wal::dma_disk::DmaDisk;
use crate::wal::log_recovery::HeadUse;
use crate::wal::log_recovery::LogRecovery;
use crate::wal::store::{recover_dir, Store, StoreConfig};
use crate::wal::{WritePlan, BLOCK_SIZE};

/// Bytes of a spare segment zero-filled per turn of spare maintenance: a write that
/// arrives meanwhile waits for at most this much zero-filling (about 1–2 ms here),
/// where a whole segment (64 MiB) used to hold the WAL for ~100 ms after each roll.
const SPARE_SLICE_SIZE: u64 = 2 << 20;

/// How long `close` waits for a slice of spare maintenance to give the store back.
const CLOSE_WAIT_MAX: Duration = Duration::from_secs(10);

/// The outcome of a write in flight, left by its task for the loop.
type WriteResult = Result<WritePlan, Fatal>;

/// What the write tasks leave for the loop: completions, and what is durable.
#[derive(Debug, Default)]
struct Completions {
    /// Outcomes in the order the fdatasyncs completed.
    results: Vec<WriteResult>,
    /// Highest `lsn_through` whose fdatasync completed (exact once none is in flight).
    synced_through: Lsn,
    /// fdatasyncs completed since the store last learned of them.
    sync_count: u64,
}

/// The outcome of the running truncation: the records to carry forward.
type TruncateResult = Result<Vec<Record>, Fatal>;

/// Time the disk took, summed by the write tasks.
#[derive(Debug)]
struct DiskTimes {
    /// Nanoseconds inside the write tasks (write + fdatasync as the disk took them;
    /// overlapping writes each count theirs).
    disk_ns: Cell<u64>,
    /// Nanoseconds of `disk_ns` inside fdatasync.
    sync_ns: Cell<u64>,
    /// Each fdatasync's nanoseconds (`histogram::SYNC_NS_BOUNDS`).
    sync_latency: RefCell<Histogram>,
    /// Each write's bytes (`histogram::WRITE_SIZE_BOUNDS`).
    write_size: RefCell<Histogram>,
}

impl Default for DiskTimes {
    fn default() -> DiskTimes {
        DiskTimes {
            disk_ns: Cell::new(0),
            sync_ns: Cell::new(0),
            sync_latency: RefCell::new(Histogram::new(SYNC_NS_BOUNDS)),
            write_size: RefCell::new(Histogram::new(WRITE_SIZE_BOUNDS)),
        }
    }
}

/// The writer's timing counters, for the shard's status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct WalCounters {
    /// Nanoseconds with at least one write in flight as the loop sees it (first handed
    /// in to last reported).
    pub write_busy_ns: u64,
    /// Nanoseconds inside the write tasks (write + fdatasync as the disk took them).
    pub disk_ns: u64,
    /// Nanoseconds of `disk_ns` inside fdatasync.
    pub sync_ns: u64,
    /// Instances the store's index holds, as of the last time the store was idle.
    pub index_slots: u64,
    /// Bytes the store's index holds, as of the same moment.
    pub index_size: u64,
    /// Each fdatasync's nanoseconds.
    pub sync_latency: Histogram,
    /// Each write's bytes.
    pub write_size: Histogram,
}

/// What `WalWriter::open` hands the shard loop besides the writer.
pub(super) struct Opened {
    /// The writer, ready for the first plan.
    pub writer: WalWriter,
    /// What the log held (records to replay, where appends resume).
    pub recovery: LogRecovery,
    /// The log lost state: the shard rejoins as a non-voting learner.
    pub lost_state: bool,
    /// The groups retired in this shard (`retired`): they never vote again.
    pub retired: BTreeSet<GroupId>,
    /// What opening cost: the scan's counters, the probe, scan and index times (the
    /// later phases are the start's to fill).
    pub report: RecoveryReport,
}

/// The owner of a shard's `Store`: executes write plans, up to `writes_in_flight_max`
/// in flight.
pub(super) struct WalWriter {
    /// The shard index (for the log).
    shard: u16,
    clock: MonotonicClock,
    /// The loop's wake-up: a task notifies it when it leaves an outcome or the store.
    wake: Rc<Notify>,
    /// Whether writes are made durable (false only in unsafe benchmarks).
    fsync: bool,
    /// Spares wanted ahead of the segment being written.
    spare_count_min: usize,
    /// The store while no task holds it.
    store: Rc<RefCell<Option<Store>>>,
    /// Writes handed in and not yet reported (pending or running).
    writes_in_flight: usize,
    /// The most writes in flight the shard's `GroupCommit` plans.
    writes_in_flight_max: usize,
    /// Writes handed in while the store was lent, oldest first (at most
    /// `writes_in_flight_max`).
    pending: VecDeque<WritePlan>,
    /// What the running writes left.
    done: Rc<RefCell<Completions>>,
    /// A truncation waits for the writes running to drain (the last `maintain` saw it
    /// asked for and no WAL read running): new writes queue behind it.
    truncate_armed: bool,
    /// A failed slice of spare maintenance (fatal, never retried).
    maintenance_error: Rc<RefCell<Option<Fatal>>>,
    /// Spare maintenance has slices left (`Store::prepare_spares_slice`).
    maintenance_more: Rc<Cell<bool>>,
    /// The truncation the shard asked for, not started yet.
    truncate: Option<WalTruncate>,
    /// The outcome of the running truncation: the records to carry forward.
    truncate_done: Rc<RefCell<Option<TruncateResult>>>,
    /// When the first of the writes in flight was handed in (for `write_busy_ns`).
    write_started: Nanos,
    write_busy_ns: u64,
    times: Rc<DiskTimes>,
    /// The index's instances and bytes when the store was last seen idle.
    index_sizes: Cell<(u64, u64)>,
    /// The rejoin marker's path while it exists (the shard decides when it goes).
    marker: Option<PathBuf>,
    /// The log's directory and the shard index (the retired-groups file's place).
    dir: PathBuf,
    /// A write of the retired groups failed: the marker stays (`retired`).
    retired_failed: bool,
}

impl WalWriter {
    /// Opens the log of `config`: proves the directory takes O_DIRECT writes, recovers
    /// it, writes the rejoin marker when the log lost state (`lost_state`: an emptied
    /// directory of an existing member; or corruption found now; or a marker left by
    /// an earlier start), then prepares the store for appends.
    ///
    /// # Errors
    ///
    /// The directory refused the probe, or reading, marking or preparing the log failed.
    pub async fn open(
        config: &StoreConfig,
        shard: u16,
        lost_state: bool,
        fsync: bool,
        writes_in_flight_max: usize,
        clock: MonotonicClock,
        wake: Rc<Notify>,
    ) -> Result<Opened, ShardStartError> {
        let wal = |error: DiskError| ShardStartError::Wal { error };
        std::fs::create_dir_all(&config.dir)
            .map_err(|e| wal(DiskError::from_io("create", Some(&config.dir), &e)))?;
        let began = clock.now();
        probe_dir(&config.dir, config.shard)
            .await
            .map_err(|error| ShardStartError::NotWritable {
                dir: config.dir.clone(),
                error,
            })?;
        let probed = clock.now();
        let recovery = recover_dir(config).map_err(|e| wal(DiskError::from(&e)))?;
        let scanned = clock.now();
        match &recovery.head {
            HeadUse::Used {
                segment,
                file_offset,
            } => log::info!(
                "shard {shard}: WAL scan started at the log head hint (segment {segment}, \
                 offset {file_offset}); {} bytes skipped",
                recovery.scanned.skipped_bytes
            ),
            HeadUse::Refused { why } => {
                log::info!("shard {shard}: log head hint refused ({why}); full WAL scan");
            }
            HeadUse::Absent => {}
        }
        let marker_path = rejoin_marker(&config.dir, config.shard);
        if let Some(corruption) = recovery.corruption() {
            log::warn!(
                "shard {shard}: WAL corruption before the tail ({corruption}); rejoining as a \
                 non-voting learner"
            );
        }
        let lost = lost_state || recovery.corruption().is_some() || marker_path.exists();
        // Read before anything is written: a damaged file stops the start.
        let retired = read_retired(&config.dir, config.shard).map_err(wal)?;
        for group in &retired {
            log::warn!(
                "shard {shard}: group {} is retired: this node lost its state after the \
                 group's membership changed, and never votes in it again under this node \
                 id; remove it from the membership and start it under a new node id",
                group.0
            );
        }
        if lost && !marker_path.exists() {
            // Durable before `Store::prepare` erases the evidence of the loss.
            write_marker(&marker_path).map_err(wal)?;
        }
        let store = Store::prepare(config.clone(), &recovery)
            .await
            .map_err(|e| wal(DiskError::from(&e)))?;
        let report = RecoveryReport {
            segments: recovery.scanned.segments,
            bytes: recovery.scanned.bytes,
            records: recovery.scanned.records,
            head_used: u64::from(matches!(recovery.head, HeadUse::Used { .. })),
            head_refused: u64::from(matches!(recovery.head, HeadUse::Refused { .. })),
            skipped_bytes: recovery.scanned.skipped_bytes,
            probe_ns: probed.0.saturating_sub(began.0),
            scan_ns: scanned.0.saturating_sub(probed.0),
            index_ns: clock.now().0.saturating_sub(scanned.0),
            ..RecoveryReport::default()
        };
        let writer = WalWriter {
            shard,
            clock,
            wake,
            fsync,
            spare_count_min: config.spare_count_min,
            store: Rc::new(RefCell::new(Some(store))),
            writes_in_flight: 0,
            writes_in_flight_max,
            pending: VecDeque::with_capacity(writes_in_flight_max),
            done: Rc::new(RefCell::new(Completions::default())),
            truncate_armed: false,
            maintenance_error: Rc::new(RefCell::new(None)),
            maintenance_more: Rc::new(Cell::new(false)),
            truncate: None,
            truncate_done: Rc::new(RefCell::new(None)),
            write_started: Nanos(0),
            write_busy_ns: 0,
            times: Rc::new(DiskTimes::default()),
            index_sizes: Cell::new((0, 0)),
            marker: lost.then_some(marker_path),
            dir: config.dir.clone(),
            retired_failed: false,
        };
        Ok(Opened {
            writer,
            recovery,
            lost_state: lost,
            retired,
            report,
        })
    }

    /// Takes the plan of a flush: it starts at once, or as soon as the store is back
    /// (from another write's `write_at`, spare maintenance or a truncation). The shard
    /// plans at most `writes_in_flight_max` writes in flight.
    pub fn submit(&mut self, now: Nanos, plan: WritePlan) {
        assert!(
            self.writes_in_flight < self.writes_in_flight_max,
            "{} WAL writes in flight at most (a plan through LSN {} arrived)",
            self.writes_in_flight_max,
            plan.lsn_through.0
        );
        if self.writes_in_flight == 0 {
            self.write_started = now;
        }
        self.writes_in_flight += 1;
        self.pending.push_back(plan);
        self.start_pending();
    }

    /// Hands `shard` what finished since the last poll, in this order: starts the
    /// writes that waited for the store; reports a failed spare preparation
    /// (`WriteFailed`); reports a truncation's outcome; reports each write's outcome in
    /// the order its fdatasync completed (`WriteDone`, its buffer back to the shard for
    /// a next batch; or `WriteFailed`).
    pub fn poll(&mut self, now: Nanos, shard: &mut Shard) {
        self.start_pending();
        let maintenance = self.maintenance_error.borrow_mut().take();
        if let Some(fatal) = maintenance {
            self.report_fatal(now, shard, fatal);
        }
        let truncated = self.truncate_done.borrow_mut().take();
        match truncated {
            Some(Ok(rewrites)) => shard.step(now, ShardInput::WalTruncateDone { rewrites }),
            Some(Err(fatal)) => self.report_fatal(now, shard, fatal),
            None => {}
        }
        let results = std::mem::take(&mut self.done.borrow_mut().results);
        let reported = results.len();
        for result in results {
            self.writes_in_flight -= 1;
            match result {
                Ok(plan) => {
                    let lsn_through = plan.lsn_through;
                    shard.step(now, ShardInput::WriteDone { lsn_through });
                    shard.recycle(plan.bytes);
                }
                Err(fatal) => self.report_fatal(now, shard, fatal),
            }
        }
        if reported > 0 && self.writes_in_flight == 0 {
            self.write_busy_ns += now.0.saturating_sub(self.write_started.0);
            self.note_index_sizes();
        }
    }

    /// A failed WAL operation: the shard is poisoned (it produces nothing more).
    fn report_fatal(&self, now: Nanos, shard: &mut Shard, fatal: Fatal) {
        log::error!("shard {}: {fatal}; the shard stops", self.shard);
        shard.step(now, ShardInput::WriteFailed { fatal });
    }

    /// Writes whose task runs (started and not completed: writing or syncing).
    fn writes_running(&self) -> usize {
        self.writes_in_flight - self.pending.len() - self.done.borrow().results.len()
    }

    /// Writes handed in whose outcome is not reported yet (pending or running).
    pub fn writes_in_flight(&self) -> usize {
        self.writes_in_flight
    }

    /// The timing counters, and the index's size (measured now when the store is
    /// idle, else as last measured).
    pub fn counters(&self) -> WalCounters {
        self.note_index_sizes();
        let (index_slots, index_size) = self.index_sizes.get();
        WalCounters {
            write_busy_ns: self.write_busy_ns,
            disk_ns: self.times.disk_ns.get(),
            sync_ns: self.times.sync_ns.get(),
            index_slots,
            index_size,
            sync_latency: self.times.sync_latency.borrow().clone(),
            write_size: self.times.write_size.borrow().clone(),
        }
    }

    /// Measures the index's instances and bytes when the store is idle (after each
    /// write's completion and at each status: O(groups)).
    fn note_index_sizes(&self) {
        if let Some(sizes) = self.with_idle_store(|store| {
            let index = store.index();
            (index.slot_count() as u64, index.memory_size() as u64)
        }) {
            self.index_sizes.set(sizes);
        }
    }

    /// Runs `f` with the store while no task holds it (catch-up reads are planned
    /// against its index between writes); `None` while a write or spare maintenance
    /// has it.
    pub fn with_idle_store<R>(&self, f: impl FnOnce(&Store) -> R) -> Option<R> {
        self.store.borrow().as_ref().map(f)
    }

    /// The store, lent to a task that gives it back (`None`: a task holds it now).
    fn lend(&self) -> Option<Store> {
        self.store.borrow_mut().take()
    }

    /// Starts the pending writes, oldest first, while the store is free (each task
    /// gives it back after its `write_at`; `poll` starts the next then) and no
    /// truncation waits to start (it runs first, once the writes in flight drained).
    /// Each task writes, gives the store back, fdatasyncs, reports, then takes the
    /// store for one slice of spare maintenance when spares are missing and the store
    /// is free (`maintain` runs the rest while idle), so zero-filling new segments stays
    /// off the write path.
    fn start_pending(&mut self) {
        if self.truncate_armed {
            return;
        }
        while !self.pending.is_empty() && self.store.borrow().is_some() {
            let (Some(plan), Some(disk)) = (self.pending.pop_front(), self.lend()) else {
                unreachable!("a pending plan and a free store were both checked just above")
            };
            let task = WriteTask {
                store: Rc::clone(&self.store),
                done: Rc::clone(&self.done),
                maintenance: Rc::clone(&self.maintenance_error),
                wake: Rc::clone(&self.wake),
                fsync: self.fsync,
                spares_wanted: self.spare_count_min,
                more: Rc::clone(&self.maintenance_more),
                clock: self.clock,
                times: Rc::clone(&self.times),
            };
            glommio::spawn_local(task.run(disk, plan)).detach();
        }
    }

    /// Takes the truncation the shard asked for (`Effects::wal_truncate`); it starts
    /// in `maintain` once the store is idle. The shard asks for one at a time.
    pub fn truncate(&mut self, truncate: WalTruncate) {
        assert!(
            self.truncate.is_none(),
            "one WAL truncation in flight at most"
        );
        self.truncate = Some(truncate);
    }

    /// Starts the truncation the shard asked for once no WAL read runs
    /// (`reads_running`) and no write runs: while it waits for the running writes to
    /// drain, new writes queue behind it; a read starting meanwhile lets them go again.
    /// Else, while no write is pending or in flight, runs one slice of spare
    /// maintenance when slices are left (each write also runs one after its
    /// fdatasync). The loop calls `stop_maintenance` instead once the shard stops.
    pub fn maintain(&mut self, reads_running: usize) {
        self.truncate_armed = self.truncate.is_some() && reads_running == 0;
        if self.truncate_armed && self.writes_running() == 0 {
            self.start_truncate();
            if self.truncate.is_none() {
                self.truncate_armed = false;
            }
            return;
        }
        // Not armed (a read runs): writes queued behind the truncation go on.
        self.start_pending();
        if self.writes_in_flight > 0 {
            return;
        }
        if !self.maintenance_more.get() {
            return;
        }
        let Some(mut disk) = self.lend() else {
            return;
        };
        let store = Rc::clone(&self.store);
        let maintenance = Rc::clone(&self.maintenance_error);
        let more = Rc::clone(&self.maintenance_more);
        let wake = Rc::clone(&self.wake);
        more.set(false);
        glommio::spawn_local(async move {
            spare_slice(&mut disk, &more, &maintenance).await;
            *store.borrow_mut() = Some(disk);
            wake.notify();
        })
        .detach();
    }

    /// The shard is stopping: no truncation or spare maintenance starts any more, and
    /// writes queued behind a waiting truncation go on.
    pub fn stop_maintenance(&mut self) {
        self.truncate_armed = false;
        self.start_pending();
    }

    /// Starts the truncation asked for, when the store is free: `Store::truncate`
    /// with the default compaction, its outcome left for `poll`.
    fn start_truncate(&mut self) {
        let Some(mut disk) = self.lend() else {
            return;
        };
        let Some(truncate) = self.truncate.take() else {
            unreachable!("maintain checked a truncation")
        };
        // No write runs: the completed fdatasyncs cover all that was written.
        let (synced_through, sync_count) = {
            let mut done = self.done.borrow_mut();
            (done.synced_through, std::mem::take(&mut done.sync_count))
        };
        if sync_count > 0 {
            disk.note_synced(synced_through, sync_count);
        }
        let store = Rc::clone(&self.store);
        let done = Rc::clone(&self.truncate_done);
        let wake = Rc::clone(&self.wake);
        glommio::spawn_local(async move {
            let result = disk
                .truncate(&truncate.watermarks, &CompactionConfig::default())
                .await
                .map(|truncation| truncation.rewrites)
                .map_err(|e| Fatal::Disk {
                    operation: DiskOperation::Truncate,
                    error: DiskError::from(&e),
                });
            *done.borrow_mut() = Some(result);
            *store.borrow_mut() = Some(disk);
            wake.notify();
        })
        .detach();
    }

    /// Removes the rejoin marker (the shard decided it may go) and syncs the directory.
    /// A failure leaves it on disk: the next start rejoins as a learner again (safe).
    pub fn clear_rejoin_marker(&mut self) {
        if self.retired_failed {
            log::warn!(
                "shard {}: the rejoin marker stays: the retired groups were not written",
                self.shard
            );
            return;
        }
        let Some(path) = self.marker.take() else {
            return;
        };
        let result = std::fs::remove_file(&path)
            .and_then(|()| sync_dir(path.parent().unwrap_or(Path::new("."))));
        match result {
            Ok(()) => log::info!("shard {}: re-learned; voting again", self.shard),
            Err(error) => log::warn!("{}: {error}", path.display()),
        }
    }

    /// Writes the shard's retired groups durably (`retired`). A failure is logged and
    /// keeps the rejoin marker: the next start rejoins and retires again (safe).
    pub fn write_retired_groups(&mut self, groups: &[GroupId]) {
        if let Err(error) = write_retired(&self.dir, u32::from(self.shard), groups) {
            self.retired_failed = true;
            log::error!("shard {}: writing the retired groups: {error}", self.shard);
        }
    }

    /// Waits (bounded) for the writes in flight to complete and for a slice of spare
    /// maintenance to give the store back, then closes it, unless the shard stopped on a
    /// failure (`failed`: a store that failed is not used again).
    pub async fn close(self, failed: bool) {
        let step = Duration::from_millis(1);
        for _ in 0..CLOSE_WAIT_MAX.as_millis() / step.as_millis() {
            if self.store.borrow().is_some() && self.writes_running() == 0 {
                break;
            }
            glommio::timer::sleep(step).await;
        }
        let Some(store) = self.lend() else {
            return;
        };
        if !failed {
            if let Err(error) = store.close().await {
                log::warn!("shard {}: closing the WAL: {error}", self.shard);
            }
        }
    }
}

/// One write handed to its task, with what the task shares with the writer.
struct WriteTask {
    store: Rc<RefCell<Option<Store>>>,
    done: Rc<RefCell<Completions>>,
    maintenance: Rc<RefCell<Option<Fatal>>>,
    wake: Rc<Notify>,
    fsync: bool,
    spares_wanted: usize,
    more: Rc<Cell<bool>>,
    clock: MonotonicClock,
    times: Rc<DiskTimes>,
}

impl WriteTask {
    /// Writes `plan` with the store lent (`disk`), gives it back, fdatasyncs the
    /// segment on its shared handle (with `fsync`), leaves the outcome, then runs one
    /// slice of spare maintenance when spares are missing and the store is free.
    async fn run(self, mut disk: Store, plan: WritePlan) {
        let started = self.clock.now();
        let lsn_through = plan.lsn_through.0;
        let written = disk.write_unsynced(&plan).await.map_err(|e| Fatal::Disk {
            operation: DiskOperation::Write {
                size: plan.bytes.len(),
                lsn_through,
            },
            error: DiskError::from(&e),
        });
        let handle = written.as_ref().ok().and_then(|()| disk.segment_sync());
        *self.store.borrow_mut() = Some(disk);
        self.wake.notify();
        let written_at = self.clock.now();
        let mut result = written;
        if let (true, true, Some(handle)) = (self.fsync, result.is_ok(), &handle) {
            result = handle.sync().await.map_err(|e| Fatal::Disk {
                operation: DiskOperation::Sync { lsn_through },
                error: DiskError::from(&e),
            });
        }
        // The last holder of a segment left by a roll closes it.
        drop(handle);
        self.time(started, written_at, plan.bytes.len());
        let ok = result.is_ok();
        {
            let mut done = self.done.borrow_mut();
            if ok && self.fsync {
                done.synced_through = done.synced_through.max(plan.lsn_through);
                done.sync_count += 1;
            }
            done.results.push(result.map(|()| plan));
        }
        self.wake.notify();
        if !ok {
            return;
        }
        let lent = self.store.borrow_mut().take();
        if let Some(mut disk) = lent {
            if disk.spare_count() < self.spares_wanted || self.more.get() {
                spare_slice(&mut disk, &self.more, &self.maintenance).await;
            }
            *self.store.borrow_mut() = Some(disk);
            self.wake.notify();
        }
    }

    /// Adds one write's times to the counters: the write from `started` to `written`,
    /// the fdatasync from `written` to now.
    fn time(&self, started: Nanos, written: Nanos, size: usize) {
        let finished = self.clock.now();
        let times = &self.times;
        let disk_ns = times.disk_ns.get() + finished.0.saturating_sub(started.0);
        times.disk_ns.set(disk_ns);
        let sync_ns = times.sync_ns.get() + finished.0.saturating_sub(written.0);
        times.sync_ns.set(sync_ns);
        times.write_size.borrow_mut().record(size as u64);
        if self.fsync {
            let latency = finished.0.saturating_sub(written.0);
            times.sync_latency.borrow_mut().record(latency);
        }
    }
}

/// One slice of spare maintenance (`SPARE_SLICE_SIZE`): leaves in `more` whether
/// slices are left, or in `error` why it failed (fatal to the shard).
async fn spare_slice(disk: &mut Store, more: &Cell<bool>, error: &RefCell<Option<Fatal>>) {
    match disk.prepare_spares_slice(SPARE_SLICE_SIZE).await {
        Ok(left) => more.set(left),
        Err(failure) => {
            *error.borrow_mut() = Some(Fatal::Disk {
                operation: DiskOperation::PrepareSpares,
                error: DiskError::from(&failure),
            });
        }
    }
}

/// Proves that `dir` takes the WAL's kind of I/O before anything is recovered: creates
/// a probe file with O_DIRECT, writes one block, fdatasyncs it, removes it and syncs
/// the directory. A directory on a read-only (or full, or failing) filesystem is
/// refused at start rather than at the first write.
async fn probe_dir(dir: &Path, shard: u32) -> Result<(), DiskError> {
    let path = dir.join(format!("shard-{shard:03}.probe"));
    DmaDisk::create_zeroed(&path, BLOCK_SIZE as u64)
        .await
        .map_err(|e| DiskError::from_io("probe", Some(&path), &e))?;
    std::fs::remove_file(&path).map_err(|e| DiskError::from_io("remove", Some(&path), &e))?;
    sync_dir(dir).map_err(|e| DiskError::from_io("sync directory", Some(dir), &e))
}

/// Path of the rejoin marker of shard `shard` in `dir`.
fn rejoin_marker(dir: &Path, shard: u32) -> PathBuf {
    dir.join(format!("shard-{shard:03}.rejoin"))
}

/// Writes the rejoin marker at `path` durably (the file, then its directory entry).
fn write_marker(path: &Path) -> Result<(), DiskError> {
    let at = |call: &'static str| move |e: std::io::Error| DiskError::from_io(call, Some(path), &e);
    let mut file = std::fs::File::create(path).map_err(at("create rejoin marker"))?;
    file.write_all(b"this shard lost log state; it votes again once it has re-learned\n")
        .map_err(at("write rejoin marker"))?;
    file.sync_all().map_err(at("sync rejoin marker"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    sync_dir(dir).map_err(|e| DiskError::from_io("sync directory", Some(dir), &e))
}
