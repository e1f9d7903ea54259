//! What a group shows its runtime, its metrics and the simulator (read-only
//! accessors, the chosen log read back as the state machine saw it), and the running
//! checksum of the chosen log.
//!
//! Invariant: nothing here changes a group.

use super::config::GroupConfig;
use std::collections::BTreeMap;

use super::group::{Group, Role};
use super::output::{Apply, Record};
use super::types::{Ballot, Body, Entry, Instance, NodeId, ProposalId};

/// Counters of messages and requests dropped, by named reason.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Drops by reason.
    pub ignored: BTreeMap<&'static str, u64>,
    /// Elections started.
    pub campaigns: u64,
    /// Times this replica became leader.
    pub elections_won: u64,
    /// Instances this replica chose as leader.
    pub chosen_as_leader: u64,
    /// Heartbeat checksum mismatches seen (this replica is then fenced).
    pub checksum_mismatches: u64,
    /// Catch-up chunks sent from entries read back from the WAL.
    pub catch_up_wal_served: u64,
    /// Catch-up streams started over with chunks in flight (a repeated request: a
    /// chunk was lost, or the requester's timer ran out first; `stream`).
    pub catch_up_streams_restarted: u64,
    /// Checkpoints received from peers and installed.
    pub checkpoints_installed: u64,
    /// Leaderships handed over to a transfer target (`leadership`).
    pub handovers: u64,
    /// Transfers abandoned: what was in flight was not chosen within an election
    /// timeout, or the leader stepped down first.
    pub transfers_abandoned: u64,
    /// Times this replica stopped leading for want of a quorum heard from within an
    /// election timeout (check-quorum).
    pub check_quorum_step_downs: u64,
    /// Pre-votes started (each precedes a campaign that is not a transfer's).
    pub pre_votes: u64,
    /// Transfers this replica started to move leadership to the group's preferred
    /// replica (`placement`).
    pub placement_transfers: u64,
    /// No-ops this leader proposed to learn whether the preferred replica is caught up
    /// (`placement`).
    pub placement_probes: u64,
    /// Adds this leader refused because the newcomer is retired (`joining`).
    pub adds_refused_retired: u64,
}

