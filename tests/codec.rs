//! Wire codec tests: round trips of every frame body, hostile input (random and mutated
//! frames, aliased offsets), every limit with its error variant, and the framing helper.
//!
//! A counting global allocator (per thread) checks that decoding never allocates more
//! than a small multiple of the input, whatever the input.

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, VerifierOptions, WIPOffset};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use synod::paxos::bounds::CHECKPOINT_SIZE_MAX;
use synod::paxos::{
    Ballot, Body, Bound, Entry, GroupId, Instance, InstanceRange, Lsn, Membership, Message,
    MessageBody, Nanos, NodeId, OutOfBounds, PromisedEntry, RawRun,
};
use synod::prng::Prng;
use synod::transport::limits::APPARENT_SIZE_FACTOR;
use synod::transport::{
    append_frame, decode, decode_catch_up_stream, decode_checkpoint_chunk, decode_frame,
    decode_handshake, decode_handshake_proof, decode_heartbeat_ack_batch, decode_heartbeat_batch,
    encode, encode_frame, split_frame, CatchUpStream, CheckpointChunk, DecodeError, DecodeLimits,
    Encoder, FrameBody, FrameError, GroupHeartbeat, GroupHeartbeatAck, Handshake, HandshakeProof,
    HeartbeatAckBatch, HeartbeatBatch, FRAME_HEADER_SIZE, PROTOCOL_VERSION,
};
use synod_wire as fb;

// ---------------------------------------------------------------------------------
// Allocation accounting
// ---------------------------------------------------------------------------------

struct CountingAllocator;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

fn count(size: usize) {
    let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(size)));
}

// SAFETY: forwards every call to `System` unchanged; only counts sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs `f` and returns its result with the bytes this thread allocated meanwhile.
fn allocated_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(Cell::get);
    let result = f();
    let after = ALLOCATED.with(Cell::get);
    (result, after - before)
}

/// Bound on what decoding `n` input bytes may allocate: the decoded Rust values are a
/// few times larger than their wire form (a 16-byte Message becomes ~90 bytes), never
/// more. Measured worst case is printed by `mutated_frames_never_panic`.
fn allocation_bound(input_size: usize) -> usize {
    16 * input_size + 1024
}

// ---------------------------------------------------------------------------------
// Random values
// ---------------------------------------------------------------------------------

fn u64_any(rng: &mut Prng) -> u64 {
    match rng.below(6) {
        0 => 0,
        1 => u64::MAX,
        2 => rng.below(1_000),
        3 => rng.below(1 << 32),
        _ => rng.next_u64(),
    }
}

/// A ballot round inside the bounds, edges included: 1 and `Ballot::ROUND_MAX`.
fn round_any(rng: &mut Prng) -> u64 {
    match rng.below(4) {
        0 => 1,
        1 => Ballot::ROUND_MAX,
        2 => rng.range(1, 1_000),
        _ => rng.range(1, Ballot::ROUND_MAX),
    }
}

/// A watermark inside the bounds, edges included: 0 and `Instance::MAX`.
fn watermark_any(rng: &mut Prng) -> Instance {
    Instance(match rng.below(4) {
        0 => 0,
        1 => Instance::MAX.0,
        2 => rng.below(1_000),
        _ => rng.range(0, Instance::MAX.0),
    })
}

fn u32_any(rng: &mut Prng) -> u32 {
    match rng.below(4) {
        0 => 0,
        1 => u32::MAX,
        2 => rng.below(16) as u32,
        _ => rng.next_u64() as u32,
    }
}

/// A log position that leaves room for `count` consecutive instances below
/// `Instance::MAX`.
fn position(rng: &mut Prng, count: usize) -> Instance {
    let max = Instance::MAX.0 - count as u64;
    Instance(match rng.below(4) {
        0 => 1,
        1 => max,
        _ => rng.range(1, max),
    })
}

/// A ballot a proposer may hold (round in `1..=Ballot::ROUND_MAX`).
fn ballot(rng: &mut Prng) -> Ballot {
    Ballot {
        round: round_any(rng),
        node: NodeId(u32_any(rng)),
    }
}

fn bytes(rng: &mut Prng, size_max: u64) -> Bytes {
    let size = if rng.below(8) == 0 {
        0
    } else {
        rng.below(size_max + 1)
    };
    let mut v = vec![0_u8; size as usize];
    rng.fill(&mut v);
    Bytes::from(v)
}

fn entry(rng: &mut Prng) -> Entry {
    let body = match rng.below(4) {
        0 => Body::Noop,
        1 => Body::StartWorking,
        2 => {
            let n = rng.range(1, 7) as usize;
            Body::Config(Membership::new(
                (0..n).map(|_| NodeId(u32_any(rng))).collect(),
            ))
        }
        _ => {
            let n = rng.below(5) as usize;
            Body::Values((0..n).map(|_| bytes(rng, 200)).collect())
        }
    };
    Entry {
        origin: ballot(rng),
        body,
    }
}

fn entries(rng: &mut Prng) -> Vec<Entry> {
    let n = rng.below(6) as usize;
    (0..n).map(|_| entry(rng)).collect()
}

fn ranges(rng: &mut Prng) -> Vec<InstanceRange> {
    let n = rng.below(6);
    let mut out = Vec::new();
    let mut next = rng.range(1, 1 << 40);
    for _ in 0..n {
        let first = next + rng.below(5);
        let last = first + rng.below(10);
        out.push(InstanceRange {
            first: Instance(first),
            last: Instance(last),
        });
        next = last + 1;
    }
    out
}

/// Number of `MessageBody` variants; `body` draws each with equal probability.
const BODY_KINDS: u64 = 15;

/// The lowest ballot a proposer holds (round 0 is never campaigned at).
const ROUND_ONE: Ballot = Ballot {
    round: 1,
    node: NodeId(0),
};

fn body(rng: &mut Prng, kind: u64) -> MessageBody {
    match kind {
        0 => MessageBody::Prepare {
            ballot: ballot(rng),
            from: position(rng, 1),
        },
        1 => {
            let n = rng.below(5);
            let mut instance = rng.range(1, 1 << 40);
            let entries = (0..n)
                .map(|_| {
                    instance += rng.range(1, 3);
                    PromisedEntry {
                        instance: Instance(instance),
                        ballot: ballot(rng),
                        chosen: rng.coin(),
                        entry: entry(rng),
                    }
                })
                .collect();
            MessageBody::Promise {
                ballot: ballot(rng),
                chosen_through: watermark_any(rng),
                entries,
                truncated: rng.coin(),
            }
        }
        2 => MessageBody::Reject {
            promised: ballot(rng),
        },
        3 => {
            let entries = entries(rng);
            MessageBody::Accept {
                ballot: ballot(rng),
                chosen_through: watermark_any(rng),
                first: position(rng, entries.len()),
                entries,
            }
        }
        4 => MessageBody::Accepted {
            ballot: ballot(rng),
            ranges: ranges(rng),
        },
        5 => MessageBody::Heartbeat {
            ballot: ballot(rng),
            chosen_through: watermark_any(rng),
            sent_at: Nanos(u64_any(rng)),
            checksum_through: watermark_any(rng),
            checksum: u32_any(rng),
        },
        6 => MessageBody::HeartbeatAck {
            ballot: ballot(rng),
            sent_at: Nanos(u64_any(rng)),
        },
        7 => catch_up_request(rng),
        9 => MessageBody::CheckpointRequest {
            through: position(rng, 1),
            offset: rng.below(CHECKPOINT_SIZE_MAX + 1),
        },
        11 => {
            let count = rng.range(1, 8);
            let pieces = (0..rng.below(4))
                .map(|_| Bytes::from(vec![rng.below(256) as u8; rng.below(64) as usize]))
                .collect();
            let first = position(rng, count as usize);
            MessageBody::CatchUpRaw {
                chosen_through: watermark_any(rng),
                promised: ballot(rng),
                accepted_max: watermark_any(rng),
                run: RawRun {
                    // The decoder takes the group from the message (`message`).
                    group: GroupId(0),
                    first_instance: first,
                    last_instance: Instance(first.0 + count - 1),
                    salt: u32_any(rng),
                    records: pieces,
                },
                from_voter: rng.below(2) == 0,
                membership_changed: first.0 % 2 == 0,
            }
        }
        10 => {
            let data = Bytes::from(vec![rng.below(256) as u8; rng.below(64) as usize]);
            let total_size = rng.range(data.len() as u64, CHECKPOINT_SIZE_MAX);
            MessageBody::CheckpointChunk {
                through: position(rng, 1),
                offset: rng.below(total_size - data.len() as u64 + 1),
                total_size,
                data,
            }
        }
        12 => MessageBody::Handover {
            ballot: ballot(rng),
            target: NodeId(u32_any(rng)),
        },
        13 => MessageBody::PreVote {
            ballot: ballot(rng),
        },
        14 => MessageBody::PreVoteReply {
            ballot: ballot(rng),
            granted: rng.below(2) == 0,
        },
        _ => {
            let entries = entries(rng);
            let chosen_through = watermark_any(rng);
            MessageBody::CatchUpChunk {
                chosen_through,
                promised: ballot(rng),
                accepted_max: watermark_any(rng),
                first: position(rng, entries.len()),
                entries,
                from_voter: rng.next_u64() % 2 == 0,
                membership_changed: chosen_through.0 % 2 == 1,
            }
        }
    }
}

/// A random `CatchUpRequest`; `retired` comes from the draws before it, so the
/// generator's stream stays as it was before the field.
fn catch_up_request(rng: &mut Prng) -> MessageBody {
    let from = position(rng, 1);
    let credit = u32::try_from(rng.next_u64() >> 32).expect("32 bits fit a u32");
    MessageBody::CatchUpRequest {
        from,
        credit,
        retired: credit % 2 == 0,
    }
}

fn message(rng: &mut Prng) -> Message {
    let kind = rng.below(BODY_KINDS);
    let group = GroupId(u32_any(rng));
    let mut body = body(rng, kind);
    if let MessageBody::CatchUpRaw { run, .. } = &mut body {
        run.group = group;
    }
    Message {
        group,
        from: NodeId(u32_any(rng)),
        to: NodeId(u32_any(rng)),
        body,
    }
}

fn messages(rng: &mut Prng) -> Vec<Message> {
    let n = rng.below(9) as usize;
    (0..n).map(|_| message(rng)).collect()
}

