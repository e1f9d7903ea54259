//! The glommio driver of one shard: a thread pinned to one core, running one
//! `LocalExecutor` that owns the shard end to end: its WAL (`wal::store::Store`), its
//! peer links (`net::Net`), its timers, its groups (`shard::Shard`) and their state
//! machines. Nothing it owns crosses to another thread; handles reach it only through
//! its [`Mailbox`], and replies leave through one-shot channels.
//!
//! The loop (design: "the shard loop"):
//! 1. drain the mailbox (proposals, reads, status, stop), the peer links' inbound
//!    messages, and the completion of the WAL write in flight; fire due timers;
//! 2. `Shard::flush`: groups coalesce proposals, durable acks are released;
//! 3. start the next WAL write (one write + one fdatasync, at most one in flight; the
//!    next batch builds meanwhile), send each peer what is pending in one write,
//!    apply chosen values in instance order and answer their proposers, serve reads
//!    whose read index is applied; start catch-up reads below a group's in-memory log
//!    (`wal_reads`: planned while the store is idle, each then a task of its own);
//! 4. sleep until a mailbox push, an inbound message, the write's completion or the
//!    next timer (rounded up to `tick_ns`, so heartbeats of many groups leave together).
//!
//! Invariants:
//! - a proposal is answered `Ok` only after its value is applied here, which happens
//!   only after it is chosen, which needs a quorum of durable accepts;
//! - a failed WAL write or fdatasync stops the shard (`Fatal`): no retry; the stop is
//!   reported to the node's `FatalLatch`, then every waiting caller gets `Stopped`;
//! - when the shard's thread ends, by any path (a stop, a failure, a panic), its mailbox
//!   is closed: no request can wait on a shard that no longer runs;
//! - a replica whose log lost state writes a durable rejoin marker BEFORE recovery
//!   erases evidence, and removes it only once every group votes again and what it
//!   re-learned is durable (as the simulator's fault atlas models it).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::{poll_fn, Future};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;

use crate::support::sync_dir;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};

use super::clock::{entropy_seed, MonotonicClock};
use super::fatal::{DiskOperation, Fatal, FatalLatch, ShardStopped};
use super::mailbox::{Mailbox, Sender};
use super::net::{Net, NetConfig};
use super::notify::Notify;
use super::request::{Error, GroupStatus, LogMemory, Proposed, Request, ShardStatus};
use super::shard::{Effects, ProposalOutcome, ReadId, ReadRefused, Shard, ShardConfig, ShardInput};
use super::state_machine::{StateMachine, StateMachineFactory};
use super::wal_reads::WalReads;
use crate::paxos::{Body, GroupConfig, GroupId, Instance, Nanos, ProposalId, Restore};
use crate::wal::dma_disk::{DmaDisk, IO_MEMORY_SIZE};
use crate::wal::store::{recover_dir, Store, StoreConfig};
use crate::wal::{WritePlan, BLOCK_SIZE};

/// Everything one shard needs to start.
#[derive(Clone, Debug)]
pub struct ShardPlan {
    /// The shard index.
    pub shard: u16,
    /// Core to pin the shard's thread to (`None`: not pinned).
    pub core: Option<usize>,
    /// The shard's groups.
    pub groups: Vec<GroupConfig>,
    /// The shard's WAL.
    pub store: StoreConfig,
    /// Bytes one WAL write may hold (a multiple of 4 KiB).
    pub wal_buffer_size_max: usize,
    /// Limits of the pure shard.
    pub shard_config: ShardConfig,
    /// The shard's peer links.
    pub net: NetConfig,
    /// Timer granularity: a sleep lasts at least this long unless woken by I/O.
    pub tick_ns: u64,
    /// How long a shutdown waits for proposals in flight.
    pub drain_timeout: Duration,
    /// The log is known to have lost state (an emptied data directory of an existing
    /// member): rejoin as a non-voting learner.
    pub lost_state: bool,
    /// Whether writes are made durable with fdatasync (false only in unsafe
    /// benchmarks: an acknowledged value can then be lost).
    pub fsync: bool,
}

/// A running shard thread.
#[derive(Debug)]
pub struct ShardThread {
    join: std::thread::JoinHandle<Result<(), ShardStopped>>,
    node: crate::paxos::NodeId,
    shard: u16,
}

