//! The deterministic cluster simulation: nodes × shards × groups, each shard the real
//! `runtime::Shard` over the real WAL code (`wal::GroupCommit`, `wal::scan`,
//! `wal::replay`) on a `SimDisk`, peers joined by a `SimNetwork`, every node on its own
//! drifting `SimClock`, all driven by one seed.
//!
//! A run has two phases. The safety phase turns the seed's faults on (loss,
//! duplication, reordering, partitions, crashes with torn writes, bit flips, lost
//! disks, clock drift) and checks every property after every step. The liveness phase
//! heals everything, restarts every node, keeps proposing for a while, then requires
//! the cluster to converge within a bound.
//!
//! The fault atlas keeps faults recoverable: at most one node at a time may have lost
//! state (a wiped disk or a corrupted log), because a replica re-learning lost state
//! relies on the others' logs; bit flips land only in blocks before a shard's last
//! completed write (damage to the last durable batch is indistinguishable from a torn
//! write: see `wal::recovery`).
//!
//! Forgery (when the seed turns it on): for some messages sent, the network also
//! delivers a forged one, of a random kind, claiming a random node as sender, with a
//! ballot or an instance out of bounds. Each forged message delivered to a running
//! shard is checked to change nothing there (`checkers::bounds`), in both phases: the
//! cluster must converge while the forgery goes on.
//!
//! Reads (unless the options turn them off): clients issue linearizable reads, mostly
//! to the believed leader, at times and to nodes drawn from the reads' own PRNG stream;
//! they are not steps (the fault run's report does not move). Each read answered ready
//! is served as the node's state machine state (applied instance and running
//! checksum) and checked against the chosen prefix (`checkers::read`); the lease
//! checker sees the serving node's lease at the read's step, as at every step.
//!
//! WAL reads: a group's catch-up below its in-memory log (`Effects::wal_reads`) is
//! read from the node's simulated disk as it is now (the live image: reads see writes,
//! synced or not; after a restart, what recovery kept), through an index of the
//! shard's log kept as the node's store keeps its own (built from the recovery scan,
//! then every write), planned and decoded by the real `wal::catch_up`. The answer
//! comes back as `ShardInput::WalReadDone` after a disk latency drawn from the reads'
//! own PRNG stream (seeds whose retention is unbounded never read, and replay as they
//! did), and is dropped if the node crashes meanwhile.
//!
//! Files, one concern each: this one holds the cluster, its event loop and the
//! stepping of one shard; `report` what a run returns; `execute` carries out a shard's
//! effects and feeds the checkers; `faults` injects crashes, partitions and bit flips
//! and restarts nodes from their disks; `workload` is the clients (proposals and
//! reads); `forge` makes and delivers forged messages; `checkpoint` saves the shards'
//! checkpoints on each node's `SimFs` step by step and restores groups from them at
//! start.
//!
//! Checkpoints (when the seed turns them on): every replica's state machine is a
//! `SimMachine`; its images go through the real format and choice of
//! `wal::checkpoint`, some saves fail and some files are damaged before a restart, and
//! `checkers::checkpoint` compares every restored state with the chosen log's.
//!
//! Checkpoint transfer (`transfer`): chunks are read from the sending node's `SimFs`
//! after a disk latency; a verified checkpoint is installed into the group's
//! `SimMachine` in order with the applies and saved like a local one; when the seed
//! says so (`SimOptions::transfer_truncated_reads`), WAL reads below the reading
//! group's durable checkpoint answer `Truncated`, so transfers happen.
//! `truncate` carries out WAL truncation below the durable checkpoints on the index
//! and the image (see its module doc for what it does not model).

mod checkpoint;
mod execute;
mod faults;
mod forge;
mod log_reads;
mod members;
mod raw_flip;
mod report;
mod transfer;
mod truncate;
mod workload;
mod writes;

use std::collections::{BTreeMap, BTreeSet};

use super::checkers::{Checkers, Violation};
use super::clock::SimClock;
use super::disk::SimDisk;
use super::fs::SimFs;
use super::machine::SimMachine;
use super::network::{NetworkOptions, SimNetwork};
use super::options::SimOptions;
use crate::paxos::{
    GroupConfig, GroupId, Instance, Lsn, Membership, Message, Nanos, NodeId, ProposalId, WalRead,
    WalReadOutcome,
};
use crate::prng::Prng;
use crate::runtime::shard::ReadId;
use crate::runtime::{shard_of, Effects, Shard, ShardConfig, ShardInput};
use crate::wal::index::LogIndex;
use crate::wal::{self, GroupCommitConfig};
use writes::SimWrites;

