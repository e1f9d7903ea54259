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
}

impl Held {
    /// Sums `shards` (one node's statuses).
    #[must_use]
    pub fn of(shards: &[ShardStatus]) -> Held {
        let mut held = Held::default();
        for shard in shards {
            held.index_slots += shard.wal_index_slots;
            held.index_size += shard.wal_index_size;
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
             logs {} slots {:.1} MiB",
            self.at_ms as f64 / 1e3,
            mib(self.rss_bytes),
            mib(self.wal_total()),
            mib(self.wal_max()),
            per_node.join(", "),
            held.index_slots,
            mib(held.index_size),
            held.log_slots,
            mib(held.retained_size),
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
            })).collect::<Vec<_>>(),
        })
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
