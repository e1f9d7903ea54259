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

use std::collections::BTreeMap;

use bytes::Bytes;

use super::checkers::bounds::Probe;
use super::checkers::{Checkers, Violation, Watermarks};
use super::clock::SimClock;
use super::disk::SimDisk;
use super::network::{NetworkOptions, SimNetwork};
use super::options::SimOptions;
use crate::paxos::{
    Ballot, Body, Entry, GroupConfig, GroupId, Instance, InstanceRange, Lsn, Membership, Message,
    MessageBody, Nanos, NodeId, PromisedEntry, ProposalId, Restore, Role,
};
use crate::prng::Prng;
use crate::runtime::shard::{ProposalOutcome, ReadId};
use crate::runtime::{shard_of, Effects, Shard, ShardConfig, ShardInput};
use crate::wal::{self, DecodeLimits, GroupCommit, GroupCommitConfig, ScanConfig};

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// Size of each simulated shard disk.
/// (Images grow with what is written: a seed pays only for the log it writes.)
pub const DISK_SIZE: usize = 2 << 30;
/// How long the liveness phase keeps proposing before it waits for convergence.
const LIVENESS_LOAD_NS: u64 = 2 * S;
/// How long after healing the cluster must have converged.
const LIVENESS_BOUND_NS: u64 = 60 * S;
/// Steps after which a run is declared stuck (a driver or protocol livelock).
const STEPS_MAX: u64 = 20_000_000;

/// What a passing run did.
#[derive(Clone, Default)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Steps executed.
    pub steps: u64,
    /// Virtual (true) time simulated.
    pub virtual_ns: u64,
    /// Sum over groups of the highest chosen instance.
    pub chosen: u64,
    /// Proposals acknowledged to clients.
    pub acknowledged: usize,
    /// Crashes injected.
    pub crashes: u64,
    /// Disks lost.
    pub disks_lost: u64,
    /// Bit flips injected.
    pub bit_flips: u64,
    /// Restarts whose recovery found corruption.
    pub corrupt_recoveries: u64,
    /// Partitions injected.
    pub partitions: u64,
    /// Elections won.
    pub elections: u64,
    /// Forged messages delivered to a running shard and refused without effect.
    pub forged_refused: u64,
    /// Lines the shards asked to log about refused messages (rate-limited).
    pub refusal_lines: u64,
    /// What the clients' reads did (printed on a line of its own: not part of
    /// `Debug`, which describes the fault run as it was before reads existed).
    pub reads: ReadReport,
}

impl std::fmt::Debug for RunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunReport")
            .field("seed", &self.seed)
            .field("steps", &self.steps)
            .field("virtual_ns", &self.virtual_ns)
            .field("chosen", &self.chosen)
            .field("acknowledged", &self.acknowledged)
            .field("crashes", &self.crashes)
            .field("disks_lost", &self.disks_lost)
            .field("bit_flips", &self.bit_flips)
            .field("corrupt_recoveries", &self.corrupt_recoveries)
            .field("partitions", &self.partitions)
            .field("elections", &self.elections)
            .field("forged_refused", &self.forged_refused)
            .field("refusal_lines", &self.refusal_lines)
            .finish()
    }
}

/// What the clients' reads of one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// Reads issued.
    pub issued: u64,
    /// Reads served and checked linearizable.
    pub served: u64,
    /// Reads refused (not the leader, lease not held, overloaded).
    pub refused: u64,
}

/// A failing run: the seed, where it failed, and why.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// Step at which the violation was seen.
    pub step: u64,
    /// True time at which it was seen.
    pub virtual_ns: u64,
    /// The property broken.
    pub violation: Violation,
    /// The seed's options, one line.
    pub options: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} failed at step {} (t = {:.6}s): {}\n  options: {}\n  replay: SYNOD_SEED={} cargo test --release --test simulation",
            self.seed,
            self.step,
            self.virtual_ns as f64 / 1e9,
            self.violation,
            self.options,
            self.seed
        )
    }
}

/// Runs seed `seed` to completion. A panic inside the run (a broken invariant
/// assertion) is reported as the seed's failure, with the assertion's message.
pub fn run_seed(seed: u64) -> Result<RunReport, Failure> {
    run_options(SimOptions::from_seed(seed))
}

/// Runs a cluster configured by `options` (a seed's, possibly adjusted by a test) to
/// completion; failures are reported as by [`run_seed`].
pub fn run_options(options: SimOptions) -> Result<RunReport, Failure> {
    let seed = options.seed;
    let summary = options.to_string();
    let mut cluster = Cluster::new(options);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cluster.run()));
    let violation = match outcome {
        Ok(Ok(())) => return Ok(cluster.report()),
        Ok(Err(violation)) => violation,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "a panic without a message".to_string());
            Violation::new("invariant", format!("panicked: {message}"))
        }
    };
    Err(Failure {
        seed,
        step: cluster.steps,
        virtual_ns: cluster.now,
        violation,
        options: summary,
    })
}