const MS: u64 = 1_000_000;
/// Messages a shard holds for durability beyond which it refuses peer messages, in
/// backpressure seeds (`SimOptions::backpressure`): a stalled write holds more than
/// this many acknowledgements, so the refusals happen.
const BACKPRESSURE_HELD_COUNT_MAX: usize = 64;
const S: u64 = 1_000_000_000;

/// Size of each simulated shard disk.
/// (Images grow with what is written: a seed pays only for the log it writes.)
pub const DISK_SIZE: usize = 2 << 30;
/// Every group's base election timeout (`GroupConfig::election_timeout_ns`): the unit
/// in which recovery from partial connectivity is reported (`checkers::partial`).
pub const ELECTION_TIMEOUT_NS: u64 = 500 * MS;
/// How long the liveness phase keeps proposing before it waits for convergence.
const LIVENESS_LOAD_NS: u64 = 2 * S;
/// How long after healing the cluster must have converged.
const LIVENESS_BOUND_NS: u64 = 60 * S;
/// Steps after which a run is declared stuck (a driver or protocol livelock).
const STEPS_MAX: u64 = 20_000_000;

pub use report::{
    run_options, run_seed, Failure, LogReadReport, MembershipReport, ReadReport, RunReport,
};

#[derive(Clone, Debug)]
enum Event {
    WriteDone {
        node: usize,
        shard: usize,
        incarnation: u32,
        lsn: Lsn,
        offset: u64,
        size: usize,
    },
    WalReadDone {
        node: usize,
        shard: usize,
        incarnation: u32,
        read: WalRead,
        outcome: WalReadOutcome,
    },
    /// The answer of a WAL truncation.
    WalTruncateDone {
        node: usize,
        shard: usize,
        incarnation: u32,
        rewrites: Vec<crate::paxos::Record>,
    },
    Crash,
    /// A crash of `node` while the write it just issued is in flight (`faults`).
    CrashInFlight {
        node: usize,
        incarnation: u32,
    },
    Restart {
        node: usize,
    },
    PartitionStart,
    PartitionEnd,
    /// The flapping link `a`–`b` turns (cut or mended), every `period_ns` while its
    /// partial partition lasts (`generation` is `Cluster::flap_generation` then).
    LinkFlap {
        a: NodeId,
        b: NodeId,
        period_ns: u64,
        generation: u64,
    },
    BitFlip,
    Client,
    /// A client asks for a membership change (`members`).
    Membership,
    Heal,
    /// A piece of a checkpoint file was read for a peer.
    CheckpointReadDone {
        node: usize,
        shard: usize,
        incarnation: u32,
        read: crate::runtime::CheckpointRead,
        outcome: crate::runtime::CheckpointReadOutcome,
    },
    /// The next step of a checkpoint save.
    Checkpoint {
        node: usize,
        shard: usize,
        incarnation: u32,
        group: GroupId,
        through: Instance,
        stage: checkpoint::Stage,
    },
}

struct ShardSlot {
    shard: Option<Shard>,
    disk: SimDisk,
    /// Where each group's records lie on `disk` (the store's index): rebuilt from the
    /// recovery scan at each start, then every write as it is issued.
    index: LogIndex,
    /// The writes in flight, in issue order, and where bit flips may land: only below
    /// the batch a durable record's `unsynced_from` names, so a later durable record
    /// always proves the damage (`SimWrites`). Damage above it, once the writes in
    /// flight are lost in a crash, is indistinguishable from a torn write (see
    /// `wal::recovery`).
    writes: SimWrites,
    salt: u32,
    /// The shard's log lost state (wiped, or corrupt before its tail). Survives crashes
    /// like a marker file beside the log, so a restart after the scrub still knows;
    /// cleared once every group votes again and what it re-learned is durable.
    lost_marker: bool,
    /// The groups retired in this shard (the retired-groups file beside the log,
    /// `runtime::driver::retired`): durable, gone only with the disk.
    retired: BTreeSet<GroupId>,
    /// The first notional segment the log still needs (`truncate`); volatile, as the
    /// store's is rebuilt from the segment headers.
    log_start: u64,
    /// Per group, the highest watermark this log was truncated to: a restart's
    /// recovery sees none of its Accepts and Learns at or below it (the worst a
    /// store that freed segments can leave), as if on a truncated log. Durable (gone
    /// only with the disk).
    released: BTreeMap<GroupId, Instance>,
}

