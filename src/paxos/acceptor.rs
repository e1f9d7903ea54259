//! The acceptor side of a group: promises, accepts and heartbeats from the leader.
//!
//! Invariants: `promised` never decreases; a `Promise` or `Accept` record is emitted
//! before (in `persist`) any reply that depends on it (in `send_after_persist`); a
//! replica that is not voting never promises or accepts; a promise stays within `message_size_max` bytes (`MessageBody::encoded_size`) and its count
//! limits, carrying at least one entry when there is one to carry; a prepare from
//! below the in-memory log (`log_floor`) is never promised (the report would lack the
//! dropped values: see the retention section of `group`), nor one from below the vote
//! floor before the group re-learned up to it (votes a truncated WAL lost: see
//! `checkpoint`). Catch-up requests are served by `stream`.

use super::group::{Group, Role, Slot};
use super::message::{InstanceRange, MessageBody, PromisedEntry};
use super::output::{Output, Record};
use super::size::Packer;
use super::types::{Ballot, Body, Entry, Instance, Nanos, NodeId};

impl Group {
    pub(super) fn on_prepare(
        &mut self,
        now: Nanos,
        from: NodeId,
        ballot: Ballot,
        first: Instance,
        out: &mut Output,
    ) {
        if ballot.node != from || first.0 == 0 {
            self.ignore("prepare_malformed");
            return;
        }
        self.highest_round_seen = self.highest_round_seen.max(ballot.round);
        if !self.voting || self.fenced {
            self.ignore("prepare_not_voting");
            return;
        }
        if ballot < self.promised {
            self.reject(from, out);
            return;
        }
        if first < self.log_floor {
            // The report would miss the applied values dropped from memory, which the
            // candidate would take for holes. It lacks chosen values: send them, as to
            // any replica catching up, and let it campaign again from further on.
            self.ignore("prepare_below_floor");
            self.on_catch_up_request(from, first, 1, false, out);
            return;
        }
        if self.below_vote_floor(first) {
            // Restored below a truncated WAL's chosen watermark (`checkpoint`): the
            // votes cast there are gone and would be reported as holes. Serve what
            // this replica has chosen, as above; it re-learns the rest by catch-up.
            self.ignore("prepare_below_vote_floor");
            self.on_catch_up_request(from, first, 1, false, out);
            return;
        }
        // Leader lease: while a lease granted to a live leader runs (or the lease a
        // restarted replica may have granted before it crashed), answer no one else,
        // not even at a ballot already promised: the promise may have been raised
        // without a prepare (seed 1000000754, by a former rejoin rule), and a repeated
        // promise counts as much as a first one toward the candidate's quorum.
        if now < self.lease_granted_until && self.lease_holder != Some(from) {
            self.ignore("prepare_during_lease");
            return;
        }
        if ballot > self.promised {
            self.promise(ballot, out);
            if self.role != Role::Follower && self.ballot() != Some(ballot) {
                self.step_down(now, out);
            }
        }
        // A candidate that asks for the next part of this replica's report heard the
        // last one: its Phase 1 is making progress, so give it an election timeout
        // from here. A report in parts takes a round trip per part, and a replica
        // whose timer ran out meanwhile would campaign above it and void the promises
        // it collected (duelling candidates, seed 960006056). Only a request from
        // further on counts: a candidate that never hears the answers (a one-way cut)
        // repeats its first prepare, and must not hold off replicas that could elect
        // a leader among themselves.
        if self
            .promised_in_parts
            .is_some_and(|(b, part_first)| b == ballot && first > part_first)
        {
            self.reset_election_deadline(now);
        }
        // Bounded by count and bytes: what does not fit is left for the candidate to
        // ask again from after the last entry sent (`truncated`; see `leader`).
        let mut entries = Vec::new();
        let mut truncated = false;
        let mut packer = Packer::new(
            self.config.message_size_max,
            self.config.promise_entries_max,
        );
        for (instance, slot) in self.log.range(first..) {
            let reported = PromisedEntry {
                instance,
                ballot: slot.ballot,
                chosen: slot.chosen,
                entry: slot.entry.clone(),
            };
            if !packer.add(reported.encoded_size()) {
                truncated = true;
                break;
            }
            entries.push(reported);
        }
        self.promised_in_parts = truncated.then_some((ballot, first));
        let body = MessageBody::Promise {
            ballot,
            chosen_through: self.chosen_through,
            entries,
            truncated,
        };
        self.send_after_persist(out, from, body);
    }

