//! The deterministic simulator over many seeds: every regression seed of
//! `tests/seeds.txt`, then `SYNOD_SEEDS` (default 300) random seeds from a base printed
//! in the summary. `SYNOD_SEED=<seed>` replays exactly one seed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use synod::sim::cluster::{run_seed, Failure, RunReport};

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

/// Runs `seeds` on all cores; returns the failures.
fn run_all(seeds: &[u64]) -> (Vec<Failure>, Vec<RunReport>) {
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let reports = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&seed) = seeds.get(index) else { break };
                match run_seed(seed) {
                    Ok(report) => reports.lock().expect("no poisoned lock").push(report),
                    Err(failure) => {
                        eprintln!("{failure}");
                        failures.lock().expect("no poisoned lock").push(failure);
                    }
                }
            });
        }
    });
    (
        failures.into_inner().expect("no poisoned lock"),
        reports.into_inner().expect("no poisoned lock"),
    )
}

// Goal: safety and liveness hold for every seed (regressions first, then random ones).
// Method: run whole simulated clusters seed by seed; any checker violation fails the
// test with the seed, step and the command that replays it.
#[test]
fn simulation() {
    if let Some(seed) = env_u64("SYNOD_SEED") {
        match run_seed(seed) {
            Ok(report) => println!("seed {seed}: ok: {report:?}"),
            Err(failure) => panic!("{failure}"),
        }
        return;
    }
    let started = Instant::now();
    let regressions = regression_seeds();
    let count = env_u64("SYNOD_SEEDS").unwrap_or(300);
    let base = env_u64("SYNOD_SEED_BASE").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            >> 16
    });
    let mut seeds = regressions.clone();
    seeds.extend(base..base + count);
    let (failures, reports) = run_all(&seeds);
    let steps: u64 = reports.iter().map(|r| r.steps).sum();
    let virtual_s: f64 = reports.iter().map(|r| r.virtual_ns as f64 / 1e9).sum();
    let acknowledged: usize = reports.iter().map(|r| r.acknowledged).sum();
    let crashes: u64 = reports.iter().map(|r| r.crashes).sum();
    let corrupt: u64 = reports.iter().map(|r| r.corrupt_recoveries).sum();
    let lost: u64 = reports.iter().map(|r| r.disks_lost).sum();
    println!(
        "simulation: {} seeds, {} failures (regression seeds: {}; random seeds {}..{}, base from SYNOD_SEED_BASE={base}) in {:.1}s",
        seeds.len(),
        failures.len(),
        regressions.len(),
        base,
        base + count,
        started.elapsed().as_secs_f64()
    );
    println!(
        "simulation: {steps} steps, {virtual_s:.0}s virtual, {acknowledged} acknowledged proposals, {crashes} crashes, {lost} disks lost, {corrupt} corrupt recoveries"
    );
    if !failures.is_empty() {
        let list: Vec<String> = failures.iter().map(|f| f.seed.to_string()).collect();
        panic!("failing seeds: {}", list.join(" "));
    }
}
