//! The local three-node cluster of `synod bench` (real WALs, TCP on 127.0.0.1), and
//! snapshots of its counters and of per-thread CPU time taken from `/proc`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use synod::api::{Config, GroupStatus, Node, NodeHandle, ShardStatus};
use synod::paxos::{GroupId, NodeId, Role};
use synod::runtime::clock::MonotonicClock;
use synod::runtime::driver::null_factory;
use synod::runtime::fatal::ShardStopped;
use synod::runtime::truncation::TruncationPolicy;
use synod::wal::dma_disk::run_local;
use synod::wal::segment::parse_segment_file_name;
use synod::wal::store::recycle_all;
use synod::wal::BLOCK_SIZE;

use super::options::Options;

/// Nodes of the local cluster.
pub const REPLICAS: u32 = 3;

/// Clock ticks per second of `/proc/<pid>/task/<tid>/stat` (`USER_HZ`: 100 on every
/// Linux architecture synod targets; the kernel converts to it for user space).
const USER_HZ: f64 = 100.0;

/// A running cluster: its nodes, their handles and the leader of each group.
pub struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    /// Each node's configuration, to start it again after `stop`.
    configs: BTreeMap<NodeId, Config>,
    /// A handle per node.
    pub handles: BTreeMap<NodeId, NodeHandle>,
    /// The leader of each group when the load starts.
    pub leaders: BTreeMap<GroupId, NodeId>,
}

