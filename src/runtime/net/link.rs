//! The tasks of the peer links, on the shard's executor: the accept loop and one
//! reader per accepted connection, one dialer/writer per peer, and the close-log
//! summaries. They execute: the handshake decisions are `handshake`'s, admission is
//! `admission`'s, packing and unpacking are `transport::batch`'s.
//!
//! Invariants (module docs of `net` for the whole list):
//! - a size header above the stage's bound (`HANDSHAKE_SIZE_MAX`, then
//!   `frame_size_max`) closes the connection BEFORE any buffer is sized by it;
//! - nothing a connection sent is delivered before its handshake passed, and a frame is
//!   delivered whole or not at all;
//! - a reader reads only while fewer than `inbound_count_max` messages wait.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use glommio::net::{Preallocated, TcpListener, TcpStream};
use glommio::timer::sleep;

use super::close::{Closed, CLOSE_LOG_INTERVAL};
use super::handshake::{self, HANDSHAKE_SIZE_MAX};
use super::{Inner, Link};
use crate::paxos::NodeId;
use crate::runtime::notify::Notify;
use crate::support::high_water::HighWater;
use crate::transport::auth::{self, Nonce};
use crate::transport::batch::unpack;
use crate::transport::{self, append_frame_with, FrameBody, FRAME_HEADER_SIZE};

/// Receive buffer of an inbound connection after its handshake: frames are read with
/// two `read_exact` calls (header, body), so small frames are served from here.
const READ_BUFFER_SIZE: usize = 64 << 10;

/// Reads one `[u32 LE size][size bytes]` frame into `frame`, refusing a size above
/// `size_max` before allocating.
pub(super) async fn read_frame(
    stream: &mut (impl AsyncRead + Unpin),
    size_max: usize,
    frame: &mut Vec<u8>,
) -> Result<(), Closed> {
    let mut header = [0_u8; FRAME_HEADER_SIZE];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|e| Closed::io(&e))?;
    let size = usize::try_from(u32::from_le_bytes(header)).unwrap_or(usize::MAX);
    if size > size_max {
        return Err(Closed::new(
            "oversized frame",
            format_args!("size header {size} > {size_max}"),
        ));
    }
    frame.clear();
    frame.resize(size, 0);
    stream.read_exact(frame).await.map_err(|e| Closed::io(&e))
}

/// A fresh nonce, or the close of a connection whose handshake cannot get one.
fn fresh_nonce() -> Result<Nonce, Closed> {
    auth::nonce().map_err(|error| Closed::new("random source", error))
}

/// Writes `frame` and flushes.
async fn write_frame(stream: &mut TcpStream, frame: &[u8]) -> Result<(), Closed> {
    stream.write_all(frame).await.map_err(|e| Closed::io(&e))?;
    stream.flush().await.map_err(|e| Closed::io(&e))
}

impl Inner {
    /// `body` as a handshake-stage frame, with its size header.
    fn handshake_frame(&self, body: &FrameBody) -> Vec<u8> {
        let mut frame = Vec::new();
        let mut encoder = self.encoder.borrow_mut();
        append_frame_with(&mut frame, HANDSHAKE_SIZE_MAX, |out| {
            encoder.encode(body, out);
        })
        .expect("validate bounds the layout, so a handshake fits HANDSHAKE_SIZE_MAX");
        frame
    }

    /// Checks a frame from `node` and queues its messages, or refuses it whole.
    fn deliver(&self, node: NodeId, body: FrameBody, frame_size: usize) -> Result<(), Closed> {
        let own = self.config.node;
        let delivered = unpack(body, node, own, &mut self.inbound.borrow_mut())
            .map_err(|error| Closed::unpack(&error, node.0, own.0))?;
        let mut counters = self.counters.borrow_mut();
        counters.frames_received += 1;
        counters.bytes_received += (FRAME_HEADER_SIZE + frame_size) as u64;
        counters.messages_received += delivered as u64;
        drop(counters);
        if delivered > 0 {
            (self.wake)();
        }
        Ok(())
    }

