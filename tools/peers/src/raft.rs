//! openraft 0.10.0-alpha.37: three `Raft` nodes in one process on loopback TCP, each with
//! the harness's `RaftLogStorage` and a counting state machine.
//!
//! Durability: `append` puts the entries in the in-memory index (readable for replication
//! at once, as openraft allows) and queues their records on the replica's log thread; the
//! `IOFlushed` callback is invoked only AFTER the fdatasync covering them returned, so
//! openraft counts a replica's copy (the leader's own included) only once durable.
//! `save_vote` waits for its own record's fdatasync. The network is openraft's
//! `RaftNetworkV2`: one TCP connection per (node, peer, kind), request then response.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Cursor};
use std::net::SocketAddr;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use openraft::alias::{EntryOf, LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::storage::{
    EntryResponder, IOFlushed, LogState, RaftLogReader, RaftLogStorage, RaftSnapshotBuilder,
    RaftStateMachine,
};
use openraft::{EntryPayload, OptionalSend, Raft, RaftNetworkV2};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::load::{self, Load, Report, Submit};
use crate::net;
use crate::wal::{put_record_with, Wal, WalStats};

/// The version in Cargo.lock (printed with the results).
pub const VERSION: &str = "openraft 0.10.0-alpha.37";

/// The application data of one entry: the proposed value.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Value(Bytes);

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({} bytes)", self.0.len())
    }
}

/// The state machine's answer.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Applied;

openraft::declare_raft_types!(
    /// openraft types of the harness.
    pub TypeConfig:
        D = Value,
        R = Applied,
        NodeId = u64,
        Node = (),
);

type C = TypeConfig;
type BenchRaft = Raft<C, StateMachine>;

/// Record kinds of the openraft log file.
const RECORD_ENTRY: u8 = 1;
const RECORD_VOTE: u8 = 2;
const RECORD_TRUNCATE: u8 = 3;
const RECORD_PURGE: u8 = 4;

#[derive(Default)]
struct LogInner {
    entries: BTreeMap<u64, EntryOf<C>>,
    vote: Option<VoteOf<C>>,
    purged: Option<LogIdOf<C>>,
}

/// The harness's log storage: entries indexed in memory, every write a record in the
/// replica's durable file log (`wal.rs`).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
    wal: Wal,
}

impl LogStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.inner.lock().expect("no panic while held")
    }

    /// Queues one record and waits for its fdatasync.
    async fn write_durable(&self, kind: u8, body: &impl Serialize) -> Result<(), io::Error> {
        let mut bytes = Vec::new();
        put_record_with(&mut bytes, kind, |out| {
            bincode::serialize_into(out, body).expect("bincode encodes into a Vec")
        });
        let (tx, rx) = oneshot::channel();
        self.wal.submit(
            bytes,
            1,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        );
        rx.await
            .map_err(|_| io::Error::other("the log dropped a write"))?
    }
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.lock().vote)
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let inner = self.lock();
        let last = inner.entries.values().next_back().map(|e| e.log_id());
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: last.or(inner.purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        self.write_durable(RECORD_VOTE, vote).await?;
        self.lock().vote = Some(*vote);
        Ok(())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + OptionalSend,
    {
        let mut bytes = Vec::new();
        let mut records = 0;
        {
            let mut inner = self.lock();
            for entry in entries {
                records += 1;
                put_record_with(&mut bytes, RECORD_ENTRY, |out| {
                    bincode::serialize_into(out, &entry).expect("bincode encodes into a Vec")
                });
                inner.entries.insert(entry.index(), entry);
            }
        }
        // openraft counts these entries as persisted only when the callback runs: AFTER the
        // fdatasync that covers them.
        self.wal.submit(
            bytes,
            records,
            Box::new(move |result| callback.io_completed(result)),
        );
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        // Ordered before any later append by the log thread; made durable with it.
        self.write_durable(RECORD_TRUNCATE, &from).await?;
        self.lock().entries.split_off(&from);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        // Purging drops only the in-memory copy and records the watermark (no compaction).
        let mut bytes = Vec::new();
        put_record_with(&mut bytes, RECORD_PURGE, |out| {
            bincode::serialize_into(out, &log_id).expect("bincode encodes into a Vec")
        });
        self.wal.submit(bytes, 1, Box::new(|_| {}));
        let mut inner = self.lock();
        inner.purged = Some(log_id);
        let keep = inner.entries.split_off(&(log_id.index() + 1));
        inner.entries = keep;
        Ok(())
    }
}

#[derive(Default, Serialize, Deserialize, Clone)]
struct SmState {
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    applied_count: u64,
    applied_size: u64,
}

/// The last snapshot built or installed: its meta and its bytes.
type StoredSnapshot = (SnapshotMetaOf<C>, Vec<u8>);

