//! A group's side of a checkpoint: what the apply path derived from the chosen prefix
//! through the checkpoint's instance (the running checksum, the latest applied
//! StartWorking ballot, the memberships), so that a replica restarting from a state
//! machine image resumes applying right after that instance without re-applying, or
//! even holding, the prefix.
//!
//! # Restarting on a truncated WAL
//!
//! A replica's WAL may have been truncated (`runtime::truncation`), so a restart cannot
//! count on the slots from instance 1. Three facts make a restart safe anyway:
//!
//! 1. A `Record::Chosen { through: X }` is written only once this replica holds the
//!    chosen value of every instance `<= X`: `chosen_through` advances only over slots
//!    it holds with the chosen value (`learn_chosen` persists a `Learn` when it held
//!    another value or none; `advance_chosen_from_leader` passes only slots accepted at
//!    the leader's ballot or known chosen; `Group::new` starts from the proven number
//!    below), and those `Accept`/`Learn` records precede the `Chosen` record in the
//!    output, hence in the WAL. A recovery that keeps the `Chosen` record keeps them
//!    too, unless a record before the tail was lost, which is lost state (the replica
//!    does not vote until it has re-learned).
//! 2. Truncation releases a group's records only at or below a watermark `W` at or
//!    below its durable checkpoint `D`, which the WAL's `Chosen` records cover
//!    (`X >= D >= W`); compaction carries the group's newest `Chosen` and promise
//!    forward (`wal::compaction::Rewrite::State`), and every `Accept` or `Learn`
//!    above `W` stays. So a replay still yields `X`, the promise, and every slot
//!    above `W`.
//! 3. A checkpoint file at `C` exists only because this replica applied `1..=C`: the
//!    instances are chosen and the image is their result (a damaged file is refused
//!    by its CRC).
//!
//! Hence:
//! - a checkpoint at `C` may be installed when `C <= max(X, the run of slots held from
//!   instance 1)` (`Restore::installable_through`): `C` is chosen and this replica
//!   knew so. An untruncated log picks the same checkpoint as before truncation
//!   existed (its run from 1 reaches `X`);
//! - with a checkpoint at `C` installed, the log proves the chosen watermark
//!   (`Restore::chosen_proven`) from `C` over the contiguous slots held above it, up
//!   to `X` (fact 1: they hold the chosen values), then over learned slots right
//!   above. On an untruncated log that is the number counted from instance 1, since
//!   `C` lies within that run: the restart is unchanged;
//! - when the log lost state (`Restore::lost_state`: corruption before the tail, an
//!   emptied disk, or a rejoin not finished), the WAL proves nothing about the end of
//!   the chosen prefix, and the recorded `X` is only what survived before the damage:
//!   any checkpoint file (fact 3) may be installed, the newest first. Its instance is
//!   chosen and its image the result, whatever the WAL kept; the replica does not vote
//!   until its rejoin completes (`learner`), so the lost votes matter no more than
//!   without a checkpoint. Without this a replica whose WAL was damaged above an
//!   old `Chosen` record would restart from instance 1 (or from a checkpoint far
//!   below its own newest), which its peers, their WALs truncated, can no longer
//!   serve. When the log's own records do not prove that checkpoint
//!   (`Restore::unproven_checkpoint`), the group persists `Record::Installed` at it
//!   as it starts, as for a peer's checkpoint (`transfer`): the shard reports the
//!   checkpoint durable from its start, and once the rejoin marker goes (at an LSN
//!   planned after every group votes, so after that record) a restart installs a
//!   checkpoint only up to what the log proves. Without the record it would fall
//!   back below a checkpoint reported durable, to the old `Chosen` record (seed
//!   111638204532504). Not a `Chosen` record: the log's slots at or below the
//!   checkpoint may hold values accepted and never chosen (the old accepts that
//!   survived before the damage), which a `Chosen` watermark would vouch for at a
//!   restart from an older checkpoint;
//! - when the newest checkpoint is unusable (damaged) and the restore falls back to
//!   `C' < W`, the slots `(C', W]` are gone and the proven watermark stops below `X`.
//!   Those instances are chosen, but this replica may have voted in them and no longer
//!   holds the votes: a promise reporting nothing accepted there could let a
//!   candidate whose Phase 1 quorum meets an accept quorum only here take a chosen
//!   instance for a hole and fill it with a no-op. So the group's `vote_floor` is
//!   raised to `X + 1`: a prepare from below it is not promised
//!   (`prepare_below_vote_floor`) until the group has re-learned through `X` by
//!   catch-up (its slots there then hold the chosen values, reported as chosen). This
//!   rather than lost state (not voting at all until re-learned): the promise and
//!   every vote above `W` are intact (fact 2), so accepting (safe at any instance
//!   under the promise) and promising from above `X` stay as they were. The values
//!   of the gap come from peers like any catch-up (beyond every peer's watermark only
//!   a checkpoint transfer can serve them); the slots held above it through `X` hold
//!   the chosen values (fact 1), are marked chosen at restore, and the watermark runs
//!   over them once catch-up fills the gap (`Group::on_chosen_advanced`). They must:
//!   `X` may lie above every peer's watermark (this replica's vote chose its last
//!   instances and it crashed before telling anyone), and a peer re-learning lost
//!   state or a candidate needing this replica's promise then waits for it forever.
//!
//! Invariants:
//! - a `CheckpointBase` describes exactly the state after applying `through`: the
//!   checksum the replica had at `through`, the StartWorking filter it would apply
//!   next, and every membership in effect from `through + 1` on;
//! - a group installs a base only at or below `Restore::installable_through` (the
//!   recorded chosen watermark, a peer's checkpoint installed, or the run of slots
//!   from instance 1), and then proves chosen only from the base over the contiguous
//!   run of slots above it (`Restore::chosen_proven`, itself at or above the base):
//!   every slot in memory below the proven watermark holds the chosen value, so the
//!   base never lets a slot of unknown value pass for chosen (and the executor
//!   chooses its checkpoint by `Restore::installable_through` before it restores the
//!   state machine);
//! - a group restored from a checkpoint at `through` holds no slot below it: its
//!   `log_floor` is `through` (the slot there is its newest applied one), or
//!   `through + 1` when its truncated WAL no longer holds that slot, so its
//!   retention counts only what it applies itself, and catch-up from below is served
//!   from the WAL as for any instance below the floor (or answered `Truncated`);
//! - a group restored with a proven watermark below the recorded `X` promises no
//!   prepare from `X` or below until its chosen watermark reaches `X`.

