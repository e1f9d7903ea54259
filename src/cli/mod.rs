//! The command line of the `synod` binary: one clap parser ([`Synod`]) whose
//! subcommands live in their own modules (`bench`, `serve`, `dev`, `keygen`, `sim`,
//! `wal`, `kv` for the key-value client commands and `admin` for leadership and
//! membership; `notify` speaks to a service
//! manager), each with the flags it takes and the code it runs. Shared here: parsing with
//! one-line errors ([`parse`]) and the `ID=IP:PORT,...` node lists; the stderr log and
//! its `SYNOD_LOG` filter are `logging`.
//!
//! Exit statuses: 0 after `--help`; 2 for a bad command line (an unknown flag, a
//! missing or invalid value, flags that exclude each other), printed as one line;
//! the subcommands' own statuses otherwise (`main.rs`).

pub mod admin;
pub mod bench;
pub mod dev;
pub mod keygen;
pub mod kv;
pub mod logging;
pub mod notify;
pub mod serve;
pub mod serve_config;
pub mod sim;
pub mod wal;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};
use synod::paxos::NodeId;
use synod::transport::auth::AuthKey;

/// The exit status of a bad command line (clap's, and the Unix convention).
pub const EXIT_USAGE: u8 = 2;

/// A Multi-Paxos replicated log for Linux: thread-per-core, group commit, pipelining.
///
/// Log lines go to stderr at the level of SYNOD_LOG (error, warn, info, debug, trace,
/// off; default warn), or as its directives say: SYNOD_LOG=warn,synod=debug also shows
/// each client request's spans, from its connection through the shard to its answer.
#[derive(Debug, Parser)]
#[command(name = "synod", version, arg_required_else_help = true)]
pub struct Synod {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `synod`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// A local 3-node cluster under load, with the machine's limits (disk, fdatasync,
    /// loopback TCP) in the same run; or PhxPaxos's cells (--matrix); or a running
    /// cluster (--target).
    ///
    /// Three nodes run in one process (one thread per shard per node), each with its own
    /// WAL under --dir on the same disk, linked by TCP on 127.0.0.1. The limits are
    /// measured first, then a fresh cluster is loaded for --warmup plus --seconds.
    /// Closed loop by default (--clients proposals in flight); --rate makes it an open
    /// loop whose latency counts from the scheduled send. Exit status 1 when the run
    /// fails or a shard stopped.
    Bench(bench::BenchArgs),
    /// Run one node of a cluster (shard s listens on PORT+s).
    ///
    /// An empty --dir needs --new (a new member of a new cluster) or --existing (a
    /// member that lost its data: it rejoins as a learner). Peers authenticate with
    /// --key-file (written by `synod keygen`), unless --no-auth. With --client the node
    /// also serves clients. Prints `ready` once it serves (and tells systemd READY=1
    /// when $NOTIFY_SOCKET is set). Exit statuses: 0 after a graceful stop (SIGTERM,
    /// SIGINT, or end of stdin with --control), 1 for a refused start, 3 the moment a
    /// shard stops for good (`synod: node N shard S stopped: <reason>; exiting`).
    Serve(Box<serve::ServeArgs>),
    /// A local three-node cluster for a first try: three `synod serve` processes on
    /// 127.0.0.1 with generated keys and configuration files under --dir.
    ///
    /// Prints the command lines that reach it (`synod put|get|scan|status`), then
    /// `ready`; SIGINT (Ctrl-C) or SIGTERM stops every node gracefully (exit 0). A
    /// node that fails stops the others (exit 1, with its last log lines).
    Dev(dev::DevArgs),
    /// Print a new random key (hex) for --key-file or --client-key-file.
    Keygen,
    /// The deterministic simulator: whole clusters with faults, over many seeds (or one).
    ///
    /// Each seed picks the cluster, the workload and the faults; every step runs the
    /// invariants and the checkers of src/sim/checkers/. A failing seed prints its
    /// options and replays with --seed. Exit status 1 when any seed fails.
    Sim(sim::SimArgs),
    /// The WAL tools: verify, dump and bench.
    #[command(arg_required_else_help = true)]
    Wal(wal::WalArgs),
    /// Set a key of a running cluster's key-value store (exactly once).
    ///
    /// Exit statuses: 0 done, 4 unavailable (nothing written), 5 outcome unknown
    /// (applied at most once), 6 refused.
    Put(kv::PutArgs),
    /// Print a key's value (a linearizable read at its group's leader).
    ///
    /// Exit statuses: 0 found, 1 not found, 4 unavailable, 6 refused.
    Get(kv::KeyArgs),
    /// Remove a key (exactly once).
    ///
    /// Exit statuses: 0 removed, 1 not found, 4 unavailable (nothing written), 5
    /// outcome unknown, 6 refused.
    Del(kv::KeyArgs),
    /// Compare-and-set a key (exactly once): --expected OLD (absent: the key must be
    /// absent), --new NEW (absent: remove it).
    ///
    /// Exit statuses: 0 swapped, 3 mismatch (nothing changed), 4 unavailable
    /// (nothing written), 5 outcome unknown, 6 refused.
    Cas(kv::CasArgs),
    /// Print the keys and values of a range, in key order, over every group.
    ///
    /// Exit statuses: 0 done, 4 unavailable, 6 refused.
    Scan(kv::ScanArgs),
    /// Print every node's groups (role, leader, chosen and applied watermarks,
    /// checkpoint) and peer-link counters, or why it did not answer.
    ///
    /// Exit statuses: 0 when a node answered, 4 when none did.
    Status(kv::StatusArgs),
    /// A running cluster's leadership and membership: hand a group over to a node,
    /// add or remove a voter (asked of the group's leader).
    ///
    /// A node to add must be in every node's --nodes and running. Exit statuses: 0
    /// done, 4 unavailable (nothing asked), 5 outcome unknown, 6 refused.
    #[command(arg_required_else_help = true)]
    Admin(admin::AdminArgs),
}

