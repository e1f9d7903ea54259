//! Memory and disk held by the local cluster, sampled during a run: the bench
//! process's resident set (`VmRSS` of `/proc/self/status`: the three nodes, their
//! shards and the client all live in this process) and each node's WAL bytes on disk
//! (the sizes of the segment files in its directory, spares included).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use synod::paxos::NodeId;
use synod::runtime::request::ShardStatus;
use synod::wal::segment::parse_segment_file_name;

/// Seconds between samples (from the start of the warm-up); one more at the end.
pub const SAMPLE_EVERY_S: f64 = 60.0;

/// Memory and WAL bytes at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceSample {
    /// Milliseconds since the start of the warm-up.
    pub at_ms: u64,
    /// Resident set of the bench process in bytes (0 when `/proc` cannot tell).
    pub rss_bytes: u64,
    /// WAL bytes on disk, per node.
    pub wal_bytes: BTreeMap<u32, u64>,
    /// What each node's shards hold in memory, by their own count.
    pub held: BTreeMap<u32, Held>,
}

/// What one node's shards hold in memory, summed over its shards and groups (from
/// `ShardStatus`): the structures that grow with the log until a policy bounds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Instances in the WAL's index (`ShardStatus::wal_index_slots`).
    pub index_slots: u64,
    /// Bytes of the WAL's index, spare capacity included (`ShardStatus::wal_index_size`).
    pub index_size: u64,
    /// Slots of the groups' in-memory logs (`LogMemory::log_len`).
    pub log_slots: u64,
    /// Bytes of applied entries the groups' logs retain (`LogMemory::retained_size`).
    pub retained_size: u64,
    /// Bytes of capacity the peer links' reusable buffers keep
    /// (`ShardStatus::net_buffer_size`).
    pub net_buffer_size: u64,
}

impl Held {
    /// Sums `shards` (one node's statuses).
    #[must_use]
    pub fn of(shards: &[ShardStatus]) -> Held {
        let mut held = Held::default();
        for shard in shards {
            held.index_slots += shard.wal_index_slots;
            held.index_size += shard.wal_index_size;
            held.net_buffer_size += shard.net_buffer_size;
            for memory in shard.groups.iter().filter_map(|g| g.memory) {
                held.log_slots += memory.log_len as u64;
                held.retained_size += memory.retained_size as u64;
            }
        }
        held
    }
}

impl ResourceSample {
    /// Samples now: the process's resident set, every node's segment files in
    /// `dirs`, and `held`, what each node's shards said they hold.
    pub fn take(
        at_s: f64,
        dirs: &BTreeMap<NodeId, PathBuf>,
        held: BTreeMap<u32, Held>,
    ) -> ResourceSample {
        ResourceSample {
            at_ms: (at_s * 1e3) as u64,
            rss_bytes: rss_bytes().unwrap_or(0),
            wal_bytes: dirs
                .iter()
                .map(|(id, dir)| (id.0, wal_bytes(dir)))
                .collect(),
            held,
        }
    }

    /// The held counters summed over the nodes.
    pub fn held_total(&self) -> Held {
        let mut total = Held::default();
        for held in self.held.values() {
            total.index_slots += held.index_slots;
            total.index_size += held.index_size;
            total.log_slots += held.log_slots;
            total.retained_size += held.retained_size;
            total.net_buffer_size += held.net_buffer_size;
        }
        total
    }

    /// The WAL bytes summed over the nodes.
    pub fn wal_total(&self) -> u64 {
        self.wal_bytes.values().sum()
    }

    /// The largest node's WAL bytes.
    pub fn wal_max(&self) -> u64 {
        self.wal_bytes.values().copied().max().unwrap_or(0)
    }

