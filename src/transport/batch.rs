//! The batch packer of one peer link: the messages a shard has for one peer become
//! length-prefixed frames ([`Packer::pack`]), and a received frame becomes messages
//! again ([`unpack`]). Pure: messages and bytes in, bytes and messages out; the link
//! only writes and reads them.
//!
//! Packing, per call: every message but heartbeats and heartbeat acks goes into
//! `MessageBatch` frames, in order; the heartbeats of every group into `HeartbeatBatch`
//! frames and the acks into `HeartbeatAckBatch` frames, so that 10k groups cost one
//! frame per call, not 10k messages. Frame order: messages, then heartbeats, then acks
//! (their relative order is not kept; Paxos tolerates reordering).
//!
//! Invariants:
//! - every frame appended is at most `frame_size_max` bytes (header excluded) and
//!   holds at most `messages_max` messages or `heartbeats_max` heartbeats or acks, so
//!   a receiver with the same `DecodeLimits` accepts it; a frame over the size bound is
//!   split in halves, and a message that alone exceeds it is dropped and counted;
//! - a frame is appended only while the buffer holds fewer than `queue_size_max`
//!   bytes, so the buffer never exceeds `queue_size_max` plus one frame; the messages
//!   left when it is full are dropped and counted;
//! - every message of a call is accounted for exactly once: packed, dropped because the
//!   buffer was full, or dropped because it alone exceeds `frame_size_max`;
//! - [`unpack`] yields a frame's messages whole or not at all, each with the
//!   connection's `from` and `to`;
//! - once warmed up, packing allocates nothing per message: the encoder and the
//!   heartbeat scratch are reused.

use std::fmt;

use super::codec::Encoder;
use super::frame::{append_frame_with, FrameError};
use super::limits::DecodeLimits;
use super::wire::{
    FrameBody, GroupHeartbeat, GroupHeartbeatAck, HeartbeatAckBatch, HeartbeatBatch,
};
use crate::paxos::{Message, MessageBody, NodeId};

/// What one [`Packer::pack`] call appended and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Packed {
    /// Frames appended.
    pub frames: u64,
    /// Messages in those frames (each heartbeat or ack of a batch counts as one).
    pub messages: u64,
    /// Messages dropped because the buffer held `queue_size_max` bytes.
    pub dropped_queue_full: u64,
    /// The encoded size of each message dropped because alone it exceeds
    /// `frame_size_max` (one entry per message; empty unless one was that large).
    pub dropped_too_large: Vec<usize>,
}

/// Packs one peer's messages into frames. Keeps its encoder and scratch between calls.
pub struct Packer {
    encoder: Encoder,
    /// The heartbeats of one call, then one frame's worth of them.
    heartbeats: Vec<GroupHeartbeat>,
    heartbeat_batch: HeartbeatBatch,
    /// The acks of one call, then one frame's worth of them.
    acks: Vec<GroupHeartbeatAck>,
    ack_batch: HeartbeatAckBatch,
}

impl fmt::Debug for Packer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packer").finish_non_exhaustive()
    }
}

impl Default for Packer {
    fn default() -> Packer {
        Packer::new()
    }
}

impl Packer {
    /// A packer with empty buffers (they grow to the largest call packed).
    #[must_use]
    pub fn new() -> Packer {
        Packer {
            encoder: Encoder::new(),
            heartbeats: Vec::new(),
            heartbeat_batch: HeartbeatBatch {
                from: NodeId(0),
                to: NodeId(0),
                heartbeats: Vec::new(),
            },
            acks: Vec::new(),
            ack_batch: HeartbeatAckBatch {
                from: NodeId(0),
                to: NodeId(0),
                acks: Vec::new(),
            },
        }
    }

