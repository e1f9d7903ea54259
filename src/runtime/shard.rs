//! `Shard`: the pure core of one core's event loop. It owns many groups, assigns LSNs
//! to their records, plans one WAL write per batch (group commit, at most
//! `writes_in_flight_max` in flight), holds every `send_after_persist` message until its LSN is durable, loops
//! messages addressed to this node back into its groups, and merges what leaves per
//! peer. The glommio driver and the simulator are two thin executors of `Effects`.
//!
//! Invariants:
//! - a held message leaves only once `durable_through >= its LSN`, where its LSN is the
//!   last LSN assigned when it was produced (the WAL is durable as a prefix);
//! - at most `writes_in_flight_max` writes are in flight (`GroupCommit`); their
//!   completions may come in any order, and `durable_through` advances only over
//!   contiguous ones;
//! - a failed write poisons the shard: it stops and produces nothing more;
//! - `deadlines` holds exactly one `(group.next_deadline(), id)` per group: a `Tick` and
//!   `next_deadline` cost O(log groups + due groups), not a scan of every group (with
//!   thousands of idle groups per shard, the scans dominated the idle CPU);
//! - records pending for the WAL stay within the bounds of `backpressure` (a peer
//!   message beyond is refused, as if lost; a refused catch-up chunk is told to its
//!   group);
//! - a peer message its group refused as out of bounds (forged or corrupt) adds no
//!   record and no message; it is counted and reported rate-limited (`refusals`);
//! - a read is answered ready only at an index its group reported under the lease
//!   (`Group::read_index`) and only once that index is applied here; a read waits at
//!   most while its group leads and holds the lease; at most `reads_pending_count_max`
//!   wait;
//! - the rejoin marker is cleared only once every group votes again or is retired
//!   (`paxos::learner`, "Retirement") and everything produced up to the moment they
//!   all did is durable; a group's retirement is handed to the executor
//!   (`Effects::retired_groups`) in the flush where it happens, before that;
//! - every proposal handed in is answered exactly once (applied, aborted or failed),
//!   unless the shard stops first (the executor then answers `Stopped`);
//! - a checkpoint is asked for (`Effects::checkpoints`) at its group's applied
//!   watermark after the flush's applies, at most one per group until it is durable
//!   (`checkpoints`); a failed one is never fatal.
//! - a group's `Output::wal_reads` (catch-up below its in-memory log) become
//!   `Effects::wal_reads`, at most one in flight per (group, peer): a repeated request
//!   meanwhile is dropped (counted), the peer asks again. A read leaves only once every
//!   record produced before it is durable (as `send_after_persist`), so the records of
//!   the instances it reads (applied, hence produced earlier) are written and indexed
//!   when the executor plans it. Their answers come back as `ShardInput::WalReadDone`;
//!   an executor may also never answer (a crash).
//! - checkpoint transfers (`transfer`): a group whose log cannot serve a peer streams
//!   its durable checkpoint in bounded chunks; a received one is installed only once
//!   verified, in order with the applies (`Effects::installs`);
//! - at most one WAL truncation is in flight (`truncation`): its watermarks are the
//!   groups' durable checkpoints, never decreasing; the records it carries forward
//!   (`ShardInput::WalTruncateDone`) are appended like any other record;
//! - the record queues do not keep the capacity of a burst (a truncation's rewrites):
//!   between steps the group output's `persist` holds at most `RECORD_QUEUE_KEEP`
//!   records of capacity, and so does `overflow` whenever it is empty.

mod backpressure;
mod input;
mod invariants;
mod raw;
mod reads;
mod transfer;
mod truncate;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use input::ShardInput;
pub use raw::CatchUpCounters;

pub use transfer::{
    CheckpointRead, CheckpointReadOutcome, InstallCheckpoint, TransferCounters, TransferPolicy,
};

use super::checkpoints::{CheckpointPolicy, Checkpoints, TakeCheckpoint};
use super::fatal::Fatal;
use super::log_reads::{LogReadDone, LogReadId, LogReads};
use super::refusals::RefusalLog;
use super::truncation::{Truncation, TruncationPolicy, WalTruncate};
use crate::paxos::Record;
use crate::paxos::{
    Apply, Completion, Group, GroupConfig, GroupId, Input, Instance, InstanceRange, Lsn, Message,
    MessageBody, Nanos, NodeId, Output, ProposalId, ProposeError, Restore, WalRead, WalReader,
};
use crate::wal::group_commit::{AppendError, GroupCommit, WritePlan};
use crate::wal::record::encoded_size;

