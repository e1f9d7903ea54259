//! Reading a group's chosen log back (the embedding use): what `NodeHandle::read_log`
//! asks of a shard, decided in the pure shard like every other request.
//!
//! Every value has a [`Position`]: the instance that holds it and its index among the
//! values batched into that instance. A log read returns the values from a position
//! on, in order, exactly as the state machine saw them: only chosen instances, through
//! the group's applied watermark (the pure group applies in the step that learns an
//! instance chosen, so this is its chosen watermark), without control entries (no-ops,
//! StartWorking, membership) and without the entries the ghost-replay guard skipped
//! (never applied anywhere; their proposers were answered `Aborted`). Any replica
//! serves it, followers included: what it returns is chosen, whoever leads.
//!
//! Where the values come from: the group's in-memory log when it still holds the
//! position (`log_floor` and above), the WAL otherwise, through the catch-up path (a
//! `WalRead` for `WalReader::Log`, held until the records before it are durable,
//! answered by `ShardInput::WalReadDone`). Below `Group::log_readable_from` (before the
//! checkpoint the group was restored from or installed) or at or below the WAL's
//! truncation watermark handed out for the group (`LogReads::on_wal_released`) the
//! answer is `Truncated`, without a WAL read.
//!
//! Invariants:
//! - an answer holds values of consecutive positions from the one asked, at most
//!   `LOG_READ_ENTRIES_MAX` of them and at most the size asked (at least one value
//!   when there is one), and `next` is the position right after the last value it
//!   holds (or after the control entries it passed);
//! - at most `ShardConfig::log_reads_wal_count_max` reads are out at the WAL per
//!   shard (a read sent again after an empty WAL answer stays among them), and at
//!   most `LOG_READS_WAITING_COUNT_MAX` wait for new values: more are refused
//!   `Overloaded`;
//! - a read whose WAL read comes back empty is sent again at most
//!   `LOG_READ_WAL_RETRIES_MAX` times, then refused `Overloaded`;
//! - every read handed in is answered exactly once (unless the shard stops: the
//!   executor then answers `Stopped`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bytes::Bytes;

use crate::paxos::{Body, Entry, Group, GroupId, Instance, Nanos, WalRead, WalReadOutcome};

/// Values one log read returns at most.
pub const LOG_READ_ENTRIES_MAX: usize = 4_096;
/// Bytes of values one log read returns at most, whatever the caller asks (beyond the
/// first value).
pub const LOG_READ_SIZE_MAX: usize = 16 << 20;
/// Log reads per shard waiting for their group to choose a value at their position.
pub const LOG_READS_WAITING_COUNT_MAX: usize = 1_024;
/// Log reads per shard out at the WAL at once, by default.
pub const LOG_READS_WAL_COUNT_MAX: usize = 16;
/// Times a log read whose WAL read came back empty is sent to the WAL again before it
/// is answered `Overloaded`.
pub const LOG_READ_WAL_RETRIES_MAX: u32 = 2;

/// Where a value lies in a group's log: the instance that holds it and its index among
/// the values batched into that instance. Positions are ordered as the log is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// The instance.
    pub instance: Instance,
    /// The value's index in the instance's batch, from 0.
    pub index: u32,
}

impl Position {
    /// The first position of every log.
    pub const START: Position = Position {
        instance: Instance(1),
        index: 0,
    };

    /// The first position of `instance`.
    #[must_use]
    pub fn at(instance: Instance) -> Position {
        Position { instance, index: 0 }
    }
}

impl From<Instance> for Position {
    fn from(instance: Instance) -> Position {
        Position::at(instance)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.instance.0, self.index)
    }
}

/// One value of the log with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Where it lies.
    pub position: Position,
    /// The value, as proposed.
    pub value: Bytes,
}

/// What one log read returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRead {
    /// Values from the position asked, in order.
    pub entries: Vec<LogEntry>,
    /// The position to ask for next.
    pub next: Position,
    /// The replica's chosen watermark when it answered: `next` beyond it means the
    /// read reached the end of what this replica knows is chosen.
    pub chosen_through: Instance,
}

/// Identifies a log read, chosen by the executor (unique among the reads it waits on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogReadId(pub u64);

