//! One seed picks the whole simulated world: cluster shape, workload, network, disk,
//! clocks, fault rates and phase lengths.
//!
//! Swarm testing (Groce et al., "Swarm Testing", ISSTA 2012): besides drawing every
//! rate, a seed turns whole fault classes off, because some bugs only show when one kind
//! of fault is silent (e.g. reordering without loss), and a run that mixes every fault at
//! once rarely reaches deep states. A few seeds (about 1 in 32) are calm: every fault
//! class off.
//!
//! Invariants (asserted by [`SimOptions::invariants`], which `from_seed` calls):
//! - every `*_min <= *_max`; every `*_ppm <= 1_000_000`; every count and size is positive;
//! - `node_count` is 2 to 9 and `voter_count` 2 to 7, at most `node_count` (both equal,
//!   3 or 5, unless a profile adds spare nodes); `clock_drift_ppm` has one entry per
//!   node, each within
//!   `±clock_drift_bound_ppm`, and the bound is below 1_000_000;
//! - a class listed in `faults_off` has its rate at 0 (or its interval `None`), and a
//!   class that is on has a nonzero rate (clock drift excepted: a drawn drift may be 0).
//!
//! Large-value mode: about 1 seed in 8 (or every seed, when forced) gives the groups a
//! byte budget per message just above its minimum (`GroupConfig::message_size_min`)
//! and makes most values large against it, so that accept runs, promises and catch-up
//! chunks split by size often, with values of kilobytes rather than megabytes (the
//! simulated disks stay small). Its draws come from a PRNG stream of their own: a seed
//! whose mode is off keeps every other option, and so its whole run, unchanged.
//!
//! Checkpoints: about 3 seeds in 4 take local checkpoints, with a policy (instances,
//! bytes, time; each trigger on or off) small enough that a run takes many, some
//! failing and some damaged before a restart. Drawn from a stream of their own as
//! well: a seed whose checkpoints are off runs as it did before they existed.
//!
//! Retention (the groups' in-memory log bound, `GroupConfig::retention_instances_max`
//! and `retention_size_max`): about a third of the seeds keep it unbounded; the others
//! bound it tightly (1 to 64 instances, a few bytes to 256 KiB, or both), so that
//! lagging replicas are caught up from WAL reads, prepares from below a floor are met,
//! and restarts restore a bounded log. Drawn from a stream of its own too.
//!
//! Checkpoint transfer: about 2 seeds in 3 of those that checkpoint make their WAL
//! reads answer `Truncated` below the reading group's durable checkpoint (the
//! observable effect of WAL truncation below checkpoints), so that peers behind are
//! sent checkpoints and install them. Drawn from a stream of its own.
//!
//! Units: every duration is nanoseconds of true (simulated) time, suffix `_ns`; `_size`
//! is bytes; `_ppm` is parts per million.

use super::clock::{draw_drifts, draw_large_drift};
use super::profile::Profile;
use crate::paxos::LeaderPlacement;
use crate::prng::Prng;
use crate::runtime::{CheckpointPolicy, TruncationPolicy};
use std::fmt;

mod display;

/// A class of faults a seed may turn off entirely (swarm testing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultClass {
    /// Messages lost in the network.
    Loss,
    /// Messages delivered twice.
    Duplication,
    /// Per-message delay jitter (with it off, every link delivers in FIFO order).
    Reorder,
    /// Network partitions.
    Partition,
    /// Node crashes and restarts.
    Crash,
    /// Torn writes: a write in flight at a crash leaves part of its sectors.
    TornWrite,
    /// Bit flips in written sectors.
    BitFlip,
    /// A restart finds an empty data directory.
    DiskLoss,
    /// Clock drift (with it off, every clock runs at true rate; the bound stays told).
    ClockDrift,
    /// Forged peer messages: the network also delivers messages of random kinds,
    /// claiming a peer as sender, with a ballot or an instance out of bounds.
    Forgery,
}

impl FaultClass {
    /// Every class, in a fixed order (the order seeds draw them in).
    pub const ALL: [FaultClass; 10] = [
        FaultClass::Loss,
        FaultClass::Duplication,
        FaultClass::Reorder,
        FaultClass::Partition,
        FaultClass::Crash,
        FaultClass::TornWrite,
        FaultClass::BitFlip,
        FaultClass::DiskLoss,
        FaultClass::ClockDrift,
        FaultClass::Forgery,
    ];

    /// A short name for summaries and logs.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            FaultClass::Loss => "loss",
            FaultClass::Duplication => "dup",
            FaultClass::Reorder => "reorder",
            FaultClass::Partition => "partition",
            FaultClass::Crash => "crash",
            FaultClass::TornWrite => "torn",
            FaultClass::BitFlip => "bitflip",
            FaultClass::DiskLoss => "diskloss",
            FaultClass::ClockDrift => "drift",
            FaultClass::Forgery => "forge",
        }
    }
}

