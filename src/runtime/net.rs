//! The TCP peer links of ONE shard, on that shard's glommio executor (one thread: `Rc`,
//! `RefCell`, `Cell`, no locks). The shard loop queues messages with [`Net::send`] and
//! collects received ones with [`Net::drain_inbound`]; tasks on the executor do the I/O.
//!
//! Connection model:
//! - Every shard of every node listens on its own address. Shard `s` of a node talks
//!   only to shard `s` of the other nodes: all nodes have the same shard count and a
//!   group lives on the same shard index everywhere (`placement::shard_of`).
//! - Two one-way connections per pair of peers, so no tie-breaking is needed: each
//!   shard DIALS every peer and only writes on that outbound connection; it ACCEPTS the
//!   peers' connections and only reads from them.
//! - Handshake, with the cluster's key ([`NetConfig::key`]; HMAC-SHA256,
//!   `transport::auth`):
//!   1. dialer -> `Handshake{protocol_version, cluster, node, shard, shards, layout,
//!      nonce_d}`; the acceptor checks the version, the cluster, that `node` is a
//!      configured peer (not itself), the shard, and that the dialer has a key too;
//!   2. acceptor -> its own `Handshake{.., nonce_a, proof_a}` with proof_a =
//!      prove([`PROOF_ROLE_ACCEPTOR`], [nonce_d, nonce_a], [`proof_context`]); the dialer
//!      checks it the same way (and that `node` is the peer it dialed), verifies
//!      proof_a, then the shard count and layout;
//!   3. dialer -> `HandshakeProof{prove([`PROOF_ROLE_DIALER`], ..)}`; the acceptor
//!      verifies it, then checks the shard count and layout.
//! - Without a key on both sides, the nonces and proofs are absent and step 3 is
//!   skipped (a key on one side only is refused). The whole handshake, every stage
//!   included (connect, hello, reply, proof), must finish within `handshake_timeout`.
//!   Any failure closes the connection without a word to the other side, counts the
//!   named reason in [`NetCounters::closes`] and logs the precise reason locally,
//!   within a line budget per reason ([`CLOSE_LOG_BURST`] per [`CLOSE_LOG_INTERVAL`],
//!   then one summary line with the count).
//! - Admission of accepted connections costs no I/O and no sleep: a source address
//!   with `pending_per_source_max` handshakes pending is refused, and with
//!   `pending_max` handshakes pending the OLDEST is closed ("evicted") to make room, so
//!   idle or half-sent connections cannot lock out a restarting peer.
//! - A later inbound connection from the same peer replaces the earlier one (its reader
//!   is stopped and its socket closed: reason "replaced"), but only once its handshake
//!   passed, proof included.
//! - A writer reconnects after any failure, with exponential backoff between
//!   `connect_backoff_min` and `connect_backoff_max`, reset by a successful handshake.
//!
//! Invariants:
//! - with a key, nothing a connection sent is delivered, and no link is registered or
//!   replaced, before its proof verified; the shard count and layout are compared only
//!   with a peer that proved the key, so mismatch lines name configured peers;
//! - at most `pending_max` accepted connections are in their handshake, at most
//!   `pending_per_source_max` of them from one source address, and each for at most
//!   `handshake_timeout`; the links past their handshake are at most one per peer;
//! - nothing a connection sent is delivered before its handshake passed; a frame is
//!   delivered whole or not at all (decoded and checked BEFORE any message of it is
//!   queued), and every delivered message has `from ==` the handshake's node and
//!   `to ==` this node;
//! - a size header above `frame_size_max` closes the connection BEFORE any buffer is
//!   sized by it, so a reader holds at most `frame_size_max` bytes of frame;
//! - a peer's outgoing buffer never holds more than `peer_queue_size_max` plus one
//!   frame: a frame is queued only while the buffer is below the bound, everything else
//!   is dropped and counted (Paxos retransmits: a drop is a loss);
//! - while the peer is not connected nothing is queued; what was queued when its
//!   connection failed is dropped and counted, never sent on the next connection;
//! - readers stop reading while `inbound_count_max` or more messages wait for
//!   [`Net::drain_inbound`] (TCP backpressure); the inbound queue thus holds at most
//!   `inbound_count_max` plus one frame's messages per connection;
//! - in steady state nothing allocates per message: the writer swaps two buffers, the
//!   encoder and the heartbeat scratch are reused, readers reuse their frame buffer.
//!
//! Frame bodies: `MessageBatch`, `HeartbeatBatch` and `HeartbeatAckBatch` are handled.
//! `CatchUpStream` and `CheckpointChunk` are not handled yet: a peer sending one is
//! closed with reason "unsupported frame" (streaming catch-up comes with its consumer).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use glommio::net::{Preallocated, TcpListener, TcpStream};
use glommio::task::JoinHandle;
use glommio::timer::sleep;
use glommio::Task;

use super::clock::MonotonicClock;
use super::notify::Notify;
use crate::paxos::{Message, MessageBody, Nanos, NodeId};
use crate::transport::auth::{self, AuthKey, Nonce};
use crate::transport::{
    self, DecodeLimits, Encoder, FrameBody, GroupHeartbeat, GroupHeartbeatAck, Handshake,
    HandshakeProof, HeartbeatAckBatch, HeartbeatBatch, FRAME_HEADER_SIZE, PROTOCOL_VERSION,
};

/// Most bytes of a handshake frame: a table of about 150 bytes plus 24 bytes per node
/// of the layout. A larger size header during the handshake closes the connection
/// before anything is allocated.
pub const HANDSHAKE_SIZE_MAX: usize = 4096;

/// Most nodes in a handshake's layout (so that a handshake fits `HANDSHAKE_SIZE_MAX`).
pub const LAYOUT_NODES_MAX: usize = 128;
const _: () = assert!(LAYOUT_NODES_MAX * 24 + 512 <= HANDSHAKE_SIZE_MAX);

/// The role label of the acceptor's proof (`AuthKey::prove`).
pub const PROOF_ROLE_ACCEPTOR: &str = "synod peer acceptor";

/// The role label of the dialer's proof.
pub const PROOF_ROLE_DIALER: &str = "synod peer dialer";

/// Default of [`NetConfig::pending_max`].
pub const PENDING_MAX_DEFAULT: usize = 64;

/// Default of [`NetConfig::pending_per_source_max`].
pub const PENDING_PER_SOURCE_MAX_DEFAULT: usize = 8;

/// Lines logged per close reason per [`CLOSE_LOG_INTERVAL`]; the rest are counted and
/// summed up in one line when the interval is over.
pub const CLOSE_LOG_BURST: u32 = 3;

/// The window of [`CLOSE_LOG_BURST`].
pub const CLOSE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Rounds of 1 ms that [`Net::close`] waits for its listening address to be free.
const CLOSE_WAIT_ROUNDS_MAX: usize = 1000;

/// Receive buffer of an inbound connection after its handshake: frames are read with
/// two `read_exact` calls (header, body), so small frames are served from here.
const READ_BUFFER_SIZE: usize = 64 << 10;

/// The configuration of one shard's peer links.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// This node.
    pub node: NodeId,
    /// This shard's index; peers must be the same shard of their node.
    pub shard: u16,
    /// This node's shard count, compared in every handshake.
    pub shards: u16,
    /// Every node of the cluster (this one included) and its base address, compared
    /// in every handshake: a peer configured differently is refused.
    pub layout: BTreeMap<NodeId, SocketAddr>,
    /// The cluster's shared secret: with a key, a connection delivers nothing until
    /// both sides proved they hold it; `None` runs unauthenticated (any host that can
    /// reach the port and knows a node id can pose as that node). A key on one side
    /// only is refused.
    pub key: Option<AuthKey>,
    /// The cluster identifier, checked in every handshake.
    pub cluster: u64,
    /// This shard's listening address.
    pub listen: SocketAddr,
    /// This shard's address at each peer node (never includes `node`).
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Decode limits of received frames, and the size and count bounds of sent frames.
    pub limits: DecodeLimits,
    /// Bytes of encoded frames queued toward one peer beyond which further messages to
    /// it are dropped (counted): a slow peer cannot make this node grow without bound.
    /// Paxos retransmits, so a drop is like a loss.
    pub peer_queue_size_max: usize,
    /// Messages received and not yet drained beyond which readers stop reading (TCP
    /// backpressure).
    pub inbound_count_max: usize,
    /// Wait after the first failed connection attempt; doubles per failure.
    pub connect_backoff_min: Duration,
    /// Longest wait between connection attempts.
    pub connect_backoff_max: Duration,
    /// Time allowed for connect plus handshake (every stage: connect, hello, proof),
    /// in both directions.
    pub handshake_timeout: Duration,
    /// Accepted connections still in their handshake beyond which the oldest of them is
    /// closed ("evicted") to make room: idle or slow connections cannot lock a
    /// restarting peer out.
    pub pending_max: usize,
    /// Connections still in their handshake from one source address beyond which a
    /// new one from it is closed at once.
    pub pending_per_source_max: usize,
}

impl NetConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// A message naming the field, its value and why it is refused.
    pub fn validate(&self) -> Result<(), String> {
        if self.peers.contains_key(&self.node) {
            return Err(format!(
                "peers contains node = {} itself: list only the other nodes",
                self.node.0
            ));
        }
        for (node, addr) in &self.peers {
            if addr.port() == 0 {
                return Err(format!(
                    "peers[{}] = {addr}: port 0 cannot be dialed",
                    node.0
                ));
            }
            if *addr == self.listen {
                return Err(format!(
                    "peers[{}] = {addr} equals listen: a node would dial itself",
                    node.0
                ));
            }
        }
        let limits = &self.limits;
        if limits.frame_size_max < HANDSHAKE_SIZE_MAX {
            return Err(format!(
                "limits.frame_size_max = {}: below {HANDSHAKE_SIZE_MAX}, a handshake may not fit",
                limits.frame_size_max
            ));
        }
        if u32::try_from(limits.frame_size_max).is_err() {
            return Err(format!(
                "limits.frame_size_max = {}: a frame size header is a u32",
                limits.frame_size_max
            ));
        }
        if limits.messages_max == 0 || limits.heartbeats_max == 0 {
            return Err(format!(
                "limits.messages_max = {}, limits.heartbeats_max = {}: must be positive",
                limits.messages_max, limits.heartbeats_max
            ));
        }
        if self.peer_queue_size_max == 0 {
            return Err("peer_queue_size_max = 0: nothing could ever be sent".to_string());
        }
        if self.inbound_count_max == 0 {
            return Err("inbound_count_max = 0: readers would never read".to_string());
        }
        if self.connect_backoff_min.is_zero() || self.connect_backoff_min > self.connect_backoff_max
        {
            return Err(format!(
                "connect_backoff_min = {:?}, connect_backoff_max = {:?}: need 0 < min <= max",
                self.connect_backoff_min, self.connect_backoff_max
            ));
        }
        if self.handshake_timeout.is_zero() {
            return Err("handshake_timeout = 0: no handshake could finish".to_string());
        }
        if self.shard >= self.shards {
            return Err(format!(
                "shard = {} with shards = {}: need shard < shards",
                self.shard, self.shards
            ));
        }
        if self.layout.len() > LAYOUT_NODES_MAX || self.layout.len() > limits.voters_max {
            return Err(format!(
                "layout has {} nodes: at most {LAYOUT_NODES_MAX} and limits.voters_max = {}",
                self.layout.len(),
                limits.voters_max
            ));
        }
        let listed = |n: &NodeId| self.layout.contains_key(n);
        if !listed(&self.node) || !self.peers.keys().all(listed) {
            return Err(format!(
                "layout lists nodes {:?}: it must list this node {} and every peer {:?}",
                self.layout.keys().map(|n| n.0).collect::<Vec<_>>(),
                self.node.0,
                self.peers.keys().map(|n| n.0).collect::<Vec<_>>()
            ));
        }
        if self.pending_max == 0 || self.pending_per_source_max == 0 {
            return Err(format!(
                "pending_max = {}, pending_per_source_max = {}: must be positive",
                self.pending_max, self.pending_per_source_max
            ));
        }
        Ok(())
    }
}