/// Why a log read was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogReadRefused {
    /// The shard has no such group.
    NoSuchGroup,
    /// The position lies below what this replica can read back: a checkpoint covers
    /// it; `first_available` is the first instance it can read.
    Truncated {
        /// The first instance readable here.
        first_available: Instance,
    },
    /// Too many log reads are out at the WAL or waiting: retry later.
    Overloaded,
}

/// The answer to one log read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogReadDone {
    /// The read.
    pub id: LogReadId,
    /// Its group.
    pub group: GroupId,
    /// The values, or why not.
    pub outcome: Result<LogRead, LogReadRefused>,
}

/// One log read as handed in (`ShardInput::LogRead`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogReadAsk {
    /// Identifies the read in `Effects::log_reads`.
    pub id: LogReadId,
    /// The group.
    pub group: GroupId,
    /// The first position wanted (instance 0 reads as 1).
    pub from: Position,
    /// Bytes of values wanted at most (beyond the first; capped by
    /// `LOG_READ_SIZE_MAX`).
    pub size_max: usize,
    /// When nothing is chosen at `from` yet: wait until something is, or until this
    /// time (then answered with no values). `None`: answer at once.
    pub wait_until: Option<Nanos>,
}

/// What a log read's step decided.
#[derive(Debug)]
pub enum Decision {
    /// Answered.
    Done(LogReadDone),
    /// Read below the in-memory log: this WAL read, answered by `on_wal_read_done`.
    Wal(WalRead),
    /// Waiting for a value at its position (kept by `LogReads`).
    Waiting,
}

/// The log reads of one shard: those out at the WAL and those waiting for values.
#[derive(Debug, Default)]
pub struct LogReads {
    /// Reads out at the WAL, by id, with the times each was sent again after an
    /// empty answer.
    at_wal: BTreeMap<LogReadId, (LogReadAsk, u32)>,
    /// Reads waiting for their group to choose a value at their position.
    waiting: BTreeMap<GroupId, Vec<LogReadAsk>>,
    waiting_count: usize,
    /// Waiting reads by deadline.
    deadlines: BTreeSet<(Nanos, LogReadId)>,
    /// Per group, the WAL truncation watermark handed out (`runtime::truncation`): the
    /// WAL holds nothing at or below it, or will not once the truncation is done.
    released: BTreeMap<GroupId, Instance>,
    /// Reads answered (values or not), refused, and sent to the WAL.
    pub counters: LogReadCounters,
}

/// Counters of a shard's log reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogReadCounters {
    /// Reads answered with values (possibly none).
    pub served: u64,
    /// Of `served`, those whose values came from the WAL (the rest: from memory).
    pub served_from_wal: u64,
    /// Reads refused (`Truncated`, `Overloaded`, `NoSuchGroup`).
    pub refused: u64,
    /// Of `refused`, those refused `Truncated`.
    pub refused_truncated: u64,
    /// Of `refused`, those refused `Overloaded`.
    pub refused_overloaded: u64,
    /// Of `refused`, those refused `NoSuchGroup`.
    pub refused_no_such_group: u64,
    /// Reads that went to the WAL.
    pub wal: u64,
    /// Reads that waited for new values.
    pub waited: u64,
    /// WAL reads that came back empty and were sent again.
    pub wal_retried: u64,
}

impl LogReads {
    /// The WAL of `group` is (being) released at and below `through`: reads from there
    /// are answered `Truncated` from now on. Never decreases.
    pub fn on_wal_released(&mut self, group: GroupId, through: Instance) {
        let released = self.released.entry(group).or_default();
        *released = (*released).max(through);
    }

    /// The first instance a read of `group` may start at: above the group's
    /// `log_readable_from` and above the WAL truncation watermark.
    fn readable_from(&self, group: &Group, id: GroupId) -> Instance {
        let released = self.released.get(&id).copied().unwrap_or(Instance(0));
        group.log_readable_from().max(released.next())
    }