fn heartbeat_batch(rng: &mut Prng) -> HeartbeatBatch {
    let n = rng.below(20) as usize;
    HeartbeatBatch {
        from: NodeId(u32_any(rng)),
        to: NodeId(u32_any(rng)),
        heartbeats: (0..n)
            .map(|_| GroupHeartbeat {
                group: GroupId(u32_any(rng)),
                ballot: ballot(rng),
                chosen_through: watermark_any(rng),
                sent_at: Nanos(u64_any(rng)),
                checksum_through: watermark_any(rng),
                checksum: u32_any(rng),
            })
            .collect(),
    }
}

fn heartbeat_ack_batch(rng: &mut Prng) -> HeartbeatAckBatch {
    let n = rng.below(20) as usize;
    HeartbeatAckBatch {
        from: NodeId(u32_any(rng)),
        to: NodeId(u32_any(rng)),
        acks: (0..n)
            .map(|_| GroupHeartbeatAck {
                group: GroupId(u32_any(rng)),
                ballot: ballot(rng),
                sent_at: Nanos(u64_any(rng)),
            })
            .collect(),
    }
}

fn handshake(rng: &mut Prng) -> Handshake {
    let mut node = 0_u32;
    let layout = (0..rng.below(8))
        .map(|_| {
            node += 1 + rng.below(1000) as u32;
            let ip = if rng.coin() {
                std::net::IpAddr::from((rng.next_u64() as u32).to_be_bytes())
            } else {
                std::net::IpAddr::from(std::net::Ipv6Addr::from(
                    u128::from(rng.next_u64()) << 64 | 1,
                ))
            };
            (
                NodeId(node),
                std::net::SocketAddr::new(ip, rng.next_u64() as u16),
            )
        })
        .collect();
    let mut array = |present: bool| {
        present.then(|| {
            let mut out = [0_u8; 32];
            out.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
            out
        })
    };
    let nonce = array(true).map(|a| <[u8; 16]>::try_from(&a[..16]).expect("16 bytes"));
    let proof = array(true);
    Handshake {
        protocol_version: rng.next_u64() as u16,
        cluster: u64_any(rng),
        node: NodeId(u32_any(rng)),
        shard: rng.next_u64() as u16,
        shards: rng.next_u64() as u16,
        layout,
        nonce: nonce.filter(|_| rng.coin()),
        proof: proof.filter(|_| rng.coin()),
    }
}

fn catch_up_stream(rng: &mut Prng) -> CatchUpStream {
    CatchUpStream {
        group: GroupId(u32_any(rng)),
        first_lsn: Lsn(position(rng, 1).0),
        records: bytes(rng, 2_000),
        credit_size: u32_any(rng),
        salt: u32_any(rng),
    }
}

fn checkpoint_chunk(rng: &mut Prng) -> CheckpointChunk {
    let data = bytes(rng, 2_000);
    let offset = rng.below(1 << 40);
    let end = offset + data.len() as u64;
    let last = rng.coin();
    CheckpointChunk {
        group: GroupId(u32_any(rng)),
        instance: position(rng, 1),
        offset,
        total_size: if last { end } else { end + rng.below(1 << 30) },
        data,
        last,
    }
}

/// A random frame body of any kind.
fn frame_body(rng: &mut Prng) -> FrameBody {
    match rng.below(7) {
        5 => FrameBody::HandshakeProof(HandshakeProof {
            proof: [rng.next_u64() as u8; 32],
        }),
        0 => FrameBody::HeartbeatBatch(heartbeat_batch(rng)),
        1 => FrameBody::HeartbeatAckBatch(heartbeat_ack_batch(rng)),
        2 => FrameBody::Handshake(handshake(rng)),
        3 => FrameBody::CatchUpStream(catch_up_stream(rng)),
        4 => FrameBody::CheckpointChunk(checkpoint_chunk(rng)),
        _ => FrameBody::MessageBatch(messages(rng)),
    }
}

fn encoded(body: &FrameBody) -> Vec<u8> {
    let mut out = Vec::new();
    encode(body, &mut out);
    out
}

// ---------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------

// Goal: every message kind survives encode_frame/decode_frame unchanged.
// Method: 2,000 random batches (0..8 messages of all 9 kinds, edge-value fields).
#[test]
fn round_trip_random_messages() {
    let mut rng = Prng::new(0x5EED_C0DE);
    let limits = DecodeLimits::default();
    let mut kinds = [0_usize; BODY_KINDS as usize];
    let mut out = Vec::new();
    for case in 0..2_000 {
        let batch = messages(&mut rng);
        for m in &batch {
            let index = match m.body {
                MessageBody::Prepare { .. } => 0,
                MessageBody::Promise { .. } => 1,
                MessageBody::Reject { .. } => 2,
                MessageBody::Accept { .. } => 3,
                MessageBody::Accepted { .. } => 4,
                MessageBody::Heartbeat { .. } => 5,
                MessageBody::HeartbeatAck { .. } => 6,
                MessageBody::CatchUpRequest { .. } => 7,
                MessageBody::CatchUpChunk { .. } => 8,
                MessageBody::CheckpointRequest { .. } => 9,
                MessageBody::CheckpointChunk { .. } => 10,
                MessageBody::CatchUpRaw { .. } => 11,
                MessageBody::Handover { .. } => 12,
                MessageBody::PreVote { .. } => 13,
                MessageBody::PreVoteReply { .. } => 14,
            };
            kinds[index] += 1;
        }
        out.clear();
        encode_frame(&batch, &mut out);
        let decoded = decode_frame(&out, &limits);
        assert_eq!(decoded.as_ref(), Ok(&batch), "case {case}");
        assert_eq!(
            decode(&out, &limits),
            Ok(FrameBody::MessageBatch(batch)),
            "case {case}"
        );
    }
    for (kind, n) in kinds.iter().enumerate() {
        assert!(*n > 500, "kind {kind} drawn only {n} times");
    }
}

// Goal: every non-message frame body survives encode/decode unchanged, through both
// the generic `decode` and its typed decoder.
// Method: 2,000 random bodies of the 5 other kinds (plus batches), edge-value fields.
#[test]
fn round_trip_other_frame_bodies() {
    let mut rng = Prng::new(7);
    let limits = DecodeLimits::default();
    for case in 0..2_000 {
        let body = frame_body(&mut rng);
        let bytes = encoded(&body);
        assert_eq!(decode(&bytes, &limits).as_ref(), Ok(&body), "case {case}");
        let typed = match &body {
            FrameBody::MessageBatch(m) => decode_frame(&bytes, &limits).map(|d| d == *m),
            FrameBody::HeartbeatBatch(b) => {
                decode_heartbeat_batch(&bytes, &limits).map(|d| d == *b)
            }
            FrameBody::HeartbeatAckBatch(b) => {
                decode_heartbeat_ack_batch(&bytes, &limits).map(|d| d == *b)
            }
            FrameBody::Handshake(h) => decode_handshake(&bytes, &limits).map(|d| d == *h),
            FrameBody::HandshakeProof(p) => {
                decode_handshake_proof(&bytes, &limits).map(|d| d == *p)
            }
            FrameBody::CatchUpStream(s) => decode_catch_up_stream(&bytes, &limits).map(|d| d == *s),
            FrameBody::CheckpointChunk(c) => {
                decode_checkpoint_chunk(&bytes, &limits).map(|d| d == *c)
            }
        };
        assert_eq!(typed, Ok(true), "case {case}: {}", body.kind());
    }
    let ours = Handshake {
        protocol_version: PROTOCOL_VERSION,
        cluster: 42,
        node: NodeId(3),
        shard: 7,
        shards: 8,
        layout: vec![(NodeId(3), "10.0.0.3:7000".parse().expect("address"))],
        nonce: Some([1; 16]),
        proof: None,
    };
    let bytes = encoded(&FrameBody::Handshake(ours.clone()));
    assert_eq!(decode_handshake(&bytes, &limits), Ok(ours));
}

// Goal: a reused Encoder produces the same bytes as a fresh one (no state leaks
// between frames through its builder or scratch vectors).
// Method: encode 500 random bodies with one Encoder and with the free functions.
#[test]
fn encoder_reuse_is_stateless() {
    let mut rng = Prng::new(99);
    let mut encoder = Encoder::new();
    for case in 0..500 {
        let body = frame_body(&mut rng);
        let mut reused = Vec::new();
        encoder.encode(&body, &mut reused);
        assert_eq!(reused, encoded(&body), "case {case}");
    }
    // Appends, never overwrites.
    let mut out = vec![1, 2, 3];
    encode_frame(&[], &mut out);
    assert_eq!(&out[..3], &[1, 2, 3]);
    assert_eq!(
        decode_frame(&out[3..], &DecodeLimits::default()),
        Ok(vec![])
    );
}

// ---------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------

/// Runs every decoder on `bytes`; each must return (not panic) within the allocation
/// bound, and whatever decodes must re-encode to a frame that decodes to the same value
/// (so every accepted value is one the protocol could have produced).
fn decode_all(bytes: &[u8], limits: &DecodeLimits) -> (bool, usize) {
    let (any, allocated) = allocated_during(|| decode(bytes, limits));
    assert!(
        allocated <= allocation_bound(bytes.len()),
        "decode of {} bytes allocated {allocated}",
        bytes.len()
    );
    let (_, typed_allocated) = allocated_during(|| {
        (
            decode_frame(bytes, limits).is_ok(),
            decode_heartbeat_batch(bytes, limits).is_ok(),
            decode_heartbeat_ack_batch(bytes, limits).is_ok(),
            decode_handshake(bytes, limits).is_ok(),
            decode_catch_up_stream(bytes, limits).is_ok(),
            decode_checkpoint_chunk(bytes, limits).is_ok(),
        )
    });
    assert!(typed_allocated <= 6 * allocation_bound(bytes.len()));
    let ok = any.is_ok();
    if let Ok(body) = any {
        let again = encoded(&body);
        assert_eq!(
            decode(&again, limits),
            Ok(body),
            "accepted value does not re-encode"
        );
    }
    (ok, allocated)
}

// Goal: random bytes never make a decoder panic or over-allocate.
// Method: 20,000 random buffers of 0..600 bytes, half with the SYNW identifier and a
// plausible root offset so they reach the verifier.
#[test]
fn random_bytes_never_panic() {
    let mut rng = Prng::new(0xBAD_B17E5);
    let limits = DecodeLimits::default();
    for _ in 0..20_000 {
        let size = rng.below(600) as usize;
        let mut bytes = vec![0_u8; size];
        rng.fill(&mut bytes);
        if size >= 8 && rng.coin() {
            bytes[4..8].copy_from_slice(b"SYNW");
            let root = (rng.below(size as u64 / 4) * 4) as u32;
            bytes[..4].copy_from_slice(&root.to_le_bytes());
        }
        decode_all(&bytes, &limits);
    }
}