    /// One human line.
    pub fn line(&self) -> String {
        let per_node: Vec<String> = self
            .wal_bytes
            .iter()
            .map(|(id, bytes)| format!("node {id} {:.1}", mib(*bytes)))
            .collect();
        let held = self.held_total();
        format!(
            "resources at {:.0} s: RSS {:.1} MiB (whole process); WAL on disk {:.1} MiB total, \
             max {:.1} MiB ({} MiB); held by the nodes: WAL index {} instances {:.1} MiB, \
             logs {} slots {:.1} MiB, link buffers {:.1} MiB",
            self.at_ms as f64 / 1e3,
            mib(self.rss_bytes),
            mib(self.wal_total()),
            mib(self.wal_max()),
            per_node.join(", "),
            held.index_slots,
            mib(held.index_size),
            held.log_slots,
            mib(held.retained_size),
            mib(held.net_buffer_size),
        )
    }

    /// As JSON.
    pub fn json(&self) -> Value {
        json!({
            "at_s": self.at_ms as f64 / 1e3,
            "rss_bytes": self.rss_bytes,
            "wal_bytes_total": self.wal_total(),
            "wal_bytes_max": self.wal_max(),
            "wal_bytes": self.wal_bytes.iter().map(|(id, b)| json!({"node": id, "bytes": b}))
                .collect::<Vec<_>>(),
            "held": self.held.iter().map(|(id, h)| json!({
                "node": id,
                "wal_index_slots": h.index_slots,
                "wal_index_bytes": h.index_size,
                "log_slots": h.log_slots,
                "log_retained_bytes": h.retained_size,
                "net_buffer_bytes": h.net_buffer_size,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The seconds (from the start of the warm-up) of the sample a long run's growth is
/// measured from: past the start-up, when the WAL's segments and the groups' logs have
/// reached their steady size.
pub const GROWTH_FROM_S: f64 = 60.0;

/// The most RSS and WAL bytes may grow from `GROWTH_FROM_S` to the end of a run and
/// still count as bounded (a fraction: 0.15 is 15 %).
pub const GROWTH_BOUND: f64 = 0.15;

/// RSS and WAL bytes at `GROWTH_FROM_S` against the end of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Growth {
    /// The sample taken at (or first after) `GROWTH_FROM_S`.
    pub from: ResourceSample,
    /// The last sample, at the end of the run.
    pub to: ResourceSample,
}

impl Growth {
    /// The growth over `samples` (in the order taken): from the first one taken at
    /// `GROWTH_FROM_S` or later to the last one; `None` when the run ended before a
    /// later sample than that one (too short to tell).
    pub fn of(samples: &[ResourceSample]) -> Option<Growth> {
        let from_ms = (GROWTH_FROM_S * 1e3) as u64;
        let from = samples.iter().find(|s| s.at_ms >= from_ms)?;
        let to = samples.last()?;
        (to.at_ms > from.at_ms).then(|| Growth {
            from: from.clone(),
            to: to.clone(),
        })
    }

    /// RSS at the end over RSS at the start, minus one (0.1 is +10 %); 0 when the
    /// start's RSS is unknown.
    pub fn rss_change(&self) -> f64 {
        change(self.from.rss_bytes, self.to.rss_bytes)
    }

    /// WAL bytes on disk (all nodes) at the end over those at the start, minus one.
    pub fn wal_change(&self) -> f64 {
        change(self.from.wal_total(), self.to.wal_total())
    }

    /// Both changes within ±`GROWTH_BOUND`.
    pub fn bounded(&self) -> bool {
        self.rss_change().abs() <= GROWTH_BOUND && self.wal_change().abs() <= GROWTH_BOUND
    }

    /// One human line.
    pub fn line(&self) -> String {
        format!(
            "growth from {:.0} s to {:.0} s: RSS {:.1} -> {:.1} MiB ({:+.1} %), WAL on disk \
             {:.1} -> {:.1} MiB ({:+.1} %): {} {:.0} %",
            self.from.at_ms as f64 / 1e3,
            self.to.at_ms as f64 / 1e3,
            mib(self.from.rss_bytes),
            mib(self.to.rss_bytes),
            self.rss_change() * 100.0,
            mib(self.from.wal_total()),
            mib(self.to.wal_total()),
            self.wal_change() * 100.0,
            if self.bounded() {
                "within"
            } else {
                "NOT within"
            },
            GROWTH_BOUND * 100.0,
        )
    }

    /// As JSON.
    pub fn json(&self) -> Value {
        json!({
            "from_s": self.from.at_ms as f64 / 1e3,
            "to_s": self.to.at_ms as f64 / 1e3,
            "rss_bytes_from": self.from.rss_bytes,
            "rss_bytes_to": self.to.rss_bytes,
            "rss_change": self.rss_change(),
            "wal_bytes_from": self.from.wal_total(),
            "wal_bytes_to": self.to.wal_total(),
            "wal_change": self.wal_change(),
            "bound": GROWTH_BOUND,
            "bounded": self.bounded(),
        })
    }
}

/// `to / from - 1`, 0 when `from` is 0.
fn change(from: u64, to: u64) -> f64 {
    if from == 0 {
        0.0
    } else {
        to as f64 / from as f64 - 1.0
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

/// `VmRSS` of this process in bytes.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

/// The `VmRSS:  N kB` line of a `/proc/<pid>/status` text, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// The sizes of the segment files directly in `dir` (0 when it cannot be read).
pub fn wal_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| parse_segment_file_name(&e.file_name().to_string_lossy()).is_some())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_parsed_in_bytes() {
        let status = "Name:\tsynod\nVmPeak:\t  9000 kB\nVmRSS:\t   1234 kB\nThreads:\t7\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        assert!(rss_bytes().is_some_and(|b| b > 0));
    }

    // Goal: the growth compares the sample at 60 s with the last one, and says whether
    // both RSS and WAL bytes stayed within 15 %.
    // Method: samples at 30, 60, 120 and 600 s with chosen figures; a run that ended
    // before a second sample past 60 s has no growth.
    #[test]
    fn growth_is_from_60_s_to_the_end() {
        let sample = |at_s: u64, rss: u64, wal: u64| ResourceSample {
            at_ms: at_s * 1000,
            rss_bytes: rss,
            wal_bytes: [(1, wal / 2), (2, wal - wal / 2)].into_iter().collect(),
            held: BTreeMap::new(),
        };
        let mut samples = vec![sample(30, 50, 10), sample(60, 100, 1000)];
        assert_eq!(Growth::of(&samples), None);
        samples.push(sample(120, 300, 1000));
        samples.push(sample(600, 114, 1150));
        let growth = Growth::of(&samples).expect("a sample after 60 s");
        assert_eq!((growth.from.at_ms, growth.to.at_ms), (60_000, 600_000));
        assert!((growth.rss_change() - 0.14).abs() < 1e-9);
        assert!((growth.wal_change() - 0.15).abs() < 1e-9);
        assert!(growth.bounded());
        assert!(growth.line().contains("(+14.0 %)"), "{}", growth.line());
        assert_eq!(growth.json()["bounded"], true);
        samples.push(sample(601, 116, 1000));
        let growth = Growth::of(&samples).expect("a sample after 60 s");
        assert!(!growth.bounded());
        assert!(
            growth.line().contains("NOT within 15 %"),
            "{}",
            growth.line()
        );
        assert_eq!(Growth::of(&[]), None);
    }

    #[test]
    fn only_segment_files_count() {
        let dir =
            std::env::temp_dir().join(format!("synod-bench-wal-bytes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let other = dir.join("identity");
        std::fs::write(&other, [0u8; 100]).expect("write");
        assert_eq!(wal_bytes(&dir), 0);
        std::fs::write(
            dir.join("wal-0000000000-00000000000000000003.seg"),
            [0u8; 4096],
        )
        .expect("write");
        std::fs::write(
            dir.join("wal-0000000001-00000000000000000000.seg"),
            [0u8; 512],
        )
        .expect("write");
        assert_eq!(wal_bytes(&dir), 4096 + 512);
        assert_eq!(wal_bytes(&dir.join("missing")), 0);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
