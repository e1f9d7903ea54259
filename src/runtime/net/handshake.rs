//! The handshake of a peer link as a pure check: frames, the key and the nonces in;
//! the authenticated peer, the frames to answer with, or a typed [`Refusal`] out. The
//! link only reads, writes and draws nonces (module docs of `net` for the exchange).
//!
//! Stages, each a function or method here:
//! - dialer: [`hello`] (its first frame), then [`check_reply`] (the acceptor's reply:
//!   identities, the acceptor's proof, the shard count and layout), which returns the
//!   dialer's proof to send when keyed;
//! - acceptor: [`check_hello`] (identities and whether the dialer authenticates as this
//!   node does), [`Hello::reply`] (the reply with this node's nonce and proof), then
//!   [`AwaitProof::finish`] (the dialer's proof, then the shard count and layout).
//!
//! Invariants:
//! - with a key, neither side accepts a peer before its proof verified, and the shard
//!   count and layout are compared only with a peer that proved the key (so mismatch
//!   lines name configured peers);
//! - a key on one side only is refused, on both sides;
//! - every refusal names its reason ([`Refusal::reason`], a counter name) and the
//!   values that differ ([`Refusal`]'s `Display`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use super::config::NetConfig;
use crate::paxos::NodeId;
use crate::transport::auth::{Nonce, Proof};
use crate::transport::{self, DecodeError, FrameBody, Handshake, HandshakeProof, PROTOCOL_VERSION};

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

/// Why a handshake was refused. [`Refusal::reason`] is the close counter's name; the
/// `Display` form is the detail of the log line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The first frame does not decode.
    Malformed(DecodeError),
    /// The first frame is not a handshake.
    NotFirst {
        /// Its kind.
        kind: &'static str,
    },
    /// The peer speaks another wire protocol version.
    ProtocolVersion {
        /// The peer's version.
        peer: u16,
    },
    /// The peer belongs to another cluster.
    Cluster {
        /// The peer's cluster.
        peer: u64,
        /// This node's.
        own: u64,
    },
    /// The peer claims this node's id.
    OwnNodeId {
        /// The id.
        node: NodeId,
    },
    /// The peer is not a configured peer.
    UnknownNode {
        /// The id it claims.
        node: NodeId,
    },
    /// The node that answered is not the node dialed.
    WrongPeer {
        /// The node dialed.
        dialed: NodeId,
        /// The node that answered.
        answered: NodeId,
    },
    /// The peer is another shard.
    Shard {
        /// The peer's shard.
        peer: u16,
        /// This shard.
        own: u16,
    },
    /// This node has a key, the peer does not authenticate.
    PeerWithoutKey {
        /// The peer.
        node: NodeId,
    },
    /// The peer authenticates, this node has no key.
    PeerWithKey {
        /// The peer.
        node: NodeId,
    },
    /// The dialer's second frame is not a proof.
    ProofNotAProof {
        /// Its kind.
        kind: &'static str,
    },
    /// The dialer's second frame does not decode.
    ProofMalformed(DecodeError),
    /// The dialer's proof does not verify.
    DialerProof {
        /// The node the dialer claims to be.
        node: NodeId,
    },
    /// The acceptor's proof does not verify.
    AcceptorProof {
        /// The node dialed.
        node: NodeId,
        /// Its address.
        addr: SocketAddr,
    },
    /// The (authenticated) peer has another shard count.
    ShardCount {
        /// The peer.
        node: NodeId,
        /// The peer's shard count.
        peer: u16,
        /// This node's.
        own: u16,
    },
    /// The (authenticated) peer has another view of the layout.
    Layout {
        /// The peer.
        node: NodeId,
        /// The peer's layout.
        peer: BTreeMap<NodeId, SocketAddr>,
        /// This node's.
        own: BTreeMap<NodeId, SocketAddr>,
    },
}

