//! `synod sim`: the deterministic simulator over many seeds on several threads, with
//! a progress line every 5 % and the totals; or one seed replayed (`--seed`).

use std::process::ExitCode;

use clap::Args;
use synod::sim::swarm::run_many;

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
}

/// Runs `synod sim`: exit status 1 when any seed fails.
pub fn main(args: SimArgs) -> ExitCode {
    if let Some(seed) = args.seed {
        return match synod::sim::cluster::run_seed(seed) {
            Ok(report) => {
                println!("seed {seed}: ok ({report:?})");
                println!(
                    "seed {seed}: options: {}",
                    synod::sim::SimOptions::from_seed(seed)
                );
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
    let seeds: Vec<u64> = (base..base + count).collect();
    println!("synod sim: {count} seeds from {base} on {threads} threads");
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
        "{} seeds, {} failures (seeds {base}..{}) in {:.1}s",
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
    println!("{}", summary.recovery_totals());
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