    /// Decides `ask` against `group` (`None`: no such group). `wal_count_max` bounds
    /// the reads out at the WAL.
    pub fn on_ask(
        &mut self,
        ask: LogReadAsk,
        group: Option<&Group>,
        wal_count_max: usize,
    ) -> Decision {
        let from = normalized(ask.from);
        let ask = LogReadAsk { from, ..ask };
        let Some(group) = group else {
            return self.done(&ask, Err(LogReadRefused::NoSuchGroup));
        };
        let readable_from = self.readable_from(group, ask.group);
        if from.instance < readable_from {
            let first_available = readable_from;
            return self.done(&ask, Err(LogReadRefused::Truncated { first_available }));
        }
        if from.instance > group.applied_through() {
            if let Some(deadline) = ask.wait_until {
                if self.waiting_count >= LOG_READS_WAITING_COUNT_MAX {
                    return self.done(&ask, Err(LogReadRefused::Overloaded));
                }
                self.waiting.entry(ask.group).or_default().push(ask);
                self.waiting_count += 1;
                self.deadlines.insert((deadline, ask.id));
                self.counters.waited += 1;
                return Decision::Waiting;
            }
        }
        if from.instance >= group.log_floor() || from.instance > group.applied_through() {
            let through = group.applied_through();
            // At most `LOG_READ_ENTRIES_MAX` instances visited, values or not.
            let slots = (from.instance.0..=through.0)
                .take(LOG_READ_ENTRIES_MAX)
                .map_while(|i| {
                    let instance = Instance(i);
                    group.chosen_entry(instance).map(|entry| (instance, entry))
                });
            let outcome = collect(group, from, ask.size_max, slots, through);
            return self.done(&ask, outcome);
        }
        if self.at_wal.len() >= wal_count_max {
            return self.done(&ask, Err(LogReadRefused::Overloaded));
        }
        self.at_wal.insert(ask.id, (ask, 0));
        self.counters.wal += 1;
        Decision::Wal(wal_read(&ask, group))
    }

    /// The WAL read of log read `id` returned: the values it found (from the read's
    /// first instance, consecutive), answered as a read from memory would be. `None`
    /// when no such read is out (answered before a restart of the executor's view).
    ///
    /// An empty answer has two causes the executor does not tell apart: it had no room
    /// for the read (its queue was full), or the WAL lacks the records (released
    /// meanwhile, which the watermark check below answers `Truncated`). The read is
    /// sent to the WAL again, still counted among those out, up to
    /// `LOG_READ_WAL_RETRIES_MAX` times; only then is it answered `Overloaded`.
    pub fn on_wal_read_done(
        &mut self,
        id: LogReadId,
        outcome: WalReadOutcome,
        group: Option<&Group>,
    ) -> Option<Decision> {
        let (ask, retries) = self.at_wal.remove(&id)?;
        let Some(group) = group else {
            return Some(self.done(&ask, Err(LogReadRefused::NoSuchGroup)));
        };
        let readable_from = self.readable_from(group, ask.group);
        let outcome = match outcome {
            WalReadOutcome::Raw(_) => {
                unreachable!("a log read is answered with entries (wal::catch_up::answer)")
            }
            WalReadOutcome::Truncated { first_available } => Err(LogReadRefused::Truncated {
                first_available: first_available.max(readable_from),
            }),
            // The filters moved up meanwhile (`FILTERS_COUNT_MAX` leader changes).
            WalReadOutcome::Entries(_) if ask.from.instance < readable_from => {
                Err(LogReadRefused::Truncated {
                    first_available: readable_from,
                })
            }
            // The executor had no room for the read: send it again, a bounded number
            // of times (the floor only rises, so memory cannot hold it now).
            WalReadOutcome::Entries(found)
                if found.is_empty() && retries < LOG_READ_WAL_RETRIES_MAX =>
            {
                self.at_wal.insert(ask.id, (ask, retries + 1));
                self.counters.wal_retried += 1;
                return Some(Decision::Wal(wal_read(&ask, group)));
            }
            WalReadOutcome::Entries(found) if found.is_empty() => Err(LogReadRefused::Overloaded),
            WalReadOutcome::Entries(found) => {
                let slots = found
                    .iter()
                    .enumerate()
                    .map(|(offset, entry)| (Instance(ask.from.instance.0 + offset as u64), entry));
                let last = Instance(ask.from.instance.0 + found.len() as u64 - 1);
                collect(group, ask.from, ask.size_max, slots, last)
            }
        };
        if outcome.is_ok() {
            self.counters.served_from_wal += 1;
        }
        Some(self.done(&ask, outcome))
    }