    /// Admits connection `id` from `source` into its handshake (evicting and closing the
    /// oldest pending one when `pending_max` are pending), or returns the refusal.
    fn admit(&self, id: u64, source: IpAddr) -> Result<(), Closed> {
        let admitted = self.pending.borrow_mut().admit(id, source);
        let Some(evicted) = admitted? else {
            return Ok(());
        };
        if let Some(handle) = self.connections.borrow_mut().remove(&evicted.id) {
            handle.cancel();
        }
        self.closed(&evicted.source, &Closed::from(evicted), log::Level::Warn);
        Ok(())
    }
}

/// Accepts connections until canceled; each gets its own task. Admission is decided
/// here at once (no sleep, no I/O): a source at `pending_per_source_max` handshakes
/// is refused, and at `pending_max` the oldest handshake is evicted to make room.
pub(super) async fn accept_loop(inner: Rc<Inner>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let source = stream
                    .peer_addr()
                    .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
                let id = inner.connection_id_next.get();
                if let Err(closed) = inner.admit(id, source) {
                    drop(stream);
                    inner.closed(&source, &closed, log::Level::Warn);
                    continue;
                }
                inner.connection_id_next.set(id + 1);
                let task = glommio::spawn_local(serve_inbound(Rc::clone(&inner), id, stream));
                // The task cannot run before this returns to the executor, so its entry
                // exists before its guard can remove it.
                inner.connections.borrow_mut().insert(id, task.detach());
            }
            Err(error) => {
                let closed = Closed::new("accept error", error);
                inner.closed(&inner.config.listen, &closed, log::Level::Warn);
                sleep(inner.config.connect_backoff_min).await;
            }
        }
    }
}

/// Logs, once per `CLOSE_LOG_INTERVAL`, the summary of closes whose lines were
/// suppressed and that no later close of the same reason reported. Runs until canceled.
pub(super) async fn close_log_summaries(inner: Rc<Inner>) {
    loop {
        sleep(CLOSE_LOG_INTERVAL).await;
        let expired = inner.close_log.borrow_mut().take_expired(inner.clock.now());
        for (reason, count) in expired {
            inner.log_suppressed(reason, count);
        }
    }
}

/// Removes a connection's entries when its task ends or is canceled.
struct ConnectionGuard {
    inner: Rc<Inner>,
    id: u64,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.inner.connections.borrow_mut().remove(&self.id);
        self.inner.pending.borrow_mut().remove(self.id);
        self.inner
            .readers
            .borrow_mut()
            .retain(|_, id| *id != self.id);
        self.inner.frame_capacity.borrow_mut().remove(&self.id);
    }
}

async fn serve_inbound(inner: Rc<Inner>, id: u64, stream: TcpStream) {
    let _guard = ConnectionGuard {
        inner: Rc::clone(&inner),
        id,
    };
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown".to_string(), |a| a.to_string());
    let closed = read_inbound(&inner, id, stream).await;
    let level = match closed.reason {
        "peer closed" => log::Level::Info,
        _ => log::Level::Warn,
    };
    inner.closed(&peer, &closed, level);
}

/// Runs `handshake` against the deadline `timeout`; a late handshake is closed with
/// reason "handshake timeout", naming the stage it was in.
async fn within<T>(
    timeout: Duration,
    stage: &Cell<&'static str>,
    handshake: impl std::future::Future<Output = Result<T, Closed>>,
) -> Result<T, Closed> {
    let deadline = async {
        sleep(timeout).await;
        Err(Closed::new(
            "handshake timeout",
            format_args!("{timeout:?}, waiting for {}", stage.get()),
        ))
    };
    futures_lite::future::or(handshake, deadline).await
}

