//! Running many seeds: on every core, each seed an independent deterministic run, with
//! a summary that names the seed range and every failure.
//!
//! `SYNOD_LARGE_VALUES=1` in the environment forces the large-value mode (small
//! `message_size_max`, mostly-large values; see `options`) on for every seed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::checkers::{PartialKind, PartialWindow};
use super::cluster::{run_options, Failure, RunReport, ELECTION_TIMEOUT_NS};
use super::options::SimOptions;
use super::profile::Profile;
use crate::runtime::clock::MonotonicClock;

/// The environment variable that forces the large-value mode on for every seed when
/// set to `1`.
pub const LARGE_VALUES_VAR: &str = "SYNOD_LARGE_VALUES";

/// Whether the environment forces the large-value mode on (`SYNOD_LARGE_VALUES=1`).
#[must_use]
pub fn large_values_forced() -> bool {
    std::env::var_os(LARGE_VALUES_VAR).is_some_and(|v| v == "1")
}

/// The options a swarm runs `seed` with under `profile`: the seed's own, or with the
/// large-value mode forced on.
#[must_use]
pub fn seed_options(seed: u64, profile: Profile, force_large_values: bool) -> SimOptions {
    profile.options(seed, force_large_values)
}

/// What a batch of seeds did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds: usize,
    /// The failures, in the order seen.
    pub failures: Vec<Failure>,
    /// Reports of passing seeds.
    pub reports: Vec<RunReport>,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
}

impl Summary {
    /// The one-line totals of the passing seeds.
    #[must_use]
    pub fn totals(&self) -> String {
        let sum = |f: fn(&RunReport) -> u64| -> u64 { self.reports.iter().map(f).sum() };
        format!(
            "{} steps, {:.0}s virtual, {} acknowledged proposals, {} elections, {} crashes, \
             {} partitions, {} disks lost, {} bit flips, {} corrupt recoveries, \
             {} forged messages refused",
            sum(|r| r.steps),
            sum(|r| r.virtual_ns) as f64 / 1e9,
            sum(|r| r.acknowledged as u64),
            sum(|r| r.elections),
            sum(|r| r.crashes),
            sum(|r| r.partitions),
            sum(|r| r.disks_lost),
            sum(|r| r.bit_flips),
            sum(|r| r.corrupt_recoveries),
            sum(|r| r.forged_refused),
        )
    }

    /// The one-line totals of the passing seeds' reads (a line of its own, so that
    /// the fault run's totals read as they did before reads existed).
    #[must_use]
    pub fn read_totals(&self) -> String {
        let sum = |f: fn(&RunReport) -> u64| -> u64 { self.reports.iter().map(f).sum() };
        format!(
            "{} reads issued, {} served and checked linearizable, {} refused",
            sum(|r| r.reads.issued),
            sum(|r| r.reads.served),
            sum(|r| r.reads.refused),
        )
    }

    /// The one-line totals of the passing seeds' log reads (a line of its own, for
    /// the same reason).
    #[must_use]
    pub fn log_read_totals(&self) -> String {
        let sum = |f: fn(&RunReport) -> u64| -> u64 { self.reports.iter().map(f).sum() };
        format!(
            "{} log reads issued, {} served and checked against the chosen log ({} values, \
             {} from the WAL), {} truncated, {} overloaded",
            sum(|r| r.log_reads.issued),
            sum(|r| r.log_reads.served),
            sum(|r| r.log_reads.values),
            sum(|r| r.log_reads.wal),
            sum(|r| r.log_reads.truncated),
            sum(|r| r.log_reads.overloaded),
        )
    }

