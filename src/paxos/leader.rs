//! The leader side of a group: elections (Phase 1 once over `[first unchosen, ∞)`),
//! re-proposal of learned values, StartWorking, the sliding window of Phase 2,
//! heartbeats, and the lease.
//!
//! Invariants:
//! - an instance is proposed only within `chosen_through + W`, so its membership is
//!   known (a membership chosen at i takes effect at i + W), and only once a quorum of
//!   that membership promised this ballot (extra prepares are sent when a membership
//!   change brings new voters);
//! - the value proposed at an instance is the highest-ballot value reported for it by
//!   the promisers (a no-op for a hole) until every learned value is re-proposed; then
//!   one StartWorking entry; then client values;
//! - an instance is chosen when a quorum of its membership durably accepted it at this
//!   ballot (acks are sent only after the acceptor's write is durable);
//! - every Accept stays within `message_size_max` bytes (`MessageBody::encoded_size`):
//!   a run of consecutive instances is split where the next entry would not fit.
//!
//! # Promises in parts
//!
//! A promise reports every value the acceptor accepted at or above the prepare's
//! `from`, and a leader may propose at instance i only once it holds the reports of a
//! quorum for i (Paxos: the highest-ballot value among a quorum's reports). Those
//! values may not fit one message (`message_size_max`, `promise_entries_max`). The
//! acceptor then sends what fits, in instance order, and says `truncated`; the leader
//! records that this voter's report covers `[next, last]` (`Leading::partial`), does
//! NOT count it as a promiser, and sends it this ballot's prepare again from `last + 1`.
//! Only the part that ends without `truncated` makes the voter a promiser, so no
//! instance is proposed before a quorum's reports for it are all in.
//!
//! Why the parts add up to one report although they are answered at different times:
//! once the acceptor promised this ballot it accepts nothing below it, so the values it
//! accepted below it stay as they were (a value it learns chosen meanwhile is reported
//! with `chosen`, which only tells the leader more); and every prepare this ballot sends
//! a voter starts at or below `max(partial, next)` at any later time (re-asks resume at
//! `partial`, retransmissions and new-membership prepares resume there too), so
//! whichever prepare a part answers — duplicated, reordered or stale — it covers from
//! there up to its last entry, and the covered ranges join without a gap. Instances
//! below `next` are assigned already and need no report.
//!
//! A part whose entries are all chosen at the acceptor (`last <= chosen_through` of the
//! promise) shows the candidate lacks at least a message's worth of chosen values: it
//! steps down and catches up instead of pulling them through promises (bounded memory;
//! it campaigns again from its new watermark).

use std::collections::BTreeSet;

use super::group::{Group, Inflight, Leading, Pending, Role};
use super::message::{InstanceRange, MessageBody, PromisedEntry};
use super::output::{Completion, Output, ProposeError};
use super::size::Packer;
use super::slot_log::SlotLog;
use super::types::{Ballot, Body, Entry, Instance, Membership, Nanos, NodeId, Proposals, Values};

/// The membership in effect at `instance` among `configs` (see `Group::configs`).
fn membership_for(configs: &[(Instance, Membership)], instance: Instance) -> &Membership {
    let mut current = &configs[0].1;
    for (effective, membership) in configs {
        if *effective <= instance {
            current = membership;
        } else {
            break;
        }
    }
    current
}

/// A set of nodes kept sorted in place, with no heap allocation up to 8: the voters
/// that accepted an in-flight instance (a `BTreeSet` allocated a node per instance),
/// the receivers of a round of accepts.
#[derive(Clone, Debug, Default)]
pub(super) struct NodeSet(smallvec::SmallVec<[NodeId; 8]>);

impl NodeSet {
    /// Adds `node` (once).
    pub fn insert(&mut self, node: NodeId) {
        if let Err(at) = self.0.binary_search(&node) {
            self.0.insert(at, node);
        }
    }

    /// Whether `node` is in the set.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.0.binary_search(node).is_ok()
    }
}

