//! Tests of the peer links over loopback sockets: helpers shared by `exchange` (links
//! that work: order, bounds, reconnects, backpressure) and `hostile` (connections that
//! must be refused, and the logging of their closes).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future::yield_now;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::timer::sleep;

use super::config::fixture::{config, free_addrs};
use super::link::read_frame;
use super::*;
use crate::paxos::{Ballot, Body, Entry, GroupId, Instance, MessageBody, Nanos};
use crate::transport::auth::{AuthKey, Nonce};
use crate::transport::{
    self, append_frame, FrameBody, GroupHeartbeat, Handshake, HandshakeProof, HeartbeatAckBatch,
    HeartbeatBatch, PROTOCOL_VERSION,
};
use crate::wal::dma_disk::run_local;

mod exchange;
mod hostile;

async fn start(config: NetConfig) -> Net {
    Net::start(config, Rc::new(|| {})).await.expect("start")
}

/// Polls `done` every 10 ms; panics after about 5 s.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Drains `net` until something arrived; returns what did.
async fn wait_inbound(net: &Net) -> Vec<Message> {
    let mut inbound = Vec::new();
    wait_for("a message", || {
        net.drain_inbound(&mut inbound);
        !inbound.is_empty()
    })
    .await;
    inbound
}

fn closes(net: &Net, reason: &str) -> u64 {
    net.counters().closes.get(reason).copied().unwrap_or(0)
}

fn ballot(node: u32) -> Ballot {
    Ballot {
        round: 5,
        node: NodeId(node),
    }
}

fn accept(from: u32, to: u32, seq: u64, value: &Bytes) -> Message {
    Message {
        group: GroupId(seq as u32),
        from: NodeId(from),
        to: NodeId(to),
        body: MessageBody::Accept {
            ballot: ballot(from),
            chosen_through: Instance(seq),
            first: Instance(seq + 1),
            entries: vec![Entry {
                origin: ballot(from),
                body: Body::Values(smallvec::smallvec![value.clone()]),
            }],
        },
    }
}

fn prepare(from: u32, to: u32, seq: u64) -> Message {
    Message {
        group: GroupId(seq as u32),
        from: NodeId(from),
        to: NodeId(to),
        body: MessageBody::Prepare {
            ballot: ballot(from),
            from: Instance(seq + 1),
        },
    }
}

fn heartbeat(from: u32, to: u32, seq: u64) -> Message {
    Message {
        group: GroupId(seq as u32),
        from: NodeId(from),
        to: NodeId(to),
        body: MessageBody::Heartbeat {
            ballot: ballot(from),
            chosen_through: Instance(seq),
            sent_at: Nanos(seq * 10),
            checksum_through: Instance(seq),
            checksum: seq as u32,
        },
    }
}

fn heartbeat_ack(from: u32, to: u32, seq: u64) -> Message {
    Message {
        group: GroupId(seq as u32),
        from: NodeId(from),
        to: NodeId(to),
        body: MessageBody::HeartbeatAck {
            ballot: ballot(to),
            sent_at: Nanos(seq),
        },
    }
}

/// `body` as a length-prefixed frame.
fn frame(body: &FrameBody) -> Vec<u8> {
    let mut payload = Vec::new();
    transport::encode(body, &mut payload);
    let mut out = Vec::new();
    append_frame(&payload, usize::MAX, &mut out).expect("frame");
    out
}

/// Node `node`'s handshake as the fixture's configuration makes it (this protocol
/// version, cluster 77, shard 3 of 4, the layout `addrs`), without nonce or proof.
fn handshake_of(node: u32, addrs: &BTreeMap<NodeId, SocketAddr>) -> Handshake {
    Handshake {
        protocol_version: PROTOCOL_VERSION,
        cluster: 77,
        node: NodeId(node),
        shard: 3,
        shards: 4,
        layout: addrs.iter().map(|(n, a)| (*n, *a)).collect(),
        nonce: None,
        proof: None,
    }
}

/// `handshake` as a length-prefixed frame.
fn hello_frame(handshake: Handshake) -> Vec<u8> {
    frame(&FrameBody::Handshake(handshake))
}

/// Node `node`'s handshake frame with the layout `addrs`, carrying `nonce`.
fn hello(addrs: &BTreeMap<NodeId, SocketAddr>, node: u32, nonce: Option<Nonce>) -> Vec<u8> {
    hello_frame(Handshake {
        nonce,
        ..handshake_of(node, addrs)
    })
}

/// Reads from `stream` until the server closes it; false if it stays open ~3 s.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let read_to_end = async {
        let mut sink = [0_u8; 4096];
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    };
    let timeout = async {
        sleep(Duration::from_secs(3)).await;
        false
    };
    futures_lite::future::or(read_to_end, timeout).await
}

/// Connects to `server`, writes `bytes`, and reports whether the server closed.
async fn raw_session(server: SocketAddr, bytes: &[u8]) -> bool {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream.flush().await.expect("flush");
    closed_by_server(&mut stream).await
}

fn keyed(mut config: NetConfig, key: &AuthKey) -> NetConfig {
    config.key = Some(key.clone());
    config
}

/// A blocking loopback socket from source address `source` to `server`, then made
/// non-blocking (the server runs on this thread: connect completes in the kernel).
fn attacker(source: [u8; 4], server: SocketAddr) -> std::net::TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let from = SocketAddr::from((source, 0));
    socket.bind(&from.into()).expect("bind source");
    socket.connect(&server.into()).expect("connect");
    let stream: std::net::TcpStream = socket.into();
    stream.set_nonblocking(true).expect("non-blocking");
    stream
}

/// Whether the server closed `stream` (polled every 10 ms for up to `wait`).
async fn std_closed(stream: &mut std::net::TcpStream, wait: Duration) -> bool {
    use std::io::Read;
    let mut sink = [0_u8; 4096];
    for _ in 0..wait.as_millis() / 10 {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                sleep(Duration::from_millis(10)).await;
            }
            Err(_) => return true,
        }
    }
    false
}

/// Sends `prepare(from, to, seq)` until `to` received one; returns every message `to`
/// received meanwhile.
async fn link_delivers(from: &Net, to: &Net, seq: u64) -> Vec<Message> {
    let (a, b) = (from.inner.config.node.0, to.inner.config.node.0);
    let mut inbound = Vec::new();
    wait_for("a message over the link", || {
        from.send(NodeId(b), &[prepare(a, b, seq)]);
        to.drain_inbound(&mut inbound);
        inbound.contains(&prepare(a, b, seq))
    })
    .await;
    inbound
}
