//! The `synod` binary. Today: `synod sim`, the deterministic simulator over many seeds.
//! (`serve`, `bench` and the WAL tools arrive with the runtime.)

use std::process::ExitCode;

use synod::sim::swarm::run_many;

const USAGE: &str = "usage:
  synod sim [--seeds N] [--base SEED] [--threads T]   run N seeds from SEED (default: 300 from a random base)
  synod sim --seed SEED                               replay one seed";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sim") => sim(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn flag(args: &[String], name: &str) -> Result<Option<u64>, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => {
            let value = args
                .get(i + 1)
                .ok_or_else(|| format!("{name} needs a value"))?;
            value
                .parse()
                .map(Some)
                .map_err(|_| format!("{name} {value}: not a non-negative integer"))
        }
    }
}

fn sim(args: &[String]) -> ExitCode {
    let known = ["--seeds", "--base", "--threads", "--seed"];
    for (i, arg) in args.iter().enumerate() {
        let is_value = i > 0 && known.contains(&args[i - 1].as_str());
        if !is_value && !known.contains(&arg.as_str()) {
            eprintln!("synod sim: unknown argument {arg}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let parsed = (|| -> Result<_, String> {
        Ok((
            flag(args, "--seed")?,
            flag(args, "--seeds")?.unwrap_or(300),
            flag(args, "--base")?,
            flag(args, "--threads")?,
        ))
    })();
    let (one, count, base, threads) = match parsed {
        Ok(values) => values,
        Err(why) => {
            eprintln!("synod sim: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(seed) = one {
        return match synod::sim::cluster::run_seed(seed) {
            Ok(report) => {
                println!("seed {seed}: ok ({report:?})");
                ExitCode::SUCCESS
            }
            Err(failure) => {
                eprintln!("{failure}");
                ExitCode::FAILURE
            }
        };
    }
    let base = base.unwrap_or_else(synod::runtime::clock::entropy_seed);
    let threads = threads.map_or_else(
        || std::thread::available_parallelism().map_or(2, |n| n.get()),
        |t| t as usize,
    );
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
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
