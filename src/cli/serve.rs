//! `synod serve`: one node of a cluster, configured by flags, until stdin closes (with
//! `--control`) or the process is killed.
//!
//! With `--control`, stdin takes commands, one per line: `status` prints one line per
//! group (`group <g> role <role> applied <instance> checksum <crc>`) and `end`;
//! `propose <group> <word>` prints `proposed <group> <instance>` or
//! `error <group> <reason>`; end of input shuts the node down gracefully. Tests drive a node in a separate
//! process this way (and SIGKILL it).
//!
//! Peers authenticate with the cluster's shared key (`--key-file FILE`, written by
//! `synod keygen`); running without one needs an explicit `--no-auth`.
//!
//! With `--client ADDR`, the node also listens for clients (`synod::server`, the client
//! protocol of `schema/client.fbs`): `synod::client::Client` and `synod bench
//! --target` talk to it. `--client-nodes ID=IP:PORT,...` lists the other nodes'
//! client addresses, sent to every client so that it can follow leader hints.
//!
//! Start-up refuses, in one line naming both values: an empty `--dir` without `--new`
//! or `--existing`, a `--client` address inside a node's shard ports, an invalid
//! configuration (`Config::validate`: overlapping shard ports among them), a data
//! directory that fails the shards' write probe. Exit statuses: 0 after a graceful stop,
//! 1 for a refused start or a bad flag, `EXIT_SHARD_STOPPED` (3) the moment a shard stops
//! for good (`synod: node N shard S stopped: <reason>; exiting` on stderr): the node
//! never stays up serving part of its groups.
//! `--client-key-file FILE` (hex, as `synod keygen` writes) is the client key every
//! client must prove it holds; without it, `--no-auth` must say so explicitly.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use synod::api::{Config, InitialState, Node, NodeHandle, ShardStopped};
use synod::paxos::{GroupId, NodeId};
use synod::runtime::driver::null_factory;
use synod::server::{Server, ServerConfig};
use synod::transport::auth::AuthKey;

use super::{check_flags, parse_nodes, parsed, value};

/// Usage lines of `synod serve`.
pub const USAGE: &str =
    "  synod serve --node ID --nodes ID=IP:PORT,... --dir DIR (--key-file FILE | --no-auth)
              [--cluster C] [--shards S]
              [--groups G] [--cores C,C,...] [--tick-ms T] [--new | --existing] [--control]
              [--test-timeouts] [--client IP:PORT [--client-nodes ID=IP:PORT,...]
              [--client-in-flight-max N] [--client-connections-max N]
              [--client-frame-size-max B] [--client-connections-per-source-max N]
              [--client-unauthenticated-max N] [--client-idle-timeout-s S]
              (--client-key-file FILE | --no-auth)]
                                                      run one node (shard s listens on PORT+s);
                                                      an empty DIR needs --new (a new member of
                                                      a new cluster) or --existing (a member
                                                      that lost its data: rejoins as a learner);
                                                      exits 3 when a shard stops for good;
                                                      --key-file: the peer key (synod keygen);
                                                      --client: also serve clients there";

