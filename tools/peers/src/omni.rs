//! OmniPaxos 0.2.4: three replicas in one process on loopback TCP, each an `OmniPaxos`
//! instance driven by one tokio task (the library is sans-IO, like synod's core) over the
//! harness's durable `Storage`.
//!
//! Durability: OmniPaxos's `Storage` is synchronous and the library counts a write as done
//! when the call returns (the leader counts its own acceptance at append time). So storage
//! calls only encode records into a pending buffer, and the driver holds back every
//! Sequence Paxos message and every client answer produced while that buffer fills until
//! ONE write + ONE fdatasync of it has returned (etcd's "persist before send" on the
//! library's outputs). One sync is in flight per replica; what arrives meanwhile forms the
//! next batch (group commit). Leader-election (BLE) heartbeats do not depend on the log and
//! leave at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use omnipaxos::ballot_leader_election::Ballot;
use omnipaxos::messages::Message;
use omnipaxos::storage::{Entry, NoSnapshot, StopSign, Storage, StorageOp, StorageResult};
use omnipaxos::util::LogEntry;
use omnipaxos::{ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::load::{self, Load, Report, Submit};
use crate::net;
use crate::wal::{put_record, Wal, WalStats};

/// The version in Cargo.lock (printed with the results).
pub const VERSION: &str = "omnipaxos 0.2.4";
/// Period of `OmniPaxos::tick`.
const TICK_MS: u64 = 10;
/// Ticks without a heartbeat before a new election (500 ms).
const ELECTION_TICKS: u64 = 50;
/// Inputs handled per driver step before outputs are flushed.
const STEP_INPUTS_MAX: usize = 4096;
/// Queued proposals / inbound messages per replica.
const QUEUE_MAX: usize = 65_536;

/// One log entry: a proposal's id (to answer its client) and its value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Proposal {
    id: u64,
    value: Bytes,
}

impl Entry for Proposal {
    type Snapshot = NoSnapshot;
}

/// Encoded records not yet handed to the log, and their count.
type Pending = Arc<Mutex<(Vec<u8>, u64)>>;

/// Record kinds of the OmniPaxos log file.
const RECORD_ENTRY: u8 = 1;
const RECORD_META: u8 = 2;
const RECORD_TRUNCATE: u8 = 3;

/// The harness's storage: the log and metadata in memory (reads), every write encoded as a
/// record into `pending` for the driver to make durable before it releases any output.
struct DurableStorage {
    log: Vec<Proposal>,
    promise: Option<Ballot>,
    accepted_round: Option<Ballot>,
    decided_idx: usize,
    compacted_idx: usize,
    stopsign: Option<StopSign>,
    pending: Pending,
}

