//! A client of running nodes (`synod serve --client ADDR`), over plain `std::net`
//! TCP: pipelined proposals, reads and status requests, leader discovery by following
//! `NotLeader` hints, and the client protocol itself ([`wire`], [`codec`],
//! `schema/client.fbs`) that the node's listener (`synod::server`) speaks too.
//!
//! ```no_run
//! use synod::client::Client;
//! use synod::paxos::GroupId;
//!
//! let client = Client::connect(&["10.0.0.1:7100", "10.0.0.2:7100"], 42)?;
//! // Blocking, from any thread; `client.propose(..).await` from any async runtime.
//! let proposed = client.propose_blocking(GroupId(0), b"hello".to_vec())?;
//! println!("chosen at {:?}", proposed.instance);
//! let state = client.read_blocking(GroupId(0), Vec::new())?;
//! # drop(state);
//! # Ok::<(), synod::client::Error>(())
//! ```
//!
//! Invariants:
//! - the client is runtime-agnostic: its futures are the one-shot replies of
//!   `runtime::mailbox`, woken by the connection's reader thread; any executor (or
//!   `block_on`) can await them, and many requests may be in flight at once on one
//!   connection (answers come back in any order, matched by request id). The caller
//!   writes its request's frame itself, under the connection's lock: a plain
//!   blocking write that waits only when the node applies backpressure (its
//!   `in_flight_max`), and a connection (re)opened on demand blocks for at most
//!   `connect_timeout` + `handshake_timeout`;
//! - a request is sent at most once to each node it is redirected to, and redirects
//!   are bounded (`ClientConfig::redirects_max`): there are no hidden retries of
//!   requests whose outcome is unknown (`Disconnected`, `Indeterminate`, `Stopped`);
//! - every request resolves: a lost connection resolves what it carried with
//!   `Disconnected`.

pub mod codec;
mod connection;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;

use crate::api::Proposed;
use crate::paxos::{GroupId, NodeId};
use codec::CodecError;
use connection::{Answer, Connection};
pub use wire::{NodeStatus, ServerError, PROTOCOL_VERSION};

/// The settings of a [`Client`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Largest frame sent or accepted (length header excluded). A status answer holds
    /// 48 bytes per group of the node.
    pub frame_size_max: usize,
    /// How long one TCP connect may take.
    pub connect_timeout: Duration,
    /// How long the node may take to answer the hello.
    pub handshake_timeout: Duration,
    /// How many times one request follows a `NotLeader` answer to another node
    /// before the `NotLeader` is returned to the caller.
    pub redirects_max: usize,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            frame_size_max: 64 << 20,
            connect_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(5),
            redirects_max: 8,
        }
    }
}

/// Why a client request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The node answered with an error (`NotLeader` once redirects ran out).
    Server(ServerError),
    /// Connecting, writing or reading failed. A request that was written may or may
    /// not have been chosen.
    Io {
        /// The node's client address.
        address: String,
        /// What failed, and the OS error.
        reason: String,
    },
    /// The connection ended while the request was in flight (or before it was sent):
    /// a proposal may or may not have been chosen.
    Disconnected {
        /// The node's client address.
        address: String,
    },
    /// The node refused the connection (wrong cluster or version, too many
    /// connections, a bad frame) and said why.
    Refused {
        /// The node's client address.
        address: String,
        /// The node's reason.
        reason: String,
    },
    /// The node's first answer was not a matching `Welcome`.
    Handshake {
        /// The node's client address.
        address: String,
        /// What was wrong.
        reason: String,
    },
    /// A frame could not be encoded (too large) or the node sent one that does not
    /// decode.
    Codec {
        /// The node's client address.
        address: String,
        /// The codec's reason.
        error: CodecError,
    },
    /// No node could be reached.
    NoReachableNode {
        /// Each address tried and why it failed.
        tried: Vec<String>,
    },
}

