//! The load of `synod bench`, on one glommio client thread: closed loop (`--clients`
//! tasks, one proposal in flight each) or open loop (`--rate`: proposal `k` is
//! scheduled at `k / rate` seconds, whatever completed; its latency counts from the
//! scheduled time, so a stall is charged to every request it delayed — no coordinated
//! omission). Completions are counted per [`BUCKET_MS`] bucket for the report, and the
//! cluster's counters and CPU times are sampled when measuring starts and stops.
//!
//! Invariants: in the open loop at most `--clients` proposals are in flight (a request
//! past that waits for a free slot, its latency still running); nothing is issued after
//! the end plus [`DRAIN_S`]: what was scheduled and not issued by then is `missed`.
//!
//! The load goes to a local cluster's `NodeHandle`s, or with `--target` to a running
//! cluster through `synod::client` ([`Target`]); the rest is the same.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use synod::api::NodeHandle;
use synod::client::{Client, Error as ClientError, ServerError};
use synod::paxos::{GroupId, NodeId};
use synod::prng::Prng;
use synod::runtime::clock::{entropy_seed, MonotonicClock};
use synod::wal::dma_disk::run_local;

use super::cluster::{current_thread_id, node_dir, remote_snapshot, snapshot, Cluster, Snapshot};
use super::options::{Options, ValueSizes};
use super::resources::{Held, ResourceSample, SAMPLE_EVERY_S};

/// Width of one throughput bucket.
pub const BUCKET_MS: u64 = 100;
/// How long after the end scheduled requests may still be issued (open loop).
pub const DRAIN_S: f64 = 2.0;
/// Highest latency the histogram records (60 s); above it a value is clamped.
const LATENCY_NS_MAX: u64 = 60_000_000_000;
/// Progress refresh period.
const REFRESH_MS: u64 = 100;

/// What the load measured.
pub struct Load {
    /// Latencies (ns) of successful proposals in the measured window: by completion
    /// time (closed loop) or by scheduled time (open loop).
    pub histogram: Histogram<u64>,
    /// Proposals that succeeded and completed in the measured window.
    pub ok: u64,
    /// Their payload bytes.
    pub ok_bytes: u64,
    /// Failed proposals in the measured window, by error.
    pub errors: BTreeMap<String, u64>,
    /// Open loop: requests scheduled in the window but never issued (the schedule ran
    /// more than `DRAIN_S` behind).
    pub missed: u64,
    /// Seconds measured (from the end of the warm-up to the stop).
    pub window_s: f64,
    /// Successful completions per `BUCKET_MS`, from the start of the warm-up.
    pub buckets: Vec<u64>,
    /// Counters when measuring started.
    pub before: Snapshot,
    /// Counters when measuring stopped.
    pub after: Snapshot,
    /// Memory and WAL bytes every `SAMPLE_EVERY_S` and at the end (local cluster
    /// only: a remote cluster's memory and disks are not visible from here).
    pub resources: Vec<ResourceSample>,
}

/// Shared between the client tasks of the one client thread.
struct Tally {
    histogram: Histogram<u64>,
    ok: u64,
    ok_bytes: u64,
    errors: BTreeMap<String, u64>,
    buckets: Vec<u64>,
    /// Outcomes whose measured time (see `Window`) is in the window.
    in_window: u64,
}

impl Tally {
    /// Counts one outcome: `started` is when the request was (or, in the open loop,
    /// should have been) sent, `ended` when it completed, both since the load began.
    fn record(&mut self, started: u64, ended: u64, size: usize, ok: Option<&str>, w: &Window) {
        let latency = (ended - started.min(ended)).clamp(1, LATENCY_NS_MAX);
        let measured_at = if w.open { started } else { ended };
        let in_window = (w.from_ns..w.to_ns).contains(&measured_at);
        let ended_in_window = (w.from_ns..w.to_ns).contains(&ended);
        self.in_window += u64::from(in_window);
        match ok {
            None => {
                if let Some(bucket) = self
                    .buckets
                    .get_mut((ended / (BUCKET_MS * 1_000_000)) as usize)
                {
                    *bucket += 1;
                }
                if in_window {
                    self.histogram
                        .record(latency)
                        .expect("clamped to the histogram's bounds");
                }
                if ended_in_window {
                    self.ok += 1;
                    self.ok_bytes += size as u64;
                }
            }
            Some(name) => {
                if in_window {
                    *self.errors.entry(name.to_string()).or_default() += 1;
                }
            }
        }
    }
}

