//! Content checks of WAL records: what a record says, beyond its framing.
//!
//! A record can have a valid checksum and still be impossible: a promise at a round no
//! proposer can reach (a forged Prepare persisted before the protocol bounded rounds),
//! an instance past `Instance::MAX`. [`check_bounds`] is the one rule for a single
//! record; recovery (`recovery::scan`) treats a record that breaks it as corruption and
//! `synod wal verify` reports it. [`ContentCheck`] adds the rules a log written by one
//! acceptor obeys along its length, which only the tools check (recovery keeps what is
//! durable and lets replay take maxima).
//!
//! Invariants of a log this node wrote (each a rule named by [`Violation::rule`]):
//! - every ballot round, the origin of every entry included, is at most
//!   `Ballot::ROUND_MAX`; every instance (Chosen: the watermark) is in
//!   `1..=Instance::MAX`;
//! - per group, a Promise is never below an earlier Promise or Accept ballot (the
//!   acceptor promises only upward; accepting at a ballot implies promising it);
//! - per group, an Accept is never below the ballot promised before it (an acceptor
//!   rejects lower ballots);
//! - per group, two Learn records of one instance carry the same entry (one value is
//!   chosen per instance).
//!
//! Not checked, because a correct log can break them: Chosen watermarks may go back
//! after a restart (the recorded watermark is trusted only over contiguous slots), and
//! an Accept may follow a Chosen watermark above its instance for the same reason.

use crate::paxos::bounds::{check_position, check_round};
use crate::paxos::{Ballot, Entry, GroupId, Instance, Record};
use std::collections::BTreeMap;
use std::fmt;

/// A rule of the module docs that a record breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// A ballot round above `Ballot::ROUND_MAX`.
    RoundTooLarge {
        /// Which ballot: `"ballot"` or `"origin"` (of the entry).
        field: &'static str,
        /// The round.
        round: u64,
    },
    /// An instance (or a Chosen watermark) above `Instance::MAX`, or 0.
    InstanceOutOfRange {
        /// The instance.
        instance: u64,
    },
    /// A Promise below an earlier Promise or Accept ballot of its group.
    PromiseDecreased {
        /// The promised ballot.
        ballot: Ballot,
        /// The highest ballot promised or accepted before it.
        promised: Ballot,
    },
    /// An Accept below the ballot its group promised before it.
    AcceptBelowPromise {
        /// The accepted ballot.
        ballot: Ballot,
        /// The highest ballot promised or accepted before it.
        promised: Ballot,
    },
    /// A Learn whose entry differs from an earlier Learn of the same instance.
    ChosenConflict {
        /// The instance.
        instance: Instance,
    },
}

impl Violation {
    /// Short stable name of the broken rule, for tools and tests.
    #[must_use]
    pub fn rule(&self) -> &'static str {
        match self {
            Violation::RoundTooLarge { .. } => "round-bound",
            Violation::InstanceOutOfRange { .. } => "instance-bound",
            Violation::PromiseDecreased { .. } => "promise-monotonic",
            Violation::AcceptBelowPromise { .. } => "accept-above-promise",
            Violation::ChosenConflict { .. } => "one-chosen-value",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::RoundTooLarge { field, round } => write!(
                f,
                "{field} round {round} exceeds ROUND_MAX {}",
                Ballot::ROUND_MAX
            ),
            Violation::InstanceOutOfRange { instance } => {
                write!(f, "instance {instance} outside 1..={}", Instance::MAX.0)
            }
            Violation::PromiseDecreased { ballot, promised } => write!(
                f,
                "promise {ballot} below the ballot {promised} promised before it"
            ),
            Violation::AcceptBelowPromise { ballot, promised } => write!(
                f,
                "accept at ballot {ballot} below the ballot {promised} promised before it"
            ),
            Violation::ChosenConflict { instance } => write!(
                f,
                "a second, different chosen value for instance {}",
                instance.0
            ),
        }
    }
}

