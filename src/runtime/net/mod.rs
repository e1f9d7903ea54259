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
//!   An inbound handshake from the peer ends the backoff at once: a peer that
//!   restarts dials out as it starts, so its peers' writers reach it then rather than
//!   up to `connect_backoff_max` later (a restarted follower waited that long for the
//!   catch-up its leaders send).
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
//!   encoder and the heartbeat scratch are reused, readers reuse their frame buffer;
//! - those reused buffers do not keep a past burst's capacity: each written round and
//!   each read frame is recycled through a high-water mark (`support::high_water`), keeping at most
//!   `KEEP_SLACK` x the largest use of the last two windows of `KEEP_WINDOW` uses (at
//!   least `KEEP_SIZE_MIN`); [`Net::buffer_capacity`] counts what they hold.
//!
//! Frame bodies: `MessageBatch`, `HeartbeatBatch` and `HeartbeatAckBatch` are handled.
//! Checkpoint transfers travel as messages (`MessageBody::CheckpointRequest` and
//! `CheckpointChunk`, the schema's `CheckpointChunk` table as a `MessageBody` member)
//! inside `MessageBatch` frames, decoded, verified and bounded like every message
//! (`DecodeLimits`, `check_bounds`). Bulk does not starve heartbeats by size, not by
//! priority: a chunk holds at most `TransferPolicy::chunk_size_max` bytes (256 KiB by
//! default; a few hundred microseconds on a gigabit link), and heartbeats leave in
//! frames of their own between batches. `CatchUpStream` and a top-level
//! `CheckpointChunk` frame are not handled: a peer sending one is closed with reason
//! "unsupported frame" (streaming catch-up comes with its consumer).
//!
//! Rooms: `config` (the configuration and its validation), [`handshake`] (the
//! handshake as a pure check), `admission` (pending-handshake slots, pure), `link`
//! (the tasks that do the I/O), `listen` (the listening socket), `close` (close
//! reasons and their rate-limited log); the packing of messages into frames is
//! `transport::batch`, pure too.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use glommio::task::JoinHandle;
use glommio::timer::sleep;
use glommio::Task;

use super::clock::MonotonicClock;
use super::log_budget::LogBudget;
use super::notify::Notify;
use crate::paxos::{Message, NodeId};
use crate::transport::batch::Packer;
use crate::transport::Encoder;

mod admission;
mod close;
mod config;
pub mod handshake;
mod link;
mod listen;
#[cfg(test)]
mod tests;

pub use crate::support::high_water::{KEEP_SIZE_MIN, KEEP_SLACK, KEEP_WINDOW};
use admission::PendingHandshakes;
pub use close::{CLOSE_LOG_BURST, CLOSE_LOG_INTERVAL};
pub use config::{NetConfig, PENDING_MAX_DEFAULT, PENDING_PER_SOURCE_MAX_DEFAULT};
pub use handshake::{
    proof_context, HANDSHAKE_SIZE_MAX, LAYOUT_NODES_MAX, PROOF_ROLE_ACCEPTOR, PROOF_ROLE_DIALER,
};

/// Rounds of 1 ms that [`Net::close`] waits for its listening address to be free.
const CLOSE_WAIT_ROUNDS_MAX: usize = 1000;

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

/// One peer's link, as [`Net::peer_links`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLink {
    /// The peer.
    pub node: NodeId,
    /// This shard's writer holds a handshaken connection to the peer.
    pub outbound_connected: bool,
    /// A handshaken connection from the peer is being read.
    pub inbound_connected: bool,
    /// Bytes queued toward the peer, not yet handed to its socket.
    pub queue_size: u64,
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
    /// Capacity of the writer's spare buffer (the one being written or last written),
    /// as of the writer's last round.
    spare_capacity: Cell<usize>,
    /// Notified when `buffer` becomes non-empty.
    ready: Notify,
    /// Notified when the peer handshakes an inbound connection: it is up, so the
    /// writer ends its backoff and dials at once (`link::dial_loop`).
    peer_up: Notify,
}

