//! Recovery against ground truth: at every start, what `wal::scan` read off a shard's
//! disk is compared with what the simulator knows it wrote there, made durable, kept
//! through the crash and damaged afterwards.
//!
//! Source: the recovery decision table (`wal::recovery`, `schema/wal.md`), which this
//! checks from outside: rows 1, 2 and 4 (a clean end or a torn last write) lose only
//! records no sync covered; rows 5, 6 and 7 (`Corrupt`, `Invalid`, `Damaged`) are
//! reported only when durable data was damaged, and keep every record before it.
//! TigerBeetle's simulator checks its journal's recovery the same way (its storage
//! fault model knows which sectors it corrupted).
//!
//! Property, per (node, shard) and start, with *durable* the records a completed sync
//! covered, *intact* the longest LSN run of records written whose bytes the image
//! still holds unchanged, and *damaged* the durable records an injected fault
//! (a bit flip on the medium) touched since the last start:
//! - every record recovered was written, at the offset it was written at, with the
//!   same bytes (CRC32C of its bytes on the image equals that of the bytes written);
//! - with nothing durable damaged: the decision is not corrupt, and recovery returns
//!   exactly the intact run (so every durable record, and an unsynced record the crash
//!   kept whole when every record before it survived too). One exception: a start
//!   whose scan found damage leaves the damaged record in place (appends resume at the
//!   next block, and only what lies after is scrubbed), so while nothing appended after
//!   it is durable, the next scan finds the same record at the same offset and reports
//!   it again as `Damaged` (row 7). That is the same damage, not a new false one, and
//!   the replica rebuilds as a learner again, as after the first report;
//! - with durable records damaged: recovery keeps every record before the first one
//!   damaged, and either returns every durable record or says corrupt.
//!
//! Method: the executor reports each write (offset and bytes, as planned), each
//! completed sync, each fault on the medium, each lost disk, and each scan at a start
//! with the image it read. After the check the checker's model becomes what recovery
//! kept (those records are on the medium, and the crash left nothing unsynced): appends
//! then reuse the LSNs after it, which overwrite the model's entries.
//!
//! Invariant of the checker: per shard, `written` holds exactly the records of the
//! current log (recovered at the last start or written since), by LSN.

use super::Violation;
use crate::paxos::{Lsn, NodeId};
use crate::wal::layout::record_start;
use crate::wal::record::{self, Kind};
use crate::wal::{Recovery, Scan};
use std::collections::BTreeMap;

const NAME: &str = "recovery";

/// One record of the current log as written: where, how long, and its bytes' CRC32C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Written {
    offset: u64,
    size: u32,
    crc: u32,
}

/// What the checker knows of one shard's log.
#[derive(Clone, Debug, Default)]
struct ShardLog {
    /// The records of the current log, by LSN.
    written: BTreeMap<Lsn, Written>,
    /// Highest LSN a completed sync covered.
    durable_through: Lsn,
    /// Lowest durable LSN an injected fault damaged since the last start.
    damaged_from: Option<Lsn>,
    /// Where the last start's scan found damage (rows 5 to 7) while no record appended
    /// since is durable: the damaged record still lies there, before the block where
    /// appends resumed, and a scan that finds nothing after it reports it again.
    remnant_at: Option<u64>,
}

/// How many starts' scans ended in each row of the decision table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryCounts {
    /// Scans checked.
    pub scans: u64,
    /// Row 1: `Clean`.
    pub clean: u64,
    /// Row 2: `TornTail` with nothing found after the break (no scrub).
    pub torn: u64,
    /// Row 4: `TornTail` after a survey found records past the break (scrubbed).
    pub torn_surveyed: u64,
    /// Row 5: `Corrupt`.
    pub corrupt: u64,
    /// Row 6: `Invalid`.
    pub invalid: u64,
    /// Row 7: `Damaged`.
    pub damaged: u64,
    /// Row 3: gaps skipped (counted per gap, not per scan).
    pub gaps: u64,
    /// Scans of a log whose durable records an injected fault had damaged.
    pub with_damage: u64,
    /// Scans that recovered an unsynced record the crash kept whole.
    pub kept_unsynced: u64,
}

