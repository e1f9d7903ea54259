//! What handles ask of a shard, and what they get back: the vocabulary shared by the
//! driver and the embedding API.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;

use super::histogram::Histogram;
use super::log_reads::{LogRead, LogReadCounters, LogReadRefused, Position};
use super::mailbox::Sender;
use super::net::{NetCounters, PeerLink};
use crate::paxos::{Ballot, GroupId, Instance, NodeId, ProposeError, Role};

/// A value chosen and applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposed {
    /// Where the value lies in the group's log (its instance, and its index among the
    /// values batched into it): `NodeHandle::read_log` returns it there.
    pub position: Position,
    /// What the state machine returned when it applied the value.
    pub output: Bytes,
}

/// One membership change of a group: one voter added or removed
/// (`NodeHandle::change_membership`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add this node (in every node's address book) as a voter.
    AddVoter(NodeId),
    /// Remove this voter (the leader itself may be: transfer its leadership first to
    /// choose who leads next).
    RemoveVoter(NodeId),
}

impl fmt::Display for MembershipChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipChange::AddVoter(node) => write!(f, "add voter {}", node.0),
            MembershipChange::RemoveVoter(node) => write!(f, "remove voter {}", node.0),
        }
    }
}

/// Why a request failed. Every variant says whether the value may still be chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// This node does not lead the group (nothing was proposed); `hint` is the
    /// leader it believes in: retry there.
    NotLeader {
        /// The believed leader, if any.
        hint: Option<NodeId>,
    },
    /// Too much is queued (nothing was proposed): back off and retry.
    Overloaded,
    /// The value is larger than the group's `value_size_max` (nothing was proposed).
    TooLarge {
        /// The value's size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The node stopped (or is stopping). A proposal already handed to the group may
    /// or may not be chosen.
    Stopped,
    /// Leadership changed while the value was in flight: it may or may not be chosen.
    Indeterminate,
    /// The value was chosen too late (after a newer leader started) and will never be
    /// applied anywhere.
    Aborted,
    /// This node has no such group.
    NoSuchGroup {
        /// The group asked for.
        group: GroupId,
    },
    /// This node leads the group but cannot serve a linearizable read yet (its lease
    /// is not confirmed by a quorum, or its first entry is not applied): retry shortly.
    LeaseNotHeld,
    /// The request is not valid now.
    Rejected {
        /// Why.
        reason: &'static str,
    },
    /// The log position asked for lies below what this replica can read back (a
    /// checkpoint covers it): `first_available` is the first instance it can read.
    Truncated {
        /// The first instance readable on this replica.
        first_available: Instance,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotLeader { hint: Some(node) } => {
                write!(f, "not the leader (leader is node {})", node.0)
            }
            Error::NotLeader { hint: None } => write!(f, "not the leader (none known)"),
            Error::Overloaded => write!(f, "overloaded: too many requests queued"),
            Error::TooLarge { size, max } => {
                write!(f, "value of {size} bytes exceeds value_size_max {max}")
            }
            Error::Stopped => write!(f, "the node stopped"),
            Error::Indeterminate => {
                write!(f, "leadership changed while in flight; outcome unknown")
            }
            Error::Aborted => write!(f, "chosen after a newer leader started; never applied"),
            Error::NoSuchGroup { group } => write!(f, "no group {} on this node", group.0),
            Error::LeaseNotHeld => write!(f, "leader lease not held yet; retry"),
            Error::Rejected { reason } => write!(f, "rejected: {reason}"),
            Error::Truncated { first_available } => write!(
                f,
                "truncated: the log here starts at instance {} (a checkpoint covers what \
                 is below)",
                first_available.0
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<ProposeError> for Error {
    fn from(error: ProposeError) -> Error {
        match error {
            ProposeError::NotLeader { hint } => Error::NotLeader { hint },
            ProposeError::Overloaded { .. } => Error::Overloaded,
            ProposeError::TooLarge { size, max } => Error::TooLarge { size, max },
            ProposeError::Indeterminate => Error::Indeterminate,
            ProposeError::Rejected { reason } => Error::Rejected { reason },
        }
    }
}

impl Error {
    /// The variant's name in snake case, one word per kind (the `kind` label of the
    /// `synod_proposals_failed_total` metric).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotLeader { .. } => "not_leader",
            Error::Overloaded => "overloaded",
            Error::TooLarge { .. } => "too_large",
            Error::Stopped => "stopped",
            Error::Indeterminate => "indeterminate",
            Error::Aborted => "aborted",
            Error::NoSuchGroup { .. } => "no_such_group",
            Error::LeaseNotHeld => "lease_not_held",
            Error::Rejected { .. } => "rejected",
            Error::Truncated { .. } => "truncated",
        }
    }

    /// The error of a refused log read.
    #[must_use]
    pub fn of_log_read(refused: LogReadRefused, group: GroupId) -> Error {
        match refused {
            LogReadRefused::NoSuchGroup => Error::NoSuchGroup { group },
            LogReadRefused::Truncated { first_available } => Error::Truncated { first_available },
            LogReadRefused::Overloaded => Error::Overloaded,
        }
    }
}

/// One group as its shard sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    /// The group.
    pub group: GroupId,
    /// This replica's role.
    pub role: Role,
    /// The leader this replica believes in.
    pub leader_hint: Option<NodeId>,
    /// The highest ballot promised.
    pub promised: Ballot,
    /// Inclusive chosen watermark.
    pub chosen_through: Instance,
    /// Inclusive applied watermark.
    pub applied_through: Instance,
    /// Running CRC32C of chosen entries through `applied_through`.
    pub checksum: u32,
    /// Whether the replica votes (false while re-learning lost state).
    pub voting: bool,
    /// Whether the replica is fenced: a leader's heartbeat checksum disagreed with its
    /// log, so it no longer votes or applies until an operator acts.
    pub fenced: bool,
    /// Whether the replica is retired: it lost its state after the group's membership
    /// changed and never votes again under this node id (`paxos::learner`,
    /// "Retirement"); the operator removes it from the membership and starts the node
    /// under a new node id.
    pub retired: bool,
    /// The group's last durable checkpoint (file saved and the WAL durable past it;
    /// `Instance(0)`: none): below it this replica no longer needs its WAL to recover.
    pub checkpoint_through: Instance,
    /// The group's in-memory log (`None` in a status read over the client protocol,
    /// which does not carry it).
    pub memory: Option<LogMemory>,
    /// The voters of the newest membership this replica knows chosen (perhaps not yet
    /// in effect; `None` in a status read over the client protocol, which does not
    /// carry them).
    pub voters: Option<Vec<NodeId>>,
}

