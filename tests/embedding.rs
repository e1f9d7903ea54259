//! The embedding API as a program uses it: a `NodeHandle` driven from a tokio runtime,
//! linearizable reads through the leader with the kv example's state machine, the
//! typed errors of every call, and `Node::start` refusing bad configurations and
//! another node's data directory.

mod common;

// The kv example's state machine and client, tested as people copy them.
#[expect(dead_code, reason = "the example's `main` and demo are not run here")]
#[path = "../examples/kv.rs"]
mod kv;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{
    free_ports, propose_anywhere, test_config, Cluster, Outcome, Shape, TempDir,
};
use futures_lite::future::block_on;
use kv::{Client, Command, KvStore, Output};
use synod::api::{Error, Node, NodeHandle, StartError, StateMachine};
use synod::paxos::{GroupId, Instance, NodeId};

// A handle is shared by tasks of any runtime: checked at compile time.
const _: fn() = || {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<NodeHandle>();
};

/// Proposes `value` to `group` from async code, following `NotLeader` hints and backing
/// off on errors that say nothing was proposed; `None` when the outcome is unknown.
async fn propose_following(
    handles: &BTreeMap<NodeId, NodeHandle>,
    group: GroupId,
    value: Bytes,
    deadline: Instant,
) -> Option<Instance> {
    let ids: Vec<NodeId> = handles.keys().copied().collect();
    let mut target = ids[group.0 as usize % ids.len()];
    let mut attempt = 0;
    while Instant::now() < deadline {
        match handles[&target].propose(group, value.clone()).await {
            Ok(proposed) => return Some(proposed.position.instance),
            Err(Error::NotLeader { hint: Some(hint) }) if hint != target => target = hint,
            Err(Error::NotLeader { .. } | Error::LeaseNotHeld | Error::Overloaded) => {
                attempt += 1;
                target = ids[attempt % ids.len()];
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(Error::Indeterminate | Error::Stopped | Error::Aborted) => return None,
            Err(error) => panic!("unexpected error: {error}"),
        }
    }
    None
}

fn kv_cluster(name: &str) -> Cluster {
    Cluster::with_machines(
        name,
        Shape {
            nodes: 3,
            shards: 1,
            groups: 1,
        },
        Box::new(|_, _| Arc::new(|_| Box::new(KvStore::default()))),
    )
}

// Goal: a NodeHandle works from a tokio multi-thread runtime: many concurrent tasks on
// several groups, every acknowledged value applied at its instance, identically on all
// nodes.
// Method: 3 nodes x 2 shards x 4 groups with recording state machines; 64 tokio tasks
// of 16 proposals each (group = task % 4) following hints; wait for equal watermarks
// and checksums, then compare the applied logs and look up every acknowledged value.
#[test]
fn tokio_tasks_propose_concurrently() {
    let mut cluster = Cluster::new(
        "tokio",
        Shape {
            nodes: 3,
            shards: 2,
            groups: 4,
        },
    );
    let handles = cluster.handles();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .expect("tokio runtime");
    let acked: BTreeMap<(GroupId, Bytes), Instance> = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        let tasks: Vec<_> = (0..64u32)
            .map(|task| {
                let handles = handles.clone();
                tokio::spawn(async move {
                    let group = GroupId(task % 4);
                    let mut acked = Vec::new();
                    for i in 0..16 {
                        let value = Bytes::from(format!("t{task}-{i}"));
                        if let Some(instance) =
                            propose_following(&handles, group, value.clone(), deadline).await
                        {
                            acked.push(((group, value), instance));
                        }
                    }
                    acked
                })
            })
            .collect();
        let mut acked = BTreeMap::new();
        for task in tasks {
            acked.extend(task.await.expect("task"));
        }
        acked
    });
    drop(runtime);
    assert!(
        acked.len() >= 64 * 16 * 9 / 10,
        "only {} acked",
        acked.len()
    );
    assert!(
        cluster.wait_converged(Duration::from_secs(20)),
        "no convergence"
    );

    let logs: Vec<_> = cluster
        .applied
        .values()
        .map(|applied| applied.lock().expect("lock").clone())
        .collect();
    assert_eq!(logs.len(), 3);
    assert!(logs.windows(2).all(|w| w[0] == w[1]), "applied logs differ");
    let applied: BTreeSet<(GroupId, Instance, Bytes)> = logs[0]
        .iter()
        .flat_map(|(g, log)| log.iter().map(|(i, v)| (*g, *i, v.clone())))
        .collect();
    for ((group, value), instance) in &acked {
        assert!(
            applied.contains(&(*group, *instance, value.clone())),
            "acknowledged {value:?} in group {} at instance {} is not applied",
            group.0,
            instance.0
        );
    }
    for (_, node) in std::mem::take(&mut cluster.nodes) {
        assert_eq!(node.shutdown(), Vec::new());
    }
}

