//! Rejoining after a disk loss (`src/paxos/learner.rs`, "Rejoin"): a vote cast before
//! the loss may complete a quorum after the rejoiner heard from its peers; the rejoiner
//! votes again only after its own Phase 1 with a quorum of the other voters, and that
//! campaign neither waits for a leader change nor gives up when preempted.

mod common;

use common::harness::{is_accept_at, Harness};
use synod::paxos::{Input, Message, MessageBody, NodeId, Role};

fn is_accepted(m: &Message) -> bool {
    matches!(m.body, MessageBody::Accepted { .. })
}

// Goal: a vote cast before a disk loss, completed into a quorum by an Accept delivered
// after the rejoiner's reports, cannot be overwritten by a later leader whose quorum
// holds the rejoiner (agreement across the loss).
// Method: 5 voters, D (1) leads; v at instance 3 is accepted by D and R (5) only, the
// Accept to A (2) is held. R loses its disk and hears from A, B, C (2, 3, 4) while D
// cannot reach it; then A gets the held Accept, so D counts {D, R, A} and v is chosen.
// A partition leaves {B, C, R}: C and R campaign there. Nothing but v may be chosen at
// 3. The rule of `learner.rs` holds: R votes only after its own Phase 1 with 3 of the 4
// others, which {B, C} cannot give. It fails without it: on the former rule (vote once
// 3 of 4 peers are heard, promise raised to the highest reported) C led with {B, C, R}
// and filled 3 with its StartWorking; with R counting its own promise, R leads with
// {R, B, C} and does the same (docs/testing.md, planted bugs).
#[test]
fn vote_before_disk_loss_completed_after_rejoin_reports() {
    let mut h = five_voters_with_x_chosen();
    assert_eq!(h.visible_values(5), vec!["x"]);

    // v at 3: D and R accept, R's vote reaches D; the Accept to A is held, B and C
    // never see it.
    h.propose(1, "v");
    h.step(1, Input::Flush);
    h.deliver_while(&|m| m.to == NodeId(1) && m.from == NodeId(1));
    h.deliver_while(&|m| m.to == NodeId(5) && is_accept_at(m, 3));
    h.deliver_while(&|m| m.from == NodeId(5) && m.to == NodeId(1) && is_accepted(m));
    let held: Vec<Message> = h
        .pool
        .iter()
        .filter(|m| m.to == NodeId(2) && is_accept_at(m, 3))
        .cloned()
        .collect();
    assert_eq!(held.len(), 1, "the Accept of v to A is in flight");
    h.drop_where(&|m| m.from == NodeId(1) && m.to != NodeId(1));
    assert!(
        !h.visible_values(1).contains(&"v".to_string()),
        "v is not chosen yet: D counts {{D, R}}"
    );

    // R loses its disk and rejoins from A, B and C; D and R cannot reach each other.
    h.crash(5);
    h.restart(5, true);
    for _ in 0..20 {
        h.tick(10, &[2, 3, 4, 5]);
        h.deliver_among(&[2, 3, 4, 5]);
        h.drop_where(&|m| m.from == NodeId(1) || m.to == NodeId(1));
    }
    let rejoined = h.replica(5).group.is_voting();

    // The held Accept reaches A; A's vote completes {D, R, A} at D.
    for m in held {
        h.step(2, Input::Message(m));
    }
    h.deliver_while(&|m| m.from == NodeId(2) && m.to == NodeId(1) && is_accepted(m));
    h.drop_where(&|m| m.from == NodeId(2) || m.to == NodeId(2));
    assert!(
        h.visible_values(1).contains(&"v".to_string()),
        "v chosen by D, R and A"
    );

    // Partition {D, A} | {B, C, R}: C campaigns and, if elected, fills instance 3.
    h.drop_where(&|m| {
        let side = |n: NodeId| n == NodeId(1) || n == NodeId(2);
        side(m.from) != side(m.to)
    });
    let leader = |h: &Harness| {
        [4, 5]
            .into_iter()
            .find(|n| h.replica(*n).group.role() == Role::Leader)
    };
    for _ in 0..5 {
        h.tick(3_000, &[4, 5]);
        h.deliver_among(&[3, 4, 5]);
        if leader(&h).is_some() {
            break;
        }
    }
    // The rule under test decides here: with R voting, C (or R) leads with {B, C, R},
    // none of which knows v, and fills instance 3 with its StartWorking.
    if let Some(node) = leader(&h) {
        h.propose(node, "w");
        h.deliver_among(&[3, 4, 5]);
        h.tick(150, &[node]);
        h.deliver_among(&[3, 4, 5]);
    }
    let on_d = h.applied_at(1, 3).expect("D applied 3").entry.clone();
    for node in [3, 4, 5] {
        if let Some(apply) = h.applied_at(node, 3) {
            assert_eq!(
                apply.entry, on_d,
                "agreement broken at instance 3 on node {node} (R rejoined from A, B, C: \
                 {rejoined})"
            );
        }
    }
}

/// Asserts that every instance through `through` applied on several of `nodes` holds
/// the same entry on each.
/// Five voters, node 1 elected, "x" chosen and known chosen by all.
fn five_voters_with_x_chosen() -> Harness {
    let mut h = Harness::new(5, 8);
    let all = [1, 2, 3, 4, 5];
    h.elect(1, &all);
    h.propose(1, "x");
    h.deliver_among(&all);
    h.tick(150, &[1]);
    h.deliver_among(&all);
    h
}

/// Ticks and delivers among `nodes`, 100 ms at a time for at most 10 s, until `node`
/// votes again.
fn tick_until_voting(h: &mut Harness, node: u32, nodes: &[u32]) {
    for _ in 0..100 {
        h.tick(100, nodes);
        h.deliver_among(nodes);
        if h.replica(node).group.is_voting() {
            return;
        }
    }
}

