//! The learner side of a group: learning what is chosen from the leader's watermark or
//! by catch-up, and a replica's way back to voting after it lost state.
//!
//! A value at instance i is known chosen when the leader at ballot b says
//! `chosen_through >= i` and this replica accepted i at exactly b (a leader proposes
//! one value per instance per ballot), or when a peer sends it by catch-up.
//!
//! Lost state (Paxos Made Live §5.1): a replica whose log was emptied or corrupted may
//! have broken promises and forgotten acceptances that a quorum counted on. It votes
//! again only once it has (1) heard since restart from enough peers that any quorum it
//! was part of overlaps them (n − quorum + 1 other voters), (2) raised its promise above
//! every ballot they report, and (3) learned chosen values through the highest instance
//! any of them had accepted. Anything it may have acknowledged is then known chosen.
//! Only chunks from voters count toward (1) and (2): a peer itself re-learning lost
//! state serves its chosen values (facts) but reports a promise and an accepted range
//! that may be below what it had (`from_voter: false`), so counting it could let the
//! rejoiner miss a quorum it once belonged to. An empty chunk from a voter behind the
//! request counts: its promise and accepted range are as current as in any chunk.
//!
//! Known hole (open; `tests/rejoin5.rs` reproduces it and is ignored until it is
//! closed): the three conditions do not fence the ballots the rejoiner may have voted
//! at. Let P be the highest promise reported. Every ballot b at which the replica voted
//! before the loss is at most P (b's phase-1 quorum holds a reporter, which promised b
//! before answering). But a reporter whose promise is still at most b when it answers
//! may accept at b afterwards, when an Accept sent before the loss reaches it: with the
//! lost vote, that completes a quorum at b that no answer showed, and a later leader
//! whose phase-1 quorum holds the rejoiner and none of that quorum's other members
//! chooses a second value. Five voters: leader D at b, rejoiner R, answers from A, B
//! and C; v chosen by {D, R, A} at b once A accepts after its answer; C then leads with
//! {B, C, R} and fills the instance with its own entry. Learning chosen values through
//! the reported ranges cannot see it (A had not accepted yet). A sound rule must make
//! every ballot at or below P unable to gather an acceptance the rejoiner does not learn
//! about before it votes, for instance: (a) n − quorum + 1 voters answer with a promise
//! above P (they accept nothing at or below P afterwards, and what they accepted before
//! lies in their ranges), which needs a ballot change after the restart (Paxos Made
//! Live's "an instance proposed after the restart is chosen" supplies one only when the
//! leader changes); or (b) an answer from a leader that has completed phase 1 at a
//! ballot of at least P, and chosen values through its accepted range (any quorum at a
//! ballot b below it that holds the lost vote meets its phase-1 quorum in a member that
//! accepted at b before promising, and at its own ballot it proposed the instance
//! before the loss), which needs a chunk to say that its sender leads. Separately, a
//! promise above P made before the loss to a candidate whose phase 1 had not completed
//! is forgotten too (the promise floor across a disk loss).
//!
//! A replica below its vote floor (`checkpoint`) wants catch-up until it reaches it,
//! from every peer: it withholds its promise meanwhile, so there may be no leader.

use super::group::Group;
use super::message::MessageBody;
use super::output::Output;
use super::types::{Ballot, Entry, Instance, Nanos, NodeId};

impl Group {
    /// Learns chosen instances from the watermark of the leader at `ballot`.
    pub(super) fn advance_chosen_from_leader(
        &mut self,
        now: Nanos,
        from: NodeId,
        ballot: Ballot,
        leader_chosen: Instance,
        out: &mut Output,
    ) {
        let before = self.chosen_through;
        while self.chosen_through < leader_chosen {
            let instance = self.chosen_through.next();
            match self.log.get_mut(&instance) {
                Some(slot) if slot.ballot == ballot || slot.chosen => {
                    slot.chosen = true;
                    self.chosen_through = instance;
                }
                Some(_) | None => break,
            }
        }
        if self.chosen_through > before {
            self.on_chosen_advanced(out);
        }
        self.note_leader_watermark(now, from, leader_chosen, out);
    }

    /// Notes that `from` has chosen through `leader_chosen`; asks for catch-up when this
    /// replica cannot learn it from its own accepted values.
    pub(super) fn note_leader_watermark(
        &mut self,
        now: Nanos,
        from: NodeId,
        leader_chosen: Instance,
        out: &mut Output,
    ) {
        if leader_chosen > self.chosen_through {
            if !self.catch_up_wanted {
                self.catch_up_wanted = true;
                self.catch_up_due = now;
            }
            if self.leader_hint.is_none() {
                self.leader_hint = Some((from, Ballot::ZERO));
            }
            if now >= self.catch_up_due {
                self.request_catch_up(now, out);
            }
        }
    }

