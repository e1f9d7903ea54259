//! A scripted harness over `paxos::Group` replicas for scenario tests: every message
//! sits in a pool until the test delivers or drops it, records are durable as soon as
//! they are emitted (per node, in order), and a restart rebuilds a replica from its
//! durable records. Each replica's records are also encoded into a WAL image with its
//! index (the real `wal::record` codec and `wal::index`), and a catch-up read below a
//! group's in-memory log (`Output::wal_reads`) is answered from it at once, through
//! the real `wal::catch_up`. It exists to stage exact interleavings; the simulator covers the
//! random ones.

#![allow(dead_code, reason = "shared by several test crates, each using a part")]

use std::collections::BTreeMap;

use bytes::Bytes;
use synod::paxos::{
    Apply, Ballot, Body, CheckpointBase, Completion, Entry, Group, GroupConfig, GroupId, Input,
    Instance, LeaderPlacement, Lsn, Membership, Message, MessageBody, Nanos, NodeId, Output,
    ProposalId, Record, Restore, Role, WalRead, WalReadOutcome, WalReader,
};
use synod::wal::catch_up::{self, ReadPlan};
use synod::wal::index::LogIndex;
use synod::wal::record::{encode, Stamp};
use synod::wal::Placed;

pub const GROUP: GroupId = GroupId(7);

const SALT: u32 = 0x4841_524E;

/// A replica's durable records as a WAL image and its index.
#[derive(Default)]
pub struct Wal {
    image: Vec<u8>,
    index: LogIndex,
    lsn: u64,
    /// Catch-up reads answered from it.
    pub reads: u64,
}

impl Wal {
    /// The image of `records`, in order.
    fn of(records: &[Record]) -> Wal {
        let mut wal = Wal::default();
        for record in records {
            wal.append(record);
        }
        wal
    }

    fn append(&mut self, record: &Record) {
        self.lsn += 1;
        let lsn = Lsn(self.lsn);
        let offset = self.image.len() as u64;
        let stamp = Stamp {
            lsn,
            unsynced_from: lsn,
        };
        let size = encode(record, stamp, SALT, &mut self.image);
        let size = u32::try_from(size).expect("a record fits u32");
        self.index.insert(record, Placed { lsn, offset, size });
    }

    /// What the WAL holds for `read`.
    fn read(&mut self, read: &WalRead) -> WalReadOutcome {
        self.reads += 1;
        let plan = catch_up::plan(&self.index, read);
        let records: Vec<(Instance, &[u8], u32)> = match &plan {
            ReadPlan::Records(records) => records
                .iter()
                .map(|(instance, e)| {
                    let at = e.offset as usize;
                    (*instance, &self.image[at..at + e.size as usize], SALT)
                })
                .collect(),
            ReadPlan::Truncated { .. } => Vec::new(),
        };
        // The harness steps groups without a shard, so it answers peers with entries
        // (which a group still sends as a `CatchUpChunk`), as it answers log reads.
        let entries = catch_up::entries(read, records).expect("the harness WAL is intact");
        match plan {
            ReadPlan::Truncated { first_available } => {
                WalReadOutcome::Truncated { first_available }
            }
            ReadPlan::Records(_) => WalReadOutcome::Entries(entries),
        }
    }
}

pub struct Replica {
    pub group: Group,
    pub config: GroupConfig,
    pub durable: Vec<Record>,
    /// `durable` as a WAL image (rebuilt from `durable` at each restart).
    pub wal: Wal,
    pub applied: Vec<Apply>,
    pub failed: Vec<Completion>,
    pub up: bool,
}

pub struct Harness {
    pub replicas: BTreeMap<NodeId, Replica>,
    pub pool: Vec<Message>,
    pub now: Nanos,
    next_id: u64,
}

pub fn config(node: u32, nodes: u32, window: u64) -> GroupConfig {
    let membership = Membership::new((1..=nodes).map(NodeId).collect());
    let mut config = GroupConfig::new(NodeId(node), GROUP, membership);
    config.window_instances_max = window;
    config.accept_window_instances_max = window * 4;
    config.promise_entries_max = (window * 4) as usize;
    config.batch_values_max = 1;
    // Scenarios stage exact interleavings: leadership moves only where a script asks
    // (the placement scenarios turn it on with `Harness::configure`).
    config.leader_placement = LeaderPlacement::Off;
    config
}

impl Harness {
    pub fn new(nodes: u32, window: u64) -> Harness {
        let mut replicas = BTreeMap::new();
        for node in 1..=nodes {
            let config = config(node, nodes, window);
            replicas.insert(
                NodeId(node),
                Replica {
                    group: Group::new(config.clone(), Restore::default(), Nanos(0)),
                    config,
                    durable: Vec::new(),
                    wal: Wal::default(),
                    applied: Vec::new(),
                    failed: Vec::new(),
                    up: true,
                },
            );
        }
        Harness {
            replicas,
            pool: Vec::new(),
            now: Nanos(0),
            next_id: 1,
        }
    }

