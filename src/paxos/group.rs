//! One Paxos group on one replica: the state, the step dispatch, and the apply path.
//!
//! The acceptor (`acceptor.rs`), the leader (`leader.rs`) and the learner
//! (`learner.rs`) are `impl Group` blocks in their own files.
//!
//! Invariants (checked by `invariants`, which the simulator calls after every step):
//! - `applied_through <= chosen_through`, and every instance in `1..=chosen_through`
//!   that is still in memory is chosen;
//! - a leader's in-flight instances lie in `(chosen_through, next)` and
//!   `next <= chosen_through + W + 1`;
//! - the proposal queue is within its count and size limits;
//! - a leader's or candidate's round is at most `Ballot::ROUND_MAX`;
//! - a peer message out of bounds (`bounds`) changes nothing: it is refused before
//!   any handler runs;
//! - retention (below): every slot of the log lies at or above `log_floor`; nothing
//!   unapplied is dropped (`log_floor <= applied_through + 1`; the newest applied
//!   slot stays, unless a restore's truncated WAL no longer held it); the applied slots kept number at most `retention_instances_max`.
//!
//! # In-memory retention
//!
//! The log in memory is `[log_floor, ∞)`: the applied slots of the retention (at most
//! `retention_instances_max` of them and `retention_size_max` bytes, but always the
//! newest applied one), then the chosen-but-unapplied, accepted and in-flight slots
//! above (at most `accept_window_instances_max` past the chosen watermark). Slots are
//! dropped at the end of `apply_chosen`, from the bottom, only at or below
//! `applied_through`, which is at most `chosen_through` and `chosen_recorded` (the
//! watermark this replica wrote, the one its WAL vouches for). Why nothing still
//! needed goes:
//! - applying needs the slots above `applied_through`: never dropped;
//! - a leader re-proposes only above its chosen watermark (`Leading::learned`,
//!   `inflight`, `next` all lie above it), and completes proposals at apply;
//! - a promise reports accepted values from the prepare's `from`: a prepare from below
//!   `log_floor` is not promised (`prepare_below_floor`) — the values missing from the
//!   report would be taken for holes and filled with no-ops — and the candidate, which
//!   lacks chosen values this replica holds, is sent them instead (as by catch-up);
//! - a catch-up request from below `log_floor` is answered from the WAL: the group
//!   emits `Output::wal_reads`, the executor reads the records back and returns them
//!   as `Input::WalReadDone`, and the group sends the chunk, bounded as any other;
//! - a heartbeat's checksum is compared only while its slot is in memory (the check
//!   is skipped below `log_floor`, never failed).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::checkpoint::{CheckpointBase, Restore};
use super::config::GroupConfig;
use super::filters::Filters;
use super::joining::Joining;
use super::leader::NodeSet;
use super::leadership::{Leadership, Transfer};
use super::learner::CatchUpRenewal;
use super::message::Message;
pub use super::observe::{entry_checksum, Counters};
use super::output::{Apply, Completion, Output, ProposeError, Record, Refused, WalReadOutcome};
use super::slot_log::SlotLog;
use super::stream::CatchUpStream;
use super::types::{
    Ballot, Body, Entry, Instance, Membership, Nanos, NodeId, ProposalId, Proposals,
};
use crate::prng::Prng;

/// One input to a group step.
#[derive(Clone, Debug)]
pub enum Input {
    /// Time has passed; fire whatever timers are due.
    Tick,
    /// A client value to replicate.
    Propose {
        /// Identifies the proposal in completions.
        id: ProposalId,
        /// The value.
        value: Bytes,
    },
    /// Replace the voters by `membership` (one voter added or removed): from
    /// `runtime::Shard` (`ShardInput::ChangeMembership`, which the driver sends for
    /// `NodeHandle::change_membership` and the simulator's workload sends). An add
    /// waits at the leader until the newcomer caught up (`joining`).
    ChangeMembership {
        /// Identifies the proposal in completions.
        id: ProposalId,
        /// The new voters.
        membership: Membership,
    },
    /// A message from a peer (or from this replica to itself).
    Message(Message),
    /// The end of an executor loop iteration: coalesce queued proposals into
    /// instances and send them (batch propose waits at most this long).
    Flush,
    /// The answer to an `Output::wal_reads` request made for `peer` from `from`.
    WalReadDone {
        /// The replica the read was for.
        peer: NodeId,
        /// The read's first instance.
        from: Instance,
        /// What the WAL held.
        outcome: WalReadOutcome,
    },
    /// A catch-up chunk from `from` starting at `first`, addressed to this replica,
    /// that the shard refused for want of WAL room (`runtime::Shard`): lost like a
    /// message on the network, but known lost. The group asks its stream to start
    /// over there once what the WAL holds now is durable (`learner`), rather than
    /// when its retransmit timer runs out.
    CatchUpRefused {
        /// The peer that sent the chunk.
        from: NodeId,
        /// The chunk's first instance.
        first: Instance,
    },
    /// Hand this replica's leadership over to `to` (`leadership`): refused proposals
    /// name `to`, what is in flight is chosen first. Counted and dropped unless this
    /// replica leads and `to` is another voter.
    TransferLeadership {
        /// The replica that is to lead next.
        to: NodeId,
    },
    /// Install the checkpoint `base` received from `from` and verified by the shard
    /// (its state machine image is installed by the executor): see `transfer`.
    InstallCheckpoint {
        /// The peer that sent it.
        from: NodeId,
        /// Its protocol state.
        base: CheckpointBase,
    },
}

