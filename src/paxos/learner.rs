//! The learner side of a group: learning what is chosen from the leader's watermark or
//! by catch-up, and a replica's way back to voting after it lost state.
//!
//! A value at instance i is known chosen when the leader at ballot b says
//! `chosen_through >= i` and this replica accepted i at exactly b (a leader proposes
//! one value per instance per ballot), or when a peer sends it by catch-up.
//!
//! # Rejoin
//!
//! Lost state (Paxos Made Live §5.1): a replica whose log was emptied or corrupted may
//! have broken promises and forgotten acceptances that a quorum counted on. It does not
//! vote (promise or accept) until it has run Phase 1 itself, counting only the other
//! voters:
//! 1. it hears since restart, by catch-up, from n − quorum + 1 other voters
//!    (`rejoin_may_campaign`). Only chunks from voters count: a peer itself re-learning
//!    lost state serves its chosen values (facts) but reports a promise that may be
//!    below what it had (`from_voter: false`). An empty chunk from a voter behind the
//!    request counts: its promise is as current as in any chunk;
//! 2. it campaigns (`Group::campaign`) at a round above every round it has seen. Its
//!    own acceptor does not answer (it does not vote), so the Phase 1 completes only
//!    with promises from a quorum of the membership drawn from the other voters (three
//!    voters: both others; five: three of the four);
//! 3. once it does (`end_rejoin`, from `become_leader`), it votes again (its acceptor
//!    promised the ballot B at the campaign) and leads at B as any new leader does,
//!    re-proposing the highest-ballot value reported for each instance.
//!
//! A live leader does not hold the campaign off (a rejoiner's election timer is not
//! reset by heartbeats; its promise B then refuses the leader's heartbeats, the leader
//! steps down, and the peers promise once their lease grants run out), and a preempted
//! campaign is retried at the next timeout, as any candidate's. The cost: one election
//! per disk loss, which may depose a healthy leader.
//!
//! Why it is sound. Let Q be the quorum of other voters that promised B.
//! - B lies above every ballot b at which the replica voted before the loss. b's leader
//!   completed Phase 1 at b before that vote, with a quorum holding at least quorum − 1
//!   other voters; it meets Q ((quorum − 1) + quorum > n − 1) in a member that promised
//!   b before the loss, hence before answering B, which it would have refused below b.
//!   B = b is ruled out too: it would be a ballot of this replica's, whose Phase-1
//!   quorum (at least quorum − 1 others) meets the n − quorum + 1 voters of step 1 in a
//!   member that reported a promise of at least b, so B's round is above b's.
//! - After answering, no member of Q accepts below B; neither does the replica, whose
//!   promise is B from the campaign on.
//! - A quorum at a ballot b below B that holds the lost vote has quorum − 1 other
//!   members, which meet Q in a member m; if m accepted at b, it did so before promising
//!   B (above) and reported it in its promise (a quorum without the lost vote meets Q
//!   as well). So every value chosen, or still choosable, at a ballot below B is in the
//!   reports, and the leader at B proposes it. This closes the hole of an Accept sent
//!   before the loss that completes, with the lost vote, a quorum after the rejoiner
//!   heard from its peers (`tests/rejoin5.rs`); the former rule (vote once the peers
//!   are heard, promise raised to the highest they report, chosen values learned
//!   through their accepted ranges) let a later leader with the rejoiner in its quorum
//!   fill that instance with a second value.
//! - The rejoin floor of `sim::checkers::monotonic` follows: every ballot led in the
//!   group before the loss is below B, and the replica sends no vote below B.
//!
//! Not closed: a promise made before the loss to a candidate X at a ballot P above B
//! whose Phase 1 was still running. X may complete it after the rejoin with that
//! forgotten promise and quorum − 1 others that promised B first and P afterwards; the
//! replica, leading at B, counted its own acceptance at B into a quorum those others
//! need not meet, and X proposes another value at P. The rule narrows it (X's prepare
//! at P must have reached none of Q before they answered B, or they refuse B and the
//! rejoiner campaigns above P) but a fix needs X to discard the forgotten promise: the
//! promises of the rejoiner's peers telling candidates that it restarted, as crash
//! vectors do (Michael, Ports, Sharma, Szekeres, "Recovering Shared Objects Without
//! Stable Storage", DISC 2017). No test reproduces it yet.
//!
//! # Retirement
//!
//! The argument above counts the voters of the membership the rejoiner knows, and a
//! replica that lost its log knows only its initial one (`GroupConfig::membership`):
//! after a change it need not meet the quorums that counted its lost votes (an add
//! and a remove back, with an even count in between), and a node id removed and added
//! back would bring a promise made before the loss into the new membership. The rule:
//! - every catch-up answer (`CatchUpChunk`, `CatchUpRaw`, empty ones included) says
//!   whether the sender's group ever changed (`membership_ever_changed`: a Config
//!   entry accepted, learned or restored, chosen or not; a membership other than the
//!   initial one; more than one membership). It survives checkpoints and truncation:
//!   `checkpoint_base` keeps the membership before the one in effect, so a
//!   checkpoint's memberships list says so, and the WAL replays what lies above it;
//! - a rejoiner that hears `membership_changed` from any peer, or holds such evidence
//!   itself (a Config entry learned by catch-up, a restored checkpoint), retires
//!   (`retire_if_changed`): it never promises, accepts, grants a lease nor campaigns
//!   again under this node id, and keeps learning the log by catch-up as a non-voting
//!   learner. The shard writes the retirement durably beside the log
//!   (`Effects::retired_groups`) before the rejoin marker may go; a crash before that
//!   leaves it rejoining, which is safe (it has not voted), and it retires again;
//! - its catch-up requests say `retired`, and a leader refuses to add it as a voter
//!   (`joining`, `RETIRED_REASON`); still a voter, it simply never votes, and the
//!   operator removes it and starts the node under a new id.
//!
//! Why it suffices, checked against how a leader counts quorums (one of every
//! membership of `memberships_ahead`). Let c be the first change chosen before the
//! loss, at instance i. Every instance up to i − W was chosen before i was proposed (a
//! leader proposes only within W of its chosen watermark), and none holds a change (c
//! is the first), so the membership in effect at i is the initial one: n voters,
//! quorum q, and c was accepted by q of them, at least q − 1 other than the rejoiner.
//! The rejoiner must hear n − q + 1 other voters of that membership, and the sum
//! (q − 1) + (n − q + 1) = n exceeds the n − 1 others, so one of them accepted c
//! before the loss, hence before it answered, and still holds it (a slot leaves
//! memory only applied, into `configs`; a checkpoint keeps two memberships): it
//! reports a change, and the rejoiner retires. So a
//! rejoiner that completes its rejoin lost votes only in a group that never changed
//! before the loss, where the argument above holds as written. A change chosen after
//! the reports is in the reports of the rejoiner's Phase 1 (every value chosen or
//! choosable below B is) and is re-proposed at B; its effect lies W instances beyond
//! it, where the rejoiner cast no vote before the loss (proposing there needs the
//! change chosen, which happened after the loss). A node id removed and added back
//! after the loss: the removal is a change chosen before the re-add; chosen before
//! the loss, it is reported as above; after it, the rejoin either retires or
//! completes before the removal takes effect, and completes only with every vote it
//! lost fenced. Retiring on a mere accepted change, or on a peer's word, is never
//! unsafe: it only costs the node id.
//!
//! A replica below its vote floor (`checkpoint`) wants catch-up until it reaches it,
//! from every peer: it withholds its promise meanwhile, so there may be no leader.
//!
//! Credit renewals (`CatchUpRenewal`): a chunk that teaches something is acknowledged
//! at once, by a request granting `catch_up_credit_max` less the chunks learned whose
//! records are not yet durable; the same step sends this replica, once those records
//! are durable (`send_after_persist`), a notice (a `CatchUpRequest` addressed to
//! itself) that retires them and tops the credit up. Chunks in flight plus chunks
//! waiting for the disk thus stay within the credit (the bytes received and not
//! written stay bounded, and the shard does not refuse chunks for want of WAL room,
//! `wal_pending_size_max`), and a slow WAL sync costs the stream credit, not a round
//! trip per chunk: renewing only once each chunk was durable left a stream of large
//! values at one value per sync, slower than the cluster chose (seed 62246031965675).

