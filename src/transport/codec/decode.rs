//! Verified flatbuffers to Rust values, with the semantic checks the verifier cannot
//! make. Nothing here indexes, unwraps or does arithmetic that could panic on input:
//! counts are checked against limits BEFORE any allocation sized by them, instance
//! arithmetic is checked, and union/enum values outside the schema are errors. Every
//! ballot round and instance is checked against the bounds of `paxos::bounds` (the core
//! checks them again: defence in depth), so a forged `u64::MAX` round is refused here
//! and its connection closed.

use crate::paxos::bounds::check_position;
use crate::paxos::{
    Ballot, Body, Entry, GroupId, Instance, InstanceRange, Lsn, Membership, Message, MessageBody,
    Nanos, NodeId, PromisedEntry, RawRun, Values,
};
use crate::transport::auth::{NONCE_SIZE, PROOF_SIZE};
use crate::transport::error::DecodeError;
use crate::transport::limits::DecodeLimits;
use crate::transport::wire::{
    CatchUpStream, CheckpointChunk, FrameBody, GroupHeartbeat, GroupHeartbeatAck, Handshake,
    HandshakeProof, HeartbeatAckBatch, HeartbeatBatch,
};
use bytes::Bytes;
use flatbuffers::{ForwardsUOffset, Vector};
use std::net::{Ipv6Addr, SocketAddr};
use synod_wire as fb;

// A new union member or enum value must be decoded here before it may be sent: the
// matches below need an arm for unknown values (the generated types are open), so
// these pin the schema's size instead of an exhaustive match.
const _: () = assert!(
    fb::FrameBody::ENUM_MAX == 7,
    "new FrameBody member: decode it"
);
const _: () = assert!(
    fb::MessageBody::ENUM_MAX == 15,
    "new MessageBody member: decode it"
);
const _: () = assert!(fb::BodyKind::ENUM_MAX == 3, "new BodyKind value: decode it");

/// The schema's file identifier, at bytes 4..8 of every frame.
const FILE_IDENTIFIER: [u8; 4] = *b"SYNW";
const _: () = assert!(FILE_IDENTIFIER.len() == flatbuffers::FILE_IDENTIFIER_LENGTH);

/// One frame being decoded: the verified root, the limits, and the payload budget.
pub(super) struct Decoder<'a, 'l> {
    frame: fb::Frame<'a>,
    limits: &'l DecodeLimits,
    frame_size: usize,
    /// Payload bytes (values, records, data) copied so far; an honest frame's payload
    /// regions are disjoint, so the total never exceeds `frame_size`.
    payload_size: usize,
}

fn ballot(b: &fb::Ballot) -> Ballot {
    Ballot {
        round: b.round(),
        node: NodeId(b.node()),
    }
}

fn frame_body_name(kind: fb::FrameBody) -> Result<&'static str, DecodeError> {
    kind.variant_name()
        .filter(|_| kind != fb::FrameBody::NONE)
        .ok_or(DecodeError::UnknownUnion {
            field: "Frame.body",
            tag: kind.0,
        })
}

/// An optional byte vector of exactly `N` bytes, else [`DecodeError::WrongSize`].
fn fixed<const N: usize>(
    field: &'static str,
    v: Option<Vector<'_, u8>>,
) -> Result<Option<[u8; N]>, DecodeError> {
    let Some(v) = v else {
        return Ok(None);
    };
    <[u8; N]>::try_from(v.bytes())
        .map(Some)
        .map_err(|_| DecodeError::WrongSize {
            field,
            size: v.len(),
            expected: N,
        })
}

/// `count <= max`, else [`DecodeError::TooMany`].
fn check_count(field: &'static str, count: usize, max: usize) -> Result<(), DecodeError> {
    if count > max {
        return Err(DecodeError::TooMany { field, count, max });
    }
    Ok(())
}

/// A field the entry's body kind does not allow must be absent.
fn absent(present: bool, field: &'static str, body_kind: &'static str) -> Result<(), DecodeError> {
    if present {
        return Err(DecodeError::UnexpectedField { field, body_kind });
    }
    Ok(())
}

