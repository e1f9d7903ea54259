//! When a shard's groups take local checkpoints: the policy (instances or bytes applied
//! since a group's last checkpoint, or time), the one checkpoint in flight per group,
//! and each group's last durable checkpoint. Pure: `Shard` feeds it the applies of each
//! flush and the executor's outcomes, and turns its decisions into
//! `Effects::checkpoints`; the glommio driver and the simulator only carry them out.
//!
//! A checkpoint's instance is the point below which the replica no longer needs its
//! WAL for its own recovery. It becomes durable here only when BOTH the checkpoint
//! file is saved (`CheckpointOutcome::Saved`) AND the WAL is durable through the LSN
//! planned when the checkpoint was taken: the group's `Chosen` record covering the
//! instance then is too, so a restart's log proves the instance chosen and installs
//! the checkpoint (`paxos::Restore::installable_through`). Truncating the WAL below
//! this instance (`runtime::truncation`) is then safe for this replica. A checkpoint
//! installed from a peer (`on_install`) becomes durable the same way: its file saved as
//! the group's own, and the WAL durable past its `Installed` record.
//!
//! A group takes its next checkpoint only once the previous one is durable, so the
//! save that follows never removes the newest durable file (`wal::checkpoint::surplus`
//! keeps the new file and the newest below it): a group has at most two files.
//!
//! Invariants (`Checkpoints::invariants`):
//! - at most one checkpoint in flight or saved-but-not-durable per group, at most
//!   `in_flight_count_max` in flight per shard, and `in_flight_count` counts exactly
//!   the groups with one of their own in flight (a checkpoint installed from a peer
//!   and being saved, `on_install`, is bounded by the transfers' own limits);
//! - `due` holds exactly one `(time, group)` per group whose `due` is set;
//! - a group's durable checkpoint instance never decreases within a shard's life.

use std::collections::{BTreeMap, BTreeSet};

use crate::paxos::{Apply, CheckpointBase, GroupId, Instance, Lsn, Nanos};

/// When each group of a shard takes a checkpoint. A trigger at 0 is off; with all
/// three off no checkpoint is taken. Defaults (`CheckpointPolicy::default`, reasoning
/// in `tuning.md`): 20,000 instances, 256 MiB of values, or 1 minute with at least
/// one instance applied, whichever comes first. With truncation on, the instances
/// since a group's last durable checkpoint are what its WAL and the WAL's index
/// (32 B each) hold, so these bound both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Take a checkpoint once this many instances were applied since the group's last
    /// one (0: off). Bounds what a restart re-applies, counted in instances.
    pub instance_count: u64,
    /// Take a checkpoint once this many bytes of values were applied since the group's
    /// last one (0: off). Bounds what a restart re-reads and re-applies, in bytes.
    pub applied_size: u64,
    /// Take a checkpoint once this long has passed since the group's last one (or the
    /// shard's start), if anything was applied meanwhile (0: off). Checked at every
    /// flush (a shard flushes at least once per heartbeat interval or election timeout).
    pub interval_ns: u64,
    /// After a failed checkpoint, the group waits this long before the next attempt.
    pub retry_ns: u64,
    /// Checkpoints in flight at once on one shard (at least 1): each holds its image
    /// in memory until written.
    pub in_flight_count_max: usize,
}

impl Default for CheckpointPolicy {
    fn default() -> CheckpointPolicy {
        CheckpointPolicy {
            instance_count: 20_000,
            applied_size: 256 << 20,
            interval_ns: 60 * 1_000_000_000,
            retry_ns: 10 * 1_000_000_000,
            in_flight_count_max: 1,
        }
    }
}

impl CheckpointPolicy {
    /// The policy that never takes a checkpoint.
    pub const OFF: CheckpointPolicy = CheckpointPolicy {
        instance_count: 0,
        applied_size: 0,
        interval_ns: 0,
        retry_ns: 10 * 1_000_000_000,
        in_flight_count_max: 1,
    };

    /// Whether any trigger is on.
    #[must_use]
    pub fn is_on(&self) -> bool {
        self.instance_count > 0 || self.applied_size > 0 || self.interval_ns > 0
    }
}

/// The executor must take group `group`'s state machine image exactly after applying
/// `base.through` (this flush's applies done, the next flush's not begun) and save it
/// durably with `base`, then answer `ShardInput::CheckpointDone`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakeCheckpoint {
    /// The group.
    pub group: GroupId,
    /// The group's protocol state at the checkpoint's instance (`base.through`: the
    /// group's applied watermark when the effect was emitted).
    pub base: CheckpointBase,
    /// The group's durable checkpoint when this one was asked for (`Instance(0)`:
    /// none): its file must outlive this save, which is not durable until the WAL is
    /// too (`wal::checkpoint::surplus`).
    pub keep: Instance,
}

