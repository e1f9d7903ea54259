//! A node's life and death: a shard that stops for good (a panic, a full disk) takes
//! its node out cleanly instead of leaving a half-dead process (a node stopped by a
//! full disk resumes once space returns, nothing acknowledged lost), and `synod serve`
//! refuses at start what would break the cluster (a read-only or unannounced empty
//! data directory, overlapping shard ports, a client port inside a shard port range, a
//! faulty configuration file).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{free_ports, propose_anywhere, recorder, Cluster, Outcome, Shape, TempDir};
use common::serve::{GroupLine, Serve};
use futures_lite::future::block_on;
use synod::api::{
    Config, Error, Fatal, LogEntry, Node, Position, ShardStartError, StartError, StateMachine,
};
use synod::client::Client;
use synod::paxos::{GroupId, Instance, NodeId};
use synod::runtime::shard_of;

const CLUSTER: u64 = 0x5EED;
/// `--test-timeouts`' election timeout.
const ELECTION_TIMEOUT: Duration = Duration::from_millis(300);
/// `synod serve`'s exit status when a shard stops for good.
const EXIT_SHARD_STOPPED: i32 = 3;

/// Held by the tests that run clusters, so that they do not run at once: the failover
/// bound is measured on a machine this file does not load with another cluster.
static CLUSTERS: Mutex<()> = Mutex::new(());

fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    CLUSTERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `f` on a thread of its own and returns its result, or fails the test if it
/// does not return within `limit` (a hang is the failure these tests look for).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not return within {limit:?}"))
}

/// Holds a node that may hang on shutdown: dropped during a test's panic, the node is
/// leaked rather than shut down, so the failure is reported instead of hanging.
struct LeakOnPanic(Option<synod::api::Node>);

impl Drop for LeakOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            #[expect(
                clippy::mem_forget,
                reason = "the point: a node that hangs on shutdown must not hang the failing test"
            )]
            std::mem::forget(self.0.take());
        }
    }
}

/// A state machine that panics when it applies `boom`, as a buggy one would.
struct Bomb;

impl StateMachine for Bomb {
    fn apply(&mut self, instance: Instance, value: &[u8]) -> Bytes {
        assert!(
            value != b"boom",
            "state machine bug at instance {}",
            instance.0
        );
        Bytes::new()
    }
    fn query(&self, _: &[u8]) -> Bytes {
        Bytes::new()
    }
}

// Goal: a shard whose thread panics is reported at once with its index and reason;
// requests to it answer `Stopped` without waiting, its node's other shard keeps
// serving, the other nodes keep choosing in its groups, and `Node::shutdown` returns.
// Method: 3 nodes x 2 shards x 4 groups; node 1's state machines panic on `boom`;
// propose `boom` to group 1; wait on node 1's fatal latch; then propose, ask status
// and group status on node 1 and shut it down, each bounded by a deadline.
#[test]
fn panicked_shard_stops_its_node_cleanly() {
    let _alone = one_cluster_at_a_time();
    let mut cluster = Cluster::with_machines(
        "panic",
        Shape {
            nodes: 3,
            shards: 2,
            groups: 4,
        },
        Box::new(|node, applied| {
            if node == NodeId(1) {
                Arc::new(|_| Box::new(Bomb))
            } else {
                recorder(applied)
            }
        }),
    );
    let group = GroupId(1);
    let dead_shard = shard_of(group, 2);
    let other = (0..4)
        .map(GroupId)
        .find(|g| shard_of(*g, 2) != dead_shard)
        .expect("a group on the other shard");
    let handles = cluster.handles();
    let deadline = Instant::now() + Duration::from_secs(30);
    assert!(
        matches!(
            propose_anywhere(&handles, group, Bytes::from_static(b"before"), deadline),
            Outcome::Chosen(_)
        ),
        "no progress before the panic"
    );
    assert_eq!(cluster.nodes[&NodeId(1)].fatal(), None);
    // Chosen everywhere, so node 1 applies it whether it leads or follows.
    let _ = propose_anywhere(&handles, group, Bytes::from_static(b"boom"), deadline);
    let stopped = cluster.nodes[&NodeId(1)]
        .wait_fatal(Some(Duration::from_secs(20)))
        .expect("node 1 reports its shard's stop");
    println!("reported: {stopped}");
    assert_eq!((stopped.node, stopped.shard), (NodeId(1), dead_shard));
    assert!(
        matches!(&stopped.fatal, Fatal::Panic { message } if message.contains("state machine bug")),
        "{stopped}"
    );
    assert!(stopped.to_string().contains(&format!("shard {dead_shard}")));

    // Node 1 out of the cluster: a failed check below must not hang the test in the
    // cluster's drop (shutting down a node that hangs is what this test looks for).
    let mut stopping = LeakOnPanic(cluster.nodes.remove(&NodeId(1)));
    let handle = stopping.0.as_ref().expect("node 1").handle();
    let h = handle.clone();
    let answer = within(
        Duration::from_secs(5),
        "propose to the dead shard",
        move || block_on(h.propose(group, b"after".to_vec())),
    );
    assert_eq!(answer, Err(Error::Stopped));
    let h = handle.clone();
    let status = within(Duration::from_secs(5), "status", move || {
        block_on(h.status())
    });
    assert_eq!(status, Err(Error::Stopped));
    let h = handle.clone();
    let alive = within(Duration::from_secs(5), "group status", move || {
        block_on(h.group_status(other))
    });
    assert!(alive.is_ok(), "the other shard stopped too: {alive:?}");

    let others: BTreeMap<NodeId, _> = handles
        .into_iter()
        .filter(|(id, _)| *id != NodeId(1))
        .collect();
    let outcome = propose_anywhere(
        &others,
        group,
        Bytes::from_static(b"elsewhere"),
        Instant::now() + Duration::from_secs(30),
    );
    assert!(
        matches!(outcome, Outcome::Chosen(_)),
        "nodes 2 and 3 stopped choosing in group {}",
        group.0
    );

    let node = stopping.0.take().expect("node 1");
    let stops = within(Duration::from_secs(20), "Node::shutdown", move || {
        node.shutdown()
    });
    assert_eq!(stops, vec![stopped]);
}

