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
//!
//! Grants (`check_grants`): exclusivity between leaders shows a wrong lease only when a
//! second leader acts inside it, which needs an election closer than the error (a lease
//! computed without its drift margin is wrong by about `lease × 2ρ`). So every report is
//! also checked against what the replicas grant at that instant, in true time: in every
//! membership in effect a quorum of voters must be bound until at least the reported
//! end. A replica is bound when it is down (it promises nothing, and at its restart
//! honours a fresh lease for everyone) or its acceptor grants its lease to the leader,
//! or to no one, until a true instant at or after the end (`Group::lease_grant`, true
//! time by `SimClock::true_of`, rounded up as the leader's end is). A bound replica
//! promises no other proposer before the end, and every election quorum meets every
//! such quorum, so no other leader can be elected inside the lease. The check is exact:
//! a follower's grant only grows while it names the leader (it is replaced only after
//! it ran out, or by a newer leader whose election came after the end).

use super::{seconds, Violation};
use crate::paxos::{Ballot, GroupId, Membership, NodeId};
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
    /// Whether the holder handed its leadership over (`release`): it may not act again.
    released: bool,
}

/// What one replica grants at the instant of a leader's lease report (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Down: it promises nothing, and honours a fresh lease for everyone at its restart.
    Down,
    /// Up: its acceptor grants the lease to `holder` (`None`: to no one) until true time
    /// `until_ns` (exclusive).
    Up {
        /// Whom the lease is granted to.
        holder: Option<NodeId>,
        /// First true instant at which the replica no longer honours the grant.
        until_ns: u64,
    },
}