    /// Adds replica `node` whose initial voters are `members` (not itself, typically:
    /// a node about to be added by a membership change).
    pub fn add_node(&mut self, node: u32, members: &[u32], window: u64) {
        let mut config = config(node, 1, window);
        config.membership = Membership::new(members.iter().map(|n| NodeId(*n)).collect());
        self.replicas.insert(
            NodeId(node),
            Replica {
                group: Group::new(config.clone(), Restore::default(), self.now),
                config,
                durable: Vec::new(),
                wal: Wal::default(),
                applied: Vec::new(),
                failed: Vec::new(),
                up: true,
            },
        );
    }

    pub fn replica(&self, node: u32) -> &Replica {
        &self.replicas[&NodeId(node)]
    }

    /// Rebuilds every replica (before anything happened) with `adjust` applied to
    /// its configuration.
    pub fn configure(&mut self, adjust: &dyn Fn(&mut GroupConfig)) {
        let now = self.now;
        for replica in self.replicas.values_mut() {
            adjust(&mut replica.config);
            replica.group = Group::new(replica.config.clone(), Restore::default(), now);
        }
    }

    /// Steps `node` with `input`; everything it emits goes to the pool / its records.
    pub fn step(&mut self, node: u32, input: Input) {
        let now = self.now;
        let replica = self.replicas.get_mut(&NodeId(node)).expect("node exists");
        assert!(replica.up, "stepping a node that is down");
        let mut out = Output::default();
        replica.group.step(now, input, &mut out);
        replica.group.invariants();
        for record in &out.persist {
            replica.wal.append(record);
        }
        replica.durable.append(&mut out.persist);
        // Records are durable at once: a WAL read may be answered at once. A stream
        // asks its next read as one is answered, up to its credit: answered in turn.
        while !out.wal_reads.is_empty() {
            let read = out.wal_reads.remove(0);
            let outcome = replica.wal.read(&read);
            let WalReader::Peer(peer) = read.reader else {
                unreachable!("a group asks WAL reads only for its peers")
            };
            let input = Input::WalReadDone {
                peer,
                from: read.from,
                outcome,
            };
            replica.group.step(now, input, &mut out);
            replica.group.invariants();
            assert!(out.persist.is_empty() && out.wal_reads.len() <= 1);
        }
        self.pool.append(&mut out.send);
        self.pool.append(&mut out.send_after_persist);
        replica.applied.append(&mut out.apply);
        replica.failed.append(&mut out.complete);
    }

    /// Advances time by `ms` and ticks `nodes`.
    pub fn tick(&mut self, ms: u64, nodes: &[u32]) {
        self.now = self.now.plus(ms * 1_000_000);
        for node in nodes {
            self.step(*node, Input::Tick);
        }
    }

    /// Makes `node` campaign by moving time past every election deadline and ticking
    /// only it, then delivers until quiet among `among`.
    /// (A rejected candidate waits for its next timeout, so this retries a few times.)
    pub fn elect(&mut self, node: u32, among: &[u32]) {
        for _ in 0..5 {
            self.tick(3_000, &[node]);
            self.deliver_among(among);
            if self.replica(node).group.role() == Role::Leader {
                return;
            }
        }
        panic!("node {node} not elected among {among:?}");
    }

    /// Makes `node`'s election timer run out (ticking only it) and delivers its
    /// pre-vote and the replies among `among`, nothing else: with a quorum of grants
    /// it has campaigned, its prepares in the pool (`paxos::leadership`).
    pub fn pre_vote(&mut self, node: u32, among: &[u32]) {
        self.tick(3_000, &[node]);
        let among: Vec<NodeId> = among.iter().map(|n| NodeId(*n)).collect();
        let pre_vote = |m: &Message| {
            matches!(
                m.body,
                MessageBody::PreVote { .. } | MessageBody::PreVoteReply { .. }
            ) && among.contains(&m.from)
                && among.contains(&m.to)
        };
        self.deliver_while(&pre_vote);
        self.pool.retain(|m| !pre_vote(m));
    }

    pub fn propose(&mut self, node: u32, value: &str) -> ProposalId {
        let id = ProposalId(self.next_id);
        self.next_id += 1;
        self.step(
            node,
            Input::Propose {
                id,
                value: Bytes::copy_from_slice(value.as_bytes()),
            },
        );
        id
    }

    /// Delivers the first pooled message matching `pred` to an up receiver; returns
    /// whether one was delivered.
    pub fn deliver_one(&mut self, pred: &dyn Fn(&Message) -> bool) -> bool {
        let Some(index) = self
            .pool
            .iter()
            .position(|m| pred(m) && self.replicas.get(&m.to).is_some_and(|r| r.up))
        else {
            return false;
        };
        let message = self.pool.remove(index);
        let to = message.to.0;
        self.step(to, Input::Message(message));
        true
    }