/// Why [`Net::start`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum NetError {
    /// [`NetConfig::validate`] refused the configuration.
    Config(String),
    /// Another socket already listens on the address.
    AddressInUse {
        /// The address.
        addr: SocketAddr,
    },
    /// Binding the listener failed for another reason.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Config(why) => write!(f, "invalid net configuration: {why}"),
            NetError::AddressInUse { addr } => write!(f, "cannot listen on {addr}: address in use"),
            NetError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
        }
    }
}

impl std::error::Error for NetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NetError::Bind { source, .. } => Some(source),
            NetError::Config(_) | NetError::AddressInUse { .. } => None,
        }
    }
}

/// What the links did since [`Net::start`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Frames written to peers (counted when their write succeeded).
    pub frames_sent: u64,
    /// Bytes written to peers, frame headers included.
    pub bytes_sent: u64,
    /// Messages written to peers (each heartbeat of a batch counts as one).
    pub messages_sent: u64,
    /// Frames received and delivered.
    pub frames_received: u64,
    /// Bytes of delivered frames, headers included.
    pub bytes_received: u64,
    /// Messages delivered to the inbound queue.
    pub messages_received: u64,
    /// Messages dropped because their receiver is not a configured peer.
    pub messages_dropped_unknown_peer: u64,
    /// Messages dropped because their peer was not connected, or because the
    /// connection failed before they were written.
    pub messages_dropped_disconnected: u64,
    /// Messages dropped because the peer's buffer held `peer_queue_size_max` bytes.
    pub messages_dropped_queue_full: u64,
    /// Messages dropped because alone they encode into more than `frame_size_max`.
    pub messages_dropped_too_large: u64,
    /// Outbound connections that completed their handshake.
    pub connects_outbound: u64,
    /// Inbound connections that completed their handshake.
    pub connects_inbound: u64,
    /// Closed (or refused) connections by reason, e.g. "cluster mismatch".
    pub closes: BTreeMap<&'static str, u64>,
    /// Log lines written about closed connections (summaries included).
    pub close_lines_logged: u64,
    /// Closes not logged because their reason's line budget of the interval was spent.
    pub close_lines_suppressed: u64,
}

/// Why a connection was closed: a counter name and, for the log line, the details.
struct Closed {
    reason: &'static str,
    detail: String,
}

impl Closed {
    fn new(reason: &'static str, detail: impl fmt::Display) -> Closed {
        Closed {
            reason,
            detail: detail.to_string(),
        }
    }

    fn io(error: &io::Error) -> Closed {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            Closed::new("peer closed", "end of stream")
        } else {
            Closed::new("io error", error)
        }
    }
}

/// What [`CloseLog::admit`] decides about one close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admit {
    /// Log it; first log a summary of `suppressed` closes of the last interval if > 0.
    Log { suppressed: u64 },
    /// Count it, log nothing.
    Suppress,
}

/// The per-reason line budget of close logging: at most `CLOSE_LOG_BURST` lines per
/// reason per `CLOSE_LOG_INTERVAL`, then one summary line with the count of the rest,
/// so a flood of bad connections writes a bounded number of lines. Pure: time is
/// passed in.
#[derive(Debug, Default)]
struct CloseLog {
    /// Per reason: start of its interval, lines logged in it, closes suppressed in it.
    reasons: BTreeMap<&'static str, (Nanos, u32, u64)>,
}

impl CloseLog {
    fn admit(&mut self, reason: &'static str, now: Nanos) -> Admit {
        let interval = CLOSE_LOG_INTERVAL.as_nanos() as u64;
        let (start, logged, suppressed) = self.reasons.entry(reason).or_insert((now, 0, 0));
        let mut summary = 0;
        if now.0.saturating_sub(start.0) >= interval {
            summary = std::mem::take(suppressed);
            *start = now;
            *logged = 0;
        }
        if *logged < CLOSE_LOG_BURST {
            *logged += 1;
            Admit::Log {
                suppressed: summary,
            }
        } else {
            *suppressed += 1;
            Admit::Suppress
        }
    }

    /// Takes the counts of every reason whose interval is over and that suppressed
    /// closes (for a summary line even when no later close of that reason comes).
    fn expired(&mut self, now: Nanos) -> Vec<(&'static str, u64)> {
        let interval = CLOSE_LOG_INTERVAL.as_nanos() as u64;
        let mut out = Vec::new();
        for (reason, (start, logged, suppressed)) in &mut self.reasons {
            if *suppressed > 0 && now.0.saturating_sub(start.0) >= interval {
                out.push((*reason, std::mem::take(suppressed)));
                *start = now;
                *logged = 0;
            }
        }
        out
    }
}

/// The outgoing side toward one peer.
struct Link {
    addr: SocketAddr,
    /// Whether the writer holds a handshaken connection (only then is anything queued).
    connected: Cell<bool>,
    /// Length-prefixed frames not yet handed to the socket.
    buffer: RefCell<Vec<u8>>,
    /// Frames and messages in `buffer`.
    buffer_frames: Cell<u64>,
    buffer_messages: Cell<u64>,
    /// Notified when `buffer` becomes non-empty.
    ready: Notify,
}

/// Frames queued by one call of [`queue_frames`], and what it dropped.
#[derive(Default)]
struct Queued {
    frames: u64,
    messages: u64,
    dropped_queue_full: u64,
    dropped_too_large: u64,
}

struct Inner {
    config: NetConfig,
    wake: Rc<dyn Fn()>,
    links: BTreeMap<NodeId, Link>,
    encoder: RefCell<Encoder>,
    /// Scratch of `send`: the heartbeats (acks) of one call, then one frame's worth.
    heartbeats: RefCell<(Vec<GroupHeartbeat>, HeartbeatBatch)>,
    heartbeat_acks: RefCell<(Vec<GroupHeartbeatAck>, HeartbeatAckBatch)>,
    /// Received messages not yet drained, in arrival order.
    inbound: RefCell<Vec<Message>>,
    /// Readers waiting for `drain_inbound` to make room.
    paused: RefCell<Vec<Rc<Notify>>>,
    /// Every live accepted connection's task, by connection id.
    connections: RefCell<BTreeMap<u64, JoinHandle<()>>>,
    connection_id_next: Cell<u64>,
    /// The connection currently reading from each peer.
    readers: RefCell<BTreeMap<NodeId, u64>>,
    /// Accepted connections still in their handshake, by connection id (so the first
    /// is the oldest), with their source address. At most `pending_max`.
    pending: RefCell<BTreeMap<u64, IpAddr>>,
    counters: RefCell<NetCounters>,
    close_log: RefCell<CloseLog>,
    clock: MonotonicClock,
}

