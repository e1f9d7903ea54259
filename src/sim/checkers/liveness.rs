//! Liveness after faults heal: within a bound, every live node's `applied_through` in
//! every group reaches the highest `chosen_through` any node ever reported, and every
//! proposal submitted during the liveness phase completes (successfully or not).
//!
//! Source: Lamport, "Paxos Made Simple" (2001), §2.4 — progress is guaranteed once a
//! single distinguished proposer can communicate with a majority of acceptors; and
//! Dwork, Lynch, Stockmeyer, "Consensus in the Presence of Partial Synchrony" (JACM
//! 1988): safety always, termination after the global stabilization time. The
//! simulator's liveness phase is that time: it heals a majority and stops faults.
//!
//! Method: the driver calls [`LivenessChecker::start`] when it heals (true time and
//! bound), reports watermarks after steps and proposals submitted and completed, and
//! calls [`LivenessChecker::check`] with the live nodes and the groups. Before the
//! deadline `check` only reports; at or after it, it fails naming every group and node
//! still behind (its watermark, the target, the node that reported the target, and the
//! instances it is waiting for) and every proposal still pending (submitted when, on
//! which node). The target is the maximum chosen anywhere, including nodes that died:
//! a chosen value is chosen forever, and a healed majority must be able to learn it.
//! Under continuous load the target moves; the driver should stop submitting before the
//! deadline (e.g. after half the liveness phase) so convergence is well defined.
//!
//! Invariants of the checker: `chosen_max` only grows; `applied` holds each node's
//! value in its current incarnation (a restart sets it back to 0).

use super::{seconds, Violation};
use crate::paxos::{GroupId, Instance, NodeId, ProposalId};
use std::collections::BTreeMap;

const NAME: &str = "liveness";

/// Items listed in a failure message, at most (the count is always given).
const LISTED_MAX: usize = 8;

/// The liveness phase's bookkeeping.
#[derive(Debug, Default)]
pub struct LivenessChecker {
    /// `(heal time, deadline)` once the liveness phase started.
    phase: Option<(u64, u64)>,
    /// Per group: the highest `chosen_through` ever reported, and by whom.
    chosen_max: BTreeMap<GroupId, (Instance, NodeId)>,
    /// Per (node, group): `applied_through` in the node's current incarnation.
    applied: BTreeMap<(NodeId, GroupId), Instance>,
    /// Proposals submitted in the liveness phase and not completed: submission time.
    pending: BTreeMap<(NodeId, GroupId, ProposalId), u64>,
}

impl LivenessChecker {
    /// A checker whose liveness phase has not started.
    #[must_use]
    pub fn new() -> LivenessChecker {
        LivenessChecker::default()
    }

    /// Faults healed at true time `heal_ns`: the cluster must converge by
    /// `heal_ns + bound_ns`. Panics (driver misuse) if called twice.
    pub fn start(&mut self, heal_ns: u64, bound_ns: u64) {
        assert!(self.phase.is_none(), "liveness phase started twice");
        self.phase = Some((heal_ns, heal_ns.saturating_add(bound_ns)));
    }

    /// `node` knows every instance of `group` through `chosen_through` chosen.
    pub fn observe_chosen(&mut self, node: NodeId, group: GroupId, chosen_through: Instance) {
        let max = self.chosen_max.entry(group).or_insert((Instance(0), node));
        if chosen_through > max.0 {
            *max = (chosen_through, node);
        }
    }

    /// `node` applied `group` through `applied_through` in its current incarnation.
    pub fn observe_applied(&mut self, node: NodeId, group: GroupId, applied_through: Instance) {
        self.applied.insert((node, group), applied_through);
    }

    /// The client submitted `proposal` to `node` for `group` at true time `now_ns`.
    /// Only proposals submitted after [`LivenessChecker::start`] must complete.
    pub fn observe_propose(
        &mut self,
        node: NodeId,
        group: GroupId,
        proposal: ProposalId,
        now_ns: u64,
    ) {
        if self.phase.is_some() {
            self.pending.insert((node, group, proposal), now_ns);
        }
    }

    /// `proposal` completed on `node`, successfully or not.
    pub fn observe_complete(&mut self, node: NodeId, group: GroupId, proposal: ProposalId) {
        self.pending.remove(&(node, group, proposal));
    }

    /// `node` restarted: it applies from 0 again, and its pending proposals died with
    /// it (the liveness phase has no crashes, but a driver may restart a node to test
    /// recovery; the new process must still catch up).
    pub fn reset(&mut self, node: NodeId) {
        self.applied.retain(|(n, _), _| *n != node);
        self.pending.retain(|(n, _, _), _| *n != node);
    }

    /// Whether every live node applied every group through the target and no proposal
    /// is pending. Cheap enough to call after every step to end a run early.
    #[must_use]
    pub fn is_converged(&self, live: &[NodeId], groups: &[GroupId]) -> bool {
        self.pending.is_empty()
            && groups.iter().all(|group| {
                let target = self.target(*group).0;
                live.iter()
                    .all(|node| self.applied_through(*node, *group) >= target)
            })
    }