// Goal: `read` on the leader reflects every acknowledged write (no stale read), and a
// follower refuses reads with `NotLeader` naming the leader.
// Method: the kv example's KvStore on 3 nodes; overwrite one key 40 times and after
// each acknowledgement read it back through the leader (the example's client, which
// follows hints); then ask each follower until both name the node that leads.
#[test]
fn reads_are_linearizable_and_only_on_the_leader() {
    let mut cluster = kv_cluster("reads");
    let mut client = Client::new(cluster.handles(), Duration::from_secs(10));
    for i in 0..40 {
        let value = i.to_string();
        let set = Command::Set {
            key: "x".into(),
            value: value.clone(),
        };
        let previous = (i > 0).then(|| (i - 1).to_string());
        assert_eq!(client.propose(&set), Ok(Output::Previous(previous)));
        assert_eq!(
            client.get("x"),
            Ok(Some(value)),
            "stale read after write {i}"
        );
    }
    assert_eq!(client.get("absent"), Ok(None));

    let group = kv::GROUP;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leader = cluster.leader(group);
        let answers: Vec<_> = cluster
            .nodes
            .iter()
            .filter(|(id, _)| Some(**id) != leader)
            .map(|(_, node)| block_on(node.handle().read(group, "x")))
            .collect();
        let expected = Err(Error::NotLeader { hint: leader });
        if leader.is_some() && answers.len() == 2 && answers.iter().all(|a| *a == expected) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leader {leader:?}, followers answered {answers:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for (_, node) in std::mem::take(&mut cluster.nodes) {
        assert_eq!(node.shutdown(), Vec::new());
    }
}

// Goal: the kv state machine's outputs and checkpoint hooks: cas says whether it
// swapped, a malformed command changes nothing, and a checkpoint restores the whole
// map (a truncated image is refused and leaves the state as it was); the deferred
// export holds the state of its moment while writes go on.
// Method: apply commands directly, checkpoint, restore into a fresh store and compare
// answers of `query`.
#[test]
fn kv_store_outputs_and_checkpoints() {
    let mut store = KvStore::default();
    let empty = store.checkpoint().expect("a checkpoint").into_bytes();
    assert_eq!(empty.as_ref(), 0u64.to_le_bytes(), "nothing applied yet");
    let apply = |store: &mut KvStore, instance: u64, command: Command| {
        Output::decode(&store.apply(Instance(instance), &command.encode())).expect("output")
    };
    let set = |key: &str, value: &str| Command::Set {
        key: key.into(),
        value: value.into(),
    };
    assert_eq!(apply(&mut store, 1, set("a", "1")), Output::Previous(None));
    assert_eq!(
        apply(&mut store, 2, set("b", "two words")),
        Output::Previous(None)
    );
    let cas = |expected: &str| Command::Cas {
        key: "a".into(),
        expected: expected.into(),
        new: "3".into(),
    };
    assert_eq!(
        apply(&mut store, 3, cas("2")),
        Output::Cas {
            swapped: false,
            current: Some("1".into())
        }
    );
    assert_eq!(
        apply(&mut store, 3, cas("1")),
        Output::Cas {
            swapped: true,
            current: Some("1".into())
        }
    );
    assert_eq!(
        apply(&mut store, 4, Command::Delete { key: "b".into() }),
        Output::Previous(Some("two words".into()))
    );
    apply(&mut store, 5, set("c", ""));
    let before = store.map().clone();
    let invalid = Output::decode(&store.apply(Instance(6), b"s\x09\x00")).expect("output");
    assert!(matches!(invalid, Output::Invalid(_)), "{invalid:?}");
    assert_eq!(store.map(), &before);

    let instance = Instance(6);
    let export = store.checkpoint().expect("a checkpoint");
    // A write after the checkpoint does not reach the export taken before it.
    apply(&mut store, 7, set("later", "x"));
    let image = export.into_bytes();
    let mut copy = KvStore::default();
    copy.restore(instance, &image).expect("restore");
    assert_eq!(copy.map(), &before);
    assert_eq!(copy.checkpoint().expect("a checkpoint").into_bytes(), image);
    apply(&mut copy, 7, set("later", "x"));
    assert_eq!(copy.map(), store.map());
    for key in ["a", "b", "c"] {
        assert_eq!(copy.query(key.as_bytes()), store.query(key.as_bytes()));
    }
    assert_eq!(kv::decode_get(&copy.query(b"a")), Ok(Some("3".into())));

    let mut other = KvStore::default();
    apply(&mut other, 1, set("keep", "me"));
    let truncated = &image[..image.len() - 1];
    assert!(other.restore(instance, truncated).is_err());
    assert_eq!(other.map().get("keep").map(String::as_str), Some("me"));
}

// Goal: every call fails with its typed error: an unknown group, a value over
// `value_size_max`, and anything after shutdown.
// Method: 3 nodes, 1 group; propose/read/group_status on group 7; a value of
// value_size_max + 1 bytes at the leader (following hints), and one of exactly
// value_size_max that must be chosen; then shut one node down
// through its handle and call everything again.
#[test]
fn errors_are_typed() {
    let mut cluster = Cluster::new(
        "errors",
        Shape {
            nodes: 3,
            shards: 1,
            groups: 1,
        },
    );
    let handles = cluster.handles();
    let handle = &handles[&NodeId(1)];
    let missing = GroupId(7);
    let no_such = Err(Error::NoSuchGroup { group: missing });
    assert_eq!(block_on(handle.propose(missing, "v")).map(|_| ()), no_such);
    assert_eq!(block_on(handle.read(missing, "q")).map(|_| ()), no_such);
    assert_eq!(block_on(handle.group_status(missing)).map(|_| ()), no_such);

    let max = test_config(&cluster, NodeId(1)).group.value_size_max;
    let big = Bytes::from(vec![7u8; max + 1]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut target = NodeId(1);
    let error = loop {
        match block_on(handles[&target].propose(GroupId(0), big.clone())) {
            Err(Error::NotLeader { hint: Some(leader) }) => target = leader,
            Err(Error::NotLeader { hint: None } | Error::LeaseNotHeld) => {
                assert!(Instant::now() < deadline, "no leader");
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other,
        }
    };
    assert_eq!(
        error.map(|_| ()),
        Err(Error::TooLarge { size: max + 1, max })
    );
    // The boundary: a value of exactly value_size_max is chosen (WAL record and frame
    // overheads included).
    let largest = Bytes::from(vec![7u8; max]);
    assert!(
        propose_anywhere(
            &handles,
            GroupId(0),
            largest,
            deadline + Duration::from_secs(20)
        ) != Outcome::Unknown,
        "a value of value_size_max bytes was not chosen"
    );

    let node = cluster.nodes.remove(&NodeId(2)).expect("node 2");
    let handle = node.handle();
    block_on(handle.shutdown());
    assert_eq!(
        block_on(handle.propose(GroupId(0), "v")),
        Err(Error::Stopped)
    );
    assert_eq!(block_on(handle.read(GroupId(0), "q")), Err(Error::Stopped));
    assert_eq!(block_on(handle.status()), Err(Error::Stopped));
    assert_eq!(
        block_on(handle.group_status(GroupId(0))),
        Err(Error::Stopped)
    );
    block_on(handle.shutdown());
    assert_eq!(node.shutdown(), Vec::new());
    assert_eq!(
        block_on(handle.propose(GroupId(0), "v")),
        Err(Error::Stopped)
    );
    for (_, node) in std::mem::take(&mut cluster.nodes) {
        assert_eq!(node.shutdown(), Vec::new());
    }
}

// Goal: `Node::start` refuses an invalid configuration naming the field, and a data
// directory that belongs to another node id.
// Method: zero groups, then a node missing from `nodes`; start node 1 of a two-node
// cluster on a directory, stop it, then start node 2 on the same directory.
#[test]
fn start_refuses_bad_config_and_foreign_data_dir() {
    let dir = TempDir::new("foreign");
    let nodes: BTreeMap<NodeId, SocketAddr> = [1, 2]
        .into_iter()
        .map(|i| (NodeId(i), SocketAddr::from(([127, 0, 0, 1], free_ports(1)))))
        .collect();
    let config = |node: u32| {
        let mut config =
            synod::api::Config::new(NodeId(node), 9, nodes.clone(), dir.path().to_path_buf());
        config.cores = Vec::new();
        config
    };
    let factory = || synod::runtime::driver::null_factory();

    let mut bad = config(1);
    bad.group_count = 0;
    match Node::start(bad, factory()) {
        Err(StartError::Config(error)) => {
            assert_eq!(error.field, "group_count", "{error}");
            assert!(error.to_string().contains("group_count = 0"), "{error}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    let mut bad = config(1);
    bad.node = NodeId(3);
    match Node::start(bad, factory()) {
        Err(StartError::Config(error)) => assert_eq!(error.field, "node", "{error}"),
        other => panic!("expected a config error, got {other:?}"),
    }

    let first = Node::start(config(1), factory()).expect("node 1 starts");
    assert_eq!(first.shutdown(), Vec::new());
    match Node::start(config(2), factory()) {
        Err(StartError::ForeignDataDir {
            found, expected, ..
        }) => {
            assert!(
                found.contains("node 1") && expected.contains("node 2"),
                "{found} / {expected}"
            );
        }
        other => panic!("expected a data directory error, got {other:?}"),
    }
    // The directory is still node 1's.
    let again = Node::start(config(1), factory()).expect("node 1 restarts");
    assert_eq!(again.shutdown(), Vec::new());
}
