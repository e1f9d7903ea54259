//! Real clusters on 127.0.0.1: three nodes with real WALs in temporary directories and
//! real TCP links. Proposals from many threads on several groups; a leader killed
//! abruptly; a node restarted from its WAL; a node killed with SIGKILL as a separate
//! process (`synod serve`) and restarted.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{propose_anywhere, segment_files, Cluster, Outcome, Shape};
use common::serve::Serve;
use synod::api::{CatchUpStatus, NodeHandle};
use synod::paxos::{GroupId, Instance, NodeId};

/// Every node applied, per group, the same sequence (one is a prefix of the other
/// when `exact` is false), with strictly increasing instances.
fn assert_same_order(cluster: &Cluster, exact: bool) {
    let mut reference: BTreeMap<GroupId, Vec<(Instance, Bytes)>> = BTreeMap::new();
    for (id, applied) in &cluster.applied {
        if !cluster.nodes.contains_key(id) {
            continue;
        }
        let applied = applied.lock().expect("lock");
        for (group, log) in applied.iter() {
            assert!(
                log.windows(2).all(|w| w[0].0 <= w[1].0),
                "node {} group {}: instances decrease",
                id.0,
                group.0
            );
            let theirs = reference.entry(*group).or_insert_with(|| log.clone());
            let common = theirs.len().min(log.len());
            assert_eq!(
                theirs[..common],
                log[..common],
                "node {} group {}: applied logs diverge",
                id.0,
                group.0
            );
            if exact {
                assert_eq!(theirs.len(), log.len(), "node {} group {}", id.0, group.0);
            }
            if log.len() > theirs.len() {
                *theirs = log.clone();
            }
        }
    }
}

