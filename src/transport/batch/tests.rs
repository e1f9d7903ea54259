//! Tests of the batch packer: round trips, every bound, the accounting of drops, and
//! the refusals of `unpack`, on inputs drawn from `crate::prng`.

use bytes::Bytes;

use super::{is_batched, unpack, Packed, Packer, UnpackError};
use crate::paxos::{
    Ballot, Body, Entry, GroupId, Instance, InstanceRange, Message, MessageBody, Nanos, NodeId,
};
use crate::prng::Prng;
use crate::transport::{
    decode, split_frame, CatchUpStream, DecodeLimits, Encoder, FrameBody, Handshake,
    HandshakeProof, HeartbeatAckBatch, HeartbeatBatch, FRAME_HEADER_SIZE, PROTOCOL_VERSION,
};

const FROM: NodeId = NodeId(1);
const TO: NodeId = NodeId(2);

fn ballot(rng: &mut Prng) -> Ballot {
    Ballot {
        round: rng.range(1, 1_000),
        node: NodeId(rng.range(1, 5) as u32),
    }
}

/// A message from `FROM` to `TO` of a random kind; values up to `value_size_max` bytes.
fn message(rng: &mut Prng, value_size_max: u64) -> Message {
    let body = match rng.below(7) {
        0 => MessageBody::Prepare {
            ballot: ballot(rng),
            from: Instance(rng.range(1, 1 << 20)),
        },
        1 => MessageBody::Reject {
            promised: ballot(rng),
        },
        2 => {
            let entries = (0..rng.range(1, 3))
                .map(|_| Entry {
                    origin: ballot(rng),
                    body: Body::Values(
                        (0..rng.range(1, 3))
                            .map(|_| {
                                let mut v = vec![0_u8; rng.below(value_size_max + 1) as usize];
                                rng.fill(&mut v);
                                Bytes::from(v)
                            })
                            .collect(),
                    ),
                })
                .collect();
            MessageBody::Accept {
                ballot: ballot(rng),
                chosen_through: Instance(rng.below(1 << 20)),
                first: Instance(rng.range(1, 1 << 20)),
                entries,
            }
        }
        3 => {
            let mut next = rng.range(1, 1 << 20);
            let ranges = (0..rng.range(1, 4))
                .map(|_| {
                    let first = next + rng.below(3);
                    let last = first + rng.below(8);
                    next = last + 1;
                    InstanceRange {
                        first: Instance(first),
                        last: Instance(last),
                    }
                })
                .collect();
            MessageBody::Accepted {
                ballot: ballot(rng),
                ranges,
            }
        }
        4 => MessageBody::CatchUpRequest {
            from: Instance(rng.range(1, 1 << 20)),
            credit: u32::try_from(rng.range(0, 8)).expect("small"),
            retired: false,
        },
        5 => MessageBody::Heartbeat {
            ballot: ballot(rng),
            chosen_through: Instance(rng.below(1 << 20)),
            sent_at: Nanos(rng.next_u64() >> 1),
            checksum_through: Instance(rng.below(1 << 20)),
            checksum: rng.next_u64() as u32,
        },
        _ => MessageBody::HeartbeatAck {
            ballot: ballot(rng),
            sent_at: Nanos(rng.next_u64() >> 1),
        },
    };
    Message {
        group: GroupId(rng.below(10_000) as u32),
        from: FROM,
        to: TO,
        body,
    }
}

fn messages(rng: &mut Prng, count_max: u64, value_size_max: u64) -> Vec<Message> {
    (0..rng.below(count_max + 1))
        .map(|_| message(rng, value_size_max))
        .collect()
}

fn is_heartbeat(m: &Message) -> bool {
    matches!(m.body, MessageBody::Heartbeat { .. })
}

fn is_ack(m: &Message) -> bool {
    matches!(m.body, MessageBody::HeartbeatAck { .. })
}

