//! Checkpoint transfer in the simulator: reading pieces of a node's checkpoint files
//! for its peers (`Effects::checkpoint_reads`) from its `SimFs`, installing a verified
//! checkpoint received from a peer into the group's `SimMachine` (`Effects::installs`)
//! and saving it like a local one, and the seed's option that makes WAL reads below a
//! group's durable checkpoint answer `Truncated` (WAL truncation's observable effect).
//!
//! Draws (read latencies) come from the checkpoint stream, and only when a transfer
//! happens: seeds without one keep every draw of their run.

use bytes::Bytes;

use super::{Cluster, Event};
use crate::paxos::{GroupId, Instance, WalRead, WalReadOutcome};
use crate::runtime::state_machine::StateMachine;
use crate::runtime::{CheckpointRead, CheckpointReadOutcome, InstallCheckpoint};
use crate::sim::checkers::checkpoint::Restored;
use crate::sim::checkers::Violation;
use crate::sim::machine::SimMachine;
use crate::wal::checkpoint::file_name;

impl Cluster {
    /// With `SimOptions::transfer_truncated_reads`, the answer to `read` when it starts
    /// at or below its group's durable checkpoint on `node`: the WAL "no longer holds"
    /// it.
    pub(super) fn truncated_below_checkpoint(
        &self,
        node: usize,
        shard: usize,
        read: &WalRead,
    ) -> Option<WalReadOutcome> {
        if !self.options.transfer_truncated_reads {
            return None;
        }
        let core = self.nodes[node].shards[shard].shard.as_ref()?;
        let durable = core.checkpoints().durable_through(read.group);
        (durable >= Instance(1) && read.from <= durable).then(|| WalReadOutcome::Truncated {
            first_available: durable.next(),
        })
    }

    /// Reads a piece of a checkpoint file on `node` and answers after a disk latency.
    pub(super) fn checkpoint_read(&mut self, node: usize, shard: usize, read: CheckpointRead) {
        let name = file_name(read.group, read.through, false);
        let outcome = match self.nodes[node].fs.read(&name) {
            Some(bytes) => {
                let total_size = bytes.len() as u64;
                let start = usize::try_from(read.offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let end = start.saturating_add(read.size_max).min(bytes.len());
                CheckpointReadOutcome::Data {
                    total_size,
                    data: Bytes::copy_from_slice(&bytes[start..end]),
                }
            }
            None => CheckpointReadOutcome::Failed {
                error: format!("no file {name}"),
            },
        };
        let latency = self.checkpoint_prng.range(
            self.options.disk_write_latency_ns_min,
            self.options.disk_write_latency_ns_max,
        );
        let incarnation = self.nodes[node].incarnation;
        self.schedule(
            self.now + latency,
            Event::CheckpointReadDone {
                node,
                shard,
                incarnation,
                read,
                outcome,
            },
        );
    }

    /// Installs a verified checkpoint from a peer into the group's machine (the driver
    /// calls `StateMachine::restore` on a fresh machine the same way), checks it, and
    /// starts saving it as the group's own checkpoint.
    pub(super) fn install(
        &mut self,
        node: usize,
        shard: usize,
        install: InstallCheckpoint,
    ) -> Result<(), Violation> {
        let id = self.nodes[node].id;
        let (group, through) = (install.group, install.base.through);
        let mut machine = SimMachine::new();
        machine
            .restore(through, &install.image)
            .map_err(|why| install_violation(id.0, group, through, &why))?;
        let restored = Restored {
            through,
            state: machine.state(),
            checksum: install.base.checksum,
        };
        self.nodes[node].machines.insert(group, machine);
        self.report.checkpoints_installed += 1;
        let applied = self.checkers.prefix.applied_through(id, group);
        self.checkers
            .install
            .observe_install(id, group, applied, through)?;
        let reference = self.checkers.checksum.checksum(group, through);
        self.checkers
            .checkpoint
            .observe_restore(id, group, Some(restored), reference)?;
        self.checkers.resume(id, group, through)?;
        self.save_checkpoint(node, shard, group, &install.base, &install.image);
        Ok(())
    }
}

fn install_violation(node: u32, group: GroupId, through: Instance, why: &str) -> Violation {
    Violation::new(
        "install",
        format!(
            "node {node} group {}: a verified checkpoint at {} refused by the machine: {why}",
            group.0, through.0
        ),
    )
}
