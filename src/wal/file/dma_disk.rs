//! The real disk: one O_DIRECT file through glommio's `DmaFile` (io_uring). This is the
//! only WAL file that knows glommio (`tests/tidy.rs`); the rest of the WAL sees the thin
//! `DmaDisk` API: `create_zeroed`, `open`, `write_at`, `sync`, `read_at`, `close`.
//!
//! Invariants and traps of this machine (measured, see `docs/measurements.md`, WAL):
//! - every offset and length is a multiple of `BLOCK_SIZE` (asserted here, as `SimDisk`
//!   does on its side of the seam): `DmaFile::alignment()` reports 512 but the device
//!   rejects or slows down anything below 4096;
//! - only non-empty files are opened for reading: if the first `DmaFile` opened on a
//!   filesystem is empty and readable, glommio enables polled I/O for it and later DMA
//!   reads fail with EOPNOTSUPP. Segments are created write-only and zero-filled to their
//!   full size before they are ever opened read-write, which also keeps the hot path
//!   from extending files (written extents halve the fdatasync cost here);
//! - a failed or short write, or a failed fdatasync, is returned as an error and never
//!   retried (fsyncgate): the caller stops;
//! - an error the kernel returned keeps its errno (`io::Error::raw_os_error`): glommio's
//!   own conversion of its errors into `io::Error` drops it (`os_error`).

use crate::wal::layout::BLOCK_SIZE;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions};
use glommio::{GlommioError, LocalExecutorBuilder, Placement};
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::path::Path;
use std::rc::Rc;

/// Registered DMA memory of the executor. `ulimit -l` is 8 MiB on this machine, and
/// glommio's default (10 MiB) fails to lock; buffers beyond this come from the heap.
pub const IO_MEMORY_SIZE: usize = 4 << 20;

/// Bytes written per call while zero-filling a new file.
const ZERO_FILL_CHUNK_SIZE: usize = 1 << 20;

const _: () = assert!(ZERO_FILL_CHUNK_SIZE % BLOCK_SIZE == 0);

/// Runs `future` to completion on a fresh glommio executor on this thread (unbound).
pub fn run_local<T: 'static>(future: impl Future<Output = T> + 'static) -> io::Result<T> {
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(IO_MEMORY_SIZE)
        .make()
        .map_err(io::Error::from)?;
    Ok(executor.run(future))
}

/// The OS error inside a glommio error, errno included. glommio's `From` for
/// `io::Error` rebuilds the error of a failed file operation from its kind and text,
/// which loses the errno; the operation and path it adds, the store names itself.
fn os_error<T>(error: GlommioError<T>) -> io::Error {
    match error {
        GlommioError::IoError(source) | GlommioError::EnhancedIoError { source, .. } => source,
        other => io::Error::from(other),
    }
}

fn check_aligned(offset: u64, len: usize) {
    assert!(
        offset % BLOCK_SIZE as u64 == 0 && len % BLOCK_SIZE == 0,
        "unaligned O_DIRECT access: offset {offset}, length {len}"
    );
}

/// One file opened for O_DIRECT reads and writes.
pub struct DmaDisk {
    file: DmaFile,
    /// The last write's DMA buffer, reused by the next write of the same size: large
    /// buffers come from `mmap`, and faulting 8 MiB in per write cost about a fifth of
    /// the large-batch bandwidth here.
    spare: RefCell<Option<Rc<DmaBuffer>>>,
}

impl std::fmt::Debug for DmaDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaDisk")
            .field("path", &self.file.path().map(|p| p.to_path_buf()))
            .finish_non_exhaustive()
    }
}

impl DmaDisk {
    /// Creates `path` (truncating it) write-only and fills it with `size` zero bytes,
    /// then makes it durable. The directory entry is the caller's to sync.
    pub async fn create_zeroed(path: &Path, size: u64) -> io::Result<()> {
        let mut fill = ZeroFill::create(path, size).await?;
        fill.fill(size).await?;
        fill.finish().await
    }

