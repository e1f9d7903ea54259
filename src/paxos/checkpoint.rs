//! A group's side of a checkpoint: what the apply path derived from the chosen prefix
//! through the checkpoint's instance (the running checksum, the latest applied
//! StartWorking ballot, the memberships), so that a replica restarting from a state
//! machine image resumes applying right after that instance without re-applying, or
//! even holding, the prefix.
//!
//! Invariants:
//! - a `CheckpointBase` describes exactly the state after applying `through`: the
//!   checksum the replica had at `through`, the StartWorking filter it would apply
//!   next, and every membership in effect from `through + 1` on;
//! - a group installs a base only at or below the chosen watermark its own log records
//!   (`Restore::checkpoint_provable`), and then proves chosen only the contiguous run
//!   of slots above the base (`Restore::chosen_proven`): every slot in memory below
//!   the watermark holds the chosen value, so the base never lets a slot of unknown
//!   value pass for chosen (and the executor chooses its checkpoint by the same
//!   number before it restores the state machine);
//! - a group restored from a checkpoint at `through` holds no slot below it: its
//!   `log_floor` is `through` (the slot there is its newest applied one), so its
//!   retention counts only what it applies itself, and catch-up from below is served
//!   from the WAL as for any instance below the floor.

use super::filters::Filters;
use super::group::{Group, Restore};
use super::types::{Ballot, Instance, Membership};

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

impl Restore {
    /// The chosen watermark this restored log proves by itself: the recorded watermark
    /// over the contiguous run of slots from instance 1 (or from the instance of the
    /// checkpoint installed, `checkpoint`: the image stands for every slot at and below
    /// it), extended by learned (chosen) values right above it. `Group::new` starts
    /// from exactly this. The slots at or below `installed_through` are not walked
    /// (they may hold values accepted but never chosen: see `Record::Installed`): from
    /// a checkpoint below it, only learned values extend the proof.
    #[must_use]
    pub fn chosen_proven(&self) -> Instance {
        let holds = |instance: Instance| {
            instance <= Instance::MAX
                && (self.accepted.contains_key(&instance) || self.learned.contains_key(&instance))
        };
        let mut through = self
            .checkpoint
            .as_ref()
            .map(|base| base.through)
            .filter(|at| *at <= self.checkpoint_provable())
            .unwrap_or(Instance(0));
        if through >= self.installed_through {
            while through < self.chosen_through && holds(through.next()) {
                through = through.next();
            }
        }
        while through.next() <= Instance::MAX && self.learned.contains_key(&through.next()) {
            through = through.next();
        }
        through
    }

    /// The highest instance at which a checkpoint may be installed at start: the
    /// recorded chosen watermark (a `Chosen` record says every instance through it is
    /// chosen, and a checkpoint file at or below it, verified, is the chosen prefix's
    /// state there), the highest checkpoint installed from a peer (`Installed`), or
    /// what the log proves from instance 1 if higher.
    #[must_use]
    pub fn checkpoint_provable(&self) -> Instance {
        let proven_from_one = self.chosen_proven_from_one();
        self.chosen_through
            .max(self.installed_through)
            .min(Instance::MAX)
            .max(proven_from_one)
    }

    /// The proof from instance 1 alone (no checkpoint).
    fn chosen_proven_from_one(&self) -> Instance {
        let holds = |instance: Instance| {
            self.accepted.contains_key(&instance) || self.learned.contains_key(&instance)
        };
        let mut through = Instance(0);
        if self.installed_through == Instance(0) {
            while through < self.chosen_through.min(Instance::MAX) && holds(through.next()) {
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
    /// in effect there, which becomes effective from instance 1.
    #[must_use]
    pub fn checkpoint_base(&self) -> CheckpointBase {
        let next = self.applied_through.next();
        let current = self
            .configs
            .iter()
            .rposition(|(effective, _)| *effective <= next)
            .expect("the first membership is in effect from instance 1");
        let mut configs = vec![(Instance(1), self.configs[current].1.clone())];
        configs.extend(self.configs[current + 1..].iter().cloned());
        CheckpointBase {
            through: self.applied_through,
            checksum: self.checksum,
            start_working_applied: self.start_working_applied,
            configs,
        }
    }

    /// Installs `base` at construction, before the restored prefix is applied: the
    /// group resumes applying at `base.through + 1`, its log floor at `base.through`.
    /// Panics (programmer error) when the
    /// base lies above the proven chosen watermark or is malformed.
    pub(super) fn install_base(&mut self, base: CheckpointBase) {
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
            // catching up from below it is served from the WAL, which still holds
            // them (nothing truncates it below a checkpoint yet).
            self.log = self.log.split_off(&base.through);
            self.log_floor = base.through;
            self.retained_size = self
                .log
                .get(&base.through)
                .map_or(0, |slot| slot.entry.encoded_size());
            if !self.log.contains_key(&base.through) {
                // A checkpoint installed from a peer (`transfer`): the log never held
                // the slot at its instance, nor any below; it votes on none of them.
                self.log_floor = base.through.next();
                self.installed_through = base.through;
            }
        }
    }
}