/// Records of capacity the shard's record queues keep once drained (module docs): a
/// burst beyond it is given back instead of staying allocated.
pub const RECORD_QUEUE_KEEP: usize = 1024;

/// Identifies a read, chosen by the executor (unique among the reads it waits on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadId(pub u64);

/// Why a read was refused (nothing was read).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadRefused {
    /// The shard has no such group.
    NoSuchGroup,
    /// This node does not lead the group; `hint` is the leader it believes in.
    NotLeader {
        /// The believed leader, if any.
        hint: Option<NodeId>,
    },
    /// The node leads but does not hold a lease confirmed by a quorum (or its first
    /// entry as leader is not applied yet): retry shortly.
    LeaseNotHeld,
    /// `reads_pending_count_max` reads already wait.
    Overloaded {
        /// Reads waiting.
        pending_count: usize,
    },
}

/// The answer to one read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadDone {
    /// The read.
    pub id: ReadId,
    /// Its group.
    pub group: GroupId,
    /// `Ok(index)`: serve it now from the state machine, which has applied at least
    /// `index` (every value chosen before the read arrived); or why not.
    pub outcome: Result<Instance, ReadRefused>,
}

/// How one proposal ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposalOutcome {
    /// Its value is value `index` of the entry at `instance` of `group`, applied in
    /// this flush's `Effects::apply`: answer with what the state machine returned.
    Applied {
        /// The group.
        group: GroupId,
        /// The instance.
        instance: Instance,
        /// The value's position in the entry.
        index: usize,
    },
    /// Chosen after a newer leader started: never applied anywhere.
    Aborted,
    /// It failed (nothing chosen, or the outcome is unknown: see the error).
    Failed(ProposeError),
}

/// What a shard asks its executor to do. Drained by the executor after each `flush`.
#[derive(Debug, Default)]
pub struct Effects {
    /// One aligned write + fdatasync to submit (none while one is in flight).
    pub write: Option<WritePlan>,
    /// Messages per peer, each list to leave in one transport write, in order.
    pub send: Vec<(NodeId, Vec<Message>)>,
    /// Chosen entries to apply, per group in instance order.
    pub apply: Vec<Apply>,
    /// How proposals ended, each proposal once: executed AFTER `apply` (an
    /// `Applied` outcome answers with its value's output).
    pub replies: Vec<(ProposalId, ProposalOutcome)>,
    /// Reads answered: executed AFTER `apply` (a ready read queries a state machine
    /// that has applied its index).
    pub reads: Vec<ReadDone>,
    /// Checkpoints to take: executed AFTER `apply` (each image is the state machine's
    /// exactly after applying its `base.through`, before the next flush's applies);
    /// each is answered by one `ShardInput::CheckpointDone`.
    pub checkpoints: Vec<TakeCheckpoint>,
    /// The rejoin marker may be removed now (every group votes again and what it
    /// re-learned is durable). Set once per shard life.
    pub clear_rejoin_marker: bool,
    /// The shard's retired groups changed (a group retired: `paxos::learner`,
    /// "Retirement"): write this whole list durably beside the log, BEFORE
    /// `clear_rejoin_marker` (a later flush's); while it is not durable, the marker
    /// must stay (a restart then rejoins and retires again, which is safe).
    pub retired_groups: Option<Vec<GroupId>>,
    /// Lines for the executor to log at WARN level, already rate-limited (reports of
    /// peer messages refused as out of bounds).
    pub warnings: Vec<String>,
    /// Chosen entries to read back from the WAL (`Store::plan_read` and `CatchUpRead::run`, or the
    /// simulated disk) for peers behind a group's in-memory log; each answered with
    /// `ShardInput::WalReadDone`. Independent of the other effects.
    pub wal_reads: Vec<WalRead>,
    /// Log reads answered. Independent of the other effects.
    pub log_reads: Vec<LogReadDone>,
    /// Pieces of checkpoint files to read for peers (`transfer`); each answered with
    /// `ShardInput::CheckpointReadDone`. Independent of the other effects.
    pub checkpoint_reads: Vec<CheckpointRead>,
    /// Checkpoints received from peers and verified: each installed in order with
    /// `apply` (see `InstallCheckpoint`), then saved and answered with
    /// `ShardInput::CheckpointDone`.
    pub installs: Vec<InstallCheckpoint>,
    /// The WAL to release below per-group watermarks (at most one in flight), answered
    /// with `ShardInput::WalTruncateDone`. Independent of the other effects.
    pub wal_truncate: Option<WalTruncate>,
}