impl ShardThread {
    /// Waits for the thread to end; its error is the fatal stop, if any.
    ///
    /// # Errors
    ///
    /// Why the shard stopped abnormally (a failed write, a panic).
    pub fn join(self) -> Result<(), ShardStopped> {
        match self.join.join() {
            Ok(result) => result,
            Err(panic) => Err(ShardStopped {
                node: self.node,
                shard: self.shard,
                fatal: Fatal::Panic {
                    message: panic_message(panic.as_ref()),
                },
            }),
        }
    }
}

/// The message of a panic's payload (`panic!` gives a `String` or a `&str`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "(a panic without a message)".to_string())
}

/// Closes the shard's mailbox when the shard's thread ends, by whatever path (a
/// panic included): requests still queued are answered `Stopped`, later pushes are
/// refused, so no handle waits on a thread that is gone.
struct CloseOnExit(Mailbox<Request>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        for request in self.0.close() {
            refuse(request);
        }
    }
}

/// Starts the shard of `plan` on its own thread and returns once it has recovered its
/// log and listens for peers (or failed to). A fatal stop after that (a failed write,
/// a panic) is reported to `latch` at once.
///
/// # Errors
///
/// Why the shard could not start (recovery, the listening address, the executor).
pub fn spawn(
    plan: ShardPlan,
    factory: StateMachineFactory,
    mailbox: Mailbox<Request>,
    latch: Arc<FatalLatch>,
) -> Result<ShardThread, String> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    // Node and shard, so that `top -H` and `perf` tell apart the nodes of one process
    // (a Linux thread name holds 15 bytes: "synod-n65535-s9" fits).
    let name = format!("synod-n{}-s{}", plan.net.node.0, plan.shard);
    let executor_name = name.clone();
    let (node, shard) = (plan.net.node, plan.shard);
    let join = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let _close = CloseOnExit(mailbox.clone());
            if let Some(core) = plan.core {
                // Best effort: a core outside the allowed set leaves the thread unpinned.
                if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                    log::warn!("shard {}: could not pin to core {core}", plan.shard);
                }
            }
            let executor = match LocalExecutorBuilder::new(Placement::Unbound)
                .name(&executor_name)
                .io_memory(IO_MEMORY_SIZE)
                .make()
            {
                Ok(executor) => executor,
                Err(error) => {
                    let message = format!("shard {}: executor: {error}", plan.shard);
                    let _ = ready_tx.send(Err(message));
                    return Ok(());
                }
            };
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                executor.run(run(plan, factory, mailbox, ready_tx, Arc::clone(&latch)))
            }));
            match ran {
                Ok(result) => result,
                Err(panic) => {
                    let stopped = ShardStopped {
                        node,
                        shard,
                        fatal: Fatal::Panic {
                            message: panic_message(panic.as_ref()),
                        },
                    };
                    latch.report(stopped.clone());
                    Err(stopped)
                }
            }
        })
        .map_err(|error| format!("spawn shard thread: {error}"))?;
    let thread = ShardThread { join, node, shard };
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(message)) => {
            let _ = thread.join();
            Err(message)
        }
        Err(_) => Err(thread.join().err().map_or_else(
            || "shard stopped during start".to_string(),
            |stopped| stopped.fatal.to_string(),
        )),
    }
}

/// Bytes of a spare segment zero-filled per turn of spare maintenance: a write that
/// arrives meanwhile waits for at most this much zero-filling (about 1–2 ms here),
/// where a whole segment (64 MiB) used to hold the WAL for ~100 ms after each roll.
const SPARE_SLICE_SIZE: u64 = 2 << 20;

/// One slice of spare maintenance (`SPARE_SLICE_SIZE`): leaves in `more` whether
/// slices are left, or in `error` why it failed (fatal to the shard).
async fn spare_slice(disk: &mut Store, more: &Cell<bool>, error: &RefCell<Option<Fatal>>) {
    match disk.prepare_spares_slice(SPARE_SLICE_SIZE).await {
        Ok(left) => more.set(left),
        Err(failure) => {
            *error.borrow_mut() = Some(Fatal::Disk {
                operation: DiskOperation::PrepareSpares,
                error: failure.to_string(),
            });
        }
    }
}

