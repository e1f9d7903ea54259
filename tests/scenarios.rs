//! Scenario tests of the protocol core: exact interleavings staged message by message
//! with the scripted harness in `common/harness.rs`.

mod common;

use common::harness::{is_accept_at, values, Harness, GROUP};
use synod::paxos::{
    Ballot, Body, Entry, Input, Instance, InstanceRange, Membership, Message, MessageBody, Nanos,
    NodeId, Output, PromisedEntry, ProposalId, ProposeError, Record, Role,
};

// Goal: the "ghost replay" of reference 003 cannot happen: a value that a later leader
// could not see when it started serving never surfaces afterwards.
// Method: A leads and gets v accepted only on itself; B leads with {B, C}, gets its
// StartWorking chosen below v's instance and serves; A comes back and leads with
// {A, C}, re-proposing v. Every replica must log v as skipped, never apply it.
#[test]
fn ghost_replay_prevented() {
    let mut h = Harness::new(3, 8);
    // Round 1: A (node 1) leads; StartWorking at 1, x at 2 chosen everywhere.
    h.elect(1, &[1, 2, 3]);
    h.propose(1, "x");
    h.deliver_among(&[1, 2, 3]);
    h.tick(150, &[1]); // a heartbeat carries the chosen watermark
    h.deliver_among(&[1, 2, 3]);
    assert_eq!(h.visible_values(2), vec!["x"]);
    // v1 at 3 and v2 at 4 reach only A itself.
    h.propose(1, "v1");
    h.propose(1, "v2");
    h.step(1, Input::Flush);
    h.drop_where(&|m| m.from == NodeId(1) && m.to != NodeId(1));
    h.deliver_while(&|m| m.to == NodeId(1) && m.from == NodeId(1));
    h.crash(1);

    // Round 2: B (node 2) leads with C; its StartWorking lands at 3, below v2 (4).
    h.elect(2, &[2, 3]);
    let sw_b = h.applied_at(2, 3).expect("instance 3 applied on B").clone();
    assert_eq!(sw_b.entry.body, Body::StartWorking);
    // B serves: a client could now read the log without v1/v2. Then y at 4 reaches
    // only B; z at 5 reaches B and C (accepted by a majority, not yet known chosen).
    h.propose(2, "y");
    h.step(2, Input::Flush);
    h.deliver_while(&|m| is_accept_at(m, 4) && m.to == NodeId(2));
    h.drop_where(&|m| is_accept_at(m, 4));
    h.propose(2, "z");
    h.step(2, Input::Flush);
    h.deliver_while(&|m| is_accept_at(m, 5));
    h.crash(2);

    // Round 3: A restarts from its log and leads with C.
    h.restart(1, false);
    h.elect(1, &[1, 3]);
    h.deliver_among(&[1, 3]);
    h.tick(150, &[1]);
    h.deliver_among(&[1, 3]);
    for node in [1, 3] {
        let at4 = h.applied_at(node, 4).expect("instance 4 applied");
        assert_eq!(
            values(&at4.entry),
            vec!["v2"],
            "node {node}: v2 re-proposed at 4"
        );
        assert!(at4.skip, "node {node}: v2 must be skipped (ghost)");
        let visible = h.visible_values(node);
        assert!(
            !visible.contains(&"v2".to_string()),
            "node {node} shows ghost: {visible:?}"
        );
        assert!(
            visible.contains(&"z".to_string()),
            "z was accepted by a majority: {visible:?}"
        );
    }
    // B comes back and learns the same log.
    h.restart(2, false);
    h.tick(10, &[1]);
    h.deliver_among(&[1, 2, 3]);
    h.tick(10, &[1, 2, 3]);
    h.deliver_among(&[1, 2, 3]);
    assert_eq!(h.visible_values(2), h.visible_values(1));
}

// Goal: a leader change with instances in flight loses no chosen value and re-proposes
// what a quorum accepted.
// Method: A assigns 5 instances; only B accepts some of them; A crashes; B leads with C
// and must carry the values B accepted into the new log, with holes as no-ops.
#[test]
fn leader_change_with_instances_in_flight() {
    let mut h = Harness::new(3, 16);
    h.elect(1, &[1, 2, 3]);
    for i in 0..5 {
        h.propose(1, &format!("a{i}"));
        h.step(1, Input::Flush); // one Accept message per instance
    }
    // Instances 2..=6 in flight. B accepts 2, 3 and 5; C accepts nothing; A accepts all.
    h.deliver_while(&|m| m.to == NodeId(1) && m.from == NodeId(1));
    for instance in [2, 3, 5] {
        h.deliver_while(&|m| m.to == NodeId(2) && is_accept_at(m, instance));
    }
    let completed_before = h.replica(1).failed.len();
    h.crash(1);
    h.elect(2, &[2, 3]);
    h.deliver_among(&[2, 3]);
    let visible = h.visible_values(2);
    assert_eq!(
        visible,
        vec!["a0", "a1", "a3"],
        "B's accepted values carried over"
    );
    // Instance 4 was a hole on the new quorum: filled with a no-op.
    let at4 = h.applied_at(2, 4).expect("instance 4 applied");
    assert_eq!(at4.entry.body, Body::Noop);
    h.tick(150, &[2]); // a heartbeat carries the chosen watermark to C
    h.deliver_among(&[2, 3]);
    assert_eq!(h.visible_values(3), visible);
    // A's proposals were never acknowledged as successful before the crash.
    assert_eq!(h.replica(1).failed.len(), completed_before);
}

// Goal: a replica that lost its disk does not vote until it has re-learned.
// Method: C loses its disk and restarts; with A down, B and C must not elect anyone
// nor choose anything (C may have acknowledged values only A and C hold); once A is
// back and C has heard from both peers and caught up, C votes again.
#[test]
fn lost_disk_replica_does_not_vote_until_relearned() {
    let mut h = Harness::new(3, 8);
    h.elect(1, &[1, 2, 3]);
    // q chosen by {A, C} only: B never sees it.
    h.propose(1, "q");
    h.step(1, Input::Flush);
    h.drop_where(&|m| m.to == NodeId(2));
    h.deliver_among(&[1, 3]);
    assert!(h.visible_values(1).contains(&"q".to_string()));
    h.crash(1);
    h.crash(3);
    h.restart(3, true);
    assert!(!h.replica(3).group.is_voting());
    // B campaigns with C's help only: C must not promise, so B cannot lead and q,
    // chosen on {A, C}, cannot be overwritten.
    h.tick(3_000, &[2]);
    h.deliver_among(&[2, 3]);
    h.tick(3_000, &[2, 3]);
    h.deliver_among(&[2, 3]);
    assert_ne!(
        h.replica(2).group.role(),
        Role::Leader,
        "B led without a real quorum"
    );
    assert!(
        !h.replica(3).group.is_voting(),
        "C voted after hearing from B alone"
    );
    // A returns: C hears from both, re-learns through what they accepted, then votes.
    h.restart(1, false);
    for _ in 0..100 {
        h.tick(100, &[1, 2, 3]);
        h.deliver_among(&[1, 2, 3]);
    }
    assert!(h.replica(3).group.is_voting(), "C never rejoined");
    let leader = (1..=3)
        .find(|n| h.replica(*n).group.role() == Role::Leader)
        .expect("a leader after healing");
    h.propose(leader, "r");
    h.deliver_among(&[1, 2, 3]);
    h.tick(150, &[leader]);
    h.deliver_among(&[1, 2, 3]);
    for node in 1..=3 {
        let visible = h.visible_values(node);
        assert!(
            visible.contains(&"q".to_string()),
            "node {node} lost q: {visible:?}"
        );
        assert!(
            visible.contains(&"r".to_string()),
            "node {node} missing r: {visible:?}"
        );
    }
}

// Goal: duplicated and reordered acks neither choose early nor break the window.
// Method: deliver every Accepted message twice and in reverse order; each instance
// must be chosen exactly once, in order, with a quorum.
#[test]
fn duplicated_and_reordered_acks() {
    let mut h = Harness::new(3, 16);
    h.elect(1, &[1, 2, 3]);
    for i in 0..10 {
        h.propose(1, &format!("d{i}"));
    }
    h.step(1, Input::Flush);
    // Followers accept; their acks pile up in the pool.
    h.deliver_while(&|m| matches!(m.body, MessageBody::Accept { .. }));
    let acks: Vec<_> = h
        .pool
        .iter()
        .filter(|m| matches!(m.body, MessageBody::Accepted { .. }))
        .cloned()
        .collect();
    h.drop_where(&|m| matches!(m.body, MessageBody::Accepted { .. }));
    // Only B's acks (plus A's own), reversed and duplicated.
    let mut replay: Vec<_> = acks.into_iter().filter(|m| m.from != NodeId(3)).collect();
    replay.reverse();
    let doubled: Vec<_> = replay.iter().chain(replay.iter()).cloned().collect();
    for message in doubled {
        h.step(1, Input::Message(message));
    }
    let applied = &h.replica(1).applied;
    let instances: Vec<u64> = applied.iter().map(|a| a.instance.0).collect();
    assert_eq!(
        instances,
        (1..=11).collect::<Vec<_>>(),
        "each instance applied once, in order"
    );
    assert_eq!(
        h.visible_values(1),
        (0..10).map(|i| format!("d{i}")).collect::<Vec<_>>()
    );
}