impl Error {
    /// Whether nothing was done, so that the request may be retried blindly (the
    /// node's `NotLeader`, `LeaseNotHeld` or `Overloaded`, or no node reached).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Server(error) => error.is_retryable(),
            Error::NoReachableNode { .. } | Error::Refused { .. } | Error::Handshake { .. } => true,
            Error::Io { .. } | Error::Disconnected { .. } | Error::Codec { .. } => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Server(error) => write!(f, "{error}"),
            Error::Io { address, reason } => write!(f, "{address}: {reason}"),
            Error::Disconnected { address } => {
                write!(f, "{address}: connection lost; outcome unknown")
            }
            Error::Refused { address, reason } => write!(f, "{address} refused: {reason}"),
            Error::Handshake { address, reason } => write!(f, "{address}: handshake: {reason}"),
            Error::Codec { address, error } => write!(f, "{address}: {error}"),
            Error::NoReachableNode { tried } => {
                write!(f, "no node reachable (tried: {})", tried.join("; "))
            }
        }
    }
}

impl std::error::Error for Error {}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps: consistent even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the client knows of the cluster.
#[derive(Default)]
struct Directory {
    /// The addresses given to `connect`, in order (tried when nothing better is known).
    seeds: Vec<String>,
    /// Client addresses by node, from the nodes' welcomes and from whom answered where.
    addresses: BTreeMap<NodeId, String>,
    /// The cluster's nodes, from the welcomes.
    nodes: Vec<NodeId>,
    /// Open connections by node.
    connections: BTreeMap<NodeId, Arc<Connection>>,
    /// The node that last served each group.
    leaders: HashMap<GroupId, NodeId>,
}

struct Inner {
    cluster: u64,
    config: ClientConfig,
    directory: Mutex<Directory>,
    next_request: AtomicU64,
    redirects: AtomicU64,
}

