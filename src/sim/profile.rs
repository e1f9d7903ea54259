//! Seed profiles: which family of worlds a seed draws from.
//!
//! The default profile is what [`SimOptions::from_seed`] draws: swarm testing over
//! every fault class, each off for about a third of the seeds. Faults that are rare in
//! that mix (a disk lost, with five voters, while crashes and partitions go on) get
//! their own profile, `rare-faults`, a second set of seeds in CI:
//!
//! - five voters;
//! - crashes, partitions and disk loss always on, with crashes at least every 2 s on
//!   average, partitions at least every 1.5 s, and at least one crash in three losing
//!   its disk (`disk_loss_ppm` ≥ 333,333; one in five at the least otherwise);
//! - everything else as the seed draws it by default.
//!
//! Membership changes get a profile of their own, `members` (a third CI set):
//!
//! - 2 to 7 initial voters (even counts included) and 1 or 2 spare nodes, which run
//!   every group as non-voters until a change adds them;
//! - clients change each group's membership every 150 ms to 1 s on average during the
//!   safety phase (`sim::cluster::members`): add a voter, remove one (the leader
//!   included), replace one, keeping 2 to 7 voters; sometimes two at once or a change
//!   of two voters, which the core must refuse;
//! - everything else as the seed draws it by default (faults included).
//!
//! A biased seed starts from the default draw of the same seed and then changes the
//! fields above, drawing what it needs from a PRNG stream of its own: what the default
//! profile gives a seed is unchanged, so earlier runs of a seed stay meaningful, and a
//! `(seed, profile)` pair replays the same run on every machine (`tests/seeds.txt`
//! writes a biased seed as `<seed> rare-faults`).

use std::fmt;

use super::clock::{draw_drifts, draw_large_drift};
use super::options::{FaultClass, SimOptions};
use crate::prng::Prng;

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// The environment variable that picks the profile of `SYNOD_SEED` replays
/// (`SYNOD_PROFILE=rare-faults`).
pub const PROFILE_VAR: &str = "SYNOD_PROFILE";