impl Group {
    /// This replica's role.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }
    /// The leader's ballot, when leading or campaigning.
    #[must_use]
    pub fn ballot(&self) -> Option<Ballot> {
        self.leading.as_ref().map(|l| l.ballot)
    }
    /// Where the Phase 1 of this replica's ballot began, when leading or campaigning.
    #[must_use]
    pub fn phase1_from(&self) -> Option<Instance> {
        self.leading.as_ref().map(|l| l.from)
    }
    /// The highest ballot promised.
    #[must_use]
    pub fn promised(&self) -> Ballot {
        self.promised
    }
    /// The highest round seen in a message or promised: the next campaign goes above
    /// it (or, at `Ballot::ROUND_MAX`, does not happen).
    #[must_use]
    pub fn highest_round_seen(&self) -> u64 {
        self.highest_round_seen.max(self.promised.round)
    }
    /// Inclusive chosen watermark.
    #[must_use]
    pub fn chosen_through(&self) -> Instance {
        self.chosen_through
    }
    /// Inclusive applied watermark.
    #[must_use]
    pub fn applied_through(&self) -> Instance {
        self.applied_through
    }
    /// The running checksum through `applied_through`.
    #[must_use]
    pub fn checksum(&self) -> u32 {
        self.checksum
    }
    /// The leader this replica believes in.
    #[must_use]
    pub fn leader_hint(&self) -> Option<NodeId> {
        self.leader_hint.map(|(node, _)| node)
    }
    /// The lease this replica's acceptor grants: to whom (`None`: to no one, the lease a
    /// restarted replica honours in case it granted one before) and until when (local
    /// clock, exclusive). While it runs the replica promises no other proposer.
    #[must_use]
    pub fn lease_grant(&self) -> (Option<NodeId>, super::types::Nanos) {
        (self.lease_holder, self.lease_granted_until)
    }
    /// Whether the replica votes (false while re-learning lost state).
    #[must_use]
    pub fn is_voting(&self) -> bool {
        self.voting
    }
    /// Whether this replica is retired: it lost its state in a group whose membership
    /// changed and never votes again under its node id (`learner`, "Retirement").
    #[must_use]
    pub fn is_retired(&self) -> bool {
        self.retired
    }
    /// Whether this replica is re-learning lost state (not voting until its rejoin
    /// completes, `learner`).
    #[must_use]
    pub fn is_rejoining(&self) -> bool {
        self.rejoin.is_some()
    }
    /// Whether the membership of this group ever changed, as far as this replica
    /// holds (`learner`, "Retirement").
    #[must_use]
    pub fn membership_changed(&self) -> bool {
        self.membership_ever_changed()
    }
    /// Whether a checksum mismatch fenced this replica.
    #[must_use]
    pub fn is_fenced(&self) -> bool {
        self.fenced
    }
    /// Counters of this replica.
    #[must_use]
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// Queued proposals not yet in an instance.
    #[must_use]
    pub fn queued_count(&self) -> usize {
        self.queue.len()
    }
    /// Instances in flight (leader only).
    #[must_use]
    pub fn inflight_count(&self) -> usize {
        self.leading.as_ref().map_or(0, |l| l.inflight.len())
    }
    /// The instance this leader proposed proposal `id` at, while it is in flight there
    /// (sent, not yet chosen); `None` while it is queued, once chosen or failed, or
    /// when not leading. Scans the window: for tracing a request, not for every one.
    #[must_use]
    pub fn inflight_instance_of(&self, id: ProposalId) -> Option<Instance> {
        let leading = self.leading.as_ref()?;
        leading
            .inflight
            .range(..)
            .find(|(_, inflight)| inflight.proposals.contains(&id))
            .map(|(instance, _)| instance)
    }
    /// The group's configuration.
    #[must_use]
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }
    /// Entries re-applied at construction from the restored chosen prefix (drained).
    pub fn take_restored(&mut self) -> Vec<Apply> {
        std::mem::take(&mut self.restored_apply)
    }
    /// Records the start produced, to be persisted before anything the group
    /// produces later (drained).
    pub fn take_restored_records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.restored_persist)
    }
    /// The first instance still in memory: every instance below it is applied and
    /// served from the WAL (see "In-memory retention").
    #[must_use]
    pub fn log_floor(&self) -> Instance {
        self.log_floor
    }
    /// Slots held in memory (applied ones of the retention, and everything above).
    #[must_use]
    pub fn log_len(&self) -> usize {
        self.log.len()
    }
    /// Bytes of the applied slots kept in memory.
    #[must_use]
    pub fn retained_size(&self) -> usize {
        self.retained_size
    }
    /// The chosen entry at `instance`, if still in memory.
    #[must_use]
    pub fn chosen_entry(&self, instance: Instance) -> Option<&Entry> {
        self.log
            .get(&instance)
            .filter(|s| s.chosen)
            .map(|s| &s.entry)
    }

    /// The first instance whose entry can be read back with its skip flag
    /// (`skipped`): 1, or the instance after the checkpoint the group was restored
    /// from, or later once `filters::FILTERS_COUNT_MAX` leader changes were applied.
    #[must_use]
    pub fn log_readable_from(&self) -> Instance {
        self.filters.readable_from()
    }
    /// Whether the chosen `entry` at `instance` (at most `applied_through`) was
    /// skipped by the apply path (first proposed below the latest StartWorking applied
    /// before it: never applied to the state machine); `None` below
    /// `log_readable_from` or above `applied_through`.
    #[must_use]
    pub fn skipped(&self, instance: Instance, entry: &Entry) -> Option<bool> {
        if instance > self.applied_through {
            return None;
        }
        self.filters.skipped(instance, entry.origin)
    }
}

