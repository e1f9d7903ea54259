//! `synod serve`: one node of a cluster, configured by flags, until stdin closes (with
//! `--control`) or the process is killed.
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
//! The command line refuses (clap, exit status 2): `--new` with `--existing`, neither
//! `--key-file` nor `--no-auth`, a key file with `--no-auth`, a `--client-*` flag
//! without `--client`, `--client` without `--client-key-file` or `--no-auth`, a client
//! bound that is zero. Start-up refuses, in one line naming both values: an empty
//! `--dir` without `--new` or `--existing`, a `--client` address inside a node's shard
//! ports, an invalid configuration (`Config::validate`: overlapping shard ports among
//! them), a data directory that fails the shards' write probe, an unreadable key file.
//! Exit statuses: 0 after a graceful stop, 1 for a refused start, `EXIT_SHARD_STOPPED`
//! (3) the moment a shard stops for good (`synod: node N shard S stopped: <reason>;
//! exiting` on stderr): the node never stays up serving part of its groups.
//! `--client-key-file FILE` (hex, as `synod keygen` writes) is the client key every
//! client must prove it holds; without it, `--no-auth` must say so explicitly.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args};
use synod::api::{Config, InitialState, Node, NodeHandle, ShardStopped};
use synod::kv::kv_factory;
use synod::paxos::{GroupId, NodeId};
use synod::runtime::driver::null_factory;
use synod::runtime::truncation::TruncationPolicy;
use synod::server::{Server, ServerConfig};

use super::{parse_nodes, positive, read_key, retention_instances, retention_size};

