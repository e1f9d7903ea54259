//! The log readers: `read_log` calls on random replicas, every draw from their own PRNG
//! stream, checked by `checkers::log_read` against the canonical chosen log.
//!
//! A log read is not a step: the shard is stepped with it (`ShardInput::LogRead`) and
//! its answer taken at once (`Shard::take_log_reads`), without a flush, so the fault
//! run does not move with the log reads (a flush at another time could take a
//! checkpoint at another time). Reads below the in-memory log go to the simulated WAL
//! like a peer's catch-up (`Effects::wal_reads` for `WalReader::Log`, released by the
//! normal flushes once durable), answered after a latency from the same stream, again
//! outside the steps. Reads that wait for a value are answered by a normal flush.
//!
//! Where a read starts: the log's start, a reader's cursor continuing from its last
//! answer (a subscriber), or anywhere up to two instances past the replica's applied
//! watermark (inside a batch too); with a byte limit from one byte to 64 KiB; one in
//! four waits for a value (up to 200 ms).

use std::collections::BTreeMap;

use super::Cluster;
use crate::paxos::{GroupId, WalReadOutcome};
use crate::paxos::{Instance, WalRead, WalReader};
use crate::prng::Prng;
use crate::runtime::log_reads::{LogReadAsk, LogReadDone, LogReadId, Position};
use crate::runtime::{shard_of, ShardInput};
use crate::sim::checkers::{LogReadAnswered, Violation};
use crate::sim::options::SimOptions;
use crate::wal::catch_up;

const MS: u64 = 1_000_000;

/// A log read handed to a shard and not answered yet.
#[derive(Clone, Copy, Debug)]
struct LogReadIssued {
    node: usize,
    group: GroupId,
    from: Position,
    size_max: usize,
    /// Where the replica's WAL index released the group when the read was issued.
    released_at_issue: Instance,
}

/// A log read's WAL read, answered at its time (outside the steps).
#[derive(Clone, Debug)]
struct LogWalRead {
    node: usize,
    shard: usize,
    incarnation: u32,
    read: WalRead,
    outcome: WalReadOutcome,
}

/// The log readers of a cluster.
pub(super) struct LogReaders {
    /// Their own stream, so that the other draws stay where they were.
    prng: Prng,
    /// The mean interval between log reads (from their stream).
    interval_ns: u64,
    /// When the next log read is issued (`None`: off, with the reads).
    next_ns: Option<u64>,
    id_next: u64,
    in_flight: BTreeMap<LogReadId, LogReadIssued>,
    /// Where each (node, group) reader continues (the `next` of its last answer).
    cursors: BTreeMap<(usize, GroupId), Position>,
    /// WAL answers by (due time, sequence).
    wal: BTreeMap<(u64, u64), LogWalRead>,
    wal_seq: u64,
}

impl LogReaders {
    /// The log readers of a run with `options`: on when the reads are.
    pub(super) fn new(options: &SimOptions) -> LogReaders {
        let mut prng = Prng::new(options.seed ^ 0x4c4f_4752_4541_4453);
        let interval_ns = prng.range(2 * MS, 20 * MS);
        LogReaders {
            prng,
            interval_ns,
            next_ns: options.read_interval_ns_mean.map(|_| 0),
            id_next: 1,
            in_flight: BTreeMap::new(),
            cursors: BTreeMap::new(),
            wal: BTreeMap::new(),
            wal_seq: 0,
        }
    }
}

impl Cluster {
    /// When the next log read or log WAL answer is due (`None`: log reads are off).
    pub(super) fn log_read_due(&self) -> Option<u64> {
        let wal = self
            .log_readers
            .wal
            .first_key_value()
            .map(|((at, _), _)| *at);
        match (self.log_readers.next_ns, wal) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the log read or WAL answer due at `self.now`.
    pub(super) fn log_read_event(&mut self) -> Result<(), Violation> {
        let wal_due = self
            .log_readers
            .wal
            .first_key_value()
            .is_some_and(|((at, _), _)| *at <= self.now);
        if wal_due {
            let (_, done) = self.log_readers.wal.pop_first().expect("peeked");
            let node = &self.nodes[done.node];
            if node.up && node.incarnation == done.incarnation {
                let input = ShardInput::WalReadDone {
                    read: done.read,
                    outcome: done.outcome,
                };
                return self.log_read_step(done.node, done.shard, input);
            }
            return Ok(());
        }
        self.issue_log_read()
    }

    fn issue_log_read(&mut self) -> Result<(), Violation> {
        let mean = self.log_readers.interval_ns;
        let gap = self
            .log_readers
            .prng
            .range(mean / 2, mean + mean / 2)
            .max(1);
        self.log_readers.next_ns = Some(self.now + gap);
        let group = self.groups[self.log_readers.prng.index(self.groups.len())];
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|n| self.nodes[*n].up)
            .collect();
        if up.is_empty() {
            return Ok(());
        }
        let node = up[self.log_readers.prng.index(up.len())];
        let Some(applied) = self.group_on(node, group).map(|g| g.applied_through()) else {
            return Ok(());
        };
        let from = match self.log_readers.prng.below(3) {
            0 => Position::START,
            1 => self
                .log_readers
                .cursors
                .get(&(node, group))
                .copied()
                .unwrap_or(Position::START),
            _ => Position {
                instance: Instance(self.log_readers.prng.below(applied.0 + 3)),
                index: self.log_readers.prng.below(3) as u32,
            },
        };
        let size_max = if self.log_readers.prng.below(4) == 0 {
            1 + self.log_readers.prng.below(100) as usize
        } else {
            1 + self.log_readers.prng.below(64 << 10) as usize
        };
        let local = self.nodes[node].clock.local(self.now);
        let wait_until = (self.log_readers.prng.below(4) == 0)
            .then(|| local.plus(1 + self.log_readers.prng.below(200 * MS)));
        let id = LogReadId(self.log_readers.id_next);
        self.log_readers.id_next += 1;
        self.report.log_reads.issued += 1;
        let shard = usize::from(shard_of(group, self.shard_count()));
        // What the WAL's index released at the issue: its read, planned later, answers
        // at or above it (the shard's handed-out watermark may be ahead of the index,
        // which moves once the truncation ran).
        let released_at_issue =
            catch_up::released_through(&self.nodes[node].shards[shard].index, group);
        self.log_readers.in_flight.insert(
            id,
            LogReadIssued {
                node,
                group,
                from,
                size_max,
                released_at_issue,
            },
        );
        let ask = LogReadAsk {
            id,
            group,
            from,
            size_max,
            wait_until,
        };
        self.log_read_step(node, shard, ShardInput::LogRead(ask))
    }