/// An instance that must be a log position (>= 1).
fn position(field: &'static str, value: u64) -> Result<Instance, DecodeError> {
    if value == 0 {
        return Err(DecodeError::Zero { field });
    }
    Ok(Instance(value))
}

/// The first instance of a run of `count` consecutive instances: >= 1, and the last
/// one (`first + count - 1`) must fit in a u64.
fn run_first(field: &'static str, first: u64, count: usize) -> Result<Instance, DecodeError> {
    let first = position(field, first)?;
    let extra = u64::try_from(count.saturating_sub(1)).unwrap_or(u64::MAX);
    if first.0.checked_add(extra).is_none() {
        return Err(DecodeError::InstanceOverflow {
            field,
            first: first.0,
            count,
        });
    }
    Ok(first)
}

impl<'a, 'l> Decoder<'a, 'l> {
    /// Checks the size and identifier, then runs the verifier over `bytes`.
    pub(super) fn new(
        bytes: &'a [u8],
        limits: &'l DecodeLimits,
    ) -> Result<Decoder<'a, 'l>, DecodeError> {
        if bytes.len() > limits.frame_size_max {
            return Err(DecodeError::FrameTooLarge {
                size: bytes.len(),
                max: limits.frame_size_max,
            });
        }
        let mut found = [0_u8; 4];
        for (slot, byte) in found.iter_mut().zip(bytes.iter().skip(4)) {
            *slot = *byte;
        }
        if bytes.len() < 8 || found != FILE_IDENTIFIER {
            return Err(DecodeError::BadIdentifier { found });
        }
        let options = limits.verifier_options(bytes.len());
        let frame = fb::root_as_frame_with_opts(&options, bytes)?;
        Ok(Decoder {
            frame,
            limits,
            frame_size: bytes.len(),
            payload_size: 0,
        })
    }

    /// Copies a verified byte vector into `Bytes`, counting it against the payload
    /// budget. Zero copy would return `frame_bytes.slice_ref(v.bytes())` here.
    fn bytes(&mut self, v: Option<Vector<'a, u8>>) -> Result<Bytes, DecodeError> {
        let slice = v.map_or(&[][..], |v| v.bytes());
        self.payload_size = self.payload_size.saturating_add(slice.len());
        if self.payload_size > self.frame_size {
            return Err(DecodeError::PayloadAliased {
                payload_size: self.payload_size,
                frame_size: self.frame_size,
            });
        }
        Ok(Bytes::copy_from_slice(slice))
    }

    /// Whichever body the frame holds.
    pub(super) fn any(mut self) -> Result<FrameBody, DecodeError> {
        let frame = self.frame;
        if let Some(batch) = frame.body_as_message_batch() {
            return Ok(FrameBody::MessageBatch(self.messages(batch)?));
        }
        if let Some(batch) = frame.body_as_heartbeat_batch() {
            return Ok(FrameBody::HeartbeatBatch(self.heartbeats(batch)?));
        }
        if let Some(batch) = frame.body_as_heartbeat_ack_batch() {
            return Ok(FrameBody::HeartbeatAckBatch(self.heartbeat_acks(batch)?));
        }
        if let Some(h) = frame.body_as_handshake() {
            return Ok(FrameBody::Handshake(self.handshake_of(h)?));
        }
        if let Some(p) = frame.body_as_handshake_proof() {
            return Ok(FrameBody::HandshakeProof(Self::proof_of(p)?));
        }
        if let Some(s) = frame.body_as_catch_up_stream() {
            return Ok(FrameBody::CatchUpStream(self.stream(s)?));
        }
        if let Some(c) = frame.body_as_checkpoint_chunk() {
            return Ok(FrameBody::CheckpointChunk(self.checkpoint(c)?));
        }
        Err(DecodeError::UnknownUnion {
            field: "Frame.body",
            tag: frame.body_type().0,
        })
    }

