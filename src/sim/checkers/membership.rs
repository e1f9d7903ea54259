//! Membership changes against the chosen log: consecutive memberships differ by one
//! voter and their quorums intersect, and every ballot's leader was elected by a quorum
//! of the membership in effect where its Phase 1 began.
//!
//! Source: Lamport, Malkhi, Zhou, "Reconfiguring a State Machine" (SIGACT News 2010),
//! §4 (the α-style reconfiguration synod uses: the configuration of instance i is the
//! one chosen at or before i − α, here i − W, so every replica derives the same one
//! from the chosen log); Ongaro, "Consensus: Bridging Theory and Practice" (2014),
//! §4.1 (changes of one server at a time keep any majority of the old configuration
//! and any majority of the new one overlapping); Paxos Made Simple §2.2 (a proposer
//! leads a ballot only once a majority of acceptors promised it).
//!
//! Method. Ground truth is the chosen log: the first replica to apply a `Config` entry
//! at an instance above the last one recorded (the leader that chose it applies it in
//! the same step, so none is missed) adds (chosen at i, in effect from i + W, voters)
//! to the group's list, after checking it against the previous membership: exactly one
//! voter added or removed, and no quorum of the one disjoint from a quorum of the other
//! (checked by counting, `quorums_intersect`, not assumed from the single change: the
//! quorum size the check uses is its own, floor(n/2) + 1). Skipped entries (the
//! StartWorking filter) take no effect and are not recorded. Every promised ballot a
//! replica reports after a step is kept as a maximum per (group, node); when a node is
//! first seen leading a ballot, the voters of the membership the chosen log puts in
//! effect at the instance its Phase 1 began whose promise reached that ballot must be
//! a quorum of it (a promise is persisted before the Promise leaves, and the checker saw
//! it after the promiser's step, before the candidate received it).
//!
//! Invariant of the checker: each group's list is ascending in chosen instance, its
//! first entry the initial membership (chosen at 0, in effect from 1).

use std::collections::{BTreeMap, BTreeSet};

use super::Violation;
use crate::paxos::{Apply, Ballot, Body, GroupId, Instance, Membership, NodeId};

const NAME: &str = "membership";

/// A membership of the chosen log: chosen at `chosen_at`, in effect from `effective`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    /// The instance of its `Config` entry (0 for the initial membership).
    pub chosen_at: Instance,
    /// The first instance it governs.
    pub effective: Instance,
    /// The voters.
    pub membership: Membership,
}

/// See the module docs.
#[derive(Clone, Debug, Default)]
pub struct MembershipChecker {
    /// W, and the initial voters of every group (`None`: not configured, checks off).
    setup: Option<(u64, Membership)>,
    /// Per group, the memberships of the chosen log (module docs).
    chosen: BTreeMap<GroupId, Vec<Chosen>>,
    /// Per (group, node), the highest promised ballot reported.
    promised: BTreeMap<(GroupId, NodeId), Ballot>,
    /// The (group, ballot) pairs whose leader was checked.
    leaders: BTreeSet<(GroupId, Ballot)>,
    /// Leaders checked (elections seen).
    pub leaders_checked: u64,
}

/// Whether every quorum (a strict majority, floor(n/2) + 1) of `a` meets every quorum
/// of `b`: the two smallest quorums that avoid each other take the voters the other
/// lacks first, and must then still need more than the voters both share.
#[must_use]
pub fn quorums_intersect(a: &Membership, b: &Membership) -> bool {
    let majority = |m: &Membership| m.voters().len() / 2 + 1;
    let only_a = a.voters().iter().filter(|n| !b.contains(**n)).count();
    let only_b = b.voters().iter().filter(|n| !a.contains(**n)).count();
    let shared = a.voters().len() - only_a;
    majority(a).saturating_sub(only_a) + majority(b).saturating_sub(only_b) > shared
}

fn describe(membership: &Membership) -> Vec<u32> {
    membership.voters().iter().map(|n| n.0).collect()
}

impl MembershipChecker {
    /// Configures the checks: every group starts with `initial` and a membership chosen
    /// at i takes effect at i + `window`.
    pub fn configure(&mut self, window: u64, initial: Membership) {
        assert!(window >= 1, "MembershipChecker::configure: window 0");
        self.setup = Some((window, initial));
    }

