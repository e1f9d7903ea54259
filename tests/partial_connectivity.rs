//! Recovery from partial connectivity in the protocol core, measured: a leader cut off
//! from one follower only (the other links up), and a link between the leader and one
//! follower that flaps. Three replicas run on the scripted harness
//! (`common/harness.rs`) in 10 ms steps, a client proposes to the leader every 50 ms,
//! and the longest stretch without a new value chosen is measured and printed
//! (`cargo test --test partial_connectivity -- --nocapture`), with leader placement
//! off and on (`paxos::placement`: its transfers must not turn a flapping link into
//! a stall). The last test runs the same faults, and a link cut one way only, in the
//! whole simulator (shards, WAL, network delay, jitter and loss), where every seed's
//! partitions may be partial too (`sim::checkers::partial`).

mod common;

use common::harness::{Harness, GROUP};
use synod::paxos::placement::preferred_leader;
use synod::paxos::{Input, LeaderPlacement, Membership, Message, NodeId, Role};

const STEP_MS: u64 = 10;
const ELECTION_TIMEOUT_MS: u64 = 1_000; // `GroupConfig::new`, as the harness keeps it

/// The elected leader with the highest ballot, if any.
fn leader(h: &Harness) -> Option<u32> {
    (1..=3)
        .filter(|n| h.replica(*n).group.role() == Role::Leader)
        .max_by_key(|n| h.ballot_of(*n))
}

/// Values chosen so far, as the replica that applied the most shows them.
fn chosen_count(h: &Harness) -> usize {
    (1..=3)
        .map(|n| h.visible_values(n).len())
        .max()
        .unwrap_or(0)
}

/// Whether a message is lost: (ms since the fault began, (leader, follower), message).
type Cut = dyn Fn(u64, (u32, u32), &Message) -> bool;

/// What a run measured after the fault began.
struct Measured {
    /// From the fault's start to the first value chosen after it.
    first_ms: u64,
    /// The longest stretch without a new value chosen.
    longest_gap_ms: u64,
    /// Values chosen after the fault's start.
    chosen: usize,
    /// Leaders seen (changes of the highest-ballot leader) after the fault's start.
    leader_changes: usize,
}

/// Runs three replicas for `warm_ms`, then `fault_ms` more in which a message is lost
/// when `cut(t_ms, (leader, follower), message)` says so (`t_ms` counted from the
/// fault's start; the follower is the preferred replica when the leader is not).
/// With `away`, the preferred replica is cut off for the whole warm-up, so that
/// another replica leads when the fault begins and the preferred one returns with it
/// (behind, across the faulty link: placement's move back meets the fault).
fn run(
    placement: LeaderPlacement,
    (warm_ms, fault_ms): (u64, u64),
    away: bool,
    cut: &Cut,
) -> Measured {
    let mut h = Harness::new(3, 8);
    h.configure(&|c| c.leader_placement = placement);
    let voters = Membership::new(vec![NodeId(1), NodeId(2), NodeId(3)]);
    let preferred = preferred_leader(GROUP, &voters).0;
    let all = [1, 2, 3];
    let mut value = 0;
    let mut t = 0;
    let mut fault: Option<(u32, u32)> = None;
    let (mut last_count, mut last_at, mut first_ms) = (0, 0, None);
    let (mut longest_gap_ms, mut chosen, mut leader_changes) = (0, 0, 0);
    let mut last_leader = None;
    while t < warm_ms + fault_ms {
        t += STEP_MS;
        h.tick(STEP_MS, &all);
        if t % 50 == 0 {
            if let Some(l) = leader(&h) {
                value += 1;
                h.propose(l, &format!("v{value}"));
                h.step(l, Input::Flush);
            }
        }
        if fault.is_none() && t > warm_ms {
            let l = leader(&h).expect("a leader after the warm-up");
            let follower = if l == preferred {
                all.into_iter().find(|n| *n != l).expect("a follower")
            } else {
                preferred
            };
            fault = Some((l, follower));
            (last_count, last_at) = (chosen_count(&h), t);
            last_leader = Some(l);
        }
        let away_now = away && t <= warm_ms;
        let lost = |m: &Message| {
            fault.is_some_and(|f| cut(t - warm_ms, f, m))
                || (away_now && (m.from == NodeId(preferred) || m.to == NodeId(preferred)))
        };
        h.drop_where(&lost);
        h.deliver_while(&|m| !lost(m));
        h.drop_where(&lost);
        if fault.is_some() {
            let count = chosen_count(&h);
            if count > last_count {
                first_ms.get_or_insert(t - warm_ms);
                chosen += count - last_count;
                (last_count, last_at) = (count, t);
            }
            longest_gap_ms = longest_gap_ms.max(t - last_at);
            let now_leader = leader(&h);
            if now_leader.is_some() && now_leader != last_leader {
                leader_changes += 1;
                last_leader = now_leader;
            }
        }
    }
    Measured {
        first_ms: first_ms.unwrap_or(u64::MAX),
        longest_gap_ms,
        chosen,
        leader_changes,
    }
}

/// Whether `m` crosses the link between `a` and `b` (either way).
fn on_link(m: &Message, a: u32, b: u32) -> bool {
    (m.from == NodeId(a) && m.to == NodeId(b)) || (m.from == NodeId(b) && m.to == NodeId(a))
}