impl<'a> IntoIterator for &'a NodeSet {
    type Item = &'a NodeId;
    type IntoIter = std::slice::Iter<'a, NodeId>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Group {
    /// Starts Phase 1 at a ballot above every ballot seen. No replica campaigns above
    /// `Ballot::ROUND_MAX`: at that round (reachable only through a forged message in
    /// bounds, or a promise restored from a log written before the bound) the replica
    /// counts `campaign_round_max` and stays a follower.
    pub(super) fn campaign(&mut self, now: Nanos, out: &mut Output) {
        let Some(ballot) = self.next_ballot(now) else {
            return;
        };
        let from = self.chosen_through.next();
        self.counters.campaigns += 1;
        self.role = Role::Candidate;
        self.leading = Some(Leading {
            ballot,
            from,
            promisers: BTreeSet::new(),
            learned: std::collections::BTreeMap::new(),
            elected: false,
            next: from,
            start_working: None,
            inflight: SlotLog::new(),
            lease_acks: std::collections::BTreeMap::new(),
            heartbeat_due: now.plus(self.config.heartbeat_interval_ns),
            retransmit_due: now.plus(self.config.retransmit_ns),
            prepared_for: from,
            partial: std::collections::BTreeMap::new(),
            elected_at: now,
            heard: std::collections::BTreeMap::new(),
            transfer: None,
            acked_max: std::collections::BTreeMap::new(),
            probe_wanted: false,
            joining: None,
        });
        self.leadership.pre_vote = None;
        // The ballot is made durable BEFORE any prepare leaves: a candidate that crashed
        // and lost an unsynced promise of its own could otherwise campaign again at the
        // same ballot and propose a second value for an instance at one ballot.
        self.promise(ballot, out);
        let voters = self.membership_at(from).voters().to_vec();
        for node in voters {
            self.send_after_persist(out, node, MessageBody::Prepare { ballot, from });
        }
        self.reset_election_deadline(now);
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the fields of a Promise message, as Group::step destructures it"
    )]
    pub(super) fn on_promise(
        &mut self,
        now: Nanos,
        from: NodeId,
        ballot: Ballot,
        peer_chosen: Instance,
        entries: Vec<PromisedEntry>,
        truncated: bool,
        out: &mut Output,
    ) {
        let chosen = self.chosen_through;
        let Some(leading) = self.leading.as_mut() else {
            self.ignore("promise_not_leading");
            return;
        };
        if ballot != leading.ballot {
            self.ignore("promise_stale");
            return;
        }
        leading.heard.insert(from, now);
        if truncated && leading.promisers.contains(&from) {
            // Its report is complete already: a stale part adds nothing.
            self.ignore("promise_part_stale");
            return;
        }
        let last = entries.last().map(|reported| reported.instance);
        if truncated && last.is_none_or(|last| last >= Instance::MAX) {
            // An honest acceptor that leaves entries out sent at least one, below the
            // log's end (there is nothing to ask for after `Instance::MAX`).
            self.ignore("promise_malformed");
            return;
        }
        if truncated && last.is_some_and(|last| last <= peer_chosen) {
            // Every value this part carried is chosen at the promiser, and more follow:
            // this candidate lacks at least a message's worth of chosen values. Asking
            // on would pull them all through promises and re-propose them one window at
            // a time; catching up first is cheaper and bounded in memory.
            self.ignore("promise_candidate_behind");
            self.step_down(now, out);
            self.catch_up_wanted = true;
            self.send(out, from, self.catch_up_request(chosen.next()));
            self.catch_up_due = now.plus(self.config.retransmit_ns);
            return;
        }
        for reported in entries {
            if reported.instance < leading.next || reported.instance <= chosen {
                continue;
            }
            match leading.learned.get(&reported.instance) {
                Some((_, _, true)) => {}
                Some((known, _, false)) if !reported.chosen && reported.ballot <= *known => {}
                Some((_, _, false)) | None => {
                    leading.learned.insert(
                        reported.instance,
                        (reported.ballot, reported.entry, reported.chosen),
                    );
                }
            }
        }
        match last {
            Some(last) if truncated => {
                // More follows: the report covers `[leading.next, last]` (see the module
                // docs); ask again from after it. Not a promiser until complete.
                let resume = leading
                    .partial
                    .get(&from)
                    .map_or(last.next(), |known| (*known).max(last.next()));
                leading.partial.insert(from, resume);
                let ballot = leading.ballot;
                let first = resume.max(leading.next);
                // Phase 1 is progressing: it is not stuck, so no new campaign yet.
                self.reset_election_deadline(now);
                self.send(
                    out,
                    from,
                    MessageBody::Prepare {
                        ballot,
                        from: first,
                    },
                );
            }
            Some(_) | None => {
                leading.partial.remove(&from);
                leading.promisers.insert(from);
            }
        }
        let leading = self.leading.as_ref().expect("checked above");
        let elected = leading.elected;
        let from_instance = leading.from;
        if peer_chosen > chosen {
            self.note_leader_watermark(now, from, peer_chosen, out);
        }
        if !elected {
            let quorum = {
                let leading = self.leading.as_ref().expect("checked above");
                self.membership_at(from_instance)
                    .is_quorum(&leading.promisers)
            };
            if quorum {
                self.become_leader(now, out);
            }
        } else {
            self.fill_window(now, false, out);
        }
    }

    fn become_leader(&mut self, now: Nanos, out: &mut Output) {
        let leading = self
            .leading
            .as_mut()
            .expect("a candidate has leading state");
        leading.elected = true;
        leading.elected_at = now;
        let ballot = leading.ballot;
        // A replica rebuilding lost state votes again from here (`learner`, "Rejoin").
        self.end_rejoin();
        self.role = Role::Leader;
        self.leader_hint = Some((self.config.node, ballot));
        self.counters.elections_won += 1;
        self.catch_up_wanted = false;
        self.send_heartbeats(now, out);
        self.fill_window(now, false, out);
    }

    pub(super) fn on_reject(&mut self, now: Nanos, promised: Ballot, out: &mut Output) {
        self.highest_round_seen = self.highest_round_seen.max(promised.round);
        if let Some(leading) = &self.leading {
            if promised > leading.ballot {
                self.step_down(now, out);
            }
        }
    }

    /// Leaves the leader or candidate role: queued proposals fail with `NotLeader`,
    /// in-flight ones with `Indeterminate` (a later leader may still choose them).
    pub(super) fn step_down(&mut self, now: Nanos, out: &mut Output) {
        let Some(leading) = self.leading.take() else {
            return;
        };
        if leading.transfer.is_some() {
            self.counters.transfers_abandoned += 1;
        }
        self.role = Role::Follower;
        self.leader_hint = None;
        for inflight in leading.inflight.into_values() {
            for id in inflight.proposals {
                out.complete.push(Completion {
                    id,
                    error: ProposeError::Indeterminate,
                });
            }
        }
        Group::fail_join(leading.joining, out);
        self.fail_queue(out);
        self.config_change_pending = false;
        self.reset_election_deadline(now);
    }

    /// Assigns instances within the window and sends them: learned values first (no-op
    /// for holes), then StartWorking, then (when `include_client`) batches of queued
    /// proposals. Blocks, sending prepares, where the membership lacks a promise quorum.
    pub(super) fn fill_window(&mut self, now: Nanos, include_client: bool, out: &mut Output) {
        if self.role != Role::Leader {
            return;
        }
        let mut assigned: Vec<(Instance, Entry)> = Vec::new();
        loop {
            if !self.config_change_pending {
                self.refuse_moved_config(out);
            }
            let leading = self.leading.as_mut().expect("a leader has leading state");
            let instance = leading.next;
            let window_end = self
                .chosen_through
                .0
                .saturating_add(self.config.window_instances_max);
            if instance.0 > window_end {
                break;
            }
            let membership = membership_for(&self.configs, instance);
            if !membership.is_quorum(&leading.promisers) {
                if leading.prepared_for != instance {
                    leading.prepared_for = instance;
                    self.prepare_missing(instance, out);
                }
                break;
            }
            let ballot = leading.ballot;
            let learned_max = leading.learned.last_key_value().map(|(i, _)| *i);
            let mut proposals = Proposals::new();
            let entry = if learned_max.is_some_and(|max| instance <= max) {
                match leading.learned.remove(&instance) {
                    Some((_, entry, _)) => entry,
                    None => Entry {
                        origin: ballot,
                        body: Body::Noop,
                    },
                }
            } else if leading.start_working.is_none() {
                leading.start_working = Some(instance);
                Entry {
                    origin: ballot,
                    body: Body::StartWorking,
                }
            } else if std::mem::take(&mut leading.probe_wanted) {
                Entry {
                    origin: ballot,
                    body: Body::Noop,
                }
            } else if include_client && !self.queue.is_empty() && !self.config_blocked() {
                self.take_batch(ballot, &mut proposals)
            } else if self.fills_for_effect(instance) {
                Entry {
                    origin: ballot,
                    body: Body::Noop,
                }
            } else {
                break;
            };
            if matches!(entry.body, Body::Config(_)) {
                self.config_change_pending = true;
            }
            let leading = self.leading.as_mut().expect("a leader has leading state");
            leading.next = instance.next();
            leading.inflight.insert(
                instance,
                Inflight {
                    entry: entry.clone(),
                    acks: NodeSet::default(),
                    proposals,
                    sent_at: now,
                },
            );
            assigned.push((instance, entry));
        }
        self.send_accepts(&assigned, None, out);
    }

    /// Whether this leader has a membership change in flight or still to re-propose
    /// from its Phase 1 reports. A change is pending until applied, and applying one
    /// must not end the wait for a later one: a new leader re-proposes every change its
    /// promisers reported (seed 71 of the `members` profile: two, at 72 and 78; the
    /// apply of 72 let a request through that 78 already made, and it was chosen twice).
    pub(super) fn config_in_flight(&self) -> bool {
        let Some(leading) = self.leading.as_ref() else {
            return false;
        };
        leading
            .inflight
            .range(..)
            .any(|(_, inflight)| matches!(inflight.entry.body, Body::Config(_)))
            || leading
                .learned
                .values()
                .any(|(_, entry, _)| matches!(entry.body, Body::Config(_)))
    }

    /// Refuses the queue's head while it is a membership change that does not add or
    /// remove exactly one voter of the newest membership. It was checked on arrival
    /// (`on_change_membership`) against the newest membership then, and a change
    /// chosen since (re-proposed by this leader from its Phase 1 reports) can have
    /// moved it: without this check seed 66 of the `members` profile chose a change of
    /// two voters (`sim::checkers::membership`).
    fn refuse_moved_config(&mut self, out: &mut Output) {
        while let Some(Pending::Config(_, membership)) = self.queue.front() {
            if self.latest_membership().is_single_change(membership) {
                return;
            }
            let Some(Pending::Config(id, _)) = self.queue.pop_front() else {
                unreachable!("front was a membership change");
            };
            out.complete.push(Completion {
                id,
                error: ProposeError::Rejected {
                    reason: "a membership change must add or remove exactly one voter",
                },
            });
        }
    }

    /// Whether the queue's head is a membership change that must wait.
    fn config_blocked(&self) -> bool {
        matches!(self.queue.front(), Some(Pending::Config(..))) && self.config_change_pending
    }

    /// Builds one instance value from the queue head: a membership change alone, or up
    /// to `batch_values_max` values and `batch_size_max` bytes.
    fn take_batch(&mut self, ballot: Ballot, proposals: &mut Proposals) -> Entry {
        if let Some(Pending::Config(..)) = self.queue.front() {
            let Some(Pending::Config(id, membership)) = self.queue.pop_front() else {
                unreachable!("front was a membership change");
            };
            proposals.push(id);
            return Entry {
                origin: ballot,
                body: Body::Config(membership),
            };
        }
        let mut values = Values::new();
        let mut size = 0;
        while values.len() < self.config.batch_values_max {
            match self.queue.front() {
                Some(Pending::Value(_, value))
                    if values.is_empty() || size + value.len() <= self.config.batch_size_max => {}
                Some(Pending::Value(..) | Pending::Config(..)) | None => break,
            }
            let Some(Pending::Value(id, value)) = self.queue.pop_front() else {
                unreachable!("front was a value");
            };
            size += value.len();
            self.queue_size -= value.len();
            proposals.push(id);
            values.push(value);
        }
        assert!(
            !values.is_empty(),
            "take_batch on a queue without a value at its head"
        );
        Entry {
            origin: ballot,
            body: Body::Values(values),
        }
    }

    /// Sends `assigned` (ascending, consecutive) to every voter of each instance's
    /// membership, one Accept per run; `only` restricts the receivers per instance.
    fn send_accepts(
        &mut self,
        assigned: &[(Instance, Entry)],
        only: Option<&dyn Fn(Instance, NodeId) -> bool>,
        out: &mut Output,
    ) {
        if assigned.is_empty() {
            return;
        }
        let Some(leading) = self.leading.as_ref() else {
            return;
        };
        let ballot = leading.ballot;
        let mut receivers = NodeSet::default();
        for (instance, _) in assigned {
            for node in membership_for(&self.configs, *instance).voters() {
                receivers.insert(*node);
            }
        }
        let sizes: Vec<usize> = assigned.iter().map(|(_, e)| e.encoded_size()).collect();
        let size_max = self.config.message_size_max;
        for &node in &receivers {
            let mut run: Vec<Entry> = Vec::with_capacity(assigned.len());
            let mut first = Instance(0);
            let mut packer = Packer::new(size_max, usize::MAX);
            for ((instance, entry), size) in assigned.iter().zip(&sizes) {
                let wanted = membership_for(&self.configs, *instance).contains(node)
                    && only.is_none_or(|f| f(*instance, node));
                if !wanted {
                    if !run.is_empty() {
                        let entries = std::mem::take(&mut run);
                        let body = accept(ballot, self.chosen_through, first, entries);
                        self.send(out, node, body);
                    }
                    continue;
                }
                let continues = !run.is_empty() && first.0 + run.len() as u64 == instance.0;
                // A run ends at a gap or where the next entry would take the message
                // past `message_size_max`; the next run starts with that entry.
                if !(continues && packer.add(*size)) {
                    if !run.is_empty() {
                        let entries = std::mem::take(&mut run);
                        let body = accept(ballot, self.chosen_through, first, entries);
                        self.send(out, node, body);
                    }
                    packer = Packer::new(size_max, usize::MAX);
                    let added = packer.add(*size);
                    assert!(added, "the first entry of a run always goes");
                    first = *instance;
                }
                run.push(entry.clone());
            }
            if !run.is_empty() {
                self.send(out, node, accept(ballot, self.chosen_through, first, run));
            }
        }
    }

    pub(super) fn on_accepted(
        &mut self,
        now: Nanos,
        from: NodeId,
        ballot: Ballot,
        ranges: &[InstanceRange],
        out: &mut Output,
    ) {
        let Some(leading) = self.leading.as_mut() else {
            self.ignore("accepted_not_leading");
            return;
        };
        if ballot != leading.ballot || !leading.elected {
            self.ignore("accepted_stale");
            return;
        }
        leading.heard.insert(from, now);
        for range in ranges {
            if range.first > range.last || range.first.0 == 0 {
                self.ignore("accepted_malformed");
                return;
            }
        }
        // Only instances this ballot assigned: evidence for `placement`'s move-back.
        if let Some(last) = ranges
            .iter()
            .map(|r| r.last)
            .filter(|l| *l < leading.next)
            .max()
        {
            let acked = leading.acked_max.entry(from).or_insert(last);
            *acked = (*acked).max(last);
        }
        for range in ranges {
            for (instance, inflight) in leading.inflight.range_mut(range.first..=range.last) {
                if membership_for(&self.configs, instance).contains(from) {
                    inflight.acks.insert(from);
                }
            }
        }
        self.advance_chosen_as_leader(out);
        self.advance_transfer(now, out);
    }

    /// Marks chosen every in-flight instance at the window's bottom that a quorum of
    /// its membership accepted.
    fn advance_chosen_as_leader(&mut self, out: &mut Output) {
        let before = self.chosen_through;
        loop {
            let instance = self.chosen_through.next();
            let Some(leading) = self.leading.as_ref() else {
                break;
            };
            let Some(inflight) = leading.inflight.get(&instance) else {
                break;
            };
            if !membership_for(&self.configs, instance).is_quorum(&inflight.acks) {
                break;
            }
            let entry = inflight.entry.clone();
            self.learn_chosen(instance, entry, out);
            self.counters.chosen_as_leader += 1;
        }
        if self.chosen_through > before {
            self.on_chosen_advanced(out);
        }
    }

    /// Sends this ballot's prepare over `[from, ∞)` to every voter of the membership
    /// in effect at `from` that has not promised yet; a voter whose report arrived in
    /// part is asked from where it stopped. After what this replica persisted so far,
    /// its own promise of the ballot included, is durable: a prepare says the
    /// candidate holds its ballot, and a retransmission while the first write still
    /// waits for the disk (a stall longer than `retransmit_ns`) once left before it,
    /// so that a crash then let the replica promise below a ballot it had asked for,
    /// and lead that ballot again (seeds 920000277, 920000335: the monotonic checker).
    fn prepare_missing(&self, from: Instance, out: &mut Output) {
        let Some(leading) = self.leading.as_ref() else {
            return;
        };
        let ballot = leading.ballot;
        for node in membership_for(&self.configs, from).voters() {
            if !leading.promisers.contains(node) {
                let first = leading
                    .partial
                    .get(node)
                    .map_or(from, |resume| (*resume).max(from));
                self.send_after_persist(
                    out,
                    *node,
                    MessageBody::Prepare {
                        ballot,
                        from: first,
                    },
                );
            }
        }
    }

    /// Heartbeats, retransmissions, and (for a candidate) prepare retransmission.
    pub(super) fn leader_tick(&mut self, now: Nanos, out: &mut Output) {
        let Some(leading) = self.leading.as_mut() else {
            return;
        };
        let elected = leading.elected;
        if !elected {
            if now >= leading.retransmit_due {
                leading.retransmit_due = now.plus(self.config.retransmit_ns);
                let from = leading.from;
                self.prepare_missing(from, out);
            }
            return;
        }
        if !self.quorum_heard(now) {
            self.counters.check_quorum_step_downs += 1;
            self.step_down(now, out);
            return;
        }
        self.advance_transfer(now, out);
        self.move_back(now, out);
        self.join_tick(now, out);
        let Some(leading) = self.leading.as_ref().filter(|_| self.role == Role::Leader) else {
            return;
        };
        if now >= leading.heartbeat_due {
            self.send_heartbeats(now, out);
        }
        let leading = self.leading.as_mut().expect("still leading");
        if now >= leading.retransmit_due {
            leading.retransmit_due = now.plus(self.config.retransmit_ns);
            leading.prepared_for = Instance(0);
            let retransmit_ns = self.config.retransmit_ns;
            let mut stale: Vec<(Instance, Entry)> = Vec::new();
            let mut acked: Vec<(Instance, NodeSet)> = Vec::new();
            for (instance, inflight) in leading.inflight.range_mut(..) {
                if now >= inflight.sent_at.plus(retransmit_ns) {
                    inflight.sent_at = now;
                    stale.push((instance, inflight.entry.clone()));
                    acked.push((instance, inflight.acks.clone()));
                }
            }
            let not_acked = |instance: Instance, node: NodeId| {
                acked
                    .iter()
                    .find(|(i, _)| *i == instance)
                    .is_none_or(|(_, acks)| !acks.contains(&node))
            };
            // Runs must be consecutive: split `stale` where it has gaps.
            let mut start = 0;
            for i in 1..=stale.len() {
                if i == stale.len() || stale[i].0 != stale[i - 1].0.next() {
                    let run = stale[start..i].to_vec();
                    self.send_accepts(&run, Some(&not_acked), out);
                    start = i;
                }
            }
        }
        self.fill_window(now, false, out);
    }

    /// Sends a heartbeat to every other voter and renews this replica's own grant.
    pub(super) fn send_heartbeats(&mut self, now: Nanos, out: &mut Output) {
        let Some(leading) = self.leading.as_mut() else {
            return;
        };
        leading.heartbeat_due = now.plus(self.config.heartbeat_interval_ns);
        leading.lease_acks.insert(self.config.node, now);
        let ballot = leading.ballot;
        let mut receivers: BTreeSet<NodeId> = BTreeSet::new();
        for membership in self.memberships_ahead() {
            receivers.extend(membership.voters());
        }
        // The newcomer of a waiting add learns how far behind it is (`joining`).
        receivers.extend(self.joining_node());
        receivers.remove(&self.config.node);
        self.lease_holder = Some(self.config.node);
        self.lease_granted_until = now.plus(self.config.lease_ns);
        let checksum_through = self.applied_through;
        let checksum = self.checksum;
        for node in receivers {
            let body = MessageBody::Heartbeat {
                ballot,
                chosen_through: self.chosen_through,
                sent_at: now,
                checksum_through,
                checksum,
            };
            self.send(out, node, body);
        }
    }

    pub(super) fn on_heartbeat_ack(
        &mut self,
        now: Nanos,
        from: NodeId,
        ballot: Ballot,
        sent_at: Nanos,
    ) {
        let Some(leading) = self.leading.as_mut() else {
            return;
        };
        if ballot != leading.ballot || sent_at > now {
            self.ignore("heartbeat_ack_stale");
            return;
        }
        leading.heard.insert(from, now);
        let slot = leading.lease_acks.entry(from).or_insert(sent_at);
        *slot = (*slot).max(sent_at);
    }

    /// Every membership in effect at some instance above the chosen watermark: the one
    /// at `chosen_through + 1`, then each chosen one that takes effect later, in order.
    /// A change may be chosen before the previous one takes effect (one is pending only
    /// until applied), so there may be more than two: a candidate's Phase 1 uses the
    /// one at its own first unchosen instance, which may be any of them, and meets a
    /// quorum of it only when the lease holds one of every membership of this list.
    #[must_use]
    pub fn memberships_ahead(&self) -> Vec<&Membership> {
        let next = self.chosen_through.next();
        let mut memberships = vec![self.membership_at(next)];
        for (effective, membership) in &self.configs {
            if *effective > next {
                memberships.push(membership);
            }
        }
        memberships
    }

    /// Until when (local clock) this leader may rely on its lease: the quorum-th most
    /// recent acknowledged heartbeat of every membership in effect above the chosen
    /// watermark (`memberships_ahead`), plus `leader_lease_ns`. `None` when not an
    /// elected leader, before its StartWorking entry is applied, or when no quorum
    /// acknowledged.
    ///
    /// Not before StartWorking is applied: a leader elected by a quorum of the
    /// membership at its first unchosen instance may lag the group by several
    /// membership changes (it learns them only as it re-proposes what its Phase 1
    /// reported), and its `memberships_ahead` would then name memberships that are no
    /// longer in effect, whose heartbeat acks say nothing of the current voters' grants
    /// (members seed 962000160: a lagging replica elected by {1, 4} counted a lease
    /// while the leader of {1, 2, 3} held one). Once StartWorking is applied, every
    /// instance before it is chosen here and the memberships it names are the group's.
    #[must_use]
    pub fn lease_until(&self) -> Option<Nanos> {
        let leading = self.leading.as_ref().filter(|l| l.elected)?;
        if self.applied_through < leading.start_working? {
            return None;
        }
        let mut until: Option<Nanos> = None;
        for membership in self.memberships_ahead() {
            let mut sent: Vec<Nanos> = membership
                .voters()
                .iter()
                .filter_map(|n| leading.lease_acks.get(n).copied())
                .collect();
            if sent.len() < membership.quorum() {
                return None;
            }
            sent.sort_unstable_by(|a, b| b.cmp(a));
            let end = sent[membership.quorum() - 1].plus(self.config.leader_lease_ns());
            until = Some(until.map_or(end, |u: Nanos| u.min(end)));
        }
        until
    }

    /// The instance a linearizable read must wait to see applied, if this replica may
    /// serve reads now: it leads, its StartWorking entry is applied, and its lease
    /// holds at `now`.
    #[must_use]
    pub fn read_index(&self, now: Nanos) -> Option<Instance> {
        (now < self.lease_until()?).then_some(self.chosen_through)
    }
}