/// A group's in-memory log, as its retention bounds it (`GroupConfig::
/// retention_instances_max`, `retention_size_max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogMemory {
    /// Slots held in memory: the applied ones of the retention, and everything above.
    pub log_len: usize,
    /// The first instance still in memory: a peer catching up from below it is
    /// served from the WAL.
    pub log_floor: Instance,
    /// Bytes of the applied entries kept (`Entry::encoded_size`).
    pub retained_size: usize,
    /// Catch-up chunks this replica sent from entries read back from its WAL.
    pub catch_up_wal_served: u64,
    /// Catch-up streams this replica started over with chunks in flight.
    pub catch_up_streams_restarted: u64,
    /// Checkpoints this replica received from peers and installed in process.
    pub checkpoints_installed: u64,
}

impl LogMemory {
    /// The in-memory log of `group`.
    #[must_use]
    pub fn of(group: &crate::paxos::Group) -> LogMemory {
        LogMemory {
            log_len: group.log_len(),
            log_floor: group.log_floor(),
            retained_size: group.retained_size(),
            catch_up_wal_served: group.counters().catch_up_wal_served,
            catch_up_streams_restarted: group.counters().catch_up_streams_restarted,
            checkpoints_installed: group.counters().checkpoints_installed,
        }
    }
}

