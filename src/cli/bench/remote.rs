//! `synod bench --target HOST:PORT,...`: the same load against a running cluster,
//! through `synod::client` (the nodes' client listeners, `synod serve --client`).
//!
//! What is measured remotely: throughput and latency (here, including the network to
//! the cluster), and from the nodes' status counters elections, values per instance,
//! records per fdatasync and fdatasyncs/s. What needs the nodes' machines (their CPU,
//! their disk and network limits) is reported as n/a.

use std::time::Duration;

use synod::client::{Client, ClientConfig};
use synod::paxos::{GroupId, Role};
use synod::runtime::clock::MonotonicClock;

use super::options::Options;
use crate::cli::read_key;

/// How long to wait for a leader in every group of the load.
const LEADERS_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to the running cluster and waits until every group of the load has a
/// leader; returns the client and the shard count of the first node (for per-shard
/// figures).
pub fn connect(o: &Options) -> Result<(Client, u16), String> {
    let target = o.target.as_deref().unwrap_or_default();
    let key = read_key("--client-key-file", o.client_key_file.as_deref())?;
    let config = ClientConfig {
        key,
        ..ClientConfig::default()
    };
    let client =
        Client::connect_with(target, o.cluster, config).map_err(|e| format!("--target: {e}"))?;
    let clock = MonotonicClock::start();
    loop {
        let statuses = client.status_blocking().map_err(|e| e.to_string())?;
        let groups: Vec<_> = statuses
            .iter()
            .flat_map(|n| n.shards.iter().flat_map(|s| &s.groups))
            .collect();
        let group_count = groups.iter().map(|g| g.group).max().map_or(0, |g| g.0 + 1);
        if group_count < o.groups {
            return Err(format!(
                "--groups {}: the cluster has {group_count} group(s) (set --groups on `synod serve`)",
                o.groups
            ));
        }
        let led = (0..o.groups)
            .filter(|g| {
                groups
                    .iter()
                    .any(|s| s.group == GroupId(*g) && s.role == Role::Leader)
            })
            .count();
        if led == o.groups as usize {
            let shards = statuses.first().map_or(1, |n| n.shards.len().max(1) as u16);
            return Ok((client, shards));
        }
        if clock.elapsed_s() > LEADERS_TIMEOUT.as_secs_f64() {
            return Err(format!(
                "only {led} of {} groups have a leader after {} s",
                o.groups,
                LEADERS_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