    /// At true time `now_ns`: Ok before the deadline (or if the phase has not started)
    /// or when converged; otherwise Err naming what is missing.
    pub fn check(&self, now_ns: u64, live: &[NodeId], groups: &[GroupId]) -> Result<(), Violation> {
        let Some((heal_ns, deadline_ns)) = self.phase else {
            return Ok(());
        };
        if now_ns < deadline_ns || self.is_converged(live, groups) {
            return Ok(());
        }
        let mut behind = Vec::new();
        for group in groups {
            let (target, reporter) = self.target(*group);
            for node in live {
                let applied = self.applied_through(*node, *group);
                if applied < target {
                    behind.push(format!(
                        "group {} node {}: applied_through {} < chosen_through {} (reported \
                         by node {}), waiting for instances {}..={}",
                        group.0,
                        node.0,
                        applied.0,
                        target.0,
                        reporter.0,
                        applied.0 + 1,
                        target.0
                    ));
                }
            }
        }
        let stuck: Vec<String> = self
            .pending
            .iter()
            .map(|((node, group, proposal), submitted_ns)| {
                format!(
                    "group {} node {}: proposal {} submitted at {} awaits completion",
                    group.0,
                    node.0,
                    proposal.0,
                    seconds(*submitted_ns)
                )
            })
            .collect();
        let mut parts = Vec::new();
        if !behind.is_empty() {
            parts.push(list("replicas behind", behind));
        }
        if !stuck.is_empty() {
            parts.push(list("proposals pending", stuck));
        }
        Err(Violation::new(
            NAME,
            format!(
                "not converged by {} (healed at {}, bound {}): {}",
                seconds(deadline_ns),
                seconds(heal_ns),
                seconds(deadline_ns - heal_ns),
                parts.join("; ")
            ),
        ))
    }

    /// The highest `chosen_through` reported for `group` and the node that reported it.
    #[must_use]
    pub fn target(&self, group: GroupId) -> (Instance, NodeId) {
        self.chosen_max
            .get(&group)
            .copied()
            .unwrap_or((Instance(0), NodeId(0)))
    }

    /// `node`'s `applied_through` for `group` in its current incarnation.
    #[must_use]
    pub fn applied_through(&self, node: NodeId, group: GroupId) -> Instance {
        self.applied
            .get(&(node, group))
            .copied()
            .unwrap_or_default()
    }

    /// Liveness-phase proposals not yet completed.
    #[must_use]
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }
}

/// `"<count> <what>: a; b; ...; (and n more)"`.
fn list(what: &str, mut items: Vec<String>) -> String {
    let count = items.len();
    let more = count.saturating_sub(LISTED_MAX);
    items.truncate(LISTED_MAX);
    let mut text = format!("{count} {what}: {}", items.join("; "));
    if more > 0 {
        text.push_str(&format!("; (and {more} more)"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::LivenessChecker;
    use crate::paxos::{GroupId, Instance, NodeId, ProposalId};

    const LIVE: [NodeId; 2] = [NodeId(0), NodeId(1)];
    const GROUPS: [GroupId; 2] = [GroupId(1), GroupId(2)];

    // Goal: a cluster that converges before the deadline passes, even with a dead node
    // holding the highest chosen watermark; checks before the deadline never fail.
    // Method: dead node 2 reports chosen 10; live nodes apply through 10 in both groups.
    #[test]
    fn convergence_passes() {
        let mut checker = LivenessChecker::new();
        checker.observe_chosen(NodeId(2), GroupId(1), Instance(10));
        checker.observe_propose(NodeId(0), GroupId(1), ProposalId(1), 50);
        assert_eq!(
            checker.pending_count(),
            0,
            "safety-phase proposals are not tracked"
        );
        checker.start(100, 1_000);
        checker.observe_propose(NodeId(0), GroupId(1), ProposalId(2), 150);
        assert!(
            checker.check(500, &LIVE, &GROUPS).is_ok(),
            "before the deadline"
        );
        for node in LIVE {
            checker.observe_applied(node, GroupId(1), Instance(10));
        }
        assert!(
            !checker.is_converged(&LIVE, &GROUPS),
            "proposal 2 still pending"
        );
        checker.observe_complete(NodeId(0), GroupId(1), ProposalId(2));
        assert!(checker.is_converged(&LIVE, &GROUPS));
        checker.check(5_000, &LIVE, &GROUPS).unwrap();
    }

    // Goal: after the deadline, a lagging node and a stuck proposal are both named,
    // with the group, node, watermark, target and what is awaited.
    // Method: node 1 applies through 7 of 10; a proposal never completes.
    #[test]
    fn lagging_node_and_stuck_proposal_are_violations() {
        let mut checker = LivenessChecker::new();
        checker.start(100, 1_000);
        checker.observe_chosen(NodeId(0), GroupId(2), Instance(10));
        checker.observe_applied(NodeId(0), GroupId(2), Instance(10));
        checker.observe_applied(NodeId(1), GroupId(2), Instance(7));
        checker.observe_propose(NodeId(1), GroupId(2), ProposalId(44), 300);
        assert!(checker.check(1_099, &LIVE, &GROUPS).is_ok());
        let violation = checker.check(1_100, &LIVE, &GROUPS).unwrap_err();
        assert_eq!(violation.checker, "liveness");
        let message = &violation.message;
        assert!(
            message.contains("group 2 node 1: applied_through 7 < chosen_through 10"),
            "{message}"
        );
        assert!(
            message.contains("waiting for instances 8..=10"),
            "{message}"
        );
        assert!(
            message.contains("proposal 44 submitted at 0.000000300s"),
            "{message}"
        );
        assert!(!message.contains("node 0: applied"), "{message}");
    }

    // Goal: a restarted node must catch up again: its old watermark does not count.
    // Method: node 1 applies through 5, restarts, and the deadline passes.
    #[test]
    fn restart_forgets_applied() {
        let mut checker = LivenessChecker::new();
        checker.start(0, 10);
        checker.observe_chosen(NodeId(0), GroupId(1), Instance(5));
        for node in LIVE {
            checker.observe_applied(node, GroupId(1), Instance(5));
        }
        assert!(checker.is_converged(&LIVE, &GROUPS));
        checker.reset(NodeId(1));
        let violation = checker.check(10, &LIVE, &GROUPS).unwrap_err();
        assert!(
            violation
                .message
                .contains("applied_through 0 < chosen_through 5"),
            "{violation}"
        );
    }
}
