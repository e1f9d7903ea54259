//! Protocol-core throughput: instances per second through a 3-replica in-memory
//! pipeline. Three `paxos::Group`s; messages are delivered directly from a FIFO queue;
//! every record is treated as durable the moment it is emitted (no I/O, no encoding).
//! It measures the cost of deciding, not of disk or network: an upper bound the shard
//! loop can only approach.
//!
//! Setup (untimed): build the pipeline and elect node 1. Timed: propose a batch of
//! `BATCH_VALUES` values on the leader, `Flush`, deliver until quiet (flushing every
//! replica between delivery rounds, as a shard loop would); every `TICK_EVERY_BATCHES`
//! batches, tick all replicas so heartbeats carry the chosen watermark to followers.
//! `batch_values_max = 1`, so each value is its own instance. The log is never truncated
//! (no checkpoints yet), so the pipeline is rebuilt (untimed) every
//! `PIPELINE_INSTANCES_MAX` instances to keep memory bounded and the log size steady.
//!
//! Values are one shared `Bytes` per case (cloning is a refcount, as transport slices of
//! a receive buffer would be); the value size still costs the running CRC32C on every
//! replica.
//!
//! Run: `cargo bench --bench paxos_step` (about a minute on 2 cores).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use synod::paxos::{
    Group, GroupConfig, GroupId, Input, Membership, Message, Nanos, NodeId, Output, ProposalId,
    Restore, Role,
};

const REPLICAS: u32 = 3;
const LEADER: NodeId = NodeId(1);
/// Values proposed per timed batch (one criterion iteration).
const BATCH_VALUES: u64 = 256;
/// Tick every replica once per this many batches.
const TICK_EVERY_BATCHES: u64 = 8;
/// Virtual time that passes per batch.
const BATCH_NS: u64 = 2_000_000;
/// Rebuild the pipeline (untimed) once this many instances are chosen.
const PIPELINE_INSTANCES_MAX: u64 = 200_000;

const VALUE_SIZES: [usize; 3] = [16, 100, 4096];
const WINDOWS: [u64; 2] = [1, 64];

struct Pipeline {
    groups: Vec<Group>,
    queue: VecDeque<Message>,
    out: Output,
    now: Nanos,
    next_proposal: u64,
    batches: u64,
    /// Leader proposals completed by apply (successes).
    completed: u64,
    /// Proposals that failed (must stay 0).
    failed: u64,
}

impl Pipeline {
    /// Three fresh replicas with window `window`, node 1 elected, quiet.
    fn elected(window: u64) -> Pipeline {
        let membership = Membership::new((1..=REPLICAS).map(NodeId).collect());
        let groups = (1..=REPLICAS)
            .map(|node| {
                let mut config = GroupConfig::new(NodeId(node), GroupId(1), membership.clone());
                config.window_instances_max = window;
                config.accept_window_instances_max =
                    config.accept_window_instances_max.max(window * 2);
                config.batch_values_max = 1;
                Group::new(config, Restore::default(), Nanos(0))
            })
            .collect();
        let mut pipeline = Pipeline {
            groups,
            queue: VecDeque::new(),
            out: Output::default(),
            now: Nanos(0),
            next_proposal: 1,
            batches: 0,
            completed: 0,
            failed: 0,
        };
        // Move past every election deadline ([t, 2t) with t = 1 s) and tick only node 1,
        // so it campaigns alone; a candidate rejected once retries at its next timeout.
        for _ in 0..5 {
            pipeline.now = pipeline.now.plus(3_000_000_000);
            pipeline.step(LEADER, Input::Tick);
            pipeline.deliver_until_quiet();
            if pipeline.group(LEADER).role() == Role::Leader {
                assert_eq!(pipeline.failed, 0, "no proposal exists yet");
                return pipeline;
            }
        }
        panic!("node 1 was not elected in 5 attempts");
    }

    fn group(&self, node: NodeId) -> &Group {
        &self.groups[node.0 as usize - 1]
    }

    /// Steps `node`; records are durable at once, so both send lists go to the queue.
    fn step(&mut self, node: NodeId, input: Input) {
        let group = &mut self.groups[node.0 as usize - 1];
        group.step(self.now, input, &mut self.out);
        self.queue.extend(self.out.send.drain(..));
        self.queue.extend(self.out.send_after_persist.drain(..));
        if node == LEADER {
            for apply in &self.out.apply {
                self.completed += apply.proposals.len() as u64;
            }
        }
        self.failed += self.out.complete.len() as u64;
        self.out.clear();
    }

    /// Flushes every replica, delivers everything queued (and what that produces),
    /// and repeats until a flush produces nothing.
    fn deliver_until_quiet(&mut self) {
        loop {
            for node in 1..=REPLICAS {
                self.step(NodeId(node), Input::Flush);
            }
            if self.queue.is_empty() {
                return;
            }
            while let Some(message) = self.queue.pop_front() {
                let to = message.to;
                self.step(to, Input::Message(message));
            }
        }
    }

    /// One timed unit: `BATCH_VALUES` proposals chosen and applied on the leader.
    // Not inlined: profiles (callgrind) count instructions per call of it.
    #[inline(never)]
    fn run_batch(&mut self, value: &Bytes) {
        let completed_before = self.completed;
        self.batches += 1;
        self.now = self.now.plus(BATCH_NS);
        if self.batches % TICK_EVERY_BATCHES == 0 {
            for node in 1..=REPLICAS {
                self.step(NodeId(node), Input::Tick);
            }
        }
        for _ in 0..BATCH_VALUES {
            let id = ProposalId(self.next_proposal);
            self.next_proposal += 1;
            self.step(
                LEADER,
                Input::Propose {
                    id,
                    value: value.clone(),
                },
            );
        }
        self.deliver_until_quiet();
        assert_eq!(self.failed, 0, "a proposal failed in a fault-free pipeline");
        assert_eq!(
            self.completed - completed_before,
            BATCH_VALUES,
            "every proposal of the batch is applied on the leader once quiet"
        );
    }
}

fn paxos_step(c: &mut Criterion) {
    let mut bench = c.benchmark_group("paxos_step");
    bench
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(BATCH_VALUES));
    for window in WINDOWS {
        for value_size in VALUE_SIZES {
            let value = Bytes::from(vec![0x5a_u8; value_size]);
            let id = BenchmarkId::new(format!("window_{window}"), format!("{value_size}B"));
            bench.bench_with_input(id, &value, |b, value| {
                b.iter_custom(|iters| {
                    let mut pipeline = Pipeline::elected(window);
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        if pipeline.completed >= PIPELINE_INSTANCES_MAX {
                            pipeline = Pipeline::elected(window);
                        }
                        let start = Instant::now();
                        pipeline.run_batch(value);
                        timed += start.elapsed();
                    }
                    timed
                });
            });
        }
    }
    bench.finish();
}

// In a private module: `criterion_group!` defines an undocumented `pub fn`, which
// `missing_docs` (Cargo.toml's lint wall) would flag at the crate root.
mod group {
    criterion::criterion_group!(benches, super::paxos_step);
}
criterion_main!(group::benches);
