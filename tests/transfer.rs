//! Checkpoint transfer between pure shards: a replica behind peers whose WAL reads
//! answer `Truncated` is sent a checkpoint in chunks, verifies it, installs it in
//! process and catches up the log after it; the transfer resumes after lost chunks,
//! restarts cleanly with a new sender after the first one crashed, and a corrupt chunk
//! makes the whole file refused (nothing installed) until a clean copy arrives.
//!
//! The harness runs three real `Shard`s of one group, each with an executor whose WAL
//! writes complete at once, whose checkpoint files live in a map, whose state machine
//! is the concatenation of the values it applied, and whose WAL reads answer
//! `Truncated` at or below the node's durable checkpoint (the WAL is gone there) and
//! the chosen entries above it; messages go through a queue a test may filter or
//! alter.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use synod::paxos::{
    Body, Entry, GroupConfig, GroupId, Instance, Lsn, Membership, Message, MessageBody, Nanos,
    NodeId, ProposalId, Restore, WalReadOutcome,
};
use synod::runtime::{
    CheckpointOutcome, CheckpointPolicy, CheckpointReadOutcome, Effects, Shard, ShardConfig,
    ShardInput, TransferPolicy,
};
use synod::wal::checkpoint::encode_header;
use synod::wal::{GroupCommit, GroupCommitConfig, Resume};

const G: GroupId = GroupId(1);
const STEP_NS: u64 = 10_000_000;

struct Node {
    id: NodeId,
    shard: Shard,
    up: bool,
    /// Checkpoint files by instance (header + image).
    files: BTreeMap<Instance, Vec<u8>>,
    /// The state machine: every value applied, concatenated.
    state: Vec<u8>,
    /// The chosen entries this node applied (its WAL, for catch-up reads above the
    /// durable checkpoint).
    wal: BTreeMap<Instance, Entry>,
    /// Answers due at the next step (a crash loses them).
    answers: Vec<ShardInput>,
}

type Filter = Box<dyn FnMut(&mut Message) -> bool>;

struct Cluster {
    nodes: Vec<Node>,
    queue: VecDeque<Message>,
    now: Nanos,
    /// Called on every message before delivery: false drops it (it may alter it).
    filter: Filter,
    next_proposal: u64,
}

fn transfer_policy() -> TransferPolicy {
    TransferPolicy {
        chunk_size_max: 40,
        timeout_ns: 300_000_000,
        retries_max: 2,
        ..TransferPolicy::default()
    }
}

fn new_shard(id: NodeId) -> Shard {
    let voters = Membership::new(vec![NodeId(1), NodeId(2), NodeId(3)]);
    let mut config = GroupConfig::new(id, G, voters);
    config.retention_instances_max = 2;
    config.election_timeout_ns = 300_000_000;
    config.heartbeat_interval_ns = 50_000_000;
    config.lease_ns = 150_000_000;
    config.retransmit_ns = 100_000_000;
    // Node 1 campaigns first.
    if id != NodeId(1) {
        config.election_timeout_ns = 3_000_000_000;
    }
    let commit = GroupCommit::new(
        GroupCommitConfig {
            buffer_size_max: 1 << 20,
            salt: 3,
            writes_in_flight_max: 1,
        },
        Resume {
            offset: 0,
            lsn_through: Lsn(0),
        },
    );
    let shard_config = ShardConfig {
        node: id,
        wal_pending_size_max: 8 << 20,
        held_count_max: 10_000,
        reads_pending_count_max: 64,
        checkpoint: CheckpointPolicy {
            instance_count: 5,
            applied_size: 0,
            interval_ns: 0,
            retry_ns: 1_000_000_000,
            in_flight_count_max: 1,
        },
        log_reads_wal_count_max: synod::runtime::log_reads::LOG_READS_WAL_COUNT_MAX,
        transfer: transfer_policy(),
        truncation: synod::runtime::TruncationPolicy::OFF,
    };
    Shard::new(
        shard_config,
        vec![(config, Restore::default())],
        commit,
        false,
        Nanos(0),
    )
}

impl Cluster {
    fn new() -> Cluster {
        let nodes = (1..=3)
            .map(|i| Node {
                id: NodeId(i),
                shard: new_shard(NodeId(i)),
                up: true,
                files: BTreeMap::new(),
                state: Vec::new(),
                wal: BTreeMap::new(),
                answers: Vec::new(),
            })
            .collect();
        Cluster {
            nodes,
            queue: VecDeque::new(),
            now: Nanos(0),
            filter: Box::new(|_| true),
            next_proposal: 1,
        }
    }