    /// Reads of `group` that wait and may be decided now (a value was chosen at their
    /// position), removed from the waiting set; their deadlines go with them.
    pub fn take_ready(&mut self, group: &Group) -> Vec<LogReadAsk> {
        let id = group.config().group;
        let Some(list) = self.waiting.get_mut(&id) else {
            return Vec::new();
        };
        let applied = group.applied_through();
        let (ready, still): (Vec<_>, Vec<_>) =
            list.drain(..).partition(|ask| ask.from.instance <= applied);
        *list = still;
        if list.is_empty() {
            self.waiting.remove(&id);
        }
        for ask in &ready {
            self.forget_waiting(ask);
        }
        ready
    }

    /// Waiting reads whose deadline passed: answered with no values.
    pub fn expire(
        &mut self,
        now: Nanos,
        chosen_through: impl Fn(GroupId) -> Instance,
    ) -> Vec<LogReadDone> {
        let mut done = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let mut found = None;
            for (group, list) in &mut self.waiting {
                if let Some(at) = list.iter().position(|ask| ask.id == id) {
                    found = Some((*group, list.remove(at)));
                    break;
                }
            }
            let (group, ask) = found.expect("every deadline has its waiting read");
            if self.waiting.get(&group).is_some_and(Vec::is_empty) {
                self.waiting.remove(&group);
            }
            self.waiting_count -= 1;
            let empty = LogRead {
                entries: Vec::new(),
                next: ask.from,
                chosen_through: chosen_through(group),
            };
            done.push(self.answer(&ask, Ok(empty)));
        }
        done
    }

    /// The groups with reads waiting for values.
    #[must_use]
    pub fn waiting_groups(&self) -> Vec<GroupId> {
        self.waiting.keys().copied().collect()
    }

    /// Reads out at the WAL.
    #[must_use]
    pub fn at_wal_count(&self) -> usize {
        self.at_wal.len()
    }

    /// Reads waiting for values.
    #[must_use]
    pub fn waiting_count(&self) -> usize {
        self.waiting_count
    }

    /// Checks the invariants of the module docs (the bounds, the deadline index).
    pub fn invariants(&self, wal_count_max: usize) {
        assert!(self.at_wal.len() <= wal_count_max);
        assert!(self.waiting_count <= LOG_READS_WAITING_COUNT_MAX);
        let counted: usize = self.waiting.values().map(Vec::len).sum();
        assert_eq!(counted, self.waiting_count, "waiting log reads miscounted");
        assert_eq!(
            self.deadlines.len(),
            self.waiting_count,
            "deadlines miscounted"
        );
    }

    fn forget_waiting(&mut self, ask: &LogReadAsk) {
        let deadline = ask.wait_until.expect("only reads with a deadline wait");
        let removed = self.deadlines.remove(&(deadline, ask.id));
        assert!(
            removed,
            "waiting log read {} without its deadline",
            ask.id.0
        );
        self.waiting_count -= 1;
    }

    fn done(&mut self, ask: &LogReadAsk, outcome: Result<LogRead, LogReadRefused>) -> Decision {
        Decision::Done(self.answer(ask, outcome))
    }

    fn answer(
        &mut self,
        ask: &LogReadAsk,
        outcome: Result<LogRead, LogReadRefused>,
    ) -> LogReadDone {
        let counters = &mut self.counters;
        match outcome {
            Ok(_) => counters.served += 1,
            Err(ref refused) => {
                counters.refused += 1;
                *match refused {
                    LogReadRefused::Truncated { .. } => &mut counters.refused_truncated,
                    LogReadRefused::Overloaded => &mut counters.refused_overloaded,
                    LogReadRefused::NoSuchGroup => &mut counters.refused_no_such_group,
                } += 1;
            }
        }
        LogReadDone {
            id: ask.id,
            group: ask.group,
            outcome,
        }
    }
}

