//! The built-in key-value store end to end, and the failover an operator expects:
//! three `synod serve` processes (the store is their default state machine) on
//! loopback, each started from a configuration file as a deployed node is, written
//! and read through the `synod put|get|del|cas|scan|status` command line and through
//! `synod::client` with exactly-once sessions, across a SIGKILL of a leader (the
//! cluster keeps taking writes; every acknowledged one is read back) and the restart
//! of that node from its checkpoint.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::TempDir;
use common::serve::{synod, ClientKey, Serve, ThreeNodes};
use synod::client::{Client, ClientConfig, Error, ServerError};
use synod::kv::{group_of, Answer, Command, Query, Session, WriteOp};
use synod::paxos::{GroupId, NodeId, Role};

const CLUSTER: u64 = 0x4B56;
const GROUPS: u32 = 3;
/// Increments of the counter; the leader of its group is killed at `KILL_AT`.
const INCREMENTS: u64 = 80;
const KILL_AT: u64 = 40;

/// Node `id`'s arguments: `--config FILE` (written into `configs`: everything a
/// deployed node's file holds: identity, peers, groups, a checkpoint every 16
/// instances so that the restart installs a key-value image, both keys, the client
/// listener and every node's client address), with `--test-timeouts --control` over
/// it.
fn node_args(id: u32, nodes: &ThreeNodes, key: &ClientKey, configs: &TempDir) -> Vec<String> {
    let table = |list: &str| {
        let items: Vec<String> = list
            .split(',')
            .map(|item| {
                let (node, address) = item.split_once('=').expect("ID=ADDRESS");
                format!("{node} = \"{address}\"")
            })
            .collect();
        format!("{{ {} }}", items.join(", "))
    };
    let index = id as usize - 1;
    let text = format!(
        "[node]\nid = {id}\ndir = \"{dir}\"\ninitial_state = \"new\"\n\
         [cluster]\nid = {CLUSTER}\nnodes = {peers}\ngroups = {GROUPS}\n\
         [checkpoint]\ninstances = 16\n\
         [auth]\npeer_key_file = \"{peer_key}\"\nclient_key_file = \"{client_key}\"\n\
         [client]\naddress = \"{address}\"\nnodes = {clients}\n",
        dir = nodes.dirs[index].path().display(),
        peers = table(&nodes.peers),
        peer_key = key.peer_path.display(),
        client_key = key.path.display(),
        address = nodes.addresses[index],
        clients = table(&nodes.clients),
    );
    let path = configs.path().join(format!("node-{id}.toml"));
    std::fs::write(&path, text).expect("write the configuration file");
    [
        "--config",
        &path.display().to_string(),
        "--test-timeouts",
        "--control",
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

/// The command line's flags that reach the cluster.
struct Cli {
    target: String,
    key_file: String,
}

impl Cli {
    /// Runs `synod <command> <flags> <args>`; returns the exit status, stdout and
    /// stderr.
    fn run(&self, command: &str, args: &[&str]) -> (i32, String, String) {
        let mut all = vec![
            command,
            "--target",
            &self.target,
            "--client-key-file",
            &self.key_file,
            "--timeout-s",
            "30",
        ];
        let cluster = CLUSTER.to_string();
        all.extend(["--cluster", &cluster]);
        all.extend(args);
        let output = synod(&all);
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Runs a command that must exit 0; returns stdout.
    fn ok(&self, command: &str, args: &[&str]) -> String {
        let (code, out, err) = self.run(command, args);
        assert_eq!(code, 0, "synod {command} {args:?}: {err}");
        out
    }
}

/// The leader of `group` as the nodes report it (the first that answers says).
fn leader_of(client: &Client, group: GroupId) -> Option<NodeId> {
    client.nodes().into_iter().find_map(|node| {
        let status = client.node_status_blocking(node).ok()?;
        status
            .shards
            .iter()
            .flat_map(|s| &s.groups)
            .any(|g| g.group == group && g.role == Role::Leader)
            .then_some(node)
    })
}

/// Proposes `command` until it is applied, sending the SAME bytes after every
/// failure (the retry of an exactly-once session command); returns the answer and
/// how many attempts had an unknown outcome.
fn propose_until_applied(client: &Client, group: GroupId, command: &Bytes) -> (Answer, u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut unknown = 0;
    loop {
        match client.propose_blocking(group, command.clone()) {
            Ok(proposed) => {
                let answer = Answer::decode(&proposed.output).expect("a key-value answer");
                return (answer, unknown);
            }
            Err(error) => {
                assert!(Instant::now() < deadline, "group {}: {error}", group.0);
                let permanent = matches!(
                    error,
                    Error::Server(ServerError::TooLarge { .. } | ServerError::NoSuchGroup { .. })
                );
                assert!(!permanent, "{error}");
                if !error.is_retryable() {
                    unknown += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A linearizable get through the client, retried until a leader serves it.
fn get(client: &Client, key: &str) -> Option<Bytes> {
    let key = Bytes::copy_from_slice(key.as_bytes());
    let group = group_of(&key, GROUPS);
    let query = Query::Get { key }.encode();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.read_blocking(group, query.clone()) {
            Ok(output) => match Answer::decode(&output).expect("a key-value answer") {
                Answer::Value(value) => return value,
                other => panic!("get answered {other:?}"),
            },
            Err(error) => {
                assert!(Instant::now() < deadline, "get: {error}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn increment(session: u64, from: u64) -> Bytes {
    Command::Write {
        session: Session {
            id: session,
            sequence: from + 1,
        },
        op: WriteOp::Cas {
            key: Bytes::from_static(b"counter"),
            expected: (from > 0).then(|| Bytes::from(from.to_string())),
            new: Some(Bytes::from((from + 1).to_string())),
        },
    }
    .encode()
}

// Goal: the store serves writes and reads through the CLI and the client; a session
// command retried after its outcome was lost (an explicit duplicate, and the
// retries of a SIGKILLed leader's in-flight increments) is applied exactly once;
// every acknowledged write is readable after the kill; the CLI's exit statuses say
// not found, mismatch and success; status shows the dead node; the killed node
// restarts from a key-value checkpoint image.
// Method: three serve processes, each from its configuration file (3 groups,
// checkpoints every 16 instances, keys, client listener; `--test-timeouts
// --control` over it); CLI puts
// k0..k9; a client opens a session in the counter's group and increments it by
// compare-and-set INCREMENTS times (each CAS expects the previous value, so a second
// application would answer Mismatch), sending its first increment twice; a thread
// SIGKILLs the counter group's leader when the counter reaches KILL_AT; CLI puts
// k10..k19; then everything is read back by CLI get, scan and the client.
#[allow(
    clippy::too_many_lines,
    reason = "one test so that the cluster starts once (see Method); each step is short"
)]
#[test]
fn kv_store_through_cli_and_client_survives_leader_kill() {
    let three = ThreeNodes::new("kv-cli");
    let key = ClientKey::new("kv-cli");
    let configs = TempDir::new("kv-cli-configs");
    let args: Vec<Vec<String>> = (1..=3)
        .map(|id| node_args(id, &three, &key, &configs))
        .collect();
    let addresses = three.addresses.clone();
    let mut nodes: BTreeMap<NodeId, Serve> = (0..3)
        .map(|i| {
            (
                NodeId(i as u32 + 1),
                Serve::spawn(&(i + 1).to_string(), &args[i]),
            )
        })
        .collect();
    let cli = Cli {
        target: addresses.join(","),
        key_file: key.path.display().to_string(),
    };

    // Writes and reads through the command line before any fault.
    for k in 0..10 {
        cli.ok("put", &[&format!("k{k}"), &format!("v{k}")]);
    }
    assert_eq!(cli.ok("get", &["k3"]), "v3\n");
    let (code, _, err) = cli.run("get", &["missing"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not found"), "{err}");
    let (code, _, err) = cli.run("cas", &["k1", "--expected", "nope", "--new", "x"]);
    assert_eq!(code, 3, "{err}");
    cli.ok("cas", &["k1", "--expected", "v1", "--new", "v1b"]);
    cli.ok("put", &["gone", "soon"]);
    cli.ok("del", &["gone"]);
    let (code, _, _) = cli.run("del", &["gone"]);
    assert_eq!(code, 1);

    // Exactly-once increments through the client, with a short request timeout so
    // that a dead leader costs little.
    let config = ClientConfig {
        request_timeout: Duration::from_secs(2),
        ..key.config()
    };
    let client = Client::connect_with(&addresses, CLUSTER, config).expect("connect");
    let group = group_of(b"counter", GROUPS);
    let (opened, _) = propose_until_applied(&client, group, &Command::OpenSession.encode());
    let Answer::Session { id: session } = opened else {
        panic!("open session answered {opened:?}")
    };
    let first = increment(session, 0);
    assert_eq!(
        propose_until_applied(&client, group, &first).0,
        Answer::Swapped
    );
    // The same command again (a retry whose first answer was lost): the stored answer,
    // and no second effect.
    assert_eq!(
        propose_until_applied(&client, group, &first).0,
        Answer::Swapped
    );
    assert_eq!(get(&client, "counter"), Some(Bytes::from("1")));

    let leader = leader_of(&client, group).expect("the counter's group has a leader");
    let victim = nodes
        .remove(&leader)
        .expect("the leader is one of the nodes");
    let progress = Arc::new(AtomicU64::new(1));
    let killer = {
        let progress = Arc::clone(&progress);
        std::thread::spawn(move || {
            while progress.load(Ordering::Relaxed) < KILL_AT {
                std::thread::sleep(Duration::from_millis(1));
            }
            victim.kill();
        })
    };
    let mut unknown_outcomes = 0;
    for from in 1..INCREMENTS {
        let (answer, unknown) = propose_until_applied(&client, group, &increment(session, from));
        assert_eq!(
            answer,
            Answer::Swapped,
            "increment {from} -> {} was applied twice or lost ({unknown} unknown outcomes)",
            from + 1
        );
        unknown_outcomes += unknown;
        progress.store(from + 1, Ordering::Relaxed);
    }
    killer.join().expect("the killer thread");
    eprintln!("kv_cli: {unknown_outcomes} increments retried after an unknown outcome");
    assert_eq!(
        get(&client, "counter"),
        Some(Bytes::from(INCREMENTS.to_string()))
    );

    // The cluster keeps serving the command line with one node dead (still listed in
    // --target).
    for k in 10..20 {
        cli.ok("put", &[&format!("k{k}"), &format!("v{k}")]);
    }
    let status = cli.ok("status", &[]);
    assert!(
        status.contains(&format!("node {} ", leader.0)) && status.contains("unreachable"),
        "{status}"
    );
    assert!(status.contains("role Leader"), "{status}");
    // The cluster line, the live nodes' WAL watermarks, their links (the dead leader's
    // down), and each group's lag behind the highest chosen watermark reported.
    assert!(
        status.contains(&format!("cluster {CLUSTER}: 2 of 3 nodes answered")),
        "{status}"
    );
    assert!(status.contains("wal durable_lsn "), "{status}");
    assert!(
        status.contains(&format!("peer {}: out down", leader.0)),
        "{status}"
    );
    assert!(status.contains(" lag 0 "), "{status}");

    // Every acknowledged write is readable, through the CLI and the client.
    for k in 0..20 {
        let expected = if k == 1 {
            "v1b".to_string()
        } else {
            format!("v{k}")
        };
        assert_eq!(
            cli.ok("get", &[&format!("k{k}")]),
            format!("{expected}\n"),
            "k{k}"
        );
        assert_eq!(
            get(&client, &format!("k{k}")),
            Some(Bytes::from(expected)),
            "k{k}"
        );
    }
    assert_eq!(cli.ok("get", &["counter"]), format!("{INCREMENTS}\n"));
    let scan = cli.ok("scan", &["--start", "k", "--end", "l", "--limit", "1000"]);
    let keys: Vec<&str> = scan.lines().filter_map(|l| l.split('\t').next()).collect();
    let mut expected: Vec<String> = (0..20).map(|k| format!("k{k}")).collect();
    expected.sort();
    assert_eq!(keys, expected);
    let (code, page, err) = cli.run("scan", &["--limit", "5"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(page.lines().count(), 5);
    assert!(err.starts_with("next "), "{err}");

    // The killed node restarts from its key-value checkpoint image and catches up.
    let index = leader.0 as usize - 1;
    let restarted = Serve::spawn(&format!("{} again", leader.0), &args[index]);
    restarted.expect_log(&["restored from the checkpoint"]);
    let ignored: Vec<String> = restarted
        .log_lines()
        .into_iter()
        .filter(|line| line.contains("IGNORED"))
        .collect();
    assert!(ignored.is_empty(), "{ignored:?}");
    cli.ok("put", &["after", "restart"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let statuses: Vec<_> = client
            .nodes()
            .into_iter()
            .filter_map(|n| client.node_status_blocking(n).ok())
            .collect();
        let applied: Vec<_> = statuses
            .iter()
            .flat_map(|s| s.shards.iter().flat_map(|sh| &sh.groups))
            .filter(|g| g.group == group)
            .map(|g| (g.applied_through, g.checksum))
            .collect();
        if statuses.len() == 3 && applied.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(Instant::now() < deadline, "no convergence: {applied:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(client);
    restarted.stop();
    for node in nodes.into_values() {
        node.stop();
    }
}