/// How a checkpoint the shard asked for ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointOutcome {
    /// The file is durable (written, fdatasynced, renamed, directory synced); older
    /// files beyond the previous one are removed.
    Saved,
    /// Writing it failed (nothing durable replaced anything): not fatal; the group
    /// tries again after `retry_ns`.
    Failed {
        /// What failed and what the OS said.
        error: String,
    },
    /// The state machine does not checkpoint (`StateMachine::checkpoint` gave
    /// `None`): the group is not asked again in this shard's life.
    Unsupported,
}

/// Counters of a shard's checkpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointCounters {
    /// Checkpoints asked for (`Effects::checkpoints`).
    pub taken: u64,
    /// Checkpoints saved.
    pub saved: u64,
    /// Checkpoints that failed.
    pub failed: u64,
}

/// One group's checkpoint state.
#[derive(Clone, Debug, Default)]
struct Tracker {
    /// The last durable checkpoint (file saved and WAL durable past it).
    durable: Instance,
    /// A saved checkpoint waiting for the WAL to be durable through its LSN.
    saved: Option<(Instance, Lsn)>,
    /// The checkpoint in flight: its instance and the LSN planned when it was taken.
    in_flight: Option<(Instance, Lsn)>,
    /// Applied since the last checkpoint was taken: instances and value bytes.
    instances_since: u64,
    size_since: u64,
    /// When the last checkpoint was taken (or the shard started).
    last_at: Nanos,
    /// When the group should take its next checkpoint (an entry in `due`).
    due: Option<Nanos>,
    /// The state machine does not checkpoint.
    unsupported: bool,
    /// The checkpoint in flight is one installed from a peer (`on_install`): its save
    /// does not count toward `in_flight_count_max`.
    installing: bool,
}

/// The checkpoint decisions of one shard. See the module docs.
#[derive(Debug)]
pub struct Checkpoints {
    policy: CheckpointPolicy,
    groups: BTreeMap<GroupId, Tracker>,
    /// Groups waiting for their turn, earliest first.
    due: BTreeSet<(Nanos, GroupId)>,
    in_flight_count: usize,
    counters: CheckpointCounters,
}

impl Checkpoints {
    /// The checkpoints of `groups` (each with the instance of the checkpoint it was
    /// restored from, `Instance(0)` for none), starting at `now`. A restored
    /// checkpoint is durable from the start: its file is, and the log proves it, or
    /// the log lost state and the group persists `Record::Installed` at it before the
    /// rejoin marker may go (`paxos::checkpoint` module docs).
    #[must_use]
    pub fn new(
        policy: CheckpointPolicy,
        groups: impl IntoIterator<Item = (GroupId, Instance)>,
        now: Nanos,
    ) -> Checkpoints {
        assert!(
            policy.in_flight_count_max >= 1,
            "in_flight_count_max must be at least 1"
        );
        let groups = groups
            .into_iter()
            .map(|(group, restored)| {
                let tracker = Tracker {
                    durable: restored,
                    last_at: now,
                    ..Tracker::default()
                };
                (group, tracker)
            })
            .collect();
        Checkpoints {
            policy,
            groups,
            due: BTreeSet::new(),
            in_flight_count: 0,
            counters: CheckpointCounters::default(),
        }
    }

    /// Counts one applied entry toward its group's triggers.
    pub fn on_applied(&mut self, apply: &Apply) {
        if !self.policy.is_on() {
            return;
        }
        let Some(tracker) = self.groups.get_mut(&apply.group) else {
            return;
        };
        if tracker.unsupported {
            return;
        }
        tracker.instances_since += 1;
        tracker.size_since += apply.entry.payload_size() as u64;
        if let Some(at) = next_turn(&self.policy, tracker) {
            schedule(&mut self.due, apply.group, tracker, at);
        }
    }

