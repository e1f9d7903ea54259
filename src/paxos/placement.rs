//! Balanced leader placement (`GroupConfig::leader_placement`): each group has a
//! preferred leader, a pure function of the group id and its voters that every replica
//! computes alike, so the leaders of many groups spread evenly over the nodes instead
//! of sitting wherever election timers put them.
//!
//! Two decisions, both in the pure core:
//!
//! 1. Initial placement. A replica's first election deadline (at `Group::new`) is drawn
//!    from `[t, 1.25 t)` on the preferred replica and from `[1.5 t, 2 t)` on the others
//!    (`t` = `election_timeout_ns`): on a cold start the preferred replica's pre-vote
//!    and Phase 1 run first and mostly win without a transfer. Every deadline stays in
//!    `[t, 2 t)`, as without placement, so when the preferred replica is down the others'
//!    timers run out as before and elect one of them. Later deadlines are unbiased.
//! 2. Move back. A leader that is not the preferred replica `p` hands leadership to `p`
//!    (`Input::TransferLeadership`, see `leadership`) when all of these hold:
//!    - it has led for at least `HOLD_TIMEOUTS` election timeouts (a leadership that
//!      just changed settles first) and its StartWorking entry is chosen;
//!    - no transfer is under way, and its last move-back attempt is at least
//!      `BACKOFF_TIMEOUTS` election timeouts ago;
//!    - `p` is live: it acknowledged a heartbeat at this ballot within an election
//!      timeout (a heartbeat ack is a lease grant: `p` votes, is not fenced, and
//!      follows this leader);
//!    - `p` is caught up: it durably accepted, at this ballot, an instance at or above
//!      this leader's chosen watermark. A follower accepts only within
//!      `accept_window_instances_max` above its own chosen watermark, so `p` lacks at
//!      most that many chosen values, which its Phase 1 learns from the promises.
//!
//!    When `p` is live but that evidence is missing and nothing is in flight (an idle
//!    group), the leader proposes one no-op (a probe), at most once per election
//!    timeout: `p`'s ack of it is the evidence.
//!
//! No ping-pong: only the preferred replica is ever a move-back target, and the
//! preferred replica never moves leadership away. Replicas that disagree on the voters
//! (a membership change under way) may disagree on `p` for a while; each leader then
//! tries at most once per `BACKOFF_TIMEOUTS` election timeouts.
//!
//! Safety is the transfer's: placement only chooses when to ask for one.

use super::config::LeaderPlacement;
use super::group::{Group, Role};
use super::output::Output;
use super::types::{GroupId, Membership, Nanos, NodeId};

/// Election timeouts a leader leads before it moves leadership to the preferred
/// replica.
pub const HOLD_TIMEOUTS: u64 = 2;

/// Election timeouts between two move-back attempts of one replica in one group.
pub const BACKOFF_TIMEOUTS: u64 = 4;

/// The preferred leader of `group` among the voters of `membership`: the voter with
/// the highest score `hash(group, voter)` (rendezvous hashing). Equal on every replica
/// that knows the same voters; spreads groups evenly over any voter set; removing a
/// voter moves only the groups it was preferred for, adding one moves only the groups
/// it becomes preferred for.
#[must_use]
pub fn preferred_leader(group: GroupId, membership: &Membership) -> NodeId {
    *membership
        .voters()
        .iter()
        .max_by_key(|node| (score(group, **node), node.0))
        .expect("a membership has at least one voter")
}

