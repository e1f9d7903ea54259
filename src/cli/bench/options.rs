//! The flags of `synod bench` ([`BenchArgs`], with their `--help`), resolved once into
//! the [`Options`] of a run; value sizes as a fixed size, a uniform range or a weighted
//! mix ([`ValueSizes`]).

use std::path::PathBuf;

use clap::Args;
use synod::prng::Prng;

use crate::cli::{non_negative_f64, positive, positive_f64};

/// How the size of each proposed value is drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueSizes {
    /// Every value has this many bytes (`--value-size 100`).
    Fixed(usize),
    /// Uniform in `low..=high` bytes (`--value-size 64..4096`).
    Uniform(usize, usize),
    /// A weighted mix of (size, weight) (`--value-size 100:90,4096:10`).
    Weighted(Vec<(usize, u64)>),
}

impl ValueSizes {
    /// Parses the forms above (a clap value parser: the message names the part that
    /// is wrong, clap names the flag and the value).
    pub fn parse(text: &str) -> Result<ValueSizes, String> {
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("{s:?} is not a byte count"))
        };
        let sizes = if let Some((low, high)) = text.split_once("..") {
            let (low, high) = (number(low)?, number(high.trim_start_matches('='))?);
            if low > high {
                return Err("the range is empty".to_string());
            }
            ValueSizes::Uniform(low, high)
        } else if text.contains(':') {
            let mut mix = Vec::new();
            for item in text.split(',') {
                let (size, weight) = item
                    .split_once(':')
                    .ok_or_else(|| format!("{item:?} is not SIZE:WEIGHT"))?;
                let weight = weight
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("weight {weight:?} is not a number"))?;
                mix.push((number(size)?, weight));
            }
            if mix.iter().map(|(_, w)| w).sum::<u64>() == 0 {
                return Err("the weights sum to 0".to_string());
            }
            ValueSizes::Weighted(mix)
        } else {
            ValueSizes::Fixed(number(text)?)
        };
        if sizes.max() == 0 {
            return Err("values need at least one byte".to_string());
        }
        Ok(sizes)
    }

    /// The largest size that can be drawn.
    pub fn max(&self) -> usize {
        match self {
            ValueSizes::Fixed(size) => *size,
            ValueSizes::Uniform(_, high) => *high,
            ValueSizes::Weighted(mix) => mix.iter().map(|(s, _)| *s).max().unwrap_or(0),
        }
    }

    /// The expected size in bytes.
    pub fn mean(&self) -> f64 {
        match self {
            ValueSizes::Fixed(size) => *size as f64,
            ValueSizes::Uniform(low, high) => (*low + *high) as f64 / 2.0,
            ValueSizes::Weighted(mix) => {
                let total: u64 = mix.iter().map(|(_, w)| w).sum();
                mix.iter().map(|(s, w)| *s as f64 * *w as f64).sum::<f64>() / total as f64
            }
        }
    }

    /// One size drawn with `prng`.
    pub fn draw(&self, prng: &mut Prng) -> usize {
        match self {
            ValueSizes::Fixed(size) => *size,
            ValueSizes::Uniform(low, high) => prng.range(*low as u64, *high as u64) as usize,
            ValueSizes::Weighted(mix) => {
                let total: u64 = mix.iter().map(|(_, w)| w).sum();
                let mut pick = prng.below(total);
                for (size, weight) in mix {
                    if pick < *weight {
                        return *size;
                    }
                    pick -= weight;
                }
                unreachable!("pick < total = the sum of the weights")
            }
        }
    }
}

impl std::fmt::Display for ValueSizes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueSizes::Fixed(size) => write!(f, "{size} B"),
            ValueSizes::Uniform(low, high) => write!(f, "{low}..{high} B uniform"),
            ValueSizes::Weighted(mix) => {
                let parts: Vec<String> = mix.iter().map(|(s, w)| format!("{s}:{w}")).collect();
                write!(f, "mix {} (B:weight)", parts.join(","))
            }
        }
    }
}