    /// Opens an existing, non-empty file for reading and writing (module docs: traps).
    pub async fn open(path: &Path) -> io::Result<DmaDisk> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await
            .map_err(os_error)?;
        Ok(DmaDisk {
            file,
            spare: RefCell::new(None),
        })
    }

    /// Writes all of `bytes` at `offset` (both block-aligned) with one O_DIRECT write.
    /// Durable only after `sync`. A short write is an error.
    pub async fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        check_aligned(offset, bytes.len());
        let cached = self.spare.borrow_mut().take();
        let mut buffer = match cached {
            Some(buffer) if buffer.len() == bytes.len() => buffer,
            _ => Rc::new(self.file.alloc_dma_buffer(bytes.len())),
        };
        Rc::get_mut(&mut buffer)
            .expect("the spare buffer is not shared")
            .as_bytes_mut()
            .copy_from_slice(bytes);
        let written = self
            .file
            .write_rc_at(Rc::clone(&buffer), offset)
            .await
            .map_err(os_error)?;
        if Rc::strong_count(&buffer) == 1 {
            *self.spare.borrow_mut() = Some(buffer);
        }
        if written != bytes.len() {
            return Err(short_write(&format!(
                "short write: {written} of {} bytes at {offset}",
                bytes.len()
            )));
        }
        Ok(())
    }

    /// fdatasync.
    pub async fn sync(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(os_error)
    }

    /// Reads `len` bytes at `offset` (both block-aligned) with one O_DIRECT read; fewer
    /// at the end of the file.
    pub async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        check_aligned(offset, len);
        let read = self
            .file
            .read_at_aligned(offset, len)
            .await
            .map_err(os_error)?;
        Ok(read.to_vec())
    }

    /// Closes the file.
    pub async fn close(self) -> io::Result<()> {
        self.file.close().await.map_err(os_error)
    }
}

/// A file being zero-filled a slice at a time, so that a long fill can yield to other
/// I/O between slices (WAL spares: `super::store::Store::prepare_spares_slice`).
pub struct ZeroFill {
    file: DmaFile,
    size: u64,
    written: u64,
}

impl std::fmt::Debug for ZeroFill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroFill")
            .field("size", &self.size)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl ZeroFill {
    /// Creates `path` (truncating it) write-only, to be filled with `size` zero bytes.
    pub async fn create(path: &Path, size: u64) -> io::Result<ZeroFill> {
        check_aligned(size, 0);
        Ok(ZeroFill {
            file: DmaFile::create(path).await.map_err(os_error)?,
            size,
            written: 0,
        })
    }

    /// Writes up to `budget` more zero bytes (rounded up to whole blocks; at least one
    /// block unless done).
    /// Returns whether the whole size is written.
    pub async fn fill(&mut self, budget: u64) -> io::Result<bool> {
        let budget = budget
            .max(1)
            .div_ceil(BLOCK_SIZE as u64)
            .saturating_mul(BLOCK_SIZE as u64);
        let until = self.written.saturating_add(budget).min(self.size);
        while self.written < until {
            let len = (ZERO_FILL_CHUNK_SIZE as u64).min(until - self.written) as usize;
            let mut buffer = self.file.alloc_dma_buffer(len);
            buffer.as_bytes_mut().fill(0);
            let written = self
                .file
                .write_at(buffer, self.written)
                .await
                .map_err(os_error)?;
            if written != len {
                return Err(short_write(&format!(
                    "short write zero-filling: {written} of {len} bytes at {}",
                    self.written
                )));
            }
            self.written += len as u64;
        }
        Ok(self.written == self.size)
    }

    /// Makes the filled file durable (fdatasync) and closes it. The caller checks that
    /// `fill` reported the whole size first.
    pub async fn finish(self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(os_error)?;
        self.file.close().await.map_err(os_error)
    }

    /// Closes the file without making it durable (an abandoned fill).
    pub async fn abandon(self) -> io::Result<()> {
        self.file.close().await.map_err(os_error)
    }
}

