//! Membership changes in the workload (the `members` profile): clients ask a node,
//! mostly the leader, to add a voter, remove one (the leader itself included) or
//! replace one (a removal, then an add on the same group at its next turn), keeping 2
//! to 7 voters, through `ShardInput::ChangeMembership`, during the seed's leader
//! changes, partitions and crashes. Some requests must be refused, and are counted as
//! such: a change of two voters at once (`Rejected`: not one voter), a second change
//! sent right behind the first (`Rejected`: another pending), and changes sent to a
//! node that does not lead (`NotLeader`).
//!
//! Lost state and changes overlap (the fault atlas, `faults`): a disk is lost (or bits
//! flipped) during and after changes, in groups whose membership is no longer the
//! initial one, on nodes outside it too, whenever every membership of every group that
//! may be in effect (chosen and not yet in effect, or asked for) keeps a quorum of
//! voters that can vote without the node (`state_loss_allowed`); no change is asked for
//! while a replica has lost state. A replica that lost its state in a group that
//! changed retires (`paxos::learner`, "Retirement"): it never votes there again, so
//! the workload counts on it no more (`voters_of`, the voters liveness waits for),
//! removes it (one change in two while a group has one, as an operator would), may
//! ask to add it back (refused: `RETIRED_REASON`, counted), and asks no change that
//! leaves fewer voters able to vote than a quorum (the group would stop for good).
//! With 2 voters a lost disk can never rejoin (it needs a quorum of the one other
//! voter), which the quorum condition keeps out. The workload changes only one or two
//! groups in three seeds of four, and alternates periods of `RETURN_PERIOD_NS`:
//! changes anywhere, then changes back toward the initial voters (half the changes of
//! the first kind lead back too), so that the even-count case (an add, then a remove
//! back) comes up.
//!
//! Every draw comes from the changes' own PRNG stream: a seed without changes (every
//! profile but `members`) runs as before.

use std::collections::{BTreeMap, BTreeSet};

use super::report::MembershipReport;
use super::workload::client_target;
use super::{Cluster, Event};
use crate::paxos::{GroupId, Membership, NodeId, ProposalId, ProposeError, RETIRED_REASON};
use crate::prng::Prng;
use crate::runtime::shard::ProposalOutcome;
use crate::runtime::{shard_of, ShardInput};
use crate::sim::checkers::Violation;
use crate::sim::options::SimOptions;

/// Voters a workload change keeps at least, and at most.
const VOTERS_MIN: usize = 2;
const VOTERS_MAX: usize = 7;
/// The workload alternates periods of this length: changes anywhere, then changes
/// that lead back toward the initial voters (module docs).
const RETURN_PERIOD_NS: u64 = 2_000_000_000;
/// Proposal ids of membership changes start here, far above the clients' values.
const PROPOSAL_ID_BASE: u64 = 1 << 62;

/// A change in flight.
#[derive(Clone, Debug)]
struct InFlight {
    /// The node asked.
    node: usize,
    /// Whether it removes the node asked, which leads the group.
    removes_leader: bool,
    /// The group and the membership asked for (it may still be chosen).
    group: GroupId,
    membership: Membership,
    /// It adds a node that had retired in the group when it was asked.
    adds_retired: bool,
}

/// The workload's membership changes (module docs).
pub(super) struct Members {
    prng: Prng,
    next_id: u64,
    in_flight: BTreeMap<ProposalId, InFlight>,
    /// The groups that change: the first `changing` (1 or 2, or every group in one
    /// seed of four), so that lost disks find every group at its initial voters.
    changing: usize,
    /// Groups whose last change removed a voter as the first half of a replacement:
    /// their next change adds one.
    replacing: BTreeSet<GroupId>,
    /// The (node, group) pairs that retired: they never vote again (module docs).
    pub(super) retired: BTreeSet<(NodeId, GroupId)>,
}

impl Members {
    pub(super) fn new(options: &SimOptions) -> Members {
        let mut prng = Prng::new(options.seed ^ 0x4d45_4d42_4552_5343);
        let changing = if prng.below(4) == 0 {
            options.group_count
        } else {
            1 + prng.index(2)
        };
        Members {
            prng,
            changing,
            next_id: PROPOSAL_ID_BASE,
            in_flight: BTreeMap::new(),
            replacing: BTreeSet::new(),
            retired: BTreeSet::new(),
        }
    }