/// What a peer receives from `buffer`: every frame's size and body, and the messages.
fn receive(buffer: &[u8], limits: &DecodeLimits) -> (Vec<(usize, FrameBody)>, Vec<Message>) {
    let mut frames = Vec::new();
    let mut received = Vec::new();
    let mut rest = buffer;
    while !rest.is_empty() {
        let (payload, consumed) = split_frame(rest, limits.frame_size_max)
            .expect("a frame within frame_size_max")
            .expect("a whole frame");
        let body = decode(payload, limits).expect("the receiver's limits accept it");
        unpack(body.clone(), FROM, TO, &mut received).expect("genuine");
        frames.push((payload.len(), body));
        rest = &rest[consumed..];
    }
    (frames, received)
}

/// Whether `m` alone encodes into a frame over `frame_size_max`.
fn alone_too_large(m: &Message, frame_size_max: usize) -> bool {
    let mut out = Vec::new();
    Encoder::new().encode_frame(std::slice::from_ref(m), &mut out);
    out.len() > frame_size_max
}

// Goal: with room for everything, what the peer unpacks is every message of the call:
// the batched ones in order, then the heartbeats, then the acks, each in order.
// Method: 300 random calls of up to 200 messages packed with the default limits into
// one buffer, then split, decoded and unpacked as a receiver does.
#[test]
fn round_trip_keeps_every_message_in_order_per_kind() {
    let mut rng = Prng::new(0x6261_7463_6801);
    let limits = DecodeLimits::default();
    let mut packer = Packer::new();
    for call in 0..300 {
        let input = messages(&mut rng, 200, 300);
        let mut buffer = Vec::new();
        let packed = packer.pack(FROM, TO, &input, &limits, usize::MAX, &mut buffer);
        assert_eq!(
            packed.messages,
            input.len() as u64,
            "call {call}: {packed:?}"
        );
        assert_eq!(packed.dropped_queue_full, 0);
        assert!(packed.dropped_too_large.is_empty());
        let (frames, received) = receive(&buffer, &limits);
        assert_eq!(frames.len() as u64, packed.frames);
        // One frame per kind present: nothing here needs a split.
        assert!(frames.len() <= 3, "call {call}: {} frames", frames.len());
        let expected: Vec<Message> = input
            .iter()
            .filter(|m| is_batched(m))
            .chain(input.iter().filter(|m| is_heartbeat(m)))
            .chain(input.iter().filter(|m| is_ack(m)))
            .cloned()
            .collect();
        assert!(received == expected, "call {call}");
    }
}

