//! Checkpoints: a replica restarted from a checkpoint holds exactly the state the
//! chosen log gives at the checkpoint's instance, and its durable checkpoints never go
//! back across restarts.
//!
//! Source: the state machine approach (Schneider, 1990): a replica's state is a
//! function of the prefix of commands it executed, so an image that stands in for a
//! prefix must equal the replay of that prefix; and Paxos Made Live (Chandra et al.,
//! PODC 2007), §5.5: a snapshot must correspond to a definite log position, and a
//! replica recovering from one must not lose what it made durable.
//!
//! Method: a global oracle of the state machine's state at each instance of each
//! group, folded ([`SimMachine::fold_entry`]) from the canonical applied log (the first
//! application of each position; `agreement` and `prefix` make it the only one). At a
//! restart from a checkpoint at instance t: the restored machine's state must equal the
//! oracle at t, and the protocol checksum recorded beside it must equal the running
//! checksum every replica reported at t (`checksum`). Per (node, group), the newest
//! checkpoint the node reported durable is a floor: a restart installs one at least as
//! new, unless the node lost state (a wiped disk or a corrupt log) or the simulator
//! damaged its checkpoint file meanwhile.
//!
//! Invariant of the checker: the oracle of a group holds one state per position of the
//! canonical log.

use std::collections::BTreeMap;

use super::Violation;
use crate::paxos::{Apply, GroupId, Instance, NodeId};
use crate::sim::machine::{MachineState, SimMachine};

const NAME: &str = "checkpoint";

/// The restored state of one (node, group), as the checker needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The checkpoint's instance.
    pub through: Instance,
    /// The state machine's state after `restore`.
    pub state: MachineState,
    /// The protocol checksum the checkpoint recorded at `through`.
    pub checksum: u32,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct CheckpointChecker {
    /// Per group: the state after each position (index `i - 1` for instance `i`).
    oracle: BTreeMap<GroupId, Vec<MachineState>>,
    /// Per (node, group): the newest checkpoint the node reported durable.
    floor: BTreeMap<(NodeId, GroupId), Instance>,
    /// Restarts that installed a checkpoint.
    restores: u64,
}

impl CheckpointChecker {
    /// A checker that has seen nothing.
    #[must_use]
    pub fn new() -> CheckpointChecker {
        CheckpointChecker::default()
    }

    /// An applied entry (any node, output order): extends the oracle when it is the
    /// first application of its position.
    pub fn observe_apply(&mut self, apply: &Apply) {
        let states = self.oracle.entry(apply.group).or_default();
        let position = usize::try_from(apply.instance.0).expect("instance fits in usize");
        if position == states.len() + 1 {
            let before = states.last().copied().unwrap_or_default();
            states.push(SimMachine::fold_entry(
                before,
                apply.instance,
                &apply.entry,
                apply.skip,
            ));
        }
    }

    /// `node` reports its durable checkpoint of `group` at `through`.
    pub fn observe_durable(&mut self, node: NodeId, group: GroupId, through: Instance) {
        let floor = self.floor.entry((node, group)).or_default();
        *floor = (*floor).max(through);
    }

    /// `node` restarted: when it lost state, its floors go (its checkpoints may be
    /// gone with its disk, or its log no longer proves them).
    pub fn reset(&mut self, node: NodeId, lost_state: bool) {
        if lost_state {
            self.floor.retain(|(n, _), _| *n != node);
        }
    }

    /// The simulator damaged a checkpoint file of (node, group): its floor goes.
    pub fn observe_damaged(&mut self, node: NodeId, group: GroupId) {
        self.floor.remove(&(node, group));
    }

