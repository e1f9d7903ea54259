//! Carrying out one shard's effects (the simulated disk write and its completion,
//! the network, applies, replies, reads, WAL reads, WAL truncation (`truncate`), the
//! rejoin marker), then feeding every
//! checker the state the step left.

use super::forge::forge_message;
use super::{Cluster, Event};
use crate::paxos::{
    Ballot, Body, GroupId, Instance, Lsn, Message, MessageBody, Nanos, NodeId, Role, WalRead,
    WalReadOutcome, WalReader,
};
use crate::runtime::shard::ProposalOutcome;
use crate::runtime::state_machine::StateMachine;
use crate::runtime::Effects;
use crate::sim::checkers::lease::Grant;
use crate::sim::checkers::send_durable::Fact;
use crate::sim::checkers::{LogShape, Violation, Watermarks};
use crate::wal::catch_up::{self, ReadPlan, RecordRead};
use crate::wal::layout::record_start;
use crate::wal::record::{self, Kind};
use crate::wal::WritePlan;
use bytes::Bytes;
use std::collections::BTreeMap;

/// In backpressure seeds (`Options::backpressure`), one WAL write in this many stalls...
const DISK_STALL_ONE_IN: u64 = 50;
/// ... for this long (ns, a range): records pile up behind it.
const DISK_STALL_NS: (u64, u64) = (50_000_000, 400_000_000);

impl Cluster {
    pub(super) fn execute(
        &mut self,
        node: usize,
        shard: usize,
        effects: &mut Effects,
    ) -> Result<(), Violation> {
        let id = self.nodes[node].id;
        self.report.refusal_lines += effects.warnings.len() as u64;
        if let Some(plan) = effects.write.take() {
            self.execute_write(node, shard, plan);
        }
        self.send_all(node, shard, effects)?;
        // Each install BEFORE the applies from its position on (`InstallCheckpoint`).
        let mut installs = std::mem::take(&mut effects.installs).into_iter().peekable();
        for (index, apply) in effects.apply.drain(..).enumerate() {
            while let Some(install) = installs.next_if(|i| i.apply_index <= index) {
                self.install(node, shard, install)?;
            }
            self.checkers.observe_apply(id, &apply)?;
            // The state machine, as the driver feeds it: values of non-skipped entries.
            if let (Body::Values(values), false) = (&apply.entry.body, apply.skip) {
                let machine = self.nodes[node]
                    .machines
                    .get_mut(&apply.group)
                    .expect("every group has a machine");
                for value in values {
                    machine.apply(apply.instance, value);
                }
            }
        }
        for install in installs {
            self.install(node, shard, install)?;
        }
        for read in std::mem::take(&mut effects.checkpoint_reads) {
            self.checkpoint_read(node, shard, read);
        }
        // AFTER the applies: each image is the state right after its instance.
        for take in std::mem::take(&mut effects.checkpoints) {
            self.take_checkpoint(node, shard, take);
        }
        // The shard's answers, one per proposal, after the applies they refer to.
        for (proposal, outcome) in effects.replies.drain(..) {
            if self
                .members
                .answered(proposal, &outcome, &mut self.report.membership)
            {
                continue;
            }
            let Some((_, group)) = self.proposals_in_flight.remove(&proposal) else {
                continue;
            };
            match outcome {
                ProposalOutcome::Applied { instance, .. } => {
                    if self.liveness {
                        self.acknowledged_after_heal += 1;
                    }
                    self.checkers.read.observe_acknowledged(group, instance);
                    self.checkers.liveness.observe_complete(id, group, proposal);
                }
                ProposalOutcome::Aborted => {
                    self.checkers.liveness.observe_complete(id, group, proposal);
                }
                ProposalOutcome::Failed(_) => {
                    self.checkers.durability.observe_failed(id, group, proposal);
                    self.checkers.liveness.observe_complete(id, group, proposal);
                }
            }
        }
        for read in effects.reads.drain(..) {
            if self.reads_in_flight.remove(&read.id).is_none() {
                continue;
            }
            match read.outcome {
                Ok(read_index) => {
                    // The node's state machine: its applied prefix, as its checksum.
                    let core = self.nodes[node].shards[shard].shard.as_ref();
                    let group = core
                        .and_then(|core| core.group(read.group))
                        .expect("a shard that answers a read has the group");
                    self.report.reads.served += 1;
                    self.checkers.read.observe_served(
                        read.id.0,
                        read_index,
                        group.applied_through(),
                        group.checksum(),
                        self.now,
                    )?;
                }
                Err(_) => {
                    self.report.reads.refused += 1;
                    self.checkers.read.observe_refused(read.id.0);
                }
            }
        }
        for read in effects.wal_reads.drain(..) {
            match read.reader {
                WalReader::Peer(_) => self.wal_read(node, shard, read)?,
                WalReader::Log(_) => self.log_wal_read(node, shard, read)?,
            }
        }
        for done in effects.log_reads.drain(..) {
            self.check_log_read(node, shard, done)?;
        }
        if let Some(truncate) = effects.wal_truncate.take() {
            self.wal_truncate(node, shard, &truncate)?;
        }
        if let Some(groups) = effects.retired_groups.take() {
            // Written before the marker may go (`Effects::retired_groups`).
            let id = self.nodes[node].id;
            for group in groups {
                if self.nodes[node].shards[shard].retired.insert(group) {
                    self.report.membership.retirements += 1;
                    self.members.retired.insert((id, group));
                    self.checkers.monotonic.observe_retired(id, group);
                }
            }
        }
        if effects.clear_rejoin_marker {
            // The marker file goes: a later restart no longer rejoins as a learner.
            self.nodes[node].shards[shard].lost_marker = false;
        }
        Ok(())
    }

