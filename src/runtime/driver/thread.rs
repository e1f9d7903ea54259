//! The shard's thread: started pinned to its core, running one glommio executor for
//! the shard loop, and reporting how it ended. `spawn` returns once the shard has
//! recovered its log and listens, or with why it could not start
//! ([`ShardStartError`]); `ShardThread::join` gives the fatal stop, if any.
//!
//! Invariants:
//! - when the thread ends, by any path (a stop, a failure, a panic), the shard's
//!   mailbox is closed (`CloseOnExit`): no request can wait on a shard that no longer
//!   runs;
//! - a panic on the thread is caught at its top and reported to the node's
//!   `FatalLatch` as `Fatal::Panic` at once, like any other fatal stop.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use glommio::{LocalExecutorBuilder, Placement};

use super::start::run;
use super::{refuse, ShardPlan};
use crate::paxos::{GroupId, NodeId};
use crate::runtime::fatal::{DiskError, Fatal, FatalLatch, ShardStopped};
use crate::runtime::mailbox::Mailbox;
use crate::runtime::net::NetError;
use crate::runtime::request::Request;
use crate::runtime::state_machine::StateMachineFactory;
use crate::wal::dma_disk::IO_MEMORY_SIZE;

/// Why a shard could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ShardStartError {
    /// The data directory does not take the WAL's I/O: the probe at start (an O_DIRECT
    /// create, one block written and fdatasynced, its removal, a directory sync) failed.
    NotWritable {
        /// The data directory.
        dir: PathBuf,
        /// The call that failed and what the OS said.
        error: DiskError,
    },
    /// Recovering the WAL, writing the rejoin marker or preparing the segments failed.
    Wal {
        /// The call that failed and what the OS said.
        error: DiskError,
    },
    /// A group's configuration is invalid.
    Group {
        /// The group.
        group: GroupId,
        /// Which field, which value, why.
        reason: String,
    },
    /// The peer links could not start (the listening address).
    Net(NetError),
    /// The glommio executor could not be built.
    Executor {
        /// What glommio said.
        detail: String,
    },
    /// The OS refused a thread for the shard.
    Thread {
        /// What the OS said.
        detail: String,
    },
    /// The shard's thread stopped before it was ready (a panic during recovery).
    Stopped(Fatal),
}

impl fmt::Display for ShardStartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardStartError::NotWritable { dir, error } => {
                write!(
                    f,
                    "data directory {} is not writable: {error}",
                    dir.display()
                )
            }
            ShardStartError::Wal { error } => write!(f, "WAL {error}"),
            ShardStartError::Group { group, reason } => write!(f, "group {}: {reason}", group.0),
            ShardStartError::Net(error) => write!(f, "{error}"),
            ShardStartError::Executor { detail } => write!(f, "executor: {detail}"),
            ShardStartError::Thread { detail } => write!(f, "spawn shard thread: {detail}"),
            ShardStartError::Stopped(fatal) => write!(f, "stopped during start: {fatal}"),
        }
    }
}

impl std::error::Error for ShardStartError {}

/// A running shard thread.
#[derive(Debug)]
pub struct ShardThread {
    join: std::thread::JoinHandle<Result<(), ShardStopped>>,
    node: NodeId,
    shard: u16,
}

impl ShardThread {
    /// Waits for the thread to end; its error is the fatal stop, if any.
    ///
    /// # Errors
    ///
    /// Why the shard stopped abnormally (a failed write, a panic).
    pub fn join(self) -> Result<(), ShardStopped> {
        match self.join.join() {
            Ok(result) => result,
            Err(panic) => Err(ShardStopped {
                node: self.node,
                shard: self.shard,
                fatal: Fatal::Panic {
                    message: panic_message(panic.as_ref()),
                },
            }),
        }
    }
}

/// The message of a panic's payload (`panic!` gives a `String` or a `&str`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "(a panic without a message)".to_string())
}

/// Closes the shard's mailbox when the shard's thread ends, by whatever path (a
/// panic included): requests still queued are answered `Stopped`, later pushes are
/// refused, so no handle waits on a thread that is gone.
struct CloseOnExit(Mailbox<Request>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        for request in self.0.close() {
            refuse(request);
        }
    }
}

/// Starts the shard of `plan` on its own thread and returns once it has recovered its
/// log and listens for peers (or failed to). A fatal stop after that (a failed write,
/// a panic) is reported to `latch` at once.
///
/// # Errors
///
/// Why the shard could not start (the data directory, recovery, a group's
/// configuration, the listening address, the executor, a panic).
pub fn spawn(
    plan: ShardPlan,
    factory: StateMachineFactory,
    mailbox: Mailbox<Request>,
    latch: Arc<FatalLatch>,
) -> Result<ShardThread, ShardStartError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), ShardStartError>>();
    // Node and shard, so that `top -H` and `perf` tell apart the nodes of one process
    // (a Linux thread name holds 15 bytes: "synod-n65535-s9" fits).
    let name = format!("synod-n{}-s{}", plan.net.node.0, plan.shard);
    let executor_name = name.clone();
    let (node, shard) = (plan.net.node, plan.shard);
    let join = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let _close = CloseOnExit(mailbox.clone());
            if let Some(core) = plan.core {
                // Best effort: a core outside the allowed set leaves the thread unpinned.
                if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                    log::warn!("shard {}: could not pin to core {core}", plan.shard);
                }
            }
            let executor = match LocalExecutorBuilder::new(Placement::Unbound)
                .name(&executor_name)
                .io_memory(IO_MEMORY_SIZE)
                .make()
            {
                Ok(executor) => executor,
                Err(error) => {
                    let detail = error.to_string();
                    let _ = ready_tx.send(Err(ShardStartError::Executor { detail }));
                    return Ok(());
                }
            };
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                executor.run(run(plan, factory, mailbox, ready_tx, Arc::clone(&latch)))
            }));
            match ran {
                Ok(result) => result,
                Err(panic) => {
                    let stopped = ShardStopped {
                        node,
                        shard,
                        fatal: Fatal::Panic {
                            message: panic_message(panic.as_ref()),
                        },
                    };
                    latch.report(stopped.clone());
                    Err(stopped)
                }
            }
        })
        .map_err(|error| ShardStartError::Thread {
            detail: error.to_string(),
        })?;
    let thread = ShardThread { join, node, shard };
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(error)) => {
            let _ = thread.join();
            Err(error)
        }
        // Every path that ends the thread normally answers `ready` first: without an
        // answer, it ended by a panic (caught or not), which `join` reports.
        Err(_) => match thread.join() {
            Err(stopped) => Err(ShardStartError::Stopped(stopped.fatal)),
            Ok(()) => unreachable!("a shard thread that ended normally answered `ready`"),
        },
    }
}

/// The calling thread's Linux id: `/proc/thread-self` links to `<pid>/task/<tid>`.
/// Read once at start (a syscall; never on the loop's path).
pub(super) fn current_thread_id() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}