/// One random mutation of a valid frame.
fn mutate(rng: &mut Prng, bytes: &mut Vec<u8>) {
    match rng.below(7) {
        // Bit flips.
        0 | 1 => {
            for _ in 0..rng.range(1, 8) {
                if !bytes.is_empty() {
                    let i = rng.index(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
            }
        }
        // Truncation.
        2 => {
            let keep = rng.below(bytes.len() as u64 + 1) as usize;
            bytes.truncate(keep);
        }
        // Extension with random bytes.
        3 => {
            let mut tail = vec![0_u8; rng.range(1, 64) as usize];
            rng.fill(&mut tail);
            bytes.extend_from_slice(&tail);
        }
        // An aligned u32 (offset, length, tag) overwritten with an edge value.
        4 => {
            if bytes.len() >= 4 {
                let i = rng.index(bytes.len() / 4) * 4;
                let len = bytes.len() as u32;
                let value = match rng.below(6) {
                    0 => 0,
                    1 => u32::MAX,
                    2 => len,
                    3 => len.wrapping_sub(4),
                    4 => 0x8000_0000,
                    _ => rng.below(64) as u32,
                };
                bytes[i..i + 4].copy_from_slice(&value.to_le_bytes());
            }
        }
        // A byte (tag, enum, bool) set to an edge value.
        5 => {
            if !bytes.is_empty() {
                let i = rng.index(bytes.len());
                bytes[i] = [0, 1, 2, 3, 4, 7, 9, 10, 0x7F, 0xFF][rng.index(10)];
            }
        }
        // Splice: copy a random run of the frame over another place of it.
        _ => {
            if bytes.len() >= 8 {
                let len = rng.range(1, bytes.len() as u64 / 2) as usize;
                let from = rng.index(bytes.len() - len);
                let to = rng.index(bytes.len() - len);
                let run = bytes[from..from + len].to_vec();
                bytes[to..to + len].copy_from_slice(&run);
            }
        }
    }
}

// Goal: mutated valid frames (bit flips, truncations, extensions, edge offsets, edge
// tags, splices) never panic, never over-allocate, and decode only to valid values.
// Method: 20,000 cases, 1..3 mutations each, over frames of every body kind.
#[test]
fn mutated_frames_never_panic() {
    let mut rng = Prng::new(0xF1_1B);
    let limits = DecodeLimits::default();
    let mut accepted = 0;
    let mut ratio_max = 0.0_f64;
    for _ in 0..20_000 {
        let mut bytes = encoded(&frame_body(&mut rng));
        for _ in 0..rng.range(1, 3) {
            mutate(&mut rng, &mut bytes);
        }
        let (ok, allocated) = decode_all(&bytes, &limits);
        accepted += usize::from(ok);
        if !bytes.is_empty() {
            ratio_max = ratio_max.max(allocated as f64 / bytes.len() as f64);
        }
    }
    println!(
        "mutated frames: {accepted} of 20000 still decode; allocation ratio max {ratio_max:.2}"
    );
    // Most mutations land in payload or scalar bytes: some must still decode, or the
    // test exercises nothing past the verifier.
    assert!(accepted > 1_000, "only {accepted} mutated frames decoded");
}

/// Builds a frame holding one Accept whose `entries` vector points `n` times at one
/// shared Entry carrying `value_size` bytes: a DAG no honest encoder writes.
fn aliased_accept(n: usize, value_size: usize) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let data = fbb.create_vector(&vec![7_u8; value_size]);
    let value = fb::Value::create(&mut fbb, &fb::ValueArgs { data: Some(data) });
    let values = fbb.create_vector(&[value]);
    let origin = fb::Ballot::new(1, 1);
    let entry = fb::Entry::create(
        &mut fbb,
        &fb::EntryArgs {
            origin: Some(&origin),
            body_kind: fb::BodyKind::Values,
            values: Some(values),
            voters: None,
        },
    );
    let entries = fbb.create_vector(&vec![entry; n]);
    let accept = fb::Accept::create(
        &mut fbb,
        &fb::AcceptArgs {
            ballot: Some(&origin),
            chosen_through: 0,
            first: 1,
            entries: Some(entries),
        },
    );
    finish_messages(&mut fbb, fb::MessageBody::Accept, accept.as_union_value())
}

/// Wraps one message body into a whole frame.
fn finish_messages(
    fbb: &mut FlatBufferBuilder<'static>,
    tag: fb::MessageBody,
    body: WIPOffset<UnionWIPOffset>,
) -> Vec<u8> {
    let message = fb::Message::create(
        fbb,
        &fb::MessageArgs {
            group: 1,
            from: 1,
            to: 2,
            body_type: tag,
            body: Some(body),
        },
    );
    let messages = fbb.create_vector(&[message]);
    let batch = fb::MessageBatch::create(
        fbb,
        &fb::MessageBatchArgs {
            messages: Some(messages),
        },
    );
    let frame = fb::Frame::create(
        fbb,
        &fb::FrameArgs {
            body_type: fb::FrameBody::MessageBatch,
            body: Some(batch.as_union_value()),
        },
    );
    fb::finish_frame_buffer(fbb, frame);
    fbb.finished_data().to_vec()
}

// Goal: offsets that alias one table many times cannot make a small frame decode into
// a large allocation (the verifier's table/apparent-size bounds and the payload budget).
// Method: an Accept whose entries all point at one Entry, with large and empty values.
#[test]
fn aliased_offsets_are_refused() {
    let limits = DecodeLimits::default();
    // 1,000 aliases of one 4 KiB value: 4 MB of payload from a 8 KiB frame.
    let big = aliased_accept(1_000, 4_096);
    let (result, allocated) = allocated_during(|| decode_frame(&big, &limits));
    assert!(
        matches!(
            result,
            Err(DecodeError::Verifier(
                flatbuffers::InvalidFlatbuffer::ApparentSizeTooLarge
            )) | Err(DecodeError::PayloadAliased { .. })
        ),
        "{result:?}"
    );
    assert!(allocated <= allocation_bound(big.len()), "{allocated}");
    // 4,000 aliases of one small entry: more tables than the frame's bytes can hold.
    let many = aliased_accept(4_000, 0);
    let result = decode_frame(&many, &limits);
    assert!(
        matches!(
            result,
            Err(DecodeError::Verifier(
                flatbuffers::InvalidFlatbuffer::TooManyTables
            )) | Err(DecodeError::Verifier(
                flatbuffers::InvalidFlatbuffer::ApparentSizeTooLarge
            ))
        ),
        "{result:?}"
    );
    // Two aliases of one value pass the verifier bounds but not the payload budget.
    let two = aliased_accept(2, 4_096);
    assert_eq!(
        decode_frame(&two, &limits),
        Err(DecodeError::PayloadAliased {
            payload_size: 8_192,
            frame_size: two.len(),
        })
    );
}

/// The smallest `max_apparent_size` the verifier accepts `bytes` with.
fn apparent_size(bytes: &[u8]) -> usize {
    let (mut low, mut high) = (0, 64 * bytes.len());
    while low < high {
        let mid = (low + high) / 2;
        let options = VerifierOptions {
            max_apparent_size: mid,
            ..VerifierOptions::default()
        };
        if fb::root_as_frame_with_opts(&options, bytes).is_ok() {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    low
}

// Goal: the verifier bounds derived from the frame size (tables <= size/8 + 1,
// apparent size <= 4 x size, depth 7) never refuse an honest frame.
// Method: the densest honest frames (all-default fields, empty values, deepest
// nesting) decoded with frame_size_max = their own size; apparent size measured.
#[test]
fn verifier_bounds_accept_honest_frames() {
    let zero = Ballot::ZERO;
    let one = ROUND_ONE;
    let tiny = |body: MessageBody| Message {
        group: GroupId(0),
        from: NodeId(0),
        to: NodeId(0),
        body,
    };
    let empty_values = Entry {
        origin: zero,
        body: Body::Values(smallvec::smallvec![Bytes::new(); 64]),
    };
    let frames = [
        FrameBody::MessageBatch(vec![
            tiny(MessageBody::CatchUpRequest {
                from: Instance(1),
                credit: u32::MAX,
                retired: false,
            });
            500
        ]),
        FrameBody::MessageBatch(vec![tiny(MessageBody::Reject { promised: zero }); 500]),
        FrameBody::MessageBatch(vec![tiny(MessageBody::Accept {
            ballot: one,
            chosen_through: Instance(0),
            first: Instance(1),
            entries: vec![
                Entry {
                    origin: zero,
                    body: Body::Noop
                };
                500
            ],
        })]),
        FrameBody::MessageBatch(vec![tiny(MessageBody::Accept {
            ballot: one,
            chosen_through: Instance(0),
            first: Instance(1),
            entries: vec![empty_values.clone(); 20],
        })]),
        // Deepest nesting: Frame > MessageBatch > Message > Promise > PromisedEntry >
        // Entry > Value.
        FrameBody::MessageBatch(vec![tiny(MessageBody::Promise {
            ballot: one,
            chosen_through: Instance(0),
            entries: (1..=50)
                .map(|i| PromisedEntry {
                    instance: Instance(i),
                    ballot: zero,
                    chosen: false,
                    entry: empty_values.clone(),
                })
                .collect(),
            truncated: false,
        })]),
        FrameBody::MessageBatch(vec![]),
        FrameBody::HeartbeatBatch(HeartbeatBatch {
            from: NodeId(0),
            to: NodeId(0),
            heartbeats: vec![],
        }),
        FrameBody::CatchUpStream(CatchUpStream {
            group: GroupId(0),
            first_lsn: Lsn(1),
            records: Bytes::new(),
            credit_size: 0,
            salt: 0,
        }),
    ];
    for body in frames {
        let bytes = encoded(&body);
        let tight = DecodeLimits {
            frame_size_max: bytes.len(),
            ..DecodeLimits::default()
        };
        assert_eq!(
            decode(&bytes, &tight).as_ref(),
            Ok(&body),
            "{}",
            body.kind()
        );
        let ratio = apparent_size(&bytes) as f64 / bytes.len() as f64;
        println!(
            "{}: {} bytes, apparent size ratio {ratio:.2}",
            body.kind(),
            bytes.len()
        );
        assert!(
            ratio < APPARENT_SIZE_FACTOR as f64,
            "{}: {ratio}",
            body.kind()
        );
    }
}

// ---------------------------------------------------------------------------------
// Limits, each with its error variant
// ---------------------------------------------------------------------------------

fn accept(first: u64, entries: Vec<Entry>) -> Message {
    Message {
        group: GroupId(1),
        from: NodeId(1),
        to: NodeId(2),
        body: MessageBody::Accept {
            ballot: Ballot {
                round: 1,
                node: NodeId(1),
            },
            chosen_through: Instance(0),
            first: Instance(first),
            entries,
        },
    }
}

fn noop() -> Entry {
    Entry {
        origin: Ballot::ZERO,
        body: Body::Noop,
    }
}

fn frame_of(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(messages, &mut out);
    out
}

// Goal: a frame larger than frame_size_max is refused before the verifier runs.
// Method: a valid frame decoded with a limit one byte short; a huge zero buffer.
#[test]
fn oversized_frame_is_refused() {
    let bytes = frame_of(&[accept(1, vec![noop(); 10])]);
    let limits = DecodeLimits {
        frame_size_max: bytes.len() - 1,
        ..DecodeLimits::default()
    };
    let error = decode_frame(&bytes, &limits).unwrap_err();
    assert_eq!(
        error,
        DecodeError::FrameTooLarge {
            size: bytes.len(),
            max: bytes.len() - 1
        }
    );
    assert!(
        error.to_string().contains(&bytes.len().to_string()),
        "{error}"
    );
    let huge = vec![0_u8; DecodeLimits::default().frame_size_max + 1];
    assert!(matches!(
        decode(&huge, &DecodeLimits::default()),
        Err(DecodeError::FrameTooLarge { .. })
    ));
}

// Goal: every count limit refuses one element over and accepts exactly the limit.
// Method: frames at limit and limit + 1 for entries (Accept, CatchUpChunk, Promise),
// CatchUpRaw's instances and pieces,
// messages, values, value size, ranges, voters, heartbeats and acks.
#[expect(
    clippy::too_many_lines,
    reason = "a table: one limit per block, each at the limit and one over"
)]
#[test]
fn count_limits_are_enforced() {
    let limits = DecodeLimits {
        messages_max: 3,
        entries_max: 4,
        values_max: 2,
        value_size_max: 10,
        ranges_max: 2,
        voters_max: 3,
        heartbeats_max: 2,
        ..DecodeLimits::default()
    };
    let too_many = |field: &'static str, count: usize, max: usize| {
        Err::<Vec<Message>, _>(DecodeError::TooMany { field, count, max })
    };

    assert!(decode_frame(&frame_of(&[accept(1, vec![noop(); 4])]), &limits).is_ok());
    assert_eq!(
        decode_frame(&frame_of(&[accept(1, vec![noop(); 5])]), &limits),
        too_many("Accept.entries", 5, 4)
    );
    let chunk = |n: usize| Message {
        body: MessageBody::CatchUpChunk {
            chosen_through: Instance(9),
            promised: Ballot::ZERO,
            accepted_max: Instance(9),
            first: Instance(1),
            entries: vec![noop(); n],
            from_voter: true,
            membership_changed: false,
        },
        ..accept(1, vec![])
    };
    assert!(decode_frame(&frame_of(&[chunk(4)]), &limits).is_ok());
    assert_eq!(
        decode_frame(&frame_of(&[chunk(5)]), &limits),
        too_many("CatchUpChunk.entries", 5, 4)
    );
    let raw = |instances: u64, pieces: usize| Message {
        body: MessageBody::CatchUpRaw {
            chosen_through: Instance(9),
            promised: Ballot::ZERO,
            accepted_max: Instance(9),
            run: RawRun {
                group: GroupId(1),
                first_instance: Instance(1),
                last_instance: Instance(instances),
                salt: 7,
                records: vec![Bytes::from_static(b"r"); pieces],
            },
            from_voter: true,
            membership_changed: false,
        },
        ..accept(1, vec![])
    };
    assert!(decode_frame(&frame_of(&[raw(4, 4)]), &limits).is_ok());
    assert_eq!(
        decode_frame(&frame_of(&[raw(5, 1)]), &limits),
        too_many("CatchUpRaw.instances", 5, 4)
    );
    assert_eq!(
        decode_frame(&frame_of(&[raw(4, 5)]), &limits),
        too_many("CatchUpRaw.pieces", 5, 4)
    );
    let promise = |n: u64| Message {
        body: MessageBody::Promise {
            ballot: ROUND_ONE,
            chosen_through: Instance(0),
            entries: (1..=n)
                .map(|i| PromisedEntry {
                    instance: Instance(i),
                    ballot: ROUND_ONE,
                    chosen: false,
                    entry: noop(),
                })
                .collect(),
            truncated: true,
        },
        ..accept(1, vec![])
    };
    assert!(decode_frame(&frame_of(&[promise(4)]), &limits).is_ok());
    assert_eq!(
        decode_frame(&frame_of(&[promise(5)]), &limits),
        too_many("Promise.entries", 5, 4)
    );

    let m = accept(1, vec![]);
    assert!(decode_frame(&frame_of(&vec![m.clone(); 3]), &limits).is_ok());
    assert_eq!(
        decode_frame(&frame_of(&vec![m; 4]), &limits),
        too_many("MessageBatch.messages", 4, 3)
    );

    let values = |n: usize, size: usize| Entry {
        origin: Ballot::ZERO,
        body: Body::Values(smallvec::smallvec![Bytes::from(vec![1_u8; size]); n]),
    };
    assert!(decode_frame(&frame_of(&[accept(1, vec![values(2, 10)])]), &limits).is_ok());
    assert_eq!(
        decode_frame(&frame_of(&[accept(1, vec![values(3, 1)])]), &limits),
        too_many("Entry.values", 3, 2)
    );
    assert_eq!(
        decode_frame(&frame_of(&[accept(1, vec![values(1, 11)])]), &limits),
        Err(DecodeError::ValueTooLarge { size: 11, max: 10 })
    );

    let accepted = |n: u64| Message {
        body: MessageBody::Accepted {
            ballot: ROUND_ONE,
            ranges: (0..n)
                .map(|i| InstanceRange {
                    first: Instance(10 * i + 1),
                    last: Instance(10 * i + 5),
                })
                .collect(),
        },
        ..accept(1, vec![])
    };
    assert!(decode_frame(&frame_of(&[accepted(2)]), &limits).is_ok());
    assert_eq!(
        decode_frame(&frame_of(&[accepted(3)]), &limits),
        too_many("Accepted.ranges", 3, 2)
    );

    let config = |n: u32| Entry {
        origin: Ballot::ZERO,
        body: Body::Config(Membership::new((1..=n).map(NodeId).collect())),
    };
    assert!(decode_frame(&frame_of(&[accept(1, vec![config(3)])]), &limits).is_ok());
    assert_eq!(
        decode_frame(&frame_of(&[accept(1, vec![config(4)])]), &limits),
        too_many("Entry.voters", 4, 3)
    );

    let mut rng = Prng::new(3);
    let mut heartbeats = heartbeat_batch(&mut rng);
    heartbeats.heartbeats = vec![heartbeats_one(&mut rng); 3];
    assert_eq!(
        decode_heartbeat_batch(&encoded(&FrameBody::HeartbeatBatch(heartbeats)), &limits),
        Err(DecodeError::TooMany {
            field: "HeartbeatBatch.heartbeats",
            count: 3,
            max: 2
        })
    );
    let mut acks = heartbeat_ack_batch(&mut rng);
    acks.acks = vec![
        GroupHeartbeatAck {
            group: GroupId(1),
            ballot: ROUND_ONE,
            sent_at: Nanos(1),
        };
        3
    ];
    assert_eq!(
        decode_heartbeat_ack_batch(&encoded(&FrameBody::HeartbeatAckBatch(acks)), &limits),
        Err(DecodeError::TooMany {
            field: "HeartbeatAckBatch.acks",
            count: 3,
            max: 2
        })
    );
}