use std::collections::BTreeMap;

use super::filters::Filters;
use super::group::Group;
use super::types::{Ballot, Entry, Instance, Membership};

/// The protocol state of one group right after applying `through`: what a checkpoint
/// records beside the state machine's image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointBase {
    /// The last instance applied (inclusive); the image covers exactly `1..=through`.
    pub through: Instance,
    /// The running CRC32C of the chosen entries through `through` (`entry_checksum`).
    pub checksum: u32,
    /// The origin ballot of the latest StartWorking entry applied through `through`
    /// (`Ballot::ZERO` if none): entries first proposed below it are skipped.
    pub start_working_applied: Ballot,
    /// Memberships as (effective from instance, voters), ascending: the first is in
    /// effect from instance 1 for every instance up to the next (those below
    /// `through + 1` are not kept beyond the one in effect there).
    pub configs: Vec<(Instance, Membership)>,
}

impl CheckpointBase {
    /// Checks the relations a base must satisfy to be installed: at least one
    /// membership, the first effective from instance 1, ascending effective instances.
    ///
    /// # Errors
    ///
    /// What is wrong, with the values.
    pub fn validate(&self) -> Result<(), String> {
        let Some((first, _)) = self.configs.first() else {
            return Err("a checkpoint base needs at least one membership".to_string());
        };
        if *first != Instance(1) {
            return Err(format!(
                "the first membership takes effect at instance {}, not 1",
                first.0
            ));
        }
        for pair in self.configs.windows(2) {
            if pair[1].0 <= pair[0].0 {
                return Err(format!(
                    "memberships out of order: effective at {} after {}",
                    pair[1].0 .0, pair[0].0 .0
                ));
            }
        }
        Ok(())
    }
}

