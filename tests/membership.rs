//! Membership changes on a real cluster on 127.0.0.1 through
//! `NodeHandle::change_membership`: a voter replaced by a node that started empty,
//! under a client writing in a loop; the refusals (a follower asked, a node outside
//! the address book) name why. (One change at a time, and the catch-up wait of an
//! add, are staged exactly in `tests/scenarios.rs`.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{Cluster, Shape, Writer};
use futures_lite::future::block_on;
use synod::api::{Error, MembershipChange, NodeHandle, Position};
use synod::paxos::{GroupId, Instance, NodeId};

const GROUP: GroupId = GroupId(0);
const ELECTION_TIMEOUT: Duration = Duration::from_millis(300); // `test_config`

/// Asks `change` of whichever node leads, following `NotLeader` hints, for 10 s.
fn change_at_leader(
    handles: &BTreeMap<NodeId, NodeHandle>,
    start: NodeId,
    change: MembershipChange,
) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut target = start;
    loop {
        let outcome = block_on(handles[&target].change_membership(GROUP, change));
        match outcome {
            Err(Error::NotLeader { hint }) if Instant::now() < deadline => {
                if let Some(hint) = hint.filter(|h| handles.contains_key(h)) {
                    target = hint;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Every value of `GROUP`'s log on `handle`, from the first instance, in order.
fn whole_log(handle: &NodeHandle) -> Vec<Bytes> {
    let mut values = Vec::new();
    let mut from = Position::from(Instance(1));
    loop {
        let read = block_on(handle.read_log(GROUP, from, 1 << 20))
            .expect("the log reads back from its first instance");
        if read.entries.is_empty() {
            return values;
        }
        values.extend(read.entries.into_iter().map(|e| e.value));
        from = read.next;
    }
}

// Goal: a voter is replaced by a node that started empty while a client writes,
// without losing an acknowledged write and without a pause a client would take for
// an outage; the new node ends a voter with the whole log.
// Method: nodes 1-4 in every address book, voters 1-3; a writer proposes in a loop and
// records when each write was acknowledged; the leader (moved off node 3 first) adds
// 4 (answered once 4 caught up and the change is in effect), then removes 3; node 3
// stops. Then: every acknowledged value is in the log read back from 4, 1 and 2, the
// longest gap between consecutive acknowledgements is below two election timeouts,
// and 4 is among the voters every running node reports.
#[test]
fn replace_a_voter_under_load() {
    let mut cluster = Cluster::new_with(
        "membership",
        Shape {
            nodes: 4,
            shards: 1,
            groups: 1,
        },
        |config| {
            config.voters = [NodeId(1), NodeId(2), NodeId(3)].into();
        },
    );
    let mut leader = cluster.wait_leader(GROUP, Duration::from_secs(10));
    let handles = cluster.handles();
    if leader == NodeId(3) {
        block_on(handles[&leader].transfer_leadership(GROUP, NodeId(1))).expect("hand over");
        leader = cluster.wait_leader(GROUP, Duration::from_secs(5));
    }
    assert_ne!(leader, NodeId(4), "a non-voter does not lead");

    // Refusals: a follower asked, a node outside the address book.
    let follower = NodeId(if leader == NodeId(1) { 2 } else { 1 });
    match block_on(
        handles[&follower].change_membership(GROUP, MembershipChange::AddVoter(NodeId(4))),
    ) {
        Err(Error::NotLeader { hint }) => assert_eq!(hint, Some(leader)),
        other => panic!("a follower asked: {other:?}"),
    }
    match block_on(handles[&leader].change_membership(GROUP, MembershipChange::AddVoter(NodeId(9))))
    {
        Err(Error::Rejected { reason }) => assert!(reason.contains("address book"), "{reason}"),
        other => panic!("a node outside the address book: {other:?}"),
    }

    let writers: BTreeMap<NodeId, NodeHandle> = handles
        .iter()
        .filter(|(id, _)| **id != NodeId(3))
        .map(|(id, h)| (*id, h.clone()))
        .collect();
    let writer = Writer::start(writers.clone(), GROUP);
    // A log of some length for node 4 to catch up with.
    std::thread::sleep(Duration::from_millis(1_000));

    let asked = Instant::now();
    change_at_leader(&handles, leader, MembershipChange::AddVoter(NodeId(4))).expect("add 4");
    let added = asked.elapsed();
    change_at_leader(&handles, leader, MembershipChange::RemoveVoter(NodeId(3))).expect("remove 3");
    let replaced = asked.elapsed();
    let node3 = cluster.nodes.remove(&NodeId(3)).expect("node 3 runs");
    assert!(node3.shutdown().is_empty(), "node 3 stopped cleanly");
    std::thread::sleep(Duration::from_millis(500));
    let acknowledged = writer.stop();

    assert!(acknowledged.len() > 20, "{} writes", acknowledged.len());
    let gap = acknowledged
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default();
    println!(
        "node 3 replaced by node 4 under load: add answered in {added:?}, replacement in \
         {replaced:?}; longest gap between acknowledged writes {gap:?} (election timeout \
         {ELECTION_TIMEOUT:?}); {} writes acknowledged",
        acknowledged.len()
    );
    assert!(
        gap < 2 * ELECTION_TIMEOUT,
        "gap {gap:?} not below two election timeouts"
    );

    // Node 4 votes, and every running node knows it; 3 does not any more.
    assert!(cluster.wait_converged(Duration::from_secs(10)), "converged");
    for (id, handle) in &writers {
        let status = block_on(handle.group_status(GROUP)).expect("status");
        let voters: BTreeSet<NodeId> = status.voters.expect("voters").into_iter().collect();
        assert_eq!(
            voters,
            [NodeId(1), NodeId(2), NodeId(4)].into(),
            "voters on node {}",
            id.0
        );
        assert!(status.voting, "node {} votes", id.0);
    }
    // Every acknowledged write reads back from the new node and the others, and the
    // new node holds the whole log, the same as theirs.
    let logs: BTreeMap<NodeId, Vec<Bytes>> =
        writers.iter().map(|(id, h)| (*id, whole_log(h))).collect();
    for (id, log) in &logs {
        let values: BTreeSet<&Bytes> = log.iter().collect();
        for (_, value) in &acknowledged {
            assert!(values.contains(value), "node {} lacks {value:?}", id.0);
        }
    }
    assert_eq!(
        logs[&NodeId(4)],
        logs[&NodeId(1)],
        "node 4's log is node 1's"
    );
    assert_eq!(
        logs[&NodeId(4)],
        logs[&NodeId(2)],
        "node 4's log is node 2's"
    );
}