fn heartbeats_one(rng: &mut Prng) -> GroupHeartbeat {
    GroupHeartbeat {
        group: GroupId(u32_any(rng)),
        ballot: ballot(rng),
        chosen_through: Instance(1),
        sent_at: Nanos(2),
        checksum_through: Instance(1),
        checksum: 3,
    }
}

// Goal: instance semantics are checked: positions >= 1, runs that fit in u64, ranges
// first <= last, ascending and disjoint; promised entries ascending.
// Method: one frame per rule, each refused with its variant and numbers.
#[test]
fn instance_rules_are_enforced() {
    let limits = DecodeLimits::default();
    assert_eq!(
        decode_frame(&frame_of(&[accept(0, vec![noop()])]), &limits),
        Err(DecodeError::Zero {
            field: "Accept.first"
        })
    );
    assert_eq!(
        decode_frame(&frame_of(&[accept(u64::MAX, vec![noop(); 2])]), &limits),
        Err(DecodeError::InstanceOverflow {
            field: "Accept.first",
            first: u64::MAX,
            count: 2
        })
    );
    assert!(decode_frame(&frame_of(&[accept(Instance::MAX.0, vec![noop()])]), &limits).is_ok());

    let accepted = |ranges: &[(u64, u64)]| Message {
        body: MessageBody::Accepted {
            ballot: ROUND_ONE,
            ranges: ranges
                .iter()
                .map(|&(first, last)| InstanceRange {
                    first: Instance(first),
                    last: Instance(last),
                })
                .collect(),
        },
        ..accept(1, vec![])
    };
    let error = decode_frame(&frame_of(&[accepted(&[(7, 3)])]), &limits).unwrap_err();
    assert_eq!(error, DecodeError::RangeInverted { first: 7, last: 3 });
    assert!(
        error.to_string().contains("first = 7 > last = 3"),
        "{error}"
    );
    assert_eq!(
        decode_frame(&frame_of(&[accepted(&[(1, 5), (5, 9)])]), &limits),
        Err(DecodeError::NotAscending {
            field: "Accepted.ranges",
            previous: 5,
            next: 5
        })
    );
    assert_eq!(
        decode_frame(&frame_of(&[accepted(&[(10, 12), (1, 2)])]), &limits),
        Err(DecodeError::NotAscending {
            field: "Accepted.ranges",
            previous: 12,
            next: 1
        })
    );
    assert_eq!(
        decode_frame(&frame_of(&[accepted(&[(0, 2)])]), &limits),
        Err(DecodeError::Zero {
            field: "InstanceRange.first"
        })
    );
    // Adjacent but disjoint ranges are fine.
    assert!(decode_frame(&frame_of(&[accepted(&[(1, 4), (5, 9)])]), &limits).is_ok());

    let promise = Message {
        body: MessageBody::Promise {
            ballot: ROUND_ONE,
            chosen_through: Instance(0),
            entries: [4, 4]
                .iter()
                .map(|&i| PromisedEntry {
                    instance: Instance(i),
                    ballot: ROUND_ONE,
                    chosen: false,
                    entry: noop(),
                })
                .collect(),
            truncated: false,
        },
        ..accept(1, vec![])
    };
    assert_eq!(
        decode_frame(&frame_of(&[promise]), &limits),
        Err(DecodeError::NotAscending {
            field: "Promise.entries",
            previous: 4,
            next: 4
        })
    );
    let prepare = Message {
        body: MessageBody::Prepare {
            ballot: ROUND_ONE,
            from: Instance(0),
        },
        ..accept(1, vec![])
    };
    assert_eq!(
        decode_frame(&frame_of(&[prepare]), &limits),
        Err(DecodeError::Zero {
            field: "Prepare.from"
        })
    );
}