/// A well-mixed 64-bit score of (group, node): the splitmix64 finalizer over both ids.
fn score(group: GroupId, node: NodeId) -> u64 {
    let mut z = (u64::from(group.0) << 32 | u64::from(node.0)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A replica's placement state, kept across its leaderships.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Placement {
    /// No move-back attempt before this time (`BACKOFF_TIMEOUTS`).
    pub backoff_until: Nanos,
    /// No probe before this time (one per election timeout).
    pub probe_due: Nanos,
}

impl Group {
    /// This group's preferred leader under its newest membership, or None when
    /// placement is `Off`.
    #[must_use]
    pub fn preferred_leader(&self) -> Option<NodeId> {
        (self.config.leader_placement == LeaderPlacement::Balanced)
            .then(|| preferred_leader(self.config.group, self.latest_membership()))
    }

    /// Biases the first election deadline toward the preferred replica (module docs,
    /// "Initial placement"). Called once, by `Group::new`.
    pub(super) fn place_first_deadline(&mut self, now: Nanos) {
        let Some(preferred) = self.preferred_leader() else {
            return;
        };
        let t = self.config.election_timeout_ns;
        let (base, spread) = if preferred == self.config.node {
            (t, t / 4)
        } else {
            (t + t / 2, t / 2)
        };
        let jitter = self.prng.below(spread.max(1));
        self.election_deadline = now.plus(base + jitter);
    }

    /// The move-back decision of an elected leader's tick (module docs, "Move back"):
    /// starts a transfer to the preferred replica, or asks `fill_window` for a probe.
    pub(super) fn move_back(&mut self, now: Nanos, out: &mut Output) {
        let Some(preferred) = self.preferred_leader() else {
            return;
        };
        if self.role != Role::Leader || preferred == self.config.node {
            return;
        }
        let t = self.config.election_timeout_ns;
        let chosen = self.chosen_through;
        let voter = self.membership_at(chosen.next()).contains(preferred);
        let Some(leading) = self.leading.as_mut() else {
            return;
        };
        let settled = leading.start_working.is_some_and(|at| at <= chosen)
            && now >= leading.elected_at.plus(HOLD_TIMEOUTS * t)
            && now >= self.leadership.placement.backoff_until
            && leading.transfer.is_none();
        let live = leading
            .lease_acks
            .get(&preferred)
            .is_some_and(|sent_at| now < sent_at.plus(t));
        if !settled || !live || !voter {
            return;
        }
        let caught_up = leading
            .acked_max
            .get(&preferred)
            .is_some_and(|acked| *acked >= chosen);
        if caught_up {
            self.leadership.placement.backoff_until = now.plus(BACKOFF_TIMEOUTS * t);
            self.counters.placement_transfers += 1;
            self.on_transfer_leadership(now, preferred, out);
            return;
        }
        let idle = leading.inflight.len() == 0 && leading.learned.is_empty();
        if idle && now >= self.leadership.placement.probe_due {
            self.leadership.placement.probe_due = now.plus(t);
            leading.probe_wanted = true;
            self.counters.placement_probes += 1;
            self.fill_window(now, false, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::preferred_leader;
    use crate::paxos::{Group, GroupConfig, GroupId, LeaderPlacement, Membership, Nanos, NodeId};
    use crate::paxos::{Restore, Role};

    fn voters(ids: &[u32]) -> Membership {
        Membership::new(ids.iter().map(|n| NodeId(*n)).collect())
    }

    // Goal: every replica of a group computes the same preferred leader, and 1,000
    // groups spread within 10 % of even over voter sets of 3 and 5 nodes.
    // Method: build the group on each voter and compare `Group::preferred_leader`;
    // count preferred leaders of groups 0..1,000 (the ids the loopback test uses) and
    // 1..=1,000 (the simulator's) per voter.
    #[test]
    fn preferred_is_equal_on_every_replica_and_even() {
        for ids in [
            &[1, 2, 3][..],
            &[1, 2, 3, 4, 5],
            &[2, 7, 9],
            &[4, 5, 6, 7, 8],
        ] {
            let membership = voters(ids);
            for first in [0u32, 1] {
                let mut counts = vec![0u32; ids.len()];
                for g in first..first + 1_000 {
                    let group = GroupId(g);
                    let preferred = preferred_leader(group, &membership);
                    for node in ids {
                        let config = GroupConfig::new(NodeId(*node), group, membership.clone());
                        let replica = Group::new(config, Restore::default(), Nanos(0));
                        assert_eq!(replica.preferred_leader(), Some(preferred), "group {g}");
                    }
                    let index = ids.iter().position(|n| NodeId(*n) == preferred);
                    counts[index.expect("the preferred leader is a voter")] += 1;
                }
                let even = 1_000 / ids.len() as u32;
                for count in &counts {
                    assert!(
                        count.abs_diff(even) * 10 <= even,
                        "voters {ids:?} from group {first}: {counts:?}, even is {even}"
                    );
                }
            }
        }
    }

    // Goal: a membership change moves only the groups it must (rendezvous hashing):
    // removing a voter moves only the groups it was preferred for.
    // Method: 1,000 groups on {1..5}, then on {1, 2, 4, 5}.
    #[test]
    fn removing_a_voter_moves_only_its_groups() {
        let (before, after) = (voters(&[1, 2, 3, 4, 5]), voters(&[1, 2, 4, 5]));
        for g in 0..1_000 {
            let (old, new) = (
                preferred_leader(GroupId(g), &before),
                preferred_leader(GroupId(g), &after),
            );
            assert!(
                old == NodeId(3) || old == new,
                "group {g} moved {old:?} -> {new:?}"
            );
        }
    }

    // Goal: the first election deadline favours the preferred replica, and stays in
    // [t, 2 t) for everyone; with placement off it is the plain draw.
    // Method: build three replicas of 200 groups at time 0 and compare deadlines.
    #[test]
    fn first_deadline_favours_the_preferred_replica() {
        let membership = voters(&[1, 2, 3]);
        for g in 0..200 {
            let group = GroupId(g);
            let preferred = preferred_leader(group, &membership);
            let deadlines: Vec<(NodeId, u64)> = [1, 2, 3]
                .iter()
                .map(|n| {
                    let config = GroupConfig::new(NodeId(*n), group, membership.clone());
                    let t = config.election_timeout_ns;
                    let replica = Group::new(config, Restore::default(), Nanos(0));
                    assert_eq!(replica.role(), Role::Follower);
                    let at = replica.next_deadline().0;
                    assert!((t..2 * t).contains(&at), "group {g}: {at} outside [t, 2t)");
                    (NodeId(*n), at)
                })
                .collect();
            let first = deadlines.iter().min_by_key(|(_, at)| *at).map(|(n, _)| *n);
            assert_eq!(first, Some(preferred), "group {g}: {deadlines:?}");
        }
        let mut config = GroupConfig::new(NodeId(1), GroupId(0), membership);
        config.leader_placement = LeaderPlacement::Off;
        assert_eq!(
            Group::new(config, Restore::default(), Nanos(0)).preferred_leader(),
            None
        );
    }
}