/// Proves that `dir` takes the WAL's kind of I/O before anything is recovered: creates
/// a probe file with O_DIRECT, writes one block, fdatasyncs it, removes it and syncs
/// the directory. A directory on a read-only (or full, or failing) filesystem is
/// refused at start rather than at the first write.
async fn probe_dir(dir: &Path, shard: u32) -> Result<(), String> {
    let path = dir.join(format!("shard-{shard:03}.probe"));
    let written = DmaDisk::create_zeroed(&path, BLOCK_SIZE as u64).await;
    let removed = match written {
        Ok(()) => std::fs::remove_file(&path).and_then(|()| sync_dir(dir)),
        Err(error) => Err(error),
    };
    removed.map_err(|error| {
        format!(
            "data directory {} is not writable: probe {}: {error}",
            dir.display(),
            path.display()
        )
    })
}

/// Path of the rejoin marker of shard `shard` in `dir`.
fn rejoin_marker(dir: &Path, shard: u32) -> PathBuf {
    dir.join(format!("shard-{shard:03}.rejoin"))
}

fn write_marker(path: &Path) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(b"this shard lost log state; it votes again once it has re-learned\n")?;
    file.sync_all()?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// The calling thread's Linux id: `/proc/thread-self` links to `<pid>/task/<tid>`.
/// Read once at start (a syscall; never on the loop's path).
fn current_thread_id() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// A read the shard has not answered yet: its query and its reply.
type PendingRead = (Bytes, Sender<Result<Bytes, Error>>);

/// The outcome of the WAL write in flight, left by its task for the loop.
type WriteResult = Result<WritePlan, Fatal>;

struct Driver {
    plan: ShardPlan,
    clock: MonotonicClock,
    shard: Shard,
    machines: BTreeMap<GroupId, Box<dyn StateMachine>>,
    mailbox: Mailbox<Request>,
    net: Net,
    /// Local wake-ups of the loop (inbound messages, write completions).
    wake: Rc<Notify>,
    store: Rc<RefCell<Option<Store>>>,
    write_done: Rc<RefCell<Option<WriteResult>>>,
    write_in_flight: bool,
    /// The write planned while the store was busy with spare maintenance.
    pending_write: Option<WritePlan>,
    /// Catch-up reads below the groups' in-memory logs (`wal_reads`).
    wal_reads: WalReads,
    /// A failed spare maintenance (an I/O error: fatal, never retried).
    maintenance_error: Rc<RefCell<Option<Fatal>>>,
    /// Spare maintenance has slices left (`Store::prepare_spares_slice`).
    maintenance_more: Rc<Cell<bool>>,
    /// When the write in flight was started (for `write_busy_ns`).
    write_started: Nanos,
    /// Nanoseconds with a WAL write in flight, summed.
    write_busy_ns: u64,
    /// Loop iterations.
    iterations: u64,
    /// Nanoseconds inside the write task (write + fdatasync as the disk took them).
    disk_ns: Rc<Cell<u64>>,
    /// Nanoseconds of `disk_ns` inside fdatasync.
    sync_ns: Rc<Cell<u64>>,
    /// Instances carrying values applied, and the values they carried.
    value_instances_applied: u64,
    values_applied: u64,
    /// This thread's Linux id (for CPU accounting by whoever reads the status).
    thread_id: Option<u32>,
    next_proposal: u64,
    proposals: HashMap<ProposalId, Sender<Result<Proposed, Error>>>,
    next_read: u64,
    reads: HashMap<ReadId, PendingRead>,
    requests: Vec<Request>,
    inbound: Vec<crate::paxos::Message>,
    effects: Effects,
    /// The rejoin marker's path while it exists (the shard decides when it goes).
    marker: Option<PathBuf>,
    stopping: Option<(Nanos, Vec<Sender<()>>)>,
    fatal: Option<Fatal>,
    /// Where a fatal stop is reported, BEFORE waiting callers are answered.
    latch: Arc<FatalLatch>,
}

async fn run(
    plan: ShardPlan,
    factory: StateMachineFactory,
    mailbox: Mailbox<Request>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    latch: Arc<FatalLatch>,
) -> Result<(), ShardStopped> {
    let driver = match start(plan, factory, mailbox, latch).await {
        Ok(driver) => driver,
        Err(message) => {
            // Not a stop of a running shard: `spawn` returns the reason.
            let _ = ready.send(Err(message));
            return Ok(());
        }
    };
    let _ = ready.send(Ok(()));
    driver.run().await
}

