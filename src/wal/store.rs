//! The segment store: executes `GroupCommit`'s `WritePlan`s on segment files of one
//! directory through the `DmaDisk` seam, and prepares a recovered directory for appends.
//! Decisions live in the pure `segment` and `recovery` modules; this is the shell.
//!
//! Invariants:
//! - per plan, exactly one `write_at` of the whole plan and one fdatasync (plus, when the
//!   plan starts a segment, one header write and fdatasync BEFORE it);
//! - segment files are created zero-filled at their full size and never extended by a
//!   plan; `spare_count_min` spares are kept ahead (created on a roll when missing);
//! - any I/O error is returned and the store must not be used again (never retried).

use super::dma_disk::DmaDisk;
use super::group_commit::WritePlan;
use super::index::{IndexEntry, LogIndex};
use super::record::{self, DecodeLimits};
use super::segment::{
    header_for, parse_segment_file_name, recover_from, segment_file_name, HeaderError, LogConfig,
    LogRecovery, SegmentFile, SegmentGeometry, SEGMENT_HEADER_SIZE, SEGMENT_HEAD_SIZE,
};
use super::{block_align_up, BLOCK_SIZE};
use crate::paxos::{GroupId, Instance, Lsn};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Where and how a shard's log lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Directory of the segment files.
    pub dir: PathBuf,
    /// The shard.
    pub shard: u32,
    /// Segment sizes.
    pub geometry: SegmentGeometry,
    /// Decoder limits for recovery.
    pub limits: DecodeLimits,
    /// Zero-filled segments kept ready after the one being written.
    pub spare_count_min: usize,
}

impl StoreConfig {
    /// The recovery configuration of this log.
    #[must_use]
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            shard: self.shard,
            geometry: self.geometry,
            limits: self.limits,
        }
    }

    fn path(&self, index: u64) -> PathBuf {
        self.dir.join(segment_file_name(self.shard, index))
    }
}

/// A failed store operation: fatal to the shard (never retried).
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O call failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file or directory.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// A catch-up read found bytes that are not the indexed record (damage after it was
    /// written, or an index bug): nothing is streamed from them.
    CatchUpMismatch {
        /// The segment.
        segment: u64,
        /// File offset of the record.
        file_offset: u64,
        /// LSN the index names there.
        lsn: Lsn,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { op, path, error } => {
                write!(f, "WAL {op} {}: {error}", path.display())
            }
            StoreError::CatchUpMismatch {
                segment,
                file_offset,
                lsn,
            } => write!(
                f,
                "WAL catch-up read: segment {segment} offset {file_offset} does not hold \
                 the indexed record at LSN {}",
                lsn.0
            ),
        }
    }
}

impl std::error::Error for StoreError {}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |error| StoreError::Io {
        op,
        path: path.to_path_buf(),
        error,
    }
}

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

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync directory", dir))
}

/// Executes write plans on the segment files of one shard.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    /// The segment being written: index and file.
    current: Option<(u64, DmaDisk)>,
    /// LSN of the last record written (the next segment's `lsn_prev`).
    lsn_written: Lsn,
    /// Highest index with a zero-filled file ready (spares are `current + 1 ..= this`).
    spare_through: Option<u64>,
    /// fdatasync calls made (header syncs included).
    pub sync_count: u64,
    /// Where each group's records lie (recovered, then every plan as written).
    index: LogIndex,
    /// Salt of every used segment, by index (for catch-up reads).
    salts: BTreeMap<u64, u32>,
}

/// Largest single DMA read of a catch-up read: records closer than this are read
/// together, and a run is cut here.
pub const CATCH_UP_READ_SIZE_MAX: usize = 1 << 20;

/// Records of one group as they lie in one segment, for one `CatchUpStream` frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatchUpChunk {
    /// Salt of the segment they come from: every record's checksum is seeded with it.
    pub salt: u32,
    /// LSN of the first record (the sender's; log-local).
    pub first_lsn: Lsn,
    /// Instance of the first record.
    pub first_instance: Instance,
    /// Instance of the last record.
    pub last_instance: Instance,
    /// Whole records, byte for byte as on disk, in instance order.
    pub records: Vec<u8>,
    /// How many records.
    pub record_count: usize,
}