    /// The one-line totals of the passing seeds' checkpoints (a line of its own, for
    /// the same reason).
    #[must_use]
    pub fn checkpoint_totals(&self) -> String {
        let sum = |f: fn(&RunReport) -> u64| -> u64 { self.reports.iter().map(f).sum() };
        format!(
            "{} checkpoints saved, {} failed, {} damaged, {} group starts restored from one, \
             {} installed from peers",
            sum(|r| r.checkpoints_saved),
            sum(|r| r.checkpoints_failed),
            sum(|r| r.checkpoints_damaged),
            sum(|r| r.checkpoint_restores),
            sum(|r| r.checkpoints_installed),
        )
    }

    /// The one-line totals of the passing seeds' WAL truncations (a line of its own).
    #[must_use]
    pub fn truncation_totals(&self) -> String {
        let sum = |f: fn(&RunReport) -> u64| -> u64 { self.reports.iter().map(f).sum() };
        format!(
            "{} seeds truncated their WAL: {} truncations, {} records carried forward, \
             {} catch-up reads answered Truncated",
            self.reports
                .iter()
                .filter(|r| r.wal_truncations > 0)
                .count(),
            sum(|r| r.wal_truncations),
            sum(|r| r.wal_rewrites),
            sum(|r| r.wal_reads_truncated),
        )
    }

    /// The one-line totals of the passing seeds' corrupted catch-up runs: flipped in
    /// flight, and refused by their receiver (a line of its own).
    #[must_use]
    pub fn raw_flip_totals(&self) -> String {
        let sum = |f: fn(&RunReport) -> u64| -> u64 { self.reports.iter().map(f).sum() };
        format!(
            "{} seeds flipped catch-up runs in flight: {} flipped, {} delivered and refused; \
             {} seeds with backpressure: {} peer messages refused for want of room, {} of \
             them catch-up chunks that restarted their streams once the WAL had room (on \
             the shards running at the end)",
            self.reports
                .iter()
                .filter(|r| r.raw_runs_flipped > 0)
                .count(),
            sum(|r| r.raw_runs_flipped),
            sum(|r| r.raw_runs_refused),
            self.reports.iter().filter(|r| r.backpressure).count(),
            sum(|r| r.refused_messages),
            sum(|r| r.catch_up_refused),
        )
    }

    /// The one-line totals of the passing seeds' leases checked against the replicas'
    /// grants: how many checks, and the smallest margin a quorum's grants kept beyond
    /// a lease end (a line of its own).
    #[must_use]
    pub fn lease_totals(&self) -> String {
        let margin = self
            .reports
            .iter()
            .filter_map(|r| r.lease_margin_min_ns)
            .min();
        format!(
            "{} leases checked against the replicas' grants, smallest margin {}",
            self.reports
                .iter()
                .map(|r| r.lease_grant_checks)
                .sum::<u64>(),
            margin.map_or("none".to_string(), |m| format!("{:.6}s", m as f64 / 1e9)),
        )
    }

    /// The one-line totals of what crossed the real peer codec in the passing seeds
    /// (`checkers::wire`): messages, frames, bytes.
    #[must_use]
    pub fn wire_totals(&self) -> String {
        let sum = |f: fn(&RunReport) -> u64| -> u64 { self.reports.iter().map(f).sum() };
        format!(
            "{} messages crossed the real peer codec in {} frames ({:.1} MB), each \
             delivered as decoded",
            sum(|r| r.wire.0),
            sum(|r| r.wire.1),
            sum(|r| r.wire.2) as f64 / 1e6,
        )
    }

    /// The one-line totals of the passing seeds' leadership changes (`paxos::leadership`):
    /// transfers asked, handovers, check-quorum step downs, pre-votes, and the
    /// transfers and probes of leader placement (`paxos::placement`).
    #[must_use]
    pub fn leadership_totals(&self) -> String {
        let sum = |f: fn(&RunReport) -> u64| -> u64 { self.reports.iter().map(f).sum() };
        format!(
            "{} leadership transfers asked, {} handovers, {} check-quorum step downs, {} \
             pre-votes, {} placement transfers, {} placement probes; {} of {} groups led at \
             the end by their preferred replica (seeds with placement on)",
            sum(|r| r.transfers_asked),
            sum(|r| r.leadership[0]),
            sum(|r| r.leadership[1]),
            sum(|r| r.leadership[2]),
            sum(|r| r.leadership[3]),
            sum(|r| r.leadership[4]),
            sum(|r| r.placement_at_end[0]),
            sum(|r| r.placement_at_end[1]),
        )
    }