/// Checks lease exclusivity per group, and each lease against the replicas' grants.
#[derive(Debug, Default)]
pub struct LeaseChecker {
    groups: BTreeMap<GroupId, GroupLease>,
    grant_checks: u64,
    grant_margin_min_ns: Option<u64>,
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
                    released: false,
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
            if lease.released {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "group {} node {} ballot {ballot}: acts on its lease at {} after \
                         handing its leadership over",
                        group.0,
                        node.0,
                        seconds(now_ns)
                    ),
                ));
            }
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
        lease.released = false;
        Ok(())
    }

    /// `node`, which led `group` at `ballot`, handed its leadership over at true time
    /// `at_ns` (`paxos::Group::handed_over`): it acts on that lease no more, and the
    /// replicas that followed it end their grants (`paxos::leadership`). When it is the
    /// current holder, its lease ends at `at_ns`, and a later report of it is a
    /// violation. Idempotent.
    pub fn release(&mut self, group: GroupId, node: NodeId, ballot: Ballot, at_ns: u64) {
        if let Some(lease) = self.groups.get_mut(&group) {
            if (lease.holder, lease.ballot) == (node, ballot) {
                lease.end_ns = lease.end_ns.min(at_ns);
                lease.released = true;
            }
        }
    }

    /// Checks the lease `node` reports (leading `group` at `ballot`, believing at true
    /// time `now_ns` that it holds the lease until `lease_end_ns`) against `grants`, what
    /// each replica grants at `now_ns` (replicas missing from it count as granting
    /// nothing): every membership of `memberships` (those in effect at the leader)
    /// needs a quorum of voters bound until at least `lease_end_ns` (module docs).
    ///
    /// Err naming the membership, the bound voters and each voter's grant otherwise.
    pub fn check_grants(
        &mut self,
        group: GroupId,
        node: NodeId,
        ballot: Ballot,
        (now_ns, lease_end_ns): (u64, u64),
        memberships: &[&Membership],
        grants: &BTreeMap<NodeId, Grant>,
    ) -> Result<(), Violation> {
        self.grant_checks += 1;
        for membership in memberships {
            // Each voter's margin: how long after the lease end it stays bound.
            let mut margins: Vec<u64> = membership
                .voters()
                .iter()
                .filter_map(|voter| match grants.get(voter) {
                    Some(Grant::Down) => Some(u64::MAX),
                    Some(Grant::Up { holder, until_ns })
                        if holder.is_none() || *holder == Some(node) =>
                    {
                        until_ns.checked_sub(lease_end_ns)
                    }
                    _ => None,
                })
                .collect();
            let quorum = membership.quorum();
            if margins.len() < quorum {
                let described: Vec<String> = membership
                    .voters()
                    .iter()
                    .map(|voter| match grants.get(voter) {
                        Some(Grant::Down) => format!("node {} down", voter.0),
                        Some(Grant::Up {
                            holder: Some(holder),
                            until_ns,
                        }) => format!(
                            "node {} grants node {} until {}",
                            voter.0,
                            holder.0,
                            seconds(*until_ns)
                        ),
                        Some(Grant::Up {
                            holder: None,
                            until_ns,
                        }) => format!(
                            "node {} grants no one until {}",
                            voter.0,
                            seconds(*until_ns)
                        ),
                        None => format!("node {} grants nothing", voter.0),
                    })
                    .collect();
                return Err(Violation::new(
                    NAME,
                    format!(
                        "group {}: node {} ballot {ballot} believes at {} it holds the lease \
                         until {}, but only {} of voters {:?} are bound that long (quorum \
                         {quorum}): {}",
                        group.0,
                        node.0,
                        seconds(now_ns),
                        seconds(lease_end_ns),
                        margins.len(),
                        membership.voters().iter().map(|v| v.0).collect::<Vec<_>>(),
                        described.join("; ")
                    ),
                ));
            }
            // The quorum-th largest margin: by how much the best quorum outlasts the end.
            margins.sort_unstable_by(|a, b| b.cmp(a));
            let margin = margins[quorum - 1];
            if margin != u64::MAX {
                self.grant_margin_min_ns =
                    Some(self.grant_margin_min_ns.map_or(margin, |m| m.min(margin)));
            }
        }
        Ok(())
    }

    /// Lease reports checked against the replicas' grants.
    #[must_use]
    pub fn grant_checks(&self) -> u64 {
        self.grant_checks
    }

    /// The smallest margin (true ns) by which a quorum's grants outlasted a reported
    /// lease end, over every check whose quorum needed a running replica.
    #[must_use]
    pub fn grant_margin_min_ns(&self) -> Option<u64> {
        self.grant_margin_min_ns
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
    use super::{Grant, LeaseChecker};
    use crate::paxos::{Ballot, GroupId, Membership, NodeId};
    use std::collections::BTreeMap;

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

    fn up(holder: Option<u32>, until_ns: u64) -> Grant {
        Grant::Up {
            holder: holder.map(NodeId),
            until_ns,
        }
    }

    fn grants(list: &[(u32, Grant)]) -> BTreeMap<NodeId, Grant> {
        list.iter().map(|(n, g)| (NodeId(*n), *g)).collect()
    }

    // Goal: a lease is accepted exactly when a quorum of each membership in effect is
    // bound through its end: granting to the leader or to no one until at or after the
    // end, or down; a grant to another node, a short grant, a missing voter do not count.
    // Method: node 1 claims [0, 100) among voters 1..3; vary the others' grants around
    // the end; then a second membership {1, 4, 5} in effect without a quorum.
    #[test]
    fn lease_needs_a_bound_quorum() {
        let three = Membership::new(vec![NodeId(1), NodeId(2), NodeId(3)]);
        let mut checker = LeaseChecker::new();
        let b = ballot(1, 1);
        let ok = |checker: &mut LeaseChecker, list: &[(u32, Grant)]| {
            checker.check_grants(G, NodeId(1), b, (0, 100), &[&three], &grants(list))
        };
        ok(
            &mut checker,
            &[
                (1, up(Some(1), 150)),
                (2, up(Some(1), 120)),
                (3, up(Some(2), 900)),
            ],
        )
        .unwrap();
        assert_eq!(checker.grant_margin_min_ns(), Some(20));
        ok(&mut checker, &[(1, up(Some(1), 150)), (2, up(None, 100))]).unwrap();
        assert_eq!(checker.grant_margin_min_ns(), Some(0));
        ok(&mut checker, &[(2, Grant::Down), (3, up(Some(1), 100))]).unwrap();
        assert_eq!(checker.grant_checks(), 3);

        let violation = ok(
            &mut checker,
            &[
                (1, up(Some(1), 150)),
                (2, up(Some(1), 99)),
                (3, up(Some(2), 900)),
            ],
        )
        .unwrap_err();
        assert_eq!(violation.checker, "lease");
        assert!(
            violation.message.contains("only 1 of voters [1, 2, 3]"),
            "{violation}"
        );
        assert!(
            violation.message.contains("node 3 grants node 2"),
            "{violation}"
        );
        assert!(ok(&mut checker, &[(1, up(Some(1), 150))]).is_err());

        let other = Membership::new(vec![NodeId(1), NodeId(4), NodeId(5)]);
        let list = grants(&[
            (1, up(Some(1), 150)),
            (2, up(Some(1), 150)),
            (4, up(Some(3), 150)),
        ]);
        assert!(checker
            .check_grants(G, NodeId(1), b, (0, 100), &[&three], &list)
            .is_ok());
        assert!(checker
            .check_grants(G, NodeId(1), b, (0, 100), &[&three, &other], &list)
            .is_err());
    }
}
