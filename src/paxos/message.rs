//! Peer messages of one group, as the protocol core sees them (the wire encoding lives
//! in `transport::codec`).
//!
//! Every message names its group, sender and receiver. Messages are untrusted input:
//! the core validates every field it uses and drops (counting a named reason) what
//! does not fit its state.

use bytes::Bytes;

use super::output::RawRun;
use super::types::{Ballot, Entry, GroupId, Instance, Nanos, NodeId};

/// A message between two replicas of one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The group this message belongs to.
    pub group: GroupId,
    /// Sender.
    pub from: NodeId,
    /// Receiver (may equal `from`: a leader's own vote).
    pub to: NodeId,
    /// What it says.
    pub body: MessageBody,
}

/// An accepted value reported in a promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromisedEntry {
    /// The instance.
    pub instance: Instance,
    /// Ballot at which the reporter accepted `entry`.
    pub ballot: Ballot,
    /// Whether the reporter knows `entry` to be chosen at `instance`.
    pub chosen: bool,
    /// The value.
    pub entry: Entry,
}

/// An inclusive range of instances, for range-coded acks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceRange {
    /// First instance (inclusive).
    pub first: Instance,
    /// Last instance (inclusive); `last >= first`.
    pub last: Instance,
}

/// The contents of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// Phase 1a, over every instance from `from` upward.
    Prepare {
        /// The candidate's ballot.
        ballot: Ballot,
        /// First instance the candidate does not know to be chosen.
        from: Instance,
    },
    /// Phase 1b: the acceptor promised `ballot` and reports what it accepted at
    /// instances `>= from`, in instance order, bounded by count and bytes; `truncated`
    /// says more follow: the candidate asks again from after the last entry (see
    /// `leader`, "Promises in parts").
    Promise {
        /// The promised ballot.
        ballot: Ballot,
        /// The acceptor's chosen watermark (inclusive).
        chosen_through: Instance,
        /// Accepted values at instances `>= from`, ascending.
        entries: Vec<PromisedEntry>,
        /// Whether entries above the last one were left out (too many or too large
        /// for one message). Never set with `entries` empty.
        truncated: bool,
    },
    /// A rejection: the sender has promised `promised`, which is above the ballot of
    /// the message it rejects.
    Reject {
        /// The sender's promised ballot.
        promised: Ballot,
    },
    /// Phase 2a for a run of consecutive instances starting at `first`.
    Accept {
        /// The leader's ballot.
        ballot: Ballot,
        /// The leader's chosen watermark, piggybacked.
        chosen_through: Instance,
        /// Instance of `entries[0]`.
        first: Instance,
        /// Values for `first`, `first + 1`, ...
        entries: Vec<Entry>,
    },
    /// Phase 2b, range-coded: the sender durably accepted every instance in `ranges` at
    /// `ballot`.
    Accepted {
        /// The ballot accepted.
        ballot: Ballot,
        /// Disjoint ascending ranges.
        ranges: Vec<InstanceRange>,
    },
    /// Leader liveness, chosen watermark and lease renewal.
    Heartbeat {
        /// The leader's ballot.
        ballot: Ballot,
        /// The leader's chosen watermark.
        chosen_through: Instance,
        /// Leader's clock when sent; echoed back for lease accounting.
        sent_at: Nanos,
        /// Instance the checksum covers (inclusive; 0 = none).
        checksum_through: Instance,
        /// Running CRC32C over chosen entries through `checksum_through`.
        checksum: u32,
    },
    /// A follower's answer to a heartbeat: it grants the lease for `sent_at`.
    HeartbeatAck {
        /// The leader ballot the follower accepts.
        ballot: Ballot,
        /// Echo of the heartbeat's `sent_at`.
        sent_at: Nanos,
    },
    /// A lagging replica asks for chosen values from `from` upward, and grants the
    /// peer `credit` chunks in flight: the peer streams up to that many consecutive
    /// chunks from `from` without waiting for another request (`acceptor`'s catch-up
    /// streams). A later request from higher up both acknowledges what it received
    /// (everything below its `from`) and renews the credit.
    CatchUpRequest {
        /// First instance wanted (everything below it is chosen at the requester).
        from: Instance,
        /// Chunks the requester accepts in flight from `from` on. 0, as an older peer
        /// that does not send the field, means 1 (one chunk per request); the peer
        /// serves at most its own `GroupConfig::catch_up_credit_max`.
        credit: u32,
        /// The requester lost its state in a group whose membership changed and
        /// never votes again under its node id (`learner`, "Retirement"): a leader
        /// refuses to add it as a voter (`joining`).
        retired: bool,
    },
    /// Chosen values answering a catch-up request, plus what a recovering replica
    /// needs to know before it may vote again.
    CatchUpChunk {
        /// Sender's chosen watermark.
        chosen_through: Instance,
        /// Sender's promised ballot.
        promised: Ballot,
        /// Highest instance at which the sender has accepted anything.
        accepted_max: Instance,
        /// Instance of `entries[0]`.
        first: Instance,
        /// Chosen values for `first`, `first + 1`, ...
        entries: Vec<Entry>,
        /// Whether the sender votes. A replica re-learning lost state serves the
        /// chosen values it holds (facts), but its `promised` and `accepted_max` may
        /// be below what it had before the loss: a rejoining replica does not count
        /// such a chunk among the peers it heard from (`learner`).
        from_voter: bool,
        /// Whether the group's membership ever changed as far as the sender holds
        /// (`Group::membership_ever_changed`): a replica re-learning lost state that
        /// hears it retires (`learner`, "Retirement").
        membership_changed: bool,
    },
    /// A replica receiving a checkpoint transfer asks for the next piece: the bytes
    /// from `offset` of the sender's checkpoint file at `through` (see
    /// `runtime::transfer`). A sender whose durable checkpoint is no longer `through`
    /// starts over with its current one from offset 0.
    CheckpointRequest {
        /// The checkpoint's instance, as the sender's chunks named it.
        through: Instance,
        /// The first byte wanted (the bytes received so far).
        offset: u64,
    },
    /// A piece of the sender's durable checkpoint file of this group at `through`
    /// (the whole file, header and image, as `wal::checkpoint` lays it out): bytes
    /// `[offset, offset + data.len())` of `total_size`. Sent when the receiver needs
    /// instances the sender's log no longer holds.
    CheckpointChunk {
        /// The checkpoint's instance.
        through: Instance,
        /// Where `data` starts in the file.
        offset: u64,
        /// The file's size in bytes.
        total_size: u64,
        /// The bytes.
        data: Bytes,
    },
    /// Chosen values answering a catch-up request as raw WAL records of the sender
    /// (`RawRun`), with the metadata of a `CatchUpChunk`. The group never sees one:
    /// the receiving shard verifies the run whole (`wal::catch_up::verify_raw`) and
    /// hands the group the `CatchUpChunk` of its entries, or refuses it.
    CatchUpRaw {
        /// Sender's chosen watermark.
        chosen_through: Instance,
        /// Sender's promised ballot.
        promised: Ballot,
        /// Highest instance at which the sender has accepted anything.
        accepted_max: Instance,
        /// The records, for `run.first_instance` through `run.last_instance`.
        run: RawRun,
        /// Whether the sender votes (as `CatchUpChunk::from_voter`).
        from_voter: bool,
        /// As `CatchUpChunk::membership_changed`.
        membership_changed: bool,
    },
    /// Leadership transfer: the leader at `ballot`, which has stopped proposing and
    /// serving reads and whose in-flight instances are all chosen, hands over to
    /// `target` (`leadership`). Sent to every voter: the target runs Phase 1 at once,
    /// without a pre-vote; every other replica that follows exactly this ballot ends
    /// the lease it granted the sender, so that it promises the target.
    Handover {
        /// The ballot of the leader handing over (its sender's).
        ballot: Ballot,
        /// The replica that is to lead next.
        target: NodeId,
    },
    /// Pre-vote: would the receiver promise `ballot` now? Sent by a replica whose
    /// election timer ran out, BEFORE it raises its own promise: only with a quorum of
    /// grants does it campaign (`leadership`), so a replica cut off from a live leader
    /// cannot disrupt it by campaigning at ever higher ballots.
    PreVote {
        /// The ballot the sender would campaign at.
        ballot: Ballot,
    },
    /// The answer to a `PreVote` for `ballot`; changes no state at the sender.
    PreVoteReply {
        /// The ballot asked about.
        ballot: Ballot,
        /// Whether the sender would promise it now.
        granted: bool,
    },
}

impl MessageBody {
    /// A short name for logs and counters.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::Prepare { .. } => "prepare",
            MessageBody::Promise { .. } => "promise",
            MessageBody::Reject { .. } => "reject",
            MessageBody::Accept { .. } => "accept",
            MessageBody::Accepted { .. } => "accepted",
            MessageBody::Heartbeat { .. } => "heartbeat",
            MessageBody::HeartbeatAck { .. } => "heartbeat_ack",
            MessageBody::CatchUpRequest { .. } => "catch_up_request",
            MessageBody::CatchUpChunk { .. } => "catch_up_chunk",
            MessageBody::CheckpointRequest { .. } => "checkpoint_request",
            MessageBody::CheckpointChunk { .. } => "checkpoint_chunk",
            MessageBody::CatchUpRaw { .. } => "catch_up_raw",
            MessageBody::Handover { .. } => "handover",
            MessageBody::PreVote { .. } => "pre_vote",
            MessageBody::PreVoteReply { .. } => "pre_vote_reply",
        }
    }
}
