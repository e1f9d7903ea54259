//! Prefix consistency: every node applies each group's log in order, without gaps, and
//! the applied logs of all nodes are prefixes of one another (same entry AND same skip
//! decision at every position).
//!
//! Source: Lamport, "Paxos Made Simple" (2001), §3 — the learned commands form one
//! sequence executed in order by every server; and the state machine approach
//! (Schneider, "Implementing Fault-Tolerant Services Using the State Machine Approach",
//! 1990): replicas that apply the same commands in the same order stay equal. The skip
//! decision is part of the sequence here because the design's StartWorking rule makes it
//! a function of the log prefix, so two replicas that skip differently have diverged.
//!
//! Method: a canonical log per group (position `i` at index `i - 1`), extended by the
//! first node to apply a position, plus each node's `applied_through` in its current
//! incarnation. An apply must be at `applied_through + 1` and equal the canonical log
//! there. A restarted node re-applies from instance 1: [`PrefixChecker::reset`].
//!
//! Invariant of the checker: every node's `applied_through` is at most the canonical
//! log's length, so an apply at `applied_through + 1` either extends the canonical log by
//! one or is compared against it.

use super::{describe_entry, AppliedEntry, Violation};
use crate::paxos::{Apply, GroupId, Instance, NodeId};
use std::collections::BTreeMap;

const NAME: &str = "prefix";

/// Canonical applied logs and each node's position in them.
#[derive(Debug, Default)]
pub struct PrefixChecker {
    /// Per group: the log, and the node that applied each position first.
    logs: BTreeMap<GroupId, (Vec<AppliedEntry>, Vec<NodeId>)>,
    /// Per (node, group): the last instance applied in the node's current incarnation.
    applied: BTreeMap<(NodeId, GroupId), Instance>,
}

impl PrefixChecker {
    /// A checker that has seen nothing.
    #[must_use]
    pub fn new() -> PrefixChecker {
        PrefixChecker::default()
    }

    /// `node` applied `apply` (entries must come in output order).
    ///
    /// Err when the apply skips or repeats an instance, or differs (entry or skip flag)
    /// from what another node applied at that position.
    pub fn observe_apply(&mut self, node: NodeId, apply: &Apply) -> Result<(), Violation> {
        let group = apply.group;
        let previous = self.applied_through(node, group);
        if apply.instance != previous.next() {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {} node {}: applied instance {} after {} (expected {})",
                    group.0,
                    node.0,
                    apply.instance.0,
                    previous.0,
                    previous.0 + 1
                ),
            ));
        }
        let (log, first) = self.logs.entry(group).or_default();
        let index = usize::try_from(previous.0).expect("instance fits in usize");
        assert!(
            index <= log.len(),
            "prefix checker: node {} group {} at {} beyond canonical length {}",
            node.0,
            group.0,
            previous.0,
            log.len()
        );
        if index == log.len() {
            log.push(AppliedEntry {
                entry: apply.entry.clone(),
                skip: apply.skip,
            });
            first.push(node);
        } else {
            let truth = &log[index];
            if truth.entry != apply.entry || truth.skip != apply.skip {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "group {} instance {}: node {} applied {} (skip {}) but node {} \
                         applied {} (skip {}); their logs diverge there",
                        group.0,
                        apply.instance.0,
                        node.0,
                        describe_entry(&apply.entry),
                        apply.skip,
                        first[index].0,
                        describe_entry(&truth.entry),
                        truth.skip
                    ),
                ));
            }
        }
        self.applied.insert((node, group), apply.instance);
        Ok(())
    }

    /// `node` restarted: its next apply in every group must be instance 1.
    pub fn reset(&mut self, node: NodeId) {
        self.applied.retain(|(n, _), _| *n != node);
    }

    /// `node` restarted `group` from a checkpoint at `through`: its next apply there
    /// must be `through + 1`. Err when no node ever applied `through`.
    pub fn resume(
        &mut self,
        node: NodeId,
        group: GroupId,
        through: Instance,
    ) -> Result<(), Violation> {
        let length = self.logs.get(&group).map_or(0, |(log, _)| log.len());
        if through.0 > length as u64 {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {} node {}: resumes after instance {} but the applied log has {}",
                    group.0, node.0, through.0, length
                ),
            ));
        }
        self.applied.insert((node, group), through);
        Ok(())
    }

    /// The last instance `node` applied in `group` in its current incarnation (0 = none).
    #[must_use]
    pub fn applied_through(&self, node: NodeId, group: GroupId) -> Instance {
        self.applied
            .get(&(node, group))
            .copied()
            .unwrap_or_default()
    }

    /// The canonical log of `group`: everything any node ever applied there, position
    /// `i` at index `i - 1`.
    #[must_use]
    pub fn log(&self, group: GroupId) -> &[AppliedEntry] {
        self.logs
            .get(&group)
            .map(|(log, _)| log.as_slice())
            .unwrap_or_default()
    }

    /// The logs as they stand on `nodes` (e.g. the live nodes at the end of a run): per
    /// group, the canonical log cut at the highest `applied_through` among `nodes`.
    /// Since every apply was checked against the canonical log, that is exactly the log
    /// of the most advanced of those nodes. Groups none of them applied are absent.
    #[must_use]
    pub fn final_logs(&self, nodes: &[NodeId]) -> BTreeMap<GroupId, Vec<AppliedEntry>> {
        let mut logs = BTreeMap::new();
        for (group, (log, _)) in &self.logs {
            let through = nodes
                .iter()
                .map(|node| self.applied_through(*node, *group).0)
                .max()
                .unwrap_or(0);
            if through > 0 {
                let end = usize::try_from(through).expect("instance fits in usize");
                logs.insert(*group, log[..end].to_vec());
            }
        }
        logs
    }
}

