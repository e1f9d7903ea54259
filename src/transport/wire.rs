//! The Rust forms of the frame bodies that exist only on the wire (heartbeat batches,
//! the handshake, catch-up streaming, checkpoint chunks); peer messages themselves are
//! `paxos::Message`.
//!
//! Field names are the schema's (`schema/wire.fbs`), one name per concept. These are
//! plain values: the codec validates them on decode, the runtime decides what they mean.

use super::auth::{Nonce, Proof};
use crate::paxos::{Ballot, GroupId, Instance, Lsn, Message, Nanos, NodeId};
use bytes::Bytes;
use std::net::SocketAddr;

/// The wire protocol version this build speaks, sent in every [`Handshake`]. Version 2
/// added the handshake's shard count, layout, nonce and proof, and [`HandshakeProof`];
/// version 3 the leadership messages `Handover`, `PreVote` and `PreVoteReply`.
pub const PROTOCOL_VERSION: u16 = 3;

/// The contents of one frame: exactly one of these per length-prefixed TCP frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameBody {
    /// Messages of any groups, sent to one peer in one write.
    MessageBatch(Vec<Message>),
    /// The heartbeats of many groups toward one peer.
    HeartbeatBatch(HeartbeatBatch),
    /// The heartbeat acks of many groups toward one peer.
    HeartbeatAckBatch(HeartbeatAckBatch),
    /// The first frame on every connection, in both directions.
    Handshake(Handshake),
    /// Raw WAL records of one group, streamed to a lagging replica.
    CatchUpStream(CatchUpStream),
    /// A piece of one group's checkpoint.
    CheckpointChunk(CheckpointChunk),
    /// The dialer's proof of the key, its second frame on an authenticated connection.
    HandshakeProof(HandshakeProof),
}

impl FrameBody {
    /// The schema name of this body, for logs, counters and errors.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            FrameBody::MessageBatch(_) => "MessageBatch",
            FrameBody::HeartbeatBatch(_) => "HeartbeatBatch",
            FrameBody::HeartbeatAckBatch(_) => "HeartbeatAckBatch",
            FrameBody::Handshake(_) => "Handshake",
            FrameBody::CatchUpStream(_) => "CatchUpStream",
            FrameBody::CheckpointChunk(_) => "CheckpointChunk",
            FrameBody::HandshakeProof(_) => "HandshakeProof",
        }
    }
}

/// One group's heartbeat inside a [`HeartbeatBatch`]: the fields of
/// `MessageBody::Heartbeat` plus the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupHeartbeat {
    /// The group.
    pub group: GroupId,
    /// The leader's ballot.
    pub ballot: Ballot,
    /// The leader's chosen watermark (inclusive).
    pub chosen_through: Instance,
    /// Leader's clock when sent; echoed back for lease accounting.
    pub sent_at: Nanos,
    /// Instance the checksum covers (inclusive; 0 = none).
    pub checksum_through: Instance,
    /// Running CRC32C over chosen entries through `checksum_through`.
    pub checksum: u32,
}

/// The heartbeats of every group a shard leads toward one peer, merged so that 10k
/// groups cost one frame per interval, not 10k messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatBatch {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// One heartbeat per group.
    pub heartbeats: Vec<GroupHeartbeat>,
}

/// One group's heartbeat ack inside a [`HeartbeatAckBatch`]: the fields of
/// `MessageBody::HeartbeatAck` plus the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupHeartbeatAck {
    /// The group.
    pub group: GroupId,
    /// The leader ballot the follower accepts.
    pub ballot: Ballot,
    /// Echo of the heartbeat's `sent_at`.
    pub sent_at: Nanos,
}

/// The heartbeat acks of many groups toward one peer, merged into one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatAckBatch {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// One ack per group.
    pub acks: Vec<GroupHeartbeatAck>,
}

/// The first frame on every connection, in both directions. The receiver closes the
/// connection when `cluster` or `protocol_version` differ from its own (the codec
/// only decodes; it does not decide).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The sender's wire protocol version ([`PROTOCOL_VERSION`]).
    pub protocol_version: u16,
    /// The cluster identifier, checked on every connection.
    pub cluster: u64,
    /// The sender's node, as configured.
    pub node: NodeId,
    /// The sender's shard (core) on that node.
    pub shard: u16,
    /// The sender's shard count: every node of a cluster must have the same.
    pub shards: u16,
    /// The sender's view of the cluster: every node (itself included) and its base
    /// address, strictly ascending by node (at most `DecodeLimits::voters_max`).
    pub layout: Vec<(NodeId, SocketAddr)>,
    /// The sender's fresh nonce: present exactly when it authenticates with a key.
    pub nonce: Option<Nonce>,
    /// The acceptor's proof of the key over both nonces (only in its reply).
    pub proof: Option<Proof>,
}

/// The dialer's proof of the key over both nonces: its second frame on an
/// authenticated connection, after the acceptor's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeProof {
    /// HMAC-SHA256 (`auth::AuthKey::prove`).
    pub proof: Proof,
}

/// Catch-up by streaming: WAL records of one group exactly as they lie on the
/// sender's disk (no re-encoding; the receiver verifies each record's CRC32C).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatchUpStream {
    /// The group.
    pub group: GroupId,
    /// The sender's LSN of the first record in `records` (>= 1).
    pub first_lsn: Lsn,
    /// Whole WAL records, byte for byte (layout: `schema/wal.md`). May be empty.
    pub records: Bytes,
    /// Flow control, in bytes of `records`. From the catching-up replica (usually
    /// with empty `records`): more bytes it grants the streaming peer, added to the
    /// credit the peer has left. From the streaming peer: 0.
    pub credit_size: u32,
    /// The sender's log salt: every record's CRC32C is seeded with it, so the receiver
    /// needs it to verify `records` before restamping them into its own log.
    pub salt: u32,
}

/// A piece of one group's checkpoint, streamed in order when the peer has truncated
/// its log below what the receiver asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointChunk {
    /// The group.
    pub group: GroupId,
    /// The checkpoint covers every instance through `instance` (inclusive, >= 1).
    pub instance: Instance,
    /// Byte offset of `data` within the checkpoint.
    pub offset: u64,
    /// Size of the whole checkpoint in bytes.
    pub total_size: u64,
    /// The bytes `[offset, offset + data.len())` of the checkpoint.
    pub data: Bytes,
    /// Whether this is the final chunk (`offset + data.len() == total_size`).
    pub last: bool,
}
