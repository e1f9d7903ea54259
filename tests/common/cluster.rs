//! A real cluster on 127.0.0.1 for tests: nodes with real WALs in temporary
//! directories, real TCP links, and a recording state machine whose applied log the
//! test can compare across nodes.

#![allow(dead_code, reason = "shared by several test crates, each using a part")]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use synod::api::{Config, Error, Node, NodeHandle, StateMachine, StateMachineFactory};
use synod::paxos::{GroupId, Instance, NodeId, Role};
use synod::transport::auth::AuthKey;

/// What one node applied: per group, `(instance, value)` in apply order.
pub type Applied = Arc<Mutex<BTreeMap<GroupId, Vec<(Instance, Bytes)>>>>;

struct Recorder {
    group: GroupId,
    applied: Applied,
    count: u64,
}

impl StateMachine for Recorder {
    fn apply(&mut self, instance: Instance, value: &[u8]) -> Bytes {
        self.count += 1;
        self.applied
            .lock()
            .expect("recorder lock")
            .entry(self.group)
            .or_default()
            .push((instance, Bytes::copy_from_slice(value)));
        Bytes::from(self.count.to_le_bytes().to_vec())
    }
    fn query(&self, _: &[u8]) -> Bytes {
        Bytes::from(self.count.to_le_bytes().to_vec())
    }
}

/// A factory whose state machines record into `applied` (fresh on each start: the
/// runtime rebuilds state from the log).
pub fn recorder(applied: &Applied) -> StateMachineFactory {
    let applied = Arc::clone(applied);
    Arc::new(move |group| {
        applied.lock().expect("recorder lock").remove(&group);
        Box::new(Recorder {
            group,
            applied: Arc::clone(&applied),
            count: 0,
        })
    })
}

/// The lines a child process writes to `output`, read on a thread of their own and
/// handed over one by one (the reader stops when the child closes it or the receiver
/// is gone).
pub fn line_reader(
    output: impl std::io::Read + Send + 'static,
) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(output)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// `count` consecutive free ports on 127.0.0.1 (checked by binding them), below the
/// kernel's ephemeral range (from 32,768 by default: a port probed free there may be
/// taken by an outgoing connection before the node binds it), and never handed out
/// twice in one test process.
pub fn free_ports(count: u16) -> u16 {
    const LOW: u16 = 20_000;
    const HIGH: u16 = 32_768;
    static GIVEN: std::sync::Mutex<Vec<(u16, u16)>> = std::sync::Mutex::new(Vec::new());
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    assert!(count > 0 && count < HIGH - LOW, "{count} ports");
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut seed = u64::from(std::process::id()) ^ clock ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..1000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let base = LOW + (seed >> 33) as u16 % (HIGH - LOW - count);
        if given.iter().any(|(b, n)| base < b + n && *b < base + count) {
            continue;
        }
        let held: Vec<TcpListener> = (0..count)
            .filter_map(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == usize::from(count) {
            given.push((base, count));
            return base;
        }
    }
    panic!("no {count} consecutive free ports");
}

