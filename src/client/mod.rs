//! A client of running nodes (`synod serve --client ADDR`), over plain `std::net`
//! TCP: pipelined proposals, reads and status requests, leader discovery by following
//! `NotLeader` hints, and the client protocol itself ([`wire`], [`codec`],
//! `schema/client.fbs`) that the node's listener (`synod::server`) speaks too.
//!
//! ```no_run
//! use synod::client::Client;
//! use synod::paxos::GroupId;
//!
//! // A node started with --client-key-file requires the same key here
//! // (`ClientConfig::key`, `Client::connect_with`).
//! let client = Client::connect(&["10.0.0.1:7100", "10.0.0.2:7100"], 42)?;
//! // Blocking, from any thread; `client.propose(..).await` from any async runtime.
//! let proposed = client.propose_blocking(GroupId(0), b"hello".to_vec())?;
//! println!("chosen at {:?}", proposed.position);
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
//!   requests whose outcome is unknown (`Disconnected`, `Indeterminate`, `Stopped`,
//!   `Timeout`);
//! - every request resolves, within `ClientConfig::request_timeout` of the call (a
//!   connection opened on the way gets what is left of it): a lost connection
//!   resolves what it carried with `Disconnected`, a node that does not answer in
//!   time with `Timeout`;
//! - the leader cache: a group's entry is the node that last answered for it, or the
//!   node a `NotLeader` hint named; it is dropped on `Timeout`, `Stopped`,
//!   `Disconnected` and `Io`, and a node that timed out or stopped is suspect for
//!   one `request_timeout`: requests without a known leader go to other nodes first,
//!   and a hint naming a suspect node is not followed while others remain
//!   (`Directory`'s rules, unit-tested below).
//!
//! Safe to retry: an error for which [`Error::is_retryable`] holds did nothing. A
//! `Timeout` did not: a timed-out read or status may be sent again, but a timed-out
//! propose is indeterminate, its value may or may not be chosen (and applied) later;
//! retry it only if applying it twice is harmless, or read the state first.

pub mod codec;
mod connection;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::api::{LogRead, MembershipChange, Position, Proposed};
use crate::paxos::{GroupId, Nanos, NodeId};
use crate::runtime::clock::MonotonicClock;
use crate::support::lock;
use crate::transport::auth::AuthKey;
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
    /// How long one call (propose, read, status) may take, redirects and connects
    /// included, before it returns [`Error::Timeout`].
    pub request_timeout: Duration,
    /// The client key (`synod serve --client-key-file`): the node must prove it holds
    /// it, then the client proves it. `None` talks only to nodes without a key.
    pub key: Option<AuthKey>,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            frame_size_max: 64 << 20,
            connect_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(5),
            redirects_max: 8,
            request_timeout: Duration::from_secs(10),
            key: None,
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
    /// No answer within `ClientConfig::request_timeout`. A timed-out propose is
    /// indeterminate: its value may or may not be chosen and applied.
    Timeout {
        /// The node's client address last waited for.
        address: String,
        /// The timeout.
        timeout: Duration,
    },
    /// No node could be reached.
    NoReachableNode {
        /// Each address tried and why it failed.
        tried: Vec<String>,
    },
    /// A request about one node (its status, its copy of a log) could not reach that
    /// node. It is never answered by another node in its place.
    NodeUnreachable {
        /// The node asked for.
        node: NodeId,
        /// Its client address and why it could not be reached (or that none is
        /// known).
        reason: String,
    },
}

impl Error {
    /// Whether nothing was done, so that the request may be retried blindly (the
    /// node's `NotLeader`, `LeaseNotHeld` or `Overloaded`, or no node reached).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Server(error) => error.is_retryable(),
            Error::NoReachableNode { .. }
            | Error::NodeUnreachable { .. }
            | Error::Refused { .. }
            | Error::Handshake { .. } => true,
            Error::Io { .. }
            | Error::Disconnected { .. }
            | Error::Codec { .. }
            | Error::Timeout { .. } => false,
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
            Error::Timeout { address, timeout } => write!(
                f,
                "{address}: no answer within {} ms; outcome unknown",
                timeout.as_millis()
            ),
            Error::NoReachableNode { tried } => {
                write!(f, "no node reachable (tried: {})", tried.join("; "))
            }
            Error::NodeUnreachable { node, reason } => {
                write!(f, "node {} unreachable: {reason}", node.0)
            }
        }
    }
}