/// The peer links of one shard. Not `Send`: it lives on the shard's executor.
pub struct Net {
    inner: Rc<Inner>,
    local_addr: SocketAddr,
    accept: Option<Task<()>>,
    /// One dialer/writer per peer, and the close-log summary task.
    tasks: Vec<Task<()>>,
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Net")
            .field("node", &self.inner.config.node)
            .field("shard", &self.inner.config.shard)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Net {
    /// Binds the listener and spawns the accept task and one dialer/writer task per
    /// peer. `wake` is called (on this executor) whenever inbound messages become
    /// available, so the shard loop can wake up. Must run on a glommio executor.
    ///
    /// # Errors
    ///
    /// [`NetError::Config`] for an invalid configuration, [`NetError::AddressInUse`]
    /// when another socket listens on `listen`, [`NetError::Bind`] otherwise.
    pub async fn start(config: NetConfig, wake: Rc<dyn Fn()>) -> Result<Net, NetError> {
        config.validate().map_err(NetError::Config)?;
        let addr = config.listen;
        // glommio binds with SO_REUSEPORT, so binding an address in use "succeeds" and
        // the kernel splits connections between the two listeners. A plain bind first
        // (std sets only SO_REUSEADDR) fails if any socket listens there.
        if addr.port() != 0 {
            match std::net::TcpListener::bind(addr) {
                Ok(probe) => drop(probe),
                Err(error) if error.kind() == io::ErrorKind::AddrInUse => {
                    return Err(NetError::AddressInUse { addr });
                }
                Err(source) => return Err(NetError::Bind { addr, source }),
            }
        }
        let listener = TcpListener::bind(addr).map_err(|error| NetError::Bind {
            addr,
            source: io::Error::from(error),
        })?;
        let local_addr = listener.local_addr().map_err(|error| NetError::Bind {
            addr,
            source: io::Error::from(error),
        })?;
        let links = config
            .peers
            .iter()
            .map(|(node, addr)| {
                let link = Link {
                    addr: *addr,
                    connected: Cell::new(false),
                    buffer: RefCell::new(Vec::new()),
                    buffer_frames: Cell::new(0),
                    buffer_messages: Cell::new(0),
                    ready: Notify::default(),
                };
                (*node, link)
            })
            .collect();
        let empty_heartbeats = HeartbeatBatch {
            from: config.node,
            to: config.node,
            heartbeats: Vec::new(),
        };
        let empty_acks = HeartbeatAckBatch {
            from: config.node,
            to: config.node,
            acks: Vec::new(),
        };
        let peers: Vec<NodeId> = config.peers.keys().copied().collect();
        let inner = Rc::new(Inner {
            config,
            wake,
            links,
            encoder: RefCell::new(Encoder::new()),
            heartbeats: RefCell::new((Vec::new(), empty_heartbeats)),
            heartbeat_acks: RefCell::new((Vec::new(), empty_acks)),
            inbound: RefCell::new(Vec::new()),
            paused: RefCell::new(Vec::new()),
            connections: RefCell::new(BTreeMap::new()),
            connection_id_next: Cell::new(0),
            readers: RefCell::new(BTreeMap::new()),
            pending: RefCell::new(BTreeMap::new()),
            counters: RefCell::new(NetCounters::default()),
            close_log: RefCell::new(CloseLog::default()),
            clock: MonotonicClock::start(),
        });
        if inner.config.key.is_none() && inner.config.shard == 0 {
            log::warn!(
                "net: node {} runs WITHOUT peer authentication: any host that can reach \
                 its ports and knows a node id can pose as that node (README, \"Security\")",
                inner.config.node.0
            );
        }
        log::info!(
            "net: node {} shard {} listening on {local_addr}",
            inner.config.node.0,
            inner.config.shard
        );
        let accept = glommio::spawn_local(accept_loop(Rc::clone(&inner), listener));
        let mut tasks: Vec<Task<()>> = peers
            .into_iter()
            .map(|peer| glommio::spawn_local(dial_loop(Rc::clone(&inner), peer)))
            .collect();
        tasks.push(glommio::spawn_local(close_log_summaries(Rc::clone(&inner))));
        Ok(Net {
            inner,
            local_addr,
            accept: Some(accept),
            tasks,
        })
    }

    /// Queues `messages` (all with `from ==` this node and `to == peer`) for `peer` as
    /// frames appended to the peer's outgoing buffer; the writer task sends everything
    /// buffered in one `write_all` per round, so everything queued during one shard-loop
    /// iteration leaves in one write.
    ///
    /// Heartbeats and heartbeat acks are packed into one `HeartbeatBatch` /
    /// `HeartbeatAckBatch` frame per call (merged across groups); all other messages
    /// into one `MessageBatch` frame, in order. Frames are split when they would exceed
    /// `limits.frame_size_max`, `limits.messages_max` or `limits.heartbeats_max`; a
    /// message that alone exceeds `frame_size_max` is dropped and counted. Frame
    /// order: messages, then heartbeats, then acks (so their relative order is not
    /// kept; Paxos tolerates reordering). While the peer is not connected, or once its
    /// buffer holds `peer_queue_size_max` bytes, messages are dropped and counted; so
    /// are messages to a node that is not a configured peer.
    ///
    /// Panics when a message's `from` is not this node or its `to` is not `peer`.
    pub fn send(&self, peer: NodeId, messages: &[Message]) {
        let inner = &*self.inner;
        for m in messages {
            assert!(
                m.from == inner.config.node && m.to == peer,
                "send to node {}: message from {} to {} (group {})",
                peer.0,
                m.from.0,
                m.to.0,
                m.group.0
            );
        }
        let Some(link) = inner.links.get(&peer) else {
            // A membership may name a node this shard's configuration does not (yet):
            // like a peer that is down, it is unreachable, not a reason to stop.
            log::debug!(
                "net: dropped {} messages to unknown peer {}",
                messages.len(),
                peer.0
            );
            inner.counters.borrow_mut().messages_dropped_unknown_peer += messages.len() as u64;
            return;
        };
        if messages.is_empty() {
            return;
        }
        if !link.connected.get() {
            inner.counters.borrow_mut().messages_dropped_disconnected += messages.len() as u64;
            return;
        }
        let limits = &inner.config.limits;
        let queue_max = inner.config.peer_queue_size_max;
        let mut buffer = link.buffer.borrow_mut();
        let mut encoder = inner.encoder.borrow_mut();
        let was_empty = buffer.is_empty();
        let mut queued = Queued::default();

        queue_frames(
            &mut queued,
            &mut buffer,
            messages,
            is_batched,
            limits.messages_max,
            limits.frame_size_max,
            queue_max,
            |chunk, out| encoder.encode_frame_of(chunk.iter().filter(|m| is_batched(m)), out),
        );

        let mut scratch = inner.heartbeats.borrow_mut();
        let (all, batch) = &mut *scratch;
        all.clear();
        all.extend(messages.iter().filter_map(|m| match m.body {
            MessageBody::Heartbeat {
                ballot,
                chosen_through,
                sent_at,
                checksum_through,
                checksum,
            } => Some(GroupHeartbeat {
                group: m.group,
                ballot,
                chosen_through,
                sent_at,
                checksum_through,
                checksum,
            }),
            _ => None,
        }));
        batch.from = inner.config.node;
        batch.to = peer;
        queue_frames(
            &mut queued,
            &mut buffer,
            all,
            |_| true,
            limits.heartbeats_max,
            limits.frame_size_max,
            queue_max,
            |chunk, out| {
                batch.heartbeats.clear();
                batch.heartbeats.extend_from_slice(chunk);
                encoder.encode_heartbeat_batch(batch, out);
            },
        );
        drop(scratch);

        let mut scratch = inner.heartbeat_acks.borrow_mut();
        let (all, batch) = &mut *scratch;
        all.clear();
        all.extend(messages.iter().filter_map(|m| match m.body {
            MessageBody::HeartbeatAck { ballot, sent_at } => Some(GroupHeartbeatAck {
                group: m.group,
                ballot,
                sent_at,
            }),
            _ => None,
        }));
        batch.from = inner.config.node;
        batch.to = peer;
        queue_frames(
            &mut queued,
            &mut buffer,
            all,
            |_| true,
            limits.heartbeats_max,
            limits.frame_size_max,
            queue_max,
            |chunk, out| {
                batch.acks.clear();
                batch.acks.extend_from_slice(chunk);
                encoder.encode_heartbeat_ack_batch(batch, out);
            },
        );
        drop(scratch);

        link.buffer_frames
            .set(link.buffer_frames.get() + queued.frames);
        link.buffer_messages
            .set(link.buffer_messages.get() + queued.messages);
        let mut counters = inner.counters.borrow_mut();
        counters.messages_dropped_queue_full += queued.dropped_queue_full;
        counters.messages_dropped_too_large += queued.dropped_too_large;
        if was_empty && !buffer.is_empty() {
            link.ready.notify();
        }
    }

    /// Moves every received message into `out`, in arrival order per connection
    /// (heartbeat and ack batches expanded back into per-group `Message`s with
    /// `MessageBody::Heartbeat` / `HeartbeatAck`). Resumes paused readers.
    pub fn drain_inbound(&self, out: &mut Vec<Message>) {
        out.append(&mut self.inner.inbound.borrow_mut());
        let paused = std::mem::take(&mut *self.inner.paused.borrow_mut());
        for reader in paused {
            reader.notify();
        }
    }

    /// What the links did so far.
    #[must_use]
    pub fn counters(&self) -> NetCounters {
        self.inner.counters.borrow().clone()
    }

    /// Bytes queued toward `peer` and not yet handed to its socket (0 for a node that
    /// is not a peer). At most `peer_queue_size_max` plus one frame.
    #[must_use]
    pub fn peer_queue_size(&self, peer: NodeId) -> usize {
        self.inner
            .links
            .get(&peer)
            .map_or(0, |link| link.buffer.borrow().len())
    }

    /// The address the listener is bound to (the configured one, with the port the OS
    /// chose when it was 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops every task and closes every socket; on return the listening address is
    /// free.
    pub async fn close(mut self) {
        if let Some(accept) = self.accept.take() {
            accept.cancel().await;
        }
        for task in self.tasks.drain(..) {
            task.cancel().await;
        }
        let connections = std::mem::take(&mut *self.inner.connections.borrow_mut());
        for handle in connections.values() {
            handle.cancel();
        }
        // A canceled task drops its future (and socket) when the executor next runs
        // it; its handle resolves after that.
        for (_, handle) in connections {
            handle.await;
        }
        // A canceled accept stays in io_uring until the reactor submits its
        // cancellation, and the listening socket lives until then. Wait (bounded) for
        // the address to be free, so a restart on it does not see "address in use".
        let mut free = false;
        for _ in 0..CLOSE_WAIT_ROUNDS_MAX {
            if std::net::TcpListener::bind(self.local_addr).is_ok() {
                free = true;
                break;
            }
            sleep(Duration::from_millis(1)).await;
        }
        if !free {
            log::warn!("net: {} still in use after close", self.local_addr);
        }
        log::info!(
            "net: node {} shard {} closed {}",
            self.inner.config.node.0,
            self.inner.config.shard,
            self.local_addr
        );
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Tasks in `accept` and `tasks` are canceled by their own drop; the detached
        // connection tasks are not.
        for handle in self.inner.connections.borrow().values() {
            handle.cancel();
        }
    }
}

/// Whether a message travels in a `MessageBatch` (everything but heartbeats and acks).
fn is_batched(m: &Message) -> bool {
    match m.body {
        MessageBody::Heartbeat { .. } | MessageBody::HeartbeatAck { .. } => false,
        MessageBody::Prepare { .. }
        | MessageBody::Promise { .. }
        | MessageBody::Reject { .. }
        | MessageBody::Accept { .. }
        | MessageBody::Accepted { .. }
        | MessageBody::CatchUpRequest { .. }
        | MessageBody::CatchUpChunk { .. } => true,
    }
}

/// Appends one frame to `buffer`: a size header, then what `encode` appends. When the
/// frame exceeds `frame_size_max`, `buffer` is left unchanged and the size returned.
/// (As `transport::append_frame`, but encoding in place instead of copying.)
fn append_encoded(
    buffer: &mut Vec<u8>,
    frame_size_max: usize,
    encode: impl FnOnce(&mut Vec<u8>),
) -> Result<(), usize> {
    let start = buffer.len();
    buffer.extend_from_slice(&[0; FRAME_HEADER_SIZE]);
    encode(buffer);
    let size = buffer.len() - start - FRAME_HEADER_SIZE;
    match u32::try_from(size) {
        Ok(size_u32) if size <= frame_size_max => {
            buffer[start..start + FRAME_HEADER_SIZE].copy_from_slice(&size_u32.to_le_bytes());
            Ok(())
        }
        Ok(_) | Err(_) => {
            buffer.truncate(start);
            Err(size)
        }
    }
}

/// Queues the items of `items` that `select` picks as frames of at most `chunk_max`
/// items of `items` each (consecutive, so order is kept), halving a chunk whose frame
/// exceeds `frame_size_max`. Stops queuing, dropping the rest, once `buffer` holds
/// `queue_max` bytes.
#[allow(clippy::too_many_arguments)]
fn queue_frames<T>(
    queued: &mut Queued,
    buffer: &mut Vec<u8>,
    items: &[T],
    select: impl Fn(&T) -> bool,
    chunk_max: usize,
    frame_size_max: usize,
    queue_max: usize,
    mut encode: impl FnMut(&[T], &mut Vec<u8>),
) {
    let mut start = 0;
    let mut span = chunk_max;
    while start < items.len() {
        if buffer.len() >= queue_max {
            let rest = items[start..].iter().filter(|item| select(item)).count();
            queued.dropped_queue_full += rest as u64;
            return;
        }
        let end = items.len().min(start + span);
        let chunk = &items[start..end];
        let count = chunk.iter().filter(|item| select(item)).count();
        if count == 0 {
            start = end;
            continue;
        }
        match append_encoded(buffer, frame_size_max, |out| encode(chunk, out)) {
            Ok(()) => {
                queued.frames += 1;
                queued.messages += count as u64;
                start = end;
            }
            Err(_) if count > 1 => span = (end - start) / 2,
            Err(size) => {
                log::warn!(
                    "net: dropped a message that encodes into {size} bytes, \
                     above frame_size_max = {frame_size_max}"
                );
                queued.dropped_too_large += 1;
                start = end;
            }
        }
    }
}

/// Reads one `[u32 LE size][size bytes]` frame into `frame`, refusing a size above
/// `size_max` before allocating.
async fn read_frame(
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

/// The bytes every handshake proof binds besides the nonces: the cluster, the dialer,
/// the acceptor and the shard, in that order, little endian. A proof is thus valid only
/// for one direction between two nodes on one shard of one cluster.
#[must_use]
pub fn proof_context(cluster: u64, dialer: NodeId, acceptor: NodeId, shard: u16) -> [u8; 18] {
    let mut out = [0_u8; 18];
    out[0..8].copy_from_slice(&cluster.to_le_bytes());
    out[8..12].copy_from_slice(&dialer.0.to_le_bytes());
    out[12..16].copy_from_slice(&acceptor.0.to_le_bytes());
    out[16..18].copy_from_slice(&shard.to_le_bytes());
    out
}

/// Checks that the (authenticated) peer's shard count and layout are this node's;
/// the refusal names both sides' values.
fn check_layout(own: &NetConfig, h: &Handshake) -> Result<(), Closed> {
    if h.shards != own.shards {
        return Err(Closed::new(
            "shard count mismatch",
            format_args!(
                "peer node {} has {} shards, this node {}",
                h.node.0, h.shards, own.shards
            ),
        ));
    }
    let theirs: BTreeMap<NodeId, SocketAddr> = h.layout.iter().copied().collect();
    if theirs != own.layout {
        let show = |layout: &BTreeMap<NodeId, SocketAddr>| {
            layout
                .iter()
                .map(|(n, a)| format!("{}={a}", n.0))
                .collect::<Vec<_>>()
                .join(",")
        };
        return Err(Closed::new(
            "layout mismatch",
            format_args!(
                "peer node {} has nodes {}, this node {}",
                h.node.0,
                show(&theirs),
                show(&own.layout)
            ),
        ));
    }
    Ok(())
}

/// A fresh nonce, or the close of a connection whose handshake cannot get one.
fn fresh_nonce() -> Result<Nonce, Closed> {
    auth::nonce().map_err(|error| Closed::new("random source", error))
}

impl Inner {
    fn own_handshake(&self, nonce: Option<Nonce>, proof: Option<auth::Proof>) -> Handshake {
        Handshake {
            protocol_version: PROTOCOL_VERSION,
            cluster: self.config.cluster,
            node: self.config.node,
            shard: self.config.shard,
            shards: self.config.shards,
            layout: self.config.layout.iter().map(|(n, a)| (*n, *a)).collect(),
            nonce,
            proof,
        }
    }

    /// `body` as a handshake-stage frame, with its size header.
    fn handshake_frame(&self, body: &FrameBody) -> Vec<u8> {
        let mut frame = Vec::new();
        let mut encoder = self.encoder.borrow_mut();
        append_encoded(&mut frame, HANDSHAKE_SIZE_MAX, |out| {
            encoder.encode(body, out);
        })
        .expect("validate bounds the layout, so a handshake fits HANDSHAKE_SIZE_MAX");
        frame
    }

    /// Decodes `frame` as a peer's handshake and checks its identities and whether it
    /// authenticates as this node does; `dialed` is the node a dialer expects (None on
    /// the accepting side: any configured peer). The shard count and layout are checked
    /// later, by [`check_layout`], once the peer proved the key.
    fn check_handshake(&self, frame: &[u8], dialed: Option<NodeId>) -> Result<Handshake, Closed> {
        let body = transport::decode(frame, &self.config.limits)
            .map_err(|error| Closed::new("malformed handshake", error))?;
        let h = match body {
            FrameBody::Handshake(h) => h,
            other => {
                return Err(Closed::new(
                    "handshake not first",
                    format_args!("first frame is a {}", other.kind()),
                ))
            }
        };
        let own = &self.config;
        if h.protocol_version != PROTOCOL_VERSION {
            return Err(Closed::new(
                "protocol version mismatch",
                format_args!(
                    "peer speaks {}, this build {PROTOCOL_VERSION}",
                    h.protocol_version
                ),
            ));
        }
        if h.cluster != own.cluster {
            return Err(Closed::new(
                "cluster mismatch",
                format_args!("peer cluster {}, own {}", h.cluster, own.cluster),
            ));
        }
        if h.node == own.node {
            return Err(Closed::new(
                "own node id",
                format_args!("peer claims this node's id {}", h.node.0),
            ));
        }
        if !own.peers.contains_key(&h.node) {
            return Err(Closed::new(
                "unknown node",
                format_args!("node {} is not a configured peer", h.node.0),
            ));
        }
        if let Some(dialed) = dialed {
            if h.node != dialed {
                return Err(Closed::new(
                    "wrong peer",
                    format_args!("dialed node {}, answered by node {}", dialed.0, h.node.0),
                ));
            }
        }
        if h.shard != own.shard {
            return Err(Closed::new(
                "shard mismatch",
                format_args!("peer shard {}, own {}", h.shard, own.shard),
            ));
        }
        // A dialer's hello carries a nonce; an acceptor's reply a nonce and a proof.
        let proof_expected = dialed.is_some();
        let keyed = h.nonce.is_some() && (h.proof.is_some() || !proof_expected);
        let keyless = h.nonce.is_none() && h.proof.is_none();
        match (&own.key, keyed, keyless) {
            (Some(_), true, _) | (None, _, true) => Ok(h),
            (Some(_), false, _) => Err(Closed::new(
                "authentication mismatch",
                format_args!(
                    "peer node {} does not authenticate, this node has a key",
                    h.node.0
                ),
            )),
            (None, _, false) => Err(Closed::new(
                "authentication mismatch",
                format_args!(
                    "peer node {} authenticates with a key, this node has none",
                    h.node.0
                ),
            )),
        }
    }

    /// Counts one closed (or refused) connection and logs it within the reason's line
    /// budget ([`CloseLog`]).
    fn closed(&self, peer: &dyn fmt::Display, closed: &Closed, level: log::Level) {
        let admit = self
            .close_log
            .borrow_mut()
            .admit(closed.reason, self.clock.now());
        let mut counters = self.counters.borrow_mut();
        *counters.closes.entry(closed.reason).or_insert(0) += 1;
        let Admit::Log { suppressed } = admit else {
            counters.close_lines_suppressed += 1;
            return;
        };
        counters.close_lines_logged += 1;
        drop(counters);
        if suppressed > 0 {
            self.log_suppressed(closed.reason, suppressed);
        }
        log::log!(
            level,
            "net: node {} shard {}: closed connection with {peer}: {}: {}",
            self.config.node.0,
            self.config.shard,
            closed.reason,
            closed.detail
        );
    }

    /// Logs the summary line of `count` closes of `reason` that were not logged.
    fn log_suppressed(&self, reason: &str, count: u64) {
        self.counters.borrow_mut().close_lines_logged += 1;
        log::warn!(
            "net: node {} shard {}: {count} more closes \"{reason}\" not logged in the last {:?}",
            self.config.node.0,
            self.config.shard,
            CLOSE_LOG_INTERVAL
        );
    }

    /// Checks a frame from `node` and queues its messages, or refuses it whole.
    fn deliver(&self, node: NodeId, body: FrameBody, frame_size: usize) -> Result<(), Closed> {
        let own = self.config.node;
        let forged = |from: NodeId, to: NodeId| {
            Closed::new(
                "forged sender/receiver",
                format_args!(
                    "message from {} to {} on the connection of node {} to {}",
                    from.0, to.0, node.0, own.0
                ),
            )
        };
        let mut inbound = self.inbound.borrow_mut();
        let before = inbound.len();
        match body {
            FrameBody::MessageBatch(messages) => {
                if let Some(m) = messages.iter().find(|m| m.from != node || m.to != own) {
                    return Err(forged(m.from, m.to));
                }
                inbound.extend(messages);
            }
            FrameBody::HeartbeatBatch(batch) => {
                if batch.from != node || batch.to != own {
                    return Err(forged(batch.from, batch.to));
                }
                inbound.extend(batch.heartbeats.iter().map(|h| Message {
                    group: h.group,
                    from: batch.from,
                    to: batch.to,
                    body: MessageBody::Heartbeat {
                        ballot: h.ballot,
                        chosen_through: h.chosen_through,
                        sent_at: h.sent_at,
                        checksum_through: h.checksum_through,
                        checksum: h.checksum,
                    },
                }));
            }
            FrameBody::HeartbeatAckBatch(batch) => {
                if batch.from != node || batch.to != own {
                    return Err(forged(batch.from, batch.to));
                }
                inbound.extend(batch.acks.iter().map(|a| Message {
                    group: a.group,
                    from: batch.from,
                    to: batch.to,
                    body: MessageBody::HeartbeatAck {
                        ballot: a.ballot,
                        sent_at: a.sent_at,
                    },
                }));
            }
            FrameBody::Handshake(_) | FrameBody::HandshakeProof(_) => {
                return Err(Closed::new("unexpected handshake", body.kind()));
            }
            // Not handled yet (module docs): refused rather than silently ignored.
            FrameBody::CatchUpStream(_) | FrameBody::CheckpointChunk(_) => {
                return Err(Closed::new("unsupported frame", body.kind()));
            }
        }
        let delivered = inbound.len() - before;
        drop(inbound);
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
}

/// Accepts connections until canceled; each gets its own task. Admission is decided
/// here at once (no sleep, no I/O): a source at `pending_per_source_max` handshakes
/// is refused, and at `pending_max` the oldest handshake is evicted to make room.
async fn accept_loop(inner: Rc<Inner>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                // An accepted socket inherits the listener's options: SO_REUSEPORT but
                // not SO_REUSEADDR. Its TIME_WAIT after a close would then fail the
                // plain probe bind of a restart on this address for a minute.
                if let Err(error) = socket2::SockRef::from(&stream).set_reuse_address(true) {
                    log::warn!("net: SO_REUSEADDR on an accepted socket: {error}");
                }
                let source = stream
                    .peer_addr()
                    .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
                if let Some(closed) = inner.admit(source) {
                    drop(stream);
                    inner.closed(&source, &closed, log::Level::Warn);
                    continue;
                }
                let id = inner.connection_id_next.get();
                inner.connection_id_next.set(id + 1);
                let task = glommio::spawn_local(serve_inbound(Rc::clone(&inner), id, stream));
                // The task cannot run before this returns to the executor, so its entry
                // exists before its guard can remove it.
                inner.connections.borrow_mut().insert(id, task.detach());
                inner.pending.borrow_mut().insert(id, source);
            }
            Err(error) => {
                let closed = Closed::new("accept error", error);
                inner.closed(&inner.config.listen, &closed, log::Level::Warn);
                sleep(inner.config.connect_backoff_min).await;
            }
        }
    }
}

