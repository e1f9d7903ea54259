//! When a shard truncates its WAL: the per-group watermarks below which the replica no
//! longer needs its log, and when to hand them to the executor. Pure: `Shard` feeds it
//! each group's durable checkpoint instance (`checkpoints`) and the executor's answers,
//! and turns its decisions into `Effects::wal_truncate`; the glommio driver
//! (`Store::truncate`) and the simulator only carry them out.
//!
//! A group's watermark is its durable checkpoint instance less a tail of
//! `catch_up_instances`: the checkpoint file is saved and the WAL is durable past the
//! `Chosen` record that proves it, so a restart restores the group there and needs
//! none of its records at or below it. The tail keeps the newest instances below the
//! checkpoint for peers that lag a little (etcd keeps `SnapshotCatchUpEntries` after a
//! snapshot for the same reason). Peers further behind than a watermark are answered
//! `WalReadOutcome::Truncated` and need the checkpoint itself (sent by
//! `shard::transfer`, `TransferPolicy`).
//!
//! The executor answers every `WalTruncate` with `ShardInput::WalTruncateDone`, whose
//! rewrites (the records compaction carries forward, `wal::compaction::Rewrite`) the
//! shard appends like any other record; a failure is fatal to the shard
//! (`ShardInput::WriteFailed`, never retried).
//!
//! Invariants (`Truncation::invariants` and assertions):
//! - at most one truncation in flight per shard;
//! - a watermark handed out never decreases within a shard's life, and is never above
//!   the group's durable checkpoint when handed out;
//! - a truncation is handed out only when some watermark rose since the last one, and
//!   no sooner than `interval_ns` after the previous one was handed out.

use std::collections::BTreeMap;

use crate::paxos::{GroupId, Instance, Nanos};

/// When a shard truncates its WAL. Default (`TruncationPolicy::default`, reasoning in
/// `tuning.md`): on (a peer behind every watermark is sent a checkpoint), at most once
/// per second, keeping 5,000 instances below each durable checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TruncationPolicy {
    /// Whether the shard truncates its WAL at all (off: the WAL keeps every record).
    pub enabled: bool,
    /// At least this long between two truncations handed out (0: as soon as a
    /// watermark rose and the previous one is answered). Each truncation walks the
    /// index of the records above the watermarks, so this bounds its cost.
    pub interval_ns: u64,
    /// Instances kept below each group's durable checkpoint for lagging peers: the
    /// watermark is the checkpoint less this (0: the checkpoint itself).
    pub catch_up_instances: u64,
}

impl Default for TruncationPolicy {
    fn default() -> TruncationPolicy {
        TruncationPolicy {
            enabled: true,
            interval_ns: 1_000_000_000,
            catch_up_instances: 5_000,
        }
    }
}

impl TruncationPolicy {
    /// The policy that never truncates.
    pub const OFF: TruncationPolicy = TruncationPolicy {
        enabled: false,
        interval_ns: 0,
        catch_up_instances: 0,
    };
}

/// The executor must release the WAL below `watermarks` (every group of the shard
/// with a durable checkpoint, each at its instance; a group absent has watermark 0):
/// catch-up reads at or below a group's watermark answer `WalReadOutcome::Truncated`
/// from then on, segments no longer needed are freed, and the records to carry forward
/// come back in `ShardInput::WalTruncateDone`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalTruncate {
    /// Per group, the instance at and below which its records are not needed.
    pub watermarks: BTreeMap<GroupId, Instance>,
}

/// Counters of a shard's truncations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TruncationCounters {
    /// Truncations handed out (`Effects::wal_truncate`).
    pub asked: u64,
    /// Truncations answered.
    pub done: u64,
    /// Records carried forward (rewrites appended).
    pub rewrites: u64,
}

