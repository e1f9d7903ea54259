//! The deterministic simulator over many seeds: every regression seed of
//! `tests/seeds.txt` (each with its profile), then `SYNOD_SEEDS` (default 300) random
//! seeds of the default profile from a base printed in the summary; a second set,
//! `SYNOD_RARE_SEEDS` (default 60) random seeds of the `rare-faults` profile (five
//! voters; crashes, partitions and disk loss always on; `sim::profile`), from its own
//! base; a third, `SYNOD_MEMBERS_SEEDS` (default 40) of the `members` profile (2 to 7
//! voters and spare nodes, membership changes in the workload). `SYNOD_SEED=<seed>`
//! replays exactly one seed (`SYNOD_PROFILE=rare-faults` or `members` for a biased
//! one). `SYNOD_LARGE_VALUES=1`
//! forces the large-value mode (small message budget, mostly-large values) on for
//! every seed, replays included. A second test forces
//! forgery (messages out of bounds injected by the network) on for a few seeds.

use synod::sim::cluster::run_options;
use synod::sim::swarm::{large_values_forced, run_many, seed_options, Summary};
use synod::sim::{FaultClass, Profile, SimOptions};

/// The seeds of `seeds.txt`: `<seed>` or `<seed> <profile>`, then an optional note
/// after `#`. A line that names an unknown profile fails the test.
fn regression_seeds() -> Vec<(u64, Profile)> {
    let text = include_str!("seeds.txt");
    text.lines()
        .filter_map(|line| line.split('#').next())
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let seed = words.next()?.parse::<u64>().ok()?;
            let profile = words.next().map_or(Profile::Default, |name| {
                Profile::parse(name)
                    .unwrap_or_else(|| panic!("seeds.txt: seed {seed}: no profile {name}"))
            });
            Some((seed, profile))
        })
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
        let profile = Profile::from_env().unwrap_or_else(|e| panic!("{e}"));
        match run_options(seed_options(seed, profile, large_values_forced())) {
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
    seeds.extend((base..base + count).map(|seed| (seed, Profile::Default)));
    let summary = run_seeds(&seeds);
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
    print_totals_and_fail("simulation", summary);
}

/// Runs `seeds` on every core, printing each failure as it comes.
fn run_seeds(seeds: &[(u64, Profile)]) -> Summary {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    run_many(seeds, threads, &|_, _, failure| {
        if let Some(failure) = failure {
            eprintln!("{failure}");
        }
    })
}

/// Prints the totals of `summary` under `name`; panics naming the failing seeds.
fn print_totals_and_fail(name: &str, summary: Summary) {
    println!("{name}: {}", summary.totals());
    println!("{name}: {}", summary.read_totals());
    println!("{name}: {}", summary.checkpoint_totals());
    println!("{name}: {}", summary.retention_totals());
    println!("{name}: {}", summary.log_read_totals());
    println!("{name}: {}", summary.truncation_totals());
    println!("{name}: {}", summary.raw_flip_totals());
    println!("{name}: {}", summary.lease_totals());
    println!("{name}: {}", summary.recovery_totals());
    println!("{name}: {}", summary.partial_totals());
    println!("{name}: {}", summary.wire_totals());
    if summary.changed_membership() {
        println!("{name}: {}", summary.membership_totals());
    }
    let failures = summary.failures;
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|f| match f.profile {
                Profile::Default => f.seed.to_string(),
                profile => format!("{} {profile}", f.seed),
            })
            .collect();
        panic!("failing seeds: {}", list.join(", "));
    }
}

// Goal: safety and liveness hold where the default swarm rarely goes: five voters
// with crashes, partitions and disk loss always on (the second CI set).
// Method: `SYNOD_RARE_SEEDS` (default 60) random seeds of the `rare-faults` profile
// from a base printed in the summary (`SYNOD_RARE_SEED_BASE` to choose it); skipped
// when `SYNOD_SEED` replays one seed. Any violation fails with the seed and the
// command that replays it.
#[test]
fn simulation_rare_faults() {
    if env_u64("SYNOD_SEED").is_some() {
        return;
    }
    let summary = run_profile_set(Profile::RareFaults, "SYNOD_RARE", 60);
    print_totals_and_fail("simulation rare-faults", summary);
}

/// Runs `<prefix>_SEEDS` (default `count`) random seeds of `profile` from
/// `<prefix>_SEED_BASE` (default a random base), and prints the set's line.
fn run_profile_set(profile: Profile, prefix: &str, count: u64) -> Summary {
    let count = env_u64(&format!("{prefix}_SEEDS")).unwrap_or(count);
    let base_var = format!("{prefix}_SEED_BASE");
    let base = env_u64(&base_var).unwrap_or_else(synod::runtime::clock::entropy_seed);
    let seeds: Vec<(u64, Profile)> = (base..base + count).map(|seed| (seed, profile)).collect();
    let summary = run_seeds(&seeds);
    println!(
        "simulation {profile}: {} seeds, {} failures (random seeds {}..{}, \
         {base_var}={base}) in {:.1}s",
        summary.seeds,
        summary.failures.len(),
        base,
        base + count,
        summary.elapsed_s
    );
    summary
}

// Goal: safety and liveness hold while voters are added, removed and replaced (2 to 7
// voters, even counts included) during the seeds' faults (the third CI set).
// Method: `SYNOD_MEMBERS_SEEDS` (default 40) random seeds of the `members` profile
// from a base printed in the summary (`SYNOD_MEMBERS_SEED_BASE` to choose it); skipped
// when `SYNOD_SEED` replays one seed. The set must have chosen membership changes and
// refused some (two voters at once, one behind another), or it tested nothing.
#[test]
fn simulation_members() {
    if env_u64("SYNOD_SEED").is_some() {
        return;
    }
    let summary = run_profile_set(Profile::Members, "SYNOD_MEMBERS", 40);
    if summary.seeds >= 20 && summary.failures.is_empty() {
        let chosen: u64 = summary.reports.iter().map(|r| r.membership.chosen).sum();
        let refused: u64 = summary.reports.iter().map(|r| r.membership.refused).sum();
        assert!(
            chosen > 0 && refused > 0,
            "{chosen} changes chosen, {refused} refused"
        );
    }
    print_totals_and_fail("simulation members", summary);
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