/// The measured window, in ns since the load began.
#[derive(Clone, Copy)]
struct Window {
    from_ns: u64,
    to_ns: u64,
    open: bool,
}

/// Where the proposals go.
#[derive(Clone)]
enum Target {
    /// The local cluster's handles; each proposal goes to the group's leader as known.
    Local(BTreeMap<NodeId, NodeHandle>),
    /// A running cluster, through its client listeners (the client follows leaders).
    Remote(Client),
}

/// The name of an error variant, as counted in the summary (`NotLeader`, ...).
fn error_name(debug: &str) -> String {
    debug.chars().take_while(|c| c.is_alphanumeric()).collect()
}

impl Target {
    /// Proposes `value` to `group`; the error's name on failure, and the leader
    /// hint of a `NotLeader` answer.
    async fn propose(
        &self,
        leaders: &RefCell<BTreeMap<GroupId, NodeId>>,
        group: GroupId,
        value: Bytes,
    ) -> Result<(), (String, Option<NodeId>)> {
        match self {
            Target::Local(handles) => {
                let leader = leaders.borrow().get(&group).copied().unwrap_or(NodeId(1));
                let Some(handle) = handles.get(&leader) else {
                    return Err(("NoHandle".to_string(), None));
                };
                match handle.propose(group, value).await {
                    Ok(_) => Ok(()),
                    Err(synod::api::Error::NotLeader { hint }) => {
                        Err(("NotLeader".to_string(), hint))
                    }
                    Err(error) => Err((error_name(&format!("{error:?}")), None)),
                }
            }
            Target::Remote(client) => match client.propose(group, value).await {
                Ok(_) => Ok(()),
                Err(ClientError::Server(error)) => {
                    let hint = if let ServerError::NotLeader { hint } = error {
                        hint
                    } else {
                        None
                    };
                    Err((error_name(&format!("{error:?}")), hint))
                }
                Err(error) => Err((error_name(&format!("{error:?}")), None)),
            },
        }
    }

    /// Each local node's WAL directory (none for a remote cluster).
    fn wal_dirs(&self, o: &Options) -> BTreeMap<NodeId, std::path::PathBuf> {
        match self {
            Target::Local(handles) => handles.keys().map(|id| (*id, node_dir(o, *id))).collect(),
            Target::Remote(_) => BTreeMap::new(),
        }
    }

    /// What each local node's shards hold in memory (none for a remote cluster, or a
    /// node whose status cannot be read).
    async fn held(&self) -> BTreeMap<u32, Held> {
        let mut held = BTreeMap::new();
        if let Target::Local(handles) = self {
            for (id, handle) in handles {
                if let Ok(shards) = handle.status().await {
                    held.insert(id.0, Held::of(&shards));
                }
            }
        }
        held
    }

    async fn snapshot(&self, client_thread: Option<u32>) -> Result<Snapshot, String> {
        match self {
            Target::Local(handles) => snapshot(handles, client_thread).await,
            Target::Remote(client) => remote_snapshot(client, client_thread).await,
        }
    }
}

/// Runs the load of `o` against `cluster` on a fresh glommio executor on this thread;
/// `progress` says whether to show it (a bar on a terminal, lines otherwise).
pub fn run(o: &Options, cluster: &Cluster, progress: bool) -> Result<Load, String> {
    let target = Target::Local(cluster.handles.clone());
    let leaders = cluster.leaders.clone();
    let o = o.clone();
    run_local(async move { drive(o, target, leaders, progress).await })
        .map_err(|e| e.to_string())?
}

/// Runs the load of `o` against a running cluster through `client` (`--target`).
pub fn run_remote(o: &Options, client: &Client, progress: bool) -> Result<Load, String> {
    let target = Target::Remote(client.clone());
    let o = o.clone();
    run_local(async move { drive(o, target, BTreeMap::new(), progress).await })
        .map_err(|e| e.to_string())?
}