impl fmt::Display for FaultClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything a simulation run needs to know, drawn from one seed.
///
/// A plain struct: a scenario may build one by hand or adjust fields after
/// [`SimOptions::from_seed`] (then call [`SimOptions::invariants`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimOptions {
    /// The seed everything here was drawn from; the driver seeds its own PRNG from it.
    pub seed: u64,

    // ---- Cluster shape and protocol limits ----
    /// Nodes in the cluster: 3 or 5 (2 to 9 in the `members` profile, spares included).
    pub node_count: usize,
    /// The initial voters of every group: nodes `1..=voter_count` (`node_count` unless
    /// a profile adds spare nodes, which start as non-voters and may be added).
    pub voter_count: usize,
    /// Mean true time between two membership changes issued by the clients during the
    /// safety phase (`None`: membership never changes; `profile`, `members`).
    pub membership_change_interval_ns_mean: Option<u64>,
    /// Shards (cores) per node: 1 to 3.
    pub shards_per_node: usize,
    /// Paxos groups: 1 to 8.
    pub group_count: usize,
    /// Instances a leader keeps in flight beyond its chosen watermark (W): 1 to 32.
    pub window_instances_max: u64,
    /// Values coalesced into one instance by batch propose, at most.
    pub batch_values_max: usize,
    /// Bytes coalesced into one instance by batch propose, at most (a single larger
    /// value goes alone).
    pub batch_size_max: usize,

    /// Large-value mode (see the module doc): `Some(slack)` sets every group's
    /// `message_size_max` to `message_size_min() + slack`; `None` keeps the default.
    pub message_size_slack: Option<usize>,
    /// Whether the large-value mode was forced on for this run rather than drawn.
    pub large_values_forced: bool,

    // ---- Workload ----
    /// Smallest ordinary value.
    pub value_size_min: usize,
    /// Largest ordinary value (at most 8 KiB).
    pub value_size_max: usize,
    /// Chance per proposal that the value is large instead (0 = never).
    pub large_value_ppm: u32,
    /// Largest large value; equals `value_size_max` when large values are off.
    pub large_value_size_max: usize,
    /// Shortest gap between two client proposals to one group.
    pub proposal_interval_ns_min: u64,
    /// Longest gap between two client proposals to one group.
    pub proposal_interval_ns_max: u64,
    /// Proposals a client keeps outstanding per group before it waits.
    pub proposals_in_flight_max: usize,

    // ---- Network ----
    /// Shortest one-way delay.
    pub network_delay_ns_min: u64,
    /// Longest one-way delay (before jitter). Equal to the minimum when reordering is
    /// off, so every link is FIFO like a TCP connection.
    pub network_delay_ns_max: u64,
    /// Chance a message is lost.
    pub network_loss_ppm: u32,
    /// Chance a message is delivered twice (independent delays).
    pub network_duplicate_ppm: u32,
    /// Chance a message gets extra jitter on top of its delay.
    pub network_reorder_ppm: u32,
    /// Largest extra jitter.
    pub network_reorder_jitter_ns_max: u64,
    /// Messages in flight per directed link before new ones are dropped.
    pub network_link_in_flight_max: usize,
    /// Mean true time between partitions during the safety phase (`None` = never).
    pub partition_interval_ns_mean: Option<u64>,
    /// Shortest partition.
    pub partition_duration_ns_min: u64,
    /// Longest partition.
    pub partition_duration_ns_max: u64,
    /// Chance, per partition, that it is partial instead: one link cut both ways, one
    /// way only, or flapping (cut and mended in turns), so that every node still
    /// reaches every other through a third (`cluster::faults`). 0 when partitions are
    /// off. Drawn from a stream of its own (`partition_partial_ppm`), so adding it left
    /// every other draw of a seed as it was.
    pub partition_partial_ppm: u32,
    /// Chance, per message sent, that the network also delivers a forged message: a
    /// random kind with a ballot or an instance out of bounds, claiming a peer as its
    /// sender (an attacker on the network without the peers' credentials).
    pub network_forge_ppm: u32,
    /// Chance, per `CatchUpRaw` message sent, that the network flips one byte of its
    /// records in flight (a corrupted catch-up run, which the receiver must refuse
    /// whole and ask again for). Drawn from a stream of its own, so adding it left
    /// every other draw of a seed as it was.
    pub network_raw_flip_ppm: u32,

    // ---- Processes ----
    /// Mean true time between crashes during the safety phase (`None` = never).
    pub crash_interval_ns_mean: Option<u64>,
    /// Shortest time a crashed node stays down.
    pub restart_delay_ns_min: u64,
    /// Longest time a crashed node stays down.
    pub restart_delay_ns_max: u64,

    // ---- Disk ----
    /// Shortest write latency.
    pub disk_write_latency_ns_min: u64,
    /// Longest write latency.
    pub disk_write_latency_ns_max: u64,
    /// Shortest fdatasync latency.
    pub disk_sync_latency_ns_min: u64,
    /// Longest fdatasync latency.
    pub disk_sync_latency_ns_max: u64,
    /// At a crash, the chance a write in flight lands whole when it does not tear, and
    /// each of its sectors when it tears (`SimDisk::crash`).
    pub disk_unsynced_keep_ppm: u32,
    /// At a crash, the chance a write in flight is torn (part of its sectors land);
    /// half of it is the chance a crash waits for the next write and strikes while it
    /// is in flight.
    pub disk_torn_write_ppm: u32,
    /// Chance a written sector has one bit flipped on the durable image.
    pub disk_bit_flip_ppm: u32,
    /// Chance a crash also loses the node's whole data directory.
    pub disk_loss_ppm: u32,

    // ---- Clocks ----
    /// The drift bound the protocol is told (lease arithmetic); every clock honours it.
    pub clock_drift_bound_ppm: u32,
    /// Each node's clock drift, one entry per node, within `±clock_drift_bound_ppm`.
    pub clock_drift_ppm: Vec<i32>,

    // ---- Backpressure ----
    /// A quarter of the seeds (their own stream: the seed's other draws stay where
    /// they were) give each shard the WAL room of one buffer
    /// (`ShardConfig::wal_pending_size_max`, 4 otherwise) and room for 64 messages
    /// held for durability (`held_count_max`, 100,000 otherwise), and stall 2 % of its
    /// writes by 50-400 ms: acknowledgements and records pile up, and peer messages
    /// and catch-up chunks are refused for want of room (`Input::CatchUpRefused`),
    /// which the other seeds never see (0 refusals in 40 seeds without it).
    pub backpressure: bool,
    /// `GroupCommitConfig::writes_in_flight_max` of every shard: 1, 2 or 3, a third of
    /// the seeds each, drawn from its own stream (`seed ^ const`), so the seeds of
    /// `tests/seeds.txt` that draw 1 keep their runs. With more than one, completions
    /// come back in the order the drawn disk latencies give, often out of order.
    pub writes_in_flight_max: usize,
    /// `GroupConfig::leader_placement` of every replica: `Balanced` on seven seeds in
    /// eight (their own stream), so placement transfers and probes run beside the
    /// workload's transfers and every fault; `Off` on the rest.
    pub leader_placement: LeaderPlacement,

    // ---- Phases ----
    /// Length of the safety phase (faults on, every checker after every step).
    pub safety_phase_ns: u64,
    /// Length of the liveness phase: the bound within which the healed cluster must
    /// converge.
    pub liveness_phase_ns: u64,

    /// Fault classes this seed turned off (swarm testing), in [`FaultClass::ALL`] order.
    pub faults_off: Vec<FaultClass>,

    // ---- Checkpoints ----
    /// When the groups take local checkpoints (`CheckpointPolicy::OFF`: never).
    pub checkpoint: CheckpointPolicy,
    /// Chance a checkpoint save fails (the shard retries by its policy).
    pub checkpoint_failure_ppm: u32,
    /// At a restart, the chance per group that its newest checkpoint file has one bit
    /// flipped (the restart must fall back to the previous one or the WAL).
    pub checkpoint_damage_ppm: u32,
    /// WAL reads answer `WalReadOutcome::Truncated` below the group's durable
    /// checkpoint on the reading node, as if the WAL were truncated there: catch-up
    /// from below it goes by checkpoint transfer.
    pub transfer_truncated_reads: bool,
    /// When the shards truncate their WAL below the durable checkpoints: on, every
    /// `TRUNCATION_INTERVAL_NS` keeping `TRUNCATION_CATCH_UP_INSTANCES` below each
    /// checkpoint, in every seed with checkpoints (no draw: the PRNG streams are
    /// unchanged). A damaged newest checkpoint over a truncated WAL falls back below
    /// the watermark and re-learns from peers (`paxos::checkpoint`); a replica behind
    /// every peer's watermark (a wiped one rejoining, one that lagged past the tail) is
    /// sent a peer's checkpoint (`paxos::transfer`).
    pub truncation: TruncationPolicy,

    // ---- Memory ----
    /// `GroupConfig::retention_instances_max` of every group (`u64::MAX`: unbounded).
    pub retention_instances_max: u64,
    /// `GroupConfig::retention_size_max` of every group (`usize::MAX`: unbounded).
    pub retention_size_max: usize,

    // ---- Reads ----
    /// Mean time between two linearizable reads issued by the clients (`None`: no
    /// reads). Not drawn from the seed: every seed gets [`READ_INTERVAL_NS_MEAN`], and
    /// the reads draw from their own PRNG stream, so that turning them on leaves every
    /// other draw of the run where it was.
    pub read_interval_ns_mean: Option<u64>,

    // ---- Profile ----
    /// The family of seeds these options were drawn for (`profile`): the default
    /// draws leave it at `Profile::Default`; a biased profile marks what it changed.
    pub profile: Profile,
}

