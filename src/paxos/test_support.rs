//! What the core's unit tests share: a message input, and a replica elected leader of
//! {itself, a peer, a third voter} through its own pre-vote and Phase 1.

use super::{
    Ballot, Group, GroupConfig, Input, Instance, Message, MessageBody, Nanos, NodeId, Output,
    PromisedEntry, Restore, Role,
};

/// `body` from `from` to `group`'s replica.
pub(super) fn message(group: &Group, from: NodeId, body: MessageBody) -> Input {
    Input::Message(Message {
        from,
        to: group.config().node,
        group: group.config().group,
        body,
    })
}

/// A replica of `config` elected at `at`, ten election timeouts after its start: its
/// timer runs out, `peer` grants its pre-vote, and it and `peer` promise (`peer`
/// reporting `reported`). Returns the replica and its ballot.
pub(super) fn elected(
    config: GroupConfig,
    peer: NodeId,
    at: Nanos,
    reported: Vec<PromisedEntry>,
) -> (Group, Ballot) {
    let node = config.node;
    let mut group = Group::new(config, Restore::default(), Nanos(0));
    let mut out = Output::default();
    group.step(at, Input::Tick, &mut out);
    let Some(MessageBody::PreVote { ballot }) = out.send.first().map(|m| m.body.clone()) else {
        panic!("a pre-vote after the election timeout: {out:?}");
    };
    let granted = MessageBody::PreVoteReply {
        ballot,
        granted: true,
    };
    group.step(at, message(&group, peer, granted), &mut out);
    assert_eq!(group.role(), Role::Candidate);
    for (from, entries) in [(node, Vec::new()), (peer, reported)] {
        let promise = MessageBody::Promise {
            ballot,
            chosen_through: Instance(0),
            entries,
            truncated: false,
        };
        group.step(at, message(&group, from, promise), &mut out);
    }
    assert_eq!(group.role(), Role::Leader);
    (group, ballot)
}
