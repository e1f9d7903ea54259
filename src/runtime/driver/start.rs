//! Starting a shard on its thread: the WAL writer opens the log (probe, recovery, the
//! rejoin marker), every configured group is restored from what the log held, the state
//! machines are made (each from its group's newest usable checkpoint, if any), and the
//! peer links listen. Only then does the shard say it is
//! ready and enter the loop.
//!
//! Invariants:
//! - `ready` is answered exactly once, before the loop runs: `Ok` once the shard
//!   recovered its log and listens, or why it could not start;
//! - a group is restored from the records of the log (the WAL is the only source of
//!   truth), its state machine from a checkpoint only at or below the chosen watermark
//!   that log proves; records of groups no longer configured are ignored, with a
//!   warning;
//! - every group of a log that lost state restores as a non-voting learner.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use super::checkpoint_writer::Restorer;
use super::thread::{current_thread_id, ShardStartError};
use super::wal_writer::{Opened, WalWriter};
use super::{Driver, ShardPlan};
use crate::paxos::{GroupId, Restore};
use crate::runtime::clock::{entropy_seed, MonotonicClock};
use crate::runtime::fatal::{FatalLatch, ShardStopped};
use crate::runtime::mailbox::Mailbox;
use crate::runtime::net::Net;
use crate::runtime::notify::Notify;
use crate::runtime::request::{ProposalCounters, Request};
use crate::runtime::shard::{Effects, Shard};
use crate::runtime::state_machine::{StateMachine, StateMachineFactory};
use crate::runtime::wal_reads::WalReads;

/// The shard thread's future: starts the shard, says whether it could on `ready`, then
/// runs the loop until the shard stops.
pub(super) async fn run(
    plan: ShardPlan,
    factory: StateMachineFactory,
    mailbox: Mailbox<Request>,
    ready: std::sync::mpsc::Sender<Result<(), ShardStartError>>,
    latch: Arc<FatalLatch>,
) -> Result<(), ShardStopped> {
    let driver = match start(plan, factory, mailbox, latch).await {
        Ok(driver) => driver,
        Err(error) => {
            // Not a stop of a running shard: `spawn` returns the reason.
            let _ = ready.send(Err(error));
            return Ok(());
        }
    };
    let _ = ready.send(Ok(()));
    // The driver's loop future is large (the pure shard lives in it): on the heap.
    Box::pin(driver.run()).await
}

/// Opens the WAL, restores every group from what it held, makes the state machines
/// and starts the peer links.
async fn start(
    plan: ShardPlan,
    factory: StateMachineFactory,
    mailbox: Mailbox<Request>,
    latch: Arc<FatalLatch>,
) -> Result<Driver, ShardStartError> {
    let shard_id = plan.shard;
    let clock = MonotonicClock::start();
    let wake = Rc::new(Notify::default());
    let began = clock.now();
    let Opened {
        writer,
        mut recovery,
        lost_state: lost,
        retired,
        mut report,
    } = WalWriter::open(
        &plan.store,
        shard_id,
        plan.lost_state,
        plan.fsync,
        plan.wal_writes_in_flight_max,
        clock,
        Rc::clone(&wake),
    )
    .await?;
    let commit = recovery.group_commit_pipelined(
        plan.store.geometry,
        plan.wal_buffer_size_max,
        entropy_seed() ^ u64::from(shard_id),
        plan.wal_writes_in_flight_max,
    );
    let replaying = clock.now();
    let mut recovered = crate::wal::replay_owned(std::mem::take(&mut recovery.records));
    drop(recovery);
    let restoring = clock.now();
    report.replay_ns = restoring.0.saturating_sub(replaying.0);
    let mut groups = Vec::with_capacity(plan.groups.len());
    let mut machines: BTreeMap<GroupId, Box<dyn StateMachine>> = BTreeMap::new();
    let restorer = Restorer::new(&plan.store.dir, shard_id);
    for config in &plan.groups {
        config.validate().map_err(|reason| ShardStartError::Group {
            group: config.group,
            reason,
        })?;
        let state = recovered.remove(&config.group).unwrap_or_default();
        let mut restore = Restore {
            promised: state.promised,
            accepted: state.accepted,
            learned: state.learned,
            chosen_through: state.chosen_through,
            lost_state: lost,
            retired: retired.contains(&config.group),
            checkpoint: None,
            installed_through: state.installed_through,
        };
        let mut machine = factory(config.group);
        restorer.restore(config.group, &mut restore, &mut machine, &factory);
        groups.push((config.clone(), restore));
        machines.insert(config.group, machine);
    }
    if !recovered.is_empty() {
        log::warn!(
            "shard {shard_id}: the WAL holds records of {} groups this node no longer \
             configures; they are ignored",
            recovered.len()
        );
    }
    let building = clock.now();
    report.restore_ns = building.0.saturating_sub(restoring.0);
    let shard = Shard::new(plan.shard_config.clone(), groups, commit, lost, clock.now());
    report.groups_ns = clock.now().0.saturating_sub(building.0);
    let net_wake = Rc::clone(&wake);
    let net = Net::start(plan.net.clone(), Rc::new(move || net_wake.notify()))
        .await
        .map_err(ShardStartError::Net)?;
    report.total_ns = clock.now().0.saturating_sub(began.0);
    log::info!(
        "shard {shard_id}: recovered {} records from {} segments ({} bytes) in {:.3} s \
         (probe {:.3}, scan {:.3}, index {:.3}, replay {:.3}, restore {:.3}, groups {:.3})",
        report.records,
        report.segments,
        report.bytes,
        seconds(report.total_ns),
        seconds(report.probe_ns),
        seconds(report.scan_ns),
        seconds(report.index_ns),
        seconds(report.replay_ns),
        seconds(report.restore_ns),
        seconds(report.groups_ns),
    );
    Ok(Driver {
        recovery: report,
        plan,
        clock,
        shard,
        machines,
        mailbox,
        net,
        wal: writer,
        wal_reads: WalReads::default(),
        checkpoints: restorer.into_writer(Rc::clone(&wake)),
        factory,
        wake,
        iterations: 0,
        value_instances_applied: 0,
        values_applied: 0,
        proposal_counters: ProposalCounters::default(),
        thread_id: current_thread_id(),
        next_proposal: 0,
        proposals: HashMap::new(),
        placements: super::trace::Placements::default(),
        next_read: 0,
        reads: HashMap::new(),
        log_reads: HashMap::new(),
        transfers: super::transfers::Transfers::default(),
        memberships: super::memberships::Memberships::default(),
        requests: Vec::new(),
        inbound: Vec::new(),
        effects: Effects::default(),
        stopping: None,
        latch,
    })
}

/// Nanoseconds as seconds, for the log.
fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}