/// The WAL read of `ask`: from its instance up to the instance below `group`'s
/// in-memory log.
fn wal_read(ask: &LogReadAsk, group: &Group) -> WalRead {
    WalRead {
        group: ask.group,
        reader: crate::paxos::WalReader::Log(ask.id.0),
        from: ask.from.instance,
        through: Instance(group.log_floor().0 - 1),
        size_max: ask.size_max.min(LOG_READ_SIZE_MAX),
        count_max: LOG_READ_ENTRIES_MAX,
    }
}

/// Instance 0 is no position: read it as the log's start.
fn normalized(from: Position) -> Position {
    if from.instance.0 == 0 {
        Position::START
    } else {
        from
    }
}

/// The values of `slots` (chosen entries by consecutive instance from
/// `from.instance`, through `through` at most) from `from` on, bounded; `next` after
/// what was returned or passed. `through` is the last instance the slots can reach:
/// when they end there, `next` is right after it.
fn collect<'a>(
    group: &Group,
    from: Position,
    size_max: usize,
    slots: impl Iterator<Item = (Instance, &'a Entry)>,
    through: Instance,
) -> Result<LogRead, LogReadRefused> {
    let size_max = size_max.min(LOG_READ_SIZE_MAX);
    let mut entries = Vec::new();
    let mut size = 0usize;
    let mut next = from;
    for (instance, entry) in slots {
        if instance > through {
            break;
        }
        let skipped = group
            .skipped(instance, entry)
            .ok_or(LogReadRefused::Truncated {
                first_available: group.log_readable_from(),
            })?;
        if let (Body::Values(values), false) = (&entry.body, skipped) {
            let first = if instance == from.instance {
                from.index
            } else {
                0
            };
            for (index, value) in values.iter().enumerate().skip(first as usize) {
                let full = entries.len() >= LOG_READ_ENTRIES_MAX
                    || (!entries.is_empty() && size + value.len() > size_max);
                if full {
                    return Ok(LogRead {
                        entries,
                        next: Position {
                            instance,
                            index: index as u32,
                        },
                        chosen_through: group.chosen_through(),
                    });
                }
                size += value.len();
                entries.push(LogEntry {
                    position: Position {
                        instance,
                        index: index as u32,
                    },
                    value: value.clone(),
                });
            }
        }
        next = Position::at(instance.next());
    }
    Ok(LogRead {
        entries,
        next,
        chosen_through: group.chosen_through(),
    })
}

#[cfg(test)]
mod tests {
    use super::{
        Decision, LogEntry, LogRead, LogReadAsk, LogReadId, LogReadRefused, LogReads, Position,
        LOG_READS_WAITING_COUNT_MAX, LOG_READ_WAL_RETRIES_MAX,
    };
    use crate::paxos::{
        Ballot, Body, CheckpointBase, Entry, Group, GroupConfig, GroupId, Instance, Membership,
        Nanos, NodeId, Restore, WalReadOutcome,
    };
    use bytes::Bytes;
    use std::collections::BTreeMap;

    fn ballot(round: u64) -> Ballot {
        Ballot {
            round,
            node: NodeId(1),
        }
    }

    fn values(round: u64, values: &[&'static str]) -> Entry {
        Entry {
            origin: ballot(round),
            body: Body::Values(
                values
                    .iter()
                    .map(|v| Bytes::from_static(v.as_bytes()))
                    .collect(),
            ),
        }
    }

    /// 1: [a, b]; 2: StartWorking at round 2; 3: [ghost] from round 1 (skipped);
    /// 4: [c, dd, eee]; 5: no-op; 6: [f].
    fn log() -> BTreeMap<Instance, Entry> {
        let control = |body| Entry {
            origin: ballot(2),
            body,
        };
        [
            values(1, &["a", "b"]),
            control(Body::StartWorking),
            values(1, &["ghost"]),
            values(2, &["c", "dd", "eee"]),
            control(Body::Noop),
            values(2, &["f"]),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, entry)| (Instance(i as u64 + 1), entry))
        .collect()
    }