/// The role of a replica in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepts from a leader; campaigns when it stops hearing from one.
    Follower,
    /// Running Phase 1 at its ballot.
    Candidate,
    /// Holds a Phase 1 quorum and proposes.
    Leader,
}

/// A slot of the replica's log.
#[derive(Clone, Debug)]
pub(super) struct Slot {
    /// Ballot at which the value was accepted (for a learned value: `Ballot::ZERO`).
    pub ballot: Ballot,
    /// The value.
    pub entry: Entry,
    /// Whether the value is known chosen.
    pub chosen: bool,
    /// Running checksum through this instance, once applied.
    pub checksum: Option<u32>,
}

impl Slot {
    /// A value accepted at `ballot`, not yet known chosen.
    pub(super) fn accepted(ballot: Ballot, entry: Entry) -> Slot {
        Slot {
            ballot,
            entry,
            chosen: false,
            checksum: None,
        }
    }

    /// A value known chosen without this replica having accepted it.
    pub(super) fn learned(entry: Entry) -> Slot {
        Slot {
            ballot: Ballot::ZERO,
            entry,
            chosen: true,
            checksum: None,
        }
    }
}

/// A queued client request waiting for a window slot.
#[derive(Clone, Debug)]
pub(super) enum Pending {
    Value(ProposalId, Bytes),
    Config(ProposalId, Membership),
}

/// A value the leader has sent and not yet seen chosen.
#[derive(Clone, Debug)]
pub(super) struct Inflight {
    pub entry: Entry,
    pub acks: NodeSet,
    pub proposals: Proposals,
    pub sent_at: Nanos,
}

/// Leader and candidate state (a candidate is a leader that is not yet elected).
#[derive(Clone, Debug)]
pub(super) struct Leading {
    pub ballot: Ballot,
    /// Phase 1 covers `[from, ∞)`.
    pub from: Instance,
    pub promisers: BTreeSet<NodeId>,
    /// Values learned from promises, not yet re-proposed: (ballot, entry, chosen).
    pub learned: BTreeMap<Instance, (Ballot, Entry, bool)>,
    /// Whether a quorum of `config_at(from)` promised.
    pub elected: bool,
    /// Next instance to assign.
    pub next: Instance,
    /// Where this leader's StartWorking entry went.
    pub start_working: Option<Instance>,
    pub inflight: SlotLog<Inflight>,
    /// Per follower, the latest heartbeat `sent_at` it acknowledged at this ballot.
    pub lease_acks: BTreeMap<NodeId, Nanos>,
    pub heartbeat_due: Nanos,
    pub retransmit_due: Nanos,
    /// The instance for which prepares to a new membership's voters were last sent.
    pub prepared_for: Instance,
    /// Voters whose promise arrived in parts, not yet all: this ballot holds their
    /// reports for every instance in `[next, resume)` and asks again from `resume`.
    pub partial: BTreeMap<NodeId, Instance>,
    /// When this ballot won its election (check-quorum waits an election timeout).
    pub elected_at: Nanos,
    /// Per voter, when a message at this ballot last came from it (`leadership`).
    pub heard: BTreeMap<NodeId, Nanos>,
    /// A leadership transfer under way (`leadership`).
    pub transfer: Option<Transfer>,
    /// Per voter, the highest instance it accepted at this ballot (`placement`).
    pub acked_max: BTreeMap<NodeId, Instance>,
    /// `fill_window` proposes one no-op next (a `placement` probe).
    pub probe_wanted: bool,
    /// An add waiting for its newcomer to catch up (`joining`).
    pub joining: Option<Joining>,
}