impl RecoveryCounts {
    /// Scans where the torn-versus-corrupt decision mattered: the survey after the
    /// break found records (rows 4, 5) or a witness (row 7).
    #[must_use]
    pub fn decided(&self) -> u64 {
        self.torn_surveyed + self.corrupt + self.damaged
    }
}

/// Checks each start's recovery against what the simulator wrote and kept.
#[derive(Clone, Debug, Default)]
pub struct RecoveryChecker {
    logs: BTreeMap<(NodeId, usize), ShardLog>,
    counts: RecoveryCounts,
}

impl RecoveryChecker {
    /// A checker that has seen nothing.
    #[must_use]
    pub fn new() -> RecoveryChecker {
        RecoveryChecker::default()
    }

    /// What the scans checked so far ended in.
    #[must_use]
    pub fn counts(&self) -> RecoveryCounts {
        self.counts
    }

    /// `node`'s `shard` wrote `bytes` (a write plan this process encoded) at `offset`.
    /// Call in write order, BEFORE the write completes.
    pub fn observe_write(&mut self, node: NodeId, shard: usize, offset: u64, bytes: &[u8]) {
        let log = self.logs.entry((node, shard)).or_default();
        let mut at = 0u64;
        loop {
            at = record_start(at);
            let Some(head) = bytes.get(at as usize..).and_then(record::peek) else {
                return;
            };
            let end = at as usize + head.size as usize;
            if head.kind != Kind::Pad {
                let crc = crc32c::crc32c(&bytes[at as usize..end]);
                let written = Written {
                    offset: offset + at,
                    size: head.size,
                    crc,
                };
                log.written.insert(head.lsn, written);
            }
            at = end as u64;
        }
    }

    /// `node`'s `shard` is durable through `lsn_through`: its writes up to that LSN,
    /// and every write before them, completed with their syncs (the contiguity rule of
    /// `wal::group_commit`; a write completed after a write still in flight is not
    /// durable yet, and a crash may still tear the earlier one).
    pub fn observe_synced(&mut self, node: NodeId, shard: usize, lsn_through: Lsn) {
        let log = self.logs.entry((node, shard)).or_default();
        if lsn_through > log.durable_through {
            // Appends after the remnant are durable: a scan continues past it now.
            log.remnant_at = None;
            log.durable_through = lsn_through;
        }
    }

    /// A fault changed byte `offset` of `node`'s `shard` on the medium.
    pub fn observe_damage(&mut self, node: NodeId, shard: usize, offset: u64) {
        let log = self.logs.entry((node, shard)).or_default();
        let hit = log
            .written
            .range(..=log.durable_through)
            .find(|(_, w)| w.offset <= offset && offset < w.offset + u64::from(w.size))
            .map(|(lsn, _)| *lsn);
        if let Some(lsn) = hit {
            log.damaged_from = Some(log.damaged_from.map_or(lsn, |d| d.min(lsn)));
        }
    }

    /// `node`'s `shard` lost its disk: nothing of its log remains.
    pub fn observe_wiped(&mut self, node: NodeId, shard: usize) {
        self.logs.insert((node, shard), ShardLog::default());
    }

