//! The log head hint file (`wal::log_head`): written in place, one block, by one
//! O_DIRECT write and one fdatasync; removed when a recovery distrusts it.
//!
//! Why in place rather than a temporary file renamed over it: one fdatasync per
//! truncation instead of two plus a directory sync, and a torn write needs no rename to
//! be atomic: every field and the CRC32C lie in the first sector, and a block that does
//! not verify is refused by recovery, which then scans in full (always safe). The file
//! is created zero-filled once, with a directory sync, before its first write.

use super::config::{io_error, sync_dir, StoreError};
use super::dma_disk::DmaDisk;
use crate::wal::log_head::{log_head_file_name, LogHead, LOG_HEAD_SIZE};
use std::path::{Path, PathBuf};

/// The hint file of `shard` in `dir`.
#[must_use]
pub fn path(dir: &Path, shard: u32) -> PathBuf {
    dir.join(log_head_file_name(shard))
}

/// Writes `head` into the hint file of its shard in `dir` and makes it durable.
/// BEFORE calling: every record the hint's plan looked at is durable.
///
/// # Errors
///
/// The file could not be created, written or synced.
pub async fn write(dir: &Path, head: &LogHead) -> Result<(), StoreError> {
    let path = path(dir, head.shard);
    if !path.exists() {
        DmaDisk::create_zeroed(&path, LOG_HEAD_SIZE as u64)
            .await
            .map_err(io_error("create", &path))?;
        sync_dir(dir)?;
    }
    let disk = DmaDisk::open(&path)
        .await
        .map_err(io_error("open", &path))?;
    disk.write_at(0, &head.encode())
        .await
        .map_err(io_error("write", &path))?;
    disk.sync().await.map_err(io_error("sync", &path))?;
    disk.close().await.map_err(io_error("close", &path))
}

/// Removes the hint file of `shard` in `dir`, if any, durably (BEFORE the first append
/// after a recovery that distrusted it or kept a corrupt prefix).
///
/// # Errors
///
/// The file could not be removed or the directory synced.
pub fn remove(dir: &Path, shard: u32) -> Result<bool, StoreError> {
    let path = path(dir, shard);
    if !path.exists() {
        return Ok(false);
    }
    std::fs::remove_file(&path).map_err(io_error("delete", &path))?;
    sync_dir(dir)?;
    Ok(true)
}