/// A frame with one Accept of one entry built by hand (for entries the Rust types
/// cannot express).
fn raw_entry_frame(body_kind: fb::BodyKind, with_values: bool, voters: Option<&[u32]>) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let values = with_values.then(|| fbb.create_vector::<WIPOffset<fb::Value>>(&[]));
    let voters = voters.map(|v| fbb.create_vector(v));
    let origin = fb::Ballot::new(1, 1);
    let entry = fb::Entry::create(
        &mut fbb,
        &fb::EntryArgs {
            origin: Some(&origin),
            body_kind,
            values,
            voters,
        },
    );
    let entries = fbb.create_vector(&[entry]);
    let accept = fb::Accept::create(
        &mut fbb,
        &fb::AcceptArgs {
            ballot: Some(&origin),
            chosen_through: 0,
            first: 1,
            entries: Some(entries),
        },
    );
    finish_messages(&mut fbb, fb::MessageBody::Accept, accept.as_union_value())
}

// Goal: values outside the schema or the Rust types are refused: unknown enum and
// union values, empty or unsorted memberships, fields a body kind does not allow.
// Method: frames built by hand with the generated builder.
#[test]
fn schema_rules_are_enforced() {
    let limits = DecodeLimits::default();
    let check = |bytes: Vec<u8>, expected: DecodeError| {
        assert_eq!(decode_frame(&bytes, &limits), Err(expected.clone()));
        assert_eq!(decode(&bytes, &limits), Err(expected));
    };
    check(
        raw_entry_frame(fb::BodyKind(9), false, None),
        DecodeError::UnknownEnum {
            field: "Entry.body_kind",
            value: 9,
        },
    );
    check(
        raw_entry_frame(fb::BodyKind::Config, false, Some(&[])),
        DecodeError::EmptyMembership,
    );
    check(
        raw_entry_frame(fb::BodyKind::Config, false, None),
        DecodeError::EmptyMembership,
    );
    check(
        raw_entry_frame(fb::BodyKind::Config, false, Some(&[3, 2])),
        DecodeError::NotAscending {
            field: "Entry.voters",
            previous: 3,
            next: 2,
        },
    );
    check(
        raw_entry_frame(fb::BodyKind::Noop, true, None),
        DecodeError::UnexpectedField {
            field: "Entry.values",
            body_kind: "Noop",
        },
    );
    check(
        raw_entry_frame(fb::BodyKind::Values, false, Some(&[1])),
        DecodeError::UnexpectedField {
            field: "Entry.voters",
            body_kind: "Values",
        },
    );
    // A Values entry without a values vector is an empty batch.
    assert!(decode_frame(&raw_entry_frame(fb::BodyKind::Values, false, None), &limits).is_ok());

    // Unknown message union tag: the body is a Reject table under an unknown tag.
    let mut fbb = FlatBufferBuilder::new();
    let promised = fb::Ballot::new(1, 1);
    let reject = fb::Reject::create(
        &mut fbb,
        &fb::RejectArgs {
            promised: Some(&promised),
        },
    );
    check(
        finish_messages(&mut fbb, fb::MessageBody(42), reject.as_union_value()),
        DecodeError::UnknownUnion {
            field: "Message.body",
            tag: 42,
        },
    );

    // Unknown frame union tag.
    let mut fbb = FlatBufferBuilder::new();
    let handshake = fb::Handshake::create(&mut fbb, &fb::HandshakeArgs::default());
    let frame = fb::Frame::create(
        &mut fbb,
        &fb::FrameArgs {
            body_type: fb::FrameBody(77),
            body: Some(handshake.as_union_value()),
        },
    );
    fb::finish_frame_buffer(&mut fbb, frame);
    check(
        fbb.finished_data().to_vec(),
        DecodeError::UnknownUnion {
            field: "Frame.body",
            tag: 77,
        },
    );

    // Wrong identifier.
    let mut bytes = frame_of(&[]);
    bytes[4..8].copy_from_slice(b"NOPE");
    check(bytes, DecodeError::BadIdentifier { found: *b"NOPE" });
    check(
        vec![1, 2, 3, 4, 5],
        DecodeError::BadIdentifier {
            found: [5, 0, 0, 0],
        },
    );
}

// Goal: the typed decoders refuse another frame body by name, and the stream and
// checkpoint rules (first_lsn >= 1, chunk inside the checkpoint, last chunk ends it)
// hold.
// Method: encode one body, decode it as another; chunks on and past each bound.
#[test]
fn frame_body_rules_are_enforced() {
    let limits = DecodeLimits::default();
    let hello = encoded(&FrameBody::Handshake(Handshake {
        protocol_version: PROTOCOL_VERSION,
        cluster: 1,
        node: NodeId(1),
        shard: 0,
        shards: 1,
        layout: Vec::new(),
        nonce: None,
        proof: None,
    }));
    assert_eq!(
        decode_frame(&hello, &limits),
        Err(DecodeError::UnexpectedFrameBody {
            expected: "MessageBatch",
            found: "Handshake"
        })
    );
    assert_eq!(
        decode_checkpoint_chunk(&frame_of(&[]), &limits),
        Err(DecodeError::UnexpectedFrameBody {
            expected: "CheckpointChunk",
            found: "MessageBatch"
        })
    );

    let stream = CatchUpStream {
        group: GroupId(1),
        first_lsn: Lsn(0),
        records: Bytes::from_static(b"records"),
        credit_size: 0,
        salt: 5,
    };
    assert_eq!(
        decode_catch_up_stream(&encoded(&FrameBody::CatchUpStream(stream)), &limits),
        Err(DecodeError::Zero {
            field: "CatchUpStream.first_lsn"
        })
    );

    let chunk = |offset: u64, total_size: u64, last: bool| CheckpointChunk {
        group: GroupId(1),
        instance: Instance(100),
        offset,
        total_size,
        data: Bytes::from_static(b"0123456789"),
        last,
    };
    let decode_chunk = |c: CheckpointChunk| {
        decode_checkpoint_chunk(&encoded(&FrameBody::CheckpointChunk(c)), &limits)
    };
    assert!(decode_chunk(chunk(0, 10, true)).is_ok());
    assert!(decode_chunk(chunk(0, 20, false)).is_ok());
    assert!(decode_chunk(chunk(10, 20, false)).is_ok());
    let bounds = |offset, total_size, last| DecodeError::CheckpointChunkBounds {
        offset,
        size: 10,
        total_size,
        last,
    };
    assert_eq!(decode_chunk(chunk(0, 20, true)), Err(bounds(0, 20, true)));
    assert_eq!(
        decode_chunk(chunk(15, 20, false)),
        Err(bounds(15, 20, false))
    );
    assert_eq!(
        decode_chunk(chunk(u64::MAX - 3, u64::MAX, false)),
        Err(bounds(u64::MAX - 3, u64::MAX, false))
    );
    let mut zero = chunk(0, 10, true);
    zero.instance = Instance(0);
    assert_eq!(
        decode_chunk(zero),
        Err(DecodeError::Zero {
            field: "CheckpointChunk.instance"
        })
    );
}

// ---------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------

// Goal: length-prefixed framing splits a stream back into its frames whatever the
// read boundaries, and refuses an oversized header as soon as it is complete.
// Method: 200 random frames in one stream, fed in random-sized reads; bad headers.
#[test]
fn framing_round_trips_and_bounds() {
    let mut rng = Prng::new(11);
    let max = 4_096;
    let mut stream = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..200 {
        let body = frame_body(&mut rng);
        let bytes = encoded(&body);
        if append_frame(&bytes, max, &mut stream).is_ok() {
            sent.push(body);
        }
    }
    assert!(sent.len() > 100);
    let limits = DecodeLimits {
        frame_size_max: max,
        ..DecodeLimits::default()
    };
    let mut buffer = Vec::new();
    let mut received = Vec::new();
    let mut read = 0;
    while read < stream.len() {
        let n = (rng.range(1, 700) as usize).min(stream.len() - read);
        buffer.extend_from_slice(&stream[read..read + n]);
        read += n;
        while let Some((payload, consumed)) = split_frame(&buffer, max).expect("honest stream") {
            received.push(decode(payload, &limits).expect("honest frame"));
            buffer.drain(..consumed);
        }
    }
    assert!(buffer.is_empty());
    assert_eq!(received, sent);

    // Too large to write: nothing is appended.
    let mut out = vec![9];
    assert_eq!(
        append_frame(&[0; 11], 10, &mut out),
        Err(FrameError::TooLarge { size: 11, max: 10 })
    );
    assert_eq!(out, vec![9]);
    // A header announcing too much is refused with only the header read.
    let header = 11_u32.to_le_bytes();
    assert_eq!(
        split_frame(&header, 10),
        Err(FrameError::TooLarge { size: 11, max: 10 })
    );
    assert_eq!(
        split_frame(&u32::MAX.to_le_bytes(), 10),
        Err(FrameError::TooLarge {
            size: u32::MAX as usize,
            max: 10
        })
    );
    // Incomplete header or payload: wait for more.
    assert_eq!(split_frame(&header[..3], 100), Ok(None));
    assert_eq!(split_frame(&[5, 0, 0, 0, 1, 2], 100), Ok(None));
    assert_eq!(
        split_frame(&[0, 0, 0, 0, 7], 100),
        Ok(Some((&[][..], FRAME_HEADER_SIZE)))
    );
}

// ---------------------------------------------------------------------------------
// Bounds: ballots and instances no honest replica sends
// ---------------------------------------------------------------------------------

const ROUND_MAX: u64 = Ballot::ROUND_MAX;
const INSTANCE_MAX: u64 = Instance::MAX.0;

fn at_round(round: u64) -> Ballot {
    Ballot {
        round,
        node: NodeId(1),
    }
}

fn noop_at(origin: u64) -> Entry {
    Entry {
        origin: at_round(origin),
        body: Body::Noop,
    }
}

fn range(first: u64, last: u64) -> InstanceRange {
    InstanceRange {
        first: Instance(first),
        last: Instance(last),
    }
}