impl Effects {
    /// Empties every list.
    pub fn clear(&mut self) {
        self.write = None;
        self.send.clear();
        self.apply.clear();
        self.replies.clear();
        self.reads.clear();
        self.checkpoints.clear();
        self.clear_rejoin_marker = false;
        self.retired_groups = None;
        self.warnings.clear();
        self.wal_reads.clear();
        self.log_reads.clear();
        self.checkpoint_reads.clear();
        self.installs.clear();
        self.wal_truncate = None;
    }
}

/// The default bound on reads waiting for their index to be applied, per shard (a
/// read waits about one round trip: this is thousands of reads per round trip).
pub const READS_PENDING_COUNT_MAX: usize = 4_096;

/// The limits of one shard.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    /// This node.
    pub node: NodeId,
    /// Bytes of records pending for the WAL (the batch being built and those waiting
    /// for room) beyond which inputs that would add more (peer messages, proposals)
    /// are refused until the in-flight write completes.
    pub wal_pending_size_max: usize,
    /// Messages held for durability beyond which peer messages are refused.
    pub held_count_max: usize,
    /// Reads waiting for their index to be applied beyond which reads are refused.
    pub reads_pending_count_max: usize,
    /// When groups take local checkpoints.
    pub checkpoint: CheckpointPolicy,
    /// Log reads out at the WAL at once beyond which log reads that need the WAL are
    /// refused `Overloaded` (`log_reads::LOG_READS_WAL_COUNT_MAX` by default).
    pub log_reads_wal_count_max: usize,
    /// The limits of checkpoint transfers to and from peers.
    pub transfer: TransferPolicy,
    /// When the shard truncates its WAL below the groups' durable checkpoints.
    pub truncation: TruncationPolicy,
}

/// Counters of one shard.
#[derive(Clone, Debug, Default)]
pub struct ShardCounters {
    /// Writes planned.
    pub writes: u64,
    /// Records written.
    pub records: u64,
    /// Peer messages refused for backpressure.
    pub refused_messages: u64,
    /// Of `refused_messages`, catch-up chunks told to their groups
    /// (`Input::CatchUpRefused`).
    pub catch_up_refused: u64,
    /// Messages for groups this shard does not own.
    pub unknown_group: u64,
    /// Peer messages its groups refused as out of bounds (forged or corrupt; by
    /// reason in the groups' `ignored` counters).
    pub refused_out_of_bounds: u64,
    /// Reads answered ready.
    pub reads_served: u64,
    /// Reads refused.
    pub reads_refused: u64,
    /// WAL reads asked of the executor (catch-up below a group's in-memory log).
    pub wal_reads: u64,
    /// WAL reads not asked because one for the same group and peer was in flight.
    pub wal_reads_deduplicated: u64,
}

/// Where the shard stands with its rejoin marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    /// No marker (or it was cleared).
    Absent,
    /// Some group does not vote yet.
    Relearning,
    /// Every group votes; the marker goes once this LSN is durable.
    ClearAt(Lsn),
}

/// The pure core of one shard. See the module docs.
#[derive(Debug)]
pub struct Shard {
    config: ShardConfig,
    groups: BTreeMap<GroupId, Group>,
    /// Every group's `next_deadline`, earliest first. A group changes only in
    /// `step_group`, which keeps its entry current.
    deadlines: BTreeSet<(Nanos, GroupId)>,
    commit: GroupCommit,
    /// Records produced while the batch being built was full, in order; each gets the
    /// next LSN when it moves into the batch.
    overflow: VecDeque<Record>,
    overflow_size: usize,
    held: VecDeque<(Lsn, Message)>,
    loopback: VecDeque<Message>,
    touched: BTreeSet<GroupId>,
    outbox: BTreeMap<NodeId, Vec<Message>>,
    out: Output,
    pending_apply: Vec<Apply>,
    pending_complete: Vec<Completion>,
    /// Reads waiting for their index to be applied, in arrival order.
    reads: Vec<(ReadId, GroupId, Instance)>,
    pending_reads: Vec<ReadDone>,
    marker: Marker,
    /// The groups retired here (restored so, or told to the executor in
    /// `Effects::retired_groups`).
    retired: BTreeSet<GroupId>,
    checkpoints: Checkpoints,
    truncation: Truncation,
    refusals: RefusalLog,
    pending_warnings: Vec<String>,
    /// Catch-up by raw runs: sent, received, refused.
    catch_up: CatchUpCounters,
    /// WAL reads asked and not answered yet, by (group, reader).
    wal_reads_in_flight: BTreeSet<(GroupId, WalReader)>,
    /// WAL reads waiting for the records produced before them to be durable, with
    /// the LSN of the last of those records (ascending).
    wal_reads_held: VecDeque<(Lsn, WalRead)>,
    pending_wal_reads: Vec<WalRead>,
    log_reads: LogReads,
    pending_log_reads: Vec<LogReadDone>,
    transfers: transfer::Transfers,
    pending_checkpoint_reads: Vec<CheckpointRead>,
    pending_installs: Vec<InstallCheckpoint>,
    poisoned: Option<Fatal>,
    counters: ShardCounters,
}

