//! Linearizable reads: every read a node serves reflects every value acknowledged
//! before the read was issued, and nothing that is not chosen.
//!
//! Source: Herlihy & Wing, "Linearizability: A Correctness Condition for Concurrent
//! Objects" (TOPLAS 1990) — a read must see the effect of every operation that
//! completed before it began; and Chandra, Griesemer, Redstone, "Paxos Made Live"
//! (PODC 2007), §5.2 — a master serves reads from its local state while its lease holds.
//!
//! Model: a group is a register whose value is its chosen log prefix. A read is issued
//! at a true time (the checker records the highest instance any client had been told
//! was applied — acknowledged — in the group so far) and served later by one node as
//! the state of that node's state machine: the instance it has applied through and its
//! running checksum there. The read is accepted when
//! - the served instance is at least the highest acknowledged instance at issue (a
//!   smaller one is a stale read: it misses an acknowledged value);
//! - the served instance is at least the read index the node promised for it (the
//!   state machine had not applied what the read must reflect);
//! - the served checksum is the oracle's checksum at that instance: the state read is
//!   exactly the chosen prefix (the oracle records the first checksum reported at each
//!   instance; applies are gap-free prefixes, and the checksum checker keeps them equal).
//!
//! Reads refused (not the leader, no lease) carry no value and are only counted.

use std::collections::BTreeMap;

use super::{seconds, Violation};
use crate::paxos::{Apply, GroupId, Instance, NodeId};

const NAME: &str = "read";

/// A read issued and not yet answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Issued {
    node: NodeId,
    group: GroupId,
    issued_ns: u64,
    /// Highest instance acknowledged in the group when the read was issued.
    acknowledged_through: Instance,
}

/// Checks linearizable reads against the chosen prefix. See the module docs.
#[derive(Debug, Default)]
pub struct ReadChecker {
    /// Per group, the running checksum at each instance (index `i` is instance `i + 1`).
    checksums: BTreeMap<GroupId, Vec<u32>>,
    /// Per group, the highest instance of an acknowledged proposal.
    acknowledged: BTreeMap<GroupId, Instance>,
    issued: BTreeMap<u64, Issued>,
    served: u64,
    refused: u64,
}

impl ReadChecker {
    /// A checker that has seen nothing.
    #[must_use]
    pub fn new() -> ReadChecker {
        ReadChecker::default()
    }

    /// `apply` was applied by some node: the first checksum reported at each instance
    /// becomes the oracle's (call for every `Apply`, in output order).
    pub fn observe_apply(&mut self, apply: &Apply) {
        let log = self.checksums.entry(apply.group).or_default();
        // Applied logs are gap-free from instance 1 (the prefix checker's property),
        // so the oracle grows by one at a time.
        if apply.instance.0 == log.len() as u64 + 1 {
            log.push(apply.checksum);
        }
    }

    /// A client was told that its proposal in `group` is applied at `instance`.
    pub fn observe_acknowledged(&mut self, group: GroupId, instance: Instance) {
        let through = self.acknowledged.entry(group).or_insert(Instance(0));
        *through = (*through).max(instance);
    }

    /// Read `read` of `group` was issued to `node` at true time `now_ns`.
    /// Panics (driver misuse) when `read` is already waiting.
    pub fn observe_issued(&mut self, read: u64, node: NodeId, group: GroupId, now_ns: u64) {
        let acknowledged_through = self
            .acknowledged
            .get(&group)
            .copied()
            .unwrap_or(Instance(0));
        let previous = self.issued.insert(
            read,
            Issued {
                node,
                group,
                issued_ns: now_ns,
                acknowledged_through,
            },
        );
        assert!(
            previous.is_none(),
            "driver misuse: read {read} issued twice"
        );
    }

    /// Read `read` was refused (nothing read).
    pub fn observe_refused(&mut self, read: u64) {
        self.issued.remove(&read);
        self.refused += 1;
    }

    /// Read `read` was served at true time `now_ns` with the state of a state machine
    /// that has applied through `applied_through`, where its running checksum is
    /// `checksum`; the node had promised it at `read_index`.
    ///
    /// Err on a stale read, a read below its read index, or a state that is not the
    /// chosen prefix. Panics (driver misuse) on a read never issued.
    pub fn observe_served(
        &mut self,
        read: u64,
        read_index: Instance,
        applied_through: Instance,
        checksum: u32,
        now_ns: u64,
    ) -> Result<(), Violation> {
        let issued = self
            .issued
            .remove(&read)
            .unwrap_or_else(|| panic!("driver misuse: read {read} served but never issued"));
        self.served += 1;
        let context = || {
            format!(
                "read {read} of group {} on node {} (issued {}, served {})",
                issued.group.0,
                issued.node.0,
                seconds(issued.issued_ns),
                seconds(now_ns)
            )
        };
        if applied_through < issued.acknowledged_through {
            return Err(Violation::new(
                NAME,
                format!(
                    "{}: stale: served the state through instance {} but instance {} was \
                     acknowledged before the read was issued",
                    context(),
                    applied_through.0,
                    issued.acknowledged_through.0
                ),
            ));
        }
        if applied_through < read_index {
            return Err(Violation::new(
                NAME,
                format!(
                    "{}: served the state through instance {} below its read index {}",
                    context(),
                    applied_through.0,
                    read_index.0
                ),
            ));
        }
        if applied_through.0 == 0 {
            return Ok(());
        }
        let chosen = self
            .checksums
            .get(&issued.group)
            .and_then(|log| log.get(applied_through.0 as usize - 1));
        match chosen {
            Some(expected) if *expected == checksum => Ok(()),
            Some(expected) => Err(Violation::new(
                NAME,
                format!(
                    "{}: state through instance {} has checksum {checksum:#010x}, the chosen \
                     prefix {expected:#010x}",
                    context(),
                    applied_through.0
                ),
            )),
            None => Err(Violation::new(
                NAME,
                format!(
                    "{}: served the state through instance {}, which no node applied",
                    context(),
                    applied_through.0
                ),
            )),
        }
    }