/// A replica that lost state: the voters it heard from since restart (their promised
/// ballot and highest accepted instance, as first reported; who was heard decides when
/// it may campaign to end the rejoin, see `learner`).
#[derive(Clone, Debug, Default)]
pub(super) struct Rejoin {
    pub heard: BTreeMap<NodeId, (Ballot, Instance)>,
}

/// One Paxos group on one replica. See the module docs and `output::Output`.
#[derive(Debug)]
pub struct Group {
    pub(super) config: GroupConfig,
    pub(super) prng: Prng,
    // Acceptor state (persisted).
    pub(super) promised: Ballot,
    pub(super) log: SlotLog<Slot>,
    /// The first instance the log may hold: everything below was applied and dropped
    /// from memory (see "In-memory retention").
    pub(super) log_floor: Instance,
    /// Prepares from below it are not promised while `chosen_through + 1` is below it
    /// (votes the truncated WAL no longer holds; see `checkpoint`).
    pub(super) vote_floor: Instance,
    /// Bytes (`Entry::encoded_size`) of the applied slots in `[log_floor,
    /// applied_through]`.
    pub(super) retained_size: usize,
    // Learner state.
    pub(super) chosen_through: Instance,
    pub(super) chosen_recorded: Instance,
    pub(super) applied_through: Instance,
    pub(super) checksum: u32,
    pub(super) start_working_applied: Ballot,
    /// Which entries the apply path skipped, by instance (`filters`).
    pub(super) filters: Filters,
    /// Memberships as (effective from instance, voters), ascending; the first is in
    /// effect from instance 1.
    pub(super) configs: Vec<(Instance, Membership)>,
    pub(super) config_change_pending: bool,
    // Roles and timers.
    pub(super) role: Role,
    pub(super) leading: Option<Leading>,
    pub(super) leader_hint: Option<(NodeId, Ballot)>,
    pub(super) highest_round_seen: u64,
    pub(super) election_deadline: Nanos,
    /// The ballot and first instance of the last promise this acceptor sent in parts
    /// (`acceptor::on_prepare`): a prepare at that ballot from further on proves the
    /// candidate heard it.
    pub(super) promised_in_parts: Option<(Ballot, Instance)>,
    pub(super) lease_granted_until: Nanos,
    pub(super) lease_holder: Option<NodeId>,
    pub(super) catch_up_due: Nanos,
    pub(super) catch_up_wanted: bool,
    /// The catch-up streams this replica serves, by requesting peer (`stream`).
    pub(super) catch_up_streams: BTreeMap<NodeId, CatchUpStream>,
    /// Catch-up chunks received ahead of the next instance (overtaken on the way), by
    /// first instance, until the gap before them fills: at most
    /// `catch_up_credit_max` (`learner`).
    pub(super) catch_up_ahead: BTreeMap<Instance, Vec<Entry>>,
    /// The requesting side's credit accounting: chunks learned and not yet durable
    /// (`learner`).
    pub(super) catch_up_renewal: CatchUpRenewal,
    // Recovery from lost state.
    pub(super) voting: bool,
    pub(super) rejoin: Option<Rejoin>,
    /// This replica lost its state in a group whose membership changed: it never
    /// votes nor campaigns again under its node id (`learner`, "Retirement").
    pub(super) retired: bool,
    /// A Config entry was accepted, learned or restored here (`learner`,
    /// `membership_ever_changed`: the memberships in `configs` tell the rest).
    pub(super) config_entry_seen: bool,
    pub(super) fenced: bool,
    // Client proposals.
    pub(super) queue: VecDeque<Pending>,
    pub(super) queue_size: usize,
    /// Proposals of chosen instances, waiting to complete at apply.
    pub(super) awaiting_apply: SlotLog<(Ballot, Proposals)>,
    pub(super) counters: Counters,
    pub(super) restored_apply: Vec<Apply>,
    /// Records the start produced (`Record::Installed` at a checkpoint only a lost
    /// log let it install), written by the shard first.
    pub(super) restored_persist: Vec<Record>,
    /// The highest instance installed from a peer's checkpoint in this life (see
    /// `transfer`): accepts at or below it are not acknowledged.
    pub(super) installed_through: Instance,
    /// Pre-vote and handover state (`leadership`).
    pub(super) leadership: Leadership,
}

