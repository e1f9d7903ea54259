//! The clients: proposals, mostly to the believed leader, linearizable reads on their
//! own PRNG stream, and, in the safety phase, leadership transfers to random nodes
//! (alive or not, cut off or not, the leader itself now and then).

use bytes::Bytes;

use super::{Cluster, Event, Node, LIVENESS_LOAD_NS};
use crate::paxos::{GroupId, ProposalId, Role};
use crate::prng::Prng;
use crate::runtime::shard::ReadId;
use crate::runtime::{shard_of, ShardInput};
use crate::sim::checkers::Violation;

/// One client event in this many asks for a leadership transfer instead of proposing.
const TRANSFER_ONE_IN: u64 = 32;

impl Cluster {
    pub(super) fn client(&mut self) -> Result<(), Violation> {
        if self.liveness && self.now >= self.options.safety_phase_ns + LIVENESS_LOAD_NS {
            self.proposing = false;
            return Ok(());
        }
        let interval_min = self.options.proposal_interval_ns_min.max(200_000);
        let interval_max = self.options.proposal_interval_ns_max.max(interval_min);
        let next = self.now + self.prng.range(interval_min, interval_max);
        self.schedule(next, Event::Client);
        if !self.liveness && self.prng.below(TRANSFER_ONE_IN) == 0 {
            return self.transfer();
        }
        if self.proposals_in_flight.len() >= self.options.proposals_in_flight_max {
            return Ok(());
        }
        let group = self.groups[self.prng.index(self.groups.len())];
        // Mostly the believed leader; sometimes anyone (NotLeader is a valid answer).
        let leader = self.leader_node(group);
        let Some(node) = client_target(leader, &self.nodes, &mut self.prng) else {
            return Ok(());
        };
        let id = ProposalId(self.proposal_next);
        self.proposal_next += 1;
        let value = self.value(id);
        let node_id = self.nodes[node].id;
        self.checkers
            .durability
            .observe_propose(node_id, group, id, value.clone())?;
        self.checkers
            .liveness
            .observe_propose(node_id, group, id, self.now);
        self.checkers.partial.observe_propose(group, self.now);
        self.proposals_in_flight.insert(id, (node, group));
        if self.liveness {
            self.proposed_after_heal += 1;
        }
        let shard = usize::from(shard_of(group, self.shard_count()));
        self.step_shard(node, shard, ShardInput::Propose { group, id, value })
    }

    /// Asks the leader of a random group, if one is up, to hand its leadership over to a
    /// random node (`paxos::leadership`).
    fn transfer(&mut self) -> Result<(), Violation> {
        let group = self.groups[self.prng.index(self.groups.len())];
        let to = self.nodes[self.prng.index(self.nodes.len())].id;
        let leader = (0..self.nodes.len()).find(|n| {
            self.nodes[*n].up
                && self
                    .group_on(*n, group)
                    .is_some_and(|g| g.role() == Role::Leader)
        });
        let Some(node) = leader else {
            return Ok(());
        };
        self.report.transfers_asked += 1;
        let shard = usize::from(shard_of(group, self.shard_count()));
        self.step_shard(node, shard, ShardInput::TransferLeadership { group, to })
    }

    /// Issues one read and schedules the next, every draw from the reads' own stream.
    pub(super) fn read(&mut self) -> Result<(), Violation> {
        let mean = self
            .options
            .read_interval_ns_mean
            .expect("reads are scheduled only when on");
        let gap = self.read_prng.range(mean / 2, mean + mean / 2).max(1);
        self.read_next_ns = Some(self.now + gap);
        let group = self.groups[self.read_prng.index(self.groups.len())];
        let leader = (0..self.nodes.len()).find(|n| {
            self.nodes[*n].up
                && self
                    .group_on(*n, group)
                    .is_some_and(|g| g.role() == Role::Leader)
        });
        let node = match leader {
            Some(node) if self.read_prng.below(4) != 0 => node,
            _ => {
                let up: Vec<usize> = (0..self.nodes.len())
                    .filter(|n| self.nodes[*n].up)
                    .collect();
                if up.is_empty() {
                    return Ok(());
                }
                up[self.read_prng.index(up.len())]
            }
        };
        let id = ReadId(self.read_id_next);
        self.read_id_next += 1;
        self.report.reads.issued += 1;
        self.checkers
            .read
            .observe_issued(id.0, self.nodes[node].id, group, self.now);
        self.reads_in_flight.insert(id, node);
        let shard = usize::from(shard_of(group, self.shard_count()));
        self.step_shard(node, shard, ShardInput::Read { group, id })
    }

    pub(super) fn value(&mut self, id: ProposalId) -> Bytes {
        let large =
            self.options.large_value_ppm > 0 && self.prng.chance_ppm(self.options.large_value_ppm);
        let size = if large {
            self.prng.range(
                self.options.value_size_max as u64,
                self.options.large_value_size_max as u64,
            )
        } else {
            self.prng.range(
                self.options.value_size_min as u64,
                self.options.value_size_max as u64,
            )
        } as usize;
        // Values are random (the checkers track proposals by id, not by content); the
        // id is embedded when it fits, which makes logs easier to read.
        let mut bytes = vec![0u8; size];
        self.prng.fill(&mut bytes);
        if size >= 8 {
            bytes[..8].copy_from_slice(&id.0.to_le_bytes());
        }
        Bytes::from(bytes)
    }
}

impl Cluster {
    /// The node that is up and leads `group`, if any (the first found).
    pub(super) fn leader_node(&self, group: GroupId) -> Option<usize> {
        (0..self.nodes.len()).find(|n| {
            self.nodes[*n].up
                && self
                    .group_on(*n, group)
                    .is_some_and(|g| g.role() == Role::Leader)
        })
    }
}

/// Where a client event goes: `leader` three times in four, else any node that is up
/// (`NotLeader` is a valid answer); `None` when every node is down. Draws from
/// `prng` in that order (the draws are part of a seed's run).
pub(super) fn client_target(
    leader: Option<usize>,
    nodes: &[Node],
    prng: &mut Prng,
) -> Option<usize> {
    match leader {
        Some(node) if prng.below(4) != 0 => Some(node),
        _ => {
            let up: Vec<usize> = (0..nodes.len()).filter(|n| nodes[*n].up).collect();
            (!up.is_empty()).then(|| up[prng.index(up.len())])
        }
    }
}