    /// A gap until the next change, around `mean`.
    pub(super) fn interval(&mut self, mean: u64) -> u64 {
        self.prng.range(mean / 2, mean + mean / 2).max(1)
    }

    /// Takes `proposal`'s answer if it is a membership change (true), counting it.
    pub(super) fn answered(
        &mut self,
        proposal: ProposalId,
        outcome: &ProposalOutcome,
        report: &mut MembershipReport,
    ) -> bool {
        let Some(change) = self.in_flight.remove(&proposal) else {
            return false;
        };
        match outcome {
            ProposalOutcome::Applied { .. } => {
                report.applied += 1;
                report.leader_removed += u64::from(change.removes_leader);
                report.retired_added += u64::from(change.adds_retired);
            }
            ProposalOutcome::Failed(ProposeError::Rejected { reason }) => {
                report.refused += 1;
                report.refused_retired += u64::from(*reason == RETIRED_REASON);
            }
            ProposalOutcome::Failed(ProposeError::NotLeader { .. }) => report.not_leader += 1,
            ProposalOutcome::Failed(_) | ProposalOutcome::Aborted => report.failed += 1,
        }
        true
    }

    /// `node` crashed: its changes' answers died with it.
    pub(super) fn forget(&mut self, node: usize) {
        self.in_flight.retain(|_, change| change.node != node);
    }
}

/// What one request asks.
enum Change {
    Add(NodeId),
    Remove(NodeId),
}

impl Cluster {
    /// The `Membership` event: asks one node for one change (sometimes two, or an
    /// invalid one), then schedules the next.
    pub(super) fn change_membership(&mut self) -> Result<(), Violation> {
        if self.liveness {
            return Ok(());
        }
        let mean = self
            .options
            .membership_change_interval_ns_mean
            .expect("changes are scheduled only when on");
        let at = self.now + self.members.interval(mean);
        self.schedule(at, Event::Membership);
        if self.damaged.is_some() {
            return Ok(());
        }
        // In a returning period every change leads a changed group back toward the
        // initial voters (module docs); otherwise any of the changing groups.
        let returning = (self.now / RETURN_PERIOD_NS) % 2 == 1;
        let changing = &self.groups[..self.members.changing.min(self.groups.len())];
        let group = if returning {
            let changed: Vec<GroupId> = changing
                .iter()
                .copied()
                .filter(|g| {
                    self.checkers.membership.latest(*g).as_ref()
                        != self.checkers.membership.initial()
                })
                .collect();
            if changed.is_empty() {
                return Ok(());
            }
            changed[self.members.prng.index(changed.len())]
        } else {
            changing[self.members.prng.index(changing.len())]
        };
        let leader = self.leader_node(group);
        let Some(node) = client_target(leader, &self.nodes, &mut self.members.prng) else {
            return Ok(());
        };
        let Some(current) = self
            .group_on(node, group)
            .map(|g| g.latest_membership().clone())
        else {
            return Ok(());
        };
        let asked = self.nodes[node].id;
        if self.members.prng.below(16) == 0 {
            if let Some(invalid) = self.two_voter_change(&current) {
                self.report.membership.proposed_invalid += 1;
                return self.ask(node, group, invalid, false);
            }
        }
        let Some(change) = self.draw_change(group, &current, returning) else {
            return Ok(());
        };
        let leads = leader == Some(node);
        let (membership, removes_leader) = apply_change(&current, &change, asked, leads);
        let adds_retired = matches!(change, Change::Add(added)
            if self.members.retired.contains(&(added, group)));
        self.ask(node, group, membership.clone(), removes_leader)?;
        if let Some(asked) = self.members.in_flight.values_mut().next_back() {
            asked.adds_retired = adds_retired;
        }
        // Sometimes a second change right behind: the core must refuse it (one change
        // at a time), whatever it asks.
        if self.members.prng.below(8) == 0 {
            if let Some(second) = self.draw_change(group, &membership, false) {
                let (second, _) = apply_change(&membership, &second, asked, leads);
                self.report.membership.proposed_second += 1;
                self.ask(node, group, second, false)?;
            }
        }
        Ok(())
    }

