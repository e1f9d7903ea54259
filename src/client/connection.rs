//! One client connection to one node: the handshake, pipelined requests written under
//! a lock, and a reader thread that hands each answer to the one-shot reply its
//! request registered (answers may come in any order).
//!
//! Invariants:
//! - a request's reply is registered BEFORE its frame is written, so an answer can
//!   never arrive for an unknown request id;
//! - every registered reply has a deadline: the reader thread wakes at least every
//!   [`SWEEP_INTERVAL_MAX`] and resolves each reply past its deadline with `Timeout`;
//!   the answer that may still come for it is dropped (its id is remembered, at most
//!   [`TIMED_OUT_MAX`] of them); a write blocked past the deadline fails with
//!   `Timeout` and ends the connection (its frame may be cut);
//! - when the connection ends (EOF, I/O error, bad frame, or the `Connection` is
//!   dropped), every registered reply resolves with `Disconnected` and later requests
//!   are refused at once: no caller waits forever on a dead connection;
//! - with a client key, the node proves it holds the key BEFORE the client sends its
//!   own proof, and a node that does not prove it is refused (mutual authentication);
//! - the reader holds at most one frame (`frame_size_max`) plus one read chunk.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::codec::{decode_next, Encoder};
use super::wire::{proof_context, Body, NodeStatus, CLIENT_ROLE, NODE_ROLE, PROTOCOL_VERSION};
use super::{ClientConfig, Error};
use crate::api::{LogRead, Proposed};
use crate::paxos::{Nanos, NodeId};
use crate::runtime::clock::MonotonicClock;
use crate::runtime::mailbox::{oneshot, Receiver, Sender};
use crate::support::lock;
use crate::transport::auth;

/// Bytes read from the socket at a time.
const READ_CHUNK_SIZE: usize = 64 << 10;

/// Longest sleep of the reader between two looks at the replies' deadlines.
pub(super) const SWEEP_INTERVAL_MAX: Duration = Duration::from_millis(50);

/// Ids of timed-out requests remembered per connection (their late answers are
/// dropped); an answer to an id forgotten past this ends the connection.
pub(super) const TIMED_OUT_MAX: usize = 4096;

/// A successful answer.
#[derive(Debug)]
pub(super) enum Answer {
    Proposed(Proposed),
    Read(Bytes),
    Status(NodeStatus),
    LogRead(LogRead),
    /// A request without a result succeeded.
    Done,
}

type Reply = Sender<Result<Answer, Error>>;

/// Replies waiting for their answer, by request id, with their deadlines; `None` once
/// the connection ended.
struct Pending {
    replies: Option<HashMap<u64, (Reply, Nanos)>>,
    /// Requests resolved with `Timeout` whose answer may still come (oldest first:
    /// ids grow).
    timed_out: BTreeSet<u64>,
}

struct Writer {
    stream: TcpStream,
    encoder: Encoder,
    buf: Vec<u8>,
}

/// What the handshake learned about the node.
#[derive(Clone, Debug)]
pub(super) struct Welcome {
    pub node: NodeId,
    pub nodes: Vec<NodeId>,
    pub addresses: Vec<(NodeId, String)>,
}

