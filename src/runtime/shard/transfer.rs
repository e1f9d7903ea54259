//! Checkpoint transfer, the shard's part (pure): streaming a group's durable checkpoint
//! file to a peer the log can no longer catch up, and receiving, verifying and handing
//! over a peer's. The protocol decisions (when to send one, how to install one safely)
//! are the group's (`paxos::transfer`); the file reads, the state machine's `restore`
//! and the save of the installed file are the executor's (`Effects::checkpoint_reads`,
//! `Effects::installs`).
//!
//! Sender: a group's `Output::checkpoint_sends` (its WAL read answered `Truncated`,
//! or the peer asked from more than `TransferPolicy::lag_instances` below the durable
//! checkpoint) starts a stream of the group's durable checkpoint
//! (`Checkpoints::durable_through`). The stream is pulled: each chunk is read from the
//! file (`CheckpointRead`, at most `chunk_size_max` bytes) and sent as a
//! `MessageBody::CheckpointChunk`; the receiver asks for each next one
//! (`CheckpointRequest { through, offset }`). A request naming a checkpoint the sender
//! no longer holds as durable restarts the stream at offset 0 of the current one. The
//! sender keeps no state beyond the reads in flight, so its crash or a new sender costs
//! nothing: the receiver's request (or timeout) resumes or restarts it.
//!
//! Receiver: chunks of one checkpoint are appended in order while they extend the bytes
//! held; a chunk at offset 0 of a newer checkpoint replaces a transfer in progress.
//! When all `total_size` bytes are held, the file is verified (`wal::checkpoint::decode`:
//! magic, CRC32C of header and image, group and instance) and, once the group's own
//! checkpoint is not in flight, installed: `Input::InstallCheckpoint`, then
//! `Effects::installs` for the executor (restore the state machine, save the file as the
//! group's own checkpoint, answer `CheckpointDone`). A damaged file is dropped whole
//! (counted); the group's catch-up asks again and a new transfer starts.
//!
//! Invariants (`Transfers::invariants`):
//! - at most one transfer received per group, at most `receives_max` per shard, each
//!   holding at most `size_max` bytes (a `total_size` above it is refused before any
//!   byte is kept) and exactly the prefix `[0, len)` of its file;
//! - at most one chunk read in flight per (group, peer), at most `sends_max` per shard;
//!   a chunk carries at most `chunk_size_max` bytes (small, so that a chunk in a batch
//!   delays the heartbeats' frames behind it by little: chunks are not given a lower
//!   priority, they are kept small);
//! - a transfer unanswered for `timeout_ns` asks again from where it stands, and is
//!   abandoned after `retries_max` silent timeouts (a separate, longer timer than the
//!   protocol's retransmissions: a chunk may take a while to read and send);
//! - nothing is installed that did not verify, nor at or below the group's applied
//!   watermark.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::Shard;
use crate::paxos::{
    CheckpointBase, CheckpointSend, GroupId, Input, Instance, Message, MessageBody, Nanos, NodeId,
};
use crate::wal::checkpoint::decode;

/// The limits of checkpoint transfers on one shard. Defaults (`TransferPolicy::default`):
/// 256 KiB chunks, checkpoints up to 1 GiB, 5 s timeout, 3 retries, 4 chunk reads and
/// 2 transfers received at once, lag policy off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferPolicy {
    /// Bytes of the file per chunk (at least 1; sent inside a message, so it must stay
    /// below the groups' `message_size_max`).
    pub chunk_size_max: usize,
    /// The largest checkpoint file a receiver accepts (a transfer announcing more is
    /// refused: the bytes are held in memory until verified).
    pub size_max: u64,
    /// A receiver that has not received the chunk it asked for within this long asks
    /// again.
    pub timeout_ns: u64,
    /// Silent timeouts after which a receiver abandons a transfer (its group's
    /// catch-up starts a new one).
    pub retries_max: u32,
    /// Chunk reads in flight on one shard (sender side).
    pub sends_max: usize,
    /// Transfers being received at once on one shard.
    pub receives_max: usize,
    /// Prefer a checkpoint transfer to a WAL read when a peer asks for catch-up from
    /// more than this many instances below the group's durable checkpoint (PhxPaxos
    /// sends a checkpoint to a learner that far behind: replaying the log would cost
    /// more than installing the image). 0: off (transfers only where the WAL no
    /// longer holds what is asked).
    pub lag_instances: u64,
}