#[derive(Serialize)]
enum Meta<'a> {
    Promise(&'a Ballot),
    AcceptedRound(&'a Ballot),
    DecidedIdx(usize),
    CompactedIdx(usize),
    Trim(usize),
    StopSign(&'a Option<StopSign>),
}

impl DurableStorage {
    fn record_entries(&self, entries: &[Proposal]) {
        let mut pending = self.pending.lock().expect("no panic while held");
        pending.1 += entries.len() as u64;
        for entry in entries {
            put_record(
                &mut pending.0,
                RECORD_ENTRY,
                &[&entry.id.to_le_bytes(), &entry.value],
            );
        }
    }

    fn record_meta(&self, meta: &Meta) {
        let body = bincode::serialize(meta).expect("bincode encodes metadata");
        let mut pending = self.pending.lock().expect("no panic while held");
        pending.1 += 1;
        put_record(&mut pending.0, RECORD_META, &[&body]);
    }
}

impl Storage<Proposal> for DurableStorage {
    fn write_atomically(&mut self, ops: Vec<StorageOp<Proposal>>) -> StorageResult<()> {
        // Atomic: the driver takes `pending` only between library calls, so all of these
        // records reach the disk in one batch.
        for op in ops {
            match op {
                StorageOp::AppendEntry(e) => self.append_entry(e)?,
                StorageOp::AppendEntries(es) => self.append_entries(es)?,
                StorageOp::AppendOnPrefix(from, es) => self.append_on_prefix(from, es)?,
                StorageOp::SetPromise(b) => self.set_promise(b)?,
                StorageOp::SetDecidedIndex(i) => self.set_decided_idx(i)?,
                StorageOp::SetAcceptedRound(b) => self.set_accepted_round(b)?,
                StorageOp::SetCompactedIdx(i) => self.set_compacted_idx(i)?,
                StorageOp::Trim(i) => self.trim(i)?,
                StorageOp::SetStopsign(s) => self.set_stopsign(s)?,
                StorageOp::SetSnapshot(s) => self.set_snapshot(s)?,
            }
        }
        Ok(())
    }

    fn append_entry(&mut self, entry: Proposal) -> StorageResult<()> {
        self.record_entries(std::slice::from_ref(&entry));
        self.log.push(entry);
        Ok(())
    }

    fn append_entries(&mut self, entries: Vec<Proposal>) -> StorageResult<()> {
        self.record_entries(&entries);
        self.log.extend(entries);
        Ok(())
    }

    fn append_on_prefix(&mut self, from_idx: usize, entries: Vec<Proposal>) -> StorageResult<()> {
        let keep = from_idx - self.compacted_idx;
        if keep < self.log.len() {
            let mut pending = self.pending.lock().expect("no panic while held");
            pending.1 += 1;
            put_record(
                &mut pending.0,
                RECORD_TRUNCATE,
                &[&(from_idx as u64).to_le_bytes()],
            );
            self.log.truncate(keep);
        }
        self.append_entries(entries)
    }

    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.record_meta(&Meta::Promise(&n_prom));
        self.promise = Some(n_prom);
        Ok(())
    }

    fn set_decided_idx(&mut self, ld: usize) -> StorageResult<()> {
        self.record_meta(&Meta::DecidedIdx(ld));
        self.decided_idx = ld;
        Ok(())
    }

    fn get_decided_idx(&self) -> StorageResult<usize> {
        Ok(self.decided_idx)
    }

    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.record_meta(&Meta::AcceptedRound(&na));
        self.accepted_round = Some(na);
        Ok(())
    }

    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        Ok(self.accepted_round)
    }

    fn get_entries(&self, from: usize, to: usize) -> StorageResult<Vec<Proposal>> {
        let from = from.saturating_sub(self.compacted_idx).min(self.log.len());
        let to = to.saturating_sub(self.compacted_idx).min(self.log.len());
        Ok(self.log.get(from..to).unwrap_or_default().to_vec())
    }

    fn get_log_len(&self) -> StorageResult<usize> {
        Ok(self.log.len())
    }

    fn get_suffix(&self, from: usize) -> StorageResult<Vec<Proposal>> {
        let from = from.saturating_sub(self.compacted_idx).min(self.log.len());
        Ok(self.log[from..].to_vec())
    }

    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        Ok(self.promise)
    }

    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.record_meta(&Meta::StopSign(&s));
        self.stopsign = s;
        Ok(())
    }

    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        Ok(self.stopsign.clone())
    }

    fn trim(&mut self, idx: usize) -> StorageResult<()> {
        self.record_meta(&Meta::Trim(idx));
        let drop = idx.saturating_sub(self.compacted_idx).min(self.log.len());
        self.log.drain(..drop);
        self.compacted_idx = idx;
        Ok(())
    }

    fn set_compacted_idx(&mut self, idx: usize) -> StorageResult<()> {
        self.record_meta(&Meta::CompactedIdx(idx));
        self.compacted_idx = idx;
        Ok(())
    }

    fn get_compacted_idx(&self) -> StorageResult<usize> {
        Ok(self.compacted_idx)
    }

    fn set_snapshot(&mut self, _snapshot: Option<NoSnapshot>) -> StorageResult<()> {
        Ok(())
    }

    fn get_snapshot(&self) -> StorageResult<Option<NoSnapshot>> {
        Ok(None)
    }
}