/// The flags of `synod bench`. Defaults of the local cluster: 4 groups, 256 clients in a
/// closed loop, 100 B values, window 64, every value its own instance, 1 shard,
/// fdatasync on, files in ./synod-bench.
#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    /// Paxos groups; proposals go round-robin over them.
    #[arg(long, value_name = "G", default_value_t = 4,
          value_parser = positive::<u32>)]
    pub groups: u32,
    /// Closed loop: client tasks, one proposal in flight each. Open loop (--rate): the
    /// most proposals in flight; past it a scheduled request waits for a slot, its
    /// latency already running.
    #[arg(long, value_name = "C", default_value_t = 256,
          value_parser = positive::<usize>)]
    pub clients: usize,
    /// Bytes of each proposed value: `100` fixed; `64..4096` uniform (inclusive);
    /// `100:90,4096:10` a weighted mix (SIZE:WEIGHT). Contents are random bytes
    /// [default: 100; 65536 with --catch-up; 16 with --restart].
    #[arg(long, value_name = "B|LO..HI|B:W,...", value_parser = ValueSizes::parse)]
    pub value_size: Option<ValueSizes>,
    /// Open loop at OPS proposals per second: request k is scheduled at k / OPS s from
    /// the start, whatever has completed, and its latency counts from the scheduled
    /// time (a stall is charged to every request it delayed). Default: closed loop.
    #[arg(long, value_name = "OPS", value_parser = positive_f64, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Seconds measured, after the warm-up [default: 8; 5 with --matrix].
    #[arg(long, value_name = "S", value_parser = positive_f64, allow_negative_numbers = true)]
    pub seconds: Option<f64>,
    /// Seconds of load before measuring (running, not measured) [default: 2; 1 with
    /// --matrix].
    #[arg(long, value_name = "S", value_parser = non_negative_f64,
          allow_negative_numbers = true)]
    pub warmup: Option<f64>,
    /// `window_instances_max` of every group: instances a leader keeps in flight
    /// beyond its chosen watermark.
    #[arg(long, value_name = "W", default_value_t = 64,
          value_parser = positive::<u64>)]
    pub window: u64,
    /// `retention_instances_max` of every group: applied instances kept in memory
    /// (older ones are served from the WAL); `unbounded` keeps them all [default:
    /// 4096].
    #[arg(long, value_name = "N", value_parser = crate::cli::retention_instances)]
    pub retention_instances_max: Option<u64>,
    /// `retention_size_max` of every group: bytes of applied entries kept in memory;
    /// `unbounded` keeps them all [default: 16 MiB].
    #[arg(long, value_name = "B", value_parser = crate::cli::retention_size)]
    pub retention_size_max: Option<usize>,
    /// `batch_values_max`: values per instance (1 = every proposal its own instance).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = positive::<usize>)]
    pub batch: usize,
    /// `batch_size_max`: bytes per instance, at least the largest value [default:
    /// 1 MiB, raised to the largest value].
    #[arg(long, value_name = "B")]
    pub batch_bytes: Option<usize>,
    /// `checkpoint.instance_count`: take a group's checkpoint every N instances
    /// applied (0: not by instances); bounds what a restart replays [default: 100000].
    #[arg(long, value_name = "N")]
    pub checkpoint_instances: Option<u64>,
    /// `wal_writes_in_flight_max`: WAL writes (each with its fdatasync) a shard runs
    /// at once, 1..=8 [default: 2].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8))]
    pub wal_writes_in_flight: Option<u8>,
    /// Shards (cores) per node; groups spread over them.
    #[arg(long, value_name = "S", default_value_t = 1,
          value_parser = positive::<u16>)]
    pub shards: u16,
    /// Pin shard s of every node to core s % online cores (the 3 nodes share the
    /// cores).
    #[arg(long)]
    pub pin: bool,
    /// Where the WALs (node-N/, a fresh log each run on the last run's segment files)
    /// and the disk probe file (256 MiB, zero-filled once, reused) go.
    #[arg(long, value_name = "DIR", default_value = "synod-bench")]
    pub dir: PathBuf,
    /// Keep every WAL record: never truncate the log below the groups' checkpoints (the
    /// WALs then grow for the whole run).
    #[arg(long)]
    pub no_truncation: bool,
    /// UNSAFE: WAL writes without fdatasync (acknowledged values are not durable),
    /// printed as UNSAFE wherever it matters. Shows the CPU and network limit.
    #[arg(long)]
    pub no_fsync: bool,
    /// One JSON object on stdout with every figure; the human lines go to stderr.
    #[arg(long)]
    pub json: bool,
    /// Write throughput.svg, latency-cdf.svg, summary.json and index.html into DIR
    /// (matrix: one folder per cell and matrix.json).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Run a named matrix of cells instead of one run, each on a fresh cluster:
    /// `phxpaxos` runs PhxPaxos's published cells, printed beside its figures.
    #[arg(long, value_name = "NAME", value_parser = ["phxpaxos"])]
    pub matrix: Option<String>,
    /// Drive a running cluster through its nodes' client listeners (`synod serve
    /// --client` addresses) instead of starting a local one. The cluster's own
    /// configuration decides window, batching, shards, pinning, fdatasync and files,
    /// so those flags (and --matrix) cannot be used with it; limits print n/a and
    /// latency includes the network to the cluster.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',',
          value_parser = clap::builder::NonEmptyStringValueParser::new(),
          conflicts_with_all = LOCAL_ONLY)]
    pub target: Option<Vec<String>>,
    /// Catch-up mode: stop one follower, write MIB mebibytes of values to the other
    /// two, restart it and time until it has applied what the leaders chose in every
    /// group; MB/s printed beside the disk's read and write limits.
    #[arg(long, value_name = "MIB", value_parser = positive::<u64>,
          conflicts_with_all = ["matrix", "restart", "rate"])]
    pub catch_up: Option<u64>,
    /// Restart mode: load until one follower's history holds each of these instance
    /// counts (ascending; `100k`, `1M` accepted), and at each stop and reopen that
    /// node, timing its recovery (checkpoint restore + WAL suffix replay).
    #[arg(long, value_name = "N,...", value_delimiter = ',',
          value_parser = instance_count, conflicts_with_all = ["matrix", "rate"])]
    pub restart: Option<Vec<u64>>,
    /// The running cluster's id (its `synod serve --cluster`); with --target.
    #[arg(long, value_name = "C", default_value_t = 1, requires = "target")]
    pub cluster: u64,
    /// The running cluster's client key (hex, as `synod keygen` writes); with
    /// --target.
    #[arg(long, value_name = "FILE", requires = "target")]
    pub client_key_file: Option<PathBuf>,
}