impl Shard {
    /// A shard over `groups` (each with its configuration and restored state),
    /// appending to the WAL through `commit` (positioned after recovery).
    /// `rejoin_marker`: the shard's rejoin marker exists (its log lost state); the
    /// shard says in `Effects::clear_rejoin_marker` when it may go.
    #[must_use]
    pub fn new(
        config: ShardConfig,
        groups: Vec<(GroupConfig, Restore)>,
        commit: GroupCommit,
        rejoin_marker: bool,
        now: Nanos,
    ) -> Shard {
        let restored = groups.iter().map(|(config, restore)| {
            let through = restore
                .checkpoint
                .as_ref()
                .map_or(Instance(0), |b| b.through);
            (config.group, through)
        });
        let checkpoints = Checkpoints::new(config.checkpoint, restored, now);
        let transfers = transfer::Transfers::new(config.transfer);
        let truncation = Truncation::new(config.truncation);
        let mut shard = Shard {
            config,
            groups: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            commit,
            overflow: VecDeque::new(),
            overflow_size: 0,
            held: VecDeque::new(),
            loopback: VecDeque::new(),
            touched: BTreeSet::new(),
            outbox: BTreeMap::new(),
            out: Output::default(),
            pending_apply: Vec::new(),
            pending_complete: Vec::new(),
            reads: Vec::new(),
            pending_reads: Vec::new(),
            marker: if rejoin_marker {
                Marker::Relearning
            } else {
                Marker::Absent
            },
            retired: groups
                .iter()
                .filter(|(_, restore)| restore.retired)
                .map(|(config, _)| config.group)
                .collect(),
            checkpoints,
            truncation,
            refusals: RefusalLog::default(),
            pending_warnings: Vec::new(),
            catch_up: CatchUpCounters::default(),
            wal_reads_in_flight: BTreeSet::new(),
            wal_reads_held: VecDeque::new(),
            pending_wal_reads: Vec::new(),
            log_reads: LogReads::default(),
            pending_log_reads: Vec::new(),
            transfers,
            pending_checkpoint_reads: Vec::new(),
            pending_installs: Vec::new(),
            poisoned: None,
            counters: ShardCounters::default(),
        };
        for (group_config, restore) in groups {
            assert_eq!(
                group_config.node, shard.config.node,
                "group config for another node"
            );
            let id = group_config.group;
            let mut group = Group::new(group_config, restore, now);
            shard.pending_apply.extend(group.take_restored());
            shard.out.persist.extend(group.take_restored_records());
            shard.absorb();
            shard.deadlines.insert((group.next_deadline(), id));
            let previous = shard.groups.insert(id, group);
            assert!(previous.is_none(), "group {} configured twice", id.0);
        }
        shard
    }