    /// The body the caller expects (`get` returns it when the tag is `expected`), or
    /// an error naming what the frame holds instead.
    fn expect<T>(
        &self,
        expected: fb::FrameBody,
        get: impl FnOnce(&fb::Frame<'a>) -> Option<T>,
    ) -> Result<T, DecodeError> {
        if let Some(body) = get(&self.frame) {
            return Ok(body);
        }
        let found = frame_body_name(self.frame.body_type())?;
        Err(DecodeError::UnexpectedFrameBody {
            expected: frame_body_name(expected)?,
            found,
        })
    }

    pub(super) fn message_batch(mut self) -> Result<Vec<Message>, DecodeError> {
        let batch = self.expect(
            fb::FrameBody::MessageBatch,
            fb::Frame::body_as_message_batch,
        )?;
        self.messages(batch)
    }

    pub(super) fn heartbeat_batch(self) -> Result<HeartbeatBatch, DecodeError> {
        let batch = self.expect(
            fb::FrameBody::HeartbeatBatch,
            fb::Frame::body_as_heartbeat_batch,
        )?;
        self.heartbeats(batch)
    }

    pub(super) fn heartbeat_ack_batch(self) -> Result<HeartbeatAckBatch, DecodeError> {
        let batch = self.expect(
            fb::FrameBody::HeartbeatAckBatch,
            fb::Frame::body_as_heartbeat_ack_batch,
        )?;
        self.heartbeat_acks(batch)
    }

    pub(super) fn handshake(self) -> Result<Handshake, DecodeError> {
        let h = self.expect(fb::FrameBody::Handshake, fb::Frame::body_as_handshake)?;
        self.handshake_of(h)
    }

    pub(super) fn handshake_proof(self) -> Result<HandshakeProof, DecodeError> {
        let p = self.expect(
            fb::FrameBody::HandshakeProof,
            fb::Frame::body_as_handshake_proof,
        )?;
        Self::proof_of(p)
    }

    pub(super) fn catch_up_stream(mut self) -> Result<CatchUpStream, DecodeError> {
        let s = self.expect(
            fb::FrameBody::CatchUpStream,
            fb::Frame::body_as_catch_up_stream,
        )?;
        self.stream(s)
    }

    pub(super) fn checkpoint_chunk(mut self) -> Result<CheckpointChunk, DecodeError> {
        let c = self.expect(
            fb::FrameBody::CheckpointChunk,
            fb::Frame::body_as_checkpoint_chunk,
        )?;
        self.checkpoint(c)
    }

    fn messages(&mut self, batch: fb::MessageBatch<'a>) -> Result<Vec<Message>, DecodeError> {
        let messages = batch.messages();
        check_count(
            "MessageBatch.messages",
            messages.len(),
            self.limits.messages_max,
        )?;
        let mut out = Vec::with_capacity(messages.len());
        for m in messages.iter() {
            let body = self.message_body(m)?;
            body.check_bounds().map_err(DecodeError::OutOfBounds)?;
            out.push(Message {
                group: GroupId(m.group()),
                from: NodeId(m.from()),
                to: NodeId(m.to()),
                body,
            });
        }
        Ok(out)
    }

    fn message_body(&mut self, m: fb::Message<'a>) -> Result<MessageBody, DecodeError> {
        if let Some(p) = m.body_as_prepare() {
            return Ok(MessageBody::Prepare {
                ballot: ballot(p.ballot()),
                from: position("Prepare.from", p.from())?,
            });
        }
        if let Some(p) = m.body_as_promise() {
            return Ok(MessageBody::Promise {
                ballot: ballot(p.ballot()),
                chosen_through: Instance(p.chosen_through()),
                entries: self.promised_entries(p.entries())?,
                truncated: p.truncated(),
            });
        }
        if let Some(r) = m.body_as_reject() {
            return Ok(MessageBody::Reject {
                promised: ballot(r.promised()),
            });
        }
        if let Some(a) = m.body_as_accept() {
            let count = a.entries().map_or(0, |v| v.len());
            return Ok(MessageBody::Accept {
                ballot: ballot(a.ballot()),
                chosen_through: Instance(a.chosen_through()),
                first: run_first("Accept.first", a.first(), count)?,
                entries: self.entries("Accept.entries", a.entries())?,
            });
        }
        if let Some(a) = m.body_as_accepted() {
            return Ok(MessageBody::Accepted {
                ballot: ballot(a.ballot()),
                ranges: self.ranges(a.ranges())?,
            });
        }
        if let Some(h) = m.body_as_heartbeat() {
            return Ok(MessageBody::Heartbeat {
                ballot: ballot(h.ballot()),
                chosen_through: Instance(h.chosen_through()),
                sent_at: Nanos(h.sent_at()),
                checksum_through: Instance(h.checksum_through()),
                checksum: h.checksum(),
            });
        }
        if let Some(h) = m.body_as_heartbeat_ack() {
            return Ok(MessageBody::HeartbeatAck {
                ballot: ballot(h.ballot()),
                sent_at: Nanos(h.sent_at()),
            });
        }
        if let Some(r) = m.body_as_catch_up_request() {
            return Ok(MessageBody::CatchUpRequest {
                from: position("CatchUpRequest.from", r.from())?,
                // Any value is safe: the serving group bounds it by its own
                // `catch_up_credit_max` (0, from an older peer, means 1).
                credit: r.credit(),
                retired: r.retired(),
            });
        }
        if let Some(c) = m.body_as_catch_up_chunk() {
            let count = c.entries().map_or(0, |v| v.len());
            return Ok(MessageBody::CatchUpChunk {
                chosen_through: Instance(c.chosen_through()),
                promised: ballot(c.promised()),
                accepted_max: Instance(c.accepted_max()),
                first: run_first("CatchUpChunk.first", c.first(), count)?,
                entries: self.entries("CatchUpChunk.entries", c.entries())?,
                from_voter: c.from_voter(),
                membership_changed: c.membership_changed(),
            });
        }
        if let Some(r) = m.body_as_checkpoint_request() {
            return Ok(MessageBody::CheckpointRequest {
                through: position("CheckpointRequest.through", r.through())?,
                offset: r.offset(),
            });
        }
        if let Some(c) = m.body_as_checkpoint_chunk() {
            let chunk = self.checkpoint(c)?;
            return Ok(MessageBody::CheckpointChunk {
                through: chunk.instance,
                offset: chunk.offset,
                total_size: chunk.total_size,
                data: chunk.data,
            });
        }
        if let Some(c) = m.body_as_catch_up_raw() {
            return Ok(MessageBody::CatchUpRaw {
                chosen_through: Instance(c.chosen_through()),
                promised: ballot(c.promised()),
                accepted_max: Instance(c.accepted_max()),
                run: self.raw_run(GroupId(m.group()), c)?,
                from_voter: c.from_voter(),
                membership_changed: c.membership_changed(),
            });
        }
        if let Some(h) = m.body_as_handover() {
            return Ok(MessageBody::Handover {
                ballot: ballot(h.ballot()),
                target: NodeId(h.target()),
            });
        }
        if let Some(p) = m.body_as_pre_vote() {
            return Ok(MessageBody::PreVote {
                ballot: ballot(p.ballot()),
            });
        }
        if let Some(r) = m.body_as_pre_vote_reply() {
            return Ok(MessageBody::PreVoteReply {
                ballot: ballot(r.ballot()),
                granted: r.granted(),
            });
        }
        Err(DecodeError::UnknownUnion {
            field: "Message.body",
            tag: m.body_type().0,
        })
    }

    /// The run of a `CatchUpRaw` of `group`: `first <= last`, at most `entries_max`
    /// instances and pieces, each piece copied out as opaque bytes (the receiving shard
    /// verifies every record: `wal::catch_up::verify_raw`).
    fn raw_run(&mut self, group: GroupId, c: fb::CatchUpRaw<'a>) -> Result<RawRun, DecodeError> {
        let first = position("CatchUpRaw.first", c.first())?;
        let last = Instance(c.last());
        if first > last {
            return Err(DecodeError::RangeInverted {
                first: first.0,
                last: last.0,
            });
        }
        let count = usize::try_from(last.0 - first.0).unwrap_or(usize::MAX);
        check_count(
            "CatchUpRaw.instances",
            count.saturating_add(1),
            self.limits.entries_max,
        )?;
        let pieces = c.pieces().map_or(0, |v| v.len());
        check_count("CatchUpRaw.pieces", pieces, self.limits.entries_max)?;
        let mut records = Vec::with_capacity(pieces);
        for piece in c.pieces().iter().flatten() {
            records.push(self.bytes(piece.records())?);
        }
        Ok(RawRun {
            group,
            first_instance: first,
            last_instance: last,
            salt: c.salt(),
            records,
        })
    }

    fn entries(
        &mut self,
        field: &'static str,
        entries: Option<Vector<'a, ForwardsUOffset<fb::Entry<'a>>>>,
    ) -> Result<Vec<Entry>, DecodeError> {
        let Some(entries) = entries else {
            return Ok(Vec::new());
        };
        check_count(field, entries.len(), self.limits.entries_max)?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries.iter() {
            out.push(self.entry(e)?);
        }
        Ok(out)
    }

    fn promised_entries(
        &mut self,
        entries: Option<Vector<'a, ForwardsUOffset<fb::PromisedEntry<'a>>>>,
    ) -> Result<Vec<PromisedEntry>, DecodeError> {
        let Some(entries) = entries else {
            return Ok(Vec::new());
        };
        check_count("Promise.entries", entries.len(), self.limits.entries_max)?;
        let mut out: Vec<PromisedEntry> = Vec::with_capacity(entries.len());
        for p in entries.iter() {
            let instance = position("PromisedEntry.instance", p.instance())?;
            if let Some(previous) = out.last() {
                if previous.instance >= instance {
                    return Err(DecodeError::NotAscending {
                        field: "Promise.entries",
                        previous: previous.instance.0,
                        next: instance.0,
                    });
                }
            }
            out.push(PromisedEntry {
                instance,
                ballot: ballot(p.ballot()),
                chosen: p.chosen(),
                entry: self.entry(p.entry())?,
            });
        }
        Ok(out)
    }

    fn entry(&mut self, e: fb::Entry<'a>) -> Result<Entry, DecodeError> {
        let kind = e.body_kind();
        let has_values = e.values().is_some();
        let has_voters = e.voters().is_some();
        let body = match kind {
            fb::BodyKind::Values => {
                absent(has_voters, "Entry.voters", "Values")?;
                Body::Values(self.values(e.values())?)
            }
            fb::BodyKind::Noop => {
                absent(has_values, "Entry.values", "Noop")?;
                absent(has_voters, "Entry.voters", "Noop")?;
                Body::Noop
            }
            fb::BodyKind::StartWorking => {
                absent(has_values, "Entry.values", "StartWorking")?;
                absent(has_voters, "Entry.voters", "StartWorking")?;
                Body::StartWorking
            }
            fb::BodyKind::Config => {
                absent(has_values, "Entry.values", "Config")?;
                Body::Config(self.membership(e.voters())?)
            }
            // Open type: any other u8 can arrive (see the ENUM_MAX pin above).
            _ => {
                return Err(DecodeError::UnknownEnum {
                    field: "Entry.body_kind",
                    value: kind.0,
                })
            }
        };
        Ok(Entry {
            origin: ballot(e.origin()),
            body,
        })
    }

    fn values(
        &mut self,
        values: Option<Vector<'a, ForwardsUOffset<fb::Value<'a>>>>,
    ) -> Result<Values, DecodeError> {
        let Some(values) = values else {
            return Ok(Values::new());
        };
        check_count("Entry.values", values.len(), self.limits.values_max)?;
        let mut out = Values::with_capacity(values.len());
        for v in values.iter() {
            let data = v.data();
            let size = data.map_or(0, |d| d.len());
            if size > self.limits.value_size_max {
                return Err(DecodeError::ValueTooLarge {
                    size,
                    max: self.limits.value_size_max,
                });
            }
            out.push(self.bytes(data)?);
        }
        Ok(out)
    }

    fn membership(&self, voters: Option<Vector<'a, u32>>) -> Result<Membership, DecodeError> {
        let Some(voters) = voters else {
            return Err(DecodeError::EmptyMembership);
        };
        if voters.is_empty() {
            return Err(DecodeError::EmptyMembership);
        }
        check_count("Entry.voters", voters.len(), self.limits.voters_max)?;
        let mut out: Vec<NodeId> = Vec::with_capacity(voters.len());
        for voter in voters.iter() {
            if let Some(previous) = out.last() {
                if previous.0 >= voter {
                    return Err(DecodeError::NotAscending {
                        field: "Entry.voters",
                        previous: u64::from(previous.0),
                        next: u64::from(voter),
                    });
                }
            }
            out.push(NodeId(voter));
        }
        // Non-empty, sorted and unique: `Membership::new` keeps it as is.
        Ok(Membership::new(out))
    }

    fn ranges(
        &self,
        ranges: Option<Vector<'a, fb::InstanceRange>>,
    ) -> Result<Vec<InstanceRange>, DecodeError> {
        let Some(ranges) = ranges else {
            return Ok(Vec::new());
        };
        check_count("Accepted.ranges", ranges.len(), self.limits.ranges_max)?;
        let mut out: Vec<InstanceRange> = Vec::with_capacity(ranges.len());
        for r in ranges.iter() {
            let first = position("InstanceRange.first", r.first())?;
            let last = Instance(r.last());
            if first > last {
                return Err(DecodeError::RangeInverted {
                    first: first.0,
                    last: last.0,
                });
            }
            if let Some(previous) = out.last() {
                if previous.last >= first {
                    return Err(DecodeError::NotAscending {
                        field: "Accepted.ranges",
                        previous: previous.last.0,
                        next: first.0,
                    });
                }
            }
            out.push(InstanceRange { first, last });
        }
        Ok(out)
    }

    fn heartbeats(&self, batch: fb::HeartbeatBatch<'a>) -> Result<HeartbeatBatch, DecodeError> {
        let heartbeats = batch.heartbeats();
        check_count(
            "HeartbeatBatch.heartbeats",
            heartbeats.len(),
            self.limits.heartbeats_max,
        )?;
        let mut out = Vec::with_capacity(heartbeats.len());
        for h in heartbeats.iter() {
            let heartbeat = GroupHeartbeat {
                group: GroupId(h.group()),
                ballot: ballot(h.ballot()),
                chosen_through: Instance(h.chosen_through()),
                sent_at: Nanos(h.sent_at()),
                checksum_through: Instance(h.checksum_through()),
                checksum: h.checksum(),
            };
            // The same bounds as the `Heartbeat` message each one becomes.
            MessageBody::Heartbeat {
                ballot: heartbeat.ballot,
                chosen_through: heartbeat.chosen_through,
                sent_at: heartbeat.sent_at,
                checksum_through: heartbeat.checksum_through,
                checksum: heartbeat.checksum,
            }
            .check_bounds()
            .map_err(DecodeError::OutOfBounds)?;
            out.push(heartbeat);
        }
        let heartbeats = out;
        Ok(HeartbeatBatch {
            from: NodeId(batch.from()),
            to: NodeId(batch.to()),
            heartbeats,
        })
    }

    fn heartbeat_acks(
        &self,
        batch: fb::HeartbeatAckBatch<'a>,
    ) -> Result<HeartbeatAckBatch, DecodeError> {
        let acks = batch.acks();
        check_count(
            "HeartbeatAckBatch.acks",
            acks.len(),
            self.limits.heartbeats_max,
        )?;
        let mut out = Vec::with_capacity(acks.len());
        for a in acks.iter() {
            let ack = GroupHeartbeatAck {
                group: GroupId(a.group()),
                ballot: ballot(a.ballot()),
                sent_at: Nanos(a.sent_at()),
            };
            // The same bounds as the `HeartbeatAck` message each one becomes.
            MessageBody::HeartbeatAck {
                ballot: ack.ballot,
                sent_at: ack.sent_at,
            }
            .check_bounds()
            .map_err(DecodeError::OutOfBounds)?;
            out.push(ack);
        }
        let acks = out;
        Ok(HeartbeatAckBatch {
            from: NodeId(batch.from()),
            to: NodeId(batch.to()),
            acks,
        })
    }

    fn handshake_of(&self, h: fb::Handshake<'a>) -> Result<Handshake, DecodeError> {
        let entries = h.layout().map_or(0, |l| l.len());
        check_count("Handshake.layout", entries, self.limits.voters_max)?;
        let mut layout: Vec<(NodeId, SocketAddr)> = Vec::with_capacity(entries);
        for a in h.layout().iter().flatten() {
            if let Some((previous, _)) = layout.last() {
                if previous.0 >= a.node() {
                    return Err(DecodeError::NotAscending {
                        field: "Handshake.layout",
                        previous: u64::from(previous.0),
                        next: u64::from(a.node()),
                    });
                }
            }
            let ip = Ipv6Addr::from(u128::from(a.ip_high()) << 64 | u128::from(a.ip_low()));
            let ip = ip.to_ipv4_mapped().map_or(ip.into(), Into::into);
            layout.push((NodeId(a.node()), SocketAddr::new(ip, a.port())));
        }
        Ok(Handshake {
            protocol_version: h.protocol_version(),
            cluster: h.cluster(),
            node: NodeId(h.node()),
            shard: h.shard(),
            shards: h.shards(),
            layout,
            nonce: fixed::<NONCE_SIZE>("Handshake.nonce", h.nonce())?,
            proof: fixed::<PROOF_SIZE>("Handshake.proof", h.proof())?,
        })
    }

    fn proof_of(p: fb::HandshakeProof<'a>) -> Result<HandshakeProof, DecodeError> {
        match fixed::<PROOF_SIZE>("HandshakeProof.proof", p.proof())? {
            Some(proof) => Ok(HandshakeProof { proof }),
            None => Err(DecodeError::WrongSize {
                field: "HandshakeProof.proof",
                size: 0,
                expected: PROOF_SIZE,
            }),
        }
    }

    fn stream(&mut self, s: fb::CatchUpStream<'a>) -> Result<CatchUpStream, DecodeError> {
        if s.first_lsn() == 0 {
            return Err(DecodeError::Zero {
                field: "CatchUpStream.first_lsn",
            });
        }
        Ok(CatchUpStream {
            group: GroupId(s.group()),
            first_lsn: Lsn(s.first_lsn()),
            records: self.bytes(s.records())?,
            credit_size: s.credit_size(),
            salt: s.salt(),
        })
    }

    fn checkpoint(&mut self, c: fb::CheckpointChunk<'a>) -> Result<CheckpointChunk, DecodeError> {
        let instance = position("CheckpointChunk.instance", c.instance())?;
        check_position("CheckpointChunk.instance", instance).map_err(DecodeError::OutOfBounds)?;
        let size = c.data().map_or(0, |d| d.len());
        let end = u64::try_from(size)
            .ok()
            .and_then(|size| c.offset().checked_add(size));
        let fits = match end {
            Some(end) if c.last() => end == c.total_size(),
            Some(end) => end <= c.total_size(),
            None => false,
        };
        if !fits {
            return Err(DecodeError::CheckpointChunkBounds {
                offset: c.offset(),
                size,
                total_size: c.total_size(),
                last: c.last(),
            });
        }
        Ok(CheckpointChunk {
            group: GroupId(c.group()),
            instance,
            offset: c.offset(),
            total_size: c.total_size(),
            data: self.bytes(c.data())?,
            last: c.last(),
        })
    }
}