// Goal: a full window blocks new instances and bounds the queue instead of growing.
// Method: with W = 4 and no acks delivered, propose far more than the window and the
// queue allow; at most W instances are in flight, the queue stops at its limit with
// Overloaded, and progress resumes once acks arrive.
#[test]
fn full_window_blocks_new_proposals() {
    let mut h = Harness::new(3, 4);
    for node in 1..=3u32 {
        let replica = h.replicas.get_mut(&NodeId(node)).expect("node");
        replica.config.proposal_queue_count_max = 32;
    }
    // Rebuild with the smaller queue.
    for node in 1..=3 {
        h.restart(node, false);
    }
    h.elect(1, &[1, 2, 3]);
    for i in 0..100 {
        h.propose(1, &format!("w{i}"));
        h.step(1, Input::Flush);
        h.drop_where(&|m| matches!(m.body, MessageBody::Accept { .. }));
    }
    let group = &h.replica(1).group;
    let inflight = group.inflight_count();
    assert_eq!(inflight, 4, "window must be full, not exceeded");
    assert_eq!(group.queued_count(), 32);
    let overloaded = h
        .replica(1)
        .failed
        .iter()
        .filter(|c| matches!(c.error, ProposeError::Overloaded { .. }))
        .count();
    assert_eq!(overloaded, 100 - 32 - inflight);
    // Retransmission after the timeout, then delivery: everything queued gets chosen.
    for _ in 0..20 {
        h.tick(300, &[1]);
        h.deliver_among(&[1, 2, 3]);
    }
    assert_eq!(h.replica(1).group.queued_count(), 0);
    assert_eq!(h.visible_values(1).len(), 32 + inflight);
}

// Goal: a membership change is a log entry that takes effect W instances after it is
// chosen, one voter at a time, and the new voter then counts toward quorums.
// Method: add node 4 to {1,2,3}; check a change of more than one voter is rejected,
// that node 4 learns the whole log, and that once the change is in effect the leader
// cannot choose with {1, 4} alone but can once node 2 returns (3 of 4).
#[test]
fn membership_change_adds_one_voter() {
    let window = 4;
    let mut h = Harness::new(3, window);
    h.add_node(4, &[1, 2, 3], window);
    h.elect(1, &[1, 2, 3, 4]);
    let all = [1, 2, 3, 4];
    h.step(
        1,
        Input::ChangeMembership {
            id: ProposalId(900),
            membership: Membership::new(vec![NodeId(1), NodeId(4)]),
        },
    );
    assert!(matches!(
        h.replica(1).failed.last().map(|c| &c.error),
        Some(ProposeError::Rejected { .. })
    ));
    h.step(
        1,
        Input::ChangeMembership {
            id: ProposalId(901),
            membership: Membership::new(vec![NodeId(1), NodeId(2), NodeId(3), NodeId(4)]),
        },
    );
    h.deliver_among(&all);
    let change_at = h
        .replica(1)
        .applied
        .iter()
        .find(|a| matches!(a.entry.body, Body::Config(_)))
        .expect("config entry chosen")
        .instance;
    // Fill the window so the change takes effect, then keep proposing.
    for i in 0..12 {
        h.propose(1, &format!("m{i}"));
        h.deliver_among(&all);
    }
    h.tick(150, &[1]);
    h.deliver_among(&all);
    h.tick(150, &[1, 2, 3, 4]);
    h.deliver_among(&all);
    let effective = change_at.0 + window;
    assert_eq!(
        h.visible_values(4),
        h.visible_values(1),
        "node 4 learned the log"
    );
    let latest = h.replica(1).group.latest_membership().clone();
    assert!(latest.contains(NodeId(4)));
    // With 2 and 3 down, {1, 4} is not a quorum of four voters: nothing is chosen.
    h.crash(2);
    h.crash(3);
    let before = h.replica(1).group.chosen_through();
    assert!(before.0 >= effective, "the new membership is in effect");
    h.propose(1, "needs-three");
    h.deliver_among(&[1, 4]);
    assert_eq!(
        h.replica(1).group.chosen_through(),
        before,
        "chose with 2 of 4 voters"
    );
    h.restart(2, false);
    for _ in 0..5 {
        h.tick(300, &[1, 2, 4]);
        h.deliver_among(&[1, 2, 4]);
    }
    assert!(h.visible_values(1).contains(&"needs-three".to_string()));
}

// Goal: with an even number of voters (2, 4, 6) a quorum is a strict majority,
// floor(n/2) + 1, in Phase 1, Phase 2 and the lease: half the voters choose nothing,
// elect nobody and hold no lease.
// Method: n voters; node 1 leads among all; with only half of them up (node 1
// included) a proposal is not chosen and node 1's lease lapses; one more voter back and
// it is chosen. Then node 1 goes down and node 2 campaigns among half of the voters
// (itself included): not elected; with one more, elected.
#[test]
fn even_voter_counts_need_a_strict_majority() {
    for n in [2u32, 4, 6] {
        let mut h = Harness::new(n, 4);
        let all: Vec<u32> = (1..=n).collect();
        h.elect(1, &all);
        h.propose(1, "all");
        h.deliver_among(&all);
        assert!(h.visible_values(1).contains(&"all".to_string()), "n = {n}");
        let half: Vec<u32> = (1..=n / 2).collect();
        for node in n / 2 + 1..=n {
            h.crash(node);
        }
        let before = h.replica(1).group.chosen_through();
        h.propose(1, "half");
        h.deliver_among(&half);
        h.tick(1_000, &half);
        h.deliver_among(&half);
        assert_eq!(
            h.replica(1).group.chosen_through(),
            before,
            "n = {n}: chose with {} of {n} voters",
            n / 2
        );
        assert!(
            h.replica(1).group.read_index(h.now).is_none(),
            "n = {n}: a lease held by {} of {n} voters",
            n / 2
        );
        let more: Vec<u32> = (1..=n / 2 + 1).collect();
        h.restart(n / 2 + 1, false);
        if h.replica(1).group.role() != Role::Leader {
            // Check-quorum: node 1, hearing from no quorum for an election timeout,
            // stepped down (`paxos::leadership`); it leads again with the majority,
            // and its Phase 1 finds "half" accepted.
            h.elect(1, &more);
        }
        for _ in 0..3 {
            h.tick(300, &more);
            h.deliver_among(&more);
        }
        assert!(
            h.visible_values(1).contains(&"half".to_string()),
            "n = {n}: not chosen with a majority"
        );
        // Phase 1: node 2 with half of the voters (node 1 down) is not elected.
        h.crash(1);
        let campaigners: Vec<u32> = (2..=n / 2 + 1).collect();
        for _ in 0..5 {
            h.tick(3_000, &[2]);
            h.deliver_among(&campaigners);
        }
        assert_ne!(
            h.replica(2).group.role(),
            Role::Leader,
            "n = {n}: elected by {} of {n} voters",
            campaigners.len()
        );
        if n / 2 + 2 <= n {
            h.restart(n / 2 + 2, false);
            let majority: Vec<u32> = (2..=n / 2 + 2).collect();
            h.elect(2, &majority);
        } else {
            h.restart(1, false);
            h.elect(2, &[1, 2]);
        }
    }
}

// Goal: a replica that restarted (here: after losing its disk) answers no prepare during
// the lease it may have granted before the crash (seed 1000000754 found a hole there,
// when a rejoin raised the promise to a ballot heard without a prepare); a rejoiner
// votes only after its own Phase 1, which that lease holds off.
// Method: A leads; C loses its disk and hears from A and B while B has self-promised
// ballot 2.2; B's prepare at 2.2 reaches C within C's restart lease: C must not
// promise, nor vote, and B must not be elected with C's help.
#[test]
fn restarted_replica_honours_its_lease_even_at_a_raised_promise() {
    let mut h = Harness::new(3, 8);
    h.elect(1, &[1, 2, 3]);
    h.propose(1, "a");
    h.deliver_among(&[1, 2, 3]);
    h.tick(150, &[1]);
    h.deliver_among(&[1, 2, 3]);
    // B campaigns: its prepares are held (dropped) except the one to itself.
    h.pre_vote(2, &[1, 2, 3]);
    h.deliver_while(&|m| m.to == NodeId(2) && m.from == NodeId(2));
    let b_ballot = h.replica(2).group.promised();
    assert_eq!(b_ballot.node, NodeId(2));
    let prepare_to_c: Vec<_> = h
        .pool
        .iter()
        .filter(|m| m.to == NodeId(3) && matches!(m.body, MessageBody::Prepare { .. }))
        .cloned()
        .collect();
    h.drop_where(&|m| m.from == NodeId(2));
    // C loses its disk and hears from A and B within a few milliseconds.
    h.crash(3);
    h.restart(3, true);
    h.tick(1, &[3]);
    h.deliver_among(&[1, 2, 3]);
    h.drop_where(&|m| matches!(m.body, MessageBody::Prepare { .. }));
    assert!(
        h.replica(3).group.highest_round_seen() >= b_ballot.round,
        "C heard of B's ballot"
    );
    assert!(
        !h.replica(3).group.is_voting() && h.replica(3).group.role() == Role::Follower,
        "C votes only after its own Phase 1, not inside its restart lease"
    );
    // B's prepare reaches C inside C's restart lease: no promise may come back.
    for prepare in prepare_to_c {
        h.step(3, Input::Message(prepare));
    }
    let promised_to_b = h.pool.iter().any(|m| {
        m.from == NodeId(3) && m.to == NodeId(2) && matches!(m.body, MessageBody::Promise { .. })
    });
    assert!(!promised_to_b, "C promised inside its restart lease");
}

