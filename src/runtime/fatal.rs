//! Why a shard stopped for good ([`Fatal`], [`ShardStopped`]), and the [`FatalLatch`]
//! through which a node learns of it the moment it happens.
//!
//! A shard stops for good when its WAL fails (a write, an fdatasync, the preparation
//! of a segment or a catch-up read: never retried, since the page cache may have dropped what it could
//! not write), when the pure shard refuses to go on, or when its thread panics. The
//! node does not limp on without it: it reports the stop, and the embedding program
//! (`synod serve`: the process) ends the node, so that the other nodes take over its
//! groups by election.
//!
//! Invariants:
//! - the latch keeps the FIRST stop reported and never forgets it; later stops are
//!   only counted;
//! - a shard reports its stop BEFORE it answers its waiting callers `Stopped`, so a
//!   caller that sees `Stopped` from a dead shard can read why from the latch.

use std::fmt;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::paxos::NodeId;
use crate::wal::group_commit::AppendError;

/// The WAL operation that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiskOperation {
    /// Writing one batch of `size` bytes holding records through LSN `lsn_through`.
    Write {
        /// Bytes of the batch.
        size: usize,
        /// LSN of its last record.
        lsn_through: u64,
    },
    /// The fdatasync that makes the batch through LSN `lsn_through` durable.
    Sync {
        /// LSN of the batch's last record.
        lsn_through: u64,
    },
    /// Zero-filling or recycling a spare segment ahead of the one being written.
    PrepareSpares,
    /// Reading back `group`'s chosen entries from instance `from` to catch a peer up.
    CatchUpRead {
        /// The group.
        group: u32,
        /// The first instance read.
        from: u64,
    },
}

impl fmt::Display for DiskOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskOperation::Write { size, lsn_through } => {
                write!(f, "write of {size} bytes through LSN {lsn_through}")
            }
            DiskOperation::Sync { lsn_through } => write!(f, "fdatasync through LSN {lsn_through}"),
            DiskOperation::PrepareSpares => write!(f, "spare segment preparation"),
            DiskOperation::CatchUpRead { group, from } => {
                write!(f, "catch-up read of group {group} from instance {from}")
            }
        }
    }
}

/// Why a shard stopped for good.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fatal {
    /// A WAL operation failed (never retried: fsyncgate).
    Disk {
        /// What was being done.
        operation: DiskOperation,
        /// The error, with the file and the OS error number.
        error: String,
    },
    /// A record no WAL batch can hold reached the shard (the configuration let a
    /// value through that the WAL cannot store): nothing after it may be acknowledged.
    Append {
        /// What the WAL planner said, with the sizes.
        error: AppendError,
    },
    /// The shard's thread panicked: a broken invariant (an assertion), or a panic in
    /// the state machine.
    Panic {
        /// The panic's message.
        message: String,
    },
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fatal::Disk { operation, error } => write!(f, "WAL {operation} failed: {error}"),
            Fatal::Append { error } => write!(f, "WAL append failed: {error}"),
            Fatal::Panic { message } => write!(f, "panicked: {message}"),
        }
    }
}

/// Shard `shard` of node `node` stopped for good, for the reason `fatal`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardStopped {
    /// The node.
    pub node: NodeId,
    /// The shard index.
    pub shard: u16,
    /// Why.
    pub fatal: Fatal,
}

impl fmt::Display for ShardStopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node {} shard {} stopped: {}",
            self.node.0, self.shard, self.fatal
        )
    }
}

impl std::error::Error for ShardStopped {}

#[derive(Debug, Default)]
struct Latched {
    first: Option<ShardStopped>,
    count: u64,
}

/// The first fatal stop among a node's shards, latched: shard threads report into it,
/// the node polls it or waits on it. Shared by `Arc`.
#[derive(Debug, Default)]
pub struct FatalLatch {
    latched: Mutex<Latched>,
    changed: Condvar,
}

impl FatalLatch {
    /// Records a stop (only the first is kept) and wakes every waiter.
    pub fn report(&self, stopped: ShardStopped) {
        {
            let mut latched = self.latched.lock().unwrap_or_else(PoisonError::into_inner);
            latched.count += 1;
            if latched.first.is_none() {
                latched.first = Some(stopped);
            }
        }
        self.changed.notify_all();
    }

    /// The first stop reported, if any.
    #[must_use]
    pub fn first(&self) -> Option<ShardStopped> {
        self.latched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .first
            .clone()
    }

    /// How many stops were reported.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.latched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count
    }

    /// Blocks until a stop is reported (or `timeout` passes: `None` then); returns the
    /// first one. `timeout: None` waits without bound.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<ShardStopped> {
        let latched = self.latched.lock().unwrap_or_else(PoisonError::into_inner);
        let latched = match timeout {
            None => self
                .changed
                .wait_while(latched, |l| l.first.is_none())
                .unwrap_or_else(PoisonError::into_inner),
            // The condvar keeps the deadline across spurious wake-ups.
            Some(timeout) => {
                self.changed
                    .wait_timeout_while(latched, timeout, |l| l.first.is_none())
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
        latched.first.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(shard: u16) -> ShardStopped {
        ShardStopped {
            node: NodeId(2),
            shard,
            fatal: Fatal::Disk {
                operation: DiskOperation::Write {
                    size: 8192,
                    lsn_through: 41,
                },
                error: "No space left on device (os error 28)".into(),
            },
        }
    }

    // Goal: the latch keeps the first stop, counts the rest, and wakes a waiter on
    // another thread; a wait with a timeout and no stop returns None.
    // Method: wait 10 ms on an empty latch; wait on a thread while two stops arrive.
    #[test]
    fn latch_keeps_the_first_and_wakes_waiters() {
        let latch = std::sync::Arc::new(FatalLatch::default());
        assert_eq!(latch.wait(Some(Duration::from_millis(10))), None);
        let waiter = {
            let latch = std::sync::Arc::clone(&latch);
            std::thread::spawn(move || latch.wait(None))
        };
        latch.report(stopped(3));
        latch.report(stopped(1));
        assert_eq!(waiter.join().expect("waiter"), Some(stopped(3)));
        assert_eq!(latch.first(), Some(stopped(3)));
        assert_eq!(latch.count(), 2);
        assert_eq!(
            stopped(3).to_string(),
            "node 2 shard 3 stopped: WAL write of 8192 bytes through LSN 41 failed: \
             No space left on device (os error 28)"
        );
    }
}
