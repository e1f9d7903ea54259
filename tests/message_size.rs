//! The core's size estimate of a peer message (`MessageBody::encoded_size`, computed
//! without encoding) against the real wire codec: never below it, never far above it,
//! and what the core sends under its default budget fits a frame.

use bytes::Bytes;
use synod::paxos::size::{
    ENTRY_OVERHEAD_SIZE, MESSAGE_OVERHEAD_SIZE, PIECE_OVERHEAD_SIZE, PROMISED_ENTRY_OVERHEAD_SIZE,
    VALUE_OVERHEAD_SIZE,
};
use synod::paxos::{
    Ballot, Body, Entry, GroupConfig, GroupId, Instance, InstanceRange, Membership, Message,
    MessageBody, Nanos, NodeId, PromisedEntry, RawRun,
};
use synod::prng::Prng;
use synod::transport::{encode_frame, DecodeLimits};

fn ballot(rng: &mut Prng) -> Ballot {
    Ballot {
        round: rng.range(0, Ballot::ROUND_MAX),
        node: NodeId(rng.next_u64() as u32),
    }
}

/// Sizes skewed small with a long tail: 0, a few bytes, kilobytes, up to `max`.
fn size(rng: &mut Prng, max: u64) -> usize {
    let top = (max >> rng.range(0, 20)).max(1);
    rng.range(0, top) as usize
}

fn entry(rng: &mut Prng, value_max: u64) -> Entry {
    let body = match rng.below(5) {
        0 => Body::Noop,
        1 => Body::StartWorking,
        2 => {
            let n = rng.range(1, 64) as usize;
            Body::Config(Membership::new(
                (0..n).map(|_| NodeId(rng.next_u64() as u32)).collect(),
            ))
        }
        _ => {
            let n = size(rng, 300);
            Body::Values(
                (0..n)
                    .map(|_| {
                        let mut v = vec![0u8; size(rng, value_max)];
                        rng.fill(&mut v);
                        Bytes::from(v)
                    })
                    .collect(),
            )
        }
    };
    Entry {
        origin: ballot(rng),
        body,
    }
}

fn body(rng: &mut Prng, kind: u64) -> MessageBody {
    let n = size(rng, 64);
    let value_max = 256 << 10;
    let mut at = rng.range(1, 1 << 40);
    match kind {
        0 => MessageBody::Prepare {
            ballot: ballot(rng),
            from: Instance(at),
        },
        1 => MessageBody::Promise {
            ballot: ballot(rng),
            chosen_through: Instance(rng.range(0, Instance::MAX.0)),
            entries: (0..n)
                .map(|_| {
                    at += rng.range(1, 3);
                    PromisedEntry {
                        instance: Instance(at),
                        ballot: ballot(rng),
                        chosen: rng.coin(),
                        entry: entry(rng, value_max),
                    }
                })
                .collect(),
            truncated: rng.coin(),
        },
        2 => MessageBody::Reject {
            promised: ballot(rng),
        },
        3 => MessageBody::Accept {
            ballot: ballot(rng),
            chosen_through: Instance(rng.next_u64()),
            first: Instance(at),
            entries: (0..n).map(|_| entry(rng, value_max)).collect(),
        },
        4 => MessageBody::Accepted {
            ballot: ballot(rng),
            ranges: (0..size(rng, 4_096))
                .map(|_| {
                    let first = at + rng.range(0, 3);
                    at = first + rng.range(0, 9);
                    let range = InstanceRange {
                        first: Instance(first),
                        last: Instance(at),
                    };
                    at += 1;
                    range
                })
                .collect(),
        },
        5 => MessageBody::Heartbeat {
            ballot: ballot(rng),
            chosen_through: Instance(rng.next_u64()),
            sent_at: Nanos(rng.next_u64()),
            checksum_through: Instance(rng.next_u64()),
            checksum: rng.next_u64() as u32,
        },
        6 => MessageBody::HeartbeatAck {
            ballot: ballot(rng),
            sent_at: Nanos(rng.next_u64()),
        },
        7 => MessageBody::CatchUpRequest {
            from: Instance(at),
            credit: u32::MAX,
            // Not the default: the field is written.
            retired: true,
        },
        8 => MessageBody::CatchUpRaw {
            chosen_through: Instance(rng.next_u64()),
            promised: ballot(rng),
            accepted_max: Instance(rng.next_u64()),
            run: RawRun {
                group: GroupId(0),
                first_instance: Instance(at),
                last_instance: Instance(at + n as u64),
                salt: rng.next_u64() as u32,
                records: (0..n)
                    .map(|_| Bytes::from(vec![7u8; size(rng, value_max)]))
                    .collect(),
            },
            from_voter: false,
            membership_changed: false,
        },
        _ => MessageBody::CatchUpChunk {
            chosen_through: Instance(rng.next_u64()),
            promised: ballot(rng),
            accepted_max: Instance(rng.next_u64()),
            first: Instance(at),
            entries: (0..n).map(|_| entry(rng, value_max)).collect(),
            // Not the defaults: the fields are written, the larger frame.
            from_voter: false,
            membership_changed: false,
        },
    }
}

