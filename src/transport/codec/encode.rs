//! Rust values to flatbuffers. Flatbuffers build bottom-up: children (values, entries,
//! bodies) are written before the tables that point to them.
//!
//! Invariant: every vector the schema marks as required is always written, and
//! `values` is written for every `Values` entry (even empty), so that decode gives back
//! exactly what was encoded.

use crate::paxos::{
    Ballot, Body, Entry, Instance, InstanceRange, Message, MessageBody, NodeId, PromisedEntry,
    RawRun,
};
use crate::transport::wire::{
    CatchUpStream, CheckpointChunk, Handshake, HandshakeProof, HeartbeatAckBatch, HeartbeatBatch,
};
use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use synod_wire as fb;

/// The builder every function writes into (reset by the caller).
type Fbb = FlatBufferBuilder<'static>;

/// Offsets collected before a vector of tables can be written; kept between frames.
#[derive(Default)]
pub(super) struct Scratch {
    messages: Vec<WIPOffset<fb::Message<'static>>>,
    entries: Vec<WIPOffset<fb::Entry<'static>>>,
    promised: Vec<WIPOffset<fb::PromisedEntry<'static>>>,
    values: Vec<WIPOffset<fb::Value<'static>>>,
    voters: Vec<u32>,
    pieces: Vec<WIPOffset<fb::RawPiece<'static>>>,
}

impl fmt::Debug for Scratch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scratch")
            .field("messages_capacity", &self.messages.capacity())
            .field("entries_capacity", &self.entries.capacity())
            .field("values_capacity", &self.values.capacity())
            .finish_non_exhaustive()
    }
}

fn ballot(b: Ballot) -> fb::Ballot {
    fb::Ballot::new(b.round, b.node.0)
}

fn finish(fbb: &mut Fbb, kind: fb::FrameBody, body: WIPOffset<UnionWIPOffset>) {
    let frame = fb::Frame::create(
        fbb,
        &fb::FrameArgs {
            body_type: kind,
            body: Some(body),
        },
    );
    fb::finish_frame_buffer(fbb, frame);
}

fn entry(fbb: &mut Fbb, scratch: &mut Scratch, e: &Entry) -> WIPOffset<fb::Entry<'static>> {
    let origin = ballot(e.origin);
    let (body_kind, values, voters) = match &e.body {
        Body::Values(values) => {
            scratch.values.clear();
            for value in values {
                let data = fbb.create_vector(value.as_ref());
                let offset = fb::Value::create(fbb, &fb::ValueArgs { data: Some(data) });
                scratch.values.push(offset);
            }
            let vector = fbb.create_vector(&scratch.values);
            (fb::BodyKind::Values, Some(vector), None)
        }
        Body::Noop => (fb::BodyKind::Noop, None, None),
        Body::StartWorking => (fb::BodyKind::StartWorking, None, None),
        Body::Config(membership) => {
            scratch.voters.clear();
            scratch
                .voters
                .extend(membership.voters().iter().map(|node| node.0));
            let vector = fbb.create_vector(&scratch.voters);
            (fb::BodyKind::Config, None, Some(vector))
        }
    };
    fb::Entry::create(
        fbb,
        &fb::EntryArgs {
            origin: Some(&origin),
            body_kind,
            values,
            voters,
        },
    )
}

/// Writes `entries` and returns the vector's offset; uses `scratch.entries`.
fn entries(
    fbb: &mut Fbb,
    scratch: &mut Scratch,
    entries: &[Entry],
) -> WIPOffset<flatbuffers::Vector<'static, flatbuffers::ForwardsUOffset<fb::Entry<'static>>>> {
    let mut offsets = std::mem::take(&mut scratch.entries);
    offsets.clear();
    for e in entries {
        offsets.push(entry(fbb, scratch, e));
    }
    let vector = fbb.create_vector(&offsets);
    scratch.entries = offsets;
    vector
}

fn promised_entries(
    fbb: &mut Fbb,
    scratch: &mut Scratch,
    entries: &[PromisedEntry],
) -> WIPOffset<flatbuffers::Vector<'static, flatbuffers::ForwardsUOffset<fb::PromisedEntry<'static>>>>
{
    let mut offsets = std::mem::take(&mut scratch.promised);
    offsets.clear();
    for p in entries {
        let e = entry(fbb, scratch, &p.entry);
        let b = ballot(p.ballot);
        offsets.push(fb::PromisedEntry::create(
            fbb,
            &fb::PromisedEntryArgs {
                instance: p.instance.0,
                ballot: Some(&b),
                chosen: p.chosen,
                entry: Some(e),
            },
        ));
    }
    let vector = fbb.create_vector(&offsets);
    scratch.promised = offsets;
    vector
}