/// The truncation decisions of one shard. See the module docs.
#[derive(Debug)]
pub struct Truncation {
    policy: TruncationPolicy,
    /// The watermarks of the last truncation handed out.
    watermarks: BTreeMap<GroupId, Instance>,
    /// A truncation is handed out and not answered yet.
    in_flight: bool,
    /// When the last one was handed out.
    last_at: Option<Nanos>,
    counters: TruncationCounters,
}

impl Truncation {
    /// No truncation handed out yet.
    #[must_use]
    pub fn new(policy: TruncationPolicy) -> Truncation {
        Truncation {
            policy,
            watermarks: BTreeMap::new(),
            in_flight: false,
            last_at: None,
            counters: TruncationCounters::default(),
        }
    }

    /// The truncation to hand out now, if any: `durable` gives each group's durable
    /// checkpoint instance (`Instance(0)`: none). A group's watermark is its durable
    /// checkpoint less `catch_up_instances`, or the watermark already handed out if
    /// that is higher (a watermark never decreases).
    pub fn decide(
        &mut self,
        now: Nanos,
        durable: impl IntoIterator<Item = (GroupId, Instance)>,
    ) -> Option<WalTruncate> {
        if !self.policy.enabled || self.in_flight {
            return None;
        }
        if self
            .last_at
            .is_some_and(|at| now < at.plus(self.policy.interval_ns))
        {
            return None;
        }
        let mut rose = false;
        let mut watermarks = self.watermarks.clone();
        for (group, checkpoint) in durable {
            let through = Instance(checkpoint.0.saturating_sub(self.policy.catch_up_instances));
            if through == Instance(0) {
                continue;
            }
            let watermark = watermarks.entry(group).or_insert(Instance(0));
            if through > *watermark {
                *watermark = through;
                rose = true;
            }
        }
        if !rose {
            return None;
        }
        for (group, watermark) in &self.watermarks {
            assert!(
                watermarks[group] >= *watermark,
                "group {} watermark fell from {} to {}",
                group.0,
                watermark.0,
                watermarks[group].0
            );
        }
        self.watermarks.clone_from(&watermarks);
        self.in_flight = true;
        self.last_at = Some(now);
        self.counters.asked += 1;
        Some(WalTruncate { watermarks })
    }

    /// The executor's answer, with `rewrite_count` records to carry forward.
    pub fn on_done(&mut self, rewrite_count: usize) {
        assert!(self.in_flight, "a truncation answered with none in flight");
        self.in_flight = false;
        self.counters.done += 1;
        self.counters.rewrites += rewrite_count as u64;
    }

    /// The watermark last handed out for `group` (`Instance(0)`: none).
    #[must_use]
    pub fn watermark(&self, group: GroupId) -> Instance {
        self.watermarks.get(&group).copied().unwrap_or(Instance(0))
    }

    /// Whether a truncation is handed out and not answered yet.
    #[must_use]
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// The counters.
    #[must_use]
    pub fn counters(&self) -> &TruncationCounters {
        &self.counters
    }