/// Flags (clap ids) that configure the local cluster: with `--target`, the running
/// cluster's own configuration decides them, so they are refused.
const LOCAL_ONLY: [&str; 15] = [
    "window",
    "retention_instances_max",
    "retention_size_max",
    "batch",
    "batch_bytes",
    "shards",
    "no_fsync",
    "no_truncation",
    "pin",
    "dir",
    "matrix",
    "catch_up",
    "restart",
    "checkpoint_instances",
    "wal_writes_in_flight",
];

/// An instance count (a clap value parser for `--restart`): a whole number above
/// zero, with an optional `k` (thousand) or `M` (million) suffix.
fn instance_count(text: &str) -> Result<u64, String> {
    let (digits, scale) = match text.strip_suffix(['k', 'K']) {
        Some(digits) => (digits, 1_000),
        None => match text.strip_suffix('M') {
            Some(digits) => (digits, 1_000_000),
            None => (text, 1),
        },
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not an instance count (like 100k or 1M)"))?;
    match n.checked_mul(scale) {
        Some(count) if count > 0 => Ok(count),
        Some(_) => Err("must be above zero".to_string()),
        None => Err("too large".to_string()),
    }
}

impl BenchArgs {
    /// The checks that span flags: `--batch-bytes` must hold the largest value, and
    /// the counts of `--restart` ascend.
    pub fn validate(&self) -> Result<(), String> {
        let value_max = self.value_sizes().max();
        if let Some(bytes) = self.batch_bytes.filter(|bytes| *bytes < value_max) {
            return Err(format!(
                "--batch-bytes {bytes}: must hold the largest value ({value_max} B)"
            ));
        }
        if let Some(counts) = &self.restart {
            if counts.windows(2).any(|pair| pair[0] >= pair[1]) {
                return Err(format!("--restart {counts:?}: the counts must ascend"));
            }
        }
        Ok(())
    }

    /// `--value-size`, or the default of the mode: large values for catch-up (bytes
    /// dominate), tiny ones for restart (instances dominate), 100 B otherwise.
    fn value_sizes(&self) -> ValueSizes {
        self.value_size
            .clone()
            .unwrap_or(if self.catch_up.is_some() {
                ValueSizes::Fixed(64 << 10)
            } else if self.restart.is_some() {
                ValueSizes::Fixed(16)
            } else {
                ValueSizes::Fixed(100)
            })
    }

    /// The settings of the run; `--matrix` changes the defaults of `--seconds` and
    /// `--warmup` (short cells).
    pub fn options(self) -> Options {
        let matrix = self.matrix.is_some();
        Options {
            value_sizes: self.value_sizes(),
            groups: self.groups,
            clients: self.clients,
            rate: self.rate,
            seconds: self.seconds.unwrap_or(if matrix { 5.0 } else { 8.0 }),
            warmup: self.warmup.unwrap_or(if matrix { 1.0 } else { 2.0 }),
            window: self.window,
            retention_instances_max: self.retention_instances_max,
            retention_size_max: self.retention_size_max,
            batch: self.batch,
            batch_bytes: self.batch_bytes,
            shards: self.shards,
            checkpoint_instances: self.checkpoint_instances,
            wal_writes_in_flight: self.wal_writes_in_flight,
            pin: self.pin,
            dir: self.dir,
            fsync: !self.no_fsync,
            truncation: !self.no_truncation,
            json: self.json,
            report: self.report,
            matrix: self.matrix,
            target: self.target,
            cluster: self.cluster,
            client_key_file: self.client_key_file,
            catch_up_mib: self.catch_up,
            restart_instances: self.restart.unwrap_or_default(),
        }
    }
}

/// Every setting of one `synod bench` run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Groups of the cluster.
    pub groups: u32,
    /// Closed loop: client tasks, one proposal in flight each. Open loop: the most
    /// proposals in flight (a request past it waits, and its latency still counts
    /// from its scheduled time).
    pub clients: usize,
    /// Sizes of the proposed values.
    pub value_sizes: ValueSizes,
    /// Open loop at this many proposals per second (`None`: closed loop).
    pub rate: Option<f64>,
    /// Seconds measured.
    pub seconds: f64,
    /// Seconds of load before measuring.
    pub warmup: f64,
    /// `window_instances_max` of every group.
    pub window: u64,
    /// `retention_instances_max` of every group (`None`: the default).
    pub retention_instances_max: Option<u64>,
    /// `retention_size_max` of every group (`None`: the default).
    pub retention_size_max: Option<usize>,
    /// `batch_values_max`: values per instance (1 = every proposal its own instance).
    pub batch: usize,
    /// `batch_size_max` in bytes (`None`: the default, raised to the largest value).
    pub batch_bytes: Option<usize>,
    /// Shards (cores) per node.
    pub shards: u16,
    /// `checkpoint.instance_count` of every node (`None`: the default).
    pub checkpoint_instances: Option<u64>,
    /// `wal_writes_in_flight_max` of every node (`None`: the default).
    pub wal_writes_in_flight: Option<u8>,
    /// Pin shard `s` of every node to core `s % online cores`.
    pub pin: bool,
    /// Where the WALs, the probe file and the report go.
    pub dir: PathBuf,
    /// fdatasync on (false is UNSAFE: labelled in the output).
    pub fsync: bool,
    /// WAL truncation on (`--no-truncation`: off).
    pub truncation: bool,
    /// JSON on stdout (the human lines go to stderr).
    pub json: bool,
    /// Write a report (SVG pictures + JSON) into this directory.
    pub report: Option<PathBuf>,
    /// Run a named matrix of cells instead of one run (`phxpaxos`).
    pub matrix: Option<String>,
    /// Drive a running cluster at these client addresses ("HOST:PORT") instead of
    /// starting a local one (`--target`).
    pub target: Option<Vec<String>>,
    /// The running cluster's id (`--cluster`, with `--target`).
    pub cluster: u64,
    /// The client key of the running cluster (`--client-key-file`, with `--target`).
    pub client_key_file: Option<PathBuf>,
    /// Catch-up mode: MiB written while one follower is stopped (`--catch-up`).
    pub catch_up_mib: Option<u64>,
    /// Restart mode: the history sizes (instances, ascending) at which one follower
    /// is stopped and reopened (`--restart`); empty: not this mode.
    pub restart_instances: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, Synod};
    use clap::error::ErrorKind;
    use clap::Parser;

    /// `synod bench ARGS` parsed (the clap error on a bad command line).
    fn bench(args: &str) -> Result<BenchArgs, clap::Error> {
        let line = ["synod", "bench"]
            .into_iter()
            .chain(args.split_whitespace());
        match Synod::try_parse_from(line)?.command {
            Command::Bench(args) => Ok(args),
            other => panic!("not bench: {other:?}"),
        }
    }

    // Goal: the three forms of --value-size parse, draw within bounds and report means.
    // Method: parse each form, draw 1,000 sizes from a fixed seed.
    #[test]
    fn value_sizes_parse_and_draw() {
        let mut prng = Prng::new(7);
        assert_eq!(ValueSizes::parse("100"), Ok(ValueSizes::Fixed(100)));
        let uniform = ValueSizes::parse("64..4096").expect("range");
        assert_eq!(uniform, ValueSizes::Uniform(64, 4096));
        assert!((0..1000).all(|_| (64..=4096).contains(&uniform.draw(&mut prng))));
        let mix = ValueSizes::parse("100:90,4096:10").expect("mix");
        assert_eq!(mix.max(), 4096);
        assert!((mix.mean() - 499.6).abs() < 1e-9);
        let large = (0..1000).filter(|_| mix.draw(&mut prng) == 4096).count();
        assert!((50..150).contains(&large), "{large} of 1000 drew 4096");
        assert!(ValueSizes::parse("0").is_err());
        assert!(ValueSizes::parse("10..5").is_err());
        assert!(ValueSizes::parse("100:0").is_err());
        assert!(ValueSizes::parse("abc").is_err());
    }

    // Goal: --restart takes ascending instance counts with k and M suffixes, and the
    // modes pick their own default value size unless --value-size is given.
    // Method: parse flag lists through the binary's parser.
    #[test]
    fn modes_parse_counts_and_default_value_sizes() {
        let args = bench("--restart 100k,1M,3000000").expect("restart");
        args.validate().expect("ascending");
        let o = args.options();
        assert_eq!(o.restart_instances, vec![100_000, 1_000_000, 3_000_000]);
        assert_eq!(o.value_sizes, ValueSizes::Fixed(16));
        let o = bench("--catch-up 1024").expect("catch-up").options();
        assert_eq!(o.catch_up_mib, Some(1024));
        assert_eq!(o.value_sizes, ValueSizes::Fixed(65536));
        let o = bench("--catch-up 8 --value-size 1000")
            .expect("sized")
            .options();
        assert_eq!(o.value_sizes, ValueSizes::Fixed(1000));
        assert!(bench("--restart 1M,1M")
            .expect("parses")
            .validate()
            .is_err());
        assert!(bench("--restart 99999999999999M").is_err());
    }

    // Goal: with --target, the flags of the local cluster are refused as conflicts,
    // and --cluster and --client-key-file need --target; their defaults do not count.
    // Method: parse flag lists through the binary's parser.
    #[test]
    fn target_refuses_local_flags() {
        let o = bench("--target 127.0.0.1:7100,127.0.0.1:7200 --cluster 9")
            .expect("remote")
            .options();
        assert_eq!(o.target.as_ref().map(Vec::len), Some(2));
        assert_eq!(o.cluster, 9);
        for flag in [
            "--window 8",
            "--batch 4",
            "--batch-bytes 4096",
            "--shards 2",
            "--no-fsync",
            "--pin",
            "--dir x",
            "--matrix phxpaxos",
        ] {
            let error = bench(&format!("--target 127.0.0.1:1 {flag}")).expect_err("refused");
            assert_eq!(error.kind(), ErrorKind::ArgumentConflict, "{flag}: {error}");
        }
        for flag in ["--cluster 3", "--client-key-file k"] {
            let error = bench(flag).expect_err("needs --target");
            assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument, "{error}");
        }
        assert!(bench("--target").is_err());
    }

    // Goal: the defaults are those of the flag table, --matrix shortens the run, and
    // the range checks of the old parser hold. Method: parse flag lists.
    #[test]
    fn defaults_and_ranges() {
        let o = bench("").expect("defaults").options();
        assert_eq!(
            (o.groups, o.clients, o.window, o.batch, o.shards),
            (4, 256, 64, 1, 1)
        );
        assert_eq!((o.seconds, o.warmup), (8.0, 2.0));
        assert_eq!(o.value_sizes, ValueSizes::Fixed(100));
        assert!(o.fsync && !o.pin && !o.json && o.rate.is_none() && o.target.is_none());
        assert_eq!(o.dir, PathBuf::from("synod-bench"));
        let o = bench("--matrix phxpaxos").expect("matrix").options();
        assert_eq!((o.seconds, o.warmup), (5.0, 1.0));
        for bad in [
            "--groups 0",
            "--clients 0",
            "--window 0",
            "--batch 0",
            "--shards 0",
            "--seconds 0",
            "--seconds inf",
            "--warmup -1",
            "--rate 0",
            "--value-size 0",
        ] {
            let error = bench(bad).expect_err(bad);
            assert_eq!(error.kind(), ErrorKind::ValueValidation, "{bad}: {error}");
        }
        let other = bench("--matrix other").expect_err("one matrix");
        assert_eq!(other.kind(), ErrorKind::InvalidValue);
        assert!(bench("--warmup 0").is_ok());
        let small = bench("--value-size 64..4096 --batch-bytes 1000").expect("parses");
        assert!(small.validate().is_err_and(|e| e.contains("4096")));
        assert!(bench("--batch-bytes 4096 --value-size 4096")
            .expect("parses")
            .validate()
            .is_ok());
    }
}
