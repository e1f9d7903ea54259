//! `synod serve`: one node of a cluster, configured by flags and a configuration file
//! (`--config FILE`, `serve_config`: a flag given overrides the file), until stdin
//! closes (with `--control`), or SIGTERM or SIGINT arrives (without it), or the process
//! is killed. Both ends are graceful: the node shuts down (`Node::shutdown`: the shards
//! stop, what their WALs hold is durable) and the process exits 0.
//!
//! With `--control`, stdin takes commands, one per line: `status` prints one line per
//! group (`group <g> role <role> applied <instance> checksum <crc> checkpoint
//! <instance>`, the last the group's durable checkpoint) and `end`;
//! `propose <group> <word>` prints `proposed <group> <instance>` or
//! `error <group> <reason>`; end of input shuts the node down gracefully. Tests drive a node in a separate
//! process this way (and SIGKILL it).
//!
//! Peers authenticate with the cluster's shared key (`--key-file FILE`, written by
//! `synod keygen`); running without one needs an explicit `--no-auth`.
//!
//! Every group runs the built-in key-value store (`synod::kv`) unless
//! `--state-machine null` asks for the machine that applies nothing. A `--control`
//! `propose <group> <word>` is chosen and applied like any value; the store answers
//! it `Malformed` and changes nothing (the log, not the store, is what it tests).
//!
//! With `--client ADDR`, the node also listens for clients (`synod::server`, the client
//! protocol of `schema/client.fbs`): `synod::client::Client` and `synod bench
//! --target` talk to it. `--client-nodes ID=IP:PORT,...` lists the other nodes'
//! client addresses, sent to every client so that it can follow leader hints.
//!
//! With `--metrics-listen [IP:]PORT` (`metrics.listen`), the node serves `GET /metrics`
//! in the Prometheus text format (`synod::server::metrics`, `synod::api::metrics`),
//! unauthenticated and read-only, on 127.0.0.1 given a port alone; it prints
//! `metrics IP:PORT` before `ready`.
//!
//! The command line refuses (clap, exit status 2): `--new` with `--existing`, a key
//! file with `--no-auth`, a client bound that is zero; without `--config`, neither
//! `--key-file` nor `--no-auth`, a `--client-*` flag without `--client`, `--client`
//! without `--client-key-file` or `--no-auth` (with `--config`, the same rules are
//! checked on the merged settings at start-up, with the file's key names). Start-up
//! refuses (exit status 1), in one line naming the key or flag: a configuration file
//! that does not parse or holds an unknown key, a required setting given by neither
//! the file nor a flag, an empty
//! `--dir` without `--new` or `--existing`, a `--client` address inside a node's shard
//! ports, an invalid configuration (`Config::validate`: overlapping shard ports among
//! them), a data directory that fails the shards' write probe, an unreadable key file.
//! Exit statuses: 0 after a graceful stop, 1 for a refused start, `EXIT_SHARD_STOPPED`
//! (3) the moment a shard stops for good (`synod: node N shard S stopped: <reason>;
//! exiting` on stderr): the node never stays up serving part of its groups.
//! `--client-key-file FILE` (hex, as `synod keygen` writes) is the client key every
//! client must prove it holds; without it, `--no-auth` must say so explicitly.
//!
//! Under a service manager (`$NOTIFY_SOCKET`, `cli::notify`): `READY=1` right after
//! the `ready` line, `STOPPING=1` when a graceful stop begins.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgGroup, Args};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use synod::api::{InitialState, Node, NodeHandle, ShardStopped};
use synod::kv::kv_factory;
use synod::paxos::{GroupId, NodeId};
use synod::runtime::driver::null_factory;
use synod::server::metrics::MetricsServer;
use synod::server::Server;

use super::notify::Notifier;
use super::serve_config::{metrics_address, ServeFile, StateMachine, CLIENT_FRAME_SIZE_MIN};
use super::{parse_nodes, positive, read_key, retention_instances, retention_size};

/// The flags of `synod serve`. Each overrides the configuration file's key of the same
/// concern (named in its help); a default in brackets applies when neither gives one.
#[derive(Clone, Debug, Args)]
#[command(group(ArgGroup::new("client_auth")
    .args(["client_key_file", "no_auth", "config"]).multiple(true)))]