/// An open connection to one node.
pub(super) struct Connection {
    pub node: NodeId,
    pub address: String,
    frame_size_max: usize,
    writer: Mutex<Writer>,
    pending: Arc<Mutex<Pending>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Ends the reader thread (it sees EOF) and resolves what is still pending.
        let _ = lock(&self.writer).stream.shutdown(Shutdown::Both);
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("node", &self.node)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

fn io_error(address: &str, what: &str, error: &std::io::Error) -> Error {
    Error::Io {
        address: address.to_string(),
        reason: format!("{what}: {error}"),
    }
}

fn timeout_error(address: &str, timeout: Duration) -> Error {
    Error::Timeout {
        address: address.to_string(),
        timeout,
    }
}

/// The time left until `deadline`, at most `cap`; `Timeout` when none is left.
pub(super) fn left(
    clock: MonotonicClock,
    deadline: Nanos,
    cap: Duration,
    address: &str,
    timeout: Duration,
) -> Result<Duration, Error> {
    let now = clock.now();
    if now >= deadline {
        return Err(timeout_error(address, timeout));
    }
    Ok(Duration::from_nanos(deadline.0 - now.0).min(cap))
}

/// Connects to the first address `address` resolves to that answers within
/// `timeout`.
fn dial(address: &str, timeout: Duration) -> Result<TcpStream, Error> {
    let mut last = None;
    let resolved = address
        .to_socket_addrs()
        .map_err(|e| io_error(address, "resolve", &e))?;
    for candidate in resolved {
        match TcpStream::connect_timeout(&candidate, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => io_error(address, "connect", &e),
        None => Error::Io {
            address: address.to_string(),
            reason: "resolves to no address".to_string(),
        },
    })
}

/// The handshake on a fresh connection: says hello for `cluster`; when the node
/// challenges, checks its proof of `config.key` BEFORE sending the client's own (a node
/// without the key is refused); then expects the node's welcome. Bytes read past the
/// welcome stay in `buf` for the reader thread.
fn run_handshake(
    writer: &mut Writer,
    buf: &mut Vec<u8>,
    address: &str,
    cluster: u64,
    config: &ClientConfig,
) -> Result<Welcome, Error> {
    let handshake_error = |reason: String| Error::Handshake {
        address: address.to_string(),
        reason,
    };
    let send = |writer: &mut Writer, body: &Body| {
        let Writer {
            stream,
            encoder,
            buf: out,
        } = writer;
        out.clear();
        encoder
            .encode(body, config.frame_size_max, out)
            .map_err(|error| Error::Codec {
                address: address.to_string(),
                error,
            })?;
        stream
            .write_all(out)
            .map_err(|e| io_error(address, "write handshake", &e))
    };
    let client_nonce = auth::nonce().map_err(|e| handshake_error(e.to_string()))?;
    send(
        writer,
        &Body::Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster,
            nonce: Bytes::copy_from_slice(&client_nonce),
        },
    )?;
    let (mut body, consumed) = read_frame(&mut writer.stream, buf, config.frame_size_max, address)?;
    buf.drain(..consumed);
    if let Body::Challenge { nonce, proof } = &body {
        let Some(key) = &config.key else {
            return Err(handshake_error(
                "the node requires a client key (ClientConfig::key, --client-key-file)".to_string(),
            ));
        };
        let Ok(node_nonce) = <&auth::Nonce>::try_from(nonce.as_ref()) else {
            return Err(handshake_error(format!(
                "challenge nonce of {} bytes",
                nonce.len()
            )));
        };
        let context = proof_context(cluster);
        if !key.verify(NODE_ROLE, [&client_nonce, node_nonce], &context, proof) {
            return Err(handshake_error(
                "the node's proof does not verify: it holds another client key".to_string(),
            ));
        }
        let ours = key.prove(CLIENT_ROLE, [&client_nonce, node_nonce], &context);
        send(
            writer,
            &Body::Proof {
                proof: Bytes::copy_from_slice(&ours),
            },
        )?;
        let (next, consumed) = read_frame(&mut writer.stream, buf, config.frame_size_max, address)?;
        buf.drain(..consumed);
        body = next;
    } else if config.key.is_some() && matches!(body, Body::Welcome { .. }) {
        return Err(handshake_error(
            "the node did not prove it holds the client key (it runs without one)".to_string(),
        ));
    }
    match body {
        Body::Welcome {
            protocol_version,
            cluster: theirs,
            node,
            nodes,
            addresses,
        } => {
            if protocol_version != PROTOCOL_VERSION || theirs != cluster {
                return Err(handshake_error(format!(
                    "node answered protocol {protocol_version} cluster {theirs}, \
                     expected protocol {PROTOCOL_VERSION} cluster {cluster}"
                )));
            }
            Ok(Welcome {
                node,
                nodes,
                addresses,
            })
        }
        Body::Refused { reason } => Err(Error::Refused {
            address: address.to_string(),
            reason,
        }),
        other => Err(handshake_error(format!(
            "expected a Welcome, got a {}",
            other.name()
        ))),
    }
}

