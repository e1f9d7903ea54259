//! Leadership at runtime: transfer to a named replica, check-quorum, and pre-vote.
//! None of it changes what may be chosen (a transfer is an early Phase 1, a pre-vote
//! asks before a Phase 1, check-quorum only stops a leader); it decides WHEN a replica
//! leads, and keeps the lease sound while it does.
//!
//! # Transfer (`Input::TransferLeadership { to }`)
//!
//! 1. The leader records the target and a deadline one election timeout away. From
//!    then on it takes no proposal: queued and new ones fail with
//!    `ProposeError::NotLeader { hint: Some(to) }`.
//! 2. What is in flight goes on until chosen (re-proposed values, StartWorking,
//!    client batches). When nothing is in flight and the target has accepted, at this
//!    ballot, an instance at or above the chosen watermark (it holds everything chosen
//!    but at most an accept window, so its Phase 1 does not lose to catch-up; without
//!    that evidence the leader proposes one no-op per retransmit interval, whose
//!    accept gives it), the leader steps down (it stops
//!    serving reads: `read_index` needs a leader), ends its own lease grant, and sends
//!    `Handover { ballot, target }` to every voter.
//! 3. A replica that follows exactly that ballot of that sender ends the lease it
//!    granted the sender (the sender acts on it no more), so it promises the target;
//!    the target itself runs Phase 1 at once, at a round above the handover's,
//!    without a pre-vote.
//! 4. If the in-flight instances are not chosen by the deadline, the transfer is
//!    abandoned and the leader takes proposals again. If the target does not take
//!    over, the former leader's election timer (reset by the step down) runs out and
//!    any replica, the former leader included, campaigns as after a failure.
//!
//! Lease: a follower ends its grant to the leader L at ballot b only on a `Handover`
//! from L at b, which L sends after it stopped acting on its lease (stepped down), so
//! no promise the grant withheld is made while L acts on it. A stale `Handover` (L
//! leads again at b' > b) does not match the ballot the follower follows, and is
//! dropped. The simulator's lease checker is told of each handover
//! (`Group::handed_over`) and fails a lease acted on after it.
//!
//! # Check-quorum
//!
//! An elected leader that has not heard, at its ballot, from a quorum of every
//! membership in effect (itself included) within one election timeout steps down:
//! promises, accepted acks and heartbeat acks count (`Leading::heard`). The first
//! election timeout after the election is a grace period (followers may still grant
//! their lease to the previous leader, and not ack heartbeats).
//!
//! # Pre-vote
//!
//! A replica whose election timer runs out does not raise its promise at once: it
//! sends `PreVote { ballot }` for the ballot it would campaign at, and campaigns only
//! once a quorum of the membership (itself included) grants it. A replica grants
//! exactly when its `on_prepare` would promise that ballot now: it votes, is not
//! fenced, has promised nothing above, and grants no lease to another replica; one
//! that promised above answers `Reject`, as to a prepare, so that the next pre-vote
//! goes above. A pre-vote changes no state at the receiver. So a replica cut off from a live leader
//! never raises its promise above the leader's ballot, and when it returns the
//! leader's heartbeats are not rejected (a `Reject` above its ballot makes a leader
//! step down). A replica rebuilding lost state (`learner`, "Rejoin") campaigns without
//! a pre-vote: its own Phase 1 is how it may vote again.

use std::collections::BTreeSet;

use super::group::{Group, Role};
use super::message::MessageBody;
use super::output::Output;
use super::placement::Placement;
use super::types::{Ballot, Nanos, NodeId};

/// A transfer under way at the leader.
#[derive(Clone, Copy, Debug)]
pub(super) struct Transfer {
    /// The replica that is to lead next.
    pub to: NodeId,
    /// When the transfer is abandoned if what is in flight is not yet chosen.
    pub until: Nanos,
    /// No probe for the target's catch-up before this time.
    pub probe_due: Nanos,
}

/// A pre-vote under way.
#[derive(Clone, Debug)]
pub(super) struct PreVoting {
    /// The ballot asked about.
    pub ballot: Ballot,
    /// The voters that granted it (this replica included).
    pub granted: BTreeSet<NodeId>,
}

