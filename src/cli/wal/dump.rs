//! `synod wal dump`'s own output: one line per record (segment, offset, LSN, kind,
//! group, instance, ballot, contents) and, after them, a table per group of record
//! counts and the state a replay rebuilds.

use std::collections::BTreeMap;

use bytes::Bytes;
use synod::paxos::{Body, Entry, GroupId, Record};
use synod::wal::replay;
use synod::wal::segment::{LogRecovery, SegmentGeometry};

/// Prints every record recovery kept, in log order.
pub fn records(geometry: SegmentGeometry, recovery: &LogRecovery) {
    for r in &recovery.records {
        let (index, offset) = geometry.locate(r.offset);
        println!(
            "seg {index} off {offset:>10} lsn {:>10} {}",
            r.lsn.0,
            describe(&r.record)
        );
    }
}

/// Prints the per-group summary: records of each kind, the promised ballot, the range
/// of accepted instances and the chosen watermark.
pub fn groups(recovery: &LogRecovery) {
    let groups = replay(&recovery.records);
    let mut kinds: BTreeMap<GroupId, [u64; 4]> = BTreeMap::new();
    for r in &recovery.records {
        let slot = match r.record {
            Record::Promise { .. } => 0,
            Record::Accept { .. } => 1,
            // An install marker counts with the chosen watermarks it stands beside.
            Record::Chosen { .. } | Record::Installed { .. } => 2,
            Record::Learn { .. } => 3,
        };
        kinds.entry(r.record.group()).or_default()[slot] += 1;
    }
    println!("  group     promises   accepts    chosen    learns  promised   accepted instances      chosen_through");
    for (group, g) in &groups {
        let k = kinds[group];
        let range = match (g.accepted.keys().next(), g.accepted.keys().last()) {
            (Some(a), Some(b)) => format!("{}..={}", a.0, b.0),
            _ => "-".to_string(),
        };
        println!(
            "  {:<8} {:>9} {:>9} {:>9} {:>9}  {:<9} {:<22} {}",
            group.0,
            k[0],
            k[1],
            k[2],
            k[3],
            g.promised.to_string(),
            range,
            g.chosen_through.0
        );
    }
}

/// One record in words.
pub fn describe(record: &Record) -> String {
    let entry = |entry: &Entry| {
        let body = match &entry.body {
            Body::Values(values) => format!(
                "values {} ({} bytes)",
                values.len(),
                values.iter().map(Bytes::len).sum::<usize>()
            ),
            Body::Noop => "noop".to_string(),
            Body::StartWorking => "start-working".to_string(),
            Body::Config(membership) => format!("config {:?}", membership.voters()),
        };
        format!("origin {} {body}", entry.origin)
    };
    match record {
        Record::Promise { group, ballot } => format!("promise  group {} ballot {ballot}", group.0),
        Record::Accept {
            group,
            instance,
            ballot,
            entry: e,
        } => format!(
            "accept   group {} instance {} ballot {ballot} {}",
            group.0,
            instance.0,
            entry(e)
        ),
        Record::Chosen { group, through } => {
            format!("chosen   group {} through {}", group.0, through.0)
        }
        Record::Installed { group, through } => {
            format!("installed group {} through {}", group.0, through.0)
        }
        Record::Learn {
            group,
            instance,
            entry: e,
        } => format!(
            "learn    group {} instance {} {}",
            group.0,
            instance.0,
            entry(e)
        ),
    }
}