/// One shard as seen from outside.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStatus {
    /// The shard index.
    pub shard: u16,
    /// Its groups, ascending.
    pub groups: Vec<GroupStatus>,
    /// WAL writes (one write + one fdatasync each).
    pub writes: u64,
    /// Nanoseconds with at least one WAL write in flight (write + fdatasync, as the
    /// loop sees them: from a submission while none was in flight to the loop noticing
    /// the last completion), summed.
    pub write_busy_ns: u64,
    /// Iterations of the shard loop.
    pub iterations: u64,
    /// Nanoseconds the WAL writes took inside their task (write + fdatasync as the
    /// disk took them), summed per write: with one write in flight, `write_busy_ns`
    /// minus this is scheduling delay; with several, overlapping writes each count.
    pub disk_ns: u64,
    /// Nanoseconds of `disk_ns` spent in fdatasync (from its submission to the task
    /// seeing it done); the rest is the write itself.
    pub sync_ns: u64,
    /// Records written.
    pub records: u64,
    /// Elections this node started, summed over groups.
    pub elections: u64,
    /// Instances this node chose as leader, summed over groups.
    pub chosen_as_leader: u64,
    /// Chosen instances carrying client values that this shard applied (no-ops and
    /// configuration entries are not counted).
    pub value_instances_applied: u64,
    /// Client values this shard applied: divided by `value_instances_applied`, the
    /// average number of values per instance (the batching factor).
    pub values_applied: u64,
    /// Checkpoints saved by this shard since it started.
    pub checkpoints_saved: u64,
    /// Checkpoints that failed (not fatal: retried by the policy).
    pub checkpoints_failed: u64,
    /// The Linux thread id of the shard's thread (from `/proc/thread-self`, read once
    /// at start), for per-thread CPU accounting in `/proc/self/task/<tid>/stat`;
    /// `None` where `/proc` is not available.
    pub thread_id: Option<u32>,
    /// Peer messages dropped because a peer's queue was full or it was disconnected.
    pub dropped_messages: u64,
    /// Inbound connections closed for a named reason (bad handshake, bad frame, ...).
    pub refused_connections: u64,
    /// Peer messages the shard refused for backpressure (WAL or held-ack limits).
    pub refused_messages: u64,
    /// Messages and requests the groups ignored, by reason, summed over groups.
    pub ignored: std::collections::BTreeMap<&'static str, u64>,
    /// Log reads (`NodeHandle::read_log` and friends): served from memory or the WAL,
    /// refused by reason, sent to the WAL, waited.
    pub log_reads: LogReadCounters,
    /// Instances the WAL's index holds (`wal::index`), summed over the groups: the
    /// records above each group's truncation watermark. As of the last status taken
    /// while the store was idle. Not carried by the client protocol (0 there).
    pub wal_index_slots: u64,
    /// Bytes the WAL's index holds (`LogIndex::memory_size`: its slots' capacity and
    /// per-group structs), as of the same moment. Not carried by the client protocol.
    pub wal_index_size: u64,
    /// Bytes of capacity the shard's peer links keep in their reusable buffers
    /// (`Net::buffer_capacity`: outgoing buffers and spares, inbound frame buffers). Not
    /// carried by the client protocol (0 there).
    pub net_buffer_size: u64,
    /// Catch-up by raw WAL records: runs sent, received, refused, and records decoded
    /// to answer peers (not in the client protocol yet).
    pub catch_up: CatchUpStatus,
    /// Why the shard stopped, when it did (a failed write).
    pub fatal: Option<String>,
    /// What its start spent recovering (zero where not carried, e.g. over the client
    /// protocol).
    pub recovery: RecoveryReport,
    /// The rest of what `synod serve --metrics-listen` exports: latency and size
    /// histograms, proposals, queue depths, links (not carried by the client
    /// protocol: empty there).
    pub metrics: ShardMetrics,
}