    /// The memberships of `group`'s chosen log so far (the initial one first).
    #[must_use]
    pub fn chosen(&self, group: GroupId) -> Vec<Chosen> {
        match (self.chosen.get(&group), &self.setup) {
            (Some(list), _) => list.clone(),
            (None, Some((_, initial))) => vec![Chosen {
                chosen_at: Instance(0),
                effective: Instance(1),
                membership: initial.clone(),
            }],
            (None, None) => Vec::new(),
        }
    }

    /// The initial membership of every group (`None` when not configured).
    #[must_use]
    pub fn initial(&self) -> Option<&Membership> {
        self.setup.as_ref().map(|(_, initial)| initial)
    }

    /// The newest membership of `group`'s chosen log (`None` when not configured).
    #[must_use]
    pub fn latest(&self, group: GroupId) -> Option<Membership> {
        self.chosen(group).pop().map(|c| c.membership)
    }

    /// The membership the chosen log puts in effect at `instance`.
    fn at(&self, group: GroupId, instance: Instance) -> Option<Membership> {
        self.chosen(group)
            .into_iter()
            .rev()
            .find(|c| c.effective <= instance)
            .map(|c| c.membership)
    }

    /// `node` applied `apply`: a `Config` entry above the last one recorded is checked
    /// against the previous membership and recorded.
    ///
    /// # Errors
    /// A change of other than one voter, or memberships whose quorums may not meet.
    pub fn observe_apply(&mut self, node: NodeId, apply: &Apply) -> Result<(), Violation> {
        let Body::Config(membership) = &apply.entry.body else {
            return Ok(());
        };
        let Some((window, _)) = &self.setup else {
            return Ok(());
        };
        let window = *window;
        if apply.skip {
            return Ok(());
        }
        let mut list = self.chosen(apply.group);
        let previous = list
            .last()
            .expect("the list starts with the initial membership");
        if apply.instance <= previous.chosen_at {
            return Ok(());
        }
        let group = apply.group.0;
        if !previous.membership.is_single_change(membership) {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {group} instance {} (applied by node {}): membership {:?} follows \
                     {:?} (chosen at {}), not one voter added or removed",
                    apply.instance.0,
                    node.0,
                    describe(membership),
                    describe(&previous.membership),
                    previous.chosen_at.0
                ),
            ));
        }
        if !quorums_intersect(&previous.membership, membership) {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {group} instance {}: quorums of {:?} and of the next membership \
                     {:?} may be disjoint",
                    apply.instance.0,
                    describe(&previous.membership),
                    describe(membership)
                ),
            ));
        }
        list.push(Chosen {
            chosen_at: apply.instance,
            effective: Instance(apply.instance.0.saturating_add(window)),
            membership: membership.clone(),
        });
        self.chosen.insert(apply.group, list);
        Ok(())
    }

    /// `node`'s promised ballot for `group` after a step.
    pub fn observe_promised(&mut self, node: NodeId, group: GroupId, promised: Ballot) {
        let slot = self.promised.entry((group, node)).or_insert(promised);
        *slot = (*slot).max(promised);
    }

    /// `node` leads `group` at `ballot`, its Phase 1 having begun at instance `from`
    /// (call after `observe_promised` for the same step). Checked once per ballot.
    ///
    /// # Errors
    /// The voters in effect at `from` that promised `ballot` are not a quorum of them.
    pub fn observe_leader(
        &mut self,
        node: NodeId,
        group: GroupId,
        ballot: Ballot,
        from: Instance,
    ) -> Result<(), Violation> {
        if self.setup.is_none() || !self.leaders.insert((group, ballot)) {
            return Ok(());
        }
        self.leaders_checked += 1;
        let Some(membership) = self.at(group, from) else {
            return Ok(());
        };
        let promised: Vec<u32> = membership
            .voters()
            .iter()
            .filter(|v| {
                self.promised
                    .get(&(group, **v))
                    .is_some_and(|p| *p >= ballot)
            })
            .map(|v| v.0)
            .collect();
        let majority = membership.voters().len() / 2 + 1;
        if promised.len() < majority {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {} node {} leads ballot {ballot} from instance {} but only voters \
                     {promised:?} of {:?} (in effect there) ever promised it (quorum \
                     {majority})",
                    group.0,
                    node.0,
                    from.0,
                    describe(&membership)
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Entry, Proposals};

    fn m(voters: &[u32]) -> Membership {
        Membership::new(voters.iter().map(|v| NodeId(*v)).collect())
    }

    fn config(instance: u64, voters: &[u32]) -> Apply {
        Apply {
            group: GroupId(1),
            instance: Instance(instance),
            entry: Entry {
                origin: Ballot::ZERO,
                body: Body::Config(m(voters)),
            },
            skip: false,
            proposals: Proposals::new(),
            checksum: 0,
        }
    }

    // Goal: the intersection count agrees with brute force over every pair of
    // memberships of up to 5 of 6 nodes, and single changes always intersect.
    // Method: enumerate the subsets, and every pair of quorums for the brute force.
    #[test]
    fn quorums_intersect_matches_brute_force() {
        let sets: Vec<Membership> = (1u32..64)
            .map(|bits| m(&(0..6).filter(|i| bits & (1 << i) != 0).collect::<Vec<_>>()))
            .collect();
        let quorums = |a: &Membership| -> Vec<u32> {
            let voters: Vec<u32> = a.voters().iter().map(|n| n.0).collect();
            (0u32..64)
                .filter(|q| {
                    q & !voters.iter().fold(0, |acc, v| acc | 1 << v) == 0
                        && q.count_ones() as usize > voters.len() / 2
                })
                .collect()
        };
        for a in &sets {
            for b in &sets {
                let brute = quorums(a)
                    .iter()
                    .all(|qa| quorums(b).iter().all(|qb| qa & qb != 0));
                assert_eq!(quorums_intersect(a, b), brute, "{a:?} {b:?}");
                if a.is_single_change(b) {
                    assert!(brute, "{a:?} {b:?}");
                }
            }
        }
        // Changes of more than one voter can break it.
        assert!(!quorums_intersect(&m(&[1, 2, 3, 4]), &m(&[3, 4, 5, 6])));
        assert!(!quorums_intersect(&m(&[1, 2, 3]), &m(&[1])));
    }

    // Goal: a single change passes and is recorded; a change of two voters fails.
    // Method: apply configs to the checker of a group that starts with {1, 2, 3}.
    #[test]
    fn consecutive_memberships_differ_by_one_voter() {
        let mut checker = MembershipChecker::default();
        checker.configure(4, m(&[1, 2, 3]));
        checker
            .observe_apply(NodeId(1), &config(5, &[1, 2, 3, 4]))
            .unwrap();
        // Another replica applying the same instance adds nothing.
        checker
            .observe_apply(NodeId(2), &config(5, &[1, 2, 3, 4]))
            .unwrap();
        assert_eq!(checker.chosen(GroupId(1)).len(), 2);
        assert_eq!(checker.at(GroupId(1), Instance(8)), Some(m(&[1, 2, 3])));
        assert_eq!(checker.at(GroupId(1), Instance(9)), Some(m(&[1, 2, 3, 4])));
        let violation = checker
            .observe_apply(NodeId(1), &config(7, &[1, 2, 5]))
            .unwrap_err();
        assert!(violation.message.contains("not one voter"), "{violation}");
        let mut skipped = config(7, &[1, 2, 5]);
        skipped.skip = true;
        checker.observe_apply(NodeId(1), &skipped).unwrap();
    }

    // Goal: a leader passes with a quorum of the membership at its Phase 1's start
    // promised, and fails with one promise short (even count: 2 of 4 is no quorum).
    // Method: four voters; report promises, then leadership.
    #[test]
    fn a_leader_needs_a_quorum_of_the_membership_in_effect() {
        let mut checker = MembershipChecker::default();
        checker.configure(4, m(&[1, 2, 3, 4]));
        let ballot = Ballot {
            round: 3,
            node: NodeId(1),
        };
        checker.observe_promised(NodeId(1), GroupId(1), ballot);
        checker.observe_promised(NodeId(2), GroupId(1), ballot);
        let violation = checker
            .observe_leader(NodeId(1), GroupId(1), ballot, Instance(1))
            .unwrap_err();
        assert!(violation.message.contains("quorum 3"), "{violation}");
        let next = Ballot {
            round: 4,
            node: NodeId(1),
        };
        for node in 1..=3 {
            checker.observe_promised(NodeId(node), GroupId(1), next);
        }
        checker
            .observe_leader(NodeId(1), GroupId(1), next, Instance(1))
            .unwrap();
    }
}
