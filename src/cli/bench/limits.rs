//! The machine's limits, measured in the same run as the load: the disk's sequential
//! bandwidth (large aligned O_DIRECT writes + fdatasync, then large O_DIRECT reads of
//! what was written, then both at once as a copy within the disk), its 4 KiB write +
//! fdatasync latency, and loopback TCP bandwidth (one stream).
//!
//! The copy is what a catch-up between nodes sharing one disk can reach at most: the
//! senders read what the follower writes, and on this kind of disk reads and writes
//! share one bandwidth (about 0.9 GB/s written while 1.8 GB/s are read, against 2.7
//! GB/s written alone, in one check on 2026-12-07).
//!
//! The disk probes write into one pre-zeroed file in the bench directory, created once
//! and reused (never deleted: creating and deleting large files leaves this kind of
//! disk noisy for a while).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use synod::support::percentile;

use serde_json::{json, Value};
use synod::prng::Prng;
use synod::runtime::clock::{entropy_seed, MonotonicClock};
use synod::wal::dma_disk::{run_local, DmaDisk};
use synod::wal::BLOCK_SIZE;

/// The probe file: large enough that sequential writes do not rewrite the same
/// extent within a second on most disks.
const PROBE_FILE_SIZE: u64 = 256 << 20;
/// One sequential write: as large as the WAL's default `wal_buffer_size_max`.
const SEQUENTIAL_BLOCK_SIZE: usize = 4 << 20;
/// One TCP write or read.
const TCP_BUFFER_SIZE: usize = 1 << 20;
/// Socket buffers asked of the kernel for the TCP probe.
const TCP_SOCKET_BUFFER_SIZE: usize = 4 << 20;

const _: () = assert!(PROBE_FILE_SIZE % SEQUENTIAL_BLOCK_SIZE as u64 == 0);
const _: () = assert!(SEQUENTIAL_BLOCK_SIZE % BLOCK_SIZE == 0);

/// What the limit probes measured.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// Sequential O_DIRECT writes of 4 MiB, each followed by fdatasync: MB/s.
    pub disk_mb_s: f64,
    /// Sequential O_DIRECT reads of 4 MiB of the probe file the writes filled (the
    /// page cache bypassed): MB/s.
    pub disk_read_mb_s: f64,
    /// A copy within the disk: 4 MiB O_DIRECT reads of one half of the probe file, each
    /// overlapped with the 4 MiB write + fdatasync of the block read before into the
    /// other half: MB/s copied.
    pub disk_copy_mb_s: f64,
    /// 4 KiB write + fdatasync, one at a time: per second.
    pub fsync_rate: f64,
    /// Their latency percentiles: p50, p99 (µs).
    pub fsync_p50_us: f64,
    /// p99 (µs).
    pub fsync_p99_us: f64,
    /// Loopback TCP, one stream: MB/s.
    pub tcp_mb_s: f64,
}

impl Limits {
    /// The figures as JSON.
    pub fn json(&self) -> Value {
        json!({
            "disk_sequential_mb_per_s": self.disk_mb_s,
            "disk_sequential_read_mb_per_s": self.disk_read_mb_s,
            "disk_copy_mb_per_s": self.disk_copy_mb_s,
            "fdatasync_4k_per_s": self.fsync_rate,
            "fdatasync_4k_p50_us": self.fsync_p50_us,
            "fdatasync_4k_p99_us": self.fsync_p99_us,
            "loopback_tcp_mb_per_s": self.tcp_mb_s,
        })
    }
}

/// Measures every limit: `seconds` each for the sequential disk and TCP probes, 1.5 ×
/// `seconds` for the fdatasync probe (its tail needs samples).
pub fn measure(dir: &Path, seconds: f64) -> Result<Limits, String> {
    let (disk, mut latencies) = disk(dir, seconds)?;
    latencies.sort_unstable();
    let tcp_mb_s = tcp(seconds)?;
    Ok(Limits {
        disk_mb_s: disk.write_mb_s,
        disk_read_mb_s: disk.read_mb_s,
        disk_copy_mb_s: disk.copy_mb_s,
        fsync_rate: disk.fsync_rate,
        fsync_p50_us: percentile(&latencies, 0.50) / 1e3,
        fsync_p99_us: percentile(&latencies, 0.99) / 1e3,
        tcp_mb_s,
    })
}

/// What the disk probes measured (besides the fdatasync latencies).
struct DiskRates {
    /// Sequential writes + fdatasync, MB/s.
    write_mb_s: f64,
    /// Sequential reads, MB/s.
    read_mb_s: f64,
    /// Reads overlapped with writes + fdatasync (a copy), MB/s copied.
    copy_mb_s: f64,
    /// 4 KiB writes + fdatasync per second.
    fsync_rate: f64,
}

