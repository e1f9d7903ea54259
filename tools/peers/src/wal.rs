//! The durable log the harness gives each peer replica: pre-zeroed segment files, written
//! by one thread per replica with group commit.
//!
//! Per batch: ONE `pwritev` (buffered, no O_DIRECT) of every queued job at the tail of the
//! current segment, then ONE `fdatasync`, then every job's completion runs, in submission
//! order. One thread per replica means at most one sync in flight. Segments are zero-filled
//! and synced ahead of use by a second thread (as synod's WAL does), so an `fdatasync`
//! never has to persist a file-size change. Invariants: a job's completion runs only after
//! the `fdatasync` covering all its bytes returned; jobs reach the disk in submission order;
//! a failed write or sync is never retried (fsyncgate): the log stops and every later job
//! fails.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;

/// Bytes of one segment file (synod's default `segment_size`).
pub const SEGMENT_SIZE: u64 = 64 << 20;
/// A batch holds at most this many bytes, unless its single job is larger (up to
/// `SEGMENT_SIZE`), so a batch always fits in a fresh segment.
pub const BATCH_SIZE_MAX: usize = 8 << 20;
/// A batch holds at most this many jobs (one iovec each; Linux's IOV_MAX is 1024).
pub const BATCH_JOBS_MAX: usize = 1024;
/// Jobs queued for the writer thread before `submit` blocks.
pub const QUEUE_JOBS_MAX: usize = 65_536;

/// Runs once the job's bytes are durable (or the log has failed).
pub type Completion = Box<dyn FnOnce(io::Result<()>) + Send>;

struct Job {
    bytes: Vec<u8>,
    records: u64,
    done: Completion,
}

/// Counters of one log, read by the report.
#[derive(Default)]
pub struct WalStats {
    /// `fdatasync` calls on segments (one per batch).
    pub syncs: AtomicU64,
    /// Records made durable (entries and metadata).
    pub records: AtomicU64,
    /// Bytes made durable.
    pub bytes: AtomicU64,
}

/// Handle to one replica's log; cloning shares the writer thread.
#[derive(Clone)]
pub struct Wal {
    queue: SyncSender<Job>,
    /// Counters of this log.
    pub stats: Arc<WalStats>,
}

impl Wal {
    /// Creates `dir` (emptied first: each run starts a fresh log) and starts the writer
    /// and the segment-preparing threads.
    pub fn open(dir: &Path) -> io::Result<Wal> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let (segments_tx, segments_rx) = sync_channel::<io::Result<File>>(1);
        let prepare_dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("wal-prepare".into())
            .spawn(move || prepare_segments(&prepare_dir, &segments_tx))?;
        let (queue, jobs) = sync_channel::<Job>(QUEUE_JOBS_MAX);
        let stats = Arc::new(WalStats::default());
        let writer_stats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || write_batches(&jobs, &segments_rx, &writer_stats))?;
        Ok(Wal { queue, stats })
    }

    /// Queues `bytes` (holding `records` records) for the log; `done` runs AFTER the
    /// fdatasync that covers them.
    pub fn submit(&self, bytes: Vec<u8>, records: u64, done: Completion) {
        assert!(
            bytes.len() as u64 <= SEGMENT_SIZE,
            "job of {} bytes exceeds the segment size {SEGMENT_SIZE}",
            bytes.len()
        );
        if let Err(error) = self.queue.send(Job {
            bytes,
            records,
            done,
        }) {
            (error.0.done)(Err(io::Error::other("the log's writer thread has stopped")));
        }
    }
}

/// Zero-fills and syncs segment files one ahead of the writer, until the writer goes.
fn prepare_segments(dir: &Path, segments: &SyncSender<io::Result<File>>) {
    let zeros = vec![0u8; 1 << 20];
    for index in 0u64.. {
        let path: PathBuf = dir.join(format!("segment-{index:08}.log"));
        let file = (|| {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            for _ in 0..SEGMENT_SIZE / zeros.len() as u64 {
                file.write_all(&zeros)?;
            }
            file.sync_all()?;
            File::open(dir)?.sync_all()?;
            Ok(file)
        })();
        let failed = file.is_err();
        if segments.send(file).is_err() || failed {
            return;
        }
    }
}