/// A replica's leadership state outside `Leading`.
#[derive(Clone, Debug, Default)]
pub(super) struct Leadership {
    /// The pre-vote under way, if any.
    pub pre_vote: Option<PreVoting>,
    /// The latest handover of this replica: its ballot, and when it stopped leading.
    pub handed_over: Option<(Ballot, Nanos)>,
    /// Move-back backoff and probe timers (`placement`).
    pub placement: Placement,
}

impl Group {
    /// The earliest time a `Tick` has something to do.
    #[must_use]
    pub fn next_deadline(&self) -> Nanos {
        let mut deadline = match (&self.leading, self.role) {
            (Some(leading), Role::Leader) => leading.heartbeat_due.min(leading.retransmit_due),
            (Some(leading), _) => self.election_deadline.min(leading.retransmit_due),
            (None, _) => self.election_deadline,
        };
        if self.wants_catch_up() {
            deadline = deadline.min(self.catch_up_due);
        }
        deadline
    }

    /// Draws the next election deadline from `[t, 2t)` after `now`.
    pub(super) fn reset_election_deadline(&mut self, now: Nanos) {
        let base = self.config.election_timeout_ns;
        let jitter = self.prng.below(base);
        self.election_deadline = now.plus(base + jitter);
    }

    /// The transfer target while this replica leads and hands over.
    #[must_use]
    pub fn transferring_to(&self) -> Option<NodeId> {
        let leading = self
            .leading
            .as_ref()
            .filter(|_| self.role == Role::Leader)?;
        leading.transfer.map(|t| t.to)
    }

    /// The latest handover of this replica (module docs): the ballot it led at and the
    /// local time at which it stopped acting on that ballot's lease.
    #[must_use]
    pub fn handed_over(&self) -> Option<(Ballot, Nanos)> {
        self.leadership.handed_over
    }

    pub(super) fn on_transfer_leadership(&mut self, now: Nanos, to: NodeId, out: &mut Output) {
        if self.role != Role::Leader {
            self.ignore("transfer_not_leader");
            return;
        }
        if to == self.config.node {
            self.ignore("transfer_to_self");
            return;
        }
        let voter = self.latest_membership().contains(to)
            && self.membership_at(self.chosen_through.next()).contains(to);
        if !voter {
            self.ignore("transfer_not_voter");
            return;
        }
        let until = now.plus(self.config.election_timeout_ns);
        let leading = self.leading.as_mut().expect("a leader has leading state");
        leading.transfer = Some(Transfer {
            to,
            until,
            probe_due: now,
        });
        // Queued proposals have not left: refused now, naming the target.
        self.fail_queue(out);
        self.advance_transfer(now, out);
    }

    /// Hands over once nothing is in flight; abandons the transfer at its deadline.
    pub(super) fn advance_transfer(&mut self, now: Nanos, out: &mut Output) {
        if self.role != Role::Leader {
            return;
        }
        let chosen = self.chosen_through;
        let Some(leading) = self.leading.as_mut() else {
            return;
        };
        let Some(transfer) = leading.transfer else {
            return;
        };
        if now >= transfer.until {
            leading.transfer = None;
            self.counters.transfers_abandoned += 1;
            return;
        }
        let drained = leading.inflight.len() == 0
            && leading.learned.is_empty()
            && leading.start_working.is_some_and(|at| at <= chosen);
        if !drained {
            return;
        }
        let caught_up = leading
            .acked_max
            .get(&transfer.to)
            .is_some_and(|acked| *acked >= chosen);
        if caught_up {
            self.hand_over(now, transfer.to, out);
        } else if now >= transfer.probe_due {
            // The target has not shown that it holds everything chosen (a voter just
            // added to an idle group, or one that lags): a candidate behind the chosen
            // log loses its Phase 1 to catch-up, and another replica takes over. One
            // no-op at this ballot, whose accept by the target is the evidence, as the
            // move-back's probe (`placement`); at most one per retransmit interval.
            leading.transfer = Some(Transfer {
                probe_due: now.plus(self.config.retransmit_ns),
                ..transfer
            });
            leading.probe_wanted = true;
            self.fill_window(now, false, out);
        }
    }

