//! Local checkpoints at the level of the pure shard: the policy as `Shard` applies it
//! (when `Effects::checkpoints` asks, at which instance, one at a time, retries after
//! a failure, durable only with the WAL), and a restart from a checkpoint base that
//! re-applies only the log after it.

use bytes::Bytes;
use synod::paxos::{
    GroupConfig, GroupId, Instance, Lsn, Membership, Nanos, NodeId, ProposalId, Restore,
};
use synod::runtime::{
    CheckpointOutcome, CheckpointPolicy, Effects, Shard, ShardConfig, ShardInput, TakeCheckpoint,
};
use synod::sim::disk::SimDisk;
use synod::wal::{self, DecodeLimits, GroupCommit, GroupCommitConfig, Resume, ScanConfig};

const G: GroupId = GroupId(1);
const NODE: NodeId = NodeId(1);
const SALT: u32 = 0x5a17;
const RETRY_NS: u64 = 1_000_000_000;

fn policy() -> CheckpointPolicy {
    CheckpointPolicy {
        instance_count: 5,
        applied_size: 0,
        interval_ns: 0,
        retry_ns: RETRY_NS,
        in_flight_count_max: 1,
    }
}

fn shard(restore: Restore, resume: Resume, now: Nanos) -> Shard {
    let members = Membership::new(vec![NODE]);
    shard_with(members, policy(), (restore, false), resume, now)
}

/// A shard of group `G` with `members`, `checkpoint` as its policy, restored from
/// `restore` with the rejoin marker when `marker`.
fn shard_with(
    members: Membership,
    checkpoint: CheckpointPolicy,
    (restore, marker): (Restore, bool),
    resume: Resume,
    now: Nanos,
) -> Shard {
    let config = GroupConfig::new(NODE, G, members);
    let commit = GroupCommit::new(
        GroupCommitConfig {
            buffer_size_max: 1 << 20,
            salt: SALT,
            writes_in_flight_max: 1,
        },
        resume,
    );
    let shard_config = ShardConfig {
        node: NODE,
        wal_pending_size_max: 8 << 20,
        held_count_max: 10_000,
        reads_pending_count_max: 64,
        log_reads_wal_count_max: synod::runtime::log_reads::LOG_READS_WAL_COUNT_MAX,
        checkpoint,
        transfer: synod::runtime::TransferPolicy::default(),
        truncation: synod::runtime::TruncationPolicy::OFF,
    };
    Shard::new(shard_config, vec![(config, restore)], commit, marker, now)
}

/// Writes `plan` onto `disk`, syncs, and tells `shard` the write is durable.
fn complete(shard: &mut Shard, disk: &mut SimDisk, now: Nanos, plan: &wal::WritePlan) {
    disk.write(plan.offset, &plan.bytes);
    disk.sync();
    shard.step(
        now,
        ShardInput::WriteDone {
            lsn_through: plan.lsn_through,
        },
    );
}

/// An executor whose writes complete at once onto `disk`: steps `input`, flushes until
/// no write is planned, and returns the checkpoints asked for, each checked to be at
/// the group's applied watermark right after the flush that asked, and the applies.
fn run(
    shard: &mut Shard,
    disk: &mut SimDisk,
    now: Nanos,
    input: ShardInput,
) -> (Vec<TakeCheckpoint>, Vec<Instance>) {
    let mut effects = Effects::default();
    let mut takes = Vec::new();
    let mut applied = Vec::new();
    shard.step(now, input);
    loop {
        shard.flush(now, &mut effects);
        shard.invariants();
        applied.extend(effects.apply.iter().map(|a| a.instance));
        for take in effects.checkpoints.drain(..) {
            let group = shard.group(take.group).expect("the group");
            assert_eq!(take.base.through, group.applied_through());
            assert_eq!(take.base.checksum, group.checksum());
            takes.push(take);
        }
        let Some(plan) = effects.write.take() else {
            break;
        };
        complete(shard, disk, now, &plan);
        effects.clear();
    }
    (takes, applied)
}

fn propose(id: u64) -> ShardInput {
    ShardInput::Propose {
        group: G,
        id: ProposalId(id),
        value: Bytes::from(format!("value {id}")),
    }
}

fn done(take: &TakeCheckpoint, outcome: CheckpointOutcome) -> ShardInput {
    ShardInput::CheckpointDone {
        group: take.group,
        through: take.base.through,
        outcome,
    }
}