    /// The next single change for `group` from `current`: an add after the removal of
    /// a replacement, else an add or a removal at random within the voter bounds.
    fn draw_change(
        &mut self,
        group: GroupId,
        current: &Membership,
        returning: bool,
    ) -> Option<Change> {
        let change = self.draw_any_change(group, current, returning)?;
        let (next, _) = apply_change(current, &change, NodeId(0), false);
        if let Change::Add(node) = &change {
            if self.members.retired.contains(&(*node, group)) {
                self.report.membership.retired_adds_asked += 1;
            }
        }
        // A change that leaves fewer voters able to vote than a quorum would stop the
        // group for good (an operator would not ask it).
        (self.able_voters(group, &next) >= next.quorum()).then_some(change)
    }

    /// The voters of `membership` that can vote in `group`: not retired there.
    fn able_voters(&self, group: GroupId, membership: &Membership) -> usize {
        membership
            .voters()
            .iter()
            .filter(|v| !self.members.retired.contains(&(**v, group)))
            .count()
    }

    /// `draw_change` before its check: first the removal of a retired voter (what an
    /// operator does), then as the module docs say.
    fn draw_any_change(
        &mut self,
        group: GroupId,
        current: &Membership,
        returning: bool,
    ) -> Option<Change> {
        let outsiders = self.outsiders(current);
        let count = current.voters().len();
        let can_add = count < VOTERS_MAX && !outsiders.is_empty();
        let can_remove = count > VOTERS_MIN;
        let retired = current
            .voters()
            .iter()
            .find(|v| self.members.retired.contains(&(**v, group)));
        if let Some(node) = retired {
            if can_remove && self.members.prng.coin() {
                return Some(Change::Remove(*node));
            }
        }
        let replacing = self.members.replacing.remove(&group);
        // Half the changes lead back toward the initial voters, so that the membership
        // often is the initial one again and disks may be lost (module docs).
        if let Some(initial) = self.checkers.membership.initial().cloned() {
            if !replacing && current != &initial && (returning || self.members.prng.coin()) {
                let missing = initial.voters().iter().find(|v| !current.contains(**v));
                let extra = current.voters().iter().find(|v| !initial.contains(**v));
                match (missing, extra) {
                    (Some(node), _) if count < VOTERS_MAX => return Some(Change::Add(*node)),
                    (_, Some(node)) if can_remove => return Some(Change::Remove(*node)),
                    _ => {}
                }
            }
        }
        let add = match (can_add, can_remove) {
            (false, false) => return None,
            (true, false) => true,
            (false, true) => false,
            (true, true) => replacing || self.members.prng.coin(),
        };
        if add {
            let node = outsiders[self.members.prng.index(outsiders.len())];
            return Some(Change::Add(node));
        }
        // One removal in three is the first half of a replacement.
        if self.members.prng.below(3) == 0 {
            self.members.replacing.insert(group);
        }
        let voters = current.voters();
        Some(Change::Remove(
            voters[self.members.prng.index(voters.len())],
        ))
    }

    /// The simulated nodes that are not voters of `current`, in node order.
    fn outsiders(&self, current: &Membership) -> Vec<NodeId> {
        self.nodes
            .iter()
            .map(|n| n.id)
            .filter(|id| !current.contains(*id))
            .collect()
    }

    /// A membership two voters away from `current` within the voter bounds (one voter
    /// swapped for a non-voter, else two removed, else two added), if any.
    fn two_voter_change(&mut self, current: &Membership) -> Option<Membership> {
        let outsiders = self.outsiders(current);
        let mut voters = current.voters().to_vec();
        if let Some(outsider) = outsiders.first() {
            voters.remove(self.members.prng.index(voters.len()));
            voters.push(*outsider);
        } else if voters.len() >= VOTERS_MIN + 2 {
            voters.truncate(voters.len() - 2);
        } else {
            return None;
        }
        Some(Membership::new(voters))
    }

    /// Sends one change to `node`.
    fn ask(
        &mut self,
        node: usize,
        group: GroupId,
        membership: Membership,
        removes_leader: bool,
    ) -> Result<(), Violation> {
        let id = ProposalId(self.members.next_id);
        self.members.next_id += 1;
        self.members.in_flight.insert(
            id,
            InFlight {
                node,
                removes_leader,
                group,
                membership: membership.clone(),
                adds_retired: false,
            },
        );
        self.report.membership.proposed += 1;
        let shard = usize::from(shard_of(group, self.shard_count()));
        let input = ShardInput::ChangeMembership {
            group,
            id,
            membership,
        };
        self.step_shard(node, shard, input)
    }