fn check(name: &str, placement: LeaderPlacement, measured: &Measured) {
    println!(
        "{name}, placement {placement:?}: first value chosen {} ms after the fault began, \
         longest stretch without a new value {} ms, {} values chosen, {} leader changes",
        measured.first_ms, measured.longest_gap_ms, measured.chosen, measured.leader_changes
    );
    assert!(
        measured.longest_gap_ms < 4 * ELECTION_TIMEOUT_MS,
        "{name}, placement {placement:?}: progress stalled {} ms (4 election timeouts: {} ms)",
        measured.longest_gap_ms,
        4 * ELECTION_TIMEOUT_MS
    );
    assert!(
        measured.chosen > 0,
        "{name}: nothing chosen after the fault"
    );
}

// Goal: a leader cut off from one follower only keeps (or quickly regains) progress:
// the cut-off follower's pre-votes find no quorum while the leader holds the other
// follower's lease, so it does not unseat the leader. Method: warm up 3 s, then cut
// the link between the leader and one follower for 10 s; everything else is
// delivered; the longest stretch without a new value must stay below 4 election
// timeouts.
#[test]
fn leader_cut_off_from_one_follower() {
    for placement in [LeaderPlacement::Off, LeaderPlacement::Balanced] {
        for away in [false, true] {
            let measured = run(placement, (4_000, 10_000), away, &|_, (l, f), m| {
                on_link(m, l, f)
            });
            let name = format!("leader cut off from one follower (preferred away first: {away})");
            check(&name, placement, &measured);
        }
    }
}

// Goal: a flapping link between the leader and one follower (up 400 ms, down 600 ms,
// for 15 s) does not stall the group: with the other links up the quorum holds, and
// neither elections nor placement transfers stop progress for 4 election timeouts.
// Method: as above, with the link down in the last 600 ms of every second.
#[test]
fn flapping_link_between_leader_and_one_follower() {
    for placement in [LeaderPlacement::Off, LeaderPlacement::Balanced] {
        for away in [false, true] {
            let measured = run(placement, (4_000, 15_000), away, &|t, (l, f), m| {
                t % 1_000 >= 400 && on_link(m, l, f)
            });
            let name = format!("flapping link leader-follower (preferred away first: {away})");
            check(&name, placement, &measured);
        }
    }
}

/// The same two faults, and a link cut one way only, in the whole simulator
/// (`synod::sim`: shards, WAL, checkpoints, network delay and jitter, clock drift):
/// seeds `SIM_BASE..SIM_BASE + SIM_SEEDS` with every partition partial
/// (`SimOptions::partition_partial_ppm`), and crashes, lost disks and bit flips off,
/// so that a window is clean (no other fault overlaps it) unless a membership change
/// does. Each clean window's stall (the longest a group with a proposal outstanding
/// waited for its chosen watermark to move, `sim::checkers::partial`) must stay within
/// 4 election timeouts; the distribution is printed (`-- --nocapture`).
#[test]
fn simulated_partial_partitions_recover_within_four_election_timeouts() {
    use synod::sim::checkers::{PartialKind, PartialWindow};
    use synod::sim::cluster::{run_options, ELECTION_TIMEOUT_NS};
    use synod::sim::{FaultClass, SimOptions};

    const SIM_BASE: u64 = 7_300_000;
    const SIM_SEEDS: u64 = 48;
    const S: u64 = 1_000_000_000;
    let mut windows: Vec<PartialWindow> = Vec::new();
    for seed in SIM_BASE..SIM_BASE + SIM_SEEDS {
        let mut options = SimOptions::from_seed(seed);
        let interval = options.partition_interval_ns_mean.unwrap_or(S).min(2 * S);
        options.partition_interval_ns_mean = Some(interval);
        options.partition_partial_ppm = 1_000_000;
        options.crash_interval_ns_mean = None;
        options.disk_loss_ppm = 0;
        options.disk_bit_flip_ppm = 0;
        options.faults_off.retain(|c| *c != FaultClass::Partition);
        for class in [FaultClass::Crash, FaultClass::DiskLoss, FaultClass::BitFlip] {
            if !options.faults_off.contains(&class) {
                options.faults_off.push(class);
            }
        }
        let report = run_options(options).unwrap_or_else(|f| panic!("{f}"));
        windows.extend(report.partial);
    }
    let timeout_ms = ELECTION_TIMEOUT_NS / 1_000_000;
    for kind in [
        PartialKind::Link,
        PartialKind::OneWay,
        PartialKind::Flapping,
    ] {
        let mut stalls: Vec<u64> = windows
            .iter()
            .filter(|w| w.kind == kind && w.clean)
            .map(|w| w.stall_ns / 1_000_000)
            .collect();
        stalls.sort_unstable();
        let at_leader = windows
            .iter()
            .filter(|w| w.kind == kind && w.clean && w.leader_end)
            .count();
        println!(
            "{}: {} clean windows ({} with a leader at one end), stall p50 {} ms, max {} ms \
             (election timeout {} ms)",
            kind.name(),
            stalls.len(),
            at_leader,
            stalls.get(stalls.len() / 2).copied().unwrap_or(0),
            stalls.last().copied().unwrap_or(0),
            timeout_ms
        );
        assert!(
            at_leader >= 10,
            "{}: too few clean windows at a leader",
            kind.name()
        );
    }
    for w in windows.iter().filter(|w| w.clean) {
        assert!(
            w.stall_ns <= 4 * ELECTION_TIMEOUT_NS,
            "a {} fault at {} ns stalled a group for {} ms (> 4 x {} ms)",
            w.kind.name(),
            w.start_ns,
            w.stall_ns / 1_000_000,
            timeout_ms
        );
    }
}