/// A client of a running cluster. Cloning shares the connections; `Send + Sync`.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let directory = lock(&self.inner.directory);
        f.debug_struct("Client")
            .field("cluster", &self.inner.cluster)
            .field("addresses", &directory.addresses)
            .field(
                "connected",
                &directory.connections.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to every address of `addresses` ("HOST:PORT" of nodes' client
    /// listeners) that answers, for `cluster`, with the default [`ClientConfig`].
    ///
    /// # Errors
    ///
    /// [`Error::NoReachableNode`] when none answers with a matching welcome.
    pub fn connect<A: AsRef<str>>(addresses: &[A], cluster: u64) -> Result<Client, Error> {
        Client::connect_with(addresses, cluster, ClientConfig::default())
    }

    /// As [`Client::connect`], with `config`.
    ///
    /// # Errors
    ///
    /// [`Error::NoReachableNode`] when none answers with a matching welcome.
    pub fn connect_with<A: AsRef<str>>(
        addresses: &[A],
        cluster: u64,
        config: ClientConfig,
    ) -> Result<Client, Error> {
        let client = Client {
            inner: Arc::new(Inner {
                cluster,
                config,
                directory: Mutex::new(Directory {
                    seeds: addresses.iter().map(|a| a.as_ref().to_string()).collect(),
                    ..Directory::default()
                }),
                next_request: AtomicU64::new(1),
                redirects: AtomicU64::new(0),
            }),
        };
        let mut tried = Vec::new();
        for address in addresses {
            if let Err(error) = client.open(address.as_ref()) {
                tried.push(error.to_string());
            }
        }
        if lock(&client.inner.directory).connections.is_empty() {
            return Err(Error::NoReachableNode { tried });
        }
        Ok(client)
    }

    /// The cluster's nodes, as the nodes' welcomes listed them.
    #[must_use]
    pub fn nodes(&self) -> Vec<NodeId> {
        lock(&self.inner.directory).nodes.clone()
    }

    /// The client address known for each node.
    #[must_use]
    pub fn addresses(&self) -> BTreeMap<NodeId, String> {
        lock(&self.inner.directory).addresses.clone()
    }

    /// How many times a request followed a `NotLeader` answer to another node.
    #[must_use]
    pub fn redirects(&self) -> u64 {
        self.inner.redirects.load(Ordering::Relaxed)
    }

    /// Replicates `value` in `group`, at the group's leader (found by following
    /// `NotLeader` hints). Resolves once the value is chosen and applied there.
    ///
    /// # Errors
    ///
    /// The node's error ([`Error::Server`]: `NotLeader` once redirects ran out,
    /// `Overloaded`, `TooLarge`, `NoSuchGroup`, `Indeterminate`, `Aborted`,
    /// `Stopped`), or a connection error (`Disconnected`, `Io`: the outcome is then
    /// unknown).
    pub async fn propose(
        &self,
        group: GroupId,
        value: impl Into<Bytes>,
    ) -> Result<Proposed, Error> {
        let value = value.into();
        let answer = self
            .at_leader(group, |request| wire::Body::Propose {
                request,
                group,
                value: value.clone(),
            })
            .await?;
        match answer {
            Answer::Proposed(proposed) => Ok(proposed),
            Answer::Read(_) | Answer::Status(_) => Err(self.mismatch("ProposeDone")),
        }
    }

    /// A linearizable read of `group` (`StateMachine::query(query)`) at its leader.
    ///
    /// # Errors
    ///
    /// As [`Client::propose`]; `LeaseNotHeld` when the leader cannot prove its lease
    /// yet (retry shortly).
    pub async fn read(&self, group: GroupId, query: impl Into<Bytes>) -> Result<Bytes, Error> {
        let query = query.into();
        let answer = self
            .at_leader(group, |request| wire::Body::Read {
                request,
                group,
                query: query.clone(),
            })
            .await?;
        match answer {
            Answer::Read(output) => Ok(output),
            Answer::Proposed(_) | Answer::Status(_) => Err(self.mismatch("ReadDone")),
        }
    }

    /// The status of every node whose address is known (groups, roles, leader hints,
    /// watermarks, shard counters), in node order. Requests go out together.
    ///
    /// # Errors
    ///
    /// The first node that could not answer.
    pub async fn status(&self) -> Result<Vec<NodeStatus>, Error> {
        let nodes: Vec<NodeId> = lock(&self.inner.directory)
            .addresses
            .keys()
            .copied()
            .collect();
        let mut waiting = Vec::with_capacity(nodes.len());
        for node in nodes {
            let connection = self.connection(Some(node))?;
            let request = self.next_request();
            waiting.push((
                connection.address.clone(),
                connection.send(request, &wire::Body::Status { request })?,
            ));
        }
        let mut statuses = Vec::with_capacity(waiting.len());
        for (address, answer) in waiting {
            match answer
                .await
                .unwrap_or(Err(Error::Disconnected { address }))?
            {
                Answer::Status(status) => statuses.push(status),
                Answer::Proposed(_) | Answer::Read(_) => return Err(self.mismatch("StatusDone")),
            }
        }
        Ok(statuses)
    }

    /// [`Client::propose`], blocking the calling thread.
    ///
    /// # Errors
    ///
    /// As [`Client::propose`].
    pub fn propose_blocking(
        &self,
        group: GroupId,
        value: impl Into<Bytes>,
    ) -> Result<Proposed, Error> {
        futures_lite::future::block_on(self.propose(group, value))
    }

    /// [`Client::read`], blocking the calling thread.
    ///
    /// # Errors
    ///
    /// As [`Client::read`].
    pub fn read_blocking(&self, group: GroupId, query: impl Into<Bytes>) -> Result<Bytes, Error> {
        futures_lite::future::block_on(self.read(group, query))
    }

    /// [`Client::status`], blocking the calling thread.
    ///
    /// # Errors
    ///
    /// As [`Client::status`].
    pub fn status_blocking(&self) -> Result<Vec<NodeStatus>, Error> {
        futures_lite::future::block_on(self.status())
    }

    fn next_request(&self) -> u64 {
        self.inner.next_request.fetch_add(1, Ordering::Relaxed)
    }

    fn mismatch(&self, expected: &str) -> Error {
        Error::Handshake {
            address: String::new(),
            reason: format!("the node answered with another kind than {expected}"),
        }
    }

    /// Sends the request built by `body` to the group's leader as far as known,
    /// following `NotLeader` answers to the hinted node (or the next known node when
    /// there is no hint), at most `redirects_max` times.
    async fn at_leader(
        &self,
        group: GroupId,
        body: impl Fn(u64) -> wire::Body,
    ) -> Result<Answer, Error> {
        let mut target = lock(&self.inner.directory).leaders.get(&group).copied();
        let mut redirects = 0;
        loop {
            let connection = self.connection(target)?;
            let request = self.next_request();
            let address = connection.address.clone();
            let answer = connection
                .send(request, &body(request))?
                .await
                .unwrap_or(Err(Error::Disconnected { address }));
            match answer {
                Ok(answer) => {
                    lock(&self.inner.directory)
                        .leaders
                        .insert(group, connection.node);
                    return Ok(answer);
                }
                Err(Error::Server(ServerError::NotLeader { hint }))
                    if redirects < self.inner.config.redirects_max =>
                {
                    redirects += 1;
                    self.inner.redirects.fetch_add(1, Ordering::Relaxed);
                    let next = match hint {
                        Some(node) if node != connection.node => node,
                        Some(_) | None => self.node_after(connection.node),
                    };
                    lock(&self.inner.directory).leaders.insert(group, next);
                    target = Some(next);
                }
                Err(error) => {
                    if matches!(error, Error::Disconnected { .. } | Error::Io { .. }) {
                        lock(&self.inner.directory).leaders.remove(&group);
                    }
                    return Err(error);
                }
            }
        }
    }

    /// The known node after `node` in id order (wrapping), for a `NotLeader` without
    /// a useful hint.
    fn node_after(&self, node: NodeId) -> NodeId {
        let directory = lock(&self.inner.directory);
        let known = &directory.addresses;
        known
            .range(NodeId(node.0.saturating_add(1))..)
            .next()
            .or_else(|| known.iter().next())
            .map_or(node, |(id, _)| *id)
    }

    /// An open connection to `target` (opened now if needed), or to any node when
    /// `target` is `None` or has no known address.
    fn connection(&self, target: Option<NodeId>) -> Result<Arc<Connection>, Error> {
        let (address, fallback) = {
            let directory = lock(&self.inner.directory);
            if let Some(connection) = target.and_then(|node| directory.connections.get(&node)) {
                if !connection.is_closed() {
                    return Ok(Arc::clone(connection));
                }
            }
            let address = target.and_then(|node| directory.addresses.get(&node).cloned());
            if address.is_none() {
                if let Some(connection) = directory.connections.values().find(|c| !c.is_closed()) {
                    return Ok(Arc::clone(connection));
                }
            }
            let mut fallback: Vec<String> = directory.addresses.values().cloned().collect();
            fallback.extend(directory.seeds.iter().cloned());
            (address, fallback)
        };
        let mut tried = Vec::new();
        for candidate in address.into_iter().chain(fallback) {
            match self.open(&candidate) {
                Ok(connection) => return Ok(connection),
                Err(error) => tried.push(error.to_string()),
            }
        }
        Err(Error::NoReachableNode { tried })
    }

    /// Opens a connection to `address` and records what its welcome says.
    fn open(&self, address: &str) -> Result<Arc<Connection>, Error> {
        let (connection, welcome) =
            Connection::open(address, self.inner.cluster, &self.inner.config)?;
        let connection = Arc::new(connection);
        let mut directory = lock(&self.inner.directory);
        if !welcome.nodes.is_empty() {
            directory.nodes = welcome.nodes;
        }
        for (node, advertised) in welcome.addresses {
            if node != welcome.node {
                directory.addresses.entry(node).or_insert(advertised);
            }
        }
        // The address that reached the node is the one known to work from here.
        directory
            .addresses
            .insert(welcome.node, address.to_string());
        directory
            .connections
            .insert(welcome.node, Arc::clone(&connection));
        Ok(connection)
    }
}