    /// Sends what `effects` sends, each message checked as it leaves the node.
    fn send_all(
        &mut self,
        node: usize,
        shard: usize,
        effects: &mut Effects,
    ) -> Result<(), Violation> {
        let id = self.nodes[node].id;
        for (peer, messages) in effects.send.drain(..) {
            // What the peer receives is what the codec made of the messages.
            let messages = self.checkers.wire.carry(id, peer, &messages)?;
            for mut message in messages {
                self.checkers.bounds.observe_sent(id, &message)?;
                self.checkers.install.observe_sent(id, &message)?;
                self.checkers.message_size.observe_sent(id, &message)?;
                let chosen_through = self.nodes[node].shards[shard]
                    .shard
                    .as_ref()
                    .and_then(|core| core.group(message.group))
                    .map_or(Instance(0), |group| group.chosen_through());
                self.checkers
                    .send_durable
                    .observe_sent(id, &message, chosen_through)?;
                if let Some(ballot) = durable_ballot(&message) {
                    self.checkers
                        .monotonic
                        .observe_durable(id, message.group, ballot);
                }
                if durable_ballot(&message).is_some() {
                    // A retired replica never votes nor campaigns again (`learner`).
                    self.checkers.monotonic.observe_retired_send(
                        id,
                        message.group,
                        message.body.kind(),
                    )?;
                }
                if let MessageBody::Promise { ballot, .. } | MessageBody::Accepted { ballot, .. } =
                    &message.body
                {
                    self.checkers
                        .monotonic
                        .observe_vote(id, message.group, *ballot)?;
                }
                let forge = self.options.network_forge_ppm > 0
                    && self.forge_prng.chance_ppm(self.options.network_forge_ppm);
                let forged =
                    forge.then(|| forge_message(&message, self.nodes.len(), &mut self.forge_prng));
                self.maybe_flip_raw(&mut message);
                self.network
                    .send(Nanos(self.now), id, peer, message, &mut self.prng);
                if let Some(forged) = forged {
                    let (from, to) = (forged.from, forged.to);
                    self.network
                        .send(Nanos(self.now), from, to, forged, &mut self.forge_prng);
                }
            }
        }
        Ok(())
    }

    /// Writes `plan` on the shard's disk now and schedules its completion.
    fn execute_write(&mut self, node: usize, shard: usize, plan: WritePlan) {
        let slot = &mut self.nodes[node].shards[shard];
        let end = plan.offset as usize + plan.bytes.len();
        assert!(
            end <= slot.disk.size(),
            "simulated disk full at {end} bytes"
        );
        slot.disk.write(plan.offset, &plan.bytes);
        if slot.writes.issue(&plan) {
            self.report.writes_overlapped += 1;
        }
        slot.index.insert_plan(&plan);
        let id = self.nodes[node].id;
        self.checkers
            .recovery
            .observe_write(id, shard, plan.offset, &plan.bytes);
        for (lsn, fact) in written_facts(&plan.bytes) {
            self.checkers
                .send_durable
                .observe_written(id, shard, lsn, fact);
        }
        let mut latency = self.prng.range(
            self.options.disk_write_latency_ns_min,
            self.options.disk_write_latency_ns_max,
        ) + self.prng.range(
            self.options.disk_sync_latency_ns_min,
            self.options.disk_sync_latency_ns_max,
        );
        // Backpressure seeds only (the others draw nothing more): a stalled write.
        if self.options.backpressure && self.prng.below(DISK_STALL_ONE_IN) == 0 {
            latency += self.prng.range(DISK_STALL_NS.0, DISK_STALL_NS.1);
        }
        let incarnation = self.nodes[node].incarnation;
        self.schedule(
            self.now + latency,
            Event::WriteDone {
                node,
                shard,
                incarnation,
                lsn: plan.lsn_through,
                offset: plan.offset,
                size: plan.bytes.len(),
            },
        );
        if let Some(core) = self.nodes[node].shards[shard].shard.as_mut() {
            core.recycle(plan.bytes);
        }
        self.crash_if_waiting(node);
    }

