//! Faults and recovery: crashes (some losing the disk), partitions, bit flips, the
//! heal that starts the liveness phase, and a node's start from its disks.

use super::execute::recovered_fact;
use super::{Cluster, Event, SimWrites, LIVENESS_BOUND_NS, MS};
use crate::paxos::{Instance, Lsn, NodeId, Record, Restore};
use crate::runtime::{shard_of, Shard, ShardConfig, ShardInput};
use crate::sim::checkers::{PartialKind, Violation};
use crate::sim::network::NetworkOptions;
use crate::wal::index::LogIndex;
use crate::wal::{self, DecodeLimits, GroupCommit, GroupCommitConfig, ScanConfig};

impl Cluster {
    pub(super) fn inject_crash(&mut self) {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|n| self.nodes[*n].up)
            .collect();
        if up.len() <= 1 {
            return;
        }
        let node = up[self.prng.index(up.len())];
        // A torn write matters only when a crash finds a write in flight: with half
        // the seed's torn-write chance, this crash waits for the next write any node
        // issues and strikes while it is in flight (the crash rate stays the seed's).
        let torn_ppm = self.options.disk_torn_write_ppm;
        if torn_ppm > 0 && self.crash_prng.chance_ppm(torn_ppm / 2) {
            self.crash_at_next_write = true;
            return;
        }
        // One crash in five (at least) loses its disk when the seed enables it.
        let lose_disk = self.damaged.is_none()
            && self.options.disk_loss_ppm > 0
            && self
                .prng
                .chance_ppm(self.options.disk_loss_ppm.max(200_000))
            && self.state_loss_allowed(node);
        self.crash_and_restart(node, lose_disk);
    }

    /// Crashes `node` now and schedules its restart.
    pub(super) fn crash_and_restart(&mut self, node: usize, lose_disk: bool) {
        self.crash(node, lose_disk);
        let delay = self.prng.range(
            self.options.restart_delay_ns_min,
            self.options.restart_delay_ns_max,
        );
        self.schedule(self.now + delay, Event::Restart { node });
    }

    /// `node` just issued a write: when a crash waits for one, it strikes before the
    /// write completes (1 ns later: write latencies are at least 10 µs).
    pub(super) fn crash_if_waiting(&mut self, node: usize) {
        if std::mem::take(&mut self.crash_at_next_write) && !self.liveness {
            let incarnation = self.nodes[node].incarnation;
            self.schedule(self.now + 1, Event::CrashInFlight { node, incarnation });
        }
    }

    pub(super) fn crash(&mut self, node: usize, lose_disk: bool) {
        self.checkers.partial.spoil();
        let n = &mut self.nodes[node];
        n.up = false;
        n.incarnation += 1;
        self.network.drop_node(n.id);
        for slot in &mut n.shards {
            slot.shard = None;
            slot.disk.crash(
                &mut self.crash_prng,
                self.options.disk_unsynced_keep_ppm,
                self.options.disk_torn_write_ppm,
            );
        }
        n.fs.crash(&mut self.checkpoint_prng);
        n.machines.clear();
        if lose_disk {
            n.wipe_on_restart = true;
            self.damaged = Some(node);
            self.report.disks_lost += 1;
            self.note_state_loss();
        }
        self.proposals_in_flight
            .retain(|_, (owner, _)| *owner != node);
        self.reads_in_flight.retain(|_, owner| *owner != node);
        self.members.forget(node);
        self.forget_log_reads(node);
        self.report.crashes += 1;
    }

    pub(super) fn inject_partition(&mut self) {
        if self.options.partition_partial_ppm > 0
            && self
                .partial_prng
                .chance_ppm(self.options.partition_partial_ppm)
        {
            self.inject_partial_partition();
            return;
        }
        let count = self.nodes.len();
        let mut sides: Vec<Vec<NodeId>> = vec![Vec::new(), Vec::new()];
        for node in &self.nodes {
            sides[self.prng.index(2)].push(node.id);
        }
        sides.retain(|s| !s.is_empty());
        if sides.len() < 2 || count < 2 {
            let at = self.now + 10 * MS;
            self.schedule(at, Event::PartitionEnd);
            return;
        }
        self.network.partition(&sides);
        self.report.partitions += 1;
        let duration = self.prng.range(
            self.options.partition_duration_ns_min,
            self.options.partition_duration_ns_max,
        );
        self.schedule(self.now + duration, Event::PartitionEnd);
    }

    /// A partial partition: one link cut both ways, one way only, or flapping, with
    /// every other link up. One end is a group's leader half the time (a leader that
    /// loses one follower is the case that matters most), and the partial fault's cost
    /// is measured (`checkers::partial`). Draws from `partial_prng` only.
    fn inject_partial_partition(&mut self) {
        let count = self.nodes.len();
        if count < 2 {
            let at = self.now + 10 * MS;
            self.schedule(at, Event::PartitionEnd);
            return;
        }
        let leader = if self.partial_prng.below(2) == 0 {
            let group = self.groups[self.partial_prng.index(self.groups.len())];
            self.leader_node(group)
        } else {
            None
        };
        let a = leader.unwrap_or_else(|| self.partial_prng.index(count));
        let b = (a + 1 + self.partial_prng.index(count - 1)) % count;
        let leader_end = self
            .groups
            .iter()
            .any(|g| matches!(self.leader_node(*g), Some(n) if n == a || n == b));
        let (a, b) = (self.nodes[a].id, self.nodes[b].id);
        let kind = match self.partial_prng.below(3) {
            0 => PartialKind::Link,
            1 => PartialKind::OneWay,
            _ => PartialKind::Flapping,
        };
        // One way: half the time the leader cannot send, half the time it cannot hear.
        let (from, to) = if self.partial_prng.below(2) == 0 {
            (a, b)
        } else {
            (b, a)
        };
        self.network.cut_link(from, to, kind != PartialKind::OneWay);
        if kind == PartialKind::Flapping {
            let period_ns = self.partial_prng.range(5 * MS, 300 * MS);
            let generation = self.flap_generation;
            self.schedule(
                self.now + period_ns,
                Event::LinkFlap {
                    a,
                    b,
                    period_ns,
                    generation,
                },
            );
        }
        let all_up = self.nodes.iter().all(|n| n.up);
        self.checkers
            .partial
            .begin(kind, self.now, all_up, leader_end);
        let duration = self.partial_prng.range(
            self.options.partition_duration_ns_min,
            self.options.partition_duration_ns_max,
        );
        self.schedule(self.now + duration, Event::PartitionEnd);
    }

    /// The partition in force ends: every link mended, a flapping one stopped, the
    /// partial fault's measurement closed.
    pub(super) fn end_partition(&mut self) {
        self.network.heal();
        self.flap_generation += 1;
        self.checkers.partial.end(self.now);
    }

    /// A flapping link turns, unless its partition ended (a stale `generation`).
    pub(super) fn flap_link(&mut self, a: NodeId, b: NodeId, period_ns: u64, generation: u64) {
        if generation != self.flap_generation || self.liveness {
            return;
        }
        if self.network.is_cut(a, b) {
            self.network.mend_link(a, b);
        } else {
            self.network.cut_link(a, b, true);
        }
        self.schedule(
            self.now + period_ns,
            Event::LinkFlap {
                a,
                b,
                period_ns,
                generation,
            },
        );
    }

    /// When the seed enables bit flips, a few land in each safety phase (more with a
    /// higher `disk_bit_flip_ppm`): rare enough that the damaged replica can rejoin
    /// between two of them, frequent enough to matter.
    pub(super) fn bit_flip_interval(&mut self) -> u64 {
        let per_phase = 1 + u64::from(self.options.disk_bit_flip_ppm) / 500;
        self.exponential((self.options.safety_phase_ns / per_phase).max(100 * MS))
    }

    pub(super) fn inject_bit_flip(&mut self) {
        if self.damaged.is_some() {
            return;
        }
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|n| self.nodes[*n].up)
            .collect();
        if up.is_empty() {
            return;
        }
        let node = up[self.prng.index(up.len())];
        let shard = self.prng.index(self.nodes[node].shards.len());
        if !self.state_loss_allowed(node) {
            return;
        }
        let limit = self.nodes[node].shards[shard].writes.flip_limit();
        if limit == 0 {
            return;
        }
        let offset = self.prng.below(limit);
        let bit = self.prng.below(8) as u8;
        self.nodes[node].shards[shard].disk.flip_bit(offset, bit);
        let id = self.nodes[node].id;
        self.checkers.recovery.observe_damage(id, shard, offset);
        self.damaged = Some(node);
        self.report.bit_flips += 1;
        self.note_state_loss();
        // Damage matters when the log is read back: crash the node soon.
        self.crash(node, false);
        let delay = self.prng.range(
            self.options.restart_delay_ns_min,
            self.options.restart_delay_ns_max,
        );
        self.schedule(self.now + delay, Event::Restart { node });
    }

    pub(super) fn heal(&mut self) -> Result<(), Violation> {
        self.liveness = true;
        self.end_partition();
        let mut calm = NetworkOptions::from_options(&self.options);
        calm.loss_ppm = 0;
        calm.duplicate_ppm = 0;
        self.network.set_options(calm);
        for node in 0..self.nodes.len() {
            if !self.nodes[node].up {
                self.start_node(node)?;
            }
        }
        self.checkers.liveness.start(self.now, LIVENESS_BOUND_NS);
        Ok(())
    }

    /// Starts (or restarts) `node` from its disks: recovery, replay, new shards.
    pub(super) fn start_node(&mut self, node: usize) -> Result<(), Violation> {
        let now = self.now;
        let first_start = self.nodes[node].incarnation == 0 && !self.nodes[node].up;
        let restarted = !first_start || self.steps > 1;
        if restarted {
            let (clock, prng) = (&mut self.nodes[node].clock, &mut self.prng);
            if now > clock.start_true_ns() {
                clock.restart(now, prng);
            }
        }
        let id = self.nodes[node].id;
        let wipe = std::mem::take(&mut self.nodes[node].wipe_on_restart);
        let local = self.nodes[node].clock.local(now);
        let shard_count = self.shard_count();
        let mut lost_any = wipe;
        let mut lost_groups = std::collections::BTreeSet::new();
        if wipe {
            self.nodes[node].fs = crate::sim::fs::SimFs::new();
        }
        let (mut restored, mut restored_highs) = (Vec::new(), Vec::new());
        // What the node may vote on is what recovery reads off its disks now.
        self.checkers.send_durable.reset(id);
        for shard in 0..self.nodes[node].shards.len() {
            let salt = self.nodes[node].shards[shard].salt;
            let slot = &mut self.nodes[node].shards[shard];
            if wipe {
                slot.disk.wipe();
                self.checkers.recovery.observe_wiped(id, shard);
            }
            let scan = wal::scan(
                slot.disk.image(),
                &ScanConfig {
                    salt,
                    lsn_prev: Lsn(0),
                    limits: DecodeLimits::default(),
                },
            );
            // The oracle: the scan against what this disk was written, kept and damaged.
            self.checkers
                .recovery
                .observe_scan(id, shard, &scan, slot.disk.image())?;
            let corrupt = scan.recovery.is_corrupt();
            if corrupt {
                self.report.corrupt_recoveries += 1;
            }
            let lost = wipe || corrupt || slot.lost_marker;
            slot.lost_marker = lost;
            lost_any |= lost;
            if !scan.scrub.is_empty() {
                let zeros = vec![0u8; (scan.scrub.end - scan.scrub.start) as usize];
                slot.disk.write(scan.scrub.start, &zeros);
                slot.disk.sync();
            }
            if wipe {
                slot.released.clear();
                slot.retired.clear();
            }
            // A truncated log: what the released segments held is gone.
            let records = unreleased(scan.records, &slot.released);
            slot.index = LogIndex::from_recovered(&records);
            for fact in records.iter().filter_map(|r| recovered_fact(&r.record)) {
                self.checkers.send_durable.observe_recovered(id, fact);
            }
            slot.log_start = 0;
            let mut recovered = wal::replay(&records);
            let mut groups = Vec::new();
            for config in &self.group_configs {
                if config.node != id || usize::from(shard_of(config.group, shard_count)) != shard {
                    continue;
                }
                if lost {
                    lost_groups.insert(config.group);
                }
                let state = recovered.remove(&config.group).unwrap_or_default();
                let restored_high = (state.accepted.keys().next_back().copied())
                    .max(state.learned.keys().next_back().copied())
                    .unwrap_or(Instance(0));
                restored_highs.push((config.group, restored_high));
                let restore = Restore {
                    promised: state.promised,
                    accepted: state.accepted,
                    learned: state.learned,
                    chosen_through: state.chosen_through,
                    lost_state: lost,
                    retired: slot.retired.contains(&config.group),
                    checkpoint: None,
                    installed_through: state.installed_through,
                };
                groups.push((config.clone(), restore));
            }
            restored.extend(self.restore_checkpoints(node, &mut groups));
            let slot = &mut self.nodes[node].shards[shard];
            let commit = GroupCommit::new(
                GroupCommitConfig {
                    salt,
                    ..self.commit_config
                },
                scan.resume,
            );
            let config = ShardConfig {
                node: id,
                ..self.shard_config_template.clone()
            };
            slot.shard = Some(Shard::new(config, groups, commit, lost, local));
            slot.writes = SimWrites::default();
        }
        if restarted {
            self.checkers.restart(id, lost_any, &lost_groups);
        }
        for (group, restored_high) in restored_highs {
            self.checkers
                .retention
                .observe_restore(id, group, restored_high);
        }
        self.observe_restores(node, restored)?;
        if lost_any {
            self.damaged = Some(node);
        }
        self.nodes[node].up = true;
        self.network.restore_node(id);
        // Flush each new shard once: it re-applies its restored chosen prefix.
        for shard in 0..self.nodes[node].shards.len() {
            self.step_shard(node, shard, ShardInput::Tick)?;
        }
        Ok(())
    }
}

/// The recovered records a truncated log still holds: what the released segments held
/// (Accepts and Learns at or below each group's released watermark) is gone.
fn unreleased(
    records: Vec<wal::RecoveredRecord>,
    released: &std::collections::BTreeMap<crate::paxos::GroupId, Instance>,
) -> Vec<wal::RecoveredRecord> {
    records
        .into_iter()
        .filter(|r| match &r.record {
            Record::Accept {
                group, instance, ..
            }
            | Record::Learn {
                group, instance, ..
            } => released.get(group).is_none_or(|w| instance > w),
            Record::Promise { .. } | Record::Chosen { .. } | Record::Installed { .. } => true,
        })
        .collect()
}
