//! The client listener of a node (`synod serve --client ADDR`): clients' requests in
//! the client protocol (`schema/client.fbs`, `synod::client::codec`) to the node's
//! `NodeHandle`, answers back in batches. It runs on its own threads, beside the shard
//! threads, which it reaches only through the handle's mailboxes.
//!
//! Threads: one accepts; each connection has a reader (handshake, then decodes
//! requests and hands each one, as a future of the handle, to the connection's
//! driver) and a driver (polls those futures when their one-shot reply wakes them,
//! and writes every answer ready at that moment in one `write_all`); one closer
//! lingers on refused sockets (`admission`).
//!
//! The handshake, with a client key (`ServerConfig::key`): the client's `Hello`
//! carries its nonce; the node answers with a `Challenge` (its nonce and its proof
//! over both); the client answers with its `Proof`; only a proof that verifies gets
//! the `Welcome`. Without a key the `Hello` gets the `Welcome` at once.
//!
//! Invariants (every one bounded, every refusal logged with its reason, rate-limited
//! per reason):
//! - at most `connections_max` connections, `connections_per_source_max` from one IP
//!   address and `unauthenticated_max` before the handshake completes (admitting one
//!   more evicts the oldest unauthenticated one); a refusal costs the accept thread
//!   microseconds;
//! - no request is served before the handshake completes; the whole handshake takes
//!   at most `handshake_timeout`, and its frames at most `HANDSHAKE_FRAME_SIZE_MAX`
//!   bytes;
//! - what a refused unauthenticated peer is told names no check and no value of the
//!   node (with a key): the precise reason is in the node's log only;
//! - a frame above `frame_size_max` is refused from its 4 header bytes, before any
//!   buffer is sized by it; a reader holds at most one frame plus one read chunk; a
//!   frame begun completes within `frame_timeout`;
//! - an authenticated connection with nothing in flight that sends nothing for
//!   `idle_timeout` is closed;
//! - at most `in_flight_max` requests per connection are waiting for the node: the
//!   reader stops reading until one is answered (TCP backpressure on the client);
//! - a bad frame (size, CRC, identifier, verifier, unknown kind), a wrong hello
//!   (version, cluster, nonce), a wrong proof, a request before the handshake or an
//!   answer-kind message from the client closes that connection only, after a
//!   `Refused`; the node and the other connections are untouched;
//! - a client that does not read its answers is closed after `write_timeout`.

mod admission;
pub mod metrics;
mod request;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tracing::Span;

use crate::api::NodeHandle;
use crate::client::codec::{decode_next, CodecError, Encoder};
use crate::client::wire::{proof_context, Body, CLIENT_ROLE, NODE_ROLE, PROTOCOL_VERSION};
use crate::paxos::{Nanos, NodeId};
use crate::runtime::clock::MonotonicClock;
use crate::support::lock;
use crate::transport::auth::{self, AuthKey, NONCE_SIZE};
use admission::{Admission, Bounds, Kind, Slot};
use request::{connection_span, task_of, Task};

/// Bytes read from a socket at a time.
const READ_CHUNK_SIZE: usize = 64 << 10;

/// Largest frame a client may send before the handshake completes (a hello or a
/// proof is below 200 bytes).
pub const HANDSHAKE_FRAME_SIZE_MAX: usize = 4096;

