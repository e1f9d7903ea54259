//! Durability: every acknowledged proposal is in the final log, at the position it was
//! acknowledged with, and not skipped.
//!
//! Source: the linearizability of the replicated log as a service (Herlihy & Wing,
//! "Linearizability", TOPLAS 1990): once `propose` has returned success, the write has
//! taken effect and every later read sees it. For a log, that means the acknowledged
//! value stays at its `(instance, index)` forever, through crashes and leader changes.
//! The skip rule (design: StartWorking) must never hide an acknowledged value — the
//! "ghost" problem of the seed documents, seen from the other side.
//!
//! Method: the driver reports each submission (`observe_propose`, with the value bytes)
//! and every `Apply`. A proposal is acknowledged when its node applies it not skipped:
//! `Apply::proposals[i]` is completed successfully with value `values[i]` (output
//! contract, rule 5). The checker verifies at once that the acknowledged value is the
//! one submitted under that id, and records `(group, node, id, value, instance, index)`.
//! At the end, [`DurabilityChecker::check_final`] looks each one up in the final logs.
//!
//! Invariants of the checker: a proposal id is pending at most once per (node, group);
//! an acknowledged proposal is no longer pending (a second acknowledgement is reported).

use super::{describe_entry, AppliedEntry, Violation};
use crate::paxos::{Apply, Body, GroupId, Instance, NodeId, ProposalId};
use bytes::Bytes;
use std::collections::BTreeMap;

const NAME: &str = "durability";

/// Missing acknowledgements listed in a final-check message, at most.
const MISSING_LISTED_MAX: usize = 5;

/// A proposal its node completed successfully.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledged {
    /// The group.
    pub group: GroupId,
    /// The node that received and proposed it.
    pub node: NodeId,
    /// Its id on that node.
    pub proposal: ProposalId,
    /// The value submitted (and applied).
    pub value: Bytes,
    /// Where it was applied.
    pub instance: Instance,
    /// Its index among the entry's values.
    pub index: usize,
}

/// Tracks submissions and acknowledgements; checks the final logs.
#[derive(Debug, Default)]
pub struct DurabilityChecker {
    /// Submitted, not yet completed, in the nodes' current incarnations.
    pending: BTreeMap<(NodeId, GroupId, ProposalId), Bytes>,
    /// Every acknowledgement so far, in order.
    acknowledged: Vec<Acknowledged>,
}

impl DurabilityChecker {
    /// A checker that has seen nothing.
    #[must_use]
    pub fn new() -> DurabilityChecker {
        DurabilityChecker::default()
    }

