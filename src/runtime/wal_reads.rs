//! The driver's WAL reads: carries out the shard's `Effects::wal_reads` (catch-up of a
//! peer below a group's in-memory log) on the real WAL, off the write path, and hands
//! back what they found for `ShardInput::WalReadDone`: a peer's read as raw runs of
//! records as they lie in the WAL (never decoded here), a log read as entries.
//!
//! A read is planned (`wal::catch_up::plan`, then `Store::plan_read`) against the
//! store's index while the store is idle in the loop, then runs as a task of its own
//! on files it opens itself (`CatchUpRead::run`): the write task may take the store
//! meanwhile. The shard asks for a read only once the records it covers are durable,
//! so they are written and indexed when it is planned.
//!
//! Invariants:
//! - every read handed in is answered once: with what it found, or at once with no
//!   entries when more than `WAL_READS_WAITING_MAX` wait (the peer asks again), or
//!   with an error, which stops the shard (a WAL read that fails or returns bytes that
//!   are not the indexed record is a disk fault, as a failed write is);
//! - at most `WAL_READS_IN_FLIGHT_MAX` reads run at once; reads wait in arrival order.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;

use super::fatal::{DiskError, DiskOperation, Fatal};
use super::notify::Notify;
use super::shard::ShardInput;
use crate::paxos::{WalRead, WalReadOutcome, WalReader};
use crate::wal::catch_up::{self, ReadPlan};
use crate::wal::store::{CatchUpRead, Store};

/// WAL reads running at once per shard: each reads at most one catch-up chunk
/// (`GroupConfig::message_size_max` bytes), so this bounds the memory they hold and
/// the disk bandwidth they take from the write path.
pub const WAL_READS_IN_FLIGHT_MAX: usize = 4;
/// WAL reads waiting for a slot; beyond it a read is answered at once with no entries.
/// The shard asks at most one per (group, peer), so this is reached only with more
/// than this many groups times peers lagging at once.
pub const WAL_READS_WAITING_MAX: usize = 4_096;

/// What a read found, or why it failed (the shard stops).
pub type WalReadResult = Result<WalReadOutcome, DiskError>;

/// The WAL reads of one shard: waiting, running, and done.
#[derive(Debug, Default)]
pub struct WalReads {
    waiting: VecDeque<WalRead>,
    in_flight: Rc<Cell<usize>>,
    done: Rc<RefCell<Vec<(WalRead, WalReadResult)>>>,
    /// Reads answered empty at once because too many waited.
    pub refused_count: u64,
    /// Reads run against the WAL.
    pub run_count: u64,
    /// Records decoded to answer peers' reads (catch-up streams raw records: stays 0).
    peer_records_decoded: Rc<Cell<u64>>,
    /// Records decoded to answer log reads.
    log_records_decoded: Rc<Cell<u64>>,
}

impl WalReads {
    /// Takes the reads of a flush: they wait for a slot, or are answered empty at
    /// once beyond `WAL_READS_WAITING_MAX`.
    pub fn queue(&mut self, reads: &mut Vec<WalRead>) {
        for read in reads.drain(..) {
            if self.waiting.len() >= WAL_READS_WAITING_MAX {
                self.refused_count += 1;
                let empty = Ok(WalReadOutcome::Entries(Vec::new()));
                self.done.borrow_mut().push((read, empty));
            } else {
                self.waiting.push_back(read);
            }
        }
    }

    /// Plans waiting reads against `store`'s index, up to `WAL_READS_IN_FLIGHT_MAX`
    /// running, and returns their tasks for the caller to spawn; each leaves its
    /// result for `take_done` and wakes the loop through `wake`.
    pub fn start(&mut self, store: &Store, wake: &Rc<Notify>) -> Vec<impl Future<Output = ()>> {
        let mut tasks = Vec::new();
        while self.in_flight.get() < WAL_READS_IN_FLIGHT_MAX {
            let Some(read) = self.waiting.pop_front() else {
                break;
            };
            let plan = catch_up::plan(store.index(), &read);
            let records: Vec<_> = match &plan {
                ReadPlan::Records(records) => records
                    .iter()
                    .map(|(instance, entry)| (read.group, *instance, *entry))
                    .collect(),
                ReadPlan::Truncated { .. } => Vec::new(),
            };
            let io = store.plan_read(&records);
            self.in_flight.set(self.in_flight.get() + 1);
            self.run_count += 1;
            let in_flight = Rc::clone(&self.in_flight);
            let done = Rc::clone(&self.done);
            let wake = Rc::clone(wake);
            let decoded = Rc::clone(match read.reader {
                WalReader::Peer(_) => &self.peer_records_decoded,
                WalReader::Log(_) => &self.log_records_decoded,
            });
            tasks.push(async move {
                let result = run(&read, &plan, io).await.map(|(outcome, count)| {
                    decoded.set(decoded.get() + count as u64);
                    outcome
                });
                in_flight.set(in_flight.get() - 1);
                done.borrow_mut().push((read, result));
                wake.notify();
            });
        }
        tasks
    }

    /// The reads answered since the last call, in completion order: the shard's
    /// `WalReadDone`, or why the shard must stop.
    pub fn take_done(&mut self) -> Vec<Result<ShardInput, Fatal>> {
        let done = std::mem::take(&mut *self.done.borrow_mut());
        done.into_iter()
            .map(|(read, result)| match result {
                Ok(outcome) => Ok(ShardInput::WalReadDone { read, outcome }),
                Err(error) => Err(Fatal::Disk {
                    operation: DiskOperation::CatchUpRead {
                        group: read.group.0,
                        from: read.from.0,
                    },
                    error,
                }),
            })
            .collect()
    }

    /// Reads running (planned against the index, reading files they opened).
    #[must_use]
    pub fn running_count(&self) -> usize {
        self.in_flight.get()
    }

    /// Reads waiting for a slot.
    #[must_use]
    pub fn waiting_count(&self) -> usize {
        self.waiting.len()
    }

    /// Records decoded to answer peers' catch-up reads: 0 while catch-up streams raw
    /// records (the sender neither decodes nor re-encodes them).
    #[must_use]
    pub fn peer_records_decoded(&self) -> u64 {
        self.peer_records_decoded.get()
    }

    /// Records decoded to answer log reads (which return values).
    #[must_use]
    pub fn log_records_decoded(&self) -> u64 {
        self.log_records_decoded.get()
    }
}

/// Reads `plan`'s records and answers `read` with them (`wal::catch_up::answer`: raw
/// runs for a peer, decoded entries for a log read); also how many records it decoded.
async fn run(
    read: &WalRead,
    plan: &ReadPlan,
    io: CatchUpRead,
) -> Result<(WalReadOutcome, usize), DiskError> {
    let records = io.run().await.map_err(|e| DiskError::from(&e))?;
    catch_up::answer(read, plan, &records).map_err(|e| DiskError {
        call: "read catch-up records",
        path: None,
        kind: std::io::ErrorKind::InvalidData,
        errno: None,
        detail: e.to_string(),
    })
}
