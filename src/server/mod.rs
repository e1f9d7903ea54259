//! The client listener of a node (`synod serve --client ADDR`): clients' requests in
//! the client protocol (`schema/client.fbs`, `synod::client::codec`) to the node's
//! `NodeHandle`, answers back in batches. It runs on its own threads, beside the shard
//! threads, which it reaches only through the handle's mailboxes.
//!
//! Threads: one accepts; each connection has a reader (handshake, then decodes
//! requests and hands each one, as a future of the handle, to the connection's
//! driver) and a driver (polls those futures when their one-shot reply wakes them,
//! and writes every answer ready at that moment in one `write_all`).
//!
//! Invariants (every one bounded, every refusal logged with its reason):
//! - at most `connections_max` connections; one more gets a `Refused` and is closed;
//! - a frame above `frame_size_max` is refused from its 4 header bytes, before any
//!   buffer is sized by it; a reader holds at most one frame plus one read chunk;
//! - at most `in_flight_max` requests per connection are waiting for the node: the
//!   reader stops reading until one is answered (TCP backpressure on the client);
//! - a bad frame (size, CRC, identifier, verifier, unknown kind), a wrong hello
//!   (version, cluster), a request before the hello or an answer-kind message from the
//!   client closes that connection only, after a `Refused` naming the reason; the node
//!   and the other connections are untouched;
//! - a client that does not read its answers is closed after `write_timeout`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::api::NodeHandle;
use crate::client::codec::{decode_next, CodecError, Encoder};
use crate::client::wire::{Body, NodeStatus, PROTOCOL_VERSION};
use crate::paxos::NodeId;

/// Bytes read from a socket at a time.
const READ_CHUNK_SIZE: usize = 64 << 10;

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
    /// How long a new connection may take to say hello.
    pub handshake_timeout: Duration,
    /// How long one write of answers may block on a client that does not read.
    pub write_timeout: Duration,
}

