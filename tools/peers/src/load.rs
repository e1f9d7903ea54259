//! Closed-loop clients and the report: `clients` tasks, each with one proposal in flight,
//! latency from submission to the leader's answer (decided/committed AND applied there).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;

/// Histograms the clients record into (client `i` uses `i % HISTOGRAM_SHARD_COUNT`), so
/// two worker threads rarely meet on one lock.
const HISTOGRAM_SHARD_COUNT: usize = 16;

/// Proposes one value and resolves once the leader has it chosen and applied.
pub type Submit =
    Arc<dyn Fn(Bytes) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The load of one run.
pub struct Load {
    /// Concurrent closed-loop clients.
    pub clients: usize,
    /// Bytes of each proposed value.
    pub value_size: usize,
    /// Seconds of load before measuring.
    pub warmup: f64,
    /// Seconds measured.
    pub seconds: f64,
}

/// What the clients saw in the measured window.
pub struct Outcome {
    /// Proposals answered successfully in the window.
    pub ok: u64,
    /// Failed proposals in the window, by the first 32 characters of the error.
    pub errors: BTreeMap<String, u64>,
    /// Seconds measured.
    pub window_s: f64,
    /// Latencies (ns) of the successful proposals in the window.
    pub histogram: Histogram<u64>,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("static bounds are valid")
}

/// Runs the closed loop on the current tokio runtime; progress goes to stderr.
pub async fn run(load: &Load, submit: Submit) -> Outcome {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let histograms: Arc<Vec<Mutex<Histogram<u64>>>> = Arc::new(
        (0..HISTOGRAM_SHARD_COUNT)
            .map(|_| Mutex::new(new_histogram()))
            .collect(),
    );
    let value = Bytes::from(vec![0xA5u8; load.value_size]);
    let mut tasks = Vec::with_capacity(load.clients);
    for client in 0..load.clients {
        let (measuring, stop, done, ok) = (
            Arc::clone(&measuring),
            Arc::clone(&stop),
            Arc::clone(&done),
            Arc::clone(&ok),
        );
        let (errors, histograms, submit, value) = (
            Arc::clone(&errors),
            Arc::clone(&histograms),
            Arc::clone(&submit),
            value.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let result = submit(value.clone()).await;
                let elapsed = start.elapsed().as_nanos() as u64;
                done.fetch_add(1, Ordering::Relaxed);
                let counted = measuring.load(Ordering::Relaxed);
                match result {
                    Ok(()) if counted => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        let shard = &histograms[client % HISTOGRAM_SHARD_COUNT];
                        let _ = shard
                            .lock()
                            .expect("no client panics holding it")
                            .record(elapsed.max(1));
                    }
                    Ok(()) => {}
                    Err(error) => {
                        if counted {
                            *errors
                                .lock()
                                .expect("no client panics holding it")
                                .entry(error.chars().take(32).collect())
                                .or_default() += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        }));
    }
    let start = Instant::now();
    let mut measure_start = start;
    let mut last = (Instant::now(), 0u64);
    while start.elapsed().as_secs_f64() < load.warmup + load.seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let elapsed = start.elapsed().as_secs_f64();
        if !measuring.load(Ordering::Relaxed) && elapsed >= load.warmup {
            measuring.store(true, Ordering::Relaxed);
            measure_start = Instant::now();
        }
        let now = done.load(Ordering::Relaxed);
        eprintln!(
            "  {elapsed:>5.1} s  {:>10.0} ops/s{}",
            (now - last.1) as f64 / last.0.elapsed().as_secs_f64(),
            if measuring.load(Ordering::Relaxed) {
                ""
            } else {
                "  (warm-up)"
            }
        );
        last = (Instant::now(), now);
    }
    measuring.store(false, Ordering::Relaxed);
    let window_s = measure_start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let mut histogram = new_histogram();
    for shard in histograms.iter() {
        histogram
            .add(&*shard.lock().expect("no client panics holding it"))
            .expect("same bounds");
    }
    let errors = errors.lock().expect("no client panics holding it").clone();
    Outcome {
        ok: ok.load(Ordering::Relaxed),
        errors,
        window_s,
        histogram,
    }
}

/// One system's result, as printed and as passed to `compare` (one JSON line).
pub struct Report {
    /// "omnipaxos 0.2.4" etc.
    pub system: String,
    /// Proposals per second in the window.
    pub ops_per_s: f64,
    /// Payload megabytes (1e6) per second.
    pub mb_per_s: f64,
    /// Latency percentiles, microseconds.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest latency.
    pub max_us: f64,
    /// Successful proposals in the window.
    pub ok: u64,
    /// Failed proposals in the window.
    pub errors: u64,
    /// fdatasyncs per second, three replicas together, whole run.
    pub fdatasyncs_per_s: f64,
    /// Log records (entries and metadata) per fdatasync.
    pub records_per_fdatasync: f64,
    /// Log bytes per fdatasync.
    pub bytes_per_fdatasync: f64,
}

impl Report {
    /// Builds the report of `outcome` for `value_size`-byte values.
    pub fn new(system: String, value_size: usize, outcome: &Outcome) -> Report {
        let h = &outcome.histogram;
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        let ops = outcome.ok as f64 / outcome.window_s;
        Report {
            system,
            ops_per_s: ops,
            mb_per_s: ops * value_size as f64 / 1e6,
            p50_us: us(0.5),
            p90_us: us(0.9),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: h.max() as f64 / 1e3,
            ok: outcome.ok,
            errors: outcome.errors.values().sum(),
            fdatasyncs_per_s: 0.0,
            records_per_fdatasync: 0.0,
            bytes_per_fdatasync: 0.0,
        }
    }

    /// The human lines, in the same format as `synod bench` prints them.
    pub fn print(&self, errors: &BTreeMap<String, u64>) {
        println!(
            "throughput: {:.0} ops/s, {:.2} MB/s payload ({} ok{})",
            self.ops_per_s,
            self.mb_per_s,
            self.ok,
            if errors.is_empty() {
                String::new()
            } else {
                format!(", errors {errors:?}")
            }
        );
        println!(
            "latency: p50 {:.0} us, p90 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us",
            self.p50_us, self.p90_us, self.p99_us, self.p999_us, self.max_us
        );
        println!(
            "log (3 replicas together, whole run incl. warm-up): {:.0} fdatasyncs/s, {:.1} records \
             and {:.0} bytes per fdatasync",
            self.fdatasyncs_per_s, self.records_per_fdatasync, self.bytes_per_fdatasync
        );
    }

    /// One line of JSON.
    pub fn json(&self) -> String {
        format!(
            "{{\"system\":{:?},\"ops_per_s\":{:.1},\"mb_per_s\":{:.3},\"p50_us\":{:.1},\
             \"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\"ok\":{},\
             \"errors\":{},\"fdatasyncs_per_s\":{:.1},\"records_per_fdatasync\":{:.2},\
             \"bytes_per_fdatasync\":{:.0}}}",
            self.system,
            self.ops_per_s,
            self.mb_per_s,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.ok,
            self.errors,
            self.fdatasyncs_per_s,
            self.records_per_fdatasync,
            self.bytes_per_fdatasync
        )
    }
}