    /// Appends `messages` (all from `from` to `to`) to `out` as frames, each with its
    /// size header, within `limits` (`frame_size_max`, `messages_max`,
    /// `heartbeats_max`) and while `out` holds fewer than `queue_size_max` bytes (see
    /// the module docs for the frame order and what is dropped).
    pub fn pack(
        &mut self,
        from: NodeId,
        to: NodeId,
        messages: &[Message],
        limits: &DecodeLimits,
        queue_size_max: usize,
        out: &mut Vec<u8>,
    ) -> Packed {
        let mut packed = Packed::default();
        let encoder = &mut self.encoder;
        let bounds = |chunk_max| Bounds {
            chunk_max,
            frame_size_max: limits.frame_size_max,
            queue_size_max,
        };

        pack_runs(
            &mut packed,
            out,
            messages,
            is_batched,
            bounds(limits.messages_max),
            |chunk, out| encoder.encode_frame_of(chunk.iter().filter(|m| is_batched(m)), out),
        );

        let (heartbeats, acks) = (&mut self.heartbeat_batch, &mut self.ack_batch);
        (heartbeats.from, heartbeats.to, acks.from, acks.to) = (from, to, from, to);
        let per_group = bounds(limits.heartbeats_max);
        self.heartbeats.clear();
        self.heartbeats
            .extend(messages.iter().filter_map(heartbeat_of));
        pack_runs(
            &mut packed,
            out,
            &self.heartbeats,
            |_| true,
            per_group,
            |chunk, out| {
                heartbeats.heartbeats.clear();
                heartbeats.heartbeats.extend_from_slice(chunk);
                encoder.encode_heartbeat_batch(heartbeats, out);
            },
        );
        self.acks.clear();
        self.acks.extend(messages.iter().filter_map(ack_of));
        pack_runs(
            &mut packed,
            out,
            &self.acks,
            |_| true,
            per_group,
            |chunk, out| {
                acks.acks.clear();
                acks.acks.extend_from_slice(chunk);
                encoder.encode_heartbeat_ack_batch(acks, out);
            },
        );
        packed
    }
}

/// Whether a message travels in a `MessageBatch` (everything but heartbeats and acks).
#[must_use]
pub fn is_batched(m: &Message) -> bool {
    match m.body {
        MessageBody::Heartbeat { .. } | MessageBody::HeartbeatAck { .. } => false,
        MessageBody::Prepare { .. }
        | MessageBody::Promise { .. }
        | MessageBody::Reject { .. }
        | MessageBody::Accept { .. }
        | MessageBody::Accepted { .. }
        | MessageBody::CatchUpRequest { .. }
        | MessageBody::CatchUpChunk { .. }
        | MessageBody::CatchUpRaw { .. }
        | MessageBody::CheckpointRequest { .. }
        | MessageBody::CheckpointChunk { .. }
        | MessageBody::Handover { .. }
        | MessageBody::PreVote { .. }
        | MessageBody::PreVoteReply { .. } => true,
    }
}

/// `m` as an item of a `HeartbeatBatch`, if it is a heartbeat.
fn heartbeat_of(m: &Message) -> Option<GroupHeartbeat> {
    match m.body {
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
    }
}

/// `m` as an item of a `HeartbeatAckBatch`, if it is a heartbeat ack.
fn ack_of(m: &Message) -> Option<GroupHeartbeatAck> {
    match m.body {
        MessageBody::HeartbeatAck { ballot, sent_at } => Some(GroupHeartbeatAck {
            group: m.group,
            ballot,
            sent_at,
        }),
        _ => None,
    }
}

/// The bounds of one [`pack_runs`] call.
#[derive(Clone, Copy)]
struct Bounds {
    /// Most items of the input slice per frame.
    chunk_max: usize,
    frame_size_max: usize,
    queue_size_max: usize,
}