/// A filesystem mounted for one test, unmounted on drop (a failed test included).
struct Mount {
    point: PathBuf,
}

impl Mount {
    /// Mounts a tmpfs of `size` (as `mount -o size=`) on `point`; `Err` says why not.
    fn tmpfs(point: &Path, size: &str) -> Result<Mount, String> {
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(point)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
        }
        Ok(Mount {
            point: point.to_path_buf(),
        })
    }

    /// Mounts a tmpfs on `point`, or prints why this machine cannot and returns
    /// `None` (the caller then skips: mounting needs root and mount(8)).
    fn tmpfs_or_skip(point: &Path, size: &str, test: &str) -> Option<Mount> {
        match Mount::tmpfs(point, size) {
            Ok(mount) => Some(mount),
            Err(reason) => {
                println!("SKIPPED {test}: cannot mount a tmpfs on this machine ({reason})");
                None
            }
        }
    }

    /// Grows (or shrinks) the filesystem to `size` in place (`mount -o
    /// remount,size=`): the files on it stay.
    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.point)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "remount {} at {size}",
            self.point.display()
        );
    }

    fn remount_read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.point)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "remount {} read-only",
            self.point.display()
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.point)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Busy (a child still exiting): detach it now, freed once unused.
            let _ = Command::new("umount").arg("-l").arg(&self.point).status();
        }
    }
}

/// Starts `synod serve ARGS` as node `label` without waiting for `ready`. These tests
/// are about start-up and failover, not authentication (tests/hostile.rs and
/// tests/client_hostile.rs): both ports run without keys.
fn serve(label: &str, args: &[String]) -> Serve {
    let mut args = args.to_vec();
    args.push("--no-auth".to_string());
    Serve::start(label, &args, None)
}

/// How long a node may take to print `ready`.
const READY_WITHIN: Duration = Duration::from_secs(30);

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}

/// Runs `synod serve` with `args`, which must refuse to start: returns its one error
/// line (`synod: ...`), after checking that it exited 1 without printing `ready`.
fn refused(args: &[String]) -> String {
    let mut node = serve("1", args);
    let status = node.exit(Duration::from_secs(30));
    let log = node.final_log();
    assert_eq!(status.code(), Some(1), "{args:?}: {log:?}");
    assert!(
        node.lines.try_iter().all(|l| l != "ready"),
        "{args:?} printed ready"
    );
    let errors: Vec<&String> = log.iter().filter(|l| l.starts_with("synod: ")).collect();
    assert_eq!(errors.len(), 1, "one error line: {log:?}");
    println!("{}", errors[0]);
    errors[0].clone()
}

