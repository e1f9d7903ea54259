//! The embedding surface: [`Node::start`] with a [`Config`] and a state machine
//! factory, and a [`NodeHandle`] that proposes and reads from any thread or async
//! runtime.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use synod::api::{Config, Node};
//! use synod::paxos::{GroupId, NodeId};
//!
//! let nodes: BTreeMap<NodeId, std::net::SocketAddr> = [
//!     (NodeId(1), "127.0.0.1:7001".parse().unwrap()),
//!     (NodeId(2), "127.0.0.1:7101".parse().unwrap()),
//!     (NodeId(3), "127.0.0.1:7201".parse().unwrap()),
//! ]
//! .into();
//! let config = Config::new(NodeId(1), 42, nodes, "/var/lib/synod".into());
//! let node = Node::start(config, synod::runtime::driver::null_factory()).unwrap();
//! let handle = node.handle();
//! let proposed = futures_lite::future::block_on(handle.propose(GroupId(0), b"x".to_vec()));
//! # drop(proposed);
//! node.shutdown();
//! ```
//!
//! Every value has a [`Position`] in its group's log (`Proposed::position`), and the
//! log reads back on any replica, followers included: [`NodeHandle::read_log`] (a
//! bounded batch from a position), [`NodeHandle::read_log_wait`] (the same, waiting
//! for a value to be chosen there) and [`NodeHandle::subscribe`] (every value from a
//! position on, each once, with backpressure).
//!
//! A shard that stops for good (its WAL failed: a write, an fdatasync, a full disk; or
//! its thread panicked) does not come back, and the node does not limp on without it:
//! [`Node::fatal`] and [`Node::wait_fatal`] tell the embedding program at once, with
//! the shard and the reason ([`ShardStopped`]). The program should then end the node
//! ([`Node::shutdown`] does not wait on the dead shard) and exit or restart it: the
//! other nodes take over its groups by election, as after a crash. `synod serve` exits
//! non-zero.
//!
//! Invariants:
//! - `Node::start` returns only once every shard has recovered its WAL and listens;
//! - a data directory belongs to one (cluster, node, shard count): another
//!   configuration is refused rather than mixed in (`synod.id`);
//! - every request resolves: with its outcome, or `Error::Stopped` once the node (or
//!   the request's shard) stops; a request to a shard that has stopped is answered
//!   `Stopped` at once, never queued;
//! - the first fatal stop of a shard is latched in the node (`Node::fatal`) no later
//!   than its waiting callers are answered `Stopped` (a panic: just after).

mod config;
pub mod metrics;

pub use crate::runtime::checkpoints::CheckpointPolicy;
pub use crate::runtime::driver::ShardStartError;
pub use crate::runtime::fatal::{DiskError, DiskOperation, Fatal, ShardStopped};
pub use crate::runtime::log_reads::{LogEntry, LogRead, Position};
pub use crate::runtime::net::PeerLink;
pub use crate::runtime::request::{
    CatchUpStatus, Error, GroupStatus, LogMemory, MembershipChange, Proposed, RecoveryReport,
    ShardMetrics, ShardStatus,
};
pub use crate::runtime::state_machine::{CheckpointImage, StateMachine, StateMachineFactory};
pub use config::{Config, ConfigError, InitialState};

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::paxos::{GroupId, NodeId};
use crate::runtime::driver::{self, ShardThread};
use crate::runtime::fatal::FatalLatch;
use crate::runtime::mailbox::{oneshot, Mailbox, PushError, Sender};
use crate::runtime::request::{caller_span, Request};
use crate::runtime::shard_of;

