//! The client protocol end to end: three `synod serve` processes on loopback, each
//! started from a configuration file with a flag over it,
//! driven through `synod::client` (proposals, reads, status, a NotLeader hint followed
//! from a follower, pipelined requests from many threads), `synod bench --target`
//! against them, and hostile connections (garbage, an oversized length, a bad CRC, a
//! wrong cluster id) that must each be closed with a logged reason while the node
//! keeps serving its other clients.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::cluster::{free_ports, TempDir};
use common::serve::{synod, ClientKey, Serve, ThreeNodes};
use synod::api::Position;
use synod::client::codec::{decode_next, encode, CRC_SIZE};
use synod::client::wire::{Body, PROTOCOL_VERSION};
use synod::client::{Client, Error, ServerError};
use synod::paxos::{GroupId, NodeId, Role};
use synod::transport::FRAME_HEADER_SIZE;

const CLUSTER: u64 = 0x5EED;
const GROUPS: u32 = 2;

/// One node of the test cluster: `synod serve --config FILE` with the client listener
/// and both keys in the file (written into `configs`), and flags over it: the file says
/// one group, `--groups` says `GROUPS` (a node that ignored the flag would have no
/// group 1, and `wait_for_leaders` would fail).
fn spawn(
    id: u32,
    peers: &str,
    clients: &str,
    client: &str,
    dir: &TempDir,
    key: &ClientKey,
    configs: &TempDir,
) -> Serve {
    let table = |list: &str| {
        list.split(',')
            .map(|item| {
                let (node, address) = item.split_once('=').expect("ID=ADDRESS");
                format!("{node} = \"{address}\"")
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        "[node]\nid = {id}\ndir = \"{dir}\"\ninitial_state = \"new\"\n\
         [cluster]\nid = {CLUSTER}\nnodes = {{ {peers} }}\ngroups = 1\n\
         [auth]\npeer_key_file = \"{peer_key}\"\nclient_key_file = \"{client_key}\"\n\
         [client]\naddress = \"{client}\"\nnodes = {{ {clients} }}\nin_flight_max = 64\n",
        dir = dir.path().display(),
        peers = table(peers),
        peer_key = key.peer_path.display(),
        client_key = key.path.display(),
        clients = table(clients),
    );
    let path = configs.path().join(format!("synod-{id}.toml"));
    std::fs::write(&path, text).expect("write the configuration file");
    let args: Vec<String> = [
        "--config",
        &path.display().to_string(),
        "--groups",
        &GROUPS.to_string(),
        "--test-timeouts",
        "--control",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    Serve::spawn(&id.to_string(), &args)
}

/// Connects a raw socket, writes `bytes`, and reads until the node closes it (at
/// most 10 s). Returns what the node sent.
fn send_raw(address: &str, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The node may close before reading everything: a failed write is fine.
    let _ = stream.write_all(bytes);
    let mut received = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return received,
            Err(e) => panic!("{address}: the node did not close the connection: {e}"),
        }
    }
}

/// The frames in `bytes` (all whole, all valid).
fn frames(mut bytes: &[u8]) -> Vec<Body> {
    let mut out = Vec::new();
    while let Some((body, consumed)) = decode_next(bytes, 1 << 20).expect("valid frame") {
        out.push(body);
        bytes = &bytes[consumed..];
    }
    assert!(bytes.is_empty(), "{} trailing bytes", bytes.len());
    out
}

fn hello(cluster: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode(
        &Body::Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster,
            nonce: vec![0_u8; 16].into(),
        },
        1 << 20,
        &mut out,
    )
    .expect("fits");
    out
}

/// The leader and a follower of `group`, from the nodes' status.
fn roles(client: &Client, group: GroupId) -> Option<(NodeId, NodeId)> {
    let statuses = client.status_blocking().ok()?;
    let role_of = |role: Role| {
        statuses.iter().find_map(|n| {
            n.shards
                .iter()
                .flat_map(|s| &s.groups)
                .any(|g| g.group == group && g.role == role)
                .then_some(n.node)
        })
    };
    Some((role_of(Role::Leader)?, role_of(Role::Follower)?))
}

