//! Wire codec throughput: encode (with a reused `Encoder`, as a peer link does) and
//! decode (verifier + semantic checks + copy into `Bytes`) of the frames that dominate
//! steady state: an Accept of 64 entries at 16 B, 100 B and 4 KiB values, and a batch
//! of 100 small Accepted messages.
//!
//! Run: `cargo bench --bench codec`. Throughput is reported in frame bytes.

use bytes::Bytes;
use criterion::{black_box, criterion_main, BenchmarkId, Criterion, Throughput};
use synod::paxos::{
    Ballot, Body, Entry, GroupId, Instance, InstanceRange, Message, MessageBody, NodeId,
};
use synod::transport::{decode_frame, DecodeLimits, Encoder};

const LEADER: Ballot = Ballot {
    round: 7,
    node: NodeId(1),
};

fn accept_frame(value_size: usize) -> Vec<Message> {
    let entries = (0..64_u8)
        .map(|i| Entry {
            origin: LEADER,
            body: Body::Values(smallvec::smallvec![Bytes::from(vec![i; value_size])]),
        })
        .collect();
    vec![Message {
        group: GroupId(3),
        from: NodeId(1),
        to: NodeId(2),
        body: MessageBody::Accept {
            ballot: LEADER,
            chosen_through: Instance(1_000),
            first: Instance(1_001),
            entries,
        },
    }]
}

fn accepted_frame() -> Vec<Message> {
    (0..100_u32)
        .map(|group| Message {
            group: GroupId(group),
            from: NodeId(2),
            to: NodeId(1),
            body: MessageBody::Accepted {
                ballot: LEADER,
                ranges: vec![InstanceRange {
                    first: Instance(1_001),
                    last: Instance(1_064),
                }],
            },
        })
        .collect()
}

fn bench_frame(c: &mut Criterion, group_name: &str, label: &str, messages: &[Message]) {
    let limits = DecodeLimits::default();
    let mut encoder = Encoder::new();
    let mut bytes = Vec::new();
    encoder.encode_frame(messages, &mut bytes);
    assert_eq!(
        decode_frame(&bytes, &limits).as_deref(),
        Ok(messages),
        "benchmark frame must round-trip"
    );

    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function(BenchmarkId::new("encode", label), |b| {
        let mut out = Vec::with_capacity(bytes.len());
        b.iter(|| {
            out.clear();
            encoder.encode_frame(black_box(messages), &mut out);
            black_box(out.len())
        });
    });
    group.bench_function(BenchmarkId::new("decode", label), |b| {
        b.iter(|| decode_frame(black_box(&bytes), &limits));
    });
    group.finish();
}

fn accept_64_entries(c: &mut Criterion) {
    for (label, value_size) in [("16B", 16), ("100B", 100), ("4KiB", 4_096)] {
        bench_frame(c, "accept_64_entries", label, &accept_frame(value_size));
    }
}

fn accepted_100_messages(c: &mut Criterion) {
    bench_frame(c, "accepted_100_messages", "1_range", &accepted_frame());
}

// In a private module: `criterion_group!` defines an undocumented `pub fn`, which
// `missing_docs` (Cargo.toml's lint wall) would flag at the crate root.
mod group {
    criterion::criterion_group!(
        benches,
        super::accept_64_entries,
        super::accepted_100_messages
    );
}
criterion_main!(group::benches);