    /// `node`'s `shard` started, and recovery read `scan` off `image` (the image as it
    /// read it, before any scrub). Afterwards the model is what recovery kept.
    ///
    /// # Errors
    ///
    /// A record recovered that was not written (or not there, or not with those
    /// bytes); a corrupt decision with nothing durable damaged; fewer or more records
    /// than the intact run with nothing damaged; a record before the damage lost; a
    /// durable record lost without a corrupt decision. The message names the node,
    /// shard, decision and LSNs.
    pub fn observe_scan(
        &mut self,
        node: NodeId,
        shard: usize,
        scan: &Scan,
        image: &[u8],
    ) -> Result<(), Violation> {
        let log = self.logs.remove(&(node, shard)).unwrap_or_default();
        self.count(scan);
        let where_ = || format!("node {} shard {shard}", node.0);
        let decision = || format!("{:?}", scan.recovery);
        for recovered in &scan.records {
            let written = log.written.get(&recovered.lsn);
            let bytes = written.and_then(|w| {
                let start = usize::try_from(w.offset).ok()?;
                image.get(start..start + w.size as usize)
            });
            let same = written.is_some_and(|w| w.offset == recovered.offset)
                && written
                    .zip(bytes)
                    .is_some_and(|(w, b)| crc32c::crc32c(b) == w.crc);
            if !same {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "{}: recovered LSN {} at offset {}, which is not a record written \
                         there (written: {written:?}); decision {}",
                        where_(),
                        recovered.lsn.0,
                        recovered.offset,
                        decision()
                    ),
                ));
            }
        }
        let through = scan.lsn_through;
        let corrupt = scan.recovery.is_corrupt();
        let intact = intact_through(&log, image);
        // The damage an earlier start found, reported again (see `remnant_at`).
        let again = match scan.recovery {
            Recovery::Damaged { at, .. } => log.remnant_at == Some(at),
            _ => false,
        };
        match log.damaged_from {
            None => {
                if (corrupt && !again) || through != intact {
                    return Err(Violation::new(
                        NAME,
                        format!(
                            "{}: recovered through LSN {} with decision {}, but nothing \
                             durable was damaged: durable through {}, intact through {}",
                            where_(),
                            through.0,
                            decision(),
                            log.durable_through.0,
                            intact.0
                        ),
                    ));
                }
            }
            Some(damaged) => {
                self.counts.with_damage += 1;
                let kept_before = through.0 + 1 >= damaged.0.min(log.durable_through.0 + 1);
                if !kept_before || (!corrupt && through < log.durable_through) {
                    return Err(Violation::new(
                        NAME,
                        format!(
                            "{}: recovered through LSN {} with decision {}; durable through \
                             {}, damaged from LSN {}: it must keep every record before the \
                             damage, and say corrupt or lose nothing durable",
                            where_(),
                            through.0,
                            decision(),
                            log.durable_through.0,
                            damaged.0
                        ),
                    ));
                }
            }
        }
        if through > log.durable_through {
            self.counts.kept_unsynced += 1;
        }
        let remnant_at = match scan.recovery {
            Recovery::Corrupt { at, .. }
            | Recovery::Invalid { at, .. }
            | Recovery::Damaged { at, .. } => Some(at),
            Recovery::Clean { .. } | Recovery::TornTail { .. } => None,
        };
        let mut kept = log.written;
        kept.retain(|lsn, _| *lsn <= through);
        self.logs.insert(
            (node, shard),
            ShardLog {
                written: kept,
                durable_through: through,
                damaged_from: None,
                remnant_at,
            },
        );
        Ok(())
    }

    fn count(&mut self, scan: &Scan) {
        let counts = &mut self.counts;
        counts.scans += 1;
        counts.gaps += scan.gaps.len() as u64;
        match scan.recovery {
            Recovery::Clean { .. } => counts.clean += 1,
            Recovery::TornTail { .. } if scan.scrub.is_empty() => counts.torn += 1,
            Recovery::TornTail { .. } => counts.torn_surveyed += 1,
            Recovery::Corrupt { .. } => counts.corrupt += 1,
            Recovery::Invalid { .. } => counts.invalid += 1,
            Recovery::Damaged { .. } => counts.damaged += 1,
        }
    }
}