fn over(field: &'static str, value: u64, max: u64) -> DecodeError {
    DecodeError::OutOfBounds(OutOfBounds {
        field,
        value,
        bound: Bound::AtMost(max),
    })
}

fn under(field: &'static str, value: u64, min: u64) -> DecodeError {
    DecodeError::OutOfBounds(OutOfBounds {
        field,
        value,
        bound: Bound::AtLeast(min),
    })
}

/// Every message kind with each ballot and instance at the edge of its bounds (every
/// round at `ROUND_MAX`, every watermark at `Instance::MAX`, runs and ranges ending
/// there, zero where zero is allowed).
fn edge_bodies() -> Vec<MessageBody> {
    vec![
        MessageBody::Prepare {
            ballot: at_round(ROUND_MAX),
            from: Instance(INSTANCE_MAX),
        },
        MessageBody::Promise {
            ballot: at_round(ROUND_MAX),
            chosen_through: Instance(INSTANCE_MAX),
            entries: vec![
                PromisedEntry {
                    instance: Instance(INSTANCE_MAX - 1),
                    ballot: at_round(ROUND_MAX),
                    chosen: false,
                    entry: noop_at(ROUND_MAX),
                },
                PromisedEntry {
                    instance: Instance(INSTANCE_MAX),
                    ballot: Ballot::ZERO,
                    chosen: true,
                    entry: noop_at(0),
                },
            ],
            truncated: false,
        },
        MessageBody::Reject {
            promised: at_round(ROUND_MAX),
        },
        MessageBody::Accept {
            ballot: at_round(ROUND_MAX),
            chosen_through: Instance(INSTANCE_MAX),
            first: Instance(INSTANCE_MAX - 1),
            entries: vec![noop_at(ROUND_MAX), noop_at(1)],
        },
        MessageBody::Accepted {
            ballot: at_round(ROUND_MAX),
            ranges: vec![range(1, 1), range(3, INSTANCE_MAX)],
        },
        MessageBody::Heartbeat {
            ballot: at_round(ROUND_MAX),
            chosen_through: Instance(INSTANCE_MAX),
            sent_at: Nanos(u64::MAX),
            checksum_through: Instance(INSTANCE_MAX),
            checksum: u32::MAX,
        },
        MessageBody::HeartbeatAck {
            ballot: at_round(ROUND_MAX),
            sent_at: Nanos(u64::MAX),
        },
        MessageBody::CatchUpRequest {
            from: Instance(INSTANCE_MAX),
            credit: u32::MAX,
            retired: false,
        },
        MessageBody::CatchUpChunk {
            chosen_through: Instance(INSTANCE_MAX),
            promised: Ballot::ZERO,
            accepted_max: Instance(INSTANCE_MAX),
            first: Instance(INSTANCE_MAX - 1),
            entries: vec![noop_at(ROUND_MAX), noop_at(0)],
            from_voter: false,
            membership_changed: false,
        },
        MessageBody::CheckpointRequest {
            through: Instance(INSTANCE_MAX),
            offset: CHECKPOINT_SIZE_MAX,
        },
        MessageBody::CheckpointChunk {
            through: Instance(INSTANCE_MAX),
            offset: CHECKPOINT_SIZE_MAX - 2,
            total_size: CHECKPOINT_SIZE_MAX,
            data: Bytes::from_static(b"ab"),
        },
        MessageBody::CatchUpRaw {
            chosen_through: Instance(INSTANCE_MAX),
            promised: at_round(ROUND_MAX),
            accepted_max: Instance(INSTANCE_MAX),
            run: RawRun {
                group: GroupId(1),
                first_instance: Instance(INSTANCE_MAX - 1),
                last_instance: Instance(INSTANCE_MAX),
                salt: u32::MAX,
                records: vec![Bytes::from_static(b"records"), Bytes::from_static(b"more")],
            },
            from_voter: false,
            membership_changed: false,
        },
        MessageBody::Handover {
            ballot: at_round(ROUND_MAX),
            target: NodeId(u32::MAX),
        },
        MessageBody::PreVote {
            ballot: at_round(ROUND_MAX),
        },
        MessageBody::PreVoteReply {
            ballot: at_round(ROUND_MAX),
            granted: true,
        },
    ]
}

