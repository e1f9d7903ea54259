//! A long run in bounded memory and disk, shown by counting: a loopback cluster with
//! the default truncation (on) and small checkpoint, retention and truncation
//! policies is driven through many times more instances than those policies keep,
//! and every group's in-memory log, every node's WAL, every shard's WAL index and its
//! peer links' buffers stay under bounds computed from the policies and limits while
//! the bytes written grow far past them.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{propose_anywhere, segment_files, Cluster, Outcome, Shape};
use synod::api::Config;
use synod::paxos::{GroupId, NodeId};
use synod::runtime::driver::null_factory;
use synod::runtime::net::KEEP_SLACK;
use synod::wal::index::{GROUP_INDEX_SIZE, INDEX_SLOT_SIZE};

/// Applied instances each group keeps in memory.
const RETENTION: u64 = 64;
/// A checkpoint every this many instances applied.
const CHECKPOINT_EVERY: u64 = 64;
/// Instances kept in the WAL below each durable checkpoint.
const TAIL: u64 = 64;
/// Bytes of every value (one value per instance).
const VALUE_SIZE: usize = 8 << 10;
/// WAL segment size.
const SEGMENT_SIZE: u64 = 2 << 20;
/// Groups (all on the one shard).
const GROUPS: u32 = 2;
/// Client threads, each proposing `PER_ROUND` values per round.
const THREADS: usize = 4;
const PER_ROUND: usize = 50;
const ROUNDS: usize = 30;
/// How long a replica may take to come back under the WAL index bound after a round.
const SETTLE: Duration = Duration::from_secs(20);

/// One round: `THREADS` threads propose `PER_ROUND` values each, spread over the
/// groups; returns how many were chosen.
fn round(cluster: &Cluster, round: usize) -> usize {
    let handles = cluster.handles();
    let deadline = Instant::now() + Duration::from_secs(60);
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let handles = handles.clone();
            std::thread::spawn(move || {
                let mut chosen = 0;
                for i in 0..PER_ROUND {
                    let group = GroupId(((t + i) as u32) % GROUPS);
                    let mut value = vec![(i % 251) as u8; VALUE_SIZE];
                    value[..8].copy_from_slice(
                        &((round * 1_000_000 + t * 1000 + i) as u64).to_le_bytes(),
                    );
                    if let Outcome::Chosen(_) =
                        propose_anywhere(&handles, group, Bytes::from(value), deadline)
                    {
                        chosen += 1;
                    }
                }
                chosen
            })
        })
        .collect();
    workers
        .into_iter()
        .map(|w| w.join().expect("client thread"))
        .sum()
}

/// The policies of the run: small enough that 6,000 instances are many
/// times what they keep.
fn configure(config: &mut Config) {
    assert!(config.truncation.enabled, "truncation is on by default");
    config.segment_size = SEGMENT_SIZE;
    config.wal_buffer_size_max = 512 << 10;
    config.wal_pending_size_max = 2 << 20;
    config.group.batch_values_max = 1;
    config.group.batch_size_max = 64 << 10;
    config.group.value_size_max = 64 << 10;
    config.group.window_instances_max = 32;
    config.group.accept_window_instances_max = 64;
    config.group.retention_instances_max = RETENTION;
    config.checkpoint.instance_count = CHECKPOINT_EVERY;
    config.checkpoint.applied_size = 0;
    config.checkpoint.interval_ns = 0;
    config.truncation.interval_ns = 0;
    config.truncation.catch_up_instances = TAIL;
}