    /// Tells `to` that its ballot is below this replica's promise.
    fn reject(&self, to: NodeId, out: &mut Output) {
        let promised = self.promised;
        self.send(out, to, MessageBody::Reject { promised });
    }

    /// Raises `promised` to `ballot` and persists it.
    pub(super) fn promise(&mut self, ballot: Ballot, out: &mut Output) {
        assert!(ballot > self.promised, "promise must increase");
        self.promised = ballot;
        out.persist.push(Record::Promise {
            group: self.config.group,
            ballot,
        });
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the fields of an Accept message, as Group::step destructures it"
    )]
    pub(super) fn on_accept(
        &mut self,
        now: Nanos,
        from: NodeId,
        ballot: Ballot,
        leader_chosen: Instance,
        first: Instance,
        entries: Vec<Entry>,
        out: &mut Output,
    ) {
        if ballot.node != from || first.0 == 0 || entries.is_empty() {
            self.ignore("accept_malformed");
            return;
        }
        self.highest_round_seen = self.highest_round_seen.max(ballot.round);
        if !self.voting || self.fenced {
            self.ignore("accept_not_voting");
            self.note_leader_watermark(now, from, leader_chosen, out);
            return;
        }
        if ballot < self.promised {
            self.reject(from, out);
            return;
        }
        if ballot > self.promised {
            // Accepting at a ballot implies promising it.
            self.promise(ballot, out);
        }
        self.follow(now, from, ballot, out);
        let window_end = self
            .chosen_through
            .0
            .saturating_add(self.config.accept_window_instances_max);
        let mut ranges: Vec<InstanceRange> = Vec::new();
        for (offset, entry) in entries.into_iter().enumerate() {
            // In bounds (`MessageBody::check_bounds`): the run ends at or below
            // `Instance::MAX`, so neither this sum nor `range.last.next()` overflows.
            let instance = Instance(first.0 + offset as u64);
            if instance.0 > window_end {
                self.ignore("accept_beyond_window");
                self.catch_up_wanted = true;
                break;
            }
            if instance <= self.installed_through {
                // Installed from a peer's checkpoint: no value held here to vote for
                // (`transfer`, "Safety").
                self.ignore("accept_below_installed");
                continue;
            }
            if instance > self.chosen_through {
                let unchanged = self
                    .log
                    .get(&instance)
                    .is_some_and(|s| s.ballot == ballot && s.entry == entry);
                if !unchanged {
                    out.persist.push(Record::Accept {
                        group: self.config.group,
                        instance,
                        ballot,
                        entry: entry.clone(),
                    });
                    self.config_entry_seen |= matches!(entry.body, Body::Config(_));
                    self.log.insert(instance, Slot::accepted(ballot, entry));
                }
            }
            // An instance already chosen here holds the only value any leader can
            // propose for it: acknowledging it again is harmless.
            match ranges.last_mut() {
                Some(range) if range.last.next() == instance => range.last = instance,
                Some(_) | None => ranges.push(InstanceRange {
                    first: instance,
                    last: instance,
                }),
            }
        }
        if !ranges.is_empty() {
            self.send_after_persist(out, from, MessageBody::Accepted { ballot, ranges });
        }
        self.advance_chosen_from_leader(now, from, ballot, leader_chosen, out);
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the fields of a Heartbeat message, as Group::step destructures it"
    )]
    pub(super) fn on_heartbeat(
        &mut self,
        now: Nanos,
        from: NodeId,
        ballot: Ballot,
        leader_chosen: Instance,
        sent_at: Nanos,
        (checksum_through, checksum): (Instance, u32),
        out: &mut Output,
    ) {
        if ballot.node != from {
            self.ignore("heartbeat_malformed");
            return;
        }
        self.highest_round_seen = self.highest_round_seen.max(ballot.round);
        if ballot < self.promised {
            self.reject(from, out);
            return;
        }
        if from == self.config.node {
            // A leader's own acceptor grants its lease directly in `send_heartbeats`.
            return;
        }
        self.follow(now, from, ballot, out);
        // The ack is the grant the leader counts toward its lease: only for a grant given.
        if self.voting && !self.fenced && self.lease_holder == Some(from) {
            self.send(out, from, MessageBody::HeartbeatAck { ballot, sent_at });
        }
        self.compare_checksum(checksum_through, checksum);
        if self.voting {
            self.advance_chosen_from_leader(now, from, ballot, leader_chosen, out);
        } else {
            self.note_leader_watermark(now, from, leader_chosen, out);
        }
        // A replica outside its newest membership that hears a leader is being
        // considered as a voter (`joining`): it reports its position even when it has
        // nothing to learn (behind, it asks for catch-up anyway, which reports it).
        if !self.catch_up_wanted
            && self.role == Role::Follower
            && !self.latest_membership().contains(self.config.node)
        {
            let request = self.catch_up_request(self.chosen_through.next());
            self.send(out, from, request);
        }
    }

    /// Accepts `from` at `ballot` as the leader: hint, election timer, and the lease
    /// unless another holder's grant runs.
    fn follow(&mut self, now: Nanos, from: NodeId, ballot: Ballot, out: &mut Output) {
        if self.role != Role::Follower && self.ballot() != Some(ballot) {
            self.step_down(now, out);
        }
        if self.role == Role::Follower {
            self.leader_hint = Some((from, ballot));
            self.leadership.pre_vote = None;
            // A replica rebuilding lost state ends it only by its own Phase 1
            // (`learner`): a live leader does not hold its campaign off.
            if self.rejoin.is_none() {
                self.reset_election_deadline(now);
            }
        }
        // A running grant to another holder (or the restart grant, to no one) is never
        // handed over: that holder counts it toward its lease until it runs out. A
        // stale leader (its ballot at or above this replica's promise, below the
        // holder's) would otherwise take it, and with it a quorum the holder relies on
        // could promise a third candidate inside the holder's lease (seeds
        // 8826947352975, 8826947353025: checkers::lease against the grants).
        if self.voting && (now >= self.lease_granted_until || self.lease_holder == Some(from)) {
            self.lease_holder = Some(from);
            self.lease_granted_until = now.plus(self.config.lease_ns);
        }
    }

    fn compare_checksum(&mut self, through: Instance, checksum: u32) {
        if through.0 == 0 || through > self.applied_through {
            return;
        }
        let Some(mine) = self.log.get(&through).and_then(|s| s.checksum) else {
            return;
        };
        if mine != checksum {
            // Runtime reconciliation: replicas diverged. Fence this one loudly: it stops
            // voting and campaigning until an operator rebuilds it.
            self.counters.checksum_mismatches += 1;
            self.fenced = true;
            self.ignore("checksum_mismatch");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        Ballot, Body, Entry, Group, GroupConfig, GroupId, Input, Instance, Membership, Message,
        MessageBody, Nanos, NodeId, Output, Restore, Values,
    };
    use bytes::Bytes;

    // Goal: a candidate's request for the next part of this replica's promise (it
    // heard the last part) restarts the election timer; its first prepare and a
    // retransmission of it (a candidate that may never hear the answers) do not.
    #[test]
    fn only_a_request_for_the_next_part_restarts_the_election_timer() {
        let (node, leader, candidate, group_id) = (NodeId(1), NodeId(2), NodeId(3), GroupId(0));
        let mut config = GroupConfig::new(
            node,
            group_id,
            Membership::new(vec![node, leader, candidate]),
        );
        // One entry per promise part: a budget that holds one maximal batch.
        config.batch_size_max = 64 << 10;
        config.value_size_max = 64 << 10;
        config.message_size_max = config.message_size_min();
        let timeout = config.election_timeout_ns;
        let mut group = Group::new(config, Restore::default(), Nanos(0));
        let mut out = Output::default();
        let old = Ballot {
            round: 1,
            node: leader,
        };
        let entry = Entry {
            origin: old,
            body: Body::Values(Values::from_buf([Bytes::from(vec![7u8; 60 << 10])])),
        };
        let message = |from, body| {
            Input::Message(Message {
                from,
                to: node,
                group: group_id,
                body,
            })
        };
        let accept = MessageBody::Accept {
            ballot: old,
            chosen_through: Instance(0),
            first: Instance(1),
            entries: vec![entry.clone(), entry.clone(), entry],
        };
        group.step(Nanos(0), message(leader, accept), &mut out);
        let followed = group.next_deadline();
        assert!(followed < Nanos(2 * timeout));
        let prepare = |first| {
            let ballot = Ballot {
                round: 2,
                node: candidate,
            };
            message(
                candidate,
                MessageBody::Prepare {
                    ballot,
                    from: Instance(first),
                },
            )
        };
        // Long after the deadline (no tick fires it here), when no lease holds.
        let at = |s: u64| Nanos(s * timeout);
        group.step(at(3), prepare(1), &mut out);
        assert_eq!(group.next_deadline(), followed, "a first prepare");
        group.step(at(4), prepare(1), &mut out);
        assert_eq!(group.next_deadline(), followed, "its retransmission");
        group.step(at(5), prepare(2), &mut out);
        assert!(
            group.next_deadline() >= at(6),
            "a request for the next part"
        );
    }
}
