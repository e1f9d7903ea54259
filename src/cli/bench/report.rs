//! `synod bench --report DIR`: pictures to look at rather than figures to read.
//! Writes `throughput.svg` (successful proposals per second over time, warm-up
//! shaded), `latency-cdf.svg` (latency by percentile, the tail stretched out on a log
//! axis), `summary.json` (what `--json` prints) and `index.html` showing both.

use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

use super::load::BUCKET_MS;
use super::summary::Summary;

const SIZE: (u32, u32) = (960, 480);

/// Writes the report of one run into `dir` (created if missing).
pub fn write(
    dir: &Path,
    title: &str,
    summary: &Summary,
    warmup_s: f64,
    json: &Value,
) -> Result<(), String> {
    let e = |what: &str, e: &dyn std::fmt::Display| format!("{}: {what}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(|x| e("create", &x))?;
    throughput(&dir.join("throughput.svg"), title, summary, warmup_s)
        .map_err(|x| e("throughput.svg", &x))?;
    latency_cdf(&dir.join("latency-cdf.svg"), title, summary)
        .map_err(|x| e("latency-cdf.svg", &x))?;
    let pretty = serde_json::to_string_pretty(json).map_err(|x| e("json", &x))?;
    std::fs::write(dir.join("summary.json"), pretty).map_err(|x| e("summary.json", &x))?;
    let lines = summary_lines(summary);
    let html = format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>synod bench</title>\n\
         <h1>synod bench</h1>\n<p>{}</p>\n<pre>{}</pre>\n\
         <img src=\"throughput.svg\" alt=\"throughput over time\">\n\
         <img src=\"latency-cdf.svg\" alt=\"latency by percentile\">\n\
         <p>All figures: <a href=\"summary.json\">summary.json</a></p>\n",
        escape(title),
        escape(&lines.join("\n"))
    );
    std::fs::write(dir.join("index.html"), html).map_err(|x| e("index.html", &x))
}

fn summary_lines(s: &Summary) -> Vec<String> {
    let l = &s.latency;
    vec![
        format!("{:.0} ops/s, {:.2} MB/s payload", s.ops_per_s, s.mb_per_s),
        format!(
            "latency p50 {:.0} us, p90 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us",
            l.p50, l.p90, l.p99, l.p999, l.max
        ),
        format!(
            "{:.2} values per instance, {:.1} records per fdatasync, {:.0} fdatasyncs/s",
            s.values_per_instance, s.records_per_fdatasync, s.fdatasyncs_per_s
        ),
    ]
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

fn throughput(path: &Path, title: &str, s: &Summary, warmup_s: f64) -> Drawn {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let bucket_s = BUCKET_MS as f64 / 1e3;
    let end_s = s.throughput.len() as f64 * bucket_s;
    let top = s.throughput.iter().copied().fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("throughput per {BUCKET_MS} ms: {title}"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..end_s, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the load started (grey: warm-up, not measured)")
        .y_desc("successful proposals per second")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    chart.draw_series(std::iter::once(Rectangle::new(
        [(0.0, 0.0), (warmup_s, top)],
        RGBColor(225, 225, 225).filled(),
    )))?;
    // A point at the middle of each bucket.
    chart.draw_series(LineSeries::new(
        s.throughput
            .iter()
            .enumerate()
            .map(|(i, v)| ((i as f64 + 0.5) * bucket_s, *v)),
        BLUE.stroke_width(2),
    ))?;
    root.present()?;
    Ok(())
}

fn latency_cdf(path: &Path, title: &str, s: &Summary) -> Drawn {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    // x = 1 / (1 - quantile): 1 is the minimum, 10 is p90, 100 p99, 1000 p99.9.
    let points: Vec<(f64, f64)> = s
        .cdf
        .iter()
        .filter(|(q, _)| *q < 1.0)
        .map(|(q, v)| (1.0 / (1.0 - q), v / 1e3))
        .collect();
    let right = points.iter().map(|p| p.0).fold(1e3, f64::max) * 1.5;
    let top = s.latency.max / 1e3 * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("latency by percentile: {title}"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d((1.0..right).log_scale(), 0.0..top.max(0.001))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| {
            let percentile = 100.0 * (1.0 - 1.0 / x);
            if percentile < 0.5 {
                "0%".to_string()
            } else {
                format!("{}%", trim(percentile))
            }
        })
        .y_label_formatter(&|v| format!("{v:.1}"))
        .draw()?;
    chart.draw_series(LineSeries::new(points, RED.stroke_width(2)))?;
    root.present()?;
    Ok(())
}

/// 99.9000 -> "99.9".
fn trim(percentile: f64) -> String {
    let text = format!("{percentile:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
