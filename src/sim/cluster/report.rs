//! What a run returns: its report when every property held, its failure otherwise.

use super::Cluster;
use crate::paxos::{NodeId, Role};
use crate::runtime::ShardCounters;
use crate::sim::checkers::Violation;
use crate::sim::options::SimOptions;
use crate::sim::profile::Profile;

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
    /// Checkpoints saved (not part of `Debug`, for the same reason).
    pub checkpoints_saved: u64,
    /// Checkpoint saves that failed (drawn by the seed).
    pub checkpoints_failed: u64,
    /// Checkpoint files damaged before a restart.
    pub checkpoints_damaged: u64,
    /// Group starts restored from a checkpoint.
    pub checkpoint_restores: u64,
    /// Whether the seed bounded the groups' in-memory logs (not part of `Debug`).
    pub retention_bounded: bool,
    /// Catch-up reads served from the simulated WAL (not part of `Debug` either).
    pub wal_reads: u64,
    /// Checkpoints installed from peers (not part of `Debug`).
    pub checkpoints_installed: u64,
    /// The most slots any replica's in-memory log of a group held (not part of
    /// `Debug`).
    pub log_len_max: usize,
    /// What the log readers did (not part of `Debug`).
    pub log_reads: LogReadReport,
    /// WAL truncations carried out (not part of `Debug`).
    pub wal_truncations: u64,
    /// Records compaction carried forward (not part of `Debug`).
    pub wal_rewrites: u64,
    /// Catch-up reads answered `Truncated` (below a truncation watermark; not part of
    /// `Debug`).
    pub wal_reads_truncated: u64,
    /// Catch-up runs whose records the network flipped a byte of (not part of
    /// `Debug`).
    pub raw_runs_flipped: u64,
    /// Flipped runs delivered to a running shard and refused there (not part of
    /// `Debug`).
    pub raw_runs_refused: u64,
    /// WAL writes issued while another write of the shard was in flight
    /// (`Options::writes_in_flight_max` above 1; not part of `Debug`).
    pub writes_overlapped: u64,
    /// WAL writes that completed while an earlier one was still in flight, held by the
    /// contiguity rule (not part of `Debug`).
    pub completions_held: u64,
    /// Whether the seed drew backpressure (`Options::backpressure`; not part of
    /// `Debug`).
    pub backpressure: bool,
    /// Peer messages refused for want of room, on the shards running at the end (not
    /// part of `Debug`).
    pub refused_messages: u64,
    /// Catch-up chunks refused for want of WAL room and told to their groups, on the
    /// shards running at the end (a crash forgets its shard's count; not part of
    /// `Debug`).
    pub catch_up_refused: u64,
    /// Lease reports checked against the replicas' grants (not part of `Debug`).
    pub lease_grant_checks: u64,
    /// Leadership transfers the workload asked of a leader (not part of `Debug`).
    pub transfers_asked: u64,
    /// Handovers, check-quorum step downs, pre-votes, placement transfers and placement
    /// probes, summed over the groups of the shards running at the end (not part of
    /// `Debug`).
    pub leadership: [u64; 5],
    /// With placement on: the groups whose elected leader at the end is their
    /// preferred replica (`paxos::placement::preferred_leader` of its newest
    /// membership), and the groups with an elected leader at the end, on the shards
    /// running then (not part of `Debug`).
    pub placement_at_end: [u64; 2],
    /// The smallest true-time margin by which a quorum's grants outlasted a reported
    /// lease end (not part of `Debug`).
    pub lease_margin_min_ns: Option<u64>,
    /// What the recovery scans of every start decided, each checked against the
    /// simulator's ground truth (`checkers::recovery`; not part of `Debug`).
    pub recovery: crate::sim::checkers::RecoveryCounts,
    /// Messages, frames and bytes that crossed the real peer codec
    /// (`checkers::wire`; not part of `Debug`).
    pub wire: (u64, u64, u64),
    /// What the membership changes of the workload did (not part of `Debug`).
    pub membership: MembershipReport,
    /// What each partial partition cost (`checkers::partial`; not part of `Debug`).
    pub partial: Vec<crate::sim::checkers::PartialWindow>,
}