impl ServerConfig {
    /// The defaults (`tuning.md`, "Client listener") for a node of `cluster`.
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
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state (queues and counters) stays consistent if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running client listener. Dropping it stops accepting (open connections end when
/// their clients close them or the process exits).
pub struct Server {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
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
    /// The address cannot be bound, or the thread cannot start.
    pub fn start(mut config: ServerConfig, handle: NodeHandle) -> std::io::Result<Server> {
        assert!(
            config.frame_size_max >= 64 && config.in_flight_max >= 1 && config.connections_max >= 1,
            "client listener bounds must be positive: {config:?}"
        );
        let listener = TcpListener::bind(config.address)?;
        let address = listener.local_addr()?;
        config
            .addresses
            .entry(config.node)
            .or_insert_with(|| address.to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let accept_stop = Arc::clone(&stop);
        let accept = std::thread::Builder::new()
            .name("synod-clients".to_string())
            .spawn(move || accept_loop(&listener, &config, &handle, &accept_stop))?;
        Ok(Server {
            address,
            stop,
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
    }
}

fn accept_loop(
    listener: &TcpListener,
    config: &ServerConfig,
    handle: &NodeHandle,
    stop: &AtomicBool,
) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                log::warn!("client listener: accept failed: {error}");
                // Out of descriptors and the like: do not spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string());
        let count = open.fetch_add(1, Ordering::SeqCst);
        let guard = Open(Arc::clone(&open));
        if count >= config.connections_max {
            let reason = format!(
                "too many connections: {count} open, connections_max = {}",
                config.connections_max
            );
            refuse(&mut stream, &peer, &reason, config);
            continue;
        }
        let (config, handle) = (config.clone(), handle.clone());
        let spawned = std::thread::Builder::new()
            .name("synod-client-rd".to_string())
            .spawn(move || serve_connection(stream, &peer, &config, &handle, guard));
        if let Err(error) = spawned {
            log::warn!("client listener: cannot start a connection thread: {error}");
        }
    }
}

/// Counts an open connection until its last thread ends.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long one read of a refused connection's input may wait (see [`refuse`]).
const REFUSE_DRAIN: Duration = Duration::from_millis(50);
/// Reads of a refused connection's input after the `Refused` is written.
const REFUSE_DRAIN_READS: usize = 4;

/// Logs `reason`, sends it to the client in a `Refused` (best effort) and closes.
///
/// Closing a socket with unread input makes the kernel send a reset, which can make
/// the client lose the `Refused` before reading it; so the input is drained for at
/// most (1 + `REFUSE_DRAIN_READS`) × [`REFUSE_DRAIN`] around the write (the accept
/// thread pays this only for connections past `connections_max`).
fn refuse(stream: &mut TcpStream, peer: &str, reason: &str, config: &ServerConfig) {
    log::warn!("client listener: closing {peer}: {reason}");
    let mut out = Vec::new();
    let refused = Body::Refused {
        reason: reason.to_string(),
    };
    let _ = stream.set_read_timeout(Some(REFUSE_DRAIN));
    let mut sink = [0_u8; 4096];
    let _ = stream.read(&mut sink);
    if Encoder::new()
        .encode(&refused, config.answer_frame_size_max, &mut out)
        .is_ok()
    {
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = stream.write_all(&out);
    }
    let _ = stream.shutdown(Shutdown::Write);
    // Until the client closes too, or a few reads (a client that keeps sending is
    // not waited for).
    for _ in 0..REFUSE_DRAIN_READS {
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Reads whole frames from a stream, one at a time, within `frame_size_max`.
struct FrameReader {
    buf: Vec<u8>,
    chunk: Vec<u8>,
    frame_size_max: usize,
}

enum Next {
    Frame(Body),
    Closed,
    Bad(String),
}

impl FrameReader {
    fn next(&mut self, stream: &mut TcpStream) -> Next {
        loop {
            match decode_next(&self.buf, self.frame_size_max) {
                Ok(Some((body, consumed))) => {
                    self.buf.drain(..consumed);
                    return Next::Frame(body);
                }
                Ok(None) => {}
                Err(error) => return Next::Bad(bad_frame(&error)),
            }
            match stream.read(&mut self.chunk) {
                Ok(0) => {
                    return if self.buf.is_empty() {
                        Next::Closed
                    } else {
                        Next::Bad(format!(
                            "closed in the middle of a frame ({} bytes buffered)",
                            self.buf.len()
                        ))
                    }
                }
                Ok(n) => self.buf.extend_from_slice(&self.chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Next::Bad("no hello within the handshake timeout".to_string())
                }
                Err(e) => return Next::Bad(format!("read failed: {e}")),
            }
        }
    }
}

fn bad_frame(error: &CodecError) -> String {
    format!("bad frame: {error}")
}

/// One connection's reader: the handshake, then requests to the driver.
fn serve_connection(
    mut stream: TcpStream,
    peer: &str,
    config: &ServerConfig,
    handle: &NodeHandle,
    guard: Open,
) {
    let mut reader = FrameReader {
        buf: Vec::new(),
        chunk: vec![0_u8; READ_CHUNK_SIZE],
        frame_size_max: config.frame_size_max,
    };
    if let Err(reason) = handshake(&mut stream, &mut reader, config) {
        refuse(&mut stream, peer, &reason, config);
        return;
    }
    log::info!("client listener: {peer} connected");
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
    });
    let writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(error) => {
            refuse(
                &mut stream,
                peer,
                &format!("cannot clone the socket: {error}"),
                config,
            );
            return;
        }
    };
    let driver = {
        let (shared, config, peer) = (Arc::clone(&shared), config.clone(), peer.to_string());
        std::thread::Builder::new()
            .name("synod-client-wr".to_string())
            .spawn(move || drive(writer, &peer, &config, &shared, guard))
    };
    if let Err(error) = driver {
        refuse(
            &mut stream,
            peer,
            &format!("cannot start a thread: {error}"),
            config,
        );
        return;
    }
    let mut next_key = 0_u64;
    loop {
        let body = match reader.next(&mut stream) {
            Next::Frame(body) => body,
            Next::Closed => {
                shared.close(None);
                return;
            }
            Next::Bad(reason) => {
                shared.close(Some(reason));
                return;
            }
        };
        let task = match task_of(body, handle, config.node) {
            Ok(task) => task,
            Err(reason) => {
                shared.close(Some(reason));
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

/// Reads the hello and answers it with a welcome, or says why not.
fn handshake(
    stream: &mut TcpStream,
    reader: &mut FrameReader,
    config: &ServerConfig,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("socket: {e}");
    stream.set_nodelay(true).map_err(io)?;
    stream
        .set_read_timeout(Some(config.handshake_timeout))
        .map_err(io)?;
    stream
        .set_write_timeout(Some(config.write_timeout))
        .map_err(io)?;
    let hello = match reader.next(stream) {
        Next::Frame(body) => body,
        Next::Closed => return Err("closed before saying hello".to_string()),
        Next::Bad(reason) => return Err(reason),
    };
    let Body::Hello {
        protocol_version,
        cluster,
    } = hello
    else {
        return Err(format!("expected a Hello first, got a {}", hello.name()));
    };
    if protocol_version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {protocol_version}, this node speaks {PROTOCOL_VERSION}"
        ));
    }
    if cluster != config.cluster {
        return Err(format!(
            "wrong cluster id {cluster}, this node belongs to cluster {}",
            config.cluster
        ));
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
        .map_err(|e| format!("welcome: {e}"))?;
    stream.write_all(&out).map_err(io)?;
    stream.set_read_timeout(None).map_err(io)?;
    Ok(())
}

type Task = Pin<Box<dyn Future<Output = Body> + Send>>;

/// The future that answers one request, or why the message is not a request.
fn task_of(body: Body, handle: &NodeHandle, node: NodeId) -> Result<Task, String> {
    let handle = handle.clone();
    Ok(match body {
        Body::Propose {
            request,
            group,
            value,
        } => Box::pin(async move {
            match handle.propose(group, value).await {
                Ok(proposed) => Body::ProposeDone {
                    request,
                    instance: proposed.instance,
                    output: proposed.output,
                },
                Err(error) => Body::Failed {
                    request,
                    error: (&error).into(),
                },
            }
        }),
        Body::Read {
            request,
            group,
            query,
        } => Box::pin(async move {
            match handle.read(group, query).await {
                Ok(output) => Body::ReadDone { request, output },
                Err(error) => Body::Failed {
                    request,
                    error: (&error).into(),
                },
            }
        }),
        Body::Status { request } => Box::pin(async move {
            match handle.status().await {
                Ok(shards) => Body::StatusDone {
                    request,
                    status: NodeStatus { node, shards },
                },
                Err(error) => Body::Failed {
                    request,
                    error: (&error).into(),
                },
            }
        }),
        other @ (Body::Hello { .. }
        | Body::Welcome { .. }
        | Body::Refused { .. }
        | Body::ProposeDone { .. }
        | Body::ReadDone { .. }
        | Body::Failed { .. }
        | Body::StatusDone { .. }) => {
            return Err(format!(
                "a client may not send a {} after the handshake",
                other.name()
            ))
        }
    })
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
    /// `Some(Some(reason))` on a refusal.
    end: Option<Option<String>>,
}

impl Shared {
    fn close(&self, reason: Option<String>) {
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
    _guard: Open,
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
            if let Some(reason) = reason {
                refuse(&mut stream, peer, &reason, config);
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
                    shared.close(Some(format!("answer not sent: {error}")));
                }
            }
        }
        if !out.is_empty() {
            if let Err(error) = stream.write_all(&out) {
                log::warn!("client listener: closing {peer}: write failed: {error}");
                let _ = stream.shutdown(Shutdown::Both);
                shared.close(Some(format!("write failed: {error}")));
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
