//! Checkpoints in the simulator: carrying out a shard's `TakeCheckpoint` on the node's
//! `SimFs` in the real order (temporary file written, fdatasynced, renamed, directory
//! synced, older files removed, each step a scheduled event a crash may interrupt),
//! failing some saves, damaging some files before a restart, and restoring each group
//! at start from its newest usable checkpoint with the real choice
//! (`wal::checkpoint::install_newest`) and the real decoder.
//!
//! Draws come from the checkpoint stream (`Cluster::checkpoint_prng`), so a seed whose
//! checkpoints are off keeps every draw of its run.

use bytes::Bytes;

use super::{Cluster, Event};
use crate::paxos::{CheckpointBase, GroupConfig, GroupId, Instance, Restore};
use crate::runtime::state_machine::StateMachine;
use crate::runtime::{shard_of, CheckpointOutcome, ShardInput, TakeCheckpoint};
use crate::sim::checkers::checkpoint::Restored;
use crate::sim::checkers::Violation;
use crate::sim::machine::SimMachine;
use crate::wal::checkpoint::{
    decode, encode_header, file_name, install_newest, parse_file_name, surplus, Unusable,
};

/// The step of a save that an event carries out next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    /// The temporary file is written: fdatasync it and rename it.
    Written,
    /// Renamed: sync the directory, remove the surplus, answer `Saved`.
    Renamed,
    /// The save fails (an I/O error drawn by the seed): answer `Failed`.
    Fails,
}

impl Cluster {
    /// Starts the save of `take` on `node`: the image now (after this step's applies),
    /// the file's steps later.
    pub(super) fn take_checkpoint(&mut self, node: usize, shard: usize, take: TakeCheckpoint) {
        let group = take.group;
        let image = self.nodes[node]
            .machines
            .get(&group)
            .and_then(StateMachine::checkpoint)
            .map(|image| image.into_bytes());
        let Some(image) = image else {
            panic!("simulated machines always checkpoint (group {})", group.0);
        };
        self.save_checkpoint(node, shard, group, &take.base, &image);
    }

    /// Starts saving the checkpoint of `group` at `base` over `image` (a local one, or
    /// one installed from a peer): the temporary file now, the next steps later.
    pub(super) fn save_checkpoint(
        &mut self,
        node: usize,
        shard: usize,
        group: GroupId,
        base: &CheckpointBase,
        image: &[u8],
    ) {
        let through = base.through;
        let mut bytes = encode_header(group, base, image);
        bytes.extend_from_slice(image);
        self.nodes[node]
            .fs
            .write_file(&file_name(group, through, true), &bytes);
        let fails = self.options.checkpoint_failure_ppm > 0
            && self
                .checkpoint_prng
                .chance_ppm(self.options.checkpoint_failure_ppm);
        let stage = if fails { Stage::Fails } else { Stage::Written };
        self.schedule_checkpoint(node, shard, group, through, stage);
    }

    fn schedule_checkpoint(
        &mut self,
        node: usize,
        shard: usize,
        group: GroupId,
        through: Instance,
        stage: Stage,
    ) {
        let latency = self.checkpoint_prng.range(
            self.options.disk_write_latency_ns_min,
            self.options.disk_write_latency_ns_max,
        ) + self.checkpoint_prng.range(
            self.options.disk_sync_latency_ns_min,
            self.options.disk_sync_latency_ns_max,
        );
        let incarnation = self.nodes[node].incarnation;
        self.schedule(
            self.now + latency,
            Event::Checkpoint {
                node,
                shard,
                incarnation,
                group,
                through,
                stage,
            },
        );
    }

    /// The next step of a save (ignored when the node crashed since it began).
    pub(super) fn on_checkpoint(
        &mut self,
        node: usize,
        shard: usize,
        incarnation: u32,
        group: GroupId,
        through: Instance,
        stage: Stage,
    ) -> Result<(), Violation> {
        if !self.nodes[node].up || self.nodes[node].incarnation != incarnation {
            return Ok(());
        }
        let temporary = file_name(group, through, true);
        let name = file_name(group, through, false);
        let outcome = match stage {
            Stage::Written => {
                let fs = &mut self.nodes[node].fs;
                // BEFORE the rename (wal::file::checkpoint::save).
                fs.fdatasync(&temporary);
                fs.rename(&temporary, &name);
                self.schedule_checkpoint(node, shard, group, through, Stage::Renamed);
                return Ok(());
            }
            Stage::Renamed => {
                // The group's durable checkpoint, as when the save was asked for
                // (`TakeCheckpoint::keep`): the new one is not durable yet.
                let keep = self.nodes[node].shards[shard]
                    .shard
                    .as_ref()
                    .map_or(Instance(0), |core| {
                        core.checkpoints().durable_through(group)
                    });
                let fs = &mut self.nodes[node].fs;
                fs.sync_dir();
                let mut saved = Vec::new();
                let mut stale = Vec::new();
                for file in fs.names().iter().filter_map(|n| parse_file_name(n)) {
                    if file.group != group {
                        continue;
                    }
                    if file.temporary {
                        stale.push(file_name(group, file.through, true));
                    } else {
                        saved.push(file.through);
                    }
                }
                stale.extend(
                    surplus(&saved, through, keep)
                        .into_iter()
                        .map(|i| file_name(group, i, false)),
                );
                for name in &stale {
                    fs.remove(name);
                }
                if !stale.is_empty() {
                    fs.sync_dir();
                }
                self.report.checkpoints_saved += 1;
                CheckpointOutcome::Saved
            }
            Stage::Fails => {
                self.report.checkpoints_failed += 1;
                CheckpointOutcome::Failed {
                    error: "simulated I/O error".to_string(),
                }
            }
        };
        let input = ShardInput::CheckpointDone {
            group,
            through,
            outcome,
        };
        self.step_shard(node, shard, input)
    }