impl Group {
    /// A group replica starting at `now` from `restore` (use `Restore::default()` for
    /// a brand-new replica). Panics if `config` is invalid (validate it first).
    #[must_use]
    pub fn new(config: GroupConfig, restore: Restore, now: Nanos) -> Group {
        if let Err(why) = config.validate() {
            panic!("invalid GroupConfig: {why}");
        }
        let proven = restore.chosen_proven();
        let unproven_checkpoint = restore.unproven_checkpoint();
        let mut log = SlotLog::new();
        let mut counters = Counters::default();
        // A slot above `Instance::MAX` (a log written before the bound, after a forged
        // accept) lies beyond any chosen prefix a log can reach, and no honest leader
        // proposed it: kept, it would put an out-of-bounds instance in every promise
        // and catch-up answer (which peers refuse). Dropped and counted.
        let mut beyond = 0;
        let config_entry_seen = restore
            .accepted
            .values()
            .any(|(_, entry)| matches!(entry.body, Body::Config(_)))
            || restore
                .learned
                .values()
                .any(|entry| matches!(entry.body, Body::Config(_)));
        assert!(
            restore
                .accepted
                .keys()
                .next()
                .is_none_or(|first| first.0 >= 1),
            "restored accept at instance 0"
        );
        // The slots below a checkpoint leave memory as it is installed (`install_base`):
        // never built, so a restart costs the suffix above it, not the whole log.
        let floor = restore
            .checkpoint
            .as_ref()
            .map_or(Instance(0), |c| c.through);
        let (accepted, learned) = {
            let (mut accepted, mut learned) = (restore.accepted, restore.learned);
            (accepted.split_off(&floor), learned.split_off(&floor))
        };
        for (instance, (ballot, entry)) in accepted {
            if instance > Instance::MAX {
                beyond += 1;
                continue;
            }
            log.insert(instance, Slot::accepted(ballot, entry));
        }
        for (instance, entry) in learned {
            if instance > Instance::MAX {
                beyond += 1;
                continue;
            }
            log.insert(instance, Slot::learned(entry));
        }
        if beyond > 0 {
            counters
                .ignored
                .insert("restored_beyond_instance_max", beyond);
        }
        let prng = Prng::new(config.seed ^ now.0);
        let mut group = Group {
            prng,
            promised: restore.promised,
            log,
            log_floor: Instance(1),
            vote_floor: Instance(1),
            retained_size: 0,
            chosen_through: Instance(0),
            chosen_recorded: Instance(0),
            applied_through: Instance(0),
            checksum: 0,
            start_working_applied: Ballot::ZERO,
            filters: Filters::new(Instance(0), Ballot::ZERO),
            configs: vec![(Instance(1), config.membership.clone())],
            config_change_pending: false,
            role: Role::Follower,
            leading: None,
            leader_hint: None,
            highest_round_seen: restore.promised.round,
            election_deadline: now,
            promised_in_parts: None,
            // A replica may have granted a lease just before it restarted: it honours
            // one full lease from its start before promising anyone.
            lease_granted_until: now.plus(config.lease_ns),
            lease_holder: None,
            catch_up_due: now,
            catch_up_wanted: false,
            catch_up_streams: BTreeMap::new(),
            catch_up_ahead: BTreeMap::new(),
            catch_up_renewal: CatchUpRenewal::default(),
            voting: !restore.lost_state && !restore.retired,
            rejoin: (restore.lost_state && !restore.retired).then(Rejoin::default),
            retired: restore.retired,
            config_entry_seen,
            fenced: false,
            queue: VecDeque::new(),
            queue_size: 0,
            awaiting_apply: SlotLog::new(),
            counters,
            restored_apply: Vec::new(),
            restored_persist: Vec::new(),
            installed_through: Instance(0),
            leadership: Leadership::default(),
            config,
        };
        // The held slots the WAL's `Chosen` record vouches for (`checkpoint`, fact 1),
        // unless the log lost state.
        let vouched = (!restore.lost_state).then_some((
            restore.installed_through,
            restore.chosen_through.min(Instance::MAX),
        ));
        group.restore_chosen(
            proven,
            restore.chosen_through.max(restore.installed_through),
            vouched,
            restore.checkpoint,
        );
        // A replica that lost its state and holds evidence of a membership change
        // (a restored checkpoint's memberships) retires at once (`learner`).
        group.retire_if_changed(false);
        group.reset_election_deadline(now);
        group.place_first_deadline(now);
        let mut scratch = Output::default();
        if let Some(through) = unproven_checkpoint {
            // A checkpoint trusted only because the log lost state: the log must
            // prove it once the rejoin marker goes (`paxos::checkpoint` module docs).
            scratch.persist.push(Record::Installed {
                group: group.config.group,
                through,
            });
        }
        group.apply_chosen(&mut scratch);
        // Restart re-applies the chosen prefix (above the checkpoint, if one was
        // installed); the executor reads it with `take_restored`, and the shard
        // writes the records of the start with `take_restored_records`.
        group.restored_apply = scratch.apply;
        group.restored_persist = scratch.persist;
        group
    }