impl Default for TransferPolicy {
    fn default() -> TransferPolicy {
        TransferPolicy {
            chunk_size_max: 256 << 10,
            size_max: 1 << 30,
            timeout_ns: 5_000_000_000,
            retries_max: 3,
            sends_max: 4,
            receives_max: 2,
            lag_instances: 0,
        }
    }
}

/// Read bytes `[offset, offset + size_max)` of `group`'s checkpoint file at `through`
/// for `peer`; answered with `ShardInput::CheckpointReadDone`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRead {
    /// The group.
    pub group: GroupId,
    /// The replica the chunk is for.
    pub peer: NodeId,
    /// The checkpoint's instance (the file `wal::checkpoint::file_name(group, through)`).
    pub through: Instance,
    /// The first byte.
    pub offset: u64,
    /// Bytes to read at most.
    pub size_max: usize,
}

/// What a checkpoint file read found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointReadOutcome {
    /// The bytes from the read's offset (fewer than asked at the end of the file), and
    /// the file's size.
    Data {
        /// The file's size.
        total_size: u64,
        /// The bytes.
        data: Bytes,
    },
    /// The file could not be read (removed by a newer checkpoint's save, or an I/O
    /// error): nothing is sent; the receiver asks again.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// A verified checkpoint the executor installs: `restore` the group's state machine
/// with `image` at `base.through`, BEFORE the applies from position `apply_index` of
/// `Effects::apply` on (the applies before it are the group's older ones), then save
/// the file (`base` and `image`, as a local checkpoint) and answer
/// `ShardInput::CheckpointDone { group, through: base.through, .. }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallCheckpoint {
    /// The group.
    pub group: GroupId,
    /// Its protocol state.
    pub base: CheckpointBase,
    /// The state machine's image.
    pub image: Bytes,
    /// Where in `Effects::apply` the install goes.
    pub apply_index: usize,
    /// The group's durable checkpoint before this install: its file must outlive the
    /// save of this one (`TakeCheckpoint::keep`).
    pub keep: Instance,
}

/// Counters of checkpoint transfers on one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransferCounters {
    /// Transfers asked of this shard as a sender (`checkpoint_sends`).
    pub sends_started: u64,
    /// Sends not started: the group has no durable checkpoint.
    pub sends_without_checkpoint: u64,
    /// Chunk reads not made: one in flight for the pair, or the shard's bound reached.
    pub reads_refused: u64,
    /// Chunks sent.
    pub chunks_sent: u64,
    /// Chunk reads that failed.
    pub reads_failed: u64,
    /// Chunks received and kept.
    pub chunks_received: u64,
    /// Chunks dropped (not the next piece, stale, or no room for another transfer).
    pub chunks_ignored: u64,
    /// Transfers refused for a `total_size` above `size_max`.
    pub refused_too_large: u64,
    /// Complete files that did not verify.
    pub refused_corrupt: u64,
    /// Transfers abandoned after `retries_max` timeouts.
    pub abandoned: u64,
    /// Checkpoints installed.
    pub installed: u64,
}

/// One transfer being received.
#[derive(Debug)]
struct Incoming {
    from: NodeId,
    through: Instance,
    total_size: u64,
    data: Vec<u8>,
    deadline: Nanos,
    retries: u32,
}

/// The checkpoint transfers of one shard. See the module docs.
#[derive(Debug, Default)]
pub(super) struct Transfers {
    policy: TransferPolicy,
    incoming: BTreeMap<GroupId, Incoming>,
    /// Verified, waiting for the group's own checkpoint to leave the way.
    verified: BTreeMap<GroupId, (NodeId, CheckpointBase, Bytes)>,
    reads_in_flight: BTreeSet<(GroupId, NodeId)>,
    counters: TransferCounters,
}

impl Transfers {
    pub(super) fn new(policy: TransferPolicy) -> Transfers {
        assert!(
            policy.chunk_size_max >= 1 && policy.sends_max >= 1 && policy.receives_max >= 1,
            "transfer limits must be at least 1: {policy:?}"
        );
        Transfers {
            policy,
            ..Transfers::default()
        }
    }

    /// The earliest receiver timeout.
    pub(super) fn next_deadline(&self) -> Option<Nanos> {
        self.incoming.values().map(|t| t.deadline).min()
    }

    pub(super) fn counters(&self) -> &TransferCounters {
        &self.counters
    }

