//! A node's life and death: a shard that stops for good (a panic, a full disk) takes
//! its node out cleanly instead of leaving a half-dead process, and `synod serve`
//! refuses at start what would break the cluster (a read-only or unannounced empty
//! data directory, overlapping shard ports, a client port inside a shard port range).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{propose_anywhere, recorder, Cluster, Outcome, Shape};
use futures_lite::future::block_on;
use synod::api::{Error, Fatal, StateMachine};
use synod::paxos::{GroupId, Instance, NodeId};
use synod::runtime::shard_of;

/// Runs `f` on a thread of its own and returns its result, or fails the test if it
/// does not return within `limit` (a hang is the failure these tests look for).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not return within {limit:?}"))
}

/// A state machine that panics when it applies `boom`, as a buggy one would.
struct Bomb;

impl StateMachine for Bomb {
    fn apply(&mut self, instance: Instance, value: &[u8]) -> Bytes {
        assert!(
            value != b"boom",
            "state machine bug at instance {}",
            instance.0
        );
        Bytes::new()
    }
    fn query(&self, _: &[u8]) -> Bytes {
        Bytes::new()
    }
}

// Goal: a shard whose thread panics is reported at once with its index and reason;
// requests to it answer `Stopped` without waiting, its node's other shard keeps
// serving, the other nodes keep choosing in its groups, and `Node::shutdown` returns.
// Method: 3 nodes x 2 shards x 4 groups; node 1's state machines panic on `boom`;
// propose `boom` to group 1; wait on node 1's fatal latch; then propose, ask status
// and group status on node 1 and shut it down, each bounded by a deadline.
#[test]
fn panicked_shard_stops_its_node_cleanly() {
    let mut cluster = Cluster::with_machines(
        "panic",
        Shape {
            nodes: 3,
            shards: 2,
            groups: 4,
        },
        Box::new(|node, applied| {
            if node == NodeId(1) {
                Arc::new(|_| Box::new(Bomb))
            } else {
                recorder(applied)
            }
        }),
    );
    let group = GroupId(1);
    let dead_shard = shard_of(group, 2);
    let other = (0..4)
        .map(GroupId)
        .find(|g| shard_of(*g, 2) != dead_shard)
        .expect("a group on the other shard");
    let handles = cluster.handles();
    let deadline = Instant::now() + Duration::from_secs(30);
    assert!(
        matches!(
            propose_anywhere(&handles, group, Bytes::from_static(b"before"), deadline),
            Outcome::Chosen(_)
        ),
        "no progress before the panic"
    );
    assert_eq!(cluster.nodes[&NodeId(1)].fatal(), None);
    // Chosen everywhere, so node 1 applies it whether it leads or follows.
    let _ = propose_anywhere(&handles, group, Bytes::from_static(b"boom"), deadline);
    let stopped = cluster.nodes[&NodeId(1)]
        .wait_fatal(Some(Duration::from_secs(20)))
        .expect("node 1 reports its shard's stop");
    println!("reported: {stopped}");
    assert_eq!((stopped.node, stopped.shard), (NodeId(1), dead_shard));
    assert!(
        matches!(&stopped.fatal, Fatal::Panic { message } if message.contains("state machine bug")),
        "{stopped}"
    );
    assert!(stopped.to_string().contains(&format!("shard {dead_shard}")));

    let handle = cluster.nodes[&NodeId(1)].handle();
    let h = handle.clone();
    let answer = within(
        Duration::from_secs(5),
        "propose to the dead shard",
        move || block_on(h.propose(group, b"after".to_vec())),
    );
    assert_eq!(answer, Err(Error::Stopped));
    let h = handle.clone();
    let status = within(Duration::from_secs(5), "status", move || {
        block_on(h.status())
    });
    assert_eq!(status, Err(Error::Stopped));
    let h = handle.clone();
    let alive = within(Duration::from_secs(5), "group status", move || {
        block_on(h.group_status(other))
    });
    assert!(alive.is_ok(), "the other shard stopped too: {alive:?}");

    let others: BTreeMap<NodeId, _> = handles
        .into_iter()
        .filter(|(id, _)| *id != NodeId(1))
        .collect();
    let outcome = propose_anywhere(
        &others,
        group,
        Bytes::from_static(b"elsewhere"),
        Instant::now() + Duration::from_secs(30),
    );
    assert!(
        matches!(outcome, Outcome::Chosen(_)),
        "nodes 2 and 3 stopped choosing in group {}",
        group.0
    );

    let node = cluster.nodes.remove(&NodeId(1)).expect("node 1");
    let stops = within(Duration::from_secs(20), "Node::shutdown", move || {
        node.shutdown()
    });
    assert_eq!(stops, vec![stopped]);
}