type Reply = oneshot::Sender<Result<(), String>>;

/// Handles of one replica for the clients and the report.
struct Replica {
    proposals: mpsc::Sender<(Bytes, Reply)>,
    /// Pid of the leader this replica follows, 0 if none; high bit set once it is in the
    /// Accept phase.
    leader: Arc<AtomicU64>,
    wal: Arc<WalStats>,
}

const ACCEPT_PHASE: u64 = 1 << 63;

/// What the driver releases once the fdatasync covering it returns.
#[derive(Default)]
struct Outputs {
    messages: Vec<Message<Proposal>>,
    replies: Vec<Reply>,
}

/// Runs the OmniPaxos side and returns its report.
pub fn run(
    load: &Load,
    dir: &Path,
) -> Result<(Report, std::collections::BTreeMap<String, u64>), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let bound = net::bind_three().map_err(|e| e.to_string())?;
        let addrs: Vec<SocketAddr> = bound.iter().map(|(a, _)| *a).collect();
        let mut replicas = Vec::new();
        for (i, (_, listener)) in bound.into_iter().enumerate() {
            let pid = i as u64 + 1;
            let wal =
                Wal::open(&dir.join(format!("omnipaxos-{pid}"))).map_err(|e| e.to_string())?;
            let listener = TcpListener::from_std(listener).map_err(|e| e.to_string())?;
            replicas.push(start_replica(pid, &addrs, listener, wal));
        }
        let leader = wait_for_leader(&replicas).await?;
        eprintln!("omnipaxos: leader is replica {leader}");
        let proposals = replicas[leader as usize - 1].proposals.clone();
        let submit: Submit = Arc::new(move |value| {
            let proposals = proposals.clone();
            Box::pin(async move {
                let (tx, rx) = oneshot::channel();
                proposals
                    .send((value, tx))
                    .await
                    .map_err(|_| "replica stopped".to_string())?;
                rx.await.map_err(|_| "proposal dropped".to_string())?
            })
        });
        let start = std::time::Instant::now();
        let outcome = load::run(load, submit).await;
        let elapsed = start.elapsed().as_secs_f64();
        let mut report = Report::new(VERSION.to_string(), load.value_size, &outcome);
        let (syncs, records, bytes) = replicas.iter().fold((0, 0, 0), |s, r| {
            (
                s.0 + r.wal.syncs.load(Ordering::Relaxed),
                s.1 + r.wal.records.load(Ordering::Relaxed),
                s.2 + r.wal.bytes.load(Ordering::Relaxed),
            )
        });
        report.fdatasyncs_per_s = syncs as f64 / elapsed;
        report.records_per_fdatasync = records as f64 / syncs.max(1) as f64;
        report.bytes_per_fdatasync = bytes as f64 / syncs.max(1) as f64;
        Ok((report, outcome.errors))
    })
}