/// Folds one chosen entry into a running CRC32C (the replicas' reconciliation sum).
///
/// The sum is the CRC32C of the concatenation of the instance, the origin ballot, a
/// tag and the body (each value preceded by its length), all little-endian. The fixed
/// fields go through one call (CRC32C of a concatenation equals appending the parts
/// one by one, so this is the same sum as appending each field: it is 6 calls per
/// value fewer on the hot path).
#[must_use]
pub fn entry_checksum(crc: u32, instance: Instance, entry: &Entry) -> u32 {
    // instance (8), origin round (8), origin node (4), tag (1), first value length (8).
    let mut head = [0u8; 29];
    head[..8].copy_from_slice(&instance.0.to_le_bytes());
    head[8..16].copy_from_slice(&entry.origin.round.to_le_bytes());
    head[16..20].copy_from_slice(&entry.origin.node.0.to_le_bytes());
    let (tag, first) = match &entry.body {
        Body::Values(values) => (1, values.first()),
        Body::Noop => (2, None),
        Body::StartWorking => (3, None),
        Body::Config(_) => (4, None),
    };
    head[20] = tag;
    let mut crc = match first {
        Some(value) => {
            head[21..29].copy_from_slice(&(value.len() as u64).to_le_bytes());
            let crc = crc32c::crc32c_append(crc, &head);
            crc32c::crc32c_append(crc, value)
        }
        None => crc32c::crc32c_append(crc, &head[..21]),
    };
    match &entry.body {
        Body::Values(values) => {
            for value in values.iter().skip(1) {
                crc = crc32c::crc32c_append(crc, &(value.len() as u64).to_le_bytes());
                crc = crc32c::crc32c_append(crc, value);
            }
        }
        Body::Noop | Body::StartWorking => {}
        Body::Config(membership) => {
            for node in membership.voters() {
                crc = crc32c::crc32c_append(crc, &node.0.to_le_bytes());
            }
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::entry_checksum;
    use crate::paxos::types::{Ballot, Body, Entry, Instance, Membership, NodeId, Values};
    use bytes::Bytes;

    /// The sum as defined: every field appended on its own.
    fn field_by_field(crc: u32, instance: Instance, entry: &Entry) -> u32 {
        let mut crc = crc32c::crc32c_append(crc, &instance.0.to_le_bytes());
        crc = crc32c::crc32c_append(crc, &entry.origin.round.to_le_bytes());
        crc = crc32c::crc32c_append(crc, &entry.origin.node.0.to_le_bytes());
        match &entry.body {
            Body::Values(values) => {
                crc = crc32c::crc32c_append(crc, &[1]);
                for value in values {
                    crc = crc32c::crc32c_append(crc, &(value.len() as u64).to_le_bytes());
                    crc = crc32c::crc32c_append(crc, value);
                }
            }
            Body::Noop => crc = crc32c::crc32c_append(crc, &[2]),
            Body::StartWorking => crc = crc32c::crc32c_append(crc, &[3]),
            Body::Config(membership) => {
                crc = crc32c::crc32c_append(crc, &[4]);
                for node in membership.voters() {
                    crc = crc32c::crc32c_append(crc, &node.0.to_le_bytes());
                }
            }
        }
        crc
    }

    #[test]
    fn equals_the_field_by_field_sum() {
        let value = |n: usize| Bytes::from((0..n).map(|i| i as u8 ^ 0x5a).collect::<Vec<u8>>());
        let bodies = vec![
            Body::Values(Values::new()),
            Body::Values(smallvec::smallvec![value(0)]),
            Body::Values(smallvec::smallvec![value(100)]),
            Body::Values(smallvec::smallvec![value(3), value(0), value(4096)]),
            Body::Noop,
            Body::StartWorking,
            Body::Config(Membership::new(vec![NodeId(1), NodeId(2), NodeId(7)])),
        ];
        for body in bodies {
            let entry = Entry {
                origin: Ballot {
                    round: 0x0102_0304_0506_0708,
                    node: NodeId(9),
                },
                body,
            };
            for (crc, instance) in [(0, 1), (0xdead_beef, u64::MAX >> 2)] {
                assert_eq!(
                    entry_checksum(crc, Instance(instance), &entry),
                    field_by_field(crc, Instance(instance), &entry),
                    "{entry:?}"
                );
            }
        }
    }
}