    /// Sends a catch-up request: to the leader when lagging, to every voter when
    /// rebuilding lost state (it needs to hear from several) or below its vote floor
    /// (the values it must re-learn may be held by any peer, a leader or not, a voter
    /// or not: with its vote withheld there may be no leader to ask).
    pub(super) fn request_catch_up(&mut self, now: Nanos, out: &mut Output) {
        let from = self.chosen_through.next();
        if self.rejoin.is_some() || self.relearning_vote_floor() {
            let voters = self.latest_membership().voters().to_vec();
            for node in voters {
                if node != self.config.node {
                    self.send(out, node, MessageBody::CatchUpRequest { from });
                }
            }
        } else {
            let target = match self.leader_hint {
                Some((node, _)) if node != self.config.node => Some(node),
                Some(_) | None => {
                    let voters: Vec<NodeId> = self
                        .latest_membership()
                        .voters()
                        .iter()
                        .copied()
                        .filter(|n| *n != self.config.node)
                        .collect();
                    (!voters.is_empty()).then(|| voters[self.prng.index(voters.len())])
                }
            };
            if let Some(node) = target {
                self.send(out, node, MessageBody::CatchUpRequest { from });
            }
        }
        self.catch_up_due = now.plus(self.config.retransmit_ns);
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the fields of a CatchUpChunk message, as Group::step destructures it"
    )]
    pub(super) fn on_catch_up_chunk(
        &mut self,
        now: Nanos,
        from: NodeId,
        peer_chosen: Instance,
        (peer_promised, peer_accepted_max, from_voter): (Ballot, Instance, bool),
        first: Instance,
        entries: Vec<Entry>,
        out: &mut Output,
    ) {
        // In bounds (`MessageBody::check_bounds`): `first + len` and `peer_chosen + 1`
        // are at most `Instance::MAX + 1`. An empty chunk claims nothing: a peer
        // behind the request says so with one (it has nothing from `first` on), and its
        // promise and accepted range count toward a rejoin like any other chunk's.
        if first.0 == 0
            || (!entries.is_empty() && first.0 + entries.len() as u64 > peer_chosen.0 + 1)
        {
            // Claims chosen values beyond its own chosen watermark.
            self.ignore("catch_up_chunk_malformed");
            return;
        }
        self.highest_round_seen = self.highest_round_seen.max(peer_promised.round);
        let before = self.chosen_through;
        for (offset, entry) in entries.into_iter().enumerate() {
            let instance = Instance(first.0 + offset as u64);
            if instance <= self.chosen_through {
                continue;
            }
            if instance != self.chosen_through.next() {
                self.ignore("catch_up_chunk_gap");
                break;
            }
            self.learn_chosen(instance, entry, out);
        }
        if self.chosen_through > before {
            self.on_chosen_advanced(out);
        }
        if let Some(rejoin) = self.rejoin.as_mut() {
            // A peer re-learning lost state itself reports a promise and an accepted
            // range that may be below what it had: its chosen values teach, its report
            // does not count (`acceptor`, `may_serve_catch_up`).
            if from != self.config.node && from_voter {
                // The first answer since restart is what safety needs; later ones would
                // move the target forever under load.
                rejoin
                    .heard
                    .entry(from)
                    .or_insert((peer_promised, peer_accepted_max));
            }
        }
        if peer_chosen > self.chosen_through {
            // More to fetch: ask again at once.
            self.catch_up_wanted = true;
            self.catch_up_due = now;
            if self.rejoin.is_none() {
                let from_instance = self.chosen_through.next();
                self.send(
                    out,
                    from,
                    MessageBody::CatchUpRequest {
                        from: from_instance,
                    },
                );
                self.catch_up_due = now.plus(self.config.retransmit_ns);
            }
        } else {
            self.catch_up_wanted = false;
        }
    }

    /// Whether this replica, rebuilding lost state, may campaign to end it: it has
    /// heard since restart from n − quorum + 1 other voters, so its campaign's round
    /// lies above every round it led at before the loss (module docs, "Rejoin").
    pub(super) fn rejoin_may_campaign(&self) -> bool {
        let Some(rejoin) = self.rejoin.as_ref() else {
            return false;
        };
        let membership = self.latest_membership();
        let others = membership
            .voters()
            .iter()
            .filter(|n| **n != self.config.node)
            .count();
        let needed = membership.voters().len() - membership.quorum() + 1;
        let heard = membership
            .voters()
            .iter()
            .filter(|n| **n != self.config.node && rejoin.heard.contains_key(n))
            .count();
        heard >= needed.min(others)
    }

    /// Ends the lost-state period: this replica's own Phase 1 completed with a quorum
    /// of the other voters (its own acceptor, not voting, promised nothing), so every
    /// ballot at which it may have voted is fenced and reported (module docs).
    pub(super) fn end_rejoin(&mut self) {
        if self.rejoin.take().is_some() {
            self.voting = true;
            self.catch_up_wanted = false;
        }
    }
}
