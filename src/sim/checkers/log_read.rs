//! Log reads: a read of a group's log returns exactly the values chosen between its
//! start and its `next` position, in order, each equal to the chosen value there;
//! never a position beyond what the replica applied; and `Truncated` only below the
//! checkpoint the replica restored.
//!
//! Source: the state machine approach (Schneider, 1990): the log is one sequence of
//! commands, which every replica applies in order; a read of it on any replica is a
//! prefix-consistent view of that sequence. The StartWorking rule of the design makes
//! the skipped entries part of the sequence's definition (they never reach a state
//! machine), so a read must leave them out as the apply path did.
//!
//! Method: the canonical applied log of `prefix` (every entry any replica applied,
//! with its skip decision) is the oracle. For a read answered on `node` from `from`
//! with values `entries` and `next`: the values of the oracle in `[from, next)` (of
//! non-skipped `Values` entries) must be `entries`, exactly; `next` is at most the
//! node's applied watermark plus one; a read from an applied instance makes progress;
//! the sizes keep their bounds. `Truncated { first_available }` must lie above
//! `from` and name the instance just after the checkpoint the node's incarnation
//! restored the group from (or installed from a peer since: the in-memory log's
//! floor), or just after the higher of that checkpoint and the WAL's release point
//! (the truncation watermark its shard handed out, the index's floor, or a peer's
//! checkpoint an earlier incarnation installed: `wal::catch_up::released_through`)
//! at some moment between the read's issue and its answer; or, answered by the shard
//! without a WAL read, the higher of the group's own first readable instance
//! (`Group::log_readable_from`, above its restore once the StartWorking filters moved
//! up: that bound is the group's own word, not derived by the checker) and the
//! truncation watermark the shard handed out.
//!
//! Invariant of the checker: `restored` holds the checkpoints of current incarnations.

use std::collections::BTreeMap;

use super::{AppliedEntry, Violation};
use crate::paxos::{Body, GroupId, Instance, NodeId};
use crate::runtime::log_reads::{
    LogRead, LogReadRefused, Position, LOG_READ_ENTRIES_MAX, LOG_READ_SIZE_MAX,
};

const NAME: &str = "log_read";

/// What the simulator knows of one answered log read.
#[derive(Clone, Copy, Debug)]
pub struct LogReadAnswered<'a> {
    /// The replica that answered.
    pub node: NodeId,
    /// The group.
    pub group: GroupId,
    /// The position asked for.
    pub from: Position,
    /// The size asked for.
    pub size_max: usize,
    /// The replica's applied watermark of the group when it answered.
    pub applied_through: Instance,
    /// The truncation watermark the replica's shard had handed out for the group when
    /// it answered (`Instance(0)`: none).
    pub handed_out: Instance,
    /// The group's own first readable instance when it answered
    /// (`Group::log_readable_from`: its restore, or above once its StartWorking filters
    /// moved up).
    pub log_readable_from: Instance,
    /// Where the replica's WAL index released the group when the read was issued
    /// (`wal::catch_up::released_through`: at most `released_through`): its WAL read
    /// was planned between the two.
    pub released_at_issue: Instance,
    /// Where the replica's WAL released the group when it answered: the truncation
    /// watermark its shard had handed out, or what its index releases (its floor, or
    /// an install recorded there), whichever is higher (`Instance(0)`: none).
    pub released_through: Instance,
    /// The answer.
    pub outcome: &'a Result<LogRead, LogReadRefused>,
}

/// Checks log reads against the canonical log.
#[derive(Debug, Default)]
pub struct LogReadChecker {
    /// (node, group) -> the checkpoint its current incarnation restored.
    restored: BTreeMap<(NodeId, GroupId), Instance>,
    /// Reads answered with values (possibly none).
    pub served: u64,
    /// Values returned and checked.
    pub values: u64,
    /// Reads answered `Truncated`.
    pub truncated: u64,
    /// Reads refused `Overloaded`.
    pub overloaded: u64,
}