    fn group(retention: u64, checkpoint: Option<CheckpointBase>) -> Group {
        let membership = Membership::new(vec![NodeId(1), NodeId(2), NodeId(3)]);
        let mut config = GroupConfig::new(NodeId(1), GroupId(7), membership);
        config.retention_instances_max = retention;
        let restore = Restore {
            learned: log(),
            chosen_through: Instance(6),
            checkpoint,
            ..Restore::default()
        };
        Group::new(config, restore, Nanos(0))
    }

    fn at(instance: u64, index: u32) -> Position {
        Position {
            instance: Instance(instance),
            index,
        }
    }

    fn ask(id: u64, from: Position, size_max: usize) -> LogReadAsk {
        LogReadAsk {
            id: LogReadId(id),
            group: GroupId(7),
            from,
            size_max,
            wait_until: None,
        }
    }

    fn done(decision: Decision) -> Result<LogRead, LogReadRefused> {
        match decision {
            Decision::Done(done) => done.outcome,
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    fn texts(read: &LogRead) -> Vec<(Position, &str)> {
        read.entries
            .iter()
            .map(|e: &LogEntry| (e.position, std::str::from_utf8(&e.value).unwrap()))
            .collect()
    }

    // Goal: a read from memory returns the applied values in order with their positions,
    // leaves out control and skipped entries, starts inside a batch, keeps its byte
    // limit (one value at least), and answers at once or waits past the watermark.
    // Method: a group restored with six chosen instances; reads from several positions.
    #[test]
    fn reads_from_memory() {
        let group = group(4_096, None);
        let mut reads = LogReads::default();
        let whole = done(reads.on_ask(ask(1, Position::START, 1 << 20), Some(&group), 4)).unwrap();
        assert_eq!(
            texts(&whole),
            vec![
                (at(1, 0), "a"),
                (at(1, 1), "b"),
                (at(4, 0), "c"),
                (at(4, 1), "dd"),
                (at(4, 2), "eee"),
                (at(6, 0), "f")
            ]
        );
        assert_eq!((whole.next, whole.chosen_through), (at(7, 0), Instance(6)));
        let inside = done(reads.on_ask(ask(2, at(4, 1), 1), Some(&group), 4)).unwrap();
        assert_eq!(
            (texts(&inside), inside.next),
            (vec![(at(4, 1), "dd")], at(4, 2))
        );
        let two = done(reads.on_ask(ask(3, at(2, 0), 3), Some(&group), 4)).unwrap();
        assert_eq!(
            (texts(&two), two.next),
            (vec![(at(4, 0), "c"), (at(4, 1), "dd")], at(4, 2))
        );
        let end = done(reads.on_ask(ask(4, at(7, 0), 10), Some(&group), 4)).unwrap();
        assert_eq!((end.entries.len(), end.next), (0, at(7, 0)));
        let zero = done(reads.on_ask(ask(5, at(0, 0), 1), Some(&group), 4)).unwrap();
        assert_eq!(texts(&zero), vec![(at(1, 0), "a")]);
        let missing = reads.on_ask(ask(6, Position::START, 1), None, 4);
        assert_eq!(done(missing), Err(LogReadRefused::NoSuchGroup));
        // Past the watermark with a deadline: it waits, then is answered empty.
        let mut waiting = ask(7, at(7, 0), 10);
        waiting.wait_until = Some(Nanos(100));
        assert!(matches!(
            reads.on_ask(waiting, Some(&group), 4),
            Decision::Waiting
        ));
        assert_eq!(reads.waiting_count(), 1);
        assert!(
            reads.take_ready(&group).is_empty(),
            "nothing chosen at 7 yet"
        );
        assert!(reads.expire(Nanos(99), |_| Instance(6)).is_empty());
        let expired = reads.expire(Nanos(100), |_| Instance(6));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].outcome.as_ref().unwrap().next, at(7, 0));
        reads.invariants(4);
        // A bounded number wait; one more is refused.
        for id in 0..LOG_READS_WAITING_COUNT_MAX as u64 {
            let mut wait = ask(100 + id, at(7, 0), 10);
            wait.wait_until = Some(Nanos(1_000));
            assert!(matches!(
                reads.on_ask(wait, Some(&group), 4),
                Decision::Waiting
            ));
        }
        let mut one_more = ask(99, at(7, 0), 10);
        one_more.wait_until = Some(Nanos(1_000));
        let refused = reads.on_ask(one_more, Some(&group), 4);
        assert_eq!(done(refused), Err(LogReadRefused::Overloaded));
        reads.invariants(4);
    }