/// Why a node could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// The data directory cannot be used: `operation` on `path` failed.
    DataDir {
        /// What was being done: `create`, `read`, `write` or `sync`.
        operation: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// What the OS said (its kind tells a missing directory from a read-only one).
        cause: std::io::Error,
    },
    /// The data directory belongs to another cluster, node or shard count: its
    /// identity file holds `found` where this node is `expected`.
    ForeignDataDir {
        /// The identity file.
        path: std::path::PathBuf,
        /// What it holds (one line).
        found: String,
        /// What this node's configuration says (one line).
        expected: String,
    },
    /// A shard could not start (its data directory, recovery, a group's configuration,
    /// the listening address, the executor).
    Shard {
        /// The shard.
        shard: u16,
        /// Why, typed (a disk failure keeps its `io::ErrorKind`, errno and file).
        reason: ShardStartError,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(error) => write!(f, "invalid configuration: {error}"),
            StartError::DataDir {
                operation,
                path,
                cause,
            } => write!(f, "data directory: {operation} {}: {cause}", path.display()),
            StartError::ForeignDataDir {
                path,
                found,
                expected,
            } => write!(
                f,
                "data directory: {} holds {found:?}, but this node is configured as \
                 {expected:?}; refusing to mix them",
                path.display()
            ),
            StartError::Shard { shard, reason } => write!(f, "shard {shard}: {reason}"),
        }
    }
}

impl std::error::Error for StartError {}

struct Shared {
    /// The node's id (labels the metrics).
    node: crate::paxos::NodeId,
    mailboxes: Vec<Mailbox<Request>>,
    latch: Arc<FatalLatch>,
}

/// A cloneable, `Send + Sync` handle to a running node.
#[derive(Clone)]
pub struct NodeHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("shards", &self.shared.mailboxes.len())
            .finish()
    }
}

/// A running node: owns its shard threads. Dropping it shuts it down.
pub struct Node {
    handle: NodeHandle,
    threads: Mutex<Vec<ShardThread>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("handle", &self.handle)
            .finish()
    }
}

const IDENTITY_FILE: &str = "synod.id";

/// Bytes of values a [`Subscription`] reads at once (beyond the first value).
pub const SUBSCRIPTION_SIZE_MAX: usize = 1 << 20;
/// How long one read of a [`Subscription`] waits in the shard for a new value before
/// it asks again.
const SUBSCRIPTION_WAIT: Duration = Duration::from_secs(1);

/// The values of a group's log from a position on, in order, each once
/// ([`NodeHandle::subscribe`]). Take them with [`Subscription::next`], or as a
/// `futures` stream with [`Subscription::into_stream`].
#[derive(Debug)]
pub struct Subscription {
    handle: NodeHandle,
    group: GroupId,
    /// The position of the first value not yet read from the node.
    next: Position,
    /// Values read and not yet taken, in order.
    batch: std::collections::VecDeque<LogEntry>,
    ended: bool,
}

impl Subscription {
    /// The next value of the log, waiting for it to be chosen; `None` once the
    /// subscription ended (after a `Truncated`, `NoSuchGroup` or `Stopped` error,
    /// which it returns first). Any other error (`Overloaded`) leaves the
    /// subscription where it was: calling `next` again retries (back off first).
    pub async fn next(&mut self) -> Option<Result<LogEntry, Error>> {
        loop {
            if let Some(entry) = self.batch.pop_front() {
                return Some(Ok(entry));
            }
            if self.ended {
                return None;
            }
            let read = self
                .handle
                .read_log_wait(
                    self.group,
                    self.next,
                    SUBSCRIPTION_SIZE_MAX,
                    SUBSCRIPTION_WAIT,
                )
                .await;
            match read {
                Ok(read) => {
                    assert!(
                        read.next >= self.next,
                        "log read went back from {} to {}",
                        self.next,
                        read.next
                    );
                    self.next = read.next;
                    self.batch.extend(read.entries);
                }
                Err(error) => {
                    self.ended = matches!(
                        error,
                        Error::Truncated { .. } | Error::NoSuchGroup { .. } | Error::Stopped
                    );
                    return Some(Err(error));
                }
            }
        }
    }

    /// The position of the next value [`Subscription::next`] returns (after the
    /// values already read and not yet taken).
    #[must_use]
    pub fn position(&self) -> Position {
        self.batch.front().map_or(self.next, |entry| entry.position)
    }

    /// The subscription as a `futures` stream (`futures_lite::Stream`).
    pub fn into_stream(self) -> impl futures_lite::Stream<Item = Result<LogEntry, Error>> {
        futures_lite::stream::unfold(self, |mut subscription| async move {
            let item = subscription.next().await?;
            Some((item, subscription))
        })
    }
}