    /// The client submitted `value` to `node` for `group`, and the node named the
    /// proposal `proposal`. Err when that id is already pending on that node and group.
    pub fn observe_propose(
        &mut self,
        node: NodeId,
        group: GroupId,
        proposal: ProposalId,
        value: Bytes,
    ) -> Result<(), Violation> {
        if self
            .pending
            .insert((node, group, proposal), value)
            .is_some()
        {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {} node {}: proposal id {} reused while still pending",
                    group.0, node.0, proposal.0
                ),
            ));
        }
        Ok(())
    }

    /// `node` failed `proposal` (a `Completion`): it is no longer pending.
    pub fn observe_failed(&mut self, node: NodeId, group: GroupId, proposal: ProposalId) {
        self.pending.remove(&(node, group, proposal));
    }

    /// `node` applied `apply`; unless skipped, each of `apply.proposals` is acknowledged.
    ///
    /// Err when the apply acknowledges a proposal that is not pending (never submitted,
    /// already completed, or from an earlier incarnation), with a value other than the
    /// one submitted, or with a proposal count that does not match the values.
    pub fn observe_apply(&mut self, node: NodeId, apply: &Apply) -> Result<(), Violation> {
        if apply.skip || apply.proposals.is_empty() {
            return Ok(());
        }
        let group = apply.group;
        let values: &[Bytes] = match &apply.entry.body {
            Body::Values(values) => values,
            // A membership change completes its own proposal (`checkers::membership`
            // follows the memberships; the workload, their completions).
            Body::Config(_) => return Ok(()),
            Body::Noop | Body::StartWorking => &[],
        };
        if values.len() != apply.proposals.len() {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {} instance {} node {}: {} proposals completed by {} (needs one \
                     value per proposal)",
                    group.0,
                    apply.instance.0,
                    node.0,
                    apply.proposals.len(),
                    describe_entry(&apply.entry)
                ),
            ));
        }
        for (index, (proposal, value)) in apply.proposals.iter().zip(values).enumerate() {
            let Some(submitted) = self.pending.remove(&(node, group, *proposal)) else {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "group {} instance {} index {index} node {}: acknowledged proposal {} \
                         which is not pending (never submitted, already completed, or from \
                         an earlier incarnation)",
                        group.0, apply.instance.0, node.0, proposal.0
                    ),
                ));
            };
            if submitted != value {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "group {} instance {} index {index} node {}: acknowledged proposal {} \
                         with {} but it was submitted with {}",
                        group.0,
                        apply.instance.0,
                        node.0,
                        proposal.0,
                        describe_value(value),
                        describe_value(&submitted)
                    ),
                ));
            }
            self.acknowledged.push(Acknowledged {
                group,
                node,
                proposal: *proposal,
                value: submitted,
                instance: apply.instance,
                index,
            });
        }
        Ok(())
    }

    /// `node` restarted: its pending proposals died with the process (a client sees
    /// them fail; they may still be chosen, but are never acknowledged).
    pub fn reset(&mut self, node: NodeId) {
        self.pending.retain(|(n, _, _), _| *n != node);
    }

    /// Every acknowledgement so far.
    #[must_use]
    pub fn acknowledged(&self) -> &[Acknowledged] {
        &self.acknowledged
    }

    /// Proposals submitted and not yet completed.
    #[must_use]
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Checks every acknowledgement against `logs`, the final applied log per group
    /// (position `i` at index `i - 1`; e.g. [`super::PrefixChecker::final_logs`] of the
    /// live nodes after the liveness phase). Err lists how many are missing and the
    /// first few, each with what the log holds there instead.
    pub fn check_final(
        &self,
        logs: &BTreeMap<GroupId, Vec<AppliedEntry>>,
    ) -> Result<(), Violation> {
        let mut missing = Vec::new();
        for ack in &self.acknowledged {
            let log = logs.get(&ack.group).map(Vec::as_slice).unwrap_or_default();
            let position = usize::try_from(ack.instance.0)
                .expect("instance fits in usize")
                .checked_sub(1)
                .and_then(|index| log.get(index));
            let found = match position {
                None => Some(format!("the final log ends at instance {}", log.len())),
                Some(applied) if applied.skip => Some(format!(
                    "the final log has it skipped: {}",
                    describe_entry(&applied.entry)
                )),
                Some(applied) => match &applied.entry.body {
                    Body::Values(values) if values.get(ack.index) == Some(&ack.value) => None,
                    Body::Values(_) | Body::Noop | Body::StartWorking | Body::Config(_) => Some(
                        format!("the final log has {}", describe_entry(&applied.entry)),
                    ),
                },
            };
            if let Some(instead) = found {
                missing.push(format!(
                    "group {} node {} proposal {} ({}) acknowledged at instance {} index {}: {}",
                    ack.group.0,
                    ack.node.0,
                    ack.proposal.0,
                    describe_value(&ack.value),
                    ack.instance.0,
                    ack.index,
                    instead
                ));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let count = missing.len();
        missing.truncate(MISSING_LISTED_MAX);
        Err(Violation::new(
            NAME,
            format!(
                "{count} of {} acknowledged proposals missing from the final log; {}",
                self.acknowledged.len(),
                missing.join("; ")
            ),
        ))
    }
}

fn describe_value(value: &Bytes) -> String {
    format!("{} B crc32c {:#010x}", value.len(), crc32c::crc32c(value))
}

#[cfg(test)]
mod tests {
    use super::DurabilityChecker;
    use crate::paxos::{Apply, Ballot, Body, Entry, GroupId, Instance, NodeId, ProposalId};
    use crate::sim::checkers::AppliedEntry;
    use bytes::Bytes;
    use std::collections::BTreeMap;

    const N: NodeId = NodeId(1);
    const G: GroupId = GroupId(2);

    fn entry(values: &[&'static [u8]]) -> Entry {
        Entry {
            origin: Ballot { round: 1, node: N },
            body: Body::Values(values.iter().map(|v| Bytes::from_static(v)).collect()),
        }
    }

    fn apply(instance: u64, values: &[&'static [u8]], proposals: &[u64], skip: bool) -> Apply {
        Apply {
            group: G,
            instance: Instance(instance),
            entry: entry(values),
            skip,
            proposals: proposals.iter().map(|p| ProposalId(*p)).collect(),
            checksum: 0,
        }
    }

    fn log(entries: Vec<(Entry, bool)>) -> BTreeMap<GroupId, Vec<AppliedEntry>> {
        let applied = entries
            .into_iter()
            .map(|(entry, skip)| AppliedEntry { entry, skip })
            .collect();
        BTreeMap::from([(G, applied)])
    }

    fn propose(checker: &mut DurabilityChecker, id: u64, value: &'static [u8]) {
        checker
            .observe_propose(N, G, ProposalId(id), Bytes::from_static(value))
            .unwrap();
    }

    // Goal: acknowledged values present in the final log pass; skipped entries and
    // failed proposals are not acknowledgements.
    // Method: ack 2 values at instance 1, skip one at 2, fail one; final log holds all.
    #[test]
    fn present_acknowledgements_pass() {
        let mut checker = DurabilityChecker::new();
        propose(&mut checker, 1, b"a");
        propose(&mut checker, 2, b"b");
        propose(&mut checker, 3, b"c");
        propose(&mut checker, 4, b"d");
        checker
            .observe_apply(N, &apply(1, &[b"a", b"b"], &[1, 2], false))
            .unwrap();
        checker
            .observe_apply(N, &apply(2, &[b"c"], &[3], true))
            .unwrap();
        checker.observe_failed(N, G, ProposalId(4));
        assert_eq!(checker.acknowledged().len(), 2);
        assert_eq!(
            checker.pending_count(),
            1,
            "the skipped one is still pending"
        );
        let final_log = log(vec![(entry(&[b"a", b"b"]), false), (entry(&[b"c"]), true)]);
        checker.check_final(&final_log).unwrap();
    }

    // Goal: an acknowledged value that the final log lost, replaced, or skipped is
    // caught, with the position and what is there instead.
    // Method: ack values at instances 1..=3; final logs end early, differ, or skip.
    #[test]
    fn lost_acknowledgement_is_a_violation() {
        let mut checker = DurabilityChecker::new();
        for (id, value) in [(1, b"a"), (2, b"b"), (3, b"c")] {
            propose(&mut checker, id, value);
            let value: &'static [u8] = value;
            checker
                .observe_apply(N, &apply(id, &[value], &[id], false))
                .unwrap();
        }
        let short = log(vec![(entry(&[b"a"]), false), (entry(&[b"b"]), false)]);
        let violation = checker.check_final(&short).unwrap_err();
        assert_eq!(violation.checker, "durability");
        assert!(violation.message.starts_with("1 of 3"), "{violation}");
        assert!(
            violation.message.contains("instance 3 index 0"),
            "{violation}"
        );
        assert!(
            violation.message.contains("ends at instance 2"),
            "{violation}"
        );

        let replaced = log(vec![
            (entry(&[b"a"]), false),
            (entry(&[b"X"]), false),
            (entry(&[b"c"]), true),
        ]);
        let violation = checker.check_final(&replaced).unwrap_err();
        assert!(violation.message.starts_with("2 of 3"), "{violation}");
        assert!(violation.message.contains("skipped"), "{violation}");
        assert!(checker.check_final(&BTreeMap::new()).is_err());
    }

    // Goal: acknowledging a value other than the one submitted, twice, or a proposal
    // of an earlier incarnation, is caught when it happens.
    // Method: submit "a" as 1 and ack "z"; ack 1 again; reset and ack 5.
    #[test]
    fn bad_acknowledgements_are_violations() {
        let mut checker = DurabilityChecker::new();
        propose(&mut checker, 1, b"a");
        let violation = checker
            .observe_apply(N, &apply(1, &[b"z"], &[1], false))
            .unwrap_err();
        assert!(
            violation.message.contains("submitted with 1 B"),
            "{violation}"
        );
        propose(&mut checker, 2, b"b");
        checker
            .observe_apply(N, &apply(2, &[b"b"], &[2], false))
            .unwrap();
        assert!(checker
            .observe_apply(N, &apply(3, &[b"b"], &[2], false))
            .is_err());
        propose(&mut checker, 5, b"e");
        checker.reset(N);
        let violation = checker
            .observe_apply(N, &apply(4, &[b"e"], &[5], false))
            .unwrap_err();
        assert!(violation.message.contains("not pending"), "{violation}");
        assert!(checker
            .observe_apply(N, &apply(5, &[b"e", b"f"], &[5], false))
            .is_err());
    }

    // Goal: a proposal id reused while pending is caught.
    // Method: submit id 9 twice.
    #[test]
    fn reused_id_is_a_violation() {
        let mut checker = DurabilityChecker::new();
        propose(&mut checker, 9, b"a");
        assert!(checker
            .observe_propose(N, G, ProposalId(9), Bytes::from_static(b"b"))
            .is_err());
    }
}