    /// Reads `read` from the shard's disk as it is now (see the module doc of
    /// `cluster`) and schedules its answer after a disk latency.
    fn wal_read(&mut self, node: usize, shard: usize, read: WalRead) -> Result<(), Violation> {
        let (truncated, outcome) = self.read_wal_now(node, shard, &read)?;
        self.report.wal_reads += 1;
        if truncated {
            self.report.wal_reads_truncated += 1;
        }
        let outcome = self
            .truncated_below_checkpoint(node, shard, &read)
            .unwrap_or(outcome);
        let latency = self.wal_read_prng.range(
            self.options.disk_write_latency_ns_min,
            self.options.disk_write_latency_ns_max,
        );
        let incarnation = self.nodes[node].incarnation;
        self.schedule(
            self.now + latency,
            Event::WalReadDone {
                node,
                shard,
                incarnation,
                read,
                outcome,
            },
        );
        Ok(())
    }

    /// What `read` finds on the shard's disk as it is now, for a peer's catch-up or a
    /// log read alike, and whether its plan was `Truncated`. A record that is not
    /// what the index says is a simulator or WAL bug: reported as a violation.
    pub(super) fn read_wal_now(
        &self,
        node: usize,
        shard: usize,
        read: &WalRead,
    ) -> Result<(bool, WalReadOutcome), Violation> {
        let slot = &self.nodes[node].shards[shard];
        let plan = catch_up::plan(&slot.index, read);
        // The simulated disk is one image with one salt: every record is a buffer of
        // its own (segment 0), read as a peer's reader or a log read's.
        let records: Vec<RecordRead> = match &plan {
            ReadPlan::Records(records) => records
                .iter()
                .map(|(_, entry)| {
                    let span = Bytes::from(slot.disk.read(entry.offset, entry.size as usize));
                    RecordRead {
                        range: 0..span.len(),
                        span,
                        salt: slot.salt,
                        segment: 0,
                    }
                })
                .collect(),
            ReadPlan::Truncated { .. } => Vec::new(),
        };
        let (outcome, _) = catch_up::answer(read, &plan, &records).map_err(|mismatch| {
            Violation::new(
                "wal_read",
                format!("node {} shard {shard}: {mismatch}", node + 1),
            )
        })?;
        let truncated = matches!(plan, ReadPlan::Truncated { .. });
        Ok((truncated, outcome))
    }

    /// What every replica grants of `group`'s lease now, in true time (the lease
    /// checker's `Grant`): a node down, or up without the group yet, promises nothing.
    fn lease_grants(&self, group: GroupId) -> BTreeMap<NodeId, Grant> {
        (0..self.nodes.len())
            .map(|node| {
                let grant = match self.group_on(node, group).filter(|_| self.nodes[node].up) {
                    None => Grant::Down,
                    Some(replica) => {
                        let (holder, until) = replica.lease_grant();
                        Grant::Up {
                            holder,
                            until_ns: self.nodes[node].clock.true_of(until),
                        }
                    }
                };
                (self.nodes[node].id, grant)
            })
            .collect()
    }