use std::collections::VecDeque;

use super::group::{Group, Role};
use super::message::MessageBody;
use super::output::Output;
use super::types::{Ballot, Entry, Instance, Nanos, NodeId};

/// The requesting side of catch-up streaming: what its renewals grant (module docs).
#[derive(Clone, Debug, Default)]
pub(crate) struct CatchUpRenewal {
    /// The peer streaming to this replica: the sender of the last chunk that taught.
    source: Option<NodeId>,
    /// The `from` of the last request sent. A renewal never repeats it: the peer takes
    /// a repeated `from` for a lost chunk and starts its stream over.
    asked: Instance,
    /// The last instance of each chunk learned whose records are not known durable,
    /// ascending; at most `catch_up_credit_max` (an older one is taken as durable).
    unsynced: VecDeque<Instance>,
    /// The peer whose chunk the shard refused for want of WAL room, while the
    /// durability notice that restarts its stream is on its way.
    refused: Option<NodeId>,
}

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
                    self.send(out, node, self.catch_up_request(from));
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
                self.send(out, node, self.catch_up_request(from));
            }
        }
        self.catch_up_renewal.asked = from;
        self.catch_up_due = now.plus(self.config.retransmit_ns);
    }

    /// A catch-up request from `from` on, granting this replica's credit: at least one
    /// chunk (a request asks for something), else `catch_up_credit` chunks.
    pub(super) fn catch_up_request(&self, from: Instance) -> MessageBody {
        MessageBody::CatchUpRequest {
            from,
            credit: u32::try_from(self.catch_up_credit().max(1))
                .expect("validate bounds catch_up_credit_max by CATCH_UP_CREDIT_LIMIT"),
            retired: self.retired,
        }
    }

    /// Chunks a request may grant: `GroupConfig::catch_up_credit_max` less the chunks
    /// learned by catch-up whose records are not yet durable (module docs).
    pub(super) fn catch_up_credit(&self) -> usize {
        self.config
            .catch_up_credit_max
            .saturating_sub(self.catch_up_renewal.unsynced.len())
    }

    /// Notes `chunks` chunks learned through the chosen watermark: they count against
    /// the credit until the notice sent here after their records are durable arrives
    /// (`on_catch_up_durable`).
    fn note_chunks_learned(&mut self, chunks: usize, out: &mut Output) {
        let unsynced = &mut self.catch_up_renewal.unsynced;
        for _ in 0..chunks {
            unsynced.push_back(self.chosen_through);
        }
        while unsynced.len() > self.config.catch_up_credit_max {
            unsynced.pop_front();
        }
        let notice = MessageBody::CatchUpRequest {
            from: self.chosen_through.next(),
            credit: 0,
            retired: self.retired,
        };
        self.send_after_persist(out, self.config.node, notice);
    }

    /// The notice `note_chunks_learned` or `on_catch_up_refused` sent: everything
    /// learned below `first` is durable. Retires those chunks and, while catching up,
    /// restarts the stream whose chunk was refused, or tops up the credit of the
    /// stream (a renewal, when there is something new to acknowledge).
    pub(super) fn on_catch_up_durable(&mut self, now: Nanos, first: Instance, out: &mut Output) {
        let unsynced = &mut self.catch_up_renewal.unsynced;
        while unsynced.front().is_some_and(|last| *last < first) {
            unsynced.pop_front();
        }
        let refused = self.catch_up_renewal.refused.take();
        if !self.catch_up_wanted || self.rejoin.is_some() {
            return;
        }
        match refused {
            Some(peer) => self.restart_catch_up(now, peer, out),
            None => self.renew_catch_up(out),
        }
    }

    /// The shard refused a chunk of `from`'s stream starting at `first` for want of
    /// WAL room (`Input::CatchUpRefused`). The peer counts it in flight: waiting for
    /// the retransmit timer (several intervals after progress) would idle the stream
    /// for that long. Once the records the WAL holds now are durable (there is room
    /// again), a notice sent to this replica restarts the stream at the next
    /// instance (`restart_catch_up`). One notice at a time: the refusals of the
    /// chunks that followed are covered by the same restart.
    pub(super) fn on_catch_up_refused(&mut self, from: NodeId, first: Instance, out: &mut Output) {
        self.ignore("catch_up_chunk_refused");
        let known = from != self.config.node && self.latest_membership().voters().contains(&from);
        if !known
            || !self.catch_up_wanted
            || self.rejoin.is_some()
            || first < self.chosen_through.next()
            || self.catch_up_renewal.refused.is_some()
        {
            return;
        }
        self.catch_up_renewal.refused = Some(from);
        let notice = MessageBody::CatchUpRequest {
            from: self.chosen_through.next(),
            credit: 0,
            retired: self.retired,
        };
        self.send_after_persist(out, self.config.node, notice);
    }

    /// Asks `peer` to start its stream over at the next instance: a request repeating
    /// the previous `from` does (`stream`); when something was learned since that
    /// request (a renewal was held back for want of credit), a renewal first
    /// acknowledges it, so that the repeat is of that renewal's `from`.
    fn restart_catch_up(&mut self, now: Nanos, peer: NodeId, out: &mut Output) {
        let from = self.chosen_through.next();
        let request = self.catch_up_request(from);
        if from > self.catch_up_renewal.asked {
            self.send(out, peer, request.clone());
        }
        self.send(out, peer, request);
        self.catch_up_renewal.source = Some(peer);
        self.catch_up_renewal.asked = from;
        let credit = self.config.catch_up_credit_max as u64;
        self.catch_up_due = now.plus(self.config.retransmit_ns.saturating_mul(credit));
    }

    /// Acknowledges what was learned to the streaming peer and grants the credit left,
    /// at once; nothing when no credit is left (the durability notice renews) or
    /// nothing new was learned since the last request (a repeated `from` would make
    /// the peer start over).
    fn renew_catch_up(&mut self, out: &mut Output) {
        let from = self.chosen_through.next();
        let credit = self.catch_up_credit();
        let Some(to) = self.catch_up_renewal.source else {
            return;
        };
        if credit == 0 || from <= self.catch_up_renewal.asked {
            return;
        }
        self.catch_up_renewal.asked = from;
        let credit = u32::try_from(credit)
            .expect("validate bounds catch_up_credit_max by CATCH_UP_CREDIT_LIMIT");
        let retired = self.retired;
        self.send(
            out,
            to,
            MessageBody::CatchUpRequest {
                from,
                credit,
                retired,
            },
        );
    }

    /// Chunks learned by catch-up whose records are not known durable.
    pub(super) fn catch_up_unsynced(&self) -> usize {
        self.catch_up_renewal.unsynced.len()
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
        (peer_promised, peer_accepted_max, from_voter, peer_changed): (
            Ballot,
            Instance,
            bool,
            bool,
        ),
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
        if first > self.chosen_through.next() && !entries.is_empty() {
            // Overtaken by a later chunk of the stream (the network reorders): kept
            // until the gap fills, so that the renewal then covers it and the peer
            // need not send it again. Ignoring it left the peer counting it in
            // flight until the retransmit timer made the stream start over, once per
            // reordering: catch-up slower than the chosen values it chased.
            self.ignore("catch_up_chunk_ahead");
            self.catch_up_ahead.insert(first, entries);
            while self.catch_up_ahead.len() > self.config.catch_up_credit_max {
                self.catch_up_ahead.pop_last();
            }
        } else {
            self.learn_chunk(first, entries, out);
        }
        let mut chunks = 1;
        while let Some(kept) = self.catch_up_ahead.first_entry() {
            if *kept.key() > self.chosen_through.next() {
                break;
            }
            let (first, entries) = kept.remove_entry();
            self.learn_chunk(first, entries, out);
            chunks += 1;
        }
        if self.chosen_through > before {
            self.on_chosen_advanced(out);
            self.note_chunks_learned(chunks, out);
        }
        // Any peer's word that the membership changed retires a rejoiner, and so does
        // a Config entry it learned from this chunk (module docs, "Retirement").
        self.retire_if_changed(from != self.config.node && peer_changed);
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
            // More to fetch. Progress acknowledges the chunk and renews the peer's
            // credit at once (its stream goes on from where it is: `stream`), less
            // the chunks not yet durable (module docs). A chunk that taught nothing
            // (a duplicate, one after a lost one, an empty one while others are in
            // flight) asks nothing: renewing with the same `from` would make the peer
            // start over with every chunk in flight, for each such chunk.
            // The retransmit timer asks again if the stream stalls (go-back-N): after
            // progress it waits one retransmit interval per chunk of credit, since up
            // to that many chunks may be queued ahead of the next one on a slow link,
            // and asking again makes the peer send them all again.
            self.catch_up_wanted = true;
            if self.rejoin.is_none() && self.chosen_through > before {
                self.catch_up_renewal.source = Some(from);
                self.renew_catch_up(out);
                let credit = self.config.catch_up_credit_max as u64;
                self.catch_up_due = now.plus(self.config.retransmit_ns.saturating_mul(credit));
            } else if self.rejoin.is_some() {
                self.catch_up_due = now;
            }
        } else {
            self.catch_up_wanted = false;
            self.catch_up_ahead.clear();
        }
    }

    /// Learns the chosen `entries` of a catch-up chunk from `first` on, from the next
    /// instance on (none of them when `first` is beyond it).
    fn learn_chunk(&mut self, first: Instance, entries: Vec<Entry>, out: &mut Output) {
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

    /// Whether this group's membership ever changed, as far as this replica holds: a
    /// Config entry accepted, learned or restored (`config_entry_seen`: chosen or not,
    /// applied or not), a membership other than the initial one, or more than one
    /// membership (a checkpoint keeps the one before the membership in effect,
    /// `checkpoint_base`, so this survives checkpoints, truncation and restarts).
    pub(super) fn membership_ever_changed(&self) -> bool {
        self.config_entry_seen
            || self.configs.len() > 1
            || self.configs[0].1 != self.config.membership
    }

    /// Retires this replica if it is rejoining and the membership changed: `reported`
    /// by a peer, or as far as it holds itself (module docs, "Retirement"). A campaign
    /// under way is abandoned (a retired replica never leads: it would not vote).
    pub(super) fn retire_if_changed(&mut self, reported: bool) {
        if self.rejoin.is_none() || !(reported || self.membership_ever_changed()) {
            return;
        }
        self.rejoin = None;
        self.retired = true;
        self.voting = false;
        if self.role == Role::Candidate {
            self.role = Role::Follower;
            self.leading = None;
            self.leader_hint = None;
        }
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

#[cfg(test)]
mod tests;