/// Whether `dir` belongs to a node already (holds its identity, `synod.id`). A
/// directory that does not (missing, or empty of state) is what
/// [`Config::initial_state`] is about: a new member starting fresh, or an existing
/// member that lost its data. A program that cannot tell which should refuse to start
/// rather than guess (`synod serve` requires `--new` or `--existing` then).
///
/// # Errors
///
/// The directory cannot be examined (permissions, I/O).
pub fn data_dir_claimed(dir: &std::path::Path) -> std::io::Result<bool> {
    dir.join(IDENTITY_FILE).try_exists()
}

/// Checks (or, on first start, writes) the data directory's identity. Returns whether
/// the directory was empty of state while the configuration says the node is an
/// existing member: it then lost its log and rejoins as a learner.
fn claim_data_dir(config: &Config) -> Result<bool, StartError> {
    let dir = &config.data_dir;
    let fail = |operation: &'static str, cause: std::io::Error| StartError::DataDir {
        operation,
        path: dir.clone(),
        cause,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("create", e))?;
    let identity = format!(
        "cluster {}\nnode {}\nshards {}\n",
        config.cluster, config.node.0, config.shards
    );
    let path = dir.join(IDENTITY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(found) if found == identity => Ok(false),
        Ok(found) => Err(StartError::ForeignDataDir {
            path,
            found: found.trim().replace('\n', ", "),
            expected: identity.trim().replace('\n', ", "),
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut file = std::fs::File::create(&path).map_err(|e| fail("write", e))?;
            file.write_all(identity.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| fail("write", e))?;
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| fail("sync", e))?;
            Ok(config.initial_state == InitialState::Existing)
        }
        Err(error) => Err(fail("read", error)),
    }
}

impl Node {
    /// Validates `config`, proves the data directory writable (each shard writes,
    /// fdatasyncs and removes a probe file with the WAL's O_DIRECT I/O), recovers every
    /// shard's WAL, starts the shard threads and their peer links, and returns once all
    /// of them run.
    ///
    /// # Errors
    ///
    /// An invalid configuration (which field, which value, why), a data directory of
    /// another node or one that is not writable (a read-only filesystem), or a shard
    /// that could not start.
    pub fn start(config: Config, factory: StateMachineFactory) -> Result<Node, StartError> {
        config.validate().map_err(StartError::Config)?;
        let lost_state = claim_data_dir(&config)?;
        let latch = Arc::new(FatalLatch::default());
        let mut mailboxes = Vec::new();
        let mut threads = Vec::new();
        for shard in 0..config.shards {
            let mailbox = Mailbox::new(config.mailbox_capacity);
            let plan = config.shard_plan(shard, lost_state);
            match driver::spawn(
                plan,
                Arc::clone(&factory),
                mailbox.clone(),
                Arc::clone(&latch),
            ) {
                Ok(thread) => {
                    mailboxes.push(mailbox);
                    threads.push(thread);
                }
                Err(reason) => {
                    for mailbox in &mailboxes {
                        let _ = mailbox.push_control(Request::Abort);
                    }
                    for thread in threads {
                        let _ = thread.join();
                    }
                    return Err(StartError::Shard { shard, reason });
                }
            }
        }
        Ok(Node {
            handle: NodeHandle {
                shared: Arc::new(Shared {
                    node: config.node,
                    mailboxes,
                    latch,
                }),
            },
            threads: Mutex::new(threads),
        })
    }

    /// A handle for proposing and reading.
    #[must_use]
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// The first shard of this node that stopped for good, and why; `None` while every
    /// shard runs (or stopped only because it was asked to). Once `Some`, the node
    /// serves only part of its groups: end it (`shutdown`) and exit or restart.
    #[must_use]
    pub fn fatal(&self) -> Option<ShardStopped> {
        self.handle.fatal()
    }

    /// Blocks until a shard of this node stops for good (or `timeout` passes:
    /// `None` then; `timeout: None` waits without bound) and returns the first such
    /// stop. Returns at once if one already happened.
    #[must_use]
    pub fn wait_fatal(&self, timeout: Option<Duration>) -> Option<ShardStopped> {
        self.handle.wait_fatal(timeout)
    }