fn accept(
    ballot: Ballot,
    chosen_through: Instance,
    first: Instance,
    entries: Vec<Entry>,
) -> MessageBody {
    MessageBody::Accept {
        ballot,
        chosen_through,
        first,
        entries,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{elected, message};
    use super::super::{
        Ballot, Body, Entry, GroupConfig, GroupId, Instance, InstanceRange, Membership,
        MessageBody, Nanos, NodeId, Output, PromisedEntry, Values,
    };
    use bytes::Bytes;

    // Goal: a leader counts no lease before its StartWorking entry is applied. Until
    // then its chosen watermark may lag the group by membership changes it has not
    // learned, and heartbeat acks from the memberships it knows say nothing of the
    // current voters' grants (members seed 962000160).
    // Method: node 1 is elected with a value reported in Phase 1 still to re-propose;
    // a quorum acknowledges its heartbeat (no lease), then the re-proposed value and
    // StartWorking are chosen and applied (a lease).
    #[test]
    fn no_lease_before_start_working_is_applied() {
        let (node, peer) = (NodeId(1), NodeId(2));
        let config = GroupConfig::new(
            node,
            GroupId(0),
            Membership::new(vec![node, peer, NodeId(3)]),
        );
        let at = Nanos(10 * config.election_timeout_ns);
        let old = Ballot {
            round: 1,
            node: peer,
        };
        let reported = PromisedEntry {
            instance: Instance(1),
            ballot: old,
            chosen: false,
            entry: Entry {
                origin: old,
                body: Body::Values(Values::from_buf([Bytes::from_static(b"v")])),
            },
        };
        let (mut group, ballot) = elected(config, peer, at, vec![reported]);
        let mut out = Output::default();
        let ack = MessageBody::HeartbeatAck {
            ballot,
            sent_at: at,
        };
        group.step(at, message(&group, peer, ack), &mut out);
        assert_eq!(group.lease_until(), None, "StartWorking is not applied");
        assert_eq!(group.read_index(at), None);
        let accepted = MessageBody::Accepted {
            ballot,
            ranges: vec![InstanceRange {
                first: Instance(1),
                last: Instance(2),
            }],
        };
        for from in [node, peer] {
            group.step(at, message(&group, from, accepted.clone()), &mut out);
        }
        assert!(group.applied_through() >= Instance(2), "{out:?}");
        assert!(group.lease_until().is_some_and(|until| until > at));
        assert_eq!(group.read_index(at), Some(group.chosen_through()));
    }
}