/// `paxos::bounds::check_round`, as the record rule it is here.
fn round_bound(field: &'static str, ballot: Ballot) -> Result<(), Violation> {
    check_round(field, ballot).map_err(|out| Violation::RoundTooLarge {
        field,
        round: out.value,
    })
}

/// `paxos::bounds::check_position`, as the record rule it is here.
fn instance_bound(instance: Instance) -> Result<(), Violation> {
    check_position("instance", instance).map_err(|out| Violation::InstanceOutOfRange {
        instance: out.value,
    })
}

/// The bounds every record respects on its own: rounds (ballot and entry origin) at most
/// `Ballot::ROUND_MAX`, instances and Chosen watermarks in `1..=Instance::MAX`.
/// The one content rule recovery applies: a record that breaks it is corruption.
///
/// # Errors
///
/// The first bound the record breaks.
pub fn check_bounds(record: &Record) -> Result<(), Violation> {
    match record {
        Record::Promise { ballot, .. } => round_bound("ballot", *ballot),
        Record::Accept {
            instance,
            ballot,
            entry,
            ..
        } => {
            round_bound("ballot", *ballot)?;
            round_bound("origin", entry.origin)?;
            instance_bound(*instance)
        }
        Record::Chosen { through, .. } | Record::Installed { through, .. } => {
            instance_bound(*through)
        }
        Record::Learn {
            instance, entry, ..
        } => {
            round_bound("origin", entry.origin)?;
            instance_bound(*instance)
        }
    }
}

/// What one group's records said so far.
#[derive(Debug, Default)]
struct GroupSeen {
    /// Highest ballot promised or accepted.
    promised: Ballot,
    /// The entry of the first Learn of each instance.
    learned: BTreeMap<Instance, Entry>,
}

/// The rules of the module docs, checked record by record in log order. Memory: one
/// ballot per group and the entries of the Learn records seen.
#[derive(Debug, Default)]
pub struct ContentCheck {
    groups: BTreeMap<GroupId, GroupSeen>,
}

impl ContentCheck {
    /// A check that has seen no record.
    #[must_use]
    pub fn new() -> ContentCheck {
        ContentCheck::default()
    }