impl std::error::Error for Error {}

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
    /// The node that last served each group (or that a hint named).
    leaders: HashMap<GroupId, NodeId>,
    /// Nodes that timed out or stopped, until when they are avoided.
    suspects: HashMap<NodeId, Nanos>,
}

impl Directory {
    /// Whether `node` is avoided at `now`.
    fn is_suspect(&self, node: NodeId, now: Nanos) -> bool {
        self.suspects.get(&node).is_some_and(|until| now < *until)
    }

    /// `node` answered a request of `group`: it serves the group and is trusted again.
    fn answered(&mut self, group: GroupId, node: NodeId) {
        self.leaders.insert(group, node);
        self.suspects.remove(&node);
    }

    /// A request of `group` sent to `node` failed with `error` (not a `NotLeader`
    /// that is followed): the leader cache forgets the group on errors that say
    /// nothing of who leads it, and a node that timed out or stopped is suspect until
    /// `now + suspect_ns`.
    fn failed(&mut self, group: GroupId, node: NodeId, error: &Error, now: Nanos, suspect_ns: u64) {
        match error {
            Error::Timeout { .. } | Error::Server(ServerError::Stopped) => {
                self.leaders.remove(&group);
                self.suspects.insert(node, now.plus(suspect_ns));
            }
            Error::Disconnected { .. } | Error::Io { .. } => {
                self.leaders.remove(&group);
            }
            Error::Server(_)
            | Error::Refused { .. }
            | Error::Handshake { .. }
            | Error::Codec { .. }
            | Error::NoReachableNode { .. }
            | Error::NodeUnreachable { .. } => {}
        }
    }

    /// The known node after `node` in id order (wrapping) that is not suspect (or
    /// simply the next one when all are), for a `NotLeader` without a useful hint.
    fn node_after(&self, node: NodeId, now: Nanos) -> NodeId {
        let after = self
            .addresses
            .range(NodeId(node.0.saturating_add(1))..)
            .chain(self.addresses.range(..=node))
            .map(|(id, _)| *id);
        let mut first = None;
        for id in after {
            first.get_or_insert(id);
            if id != node && !self.is_suspect(id, now) {
                return id;
            }
        }
        first.unwrap_or(node)
    }

    /// Where a request of `group` goes after `from` answered `NotLeader { hint }`:
    /// the hinted node unless it is `from` itself or suspect, else the next node.
    /// The leader cache follows.
    fn redirect(
        &mut self,
        group: GroupId,
        from: NodeId,
        hint: Option<NodeId>,
        now: Nanos,
    ) -> NodeId {
        let next = match hint {
            Some(node) if node != from && !self.is_suspect(node, now) => node,
            Some(_) | None => self.node_after(from, now),
        };
        self.leaders.insert(group, next);
        next
    }
}