async fn start(
    plan: ShardPlan,
    factory: StateMachineFactory,
    mailbox: Mailbox<Request>,
    latch: Arc<FatalLatch>,
) -> Result<Driver, String> {
    let shard_id = plan.shard;
    let store_config = plan.store.clone();
    std::fs::create_dir_all(&store_config.dir)
        .map_err(|e| format!("create {}: {e}", store_config.dir.display()))?;
    probe_dir(&store_config.dir, store_config.shard).await?;
    let recovery = recover_dir(&store_config).map_err(|e| e.to_string())?;
    let marker_path = rejoin_marker(&store_config.dir, store_config.shard);
    let corrupt = recovery.corruption().is_some();
    if let Some(corruption) = recovery.corruption() {
        log::warn!(
            "shard {shard_id}: WAL corruption before the tail ({corruption}); rejoining as a \
             non-voting learner"
        );
    }
    let lost = plan.lost_state || corrupt || marker_path.exists();
    if lost && !marker_path.exists() {
        // Durable before `Store::prepare` erases the evidence of the loss.
        write_marker(&marker_path).map_err(|e| format!("{}: {e}", marker_path.display()))?;
    }
    let store = Store::prepare(store_config.clone(), &recovery)
        .await
        .map_err(|e| e.to_string())?;
    let commit = recovery.group_commit(
        store_config.geometry,
        plan.wal_buffer_size_max,
        entropy_seed() ^ u64::from(shard_id),
    );
    let mut recovered = crate::wal::replay(&recovery.records);
    drop(recovery);
    let mut groups = Vec::with_capacity(plan.groups.len());
    let mut machines: BTreeMap<GroupId, Box<dyn StateMachine>> = BTreeMap::new();
    for config in &plan.groups {
        config
            .validate()
            .map_err(|e| format!("group {}: {e}", config.group.0))?;
        let state = recovered.remove(&config.group).unwrap_or_default();
        groups.push((
            config.clone(),
            Restore {
                promised: state.promised,
                accepted: state.accepted,
                learned: state.learned,
                chosen_through: state.chosen_through,
                lost_state: lost,
            },
        ));
        machines.insert(config.group, factory(config.group));
    }
    if !recovered.is_empty() {
        log::warn!(
            "shard {shard_id}: the WAL holds records of {} groups this node no longer \
             configures; they are ignored",
            recovered.len()
        );
    }
    let clock = MonotonicClock::start();
    let shard = Shard::new(plan.shard_config.clone(), groups, commit, lost, clock.now());
    let wake = Rc::new(Notify::default());
    let net_wake = Rc::clone(&wake);
    let net = Net::start(plan.net.clone(), Rc::new(move || net_wake.notify()))
        .await
        .map_err(|e| format!("shard {shard_id}: {e}"))?;
    Ok(Driver {
        marker: lost.then_some(marker_path),
        plan,
        clock,
        shard,
        machines,
        mailbox,
        net,
        wake,
        store: Rc::new(RefCell::new(Some(store))),
        write_done: Rc::new(RefCell::new(None)),
        write_in_flight: false,
        pending_write: None,
        wal_reads: WalReads::default(),
        maintenance_error: Rc::new(RefCell::new(None)),
        maintenance_more: Rc::new(Cell::new(false)),
        write_started: Nanos(0),
        write_busy_ns: 0,
        iterations: 0,
        disk_ns: Rc::new(Cell::new(0)),
        sync_ns: Rc::new(Cell::new(0)),
        value_instances_applied: 0,
        values_applied: 0,
        thread_id: current_thread_id(),
        next_proposal: 0,
        proposals: HashMap::new(),
        next_read: 0,
        reads: HashMap::new(),
        requests: Vec::new(),
        inbound: Vec::new(),
        effects: Effects::default(),
        stopping: None,
        fatal: None,
        latch,
    })
}

enum Exit {
    Graceful,
    Abort,
}

