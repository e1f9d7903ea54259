//! The configuration of one shard's peer links and its validation: every bound a
//! link relies on is checked here, once, before anything is bound or dialed.
//!
//! Invariant: a configuration that passes [`NetConfig::validate`] lets every handshake
//! fit [`HANDSHAKE_SIZE_MAX`] and every frame size fit the u32 of its header.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::handshake::{HANDSHAKE_SIZE_MAX, LAYOUT_NODES_MAX};
use crate::paxos::NodeId;
use crate::transport::auth::AuthKey;
use crate::transport::DecodeLimits;

/// Default of [`NetConfig::pending_max`].
pub const PENDING_MAX_DEFAULT: usize = 64;

/// Default of [`NetConfig::pending_per_source_max`].
pub const PENDING_PER_SOURCE_MAX_DEFAULT: usize = 8;

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

/// The configuration the tests of the links start from: one builder, each test
/// changes the fields it is about.
#[cfg(test)]
pub(super) mod fixture {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::{NetConfig, PENDING_MAX_DEFAULT, PENDING_PER_SOURCE_MAX_DEFAULT};
    use crate::paxos::NodeId;
    use crate::transport::DecodeLimits;

    /// A port nobody listens on now (bound, read, released).
    pub fn free_addr() -> SocketAddr {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        probe.local_addr().expect("local addr")
    }

    /// `nodes`, each at a free loopback port, all distinct: the probes stay bound until
    /// every port is chosen (released one at a time, the kernel may hand out the same
    /// port twice, and a node would then dial itself).
    pub fn free_addrs(nodes: &[u32]) -> BTreeMap<NodeId, SocketAddr> {
        let probes: Vec<std::net::TcpListener> = nodes
            .iter()
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
            .collect();
        nodes
            .iter()
            .zip(&probes)
            .map(|(n, probe)| (NodeId(*n), probe.local_addr().expect("local addr")))
            .collect()
    }

    /// Node `node` of the cluster 77 on shard 3 of 4, listening at its address in
    /// `layout`, every other node of `layout` a peer; no key, default limits and
    /// pending bounds, backoff from 5 to 50 ms, 1 s handshake timeout.
    pub fn config(node: u32, layout: &BTreeMap<NodeId, SocketAddr>) -> NetConfig {
        let node = NodeId(node);
        NetConfig {
            node,
            shard: 3,
            shards: 4,
            layout: layout.clone(),
            key: None,
            cluster: 77,
            listen: layout[&node],
            peers: layout
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
}

#[cfg(test)]
mod tests {
    use super::fixture::{free_addr, free_addrs};
    use super::*;

    fn config(node: u32) -> NetConfig {
        super::fixture::config(node, &free_addrs(&[1, 2]))
    }

    /// Breaks one field of a configuration.
    type Break = fn(&mut NetConfig);

    // Goal: validate names the field it refuses.
    // Method: break one field at a time.
    #[test]
    fn validate_names_the_field() {
        assert_eq!(config(1).validate(), Ok(()));
        let breaks: [(Break, &str); 9] = [
            (|c| _ = c.peers.insert(c.node, free_addr()), "peers"),
            (
                |c| c.connect_backoff_min = Duration::from_secs(9),
                "connect_backoff_min",
            ),
            (|c| c.peer_queue_size_max = 0, "peer_queue_size_max"),
            (|c| c.inbound_count_max = 0, "inbound_count_max"),
            (
                |c| c.handshake_timeout = Duration::ZERO,
                "handshake_timeout",
            ),
            (|c| c.limits.frame_size_max = 100, "frame_size_max"),
            (|c| c.shard = 4, "shard"),
            (|c| _ = c.layout.remove(&NodeId(2)), "layout"),
            (|c| c.pending_per_source_max = 0, "pending_per_source_max"),
        ];
        for (break_it, field) in breaks {
            let mut c = config(1);
            break_it(&mut c);
            let why = c.validate().expect_err(field);
            assert!(why.contains(field), "{field}: {why}");
        }
    }
}