fn ranges(
    fbb: &mut Fbb,
    ranges: &[InstanceRange],
) -> WIPOffset<flatbuffers::Vector<'static, fb::InstanceRange>> {
    fbb.create_vector_from_iter(
        ranges
            .iter()
            .map(|r| fb::InstanceRange::new(r.first.0, r.last.0)),
    )
}

/// Writes one message body; returns its union tag and offset.
#[expect(
    clippy::too_many_lines,
    reason = "one arm per message kind of schema/wire.fbs, each a field-by-field table \
              build that shares nothing with the others"
)]
fn body(
    fbb: &mut Fbb,
    scratch: &mut Scratch,
    body: &MessageBody,
) -> (fb::MessageBody, WIPOffset<UnionWIPOffset>) {
    match body {
        MessageBody::Prepare { ballot: b, from } => {
            let b = ballot(*b);
            let t = fb::Prepare::create(
                fbb,
                &fb::PrepareArgs {
                    ballot: Some(&b),
                    from: from.0,
                },
            );
            (fb::MessageBody::Prepare, t.as_union_value())
        }
        MessageBody::Promise {
            ballot: b,
            chosen_through,
            entries,
            truncated,
        } => {
            let entries = promised_entries(fbb, scratch, entries);
            let b = ballot(*b);
            let t = fb::Promise::create(
                fbb,
                &fb::PromiseArgs {
                    ballot: Some(&b),
                    chosen_through: chosen_through.0,
                    entries: Some(entries),
                    truncated: *truncated,
                },
            );
            (fb::MessageBody::Promise, t.as_union_value())
        }
        MessageBody::Reject { promised } => {
            let p = ballot(*promised);
            let t = fb::Reject::create(fbb, &fb::RejectArgs { promised: Some(&p) });
            (fb::MessageBody::Reject, t.as_union_value())
        }
        MessageBody::Accept {
            ballot: b,
            chosen_through,
            first,
            entries: es,
        } => {
            let es = entries(fbb, scratch, es);
            let b = ballot(*b);
            let t = fb::Accept::create(
                fbb,
                &fb::AcceptArgs {
                    ballot: Some(&b),
                    chosen_through: chosen_through.0,
                    first: first.0,
                    entries: Some(es),
                },
            );
            (fb::MessageBody::Accept, t.as_union_value())
        }
        MessageBody::Accepted {
            ballot: b,
            ranges: rs,
        } => {
            let rs = ranges(fbb, rs);
            let b = ballot(*b);
            let t = fb::Accepted::create(
                fbb,
                &fb::AcceptedArgs {
                    ballot: Some(&b),
                    ranges: Some(rs),
                },
            );
            (fb::MessageBody::Accepted, t.as_union_value())
        }
        MessageBody::Heartbeat {
            ballot: b,
            chosen_through,
            sent_at,
            checksum_through,
            checksum,
        } => {
            let b = ballot(*b);
            let t = fb::Heartbeat::create(
                fbb,
                &fb::HeartbeatArgs {
                    ballot: Some(&b),
                    chosen_through: chosen_through.0,
                    sent_at: sent_at.0,
                    checksum_through: checksum_through.0,
                    checksum: *checksum,
                },
            );
            (fb::MessageBody::Heartbeat, t.as_union_value())
        }
        MessageBody::HeartbeatAck { ballot: b, sent_at } => {
            let b = ballot(*b);
            let t = fb::HeartbeatAck::create(
                fbb,
                &fb::HeartbeatAckArgs {
                    ballot: Some(&b),
                    sent_at: sent_at.0,
                },
            );
            (fb::MessageBody::HeartbeatAck, t.as_union_value())
        }
        MessageBody::CatchUpRequest {
            from,
            credit,
            retired,
        } => {
            let t = fb::CatchUpRequest::create(
                fbb,
                &fb::CatchUpRequestArgs {
                    from: from.0,
                    credit: *credit,
                    retired: *retired,
                },
            );
            (fb::MessageBody::CatchUpRequest, t.as_union_value())
        }
        MessageBody::CatchUpChunk {
            chosen_through,
            promised,
            accepted_max,
            first,
            entries: es,
            from_voter,
            membership_changed,
        } => {
            let es = entries(fbb, scratch, es);
            let p = ballot(*promised);
            let t = fb::CatchUpChunk::create(
                fbb,
                &fb::CatchUpChunkArgs {
                    chosen_through: chosen_through.0,
                    promised: Some(&p),
                    accepted_max: accepted_max.0,
                    first: first.0,
                    entries: Some(es),
                    from_voter: *from_voter,
                    membership_changed: *membership_changed,
                },
            );
            (fb::MessageBody::CatchUpChunk, t.as_union_value())
        }
        MessageBody::CheckpointRequest { through, offset } => {
            let t = fb::CheckpointRequest::create(
                fbb,
                &fb::CheckpointRequestArgs {
                    through: through.0,
                    offset: *offset,
                },
            );
            (fb::MessageBody::CheckpointRequest, t.as_union_value())
        }
        MessageBody::CheckpointChunk {
            through,
            offset,
            total_size,
            data,
        } => {
            let bytes = fbb.create_vector(data.as_ref());
            let end = offset.saturating_add(data.len() as u64);
            let t = fb::CheckpointChunk::create(
                fbb,
                &fb::CheckpointChunkArgs {
                    // The message names the group; the table's own field stays 0.
                    group: 0,
                    instance: through.0,
                    offset: *offset,
                    total_size: *total_size,
                    data: Some(bytes),
                    last: end == *total_size,
                },
            );
            (fb::MessageBody::CheckpointChunk, t.as_union_value())
        }
        MessageBody::CatchUpRaw {
            chosen_through,
            promised,
            accepted_max,
            run,
            from_voter,
            membership_changed,
        } => catch_up_raw(
            fbb,
            scratch,
            (*chosen_through, *promised, *accepted_max),
            (*from_voter, *membership_changed),
            run,
        ),
        MessageBody::Handover { ballot: b, target } => {
            let b = ballot(*b);
            let t = fb::Handover::create(
                fbb,
                &fb::HandoverArgs {
                    ballot: Some(&b),
                    target: target.0,
                },
            );
            (fb::MessageBody::Handover, t.as_union_value())
        }
        MessageBody::PreVote { ballot: b } => {
            let b = ballot(*b);
            let t = fb::PreVote::create(fbb, &fb::PreVoteArgs { ballot: Some(&b) });
            (fb::MessageBody::PreVote, t.as_union_value())
        }
        MessageBody::PreVoteReply { ballot: b, granted } => {
            let b = ballot(*b);
            let t = fb::PreVoteReply::create(
                fbb,
                &fb::PreVoteReplyArgs {
                    ballot: Some(&b),
                    granted: *granted,
                },
            );
            (fb::MessageBody::PreVoteReply, t.as_union_value())
        }
    }
}