/// The state the [`Net`] facade shares with its tasks (one executor: `Rc` and cells).
struct Inner {
    config: NetConfig,
    wake: Rc<dyn Fn()>,
    links: BTreeMap<NodeId, Link>,
    /// Encodes the handshake frames.
    encoder: RefCell<Encoder>,
    /// Packs what `send` is given into frames (transport::batch).
    packer: RefCell<Packer>,
    /// Received messages not yet drained, in arrival order.
    inbound: RefCell<Vec<Message>>,
    /// Readers waiting for `drain_inbound` to make room.
    paused: RefCell<Vec<Rc<Notify>>>,
    /// Every live accepted connection's task, by connection id.
    connections: RefCell<BTreeMap<u64, JoinHandle<()>>>,
    connection_id_next: Cell<u64>,
    /// The connection currently reading from each peer.
    readers: RefCell<BTreeMap<NodeId, u64>>,
    /// Capacity of each live connection's frame buffer, by connection id.
    frame_capacity: RefCell<BTreeMap<u64, usize>>,
    /// Accepted connections still in their handshake, with their source address.
    pending: RefCell<PendingHandshakes>,
    counters: RefCell<NetCounters>,
    /// The line budget of close logging, per reason.
    close_log: RefCell<LogBudget<&'static str>>,
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
        let listener = listen::listen(addr).map_err(|source| {
            if source.kind() == io::ErrorKind::AddrInUse {
                NetError::AddressInUse { addr }
            } else {
                NetError::Bind { addr, source }
            }
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
                    spare_capacity: Cell::new(0),
                    ready: Notify::default(),
                    peer_up: Notify::default(),
                };
                (*node, link)
            })
            .collect();
        let peers: Vec<NodeId> = config.peers.keys().copied().collect();
        let pending = PendingHandshakes::new(config.pending_max, config.pending_per_source_max);
        let inner = Rc::new(Inner {
            config,
            wake,
            links,
            encoder: RefCell::new(Encoder::new()),
            packer: RefCell::new(Packer::new()),
            inbound: RefCell::new(Vec::new()),
            paused: RefCell::new(Vec::new()),
            connections: RefCell::new(BTreeMap::new()),
            connection_id_next: Cell::new(0),
            readers: RefCell::new(BTreeMap::new()),
            frame_capacity: RefCell::new(BTreeMap::new()),
            pending: RefCell::new(pending),
            counters: RefCell::new(NetCounters::default()),
            close_log: RefCell::new(LogBudget::new(
                CLOSE_LOG_BURST,
                CLOSE_LOG_INTERVAL.as_nanos() as u64,
            )),
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
        let accept = glommio::spawn_local(link::accept_loop(Rc::clone(&inner), listener));
        let mut tasks: Vec<Task<()>> = peers
            .into_iter()
            .map(|peer| glommio::spawn_local(link::dial_loop(Rc::clone(&inner), peer)))
            .collect();
        tasks.push(glommio::spawn_local(link::close_log_summaries(Rc::clone(
            &inner,
        ))));
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
    /// Packing is `transport::batch::Packer`'s: heartbeats and heartbeat acks are
    /// packed into one `HeartbeatBatch` / `HeartbeatAckBatch` frame per call (merged
    /// across groups); all other messages into one `MessageBatch` frame, in order. Frames are split when they would exceed
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
        let mut buffer = link.buffer.borrow_mut();
        let was_empty = buffer.is_empty();
        let packed = inner.packer.borrow_mut().pack(
            inner.config.node,
            peer,
            messages,
            &inner.config.limits,
            inner.config.peer_queue_size_max,
            &mut buffer,
        );
        for size in &packed.dropped_too_large {
            log::warn!(
                "net: dropped a message that encodes into {size} bytes, \
                 above frame_size_max = {}",
                inner.config.limits.frame_size_max
            );
        }
        link.buffer_frames
            .set(link.buffer_frames.get() + packed.frames);
        link.buffer_messages
            .set(link.buffer_messages.get() + packed.messages);
        let mut counters = inner.counters.borrow_mut();
        counters.messages_dropped_queue_full += packed.dropped_queue_full;
        counters.messages_dropped_too_large += packed.dropped_too_large.len() as u64;
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

    /// Each peer's link as it stands now, ascending by node: whether this shard's
    /// writer holds a handshaken connection to it, whether a connection from it is
    /// being read, and the bytes queued toward it.
    #[must_use]
    pub fn peer_links(&self) -> Vec<PeerLink> {
        let readers = self.inner.readers.borrow();
        self.inner
            .links
            .iter()
            .map(|(node, link)| PeerLink {
                node: *node,
                outbound_connected: link.connected.get(),
                inbound_connected: readers.contains_key(node),
                queue_size: link.buffer.borrow().len() as u64,
            })
            .collect()
    }

    /// Bytes of capacity the links' reusable buffers hold: each peer's outgoing buffer
    /// and the writer's spare, and each connection's frame buffer. Each keeps at most
    /// `KEEP_SLACK` x its recent largest use (at least `KEEP_SIZE_MIN`) once used.
    #[must_use]
    pub fn buffer_capacity(&self) -> usize {
        let links: usize = self
            .inner
            .links
            .values()
            .map(|link| link.buffer.borrow().capacity() + link.spare_capacity.get())
            .sum();
        links + self.inner.frame_capacity.borrow().values().sum::<usize>()
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