// Goal: a replica never hands a running lease grant to another leader: a stale
// leader's heartbeat (at a ballot at or above the replica's promise, below the
// holder's) neither takes the grant nor gets the ack a lease is counted from (seeds
// 8826947352975 and 8826947353025 of the lease checker against the grants).
// Method: 5 nodes; A leads, then B is elected by B, C, D while A and E hear nothing;
// E follows B's heartbeat (grant to B); A, still believing it leads, heartbeats; E
// gets it inside its grant to B.
#[test]
fn stale_leader_does_not_take_a_running_grant() {
    let mut h = Harness::new(5, 8);
    // A stays a (stale) leader through B's election: its check-quorum waits longer.
    h.configure(&|c| {
        if c.node == NodeId(1) {
            c.election_timeout_ns = 4_000_000_000;
        }
    });
    h.elect(1, &[1, 2, 3, 4, 5]);
    h.tick(150, &[1]);
    h.deliver_among(&[1, 2, 3, 4, 5]);
    h.elect(2, &[2, 3, 4]);
    h.drop_where(&|m| m.to == NodeId(1) || m.to == NodeId(5));
    assert!(h.ballot_of(2) > h.ballot_of(1), "B leads above A");
    h.tick(150, &[2]);
    h.deliver_while(&|m| {
        m.from == NodeId(2) && m.to == NodeId(5) && matches!(m.body, MessageBody::Heartbeat { .. })
    });
    assert_eq!(h.replica(5).group.lease_grant().0, Some(NodeId(2)));
    let granted_until = h.replica(5).group.lease_grant().1;
    h.tick(100, &[1]);
    let delivered = h.deliver_while(&|m| {
        m.from == NodeId(1) && m.to == NodeId(5) && matches!(m.body, MessageBody::Heartbeat { .. })
    });
    assert!(delivered > 0, "A, still leading, heartbeats");
    assert_eq!(
        h.replica(5).group.lease_grant(),
        (Some(NodeId(2)), granted_until),
        "E's grant to B stays as it was"
    );
    let acked_a = h.pool.iter().any(|m| {
        m.from == NodeId(5)
            && m.to == NodeId(1)
            && matches!(m.body, MessageBody::HeartbeatAck { .. })
    });
    assert!(!acked_a, "E acked A's heartbeat inside its grant to B");
}

// ---------------------------------------------------------------------------------
// Forged and corrupt messages: ballots and instances out of bounds
// ---------------------------------------------------------------------------------

const ROUND_MAX: u64 = Ballot::ROUND_MAX;
const INSTANCE_MAX: u64 = Instance::MAX.0;

fn round(round: u64, node: u32) -> Ballot {
    Ballot {
        round,
        node: NodeId(node),
    }
}

/// Every message kind with extreme field values, each out of bounds somewhere, as a
/// peer (node `from`) could forge them; the first is the attack that once killed a
/// cluster: a `Prepare` at round `u64::MAX`.
fn forged_bodies(from: u32) -> Vec<MessageBody> {
    let noop = |origin| Entry {
        origin,
        body: Body::Noop,
    };
    vec![
        MessageBody::Prepare {
            ballot: round(u64::MAX, from),
            from: Instance(1),
        },
        MessageBody::Prepare {
            ballot: round(ROUND_MAX + 1, from),
            from: Instance(1),
        },
        MessageBody::Prepare {
            ballot: round(0, from),
            from: Instance(1),
        },
        MessageBody::Prepare {
            ballot: round(2, from),
            from: Instance(INSTANCE_MAX + 1),
        },
        MessageBody::Promise {
            ballot: round(u64::MAX, 1),
            chosen_through: Instance(u64::MAX),
            entries: Vec::new(),
            truncated: false,
        },
        MessageBody::Promise {
            ballot: round(1, 1),
            chosen_through: Instance(1),
            entries: vec![PromisedEntry {
                instance: Instance(u64::MAX),
                ballot: round(u64::MAX, from),
                chosen: true,
                entry: noop(round(u64::MAX, from)),
            }],
            truncated: false,
        },
        MessageBody::Reject {
            promised: round(u64::MAX, from),
        },
        MessageBody::Accept {
            ballot: round(u64::MAX, from),
            chosen_through: Instance(u64::MAX),
            first: Instance(1),
            entries: vec![noop(round(1, from))],
        },
        MessageBody::Accept {
            ballot: round(1, from),
            chosen_through: Instance(0),
            first: Instance(u64::MAX),
            entries: vec![noop(round(1, from)); 2],
        },
        MessageBody::Accept {
            ballot: round(ROUND_MAX, from),
            chosen_through: Instance(0),
            first: Instance(2),
            entries: vec![noop(round(ROUND_MAX + 1, from))],
        },
        MessageBody::Accepted {
            ballot: round(u64::MAX, 1),
            ranges: vec![InstanceRange {
                first: Instance(1),
                last: Instance(u64::MAX),
            }],
        },
        MessageBody::Accepted {
            ballot: round(1, 1),
            ranges: vec![InstanceRange {
                first: Instance(9),
                last: Instance(2),
            }],
        },
        MessageBody::Heartbeat {
            ballot: round(u64::MAX, from),
            chosen_through: Instance(u64::MAX),
            sent_at: Nanos(u64::MAX),
            checksum_through: Instance(u64::MAX),
            checksum: 0,
        },
        MessageBody::Heartbeat {
            ballot: round(ROUND_MAX, from),
            chosen_through: Instance(INSTANCE_MAX + 1),
            sent_at: Nanos(0),
            checksum_through: Instance(0),
            checksum: 0,
        },
        MessageBody::HeartbeatAck {
            ballot: round(u64::MAX, 1),
            sent_at: Nanos(u64::MAX),
        },
        MessageBody::CatchUpRequest {
            from: Instance(u64::MAX),
            credit: u32::MAX,
            retired: false,
        },
        MessageBody::CatchUpRequest {
            from: Instance(0),
            credit: 1,
            retired: false,
        },
        MessageBody::CatchUpChunk {
            chosen_through: Instance(u64::MAX),
            promised: round(u64::MAX, from),
            accepted_max: Instance(u64::MAX),
            first: Instance(1),
            entries: vec![noop(round(1, from))],
            from_voter: true,
            membership_changed: false,
        },
        MessageBody::CatchUpChunk {
            chosen_through: Instance(10),
            promised: round(1, from),
            accepted_max: Instance(10),
            first: Instance(INSTANCE_MAX),
            entries: vec![noop(round(1, from)); 3],
            from_voter: true,
            membership_changed: false,
        },
    ]
}

/// What a replica shows of its state, to compare before and after a refused message.
#[derive(Debug, PartialEq)]
struct Observed {
    role: Role,
    ballot: Option<Ballot>,
    promised: Ballot,
    highest_round_seen: u64,
    chosen_through: Instance,
    applied_through: Instance,
    checksum: u32,
    leader_hint: Option<NodeId>,
    voting: bool,
    fenced: bool,
    next_deadline: Nanos,
    inflight: usize,
    queued: usize,
    lease_until: Option<Nanos>,
}

fn observe(h: &Harness, node: u32) -> Observed {
    let g = &h.replica(node).group;
    Observed {
        role: g.role(),
        ballot: g.ballot(),
        promised: g.promised(),
        highest_round_seen: g.highest_round_seen(),
        chosen_through: g.chosen_through(),
        applied_through: g.applied_through(),
        checksum: g.checksum(),
        leader_hint: g.leader_hint(),
        voting: g.is_voting(),
        fenced: g.is_fenced(),
        next_deadline: g.next_deadline(),
        inflight: g.inflight_count(),
        queued: g.queued_count(),
        lease_until: g.lease_until(),
    }
}

/// Steps `node` with `message` directly (not through the pool) and returns the output.
fn step_direct(h: &mut Harness, node: u32, message: Message) -> Output {
    let now = h.now;
    let replica = h.replicas.get_mut(&NodeId(node)).expect("node exists");
    let mut out = Output::default();
    replica.group.step(now, Input::Message(message), &mut out);
    replica.group.invariants();
    out
}

// Goal: a forged or corrupt message of any kind, with ballots and instances out of
// bounds, changes nothing on a leader or a follower: no panic, no state change (the
// highest round seen included), nothing persisted or sent, one count under its reason;
// the cluster then keeps choosing values, and a restart finds nothing forged in the log.
// Method: a three-node group with a leader and a chosen value; every forged body is
// stepped into the leader and a follower, each from a peer; the state each shows is
// compared before and after; then values are proposed, chosen and applied everywhere,
// and every replica restarts from its durable records and elects again.
#[test]
fn forged_out_of_bounds_messages_change_nothing() {
    let mut h = Harness::new(3, 8);
    h.elect(1, &[1, 2, 3]);
    h.propose(1, "before");
    h.deliver_among(&[1, 2, 3]);
    h.tick(150, &[1]);
    h.deliver_among(&[1, 2, 3]);
    assert_eq!(h.visible_values(2), vec!["before"]);
    let mut refused = 0;
    for (target, from) in [(1, 2), (2, 3), (3, 1)] {
        for body in forged_bodies(from) {
            let reason = body.out_of_bounds_reason();
            assert!(body.check_bounds().is_err(), "{body:?} is in bounds");
            let before = observe(&h, target);
            let count = |h: &Harness| {
                let ignored = &h.replica(target).group.counters().ignored;
                ignored.get(reason).copied().unwrap_or(0)
            };
            let counted = count(&h);
            let message = Message {
                group: GROUP,
                from: NodeId(from),
                to: NodeId(target),
                body,
            };
            let out = step_direct(&mut h, target, message.clone());
            assert!(
                out.persist.is_empty()
                    && out.send.is_empty()
                    && out.send_after_persist.is_empty()
                    && out.apply.is_empty()
                    && out.complete.is_empty(),
                "{message:?} produced {out:?}"
            );
            assert_eq!(out.refused.len(), 1, "{message:?}");
            assert_eq!(out.refused[0].reason, reason);
            assert_eq!(out.refused[0].from, NodeId(from));
            assert_eq!(observe(&h, target), before, "{message:?} changed the state");
            assert_eq!(count(&h), counted + 1, "{message:?} not counted");
            refused += 1;
        }
    }
    assert_eq!(refused, 3 * forged_bodies(1).len());
    // Progress continues.
    h.propose(1, "after");
    h.deliver_among(&[1, 2, 3]);
    h.tick(150, &[1]);
    h.deliver_among(&[1, 2, 3]);
    for node in [1, 2, 3] {
        assert_eq!(
            h.visible_values(node),
            vec!["before", "after"],
            "node {node}"
        );
    }
    // Nothing forged was persisted: every durable ballot is one a real leader held.
    for node in [1, 2, 3] {
        for record in &h.replica(node).durable {
            if let Record::Promise { ballot, .. } | Record::Accept { ballot, .. } = record {
                assert!(ballot.round < 100, "node {node} persisted {record:?}");
            }
        }
    }
    for node in [1, 2, 3] {
        h.crash(node);
        h.restart(node, false);
    }
    h.elect(2, &[1, 2, 3]);
    h.propose(2, "restarted");
    h.deliver_among(&[1, 2, 3]);
    assert!(h.visible_values(2).contains(&"restarted".to_string()));
}