/// A `CatchUpRaw` of `run` with its chunk metadata (chosen through, promised, accepted
/// max; whether the sender votes, whether its group's membership ever changed). Each
/// piece is copied once, straight from the sender's read buffer into the
/// builder (no intermediate buffer, nothing decoded).
fn catch_up_raw(
    fbb: &mut Fbb,
    scratch: &mut Scratch,
    (chosen_through, promised, accepted_max): (Instance, Ballot, Instance),
    (from_voter, membership_changed): (bool, bool),
    run: &RawRun,
) -> (fb::MessageBody, WIPOffset<UnionWIPOffset>) {
    let mut pieces = std::mem::take(&mut scratch.pieces);
    pieces.clear();
    for piece in &run.records {
        let records = fbb.create_vector(piece.as_ref());
        pieces.push(fb::RawPiece::create(
            fbb,
            &fb::RawPieceArgs {
                records: Some(records),
            },
        ));
    }
    let vector = fbb.create_vector(&pieces);
    scratch.pieces = pieces;
    let p = ballot(promised);
    let t = fb::CatchUpRaw::create(
        fbb,
        &fb::CatchUpRawArgs {
            chosen_through: chosen_through.0,
            promised: Some(&p),
            accepted_max: accepted_max.0,
            first: run.first_instance.0,
            last: run.last_instance.0,
            salt: run.salt,
            pieces: Some(vector),
            from_voter,
            membership_changed,
        },
    );
    (fb::MessageBody::CatchUpRaw, t.as_union_value())
}

/// Writes a whole `Frame` holding a `MessageBatch` of `messages`, in order.
pub(super) fn message_batch<'m>(
    fbb: &mut Fbb,
    scratch: &mut Scratch,
    messages: impl IntoIterator<Item = &'m Message>,
) {
    let mut offsets = std::mem::take(&mut scratch.messages);
    offsets.clear();
    for m in messages {
        let (body_type, body_offset) = body(fbb, scratch, &m.body);
        offsets.push(fb::Message::create(
            fbb,
            &fb::MessageArgs {
                group: m.group.0,
                from: m.from.0,
                to: m.to.0,
                body_type,
                body: Some(body_offset),
            },
        ));
    }
    let vector = fbb.create_vector(&offsets);
    scratch.messages = offsets;
    let batch = fb::MessageBatch::create(
        fbb,
        &fb::MessageBatchArgs {
            messages: Some(vector),
        },
    );
    finish(fbb, fb::FrameBody::MessageBatch, batch.as_union_value());
}