/// Runs `synod serve`.
pub fn main(args: &[String]) -> Result<ExitCode, String> {
    check_flags(
        args,
        &[
            "--node",
            "--nodes",
            "--dir",
            "--cluster",
            "--shards",
            "--groups",
            "--cores",
            "--tick-ms",
            "--client",
            "--client-nodes",
            "--client-in-flight-max",
            "--client-connections-max",
            "--client-frame-size-max",
            "--client-connections-per-source-max",
            "--client-unauthenticated-max",
            "--client-idle-timeout-s",
            "--client-key-file",
            "--key-file",
        ],
        &[
            "--new",
            "--existing",
            "--control",
            "--test-timeouts",
            "--no-auth",
        ],
    )?;
    let node = NodeId(parsed(args, "--node")?.ok_or("--node is required")?);
    let nodes = parse_nodes(value(args, "--nodes")?.ok_or("--nodes is required")?)?;
    let dir = PathBuf::from(value(args, "--dir")?.ok_or("--dir is required")?);
    let mut config = Config::new(node, parsed(args, "--cluster")?.unwrap_or(1), nodes, dir);
    config.peer_key = peer_key(args)?;
    config.shards = parsed(args, "--shards")?.unwrap_or(1);
    config.group_count = parsed(args, "--groups")?.unwrap_or(1);
    config.cores = match value(args, "--cores")? {
        Some(list) => list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|c| {
                c.parse()
                    .map_err(|_| format!("--cores {list}: not a list of numbers"))
            })
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    config.initial_state = initial_state(args, &config.data_dir)?;
    if args.iter().any(|a| a == "--test-timeouts") {
        config.group.election_timeout_ns = 300_000_000;
        config.group.heartbeat_interval_ns = 20_000_000;
        config.group.lease_ns = 150_000_000;
        config.group.retransmit_ns = 50_000_000;
        config.tick = std::time::Duration::from_millis(2);
        config.segment_size = 8 << 20;
        config.wal_buffer_size_max = 2 << 20;
        config.drain_timeout = std::time::Duration::from_millis(500);
    }
    if let Some(ms) = parsed::<u64>(args, "--tick-ms")? {
        config.tick = std::time::Duration::from_millis(ms);
    }
    let client = client_config(args, &config)?;
    let node = Node::start(config, null_factory()).map_err(|e| e.to_string())?;
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
    if !args.iter().any(|a| a == "--control") {
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
                Ok(proposed) => writeln!(out, "proposed {} {}", group.0, proposed.instance.0),
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
                    "group {} role {:?} applied {} checksum {}",
                    group.group.0, group.role, group.applied_through.0, group.checksum
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

/// What an empty data directory means, from `--new` or `--existing`: one of them is
/// required when `dir` holds no node's identity, since guessing wrong either lets a
/// wiped member vote with forgotten promises or leaves a new cluster without voters.
fn initial_state(args: &[String], dir: &std::path::Path) -> Result<InitialState, String> {
    let new = args.iter().any(|a| a == "--new");
    let existing = args.iter().any(|a| a == "--existing");
    match (new, existing) {
        (true, true) => Err("--new and --existing exclude each other".to_string()),
        (true, false) => Ok(InitialState::New),
        (false, true) => Ok(InitialState::Existing),
        (false, false) => {
            let claimed = synod::api::data_dir_claimed(dir)
                .map_err(|e| format!("--dir {}: {e}", dir.display()))?;
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
    }
}

/// The peer key of `--key-file`, or none with an explicit `--no-auth`.
fn peer_key(args: &[String]) -> Result<Option<AuthKey>, String> {
    let no_auth = args.iter().any(|a| a == "--no-auth");
    match (value(args, "--key-file")?, no_auth) {
        (Some(_), true) => Err("--key-file and --no-auth exclude each other".to_string()),
        (Some(path), false) => AuthKey::from_file(std::path::Path::new(path))
            .map(Some)
            .map_err(|e| format!("--key-file: {e}")),
        (None, true) => Ok(None),
        (None, false) => Err(
            "--key-file FILE is required: the cluster's peer key (create one with \
             `synod keygen > FILE`, copy it to every node); --no-auth runs without \
             peer authentication"
                .to_string(),
        ),
    }
}

/// The client listener's settings from `--client` and its companions, if `--client`
/// is given.
fn client_config(args: &[String], config: &Config) -> Result<Option<ServerConfig>, String> {
    let companions = [
        "--client-nodes",
        "--client-in-flight-max",
        "--client-connections-max",
        "--client-frame-size-max",
        "--client-connections-per-source-max",
        "--client-unauthenticated-max",
        "--client-idle-timeout-s",
        "--client-key-file",
    ];
    let Some(address) = value(args, "--client")? else {
        if let Some(flag) = companions.iter().find(|f| args.iter().any(|a| a == **f)) {
            return Err(format!("{flag} needs --client"));
        }
        return Ok(None);
    };
    let address: std::net::SocketAddr = address
        .parse()
        .map_err(|_| format!("--client {address}: not an IP:PORT address"))?;
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
    if let Some(list) = value(args, "--client-nodes")? {
        for (node, address) in
            parse_nodes(list).map_err(|e| e.replace("--nodes", "--client-nodes"))?
        {
            if !config.nodes.contains_key(&node) {
                return Err(format!("--client-nodes: node {} is not in --nodes", node.0));
            }
            server.addresses.insert(node, address.to_string());
        }
    }
    if let Some(n) = parsed(args, "--client-in-flight-max")? {
        server.in_flight_max = n;
    }
    if let Some(n) = parsed(args, "--client-connections-max")? {
        server.connections_max = n;
    }
    if let Some(n) = parsed(args, "--client-frame-size-max")? {
        server.frame_size_max = n;
    }
    if let Some(n) = parsed(args, "--client-connections-per-source-max")? {
        server.connections_per_source_max = n;
    }
    if let Some(n) = parsed(args, "--client-unauthenticated-max")? {
        server.unauthenticated_max = n;
    }
    if let Some(s) = parsed(args, "--client-idle-timeout-s")? {
        server.idle_timeout = std::time::Duration::from_secs(s);
    }
    if [
        server.in_flight_max,
        server.connections_max,
        server.connections_per_source_max,
        server.unauthenticated_max,
    ]
    .contains(&0)
        || server.frame_size_max < 64
        || server.idle_timeout.is_zero()
    {
        return Err("--client-in-flight-max, --client-connections-max, \
             --client-connections-per-source-max, --client-unauthenticated-max and \
             --client-idle-timeout-s must be positive, --client-frame-size-max at least 64"
            .to_string());
    }
    let no_auth = args.iter().any(|a| a == "--no-auth");
    server.key = match (value(args, "--client-key-file")?, no_auth) {
        (Some(path), false) => Some(
            synod::transport::auth::AuthKey::from_file(std::path::Path::new(path))
                .map_err(|e| format!("--client-key-file: {e}"))?,
        ),
        (None, true) => None,
        (Some(_), true) => return Err("--client-key-file and --no-auth exclude each other".into()),
        (None, false) => {
            return Err(
                "--client needs --client-key-file FILE (synod keygen writes one), \
                 or --no-auth to accept any client"
                    .into(),
            )
        }
    };
    Ok(Some(server))
}