    fn node(&self, id: u32) -> &Node {
        &self.nodes[id as usize - 1]
    }

    /// One step of every running node: its answers and a tick, its effects executed,
    /// then every queued message delivered (or filtered).
    fn step(&mut self) {
        self.now = self.now.plus(STEP_NS);
        let now = self.now;
        for index in 0..self.nodes.len() {
            if !self.nodes[index].up {
                continue;
            }
            let answers = std::mem::take(&mut self.nodes[index].answers);
            for input in answers {
                self.nodes[index].shard.step(now, input);
            }
            self.nodes[index].shard.step(now, ShardInput::Tick);
            self.execute(index);
        }
        let queued: Vec<Message> = self.queue.drain(..).collect();
        for mut message in queued {
            let to = message.to.0 as usize - 1;
            if !self.nodes[to].up || !(self.filter)(&mut message) {
                continue;
            }
            self.nodes[to].shard.step(now, ShardInput::Message(message));
            self.execute(to);
        }
    }

    /// Flushes node `index` and carries out its effects until no write is planned.
    fn execute(&mut self, index: usize) {
        let now = self.now;
        let node = &mut self.nodes[index];
        let mut effects = Effects::default();
        loop {
            node.shard.flush(now, &mut effects);
            node.shard.invariants();
            for (_, messages) in effects.send.drain(..) {
                self.queue.extend(messages);
            }
            let mut installs = std::mem::take(&mut effects.installs).into_iter().peekable();
            for (position, apply) in effects.apply.drain(..).enumerate() {
                while let Some(install) = installs.next_if(|i| i.apply_index <= position) {
                    install_into(node, install);
                }
                node.wal.insert(apply.instance, apply.entry.clone());
                if let (Body::Values(values), false) = (&apply.entry.body, apply.skip) {
                    for value in values {
                        node.state.extend_from_slice(value);
                    }
                }
            }
            for install in installs {
                install_into(node, install);
            }
            for take in effects.checkpoints.drain(..) {
                let image = node.state.clone();
                let mut file = encode_header(G, &take.base, &image);
                file.extend_from_slice(&image);
                node.files.insert(take.base.through, file);
                node.answers.push(ShardInput::CheckpointDone {
                    group: G,
                    through: take.base.through,
                    outcome: CheckpointOutcome::Saved,
                });
            }
            for read in effects.wal_reads.drain(..) {
                // The WAL is gone at and below the durable checkpoint.
                let durable = node.shard.checkpoints().durable_through(G);
                let outcome = if read.from <= durable {
                    WalReadOutcome::Truncated {
                        first_available: durable.next(),
                    }
                } else {
                    let entries = node
                        .wal
                        .range(read.from..=read.through)
                        .take(read.count_max)
                        .map(|(_, e)| e.clone())
                        .collect();
                    WalReadOutcome::Entries(entries)
                };
                node.answers.push(ShardInput::WalReadDone { read, outcome });
            }
            for read in effects.checkpoint_reads.drain(..) {
                let outcome = match node.files.get(&read.through) {
                    Some(file) => {
                        let start = (read.offset as usize).min(file.len());
                        let end = (start + read.size_max).min(file.len());
                        CheckpointReadOutcome::Data {
                            total_size: file.len() as u64,
                            data: Bytes::copy_from_slice(&file[start..end]),
                        }
                    }
                    None => CheckpointReadOutcome::Failed {
                        error: "no such file".to_string(),
                    },
                };
                node.answers
                    .push(ShardInput::CheckpointReadDone { read, outcome });
            }
            let Some(plan) = effects.write.take() else {
                break;
            };
            node.shard.step(
                now,
                ShardInput::WriteDone {
                    lsn_through: plan.lsn_through,
                },
            );
            effects.clear();
        }
    }

    fn run(&mut self, steps: u32) {
        for _ in 0..steps {
            self.step();
        }
    }

    fn leader(&self) -> Option<u32> {
        self.nodes
            .iter()
            .filter(|n| n.up)
            .find(|n| {
                n.shard
                    .group(G)
                    .is_some_and(|g| g.role() == synod::paxos::Role::Leader)
            })
            .map(|n| n.id.0)
    }

