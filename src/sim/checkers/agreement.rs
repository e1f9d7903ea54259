//! Agreement: at most one value is chosen per (group, instance).
//!
//! Source: Lamport, "Paxos Made Simple" (2001), §2.1, the safety requirement "only a
//! single value is chosen"; for Multi-Paxos, one value per instance (§3).
//!
//! Method: a global oracle. The first entry any node applies at (group, instance) is
//! taken as the chosen value; every later apply at that position, by any node and any
//! incarnation, must carry an equal `Entry` (body AND origin ballot: a re-proposal keeps
//! its origin, so a different origin is a different value). Nodes only apply what they
//! believe chosen, so two different applied entries mean two values were chosen or a
//! node applied what was not chosen; either breaks agreement.
//!
//! Invariant of the checker: `chosen` holds exactly one entry per position ever applied.
//! Memory is one `Entry` per position (its values are reference-counted `Bytes`).

use super::{describe_entry, Violation};
use crate::paxos::{Apply, Entry, GroupId, Instance, NodeId};
use std::collections::HashMap;

const NAME: &str = "agreement";

/// The global oracle of chosen entries.
#[derive(Debug, Default)]
pub struct AgreementChecker {
    /// (group, instance) -> (first node that applied it, the entry).
    chosen: HashMap<(GroupId, Instance), (NodeId, Entry)>,
}

impl AgreementChecker {
    /// An oracle that has seen nothing.
    #[must_use]
    pub fn new() -> AgreementChecker {
        AgreementChecker::default()
    }

    /// `node` applied `apply.entry` at `(apply.group, apply.instance)`.
    ///
    /// Err when another entry was applied there before (by any node).
    pub fn observe_apply(&mut self, node: NodeId, apply: &Apply) -> Result<(), Violation> {
        self.observe_chosen(node, apply.group, apply.instance, &apply.entry)
    }

    /// `node` holds `entry` as chosen at `(group, instance)` (from an apply, or from any
    /// other report the driver trusts as "this node believes it chosen").
    pub fn observe_chosen(
        &mut self,
        node: NodeId,
        group: GroupId,
        instance: Instance,
        entry: &Entry,
    ) -> Result<(), Violation> {
        match self.chosen.get(&(group, instance)) {
            None => {
                self.chosen.insert((group, instance), (node, entry.clone()));
                Ok(())
            }
            Some((_, truth)) if truth == entry => Ok(()),
            Some((first, truth)) => Err(Violation::new(
                NAME,
                format!(
                    "group {} instance {}: node {} applied {} but node {} applied {} first",
                    group.0,
                    instance.0,
                    node.0,
                    describe_entry(entry),
                    first.0,
                    describe_entry(truth)
                ),
            )),
        }
    }

    /// The entry the oracle holds at `(group, instance)`, if any node applied one.
    #[must_use]
    pub fn chosen(&self, group: GroupId, instance: Instance) -> Option<&Entry> {
        self.chosen.get(&(group, instance)).map(|(_, entry)| entry)
    }

    /// Positions known.
    #[must_use]
    pub fn len(&self) -> usize {
        self.chosen.len()
    }

    /// Whether no position is known yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.chosen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::AgreementChecker;
    use crate::paxos::{Apply, Ballot, Body, Entry, GroupId, Instance, NodeId};
    use bytes::Bytes;

    fn apply(group: u32, instance: u64, value: &'static [u8], round: u64) -> Apply {
        Apply {
            group: GroupId(group),
            instance: Instance(instance),
            entry: Entry {
                origin: Ballot {
                    round,
                    node: NodeId(1),
                },
                body: Body::Values(smallvec::smallvec![Bytes::from_static(value)]),
            },
            skip: false,
            proposals: crate::paxos::Proposals::new(),
            checksum: 0,
        }
    }

    // Goal: equal entries from many nodes agree; positions are per (group, instance).
    // Method: three nodes apply the same entries; another group uses other values.
    #[test]
    fn equal_entries_agree() {
        let mut checker = AgreementChecker::new();
        for node in 0..3 {
            for instance in 1..=5 {
                checker
                    .observe_apply(NodeId(node), &apply(1, instance, b"x", 1))
                    .unwrap();
                checker
                    .observe_apply(NodeId(node), &apply(2, instance, b"y", 1))
                    .unwrap();
            }
        }
        assert_eq!(checker.len(), 10);
        assert!(checker.chosen(GroupId(1), Instance(3)).is_some());
    }

    // Goal: a different value at a chosen position is caught, naming both nodes.
    // Method: node 0 applies "x" at g1/i7; node 2 applies "z" there.
    #[test]
    fn different_value_is_a_violation() {
        let mut checker = AgreementChecker::new();
        checker
            .observe_apply(NodeId(0), &apply(1, 7, b"x", 1))
            .unwrap();
        let violation = checker
            .observe_apply(NodeId(2), &apply(1, 7, b"z", 1))
            .unwrap_err();
        assert_eq!(violation.checker, "agreement");
        assert!(
            violation.message.contains("group 1 instance 7"),
            "{violation}"
        );
        assert!(violation.message.contains("node 2") && violation.message.contains("node 0"));
    }

    // Goal: the same bytes under a different origin ballot are a different entry (a
    // ghost re-proposal must not pass as agreement).
    // Method: apply "x" with origin round 1, then "x" with origin round 2.
    #[test]
    fn different_origin_is_a_violation() {
        let mut checker = AgreementChecker::new();
        checker
            .observe_apply(NodeId(0), &apply(1, 1, b"x", 1))
            .unwrap();
        let violation = checker
            .observe_apply(NodeId(1), &apply(1, 1, b"x", 2))
            .unwrap_err();
        assert!(violation.message.contains("origin 2.1"), "{violation}");
        assert!(violation.message.contains("origin 1.1"), "{violation}");
    }
}