/// Empties `config.data_dir` for a fresh log, except the segment files of its shards
/// that fit this run's segment size: those are blanked into spares (`recycle_all`),
/// so the new log writes over them instead of creating (and the filesystem
/// discarding) fresh files. Everything else (identity, markers, other files) goes.
fn reuse_segments(config: &Config) -> Result<(), String> {
    let dir = &config.data_dir;
    let error = |e: std::io::Error| format!("{}: {e}", dir.display());
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(error)? {
        let entry = entry.map_err(error)?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let keep = parse_segment_file_name(&name).is_some_and(|(shard, _)| {
            shard < u32::from(config.shards)
                && entry
                    .metadata()
                    .is_ok_and(|m| m.is_file() && m.len() == config.segment_size)
        });
        if keep {
            continue;
        }
        if entry.file_type().map_err(error)?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    for shard in 0..config.shards {
        let store = config.store_config(shard);
        run_local(async move { recycle_all(&store).await.map(|_| ()) })
            .map_err(|e| format!("recycling {}: {e}", dir.display()))?
            .map_err(|e| format!("recycling {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// How long a node with a fresh log may take to start before the bench gives up.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node restarted on its log may take to recover before the bench gives up
/// (recovery reads the WAL's suffix above the checkpoints: seconds, not minutes).
const NODE_RESTART_TIMEOUT: Duration = Duration::from_secs(600);

/// `Node::start`, with a watchdog: a fresh, empty log starts in well under a second,
/// so a start that has not returned after `timeout` is stuck, and the bench
/// says so and exits rather than hang. (Seen twice in about 20 loaded runs on the
/// development machine: a shard thread parked in io_uring during its start; not
/// reproduced since. The process exits because the stuck thread cannot be joined.)
fn start_watched(config: Config, id: NodeId, timeout: Duration) -> Result<Node, String> {
    let (done, watch) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::Builder::new()
        .name("synod-bench-watch".to_string())
        .spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = watch.recv_timeout(timeout) {
                eprintln!(
                    "synod bench: node {} did not start within {} s (its shard threads are \
                     stuck); giving up",
                    id.0,
                    timeout.as_secs()
                );
                std::process::exit(3);
            }
        })
        .map_err(|e| format!("spawn the start watchdog: {e}"))?;
    let node = Node::start(config, null_factory()).map_err(|e| e.to_string());
    let _ = done.send(());
    let _ = watchdog.join();
    node
}

impl Cluster {
    /// Starts three nodes with fresh logs in `o.dir/node-N` and waits for a leader in
    /// every group.
    pub fn start(o: &Options) -> Result<Cluster, String> {
        let addresses: BTreeMap<NodeId, SocketAddr> = (1..=REPLICAS)
            .map(NodeId)
            .zip(free_bases(REPLICAS as usize, o.shards)?)
            .map(|(id, port)| (id, SocketAddr::from(([127, 0, 0, 1], port))))
            .collect();
        // A fresh peer key per run: the local cluster authenticates like a deployed one.
        let key = synod::transport::auth::AuthKey::generate().map_err(|e| e.to_string())?;
        let mut nodes = BTreeMap::new();
        let mut configs = BTreeMap::new();
        for id in addresses.keys() {
            let dir = node_dir(o, *id);
            // A fresh log each run (the bench measures steady state, not recovery),
            // made of the last run's segment files, recycled into blank spares: deleting
            // gigabytes right before measuring makes this disk (mounted with `discard`)
            // stall for the next seconds.
            let mut config = config(o, *id, addresses.clone(), dir);
            config.peer_key = Some(key.clone());
            reuse_segments(&config)?;
            let node = start_watched(config.clone(), *id, NODE_START_TIMEOUT)?;
            nodes.insert(*id, node);
            configs.insert(*id, config);
        }
        let handles: BTreeMap<NodeId, NodeHandle> =
            nodes.iter().map(|(id, n)| (*id, n.handle())).collect();
        let leaders = wait_for_leaders(&handles, o.groups, Duration::from_secs(30))?;
        Ok(Cluster {
            nodes,
            configs,
            handles,
            leaders,
        })
    }

    /// A follower of every group when one exists (the node that leads fewest groups;
    /// the highest id among equals): stopping it leaves every leader in place.
    pub fn quietest_follower(&self) -> NodeId {
        let leading = |id: &NodeId| self.leaders.values().filter(|l| *l == id).count();
        self.nodes
            .keys()
            .copied()
            .min_by_key(|id| (leading(id), std::cmp::Reverse(*id)))
            .unwrap_or(NodeId(REPLICAS))
    }

    /// Stops node `id` cleanly (`Node::shutdown`: it drains, closes its links and its
    /// WAL) and forgets its handle; returns the seconds the shutdown took. A shard
    /// that stopped abnormally is an error.
    pub fn stop(&mut self, id: NodeId) -> Result<f64, String> {
        let node = self
            .nodes
            .remove(&id)
            .ok_or_else(|| format!("node {} is not running", id.0))?;
        self.handles.remove(&id);
        let clock = MonotonicClock::start();
        let errors = node.shutdown();
        let seconds = clock.elapsed_s();
        match errors.first() {
            Some(error) => Err(format!("node {} stopped abnormally: {error}", id.0)),
            None => Ok(seconds),
        }
    }

    /// Starts node `id` again on its data directory (it recovers its log: checkpoints
    /// restored, the WAL's suffix replayed) and returns the seconds `Node::start` took
    /// (it returns once every shard recovered and listens).
    pub fn restart(&mut self, id: NodeId) -> Result<f64, String> {
        let config = self
            .configs
            .get(&id)
            .ok_or_else(|| format!("no node {}", id.0))?
            .clone();
        if self.nodes.contains_key(&id) {
            return Err(format!("node {} is running", id.0));
        }
        let clock = MonotonicClock::start();
        let node = start_watched(config, id, NODE_RESTART_TIMEOUT)?;
        let seconds = clock.elapsed_s();
        self.handles.insert(id, node.handle());
        self.nodes.insert(id, node);
        Ok(seconds)
    }

    /// Shuts every node down; returns the shards that stopped abnormally, and why.
    pub fn shutdown(self) -> Vec<ShardStopped> {
        drop(self.handles);
        // Nodes stop one after the other, so the later ones see their peers' links
        // break: expected here, not worth a warning each. Fatal errors are returned.
        let level = log::max_level();
        log::set_max_level(level.min(log::LevelFilter::Error));
        let errors = self.nodes.into_values().flat_map(Node::shutdown).collect();
        log::set_max_level(level);
        errors
    }
}

/// Node `id`'s data directory under `--dir` (its WAL and checkpoints).
pub fn node_dir(o: &Options, id: NodeId) -> std::path::PathBuf {
    o.dir.join(format!("node-{}", id.0))
}

/// The configuration of node `id`: the bench's flags on top of `Config::new`, with
/// every limit that must hold the largest value or batch raised to it.
pub fn config(
    o: &Options,
    id: NodeId,
    addresses: BTreeMap<NodeId, SocketAddr>,
    dir: std::path::PathBuf,
) -> Config {
    let mut config = Config::new(id, 0xBE4C, addresses, dir);
    config.shards = o.shards;
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    config.cores = if o.pin {
        (0..usize::from(o.shards)).map(|s| s % online).collect()
    } else {
        Vec::new()
    };
    config.group_count = o.groups;
    config.group.window_instances_max = o.window;
    // Followers accept up to their own chosen watermark + this, which lags the
    // leader's: 4 W leaves room (W = 1024 with 1024 stalled on accept_beyond_window).
    config.group.accept_window_instances_max = (o.window * 4).max(256);
    config.group.promise_entries_max = config
        .group
        .promise_entries_max
        .max(config.group.accept_window_instances_max as usize);
    if let Some(instances) = o.retention_instances_max {
        config.group.retention_instances_max = instances;
    }
    if let Some(size) = o.retention_size_max {
        config.group.retention_size_max = size;
    }
    config.group.batch_values_max = o.batch;
    let value_max = o.value_sizes.max();
    config.group.batch_size_max = o
        .batch_bytes
        .unwrap_or_else(|| config.group.batch_size_max.max(value_max));
    // At least the largest value, at most one batch (validate: batch >= value).
    config.group.value_size_max = config
        .group
        .value_size_max
        .min(config.group.batch_size_max)
        .max(value_max);
    // One peer message must carry one maximal batch (validate says by how much).
    config.group.message_size_max = config
        .group
        .message_size_max
        .max(config.group.message_size_min());
    let limits = &mut config.wire_limits;
    limits.value_size_max = limits.value_size_max.max(config.group.value_size_max);
    limits.values_max = limits.values_max.max(o.batch);
    limits.entries_max = limits
        .entries_max
        .max(config.group.accept_window_instances_max as usize);
    limits.frame_size_max = limits
        .frame_size_max
        .max(config.group.batch_size_max + (1 << 16))
        .max(config.group.message_size_max);
    let record_max = config.group.batch_size_max + o.batch * 16 + 4096;
    config.wal_buffer_size_max = config
        .wal_buffer_size_max
        .max(record_max.div_ceil(BLOCK_SIZE) * BLOCK_SIZE);
    config.wal_pending_size_max = config
        .wal_pending_size_max
        .max(4 * config.wal_buffer_size_max);
    config.segment_size = config
        .segment_size
        .max(4 * config.wal_buffer_size_max as u64);
    config.peer_queue_size_max = config
        .peer_queue_size_max
        .max(4 * config.wire_limits.frame_size_max);
    if let Some(instances) = o.checkpoint_instances {
        config.checkpoint.instance_count = instances;
    }
    if let Some(writes) = o.wal_writes_in_flight {
        config.wal_writes_in_flight_max = usize::from(writes);
    }
    config.unsafe_skip_fsync = !o.fsync;
    if !o.truncation {
        config.truncation = TruncationPolicy::OFF;
    }
    config
}

/// `count` base ports on 127.0.0.1, each followed by `shards - 1` free ports (checked
/// by binding them all at once).
fn free_bases(count: usize, shards: u16) -> Result<Vec<u16>, String> {
    let mut held: Vec<TcpListener> = Vec::new();
    let mut bases = Vec::new();
    let mut candidate = 21_000 + (std::process::id() % 20_000) as u16;
    while bases.len() < count {
        if u32::from(candidate) + u32::from(shards) > 60_000 {
            return Err("no free ports on 127.0.0.1".into());
        }
        let run: Vec<TcpListener> = (0..shards)
            .filter_map(|i| TcpListener::bind(("127.0.0.1", candidate + i)).ok())
            .collect();
        if run.len() == usize::from(shards) {
            bases.push(candidate);
            held.extend(run);
        }
        candidate += shards + 7;
    }
    Ok(bases)
}

fn wait_for_leaders(
    handles: &BTreeMap<NodeId, NodeHandle>,
    groups: u32,
    timeout: Duration,
) -> Result<BTreeMap<GroupId, NodeId>, String> {
    let clock = MonotonicClock::start();
    loop {
        let mut leaders = BTreeMap::new();
        for (id, handle) in handles {
            for status in
                futures_lite::future::block_on(handle.status()).map_err(|e| e.to_string())?
            {
                for group in status.groups {
                    if group.role == Role::Leader {
                        leaders.insert(group.group, *id);
                    }
                }
            }
        }
        if leaders.len() == groups as usize {
            return Ok(leaders);
        }
        if clock.elapsed_s() > timeout.as_secs_f64() {
            return Err(format!(
                "only {} of {groups} groups elected a leader",
                leaders.len()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every group of node `handle` as its shards see it now (a status request, from
/// this thread).
pub fn group_statuses(handle: &NodeHandle) -> Result<Vec<GroupStatus>, String> {
    let shards = futures_lite::future::block_on(handle.status()).map_err(|e| e.to_string())?;
    Ok(shards.into_iter().flat_map(|s| s.groups).collect())
}

/// One node's counters, summed over its shards, and its shard threads' CPU time.
#[derive(Clone, Debug, Default)]
pub struct NodeSample {
    /// WAL writes (one fdatasync each, unless fsync is off).
    pub writes: u64,
    /// WAL records written.
    pub records: u64,
    /// Elections started.
    pub elections: u64,
    /// Nanoseconds with a WAL write in flight.
    pub write_busy_ns: u64,
    /// Nanoseconds inside the disk.
    pub disk_ns: u64,
    /// Nanoseconds of `disk_ns` inside fdatasync.
    pub sync_ns: u64,
    /// Shard loop iterations.
    pub iterations: u64,
    /// Instances chosen as leader.
    pub chosen_as_leader: u64,
    /// Instances carrying values applied.
    pub value_instances_applied: u64,
    /// Values applied.
    pub values_applied: u64,
    /// Peer messages dropped.
    pub dropped_messages: u64,
    /// Peer messages the shards refused (backpressure).
    pub refused_messages: u64,
    /// Messages the groups ignored, by reason.
    pub ignored: BTreeMap<&'static str, u64>,
    /// CPU seconds of the node's shard threads (user + system).
    pub cpu_s: f64,
    /// Fatal errors of stopped shards.
    pub fatal: Vec<String>,
}

impl NodeSample {
    fn add(&mut self, status: &ShardStatus) {
        self.writes += status.writes;
        self.records += status.records;
        self.elections += status.elections;
        self.write_busy_ns += status.write_busy_ns;
        self.disk_ns += status.disk_ns;
        self.sync_ns += status.sync_ns;
        self.iterations += status.iterations;
        self.chosen_as_leader += status.chosen_as_leader;
        self.value_instances_applied += status.value_instances_applied;
        self.values_applied += status.values_applied;
        self.dropped_messages += status.dropped_messages;
        self.refused_messages += status.refused_messages;
        for (reason, count) in &status.ignored {
            *self.ignored.entry(*reason).or_default() += count;
        }
        self.cpu_s += status.thread_id.and_then(thread_cpu_s).unwrap_or(0.0);
        self.fatal.extend(status.fatal.clone());
    }

    /// `self - before`, counter by counter.
    pub fn since(&self, before: &NodeSample) -> NodeSample {
        NodeSample {
            writes: self.writes - before.writes,
            records: self.records - before.records,
            elections: self.elections - before.elections,
            write_busy_ns: self.write_busy_ns - before.write_busy_ns,
            disk_ns: self.disk_ns - before.disk_ns,
            sync_ns: self.sync_ns - before.sync_ns,
            iterations: self.iterations - before.iterations,
            chosen_as_leader: self.chosen_as_leader - before.chosen_as_leader,
            value_instances_applied: self.value_instances_applied - before.value_instances_applied,
            values_applied: self.values_applied - before.values_applied,
            dropped_messages: self.dropped_messages - before.dropped_messages,
            refused_messages: self.refused_messages - before.refused_messages,
            ignored: self
                .ignored
                .iter()
                .map(|(reason, count)| {
                    (
                        *reason,
                        count - before.ignored.get(reason).copied().unwrap_or(0),
                    )
                })
                .filter(|(_, count)| *count > 0)
                .collect(),
            cpu_s: self.cpu_s - before.cpu_s,
            fatal: self.fatal.clone(),
        }
    }
}

/// Counters of every node and CPU times, at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Per node.
    pub nodes: BTreeMap<NodeId, NodeSample>,
    /// CPU seconds of the client thread.
    pub client_cpu_s: f64,
    /// CPU seconds of the whole process.
    pub process_cpu_s: f64,
}

/// Takes a snapshot: a status request to every shard of every node (from the
/// client's executor), then the CPU times.
pub async fn snapshot(
    handles: &BTreeMap<NodeId, NodeHandle>,
    client_thread: Option<u32>,
) -> Result<Snapshot, String> {
    let mut snapshot = Snapshot::default();
    for (id, handle) in handles {
        let mut sample = NodeSample::default();
        for status in handle.status().await.map_err(|e| e.to_string())? {
            sample.add(&status);
        }
        snapshot.nodes.insert(*id, sample);
    }
    snapshot.client_cpu_s = client_thread.and_then(thread_cpu_s).unwrap_or(0.0);
    snapshot.process_cpu_s = stat_cpu_s("/proc/self/stat").unwrap_or(0.0);
    Ok(snapshot)
}

/// Takes a snapshot of a running cluster (`--target`): one status request to every
/// node it knows, through `client`. The nodes' CPU is not visible from here (their
/// threads are in other processes): it stays zero and the summary says n/a.
pub async fn remote_snapshot(
    client: &synod::client::Client,
    client_thread: Option<u32>,
) -> Result<Snapshot, String> {
    let mut snapshot = Snapshot::default();
    for node in client.status().await.map_err(|e| e.to_string())? {
        let mut sample = NodeSample::default();
        for status in &node.shards {
            sample.add(status);
        }
        snapshot.nodes.insert(node.node, sample);
    }
    snapshot.client_cpu_s = client_thread.and_then(thread_cpu_s).unwrap_or(0.0);
    snapshot.process_cpu_s = stat_cpu_s("/proc/self/stat").unwrap_or(0.0);
    Ok(snapshot)
}

/// The calling thread's Linux id (`/proc/thread-self` links to `<pid>/task/<tid>`).
pub fn current_thread_id() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// CPU seconds (user + system) of thread `tid` of this process.
fn thread_cpu_s(tid: u32) -> Option<f64> {
    stat_cpu_s(&format!("/proc/self/task/{tid}/stat"))
}

/// utime + stime of a `/proc/.../stat` file, in seconds. The fields are counted after
/// the command name's closing parenthesis (the name may contain spaces).
fn stat_cpu_s(path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let after_name = &text[text.rfind(')')? + 1..];
    // Fields 3.. of proc(5): state is index 0, utime (14) index 11, stime (15) index 12.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the bench's per-thread CPU accounting reads this thread's own stat file.
    // Method: burn some CPU on this thread and see its CPU time grow.
    #[test]
    fn thread_cpu_grows() {
        let tid = current_thread_id().expect("Linux with /proc");
        let before = thread_cpu_s(tid).expect("stat");
        let clock = MonotonicClock::start();
        let mut x = 1u64;
        while clock.elapsed_s() < 0.1 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = thread_cpu_s(tid).expect("stat");
        assert!(after >= before, "{after} < {before}");
        assert!(stat_cpu_s("/proc/self/stat").is_some());
    }
}
