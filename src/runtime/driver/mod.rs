//! The glommio driver of one shard: a thread pinned to one core (`thread`), running one
//! `LocalExecutor` that owns the shard end to end: its WAL (`wal_writer`), its peer
//! links (`net::Net`), its timers, its groups (`shard::Shard`) and their state
//! machines. Nothing it owns crosses to another thread; handles reach it only through
//! its [`Mailbox`], and replies leave through one-shot channels. The pure `Shard`
//! decides; this loop only executes its `Effects`: it applies chosen values, answers
//! callers and reports status (`status`).
//!
//! The loop (design: "the shard loop"):
//! 1. drain the mailbox (proposals, reads, status, stop), the peer links' inbound
//!    messages, and what the WAL writer finished; fire due timers;
//! 2. `Shard::flush`: groups coalesce proposals, durable acks are released;
//! 3. hand the next WAL write to the writer, send each peer what is pending in one
//!    write, apply chosen values in instance order and answer their proposers, serve
//!    reads whose read index is applied;
//! 4. sleep until a mailbox push, an inbound message, the writer's wake-up or the next
//!    timer (rounded up to `tick_ns`, so heartbeats of many groups leave together).
//!
//! Invariants:
//! - a proposal is answered `Ok` only after its value is applied here, which happens
//!   only after it is chosen, which needs a quorum of durable accepts;
//! - every caller is answered exactly once: with its outcome, or `Stopped` when the
//!   shard stops (`close`, or `CloseOnExit` for requests that arrive after);
//! - a failed WAL operation poisons the shard (`WriteFailed`, never retried); the loop
//!   then reports the stop to the node's `FatalLatch` BEFORE it answers any waiting
//!   caller `Stopped`;
//! - a shutdown finishes only with no write in flight, once proposals in flight are
//!   answered or the drain timeout passed.

mod checkpoint_writer;
mod memberships;
mod retired;
mod start;
mod status;
mod thread;
mod trace;
mod transfers;
mod wal_writer;

pub use thread::{spawn, ShardStartError, ShardThread};
pub use transfers::TRANSFER_TARGET_NOT_A_VOTER;
// Where tools and benchmarks have always found it.
pub use super::state_machine::null_factory;

use std::collections::{BTreeMap, HashMap};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;

use super::checkpoints::TakeCheckpoint;
use super::clock::MonotonicClock;
use super::fatal::{FatalLatch, ShardStopped};
use super::log_reads::{LogRead, LogReadAsk, LogReadId, Position};
use super::mailbox::{Mailbox, Sender};
use super::net::{Net, NetConfig};
use super::notify::Notify;
use super::request::{Error, ProposalCounters, Proposed, Request};
use super::shard::{Effects, ProposalOutcome, ReadId, ReadRefused, Shard, ShardConfig, ShardInput};
use super::state_machine::{CheckpointImage, StateMachine, StateMachineFactory};
use super::wal_reads::WalReads;
use crate::paxos::{Body, GroupConfig, GroupId, Instance, Nanos, ProposalId};
use crate::wal::store::StoreConfig;
use checkpoint_writer::CheckpointWriter;
use trace::{Placements, Waiting};
use wal_writer::WalWriter;

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
    /// WAL writes (with their fdatasync) in flight at once (`GroupCommit`).
    pub wal_writes_in_flight_max: usize,
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

/// A read the shard has not answered yet: its query and its caller.
type PendingRead = (Bytes, Waiting<Bytes>);