// Goal: a replica restored with a promise above ROUND_MAX (a log written before the
// bound existed, after the forged prepare) neither panics nor campaigns, and its
// rejections, which carry that round, cannot spread it: the other replicas refuse
// them and keep leading and choosing. An accepted slot above Instance::MAX is dropped
// at restore (counted).
// Method: node 3's durable log gets a promise at round u64::MAX and an accept at
// instance u64::MAX; it restarts and its
// election timer fires many times; node 1 campaigns and leads with node 2 while node
// 3 rejects; values are chosen by nodes 1 and 2.
#[test]
fn restored_promise_above_round_max_does_not_panic() {
    let mut h = Harness::new(3, 8);
    h.elect(1, &[1, 2, 3]);
    h.propose(1, "a");
    h.deliver_among(&[1, 2, 3]);
    h.crash(3);
    h.replicas
        .get_mut(&NodeId(3))
        .expect("node 3")
        .durable
        .push(Record::Promise {
            group: GROUP,
            ballot: round(u64::MAX, 2),
        });
    h.replicas
        .get_mut(&NodeId(3))
        .expect("node 3")
        .durable
        .push(Record::Accept {
            group: GROUP,
            instance: Instance(u64::MAX),
            ballot: round(1, 1),
            entry: Entry {
                origin: round(1, 1),
                body: Body::Noop,
            },
        });
    h.restart(3, false);
    assert_eq!(h.replica(3).group.promised().round, u64::MAX);
    let ignored = &h.replica(3).group.counters().ignored;
    assert_eq!(
        ignored.get("restored_beyond_instance_max"),
        Some(&1),
        "{ignored:?}"
    );
    for _ in 0..5 {
        h.tick(3_000, &[3]);
    }
    let ignored = &h.replica(3).group.counters().ignored;
    assert!(
        ignored.get("campaign_round_max").copied().unwrap_or(0) >= 4,
        "{ignored:?}"
    );
    assert_eq!(h.replica(3).group.role(), Role::Follower);
    assert!(
        h.pool.iter().all(|m| m.from != NodeId(3)),
        "node 3 campaigned"
    );
    // Node 1 campaigns again: node 3 rejects at u64::MAX; node 1 refuses that and is
    // elected by node 2.
    h.crash(1);
    h.restart(1, false);
    h.elect(1, &[1, 2, 3]);
    let refused = &h.replica(1).group.counters().ignored;
    assert!(
        refused.get("reject_out_of_bounds").copied().unwrap_or(0) >= 1,
        "{refused:?}"
    );
    h.propose(1, "b");
    h.deliver_among(&[1, 2, 3]);
    h.tick(150, &[1]);
    h.deliver_among(&[1, 2, 3]);
    assert_eq!(h.visible_values(2), vec!["a", "b"]);
    assert!(h.replica(1).group.promised().round <= ROUND_MAX);
}

// Goal: no replica campaigns above ROUND_MAX: a campaign may reach ROUND_MAX exactly,
// and a replica that has seen ROUND_MAX counts `campaign_round_max` instead of
// overflowing or going past it.
// Method: node 1 restarts with a promise at ROUND_MAX - 1 and leads at ROUND_MAX;
// node 1 crashes; node 2, which promised ROUND_MAX, reaches its election timeout.
#[test]
fn campaigns_stop_at_round_max() {
    let mut h = Harness::new(3, 8);
    h.crash(1);
    h.replicas
        .get_mut(&NodeId(1))
        .expect("node 1")
        .durable
        .push(Record::Promise {
            group: GROUP,
            ballot: round(ROUND_MAX - 1, 3),
        });
    h.restart(1, false);
    h.elect(1, &[1, 2, 3]);
    assert_eq!(h.ballot_of(1), round(ROUND_MAX, 1));
    h.propose(1, "last");
    h.deliver_among(&[1, 2, 3]);
    h.crash(1);
    for _ in 0..5 {
        h.tick(3_000, &[2]);
    }
    let group = &h.replica(2).group;
    assert_eq!(group.role(), Role::Follower);
    assert_eq!(group.promised(), round(ROUND_MAX, 1));
    let ignored = &group.counters().ignored;
    assert!(
        ignored.get("campaign_round_max").copied().unwrap_or(0) >= 4,
        "{ignored:?}"
    );
}

// Goal: through the shard, a flood of forged messages of every kind adds no record, no
// message and no state, is counted per reason in the groups' status counters, and is
// reported in a bounded number of log lines (the first of each reason, then one
// summary per interval), while the shard keeps working.
// Method: a one-node shard whose group leads and has chosen a value; 10,000 forged
// messages (every forged body, repeatedly) are stepped in over 30 s of shard time,
// flushing after each; the LSN, held messages, sends and group state are compared, the
// counters and warning lines counted; then a proposal is still chosen and applied.
#[expect(
    clippy::too_many_lines,
    reason = "one scenario on one shard, step by step: the comparisons need the state of every step before"
)]
#[test]
fn shard_refuses_and_reports_forged_messages() {
    use bytes::Bytes;
    use synod::paxos::{GroupConfig, Restore};
    use synod::runtime::refusals::REFUSAL_SUMMARY_INTERVAL_NS;
    use synod::runtime::{Effects, Shard, ShardConfig, ShardInput};
    use synod::wal::{GroupCommit, GroupCommitConfig, Resume};

    let node = NodeId(1);
    let config = GroupConfig::new(node, GROUP, Membership::new(vec![node]));
    let commit = GroupCommit::new(
        GroupCommitConfig {
            buffer_size_max: 1 << 20,
            salt: 7,
            writes_in_flight_max: 1,
        },
        Resume {
            offset: 0,
            lsn_through: synod::paxos::Lsn(0),
        },
    );
    let shard_config = ShardConfig {
        node,
        wal_pending_size_max: 8 << 20,
        held_count_max: 10_000,
        reads_pending_count_max: 64,
        log_reads_wal_count_max: synod::runtime::log_reads::LOG_READS_WAL_COUNT_MAX,
        checkpoint: synod::runtime::CheckpointPolicy::OFF,
        transfer: synod::runtime::TransferPolicy::default(),
        truncation: synod::runtime::TruncationPolicy::OFF,
    };
    let mut shard = Shard::new(
        shard_config,
        vec![(config, Restore::default())],
        commit,
        false,
        Nanos(0),
    );
    let mut effects = Effects::default();
    // Runs the shard like an executor whose every write completes at once.
    let run = |shard: &mut Shard, now: Nanos, input: ShardInput, effects: &mut Effects| {
        shard.step(now, input);
        loop {
            shard.flush(now, effects);
            shard.invariants();
            let Some(plan) = effects.write.take() else {
                break;
            };
            shard.step(
                now,
                ShardInput::WriteDone {
                    lsn_through: plan.lsn_through,
                },
            );
        }
    };
    let mut now = Nanos::from_ms(3_000);
    run(&mut shard, now, ShardInput::Tick, &mut effects);
    let propose = |id| ShardInput::Propose {
        group: GROUP,
        id: ProposalId(id),
        value: Bytes::from_static(b"v"),
    };
    run(&mut shard, now, propose(1), &mut effects);
    let group = shard.group(GROUP).expect("the group");
    assert_eq!(group.role(), Role::Leader);
    assert!(
        group.applied_through() >= Instance(2),
        "the value is applied"
    );
    effects.clear();

    let before = (
        shard.lsn_planned(),
        shard.held_count(),
        shard.group(GROUP).map(|g| {
            (
                g.promised(),
                g.highest_round_seen(),
                g.chosen_through(),
                g.role(),
                g.ballot(),
            )
        }),
    );
    let forged = forged_bodies(2);
    let n = 10_000_u64;
    let mut warnings = Vec::new();
    for i in 0..n {
        now = now.plus(3_000_000); // 30 s in all
        let body = forged[(i % forged.len() as u64) as usize].clone();
        let message = Message {
            group: GROUP,
            from: NodeId(2),
            to: node,
            body,
        };
        shard.step(now, ShardInput::Message(message));
        shard.flush(now, &mut effects);
        assert!(
            effects.write.is_none(),
            "forged message {i} planned a write"
        );
        assert!(
            effects.send.iter().all(|(_, m)| m.is_empty()),
            "forged message {i} sent {:?}",
            effects.send
        );
        warnings.append(&mut effects.warnings);
        effects.clear();
    }
    let after = (
        shard.lsn_planned(),
        shard.held_count(),
        shard.group(GROUP).map(|g| {
            (
                g.promised(),
                g.highest_round_seen(),
                g.chosen_through(),
                g.role(),
                g.ballot(),
            )
        }),
    );
    assert_eq!(after, before, "forged messages changed the shard");
    assert_eq!(shard.counters().refused_out_of_bounds, n);
    let ignored = &shard.group(GROUP).expect("the group").counters().ignored;
    let counted: u64 = ignored
        .iter()
        .filter(|(reason, _)| reason.ends_with("_out_of_bounds"))
        .map(|(_, count)| *count)
        .sum();
    assert_eq!(counted, n, "{ignored:?}");
    // The first four forged bodies are prepares.
    let prepares = (0..n).filter(|i| i % (forged.len() as u64) < 4).count() as u64;
    assert_eq!(ignored.get("prepare_out_of_bounds"), Some(&prepares));
    let reasons = forged
        .iter()
        .map(MessageBody::out_of_bounds_reason)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let summaries_max = (30_000_000_000 / REFUSAL_SUMMARY_INTERVAL_NS + 1) as usize;
    assert!(
        warnings.len() <= reasons + summaries_max,
        "{} lines for {n} refusals: {warnings:#?}",
        warnings.len()
    );
    assert!(
        warnings[0].contains("Prepare.ballot.round = 18446744073709551615"),
        "{}",
        warnings[0]
    );
    // The shard still works.
    run(&mut shard, now, propose(2), &mut effects);
    let group = shard.group(GROUP).expect("the group");
    assert!(
        group.applied_through() >= Instance(3),
        "the next value is applied"
    );
}