impl ShardSlot {
    /// A shard that never ran, on a new disk, whose log has salt `salt`.
    fn new(salt: u32) -> ShardSlot {
        ShardSlot {
            shard: None,
            disk: SimDisk::new(DISK_SIZE),
            index: LogIndex::new(),
            writes: SimWrites::default(),
            salt,
            lost_marker: false,
            retired: BTreeSet::new(),
            log_start: 0,
            released: BTreeMap::new(),
        }
    }
}

struct Node {
    id: NodeId,
    clock: SimClock,
    up: bool,
    incarnation: u32,
    shards: Vec<ShardSlot>,
    /// Wipe the disks at the next restart.
    wipe_on_restart: bool,
    /// The node's checkpoint directory (shared by its shards, as on a real node).
    fs: SimFs,
    /// The state machine of each group (volatile: rebuilt at every start).
    machines: BTreeMap<GroupId, SimMachine>,
}

/// A whole simulated cluster. See the module docs.
pub struct Cluster {
    options: SimOptions,
    prng: Prng,
    /// The forger's own stream, so that turning forgery on leaves the draws of the
    /// main stream where they were.
    forge_prng: Prng,
    /// The stream that flips bytes of catch-up runs in flight, for the same reason.
    raw_flip_prng: Prng,
    /// Flipped catch-up runs in flight (`raw_flip`).
    raw_flipped: raw_flip::Flipped,
    /// The reads' own stream (which node, which group, when), for the same reason.
    read_prng: Prng,
    /// The checkpoints' own stream (latencies, failures, damage, crashes of the
    /// checkpoint directory), for the same reason.
    checkpoint_prng: Prng,
    /// The WAL reads' own stream (their disk latency), for the same reason.
    wal_read_prng: Prng,
    /// The crashes' own stream: which unsynced sectors a crash keeps, and whether it
    /// waits for a write in flight (`faults`), for the same reason.
    crash_prng: Prng,
    /// The partial partitions' own stream (`faults`: which link, which shape, how
    /// long, the flapping period), for the same reason.
    partial_prng: Prng,
    /// Bumped when a partition ends or the faults heal: a `LinkFlap` of an earlier
    /// generation is stale.
    flap_generation: u64,
    /// A crash is due as soon as a node issues a write (`faults`).
    crash_at_next_write: bool,
    /// When the next read is issued (`None`: reads are off).
    read_next_ns: Option<u64>,
    read_id_next: u64,
    /// Reads waiting for an answer: the node they were sent to.
    reads_in_flight: BTreeMap<ReadId, usize>,
    /// The log readers (`log_reads`): their stream, reads in flight, WAL answers.
    log_readers: log_reads::LogReaders,
    /// The membership changes of the workload (`members`): their stream, changes in
    /// flight.
    members: members::Members,
    now: u64,
    steps: u64,
    nodes: Vec<Node>,
    network: SimNetwork<Message>,
    checkers: Checkers,
    events: BTreeMap<(u64, u64), Event>,
    event_seq: u64,
    groups: Vec<GroupId>,
    group_configs: Vec<GroupConfig>,
    commit_config: GroupCommitConfig,
    shard_config_template: ShardConfig,
    /// The node whose state is damaged (lost disk, flipped bits) until it votes again.
    damaged: Option<usize>,
    proposal_next: u64,
    proposals_in_flight: BTreeMap<ProposalId, (usize, GroupId)>,
    liveness: bool,
    proposing: bool,
    /// Proposals submitted, and acknowledged, after the heal.
    proposed_after_heal: u64,
    acknowledged_after_heal: u64,
    effects: Effects,
    report: RunReport,
}