    /// Advances the group by one input. See `Output` for what the executor must do
    /// with the result and in which order.
    pub fn step(&mut self, now: Nanos, input: Input, out: &mut Output) {
        match input {
            Input::Tick => self.on_tick(now, out),
            Input::Propose { id, value } => self.on_propose(id, Pending::Value(id, value), out),
            Input::ChangeMembership { id, membership } => {
                self.on_change_membership(now, id, membership, out)
            }
            Input::Message(message) => self.on_message(now, message, out),
            Input::Flush => {
                if self.role == Role::Leader {
                    self.fill_window(now, true, out);
                }
            }
            Input::WalReadDone {
                peer,
                from,
                outcome,
            } => self.on_wal_read_done(peer, from, outcome, out),
            Input::TransferLeadership { to } => self.on_transfer_leadership(now, to, out),
            Input::InstallCheckpoint { from, base } => {
                self.install_checkpoint(now, from, base, out)
            }
            Input::CatchUpRefused { from, first } => self.on_catch_up_refused(from, first, out),
        }
    }

    fn on_message(&mut self, now: Nanos, message: Message, out: &mut Output) {
        use super::message::MessageBody as B;
        // FIRST, before any state changes (the highest round seen included): a value
        // no honest replica sends is forged or corrupt, and refused whole.
        if let Err(out_of_bounds) = message.body.check_bounds() {
            let reason = message.body.out_of_bounds_reason();
            self.ignore(reason);
            out.refused.push(Refused {
                group: message.group,
                from: message.from,
                reason,
                out_of_bounds,
            });
            return;
        }
        if message.group != self.config.group || message.to != self.config.node {
            self.ignore("misaddressed");
            return;
        }
        let from = message.from;
        match message.body {
            B::Prepare {
                ballot,
                from: first,
            } => self.on_prepare(now, from, ballot, first, out),
            B::Promise {
                ballot,
                chosen_through,
                entries,
                truncated,
            } => self.on_promise(now, from, ballot, chosen_through, entries, truncated, out),
            B::Reject { promised } => self.on_reject(now, promised, out),
            B::Accept {
                ballot,
                chosen_through,
                first,
                entries,
            } => self.on_accept(now, from, ballot, chosen_through, first, entries, out),
            B::Accepted { ballot, ranges } => self.on_accepted(now, from, ballot, &ranges, out),
            B::Heartbeat {
                ballot,
                chosen_through,
                sent_at,
                checksum_through,
                checksum,
            } => self.on_heartbeat(
                now,
                from,
                ballot,
                chosen_through,
                sent_at,
                (checksum_through, checksum),
                out,
            ),
            B::HeartbeatAck { ballot, sent_at } => {
                self.on_heartbeat_ack(now, from, ballot, sent_at)
            }
            B::CatchUpRequest { from: first, .. } if from == self.config.node => {
                self.on_catch_up_durable(now, first, out)
            }
            B::CatchUpRequest {
                from: first,
                credit,
                retired,
            } => self.on_catch_up_request(from, first, credit, retired, out),
            B::CatchUpChunk {
                chosen_through,
                promised,
                accepted_max,
                first,
                entries,
                from_voter,
                membership_changed,
            } => self.on_catch_up_chunk(
                now,
                from,
                chosen_through,
                (promised, accepted_max, from_voter, membership_changed),
                first,
                entries,
                out,
            ),
            // The shard streams and verifies checkpoints (`runtime::transfer`) and
            // hands the group only the verified result (`Input::InstallCheckpoint`).
            B::CheckpointRequest { .. } | B::CheckpointChunk { .. } => {
                self.ignore("checkpoint_message_for_shard");
            }
            // The shard verifies raw runs (`runtime::shard`, `wal::catch_up::verify_raw`)
            // and hands the group a `CatchUpChunk` of the verified entries.
            B::CatchUpRaw { .. } => self.ignore("catch_up_raw_for_shard"),
            B::Handover { ballot, target } => self.on_handover(now, from, ballot, target, out),
            B::PreVote { ballot } => self.on_pre_vote(now, from, ballot, out),
            B::PreVoteReply { ballot, granted } => {
                self.on_pre_vote_reply(now, from, ballot, granted, out)
            }
        }
    }