/// Counts applied entries and their bytes; its snapshot is that count.
#[derive(Clone, Default)]
pub struct StateMachine {
    state: Arc<Mutex<SmState>>,
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
}

impl RaftSnapshotBuilder<C> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Cursor<Vec<u8>>>, io::Error> {
        let state = self.state.lock().expect("no panic while held").clone();
        let data = bincode::serialize(&state).map_err(io::Error::other)?;
        let meta = SnapshotMetaOf::<C> {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
        };
        *self.snapshot.lock().expect("no panic while held") = Some((meta.clone(), data.clone()));
        Ok(SnapshotOf::<C, Cursor<Vec<u8>>> {
            meta,
            snapshot: Cursor::new(data),
        })
    }
}

impl RaftStateMachine<C> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let state = self.state.lock().expect("no panic while held");
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            {
                let mut state = self.state.lock().expect("no panic while held");
                state.last_applied = Some(entry.log_id());
                match &entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(value) => {
                        state.applied_count += 1;
                        state.applied_size += value.0.len() as u64;
                    }
                    EntryPayload::Membership(membership) => {
                        state.membership =
                            StoredMembershipOf::<C>::new(Some(entry.log_id()), membership.clone());
                    }
                }
            }
            if let Some(responder) = responder {
                responder.send(Applied);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let state: SmState = bincode::deserialize(&data).map_err(io::Error::other)?;
        *self.state.lock().expect("no panic while held") = state;
        *self.snapshot.lock().expect("no panic while held") = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<C, Self::SnapshotData>>, io::Error> {
        Ok(self
            .snapshot
            .lock()
            .expect("no panic while held")
            .as_ref()
            .map(|(meta, data)| SnapshotOf::<C, Cursor<Vec<u8>>> {
                meta: meta.clone(),
                snapshot: Cursor::new(data.clone()),
            }))
    }
}

#[derive(Serialize, Deserialize)]
enum Request {
    Append(AppendEntriesRequest<C>),
    Vote(VoteRequest<C>),
    PreVote(VoteRequest<C>),
    Snapshot {
        vote: VoteOf<C>,
        meta: SnapshotMetaOf<C>,
        data: Vec<u8>,
    },
}

#[derive(Serialize, Deserialize)]
enum Response {
    Append(Result<AppendEntriesResponse<C>, String>),
    Vote(Result<VoteResponse<C>, String>),
    Snapshot(Result<SnapshotResponse<C>, String>),
}

/// Creates one TCP client per (peer, kind) that openraft asks for.
#[derive(Clone)]
pub struct Network {
    addrs: Arc<BTreeMap<u64, SocketAddr>>,
}

impl RaftNetworkFactory<C> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, _node: &()) -> Peer {
        Peer {
            addr: self.addrs[&target],
            stream: None,
            buf: Vec::new(),
        }
    }
}

/// One connection to a peer: each call writes a request and reads its response.
pub struct Peer {
    addr: SocketAddr,
    stream: Option<tokio::io::BufStream<TcpStream>>,
    buf: Vec<u8>,
}

fn unreachable(error: io::Error) -> RPCError<C> {
    RPCError::Unreachable(Unreachable::new(&error))
}

impl Peer {
    async fn call(&mut self, request: &Request) -> Result<Response, io::Error> {
        use tokio::io::AsyncWriteExt;
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(tokio::io::BufStream::with_capacity(
                1 << 16,
                1 << 16,
                stream,
            ));
        }
        let stream = self.stream.as_mut().expect("connected above");
        let result = async {
            net::write_frame(stream, request, &mut self.buf).await?;
            stream.flush().await?;
            net::read_frame(stream, &mut self.buf).await
        }
        .await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }
}