/// The default mean time between two reads of the simulated clients.
pub const READ_INTERVAL_NS_MEAN: u64 = 2 * MS;
/// How often a simulated shard may truncate its WAL (`SimOptions::truncation`).
pub const TRUNCATION_INTERVAL_NS: u64 = 100 * MS;
/// Instances a simulated shard keeps below each durable checkpoint
/// (`TruncationPolicy::catch_up_instances`; see `SimOptions::truncation`).
pub const TRUNCATION_CATCH_UP_INSTANCES: u64 = 200;

const KIB: usize = 1024;
const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;
const PPM: u32 = 1_000_000;

/// Largest ordinary value size a seed may pick.
pub const VALUE_SIZE_MAX: usize = 8 * KIB;
pub use super::clock::{CLOCK_DRIFT_BOUND_PPM_LARGE_MAX, CLOCK_DRIFT_BOUND_PPM_MAX};

impl SimOptions {
    /// The options of seed `seed`. Deterministic: the same seed gives the same options
    /// on every platform and dependency version (only the in-house PRNG is used).
    #[must_use]
    pub fn from_seed(seed: u64) -> SimOptions {
        SimOptions::draw(seed, false)
    }

    /// The options of seed `seed` with the large-value mode on whatever the seed drew:
    /// the same options `from_seed` gives a seed that drew the mode, otherwise the
    /// seed's options with the mode's fields as it would have drawn them.
    #[must_use]
    pub fn from_seed_with_large_values(seed: u64) -> SimOptions {
        SimOptions::draw(seed, true)
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one PRNG draw per line in a fixed order: that order is what a seed means, \
                  and one place keeps it reviewable"
    )]
    fn draw(seed: u64, force_large_values: bool) -> SimOptions {
        // A separate stream from the driver's (which is seeded with `seed` itself), so
        // adding a field here does not shift the run's own random sequence.
        let mut prng = Prng::new(seed ^ 0x5157_4f50_5449_4f4e);
        let p = &mut prng;

        // Swarm: about 1 in 32 seeds is calm; otherwise each class is off with
        // probability 1/3.
        let calm = p.below(32) == 0;
        // Forgery is drawn last (below), so that every seed keeps the options it had
        // before that class existed.
        let mut faults_off: Vec<FaultClass> = FaultClass::ALL
            .iter()
            .copied()
            .filter(|class| *class != FaultClass::Forgery)
            .filter(|_| {
                let off = p.below(3) == 0;
                calm || off
            })
            .collect();

        let node_count = if p.coin() { 3 } else { 5 };
        let shards_per_node = p.range(1, 3) as usize;
        let group_count = p.range(1, 8) as usize;
        let window_instances_max = p.range(1, 32);

        let value_size_max = (1usize << p.range(0, 13)).min(VALUE_SIZE_MAX);
        let value_size_min = p.range(1, value_size_max as u64) as usize;
        let (large_value_ppm, large_value_size_max) = if p.below(4) == 0 {
            (
                p.range(1_000, 50_000) as u32,
                p.range(64 * KIB as u64, 1024 * KIB as u64) as usize,
            )
        } else {
            (0, value_size_max)
        };
        let batch_values_max = if p.below(4) == 0 {
            1
        } else {
            p.range(2, 64) as usize
        };
        let batch_size_max = p.range(value_size_max.max(4 * KIB) as u64, 256 * KIB as u64) as usize;
        let proposal_interval_ns_min = p.range(10 * US, 2 * MS);
        let proposal_interval_ns_max = p.range(proposal_interval_ns_min, 20 * MS);
        let proposals_in_flight_max = p.range(1, 256) as usize;

        let network_delay_ns_min = p.range(100 * US, 2 * MS);
        let delay_max_drawn = p.range(network_delay_ns_min, 20 * MS);
        let loss = skewed_ppm(p, 200_000);
        let duplicate = skewed_ppm(p, 200_000);
        let reorder = skewed_ppm(p, 500_000);
        let network_reorder_jitter_ns_max = p.range(MS, 50 * MS);
        let network_link_in_flight_max = p.range(64, 4096) as usize;
        let partition_interval = p.range(100 * MS, 5 * S);
        let partition_duration_ns_min = p.range(10 * MS, 500 * MS);
        let partition_duration_ns_max = p.range(partition_duration_ns_min, 2 * S);

        let crash_interval = p.range(200 * MS, 10 * S);
        let restart_delay_ns_min = p.range(MS, 100 * MS);
        let restart_delay_ns_max = p.range(restart_delay_ns_min, S);

        let disk_write_latency_ns_min = p.range(10 * US, 2 * MS);
        let disk_write_latency_ns_max = p.range(disk_write_latency_ns_min, 10 * MS);
        let disk_sync_latency_ns_min = p.range(10 * US, 2 * MS);
        let disk_sync_latency_ns_max = p.range(disk_sync_latency_ns_min, 20 * MS);
        let disk_unsynced_keep_ppm = p.range(0, u64::from(PPM)) as u32;
        // When on, most crashes that find a write in flight tear it (the same draws as
        // before, read from the top: 50 % to 100 %).
        let torn = PPM - skewed_ppm(p, 500_000);
        let bit_flip = skewed_ppm(p, 2_000);
        let disk_loss = skewed_ppm(p, 100_000);

        let clock_drift_bound_ppm = p.range(1, u64::from(CLOCK_DRIFT_BOUND_PPM_MAX)) as u32;
        let clock_drift_ppm = draw_drifts(p, clock_drift_bound_ppm, node_count);
        let (clock_drift_bound_ppm, clock_drift_ppm) =
            draw_large_drift(seed, node_count).unwrap_or((clock_drift_bound_ppm, clock_drift_ppm));

        let safety_phase_ns = p.range(S, 20 * S);
        let liveness_phase_ns = p.range(10 * S, 30 * S);

        let forge_off = p.below(3) == 0;
        let forge = skewed_ppm(p, 20_000);
        if calm || forge_off {
            faults_off.push(FaultClass::Forgery);
        }
        let on = |class: FaultClass| !faults_off.contains(&class);

        let checkpoints = Checkpoints::draw(seed);
        let large = LargeValues::draw(seed, value_size_max);
        let large_on = large.drawn_on || force_large_values;
        let (batch_size_max, large_value_ppm, large_value_size_max, message_size_slack) =
            if large_on {
                (
                    large.batch_size_max,
                    large.value_ppm,
                    large.batch_size_max,
                    Some(large.slack),
                )
            } else {
                (batch_size_max, large_value_ppm, large_value_size_max, None)
            };

        let retention = Retention::draw(seed);
        // Its own stream: seeds whose checkpoints are off draw nothing new.
        let transfer_truncated_reads =
            checkpoints.policy.is_on() && Prng::new(seed ^ 0x5452_414e_5346_4552).below(3) != 0;

        let mut options = SimOptions {
            seed,
            message_size_slack,
            large_values_forced: large_on && !large.drawn_on,
            node_count,
            voter_count: node_count,
            membership_change_interval_ns_mean: None,
            shards_per_node,
            group_count,
            window_instances_max,
            batch_values_max,
            batch_size_max,
            value_size_min,
            value_size_max,
            large_value_ppm,
            large_value_size_max,
            proposal_interval_ns_min,
            proposal_interval_ns_max,
            proposals_in_flight_max,
            network_delay_ns_min,
            network_delay_ns_max: if on(FaultClass::Reorder) {
                delay_max_drawn
            } else {
                network_delay_ns_min
            },
            network_loss_ppm: if on(FaultClass::Loss) { loss } else { 0 },
            network_duplicate_ppm: if on(FaultClass::Duplication) {
                duplicate
            } else {
                0
            },
            network_reorder_ppm: if on(FaultClass::Reorder) { reorder } else { 0 },
            network_reorder_jitter_ns_max,
            network_link_in_flight_max,
            partition_interval_ns_mean: on(FaultClass::Partition).then_some(partition_interval),
            partition_duration_ns_min,
            partition_duration_ns_max,
            network_forge_ppm: if on(FaultClass::Forgery) { forge } else { 0 },
            network_raw_flip_ppm: raw_flip_ppm(seed, calm),
            partition_partial_ppm: if on(FaultClass::Partition) {
                partition_partial_ppm(seed)
            } else {
                0
            },
            crash_interval_ns_mean: on(FaultClass::Crash).then_some(crash_interval),
            restart_delay_ns_min,
            restart_delay_ns_max,
            disk_write_latency_ns_min,
            disk_write_latency_ns_max,
            disk_sync_latency_ns_min,
            disk_sync_latency_ns_max,
            disk_unsynced_keep_ppm,
            disk_torn_write_ppm: if on(FaultClass::TornWrite) { torn } else { 0 },
            disk_bit_flip_ppm: if on(FaultClass::BitFlip) { bit_flip } else { 0 },
            disk_loss_ppm: if on(FaultClass::DiskLoss) {
                disk_loss
            } else {
                0
            },
            clock_drift_bound_ppm,
            clock_drift_ppm: if on(FaultClass::ClockDrift) {
                clock_drift_ppm
            } else {
                vec![0; node_count]
            },
            backpressure: Prng::new(seed ^ 0x5741_4c52_4f4f_4d21).below(4) == 0,
            writes_in_flight_max: 1 + Prng::new(seed ^ 0x5049_5045_4c49_4e45).below(3) as usize,
            leader_placement: if Prng::new(seed ^ 0x504c_4143_454d_454e).below(8) == 0 {
                LeaderPlacement::Off
            } else {
                LeaderPlacement::Balanced
            },
            safety_phase_ns,
            liveness_phase_ns,
            faults_off,
            checkpoint: checkpoints.policy,
            checkpoint_failure_ppm: checkpoints.failure_ppm,
            checkpoint_damage_ppm: checkpoints.damage_ppm,
            transfer_truncated_reads,
            truncation: TruncationPolicy::OFF,
            read_interval_ns_mean: Some(READ_INTERVAL_NS_MEAN),
            retention_instances_max: retention.instances_max,
            retention_size_max: retention.size_max,
            profile: Profile::Default,
        };
        if options.checkpoint.is_on() {
            options.truncation = TruncationPolicy {
                enabled: true,
                interval_ns: TRUNCATION_INTERVAL_NS,
                catch_up_instances: TRUNCATION_CATCH_UP_INSTANCES,
            };
        }
        options.invariants();
        options
    }

    /// Whether the large-value mode is on (drawn or forced).
    #[must_use]
    pub fn large_values(&self) -> bool {
        self.message_size_slack.is_some()
    }

    /// Whether the groups' in-memory log is bounded (by count or by bytes).
    #[must_use]
    pub fn retention_bounded(&self) -> bool {
        self.retention_instances_max != u64::MAX || self.retention_size_max != usize::MAX
    }

    /// Whether fault class `class` is on for this seed.
    #[must_use]
    pub fn fault_on(&self, class: FaultClass) -> bool {
        !self.faults_off.contains(&class)
    }

    /// Asserts the invariants listed in the module doc (programmer error if broken: a
    /// hand-built or hand-edited `SimOptions` that makes no sense).
    pub fn invariants(&self) {
        self.invariants_sizes();
        self.invariants_faults();
    }

    /// The counts, sizes and (min, max) ranges (part of `invariants`).
    fn invariants_sizes(&self) {
        assert!(
            self.read_interval_ns_mean.is_none_or(|mean| mean >= 2),
            "read_interval_ns_mean {:?} must be at least 2 ns",
            self.read_interval_ns_mean
        );
        assert!(
            self.retention_instances_max >= 1,
            "retention_instances_max is 0"
        );
        assert!(
            (2..=9).contains(&self.node_count),
            "node_count {} is not within 2..=9",
            self.node_count
        );
        assert!(
            (2..=7).contains(&self.voter_count) && self.voter_count <= self.node_count,
            "voter_count {} is not within 2..=7 and at most node_count {}",
            self.voter_count,
            self.node_count
        );
        if self.voter_count == self.node_count && self.membership_change_interval_ns_mean.is_none()
        {
            assert!(
                self.node_count == 3 || self.node_count == 5 || self.profile == Profile::Members,
                "node_count {} without spare nodes is not 3 or 5",
                self.node_count
            );
        }
        assert!(
            self.membership_change_interval_ns_mean
                .is_none_or(|mean| mean > 0),
            "membership_change_interval_ns_mean is 0"
        );
        assert!(self.shards_per_node >= 1, "shards_per_node is 0");
        assert!(self.group_count >= 1, "group_count is 0");
        assert!(self.window_instances_max >= 1, "window_instances_max is 0");
        assert!(self.batch_values_max >= 1, "batch_values_max is 0");
        assert!(self.batch_size_max >= 1, "batch_size_max is 0");
        assert!(
            self.proposals_in_flight_max >= 1,
            "proposals_in_flight_max is 0"
        );
        assert!(
            self.network_link_in_flight_max >= 1,
            "network_link_in_flight_max is 0"
        );
        let ranges: [(&str, u64, u64); 8] = [
            (
                "value_size",
                self.value_size_min as u64,
                self.value_size_max as u64,
            ),
            (
                "value_size..large_value_size",
                self.value_size_max as u64,
                self.large_value_size_max as u64,
            ),
            (
                "proposal_interval_ns",
                self.proposal_interval_ns_min,
                self.proposal_interval_ns_max,
            ),
            (
                "network_delay_ns",
                self.network_delay_ns_min,
                self.network_delay_ns_max,
            ),
            (
                "partition_duration_ns",
                self.partition_duration_ns_min,
                self.partition_duration_ns_max,
            ),
            (
                "restart_delay_ns",
                self.restart_delay_ns_min,
                self.restart_delay_ns_max,
            ),
            (
                "disk_write_latency_ns",
                self.disk_write_latency_ns_min,
                self.disk_write_latency_ns_max,
            ),
            (
                "disk_sync_latency_ns",
                self.disk_sync_latency_ns_min,
                self.disk_sync_latency_ns_max,
            ),
        ];
        for (name, min, max) in ranges {
            assert!(min <= max, "{name}: min {min} > max {max}");
        }
        assert!(self.value_size_min >= 1, "value_size_min is 0");
        assert!(self.safety_phase_ns >= 1, "safety_phase_ns is 0");
        assert!(self.liveness_phase_ns >= 1, "liveness_phase_ns is 0");
    }

    /// The fault rates against the classes that are on, the large-value mode, and the
    /// clocks (part of `invariants`).
    fn invariants_faults(&self) {
        let rates: [(FaultClass, u32); 8] = [
            (FaultClass::Loss, self.network_loss_ppm),
            (FaultClass::Duplication, self.network_duplicate_ppm),
            (FaultClass::Reorder, self.network_reorder_ppm),
            (FaultClass::TornWrite, self.disk_torn_write_ppm),
            (FaultClass::BitFlip, self.disk_bit_flip_ppm),
            (FaultClass::DiskLoss, self.disk_loss_ppm),
            (FaultClass::ClockDrift, self.drift_max_abs_ppm()),
            (FaultClass::Forgery, self.network_forge_ppm),
        ];
        for (class, ppm) in rates {
            assert!(ppm <= PPM, "{class}: {ppm} ppm > 1_000_000");
            if !self.fault_on(class) {
                assert_eq!(ppm, 0, "{class} is off but its rate is {ppm} ppm");
            } else if class != FaultClass::ClockDrift {
                assert!(ppm > 0, "{class} is on but its rate is 0");
            }
        }
        assert!(self.large_value_ppm <= PPM, "large_value_ppm > 1_000_000");
        if self.large_values() {
            assert!(
                self.large_value_ppm > 0,
                "large-value mode is on but large_value_ppm is 0"
            );
        } else {
            assert!(!self.large_values_forced, "large-value mode forced but off");
        }
        assert!(
            self.partition_partial_ppm <= PPM,
            "partition_partial_ppm > 1_000_000"
        );
        if !self.fault_on(FaultClass::Partition) {
            assert_eq!(
                self.partition_partial_ppm, 0,
                "partitions are off but some are partial"
            );
        }
        assert!(
            self.disk_unsynced_keep_ppm <= PPM,
            "disk_unsynced_keep_ppm > 1e6"
        );
        assert!(
            self.checkpoint.in_flight_count_max >= 1,
            "checkpoint in_flight_count_max is 0"
        );
        assert!(
            self.checkpoint_failure_ppm <= PPM && self.checkpoint_damage_ppm <= PPM,
            "checkpoint rates above 1_000_000 ppm"
        );
        if !self.checkpoint.is_on() {
            assert!(
                self.checkpoint_failure_ppm == 0 && self.checkpoint_damage_ppm == 0,
                "checkpoints are off but their fault rates are not"
            );
        }
        if !self.fault_on(FaultClass::Reorder) {
            assert_eq!(
                self.network_delay_ns_min, self.network_delay_ns_max,
                "reorder is off but delays vary"
            );
        }
        for (class, interval) in [
            (FaultClass::Partition, self.partition_interval_ns_mean),
            (FaultClass::Crash, self.crash_interval_ns_mean),
        ] {
            match interval {
                Some(mean) => {
                    assert!(self.fault_on(class), "{class} is off but has an interval");
                    assert!(mean > 0, "{class}: mean interval 0");
                }
                None => assert!(!self.fault_on(class), "{class} is on but has no interval"),
            }
        }
        assert!(
            self.clock_drift_bound_ppm < PPM,
            "clock_drift_bound_ppm {} must be below 1_000_000",
            self.clock_drift_bound_ppm
        );
        assert_eq!(
            self.clock_drift_ppm.len(),
            self.node_count,
            "clock_drift_ppm needs one entry per node"
        );
        assert!(
            self.drift_max_abs_ppm() <= self.clock_drift_bound_ppm,
            "a clock drifts {} ppm, beyond the bound {}",
            self.drift_max_abs_ppm(),
            self.clock_drift_bound_ppm
        );
    }

    fn drift_max_abs_ppm(&self) -> u32 {
        self.clock_drift_ppm
            .iter()
            .map(|d| d.unsigned_abs())
            .max()
            .unwrap_or(0)
    }
}

