//! `synod-peers`: synod's peers measured side by side on the same durable workload.
//!
//! `synod-peers omnipaxos|openraft ...` runs one peer (three replicas in this process on
//! loopback TCP, each with a file log written by `wal.rs`) under closed-loop load;
//! `synod-peers compare ...` runs synod's own bench, then each peer in a child process,
//! and prints one table. What each side does per write: README.md beside this crate.

mod compare;
mod disk;
mod load;
mod net;
mod omni;
mod raft;
mod wal;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage:
  synod-peers omnipaxos|openraft [--value-size B] [--clients C] [--seconds S] [--warmup S]
                                 [--dir DIR] [--json]
  synod-peers compare [--value-size B] [--clients C] [--seconds S] [--warmup S] [--dir DIR]
                      [--synod PATH] [--only synod,omnipaxos,openraft]";

/// Flags shared by every subcommand.
pub struct Options {
    /// Bytes of each value.
    pub value_size: usize,
    /// Closed-loop clients.
    pub clients: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// Seconds of warm-up before measuring.
    pub warmup: f64,
    /// Where logs (and the disk probe file) go.
    pub dir: PathBuf,
    /// Print one JSON line instead of the human lines.
    pub json: bool,
    /// `compare`: the synod binary.
    pub synod: Option<PathBuf>,
    /// `compare`: which systems to run.
    pub only: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        value_size: 100,
        clients: 1024,
        seconds: 10.0,
        warmup: 2.0,
        dir: PathBuf::from("/tmp/synod-peers"),
        json: false,
        synod: None,
        only: vec!["synod".into(), "omnipaxos".into(), "openraft".into()],
    };
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        if flag == "--json" {
            o.json = true;
            i += 1;
            continue;
        }
        let value = args
            .get(i + 1)
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag {
            "--value-size" => o.value_size = value.parse().map_err(|e| bad(&e))?,
            "--clients" => o.clients = value.parse().map_err(|e| bad(&e))?,
            "--seconds" => o.seconds = value.parse().map_err(|e| bad(&e))?,
            "--warmup" => o.warmup = value.parse().map_err(|e| bad(&e))?,
            "--dir" => o.dir = PathBuf::from(value),
            "--synod" => o.synod = Some(PathBuf::from(value)),
            "--only" => o.only = value.split(',').map(str::to_string).collect(),
            _ => return Err(format!("unknown flag {flag}")),
        }
        i += 2;
    }
    if o.clients == 0 || o.value_size == 0 || o.seconds <= 0.0 {
        return Err("--clients, --value-size and --seconds must be positive".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = parse(&args[1..]).and_then(|o| match command.as_str() {
        "omnipaxos" | "openraft" => run_peer(command, &o),
        "compare" => compare::main(&o),
        _ => Err(format!("unknown command {command}\n{USAGE}")),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("synod-peers: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_peer(system: &str, o: &Options) -> Result<(), String> {
    std::fs::create_dir_all(&o.dir).map_err(|e| format!("{}: {e}", o.dir.display()))?;
    let load = load::Load {
        clients: o.clients,
        value_size: o.value_size,
        warmup: o.warmup,
        seconds: o.seconds,
    };
    eprintln!(
        "{system}: 3 replicas in one process, loopback TCP, {} clients (closed loop), {} B values, \
         {} s after {} s warm-up, fdatasync before ack, logs in {}",
        o.clients,
        o.value_size,
        o.seconds,
        o.warmup,
        o.dir.display()
    );
    let (report, errors) = match system {
        "omnipaxos" => omni::run(&load, &o.dir)?,
        _ => raft::run(&load, &o.dir)?,
    };
    if o.json {
        println!("{}", report.json());
    } else {
        report.print(&errors);
    }
    // The logs are GBs at 4 KiB values; a run never reads them back.
    for entry in std::fs::read_dir(&o.dir)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(system) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // Replica tasks and log threads never stop by themselves: end the process here.
    std::process::exit(0)
}
