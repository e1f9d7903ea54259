//! Scenario tests of balanced leader placement (`paxos::placement`) in the protocol
//! core: the move back to the preferred replica, its evidence, and its hysteresis,
//! staged with the scripted harness in `common/harness.rs`.

mod common;

use common::harness::{Harness, GROUP};
use synod::paxos::placement::{preferred_leader, BACKOFF_TIMEOUTS};
use synod::paxos::{LeaderPlacement, Membership, MessageBody, NodeId, Role};

/// Three replicas with placement on: (preferred, another, the third).
fn placed() -> (Harness, u32, u32, u32) {
    let mut h = Harness::new(3, 8);
    h.configure(&|c| c.leader_placement = LeaderPlacement::Balanced);
    let membership = Membership::new(vec![NodeId(1), NodeId(2), NodeId(3)]);
    let p = preferred_leader(GROUP, &membership).0;
    let mut others = (1..=3).filter(|n| *n != p);
    let l = others.next().expect("three replicas");
    let o = others.next().expect("three replicas");
    (h, p, l, o)
}

/// `l` leads `[l, o]` while `p` is down, with values chosen `p` never saw, for long
/// enough to be past the hold time; then `p` restarts from its log.
fn lead_without_preferred(h: &mut Harness, p: u32, l: u32, o: u32) {
    h.crash(p);
    h.elect(l, &[l, o]);
    for i in 0..5 {
        h.propose(l, &format!("v{i}"));
        h.deliver_among(&[l, o]);
    }
    for _ in 0..30 {
        h.tick(150, &[l, o]);
        h.deliver_among(&[l, o]);
    }
    assert_eq!(h.replica(l).group.role(), Role::Leader);
    assert_eq!(
        h.replica(l).group.counters().placement_transfers,
        0,
        "no move back while the preferred replica is down"
    );
    // What was sent to p while it was down is lost.
    h.drop_where(&|m| m.to == NodeId(p));
    h.restart(p, false);
}

fn leader(h: &Harness) -> Option<u32> {
    (1..=3).find(|n| h.replica(*n).up && h.replica(*n).group.role() == Role::Leader)
}

// Goal: a stable leader that is not the preferred replica hands leadership to it once
// it is back, live and proven caught up (by a probe in an idle group), and the
// preferred replica then keeps it: no ping-pong.
// Method: the preferred replica p is down while l leads and chooses values; p restarts;
// time passes in 50 ms steps with every message delivered; then 20 s more.
#[test]
fn leadership_moves_back_to_the_caught_up_preferred_replica() {
    let (mut h, p, l, o) = placed();
    lead_without_preferred(&mut h, p, l, o);
    let mut steps = 0;
    while leader(&h) != Some(p) {
        steps += 1;
        assert!(steps <= 200, "p leads within 10 s of its restart");
        h.tick(50, &[1, 2, 3]);
        h.deliver_among(&[1, 2, 3]);
    }
    let counters = h.replica(l).group.counters();
    assert_eq!(counters.placement_transfers, 1);
    assert!(counters.placement_probes >= 1, "the idle group was probed");
    assert_eq!(counters.handovers, 1);
    let ballot = h.ballot_of(p);
    h.propose(p, "after");
    for _ in 0..400 {
        h.tick(50, &[1, 2, 3]);
        h.deliver_among(&[1, 2, 3]);
    }
    assert_eq!(leader(&h), Some(p), "p still leads");
    assert_eq!(h.ballot_of(p), ballot, "at the same ballot: no ping-pong");
    for n in [p, l, o] {
        let counters = h.replica(n).group.counters();
        let expected = u64::from(n == l);
        assert_eq!(counters.placement_transfers, expected, "node {n}");
        assert_eq!(
            h.visible_values(n),
            vec!["v0", "v1", "v2", "v3", "v4", "after"],
            "node {n}"
        );
    }
}

// Goal: a live preferred replica that has not proven, at the leader's ballot, that it
// holds the leader's chosen prefix is never a transfer target; probes stay bounded.
// Method: as above, but every Accept to p is lost (heartbeats and catch-up reach it);
// 10 s pass.
#[test]
fn no_move_back_to_an_unproven_replica() {
    let (mut h, p, l, o) = placed();
    lead_without_preferred(&mut h, p, l, o);
    let probes_before = h.replica(l).group.counters().placement_probes;
    for _ in 0..200 {
        h.tick(50, &[1, 2, 3]);
        h.drop_where(&|m| m.to == NodeId(p) && matches!(m.body, MessageBody::Accept { .. }));
        h.deliver_among(&[1, 2, 3]);
        h.drop_where(&|m| m.to == NodeId(p) && matches!(m.body, MessageBody::Accept { .. }));
    }
    assert_eq!(leader(&h), Some(l), "l still leads");
    let counters = h.replica(l).group.counters();
    assert_eq!(counters.placement_transfers, 0);
    let probes = counters.placement_probes - probes_before;
    assert!(
        (1..=11).contains(&probes),
        "{probes} probes in 10 s: at most one per election timeout"
    );
}

// Goal: hysteresis: a move back that fails (the preferred replica never takes over) is
// not retried by the same replica before the backoff, whoever leads meanwhile.
// Method: as the first scenario, but every Handover, PreVote and Prepare from p is
// lost, so p never leads; 30 s pass in 50 ms steps; the time of every attempt of
// every replica is noted, and one replica's attempts must lie at least
// BACKOFF_TIMEOUTS election timeouts apart.
#[test]
fn failed_move_backs_back_off() {
    let (mut h, p, l, o) = placed();
    lead_without_preferred(&mut h, p, l, o);
    let lost = |m: &synod::paxos::Message| {
        matches!(m.body, MessageBody::Handover { .. })
            || (m.from == NodeId(p)
                && matches!(
                    m.body,
                    MessageBody::PreVote { .. } | MessageBody::Prepare { .. }
                ))
    };
    let mut attempts: Vec<(u32, u64)> = Vec::new();
    let mut counted = [0u64; 4];
    for _ in 0..600 {
        h.tick(50, &[1, 2, 3]);
        h.drop_where(&lost);
        h.deliver_among(&[1, 2, 3]);
        h.drop_where(&lost);
        for n in [l, o] {
            let now = h.replica(n).group.counters().placement_transfers;
            if now > counted[n as usize] {
                counted[n as usize] = now;
                attempts.push((n, h.now.0 / 1_000_000));
            }
        }
    }
    assert!(attempts.len() >= 2, "attempts {attempts:?}");
    let backoff_ms = BACKOFF_TIMEOUTS * 1_000; // election timeout: 1 s (`GroupConfig::new`)
    for n in [l, o] {
        let mine: Vec<u64> = attempts
            .iter()
            .filter(|(m, _)| *m == n)
            .map(|(_, at)| *at)
            .collect();
        for pair in mine.windows(2) {
            assert!(
                pair[1] - pair[0] >= backoff_ms,
                "node {n} retried {} ms after its attempt at {} ms: {attempts:?}",
                pair[1] - pair[0],
                pair[0]
            );
        }
    }
    println!("move-back attempts (node, ms): {attempts:?}");
    assert_eq!(h.replica(p).group.counters().placement_transfers, 0);
}
