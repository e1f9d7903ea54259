//! `synod-chaos`: a bounded random run of a real `synod serve` cluster under faults,
//! its history checked. It starts 3 (or 5) nodes, each in a network namespace of its
//! own joined to the host by a veth pair (loopback where namespaces cannot be made),
//! runs client threads doing key-value operations while a seeded nemesis kills,
//! pauses, restarts, partitions and fills the disk of a minority at a time, then
//! heals everything and checks: linearizability per key, no acknowledged write lost,
//! identical chosen logs on every replica, nothing applied twice.
//!
//! Exit status: 0 every check passed; 1 a check failed; 2 the run could not be set up;
//! 130 interrupted (SIGINT or SIGTERM). Everything the run made (processes, mounts,
//! namespaces, links, its directory) is removed on every path, a panic included.

mod nemesis;
mod net;
mod node;
mod report;
mod verify;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use synod::check::linearizability::Operation;
use synod::client::Client;
use synod::runtime::clock::{entropy_seed, MonotonicClock};

use nemesis::Nemesis;
use net::Net;
use node::{Node, Setup};
use report::Report;
use workload::Plan;

/// A random run of a `synod serve` cluster under faults, its history checked.
#[derive(Clone, Debug, Parser)]
#[command(name = "synod-chaos", version)]
struct Args {
    /// Seconds of workload under faults (then heal, converge, check).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: u64,
    /// Nodes of the cluster (3, 5 or 7).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=7))]
    nodes: u64,
    /// Seed of the nemesis and the workload [default: from the clock, printed].
    #[arg(long)]
    seed: Option<u64>,
    /// The `synod` binary [default: `synod` next to this program].
    #[arg(long, value_name = "PATH")]
    synod: Option<PathBuf>,
    /// Client threads.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    clients: u64,
    /// Keys (`k0` ...) [default: one per 30 s of run, at least 8: the checker's
    /// search memory per key grows with that key's history, and a 30-minute run's
    /// 145,000 operations on each of 8 keys exhausted its bounds (verdict unknown)].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
    keys: Option<u64>,
    /// Groups of the cluster.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    groups: u32,
    /// Mean milliseconds between nemesis events.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    interval_ms: u64,
    /// Milliseconds each client waits between operations.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pause_ms: u64,
    /// Size of each node's tmpfs data directory, MiB.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(64..=4096))]
    disk_mib: u64,
    /// Run on loopback even where namespaces can be made (no partitions).
    #[arg(long)]
    loopback: bool,
    /// Seconds the healed cluster may take to converge.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    converge_s: u64,
    /// Also print the summary as one JSON object (last line).
    #[arg(long)]
    json: bool,
    /// Drop the last acknowledged write of one key from the final state, to prove the
    /// checks can fail (the run must then exit 1).
    #[arg(long)]
    plant_lost_write: bool,
    /// Keep the run's directory (configurations, data, node logs).
    #[arg(long)]
    keep_dir: bool,
}

/// The cluster id of the run's nodes.
const CLUSTER: u64 = 7;

/// The run's directory, removed on drop unless kept.
struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.keep {
            println!("run directory kept: {}", self.path.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("synod-chaos: cleanup: {}: {e}", self.path.display());
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&interrupted)) {
            eprintln!("synod-chaos: cannot watch signal {signal}: {e}");
            return ExitCode::from(2);
        }
    }
    match run(&args, &interrupted) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Stop::Interrupted) => {
            eprintln!("synod-chaos: interrupted; everything it made is removed");
            ExitCode::from(130)
        }
        Err(Stop::Setup(why)) => {
            eprintln!("synod-chaos: {why}");
            ExitCode::from(2)
        }
    }
}

/// Why a run ended without verdicts.
enum Stop {
    Interrupted,
    Setup(String),
}

fn synod_path(args: &Args) -> Result<PathBuf, Stop> {
    if let Some(path) = &args.synod {
        return Ok(path.clone());
    }
    let me = std::env::current_exe().map_err(|e| Stop::Setup(format!("current_exe: {e}")))?;
    let path = me.with_file_name("synod");
    if path.exists() {
        Ok(path)
    } else {
        Err(Stop::Setup(format!(
            "no synod binary at {} (give --synod PATH)",
            path.display()
        )))
    }
}

/// Starts the cluster: the run directory, the network, the nodes (started).
fn start(args: &Args, seed: u64, clock: MonotonicClock) -> Result<(RunDir, Nemesis, Setup), Stop> {
    let setup = Setup {
        synod: synod_path(args)?,
        disk_mib: args.disk_mib,
        shards: 1,
        groups: args.groups,
        cluster: CLUSTER,
    };
    let tag = std::process::id();
    let dir = RunDir {
        path: std::env::temp_dir().join(format!("synod-chaos-{tag}")),
        keep: args.keep_dir,
    };
    std::fs::create_dir_all(&dir.path)
        .map_err(|e| Stop::Setup(format!("{}: {e}", dir.path.display())))?;
    let nodes = args.nodes as usize;
    let net = Net::new(nodes, tag, setup.shards, args.loopback).map_err(Stop::Setup)?;
    let mut list = Vec::with_capacity(nodes);
    for i in 0..nodes {
        list.push(Node::new(i, &dir.path, &net, &setup).map_err(Stop::Setup)?);
    }
    let mut nemesis = Nemesis::new(list, net, seed, clock, args.disk_mib);
    for node in &mut nemesis.nodes {
        node.start().map_err(Stop::Setup)?;
    }
    Ok((dir, nemesis, setup))
}

/// The keys of the workload: `--keys`, or one per 30 s of run and at least 8.
fn keys(args: &Args) -> usize {
    let keys = args.keys.unwrap_or((args.seconds / 30).clamp(8, 1000));
    usize::try_from(keys).unwrap_or(1000)
}