// ---------------------------------------------------------------------------------
// Every peer message bounded in bytes: catch-up chunks, accept runs, promises
// ---------------------------------------------------------------------------------

/// What one delivered message was: its kind, its entries, its estimated and real size.
#[derive(Clone, Debug)]
struct Sent {
    message: Message,
    entries: usize,
    estimate: usize,
}

/// A value of `size` bytes that starts with its number (readable in `visible_values`).
fn big_value(i: usize, size: usize) -> String {
    let mut value = format!("v{i:05}-");
    value.extend(std::iter::repeat_n('x', size - value.len()));
    value
}

/// Encodes `m` with the real codec and checks the three sizes that matter: the real
/// encoding within the core's estimate, the estimate within the sender's budget, the
/// budget within the transport's frame limit.
fn check_size(h: &Harness, m: &Message) -> Sent {
    let mut frame = Vec::new();
    synod::transport::encode_frame(std::slice::from_ref(m), &mut frame);
    let estimate = m.body.encoded_size();
    let budget = h.replica(m.from.0).config.message_size_max;
    let frame_size_max = synod::transport::DecodeLimits::default().frame_size_max;
    assert!(
        frame.len() <= estimate && estimate <= budget && budget <= frame_size_max,
        "{} from {} encodes into {} bytes, estimate {estimate}, budget {budget}",
        m.body.kind(),
        m.from.0,
        frame.len()
    );
    let entries = match &m.body {
        MessageBody::Accept { entries, .. } | MessageBody::CatchUpChunk { entries, .. } => {
            entries.len()
        }
        MessageBody::Promise { entries, .. } => entries.len(),
        _ => 0,
    };
    Sent {
        message: m.clone(),
        entries,
        estimate,
    }
}

/// As `Harness::deliver_among`, but every message delivered is size-checked
/// (`check_size`) and recorded in `sent`, in delivery order.
fn deliver_checked(h: &mut Harness, among: &[u32], sent: &mut Vec<Sent>) {
    let inside = |m: &Message| among.contains(&m.from.0) && among.contains(&m.to.0);
    loop {
        for node in among {
            if h.replica(*node).up {
                h.step(*node, Input::Flush);
            }
        }
        let mut delivered = 0;
        while let Some(index) = h.pool.iter().position(inside) {
            let message = h.pool.remove(index);
            sent.push(check_size(h, &message));
            let to = message.to.0;
            if h.replica(to).up {
                h.step(to, Input::Message(message));
            }
            delivered += 1;
        }
        if delivered == 0 {
            return;
        }
    }
}

/// Proposes `count` values of `size` bytes at `leader`, a window at a time (the
/// proposal queue holds 64 MiB), delivering among `among` in between.
fn choose_big(h: &mut Harness, leader: u32, among: &[u32], count: usize, size: usize) {
    let mut sent = Vec::new();
    let window = h.replica(leader).config.window_instances_max as usize;
    for start in (0..count).step_by(window) {
        for i in start..count.min(start + window) {
            h.propose(leader, &big_value(i, size));
        }
        deliver_checked(h, among, &mut sent);
        h.tick(10, among);
        deliver_checked(h, among, &mut sent);
    }
    let split = sent
        .iter()
        .filter(|s| matches!(s.message.body, MessageBody::Accept { .. }))
        .any(|s| s.entries < window && s.estimate > h.replica(leader).config.message_size_max / 2);
    assert!(split, "no accept run was split by bytes");
}

// Goal: a follower behind by more than 1,000 instances of 100 KB values (over 100 MB,
// about 25 times what one message may carry) catches up through many chunks, each
// within the byte budget and the frame limit, and ends with the same log.
// Method: C is down while A (leader) and B choose 1,100 values of 100 KB (accept runs
// split by size, checked as they go); C restarts, hears a heartbeat and catches up;
// every message is encoded with the real codec and its size checked; the chunks are
// counted and their sizes compared with the budget.
#[test]
fn lagging_follower_catches_up_in_chunks_bounded_by_bytes() {
    const COUNT: usize = 1_100;
    const SIZE: usize = 100_000;
    let mut h = Harness::new(3, 64);
    h.elect(1, &[1, 2, 3]);
    h.crash(3);
    choose_big(&mut h, 1, &[1, 2], COUNT, SIZE);
    assert_eq!(h.visible_values(1).len(), COUNT);
    // What was sent to C while it was down is lost (as over a closed connection).
    h.drop_where(&|m| m.to == NodeId(3));
    h.restart(3, false);
    let mut sent = Vec::new();
    for _ in 0..20 {
        h.tick(150, &[1, 2, 3]);
        deliver_checked(&mut h, &[1, 2, 3], &mut sent);
        if h.replica(3).group.chosen_through() == h.replica(1).group.chosen_through() {
            break;
        }
    }
    let chunks: Vec<&Sent> = sent
        .iter()
        .filter(|s| {
            s.message.to == NodeId(3) && matches!(s.message.body, MessageBody::CatchUpChunk { .. })
        })
        .collect();
    let budget = h.replica(1).config.message_size_max;
    let per_chunk_max = chunks.iter().map(|s| s.entries).max().unwrap_or(0);
    println!(
        "{} chunks, at most {per_chunk_max} entries and {} bytes (estimate) each, budget {budget}",
        chunks.len(),
        chunks.iter().map(|s| s.estimate).max().unwrap_or(0)
    );
    assert!(
        chunks.len() >= COUNT * SIZE / budget,
        "only {} chunks",
        chunks.len()
    );
    assert!(
        per_chunk_max < h.replica(1).config.catch_up_entries_max,
        "chunks were bounded by count, not bytes"
    );
    let expected = h.visible_values(1);
    assert_eq!(h.visible_values(3), expected, "C's log differs from A's");
    assert_eq!(h.visible_values(2), expected);
    assert_eq!(
        h.replica(3).group.checksum(),
        h.replica(1).group.checksum(),
        "running checksums differ"
    );
}