impl LogReadChecker {
    /// `node`'s new incarnation restored `group` from a checkpoint at `through`.
    pub fn observe_restored(&mut self, node: NodeId, group: GroupId, through: Instance) {
        self.restored.insert((node, group), through);
    }

    /// `node` restarted: its restores are forgotten until observed again.
    pub fn reset(&mut self, node: NodeId) {
        self.restored.retain(|(n, _), _| *n != node);
    }

    /// A read answered as `answered` says; `log` is the canonical log of its group.
    pub fn observe(
        &mut self,
        answered: &LogReadAnswered<'_>,
        log: &[AppliedEntry],
    ) -> Result<(), Violation> {
        let from = if answered.from.instance.0 == 0 {
            Position::START
        } else {
            answered.from
        };
        let fail = |what: String| {
            Err(Violation::new(
                NAME,
                format!(
                    "node {} group {} read from {from}: {what}",
                    answered.node.0, answered.group.0
                ),
            ))
        };
        let read = match answered.outcome {
            Ok(read) => read,
            Err(LogReadRefused::Overloaded) => {
                self.overloaded += 1;
                return Ok(());
            }
            Err(LogReadRefused::Truncated { first_available }) => {
                self.truncated += 1;
                let restored = self.restored.get(&(answered.node, answered.group));
                let released = answered.released_through;
                let released_before = answered.released_at_issue;
                // The in-memory log answers just above the checkpoint it was
                // restored from; the WAL just above the higher of that and its
                // release point when its read was planned, between the read's issue
                // and its answer (it may have released more than the restore covers:
                // the next read learns it). Nothing restored or released: no answer
                // may be `Truncated`.
                let from_memory = restored.map(|through| through.next());
                let base = restored.copied().unwrap_or(Instance(0));
                let lowest = base.max(released_before).next();
                let highest = base.max(released);
                let from_wal =
                    highest >= Instance(1) && (lowest..=highest.next()).contains(first_available);
                // Without a WAL read the shard answers the higher of the group's own
                // floor (`Group::log_readable_from`: its restore, or above once its
                // StartWorking filters moved up) and the watermark it handed out for
                // truncation (below the WAL index's floor after a restart: the index
                // was recovered from segments an earlier incarnation truncated).
                let readable = answered.log_readable_from;
                let shard_floor = readable.max(answered.handed_out.next());
                let from_shard = shard_floor > Instance(1) && *first_available == shard_floor;
                let named = Some(*first_available) == from_memory || from_wal || from_shard;
                if !named || from.instance >= *first_available {
                    return fail(format!(
                        "Truncated {{ first_available: {} }}, restored from {restored:?}, WAL \
                         released through {} ({} at the read's issue), the group readable \
                         from {}",
                        first_available.0, released.0, released_before.0, readable.0
                    ));
                }
                return Ok(());
            }
            Err(refused) => return fail(format!("refused {refused:?}")),
        };
        self.served += 1;
        let applied = answered.applied_through;
        if (read.next != from && read.next.instance.0 > applied.0 + 1) || read.next < from {
            return fail(format!(
                "next {} with applied_through {}",
                read.next, applied.0
            ));
        }
        if from.instance <= applied && read.next == from {
            return fail(format!("no progress with applied_through {}", applied.0));
        }
        let size: usize = read.entries.iter().map(|e| e.value.len()).sum();
        let size_max = answered.size_max.min(LOG_READ_SIZE_MAX);
        if read.entries.len() > LOG_READ_ENTRIES_MAX || (read.entries.len() > 1 && size > size_max)
        {
            return fail(format!(
                "{} values of {size} bytes for {size_max} bytes at most",
                read.entries.len()
            ));
        }
        let mut expected = Vec::new();
        for i in from.instance.0..=read.next.instance.0 {
            let Some(applied) = log.get(usize::try_from(i - 1).expect("instance fits in usize"))
            else {
                // Needed only if a position of the range lies at `i`.
                let start = if i == from.instance.0 { from.index } else { 0 };
                if i < read.next.instance.0 || read.next.index > start {
                    return fail(format!("instance {i} is beyond the canonical log"));
                }
                break;
            };
            if let (Body::Values(values), false) = (&applied.entry.body, applied.skip) {
                for (index, value) in values.iter().enumerate() {
                    let position = Position {
                        instance: Instance(i),
                        index: index as u32,
                    };
                    if position >= from && position < read.next {
                        expected.push((position, value));
                    }
                }
            }
        }
        if expected.len() != read.entries.len() {
            return fail(format!(
                "{} values up to {}, the chosen log has {} there",
                read.entries.len(),
                read.next,
                expected.len()
            ));
        }
        for ((position, value), entry) in expected.iter().zip(&read.entries) {
            if entry.position != *position || entry.value != **value {
                return fail(format!(
                    "{} bytes at {} where the chosen log has {} bytes at {position}",
                    entry.value.len(),
                    entry.position,
                    value.len()
                ));
            }
        }
        self.values += read.entries.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{LogReadAnswered, LogReadChecker};
    use crate::paxos::{Ballot, Body, Entry, GroupId, Instance, NodeId};
    use crate::runtime::log_reads::{LogEntry, LogRead, LogReadRefused, Position};
    use crate::sim::checkers::AppliedEntry;
    use bytes::Bytes;

    fn values(round: u64, values: &[&'static [u8]], skip: bool) -> AppliedEntry {
        AppliedEntry {
            entry: Entry {
                origin: Ballot {
                    round,
                    node: NodeId(1),
                },
                body: Body::Values(values.iter().map(|v| Bytes::from_static(v)).collect()),
            },
            skip,
        }
    }

    fn log() -> Vec<AppliedEntry> {
        vec![
            values(1, &[b"a", b"b"], false),
            AppliedEntry {
                entry: Entry {
                    origin: Ballot::ZERO,
                    body: Body::Noop,
                },
                skip: false,
            },
            values(1, &[b"ghost"], true),
            values(2, &[b"c"], false),
        ]
    }

    fn at(instance: u64, index: u32) -> Position {
        Position {
            instance: Instance(instance),
            index,
        }
    }

    fn entry(instance: u64, index: u32, value: &'static [u8]) -> LogEntry {
        LogEntry {
            position: at(instance, index),
            value: Bytes::from_static(value),
        }
    }

    fn check(
        checker: &mut LogReadChecker,
        from: Position,
        outcome: Result<LogRead, LogReadRefused>,
    ) -> Result<(), crate::sim::checkers::Violation> {
        check_released(checker, from, outcome, Instance(0))
    }

    fn check_released(
        checker: &mut LogReadChecker,
        from: Position,
        outcome: Result<LogRead, LogReadRefused>,
        released_through: Instance,
    ) -> Result<(), crate::sim::checkers::Violation> {
        check_moved(checker, from, outcome, (released_through, released_through))
    }

    /// As `check_released`, the WAL's release point having moved from `.0` at the
    /// read's issue to `.1` at its answer.
    fn check_moved(
        checker: &mut LogReadChecker,
        from: Position,
        outcome: Result<LogRead, LogReadRefused>,
        (released_at_issue, released_through): (Instance, Instance),
    ) -> Result<(), crate::sim::checkers::Violation> {
        let answered = LogReadAnswered {
            node: NodeId(1),
            group: GroupId(1),
            from,
            size_max: 1 << 20,
            applied_through: Instance(4),
            // The group's floor as a restore leaves it.
            log_readable_from: checker
                .restored
                .get(&(NodeId(1), GroupId(1)))
                .map_or(Instance(1), |through| through.next()),
            handed_out: released_through,
            released_at_issue,
            released_through,
            outcome: &outcome,
        };
        checker.observe(&answered, &log())
    }

    fn read(entries: Vec<LogEntry>, next: Position) -> LogRead {
        LogRead {
            entries,
            next,
            chosen_through: Instance(4),
        }
    }

    // Goal: a read that returns the chosen values of its range passes, control and
    // skipped entries left out, from inside a batch too.
    // Method: whole log, a read from index 1, an empty read past the end.
    #[test]
    fn exact_reads_pass() {
        let mut checker = LogReadChecker::default();
        let whole = vec![entry(1, 0, b"a"), entry(1, 1, b"b"), entry(4, 0, b"c")];
        check(&mut checker, Position::START, Ok(read(whole, at(5, 0)))).unwrap();
        check(
            &mut checker,
            at(1, 1),
            Ok(read(vec![entry(1, 1, b"b")], at(3, 0))),
        )
        .unwrap();
        check(&mut checker, at(5, 0), Ok(read(Vec::new(), at(5, 0)))).unwrap();
        assert_eq!(checker.values, 4);
    }

    // Goal: a skipped value returned, a value left out, a wrong value, a read past the
    // applied watermark and a Truncated without a restore are each caught.
    // Method: one bad answer per case.
    #[test]
    fn wrong_reads_fail() {
        let mut checker = LogReadChecker::default();
        let ghost = vec![entry(3, 0, b"ghost")];
        assert!(check(&mut checker, at(3, 0), Ok(read(ghost, at(4, 0)))).is_err());
        let missing = vec![entry(1, 0, b"a")];
        assert!(check(&mut checker, Position::START, Ok(read(missing, at(3, 0)))).is_err());
        let wrong = vec![entry(4, 0, b"x")];
        assert!(check(&mut checker, at(4, 0), Ok(read(wrong, at(5, 0)))).is_err());
        assert!(check(&mut checker, at(5, 0), Ok(read(Vec::new(), at(6, 0)))).is_err());
        assert!(check(&mut checker, at(2, 0), Ok(read(Vec::new(), at(2, 0)))).is_err());
        let truncated = LogReadRefused::Truncated {
            first_available: Instance(3),
        };
        assert!(check(&mut checker, Position::START, Err(truncated.clone())).is_err());
        checker.observe_restored(NodeId(1), GroupId(1), Instance(2));
        check(&mut checker, Position::START, Err(truncated.clone())).unwrap();
        checker.reset(NodeId(1));
        assert!(check(&mut checker, Position::START, Err(truncated.clone())).is_err());
        // A truncated WAL: `first_available` is the one after its watermark, not below.
        check_released(&mut checker, at(1, 0), Err(truncated.clone()), Instance(2)).unwrap();
        assert!(check_released(&mut checker, at(1, 0), Err(truncated), Instance(3)).is_err());
        checker.observe_restored(NodeId(1), GroupId(1), Instance(3));
        let below = LogReadRefused::Truncated {
            first_available: Instance(3),
        };
        assert!(check_released(&mut checker, at(1, 0), Err(below), Instance(2)).is_err());
        // Restored from 3 with the WAL released through 6 (an earlier install): the
        // in-memory floor (4) and the WAL's (7) are both true, nothing between.
        for (first_available, true_answer) in [(4, true), (7, true), (5, false), (8, false)] {
            let answer = LogReadRefused::Truncated {
                first_available: Instance(first_available),
            };
            let checked = check_released(&mut checker, at(1, 0), Err(answer), Instance(6));
            assert_eq!(
                checked.is_ok(),
                true_answer,
                "first_available {first_available}"
            );
        }
        // The WAL released 6 when the read was issued and 9 when it was answered: its
        // read was planned in between, so 7..=10 are true, 5 and 11 are not.
        for (first_available, true_answer) in [(7, true), (10, true), (5, false), (11, false)] {
            let answer = LogReadRefused::Truncated {
                first_available: Instance(first_available),
            };
            let moved = (Instance(6), Instance(9));
            let checked = check_moved(&mut checker, at(1, 0), Err(answer), moved);
            assert_eq!(
                checked.is_ok(),
                true_answer,
                "first_available {first_available}"
            );
        }
    }
}