fn write_batches(jobs: &Receiver<Job>, segments: &Receiver<io::Result<File>>, stats: &WalStats) {
    let mut failed: Option<String> = None;
    let mut segment: Option<File> = None;
    let mut offset = SEGMENT_SIZE;
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH_JOBS_MAX);
    // A job that did not fit the previous batch opens the next one.
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut size = first.bytes.len();
        batch.push(first);
        // Group commit: everything queued while the previous batch was syncing joins this one.
        while batch.len() < BATCH_JOBS_MAX {
            match jobs.try_recv() {
                Ok(job) if size + job.bytes.len() <= BATCH_SIZE_MAX => {
                    size += job.bytes.len();
                    batch.push(job);
                }
                Ok(job) => {
                    carry = Some(job);
                    break;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        write_one(
            &mut batch,
            &mut segment,
            &mut offset,
            segments,
            stats,
            &mut failed,
        );
    }
}

/// Writes and syncs `batch` (one pwritev, one fdatasync), then completes its jobs.
fn write_one(
    batch: &mut Vec<Job>,
    segment: &mut Option<File>,
    offset: &mut u64,
    segments: &Receiver<io::Result<File>>,
    stats: &WalStats,
    failed: &mut Option<String>,
) {
    if batch.is_empty() {
        return;
    }
    let size: usize = batch.iter().map(|j| j.bytes.len()).sum();
    let result = match failed {
        Some(why) => Err(why.clone()),
        None => (|| {
            if *offset + size as u64 > SEGMENT_SIZE || segment.is_none() {
                // The rest of the old segment stays zero: a reader's clean end of segment.
                *segment = Some(
                    segments
                        .recv()
                        .map_err(|_| "segment preparer stopped".to_string())?
                        .map_err(|e| format!("preparing a segment: {e}"))?,
                );
                *offset = 0;
            }
            let file = segment.as_ref().expect("a segment was just opened");
            pwritev_all(file, batch, *offset).map_err(|e| format!("pwritev: {e}"))?;
            file.sync_data().map_err(|e| format!("fdatasync: {e}"))?;
            *offset += size as u64;
            Ok(())
        })(),
    };
    if let Err(why) = &result {
        *failed = Some(why.clone());
    } else {
        stats.syncs.fetch_add(1, Ordering::Relaxed);
        stats
            .records
            .fetch_add(batch.iter().map(|j| j.records).sum(), Ordering::Relaxed);
        stats.bytes.fetch_add(size as u64, Ordering::Relaxed);
    }
    for job in batch.drain(..) {
        (job.done)(result.clone().map_err(io::Error::other));
    }
}

/// One `pwritev` of every job's bytes at `offset`; a short write continues with `pwrite`
/// (rare: regular files write fully unless the disk is full).
fn pwritev_all(file: &File, batch: &[Job], offset: u64) -> io::Result<()> {
    let iovecs: Vec<libc::iovec> = batch
        .iter()
        .map(|job| libc::iovec {
            iov_base: job.bytes.as_ptr() as *mut libc::c_void,
            iov_len: job.bytes.len(),
        })
        .collect();
    let size: usize = batch.iter().map(|j| j.bytes.len()).sum();
    // SAFETY: every iovec points into a `Vec` that `batch` keeps alive across the call, and
    // pwritev only reads from them.
    let written = unsafe {
        libc::pwritev(
            file.as_raw_fd(),
            iovecs.as_ptr(),
            iovecs.len() as libc::c_int,
            offset as libc::off_t,
        )
    };
    if written < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut done = written as usize;
    if done < size {
        let mut at = 0usize;
        for job in batch {
            let end = at + job.bytes.len();
            if end > done {
                let from = done.max(at) - at;
                file.write_all_at(&job.bytes[from..], offset + done as u64)?;
                done = end;
            }
            at = end;
        }
    }
    Ok(())
}

/// Appends one record to `out`: `[size u32 LE][crc32c u32 LE][kind u8][body]`, where
/// `size` counts kind and body and the CRC covers them (as synod's WAL records carry one).
pub fn put_record(out: &mut Vec<u8>, kind: u8, body: &[&[u8]]) {
    let size: usize = 1 + body.iter().map(|b| b.len()).sum::<usize>();
    let mut crc = crc32c::crc32c(&[kind]);
    for part in body {
        crc = crc32c::crc32c_append(crc, part);
    }
    out.extend_from_slice(&(size as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.push(kind);
    for part in body {
        out.extend_from_slice(part);
    }
}

const _: () = assert!(BATCH_SIZE_MAX as u64 <= SEGMENT_SIZE);

/// Appends one record whose body `encode` writes straight into `out` (no staging copy);
/// same layout as `put_record`.
pub fn put_record_with(out: &mut Vec<u8>, kind: u8, encode: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 8]);
    out.push(kind);
    encode(out);
    let size = (out.len() - at - 8) as u32;
    let crc = crc32c::crc32c(&out[at + 8..]);
    out[at..at + 4].copy_from_slice(&size.to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}