impl Driver {
    async fn run(mut self) -> Result<(), ShardStopped> {
        let exit = loop {
            let now = self.clock.now();
            self.iterations += 1;
            if let Some(exit) = self.step_inputs(now) {
                break exit;
            }
            self.shard.flush(now, &mut self.effects);
            self.execute();
            self.try_maintain();
            if self.fatal.is_none() {
                self.fatal = self.shard.poisoned().cloned();
            }
            if let Some(fatal) = &self.fatal {
                self.latch.report(ShardStopped {
                    node: self.plan.net.node,
                    shard: self.plan.shard,
                    fatal: fatal.clone(),
                });
                break Exit::Graceful;
            }
            if self.drained(now) {
                break Exit::Graceful;
            }
            self.wait().await;
        };
        match exit {
            Exit::Abort => {
                self.mailbox.close();
                // As a crash: nothing is flushed or answered, the write in flight is
                // abandoned. The sockets close (as a dead process's would), so the
                // node can restart on the same addresses.
                self.net.close().await;
                Ok(())
            }
            Exit::Graceful => self.close().await,
        }
    }

    /// Feeds everything that arrived into the shard. Returns `Some` to stop now.
    fn step_inputs(&mut self, now: Nanos) -> Option<Exit> {
        let requests = std::mem::take(&mut self.requests);
        for request in requests {
            if let Some(exit) = self.on_request(now, request) {
                return Some(exit);
            }
        }
        self.net.drain_inbound(&mut self.inbound);
        for message in self.inbound.drain(..) {
            self.shard.step(now, ShardInput::Message(message));
        }
        self.wal_reads_done(now);
        self.start_wal_reads();
        self.try_start_write();
        let maintenance = self.maintenance_error.borrow_mut().take();
        if let Some(fatal) = maintenance {
            self.on_fatal(now, fatal);
        }
        let done = self.write_done.borrow_mut().take();
        if let Some(result) = done {
            self.write_in_flight = false;
            self.write_busy_ns += now.0.saturating_sub(self.write_started.0);
            match result {
                Ok(plan) => {
                    let lsn_through = plan.lsn_through;
                    self.shard.step(now, ShardInput::WriteDone { lsn_through });
                    self.shard.recycle(plan.bytes);
                }
                Err(fatal) => self.on_fatal(now, fatal),
            }
        }
        if self.shard.next_deadline().is_some_and(|d| d <= now) {
            self.shard.step(now, ShardInput::Tick);
        }
        None
    }

    /// A WAL failure: the shard is poisoned (it produces nothing more) and the loop
    /// stops at the end of this iteration.
    fn on_fatal(&mut self, now: Nanos, fatal: Fatal) {
        log::error!("shard {}: {fatal}; the shard stops", self.plan.shard);
        self.fatal.get_or_insert(fatal.clone());
        self.shard.step(now, ShardInput::WriteFailed { fatal });
    }

    fn on_request(&mut self, now: Nanos, request: Request) -> Option<Exit> {
        match request {
            Request::Propose {
                group,
                value,
                reply,
            } => {
                if self.stopping.is_some() {
                    reply.send(Err(Error::Stopped));
                    return None;
                }
                if self.shard.group(group).is_none() {
                    reply.send(Err(Error::NoSuchGroup { group }));
                    return None;
                }
                self.next_proposal += 1;
                let id = ProposalId(self.next_proposal);
                self.proposals.insert(id, reply);
                self.shard
                    .step(now, ShardInput::Propose { group, id, value });
            }
            Request::Read {
                group,
                query,
                reply,
            } => self.on_read(now, group, query, reply),
            Request::Status { reply } => reply.send(self.status()),
            Request::Shutdown { reply } => match &mut self.stopping {
                Some((_, waiting)) => waiting.push(reply),
                None => {
                    for request in self.mailbox.close() {
                        refuse(request);
                    }
                    let deadline = now.plus(self.plan.drain_timeout.as_nanos() as u64);
                    self.stopping = Some((deadline, vec![reply]));
                }
            },
            Request::Abort => return Some(Exit::Abort),
        }
        None
    }

    /// A read: the shard decides when (and whether) it may be served.
    fn on_read(
        &mut self,
        now: Nanos,
        group: GroupId,
        query: Bytes,
        reply: Sender<Result<Bytes, Error>>,
    ) {
        if self.stopping.is_some() {
            reply.send(Err(Error::Stopped));
            return;
        }
        self.next_read += 1;
        let id = ReadId(self.next_read);
        self.reads.insert(id, (query, reply));
        self.shard.step(now, ShardInput::Read { group, id });
    }