/// For one edge body, each field pushed past its bound: (what, the body, the error the
/// decoder must give). Extreme values: `u64::MAX`, one over the bound, 0 where 0 is
/// invalid, inverted and overlapping ranges, runs past `Instance::MAX`.
#[expect(
    clippy::too_many_lines,
    reason = "a table: one case per field bound of every message kind"
)]
fn over_bounds(edge: &MessageBody) -> Vec<(String, MessageBody, DecodeError)> {
    let mut cases: Vec<(String, MessageBody, DecodeError)> = Vec::new();
    let mut case = |what: &str, f: &dyn Fn(&mut MessageBody), error: DecodeError| {
        let mut body = edge.clone();
        f(&mut body);
        cases.push((format!("{} {what}", edge.kind()), body, error));
    };
    match edge {
        MessageBody::Handover { .. }
        | MessageBody::PreVote { .. }
        | MessageBody::PreVoteReply { .. } => {
            let field = match edge.kind() {
                "handover" => "Handover.ballot.round",
                "pre_vote" => "PreVote.ballot.round",
                _ => "PreVoteReply.ballot.round",
            };
            let set_round = |b: &mut MessageBody, round: u64| match b {
                MessageBody::Handover { ballot, .. }
                | MessageBody::PreVote { ballot }
                | MessageBody::PreVoteReply { ballot, .. } => ballot.round = round,
                _ => {}
            };
            case(
                "ballot.round ROUND_MAX + 1",
                &|b| set_round(b, ROUND_MAX + 1),
                over(field, ROUND_MAX + 1, ROUND_MAX),
            );
            case("ballot.round 0", &|b| set_round(b, 0), under(field, 0, 1));
        }
        MessageBody::CheckpointRequest { .. } => {
            case(
                "through 0",
                &|b| {
                    if let MessageBody::CheckpointRequest { through, .. } = b {
                        *through = Instance(0);
                    }
                },
                DecodeError::Zero {
                    field: "CheckpointRequest.through",
                },
            );
            case(
                "through Instance::MAX + 1",
                &|b| {
                    if let MessageBody::CheckpointRequest { through, .. } = b {
                        *through = Instance(INSTANCE_MAX + 1);
                    }
                },
                over("CheckpointRequest.through", INSTANCE_MAX + 1, INSTANCE_MAX),
            );
            case(
                "offset over the checkpoint size bound",
                &|b| {
                    if let MessageBody::CheckpointRequest { offset, .. } = b {
                        *offset = CHECKPOINT_SIZE_MAX + 1;
                    }
                },
                over(
                    "CheckpointRequest.offset",
                    CHECKPOINT_SIZE_MAX + 1,
                    CHECKPOINT_SIZE_MAX,
                ),
            );
        }
        MessageBody::CheckpointChunk { .. } => {
            case(
                "through 0",
                &|b| {
                    if let MessageBody::CheckpointChunk { through, .. } = b {
                        *through = Instance(0);
                    }
                },
                DecodeError::Zero {
                    field: "CheckpointChunk.instance",
                },
            );
            case(
                "total_size over the checkpoint size bound",
                &|b| {
                    if let MessageBody::CheckpointChunk { total_size, .. } = b {
                        *total_size = CHECKPOINT_SIZE_MAX + 1;
                    }
                },
                over(
                    "CheckpointChunk.total_size",
                    CHECKPOINT_SIZE_MAX + 1,
                    CHECKPOINT_SIZE_MAX,
                ),
            );
            case(
                "data past total_size",
                &|b| {
                    if let MessageBody::CheckpointChunk { offset, .. } = b {
                        *offset = CHECKPOINT_SIZE_MAX - 1;
                    }
                },
                DecodeError::CheckpointChunkBounds {
                    offset: CHECKPOINT_SIZE_MAX - 1,
                    size: 2,
                    total_size: CHECKPOINT_SIZE_MAX,
                    last: false,
                },
            );
        }
        MessageBody::CatchUpRaw { .. } => raw_over_bounds(&mut case),
        MessageBody::Prepare { .. } => {
            for round in [u64::MAX, ROUND_MAX + 1] {
                case(
                    &format!("ballot.round {round}"),
                    &|b| {
                        if let MessageBody::Prepare { ballot, .. } = b {
                            ballot.round = round;
                        }
                    },
                    over("Prepare.ballot.round", round, ROUND_MAX),
                );
            }
            case(
                "ballot.round 0",
                &|b| {
                    if let MessageBody::Prepare { ballot, .. } = b {
                        ballot.round = 0;
                    }
                },
                under("Prepare.ballot.round", 0, 1),
            );
            for from in [u64::MAX, INSTANCE_MAX + 1] {
                case(
                    &format!("from {from}"),
                    &|b| {
                        if let MessageBody::Prepare { from: f, .. } = b {
                            *f = Instance(from);
                        }
                    },
                    over("Prepare.from", from, INSTANCE_MAX),
                );
            }
            case(
                "from 0",
                &|b| {
                    if let MessageBody::Prepare { from, .. } = b {
                        *from = Instance(0);
                    }
                },
                DecodeError::Zero {
                    field: "Prepare.from",
                },
            );
        }
        MessageBody::Promise { .. } => {
            case(
                "ballot.round u64::MAX",
                &|b| {
                    if let MessageBody::Promise { ballot, .. } = b {
                        ballot.round = u64::MAX;
                    }
                },
                over("Promise.ballot.round", u64::MAX, ROUND_MAX),
            );
            case(
                "ballot.round 0",
                &|b| {
                    if let MessageBody::Promise { ballot, .. } = b {
                        ballot.round = 0;
                    }
                },
                under("Promise.ballot.round", 0, 1),
            );
            case(
                "chosen_through Instance::MAX + 1",
                &|b| {
                    if let MessageBody::Promise { chosen_through, .. } = b {
                        *chosen_through = Instance(INSTANCE_MAX + 1);
                    }
                },
                over("Promise.chosen_through", INSTANCE_MAX + 1, INSTANCE_MAX),
            );
            for instance in [u64::MAX, INSTANCE_MAX + 1] {
                case(
                    &format!("entries.instance {instance}"),
                    &|b| {
                        if let MessageBody::Promise { entries, .. } = b {
                            entries[1].instance = Instance(instance);
                        }
                    },
                    over("Promise.entries.instance", instance, INSTANCE_MAX),
                );
            }
            case(
                "entries.instance 0",
                &|b| {
                    if let MessageBody::Promise { entries, .. } = b {
                        entries[0].instance = Instance(0);
                    }
                },
                DecodeError::Zero {
                    field: "PromisedEntry.instance",
                },
            );
            case(
                "entries descending",
                &|b| {
                    if let MessageBody::Promise { entries, .. } = b {
                        entries.swap(0, 1);
                    }
                },
                DecodeError::NotAscending {
                    field: "Promise.entries",
                    previous: INSTANCE_MAX,
                    next: INSTANCE_MAX - 1,
                },
            );
            case(
                "entries.ballot.round ROUND_MAX + 1",
                &|b| {
                    if let MessageBody::Promise { entries, .. } = b {
                        entries[0].ballot.round = ROUND_MAX + 1;
                    }
                },
                over("Promise.entries.ballot.round", ROUND_MAX + 1, ROUND_MAX),
            );
            case(
                "entries.entry.origin.round u64::MAX",
                &|b| {
                    if let MessageBody::Promise { entries, .. } = b {
                        entries[1].entry.origin.round = u64::MAX;
                    }
                },
                over("Promise.entries.entry.origin.round", u64::MAX, ROUND_MAX),
            );
        }
        MessageBody::Reject { .. } => {
            for round in [u64::MAX, ROUND_MAX + 1] {
                case(
                    &format!("promised.round {round}"),
                    &|b| {
                        if let MessageBody::Reject { promised } = b {
                            promised.round = round;
                        }
                    },
                    over("Reject.promised.round", round, ROUND_MAX),
                );
            }
        }
        MessageBody::Accept { .. } => {
            for round in [u64::MAX, ROUND_MAX + 1] {
                case(
                    &format!("ballot.round {round}"),
                    &|b| {
                        if let MessageBody::Accept { ballot, .. } = b {
                            ballot.round = round;
                        }
                    },
                    over("Accept.ballot.round", round, ROUND_MAX),
                );
            }
            case(
                "ballot.round 0",
                &|b| {
                    if let MessageBody::Accept { ballot, .. } = b {
                        ballot.round = 0;
                    }
                },
                under("Accept.ballot.round", 0, 1),
            );
            case(
                "chosen_through u64::MAX",
                &|b| {
                    if let MessageBody::Accept { chosen_through, .. } = b {
                        *chosen_through = Instance(u64::MAX);
                    }
                },
                over("Accept.chosen_through", u64::MAX, INSTANCE_MAX),
            );
            case(
                "run past Instance::MAX",
                &|b| {
                    if let MessageBody::Accept { first, .. } = b {
                        *first = Instance(INSTANCE_MAX);
                    }
                },
                over("Accept.first", INSTANCE_MAX, INSTANCE_MAX - 1),
            );
            case(
                "run past u64::MAX",
                &|b| {
                    if let MessageBody::Accept { first, .. } = b {
                        *first = Instance(u64::MAX);
                    }
                },
                DecodeError::InstanceOverflow {
                    field: "Accept.first",
                    first: u64::MAX,
                    count: 2,
                },
            );
            case(
                "first 0",
                &|b| {
                    if let MessageBody::Accept { first, .. } = b {
                        *first = Instance(0);
                    }
                },
                DecodeError::Zero {
                    field: "Accept.first",
                },
            );
            case(
                "entries.origin.round ROUND_MAX + 1",
                &|b| {
                    if let MessageBody::Accept { entries, .. } = b {
                        entries[1].origin.round = ROUND_MAX + 1;
                    }
                },
                over("Accept.entries.origin.round", ROUND_MAX + 1, ROUND_MAX),
            );
        }
        MessageBody::Accepted { .. } => {
            case(
                "ballot.round u64::MAX",
                &|b| {
                    if let MessageBody::Accepted { ballot, .. } = b {
                        ballot.round = u64::MAX;
                    }
                },
                over("Accepted.ballot.round", u64::MAX, ROUND_MAX),
            );
            case(
                "ballot.round 0",
                &|b| {
                    if let MessageBody::Accepted { ballot, .. } = b {
                        ballot.round = 0;
                    }
                },
                under("Accepted.ballot.round", 0, 1),
            );
            case(
                "ranges.last Instance::MAX + 1",
                &|b| {
                    if let MessageBody::Accepted { ranges, .. } = b {
                        ranges[1].last = Instance(INSTANCE_MAX + 1);
                    }
                },
                over("Accepted.ranges.last", INSTANCE_MAX + 1, INSTANCE_MAX),
            );
            case(
                "range at u64::MAX",
                &|b| {
                    if let MessageBody::Accepted { ranges, .. } = b {
                        ranges[1] = range(u64::MAX, u64::MAX);
                    }
                },
                over("Accepted.ranges.first", u64::MAX, INSTANCE_MAX),
            );
            case(
                "range inverted",
                &|b| {
                    if let MessageBody::Accepted { ranges, .. } = b {
                        ranges[1] = range(7, 3);
                    }
                },
                DecodeError::RangeInverted { first: 7, last: 3 },
            );
            case(
                "range at 0",
                &|b| {
                    if let MessageBody::Accepted { ranges, .. } = b {
                        ranges[0] = range(0, 1);
                    }
                },
                DecodeError::Zero {
                    field: "InstanceRange.first",
                },
            );
            case(
                "ranges overlapping",
                &|b| {
                    if let MessageBody::Accepted { ranges, .. } = b {
                        ranges[0] = range(1, 3);
                    }
                },
                DecodeError::NotAscending {
                    field: "Accepted.ranges",
                    previous: 3,
                    next: 3,
                },
            );
        }
        MessageBody::Heartbeat { .. } => {
            case(
                "ballot.round u64::MAX",
                &|b| {
                    if let MessageBody::Heartbeat { ballot, .. } = b {
                        ballot.round = u64::MAX;
                    }
                },
                over("Heartbeat.ballot.round", u64::MAX, ROUND_MAX),
            );
            case(
                "ballot.round 0",
                &|b| {
                    if let MessageBody::Heartbeat { ballot, .. } = b {
                        ballot.round = 0;
                    }
                },
                under("Heartbeat.ballot.round", 0, 1),
            );
            case(
                "chosen_through Instance::MAX + 1",
                &|b| {
                    if let MessageBody::Heartbeat { chosen_through, .. } = b {
                        *chosen_through = Instance(INSTANCE_MAX + 1);
                    }
                },
                over("Heartbeat.chosen_through", INSTANCE_MAX + 1, INSTANCE_MAX),
            );
            case(
                "checksum_through u64::MAX",
                &|b| {
                    if let MessageBody::Heartbeat {
                        checksum_through, ..
                    } = b
                    {
                        *checksum_through = Instance(u64::MAX);
                    }
                },
                over("Heartbeat.checksum_through", u64::MAX, INSTANCE_MAX),
            );
        }
        MessageBody::HeartbeatAck { .. } => {
            case(
                "ballot.round ROUND_MAX + 1",
                &|b| {
                    if let MessageBody::HeartbeatAck { ballot, .. } = b {
                        ballot.round = ROUND_MAX + 1;
                    }
                },
                over("HeartbeatAck.ballot.round", ROUND_MAX + 1, ROUND_MAX),
            );
            case(
                "ballot.round 0",
                &|b| {
                    if let MessageBody::HeartbeatAck { ballot, .. } = b {
                        ballot.round = 0;
                    }
                },
                under("HeartbeatAck.ballot.round", 0, 1),
            );
        }
        MessageBody::CatchUpRequest { .. } => {
            for from in [u64::MAX, INSTANCE_MAX + 1] {
                case(
                    &format!("from {from}"),
                    &|b| {
                        if let MessageBody::CatchUpRequest { from: f, .. } = b {
                            *f = Instance(from);
                        }
                    },
                    over("CatchUpRequest.from", from, INSTANCE_MAX),
                );
            }
            case(
                "from 0",
                &|b| {
                    if let MessageBody::CatchUpRequest { from, .. } = b {
                        *from = Instance(0);
                    }
                },
                DecodeError::Zero {
                    field: "CatchUpRequest.from",
                },
            );
        }
        MessageBody::CatchUpChunk { .. } => {
            case(
                "chosen_through Instance::MAX + 1",
                &|b| {
                    if let MessageBody::CatchUpChunk { chosen_through, .. } = b {
                        *chosen_through = Instance(INSTANCE_MAX + 1);
                    }
                },
                over(
                    "CatchUpChunk.chosen_through",
                    INSTANCE_MAX + 1,
                    INSTANCE_MAX,
                ),
            );
            case(
                "promised.round u64::MAX",
                &|b| {
                    if let MessageBody::CatchUpChunk { promised, .. } = b {
                        promised.round = u64::MAX;
                    }
                },
                over("CatchUpChunk.promised.round", u64::MAX, ROUND_MAX),
            );
            case(
                "accepted_max u64::MAX",
                &|b| {
                    if let MessageBody::CatchUpChunk { accepted_max, .. } = b {
                        *accepted_max = Instance(u64::MAX);
                    }
                },
                over("CatchUpChunk.accepted_max", u64::MAX, INSTANCE_MAX),
            );
            case(
                "run past Instance::MAX",
                &|b| {
                    if let MessageBody::CatchUpChunk { first, .. } = b {
                        *first = Instance(INSTANCE_MAX);
                    }
                },
                over("CatchUpChunk.first", INSTANCE_MAX, INSTANCE_MAX - 1),
            );
            case(
                "run past u64::MAX",
                &|b| {
                    if let MessageBody::CatchUpChunk { first, .. } = b {
                        *first = Instance(u64::MAX);
                    }
                },
                DecodeError::InstanceOverflow {
                    field: "CatchUpChunk.first",
                    first: u64::MAX,
                    count: 2,
                },
            );
            case(
                "first 0",
                &|b| {
                    if let MessageBody::CatchUpChunk { first, .. } = b {
                        *first = Instance(0);
                    }
                },
                DecodeError::Zero {
                    field: "CatchUpChunk.first",
                },
            );
            case(
                "entries.origin.round u64::MAX",
                &|b| {
                    if let MessageBody::CatchUpChunk { entries, .. } = b {
                        entries[0].origin.round = u64::MAX;
                    }
                },
                over("CatchUpChunk.entries.origin.round", u64::MAX, ROUND_MAX),
            );
        }
    }
    cases
}

/// `over_bounds` for the edge `CatchUpRaw`.
/// One over-bounds case: what, how the edge body is changed, the error expected.
type Case<'a> = &'a mut dyn FnMut(&str, &dyn Fn(&mut MessageBody), DecodeError);