/// What a replica rebuilt from its log on restart.
#[derive(Clone, Debug, Default)]
pub struct Restore {
    /// Highest ballot promised.
    pub promised: Ballot,
    /// Accepted values by instance.
    pub accepted: BTreeMap<Instance, (Ballot, Entry)>,
    /// Chosen values learned without accepting them.
    pub learned: BTreeMap<Instance, Entry>,
    /// Inclusive chosen watermark recorded.
    pub chosen_through: Instance,
    /// The log lost state it once had (an emptied disk, or corruption before the
    /// tail): the replica must not vote until it has re-learned.
    pub lost_state: bool,
    /// The replica lost its state in this group once its membership had changed, and
    /// retired (`learner`, "Retirement"; durable beside the log, as the rejoin
    /// marker): it never votes again under its node id.
    pub retired: bool,
    /// The checkpoint the state machine was restored from, if any: the group resumes
    /// applying right after its instance, which must be at most
    /// `installable_through()`.
    pub checkpoint: Option<CheckpointBase>,
    /// Highest instance at which a checkpoint received from a peer was installed
    /// (`Record::Installed`; 0: never): the log at and below it is not evidence of
    /// the chosen values.
    pub installed_through: Instance,
}

impl Restore {
    /// The highest instance at which a checkpoint may be installed: the recorded
    /// chosen watermark (a `Chosen` record says every instance through it is chosen),
    /// the highest checkpoint installed from a peer (`Installed`: that instance is
    /// chosen), or the run of slots held from instance 1 with learned values right
    /// above it when that is higher; any instance when the log lost state (see the
    /// module docs).
    #[must_use]
    pub fn installable_through(&self) -> Instance {
        if self.lost_state {
            return Instance::MAX;
        }
        self.log_installable_through()
    }

    /// What the log's own records let a restart install, lost state or not: the
    /// recorded chosen watermark, the highest checkpoint installed from a peer, or
    /// the run of slots held from instance 1 with learned values right above it.
    fn log_installable_through(&self) -> Instance {
        self.proven_from(Instance(0))
            .max(self.chosen_through.min(Instance::MAX))
            .max(self.installed_through.min(Instance::MAX))
    }

    /// The checkpoint's instance when it was installed only because the log lost
    /// state (`installable_through` is then any instance) and lies above what the
    /// log's own records prove (`None` otherwise). Once the rejoin marker goes, a
    /// restart no longer trusts any checkpoint file: `Group::new` persists
    /// `Record::Installed` at it so that the log proves it again (module docs).
    #[must_use]
    pub fn unproven_checkpoint(&self) -> Option<Instance> {
        let through = self.checkpoint.as_ref()?.through;
        (self.lost_state && through > self.log_installable_through()).then_some(through)
    }

    /// The chosen watermark this restored log proves with its checkpoint (none:
    /// instance 0): from the checkpoint's instance over the contiguous held slots above
    /// it up to the recorded watermark, then over learned (chosen) values right above.
    /// `Group::new` starts from exactly this. The slots at or below `installed_through`
    /// are not walked (they may hold values accepted but never chosen: see
    /// `Record::Installed`): from a checkpoint below it, only learned values extend
    /// the proof. Panics (programmer error) when the checkpoint lies above
    /// `installable_through()`.
    #[must_use]
    pub fn chosen_proven(&self) -> Instance {
        let base = self.checkpoint.as_ref().map_or(Instance(0), |c| c.through);
        assert!(
            base <= self.installable_through(),
            "checkpoint at {} above the installable {}",
            base.0,
            self.installable_through().0
        );
        self.proven_from(base)
    }

    /// `from` extended over the held slots up to the recorded watermark, then over
    /// learned slots.
    fn proven_from(&self, from: Instance) -> Instance {
        let holds = |instance: Instance| {
            instance <= Instance::MAX
                && (self.accepted.contains_key(&instance) || self.learned.contains_key(&instance))
        };
        let mut through = from;
        if from >= self.installed_through {
            while through < self.chosen_through && holds(through.next()) {
                through = through.next();
            }
        }
        while through.next() <= Instance::MAX && self.learned.contains_key(&through.next()) {
            through = through.next();
        }
        through
    }
}

impl Group {
    /// The base of a checkpoint taken now: the state right after `applied_through`.
    /// Memberships in effect only below `applied_through + 1` are folded into the one
    /// in effect there, which becomes effective from instance 1, except that a group
    /// whose membership ever changed keeps the membership before the one in effect
    /// (from instance 1) with the one in effect at its own instance: a checkpoint, and
    /// the truncated log behind it, must still say that the membership changed
    /// (`learner`, "Retirement"), even after a change back to the initial voters.
    #[must_use]
    pub fn checkpoint_base(&self) -> CheckpointBase {
        let next = self.applied_through.next();
        let current = self
            .configs
            .iter()
            .rposition(|(effective, _)| *effective <= next)
            .expect("the first membership is in effect from instance 1");
        let mut configs = if current > 0 {
            vec![
                (Instance(1), self.configs[current - 1].1.clone()),
                self.configs[current].clone(),
            ]
        } else {
            vec![(Instance(1), self.configs[current].1.clone())]
        };
        configs.extend(self.configs[current + 1..].iter().cloned());
        CheckpointBase {
            through: self.applied_through,
            checksum: self.checksum,
            start_working_applied: self.start_working_applied,
            configs,
        }
    }