fn run(args: &Args, interrupted: &Arc<AtomicBool>) -> Result<bool, Stop> {
    let seed = args.seed.unwrap_or_else(entropy_seed);
    let clock = MonotonicClock::start();
    let (dir, mut nemesis, setup) = start(args, seed, clock)?;
    let report_net = report::describe_net(&nemesis);
    println!(
        "synod-chaos: seed {seed}, {} nodes, {} keys, {} s, {report_net}",
        args.nodes,
        keys(args),
        args.seconds
    );
    let addresses: Vec<String> = nemesis
        .net
        .places
        .iter()
        .map(|p| p.client.to_string())
        .collect();
    let ready = wait_ready(&addresses, setup.cluster, interrupted);
    if let Err(stop) = ready {
        for node in &nemesis.nodes {
            eprintln!(
                "node {} log ({}):",
                node.index + 1,
                node.log_path().display()
            );
            for line in node.log_tail(10) {
                eprintln!("  {line}");
            }
        }
        return Err(stop);
    }
    let mut history = under_faults(args, seed, clock, &addresses, &mut nemesis, interrupted)?;
    let workload_end_ns = clock.now().0;
    let check_interrupt = || {
        if interrupted.load(Ordering::Relaxed) {
            Err(Stop::Interrupted)
        } else {
            Ok(())
        }
    };
    check_interrupt()?;
    nemesis.heal_all();
    let client = connect(&addresses, setup.cluster, interrupted)?;
    let (views, converged) =
        verify::converge(&client, args.groups, Duration::from_secs(args.converge_s));
    check_interrupt()?;
    let mut finals = verify::final_reads(
        &client,
        keys(args),
        args.groups,
        args.clients,
        &clock,
        Duration::from_secs(30),
    );
    if args.plant_lost_write {
        report::plant_lost_write(&history, &mut finals);
    }
    check_interrupt()?;
    let (log_faults, log_values) = verify::compare_logs(&client, args.groups, &views);
    check_interrupt()?;
    let lost = verify::lost_writes(&history, &finals);
    history.extend(finals);
    let verdicts = verify::linearizable(&history, keys(args));
    let report = Report {
        seed,
        groups: args.groups,
        seconds: args.seconds,
        history: &history,
        events: &nemesis.events,
        workload_end_ns,
        verdicts: &verdicts,
        lost: &lost,
        converged,
        log_faults: &log_faults,
        log_values,
        unexpected_exits: &nemesis.unexpected_exits,
        netem: nemesis.net.netem,
        net: report_net,
    };
    let passed = report.print(args.json);
    if !passed {
        for node in &nemesis.nodes {
            println!(
                "node {} log, last lines (--keep-dir keeps {}):",
                node.index + 1,
                node.log_path().display()
            );
            for line in node.log_tail(8) {
                println!("  {line}");
            }
        }
    }
    drop(nemesis);
    drop(dir);
    Ok(passed)
}

/// Runs the clients and the nemesis for `args.seconds`: the clients' history.
fn under_faults(
    args: &Args,
    seed: u64,
    clock: MonotonicClock,
    addresses: &[String],
    nemesis: &mut Nemesis,
    interrupted: &AtomicBool,
) -> Result<Vec<Operation>, Stop> {
    let plan = Plan {
        addresses: addresses.to_vec(),
        cluster: CLUSTER,
        groups: args.groups,
        keys: keys(args),
        pause: Duration::from_millis(args.pause_ms),
        op_timeout: Duration::from_secs(5),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..args.clients)
        .map(|id| {
            let (plan, stop) = (plan.clone(), Arc::clone(&stop));
            std::thread::spawn(move || workload::run(id, plan, clock, seed, &stop))
        })
        .collect();
    let interval = Duration::from_millis(args.interval_ms);
    let end_s = clock.elapsed_s() + args.seconds as f64;
    let mut next_s = nemesis.next_pause(interval).as_secs_f64();
    while clock.elapsed_s() < end_s && !interrupted.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if clock.elapsed_s() >= next_s {
            nemesis.step();
            next_s = clock.elapsed_s() + nemesis.next_pause(interval).as_secs_f64();
        } else {
            nemesis.watch();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut history = Vec::new();
    for worker in workers {
        match worker.join() {
            Ok(ops) => history.extend(ops),
            Err(_) => return Err(Stop::Setup("a client thread panicked".to_string())),
        }
    }
    Ok(history)
}

/// A client of the run's nodes, retried for at most 30 s.
fn connect(addresses: &[String], cluster: u64, interrupted: &AtomicBool) -> Result<Client, Stop> {
    let clock = MonotonicClock::start();
    loop {
        match Client::connect_with(addresses, cluster, workload::client_config()) {
            Ok(client) => return Ok(client),
            Err(_) if clock.elapsed_s() < 30.0 && !interrupted.load(Ordering::Relaxed) => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(Stop::Setup(format!("connect after healing: {e}"))),
        }
    }
}

/// Waits (at most 60 s) until every node answers a status request.
fn wait_ready(addresses: &[String], cluster: u64, interrupted: &AtomicBool) -> Result<(), Stop> {
    let clock = MonotonicClock::start();
    loop {
        if interrupted.load(Ordering::Relaxed) {
            return Err(Stop::Interrupted);
        }
        let answered = Client::connect_with(addresses, cluster, workload::client_config())
            .is_ok_and(|client| {
                client
                    .status_blocking()
                    .is_ok_and(|s| s.len() == addresses.len())
            });
        if answered {
            return Ok(());
        }
        if clock.elapsed_s() > 60.0 {
            return Err(Stop::Setup(
                "the nodes did not all answer within 60 s".to_string(),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