    fn on_tick(&mut self, now: Nanos, out: &mut Output) {
        // What this replica learned since (an installed checkpoint included) may show a
        // membership change while it rejoins (`learner`, "Retirement").
        self.retire_if_changed(false);
        match self.role {
            Role::Leader => self.leader_tick(now, out),
            Role::Candidate | Role::Follower => {
                if now >= self.election_deadline {
                    if self.may_campaign(now) {
                        // A rejoining replica must run its own Phase 1 even beside a
                        // live leader (`learner`, "Rejoin"): no pre-vote for it.
                        if self.rejoin.is_some() {
                            self.campaign(now, out);
                        } else {
                            self.start_pre_vote(now, out);
                        }
                    } else {
                        self.reset_election_deadline(now);
                    }
                }
                if self.role == Role::Candidate {
                    self.leader_tick(now, out);
                }
            }
        }
        if self.wants_catch_up() && now >= self.catch_up_due {
            self.request_catch_up(now, out);
        }
    }

    pub(super) fn on_propose(&mut self, id: ProposalId, pending: Pending, out: &mut Output) {
        let size = match &pending {
            Pending::Value(_, value) => value.len(),
            Pending::Config(..) => 0,
        };
        if self.role != Role::Leader || self.transferring_to().is_some() {
            let hint = self
                .transferring_to()
                .or(self.leader_hint.map(|(node, _)| node));
            let error = ProposeError::NotLeader { hint };
            out.complete.push(Completion { id, error });
            return;
        }
        if size > self.config.value_size_max {
            let error = ProposeError::TooLarge {
                size,
                max: self.config.value_size_max,
            };
            out.complete.push(Completion { id, error });
            return;
        }
        if self.queue.len() >= self.config.proposal_queue_count_max
            || self.queue_size + size > self.config.proposal_queue_size_max
        {
            let error = ProposeError::Overloaded {
                queued_count: self.queue.len(),
                queued_size: self.queue_size,
            };
            out.complete.push(Completion { id, error });
            return;
        }
        self.queue_size += size;
        self.queue.push_back(pending);
    }

    // ----- the apply path -----

    /// Applies every chosen, unapplied instance in order (ordering rule 4 of `Output`).
    pub(super) fn apply_chosen(&mut self, out: &mut Output) {
        let mut config_applied = false;
        while self.applied_through < self.chosen_through {
            let instance = self.applied_through.next();
            let slot = self
                .log
                .get_mut(&instance)
                .expect("every instance through chosen_through is in the log");
            assert!(slot.chosen, "applying unchosen instance {}", instance.0);
            let entry = slot.entry.clone();
            // Ghost replay guard (reference 003): an entry first proposed by a leader
            // older than the latest applied StartWorking was invisible when that leader
            // started serving; it must never surface later.
            let skip = entry.origin < self.start_working_applied;
            if !skip {
                match &entry.body {
                    Body::StartWorking => {
                        self.start_working_applied = entry.origin;
                        self.filters.push(instance, entry.origin);
                    }
                    Body::Config(membership) => {
                        let effective =
                            Instance(instance.0.saturating_add(self.config.window_instances_max));
                        self.configs.push((effective, membership.clone()));
                    }
                    Body::Values(_) | Body::Noop => {}
                }
            }
            config_applied |= matches!(entry.body, Body::Config(_));
            self.checksum = entry_checksum(self.checksum, instance, &entry);
            slot.checksum = Some(self.checksum);
            let proposals = match self.awaiting_apply.remove(&instance) {
                Some((ballot, ids)) if ballot == entry.origin && !skip => ids,
                Some((_, ids)) => {
                    for id in ids {
                        out.complete.push(Completion {
                            id,
                            error: ProposeError::Indeterminate,
                        });
                    }
                    Proposals::new()
                }
                None => Proposals::new(),
            };
            self.applied_through = instance;
            self.retained_size = self.retained_size.saturating_add(entry.encoded_size());
            out.apply.push(Apply {
                group: self.config.group,
                instance,
                entry,
                skip,
                proposals,
                checksum: self.checksum,
            });
        }
        if config_applied {
            self.config_change_pending = self.config_in_flight();
        }
        self.release_retained();
    }