/// A family of seeds (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Profile {
    /// Swarm testing over every fault class: what `SimOptions::from_seed` draws.
    #[default]
    Default,
    /// Five voters; crashes, partitions and disk loss always on and frequent.
    RareFaults,
    /// 2 to 7 voters and spare nodes; membership changes in the workload.
    Members,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 3] = [Profile::Default, Profile::RareFaults, Profile::Members];

    /// The profile's name, as `tests/seeds.txt` and `SYNOD_PROFILE` write it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::RareFaults => "rare-faults",
            Profile::Members => "members",
        }
    }

    /// The profile named `name`, if any.
    #[must_use]
    pub fn parse(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The profile `SYNOD_PROFILE` names (the default when unset); an unknown name is
    /// an error that names the known ones.
    ///
    /// # Errors
    /// A name that is no profile's.
    pub fn from_env() -> Result<Profile, String> {
        match std::env::var(PROFILE_VAR) {
            Err(_) => Ok(Profile::Default),
            Ok(name) => Profile::parse(name.trim()).ok_or_else(|| {
                let known: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "{PROFILE_VAR}={name}: no such profile ({})",
                    known.join(", ")
                )
            }),
        }
    }

    /// The options of `seed` under this profile.
    #[must_use]
    pub fn options(self, seed: u64, force_large_values: bool) -> SimOptions {
        let mut options = if force_large_values {
            SimOptions::from_seed_with_large_values(seed)
        } else {
            SimOptions::from_seed(seed)
        };
        match self {
            Profile::Default => {}
            Profile::RareFaults => bias_rare_faults(&mut options),
            Profile::Members => bias_members(&mut options),
        }
        options.invariants();
        options
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Turns a default draw into a `rare-faults` one (module docs), from a stream of its
/// own.
fn bias_rare_faults(options: &mut SimOptions) {
    let seed = options.seed;
    let mut p = Prng::new(seed ^ 0x5241_5245_4641_554c);
    options.profile = Profile::RareFaults;
    if options.node_count != 5 {
        options.node_count = 5;
        // One drift per node: redrawn for five, as the default draw would have.
        let bound = options.clock_drift_bound_ppm;
        let drawn = draw_drifts(&mut p, bound, 5);
        let (bound, drifts) = draw_large_drift(seed, 5).unwrap_or((bound, drawn));
        options.clock_drift_bound_ppm = bound;
        options.clock_drift_ppm = if options.fault_on(FaultClass::ClockDrift) {
            drifts
        } else {
            vec![0; 5]
        };
    }
    let crash_interval = p.range(200 * MS, 2 * S);
    let partition_interval = p.range(100 * MS, 1_500 * MS);
    let disk_loss = p.range(333_333, 1_000_000) as u32;
    options.crash_interval_ns_mean = Some(
        options
            .crash_interval_ns_mean
            .map_or(crash_interval, |mean| mean.min(crash_interval)),
    );
    options.partition_interval_ns_mean = Some(
        options
            .partition_interval_ns_mean
            .map_or(partition_interval, |mean| mean.min(partition_interval)),
    );
    options.disk_loss_ppm = options.disk_loss_ppm.max(disk_loss);
    options.faults_off.retain(|class| {
        !matches!(
            class,
            FaultClass::Crash | FaultClass::Partition | FaultClass::DiskLoss
        )
    });
}

/// Turns a default draw into a `members` one (module docs), from a stream of its own.
fn bias_members(options: &mut SimOptions) {
    let seed = options.seed;
    let mut p = Prng::new(seed ^ 0x4d45_4d42_4552_5321);
    options.profile = Profile::Members;
    let voters = p.range(2, 7) as usize;
    let spares = p.range(1, 2) as usize;
    let nodes = voters + spares;
    options.voter_count = voters;
    options.node_count = nodes;
    let bound = options.clock_drift_bound_ppm;
    let drawn = draw_drifts(&mut p, bound, nodes);
    options.clock_drift_ppm = if options.fault_on(FaultClass::ClockDrift) {
        drawn
    } else {
        vec![0; nodes]
    };
    options.membership_change_interval_ns_mean = Some(p.range(150 * MS, S));
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the default profile draws exactly what `from_seed` draws (earlier runs of a
    // seed keep their meaning), and the biased one always has five voters with
    // crashes, partitions and disk loss on, within the options' invariants.
    // Method: 2,000 seeds through both profiles; compare and check each.
    #[test]
    fn default_profile_unchanged_and_rare_faults_always_on() {
        for seed in 0..2_000 {
            let default = Profile::Default.options(seed, false);
            assert_eq!(default, SimOptions::from_seed(seed), "seed {seed}");
            assert_eq!(default.profile, Profile::Default);
            let biased = Profile::RareFaults.options(seed, false);
            assert_eq!(biased.node_count, 5, "seed {seed}");
            assert_eq!(biased.clock_drift_ppm.len(), 5, "seed {seed}");
            for class in [
                FaultClass::Crash,
                FaultClass::Partition,
                FaultClass::DiskLoss,
            ] {
                assert!(biased.fault_on(class), "seed {seed}: {class} off");
            }
            assert!(biased.disk_loss_ppm >= 333_333, "seed {seed}");
            assert!(biased.crash_interval_ns_mean.is_some_and(|m| m <= 2 * S));
            assert!(biased
                .partition_interval_ns_mean
                .is_some_and(|m| m <= 1_500 * MS));
            assert_eq!(biased, Profile::RareFaults.options(seed, false), "replays");
            assert!(biased.to_string().contains("profile=rare-faults"));
            assert!(!default.to_string().contains("profile="));
        }
        for profile in Profile::ALL {
            assert_eq!(Profile::parse(profile.name()), Some(profile));
        }
        let mut voters = [0usize; 8];
        for seed in 0..2_000 {
            let members = Profile::Members.options(seed, false);
            voters[members.voter_count] += 1;
            assert!(
                members.node_count > members.voter_count,
                "seed {seed}: no spare"
            );
            assert!(members.node_count - members.voter_count <= 2, "seed {seed}");
            assert_eq!(members.clock_drift_ppm.len(), members.node_count);
            assert!(members.membership_change_interval_ns_mean.is_some());
            assert!(members.to_string().contains("profile=members"));
            assert_eq!(members, Profile::Members.options(seed, false), "replays");
        }
        // Every voter count from 2 to 7 is drawn, even ones included.
        assert!(voters[2..=7].iter().all(|n| *n > 200), "{voters:?}");
        assert_eq!(Profile::parse("rare"), None);
    }
}