    /// The one-line totals of the passing seeds' recovery scans, one per shard start,
    /// each checked against ground truth (`checkers::recovery`): how many ended in each
    /// row of the decision table (a line of its own).
    #[must_use]
    pub fn recovery_totals(&self) -> String {
        let sum = |f: fn(&RunReport) -> u64| -> u64 { self.reports.iter().map(f).sum() };
        format!(
            "{} recovery scans checked against ground truth: {} clean, {} torn (nothing \
             after), {} torn after a survey, {} corrupt, {} damaged, {} invalid, {} gaps \
             skipped; {} where the torn-versus-corrupt decision mattered, {} after damage \
             to durable records, {} kept an unsynced record; {} WAL writes issued beside \
             another in flight, {} completions held for an earlier write",
            sum(|r| r.recovery.scans),
            sum(|r| r.recovery.clean),
            sum(|r| r.recovery.torn),
            sum(|r| r.recovery.torn_surveyed),
            sum(|r| r.recovery.corrupt),
            sum(|r| r.recovery.damaged),
            sum(|r| r.recovery.invalid),
            sum(|r| r.recovery.gaps),
            sum(|r| r.recovery.decided()),
            sum(|r| r.recovery.with_damage),
            sum(|r| r.recovery.kept_unsynced),
            sum(|r| r.writes_overlapped),
            sum(|r| r.completions_held),
        )
    }

    /// The one-line totals of the passing seeds' partial partitions (a line of its
    /// own; `checkers::partial`): how many of each shape, how many clean (no other fault
    /// overlapped), and the stalls of the clean ones against the election timeout.
    #[must_use]
    pub fn partial_totals(&self) -> String {
        let windows: Vec<&PartialWindow> =
            self.reports.iter().flat_map(|r| r.partial.iter()).collect();
        let of_kind = |kind: PartialKind| windows.iter().filter(|w| w.kind == kind).count();
        let mut clean: Vec<u64> = windows
            .iter()
            .filter(|w| w.clean)
            .map(|w| w.stall_ns)
            .collect();
        clean.sort_unstable();
        let ms = |ns: u64| ns as f64 / 1e6;
        let at = |q: f64| -> u64 {
            if clean.is_empty() {
                return 0;
            }
            let index = ((clean.len() - 1) as f64 * q).round() as usize;
            clean[index.min(clean.len() - 1)]
        };
        let longest = clean.last().copied().unwrap_or(0);
        format!(
            "{} partial partitions ({} link, {} one-way, {} flapping), {} clean: stall \
             p50 {:.0} ms, p99 {:.0} ms, longest {:.0} ms ({:.2} election timeouts of {} \
             ms), {} over 4 election timeouts",
            windows.len(),
            of_kind(PartialKind::Link),
            of_kind(PartialKind::OneWay),
            of_kind(PartialKind::Flapping),
            clean.len(),
            ms(at(0.5)),
            ms(at(0.99)),
            ms(longest),
            longest as f64 / ELECTION_TIMEOUT_NS as f64,
            ELECTION_TIMEOUT_NS / 1_000_000,
            clean
                .iter()
                .filter(|s| **s > 4 * ELECTION_TIMEOUT_NS)
                .count(),
        )
    }

    /// Whether any passing seed asked for a membership change.
    #[must_use]
    pub fn changed_membership(&self) -> bool {
        self.reports.iter().any(|r| r.membership.proposed > 0)
    }