#[command(group(ArgGroup::new("client_source").args(["client", "config"]).multiple(true)))]
pub struct ServeArgs {
    /// A TOML configuration file (`tools/synod.example.toml` lists every key); the
    /// flags given override its keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's id, one of --nodes (node.id).
    #[arg(long, value_name = "ID", required_unless_present = "config")]
    pub node: Option<u32>,
    /// Every node of the cluster and its base peer address (this node's too): shard s
    /// of a node listens on PORT + s. Two nodes on one IP must not have overlapping
    /// port ranges (cluster.nodes).
    #[arg(long, value_name = "ID=IP:PORT,...", value_parser = parse_nodes,
          required_unless_present = "config")]
    pub nodes: Option<BTreeMap<NodeId, SocketAddr>>,
    /// The initial voters of every group, ids of --nodes, the same on every node
    /// (cluster.voters) [default: every node of --nodes]. The others host every group
    /// as non-voters until `synod admin add-voter` adds them.
    #[arg(long, value_name = "ID,...", value_delimiter = ',')]
    pub voters: Option<Vec<u32>>,
    /// The data directory (WAL segments and the node's identity, synod.id). An empty
    /// one needs --new or --existing (node.dir).
    #[arg(long, value_name = "DIR", required_unless_present = "config")]
    pub dir: Option<PathBuf>,
    /// The cluster's id: nodes and clients of another cluster are refused (cluster.id)
    /// [default: 1].
    #[arg(long, value_name = "C")]
    pub cluster: Option<u64>,
    /// Shards (threads, cores) per node; every node of a cluster must use the same
    /// count (a group lives on the same shard everywhere) (cluster.shards) [default: 1].
    #[arg(long, value_name = "S")]
    pub shards: Option<u16>,
    /// Groups 0..G, each replicated by every node (cluster.groups) [default: 1].
    #[arg(long, value_name = "G")]
    pub groups: Option<u32>,
    /// Core of each shard's thread (cores[s] for shard s, at least one per shard).
    /// Default: threads are not pinned (runtime.cores).
    #[arg(long, value_name = "C,C,...", value_delimiter = ',')]
    pub cores: Vec<usize>,
    /// Timer granularity in milliseconds: a shard sleeps at least this long unless woken
    /// by I/O, so the heartbeats of many groups leave in one frame. At most a quarter of
    /// the heartbeat interval (runtime.tick_ms) [default: the configuration's tick].
    #[arg(long, value_name = "T")]
    pub tick_ms: Option<u64>,
    /// Take a group's checkpoint every N instances applied (0: not by instances)
    /// (checkpoint.instances) [default: 20000].
    #[arg(long, value_name = "N")]
    pub checkpoint_instances: Option<u64>,
    /// Take a group's checkpoint every B bytes of values applied (0: not by bytes)
    /// (checkpoint.bytes) [default: 268435456].
    #[arg(long, value_name = "B")]
    pub checkpoint_bytes: Option<u64>,
    /// Take a group's checkpoint every S seconds if it applied anything (0: not by
    /// time) (checkpoint.interval_s) [default: 60]. All three at 0: no checkpoints.
    #[arg(long, value_name = "S")]
    pub checkpoint_interval_s: Option<u64>,
    /// Keep every WAL record: never truncate the log below the groups' checkpoints
    /// (`TruncationPolicy::OFF`; the WAL then grows without bound) (wal.truncation =
    /// false).
    #[arg(long)]
    pub no_truncation: bool,
    /// Applied instances each group keeps in memory (`GroupConfig::
    /// retention_instances_max`); older ones are served to lagging peers from the WAL.
    /// `unbounded` keeps them all (group.retention_instances_max) [default: 4096].
    #[arg(long, value_name = "N", value_parser = retention_instances)]
    pub retention_instances_max: Option<u64>,
    /// Bytes of applied entries each group keeps in memory (`GroupConfig::
    /// retention_size_max`); `unbounded` keeps them all (group.retention_size_max)
    /// [default: 16 MiB].
    #[arg(long, value_name = "B", value_parser = retention_size)]
    pub retention_size_max: Option<usize>,
    /// Where each group's leader sits: `balanced` (a preferred leader per group, spread
    /// evenly over the voters, to which leadership moves back) or `off` (wherever
    /// elections and transfers put it) (group.leader_placement) [default: balanced].
    #[arg(long, value_name = "POLICY", value_parser = ["balanced", "off"])]
    pub leader_placement: Option<String>,
    /// The empty --dir is a new member of a new cluster: it votes at once
    /// (node.initial_state = "new").
    #[arg(long, conflicts_with = "existing")]
    pub new: bool,
    /// The empty --dir is a member that lost its data: it rejoins as a non-voting
    /// learner until it has re-learned from a quorum (it never votes with forgotten
    /// promises) (node.initial_state = "existing").
    #[arg(long)]
    pub existing: bool,
    /// The state machine of every group: `kv`, the built-in replicated key-value store
    /// (`synod::kv`: `synod put|get|del|cas|scan` talk to it), or `null`, which
    /// applies nothing and answers every read with empty bytes (the log itself is the
    /// product: for benchmarks of the log alone, as `synod bench` runs). Every node of a
    /// cluster must run the same one (node.state_machine) [default: kv].
    #[arg(long, value_name = "MACHINE", value_parser = ["kv", "null"])]
    pub state_machine: Option<String>,
    /// Commands on stdin, one per line: `status` (one line per group, then `end`),
    /// `propose <group> <word>`; end of input shuts the node down gracefully.
    #[arg(long)]
    pub control: bool,
    /// Timeouts for tests: election 300 ms, heartbeat 20 ms, lease 150 ms, retransmit
    /// 50 ms, tick 2 ms, 8 MiB segments, 2 MiB WAL buffer, 500 ms drain.
    #[arg(long)]
    pub test_timeouts: bool,
    /// The cluster's shared peer key (hex; create one with `synod keygen > FILE`, copy
    /// it to every node). Required unless --no-auth (auth.peer_key_file).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["no_auth", "config"],
        conflicts_with = "no_auth"
    )]
    pub key_file: Option<PathBuf>,
    /// Run without authentication: peers without --key-file, clients without
    /// --client-key-file (auth.no_auth).
    #[arg(long)]
    pub no_auth: bool,
    /// Serve `GET /metrics` (Prometheus text format, unauthenticated, read-only) at
    /// IP:PORT, or at 127.0.0.1:PORT given a port alone (metrics.listen) [default:
    /// none].
    #[arg(long, value_name = "[IP:]PORT", value_parser = metrics_address)]
    pub metrics_listen: Option<SocketAddr>,
    /// Also serve clients (synod::client, `synod bench --target`) at this address,
    /// outside every node's shard ports. Needs --client-key-file or --no-auth
    /// (client.address).
    #[arg(long, value_name = "IP:PORT", requires = "client_auth")]
    pub client: Option<SocketAddr>,
    /// The other nodes' client addresses, sent to every client so that it can follow
    /// leader hints (client.nodes) [default: this node's only].
    #[arg(long, value_name = "ID=IP:PORT,...", value_parser = parse_nodes,
          requires = "client_source")]
    pub client_nodes: Option<BTreeMap<NodeId, SocketAddr>>,
    /// Requests of one client connection waiting for the node; at the bound the
    /// listener stops reading it (TCP backpressure).
    /// (client.in_flight_max) [default: 1024]
    #[arg(long, value_name = "N", requires = "client_source",
          value_parser = positive::<usize>)]
    pub client_in_flight_max: Option<usize>,
    /// Client connections at once; one more is refused.
    /// (client.connections_max) [default: 256]
    #[arg(long, value_name = "N", requires = "client_source",
          value_parser = positive::<usize>)]
    pub client_connections_max: Option<usize>,
    /// Largest frame a client may send, in bytes, at least 64; must hold the largest
    /// value plus about 100 bytes.
    /// (client.frame_size_max) [default: 4194304]
    #[arg(long, value_name = "B", requires = "client_source", value_parser = frame_size)]
    pub client_frame_size_max: Option<usize>,
    /// Client connections at once from one IP address.
    /// (client.connections_per_source_max) [default: 64]
    #[arg(long, value_name = "N", requires = "client_source",
          value_parser = positive::<usize>)]
    pub client_connections_per_source_max: Option<usize>,
    /// Client connections at once that have not completed the handshake; one more
    /// evicts the oldest of them.
    /// (client.unauthenticated_max) [default: 64]
    #[arg(long, value_name = "N", requires = "client_source",
          value_parser = positive::<usize>)]
    pub client_unauthenticated_max: Option<usize>,
    /// Seconds after which an authenticated client connection with nothing in flight
    /// that sends nothing is closed.
    /// (client.idle_timeout_s) [default: 120]
    #[arg(long, value_name = "S", requires = "client_source", value_parser = positive::<u64>)]
    pub client_idle_timeout_s: Option<u64>,
    /// The client key (hex, 16 to 64 bytes, as `synod keygen` writes) every client
    /// must prove it holds; separate from the peer key. With --client
    /// (auth.client_key_file).
    #[arg(
        long,
        value_name = "FILE",
        requires = "client_source",
        conflicts_with = "no_auth"
    )]
    pub client_key_file: Option<PathBuf>,
}

