//! The flags of `synod bench`, parsed once into [`Options`]; value sizes as a fixed
//! size, a uniform range or a weighted mix ([`ValueSizes`]).

use std::path::PathBuf;

use synod::prng::Prng;

use crate::cli::{check_flags, parsed, value};

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
    /// Parses the forms above.
    pub fn parse(text: &str) -> Result<ValueSizes, String> {
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("--value-size {text}: {s:?} is not a byte count"))
        };
        let sizes = if let Some((low, high)) = text.split_once("..") {
            let (low, high) = (number(low)?, number(high.trim_start_matches('='))?);
            if low > high {
                return Err(format!("--value-size {text}: the range is empty"));
            }
            ValueSizes::Uniform(low, high)
        } else if text.contains(':') {
            let mut mix = Vec::new();
            for item in text.split(',') {
                let (size, weight) = item
                    .split_once(':')
                    .ok_or_else(|| format!("--value-size {text}: {item:?} is not SIZE:WEIGHT"))?;
                let weight = weight
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("--value-size {text}: weight {weight:?}"))?;
                mix.push((number(size)?, weight));
            }
            if mix.iter().map(|(_, w)| w).sum::<u64>() == 0 {
                return Err(format!("--value-size {text}: the weights sum to 0"));
            }
            ValueSizes::Weighted(mix)
        } else {
            ValueSizes::Fixed(number(text)?)
        };
        if sizes.max() == 0 {
            return Err(format!(
                "--value-size {text}: values need at least one byte"
            ));
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
    /// `batch_values_max`: values per instance (1 = every proposal its own instance).
    pub batch: usize,
    /// `batch_size_max` in bytes (`None`: the default, raised to the largest value).
    pub batch_bytes: Option<usize>,
    /// Shards (cores) per node.
    pub shards: u16,
    /// Pin shard `s` of every node to core `s % online cores`.
    pub pin: bool,
    /// Where the WALs, the probe file and the report go.
    pub dir: PathBuf,
    /// fdatasync on (false is UNSAFE: labelled in the output).
    pub fsync: bool,
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
}

/// Flags that configure the local cluster: with `--target`, the running cluster's own
/// configuration decides them, so they are refused.
pub const LOCAL_ONLY: &[&str] = &[
    "--window",
    "--batch",
    "--batch-bytes",
    "--shards",
    "--no-fsync",
    "--pin",
    "--dir",
    "--matrix",
];

/// Flags that take a value.
const WITH_VALUE: &[&str] = &[
    "--groups",
    "--clients",
    "--value-size",
    "--rate",
    "--seconds",
    "--warmup",
    "--window",
    "--batch",
    "--batch-bytes",
    "--shards",
    "--dir",
    "--report",
    "--matrix",
    "--target",
    "--cluster",
    "--client-key-file",
];

/// Parses the flags of `synod bench`; `matrix` changes the defaults of `--seconds`
/// and `--warmup` (short cells).
pub fn options(args: &[String]) -> Result<Options, String> {
    check_flags(args, WITH_VALUE, &["--no-fsync", "--json", "--pin"])?;
    let matrix = value(args, "--matrix")?.map(str::to_string);
    if let Some(name) = &matrix {
        if name != "phxpaxos" {
            return Err(format!("--matrix {name}: the only matrix is phxpaxos"));
        }
    }
    let o = Options {
        groups: parsed(args, "--groups")?.unwrap_or(4),
        clients: parsed(args, "--clients")?.unwrap_or(256),
        value_sizes: value(args, "--value-size")?
            .map_or(Ok(ValueSizes::Fixed(100)), ValueSizes::parse)?,
        rate: parsed(args, "--rate")?,
        seconds: parsed(args, "--seconds")?.unwrap_or(if matrix.is_some() { 5.0 } else { 8.0 }),
        warmup: parsed(args, "--warmup")?.unwrap_or(if matrix.is_some() { 1.0 } else { 2.0 }),
        window: parsed(args, "--window")?.unwrap_or(64),
        batch: parsed(args, "--batch")?.unwrap_or(1),
        batch_bytes: parsed(args, "--batch-bytes")?,
        shards: parsed(args, "--shards")?.unwrap_or(1),
        pin: args.iter().any(|a| a == "--pin"),
        dir: value(args, "--dir")?.map_or_else(|| PathBuf::from("synod-bench"), PathBuf::from),
        fsync: !args.iter().any(|a| a == "--no-fsync"),
        json: args.iter().any(|a| a == "--json"),
        report: value(args, "--report")?.map(PathBuf::from),
        matrix,
        target: value(args, "--target")?.map(|list| {
            list.split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect()
        }),
        cluster: parsed(args, "--cluster")?.unwrap_or(1),
        client_key_file: value(args, "--client-key-file")?.map(PathBuf::from),
    };
    match &o.target {
        Some(target) => {
            if target.is_empty() {
                return Err("--target needs at least one HOST:PORT".to_string());
            }
            if let Some(flag) = LOCAL_ONLY.iter().find(|f| args.iter().any(|a| a == **f)) {
                return Err(format!(
                    "{flag} configures the local cluster; with --target the running \
                     cluster's own configuration decides it (set it on `synod serve`)"
                ));
            }
        }
        None => {
            for flag in ["--cluster", "--client-key-file"] {
                if args.iter().any(|a| a == flag) {
                    return Err(format!(
                        "{flag} is for a running cluster: it needs --target"
                    ));
                }
            }
        }
    }
    let positive = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("{what} must be positive"))
        }
    };
    positive(o.groups >= 1, "--groups")?;
    positive(o.clients >= 1, "--clients")?;
    positive(o.seconds > 0.0 && o.seconds.is_finite(), "--seconds")?;
    positive(
        o.warmup >= 0.0 && o.warmup.is_finite(),
        "--warmup (or zero)",
    )?;
    positive(o.window >= 1, "--window")?;
    positive(o.batch >= 1, "--batch")?;
    positive(o.shards >= 1, "--shards")?;
    positive(o.rate.is_none_or(|r| r > 0.0 && r.is_finite()), "--rate")?;
    if let Some(bytes) = o.batch_bytes {
        if bytes < o.value_sizes.max() {
            return Err(format!(
                "--batch-bytes {bytes}: must hold the largest value ({} B)",
                o.value_sizes.max()
            ));
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    // Goal: with --target, the flags of the local cluster are refused with a reason,
    // and --cluster needs --target.
    // Method: parse flag lists.
    #[test]
    fn target_refuses_local_flags() {
        let args = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let o =
            options(&args("--target 127.0.0.1:7100,127.0.0.1:7200 --cluster 9")).expect("remote");
        assert_eq!(o.target.as_ref().map(Vec::len), Some(2));
        assert_eq!(o.cluster, 9);
        for flag in [
            "--window 8",
            "--batch 4",
            "--shards 2",
            "--no-fsync",
            "--pin",
            "--dir x",
        ] {
            let error =
                options(&args(&format!("--target 127.0.0.1:1 {flag}"))).expect_err("refused");
            assert!(error.contains("configures the local cluster"), "{error}");
        }
        assert!(options(&args("--cluster 3")).is_err());
        assert!(options(&args("--client-key-file k")).is_err());
    }
}