/// The large-value mode of one seed, drawn from its own PRNG stream (see the module
/// doc), whether or not the seed turns it on.
struct LargeValues {
    /// Whether the seed turns the mode on (1 in 8).
    drawn_on: bool,
    /// Bytes per batch: from the larger of 4 KiB and the ordinary `value_size_max`, to
    /// 64 KiB. Large values go up to a whole batch.
    batch_size_max: usize,
    /// Chance a value is large: 50 % to 90 %.
    value_ppm: u32,
    /// `message_size_max - message_size_min()`: 0 for a quarter of the seeds (the
    /// tightest budget), else up to half a batch.
    slack: usize,
}

impl LargeValues {
    fn draw(seed: u64, value_size_max: usize) -> LargeValues {
        let mut prng = Prng::new(seed ^ 0x4c41_5247_4556_414c);
        let p = &mut prng;
        let drawn_on = p.below(8) == 0;
        let batch_size_max = p.range(value_size_max.max(4 * KIB) as u64, 64 * KIB as u64) as usize;
        let value_ppm = p.range(500_000, 900_000) as u32;
        let slack = if p.below(4) == 0 {
            0
        } else {
            p.range(0, batch_size_max as u64 / 2) as usize
        };
        LargeValues {
            drawn_on,
            batch_size_max,
            value_ppm,
            slack,
        }
    }
}