    /// Executes what the shard asked for after a flush: applies, then answers (in
    /// the order of `Effects`).
    fn execute(&mut self) {
        // BEFORE the write takes the store: reads are planned against its index.
        self.wal_reads.queue(&mut self.effects.wal_reads);
        self.start_wal_reads();
        if let Some(plan) = self.effects.write.take() {
            self.plan_write(plan);
        }
        for (peer, messages) in self.effects.send.drain(..) {
            self.net.send(peer, &messages);
        }
        // The proposals that wait for an output, by the value that answers them.
        let mut outputs: HashMap<(GroupId, Instance, usize), ProposalId> = HashMap::new();
        for (id, outcome) in self.effects.replies.drain(..) {
            match outcome {
                ProposalOutcome::Applied {
                    group,
                    instance,
                    index,
                } => {
                    outputs.insert((group, instance, index), id);
                }
                ProposalOutcome::Aborted => {
                    if let Some(reply) = self.proposals.remove(&id) {
                        reply.send(Err(Error::Aborted));
                    }
                }
                ProposalOutcome::Failed(error) => {
                    if let Some(reply) = self.proposals.remove(&id) {
                        reply.send(Err(error.into()));
                    }
                }
            }
        }
        for apply in self.effects.apply.drain(..) {
            let Some(machine) = self.machines.get_mut(&apply.group) else {
                continue;
            };
            let Body::Values(values) = &apply.entry.body else {
                continue;
            };
            if apply.skip {
                continue;
            }
            self.value_instances_applied += 1;
            self.values_applied += values.len() as u64;
            for (index, value) in values.iter().enumerate() {
                let output = machine.apply(apply.instance, value);
                let waiting = outputs.remove(&(apply.group, apply.instance, index));
                if let Some(reply) = waiting.and_then(|id| self.proposals.remove(&id)) {
                    reply.send(Ok(Proposed {
                        instance: apply.instance,
                        output,
                    }));
                }
            }
        }
        for read in self.effects.reads.drain(..) {
            let Some((query, reply)) = self.reads.remove(&read.id) else {
                continue;
            };
            reply.send(match read.outcome {
                // The state machine has applied at least the read index.
                Ok(_) => Ok(self
                    .machines
                    .get(&read.group)
                    .map(|machine| machine.query(&query))
                    .unwrap_or_default()),
                Err(ReadRefused::NoSuchGroup) => Err(Error::NoSuchGroup { group: read.group }),
                Err(ReadRefused::NotLeader { hint }) => Err(Error::NotLeader { hint }),
                Err(ReadRefused::LeaseNotHeld) => Err(Error::LeaseNotHeld),
                Err(ReadRefused::Overloaded { .. }) => Err(Error::Overloaded),
            });
        }
        // Refused out-of-bounds messages, already rate-limited by the shard.
        for line in self.effects.warnings.drain(..) {
            log::warn!("shard {}: {line}", self.plan.shard);
        }
        if std::mem::take(&mut self.effects.clear_rejoin_marker) {
            self.clear_marker();
        }
    }

    /// Removes the rejoin marker (the shard decided it may go) and syncs the directory.
    fn clear_marker(&mut self) {
        let Some(path) = self.marker.take() else {
            return;
        };
        let result = std::fs::remove_file(&path)
            .and_then(|()| sync_dir(path.parent().unwrap_or(Path::new("."))));
        match result {
            Ok(()) => log::info!("shard {}: re-learned; voting again", self.plan.shard),
            // The marker stays on disk: the next start rejoins as a learner again (safe).
            Err(error) => log::warn!("{}: {error}", path.display()),
        }
    }

    /// Starts waiting WAL reads while the store is in the loop's hands (not taken by
    /// a write or spare maintenance): each runs as a task of its own.
    fn start_wal_reads(&mut self) {
        if let Some(store) = self.store.borrow().as_ref() {
            for task in self.wal_reads.start(store, &self.wake) {
                glommio::spawn_local(task).detach();
            }
        }
    }

    /// Hands the finished WAL reads to the shard; a failed one stops the shard.
    fn wal_reads_done(&mut self, now: Nanos) {
        for done in self.wal_reads.take_done() {
            match done {
                Ok(input) => self.shard.step(now, input),
                Err(fatal) => self.on_fatal(now, fatal),
            }
        }
    }