    /// At a start: fresh state machines for `groups` of `node`, each restored from its
    /// newest usable checkpoint (recorded in its `Restore`); some newest files damaged
    /// first when the seed says so. Returns what each group was restored from, for
    /// [`Cluster::observe_restores`] once the checkers know of the restart.
    pub(super) fn restore_checkpoints(
        &mut self,
        node: usize,
        groups: &mut [(GroupConfig, Restore)],
    ) -> Vec<(GroupId, Option<Restored>)> {
        let id = self.nodes[node].id;
        let mut restored = Vec::with_capacity(groups.len());
        for (config, restore) in groups.iter_mut() {
            let group = config.group;
            let mut saved: Vec<Instance> = self.nodes[node]
                .fs
                .names()
                .iter()
                .filter_map(|n| parse_file_name(n))
                .filter(|f| f.group == group && !f.temporary)
                .map(|f| f.through)
                .collect();
            saved.sort_unstable();
            if let Some(newest) = saved.last() {
                if self.options.checkpoint_damage_ppm > 0
                    && self
                        .checkpoint_prng
                        .chance_ppm(self.options.checkpoint_damage_ppm)
                {
                    let name = file_name(group, *newest, false);
                    let size = self.nodes[node].fs.read(&name).map_or(0, |b| b.len());
                    let offset = self.checkpoint_prng.index(size.max(1));
                    let bit = self.checkpoint_prng.below(8) as u8;
                    self.nodes[node].fs.flip_bit(&name, offset, bit);
                    self.checkers.checkpoint.observe_damaged(id, group);
                    self.report.checkpoints_damaged += 1;
                }
            }
            let proven = restore.installable_through();
            let fs = &self.nodes[node].fs;
            let load = |through: Instance| {
                let bytes = fs
                    .read(&file_name(group, through, false))
                    .ok_or_else(|| Unusable::Unreadable("no such file".to_string()))?;
                decode(Bytes::from(bytes), group, through).map_err(Unusable::Damaged)
            };
            let mut machine = SimMachine::new();
            let (base, _passed) = install_newest(&saved, proven, load, |checkpoint| {
                let result = machine.restore(checkpoint.base.through, &checkpoint.image);
                if result.is_err() {
                    machine = SimMachine::new();
                }
                result
            });
            restored.push((
                group,
                base.as_ref().map(|b| Restored {
                    through: b.through,
                    state: machine.state(),
                    checksum: b.checksum,
                }),
            ));
            restore.checkpoint = base;
            self.nodes[node].machines.insert(group, machine);
        }
        restored
    }

    /// Checks each group's restore and resumes the checkers' view of its applies.
    pub(super) fn observe_restores(
        &mut self,
        node: usize,
        restored: Vec<(GroupId, Option<Restored>)>,
    ) -> Result<(), Violation> {
        let id = self.nodes[node].id;
        let shard_count = self.shard_count();
        for (group, restored) in restored {
            let shard = usize::from(shard_of(group, shard_count));
            let vote_floor = self.nodes[node].shards[shard]
                .shard
                .as_ref()
                .and_then(|s| s.group(group))
                .map_or(Instance(1), |g| g.vote_floor());
            self.checkers.truncation.observe_restore(
                id,
                group,
                restored.map(|r| r.through),
                vote_floor,
            )?;
            let reference =
                restored.and_then(|r| self.checkers.checksum.checksum(group, r.through));
            self.checkers
                .checkpoint
                .observe_restore(id, group, restored, reference)?;
            if let Some(restored) = restored {
                self.report.checkpoint_restores += 1;
                self.checkers.resume(id, group, restored.through)?;
            }
        }
        Ok(())
    }
}