/// The checkpoint options of one seed, drawn from their own PRNG stream (see the
/// module doc).
struct Checkpoints {
    policy: CheckpointPolicy,
    failure_ppm: u32,
    damage_ppm: u32,
}

impl Checkpoints {
    fn draw(seed: u64) -> Checkpoints {
        let mut prng = Prng::new(seed ^ 0x4348_4543_4b50_4e54);
        let p = &mut prng;
        let on = p.below(4) != 0;
        // Each trigger on with probability 2/3; at least one when checkpoints are on.
        let mut triggers = [p.below(3) != 0, p.below(3) != 0, p.below(3) != 0];
        if !triggers.iter().any(|t| *t) {
            triggers[p.index(3)] = true;
        }
        let instance_count = p.range(1, 300);
        let applied_size = p.range(KIB as u64, 512 * KIB as u64);
        let interval_ns = p.range(20 * MS, 3 * S);
        let retry_ns = p.range(MS, S);
        let in_flight_count_max = p.range(1, 3) as usize;
        let failure_ppm = if p.coin() { 0 } else { skewed_ppm(p, 300_000) };
        let damage_ppm = if p.coin() { 0 } else { skewed_ppm(p, 500_000) };
        if !on {
            return Checkpoints {
                policy: CheckpointPolicy::OFF,
                failure_ppm: 0,
                damage_ppm: 0,
            };
        }
        Checkpoints {
            policy: CheckpointPolicy {
                instance_count: if triggers[0] { instance_count } else { 0 },
                applied_size: if triggers[1] { applied_size } else { 0 },
                interval_ns: if triggers[2] { interval_ns } else { 0 },
                retry_ns,
                in_flight_count_max,
            },
            failure_ppm,
            damage_ppm,
        }
    }
}

