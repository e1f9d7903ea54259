//! The client protocol's messages as Rust values (`schema/client.fbs`), one variant
//! per union member of `ClientBody`.
//!
//! Invariant: every message a node or a client sends is one [`Body`]; a request's
//! answer carries the request's `request` id, and answers may come in any order.

use std::fmt;

use bytes::Bytes;

use crate::api::{Error, LogRead, MembershipChange, Position, ShardStatus};
use crate::paxos::{GroupId, Instance, NodeId};

/// The client protocol's version, sent in `Hello` and `Welcome`; a node refuses
/// another version. Version 2 added the authenticated handshake (`Hello.nonce`,
/// `Challenge`, `Proof`); version 3 a group's checkpoint and fence and a shard's WAL
/// watermarks and peer links in `StatusDone` (`GroupState` grew).
pub const PROTOCOL_VERSION: u16 = 3;

/// The role label of the client's proof (`transport::auth::AuthKey::prove`).
pub const CLIENT_ROLE: &str = "synod client";

/// The role label of the node's proof: another label than the client's, so that a
/// node's proof can never be replayed as a client's.
pub const NODE_ROLE: &str = "synod client listener";

/// The identities both proofs cover besides the nonces: the cluster id and the
/// protocol version, in this order, little-endian.
#[must_use]
pub fn proof_context(cluster: u64) -> [u8; 10] {
    let mut context = [0_u8; 10];
    context[..8].copy_from_slice(&cluster.to_le_bytes());
    context[8..].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    context
}

/// Why a node refused a request: `synod::api::Error`, variant by variant, as it
/// crosses the wire (a `Rejected` reason becomes an owned string).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerError {
    /// The node does not lead the group (nothing was proposed); `hint` is the leader
    /// it believes in.
    NotLeader {
        /// The believed leader, if any.
        hint: Option<NodeId>,
    },
    /// Too much is queued (nothing was proposed): back off and retry.
    Overloaded,
    /// The value is larger than the group's `value_size_max` (nothing was proposed).
    TooLarge {
        /// The value's size in bytes.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The node stopped; a proposal already handed to the group may or may not be
    /// chosen.
    Stopped,
    /// Leadership changed while the value was in flight: it may or may not be chosen.
    Indeterminate,
    /// The value was chosen after a newer leader started and will never be applied.
    Aborted,
    /// The node has no such group.
    NoSuchGroup {
        /// The group asked for.
        group: GroupId,
    },
    /// The node leads the group but cannot serve a linearizable read yet: retry.
    LeaseNotHeld,
    /// The request is not valid now.
    Rejected {
        /// Why.
        reason: String,
    },
    /// The log position asked for lies below what the node can read back (a
    /// checkpoint covers it).
    Truncated {
        /// The first instance the node can read.
        first_available: Instance,
    },
}

impl ServerError {
    /// Whether nothing was done, so that the request may be retried blindly
    /// (`NotLeader`, `LeaseNotHeld`, `Overloaded`, as `synod::api::Error`).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ServerError::NotLeader { .. } | ServerError::Overloaded | ServerError::LeaseNotHeld
        )
    }
}

/// The wire form of a node's error (`Rejected`'s reason becomes owned).
impl From<&Error> for ServerError {
    fn from(error: &Error) -> ServerError {
        match error {
            Error::NotLeader { hint } => ServerError::NotLeader { hint: *hint },
            Error::Overloaded => ServerError::Overloaded,
            Error::TooLarge { size, max } => ServerError::TooLarge {
                size: *size as u64,
                max: *max as u64,
            },
            Error::Stopped => ServerError::Stopped,
            Error::Indeterminate => ServerError::Indeterminate,
            Error::Aborted => ServerError::Aborted,
            Error::NoSuchGroup { group } => ServerError::NoSuchGroup { group: *group },
            Error::LeaseNotHeld => ServerError::LeaseNotHeld,
            Error::Rejected { reason } => ServerError::Rejected {
                reason: (*reason).to_string(),
            },
            Error::Truncated { first_available } => ServerError::Truncated {
                first_available: *first_available,
            },
            // No wildcard: a new `api::Error` variant must get its `ErrorKind` here.
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::NotLeader { hint: Some(node) } => {
                write!(f, "not the leader (leader is node {})", node.0)
            }
            ServerError::NotLeader { hint: None } => write!(f, "not the leader (none known)"),
            ServerError::Overloaded => write!(f, "overloaded: too many requests queued"),
            ServerError::TooLarge { size, max } => {
                write!(f, "value of {size} bytes exceeds value_size_max {max}")
            }
            ServerError::Stopped => write!(f, "the node stopped"),
            ServerError::Indeterminate => {
                write!(f, "leadership changed while in flight; outcome unknown")
            }
            ServerError::Aborted => {
                write!(f, "chosen after a newer leader started; never applied")
            }
            ServerError::NoSuchGroup { group } => write!(f, "no group {} on this node", group.0),
            ServerError::LeaseNotHeld => write!(f, "leader lease not held yet; retry"),
            ServerError::Rejected { reason } => write!(f, "rejected: {reason}"),
            ServerError::Truncated { first_available } => write!(
                f,
                "truncated: the log on this node starts at instance {}",
                first_available.0
            ),
        }
    }
}

