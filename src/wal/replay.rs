//! Replay: folds recovered records, in log order, into the per-group state the protocol
//! needs on restart.
//!
//! Invariants of every `RecoveredGroup` produced: `promised` is at least every ballot in
//! `accepted`; each instance's accepted ballot never decreases along the log (a later
//! record at a lower ballot is a writer bug and is ignored, keeping the higher one);
//! `chosen_through` is the highest Chosen watermark seen.

use super::recovery::RecoveredRecord;
use crate::paxos::{Ballot, Entry, GroupId, Instance, Record};
use std::collections::BTreeMap;

/// What one group's records in the log say, after replay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveredGroup {
    /// The highest ballot this acceptor promised or accepted in (accepting in a ballot
    /// implies never promising below it). `Ballot::ZERO` if none.
    pub promised: Ballot,
    /// Per instance, the latest (highest-ballot) value this acceptor accepted, with that
    /// ballot.
    pub accepted: BTreeMap<Instance, (Ballot, Entry)>,
    /// Chosen values learned by catch-up (`Record::Learn`), per instance.
    pub learned: BTreeMap<Instance, Entry>,
    /// Highest inclusive chosen watermark written (`Instance(0)` if none). Instances at or
    /// below it are chosen with the value in `learned`, else in `accepted`.
    pub chosen_through: Instance,
    /// Highest instance at which a checkpoint received from a peer was installed
    /// (`Record::Installed`; `Instance(0)` if none): the records at or below it are
    /// not evidence of the chosen values.
    pub installed_through: Instance,
}

/// Folds `records` (in log order, as `recovery::scan` returns them) into per-group state.
#[must_use]
pub fn replay<'a>(
    records: impl IntoIterator<Item = &'a RecoveredRecord>,
) -> BTreeMap<GroupId, RecoveredGroup> {
    let mut groups: BTreeMap<GroupId, RecoveredGroup> = BTreeMap::new();
    for recovered in records {
        fold(&mut groups, recovered.record.clone());
    }
    groups
}

/// `replay`, consuming the records: their entries move into the state instead of being
/// copied (a restart folds every record of the live log once).
#[must_use]
pub fn replay_owned(
    records: impl IntoIterator<Item = RecoveredRecord>,
) -> BTreeMap<GroupId, RecoveredGroup> {
    let mut groups: BTreeMap<GroupId, RecoveredGroup> = BTreeMap::new();
    for recovered in records {
        fold(&mut groups, recovered.record);
    }
    groups
}

/// Folds one record into its group's state.
fn fold(groups: &mut BTreeMap<GroupId, RecoveredGroup>, record: Record) {
    let group = groups.entry(record.group()).or_default();
    match record {
        Record::Promise { ballot, .. } => {
            group.promised = group.promised.max(ballot);
        }
        Record::Accept {
            instance,
            ballot,
            entry,
            ..
        } => {
            group.promised = group.promised.max(ballot);
            let newer = group
                .accepted
                .get(&instance)
                .is_none_or(|(previous, _)| ballot >= *previous);
            if newer {
                group.accepted.insert(instance, (ballot, entry));
            }
        }
        Record::Chosen { through, .. } => {
            group.chosen_through = group.chosen_through.max(through);
        }
        Record::Installed { through, .. } => {
            group.installed_through = group.installed_through.max(through);
        }
        Record::Learn {
            instance, entry, ..
        } => {
            group.learned.insert(instance, entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Body, Lsn, NodeId};

    fn ballot(round: u64) -> Ballot {
        Ballot {
            round,
            node: NodeId(1),
        }
    }

    fn at(lsn: u64, record: Record) -> RecoveredRecord {
        RecoveredRecord {
            offset: lsn * 64,
            lsn: Lsn(lsn),
            record,
        }
    }

    fn entry(round: u64) -> Entry {
        Entry {
            origin: ballot(round),
            body: Body::Noop,
        }
    }

    // Goal: replay keeps the highest promise, the latest accept per instance, learned
    // values and the chosen watermark, per group.
    // Method: fold a hand-written log over two groups, including a stale lower accept,
    // borrowed and consumed.
    #[test]
    fn folds_per_group() {
        let g1 = GroupId(1);
        let g2 = GroupId(2);
        let log = vec![
            at(
                1,
                Record::Promise {
                    group: g1,
                    ballot: ballot(2),
                },
            ),
            at(
                2,
                Record::Accept {
                    group: g1,
                    instance: Instance(1),
                    ballot: ballot(2),
                    entry: entry(2),
                },
            ),
            at(
                3,
                Record::Accept {
                    group: g1,
                    instance: Instance(1),
                    ballot: ballot(5),
                    entry: entry(5),
                },
            ),
            at(
                4,
                Record::Accept {
                    group: g1,
                    instance: Instance(1),
                    ballot: ballot(4),
                    entry: entry(4),
                },
            ),
            at(
                5,
                Record::Promise {
                    group: g1,
                    ballot: ballot(3),
                },
            ),
            at(
                6,
                Record::Chosen {
                    group: g1,
                    through: Instance(1),
                },
            ),
            at(
                7,
                Record::Learn {
                    group: g2,
                    instance: Instance(9),
                    entry: entry(1),
                },
            ),
            at(
                8,
                Record::Chosen {
                    group: g2,
                    through: Instance(9),
                },
            ),
            at(
                9,
                Record::Chosen {
                    group: g2,
                    through: Instance(3),
                },
            ),
        ];
        let groups = replay(&log);
        let one = &groups[&g1];
        assert_eq!(one.promised, ballot(5));
        assert_eq!(one.accepted[&Instance(1)], (ballot(5), entry(5)));
        assert_eq!(one.chosen_through, Instance(1));
        let two = &groups[&g2];
        assert_eq!(two.promised, Ballot::ZERO);
        assert_eq!(two.learned[&Instance(9)], entry(1));
        assert_eq!(two.chosen_through, Instance(9));
        // The consuming fold (restart's) says the same.
        assert_eq!(replay_owned(log), groups);
    }
}