/// What a shard counts for its metrics beyond the status's own fields
/// (`api::metrics` exports both).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardMetrics {
    /// Each fdatasync's nanoseconds, from its submission to its completion
    /// (`histogram::SYNC_NS_BOUNDS`; empty with fsync off).
    pub sync_latency: Histogram,
    /// Each WAL write's bytes (padded to blocks; `histogram::WRITE_SIZE_BOUNDS`).
    pub write_size: Histogram,
    /// The WAL's durable watermark: every record through this LSN is on disk.
    pub durable_lsn: u64,
    /// The last LSN assigned to a record (durable or not): minus `durable_lsn`, the
    /// records waiting for the disk.
    pub planned_lsn: u64,
    /// Proposals handed to the shard, and their outcomes.
    pub proposals: ProposalCounters,
    /// What waits where, now.
    pub queues: QueueDepths,
    /// Elections this node won (it became leader), summed over groups.
    pub elections_won: u64,
    /// Heartbeat checksum mismatches seen (each fences the replica), summed over groups.
    pub checksum_mismatches: u64,
    /// The peer links' counters: traffic, drops by reason, connections, closes by
    /// reason.
    pub net: NetCounters,
    /// Each peer's link now, ascending by node.
    pub peers: Vec<PeerLink>,
}

/// Proposals a shard took from handles, and how they ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProposalCounters {
    /// Proposals received (each `Request::Propose`).
    pub received: u64,
    /// Proposals chosen and applied, answered with their output.
    pub applied: u64,
    /// Proposals answered with an error, by `Error::kind`.
    pub failed: BTreeMap<&'static str, u64>,
}

impl ProposalCounters {
    /// Counts one proposal that failed with `error`.
    pub fn fail(&mut self, error: &Error) {
        *self.failed.entry(error.kind()).or_default() += 1;
    }
}

/// What waits in a shard, at the moment of the snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepths {
    /// Proposals handed to the shard and not answered yet.
    pub proposals_waiting: u64,
    /// Proposals queued in their groups and not in an instance yet, summed over groups.
    pub values_queued: u64,
    /// Instances in flight (proposed by a leader, not chosen yet), summed over groups.
    pub instances_in_flight: u64,
    /// Linearizable reads not answered yet.
    pub reads_waiting: u64,
    /// Log reads not answered yet.
    pub log_reads_waiting: u64,
    /// Messages held until the WAL is durable past them (acks, own votes).
    pub held_messages: u64,
    /// WAL writes (each with its fdatasync) handed to the writer and not yet
    /// reported: 0 ..= `Config::wal_writes_in_flight_max`.
    pub wal_write_in_flight: u64,
}

/// What a shard's start spent recovering its log and groups: the work done, and the
/// time of each phase in order (nanoseconds of the shard thread's wall clock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files read whole by the scan.
    pub segments: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Records decoded from them.
    pub records: u64,
    /// 1 when the scan started at the log head hint (`wal::log_head`); summed over
    /// shards, how many did.
    pub head_used: u64,
    /// 1 when a hint file was there but refused (the full scan ran); summed likewise.
    pub head_refused: u64,
    /// Bytes of live segments the hint let the scan skip.
    pub skipped_bytes: u64,
    /// The directory probe (an O_DIRECT write and fdatasync).
    pub probe_ns: u64,
    /// The scan: list the directory, read the live segments, decode their records.
    pub scan_ns: u64,
    /// The store's preparation: the WAL index of the records, the scrub of a torn tail,
    /// the spares found.
    pub index_ns: u64,
    /// Replay: the records folded into each group's state.
    pub replay_ns: u64,
    /// Checkpoints listed, read, verified and installed into the state machines.
    pub restore_ns: u64,
    /// The groups built from their restored state (the pure shard).
    pub groups_ns: u64,
    /// The whole start, from the probe to listening.
    pub total_ns: u64,
}