// Goal: a new leader whose promises carry more accepted bytes than one message allows
// re-proposes every value a quorum accepted, and proposes nothing before it holds every
// part of a quorum's promises.
// Method: A (leader) gets 64 values of 100 KB (6.4 MB, over the 4 MiB budget) accepted
// by B and C, but their acks are lost and A crashes before anything is chosen. B
// campaigns with C: both promises (C's and B's own) come in parts, B asks again from
// where each stopped. Until the last part of a quorum is delivered, B must not send an
// Accept at its ballot; afterwards all 64 values must be chosen on B and C, in order.
#[test]
fn election_with_promises_larger_than_one_message() {
    const COUNT: usize = 64;
    const SIZE: usize = 100_000;
    let mut h = Harness::new(3, 64);
    h.elect(1, &[1, 2, 3]);
    let mut sent = Vec::new();
    for i in 0..COUNT {
        h.propose(1, &big_value(i, SIZE));
    }
    h.step(1, Input::Flush);
    // Accepts reach B and C; every ack is lost; A crashes with nothing chosen.
    let accepts =
        h.deliver_while(&|m| matches!(m.body, MessageBody::Accept { .. }) && m.to != NodeId(1));
    assert!(
        accepts >= 4,
        "the 64-value run went in one message per follower"
    );
    h.crash(1);
    h.pool.clear();
    let before = h.visible_values(2).len();

    // B campaigns. Deliver one message at a time, watching for B's first Accept.
    h.pre_vote(2, &[2, 3]);
    let ballot = h.replica(2).group.ballot().expect("B campaigns");
    let mut complete_promises = 0;
    let mut parts = 0;
    let mut re_asks = 0;
    let mut first_accept_after = None;
    while let Some(index) = h
        .pool
        .iter()
        .position(|m| m.from != NodeId(1) && m.to != NodeId(1))
    {
        let m = h.pool.remove(index);
        sent.push(check_size(&h, &m));
        match &m.body {
            MessageBody::Promise { truncated, .. } if m.to == NodeId(2) => {
                if *truncated {
                    parts += 1;
                } else {
                    complete_promises += 1;
                }
            }
            MessageBody::Prepare { from, .. } if m.from == NodeId(2) && from.0 > 2 => {
                re_asks += 1;
            }
            MessageBody::Accept { ballot: b, .. } if *b == ballot => {
                first_accept_after.get_or_insert(complete_promises);
            }
            _ => {}
        }
        let to = m.to.0;
        h.step(to, Input::Message(m));
        if h.pool.is_empty() {
            h.step(2, Input::Flush);
            h.step(3, Input::Flush);
        }
    }
    println!("{parts} partial promises, {re_asks} prepares resumed, {complete_promises} complete");
    assert!(parts >= 2, "promises were not split ({parts} parts)");
    assert!(
        re_asks >= 2,
        "B never asked again from where a promise stopped"
    );
    assert_eq!(h.replica(2).group.role(), Role::Leader);
    assert!(
        first_accept_after.is_some_and(|complete| complete >= 2),
        "B sent an Accept before a quorum's promises were complete: {first_accept_after:?}"
    );
    h.tick(150, &[2, 3]);
    deliver_checked(&mut h, &[2, 3], &mut sent);
    let visible = h.visible_values(2);
    assert_eq!(visible.len(), before + COUNT, "B lost accepted values");
    let expected: Vec<String> = (0..COUNT).map(|i| big_value(i, SIZE)).collect();
    assert_eq!(visible[before..], expected[..], "values out of order");
    assert_eq!(h.visible_values(3), visible);
}

// Goal: a candidate behind by more than a message's worth of chosen values steps down
// and catches up instead of pulling them through promises, then leads.
// Method: C is down while A and B choose 200 values of 100 KB; A crashes; C restarts
// and campaigns with B: B's promise comes in parts made only of values chosen at B, so
// C steps down and catches up; on its next campaign it is elected and every log agrees.
#[test]
fn candidate_far_behind_catches_up_before_leading() {
    let mut h = Harness::new(3, 64);
    // Unbounded: B must still hold C's range in memory to promise (below B's floor it
    // would refuse: `candidate_below_the_floor_is_sent_the_chosen_values`).
    h.configure(&|c| {
        c.retention_instances_max = u64::MAX;
        c.retention_size_max = usize::MAX;
    });
    h.elect(1, &[1, 2, 3]);
    h.crash(3);
    choose_big(&mut h, 1, &[1, 2], 200, 100_000);
    h.tick(150, &[1]);
    h.deliver_among(&[1, 2]);
    h.crash(1);
    h.drop_where(&|m| m.to == NodeId(3));
    h.restart(3, false);
    let mut sent = Vec::new();
    h.tick(3_000, &[3]);
    deliver_checked(&mut h, &[2, 3], &mut sent);
    assert_eq!(
        h.replica(3)
            .group
            .counters()
            .ignored
            .get("promise_candidate_behind"),
        Some(&1),
        "{:?}",
        h.replica(3).group.counters().ignored
    );
    assert_eq!(
        h.replica(3).group.chosen_through(),
        h.replica(2).group.chosen_through(),
        "C caught up"
    );
    for _ in 0..5 {
        h.tick(3_000, &[2, 3]);
        deliver_checked(&mut h, &[2, 3], &mut sent);
        if (2..=3).any(|n| h.replica(n).group.role() == Role::Leader) {
            break;
        }
    }
    assert!((2..=3).any(|n| h.replica(n).group.role() == Role::Leader));
    h.tick(150, &[2, 3]);
    deliver_checked(&mut h, &[2, 3], &mut sent);
    assert_eq!(h.visible_values(3), h.visible_values(2));
    assert_eq!(h.visible_values(2).len(), 200);
}

/// Chooses `count` small values at `leader`, a few at a time, among `among`.
fn choose_small(h: &mut Harness, leader: u32, among: &[u32], count: usize) {
    for i in 0..count {
        h.propose(leader, &format!("v{i}"));
        if i % 4 == 3 {
            h.deliver_among(among);
        }
    }
    h.deliver_among(among);
    h.tick(150, &[leader]);
    h.deliver_among(among);
}

// Goal: with the in-memory log bounded to 4 applied instances, a follower that missed
// 100 instances (far below every peer's floor) is caught up from WAL reads, and every
// log stays bounded meanwhile.
// Method: C is down while A and B choose 100 values; C restarts and asks from 1. The
// harness answers each `Output::wal_reads` from the replica's WAL image (the real
// codec, index and `wal::catch_up`). C must end with A's values and checksum, A or B
// must have served chunks from the WAL, and no log may exceed 4 + the accept window.
#[test]
fn follower_far_behind_the_floor_catches_up_from_the_wal() {
    let mut h = Harness::new(3, 8);
    h.configure(&|c| c.retention_instances_max = 4);
    h.elect(1, &[1, 2, 3]);
    h.crash(3);
    choose_small(&mut h, 1, &[1, 2], 100);
    assert_eq!(h.visible_values(1).len(), 100);
    let floor = h.replica(1).group.log_floor();
    assert!(floor.0 > 90, "A's floor {} did not move", floor.0);
    h.drop_where(&|m| m.to == NodeId(3));
    h.restart(3, false);
    let bound = 4 + h.replica(1).config.accept_window_instances_max as usize;
    for _ in 0..50 {
        h.tick(150, &[1, 2, 3]);
        h.deliver_among(&[1, 2, 3]);
        for node in 1..=3 {
            let len = h.replica(node).group.log_len();
            assert!(len <= bound, "node {node} holds {len} slots, bound {bound}");
        }
        if h.replica(3).group.chosen_through() == h.replica(1).group.chosen_through() {
            break;
        }
    }
    assert_eq!(h.visible_values(3), h.visible_values(1), "C caught up");
    assert_eq!(h.replica(3).group.checksum(), h.replica(1).group.checksum());
    let served: u64 = (1..=2)
        .map(|n| h.replica(n).group.counters().catch_up_wal_served)
        .sum();
    let reads: u64 = (1..=2).map(|n| h.replica(n).wal.reads).sum();
    assert!(
        served >= 1 && reads >= served,
        "served {served}, reads {reads}"
    );
    assert!(h.replica(3).group.log_floor().0 > 90);
}

// Goal: a replica restarted from a long WAL keeps only its retention in memory, and
// still re-applies the whole chosen history to its state machine.
// Method: A and B choose 100 values with a retention of 4; A restarts from its records;
// its restored applies cover instances 1.. through the end, its log holds at most 4
// applied slots, and it serves a follower from below its new floor through the WAL.
#[test]
fn restart_restores_a_bounded_log() {
    let mut h = Harness::new(3, 8);
    h.configure(&|c| c.retention_instances_max = 4);
    h.elect(1, &[1, 2, 3]);
    h.crash(3);
    choose_small(&mut h, 1, &[1, 2], 100);
    let chosen = h.replica(1).group.chosen_through();
    h.crash(1);
    h.restart(1, false);
    let a = &h.replica(1).group;
    assert_eq!(a.chosen_through(), chosen);
    assert_eq!(
        h.replica(1).applied.len() as u64,
        chosen.0,
        "every instance re-applied"
    );
    assert!(a.log_len() <= 4, "restored log holds {} slots", a.log_len());
    assert_eq!(a.log_floor().0, chosen.0 - 3);
    assert_eq!(h.visible_values(1).len(), 100);
    // C, empty, catches up from A and B: below both floors, from their WALs.
    h.restart(3, false);
    for _ in 0..50 {
        h.tick(3_000, &[1, 2, 3]);
        h.deliver_among(&[1, 2, 3]);
        if h.replica(3).group.chosen_through() >= chosen {
            break;
        }
    }
    assert_eq!(h.visible_values(3)[..100], h.visible_values(2)[..100]);
}

// Goal: a candidate whose log ends below a peer's floor is not promised (the report
// would lack the dropped values, which it would fill with no-ops); it is sent the
// chosen values instead (from the WAL), and leads once caught up.
// Method: A and B choose 100 values with a retention of 4, A crashes, C (down
// meanwhile) restarts and campaigns with B: B counts `prepare_below_floor` and serves
// C from its WAL; C or B then leads, and C holds every value.
#[test]
fn candidate_below_the_floor_is_sent_the_chosen_values() {
    let mut h = Harness::new(3, 8);
    h.configure(&|c| c.retention_instances_max = 4);
    h.elect(1, &[1, 2, 3]);
    h.crash(3);
    choose_small(&mut h, 1, &[1, 2], 100);
    h.crash(1);
    h.drop_where(&|m| m.to == NodeId(3));
    h.restart(3, false);
    h.tick(3_000, &[3]);
    h.deliver_among(&[2, 3]);
    let ignored = &h.replica(2).group.counters().ignored;
    assert!(
        ignored.get("prepare_below_floor").is_some_and(|n| *n >= 1),
        "{ignored:?}"
    );
    assert!(h.replica(2).wal.reads >= 1);
    assert_eq!(
        h.replica(3).group.chosen_through(),
        h.replica(2).group.chosen_through(),
        "C caught up"
    );
    for _ in 0..5 {
        h.tick(3_000, &[2, 3]);
        h.deliver_among(&[2, 3]);
        if (2..=3).any(|n| h.replica(n).group.role() == Role::Leader) {
            break;
        }
    }
    assert!((2..=3).any(|n| h.replica(n).group.role() == Role::Leader));
    h.tick(150, &[2, 3]);
    h.deliver_among(&[2, 3]);
    assert_eq!(h.visible_values(3), h.visible_values(2));
    assert_eq!(h.visible_values(2).len(), 100);
}

