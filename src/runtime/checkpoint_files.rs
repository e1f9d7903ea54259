//! The driver's checkpoint work that is not the loop: at start, restoring each group's
//! state machine from its newest usable checkpoint file; while running, saving one
//! checkpoint (run on glommio's blocking thread by `driver.rs`, off the shard's
//! thread). The decisions are elsewhere: when to take one (`checkpoints`, in the pure
//! `Shard`), the format and which file to install or remove (`wal::checkpoint`), the
//! file operations (`wal::file::checkpoint`).
//!
//! Invariants: a checkpoint is installed only at or below the chosen watermark the
//! group's WAL proves, after its CRCs verified; whatever is passed over is logged (a
//! damaged file loudly) and leaves the previous checkpoint, or the whole log, to
//! rebuild from; a state machine that refused an image is replaced by a fresh one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::checkpoints::{CheckpointOutcome, TakeCheckpoint};
use super::shard::ShardInput;
use super::state_machine::{CheckpointImage, StateMachine, StateMachineFactory};
use crate::paxos::{GroupId, Instance, Restore};
use crate::wal::checkpoint::{decode, install_newest, Unusable};
use crate::wal::file::checkpoint::{self as files, Listing};

/// The checkpoint files of a shard's data directory as found at start.
#[derive(Debug)]
pub struct Restorer {
    dir: PathBuf,
    shard: u16,
    listing: BTreeMap<GroupId, Listing>,
}

impl Restorer {
    /// Lists the checkpoint directory of `data_dir`: empty (with an error logged) when
    /// it cannot be listed, so the groups rebuild from their logs.
    #[must_use]
    pub fn new(data_dir: &Path, shard: u16) -> Restorer {
        let dir = files::dir(data_dir);
        let listing = files::list(&dir).unwrap_or_else(|error| {
            log::error!(
                "shard {shard}: {error}; starting without checkpoints (the WAL has everything)"
            );
            BTreeMap::new()
        });
        Restorer {
            dir,
            shard,
            listing,
        }
    }

    /// The checkpoint directory.
    #[must_use]
    pub fn into_dir(self) -> PathBuf {
        self.dir
    }

    /// Restores `machine` of `group` from its newest usable checkpoint and records the
    /// checkpoint in `restore` (the group then resumes applying after it); leaves both
    /// as they were when none is usable.
    pub fn restore(
        &self,
        group: GroupId,
        restore: &mut Restore,
        machine: &mut Box<dyn StateMachine>,
        factory: &StateMachineFactory,
    ) {
        let Some(listing) = self.listing.get(&group).filter(|l| !l.saved.is_empty()) else {
            return;
        };
        let (dir, shard) = (&self.dir, self.shard);
        let proven = restore.chosen_proven();
        let load = |through: Instance| {
            let bytes = files::read(dir, group, through)
                .map_err(|e| Unusable::Unreadable(e.to_string()))?;
            decode(bytes, group, through).map_err(Unusable::Damaged)
        };
        let install = |checkpoint: &crate::wal::checkpoint::Checkpoint| {
            let result = machine.restore(checkpoint.base.through, &checkpoint.image);
            if result.is_err() {
                // Never apply on a half-installed state.
                *machine = factory(group);
            }
            result
        };
        let (base, passed) = install_newest(&listing.saved, proven, load, install);
        for (through, why) in passed {
            match why {
                Unusable::Unproven { .. } => log::info!(
                    "shard {shard} group {}: checkpoint at {} not used: {why}",
                    group.0,
                    through.0
                ),
                Unusable::Unreadable(_) | Unusable::Damaged(_) | Unusable::Refused(_) => {
                    log::error!(
                        "shard {shard} group {}: checkpoint at {} IGNORED: {why}; falling \
                         back to an older checkpoint or the WAL",
                        group.0,
                        through.0
                    );
                }
            }
        }
        if let Some(base) = &base {
            log::info!(
                "shard {shard} group {}: restored from the checkpoint at {} (the WAL proves {})",
                group.0,
                base.through.0,
                proven.0
            );
        }
        restore.checkpoint = base;
    }
}

/// Saves one checkpoint: exports the image (a deferred export runs here) and writes
/// the file durably. Blocking: run it off the shard's thread.
#[must_use]
pub fn save(dir: PathBuf, take: TakeCheckpoint, image: CheckpointImage) -> CheckpointOutcome {
    let bytes = image.into_bytes();
    match files::save(&dir, take.group, &take.base, &bytes) {
        Ok(_) => CheckpointOutcome::Saved,
        Err(error) => CheckpointOutcome::Failed {
            error: error.to_string(),
        },
    }
}

/// The shard's input for a checkpoint that ended; a failure is logged (not fatal: the
/// shard asks again by its policy).
#[must_use]
pub fn done(
    shard: u16,
    group: GroupId,
    through: Instance,
    outcome: CheckpointOutcome,
) -> ShardInput {
    if let CheckpointOutcome::Failed { error } = &outcome {
        log::warn!(
            "shard {shard} group {}: checkpoint at {} failed: {error}",
            group.0,
            through.0
        );
    }
    ShardInput::CheckpointDone {
        group,
        through,
        outcome,
    }
}