    /// Stops taking requests, lets proposals in flight finish (up to the drain
    /// timeout), closes links and WALs, and waits for the shard threads. Returns the
    /// fatal stops of shards that stopped abnormally. Shards that already stopped
    /// (a failure, a panic) are not waited on.
    pub fn shutdown(self) -> Vec<ShardStopped> {
        futures_lite::future::block_on(self.handle.shutdown());
        self.join()
    }

    /// Stops every shard at once, as a crash would: nothing is drained, flushed or
    /// answered beyond `Error::Stopped`. For tests and benchmarks of recovery.
    pub fn abort(self) -> Vec<ShardStopped> {
        for mailbox in &self.handle.shared.mailboxes {
            let _ = mailbox.push_control(Request::Abort);
        }
        self.join()
    }

    fn join(&self) -> Vec<ShardStopped> {
        let threads = std::mem::take(
            &mut *self
                .threads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        threads
            .into_iter()
            .filter_map(|thread| thread.join().err())
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let running = !self
            .threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty();
        if running {
            futures_lite::future::block_on(self.handle.shutdown());
            for error in self.join() {
                log::error!("{error}");
            }
        }
    }
}

impl NodeHandle {
    fn mailbox(&self, group: GroupId) -> &Mailbox<Request> {
        let count = self.shared.mailboxes.len() as u16;
        &self.shared.mailboxes[usize::from(shard_of(group, count))]
    }

    /// Replicates `value` in `group`. Resolves once the value is chosen and applied on
    /// this node, with its instance and the state machine's output.
    ///
    /// # Errors
    ///
    /// `NotLeader { hint }` (retry at the hint), `Overloaded`, `TooLarge`,
    /// `NoSuchGroup`, `Indeterminate` (leadership changed in flight), `Aborted`,
    /// `Stopped`.
    pub async fn propose(
        &self,
        group: GroupId,
        value: impl Into<Bytes>,
    ) -> Result<Proposed, Error> {
        let value = value.into();
        self.ask(group, |reply, span| Request::Propose {
            group,
            value,
            reply,
            span,
        })
        .await
    }

    /// Hands `group`'s leadership over to node `to`, asked of the node that leads it
    /// (this one). The leader stops taking proposals (they fail with `NotLeader`
    /// naming `to`), lets the values in flight be chosen, steps down and tells `to`
    /// to run its Phase 1 at once (`paxos::leadership`). Resolves once this node
    /// follows `to` as the leader. Asking for this node itself, while it leads, is
    /// done at once.
    ///
    /// # Errors
    ///
    /// `NotLeader { hint }` when this node does not lead the group (ask the hint),
    /// `NoSuchGroup`, `Rejected` (the target is not a voter; a transfer of the group
    /// is already under way; the values in flight were not chosen within an election
    /// timeout, so this node leads on; another replica took over; the target did not
    /// lead within three election timeouts), `Overloaded`, `Stopped`.
    pub async fn transfer_leadership(&self, group: GroupId, to: NodeId) -> Result<(), Error> {
        self.ask(group, |reply, _span| Request::TransferLeadership {
            group,
            to,
            reply,
        })
        .await
    }

    /// Changes `group`'s voters by one, asked of the node that leads it (this one).
    /// An added node must be in every node's address book (`Config::nodes`): links
    /// to every node of the address book are open from the start. The leader holds an
    /// add until the new node has caught up with the log (`paxos::joining`), then
    /// proposes it; resolves once the change is chosen AND in effect (it governs every
    /// instance from the next one on: W instances after the one that chose it, which
    /// an idle leader fills with no-ops). A change already made (the node is already a
    /// voter, or already not one) resolves at once. The leader itself may be removed;
    /// to choose who leads next, transfer its leadership first.
    ///
    /// # Errors
    ///
    /// `NotLeader { hint }` (ask the hint), `NoSuchGroup`, `Rejected` (another change
    /// of the group is under way or queued; not a change of one voter (the group's
    /// membership moved meanwhile); the node is not in the address book; the last
    /// voter; the new voter did not catch up within `paxos::JOIN_ELECTION_TIMEOUTS`
    /// election timeouts; not chosen or not in effect in time), `Indeterminate`
    /// (leadership changed with the change in flight: it may still be chosen),
    /// `Overloaded`, `Stopped`.
    pub async fn change_membership(
        &self,
        group: GroupId,
        change: MembershipChange,
    ) -> Result<(), Error> {
        self.ask(group, |reply, _span| Request::ChangeMembership {
            group,
            change,
            reply,
        })
        .await
    }