/// Catch-up by raw WAL records, as one shard saw it (`runtime::shard::CatchUpCounters`
/// and the driver's WAL reads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatchUpStatus {
    /// `CatchUpRaw` messages its groups sent (one run of records each).
    pub raw_runs_sent: u64,
    /// Bytes of records in those runs.
    pub raw_bytes_sent: u64,
    /// Runs received that verified and went to their group.
    pub raw_runs_received: u64,
    /// Runs received and refused whole (`catch_up_raw_refused`).
    pub raw_refused: u64,
    /// Records decoded to answer peers' catch-up reads: 0 while the sender streams
    /// records as they lie (the proof that it neither decodes nor re-encodes them).
    pub records_decoded_for_peers: u64,
    /// Records decoded to answer log reads (which return values).
    pub records_decoded_for_log_reads: u64,
}

/// The span a request is asked from, for the shard's span of it to hang below: the
/// caller's current span when DEBUG is enabled anywhere, else `Span::none()` without
/// asking the subscriber (`driver::trace`). Taken on the caller's thread.
#[must_use]
pub fn caller_span() -> tracing::Span {
    if tracing::level_enabled!(tracing::Level::DEBUG) {
        tracing::Span::current()
    } else {
        tracing::Span::none()
    }
}

/// A request from a handle to a shard. Each traced kind carries `span`, the caller's
/// span ([`caller_span`]): the shard's span for the request is its child, so one
/// request reads as one chain from whoever asked (the client listener's `request`
/// span) to its answer.
#[derive(Debug)]
pub enum Request {
    /// Replicate `value` in `group`; reply once applied (or failed).
    Propose {
        /// The group.
        group: GroupId,
        /// The value.
        value: Bytes,
        /// Where the outcome goes.
        reply: Sender<Result<Proposed, Error>>,
        /// The caller's span.
        span: tracing::Span,
    },
    /// A linearizable read of `group`'s state machine.
    Read {
        /// The group.
        group: GroupId,
        /// Passed to `StateMachine::query`.
        query: Bytes,
        /// Where the answer goes.
        reply: Sender<Result<Bytes, Error>>,
        /// The caller's span.
        span: tracing::Span,
    },
    /// A read of `group`'s chosen log from `from` (`log_reads`).
    ReadLog {
        /// The group.
        group: GroupId,
        /// The first position wanted.
        from: Position,
        /// Bytes of values wanted at most (beyond the first).
        size_max: usize,
        /// When nothing is chosen at `from` yet: wait up to this long for a value.
        wait: Option<std::time::Duration>,
        /// Where the answer goes.
        reply: Sender<Result<LogRead, Error>>,
        /// The caller's span.
        span: tracing::Span,
    },
    /// Hand `group`'s leadership over to `to` (`paxos::leadership`); answered once
    /// `to` leads, or why it does not.
    TransferLeadership {
        /// The group.
        group: GroupId,
        /// The replica that is to lead next.
        to: NodeId,
        /// Where the outcome goes.
        reply: Sender<Result<(), Error>>,
    },
    /// Change `group`'s voters by one (`runtime::driver::memberships`); answered once
    /// the change is chosen and in effect, or why not.
    ChangeMembership {
        /// The group.
        group: GroupId,
        /// The change.
        change: MembershipChange,
        /// Where the outcome goes.
        reply: Sender<Result<(), Error>>,
    },
    /// A snapshot of the shard's groups and counters.
    Status {
        /// Where the status goes.
        reply: Sender<ShardStatus>,
        /// The caller's span.
        span: tracing::Span,
    },
    /// Stop: refuse new requests, let proposals in flight finish (bounded by the
    /// drain timeout), close links and the WAL. The reply comes once stopped.
    Shutdown {
        /// Signalled once stopped.
        reply: Sender<()>,
    },
    /// Stop at once, as a crash would (tests): nothing is drained or flushed.
    Abort,
}