    /// Whether `node` may lose state now (a lost disk or flipped bits): always without
    /// membership changes; with them, while every membership of every group that may
    /// be in effect (chosen and not yet in effect, or asked for) keeps a quorum of
    /// voters that can vote without `node` (module docs).
    pub(super) fn state_loss_allowed(&self, node: usize) -> bool {
        if self.options.membership_change_interval_ns_mean.is_none() {
            return true;
        }
        let id = self.nodes[node].id;
        self.groups.iter().all(|group| {
            self.memberships_ahead(*group).iter().all(|membership| {
                !membership.contains(id) || {
                    let able = membership
                        .voters()
                        .iter()
                        .filter(|v| **v != id && !self.members.retired.contains(&(**v, *group)))
                        .count();
                    able >= membership.quorum()
                }
            })
        })
    }

    /// The memberships of `group` that may be in effect from now on: the chosen log's
    /// from the one in effect above the highest chosen instance, and those asked for.
    fn memberships_ahead(&self, group: GroupId) -> Vec<Membership> {
        let chosen = self.checkers.membership.chosen(group);
        let (chosen_max, _) = self.checkers.liveness.target(group);
        let current = chosen
            .iter()
            .rposition(|c| c.effective <= chosen_max.next())
            .unwrap_or(0);
        let mut memberships: Vec<Membership> = chosen[current..]
            .iter()
            .map(|c| c.membership.clone())
            .collect();
        memberships.extend(
            self.members
                .in_flight
                .values()
                .filter(|f| f.group == group)
                .map(|f| f.membership.clone()),
        );
        memberships
    }

    /// Counts a state loss while some group's membership had changed (the path of
    /// `paxos::learner`, "Retirement").
    pub(super) fn note_state_loss(&mut self) {
        if self.options.membership_change_interval_ns_mean.is_some()
            && self
                .groups
                .iter()
                .any(|group| self.checkers.membership.chosen(*group).len() > 1)
        {
            self.report.membership.state_losses_changed += 1;
        }
    }

    /// The voters `group`'s chosen log names last that can vote (not retired): the
    /// replicas liveness waits for.
    pub(super) fn voters_of(&self, group: GroupId) -> Vec<NodeId> {
        let voters = match self.checkers.membership.latest(group) {
            Some(latest) => latest.voters().to_vec(),
            None => self.nodes.iter().map(|n| n.id).collect(),
        };
        voters
            .into_iter()
            .filter(|v| !self.members.retired.contains(&(*v, group)))
            .collect()
    }

    /// Whether every group's voters applied through its target and no proposal is
    /// pending (`checkers::liveness`): non-voters (spare nodes never added, voters
    /// removed) need not follow.
    pub(super) fn converged(&self) -> bool {
        self.groups.iter().all(|group| {
            let voters = self.voters_of(*group);
            self.checkers.liveness.is_converged(&voters, &[*group])
        })
    }

    /// At true time `now`: Ok unless the liveness bound passed with some group's voters
    /// not converged (`checkers::liveness::check`, group by group).
    pub(super) fn check_converged(&self, now: u64) -> Result<(), Violation> {
        for group in &self.groups {
            let voters = self.voters_of(*group);
            self.checkers.liveness.check(now, &voters, &[*group])?;
        }
        Ok(())
    }

    /// The run's membership figures from the chosen logs (at the end).
    pub(super) fn membership_totals(&mut self) {
        let mut report = std::mem::take(&mut self.report.membership);
        report.voters_min = usize::MAX;
        for group in &self.groups {
            let chosen = self.checkers.membership.chosen(*group);
            report.chosen += chosen.len().saturating_sub(1) as u64;
            for c in &chosen {
                report.voters_min = report.voters_min.min(c.membership.voters().len());
                report.voters_max = report.voters_max.max(c.membership.voters().len());
            }
        }
        if report.voters_min == usize::MAX {
            report.voters_min = 0;
        }
        report.leaders_checked = self.checkers.membership.leaders_checked;
        self.report.membership = report;
    }
}

/// `current` after `change`, and whether it removes `asked`, which `leads`.
fn apply_change(
    current: &Membership,
    change: &Change,
    asked: NodeId,
    leads: bool,
) -> (Membership, bool) {
    let mut voters = current.voters().to_vec();
    match change {
        Change::Add(node) => {
            voters.push(*node);
            (Membership::new(voters), false)
        }
        Change::Remove(node) => {
            voters.retain(|v| v != node);
            (Membership::new(voters), leads && *node == asked)
        }
    }
}