/// What the membership changes of one run did (`members`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipReport {
    /// Changes asked for (each to one node).
    pub proposed: u64,
    /// Changes asked for that differ from the node's newest membership by two voters.
    pub proposed_invalid: u64,
    /// Changes asked for while another was in flight at the same node.
    pub proposed_second: u64,
    /// Changes applied (acknowledged).
    pub applied: u64,
    /// Changes refused by a leader (`ProposeError::Rejected`: another pending, or not
    /// one voter).
    pub refused: u64,
    /// Changes answered `NotLeader`.
    pub not_leader: u64,
    /// Changes that failed otherwise (indeterminate, overloaded) or were aborted.
    pub failed: u64,
    /// Memberships chosen, over all groups (the chosen logs' `Config` entries).
    pub chosen: u64,
    /// Memberships chosen that removed the voter leading the group then.
    pub leader_removed: u64,
    /// The fewest and the most voters any chosen membership had.
    pub voters_min: usize,
    /// See `voters_min`.
    pub voters_max: usize,
    /// Leaders checked against the quorum of the membership in effect.
    pub leaders_checked: u64,
    /// Disks lost or bits flipped while some group's membership had changed
    /// (`members`: the retirement path).
    pub state_losses_changed: u64,
    /// Replicas that retired (`paxos::learner`, "Retirement"), per (node, group) and
    /// time: a replica that lost its disk again and retired again counts twice.
    pub retirements: u64,
    /// Adds of a retired node asked for, and how many were refused for it
    /// (`joining::RETIRED_REASON`).
    pub retired_adds_asked: u64,
    /// See `retired_adds_asked`.
    pub refused_retired: u64,
    /// Adds of a node retired when asked that were applied: its catch-up request
    /// from before its retirement reached the leader first (a voter that never votes;
    /// the workload removes it).
    pub retired_added: u64,
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

/// What the log readers of one run did (`NodeHandle::read_log` on random replicas).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogReadReport {
    /// Log reads issued.
    pub issued: u64,
    /// Answered with values (possibly none), each checked against the chosen log.
    pub served: u64,
    /// Values returned.
    pub values: u64,
    /// Answered `Truncated` (below a restored checkpoint).
    pub truncated: u64,
    /// Refused `Overloaded`.
    pub overloaded: u64,
    /// Served from the simulated WAL.
    pub wal: u64,
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
    /// The seed's profile (part of what replays it).
    pub profile: Profile,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} failed at step {} (t = {:.6}s): {}\n  options: {}\n  replay: SYNOD_SEED={}{} cargo test --release --test simulation",
            self.seed,
            self.step,
            self.virtual_ns as f64 / 1e9,
            self.violation,
            self.options,
            self.seed,
            if self.profile == Profile::Default {
                String::new()
            } else {
                format!(" SYNOD_PROFILE={}", self.profile)
            }
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
    let profile = options.profile;
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
        profile,
    })
}

impl Cluster {
    pub(super) fn report(&self) -> RunReport {
        let mut report = self.report.clone();
        report.steps = self.steps;
        report.virtual_ns = self.now;
        report.acknowledged = self.checkers.durability.acknowledged().len();
        report.forged_refused = self.checkers.bounds.forged_refused();
        report.log_len_max = self.checkers.retention.log_len_max();
        report.lease_grant_checks = self.checkers.lease.grant_checks();
        report.lease_margin_min_ns = self.checkers.lease.grant_margin_min_ns();
        report.retention_bounded = self.options.retention_bounded();
        report.backpressure = self.options.backpressure;
        report.recovery = self.checkers.recovery.counts();
        report.partial = self.checkers.partial.windows().to_vec();
        let wire = &self.checkers.wire;
        report.wire = (wire.messages(), wire.frames(), wire.bytes());
        let shards_sum = |counter: fn(&ShardCounters) -> u64| -> u64 {
            self.nodes
                .iter()
                .flat_map(|node| node.shards.iter())
                .filter_map(|shard| shard.shard.as_ref())
                .map(|core| counter(core.counters()))
                .sum()
        };
        report.refused_messages = shards_sum(|c| c.refused_messages);
        report.catch_up_refused = shards_sum(|c| c.catch_up_refused);
        report.chosen = self
            .groups
            .iter()
            .map(|g| self.checkers.liveness.target(*g).0 .0)
            .sum();
        report
    }

    pub(super) fn final_checks(&mut self) -> Result<(), Violation> {
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
        self.membership_totals();
        for node in &self.nodes {
            for slot in &node.shards {
                if let Some(core) = slot.shard.as_ref() {
                    for group in core.groups() {
                        if group.role() == Role::Leader && group.preferred_leader().is_some() {
                            // The pure function, not the group's own answer: a replica
                            // with a wrong notion of its preferred leader shows here.
                            let preferred = crate::paxos::placement::preferred_leader(
                                group.config().group,
                                group.latest_membership(),
                            );
                            self.report.placement_at_end[1] += 1;
                            let at_preferred = preferred == node.id;
                            self.report.placement_at_end[0] += u64::from(at_preferred);
                        }
                        self.report.elections += group.counters().elections_won;
                        let counters = group.counters();
                        for (sum, count) in self.report.leadership.iter_mut().zip([
                            counters.handovers,
                            counters.check_quorum_step_downs,
                            counters.pre_votes,
                            counters.placement_transfers,
                            counters.placement_probes,
                        ]) {
                            *sum += count;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
