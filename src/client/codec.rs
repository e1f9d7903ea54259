//! The client protocol's codec: a [`Body`] in, one checksummed frame out, and back.
//!
//! One frame on the stream: `[u32 LE size][u32 LE CRC32C][ClientFrame flatbuffer]`,
//! where `size` counts the CRC and the flatbuffer. The length prefix is the peer
//! framing of `transport::frame` (its payload here is CRC + flatbuffer), so the size
//! bound is checked by the same code, as soon as the 4 header bytes arrive.
//!
//! Invariants:
//! - EVERY decode, in this order: size <= `frame_size_max` (before any buffer is sized
//!   by it); payload long enough to hold a CRC and a flatbuffer root; CRC32C of the
//!   flatbuffer equals the stored one; file identifier `SYNC`; the flatbuffers
//!   verifier (depth, table count and apparent size bounded by the frame's own size);
//!   known union and enum values; copied bytes (values, strings, group states) add up
//!   to at most the frame's size (no aliased offsets). Any failure refuses the frame
//!   with a typed [`CodecError`]; no input makes decoding panic.
//! - `decode(encode(x)) == x` for every [`Body`] that fits in `frame_size_max`.

use std::fmt;

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, InvalidFlatbuffer, VerifierOptions, WIPOffset};
use synod_wire::client as fb;

use super::wire::{Body, NodeStatus, ServerError};
use crate::api::{
    GroupStatus, LogEntry, LogRead, MembershipChange, PeerLink, Position, ShardMetrics, ShardStatus,
};
use crate::paxos::{Ballot, GroupId, Instance, NodeId, Role};
use crate::transport::frame::{append_frame, split_frame, FrameError, FRAME_HEADER_SIZE};

/// Bytes of the CRC32C in front of every flatbuffer.
pub const CRC_SIZE: usize = 4;

/// The schema's file identifier, at bytes 4..8 of every flatbuffer.
const FILE_IDENTIFIER: [u8; 4] = *b"SYNC";

/// Bytes of the smallest flatbuffer the verifier can look at: a root offset and the
/// file identifier.
const FLATBUFFER_SIZE_MIN: usize = 8;

/// Deepest table nesting of the schema: ClientFrame > StatusDone > ShardState (and
/// ClientFrame > Welcome > NodeAddress).
const TABLE_DEPTH_MAX: usize = 3;

/// As the peer codec (`transport::limits`): every table owns at least 8 bytes, and an
/// honest frame's apparent size stays below 4 times its size.
const TABLE_BYTES_MIN: usize = 8;
const APPARENT_SIZE_FACTOR: usize = 4;

// A new union member or enum value must be decoded here before it may be sent.
const _: () = assert!(
    fb::ClientBody::ENUM_MAX == 17,
    "new ClientBody member: decode it"
);
const _: () = assert!(
    fb::ErrorKind::ENUM_MAX == 9,
    "new ErrorKind value: decode it"
);
const _: () = assert!(fb::Role::ENUM_MAX == 2, "new Role value: decode it");
const _: () = assert!(FILE_IDENTIFIER.len() == flatbuffers::FILE_IDENTIFIER_LENGTH);

/// Why a frame of the client protocol was refused. The stream cannot be trusted after
/// any of them: the connection is closed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The length header announces more than `frame_size_max` bytes (or a frame to
    /// encode is that large).
    TooLarge {
        /// Bytes announced.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The frame is too short to hold a CRC and a flatbuffer root.
    TooShort {
        /// Bytes in the frame.
        size: usize,
    },
    /// The CRC32C of the flatbuffer is not the one the frame carries.
    BadCrc {
        /// The CRC the frame carries.
        stored: u32,
        /// The CRC of the bytes received.
        computed: u32,
    },
    /// The flatbuffer does not carry the identifier `SYNC`.
    BadIdentifier {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The flatbuffers verifier refused the buffer.
    Verifier(InvalidFlatbuffer),
    /// A union tag this build does not know (or `NONE`).
    UnknownUnion {
        /// The tag found.
        tag: u8,
    },
    /// An enum value this build does not know.
    UnknownEnum {
        /// The field, e.g. `Failed.kind`.
        field: &'static str,
        /// The value found.
        value: u8,
    },
    /// The bytes and strings of the frame add up to more than the frame holds:
    /// offsets alias one payload many times.
    PayloadAliased {
        /// Bytes the frame would decode into.
        payload_size: usize,
        /// Bytes in the frame.
        frame_size: usize,
    },
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::TooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds frame_size_max = {max}")
            }
            CodecError::TooShort { size } => write!(
                f,
                "frame of {size} bytes is shorter than a CRC and a flatbuffer root ({} bytes)",
                CRC_SIZE + FLATBUFFER_SIZE_MIN
            ),
            CodecError::BadCrc { stored, computed } => write!(
                f,
                "CRC32C mismatch: frame carries {stored:#010x}, bytes give {computed:#010x}"
            ),
            CodecError::BadIdentifier { found } => {
                write!(f, "frame identifier is {found:?}, expected b\"SYNC\"")
            }
            CodecError::Verifier(error) => write!(f, "flatbuffers verifier: {error}"),
            CodecError::UnknownUnion { tag } => {
                write!(f, "ClientFrame.body: unknown union tag {tag}")
            }
            CodecError::UnknownEnum { field, value } => {
                write!(f, "{field}: unknown enum value {value}")
            }
            CodecError::PayloadAliased {
                payload_size,
                frame_size,
            } => write!(
                f,
                "payload of {payload_size} bytes decoded from a frame of {frame_size} bytes \
                 (aliased offsets)"
            ),
        }
    }
}

impl std::error::Error for CodecError {}

impl From<FrameError> for CodecError {
    fn from(error: FrameError) -> CodecError {
        match error {
            FrameError::TooLarge { size, max } => CodecError::TooLarge { size, max },
        }
    }
}