    /// Feeds one input. Effects appear at the next `flush`.
    pub fn step(&mut self, now: Nanos, input: ShardInput) {
        if self.poisoned.is_some() {
            return;
        }
        match input {
            ShardInput::Tick => {
                let mut due: Vec<GroupId> = self
                    .deadlines
                    .range(..=(now, GroupId(u32::MAX)))
                    .map(|(_, id)| *id)
                    .collect();
                // In group order, as a scan of `groups` would: the simulator's runs
                // stay identical.
                due.sort_unstable();
                for id in due {
                    self.step_group(now, id, Input::Tick);
                }
                self.transfer_tick(now);
            }
            ShardInput::Message(message) => self.on_message(now, message),
            ShardInput::Propose { group, id, value } => {
                if self.over_limits() {
                    self.pending_complete.push(Completion {
                        id,
                        error: ProposeError::Overloaded {
                            queued_count: self.held.len(),
                            queued_size: self.commit.buffered_size(),
                        },
                    });
                    return;
                }
                self.step_group_or_fail(now, group, id, Input::Propose { id, value });
            }
            ShardInput::ChangeMembership {
                group,
                id,
                membership,
            } => {
                self.step_group_or_fail(now, group, id, Input::ChangeMembership { id, membership })
            }
            ShardInput::TransferLeadership { group, to } => {
                if self.groups.contains_key(&group) {
                    self.step_group(now, group, Input::TransferLeadership { to });
                }
            }
            ShardInput::WriteDone { lsn_through } => {
                // Panics on a completion for a write that is not in flight.
                self.commit.on_durable(lsn_through);
                self.checkpoints
                    .on_wal_durable(self.commit.durable_through());
                self.drain_overflow();
            }
            ShardInput::WriteFailed { fatal } => {
                // fsyncgate: the page cache may have dropped the failed pages; a retry
                // could report success for data that is gone. Stop.
                self.poisoned = Some(fatal);
            }
            ShardInput::Read { group, id } => self.on_read(now, group, id),
            ShardInput::CheckpointDone {
                group,
                through,
                outcome,
            } => {
                self.checkpoints.on_done(now, group, through, &outcome);
                self.checkpoints
                    .on_wal_durable(self.commit.durable_through());
            }
            ShardInput::CheckpointReadDone { read, outcome } => {
                self.on_checkpoint_read_done(&read, outcome);
            }
            ShardInput::WalReadDone { read, outcome } => {
                self.wal_reads_in_flight.remove(&(read.group, read.reader));
                match read.reader {
                    WalReader::Peer(peer) if self.groups.contains_key(&read.group) => {
                        let input = Input::WalReadDone {
                            peer,
                            from: read.from,
                            outcome,
                        };
                        self.step_group(now, read.group, input);
                    }
                    WalReader::Peer(_) => {}
                    WalReader::Log(id) => {
                        let group = self.groups.get(&read.group);
                        let decision =
                            self.log_reads
                                .on_wal_read_done(LogReadId(id), outcome, group);
                        if let Some(decision) = decision {
                            self.on_log_read_decision(decision);
                        }
                    }
                }
            }
            ShardInput::LogRead(ask) => self.on_log_read(ask),
            ShardInput::WalTruncateDone { rewrites } => self.on_wal_truncate_done(rewrites),
        }
    }

    /// A peer's message: refused under backpressure or for an unknown group; the
    /// shard's own kinds (checkpoint transfer, raw catch-up runs) handled here; the
    /// rest stepped into its group.
    fn on_message(&mut self, now: Nanos, message: Message) {
        if self.refuses(&message) {
            self.refuse(now, &message);
            return;
        }
        let id = message.group;
        if !self.groups.contains_key(&id) {
            self.counters.unknown_group += 1;
            return;
        }
        match message.body {
            MessageBody::CheckpointRequest { through, offset }
                if message.to == self.config.node && message.body.check_bounds().is_ok() =>
            {
                self.on_checkpoint_request(id, message.from, through, offset);
            }
            MessageBody::CheckpointChunk {
                through,
                offset,
                total_size,
                ref data,
            } if message.to == self.config.node && message.body.check_bounds().is_ok() => {
                let at = (through, offset, total_size);
                self.on_checkpoint_chunk(now, id, message.from, at, data);
            }
            MessageBody::CatchUpRaw { .. }
                if message.to == self.config.node && message.body.check_bounds().is_ok() =>
            {
                self.on_catch_up_raw(now, message);
            }
            // Out of bounds or misaddressed ones included: the group refuses
            // and reports them like any other.
            _ => self.step_group(now, id, Input::Message(message)),
        }
    }

    /// The rejoin marker's decision: every group votes again or is retired (each
    /// retirement written first, `Effects::retired_groups`), then everything produced
    /// up to that moment is durable (what it re-learned included).
    fn decide_marker(&mut self, effects: &mut Effects) {
        if self.marker == Marker::Absent {
            return;
        }
        let before = self.retired.len();
        for (id, group) in &self.groups {
            if group.is_retired() && self.retired.insert(*id) {
                self.pending_warnings.push(format!(
                    "group {}: this node lost its state after the group's membership \
                     changed: retired, it never votes again under node id {}; remove it \
                     from the membership and start it under a new node id",
                    id.0, self.config.node.0
                ));
            }
        }
        if self.retired.len() > before {
            effects.retired_groups = Some(self.retired.iter().copied().collect());
        }
        if !self
            .groups
            .values()
            .all(|g| g.is_voting() || g.is_retired())
        {
            self.marker = Marker::Relearning;
            return;
        }
        match self.marker {
            Marker::Relearning => self.marker = Marker::ClearAt(self.lsn_planned()),
            Marker::ClearAt(lsn) if self.commit.durable_through() >= lsn => {
                self.marker = Marker::Absent;
                effects.clear_rejoin_marker = true;
            }
            Marker::ClearAt(_) | Marker::Absent => {}
        }
    }

