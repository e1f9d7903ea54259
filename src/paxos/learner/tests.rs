//! Retirement (`learner`, "Retirement"): the report on the wire, a rejoiner that hears
//! of or learns a membership change retires and never votes, an unchanged group
//! rejoins as before, a checkpoint keeps the change, a restart stays retired, and a
//! leader refuses to add a retired node.

use super::super::test_support::{elected, message};
use super::super::{
    Ballot, Body, Entry, Group, GroupConfig, GroupId, Input, Instance, Membership, MessageBody,
    Nanos, NodeId, Output, ProposalId, ProposeError, Restore, Role, RETIRED_REASON,
};

fn three() -> Membership {
    Membership::new(vec![NodeId(1), NodeId(2), NodeId(3)])
}

fn config(node: u32) -> GroupConfig {
    GroupConfig::new(NodeId(node), GroupId(1), three())
}

/// Node 2 of {1, 2, 3} restarted with its log lost.
fn rejoiner() -> Group {
    let restore = Restore {
        lost_state: true,
        ..Restore::default()
    };
    Group::new(config(2), restore, Nanos(0))
}

fn at(round: u64, node: u32) -> Ballot {
    Ballot {
        round,
        node: NodeId(node),
    }
}

/// An empty catch-up chunk from voter `from`, chosen through 0, with its report.
fn chunk(from: u32, membership_changed: bool, entries: Vec<Entry>) -> MessageBody {
    MessageBody::CatchUpChunk {
        chosen_through: Instance(entries.len() as u64),
        promised: at(5, from),
        accepted_max: Instance(entries.len() as u64),
        first: Instance(1),
        entries,
        from_voter: true,
        membership_changed,
    }
}

fn step(group: &mut Group, now: u64, from: u32, body: MessageBody) -> Output {
    let mut out = Output::default();
    let input = message(group, NodeId(from), body);
    group.step(Nanos(now), input, &mut out);
    out
}

/// Every message `out` sends, held or not.
fn sent(out: &Output) -> Vec<MessageBody> {
    out.send
        .iter()
        .chain(&out.send_after_persist)
        .map(|m| m.body.clone())
        .collect()
}

/// Whether `body` is a vote or a campaign (what a retired replica never sends).
fn votes(body: &MessageBody) -> bool {
    matches!(
        body,
        MessageBody::Promise { .. }
            | MessageBody::Accepted { .. }
            | MessageBody::HeartbeatAck { .. }
            | MessageBody::Prepare { .. }
            | MessageBody::PreVote { .. }
            | MessageBody::Accept { .. }
    )
}

/// Offers `group` a prepare, an accept and a heartbeat from node 1 at high ballots and
/// lets its election timer run out many times: it must send no vote nor campaign.
fn assert_never_votes(group: &mut Group) {
    let mut bodies = Vec::new();
    let prepare = MessageBody::Prepare {
        ballot: at(50, 1),
        from: Instance(1),
    };
    bodies.extend(sent(&step(group, 1_000, 1, prepare)));
    let accept = MessageBody::Accept {
        ballot: at(50, 1),
        chosen_through: Instance(0),
        first: Instance(1),
        entries: vec![Entry {
            origin: at(50, 1),
            body: Body::Noop,
        }],
    };
    bodies.extend(sent(&step(group, 2_000, 1, accept)));
    for second in 1..60u64 {
        let mut out = Output::default();
        group.step(Nanos(second * 1_000_000_000), Input::Tick, &mut out);
        bodies.extend(sent(&out));
    }
    assert!(
        !bodies.iter().any(votes),
        "a retired replica voted or campaigned: {bodies:?}"
    );
    assert!(group.is_retired() && !group.is_voting() && group.role() == Role::Follower);
}

// Goal: every catch-up answer carries the sender's report, false while the group
// never changed, true once a Config entry is in its log (chosen or only accepted).
#[test]
fn a_chunk_reports_whether_the_membership_ever_changed() {
    let mut node1 = Group::new(config(1), Restore::default(), Nanos(0));
    let request = MessageBody::CatchUpRequest {
        from: Instance(1),
        credit: 1,
        retired: false,
    };
    let report = |out: &Output| {
        sent(out).iter().find_map(|b| {
            if let MessageBody::CatchUpChunk {
                membership_changed, ..
            } = b
            {
                Some(*membership_changed)
            } else {
                None
            }
        })
    };
    let out = step(&mut node1, 1, 2, request.clone());
    assert_eq!(report(&out), Some(false), "{out:?}");
    // An accepted, unchosen add of node 4.
    let four = Membership::new(vec![NodeId(1), NodeId(2), NodeId(3), NodeId(4)]);
    let accept = MessageBody::Accept {
        ballot: at(3, 3),
        chosen_through: Instance(0),
        first: Instance(1),
        entries: vec![Entry {
            origin: at(3, 3),
            body: Body::Config(four),
        }],
    };
    step(&mut node1, 2, 3, accept);
    assert!(node1.membership_changed());
    let out = step(&mut node1, 3, 2, request);
    assert_eq!(report(&out), Some(true), "{out:?}");
}