    /// The groups that take a checkpoint now (their turn came and nothing of theirs is
    /// in flight), within the shard's in-flight bound; `applied_through` gives a
    /// group's applied watermark, and `lsn` is the last LSN planned so far. The caller
    /// emits one `TakeCheckpoint` per group returned, at its applied watermark.
    pub fn take_due(
        &mut self,
        now: Nanos,
        lsn: Lsn,
        applied_through: impl Fn(GroupId) -> Instance,
    ) -> Vec<GroupId> {
        let mut taken = Vec::new();
        while self.in_flight_count < self.policy.in_flight_count_max {
            let Some(&(at, group)) = self.due.first() else {
                break;
            };
            if at > now {
                break;
            }
            self.due.pop_first();
            let tracker = self
                .groups
                .get_mut(&group)
                .expect("only tracked groups are due");
            tracker.due = None;
            let through = applied_through(group);
            let newest = tracker.saved.map_or(tracker.durable, |(saved, _)| saved);
            if tracker.unsupported
                || tracker.in_flight.is_some()
                || tracker.saved.is_some()
                || through <= newest
            {
                // Rescheduled when the one in flight ends or the saved one becomes
                // durable (its file, the newest durable one, must outlive the next
                // save's removals); nothing new otherwise.
                continue;
            }
            tracker.in_flight = Some((through, lsn));
            tracker.instances_since = 0;
            tracker.size_since = 0;
            tracker.last_at = now;
            self.in_flight_count += 1;
            self.counters.taken += 1;
            taken.push(group);
        }
        taken
    }

    /// The executor's answer for the checkpoint of `group` at `through`.
    pub fn on_done(
        &mut self,
        now: Nanos,
        group: GroupId,
        through: Instance,
        outcome: &CheckpointOutcome,
    ) {
        let tracker = self
            .groups
            .get_mut(&group)
            .expect("a checkpoint is answered only for a tracked group");
        let Some((in_flight, lsn)) = tracker.in_flight.take() else {
            panic!("group {} has no checkpoint in flight", group.0);
        };
        assert_eq!(
            in_flight, through,
            "group {}: answer for instance {} but {} is in flight",
            group.0, through.0, in_flight.0
        );
        if tracker.installing {
            tracker.installing = false;
        } else {
            self.in_flight_count -= 1;
        }
        match outcome {
            CheckpointOutcome::Saved => {
                // The next one waits until this one is durable (`on_wal_durable`).
                self.counters.saved += 1;
                tracker.saved = Some((through, lsn));
            }
            CheckpointOutcome::Failed { .. } => {
                self.counters.failed += 1;
                // Not before `retry_ns`, whatever turn was pending (a due reached while
                // this one was in flight included).
                if let Some(at) = tracker.due.take() {
                    self.due.remove(&(at, group));
                }
                let retry = now.plus(self.policy.retry_ns);
                schedule(&mut self.due, group, tracker, retry);
            }
            CheckpointOutcome::Unsupported => {
                tracker.unsupported = true;
                if let Some(at) = tracker.due.take() {
                    self.due.remove(&(at, group));
                }
            }
        }
    }

    /// Whether `group` may install a checkpoint received from a peer now: nothing of
    /// its own is in flight or saved-but-not-durable (its answer would name another
    /// instance, and its save's removals could take the installed file).
    #[must_use]
    pub fn may_install(&self, group: GroupId) -> bool {
        self.groups
            .get(&group)
            .is_some_and(|t| t.in_flight.is_none() && t.saved.is_none())
    }

    /// `group` installed a checkpoint received from a peer at `through`, its `Chosen`
    /// record planned at `lsn`: the executor saves the file as its own (answered by
    /// `CheckpointDone` like a local one), and it becomes the group's durable
    /// checkpoint once saved and the WAL is durable through `lsn`. Call only when
    /// `may_install`.
    pub fn on_install(&mut self, group: GroupId, through: Instance, lsn: Lsn) {
        assert!(self.may_install(group), "group {} busy", group.0);
        let tracker = self
            .groups
            .get_mut(&group)
            .expect("may_install checked the group");
        assert!(
            through > tracker.durable,
            "group {}: install at {} not above the durable checkpoint {}",
            group.0,
            through.0,
            tracker.durable.0
        );
        tracker.in_flight = Some((through, lsn));
        tracker.installing = true;
        tracker.instances_since = 0;
        tracker.size_since = 0;
        if let Some(at) = tracker.due.take() {
            self.due.remove(&(at, group));
        }
    }

    /// The WAL is durable through `durable_lsn`: saved checkpoints whose LSN it covers
    /// become the groups' durable checkpoints.
    pub fn on_wal_durable(&mut self, durable_lsn: Lsn) {
        for (group, tracker) in &mut self.groups {
            if let Some((through, lsn)) = tracker.saved {
                if lsn <= durable_lsn {
                    tracker.saved = None;
                    tracker.durable = tracker.durable.max(through);
                    if let Some(at) = next_turn(&self.policy, tracker) {
                        schedule(&mut self.due, *group, tracker, at);
                    }
                }
            }
        }
    }