/// A client frame size of at least `CLIENT_FRAME_SIZE_MIN` (a clap value parser).
fn frame_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(size) if size >= CLIENT_FRAME_SIZE_MIN => Ok(size),
        _ => Err(format!(
            "must be a byte count of at least {CLIENT_FRAME_SIZE_MIN}"
        )),
    }
}

/// Runs `synod serve`: the configuration file (if any) with the flags over it.
pub fn main(args: ServeArgs) -> Result<ExitCode, String> {
    // Read first: an address it cannot use is refused before anything starts.
    let notifier = Notifier::from_env()?;
    let mut settings = match &args.config {
        Some(path) => ServeFile::load(path)?,
        None => ServeFile::default(),
    };
    settings.overlay(&args);
    let plan = settings
        .plan(args.test_timeouts)
        .map_err(|e| match &args.config {
            Some(path) => format!("--config {}: {e}", path.display()),
            None => e,
        })?;
    let mut config = plan.config;
    // The key file's origin names it in an error: the flag, or the file's key.
    let origin = |flag: &Option<PathBuf>, name: &'static str, key: &'static str| {
        if flag.is_some() {
            name
        } else {
            key
        }
    };
    let peer_key = origin(&args.key_file, "--key-file", "auth.peer_key_file");
    config.peer_key = read_key(peer_key, plan.peer_key_file.as_deref())?;
    config.initial_state = initial_state(plan.initial_state, &config.data_dir)?;
    let client = match plan.client {
        Some(mut client) => {
            let name = origin(
                &args.client_key_file,
                "--client-key-file",
                "auth.client_key_file",
            );
            client.key = read_key(name, plan.client_key_file.as_deref())?;
            Some(client)
        }
        None => None,
    };
    let factory = match plan.state_machine {
        StateMachine::Null => null_factory(),
        StateMachine::Kv => kv_factory(),
    };
    let node_id = config.node.0;
    // Installed before the node starts, so that a stop sent while it recovers or opens
    // its listeners is held and acted on once it is up (a graceful stop, not death by
    // the signal's default action).
    let mut signals = Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("installing the SIGTERM and SIGINT handlers: {e}"))?;
    let node = Node::start(config, factory).map_err(|e| e.to_string())?;
    // Dropped (closing the listener) when the node shuts down, at the end of main.
    let _server = match client {
        Some(client) => {
            let address = client.address;
            let server = Server::start(client, node.handle())
                .map_err(|e| format!("--client {address}: {e}"))?;
            println!("clients {}", server.local_addr());
            Some(server)
        }
        None => None,
    };
    // Dropped (stopping its thread) when the node shuts down, at the end of main.
    let _metrics = match plan.metrics {
        Some(address) => {
            let server = MetricsServer::start(address, node.handle())
                .map_err(|e| format!("--metrics-listen {address}: {e}"))?;
            println!("metrics {}", server.local_addr());
            Some(server)
        }
        None => None,
    };
    exit_on_fatal(node.handle());
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    notifier.notify(&format!("READY=1\nSTATUS=node {node_id} serving"));
    if !args.control {
        let signal = signals.forever().next().unwrap_or(SIGTERM);
        let name = if signal == SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        log::info!("{name}: shutting down");
        notifier.notify(&format!(
            "STOPPING=1\nSTATUS=node {node_id} stopping ({name})"
        ));
        if let Some(stopped) = node.shutdown().first() {
            exit_shard_stopped(stopped);
        }
        println!("stopped");
        return Ok(ExitCode::SUCCESS);
    }
    let controlled = control(&node.handle());
    notifier.notify(&format!(
        "STOPPING=1\nSTATUS=node {node_id} stopping (end of input)"
    ));
    // A shard that stopped meanwhile decides the exit status, whatever the loop saw.
    if let Some(stopped) = node.fatal() {
        exit_shard_stopped(&stopped);
    }
    controlled?;
    if let Some(stopped) = node.shutdown().first() {
        exit_shard_stopped(stopped);
    }
    Ok(ExitCode::SUCCESS)
}

