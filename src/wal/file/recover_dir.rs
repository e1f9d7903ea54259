//! The directory scan: reads the files of a shard's log directory and hands them to the
//! pure segmented-log recovery (`log_recovery::recover_from`). Read-only.
//!
//! Invariant: memory is the head of every file plus one segment image at a time plus
//! the recovered records.

use super::config::{io_error, StoreConfig, StoreError};
use crate::wal::log_recovery::{recover_from, LogRecovery, SegmentFile, SEGMENT_HEAD_SIZE};
use std::io::{self, Read};

/// Recovers the log in `config.dir` (read-only). Reads the head of every file, then the
/// used segments one at a time: memory is one segment plus the recovered records.
pub fn recover_dir(config: &StoreConfig) -> Result<LogRecovery, StoreError> {
    let dir = &config.dir;
    let mut heads: Vec<(String, u64, Vec<u8>)> = Vec::new();
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
    recover_from(&files, &config.log_config(), |name| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(io_error("read", &path))
    })
}