#[derive(Clone, Debug)]
enum Event {
    WriteDone {
        node: usize,
        shard: usize,
        incarnation: u32,
        lsn: Lsn,
        offset: u64,
    },
    Crash,
    Restart {
        node: usize,
    },
    PartitionStart,
    PartitionEnd,
    BitFlip,
    Client,
    Heal,
}

struct ShardSlot {
    shard: Option<Shard>,
    disk: SimDisk,
    /// Offset of the newest durable batch (the last write whose sync completed): bit
    /// flips land only below it, so a later durable batch always follows the damage.
    /// Damage to the newest durable batch itself, once the write in flight is lost in a
    /// crash, is indistinguishable from a torn write (see `wal::recovery`).
    last_write_offset: u64,
    salt: u32,
    /// The shard's log lost state (wiped, or corrupt before its tail). Survives crashes
    /// like a marker file beside the log, so a restart after the scrub still knows;
    /// cleared once every group votes again and what it re-learned is durable.
    lost_marker: bool,
}

struct Node {
    id: NodeId,
    clock: SimClock,
    up: bool,
    incarnation: u32,
    shards: Vec<ShardSlot>,
    /// Wipe the disks at the next restart.
    wipe_on_restart: bool,
}

/// A whole simulated cluster. See the module docs.
pub struct Cluster {
    options: SimOptions,
    prng: Prng,
    /// The forger's own stream, so that turning forgery on leaves the draws of the
    /// main stream where they were.
    forge_prng: Prng,
    /// The reads' own stream (which node, which group, when), for the same reason.
    read_prng: Prng,
    /// When the next read is issued (`None`: reads are off).
    read_next_ns: Option<u64>,
    read_id_next: u64,
    /// Reads waiting for an answer: the node they were sent to.
    reads_in_flight: BTreeMap<ReadId, usize>,
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
        let voters: Vec<NodeId> = (1..=options.node_count as u32).map(NodeId).collect();
        let membership = Membership::new(voters.clone());
        let groups: Vec<GroupId> = (1..=options.group_count as u32).map(GroupId).collect();
        let value_size_max = options.value_size_max.max(options.large_value_size_max);
        let batch_size_max = options.batch_size_max.max(value_size_max);
        let mut group_configs = Vec::new();
        for &node in &voters {
            for &group in &groups {
                let mut config = GroupConfig::new(node, group, membership.clone());
                config.window_instances_max = options.window_instances_max;
                config.accept_window_instances_max = options.window_instances_max * 4;
                config.batch_values_max = options.batch_values_max;
                config.batch_size_max = batch_size_max;
                config.value_size_max = value_size_max;
                config.proposal_queue_count_max = 1_024;
                config.proposal_queue_size_max = 64 << 20;
                config.election_timeout_ns = 500 * MS;
                config.heartbeat_interval_ns = 50 * MS;
                config.lease_ns = 250 * MS;
                config.retransmit_ns = 100 * MS;
                config.clock_drift_ppm = u64::from(options.clock_drift_bound_ppm);
                config.promise_entries_max = 4_096;
                config.catch_up_entries_max = 64;
                if let Some(slack) = options.message_size_slack {
                    config.message_size_max = config.message_size_min() + slack;
                }
                config.seed = prng.next_u64();
                if let Err(why) = config.validate() {
                    panic!("simulator built an invalid GroupConfig: {why}");
                }
                group_configs.push(config);
            }
        }
        let buffer = wal::block_align_up((batch_size_max * 2 + (256 << 10)) as u64) as usize;
        let commit_config = GroupCommitConfig {
            buffer_size_max: buffer,
            salt: 0,
        };
        let shard_config_template = ShardConfig {
            node: NodeId(0),
            wal_pending_size_max: buffer * 4,
            held_count_max: 100_000,
            reads_pending_count_max: 1_024,
        };
        let mut nodes = Vec::new();
        for (index, &id) in voters.iter().enumerate() {
            let drift = options.clock_drift_ppm[index];
            let clock = SimClock::new(drift, options.clock_drift_bound_ppm, 0, &mut prng);
            let shards = (0..options.shards_per_node)
                .map(|_| ShardSlot {
                    shard: None,
                    disk: SimDisk::new(DISK_SIZE),
                    last_write_offset: 0,
                    salt: prng.next_u64() as u32,
                    lost_marker: false,
                })
                .collect();
            nodes.push(Node {
                id,
                clock,
                up: false,
                incarnation: 0,
                shards,
                wipe_on_restart: false,
            });
        }
        let network = SimNetwork::new(NetworkOptions::from_options(&options));
        Cluster {
            prng,
            forge_prng: Prng::new(options.seed ^ 0x464f_5247_4552_5321),
            read_prng: Prng::new(options.seed ^ 0x5245_4144_5354_524d),
            read_next_ns: options.read_interval_ns_mean,
            read_id_next: 1,
            reads_in_flight: BTreeMap::new(),
            now: 0,
            steps: 0,
            nodes,
            network,
            checkers: Checkers::with_message_size_max(
                group_configs.iter().map(|c| c.message_size_max).max(),
            ),
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

    fn report(&self) -> RunReport {
        let mut report = self.report.clone();
        report.steps = self.steps;
        report.virtual_ns = self.now;
        report.acknowledged = self.checkers.durability.acknowledged().len();
        report.forged_refused = self.checkers.bounds.forged_refused();
        report.chosen = self
            .groups
            .iter()
            .map(|g| self.checkers.liveness.target(*g).0 .0)
            .sum();
        report
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
            if self.liveness && !self.proposing {
                let live: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
                if self.checkers.liveness.is_converged(&live, &self.groups) {
                    return self.final_checks();
                }
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
                let live: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
                self.checkers.liveness.check(next, &live, &self.groups)?;
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
                        self.step_shard(node, shard, ShardInput::Message(message))?;
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

    /// Delivers a forged message: the shard and the group it names must show the same
    /// state after the message step as before, with the refusal counted; then the
    /// shard flushes as after any step.
    fn deliver_forged(
        &mut self,
        node: usize,
        shard: usize,
        message: Message,
    ) -> Result<(), Violation> {
        let id = self.nodes[node].id;
        let local = self.nodes[node].clock.local(self.now);
        let Some(core) = self.nodes[node].shards[shard].shard.as_mut() else {
            return Ok(());
        };
        let Some(before) = probe(core, message.group) else {
            return Ok(());
        };
        core.step(local, ShardInput::Message(message.clone()));
        let after = probe(core, message.group).expect("a shard keeps its groups");
        self.checkers
            .bounds
            .observe_forged(id, &message, &before, &after)?;
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

    fn execute(
        &mut self,
        node: usize,
        shard: usize,
        effects: &mut Effects,
    ) -> Result<(), Violation> {
        let id = self.nodes[node].id;
        self.report.refusal_lines += effects.warnings.len() as u64;
        if let Some(plan) = effects.write.take() {
            let slot = &mut self.nodes[node].shards[shard];
            let end = plan.offset as usize + plan.bytes.len();
            assert!(
                end <= slot.disk.size(),
                "simulated disk full at {end} bytes"
            );
            slot.disk.write(plan.offset, &plan.bytes);
            let latency = self.prng.range(
                self.options.disk_write_latency_ns_min,
                self.options.disk_write_latency_ns_max,
            ) + self.prng.range(
                self.options.disk_sync_latency_ns_min,
                self.options.disk_sync_latency_ns_max,
            );
            let incarnation = self.nodes[node].incarnation;
            self.schedule(
                self.now + latency,
                Event::WriteDone {
                    node,
                    shard,
                    incarnation,
                    lsn: plan.lsn_through,
                    offset: plan.offset,
                },
            );
            if let Some(core) = self.nodes[node].shards[shard].shard.as_mut() {
                core.recycle(plan.bytes);
            }
        }
        for (peer, messages) in effects.send.drain(..) {
            for message in messages {
                self.checkers.bounds.observe_sent(id, &message)?;
                self.checkers.message_size.observe_sent(id, &message)?;
                if let Some(ballot) = durable_ballot(&message) {
                    self.checkers
                        .monotonic
                        .observe_durable(id, message.group, ballot);
                }
                let forge = self.options.network_forge_ppm > 0
                    && self.forge_prng.chance_ppm(self.options.network_forge_ppm);
                let forged =
                    forge.then(|| forge_message(&message, self.nodes.len(), &mut self.forge_prng));
                self.network
                    .send(Nanos(self.now), id, peer, message, &mut self.prng);
                if let Some(forged) = forged {
                    let (from, to) = (forged.from, forged.to);
                    self.network
                        .send(Nanos(self.now), from, to, forged, &mut self.forge_prng);
                }
            }
        }
        for apply in effects.apply.drain(..) {
            self.checkers.observe_apply(id, &apply)?;
        }
        // The shard's answers, one per proposal, after the applies they refer to.
        for (proposal, outcome) in effects.replies.drain(..) {
            let Some((_, group)) = self.proposals_in_flight.remove(&proposal) else {
                continue;
            };
            match outcome {
                ProposalOutcome::Applied { instance, .. } => {
                    if self.liveness {
                        self.acknowledged_after_heal += 1;
                    }
                    self.checkers.read.observe_acknowledged(group, instance);
                    self.checkers.liveness.observe_complete(id, group, proposal);
                }
                ProposalOutcome::Aborted => {
                    self.checkers.liveness.observe_complete(id, group, proposal);
                }
                ProposalOutcome::Failed(_) => {
                    self.checkers.durability.observe_failed(id, group, proposal);
                    self.checkers.liveness.observe_complete(id, group, proposal);
                }
            }
        }
        for read in effects.reads.drain(..) {
            if self.reads_in_flight.remove(&read.id).is_none() {
                continue;
            }
            match read.outcome {
                Ok(read_index) => {
                    // The node's state machine: its applied prefix, as its checksum.
                    let core = self.nodes[node].shards[shard].shard.as_ref();
                    let group = core
                        .and_then(|core| core.group(read.group))
                        .expect("a shard that answers a read has the group");
                    self.report.reads.served += 1;
                    self.checkers.read.observe_served(
                        read.id.0,
                        read_index,
                        group.applied_through(),
                        group.checksum(),
                        self.now,
                    )?;
                }
                Err(_) => {
                    self.report.reads.refused += 1;
                    self.checkers.read.observe_refused(read.id.0);
                }
            }
        }
        if effects.clear_rejoin_marker {
            // The marker file goes: a later restart no longer rejoins as a learner.
            self.nodes[node].shards[shard].lost_marker = false;
        }
        Ok(())
    }

    /// Feeds every checker the state of the groups of `node`'s `shard` after a step.
    fn observe(&mut self, node: usize, shard: usize) -> Result<(), Violation> {
        let id = self.nodes[node].id;
        let local = self.nodes[node].clock.local(self.now);
        let Some(core) = self.nodes[node].shards[shard].shard.as_ref() else {
            return Ok(());
        };
        for group in core.groups() {
            let watermarks = Watermarks {
                promised: group.promised(),
                chosen_through: group.chosen_through(),
                applied_through: group.applied_through(),
                leader_ballot: (group.role() == Role::Leader)
                    .then(|| group.ballot())
                    .flatten(),
            };
            let group_id = group.config().group;
            self.checkers
                .observe_watermarks(id, group_id, &watermarks)?;
            if let (Some(until), Some(ballot)) = (group.lease_until(), group.ballot()) {
                if local < until {
                    let end = self.nodes[node].clock.true_of(until);
                    self.checkers
                        .lease
                        .observe_lease(group_id, id, ballot, self.now, end)?;
                }
            }
            if group.is_fenced() {
                return Err(Violation::new(
                    "checksum",
                    format!(
                        "node {} group {} fenced by a checksum mismatch",
                        id.0, group_id.0
                    ),
                ));
            }
        }
        if self.damaged == Some(node) && self.node_recovered(node) {
            self.damaged = None;
        }
        Ok(())
    }

    /// Whether `node` is up, every group votes and no shard carries a lost marker.
    fn node_recovered(&self, node: usize) -> bool {
        let node = &self.nodes[node];
        node.up
            && node.shards.iter().all(|slot| {
                !slot.lost_marker
                    && slot
                        .shard
                        .as_ref()
                        .is_some_and(|core| core.groups().all(|g| g.is_voting()))
            })
    }

    fn on_event(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::WriteDone {
                node,
                shard,
                incarnation,
                lsn,
                offset,
            } => {
                if self.nodes[node].up && self.nodes[node].incarnation == incarnation {
                    self.nodes[node].shards[shard].disk.sync();
                    self.nodes[node].shards[shard].last_write_offset = offset;
                    self.step_shard(node, shard, ShardInput::WriteDone { lsn_through: lsn })?;
                }
            }
            Event::Crash => {
                if !self.liveness {
                    self.inject_crash();
                    if let Some(mean) = self.options.crash_interval_ns_mean {
                        let at = self.now + self.exponential(mean);
                        self.schedule(at, Event::Crash);
                    }
                }
            }
            Event::Restart { node } => {
                if !self.nodes[node].up {
                    self.start_node(node)?;
                }
            }
            Event::PartitionStart => {
                if !self.liveness {
                    self.inject_partition();
                }
            }
            Event::PartitionEnd => {
                self.network.heal();
                if let (false, Some(mean)) =
                    (self.liveness, self.options.partition_interval_ns_mean)
                {
                    let at = self.now + self.exponential(mean);
                    self.schedule(at, Event::PartitionStart);
                }
            }
            Event::BitFlip => {
                if !self.liveness {
                    self.inject_bit_flip();
                    let at = self.now + self.bit_flip_interval();
                    self.schedule(at, Event::BitFlip);
                }
            }
            Event::Client => self.client()?,
            Event::Heal => self.heal()?,
        }
        Ok(())
    }

    // ----- faults -----

    fn inject_crash(&mut self) {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|n| self.nodes[*n].up)
            .collect();
        if up.len() <= 1 {
            return;
        }
        let node = up[self.prng.index(up.len())];
        // One crash in five (at least) loses its disk when the seed enables it.
        let lose_disk = self.damaged.is_none()
            && self.options.disk_loss_ppm > 0
            && self
                .prng
                .chance_ppm(self.options.disk_loss_ppm.max(200_000));
        self.crash(node, lose_disk);
        let delay = self.prng.range(
            self.options.restart_delay_ns_min,
            self.options.restart_delay_ns_max,
        );
        self.schedule(self.now + delay, Event::Restart { node });
    }

    fn crash(&mut self, node: usize, lose_disk: bool) {
        let n = &mut self.nodes[node];
        n.up = false;
        n.incarnation += 1;
        self.network.drop_node(n.id);
        for slot in &mut n.shards {
            slot.shard = None;
            slot.disk.crash(&mut self.prng);
        }
        if lose_disk {
            n.wipe_on_restart = true;
            self.damaged = Some(node);
            self.report.disks_lost += 1;
        }
        self.proposals_in_flight
            .retain(|_, (owner, _)| *owner != node);
        self.reads_in_flight.retain(|_, owner| *owner != node);
        self.report.crashes += 1;
    }

    fn inject_partition(&mut self) {
        let count = self.nodes.len();
        let mut sides: Vec<Vec<NodeId>> = vec![Vec::new(), Vec::new()];
        for node in &self.nodes {
            sides[self.prng.index(2)].push(node.id);
        }
        sides.retain(|s| !s.is_empty());
        if sides.len() < 2 || count < 2 {
            let at = self.now + 10 * MS;
            self.schedule(at, Event::PartitionEnd);
            return;
        }
        self.network.partition(&sides);
        self.report.partitions += 1;
        let duration = self.prng.range(
            self.options.partition_duration_ns_min,
            self.options.partition_duration_ns_max,
        );
        self.schedule(self.now + duration, Event::PartitionEnd);
    }

    /// When the seed enables bit flips, a few land in each safety phase (more with a
    /// higher `disk_bit_flip_ppm`): rare enough that the damaged replica can rejoin
    /// between two of them, frequent enough to matter.
    fn bit_flip_interval(&mut self) -> u64 {
        let per_phase = 1 + u64::from(self.options.disk_bit_flip_ppm) / 500;
        self.exponential((self.options.safety_phase_ns / per_phase).max(100 * MS))
    }

    fn inject_bit_flip(&mut self) {
        if self.damaged.is_some() {
            return;
        }
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|n| self.nodes[*n].up)
            .collect();
        if up.is_empty() {
            return;
        }
        let node = up[self.prng.index(up.len())];
        let shard = self.prng.index(self.nodes[node].shards.len());
        let limit = self.nodes[node].shards[shard].last_write_offset;
        if limit == 0 {
            return;
        }
        let offset = self.prng.below(limit);
        let bit = self.prng.below(8) as u8;
        self.nodes[node].shards[shard].disk.flip_bit(offset, bit);
        self.damaged = Some(node);
        self.report.bit_flips += 1;
        // Damage matters when the log is read back: crash the node soon.
        self.crash(node, false);
        let delay = self.prng.range(
            self.options.restart_delay_ns_min,
            self.options.restart_delay_ns_max,
        );
        self.schedule(self.now + delay, Event::Restart { node });
    }

    fn heal(&mut self) -> Result<(), Violation> {
        self.liveness = true;
        self.network.heal();
        let mut calm = NetworkOptions::from_options(&self.options);
        calm.loss_ppm = 0;
        calm.duplicate_ppm = 0;
        self.network.set_options(calm);
        for node in 0..self.nodes.len() {
            if !self.nodes[node].up {
                self.start_node(node)?;
            }
        }
        self.checkers.liveness.start(self.now, LIVENESS_BOUND_NS);
        Ok(())
    }

    // ----- nodes -----

    /// Starts (or restarts) `node` from its disks: recovery, replay, new shards.
    fn start_node(&mut self, node: usize) -> Result<(), Violation> {
        let now = self.now;
        let first_start = self.nodes[node].incarnation == 0 && !self.nodes[node].up;
        let restarted = !first_start || self.steps > 1;
        if restarted {
            let (clock, prng) = (&mut self.nodes[node].clock, &mut self.prng);
            if now > clock.start_true_ns() {
                clock.restart(now, prng);
            }
        }
        let id = self.nodes[node].id;
        let wipe = std::mem::take(&mut self.nodes[node].wipe_on_restart);
        let local = self.nodes[node].clock.local(now);
        let shard_count = self.shard_count();
        let mut lost_any = wipe;
        for shard in 0..self.nodes[node].shards.len() {
            let salt = self.nodes[node].shards[shard].salt;
            let slot = &mut self.nodes[node].shards[shard];
            if wipe {
                slot.disk.wipe();
            }
            let scan = wal::scan(
                slot.disk.image(),
                &ScanConfig {
                    salt,
                    lsn_prev: Lsn(0),
                    limits: DecodeLimits::default(),
                },
            );
            let corrupt = scan.recovery.is_corrupt();
            if corrupt {
                self.report.corrupt_recoveries += 1;
            }
            let lost = wipe || corrupt || slot.lost_marker;
            slot.lost_marker = lost;
            lost_any |= lost;
            if !scan.scrub.is_empty() {
                let zeros = vec![0u8; (scan.scrub.end - scan.scrub.start) as usize];
                slot.disk.write(scan.scrub.start, &zeros);
                slot.disk.sync();
            }
            let mut recovered = wal::replay(&scan.records);
            let mut groups = Vec::new();
            for config in &self.group_configs {
                if config.node != id || usize::from(shard_of(config.group, shard_count)) != shard {
                    continue;
                }
                let state = recovered.remove(&config.group).unwrap_or_default();
                let restore = Restore {
                    promised: state.promised,
                    accepted: state.accepted,
                    learned: state.learned,
                    chosen_through: state.chosen_through,
                    lost_state: lost,
                };
                groups.push((config.clone(), restore));
            }
            let commit = GroupCommit::new(
                GroupCommitConfig {
                    salt,
                    ..self.commit_config
                },
                scan.resume,
            );
            let config = ShardConfig {
                node: id,
                ..self.shard_config_template.clone()
            };
            slot.shard = Some(Shard::new(config, groups, commit, lost, local));
            slot.last_write_offset = 0;
        }
        if restarted {
            self.checkers.restart(id, lost_any);
        }
        if lost_any {
            self.damaged = Some(node);
        }
        self.nodes[node].up = true;
        self.network.restore_node(id);
        // Flush each new shard once: it re-applies its restored chosen prefix.
        for shard in 0..self.nodes[node].shards.len() {
            self.step_shard(node, shard, ShardInput::Tick)?;
        }
        Ok(())
    }

    // ----- clients -----

    fn client(&mut self) -> Result<(), Violation> {
        if self.liveness && self.now >= self.options.safety_phase_ns + LIVENESS_LOAD_NS {
            self.proposing = false;
            return Ok(());
        }
        let interval_min = self.options.proposal_interval_ns_min.max(200_000);
        let interval_max = self.options.proposal_interval_ns_max.max(interval_min);
        let next = self.now + self.prng.range(interval_min, interval_max);
        self.schedule(next, Event::Client);
        if self.proposals_in_flight.len() >= self.options.proposals_in_flight_max {
            return Ok(());
        }
        let group = self.groups[self.prng.index(self.groups.len())];
        // Mostly the believed leader; sometimes anyone (NotLeader is a valid answer).
        let leader = (0..self.nodes.len()).find(|n| {
            self.nodes[*n].up
                && self
                    .group_on(*n, group)
                    .is_some_and(|g| g.role() == Role::Leader)
        });
        let node = match leader {
            Some(node) if self.prng.below(4) != 0 => node,
            _ => {
                let up: Vec<usize> = (0..self.nodes.len())
                    .filter(|n| self.nodes[*n].up)
                    .collect();
                if up.is_empty() {
                    return Ok(());
                }
                up[self.prng.index(up.len())]
            }
        };
        let id = ProposalId(self.proposal_next);
        self.proposal_next += 1;
        let value = self.value(id);
        let node_id = self.nodes[node].id;
        self.checkers
            .durability
            .observe_propose(node_id, group, id, value.clone())?;
        self.checkers
            .liveness
            .observe_propose(node_id, group, id, self.now);
        self.proposals_in_flight.insert(id, (node, group));
        if self.liveness {
            self.proposed_after_heal += 1;
        }
        let shard = usize::from(shard_of(group, self.shard_count()));
        self.step_shard(node, shard, ShardInput::Propose { group, id, value })
    }

    /// Issues one read and schedules the next, every draw from the reads' own stream.
    fn read(&mut self) -> Result<(), Violation> {
        let mean = self
            .options
            .read_interval_ns_mean
            .expect("reads are scheduled only when on");
        let gap = self.read_prng.range(mean / 2, mean + mean / 2).max(1);
        self.read_next_ns = Some(self.now + gap);
        let group = self.groups[self.read_prng.index(self.groups.len())];
        let leader = (0..self.nodes.len()).find(|n| {
            self.nodes[*n].up
                && self
                    .group_on(*n, group)
                    .is_some_and(|g| g.role() == Role::Leader)
        });
        let node = match leader {
            Some(node) if self.read_prng.below(4) != 0 => node,
            _ => {
                let up: Vec<usize> = (0..self.nodes.len())
                    .filter(|n| self.nodes[*n].up)
                    .collect();
                if up.is_empty() {
                    return Ok(());
                }
                up[self.read_prng.index(up.len())]
            }
        };
        let id = ReadId(self.read_id_next);
        self.read_id_next += 1;
        self.report.reads.issued += 1;
        self.checkers
            .read
            .observe_issued(id.0, self.nodes[node].id, group, self.now);
        self.reads_in_flight.insert(id, node);
        let shard = usize::from(shard_of(group, self.shard_count()));
        self.step_shard(node, shard, ShardInput::Read { group, id })
    }

    fn value(&mut self, id: ProposalId) -> Bytes {
        let large =
            self.options.large_value_ppm > 0 && self.prng.chance_ppm(self.options.large_value_ppm);
        let size = if large {
            self.prng.range(
                self.options.value_size_max as u64,
                self.options.large_value_size_max as u64,
            )
        } else {
            self.prng.range(
                self.options.value_size_min as u64,
                self.options.value_size_max as u64,
            )
        } as usize;
        // Values are random (the checkers track proposals by id, not by content); the
        // id is embedded when it fits, which makes logs easier to read.
        let mut bytes = vec![0u8; size];
        self.prng.fill(&mut bytes);
        if size >= 8 {
            bytes[..8].copy_from_slice(&id.0.to_le_bytes());
        }
        Bytes::from(bytes)
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

    fn final_checks(&mut self) -> Result<(), Violation> {
        // Liveness must mean progress, not only convergence: with every fault healed and
        // clients aiming mostly at leaders, some proposal must succeed.
        if self.proposed_after_heal >= 20 && self.acknowledged_after_heal == 0 {
            return Err(Violation::new(
                "liveness",
                format!(
                    "no proposal acknowledged after healing ({} submitted)",
                    self.proposed_after_heal
                ),
            ));
        }
        let live: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
        let logs = self.checkers.prefix.final_logs(&live);
        self.checkers.durability.check_final(&logs)?;
        for node in &self.nodes {
            for slot in &node.shards {
                if let Some(core) = slot.shard.as_ref() {
                    for group in core.groups() {
                        self.report.elections += group.counters().elections_won;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The ballot a message proves durable on its sender: it may leave only once that
/// ballot is in the sender's log (promises and acks wait for the write; a candidate
/// persists its ballot before its prepares; a leader's accepts follow its election).
fn durable_ballot(message: &Message) -> Option<crate::paxos::Ballot> {
    use crate::paxos::MessageBody as B;
    match &message.body {
        B::Promise { ballot, .. } | B::Accepted { ballot, .. } => Some(*ballot),
        B::Prepare { ballot, .. } | B::Accept { ballot, .. } => Some(*ballot),
        B::Reject { .. }
        | B::Heartbeat { .. }
        | B::HeartbeatAck { .. }
        | B::CatchUpRequest { .. }
        | B::CatchUpChunk { .. } => None,
    }
}

/// What a shard and its group `group` show, for comparing around a forged message.
fn probe(core: &Shard, group: GroupId) -> Option<Probe> {
    let g = core.group(group)?;
    let out_of_bounds: u64 = g
        .counters()
        .ignored
        .iter()
        .filter(|(reason, _)| reason.ends_with("_out_of_bounds"))
        .map(|(_, count)| *count)
        .sum();
    Some(Probe {
        role: g.role(),
        ballot: g.ballot(),
        promised: g.promised(),
        highest_round_seen: g.highest_round_seen(),
        chosen_through: g.chosen_through(),
        applied_through: g.applied_through(),
        leader_hint: g.leader_hint(),
        voting: g.is_voting(),
        next_deadline: g.next_deadline(),
        lsn_planned: core.lsn_planned(),
        held_count: core.held_count(),
        refusals: out_of_bounds + core.counters().refused_messages,
    })
}

/// A round no honest replica reaches.
fn round_over(prng: &mut Prng) -> u64 {
    match prng.below(3) {
        0 => u64::MAX,
        1 => Ballot::ROUND_MAX + 1,
        _ => prng.range(Ballot::ROUND_MAX + 1, u64::MAX),
    }
}

/// An instance beyond the log's end (or 0, which is no position).
fn instance_over(prng: &mut Prng) -> u64 {
    match prng.below(4) {
        0 => u64::MAX,
        1 => Instance::MAX.0 + 1,
        2 => 0,
        _ => prng.range(Instance::MAX.0 + 1, u64::MAX),
    }
}

/// A forged message toward `real.to` in `real.group`: a random kind, claiming a random
/// node as its sender, plausible fields around the real message's, and one ballot or
/// instance out of bounds. Never in bounds: a peer forging messages in bounds is a
/// Byzantine peer, which Paxos does not tolerate (authentication keeps it out).
fn forge_message(real: &Message, node_count: usize, prng: &mut Prng) -> Message {
    let from = NodeId(prng.range(1, node_count as u64) as u32);
    let near = match &real.body {
        MessageBody::Prepare { ballot, .. }
        | MessageBody::Promise { ballot, .. }
        | MessageBody::Accept { ballot, .. }
        | MessageBody::Accepted { ballot, .. }
        | MessageBody::Heartbeat { ballot, .. }
        | MessageBody::HeartbeatAck { ballot, .. } => ballot.round,
        MessageBody::Reject { promised } | MessageBody::CatchUpChunk { promised, .. } => {
            promised.round
        }
        MessageBody::CatchUpRequest { .. } => 1,
    };
    let ballot = |round| Ballot { round, node: from };
    let plausible = ballot(near.clamp(1, Ballot::ROUND_MAX));
    let small = Instance(prng.range(1, 64));
    let noop = |origin| Entry {
        origin,
        body: Body::Noop,
    };
    // Which field goes out of bounds: a round, or else an instance (`position` may be
    // 0, which is no log position; `watermark` may not: 0 is a valid watermark).
    let bad_round = prng.coin();
    let round = if bad_round {
        round_over(prng)
    } else {
        near.max(1)
    };
    let (position, watermark) = if bad_round {
        (small, small)
    } else {
        let over = instance_over(prng);
        (Instance(over), Instance(over.max(Instance::MAX.0 + 1)))
    };
    let body = match prng.below(9) {
        0 => MessageBody::Prepare {
            ballot: ballot(round),
            from: position,
        },
        1 => MessageBody::Promise {
            ballot: plausible,
            chosen_through: small,
            entries: vec![PromisedEntry {
                instance: position,
                ballot: ballot(round),
                chosen: prng.coin(),
                entry: noop(plausible),
            }],
            truncated: false,
        },
        2 => MessageBody::Reject {
            promised: ballot(round_over(prng)),
        },
        3 => MessageBody::Accept {
            ballot: ballot(round),
            chosen_through: small,
            first: position,
            entries: vec![noop(plausible)],
        },
        4 => MessageBody::Accepted {
            ballot: plausible,
            ranges: vec![if bad_round {
                // Inverted.
                InstanceRange {
                    first: Instance(small.0 + 1),
                    last: small,
                }
            } else if position.0 == 0 {
                InstanceRange {
                    first: position,
                    last: small,
                }
            } else {
                InstanceRange {
                    first: small,
                    last: position,
                }
            }],
        },
        5 => MessageBody::Heartbeat {
            ballot: ballot(round),
            chosen_through: watermark,
            sent_at: Nanos(prng.next_u64()),
            checksum_through: Instance(0),
            checksum: 0,
        },
        6 => MessageBody::HeartbeatAck {
            ballot: ballot(round_over(prng)),
            sent_at: Nanos(prng.next_u64()),
        },
        7 => MessageBody::CatchUpRequest {
            from: Instance(instance_over(prng)),
        },
        _ => MessageBody::CatchUpChunk {
            chosen_through: watermark,
            promised: ballot(round),
            accepted_max: small,
            first: small,
            entries: vec![noop(plausible)],
        },
    };
    let forged = Message {
        group: real.group,
        from,
        to: real.to,
        body,
    };
    assert!(
        forged.body.check_bounds().is_err(),
        "the forger made a message in bounds: {forged:?}"
    );
    forged
}
