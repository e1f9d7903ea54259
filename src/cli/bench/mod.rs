//! `synod bench`: a local three-node cluster (real WALs with fdatasync, real TCP on
//! loopback) under load, with the machine's limits measured in the same run.
//!
//! Order of a run: the limits (`limits`: disk bandwidth, 4 KiB fdatasync latency,
//! loopback TCP), then a fresh cluster (`cluster`), the load with live progress
//! (`load`: closed or open loop), the figures (`summary`) and, with `--report`, the
//! pictures (`report`). `--matrix phxpaxos` (`matrix`) runs PhxPaxos's published
//! cells one after another, each on a fresh cluster. `--target` (`remote`) drives a
//! running cluster instead, through `synod::client`. Two modes measure what follows a
//! load rather than the load: `--catch-up` (`catch_up`: a follower down while MiBs are
//! written, then its catch-up rate) and `--restart` (`restart`: a follower's recovery
//! time at growing history sizes); both write through `fill`.

/// Prints a human line: on stdout, or on stderr when stdout carries JSON.
macro_rules! say {
    ($json:expr, $($arg:tt)*) => {
        if $json {
            eprintln!($($arg)*);
        } else {
            println!($($arg)*);
        }
    };
}

mod catch_up;
mod cluster;
mod fill;
mod limits;
mod load;
mod matrix;
mod options;
mod remote;
mod report;
mod resources;
mod restart;
mod summary;

use std::process::ExitCode;

use limits::Limits;
pub use options::BenchArgs;
use options::Options;
use summary::Summary;

/// Seconds of each limit probe (the fdatasync probe takes 1.5 times this).
const LIMIT_PROBE_S: f64 = 1.0;

/// Runs `synod bench`.
pub fn main(args: BenchArgs) -> Result<ExitCode, String> {
    let o = args.options();
    if o.target.is_some() {
        return main_remote(&o);
    }
    std::fs::create_dir_all(&o.dir).map_err(|e| format!("{}: {e}", o.dir.display()))?;
    say!(
        o.json,
        "synod bench: 3 nodes x {} shard(s){}, {}, window {}, {} s after {} s warm-up, {}, in {}",
        o.shards,
        if o.pin { " pinned" } else { "" },
        if o.matrix.is_some() {
            "the PhxPaxos matrix".to_string()
        } else if let Some(mib) = o.catch_up_mib {
            format!("catch-up of {mib} MiB, {}", matrix::title(&o))
        } else if !o.restart_instances.is_empty() {
            format!(
                "restart at {:?} instances, {}",
                o.restart_instances,
                matrix::title(&o)
            )
        } else {
            matrix::title(&o)
        },
        o.window,
        o.seconds,
        o.warmup,
        if o.fsync {
            "fdatasync on"
        } else {
            "UNSAFE: fdatasync OFF (acknowledged values are not durable)"
        },
        o.dir.display()
    );
    let limits = limits::measure(&o.dir, LIMIT_PROBE_S)?;
    say!(
        o.json,
        "limits: disk {:.0} MB/s (4 MiB O_DIRECT writes + fdatasync), read {:.0} MB/s (4 MiB O_DIRECT reads), copy {:.0} MB/s (reads overlapped with writes + fdatasync); 4 KiB write + fdatasync {:.0}/s, p50 {:.0} us, p99 {:.0} us; loopback TCP {:.0} MB/s (one stream)",
        limits.disk_mb_s,
        limits.disk_read_mb_s,
        limits.disk_copy_mb_s,
        limits.fsync_rate,
        limits.fsync_p50_us,
        limits.fsync_p99_us,
        limits.tcp_mb_s
    );
    if o.matrix.is_some() {
        matrix::run(&o, &limits)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(mib) = o.catch_up_mib {
        return catch_up::main(&o, &limits, mib);
    }
    if !o.restart_instances.is_empty() {
        return restart::main(&o);
    }
    let summary = run_one(&o, &limits, true)?;
    report_one(&o, &summary)
}

/// `synod bench --target`: the load against a running cluster.
fn main_remote(o: &Options) -> Result<ExitCode, String> {
    let target = o.target.as_deref().unwrap_or_default().join(",");
    say!(
        o.json,
        "synod bench: REMOTE cluster {} at {target}, {}, {} s after {} s warm-up; window, \
         batching, shards and fdatasync are the cluster's own configuration",
        o.cluster,
        matrix::title(o),
        o.seconds,
        o.warmup
    );
    say!(
        o.json,
        "limits: n/a (remote): the disk and the network are the cluster's; latency includes \
         the network to it"
    );
    let (client, shards) = remote::connect(o)?;
    let load = load::run_remote(o, &client, true)?;
    let summary = Summary::new(&load, &Limits::default(), shards);
    report_one(o, &summary)
}

/// Prints one run's summary (and its JSON with `--json`), writes its report with
/// `--report`; fails the process if a shard stopped.
fn report_one(o: &Options, summary: &Summary) -> Result<ExitCode, String> {
    say!(o.json, "");
    for line in summary.text(o) {
        say!(o.json, "{line}");
    }
    let json = summary.json(o);
    if let Some(dir) = &o.report {
        report::write(dir, &matrix::report_title(o), summary, o.warmup, &json)?;
        say!(o.json, "report: {}", dir.join("index.html").display());
    }
    if o.json {
        println!("{json}");
    }
    Ok(if summary.fatal.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One run of `o` on a fresh cluster: start it, load it, shut it down, sum up.
fn run_one(o: &Options, limits: &Limits, progress: bool) -> Result<Summary, String> {
    let cluster = cluster::Cluster::start(o)?;
    let load = load::run(o, &cluster, progress);
    let stopped = cluster.shutdown();
    let mut summary = Summary::new(&load?, limits, o.shards);
    for error in stopped.iter().map(ToString::to_string) {
        if !summary.fatal.contains(&error) {
            summary.fatal.push(error);
        }
    }
    Ok(summary)
}
