//! The directory scan: reads the files of a shard's log directory and hands them to the
//! pure segmented-log recovery (`log_recovery::recover_from`). Read-only.
//!
//! Invariant: memory is the head of every file plus one segment image at a time plus
//! the recovered records. The log head hint (`wal::log_head`) is read whole and handed
//! over as bytes; the pure recovery decides whether it holds. A segment read from an
//! offset reads only from there (the bytes below stay zero, never read).

use super::config::{io_error, StoreConfig, StoreError};
use crate::wal::log_head::{log_head_file_name, LOG_HEAD_SIZE};
use crate::wal::log_recovery::{recover_from, LogRecovery, SegmentFile, SEGMENT_HEAD_SIZE};
use std::io::{self, Read, Seek, SeekFrom};

/// Recovers the log in `config.dir` (read-only). Reads the head of every file, then the
/// used segments one at a time: memory is one segment plus the recovered records. The
/// scan starts at the log head hint when it holds (`log_recovery` row S11).
pub fn recover_dir(config: &StoreConfig) -> Result<LogRecovery, StoreError> {
    recover_dir_with(config, true)
}

/// `recover_dir` with the choice of the log head hint: `use_head == false` reads every
/// live segment whole (`synod wal verify`, which checks the whole live log).
pub fn recover_dir_with(config: &StoreConfig, use_head: bool) -> Result<LogRecovery, StoreError> {
    let dir = &config.dir;
    let mut heads: Vec<(String, u64, Vec<u8>)> = Vec::new();
    let head_name = log_head_file_name(config.shard);
    let mut head_bytes: Option<Vec<u8>> = None;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => Some(entries),
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => return Err(io_error("list", dir)(error)),
    };
    for entry in entries.into_iter().flatten() {
        let entry = entry.map_err(io_error("list", dir))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == head_name {
            // One block; a longer file is not a hint (it reads as the wrong size).
            let mut bytes = Vec::with_capacity(LOG_HEAD_SIZE);
            std::fs::File::open(&path)
                .and_then(|file| file.take(LOG_HEAD_SIZE as u64 + 1).read_to_end(&mut bytes))
                .map_err(io_error("read", &path))?;
            head_bytes = use_head.then_some(bytes);
            continue;
        }
        let mut head = Vec::with_capacity(SEGMENT_HEAD_SIZE);
        let size = std::fs::File::open(&path)
            .and_then(|file| {
                let size = file.metadata()?.len();
                file.take(SEGMENT_HEAD_SIZE as u64).read_to_end(&mut head)?;
                Ok(size)
            })
            .map_err(io_error("read", &path))?;
        heads.push((name, size, head));
    }
    let files: Vec<SegmentFile<'_>> = heads
        .iter()
        .map(|(name, size, head)| SegmentFile {
            name,
            size: *size,
            head,
        })
        .collect();
    recover_from(
        &files,
        head_bytes.as_deref(),
        &config.log_config(),
        |name, from| {
            let path = dir.join(name);
            read_from(&path, from).map_err(io_error("read", &path))
        },
    )
}

/// The whole file at `path`, with the bytes below `from` zero and not read. The zeroed
/// allocation is lazily mapped, so the part below `from` costs no I/O and no copy.
fn read_from(path: &std::path::Path, from: u64) -> io::Result<Vec<u8>> {
    if from == 0 {
        return std::fs::read(path);
    }
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let len = usize::try_from(size).map_err(io::Error::other)?;
    let mut bytes = vec![0u8; len];
    let start = usize::try_from(from.min(size)).map_err(io::Error::other)?;
    file.seek(SeekFrom::Start(start as u64))?;
    file.read_exact(&mut bytes[start..])?;
    Ok(bytes)
}