    /// Turns applied entries and failed proposals into one answer per proposal.
    fn replies(&mut self, effects: &mut Effects) {
        for apply in &self.pending_apply {
            for (index, id) in apply.proposals.iter().enumerate() {
                let outcome = if apply.skip {
                    ProposalOutcome::Aborted
                } else {
                    ProposalOutcome::Applied {
                        group: apply.group,
                        instance: apply.instance,
                        index,
                    }
                };
                effects.replies.push((*id, outcome));
            }
        }
        for completion in self.pending_complete.drain(..) {
            effects
                .replies
                .push((completion.id, ProposalOutcome::Failed(completion.error)));
        }
    }

    fn step_group_or_fail(&mut self, now: Nanos, group: GroupId, id: ProposalId, input: Input) {
        if self.groups.contains_key(&group) {
            self.step_group(now, group, input);
        } else {
            self.pending_complete.push(Completion {
                id,
                error: ProposeError::Rejected {
                    reason: "no such group on this shard",
                },
            });
        }
    }

    fn step_group(&mut self, now: Nanos, id: GroupId, input: Input) {
        let group = self
            .groups
            .get_mut(&id)
            .expect("caller checked the group exists");
        let before = group.next_deadline();
        group.step(now, input, &mut self.out);
        for refused in self.out.refused.drain(..) {
            self.counters.refused_out_of_bounds += 1;
            self.refusals.note(now, refused, &mut self.pending_warnings);
        }
        let after = group.next_deadline();
        if after != before {
            let removed = self.deadlines.remove(&(before, id));
            assert!(removed, "group {} deadline {} not indexed", id.0, before.0);
            self.deadlines.insert((after, id));
        }
        self.touched.insert(id);
        self.absorb();
    }

    /// Moves one group step's output into the shard's queues, assigning LSNs.
    fn absorb(&mut self) {
        // `drain` keeps the output's capacity for the next step.
        for record in self.out.persist.drain(..) {
            self.counters.records += 1;
            self.overflow_size += encoded_size(&record);
            self.overflow.push_back(record);
        }
        if self.out.persist.capacity() > RECORD_QUEUE_KEEP {
            self.out.persist.shrink_to(RECORD_QUEUE_KEEP);
        }
        self.drain_overflow();
        // LSNs are assigned densely in production order, so the last record produced
        // so far will get exactly this LSN, whether or not it is in the batch yet.
        let lsn = Lsn(self.commit.assigned_through().0 + self.overflow.len() as u64);
        for message in self.out.send_after_persist.drain(..) {
            self.held.push_back((lsn, message));
        }
        for message in &self.out.send {
            raw::count_sent(&mut self.catch_up, message);
        }
        for message in self.out.send.drain(..) {
            if message.to == self.config.node {
                self.loopback.push_back(message);
            } else {
                self.outbox.entry(message.to).or_default().push(message);
            }
        }
        self.pending_apply.append(&mut self.out.apply);
        self.pending_complete.append(&mut self.out.complete);
        for send in std::mem::take(&mut self.out.checkpoint_sends) {
            self.on_checkpoint_send(send);
        }
        for read in std::mem::take(&mut self.out.wal_reads) {
            let peer = match read.reader {
                WalReader::Peer(peer) => Some(peer),
                WalReader::Log(_) => None,
            };
            if let Some(peer) = peer.filter(|_| self.prefers_transfer(read.group, read.from)) {
                let (group, from) = (read.group, read.from);
                self.on_checkpoint_send(crate::paxos::CheckpointSend { group, peer, from });
            } else if self.wal_reads_in_flight.insert((read.group, read.reader)) {
                self.counters.wal_reads += 1;
                self.wal_reads_held.push_back((lsn, read));
            } else {
                self.counters.wal_reads_deduplicated += 1;
            }
        }
    }