    /// At construction: marks the log chosen through `proven`
    /// (`Restore::chosen_proven`), installs `checkpoint`, marks chosen the held slots
    /// above `proven` that `vouched` covers (`(installed, chosen)`: above the highest
    /// peer checkpoint installed, through the WAL's `Chosen` record; none when the log
    /// lost state), and raises the vote floor above `recorded` (the WAL's chosen
    /// watermark) when the log proves less (module docs: votes the truncated WAL no
    /// longer holds).
    pub(super) fn restore_chosen(
        &mut self,
        proven: Instance,
        recorded: Instance,
        vouched: Option<(Instance, Instance)>,
        checkpoint: Option<CheckpointBase>,
    ) {
        for (_, slot) in self.log.range_mut(..=proven) {
            slot.chosen = true;
        }
        self.chosen_through = proven;
        self.chosen_recorded = proven;
        if let Some(base) = checkpoint {
            self.install_base(base);
        }
        if let Some((installed, chosen)) = vouched {
            // Fact 1 holds for every held slot through `chosen`, not only for the run
            // `proven` walks from the base: past a gap the slots are chosen too, and
            // the watermark runs over them once catch-up fills the gap
            // (`on_chosen_advanced`). The vote floor below may sit above every peer's
            // watermark (this replica alone may know its last instances chosen): only
            // these slots let it reach the floor and vote again.
            let from = proven.max(installed).next();
            if from <= chosen {
                for (_, slot) in self.log.range_mut(from..=chosen) {
                    slot.chosen = true;
                }
            }
        }
        if proven < recorded {
            // `recorded` also counts a peer's checkpoint installed (`Record::Installed`):
            // the votes this replica cast at or below it were dropped at the install.
            self.vote_floor = recorded.next();
        }
    }

    /// The first instance from which this replica reports every vote it cast in a
    /// promise, until its chosen watermark reaches the instance below it (1: all).
    #[must_use]
    pub fn vote_floor(&self) -> Instance {
        self.vote_floor
    }

    /// Whether a prepare from `first` asks for votes this replica may have cast and
    /// no longer holds (see the module docs).
    pub(super) fn below_vote_floor(&self, first: Instance) -> bool {
        first < self.vote_floor && self.relearning_vote_floor()
    }

    /// Whether the group has yet to re-learn up to its vote floor: it asks every peer
    /// for catch-up until it has (`learner::request_catch_up`).
    pub(super) fn relearning_vote_floor(&self) -> bool {
        self.chosen_through.next() < self.vote_floor
    }

