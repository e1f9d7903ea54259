//! `synod serve`: one node of a cluster, configured by flags, until stdin closes (with
//! `--control`) or the process is killed.
//!
//! With `--control`, stdin takes commands, one per line: `status` prints one line per
//! group (`group <g> role <role> applied <instance> checksum <crc>`) and `end`;
//! `propose <group> <word>` prints `proposed <group> <instance>` or
//! `error <group> <reason>`; end of input shuts the node down gracefully. Tests drive a node in a separate
//! process this way (and SIGKILL it).
//!
//! With `--client ADDR`, the node also listens for clients (`synod::server`, the client
//! protocol of `schema/client.fbs`): `synod::client::Client` and `synod bench
//! --target` talk to it. `--client-nodes ID=IP:PORT,...` lists the other nodes'
//! client addresses, sent to every client so that it can follow leader hints.
//! `--client-key-file FILE` (hex, as `synod keygen` writes) is the client key every
//! client must prove it holds; without it, `--no-auth` must say so explicitly.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use synod::api::{Config, InitialState, Node};
use synod::paxos::{GroupId, NodeId};
use synod::runtime::driver::null_factory;
use synod::server::{Server, ServerConfig};

use super::{check_flags, parse_nodes, parsed, value};

/// Usage lines of `synod serve`.
pub const USAGE: &str =
    "  synod serve --node ID --nodes ID=IP:PORT,... --dir DIR [--cluster C] [--shards S]
              [--groups G] [--cores C,C,...] [--tick-ms T] [--existing] [--control]
              [--test-timeouts] [--client IP:PORT [--client-nodes ID=IP:PORT,...]
              [--client-in-flight-max N] [--client-connections-max N]
              [--client-frame-size-max B] [--client-connections-per-source-max N]
              [--client-unauthenticated-max N] [--client-idle-timeout-s S]
              (--client-key-file FILE | --no-auth)]
                                                      run one node (shard s listens on PORT+s);
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
        ],
        &["--existing", "--control", "--test-timeouts", "--no-auth"],
    )?;
    let node = NodeId(parsed(args, "--node")?.ok_or("--node is required")?);
    let nodes = parse_nodes(value(args, "--nodes")?.ok_or("--nodes is required")?)?;
    let dir = PathBuf::from(value(args, "--dir")?.ok_or("--dir is required")?);
    let mut config = Config::new(node, parsed(args, "--cluster")?.unwrap_or(1), nodes, dir);
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
