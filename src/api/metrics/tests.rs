//! Tests of the exposition: names, types, labels, histograms, a stopped shard.

use super::*;
use crate::paxos::{Ballot, GroupId, Instance};
use crate::runtime::histogram::SYNC_NS_BOUNDS;
use crate::runtime::net::PeerLink;
use crate::runtime::request::{GroupStatus, ShardMetrics};

fn snapshot() -> Metrics {
    let mut sync_latency = Histogram::new(SYNC_NS_BOUNDS);
    sync_latency.record(30_000); // 50 µs bucket
    sync_latency.record(3_000_000_000); // above every bound
    let mut metrics = ShardMetrics {
        sync_latency,
        durable_lsn: 41,
        planned_lsn: 42,
        peers: vec![PeerLink {
            node: NodeId(2),
            outbound_connected: true,
            inbound_connected: false,
            queue_size: 7,
        }],
        ..ShardMetrics::default()
    };
    metrics.proposals.received = 5;
    metrics.proposals.applied = 3;
    metrics
        .proposals
        .fail(&crate::runtime::request::Error::Overloaded);
    metrics.net.messages_dropped_queue_full = 9;
    metrics.net.closes.insert("bad frame", 2);
    let group = GroupStatus {
        group: GroupId(4),
        role: Role::Leader,
        leader_hint: Some(NodeId(1)),
        promised: Ballot {
            round: 6,
            node: NodeId(1),
        },
        chosen_through: Instance(12),
        applied_through: Instance(11),
        checksum: 0,
        voting: true,
        fenced: false,
        retired: false,
        checkpoint_through: Instance(0),
        memory: None,
        voters: None,
    };
    Metrics {
        node: NodeId(1),
        shards: vec![ShardStatus {
            shard: 3,
            groups: vec![group],
            writes: 8,
            metrics,
            ..ShardStatus::default()
        }],
    }
}

/// The lines of `text` that start with `prefix`.
fn lines<'t>(text: &'t str, prefix: &str) -> Vec<&'t str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

// Goal: counters, gauges and labels come out under their documented names and types.
// Method: encode a hand-made snapshot and look for exact lines.
#[test]
fn families_have_names_types_and_labels() {
    let text = snapshot().encode();
    for line in [
        "# TYPE synod_wal_writes_total counter",
        "synod_wal_writes_total{shard=\"3\"} 8",
        "synod_proposals_received_total{shard=\"3\"} 5",
        "synod_proposals_applied_total{shard=\"3\"} 3",
        "synod_proposals_failed_total{shard=\"3\",kind=\"overloaded\"} 1",
        "# TYPE synod_wal_durable_lsn gauge",
        "synod_wal_durable_lsn{shard=\"3\"} 41",
        "synod_net_messages_dropped_total{shard=\"3\",reason=\"queue_full\"} 9",
        "synod_net_connections_closed_total{shard=\"3\",reason=\"bad frame\"} 2",
        "synod_peer_connected{shard=\"3\",peer=\"2\",direction=\"outbound\"} 1",
        "synod_peer_connected{shard=\"3\",peer=\"2\",direction=\"inbound\"} 0",
        "synod_peer_queue_bytes{shard=\"3\",peer=\"2\"} 7",
        "synod_group_chosen_through{group=\"4\"} 12",
        "synod_group_applied_through{group=\"4\"} 11",
        "synod_group_leader{group=\"4\"} 1",
        "synod_group_promised_round{group=\"4\"} 6",
        "synod_node_info{node=\"1\"} 1",
        "synod_shard_up{shard=\"3\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in:\n{text}"
        );
    }
    // Every family has exactly one TYPE line, and every sample belongs to one.
    let types = lines(&text, "# TYPE ");
    let mut names: Vec<&str> = types
        .iter()
        .map(|l| l.split(' ').nth(2).expect("name"))
        .collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count, "a family is declared twice");
}

// Goal: the fdatasync histogram is in seconds, cumulative, with +Inf, sum and count.
// Method: two observations (30 µs and 3 s) and the lines they must give.
#[test]
fn histogram_is_cumulative_in_seconds() {
    let text = snapshot().encode();
    assert!(text.contains("# TYPE synod_wal_fdatasync_seconds histogram"));
    let buckets = lines(&text, "synod_wal_fdatasync_seconds_bucket{");
    assert_eq!(buckets.len(), SYNC_NS_BOUNDS.len() + 1, "{buckets:#?}");
    // Bounds as Go formats floats (as Prometheus itself writes them).
    assert!(buckets[0].ends_with("le=\"2.5e-05\"} 0"), "{}", buckets[0]);
    assert!(buckets[1].ends_with("le=\"5e-05\"} 1"), "{}", buckets[1]);
    assert!(buckets[SYNC_NS_BOUNDS.len() - 1].ends_with("} 1"));
    assert!(buckets[SYNC_NS_BOUNDS.len()].ends_with("le=\"+Inf\"} 2"));
    assert!(text.contains("synod_wal_fdatasync_seconds_count{shard=\"3\"} 2"));
    assert!(text.contains("synod_wal_fdatasync_seconds_sum{shard=\"3\"} 3.00003"));
}

// Goal: a stopped shard reads 0 in `shard_up`.
// Method: set `fatal` and look for the line.
#[test]
fn stopped_shard_is_down() {
    let mut metrics = snapshot();
    metrics.shards[0].fatal = Some("fdatasync failed".to_string());
    assert!(metrics
        .encode()
        .lines()
        .any(|l| l == "synod_shard_up{shard=\"3\"} 0"));
}
