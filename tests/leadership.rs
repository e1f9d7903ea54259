//! Leadership transfer on a real three-node cluster on 127.0.0.1: through
//! `NodeHandle::transfer_leadership`, under a client writing in a loop, the target
//! leads, no acknowledged write is lost, and the longest pause the client sees is
//! measured and bounded; the refusals (a follower asked, a target that is no voter)
//! name why.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{Cluster, Shape, Writer};
use synod::api::Error;
use synod::paxos::{GroupId, NodeId};

const GROUP: GroupId = GroupId(0);

// Goal: a transfer hands leadership to the named node while a client writes, with a
// pause well below what an election after a failure costs, and nothing acknowledged
// lost. Method: one writer thread proposes in a loop (following `NotLeader` hints)
// and records when each write was acknowledged; the leader is asked to hand over to
// another node; the longest gap between two acknowledgements around the transfer is
// the pause a client saw.
#[test]
fn transfer_under_load_moves_the_leader_with_a_short_pause() {
    let cluster = Cluster::new(
        "leadership",
        Shape {
            nodes: 3,
            shards: 1,
            groups: 1,
        },
    );
    let election_timeout = Duration::from_millis(300); // `test_config`
    let leader = cluster.wait_leader(GROUP, Duration::from_secs(10));
    let handles = cluster.handles();
    let block_on = futures_lite::future::block_on;

    // Refusals first: a follower asked, a target that is no voter.
    let follower = *handles
        .keys()
        .find(|id| **id != leader)
        .expect("a follower");
    match block_on(handles[&follower].transfer_leadership(GROUP, leader)) {
        Err(Error::NotLeader { hint }) => assert_eq!(hint, Some(leader)),
        other => panic!("a follower asked: {other:?}"),
    }
    match block_on(handles[&leader].transfer_leadership(GROUP, NodeId(9))) {
        Err(Error::Rejected { reason }) => assert!(reason.contains("not a voter"), "{reason}"),
        other => panic!("a target that is no voter: {other:?}"),
    }

    let writer = Writer::start(handles.clone(), GROUP);
    std::thread::sleep(Duration::from_millis(500));
    let target = *handles
        .keys()
        .find(|id| **id != leader && **id != follower)
        .expect("a third node");
    let asked = Instant::now();
    block_on(handles[&leader].transfer_leadership(GROUP, target)).expect("the transfer");
    let done = asked.elapsed();
    assert_eq!(cluster.wait_leader(GROUP, Duration::from_secs(5)), target);
    std::thread::sleep(Duration::from_millis(500));
    let acknowledged = writer.stop();

    let before = acknowledged.iter().filter(|(at, _)| *at < asked).count();
    let after = acknowledged
        .iter()
        .filter(|(at, _)| *at > asked + done)
        .count();
    assert!(
        before > 10 && after > 10,
        "writes before {before}, after {after}"
    );
    // The pause: the longest gap between acknowledgements from the last one before
    // the request to the first one after it completed.
    let times: Vec<Instant> = acknowledged.iter().map(|(at, _)| *at).collect();
    let first = times
        .iter()
        .rposition(|t| *t < asked)
        .expect("a write before");
    let last = times
        .iter()
        .position(|t| *t > asked + done)
        .expect("a write after");
    let pause = times[first..=last]
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    println!(
        "transfer from node {} to node {} answered in {done:?}; longest pause between \
         acknowledged writes {pause:?} (election timeout {election_timeout:?}); {} writes \
         acknowledged",
        leader.0,
        target.0,
        acknowledged.len()
    );
    assert!(
        pause < 2 * election_timeout,
        "pause {pause:?} not below two election timeouts"
    );

    // Nothing acknowledged is lost: every replica applied every acknowledged value.
    assert!(cluster.wait_converged(Duration::from_secs(10)), "converged");
    for (id, applied) in &cluster.applied {
        let applied = applied.lock().expect("applied");
        let values: std::collections::BTreeSet<&Bytes> =
            applied[&GROUP].iter().map(|(_, v)| v).collect();
        for (_, value) in &acknowledged {
            assert!(values.contains(value), "node {} lacks {value:?}", id.0);
        }
    }
}