    /// `node` started `group` from `restored` (`None`: from its log alone);
    /// `reference` is the running checksum replicas reported at its instance.
    pub fn observe_restore(
        &mut self,
        node: NodeId,
        group: GroupId,
        restored: Option<Restored>,
        reference: Option<u32>,
    ) -> Result<(), Violation> {
        let through = restored.map_or(Instance(0), |r| r.through);
        let floor = self.floor.get(&(node, group)).copied().unwrap_or_default();
        if through < floor {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {} node {}: restarted from the checkpoint at {} but had reported \
                     the one at {} durable",
                    group.0, node.0, through.0, floor.0
                ),
            ));
        }
        let Some(restored) = restored else {
            return Ok(());
        };
        self.restores += 1;
        let states = self.oracle.get(&group).map_or(&[][..], Vec::as_slice);
        let index = usize::try_from(through.0).expect("instance fits in usize");
        let Some(truth) = index.checked_sub(1).and_then(|i| states.get(i)) else {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {} node {}: checkpoint at {} beyond the chosen log's {} applied \
                     instances",
                    group.0,
                    node.0,
                    through.0,
                    states.len()
                ),
            ));
        };
        if restored.state != *truth {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {} node {}: restored at {} with state {:?}, the chosen log gives {:?}",
                    group.0, node.0, through.0, restored.state, truth
                ),
            ));
        }
        if let Some(reference) = reference.filter(|r| *r != restored.checksum) {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {} node {}: checkpoint at {} records checksum {:#010x}, replicas \
                     reported {reference:#010x}",
                    group.0, node.0, through.0, restored.checksum
                ),
            ));
        }
        Ok(())
    }

    /// Restarts that installed a checkpoint.
    #[must_use]
    pub fn restores(&self) -> u64 {
        self.restores
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Ballot, Body, Entry};
    use bytes::Bytes;

    fn apply(instance: u64, value: &'static [u8]) -> Apply {
        Apply {
            group: GroupId(1),
            instance: Instance(instance),
            entry: Entry {
                origin: Ballot::ZERO,
                body: Body::Values(smallvec::smallvec![Bytes::from_static(value)]),
            },
            skip: false,
            proposals: crate::paxos::Proposals::new(),
            checksum: instance as u32,
        }
    }

    // Goal: a restore at the oracle's state passes; a state one instance off, a wrong
    // checksum, and a restore older than a reported durable checkpoint fail; a lost
    // state or a damaged file lowers the floor.
    // Method: two applies; restores against the oracle.
    #[test]
    fn restores_against_the_oracle() {
        let (n, g) = (NodeId(2), GroupId(1));
        let mut checker = CheckpointChecker::new();
        checker.observe_apply(&apply(1, b"a"));
        checker.observe_apply(&apply(2, b"b"));
        checker.observe_apply(&apply(1, b"a"));
        let at = |i: u64| {
            let mut state = MachineState::default();
            for (instance, value) in [(1, b"a"), (2, b"b")].into_iter().take(i as usize) {
                state = SimMachine::fold(state, Instance(instance), value);
            }
            state
        };
        let restored = |through: u64, state: MachineState| Restored {
            through: Instance(through),
            state,
            checksum: 7,
        };
        checker
            .observe_restore(n, g, Some(restored(2, at(2))), Some(7))
            .expect("matches");
        let off = checker.observe_restore(n, g, Some(restored(2, at(1))), Some(7));
        assert!(off.unwrap_err().message.contains("the chosen log gives"));
        let sum = checker.observe_restore(n, g, Some(restored(1, at(1))), Some(8));
        assert!(sum.unwrap_err().message.contains("records checksum"));
        let beyond = checker.observe_restore(n, g, Some(restored(3, at(2))), None);
        assert!(beyond.unwrap_err().message.contains("beyond"));
        checker.observe_durable(n, g, Instance(2));
        let back = checker.observe_restore(n, g, Some(restored(1, at(1))), None);
        assert!(back.unwrap_err().message.contains("reported"));
        assert!(checker.observe_restore(n, g, None, None).is_err());
        checker.observe_damaged(n, g);
        checker
            .observe_restore(n, g, None, None)
            .expect("floor gone");
        checker.observe_durable(n, g, Instance(2));
        checker.reset(n, true);
        checker
            .observe_restore(n, g, None, None)
            .expect("lost state");
    }
}