    /// Checks the invariants of the module docs that `durable` (each group's durable
    /// checkpoint instance) can tell: no watermark above its group's durable
    /// checkpoint, and the counters agree with the one in flight.
    pub fn invariants(&self, durable: impl Fn(GroupId) -> Instance) {
        for (group, watermark) in &self.watermarks {
            let checkpoint = durable(*group);
            assert!(
                *watermark <= checkpoint,
                "group {} watermark {} above its durable checkpoint {}",
                group.0,
                watermark.0,
                checkpoint.0
            );
        }
        assert_eq!(
            self.counters.asked,
            self.counters.done + u64::from(self.in_flight),
            "truncations asked and answered drifted"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: GroupId = GroupId(1);
    const H: GroupId = GroupId(2);
    const S: u64 = 1_000_000_000;

    fn policy(interval_s: u64) -> TruncationPolicy {
        TruncationPolicy {
            enabled: true,
            interval_ns: interval_s * S,
            catch_up_instances: 0,
        }
    }

    // Goal: a truncation is handed out only when a watermark rose, one at a time,
    // with every group's watermark (not only the one that rose).
    // Method: feed durable checkpoints, answer, feed the same again, then a rise.
    #[test]
    fn handed_out_when_a_watermark_rises_one_at_a_time() {
        let mut t = Truncation::new(policy(0));
        assert!(t
            .decide(Nanos(0), [(G, Instance(0)), (H, Instance(0))])
            .is_none());
        let first = t
            .decide(Nanos(1), [(G, Instance(10)), (H, Instance(0))])
            .expect("G rose");
        assert_eq!(first.watermarks, BTreeMap::from([(G, Instance(10))]));
        assert!(
            t.decide(Nanos(2), [(G, Instance(20))]).is_none(),
            "one in flight"
        );
        t.on_done(3);
        t.invariants(|_| Instance(20));
        let second = t
            .decide(Nanos(3), [(G, Instance(20)), (H, Instance(5))])
            .expect("both rose");
        assert_eq!(
            second.watermarks,
            BTreeMap::from([(G, Instance(20)), (H, Instance(5))])
        );
        t.on_done(0);
        assert!(t
            .decide(Nanos(4), [(G, Instance(20)), (H, Instance(5))])
            .is_none());
        let third = t
            .decide(Nanos(5), [(G, Instance(20)), (H, Instance(6))])
            .expect("H rose");
        assert_eq!(third.watermarks[&G], Instance(20), "every group is named");
        t.on_done(0);
        assert_eq!(t.counters().asked, 3);
        assert_eq!(t.counters().rewrites, 3);
        t.invariants(|_| Instance(20));
    }

    // Goal: watermarks never decrease (a durable checkpoint reported lower keeps the
    // watermark handed out), the interval holds, and an OFF policy hands out nothing.
    // Method: report a lower checkpoint, then rises inside and past the interval.
    #[test]
    fn never_decreases_interval_and_off() {
        let mut t = Truncation::new(policy(10));
        t.decide(Nanos(0), [(G, Instance(50))]).expect("rose");
        t.on_done(0);
        assert!(t.decide(Nanos(11 * S), [(G, Instance(40))]).is_none());
        assert_eq!(t.watermark(G), Instance(50));
        t.decide(Nanos(12 * S), [(G, Instance(60))])
            .expect("past the interval");
        t.on_done(0);
        assert!(
            t.decide(Nanos(12 * S + 1), [(G, Instance(70))]).is_none(),
            "within the interval"
        );
        assert!(t.decide(Nanos(22 * S), [(G, Instance(70))]).is_some());

        let mut tail = Truncation::new(TruncationPolicy {
            catch_up_instances: 30,
            ..policy(0)
        });
        assert!(tail.decide(Nanos(0), [(G, Instance(30))]).is_none());
        let first = tail.decide(Nanos(0), [(G, Instance(100))]).expect("rose");
        assert_eq!(first.watermarks[&G], Instance(70), "the tail is kept");

        let mut off = Truncation::new(TruncationPolicy::OFF);
        assert!(off.decide(Nanos(0), [(G, Instance(9))]).is_none());
    }

    // Goal: the invariant check fails on a watermark above the durable checkpoint.
    // Method: hand out 10, then check against a durable checkpoint of 9.
    #[test]
    #[should_panic(expected = "above its durable checkpoint")]
    fn watermark_above_checkpoint_is_caught() {
        let mut t = Truncation::new(policy(0));
        t.decide(Nanos(0), [(G, Instance(10))]).expect("rose");
        t.invariants(|_| Instance(9));
    }

    // Goal: an answer with nothing in flight is a programmer error.
    // Method: answer a fresh tracker.
    #[test]
    #[should_panic(expected = "none in flight")]
    fn answer_without_request_panics() {
        Truncation::new(policy(0)).on_done(0);
    }
}