    pub(super) fn invariants(&self) {
        assert!(self.incoming.len() <= self.policy.receives_max);
        assert!(self.reads_in_flight.len() <= self.policy.sends_max);
        for (group, t) in &self.incoming {
            assert!(
                t.total_size <= self.policy.size_max && t.data.len() as u64 <= t.total_size,
                "group {}: transfer holds {} of {} bytes (max {})",
                group.0,
                t.data.len(),
                t.total_size,
                self.policy.size_max
            );
        }
    }
}

impl Shard {
    /// A group asked to stream its durable checkpoint to a peer.
    pub(super) fn on_checkpoint_send(&mut self, send: CheckpointSend) {
        self.transfers.counters.sends_started += 1;
        let through = self.checkpoints.durable_through(send.group);
        if through == Instance(0) {
            self.transfers.counters.sends_without_checkpoint += 1;
            return;
        }
        self.read_chunk(send.group, send.peer, through, 0);
    }

    /// Whether a WAL read for a peer should be a checkpoint transfer instead
    /// (`TransferPolicy::lag_instances`).
    pub(super) fn prefers_transfer(&self, group: GroupId, from: Instance) -> bool {
        let lag = self.transfers.policy.lag_instances;
        lag > 0 && self.checkpoints.durable_through(group).0 > from.0.saturating_add(lag)
    }

    fn read_chunk(&mut self, group: GroupId, peer: NodeId, through: Instance, offset: u64) {
        let transfers = &mut self.transfers;
        if transfers.reads_in_flight.len() >= transfers.policy.sends_max
            || !transfers.reads_in_flight.insert((group, peer))
        {
            transfers.counters.reads_refused += 1;
            return;
        }
        self.pending_checkpoint_reads.push(CheckpointRead {
            group,
            peer,
            through,
            offset,
            size_max: transfers.policy.chunk_size_max,
        });
    }

    /// A peer asks for the next piece of the checkpoint at `through`.
    pub(super) fn on_checkpoint_request(
        &mut self,
        group: GroupId,
        peer: NodeId,
        through: Instance,
        offset: u64,
    ) {
        let durable = self.checkpoints.durable_through(group);
        if durable == Instance(0) {
            self.transfers.counters.sends_without_checkpoint += 1;
            return;
        }
        // Another checkpoint than the one it holds as durable: start over with that.
        let offset = if durable == through { offset } else { 0 };
        self.read_chunk(group, peer, durable, offset);
    }

    /// A chunk read returned: sends it.
    pub(super) fn on_checkpoint_read_done(
        &mut self,
        read: &CheckpointRead,
        outcome: CheckpointReadOutcome,
    ) {
        self.transfers
            .reads_in_flight
            .remove(&(read.group, read.peer));
        match outcome {
            CheckpointReadOutcome::Data { total_size, data } => {
                let end = read.offset.saturating_add(data.len() as u64);
                if end > total_size || (data.is_empty() && read.offset != total_size) {
                    self.transfers.counters.reads_failed += 1;
                    return;
                }
                self.transfers.counters.chunks_sent += 1;
                let message = Message {
                    group: read.group,
                    from: self.config.node,
                    to: read.peer,
                    body: MessageBody::CheckpointChunk {
                        through: read.through,
                        offset: read.offset,
                        total_size,
                        data,
                    },
                };
                self.outbox.entry(read.peer).or_default().push(message);
            }
            CheckpointReadOutcome::Failed { .. } => self.transfers.counters.reads_failed += 1,
        }
    }

    /// A piece of a peer's checkpoint arrived.
    pub(super) fn on_checkpoint_chunk(
        &mut self,
        now: Nanos,
        group: GroupId,
        from: NodeId,
        (through, offset, total_size): (Instance, u64, u64),
        data: &[u8],
    ) {
        let applied = self
            .groups
            .get(&group)
            .map_or(Instance::MAX, crate::paxos::Group::applied_through);
        let transfers = &mut self.transfers;
        if through <= applied || transfers.verified.contains_key(&group) {
            transfers.counters.chunks_ignored += 1;
            return;
        }
        if total_size > transfers.policy.size_max {
            transfers.counters.refused_too_large += 1;
            return;
        }
        let extends = transfers.incoming.get(&group).is_some_and(|t| {
            t.from == from
                && t.through == through
                && t.total_size == total_size
                && t.data.len() as u64 == offset
        });
        if !extends {
            let replaces = offset == 0
                && match transfers.incoming.get(&group) {
                    Some(t) => through > t.through || (through == t.through && t.from != from),
                    None => transfers.incoming.len() < transfers.policy.receives_max,
                };
            if !replaces {
                transfers.counters.chunks_ignored += 1;
                return;
            }
            transfers.incoming.insert(
                group,
                Incoming {
                    from,
                    through,
                    total_size,
                    data: Vec::new(),
                    deadline: now,
                    retries: 0,
                },
            );
        }
        transfers.counters.chunks_received += 1;
        let incoming = transfers
            .incoming
            .get_mut(&group)
            .expect("inserted or extended above");
        incoming.data.extend_from_slice(data);
        incoming.retries = 0;
        incoming.deadline = now.plus(transfers.policy.timeout_ns);
        if (incoming.data.len() as u64) < total_size {
            let offset = incoming.data.len() as u64;
            self.send_request(group, from, through, offset);
            return;
        }
        let incoming = transfers
            .incoming
            .remove(&group)
            .expect("present: extended above");
        match decode(Bytes::from(incoming.data), group, through) {
            Ok(checkpoint) => {
                transfers
                    .verified
                    .insert(group, (from, checkpoint.base, checkpoint.image));
            }
            Err(_) => transfers.counters.refused_corrupt += 1,
        }
    }