    /// Installs `base` at construction, before the restored prefix is applied: the
    /// group resumes applying at `base.through + 1`, its log floor at `base.through`.
    /// Panics (programmer error) when the base lies above the proven chosen watermark
    /// or is malformed.
    fn install_base(&mut self, base: CheckpointBase) {
        if let Err(why) = base.validate() {
            panic!("invalid checkpoint base: {why}");
        }
        assert!(
            base.through <= self.chosen_through,
            "checkpoint at {} above the chosen watermark {} the log proves",
            base.through.0,
            self.chosen_through.0
        );
        assert_eq!(
            self.applied_through,
            Instance(0),
            "a base is installed first"
        );
        self.applied_through = base.through;
        self.checksum = base.checksum;
        self.start_working_applied = base.start_working_applied;
        self.filters = Filters::new(base.through, base.start_working_applied);
        self.configs = base.configs;
        if let Some(slot) = self.log.get_mut(&base.through) {
            // Heartbeats compare checksums at a slot's instance (`compare_checksum`).
            slot.checksum = Some(base.checksum);
        }
        if base.through >= Instance(1) {
            // Retention ("In-memory retention" in `group.rs`): the slots below the
            // checkpoint were applied into the image, not by this life, and are not
            // counted in `retained_size`; they leave memory and the floor rises to the
            // checkpoint's instance, whose slot (the newest applied) stays. A peer
            // catching up from below it is served from the WAL, or answered
            // `Truncated` where the WAL was truncated. A WAL truncated through the
            // checkpoint no longer holds its slot: the floor is then the one above.
            // A checkpoint installed from a peer (`transfer`) left no slot either: the
            // log never held the slot at its instance, nor any below; it votes on none
            // of them (`installed_through`).
            self.log = self.log.split_off(&base.through);
            self.log_floor = base.through;
            self.retained_size = self
                .log
                .get(&base.through)
                .map_or(0, |slot| slot.entry.encoded_size());
            if !self.log.contains_key(&base.through) {
                self.log_floor = base.through.next();
                self.installed_through = base.through;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::message::{Message, MessageBody};
    use crate::paxos::output::{Output, Record};
    use crate::paxos::types::{Body, NodeId};
    use crate::paxos::{GroupConfig, GroupId, Input, Nanos};

    /// No learned slots.
    #[expect(clippy::reversed_empty_ranges, reason = "an empty inclusive range")]
    const NONE: std::ops::RangeInclusive<u64> = 1..=0;

    fn entry(instance: u64) -> Entry {
        Entry {
            origin: Ballot {
                round: 1,
                node: NodeId(1),
            },
            body: Body::Values(smallvec::smallvec![bytes::Bytes::from(
                instance.to_le_bytes().to_vec()
            )]),
        }
    }

    fn base(through: u64) -> CheckpointBase {
        CheckpointBase {
            through: Instance(through),
            checksum: 7,
            start_working_applied: Ballot::ZERO,
            configs: vec![(Instance(1), Membership::new(vec![NodeId(1)]))],
        }
    }

    /// A restore holding accepted slots `accepted`, learned slots `learned`, chosen
    /// watermark `chosen`.
    fn restore(
        accepted: std::ops::RangeInclusive<u64>,
        learned: std::ops::RangeInclusive<u64>,
        chosen: u64,
    ) -> Restore {
        let ballot = Ballot {
            round: 1,
            node: NodeId(1),
        };
        Restore {
            accepted: accepted
                .map(|i| (Instance(i), (ballot, entry(i))))
                .collect(),
            learned: learned.map(|i| (Instance(i), entry(i))).collect(),
            chosen_through: Instance(chosen),
            ..Restore::default()
        }
    }

    // Goal: on an untruncated log the new rule picks what counting from instance 1
    // did: installable and proven are the run from 1 (learned values above it
    // included), with or without a checkpoint inside that run.
    // Method: slots 1..=40 accepted, 41..=52 learned, chosen 40; a gap at 53.
    #[test]
    fn untruncated_log_proves_from_instance_one() {
        let mut r = restore(1..=40, 41..=52, 40);
        r.learned.insert(Instance(55), entry(55));
        assert_eq!(r.installable_through(), Instance(52));
        assert_eq!(r.chosen_proven(), Instance(52));
        r.checkpoint = Some(base(30));
        assert_eq!(r.chosen_proven(), Instance(52), "same from inside the run");
        r.checkpoint = Some(base(52));
        assert_eq!(r.chosen_proven(), Instance(52));
        // A hole at 21 below the recorded watermark: counting from 1 stops at 20;
        // the recorded 40 is installable, and a checkpoint at 30 proves 52.
        r.accepted.remove(&Instance(21));
        r.checkpoint = None;
        assert_eq!(r.chosen_proven(), Instance(20));
        assert_eq!(r.installable_through(), Instance(40));
        r.checkpoint = Some(base(30));
        assert_eq!(r.chosen_proven(), Instance(52));
    }

    // Goal: a truncated log (slots 1..=100 released, chosen 140 recorded) installs a
    // checkpoint at or below 140 and proves from it; a fallback checkpoint below the
    // released range proves only itself.
    // Method: slots 101..=150 accepted; try checkpoints at 120, 100, 140, 90 and none.
    #[test]
    fn truncated_log_proves_from_its_checkpoint() {
        let mut r = restore(101..=150, NONE, 140);
        assert_eq!(r.installable_through(), Instance(140));
        assert_eq!(
            r.chosen_proven(),
            Instance(0),
            "no checkpoint: nothing proven"
        );
        for (at, proven) in [(120, 140), (100, 140), (140, 140), (90, 90)] {
            r.checkpoint = Some(base(at));
            assert_eq!(r.chosen_proven(), Instance(proven), "checkpoint at {at}");
        }
        // Learned values right above the recorded watermark extend it.
        r.learned.insert(Instance(141), entry(141));
        r.accepted.remove(&Instance(141));
        r.checkpoint = Some(base(120));
        assert_eq!(r.chosen_proven(), Instance(141));
    }

    // Goal: a group restored at its checkpoint on a truncated log resumes there with
    // every vote it can report (vote floor 1); restored at an older checkpoint below
    // the released range it claims nothing chosen past that checkpoint, its floor is
    // above the checkpoint's missing slot, and its vote floor is past the recorded
    // watermark.
    // Method: `Group::new` on the restores of the test above, invariants checked.
    #[test]
    fn fallback_below_the_truncation_raises_the_vote_floor() {
        let config = GroupConfig::new(
            NodeId(1),
            GroupId(1),
            Membership::new(vec![NodeId(1), NodeId(2), NodeId(3)]),
        );
        let mut r = restore(101..=150, NONE, 140);
        r.checkpoint = Some(base(120));
        let group = Group::new(config.clone(), r.clone(), Nanos(0));
        group.invariants();
        assert_eq!(group.applied_through(), Instance(140));
        assert_eq!(group.chosen_through(), Instance(140));
        assert_eq!(group.log_floor(), Instance(120));
        assert_eq!(group.vote_floor(), Instance(1));
        assert!(!group.below_vote_floor(Instance(141)));

        r.checkpoint = Some(base(90));
        let group = Group::new(config, r, Nanos(0));
        group.invariants();
        assert_eq!(group.applied_through(), Instance(90));
        assert_eq!(group.chosen_through(), Instance(90));
        assert_eq!(group.log_floor(), Instance(91), "slot 90 is truncated");
        assert_eq!(group.vote_floor(), Instance(141));
        assert!(group.below_vote_floor(Instance(91)));
        assert!(group.below_vote_floor(Instance(140)));
        assert!(!group.below_vote_floor(Instance(141)));
    }

    // Goal: a log that lost state installs its newest checkpoint file even far above
    // what survived of it (the WAL no longer proves the end of the chosen prefix; the
    // file does), resumes there without voting, and claims nothing chosen past what
    // it holds above the checkpoint; without lost state the same checkpoint is above
    // the installable. The group persists `Installed` at it as it starts: with that
    // record the log, once trusted again, installs the checkpoint and proves from it,
    // without walking the stale slots below it. A checkpoint the log proves anyway
    // persists nothing.
    // Method: slots 1..=31 accepted (a corrupt recovery kept only the log's start),
    // chosen 30 recorded, a checkpoint at 80 and learned 81..=82, a hole at 83; then
    // the same log with the record, not lost; then a lost log with a checkpoint at 20.
    #[test]
    fn lost_state_installs_a_checkpoint_above_the_recorded_watermark() {
        let config = GroupConfig::new(
            NodeId(1),
            GroupId(1),
            Membership::new(vec![NodeId(1), NodeId(2), NodeId(3)]),
        );
        let mut r = restore(1..=31, 81..=82, 30);
        r.learned.insert(Instance(84), entry(84));
        assert_eq!(r.installable_through(), Instance(30));
        r.lost_state = true;
        assert_eq!(r.installable_through(), Instance::MAX);
        r.checkpoint = Some(base(80));
        assert_eq!(r.chosen_proven(), Instance(82));
        assert_eq!(r.unproven_checkpoint(), Some(Instance(80)));
        let mut group = Group::new(config.clone(), r.clone(), Nanos(0));
        group.invariants();
        assert_eq!(group.applied_through(), Instance(82));
        assert_eq!(group.chosen_through(), Instance(82));
        assert_eq!(group.log_floor(), Instance(81), "slot 80 is not held");
        assert_eq!(group.vote_floor(), Instance(1));
        assert!(!group.is_voting(), "lost state: re-learns before voting");
        let installed = Record::Installed {
            group: GroupId(1),
            through: Instance(80),
        };
        assert_eq!(group.take_restored_records(), vec![installed]);
        assert!(group.take_restored_records().is_empty(), "drained");

        // The next restart, the rejoin over: the record makes 80 installable, and a
        // fallback to an older checkpoint does not walk slots 1..=31.
        let mut next = r.clone();
        next.lost_state = false;
        next.installed_through = Instance(80);
        assert_eq!(next.unproven_checkpoint(), None);
        assert_eq!(next.installable_through(), Instance(80));
        assert_eq!(next.chosen_proven(), Instance(82));
        next.checkpoint = Some(base(20));
        assert_eq!(next.chosen_proven(), Instance(20));

        let mut proven = r;
        proven.checkpoint = Some(base(20));
        assert_eq!(proven.unproven_checkpoint(), None);
        let mut group = Group::new(config, proven, Nanos(0));
        assert!(group.take_restored_records().is_empty());
    }

    /// The membership {1, 2, 3}.
    fn three() -> Membership {
        Membership::new(vec![NodeId(1), NodeId(2), NodeId(3)])
    }

    /// Steps `group` with one message and returns what it sends at once.
    fn deliver(group: &mut Group, message: Message) -> Vec<Message> {
        let mut out = Output::default();
        group.step(Nanos(1), Input::Message(message), &mut out);
        out.send
    }

    /// A catch-up chunk from `from` to node 2 with the given report.
    fn chunk(from: u32, chosen: u64, first: u64, from_voter: bool) -> Message {
        Message {
            group: GroupId(1),
            from: NodeId(from),
            to: NodeId(2),
            body: MessageBody::CatchUpChunk {
                chosen_through: Instance(chosen),
                promised: Ballot {
                    round: 5,
                    node: NodeId(from),
                },
                accepted_max: Instance(chosen),
                first: Instance(first),
                entries: Vec::new(),
                from_voter,
                membership_changed: false,
            },
        }
    }

    // Goal: the deadlock of simulator seed 20003367. A replica restored below its
    // vote floor withholds its promise; the only peer holding the values it needs is
    // re-learning lost state. The first asks every peer, the second serves it (marked
    // not from a voter), and the first reaches its floor. The rejoiner counts an empty
    // chunk from a voter behind it as heard, and never a chunk from a non-voter.
    // Method: node 1 restored at checkpoint 90 below a truncated log recording 140
    // (vote floor 141); node 2 lost state holding 1..=150 chosen; messages handed
    // between them by hand.
    #[test]
    fn a_replica_below_its_vote_floor_relearns_from_a_rejoining_peer() {
        let mut r1 = restore(101..=150, NONE, 140);
        r1.checkpoint = Some(CheckpointBase {
            configs: vec![(Instance(1), three())],
            ..base(90)
        });
        let mut node1 = Group::new(
            GroupConfig::new(NodeId(1), GroupId(1), three()),
            r1,
            Nanos(0),
        );
        let mut r2 = restore(1..=150, NONE, 150);
        r2.lost_state = true;
        let mut node2 = Group::new(
            GroupConfig::new(NodeId(2), GroupId(1), three()),
            r2,
            Nanos(0),
        );
        assert!(node1.below_vote_floor(Instance(91)) && !node2.is_voting());

        // Node 1 asks both peers, with no leader known.
        let mut out = Output::default();
        node1.step(Nanos(1), Input::Tick, &mut out);
        let asked: Vec<NodeId> = out
            .send
            .iter()
            .filter(
                |m| matches!(m.body, MessageBody::CatchUpRequest { from, .. } if from == Instance(91)),
            )
            .map(|m| m.to)
            .collect();
        assert_eq!(asked, vec![NodeId(2), NodeId(3)]);

        // Node 2 serves it, marked not from a voter, until node 1 has 150.
        let mut request = out.send.into_iter().find(|m| m.to == NodeId(2));
        let mut rounds = 0;
        while let Some(message) = request.take() {
            rounds += 1;
            assert!(rounds < 10, "catch-up does not end");
            let answer = deliver(&mut node2, message);
            assert_eq!(answer.len(), 1, "one chunk: {answer:?}");
            assert!(matches!(
                answer[0].body,
                MessageBody::CatchUpChunk { from_voter: false, ref entries, .. } if !entries.is_empty()
            ));
            request = deliver(&mut node1, answer[0].clone())
                .into_iter()
                .find(|m| m.to == NodeId(2));
        }
        node1.invariants();
        assert_eq!(node1.chosen_through(), Instance(150));
        assert!(!node1.below_vote_floor(Instance(141)));
        assert!(!node2.is_voting(), "serving is no vote");

        // The rejoiner: an empty chunk from a voter behind it counts; a non-voter's
        // does not; two voters heard (n - quorum + 1) and it votes again.
        deliver(&mut node2, chunk(1, 90, 151, true));
        let heard = |g: &Group| {
            g.rejoin
                .as_ref()
                .map(|r| r.heard.keys().copied().collect::<Vec<_>>())
        };
        assert_eq!(heard(&node2), Some(vec![NodeId(1)]));
        deliver(&mut node2, chunk(3, 150, 151, false));
        assert_eq!(heard(&node2), Some(vec![NodeId(1)]));
        assert!(!node2.is_voting());
        deliver(&mut node2, chunk(3, 150, 151, true));
        assert!(
            !node2.is_voting(),
            "heard from two voters: it may campaign, not vote"
        );

        // Its own Phase 1, above every promise heard, with both other voters (its own
        // acceptor does not vote): only the second promise makes it vote again.
        let mut out = Output::default();
        node2.step(Nanos(10_000_000_000), Input::Tick, &mut out);
        let ballot = out
            .send_after_persist
            .iter()
            .filter(|m| m.to == NodeId(3))
            .find_map(|m| {
                if let MessageBody::Prepare { ballot, .. } = m.body {
                    Some(ballot)
                } else {
                    None
                }
            })
            .expect("the rejoiner campaigns");
        assert!(ballot.round > 5, "above every promise heard: {ballot}");
        let promise = |from: u32| Message {
            group: GroupId(1),
            from: NodeId(from),
            to: NodeId(2),
            body: MessageBody::Promise {
                ballot,
                chosen_through: Instance(150),
                entries: Vec::new(),
                truncated: false,
            },
        };
        deliver(&mut node2, promise(1));
        assert!(!node2.is_voting(), "one other voter of two");
        deliver(&mut node2, promise(3));
        assert!(node2.is_voting(), "Phase 1 with both other voters");
        node2.invariants();
    }

    // Goal: the deadlock of simulator seed 20003367 under the crash model that keeps
    // unsynced writes. A replica restored below its vote floor, whose own log holds
    // the chosen values above the gap through its recorded watermark, reaches the
    // floor once a peer that knows less fills the gap; a log that lost state does not
    // take its held slots for chosen.
    // Method: node 1 restored at checkpoint 90 below a truncated log recording 140
    // (slots 101..=150 accepted, vote floor 141); a chunk of 91..=100 from a peer
    // whose watermark is 100; the same restore with lost state.
    #[test]
    fn a_replica_past_a_gap_reaches_its_vote_floor_from_its_own_log() {
        let gap_chunk = Message {
            group: GroupId(1),
            from: NodeId(2),
            to: NodeId(1),
            body: MessageBody::CatchUpChunk {
                chosen_through: Instance(100),
                promised: Ballot {
                    round: 5,
                    node: NodeId(2),
                },
                accepted_max: Instance(100),
                first: Instance(91),
                entries: (91..=100).map(entry).collect(),
                from_voter: true,
                membership_changed: false,
            },
        };
        for lost_state in [false, true] {
            let mut r = restore(101..=150, NONE, 140);
            r.checkpoint = Some(CheckpointBase {
                configs: vec![(Instance(1), three())],
                ..base(90)
            });
            r.lost_state = lost_state;
            let mut node1 = Group::new(
                GroupConfig::new(NodeId(1), GroupId(1), three()),
                r,
                Nanos(0),
            );
            assert_eq!(node1.chosen_through(), Instance(90));
            let mut out = Output::default();
            node1.step(Nanos(1), Input::Message(gap_chunk.clone()), &mut out);
            node1.invariants();
            if lost_state {
                assert_eq!(node1.chosen_through(), Instance(100), "lost state");
                continue;
            }
            assert_eq!(
                node1.chosen_through(),
                Instance(140),
                "the held slots through the recorded watermark, not the accepted above"
            );
            assert_eq!(node1.applied_through(), Instance(140));
            assert!(!node1.below_vote_floor(Instance(101)));
            assert!(out
                .persist
                .iter()
                .any(|r| matches!(r, Record::Chosen { through, .. } if *through == Instance(140))));
        }
    }

    // Goal: a checkpoint above what the log can install is a programmer error.
    // Method: a truncated restore recording 140 with a checkpoint at 141.
    #[test]
    #[should_panic(expected = "above the installable")]
    fn checkpoint_above_the_recorded_watermark_panics() {
        let mut r = restore(101..=150, NONE, 140);
        r.checkpoint = Some(base(141));
        let _ = r.chosen_proven();
    }
}