/// What the client tasks of one load share (one thread: `Rc`, `Cell`).
#[derive(Clone)]
struct Shared {
    target: Target,
    tally: Rc<RefCell<Tally>>,
    /// The leader of each group as last hinted.
    leaders: Rc<RefCell<BTreeMap<GroupId, NodeId>>>,
    /// Closed loop: set when the load ends.
    stop: Rc<Cell<bool>>,
    /// Open loop: the next proposal's ticket.
    next_ticket: Rc<Cell<u64>>,
    /// Random bytes; values are zero-copy slices of it.
    source: Bytes,
    sizes: ValueSizes,
    groups: u32,
    clients: u64,
    rate: Option<f64>,
    window: Window,
    clock: MonotonicClock,
}

/// Client task `client` of the load: one proposal in flight, closed loop (round-robin
/// over the groups until `stop`) or open loop (the next ticket at its scheduled time),
/// each outcome recorded in the tally.
async fn client_loop(client: usize, s: Shared) {
    let mut prng = Prng::new(entropy_seed() ^ client as u64);
    let mut turn = client as u64;
    loop {
        // Which request, to which group, when.
        let (group, scheduled) = match s.rate {
            None => {
                if s.stop.get() {
                    break;
                }
                let group = GroupId((turn % u64::from(s.groups)) as u32);
                turn += s.clients;
                (group, None)
            }
            Some(rate) => {
                let ticket = s.next_ticket.get();
                s.next_ticket.set(ticket + 1);
                let at = (ticket as f64 / rate * 1e9) as u64;
                if at >= s.window.to_ns {
                    break;
                }
                let now = s.clock.now().0;
                if now > s.window.to_ns + (DRAIN_S * 1e9) as u64 {
                    break;
                }
                // Early by less than the timer's resolution is sent now;
                // the latency then counts from the send (never understated).
                if at > now + 50_000 {
                    glommio::timer::sleep(Duration::from_nanos(at - now)).await;
                }
                (GroupId((ticket % u64::from(s.groups)) as u32), Some(at))
            }
        };
        let size = s.sizes.draw(&mut prng);
        let sent = s.clock.now().0;
        let result = s
            .target
            .propose(&s.leaders, group, s.source.slice(..size))
            .await;
        let ended = s.clock.now().0;
        let started = scheduled.map_or(sent, |at| at.min(sent));
        let error = result.err();
        if error.as_ref().is_some_and(|(name, _)| name == "NoHandle") {
            break;
        }
        s.tally.borrow_mut().record(
            started,
            ended,
            size,
            error.as_ref().map(|(name, _)| name.as_str()),
            &s.window,
        );
        if let Some((_, Some(hint))) = &error {
            s.leaders.borrow_mut().insert(group, *hint);
        }
        if error.is_some() && s.rate.is_none() {
            // A closed-loop client backs off instead of spinning on errors.
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }
}

async fn drive(
    o: Options,
    target: Target,
    leaders: BTreeMap<GroupId, NodeId>,
    progress: bool,
) -> Result<Load, String> {
    let client_thread = current_thread_id();
    let total_s = o.warmup + o.seconds;
    let window = Window {
        from_ns: (o.warmup * 1e9) as u64,
        to_ns: (total_s * 1e9) as u64,
        open: o.rate.is_some(),
    };
    let bucket_count = (total_s * 1000.0 / BUCKET_MS as f64).ceil() as usize;
    let tally = Rc::new(RefCell::new(Tally {
        histogram: Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3)
            .map_err(|e| format!("histogram: {e}"))?,
        ok: 0,
        ok_bytes: 0,
        errors: BTreeMap::new(),
        buckets: vec![0; bucket_count],
        in_window: 0,
    }));
    // One random source; values are zero-copy slices of it.
    let mut source = vec![0u8; o.value_sizes.max()];
    Prng::new(entropy_seed()).fill(&mut source);
    let clock = MonotonicClock::start();
    let shared = Shared {
        target: target.clone(),
        tally: Rc::clone(&tally),
        leaders: Rc::new(RefCell::new(leaders)),
        stop: Rc::new(Cell::new(false)),
        next_ticket: Rc::new(Cell::new(0)),
        source: Bytes::from(source),
        sizes: o.value_sizes.clone(),
        groups: o.groups,
        clients: o.clients as u64,
        rate: o.rate,
        window,
        clock,
    };
    let tasks: Vec<_> = (0..o.clients)
        .map(|client| glommio::spawn_local(client_loop(client, shared.clone())))
        .collect();

    let mut display = Display::new(&o, progress);
    let mut before = None;
    let mut last_line_s = 0.0;
    let wal_dirs = target.wal_dirs(&o);
    let mut resources = Vec::new();
    loop {
        glommio::timer::sleep(Duration::from_millis(REFRESH_MS)).await;
        let elapsed = clock.elapsed_s();
        if before.is_none() && elapsed >= o.warmup {
            before = Some(target.snapshot(client_thread).await?);
        }
        if elapsed >= total_s {
            break;
        }
        if !wal_dirs.is_empty() && elapsed >= SAMPLE_EVERY_S * (resources.len() + 1) as f64 {
            let sample = ResourceSample::take(elapsed, &wal_dirs, target.held().await);
            if progress {
                display.println(&sample.line());
            }
            resources.push(sample);
        }
        let ops_s = {
            let t = tally.borrow();
            // The last full second of buckets.
            let now_bucket = (elapsed * 1000.0 / BUCKET_MS as f64) as usize;
            let span = (1000 / BUCKET_MS) as usize;
            let from = now_bucket.saturating_sub(span);
            let seen = t.buckets[from..now_bucket.min(t.buckets.len())]
                .iter()
                .sum::<u64>();
            seen as f64 * 1000.0 / (BUCKET_MS as f64 * (now_bucket - from).max(1) as f64)
        };
        let warm = elapsed < o.warmup;
        display.update(elapsed, total_s, ops_s, warm);
        if !display.has_bar() && progress && elapsed - last_line_s >= 1.0 - 1e-3 {
            last_line_s = elapsed;
            display.line(elapsed, ops_s, warm);
        }
    }
    let after = target.snapshot(client_thread).await?;
    if !wal_dirs.is_empty() {
        let held = target.held().await;
        resources.push(ResourceSample::take(clock.elapsed_s(), &wal_dirs, held));
    }
    let window_s = o.seconds;
    shared.stop.set(true);
    drop(shared);
    display.finish();
    for task in tasks {
        task.await;
    }
    let mut tally = Rc::try_unwrap(tally)
        .map(RefCell::into_inner)
        .map_err(|_| "tally still shared".to_string())?;
    // Completions after the end (the last requests draining) are not plotted.
    tally
        .buckets
        .truncate((total_s * 1000.0 / BUCKET_MS as f64).ceil() as usize);
    // Tickets k with k / rate in [warm-up, end): each issued one was recorded.
    let missed = o.rate.map_or(0, |rate| {
        let first = (o.warmup * rate).ceil() as u64;
        let end = (total_s * rate).ceil() as u64;
        (end - first).saturating_sub(tally.in_window)
    });
    Ok(Load {
        histogram: tally.histogram,
        ok: tally.ok,
        ok_bytes: tally.ok_bytes,
        errors: tally.errors,
        missed,
        window_s,
        buckets: tally.buckets,
        before: before.unwrap_or_default(),
        after,
        resources,
    })
}