/// The retention of one seed, drawn from its own PRNG stream (see the module doc).
struct Retention {
    instances_max: u64,
    size_max: usize,
}

impl Retention {
    fn draw(seed: u64) -> Retention {
        let mut prng = Prng::new(seed ^ 0x5245_5445_4e54_494f);
        let p = &mut prng;
        let unbounded = p.below(3) == 0;
        let by = p.below(3);
        let instances_max = p.range(1, 64);
        // Skewed towards small: most bounds hold a few entries at most.
        let size_top = 1 << p.range(0, 18);
        let size_max = p.range(0, size_top) as usize;
        if unbounded {
            return Retention {
                instances_max: u64::MAX,
                size_max: usize::MAX,
            };
        }
        Retention {
            instances_max: if by == 1 { u64::MAX } else { instances_max },
            size_max: if by == 0 { usize::MAX } else { size_max },
        }
    }
}

/// A rate in `[1, max_ppm]`, skewed towards small values: the upper end is divided by
/// 2^k for k drawn uniformly in 0..=9, so most seeds are mild and a few are harsh.
/// `network_raw_flip_ppm` of `seed`: off in calm runs and one run in three, else up
/// to 30 % of catch-up runs, skewed low.
fn raw_flip_ppm(seed: u64, calm: bool) -> u32 {
    let mut p = Prng::new(seed ^ 0x5241_5746_4c49_5021);
    if calm || p.below(3) == 0 {
        return 0;
    }
    skewed_ppm(&mut p, 300_000)
}