    // Goal: below the in-memory log a read goes to the WAL (bounded in number), and its
    // answer is turned into values as a read from memory would be; an empty answer is
    // `Overloaded`, a truncated WAL `Truncated`.
    // Method: retention of 2 instances (floor 5); reads from 1, the WAL's answers fed.
    #[test]
    fn reads_below_memory_go_to_the_wal() {
        let group = group(2, None);
        assert_eq!(group.log_floor(), Instance(5));
        let mut reads = LogReads::default();
        let Decision::Wal(read) = reads.on_ask(ask(1, Position::START, 1 << 20), Some(&group), 2)
        else {
            panic!("expected a WAL read");
        };
        assert_eq!((read.from, read.through), (Instance(1), Instance(4)));
        assert!(matches!(
            reads.on_ask(ask(2, at(2, 0), 9), Some(&group), 2),
            Decision::Wal(_)
        ));
        let third = reads.on_ask(ask(3, at(3, 0), 9), Some(&group), 2);
        assert_eq!(done(third), Err(LogReadRefused::Overloaded));
        assert_eq!(reads.at_wal_count(), 2);
        let found: Vec<Entry> = log()
            .range(..=Instance(4))
            .map(|(_, e)| e.clone())
            .collect();
        let answer = reads
            .on_wal_read_done(LogReadId(1), WalReadOutcome::Entries(found), Some(&group))
            .expect("out at the WAL");
        let answer = done(answer).unwrap();
        assert_eq!(
            texts(&answer),
            vec![
                (at(1, 0), "a"),
                (at(1, 1), "b"),
                (at(4, 0), "c"),
                (at(4, 1), "dd"),
                (at(4, 2), "eee")
            ]
        );
        assert_eq!(answer.next, at(5, 0));
        let truncated = WalReadOutcome::Truncated {
            first_available: Instance(3),
        };
        let answer = reads.on_wal_read_done(LogReadId(2), truncated, Some(&group));
        assert!(matches!(
            done(answer.unwrap()),
            Err(LogReadRefused::Truncated { .. })
        ));
        assert!(reads
            .on_wal_read_done(
                LogReadId(2),
                WalReadOutcome::Entries(Vec::new()),
                Some(&group)
            )
            .is_none());
        let Decision::Wal(_) = reads.on_ask(ask(4, at(1, 1), 9), Some(&group), 2) else {
            panic!("expected a WAL read");
        };
        let truncated = WalReadOutcome::Truncated {
            first_available: Instance(3),
        };
        let answer = reads.on_wal_read_done(LogReadId(4), truncated, Some(&group));
        assert_eq!(
            done(answer.unwrap()),
            Err(LogReadRefused::Truncated {
                first_available: Instance(3)
            })
        );
        reads.invariants(2);
    }

