//! Lease exclusivity: at any true instant, at most one (node, ballot) of a group acts
//! on the leader lease (serves local reads as if it were the only leader).
//!
//! Source: Gray & Cheriton, "Leases: An Efficient Fault-Tolerant Mechanism for
//! Distributed File Cache Consistency" (SOSP 1989) — a lease holder may act alone until
//! the lease term ends, and safety needs only a bound on clock drift; and Chandra,
//! Griesemer, Redstone, "Paxos Made Live" (PODC 2007), §5.2, master leases: a replica
//! does not promise another proposer while the master's lease holds, so the master
//! serves reads locally.
//!
//! Method: whenever a node believes it holds a group's lease, the simulator reports
//! `(group, node, ballot, now, lease_end)` in TRUE time: `lease_end` is the node's
//! local lease deadline converted with `SimClock::true_of` (rounded up, so it is the
//! first true instant at which the node no longer believes). A holder is the pair
//! (node, ballot): a node that re-wins leadership at a new ballot is a new holder, and
//! a node acting on an old ballot's lease is a stale holder. Per group the checker keeps
//! the current holder and the latest end it reported. A report is accepted when
//! - `lease_end > now` (acting on a lease the node itself knows has ended is a
//!   violation); and
//! - it is from the current holder (its end may grow: a renewal); or
//! - it is from another holder and `now >=` the current holder's latest end; the
//!   reporter then becomes the current holder.
//!
//! Why the current holder suffices: every switch happens at a true time at or after the
//! latest end reported by the holder it replaces, which itself took over at or after
//! every end before it, and reports come in non-decreasing true time. So the holders'
//! reported intervals `[first report, latest end)` never overlap, and any overlap is
//! caught at the first report that creates it. The check is exact for the drifts the
//! seed drew (all within the bound the protocol is told): the protocol must absorb the
//! worst-case drift in its own lease arithmetic.

use super::{seconds, Violation};
use crate::paxos::{Ballot, GroupId, NodeId};
use std::collections::BTreeMap;

const NAME: &str = "lease";

/// The lease state of one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GroupLease {
    holder: NodeId,
    ballot: Ballot,
    /// Latest end the current holder reported.
    end_ns: u64,
    /// Latest report time, for the non-decreasing check.
    last_report_ns: u64,
}

/// Checks lease exclusivity per group.
#[derive(Debug, Default)]
pub struct LeaseChecker {
    groups: BTreeMap<GroupId, GroupLease>,
}

impl LeaseChecker {
    /// A checker that has seen no lease.
    #[must_use]
    pub fn new() -> LeaseChecker {
        LeaseChecker::default()
    }