    /// Proposes `count` values to the leader, one per step.
    fn propose(&mut self, count: u32) {
        for _ in 0..count {
            let leader = self.leader().expect("a leader");
            let id = self.next_proposal;
            self.next_proposal += 1;
            let input = ShardInput::Propose {
                group: G,
                id: ProposalId(id),
                value: Bytes::from(format!("<value {id}>")),
            };
            let index = leader as usize - 1;
            self.nodes[index].shard.step(self.now, input);
            self.execute(index);
            self.step();
        }
    }

    fn applied(&self, id: u32) -> Instance {
        self.node(id)
            .shard
            .group(G)
            .expect("group")
            .applied_through()
    }
}

fn install_into(node: &mut Node, install: synod::runtime::InstallCheckpoint) {
    node.state = install.image.to_vec();
    let mut file = encode_header(G, &install.base, &install.image);
    file.extend_from_slice(&install.image);
    node.files.insert(install.base.through, file);
    node.answers.push(ShardInput::CheckpointDone {
        group: G,
        through: install.base.through,
        outcome: CheckpointOutcome::Saved,
    });
}

/// A cluster where node 3 missed `values` values (cut off), then is reconnected.
fn behind(values: u32) -> Cluster {
    let mut cluster = Cluster::new();
    cluster.run(60);
    assert_eq!(cluster.leader(), Some(1));
    cluster.filter = Box::new(|m| m.to != NodeId(3) && m.from != NodeId(3));
    cluster.propose(values);
    cluster.run(20);
    assert!(cluster.applied(1) >= Instance(u64::from(values)));
    assert!(cluster.node(1).shard.checkpoints().durable_through(G) >= Instance(5));
    assert!(cluster.applied(3) <= Instance(1));
    cluster
}

fn assert_converged(cluster: &Cluster) {
    let first = cluster.node(1);
    for id in 2..=3 {
        let node = cluster.node(id);
        assert_eq!(cluster.applied(id), cluster.applied(1), "node {id} applied");
        assert_eq!(
            node.shard.group(G).map(synod::paxos::Group::checksum),
            first.shard.group(G).map(synod::paxos::Group::checksum),
            "node {id} checksum"
        );
        assert_eq!(node.state, first.state, "node {id} state machine");
    }
}

// Goal: a replica whose peers' WAL no longer holds what it needs installs a peer's
// checkpoint in process and ends with the same log, checksum and state as the others.
// Method: node 3 cut off for 23 values (checkpoints every 5), then reconnected; every
// WAL read answers Truncated; chunks of 40 bytes.
#[test]
fn lagging_replica_installs_a_checkpoint_and_catches_up() {
    let mut cluster = behind(23);
    cluster.filter = Box::new(|_| true);
    cluster.run(100);
    cluster.propose(2);
    cluster.run(50);
    let counters = cluster.node(3).shard.transfer_counters().clone();
    assert_eq!(counters.installed, 1, "{counters:?}");
    assert!(counters.chunks_received > 1, "{counters:?}");
    let group = cluster.node(3).shard.group(G).expect("group");
    assert_eq!(group.counters().checkpoints_installed, 1);
    assert!(group.installed_through() >= Instance(5));
    assert!(group.log_floor() > group.installed_through());
    // The installed checkpoint became node 3's own durable one.
    assert!(cluster.node(3).shard.checkpoints().durable_through(G) >= group.installed_through());
    assert_converged(&cluster);
}

// Goal: a transfer that loses chunks resumes from the bytes it holds (no restart).
// Method: drop every third chunk toward node 3; the receiver's timeout asks again from
// its offset; record the offsets it asks for: never back to 0 after the first chunk.
#[test]
fn interrupted_transfer_resumes_from_its_offset() {
    let mut cluster = behind(13);
    let mut chunks = 0u32;
    let asked = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = std::rc::Rc::clone(&asked);
    cluster.filter = Box::new(move |m| {
        match &m.body {
            MessageBody::CheckpointChunk { .. } => {
                chunks += 1;
                return chunks % 3 != 2;
            }
            MessageBody::CheckpointRequest { offset, .. } => log.borrow_mut().push(*offset),
            _ => {}
        }
        true
    });
    cluster.run(400);
    let counters = cluster.node(3).shard.transfer_counters().clone();
    assert_eq!(counters.installed, 1, "{counters:?}");
    let asked = asked.borrow();
    assert!(asked.len() > 3, "{asked:?}");
    assert!(asked.iter().all(|o| *o > 0), "restarted from 0: {asked:?}");
    // Each lost chunk was asked for again (a repeated offset).
    assert!(
        asked.windows(2).any(|w| w[0] == w[1]),
        "no offset asked twice: {asked:?}"
    );
    cluster.filter = Box::new(|_| true);
    cluster.run(50);
    assert_converged(&cluster);
}