impl Inner {
    /// Makes room for one more pending connection from `source`: evicts the oldest
    /// pending connection when `pending_max` are pending; returns the refusal when
    /// `source` already has `pending_per_source_max`.
    fn admit(&self, source: IpAddr) -> Option<Closed> {
        let mut pending = self.pending.borrow_mut();
        let from_source = pending.values().filter(|ip| **ip == source).count();
        if from_source >= self.config.pending_per_source_max {
            return Some(Closed::new(
                "too many pending from source",
                format_args!("{from_source} handshakes pending from {source}"),
            ));
        }
        if pending.len() >= self.config.pending_max {
            let (oldest, oldest_source) = pending
                .pop_first()
                .expect("pending_max >= 1, so a full map has a first entry");
            drop(pending);
            if let Some(handle) = self.connections.borrow_mut().remove(&oldest) {
                handle.cancel();
            }
            let closed = Closed::new(
                "evicted",
                format_args!(
                    "oldest of {} pending handshakes, to make room",
                    self.config.pending_max
                ),
            );
            self.closed(&oldest_source, &closed, log::Level::Warn);
        }
        None
    }
}

/// Logs, once per `CLOSE_LOG_INTERVAL`, the summary of closes whose lines were
/// suppressed and that no later close of the same reason reported. Runs until canceled.
async fn close_log_summaries(inner: Rc<Inner>) {
    loop {
        sleep(CLOSE_LOG_INTERVAL).await;
        let expired = inner.close_log.borrow_mut().expired(inner.clock.now());
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
        self.inner.pending.borrow_mut().remove(&self.id);
        self.inner
            .readers
            .borrow_mut()
            .retain(|_, id| *id != self.id);
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
    stage.set("the hello");
    read_frame(stream, HANDSHAKE_SIZE_MAX, frame).await?;
    let hello = inner.check_handshake(frame, None)?;
    let own = &inner.config;
    let context = proof_context(own.cluster, hello.node, own.node, own.shard);
    let keyed = match (&own.key, hello.nonce) {
        (Some(key), Some(dialer_nonce)) => Some((key, dialer_nonce, fresh_nonce()?)),
        // check_handshake refused a key on one side only.
        (None, None) | (Some(_), None) | (None, Some(_)) => None,
    };
    let reply = match keyed {
        Some((key, dialer_nonce, nonce)) => {
            let proof = key.prove(PROOF_ROLE_ACCEPTOR, [&dialer_nonce, &nonce], &context);
            inner.own_handshake(Some(nonce), Some(proof))
        }
        None => inner.own_handshake(None, None),
    };
    stage.set("the reply to be written");
    let reply = inner.handshake_frame(&FrameBody::Handshake(reply));
    stream.write_all(&reply).await.map_err(|e| Closed::io(&e))?;
    stream.flush().await.map_err(|e| Closed::io(&e))?;
    if let Some((key, dialer_nonce, nonce)) = keyed {
        stage.set("the proof");
        read_frame(stream, HANDSHAKE_SIZE_MAX, frame).await?;
        let proof = match transport::decode(frame, &own.limits) {
            Ok(FrameBody::HandshakeProof(p)) => p.proof,
            Ok(other) => {
                return Err(Closed::new(
                    "bad proof",
                    format_args!("second frame is a {}", other.kind()),
                ))
            }
            Err(error) => return Err(Closed::new("bad proof", error)),
        };
        if !key.verify(PROOF_ROLE_DIALER, [&dialer_nonce, &nonce], &context, &proof) {
            return Err(Closed::new(
                "bad proof",
                format_args!("claimed node {}: the proof does not verify", hello.node.0),
            ));
        }
    }
    check_layout(&inner.config, &hello)?;
    Ok(hello.node)
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
    inner.pending.borrow_mut().remove(&id);
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
    log::info!(
        "net: node {} shard {}: accepted node {}",
        inner.config.node.0,
        inner.config.shard,
        node.0
    );
    let mut stream = stream.buffered_with(Preallocated::new(READ_BUFFER_SIZE));
    let limits = inner.config.limits;
    let resume = Rc::new(Notify::default());
    loop {
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
    let hello = inner.handshake_frame(&FrameBody::Handshake(inner.own_handshake(nonce, None)));
    stream.write_all(&hello).await.map_err(|e| Closed::io(&e))?;
    stream.flush().await.map_err(|e| Closed::io(&e))?;
    let mut frame = Vec::new();
    read_frame(&mut stream, HANDSHAKE_SIZE_MAX, &mut frame).await?;
    let reply = inner.check_handshake(&frame, Some(peer))?;
    let context = proof_context(own.cluster, own.node, peer, own.shard);
    let proof = match (&own.key, nonce, reply.nonce, reply.proof) {
        (Some(key), Some(nonce), Some(their_nonce), Some(their_proof)) => {
            let nonces = [&nonce, &their_nonce];
            if !key.verify(PROOF_ROLE_ACCEPTOR, nonces, &context, &their_proof) {
                return Err(Closed::new(
                    "bad proof",
                    format_args!("node {} at {addr}: the proof does not verify", peer.0),
                ));
            }
            Some(key.prove(PROOF_ROLE_DIALER, nonces, &context))
        }
        // check_handshake refused a key on one side only.
        _ => None,
    };
    check_layout(own, &reply)?;
    if let Some(proof) = proof {
        stage.set("the proof to be written");
        let frame = inner.handshake_frame(&FrameBody::HandshakeProof(HandshakeProof { proof }));
        stream.write_all(&frame).await.map_err(|e| Closed::io(&e))?;
        stream.flush().await.map_err(|e| Closed::io(&e))?;
    }
    Ok(stream)
}

/// The writer toward one peer: connects (with backoff), handshakes, writes whatever
/// is buffered; on failure drops the buffer and starts over. Runs until canceled.
async fn dial_loop(inner: Rc<Inner>, peer: NodeId) {
    let link = inner
        .links
        .get(&peer)
        .expect("a writer exists only for a peer");
    let config = &inner.config;
    let mut backoff = config.connect_backoff_min;
    let mut spare = Vec::new();
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
                let closed = write_loop(&inner, link, stream, &mut spare).await;
                link.connected.set(false);
                link.buffer.borrow_mut().clear();
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
        sleep(backoff).await;
        backoff = (backoff * 2).min(config.connect_backoff_max);
    }
}

/// Writes the link's buffer whenever it is non-empty, one `write_all` per round, by
/// swapping it with `spare` (so neither is reallocated). Returns why it stopped.
async fn write_loop(
    inner: &Inner,
    link: &Link,
    mut stream: TcpStream,
    spare: &mut Vec<u8>,
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Ballot, Body, Entry, GroupId, Instance, Nanos};
    use crate::transport::append_frame;
    use crate::wal::dma_disk::run_local;
    use bytes::Bytes;
    use futures_lite::future::yield_now;

    /// A port nobody listens on now (bound, read, released).
    fn free_addr() -> SocketAddr {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        probe.local_addr().expect("local addr")
    }

    fn config(node: u32, addrs: &BTreeMap<NodeId, SocketAddr>) -> NetConfig {
        let node = NodeId(node);
        NetConfig {
            node,
            shard: 3,
            shards: 4,
            layout: addrs.clone(),
            key: None,
            cluster: 77,
            listen: addrs[&node],
            peers: addrs
                .iter()
                .filter(|(n, _)| **n != node)
                .map(|(n, a)| (*n, *a))
                .collect(),
            limits: DecodeLimits::default(),
            peer_queue_size_max: 1 << 20,
            inbound_count_max: 1 << 20,
            connect_backoff_min: Duration::from_millis(5),
            connect_backoff_max: Duration::from_millis(50),
            handshake_timeout: Duration::from_secs(1),
            pending_max: PENDING_MAX_DEFAULT,
            pending_per_source_max: PENDING_PER_SOURCE_MAX_DEFAULT,
        }
    }

    fn addrs(nodes: &[u32]) -> BTreeMap<NodeId, SocketAddr> {
        nodes.iter().map(|n| (NodeId(*n), free_addr())).collect()
    }

    fn addrs_of(nodes: &[u32]) -> BTreeMap<NodeId, SocketAddr> {
        addrs(nodes)
    }

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
                    body: Body::Values(vec![value.clone()]),
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

    /// An unauthenticated handshake frame with the layout `addrs` and 4 shards.
    fn handshake(
        version: u16,
        cluster: u64,
        node: u32,
        shard: u16,
        addrs: &BTreeMap<NodeId, SocketAddr>,
    ) -> Vec<u8> {
        frame(&FrameBody::Handshake(Handshake {
            protocol_version: version,
            cluster,
            node: NodeId(node),
            shard,
            shards: 4,
            layout: addrs.iter().map(|(n, a)| (*n, *a)).collect(),
            nonce: None,
            proof: None,
        }))
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

    // Goal: three shards exchange message batches and heartbeat batches intact, in order
    // per sender, including frames split by messages_max, heartbeats_max and size.
    // Method: start three Nets on 127.0.0.1, wait for all links, send mixed calls from
    // every node to every other, drain until every expected message arrived, compare.
    #[test]
    fn three_nodes_exchange_messages_in_order() {
        run_local(async {
            let addrs = addrs(&[1, 2, 3]);
            let mut nets = BTreeMap::new();
            let wakes = Rc::new(Cell::new(0_u64));
            for node in [1_u32, 2, 3] {
                let mut config = config(node, &addrs);
                config.limits.messages_max = 3;
                config.limits.heartbeats_max = 4;
                config.limits.frame_size_max = 8192;
                let wakes = Rc::clone(&wakes);
                let wake: Rc<dyn Fn()> = Rc::new(move || wakes.set(wakes.get() + 1));
                let net = Net::start(config, wake).await.expect("start");
                nets.insert(node, net);
            }
            wait_for("every link up", || {
                nets.values().all(|net| {
                    let c = net.counters();
                    c.connects_outbound == 2 && c.connects_inbound == 2
                })
            })
            .await;

            let value = Bytes::from(vec![7_u8; 1000]);
            let mut expected: BTreeMap<(u32, u32), Vec<Message>> = BTreeMap::new();
            for call in 0..20_u64 {
                for from in [1_u32, 2, 3] {
                    for to in [1_u32, 2, 3] {
                        if from == to {
                            continue;
                        }
                        let mut batched = Vec::new();
                        let mut heartbeats = Vec::new();
                        let mut acks = Vec::new();
                        for i in 0..10 {
                            let seq = call * 100 + i;
                            batched.push(accept(from, to, seq, &value));
                            batched.push(prepare(from, to, seq));
                            heartbeats.push(heartbeat(from, to, seq));
                            acks.push(heartbeat_ack(from, to, seq));
                        }
                        // Interleaved on the way in; grouped by frame kind on the way out.
                        let mixed: Vec<Message> = (0..10)
                            .flat_map(|i| {
                                [
                                    batched[2 * i].clone(),
                                    heartbeats[i].clone(),
                                    batched[2 * i + 1].clone(),
                                    acks[i].clone(),
                                ]
                            })
                            .collect();
                        nets[&from].send(NodeId(to), &mixed);
                        let list = expected.entry((from, to)).or_default();
                        list.extend(batched);
                        list.extend(heartbeats);
                        list.extend(acks);
                    }
                }
                yield_now().await;
            }

            let mut received: BTreeMap<u32, Vec<Message>> = BTreeMap::new();
            let total: usize = expected.values().map(Vec::len).sum();
            wait_for("every message delivered", || {
                for (node, net) in &nets {
                    net.drain_inbound(received.entry(*node).or_default());
                }
                received.values().map(Vec::len).sum::<usize>() >= total
            })
            .await;
            for ((from, to), list) in &expected {
                let got: Vec<Message> = received[to]
                    .iter()
                    .filter(|m| m.from.0 == *from)
                    .cloned()
                    .collect();
                assert!(
                    got == *list,
                    "from {from} to {to}: {} of {}",
                    got.len(),
                    list.len()
                );
            }
            assert!(wakes.get() > 0);
            for net in nets.values() {
                let c = net.counters();
                assert_eq!(c.messages_sent, 2 * 20 * 40, "{c:?}");
                assert_eq!(c.messages_received, 2 * 20 * 40, "{c:?}");
                assert_eq!(c.messages_dropped_disconnected, 0, "{c:?}");
                assert!(c.closes.is_empty(), "{c:?}");
            }

            // A message that alone exceeds frame_size_max is dropped and counted.
            let huge = Bytes::from(vec![1_u8; 10_000]);
            nets[&1].send(NodeId(2), &[accept(1, 2, 1, &huge), prepare(1, 2, 2)]);
            assert_eq!(nets[&1].counters().messages_dropped_too_large, 1);
            let mut got = Vec::new();
            wait_for("the small message", || {
                nets[&2].drain_inbound(&mut got);
                !got.is_empty()
            })
            .await;
            assert_eq!(got, vec![prepare(1, 2, 2)]);
            for (_, net) in nets {
                net.close().await;
            }
        })
        .expect("executor");
    }

    // Goal: a connection with a bad handshake is closed with a named reason and nothing
    // it sent is delivered; after a good handshake, an oversized header or garbage
    // closes it, and the good frames sent before are delivered.
    // Method: a raw client sends crafted bytes to a Net; check closes, counters, inbound.
    #[test]
    fn bad_handshakes_and_bad_frames_close_the_connection() {
        run_local(async {
            let addrs = addrs(&[1, 2, 3]);
            let net = start(config(1, &addrs)).await;
            let server = net.local_addr();
            let good = frame(&FrameBody::MessageBatch(vec![prepare(2, 1, 1)]));
            let cases: [(Vec<u8>, &str); 6] = [
                (
                    handshake(PROTOCOL_VERSION, 78, 2, 3, &addrs),
                    "cluster mismatch",
                ),
                (
                    handshake(PROTOCOL_VERSION, 77, 9, 3, &addrs),
                    "unknown node",
                ),
                (handshake(PROTOCOL_VERSION, 77, 1, 3, &addrs), "own node id"),
                (
                    handshake(PROTOCOL_VERSION + 1, 77, 2, 3, &addrs),
                    "protocol version mismatch",
                ),
                (
                    handshake(PROTOCOL_VERSION, 77, 2, 4, &addrs),
                    "shard mismatch",
                ),
                (good.clone(), "handshake not first"),
            ];
            for (first, reason) in cases {
                let mut bytes = first;
                bytes.extend_from_slice(&good);
                assert!(raw_session(server, &bytes).await, "{reason}: not closed");
                assert_eq!(closes(&net, reason), 1, "{reason}: {:?}", net.counters());
            }
            // A size header above the limit, during the handshake and after it.
            assert!(raw_session(server, &u32::MAX.to_le_bytes()).await);
            let mut bytes = handshake(PROTOCOL_VERSION, 77, 2, 3, &addrs);
            bytes.extend_from_slice(&u32::MAX.to_le_bytes());
            assert!(raw_session(server, &bytes).await);
            assert_eq!(closes(&net, "oversized frame"), 2);
            let mut inbound = Vec::new();
            net.drain_inbound(&mut inbound);
            assert!(inbound.is_empty(), "{inbound:?}");

            // Two good frames, then garbage: the good ones arrive, then the close.
            let mut bytes = handshake(PROTOCOL_VERSION, 77, 2, 3, &addrs);
            bytes.extend_from_slice(&good);
            bytes.extend_from_slice(&frame(&FrameBody::HeartbeatBatch(HeartbeatBatch {
                from: NodeId(2),
                to: NodeId(1),
                heartbeats: vec![GroupHeartbeat {
                    group: GroupId(4),
                    ballot: ballot(2),
                    chosen_through: Instance(9),
                    sent_at: Nanos(1),
                    checksum_through: Instance(0),
                    checksum: 0,
                }],
            })));
            let mut garbage = Vec::new();
            append_frame(&[0xAB; 64], usize::MAX, &mut garbage).expect("frame");
            bytes.extend_from_slice(&garbage);
            assert!(raw_session(server, &bytes).await);
            assert_eq!(closes(&net, "malformed frame"), 1);
            net.drain_inbound(&mut inbound);
            assert_eq!(inbound.len(), 2, "{inbound:?}");
            assert_eq!(inbound[0], prepare(2, 1, 1));
            assert!(matches!(inbound[1].body, MessageBody::Heartbeat { .. }));
            assert_eq!(inbound[1].group, GroupId(4));

            // A catch-up stream is not handled yet.
            let mut bytes = handshake(PROTOCOL_VERSION, 77, 2, 3, &addrs);
            bytes.extend_from_slice(&frame(&FrameBody::CatchUpStream(
                transport::CatchUpStream {
                    group: GroupId(1),
                    first_lsn: crate::paxos::Lsn(1),
                    records: Bytes::new(),
                    credit_size: 0,
                    salt: 0,
                },
            )));
            assert!(raw_session(server, &bytes).await);
            assert_eq!(closes(&net, "unsupported frame"), 1);
            net.drain_inbound(&mut inbound);
            assert_eq!(inbound.len(), 2);
            net.close().await;
        })
        .expect("executor");
    }

    // Goal: a silent client is closed after handshake_timeout.
    // Method: connect, send nothing, wait for the close and its counter.
    #[test]
    fn silent_client_times_out() {
        run_local(async {
            let addrs = addrs(&[1, 2]);
            let mut config = config(1, &addrs);
            config.handshake_timeout = Duration::from_millis(200);
            let net = start(config).await;
            assert!(raw_session(net.local_addr(), &[]).await);
            assert_eq!(closes(&net, "handshake timeout"), 1);
            net.close().await;
        })
        .expect("executor");
    }

    // Goal: a frame whose sender or receiver is not the handshaken pair is refused
    // whole, even when its other messages are genuine.
    // Method: handshake as node 2, send batches with a forged `from` or `to`.
    #[test]
    fn forged_sender_is_refused() {
        run_local(async {
            let addrs = addrs(&[1, 2, 3]);
            let net = start(config(1, &addrs)).await;
            let forged_batches = [
                vec![prepare(2, 1, 1), prepare(3, 1, 2)],
                vec![prepare(2, 5, 1)],
            ];
            for (i, batch) in forged_batches.into_iter().enumerate() {
                let mut bytes = handshake(PROTOCOL_VERSION, 77, 2, 3, &addrs);
                bytes.extend_from_slice(&frame(&FrameBody::MessageBatch(batch)));
                assert!(raw_session(net.local_addr(), &bytes).await);
                assert_eq!(closes(&net, "forged sender/receiver"), i as u64 + 1);
            }
            let mut bytes = handshake(PROTOCOL_VERSION, 77, 2, 3, &addrs);
            bytes.extend_from_slice(&frame(&FrameBody::HeartbeatAckBatch(HeartbeatAckBatch {
                from: NodeId(3),
                to: NodeId(1),
                acks: Vec::new(),
            })));
            assert!(raw_session(net.local_addr(), &bytes).await);
            assert_eq!(closes(&net, "forged sender/receiver"), 3);
            let mut inbound = Vec::new();
            net.drain_inbound(&mut inbound);
            assert!(inbound.is_empty(), "{inbound:?}");
            assert_eq!(net.counters().messages_received, 0);
            net.close().await;
        })
        .expect("executor");
    }

    // Goal: a peer that never reads cannot make the sender's buffer grow past
    // peer_queue_size_max plus one frame; the excess is dropped and counted.
    // Method: a raw listener handshakes as node 2 and then stalls; send 100 MB to it,
    // checking the buffer bound after every call; account for every message.
    #[test]
    fn stalled_peer_buffer_is_bounded() {
        run_local(async {
            let addrs = addrs(&[1, 2]);
            let stalled = TcpListener::bind(addrs[&NodeId(2)]).expect("bind");
            let reply = handshake(PROTOCOL_VERSION, 77, 2, 3, &addrs);
            let peer = glommio::spawn_local(async move {
                let mut stream = stalled.accept().await.expect("accept");
                let mut header = [0_u8; 4];
                stream.read_exact(&mut header).await.expect("header");
                let mut hello = vec![0_u8; u32::from_le_bytes(header) as usize];
                stream.read_exact(&mut hello).await.expect("handshake");
                stream.write_all(&reply).await.expect("reply");
                sleep(Duration::from_secs(30)).await;
                drop(stream);
            });
            let config = config(1, &addrs);
            let queue_max = config.peer_queue_size_max;
            let net = start(config).await;
            wait_for("connected", || net.counters().connects_outbound == 1).await;

            let value = Bytes::from(vec![3_u8; 64 << 10]);
            let message = accept(1, 2, 1, &value);
            let calls = (100 << 20) / value.len();
            let mut frame_size_max = 0;
            for call in 0..calls {
                let before = net.peer_queue_size(NodeId(2));
                net.send(NodeId(2), std::slice::from_ref(&message));
                let after = net.peer_queue_size(NodeId(2));
                frame_size_max = frame_size_max.max(after.saturating_sub(before));
                assert!(
                    after <= queue_max + value.len() + 1024,
                    "call {call}: {after} bytes queued"
                );
                if call % 16 == 0 {
                    yield_now().await;
                }
            }
            let c = net.counters();
            assert!(c.messages_dropped_queue_full > 0, "{c:?}");
            let queued = net.peer_queue_size(NodeId(2)) / frame_size_max;
            // Every message was written, is still queued (or in the write in flight),
            // or was dropped.
            let accounted = c.messages_sent + c.messages_dropped_queue_full + queued as u64;
            assert!(
                accounted <= calls as u64 && accounted + 2 * queued as u64 + 32 >= calls as u64,
                "{calls} calls, {c:?}"
            );
            net.close().await;
            drop(peer);
        })
        .expect("executor");
    }

    // Goal: after a peer restarts at the same address, links come back both ways.
    // Method: close node 2's Net, start a new one there, send until it arrives.
    #[test]
    fn reconnects_after_peer_restart() {
        run_local(async {
            let addrs = addrs(&[1, 2]);
            let a = start(config(1, &addrs)).await;
            let b = start(config(2, &addrs)).await;
            let mut inbound = Vec::new();
            wait_for("link up", || {
                a.send(NodeId(2), &[prepare(1, 2, 1)]);
                b.drain_inbound(&mut inbound);
                !inbound.is_empty()
            })
            .await;
            b.close().await;
            let b = start(config(2, &addrs)).await;
            let mut inbound = Vec::new();
            wait_for("link up", || {
                a.send(NodeId(2), &[prepare(1, 2, 1)]);
                b.drain_inbound(&mut inbound);
                !inbound.is_empty()
            })
            .await;
            b.close().await;
            let port = addrs[&NodeId(2)].port();
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("ss -tanoe | grep {port}"))
                .output()
                .expect("ss");
            eprintln!("SS {}", String::from_utf8_lossy(&out.stdout));
            let b = start(config(2, &addrs)).await;
            inbound.clear();
            wait_for("a to the new b", || {
                a.send(NodeId(2), &[prepare(1, 2, 7)]);
                b.drain_inbound(&mut inbound);
                !inbound.is_empty()
            })
            .await;
            assert!(inbound.iter().all(|m| *m == prepare(1, 2, 7)));
            inbound.clear();
            wait_for("the new b to a", || {
                b.send(NodeId(1), &[prepare(2, 1, 8)]);
                a.drain_inbound(&mut inbound);
                inbound.iter().any(|m| *m == prepare(2, 1, 8))
            })
            .await;
            assert!(a.counters().connects_outbound >= 2, "{:?}", a.counters());
            a.close().await;
            b.close().await;
        })
        .expect("executor");
    }

    // Goal: a restarted shard binds its address even while connections it accepted
    // before sit in TIME_WAIT (accepted sockets get SO_REUSEADDR).
    // Method: a raw client handshakes as node 1 with node 2; node 2 closes first, the
    // client sees the end of stream and closes (node 2's side enters TIME_WAIT); start
    // node 2 again on the same address.
    #[test]
    fn restart_despite_time_wait() {
        run_local(async {
            let addrs = addrs(&[1, 2]);
            let b = start(config(2, &addrs)).await;
            let server = b.local_addr();
            let hello = handshake(PROTOCOL_VERSION, 77, 1, 3, &addrs);
            let client = glommio::spawn_local(async move {
                let mut stream = TcpStream::connect(server).await.expect("connect");
                stream.write_all(&hello).await.expect("write");
                let mut reply = Vec::new();
                read_frame(&mut stream, HANDSHAKE_SIZE_MAX, &mut reply)
                    .await
                    .map_err(|closed| closed.reason)
                    .expect("handshake reply");
                assert!(closed_by_server(&mut stream).await);
            });
            wait_for("handshake", || b.counters().connects_inbound == 1).await;
            b.close().await;
            client.await;
            let b = start(config(2, &addrs)).await;
            b.close().await;
        })
        .expect("executor");
    }

    // Goal: readers stop reading while inbound_count_max messages wait to be drained,
    // and nothing is lost: everything arrives once the shard drains.
    // Method: node 2 sends 1,000 single-message frames to node 1, which does not drain
    // at first; check the bound, then drain until all arrived, in order.
    #[test]
    fn inbound_backpressure_pauses_readers() {
        run_local(async {
            let addrs = addrs(&[1, 2]);
            let mut receiver = config(1, &addrs);
            receiver.inbound_count_max = 10;
            let a = start(receiver).await;
            let b = start(config(2, &addrs)).await;
            wait_for("link 2 -> 1", || b.counters().connects_outbound == 1).await;
            for seq in 0..1000 {
                b.send(NodeId(1), &[prepare(2, 1, seq)]);
                if seq % 50 == 0 {
                    // Let the writer run: frames leave in several writes.
                    sleep(Duration::from_millis(1)).await;
                }
            }
            wait_for("the reader to fill the inbound queue", || {
                a.counters().messages_received >= 10
            })
            .await;
            sleep(Duration::from_millis(50)).await;
            // One frame (one message here) may land past the bound.
            assert!(a.counters().messages_received <= 11, "{:?}", a.counters());
            let mut inbound = Vec::new();
            wait_for("every message", || {
                a.drain_inbound(&mut inbound);
                inbound.len() >= 1000
            })
            .await;
            let expected: Vec<Message> = (0..1000).map(|seq| prepare(2, 1, seq)).collect();
            assert!(inbound == expected);
            a.close().await;
            b.close().await;
        })
        .expect("executor");
    }

    // Goal: a second connection from the same peer replaces the first.
    // Method: two raw clients handshake as node 2; the first is closed ("replaced"),
    // the second's frames arrive.
    #[test]
    fn later_connection_replaces_earlier() {
        run_local(async {
            let addrs = addrs(&[1, 2]);
            let net = start(config(1, &addrs)).await;
            let server = net.local_addr();
            let mut first = TcpStream::connect(server).await.expect("connect");
            let hello = handshake(PROTOCOL_VERSION, 77, 2, 3, &addrs);
            first.write_all(&hello).await.expect("write");
            wait_for("first handshake", || net.counters().connects_inbound == 1).await;
            let mut second = TcpStream::connect(server).await.expect("connect");
            let mut bytes = hello.clone();
            bytes.extend_from_slice(&frame(&FrameBody::MessageBatch(vec![prepare(2, 1, 5)])));
            second.write_all(&bytes).await.expect("write");
            assert!(closed_by_server(&mut first).await, "first not closed");
            assert_eq!(closes(&net, "replaced"), 1);
            let mut inbound = Vec::new();
            wait_for("the second's message", || {
                net.drain_inbound(&mut inbound);
                !inbound.is_empty()
            })
            .await;
            assert_eq!(inbound, vec![prepare(2, 1, 5)]);
            drop(second);
            net.close().await;
        })
        .expect("executor");
    }

    // Goal: binding an address some socket already listens on fails clearly (glommio's
    // SO_REUSEPORT would otherwise let both listeners share it).
    // Method: start two Nets on one address.
    #[test]
    fn double_bind_fails() {
        run_local(async {
            let addrs = addrs(&[1, 2]);
            let first = start(config(1, &addrs)).await;
            let second = Net::start(config(1, &addrs), Rc::new(|| {})).await;
            assert!(
                matches!(second, Err(NetError::AddressInUse { addr }) if addr == addrs[&NodeId(1)]),
                "{second:?}"
            );
            first.close().await;
            // Closed: the address is free again.
            let again = start(config(1, &addrs)).await;
            again.close().await;
        })
        .expect("executor");
    }

    // Goal: validate names the field it refuses.
    // Method: break one field at a time.
    #[test]
    fn validate_names_the_field() {
        let addrs = addrs(&[1, 2]);
        assert_eq!(config(1, &addrs).validate(), Ok(()));
        let mut c = config(1, &addrs);
        c.peers.insert(NodeId(1), free_addr());
        assert!(c.validate().unwrap_err().contains("peers"));
        let mut c = config(1, &addrs);
        c.connect_backoff_min = Duration::from_secs(9);
        assert!(c.validate().unwrap_err().contains("connect_backoff_min"));
        let mut c = config(1, &addrs);
        c.peer_queue_size_max = 0;
        assert!(c.validate().unwrap_err().contains("peer_queue_size_max"));
    }

    fn keyed(mut config: NetConfig, key: &AuthKey) -> NetConfig {
        config.key = Some(key.clone());
        config
    }

    /// A handshake frame of node `node` with the layout `addrs`, carrying `nonce`.
    fn hello(addrs: &BTreeMap<NodeId, SocketAddr>, node: u32, nonce: Option<Nonce>) -> Vec<u8> {
        frame(&FrameBody::Handshake(Handshake {
            protocol_version: PROTOCOL_VERSION,
            cluster: 77,
            node: NodeId(node),
            shard: 3,
            shards: 4,
            layout: addrs.iter().map(|(n, a)| (*n, *a)).collect(),
            nonce,
            proof: None,
        }))
    }

    /// A blocking loopback socket from source address `source` to `server`, then made
    /// non-blocking (the server runs on this thread: connect completes in the kernel).
    fn attacker(source: [u8; 4], server: SocketAddr) -> std::net::TcpStream {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
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

    /// Sends `prepare(from, to, seq)` until `to` received one.
    async fn link_delivers(from: &Net, to: &Net, seq: u64) {
        let (a, b) = (from.inner.config.node.0, to.inner.config.node.0);
        let mut inbound = Vec::new();
        wait_for("a message over the link", || {
            from.send(NodeId(b), &[prepare(a, b, seq)]);
            to.drain_inbound(&mut inbound);
            inbound.contains(&prepare(a, b, seq))
        })
        .await;
    }

    // Goal: two nodes with the same key link up and deliver; with different keys, or a
    // key on one side only, nothing is delivered and the refusals are named.
    // Method: pairs of Nets with (k, k), (k, k'), (k, none); wait, check counters.
    #[test]
    fn handshake_needs_the_same_key_on_both_sides() {
        run_local(async {
            let key = AuthKey::generate().expect("key");
            let other = AuthKey::generate().expect("key");
            let addrs = addrs_of(&[1, 2]);
            let a = start(keyed(config(1, &addrs), &key)).await;
            let b = start(keyed(config(2, &addrs), &key)).await;
            link_delivers(&a, &b, 1).await;
            link_delivers(&b, &a, 2).await;
            a.close().await;
            b.close().await;

            for b_key in [Some(other), None] {
                let addrs = addrs_of(&[1, 2]);
                let a = start(keyed(config(1, &addrs), &key)).await;
                let mut config_b = config(2, &addrs);
                config_b.key = b_key.clone();
                let b = start(config_b).await;
                let reason = if b_key.is_some() {
                    "bad proof"
                } else {
                    "authentication mismatch"
                };
                wait_for("refusals on both sides", || {
                    closes(&a, reason) >= 2 && closes(&b, reason) >= 2
                })
                .await;
                for _ in 0..10 {
                    a.send(NodeId(2), &[prepare(1, 2, 1)]);
                    b.send(NodeId(1), &[prepare(2, 1, 1)]);
                    sleep(Duration::from_millis(10)).await;
                }
                for net in [&a, &b] {
                    let c = net.counters();
                    assert_eq!(c.connects_inbound + c.connects_outbound, 0, "{c:?}");
                    assert_eq!(c.messages_received, 0, "{c:?}");
                }
                a.close().await;
                b.close().await;
            }
        })
        .expect("executor");
    }

    // Goal: a handshake that claims a live peer's node id but cannot prove the key is
    // refused, replaces nothing, and the real link keeps delivering.
    // Method: keyed nodes 1 and 2 link up; raw connections claim node 2 to node 1 and
    // send a random proof, a message batch instead of a proof, or no proof; node 2's
    // messages still arrive over the one original connection.
    #[test]
    fn forged_handshake_for_a_live_node_is_refused() {
        run_local(async {
            let key = AuthKey::generate().expect("key");
            let addrs = addrs(&[1, 2]);
            let mut config_a = keyed(config(1, &addrs), &key);
            config_a.handshake_timeout = Duration::from_millis(300);
            let a = start(config_a).await;
            let b = start(keyed(config(2, &addrs), &key)).await;
            link_delivers(&b, &a, 1).await;
            let forgeries: [Vec<u8>; 3] = [
                frame(&FrameBody::HandshakeProof(HandshakeProof {
                    proof: [9; 32],
                })),
                frame(&FrameBody::MessageBatch(vec![prepare(2, 1, 66)])),
                // No proof at all: the handshake times out.
                Vec::new(),
            ];
            for forged in forgeries {
                let mut bytes = hello(&addrs, 2, Some([5; 16]));
                if !forged.is_empty() {
                    bytes.extend_from_slice(&forged);
                    bytes.extend_from_slice(&frame(&FrameBody::MessageBatch(vec![prepare(
                        2, 1, 66,
                    )])));
                }
                assert!(raw_session(a.local_addr(), &bytes).await);
                link_delivers(&b, &a, 2).await;
            }
            // A hello without a nonce to a keyed node.
            let mut bytes = hello(&addrs, 2, None);
            bytes.extend_from_slice(&frame(&FrameBody::MessageBatch(vec![prepare(2, 1, 66)])));
            assert!(raw_session(a.local_addr(), &bytes).await);
            link_delivers(&b, &a, 3).await;
            let c = a.counters();
            assert_eq!(closes(&a, "bad proof"), 2, "{c:?}");
            assert_eq!(closes(&a, "handshake timeout"), 1, "{c:?}");
            assert_eq!(closes(&a, "authentication mismatch"), 1, "{c:?}");
            assert_eq!(closes(&a, "replaced"), 0, "{c:?}");
            assert_eq!(c.connects_inbound, 1, "{c:?}");
            let mut inbound = Vec::new();
            a.drain_inbound(&mut inbound);
            assert!(!inbound.contains(&prepare(2, 1, 66)), "{inbound:?}");
            a.close().await;
            b.close().await;
        })
        .expect("executor");
    }

    // Goal: when pending_max handshakes are pending, a new connection evicts the
    // oldest, so idle connections cannot lock out a real peer; one source address
    // cannot hold more than pending_per_source_max.
    // Method: node 1 with pending_max 4 and 2 per source; idle connections from
    // 127.0.0.2..=5 fill it; a 5th evicts the first; a 3rd from one source is closed
    // at once; then the real node 2 starts and its link delivers.
    #[test]
    fn oldest_pending_handshake_is_evicted() {
        run_local(async {
            let key = AuthKey::generate().expect("key");
            let addrs = addrs(&[1, 2]);
            let mut config_a = keyed(config(1, &addrs), &key);
            config_a.pending_max = 4;
            config_a.pending_per_source_max = 2;
            config_a.handshake_timeout = Duration::from_secs(30);
            let a = start(config_a).await;
            let server = a.local_addr();
            let mut idle: Vec<std::net::TcpStream> =
                (2..=5).map(|i| attacker([127, 0, 0, i], server)).collect();
            wait_for("four pending", || a.inner.pending.borrow().len() == 4).await;
            let mut fifth = attacker([127, 0, 0, 6], server);
            assert!(std_closed(&mut idle[0], Duration::from_secs(3)).await);
            assert_eq!(closes(&a, "evicted"), 1);
            assert!(!std_closed(&mut idle[1], Duration::from_millis(100)).await);
            assert!(!std_closed(&mut fifth, Duration::from_millis(10)).await);

            let _second = attacker([127, 0, 0, 6], server);
            let mut third = attacker([127, 0, 0, 6], server);
            assert!(std_closed(&mut third, Duration::from_secs(3)).await);
            assert_eq!(closes(&a, "too many pending from source"), 1);

            let b = start(keyed(config(2, &addrs), &key)).await;
            link_delivers(&b, &a, 1).await;
            assert_eq!(a.counters().connects_inbound, 1);
            drop(idle);
            a.close().await;
            b.close().await;
        })
        .expect("executor");
    }

    // Goal: 300 refused connections write a bounded number of log lines, every close
    // still counted; the line budget is per reason and renews each interval.
    // Method: 300 handshakes with a wrong cluster id; check the counters. Then drive
    // CloseLog directly through two intervals.
    #[test]
    fn close_logging_is_rate_limited() {
        run_local(async {
            let addrs = addrs(&[1, 2]);
            let net = start(config(1, &addrs)).await;
            for _ in 0..300 {
                let bytes = handshake(PROTOCOL_VERSION, 78, 2, 3, &addrs);
                let mut stream = TcpStream::connect(net.local_addr()).await.expect("connect");
                stream.write_all(&bytes).await.expect("write");
                drop(stream);
            }
            wait_for("300 refusals", || closes(&net, "cluster mismatch") == 300).await;
            let c = net.counters();
            // The dialer toward the absent node 2 adds its own "connect failed" lines,
            // under the same per-reason budget.
            let reasons = c.closes.len() as u64;
            assert!(
                c.close_lines_logged <= u64::from(CLOSE_LOG_BURST) * reasons,
                "{c:?}"
            );
            assert!(
                c.close_lines_logged + c.close_lines_suppressed >= 300,
                "{c:?}"
            );
            net.close().await;
        })
        .expect("executor");

        let interval = CLOSE_LOG_INTERVAL.as_nanos() as u64;
        let mut log = CloseLog::default();
        let at = |n: u64| Nanos(1_000 + n);
        for i in 0..u64::from(CLOSE_LOG_BURST) {
            assert_eq!(log.admit("a", at(i)), Admit::Log { suppressed: 0 });
        }
        for i in 0..100 {
            assert_eq!(log.admit("a", at(10 + i)), Admit::Suppress);
        }
        assert_eq!(log.admit("b", at(200)), Admit::Log { suppressed: 0 });
        assert!(log.expired(at(interval - 1)).is_empty());
        assert_eq!(log.admit("a", at(interval)), Admit::Log { suppressed: 100 });
        for i in 0..u64::from(CLOSE_LOG_BURST) + 5 {
            log.admit("a", at(interval + 1 + i));
        }
        assert_eq!(log.expired(at(2 * interval)), vec![("a", 6)]);
        assert!(log.expired(at(3 * interval)).is_empty());
    }

    // Goal: a peer with another shard count or another view of the layout is refused
    // (after the key is proved) with both sides' values in the reason.
    // Method: check_layout on crafted handshakes; then two Nets whose shard counts
    // differ never link up.
    #[test]
    fn shard_count_and_layout_mismatches_are_refused() {
        let addrs = addrs(&[1, 2, 3]);
        let own = config(1, &addrs);
        let peer = |shards: u16, layout: &BTreeMap<NodeId, SocketAddr>| Handshake {
            protocol_version: PROTOCOL_VERSION,
            cluster: 77,
            node: NodeId(2),
            shard: 3,
            shards,
            layout: layout.iter().map(|(n, a)| (*n, *a)).collect(),
            nonce: None,
            proof: None,
        };
        assert!(check_layout(&own, &peer(4, &addrs)).is_ok());
        let closed = check_layout(&own, &peer(5, &addrs)).expect_err("shards");
        assert_eq!(closed.reason, "shard count mismatch");
        assert_eq!(closed.detail, "peer node 2 has 5 shards, this node 4");
        let mut moved = addrs.clone();
        moved.insert(NodeId(3), "127.0.0.9:9".parse().expect("address"));
        let closed = check_layout(&own, &peer(4, &moved)).expect_err("layout");
        assert_eq!(closed.reason, "layout mismatch");
        assert!(closed.detail.contains("3=127.0.0.9:9"), "{}", closed.detail);
        assert!(
            closed.detail.contains(&format!("3={}", addrs[&NodeId(3)])),
            "{}",
            closed.detail
        );
        let mut fewer = addrs.clone();
        fewer.remove(&NodeId(3));
        let closed = check_layout(&own, &peer(4, &fewer)).expect_err("layout");
        assert_eq!(closed.reason, "layout mismatch");

        run_local(async {
            let addrs = addrs_of(&[1, 2]);
            let key = AuthKey::generate().expect("key");
            let a = start(keyed(config(1, &addrs), &key)).await;
            let mut config_b = keyed(config(2, &addrs), &key);
            config_b.shards = 5;
            let b = start(config_b).await;
            wait_for("refusals on both sides", || {
                closes(&a, "shard count mismatch") >= 1 && closes(&b, "shard count mismatch") >= 1
            })
            .await;
            for net in [&a, &b] {
                let c = net.counters();
                assert_eq!(c.connects_inbound + c.connects_outbound, 0, "{c:?}");
            }
            a.close().await;
            b.close().await;
        })
        .expect("executor");
    }
}