    /// Replaces voter `old` of `group` by node `new`: adds `new`, waits until that is
    /// in effect, then removes `old` (two changes of one voter each; the group never
    /// has fewer voters than before). Asked of the leader (when `old` leads, transfer
    /// its leadership first to choose who leads next).
    ///
    /// # Errors
    ///
    /// As [`NodeHandle::change_membership`], from the step that failed: after a failed
    /// removal `new` is a voter and `old` still one (retry the removal).
    pub async fn replace_voter(
        &self,
        group: GroupId,
        old: NodeId,
        new: NodeId,
    ) -> Result<(), Error> {
        self.change_membership(group, MembershipChange::AddVoter(new))
            .await?;
        self.change_membership(group, MembershipChange::RemoveVoter(old))
            .await
    }

    /// A linearizable read: `StateMachine::query(query)` on this node once it is the
    /// leader of `group` under a valid lease and has applied every value chosen
    /// before the read began.
    ///
    /// # Errors
    ///
    /// `NotLeader { hint }` when another node leads, `LeaseNotHeld` when this node
    /// leads but cannot prove it yet, `NoSuchGroup`, `Overloaded`, `Stopped`.
    pub async fn read(&self, group: GroupId, query: impl Into<Bytes>) -> Result<Bytes, Error> {
        let query = query.into();
        self.ask(group, |reply, span| Request::Read {
            group,
            query,
            reply,
            span,
        })
        .await
    }

    /// Reads `group`'s chosen log on this node from `from` (a [`Position`], or an
    /// instance: its first value): the values in log order with their positions, at
    /// most `size_max` bytes of them (at least one value when there is one, however
    /// large) and at most `log_reads::LOG_READ_ENTRIES_MAX`, and the position to ask
    /// for next. Only values the state machine applied: chosen ones (never beyond
    /// this node's chosen watermark), without control entries and without values
    /// chosen too late (`Aborted` for their proposer). Every replica serves it,
    /// followers too (a follower may be behind the leader, never wrong); the values
    /// come from the group's in-memory log or, below it, from the WAL. An empty
    /// answer means nothing is chosen at `from` yet.
    ///
    /// # Errors
    ///
    /// `Truncated { first_available }` when `from` lies below what this node can
    /// read back (the checkpoint it restored covers it), `Overloaded` (too many log
    /// reads at the WAL: retry), `NoSuchGroup`, `Stopped`.
    pub async fn read_log(
        &self,
        group: GroupId,
        from: impl Into<Position>,
        size_max: usize,
    ) -> Result<LogRead, Error> {
        self.read_log_or_wait(group, from.into(), size_max, None)
            .await
    }

    /// [`NodeHandle::read_log`], but when nothing is chosen at `from` yet it waits
    /// (without polling: the shard answers as soon as a value is chosen there) up to
    /// `wait`, then answers with no values.
    ///
    /// # Errors
    ///
    /// As [`NodeHandle::read_log`]; `Overloaded` also when too many reads wait.
    pub async fn read_log_wait(
        &self,
        group: GroupId,
        from: impl Into<Position>,
        size_max: usize,
        wait: Duration,
    ) -> Result<LogRead, Error> {
        self.read_log_or_wait(group, from.into(), size_max, Some(wait))
            .await
    }

    async fn read_log_or_wait(
        &self,
        group: GroupId,
        from: Position,
        size_max: usize,
        wait: Option<Duration>,
    ) -> Result<LogRead, Error> {
        self.ask(group, |reply, span| Request::ReadLog {
            group,
            from,
            size_max,
            wait,
            reply,
            span,
        })
        .await
    }

