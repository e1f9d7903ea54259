//! Equal running checksums: at the same (group, instance), every node reports the same
//! running CRC32C over the chosen entries through that instance.
//!
//! Source: Chandra, Griesemer, Redstone, "Paxos Made Live" (PODC 2007), §5.3 and §6.3:
//! replicas periodically compare checksums of their logs/databases, because software
//! and disks corrupt state that the protocol itself cannot see. The design applies it
//! as a running checksum carried by `Apply` and heartbeats.
//!
//! Method: the first checksum reported at (group, instance), by any node (an `Apply`,
//! or a heartbeat's `(checksum_through, checksum)`), is the reference; any other report
//! there must be equal. Agreement on entries does not imply this: the checksum is
//! computed by the node (and rebuilt on recovery or after catch-up), and that code is
//! what this checker tests.
//!
//! Invariant of the checker: one reference checksum per position ever reported.

use super::Violation;
use crate::paxos::{Apply, GroupId, Instance, NodeId};
use std::collections::HashMap;

const NAME: &str = "checksum";

/// Reference running checksums per (group, instance).
#[derive(Debug, Default)]
pub struct ChecksumChecker {
    /// (group, instance) -> (first reporter, checksum).
    reference: HashMap<(GroupId, Instance), (NodeId, u32)>,
}

impl ChecksumChecker {
    /// A checker that has seen nothing.
    #[must_use]
    pub fn new() -> ChecksumChecker {
        ChecksumChecker::default()
    }

    /// `node` applied `apply`, whose `checksum` covers entries through `apply.instance`.
    pub fn observe_apply(&mut self, node: NodeId, apply: &Apply) -> Result<(), Violation> {
        self.observe(node, apply.group, apply.instance, apply.checksum)
    }

    /// `node` reports `checksum` as its running checksum through `instance` (from an
    /// apply or a heartbeat). `Instance(0)` (nothing covered) is ignored.
    pub fn observe(
        &mut self,
        node: NodeId,
        group: GroupId,
        instance: Instance,
        checksum: u32,
    ) -> Result<(), Violation> {
        if instance == Instance(0) {
            return Ok(());
        }
        match self.reference.get(&(group, instance)) {
            None => {
                self.reference.insert((group, instance), (node, checksum));
                Ok(())
            }
            Some((_, reference)) if *reference == checksum => Ok(()),
            Some((first, reference)) => Err(Violation::new(
                NAME,
                format!(
                    "group {} instance {}: node {} has running checksum {checksum:#010x} \
                     but node {} had {reference:#010x}",
                    group.0, instance.0, node.0, first.0
                ),
            )),
        }
    }

    /// The reference checksum at `(group, instance)`, if reported.
    #[must_use]
    pub fn checksum(&self, group: GroupId, instance: Instance) -> Option<u32> {
        self.reference
            .get(&(group, instance))
            .map(|(_, checksum)| *checksum)
    }
}

#[cfg(test)]
mod tests {
    use super::ChecksumChecker;
    use crate::paxos::{Apply, Ballot, Body, Entry, GroupId, Instance, NodeId};

    fn apply(instance: u64, checksum: u32) -> Apply {
        Apply {
            group: GroupId(1),
            instance: Instance(instance),
            entry: Entry {
                origin: Ballot::ZERO,
                body: Body::Noop,
            },
            skip: false,
            proposals: crate::paxos::Proposals::new(),
            checksum,
        }
    }

    // Goal: equal checksums from applies and heartbeats pass; instance 0 is ignored.
    // Method: two nodes apply with equal checksums; a heartbeat repeats one.
    #[test]
    fn equal_checksums_pass() {
        let mut checker = ChecksumChecker::new();
        for node in 0..2 {
            for i in 1..=3 {
                checker
                    .observe_apply(NodeId(node), &apply(i, 100 + i as u32))
                    .unwrap();
            }
        }
        checker
            .observe(NodeId(2), GroupId(1), Instance(2), 102)
            .unwrap();
        checker
            .observe(NodeId(2), GroupId(1), Instance(0), 999)
            .unwrap();
        checker
            .observe(NodeId(1), GroupId(1), Instance(0), 998)
            .unwrap();
        assert_eq!(checker.checksum(GroupId(1), Instance(3)), Some(103));
    }

    // Goal: a different checksum at the same position is caught with both values.
    // Method: node 0 applies checksum 0xaa at 5; node 1 reports 0xbb in a heartbeat.
    #[test]
    fn mismatch_is_a_violation() {
        let mut checker = ChecksumChecker::new();
        checker.observe_apply(NodeId(0), &apply(5, 0xaa)).unwrap();
        let violation = checker
            .observe(NodeId(1), GroupId(1), Instance(5), 0xbb)
            .unwrap_err();
        assert_eq!(violation.checker, "checksum");
        assert!(violation.message.contains("0x000000bb"), "{violation}");
        assert!(violation.message.contains("0x000000aa"), "{violation}");
        assert!(violation.message.contains("instance 5"), "{violation}");
    }
}