/// The settings of a node's client listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where to listen.
    pub address: SocketAddr,
    /// The cluster id a client's hello must name.
    pub cluster: u64,
    /// This node.
    pub node: NodeId,
    /// Every node of the cluster (sent in the welcome).
    pub nodes: Vec<NodeId>,
    /// Client addresses to advertise, by node (this node's own is added from the
    /// listener when absent).
    pub addresses: BTreeMap<NodeId, String>,
    /// Largest frame a client may send (length header excluded).
    pub frame_size_max: usize,
    /// Largest answer frame (a status answer holds 48 bytes per group).
    pub answer_frame_size_max: usize,
    /// Requests of one connection waiting for the node at once.
    pub in_flight_max: usize,
    /// Connections at once.
    pub connections_max: usize,
    /// Connections at once from one IP address.
    pub connections_per_source_max: usize,
    /// Connections at once that have not completed the handshake; one more evicts
    /// the oldest of them.
    pub unauthenticated_max: usize,
    /// The client key a client must prove it holds; `None` admits any client that
    /// says hello (`synod serve --no-auth`).
    pub key: Option<AuthKey>,
    /// How long a new connection may take for the whole handshake (hello, and proof
    /// with a key).
    pub handshake_timeout: Duration,
    /// How long an authenticated connection with no request in flight may send
    /// nothing before it is closed (the client reconnects on demand).
    pub idle_timeout: Duration,
    /// How long a frame may take to arrive once its first byte has.
    pub frame_timeout: Duration,
    /// How long one write of answers may block on a client that does not read.
    pub write_timeout: Duration,
}

