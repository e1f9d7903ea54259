//! Checkpoint installs: a replica that installs a checkpoint received from a peer only
//! moves forward (its applied watermark jumps above where it stood, never back), and
//! never votes on an instance the checkpoint covers (it holds no value there: an
//! `Accepted` of its own for such an instance is a vote for a value it never stored).
//!
//! Source: Paxos Made Live (Chandra et al., PODC 2007), §5.5 (a replica catching up
//! from a snapshot resumes from a definite log position, after its own), and Lamport,
//! "Paxos Made Simple" §2.2: an acceptor's acceptance is a durable promise about a
//! value it holds; the simulator's `checkpoint` checker checks the installed state
//! against the chosen log's.
//!
//! Method: per (node, group), the highest instance installed from a peer in the node's
//! current life (forgotten at a restart, where the group is rebuilt from its own
//! disk); every `Accepted` the node sends for the group is checked against it, and
//! every install against the node's applied watermark (from `prefix`).

use std::collections::BTreeMap;

use super::Violation;
use crate::paxos::{GroupId, Instance, Message, MessageBody, NodeId};

const NAME: &str = "install";

/// See the module docs.
#[derive(Debug, Default)]
pub struct InstallChecker {
    installed: BTreeMap<(NodeId, GroupId), Instance>,
    installs: u64,
}

impl InstallChecker {
    /// `node` installed a peer's checkpoint of `group` at `through`, having applied
    /// through `applied` before.
    ///
    /// # Errors
    ///
    /// The install does not move the applied watermark forward.
    pub fn observe_install(
        &mut self,
        node: NodeId,
        group: GroupId,
        applied: Instance,
        through: Instance,
    ) -> Result<(), Violation> {
        if through <= applied {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {} node {}: installed a checkpoint at {} after applying through {}",
                    group.0, node.0, through.0, applied.0
                ),
            ));
        }
        self.installs += 1;
        let entry = self.installed.entry((node, group)).or_default();
        *entry = (*entry).max(through);
        Ok(())
    }

    /// `node` sent `message`.
    ///
    /// # Errors
    ///
    /// An `Accepted` for an instance at or below a checkpoint the node installed.
    pub fn observe_sent(&self, node: NodeId, message: &Message) -> Result<(), Violation> {
        let MessageBody::Accepted { ranges, ballot } = &message.body else {
            return Ok(());
        };
        let Some(installed) = self.installed.get(&(node, message.group)) else {
            return Ok(());
        };
        match ranges.first() {
            Some(range) if range.first <= *installed => Err(Violation::new(
                NAME,
                format!(
                    "group {} node {}: acknowledged instance {} at ballot {:?}, at or below \
                     the checkpoint it installed at {}",
                    message.group.0, node.0, range.first.0, ballot, installed.0
                ),
            )),
            Some(_) | None => Ok(()),
        }
    }

    /// `node` restarted: its groups are rebuilt from its own disk.
    pub fn reset(&mut self, node: NodeId) {
        self.installed.retain(|(n, _), _| *n != node);
    }

    /// Installs observed.
    #[must_use]
    pub fn installs(&self) -> u64 {
        self.installs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Ballot, InstanceRange};

    fn accepted(first: u64) -> Message {
        Message {
            group: GroupId(1),
            from: NodeId(2),
            to: NodeId(1),
            body: MessageBody::Accepted {
                ballot: Ballot {
                    round: 1,
                    node: NodeId(1),
                },
                ranges: vec![InstanceRange {
                    first: Instance(first),
                    last: Instance(first + 1),
                }],
            },
        }
    }

    // Goal: acks above an install and installs that move forward pass.
    // Method: install at 10 after applying 3; ack 11..12.
    #[test]
    fn forward_install_and_acks_above_pass() {
        let mut c = InstallChecker::default();
        c.observe_install(NodeId(2), GroupId(1), Instance(3), Instance(10))
            .unwrap();
        c.observe_sent(NodeId(2), &accepted(11)).unwrap();
        c.observe_sent(NodeId(3), &accepted(1)).unwrap();
    }

    // Goal: an ack at or below the install, and an install that goes back, fail.
    // Method: install at 10, ack 9..10; install at 5 after applying 7.
    #[test]
    fn ack_below_install_and_backward_install_fail() {
        let mut c = InstallChecker::default();
        c.observe_install(NodeId(2), GroupId(1), Instance(3), Instance(10))
            .unwrap();
        assert!(c.observe_sent(NodeId(2), &accepted(9)).is_err());
        c.reset(NodeId(2));
        c.observe_sent(NodeId(2), &accepted(9)).unwrap();
        assert!(c
            .observe_install(NodeId(2), GroupId(1), Instance(7), Instance(5))
            .is_err());
    }
}
