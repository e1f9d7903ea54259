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

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use synod::api::{Config, InitialState, Node};
use synod::paxos::{GroupId, NodeId};
use synod::runtime::driver::null_factory;
use synod::server::{Server, ServerConfig};
use synod::transport::auth::AuthKey;

use super::{check_flags, parse_nodes, parsed, value};

/// Usage lines of `synod serve`.
pub const USAGE: &str =
    "  synod serve --node ID --nodes ID=IP:PORT,... --dir DIR (--key-file FILE | --no-auth)
              [--cluster C] [--shards S]
              [--groups G] [--cores C,C,...] [--tick-ms T] [--existing] [--control]
              [--test-timeouts] [--client IP:PORT [--client-nodes ID=IP:PORT,...]
              [--client-in-flight-max N] [--client-connections-max N]
              [--client-frame-size-max B]]
                                                      run one node (shard s listens on PORT+s);
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
            "--key-file",
        ],
        &["--existing", "--control", "--test-timeouts", "--no-auth"],
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
    if args.iter().any(|a| a == "--existing") {
        config.initial_state = InitialState::Existing;
    }
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
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    if !args.iter().any(|a| a == "--control") {
        loop {
            std::thread::park();
        }
    }
    let handle = node.handle();
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
    let errors = node.shutdown();
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(errors.join("; "))
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
    ];
    let Some(address) = value(args, "--client")? else {
        if let Some(flag) = companions.iter().find(|f| args.iter().any(|a| a == **f)) {
            return Err(format!("{flag} needs --client"));
        }
        return Ok(None);
    };
    let address = address
        .parse()
        .map_err(|_| format!("--client {address}: not an IP:PORT address"))?;
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
    if server.in_flight_max == 0 || server.connections_max == 0 || server.frame_size_max < 64 {
        return Err(
            "--client-in-flight-max and --client-connections-max must be positive, \
             --client-frame-size-max at least 64"
                .to_string(),
        );
    }
    Ok(Some(server))
}