    /// Moves records from the overflow queue into the batch being built, in order,
    /// until the batch is full.
    fn drain_overflow(&mut self) {
        while let Some(record) = self.overflow.front() {
            match self.commit.append(record) {
                Ok(_) => {
                    let record = self.overflow.pop_front().expect("front exists");
                    self.overflow_size -= encoded_size(&record);
                }
                Err(AppendError::Backpressure { .. }) => break,
                Err(error) => {
                    // A record no batch can hold: the configuration let a value through
                    // that the WAL cannot store. Nothing after it may be acknowledged.
                    self.poisoned = Some(Fatal::Append { error });
                    break;
                }
            }
        }
        if self.overflow.is_empty() && self.overflow.capacity() > RECORD_QUEUE_KEEP {
            self.overflow.shrink_to(RECORD_QUEUE_KEEP);
        }
    }

    /// Ends a loop iteration: coalesces proposals of touched groups, delivers
    /// loopback messages, releases durable held messages, plans the next write, and
    /// hands everything to `effects`.
    pub fn flush(&mut self, now: Nanos, effects: &mut Effects) {
        if self.poisoned.is_some() {
            return;
        }
        self.install_verified(now, effects.apply.len());
        loop {
            let touched = std::mem::take(&mut self.touched);
            for id in touched {
                self.step_group(now, id, Input::Flush);
            }
            self.touched.clear();
            self.release_durable();
            if self.loopback.is_empty() {
                break;
            }
            while let Some(message) = self.loopback.pop_front() {
                let id = message.group;
                self.step_group(now, id, Input::Message(message));
            }
        }
        if self.poisoned.is_some() {
            return;
        }
        if self.commit.writes_in_flight() < self.commit.writes_in_flight_max() {
            self.drain_overflow();
            if let Some(plan) = self.commit.take_write() {
                self.counters.writes += 1;
                effects.write = Some(plan);
            }
            self.drain_overflow();
        }
        for (peer, messages) in std::mem::take(&mut self.outbox) {
            effects.send.push((peer, coalesce(messages)));
        }
        self.replies(effects);
        for apply in &self.pending_apply {
            self.checkpoints.on_applied(apply);
        }
        effects.apply.append(&mut self.pending_apply);
        self.take_checkpoints(now, effects);
        self.decide_truncation(now, effects);
        self.serve_reads(now);
        effects.reads.append(&mut self.pending_reads);
        self.decide_marker(effects);
        self.refusals.flush(now, &mut self.pending_warnings);
        effects.warnings.append(&mut self.pending_warnings);
        self.serve_log_reads(now);
        // Log reads sent to the WAL just now leave with the next flush's, once the
        // records before them are durable.
        self.release_durable_wal_reads();
        effects.wal_reads.append(&mut self.pending_wal_reads);
        effects.log_reads.append(&mut self.pending_log_reads);
        effects
            .checkpoint_reads
            .append(&mut self.pending_checkpoint_reads);
        effects.installs.append(&mut self.pending_installs);
    }

    /// Asks for the checkpoints whose turn came, each at its group's applied
    /// watermark (the applies of this flush included).
    fn take_checkpoints(&mut self, now: Nanos, effects: &mut Effects) {
        let lsn = self.lsn_planned();
        let groups = &self.groups;
        let due = self.checkpoints.take_due(now, lsn, |id| {
            groups.get(&id).map_or(Instance(0), Group::applied_through)
        });
        for group in due {
            let base = self.groups[&group].checkpoint_base();
            let keep = self.checkpoints.durable_through(group);
            effects
                .checkpoints
                .push(TakeCheckpoint { group, base, keep });
        }
    }

    fn release_durable_wal_reads(&mut self) {
        let durable = self.commit.durable_through();
        while self
            .wal_reads_held
            .front()
            .is_some_and(|(lsn, _)| *lsn <= durable)
        {
            let (_, read) = self.wal_reads_held.pop_front().expect("front exists");
            self.pending_wal_reads.push(read);
        }
    }

    fn release_durable(&mut self) {
        self.release_durable_wal_reads();
        let durable = self.commit.durable_through();
        while self.held.front().is_some_and(|(lsn, _)| *lsn <= durable) {
            let (_, message) = self.held.pop_front().expect("front exists");
            if message.to == self.config.node {
                self.loopback.push_back(message);
            } else {
                self.outbox.entry(message.to).or_default().push(message);
            }
        }
    }