// Goal: the shard asks for a checkpoint every `instance_count` instances applied, at
// the group's applied watermark after the flush's applies, never a second one before
// the first is durable; a failure retries after `retry_ns`; the durable checkpoint is
// reported once saved with the WAL durable past it.
// Method: a one-node shard whose writes complete at once; one value per step; answer
// the first checkpoint `Failed`, the retry `Saved`; read `effects` and the status.
#[test]
fn shard_takes_checkpoints_by_policy() {
    let mut disk = SimDisk::new(64 << 20);
    let mut now = Nanos::from_ms(3_000);
    let mut s = shard(Restore::default(), Resume::EMPTY, Nanos(0));
    let (takes, _) = run(&mut s, &mut disk, now, ShardInput::Tick);
    assert!(takes.is_empty());
    assert_eq!(s.group(G).expect("group").applied_through(), Instance(1));
    let mut all = Vec::new();
    for id in 1..=12 {
        let (takes, _) = run(&mut s, &mut disk, now, propose(id));
        all.extend(takes);
    }
    // StartWorking at 1, values at 2..=13: the 5th instance applied asks, once.
    assert_eq!(all.len(), 1, "one in flight: {all:?}");
    assert_eq!(all[0].base.through, Instance(5));
    assert_eq!(s.checkpoints().in_flight_count(), 1);

    run(
        &mut s,
        &mut disk,
        now,
        done(
            &all[0],
            CheckpointOutcome::Failed {
                error: "disk full".into(),
            },
        ),
    );
    assert_eq!(s.checkpoints().durable_through(G), Instance(0));
    now = now.plus(RETRY_NS - 1);
    let (early, _) = run(&mut s, &mut disk, now, ShardInput::Tick);
    assert!(early.is_empty(), "no retry before retry_ns");
    now = now.plus(1);
    let (retry, _) = run(&mut s, &mut disk, now, propose(13));
    assert_eq!(retry.len(), 1);
    // Taken at the first flush at or after the retry time, before this value is
    // chosen: at the watermark of that moment.
    assert_eq!(retry[0].base.through, Instance(13));
    run(
        &mut s,
        &mut disk,
        now,
        done(&retry[0], CheckpointOutcome::Saved),
    );
    assert_eq!(s.checkpoints().durable_through(G), Instance(13));
    assert_eq!(s.checkpoints().counters().failed, 1);
    assert_eq!(s.checkpoints().counters().saved, 1);

    // Five more instances applied after the one at 13 (14..=18): the next one.
    let mut next = Vec::new();
    for id in 14..=18 {
        next.extend(run(&mut s, &mut disk, now, propose(id)).0);
    }
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].base.through, Instance(18));
}

// Goal: a shard restarted from a checkpoint base resumes applying right after it: the
// restored applies cover only the log after the checkpoint, the running checksum
// and watermarks match the shard before the restart, and the restored checkpoint is
// the durable one; a base above the chosen watermark the log proves is refused.
// Method: run a shard to instance 13 with a checkpoint at 5; recover its log from the
// simulated disk (scan, replay), restart with the base, compare.
#[test]
fn restart_resumes_after_the_checkpoint() {
    let mut disk = SimDisk::new(64 << 20);
    let now = Nanos::from_ms(3_000);
    let mut s = shard(Restore::default(), Resume::EMPTY, Nanos(0));
    run(&mut s, &mut disk, now, ShardInput::Tick);
    let mut takes = Vec::new();
    for id in 1..=12 {
        takes.extend(run(&mut s, &mut disk, now, propose(id)).0);
    }
    let base = takes[0].base.clone();
    assert_eq!(base.through, Instance(5));
    let before = s.group(G).expect("group");
    let (applied, checksum) = (before.applied_through(), before.checksum());
    assert_eq!(applied, Instance(13));

    let (restore, resume) = recovered(&disk, false);
    assert_eq!(restore.installed_through, Instance(0));
    assert_eq!(restore.chosen_proven(), Instance(13));

    let mut from_log = shard(restore.clone(), resume, now);
    let (_, replayed) = run(&mut from_log, &mut disk, now, ShardInput::Tick);
    assert_eq!(
        replayed.first(),
        Some(&Instance(1)),
        "no checkpoint: from 1"
    );

    let mut with_base = restore.clone();
    with_base.checkpoint = Some(base.clone());
    let mut restarted = shard(with_base, resume, now);
    assert_eq!(restarted.checkpoints().durable_through(G), Instance(5));
    let (_, replayed) = run(&mut restarted, &mut disk, now, ShardInput::Tick);
    let expected: Vec<Instance> = (6..=13).map(Instance).collect();
    assert_eq!(replayed, expected, "only the log after the checkpoint");
    let group = restarted.group(G).expect("group");
    assert_eq!(group.applied_through(), applied);
    assert_eq!(group.checksum(), checksum);

    let mut above = restore;
    let mut too_new = base;
    too_new.through = Instance(14);
    above.checkpoint = Some(too_new);
    let refused = std::panic::catch_unwind(|| shard(above, resume, now));
    assert!(
        refused.is_err(),
        "a base above the proven watermark is refused"
    );
}

