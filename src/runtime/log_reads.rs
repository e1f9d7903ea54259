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
//! checkpoint the group was restored from) the answer is `Truncated`.
//!
//! Invariants:
//! - an answer holds values of consecutive positions from the one asked, at most
//!   `LOG_READ_ENTRIES_MAX` of them and at most the size asked (at least one value
//!   when there is one), and `next` is the position right after the last value it
//!   holds (or after the control entries it passed);
//! - at most `ShardConfig::log_reads_wal_count_max` reads are out at the WAL per
//!   shard, and at most `LOG_READS_WAITING_COUNT_MAX` wait for new values: more are
//!   refused `Overloaded`;
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
    /// Reads out at the WAL, by id.
    at_wal: BTreeMap<LogReadId, LogReadAsk>,
    /// Reads waiting for their group to choose a value at their position.
    waiting: BTreeMap<GroupId, Vec<LogReadAsk>>,
    waiting_count: usize,
    /// Waiting reads by deadline.
    deadlines: BTreeSet<(Nanos, LogReadId)>,
    /// Reads answered (values or not), refused, and sent to the WAL.
    pub counters: LogReadCounters,
}

/// Counters of a shard's log reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogReadCounters {
    /// Reads answered with values (possibly none).
    pub served: u64,
    /// Reads refused (`Truncated`, `Overloaded`, `NoSuchGroup`).
    pub refused: u64,
    /// Reads that went to the WAL.
    pub wal: u64,
    /// Reads that waited for new values.
    pub waited: u64,
}

impl LogReads {
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
        let readable_from = group.log_readable_from();
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
        self.at_wal.insert(ask.id, ask);
        self.counters.wal += 1;
        Decision::Wal(WalRead {
            group: ask.group,
            reader: crate::paxos::WalReader::Log(ask.id.0),
            from: from.instance,
            through: Instance(group.log_floor().0 - 1),
            size_max: ask.size_max.min(LOG_READ_SIZE_MAX),
            count_max: LOG_READ_ENTRIES_MAX,
        })
    }

    /// The WAL read of log read `id` returned: the values it found (from the read's
    /// first instance, consecutive), answered as a read from memory would be. `None`
    /// when no such read is out (answered before a restart of the executor's view).
    pub fn on_wal_read_done(
        &mut self,
        id: LogReadId,
        outcome: WalReadOutcome,
        group: Option<&Group>,
    ) -> Option<LogReadDone> {
        let ask = self.at_wal.remove(&id)?;
        let Some(group) = group else {
            return Some(self.answer(&ask, Err(LogReadRefused::NoSuchGroup)));
        };
        let readable_from = group.log_readable_from();
        let outcome = match outcome {
            WalReadOutcome::Truncated { first_available } => Err(LogReadRefused::Truncated {
                first_available: first_available.max(readable_from),
            }),
            // The filters moved up meanwhile (`FILTERS_COUNT_MAX` leader changes).
            WalReadOutcome::Entries(_) if ask.from.instance < readable_from => {
                Err(LogReadRefused::Truncated {
                    first_available: readable_from,
                })
            }
            // The executor had no room for the read (or the WAL lacks the records):
            // nothing to return, the caller retries.
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
        Some(self.answer(&ask, outcome))
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
        match outcome {
            Ok(_) => self.counters.served += 1,
            Err(_) => self.counters.refused += 1,
        }
        LogReadDone {
            id: ask.id,
            group: ask.group,
            outcome,
        }
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