fn message(rng: &mut Prng, kind: u64) -> Message {
    Message {
        group: GroupId(rng.next_u64() as u32),
        from: NodeId(rng.next_u64() as u32),
        to: NodeId(rng.next_u64() as u32),
        body: body(rng, kind),
    }
}

/// An entry of `n` values of `len` bytes each.
fn values(n: usize, len: usize) -> Entry {
    Entry {
        origin: Ballot::ZERO,
        body: Body::Values(smallvec::smallvec![Bytes::from(vec![1u8; len]); n]),
    }
}

/// Node 1's accept to node 2 in group 1 of `entries` from instance 1.
fn accept(entries: Vec<Entry>) -> Message {
    Message {
        group: GroupId(1),
        from: NodeId(1),
        to: NodeId(2),
        body: MessageBody::Accept {
            ballot: Ballot::ZERO,
            chosen_through: Instance(0),
            first: Instance(1),
            entries,
        },
    }
}

/// Node 1's promise to node 2 in group 1 reporting `entries`.
fn promise(entries: Vec<PromisedEntry>, truncated: bool) -> Message {
    Message {
        group: GroupId(1),
        from: NodeId(1),
        to: NodeId(2),
        body: MessageBody::Promise {
            ballot: Ballot::ZERO,
            chosen_through: Instance(0),
            entries,
            truncated,
        },
    }
}

/// `entry` accepted at instance `instance` (at the zero ballot), as a promise reports it.
fn promised(instance: u64, chosen: bool, entry: Entry) -> PromisedEntry {
    PromisedEntry {
        instance: Instance(instance),
        ballot: Ballot::ZERO,
        chosen,
        entry,
    }
}

fn encoded(messages: &[Message]) -> usize {
    let mut out = Vec::new();
    encode_frame(messages, &mut out);
    out.len()
}

/// What the estimate adds above the payload for `body`: its structure as the
/// constants count it (the slack allowed is at most this, minus what the codec uses).
fn structure(body: &MessageBody) -> usize {
    let payload: usize = match body {
        MessageBody::Accept { entries, .. } | MessageBody::CatchUpChunk { entries, .. } => {
            entries.iter().map(Entry::payload_size).sum()
        }
        MessageBody::Promise { entries, .. } => {
            entries.iter().map(|e| e.entry.payload_size()).sum()
        }
        MessageBody::CatchUpRaw { run, .. } => run.size(),
        _ => 0,
    };
    body.encoded_size() - payload
}

// Goal: the estimate is an upper bound of the real encoding for every message kind,
// alone and in batches, and its slack is structure only (payload counted exactly).
// Method: 3,000 random messages (every kind, 0 to 64 entries of 0 to 300 values of up
// to 256 KiB, memberships of up to 64 voters, up to 4,096 ranges), each encoded alone
// and in random batches of up to 8; the worst slack per kind is printed.
#[test]
fn estimate_bounds_the_encoding() {
    let mut rng = Prng::new(0x5123_e57a);
    let mut worst = [0f64; 10];
    let mut batch: Vec<Message> = Vec::new();
    for i in 0..3_000u64 {
        let kind = i % 10;
        let m = message(&mut rng, kind);
        let estimate = m.body.encoded_size();
        let actual = encoded(std::slice::from_ref(&m));
        assert!(
            actual <= estimate,
            "{} encodes into {actual} bytes, estimated {estimate}",
            m.body.kind()
        );
        // Slack is bounded by the structure the estimate counts.
        assert!(estimate - actual <= structure(&m.body), "{}", m.body.kind());
        let slack = (estimate - actual) as f64 / structure(&m.body) as f64;
        worst[kind as usize] = worst[kind as usize].max(1.0 - slack);
        batch.push(m);
        if batch.len() == 1 + rng.below(8) as usize {
            let sum: usize = batch.iter().map(|m| m.body.encoded_size()).sum();
            let actual = encoded(&batch);
            assert!(actual <= sum, "batch of {}: {actual} > {sum}", batch.len());
            batch.clear();
        }
    }
    println!("largest share of the estimated structure the codec used, by kind: {worst:.2?}");
}

