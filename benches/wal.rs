//! The one WAL CPU benchmark: per record size (16 B, 100 B, 4 KiB, 64 KiB and 100 KiB
//! values in one Accept), CRC32C alone over the checksummed bytes, encode (header,
//! entry, CRC32C), decode with verification; and one group-commit batch of 64 records
//! (append x 64 + take_write + on_durable). No I/O: the disk side is `synod wal bench`.
//! Figures and the command: `docs/measurements.md`, WAL section.

use bytes::Bytes;
use criterion::{black_box, criterion_main, BatchSize, Criterion, Throughput};
use synod::paxos::{Ballot, Body, Entry, GroupId, Instance, Lsn, NodeId, Record};
use synod::wal::{
    decode, encode, encoded_size, DecodeLimits, GroupCommit, GroupCommitConfig, Resume, Stamp,
};

const SALT: u32 = 0x5eed;
const SIZES: [(usize, &str); 5] = [
    (16, "16B"),
    (100, "100B"),
    (4096, "4KiB"),
    (64 * 1024, "64KiB"),
    (100 * 1024, "100KiB"),
];

fn accept(instance: u64, value_size: usize) -> Record {
    let ballot = Ballot {
        round: 3,
        node: NodeId(1),
    };
    Record::Accept {
        group: GroupId(7),
        instance: Instance(instance),
        ballot,
        entry: Entry {
            origin: ballot,
            body: Body::Values(smallvec::smallvec![Bytes::from(vec![0x42; value_size])]),
        },
    }
}

fn stamp() -> Stamp {
    Stamp {
        lsn: Lsn(1000),
        unsynced_from: Lsn(990),
    }
}

/// The checksum alone, over the bytes a record's checksum covers (all but its first 8).
fn record_crc32c(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_record_crc32c");
    for (size, name) in SIZES {
        let mut bytes = Vec::new();
        encode(&accept(1, size), stamp(), SALT, &mut bytes);
        let checked = &bytes[8..];
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| crc32c::crc32c_append(SALT, black_box(checked)));
        });
    }
    group.finish();
}

fn record_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_record_encode");
    for (size, name) in SIZES {
        let record = accept(1, size);
        group.throughput(Throughput::Bytes(encoded_size(&record) as u64));
        let mut out = Vec::with_capacity(encoded_size(&record));
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                encode(black_box(&record), stamp(), SALT, &mut out);
                black_box(out.len())
            });
        });
    }
    group.finish();
}

fn record_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_record_decode");
    let limits = DecodeLimits::default();
    for (size, name) in SIZES {
        let mut bytes = Vec::new();
        encode(&accept(1, size), stamp(), SALT, &mut bytes);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| decode(black_box(&bytes), SALT, &limits).map(|(_, size)| size));
        });
    }
    group.finish();
}

fn group_commit_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_group_commit");
    for (size, name) in [(100usize, "64x100B"), (4096, "64x4KiB")] {
        let records: Vec<Record> = (1..=64).map(|i| accept(i, size)).collect();
        let bytes: usize = records.iter().map(encoded_size).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        let config = GroupCommitConfig {
            buffer_size_max: 1 << 20,
            salt: SALT,
            writes_in_flight_max: 1,
        };
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || GroupCommit::new(config, Resume::EMPTY),
                |commit| {
                    for record in &records {
                        commit.append(record).expect("the batch fits the buffer");
                    }
                    let plan = commit.take_write().expect("a batch");
                    commit.on_durable(plan.lsn_through);
                    black_box(plan.bytes.len())
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

// In a private module: `criterion_group!` defines an undocumented `pub fn`, which
// `missing_docs` (Cargo.toml's lint wall) would flag at the crate root.
mod group {
    criterion::criterion_group!(
        benches,
        super::record_crc32c,
        super::record_encode,
        super::record_decode,
        super::group_commit_batch
    );
}
criterion_main!(group::benches);