    /// Steps down in favour of `to` (module docs, "Transfer", step 2).
    fn hand_over(&mut self, now: Nanos, to: NodeId, out: &mut Output) {
        let leading = self.leading.as_mut().expect("a leader has leading state");
        leading.transfer = None;
        let ballot = leading.ballot;
        let mut receivers: BTreeSet<NodeId> = BTreeSet::new();
        receivers.extend(self.membership_at(self.chosen_through.next()).voters());
        receivers.extend(self.latest_membership().voters());
        receivers.remove(&self.config.node);
        // FIRST stop acting on the lease, THEN tell the voters they may end their grants.
        self.step_down(now, out);
        if self.lease_holder == Some(self.config.node) {
            self.lease_granted_until = self.lease_granted_until.min(now);
        }
        self.leadership.handed_over = Some((ballot, now));
        self.counters.handovers += 1;
        for node in receivers {
            self.send(out, node, MessageBody::Handover { ballot, target: to });
        }
    }

    pub(super) fn on_handover(
        &mut self,
        now: Nanos,
        from: NodeId,
        ballot: Ballot,
        target: NodeId,
        out: &mut Output,
    ) {
        if ballot.node != from {
            self.ignore("handover_malformed");
            return;
        }
        self.highest_round_seen = self.highest_round_seen.max(ballot.round);
        if self.role != Role::Follower || self.leader_hint != Some((from, ballot)) {
            self.ignore("handover_stale");
            return;
        }
        if self.lease_holder == Some(from) {
            self.lease_granted_until = self.lease_granted_until.min(now);
        }
        if target != self.config.node {
            return;
        }
        if self.may_campaign(now) && self.rejoin.is_none() {
            self.campaign(now, out);
        } else {
            self.ignore("handover_target_may_not_campaign");
        }
    }

    /// Checks whether an elected leader heard from a quorum of every membership in
    /// effect within the last election timeout (module docs, "Check-quorum"); true
    /// for anyone else, and during the grace period after the election.
    pub(super) fn quorum_heard(&self, now: Nanos) -> bool {
        let Some(leading) = self.leading.as_ref().filter(|l| l.elected) else {
            return true;
        };
        let timeout = self.config.election_timeout_ns;
        if now < leading.elected_at.plus(timeout) {
            return true;
        }
        let recent = |node: &&NodeId| {
            **node == self.config.node
                || leading
                    .heard
                    .get(*node)
                    .is_some_and(|at| now < at.plus(timeout))
        };
        [
            self.membership_at(self.chosen_through.next()),
            self.latest_membership(),
        ]
        .iter()
        .all(|membership| membership.voters().iter().filter(recent).count() >= membership.quorum())
    }

    /// The ballot this replica would campaign at: one round above every round it
    /// promised or heard of. None at `Ballot::ROUND_MAX` (counted as
    /// `campaign_round_max`; the election timer starts over).
    pub(super) fn next_ballot(&mut self, now: Nanos) -> Option<Ballot> {
        let seen = self.promised.round.max(self.highest_round_seen);
        let Some(round) = seen.checked_add(1).filter(|r| *r <= Ballot::ROUND_MAX) else {
            self.ignore("campaign_round_max");
            self.reset_election_deadline(now);
            return None;
        };
        Some(Ballot {
            round,
            node: self.config.node,
        })
    }

    /// Starts a pre-vote for the ballot this replica would campaign at (module docs,
    /// "Pre-vote"); campaigns at once when this replica alone is a quorum.
    pub(super) fn start_pre_vote(&mut self, now: Nanos, out: &mut Output) {
        let Some(ballot) = self.next_ballot(now) else {
            return;
        };
        self.counters.pre_votes += 1;
        self.reset_election_deadline(now);
        let membership = self.membership_at(self.chosen_through.next()).clone();
        let granted = BTreeSet::from([self.config.node]);
        if membership.is_quorum(&granted) {
            self.campaign(now, out);
            return;
        }
        self.leadership.pre_vote = Some(PreVoting { ballot, granted });
        for node in membership.voters() {
            if *node != self.config.node {
                self.send(out, *node, MessageBody::PreVote { ballot });
            }
        }
    }

    pub(super) fn on_pre_vote(
        &mut self,
        now: Nanos,
        from: NodeId,
        ballot: Ballot,
        out: &mut Output,
    ) {
        if ballot.node != from {
            self.ignore("pre_vote_malformed");
            return;
        }
        if ballot < self.promised {
            // As `on_prepare` answers: the sender learns the round to go above.
            let promised = self.promised;
            self.send(out, from, MessageBody::Reject { promised });
            return;
        }
        // Exactly when `on_prepare` would promise `ballot` now.
        let leased_to_other = now < self.lease_granted_until && self.lease_holder != Some(from);
        let granted = self.voting && !self.fenced && !leased_to_other;
        self.send(out, from, MessageBody::PreVoteReply { ballot, granted });
    }