    /// Drops applied slots from the bottom of the log while more than the retention
    /// is kept (see "In-memory retention"); the newest applied slot always stays.
    fn release_retained(&mut self) {
        let limit = self.applied_through.min(self.chosen_recorded);
        while self.log_floor < limit {
            let kept = limit.0 - self.log_floor.0 + 1;
            if kept <= self.config.retention_instances_max
                && self.retained_size <= self.config.retention_size_max
            {
                break;
            }
            if let Some(slot) = self.log.remove(&self.log_floor) {
                self.retained_size = self.retained_size.saturating_sub(slot.entry.encoded_size());
            }
            self.log_floor = self.log_floor.next();
        }
    }

    /// Marks `instance` chosen with `entry` (`chosen_through + 1` only), persisting a
    /// `Learn` record when the replica had not accepted exactly this value.
    pub(super) fn learn_chosen(&mut self, instance: Instance, entry: Entry, out: &mut Output) {
        assert_eq!(instance, self.chosen_through.next(), "chosen out of order");
        let holds_it = self
            .log
            .get(&instance)
            .is_some_and(|slot| slot.entry == entry);
        if holds_it {
            if let Some(slot) = self.log.get_mut(&instance) {
                slot.chosen = true;
            }
        } else {
            out.persist.push(Record::Learn {
                group: self.config.group,
                instance,
                entry: entry.clone(),
            });
            self.config_entry_seen |= matches!(entry.body, Body::Config(_));
            self.log.insert(instance, Slot::learned(entry));
        }
        self.chosen_through = instance;
    }

    /// After `chosen_through` advanced: persist the watermark lazily, retire the
    /// leader's in-flight instances, apply.
    pub(super) fn on_chosen_advanced(&mut self, out: &mut Output) {
        // Slots right above already known chosen (learned, or vouched for by the
        // restored WAL's `Chosen` record past a gap: `checkpoint`) extend the run.
        while self
            .log
            .get(&self.chosen_through.next())
            .is_some_and(|slot| slot.chosen)
        {
            self.chosen_through = self.chosen_through.next();
        }
        if self.chosen_through > self.chosen_recorded {
            out.persist.push(Record::Chosen {
                group: self.config.group,
                through: self.chosen_through,
            });
            self.chosen_recorded = self.chosen_through;
        }
        if let Some(leading) = self.leading.as_mut() {
            let chosen = self.chosen_through;
            while let Some((instance, _)) = leading.inflight.first_key_value() {
                if instance > chosen {
                    break;
                }
                let inflight = leading
                    .inflight
                    .remove(&instance)
                    .expect("first key exists");
                let same = self
                    .log
                    .get(&instance)
                    .is_some_and(|s| s.entry == inflight.entry);
                if same {
                    self.awaiting_apply
                        .insert(instance, (inflight.entry.origin, inflight.proposals));
                } else {
                    for id in inflight.proposals {
                        out.complete.push(Completion {
                            id,
                            error: ProposeError::Indeterminate,
                        });
                    }
                }
            }
            if leading.next <= chosen {
                leading.next = chosen.next();
            }
            leading.learned.retain(|instance, _| *instance > chosen);
        }
        self.apply_chosen(out);
    }

    // ----- membership -----

    /// The voters for `instance` (known for every instance up to chosen + W).
    #[must_use]
    pub fn membership_at(&self, instance: Instance) -> &Membership {
        let mut current = &self.configs[0].1;
        for (effective, membership) in &self.configs {
            if *effective <= instance {
                current = membership;
            } else {
                break;
            }
        }
        current
    }

    /// The newest membership chosen (possibly not yet in effect).
    #[must_use]
    pub fn latest_membership(&self) -> &Membership {
        &self.configs.last().expect("configs is never empty").1
    }

    // ----- helpers -----

    pub(super) fn ignore(&mut self, reason: &'static str) {
        *self.counters.ignored.entry(reason).or_insert(0) += 1;
    }

    /// Whether the tick asks peers for chosen values: lagging behind a known
    /// watermark, rebuilding lost state, or below the vote floor (`checkpoint`).
    pub(super) fn wants_catch_up(&self) -> bool {
        self.catch_up_wanted || self.rejoin.is_some() || self.relearning_vote_floor()
    }

    pub(super) fn may_campaign(&self, now: Nanos) -> bool {
        let leased_to_other =
            now < self.lease_granted_until && self.lease_holder != Some(self.config.node);
        (self.voting || self.rejoin_may_campaign())
            && !self.fenced
            && !leased_to_other
            && self.latest_membership().contains(self.config.node)
    }

    pub(super) fn send(&self, out: &mut Output, to: NodeId, body: super::message::MessageBody) {
        out.send.push(Message {
            group: self.config.group,
            from: self.config.node,
            to,
            body,
        });
    }