/// The disk's rates and the 4 KiB fdatasync latencies in ns.
fn disk(dir: &Path, seconds: f64) -> Result<(DiskRates, Vec<u64>), String> {
    let path = dir.join("disk-probe.dat");
    run_local(async move {
        let e = |e: std::io::Error| format!("{}: {e}", path.display());
        if !std::fs::metadata(&path).is_ok_and(|m| m.len() == PROBE_FILE_SIZE) {
            DmaDisk::create_zeroed(&path, PROBE_FILE_SIZE)
                .await
                .map_err(e)?;
        }
        let disk = DmaDisk::open(&path).await.map_err(e)?;
        // Incompressible contents, in case the storage below compresses.
        let mut block = vec![0u8; SEQUENTIAL_BLOCK_SIZE];
        Prng::new(entropy_seed()).fill(&mut block);

        let clock = MonotonicClock::start();
        let (mut offset, mut bytes) = (0u64, 0u64);
        while clock.elapsed_s() < seconds {
            disk.write_at(offset, &block).await.map_err(e)?;
            disk.sync().await.map_err(e)?;
            bytes += SEQUENTIAL_BLOCK_SIZE as u64;
            offset = (offset + SEQUENTIAL_BLOCK_SIZE as u64) % PROBE_FILE_SIZE;
        }
        let write_mb_s = bytes as f64 / clock.elapsed_s() / 1e6;
        let read_mb_s = read_sequential(&disk, seconds).await.map_err(e)?;
        let copy_mb_s = copy(&disk, &block, seconds).await.map_err(e)?;

        let small = &block[..BLOCK_SIZE];
        let clock = MonotonicClock::start();
        let mut latencies = Vec::new();
        offset = 0;
        while clock.elapsed_s() < seconds * 1.5 {
            let at = clock.now().0;
            disk.write_at(offset, small).await.map_err(e)?;
            disk.sync().await.map_err(e)?;
            latencies.push(clock.now().0 - at);
            offset = (offset + BLOCK_SIZE as u64) % PROBE_FILE_SIZE;
        }
        let fsync_rate = latencies.len() as f64 / clock.elapsed_s();
        disk.close().await.map_err(e)?;
        let rates = DiskRates {
            write_mb_s,
            read_mb_s,
            copy_mb_s,
            fsync_rate,
        };
        Ok((rates, latencies))
    })
    .map_err(|e| e.to_string())?
}

/// Sequential O_DIRECT reads of `SEQUENTIAL_BLOCK_SIZE` through the probe file (its
/// contents written just before) for about `seconds`, one at a time as the WAL reads
/// of a catch-up are issued: MB/s.
async fn read_sequential(disk: &DmaDisk, seconds: f64) -> std::io::Result<f64> {
    let clock = MonotonicClock::start();
    let (mut offset, mut bytes) = (0u64, 0u64);
    while clock.elapsed_s() < seconds {
        let read = disk.read_at(offset, SEQUENTIAL_BLOCK_SIZE).await?;
        bytes += read.len() as u64;
        offset = (offset + SEQUENTIAL_BLOCK_SIZE as u64) % PROBE_FILE_SIZE;
    }
    Ok(bytes as f64 / clock.elapsed_s() / 1e6)
}

/// A copy within the probe file for about `seconds`: each 4 MiB O_DIRECT read from
/// the first half runs at the same time as the write + fdatasync, into the second
/// half, of the block read before (one of each in flight, as a catch-up's sender
/// reads while its follower writes): MB/s copied.
async fn copy(disk: &DmaDisk, first: &[u8], seconds: f64) -> std::io::Result<f64> {
    const HALF: u64 = PROBE_FILE_SIZE / 2;
    let block = SEQUENTIAL_BLOCK_SIZE as u64;
    let clock = MonotonicClock::start();
    let (mut offset, mut bytes) = (0u64, 0u64);
    let mut carried = first.to_vec();
    while clock.elapsed_s() < seconds {
        let write = async {
            disk.write_at(HALF + offset, &carried).await?;
            disk.sync().await
        };
        let (read, written) = futures_lite::future::zip(
            disk.read_at((offset + block) % HALF, SEQUENTIAL_BLOCK_SIZE),
            write,
        )
        .await;
        written?;
        carried = read?;
        bytes += block;
        offset = (offset + block) % HALF;
    }
    Ok(bytes as f64 / clock.elapsed_s() / 1e6)
}

/// One TCP stream on 127.0.0.1 for about `seconds`: MB/s as the reader sees it.
fn tcp(seconds: f64) -> Result<f64, String> {
    let e = |e: std::io::Error| format!("loopback TCP probe: {e}");
    let listener = TcpListener::bind("127.0.0.1:0").map_err(e)?;
    let address = listener.local_addr().map_err(e)?;
    let writer = std::thread::Builder::new()
        .name("synod-bench-tcp".into())
        .spawn(move || -> std::io::Result<()> {
            let mut stream = TcpStream::connect(address)?;
            let _ = socket2::SockRef::from(&stream).set_send_buffer_size(TCP_SOCKET_BUFFER_SIZE);
            let buffer = vec![0x5Au8; TCP_BUFFER_SIZE];
            let clock = MonotonicClock::start();
            while clock.elapsed_s() < seconds {
                stream.write_all(&buffer)?;
            }
            stream.shutdown(std::net::Shutdown::Write)
        })
        .map_err(e)?;
    let (mut stream, _) = listener.accept().map_err(e)?;
    let _ = socket2::SockRef::from(&stream).set_recv_buffer_size(TCP_SOCKET_BUFFER_SIZE);
    let mut buffer = vec![0u8; TCP_BUFFER_SIZE];
    let clock = MonotonicClock::start();
    let mut bytes = 0u64;
    loop {
        match stream.read(&mut buffer).map_err(e)? {
            0 => break,
            n => bytes += n as u64,
        }
    }
    let mb_s = bytes as f64 / clock.elapsed_s() / 1e6;
    writer
        .join()
        .map_err(|_| "loopback TCP probe: the writer panicked".to_string())?
        .map_err(e)?;
    Ok(mb_s)
}