    pub(super) fn on_pre_vote_reply(
        &mut self,
        now: Nanos,
        from: NodeId,
        ballot: Ballot,
        granted: bool,
        out: &mut Output,
    ) {
        let Some(pre_vote) = self.leadership.pre_vote.as_mut() else {
            // A late reply to the pre-vote that led to this replica's campaign is no news.
            if self.ballot().is_none_or(|b| b < ballot) {
                self.ignore("pre_vote_reply_stale");
            }
            return;
        };
        if pre_vote.ballot != ballot {
            self.ignore("pre_vote_reply_stale");
            return;
        }
        if !granted {
            self.ignore("pre_vote_denied");
            return;
        }
        pre_vote.granted.insert(from);
        let granted = pre_vote.granted.clone();
        let quorum = self
            .membership_at(self.chosen_through.next())
            .is_quorum(&granted);
        if quorum && self.role != Role::Leader && self.may_campaign(now) {
            self.leadership.pre_vote = None;
            self.campaign(now, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{elected, message};
    use super::super::{
        Body, GroupConfig, GroupId, Input, Instance, InstanceRange, LeaderPlacement, Membership,
        MessageBody, Nanos, NodeId, Output, Role,
    };

    // Goal: a leader hands over only to a target that holds everything chosen (it
    // accepted, at the leader's ballot, an instance at or above the chosen watermark);
    // without that evidence it proposes a no-op probe, and hands over once the target
    // accepted it. A target that lags loses its Phase 1 to catch-up, and another
    // replica takes over (a transfer right after an add failed so in 3 of 4 runs).
    // Method: node 1 of {1, 2, 3} is elected with node 2; StartWorking is chosen by
    // 1 and 2; a transfer to 3 sends no Handover but an Accept of a no-op; its choice
    // by 1 and 2 sends none either; node 3's accept of it does.
    #[test]
    fn a_transfer_waits_for_the_target_to_hold_everything_chosen() {
        let (node, peer, target) = (NodeId(1), NodeId(2), NodeId(3));
        let mut config =
            GroupConfig::new(node, GroupId(0), Membership::new(vec![node, peer, target]));
        config.leader_placement = LeaderPlacement::Off;
        let at = Nanos(10 * config.election_timeout_ns);
        let (mut group, ballot) = elected(config, peer, at, Vec::new());
        let mut out = Output::default();
        let accepted = |last| MessageBody::Accepted {
            ballot,
            ranges: vec![InstanceRange {
                first: Instance(1),
                last: Instance(last),
            }],
        };
        for from in [node, peer] {
            group.step(at, message(&group, from, accepted(1)), &mut out);
        }
        assert_eq!(group.chosen_through(), Instance(1), "StartWorking chosen");
        let handovers = |out: &Output| {
            out.send
                .iter()
                .filter(|m| matches!(m.body, MessageBody::Handover { .. }))
                .count()
        };
        let mut out = Output::default();
        group.step(at, Input::TransferLeadership { to: target }, &mut out);
        assert_eq!(handovers(&out), 0, "node 3 accepted nothing at this ballot");
        let probe = out.send.iter().chain(&out.send_after_persist).any(|m| {
            matches!(&m.body, MessageBody::Accept { first, entries, .. }
                if *first == Instance(2) && matches!(entries[..], [ref e] if e.body == Body::Noop))
        });
        assert!(probe, "a no-op probe at instance 2: {out:?}");
        let mut out = Output::default();
        for from in [node, peer] {
            group.step(at, message(&group, from, accepted(2)), &mut out);
        }
        assert_eq!(group.chosen_through(), Instance(2), "the probe chosen");
        assert_eq!(handovers(&out), 0, "node 3 has not accepted the probe yet");
        group.step(at, message(&group, target, accepted(2)), &mut out);
        assert_eq!(handovers(&out), 2, "a Handover to each other voter");
        assert_eq!(group.role(), Role::Follower);
    }
}