impl Connection {
    /// Connects to `address`, says hello for `cluster`, authenticates both ways when
    /// `config.key` is set, and waits for the node's welcome, then starts the reader
    /// thread. Connecting takes at most `connect` and each handshake read at most
    /// `handshake` (the caller caps both by its request's deadline).
    pub fn open(
        address: &str,
        cluster: u64,
        config: &ClientConfig,
        clock: MonotonicClock,
        connect: Duration,
        handshake: Duration,
    ) -> Result<(Connection, Welcome), Error> {
        let stream = dial(address, connect)?;
        let io = |what: &str, e: std::io::Error| io_error(address, what, &e);
        stream.set_nodelay(true).map_err(|e| io("nodelay", e))?;
        stream
            .set_read_timeout(Some(handshake))
            .map_err(|e| io("timeout", e))?;
        stream
            .set_write_timeout(Some(handshake))
            .map_err(|e| io("timeout", e))?;
        let mut writer = Writer {
            stream,
            encoder: Encoder::new(),
            buf: Vec::new(),
        };
        let mut buf = Vec::new();
        let welcome = run_handshake(&mut writer, &mut buf, address, cluster, config)?;
        // The reader wakes at this interval to time requests out; a write blocked
        // this long is a node that does not read.
        let sweep =
            (config.request_timeout / 8).clamp(Duration::from_millis(1), SWEEP_INTERVAL_MAX);
        let stream = &writer.stream;
        stream
            .set_read_timeout(Some(sweep))
            .map_err(|e| io("timeout", e))?;
        stream
            .set_write_timeout(Some(config.request_timeout.max(Duration::from_millis(1))))
            .map_err(|e| io("timeout", e))?;
        let reader = stream.try_clone().map_err(|e| io("clone", e))?;
        let pending = Arc::new(Mutex::new(Pending {
            replies: Some(HashMap::new()),
            timed_out: BTreeSet::new(),
        }));
        let reader_pending = Arc::clone(&pending);
        let reader_address = address.to_string();
        let frame_size_max = config.frame_size_max;
        let timeout = config.request_timeout;
        std::thread::Builder::new()
            .name(format!("synod-client-{}", welcome.node.0))
            .spawn(move || {
                read_answers(
                    reader,
                    buf,
                    frame_size_max,
                    &reader_address,
                    &reader_pending,
                    clock,
                    (sweep, timeout),
                );
            })
            .map_err(|e| io("spawn reader", e))?;
        Ok((
            Connection {
                node: welcome.node,
                address: address.to_string(),
                frame_size_max: config.frame_size_max,
                writer: Mutex::new(writer),
                pending,
            },
            welcome,
        ))
    }

    /// Whether the connection has ended (requests would fail at once).
    pub fn is_closed(&self) -> bool {
        lock(&self.pending).replies.is_none()
    }

    /// Registers a reply for `request` that resolves with `Timeout` at `deadline`,
    /// writes `body` and returns the reply to await.
    pub fn send(
        &self,
        request: u64,
        body: &Body,
        deadline: Nanos,
        timeout: Duration,
    ) -> Result<Receiver<Result<Answer, Error>>, Error> {
        let (reply, answer) = oneshot();
        match &mut lock(&self.pending).replies {
            Some(replies) => {
                replies.insert(request, (reply, deadline));
            }
            None => {
                return Err(Error::Disconnected {
                    address: self.address.clone(),
                })
            }
        }
        let written = {
            let mut writer = lock(&self.writer);
            let Writer {
                stream,
                encoder,
                buf,
            } = &mut *writer;
            buf.clear();
            match encoder.encode(body, self.frame_size_max, buf) {
                Ok(()) => stream.write_all(buf).map_err(|e| {
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) {
                        timeout_error(&self.address, timeout)
                    } else {
                        io_error(&self.address, "write", &e)
                    }
                }),
                Err(error) => Err(Error::Codec {
                    address: self.address.clone(),
                    error,
                }),
            }
        };
        if let Err(error) = written {
            if let Some(replies) = &mut lock(&self.pending).replies {
                replies.remove(&request);
            }
            if matches!(error, Error::Io { .. } | Error::Timeout { .. }) {
                // A frame may be cut: the stream cannot carry another one.
                let _ = lock(&self.writer).stream.shutdown(Shutdown::Both);
            }
            return Err(error);
        }
        Ok(answer)
    }
}

/// Reads until one whole frame is in `buf` and decodes it (the handshake's reads).
fn read_frame(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    frame_size_max: usize,
    address: &str,
) -> Result<(Body, usize), Error> {
    let mut chunk = vec![0_u8; READ_CHUNK_SIZE];
    loop {
        match decode_next(buf, frame_size_max) {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => {}
            Err(error) => {
                return Err(Error::Codec {
                    address: address.to_string(),
                    error,
                })
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(Error::Disconnected {
                    address: address.to_string(),
                })
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Error::Handshake {
                    address: address.to_string(),
                    reason: "no answer within the handshake timeout".to_string(),
                })
            }
            Err(e) => return Err(io_error(address, "read", &e)),
        }
    }
}