/// The `--control` loop: commands from stdin until it ends (module docs).
fn control(handle: &NodeHandle) -> Result<(), String> {
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["propose", group, value] = words[..] {
            let group = GroupId(
                group
                    .parse()
                    .map_err(|_| format!("propose: bad group {group:?}"))?,
            );
            let result =
                futures_lite::future::block_on(handle.propose(group, value.as_bytes().to_vec()));
            let mut out = std::io::stdout().lock();
            match result {
                Ok(proposed) => {
                    writeln!(out, "proposed {} {}", group.0, proposed.position.instance.0)
                }
                Err(error) => writeln!(out, "error {} {error}", group.0),
            }
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
        } else if line.trim() == "status" {
            let statuses =
                futures_lite::future::block_on(handle.status()).map_err(|e| e.to_string())?;
            let mut out = std::io::stdout().lock();
            for group in statuses.iter().flat_map(|s| &s.groups) {
                writeln!(
                    out,
                    "group {} role {:?} applied {} checksum {} checkpoint {}",
                    group.group.0,
                    group.role,
                    group.applied_through.0,
                    group.checksum,
                    group.checkpoint_through.0
                )
                .map_err(|e| e.to_string())?;
            }
            writeln!(out, "end").map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The exit status of a node whose shard stopped for good (a failed or full disk, a
/// panic): distinct from 1 (a refused start), so that a supervisor can tell them apart.
pub const EXIT_SHARD_STOPPED: u8 = 3;

/// Watches the node from a thread of its own: the moment a shard stops for good, the
/// reason goes to stderr and the process exits with `EXIT_SHARD_STOPPED`, as a crash
/// would (everything acknowledged is durable; the other nodes take over this node's
/// groups by election, and a supervisor restarts it). A node never stays up serving
/// only part of its groups.
fn exit_on_fatal(handle: NodeHandle) {
    std::thread::Builder::new()
        .name("synod-fatal".into())
        .spawn(move || {
            if let Some(stopped) = handle.wait_fatal(None) {
                exit_shard_stopped(&stopped);
            }
        })
        .map(drop)
        .unwrap_or_else(|error| {
            // Without the watcher a dead shard would leave a half-dead node behind.
            eprintln!("synod: cannot start the fatal-stop watcher: {error}; exiting");
            std::process::exit(i32::from(EXIT_SHARD_STOPPED));
        });
}

/// Ends the process for a shard that stopped for good: the reason on stderr, status
/// `EXIT_SHARD_STOPPED`.
fn exit_shard_stopped(stopped: &ShardStopped) -> ! {
    eprintln!("synod: {stopped}; exiting");
    std::process::exit(i32::from(EXIT_SHARD_STOPPED))
}

/// What an empty data directory means, from `--new` or `--existing` (which exclude
/// each other on the command line) or `node.initial_state`: one of them is required
/// when `dir` holds no node's identity, since guessing wrong either lets a wiped member
/// vote with forgotten promises or leaves a new cluster without voters.
fn initial_state(said: Option<InitialState>, dir: &Path) -> Result<InitialState, String> {
    if let Some(state) = said {
        return Ok(state);
    }
    let claimed =
        synod::api::data_dir_claimed(dir).map_err(|e| format!("--dir {}: {e}", dir.display()))?;
    if claimed {
        Ok(InitialState::New)
    } else {
        Err(format!(
            "--dir {} holds no node's data: pass --new (a new member of a new \
             cluster) or --existing (a member that lost its data: it rejoins as \
             a learner), or set node.initial_state",
            dir.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, Synod};
    use clap::error::ErrorKind;
    use clap::{CommandFactory, Parser};
    use synod::server::ServerConfig;

    /// `synod serve --node 1 --nodes 1=127.0.0.1:7000 --dir d ARGS` parsed.
    fn serve(args: &str) -> Result<ServeArgs, clap::Error> {
        let line = "synod serve --node 1 --nodes 1=127.0.0.1:7000 --dir d";
        let line = line.split_whitespace().chain(args.split_whitespace());
        match Synod::try_parse_from(line)?.command {
            Command::Serve(args) => Ok(*args),
            other => panic!("not serve: {other:?}"),
        }
    }

    // Goal: the flag combinations serve refused by hand are clap constraints with the
    // same meaning (without --config), the client defaults taken are the listener's
    // own, and the defaults the help shows are those.
    // Method: parse flag lists; compare the plan's and the help's defaults with
    // `ServerConfig::new`.
    #[test]
    fn constraints_and_defaults() {
        let kind = |args: &str| serve(args).expect_err(args).kind();
        assert_eq!(
            kind("--no-auth --new --existing"),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(kind(""), ErrorKind::MissingRequiredArgument);
        assert_eq!(kind("--key-file k --no-auth"), ErrorKind::ArgumentConflict);
        assert_eq!(
            kind("--key-file k --client 127.0.0.1:9"),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            kind("--no-auth --client 127.0.0.1:9 --client-key-file c"),
            ErrorKind::ArgumentConflict
        );
        for companion in [
            "--client-nodes 1=127.0.0.1:9",
            "--client-in-flight-max 4",
            "--client-idle-timeout-s 5",
        ] {
            let args = format!("--no-auth {companion}");
            assert_eq!(kind(&args), ErrorKind::MissingRequiredArgument, "{args}");
        }
        for zero in [
            "--client-in-flight-max 0",
            "--client-connections-max 0",
            "--client-connections-per-source-max 0",
            "--client-unauthenticated-max 0",
            "--client-idle-timeout-s 0",
            "--client-frame-size-max 63",
        ] {
            let args = format!("--no-auth --client 127.0.0.1:9 {zero}");
            assert_eq!(kind(&args), ErrorKind::ValueValidation, "{args}");
        }
        let args = serve("--key-file k --client 127.0.0.1:9 --client-key-file c --new")
            .expect("a keyed client listener");
        let mut settings = ServeFile::default();
        settings.overlay(&args);
        let plan = settings.plan(false).expect("valid");
        let client = plan.client.expect("a listener");
        let defaults = ServerConfig::new(client.address, 1, NodeId(1), vec![NodeId(1)]);
        assert_eq!(client.in_flight_max, defaults.in_flight_max);
        assert_eq!(client.frame_size_max, defaults.frame_size_max);
        assert_eq!(client.idle_timeout, defaults.idle_timeout);
        let command = Synod::command();
        let serve_command = command.find_subcommand("serve").expect("serve");
        let help = |id: &str| {
            serve_command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_help())
                .map(ToString::to_string)
                .unwrap_or_else(|| panic!("no help for {id}"))
        };
        for (id, default) in [
            ("client_in_flight_max", defaults.in_flight_max as u64),
            ("client_connections_max", defaults.connections_max as u64),
            ("client_frame_size_max", defaults.frame_size_max as u64),
            (
                "client_connections_per_source_max",
                defaults.connections_per_source_max as u64,
            ),
            (
                "client_unauthenticated_max",
                defaults.unauthenticated_max as u64,
            ),
            ("client_idle_timeout_s", defaults.idle_timeout.as_secs()),
        ] {
            let text = help(id);
            assert!(
                text.contains(&format!("[default: {default}]")),
                "{id}: {text}"
            );
        }
        let args = serve("--no-auth --cores 0,1 --shards 2").expect("no auth");
        assert_eq!(args.cores, vec![0, 1]);
        assert!(args.key_file.is_none() && args.client.is_none());
    }
}