/// The highest LSN through which every record of `log` is on `image` with the bytes
/// written (the durable ones are assumed there unless damaged: only the records after
/// the durable watermark are read, so a start costs what the crash could have torn).
fn intact_through(log: &ShardLog, image: &[u8]) -> Lsn {
    let mut through = log.durable_through;
    for (lsn, w) in log.written.range(Lsn(log.durable_through.0 + 1)..) {
        let start = usize::try_from(w.offset).unwrap_or(usize::MAX);
        let whole = image
            .get(start..start.saturating_add(w.size as usize))
            .is_some_and(|b| crc32c::crc32c(b) == w.crc);
        if lsn.0 != through.0 + 1 || !whole {
            break;
        }
        through = *lsn;
    }
    through
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Ballot, GroupId, Record};
    use crate::wal::{scan, GroupCommit, GroupCommitConfig, Resume, ScanConfig};
    use crate::wal::{DecodeLimits, BLOCK_SIZE};

    const SALT: u32 = 7;

    fn promise(round: u64) -> Record {
        Record::Promise {
            group: GroupId(1),
            ballot: Ballot {
                round,
                node: NodeId(1),
            },
        }
    }

    /// Writes one batch of `count` promises into `image` through the real group commit.
    fn write(
        commit: &mut GroupCommit,
        image: &mut Vec<u8>,
        checker: &mut RecoveryChecker,
        count: u64,
    ) {
        for round in 0..count {
            commit.append(&promise(round + 1)).expect("fits");
        }
        let plan = commit.take_write().expect("a batch");
        let end = plan.offset as usize + plan.bytes.len();
        image.resize(image.len().max(end), 0);
        image[plan.offset as usize..end].copy_from_slice(&plan.bytes);
        checker.observe_write(NodeId(1), 0, plan.offset, &plan.bytes);
        commit.on_durable(plan.lsn_through);
    }

    /// A log of two synced batches (promises 1..=3, then 1..=2: LSNs 1..=5) written
    /// through the real group commit, and the checker that watched it.
    fn synced_log() -> (RecoveryChecker, GroupCommit, Vec<u8>) {
        let mut checker = RecoveryChecker::new();
        let mut commit = GroupCommit::new(
            GroupCommitConfig {
                buffer_size_max: 16 * BLOCK_SIZE,
                salt: SALT,
                writes_in_flight_max: 1,
            },
            Resume::EMPTY,
        );
        let mut image = Vec::new();
        write(&mut commit, &mut image, &mut checker, 3);
        write(&mut commit, &mut image, &mut checker, 2);
        checker.observe_synced(NodeId(1), 0, Lsn(5));
        (checker, commit, image)
    }

    fn config() -> ScanConfig {
        ScanConfig {
            salt: SALT,
            lsn_prev: Lsn(0),
            limits: DecodeLimits::default(),
        }
    }

    // Goal: the oracle accepts a correct recovery, and catches a recovery that loses a
    // durable record, one that invents a record, and a corrupt decision without damage.
    // Method: two synced batches and one unsynced; check the real scan, then doctored
    // scans (a record dropped, a record moved, the decision replaced).
    #[test]
    fn catches_lost_invented_and_false_corrupt() {
        let (mut checker, mut commit, mut image) = synced_log();
        write(&mut commit, &mut image, &mut checker, 2);
        let good = scan(&image, &config());
        assert_eq!(good.lsn_through, Lsn(7));
        let fresh = |checker: &RecoveryChecker| checker.clone();
        let base = fresh(&checker);
        // Dropping the last (unsynced but intact) record is caught too.
        let mut short = good.clone();
        short.records.pop();
        short.lsn_through = Lsn(6);
        let error = fresh(&base)
            .observe_scan(NodeId(1), 0, &short, &image)
            .unwrap_err();
        assert!(error.message.contains("intact through 7"), "{error}");
        let mut moved = good.clone();
        moved.records[1].offset += 8;
        let error = fresh(&base)
            .observe_scan(NodeId(1), 0, &moved, &image)
            .unwrap_err();
        assert!(error.message.contains("not a record written"), "{error}");
        let mut corrupt = good.clone();
        corrupt.recovery = Recovery::Corrupt {
            at: 0,
            lsn_expected: Lsn(8),
            lsn_found: Lsn(9),
            found_at: 0,
        };
        assert!(fresh(&base)
            .observe_scan(NodeId(1), 0, &corrupt, &image)
            .is_err());
        checker.observe_scan(NodeId(1), 0, &good, &image).unwrap();
        assert_eq!(checker.counts().scans, 1);
        assert_eq!(
            checker.counts().kept_unsynced,
            1,
            "6 and 7 were never synced"
        );
    }

    // Goal: damage to a durable record allows a corrupt decision, and requires one when
    // a durable record is lost; a lost disk forgets everything.
    // Method: flip a byte of the first batch, scan (row 5), check; a fresh log where
    // the flip is reported but the scan claims a clean end before it is caught.
    #[test]
    fn damage_requires_corrupt_or_nothing_lost() {
        let (mut checker, _, mut image) = synced_log();
        image[60] ^= 1;
        checker.observe_damage(NodeId(1), 0, 60);
        let result = scan(&image, &config());
        assert!(result.recovery.is_corrupt(), "{:?}", result.recovery);
        let mut lying = result.clone();
        lying.recovery = Recovery::Clean { end: 0 };
        let mut copy = RecoveryChecker::new();
        copy.logs.insert(
            (NodeId(1), 0),
            ShardLog {
                written: checker.logs[&(NodeId(1), 0)].written.clone(),
                durable_through: Lsn(5),
                damaged_from: Some(Lsn(2)),
                remnant_at: None,
            },
        );
        let error = copy.observe_scan(NodeId(1), 0, &lying, &image).unwrap_err();
        assert!(error.message.contains("damaged from LSN 2"), "{error}");
        checker.observe_scan(NodeId(1), 0, &result, &image).unwrap();
        assert_eq!(checker.counts().corrupt, 1);
        assert_eq!(checker.counts().with_damage, 1);
        checker.observe_wiped(NodeId(1), 0);
        let empty = scan(&[], &config());
        checker.observe_scan(NodeId(1), 0, &empty, &[]).unwrap();
    }

    // Goal: damage a start reported, found again by the next start at the same offset
    // while nothing appended since is durable, passes as the same damage (seed
    // 960010029); a damaged decision anywhere else still fails, and so does the same
    // one once an append after it became durable.
    #[test]
    fn the_same_damage_reported_again_passes() {
        let (mut checker, _, mut image) = synced_log();
        image[60] ^= 1;
        checker.observe_damage(NodeId(1), 0, 60);
        let first = scan(&image, &config());
        let Recovery::Corrupt { at, .. } = first.recovery else {
            panic!("a durable record damaged: {:?}", first.recovery);
        };
        checker.observe_scan(NodeId(1), 0, &first, &image).unwrap();
        let again = |at| {
            let mut scan = first.clone();
            scan.recovery = Recovery::Damaged {
                at,
                lsn: Lsn(first.lsn_through.0 + 1),
                next_at: at + 80,
            };
            scan
        };
        let mut copy = RecoveryChecker::new();
        copy.logs = checker.logs.clone();
        copy.observe_scan(NodeId(1), 0, &again(at), &image).unwrap();
        let mut elsewhere = RecoveryChecker::new();
        elsewhere.logs = checker.logs.clone();
        let error = elsewhere
            .observe_scan(NodeId(1), 0, &again(at + 8), &image)
            .unwrap_err();
        assert!(
            error.message.contains("nothing durable was damaged"),
            "{error}"
        );
        // An append after the remnant became durable: the next scan continues past it.
        checker
            .logs
            .get_mut(&(NodeId(1), 0))
            .unwrap()
            .written
            .insert(
                Lsn(first.lsn_through.0 + 1),
                Written {
                    offset: 1 << 20,
                    size: 64,
                    crc: 0,
                },
            );
        checker.observe_synced(NodeId(1), 0, Lsn(first.lsn_through.0 + 1));
        assert!(checker
            .observe_scan(NodeId(1), 0, &again(at), &image)
            .is_err());
    }
}