// Goal: a rejoiner that hears from any peer that the membership changed retires: it
// never votes nor campaigns, and its catch-up requests say so; a restart from its
// durable retirement keeps it retired.
#[test]
fn a_rejoiner_hearing_a_changed_membership_retires_and_never_votes() {
    let mut node2 = rejoiner();
    assert!(node2.is_rejoining() && !node2.is_voting());
    step(&mut node2, 1, 3, chunk(3, false, Vec::new()));
    assert!(
        node2.is_rejoining(),
        "one unchanged report: still rejoining"
    );
    step(&mut node2, 2, 1, chunk(1, true, Vec::new()));
    assert!(node2.is_retired() && !node2.is_rejoining());
    assert_never_votes(&mut node2);
    let mut out = Output::default();
    node2.step(Nanos(70_000_000_000), Input::Tick, &mut out);
    let heartbeat = MessageBody::Heartbeat {
        ballot: at(50, 1),
        chosen_through: Instance(3),
        sent_at: Nanos(0),
        checksum_through: Instance(0),
        checksum: 0,
    };
    let out = step(&mut node2, 71_000_000_000, 1, heartbeat);
    assert!(
        sent(&out)
            .iter()
            .any(|b| matches!(b, MessageBody::CatchUpRequest { retired: true, .. })),
        "it keeps learning, and says it is retired: {out:?}"
    );

    // The restart: the shard restores it retired (its marker beside the log).
    let restore = Restore {
        lost_state: true,
        retired: true,
        ..Restore::default()
    };
    let mut restarted = Group::new(config(2), restore, Nanos(0));
    assert!(!restarted.is_rejoining());
    assert_never_votes(&mut restarted);
}

// Goal: a rejoiner that learns a Config entry itself (here from an unchanged-looking
// report of a peer whose chunk holds it) retires too.
#[test]
fn a_rejoiner_learning_a_config_entry_retires() {
    let mut node2 = rejoiner();
    let add = Entry {
        origin: at(1, 1),
        body: Body::Config(Membership::new(vec![
            NodeId(1),
            NodeId(2),
            NodeId(3),
            NodeId(4),
        ])),
    };
    step(&mut node2, 1, 1, chunk(1, false, vec![add]));
    assert_eq!(node2.chosen_through(), Instance(1));
    assert!(node2.is_retired());
    assert_never_votes(&mut node2);
}

// Goal: in a group that never changed, the rejoin goes on as before: two unchanged
// reports (n - q + 1 of three), its own Phase 1 with both others, and it votes.
#[test]
fn an_unchanged_group_still_rejoins() {
    let mut node2 = rejoiner();
    step(&mut node2, 1, 1, chunk(1, false, Vec::new()));
    step(&mut node2, 2, 3, chunk(3, false, Vec::new()));
    assert!(node2.is_rejoining() && !node2.is_retired());
    let mut out = Output::default();
    node2.step(Nanos(10_000_000_000), Input::Tick, &mut out);
    let ballot = sent(&out)
        .iter()
        .find_map(|b| {
            if let MessageBody::Prepare { ballot, .. } = b {
                Some(*ballot)
            } else {
                None
            }
        })
        .expect("the rejoiner campaigns");
    for from in [1, 3] {
        let promise = MessageBody::Promise {
            ballot,
            chosen_through: Instance(0),
            entries: Vec::new(),
            truncated: false,
        };
        step(&mut node2, 10_000_000_001, from, promise);
    }
    assert!(node2.is_voting() && !node2.is_rejoining() && !node2.is_retired());
    assert_eq!(node2.role(), Role::Leader);
}

// Goal: a checkpoint keeps the change, even after a change back to the initial
// voters: a replica restored from it reports it, and a replica that lost its log and
// restores that checkpoint retires at its start.
#[test]
fn a_checkpoint_keeps_the_membership_change() {
    let four = Membership::new(vec![NodeId(1), NodeId(2), NodeId(3), NodeId(4)]);
    let mut node1 = Group::new(config(1), Restore::default(), Nanos(0));
    node1.configs = vec![
        (Instance(1), three()),
        (Instance(10), four),
        (Instance(20), three()),
    ];
    node1.applied_through = Instance(30);
    let base = node1.checkpoint_base();
    assert_eq!(base.configs.len(), 2, "{:?}", base.configs);
    assert_eq!(base.configs[1], (Instance(20), three()));
    base.validate().expect("a valid base");
    let restored = |lost_state: bool| Restore {
        lost_state,
        checkpoint: Some(base.clone()),
        chosen_through: Instance(30),
        ..Restore::default()
    };
    let voter = Group::new(config(1), restored(false), Nanos(0));
    assert!(voter.membership_changed() && voter.is_voting());
    assert_eq!(voter.membership_at(Instance(31)), &three());
    let lost = Group::new(config(2), restored(true), Nanos(0));
    assert!(lost.is_retired() && !lost.is_voting());

    // A group that never changed folds to one membership and reports nothing.
    let mut plain = Group::new(config(1), Restore::default(), Nanos(0));
    plain.applied_through = Instance(30);
    assert_eq!(
        plain.checkpoint_base().configs,
        vec![(Instance(1), three())]
    );
    assert!(!plain.membership_changed());
}

// Goal: a leader refuses to add a node whose catch-up request says it retired, with
// the reason the operator needs, and proposes nothing.
#[test]
fn a_leader_refuses_to_add_a_retired_node() {
    let (mut leader, _) = elected(config(1), NodeId(2), Nanos(10_000_000_000), Vec::new());
    let four = Membership::new(vec![NodeId(1), NodeId(2), NodeId(3), NodeId(4)]);
    let mut out = Output::default();
    let id = ProposalId(77);
    let now = Nanos(10_000_000_001);
    leader.step(
        now,
        Input::ChangeMembership {
            id,
            membership: four,
        },
        &mut out,
    );
    assert!(out.complete.is_empty(), "the add waits for the newcomer");
    let request = MessageBody::CatchUpRequest {
        from: Instance(1),
        credit: 1,
        retired: true,
    };
    let out = step(&mut leader, now.0 + 1, 4, request);
    let refused = out.complete.iter().find(|c| c.id == id).expect("answered");
    assert_eq!(
        refused.error,
        ProposeError::Rejected {
            reason: RETIRED_REASON
        }
    );
    assert_eq!(leader.counters().adds_refused_retired, 1);
    assert_eq!(leader.latest_membership(), &three());
}
