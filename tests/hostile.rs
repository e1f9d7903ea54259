//! Hostile peers against three `synod serve` processes on loopback: handshakes
//! without the key or forged for a live node id, floods of idle, half-sent and
//! unproven connections on every shard's peer port, and a dialer that holds the key
//! and sends protocol messages with extreme fields. The cluster must keep choosing
//! values, a restarted node must get back in, and the logs must stay bounded.
//!
//! Attacker sockets bind source addresses 127.0.0.2 and up, so the per-source bound
//! of pending handshakes meets them and not the real nodes (127.0.0.1).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{free_ports, key_file, TempDir};
use common::serve::{one_node_serve, synod, Serve};
use synod::paxos::{
    Ballot, Body, Entry, GroupId, Instance, InstanceRange, Message, MessageBody, Nanos, NodeId,
};
use synod::runtime::net::{proof_context, PROOF_ROLE_DIALER};
use synod::transport::auth::{self, AuthKey};
use synod::transport::{
    append_frame, decode_handshake, encode, DecodeLimits, FrameBody, GroupHeartbeat, Handshake,
    HandshakeProof, HeartbeatBatch, PROTOCOL_VERSION,
};

const CLUSTER: u64 = 0x0BAD;
const GROUPS: u32 = 4;
const SHARDS: u16 = 2;

/// The base peer address of every node (shard s listens on port + s).
#[derive(Clone)]
struct Bases(BTreeMap<u32, SocketAddr>);

impl Bases {
    /// The peer address of shard `shard` of node `id`.
    fn port(&self, id: u32, shard: u16) -> SocketAddr {
        let mut address = self.0[&id];
        address.set_port(address.port() + shard);
        address
    }

    /// The layout as every node has it.
    fn layout(&self) -> Vec<(NodeId, SocketAddr)> {
        self.0.iter().map(|(n, a)| (NodeId(*n), *a)).collect()
    }
}

/// Three nodes: their base peer addresses, directories and the key file.
struct Cluster {
    nodes: BTreeMap<u32, Serve>,
    bases: Bases,
    dirs: BTreeMap<u32, TempDir>,
    key: AuthKey,
    key_file: String,
    _key_dir: TempDir,
}

