//! One client connection to one node: the handshake, pipelined requests written under
//! a lock, and a reader thread that hands each answer to the one-shot reply its
//! request registered (answers may come in any order).
//!
//! Invariants:
//! - a request's reply is registered BEFORE its frame is written, so an answer can
//!   never arrive for an unknown request id;
//! - when the connection ends (EOF, I/O error, bad frame, or the `Connection` is
//!   dropped), every registered reply resolves with `Disconnected` and later requests
//!   are refused at once: no caller waits forever on a dead connection;
//! - the reader holds at most one frame (`frame_size_max`) plus one read chunk.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use super::codec::{decode_next, Encoder};
use super::wire::{Body, NodeStatus, PROTOCOL_VERSION};
use super::{ClientConfig, Error};
use crate::api::Proposed;
use crate::paxos::NodeId;
use crate::runtime::mailbox::{oneshot, Receiver, Sender};

/// Bytes read from the socket at a time.
const READ_CHUNK_SIZE: usize = 64 << 10;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data (a map of replies, a socket and buffers) stays consistent if a
    // holder panicked: poisoning is ignored rather than spread.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A successful answer.
#[derive(Debug)]
pub(super) enum Answer {
    Proposed(Proposed),
    Read(Bytes),
    Status(NodeStatus),
}

type Reply = Sender<Result<Answer, Error>>;