    /// Every value chosen in `group` from `from` on, in log order, each exactly once,
    /// as this node learns them (whoever leads: leader changes do not show). Built on
    /// [`NodeHandle::read_log_wait`]: it reads the next batch (at most
    /// [`SUBSCRIPTION_SIZE_MAX`] bytes) only once the caller has taken the previous
    /// one, so a slow subscriber holds at most one batch and slows nobody else.
    #[must_use]
    pub fn subscribe(&self, group: GroupId, from: impl Into<Position>) -> Subscription {
        Subscription {
            handle: self.clone(),
            group,
            next: from.into(),
            batch: std::collections::VecDeque::new(),
            ended: false,
        }
    }

    /// Hands the request built by `request` (with the caller's span, `caller_span`)
    /// to `group`'s shard (refused with `Overloaded` when its mailbox is full) and
    /// waits for the answer (`Stopped` if the shard stops first).
    async fn ask<T>(
        &self,
        group: GroupId,
        request: impl FnOnce(Sender<Result<T, Error>>, tracing::Span) -> Request,
    ) -> Result<T, Error> {
        let (reply, answer) = oneshot();
        match self.mailbox(group).push(request(reply, caller_span())) {
            Ok(()) => answer.await.unwrap_or(Err(Error::Stopped)),
            Err(PushError::Full(_)) => Err(Error::Overloaded),
            Err(PushError::Closed(_)) => Err(Error::Stopped),
        }
    }

    /// The first shard of the node that stopped for good, and why (see
    /// [`Node::fatal`]).
    #[must_use]
    pub fn fatal(&self) -> Option<ShardStopped> {
        self.shared.latch.first()
    }

    /// Blocks the calling thread until a shard of the node stops for good (see
    /// [`Node::wait_fatal`]).
    #[must_use]
    pub fn wait_fatal(&self, timeout: Option<Duration>) -> Option<ShardStopped> {
        self.shared.latch.wait(timeout)
    }

    /// The status of every shard (groups, roles, watermarks, counters).
    ///
    /// # Errors
    ///
    /// `Stopped` once the node (or one of its shards) stopped.
    pub async fn status(&self) -> Result<Vec<ShardStatus>, Error> {
        let mut statuses = Vec::with_capacity(self.shared.mailboxes.len());
        for mailbox in &self.shared.mailboxes {
            let (reply, answer) = oneshot();
            let span = caller_span();
            if mailbox
                .push_control(Request::Status { reply, span })
                .is_err()
            {
                return Err(Error::Stopped);
            }
            statuses.push(answer.await.map_err(|_| Error::Stopped)?);
        }
        Ok(statuses)
    }

    /// A snapshot of every shard's counters for the node's metrics (the same
    /// `synod serve --metrics-listen` serves): [`metrics::Metrics::encode`] gives the
    /// Prometheus text, or register it as a `prometheus_client` collector. Each shard
    /// answers between two steps of its loop; nothing is counted across cores.
    ///
    /// # Errors
    ///
    /// `Stopped` once the node (or one of its shards) stopped.
    pub async fn metrics(&self) -> Result<metrics::Metrics, Error> {
        Ok(metrics::Metrics {
            node: self.shared.node,
            shards: self.status().await?,
        })
    }

    /// The status of `group` on this node.
    ///
    /// # Errors
    ///
    /// `NoSuchGroup`, `Stopped`.
    pub async fn group_status(&self, group: GroupId) -> Result<GroupStatus, Error> {
        let (reply, answer) = oneshot();
        if self
            .mailbox(group)
            .push_control(Request::Status {
                reply,
                span: caller_span(),
            })
            .is_err()
        {
            return Err(Error::Stopped);
        }
        let status = answer.await.map_err(|_| Error::Stopped)?;
        status
            .groups
            .into_iter()
            .find(|g| g.group == group)
            .ok_or(Error::NoSuchGroup { group })
    }

    /// Asks every shard to stop (draining proposals in flight) and waits until each
    /// has. The shard threads end; the owning [`Node`] joins them.
    pub async fn shutdown(&self) {
        let mut waiting = Vec::new();
        for mailbox in &self.shared.mailboxes {
            let (reply, done) = oneshot();
            if mailbox.push_control(Request::Shutdown { reply }).is_ok() {
                waiting.push(done);
            }
        }
        for done in waiting {
            let _ = done.await;
        }
    }
}