/// Parses the process's command line. `--help` and `--version` print and exit 0; a
/// bad command line prints one line (`error: ...; see 'synod <subcommand> --help'`)
/// and exits [`EXIT_USAGE`].
pub fn parse() -> Synod {
    let args: Vec<String> = std::env::args().collect();
    let parsed = Synod::try_parse_from(&args).and_then(|synod| synod.validate().map(|()| synod));
    parsed.unwrap_or_else(|error| match error.kind() {
        // Help on stdout with 0; help for a bare `synod` or `synod wal` on stderr with 2.
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => error.exit(),
        _ => {
            eprintln!("{}", one_line(&error, &subcommand_path(&args[1..])));
            std::process::exit(i32::from(EXIT_USAGE))
        }
    })
}

/// The subcommand that `args` (without the program name) name, as a command line:
/// `synod wal verify` for `wal verify --shard x DIR`.
pub fn subcommand_path(args: &[String]) -> String {
    let mut command = Synod::command();
    let mut path = vec!["synod".to_string()];
    for arg in args {
        if arg.starts_with('-') {
            // A flag of the command so far: `synod --version`, `synod bench --dir x`.
            continue;
        }
        let Some(sub) = command.find_subcommand(arg) else {
            break;
        };
        path.push(sub.get_name().to_string());
        let sub = sub.clone();
        command = sub;
    }
    path.join(" ")
}

impl Synod {
    /// The checks that span several flags and fit no clap constraint.
    fn validate(&self) -> Result<(), clap::Error> {
        match &self.command {
            Command::Bench(args) => args
                .validate()
                .map_err(|message| usage_error(&["bench"], message)),
            Command::Serve(_)
            | Command::Dev(_)
            | Command::Keygen
            | Command::Sim(_)
            | Command::Wal(_)
            | Command::Put(_)
            | Command::Get(_)
            | Command::Del(_)
            | Command::Cas(_)
            | Command::Scan(_)
            | Command::Status(_)
            | Command::Admin(_) => Ok(()),
        }
    }
}

/// An error of the subcommand at `path` (e.g. `["bench"]`), as clap reports its own:
/// with that subcommand's usage, exit status [`EXIT_USAGE`].
pub fn usage_error(path: &[&str], message: String) -> clap::Error {
    let mut command = Synod::command();
    command.build();
    let mut at = &mut command;
    for name in path {
        at = at
            .find_subcommand_mut(name)
            .expect("the path names subcommands of synod");
    }
    at.error(ErrorKind::ArgumentConflict, message)
}