    /// The last durable checkpoint of `group` (`Instance(0)`: none).
    #[must_use]
    pub fn durable_through(&self, group: GroupId) -> Instance {
        self.groups
            .get(&group)
            .map_or(Instance(0), |tracker| tracker.durable)
    }

    /// Checkpoints in flight on this shard.
    #[must_use]
    pub fn in_flight_count(&self) -> usize {
        self.in_flight_count
    }

    /// The counters.
    #[must_use]
    pub fn counters(&self) -> &CheckpointCounters {
        &self.counters
    }

    /// Checks the invariants of the module docs.
    pub fn invariants(&self) {
        let in_flight = self
            .groups
            .values()
            .filter(|t| t.in_flight.is_some() && !t.installing)
            .count();
        assert_eq!(in_flight, self.in_flight_count, "in-flight count drifted");
        assert!(
            self.in_flight_count <= self.policy.in_flight_count_max,
            "{} checkpoints in flight, max {}",
            self.in_flight_count,
            self.policy.in_flight_count_max
        );
        let scheduled = self.groups.values().filter(|t| t.due.is_some()).count();
        assert_eq!(scheduled, self.due.len(), "due set drifted");
        for (at, group) in &self.due {
            assert_eq!(
                self.groups.get(group).and_then(|t| t.due),
                Some(*at),
                "group {} due entry stale",
                group.0
            );
        }
    }
}

/// When a group that applied something takes its next checkpoint: at once when a
/// count or size trigger is reached, else at the interval's end (`None`: never).
fn next_turn(policy: &CheckpointPolicy, tracker: &Tracker) -> Option<Nanos> {
    if (policy.instance_count > 0 && tracker.instances_since >= policy.instance_count)
        || (policy.applied_size > 0 && tracker.size_since >= policy.applied_size)
    {
        Some(Nanos(0))
    } else if policy.interval_ns > 0 && tracker.instances_since > 0 {
        Some(tracker.last_at.plus(policy.interval_ns))
    } else {
        None
    }
}