impl Cluster {
    /// A cluster configured by `options`, not yet started.
    #[must_use]
    pub fn new(options: SimOptions) -> Cluster {
        let mut prng = Prng::new(options.seed);
        // Nodes `1..=voter_count` vote from the start; the others are spare nodes that
        // run every group as non-voters until a membership change adds them.
        let voters: Vec<NodeId> = (1..=options.voter_count as u32).map(NodeId).collect();
        let node_ids: Vec<NodeId> = (1..=options.node_count as u32).map(NodeId).collect();
        let groups: Vec<GroupId> = (1..=options.group_count as u32).map(GroupId).collect();
        let value_size_max = options.value_size_max.max(options.large_value_size_max);
        let batch_size_max = options.batch_size_max.max(value_size_max);
        let mut group_configs = Vec::new();
        for &node in &node_ids {
            for &group in &groups {
                let config = group_config(&options, node, group, &voters, prng.next_u64());
                group_configs.push(config);
            }
        }
        let buffer = wal::block_align_up((batch_size_max * 2 + (256 << 10)) as u64) as usize;
        let commit_config = GroupCommitConfig {
            buffer_size_max: buffer,
            salt: 0,
            writes_in_flight_max: options.writes_in_flight_max,
        };
        let shard_config_template = shard_config_template(&options, buffer);
        let mut nodes = Vec::new();
        for (index, &id) in node_ids.iter().enumerate() {
            let drift = options.clock_drift_ppm[index];
            let clock = SimClock::new(drift, options.clock_drift_bound_ppm, 0, &mut prng);
            let shards = (0..options.shards_per_node)
                .map(|_| ShardSlot::new(prng.next_u64() as u32))
                .collect();
            nodes.push(Node {
                id,
                clock,
                up: false,
                incarnation: 0,
                shards,
                wipe_on_restart: false,
                fs: SimFs::new(),
                machines: BTreeMap::new(),
            });
        }
        let network = SimNetwork::new(NetworkOptions::from_options(&options));
        Cluster {
            prng,
            forge_prng: Prng::new(options.seed ^ 0x464f_5247_4552_5321),
            raw_flip_prng: Prng::new(options.seed ^ 0x464c_4950_5354_524d),
            raw_flipped: raw_flip::Flipped::new(),
            read_prng: Prng::new(options.seed ^ 0x5245_4144_5354_524d),
            checkpoint_prng: Prng::new(options.seed ^ 0x434b_5054_5354_524d),
            wal_read_prng: Prng::new(options.seed ^ 0x5741_4c52_4541_4453),
            crash_prng: Prng::new(options.seed ^ 0x4352_4153_4853_544d),
            partial_prng: Prng::new(options.seed ^ 0x5041_5254_5354_524d),
            flap_generation: 0,
            crash_at_next_write: false,
            read_next_ns: options.read_interval_ns_mean,
            read_id_next: 1,
            reads_in_flight: BTreeMap::new(),
            log_readers: log_reads::LogReaders::new(&options),
            members: members::Members::new(&options),
            now: 0,
            steps: 0,
            nodes,
            network,
            checkers: {
                let mut checkers = Checkers::with_message_size_max(
                    group_configs.iter().map(|c| c.message_size_max).max(),
                );
                checkers
                    .membership
                    .configure(options.window_instances_max, Membership::new(voters));
                checkers
            },
            events: BTreeMap::new(),
            event_seq: 0,
            groups,
            group_configs,
            commit_config,
            shard_config_template,
            damaged: None,
            proposal_next: 1,
            proposals_in_flight: BTreeMap::new(),
            liveness: false,
            proposing: true,
            proposed_after_heal: 0,
            acknowledged_after_heal: 0,
            effects: Effects::default(),
            report: RunReport {
                seed: options.seed,
                ..RunReport::default()
            },
            options,
        }
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.event_seq += 1;
        self.events.insert((at, self.event_seq), event);
    }