    /// The one-line totals of the passing seeds' membership changes (a line of its
    /// own): asked, applied, refused and why, memberships chosen, voter counts.
    #[must_use]
    pub fn membership_totals(&self) -> String {
        let sum = |f: fn(&RunReport) -> u64| -> u64 { self.reports.iter().map(f).sum() };
        let mut voters = [0usize; 10];
        for report in &self.reports {
            let m = &report.membership;
            if m.voters_min > 0 {
                for seeds in &mut voters[m.voters_min..=m.voters_max.min(9)] {
                    *seeds += 1;
                }
            }
        }
        format!(
            "membership changes: {} asked ({} of two voters, {} right behind another), {} \
             applied, {} refused, {} not the leader, {} failed otherwise; {} memberships \
             chosen ({} removing the leader asked); {} leaders checked against the \
             membership in effect; seeds spanning each voter count 2..=7: {:?}; {} state \
             losses after a change, {} retirements, {} adds of a retired node asked ({} \
             refused as retired, {} applied)",
            sum(|r| r.membership.proposed),
            sum(|r| r.membership.proposed_invalid),
            sum(|r| r.membership.proposed_second),
            sum(|r| r.membership.applied),
            sum(|r| r.membership.refused),
            sum(|r| r.membership.not_leader),
            sum(|r| r.membership.failed),
            sum(|r| r.membership.chosen),
            sum(|r| r.membership.leader_removed),
            sum(|r| r.membership.leaders_checked),
            &voters[2..=7],
            sum(|r| r.membership.state_losses_changed),
            sum(|r| r.membership.retirements),
            sum(|r| r.membership.retired_adds_asked),
            sum(|r| r.membership.refused_retired),
            sum(|r| r.membership.retired_added),
        )
    }

    /// The one-line totals of the passing seeds' in-memory logs: how many seeds
    /// bounded them, the catch-up reads served from the WAL, and the largest log a
    /// replica held among bounded and among unbounded seeds.
    #[must_use]
    pub fn retention_totals(&self) -> String {
        let bounded = self.reports.iter().filter(|r| r.retention_bounded);
        let unbounded = self.reports.iter().filter(|r| !r.retention_bounded);
        format!(
            "{} seeds with a bounded in-memory log ({} WAL reads, largest log {} slots), \
             {} unbounded (largest log {} slots)",
            bounded.clone().count(),
            bounded.clone().map(|r| r.wal_reads).sum::<u64>(),
            bounded.map(|r| r.log_len_max).max().unwrap_or(0),
            unbounded.clone().count(),
            unbounded.map(|r| r.log_len_max).max().unwrap_or(0),
        )
    }
}

/// Runs `seeds` (each with its profile) on `threads` threads; `progress(done, failures, failure)` is called
/// after each seed (from the worker threads, serialized), with the seed's failure if it
/// failed, so a long run names failing seeds as soon as they fail. Honours
/// `SYNOD_LARGE_VALUES` (read once).
pub fn run_many(
    seeds: &[(u64, Profile)],
    threads: usize,
    progress: &(dyn Fn(usize, usize, Option<&Failure>) + Sync),
) -> Summary {
    let clock = MonotonicClock::start();
    let force_large_values = large_values_forced();
    let next = AtomicU64::new(0);
    let state = Mutex::new(Summary::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&(seed, profile)) = seeds.get(index) else {
                    break;
                };
                let result = run_options(seed_options(seed, profile, force_large_values));
                let mut summary = state.lock().unwrap_or_else(|e| e.into_inner());
                summary.seeds += 1;
                match result {
                    Ok(report) => {
                        summary.reports.push(report);
                        progress(summary.seeds, summary.failures.len(), None);
                    }
                    Err(failure) => {
                        summary.failures.push(failure);
                        let count = summary.failures.len();
                        progress(summary.seeds, count, summary.failures.last());
                    }
                }
            });
        }
    });
    let mut summary = state.into_inner().unwrap_or_else(|e| e.into_inner());
    summary.elapsed_s = clock.elapsed_s();
    summary
}