// Goal: the per-message, per-entry, per-value and per-report constants each cover what
// the codec spends on that part (not only their sum), so none hides in another's margin.
// Method: encode messages that differ by one part (an empty message of every kind; one
// more entry; one more value; one more promised entry) and compare the difference with
// the constant for that part.
#[test]
fn each_constant_covers_its_part() {
    let mut rng = Prng::new(7);
    for kind in 0..10 {
        let mut m = message(&mut rng, kind);
        match &mut m.body {
            MessageBody::CatchUpRaw { run, .. } => run.records.clear(),
            MessageBody::Promise { entries, .. } => entries.clear(),
            MessageBody::Accept { entries, .. } | MessageBody::CatchUpChunk { entries, .. } => {
                entries.clear();
            }
            MessageBody::Accepted { ranges, .. } => ranges.clear(),
            _ => {}
        }
        let actual = encoded(std::slice::from_ref(&m));
        assert!(
            actual <= MESSAGE_OVERHEAD_SIZE,
            "{}: {actual}",
            m.body.kind()
        );
    }
    let noop = Entry {
        origin: Ballot::ZERO,
        body: Body::Noop,
    };
    for len in 0..8 {
        let one = encoded(&[accept(vec![values(1, len)])]);
        let two = encoded(&[accept(vec![values(2, len)])]);
        assert!(
            two - one <= VALUE_OVERHEAD_SIZE + len,
            "value of {len}: {}",
            two - one
        );
        let entry = encoded(&[accept(vec![values(1, len), values(1, len)])]) - one;
        assert!(entry <= ENTRY_OVERHEAD_SIZE + VALUE_OVERHEAD_SIZE + len);
    }
    let base = encoded(&[accept(vec![noop.clone()])]);
    let more = encoded(&[accept(vec![noop.clone(), noop.clone()])]);
    assert!(more - base <= ENTRY_OVERHEAD_SIZE);
    let noops = |n: u64| {
        let entries = (1..=n).map(|i| promised(i, true, noop.clone())).collect();
        promise(entries, false)
    };
    let step = encoded(&[noops(2)]) - encoded(&[noops(1)]);
    assert!(
        step <= PROMISED_ENTRY_OVERHEAD_SIZE + ENTRY_OVERHEAD_SIZE,
        "{step}"
    );
}

// Goal: with the default configuration, the largest message the core may build (one
// maximal batch in a promise, and a budget's worth of entries) encodes under the
// transport's default frame limit.
// Method: build a promise of one batch of `batch_values_max` values filling
// `batch_size_max`, and an accept run packed to `message_size_max` with 100 KB values;
// encode both and compare with `message_size_max` and `frame_size_max`.
#[test]
fn default_budget_fits_the_frame_limit() {
    let config = GroupConfig::new(NodeId(1), GroupId(1), Membership::new(vec![NodeId(1)]));
    let frame_size_max = DecodeLimits::default().frame_size_max;
    assert!(config.message_size_max * 2 <= frame_size_max);
    let each = config.batch_size_max / config.batch_values_max;
    let batch = values(config.batch_values_max, each);
    let promise = promise(vec![promised(1, false, batch)], true);
    let estimate = promise.body.encoded_size();
    assert!(estimate <= config.message_size_max);
    assert!(encoded(std::slice::from_ref(&promise)) <= estimate);
    let value = values(1, 100_000);
    let per = value.encoded_size();
    let fit = (config.message_size_max - MESSAGE_OVERHEAD_SIZE) / per;
    let accept = accept(vec![value; fit]);
    let actual = encoded(std::slice::from_ref(&accept));
    assert!(accept.body.encoded_size() <= config.message_size_max);
    assert!(actual <= accept.body.encoded_size() && actual <= frame_size_max);
    println!("{fit} values of 100 KB per message: {actual} bytes encoded");
}

// Goal: the per-piece constant of a `CatchUpRaw` covers what the codec spends on one
// more piece of records.
// Method: encode runs of 1 and 2 pieces of each length 0..64 and compare.
#[test]
fn piece_constant_covers_a_piece() {
    let raw = |pieces: usize, len: usize| Message {
        group: GroupId(1),
        from: NodeId(1),
        to: NodeId(2),
        body: MessageBody::CatchUpRaw {
            chosen_through: Instance(9),
            promised: Ballot::ZERO,
            accepted_max: Instance(9),
            run: RawRun {
                group: GroupId(1),
                first_instance: Instance(1),
                last_instance: Instance(2),
                salt: 1,
                records: vec![Bytes::from(vec![1u8; len]); pieces],
            },
            from_voter: false,
            membership_changed: false,
        },
    };
    for len in 0..64 {
        let one = encoded(&[raw(1, len)]);
        let two = encoded(&[raw(2, len)]);
        assert!(
            two - one <= PIECE_OVERHEAD_SIZE + len,
            "{len}: {}",
            two - one
        );
        assert!(two <= raw(2, len).body.encoded_size());
    }
}