/// The accepting side of a handshake: the dialer's hello, this node's reply (with its
/// nonce and proof when keyed), the dialer's proof (when keyed), then the shard count
/// and layout. Returns the authenticated peer.
async fn accept_handshake(
    inner: &Inner,
    stream: &mut TcpStream,
    frame: &mut Vec<u8>,
    stage: &Cell<&'static str>,
) -> Result<NodeId, Closed> {
    let own = &inner.config;
    stage.set("the hello");
    read_frame(stream, HANDSHAKE_SIZE_MAX, frame).await?;
    let hello = handshake::check_hello(own, frame)?;
    let nonce = if hello.keyed() {
        Some(fresh_nonce()?)
    } else {
        None
    };
    let (reply, awaiting) = hello.reply(own, nonce);
    stage.set("the reply to be written");
    write_frame(stream, &inner.handshake_frame(&FrameBody::Handshake(reply))).await?;
    let proof = if awaiting.proof_expected() {
        stage.set("the proof");
        read_frame(stream, HANDSHAKE_SIZE_MAX, frame).await?;
        Some(&frame[..])
    } else {
        None
    };
    Ok(awaiting.finish(own, proof)?)
}

/// Handshakes an accepted connection, then reads frames until it fails; returns why.
async fn read_inbound(inner: &Rc<Inner>, id: u64, mut stream: TcpStream) -> Closed {
    if let Err(error) = stream.set_nodelay(true) {
        return Closed::new("socket option", error);
    }
    let mut frame = Vec::new();
    let stage = Cell::new("the hello");
    let handshake = accept_handshake(inner, &mut stream, &mut frame, &stage);
    let node = match within(inner.config.handshake_timeout, &stage, handshake).await {
        Ok(node) => node,
        Err(closed) => return closed,
    };
    // Authenticated (or unauthenticated by configuration on both sides): only now may
    // it take over the peer's link.
    inner.pending.borrow_mut().remove(id);
    let replaced = inner.readers.borrow_mut().insert(node, id);
    if let Some(old) = replaced {
        if let Some(handle) = inner.connections.borrow_mut().remove(&old) {
            handle.cancel();
        }
        let closed = Closed::new(
            "replaced",
            format_args!("a new connection from node {}", node.0),
        );
        inner.closed(&format_args!("node {}", node.0), &closed, log::Level::Info);
    }
    inner.counters.borrow_mut().connects_inbound += 1;
    if let Some(link) = inner.links.get(&node) {
        if !link.connected.get() {
            link.peer_up.notify();
        }
    }
    log::info!(
        "net: node {} shard {}: accepted node {}",
        inner.config.node.0,
        inner.config.shard,
        node.0
    );
    let mut stream = stream.buffered_with(Preallocated::new(READ_BUFFER_SIZE));
    let limits = inner.config.limits;
    let resume = Rc::new(Notify::default());
    let mut frame_sizes = HighWater::default();
    let mut counted = None;
    loop {
        if counted != Some(frame.capacity()) {
            counted = Some(frame.capacity());
            inner
                .frame_capacity
                .borrow_mut()
                .insert(id, frame.capacity());
        }
        while inner.inbound.borrow().len() >= inner.config.inbound_count_max {
            inner.paused.borrow_mut().push(Rc::clone(&resume));
            resume.wait().await;
        }
        if let Err(closed) = read_frame(&mut stream, limits.frame_size_max, &mut frame).await {
            return closed;
        }
        let body = match transport::decode(&frame, &limits) {
            Ok(body) => body,
            Err(error) => return Closed::new("malformed frame", error),
        };
        if let Err(closed) = inner.deliver(node, body, frame.len()) {
            return closed;
        }
        frame_sizes.recycle(&mut frame);
    }
}

/// Connects to `peer` and handshakes (hello with this node's nonce when keyed; the
/// acceptor's reply and proof checked; the shard count and layout checked; then this
/// node's proof); returns the connected stream.
async fn connect(
    inner: &Inner,
    peer: NodeId,
    addr: SocketAddr,
    stage: &Cell<&'static str>,
) -> Result<TcpStream, Closed> {
    stage.set("connect");
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|error| Closed::new("connect failed", error))?;
    stream
        .set_nodelay(true)
        .map_err(|error| Closed::new("socket option", error))?;
    let own = &inner.config;
    let nonce = match own.key {
        Some(_) => Some(fresh_nonce()?),
        None => None,
    };
    stage.set("the reply");
    let hello = handshake::hello(own, nonce);
    write_frame(
        &mut stream,
        &inner.handshake_frame(&FrameBody::Handshake(hello)),
    )
    .await?;
    let mut frame = Vec::new();
    read_frame(&mut stream, HANDSHAKE_SIZE_MAX, &mut frame).await?;
    if let Some(proof) = handshake::check_reply(own, peer, nonce, &frame)? {
        stage.set("the proof to be written");
        let frame = inner.handshake_frame(&FrameBody::HandshakeProof(proof));
        write_frame(&mut stream, &frame).await?;
    }
    Ok(stream)
}