fn raw_over_bounds(case: Case<'_>) {
    let run_of = |b: &mut MessageBody, f: &dyn Fn(&mut RawRun)| {
        if let MessageBody::CatchUpRaw { run, .. } = b {
            f(run);
        }
    };
    case(
        "first 0",
        &|b| run_of(b, &|r| r.first_instance = Instance(0)),
        DecodeError::Zero {
            field: "CatchUpRaw.first",
        },
    );
    case(
        "last below first",
        &|b| run_of(b, &|r| r.last_instance = Instance(INSTANCE_MAX - 2)),
        DecodeError::RangeInverted {
            first: INSTANCE_MAX - 1,
            last: INSTANCE_MAX - 2,
        },
    );
    case(
        "last Instance::MAX + 1",
        &|b| run_of(b, &|r| r.last_instance = Instance(INSTANCE_MAX + 1)),
        over("CatchUpRaw.last", INSTANCE_MAX + 1, INSTANCE_MAX),
    );
    case(
        "chosen_through u64::MAX",
        &|b| {
            if let MessageBody::CatchUpRaw { chosen_through, .. } = b {
                *chosen_through = Instance(u64::MAX);
            }
        },
        over("CatchUpRaw.chosen_through", u64::MAX, INSTANCE_MAX),
    );
    case(
        "promised.round u64::MAX",
        &|b| {
            if let MessageBody::CatchUpRaw { promised, .. } = b {
                promised.round = u64::MAX;
            }
        },
        over("CatchUpRaw.promised.round", u64::MAX, ROUND_MAX),
    );
    case(
        "accepted_max u64::MAX",
        &|b| {
            if let MessageBody::CatchUpRaw { accepted_max, .. } = b {
                *accepted_max = Instance(u64::MAX);
            }
        },
        over("CatchUpRaw.accepted_max", u64::MAX, INSTANCE_MAX),
    );
}

fn in_batch(body: MessageBody) -> Message {
    Message {
        group: GroupId(1),
        from: NodeId(2),
        to: NodeId(3),
        body,
    }
}

// Goal: the decoder refuses every ballot round and instance a forged or corrupt peer
// message can carry beyond the bounds (u64::MAX, one over ROUND_MAX or Instance::MAX,
// 0 where 0 is invalid, inverted or overlapping ranges, runs past the end), for every
// message kind, naming the field, the value and the bound; and it accepts every kind
// with each field exactly at its bound. The core's own check agrees on every case.
// Method: one edge body per kind (decoded unchanged, alone and together), then each
// field pushed over its bound, alone and hidden among the edge bodies of one batch.
#[test]
fn message_bounds_are_enforced() {
    let limits = DecodeLimits::default();
    let edges = edge_bodies();
    let kinds: std::collections::BTreeSet<&str> = edges.iter().map(MessageBody::kind).collect();
    assert_eq!(kinds.len(), BODY_KINDS as usize, "an edge body per kind");
    let batch: Vec<Message> = edges.iter().cloned().map(in_batch).collect();
    assert_eq!(decode_frame(&frame_of(&batch), &limits), Ok(batch.clone()));
    let mut refused_kinds = std::collections::BTreeSet::new();
    let mut cases = 0;
    for edge in &edges {
        assert_eq!(edge.check_bounds(), Ok(()), "{}", edge.kind());
        let alone = vec![in_batch(edge.clone())];
        assert_eq!(decode_frame(&frame_of(&alone), &limits), Ok(alone));
        for (what, body, expected) in over_bounds(edge) {
            cases += 1;
            refused_kinds.insert(edge.kind());
            assert!(body.check_bounds().is_err(), "{what}: the core accepts it");
            let alone = frame_of(&[in_batch(body.clone())]);
            assert_eq!(
                decode_frame(&alone, &limits),
                Err(expected.clone()),
                "{what}"
            );
            assert_eq!(decode(&alone, &limits), Err(expected.clone()), "{what}");
            let mut hidden = batch.clone();
            hidden.insert(hidden.len() / 2, in_batch(body));
            assert_eq!(
                decode_frame(&frame_of(&hidden), &limits),
                Err(expected.clone()),
                "{what}: hidden in a batch"
            );
            if let DecodeError::OutOfBounds(oob) = &expected {
                let text = expected.to_string();
                assert!(
                    text.contains(oob.field) && text.contains(&oob.value.to_string()),
                    "{what}: {text}"
                );
                let bound = match oob.bound {
                    Bound::AtMost(max) => max,
                    Bound::AtLeast(min) => min,
                };
                assert!(text.contains(&format!("bound {bound}")), "{what}: {text}");
            }
        }
    }
    assert_eq!(refused_kinds, kinds, "a refusal case per kind");
    assert!(cases >= 45, "{cases} cases");
}

// Goal: the batch frames that carry ballots and instances outside a MessageBatch
// (HeartbeatBatch, HeartbeatAckBatch, CheckpointChunk) are bounded like the messages
// they stand for; CatchUpStream carries neither (its records are checked by the WAL).
// Method: each at its edge is accepted; each field past its bound, alone or among
// honest entries, refuses the whole frame with the field, value and bound.
#[expect(
    clippy::too_many_lines,
    reason = "a table: one case per field bound of each batch frame"
)]
#[test]
fn batch_bounds_are_enforced() {
    let limits = DecodeLimits::default();
    let edge = GroupHeartbeat {
        group: GroupId(1),
        ballot: at_round(ROUND_MAX),
        chosen_through: Instance(INSTANCE_MAX),
        sent_at: Nanos(u64::MAX),
        checksum_through: Instance(INSTANCE_MAX),
        checksum: 1,
    };
    let heartbeats = |bad: Option<GroupHeartbeat>| {
        let mut heartbeats = vec![edge; 3];
        heartbeats.extend(bad);
        heartbeats.push(edge);
        HeartbeatBatch {
            from: NodeId(1),
            to: NodeId(2),
            heartbeats,
        }
    };
    let batch = heartbeats(None);
    assert_eq!(
        decode_heartbeat_batch(&encoded(&FrameBody::HeartbeatBatch(batch.clone())), &limits),
        Ok(batch)
    );
    let heartbeat_cases = [
        (
            GroupHeartbeat {
                ballot: at_round(u64::MAX),
                ..edge
            },
            over("Heartbeat.ballot.round", u64::MAX, ROUND_MAX),
        ),
        (
            GroupHeartbeat {
                ballot: at_round(ROUND_MAX + 1),
                ..edge
            },
            over("Heartbeat.ballot.round", ROUND_MAX + 1, ROUND_MAX),
        ),
        (
            GroupHeartbeat {
                ballot: at_round(0),
                ..edge
            },
            under("Heartbeat.ballot.round", 0, 1),
        ),
        (
            GroupHeartbeat {
                chosen_through: Instance(INSTANCE_MAX + 1),
                ..edge
            },
            over("Heartbeat.chosen_through", INSTANCE_MAX + 1, INSTANCE_MAX),
        ),
        (
            GroupHeartbeat {
                checksum_through: Instance(u64::MAX),
                ..edge
            },
            over("Heartbeat.checksum_through", u64::MAX, INSTANCE_MAX),
        ),
    ];
    for (bad, expected) in heartbeat_cases {
        let bytes = encoded(&FrameBody::HeartbeatBatch(heartbeats(Some(bad))));
        assert_eq!(
            decode_heartbeat_batch(&bytes, &limits),
            Err(expected.clone())
        );
        assert_eq!(decode(&bytes, &limits), Err(expected));
    }

    let ack = GroupHeartbeatAck {
        group: GroupId(1),
        ballot: at_round(ROUND_MAX),
        sent_at: Nanos(u64::MAX),
    };
    let acks = |bad: Option<GroupHeartbeatAck>| {
        let mut acks = vec![ack; 2];
        acks.extend(bad);
        HeartbeatAckBatch {
            from: NodeId(2),
            to: NodeId(1),
            acks,
        }
    };
    let batch = acks(None);
    assert_eq!(
        decode_heartbeat_ack_batch(
            &encoded(&FrameBody::HeartbeatAckBatch(batch.clone())),
            &limits
        ),
        Ok(batch)
    );
    for (round, expected) in [
        (
            u64::MAX,
            over("HeartbeatAck.ballot.round", u64::MAX, ROUND_MAX),
        ),
        (
            ROUND_MAX + 1,
            over("HeartbeatAck.ballot.round", ROUND_MAX + 1, ROUND_MAX),
        ),
        (0, under("HeartbeatAck.ballot.round", 0, 1)),
    ] {
        let bad = GroupHeartbeatAck {
            ballot: at_round(round),
            ..ack
        };
        let bytes = encoded(&FrameBody::HeartbeatAckBatch(acks(Some(bad))));
        assert_eq!(
            decode_heartbeat_ack_batch(&bytes, &limits),
            Err(expected.clone())
        );
        assert_eq!(decode(&bytes, &limits), Err(expected));
    }

    let chunk = |instance: u64| {
        encoded(&FrameBody::CheckpointChunk(CheckpointChunk {
            group: GroupId(1),
            instance: Instance(instance),
            offset: 0,
            total_size: 3,
            data: Bytes::from_static(b"abc"),
            last: true,
        }))
    };
    assert!(decode_checkpoint_chunk(&chunk(INSTANCE_MAX), &limits).is_ok());
    for instance in [u64::MAX, INSTANCE_MAX + 1] {
        let expected = over("CheckpointChunk.instance", instance, INSTANCE_MAX);
        assert_eq!(
            decode_checkpoint_chunk(&chunk(instance), &limits),
            Err(expected.clone())
        );
        assert_eq!(decode(&chunk(instance), &limits), Err(expected));
    }
}

// Goal: (re)write the peer frame seeds of the fuzz corpus (fuzz/corpus/peer_frame/). Not
// a check: run on demand (`cargo test -- --ignored write_fuzz_seeds`).
// Method: random frame bodies of every kind (a third message batches), as one payload or
// a stream of two frames.
#[test]
#[ignore = "writes fuzz/corpus/: cargo test -- --ignored write_fuzz_seeds"]
fn write_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/peer_frame");
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    let mut rng = Prng::new(0xF022_5EED);
    let mut written = 0;
    while written < 40 {
        let body = if written % 3 == 0 {
            FrameBody::MessageBatch(messages(&mut rng))
        } else {
            frame_body(&mut rng)
        };
        let payload = encoded(&body);
        if payload.len() > 16 << 10 {
            continue;
        }
        let data = if written % 2 == 0 {
            payload
        } else {
            let mut stream = Vec::new();
            append_frame(&payload, usize::MAX, &mut stream).expect("fits");
            let second = encoded(&frame_body(&mut rng));
            append_frame(&second, usize::MAX, &mut stream).expect("fits");
            stream
        };
        let name = format!("seed-{written:02}-{}", body.kind());
        std::fs::write(dir.join(name), data).expect("write a seed");
        written += 1;
    }
}
