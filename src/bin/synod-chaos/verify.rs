//! The chaos run's checks after every fault is healed: convergence of every group on
//! every node, a final linearizable read of every key, the history's linearizability
//! per key, no acknowledged write lost from the final state, and every replica's
//! chosen log identical (running checksums and the log's bytes).
//!
//! Invariants: every wait is bounded; a check that cannot be carried out (a node that
//! does not answer) fails, it never passes for want of data.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use synod::api::Position;
use synod::check::linearizability::{check, Call, CheckConfig, Operation, Outcome, Reply, Verdict};
use synod::client::{Client, Error, ServerError};
use synod::kv::{group_of, Answer, Query};
use synod::paxos::{GroupId, Instance, NodeId};
use synod::runtime::clock::MonotonicClock;

use crate::workload::key_name;

/// Bytes of values asked per log read.
const LOG_READ_SIZE: usize = 1 << 20;
/// Log reads per replica and group at most (bounds the comparison's time).
const LOG_READS_MAX: usize = 100_000;

/// One group's state on every node: (applied_through, chosen_through, checksum).
type GroupView = BTreeMap<NodeId, (u64, u64, u32)>;

/// Polls every node until every group has the same applied and chosen watermark and
/// checksum on every node, twice in a row, or `limit` passes: the views, and whether
/// they converged.
pub fn converge(
    client: &Client,
    groups: u32,
    limit: Duration,
) -> (BTreeMap<GroupId, GroupView>, bool) {
    let clock = MonotonicClock::start();
    let mut last = BTreeMap::new();
    let mut stable = 0;
    loop {
        let views = views(client, groups);
        let agreed = views.len() == groups as usize
            && views.values().all(|view| {
                view.len() == client.nodes().len() && {
                    let mut states = view.values();
                    let first = states.next().copied();
                    first.is_some_and(|f| f.0 == f.1 && states.all(|s| *s == f))
                }
            });
        stable = if agreed && views == last {
            stable + 1
        } else {
            0
        };
        if agreed && stable >= 1 {
            return (views, true);
        }
        if clock.elapsed_s() >= limit.as_secs_f64() {
            return (views, false);
        }
        last = views;
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn views(client: &Client, groups: u32) -> BTreeMap<GroupId, GroupView> {
    let mut views: BTreeMap<GroupId, GroupView> = BTreeMap::new();
    for node in client.nodes() {
        let Ok(status) = client.node_status_blocking(node) else {
            continue;
        };
        for shard in &status.shards {
            for g in &shard.groups {
                if g.group.0 < groups {
                    views
                        .entry(g.group)
                        .or_default()
                        .insert(node, (g.applied_through.0, g.chosen_through.0, g.checksum));
                }
            }
        }
    }
    views
}

/// Reads every key once (linearizable, at its group's leader), retrying within
/// `limit` for all of them, as operations of client `id`.
pub fn final_reads(
    client: &Client,
    keys: usize,
    groups: u32,
    id: u64,
    clock: &MonotonicClock,
    limit: Duration,
) -> Vec<Operation> {
    let mut ops = Vec::new();
    let end_ns = clock.now().0 + limit.as_nanos() as u64;
    for k in 0..keys {
        let key = key_name(k);
        let query = Query::Get {
            key: Bytes::from(key.clone()),
        }
        .encode();
        let invoke_ns = clock.now().0;
        let outcome = loop {
            let read = client.read_blocking(group_of(&key, groups), query.clone());
            if let Ok(Ok(Answer::Value(value))) = read.as_ref().map(|b| Answer::decode(b)) {
                break Outcome::Ok {
                    at_ns: clock.now().0,
                    reply: Reply::Value(value.as_ref().map(|v| v.to_vec())),
                };
            }
            if clock.now().0 >= end_ns {
                break Outcome::Failed {
                    at_ns: clock.now().0,
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        ops.push(Operation {
            client: id,
            key,
            call: Call::Get,
            invoke_ns,
            outcome,
        });
    }
    ops
}

/// The verdict on one key.
pub enum KeyVerdict {
    /// Linearizable.
    Ok,
    /// Not: the explanation.
    Violation(String),
    /// Undecided within the checker's bounds.
    Unknown,
    /// The history is not well formed.
    Malformed(String),
}

/// Checks each key's sub-history on its own.
pub fn linearizable(history: &[Operation], keys: usize) -> Vec<(Vec<u8>, KeyVerdict)> {
    let mut by_key: BTreeMap<Vec<u8>, Vec<Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key.clone()).or_default().push(op.clone());
    }
    (0..keys)
        .map(|k| {
            let key = key_name(k);
            let ops = by_key.remove(&key).unwrap_or_default();
            let verdict = match check(&ops, &CheckConfig::default()) {
                Ok(Verdict::Linearizable) => KeyVerdict::Ok,
                Ok(Verdict::Violation(v)) => KeyVerdict::Violation(v.to_string()),
                Ok(Verdict::Unknown(_)) => KeyVerdict::Unknown,
                Err(e) => KeyVerdict::Malformed(e.to_string()),
            };
            (key, verdict)
        })
        .collect()
}

/// The value a write leaves, when it took effect (`None`: absent).
fn written(op: &Operation) -> Option<Option<&Vec<u8>>> {
    match (&op.call, &op.outcome) {
        (_, Outcome::Failed { .. }) | (Call::Get, _) => None,
        (Call::Put { value }, _) => Some(Some(value)),
        (Call::Delete, _) => Some(None),
        (
            Call::Cas { new, .. },
            Outcome::Indeterminate
            | Outcome::Ok {
                reply: Reply::Swapped(true),
                ..
            },
        ) => Some(Some(new)),
        (Call::Cas { .. }, Outcome::Ok { .. }) => None,
    }
}

fn return_ns(op: &Operation) -> u64 {
    match op.outcome {
        Outcome::Ok { at_ns, .. } | Outcome::Failed { at_ns } => at_ns,
        Outcome::Indeterminate => u64::MAX,
    }
}

/// Acknowledged writes missing from the final state: per key, the final read must
/// show a write (or a delete, or no write at all) that no acknowledged write followed
/// in real time. Returns one line per key that breaks it; a failed final read is one.
pub fn lost_writes(history: &[Operation], finals: &[Operation]) -> Vec<String> {
    let mut lost = Vec::new();
    for last in finals {
        let Outcome::Ok {
            reply: Reply::Value(seen),
            ..
        } = &last.outcome
        else {
            lost.push(format!(
                "key {}: the final read failed",
                String::from_utf8_lossy(&last.key)
            ));
            continue;
        };
        let writes: Vec<&Operation> = history
            .iter()
            .filter(|op| op.key == last.key && written(op).is_some())
            .collect();
        let acked = |op: &&&Operation| matches!(op.outcome, Outcome::Ok { .. });
        // The writes that could have left what the final read saw.
        let sources: Vec<&&Operation> = writes
            .iter()
            .filter(|op| written(op) == Some(seen.as_ref()))
            .collect();
        let explained = if sources.is_empty() {
            // Only the initial absence explains it: then no write may be acknowledged.
            seen.is_none() && !writes.iter().any(|op| acked(&op))
        } else {
            sources.iter().any(|source| {
                !writes.iter().filter(acked).any(|later| {
                    return_ns(source) < later.invoke_ns && written(later) != Some(seen.as_ref())
                })
            })
        };
        if !explained {
            let shown = seen.as_ref().map_or("absent".to_string(), |v| {
                String::from_utf8_lossy(v).into_owned()
            });
            lost.push(format!(
                "key {}: final value {shown} is older than an acknowledged write",
                String::from_utf8_lossy(&last.key)
            ));
        }
    }
    lost
}

/// Compares every group's chosen log on every node, byte for byte, over the
/// instances all of them can still read (a checkpoint truncates below): one line per
/// difference or per read that failed, and the values compared.
pub fn compare_logs(
    client: &Client,
    groups: u32,
    views: &BTreeMap<GroupId, GroupView>,
) -> (Vec<String>, u64) {
    let mut faults = Vec::new();
    let mut compared = 0;
    for g in 0..groups {
        let group = GroupId(g);
        let Some(view) = views.get(&group) else {
            faults.push(format!("group {g}: no node reported it"));
            continue;
        };
        let through = view.values().map(|s| s.1).min().unwrap_or(0);
        // The first instance every node can read.
        let mut from = Instance(1);
        for &node in view.keys() {
            if let Err(Error::Server(ServerError::Truncated { first_available })) =
                client.read_log_blocking(Some(node), group, Position::at(Instance(1)), 1)
            {
                from = from.max(first_available);
            }
        }
        let mut logs: BTreeMap<NodeId, Vec<(Position, Bytes)>> = BTreeMap::new();
        for &node in view.keys() {
            match read_log(client, node, group, from, Instance(through)) {
                Ok(log) => {
                    logs.insert(node, log);
                }
                Err(e) => faults.push(format!("group {g} node {}: {e}", node.0)),
            }
        }
        let mut copies = logs.iter();
        if let Some((first_node, first)) = copies.next() {
            compared += first.len() as u64;
            for (node, log) in copies {
                if log != first {
                    let at = first
                        .iter()
                        .zip(log)
                        .position(|(a, b)| a != b)
                        .unwrap_or(first.len().min(log.len()));
                    faults.push(format!(
                        "group {g}: node {} and node {} differ from value {at} of the {} read from instance {} ({} and {} values)",
                        first_node.0, node.0, first.len(), from.0, first.len(), log.len()
                    ));
                }
            }
        }
    }
    (faults, compared)
}

fn read_log(
    client: &Client,
    node: NodeId,
    group: GroupId,
    from: Instance,
    through: Instance,
) -> Result<Vec<(Position, Bytes)>, String> {
    let mut log = Vec::new();
    let mut next = Position::at(from);
    for _ in 0..LOG_READS_MAX {
        if next.instance > through {
            return Ok(log);
        }
        let mut tries = 0;
        let read = loop {
            match client.read_log_blocking(Some(node), group, next, LOG_READ_SIZE) {
                Ok(read) => break read,
                Err(e) if tries < 20 => {
                    tries += 1;
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(format!("read_log from {next:?}: {e}")),
            }
        };
        if read.entries.is_empty() && read.next == next {
            return Err(format!(
                "read_log from {next:?}: no progress (chosen through {})",
                read.chosen_through.0
            ));
        }
        for entry in read.entries {
            if entry.position.instance <= through {
                log.push((entry.position, entry.value));
            }
        }
        next = read.next;
    }
    Err(format!("more than {LOG_READS_MAX} reads"))
}