// Goal: a replica restarted from a checkpoint at C holds nothing below C (its floor is
// C, whatever its retention), re-applies only what follows, and still serves a peer
// that needs instances below C, from its WAL (which still holds every record).
// Method: A and B choose 60 values, B's checkpoint base is taken, 40 more are chosen;
// B restarts from its records and that base (retention at its default, far above the
// history: without the checkpoint its floor would stay at 1). A crashes and C, empty,
// campaigns with B: B refuses the prepare from below its floor and serves C from its
// WAL. C must end with A's 100 values and B's checksum.
#[test]
fn restart_from_a_checkpoint_serves_below_it_from_the_wal() {
    let mut h = Harness::new(3, 8);
    h.elect(1, &[1, 2, 3]);
    h.crash(3);
    choose_small(&mut h, 1, &[1, 2], 60);
    let base = h.replica(2).group.checkpoint_base();
    let at = base.through;
    assert!(at.0 > 60, "B applied through {}", at.0);
    choose_small(&mut h, 1, &[1, 2], 40);
    let chosen = h.replica(1).group.chosen_through();
    h.crash(2);
    h.restart_from_checkpoint(2, base);
    let b = &h.replica(2).group;
    assert_eq!(b.chosen_through(), chosen);
    assert_eq!(b.applied_through(), chosen);
    assert_eq!(b.log_floor(), at, "the floor rises to the checkpoint");
    assert_eq!(b.log_len() as u64, chosen.0 - at.0 + 1);
    let reapplied: Vec<u64> = h.replica(2).applied.iter().map(|a| a.instance.0).collect();
    assert_eq!(reapplied, (at.0 + 1..=chosen.0).collect::<Vec<_>>());
    assert_eq!(b.checksum(), h.replica(1).group.checksum());
    // C, empty, with B alone: everything below B's floor comes from B's WAL.
    h.crash(1);
    h.drop_where(&|m| m.to == NodeId(3));
    h.restart(3, false);
    for _ in 0..10 {
        h.tick(3_000, &[2, 3]);
        h.deliver_among(&[2, 3]);
        if h.replica(3).group.applied_through() >= chosen {
            break;
        }
    }
    let ignored = &h.replica(2).group.counters().ignored;
    assert!(
        ignored.get("prepare_below_floor").is_some_and(|n| *n >= 1),
        "{ignored:?}"
    );
    assert!(h.replica(2).group.counters().catch_up_wal_served >= 1);
    assert!(h.replica(2).wal.reads >= 1);
    assert_eq!(h.visible_values(3)[..100], h.visible_values(1)[..100]);
    let (b, c) = (&h.replica(2).group, &h.replica(3).group);
    assert_eq!(c.applied_through(), b.applied_through());
    assert_eq!(
        c.checksum(),
        b.checksum(),
        "C's history is B's, checkpoint included"
    );
}

// Goal: a replica restored from an older checkpoint below the range its truncated WAL
// released (its newest checkpoint damaged) forgets no vote: it does not promise a
// prepare from at or below its recorded chosen watermark, so a value chosen on it and
// one peer cannot be overwritten by the other peer; once healed, it re-learns by
// catch-up and every replica applies the same values.
// Method: A and C choose "q" and 10 more (B never sees them); C's durable Accepts and
// Learns at or below its chosen watermark less 2 are removed (a truncated WAL) and it
// restarts from a checkpoint base taken before "q"; A crashes; B campaigns with C.
#[test]
fn fallback_below_truncated_wal_does_not_forget_votes() {
    let mut h = Harness::new(3, 8);
    h.elect(1, &[1, 2, 3]);
    choose_small(&mut h, 1, &[1, 2, 3], 6);
    let old = h.replica(3).group.checkpoint_base();
    assert!(old.through.0 >= 6, "C applied through {}", old.through.0);
    h.drop_where(&|m| m.to == NodeId(2));
    h.propose(1, "q");
    choose_small(&mut h, 1, &[1, 3], 10);
    let recorded = h.replica(3).group.chosen_through();
    assert!(
        recorded.0 > old.through.0 + 10,
        "C chose through {}",
        recorded.0
    );
    h.crash(3);
    let watermark = Instance(recorded.0 - 2);
    h.replicas
        .get_mut(&NodeId(3))
        .expect("node 3")
        .durable
        .retain(|r| match r {
            Record::Accept { instance, .. } | Record::Learn { instance, .. } => {
                *instance > watermark
            }
            Record::Promise { .. } | Record::Chosen { .. } | Record::Installed { .. } => true,
        });
    h.restart_from_checkpoint(3, old.clone());
    let c = &h.replica(3).group;
    assert_eq!(c.applied_through(), old.through);
    assert_eq!(c.chosen_through(), old.through);
    // B, which never saw "q", campaigns with C alone: C must not promise.
    h.crash(1);
    let b_chosen = h.replica(2).group.chosen_through();
    for _ in 0..10 {
        h.tick(3_000, &[2, 3]);
        h.deliver_among(&[2, 3]);
    }
    assert_eq!(
        h.replica(2).group.chosen_through(),
        b_chosen,
        "B chose over C's lost votes: {:?}",
        h.visible_values(2)
    );
    assert_ne!(
        h.replica(2).group.role(),
        Role::Leader,
        "B led over C's lost votes"
    );
    let ignored = &h.replica(3).group.counters().ignored;
    assert!(
        ignored
            .get("prepare_below_vote_floor")
            .is_some_and(|n| *n >= 1),
        "{ignored:?}"
    );
    assert_eq!(h.replica(3).group.vote_floor(), recorded.next());
    // A returns: C re-learns through its recorded watermark and votes from anywhere.
    h.restart(1, false);
    for _ in 0..100 {
        h.tick(100, &[1, 2, 3]);
        h.deliver_among(&[1, 2, 3]);
    }
    assert!(
        h.replica(3).group.chosen_through() >= recorded,
        "C never re-learned"
    );
    let reference = h.visible_values(1);
    assert!(reference.contains(&"q".to_string()), "{reference:?}");
    for node in 2..=3 {
        let visible = h.visible_values(node);
        let applied = h.replica(node).group.applied_through().0 as usize;
        assert!(
            visible.contains(&"q".to_string()),
            "node {node}: {visible:?}"
        );
        assert!(
            applied >= recorded.0 as usize,
            "node {node} applied {applied}"
        );
    }
    assert_eq!(
        h.replica(3).group.checksum(),
        h.replica(1).group.checksum(),
        "C's history is A's"
    );
}

// ----- leadership: transfer, check-quorum, pre-vote (`paxos::leadership`) -----

/// Everything in the pool from or to `node` is lost (a partition around it).
fn cut_off(h: &mut Harness, node: u32) {
    h.drop_where(&|m| m.from == NodeId(node) || m.to == NodeId(node));
}

// Goal: a transfer refuses new proposals naming the target, lets what is in flight be
// chosen, hands over, and the target leads at once (no election timer), at a ballot
// above the old leader's; the old leader serves no read after the handover.
// Method: five replicas (a quorum of three needs a follower that ended its lease grant
// to the old leader); A leads with a value in flight; A is asked to transfer to C; a
// new proposal is refused; messages are delivered without advancing time.
#[test]
fn transfer_hands_over_after_in_flight_is_chosen() {
    let all = [1, 2, 3, 4, 5];
    let mut h = Harness::new(5, 8);
    h.elect(1, &all);
    h.tick(150, &[1]);
    h.deliver_among(&all);
    let old = h.ballot_of(1);
    assert!(
        h.replica(1).group.read_index(h.now).is_some(),
        "A serves reads"
    );
    h.propose(1, "a");
    h.step(1, Input::Flush);
    h.step(1, Input::TransferLeadership { to: NodeId(3) });
    assert_eq!(h.replica(1).group.transferring_to(), Some(NodeId(3)));
    let refused = h.propose(1, "b");
    let error = h.replica(1).failed.iter().find(|c| c.id == refused);
    assert_eq!(
        error.map(|c| &c.error),
        Some(&ProposeError::NotLeader {
            hint: Some(NodeId(3))
        }),
        "a proposal during the transfer is refused naming the target"
    );
    assert!(
        !h.pool
            .iter()
            .any(|m| matches!(m.body, MessageBody::Handover { .. })),
        "no handover while 'a' is in flight"
    );
    // Only the accepts and their acks: 'a' is chosen, then A hands over.
    h.deliver_while(&|m| {
        matches!(
            m.body,
            MessageBody::Accept { .. } | MessageBody::Accepted { .. }
        )
    });
    assert_eq!(h.replica(1).group.role(), Role::Follower, "A stepped down");
    assert!(
        h.replica(1).group.read_index(h.now).is_none(),
        "A serves no read"
    );
    assert_eq!(h.replica(1).group.handed_over().map(|(b, _)| b), Some(old));
    h.deliver_among(&all);
    assert_eq!(
        h.replica(3).group.role(),
        Role::Leader,
        "C leads, no timer ran"
    );
    assert!(h.ballot_of(3) > old, "C leads above A's ballot");
    h.propose(3, "c");
    h.deliver_among(&all);
    h.tick(150, &[3]);
    h.deliver_among(&all);
    for node in all {
        let visible = h.visible_values(node);
        assert_eq!(visible, vec!["a", "c"], "node {node}");
    }
    assert_eq!(h.replica(1).group.counters().handovers, 1);
}