fn wait_for_leaders(client: &Client) -> BTreeMap<GroupId, (NodeId, NodeId)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found: BTreeMap<_, _> = (0..GROUPS)
            .filter_map(|g| roles(client, GroupId(g)).map(|r| (GroupId(g), r)))
            .collect();
        if found.len() == GROUPS as usize {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no leader in every group: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// Goal: a client reaches a running cluster over the client protocol: proposals are
// chosen in order, reads and status answer, NotLeader hints are followed, many
// requests are pipelined, `synod bench --target` drives it, hostile connections
// are closed one by one with a logged reason while the node keeps serving, and with a
// node stopped, requests about it fail naming it (never answered by another node).
// Method: three `synod serve --config` children (client listener in the file) on free
// loopback ports; one test so that the cluster starts once (each step is short; the
// whole test stops by itself).
#[expect(
    clippy::too_many_lines,
    reason = "one test so that the cluster starts once (see Method); each step is short"
)]
#[test]
fn client_protocol_end_to_end() {
    let ThreeNodes {
        peers,
        clients,
        addresses,
        dirs,
    } = ThreeNodes::new("client");
    let key = ClientKey::new("client");
    let configs = TempDir::new("client-configs");
    let nodes: Vec<Serve> = (0..3)
        .map(|i| {
            spawn(
                i as u32 + 1,
                &peers,
                &clients,
                &addresses[i],
                &dirs[i],
                &key,
                &configs,
            )
        })
        .collect();

    // Everything known from one welcome.
    let client = Client::connect_with(&addresses, CLUSTER, key.config()).expect("connect");
    assert_eq!(client.nodes(), vec![NodeId(1), NodeId(2), NodeId(3)]);
    assert_eq!(client.addresses().len(), 3);
    let roles = wait_for_leaders(&client);

    // Proposals: chosen in increasing instances per group; reads answer at the leader.
    for group in (0..GROUPS).map(GroupId) {
        let mut last = 0;
        for k in 0..20 {
            let proposed = propose_retrying(&client, group, format!("v{k}").into_bytes());
            assert!(
                proposed > last,
                "group {}: {proposed} after {last}",
                group.0
            );
            last = proposed;
        }
        read_retrying(&client, group);
    }

    // The log read back over the client protocol, on every node (followers too): the
    // values in the order they were chosen, each at increasing positions.
    for node in [NodeId(1), NodeId(2), NodeId(3)] {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut values = Vec::new();
        let mut next = Position::START;
        while values.len() < 20 {
            assert!(Instant::now() < deadline, "node {}: {values:?}", node.0);
            let read = client
                .read_log_blocking(Some(node), GroupId(0), next, 64)
                .expect("read_log");
            assert!(read.next >= next);
            for entry in read.entries {
                assert!(entry.position >= next && entry.position < read.next);
                let value = String::from_utf8(entry.value.to_vec()).expect("utf-8");
                // A retried indeterminate proposal may be chosen twice.
                if !values.contains(&value) {
                    values.push(value);
                }
            }
            if read.next == next {
                // A follower not caught up yet.
                std::thread::sleep(Duration::from_millis(20));
            }
            next = read.next;
        }
        let expected: Vec<String> = (0..20).map(|k| format!("v{k}")).collect();
        assert_eq!(values, expected, "node {}", node.0);
    }

    // A client that knows only a follower follows its NotLeader hint to the leader,
    // whose address the follower's welcome advertised.
    let (leader, follower) = roles[&GroupId(0)];
    let follower_address = &addresses[follower.0 as usize - 1];
    let lone = Client::connect_with(&[follower_address], CLUSTER, key.config())
        .expect("connect to a follower");
    assert_eq!(
        lone.addresses().len(),
        3,
        "the follower advertised every node"
    );
    propose_retrying(&lone, GroupId(0), b"redirected".to_vec());
    assert!(lone.redirects() >= 1, "no NotLeader was followed");
    // The node answers a NotLeader itself when asked directly (no redirects left).
    let strict = Client::connect_with(
        &[follower_address],
        CLUSTER,
        synod::client::ClientConfig {
            redirects_max: 0,
            ..key.config()
        },
    )
    .expect("connect");
    match strict.propose_blocking(GroupId(0), b"x".to_vec()) {
        // The leader seen at the start, or another node if a loaded machine let an
        // election move it meanwhile: never the follower itself, never none.
        Err(Error::Server(ServerError::NotLeader { hint })) => match hint {
            Some(node) if node == leader => {}
            Some(node) => {
                assert_ne!(node, follower, "the follower hinted at itself");
                eprintln!("leadership moved from node {} to node {}", leader.0, node.0);
            }
            None => panic!("the follower gave no hint"),
        },
        other => panic!("expected NotLeader from node {}: {other:?}", follower.0),
    }

    // Pipelining: 8 threads share one client, 25 proposals each, all in flight at once
    // on the same connections; every answer reaches its caller.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                let futures = (0..25)
                    .map(|k| client.propose(GroupId(k % GROUPS), format!("p{t}.{k}").into_bytes()))
                    .collect();
                futures_lite::future::block_on(join_all(futures))
            })
        })
        .collect();
    let mut ok = 0;
    for thread in threads {
        for result in thread.join().expect("proposer thread") {
            match result {
                Ok(_) => ok += 1,
                // A leader change under load may leave a proposal's outcome unknown.
                Err(error) => assert!(retry(&error), "{error}"),
            }
        }
    }
    assert!(ok >= 100, "only {ok} of 200 pipelined proposals succeeded");

    // Hostile connections to node 1, each closed with its reason in the node's log;
    // the unauthenticated peer is told only that the handshake was refused.
    let target = &addresses[0];
    let node1 = &nodes[0];
    let refused = |answer: &[Body]| matches!(answer.last(), Some(Body::Refused { reason }) if reason == "handshake refused");
    // Garbage: a frame whose CRC is right but whose bytes are no flatbuffer.
    let mut garbage_frame = vec![0x5A_u8; 40];
    garbage_frame[4..8].copy_from_slice(b"JUNK");
    let mut garbage = ((CRC_SIZE + garbage_frame.len()) as u32)
        .to_le_bytes()
        .to_vec();
    garbage.extend_from_slice(&crc32c::crc32c(&garbage_frame).to_le_bytes());
    garbage.extend_from_slice(&garbage_frame);
    let answer = frames(&send_raw(target, &garbage));
    assert!(answer.len() == 1 && refused(&answer), "{answer:?}");
    node1.expect_log(&["closing", "identifier"]);
    // Plain text (an HTTP request): its first 4 bytes announce a huge frame.
    send_raw(target, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    node1.expect_log(&["closing", "exceeds frame_size_max"]);
    // An oversized length after a good hello: the node's challenge, then the refusal.
    let mut oversized = hello(CLUSTER);
    oversized.extend_from_slice(&(u32::MAX - 1).to_le_bytes());
    let answer = frames(&send_raw(target, &oversized));
    assert!(
        matches!(&answer[..], [Body::Challenge { .. }, Body::Refused { .. }]) && refused(&answer),
        "{answer:?}"
    );
    node1.expect_log(&["closing", "4294967294"]);
    // A bad CRC.
    let mut bad_crc = hello(CLUSTER);
    bad_crc[FRAME_HEADER_SIZE] ^= 0xFF;
    let answer = frames(&send_raw(target, &bad_crc));
    assert!(answer.len() == 1 && refused(&answer), "{answer:?}");
    node1.expect_log(&["closing", "CRC32C mismatch"]);
    // A wrong cluster id: the node's log names both ids, the peer learns neither.
    let answer = frames(&send_raw(target, &hello(CLUSTER + 1)));
    assert!(answer.len() == 1 && refused(&answer), "{answer:?}");
    node1.expect_log(&[
        "closing",
        &format!(
            "wrong cluster id {}, this node belongs to cluster {CLUSTER}",
            CLUSTER + 1
        ),
    ]);
    match Client::connect_with(&[target], CLUSTER + 1, key.config()) {
        Err(Error::NoReachableNode { tried }) => {
            assert!(
                tried.iter().any(|t| t.contains("handshake refused")),
                "{tried:?}"
            )
        }
        other => panic!("expected a refusal: {other:?}"),
    }
    // The node and its existing clients are unharmed.
    let statuses = client
        .status_blocking()
        .expect("status after hostile connections");
    assert_eq!(statuses.len(), 3);
    for group in (0..GROUPS).map(GroupId) {
        propose_retrying(&client, group, b"after".to_vec());
    }

    // synod bench --target against the running cluster.
    let output = synod(&[
        "bench",
        "--target",
        &addresses.join(","),
        "--cluster",
        &CLUSTER.to_string(),
        "--client-key-file",
        &key.path.display().to_string(),
        "--groups",
        &GROUPS.to_string(),
        "--clients",
        "16",
        "--seconds",
        "2",
        "--warmup",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "synod bench --target failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{stdout}");
    assert!(stdout.contains("REMOTE"), "{stdout}");
    let throughput = stdout
        .lines()
        .find(|l| l.starts_with("throughput:"))
        .unwrap_or_else(|| panic!("no throughput line: {stdout}"));
    let ops: f64 = throughput
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{throughput}"));
    assert!(ops > 0.0, "{throughput}");
    // A leader change under a loaded test machine (300 ms election timeout here) may
    // answer a few proposals NotLeader, Indeterminate or Aborted; anything else (a
    // protocol, connection or server error) is a failure.
    if let Some((_, errors)) = throughput.split_once("errors ") {
        let unexpected: Vec<&str> = errors
            .split(|c: char| !c.is_alphanumeric())
            .filter(|word| {
                !word.is_empty()
                    && word.chars().next().is_some_and(char::is_alphabetic)
                    && !["NotLeader", "Indeterminate", "Aborted", "LeaseNotHeld"].contains(word)
            })
            .collect();
        assert!(unexpected.is_empty(), "{throughput}");
    }
    assert!(stdout.contains("fdatasyncs/s"), "{stdout}");
    // A local-cluster flag is refused with --target.
    let refused = synod(&["bench", "--target", &addresses[0], "--window", "8"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("'--target <HOST:PORT,...>' cannot be used with '--window <W>'"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Node 3 stopped: a request about node 3 fails naming it and is never answered by
    // another node in its place (status, log reads aimed at it); the others still answer.
    let mut nodes = nodes;
    let third = nodes.pop().expect("three nodes");
    third.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Until the client has seen its connection to node 3 close.
    while client.node_status_blocking(NodeId(3)).is_ok() {
        assert!(Instant::now() < deadline, "node 3 still answers");
        std::thread::sleep(Duration::from_millis(20));
    }
    let unreachable = |error: &Error| {
        matches!(
            error,
            Error::NodeUnreachable {
                node: NodeId(3),
                ..
            }
        )
    };
    for _ in 0..3 {
        match client.status_blocking() {
            Err(error) => assert!(unreachable(&error), "{error}"),
            Ok(statuses) => panic!(
                "status with node 3 stopped answered for nodes {:?}",
                statuses.iter().map(|s| s.node.0).collect::<Vec<_>>()
            ),
        }
        match client.node_status_blocking(NodeId(3)) {
            Err(error) => assert!(unreachable(&error), "{error}"),
            Ok(status) => panic!("node 3's status answered by node {}", status.node.0),
        }
        match client.read_log_blocking(Some(NodeId(3)), GroupId(0), Position::START, 64) {
            Err(error) => {
                assert!(unreachable(&error), "{error}");
                assert!(
                    error.to_string().starts_with("node 3 unreachable: "),
                    "{error}"
                );
            }
            Ok(read) => panic!("a log read aimed at node 3 answered: {read:?}"),
        }
    }
    for node in [NodeId(1), NodeId(2)] {
        let status = client
            .node_status_blocking(node)
            .expect("a live node's status");
        assert_eq!(status.node, node);
        client
            .read_log_blocking(Some(node), GroupId(0), Position::START, 64)
            .expect("a live node's log");
    }

    drop((client, lone, strict));
    for node in nodes {
        node.stop();
    }
}

/// Whether a test retries after `error`: what did nothing, and `Indeterminate` (a
/// leader change under load; these tests check answers, not exactly-once).
fn retry(error: &Error) -> bool {
    error.is_retryable() || matches!(error, Error::Server(ServerError::Indeterminate))
}

/// Proposes until chosen (retrying what did nothing, and indeterminate outcomes);
/// returns the instance.
fn propose_retrying(client: &Client, group: GroupId, value: Vec<u8>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.propose_blocking(group, value.clone()) {
            Ok(proposed) => return proposed.position.instance.0,
            Err(error) if retry(&error) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("propose to group {}: {error}", group.0),
        }
    }
}

/// Reads until the leader's lease allows it.
fn read_retrying(client: &Client, group: GroupId) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.read_blocking(group, Vec::new()) {
            Ok(_) => return,
            Err(error) if retry(&error) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("read group {}: {error}", group.0),
        }
    }
}

/// Polls every future together until all are done (so that their requests are in
/// flight at once), and returns their outputs in order.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

// Goal: the listener's bounds hold and the client works from an async runtime: one
// connection past `connections_max` is refused with the reason and a freed slot is
// reused; requests past `in_flight_max` wait (TCP backpressure) and all complete; a
// client holding a key refuses a node without one; a frame begun after the handshake
// must complete within `frame_timeout`.
// Method: an in-process cluster with a listener per node (connections_max 2,
// in_flight_max 4); 64 tokio tasks propose through one client; then connections are
// opened until one is refused, one is closed, and a new one gets in.
#[test]
fn listener_bounds_connections_and_requests_in_flight() {
    use common::cluster::{Cluster, Shape};
    use synod::server::{Server, ServerConfig};

    let cluster = Cluster::new(
        "client-bounds",
        Shape {
            nodes: 3,
            shards: 1,
            groups: 1,
        },
    );
    let base = free_ports(3);
    let advertised: BTreeMap<NodeId, String> = (1..=3_u16)
        .map(|i| (NodeId(u32::from(i)), format!("127.0.0.1:{}", base + i - 1)))
        .collect();
    let ids: Vec<NodeId> = advertised.keys().copied().collect();
    let servers: Vec<Server> = cluster
        .nodes
        .iter()
        .map(|(id, node)| {
            let address = advertised[id].parse().expect("address");
            let mut config = ServerConfig::new(address, cluster.cluster_id, *id, ids.clone());
            config.addresses = advertised.clone();
            config.connections_max = 2;
            config.in_flight_max = 4;
            config.frame_timeout = Duration::from_millis(500);
            Server::start(config, node.handle()).expect("listen")
        })
        .collect();
    let addresses: Vec<String> = advertised.values().cloned().collect();
    cluster.wait_leader(GroupId(0), Duration::from_secs(30));
    let client = Client::connect(&addresses, cluster.cluster_id).expect("connect");

    // 64 tasks, 16 requests in flight per task at most 4 of which a node takes at once.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("tokio runtime");
    let chosen = runtime.block_on(async {
        let tasks: Vec<_> = (0..64_u32)
            .map(|task| {
                let client = client.clone();
                tokio::spawn(async move {
                    let mut chosen = 0;
                    for k in 0..4 {
                        let value = format!("t{task}.{k}").into_bytes();
                        loop {
                            match client.propose(GroupId(0), value.clone()).await {
                                Ok(_) => break,
                                Err(error) if retry(&error) => {
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                }
                                Err(error) => panic!("task {task}: {error}"),
                            }
                        }
                        chosen += 1;
                    }
                    chosen
                })
            })
            .collect();
        let mut chosen = 0;
        for task in tasks {
            chosen += task.await.expect("task");
        }
        chosen
    });
    assert_eq!(chosen, 256);

    // `client` holds one connection to node 1; one more fits, the next is refused.
    let second = Client::connect(&[&addresses[0]], cluster.cluster_id).expect("second");
    match Client::connect(&[&addresses[0]], cluster.cluster_id) {
        Err(Error::NoReachableNode { tried }) => assert!(
            tried.iter().any(|t| t.contains("too many connections")),
            "{tried:?}"
        ),
        other => panic!("expected a refusal past connections_max: {other:?}"),
    }
    // A closed connection frees its slot (once both its threads have ended).
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Client::connect(&[&addresses[0]], cluster.cluster_id).is_err() {
        assert!(Instant::now() < deadline, "the freed slot was not reused");
        std::thread::sleep(Duration::from_millis(20));
    }

    // These listeners hold no client key: a client holding one refuses them (the
    // authentication is mutual).
    let keyed = synod::client::ClientConfig {
        key: Some(synod::transport::auth::AuthKey::generate().expect("random key")),
        ..synod::client::ClientConfig::default()
    };
    match Client::connect_with(&[&addresses[2]], cluster.cluster_id, keyed) {
        Err(Error::NoReachableNode { tried }) => assert!(
            tried
                .iter()
                .any(|t| t.contains("did not prove it holds the client key")),
            "{tried:?}"
        ),
        other => panic!("expected the keyed client to refuse a keyless node: {other:?}"),
    }

    // Half a request after the handshake (this listener has no key: the hello gets
    // the welcome): closed after frame_timeout, with the reason.
    let mut request = Vec::new();
    encode(&Body::Status { request: 1 }, 1 << 20, &mut request).expect("fits");
    let mut half = hello(cluster.cluster_id);
    half.extend_from_slice(&request[..request.len() / 2]);
    let answer = frames(&send_raw(&addresses[1], &half));
    assert!(
        matches!(&answer[..], [Body::Welcome { .. }, Body::Refused { reason }]
            if reason.contains("did not complete within 500 ms")),
        "{answer:?}"
    );
    drop(client);
    drop(servers);
}