impl Store {
    /// Makes a recovered directory ready for appends: deletes `recovery.discard`, zeroes
    /// `recovery.scrub` durably, re-extends a short resume segment, opens the segment of
    /// `recovery.resume`, and creates spares. When `recovery` is `Corrupt`, the caller
    /// makes learner status durable BEFORE calling this (it erases the evidence).
    pub async fn prepare(config: StoreConfig, recovery: &LogRecovery) -> Result<Store, StoreError> {
        std::fs::create_dir_all(&config.dir).map_err(io_error("create", &config.dir))?;
        for name in &recovery.discard {
            let path = config.dir.join(name);
            std::fs::remove_file(&path).map_err(io_error("delete", &path))?;
        }
        if !recovery.discard.is_empty() {
            sync_dir(&config.dir)?;
        }
        let geometry = config.geometry;
        let (resume_index, resume_file_offset) = geometry.locate(recovery.resume.offset);
        let salts = recovery
            .segments
            .iter()
            .filter(|s| s.records > 0)
            .filter_map(|s| s.header.map(|h| (s.index, h.salt)))
            .collect();
        let mut store = Store {
            current: None,
            lsn_written: recovery.resume.lsn_through,
            spare_through: None,
            sync_count: 0,
            config,
            index: LogIndex::from_recovered(&recovery.records),
            salts,
        };
        let mid_segment = resume_file_offset > SEGMENT_HEADER_SIZE as u64;
        if mid_segment {
            let path = store.config.path(resume_index);
            let len = std::fs::metadata(&path)
                .map_err(io_error("stat", &path))?
                .len();
            if len < geometry.segment_size {
                // A truncated file: holes read as zeros (rare; the hot path never extends).
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(geometry.segment_size).and_then(|()| f.sync_all()))
                    .map_err(io_error("extend", &path))?;
            }
            let disk = DmaDisk::open(&path)
                .await
                .map_err(io_error("open", &path))?;
            if !recovery.scrub.is_empty() {
                let (_, at) = geometry.locate(recovery.scrub.start);
                let zeros = vec![0u8; (recovery.scrub.end - recovery.scrub.start) as usize];
                disk.write_at(at, &zeros)
                    .await
                    .map_err(io_error("scrub", &path))?;
                disk.sync().await.map_err(io_error("sync", &path))?;
                store.sync_count += 1;
            }
            store.current = Some((resume_index, disk));
        }
        // Spares: every blank file after the resume segment counts.
        let spare_from = if mid_segment {
            resume_index + 1
        } else {
            resume_index
        };
        let mut through = None;
        for report in &recovery.segments {
            if report.index >= spare_from
                && report.header_error == Some(HeaderError::Blank)
                && !report.short
                && through.map_or(report.index == spare_from, |t: u64| report.index == t + 1)
            {
                through = Some(report.index);
            }
        }
        store.spare_through = through;
        store.ensure_spares(spare_from).await?;
        Ok(store)
    }

    /// Creates zero-filled spares so that `from ..= from + spare_count_min - 1` exist
    /// (at least the file `from` itself).
    async fn ensure_spares(&mut self, from: u64) -> Result<(), StoreError> {
        let want = from + self.config.spare_count_min.max(1) as u64 - 1;
        let mut next = self
            .spare_through
            .filter(|t| *t >= from)
            .map_or(from, |t| t + 1);
        let created = next <= want;
        while next <= want {
            let path = self.config.path(next);
            let tmp = self.config.dir.join(format!(
                "{}.tmp",
                segment_file_name(self.config.shard, next)
            ));
            DmaDisk::create_zeroed(&tmp, self.config.geometry.segment_size)
                .await
                .map_err(io_error("create", &tmp))?;
            std::fs::rename(&tmp, &path).map_err(io_error("rename", &path))?;
            self.spare_through = Some(next);
            next += 1;
        }
        if created {
            sync_dir(&self.config.dir)?;
        }
        Ok(())
    }

    /// Writes `plan` and makes it durable: one `write_at` and one fdatasync (after the
    /// segment header's write and fdatasync when the plan starts a segment). BEFORE
    /// reporting `on_durable(plan.lsn_through)`. An error is fatal.
    pub async fn write(&mut self, plan: &WritePlan) -> Result<(), StoreError> {
        self.write_unsynced(plan).await?;
        self.sync().await
    }

    /// `write` in two steps, so that the caller can encode the next batch while the
    /// fdatasync runs: this one writes `plan` (one `write_at`; the header first, made
    /// durable, when it starts a segment). `plan` is durable only after `sync`.
    pub async fn write_unsynced(&mut self, plan: &WritePlan) -> Result<(), StoreError> {
        let geometry = self.config.geometry;
        let (index, file_offset) = geometry.locate(plan.offset);
        if let Some(header) = header_for(plan, &geometry, self.config.shard, self.lsn_written) {
            if let Some((_, old)) = self.current.take() {
                let path = self.config.path(index.saturating_sub(1));
                old.close().await.map_err(io_error("close", &path))?;
            }
            // Normally a spare exists; otherwise this creates it (a stall on the roll).
            self.ensure_spares(index).await?;
            let path = self.config.path(index);
            let disk = DmaDisk::open(&path)
                .await
                .map_err(io_error("open", &path))?;
            disk.write_at(0, &header.encode())
                .await
                .map_err(io_error("write header", &path))?;
            disk.sync().await.map_err(io_error("sync header", &path))?;
            self.sync_count += 1;
            self.current = Some((index, disk));
            self.salts.insert(index, plan.salt);
            // Keep spares ahead for the next rolls (a stall here, between batches).
            self.ensure_spares(index + 1).await?;
        }
        let Some((current, disk)) = &self.current else {
            unreachable!("a plan inside a segment's payload follows its initialisation")
        };
        assert_eq!(
            *current, index,
            "plan at log offset {} is not in the open segment",
            plan.offset
        );
        assert!(plan.bytes.len() % BLOCK_SIZE == 0);
        let path = self.config.path(index);
        disk.write_at(file_offset, &plan.bytes)
            .await
            .map_err(io_error("write", &path))?;
        self.lsn_written = plan.lsn_through;
        self.index.insert_plan(plan);
        Ok(())
    }

    /// The per-group index of the records written so far.
    #[must_use]
    pub fn index(&self) -> &LogIndex {
        &self.index
    }

    /// Reads `group`'s indexed records from instance `from` upward, in instance order,
    /// until adding the next would exceed `budget_size` bytes (the first is returned
    /// whatever its size, so a reader always progresses). Returns them byte for byte as
    /// they lie on disk, one chunk per run of records in the same segment (one salt per
    /// chunk). Reads with block-aligned DMA reads of up to `CATCH_UP_READ_SIZE_MAX`
    /// bytes, each covering every wanted record in its span. Each record's header and
    /// checksum are checked against the index before it is returned.
    pub async fn read_catch_up(
        &self,
        group: GroupId,
        from: Instance,
        budget_size: usize,
    ) -> Result<Vec<CatchUpChunk>, StoreError> {
        let Some(index) = self.index.group(group) else {
            return Ok(Vec::new());
        };
        let geometry = self.config.geometry;
        let mut wanted: Vec<(Instance, IndexEntry)> = Vec::new();
        let mut total = 0usize;
        for (instance, entry) in index.range_from(from) {
            if !wanted.is_empty() && total + entry.size as usize > budget_size {
                break;
            }
            total += entry.size as usize;
            wanted.push((instance, entry));
        }
        // Records by segment, each segment's in file order, read in spans.
        let mut by_segment: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (at, (_, entry)) in wanted.iter().enumerate() {
            by_segment
                .entry(geometry.locate(entry.offset).0)
                .or_default()
                .push(at);
        }
        let mut bytes_of: Vec<Vec<u8>> = vec![Vec::new(); wanted.len()];
        for (segment, mut ats) in by_segment {
            ats.sort_by_key(|at| wanted[*at].1.offset);
            let salt = *self.salts.get(&segment).unwrap_or(&0);
            let path = self.config.path(segment);
            let current = self
                .current
                .as_ref()
                .filter(|(current, _)| *current == segment)
                .map(|(_, disk)| disk);
            let opened = match current {
                Some(_) => None,
                None => Some(
                    DmaDisk::open(&path)
                        .await
                        .map_err(io_error("open", &path))?,
                ),
            };
            let disk = current
                .or(opened.as_ref())
                .expect("the open segment or a file just opened");
            let mut next = 0;
            while next < ats.len() {
                // One span: records from `next` while the span stays within the limit.
                let first = wanted[ats[next]].1;
                let (_, start) = geometry.locate(first.offset);
                let start = start / BLOCK_SIZE as u64 * BLOCK_SIZE as u64;
                let mut end = next;
                let mut span_end = 0;
                while end < ats.len() {
                    let entry = wanted[ats[end]].1;
                    let (_, file_offset) = geometry.locate(entry.offset);
                    let record_end = block_align_up(file_offset + u64::from(entry.size));
                    if end > next && record_end - start > CATCH_UP_READ_SIZE_MAX as u64 {
                        break;
                    }
                    span_end = record_end;
                    end += 1;
                }
                let read = disk
                    .read_at(start, (span_end - start) as usize)
                    .await
                    .map_err(io_error("read", &path))?;
                for at in &ats[next..end] {
                    let entry = wanted[*at].1;
                    let (_, file_offset) = geometry.locate(entry.offset);
                    let from = (file_offset - start) as usize;
                    let bytes = read.get(from..from + entry.size as usize);
                    let intact = bytes.is_some_and(|bytes| {
                        record::peek(bytes).is_some_and(|p| {
                            p.lsn == entry.lsn && p.size == entry.size && p.kind == entry.kind
                        }) && bytes[4..8] == crc32c::crc32c_append(salt, &bytes[8..]).to_le_bytes()
                    });
                    let Some(bytes) = bytes.filter(|_| intact) else {
                        return Err(StoreError::CatchUpMismatch {
                            segment,
                            file_offset,
                            lsn: entry.lsn,
                        });
                    };
                    bytes_of[*at] = bytes.to_vec();
                }
                next = end;
            }
            if let Some(disk) = opened {
                disk.close().await.map_err(io_error("close", &path))?;
            }
        }
        // Chunks: consecutive records (instance order) of the same segment.
        let mut chunks: Vec<(u64, CatchUpChunk)> = Vec::new();
        for ((instance, entry), bytes) in wanted.iter().zip(bytes_of) {
            let segment = geometry.locate(entry.offset).0;
            match chunks.last_mut() {
                Some((s, chunk)) if *s == segment => {
                    chunk.records.extend_from_slice(&bytes);
                    chunk.last_instance = *instance;
                    chunk.record_count += 1;
                }
                _ => chunks.push((
                    segment,
                    CatchUpChunk {
                        salt: *self.salts.get(&segment).unwrap_or(&0),
                        first_lsn: entry.lsn,
                        first_instance: *instance,
                        last_instance: *instance,
                        records: bytes,
                        record_count: 1,
                    },
                )),
            }
        }
        Ok(chunks.into_iter().map(|(_, chunk)| chunk).collect())
    }

    /// fdatasync of the open segment: everything `write_unsynced` wrote is durable after.
    pub async fn sync(&mut self) -> Result<(), StoreError> {
        let Some((index, disk)) = &self.current else {
            return Ok(());
        };
        disk.sync()
            .await
            .map_err(io_error("sync", &self.config.path(*index)))?;
        self.sync_count += 1;
        Ok(())
    }

    /// Closes the open segment.
    pub async fn close(mut self) -> Result<(), StoreError> {
        if let Some((index, disk)) = self.current.take() {
            let path = self.config.path(index);
            disk.close().await.map_err(io_error("close", &path))?;
        }
        Ok(())
    }
}