    /// Runs both phases; Err on the first violated property.
    pub fn run(&mut self) -> Result<(), Violation> {
        for node in 0..self.nodes.len() {
            self.start_node(node)?;
        }
        self.schedule(0, Event::Client);
        if self.options.crash_interval_ns_mean.is_some() {
            let at = self.exponential(self.options.crash_interval_ns_mean.unwrap_or(S));
            self.schedule(at, Event::Crash);
        }
        if let Some(mean) = self.options.partition_interval_ns_mean {
            let at = self.exponential(mean);
            self.schedule(at, Event::PartitionStart);
        }
        if self.options.disk_bit_flip_ppm > 0 {
            let at = self.bit_flip_interval();
            self.schedule(at, Event::BitFlip);
        }
        if let Some(mean) = self.options.membership_change_interval_ns_mean {
            let at = self.members.interval(mean);
            self.schedule(at, Event::Membership);
        }
        self.schedule(self.options.safety_phase_ns, Event::Heal);
        let deadline = self.options.safety_phase_ns + LIVENESS_BOUND_NS;
        loop {
            self.steps += 1;
            if self.steps > STEPS_MAX {
                return Err(Violation::new(
                    "liveness",
                    format!("no end after {STEPS_MAX} steps at t = {} ns", self.now),
                ));
            }
            if self.liveness && !self.proposing && self.converged() {
                return self.final_checks();
            }
            let next_event = self.events.first_key_value().map(|((at, _), _)| *at);
            let next_message = self.network.next_delivery().map(|n| n.0);
            let next_timer = self.next_timer();
            let next = [next_event, next_message, next_timer]
                .into_iter()
                .flatten()
                .min()
                .expect("client events never stop before the end");
            if next > deadline {
                self.check_converged(next)?;
                return self.final_checks();
            }
            // A read due first is issued outside the step count, and the clock of the
            // steps does not move for it (`next_timer` counts from `now`): with reads
            // on, the fault run stays the one it was without them.
            if let Some(at) = self.read_next_ns.filter(|at| *at <= next) {
                self.steps -= 1;
                let now = self.now;
                self.now = at.max(now);
                let read = self.read();
                self.now = now;
                read?;
                continue;
            }
            // Log reads likewise (see `log_reads`).
            if let Some(at) = self.log_read_due().filter(|at| *at <= next) {
                self.steps -= 1;
                let now = self.now;
                self.now = at.max(now);
                let read = self.log_read_event();
                self.now = now;
                read?;
                continue;
            }
            assert!(next >= self.now, "time went back: {next} < {}", self.now);
            self.now = next;
            if next_event == Some(next) {
                let (_, event) = self.events.pop_first().expect("peeked above");
                self.on_event(event)?;
            } else if next_message == Some(next) {
                let Some((from, to, message)) = self.network.pop_due(Nanos(next)) else {
                    continue;
                };
                debug_assert_eq!(message.from, from);
                let node = (to.0 - 1) as usize;
                if self.nodes[node].up {
                    let shard = usize::from(shard_of(message.group, self.shard_count()));
                    // Honest messages are in bounds (checked as they leave): a message
                    // out of bounds is forged.
                    if message.body.check_bounds().is_err() {
                        self.deliver_forged(node, shard, message)?;
                    } else {
                        self.deliver_maybe_flipped(node, shard, message)?;
                    }
                }
            } else {
                self.tick_due()?;
            }
        }
    }

    fn shard_count(&self) -> u16 {
        self.options.shards_per_node as u16
    }

    /// The earliest true time any up shard's timers fire.
    fn next_timer(&self) -> Option<u64> {
        let mut next: Option<u64> = None;
        for node in self.nodes.iter().filter(|n| n.up) {
            for slot in &node.shards {
                if let Some(deadline) = slot.shard.as_ref().and_then(Shard::next_deadline) {
                    // At least 1 µs ahead so a timer that does not move cannot spin.
                    let at = node.clock.true_of(deadline).max(self.now + 1_000);
                    next = Some(next.map_or(at, |n: u64| n.min(at)));
                }
            }
        }
        next
    }

    fn tick_due(&mut self) -> Result<(), Violation> {
        for node in 0..self.nodes.len() {
            if !self.nodes[node].up {
                continue;
            }
            let local = self.nodes[node].clock.local(self.now);
            for shard in 0..self.nodes[node].shards.len() {
                let due = self.nodes[node].shards[shard]
                    .shard
                    .as_ref()
                    .and_then(Shard::next_deadline)
                    .is_some_and(|d| d <= local);
                if due {
                    self.step_shard(node, shard, ShardInput::Tick)?;
                }
            }
        }
        Ok(())
    }