/// Appends the items of `items` that `select` picks as frames of at most `chunk_max`
/// consecutive items of `items` each (so order is kept), halving a run whose frame
/// exceeds `frame_size_max`. Stops appending, dropping the rest, once `out` holds
/// `queue_size_max` bytes.
fn pack_runs<T>(
    packed: &mut Packed,
    out: &mut Vec<u8>,
    items: &[T],
    select: impl Fn(&T) -> bool,
    bounds: Bounds,
    mut encode: impl FnMut(&[T], &mut Vec<u8>),
) {
    let mut start = 0;
    let mut span = bounds.chunk_max;
    while start < items.len() {
        if out.len() >= bounds.queue_size_max {
            let rest = items[start..].iter().filter(|item| select(item)).count();
            packed.dropped_queue_full += rest as u64;
            return;
        }
        let end = items.len().min(start + span);
        let chunk = &items[start..end];
        let count = chunk.iter().filter(|item| select(item)).count();
        if count == 0 {
            start = end;
            continue;
        }
        match append_frame_with(out, bounds.frame_size_max, |out| encode(chunk, out)) {
            Ok(()) => {
                packed.frames += 1;
                packed.messages += count as u64;
                start = end;
            }
            Err(FrameError::TooLarge { .. }) if count > 1 => span = (end - start) / 2,
            Err(FrameError::TooLarge { size, .. }) => {
                packed.dropped_too_large.push(size);
                start = end;
            }
        }
    }
}

/// Why [`unpack`] refused a frame (whole: nothing of it was yielded).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnpackError {
    /// A message (or batch) whose sender or receiver is not the connection's.
    Forged {
        /// The sender it names.
        from: NodeId,
        /// The receiver it names.
        to: NodeId,
    },
    /// A handshake frame after the handshake.
    UnexpectedHandshake {
        /// The frame body's kind.
        kind: &'static str,
    },
    /// A frame body the links do not handle yet (catch-up streaming, checkpoint
    /// chunks): refused rather than silently ignored.
    Unsupported {
        /// The frame body's kind.
        kind: &'static str,
    },
}

impl fmt::Display for UnpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnpackError::Forged { from, to } => write!(f, "message from {} to {}", from.0, to.0),
            UnpackError::UnexpectedHandshake { kind } => write!(f, "unexpected {kind}"),
            UnpackError::Unsupported { kind } => write!(f, "unsupported {kind}"),
        }
    }
}

impl std::error::Error for UnpackError {}

/// Appends the messages of `body`, received on the connection from `from` to `to`, to
/// `out` (heartbeat and ack batches expanded back into per-group messages), and
/// returns how many. Every message is checked BEFORE any is appended.
///
/// # Errors
///
/// [`UnpackError`] when `body` names another sender or receiver, or is not a body of
/// messages; `out` is then unchanged.
pub fn unpack(
    body: FrameBody,
    from: NodeId,
    to: NodeId,
    out: &mut Vec<Message>,
) -> Result<usize, UnpackError> {
    let forged = |f: NodeId, t: NodeId| UnpackError::Forged { from: f, to: t };
    let before = out.len();
    match body {
        FrameBody::MessageBatch(messages) => {
            if let Some(m) = messages.iter().find(|m| m.from != from || m.to != to) {
                return Err(forged(m.from, m.to));
            }
            out.extend(messages);
        }
        FrameBody::HeartbeatBatch(batch) => {
            if batch.from != from || batch.to != to {
                return Err(forged(batch.from, batch.to));
            }
            out.extend(batch.heartbeats.iter().map(|h| Message {
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
            if batch.from != from || batch.to != to {
                return Err(forged(batch.from, batch.to));
            }
            out.extend(batch.acks.iter().map(|a| Message {
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
            return Err(UnpackError::UnexpectedHandshake { kind: body.kind() });
        }
        FrameBody::CatchUpStream(_) | FrameBody::CheckpointChunk(_) => {
            return Err(UnpackError::Unsupported { kind: body.kind() });
        }
    }
    Ok(out.len() - before)
}

#[cfg(test)]
mod tests;