struct Inner {
    cluster: u64,
    config: ClientConfig,
    clock: MonotonicClock,
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
                clock: MonotonicClock::start(),
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
            let (connect, handshake) = (
                client.inner.config.connect_timeout,
                client.inner.config.handshake_timeout,
            );
            if let Err(error) = client.open(address.as_ref(), connect, handshake) {
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
            Answer::Read(_) | Answer::Status(_) | Answer::LogRead(_) | Answer::Done => {
                Err(self.mismatch("ProposeDone"))
            }
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
            Answer::Proposed(_) | Answer::Status(_) | Answer::LogRead(_) | Answer::Done => {
                Err(self.mismatch("ReadDone"))
            }
        }
    }

    /// Hands `group`'s leadership over to node `to`, asked of the group's leader
    /// (`NodeHandle::transfer_leadership`). Resolves once `to` leads.
    ///
    /// # Errors
    ///
    /// The node's error ([`Error::Server`]: `Rejected` with the reason, `NotLeader`
    /// once redirects ran out, `NoSuchGroup`, `Stopped`), or a connection error.
    pub async fn transfer_leadership(&self, group: GroupId, to: NodeId) -> Result<(), Error> {
        let answer = self
            .at_leader(group, |request| wire::Body::TransferLeadership {
                request,
                group,
                to,
            })
            .await?;
        self.done(answer)
    }

    /// Changes `group`'s voters by one, asked of the group's leader
    /// (`NodeHandle::change_membership`: an added node must be in every node's address
    /// book, and the leader waits for it to catch up). Resolves once the change is
    /// chosen and in effect; a change can take longer than the default
    /// `request_timeout` when the new node has much to catch up with.
    ///
    /// # Errors
    ///
    /// As [`Client::transfer_leadership`]; `Indeterminate` when leadership changed
    /// with the change in flight.
    pub async fn change_membership(
        &self,
        group: GroupId,
        change: MembershipChange,
    ) -> Result<(), Error> {
        let answer = self
            .at_leader(group, |request| wire::Body::ChangeMembership {
                request,
                group,
                change,
            })
            .await?;
        self.done(answer)
    }

    fn done(&self, answer: Answer) -> Result<(), Error> {
        match answer {
            Answer::Done => Ok(()),
            Answer::Proposed(_) | Answer::Read(_) | Answer::Status(_) | Answer::LogRead(_) => {
                Err(self.mismatch("Done"))
            }
        }
    }

    /// Reads `group`'s chosen log from `from` on node `node` (`None`: any node; every
    /// replica serves log reads, followers too): at most `size_max` bytes of values
    /// (at least one value when there is one), in log order with their positions, and
    /// the position to ask for next (`NodeHandle::read_log`). A follower may be
    /// behind the leader: what it returns is chosen, but it may end earlier.
    /// `Some(node)` reads that node's copy or fails: it never falls back to another
    /// node, whose log may be ahead of or behind the one asked for.
    ///
    /// # Errors
    ///
    /// The node's error ([`Error::Server`]: `Truncated { first_available }` below
    /// what the node can read back, `Overloaded`, `NoSuchGroup`, `Stopped`),
    /// [`Error::NodeUnreachable`] when `Some(node)` cannot be reached, or a
    /// connection error.
    pub async fn read_log(
        &self,
        node: Option<NodeId>,
        group: GroupId,
        from: Position,
        size_max: usize,
    ) -> Result<LogRead, Error> {
        let deadline = self.deadline();
        let timeout = self.inner.config.request_timeout;
        let connection = match node {
            Some(node) => self.connection_to(node, deadline)?,
            None => self.connection(None, deadline)?,
        };
        let request = self.next_request();
        let address = connection.address.clone();
        let body = wire::Body::ReadLog {
            request,
            group,
            from,
            size_max: size_max as u64,
        };
        let answer = connection
            .send(request, &body, deadline, timeout)?
            .await
            .unwrap_or(Err(Error::Disconnected { address }))?;
        match answer {
            Answer::LogRead(read) => Ok(read),
            Answer::Proposed(_) | Answer::Status(_) | Answer::Read(_) | Answer::Done => {
                Err(self.mismatch("ReadLogDone"))
            }
        }
    }

    /// [`Client::read_log`], blocking the calling thread.
    ///
    /// # Errors
    ///
    /// As [`Client::read_log`].
    pub fn read_log_blocking(
        &self,
        node: Option<NodeId>,
        group: GroupId,
        from: Position,
        size_max: usize,
    ) -> Result<LogRead, Error> {
        futures_lite::future::block_on(self.read_log(node, group, from, size_max))
    }

    /// The status of every node whose address is known (groups, roles, leader hints,
    /// watermarks, shard counters), in node order, each answered by that node itself.
    /// Requests go out together. All or nothing: one node down fails the call, so
    /// that a caller never mistakes a partial view for the cluster; for each node's
    /// status whatever the others' state, call [`Client::node_status`] per node of
    /// [`Client::nodes`] (as `synod status` does).
    ///
    /// # Errors
    ///
    /// The first node that could not answer: [`Error::NodeUnreachable`] naming it
    /// when it cannot be reached, or the error of its request (`Timeout`,
    /// `Disconnected`, ... with its address).
    pub async fn status(&self) -> Result<Vec<NodeStatus>, Error> {
        let nodes: Vec<NodeId> = lock(&self.inner.directory)
            .addresses
            .keys()
            .copied()
            .collect();
        let deadline = self.deadline();
        let timeout = self.inner.config.request_timeout;
        let mut waiting = Vec::with_capacity(nodes.len());
        for node in nodes {
            let connection = self.connection_to(node, deadline)?;
            let request = self.next_request();
            waiting.push((
                connection.address.clone(),
                connection.send(request, &wire::Body::Status { request }, deadline, timeout)?,
            ));
        }
        let mut statuses = Vec::with_capacity(waiting.len());
        for (address, answer) in waiting {
            match answer
                .await
                .unwrap_or(Err(Error::Disconnected { address }))?
            {
                Answer::Status(status) => statuses.push(status),
                Answer::Proposed(_) | Answer::Read(_) | Answer::LogRead(_) | Answer::Done => {
                    return Err(self.mismatch("StatusDone"))
                }
            }
        }
        Ok(statuses)
    }

    /// The status of one node (`node`), answered by that node itself, whatever the
    /// others' state.
    ///
    /// # Errors
    ///
    /// [`Error::NodeUnreachable`] when the node cannot be reached; `Io`,
    /// `Disconnected` or `Timeout` when it does not answer.
    pub async fn node_status(&self, node: NodeId) -> Result<NodeStatus, Error> {
        let deadline = self.deadline();
        let timeout = self.inner.config.request_timeout;
        let connection = self.connection_to(node, deadline)?;
        let request = self.next_request();
        let address = connection.address.clone();
        let answer = connection
            .send(request, &wire::Body::Status { request }, deadline, timeout)?
            .await
            .unwrap_or(Err(Error::Disconnected { address }))?;
        match answer {
            Answer::Status(status) => Ok(status),
            Answer::Proposed(_) | Answer::Read(_) | Answer::LogRead(_) | Answer::Done => {
                Err(self.mismatch("StatusDone"))
            }
        }
    }

    /// [`Client::node_status`], blocking the calling thread.
    ///
    /// # Errors
    ///
    /// As [`Client::node_status`].
    pub fn node_status_blocking(&self, node: NodeId) -> Result<NodeStatus, Error> {
        futures_lite::future::block_on(self.node_status(node))
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

    /// The deadline of a call starting now.
    fn deadline(&self) -> Nanos {
        let timeout =
            u64::try_from(self.inner.config.request_timeout.as_nanos()).unwrap_or(u64::MAX);
        self.inner.clock.now().plus(timeout)
    }

    /// Sends the request built by `body` to the group's leader as far as known,
    /// following `NotLeader` answers to the hinted node (or the next known node when
    /// there is no usable hint), at most `redirects_max` times, all within one
    /// `request_timeout`.
    async fn at_leader(
        &self,
        group: GroupId,
        body: impl Fn(u64) -> wire::Body,
    ) -> Result<Answer, Error> {
        let deadline = self.deadline();
        let timeout = self.inner.config.request_timeout;
        let suspect_ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let mut target = {
            let directory = lock(&self.inner.directory);
            let now = self.inner.clock.now();
            directory
                .leaders
                .get(&group)
                .copied()
                .filter(|node| !directory.is_suspect(*node, now))
        };
        let mut redirects = 0;
        loop {
            let connection = self.connection(target, deadline)?;
            let request = self.next_request();
            let address = connection.address.clone();
            let answer = match connection.send(request, &body(request), deadline, timeout) {
                Ok(reply) => reply.await.unwrap_or(Err(Error::Disconnected { address })),
                Err(error) => Err(error),
            };
            let now = self.inner.clock.now();
            match answer {
                Ok(answer) => {
                    lock(&self.inner.directory).answered(group, connection.node);
                    return Ok(answer);
                }
                Err(Error::Server(ServerError::NotLeader { hint }))
                    if redirects < self.inner.config.redirects_max =>
                {
                    redirects += 1;
                    self.inner.redirects.fetch_add(1, Ordering::Relaxed);
                    let next =
                        lock(&self.inner.directory).redirect(group, connection.node, hint, now);
                    target = Some(next);
                }
                Err(error) => {
                    lock(&self.inner.directory).failed(
                        group,
                        connection.node,
                        &error,
                        now,
                        suspect_ns,
                    );
                    return Err(error);
                }
            }
        }
    }

    /// An open connection to `target` (opened now if needed), or to any node when
    /// `target` is `None` or has no known address, nodes not suspect first. Opening
    /// one waits at most until `deadline`.
    fn connection(
        &self,
        target: Option<NodeId>,
        deadline: Nanos,
    ) -> Result<Arc<Connection>, Error> {
        let config = &self.inner.config;
        let (address, fallback) = {
            let directory = lock(&self.inner.directory);
            let now = self.inner.clock.now();
            if let Some(connection) = target.and_then(|node| directory.connections.get(&node)) {
                if !connection.is_closed() {
                    return Ok(Arc::clone(connection));
                }
            }
            let address = target.and_then(|node| directory.addresses.get(&node).cloned());
            if address.is_none() {
                let mut open: Vec<&Arc<Connection>> = directory
                    .connections
                    .values()
                    .filter(|c| !c.is_closed())
                    .collect();
                open.sort_by_key(|c| directory.is_suspect(c.node, now));
                if let Some(connection) = open.first() {
                    return Ok(Arc::clone(connection));
                }
            }
            let mut known: Vec<(&NodeId, &String)> = directory.addresses.iter().collect();
            known.sort_by_key(|(node, _)| directory.is_suspect(**node, now));
            let mut fallback: Vec<String> = known.into_iter().map(|(_, a)| a.clone()).collect();
            fallback.extend(directory.seeds.iter().cloned());
            (address, fallback)
        };
        let mut tried = Vec::new();
        for candidate in address.into_iter().chain(fallback) {
            let what = |cap| {
                connection::left(
                    self.inner.clock,
                    deadline,
                    cap,
                    &candidate,
                    config.request_timeout,
                )
            };
            let (connect, handshake) = (
                what(config.connect_timeout)?,
                what(config.handshake_timeout)?,
            );
            match self.open(&candidate, connect, handshake) {
                Ok(connection) => return Ok(connection),
                Err(error) => tried.push(error.to_string()),
            }
        }
        Err(Error::NoReachableNode { tried })
    }

    /// An open connection to `node` itself (opened now if needed, waiting at most
    /// until `deadline`), never to another node: for the requests whose answer is
    /// about the node asked for (its status, its copy of a log), where
    /// [`Client::connection`]'s fallback would pass another node's answer off as
    /// this one's.
    fn connection_to(&self, node: NodeId, deadline: Nanos) -> Result<Arc<Connection>, Error> {
        let address = {
            let directory = lock(&self.inner.directory);
            if let Some(connection) = directory.connections.get(&node) {
                if !connection.is_closed() {
                    return Ok(Arc::clone(connection));
                }
            }
            directory.addresses.get(&node).cloned()
        };
        let Some(address) = address else {
            return Err(Error::NodeUnreachable {
                node,
                reason: "no client address known for it".to_string(),
            });
        };
        let config = &self.inner.config;
        let left = |cap| {
            connection::left(
                self.inner.clock,
                deadline,
                cap,
                &address,
                config.request_timeout,
            )
        };
        let (connect, handshake) = (
            left(config.connect_timeout)?,
            left(config.handshake_timeout)?,
        );
        let connection =
            self.open(&address, connect, handshake)
                .map_err(|error| Error::NodeUnreachable {
                    node,
                    reason: error.to_string(),
                })?;
        if connection.node != node {
            return Err(Error::NodeUnreachable {
                node,
                reason: format!("{address} is node {}'s address now", connection.node.0),
            });
        }
        Ok(connection)
    }

    /// Opens a connection to `address` and records what its welcome says.
    fn open(
        &self,
        address: &str,
        connect: Duration,
        handshake: Duration,
    ) -> Result<Arc<Connection>, Error> {
        let (connection, welcome) = Connection::open(
            address,
            self.inner.cluster,
            &self.inner.config,
            self.inner.clock,
            connect,
            handshake,
        )?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use codec::{decode_next, encode};
    use wire::Body;

    const MS: u64 = 1_000_000;

    fn directory(nodes: &[u32]) -> Directory {
        Directory {
            addresses: nodes
                .iter()
                .map(|n| (NodeId(*n), format!("127.0.0.1:{}", 7000 + n)))
                .collect(),
            ..Directory::default()
        }
    }

    fn timeout() -> Error {
        Error::Timeout {
            address: String::new(),
            timeout: Duration::from_millis(100),
        }
    }

    // Goal: the leader cache rules: an answer caches the node and clears its
    // suspicion; Timeout and Stopped drop the group's entry and make the node suspect
    // for the given time; Disconnected and Io drop the entry only; other errors keep
    // it.
    // Method: apply each outcome to a directory of three nodes and look at it.
    #[test]
    fn leader_cache_rules() {
        let (g, n1, n2) = (GroupId(4), NodeId(1), NodeId(2));
        let mut d = directory(&[1, 2, 3]);
        d.answered(g, n1);
        assert_eq!(d.leaders.get(&g), Some(&n1));
        d.failed(g, n1, &timeout(), Nanos(0), 100 * MS);
        assert_eq!(d.leaders.get(&g), None);
        assert!(d.is_suspect(n1, Nanos(99 * MS)));
        assert!(!d.is_suspect(n1, Nanos(100 * MS)), "suspicion expires");
        d.answered(g, n1);
        assert!(!d.is_suspect(n1, Nanos(0)), "an answer clears suspicion");
        d.failed(
            g,
            n1,
            &Error::Server(ServerError::Stopped),
            Nanos(0),
            100 * MS,
        );
        assert_eq!(d.leaders.get(&g), None);
        assert!(d.is_suspect(n1, Nanos(0)));
        d.answered(g, n2);
        let disconnected = Error::Disconnected {
            address: String::new(),
        };
        d.failed(g, n2, &disconnected, Nanos(0), 100 * MS);
        assert_eq!(d.leaders.get(&g), None);
        assert!(
            !d.is_suspect(n2, Nanos(0)),
            "a lost connection is no suspicion"
        );
        d.answered(g, n2);
        d.failed(
            g,
            n2,
            &Error::Server(ServerError::Overloaded),
            Nanos(0),
            100 * MS,
        );
        assert_eq!(
            d.leaders.get(&g),
            Some(&n2),
            "Overloaded says nothing of the leader"
        );
    }

    // Goal: redirects follow a hint unless it names the asked node or a suspect one;
    // then they go to the next node that is not suspect (wrapping), or the next one at
    // all when every other node is suspect; the cache follows the redirect.
    // Method: redirect from each node with each kind of hint.
    #[test]
    fn redirect_rules() {
        let g = GroupId(0);
        let mut d = directory(&[1, 2, 3]);
        let now = Nanos(0);
        assert_eq!(d.redirect(g, NodeId(1), Some(NodeId(3)), now), NodeId(3));
        assert_eq!(d.leaders.get(&g), Some(&NodeId(3)));
        assert_eq!(d.redirect(g, NodeId(1), Some(NodeId(1)), now), NodeId(2));
        assert_eq!(d.redirect(g, NodeId(3), None, now), NodeId(1), "wraps");
        d.suspects.insert(NodeId(3), Nanos(10 * MS));
        assert_eq!(d.redirect(g, NodeId(1), Some(NodeId(3)), now), NodeId(2));
        assert_eq!(d.redirect(g, NodeId(2), Some(NodeId(3)), now), NodeId(1));
        d.suspects.insert(NodeId(1), Nanos(10 * MS));
        assert_eq!(
            d.redirect(g, NodeId(2), None, now),
            NodeId(3),
            "every other node suspect: the next one"
        );
        assert_eq!(
            d.redirect(g, NodeId(2), Some(NodeId(3)), Nanos(10 * MS)),
            NodeId(3)
        );
    }

    fn read_body(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Body {
        let mut chunk = [0_u8; 4096];
        loop {
            if let Some((body, consumed)) = decode_next(buf, 1 << 20).expect("valid frame") {
                buf.drain(..consumed);
                return body;
            }
            let n = stream.read(&mut chunk).expect("read");
            assert!(n > 0, "the client closed");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn write_body(stream: &mut TcpStream, body: &Body) {
        let mut out = Vec::new();
        encode(body, 1 << 20, &mut out).expect("fits");
        stream.write_all(&out).expect("write");
    }

    use std::net::TcpStream;

    // Goal: a node that does not answer makes a propose return `Timeout` after
    // request_timeout (not later), the group's cache entry is dropped and the node is
    // suspect; the node's late answer is dropped without ending the connection, which
    // then serves the next request.
    // Method: a fake node on loopback accepts one connection, welcomes it, holds the
    // first Propose unanswered until the client has timed out, then answers it (late)
    // and answers the second at once.
    #[test]
    fn unanswered_request_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let (timed_out, timed_out_seen) = std::sync::mpsc::channel::<()>();
        let advertised = address.clone();
        let node = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut buf = Vec::new();
            assert!(matches!(
                read_body(&mut stream, &mut buf),
                Body::Hello { .. }
            ));
            write_body(
                &mut stream,
                &Body::Welcome {
                    protocol_version: PROTOCOL_VERSION,
                    cluster: 9,
                    node: NodeId(1),
                    nodes: vec![NodeId(1)],
                    addresses: vec![(NodeId(1), advertised)],
                },
            );
            let Body::Propose { request: first, .. } = read_body(&mut stream, &mut buf) else {
                panic!("expected a Propose");
            };
            timed_out_seen.recv().expect("the client timed out");
            let done = |request| Body::ProposeDone {
                request,
                position: crate::api::Position::at(crate::paxos::Instance(request)),
                output: Bytes::new(),
            };
            write_body(&mut stream, &done(first));
            let Body::Propose {
                request: second, ..
            } = read_body(&mut stream, &mut buf)
            else {
                panic!("expected a Propose");
            };
            write_body(&mut stream, &done(second));
            second
        });
        let config = ClientConfig {
            request_timeout: Duration::from_millis(300),
            ..ClientConfig::default()
        };
        let client = Client::connect_with(&[&address], 9, config).expect("connect");
        let clock = MonotonicClock::start();
        let result = client.propose_blocking(GroupId(0), b"a".to_vec());
        let waited_ms = clock.now().0 / MS;
        assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
        assert!(!result.as_ref().is_err_and(Error::is_retryable));
        // Functional bounds: not before the timeout, and well before "forever".
        assert!(
            (300..3_000).contains(&waited_ms),
            "returned after {waited_ms} ms"
        );
        {
            let directory = lock(&client.inner.directory);
            assert_eq!(directory.leaders.get(&GroupId(0)), None);
            assert!(directory.is_suspect(NodeId(1), client.inner.clock.now()));
        }
        timed_out.send(()).expect("node thread");
        let proposed = client
            .propose_blocking(GroupId(0), b"b".to_vec())
            .expect("the same connection serves the next request");
        let second = node.join().expect("node thread");
        assert_eq!(proposed.position.instance.0, second);
        assert!(!lock(&client.inner.directory).is_suspect(NodeId(1), client.inner.clock.now()));
    }
}