fn assert_agreement(h: &Harness, nodes: &[u32], through: u64) {
    for instance in 1..=through {
        let mut seen = None;
        for node in nodes {
            if let Some(apply) = h.applied_at(*node, instance) {
                match &seen {
                    None => seen = Some(apply.entry.clone()),
                    Some(entry) => assert_eq!(
                        &apply.entry, entry,
                        "agreement broken at instance {instance} on node {node}"
                    ),
                }
            }
        }
    }
}

// Goal: with 3 voters a rejoiner votes again only once both others promised its
// ballot: one peer is not enough however long it campaigns, and a live leader does
// not hold its campaign off.
// Method: A (1) leads; q is chosen on {A, C} only; C (3) loses its disk, hears from A
// and B, then A is cut off: B and C campaign for 30 s and C must not vote nor anyone
// lead. Healed, C (its election timer not reset by the leader's heartbeats) ends its
// rejoin by its own election; q survives and the logs agree. Fails if C's promise
// counted (C and B would elect without A and fill q's instance) or if the heartbeats
// held C's campaign off (C would never vote).
#[test]
fn three_voters_rejoin_needs_both_others() {
    let mut h = Harness::new(3, 8);
    let all = [1, 2, 3];
    h.elect(1, &all);
    h.propose(1, "q");
    h.step(1, Input::Flush);
    h.drop_where(&|m| m.to == NodeId(2));
    h.deliver_among(&[1, 3]);
    assert!(h.visible_values(1).contains(&"q".to_string()));
    h.drop_where(&|_| true);

    h.crash(3);
    h.restart(3, true);
    for _ in 0..5 {
        h.tick(10, &[3]);
        h.deliver_among(&all);
    }
    assert!(!h.replica(3).group.is_voting(), "heard, not yet campaigned");

    // A is cut off: B and C alone.
    h.drop_where(&|m| m.from == NodeId(1) || m.to == NodeId(1));
    for _ in 0..30 {
        h.tick(1_000, &[2, 3]);
        h.deliver_among(&[2, 3]);
        h.drop_where(&|m| m.from == NodeId(1) || m.to == NodeId(1));
        assert!(
            !h.replica(3).group.is_voting(),
            "C voted with B's promise alone"
        );
        assert!(
            [2, 3]
                .iter()
                .all(|n| h.replica(*n).group.role() != Role::Leader),
            "a leader without A"
        );
    }
    assert!(h.replica(3).group.counters().campaigns > 0, "C campaigned");

    // Healed: someone leads; C campaigns through it and votes again.
    tick_until_voting(&mut h, 3, &all);
    assert!(h.replica(3).group.is_voting(), "C never rejoined");
    assert!(
        h.replica(3).group.counters().elections_won > 0,
        "C rejoined by its own election"
    );
    h.propose(3, "r");
    h.deliver_among(&all);
    h.tick(150, &[3]);
    h.deliver_among(&all);
    for node in all {
        let visible = h.visible_values(node);
        assert!(
            visible.contains(&"q".to_string()) && visible.contains(&"r".to_string()),
            "node {node}: {visible:?}"
        );
    }
    assert_agreement(&h, &all, 10);
}

// Goal: a rejoiner whose campaign is preempted by a higher ballot stays out of the
// vote, and campaigns again until its own Phase 1 completes.
// Method: 5 voters, A (1) leads; E (5) loses its disk and hears from everyone; its
// first campaign reaches B (2) only, and B is then elected above it with A, C, D. B's
// heartbeat makes E a follower again, still not voting; E's timer is not reset by
// B's heartbeats, so E campaigns again, above B, and is elected with 3 of the 4 others.
// Fails if a preempted rejoiner waited for a leader change (E would never vote).
#[test]
fn preempted_rejoin_campaign_retries() {
    let all = [1, 2, 3, 4, 5];
    let mut h = five_voters_with_x_chosen();

    h.crash(5);
    h.restart(5, true);
    for _ in 0..5 {
        h.tick(10, &[5]);
        h.deliver_among(&all);
    }
    assert!(!h.replica(5).group.is_voting());

    // E campaigns; only B gets its prepare (B's answer is lost).
    for _ in 0..5 {
        h.tick(3_000, &[5]);
        if h.replica(5).group.role() == Role::Candidate {
            break;
        }
    }
    let first = h.replica(5).group.ballot().expect("E campaigns");
    h.deliver_while(&|m| m.from == NodeId(5) && m.to == NodeId(2));
    h.drop_where(&|m| m.from == NodeId(5) || m.to == NodeId(5));

    // B is elected above E's ballot, and its heartbeat preempts E.
    h.elect(2, &[1, 2, 3, 4]);
    let b_ballot = h.ballot_of(2);
    assert!(b_ballot > first, "B leads above E's campaign");
    h.tick(150, &[2]);
    h.deliver_among(&all);
    assert_eq!(h.replica(5).group.role(), Role::Follower, "E preempted");
    assert!(
        !h.replica(5).group.is_voting(),
        "preempted: still not voting"
    );

    // E campaigns again while B leads, and ends its rejoin by its own election.
    tick_until_voting(&mut h, 5, &all);
    assert!(h.replica(5).group.is_voting(), "E never rejoined");
    assert!(h.replica(5).group.counters().campaigns >= 2);
    assert!(h.ballot_of(5) > b_ballot, "E leads above B");
    h.propose(5, "y");
    h.deliver_among(&all);
    h.tick(150, &[5]);
    h.deliver_among(&all);
    for node in all {
        assert!(h.visible_values(node).contains(&"y".to_string()));
    }
    assert_agreement(&h, &all, 10);
}
