//! Ghost replay (reference 003, "幽灵复现"; PhxPaxos's StartWorking rule): once a
//! StartWorking entry of ballot b is applied, no entry first proposed at a ballot below
//! b may reach the state machine. Such an entry was invisible when b's leader began to
//! serve; applying it later would make a value appear after reads showed it absent.
//!
//! Method: replay each node's apply stream independently of the protocol: track the
//! latest applied StartWorking origin per (node, group) and require `skip` exactly
//! when the entry's origin is below it (and only then: skipping a live entry would
//! lose an acknowledged value).

use std::collections::BTreeMap;

use super::{describe_entry, Violation};
use crate::paxos::{Apply, Ballot, Body, GroupId, NodeId};

const NAME: &str = "ghost";

/// Checks the StartWorking filter on every applied entry.
#[derive(Debug, Default)]
pub struct GhostChecker {
    start_working: BTreeMap<(NodeId, GroupId), Ballot>,
}

impl GhostChecker {
    /// A checker that has seen nothing.
    #[must_use]
    pub fn new() -> GhostChecker {
        GhostChecker::default()
    }

    /// `node` applied (or skipped) `apply`, in its apply order.
    pub fn observe_apply(&mut self, node: NodeId, apply: &Apply) -> Result<(), Violation> {
        let latest = self
            .start_working
            .entry((node, apply.group))
            .or_insert(Ballot::ZERO);
        let ghost = apply.entry.origin < *latest;
        if ghost != apply.skip {
            let what = if ghost {
                "applied a ghost"
            } else {
                "skipped a live entry"
            };
            return Err(Violation::new(
                NAME,
                format!(
                    "group {} node {} instance {}: {what}: {} (latest StartWorking {})",
                    apply.group.0,
                    node.0,
                    apply.instance.0,
                    describe_entry(&apply.entry),
                    latest
                ),
            ));
        }
        if !apply.skip && matches!(apply.entry.body, Body::StartWorking) {
            *latest = apply.entry.origin;
        }
        Ok(())
    }

    /// `node` restarted: it applies from instance 1 again.
    pub fn reset(&mut self, node: NodeId) {
        self.start_working.retain(|(n, _), _| *n != node);
    }

    /// `node` restarted `group` from a checkpoint: `latest` is the latest StartWorking
    /// applied through its instance (from the canonical log, not from the node).
    pub fn resume(&mut self, node: NodeId, group: GroupId, latest: Ballot) {
        self.start_working.insert((node, group), latest);
    }
}

#[cfg(test)]
mod tests {
    use super::GhostChecker;
    use crate::paxos::{Apply, Ballot, Body, Entry, GroupId, Instance, NodeId};

    fn apply(instance: u64, round: u64, body: Body, skip: bool) -> Apply {
        Apply {
            group: GroupId(1),
            instance: Instance(instance),
            entry: Entry {
                origin: Ballot {
                    round,
                    node: NodeId(1),
                },
                body,
            },
            skip,
            proposals: crate::paxos::Proposals::new(),
            checksum: 0,
        }
    }

    // Goal: the filter is checked both ways: a ghost applied and a live entry skipped
    // are violations; the correct stream passes.
    // Method: StartWorking at round 2, then an entry of round 1 applied / skipped, and
    // an entry of round 2 skipped.
    #[test]
    fn ghost_applied_or_live_skipped_is_caught() {
        let node = NodeId(3);
        let mut checker = GhostChecker::new();
        checker
            .observe_apply(node, &apply(1, 2, Body::StartWorking, false))
            .unwrap();
        checker
            .observe_apply(node, &apply(2, 1, Body::Noop, true))
            .unwrap();
        checker
            .observe_apply(node, &apply(3, 2, Body::Noop, false))
            .unwrap();
        let ghost = checker.observe_apply(node, &apply(4, 1, Body::Noop, false));
        assert!(ghost.unwrap_err().message.contains("applied a ghost"));
        let live = checker.observe_apply(node, &apply(5, 2, Body::Noop, true));
        assert!(live.unwrap_err().message.contains("skipped a live entry"));
        checker.reset(node);
        checker
            .observe_apply(node, &apply(1, 1, Body::Noop, false))
            .unwrap();
    }
}