/// The flags of `synod serve`.
#[derive(Clone, Debug, Args)]
#[command(group(ArgGroup::new("client_auth").args(["client_key_file", "no_auth"])))]
pub struct ServeArgs {
    /// This node's id (one of --nodes).
    #[arg(long, value_name = "ID")]
    pub node: u32,
    /// Every node of the cluster and its base peer address (this node's too): shard s
    /// of a node listens on PORT + s. Two nodes on one IP must not have overlapping
    /// port ranges.
    #[arg(long, value_name = "ID=IP:PORT,...", value_parser = parse_nodes)]
    pub nodes: BTreeMap<NodeId, SocketAddr>,
    /// The data directory (WAL segments and the node's identity, synod.id). An empty
    /// one needs --new or --existing.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The cluster's id: nodes and clients of another cluster are refused.
    #[arg(long, value_name = "C", default_value_t = 1)]
    pub cluster: u64,
    /// Shards (threads, cores) per node; every node of a cluster must use the same
    /// count (a group lives on the same shard everywhere).
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub shards: u16,
    /// Groups 0..G, each replicated by every node.
    #[arg(long, value_name = "G", default_value_t = 1)]
    pub groups: u32,
    /// Core of each shard's thread (cores[s] for shard s, at least one per shard).
    /// Default: threads are not pinned.
    #[arg(long, value_name = "C,C,...", value_delimiter = ',')]
    pub cores: Vec<usize>,
    /// Timer granularity in milliseconds: a shard sleeps at least this long unless woken
    /// by I/O, so the heartbeats of many groups leave in one frame. At most a quarter of
    /// the heartbeat interval [default: the configuration's tick].
    #[arg(long, value_name = "T")]
    pub tick_ms: Option<u64>,
    /// Take a group's checkpoint every N instances applied (0: not by instances)
    /// [default: 20000].
    #[arg(long, value_name = "N")]
    pub checkpoint_instances: Option<u64>,
    /// Take a group's checkpoint every B bytes of values applied (0: not by bytes)
    /// [default: 268435456].
    #[arg(long, value_name = "B")]
    pub checkpoint_bytes: Option<u64>,
    /// Take a group's checkpoint every S seconds if it applied anything (0: not by
    /// time) [default: 60]. All three at 0: no checkpoints.
    #[arg(long, value_name = "S")]
    pub checkpoint_interval_s: Option<u64>,
    /// Keep every WAL record: never truncate the log below the groups' checkpoints
    /// (`TruncationPolicy::OFF`; the WAL then grows without bound).
    #[arg(long)]
    pub no_truncation: bool,
    /// Applied instances each group keeps in memory (`GroupConfig::
    /// retention_instances_max`); older ones are served to lagging peers from the WAL.
    /// `unbounded` keeps them all [default: 4096].
    #[arg(long, value_name = "N", value_parser = retention_instances)]
    pub retention_instances_max: Option<u64>,
    /// Bytes of applied entries each group keeps in memory (`GroupConfig::
    /// retention_size_max`); `unbounded` keeps them all [default: 16 MiB].
    #[arg(long, value_name = "B", value_parser = retention_size)]
    pub retention_size_max: Option<usize>,
    /// The empty --dir is a new member of a new cluster: it votes at once.
    #[arg(long, conflicts_with = "existing")]
    pub new: bool,
    /// The empty --dir is a member that lost its data: it rejoins as a non-voting
    /// learner until it has re-learned from a quorum (it never votes with forgotten
    /// promises).
    #[arg(long)]
    pub existing: bool,
    /// The state machine of every group: `kv`, the built-in replicated key-value store
    /// (`synod::kv`: `synod put|get|del|cas|scan` talk to it), or `null`, which
    /// applies nothing and answers every read with empty bytes (the log itself is the
    /// product: for benchmarks of the log alone, as `synod bench` runs). Every node of a
    /// cluster must run the same one.
    #[arg(long, value_name = "MACHINE", default_value = "kv", value_parser = ["kv", "null"])]
    pub state_machine: String,
    /// Commands on stdin, one per line: `status` (one line per group, then `end`),
    /// `propose <group> <word>`; end of input shuts the node down gracefully.
    #[arg(long)]
    pub control: bool,
    /// Timeouts for tests: election 300 ms, heartbeat 20 ms, lease 150 ms, retransmit
    /// 50 ms, tick 2 ms, 8 MiB segments, 2 MiB WAL buffer, 500 ms drain.
    #[arg(long)]
    pub test_timeouts: bool,
    /// The cluster's shared peer key (hex; create one with `synod keygen > FILE`, copy
    /// it to every node). Required unless --no-auth.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "no_auth",
        conflicts_with = "no_auth"
    )]
    pub key_file: Option<PathBuf>,
    /// Run without authentication: peers without --key-file, clients without
    /// --client-key-file.
    #[arg(long)]
    pub no_auth: bool,
    /// Also serve clients (synod::client, `synod bench --target`) at this address,
    /// outside every node's shard ports. Needs --client-key-file or --no-auth.
    #[arg(long, value_name = "IP:PORT", requires = "client_auth")]
    pub client: Option<SocketAddr>,
    /// The other nodes' client addresses, sent to every client so that it can follow
    /// leader hints [default: this node's only].
    #[arg(long, value_name = "ID=IP:PORT,...", value_parser = parse_nodes,
          requires = "client")]
    pub client_nodes: Option<BTreeMap<NodeId, SocketAddr>>,
    /// Requests of one client connection waiting for the node; at the bound the
    /// listener stops reading it (TCP backpressure).
    #[arg(long, value_name = "N", requires = "client",
          default_value_t = client_defaults().in_flight_max,
          value_parser = positive::<usize>)]
    pub client_in_flight_max: usize,
    /// Client connections at once; one more is refused.
    #[arg(long, value_name = "N", requires = "client",
          default_value_t = client_defaults().connections_max,
          value_parser = positive::<usize>)]
    pub client_connections_max: usize,
    /// Largest frame a client may send, in bytes, at least 64; must hold the largest
    /// value plus about 100 bytes.
    #[arg(long, value_name = "B", requires = "client",
          default_value_t = client_defaults().frame_size_max,
          value_parser = frame_size)]
    pub client_frame_size_max: usize,
    /// Client connections at once from one IP address.
    #[arg(long, value_name = "N", requires = "client",
          default_value_t = client_defaults().connections_per_source_max,
          value_parser = positive::<usize>)]
    pub client_connections_per_source_max: usize,
    /// Client connections at once that have not completed the handshake; one more
    /// evicts the oldest of them.
    #[arg(long, value_name = "N", requires = "client",
          default_value_t = client_defaults().unauthenticated_max,
          value_parser = positive::<usize>)]
    pub client_unauthenticated_max: usize,
    /// Seconds after which an authenticated client connection with nothing in flight
    /// that sends nothing is closed.
    #[arg(long, value_name = "S", requires = "client",
          default_value_t = client_defaults().idle_timeout.as_secs(),
          value_parser = positive::<u64>)]
    pub client_idle_timeout_s: u64,
    /// The client key (hex, 16 to 64 bytes, as `synod keygen` writes) every client
    /// must prove it holds; separate from the peer key. With --client.
    #[arg(
        long,
        value_name = "FILE",
        requires = "client",
        conflicts_with = "no_auth"
    )]
    pub client_key_file: Option<PathBuf>,
}