    /// The earliest time a `Tick` has something to do.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Nanos> {
        let groups = self.deadlines.first().map(|(deadline, _)| *deadline);
        match (groups, self.transfers.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The counters of checkpoint transfers.
    #[must_use]
    pub fn transfer_counters(&self) -> &TransferCounters {
        self.transfers.counters()
    }

    /// The group `id`, for observation.
    #[must_use]
    pub fn group(&self, id: GroupId) -> Option<&Group> {
        self.groups.get(&id)
    }

    /// Every group of the shard.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// Why the shard stopped, if it did.
    #[must_use]
    pub fn poisoned(&self) -> Option<&Fatal> {
        self.poisoned.as_ref()
    }

    /// Reads waiting for their index to be applied.
    #[must_use]
    pub fn reads_pending_count(&self) -> usize {
        self.reads.len()
    }

    /// The shard's counters.
    #[must_use]
    pub fn counters(&self) -> &ShardCounters {
        &self.counters
    }

    /// The write-ahead log planner.
    #[must_use]
    pub fn commit(&self) -> &GroupCommit {
        &self.commit
    }

    /// The LSN the last record produced so far has or will get (records waiting for
    /// room in the batch included): once durable, everything produced so far is.
    #[must_use]
    pub fn lsn_planned(&self) -> Lsn {
        Lsn(self.commit.assigned_through().0 + self.overflow.len() as u64)
    }

    /// Returns a written batch's buffer for reuse by the next batch.
    pub fn recycle(&mut self, bytes: Vec<u8>) {
        self.commit.recycle(bytes);
    }

    /// The checkpoints' decisions (each group's durable checkpoint, counters).
    #[must_use]
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    /// Messages held until durable.
    #[must_use]
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// WAL reads asked and not answered yet (held until durable, or executing).
    #[must_use]
    pub fn wal_reads_in_flight_count(&self) -> usize {
        self.wal_reads_in_flight.len()
    }

    /// Takes the log reads answered since the last flush, without flushing: for an
    /// executor that steps a shard out of turn for a log read and must not run a
    /// flush there (the simulator, whose runs must not move with its log reads). A
    /// flush hands them over in `Effects::log_reads` otherwise.
    pub fn take_log_reads(&mut self, out: &mut Vec<LogReadDone>) {
        out.append(&mut self.pending_log_reads);
    }

    /// The log reads' state (out at the WAL, waiting) and counters.
    #[must_use]
    pub fn log_reads(&self) -> &LogReads {
        &self.log_reads
    }
}

/// Merges a peer's messages: `Accepted` acks of one (group, ballot) become one message
/// with coalesced ranges; everything else keeps its order.
fn coalesce(messages: Vec<Message>) -> Vec<Message> {
    let mut result: Vec<Message> = Vec::with_capacity(messages.len());
    let mut acks: BTreeMap<(GroupId, crate::paxos::Ballot), usize> = BTreeMap::new();
    for message in messages {
        if let MessageBody::Accepted { ballot, ranges } = &message.body {
            if let Some(&index) = acks.get(&(message.group, *ballot)) {
                if let MessageBody::Accepted { ranges: merged, .. } = &mut result[index].body {
                    for range in ranges {
                        add_range(merged, *range);
                    }
                    continue;
                }
            }
            acks.insert((message.group, *ballot), result.len());
        }
        result.push(message);
    }
    result
}

/// Adds `range` to ascending disjoint `ranges`, merging overlaps and neighbours.
fn add_range(ranges: &mut Vec<InstanceRange>, range: InstanceRange) {
    ranges.push(range);
    ranges.sort_by_key(|r| r.first);
    let mut merged: Vec<InstanceRange> = Vec::with_capacity(ranges.len());
    for r in ranges.drain(..) {
        match merged.last_mut() {
            Some(last) if r.first.0 <= last.last.0 + 1 => last.last = last.last.max(r.last),
            _ => merged.push(r),
        }
    }
    *ranges = merged;
}

#[cfg(test)]
mod tests {
    use super::add_range;
    use crate::paxos::{Instance, InstanceRange};

    fn r(a: u64, b: u64) -> InstanceRange {
        InstanceRange {
            first: Instance(a),
            last: Instance(b),
        }
    }

    // Goal: range-coded acks merge overlapping and adjacent ranges and keep gaps.
    // Method: add ranges out of order, with duplicates, and compare with the expected set.
    #[test]
    fn ranges_merge() {
        let mut ranges = vec![r(5, 7)];
        add_range(&mut ranges, r(1, 2));
        add_range(&mut ranges, r(3, 3));
        add_range(&mut ranges, r(6, 9));
        add_range(&mut ranges, r(12, 12));
        add_range(&mut ranges, r(12, 12));
        assert_eq!(ranges, vec![r(1, 3), r(5, 9), r(12, 12)]);
    }
}