/// Resolves every reply past its deadline with `Timeout`; `false` when the
/// connection must end (too many timed-out ids to remember).
fn sweep(pending: &Mutex<Pending>, now: Nanos, address: &str, timeout: Duration) -> bool {
    let mut pending = lock(pending);
    let Pending { replies, timed_out } = &mut *pending;
    let Some(replies) = replies else {
        return false;
    };
    let expired: Vec<u64> = replies
        .iter()
        .filter(|(_, (_, deadline))| *deadline <= now)
        .map(|(request, _)| *request)
        .collect();
    for request in expired {
        if let Some((reply, _)) = replies.remove(&request) {
            reply.send(Err(timeout_error(address, timeout)));
            timed_out.insert(request);
        }
    }
    while timed_out.len() > TIMED_OUT_MAX {
        timed_out.pop_first();
    }
    true
}

/// The reader thread: answers to their replies until the connection ends, replies
/// past their deadline resolved with `Timeout` meanwhile; then every reply still
/// pending resolves with `Disconnected`.
fn read_answers(
    mut stream: TcpStream,
    mut buf: Vec<u8>,
    frame_size_max: usize,
    address: &str,
    pending: &Mutex<Pending>,
    clock: MonotonicClock,
    (sweep_interval, timeout): (Duration, Duration),
) {
    let mut chunk = vec![0_u8; READ_CHUNK_SIZE];
    let sweep_ns = u64::try_from(sweep_interval.as_nanos()).unwrap_or(u64::MAX);
    let mut next_sweep = clock.now().plus(sweep_ns);
    'connection: loop {
        // Every answer already buffered, then one read (at most a sweep interval).
        loop {
            let (body, consumed) = match decode_next(&buf, frame_size_max) {
                Ok(Some(found)) => found,
                Ok(None) => break,
                Err(error) => {
                    log::warn!("client: connection to {address} closed: {error}");
                    break 'connection;
                }
            };
            buf.drain(..consumed);
            let (request, answer) = match body {
                Body::ProposeDone {
                    request,
                    position,
                    output,
                } => (request, Ok(Answer::Proposed(Proposed { position, output }))),
                Body::ReadLogDone { request, read } => (request, Ok(Answer::LogRead(read))),
                Body::ReadDone { request, output } => (request, Ok(Answer::Read(output))),
                Body::StatusDone { request, status } => (request, Ok(Answer::Status(status))),
                Body::Done { request } => (request, Ok(Answer::Done)),
                Body::Failed { request, error } => (request, Err(Error::Server(error))),
                Body::Refused { reason } => {
                    log::warn!("client: {address} closed the connection: {reason}");
                    break 'connection;
                }
                other @ (Body::Hello { .. }
                | Body::Challenge { .. }
                | Body::Proof { .. }
                | Body::Welcome { .. }
                | Body::Propose { .. }
                | Body::Read { .. }
                | Body::ReadLog { .. }
                | Body::TransferLeadership { .. }
                | Body::ChangeMembership { .. }
                | Body::Status { .. }) => {
                    log::warn!(
                        "client: connection to {address} closed: unexpected {} from the node",
                        other.name()
                    );
                    break 'connection;
                }
            };
            let mut guard = lock(pending);
            let reply = guard
                .replies
                .as_mut()
                .and_then(|replies| replies.remove(&request));
            match reply {
                Some((reply, _)) => {
                    drop(guard);
                    reply.send(answer);
                }
                // Its caller was already told `Timeout`.
                None if guard.timed_out.remove(&request) => {}
                None => {
                    log::warn!(
                        "client: connection to {address} closed: answer to unknown request {request}"
                    );
                    break 'connection;
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                log::warn!("client: connection to {address} closed: read: {e}");
                break;
            }
        }
        let now = clock.now();
        if now >= next_sweep {
            if !sweep(pending, now, address, timeout) {
                break;
            }
            next_sweep = now.plus(sweep_ns);
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    let replies = lock(pending).replies.take();
    for (_, (reply, _)) in replies.into_iter().flatten() {
        reply.send(Err(Error::Disconnected {
            address: address.to_string(),
        }));
    }
}
