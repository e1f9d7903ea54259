//! Transport: the peer wire format (flatbuffers, `schema/wire.fbs`), its codec and the
//! length-prefixed framing of TCP streams.
//!
//! Invariants: every byte from a peer is untrusted. Every decode checks the frame size
//! first, then runs the flatbuffers verifier with options derived from
//! [`DecodeLimits`], then validates the semantics the verifier cannot see (enum values,
//! ranges, counts, sizes). Decoding never panics and never allocates more than the
//! limits allow, whatever the input.
//!
//! Layout of one TCP stream: `[u32 LE size][Frame flatbuffer]` repeated
//! ([`frame`]), where each `Frame` holds one [`FrameBody`].

pub mod auth;
pub mod batch;
pub mod codec;
pub mod error;
pub mod frame;
pub mod limits;
pub mod wire;

pub use codec::{
    decode, decode_catch_up_stream, decode_checkpoint_chunk, decode_frame, decode_handshake,
    decode_handshake_proof, decode_heartbeat_ack_batch, decode_heartbeat_batch, encode,
    encode_catch_up_stream, encode_checkpoint_chunk, encode_frame, encode_handshake,
    encode_heartbeat_ack_batch, encode_heartbeat_batch, Encoder,
};
pub use error::DecodeError;
pub use frame::{append_frame, append_frame_with, split_frame, FrameError, FRAME_HEADER_SIZE};
pub use limits::DecodeLimits;
pub use wire::{
    CatchUpStream, CheckpointChunk, FrameBody, GroupHeartbeat, GroupHeartbeatAck, Handshake,
    HandshakeProof, HeartbeatAckBatch, HeartbeatBatch, PROTOCOL_VERSION,
};