impl std::error::Error for ServerError {}

/// One node's status: every shard's groups and counters (`ShardStatus::ignored` and
/// `thread_id` stay empty: they mean something only inside the node's process).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node that answered.
    pub node: NodeId,
    /// Its shards, in shard order.
    pub shards: Vec<ShardStatus>,
}

/// One message of the client protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Client -> node, first frame: the protocol version, the cluster id and the
    /// client's fresh nonce.
    Hello {
        /// [`PROTOCOL_VERSION`] of the client.
        protocol_version: u16,
        /// The cluster the client means to talk to.
        cluster: u64,
        /// The client's nonce (`transport::auth::NONCE_SIZE` bytes; may be empty when
        /// the node holds no client key).
        nonce: Bytes,
    },
    /// Node -> client, answer to a good `Hello` when the node holds a client key.
    Challenge {
        /// The node's fresh nonce.
        nonce: Bytes,
        /// The node's proof over both nonces (`transport::auth`).
        proof: Bytes,
    },
    /// Client -> node, answer to a `Challenge`.
    Proof {
        /// The client's proof over both nonces.
        proof: Bytes,
    },
    /// Node -> client, answer to a good `Hello`.
    Welcome {
        /// [`PROTOCOL_VERSION`] of the node.
        protocol_version: u16,
        /// The node's cluster.
        cluster: u64,
        /// The node's id.
        node: NodeId,
        /// Every node of the cluster, ascending.
        nodes: Vec<NodeId>,
        /// The client addresses the node knows ("IP:PORT"), its own at least.
        addresses: Vec<(NodeId, String)>,
    },
    /// Node -> client, just before the node closes the connection.
    Refused {
        /// Why.
        reason: String,
    },
    /// Replicate `value` in `group`.
    Propose {
        /// The client's id of the request.
        request: u64,
        /// The group.
        group: GroupId,
        /// The value.
        value: Bytes,
    },
    /// A linearizable read of `group`'s state machine.
    Read {
        /// The client's id of the request.
        request: u64,
        /// The group.
        group: GroupId,
        /// Passed to `StateMachine::query`.
        query: Bytes,
    },
    /// The node's groups and counters.
    Status {
        /// The client's id of the request.
        request: u64,
    },
    /// A read of `group`'s chosen log from `from`, at most `size_max` bytes of values
    /// (beyond the first).
    ReadLog {
        /// The client's id of the request.
        request: u64,
        /// The group.
        group: GroupId,
        /// The first position wanted.
        from: Position,
        /// Bytes of values wanted at most.
        size_max: u64,
    },
    /// A log read's answer.
    ReadLogDone {
        /// The request answered.
        request: u64,
        /// The values, the next position, the node's chosen watermark.
        read: LogRead,
    },
    /// Hand `group`'s leadership over to `to` (asked of its leader).
    TransferLeadership {
        /// The client's id of the request.
        request: u64,
        /// The group.
        group: GroupId,
        /// The node that is to lead.
        to: NodeId,
    },
    /// Change `group`'s voters by one (asked of its leader).
    ChangeMembership {
        /// The client's id of the request.
        request: u64,
        /// The group.
        group: GroupId,
        /// The change.
        change: MembershipChange,
    },
    /// A request without a result succeeded (`TransferLeadership`,
    /// `ChangeMembership`).
    Done {
        /// The request answered.
        request: u64,
    },
    /// A proposal was chosen and applied.
    ProposeDone {
        /// The request answered.
        request: u64,
        /// Where the value lies in the group's log.
        position: Position,
        /// The state machine's output.
        output: Bytes,
    },
    /// A read's answer.
    ReadDone {
        /// The request answered.
        request: u64,
        /// The state machine's answer.
        output: Bytes,
    },
    /// A request failed.
    Failed {
        /// The request answered.
        request: u64,
        /// Why.
        error: ServerError,
    },
    /// A status answer.
    StatusDone {
        /// The request answered.
        request: u64,
        /// The node's status.
        status: NodeStatus,
    },
}

impl Body {
    /// The schema name of the message (for logs and errors).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Body::Hello { .. } => "Hello",
            Body::Challenge { .. } => "Challenge",
            Body::Proof { .. } => "Proof",
            Body::Welcome { .. } => "Welcome",
            Body::Refused { .. } => "Refused",
            Body::Propose { .. } => "Propose",
            Body::Read { .. } => "Read",
            Body::Status { .. } => "Status",
            Body::ProposeDone { .. } => "ProposeDone",
            Body::ReadDone { .. } => "ReadDone",
            Body::Failed { .. } => "Failed",
            Body::StatusDone { .. } => "StatusDone",
            Body::ReadLog { .. } => "ReadLog",
            Body::ReadLogDone { .. } => "ReadLogDone",
            Body::TransferLeadership { .. } => "TransferLeadership",
            Body::ChangeMembership { .. } => "ChangeMembership",
            Body::Done { .. } => "Done",
        }
    }
}
