//! A group's side of a checkpoint transfer: serving a peer whose catch-up the log can
//! no longer serve (the sender), and installing a peer's checkpoint in process (the
//! receiver). The bytes travel and are verified in `runtime::transfer`; this file holds
//! the protocol decisions.
//!
//! Sender: a WAL read for a peer that answers `WalReadOutcome::Truncated` (the
//! instances asked for lie below what the WAL still holds) becomes an
//! `Output::checkpoint_sends`: the shard streams the group's durable checkpoint.
//!
//! Receiver: `Input::InstallCheckpoint` with a verified `CheckpointBase` at instance
//! C above the applied watermark. The group drops its log at and below C, sets its
//! chosen and applied watermarks, checksum, StartWorking filter and memberships to the
//! checkpoint's, puts its log floor at C + 1 (it holds no slot at C: the value is in
//! the image only), persists `Record::Installed { through: C }` (with the checkpoint
//! file the executor saves, it lets a restart install the checkpoint again:
//! `Restore::checkpoint_provable`), and asks the sender for the log from C + 1 on.
//!
//! # Safety: an installing replica never votes on instances it has not got
//!
//! - Every instance at or below C is chosen: the sender took its checkpoint after
//!   applying C (only chosen values are applied), and the receiver verified the file's
//!   CRCs and that it names this group and C (`wal::checkpoint::decode`). The image
//!   and base are the chosen prefix's state at C, so applying resumes at C + 1 exactly
//!   as on the sender.
//! - Promises are untouched: `promised` never decreases (installing raises nothing and
//!   lowers nothing), so no ballot this replica rejected before becomes acceptable.
//! - Accepted-but-not-chosen slots ABOVE C stay in the log, unchanged: they are this
//!   replica's durable votes, and a promise from C + 1 on still reports them (a
//!   leader counting on them finds them). Slots at or below C go: their instances are
//!   chosen, so no leader may propose another value there, and a prepare from below
//!   the floor is never promised (`prepare_below_floor`: the report would lack them).
//! - An `Accept` for an instance at or below C is not acknowledged
//!   (`accept_below_installed`): the replica holds no value there, so an ack would be a
//!   vote for a value it never stored. (Acknowledging would be harmless for a value
//!   chosen at a higher ballot by quorum intersection, but an installer acknowledges
//!   only what it holds, and the simulator's `install` checker holds it to that.)
//!   Acks produced before the install and still held for durability are trimmed the
//!   same way by the shard (`runtime::shard::transfer`), as if lost on the network.
//! - A replica that lost state (the rejoin marker) installs like any other but still
//!   votes only once its rejoin completes (`learner`): installing moves its chosen
//!   watermark, never its `voting` flag, and the rejoin's conditions (peers heard,
//!   then its own Phase 1 with a quorum of the other voters) are unchanged.
//! - A leader or candidate that is sent a checkpoint is behind a value chosen without
//!   it: it steps down first (its in-flight proposals complete `Indeterminate`).
//! - The WAL keeps this replica's old records at or below C, some of them values it
//!   accepted that were never chosen. `Record::Installed { C }` marks them void as
//!   evidence: a restart that cannot use a checkpoint at or above C (a crash before
//!   the file was saved, a damaged file) starts from the older checkpoint (or from
//!   nothing) and proves nothing chosen above it (`Restore::chosen_proven`), instead
//!   of walking the recorded chosen watermark over stale slots (the simulator's seed
//!   9600125 did exactly that with a `Chosen { C }` record: two values applied at
//!   one instance). It resumes behind C, votes with the acceptances it really made,
//!   and catches up again.

use super::checkpoint::CheckpointBase;
use super::group::{Group, Role};
use super::output::{CheckpointSend, Completion, Output, ProposeError, Record};
use super::types::{Instance, Nanos, NodeId};

impl Group {
    /// A WAL read for `peer` from `first` found the log truncated there: asks the shard
    /// to stream this replica's durable checkpoint instead (`Output::checkpoint_sends`).
    pub(super) fn on_wal_truncated(&mut self, peer: NodeId, first: Instance, out: &mut Output) {
        self.ignore("catch_up_wal_truncated");
        out.checkpoint_sends.push(CheckpointSend {
            group: self.config.group,
            peer,
            from: first,
        });
    }

    /// Installs the verified checkpoint `base` received from `from` (see the module
    /// docs). Ignored (counted) when it is not above the applied watermark or is
    /// malformed.
    pub(super) fn install_checkpoint(
        &mut self,
        now: Nanos,
        from: NodeId,
        base: CheckpointBase,
        out: &mut Output,
    ) {
        if base.validate().is_err() || base.through > Instance::MAX {
            self.ignore("install_malformed");
            return;
        }
        if base.through <= self.applied_through {
            self.ignore("install_not_ahead");
            return;
        }
        if self.role != Role::Follower {
            self.step_down(now, out);
        }
        let through = base.through;
        // Chosen values this leader proposed that the image now covers: their outcome
        // here is unknown (the image does not say which value is whose).
        let covered: Vec<Instance> = self
            .awaiting_apply
            .range(..=through)
            .map(|(instance, _)| instance)
            .collect();
        for instance in covered {
            if let Some((_, ids)) = self.awaiting_apply.remove(&instance) {
                for id in ids {
                    out.complete.push(Completion {
                        id,
                        error: ProposeError::Indeterminate,
                    });
                }
            }
        }
        self.log = self.log.split_off(&through.next());
        self.log_floor = through.next();
        self.retained_size = 0;
        self.chosen_through = through;
        self.applied_through = through;
        self.checksum = base.checksum;
        self.start_working_applied = base.start_working_applied;
        // Entries at or below the image are no longer read back (`log_readable_from`).
        self.filters = super::filters::Filters::new(through, base.start_working_applied);
        self.configs = base.configs;
        self.config_change_pending = false;
        self.installed_through = through;
        self.counters.checkpoints_installed += 1;
        // Not a `Chosen` record: this replica's records at or below `through` may
        // hold values it accepted that were not chosen, which a `Chosen` watermark
        // would vouch for at a restart from an older checkpoint.
        out.persist.push(Record::Installed {
            group: self.config.group,
            through,
        });
        self.chosen_recorded = self.chosen_recorded.max(through);
        // The log from C + 1 on, from the peer that has it.
        self.catch_up_wanted = true;
        self.send(out, from, self.catch_up_request(through.next()));
        self.catch_up_due = now.plus(self.config.retransmit_ns);
    }

    /// The highest instance installed from a peer's checkpoint in this replica's life
    /// (0: none): an accept at or below it is not acknowledged (module docs).
    #[must_use]
    pub fn installed_through(&self) -> Instance {
        self.installed_through
    }
}