/// Makes every segment file in `config.dir` a blank spare, renamed to indices `0..n`, so
/// a benchmark or test starts an empty log on files whose extents are already written
/// (recycling instead of deleting and re-creating gigabytes). Zeroes each file's header
/// and first payload block (`segment` invariants). Returns the number of files.
pub async fn recycle_all(config: &StoreConfig) -> Result<usize, StoreError> {
    let mut names: Vec<String> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&config.dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if parse_segment_file_name(&name).is_some_and(|(shard, _)| shard == config.shard) {
                names.push(name);
            }
        }
    }
    names.sort();
    let zeros = vec![0u8; 2 * SEGMENT_HEADER_SIZE];
    for (new_index, name) in names.iter().enumerate() {
        let path = config.dir.join(name);
        let disk = DmaDisk::open(&path)
            .await
            .map_err(io_error("open", &path))?;
        disk.write_at(0, &zeros)
            .await
            .map_err(io_error("blank", &path))?;
        disk.sync().await.map_err(io_error("sync", &path))?;
        disk.close().await.map_err(io_error("close", &path))?;
        let to = config.path(new_index as u64);
        if to != path {
            std::fs::rename(&path, &to).map_err(io_error("rename", &path))?;
        }
    }
    sync_dir(&config.dir)?;
    Ok(names.len())
}

