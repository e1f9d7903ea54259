//! `synod-peers compare`: the disk's limit, then synod's own `synod bench`, then each peer
//! in a child process of this binary, all on the same value size and clients; one table.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::disk;
use crate::Options;

/// One row of the table.
struct Row {
    system: String,
    ops_per_s: f64,
    mb_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    note: String,
}

/// Runs the comparison and prints the table.
pub fn main(o: &Options) -> Result<(), String> {
    std::fs::create_dir_all(&o.dir).map_err(|e| format!("{}: {e}", o.dir.display()))?;
    let limit = disk::fdatasync_limit(&o.dir, 2.0)?;
    eprintln!(
        "disk limit: 4 KiB O_DIRECT write + fdatasync {:.0}/s, p50 {:.0} us, p99 {:.0} us",
        limit.syncs_per_s, limit.p50_us, limit.p99_us
    );
    let mut rows = Vec::new();
    for system in &o.only {
        let row = match system.as_str() {
            "synod" => run_synod(o)?,
            "omnipaxos" | "openraft" => run_peer(system, o)?,
            _ => return Err(format!("--only: unknown system {system}")),
        };
        rows.push(row);
    }
    println!();
    println!(
        "3 replicas on loopback TCP, fdatasync before ack, 1 group, {} B values, {} closed-loop \
         clients, {} s after {} s warm-up",
        o.value_size, o.clients, o.seconds, o.warmup
    );
    println!(
        "disk: 4 KiB O_DIRECT write + fdatasync {:.0}/s (p50 {:.0} us, p99 {:.0} us), measured \
         just before the runs in {}",
        limit.syncs_per_s,
        limit.p50_us,
        limit.p99_us,
        o.dir.display()
    );
    println!(
        "{:<26} {:>10} {:>9} {:>9} {:>9} {:>9}  notes",
        "system", "ops/s", "MB/s", "p50 us", "p99 us", "p99.9 us"
    );
    for row in &rows {
        println!(
            "{:<26} {:>10.0} {:>9.2} {:>9.0} {:>9.0} {:>9.0}  {}",
            row.system, row.ops_per_s, row.mb_per_s, row.p50_us, row.p99_us, row.p999_us, row.note
        );
    }
    let synod = rows.iter().find(|r| r.system.starts_with("synod"));
    let best = rows
        .iter()
        .filter(|r| !r.system.starts_with("synod"))
        .max_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s));
    if let (Some(synod), Some(best)) = (synod, best) {
        println!(
            "synod / best peer ({}), ops/s: {:.2}",
            best.system,
            synod.ops_per_s / best.ops_per_s.max(1e-9)
        );
    }
    Ok(())
}

fn default_synod() -> PathBuf {
    // tools/peers/ -> the repository's release build.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/synod")
}

fn run_synod(o: &Options) -> Result<Row, String> {
    let binary = o.synod.clone().unwrap_or_else(default_synod);
    let mut args: Vec<String> = [
        "bench",
        "--value-size",
        &o.value_size.to_string(),
        "--clients",
        &o.clients.to_string(),
        "--groups",
        "1",
        // Every client can have its proposal in flight (each its own instance), as
        // the peers pipeline all their clients' entries.
        "--window",
        &o.clients.max(64).to_string(),
        "--seconds",
        &o.seconds.to_string(),
        "--warmup",
        &o.warmup.to_string(),
        "--dir",
        &o.dir.join("synod").to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push("--json".into());
    let mut output = run(&binary, &args)?;
    if !output.0 && output.2.contains("--json") {
        // A synod without `bench --json`: parse its human lines instead.
        args.pop();
        output = run(&binary, &args)?;
    }
    let (ok, stdout, stderr) = output;
    if !ok {
        return Err(format!(
            "{} bench failed:\n{stdout}\n{stderr}",
            binary.display()
        ));
    }
    let mut row = parse_json(&stdout)
        .or_else(|| parse_human(&stdout))
        .ok_or_else(|| format!("cannot read synod bench's output:\n{stdout}"))?;
    row.system = "synod".into();
    row.note = stdout
        .lines()
        .find(|l| l.starts_with("disk limit:"))
        .map(|l| format!("(own probe: {})", l.trim_start_matches("disk limit: ")))
        .unwrap_or_default();
    Ok(row)
}

fn run_peer(system: &str, o: &Options) -> Result<Row, String> {
    let binary = std::env::current_exe().map_err(|e| e.to_string())?;
    let args: Vec<String> = vec![
        system.into(),
        "--value-size".into(),
        o.value_size.to_string(),
        "--clients".into(),
        o.clients.to_string(),
        "--seconds".into(),
        o.seconds.to_string(),
        "--warmup".into(),
        o.warmup.to_string(),
        "--dir".into(),
        o.dir.to_string_lossy().into_owned(),
        "--json".into(),
    ];
    let (ok, stdout, stderr) = run(&binary, &args)?;
    if !ok {
        return Err(format!("{system} failed:\n{stdout}\n{stderr}"));
    }
    parse_json(&stdout).ok_or_else(|| format!("cannot read {system}'s output:\n{stdout}"))
}

/// Runs `binary args`, passing its stderr (progress) through; (success, stdout, stderr).
fn run(binary: &Path, args: &[String]) -> Result<(bool, String, String), String> {
    eprintln!("+ {} {}", binary.display(), args.join(" "));
    let output = Command::new(binary)
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    eprint!("{stderr}");
    eprint!("{stdout}");
    Ok((output.status.success(), stdout, stderr))
}

fn parse_json(stdout: &str) -> Option<Row> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))?;
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let f = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
    // Latencies are flat (`p50_us`, the peers) or nested (`latency_us.p50`, synod).
    let latency = |flat: &str, nested: &str| {
        f(flat).or_else(|| {
            v.get("latency_us")
                .and_then(|l| l.get(nested))
                .and_then(serde_json::Value::as_f64)
        })
    };
    Some(Row {
        system: v
            .get("system")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("synod")
            .to_string(),
        ops_per_s: f("ops_per_s")?,
        mb_per_s: f("mb_per_s")?,
        p50_us: latency("p50_us", "p50")?,
        p99_us: latency("p99_us", "p99")?,
        p999_us: latency("p999_us", "p999")?,
        note: match (f("fdatasyncs_per_s"), f("records_per_fdatasync")) {
            (Some(rate), Some(records)) => {
                format!("{rate:.0} fdatasyncs/s (3 replicas), {records:.1} records per sync")
            }
            _ => String::new(),
        },
    })
}

/// `throughput: N ops/s, X MB/s payload` and
/// `latency: p50 A us, p90 B us, p99 C us, p99.9 D us, max E us`.
fn parse_human(stdout: &str) -> Option<Row> {
    let numbers = |prefix: &str| -> Option<Vec<f64>> {
        let line = stdout.lines().find(|l| l.starts_with(prefix))?;
        Some(
            line.split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .filter_map(|w| w.parse::<f64>().ok())
                .collect(),
        )
    };
    let throughput = numbers("throughput:")?;
    // "p99.9" contributes a 99.9 before its value: keep only the values after each label.
    let latency_line = stdout.lines().find(|l| l.starts_with("latency:"))?;
    let value_after = |label: &str| -> Option<f64> {
        let rest = latency_line.split(label).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    };
    Some(Row {
        system: "synod".into(),
        ops_per_s: *throughput.first()?,
        mb_per_s: *throughput.get(1)?,
        p50_us: value_after("p50 ")?,
        p99_us: value_after("p99 ")?,
        p999_us: value_after("p99.9 ")?,
        note: String::new(),
    })
}
