//! The flatbuffers codec of every frame body (`schema/wire.fbs`): Rust values in, one
//! `Frame` flatbuffer out, and back.
//!
//! Invariants:
//! - Encoding is infallible for values the protocol produces; it appends exactly one
//!   `Frame` flatbuffer (no length header: see [`super::frame`]) to `out`.
//! - EVERY decode, in this order: frame size <= `frame_size_max`; file identifier
//!   `SYNW`; the flatbuffers verifier with [`DecodeLimits::verifier_options`]; then the
//!   semantic checks the verifier cannot make (known union and enum values, counts and
//!   sizes within limits, instances >= 1, ranges ascending and disjoint, memberships
//!   non-empty and ascending, payload not aliased). Any failure refuses the whole frame
//!   with a typed [`DecodeError`]; no input makes decoding panic.
//! - `decode(encode(x)) == x` for every value the protocol can produce within limits.

mod decode;
mod encode;

use super::error::DecodeError;
use super::limits::DecodeLimits;
use super::wire::{
    CatchUpStream, CheckpointChunk, FrameBody, Handshake, HandshakeProof, HeartbeatAckBatch,
    HeartbeatBatch,
};
use crate::paxos::Message;
use flatbuffers::FlatBufferBuilder;
use std::fmt;

/// A reusable encoder: keeps its flatbuffers builder and scratch vectors between
/// frames, so that a peer link encodes without allocating once warmed up.
#[derive(Default)]
pub struct Encoder {
    fbb: FlatBufferBuilder<'static>,
    scratch: encode::Scratch,
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("scratch", &self.scratch)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// An encoder with empty buffers (they grow to the largest frame encoded).
    #[must_use]
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Appends one `Frame` holding `body` to `out`.
    pub fn encode(&mut self, body: &FrameBody, out: &mut Vec<u8>) {
        match body {
            FrameBody::MessageBatch(messages) => self.encode_frame(messages, out),
            FrameBody::HeartbeatBatch(batch) => self.encode_heartbeat_batch(batch, out),
            FrameBody::HeartbeatAckBatch(batch) => self.encode_heartbeat_ack_batch(batch, out),
            FrameBody::Handshake(handshake) => self.encode_handshake(handshake, out),
            FrameBody::CatchUpStream(stream) => self.encode_catch_up_stream(stream, out),
            FrameBody::CheckpointChunk(chunk) => self.encode_checkpoint_chunk(chunk, out),
            FrameBody::HandshakeProof(proof) => self.encode_handshake_proof(proof, out),
        }
    }

    /// Appends one `Frame` holding a `MessageBatch` of `messages` to `out`.
    pub fn encode_frame(&mut self, messages: &[Message], out: &mut Vec<u8>) {
        self.fbb.reset();
        encode::message_batch(&mut self.fbb, &mut self.scratch, messages);
        out.extend_from_slice(self.fbb.finished_data());
    }

    /// Appends one `Frame` holding a `MessageBatch` of the messages `messages` yields,
    /// in order: lets a link pick some messages out of a larger list (e.g. all but the
    /// heartbeats) without copying them.
    pub fn encode_frame_of<'m>(
        &mut self,
        messages: impl IntoIterator<Item = &'m Message>,
        out: &mut Vec<u8>,
    ) {
        self.fbb.reset();
        encode::message_batch(&mut self.fbb, &mut self.scratch, messages);
        out.extend_from_slice(self.fbb.finished_data());
    }

    /// Appends one `Frame` holding `batch` to `out`.
    pub fn encode_heartbeat_batch(&mut self, batch: &HeartbeatBatch, out: &mut Vec<u8>) {
        self.fbb.reset();
        encode::heartbeat_batch(&mut self.fbb, batch);
        out.extend_from_slice(self.fbb.finished_data());
    }

    /// Appends one `Frame` holding `batch` to `out`.
    pub fn encode_heartbeat_ack_batch(&mut self, batch: &HeartbeatAckBatch, out: &mut Vec<u8>) {
        self.fbb.reset();
        encode::heartbeat_ack_batch(&mut self.fbb, batch);
        out.extend_from_slice(self.fbb.finished_data());
    }

    /// Appends one `Frame` holding `handshake` to `out`.
    pub fn encode_handshake(&mut self, handshake: &Handshake, out: &mut Vec<u8>) {
        self.fbb.reset();
        encode::handshake(&mut self.fbb, handshake);
        out.extend_from_slice(self.fbb.finished_data());
    }

    /// Appends one `Frame` holding `proof` to `out`.
    pub fn encode_handshake_proof(&mut self, proof: &HandshakeProof, out: &mut Vec<u8>) {
        self.fbb.reset();
        encode::handshake_proof(&mut self.fbb, proof);
        out.extend_from_slice(self.fbb.finished_data());
    }

    /// Appends one `Frame` holding `stream` to `out` (copies `records` once, into the
    /// builder).
    pub fn encode_catch_up_stream(&mut self, stream: &CatchUpStream, out: &mut Vec<u8>) {
        self.fbb.reset();
        encode::catch_up_stream(&mut self.fbb, stream);
        out.extend_from_slice(self.fbb.finished_data());
    }

    /// Appends one `Frame` holding `chunk` to `out`.
    pub fn encode_checkpoint_chunk(&mut self, chunk: &CheckpointChunk, out: &mut Vec<u8>) {
        self.fbb.reset();
        encode::checkpoint_chunk(&mut self.fbb, chunk);
        out.extend_from_slice(self.fbb.finished_data());
    }
}