impl Refusal {
    /// The name of the refusal, as counted in `NetCounters::closes`.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed handshake",
            Refusal::NotFirst { .. } => "handshake not first",
            Refusal::ProtocolVersion { .. } => "protocol version mismatch",
            Refusal::Cluster { .. } => "cluster mismatch",
            Refusal::OwnNodeId { .. } => "own node id",
            Refusal::UnknownNode { .. } => "unknown node",
            Refusal::WrongPeer { .. } => "wrong peer",
            Refusal::Shard { .. } => "shard mismatch",
            Refusal::PeerWithoutKey { .. } | Refusal::PeerWithKey { .. } => {
                "authentication mismatch"
            }
            Refusal::ProofNotAProof { .. }
            | Refusal::ProofMalformed(_)
            | Refusal::DialerProof { .. }
            | Refusal::AcceptorProof { .. } => "bad proof",
            Refusal::ShardCount { .. } => "shard count mismatch",
            Refusal::Layout { .. } => "layout mismatch",
        }
    }
}

fn show(layout: &BTreeMap<NodeId, SocketAddr>) -> String {
    layout
        .iter()
        .map(|(n, a)| format!("{}={a}", n.0))
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Malformed(error) | Refusal::ProofMalformed(error) => write!(f, "{error}"),
            Refusal::NotFirst { kind } => write!(f, "first frame is a {kind}"),
            Refusal::ProtocolVersion { peer } => {
                write!(f, "peer speaks {peer}, this build {PROTOCOL_VERSION}")
            }
            Refusal::Cluster { peer, own } => write!(f, "peer cluster {peer}, own {own}"),
            Refusal::OwnNodeId { node } => write!(f, "peer claims this node's id {}", node.0),
            Refusal::UnknownNode { node } => write!(f, "node {} is not a configured peer", node.0),
            Refusal::WrongPeer { dialed, answered } => write!(
                f,
                "dialed node {}, answered by node {}",
                dialed.0, answered.0
            ),
            Refusal::Shard { peer, own } => write!(f, "peer shard {peer}, own {own}"),
            Refusal::PeerWithoutKey { node } => write!(
                f,
                "peer node {} does not authenticate, this node has a key",
                node.0
            ),
            Refusal::PeerWithKey { node } => write!(
                f,
                "peer node {} authenticates with a key, this node has none",
                node.0
            ),
            Refusal::ProofNotAProof { kind } => write!(f, "second frame is a {kind}"),
            Refusal::DialerProof { node } => {
                write!(f, "claimed node {}: the proof does not verify", node.0)
            }
            Refusal::AcceptorProof { node, addr } => {
                write!(f, "node {} at {addr}: the proof does not verify", node.0)
            }
            Refusal::ShardCount { node, peer, own } => {
                write!(f, "peer node {} has {peer} shards, this node {own}", node.0)
            }
            Refusal::Layout { node, peer, own } => write!(
                f,
                "peer node {} has nodes {}, this node {}",
                node.0,
                show(peer),
                show(own)
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// This node's handshake, with `nonce` and `proof` when keyed.
fn own_handshake(own: &NetConfig, nonce: Option<Nonce>, proof: Option<Proof>) -> Handshake {
    Handshake {
        protocol_version: PROTOCOL_VERSION,
        cluster: own.cluster,
        node: own.node,
        shard: own.shard,
        shards: own.shards,
        layout: own.layout.iter().map(|(n, a)| (*n, *a)).collect(),
        nonce,
        proof,
    }
}

/// The dialer's first frame body: this node's handshake with its fresh `nonce`
/// (`Some` exactly when it has a key).
#[must_use]
pub fn hello(own: &NetConfig, nonce: Option<Nonce>) -> Handshake {
    assert_eq!(
        nonce.is_some(),
        own.key.is_some(),
        "a hello carries a nonce exactly when keyed"
    );
    own_handshake(own, nonce, None)
}

/// Decodes `frame` as a peer's handshake and checks its identities and whether it
/// authenticates as this node does; `dialed` is the node a dialer expects (`None` on
/// the accepting side: any configured peer). The shard count and layout are checked
/// later, by [`check_layout`], once the peer proved the key.
fn check_identity(
    own: &NetConfig,
    frame: &[u8],
    dialed: Option<NodeId>,
) -> Result<Handshake, Refusal> {
    let h = match transport::decode(frame, &own.limits).map_err(Refusal::Malformed)? {
        FrameBody::Handshake(h) => h,
        other => return Err(Refusal::NotFirst { kind: other.kind() }),
    };
    if h.protocol_version != PROTOCOL_VERSION {
        return Err(Refusal::ProtocolVersion {
            peer: h.protocol_version,
        });
    }
    if h.cluster != own.cluster {
        return Err(Refusal::Cluster {
            peer: h.cluster,
            own: own.cluster,
        });
    }
    if h.node == own.node {
        return Err(Refusal::OwnNodeId { node: h.node });
    }
    if !own.peers.contains_key(&h.node) {
        return Err(Refusal::UnknownNode { node: h.node });
    }
    if let Some(dialed) = dialed {
        if h.node != dialed {
            return Err(Refusal::WrongPeer {
                dialed,
                answered: h.node,
            });
        }
    }
    if h.shard != own.shard {
        return Err(Refusal::Shard {
            peer: h.shard,
            own: own.shard,
        });
    }
    // A dialer's hello carries a nonce; an acceptor's reply a nonce and a proof.
    let proof_expected = dialed.is_some();
    let keyed = h.nonce.is_some() && (h.proof.is_some() || !proof_expected);
    let keyless = h.nonce.is_none() && h.proof.is_none();
    match (&own.key, keyed, keyless) {
        (Some(_), true, _) | (None, _, true) => Ok(h),
        (Some(_), false, _) => Err(Refusal::PeerWithoutKey { node: h.node }),
        (None, _, false) => Err(Refusal::PeerWithKey { node: h.node }),
    }
}

/// Checks that the (authenticated) peer's shard count and layout are this node's.
///
/// # Errors
///
/// [`Refusal::ShardCount`] or [`Refusal::Layout`], with both sides' values.
pub fn check_layout(own: &NetConfig, h: &Handshake) -> Result<(), Refusal> {
    if h.shards != own.shards {
        return Err(Refusal::ShardCount {
            node: h.node,
            peer: h.shards,
            own: own.shards,
        });
    }
    let theirs: BTreeMap<NodeId, SocketAddr> = h.layout.iter().copied().collect();
    if theirs != own.layout {
        return Err(Refusal::Layout {
            node: h.node,
            peer: theirs,
            own: own.layout.clone(),
        });
    }
    Ok(())
}

/// The dialer's check of the acceptor's reply `frame` to the hello it sent to `dialed`
/// with `nonce`: identities, the acceptor's proof (when keyed), then the shard count
/// and layout. Returns the dialer's proof to send when keyed.
///
/// # Errors
///
/// The [`Refusal`]; nothing may then be sent on the connection.
pub fn check_reply(
    own: &NetConfig,
    dialed: NodeId,
    nonce: Option<Nonce>,
    frame: &[u8],
) -> Result<Option<HandshakeProof>, Refusal> {
    let reply = check_identity(own, frame, Some(dialed))?;
    let context = proof_context(own.cluster, own.node, dialed, own.shard);
    let proof = match (&own.key, nonce, reply.nonce, reply.proof) {
        (Some(key), Some(nonce), Some(their_nonce), Some(their_proof)) => {
            let nonces = [&nonce, &their_nonce];
            if !key.verify(PROOF_ROLE_ACCEPTOR, nonces, &context, &their_proof) {
                let addr = own
                    .peers
                    .get(&dialed)
                    .copied()
                    .ok_or(Refusal::UnknownNode { node: dialed })?;
                return Err(Refusal::AcceptorProof { node: dialed, addr });
            }
            Some(HandshakeProof {
                proof: key.prove(PROOF_ROLE_DIALER, nonces, &context),
            })
        }
        // check_identity refused a key on one side only.
        _ => None,
    };
    check_layout(own, &reply)?;
    Ok(proof)
}

/// A dialer's hello that passed [`check_hello`].
#[derive(Debug)]
pub struct Hello {
    hello: Handshake,
}

/// The acceptor's state after its reply: the dialer's proof is due (when keyed).
#[derive(Debug)]
pub struct AwaitProof {
    hello: Handshake,
    /// The dialer's nonce and this node's, when keyed.
    nonces: Option<(Nonce, Nonce)>,
}

/// The acceptor's check of the dialer's hello `frame`: identities, and that the dialer
/// authenticates exactly when this node has a key.
///
/// # Errors
///
/// The [`Refusal`]; the connection is then closed without a reply.
pub fn check_hello(own: &NetConfig, frame: &[u8]) -> Result<Hello, Refusal> {
    check_identity(own, frame, None).map(|hello| Hello { hello })
}

impl Hello {
    /// The node the dialer claims to be (not proved yet when keyed).
    #[must_use]
    pub fn node(&self) -> NodeId {
        self.hello.node
    }

    /// Whether the handshake is keyed: the acceptor then draws a fresh nonce for
    /// [`Hello::reply`].
    #[must_use]
    pub fn keyed(&self) -> bool {
        self.hello.nonce.is_some()
    }

    /// The acceptor's reply (with `nonce`, `Some` exactly when [`Hello::keyed`], and the
    /// acceptor's proof over both nonces), and the state that awaits the dialer's proof.
    #[must_use]
    pub fn reply(self, own: &NetConfig, nonce: Option<Nonce>) -> (Handshake, AwaitProof) {
        assert_eq!(
            nonce.is_some(),
            self.keyed(),
            "a reply carries a nonce exactly when keyed"
        );
        let context = proof_context(own.cluster, self.hello.node, own.node, own.shard);
        match (&own.key, self.hello.nonce, nonce) {
            (Some(key), Some(dialer_nonce), Some(nonce)) => {
                let proof = key.prove(PROOF_ROLE_ACCEPTOR, [&dialer_nonce, &nonce], &context);
                let reply = own_handshake(own, Some(nonce), Some(proof));
                let state = AwaitProof {
                    hello: self.hello,
                    nonces: Some((dialer_nonce, nonce)),
                };
                (reply, state)
            }
            // check_hello refused a key on one side only.
            _ => {
                let state = AwaitProof {
                    hello: self.hello,
                    nonces: None,
                };
                (own_handshake(own, None, None), state)
            }
        }
    }
}

impl AwaitProof {
    /// Whether the dialer's proof frame is due before [`AwaitProof::finish`].
    #[must_use]
    pub fn proof_expected(&self) -> bool {
        self.nonces.is_some()
    }

    /// Checks the dialer's proof `frame` (`Some` exactly when
    /// [`AwaitProof::proof_expected`]), then the shard count and layout; returns the
    /// authenticated peer.
    ///
    /// # Errors
    ///
    /// The [`Refusal`]; the connection is then closed.
    pub fn finish(self, own: &NetConfig, frame: Option<&[u8]>) -> Result<NodeId, Refusal> {
        assert_eq!(
            frame.is_some(),
            self.proof_expected(),
            "a proof frame is checked exactly when keyed"
        );
        if let (Some(key), Some((dialer_nonce, nonce)), Some(frame)) =
            (&own.key, self.nonces, frame)
        {
            let proof = match transport::decode(frame, &own.limits) {
                Ok(FrameBody::HandshakeProof(p)) => p.proof,
                Ok(other) => return Err(Refusal::ProofNotAProof { kind: other.kind() }),
                Err(error) => return Err(Refusal::ProofMalformed(error)),
            };
            let context = proof_context(own.cluster, self.hello.node, own.node, own.shard);
            if !key.verify(PROOF_ROLE_DIALER, [&dialer_nonce, &nonce], &context, &proof) {
                return Err(Refusal::DialerProof {
                    node: self.hello.node,
                });
            }
        }
        check_layout(own, &self.hello)?;
        Ok(self.hello.node)
    }
}

#[cfg(test)]
mod tests;