/// Writes a whole `Frame` holding a `HeartbeatBatch`.
pub(super) fn heartbeat_batch(fbb: &mut Fbb, batch: &HeartbeatBatch) {
    let heartbeats = fbb.create_vector_from_iter(batch.heartbeats.iter().map(|h| {
        fb::GroupHeartbeat::new(
            &ballot(h.ballot),
            h.chosen_through.0,
            h.sent_at.0,
            h.checksum_through.0,
            h.group.0,
            h.checksum,
        )
    }));
    let t = fb::HeartbeatBatch::create(
        fbb,
        &fb::HeartbeatBatchArgs {
            from: batch.from.0,
            to: batch.to.0,
            heartbeats: Some(heartbeats),
        },
    );
    finish(fbb, fb::FrameBody::HeartbeatBatch, t.as_union_value());
}

/// Writes a whole `Frame` holding a `HeartbeatAckBatch`.
pub(super) fn heartbeat_ack_batch(fbb: &mut Fbb, batch: &HeartbeatAckBatch) {
    let acks = fbb.create_vector_from_iter(
        batch
            .acks
            .iter()
            .map(|a| fb::GroupHeartbeatAck::new(&ballot(a.ballot), a.sent_at.0, a.group.0)),
    );
    let t = fb::HeartbeatAckBatch::create(
        fbb,
        &fb::HeartbeatAckBatchArgs {
            from: batch.from.0,
            to: batch.to.0,
            acks: Some(acks),
        },
    );
    finish(fbb, fb::FrameBody::HeartbeatAckBatch, t.as_union_value());
}

/// Writes a whole `Frame` holding a `Handshake`.
pub(super) fn handshake(fbb: &mut Fbb, h: &Handshake) {
    fbb.start_vector::<fb::NodeAddress>(h.layout.len());
    for (node, address) in h.layout.iter().rev() {
        fbb.push(node_address(*node, *address));
    }
    let layout = fbb.end_vector(h.layout.len());
    let nonce = h.nonce.as_ref().map(|n| fbb.create_vector(n.as_slice()));
    let proof = h.proof.as_ref().map(|p| fbb.create_vector(p.as_slice()));
    let t = fb::Handshake::create(
        fbb,
        &fb::HandshakeArgs {
            protocol_version: h.protocol_version,
            cluster: h.cluster,
            node: h.node.0,
            shard: h.shard,
            shards: h.shards,
            layout: Some(layout),
            nonce,
            proof,
        },
    );
    finish(fbb, fb::FrameBody::Handshake, t.as_union_value());
}

/// A layout entry: IPv4 addresses as IPv4-mapped IPv6, in two big-endian halves.
fn node_address(node: NodeId, address: SocketAddr) -> fb::NodeAddress {
    let ip = match address.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let bits = u128::from(ip);
    fb::NodeAddress::new((bits >> 64) as u64, bits as u64, node.0, address.port())
}

/// Writes a whole `Frame` holding a `HandshakeProof`.
pub(super) fn handshake_proof(fbb: &mut Fbb, p: &HandshakeProof) {
    let proof = fbb.create_vector(p.proof.as_slice());
    let t = fb::HandshakeProof::create(fbb, &fb::HandshakeProofArgs { proof: Some(proof) });
    finish(fbb, fb::FrameBody::HandshakeProof, t.as_union_value());
}

/// Writes a whole `Frame` holding a `CatchUpStream`.
pub(super) fn catch_up_stream(fbb: &mut Fbb, s: &CatchUpStream) {
    let records = fbb.create_vector(s.records.as_ref());
    let t = fb::CatchUpStream::create(
        fbb,
        &fb::CatchUpStreamArgs {
            group: s.group.0,
            first_lsn: s.first_lsn.0,
            records: Some(records),
            credit_size: s.credit_size,
            salt: s.salt,
        },
    );
    finish(fbb, fb::FrameBody::CatchUpStream, t.as_union_value());
}

/// Writes a whole `Frame` holding a `CheckpointChunk`.
pub(super) fn checkpoint_chunk(fbb: &mut Fbb, c: &CheckpointChunk) {
    let data = fbb.create_vector(c.data.as_ref());
    let t = fb::CheckpointChunk::create(
        fbb,
        &fb::CheckpointChunkArgs {
            group: c.group.0,
            instance: c.instance.0,
            offset: c.offset,
            total_size: c.total_size,
            data: Some(data),
            last: c.last,
        },
    );
    finish(fbb, fb::FrameBody::CheckpointChunk, t.as_union_value());
}