/// The writer toward one peer: connects (with backoff), handshakes, writes whatever
/// is buffered; on failure drops the buffer and starts over. Runs until canceled.
pub(super) async fn dial_loop(inner: Rc<Inner>, peer: NodeId) {
    let link = inner
        .links
        .get(&peer)
        .expect("a writer exists only for a peer");
    let config = &inner.config;
    let mut backoff = config.connect_backoff_min;
    let mut spare = Vec::new();
    let mut rounds = HighWater::default();
    let mut failed_before = false;
    // Until the first connection, a refused connect is the peer not being up yet (nodes
    // of a cluster start one after the other): not worth a warning.
    let mut ever_connected = false;
    loop {
        let stage = Cell::new("connect");
        let handshake = connect(&inner, peer, link.addr, &stage);
        match within(config.handshake_timeout, &stage, handshake).await {
            Ok(stream) => {
                backoff = config.connect_backoff_min;
                failed_before = false;
                ever_connected = true;
                inner.counters.borrow_mut().connects_outbound += 1;
                log::info!(
                    "net: node {} shard {}: connected to node {} at {}",
                    config.node.0,
                    config.shard,
                    peer.0,
                    link.addr
                );
                link.connected.set(true);
                let closed = write_loop(&inner, link, stream, &mut spare, &mut rounds).await;
                link.connected.set(false);
                rounds.recycle(&mut link.buffer.borrow_mut());
                link.buffer_frames.set(0);
                let lost = link.buffer_messages.replace(0);
                inner.counters.borrow_mut().messages_dropped_disconnected += lost;
                inner.closed(&link.addr, &closed, log::Level::Warn);
            }
            Err(closed) => {
                // A peer that is down refuses every attempt: say so once, then quietly.
                let level =
                    if (failed_before || !ever_connected) && closed.reason == "connect failed" {
                        log::Level::Debug
                    } else {
                        log::Level::Warn
                    };
                failed_before = true;
                inner.closed(&link.addr, &closed, level);
            }
        }
        // Until the backoff runs out or the peer is seen up (an inbound handshake).
        futures_lite::future::or(sleep(backoff), link.peer_up.wait()).await;
        backoff = (backoff * 2).min(config.connect_backoff_max);
    }
}

/// Writes the link's buffer whenever it is non-empty, one `write_all` per round, by
/// swapping it with `spare` (so neither is reallocated while rounds keep their size;
/// a written round is recycled through `rounds`, which drops a past burst's capacity).
/// Returns why it stopped.
async fn write_loop(
    inner: &Inner,
    link: &Link,
    mut stream: TcpStream,
    spare: &mut Vec<u8>,
    rounds: &mut HighWater,
) -> Closed {
    loop {
        while link.buffer.borrow().is_empty() {
            link.ready.wait().await;
        }
        spare.clear();
        std::mem::swap(&mut *link.buffer.borrow_mut(), spare);
        let frames = link.buffer_frames.replace(0);
        let messages = link.buffer_messages.replace(0);
        let written = match stream.write_all(spare).await {
            Ok(()) => stream.flush().await,
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            inner.counters.borrow_mut().messages_dropped_disconnected += messages;
            return Closed::new("write error", error);
        }
        let mut counters = inner.counters.borrow_mut();
        counters.frames_sent += frames;
        counters.bytes_sent += spare.len() as u64;
        counters.messages_sent += messages;
        rounds.recycle(spare);
        link.spare_capacity.set(spare.capacity());
    }
}