    /// Steps `node`'s `shard` with a log read's input and checks what it answered at
    /// once, without a flush (see the module docs).
    fn log_read_step(
        &mut self,
        node: usize,
        shard: usize,
        input: ShardInput,
    ) -> Result<(), Violation> {
        let local = self.nodes[node].clock.local(self.now);
        let mut answered = Vec::new();
        if let Some(core) = self.nodes[node].shards[shard].shard.as_mut() {
            core.step(local, input);
            core.invariants();
            core.take_log_reads(&mut answered);
        }
        for done in answered {
            self.check_log_read(node, shard, done)?;
        }
        Ok(())
    }

    /// Where `node`'s WAL released `group` now: what its shard handed out for
    /// truncation, or what the WAL's index releases (its floor, or a peer's checkpoint
    /// installed by an earlier incarnation whose saved copy this one could not
    /// restore), whichever is higher.
    fn released_through(&self, node: usize, shard: usize, group: GroupId) -> Instance {
        let slot = &self.nodes[node].shards[shard];
        let handed_out = slot
            .shard
            .as_ref()
            .map_or(Instance(0), |core| core.truncation().watermark(group));
        handed_out.max(catch_up::released_through(&slot.index, group))
    }

    /// Checks one answered log read against the canonical log (`checkers::log_read`).
    pub(super) fn check_log_read(
        &mut self,
        node: usize,
        shard: usize,
        done: LogReadDone,
    ) -> Result<(), Violation> {
        let Some(issued) = self.log_readers.in_flight.remove(&done.id) else {
            return Ok(());
        };
        assert_eq!(
            (issued.node, issued.group),
            (node, done.group),
            "log read answered by another node or group"
        );
        let core = self.nodes[node].shards[shard].shard.as_ref();
        let group = core.and_then(|core| core.group(done.group));
        let applied_through = group.map_or(Instance(0), |g| g.applied_through());
        let log_readable_from = group.map_or(Instance(1), |g| g.log_readable_from());
        let answered = LogReadAnswered {
            node: self.nodes[node].id,
            group: done.group,
            from: issued.from,
            size_max: issued.size_max,
            applied_through,
            log_readable_from,
            handed_out: core.map_or(Instance(0), |core| core.truncation().watermark(done.group)),
            released_at_issue: issued.released_at_issue,
            released_through: self.released_through(node, shard, done.group),
            outcome: &done.outcome,
        };
        self.checkers.observe_log_read(&answered)?;
        if let Ok(read) = &done.outcome {
            self.report.log_reads.values += read.entries.len() as u64;
            self.log_readers
                .cursors
                .insert((node, done.group), read.next);
        }
        let report = &mut self.report.log_reads;
        report.served = self.checkers.log_read.served;
        report.truncated = self.checkers.log_read.truncated;
        report.overloaded = self.checkers.log_read.overloaded;
        Ok(())
    }

    /// A log read's WAL read: read from the disk as it is now (as a peer's catch-up
    /// is, `execute::wal_read`), answered after a latency of the log readers' stream.
    pub(super) fn log_wal_read(
        &mut self,
        node: usize,
        shard: usize,
        read: WalRead,
    ) -> Result<(), Violation> {
        assert!(matches!(read.reader, WalReader::Log(_)));
        let (_, outcome) = self.read_wal_now(node, shard, &read)?;
        self.report.log_reads.wal += 1;
        let latency = self.log_readers.prng.range(
            self.options.disk_write_latency_ns_min,
            self.options.disk_write_latency_ns_max,
        );
        self.log_readers.wal_seq += 1;
        let done = LogWalRead {
            node,
            shard,
            incarnation: self.nodes[node].incarnation,
            read,
            outcome,
        };
        self.log_readers
            .wal
            .insert((self.now + latency, self.log_readers.wal_seq), done);
        Ok(())
    }

    /// Forgets the log reads of a node that crashed (never answered).
    pub(super) fn forget_log_reads(&mut self, node: usize) {
        self.log_readers.in_flight.retain(|_, r| r.node != node);
        self.log_readers.cursors.retain(|(n, _), _| *n != node);
    }
}
