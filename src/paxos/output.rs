//! What one step of a group asks its executor to do, and in which order.
//!
//! # Ordering contract
//!
//! 1. Every record in `persist` must be durable BEFORE any message in
//!    `send_after_persist` leaves, and before any later step's `send_after_persist`
//!    (records are durable in the order they were emitted: a shard's WAL is a prefix).
//! 2. Messages in `send` may leave at once, before `persist` is durable (a leader sends
//!    accepts to followers while its own write is in flight).
//! 3. A leader's own vote is a `send_after_persist` message addressed to itself.
//! 4. `apply` lists chosen entries in strictly increasing instance order, with no gaps
//!    across steps; an entry marked `skip` must not be applied to the state machine
//!    (it is still part of the log and its checksum).
//! 5. `complete` lists proposals that failed; successful proposals complete through
//!    `apply` (each value's `ProposalId` is in `Apply::proposals`), AFTER the value is
//!    applied.
//! 6. `refused` lists peer messages refused as out of bounds (forged or corrupt): they
//!    changed nothing and nothing of them is persisted; the executor reports them
//!    (rate-limited: a flood of forged packets must not become a flood of log lines).
//! 7. `wal_reads` asks for chosen entries below the group's in-memory log (dropped by
//!    the retention, see `group`) to be read back from this replica's WAL; the
//!    executor answers each with `Input::WalReadDone` (any time later, or never: the
//!    peer asks again). Nothing waits on it.
//! 8. `checkpoint_sends` asks for this replica's durable checkpoint of the group to be
//!    streamed to a peer whose catch-up the log can no longer serve (the WAL read
//!    answered `Truncated`); the shard picks the checkpoint (`runtime::transfer`).
//!    Nothing waits on it.

use super::bounds::OutOfBounds;
use super::message::Message;
use super::types::{Ballot, Entry, GroupId, Instance, NodeId, ProposalId, Proposals};
use bytes::Bytes;

/// A fact a group needs durable before it may say anything that depends on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The acceptor promised `ballot` (and never accepts or promises below it).
    Promise {
        /// The group.
        group: GroupId,
        /// The promised ballot.
        ballot: Ballot,
    },
    /// The acceptor accepted `entry` at `instance` in `ballot`.
    Accept {
        /// The group.
        group: GroupId,
        /// Log position.
        instance: Instance,
        /// Ballot it was accepted in.
        ballot: Ballot,
        /// The value.
        entry: Entry,
    },
    /// Every instance through `through` (inclusive) is chosen with the value this
    /// replica holds for it. Written lazily; never required before a reply.
    Chosen {
        /// The group.
        group: GroupId,
        /// Inclusive chosen watermark.
        through: Instance,
    },
    /// `entry` is the chosen value at `instance` (learned by catch-up, not accepted).
    Learn {
        /// The group.
        group: GroupId,
        /// Log position.
        instance: Instance,
        /// The chosen value.
        entry: Entry,
    },
    /// This replica installed a checkpoint received from a peer at `through`: every
    /// instance through it is chosen and held by that checkpoint only. This replica's
    /// own records at or below it are not evidence of the chosen values (it may hold
    /// values it accepted there that were not chosen), so a restart trusts its log
    /// below `through` only from a checkpoint at or above it (`Restore::chosen_proven`).
    Installed {
        /// The group.
        group: GroupId,
        /// The checkpoint's instance.
        through: Instance,
    },
}

impl Record {
    /// The group the record belongs to.
    #[must_use]
    pub fn group(&self) -> GroupId {
        match self {
            Record::Promise { group, .. }
            | Record::Accept { group, .. }
            | Record::Chosen { group, .. }
            | Record::Learn { group, .. }
            | Record::Installed { group, .. } => *group,
        }
    }
}

/// A chosen entry to apply, in instance order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Apply {
    /// The group.
    pub group: GroupId,
    /// Log position.
    pub instance: Instance,
    /// The chosen entry.
    pub entry: Entry,
    /// True when the entry's origin ballot is below the latest applied StartWorking
    /// ballot: it is part of the log but must not reach the state machine.
    pub skip: bool,
    /// Proposals of this node carried by the entry, one per value in order; complete
    /// each with `(instance, index)` after applying. Empty when not proposed here.
    pub proposals: Proposals,
    /// Running CRC32C over chosen entries through `instance`.
    pub checksum: u32,
}

/// Why a proposal failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProposeError {
    /// This node does not lead the group; `hint` is the leader it believes in.
    NotLeader {
        /// The believed leader, if any.
        hint: Option<NodeId>,
    },
    /// The proposal queue is full (`count`/`size` are its limits).
    Overloaded {
        /// Proposals queued.
        queued_count: usize,
        /// Bytes queued.
        queued_size: usize,
    },
    /// The value is larger than `value_size_max`.
    TooLarge {
        /// The value's size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Leadership was lost after the value was sent: it may or may not be chosen
    /// (and if chosen after a newer StartWorking, it is skipped).
    Indeterminate,
    /// The request is not valid now (e.g. a membership change while another is
    /// pending, or one that changes more than one voter).
    Rejected {
        /// Why.
        reason: &'static str,
    },
}

impl std::fmt::Display for ProposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProposeError::NotLeader { hint: Some(node) } => {
                write!(f, "not the leader (leader is node {})", node.0)
            }
            ProposeError::NotLeader { hint: None } => write!(f, "not the leader (none known)"),
            ProposeError::Overloaded {
                queued_count,
                queued_size,
            } => write!(
                f,
                "overloaded: {queued_count} proposals ({queued_size} bytes) already queued"
            ),
            ProposeError::TooLarge { size, max } => {
                write!(f, "value of {size} bytes exceeds value_size_max {max}")
            }
            ProposeError::Indeterminate => {
                write!(f, "leadership lost while in flight; outcome unknown")
            }
            ProposeError::Rejected { reason } => write!(f, "rejected: {reason}"),
        }
    }
}