    // Goal: an empty WAL answer (the executor had no room) sends the same read to the
    // WAL again, still counted among those out, `LOG_READ_WAL_RETRIES_MAX` times, then
    // answers `Overloaded`; one that finds the values after a retry serves them.
    // Method: two reads below memory; the first answered empty until refused, the
    // second empty once and then with the values.
    #[test]
    fn an_empty_wal_answer_is_sent_again_then_refused() {
        let group = group(2, None);
        let mut reads = LogReads::default();
        let Decision::Wal(first) = reads.on_ask(ask(1, at(4, 1), 9), Some(&group), 2) else {
            panic!("expected a WAL read");
        };
        let empty = || WalReadOutcome::Entries(Vec::new());
        for retry in 1..=LOG_READ_WAL_RETRIES_MAX {
            let again = reads.on_wal_read_done(LogReadId(1), empty(), Some(&group));
            let Some(Decision::Wal(again)) = again else {
                panic!("retry {retry}: expected the WAL read again");
            };
            assert_eq!(again, first);
            assert_eq!(reads.at_wal_count(), 1);
            reads.invariants(1);
        }
        let refused = reads.on_wal_read_done(LogReadId(1), empty(), Some(&group));
        assert_eq!(done(refused.unwrap()), Err(LogReadRefused::Overloaded));
        assert_eq!(reads.at_wal_count(), 0);
        let Decision::Wal(_) = reads.on_ask(ask(2, at(4, 1), 9), Some(&group), 2) else {
            panic!("expected a WAL read");
        };
        let again = reads.on_wal_read_done(LogReadId(2), empty(), Some(&group));
        assert!(matches!(again, Some(Decision::Wal(_))));
        let found = vec![log()[&Instance(4)].clone()];
        let answer =
            reads.on_wal_read_done(LogReadId(2), WalReadOutcome::Entries(found), Some(&group));
        let answer = done(answer.unwrap()).unwrap();
        assert_eq!(texts(&answer), vec![(at(4, 1), "dd"), (at(4, 2), "eee")]);
        assert_eq!(
            reads.counters.wal_retried,
            u64::from(LOG_READ_WAL_RETRIES_MAX) + 1
        );
        let counters = &reads.counters;
        assert_eq!((counters.served, counters.served_from_wal), (1, 1));
        assert_eq!((counters.refused, counters.refused_overloaded), (1, 1));
        reads.invariants(2);
    }

    // Goal: a group restored from a checkpoint at C reads from C + 1 (skip decisions
    // from the checkpoint's StartWorking ballot) and answers `Truncated` below.
    // Method: the same log restored with a checkpoint at 3 (after the StartWorking).
    #[test]
    fn below_a_restored_checkpoint_is_truncated() {
        let base = CheckpointBase {
            through: Instance(3),
            checksum: 0,
            start_working_applied: ballot(2),
            configs: vec![(
                Instance(1),
                Membership::new(vec![NodeId(1), NodeId(2), NodeId(3)]),
            )],
        };
        let group = group(4_096, Some(base));
        assert_eq!(group.log_readable_from(), Instance(4));
        let mut reads = LogReads::default();
        for from in [Position::START, at(3, 0)] {
            let refused = done(reads.on_ask(ask(1, from, 10), Some(&group), 2));
            assert_eq!(
                refused,
                Err(LogReadRefused::Truncated {
                    first_available: Instance(4)
                })
            );
        }
        let read = done(reads.on_ask(ask(2, at(4, 0), 1 << 20), Some(&group), 2)).unwrap();
        assert_eq!(
            texts(&read),
            vec![
                (at(4, 0), "c"),
                (at(4, 1), "dd"),
                (at(4, 2), "eee"),
                (at(6, 0), "f")
            ]
        );
    }

    // Goal: once the WAL of a group is released through W, a read from W or below is
    // answered `Truncated` at W + 1 without a WAL read, also when its group holds more
    // (the watermark only rises), and a read above W is served as before.
    // Method: the restored group of the test above (readable from 4); released through
    // 4, then through 2.
    #[test]
    fn below_the_wal_truncation_is_truncated() {
        let base = CheckpointBase {
            through: Instance(3),
            checksum: 0,
            start_working_applied: ballot(2),
            configs: vec![(
                Instance(1),
                Membership::new(vec![NodeId(1), NodeId(2), NodeId(3)]),
            )],
        };
        let group = group(4_096, Some(base));
        let mut reads = LogReads::default();
        reads.on_wal_released(GroupId(7), Instance(4));
        reads.on_wal_released(GroupId(7), Instance(2));
        for from in [Position::START, at(3, 0), at(4, 1)] {
            let refused = done(reads.on_ask(ask(1, from, 10), Some(&group), 2));
            assert_eq!(
                refused,
                Err(LogReadRefused::Truncated {
                    first_available: Instance(5)
                })
            );
        }
        assert_eq!(reads.counters.wal, 0);
        let read = done(reads.on_ask(ask(2, at(5, 0), 1 << 20), Some(&group), 2)).unwrap();
        assert_eq!(texts(&read), vec![(at(6, 0), "f")]);
    }
}