impl From<InvalidFlatbuffer> for CodecError {
    fn from(error: InvalidFlatbuffer) -> CodecError {
        CodecError::Verifier(error)
    }
}

// ---------------------------------------------------------------------------------------
// Encoding.

/// A reusable encoder: keeps its builder and scratch buffer between frames.
#[derive(Default)]
pub struct Encoder {
    fbb: FlatBufferBuilder<'static>,
    scratch: Vec<u8>,
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder").finish_non_exhaustive()
    }
}

impl Encoder {
    /// An encoder with empty buffers.
    #[must_use]
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Appends one frame holding `body` to `out`: length, CRC32C, flatbuffer.
    ///
    /// # Errors
    ///
    /// [`CodecError::TooLarge`] (writing nothing) when the frame would exceed
    /// `frame_size_max`.
    pub fn encode(
        &mut self,
        body: &Body,
        frame_size_max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        self.fbb.reset();
        build(&mut self.fbb, body);
        let flatbuffer = self.fbb.finished_data();
        self.scratch.clear();
        self.scratch
            .extend_from_slice(&crc32c::crc32c(flatbuffer).to_le_bytes());
        self.scratch.extend_from_slice(flatbuffer);
        append_frame(&self.scratch, frame_size_max, out)?;
        Ok(())
    }
}

/// Appends one frame holding `body` to `out` (a fresh [`Encoder`]; reuse one on hot
/// paths).
///
/// # Errors
///
/// As [`Encoder::encode`].
pub fn encode(body: &Body, frame_size_max: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    Encoder::new().encode(body, frame_size_max, out)
}

type Fbb = FlatBufferBuilder<'static>;

fn finish(fbb: &mut Fbb, kind: fb::ClientBody, body: WIPOffset<flatbuffers::UnionWIPOffset>) {
    let root = fb::ClientFrame::create(
        fbb,
        &fb::ClientFrameArgs {
            body_type: kind,
            body: Some(body),
        },
    );
    fb::finish_client_frame_buffer(fbb, root);
}

fn error_fields(error: &ServerError) -> (fb::ErrorKind, Option<NodeId>, u64, u64, u32, &str) {
    match error {
        ServerError::NotLeader { hint } => (fb::ErrorKind::NotLeader, *hint, 0, 0, 0, ""),
        ServerError::Overloaded => (fb::ErrorKind::Overloaded, None, 0, 0, 0, ""),
        ServerError::TooLarge { size, max } => (fb::ErrorKind::TooLarge, None, *size, *max, 0, ""),
        ServerError::Stopped => (fb::ErrorKind::Stopped, None, 0, 0, 0, ""),
        ServerError::Indeterminate => (fb::ErrorKind::Indeterminate, None, 0, 0, 0, ""),
        ServerError::Aborted => (fb::ErrorKind::Aborted, None, 0, 0, 0, ""),
        ServerError::NoSuchGroup { group } => (fb::ErrorKind::NoSuchGroup, None, 0, 0, group.0, ""),
        ServerError::LeaseNotHeld => (fb::ErrorKind::LeaseNotHeld, None, 0, 0, 0, ""),
        ServerError::Rejected { reason } => (fb::ErrorKind::Rejected, None, 0, 0, 0, reason),
        // `first_available` travels in a field of its own (`Failed.first_available`).
        ServerError::Truncated { .. } => (fb::ErrorKind::Truncated, None, 0, 0, 0, ""),
    }
}

fn role_of(role: Role) -> fb::Role {
    match role {
        Role::Follower => fb::Role::Follower,
        Role::Candidate => fb::Role::Candidate,
        Role::Leader => fb::Role::Leader,
    }
}

fn group_state(g: &GroupStatus) -> fb::GroupState {
    fb::GroupState::new(
        g.promised.round,
        g.chosen_through.0,
        g.applied_through.0,
        g.checkpoint_through.0,
        g.group.0,
        g.promised.node.0,
        g.leader_hint.map_or(0, |n| n.0),
        g.checksum,
        role_of(g.role),
        g.leader_hint.is_some(),
        g.voting,
        g.fenced,
        g.retired,
    )
}

fn shard_state(fbb: &mut Fbb, s: &ShardStatus) -> WIPOffset<fb::ShardState<'static>> {
    let states: Vec<fb::GroupState> = s.groups.iter().map(group_state).collect();
    let groups = fbb.create_vector(&states);
    let fatal = s.fatal.as_deref().map(|f| fbb.create_string(f));
    let peers: Vec<fb::PeerState> = s
        .metrics
        .peers
        .iter()
        .map(|p| {
            fb::PeerState::new(
                p.queue_size,
                p.node.0,
                p.outbound_connected,
                p.inbound_connected,
            )
        })
        .collect();
    let peers = fbb.create_vector(&peers);
    fb::ShardState::create(
        fbb,
        &fb::ShardStateArgs {
            shard: s.shard,
            writes: s.writes,
            write_busy_ns: s.write_busy_ns,
            iterations: s.iterations,
            disk_ns: s.disk_ns,
            sync_ns: s.sync_ns,
            records: s.records,
            elections: s.elections,
            chosen_as_leader: s.chosen_as_leader,
            value_instances_applied: s.value_instances_applied,
            values_applied: s.values_applied,
            dropped_messages: s.dropped_messages,
            refused_connections: s.refused_connections,
            refused_messages: s.refused_messages,
            groups: Some(groups),
            fatal,
            durable_lsn: s.metrics.durable_lsn,
            planned_lsn: s.metrics.planned_lsn,
            peers: Some(peers),
        },
    )
}