/// The records a scan of `disk` recovers, replayed into the restore of group `G`.
fn recovered(disk: &SimDisk, lost_state: bool) -> (Restore, Resume) {
    let scan = wal::scan(
        disk.image(),
        &ScanConfig {
            salt: SALT,
            lsn_prev: Lsn(0),
            limits: DecodeLimits::default(),
        },
    );
    let state = wal::replay(&scan.records).remove(&G).unwrap_or_default();
    let restore = Restore {
        promised: state.promised,
        accepted: state.accepted,
        learned: state.learned,
        chosen_through: state.chosen_through,
        lost_state,
        retired: false,
        checkpoint: None,
        installed_through: state.installed_through,
    };
    (restore, scan.resume)
}

// Goal: a shard whose log lost state installs its newest checkpoint file above what
// the log proves, and reports it durable; it persists `Installed` at it before its
// rejoin marker may go, so that the restart after the marker went (the log trusted
// again) installs that checkpoint again instead of falling back below it (simulator
// seed 111638204532504: the checkpoint at 30 reported durable, then a restart from 0).
// Method: a 3-node group restored lost (nothing of its log kept, the rejoin marker
// present) with a checkpoint at 10; two peers' empty catch-up chunks, then both
// peers' promises to its campaign, end its rejoin; writes complete at once; at
// `clear_rejoin_marker` the disk is scanned and replayed as a restart without lost
// state would, and the shard restarted from the checkpoint.
#[test]
fn lost_state_restore_makes_its_checkpoint_provable_before_the_marker_goes() {
    let three = Membership::new(vec![NODE, NodeId(2), NodeId(3)]);
    let base = synod::paxos::CheckpointBase {
        through: Instance(10),
        checksum: 0x1234,
        start_working_applied: synod::paxos::Ballot::ZERO,
        configs: vec![(Instance(1), three.clone())],
    };
    let restore = Restore {
        lost_state: true,
        checkpoint: Some(base.clone()),
        ..Restore::default()
    };
    let now = Nanos::from_ms(3_000);
    let shard_of = |restore: Restore, resume: Resume, marker: bool| {
        let members = three.clone();
        shard_with(
            members,
            CheckpointPolicy::OFF,
            (restore, marker),
            resume,
            now,
        )
    };
    let mut disk = SimDisk::new(64 << 20);
    let mut s = shard_of(restore, Resume::EMPTY, true);
    assert_eq!(s.checkpoints().durable_through(G), Instance(10));
    assert!(!s.group(G).expect("group").is_voting());
    let chunk = |from: u32| synod::paxos::Message {
        group: G,
        from: NodeId(from),
        to: NODE,
        body: synod::paxos::MessageBody::CatchUpChunk {
            chosen_through: Instance(10),
            promised: synod::paxos::Ballot {
                round: 3,
                node: NodeId(from),
            },
            accepted_max: Instance(10),
            first: Instance(11),
            entries: Vec::new(),
            from_voter: true,
            membership_changed: false,
        },
    };
    let mut effects = Effects::default();
    let mut cleared = false;
    let mut drive = |s: &mut Shard, at: Nanos, input: ShardInput| {
        s.step(at, input);
        loop {
            effects.clear();
            s.flush(at, &mut effects);
            s.invariants();
            cleared |= effects.clear_rejoin_marker;
            let Some(plan) = effects.write.take() else {
                break;
            };
            complete(s, &mut disk, at, &plan);
        }
        cleared
    };
    for input in [
        ShardInput::Tick,
        ShardInput::Message(chunk(2)),
        ShardInput::Message(chunk(3)),
    ] {
        drive(&mut s, now, input);
    }
    // Heard from both peers, it campaigns once its election timer runs out, and votes
    // again when both other voters promised (its own acceptor does not vote).
    let later = Nanos::from_ms(10_000);
    drive(&mut s, later, ShardInput::Tick);
    let ballot = s.group(G).expect("group").ballot().expect("a candidate");
    let promise = |from: u32| synod::paxos::Message {
        group: G,
        from: NodeId(from),
        to: NODE,
        body: synod::paxos::MessageBody::Promise {
            ballot,
            chosen_through: Instance(10),
            entries: Vec::new(),
            truncated: false,
        },
    };
    for input in [
        ShardInput::Message(promise(2)),
        ShardInput::Message(promise(3)),
        ShardInput::Tick,
        ShardInput::Tick,
    ] {
        if drive(&mut s, later, input) {
            break;
        }
    }
    assert!(cleared, "the rejoin marker never went");
    assert!(s.group(G).expect("group").is_voting());

    let (restore, resume) = recovered(&disk, false);
    assert_eq!(restore.installed_through, Instance(10), "Installed at 10");
    assert!(
        restore.installable_through() >= Instance(10),
        "the log proves {} only",
        restore.installable_through().0
    );
    let mut again = restore;
    again.checkpoint = Some(base);
    let restarted = shard_of(again, resume, false);
    assert_eq!(restarted.checkpoints().durable_through(G), Instance(10));
    let group = restarted.group(G).expect("group");
    assert_eq!(group.applied_through(), Instance(10));
    assert_eq!(group.vote_floor(), Instance(1));
}