    /// Takes the plan of a flush: it starts at once, or as soon as the store is back
    /// from spare maintenance (the shard plans at most one write in flight).
    fn plan_write(&mut self, plan: WritePlan) {
        assert!(
            !self.write_in_flight && self.pending_write.is_none(),
            "one WAL write in flight at most"
        );
        self.write_in_flight = true;
        self.pending_write = Some(plan);
        self.try_start_write();
    }

    /// Starts the pending write when the store is free. The task writes (and syncs),
    /// reports completion at once, then keeps the store for one slice of spare
    /// maintenance when spares are missing (`SPARE_SLICE_SIZE`; `try_maintain` runs the
    /// rest while idle), so zero-filling new segments stays off the write path.
    fn try_start_write(&mut self) {
        if self.pending_write.is_none() || self.store.borrow().is_none() {
            return;
        }
        let Some(plan) = self.pending_write.take() else {
            return;
        };
        let Some(mut disk) = self.store.borrow_mut().take() else {
            return;
        };
        self.write_started = self.clock.now();
        let store = Rc::clone(&self.store);
        let done = Rc::clone(&self.write_done);
        let maintenance = Rc::clone(&self.maintenance_error);
        let wake = Rc::clone(&self.wake);
        let fsync = self.plan.fsync;
        let spares_wanted = self.plan.store.spare_count_min;
        let more = Rc::clone(&self.maintenance_more);
        let clock = self.clock;
        let disk_ns = Rc::clone(&self.disk_ns);
        let sync_ns = Rc::clone(&self.sync_ns);
        glommio::spawn_local(async move {
            let started = clock.now();
            // `Store::write` in two steps, timed apart.
            let lsn_through = plan.lsn_through.0;
            let mut result = disk.write_unsynced(&plan).await.map_err(|e| Fatal::Disk {
                operation: DiskOperation::Write {
                    size: plan.bytes.len(),
                    lsn_through,
                },
                error: e.to_string(),
            });
            let written = clock.now();
            if fsync && result.is_ok() {
                result = disk.sync().await.map_err(|e| Fatal::Disk {
                    operation: DiskOperation::Sync { lsn_through },
                    error: e.to_string(),
                });
            }
            let finished = clock.now();
            disk_ns.set(disk_ns.get() + finished.0.saturating_sub(started.0));
            sync_ns.set(sync_ns.get() + finished.0.saturating_sub(written.0));
            let ok = result.is_ok();
            *done.borrow_mut() = Some(result.map(|()| plan));
            wake.notify();
            if ok && (disk.spare_count() < spares_wanted || more.get()) {
                spare_slice(&mut disk, &more, &maintenance).await;
            }
            *store.borrow_mut() = Some(disk);
            wake.notify();
        })
        .detach();
    }