/// Live progress: an `indicatif` bar when stdout is a terminal and carries no JSON,
/// otherwise plain lines once a second (on stderr with `--json`).
struct Display {
    bar: Option<ProgressBar>,
    json: bool,
}

impl Display {
    fn new(o: &Options, progress: bool) -> Display {
        let terminal = std::io::stdout().is_terminal();
        let bar = (progress && terminal && !o.json).then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(((o.warmup + o.seconds) * 10.0).ceil() as u64),
                ProgressDrawTarget::stdout(),
            );
            if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:30}] {msg}") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Display { bar, json: o.json }
    }

    fn has_bar(&self) -> bool {
        self.bar.is_some()
    }

    fn update(&mut self, elapsed: f64, total: f64, ops_s: f64, warm: bool) {
        if let Some(bar) = &self.bar {
            bar.set_position((elapsed * 10.0) as u64);
            bar.set_message(format!(
                "{elapsed:.1}/{total:.1} s {ops_s:.0} ops/s{}",
                if warm { " (warm-up)" } else { "" }
            ));
        }
    }

    fn line(&self, elapsed: f64, ops_s: f64, warm: bool) {
        let line = format!(
            "  {elapsed:>5.1} s  {ops_s:>10.0} ops/s{}",
            if warm { "  (warm-up)" } else { "" }
        );
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    /// A line above the bar (or among the progress lines).
    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None if self.json => eprintln!("{line}"),
            None => println!("{line}"),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
