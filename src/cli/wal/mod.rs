//! `synod wal`: the WAL tools. `verify` and `dump` read a data directory's segment
//! files shard by shard (`verify`, with the content checks of `contents`; `dump`
//! prints every record and a per-group summary too); `bench` measures the raw disk and
//! the WAL in the same run; the hidden `crash-child` is the appender that
//! tests/wal_crash.rs kills. Errors exit with status 2, as a bad command line does.

pub mod bench;
pub mod contents;
pub mod crash_child;
pub mod dump;
pub mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use synod::wal::segment::{parse_segment_file_name, SegmentGeometry, SegmentHeader};
use synod::wal::store::StoreConfig;
use synod::wal::{DecodeLimits, BLOCK_SIZE};

/// The subcommand of `synod wal`.
#[derive(Clone, Debug, Args)]
pub struct WalArgs {
    /// Which tool.
    #[command(subcommand)]
    pub command: WalCommand,
}

/// The tools of `synod wal`.
#[derive(Clone, Debug, Subcommand)]
pub enum WalCommand {
    /// Check every record's framing and contents; exit 1 on corruption or a content
    /// violation.
    ///
    /// Recovery runs as a node's start would (read-only): the verdict per shard is a
    /// clean end, a torn tail (the last write cut short: nothing acknowledged lost) or
    /// the first corrupt record with its file. Every record kept is checked against the
    /// content rules (bounds, per-group order) and, when DIR/synod.id names the shard
    /// count, against the shard that owns its group.
    Verify(InspectArgs),
    /// Print every record (segment, offset, LSN, contents), a per-group summary and the
    /// verdict of `verify` (exit 1 likewise).
    Dump(InspectArgs),
    /// The raw disk's limits and the WAL, interleaved in the same run, with ratios.
    ///
    /// Each round runs four phases in ABBA order across rounds: raw sequential 8 MiB
    /// O_DIRECT writes + fdatasync into a pre-zeroed 1 GiB file; WAL large batches (1 MiB
    /// records, 8 MiB batches); raw 4 KiB write + fdatasync; WAL with 64 groups each
    /// appending a 4 KiB record once its previous one is durable. Files are reused
    /// across runs (about 7 GiB under --dir).
    Bench(bench::WalBenchArgs),
    /// The appender that tests/wal_crash.rs kills (not a user tool).
    #[command(hide = true)]
    CrashChild(crash_child::CrashChildArgs),
}

/// The flags of `synod wal verify` and `synod wal dump`.
#[derive(Clone, Debug, Args)]
pub struct InspectArgs {
    /// A node's data directory (its segment files, wal-<shard>-<index>.seg).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Only this shard's log [default: every shard with segment files in DIR].
    #[arg(long, value_name = "N")]
    pub shard: Option<u32>,
}

/// Default segment size of the tools when no header says otherwise.
const SEGMENT_SIZE_DEFAULT: u64 = 64 << 20;

/// The shards with segment files in `dir`, and the segment size their headers name
/// (reads only the first block of each file).
fn shards_in(dir: &Path) -> Result<Vec<(u32, u64)>, String> {
    use std::io::Read;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut shards: BTreeMap<u32, Option<u64>> = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((shard, _)) = parse_segment_file_name(&name) else {
            continue;
        };
        let size = shards.entry(shard).or_default();
        if size.is_none() {
            let mut head = Vec::new();
            std::fs::File::open(entry.path())
                .and_then(|f| f.take(BLOCK_SIZE as u64).read_to_end(&mut head))
                .map_err(|e| format!("{name}: {e}"))?;
            *size = SegmentHeader::decode(&head)
                .ok()
                .map(|h| h.segment_size)
                .filter(|s| *s % BLOCK_SIZE as u64 == 0 && *s >= 2 * BLOCK_SIZE as u64);
        }
    }
    Ok(shards
        .into_iter()
        .map(|(shard, size)| (shard, size.unwrap_or(SEGMENT_SIZE_DEFAULT)))
        .collect())
}

/// The store of shard `shard` in `dir`, with one spare segment.
fn store_config(dir: &Path, shard: u32, segment_size: u64) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        shard,
        geometry: SegmentGeometry::new(segment_size),
        limits: DecodeLimits::default(),
        spare_count_min: 1,
    }
}