// Goal: under small limits every frame respects frame_size_max, messages_max and
// heartbeats_max, the buffer stays within queue_size_max plus one frame, frames come
// messages first, then heartbeats, then acks, and every message is accounted for once.
// Method: 2,000 random calls with random small limits and values up to 4 KiB, some
// alone larger than the frame bound; the receiver's view is compared with the input.
#[test]
fn frames_respect_every_bound_and_drops_are_counted() {
    let mut rng = Prng::new(0x6261_7463_6802);
    let mut packer = Packer::new();
    for call in 0..2_000 {
        let limits = DecodeLimits {
            frame_size_max: rng.range(512, 16 << 10) as usize,
            messages_max: rng.range(1, 8) as usize,
            heartbeats_max: rng.range(1, 8) as usize,
            ..DecodeLimits::default()
        };
        let queue_size_max = if rng.coin() {
            usize::MAX
        } else {
            rng.below(32 << 10) as usize
        };
        let input = messages(&mut rng, 60, 4 << 10);
        let mut buffer = Vec::new();
        let packed = packer.pack(FROM, TO, &input, &limits, queue_size_max, &mut buffer);
        let Packed {
            frames: frame_count,
            messages: packed_count,
            dropped_queue_full,
            dropped_too_large,
        } = &packed;
        assert_eq!(
            packed_count + dropped_queue_full + dropped_too_large.len() as u64,
            input.len() as u64,
            "call {call}: {packed:?}"
        );
        assert!(dropped_too_large
            .iter()
            .all(|size| *size > limits.frame_size_max));

        let (frames, received) = receive(&buffer, &limits);
        assert_eq!(frames.len() as u64, *frame_count, "call {call}");
        assert_eq!(received.len() as u64, *packed_count, "call {call}");
        let mut frame_size_largest = 0;
        let mut stage = 0;
        for (size, body) in &frames {
            assert!(*size <= limits.frame_size_max, "call {call}: {size}");
            frame_size_largest = frame_size_largest.max(FRAME_HEADER_SIZE + size);
            let (this_stage, count, count_max) = match body {
                FrameBody::MessageBatch(m) => (0, m.len(), limits.messages_max),
                FrameBody::HeartbeatBatch(b) => (1, b.heartbeats.len(), limits.heartbeats_max),
                FrameBody::HeartbeatAckBatch(b) => (2, b.acks.len(), limits.heartbeats_max),
                other => panic!("call {call}: a {} frame", other.kind()),
            };
            assert!(this_stage >= stage, "call {call}: frames out of order");
            stage = this_stage;
            assert!(
                count >= 1 && count <= count_max,
                "call {call}: {count} > {count_max}"
            );
        }
        assert!(
            buffer.len() <= queue_size_max.saturating_add(frame_size_largest),
            "call {call}: {} bytes queued, queue_size_max = {queue_size_max}",
            buffer.len()
        );

        // Per kind, what arrived is a prefix of what could be sent (too-large messages
        // removed); all of it when nothing was dropped for a full buffer.
        let fits = |m: &&Message| !is_batched(m) || !alone_too_large(m, limits.frame_size_max);
        for kind in [is_batched, is_heartbeat, is_ack] {
            let sendable: Vec<&Message> = input.iter().filter(|m| kind(m)).filter(fits).collect();
            let got: Vec<&Message> = received.iter().filter(|m| kind(m)).collect();
            assert!(got.len() <= sendable.len(), "call {call}");
            assert!(got[..] == sendable[..got.len()], "call {call}");
            if *dropped_queue_full == 0 {
                assert_eq!(got.len(), sendable.len(), "call {call}");
            }
        }
        if *dropped_queue_full == 0 {
            let too_large = input
                .iter()
                .filter(|m| is_batched(m) && alone_too_large(m, limits.frame_size_max))
                .count();
            assert_eq!(dropped_too_large.len(), too_large, "call {call}");
        }
    }
}

// Goal: the heartbeats and acks of 10,000 groups leave as one frame each.
// Method: pack 10,000 heartbeats and 10,000 acks with the default limits.
#[test]
fn heartbeats_of_many_groups_share_one_frame() {
    let mut rng = Prng::new(0x6261_7463_6803);
    let mut input = Vec::new();
    for group in 0..10_000 {
        for kind in [5, 6] {
            let mut m = message(&mut rng, 0);
            while !(kind == 5 && is_heartbeat(&m) || kind == 6 && is_ack(&m)) {
                m = message(&mut rng, 0);
            }
            m.group = GroupId(group);
            input.push(m);
        }
    }
    let limits = DecodeLimits::default();
    let mut buffer = Vec::new();
    let packed = Packer::new().pack(FROM, TO, &input, &limits, usize::MAX, &mut buffer);
    assert_eq!(packed.frames, 2, "{packed:?}");
    let (_, received) = receive(&buffer, &limits);
    assert_eq!(received.len(), 20_000);
}

