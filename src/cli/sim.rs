//! `synod sim`: the deterministic simulator over many seeds on several threads, with
//! a progress line every 5 % and the totals; or one seed replayed (`--seed`).

use std::process::ExitCode;

use clap::Args;
use synod::sim::swarm::run_many;
use synod::sim::Profile;

use crate::cli::positive;

/// The flags of `synod sim`.
#[derive(Clone, Debug, Args)]
pub struct SimArgs {
    /// Seeds to run, from --base on.
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub seeds: u64,
    /// The first seed [default: a random one, printed].
    #[arg(long, value_name = "SEED")]
    pub base: Option<u64>,
    /// Threads running seeds [default: the available cores].
    #[arg(long, value_name = "T",
          value_parser = positive::<usize>)]
    pub threads: Option<usize>,
    /// Replay this one seed (a failure prints the seed's options and what failed).
    #[arg(long, value_name = "SEED", conflicts_with_all = ["seeds", "base", "threads"])]
    pub seed: Option<u64>,
    /// The family of seeds: `default` (swarm over every fault class), `rare-faults`
    /// (five voters; crashes, partitions and disk loss always on) or `members` (2 to 7
    /// voters and spare nodes; membership changes in the workload).
    #[arg(long, value_name = "NAME", default_value = "default",
          value_parser = parse_profile)]
    pub profile: Profile,
}

fn parse_profile(name: &str) -> Result<Profile, String> {
    Profile::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
        format!("no such profile (known: {})", known.join(", "))
    })
}

/// Runs `synod sim`: exit status 1 when any seed fails.
pub fn main(args: SimArgs) -> ExitCode {
    if let Some(seed) = args.seed {
        let options = args.profile.options(seed, false);
        return match synod::sim::cluster::run_options(options.clone()) {
            Ok(report) => {
                println!("seed {seed}: ok ({report:?})");
                println!("seed {seed}: options: {options}");
                println!(
                    "seed {seed}: checkpoints: {} saved, {} failed, {} damaged, {} restores, \
                     {} installed from peers",
                    report.checkpoints_saved,
                    report.checkpoints_failed,
                    report.checkpoints_damaged,
                    report.checkpoint_restores,
                    report.checkpoints_installed
                );
                println!(
                    "seed {seed}: {} WAL reads, largest in-memory log {} slots",
                    report.wal_reads, report.log_len_max
                );
                println!("seed {seed}: log reads: {:?}", report.log_reads);
                println!(
                    "seed {seed}: {} WAL truncations, {} records carried forward, {} reads \
                     answered Truncated",
                    report.wal_truncations, report.wal_rewrites, report.wal_reads_truncated
                );
                println!(
                    "seed {seed}: {} catch-up runs flipped in flight, {} delivered and refused",
                    report.raw_runs_flipped, report.raw_runs_refused
                );
                println!(
                    "seed {seed}: {} leases checked against the replicas' grants, smallest \
                     margin {:?} ns",
                    report.lease_grant_checks, report.lease_margin_min_ns
                );
                println!("seed {seed}: recovery scans: {:?}", report.recovery);
                println!(
                    "seed {seed}: {} messages crossed the real peer codec in {} frames",
                    report.wire.0, report.wire.1
                );
                if report.membership.proposed > 0 {
                    println!("seed {seed}: membership: {:?}", report.membership);
                }
                ExitCode::SUCCESS
            }
            Err(failure) => {
                eprintln!("{failure}");
                ExitCode::FAILURE
            }
        };
    }
    let count = args.seeds;
    let base = args
        .base
        .unwrap_or_else(synod::runtime::clock::entropy_seed);
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let profile = args.profile;
    let seeds: Vec<(u64, Profile)> = (base..base + count).map(|s| (s, profile)).collect();
    println!("synod sim: {count} seeds from {base} on {threads} threads, profile {profile}");
    let step = (count as usize / 20).max(1);
    let summary = run_many(&seeds, threads, &|done, failures, failure| {
        if let Some(failure) = failure {
            println!("{failure}");
        }
        if done % step == 0 || done == count as usize {
            println!("  {done}/{count} seeds, {failures} failures");
        }
    });
    println!(
        "{} seeds, {} failures (seeds {base}..{}, profile {profile}) in {:.1}s",
        summary.seeds,
        summary.failures.len(),
        base + count,
        summary.elapsed_s
    );
    println!("{}", summary.totals());
    println!("{}", summary.checkpoint_totals());
    println!("{}", summary.retention_totals());
    println!("{}", summary.log_read_totals());
    println!("{}", summary.truncation_totals());
    println!("{}", summary.raw_flip_totals());
    println!("{}", summary.lease_totals());
    println!("{}", summary.leadership_totals());
    println!("{}", summary.recovery_totals());
    println!("{}", summary.partial_totals());
    println!("{}", summary.wire_totals());
    if summary.changed_membership() {
        println!("{}", summary.membership_totals());
    }
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