    /// Checks `record`, the next one of the log, against [`check_bounds`] and against
    /// the records seen before it, then takes it into account. A record out of bounds
    /// is left out of the state (its ballot would make every later record look wrong),
    /// so one bad record is reported once.
    ///
    /// # Errors
    ///
    /// The first rule the record breaks.
    pub fn check(&mut self, record: &Record) -> Result<(), Violation> {
        check_bounds(record)?;
        let seen = self.groups.entry(record.group()).or_default();
        match record {
            Record::Promise { ballot, .. } => {
                let promised = seen.promised;
                seen.promised = seen.promised.max(*ballot);
                if *ballot < promised {
                    Err(Violation::PromiseDecreased {
                        ballot: *ballot,
                        promised,
                    })
                } else {
                    Ok(())
                }
            }
            Record::Accept { ballot, .. } => {
                let promised = seen.promised;
                seen.promised = seen.promised.max(*ballot);
                if *ballot < promised {
                    Err(Violation::AcceptBelowPromise {
                        ballot: *ballot,
                        promised,
                    })
                } else {
                    Ok(())
                }
            }
            Record::Chosen { .. } | Record::Installed { .. } => Ok(()),
            Record::Learn {
                instance, entry, ..
            } => match seen.learned.get(instance) {
                Some(first) if first != entry => Err(Violation::ChosenConflict {
                    instance: *instance,
                }),
                Some(_) => Ok(()),
                None => {
                    seen.learned.insert(*instance, entry.clone());
                    Ok(())
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Body, NodeId};

    fn ballot(round: u64) -> Ballot {
        Ballot {
            round,
            node: NodeId(1),
        }
    }

    fn promise(round: u64) -> Record {
        Record::Promise {
            group: GroupId(1),
            ballot: ballot(round),
        }
    }

    fn accept(instance: u64, round: u64, origin: u64) -> Record {
        Record::Accept {
            group: GroupId(1),
            instance: Instance(instance),
            ballot: ballot(round),
            entry: Entry {
                origin: ballot(origin),
                body: Body::Noop,
            },
        }
    }

    fn learn(instance: u64, body: Body) -> Record {
        Record::Learn {
            group: GroupId(1),
            instance: Instance(instance),
            entry: Entry {
                origin: ballot(1),
                body,
            },
        }
    }

    // Goal: each bound holds at its limit and breaks one past it, for every field.
    // Method: records at ROUND_MAX / Instance::MAX and one above, and at u64::MAX.
    #[test]
    fn bounds_at_and_past_the_limits() {
        let max = Ballot::ROUND_MAX;
        assert_eq!(check_bounds(&promise(max)), Ok(()));
        assert_eq!(
            check_bounds(&promise(u64::MAX)),
            Err(Violation::RoundTooLarge {
                field: "ballot",
                round: u64::MAX
            })
        );
        assert_eq!(check_bounds(&accept(Instance::MAX.0, max, max)), Ok(()));
        assert_eq!(
            check_bounds(&accept(1, max + 1, 1)).map_err(|v| v.rule()),
            Err("round-bound")
        );
        assert_eq!(
            check_bounds(&accept(1, 1, max + 1)),
            Err(Violation::RoundTooLarge {
                field: "origin",
                round: max + 1
            })
        );
        assert_eq!(
            check_bounds(&accept(Instance::MAX.0 + 1, 1, 1)),
            Err(Violation::InstanceOutOfRange {
                instance: Instance::MAX.0 + 1
            })
        );
        let chosen = |through| Record::Chosen {
            group: GroupId(1),
            through: Instance(through),
        };
        assert_eq!(check_bounds(&chosen(Instance::MAX.0)), Ok(()));
        assert_eq!(
            check_bounds(&chosen(0)).map_err(|v| v.rule()),
            Err("instance-bound")
        );
        assert_eq!(
            check_bounds(&chosen(u64::MAX)).map_err(|v| v.rule()),
            Err("instance-bound")
        );
        assert_eq!(
            check_bounds(&learn(u64::MAX, Body::Noop)).map_err(|v| v.rule()),
            Err("instance-bound")
        );
    }

    // Goal: the per-group order rules accept a correct log and name each broken rule.
    // Method: a correct sequence, then one record breaking each rule; other groups are
    // independent.
    #[test]
    fn order_rules() {
        let mut check = ContentCheck::new();
        for record in [
            promise(2),
            accept(1, 2, 2),
            accept(2, 3, 2),
            promise(3),
            learn(1, Body::Noop),
            learn(1, Body::Noop),
        ] {
            assert_eq!(check.check(&record), Ok(()), "{record:?}");
        }
        assert_eq!(
            check.check(&promise(2)),
            Err(Violation::PromiseDecreased {
                ballot: ballot(2),
                promised: ballot(3)
            })
        );
        assert_eq!(
            check.check(&accept(3, 1, 1)),
            Err(Violation::AcceptBelowPromise {
                ballot: ballot(1),
                promised: ballot(3)
            })
        );
        assert_eq!(
            check.check(&learn(1, Body::StartWorking)),
            Err(Violation::ChosenConflict {
                instance: Instance(1)
            })
        );
        let other = Record::Promise {
            group: GroupId(2),
            ballot: ballot(1),
        };
        assert_eq!(check.check(&other), Ok(()));
        // A poisoned promise is reported once: it does not raise the group's ballot.
        assert_eq!(
            check.check(&promise(u64::MAX)).map_err(|v| v.rule()),
            Err("round-bound")
        );
        assert_eq!(check.check(&promise(4)), Ok(()));
    }
}