/// The WAL segment files (`*.seg`) directly in `dir`: (count, bytes).
pub fn segment_files(dir: &Path) -> (usize, u64) {
    std::fs::read_dir(dir)
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().expect("metadata").len())
        .fold((0, 0), |(n, b), len| (n + 1, b + len))
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "synod-{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh key written to `path` (hex, mode 600), as `synod serve --key-file` and
/// `--client-key-file` read it.
pub fn write_key(path: &Path) -> AuthKey {
    use std::os::unix::fs::PermissionsExt;
    let key = AuthKey::generate().expect("random key");
    std::fs::write(path, format!("{}\n", key.to_hex())).expect("write key file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    key
}

/// A fresh peer key written to `key` in a new temporary directory (mode 600), as
/// `synod serve --key-file` reads it; the directory is removed on drop.
pub fn key_file(name: &str) -> (AuthKey, TempDir, PathBuf) {
    let dir = TempDir::new(&format!("{name}-key"));
    let path = dir.path().join("key");
    let key = write_key(&path);
    (key, dir, path)
}

/// The shape of a test cluster.
#[derive(Clone, Debug)]
pub struct Shape {
    pub nodes: u32,
    pub shards: u16,
    pub groups: u32,
}

/// Builds the state machine factory of a node (given its recorder's `Applied`).
pub type Machines = Box<dyn Fn(NodeId, &Applied) -> StateMachineFactory>;

/// A cluster of nodes in this process.
pub struct Cluster {
    pub shape: Shape,
    pub addresses: BTreeMap<NodeId, SocketAddr>,
    pub dirs: BTreeMap<NodeId, TempDir>,
    pub nodes: BTreeMap<NodeId, Node>,
    pub applied: BTreeMap<NodeId, Applied>,
    pub cluster_id: u64,
    /// The peer key of every node, and the file holding it (for `synod serve` children).
    pub key: AuthKey,
    pub key_file: PathBuf,
    pub key_dir: TempDir,
    pub machines: Machines,
    /// Applied to every node's test configuration at every start.
    pub adjust: Box<dyn Fn(&mut Config)>,
}

/// Short timeouts so tests move quickly (same relations as the defaults).
pub fn test_config(cluster: &Cluster, node: NodeId) -> Config {
    let mut config = Config::new(
        node,
        cluster.cluster_id,
        cluster.addresses.clone(),
        cluster.dirs[&node].path().to_path_buf(),
    );
    config.shards = cluster.shape.shards;
    config.cores = Vec::new();
    config.group_count = cluster.shape.groups;
    config.segment_size = 8 << 20;
    config.wal_buffer_size_max = 2 << 20;
    config.group.batch_size_max = 1 << 20;
    config.group.value_size_max = 1 << 20;
    config.group.election_timeout_ns = 300_000_000;
    config.group.heartbeat_interval_ns = 20_000_000;
    config.group.lease_ns = 150_000_000;
    config.group.retransmit_ns = 50_000_000;
    config.tick = Duration::from_millis(2);
    config.drain_timeout = Duration::from_millis(500);
    config.peer_key = Some(cluster.key.clone());
    (cluster.adjust)(&mut config);
    config
}

impl Cluster {
    /// A cluster whose state machines are recorders (`applied` fills up).
    pub fn new(name: &str, shape: Shape) -> Cluster {
        Cluster::with_machines(name, shape, Box::new(|_, applied| recorder(applied)))
    }

    /// A cluster whose state machines come from `machines` (`applied` stays empty
    /// unless they record into it).
    pub fn with_machines(name: &str, shape: Shape, machines: Machines) -> Cluster {
        Cluster::build(name, shape, machines, Box::new(|_| {}))
    }

    /// A cluster whose state machines come from `machines` and whose every node
    /// configuration is changed by `adjust`.
    pub fn with_machines_and(
        name: &str,
        shape: Shape,
        machines: Machines,
        adjust: impl Fn(&mut Config) + 'static,
    ) -> Cluster {
        Cluster::build(name, shape, machines, Box::new(adjust))
    }

    /// A recorder cluster whose every node configuration is changed by `adjust`.
    pub fn new_with(name: &str, shape: Shape, adjust: impl Fn(&mut Config) + 'static) -> Cluster {
        Cluster::build(
            name,
            shape,
            Box::new(|_, applied| recorder(applied)),
            Box::new(adjust),
        )
    }

    fn build(
        name: &str,
        shape: Shape,
        machines: Machines,
        adjust: Box<dyn Fn(&mut Config)>,
    ) -> Cluster {
        let mut addresses = BTreeMap::new();
        let mut dirs = BTreeMap::new();
        let mut applied = BTreeMap::new();
        for i in 1..=shape.nodes {
            let base = free_ports(shape.shards);
            addresses.insert(NodeId(i), SocketAddr::from(([127, 0, 0, 1], base)));
            dirs.insert(NodeId(i), TempDir::new(&format!("{name}-n{i}")));
            applied.insert(NodeId(i), Applied::default());
        }
        let (key, key_dir, key_file) = key_file(name);
        let mut cluster = Cluster {
            shape,
            key,
            key_file,
            key_dir,
            addresses,
            dirs,
            nodes: BTreeMap::new(),
            applied,
            cluster_id: 0x5EED,
            machines,
            adjust,
        };
        let ids: Vec<NodeId> = cluster.addresses.keys().copied().collect();
        for id in ids {
            cluster.start(id);
        }
        cluster
    }

    pub fn start(&mut self, id: NodeId) {
        self.start_with(id, |_| {});
    }

    /// Starts node `id` with the test configuration changed by `adjust`.
    pub fn start_with(&mut self, id: NodeId, adjust: impl FnOnce(&mut Config)) {
        let mut config = test_config(self, id);
        adjust(&mut config);
        let factory = (self.machines)(id, &self.applied[&id]);
        let node = Node::start(config, factory).expect("node starts");
        self.nodes.insert(id, node);
    }

    pub fn handles(&self) -> BTreeMap<NodeId, NodeHandle> {
        self.nodes.iter().map(|(id, n)| (*id, n.handle())).collect()
    }

    /// The node that leads `group` and can serve (status says Leader), if any.
    pub fn leader(&self, group: GroupId) -> Option<NodeId> {
        self.nodes.iter().find_map(|(id, node)| {
            let status = futures_lite::future::block_on(node.handle().group_status(group)).ok()?;
            (status.role == Role::Leader).then_some(*id)
        })
    }

    /// The node that leads `group`, once one does; panics after `timeout`.
    pub fn wait_leader(&self, group: GroupId, timeout: Duration) -> NodeId {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(leader) = self.leader(group) {
                return leader;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no leader of group {} within {timeout:?}", group.0);
    }

    /// Waits until every running node has applied the same prefix of every group
    /// (equal applied watermark and checksum).
    pub fn wait_converged(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let mut views: BTreeMap<GroupId, Vec<(Instance, u32)>> = BTreeMap::new();
            for node in self.nodes.values() {
                let Ok(statuses) = futures_lite::future::block_on(node.handle().status()) else {
                    return false;
                };
                for status in statuses.into_iter().flat_map(|s| s.groups) {
                    views
                        .entry(status.group)
                        .or_default()
                        .push((status.applied_through, status.checksum));
                }
            }
            if views
                .values()
                .all(|v| v.len() == self.nodes.len() && v.windows(2).all(|w| w[0] == w[1]))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// The outcome of one proposal driven to completion by a client that follows hints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Chosen at this instance and applied by the proposer.
    Chosen(Instance),
    /// May or may not be chosen (leadership changed, the node stopped).
    Unknown,
}

/// Proposes `value` to `group` through whichever node leads it, following
/// `NotLeader` hints and retrying transient errors until `deadline`.
pub fn propose_anywhere(
    handles: &BTreeMap<NodeId, NodeHandle>,
    group: GroupId,
    value: Bytes,
    deadline: Instant,
) -> Outcome {
    let ids: Vec<NodeId> = handles.keys().copied().collect();
    let mut target = ids[(group.0 as usize) % ids.len()];
    let mut attempt = 0usize;
    while Instant::now() < deadline {
        let Some(handle) = handles.get(&target) else {
            target = ids[attempt % ids.len()];
            attempt += 1;
            continue;
        };
        match futures_lite::future::block_on(handle.propose(group, value.clone())) {
            Ok(proposed) => return Outcome::Chosen(proposed.position.instance),
            Err(Error::NotLeader { hint: Some(hint) })
                if hint != target && handles.contains_key(&hint) =>
            {
                target = hint;
            }
            Err(Error::NotLeader { .. }) | Err(Error::Overloaded) | Err(Error::LeaseNotHeld) => {
                attempt += 1;
                target = ids[attempt % ids.len()];
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(Error::Indeterminate) | Err(Error::Stopped) | Err(Error::Aborted) => {
                return Outcome::Unknown;
            }
            Err(error) => panic!("unexpected error: {error}"),
        }
    }
    Outcome::Unknown
}

/// A client thread that proposes `w1`, `w2`, ... to one group through
/// `propose_anywhere` until stopped, recording when each value was acknowledged.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<(Instant, Bytes)>>>,
    thread: JoinHandle<()>,
}

impl Writer {
    /// Starts writing to `group` through `handles`.
    pub fn start(handles: BTreeMap<NodeId, NodeHandle>, group: GroupId) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged: Arc<Mutex<Vec<(Instant, Bytes)>>> = Arc::default();
        let thread = {
            let (stop, acknowledged) = (Arc::clone(&stop), Arc::clone(&acknowledged));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let value = Bytes::from(format!("w{n}"));
                    let deadline = Instant::now() + Duration::from_secs(10);
                    if let Outcome::Chosen(_) =
                        propose_anywhere(&handles, group, value.clone(), deadline)
                    {
                        acknowledged
                            .lock()
                            .expect("lock")
                            .push((Instant::now(), value));
                    }
                }
            })
        };
        Writer {
            stop,
            acknowledged,
            thread,
        }
    }

    /// Stops the writer; what it wrote and when each value was acknowledged, in order.
    pub fn stop(self) -> Vec<(Instant, Bytes)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("writer");
        let acknowledged = self.acknowledged.lock().expect("lock").clone();
        acknowledged
    }
}
