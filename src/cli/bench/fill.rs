//! Writing a given amount into the local cluster, for the modes that measure what
//! follows a load rather than the load itself (`catch_up`, `restart`): `--clients`
//! tasks on one glommio client thread, closed loop, round-robin over the groups, each
//! proposal sent to its group's leader as last known, until a byte budget is spent or
//! a node's history holds a number of instances.
//!
//! Invariants: values are counted once acknowledged (a failed proposal is counted
//! as an error, never as written); a byte budget is reserved before sending, so the
//! writers stop within one value per client of it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use synod::api::NodeHandle;
use synod::paxos::{GroupId, NodeId};
use synod::prng::Prng;
use synod::runtime::clock::{entropy_seed, MonotonicClock};
use synod::wal::dma_disk::run_local;

use super::options::Options;

/// How often the instance count of `Until::Instances` is read, and progress shown.
const POLL_MS: u64 = 250;
/// Pause of a writer after a failed proposal (a leader change, a stopped node).
const BACKOFF_MS: u64 = 2;

/// When the writers stop.
#[derive(Clone, Copy, Debug)]
pub enum Until {
    /// Once this many bytes of values were sent (reserved before sending).
    Bytes(u64),
    /// Once node `node`'s groups have chosen this many instances in all (the sum of
    /// their `chosen_through`).
    Instances {
        /// The node whose history is counted.
        node: NodeId,
        /// Instances summed over its groups.
        count: u64,
    },
}

/// What the writers did.
#[derive(Clone, Debug, Default)]
pub struct Written {
    /// Values acknowledged.
    pub values: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Seconds from the first proposal to the last answer.
    pub seconds: f64,
    /// Failed proposals, by error.
    pub errors: BTreeMap<String, u64>,
}

/// What the writer tasks share (one thread).
#[derive(Clone)]
struct Shared {
    handles: BTreeMap<NodeId, NodeHandle>,
    leaders: Rc<RefCell<BTreeMap<GroupId, NodeId>>>,
    written: Rc<RefCell<Written>>,
    /// Bytes reserved by writers (`Until::Bytes`).
    reserved: Rc<Cell<u64>>,
    stop: Rc<Cell<bool>>,
    source: Bytes,
    until: Until,
    groups: u32,
    clients: u64,
}

/// Writes into the nodes of `handles` (the running ones) until `until`, with the
/// load flags of `o` (clients, groups, value sizes); `leaders` is where proposals go
/// first. Progress lines go to stderr when `progress`.
pub fn run(
    o: &Options,
    handles: &BTreeMap<NodeId, NodeHandle>,
    leaders: &BTreeMap<GroupId, NodeId>,
    until: Until,
    progress: bool,
) -> Result<Written, String> {
    if let Until::Instances { node, .. } = until {
        if !handles.contains_key(&node) {
            return Err(format!("node {} is not running", node.0));
        }
    }
    let mut source = vec![0u8; o.value_sizes.max()];
    Prng::new(entropy_seed()).fill(&mut source);
    let shared = Shared {
        handles: handles.clone(),
        leaders: Rc::new(RefCell::new(leaders.clone())),
        written: Rc::new(RefCell::new(Written::default())),
        reserved: Rc::new(Cell::new(0)),
        stop: Rc::new(Cell::new(false)),
        source: Bytes::from(source),
        until,
        groups: o.groups,
        clients: o.clients as u64,
    };
    let o = o.clone();
    run_local(async move { drive(o, shared, progress).await }).map_err(|e| e.to_string())?
}

async fn drive(o: Options, shared: Shared, progress: bool) -> Result<Written, String> {
    let clock = MonotonicClock::start();
    let tasks: Vec<_> = (0..o.clients)
        .map(|client| glommio::spawn_local(writer(client, o.clone(), shared.clone())))
        .collect();
    let mut last_line_s = 0.0;
    while !shared.stop.get() {
        glommio::timer::sleep(Duration::from_millis(POLL_MS)).await;
        let (values, bytes) = {
            let w = shared.written.borrow();
            (w.values, w.bytes)
        };
        let instances = match shared.until {
            Until::Bytes(_) => None,
            Until::Instances { node, count } => {
                let handle = shared.handles.get(&node).ok_or("node gone")?;
                let chosen = history(handle).await?;
                if chosen >= count {
                    shared.stop.set(true);
                }
                Some(chosen)
            }
        };
        let elapsed = clock.elapsed_s();
        if progress && elapsed - last_line_s >= 5.0 {
            last_line_s = elapsed;
            eprintln!(
                "  {elapsed:.0} s: {values} values, {:.0} MiB{}",
                bytes as f64 / f64::from(1u32 << 20),
                instances.map_or(String::new(), |n| format!(", {n} instances"))
            );
        }
    }
    for task in tasks {
        task.await;
    }
    let mut written = shared.written.borrow().clone();
    written.seconds = clock.elapsed_s();
    Ok(written)
}

/// The instances node `handle`'s groups have chosen, summed (its history).
pub async fn history(handle: &NodeHandle) -> Result<u64, String> {
    let shards = handle.status().await.map_err(|e| e.to_string())?;
    Ok(shards
        .iter()
        .flat_map(|s| &s.groups)
        .map(|g| g.chosen_through.0)
        .sum())
}

/// Writer task `client`: one proposal in flight, round-robin over the groups, until
/// told to stop or the byte budget is spent.
async fn writer(client: usize, o: Options, s: Shared) {
    let mut prng = Prng::new(entropy_seed() ^ client as u64);
    let mut turn = client as u64;
    let live: Vec<NodeId> = s.handles.keys().copied().collect();
    if live.is_empty() {
        return;
    }
    while !s.stop.get() {
        let size = o.value_sizes.draw(&mut prng);
        if let Until::Bytes(budget) = s.until {
            let reserved = s.reserved.get();
            if reserved >= budget {
                s.stop.set(true);
                break;
            }
            s.reserved.set(reserved + size as u64);
        }
        let group = GroupId((turn % u64::from(s.groups)) as u32);
        turn += s.clients;
        let value = s.source.slice(..size);
        // Until acknowledged: a proposal that failed is sent again (to the hinted
        // leader, or the next running node).
        loop {
            let leader = s.leaders.borrow().get(&group).copied();
            let target = leader
                .filter(|l| s.handles.contains_key(l))
                .unwrap_or(live[(turn as usize) % live.len()]);
            let Some(handle) = s.handles.get(&target) else {
                return;
            };
            match handle.propose(group, value.clone()).await {
                Ok(_) => {
                    let mut w = s.written.borrow_mut();
                    w.values += 1;
                    w.bytes += size as u64;
                    break;
                }
                Err(error) => {
                    let name: String = format!("{error:?}")
                        .chars()
                        .take_while(|c| c.is_alphanumeric())
                        .collect();
                    *s.written.borrow_mut().errors.entry(name).or_default() += 1;
                    let next = match error {
                        synod::api::Error::NotLeader { hint: Some(hint) } => hint,
                        _ => {
                            live[(live.iter().position(|n| *n == target).unwrap_or(0) + 1)
                                % live.len()]
                        }
                    };
                    s.leaders.borrow_mut().insert(group, next);
                    if s.stop.get() {
                        return;
                    }
                    glommio::timer::sleep(Duration::from_millis(BACKOFF_MS)).await;
                }
            }
        }
    }
}