    pub(super) fn send_after_persist(
        &self,
        out: &mut Output,
        to: NodeId,
        body: super::message::MessageBody,
    ) {
        out.send_after_persist.push(Message {
            group: self.config.group,
            from: self.config.node,
            to,
            body,
        });
    }

    /// Fails every queued proposal with `NotLeader`.
    pub(super) fn fail_queue(&mut self, out: &mut Output) {
        let hint = self
            .transferring_to()
            .or(self.leader_hint.map(|(node, _)| node));
        for pending in self.queue.drain(..) {
            let id = match pending {
                Pending::Value(id, _) | Pending::Config(id, _) => id,
            };
            out.complete.push(Completion {
                id,
                error: ProposeError::NotLeader { hint },
            });
        }
        self.queue_size = 0;
    }

    /// Checks the invariants of the module docs; panics with the values if broken.
    pub fn invariants(&self) {
        self.streams_invariants();
        assert!(
            self.applied_through <= self.chosen_through,
            "applied_through {} > chosen_through {}",
            self.applied_through.0,
            self.chosen_through.0
        );
        // The top of the chosen prefix still in memory (older instances were checked
        // when the watermark passed them; walking the log every step would be
        // quadratic).
        let low = self
            .chosen_through
            .0
            .saturating_sub(3)
            .max(self.log_floor.0);
        for i in low..=self.chosen_through.0 {
            let slot = self.log.get(&Instance(i));
            assert!(
                slot.is_some_and(|s| s.chosen),
                "instance {i} <= chosen_through {} is not chosen in the log",
                self.chosen_through.0
            );
        }
        // Retention: nothing below the floor, nothing unapplied dropped, the bound kept.
        assert!(self.log_floor.0 >= 1);
        // A checkpoint installed from a peer at C, or restored over a WAL truncated
        // through C, leaves no slot at C: floor C + 1 (`install_base`);
        // `release_retained` stops below it.
        assert!(
            self.log_floor.0 <= self.applied_through.0.max(1)
                || (self.log_floor == self.applied_through.next()
                    && self.applied_through <= self.installed_through),
            "log_floor {} above applied_through {}: an unapplied slot was dropped",
            self.log_floor.0,
            self.applied_through.0
        );
        if let Some((first, _)) = self.log.first_key_value() {
            assert!(
                first >= self.log_floor,
                "slot {} below log_floor {}",
                first.0,
                self.log_floor.0
            );
        }
        if self.applied_through >= self.log_floor {
            let kept = self.applied_through.0 - self.log_floor.0 + 1;
            assert!(
                kept <= self.config.retention_instances_max
                    || self.log_floor == self.applied_through,
                "{kept} applied slots kept, above retention_instances_max {}",
                self.config.retention_instances_max
            );
            // Every applied slot kept is in memory (walked only when short: the check
            // runs after every simulated step).
            if kept <= 256 {
                let mut size = 0usize;
                for i in self.log_floor.0..=self.applied_through.0 {
                    let slot = self.log.get(&Instance(i));
                    assert!(
                        slot.is_some_and(|s| s.chosen),
                        "applied instance {i} at or above log_floor {} missing",
                        self.log_floor.0
                    );
                    size += slot.map_or(0, |s| s.entry.encoded_size());
                }
                assert_eq!(size, self.retained_size, "retained_size drifted");
            }
        }
        assert!(self.queue.len() <= self.config.proposal_queue_count_max);
        assert!(self.queue_size <= self.config.proposal_queue_size_max);
        if let Some(leading) = &self.leading {
            assert_eq!(leading.ballot.node, self.config.node);
            assert!(
                leading.ballot.round <= Ballot::ROUND_MAX,
                "campaigned at round {} above ROUND_MAX",
                leading.ballot.round
            );
            if leading.elected {
                assert!(leading.next > self.chosen_through);
                assert!(
                    leading.next.0
                        <= self
                            .chosen_through
                            .0
                            .saturating_add(self.config.window_instances_max)
                            .saturating_add(1),
                    "next {} beyond window of chosen_through {}",
                    leading.next.0,
                    self.chosen_through.0
                );
            }
            for (instance, _) in leading.inflight.range(..) {
                assert!(instance > self.chosen_through && instance < leading.next);
            }
            assert!(leading.inflight.len() as u64 <= self.config.window_instances_max);
        }
        assert_eq!(self.leading.is_some(), self.role != Role::Follower);
        self.filters.invariants();
        assert_eq!(self.filters.latest(), self.start_working_applied);
        assert!(self.filters.readable_from() <= self.applied_through.next());
    }
}