// Goal: a sender that crashes mid-transfer costs a restart with another sender, never
// a wrong install: the receiver abandons the silent transfer and a new one (from the
// new leader) completes.
// Method: after node 3 has received a few chunks from node 1, node 1 goes down for
// good; node 2 takes over as leader; node 3 ends with node 2's state.
#[test]
fn sender_crash_restarts_with_a_new_sender() {
    let mut cluster = behind(18);
    cluster.filter = Box::new(|_| true);
    let mut steps = 0;
    while cluster.node(3).shard.transfer_counters().chunks_received < 3 {
        cluster.step();
        steps += 1;
        assert!(steps < 200, "no transfer started");
    }
    assert_eq!(cluster.node(3).shard.transfer_counters().installed, 0);
    cluster.nodes[0].up = false;
    cluster.run(800);
    assert_eq!(cluster.leader(), Some(2));
    cluster.propose(2);
    cluster.run(100);
    let counters = cluster.node(3).shard.transfer_counters().clone();
    assert_eq!(counters.installed, 1, "{counters:?}");
    assert!(counters.abandoned >= 1, "{counters:?}");
    let (two, three) = (cluster.node(2), cluster.node(3));
    assert_eq!(cluster.applied(3), cluster.applied(2));
    assert_eq!(three.state, two.state);
}

// Goal: a chunk corrupted in transit makes the whole file refused: nothing installed,
// nothing applied from it; the next, clean transfer installs.
// Method: flip one byte of the first chunk toward node 3 that carries the image's end;
// later chunks pass untouched.
#[test]
fn corrupt_chunk_is_refused_then_a_clean_copy_installs() {
    let mut cluster = behind(13);
    let mut corrupted = false;
    cluster.filter = Box::new(move |m| {
        if let MessageBody::CheckpointChunk {
            offset,
            total_size,
            data,
            ..
        } = &mut m.body
        {
            if !corrupted && *offset + data.len() as u64 == *total_size && !data.is_empty() {
                corrupted = true;
                let mut bytes = data.to_vec();
                bytes[0] ^= 0x40;
                *data = Bytes::from(bytes);
            }
        }
        true
    });
    let mut steps = 0;
    while cluster.node(3).shard.transfer_counters().refused_corrupt == 0 {
        cluster.step();
        steps += 1;
        assert!(steps < 300, "the corrupt file was never completed");
    }
    assert_eq!(cluster.node(3).shard.transfer_counters().installed, 0);
    assert!(
        cluster.applied(3) <= Instance(1),
        "applied from a refused file"
    );
    cluster.run(300);
    let counters = cluster.node(3).shard.transfer_counters().clone();
    assert_eq!(counters.installed, 1, "{counters:?}");
    assert_eq!(counters.refused_corrupt, 1, "{counters:?}");
    assert_converged(&cluster);
}

// Goal: a transfer announcing more than `size_max` is refused before any byte is kept.
// Method: forge one chunk of a 2 GiB checkpoint toward node 3's shard.
#[test]
fn oversized_transfer_is_refused() {
    let mut cluster = behind(6);
    let message = Message {
        group: G,
        from: NodeId(1),
        to: NodeId(3),
        body: MessageBody::CheckpointChunk {
            through: Instance(100),
            offset: 0,
            total_size: 2 << 30,
            data: Bytes::from_static(b"SYNODCKP"),
        },
    };
    let now = cluster.now;
    cluster.nodes[2]
        .shard
        .step(now, ShardInput::Message(message));
    let counters = cluster.node(3).shard.transfer_counters().clone();
    assert_eq!(counters.refused_too_large, 1, "{counters:?}");
    assert_eq!(counters.chunks_received, 0, "{counters:?}");
}