/// The client listener's defaults (`ServerConfig::new`), shown by `--help` and taken
/// when a flag is not given.
fn client_defaults() -> ServerConfig {
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    ServerConfig::new(unspecified, 1, NodeId(1), Vec::new())
}

/// Smallest `--client-frame-size-max`: a handshake frame must fit.
const CLIENT_FRAME_SIZE_MIN: usize = 64;

/// A client frame size of at least `CLIENT_FRAME_SIZE_MIN` (a clap value parser).
fn frame_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(size) if size >= CLIENT_FRAME_SIZE_MIN => Ok(size),
        _ => Err(format!(
            "must be a byte count of at least {CLIENT_FRAME_SIZE_MIN}"
        )),
    }
}

/// Runs `synod serve`.
pub fn main(args: ServeArgs) -> Result<ExitCode, String> {
    let mut config = Config::new(
        NodeId(args.node),
        args.cluster,
        args.nodes.clone(),
        args.dir.clone(),
    );
    config.peer_key = read_key("--key-file", args.key_file.as_deref())?;
    config.shards = args.shards;
    config.group_count = args.groups;
    config.cores = args.cores.clone();
    config.initial_state = initial_state(&args, &config.data_dir)?;
    if args.test_timeouts {
        config.group.election_timeout_ns = 300_000_000;
        config.group.heartbeat_interval_ns = 20_000_000;
        config.group.lease_ns = 150_000_000;
        config.group.retransmit_ns = 50_000_000;
        config.tick = Duration::from_millis(2);
        config.segment_size = 8 << 20;
        config.wal_buffer_size_max = 2 << 20;
        config.drain_timeout = Duration::from_millis(500);
    }
    if let Some(ms) = args.tick_ms {
        config.tick = Duration::from_millis(ms);
    }
    if let Some(n) = args.checkpoint_instances {
        config.checkpoint.instance_count = n;
    }
    if let Some(b) = args.checkpoint_bytes {
        config.checkpoint.applied_size = b;
    }
    if let Some(s) = args.checkpoint_interval_s {
        config.checkpoint.interval_ns = s.saturating_mul(1_000_000_000);
    }
    if args.no_truncation {
        config.truncation = TruncationPolicy::OFF;
    }
    if let Some(instances) = args.retention_instances_max {
        config.group.retention_instances_max = instances;
    }
    if let Some(size) = args.retention_size_max {
        config.group.retention_size_max = size;
    }
    let client = client_config(&args, &config)?;
    let factory = match args.state_machine.as_str() {
        "null" => null_factory(),
        _ => kv_factory(),
    };
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
    exit_on_fatal(node.handle());
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    if !args.control {
        loop {
            std::thread::park();
        }
    }
    let controlled = control(&node.handle());
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
/// each other on the command line): one of them is required when `dir` holds no node's
/// identity, since guessing wrong either lets a wiped member vote with forgotten
/// promises or leaves a new cluster without voters.
fn initial_state(args: &ServeArgs, dir: &Path) -> Result<InitialState, String> {
    if args.new {
        return Ok(InitialState::New);
    }
    if args.existing {
        return Ok(InitialState::Existing);
    }
    let claimed =
        synod::api::data_dir_claimed(dir).map_err(|e| format!("--dir {}: {e}", dir.display()))?;
    if claimed {
        Ok(InitialState::New)
    } else {
        Err(format!(
            "--dir {} holds no node's data: pass --new (a new member of a new \
             cluster) or --existing (a member that lost its data: it rejoins as \
             a learner)",
            dir.display()
        ))
    }
}

/// The client listener's settings from `--client` and its companions, if `--client`
/// is given (the command line has checked the flags that need it and their ranges).
fn client_config(args: &ServeArgs, config: &Config) -> Result<Option<ServerConfig>, String> {
    let Some(address) = args.client else {
        return Ok(None);
    };
    // Conservative where an IP is unspecified (0.0.0.0 takes the port on every IP).
    for (node, base) in &config.nodes {
        let ports = u32::from(base.port())..u32::from(base.port()) + u32::from(config.shards);
        let same_ip = address.ip() == base.ip()
            || address.ip().is_unspecified()
            || base.ip().is_unspecified();
        if same_ip && ports.contains(&u32::from(address.port())) {
            return Err(format!(
                "--client {address} is inside node {}'s shard ports {}:{}..{} (shard s \
                 listens on {base} + s, {} shards)",
                node.0,
                base.ip(),
                ports.start,
                ports.end,
                config.shards
            ));
        }
    }
    let nodes = config.nodes.keys().copied().collect();
    let mut server = ServerConfig::new(address, config.cluster, config.node, nodes);
    for (node, address) in args.client_nodes.iter().flatten() {
        if !config.nodes.contains_key(node) {
            return Err(format!("--client-nodes: node {} is not in --nodes", node.0));
        }
        server.addresses.insert(*node, address.to_string());
    }
    server.in_flight_max = args.client_in_flight_max;
    server.connections_max = args.client_connections_max;
    server.frame_size_max = args.client_frame_size_max;
    server.connections_per_source_max = args.client_connections_per_source_max;
    server.unauthenticated_max = args.client_unauthenticated_max;
    server.idle_timeout = Duration::from_secs(args.client_idle_timeout_s);
    // --client requires one of --client-key-file and --no-auth, which exclude each
    // other: no key means --no-auth said so.
    server.key = read_key("--client-key-file", args.client_key_file.as_deref())?;
    Ok(Some(server))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, Synod};
    use clap::error::ErrorKind;
    use clap::Parser;

    /// `synod serve --node 1 --nodes 1=127.0.0.1:7000 --dir d ARGS` parsed.
    fn serve(args: &str) -> Result<ServeArgs, clap::Error> {
        let line = "synod serve --node 1 --nodes 1=127.0.0.1:7000 --dir d";
        let line = line.split_whitespace().chain(args.split_whitespace());
        match Synod::try_parse_from(line)?.command {
            Command::Serve(args) => Ok(args),
            other => panic!("not serve: {other:?}"),
        }
    }

    // Goal: the flag combinations serve refused by hand are clap constraints with the
    // same meaning, and the client defaults are the listener's own.
    // Method: parse flag lists; compare the defaults with `ServerConfig::new`.
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
        let defaults = client_defaults();
        assert_eq!(args.client_in_flight_max, defaults.in_flight_max);
        assert_eq!(args.client_frame_size_max, defaults.frame_size_max);
        assert_eq!(
            Duration::from_secs(args.client_idle_timeout_s),
            defaults.idle_timeout
        );
        let args = serve("--no-auth --cores 0,1 --shards 2").expect("no auth");
        assert_eq!(args.cores, vec![0, 1]);
        assert!(args.key_file.is_none() && args.client.is_none());
    }
}