    /// Feeds every checker the state of the groups of `node`'s `shard` after a step.
    pub(super) fn observe(&mut self, node: usize, shard: usize) -> Result<(), Violation> {
        let id = self.nodes[node].id;
        let local = self.nodes[node].clock.local(self.now);
        let Some(core) = self.nodes[node].shards[shard].shard.as_ref() else {
            return Ok(());
        };
        for group in core.groups() {
            let watermarks = Watermarks {
                promised: group.promised(),
                chosen_through: group.chosen_through(),
                applied_through: group.applied_through(),
                leader_ballot: (group.role() == Role::Leader)
                    .then(|| group.ballot())
                    .flatten(),
            };
            let group_id = group.config().group;
            self.checkers
                .observe_watermarks(id, group_id, &watermarks)?;
            self.checkers
                .partial
                .observe_chosen(group_id, watermarks.chosen_through, self.now);
            self.checkers
                .membership
                .observe_promised(id, group_id, group.promised());
            if let (Some(ballot), Some(from)) = (watermarks.leader_ballot, group.phase1_from()) {
                self.checkers
                    .membership
                    .observe_leader(id, group_id, ballot, from)?;
            }
            self.checkers.checkpoint.observe_durable(
                id,
                group_id,
                core.checkpoints().durable_through(group_id),
            );
            let config = group.config();
            let shape = LogShape {
                log_len: group.log_len(),
                log_floor: group.log_floor(),
                applied_through: group.applied_through(),
                chosen_through: group.chosen_through(),
                retained_size: group.retained_size(),
                retention_instances_max: config.retention_instances_max,
                retention_size_max: config.retention_size_max,
                accept_window_instances_max: config.accept_window_instances_max,
            };
            self.checkers.retention.observe(id, group_id, &shape)?;
            if let Some((ballot, at)) = group.handed_over() {
                let at_ns = self.nodes[node].clock.true_of(at);
                self.checkers.lease.release(group_id, id, ballot, at_ns);
            }
            if let (Some(until), Some(ballot)) = (group.lease_until(), group.ballot()) {
                if local < until {
                    let end = self.nodes[node].clock.true_of(until);
                    self.checkers
                        .lease
                        .observe_lease(group_id, id, ballot, self.now, end)?;
                    let grants = self.lease_grants(group_id);
                    let memberships = group.memberships_ahead();
                    self.checkers.lease.check_grants(
                        group_id,
                        id,
                        ballot,
                        (self.now, end),
                        &memberships,
                        &grants,
                    )?;
                }
            }
            if group.is_fenced() {
                return Err(Violation::new(
                    "checksum",
                    format!(
                        "node {} group {} fenced by a checksum mismatch",
                        id.0, group_id.0
                    ),
                ));
            }
        }
        if self.damaged == Some(node) && self.node_recovered(node) {
            self.damaged = None;
        }
        Ok(())
    }

    /// Whether `node` is up, every group votes (or is retired: it never will) and no
    /// shard carries a lost marker.
    pub(super) fn node_recovered(&self, node: usize) -> bool {
        let node = &self.nodes[node];
        node.up
            && node.shards.iter().all(|slot| {
                !slot.lost_marker
                    && slot
                        .shard
                        .as_ref()
                        .is_some_and(|core| core.groups().all(|g| g.is_voting() || g.is_retired()))
            })
    }
}

/// The Promise and Accept facts of the records in a write plan's bytes, with their
/// LSNs, in log order (the bytes this process encoded: read in place, as the index does).
fn written_facts(bytes: &[u8]) -> Vec<(Lsn, Fact)> {
    let mut facts = Vec::new();
    let mut at = 0u64;
    loop {
        at = record_start(at);
        let Some(peeked) = bytes.get(at as usize..).and_then(record::peek) else {
            return facts;
        };
        match peeked.kind {
            Kind::Promise => facts.push((
                peeked.lsn,
                Fact::Promise {
                    group: peeked.group,
                    ballot: peeked.ballot,
                },
            )),
            Kind::Accept => facts.push((
                peeked.lsn,
                Fact::Accept {
                    group: peeked.group,
                    instance: peeked.instance,
                    ballot: peeked.ballot,
                },
            )),
            Kind::Chosen | Kind::Learn | Kind::Pad | Kind::Installed => {}
        }
        at += u64::from(peeked.size);
    }
}

/// The fact a recovered record holds for `send_durable`, if any.
pub(super) fn recovered_fact(record: &crate::paxos::Record) -> Option<Fact> {
    use crate::paxos::Record as R;
    match record {
        R::Promise { group, ballot } => Some(Fact::Promise {
            group: *group,
            ballot: *ballot,
        }),
        R::Accept {
            group,
            instance,
            ballot,
            ..
        } => Some(Fact::Accept {
            group: *group,
            instance: *instance,
            ballot: *ballot,
        }),
        R::Chosen { .. } | R::Learn { .. } | R::Installed { .. } => None,
    }
}

/// The ballot a message proves durable on its sender: it may leave only once that
/// ballot is in the sender's log (promises and acks wait for the write; a candidate
/// persists its ballot before its prepares; a leader's accepts follow its election).
fn durable_ballot(message: &Message) -> Option<Ballot> {
    use crate::paxos::MessageBody as B;
    match &message.body {
        B::Promise { ballot, .. } | B::Accepted { ballot, .. } => Some(*ballot),
        B::Prepare { ballot, .. } | B::Accept { ballot, .. } => Some(*ballot),
        B::Reject { .. }
        | B::Heartbeat { .. }
        | B::HeartbeatAck { .. }
        | B::CatchUpRequest { .. }
        | B::CatchUpChunk { .. }
        | B::CatchUpRaw { .. }
        | B::CheckpointRequest { .. }
        | B::CheckpointChunk { .. }
        | B::Handover { .. }
        | B::PreVote { .. }
        | B::PreVoteReply { .. } => None,
    }
}
