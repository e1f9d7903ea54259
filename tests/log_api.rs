//! The log API on real 3-node clusters on 127.0.0.1: every acknowledged value read
//! back at its position, in order, on every replica (from memory and from the WAL),
//! a subscriber that sees every value once across the leader's death, and `Truncated`
//! below the checkpoint a restarted node resumed from.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{Cluster, Shape};
use futures_lite::future::block_on;
use synod::api::{Error, LogEntry, NodeHandle, Position};
use synod::paxos::{GroupId, Instance, NodeId};
use synod::runtime::log_reads::LogReadCounters;

/// Proposes `value` through whichever node leads `group`, following hints; returns
/// the position the value was applied at, or `None` when the outcome is unknown.
fn propose(
    handles: &BTreeMap<NodeId, NodeHandle>,
    group: GroupId,
    value: &Bytes,
    deadline: Instant,
) -> Option<Position> {
    let ids: Vec<NodeId> = handles.keys().copied().collect();
    let mut target = ids[0];
    let mut attempt = 0;
    while Instant::now() < deadline {
        match block_on(handles[&target].propose(group, value.clone())) {
            Ok(proposed) => return Some(proposed.position),
            Err(Error::NotLeader { hint: Some(hint) })
                if hint != target && handles.contains_key(&hint) =>
            {
                target = hint;
            }
            Err(Error::NotLeader { .. } | Error::LeaseNotHeld | Error::Overloaded) => {
                attempt += 1;
                target = ids[attempt % ids.len()];
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(Error::Indeterminate | Error::Stopped | Error::Aborted) => return None,
            Err(error) => panic!("unexpected error: {error}"),
        }
    }
    None
}

/// Reads `group`'s whole log on `handle` from `from` through `through`, `size_max`
/// bytes at a time, checking that each answer continues the previous one.
fn read_all(
    handle: &NodeHandle,
    group: GroupId,
    from: Position,
    through: Instance,
    size_max: usize,
) -> Vec<LogEntry> {
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut next = from;
    while next.instance <= through {
        let read = block_on(handle.read_log(group, next, size_max)).expect("read_log");
        assert!(read.next > next, "no progress at {next}: {read:?}");
        for entry in &read.entries {
            assert!(entry.position >= next && entry.position < read.next);
            if let Some(last) = entries.last() {
                assert!(last.position < entry.position, "out of order");
            }
        }
        let size: usize = read.entries.iter().map(|e| e.value.len()).sum();
        assert!(
            read.entries.len() <= 1 || size <= size_max,
            "{size} bytes for a limit of {size_max}"
        );
        next = read.next;
        entries.extend(read.entries);
    }
    entries
}

// Goal: every acknowledged value reads back at the position its proposal returned, in
// log order, on every replica (followers too), from the WAL below the small in-memory
// log as from memory; values batched into one instance get consecutive indexes.
// Method: 3 nodes x 2 groups, retention of 8 instances; 8 threads propose 40 values
// each; after convergence, read each group's whole log on every node in small chunks
// and compare with the acknowledged positions; read from a position inside a batch.
#[test]
fn acknowledged_values_read_back_at_their_positions() {
    let cluster = Cluster::new_with(
        "logread",
        Shape {
            nodes: 3,
            shards: 1,
            groups: 2,
        },
        |config| config.group.retention_instances_max = 8,
    );
    let handles = cluster.handles();
    let deadline = Instant::now() + Duration::from_secs(60);
    let acked: Arc<Mutex<BTreeMap<(GroupId, Position), Bytes>>> = Arc::default();
    std::thread::scope(|scope| {
        for thread in 0..8u32 {
            let (handles, acked) = (&handles, &acked);
            scope.spawn(move || {
                for i in 0..40u32 {
                    let group = GroupId((thread + i) % 2);
                    let value = Bytes::from(format!("t{thread}-v{i}-{}", "x".repeat(i as usize)));
                    if let Some(position) = propose(handles, group, &value, deadline) {
                        let old = acked.lock().unwrap().insert((group, position), value);
                        assert!(old.is_none(), "two values at {position}");
                    }
                }
            });
        }
    });
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 300,
        "only {} values acknowledged",
        acked.len()
    );
    assert!(
        cluster.wait_converged(Duration::from_secs(20)),
        "no convergence"
    );
    let batched = acked.keys().filter(|(_, p)| p.index > 0).count();
    println!(
        "{} values acknowledged, {batched} at index > 0",
        acked.len()
    );
    for (id, handle) in &handles {
        let before = log_read_counters(handle);
        for group in [GroupId(0), GroupId(1)] {
            let status = block_on(handle.group_status(group)).expect("status");
            let floor = status.memory.expect("memory").log_floor;
            assert!(
                floor > Instance(8),
                "node {} group {}: floor {floor:?}",
                id.0,
                group.0
            );
            let entries = read_all(handle, group, Position::START, status.chosen_through, 64);
            let read: BTreeMap<Position, Bytes> = entries
                .iter()
                .map(|e| (e.position, e.value.clone()))
                .collect();
            assert_eq!(read.len(), entries.len(), "a position read twice");
            let wanted: BTreeMap<Position, Bytes> = acked
                .iter()
                .filter(|((g, _), _)| *g == group)
                .map(|((_, p), v)| (*p, v.clone()))
                .collect();
            // Every value of the log was proposed by a thread here, and the outcome of
            // at most a few is unknown: the log is the acknowledged values, and maybe
            // those.
            for (position, value) in &wanted {
                assert_eq!(
                    read.get(position),
                    Some(value),
                    "node {} at {position}",
                    id.0
                );
            }
            assert!(
                read.len() - wanted.len() <= 8,
                "{} values never acknowledged",
                read.len() - wanted.len()
            );
            // Values batched into one instance have consecutive indexes from 0.
            for window in entries.windows(2) {
                let (a, b) = (window[0].position, window[1].position);
                if a.instance == b.instance {
                    assert_eq!(b.index, a.index + 1);
                } else {
                    assert_eq!(b.index, 0);
                }
            }
            // A read from inside a batch starts there.
            if let Some(inside) = entries.iter().find(|e| e.position.index > 0) {
                let read = block_on(handle.read_log(group, inside.position, 1)).expect("read");
                assert_eq!(read.entries[0], *inside);
                assert_eq!(read.entries.len(), 1, "a 1-byte limit returns one value");
            }
            // Beyond the chosen watermark: nothing yet, the position unchanged.
            let beyond = Position::at(status.chosen_through.next());
            let read = block_on(handle.read_log(group, beyond, 1 << 20)).expect("read");
            assert!(read.entries.is_empty());
            assert_eq!(read.next, beyond);
        }
        // The reads from the start went to the WAL (below the floor), the others were
        // served from memory; none was refused.
        let after = log_read_counters(handle);
        let from_wal = after.served_from_wal - before.served_from_wal;
        let from_memory =
            (after.served - after.served_from_wal) - (before.served - before.served_from_wal);
        assert!(
            from_wal >= 2,
            "node {}: {from_wal} reads from the WAL",
            id.0
        );
        assert!(
            from_memory >= 2,
            "node {}: {from_memory} reads from memory",
            id.0
        );
        assert_eq!(
            after.wal - before.wal,
            from_wal + (after.refused - before.refused)
        );
        println!("node {}: log reads {after:?}", id.0);
    }
}