// Goal: memory and disk stay bounded however long the cluster runs (the default
// truncation is on; checkpoints by instance count), by counting, never timing.
// Method: 3 nodes x 1 shard x 2 groups, retention 64, a checkpoint every 64
// instances, a truncation tail of 64, windows of 32 (leader) and 64 (acceptor), 8 KiB
// values one per instance, 2 MiB segments; 30 rounds of 200 values (6,000 instances, ~47 MiB per node: over 20 times the
// instances the policies keep). After every round, check on every node that each
// group's in-memory log holds at most retention + accept window slots, that the
// WAL's segment files, each shard's WAL index (`ShardStatus::wal_index_slots`,
// `wal_index_size`; once the replica settles, within `SETTLE`: a follower under load
// may apply behind for a moment) and each shard's link buffers (`net_buffer_size`) stay
// under the bounds computed below; at the end, that the bytes written and the instances chosen
// are many times those bounds and the nodes agree.
#[test]
fn memory_and_wal_stay_bounded_over_a_long_run() {
    let mut cluster = Cluster::with_machines_and(
        "bounded",
        Shape {
            nodes: 3,
            shards: 1,
            groups: GROUPS,
        },
        Box::new(|_, _| null_factory()),
        configure,
    );
    let config = common::cluster::test_config(&cluster, NodeId(1));
    let window = config.group.accept_window_instances_max;
    let memory_bound = RETENTION as usize + window as usize;
    // What each group keeps in the WAL: the tail below its durable checkpoint, up to
    // one checkpoint interval applied past it, the window above that, and one more
    // checkpoint interval for the checkpoint in flight (taken, not yet durable).
    let live_instances = TAIL + 2 * CHECKPOINT_EVERY + window;
    let live_bytes = u64::from(GROUPS) * live_instances * (VALUE_SIZE as u64 + 4096);
    // Live records rounded up to segments, plus the segment being written, the one
    // compaction writes into, and the spares kept ready.
    let segment_bound = live_bytes.div_ceil(SEGMENT_SIZE) as usize + 2 + config.spare_segments;
    // The WAL's index holds the instances above each group's truncation watermark (the
    // same live instances), its slots' capacity at most twice the most it held.
    let index_slots_bound = u64::from(GROUPS) * live_instances;
    let index_size_bound =
        u64::from(GROUPS) * (GROUP_INDEX_SIZE as u64 + 2 * live_instances * INDEX_SLOT_SIZE as u64);
    // The links' reusable buffers: toward each of the 2 peers a buffer and a spare, each
    // at most a full queue plus one frame and the slack of a recycled buffer; a frame
    // buffer per inbound connection (3: one may be replaced while its successor reads).
    let link_buffers = 2 * 2 + 3;
    let net_bound = (link_buffers
        * KEEP_SLACK
        * (config.peer_queue_size_max + config.wire_limits.frame_size_max))
        as u64;
    println!(
        "bounds: {memory_bound} slots per group in memory; {segment_bound} segment files \
         ({} MiB) per node; {index_slots_bound} instances ({index_size_bound} B) in a \
         shard's WAL index; {net_bound} B in a shard's link buffers",
        (segment_bound as u64 * SEGMENT_SIZE) >> 20
    );
    let mut index_slots_most = 0;
    let mut index_unsettled_most = 0;
    let mut net_most = 0;
    let mut chosen = 0;
    let mut most = BTreeMap::new();
    for r in 0..ROUNDS {
        chosen += round(&cluster, r);
        for (id, node) in &cluster.nodes {
            let (count, bytes) = segment_files(cluster.dirs[id].path());
            assert!(
                count <= segment_bound,
                "round {r}: node {} has {count} segment files ({bytes} B) over {segment_bound}",
                id.0
            );
            // A replica may hold more for a moment under load (a follower applying
            // behind the leaders, a checkpoint being written, a truncation waiting for
            // an idle store): the bound must hold again once it settles.
            let settle_by = Instant::now() + SETTLE;
            let status = loop {
                let status =
                    futures_lite::future::block_on(node.handle().status()).expect("status");
                let over = status.iter().find(|s| {
                    s.wal_index_slots > index_slots_bound || s.wal_index_size > index_size_bound
                });
                match over {
                    Some(shard) if Instant::now() < settle_by => {
                        index_unsettled_most = index_unsettled_most.max(shard.wal_index_slots);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => break status,
                }
            };
            for shard in &status {
                assert!(
                    shard.wal_index_slots <= index_slots_bound
                        && shard.wal_index_size <= index_size_bound,
                    "round {r}: node {}: WAL index of {} instances ({} B) over \
                     {index_slots_bound} ({index_size_bound} B)",
                    id.0,
                    shard.wal_index_slots,
                    shard.wal_index_size
                );
                assert!(
                    shard.net_buffer_size <= net_bound,
                    "round {r}: node {}: link buffers of {} B over {net_bound} B",
                    id.0,
                    shard.net_buffer_size
                );
                index_slots_most = index_slots_most.max(shard.wal_index_slots);
                net_most = net_most.max(shard.net_buffer_size);
            }
            for g in status.into_iter().flat_map(|s| s.groups) {
                let memory = g.memory.expect("an in-process status carries memory");
                assert!(
                    memory.log_len <= memory_bound,
                    "round {r}: node {} group {}: {memory:?} over {memory_bound}",
                    id.0,
                    g.group.0
                );
            }
            let seen = most.entry(id.0).or_insert(0);
            *seen = (*seen).max(count);
        }
    }
    assert!(
        cluster.wait_converged(Duration::from_secs(30)),
        "no convergence"
    );
    let written = chosen as u64 * VALUE_SIZE as u64;
    let bound_bytes = segment_bound as u64 * SEGMENT_SIZE;
    println!(
        "{chosen} values chosen ({} MiB per node); most segment files seen per node {most:?}; \
         most instances in a WAL index {index_slots_most} (before settling: \
         {index_unsettled_most}); most link buffer bytes of a shard {net_most}",
        written >> 20
    );
    // The link counter counts: the links held buffers.
    assert!(net_most > 0, "the link buffers were never counted");
    // The index counter counts: it saw instances, and far fewer than were chosen.
    assert!(index_slots_most > 0, "the WAL index was never counted");
    assert!(
        chosen as u64 >= 3 * index_slots_bound,
        "{chosen} chosen is not far past the index bound {index_slots_bound}"
    );
    assert!(
        chosen >= THREADS * PER_ROUND * ROUNDS * 9 / 10,
        "only {chosen} chosen"
    );
    assert!(
        written >= 3 * bound_bytes,
        "{written} B written is not far past the bound {bound_bytes} B"
    );
    for (_, node) in std::mem::take(&mut cluster.nodes) {
        assert_eq!(node.shutdown(), Vec::new());
    }
}