    /// Runs one slice of spare maintenance when slices are left and the store is idle
    /// (no write pending or in flight); each write also runs one after it completes.
    fn try_maintain(&mut self) {
        if !self.maintenance_more.get()
            || self.write_in_flight
            || self.pending_write.is_some()
            || self.stopping.is_some()
            || self.fatal.is_some()
        {
            return;
        }
        let Some(mut disk) = self.store.borrow_mut().take() else {
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

    /// Whether a shutdown may finish now: no write in flight, and no proposal left
    /// or the drain timeout passed.
    fn drained(&self, now: Nanos) -> bool {
        match &self.stopping {
            Some((deadline, _)) => {
                !self.write_in_flight && (self.proposals.is_empty() || now >= *deadline)
            }
            None => false,
        }
    }

    /// Sleeps until a request, an inbound message, a write completion or the next
    /// timer; leaves the drained requests in `self.requests`.
    async fn wait(&mut self) {
        let now = self.clock.now();
        let tick = self.plan.tick_ns;
        let mut deadline = self
            .shard
            .next_deadline()
            .map_or(now.plus(1_000_000_000), |d| d.max(now.plus(tick)));
        if let Some((drain_deadline, _)) = &self.stopping {
            deadline = deadline.min(*drain_deadline);
        }
        let sleep = Duration::from_nanos(deadline.0.saturating_sub(now.0));
        let mut timer = pin!(glommio::timer::sleep(sleep));
        let wake = Rc::clone(&self.wake);
        let mailbox = self.mailbox.clone();
        let requests = &mut self.requests;
        poll_fn(|cx| {
            if wake.poll_wait(cx).is_ready() {
                return Poll::Ready(());
            }
            if !mailbox.is_closed() && mailbox.drain(requests, cx.waker()) > 0 {
                return Poll::Ready(());
            }
            timer.as_mut().poll(cx)
        })
        .await;
        // Whatever else arrived meanwhile is taken in the same iteration.
        if !self.mailbox.is_closed() {
            let waker = poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
            self.mailbox.drain(&mut self.requests, &waker);
        }
    }

    fn status(&self) -> ShardStatus {
        let counters = self.shard.counters();
        let net = self.net.counters();
        ShardStatus {
            shard: self.plan.shard,
            groups: self
                .shard
                .groups()
                .map(|g| GroupStatus {
                    group: g.config().group,
                    role: g.role(),
                    leader_hint: g.leader_hint(),
                    promised: g.promised(),
                    chosen_through: g.chosen_through(),
                    applied_through: g.applied_through(),
                    checksum: g.checksum(),
                    voting: g.is_voting(),
                    memory: Some(LogMemory::of(g)),
                })
                .collect(),
            writes: counters.writes,
            write_busy_ns: self.write_busy_ns,
            iterations: self.iterations,
            disk_ns: self.disk_ns.get(),
            sync_ns: self.sync_ns.get(),
            records: counters.records,
            elections: self.shard.groups().map(|g| g.counters().campaigns).sum(),
            chosen_as_leader: self
                .shard
                .groups()
                .map(|g| g.counters().chosen_as_leader)
                .sum(),
            value_instances_applied: self.value_instances_applied,
            values_applied: self.values_applied,
            thread_id: self.thread_id,
            dropped_messages: net.messages_dropped_unknown_peer
                + net.messages_dropped_disconnected
                + net.messages_dropped_queue_full
                + net.messages_dropped_too_large,
            refused_connections: net.closes.values().sum(),
            refused_messages: counters.refused_messages,
            ignored: {
                let mut ignored = BTreeMap::new();
                for group in self.shard.groups() {
                    for (reason, count) in &group.counters().ignored {
                        *ignored.entry(*reason).or_default() += count;
                    }
                }
                ignored
            },
            fatal: self
                .fatal
                .as_ref()
                .or_else(|| self.shard.poisoned())
                .map(Fatal::to_string),
        }
    }

    /// Answers everyone still waiting, closes the links and the WAL.
    async fn close(mut self) -> Result<(), ShardStopped> {
        for request in self.mailbox.close() {
            refuse(request);
        }
        for request in self.requests.drain(..) {
            refuse(request);
        }
        for (_, reply) in self.proposals.drain() {
            reply.send(Err(Error::Stopped));
        }
        for (_, (_, reply)) in self.reads.drain() {
            reply.send(Err(Error::Stopped));
        }
        self.net.close().await;
        // Spare maintenance may still hold the store: let it finish (bounded).
        for _ in 0..10_000 {
            if self.store.borrow().is_some() {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        let fatal = self.fatal.take();
        let store = self.store.borrow_mut().take();
        if let Some(store) = store {
            if fatal.is_none() {
                if let Err(error) = store.close().await {
                    log::warn!("shard {}: closing the WAL: {error}", self.plan.shard);
                }
            }
        }
        if let Some((_, waiting)) = self.stopping.take() {
            for reply in waiting {
                reply.send(());
            }
        }
        match fatal {
            Some(fatal) => Err(ShardStopped {
                node: self.plan.net.node,
                shard: self.plan.shard,
                fatal,
            }),
            None => Ok(()),
        }
    }
}

/// Answers a request that arrives after the shard stopped taking them.
fn refuse(request: Request) {
    match request {
        Request::Propose { reply, .. } => reply.send(Err(Error::Stopped)),
        Request::Read { reply, .. } => reply.send(Err(Error::Stopped)),
        Request::Status { reply } => drop(reply),
        Request::Shutdown { reply } => reply.send(()),
        Request::Abort => {}
    }
}

/// The default state machine factory for tools and benchmarks: applies nothing and
/// returns an empty output (the log itself is the product).
#[must_use]
pub fn null_factory() -> StateMachineFactory {
    struct Null;
    impl StateMachine for Null {
        fn apply(&mut self, _: Instance, _: &[u8]) -> Bytes {
            Bytes::new()
        }
        fn query(&self, _: &[u8]) -> Bytes {
            Bytes::new()
        }
    }
    Arc::new(|_| Box::new(Null))
}