impl Cluster {
    fn start(name: &str) -> Cluster {
        let bases = Bases(
            (1..=3)
                .map(|i| (i, SocketAddr::from(([127, 0, 0, 1], free_ports(SHARDS)))))
                .collect(),
        );
        let dirs = (1..=3)
            .map(|i| (i, TempDir::new(&format!("{name}-{i}"))))
            .collect();
        let (key, key_dir, key_file) = key_file(name);
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            bases,
            dirs,
            key,
            key_file: key_file.display().to_string(),
            _key_dir: key_dir,
        };
        for id in 1..=3 {
            cluster.spawn(id);
        }
        cluster
    }

    fn spawn(&mut self, id: u32) {
        let nodes: Vec<String> = self
            .bases
            .0
            .iter()
            .map(|(n, a)| format!("{n}={a}"))
            .collect();
        let args: Vec<String> = [
            "--node",
            &id.to_string(),
            "--cluster",
            &CLUSTER.to_string(),
            "--nodes",
            &nodes.join(","),
            "--dir",
            &self.dirs[&id].path().display().to_string(),
            "--shards",
            &SHARDS.to_string(),
            "--groups",
            &GROUPS.to_string(),
            "--new",
            "--test-timeouts",
            "--control",
            "--key-file",
            &self.key_file,
        ]
        .iter()
        .map(|a| (*a).to_string())
        .collect();
        let serve = Serve::spawn(&id.to_string(), &args);
        self.nodes.insert(id, serve);
    }

    /// Proposes `word` to `group` through each node in turn until one acknowledges it
    /// or `timeout` passes; whether it was acknowledged.
    fn propose(&mut self, group: u32, word: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let mut hung = None;
            for (id, serve) in &mut self.nodes {
                match serve.propose(group, word, Duration::from_secs(10)) {
                    Some(Ok(_)) => return true,
                    Some(Err(_)) => {}
                    None => hung = Some(*id),
                }
            }
            if let Some(id) = hung {
                let panics: Vec<String> = self
                    .nodes
                    .iter()
                    .flat_map(|(n, serve)| {
                        serve
                            .log_lines()
                            .into_iter()
                            .filter(|l| l.contains("panicked") || l.contains("ERROR"))
                            .map(move |l| format!("node {n}: {l}"))
                    })
                    .collect();
                panic!("node {id}: no answer to a proposal within 10 s; {panics:#?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Every group acknowledges one proposal within `timeout` each.
    fn progress(&mut self, word: &str, timeout: Duration) {
        for group in 0..GROUPS {
            assert!(
                self.propose(group, &format!("{word}-{group}"), timeout),
                "group {group}: no acknowledgement of {word} within {timeout:?}"
            );
        }
    }

    /// No node exited, and no thread of any node panicked (a panicked shard thread
    /// may leave its process up).
    fn all_alive(&mut self) {
        for (id, serve) in &mut self.nodes {
            let status = serve.child.try_wait().expect("try_wait");
            let log = serve.log_lines();
            let panics: Vec<&String> = log.iter().filter(|l| l.contains("panicked")).collect();
            assert!(
                status.is_none() && panics.is_empty(),
                "node {id} exited with {status:?} or panicked: {panics:#?}"
            );
        }
    }

    /// Stops every node gracefully (end of stdin), each within 20 s.
    fn stop(mut self) {
        for serve in std::mem::take(&mut self.nodes).into_values() {
            serve.stop();
        }
    }
}

/// Log lines about closed connections (and their summaries).
fn close_lines(serve: &Serve) -> usize {
    serve
        .log_lines()
        .iter()
        .filter(|l| l.contains("closed connection") || l.contains("not logged in the last"))
        .count()
}

/// `body` as a length-prefixed frame.
fn frame(body: &FrameBody) -> Vec<u8> {
    let mut payload = Vec::new();
    encode(body, &mut payload);
    let mut out = Vec::new();
    append_frame(&payload, usize::MAX, &mut out).expect("frame");
    out
}

/// A socket from `source` (an address of 127/8) to `server`.
fn connect_from(source: [u8; 4], server: SocketAddr) -> TcpStream {
    try_connect_from(source, server).expect("connect")
}

/// As `connect_from`, None when the server is down.
fn try_connect_from(source: [u8; 4], server: SocketAddr) -> Option<TcpStream> {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .expect("bind source");
    socket
        .connect_timeout(&server.into(), Duration::from_secs(2))
        .ok()?;
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    Some(stream)
}

/// A handshake claiming `node` on `shard`, with the cluster's real layout.
fn hello(bases: &Bases, node: u32, shard: u16, nonce: Option<auth::Nonce>) -> Handshake {
    Handshake {
        protocol_version: PROTOCOL_VERSION,
        cluster: CLUSTER,
        node: NodeId(node),
        shard,
        shards: SHARDS,
        layout: bases.layout(),
        nonce,
        proof: None,
    }
}

/// Reads one frame's handshake (None if the server closed instead).
fn read_handshake(stream: &mut TcpStream) -> Option<Handshake> {
    let mut header = [0_u8; 4];
    stream.read_exact(&mut header).ok()?;
    let mut body = vec![0_u8; u32::from_le_bytes(header) as usize];
    stream.read_exact(&mut body).ok()?;
    decode_handshake(&body, &DecodeLimits::default()).ok()
}

/// Whether the server closes `stream` within 5 s (reads and discards until then).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut sink = [0_u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
    false
}

/// Dials shard `shard` of node `to` claiming node `claim`, with `key` (if any) as the
/// dialer's key; returns the stream once the handshake is sent (and, with a key, the
/// reply read and the proof sent), or None if the server closed it first.
fn dial(
    bases: &Bases,
    source: [u8; 4],
    to: u32,
    shard: u16,
    claim: u32,
    key: Option<&AuthKey>,
) -> Option<TcpStream> {
    let mut stream = connect_from(source, bases.port(to, shard));
    let nonce = key.map(|_| auth::nonce().expect("nonce"));
    stream
        .write_all(&frame(&FrameBody::Handshake(hello(
            bases, claim, shard, nonce,
        ))))
        .ok()?;
    let reply = read_handshake(&mut stream)?;
    if let (Some(key), Some(nonce), Some(theirs)) = (key, nonce, reply.nonce) {
        let context = proof_context(CLUSTER, NodeId(claim), NodeId(to), shard);
        let proof = key.prove(PROOF_ROLE_DIALER, [&nonce, &theirs], &context);
        stream
            .write_all(&frame(&FrameBody::HandshakeProof(HandshakeProof { proof })))
            .ok()?;
    }
    Some(stream)
}

// Goal: a peer without the key, one with a wrong key, and forged handshakes claiming a
// live node id are refused; the real links survive and the cluster keeps choosing.
// Method: three keyed `synod serve` children (2 shards); against every shard of node
// 1, claiming node 2: a hello without a nonce, a hello with a nonce and a proof made
// with another key, a hello followed by a message batch instead of a proof; then
// every group acknowledges proposals, and node 1's log names each refusal.
#[test]
fn unauthenticated_and_forged_peers_are_refused() {
    let mut cluster = Cluster::start("hostile-auth");
    cluster.progress("before", Duration::from_secs(20));
    let wrong = AuthKey::generate().expect("key");
    for shard in 0..SHARDS {
        // No key at all.
        let mut stream = connect_from([127, 0, 0, 2], cluster.bases.port(1, shard));
        let mut bytes = frame(&FrameBody::Handshake(hello(&cluster.bases, 2, shard, None)));
        bytes.extend_from_slice(&frame(&FrameBody::MessageBatch(Vec::new())));
        stream.write_all(&bytes).expect("write");
        assert!(closed_by_server(&mut stream), "a keyless hello was kept");

        // Another key: the acceptor answers, the dialer's proof does not verify.
        let mut stream = dial(&cluster.bases, [127, 0, 0, 3], 1, shard, 2, Some(&wrong))
            .expect("a reply to a hello");
        assert!(closed_by_server(&mut stream), "a wrong proof was kept");

        // A message batch where the proof belongs.
        let mut stream = connect_from([127, 0, 0, 4], cluster.bases.port(1, shard));
        let nonce = auth::nonce().expect("nonce");
        let mut bytes = frame(&FrameBody::Handshake(hello(
            &cluster.bases,
            2,
            shard,
            Some(nonce),
        )));
        bytes.extend_from_slice(&frame(&FrameBody::MessageBatch(Vec::new())));
        stream.write_all(&bytes).expect("write");
        assert!(
            read_handshake(&mut stream).is_some(),
            "no reply to the hello"
        );
        assert!(closed_by_server(&mut stream), "a missing proof was kept");
    }
    cluster.progress("after", Duration::from_secs(20));
    cluster.all_alive();
    let node1 = &cluster.nodes[&1];
    assert!(node1.has_log(&[
        "authentication mismatch",
        "peer node 2 does not authenticate"
    ]));
    assert!(node1.has_log(&["bad proof", "the proof does not verify"]));
    assert!(node1.has_log(&["bad proof", "second frame is a MessageBatch"]));
    // The real node 2 never lost its link: no line says node 2's connection was replaced.
    assert!(
        !node1
            .log_lines()
            .iter()
            .any(|l| l.contains("replaced") && l.contains("node 2")),
        "{:#?}",
        node1.log_lines()
    );
    cluster.stop();
}

/// The three kinds of held connections of the flood.
fn flood_connection(bases: &Bases, n: usize, to: u32, shard: u16) -> Option<TcpStream> {
    // Sources 127.0.0.10 .. 127.0.0.209: a few connections each.
    let source = [127, 0, (n / 200) as u8, 10 + (n % 200) as u8];
    let mut stream = try_connect_from(source, bases.port(to, shard))?;
    match n % 3 {
        // Idle.
        0 => {}
        // Mid-frame: a size header of 100 bytes, then 10 of them.
        1 => {
            let mut bytes = 100_u32.to_le_bytes().to_vec();
            bytes.extend_from_slice(&[0; 10]);
            stream.write_all(&bytes).ok()?;
        }
        // A hello with a nonce, and never a proof.
        _ => {
            let nonce = auth::nonce().expect("nonce");
            let claim = if to == 1 { 2 } else { 1 };
            let hello = hello(bases, claim, shard, Some(nonce));
            stream
                .write_all(&frame(&FrameBody::Handshake(hello)))
                .ok()?;
        }
    }
    stream.set_nonblocking(true).ok()?;
    Some(stream)
}

/// Whether a non-blocking `stream` was closed by the server.
fn gone(stream: &mut TcpStream) -> bool {
    let mut sink = [0_u8; 1024];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

// Goal: 300 connections held on every shard's peer port (idle, mid-frame, a hello
// that never proves) cannot keep a restarted real peer out, the cluster keeps
// choosing, and the refusals write a bounded number of log lines.
// Method: three keyed children with 2 shards; a thread keeps 300 connections open
// on each of the six peer ports (replacing those the nodes close every 100 ms); SIGKILL
// node 3 and restart it; measure from its "ready" until nodes 1 and 2 both accepted it
// on both shards (bound: 1 s); proposals are acknowledged throughout; count log lines.
#[test]
fn flood_of_pending_connections_does_not_lock_out_a_peer() {
    let mut cluster = Cluster::start("hostile-flood");
    cluster.progress("before", Duration::from_secs(20));
    let targets: Vec<(u32, u16)> = (1..=3)
        .flat_map(|n| (0..SHARDS).map(move |s| (n, s)))
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = {
        let stop = Arc::clone(&stop);
        let bases = cluster.bases.clone();
        std::thread::spawn(move || {
            let mut held: Vec<Vec<Option<TcpStream>>> =
                targets.iter().map(|_| Vec::new()).collect();
            let mut opened = 0_u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (i, (node, shard)) in targets.iter().enumerate() {
                    let list = &mut held[i];
                    list.retain_mut(|s| s.as_mut().is_some_and(|s| !gone(s)));
                    while list.len() < 300 {
                        let n = list.len() + 7 * i;
                        list.push(flood_connection(&bases, n, *node, *shard));
                        opened += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            opened
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    cluster.progress("flooded", Duration::from_secs(20));

    // Restart node 3 under the flood.
    let accepted_before: Vec<usize> = [1, 2]
        .iter()
        .map(|id| accepted_lines(&cluster.nodes[id], 3))
        .collect();
    let mut killed = cluster.nodes.remove(&3).expect("node 3");
    killed.child.kill().expect("SIGKILL");
    let _ = killed.child.wait();
    cluster.spawn(3);
    let ready = Instant::now();
    let mut reconnect = None;
    while ready.elapsed() < Duration::from_secs(5) {
        let all = [1, 2].iter().zip(&accepted_before).all(|(id, before)| {
            accepted_lines(&cluster.nodes[id], 3) >= before + usize::from(SHARDS)
        });
        if all {
            reconnect = Some(ready.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let reconnect = reconnect.expect("node 3 not accepted by nodes 1 and 2 within 5 s");
    println!("restarted node 3 accepted on every shard after {reconnect:?}");
    assert!(reconnect < Duration::from_secs(1), "{reconnect:?}");
    cluster.progress("restarted", Duration::from_secs(20));
    // The flood reaches the restarted node too before it ends.
    std::thread::sleep(Duration::from_secs(1));

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened = flooder.join().expect("flooder");
    println!("flood connections opened: {opened}");
    assert!(opened >= 1800, "{opened}");
    cluster.all_alive();
    for (id, serve) in &cluster.nodes {
        let lines = close_lines(serve);
        println!("node {id}: {lines} close lines");
        assert!(
            lines < 200,
            "node {id}: {lines} lines: {:#?}",
            serve.log_lines()
        );
        assert!(serve.has_log(&["evicted"]), "node {id}: nothing evicted");
    }
    cluster.stop();
}

/// Lines of `serve` saying it accepted `node` (one per shard and connection).
fn accepted_lines(serve: &Serve, node: u32) -> usize {
    let needle = format!("accepted node {node}");
    serve
        .log_lines()
        .iter()
        .filter(|l| l.ends_with(&needle))
        .count()
}

/// Messages from `from` to `to` with extreme fields, one per message kind.
fn extreme_messages(from: u32, to: u32) -> Vec<Message> {
    let max = u64::MAX;
    let ballot = Ballot {
        round: max,
        node: NodeId(from),
    };
    let entry = Entry {
        origin: ballot,
        body: Body::Values(smallvec::smallvec![Bytes::from_static(b"forged")]),
    };
    let bodies = vec![
        MessageBody::Prepare {
            ballot,
            from: Instance(1),
        },
        MessageBody::Prepare {
            ballot,
            from: Instance(max),
        },
        MessageBody::Accept {
            ballot,
            chosen_through: Instance(max),
            first: Instance(max),
            entries: vec![entry.clone()],
        },
        MessageBody::Accept {
            ballot: Ballot {
                round: 1,
                node: NodeId(from),
            },
            chosen_through: Instance(max - 1),
            first: Instance(max),
            entries: vec![entry.clone()],
        },
        MessageBody::Promise {
            ballot,
            chosen_through: Instance(max),
            entries: Vec::new(),
            truncated: true,
        },
        MessageBody::Reject { promised: ballot },
        MessageBody::Accepted {
            ballot,
            ranges: vec![InstanceRange {
                first: Instance(1),
                last: Instance(max),
            }],
        },
        MessageBody::Heartbeat {
            ballot,
            chosen_through: Instance(max),
            sent_at: Nanos(max),
            checksum_through: Instance(max),
            checksum: u32::MAX,
        },
        MessageBody::HeartbeatAck {
            ballot,
            sent_at: Nanos(max),
        },
        MessageBody::CatchUpRequest {
            from: Instance(max),
            credit: u32::MAX,
            retired: false,
        },
        MessageBody::CatchUpChunk {
            chosen_through: Instance(max),
            promised: ballot,
            accepted_max: Instance(max),
            first: Instance(max),
            entries: vec![entry],
            from_voter: true,
            membership_changed: false,
        },
    ];
    (0..GROUPS)
        .flat_map(|group| {
            bodies.iter().map(move |body| Message {
                group: GroupId(group),
                from: NodeId(from),
                to: NodeId(to),
                body: body.clone(),
            })
        })
        .collect()
}

// Goal: a dialer that HOLDS the key (a compromised or buggy peer) and sends messages
// with extreme fields (rounds and instances at u64::MAX) makes no node panic, none
// persists them, and the cluster keeps choosing. This depends on the protocol's
// bounds on ballots and instances from the wire (paxos and the decoder); without them
// the nodes panic on `round + 1` overflow and this test fails.
// Method: three keyed children; to every shard of every node, claiming another
// node id, a batch of every message kind with extreme fields and a heartbeat batch
// with chosen_through u64::MAX; for 4 s (13 election timeouts) every group must
// acknowledge proposals and every process stay up; stop the nodes and check with
// `synod wal dump` that no record holds u64::MAX (as a round or an instance).
#[test]
fn keyed_dialer_with_extreme_fields_changes_nothing() {
    let mut cluster = Cluster::start("hostile-extreme");
    cluster.progress("before", Duration::from_secs(20));
    for to in 1..=3_u32 {
        let claim = if to == 1 { 2 } else { 1 };
        let accepted = accepted_lines(&cluster.nodes[&to], claim);
        for shard in 0..SHARDS {
            let key = cluster.key.clone();
            let mut stream = dial(&cluster.bases, [127, 0, 0, 5], to, shard, claim, Some(&key))
                .expect("the keyed dialer completes its handshake");
            let mut bytes = frame(&FrameBody::MessageBatch(extreme_messages(claim, to)));
            bytes.extend_from_slice(&frame(&FrameBody::HeartbeatBatch(HeartbeatBatch {
                from: NodeId(claim),
                to: NodeId(to),
                heartbeats: (0..GROUPS)
                    .map(|g| GroupHeartbeat {
                        group: GroupId(g),
                        ballot: Ballot {
                            round: u64::MAX,
                            node: NodeId(claim),
                        },
                        chosen_through: Instance(u64::MAX),
                        sent_at: Nanos(u64::MAX),
                        checksum_through: Instance(u64::MAX),
                        checksum: 0,
                    })
                    .collect(),
            })));
            stream.write_all(&bytes).expect("write the forged frames");
            std::thread::sleep(Duration::from_millis(100));
        }
        // The forged connections passed the handshake (so their frames were read).
        let deadline = Instant::now() + Duration::from_secs(5);
        while accepted_lines(&cluster.nodes[&to], claim) < accepted + usize::from(SHARDS) {
            assert!(
                Instant::now() < deadline,
                "node {to} did not accept the keyed dialer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Several election timeouts (300 ms) with proposals: a node that took in a round
    // of u64::MAX would overflow computing the next one when it campaigns.
    for round in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        cluster.all_alive();
        cluster.progress(&format!("after-{round}"), Duration::from_secs(20));
    }
    cluster.all_alive();
    let dirs: Vec<String> = cluster
        .dirs
        .values()
        .map(|d| d.path().display().to_string())
        .collect();
    let cluster_dirs = std::mem::take(&mut cluster.dirs);
    cluster.stop();
    for dir in &dirs {
        for shard in 0..SHARDS {
            let dump = synod(&["wal", "dump", dir, "--shard", &shard.to_string()]);
            let text = String::from_utf8_lossy(&dump.stdout);
            assert!(dump.status.success(), "{dir}: {text}");
            assert!(
                !text.contains(&u64::MAX.to_string()),
                "{dir} shard {shard} persisted a forged field:\n{text}"
            );
        }
    }
    drop(cluster_dirs);
}

// Goal: `synod serve` refuses to start without a peer key unless `--no-auth` says so,
// and `synod keygen` prints a key that `--key-file` reads.
// Method: run serve without either flag, with both, and with a malformed key file;
// check the exit status and the message; parse keygen's output as a key.
#[test]
fn serve_needs_a_key_file_or_no_auth() {
    let dir = TempDir::new("hostile-flags");
    let serve = |extra: &[&str]| {
        let mut args = one_node_serve(dir.path().to_str().expect("utf-8 path"));
        args.extend_from_slice(extra);
        let output = synod(&args);
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let (ok, stderr) = serve(&[]);
    assert!(
        !ok && stderr.contains("required arguments were not provided: --key-file <FILE>"),
        "{stderr}"
    );
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "not hex").expect("write");
    let bad = bad.display().to_string();
    let (ok, stderr) = serve(&["--key-file", &bad, "--no-auth"]);
    assert!(!ok && stderr.contains("cannot be used with"), "{stderr}");
    let (ok, stderr) = serve(&["--key-file", &bad]);
    assert!(!ok && stderr.contains("--key-file"), "{stderr}");

    let keygen = synod(&["keygen"]);
    assert!(keygen.status.success());
    let text = String::from_utf8_lossy(&keygen.stdout);
    assert_eq!(text.trim().len(), 64, "{text}");
    assert!(AuthKey::from_hex(&text).is_ok(), "{text}");
}