/// The log read counters of `handle`'s shards, summed.
fn log_read_counters(handle: &NodeHandle) -> LogReadCounters {
    let mut sum = LogReadCounters::default();
    for shard in block_on(handle.status()).expect("status") {
        let c = shard.log_reads;
        sum.served += c.served;
        sum.served_from_wal += c.served_from_wal;
        sum.refused += c.refused;
        sum.wal += c.wal;
    }
    sum
}

// Goal: a subscriber on a follower sees every chosen value exactly once, in log order,
// across the death of the leader (a new leader is elected and proposals continue).
// Method: 3 nodes x 1 group; subscribe on a node that does not lead; propose 150
// values, SIGKILL-like abort the leader after 60, keep proposing through the others;
// then take from the subscription until every acknowledged value was seen.
#[test]
fn subscriber_sees_every_value_once_across_a_leader_change() {
    let mut cluster = Cluster::new(
        "subscribe",
        Shape {
            nodes: 3,
            shards: 1,
            groups: 1,
        },
    );
    let group = GroupId(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let handles = cluster.handles();
    assert!(propose(&handles, group, &Bytes::from_static(b"first"), deadline).is_some());
    let leader = cluster.leader(group).expect("a leader");
    let follower = *handles
        .keys()
        .find(|id| **id != leader)
        .expect("a follower");
    let (sender, seen) = std::sync::mpsc::channel();
    let mut subscription = handles[&follower].subscribe(group, Position::START);
    let subscriber = std::thread::spawn(move || {
        while let Some(item) = block_on(subscription.next()) {
            match item {
                Ok(entry) => {
                    if sender.send(entry).is_err() {
                        return;
                    }
                }
                Err(Error::Overloaded) => std::thread::sleep(Duration::from_millis(5)),
                // The node shuts down at the end of the test.
                Err(Error::Stopped) => return,
                Err(error) => panic!("subscription: {error}"),
            }
        }
    });
    let mut acked: BTreeMap<Position, Bytes> = BTreeMap::new();
    let mut handles = handles;
    for i in 0..150u32 {
        if i == 60 {
            let node = cluster.nodes.remove(&leader).expect("the leader");
            node.abort();
            handles.remove(&leader);
        }
        let value = Bytes::from(format!("value-{i}"));
        if let Some(position) = propose(&handles, group, &value, deadline) {
            acked.insert(position, value);
        }
    }
    assert!(acked.len() >= 140, "only {} acknowledged", acked.len());
    let last = *acked.keys().next_back().expect("values");
    let mut received: Vec<LogEntry> = Vec::new();
    while received.last().is_none_or(|e| e.position < last) {
        let entry = seen
            .recv_timeout(Duration::from_secs(10))
            .expect("the subscription stalled");
        received.push(entry);
    }
    let positions: BTreeSet<Position> = received.iter().map(|e| e.position).collect();
    assert_eq!(positions.len(), received.len(), "a value seen twice");
    assert!(received.windows(2).all(|w| w[0].position < w[1].position));
    for (position, value) in &acked {
        let entry = received.iter().find(|e| e.position == *position);
        assert_eq!(entry.map(|e| &e.value), Some(value), "at {position}");
    }
    println!(
        "leader {} killed; {} values seen on node {} ({} acknowledged)",
        leader.0,
        received.len(),
        follower.0,
        acked.len()
    );
    drop(seen);
    for (_, node) in std::mem::take(&mut cluster.nodes) {
        node.shutdown();
    }
    subscriber.join().expect("subscriber");
}

// Goal: a node restarted from a checkpoint at C answers `Truncated { first_available:
// C + 1 }` below it (the WAL still holds those records: nothing truncates it yet, but
// the checkpoint, not the log, is this replica's state there), and reads from C + 1
// the same values as a node that kept its whole history.
// Method: 3 nodes, a checkpoint every 30 instances; 100 values; restart node 2 once
// its checkpoint is durable; read below, at and above its floor, compare with node 1.
#[test]
fn reading_below_a_restored_checkpoint_is_truncated() {
    let mut cluster = Cluster::with_machines_and(
        "logtrunc",
        Shape {
            nodes: 3,
            shards: 1,
            groups: 1,
        },
        Box::new(|_, _| synod::runtime::driver::null_factory()),
        |config| {
            config.checkpoint.instance_count = 30;
            config.checkpoint.applied_size = 0;
            config.checkpoint.interval_ns = 0;
        },
    );
    let group = GroupId(0);
    let handles = cluster.handles();
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..100u32 {
        let value = Bytes::from(format!("value-{i}"));
        assert!(propose(&handles, group, &value, deadline).is_some());
    }
    assert!(cluster.wait_converged(Duration::from_secs(20)));
    let node = NodeId(2);
    let wait = Instant::now() + Duration::from_secs(10);
    while block_on(handles[&node].group_status(group))
        .expect("status")
        .checkpoint_through
        < Instance(30)
    {
        assert!(Instant::now() < wait, "no durable checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.nodes.remove(&node).expect("node 2").shutdown();
    cluster.start(node);
    assert!(cluster.wait_converged(Duration::from_secs(20)));
    let restarted = cluster.nodes[&node].handle();
    let status = block_on(restarted.group_status(group)).expect("status");
    let floor = status.memory.expect("memory").log_floor;
    assert!(floor >= Instance(30), "restored at {floor:?}");
    let first_available = floor.next();
    for below in [Position::START, Position::at(floor)] {
        assert_eq!(
            block_on(restarted.read_log(group, below, 1 << 20)),
            Err(Error::Truncated { first_available }),
            "from {below}"
        );
    }
    let whole = cluster.nodes[&NodeId(1)].handle();
    let through = status.chosen_through;
    let mine = read_all(
        &restarted,
        group,
        Position::at(first_available),
        through,
        100,
    );
    let theirs = read_all(&whole, group, Position::at(first_available), through, 100);
    assert!(!mine.is_empty());
    assert_eq!(mine, theirs);
    let all = read_all(&whole, group, Position::START, through, 1 << 20);
    assert!(
        all.len() >= 100,
        "node 1 keeps its whole history: {}",
        all.len()
    );
    println!(
        "node 2 restored at {}: Truncated below {}; {} values read there, {} on node 1",
        floor.0,
        first_available.0,
        mine.len(),
        all.len()
    );
    for (_, node) in std::mem::take(&mut cluster.nodes) {
        node.shutdown();
    }
}
