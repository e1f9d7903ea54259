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
//! A disk failure keeps what the OS said typed ([`DiskError`]: the `io::ErrorKind`, the
//! errno, the file), so that a program can tell a full disk from a failing one without
//! parsing text; it becomes text only when displayed (the log, the status on the wire).
//!
//! Invariants:
//! - the latch keeps the FIRST stop reported and never forgets it; later stops are
//!   only counted;
//! - a shard reports its stop BEFORE it answers its waiting callers `Stopped`, so a
//!   caller that sees `Stopped` from a dead shard can read why from the latch.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::paxos::NodeId;
use crate::wal::group_commit::AppendError;
use crate::wal::store::StoreError;

/// A failed disk call, as the OS reported it: typed, comparable and cloneable (an
/// `io::Error` is neither), turned into text only by `Display`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskError {
    /// The call that failed, as the WAL names it (`write`, `sync`, `open`, `zero-fill`,
    /// `sync directory`, ...).
    pub call: &'static str,
    /// The file or directory it was made on, when known.
    pub path: Option<PathBuf>,
    /// The error's kind (`ErrorKind::StorageFull` for ENOSPC, `ReadOnlyFilesystem`, ...).
    pub kind: io::ErrorKind,
    /// The OS error number (errno), when the OS gave one (`None` for a short write or a
    /// record that does not decode: the WAL's own findings).
    pub errno: Option<i32>,
    /// The error's own message (`No space left on device (os error 28)`, `short write:
    /// 0 of 8192 bytes at 4096`).
    pub detail: String,
}

impl DiskError {
    /// The parts of `error`, raised by `call` on `path`.
    #[must_use]
    pub fn from_io(call: &'static str, path: Option<&Path>, error: &io::Error) -> DiskError {
        DiskError {
            call,
            path: path.map(Path::to_path_buf),
            kind: error.kind(),
            errno: error.raw_os_error(),
            detail: error.to_string(),
        }
    }
}

impl From<&StoreError> for DiskError {
    fn from(error: &StoreError) -> DiskError {
        match error {
            StoreError::Io { op, path, error } => DiskError::from_io(op, Some(path), error),
            // The WAL's own findings on bytes it read back: no OS error, no single file
            // to name beyond the segment in the message.
            StoreError::CatchUpMismatch { .. } | StoreError::CompactionRead { .. } => DiskError {
                call: "read",
                path: None,
                kind: io::ErrorKind::InvalidData,
                errno: None,
                detail: error.to_string(),
            },
        }
    }
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{} {}: {}", self.call, path.display(), self.detail),
            None => write!(f, "{}: {}", self.call, self.detail),
        }
    }
}

impl std::error::Error for DiskError {}

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
    /// Truncating the WAL below the groups' durable checkpoints (`Store::truncate`:
    /// reading the records to carry forward, recycling or deleting segments).
    Truncate,
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
            DiskOperation::Truncate => write!(f, "WAL truncation"),
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
        /// What the OS said: the call, the file, the error kind and number.
        error: DiskError,
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
                error: DiskError::from_io(
                    "write",
                    Some(Path::new("/data/shard-000-00000007.wal")),
                    &io::Error::from_raw_os_error(28),
                ),
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
             write /data/shard-000-00000007.wal: No space left on device (os error 28)"
        );
    }

    // Goal: a disk error keeps the OS's kind, errno and file typed, from an io::Error
    // and from the store's error alike; the WAL's own findings carry no errno.
    // Method: build each from known errors and compare fields and text.
    #[test]
    fn disk_error_keeps_kind_errno_and_path() {
        let path = PathBuf::from("/data/shard-001-00000002.wal");
        let store = StoreError::Io {
            op: "sync",
            path: path.clone(),
            error: io::Error::from_raw_os_error(5),
        };
        let error = DiskError::from(&store);
        assert_eq!(error.call, "sync");
        assert_eq!(error.path.as_deref(), Some(path.as_path()));
        assert_eq!(error.errno, Some(5));
        assert_eq!(error.kind, io::Error::from_raw_os_error(5).kind());
        assert_eq!(
            error.to_string(),
            format!(
                "sync {}: {}",
                path.display(),
                io::Error::from_raw_os_error(5)
            )
        );
        let short = io::Error::other("short write: 0 of 4096 bytes at 0");
        let error = DiskError::from_io("write", None, &short);
        assert_eq!((error.kind, error.errno), (io::ErrorKind::Other, None));
        assert_eq!(
            error.to_string(),
            "write: short write: 0 of 4096 bytes at 0"
        );
        let mismatch = StoreError::CatchUpMismatch {
            segment: 3,
            file_offset: 8192,
            instance: crate::paxos::Instance(9),
        };
        let error = DiskError::from(&mismatch);
        assert_eq!(
            (error.kind, error.errno, error.path),
            (io::ErrorKind::InvalidData, None, None)
        );
    }
}