/// A clap error of `command` (`synod serve`) as one line: its message (the items of a
/// multi-line message joined), its tips in parentheses, then where the flags are
/// described; clap's usage lines are left out.
pub fn one_line(error: &clap::Error, command: &str) -> String {
    let text = error.render().to_string();
    let mut message = String::new();
    let mut tips = Vec::new();
    for paragraph in text.split("\n\n") {
        let lines: Vec<&str> = paragraph
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        match lines.split_first() {
            None => {}
            Some((first, _)) if first.starts_with("Usage:") => {}
            Some((first, _)) if first.starts_with("For more information") => {}
            Some((first, _)) if first.starts_with("tip:") => tips.push(lines.join(" ")),
            Some((first, rest)) if message.is_empty() => {
                message = if rest.is_empty() {
                    first.to_string()
                } else {
                    format!("{first} {}", rest.join(", "))
                };
            }
            Some(_) => tips.push(lines.join(" ")),
        }
    }
    if !tips.is_empty() {
        message = format!("{message} ({})", tips.join("; "));
    }
    format!("{message}; see '{command} --help'")
}

/// `1=127.0.0.1:7000,2=...` into node addresses (a clap value parser: the flag name is
/// in clap's message).
pub fn parse_nodes(text: &str) -> Result<BTreeMap<NodeId, SocketAddr>, String> {
    let mut nodes = BTreeMap::new();
    for item in text.split(',').filter(|s| !s.is_empty()) {
        let (id, address) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected ID=HOST:PORT"))?;
        let id: u32 = id
            .parse()
            .map_err(|_| format!("{item:?}: node id is not a number"))?;
        let address: SocketAddr = address
            .parse()
            .map_err(|_| format!("{item:?}: not an IP:PORT address"))?;
        if nodes.insert(NodeId(id), address).is_some() {
            return Err(format!("node {id} given twice"));
        }
    }
    if nodes.is_empty() {
        return Err("no node: expected ID=IP:PORT,...".to_string());
    }
    Ok(nodes)
}

/// The key in the file at `path`, if the flag `flag` named one.
///
/// # Errors
///
/// The file cannot be read or holds no key: the message names the flag.
pub fn read_key(flag: &str, path: Option<&Path>) -> Result<Option<AuthKey>, String> {
    path.map(|path| AuthKey::from_file(path).map_err(|e| format!("{flag}: {e}")))
        .transpose()
}

/// A whole number above zero (a clap value parser: counts, sizes, seconds).
pub fn positive<T>(text: &str) -> Result<T, String>
where
    T: std::str::FromStr + Default + PartialOrd,
{
    match text.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        Ok(_) => Err("must be above zero".to_string()),
        Err(_) => Err("not a whole number".to_string()),
    }
}

/// An in-memory retention bound (a clap value parser for `--retention-instances-max`
/// and `--retention-size-max`): a whole number (at least `min`), or `unbounded` for
/// the type's maximum (the log then keeps every applied entry in memory).
pub fn retention<T>(text: &str, min: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Bounded,
{
    if text == "unbounded" {
        return Ok(T::MAX);
    }
    match text.parse::<T>() {
        Ok(n) if n >= min => Ok(n),
        Ok(_) => Err(format!("must be at least {min}, or `unbounded`")),
        Err(_) => Err("not a whole number or `unbounded`".to_string()),
    }
}

/// The largest value of an integer type (for `retention`'s `unbounded`).
pub trait Bounded {
    /// The largest value.
    const MAX: Self;
}

impl Bounded for u64 {
    const MAX: u64 = u64::MAX;
}

impl Bounded for usize {
    const MAX: usize = usize::MAX;
}

/// `--retention-instances-max`: at least 1, or `unbounded`.
pub fn retention_instances(text: &str) -> Result<u64, String> {
    retention(text, 1u64)
}

/// `--retention-size-max`: bytes, or `unbounded`.
pub fn retention_size(text: &str) -> Result<usize, String> {
    retention(text, 0usize)
}

/// A finite number above zero (a clap value parser: seconds, rates).
pub fn positive_f64(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err("must be a positive number".to_string()),
    }
}

/// A finite number, zero or above (a clap value parser: seconds).
pub fn non_negative_f64(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x >= 0.0 && x.is_finite() => Ok(x),
        _ => Err("must be a number, zero or above".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::{retention_instances, retention_size};

    // Goal: the retention flags take a count, a byte size or `unbounded`, and refuse
    // zero instances and words.
    // Method: parse each kind of value.
    #[test]
    fn retention_flags_parse() {
        assert_eq!(retention_instances("64"), Ok(64));
        assert_eq!(retention_instances("unbounded"), Ok(u64::MAX));
        assert!(retention_instances("0").is_err());
        assert!(retention_instances("many").is_err());
        assert_eq!(retention_size("0"), Ok(0));
        assert_eq!(retention_size("unbounded"), Ok(usize::MAX));
        assert!(retention_size("-1").is_err());
    }
}
