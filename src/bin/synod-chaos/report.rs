//! The chaos run's printout: operations by kind and outcome, nemesis events by kind,
//! the longest unavailability after each kind of event (from the event to the next
//! acknowledged write invoked after it), and the checks' verdicts; optionally the same
//! as one JSON object. Also the planted fault of `--plant-lost-write`.

use std::collections::BTreeMap;

use synod::check::linearizability::{Call, Operation, Outcome, Reply};
use synod::kv::group_of;
use synod::paxos::GroupId;

use crate::nemesis::{Event, Nemesis};
use crate::verify::KeyVerdict;

/// Everything the printout needs.
pub struct Report<'a> {
    /// The seed.
    pub seed: u64,
    /// Groups of the cluster.
    pub groups: u32,
    /// Seconds of workload asked.
    pub seconds: u64,
    /// The whole history, final reads included.
    pub history: &'a [Operation],
    /// The nemesis' events.
    pub events: &'a [Event],
    /// When the workload stopped.
    pub workload_end_ns: u64,
    /// Linearizability per key.
    pub verdicts: &'a [(Vec<u8>, KeyVerdict)],
    /// Acknowledged writes missing from the final state.
    pub lost: &'a [String],
    /// Whether every group converged on every node after healing.
    pub converged: bool,
    /// Differences between replicas' logs, and reads that failed.
    pub log_faults: &'a [String],
    /// Values compared per replica.
    pub log_values: u64,
    /// Node exits no fault explains.
    pub unexpected_exits: &'a [(usize, String)],
    /// Whether netem was available.
    pub netem: bool,
    /// How the network was made.
    pub net: String,
}

/// The network in one phrase (namespaces, or loopback and why).
pub fn describe_net(nemesis: &Nemesis) -> String {
    let netem = if nemesis.net.netem {
        "tc netem available (not used)"
    } else {
        "no tc netem on this kernel: no delay or loss faults"
    };
    match &nemesis.net.loopback_reason {
        None => format!("network namespaces + veth + bridge; {netem}"),
        Some(why) => format!("LOOPBACK (no namespaces: {why}): no partitions or link faults"),
    }
}

/// Replaces one key's final read by an older state: a present value read as absent
/// (or an absent key read as holding a value never written).
pub fn plant_lost_write(history: &[Operation], finals: &mut [Operation]) {
    let acked_put = |key: &Vec<u8>| {
        history.iter().any(|op| {
            &op.key == key
                && matches!(op.call, Call::Put { .. })
                && matches!(op.outcome, Outcome::Ok { .. })
        })
    };
    let present = finals.iter_mut().find(|op| {
        matches!(
            &op.outcome,
            Outcome::Ok {
                reply: Reply::Value(Some(_)),
                ..
            }
        )
    });
    if let Some(op) = present {
        if let Outcome::Ok { reply, .. } = &mut op.outcome {
            *reply = Reply::Value(None);
            println!(
                "planted: the final read of {} now says absent",
                String::from_utf8_lossy(&op.key)
            );
        }
        return;
    }
    if let Some(op) = finals.iter_mut().find(|op| acked_put(&op.key)).or(None) {
        if let Outcome::Ok { reply, .. } = &mut op.outcome {
            *reply = Reply::Value(Some(b"planted-never-written".to_vec()));
            println!(
                "planted: the final read of {} now holds a value never written",
                String::from_utf8_lossy(&op.key)
            );
        }
    }
}

fn kind(call: &Call) -> &'static str {
    match call {
        Call::Put { .. } => "put",
        Call::Get => "get",
        Call::Delete => "delete",
        Call::Cas { .. } => "cas",
    }
}