/// Replies waiting for their answer, by request id; `None` once the connection ended.
struct Pending {
    replies: Option<HashMap<u64, Reply>>,
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

impl Connection {
    /// Connects to `address`, says hello for `cluster` and waits for the node's
    /// welcome (at most `config.handshake_timeout`), then starts the reader thread.
    pub fn open(
        address: &str,
        cluster: u64,
        config: &ClientConfig,
    ) -> Result<(Connection, Welcome), Error> {
        let mut last = None;
        let mut stream = None;
        let resolved = address
            .to_socket_addrs()
            .map_err(|e| io_error(address, "resolve", &e))?;
        for candidate in resolved {
            match TcpStream::connect_timeout(&candidate, config.connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let mut stream = match (stream, last) {
            (Some(stream), _) => stream,
            (None, Some(e)) => return Err(io_error(address, "connect", &e)),
            (None, None) => {
                return Err(Error::Io {
                    address: address.to_string(),
                    reason: "resolves to no address".to_string(),
                })
            }
        };
        let io = |what: &str, e: std::io::Error| io_error(address, what, &e);
        stream.set_nodelay(true).map_err(|e| io("nodelay", e))?;
        let mut encoder = Encoder::new();
        let mut out = Vec::new();
        encoder
            .encode(
                &Body::Hello {
                    protocol_version: PROTOCOL_VERSION,
                    cluster,
                },
                config.frame_size_max,
                &mut out,
            )
            .map_err(|error| Error::Codec {
                address: address.to_string(),
                error,
            })?;
        stream.write_all(&out).map_err(|e| io("write hello", e))?;
        stream
            .set_read_timeout(Some(config.handshake_timeout))
            .map_err(|e| io("timeout", e))?;
        let mut buf = Vec::new();
        let (body, consumed) = read_frame(&mut stream, &mut buf, config.frame_size_max, address)?;
        buf.drain(..consumed);
        let welcome = match body {
            Body::Welcome {
                protocol_version,
                cluster: theirs,
                node,
                nodes,
                addresses,
            } => {
                if protocol_version != PROTOCOL_VERSION || theirs != cluster {
                    return Err(Error::Handshake {
                        address: address.to_string(),
                        reason: format!(
                            "node answered protocol {protocol_version} cluster {theirs}, \
                             expected protocol {PROTOCOL_VERSION} cluster {cluster}"
                        ),
                    });
                }
                Welcome {
                    node,
                    nodes,
                    addresses,
                }
            }
            Body::Refused { reason } => {
                return Err(Error::Refused {
                    address: address.to_string(),
                    reason,
                })
            }
            other => {
                return Err(Error::Handshake {
                    address: address.to_string(),
                    reason: format!("expected a Welcome, got a {}", other.name()),
                })
            }
        };
        stream
            .set_read_timeout(None)
            .map_err(|e| io("timeout", e))?;
        let reader = stream.try_clone().map_err(|e| io("clone", e))?;
        let pending = Arc::new(Mutex::new(Pending {
            replies: Some(HashMap::new()),
        }));
        let reader_pending = Arc::clone(&pending);
        let reader_address = address.to_string();
        let frame_size_max = config.frame_size_max;
        std::thread::Builder::new()
            .name(format!("synod-client-{}", welcome.node.0))
            .spawn(move || {
                read_answers(
                    reader,
                    buf,
                    frame_size_max,
                    &reader_address,
                    &reader_pending,
                )
            })
            .map_err(|e| io("spawn reader", e))?;
        Ok((
            Connection {
                node: welcome.node,
                address: address.to_string(),
                frame_size_max: config.frame_size_max,
                writer: Mutex::new(Writer {
                    stream,
                    encoder,
                    buf: out,
                }),
                pending,
            },
            welcome,
        ))
    }

    /// Whether the connection has ended (requests would fail at once).
    pub fn is_closed(&self) -> bool {
        lock(&self.pending).replies.is_none()
    }

    /// Registers a reply for `request`, writes `body` and returns the reply to await.
    pub fn send(
        &self,
        request: u64,
        body: &Body,
    ) -> Result<Receiver<Result<Answer, Error>>, Error> {
        let (reply, answer) = oneshot();
        match &mut lock(&self.pending).replies {
            Some(replies) => {
                replies.insert(request, reply);
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
                Ok(()) => stream
                    .write_all(buf)
                    .map_err(|e| io_error(&self.address, "write", &e)),
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
            if matches!(error, Error::Io { .. }) {
                let _ = lock(&self.writer).stream.shutdown(Shutdown::Both);
            }
            return Err(error);
        }
        Ok(answer)
    }
}

/// Reads until one whole frame is in `buf` and decodes it.
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
            Err(e) => return Err(io_error(address, "read", &e)),
        }
    }
}

/// The reader thread: answers to their replies until the connection ends, then every
/// reply still pending resolves with `Disconnected`.
fn read_answers(
    mut stream: TcpStream,
    mut buf: Vec<u8>,
    frame_size_max: usize,
    address: &str,
    pending: &Mutex<Pending>,
) {
    loop {
        let (body, consumed) = match read_frame(&mut stream, &mut buf, frame_size_max, address) {
            Ok(found) => found,
            Err(Error::Disconnected { .. }) => break,
            Err(error) => {
                log::warn!("client: connection to {address} closed: {error}");
                break;
            }
        };
        buf.drain(..consumed);
        let (request, answer) = match body {
            Body::ProposeDone {
                request,
                instance,
                output,
            } => (request, Ok(Answer::Proposed(Proposed { instance, output }))),
            Body::ReadDone { request, output } => (request, Ok(Answer::Read(output))),
            Body::StatusDone { request, status } => (request, Ok(Answer::Status(status))),
            Body::Failed { request, error } => (request, Err(Error::Server(error))),
            Body::Refused { reason } => {
                log::warn!("client: {address} closed the connection: {reason}");
                break;
            }
            other @ (Body::Hello { .. }
            | Body::Welcome { .. }
            | Body::Propose { .. }
            | Body::Read { .. }
            | Body::Status { .. }) => {
                log::warn!(
                    "client: connection to {address} closed: unexpected {} from the node",
                    other.name()
                );
                break;
            }
        };
        let reply = lock(pending)
            .replies
            .as_mut()
            .and_then(|replies| replies.remove(&request));
        match reply {
            Some(reply) => reply.send(answer),
            None => {
                log::warn!(
                    "client: connection to {address} closed: answer to unknown request {request}"
                );
                break;
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    let replies = lock(pending).replies.take();
    for (_, reply) in replies.into_iter().flatten() {
        reply.send(Err(Error::Disconnected {
            address: address.to_string(),
        }));
    }
}