// Goal: once the buffer holds queue_size_max bytes nothing more is appended, and the
// rest is counted; a message too large alone is dropped while the others go.
// Method: a buffer already at the bound; then a call with one huge accept.
#[test]
fn full_buffer_and_too_large_message_are_counted() {
    let mut rng = Prng::new(0x6261_7463_6804);
    let limits = DecodeLimits {
        frame_size_max: 4096,
        ..DecodeLimits::default()
    };
    let input: Vec<Message> = (0..20).map(|_| message(&mut rng, 100)).collect();
    let mut buffer = vec![0_u8; 100];
    let packed = Packer::new().pack(FROM, TO, &input, &limits, 100, &mut buffer);
    assert_eq!(packed.frames, 0);
    assert_eq!(packed.dropped_queue_full, 20);
    assert_eq!(buffer.len(), 100);

    let huge = Message {
        group: GroupId(1),
        from: FROM,
        to: TO,
        body: MessageBody::Accept {
            ballot: ballot(&mut rng),
            chosen_through: Instance(0),
            first: Instance(1),
            entries: vec![Entry {
                origin: ballot(&mut rng),
                body: Body::Values(smallvec::smallvec![Bytes::from(vec![1_u8; 10_000])]),
            }],
        },
    };
    let small = Message {
        group: GroupId(2),
        from: FROM,
        to: TO,
        body: MessageBody::CatchUpRequest {
            from: Instance(3),
            credit: 4,
            retired: false,
        },
    };
    let mut buffer = Vec::new();
    let packed = Packer::new().pack(
        FROM,
        TO,
        &[huge, small.clone()],
        &limits,
        usize::MAX,
        &mut buffer,
    );
    assert_eq!(packed.dropped_too_large.len(), 1, "{packed:?}");
    assert!(packed.dropped_too_large[0] > 10_000);
    let (_, received) = receive(&buffer, &limits);
    assert_eq!(received, vec![small]);
}

// Goal: unpack refuses, whole, a frame that names another sender or receiver, and
// every frame that is not a body of messages; a genuine frame yields its messages.
// Method: unpack crafted frame bodies into a list holding one message already.
#[test]
fn unpack_refuses_forged_and_other_frames() {
    let mut rng = Prng::new(0x6261_7463_6805);
    let genuine = message(&mut rng, 10);
    let mut other = genuine.clone();
    other.from = NodeId(3);
    let mut out = vec![genuine.clone()];
    let refused = [
        (
            FrameBody::MessageBatch(vec![genuine.clone(), other]),
            UnpackError::Forged {
                from: NodeId(3),
                to: TO,
            },
        ),
        (
            FrameBody::HeartbeatBatch(HeartbeatBatch {
                from: FROM,
                to: NodeId(9),
                heartbeats: Vec::new(),
            }),
            UnpackError::Forged {
                from: FROM,
                to: NodeId(9),
            },
        ),
        (
            FrameBody::HeartbeatAckBatch(HeartbeatAckBatch {
                from: NodeId(3),
                to: TO,
                acks: Vec::new(),
            }),
            UnpackError::Forged {
                from: NodeId(3),
                to: TO,
            },
        ),
        (
            FrameBody::HandshakeProof(HandshakeProof { proof: [0; 32] }),
            UnpackError::UnexpectedHandshake {
                kind: "HandshakeProof",
            },
        ),
        (
            FrameBody::Handshake(Handshake {
                protocol_version: PROTOCOL_VERSION,
                cluster: 1,
                node: FROM,
                shard: 0,
                shards: 1,
                layout: Vec::new(),
                nonce: None,
                proof: None,
            }),
            UnpackError::UnexpectedHandshake { kind: "Handshake" },
        ),
        (
            FrameBody::CatchUpStream(CatchUpStream {
                group: GroupId(1),
                first_lsn: crate::paxos::Lsn(1),
                records: Bytes::new(),
                credit_size: 0,
                salt: 0,
            }),
            UnpackError::Unsupported {
                kind: "CatchUpStream",
            },
        ),
    ];
    for (body, error) in refused {
        assert_eq!(unpack(body, FROM, TO, &mut out), Err(error));
        assert_eq!(out.len(), 1);
    }
    let genuine_frame = FrameBody::MessageBatch(vec![genuine.clone(), genuine.clone()]);
    assert_eq!(unpack(genuine_frame, FROM, TO, &mut out), Ok(2));
    assert_eq!(out.len(), 3);
}