/// `partition_partial_ppm` of `seed` (partitions on): none in one run in four, every
/// partition partial in one in four, else between 20 % and 80 % of them.
fn partition_partial_ppm(seed: u64) -> u32 {
    let mut p = Prng::new(seed ^ 0x5041_5254_4941_4c21);
    match p.below(4) {
        0 => 0,
        1 => PPM,
        _ => p.range(200_000, 800_000) as u32,
    }
}

fn skewed_ppm(prng: &mut Prng, max_ppm: u32) -> u32 {
    let top = (u64::from(max_ppm) >> prng.range(0, 9)).max(1);
    prng.range(1, top) as u32
}

#[cfg(test)]
mod tests {
    use super::{
        FaultClass, SimOptions, CLOCK_DRIFT_BOUND_PPM_LARGE_MAX, CLOCK_DRIFT_BOUND_PPM_MAX,
        VALUE_SIZE_MAX,
    };

    // Goal: one seed reproduces the same options; different seeds differ.
    // Method: build twice from the same seeds and compare; compare neighbours.
    #[test]
    fn same_seed_same_options() {
        for seed in [0, 1, 42, u64::MAX] {
            assert_eq!(SimOptions::from_seed(seed), SimOptions::from_seed(seed));
        }
        let distinct: std::collections::BTreeSet<String> = (0..64)
            .map(|seed| {
                let mut o = SimOptions::from_seed(seed);
                o.seed = 0;
                o.to_string()
            })
            .collect();
        assert_eq!(distinct.len(), 64, "seeds should not collide");
    }

    // Goal: every seed's options satisfy the invariants and the brief's ranges.
    // Method: draw 5,000 seeds (from_seed asserts invariants) and check each range.
    #[test]
    fn ranges_hold_across_seeds() {
        let mut large_drift = 0;
        let mut drift_at_max = 0;
        let mut backpressure = 0;
        let mut pipelined = [0; 3];
        for seed in 0..5_000 {
            let o = SimOptions::from_seed(seed);
            large_drift += usize::from(o.clock_drift_bound_ppm > CLOCK_DRIFT_BOUND_PPM_MAX);
            backpressure += usize::from(o.backpressure);
            pipelined[o.writes_in_flight_max - 1] += 1;
            drift_at_max += usize::from(
                o.clock_drift_ppm
                    .iter()
                    .any(|d| d.unsigned_abs() == CLOCK_DRIFT_BOUND_PPM_LARGE_MAX),
            );
            assert!(o.node_count == 3 || o.node_count == 5);
            assert!((1..=3).contains(&o.shards_per_node));
            assert!((1..=8).contains(&o.group_count));
            assert!((1..=32).contains(&o.window_instances_max));
            assert!(o.value_size_min >= 1 && o.value_size_max <= VALUE_SIZE_MAX);
            assert!(o.network_delay_ns_min >= 100_000 && o.network_delay_ns_max <= 20_000_000);
            assert!(o.network_loss_ppm <= 200_000 && o.network_duplicate_ppm <= 200_000);
            assert!(o.clock_drift_bound_ppm <= CLOCK_DRIFT_BOUND_PPM_LARGE_MAX);
            assert!(o
                .clock_drift_ppm
                .iter()
                .all(|d| d.unsigned_abs() <= o.clock_drift_bound_ppm));
            assert!(o.liveness_phase_ns >= 10_000_000_000);
        }
        // A quarter of the seeds tell a large bound; some clocks drift at the largest.
        assert!((1_000..1_500).contains(&large_drift), "{large_drift} large");
        assert!(
            (1_000..1_500).contains(&backpressure),
            "{backpressure} with backpressure"
        );
        assert!(
            pipelined.iter().all(|n| (1_500..1_850).contains(n)),
            "seeds per writes_in_flight_max 1, 2, 3: {pipelined:?}"
        );
        assert!(
            drift_at_max > 100,
            "{drift_at_max} clocks at the largest drift"
        );
    }