/// A write the kernel took only in part: on a local filesystem, how a full disk shows
/// at its edge (the next write would fail with ENOSPC), so the error says so and has
/// the kind of ENOSPC, for the operator reading the shard's stop reason.
fn short_write(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::StorageFull,
        format!("{what} (the filesystem is probably full)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the seam round-trips aligned blocks on a real file, with the traps avoided.
    // Method: create zeroed, open, write two blocks, sync, read back, read past the end.
    #[test]
    fn write_sync_read() {
        let dir = std::env::temp_dir().join(format!("synod-dma-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("file");
        let result = run_local({
            let path = path.clone();
            async move {
                DmaDisk::create_zeroed(&path, 4 * BLOCK_SIZE as u64)
                    .await
                    .expect("create");
                let disk = DmaDisk::open(&path).await.expect("open");
                let bytes: Vec<u8> = (0..2 * BLOCK_SIZE).map(|i| (i % 251) as u8).collect();
                disk.write_at(BLOCK_SIZE as u64, &bytes)
                    .await
                    .expect("write");
                disk.sync().await.expect("sync");
                let back = disk.read_at(0, 4 * BLOCK_SIZE).await.expect("read");
                let tail = disk
                    .read_at(4 * BLOCK_SIZE as u64, BLOCK_SIZE)
                    .await
                    .expect("read at end");
                disk.close().await.expect("close");
                (bytes, back, tail)
            }
        })
        .expect("executor");
        let (bytes, back, tail) = result;
        assert_eq!(back.len(), 4 * BLOCK_SIZE);
        assert!(back[..BLOCK_SIZE].iter().all(|b| *b == 0));
        assert_eq!(&back[BLOCK_SIZE..3 * BLOCK_SIZE], &bytes[..]);
        assert!(tail.is_empty());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    // Goal: two tasks may each write and fdatasync one file at once (two WAL writes in
    // flight): every write lands whole at its offset, none is lost or mixed up with
    // the other's buffer (the spare DMA buffer is taken, never shared).
    // Method: three tasks on one `DmaDisk`, each writing 64 batches of 1-3 blocks at
    // disjoint offsets with a sync after each; all joined; read the file back.
    #[test]
    fn concurrent_writes_and_syncs_on_one_file() {
        const TASKS: u64 = 3;
        const ROUNDS: u64 = 64;
        const SLOT: u64 = 3 * BLOCK_SIZE as u64;
        let dir = std::env::temp_dir().join(format!("synod-dma-conc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("file");
        let size = TASKS * ROUNDS * SLOT;
        let pattern = |task: u64, round: u64| -> Vec<u8> {
            let blocks = 1 + ((task + round) % 3) as usize;
            (0..blocks * BLOCK_SIZE)
                .map(|i| (task * 97 + round * 31 + i as u64 % 251) as u8 | 1)
                .collect()
        };
        let back = run_local({
            let path = path.clone();
            async move {
                DmaDisk::create_zeroed(&path, size).await.expect("create");
                let disk = Rc::new(DmaDisk::open(&path).await.expect("open"));
                let tasks: Vec<_> = (0..TASKS)
                    .map(|task| {
                        let disk = Rc::clone(&disk);
                        glommio::spawn_local(async move {
                            for round in 0..ROUNDS {
                                let offset = (round * TASKS + task) * SLOT;
                                disk.write_at(offset, &pattern(task, round))
                                    .await
                                    .expect("write");
                                disk.sync().await.expect("sync");
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await;
                }
                let back = disk.read_at(0, size as usize).await.expect("read");
                Rc::try_unwrap(disk)
                    .expect("the tasks are done")
                    .close()
                    .await
                    .expect("close");
                back
            }
        })
        .expect("executor");
        for task in 0..TASKS {
            for round in 0..ROUNDS {
                let offset = ((round * TASKS + task) * SLOT) as usize;
                let wanted = pattern(task, round);
                assert_eq!(
                    &back[offset..offset + wanted.len()],
                    &wanted[..],
                    "task {task} round {round}"
                );
                assert!(back[offset + wanted.len()..offset + SLOT as usize]
                    .iter()
                    .all(|b| *b == 0));
            }
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    // Goal: a failed file operation keeps the kernel's errno through glommio (its own
    // conversion drops it), so a shard's fatal error can name ENOENT, ENOSPC, EIO.
    // Method: open and create in a directory that does not exist.
    #[test]
    fn errors_keep_the_errno() {
        let missing = std::env::temp_dir()
            .join(format!("synod-dma-missing-{}", std::process::id()))
            .join("file");
        let (opened, created) = run_local({
            let missing = missing.clone();
            async move {
                let opened = DmaDisk::open(&missing).await.err();
                let created = ZeroFill::create(&missing, BLOCK_SIZE as u64).await.err();
                (opened, created)
            }
        })
        .expect("executor");
        for error in [opened, created] {
            let error = error.expect("no such directory");
            assert_eq!(error.raw_os_error(), Some(2), "{error}");
            assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
        }
    }
}