    fn send_request(&mut self, group: GroupId, to: NodeId, through: Instance, offset: u64) {
        let message = Message {
            group,
            from: self.config.node,
            to,
            body: MessageBody::CheckpointRequest { through, offset },
        };
        self.outbox.entry(to).or_default().push(message);
    }

    /// Receiver timeouts: ask again, or abandon.
    pub(super) fn transfer_tick(&mut self, now: Nanos) {
        let due: Vec<GroupId> = self
            .transfers
            .incoming
            .iter()
            .filter(|(_, t)| t.deadline <= now)
            .map(|(group, _)| *group)
            .collect();
        for group in due {
            let policy = self.transfers.policy;
            let incoming = self
                .transfers
                .incoming
                .get_mut(&group)
                .expect("collected above");
            incoming.retries += 1;
            if incoming.retries > policy.retries_max {
                self.transfers.incoming.remove(&group);
                self.transfers.counters.abandoned += 1;
                continue;
            }
            incoming.deadline = now.plus(policy.timeout_ns);
            let (from, through, offset) =
                (incoming.from, incoming.through, incoming.data.len() as u64);
            self.send_request(group, from, through, offset);
        }
    }

    /// Trims the acknowledgements of `group` still held for durability (or queued) at
    /// or below `through`: the values they vote for left the group's log with the
    /// install, and it votes only on what it holds (`paxos::transfer`, "Safety").
    /// Dropping an ack is as safe as losing it on the network.
    fn drop_votes_at_or_below(&mut self, group: GroupId, through: Instance) {
        let trim = |message: &mut Message| {
            if message.group != group {
                return true;
            }
            let MessageBody::Accepted { ranges, .. } = &mut message.body else {
                return true;
            };
            ranges.retain_mut(|range| {
                if range.first <= through {
                    range.first = through.next();
                }
                range.first <= range.last
            });
            !ranges.is_empty()
        };
        self.held.retain_mut(|(_, message)| trim(message));
        for messages in self.outbox.values_mut() {
            messages.retain_mut(&trim);
        }
    }

    /// Installs the verified checkpoints whose group is free (called in `flush`).
    pub(super) fn install_verified(&mut self, now: Nanos, apply_before: usize) {
        let ready: Vec<GroupId> = self
            .transfers
            .verified
            .keys()
            .copied()
            .filter(|group| self.checkpoints.may_install(*group))
            .collect();
        for group in ready {
            let (from, base, image) = self
                .transfers
                .verified
                .remove(&group)
                .expect("collected above");
            let Some(state) = self.groups.get(&group) else {
                continue;
            };
            if base.through <= state.applied_through()
                || base.through <= self.checkpoints.durable_through(group)
            {
                self.transfers.counters.chunks_ignored += 1;
                continue;
            }
            let through = base.through;
            let apply_index = apply_before + self.pending_apply.len();
            self.step_group(
                now,
                group,
                Input::InstallCheckpoint {
                    from,
                    base: base.clone(),
                },
            );
            if self.groups[&group].applied_through() != through {
                // The group refused it (counted there).
                continue;
            }
            self.transfers.counters.installed += 1;
            self.drop_votes_at_or_below(group, through);
            let keep = self.checkpoints.durable_through(group);
            self.checkpoints
                .on_install(group, through, self.lsn_planned());
            self.pending_installs.push(InstallCheckpoint {
                group,
                base,
                image,
                apply_index,
                keep,
            });
        }
    }
}