impl ServerConfig {
    /// The defaults (`tuning.md`, "Client listener") for a node of `cluster`, without a
    /// client key (set [`ServerConfig::key`] to require one).
    #[must_use]
    pub fn new(address: SocketAddr, cluster: u64, node: NodeId, nodes: Vec<NodeId>) -> Self {
        ServerConfig {
            address,
            cluster,
            node,
            nodes,
            addresses: BTreeMap::new(),
            frame_size_max: 4 << 20,
            answer_frame_size_max: 64 << 20,
            in_flight_max: 1024,
            connections_max: 256,
            connections_per_source_max: 64,
            unauthenticated_max: 64,
            key: None,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(120),
            frame_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// A running client listener. Dropping it stops accepting (open connections end when
/// their clients close them, time out, or the process exits).
pub struct Server {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    admission: Arc<Admission>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `config.address` and starts accepting clients for `handle`.
    ///
    /// # Errors
    ///
    /// The address cannot be bound, or the threads cannot start.
    pub fn start(mut config: ServerConfig, handle: NodeHandle) -> std::io::Result<Server> {
        assert!(
            config.frame_size_max >= 64
                && config.in_flight_max >= 1
                && config.connections_max >= 1
                && config.connections_per_source_max >= 1
                && config.unauthenticated_max >= 1,
            "client listener bounds must be positive: {config:?}"
        );
        let listener = TcpListener::bind(config.address)?;
        let address = listener.local_addr()?;
        config
            .addresses
            .entry(config.node)
            .or_insert_with(|| address.to_string());
        let admission = Admission::start(Bounds {
            connections_max: config.connections_max,
            connections_per_source_max: config.connections_per_source_max,
            unauthenticated_max: config.unauthenticated_max,
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let accept_stop = Arc::clone(&stop);
        let accept_admission = Arc::clone(&admission);
        let accept = std::thread::Builder::new()
            .name("synod-clients".to_string())
            .spawn(move || {
                accept_loop(&listener, &config, &handle, &accept_admission, &accept_stop);
            })?;
        Ok(Server {
            address,
            stop,
            admission,
            accept: Some(accept),
        })
    }

    /// The address it listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so that it sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        self.admission.stop();
    }
}

fn accept_loop(
    listener: &TcpListener,
    config: &ServerConfig,
    handle: &NodeHandle,
    admission: &Arc<Admission>,
    stop: &AtomicBool,
) {
    let clock = MonotonicClock::start();
    // Names connections in the spans (`request`): 1, 2, ... in the order accepted.
    let mut connections = 0_u64;
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                log::warn!("client listener: accept failed: {error}");
                // Out of descriptors and the like: do not spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let Ok(peer_address) = stream.peer_addr() else {
            continue; // already gone
        };
        let peer = peer_address.to_string();
        let slot = match admission.admit(&stream, peer_address.ip()) {
            Ok(slot) => slot,
            Err((kind, reason)) => {
                admission.refuse(stream, &peer, kind, &reason, config.key.is_none());
                continue;
            }
        };
        connections += 1;
        let span = connection_span(connections, &peer);
        let (config, handle, connection_admission) =
            (config.clone(), handle.clone(), Arc::clone(admission));
        let spawned = std::thread::Builder::new()
            .name("synod-client-rd".to_string())
            .spawn(move || {
                let _entered = span.enter();
                serve_connection(
                    stream,
                    &peer,
                    (&config, &handle),
                    &connection_admission,
                    clock,
                    slot,
                    &span,
                );
            });
        if let Err(error) = spawned {
            log::warn!("client listener: cannot start a connection thread: {error}");
        }
    }
}

/// What bounds one wait for a frame.
#[derive(Clone, Copy)]
struct Limits {
    /// The end of the handshake, while it lasts.
    handshake_deadline: Option<Nanos>,
    /// See [`ServerConfig::idle_timeout`].
    idle_timeout: Duration,
    /// See [`ServerConfig::frame_timeout`].
    frame_timeout: Duration,
}

/// Reads whole frames from a stream, one at a time, within `frame_size_max`.
struct FrameReader {
    buf: Vec<u8>,
    chunk: Vec<u8>,
    frame_size_max: usize,
    clock: MonotonicClock,
}

enum Next {
    Frame(Body),
    Closed,
    /// Nothing arrived for `idle_timeout` (no frame begun).
    Idle,
    Bad(Kind, String),
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl FrameReader {
    /// The next frame, or why there is none: each read waits at most until the
    /// handshake's deadline, the frame's deadline (from its first byte) or, with no
    /// frame begun, the idle deadline (from the start of this wait).
    fn next(&mut self, stream: &mut TcpStream, limits: Limits) -> Next {
        let start = self.clock.now();
        // Bytes already buffered began the frame no later than now.
        let mut frame_start = (!self.buf.is_empty()).then_some(start);
        loop {
            match decode_next(&self.buf, self.frame_size_max) {
                Ok(Some((body, consumed))) => {
                    self.buf.drain(..consumed);
                    return Next::Frame(body);
                }
                Ok(None) => {}
                Err(error) => return Next::Bad(Kind::BadFrame, bad_frame(&error)),
            }
            let now = self.clock.now();
            let (deadline, on_timeout) = match frame_start {
                Some(at) => (
                    at.plus(nanos(limits.frame_timeout)),
                    Next::Bad(
                        Kind::FrameTimeout,
                        format!(
                            "a frame begun did not complete within {} ms ({} bytes buffered)",
                            limits.frame_timeout.as_millis(),
                            self.buf.len()
                        ),
                    ),
                ),
                None => (start.plus(nanos(limits.idle_timeout)), Next::Idle),
            };
            let (deadline, on_timeout) = match limits.handshake_deadline {
                Some(end) if end <= deadline => (
                    end,
                    Next::Bad(
                        Kind::HandshakeTimeout,
                        "the handshake did not complete within handshake_timeout".to_string(),
                    ),
                ),
                Some(_) | None => (deadline, on_timeout),
            };
            if now >= deadline {
                return on_timeout;
            }
            let wait = Duration::from_nanos(deadline.0 - now.0).max(Duration::from_millis(1));
            if let Err(e) = stream.set_read_timeout(Some(wait)) {
                return Next::Bad(Kind::Internal, format!("socket: {e}"));
            }
            match stream.read(&mut self.chunk) {
                Ok(0) => {
                    return if self.buf.is_empty() {
                        Next::Closed
                    } else {
                        Next::Bad(
                            Kind::BadFrame,
                            format!(
                                "closed in the middle of a frame ({} bytes buffered)",
                                self.buf.len()
                            ),
                        )
                    }
                }
                Ok(n) => {
                    if self.buf.is_empty() {
                        frame_start = Some(self.clock.now());
                    }
                    self.buf.extend_from_slice(&self.chunk[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted
                            | std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Next::Bad(Kind::Internal, format!("read failed: {e}")),
            }
        }
    }
}

fn bad_frame(error: &CodecError) -> String {
    format!("bad frame: {error}")
}

/// One connection's reader: the handshake, then requests to the driver, each in a
/// span below the connection's `span`.
fn serve_connection(
    mut stream: TcpStream,
    peer: &str,
    (config, handle): (&ServerConfig, &NodeHandle),
    admission: &Arc<Admission>,
    clock: MonotonicClock,
    slot: Slot,
    span: &Span,
) {
    let mut reader = FrameReader {
        buf: Vec::new(),
        chunk: vec![0_u8; READ_CHUNK_SIZE],
        frame_size_max: HANDSHAKE_FRAME_SIZE_MAX.min(config.frame_size_max),
        clock,
    };
    if let Err((kind, reason)) = handshake(&mut stream, &mut reader, config, &slot) {
        if !slot.evicted() {
            // With a key, the peer is not authenticated: it learns nothing specific.
            admission.refuse(stream, peer, kind, &reason, config.key.is_none());
        }
        return;
    }
    reader.frame_size_max = config.frame_size_max;
    log::info!("client listener: {peer} connected");
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
    });
    let writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(error) => {
            let reason = format!("cannot clone the socket: {error}");
            admission.refuse(stream, peer, Kind::Internal, &reason, true);
            return;
        }
    };
    let driver = {
        let (shared, config, peer) = (Arc::clone(&shared), config.clone(), peer.to_string());
        let (admission, span) = (Arc::clone(admission), span.clone());
        std::thread::Builder::new()
            .name("synod-client-wr".to_string())
            .spawn(move || {
                let _entered = span.enter();
                drive(writer, &peer, &config, &shared, &admission, slot);
            })
    };
    if let Err(error) = driver {
        let reason = format!("cannot start a thread: {error}");
        admission.refuse(stream, peer, Kind::Internal, &reason, true);
        return;
    }
    let limits = Limits {
        handshake_deadline: None,
        idle_timeout: config.idle_timeout,
        frame_timeout: config.frame_timeout,
    };
    let mut next_key = 0_u64;
    loop {
        let body = match reader.next(&mut stream, limits) {
            Next::Frame(body) => body,
            Next::Closed => {
                shared.close(None);
                return;
            }
            // Requests in flight: the client is waiting for answers, not idle.
            Next::Idle if lock(&shared.state).in_flight > 0 => continue,
            Next::Idle => {
                let reason = format!(
                    "idle for {} s with nothing in flight (idle_timeout)",
                    config.idle_timeout.as_secs()
                );
                shared.close(Some((Kind::IdleTimeout, reason)));
                return;
            }
            Next::Bad(kind, reason) => {
                shared.close(Some((kind, reason)));
                return;
            }
        };
        let task = match task_of(body, handle, config.node, span) {
            Ok(task) => task,
            Err(reason) => {
                shared.close(Some((Kind::BadFrame, reason)));
                return;
            }
        };
        // Backpressure: stop reading while in_flight_max requests wait.
        let mut state = lock(&shared.state);
        while state.in_flight >= config.in_flight_max && state.end.is_none() {
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.end.is_some() {
            return;
        }
        state.in_flight += 1;
        state.new.push((next_key, task));
        next_key += 1;
        drop(state);
        shared.changed.notify_all();
    }
}

/// Writes one handshake frame.
fn send_frame(stream: &mut TcpStream, body: &Body) -> Result<(), (Kind, String)> {
    let mut out = Vec::new();
    Encoder::new()
        .encode(body, HANDSHAKE_FRAME_SIZE_MAX, &mut out)
        .map_err(|e| (Kind::Internal, format!("{}: {e}", body.name())))?;
    stream
        .write_all(&out)
        .map_err(|e| (Kind::Internal, format!("socket: {e}")))
}

/// The hello (and, with a key, the challenge and the client's proof), answered with
/// a welcome, within `handshake_timeout`; or what was wrong.
fn handshake(
    stream: &mut TcpStream,
    reader: &mut FrameReader,
    config: &ServerConfig,
    slot: &Slot,
) -> Result<(), (Kind, String)> {
    let io = |e: std::io::Error| (Kind::Internal, format!("socket: {e}"));
    stream.set_nodelay(true).map_err(io)?;
    stream
        .set_write_timeout(Some(config.handshake_timeout.min(config.write_timeout)))
        .map_err(io)?;
    let limits = Limits {
        handshake_deadline: Some(reader.clock.now().plus(nanos(config.handshake_timeout))),
        idle_timeout: config.handshake_timeout,
        frame_timeout: config.frame_timeout,
    };
    let hello = match reader.next(stream, limits) {
        Next::Frame(body) => body,
        Next::Closed => return Err((Kind::Hello, "closed before saying hello".to_string())),
        Next::Idle => {
            return Err((
                Kind::HandshakeTimeout,
                "no hello within handshake_timeout".to_string(),
            ))
        }
        Next::Bad(kind, reason) => return Err((kind, reason)),
    };
    let Body::Hello {
        protocol_version,
        cluster,
        nonce,
    } = hello
    else {
        return Err((
            Kind::Hello,
            format!("expected a Hello first, got a {}", hello.name()),
        ));
    };
    if protocol_version != PROTOCOL_VERSION {
        return Err((
            Kind::Hello,
            format!("protocol version {protocol_version}, this node speaks {PROTOCOL_VERSION}"),
        ));
    }
    if cluster != config.cluster {
        return Err((
            Kind::Hello,
            format!(
                "wrong cluster id {cluster}, this node belongs to cluster {}",
                config.cluster
            ),
        ));
    }
    if let Some(key) = &config.key {
        authenticate(stream, reader, key, config.cluster, &nonce, limits)?;
    }
    let welcome = Body::Welcome {
        protocol_version: PROTOCOL_VERSION,
        cluster: config.cluster,
        node: config.node,
        nodes: config.nodes.clone(),
        addresses: config
            .addresses
            .iter()
            .map(|(node, address)| (*node, address.clone()))
            .collect(),
    };
    let mut out = Vec::new();
    Encoder::new()
        .encode(&welcome, config.answer_frame_size_max, &mut out)
        .map_err(|e| (Kind::Internal, format!("welcome: {e}")))?;
    // Authenticated BEFORE the welcome leaves: once the client has it, it may open
    // another connection at once, which must not find this one still evictable.
    if !slot.authenticated() {
        return Err((
            Kind::Evicted,
            "evicted before the handshake completed".to_string(),
        ));
    }
    stream.write_all(&out).map_err(io)?;
    stream
        .set_write_timeout(Some(config.write_timeout))
        .map_err(io)?;
    Ok(())
}

/// The challenge and the client's proof: the node proves it holds `key` over both
/// nonces, then the client must.
fn authenticate(
    stream: &mut TcpStream,
    reader: &mut FrameReader,
    key: &AuthKey,
    cluster: u64,
    client_nonce: &[u8],
    limits: Limits,
) -> Result<(), (Kind, String)> {
    let Ok(client_nonce) = <&auth::Nonce>::try_from(client_nonce) else {
        return Err((
            Kind::Hello,
            format!(
                "hello nonce of {} bytes, {NONCE_SIZE} needed (a client without the client key?)",
                client_nonce.len()
            ),
        ));
    };
    let node_nonce = auth::nonce().map_err(|e| (Kind::Internal, e.to_string()))?;
    let context = proof_context(cluster);
    let proof = key.prove(NODE_ROLE, [client_nonce, &node_nonce], &context);
    send_frame(
        stream,
        &Body::Challenge {
            nonce: Bytes::copy_from_slice(&node_nonce),
            proof: Bytes::copy_from_slice(&proof),
        },
    )?;
    match reader.next(stream, limits) {
        Next::Frame(Body::Proof { proof }) => {
            if key.verify(CLIENT_ROLE, [client_nonce, &node_nonce], &context, &proof) {
                Ok(())
            } else {
                Err((
                    Kind::Proof,
                    "the client's proof does not verify (wrong client key)".to_string(),
                ))
            }
        }
        Next::Frame(other) => Err((
            Kind::Proof,
            format!("expected a Proof, got a {}", other.name()),
        )),
        Next::Closed => Err((
            Kind::Proof,
            "closed before proving the client key (the client refused the node's proof, or holds no key)"
                .to_string(),
        )),
        Next::Idle => Err((
            Kind::HandshakeTimeout,
            "no proof within handshake_timeout".to_string(),
        )),
        Next::Bad(kind, reason) => Err((kind, reason)),
    }
}

/// What the reader and the driver of one connection share.
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Requests handed over by the reader, not yet polled.
    new: Vec<(u64, Task)>,
    /// Requests whose reply woke them.
    woken: VecDeque<u64>,
    /// Requests waiting for the node.
    in_flight: usize,
    /// Set once the connection ends: `Some(None)` on the client's EOF,
    /// `Some(Some((kind, reason)))` on a refusal.
    end: Option<Option<(Kind, String)>>,
}

impl Shared {
    fn close(&self, reason: Option<(Kind, String)>) {
        lock(&self.state).end.get_or_insert(reason);
        self.changed.notify_all();
    }
}

/// Wakes one request's future: queues its key for the driver.
struct TaskWaker {
    key: u64,
    shared: Arc<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        lock(&self.shared.state).woken.push_back(self.key);
        self.shared.changed.notify_all();
    }
}

/// One connection's driver: polls the requests' futures as they are woken and writes
/// every answer ready at that moment in one write.
fn drive(
    mut stream: TcpStream,
    peer: &str,
    config: &ServerConfig,
    shared: &Arc<Shared>,
    admission: &Admission,
    _slot: Slot,
) {
    let mut tasks: HashMap<u64, (Task, Waker)> = HashMap::new();
    let mut encoder = Encoder::new();
    let mut out = Vec::new();
    let mut ready: Vec<u64> = Vec::new();
    loop {
        let (new, end) = {
            let mut state = lock(&shared.state);
            while state.new.is_empty() && state.woken.is_empty() && state.end.is_none() {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            ready.extend(state.woken.drain(..));
            (std::mem::take(&mut state.new), state.end.clone())
        };
        if let Some(reason) = end {
            if let Some((kind, reason)) = reason {
                // Authenticated: the client may know the precise reason.
                admission.refuse(stream, peer, kind, &reason, true);
            } else {
                log::info!("client listener: {peer} closed the connection");
                let _ = stream.shutdown(Shutdown::Both);
            }
            return;
        }
        for (key, task) in new {
            let waker = Waker::from(Arc::new(TaskWaker {
                key,
                shared: Arc::clone(shared),
            }));
            tasks.insert(key, (task, waker));
            ready.push(key);
        }
        let mut answered = 0;
        for key in ready.drain(..) {
            let Some((task, waker)) = tasks.get_mut(&key) else {
                continue; // woken again after it finished
            };
            if let Poll::Ready(body) = task.as_mut().poll(&mut Context::from_waker(waker)) {
                tasks.remove(&key);
                answered += 1;
                if let Err(error) = encoder.encode(&body, config.answer_frame_size_max, &mut out) {
                    shared.close(Some((Kind::Internal, format!("answer not sent: {error}"))));
                }
            }
        }
        if !out.is_empty() {
            if let Err(error) = stream.write_all(&out) {
                log::warn!("client listener: closing {peer}: write failed: {error}");
                let _ = stream.shutdown(Shutdown::Both);
                shared.close(Some((Kind::Internal, format!("write failed: {error}"))));
                return;
            }
            out.clear();
        }
        if answered > 0 {
            lock(&shared.state).in_flight -= answered;
            shared.changed.notify_all();
        }
    }
}