    /// Steps one shard with `input`, flushes it, executes its effects and checks.
    fn step_shard(
        &mut self,
        node: usize,
        shard: usize,
        input: ShardInput,
    ) -> Result<(), Violation> {
        let local = self.nodes[node].clock.local(self.now);
        if let Some(core) = self.nodes[node].shards[shard].shard.as_mut() {
            core.step(local, input);
        }
        self.flush_shard(node, shard)
    }

    /// Flushes one shard, executes its effects and checks.
    fn flush_shard(&mut self, node: usize, shard: usize) -> Result<(), Violation> {
        let local = self.nodes[node].clock.local(self.now);
        let mut effects = std::mem::take(&mut self.effects);
        effects.clear();
        {
            let slot = &mut self.nodes[node].shards[shard];
            let Some(core) = slot.shard.as_mut() else {
                self.effects = effects;
                return Ok(());
            };
            core.flush(local, &mut effects);
            core.invariants();
            if let Some(fatal) = core.poisoned() {
                return Err(Violation::new(
                    "shard",
                    format!("node {} shard {shard} stopped: {fatal}", node + 1),
                ));
            }
        }
        let result = self.execute(node, shard, &mut effects);
        self.effects = effects;
        result?;
        self.observe(node, shard)
    }

    fn on_event(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::WriteDone {
                node,
                shard,
                incarnation,
                lsn,
                offset,
                size,
            } => self.on_write_done(node, shard, incarnation, lsn, (offset, size))?,
            Event::WalReadDone {
                node,
                shard,
                incarnation,
                read,
                outcome,
            } => {
                if self.nodes[node].up && self.nodes[node].incarnation == incarnation {
                    self.step_shard(node, shard, ShardInput::WalReadDone { read, outcome })?;
                }
            }
            Event::CheckpointReadDone {
                node,
                shard,
                incarnation,
                read,
                outcome,
            } => {
                if self.nodes[node].up && self.nodes[node].incarnation == incarnation {
                    let input = ShardInput::CheckpointReadDone { read, outcome };
                    self.step_shard(node, shard, input)?;
                }
            }
            Event::WalTruncateDone {
                node,
                shard,
                incarnation,
                rewrites,
            } => self.on_wal_truncate_done(node, shard, incarnation, rewrites)?,
            Event::Crash => {
                if !self.liveness {
                    self.inject_crash();
                    if let Some(mean) = self.options.crash_interval_ns_mean {
                        let at = self.now + self.exponential(mean);
                        self.schedule(at, Event::Crash);
                    }
                }
            }
            Event::CrashInFlight { node, incarnation } => {
                let up = self.nodes.iter().filter(|n| n.up).count();
                if !self.liveness
                    && up > 1
                    && self.nodes[node].up
                    && self.nodes[node].incarnation == incarnation
                {
                    self.crash_and_restart(node, false);
                }
            }
            Event::Restart { node } => {
                if !self.nodes[node].up {
                    self.checkers.partial.spoil();
                    self.start_node(node)?;
                }
            }
            Event::PartitionStart => {
                if !self.liveness {
                    self.inject_partition();
                }
            }
            Event::PartitionEnd => {
                self.end_partition();
                if let (false, Some(mean)) =
                    (self.liveness, self.options.partition_interval_ns_mean)
                {
                    let at = self.now + self.exponential(mean);
                    self.schedule(at, Event::PartitionStart);
                }
            }
            Event::LinkFlap {
                a,
                b,
                period_ns,
                generation,
            } => self.flap_link(a, b, period_ns, generation),
            Event::BitFlip => {
                if !self.liveness {
                    self.inject_bit_flip();
                    let at = self.now + self.bit_flip_interval();
                    self.schedule(at, Event::BitFlip);
                }
            }
            Event::Client => self.client()?,
            Event::Membership => {
                self.checkers.partial.spoil();
                self.change_membership()?;
            }
            Event::Heal => self.heal()?,
            Event::Checkpoint {
                node,
                shard,
                incarnation,
                group,
                through,
                stage,
            } => self.on_checkpoint(node, shard, incarnation, group, through, stage)?,
        }
        Ok(())
    }

    /// A write's fdatasync completed: the range `(offset, size)` is synced on the disk,
    /// and the shard learns it (the checkers learn what is durable by the contiguity
    /// rule, from the simulator's own ground truth).
    fn on_write_done(
        &mut self,
        node: usize,
        shard: usize,
        incarnation: u32,
        lsn: Lsn,
        (offset, size): (u64, usize),
    ) -> Result<(), Violation> {
        if !self.nodes[node].up || self.nodes[node].incarnation != incarnation {
            return Ok(());
        }
        let slot = &mut self.nodes[node].shards[shard];
        slot.disk.sync_range(offset, size);
        // Ground truth of the contiguity rule, kept apart from the shard's.
        let durable = slot.writes.complete(lsn);
        let id = self.nodes[node].id;
        if let Some(durable) = durable {
            self.checkers
                .send_durable
                .observe_synced(id, shard, durable);
            self.checkers.recovery.observe_synced(id, shard, durable);
        } else {
            self.report.completions_held += 1;
        }
        self.step_shard(node, shard, ShardInput::WriteDone { lsn_through: lsn })
    }

    fn group_on(&self, node: usize, group: GroupId) -> Option<&crate::paxos::Group> {
        let shard = usize::from(shard_of(group, self.shard_count()));
        self.nodes[node].shards[shard].shard.as_ref()?.group(group)
    }

    fn exponential(&mut self, mean: u64) -> u64 {
        // Inverse transform with a 53-bit uniform; capped at 20 × mean.
        let u = (self.prng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let x = -(1.0 - u).ln() * mean as f64;
        (x as u64).clamp(1, mean.saturating_mul(20))
    }
}