/// Writes a whole `ClientFrame` holding `body` into `fbb`.
#[expect(
    clippy::too_many_lines,
    reason = "one arm per body kind of schema/client.fbs, each a field-by-field table \
              build that shares nothing with the others"
)]
fn build(fbb: &mut Fbb, body: &Body) {
    match body {
        Body::Hello {
            protocol_version,
            cluster,
            nonce,
        } => {
            let nonce = (!nonce.is_empty()).then(|| fbb.create_vector(nonce.as_ref()));
            let t = fb::Hello::create(
                fbb,
                &fb::HelloArgs {
                    protocol_version: *protocol_version,
                    cluster: *cluster,
                    nonce,
                },
            );
            finish(fbb, fb::ClientBody::Hello, t.as_union_value());
        }
        Body::Challenge { nonce, proof } => {
            let nonce = fbb.create_vector(nonce.as_ref());
            let proof = fbb.create_vector(proof.as_ref());
            let t = fb::Challenge::create(
                fbb,
                &fb::ChallengeArgs {
                    nonce: Some(nonce),
                    proof: Some(proof),
                },
            );
            finish(fbb, fb::ClientBody::Challenge, t.as_union_value());
        }
        Body::Proof { proof } => {
            let proof = fbb.create_vector(proof.as_ref());
            let t = fb::Proof::create(fbb, &fb::ProofArgs { proof: Some(proof) });
            finish(fbb, fb::ClientBody::Proof, t.as_union_value());
        }
        Body::Welcome {
            protocol_version,
            cluster,
            node,
            nodes,
            addresses,
        } => {
            let ids: Vec<u32> = nodes.iter().map(|n| n.0).collect();
            let ids = fbb.create_vector(&ids);
            let mut entries = Vec::with_capacity(addresses.len());
            for (id, address) in addresses {
                let address = fbb.create_string(address);
                entries.push(fb::NodeAddress::create(
                    fbb,
                    &fb::NodeAddressArgs {
                        node: id.0,
                        address: Some(address),
                    },
                ));
            }
            let entries = fbb.create_vector(&entries);
            let t = fb::Welcome::create(
                fbb,
                &fb::WelcomeArgs {
                    protocol_version: *protocol_version,
                    cluster: *cluster,
                    node: node.0,
                    nodes: Some(ids),
                    addresses: Some(entries),
                },
            );
            finish(fbb, fb::ClientBody::Welcome, t.as_union_value());
        }
        Body::Refused { reason } => {
            let reason = fbb.create_string(reason);
            let t = fb::Refused::create(
                fbb,
                &fb::RefusedArgs {
                    reason: Some(reason),
                },
            );
            finish(fbb, fb::ClientBody::Refused, t.as_union_value());
        }
        Body::Propose {
            request,
            group,
            value,
        } => {
            let value = fbb.create_vector(value.as_ref());
            let t = fb::Propose::create(
                fbb,
                &fb::ProposeArgs {
                    request: *request,
                    group: group.0,
                    value: Some(value),
                },
            );
            finish(fbb, fb::ClientBody::Propose, t.as_union_value());
        }
        Body::Read {
            request,
            group,
            query,
        } => {
            let query = fbb.create_vector(query.as_ref());
            let t = fb::Read::create(
                fbb,
                &fb::ReadArgs {
                    request: *request,
                    group: group.0,
                    query: Some(query),
                },
            );
            finish(fbb, fb::ClientBody::Read, t.as_union_value());
        }
        Body::Status { request } => {
            let t = fb::Status::create(fbb, &fb::StatusArgs { request: *request });
            finish(fbb, fb::ClientBody::Status, t.as_union_value());
        }
        Body::ProposeDone {
            request,
            position,
            output,
        } => {
            let output = fbb.create_vector(output.as_ref());
            let t = fb::ProposeDone::create(
                fbb,
                &fb::ProposeDoneArgs {
                    request: *request,
                    instance: position.instance.0,
                    index: position.index,
                    output: Some(output),
                },
            );
            finish(fbb, fb::ClientBody::ProposeDone, t.as_union_value());
        }
        Body::ReadDone { request, output } => {
            let output = fbb.create_vector(output.as_ref());
            let t = fb::ReadDone::create(
                fbb,
                &fb::ReadDoneArgs {
                    request: *request,
                    output: Some(output),
                },
            );
            finish(fbb, fb::ClientBody::ReadDone, t.as_union_value());
        }
        Body::Failed { request, error } => {
            let (kind, hint, size, max, group, reason) = error_fields(error);
            let reason = (!reason.is_empty()).then(|| fbb.create_string(reason));
            let first_available = match error {
                ServerError::Truncated { first_available } => first_available.0,
                _ => 0,
            };
            let t = fb::Failed::create(
                fbb,
                &fb::FailedArgs {
                    request: *request,
                    kind,
                    has_hint: hint.is_some(),
                    hint: hint.map_or(0, |n| n.0),
                    size,
                    max,
                    group,
                    reason,
                    first_available,
                },
            );
            finish(fbb, fb::ClientBody::Failed, t.as_union_value());
        }
        Body::ReadLog {
            request,
            group,
            from,
            size_max,
        } => {
            let t = fb::ReadLog::create(
                fbb,
                &fb::ReadLogArgs {
                    request: *request,
                    group: group.0,
                    from_instance: from.instance.0,
                    from_index: from.index,
                    size_max: *size_max,
                },
            );
            finish(fbb, fb::ClientBody::ReadLog, t.as_union_value());
        }
        Body::TransferLeadership { request, group, to } => {
            let args = fb::TransferLeadershipArgs {
                request: *request,
                group: group.0,
                to: to.0,
            };
            let t = fb::TransferLeadership::create(fbb, &args);
            finish(fbb, fb::ClientBody::TransferLeadership, t.as_union_value());
        }
        Body::ChangeMembership {
            request,
            group,
            change,
        } => {
            let (action, node) = match change {
                MembershipChange::AddVoter(node) => (fb::MembershipAction::AddVoter, node),
                MembershipChange::RemoveVoter(node) => (fb::MembershipAction::RemoveVoter, node),
            };
            let args = fb::ChangeMembershipArgs {
                request: *request,
                group: group.0,
                action,
                node: node.0,
            };
            let t = fb::ChangeMembership::create(fbb, &args);
            finish(fbb, fb::ClientBody::ChangeMembership, t.as_union_value());
        }
        Body::Done { request } => {
            let t = fb::Done::create(fbb, &fb::DoneArgs { request: *request });
            finish(fbb, fb::ClientBody::Done, t.as_union_value());
        }
        Body::ReadLogDone { request, read } => {
            let mut values = Vec::with_capacity(read.entries.len());
            for entry in &read.entries {
                let value = fbb.create_vector(entry.value.as_ref());
                values.push(fb::LogValue::create(
                    fbb,
                    &fb::LogValueArgs {
                        instance: entry.position.instance.0,
                        index: entry.position.index,
                        value: Some(value),
                    },
                ));
            }
            let entries = fbb.create_vector(&values);
            let t = fb::ReadLogDone::create(
                fbb,
                &fb::ReadLogDoneArgs {
                    request: *request,
                    entries: Some(entries),
                    next_instance: read.next.instance.0,
                    next_index: read.next.index,
                    chosen_through: read.chosen_through.0,
                },
            );
            finish(fbb, fb::ClientBody::ReadLogDone, t.as_union_value());
        }
        Body::StatusDone { request, status } => {
            let shards: Vec<_> = status.shards.iter().map(|s| shard_state(fbb, s)).collect();
            let shards = fbb.create_vector(&shards);
            let t = fb::StatusDone::create(
                fbb,
                &fb::StatusDoneArgs {
                    request: *request,
                    node: status.node.0,
                    shards: Some(shards),
                },
            );
            finish(fbb, fb::ClientBody::StatusDone, t.as_union_value());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Decoding.

/// Splits the first frame off the front of `buf` and decodes it.
///
/// Returns `Ok(None)` while the frame is incomplete (read more and call again), or
/// `Ok(Some((body, consumed)))` where `consumed` is the bytes to drop from `buf`.
///
/// # Errors
///
/// Any [`CodecError`]: the stream is lost, close the connection.
pub fn decode_next(buf: &[u8], frame_size_max: usize) -> Result<Option<(Body, usize)>, CodecError> {
    match split_frame(buf, frame_size_max)? {
        None => Ok(None),
        Some((payload, consumed)) => Ok(Some((decode_payload(payload)?, consumed))),
    }
}

/// Decodes one frame's payload (CRC + flatbuffer, without the length header).
///
/// # Errors
///
/// Any [`CodecError`] but `TooLarge` (the caller has bounded the size).
pub fn decode_payload(payload: &[u8]) -> Result<Body, CodecError> {
    let size = payload.len();
    let Some((stored, flatbuffer)) = payload.split_first_chunk::<CRC_SIZE>() else {
        return Err(CodecError::TooShort { size });
    };
    if flatbuffer.len() < FLATBUFFER_SIZE_MIN {
        return Err(CodecError::TooShort { size });
    }
    let stored = u32::from_le_bytes(*stored);
    let computed = crc32c::crc32c(flatbuffer);
    if stored != computed {
        return Err(CodecError::BadCrc { stored, computed });
    }
    let mut found = [0_u8; 4];
    for (slot, byte) in found.iter_mut().zip(flatbuffer.iter().skip(4)) {
        *slot = *byte;
    }
    if found != FILE_IDENTIFIER {
        return Err(CodecError::BadIdentifier { found });
    }
    let options = VerifierOptions {
        max_depth: TABLE_DEPTH_MAX,
        max_tables: flatbuffer.len() / TABLE_BYTES_MIN + 1,
        max_apparent_size: flatbuffer.len().saturating_mul(APPARENT_SIZE_FACTOR),
        ignore_missing_null_terminator: false,
    };
    let frame = fb::root_as_client_frame_with_opts(&options, flatbuffer)?;
    Decoder {
        frame_size: flatbuffer.len(),
        payload_size: 0,
    }
    .body(frame)
}

/// The payload budget of one frame being decoded.
struct Decoder {
    frame_size: usize,
    /// Bytes copied out so far; an honest frame's payload regions are disjoint.
    payload_size: usize,
}

impl Decoder {
    fn charge(&mut self, size: usize) -> Result<(), CodecError> {
        self.payload_size = self.payload_size.saturating_add(size);
        if self.payload_size > self.frame_size {
            return Err(CodecError::PayloadAliased {
                payload_size: self.payload_size,
                frame_size: self.frame_size,
            });
        }
        Ok(())
    }

    fn bytes(&mut self, v: flatbuffers::Vector<'_, u8>) -> Result<Bytes, CodecError> {
        self.charge(v.len())?;
        Ok(Bytes::copy_from_slice(v.bytes()))
    }

    fn string(&mut self, s: &str) -> Result<String, CodecError> {
        self.charge(s.len())?;
        Ok(s.to_string())
    }

    fn body(&mut self, frame: fb::ClientFrame<'_>) -> Result<Body, CodecError> {
        if let Some(t) = frame.body_as_hello() {
            return Ok(Body::Hello {
                protocol_version: t.protocol_version(),
                cluster: t.cluster(),
                nonce: t
                    .nonce()
                    .map(|v| self.bytes(v))
                    .transpose()?
                    .unwrap_or_default(),
            });
        }
        if let Some(t) = frame.body_as_challenge() {
            return Ok(Body::Challenge {
                nonce: self.bytes(t.nonce())?,
                proof: self.bytes(t.proof())?,
            });
        }
        if let Some(t) = frame.body_as_proof() {
            return Ok(Body::Proof {
                proof: self.bytes(t.proof())?,
            });
        }
        if let Some(t) = frame.body_as_welcome() {
            let nodes = t.nodes();
            self.charge(nodes.len() * 4)?;
            let mut addresses = Vec::new();
            for entry in t.addresses() {
                addresses.push((NodeId(entry.node()), self.string(entry.address())?));
            }
            return Ok(Body::Welcome {
                protocol_version: t.protocol_version(),
                cluster: t.cluster(),
                node: NodeId(t.node()),
                nodes: nodes.iter().map(NodeId).collect(),
                addresses,
            });
        }
        if let Some(t) = frame.body_as_refused() {
            return Ok(Body::Refused {
                reason: self.string(t.reason())?,
            });
        }
        if let Some(t) = frame.body_as_propose() {
            return Ok(Body::Propose {
                request: t.request(),
                group: GroupId(t.group()),
                value: self.bytes(t.value())?,
            });
        }
        if let Some(t) = frame.body_as_read() {
            return Ok(Body::Read {
                request: t.request(),
                group: GroupId(t.group()),
                query: self.bytes(t.query())?,
            });
        }
        if let Some(t) = frame.body_as_status() {
            return Ok(Body::Status {
                request: t.request(),
            });
        }
        if let Some(t) = frame.body_as_propose_done() {
            return Ok(Body::ProposeDone {
                request: t.request(),
                position: Position {
                    instance: Instance(t.instance()),
                    index: t.index(),
                },
                output: self.bytes(t.output())?,
            });
        }
        if let Some(t) = frame.body_as_read_log() {
            return Ok(Body::ReadLog {
                request: t.request(),
                group: GroupId(t.group()),
                from: Position {
                    instance: Instance(t.from_instance()),
                    index: t.from_index(),
                },
                size_max: t.size_max(),
            });
        }
        if let Some(t) = frame.body_as_read_log_done() {
            return self.read_log_done(&t);
        }
        if let Some(body) = admin_body(&frame) {
            return body;
        }
        if let Some(t) = frame.body_as_read_done() {
            return Ok(Body::ReadDone {
                request: t.request(),
                output: self.bytes(t.output())?,
            });
        }
        if let Some(t) = frame.body_as_failed() {
            return Ok(Body::Failed {
                request: t.request(),
                error: self.failure(&t)?,
            });
        }
        if let Some(t) = frame.body_as_status_done() {
            let mut shards = Vec::new();
            for s in t.shards() {
                shards.push(self.shard(&s)?);
            }
            return Ok(Body::StatusDone {
                request: t.request(),
                status: NodeStatus {
                    node: NodeId(t.node()),
                    shards,
                },
            });
        }
        Err(CodecError::UnknownUnion {
            tag: frame.body_type().0,
        })
    }

    fn read_log_done(&mut self, t: &fb::ReadLogDone<'_>) -> Result<Body, CodecError> {
        let values = t.entries();
        // Each value's position is 12 bytes of the frame at least.
        self.charge(values.len().saturating_mul(12))?;
        let mut entries = Vec::with_capacity(values.len());
        for value in values {
            entries.push(LogEntry {
                position: Position {
                    instance: Instance(value.instance()),
                    index: value.index(),
                },
                value: self.bytes(value.value())?,
            });
        }
        Ok(Body::ReadLogDone {
            request: t.request(),
            read: LogRead {
                entries,
                next: Position {
                    instance: Instance(t.next_instance()),
                    index: t.next_index(),
                },
                chosen_through: Instance(t.chosen_through()),
            },
        })
    }

    fn failure(&mut self, t: &fb::Failed<'_>) -> Result<ServerError, CodecError> {
        let kind = t.kind();
        Ok(match kind {
            fb::ErrorKind::NotLeader => ServerError::NotLeader {
                hint: t.has_hint().then_some(NodeId(t.hint())),
            },
            fb::ErrorKind::Overloaded => ServerError::Overloaded,
            fb::ErrorKind::TooLarge => ServerError::TooLarge {
                size: t.size(),
                max: t.max(),
            },
            fb::ErrorKind::Stopped => ServerError::Stopped,
            fb::ErrorKind::Indeterminate => ServerError::Indeterminate,
            fb::ErrorKind::Aborted => ServerError::Aborted,
            fb::ErrorKind::NoSuchGroup => ServerError::NoSuchGroup {
                group: GroupId(t.group()),
            },
            fb::ErrorKind::LeaseNotHeld => ServerError::LeaseNotHeld,
            fb::ErrorKind::Rejected => ServerError::Rejected {
                reason: self.string(t.reason().unwrap_or(""))?,
            },
            fb::ErrorKind::Truncated => ServerError::Truncated {
                first_available: Instance(t.first_available()),
            },
            // The generated enum is open (a newtype over u8).
            unknown => {
                return Err(CodecError::UnknownEnum {
                    field: "Failed.kind",
                    value: unknown.0,
                })
            }
        })
    }

    fn shard(&mut self, s: &fb::ShardState<'_>) -> Result<ShardStatus, CodecError> {
        let states = s.groups();
        self.charge(states.len() * std::mem::size_of::<fb::GroupState>())?;
        let mut groups = Vec::with_capacity(states.len());
        for g in states {
            let role = match g.role() {
                fb::Role::Follower => Role::Follower,
                fb::Role::Candidate => Role::Candidate,
                fb::Role::Leader => Role::Leader,
                unknown => {
                    return Err(CodecError::UnknownEnum {
                        field: "GroupState.role",
                        value: unknown.0,
                    })
                }
            };
            groups.push(GroupStatus {
                group: GroupId(g.group()),
                role,
                leader_hint: g.has_leader_hint().then_some(NodeId(g.leader_hint())),
                promised: Ballot {
                    round: g.promised_round(),
                    node: NodeId(g.promised_node()),
                },
                chosen_through: Instance(g.chosen_through()),
                applied_through: Instance(g.applied_through()),
                checksum: g.checksum(),
                voting: g.voting(),
                fenced: g.fenced(),
                retired: g.retired(),
                checkpoint_through: Instance(g.checkpoint_through()),
                memory: None,
                voters: None,
            });
        }
        let fatal = s.fatal().map(|f| self.string(f)).transpose()?;
        Ok(ShardStatus {
            shard: s.shard(),
            groups,
            writes: s.writes(),
            write_busy_ns: s.write_busy_ns(),
            iterations: s.iterations(),
            disk_ns: s.disk_ns(),
            sync_ns: s.sync_ns(),
            records: s.records(),
            elections: s.elections(),
            chosen_as_leader: s.chosen_as_leader(),
            value_instances_applied: s.value_instances_applied(),
            values_applied: s.values_applied(),
            // Not in the client protocol yet.
            checkpoints_saved: 0,
            checkpoints_failed: 0,
            thread_id: None,
            dropped_messages: s.dropped_messages(),
            refused_connections: s.refused_connections(),
            refused_messages: s.refused_messages(),
            ignored: std::collections::BTreeMap::new(),
            log_reads: Default::default(),
            wal_index_slots: 0,
            wal_index_size: 0,
            net_buffer_size: 0,
            catch_up: Default::default(),
            fatal,
            // Not in the client protocol.
            recovery: Default::default(),
            // Of the metrics, the WAL's watermarks and the peer links only.
            metrics: ShardMetrics {
                durable_lsn: s.durable_lsn(),
                planned_lsn: s.planned_lsn(),
                peers: s
                    .peers()
                    .map(|peers| {
                        peers
                            .iter()
                            .map(|p| PeerLink {
                                node: NodeId(p.node()),
                                outbound_connected: p.outbound_connected(),
                                inbound_connected: p.inbound_connected(),
                                queue_size: p.queue_size(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                ..ShardMetrics::default()
            },
        })
    }
}

/// Bytes of the length header and the CRC in front of every flatbuffer.
pub const FRAME_OVERHEAD_SIZE: usize = FRAME_HEADER_SIZE + CRC_SIZE;

/// The leadership and membership bodies of `frame`, if it holds one (`Reader::body`).
fn admin_body(frame: &fb::ClientFrame<'_>) -> Option<Result<Body, CodecError>> {
    if let Some(t) = frame.body_as_transfer_leadership() {
        return Some(Ok(Body::TransferLeadership {
            request: t.request(),
            group: GroupId(t.group()),
            to: NodeId(t.to()),
        }));
    }
    if let Some(t) = frame.body_as_change_membership() {
        let node = NodeId(t.node());
        let change = match t.action() {
            fb::MembershipAction::AddVoter => MembershipChange::AddVoter(node),
            fb::MembershipAction::RemoveVoter => MembershipChange::RemoveVoter(node),
            unknown => {
                return Some(Err(CodecError::UnknownEnum {
                    field: "ChangeMembership.action",
                    value: unknown.0,
                }))
            }
        };
        return Some(Ok(Body::ChangeMembership {
            request: t.request(),
            group: GroupId(t.group()),
            change,
        }));
    }
    if let Some(t) = frame.body_as_done() {
        return Some(Ok(Body::Done {
            request: t.request(),
        }));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::wire::PROTOCOL_VERSION;

    const MAX: usize = 1 << 20;

    fn round_trip(body: &Body) {
        let mut out = Vec::new();
        encode(body, MAX, &mut out).expect("fits");
        let (decoded, consumed) = decode_next(&out, MAX).expect("decodes").expect("complete");
        assert_eq!(consumed, out.len());
        assert_eq!(&decoded, body);
        // Every strict prefix is incomplete, never an error.
        for cut in [0, 3, 4, 7, out.len() - 1] {
            assert_eq!(decode_next(&out[..cut], MAX), Ok(None), "cut at {cut}");
        }
    }

    fn sample_status() -> NodeStatus {
        let group = |g: u32, role: Role, hint: Option<NodeId>| GroupStatus {
            group: GroupId(g),
            role,
            leader_hint: hint,
            promised: Ballot {
                round: 7 + u64::from(g),
                node: NodeId(2),
            },
            chosen_through: Instance(100 + u64::from(g)),
            applied_through: Instance(99 + u64::from(g)),
            checksum: 0xDEAD_BEEF ^ g,
            voting: g % 2 == 0,
            fenced: g == 2,
            retired: g == 3,
            checkpoint_through: Instance(50 + u64::from(g)),
            memory: None,
            voters: None,
        };
        NodeStatus {
            node: NodeId(3),
            shards: vec![
                ShardStatus {
                    shard: 0,
                    groups: vec![
                        group(0, Role::Leader, Some(NodeId(3))),
                        group(2, Role::Follower, None),
                    ],
                    writes: 1,
                    write_busy_ns: 2,
                    iterations: 3,
                    disk_ns: 4,
                    sync_ns: 3,
                    records: 5,
                    elections: 6,
                    chosen_as_leader: 7,
                    value_instances_applied: 8,
                    values_applied: 9,
                    checkpoints_saved: 0,
                    checkpoints_failed: 0,
                    thread_id: None,
                    dropped_messages: 10,
                    refused_connections: 11,
                    refused_messages: 12,
                    ignored: std::collections::BTreeMap::new(),
                    log_reads: Default::default(),
                    wal_index_slots: 0,
                    wal_index_size: 0,
                    net_buffer_size: 0,
                    catch_up: Default::default(),
                    fatal: None,
                    recovery: Default::default(),
                    // What the protocol carries of the metrics.
                    metrics: ShardMetrics {
                        durable_lsn: 13,
                        planned_lsn: 14,
                        peers: vec![
                            PeerLink {
                                node: NodeId(1),
                                outbound_connected: true,
                                inbound_connected: false,
                                queue_size: 15,
                            },
                            PeerLink {
                                node: NodeId(2),
                                outbound_connected: false,
                                inbound_connected: true,
                                queue_size: 0,
                            },
                        ],
                        ..ShardMetrics::default()
                    },
                },
                ShardStatus {
                    shard: 1,
                    groups: vec![group(1, Role::Candidate, Some(NodeId(1)))],
                    fatal: Some("fdatasync failed".to_string()),
                    ..ShardStatus::default()
                },
            ],
        }
    }

    fn log_read_bodies() -> Vec<Body> {
        vec![
            Body::ReadLog {
                request: 7,
                group: GroupId(2),
                from: Position {
                    instance: Instance(5),
                    index: 1,
                },
                size_max: 1 << 20,
            },
            Body::ReadLogDone {
                request: 8,
                read: LogRead {
                    entries: vec![
                        LogEntry {
                            position: Position {
                                instance: Instance(5),
                                index: 1,
                            },
                            value: Bytes::from_static(b"a"),
                        },
                        LogEntry {
                            position: Position::at(Instance(7)),
                            value: Bytes::new(),
                        },
                    ],
                    next: Position::at(Instance(8)),
                    chosen_through: Instance(9),
                },
            },
            Body::ReadLogDone {
                request: 9,
                read: LogRead {
                    entries: Vec::new(),
                    next: Position::START,
                    chosen_through: Instance(0),
                },
            },
        ]
    }

    fn every_body() -> Vec<Body> {
        let mut bodies = vec![
            Body::Hello {
                protocol_version: PROTOCOL_VERSION,
                cluster: 0x1122_3344_5566_7788,
                nonce: Bytes::from_static(&[7; 16]),
            },
            Body::Hello {
                protocol_version: PROTOCOL_VERSION,
                cluster: 1,
                nonce: Bytes::new(),
            },
            Body::Challenge {
                nonce: Bytes::from_static(&[1; 16]),
                proof: Bytes::from_static(&[2; 32]),
            },
            Body::Proof {
                proof: Bytes::from_static(&[3; 32]),
            },
            Body::Welcome {
                protocol_version: PROTOCOL_VERSION,
                cluster: 42,
                node: NodeId(2),
                nodes: vec![NodeId(1), NodeId(2), NodeId(3)],
                addresses: vec![
                    (NodeId(1), "127.0.0.1:7100".to_string()),
                    (NodeId(2), "[::1]:7200".to_string()),
                ],
            },
            Body::Refused {
                reason: "cluster 7, expected 42".to_string(),
            },
            Body::Propose {
                request: 1,
                group: GroupId(9),
                value: Bytes::from_static(b"hello"),
            },
            Body::Propose {
                request: u64::MAX,
                group: GroupId(0),
                value: Bytes::new(),
            },
            Body::Read {
                request: 2,
                group: GroupId(1),
                query: Bytes::from_static(b"k"),
            },
            Body::Status { request: 3 },
            Body::ProposeDone {
                request: 4,
                position: Position {
                    instance: Instance(77),
                    index: 3,
                },
                output: Bytes::from_static(b"out"),
            },
            Body::ReadDone {
                request: 5,
                output: Bytes::from(vec![0_u8; 1000]),
            },
            Body::StatusDone {
                request: 6,
                status: sample_status(),
            },
        ];
        let errors = [
            ServerError::NotLeader {
                hint: Some(NodeId(2)),
            },
            ServerError::NotLeader { hint: None },
            ServerError::Overloaded,
            ServerError::TooLarge { size: 10, max: 5 },
            ServerError::Stopped,
            ServerError::Indeterminate,
            ServerError::Aborted,
            ServerError::NoSuchGroup { group: GroupId(12) },
            ServerError::LeaseNotHeld,
            ServerError::Rejected {
                reason: "membership change in progress".to_string(),
            },
            ServerError::Truncated {
                first_available: Instance(31),
            },
        ];
        for (request, error) in errors.into_iter().enumerate() {
            bodies.push(Body::Failed {
                request: request as u64,
                error,
            });
        }
        bodies.extend(log_read_bodies());
        bodies.extend([
            Body::TransferLeadership {
                request: 10,
                group: GroupId(3),
                to: NodeId(2),
            },
            Body::ChangeMembership {
                request: 11,
                group: GroupId(3),
                change: MembershipChange::AddVoter(NodeId(4)),
            },
            Body::ChangeMembership {
                request: 12,
                group: GroupId(0),
                change: MembershipChange::RemoveVoter(NodeId(1)),
            },
            Body::Done { request: 13 },
        ]);
        bodies
    }

    // Goal: every message and every error kind survives encode then decode unchanged.
    // Method: round-trip one of each, and check every prefix reads as incomplete.
    #[test]
    fn round_trip_every_body() {
        for body in every_body() {
            round_trip(&body);
        }
    }

    // Goal: frames follow each other on a stream and decode one at a time.
    // Method: encode three bodies into one buffer, decode them in order.
    #[test]
    fn frames_split_on_a_stream() {
        let bodies = every_body();
        let mut encoder = Encoder::new();
        let mut out = Vec::new();
        for body in &bodies[..3] {
            encoder.encode(body, MAX, &mut out).expect("fits");
        }
        let mut at = 0;
        for body in &bodies[..3] {
            let (decoded, consumed) = decode_next(&out[at..], MAX).expect("ok").expect("whole");
            assert_eq!(&decoded, body);
            at += consumed;
        }
        assert_eq!(at, out.len());
    }

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        append_frame(payload, MAX, &mut out).expect("fits");
        out
    }

    // Goal: each check of the decoder refuses the input it is there for.
    // Method: an oversized header, a short frame, a flipped bit (CRC), a wrong
    // identifier with a good CRC, garbage with a good CRC, and an unknown union tag.
    #[test]
    fn decoder_refuses_bad_frames() {
        // Oversized length: refused from the 4 header bytes alone.
        let header = ((MAX + 1) as u32).to_le_bytes();
        assert_eq!(
            decode_next(&header, MAX),
            Err(CodecError::TooLarge {
                size: MAX + 1,
                max: MAX
            })
        );
        // Too short for a CRC and a root.
        assert_eq!(
            decode_next(&framed(&[1, 2, 3]), MAX),
            Err(CodecError::TooShort { size: 3 })
        );
        // A flipped bit anywhere in the flatbuffer breaks the CRC.
        let mut good = Vec::new();
        encode(&every_body()[6], MAX, &mut good).expect("fits");
        for at in FRAME_OVERHEAD_SIZE..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            assert!(
                matches!(decode_next(&bad, MAX), Err(CodecError::BadCrc { .. })),
                "flip at {at}"
            );
        }
        // A good CRC over bytes that are not a client frame.
        let with_crc = |flatbuffer: &[u8]| {
            let mut payload = crc32c::crc32c(flatbuffer).to_le_bytes().to_vec();
            payload.extend_from_slice(flatbuffer);
            framed(&payload)
        };
        let mut peer = good[FRAME_OVERHEAD_SIZE..].to_vec();
        peer[4..8].copy_from_slice(b"SYNW");
        assert_eq!(
            decode_next(&with_crc(&peer), MAX),
            Err(CodecError::BadIdentifier { found: *b"SYNW" })
        );
        let mut garbage = vec![0xFF_u8; 64];
        garbage[4..8].copy_from_slice(b"SYNC");
        assert!(matches!(
            decode_next(&with_crc(&garbage), MAX),
            Err(CodecError::Verifier(_))
        ));
        // An unknown union tag, written by a builder that knows no better.
        let mut fbb = FlatBufferBuilder::new();
        let hello = fb::Hello::create(&mut fbb, &fb::HelloArgs::default());
        let root = fb::ClientFrame::create(
            &mut fbb,
            &fb::ClientFrameArgs {
                body_type: fb::ClientBody(200),
                body: Some(hello.as_union_value()),
            },
        );
        fb::finish_client_frame_buffer(&mut fbb, root);
        assert_eq!(
            decode_next(&with_crc(fbb.finished_data()), MAX),
            Err(CodecError::UnknownUnion { tag: 200 })
        );
        // An unknown error kind.
        let mut fbb = FlatBufferBuilder::new();
        let failed = fb::Failed::create(
            &mut fbb,
            &fb::FailedArgs {
                kind: fb::ErrorKind(99),
                ..fb::FailedArgs::default()
            },
        );
        finish_test(&mut fbb, fb::ClientBody::Failed, failed.as_union_value());
        assert_eq!(
            decode_next(&with_crc(fbb.finished_data()), MAX),
            Err(CodecError::UnknownEnum {
                field: "Failed.kind",
                value: 99
            })
        );
        // An unknown membership action (a newer client's).
        let mut fbb = FlatBufferBuilder::new();
        let change = fb::ChangeMembership::create(
            &mut fbb,
            &fb::ChangeMembershipArgs {
                action: fb::MembershipAction(9),
                ..fb::ChangeMembershipArgs::default()
            },
        );
        finish_test(
            &mut fbb,
            fb::ClientBody::ChangeMembership,
            change.as_union_value(),
        );
        assert_eq!(
            decode_next(&with_crc(fbb.finished_data()), MAX),
            Err(CodecError::UnknownEnum {
                field: "ChangeMembership.action",
                value: 9
            })
        );
    }

    fn finish_test(
        fbb: &mut FlatBufferBuilder<'_>,
        kind: fb::ClientBody,
        body: WIPOffset<flatbuffers::UnionWIPOffset>,
    ) {
        let root = fb::ClientFrame::create(
            fbb,
            &fb::ClientFrameArgs {
                body_type: kind,
                body: Some(body),
            },
        );
        fb::finish_client_frame_buffer(fbb, root);
    }

    // Goal: the encoder refuses a frame above the bound instead of writing it.
    // Method: encode a value larger than a small frame_size_max.
    #[test]
    fn encoder_refuses_oversized_frames() {
        let body = Body::Propose {
            request: 1,
            group: GroupId(0),
            value: Bytes::from(vec![7_u8; 200]),
        };
        let mut out = Vec::new();
        assert!(matches!(
            encode(&body, 100, &mut out),
            Err(CodecError::TooLarge { max: 100, .. })
        ));
        assert!(out.is_empty());
    }

    // Goal: decoding random bytes never panics.
    // Method: 20,000 random buffers (some with a valid CRC and identifier) through the
    // decoder, from a fixed seed.
    #[test]
    fn random_bytes_never_panic() {
        let mut prng = crate::prng::Prng::new(0xC11E);
        for _ in 0..20_000 {
            let len = prng.range(0, 300) as usize;
            let mut flatbuffer = vec![0_u8; len];
            prng.fill(&mut flatbuffer);
            if len >= 8 && prng.below(2) == 0 {
                flatbuffer[4..8].copy_from_slice(b"SYNC");
            }
            let mut payload = crc32c::crc32c(&flatbuffer).to_le_bytes().to_vec();
            payload.extend_from_slice(&flatbuffer);
            let _ = decode_payload(&payload);
            let _ = decode_next(&flatbuffer, MAX);
        }
    }

    // Goal: (re)write the client frame seeds of the fuzz corpus (fuzz/corpus/client_frame/).
    // Not a check: run on demand (`cargo test -- --ignored write_fuzz_seeds`).
    // Method: every body, as a whole frame (header, CRC, flatbuffer) and, for the fuzz
    // target's sealed path, as its flatbuffer alone.
    #[test]
    #[ignore = "writes fuzz/corpus/: cargo test -- --ignored write_fuzz_seeds"]
    fn write_fuzz_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/client_frame");
        std::fs::create_dir_all(&dir).expect("create the corpus directory");
        for (i, body) in every_body().iter().enumerate() {
            let mut frame = Vec::new();
            encode(body, MAX, &mut frame).expect("fits");
            let name = body.name();
            std::fs::write(dir.join(format!("seed-{i:02}-{name}-frame")), &frame).expect("write");
            let flatbuffer = &frame[FRAME_OVERHEAD_SIZE..];
            std::fs::write(
                dir.join(format!("seed-{i:02}-{name}-flatbuffer")),
                flatbuffer,
            )
            .expect("write");
        }
    }
}