    /// `node`, leading `group` at `ballot`, believes at true time `now_ns` that it holds
    /// the lease until true time `lease_end_ns` (exclusive).
    ///
    /// Err when another holder's reported lease had not ended at `now_ns`, or when
    /// `lease_end_ns <= now_ns`. Panics (driver misuse) if `now_ns` goes back.
    pub fn observe_lease(
        &mut self,
        group: GroupId,
        node: NodeId,
        ballot: Ballot,
        now_ns: u64,
        lease_end_ns: u64,
    ) -> Result<(), Violation> {
        if lease_end_ns <= now_ns {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {} node {} ballot {ballot}: acts on a lease at {} that ended at {}",
                    group.0,
                    node.0,
                    seconds(now_ns),
                    seconds(lease_end_ns)
                ),
            ));
        }
        let Some(lease) = self.groups.get_mut(&group) else {
            self.groups.insert(
                group,
                GroupLease {
                    holder: node,
                    ballot,
                    end_ns: lease_end_ns,
                    last_report_ns: now_ns,
                },
            );
            return Ok(());
        };
        assert!(
            now_ns >= lease.last_report_ns,
            "lease reports went back in true time: {now_ns} after {}",
            lease.last_report_ns
        );
        lease.last_report_ns = now_ns;
        if (lease.holder, lease.ballot) == (node, ballot) {
            lease.end_ns = lease.end_ns.max(lease_end_ns);
            return Ok(());
        }
        if now_ns < lease.end_ns {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {}: node {} ballot {ballot} believes it holds the lease at {} \
                     (until {}) but node {} ballot {} holds it until {}",
                    group.0,
                    node.0,
                    seconds(now_ns),
                    seconds(lease_end_ns),
                    lease.holder.0,
                    lease.ballot,
                    seconds(lease.end_ns)
                ),
            ));
        }
        lease.holder = node;
        lease.ballot = ballot;
        lease.end_ns = lease_end_ns;
        Ok(())
    }

    /// The current holder of `group`'s lease as reported, with its latest end, if any
    /// lease was ever reported (it may have ended).
    #[must_use]
    pub fn holder(&self, group: GroupId) -> Option<(NodeId, Ballot, u64)> {
        self.groups
            .get(&group)
            .map(|lease| (lease.holder, lease.ballot, lease.end_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::LeaseChecker;
    use crate::paxos::{Ballot, GroupId, NodeId};

    const G: GroupId = GroupId(4);

    fn ballot(round: u64, node: u32) -> Ballot {
        Ballot {
            round,
            node: NodeId(node),
        }
    }

    // Goal: renewals by one holder, and hand-overs after the previous lease ended
    // (including back to an earlier node), pass.
    // Method: node 1 renews to 300; node 2 takes over at 300; node 1 at a new ballot
    // takes over at 500.
    #[test]
    fn sequential_holders_pass() {
        let mut checker = LeaseChecker::new();
        checker
            .observe_lease(G, NodeId(1), ballot(1, 1), 0, 100)
            .unwrap();
        checker
            .observe_lease(G, NodeId(1), ballot(1, 1), 90, 300)
            .unwrap();
        checker
            .observe_lease(G, NodeId(2), ballot(2, 2), 300, 500)
            .unwrap();
        checker
            .observe_lease(G, NodeId(1), ballot(3, 1), 500, 700)
            .unwrap();
        checker
            .observe_lease(GroupId(5), NodeId(2), ballot(1, 2), 500, 700)
            .unwrap();
        assert_eq!(checker.holder(G), Some((NodeId(1), ballot(3, 1), 700)));
    }

    // Goal: a second holder while the first one's lease holds is caught, naming both.
    // Method: node 1 holds until 300 (renewed); node 2 claims at 299.
    #[test]
    fn overlap_is_a_violation() {
        let mut checker = LeaseChecker::new();
        checker
            .observe_lease(G, NodeId(1), ballot(1, 1), 0, 100)
            .unwrap();
        checker
            .observe_lease(G, NodeId(1), ballot(1, 1), 50, 300)
            .unwrap();
        let violation = checker
            .observe_lease(G, NodeId(2), ballot(2, 2), 299, 600)
            .unwrap_err();
        assert_eq!(violation.checker, "lease");
        assert!(
            violation.message.contains("node 2 ballot 2.2"),
            "{violation}"
        );
        assert!(
            violation.message.contains("node 1 ballot 1.1"),
            "{violation}"
        );
        assert!(violation.message.contains("0.000000300s"), "{violation}");
    }

    // Goal: the same node at a new ballot is a new holder, and a stale holder that
    // comes back while the new one holds is caught; a renewal extends the lease.
    // Method: 1@1 until 100; 1@2 from 100 until 200; 1@1 again at 150 -> violation.
    // Then 2 -> 3 -> 2 hand-overs pass; 2 renews to 900 and 3 at 500 -> violation.
    #[test]
    fn stale_and_aba_holders_are_violations() {
        let mut checker = LeaseChecker::new();
        checker
            .observe_lease(G, NodeId(1), ballot(1, 1), 0, 100)
            .unwrap();
        checker
            .observe_lease(G, NodeId(1), ballot(2, 1), 100, 200)
            .unwrap();
        assert!(checker
            .observe_lease(G, NodeId(1), ballot(1, 1), 150, 160)
            .is_err());

        let mut checker = LeaseChecker::new();
        checker
            .observe_lease(G, NodeId(2), ballot(1, 2), 0, 400)
            .unwrap();
        checker
            .observe_lease(G, NodeId(3), ballot(2, 3), 400, 401)
            .unwrap();
        checker
            .observe_lease(G, NodeId(2), ballot(3, 2), 420, 500)
            .unwrap();
        let mut checker = LeaseChecker::new();
        checker
            .observe_lease(G, NodeId(2), ballot(1, 2), 0, 400)
            .unwrap();
        checker
            .observe_lease(G, NodeId(2), ballot(1, 2), 10, 900)
            .unwrap();
        let violation = checker
            .observe_lease(G, NodeId(3), ballot(2, 3), 500, 600)
            .unwrap_err();
        assert!(violation.message.contains("0.000000900s"), "{violation}");
    }

    // Goal: acting on a lease whose reported end is not after now is caught.
    // Method: report end == now.
    #[test]
    fn expired_lease_is_a_violation() {
        let mut checker = LeaseChecker::new();
        let violation = checker
            .observe_lease(G, NodeId(1), ballot(1, 1), 100, 100)
            .unwrap_err();
        assert!(violation.message.contains("ended"), "{violation}");
    }
}