/// The running shard: the loop's state.
struct Driver {
    plan: ShardPlan,
    clock: MonotonicClock,
    shard: Shard,
    machines: BTreeMap<GroupId, Box<dyn StateMachine>>,
    mailbox: Mailbox<Request>,
    net: Net,
    /// The owner of the WAL's files: executes the shard's write plans.
    wal: WalWriter,
    /// Catch-up reads below the groups' in-memory logs (`Effects::wal_reads`).
    wal_reads: WalReads,
    /// Saves the checkpoints the shard asks for (`Effects::checkpoints`), reads
    /// pieces of them for peers (`Effects::checkpoint_reads`).
    checkpoints: CheckpointWriter,
    /// Builds a fresh state machine for a checkpoint received from a peer.
    factory: StateMachineFactory,
    /// Local wake-ups of the loop (inbound messages, the WAL writer).
    wake: Rc<Notify>,
    /// Loop iterations.
    iterations: u64,
    /// Instances carrying values applied, and the values they carried.
    value_instances_applied: u64,
    values_applied: u64,
    /// Proposals received and how they ended (the metrics).
    proposal_counters: ProposalCounters,
    /// This thread's Linux id (for CPU accounting by whoever reads the status).
    thread_id: Option<u32>,
    next_proposal: u64,
    proposals: HashMap<ProposalId, Waiting<Proposed>>,
    /// Traced proposals whose instance the span does not show yet.
    placements: Placements,
    next_read: u64,
    reads: HashMap<ReadId, PendingRead>,
    /// Log reads the shard has not answered yet.
    log_reads: HashMap<LogReadId, Waiting<LogRead>>,
    /// Leadership transfers waiting for the target to lead.
    transfers: transfers::Transfers,
    /// Membership changes waiting to be chosen and in effect.
    memberships: memberships::Memberships,
    requests: Vec<Request>,
    inbound: Vec<crate::paxos::Message>,
    effects: Effects,
    /// A shutdown under way: its drain deadline and who waits for it.
    stopping: Option<(Nanos, Vec<Sender<()>>)>,
    /// Where a fatal stop is reported, BEFORE waiting callers are answered.
    latch: Arc<FatalLatch>,
    /// What the start spent recovering (reported in the status).
    recovery: crate::runtime::request::RecoveryReport,
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
            self.placements.scan(&self.shard, &mut self.proposals);
            if let Some(fatal) = self.shard.poisoned() {
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
            if self.stopping.is_none() {
                self.wal.maintain(self.wal_reads.running_count());
            } else {
                self.wal.stop_maintenance();
            }
            self.wait().await;
        };
        match exit {
            Exit::Abort => {
                self.mailbox.close();
                // As a crash: nothing is flushed or answered, the writes in flight are
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
        self.transfers.poll(now, &self.shard);
        self.memberships.poll(now, &self.shard);
        self.wal_reads_done(now);
        self.start_wal_reads();
        self.wal.poll(now, &mut self.shard);
        self.checkpoints.poll(now, &mut self.shard);
        if self.shard.next_deadline().is_some_and(|d| d <= now) {
            self.shard.step(now, ShardInput::Tick);
        }
        None
    }

    fn on_request(&mut self, now: Nanos, request: Request) -> Option<Exit> {
        match request {
            Request::Propose {
                group,
                value,
                reply,
                span,
            } => {
                self.proposal_counters.received += 1;
                self.next_proposal += 1;
                let id = ProposalId(self.next_proposal);
                let span = trace::propose(&span, self.plan.shard, group, id);
                let waiting = Waiting::new(reply, span);
                let refused = if self.stopping.is_some() {
                    Some(Error::Stopped)
                } else if self.shard.group(group).is_none() {
                    Some(Error::NoSuchGroup { group })
                } else {
                    None
                };
                if let Some(error) = refused {
                    self.proposal_counters.fail(&error);
                    waiting.fail(error);
                    return None;
                }
                trace::queued(waiting.span());
                self.placements.watch(group, id, waiting.span());
                self.proposals.insert(id, waiting);
                self.shard
                    .step(now, ShardInput::Propose { group, id, value });
            }
            Request::Read {
                group,
                query,
                reply,
                span,
            } => self.on_read(now, group, query, (reply, span)),
            Request::ReadLog {
                group,
                from,
                size_max,
                wait,
                reply,
                span,
            } => self.on_read_log(now, group, (from, size_max, wait), (reply, span)),
            Request::TransferLeadership { group, to, reply } => {
                if self.stopping.is_some() {
                    reply.send(Err(Error::Stopped));
                } else {
                    self.transfers.ask(now, &mut self.shard, (group, to), reply);
                }
            }
            Request::ChangeMembership {
                group,
                change,
                reply,
            } => {
                if self.stopping.is_some() {
                    reply.send(Err(Error::Stopped));
                } else {
                    self.next_proposal += 1;
                    let id = ProposalId(self.next_proposal);
                    let address_book = self.plan.net.layout.keys().copied().collect();
                    let ask = (group, change, id);
                    self.memberships
                        .ask(now, &mut self.shard, ask, &address_book, reply);
                }
            }
            Request::Status { reply, span } => {
                let status = self.status();
                trace::status_answered(&span, self.plan.shard, status.groups.len());
                reply.send(status);
            }
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
        (reply, span): (Sender<Result<Bytes, Error>>, tracing::Span),
    ) {
        self.next_read += 1;
        let id = ReadId(self.next_read);
        let span = trace::read(&span, self.plan.shard, group, id);
        let waiting = Waiting::new(reply, span);
        if self.stopping.is_some() {
            waiting.fail(Error::Stopped);
            return;
        }
        trace::queued(waiting.span());
        self.reads.insert(id, (query, waiting));
        self.shard.step(now, ShardInput::Read { group, id });
    }

    /// A log read: the shard decides what it returns (from memory or the WAL) and when.
    fn on_read_log(
        &mut self,
        now: Nanos,
        group: GroupId,
        (from, size_max, wait): (Position, usize, Option<Duration>),
        (reply, span): (Sender<Result<LogRead, Error>>, tracing::Span),
    ) {
        // Log read ids share the reads' counter: unique among both.
        self.next_read += 1;
        let id = LogReadId(self.next_read);
        let span = trace::read_log(&span, self.plan.shard, group, id, from);
        let waiting = Waiting::new(reply, span);
        if self.stopping.is_some() {
            waiting.fail(Error::Stopped);
            return;
        }
        trace::queued(waiting.span());
        self.log_reads.insert(id, waiting);
        let wait_until =
            wait.map(|wait| now.plus(wait.as_nanos().min(u128::from(u64::MAX / 2)) as u64));
        let ask = LogReadAsk {
            id,
            group,
            from,
            size_max,
            wait_until,
        };
        self.shard.step(now, ShardInput::LogRead(ask));
    }

    /// Starts waiting WAL reads while the store is idle (not lent to a write or spare
    /// maintenance): each runs as a task of its own.
    fn start_wal_reads(&mut self) {
        let (reads, wake) = (&mut self.wal_reads, &self.wake);
        if let Some(tasks) = self.wal.with_idle_store(|store| reads.start(store, wake)) {
            for task in tasks {
                glommio::spawn_local(task).detach();
            }
        }
    }

    /// Hands the finished WAL reads to the shard; a failed one stops the shard (as a
    /// failed write does: `WriteFailed`).
    fn wal_reads_done(&mut self, now: Nanos) {
        for done in self.wal_reads.take_done() {
            match done {
                Ok(input) => self.shard.step(now, input),
                Err(fatal) => {
                    log::error!("shard {}: {fatal}; the shard stops", self.plan.shard);
                    self.shard.step(now, ShardInput::WriteFailed { fatal });
                }
            }
        }
    }

    /// Answers the proposals the shard failed or aborted, and returns those that wait
    /// for their value's output, by (group, instance, index).
    fn answer_replies(&mut self) -> HashMap<(GroupId, Instance, usize), ProposalId> {
        let mut outputs: HashMap<(GroupId, Instance, usize), ProposalId> = HashMap::new();
        self.memberships
            .take_replies(&self.shard, &mut self.effects.replies);
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
                    if let Some(waiting) = self.proposals.remove(&id) {
                        self.proposal_counters.fail(&Error::Aborted);
                        waiting.fail(Error::Aborted);
                    }
                }
                ProposalOutcome::Failed(error) => {
                    if let Some(waiting) = self.proposals.remove(&id) {
                        let error = Error::from(error);
                        self.proposal_counters.fail(&error);
                        waiting.fail(error);
                    }
                }
            }
        }
        outputs
    }

    /// Executes what the shard asked for after a flush: applies, then answers (in
    /// the order of `Effects`).
    fn execute(&mut self) {
        // BEFORE the write takes the store: reads are planned against its index.
        self.wal_reads.queue(&mut self.effects.wal_reads);
        self.start_wal_reads();
        if let Some(plan) = self.effects.write.take() {
            self.wal.submit(self.clock.now(), plan);
        }
        if let Some(truncate) = self.effects.wal_truncate.take() {
            self.wal.truncate(truncate);
        }
        for (peer, messages) in self.effects.send.drain(..) {
            self.net.send(peer, &messages);
        }
        // The proposals that wait for an output, by the value that answers them.
        let mut outputs = self.answer_replies();
        for read in self.effects.checkpoint_reads.drain(..) {
            self.checkpoints.read(read);
        }
        // Each install BEFORE the applies from its position on (`InstallCheckpoint`).
        let mut installs = std::mem::take(&mut self.effects.installs)
            .into_iter()
            .peekable();
        for (index, apply) in self.effects.apply.drain(..).enumerate() {
            while let Some(install) = installs.next_if(|i| i.apply_index <= index) {
                install_checkpoint(
                    &mut self.machines,
                    &self.factory,
                    &self.checkpoints,
                    install,
                );
            }
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
                let Some(id) = outputs.remove(&(apply.group, apply.instance, index)) else {
                    continue;
                };
                if let Some(waiting) = self.proposals.remove(&id) {
                    self.proposal_counters.applied += 1;
                    let position = Position {
                        instance: apply.instance,
                        index: index as u32,
                    };
                    waiting.applied(id, apply.group, Proposed { position, output });
                }
            }
        }
        for install in installs {
            install_checkpoint(
                &mut self.machines,
                &self.factory,
                &self.checkpoints,
                install,
            );
        }
        // AFTER the applies: each image is the state right after its instance.
        for take in self.effects.checkpoints.drain(..) {
            let image = self.machines.get(&take.group).and_then(|m| m.checkpoint());
            self.checkpoints.start(take, image);
        }
        for read in self.effects.reads.drain(..) {
            let Some((query, waiting)) = self.reads.remove(&read.id) else {
                continue;
            };
            match read.outcome {
                // The state machine has applied at least the read index.
                Ok(read_index) => waiting.read(
                    read_index,
                    self.machines
                        .get(&read.group)
                        .map(|machine| machine.query(&query))
                        .unwrap_or_default(),
                ),
                Err(ReadRefused::NoSuchGroup) => {
                    waiting.fail(Error::NoSuchGroup { group: read.group });
                }
                Err(ReadRefused::NotLeader { hint }) => waiting.fail(Error::NotLeader { hint }),
                Err(ReadRefused::LeaseNotHeld) => waiting.fail(Error::LeaseNotHeld),
                Err(ReadRefused::Overloaded { .. }) => waiting.fail(Error::Overloaded),
            }
        }
        for done in self.effects.log_reads.drain(..) {
            if let Some(waiting) = self.log_reads.remove(&done.id) {
                let group = done.group;
                waiting.answer(
                    done.outcome
                        .map_err(|refused| Error::of_log_read(refused, group)),
                );
            }
        }
        // Refused out-of-bounds messages, already rate-limited by the shard.
        for line in self.effects.warnings.drain(..) {
            log::warn!("shard {}: {line}", self.plan.shard);
        }
        // The retired groups are durable before the rejoin marker may go (`retired`).
        if let Some(groups) = self.effects.retired_groups.take() {
            self.wal.write_retired_groups(&groups);
        }
        if std::mem::take(&mut self.effects.clear_rejoin_marker) {
            self.wal.clear_rejoin_marker();
        }
    }

    /// Whether a shutdown may finish now: no write in flight, and no proposal or
    /// checkpoint left or the drain timeout passed.
    fn drained(&self, now: Nanos) -> bool {
        match &self.stopping {
            Some((deadline, _)) => {
                let idle =
                    self.proposals.is_empty() && self.shard.checkpoints().in_flight_count() == 0;
                self.wal.writes_in_flight() == 0 && (idle || now >= *deadline)
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

    /// Answers everyone still waiting, closes the links and the WAL.
    async fn close(mut self) -> Result<(), ShardStopped> {
        for request in self.mailbox.close() {
            refuse(request);
        }
        for request in self.requests.drain(..) {
            refuse(request);
        }
        #[expect(
            clippy::iter_over_hash_type,
            reason = "every waiter gets the same error: the order is not observable"
        )]
        for (_, waiting) in self.proposals.drain() {
            waiting.fail(Error::Stopped);
        }
        #[expect(
            clippy::iter_over_hash_type,
            reason = "every waiter gets the same error: the order is not observable"
        )]
        for (_, (_, waiting)) in self.reads.drain() {
            waiting.fail(Error::Stopped);
        }
        self.transfers.fail_all(&Error::Stopped);
        self.memberships.fail_all(&Error::Stopped);
        #[expect(
            clippy::iter_over_hash_type,
            reason = "every waiter gets the same error: the order is not observable"
        )]
        for (_, waiting) in self.log_reads.drain() {
            waiting.fail(Error::Stopped);
        }
        self.net.close().await;
        let fatal = self.shard.poisoned().cloned();
        self.wal.close(fatal.is_some()).await;
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
/// Installs a verified checkpoint received from a peer: a fresh state machine restored
/// from its image replaces the group's, on the shard's thread (a `StateMachine` is not
/// `Send`: it never leaves its shard; a large image's `restore` delays the shard's
/// loop as a large apply would), then the file is saved as the group's own checkpoint.
/// A machine that refuses a verified image its own kind produced on another replica is
/// a bug of the machine, and applying on would diverge: the shard stops (the panic is
/// reported as its fatal reason).
fn install_checkpoint(
    machines: &mut BTreeMap<GroupId, Box<dyn StateMachine>>,
    factory: &StateMachineFactory,
    writer: &CheckpointWriter,
    install: crate::runtime::InstallCheckpoint,
) {
    let (group, through) = (install.group, install.base.through);
    let mut machine = factory(group);
    if let Err(why) = machine.restore(through, &install.image) {
        panic!(
            "group {}: the state machine refused a verified checkpoint at {} received from \
             a peer: {why}",
            group.0, through.0
        );
    }
    log::info!(
        "group {}: installed a checkpoint at {} received from a peer ({} bytes of image)",
        group.0,
        through.0,
        install.image.len()
    );
    machines.insert(group, machine);
    let take = TakeCheckpoint {
        group,
        base: install.base,
        keep: install.keep,
    };
    writer.start(take, Some(CheckpointImage::ready(install.image)));
}

fn refuse(request: Request) {
    match request {
        Request::Propose { reply, .. } => reply.send(Err(Error::Stopped)),
        Request::Read { reply, .. } => reply.send(Err(Error::Stopped)),
        Request::ReadLog { reply, .. } => reply.send(Err(Error::Stopped)),
        Request::TransferLeadership { reply, .. } => reply.send(Err(Error::Stopped)),
        Request::ChangeMembership { reply, .. } => reply.send(Err(Error::Stopped)),
        Request::Status { reply, .. } => drop(reply),
        Request::Shutdown { reply } => reply.send(()),
        Request::Abort => {}
    }
}