/// The value `synod wal crash-child` writes at `lsn` in run `incarnation`: its first 16
/// bytes say both, the rest is a pattern of them, so a stale record is recognisable.
/// The crash test (`tests/wal_crash.rs`) checks recovered values against it.
pub fn crash_value(lsn: u64, incarnation: u64) -> Vec<u8> {
    let size = 16 + (lsn.wrapping_mul(2_654_435_761) % 6000) as usize;
    let mut value = Vec::with_capacity(size);
    value.extend_from_slice(&lsn.to_le_bytes());
    value.extend_from_slice(&incarnation.to_le_bytes());
    let seed = lsn ^ (incarnation << 40);
    value.extend((16..size).map(|i| (seed.wrapping_add(i as u64 * 131) % 251) as u8));
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Ballot, GroupId, NodeId, Record};
    use crate::wal::dma_disk::run_local;
    use crate::wal::segment::LogDecision;
    use crate::wal::{GroupCommit, GroupCommitConfig, SegmentPlacement};

    fn config(dir: &Path) -> StoreConfig {
        StoreConfig {
            dir: dir.to_path_buf(),
            shard: 0,
            geometry: SegmentGeometry::new(16 * BLOCK_SIZE as u64),
            limits: DecodeLimits::default(),
            spare_count_min: 2,
        }
    }

    /// Opens the log in `dir`, appends `batches` batches of 100 promises, closes it.
    async fn append(dir: PathBuf, batches: usize, seed: u64) -> Lsn {
        let config = config(&dir);
        let recovery = recover_dir(&config).expect("read");
        assert!(recovery.corruption().is_none(), "{:?}", recovery.decision);
        let mut store = Store::prepare(config.clone(), &recovery)
            .await
            .expect("prepare");
        let mut commit = GroupCommit::segmented(
            GroupCommitConfig {
                buffer_size_max: 4 * BLOCK_SIZE,
                salt: recovery.resume_salt,
            },
            recovery.resume,
            SegmentPlacement {
                payload_size: config.geometry.payload_size(),
                salt_seed: seed,
            },
        );
        for _ in 0..batches {
            for round in 0..100 {
                let record = Record::Promise {
                    group: GroupId(1),
                    ballot: Ballot {
                        round,
                        node: NodeId(1),
                    },
                };
                if commit.append(&record).is_err() {
                    // The batch closed early at a segment's end: write it, go on.
                    let plan = commit.take_write().expect("a batch");
                    store.write(&plan).await.expect("write");
                    commit.on_durable(plan.lsn_through);
                    commit.append(&record).expect("fits an empty batch");
                }
            }
            let plan = commit.take_write().expect("a batch");
            store.write(&plan).await.expect("write");
            commit.on_durable(plan.lsn_through);
        }
        store.close().await.expect("close");
        commit.durable_through()
    }

    // Goal: plans land in segment files across rolls, recover cleanly, and a reopened
    // log continues; recycling turns every file back into a spare.
    // Method: 40 two-block batches into 15-block segments, twice; recover; recycle.
    #[test]
    fn write_roll_recover_continue() {
        let dir = std::env::temp_dir().join(format!("synod-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = run_local(append(dir.clone(), 40, 1)).expect("executor");
        assert_eq!(first, Lsn(4000));
        let second = run_local(append(dir.clone(), 40, 2)).expect("executor");
        assert_eq!(second, Lsn(8000));
        let recovery = recover_dir(&config(&dir)).expect("read");
        assert_eq!(recovery.decision, LogDecision::Clean);
        assert_eq!(recovery.records.len(), 8000);
        let used = recovery
            .segments
            .iter()
            .filter(|s| s.header.is_some())
            .count();
        assert!(used >= 11, "{used} segments used");
        assert!(recovery.segments.len() >= used + 2, "spares kept ahead");
        let files = recovery.segments.len();
        let recycled = run_local({
            let config = config(&dir);
            async move { recycle_all(&config).await.expect("recycle") }
        })
        .expect("executor");
        assert_eq!(recycled, files);
        let empty = recover_dir(&config(&dir)).expect("read");
        assert_eq!(
            (empty.decision, empty.lsn_through),
            (LogDecision::Clean, Lsn(0))
        );
        assert_eq!(
            run_local(append(dir.clone(), 3, 3)).expect("executor"),
            Lsn(300)
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