#[cfg(test)]
mod tests {
    use super::PrefixChecker;
    use crate::paxos::{Apply, Ballot, Body, Entry, GroupId, Instance, NodeId};

    fn apply(instance: u64, body: Body, skip: bool) -> Apply {
        Apply {
            group: GroupId(3),
            instance: Instance(instance),
            entry: Entry {
                origin: Ballot {
                    round: 1,
                    node: NodeId(0),
                },
                body,
            },
            skip,
            proposals: crate::paxos::Proposals::new(),
            checksum: 0,
        }
    }

    // Goal: nodes applying the same log at different speeds, and a restarted node
    // re-applying from 1, are consistent; final_logs cuts at the most advanced node.
    // Method: node 0 applies 1..=4, node 1 applies 1..=2, node 0 restarts and
    // re-applies 1..=3.
    #[test]
    fn consistent_prefixes_pass() {
        let mut checker = PrefixChecker::new();
        for i in 1..=4 {
            checker
                .observe_apply(NodeId(0), &apply(i, Body::Noop, false))
                .unwrap();
        }
        for i in 1..=2 {
            checker
                .observe_apply(NodeId(1), &apply(i, Body::Noop, false))
                .unwrap();
        }
        checker.reset(NodeId(0));
        assert_eq!(checker.applied_through(NodeId(0), GroupId(3)), Instance(0));
        for i in 1..=3 {
            checker
                .observe_apply(NodeId(0), &apply(i, Body::Noop, false))
                .unwrap();
        }
        assert_eq!(checker.log(GroupId(3)).len(), 4);
        let logs = checker.final_logs(&[NodeId(0), NodeId(1)]);
        assert_eq!(
            logs[&GroupId(3)].len(),
            3,
            "node 0 is at 3 after its restart"
        );
        assert!(checker.final_logs(&[NodeId(9)]).is_empty());
    }

    // Goal: a gap in a node's apply order is caught.
    // Method: apply 1 then 3 on one node.
    #[test]
    fn gap_is_a_violation() {
        let mut checker = PrefixChecker::new();
        checker
            .observe_apply(NodeId(0), &apply(1, Body::Noop, false))
            .unwrap();
        let violation = checker
            .observe_apply(NodeId(0), &apply(3, Body::Noop, false))
            .unwrap_err();
        assert_eq!(violation.checker, "prefix");
        assert!(
            violation.message.contains("applied instance 3 after 1"),
            "{violation}"
        );
    }

    // Goal: a restarted node that does not start again from 1 is caught.
    // Method: apply 1..=2, reset, apply 3.
    #[test]
    fn restart_must_reapply_from_one() {
        let mut checker = PrefixChecker::new();
        for i in 1..=2 {
            checker
                .observe_apply(NodeId(0), &apply(i, Body::Noop, false))
                .unwrap();
        }
        checker.reset(NodeId(0));
        assert!(checker
            .observe_apply(NodeId(0), &apply(3, Body::Noop, false))
            .is_err());
    }

    // Goal: divergent entries, and equal entries with different skip decisions, are
    // caught at the position where the logs diverge.
    // Method: node 0 applies Noop at 1; node 1 applies StartWorking; node 2 applies
    // Noop skipped.
    #[test]
    fn divergence_is_a_violation() {
        let mut checker = PrefixChecker::new();
        checker
            .observe_apply(NodeId(0), &apply(1, Body::Noop, false))
            .unwrap();
        let violation = checker
            .observe_apply(NodeId(1), &apply(1, Body::StartWorking, false))
            .unwrap_err();
        assert!(
            violation.message.contains("group 3 instance 1"),
            "{violation}"
        );
        let violation = checker
            .observe_apply(NodeId(2), &apply(1, Body::Noop, true))
            .unwrap_err();
        assert!(violation.message.contains("skip true"), "{violation}");
    }
}