/// `1=127.0.0.1:P1,2=127.0.0.1:P2,...` of `ports` in node order.
fn node_list(ports: &[u16]) -> String {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

/// Groups of the full-disk test's nodes (2 shards of 4).
const FULL_DISK_GROUPS: u32 = 8;
/// Client threads that load the full-disk test's cluster.
const LOAD_THREADS: u8 = 4;

/// The full-disk test's three `synod serve --client --control` nodes, 2 shards x 8
/// groups: their data directories, peer and client ports.
struct FullDiskNodes {
    dirs: Vec<PathBuf>,
    peer_list: String,
    client_list: String,
    addresses: Vec<String>,
}

impl FullDiskNodes {
    fn new(dirs: Vec<PathBuf>) -> FullDiskNodes {
        let peers: Vec<u16> = (0..3).map(|_| free_ports(2)).collect();
        let clients: Vec<u16> = (0..3).map(|_| free_ports(1)).collect();
        FullDiskNodes {
            dirs,
            peer_list: node_list(&peers),
            client_list: node_list(&clients),
            addresses: clients.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
        }
    }

    /// Starts node `i + 1` and waits for `ready`: on a new data directory with `new`,
    /// else on the one it holds (neither `--new` nor `--existing`: the directory says
    /// that it holds the node's data). Checkpoints off: no WAL record is truncated, so
    /// every group's log reads back whole from instance 1.
    fn spawn(&self, i: usize, new: bool) -> Serve {
        let mut list = args(&[
            "--node",
            &(i + 1).to_string(),
            "--cluster",
            &CLUSTER.to_string(),
            "--nodes",
            &self.peer_list,
            "--dir",
            &self.dirs[i].display().to_string(),
            "--shards",
            "2",
            "--groups",
            &FULL_DISK_GROUPS.to_string(),
            "--test-timeouts",
            "--checkpoint-instances",
            "0",
            "--checkpoint-bytes",
            "0",
            "--checkpoint-interval-s",
            "0",
            "--control",
            "--client",
            &self.addresses[i],
            "--client-nodes",
            &self.client_list,
        ]);
        if new {
            list.push("--new".to_string());
        }
        serve(&(i + 1).to_string(), &list).ready(READY_WITHIN)
    }
}

/// One acknowledged proposal: who proposed it (a client thread or a prober, each
/// waiting for one acknowledgement before its next proposal), where it was chosen,
/// and the value.
struct Acked {
    source: u32,
    group: GroupId,
    position: Position,
    value: Bytes,
}

/// Every acknowledgement the full-disk test's clients received, in the order each
/// source received its own.
type Ledger = Arc<Mutex<Vec<Acked>>>;

fn record(ledger: &Ledger, acked: Acked) {
    ledger.lock().expect("ledger lock").push(acked);
}

fn acked_count(ledger: &Ledger) -> usize {
    ledger.lock().expect("ledger lock").len()
}

/// `LOAD_THREADS` client threads proposing 16 KiB values round robin over the groups,
/// at most `count_max` each. Every value is unique (its phase, thread and count in its
/// first bytes) and proposed once: a failure is not retried (its outcome may be
/// unknown; reading the log shows whether it was chosen). Every acknowledgement goes
/// to the ledger.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(client: &Client, phase: u8, count_max: u32, ledger: &Ledger) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..LOAD_THREADS)
            .map(|t| {
                let (client, stop, ledger) =
                    (client.clone(), Arc::clone(&stop), Arc::clone(ledger));
                std::thread::spawn(move || {
                    for i in 1..=count_max {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let mut value = vec![t; 16 << 10];
                        value[..4].copy_from_slice(&i.to_le_bytes());
                        value[4] = phase;
                        let (group, value) = (GroupId(i % FULL_DISK_GROUPS), Bytes::from(value));
                        match client.propose_blocking(group, value.clone()) {
                            Ok(proposed) => record(
                                &ledger,
                                Acked {
                                    source: u32::from(phase) << 8 | u32::from(t),
                                    group,
                                    position: proposed.position,
                                    value,
                                },
                            ),
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Asks the threads to stop after the proposal each has in flight.
    fn halt(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stops the threads and waits (bounded) for them.
    fn join(self) {
        self.halt();
        for thread in self.threads {
            within(Duration::from_secs(30), "a client thread", move || {
                thread.join().expect("client thread");
            });
        }
    }
}

/// Waits (bounded) until the ledger holds at least `count` acknowledgements.
fn wait_acked(ledger: &Ledger, count: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked_count(ledger) < count {
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {count} acknowledgements",
            acked_count(ledger)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) until nodes 1 and 2 (started first) lead every group between them;
/// returns the groups node 1 leads.
fn led_by_node_1(first: &mut Serve, second: &mut Serve) -> BTreeSet<u32> {
    let leads = |groups: &BTreeMap<u32, GroupLine>| -> BTreeSet<u32> {
        groups
            .iter()
            .filter(|(_, line)| line.role == "Leader")
            .map(|(g, _)| *g)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ones, twos) = (leads(&first.status()), leads(&second.status()));
        if ones.len() + twos.len() == FULL_DISK_GROUPS as usize {
            return ones;
        }
        assert!(Instant::now() < deadline, "no leader in every group");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks how node 1 ended on its full disk: exit status 3 and one line on stderr
/// naming the shard, the WAL operation, the file (inside `dir`, so that an operator
/// knows which disk) and the OS's reason.
fn check_full_disk_exit(node: &Serve, status: std::process::ExitStatus, dir: &Path) {
    let log = node.final_log();
    println!("node 1 exited with {status}: {log:?}");
    assert_eq!(status.code(), Some(EXIT_SHARD_STOPPED), "{log:?}");
    let reason = log
        .iter()
        .find(|l| l.starts_with("synod: node 1 shard "))
        .unwrap_or_else(|| panic!("no reason on stderr: {log:?}"));
    assert!(
        // A full filesystem shows as ENOSPC, or as a short O_DIRECT write just before
        // (which says the filesystem is probably full).
        reason.contains("stopped: WAL")
            && reason.contains(&format!(" {}/", dir.display()))
            && (reason.contains("No space left on device")
                || reason.contains("(the filesystem is probably full)"))
            && reason.ends_with("; exiting"),
        "{reason}"
    );
}

/// Proposes to each group of `groups` until acknowledged (a fresh value per attempt:
/// an attempt with an unknown outcome may still be chosen), one thread per group,
/// each bounded by `limit`; returns, per group, how long after `since` its first
/// acknowledgement came. `tag` and `source` name the values and their ledger source.
fn probe(
    client: &Client,
    groups: &BTreeSet<u32>,
    (tag, source): (&str, u32),
    since: Instant,
    limit: Duration,
    ledger: &Ledger,
) -> Vec<(GroupId, Duration)> {
    let probes: Vec<_> = groups
        .iter()
        .map(|group| {
            let (client, group, ledger) = (client.clone(), GroupId(*group), Arc::clone(ledger));
            let tag = tag.to_string();
            std::thread::spawn(move || {
                let deadline = Instant::now() + limit;
                for attempt in 0.. {
                    let value = Bytes::from(format!("{tag}-{}-{attempt}", group.0));
                    if let Ok(proposed) = client.propose_blocking(group, value.clone()) {
                        let position = proposed.position;
                        let (source, acked) = (source + group.0, since.elapsed());
                        let acked_entry = Acked {
                            source,
                            group,
                            position,
                            value,
                        };
                        record(&ledger, acked_entry);
                        return (group, acked);
                    }
                    assert!(Instant::now() < deadline, "group {}: no ack", group.0);
                    std::thread::sleep(Duration::from_millis(5));
                }
                unreachable!("the loop returns or fails")
            })
        })
        .collect();
    probes
        .into_iter()
        .map(|p| p.join().expect("probe"))
        .collect()
}

/// Waits (bounded) until node 1 has applied in every group what node 2 has, with the
/// same running checksum; returns how long that took.
fn caught_up(first: &mut Serve, second: &mut Serve) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    loop {
        let watermarks = |node: &mut Serve| -> BTreeMap<u32, (u64, u32)> {
            node.status()
                .into_iter()
                .map(|(g, line)| (g, (line.applied_through, line.checksum)))
                .collect()
        };
        let (ones, twos) = (watermarks(first), watermarks(second));
        if ones == twos && ones.len() == FULL_DISK_GROUPS as usize {
            return started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "node 1 did not catch up: applied and checksum per group {ones:?}, node 2 {twos:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `group`'s whole chosen log on `node` (that node's own copy, never another's), read
/// through the client 1 MiB at a time from instance 1.
fn chosen_log(client: &Client, node: NodeId, group: GroupId) -> Vec<LogEntry> {
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut next = Position::START;
    loop {
        let read = client
            .read_log_blocking(Some(node), group, next, 1 << 20)
            .unwrap_or_else(|e| panic!("node {} group {}: read from {next}: {e}", node.0, group.0));
        assert!(
            read.entries
                .iter()
                .all(|e| e.position >= next && e.position < read.next),
            "node {} group {}: a read from {next} out of its range",
            node.0,
            group.0
        );
        entries.extend(read.entries);
        if read.next.instance > read.chosen_through {
            return entries;
        }
        assert!(
            read.next > next,
            "node {} group {}: no progress at {next}",
            node.0,
            group.0
        );
        next = read.next;
    }
}

/// Every group's chosen log, read on node 1 and on node 2 until both hold the same
/// (bounded: a follower learns the last instance chosen from the next message).
fn agreed_logs(client: &Client) -> BTreeMap<GroupId, Vec<LogEntry>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    (0..FULL_DISK_GROUPS)
        .map(GroupId)
        .map(|group| loop {
            let ones = chosen_log(client, NodeId(1), group);
            let twos = chosen_log(client, NodeId(2), group);
            if ones == twos {
                return (group, ones);
            }
            let differ = ones.iter().zip(&twos).position(|(a, b)| a != b);
            assert!(
                Instant::now() < deadline,
                "group {}: node 1 holds {} values, node 2 {}, first different at index {differ:?}",
                group.0,
                ones.len(),
                twos.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        })
        .collect()
}

/// Checks that every acknowledged value lies in `logs` at the position its proposal
/// returned, chosen once, and that each source's acknowledgements in a group lie in
/// the order they came (each was proposed after the previous one's acknowledgement);
/// prints the counts per group.
fn check_nothing_lost(logs: &BTreeMap<GroupId, Vec<LogEntry>>, ledger: &[Acked]) {
    for (group, log) in logs {
        let at: BTreeMap<Position, &Bytes> = log.iter().map(|e| (e.position, &e.value)).collect();
        let mut times: BTreeMap<&[u8], usize> = BTreeMap::new();
        for entry in log {
            *times.entry(&entry.value[..]).or_default() += 1;
        }
        let mut last: BTreeMap<u32, Position> = BTreeMap::new();
        let acked: Vec<&Acked> = ledger.iter().filter(|a| a.group == *group).collect();
        for a in &acked {
            assert!(
                at.get(&a.position) == Some(&&a.value),
                "group {}: the value acknowledged at {} (source {}) is not there",
                group.0,
                a.position,
                a.source
            );
            assert_eq!(
                times.get(&a.value[..]),
                Some(&1),
                "group {}: the value at {} chosen more than once",
                group.0,
                a.position
            );
            if let Some(before) = last.insert(a.source, a.position) {
                assert!(
                    before < a.position,
                    "group {}: source {} acknowledged {} after {before}",
                    group.0,
                    a.source,
                    a.position
                );
            }
        }
        println!(
            "group {}: {} values chosen, {} of them acknowledged, every one in place",
            group.0,
            log.len(),
            acked.len()
        );
    }
}

// Goal: a node whose disk fills up under load exits within moments, non-zero, with the
// shard, the file and the reason on stderr (no zombie), and a client proposing to the
// groups it led gets acknowledgements from the other nodes within 3 election timeouts
// of its exit: a follower's wait is drawn from [t, 2t) after the last message it had,
// then one prepare round, one accept round and the client's redirects (once 2t alone
// was the bound, and a loaded machine took 702 ms against 600 ms). Once space returns,
// the node restarts on the same directory, catches up and serves again, and nothing
// acknowledged is lost.
// Method: three `synod serve --client` processes, 2 shards x 8 groups each, checkpoints
// off; node 1's data directory is a tmpfs with room for its initial segments plus half
// a segment, so its first segment roll fails with ENOSPC (the others' are roomy tmpfs,
// so that fdatasync stalls of a shared disk do not enter the measurement). Nodes 1 and
// 2 start first so that node 1 leads about half the groups; 4 client threads propose
// 16 KiB values until node 1 exits; then one prober per group node 1 led proposes until
// acknowledged. Then the client threads load again; node 1's tmpfs grows in place
// (`remount,size=`: the space its own WAL filled is freed the way an operator would);
// node 1 restarts without `--new` or `--existing` while the load goes on; once the
// load stops it must apply what node 2 has (same checksums); node 3 stops, so that
// each of 8 proposals (a client whose one address is node 1's) needs node 1's durable
// vote. Every group's log read on node 1 and node 2 through the client must agree and
// hold every acknowledged value (before and after the exit) at its position, once.
#[test]
fn full_disk_stops_the_node_the_others_take_over_and_it_resumes_once_space_returns() {
    let _alone = one_cluster_at_a_time();
    let root = TempDir::new("full-disk");
    let dirs: Vec<PathBuf> = (1..=3).map(|i| root.path().join(format!("n{i}"))).collect();
    for dir in &dirs {
        std::fs::create_dir_all(dir).expect("create dir");
    }
    // 2 shards x 3 segments of 8 MiB (`--test-timeouts`) = 48 MiB at start.
    let Some(full) = Mount::tmpfs_or_skip(&dirs[0], "52m", "full_disk") else {
        return;
    };
    // The survivors' WALs on roomy tmpfs too: the fdatasync stalls of a disk shared
    // with other work would otherwise enter the measured failover.
    let _roomy: Vec<Mount> = dirs[1..]
        .iter()
        .map(|dir| Mount::tmpfs(dir, "256m").expect("a second tmpfs mounts like the first"))
        .collect();
    let nodes = FullDiskNodes::new(dirs);
    let mut first = nodes.spawn(0, true);
    let mut second = nodes.spawn(1, true);
    let led_by_first = led_by_node_1(&mut first, &mut second);
    println!("node 1 leads groups {led_by_first:?}");
    assert!(
        !led_by_first.is_empty(),
        "node 1 leads no group: nothing to take over"
    );
    let third = nodes.spawn(2, true);

    let client = Client::connect(&nodes.addresses, CLUSTER).expect("connect");
    let ledger: Ledger = Arc::default();
    let load = Load::start(&client, 1, u32::MAX, &ledger);
    let status = first.exit(Duration::from_secs(120));
    let exited = Instant::now();
    load.halt();
    println!(
        "{} values acknowledged before node 1's exit",
        acked_count(&ledger)
    );
    check_full_disk_exit(&first, status, &nodes.dirs[0]);
    drop(first);
    // Probes through the client, which knows all three nodes and follows hints.
    let taken_over = probe(
        &client,
        &led_by_first,
        ("after", 1 << 16),
        exited,
        Duration::from_secs(30),
        &ledger,
    );
    println!("acknowledged again after node 1's exit: {taken_over:?}");
    for (group, after) in &taken_over {
        assert!(
            *after <= 3 * ELECTION_TIMEOUT,
            "group {}: first acknowledgement {after:?} after node 1 exited",
            group.0
        );
    }
    load.join();
    let (first, second) = resume(&nodes, &full, &client, &ledger, second, third);
    let logs = within(Duration::from_secs(120), "reading the logs", {
        let client = client.clone();
        move || agreed_logs(&client)
    });
    let ledger = std::mem::take(&mut *ledger.lock().expect("ledger lock"));
    println!("{} values acknowledged in all", ledger.len());
    check_nothing_lost(&logs, &ledger);
    first.stop();
    second.stop();
}

/// The second half of the full-disk test: with node 1 down, load again; grow node 1's
/// filesystem; restart node 1 while the load goes on; stop the load and wait for node 1
/// to catch up; stop node 3 and have a proposal acknowledged in every group through a
/// client that knows node 1 alone (node 1's vote is in every quorum). Returns nodes 1
/// and 2, running.
fn resume(
    nodes: &FullDiskNodes,
    full: &Mount,
    client: &Client,
    ledger: &Ledger,
    mut second: Serve,
    third: Serve,
) -> (Serve, Serve) {
    let before = acked_count(ledger);
    let load = Load::start(client, 2, 400, ledger);
    wait_acked(ledger, before + 64, "load while node 1 is down");
    full.resize("256m");
    let restarted = Instant::now();
    let mut first = nodes.spawn(0, false);
    println!("node 1 ready {:?} after its restart", restarted.elapsed());
    let at_ready = acked_count(ledger);
    wait_acked(ledger, at_ready + 64, "load while node 1 catches up");
    load.join();
    println!(
        "{} values acknowledged with node 1 down, {} after its restart",
        at_ready - before,
        acked_count(ledger) - at_ready
    );
    let took = caught_up(&mut first, &mut second);
    println!("node 1 caught up {took:?} after the load stopped");
    third.stop();
    let through_first = Client::connect(&nodes.addresses[..1], CLUSTER).expect("connect to node 1");
    let all: BTreeSet<u32> = (0..FULL_DISK_GROUPS).collect();
    let stopped = Instant::now();
    let served = probe(
        &through_first,
        &all,
        ("resumed", 2 << 16),
        stopped,
        Duration::from_secs(30),
        ledger,
    );
    println!("with node 3 stopped, acknowledged through node 1: {served:?}");
    (first, second)
}

// Goal: a data directory on a read-only filesystem is refused at start, naming the
// directory and the cause, instead of printing `ready` and failing at the first write.
// Method: a tmpfs; start and stop a node on it; remount it read-only; start again.
#[test]
fn read_only_data_dir_is_refused() {
    let root = TempDir::new("read-only");
    let dir = root.path().join("n1");
    std::fs::create_dir_all(&dir).expect("create dir");
    let Some(mount) = Mount::tmpfs_or_skip(&dir, "32m", "read_only") else {
        return;
    };
    let peers = node_list(&[free_ports(1), free_ports(1), free_ports(1)]);
    let dir_text = dir.display().to_string();
    let start = |extra: &[&str]| {
        let mut list = args(&["--node", "1", "--nodes", &peers, "--dir", &dir_text]);
        list.extend(args(&["--test-timeouts", "--control"]));
        list.extend(args(extra));
        list
    };
    serve("1", &start(&["--new"])).ready(READY_WITHIN).stop();
    mount.remount_read_only();
    let error = refused(&start(&[]));
    assert!(
        error.contains(&format!("data directory {dir_text} is not writable"))
            && error.contains("Read-only file system"),
        "{error}"
    );
}

// Goal: the embedding API refuses a read-only data directory with a typed error: the
// probe's call and file, the `io::ErrorKind` and the errno, not only a sentence.
// Method: a tmpfs; `Node::start` and shut down on it; remount it read-only; start again.
#[test]
fn read_only_data_dir_is_refused_typed() {
    let root = TempDir::new("read-only-typed");
    let dir = root.path().join("n1");
    std::fs::create_dir_all(&dir).expect("create dir");
    let Some(mount) = Mount::tmpfs_or_skip(&dir, "32m", "read_only_typed") else {
        return;
    };
    let nodes: BTreeMap<NodeId, std::net::SocketAddr> = (1..=3)
        .map(|i| (NodeId(i), ([127, 0, 0, 1], free_ports(1)).into()))
        .collect();
    let config = || {
        let mut config = Config::new(NodeId(1), CLUSTER, nodes.clone(), dir.clone());
        config.cores = Vec::new();
        config.shards = 1;
        // Two 8 MiB segments (the open one and a spare) fit the 32 MiB tmpfs.
        config.segment_size = 8 << 20;
        config.spare_segments = 1;
        config
    };
    let node = Node::start(config(), synod::runtime::driver::null_factory()).expect("starts");
    assert_eq!(node.shutdown(), Vec::new());
    mount.remount_read_only();
    match Node::start(config(), synod::runtime::driver::null_factory()) {
        Err(StartError::Shard {
            shard: 0,
            reason:
                ShardStartError::NotWritable {
                    dir: refused,
                    error,
                },
        }) => {
            assert_eq!(refused, dir);
            assert_eq!(error.call, "probe", "{error}");
            assert_eq!(error.path, Some(dir.join("shard-000.probe")), "{error}");
            assert_eq!(
                error.kind,
                std::io::ErrorKind::ReadOnlyFilesystem,
                "{error}"
            );
            assert_eq!(error.errno, Some(30), "EROFS: {error}");
        }
        Err(other) => panic!("expected a typed probe failure, got {other:?}: {other}"),
        Ok(_) => panic!("a read-only data directory was accepted"),
    }
}

// Goal: `synod serve --config FILE` refuses a faulty file at start (exit status 1, one
// line naming the file, the line where the parser locates the fault, and the key): an
// unknown key, a value of the wrong type, a missing required key; a valid one starts.
// Method: small files around a valid base (one node of three, no peer running).
#[test]
fn config_file_faults_are_refused_naming_the_key() {
    let root = TempDir::new("config-file");
    let dir = root.path().join("n1").display().to_string();
    let ports = [free_ports(1), free_ports(1), free_ports(1)];
    let nodes = (0..3)
        .map(|i| format!("{} = \"127.0.0.1:{}\"", i + 1, ports[i]))
        .collect::<Vec<_>>()
        .join(", ");
    let base = format!(
        "[node]\nid = 1\ndir = \"{dir}\"\ninitial_state = \"new\"\n[cluster]\nnodes = {{ {nodes} }}\n"
    );
    let write = |name: &str, text: &str| {
        let path = root.path().join(name);
        std::fs::write(&path, text).expect("write the file");
        path.display().to_string()
    };
    let cases = [
        (
            "unknown.toml",
            format!("{base}[group]\nwindw_instances_max = 8\n"),
            vec![
                ":8: [group] windw_instances_max = 8",
                "unknown field `windw_instances_max`",
            ],
        ),
        (
            "type.toml",
            format!("{base}[group]\nelection_timeout_ms = \"1s\"\n"),
            vec![":8: [group] election_timeout_ms", "invalid type"],
        ),
        (
            "missing.toml",
            base.replace("id = 1\n", ""),
            vec!["node.id is missing", "--node"],
        ),
    ];
    for (name, text, expected) in &cases {
        let path = write(name, text);
        let error = refused(&args(&["--config", &path]));
        assert!(error.contains(&path), "{error}");
        for part in expected {
            assert!(error.contains(part), "{name}: expected {part:?} in {error}");
        }
    }
    let path = write("valid.toml", &base);
    serve("1", &args(&["--config", &path, "--control"]))
        .ready(READY_WITHIN)
        .stop();
}

// Goal: an empty data directory is refused unless `--new` or `--existing` says what
// it means; the error names the directory and both flags; both flags together are
// refused too.
// Method: `synod serve` on a fresh directory without either flag, with both, then
// with each alone (it starts), and again without (the directory is claimed now).
#[test]
fn empty_data_dir_needs_new_or_existing() {
    let root = TempDir::new("empty");
    let dir = root.path().join("n1").display().to_string();
    let peers = node_list(&[free_ports(1), free_ports(1), free_ports(1)]);
    let base = args(&["--node", "1", "--nodes", &peers, "--dir", &dir, "--control"]);
    let error = refused(&base);
    assert!(
        error.contains(&format!("--dir {dir} holds no node's data"))
            && error.contains("--new")
            && error.contains("--existing"),
        "{error}"
    );
    let mut both = base.clone();
    both.extend(args(&["--new", "--existing"]));
    // A bad command line: clap's one-line error and status 2, before any start.
    let mut node = serve("1", &both);
    let status = node.exit(Duration::from_secs(30));
    let log = node.final_log();
    assert_eq!(status.code(), Some(2), "{log:?}");
    assert!(
        log.iter()
            .any(|l| l.contains("'--new' cannot be used with '--existing'")),
        "{log:?}"
    );
    // Either flag alone starts the node; the claimed directory then needs neither.
    for flag in ["--existing", "--new"] {
        let _ = std::fs::remove_dir_all(&dir);
        let mut one = base.clone();
        one.push(flag.to_string());
        serve("1", &one).ready(READY_WITHIN).stop();
        serve("1", &base).ready(READY_WITHIN).stop();
    }
}

// Goal: two nodes on one IP whose shard port ranges overlap are refused at start,
// naming both nodes and both ranges.
// Method: 2 shards; node 2's base port is node 1's + 1.
#[test]
fn overlapping_shard_ports_are_refused() {
    let root = TempDir::new("overlap");
    let dir = root.path().join("n1").display().to_string();
    let base = free_ports(4);
    let (one, two, three) = (base, base + 1, base + 3);
    let peers = node_list(&[one, two, three]);
    let error = refused(&args(&[
        "--node", "1", "--nodes", &peers, "--dir", &dir, "--new", "--shards", "2",
    ]));
    assert!(
        error.contains(&format!(
            "node 1 at 127.0.0.1:{one} (shard ports {one}..{})",
            one + 2
        )) && error.contains(&format!(
            "node 2 at 127.0.0.1:{two} (shard ports {two}..{})",
            two + 2
        )),
        "{error}"
    );
}

// Goal: a client listener address inside a node's shard port range is refused,
// naming the address and the node's range.
// Method: 2 shards; `--client` on node 3's base port + 1.
#[test]
fn client_port_inside_shard_ports_is_refused() {
    let root = TempDir::new("client-port");
    let dir = root.path().join("n1").display().to_string();
    let ports = [free_ports(2), free_ports(2), free_ports(2)];
    let peers = node_list(&ports);
    let client = format!("127.0.0.1:{}", ports[2] + 1);
    let error = refused(&args(&[
        "--node", "1", "--nodes", &peers, "--dir", &dir, "--new", "--shards", "2", "--client",
        &client,
    ]));
    assert!(
        error.contains(&format!(
            "client address {client} (--client, client.address) is inside node 3's shard \
             ports 127.0.0.1:{}..{}",
            ports[2],
            ports[2] + 2
        )),
        "{error}"
    );
}

// Goal: SIGTERM (a supervisor's stop) and SIGINT end `synod serve` gracefully: the
// node shuts down, the process prints `stopped` and exits 0 (not killed by the
// signal), and what was acknowledged is there after a restart.
// Method: one node without `--control`, clients on; 20 values acknowledged; SIGTERM;
// the exit status; restarted with `--existing`, the log read back through the client;
// SIGINT; the exit status again.
#[test]
fn sigterm_and_sigint_stop_the_node_gracefully() {
    let _one = one_cluster_at_a_time();
    let dir = TempDir::new("sigterm");
    let (peer, client) = (free_ports(1), free_ports(1));
    let address = format!("127.0.0.1:{client}");
    let start = |state: &str| {
        serve(
            "sigterm",
            &args(&[
                "--node",
                "1",
                "--nodes",
                &format!("1=127.0.0.1:{peer}"),
                "--dir",
                &dir.path().display().to_string(),
                state,
                "--test-timeouts",
                "--state-machine",
                "null",
                "--client",
                &address,
            ]),
        )
        .ready(READY_WITHIN)
    };
    let mut node = start("--new");
    let client = Client::connect(&[address.as_str()], 1).expect("connect");
    // Until the node has elected itself, a proposal is refused (`NotLeader`: nothing
    // was proposed, so asking again cannot write twice).
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.propose_blocking(GroupId(0), &b"first"[..]).is_err() {
        assert!(Instant::now() < deadline, "the node never led group 0");
        std::thread::sleep(Duration::from_millis(20));
    }
    let values: Vec<String> = (0..20).map(|i| format!("before-sigterm-{i}")).collect();
    for value in &values {
        within(Duration::from_secs(20), "a proposal", {
            let (client, value) = (client.clone(), value.clone());
            move || client.propose_blocking(GroupId(0), value.into_bytes())
        })
        .expect("acknowledged");
    }
    node.signal("TERM");
    let status = node.exit(Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM: {status}: {:?}",
        node.final_log()
    );
    assert!(
        node.lines.try_iter().any(|l| l == "stopped"),
        "prints stopped"
    );

    let mut node = start("--existing");
    let client = Client::connect(&[address.as_str()], 1).expect("connect");
    let read = within(Duration::from_secs(20), "the log read", move || {
        client.read_log_blocking(None, GroupId(0), synod::api::Position::START, 1 << 20)
    })
    .expect("read the log");
    let got: Vec<String> = read
        .entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.value).into_owned())
        .collect();
    assert_eq!(got.first().map(String::as_str), Some("first"));
    assert_eq!(
        got[1..],
        values[..],
        "every acknowledged value after the restart, in order"
    );
    node.signal("INT");
    let status = node.exit(Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(0),
        "SIGINT: {status}: {:?}",
        node.final_log()
    );
}