/// Appends one `Frame` holding `body` to `out`. Panics only if the frame would exceed
/// the 2 GiB flatbuffers maximum (a programmer error: frames are bounded by
/// `frame_size_max` long before). Prefer a reused [`Encoder`] on hot paths.
pub fn encode(body: &FrameBody, out: &mut Vec<u8>) {
    Encoder::new().encode(body, out);
}

/// Appends one `Frame` holding a `MessageBatch` of `messages` (to one peer, sent in one
/// write) to `out`. Panics only past the 2 GiB flatbuffers maximum.
pub fn encode_frame(messages: &[Message], out: &mut Vec<u8>) {
    Encoder::new().encode_frame(messages, out);
}

/// Appends one `Frame` holding `batch` to `out`.
pub fn encode_heartbeat_batch(batch: &HeartbeatBatch, out: &mut Vec<u8>) {
    Encoder::new().encode_heartbeat_batch(batch, out);
}

/// Appends one `Frame` holding `batch` to `out`.
pub fn encode_heartbeat_ack_batch(batch: &HeartbeatAckBatch, out: &mut Vec<u8>) {
    Encoder::new().encode_heartbeat_ack_batch(batch, out);
}

/// Appends one `Frame` holding `handshake` to `out`.
pub fn encode_handshake(handshake: &Handshake, out: &mut Vec<u8>) {
    Encoder::new().encode_handshake(handshake, out);
}

/// Appends one `Frame` holding `stream` to `out`.
pub fn encode_catch_up_stream(stream: &CatchUpStream, out: &mut Vec<u8>) {
    Encoder::new().encode_catch_up_stream(stream, out);
}

/// Appends one `Frame` holding `chunk` to `out`.
pub fn encode_checkpoint_chunk(chunk: &CheckpointChunk, out: &mut Vec<u8>) {
    Encoder::new().encode_checkpoint_chunk(chunk, out);
}

/// Decodes one `Frame` of any body (`bytes` without the u32 length header). The link
/// reader uses this and dispatches on the body.
///
/// Values, records and checkpoint data are copied out of `bytes` into `Bytes`. Zero
/// copy could come later by taking `bytes: &Bytes` and returning `bytes.slice_ref(..)`
/// of the verified vectors (in `decode::Decoder::bytes`), once the link reads into
/// `Bytes` buffers.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<FrameBody, DecodeError> {
    decode::Decoder::new(bytes, limits)?.any()
}

/// Decodes one `Frame` that must hold a `MessageBatch`; another body is
/// [`DecodeError::UnexpectedFrameBody`].
///
/// # Errors
///
/// As [`decode`], plus `UnexpectedFrameBody` when the frame holds another body.
pub fn decode_frame(bytes: &[u8], limits: &DecodeLimits) -> Result<Vec<Message>, DecodeError> {
    decode::Decoder::new(bytes, limits)?.message_batch()
}

/// Decodes one `Frame` that must hold a `HeartbeatBatch`.
///
/// # Errors
///
/// As [`decode`], plus `UnexpectedFrameBody` when the frame holds another body.
pub fn decode_heartbeat_batch(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<HeartbeatBatch, DecodeError> {
    decode::Decoder::new(bytes, limits)?.heartbeat_batch()
}

/// Decodes one `Frame` that must hold a `HeartbeatAckBatch`.
///
/// # Errors
///
/// As [`decode`], plus `UnexpectedFrameBody` when the frame holds another body.
pub fn decode_heartbeat_ack_batch(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<HeartbeatAckBatch, DecodeError> {
    decode::Decoder::new(bytes, limits)?.heartbeat_ack_batch()
}

/// Decodes one `Frame` that must hold a `Handshake`. Checking the version and cluster
/// is the caller's decision.
///
/// # Errors
///
/// As [`decode`], plus `UnexpectedFrameBody` when the frame holds another body.
pub fn decode_handshake(bytes: &[u8], limits: &DecodeLimits) -> Result<Handshake, DecodeError> {
    decode::Decoder::new(bytes, limits)?.handshake()
}

/// Decodes one `Frame` that must hold a `HandshakeProof`.
///
/// # Errors
///
/// As [`decode`], plus `UnexpectedFrameBody` when the frame holds another body.
pub fn decode_handshake_proof(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<HandshakeProof, DecodeError> {
    decode::Decoder::new(bytes, limits)?.handshake_proof()
}

/// Decodes one `Frame` that must hold a `CatchUpStream`. The records are copied out
/// as opaque bytes; the WAL verifies each record's CRC32C before appending it.
///
/// # Errors
///
/// As [`decode`], plus `UnexpectedFrameBody` when the frame holds another body.
pub fn decode_catch_up_stream(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<CatchUpStream, DecodeError> {
    decode::Decoder::new(bytes, limits)?.catch_up_stream()
}

/// Decodes one `Frame` that must hold a `CheckpointChunk`.
///
/// # Errors
///
/// As [`decode`], plus `UnexpectedFrameBody` when the frame holds another body.
pub fn decode_checkpoint_chunk(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<CheckpointChunk, DecodeError> {
    decode::Decoder::new(bytes, limits)?.checkpoint_chunk()
}