/// Sets `tracker`'s turn to the earlier of its current one and `at`.
fn schedule(
    due: &mut BTreeSet<(Nanos, GroupId)>,
    group: GroupId,
    tracker: &mut Tracker,
    at: Nanos,
) {
    match tracker.due {
        Some(current) if current <= at => {}
        Some(current) => {
            due.remove(&(current, group));
            due.insert((at, group));
            tracker.due = Some(at);
        }
        None => {
            due.insert((at, group));
            tracker.due = Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Ballot, Body, Entry};
    use bytes::Bytes;

    const G: GroupId = GroupId(7);
    const S: u64 = 1_000_000_000;

    fn apply(instance: u64, size: usize) -> Apply {
        Apply {
            group: G,
            instance: Instance(instance),
            entry: Entry {
                origin: Ballot::ZERO,
                body: Body::Values(smallvec::smallvec![Bytes::from(vec![0; size])]),
            },
            skip: false,
            proposals: crate::paxos::Proposals::new(),
            checksum: 0,
        }
    }

    fn policy(instances: u64, size: u64, interval_s: u64) -> CheckpointPolicy {
        CheckpointPolicy {
            instance_count: instances,
            applied_size: size,
            interval_ns: interval_s * S,
            retry_ns: 5 * S,
            in_flight_count_max: 1,
        }
    }

    // Goal: the instance trigger fires at exactly N applies, one checkpoint is in
    // flight at a time, and the durable instance waits for both the file and the WAL.
    // Method: apply N - 1, N; take; apply more while in flight; answer Saved; move the
    // WAL's durable LSN below, then past, the LSN planned at the take.
    #[test]
    fn instance_trigger_one_in_flight_durable_after_file_and_wal() {
        let mut c = Checkpoints::new(policy(3, 0, 0), [(G, Instance(0))], Nanos(0));
        c.on_applied(&apply(1, 10));
        c.on_applied(&apply(2, 10));
        assert!(c.take_due(Nanos(1), Lsn(5), |_| Instance(2)).is_empty());
        c.on_applied(&apply(3, 10));
        assert_eq!(c.take_due(Nanos(2), Lsn(9), |_| Instance(3)), vec![G]);
        c.invariants();
        for i in 4..=9 {
            c.on_applied(&apply(i, 10));
        }
        assert!(
            c.take_due(Nanos(3), Lsn(12), |_| Instance(9)).is_empty(),
            "one in flight per group"
        );
        c.on_done(Nanos(4), G, Instance(3), &CheckpointOutcome::Saved);
        assert_eq!(c.durable_through(G), Instance(0), "WAL not yet durable");
        c.on_wal_durable(Lsn(8));
        assert_eq!(c.durable_through(G), Instance(0));
        assert!(
            c.take_due(Nanos(5), Lsn(13), |_| Instance(9)).is_empty(),
            "the next waits until the saved one is durable"
        );
        c.on_wal_durable(Lsn(9));
        assert_eq!(c.durable_through(G), Instance(3));
        // Six applied while in flight: due again at once.
        assert_eq!(c.take_due(Nanos(5), Lsn(13), |_| Instance(9)), vec![G]);
        c.invariants();
        assert_eq!(c.counters().taken, 2);
        assert_eq!(c.counters().saved, 1);
    }

    // Goal: the byte trigger and the time trigger fire; an idle group never does;
    // a failure retries after `retry_ns`; `Unsupported` stops asking.
    // Method: drive each trigger with small thresholds and read `take_due`.
    #[test]
    fn size_time_retry_and_unsupported() {
        let mut c = Checkpoints::new(policy(0, 100, 0), [(G, Instance(0))], Nanos(0));
        c.on_applied(&apply(1, 60));
        assert!(c.take_due(Nanos(1), Lsn(1), |_| Instance(1)).is_empty());
        c.on_applied(&apply(2, 60));
        assert_eq!(c.take_due(Nanos(2), Lsn(2), |_| Instance(2)), vec![G]);
        // Due again while in flight: the failure still waits `retry_ns`.
        c.on_applied(&apply(3, 200));
        c.on_done(
            Nanos(3),
            G,
            Instance(2),
            &CheckpointOutcome::Failed {
                error: "disk full".into(),
            },
        );
        assert!(c
            .take_due(Nanos(3 + 5 * S - 1), Lsn(2), |_| Instance(2))
            .is_empty());
        assert_eq!(
            c.take_due(Nanos(3 + 5 * S), Lsn(2), |_| Instance(2)),
            vec![G]
        );
        c.on_done(
            Nanos(6 * S),
            G,
            Instance(2),
            &CheckpointOutcome::Unsupported,
        );
        for i in 3..10 {
            c.on_applied(&apply(i, 100));
        }
        assert!(c.take_due(Nanos(7 * S), Lsn(3), |_| Instance(9)).is_empty());
        c.invariants();

        let mut t = Checkpoints::new(policy(0, 0, 10), [(G, Instance(4))], Nanos(0));
        assert!(
            t.take_due(Nanos(20 * S), Lsn(1), |_| Instance(4))
                .is_empty(),
            "an idle group takes no checkpoint"
        );
        t.on_applied(&apply(5, 1));
        assert!(t
            .take_due(Nanos(10 * S - 1), Lsn(1), |_| Instance(5))
            .is_empty());
        assert_eq!(t.take_due(Nanos(10 * S), Lsn(1), |_| Instance(5)), vec![G]);
        assert_eq!(t.durable_through(G), Instance(4), "the restored checkpoint");
        t.invariants();
    }

    // Goal: the shard-wide bound holds across groups, and a policy that is off takes
    // nothing.
    // Method: two groups due at once with a bound of 1; then an OFF policy.
    #[test]
    fn shard_bound_and_off() {
        let h = GroupId(8);
        let mut c = Checkpoints::new(
            policy(1, 0, 0),
            [(G, Instance(0)), (h, Instance(0))],
            Nanos(0),
        );
        c.on_applied(&apply(1, 1));
        let mut other = apply(1, 1);
        other.group = h;
        c.on_applied(&other);
        assert_eq!(c.take_due(Nanos(1), Lsn(1), |_| Instance(1)), vec![G]);
        assert!(c.take_due(Nanos(1), Lsn(1), |_| Instance(1)).is_empty());
        c.on_done(Nanos(2), G, Instance(1), &CheckpointOutcome::Saved);
        assert_eq!(c.take_due(Nanos(2), Lsn(1), |_| Instance(1)), vec![h]);
        c.invariants();

        let mut off = Checkpoints::new(CheckpointPolicy::OFF, [(G, Instance(0))], Nanos(0));
        off.on_applied(&apply(1, 1 << 30));
        assert!(off
            .take_due(Nanos(u64::MAX), Lsn(1), |_| Instance(1))
            .is_empty());
    }
}