/// Proposes `per_thread` values from each of `threads` threads to random groups;
/// returns the acknowledged `(group, value) -> instance`.
fn load(
    cluster: &Cluster,
    threads: usize,
    per_thread: usize,
    tag: &str,
) -> BTreeMap<(GroupId, Bytes), Instance> {
    let handles = cluster.handles();
    let groups = cluster.shape.groups;
    let deadline = Instant::now() + Duration::from_secs(60);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let handles = handles.clone();
            let tag = tag.to_string();
            std::thread::spawn(move || {
                let mut acked = BTreeMap::new();
                for i in 0..per_thread {
                    let group = GroupId(((t * 7 + i * 13) as u32) % groups);
                    let value = Bytes::from(format!("{tag}-{t}-{i}"));
                    if let Outcome::Chosen(instance) =
                        propose_anywhere(&handles, group, value.clone(), deadline)
                    {
                        acked.insert((group, value), instance);
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked = BTreeMap::new();
    for worker in workers {
        acked.extend(worker.join().expect("client thread"));
    }
    acked
}

/// Every acknowledged value is applied at its instance on every running node.
fn assert_acked_applied(cluster: &Cluster, acked: &BTreeMap<(GroupId, Bytes), Instance>) {
    for (id, applied) in &cluster.applied {
        if !cluster.nodes.contains_key(id) {
            continue;
        }
        let applied = applied.lock().expect("lock");
        let index: BTreeSet<(GroupId, Instance, Bytes)> = applied
            .iter()
            .flat_map(|(g, log)| log.iter().map(|(i, v)| (*g, *i, v.clone())))
            .collect();
        for ((group, value), instance) in acked {
            assert!(
                index.contains(&(*group, *instance, value.clone())),
                "node {}: acknowledged {:?} at group {} instance {} is not applied",
                id.0,
                value,
                group.0,
                instance.0
            );
        }
    }
}

// Goal: proposals from many threads on several groups are chosen and applied in the
// same order on all three nodes; then the leader of a group is killed abruptly, a new
// leader is elected within a few election timeouts, no acknowledged proposal is lost,
// and the killed node restarted from its WAL catches up.
// Method: 3 nodes x 2 shards x 6 groups; 8 client threads following NotLeader hints;
// compare applied logs; abort the leader of group 0, time the first success on
// another node; restart it on the same directory and wait for equal watermarks and
// checksums everywhere.
#[test]
fn three_nodes_agree_survive_leader_loss_and_catch_up() {
    let mut cluster = Cluster::new(
        "agree",
        Shape {
            nodes: 3,
            shards: 2,
            groups: 6,
        },
    );
    let mut acked = load(&cluster, 8, 60, "a");
    assert!(acked.len() >= 8 * 60 * 9 / 10, "only {} acked", acked.len());
    assert!(
        cluster.wait_converged(Duration::from_secs(20)),
        "no convergence"
    );
    assert_same_order(&cluster, true);
    assert_acked_applied(&cluster, &acked);

    let group = GroupId(0);
    let leader = cluster.leader(group).expect("group 0 has a leader");
    let killed_at = Instant::now();
    let node = cluster.nodes.remove(&leader).expect("leader runs");
    node.abort();
    let handles = cluster.handles();
    // A proposal caught by the election itself (its leader stepped down before it was
    // chosen) ends Indeterminate: the next one, with a value of its own, goes on.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut indeterminate = 0;
    let (value, outcome) = loop {
        let value = Bytes::from(format!("after-kill-{indeterminate}"));
        let outcome = propose_anywhere(&handles, group, value.clone(), deadline);
        if matches!(outcome, Outcome::Chosen(_)) || Instant::now() >= deadline {
            break (value, outcome);
        }
        indeterminate += 1;
    };
    let failover = killed_at.elapsed();
    assert!(
        matches!(outcome, Outcome::Chosen(_)),
        "no new leader in {failover:?} ({indeterminate} proposals indeterminate)"
    );
    println!(
        "failover after killing node {}: {failover:?} ({indeterminate} proposals indeterminate)",
        leader.0
    );
    // 300 ms election timeout: "a few" with room for a loaded 2-core machine.
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    if let Outcome::Chosen(instance) = outcome {
        acked.insert((group, value), instance);
    }
    acked.extend(load(&cluster, 4, 30, "b"));
    assert!(
        cluster.wait_converged(Duration::from_secs(20)),
        "survivors diverge"
    );
    assert_same_order(&cluster, true);
    assert_acked_applied(&cluster, &acked);

    cluster.start(leader);
    acked.extend(load(&cluster, 4, 20, "c"));
    assert!(
        cluster.wait_converged(Duration::from_secs(30)),
        "the restarted node did not catch up"
    );
    assert_same_order(&cluster, true);
    assert_acked_applied(&cluster, &acked);
    for (_, node) in std::mem::take(&mut cluster.nodes) {
        assert_eq!(node.shutdown(), Vec::new());
    }
}

/// Node `id` of `cluster` as a `synod serve --control` child, once it is ready.
fn serve_child(cluster: &Cluster, id: NodeId) -> Serve {
    let nodes: Vec<String> = cluster
        .addresses
        .iter()
        .map(|(n, a)| format!("{}={a}", n.0))
        .collect();
    let args: Vec<String> = [
        "--node",
        &id.0.to_string(),
        "--cluster",
        &cluster.cluster_id.to_string(),
        "--nodes",
        &nodes.join(","),
        "--dir",
        &cluster.dirs[&id].path().display().to_string(),
        "--shards",
        &cluster.shape.shards.to_string(),
        "--groups",
        &cluster.shape.groups.to_string(),
        "--new",
        "--test-timeouts",
        "--control",
        "--key-file",
        &cluster.key_file.display().to_string(),
    ]
    .iter()
    .map(|a| (*a).to_string())
    .collect();
    Serve::start(&id.0.to_string(), &args, None).ready(Duration::from_secs(20))
}

// Goal: a node killed with SIGKILL under load, as a separate process, restarts from its
// WAL and catches up; nothing acknowledged is lost.
// Method: nodes 1 and 2 in this process, node 3 a `synod serve` child; load; SIGKILL
// the child mid-load; restart it on the same directory; load more; then stop node 1
// so that every later proposal needs node 3's vote; compare the child's per-group
// applied watermark and checksum with node 2's.
#[test]
fn sigkilled_process_restarts_and_catches_up() {
    let mut cluster = Cluster::new(
        "sigkill",
        Shape {
            nodes: 3,
            shards: 1,
            groups: 4,
        },
    );
    let third = NodeId(3);
    cluster.nodes.remove(&third).expect("node 3").abort();
    let child = serve_child(&cluster, third);
    let handles = cluster.handles();
    let loader = {
        let handles = handles.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut acked = BTreeMap::new();
            for i in 0..400u32 {
                let group = GroupId(i % 4);
                let value = Bytes::from(format!("k-{i}"));
                if let Outcome::Chosen(instance) =
                    propose_anywhere(&handles, group, value.clone(), deadline)
                {
                    acked.insert((group, value), instance);
                }
            }
            acked
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    child.kill();
    let mut acked = loader.join().expect("loader");
    let mut child = serve_child(&cluster, third);
    acked.extend(load(&cluster, 4, 25, "after"));
    // Without node 1, every choice needs node 3.
    cluster.nodes.remove(&NodeId(1)).expect("node 1").shutdown();
    let handles = cluster.handles();
    for i in 0..4u32 {
        let group = GroupId(i);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A fresh value per attempt: an indeterminate attempt may still be chosen.
            let word = format!("needs-3-{i}-{attempt}");
            let outcome = propose_anywhere(
                &handles,
                group,
                Bytes::from(word.clone()),
                Instant::now() + Duration::from_secs(2),
            );
            if matches!(outcome, Outcome::Chosen(_)) {
                break;
            }
            // Node 3 may lead this group (node 2 points there): propose through it.
            let leader = futures_lite::future::block_on(handles[&NodeId(2)].group_status(group))
                .expect("status")
                .leader_hint;
            let mut chosen = || match child
                .propose(group.0, &word, Duration::from_secs(30))
                .expect("node 3 answers a proposal within 30 s")
            {
                Ok(_) => true,
                Err(line) => {
                    println!("node 3: {line}");
                    false
                }
            };
            if leader == Some(third) && chosen() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "group {i}: no progress with nodes 2 and 3 (node 2 believes in {leader:?})"
            );
        }
    }
    assert_acked_applied(&cluster, &acked);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let theirs: BTreeMap<u32, (u64, u32)> = child
            .status()
            .into_iter()
            .map(|(group, line)| (group, (line.applied_through, line.checksum)))
            .collect();
        let ours: BTreeMap<u32, (u64, u32)> =
            futures_lite::future::block_on(cluster.nodes[&NodeId(2)].handle().status())
                .expect("status")
                .into_iter()
                .flat_map(|s| s.groups)
                .map(|g| (g.group.0, (g.applied_through.0, g.checksum)))
                .collect();
        if theirs == ours {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "child {theirs:?} != node 2 {ours:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill();
}

// Goal: a member whose data directory was emptied, restarted as `Existing`, does not
// vote until it has re-learned from its peers, then votes again and drops its rejoin
// marker; nothing acknowledged is lost.
// Method: 3 nodes; load; stop node 3, delete its directory, restart it with
// `InitialState::Existing`; check that it reports non-voting at first (the rejoin
// marker exists), load more, then wait until it votes, has converged, and the marker
// is gone; finally stop node 1 so that progress needs node 3's vote.
#[test]
fn emptied_member_rejoins_as_learner() {
    let mut cluster = Cluster::new(
        "rejoin",
        Shape {
            nodes: 3,
            shards: 1,
            groups: 3,
        },
    );
    let mut acked = load(&cluster, 4, 40, "before");
    let third = NodeId(3);
    cluster.nodes.remove(&third).expect("node 3").shutdown();
    let dir = cluster.dirs[&third].path().to_path_buf();
    std::fs::remove_dir_all(&dir).expect("wipe node 3");
    cluster.start_with(third, |config| {
        config.initial_state = synod::api::InitialState::Existing;
    });
    let marker = dir.join("shard-000.rejoin");
    assert!(marker.exists(), "no durable rejoin marker");
    let statuses =
        futures_lite::future::block_on(cluster.nodes[&third].handle().status()).expect("status");
    assert!(
        statuses.iter().flat_map(|s| &s.groups).any(|g| !g.voting),
        "an emptied member votes at once: {statuses:?}"
    );
    acked.extend(load(&cluster, 4, 20, "during"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let statuses = futures_lite::future::block_on(cluster.nodes[&third].handle().status())
            .expect("status");
        if statuses.iter().flat_map(|s| &s.groups).all(|g| g.voting) && !marker.exists() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 never votes again: {statuses:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        cluster.wait_converged(Duration::from_secs(20)),
        "no convergence"
    );
    assert_same_order(&cluster, false);
    assert_acked_applied(&cluster, &acked);
    cluster.nodes.remove(&NodeId(1)).expect("node 1").shutdown();
    acked.extend(load(&cluster, 2, 10, "after"));
    assert!(
        cluster.wait_converged(Duration::from_secs(20)),
        "no convergence"
    );
    assert_acked_applied(&cluster, &acked);
}

// Goal: the runtime's WAL rolls across many segments under load (spares prepared off
// the write path), and a node restarted on that log recovers across all of them.
// Method: 4 MiB segments, 64 KiB values, ~20 MiB per node; restart node 2; compare.
#[test]
fn wal_rolls_segments_and_recovers_across_them() {
    let mut cluster = Cluster::new_with(
        "roll",
        Shape {
            nodes: 3,
            shards: 1,
            groups: 2,
        },
        |config| {
            config.segment_size = 4 << 20;
            config.wal_buffer_size_max = 1 << 20;
            config.wal_pending_size_max = 8 << 20;
            config.group.batch_size_max = 512 << 10;
            config.group.value_size_max = 256 << 10;
        },
    );
    let handles = cluster.handles();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acked = BTreeMap::new();
    for i in 0..320u32 {
        let group = GroupId(i % 2);
        let mut value = vec![(i % 251) as u8; 64 << 10];
        value[..4].copy_from_slice(&i.to_le_bytes());
        let value = Bytes::from(value);
        if let Outcome::Chosen(instance) =
            propose_anywhere(&handles, group, value.clone(), deadline)
        {
            acked.insert((group, value), instance);
        }
    }
    assert!(acked.len() >= 300, "only {} acked", acked.len());
    assert!(
        cluster.wait_converged(Duration::from_secs(20)),
        "no convergence"
    );
    let segments = std::fs::read_dir(cluster.dirs[&NodeId(2)].path())
        .expect("list")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        })
        .count();
    assert!(segments >= 6, "only {segments} segment files: no rolls");
    cluster.nodes.remove(&NodeId(2)).expect("node 2").shutdown();
    cluster.start(NodeId(2));
    assert!(
        cluster.wait_converged(Duration::from_secs(20)),
        "no convergence after restart"
    );
    assert_same_order(&cluster, true);
    assert_acked_applied(&cluster, &acked);
}

// Goal: with the most WAL writes in flight (8) under concurrent load, a node aborted as
// a crash would (writes and fdatasyncs in flight abandoned) restarts from its WAL,
// catches up, and nothing acknowledged is lost; a graceful restart recovers too.
// Method: 3 nodes x 1 shard x 8 groups (every group's records share one WAL); 16
// client threads; abort node 2 right after the first load and restart it; load again;
// stop node 3 gracefully and restart it; compare applied logs and acknowledged values.
#[test]
fn eight_writes_in_flight_survive_abort_and_restart() {
    let mut cluster = Cluster::new_with(
        "pipelined",
        Shape {
            nodes: 3,
            shards: 1,
            groups: 8,
        },
        |config| config.wal_writes_in_flight_max = 8,
    );
    let mut acked = load(&cluster, 16, 80, "p");
    assert!(
        acked.len() >= 16 * 80 * 9 / 10,
        "only {} acked",
        acked.len()
    );
    cluster.nodes.remove(&NodeId(2)).expect("node 2").abort();
    cluster.start(NodeId(2));
    acked.extend(load(&cluster, 16, 80, "q"));
    cluster.nodes.remove(&NodeId(3)).expect("node 3").shutdown();
    cluster.start(NodeId(3));
    assert!(
        cluster.wait_converged(Duration::from_secs(30)),
        "no convergence after the restarts"
    );
    assert_same_order(&cluster, true);
    assert_acked_applied(&cluster, &acked);
    for (_, node) in std::mem::take(&mut cluster.nodes) {
        assert_eq!(node.shutdown(), Vec::new());
    }
}

/// `node`'s catch-up counters, summed over its shards.
fn catch_up_of(cluster: &Cluster, node: NodeId) -> CatchUpStatus {
    let statuses =
        futures_lite::future::block_on(cluster.nodes[&node].handle().status()).expect("status");
    statuses
        .iter()
        .map(|s| s.catch_up)
        .fold(CatchUpStatus::default(), |sum, c| CatchUpStatus {
            raw_runs_sent: sum.raw_runs_sent + c.raw_runs_sent,
            raw_bytes_sent: sum.raw_bytes_sent + c.raw_bytes_sent,
            raw_runs_received: sum.raw_runs_received + c.raw_runs_received,
            raw_refused: sum.raw_refused + c.raw_refused,
            records_decoded_for_peers: sum.records_decoded_for_peers + c.records_decoded_for_peers,
            records_decoded_for_log_reads: sum.records_decoded_for_log_reads
                + c.records_decoded_for_log_reads,
        })
}

/// Every group's in-memory log on `node` (its status), by group.
fn memory_of(cluster: &Cluster, node: NodeId) -> BTreeMap<GroupId, synod::api::LogMemory> {
    let statuses =
        futures_lite::future::block_on(cluster.nodes[&node].handle().status()).expect("status");
    statuses
        .into_iter()
        .flat_map(|s| s.groups)
        .map(|g| {
            (
                g.group,
                g.memory.expect("an in-process status carries memory"),
            )
        })
        .collect()
}

// Goal: with a bounded in-memory log, a node stopped while the others run far past
// their retention restarts and catches up, served from the others' WALs, and no node
// holds more than its retention plus its accept window in memory.
// Method: 3 nodes x 2 shards x 2 groups, retention 16 instances, one value per
// instance; stop a node gracefully, choose ~300 more instances per group, check the
// others' floors passed it and their logs stay bounded (status), restart it on its
// directory, wait for equal watermarks and checksums, then check the order, the
// acknowledged values, that the others sent catch-up chunks read from their WALs as
// raw runs without decoding a record (status counters), that node 3 verified and
// used them, and the bound on every node again.
#[test]
fn stopped_node_catches_up_from_the_wal_past_the_retention() {
    const RETENTION: u64 = 16;
    let mut cluster = Cluster::new_with(
        "retain",
        Shape {
            nodes: 3,
            shards: 2,
            groups: 2,
        },
        |config| {
            config.group.retention_instances_max = RETENTION;
            config.group.batch_values_max = 1;
        },
    );
    let bound = RETENTION as usize + cluster_accept_window();
    let mut acked = load(&cluster, 4, 20, "a");
    assert!(
        cluster.wait_converged(Duration::from_secs(20)),
        "no convergence"
    );
    let stopped = NodeId(3);
    let node = cluster.nodes.remove(&stopped).expect("node 3 runs");
    assert_eq!(node.shutdown(), Vec::new());
    acked.extend(load(&cluster, 8, 80, "b"));
    assert!(acked.len() >= 8 * 80 * 9 / 10, "only {} acked", acked.len());
    for id in [NodeId(1), NodeId(2)] {
        for (group, memory) in memory_of(&cluster, id) {
            assert!(
                memory.log_len <= bound,
                "node {} group {}: {memory:?} over {bound}",
                id.0,
                group.0
            );
            assert!(
                memory.log_floor.0 > 200,
                "node {} group {}: floor {} did not pass node 3",
                id.0,
                group.0,
                memory.log_floor.0
            );
        }
    }
    cluster.start(stopped);
    assert!(
        cluster.wait_converged(Duration::from_secs(60)),
        "the restarted node did not catch up"
    );
    assert_same_order(&cluster, true);
    assert_acked_applied(&cluster, &acked);
    let served: u64 = [NodeId(1), NodeId(2)]
        .iter()
        .flat_map(|id| memory_of(&cluster, *id).into_values())
        .map(|m| m.catch_up_wal_served)
        .sum();
    assert!(served > 0, "no catch-up chunk was read from a WAL");
    // Raw streaming: the senders sent runs of records as they lie in their WALs and
    // decoded none of them; the restarted node verified and used them.
    let senders: Vec<CatchUpStatus> = [NodeId(1), NodeId(2)]
        .iter()
        .map(|id| catch_up_of(&cluster, *id))
        .collect();
    let runs_sent: u64 = senders.iter().map(|c| c.raw_runs_sent).sum();
    let bytes_sent: u64 = senders.iter().map(|c| c.raw_bytes_sent).sum();
    let decoded: u64 = senders.iter().map(|c| c.records_decoded_for_peers).sum();
    assert!(
        runs_sent > 0 && bytes_sent > 0,
        "no raw run sent: {senders:?}"
    );
    assert_eq!(
        decoded, 0,
        "a sender decoded records for a peer: {senders:?}"
    );
    let receiver = catch_up_of(&cluster, stopped);
    assert!(receiver.raw_runs_received > 0, "{receiver:?}");
    assert_eq!(receiver.raw_refused, 0, "{receiver:?}");
    println!("raw runs sent {runs_sent} ({bytes_sent} bytes), received {receiver:?}");
    for id in [NodeId(1), NodeId(2), NodeId(3)] {
        for (group, memory) in memory_of(&cluster, id) {
            assert!(
                memory.log_len <= bound,
                "node {} group {}: {memory:?} over {bound}",
                id.0,
                group.0
            );
        }
    }
    println!("catch-up chunks served from the WAL: {served}");
    for (_, node) in std::mem::take(&mut cluster.nodes) {
        assert_eq!(node.shutdown(), Vec::new());
    }
}

/// The accept window of the test configuration (the default).
fn cluster_accept_window() -> usize {
    let membership = synod::paxos::Membership::new(vec![NodeId(1)]);
    synod::paxos::GroupConfig::new(NodeId(1), GroupId(0), membership).accept_window_instances_max
        as usize
}

/// What one (node, group) state machine of the checkpoint test did in its current
/// process life: values applied, the checkpoint it was restored from, its state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Life {
    applies: u64,
    restored: Option<(Instance, u64)>,
    state: (u32, u64),
}

type Lives = std::sync::Arc<std::sync::Mutex<BTreeMap<(NodeId, GroupId), Life>>>;

/// A state machine whose state is a running CRC32C over (instance, value) and a count
/// of values; it reports every apply and restore into `lives`.
struct Counter {
    key: (NodeId, GroupId),
    lives: Lives,
    state: (u32, u64),
}

impl Counter {
    fn report(&self, f: impl FnOnce(&mut Life)) {
        let mut lives = self.lives.lock().expect("lives lock");
        let life = lives.entry(self.key).or_default();
        f(life);
        life.state = self.state;
    }
}

impl synod::api::StateMachine for Counter {
    fn apply(&mut self, instance: Instance, value: &[u8]) -> Bytes {
        let digest = crc32c::crc32c_append(self.state.0, &instance.0.to_le_bytes());
        self.state = (crc32c::crc32c_append(digest, value), self.state.1 + 1);
        self.report(|life| life.applies += 1);
        Bytes::new()
    }
    fn query(&self, _: &[u8]) -> Bytes {
        Bytes::new()
    }
    fn checkpoint(&self) -> Option<synod::api::CheckpointImage> {
        let mut image = self.state.0.to_le_bytes().to_vec();
        image.extend_from_slice(&self.state.1.to_le_bytes());
        Some(synod::api::CheckpointImage::ready(Bytes::from(image)))
    }
    fn restore(&mut self, instance: Instance, image: &[u8]) -> Result<(), String> {
        let (digest, count) = image.split_at_checked(4).ok_or("short image")?;
        let digest = u32::from_le_bytes(digest.try_into().map_err(|_| "digest")?);
        let count = u64::from_le_bytes(count.try_into().map_err(|_| "count")?);
        self.state = (digest, count);
        self.report(|life| life.restored = Some((instance, count)));
        Ok(())
    }
}

/// Factories of `Counter` machines reporting into `lives`; each process life of a
/// node starts its (node, group) record afresh.
fn counter_machines(lives: &Lives) -> common::cluster::Machines {
    let lives = std::sync::Arc::clone(lives);
    Box::new(move |node: NodeId, _: &common::cluster::Applied| {
        let lives = std::sync::Arc::clone(&lives);
        let factory: synod::api::StateMachineFactory = std::sync::Arc::new(move |group| {
            lives
                .lock()
                .expect("lives lock")
                .insert((node, group), Life::default());
            Box::new(Counter {
                key: (node, group),
                lives: std::sync::Arc::clone(&lives),
                state: (0, 0),
            })
        });
        factory
    })
}

/// Every group's status on `node`, once each has a durable checkpoint at or above
/// `through` (checkpoints become durable shortly after they are taken: with the WAL's
/// next write).
fn wait_checkpoints(
    cluster: &Cluster,
    node: NodeId,
    through: Instance,
) -> Vec<synod::api::GroupStatus> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let groups: Vec<_> = futures_lite::future::block_on(cluster.nodes[&node].handle().status())
            .expect("status")
            .into_iter()
            .flat_map(|s| s.groups)
            .collect();
        if groups.iter().all(|g| g.checkpoint_through >= through) {
            return groups;
        }
        assert!(
            Instant::now() < deadline,
            "no durable checkpoints: {groups:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Flips a bit in the last byte of the newest checkpoint file of group 0 in `dir`;
/// returns that checkpoint's instance.
fn damage_newest_checkpoint(dir: &std::path::Path) -> u64 {
    let newest = std::fs::read_dir(dir)
        .expect("checkpoint dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter_map(|name| {
            let through = name.strip_prefix("g0-")?.strip_suffix(".ckpt")?;
            through.parse::<u64>().ok().map(|t| (t, name))
        })
        .max()
        .expect("a checkpoint of group 0");
    let path = dir.join(&newest.1);
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&path, bytes).expect("damage");
    newest.0
}

// Goal: a node restarted after its groups took checkpoints restores its state machines
// from them and applies only the WAL suffix after them, ending in the same state as
// the others, with nothing below the checkpoint in memory (its log floor there); a
// damaged newest checkpoint is ignored and the previous one (or the whole log) used
// instead, never a wrong base.
// Method: 3 nodes x 2 groups, a checkpoint every 40 instances; 150 sequential values
// per group; stop node 2, restart it, count its applies, read its log floor and compare
// states; then flip a byte of node 3's newest checkpoint of group 0 and restart it too.
#[test]
fn restart_from_checkpoint_applies_only_the_suffix() {
    let lives: Lives = Lives::default();
    let mut cluster = Cluster::with_machines_and(
        "ckpt",
        Shape {
            nodes: 3,
            shards: 1,
            groups: 2,
        },
        counter_machines(&lives),
        |config| {
            config.checkpoint.instance_count = 40;
            config.checkpoint.applied_size = 0;
            config.checkpoint.interval_ns = 0;
        },
    );
    let handles = cluster.handles();
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..300u32 {
        let value = Bytes::from(format!("value-{i}"));
        let outcome = propose_anywhere(&handles, GroupId(i % 2), value, deadline);
        assert!(
            matches!(outcome, Outcome::Chosen(_)),
            "value {i} not chosen"
        );
    }
    assert!(
        cluster.wait_converged(Duration::from_secs(20)),
        "no convergence"
    );
    let before = wait_checkpoints(&cluster, NodeId(2), Instance(40));
    cluster.nodes.remove(&NodeId(2)).expect("node 2").shutdown();
    cluster.start(NodeId(2));
    assert!(
        cluster.wait_converged(Duration::from_secs(20)),
        "no convergence after restart"
    );
    let snapshot = lives.lock().expect("lives lock").clone();
    let memory = memory_of(&cluster, NodeId(2));
    for group in [GroupId(0), GroupId(1)] {
        let durable = before
            .iter()
            .find(|g| g.group == group)
            .expect("group status")
            .checkpoint_through;
        let life = &snapshot[&(NodeId(2), group)];
        let (restored_at, restored_count) = life.restored.expect("restored from a checkpoint");
        assert!(
            restored_at >= durable,
            "group {}: restored at {} below the durable {}",
            group.0,
            restored_at.0,
            durable.0
        );
        println!(
            "group {}: durable checkpoint {} before the stop; restored at {} ({} values), \
             then applied {} values of {}; log floor {}",
            group.0,
            durable.0,
            restored_at.0,
            restored_count,
            life.applies,
            life.state.1,
            memory[&group].log_floor.0
        );
        // The default retention (4,096) is far above this history: the floor is the
        // checkpoint's, not the retention's.
        assert_eq!(memory[&group].log_floor, restored_at, "group {}", group.0);
        assert!(restored_count > 0);
        assert_eq!(
            life.applies,
            life.state.1 - restored_count,
            "group {}: only the values after the checkpoint are applied",
            group.0
        );
        assert!(life.applies < life.state.1 / 2, "{life:?}");
        for other in [NodeId(1), NodeId(3)] {
            assert_eq!(
                snapshot[&(other, group)].state,
                life.state,
                "group {}",
                group.0
            );
        }
    }

    // Damage node 3's newest checkpoint of group 0, then restart it.
    let dir = cluster.dirs[&NodeId(3)].path().join("checkpoints");
    wait_checkpoints(&cluster, NodeId(3), Instance(40));
    cluster.nodes.remove(&NodeId(3)).expect("node 3").shutdown();
    let newest = damage_newest_checkpoint(&dir);
    cluster.start(NodeId(3));
    assert!(
        cluster.wait_converged(Duration::from_secs(20)),
        "no convergence after the damaged restart"
    );
    let snapshot = lives.lock().expect("lives lock").clone();
    let life = &snapshot[&(NodeId(3), GroupId(0))];
    let restored = life.restored.map_or(0, |(at, _)| at.0);
    println!(
        "node 3 group 0: newest checkpoint {newest} damaged; restored at {restored}, \
         applied {} of {}",
        life.applies, life.state.1
    );
    assert!(
        restored < newest,
        "restored at {restored}, from the damaged checkpoint at {newest}"
    );
    assert_eq!(
        life.state,
        snapshot[&(NodeId(1), GroupId(0))].state,
        "the fallback rebuilt the same state"
    );
    for (_, node) in std::mem::take(&mut cluster.nodes) {
        assert_eq!(node.shutdown(), Vec::new());
    }
}

// Goal: a node stopped while the others run far past their checkpoints is sent a
// checkpoint on its return and installs it in process (no restart), then catches up
// the log after it, ending with the same state machine state as the others.
// Method: 3 nodes x 1 shard x 2 groups, a checkpoint every 40 instances, retention 16,
// and the transfer policy `lag_instances = 60` (a peer asking from more than 60
// instances below the sender's durable checkpoint is sent the checkpoint instead of
// the WAL: the same path a WAL truncated below its checkpoint takes); 100 values per
// group, stop node 3, 200 more per group, wait for the others' durable checkpoints,
// restart node 3; check its groups installed a checkpoint above where it stopped, its
// machines were restored mid-life by the install, and every state is equal.
#[test]
fn stopped_node_installs_a_checkpoint_in_process() {
    let lives: Lives = Lives::default();
    let mut cluster = Cluster::with_machines_and(
        "xfer",
        Shape {
            nodes: 3,
            shards: 1,
            groups: 2,
        },
        counter_machines(&lives),
        |config| {
            config.checkpoint.instance_count = 40;
            config.checkpoint.applied_size = 0;
            config.checkpoint.interval_ns = 0;
            config.group.retention_instances_max = 16;
            config.group.batch_values_max = 1;
            config.transfer.lag_instances = 60;
            config.transfer.chunk_size_max = 4;
        },
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    // The handles of the nodes running at the call: a stopped node's handle answers
    // `Stopped`, which `propose_anywhere` reports as an unknown outcome.
    let propose = |handles: &BTreeMap<NodeId, NodeHandle>, from: u32, to: u32| {
        for i in from..to {
            let value = Bytes::from(format!("value-{i}"));
            let outcome = propose_anywhere(handles, GroupId(i % 2), value, deadline);
            assert!(
                matches!(outcome, Outcome::Chosen(_)),
                "value {i} not chosen"
            );
        }
    };
    propose(&cluster.handles(), 0, 200);
    assert!(
        cluster.wait_converged(Duration::from_secs(20)),
        "no convergence"
    );
    let stopped = NodeId(3);
    cluster.nodes.remove(&stopped).expect("node 3").shutdown();
    let stopped_at: BTreeMap<GroupId, u64> = lives
        .lock()
        .expect("lives lock")
        .iter()
        .filter(|((node, _), _)| *node == stopped)
        .map(|((_, group), life)| (*group, life.state.1))
        .collect();
    propose(&cluster.handles(), 200, 600);
    for id in [NodeId(1), NodeId(2)] {
        wait_checkpoints(&cluster, id, Instance(240));
    }
    cluster.start(stopped);
    assert!(
        cluster.wait_converged(Duration::from_secs(60)),
        "the restarted node did not catch up"
    );
    let snapshot = lives.lock().expect("lives lock").clone();
    let memory = memory_of(&cluster, stopped);
    for group in [GroupId(0), GroupId(1)] {
        let life = &snapshot[&(stopped, group)];
        let (restored_at, restored_count) = life.restored.expect("a checkpoint installed");
        println!(
            "group {}: node 3 stopped after {} values; installed a checkpoint at {} ({} \
             values), then applied {} values of {}; {:?}",
            group.0,
            stopped_at[&group],
            restored_at.0,
            restored_count,
            life.applies,
            life.state.1,
            memory[&group]
        );
        assert_eq!(memory[&group].checkpoints_installed, 1, "group {}", group.0);
        assert!(
            restored_count > stopped_at[&group] + 60,
            "group {}: restored {restored_count} values, stopped at {}",
            group.0,
            stopped_at[&group]
        );
        assert_eq!(life.applies, life.state.1 - restored_count);
        for other in [NodeId(1), NodeId(2)] {
            assert_eq!(
                snapshot[&(other, group)].state,
                life.state,
                "group {}",
                group.0
            );
        }
    }
    for (_, node) in std::mem::take(&mut cluster.nodes) {
        assert_eq!(node.shutdown(), Vec::new());
    }
}

// Goal: with checkpoints, the running nodes truncate their WALs: segments below the
// durable checkpoints are freed, so the segment files stay bounded however much is
// written; a node restarted on its truncated log recovers the others' state.
// Method: 4 MiB segments, a checkpoint every 16 instances, truncation at once with no
// tail; ~40 MiB of 64 KiB values per node (10 segments' worth); count segment files
// (not timing); restart node 2 and compare its state machines with the others'.
#[test]
fn truncation_frees_segments_and_a_restart_recovers() {
    let lives: Lives = Lives::default();
    let mut cluster = Cluster::with_machines_and(
        "trunc",
        Shape {
            nodes: 3,
            shards: 1,
            groups: 2,
        },
        counter_machines(&lives),
        |config| {
            config.segment_size = 4 << 20;
            config.wal_buffer_size_max = 1 << 20;
            config.wal_pending_size_max = 8 << 20;
            config.group.batch_size_max = 512 << 10;
            config.group.value_size_max = 256 << 10;
            config.checkpoint.instance_count = 16;
            config.checkpoint.applied_size = 0;
            config.checkpoint.interval_ns = 0;
            config.truncation.enabled = true;
            config.truncation.interval_ns = 0;
            config.truncation.catch_up_instances = 0;
        },
    );
    let handles = cluster.handles();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut segments_max = 0;
    for i in 0..640u32 {
        let mut value = vec![(i % 251) as u8; 64 << 10];
        value[..4].copy_from_slice(&i.to_le_bytes());
        let outcome = propose_anywhere(&handles, GroupId(i % 2), Bytes::from(value), deadline);
        assert!(
            matches!(outcome, Outcome::Chosen(_)),
            "value {i} not chosen"
        );
        if i % 32 == 0 {
            for node in [NodeId(1), NodeId(2), NodeId(3)] {
                segments_max = segments_max.max(segment_files(cluster.dirs[&node].path()).0);
            }
        }
    }
    assert!(
        cluster.wait_converged(Duration::from_secs(20)),
        "no convergence"
    );
    wait_checkpoints(&cluster, NodeId(2), Instance(300));
    let segments: Vec<usize> = [NodeId(1), NodeId(2), NodeId(3)]
        .iter()
        .map(|node| segment_files(cluster.dirs[node].path()).0)
        .collect();
    println!("segment files per node at the end {segments:?}, most seen {segments_max}");
    // 40 MiB written per node is 10 segments; without truncation every one stays.
    assert!(
        segments_max <= 6,
        "up to {segments_max} segment files: the WAL was not truncated"
    );
    cluster.nodes.remove(&NodeId(2)).expect("node 2").shutdown();
    cluster.start(NodeId(2));
    let converged = cluster.wait_converged(Duration::from_secs(20));
    for (id, node) in &cluster.nodes {
        let status = futures_lite::future::block_on(node.handle().status()).expect("status");
        for g in status.into_iter().flat_map(|s| s.groups) {
            println!(
                "node {} group {}: applied {} checksum {:08x} checkpoint {}",
                id.0, g.group.0, g.applied_through.0, g.checksum, g.checkpoint_through.0
            );
        }
    }
    assert!(converged, "no convergence after restart");
    let snapshot = lives.lock().expect("lives lock").clone();
    for group in [GroupId(0), GroupId(1)] {
        let life = &snapshot[&(NodeId(2), group)];
        assert!(life.restored.is_some(), "group {}: {life:?}", group.0);
        assert_eq!(life.state.1, 320, "group {}: every value applied", group.0);
        for other in [NodeId(1), NodeId(3)] {
            assert_eq!(
                snapshot[&(other, group)].state,
                life.state,
                "group {}",
                group.0
            );
        }
    }
    for (_, node) in std::mem::take(&mut cluster.nodes) {
        assert_eq!(node.shutdown(), Vec::new());
    }
}
