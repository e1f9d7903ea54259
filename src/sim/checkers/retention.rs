//! Bounded memory: a replica's in-memory log of a group holds at most its retention
//! of applied slots, and above them only what its accept window admits (or what its
//! WAL restored), however long the history grows.
//!
//! Source: Chandra, Griesemer, Redstone, "Paxos Made Live" (PODC 2007), §5.5: without
//! a way to drop its prefix, a replica's log "would grow without bound" (their answer
//! is snapshots; here applied entries leave memory and stay in the WAL, which serves
//! lagging peers). The design brief: a node runs for days without its memory growing
//! with its history.
//!
//! Property, per (node, group), after every step:
//! - the applied slots kept in memory, `[log_floor, applied_through]`, number at most
//!   `retention_instances_max` and weigh (`retained_size`) at most
//!   `retention_size_max`, unless only the newest applied slot is kept (kept whatever
//!   its size);
//! - the slots above `applied_through` lie at or below `chosen_through +
//!   accept_window_instances_max` (an acceptor accepts no further; a leader proposes
//!   within its window, which is smaller), or at or below the highest instance the
//!   WAL restored at the replica's last start: so they number at most the distance
//!   from `applied_through` to the larger of the two.
//!
//! Method: the driver reports each group's log shape after every step
//! ([`RetentionChecker::observe`]) and the highest restored instance at every start
//! ([`RetentionChecker::observe_restore`]). The checker keeps that per (node, group)
//! and the largest log seen (for the run's report).

use super::Violation;
use crate::paxos::{GroupId, Instance, NodeId};
use std::collections::BTreeMap;

const NAME: &str = "retention";

/// One replica's in-memory log of one group after a step, and its limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogShape {
    /// Slots in memory.
    pub log_len: usize,
    /// The first instance the log may hold.
    pub log_floor: Instance,
    /// Inclusive applied watermark.
    pub applied_through: Instance,
    /// Inclusive chosen watermark.
    pub chosen_through: Instance,
    /// Bytes of the applied slots kept.
    pub retained_size: usize,
    /// The group's `retention_instances_max`.
    pub retention_instances_max: u64,
    /// The group's `retention_size_max`.
    pub retention_size_max: usize,
    /// The group's `accept_window_instances_max`.
    pub accept_window_instances_max: u64,
}

/// Checks that every in-memory log stays within its retention and window.
#[derive(Debug, Default)]
pub struct RetentionChecker {
    /// Highest instance restored from the WAL at each replica's last start.
    restored_high: BTreeMap<(NodeId, GroupId), Instance>,
    /// The most slots any replica's log held.
    log_len_max: usize,
}

impl RetentionChecker {
    /// A checker that has seen nothing.
    #[must_use]
    pub fn new() -> RetentionChecker {
        RetentionChecker::default()
    }

    /// `node` (re)started `group` with slots restored from its WAL up to
    /// `restored_high` (`Instance(0)`: none).
    pub fn observe_restore(&mut self, node: NodeId, group: GroupId, restored_high: Instance) {
        self.restored_high.insert((node, group), restored_high);
    }

    /// `node`'s log of `group` after a step.
    ///
    /// # Errors
    ///
    /// The log holds more than the property allows.
    pub fn observe(
        &mut self,
        node: NodeId,
        group: GroupId,
        shape: &LogShape,
    ) -> Result<(), Violation> {
        self.log_len_max = self.log_len_max.max(shape.log_len);
        let kept = if shape.applied_through >= shape.log_floor {
            shape.applied_through.0 - shape.log_floor.0 + 1
        } else {
            0
        };
        let at = || {
            format!(
                "node {} group {}: {} slots in memory, floor {}, applied {}, chosen {}",
                node.0,
                group.0,
                shape.log_len,
                shape.log_floor.0,
                shape.applied_through.0,
                shape.chosen_through.0
            )
        };
        if kept > 1 && kept > shape.retention_instances_max {
            return Err(Violation::new(
                NAME,
                format!(
                    "{}: {kept} applied slots kept, retention_instances_max {}",
                    at(),
                    shape.retention_instances_max
                ),
            ));
        }
        if kept > 1 && shape.retained_size > shape.retention_size_max {
            return Err(Violation::new(
                NAME,
                format!(
                    "{}: {} bytes of applied slots kept, retention_size_max {}",
                    at(),
                    shape.retained_size,
                    shape.retention_size_max
                ),
            ));
        }
        let restored = self
            .restored_high
            .get(&(node, group))
            .copied()
            .unwrap_or(Instance(0));
        let reach = shape
            .chosen_through
            .0
            .saturating_add(shape.accept_window_instances_max)
            .max(restored.0);
        let above = (shape.log_len as u64).saturating_sub(kept);
        let allowed = reach.saturating_sub(shape.applied_through.0);
        if above > allowed {
            return Err(Violation::new(
                NAME,
                format!(
                    "{}: {above} slots above the applied watermark, at most {allowed} \
                     (accept window {}, restored through {})",
                    at(),
                    shape.accept_window_instances_max,
                    restored.0
                ),
            ));
        }
        Ok(())
    }

    /// The most slots any replica's log held so far.
    #[must_use]
    pub fn log_len_max(&self) -> usize {
        self.log_len_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(log_len: usize, floor: u64, applied: u64, retained_size: usize) -> LogShape {
        LogShape {
            log_len,
            log_floor: Instance(floor),
            applied_through: Instance(applied),
            chosen_through: Instance(applied),
            retained_size,
            retention_instances_max: 4,
            retention_size_max: 100,
            accept_window_instances_max: 8,
        }
    }

    // Goal: logs within retention and window pass, whatever the history's length.
    // Method: observe a long-lived log with 4 applied slots and a full window above.
    #[test]
    fn bounded_logs_pass() {
        let mut checker = RetentionChecker::new();
        let (n, g) = (NodeId(1), GroupId(1));
        checker.observe(n, g, &shape(0, 1, 0, 0)).unwrap();
        checker
            .observe(n, g, &shape(4 + 8, 1_000_000 - 3, 1_000_000, 100))
            .unwrap();
        // The newest applied slot stays whatever its size.
        checker
            .observe(n, g, &shape(1, 1_000_000, 1_000_000, 5_000))
            .unwrap();
        assert_eq!(checker.log_len_max(), 12);
    }

    // Goal: too many or too heavy applied slots, or slots beyond the window, are
    // caught; slots the WAL restored beyond the window are allowed.
    // Method: one synthetic violation of each bound, then a restart with a long
    // restored tail.
    #[test]
    fn unbounded_logs_are_caught() {
        let mut checker = RetentionChecker::new();
        let (n, g) = (NodeId(1), GroupId(1));
        let count = checker.observe(n, g, &shape(5, 96, 100, 50)).unwrap_err();
        assert!(count.message.contains("5 applied slots kept"), "{count}");
        let size = checker.observe(n, g, &shape(2, 99, 100, 101)).unwrap_err();
        assert!(size.message.contains("101 bytes"), "{size}");
        let window = checker
            .observe(n, g, &shape(4 + 9, 97, 100, 50))
            .unwrap_err();
        assert!(window.message.contains("9 slots above"), "{window}");
        assert_eq!(window.checker, "retention");
        checker.observe_restore(n, g, Instance(150));
        checker.observe(n, g, &shape(4 + 50, 97, 100, 50)).unwrap();
        assert!(checker.observe(n, g, &shape(4 + 51, 97, 100, 50)).is_err());
    }
}