    // Goal: swarm variety: every fault class is off for some seeds and on for others,
    // and some seeds are fully calm.
    // Method: tally 2,000 seeds.
    #[test]
    fn swarm_turns_classes_off_and_on() {
        let seeds: Vec<SimOptions> = (0..2_000).map(SimOptions::from_seed).collect();
        for class in FaultClass::ALL {
            let off = seeds.iter().filter(|o| !o.fault_on(class)).count();
            assert!(
                off > 400 && off < 1_200,
                "{class} off in {off} of 2000 seeds"
            );
        }
        let calm = seeds
            .iter()
            .filter(|o| o.faults_off.len() == FaultClass::ALL.len())
            .count();
        assert!(calm > 20, "only {calm} calm seeds");
        let fifo = seeds
            .iter()
            .filter(|o| !o.fault_on(FaultClass::Reorder))
            .all(|o| o.network_delay_ns_min == o.network_delay_ns_max);
        assert!(fifo, "reorder off must mean constant delay");
        let large = seeds.iter().filter(|o| o.large_value_ppm > 0).count();
        assert!(large > 300, "large values in only {large} seeds");
        let five = seeds.iter().filter(|o| o.node_count == 5).count();
        assert!(five > 800 && five < 1_200, "5 nodes in {five} seeds");
    }

    // Goal: the large-value mode is on for about 1 seed in 8, forcing it gives a seed
    // that drew it the same options, and forcing it on a seed that did not changes
    // only the mode's fields (its own stream leaves every other draw in place).
    // Method: tally 2,000 seeds; compare from_seed and from_seed_with_large_values.
    #[test]
    fn large_value_mode_is_drawn_apart() {
        let mut on = 0;
        for seed in 0..2_000 {
            let drawn = SimOptions::from_seed(seed);
            let forced = SimOptions::from_seed_with_large_values(seed);
            assert!(forced.large_values());
            if drawn.large_values() {
                on += 1;
                assert_eq!(drawn, forced);
                assert!(drawn.to_string().contains(" message_size=min+"));
                continue;
            }
            assert!(forced.large_values_forced);
            assert!(forced.to_string().contains("(forced)"));
            assert!(forced.large_value_ppm >= 500_000);
            assert!(forced.large_value_size_max == forced.batch_size_max);
            let mut back = forced.clone();
            back.message_size_slack = None;
            back.large_values_forced = false;
            back.batch_size_max = drawn.batch_size_max;
            back.large_value_ppm = drawn.large_value_ppm;
            back.large_value_size_max = drawn.large_value_size_max;
            assert_eq!(back, drawn, "seed {seed}");
        }
        assert!(
            on > 180 && on < 320,
            "large-value mode on in {on} of 2000 seeds"
        );
    }

    // Goal: about a third of the seeds keep the in-memory log unbounded, the others
    // bound it by count (1..=64), by bytes, or both; the draw moves nothing else.
    // Method: tally 2,000 seeds; compare a bounded seed with its options unbounded.
    #[test]
    fn retention_is_drawn_apart() {
        let (mut off, mut count, mut size) = (0, 0, 0);
        for seed in 0..2_000 {
            let o = SimOptions::from_seed(seed);
            if !o.retention_bounded() {
                off += 1;
                assert!(o.to_string().contains(" retention=off"));
                continue;
            }
            if o.retention_instances_max != u64::MAX {
                count += 1;
                assert!((1..=64).contains(&o.retention_instances_max));
            }
            if o.retention_size_max != usize::MAX {
                size += 1;
                assert!(o.retention_size_max <= 1 << 18);
            }
        }
        assert!(off > 550 && off < 800, "unbounded in {off} of 2000 seeds");
        assert!(
            count > 700 && size > 700,
            "by count {count}, by size {size}"
        );
    }

    // Goal: Display is one line that names the seed and the classes that are off.
    // Method: render a few seeds and look for the markers.
    #[test]
    fn display_is_one_line_summary() {
        for seed in 0..50 {
            let o = SimOptions::from_seed(seed);
            let line = o.to_string();
            assert!(!line.contains('\n'), "{line}");
            assert!(line.starts_with(&format!("seed={seed:#x} ")), "{line}");
            for class in &o.faults_off {
                assert!(line.contains(class.name()), "{line} lacks {class}");
            }
            if o.crash_interval_ns_mean.is_none() {
                assert!(line.contains("crash=off"), "{line}");
            }
        }
    }

    // Goal: invariants catch a nonsensical hand-edited option set.
    // Method: turn loss off in the list but leave a loss rate; expect a panic.
    #[test]
    #[should_panic(expected = "loss is off but its rate")]
    fn invariants_catch_inconsistent_swarm() {
        let mut o = SimOptions::from_seed(7);
        if !o.faults_off.contains(&FaultClass::Loss) {
            o.faults_off.push(FaultClass::Loss);
        }
        o.network_loss_ppm = 10;
        o.invariants();
    }

    // Goal: checkpoints are on for about 3 seeds in 4, each trigger is off for some
    // seeds, and the summary line names the policy exactly when it is on.
    // Method: tally 2,000 seeds.
    #[test]
    fn checkpoints_are_drawn() {
        let mut on = 0;
        let mut triggers_off = [0; 3];
        for seed in 0..2_000 {
            let o = SimOptions::from_seed(seed);
            let c = o.checkpoint;
            assert_eq!(c.is_on(), o.to_string().contains(" checkpoint="));
            if c.is_on() {
                on += 1;
                for (count, value) in
                    triggers_off
                        .iter_mut()
                        .zip([c.instance_count, c.applied_size, c.interval_ns])
                {
                    *count += usize::from(value == 0);
                }
            }
        }
        assert!(
            on > 1_350 && on < 1_650,
            "checkpoints on in {on} of 2000 seeds"
        );
        assert!(triggers_off.iter().all(|n| *n > 200), "{triggers_off:?}");
    }
}