    /// `node` crashed: the reads it was serving are gone (never answered).
    pub fn reset(&mut self, node: NodeId) {
        self.issued.retain(|_, issued| issued.node != node);
    }

    /// Reads served and checked.
    #[must_use]
    pub fn served(&self) -> u64 {
        self.served
    }

    /// Reads refused.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Reads issued and not answered yet.
    #[must_use]
    pub fn waiting_count(&self) -> usize {
        self.issued.len()
    }
}

#[cfg(test)]
mod tests {
    use super::ReadChecker;
    use crate::paxos::{Apply, Ballot, Body, Entry, GroupId, Instance, NodeId};
    use bytes::Bytes;

    const G: GroupId = GroupId(3);

    fn apply(instance: u64, checksum: u32) -> Apply {
        Apply {
            group: G,
            instance: Instance(instance),
            entry: Entry {
                origin: Ballot {
                    round: 1,
                    node: NodeId(1),
                },
                body: Body::Values(smallvec::smallvec![Bytes::from_static(b"v")]),
            },
            skip: false,
            proposals: crate::paxos::Proposals::new(),
            checksum,
        }
    }

    /// A checker whose oracle holds instances 1..=5 (checksum 10 × instance) and whose
    /// clients were told instance 5 is applied.
    fn with_five() -> ReadChecker {
        let mut checker = ReadChecker::new();
        for instance in 1..=5 {
            checker.observe_apply(&apply(instance, 10 * instance as u32));
        }
        checker.observe_acknowledged(G, Instance(5));
        checker
    }

    // Goal: reads that reflect every acknowledged value and the chosen prefix pass;
    // acknowledgements after the issue do not bind the read; refusals only count.
    // Method: issue before and after the acknowledgement of 5, serve at 5 and at 3.
    #[test]
    fn current_reads_pass() {
        let mut checker = ReadChecker::new();
        for instance in 1..=3 {
            checker.observe_apply(&apply(instance, 10 * instance as u32));
        }
        checker.observe_issued(1, NodeId(1), G, 100);
        for instance in 4..=5 {
            checker.observe_apply(&apply(instance, 10 * instance as u32));
        }
        checker.observe_acknowledged(G, Instance(5));
        checker.observe_issued(2, NodeId(1), G, 200);
        checker.observe_issued(3, NodeId(2), G, 200);
        // Issued before 5 was acknowledged: the state through 3 is a valid answer.
        checker
            .observe_served(1, Instance(3), Instance(3), 30, 300)
            .unwrap();
        checker
            .observe_served(2, Instance(5), Instance(5), 50, 300)
            .unwrap();
        checker.observe_refused(3);
        assert_eq!((checker.served(), checker.refused()), (2, 1));
        assert_eq!(checker.waiting_count(), 0);
    }

    // Goal: the negative self-test: a planted stale read (the state before an
    // acknowledged value) is caught, naming the read and both instances.
    // Method: acknowledge 5, issue, then serve the state through 3 (a leader that
    // answered from an old state, as a read without the lease would).
    #[test]
    fn planted_stale_read_is_caught() {
        let mut checker = with_five();
        checker.observe_issued(7, NodeId(2), G, 1_000);
        let violation = checker
            .observe_served(7, Instance(3), Instance(3), 30, 2_000)
            .unwrap_err();
        assert_eq!(violation.checker, "read");
        assert!(
            violation.message.contains("read 7 of group 3 on node 2")
                && violation.message.contains("stale")
                && violation.message.contains("instance 5 was acknowledged"),
            "{violation}"
        );
    }

    // Goal: a state that is not the chosen prefix, one never applied, or one below
    // the read index is caught.
    // Method: serve at 5 with a wrong checksum, at 6 (no node applied it), and at 5
    // with a read index of 6.
    #[test]
    fn unchosen_state_is_caught() {
        let mut checker = with_five();
        checker.observe_issued(1, NodeId(1), G, 10);
        checker.observe_issued(2, NodeId(1), G, 10);
        checker.observe_issued(3, NodeId(1), G, 10);
        let wrong = checker
            .observe_served(1, Instance(5), Instance(5), 51, 20)
            .unwrap_err();
        assert!(wrong.message.contains("chosen prefix"), "{wrong}");
        let future = checker
            .observe_served(2, Instance(5), Instance(6), 60, 20)
            .unwrap_err();
        assert!(future.message.contains("which no node applied"), "{future}");
        let early = checker
            .observe_served(3, Instance(6), Instance(5), 50, 20)
            .unwrap_err();
        assert!(early.message.contains("below its read index 6"), "{early}");
    }
}