/// The configuration of `group` on `node` in a run of `options`, with its own PRNG
/// `seed` (drawn from the run's stream, in node then group order).
fn group_config(
    options: &SimOptions,
    node: NodeId,
    group: GroupId,
    voters: &[NodeId],
    seed: u64,
) -> GroupConfig {
    let value_size_max = options.value_size_max.max(options.large_value_size_max);
    let batch_size_max = options.batch_size_max.max(value_size_max);
    let mut config = GroupConfig::new(node, group, Membership::new(voters.to_vec()));
    config.window_instances_max = options.window_instances_max;
    config.accept_window_instances_max = options.window_instances_max * 4;
    config.batch_values_max = options.batch_values_max;
    config.batch_size_max = batch_size_max;
    config.value_size_max = value_size_max;
    config.proposal_queue_count_max = 1_024;
    config.proposal_queue_size_max = 64 << 20;
    config.election_timeout_ns = ELECTION_TIMEOUT_NS;
    config.heartbeat_interval_ns = 50 * MS;
    config.lease_ns = 250 * MS;
    config.retransmit_ns = 100 * MS;
    config.clock_drift_ppm = u64::from(options.clock_drift_bound_ppm);
    config.promise_entries_max = 4_096;
    config.catch_up_entries_max = 64;
    config.retention_instances_max = options.retention_instances_max;
    config.retention_size_max = options.retention_size_max;
    config.leader_placement = options.leader_placement;
    if let Some(slack) = options.message_size_slack {
        config.message_size_max = config.message_size_min() + slack;
    }
    config.seed = seed;
    // Catch-up credit per replica from its own seed (no further draw, so
    // the seeds of `tests/seeds.txt` keep their runs): 1 (stop-and-wait,
    // as a peer that sends no credit), 2, 4 or 8 chunks in flight, mixed
    // within a group.
    config.catch_up_credit_max = 1 << (config.seed >> 62);
    if let Err(why) = config.validate() {
        panic!("simulator built an invalid GroupConfig: {why}");
    }
    config
}

/// The shards' limits: in backpressure seeds (`SimOptions::backpressure`) one WAL
/// buffer of room and `BACKPRESSURE_HELD_COUNT_MAX` held messages, else four buffers
/// and 100,000.
fn shard_config_template(options: &SimOptions, buffer: usize) -> ShardConfig {
    let (wal_buffers, held_count_max) = if options.backpressure {
        (1, BACKPRESSURE_HELD_COUNT_MAX)
    } else {
        (4, 100_000)
    };
    ShardConfig {
        node: NodeId(0),
        wal_pending_size_max: buffer * wal_buffers,
        held_count_max,
        reads_pending_count_max: 1_024,
        // Small, so that some log reads are refused `Overloaded`.
        log_reads_wal_count_max: 2,
        checkpoint: options.checkpoint,
        transfer: crate::runtime::TransferPolicy::default(),
        truncation: options.truncation,
    }
}
