//! The shard's checkpoint writer: the driver's checkpoint file work. At start it
//! restores each group's state machine from its newest usable checkpoint file
//! (`Restorer`); while running it saves the checkpoints the shard asks for, each on
//! glommio's blocking thread (off the shard's thread), and reports each outcome back to
//! the shard as a `ShardInput::CheckpointDone` (`CheckpointWriter`); it also saves the
//! checkpoints installed from peers the same way, and reads pieces of checkpoint files
//! for peers (`ShardInput::CheckpointReadDone`), on the blocking thread too. It decides
//! nothing: when to take one is the pure `Shard`'s call (`runtime::checkpoints`), the
//! format and which file to install or remove are `wal::checkpoint`'s, the file
//! operations `wal::file::checkpoint`'s.
//!
//! Invariants: a checkpoint is installed only at or below the chosen watermark the
//! group's WAL proves, after its CRCs verified; whatever is passed over is logged (a
//! damaged file loudly) and leaves the previous checkpoint, or the whole log, to
//! rebuild from; a state machine that refused an image is replaced by a fresh one;
//! every checkpoint started is answered exactly once (`CheckpointDone`), a failure
//! never being fatal.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::paxos::{GroupId, Instance, Nanos, Restore};
use crate::runtime::checkpoints::{CheckpointOutcome, TakeCheckpoint};
use crate::runtime::notify::Notify;
use crate::runtime::shard::{CheckpointRead, CheckpointReadOutcome, Shard, ShardInput};
use crate::runtime::state_machine::{CheckpointImage, StateMachine, StateMachineFactory};
use crate::wal::checkpoint::{decode, install_newest, Unusable};
use crate::wal::file::checkpoint::{self as files, Listing};

/// Checkpoints ended, left by their tasks for the loop: group, instance, outcome.
type CheckpointsDone = Rc<RefCell<Vec<(GroupId, Instance, CheckpointOutcome)>>>;

/// Chunk reads ended, left by their tasks for the loop.
type ReadsDone = Rc<RefCell<Vec<(CheckpointRead, CheckpointReadOutcome)>>>;

/// The checkpoint files of a shard's data directory as found at start.
#[derive(Debug)]
pub(super) struct Restorer {
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

    /// The writer of this shard's checkpoints, once every group is restored.
    #[must_use]
    pub fn into_writer(self, wake: Rc<Notify>) -> CheckpointWriter {
        CheckpointWriter {
            shard: self.shard,
            dir: self.dir,
            wake,
            done: Rc::new(RefCell::new(Vec::new())),
            reads_done: Rc::new(RefCell::new(Vec::new())),
        }
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
        let proven = restore.installable_through();
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

/// Saves the checkpoints the shard asks for, one task each, and reports their outcomes.
pub(super) struct CheckpointWriter {
    /// The shard index (for the log).
    shard: u16,
    /// Where the checkpoint files live.
    dir: PathBuf,
    /// The loop's wake-up: a task notifies it when it leaves an outcome.
    wake: Rc<Notify>,
    /// Outcomes left by the tasks, not yet reported to the shard.
    done: CheckpointsDone,
    /// Chunk reads for peers that ended, not yet reported to the shard.
    reads_done: ReadsDone,
}

impl CheckpointWriter {
    /// Saves `take` with `image`, the state machine's image taken on the shard's thread
    /// right AFTER the applies through `take.base.through` (`None`: the machine does
    /// not checkpoint). The file is written on glommio's blocking thread while the
    /// shard goes on; the outcome comes back through `poll`.
    pub fn start(&self, take: TakeCheckpoint, image: Option<CheckpointImage>) {
        let (group, through) = (take.group, take.base.through);
        let (done, wake) = (Rc::clone(&self.done), Rc::clone(&self.wake));
        let dir = self.dir.clone();
        glommio::spawn_local(async move {
            let outcome = match image {
                Some(image) => {
                    let save = move || save(&dir, &take, image);
                    glommio::executor().spawn_blocking(save).await
                }
                None => CheckpointOutcome::Unsupported,
            };
            done.borrow_mut().push((group, through, outcome));
            wake.notify();
        })
        .detach();
    }

    /// Reads a piece of a checkpoint file for a peer (`Effects::checkpoint_reads`) on
    /// glommio's blocking thread, off the shard's thread and off the WAL's write
    /// path; the outcome comes back through `poll`.
    pub fn read(&self, read: CheckpointRead) {
        let (done, wake) = (Rc::clone(&self.reads_done), Rc::clone(&self.wake));
        let dir = self.dir.clone();
        glommio::spawn_local(async move {
            let request = read.clone();
            let outcome = glommio::executor()
                .spawn_blocking(move || read_piece(&dir, &request))
                .await;
            done.borrow_mut().push((read, outcome));
            wake.notify();
        })
        .detach();
    }

    /// Reports every checkpoint that ended to `shard` (a failure is logged, not fatal:
    /// the shard asks again by its policy), and every chunk read.
    pub fn poll(&self, now: Nanos, shard: &mut Shard) {
        let reads = std::mem::take(&mut *self.reads_done.borrow_mut());
        for (read, outcome) in reads {
            if let CheckpointReadOutcome::Failed { error } = &outcome {
                log::warn!(
                    "shard {} group {}: reading the checkpoint at {} for node {} failed: {error}",
                    self.shard,
                    read.group.0,
                    read.through.0,
                    read.peer.0
                );
            }
            shard.step(now, ShardInput::CheckpointReadDone { read, outcome });
        }
        let done = std::mem::take(&mut *self.done.borrow_mut());
        for (group, through, outcome) in done {
            if let CheckpointOutcome::Failed { error } = &outcome {
                log::warn!(
                    "shard {} group {}: checkpoint at {} failed: {error}",
                    self.shard,
                    group.0,
                    through.0
                );
            }
            let input = ShardInput::CheckpointDone {
                group,
                through,
                outcome,
            };
            shard.step(now, input);
        }
    }
}

/// Reads bytes `[offset, offset + size_max)` of a checkpoint file (fewer at its end).
/// Blocking: run it off the shard's thread.
fn read_piece(dir: &Path, read: &CheckpointRead) -> CheckpointReadOutcome {
    use std::io::{Read, Seek, SeekFrom};
    let path = dir.join(crate::wal::checkpoint::file_name(
        read.group,
        read.through,
        false,
    ));
    let result = (|| -> std::io::Result<CheckpointReadOutcome> {
        let mut file = std::fs::File::open(&path)?;
        let total_size = file.metadata()?.len();
        let start = read.offset.min(total_size);
        file.seek(SeekFrom::Start(start))?;
        let want = (total_size - start).min(read.size_max as u64);
        let mut data = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
        file.take(want).read_to_end(&mut data)?;
        Ok(CheckpointReadOutcome::Data {
            total_size,
            data: bytes::Bytes::from(data),
        })
    })();
    result.unwrap_or_else(|error| CheckpointReadOutcome::Failed {
        error: format!("{}: {error}", path.display()),
    })
}

/// Saves one checkpoint: exports the image (a deferred export runs here) and writes
/// the file durably. Blocking: run it off the shard's thread.
#[must_use]
fn save(dir: &Path, take: &TakeCheckpoint, image: CheckpointImage) -> CheckpointOutcome {
    let bytes = image.into_bytes();
    match files::save(dir, take.group, &take.base, take.keep, &bytes) {
        Ok(_) => CheckpointOutcome::Saved,
        Err(error) => CheckpointOutcome::Failed {
            error: error.to_string(),
        },
    }
}