impl Report<'_> {
    /// Operations by kind: (ok, failed, indeterminate).
    fn operations(&self) -> BTreeMap<&'static str, [u64; 3]> {
        let mut counts: BTreeMap<&'static str, [u64; 3]> = BTreeMap::new();
        for op in self.history {
            let slot = match op.outcome {
                Outcome::Ok { .. } => 0,
                Outcome::Failed { .. } => 1,
                Outcome::Indeterminate => 2,
            };
            counts.entry(kind(&op.call)).or_default()[slot] += 1;
        }
        counts
    }

    /// Per event kind: (count, count during the workload, longest unavailability in
    /// ns, whether that one lasted to the end of the workload). An event's unavailability is the longest, over
    /// the groups, from the event to the return of the group's first acknowledged
    /// write invoked after it.
    fn unavailability(&self) -> BTreeMap<&'static str, (u64, u64, u64, bool)> {
        let mut acked: BTreeMap<GroupId, Vec<(u64, u64)>> = BTreeMap::new();
        for op in self
            .history
            .iter()
            .filter(|op| !matches!(op.call, Call::Get))
        {
            if let Outcome::Ok { at_ns, .. } = op.outcome {
                let group = group_of(&op.key, self.groups);
                acked.entry(group).or_default().push((op.invoke_ns, at_ns));
            }
        }
        for writes in acked.values_mut() {
            writes.sort_unstable();
        }
        let mut out: BTreeMap<&'static str, (u64, u64, u64, bool)> = BTreeMap::new();
        for event in self.events {
            let entry = out.entry(event.kind).or_default();
            entry.0 += 1;
            if event.at_ns >= self.workload_end_ns {
                continue;
            }
            entry.1 += 1;
            for writes in acked.values() {
                let first = writes.partition_point(|&(invoke, _)| invoke < event.at_ns);
                let next = writes[first..].iter().map(|&(_, at)| at).min();
                let (gap, censored) = match next {
                    Some(at) => (at - event.at_ns, false),
                    None => (self.workload_end_ns - event.at_ns, true),
                };
                if gap > entry.2 {
                    entry.2 = gap;
                    entry.3 = censored;
                }
            }
        }
        out
    }

    /// Prints the summary; whether every check passed.
    pub fn print(&self, json: bool) -> bool {
        println!();
        println!(
            "== synod-chaos summary (seed {}, {} s, {})",
            self.seed, self.seconds, self.net
        );
        println!("operations            ok     failed  indeterminate");
        let operations = self.operations();
        for (kind, [ok, failed, unknown]) in &operations {
            println!("  {kind:<8} {ok:>12} {failed:>10} {unknown:>14}");
        }
        println!("nemesis events (count, longest time to the next acknowledged write)");
        let unavailability = self.unavailability();
        for (kind, (count, measured, gap, censored)) in &unavailability {
            if *measured == 0 {
                println!("  {kind:<13} {count:>5}         - (after the workload)");
                continue;
            }
            let more = if *censored {
                " (no write after it before the end)"
            } else {
                ""
            };
            println!(
                "  {kind:<13} {count:>5}  {:>8.2} s{more}",
                *gap as f64 / 1e9
            );
        }
        if !self.unexpected_exits.is_empty() {
            println!(
                "node exits no fault explains: {}",
                self.unexpected_exits.len()
            );
            for (i, why) in self.unexpected_exits {
                println!("  node {}: {why}", i + 1);
            }
        }
        println!("checks");
        let mut passed = true;
        let (mut ok, mut unknown, mut violations) = (0, 0, Vec::new());
        for (key, verdict) in self.verdicts {
            let key = String::from_utf8_lossy(key);
            match verdict {
                KeyVerdict::Ok => ok += 1,
                KeyVerdict::Unknown => {
                    unknown += 1;
                    println!("  key {key}: linearizability unknown (search bounds reached)");
                }
                KeyVerdict::Violation(why) | KeyVerdict::Malformed(why) => {
                    violations.push(key.to_string());
                    println!("  key {key}: VIOLATION\n{why}");
                }
            }
        }
        let linearizable = unknown == 0 && violations.is_empty();
        passed &= linearizable;
        println!(
            "  (1) linearizability per key: {} ({ok} ok, {} violation, {unknown} unknown)",
            pass(linearizable),
            violations.len()
        );
        for line in self.lost {
            println!("      {line}");
        }
        passed &= self.lost.is_empty();
        println!(
            "  (2) acknowledged writes in the final state: {} ({} keys read after healing)",
            pass(self.lost.is_empty()),
            self.verdicts.len()
        );
        for line in self.log_faults {
            println!("      {line}");
        }
        let logs = self.converged && self.log_faults.is_empty();
        passed &= logs;
        println!(
            "  (3) replicas' chosen logs identical: {} (converged: {}, checksums equal, {} values compared byte for byte per replica)",
            pass(logs),
            self.converged,
            self.log_values
        );
        println!(
            "  (4) nothing applied twice: {} (unique values per write, retries in exactly-once sessions; a second application shows in (1))",
            pass(linearizable)
        );
        println!("verdict: {}", if passed { "PASS" } else { "FAIL" });
        if json {
            let value = serde_json::json!({
                "seed": self.seed,
                "seconds": self.seconds,
                "network": self.net,
                "netem": self.netem,
                "operations": operations.iter().map(|(k, c)| (k.to_string(), serde_json::json!({"ok": c[0], "failed": c[1], "indeterminate": c[2]}))).collect::<serde_json::Map<_, _>>(),
                "events": unavailability.iter().map(|(k, (count, _, gap, censored))| (k.to_string(), serde_json::json!({"count": count, "longest_unavailable_s": *gap as f64 / 1e9, "to_end": censored}))).collect::<serde_json::Map<_, _>>(),
                "event_log": self.events.iter().map(|e| serde_json::json!({"at_s": e.at_ns as f64 / 1e9, "kind": e.kind, "detail": e.detail})).collect::<Vec<_>>(),
                "unexpected_exits": self.unexpected_exits.len(),
                "linearizable": linearizable,
                "violations": violations,
                "unknown_keys": unknown,
                "lost_writes": self.lost,
                "converged": self.converged,
                "log_faults": self.log_faults,
                "log_values_compared": self.log_values,
                "passed": passed,
            });
            println!("{value}");
        }
        passed
    }
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "pass"
    } else {
        "FAIL"
    }
}