// Goal: a transfer to a replica that does not take over leaves no permanent gap: after
// an election timeout another replica leads.
// Method: three replicas; A leads; C is down; A transfers to C (its handover is lost),
// then time passes for A and B only.
#[test]
fn transfer_to_a_dead_target_is_followed_by_an_election() {
    let mut h = Harness::new(3, 8);
    h.elect(1, &[1, 2, 3]);
    h.tick(150, &[1]);
    h.deliver_among(&[1, 2, 3]);
    h.crash(3);
    let old = h.ballot_of(1);
    h.step(1, Input::TransferLeadership { to: NodeId(3) });
    assert_eq!(
        h.replica(1).group.role(),
        Role::Follower,
        "nothing in flight: handed over"
    );
    h.deliver_among(&[1, 2]);
    let mut led = None;
    for _ in 0..10 {
        h.tick(500, &[1, 2]);
        h.deliver_among(&[1, 2]);
        led = [1, 2]
            .into_iter()
            .find(|n| h.replica(*n).group.role() == Role::Leader);
        if led.is_some() {
            break;
        }
    }
    let led = led.expect("a replica leads again within 5 s");
    assert!(h.ballot_of(led) > old);
}

// Goal: check-quorum: a leader that hears from no quorum within an election timeout
// stops leading (and serving reads); one that hears from a quorum does not.
// Method: three replicas; A leads; B keeps answering while C is cut off: A stays; then
// B is cut off too and time passes: A steps down.
#[test]
fn isolated_leader_steps_down() {
    let mut h = Harness::new(3, 8);
    h.elect(1, &[1, 2, 3]);
    for _ in 0..20 {
        h.tick(100, &[1, 2]);
        cut_off(&mut h, 3);
        h.deliver_among(&[1, 2]);
    }
    assert_eq!(
        h.replica(1).group.role(),
        Role::Leader,
        "A hears from B: it leads"
    );
    for _ in 0..12 {
        h.tick(100, &[1]);
        cut_off(&mut h, 1);
    }
    let a = &h.replica(1).group;
    assert_eq!(a.role(), Role::Follower, "A heard from no quorum for 1.2 s");
    assert_eq!(a.counters().check_quorum_step_downs, 1);
    assert!(a.read_index(h.now).is_none());
}

// Goal: a replica cut off from a live leader does not disrupt it when it returns: its
// timers ran out again and again, but without a quorum of pre-vote grants it never
// raised its promise, so the leader's heartbeats are not rejected; its pre-vote on
// return is denied (the others grant their lease to the leader).
// Method: three replicas; A leads; C is cut off for 10 s while A and B go on; then C's
// timer runs out with the network healed, and everything is delivered.
#[test]
fn returning_replica_does_not_unseat_a_healthy_leader() {
    let mut h = Harness::new(3, 8);
    h.elect(1, &[1, 2, 3]);
    let ballot = h.ballot_of(1);
    for _ in 0..100 {
        h.tick(100, &[1, 2, 3]);
        cut_off(&mut h, 3);
        h.deliver_among(&[1, 2]);
    }
    let c = &h.replica(3).group;
    assert!(
        c.promised() <= ballot,
        "C raised its promise to {}",
        c.promised()
    );
    assert!(
        c.counters().pre_votes >= 4,
        "C's timer ran out while cut off"
    );
    // Healed as C's timer runs out again: its pre-vote reaches A and B.
    let before = h.replica(3).group.counters().pre_votes;
    for _ in 0..30 {
        h.tick(100, &[1, 2, 3]);
        if h.replica(3).group.counters().pre_votes > before {
            break;
        }
        cut_off(&mut h, 3);
        h.deliver_among(&[1, 2]);
    }
    h.deliver_while(&|m| {
        matches!(
            m.body,
            MessageBody::PreVote { .. } | MessageBody::PreVoteReply { .. }
        )
    });
    let ignored = &h.replica(3).group.counters().ignored;
    assert_eq!(ignored.get("pre_vote_denied"), Some(&2), "A and B deny C");
    h.deliver_among(&[1, 2, 3]);
    for _ in 0..5 {
        h.tick(100, &[1, 2, 3]);
        h.deliver_among(&[1, 2, 3]);
    }
    assert_eq!(h.replica(1).group.role(), Role::Leader, "A still leads");
    assert_eq!(h.ballot_of(1), ballot, "at the same ballot");
    assert_eq!(
        h.replica(3).group.leader_hint(),
        Some(NodeId(1)),
        "C follows A"
    );
}

/// Nodes 1-3 voters led by node 1 with `values` values chosen, node 4 in the harness
/// (initial voters 1-3) hearing nothing yet.
fn three_and_a_newcomer(window: u64, values: usize) -> Harness {
    let mut h = Harness::new(3, window);
    h.add_node(4, &[1, 2, 3], window);
    h.elect(1, &[1, 2, 3]);
    choose_small(&mut h, 1, &[1, 2, 3], values);
    h
}

fn change(h: &mut Harness, id: u64, voters: &[u32]) {
    let membership = Membership::new(voters.iter().map(|n| NodeId(*n)).collect());
    h.step(
        1,
        Input::ChangeMembership {
            id: ProposalId(id),
            membership,
        },
    );
}

fn config_entries(h: &Harness, node: u32) -> Vec<Instance> {
    h.replica(node)
        .applied
        .iter()
        .filter(|a| matches!(a.entry.body, Body::Config(_)))
        .map(|a| a.instance)
        .collect()
}

// Goal: the leader does not propose the add of a voter that is far behind (an empty
// voter would make every quorum wait for its catch-up), and does once it has caught up.
// Method: 40 values chosen among {1,2,3}; ask to add 4 while 4 hears nothing: no
// config entry, nothing refused, a second change refused; then let 4 talk: it catches
// up, the add is chosen, and 4 held the log below it when it was.
#[test]
fn add_voter_waits_for_the_newcomer_to_catch_up() {
    let window = 4;
    let mut h = three_and_a_newcomer(window, 40);
    change(&mut h, 900, &[1, 2, 3, 4]);
    h.deliver_among(&[1, 2, 3]);
    h.tick(150, &[1, 2, 3]);
    h.deliver_among(&[1, 2, 3]);
    assert!(
        config_entries(&h, 1).is_empty(),
        "proposed before 4 caught up"
    );
    assert!(h.replica(1).failed.iter().all(|c| c.id != ProposalId(900)));
    change(&mut h, 901, &[1, 2]);
    assert!(matches!(
        h.replica(1).failed.last(),
        Some(c) if c.id == ProposalId(901) && matches!(c.error, ProposeError::Rejected { .. })
    ));
    // Node 4 now hears the leader's heartbeats and catches up.
    for _ in 0..4 {
        h.tick(150, &[1, 2, 3, 4]);
        h.deliver_among(&[1, 2, 3, 4]);
    }
    let at = *config_entries(&h, 1).first().expect("the add was chosen");
    assert!(at.0 > 40, "chosen after the values: {}", at.0);
    assert_eq!(h.replica(1).group.latest_membership().voters().len(), 4);
    assert_eq!(
        h.visible_values(4),
        h.visible_values(1),
        "4 learned the log"
    );
    assert!(h.replica(1).failed.iter().all(|c| c.id != ProposalId(900)));
}

// Goal: an add whose newcomer never answers is refused after JOIN_ELECTION_TIMEOUTS
// election timeouts with a reason that says so, and nothing was proposed.
// Method: node 4 down; ask to add it; tick the voters (delivering among them) past
// the deadline.
#[test]
fn add_voter_of_a_silent_node_is_refused_after_the_deadline() {
    let mut h = three_and_a_newcomer(4, 10);
    h.crash(4);
    change(&mut h, 900, &[1, 2, 3, 4]);
    let timeout_ms = h.replica(1).config.election_timeout_ns / 1_000_000;
    let steps = synod::paxos::JOIN_ELECTION_TIMEOUTS * timeout_ms / 100 + 2;
    for _ in 0..steps {
        h.tick(100, &[1, 2, 3]);
        h.deliver_among(&[1, 2, 3]);
    }
    assert_eq!(h.replica(1).group.role(), Role::Leader);
    let refused = h
        .replica(1)
        .failed
        .iter()
        .find(|c| c.id == ProposalId(900))
        .expect("the add was answered");
    assert!(
        matches!(refused.error, ProposeError::Rejected { reason } if reason.contains("catch up")),
        "{:?}",
        refused.error
    );
    assert!(config_entries(&h, 1).is_empty());
}

// Goal: a change asked of an idle group takes effect without client values (the
// leader fills the instances below its effect with no-ops).
// Method: remove voter 3 with no load; deliver; the new membership governs the next
// instance on the leader and on node 2.
#[test]
fn change_of_an_idle_group_takes_effect() {
    let mut h = three_and_a_newcomer(8, 5);
    change(&mut h, 900, &[1, 2]);
    h.deliver_among(&[1, 2, 3]);
    h.tick(150, &[1]);
    h.deliver_among(&[1, 2, 3]);
    let two = Membership::new(vec![NodeId(1), NodeId(2)]);
    for node in [1, 2] {
        let group = &h.replica(node).group;
        assert_eq!(
            group.membership_at(group.chosen_through().next()),
            &two,
            "node {node}"
        );
    }
}