async fn wait_for_leader(replicas: &[Replica]) -> Result<u64, String> {
    for _ in 0..3000 {
        let seen: Vec<u64> = replicas
            .iter()
            .map(|r| r.leader.load(Ordering::Relaxed))
            .collect();
        if seen[0] & !ACCEPT_PHASE != 0
            && seen.iter().all(|s| *s == seen[0])
            && seen[0] & ACCEPT_PHASE != 0
        {
            return Ok(seen[0] & !ACCEPT_PHASE);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("omnipaxos: no leader in Accept phase on all replicas after 30 s".into())
}

fn start_replica(pid: u64, addrs: &[SocketAddr], listener: TcpListener, wal: Wal) -> Replica {
    let (inbound_tx, inbound) = mpsc::channel::<Message<Proposal>>(QUEUE_MAX);
    tokio::spawn(accept_peers(listener, inbound_tx));
    let mut peers: HashMap<u64, mpsc::Sender<Vec<u8>>> = HashMap::new();
    for (i, addr) in addrs.iter().enumerate() {
        let peer = i as u64 + 1;
        if peer != pid {
            let (tx, rx) = mpsc::channel(QUEUE_MAX);
            tokio::spawn(write_peer(*addr, rx));
            peers.insert(peer, tx);
        }
    }
    let (proposals_tx, proposals) = mpsc::channel(QUEUE_MAX);
    let pending: Pending = Arc::default();
    let storage = DurableStorage {
        log: Vec::new(),
        promise: None,
        accepted_round: None,
        decided_idx: 0,
        compacted_idx: 0,
        stopsign: None,
        pending: Arc::clone(&pending),
    };
    let config = OmniPaxosConfig {
        cluster_config: ClusterConfig {
            configuration_id: 1,
            nodes: (1..=addrs.len() as u64).collect(),
            flexible_quorum: None,
        },
        server_config: ServerConfig {
            pid,
            election_tick_timeout: ELECTION_TICKS,
            // No value batching by the library: every proposal is its own entry, sent at once.
            batch_size: 1,
            ..ServerConfig::default()
        },
    };
    let omnipaxos = config.build(storage).expect("static config is valid");
    let leader = Arc::new(AtomicU64::new(0));
    let stats = Arc::clone(&wal.stats);
    tokio::spawn(drive(
        omnipaxos,
        pending,
        wal,
        inbound,
        proposals,
        peers,
        Arc::clone(&leader),
    ));
    Replica {
        proposals: proposals_tx,
        leader,
        wal: stats,
    }
}

async fn accept_peers(listener: TcpListener, inbound: mpsc::Sender<Message<Proposal>>) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let inbound = inbound.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::with_capacity(1 << 16, stream);
            let mut buf = Vec::new();
            while let Ok(message) = net::read_frame(&mut reader, &mut buf).await {
                if inbound.send(message).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// One connection to one peer; frames queued meanwhile leave in one write.
async fn write_peer(addr: SocketAddr, mut frames: mpsc::Receiver<Vec<u8>>) {
    let mut stream = loop {
        match TcpStream::connect(addr).await {
            Ok(stream) => break stream,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    let _ = stream.set_nodelay(true);
    while let Some(mut buf) = frames.recv().await {
        while let Ok(more) = frames.try_recv() {
            buf.extend_from_slice(&more);
        }
        if stream.write_all(&buf).await.is_err() {
            return;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    mut omnipaxos: OmniPaxos<Proposal, DurableStorage>,
    pending: Pending,
    wal: Wal,
    mut inbound: mpsc::Receiver<Message<Proposal>>,
    mut proposals: mpsc::Receiver<(Bytes, Reply)>,
    peers: HashMap<u64, mpsc::Sender<Vec<u8>>>,
    leader: Arc<AtomicU64>,
) {
    let pid = omnipaxos.get_pid();
    let (synced_tx, mut synced) = mpsc::unbounded_channel::<std::io::Result<()>>();
    let mut ticker = tokio::time::interval(Duration::from_millis(TICK_MS));
    let mut waiting: HashMap<u64, Reply> = HashMap::new();
    let mut next_id = pid << 48;
    let mut applied_idx = 0usize;
    // This replica's log length covered by the last completed fdatasync, and by the one in
    // flight.
    let mut durable_len = 0usize;
    let mut syncing_len = 0usize;
    // Outputs of the batch being synced, and of the batch being gathered.
    let mut held: Option<Outputs> = None;
    let mut gathering = Outputs::default();
    let mut outgoing = Vec::new();
    let mut frames: HashMap<u64, Vec<u8>> = HashMap::new();
    loop {
        tokio::select! {
            biased;
            Some(result) = synced.recv() => {
                if let Err(error) = result {
                    // fsyncgate: never retry; the replica stops and says why.
                    eprintln!("omnipaxos replica {pid}: log failed: {error}");
                    std::process::exit(2);
                }
                let done = held.take().expect("a sync completes only while one is in flight");
                durable_len = syncing_len;
                release(done, &mut frames);
            }
            Some(message) = inbound.recv() => {
                omnipaxos.handle_incoming(message);
                for _ in 0..STEP_INPUTS_MAX {
                    match inbound.try_recv() {
                        Ok(message) => omnipaxos.handle_incoming(message),
                        Err(_) => break,
                    }
                }
            }
            Some((value, reply)) = proposals.recv() => {
                let mut input = Some((value, reply));
                for _ in 0..STEP_INPUTS_MAX {
                    let Some((value, reply)) = input.take() else { break };
                    next_id += 1;
                    match omnipaxos.append(Proposal { id: next_id, value }) {
                        Ok(()) => {
                            waiting.insert(next_id, reply);
                        }
                        Err(error) => {
                            let _ = reply.send(Err(format!("append: {error:?}")));
                        }
                    }
                    input = proposals.try_recv().ok();
                }
            }
            _ = ticker.tick() => omnipaxos.tick(),
        }
        omnipaxos.take_outgoing_messages(&mut outgoing);
        for message in outgoing.drain(..) {
            match message {
                // Leader election does not read or write the log: no need to wait.
                Message::BLE(_) => {
                    net::put_frame(frames.entry(message.get_receiver()).or_default(), &message)
                }
                Message::SequencePaxos(_) => gathering.messages.push(message),
            }
        }
        // Apply: read what is decided; answer the clients whose proposal it holds.
        let decided_idx = omnipaxos.get_decided_idx();
        if decided_idx > applied_idx {
            if let Some(entries) = omnipaxos.read_decided_suffix(applied_idx) {
                for (index, entry) in (applied_idx..).zip(entries) {
                    if let LogEntry::Decided(proposal) = entry {
                        if let Some(reply) = waiting.remove(&proposal.id) {
                            if index < durable_len {
                                // Chosen by a majority that includes this replica's durable
                                // copy (followers answer only after their own fdatasync).
                                let _ = reply.send(Ok(()));
                            } else {
                                gathering.replies.push(reply);
                            }
                        }
                    }
                }
            }
            applied_idx = decided_idx;
        }
        if held.is_none() {
            let (bytes, records) =
                std::mem::take(&mut *pending.lock().expect("no panic while held"));
            let outputs = std::mem::take(&mut gathering);
            if bytes.is_empty() {
                // Everything written earlier is durable already.
                release(outputs, &mut frames);
            } else {
                held = Some(outputs);
                syncing_len = omnipaxos.get_accepted_idx();
                let synced_tx = synced_tx.clone();
                wal.submit(
                    bytes,
                    records,
                    Box::new(move |result| {
                        let _ = synced_tx.send(result);
                    }),
                );
            }
        }
        for (peer, buf) in frames.iter_mut() {
            if !buf.is_empty() {
                if let Some(tx) = peers.get(peer) {
                    let _ = tx.send(std::mem::take(buf)).await;
                }
            }
        }
        let seen = omnipaxos.get_current_leader().map_or(0, |(pid, accepted)| {
            pid | if accepted { ACCEPT_PHASE } else { 0 }
        });
        leader.store(seen, Ordering::Relaxed);
    }
}

/// AFTER the fdatasync covering them: messages to their peers' frames, answers to clients.
fn release(outputs: Outputs, frames: &mut HashMap<u64, Vec<u8>>) {
    for message in outputs.messages {
        net::put_frame(frames.entry(message.get_receiver()).or_default(), &message);
    }
    for reply in outputs.replies {
        let _ = reply.send(Ok(()));
    }
}
