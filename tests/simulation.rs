//! The deterministic simulator over many seeds: every regression seed of
//! `tests/seeds.txt`, then `SYNOD_SEEDS` (default 300) random seeds from a base printed
//! in the summary. `SYNOD_SEED=<seed>` replays exactly one seed. `SYNOD_LARGE_VALUES=1`
//! forces the large-value mode (small message budget, mostly-large values) on for
//! every seed, replays included. A second test forces
//! forgery (messages out of bounds injected by the network) on for a few seeds.

use synod::sim::cluster::run_options;
use synod::sim::swarm::{large_values_forced, run_many, seed_options};
use synod::sim::{FaultClass, SimOptions};

fn regression_seeds() -> Vec<u64> {
    let text = include_str!("seeds.txt");
    text.lines()
        .filter_map(|line| line.split('#').next())
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .collect()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

// Goal: safety and liveness hold for every seed (regressions first, then random ones).
// Method: run whole simulated clusters seed by seed; any checker violation fails the
// test with the seed, step and the command that replays it.
#[test]
fn simulation() {
    if let Some(seed) = env_u64("SYNOD_SEED") {
        match run_options(seed_options(seed, large_values_forced())) {
            Ok(report) => {
                println!("seed {seed}: ok: {report:?}");
                println!("seed {seed}: reads: {:?}", report.reads);
                println!(
                    "seed {seed}: checkpoints: {} saved, {} failed, {} damaged, {} restores",
                    report.checkpoints_saved,
                    report.checkpoints_failed,
                    report.checkpoints_damaged,
                    report.checkpoint_restores
                );
                println!(
                    "seed {seed}: {} WAL reads, largest in-memory log {} slots",
                    report.wal_reads, report.log_len_max
                );
                println!("seed {seed}: log reads: {:?}", report.log_reads);
            }
            Err(failure) => panic!("{failure}"),
        }
        return;
    }
    let regressions = regression_seeds();
    let count = env_u64("SYNOD_SEEDS").unwrap_or(300);
    let base = env_u64("SYNOD_SEED_BASE").unwrap_or_else(synod::runtime::clock::entropy_seed);
    let mut seeds = regressions.clone();
    seeds.extend(base..base + count);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let summary = run_many(&seeds, threads, &|_, _, failure| {
        if let Some(failure) = failure {
            eprintln!("{failure}");
        }
    });
    println!(
        "simulation: {} seeds, {} failures (regression seeds: {}; random seeds {}..{}, SYNOD_SEED_BASE={base}{}) in {:.1}s",
        summary.seeds,
        summary.failures.len(),
        regressions.len(),
        base,
        base + count,
        if large_values_forced() {
            ", SYNOD_LARGE_VALUES=1"
        } else {
            ""
        },
        summary.elapsed_s
    );
    println!("simulation: {}", summary.totals());
    println!("simulation: {}", summary.read_totals());
    println!("simulation: {}", summary.checkpoint_totals());
    println!("simulation: {}", summary.retention_totals());
    println!("simulation: {}", summary.log_read_totals());
    println!("simulation: {}", summary.truncation_totals());
    println!("simulation: {}", summary.raw_flip_totals());
    println!("simulation: {}", summary.lease_totals());
    println!("simulation: {}", summary.recovery_totals());
    let failures = summary.failures;
    if !failures.is_empty() {
        let list: Vec<String> = failures.iter().map(|f| f.seed.to_string()).collect();
        panic!("failing seeds: {}", list.join(" "));
    }
}

// Goal: forged messages out of bounds, sent often, are refused everywhere without
// effect while every safety checker runs, and the cluster still converges.
// Method: three seeds with forgery forced on at 5 % of messages sent; each run must
// pass and must have refused forged messages (each one checked to change nothing).
#[test]
fn forged_messages_are_refused() {
    for seed in [3, 4, 5] {
        let mut options = SimOptions::from_seed(seed);
        options.network_forge_ppm = 50_000;
        options
            .faults_off
            .retain(|class| *class != FaultClass::Forgery);
        options.invariants();
        let report = run_options(options).unwrap_or_else(|failure| panic!("{failure}"));
        assert!(
            report.forged_refused > 50,
            "seed {seed}: only {} forged messages refused",
            report.forged_refused
        );
        println!("seed {seed}: {report:?}");
    }
}

// Goal: with the in-memory log bounded to a few instances, lagging and restarted
// replicas are caught up from WAL reads, and every checker (bounded memory included)
// holds. Seeds 1264 and 111569885715967 lost liveness under a bound before the
// simulator executed WAL reads.
// Method: those seeds and two more with the retention forced to 1..=3 instances; each
// run must pass and must have served catch-up from the WAL.
#[test]
fn bounded_logs_catch_up_from_the_wal() {
    for (seed, instances) in [(1264, 1), (111569885715967, 2), (1048, 3), (3000005868, 1)] {
        let mut options = SimOptions::from_seed(seed);
        options.retention_instances_max = instances;
        options.retention_size_max = usize::MAX;
        options.invariants();
        let report = run_options(options).unwrap_or_else(|failure| panic!("{failure}"));
        assert!(report.wal_reads > 0, "seed {seed}: no WAL read");
        println!(
            "seed {seed}: {report:?}, {} WAL reads, largest log {} slots",
            report.wal_reads, report.log_len_max
        );
    }
}
