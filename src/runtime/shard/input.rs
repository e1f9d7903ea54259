//! The inputs of a shard step (`Shard::step`): what the executor hands the pure
//! shard — time, peer messages, client requests, and the results of the I/O the shard
//! asked for in its `Effects`.

use bytes::Bytes;

use super::transfer::{CheckpointRead, CheckpointReadOutcome};
use super::ReadId;
use crate::paxos::{
    GroupId, Instance, Lsn, Membership, Message, NodeId, ProposalId, Record, WalRead,
    WalReadOutcome,
};
use crate::runtime::checkpoints::CheckpointOutcome;
use crate::runtime::fatal::Fatal;
use crate::runtime::log_reads::LogReadAsk;

/// One input to a shard step.
#[derive(Clone, Debug)]
pub enum ShardInput {
    /// Time has passed: fire due timers.
    Tick,
    /// A message from a peer.
    Message(Message),
    /// A client value for `group`.
    Propose {
        /// The group.
        group: GroupId,
        /// Identifies the proposal in completions.
        id: ProposalId,
        /// The value.
        value: Bytes,
    },
    /// Hand `group`'s leadership over to `to` (`paxos::Input::TransferLeadership`);
    /// nothing for a group this shard does not hold.
    TransferLeadership {
        /// The group.
        group: GroupId,
        /// The replica that is to lead next.
        to: NodeId,
    },
    /// A membership change for `group`.
    ChangeMembership {
        /// The group.
        group: GroupId,
        /// Identifies the proposal in completions.
        id: ProposalId,
        /// The new voters.
        membership: Membership,
    },
    /// The write planned with `lsn_through` completed (written and fdatasynced). With
    /// several writes in flight completions may come in any order: the WAL is durable
    /// through it only once every earlier write completed too (`GroupCommit`).
    WriteDone {
        /// The write's last LSN.
        lsn_through: Lsn,
    },
    /// A WAL operation failed: the shard stops (a failed fdatasync is never retried).
    WriteFailed {
        /// What failed and what the disk said.
        fatal: Fatal,
    },
    /// A WAL read asked in `Effects::wal_reads` returned.
    WalReadDone {
        /// The read, as asked.
        read: WalRead,
        /// What the WAL held.
        outcome: WalReadOutcome,
    },
    /// A linearizable read of `group`: answered in `Effects::reads` once it may be
    /// served (at an applied index under the lease) or refused.
    Read {
        /// The group.
        group: GroupId,
        /// Identifies the read in `Effects::reads`.
        id: ReadId,
    },
    /// A read of a group's chosen log (`log_reads`): answered in `Effects::log_reads`,
    /// at once, after a WAL read, or once a value is chosen at its position.
    LogRead(LogReadAsk),
    /// A checkpoint file read asked in `Effects::checkpoint_reads` returned.
    CheckpointReadDone {
        /// The read, as asked.
        read: CheckpointRead,
        /// What it found.
        outcome: CheckpointReadOutcome,
    },
    /// The checkpoint of `group` at `through` asked for in `Effects::checkpoints`
    /// ended (or the save of one installed from a peer, `Effects::installs`). A failure is not fatal (the group retries by its policy).
    CheckpointDone {
        /// The group.
        group: GroupId,
        /// The checkpoint's instance (`TakeCheckpoint::base.through`).
        through: Instance,
        /// How it ended.
        outcome: CheckpointOutcome,
    },
    /// The truncation asked in `Effects::wal_truncate` is done: `rewrites` are the
    /// records to carry forward (appended in order, like any other record). A failed
    /// truncation is `WriteFailed` instead (fatal).
    WalTruncateDone {
        /// Records compaction carries forward (`wal::store::Truncation::rewrites`).
        rewrites: Vec<Record>,
    },
}