impl RaftNetworkV2<C> for Peer {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        match self
            .call(&Request::Append(rpc))
            .await
            .map_err(unreachable)?
        {
            Response::Append(r) => r.map_err(|e| unreachable(io::Error::other(e))),
            _ => Err(unreachable(io::Error::other("wrong response kind"))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        _option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        match self.call(&Request::Vote(rpc)).await.map_err(unreachable)? {
            Response::Vote(r) => r.map_err(|e| unreachable(io::Error::other(e))),
            _ => Err(unreachable(io::Error::other("wrong response kind"))),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        _option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        match self
            .call(&Request::PreVote(rpc))
            .await
            .map_err(unreachable)?
        {
            Response::Vote(r) => r.map_err(|e| unreachable(io::Error::other(e))),
            _ => Err(unreachable(io::Error::other("wrong response kind"))),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Self::SnapshotData>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let request = Request::Snapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot.into_inner(),
        };
        let unreachable = |e: io::Error| StreamingError::Unreachable(Unreachable::new(&e));
        match self.call(&request).await.map_err(unreachable)? {
            Response::Snapshot(r) => r.map_err(|e| unreachable(io::Error::other(e))),
            _ => Err(unreachable(io::Error::other("wrong response kind"))),
        }
    }
}

async fn serve(listener: TcpListener, raft: BenchRaft) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let raft = raft.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut stream = tokio::io::BufStream::with_capacity(1 << 16, 1 << 16, stream);
            let mut buf = Vec::new();
            while let Ok(request) = net::read_frame::<Request, _>(&mut stream, &mut buf).await {
                let response = match request {
                    Request::Append(rpc) => {
                        Response::Append(raft.append_entries(rpc).await.map_err(|e| e.to_string()))
                    }
                    Request::Vote(rpc) => {
                        Response::Vote(raft.vote(rpc).await.map_err(|e| e.to_string()))
                    }
                    Request::PreVote(rpc) => {
                        Response::Vote(raft.pre_vote(rpc).await.map_err(|e| e.to_string()))
                    }
                    Request::Snapshot { vote, meta, data } => {
                        let snapshot = SnapshotOf::<C, Cursor<Vec<u8>>> {
                            meta,
                            snapshot: Cursor::new(data),
                        };
                        Response::Snapshot(
                            raft.install_full_snapshot(vote, snapshot)
                                .await
                                .map_err(|e| e.to_string()),
                        )
                    }
                };
                if net::write_frame(&mut stream, &response, &mut buf)
                    .await
                    .is_err()
                    || stream.flush().await.is_err()
                {
                    return;
                }
            }
        });
    }
}

/// Runs the openraft side and returns its report.
pub fn run(load: &Load, dir: &Path) -> Result<(Report, BTreeMap<String, u64>), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let bound = net::bind_three().map_err(|e| e.to_string())?;
        let addrs: Arc<BTreeMap<u64, SocketAddr>> = Arc::new(
            bound
                .iter()
                .enumerate()
                .map(|(i, (a, _))| (i as u64 + 1, *a))
                .collect(),
        );
        let config = Arc::new(
            openraft::Config {
                cluster_name: "synod-peers".into(),
                // As OmniPaxos's 500 ms: a busy 2-core box must not trigger elections.
                heartbeat_interval: 100,
                election_timeout_min: 500,
                election_timeout_max: 1000,
                ..Default::default()
            }
            .validate()
            .map_err(|e| e.to_string())?,
        );
        let mut rafts = Vec::new();
        let mut stats: Vec<Arc<WalStats>> = Vec::new();
        for (i, (_, listener)) in bound.into_iter().enumerate() {
            let id = i as u64 + 1;
            let wal = Wal::open(&dir.join(format!("openraft-{id}"))).map_err(|e| e.to_string())?;
            stats.push(Arc::clone(&wal.stats));
            let log = LogStore {
                inner: Arc::default(),
                wal,
            };
            let network = Network {
                addrs: Arc::clone(&addrs),
            };
            let raft = Raft::new(
                id,
                Arc::clone(&config),
                network,
                log,
                StateMachine::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
            let listener = TcpListener::from_std(listener).map_err(|e| e.to_string())?;
            tokio::spawn(serve(listener, raft.clone()));
            rafts.push(raft);
        }
        rafts[0]
            .initialize(
                addrs
                    .keys()
                    .copied()
                    .collect::<std::collections::BTreeSet<u64>>(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let leader = wait_for_leader(&rafts).await?;
        eprintln!("openraft: leader is node {leader}");
        let raft = rafts[leader as usize - 1].clone();
        let submit: Submit = Arc::new(move |value| {
            let raft = raft.clone();
            Box::pin(async move {
                raft.client_write(Value(value))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        });
        let start = std::time::Instant::now();
        let outcome = load::run(load, submit).await;
        let elapsed = start.elapsed().as_secs_f64();
        let mut report = Report::new(VERSION.to_string(), load.value_size, &outcome);
        let sum = |f: fn(&WalStats) -> &AtomicU64| {
            stats
                .iter()
                .map(|s| f(s).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        let syncs = sum(|s| &s.syncs);
        report.fdatasyncs_per_s = syncs as f64 / elapsed;
        report.records_per_fdatasync = sum(|s| &s.records) as f64 / syncs.max(1) as f64;
        report.bytes_per_fdatasync = sum(|s| &s.bytes) as f64 / syncs.max(1) as f64;
        Ok((report, outcome.errors))
    })
}

async fn wait_for_leader(rafts: &[BenchRaft]) -> Result<u64, String> {
    for _ in 0..3000 {
        let mut seen = Vec::new();
        for raft in rafts {
            seen.push(raft.current_leader().await);
        }
        if let Some(leader) = seen[0] {
            if seen.iter().all(|s| *s == Some(leader)) {
                return Ok(leader);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("openraft: no leader agreed by all nodes after 30 s".into())
}