impl std::error::Error for ProposeError {}

/// A failed proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The proposal.
    pub id: ProposalId,
    /// Why it failed.
    pub error: ProposeError,
}

/// A peer message refused because a field was out of bounds (see `bounds`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The group the message named.
    pub group: GroupId,
    /// The sender it claimed.
    pub from: NodeId,
    /// The counter it was counted under (`<kind>_out_of_bounds`).
    pub reason: &'static str,
    /// The field, its value and the bound.
    pub out_of_bounds: OutOfBounds,
}

/// Who a WAL read is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WalReader {
    /// A peer's catch-up request: its group answers with a catch-up chunk
    /// (`Input::WalReadDone`).
    Peer(NodeId),
    /// A read of this replica's own log by an embedding program (`runtime`'s log
    /// reads), by the shard's id for it: the shard answers it, no group sees it.
    Log(u64),
}

/// Read chosen entries `[from, through]` of `group` back from this replica's WAL (they
/// are below its in-memory log) for `reader`; at most `count_max` entries and about
/// `size_max` bytes (at least one entry when there is one). A group asks for its
/// peers' catch-up (the answer comes back as `Input::WalReadDone`); the shard asks
/// for its log reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalRead {
    /// The group.
    pub group: GroupId,
    /// Who the read is for.
    pub reader: WalReader,
    /// First instance wanted.
    pub from: Instance,
    /// Last instance wanted (every instance of `[from, through]` is chosen here).
    pub through: Instance,
    /// Bytes of entries to read at most (beyond the first).
    pub size_max: usize,
    /// Entries to read at most.
    pub count_max: usize,
}

/// What a WAL read found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalReadOutcome {
    /// The chosen entries from the read's `from` on, consecutive (possibly fewer than
    /// asked, or none: records not yet written are not found).
    Entries(Vec<Entry>),
    /// For a peer's catch-up (`WalReader::Peer`): the records of the chosen entries
    /// from the read's `from` on, consecutive across runs, as they lie in the WAL,
    /// not decoded (possibly none).
    Raw(Vec<RawRun>),
    /// The WAL no longer holds `from`: its first instance is `first_available` (a
    /// checkpoint covers what is below; only a checkpoint transfer can serve it).
    Truncated {
        /// The first instance the WAL still holds.
        first_available: Instance,
    },
}

/// Stream this replica's durable checkpoint of `group` to `peer`, which asked for
/// instances from `from` that the log no longer holds (`WalReadOutcome::Truncated`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointSend {
    /// The group.
    pub group: GroupId,
    /// The replica that needs it.
    pub peer: NodeId,
    /// The first instance it asked for.
    pub from: Instance,
}

/// Everything one step produced. Reused across steps: the executor drains it.
#[derive(Debug, Default)]
pub struct Output {
    /// Records to make durable (in order).
    pub persist: Vec<Record>,
    /// Messages that may leave now.
    pub send: Vec<Message>,
    /// Messages that may leave only once every record emitted so far is durable.
    pub send_after_persist: Vec<Message>,
    /// Chosen entries to apply, in instance order.
    pub apply: Vec<Apply>,
    /// Proposals that failed.
    pub complete: Vec<Completion>,
    /// Peer messages refused as out of bounds, for the executor to report.
    pub refused: Vec<Refused>,
    /// Entries to read back from the WAL for peers behind the in-memory log.
    pub wal_reads: Vec<WalRead>,
    /// Checkpoints to stream to peers behind the log (rule 8).
    pub checkpoint_sends: Vec<CheckpointSend>,
}

impl Output {
    /// Whether nothing was produced.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty()
            && self.send.is_empty()
            && self.send_after_persist.is_empty()
            && self.apply.is_empty()
            && self.complete.is_empty()
            && self.refused.is_empty()
            && self.wal_reads.is_empty()
            && self.checkpoint_sends.is_empty()
    }
    /// Empties every list, keeping capacity.
    pub fn clear(&mut self) {
        self.persist.clear();
        self.send.clear();
        self.send_after_persist.clear();
        self.apply.clear();
        self.complete.clear();
        self.refused.clear();
        self.wal_reads.clear();
        self.checkpoint_sends.clear();
    }
}

/// A run of raw records streamed for catch-up: whole WAL records of one group, byte
/// for byte as they lie in one segment of the sender's log, for consecutive instances
/// from `first_instance` through `last_instance`. Each record's checksum is seeded with
/// `salt` (its segment's), so a run never crosses a segment boundary. Built by
/// `wal::catch_up::raw_runs`, verified by `wal::catch_up::verify_raw` (the paxos layer
/// carries it and never reads its bytes).
///
/// The records lie in `records`, a list of pieces, each holding whole records (no
/// record spans two pieces): on the sender, slices of the buffers the WAL was read
/// into (records adjacent on disk share a piece); on the receiver, one piece per
/// piece sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRun {
    /// The group every record belongs to.
    pub group: GroupId,
    /// Instance of the first record.
    pub first_instance: Instance,
    /// Instance of the last record.
    pub last_instance: Instance,
    /// Salt of the sender's segment the records lie in.
    pub salt: u32,
    /// The records, in instance order, as pieces of whole records.
    pub records: Vec<Bytes>,
}

impl RawRun {
    /// Bytes of records in the run.
    #[must_use]
    pub fn size(&self) -> usize {
        self.records
            .iter()
            .fold(0usize, |sum, piece| sum.saturating_add(piece.len()))
    }
}
