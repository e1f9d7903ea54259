//! The disk's limit, measured as synod measures it: 4 KiB O_DIRECT write + fdatasync, one
//! at a time, on a pre-zeroed file reused across runs.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

/// Bytes of one probe write.
const BLOCK_SIZE: usize = 4096;
/// Bytes of the probe file (as synod's probe).
const FILE_SIZE: u64 = 64 << 20;

/// The probe's result.
pub struct DiskLimit {
    /// 4 KiB write + fdatasync per second.
    pub syncs_per_s: f64,
    /// Median latency of one write + fdatasync, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
}

/// Runs the probe for `seconds` on `dir/fdatasync-probe.dat`.
pub fn fdatasync_limit(dir: &Path, seconds: f64) -> Result<DiskLimit, String> {
    let path = dir.join("fdatasync-probe.dat");
    let e = |what: &str, error: std::io::Error| format!("{what} {}: {error}", path.display());
    if !std::fs::metadata(&path).is_ok_and(|m| m.len() == FILE_SIZE) {
        let mut file = std::fs::File::create(&path).map_err(|x| e("create", x))?;
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..FILE_SIZE / zeros.len() as u64 {
            file.write_all(&zeros).map_err(|x| e("zero-fill", x))?;
        }
        file.sync_all().map_err(|x| e("sync", x))?;
    }
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .map_err(|x| e("open O_DIRECT", x))?;
    // O_DIRECT wants an aligned buffer: take the aligned 4 KiB inside an 8 KiB one.
    let mut backing = vec![0x5Au8; 2 * BLOCK_SIZE];
    let skew = backing.as_ptr().align_offset(BLOCK_SIZE);
    let block = &mut backing[skew..skew + BLOCK_SIZE];
    block.fill(0x5A);
    let start = Instant::now();
    let mut latencies = Vec::new();
    let mut offset = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        let at = Instant::now();
        file.write_all_at(block, offset)
            .map_err(|x| e("write", x))?;
        file.sync_data().map_err(|x| e("fdatasync", x))?;
        latencies.push(at.elapsed().as_nanos() as u64);
        offset = (offset + BLOCK_SIZE as u64) % FILE_SIZE;
    }
    let syncs_per_s = latencies.len() as f64 / start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize] as f64 / 1e3;
    Ok(DiskLimit {
        syncs_per_s,
        p50_us: pct(0.5),
        p99_us: pct(0.99),
    })
}