    /// Delivers matching messages until none is left (new ones included).
    pub fn deliver_while(&mut self, pred: &dyn Fn(&Message) -> bool) -> usize {
        let mut count = 0;
        while self.deliver_one(pred) {
            count += 1;
            assert!(count < 100_000, "delivery does not quiesce");
        }
        count
    }

    /// Delivers every message whose sender and receiver are both in `among`, flushing
    /// those nodes between rounds.
    pub fn deliver_among(&mut self, among: &[u32]) -> usize {
        let among: Vec<NodeId> = among.iter().map(|n| NodeId(*n)).collect();
        let mut total = 0;
        loop {
            for node in &among {
                if self.replicas[node].up {
                    self.step(node.0, Input::Flush);
                }
            }
            let set = among.clone();
            let n = self.deliver_while(&move |m| set.contains(&m.from) && set.contains(&m.to));
            total += n;
            if n == 0 {
                return total;
            }
        }
    }

    pub fn drop_where(&mut self, pred: &dyn Fn(&Message) -> bool) -> usize {
        let before = self.pool.len();
        self.pool.retain(|m| !pred(m));
        before - self.pool.len()
    }

    /// Takes `node` down: its pooled messages in both directions are lost.
    pub fn crash(&mut self, node: u32) {
        let id = NodeId(node);
        self.replicas.get_mut(&id).expect("node exists").up = false;
        self.pool.retain(|m| m.to != id && m.from != id);
    }

    /// Restarts `node` from its durable records (or from nothing, marked lost, when
    /// `lose_disk`).
    pub fn restart(&mut self, node: u32, lose_disk: bool) {
        self.restart_with(node, lose_disk, None);
    }

    /// Restarts `node` from its durable records and a checkpoint at `base.through`:
    /// it re-applies only what follows (its WAL image still holds every record).
    pub fn restart_from_checkpoint(&mut self, node: u32, base: CheckpointBase) {
        self.restart_with(node, false, Some(base));
    }

    fn restart_with(&mut self, node: u32, lose_disk: bool, checkpoint: Option<CheckpointBase>) {
        let now = self.now;
        let replica = self.replicas.get_mut(&NodeId(node)).expect("node exists");
        if lose_disk {
            replica.durable.clear();
        }
        replica.wal = Wal::of(&replica.durable);
        let mut restore = replay(&replica.durable);
        restore.lost_state = lose_disk;
        restore.checkpoint = checkpoint;
        replica.group = Group::new(replica.config.clone(), restore, now);
        replica.group.invariants();
        replica.applied = replica.group.take_restored();
        // The records of the start, written first (as the shard does).
        for record in replica.group.take_restored_records() {
            replica.wal.append(&record);
            replica.durable.push(record);
        }
        replica.up = true;
    }

    /// The applied, non-skipped client values of `node`, in order.
    pub fn visible_values(&self, node: u32) -> Vec<String> {
        let mut values = Vec::new();
        for apply in &self.replica(node).applied {
            if let (Body::Values(vs), false) = (&apply.entry.body, apply.skip) {
                for v in vs {
                    values.push(String::from_utf8_lossy(v).into_owned());
                }
            }
        }
        values
    }

    pub fn applied_at(&self, node: u32, instance: u64) -> Option<&Apply> {
        self.replica(node)
            .applied
            .iter()
            .find(|a| a.instance == Instance(instance))
    }

    pub fn ballot_of(&self, node: u32) -> Ballot {
        self.replica(node).group.ballot().expect("node leads")
    }
}

/// Folds durable records into the state a replica restarts from.
pub fn replay(records: &[Record]) -> Restore {
    let mut restore = Restore::default();
    for record in records {
        match record {
            Record::Promise { ballot, .. } => restore.promised = restore.promised.max(*ballot),
            Record::Accept {
                instance,
                ballot,
                entry,
                ..
            } => {
                restore.accepted.insert(*instance, (*ballot, entry.clone()));
            }
            Record::Chosen { through, .. } => {
                restore.chosen_through = restore.chosen_through.max(*through)
            }
            Record::Learn {
                instance, entry, ..
            } => {
                restore.learned.insert(*instance, entry.clone());
            }
            Record::Installed { through, .. } => {
                restore.installed_through = restore.installed_through.max(*through)
            }
        }
    }
    restore
}

pub fn is_accept_at(m: &Message, instance: u64) -> bool {
    matches!(&m.body, MessageBody::Accept { first, entries, .. }
        if first.0 <= instance && instance < first.0 + entries.len() as u64)
}

pub fn values(entry: &Entry) -> Vec<String> {
    match &entry.body {
        Body::Values(vs) => vs
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect(),
        _ => Vec::new(),
    }
}
