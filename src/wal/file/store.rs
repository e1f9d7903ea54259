//! The segment store: executes `GroupCommit`'s `WritePlan`s on segment files of one
//! directory through the `DmaDisk` seam, and prepares a recovered directory for appends.
//! Decisions live in the pure modules (`log_recovery`, `group_commit`, `compaction`);
//! this is the shell.
//!
//! Invariants:
//! - per plan, exactly one `write_at` of the whole plan and one fdatasync (plus, when the
//!   plan starts a segment, one header write and fdatasync BEFORE it); the fdatasync
//!   may run without the store, on the open segment's shared handle (`segment_sync`),
//!   so that the driver writes the next plan meanwhile: an fdatasync issued after a
//!   `write_at` completed covers it and every earlier one of that file, and a plan that
//!   starts a segment is written only once nothing is in flight (`GroupCommit`);
//! - segment files are created zero-filled at their full size and never extended by a
//!   plan; `prepare_spares_slice` (called by the driver's WAL writer, off the write path)
//!   keeps `spare_count_min` spares ahead, recycling truncated segments before creating
//!   new files; a roll finding no spare creates one inline (a stall, counted);
//! - a segment is deleted or recycled only when it lies below the `log_start` of a
//!   durable segment header (`schema/wal.md`, Truncation): `truncate` plans the new
//!   start, the next roll writes it, a later `truncate` or `prepare_spares` removes the
//!   files below it. The driver's WAL writer calls `truncate` while the store is idle,
//!   with the watermarks the shard decides (`runtime::truncation`: the groups' durable
//!   checkpoints), so a running node's log stays bounded;
//! - the log head hint (`wal::log_head`) is written by `truncate` only when the last
//!   write was synced (`lsn_synced == lsn_written`), so every indexed record is durable
//!   when it is planned; `prepare` removes a hint the recovery refused, or any hint
//!   when the recovery kept a corrupt prefix, BEFORE the first append;
//! - any I/O error is returned and the store must not be used again (never retried).

pub use super::config::{StoreConfig, StoreError};
pub use super::recover_dir::{recover_dir, recover_dir_with};

use super::config::{io_error, sync_dir};
use super::dma_disk::{DmaDisk, ZeroFill};
use crate::paxos::{GroupId, Instance, Lsn, Record};
use crate::wal::catch_up::RecordRead;
use crate::wal::compaction::{self, CompactionConfig, Rewrite};
use crate::wal::group_commit::{header_for, WritePlan};
use crate::wal::index::{IndexEntry, LogIndex};
use crate::wal::layout::{block_align_up, BLOCK_SIZE};
use crate::wal::log_head::LogHead;
use crate::wal::log_recovery::{HeadUse, LogDecision, LogRecovery};
use crate::wal::record;
use crate::wal::segment_format::{
    parse_segment_file_name, segment_file_name, HeaderError, SegmentGeometry, SEGMENT_HEADER_SIZE,
};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Executes write plans on the segment files of one shard.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    /// The segment being written: index and file (shared with the fdatasyncs that run
    /// without the store, `segment_sync`).
    current: Option<(u64, Rc<DmaDisk>)>,
    /// LSN of the last record written (the next segment's `lsn_prev`).
    lsn_written: Lsn,
    /// LSN through which the writes are known durable: the last `sync` (0 after a
    /// recovery until the first sync: a crashed run may have left its last write
    /// unsynced). The log head hint is written only when it equals `lsn_written`.
    lsn_synced: Lsn,
    /// The log head hint last written (not rewritten while it stays the same).
    head_written: Option<LogHead>,
    /// Log head hints written.
    pub head_write_count: u64,
    /// Highest index with a zero-filled file ready (spares are `current + 1 ..= this`).
    spare_through: Option<u64>,
    /// fdatasync calls made (header syncs included).
    pub sync_count: u64,
    /// Where each group's records lie (recovered, then every plan as written).
    index: LogIndex,
    /// Salt of every used segment, by index (for catch-up reads).
    salts: BTreeMap<u64, u32>,
    /// `log_start` of the newest durable segment header (or recovered): files below it
    /// may be removed.
    log_start: u64,
    /// `log_start` planned by `truncate`, written into the next segment header.
    log_start_planned: u64,
    /// Segment files below `log_start` still on disk, to recycle or delete.
    leftovers: Vec<u64>,
    /// Index the next roll initialises.
    next_segment: u64,
    /// Highest segment holding records, if any.
    last_used: Option<u64>,
    /// Rolls that found no spare and created one inline (a stall on the write path).
    pub inline_spare_count: u64,
    /// The spare being zero-filled a slice at a time (`prepare_spares_slice`): its
    /// index, its temporary path and the fill. A roll into that index finishes it.
    filling: Option<(u64, PathBuf, ZeroFill)>,
}

/// What `Store::truncate` did and what the caller must append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// The planned first segment (written into the next segment header).
    pub log_start: u64,
    /// `log_start` of the newest durable header: segments below it are gone.
    pub log_start_durable: u64,
    /// Segment files recycled into spares by this call.
    pub recycled_count: usize,
    /// Segment files deleted by this call.
    pub deleted_count: usize,
    /// Records to append through `GroupCommit` (any order, all of them; stale copies
    /// are harmless: see `compaction::Rewrite`). Once they are durable, segment
    /// `log_start` is no longer needed.
    pub rewrites: Vec<Record>,
}

/// Largest single DMA read of a catch-up read: records closer than this are read
/// together, and a run is cut here.
pub const CATCH_UP_READ_SIZE_MAX: usize = 1 << 20;

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
        // A refused hint, or any after a corrupt prefix (appends may overwrite what it
        // names), must not outlive the first append.
        let distrusted = matches!(recovery.head, HeadUse::Refused { .. })
            || matches!(recovery.decision, LogDecision::Corrupt(_));
        if distrusted {
            super::log_head::remove(&config.dir, config.shard)?;
        }
        let geometry = config.geometry;
        let (resume_index, resume_file_offset) = geometry.locate(recovery.resume.offset);
        let salts = recovery
            .segments
            .iter()
            .filter(|s| s.records > 0)
            .filter_map(|s| s.header.map(|h| (s.index, h.salt)))
            .collect();
        let mut leftovers: Vec<u64> = recovery
            .truncated
            .iter()
            .filter_map(|name| parse_segment_file_name(name).map(|(_, index)| index))
            .collect();
        leftovers.sort_unstable();
        let mut store = Store {
            current: None,
            lsn_written: recovery.resume.lsn_through,
            lsn_synced: Lsn(0),
            head_written: None,
            head_write_count: 0,
            spare_through: None,
            sync_count: 0,
            index: LogIndex::from_recovered(&recovery.records),
            salts,
            log_start: recovery.log_start,
            log_start_planned: recovery.log_start,
            leftovers,
            next_segment: 0,
            last_used: recovery.records.last().map(|r| geometry.locate(r.offset).0),
            inline_spare_count: 0,
            filling: None,
            config,
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
            store.current = Some((resume_index, Rc::new(disk)));
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
        store.next_segment = spare_from;
        store.prepare_spares().await?;
        Ok(store)
    }

    /// Makes `spare_count_min` spares ready after the segment being written, off the
    /// write path (by `prepare`, `truncate` and the tools; the driver uses
    /// `prepare_spares_slice` instead): recycles segment files below the
    /// log's start first (header and first payload block blanked durably, then renamed),
    /// deletes the leftovers beyond that, and zero-fills new files only for the rest.
    /// Returns (recycled, deleted, created).
    pub async fn prepare_spares(&mut self) -> Result<(usize, usize, usize), StoreError> {
        let (from, want) = self.spares_wanted();
        if let Some(&(index, _, _)) = self.filling.as_ref() {
            // Finish the fill in progress first: a leftover must not be recycled into
            // its index meanwhile.
            if index <= want && self.next_spare(from) == index {
                self.fill_spare(index, u64::MAX).await?;
                sync_dir(&self.config.dir)?;
            } else if let Some((_, tmp, fill)) = self.filling.take() {
                fill.abandon().await.map_err(io_error("close", &tmp))?;
            }
        }
        let (recycled, deleted) = self.prepare_spares_recycle().await?;
        let created = self.ensure_spares(from, want).await?;
        Ok((recycled, deleted, created))
    }

    /// The recycling part of `prepare_spares`: leftovers below the log's start become
    /// spares up to `spare_count_min` (blanked durably, then renamed), the rest are
    /// deleted. Never while a spare fill is in progress (its index could be taken).
    async fn prepare_spares_recycle(&mut self) -> Result<(usize, usize), StoreError> {
        assert!(self.filling.is_none(), "recycling during a spare fill");
        let (from, want) = self.spares_wanted();
        let mut recycled = 0;
        let mut deleted = 0;
        for index in std::mem::take(&mut self.leftovers) {
            assert!(
                index < self.log_start,
                "segment {index} is still in the log"
            );
            let path = self.config.path(index);
            self.salts.remove(&index);
            if !path.exists() {
                // A segment the log lost (recovered as `MissingSegment` at its start).
                continue;
            }
            let next = self.next_spare(from);
            if next <= want {
                // Blank BEFORE the rename: a crash in between leaves a blank leftover
                // below the log's start (S10), never a stale header among the spares.
                blank(&path).await?;
                self.sync_count += 1;
                let to = self.config.path(next);
                std::fs::rename(&path, &to).map_err(io_error("rename", &path))?;
                self.spare_through = Some(next);
                recycled += 1;
            } else {
                std::fs::remove_file(&path).map_err(io_error("delete", &path))?;
                deleted += 1;
            }
        }
        if recycled + deleted > 0 {
            sync_dir(&self.config.dir)?;
        }
        Ok((recycled, deleted))
    }

    /// Spare files after the segment being written.
    #[must_use]
    pub fn spare_count(&self) -> usize {
        self.spare_through
            .filter(|t| *t >= self.next_segment)
            .map_or(0, |t| (t - self.next_segment + 1) as usize)
    }

    /// Plans truncation for per-group `watermarks` (every record of a group at or below
    /// its watermark is covered by a checkpoint; watermarks never decrease), releases the
    /// index below them, removes the segment files below the durable `log_start`
    /// (recycled as spares up to `spare_count_min`, else deleted), and when the oldest
    /// needed segment is pinned by few bytes (`config`), reads the records to rewrite
    /// forward. The caller appends `rewrites` through `GroupCommit`; the planned start
    /// becomes durable with the next segment header, and the files below it go at a later
    /// call. Meant for idle time, off the write path: the driver's WAL writer calls it
    /// while no write is pending or in flight and no catch-up read runs.
    pub async fn truncate(
        &mut self,
        watermarks: &BTreeMap<GroupId, Instance>,
        config: &CompactionConfig,
    ) -> Result<Truncation, StoreError> {
        for (group, through) in watermarks {
            self.index.release_through(*group, *through);
        }
        let mut rewrites = Vec::new();
        if let Some(last_used) = self.last_used {
            let plan = compaction::plan(
                &self.index,
                watermarks,
                self.config.geometry.payload_size(),
                self.log_start.min(last_used),
                last_used,
                config,
            );
            self.log_start_planned = self.log_start_planned.max(plan.log_start);
            if let Some(offset) = plan.head {
                self.write_head(offset).await?;
            }
            // Old group state records move up, so that the next hint can pass them.
            let moved = compaction::head_rewrites(&self.index, watermarks);
            let compacted = plan.rewrites.iter().filter_map(|rewrite| match rewrite {
                Rewrite::State(record) => Some(record),
                Rewrite::Copy { .. } => None,
            });
            let compacted: Vec<&Record> = compacted.collect();
            rewrites.extend(moved.into_iter().filter(|r| !compacted.contains(&r)));
            let mut copies = Vec::new();
            for rewrite in plan.rewrites {
                match rewrite {
                    Rewrite::State(record) => rewrites.push(record),
                    Rewrite::Copy {
                        group,
                        instance,
                        entry,
                    } => copies.push((group, instance, entry)),
                }
            }
            let limits = self.config.limits;
            let read = self.plan_read(&copies).run().await?;
            for ((_, _, entry), read) in copies.iter().zip(read) {
                let (segment, file_offset) = self.config.geometry.locate(entry.offset);
                match record::decode(read.bytes(), read.salt, &limits) {
                    Ok((decoded, _)) => match decoded.content {
                        record::Content::Record(record) => rewrites.push(record),
                        record::Content::Pad => unreachable!("a Pad is never indexed"),
                    },
                    Err(why) => {
                        return Err(StoreError::CompactionRead {
                            segment,
                            file_offset,
                            why,
                        })
                    }
                }
            }
        }
        let (recycled_count, deleted_count, _) = self.prepare_spares().await?;
        Ok(Truncation {
            log_start: self.log_start_planned,
            log_start_durable: self.log_start,
            recycled_count,
            deleted_count,
            rewrites,
        })
    }

    /// Writes the log head hint naming the record at log `offset` (the lowest needed
    /// one), when every written record is durable and the hint changed: reads the
    /// record to learn its LSN (a record that does not verify writes no hint: the next
    /// recovery then scans in full). Safety: `wal::log_head`.
    async fn write_head(&mut self, offset: u64) -> Result<(), StoreError> {
        if self.lsn_synced != self.lsn_written {
            return Ok(());
        }
        let (segment, file_offset) = self.config.geometry.locate(offset);
        let Some(salt) = self.salts.get(&segment).copied() else {
            return Ok(());
        };
        let unchanged = self
            .head_written
            .is_some_and(|h| (h.segment, h.file_offset, h.salt) == (segment, file_offset, salt));
        if unchanged {
            // A block of a segment's use is written once: the same record lies there.
            return Ok(());
        }
        let block = BLOCK_SIZE as u64;
        let aligned = file_offset / block * block;
        let within = (file_offset - aligned) as usize;
        let path = self.config.path(segment);
        let disk = DmaDisk::open(&path)
            .await
            .map_err(io_error("open", &path))?;
        let read = read_lsn(&disk, aligned, within, salt, &self.config.limits).await;
        disk.close().await.map_err(io_error("close", &path))?;
        let Some(lsn) = read.map_err(io_error("read", &path))? else {
            log::warn!(
                "{}: no verified record at the log head (offset {file_offset}); no hint",
                path.display()
            );
            return Ok(());
        };
        let head = LogHead {
            shard: self.config.shard,
            salt,
            segment,
            file_offset,
            lsn,
        };
        super::log_head::write(&self.config.dir, &head).await?;
        self.head_written = Some(head);
        self.head_write_count += 1;
        Ok(())
    }

    /// Creates zero-filled spares so that `from ..= want` exist; returns how many.
    async fn ensure_spares(&mut self, from: u64, want: u64) -> Result<usize, StoreError> {
        let mut count = 0;
        let mut next = self.next_spare(from);
        let created = next <= want;
        while next <= want {
            self.fill_spare(next, u64::MAX).await?;
            next += 1;
            count += 1;
        }
        if created {
            sync_dir(&self.config.dir)?;
        }
        Ok(count)
    }

    /// The segment indices that should have a spare file ready: from the next roll's
    /// on, `spare_count_min` of them (at least one).
    fn spares_wanted(&self) -> (u64, u64) {
        let from = self.next_segment;
        (from, from + self.config.spare_count_min.max(1) as u64 - 1)
    }

    /// The first index at or after `from` with no spare file ready.
    fn next_spare(&self, from: u64) -> u64 {
        self.spare_through
            .filter(|t| *t >= from)
            .map_or(from, |t| t + 1)
    }

    /// Zero-fills spare `index` by up to `budget` more bytes (resuming the fill in
    /// progress when it is that index; abandoning it otherwise), and once it is full,
    /// makes it durable and renames it into place. The directory entry is the caller's
    /// to sync. Returns whether spare `index` is ready.
    async fn fill_spare(&mut self, index: u64, budget: u64) -> Result<bool, StoreError> {
        let (tmp, mut fill) = match self.filling.take() {
            Some((at, tmp, fill)) if at == index => (tmp, fill),
            other => {
                if let Some((_, tmp, fill)) = other {
                    // Not the spare wanted now: start over (the file is rewritten).
                    fill.abandon().await.map_err(io_error("close", &tmp))?;
                }
                let tmp = self.config.dir.join(format!(
                    "{}.tmp",
                    segment_file_name(self.config.shard, index)
                ));
                let fill = ZeroFill::create(&tmp, self.config.geometry.segment_size)
                    .await
                    .map_err(io_error("create", &tmp))?;
                (tmp, fill)
            }
        };
        let full = fill
            .fill(budget)
            .await
            .map_err(io_error("zero-fill", &tmp))?;
        if !full {
            self.filling = Some((index, tmp, fill));
            return Ok(false);
        }
        fill.finish().await.map_err(io_error("sync", &tmp))?;
        let path = self.config.path(index);
        std::fs::rename(&tmp, &path).map_err(io_error("rename", &path))?;
        self.spare_through = Some(index);
        Ok(true)
    }

    /// One slice of `prepare_spares`, for a caller that must not hold the store for
    /// long (the shard's write path waits for it): recycles leftovers as
    /// `prepare_spares` does when no fill is in progress, else zero-fills the next
    /// missing spare by at most `budget` bytes. Returns whether more spare work remains
    /// (call again when idle). A roll that meets a partly filled spare finishes it.
    ///
    /// # Errors
    ///
    /// An I/O error (fatal: the shard stops).
    pub async fn prepare_spares_slice(&mut self, budget: u64) -> Result<bool, StoreError> {
        if self.filling.is_none() && !self.leftovers.is_empty() {
            self.prepare_spares_recycle().await?;
        }
        let (from, want) = self.spares_wanted();
        let next = self.next_spare(from);
        if next > want {
            return Ok(false);
        }
        if self.fill_spare(next, budget).await? {
            sync_dir(&self.config.dir)?;
        }
        Ok(self.next_spare(from) <= want)
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
        if let Some(header) = header_for(
            plan,
            &geometry,
            self.config.shard,
            self.lsn_written,
            self.log_start_planned.max(self.log_start),
        ) {
            if let Some((_, old)) = self.current.take() {
                let path = self.config.path(index.saturating_sub(1));
                close_shared(old, &path).await?;
            }
            // Normally a spare exists (`prepare_spares`); otherwise this creates it: a
            // stall on the roll, counted.
            if self.ensure_spares(index, index).await? > 0 {
                self.inline_spare_count += 1;
            }
            let path = self.config.path(index);
            let disk = DmaDisk::open(&path)
                .await
                .map_err(io_error("open", &path))?;
            disk.write_at(0, &header.encode())
                .await
                .map_err(io_error("write header", &path))?;
            disk.sync().await.map_err(io_error("sync header", &path))?;
            self.sync_count += 1;
            self.current = Some((index, Rc::new(disk)));
            self.salts.insert(index, plan.salt);
            self.next_segment = index + 1;
            // The header is durable: segments below its `log_start` may go (later, off
            // the write path).
            assert!(header.log_start >= self.log_start);
            self.leftovers.extend(self.log_start..header.log_start);
            self.log_start = header.log_start;
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
        self.last_used = Some(index);
        Ok(())
    }

    /// The per-group index of the records written so far.
    #[must_use]
    pub fn index(&self) -> &LogIndex {
        &self.index
    }

    /// A read of the indexed records `wanted` (from this store's index: a
    /// `wal::catch_up` plan, compaction's copies), to run later without the store
    /// ([`CatchUpRead::run`]): the shard's write path keeps the store meanwhile. The
    /// records were written when it was planned, and a written record is never
    /// rewritten in place.
    #[must_use]
    pub fn plan_read(&self, wanted: &[(GroupId, Instance, IndexEntry)]) -> CatchUpRead {
        let geometry = self.config.geometry;
        let mut segments = BTreeMap::new();
        for (_, _, entry) in wanted {
            let segment = geometry.locate(entry.offset).0;
            segments.entry(segment).or_insert_with(|| {
                (
                    self.config.path(segment),
                    *self.salts.get(&segment).unwrap_or(&0),
                )
            });
        }
        CatchUpRead {
            geometry,
            wanted: wanted.to_vec(),
            segments,
        }
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
        // Earlier segments were synced before the roll that left them (`write`).
        self.lsn_synced = self.lsn_written;
        Ok(())
    }

    /// Closes the open segment.
    pub async fn close(mut self) -> Result<(), StoreError> {
        if let Some((_, tmp, fill)) = self.filling.take() {
            fill.abandon().await.map_err(io_error("close", &tmp))?;
        }
        if let Some((index, disk)) = self.current.take() {
            close_shared(disk, &self.config.path(index)).await?;
        }
        Ok(())
    }

    /// The open segment's file, for an fdatasync that runs without the store
    /// (`SegmentSync::sync`): it makes durable every `write_unsynced` of this segment
    /// that completed before it was issued. `None` before the first segment opens.
    #[must_use]
    pub fn segment_sync(&self) -> Option<SegmentSync> {
        self.current.as_ref().map(|(index, disk)| SegmentSync {
            disk: Rc::clone(disk),
            path: self.config.path(*index),
        })
    }

    /// Records that the writes through `lsn_through` are durable (fdatasyncs run through
    /// `segment_sync`; `count` of them): the log head hint is written again once this
    /// reaches the last written LSN. The caller passes an LSN only when every write
    /// through it is durable (the driver: when no write is in flight).
    pub fn note_synced(&mut self, lsn_through: Lsn, count: u64) {
        assert!(
            lsn_through <= self.lsn_written,
            "synced through {} beyond the last written LSN {}",
            lsn_through.0,
            self.lsn_written.0
        );
        self.lsn_synced = self.lsn_synced.max(lsn_through);
        self.sync_count += count;
    }
}

/// The open segment's file shared with one fdatasync run without the store
/// (`Store::segment_sync`).
#[derive(Debug)]
pub struct SegmentSync {
    disk: Rc<DmaDisk>,
    path: PathBuf,
}

impl SegmentSync {
    /// fdatasync of the segment: durable after it are the writes of it that completed
    /// before this call.
    ///
    /// # Errors
    ///
    /// The fdatasync failed (fatal: never retried).
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.disk.sync().await.map_err(io_error("sync", &self.path))
    }
}

/// Closes a segment file the store leaves, once no fdatasync shares it (a segment is
/// left only while nothing is in flight: then the store holds the last handle); a
/// handle still shared closes with its last holder.
async fn close_shared(disk: Rc<DmaDisk>, path: &Path) -> Result<(), StoreError> {
    match Rc::try_unwrap(disk) {
        Ok(disk) => disk.close().await.map_err(io_error("close", path)),
        Err(shared) => {
            drop(shared);
            Ok(())
        }
    }
}

/// Indexed records to read back, planned by `Store::plan_read`: their places, and
/// the path and salt of each segment they lie in. Owns everything it needs, so it
/// runs while the store is busy writing.
#[derive(Clone, Debug)]
pub struct CatchUpRead {
    geometry: SegmentGeometry,
    wanted: Vec<(GroupId, Instance, IndexEntry)>,
    /// Per segment: its file and its salt.
    segments: BTreeMap<u64, (PathBuf, u32)>,
}

impl CatchUpRead {
    /// Records planned.
    #[must_use]
    pub fn record_count(&self) -> usize {
        self.wanted.len()
    }

    /// Each planned record (same order) as read: a slice of the span it was read in,
    /// with the salt its checksum is seeded with and its segment. Read per segment in
    /// block-aligned spans of up to `CATCH_UP_READ_SIZE_MAX` bytes through a file
    /// opened for the read; each record's header (size, kind, group, instance, ballot)
    /// and checksum are checked against the index.
    ///
    /// Copies: each DMA span is copied ONCE out of the read's buffer into a `Bytes`
    /// (glommio's `ReadResult` is not `Send`, and a catch-up run leaves the read's
    /// task); every record of the span is a `Bytes::slice` of it, so a record is never
    /// copied again here. A span holds the records of other groups that lie between
    /// the wanted ones, so the memory a read holds is its spans' (each at most
    /// `CATCH_UP_READ_SIZE_MAX`), until the last slice is dropped.
    ///
    /// # Errors
    ///
    /// An I/O error, or bytes that are not the indexed record (`CatchUpMismatch`).
    pub async fn run(self) -> Result<Vec<RecordRead>, StoreError> {
        let geometry = self.geometry;
        let wanted = &self.wanted;
        let mut by_segment: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (at, (_, _, entry)) in wanted.iter().enumerate() {
            by_segment
                .entry(geometry.locate(entry.offset).0)
                .or_default()
                .push(at);
        }
        let mut bytes_of: Vec<Option<RecordRead>> = vec![None; wanted.len()];
        for (segment, mut ats) in by_segment {
            ats.sort_by_key(|at| wanted[*at].2.offset);
            let Some((path, salt)) = self.segments.get(&segment) else {
                unreachable!("plan_read names the segment of every record")
            };
            let salt = *salt;
            let disk = DmaDisk::open(path).await.map_err(io_error("open", path))?;
            let mut next = 0;
            while next < ats.len() {
                // One span: records from `next` while the span stays within the limit.
                let (_, first) = geometry.locate(wanted[ats[next]].2.offset);
                let start = first / BLOCK_SIZE as u64 * BLOCK_SIZE as u64;
                let mut end = next;
                let mut span_end = start;
                while end < ats.len() {
                    let entry = wanted[ats[end]].2;
                    let (_, file_offset) = geometry.locate(entry.offset);
                    let record_end = block_align_up(file_offset + u64::from(entry.size));
                    if end > next && record_end - start > CATCH_UP_READ_SIZE_MAX as u64 {
                        break;
                    }
                    span_end = span_end.max(record_end);
                    end += 1;
                }
                let read = match disk.read_at(start, (span_end - start) as usize).await {
                    Ok(read) => read,
                    Err(error) => {
                        // Closed first: a failed read must not leak the file.
                        let _ = disk.close().await;
                        return Err(io_error("read", path)(error));
                    }
                };
                // The one copy out of the DMA buffer (see the docs above).
                let span_bytes = Bytes::copy_from_slice(&read);
                for at in &ats[next..end] {
                    let (group, instance, entry) = wanted[*at];
                    let (_, file_offset) = geometry.locate(entry.offset);
                    let from = (file_offset - start) as usize;
                    let bytes = read.get(from..from + entry.size as usize);
                    let intact = bytes.is_some_and(|bytes| {
                        record::peek(bytes).is_some_and(|p| {
                            p.size == entry.size
                                && p.kind == entry.kind()
                                && p.group == group
                                && p.instance == instance
                                && p.ballot == entry.ballot()
                        }) && bytes[4..8] == crc32c::crc32c_append(salt, &bytes[8..]).to_le_bytes()
                    });
                    if !intact {
                        let _ = disk.close().await;
                        return Err(StoreError::CatchUpMismatch {
                            segment,
                            file_offset,
                            instance,
                        });
                    };
                    bytes_of[*at] = Some(RecordRead {
                        span: span_bytes.clone(),
                        range: from..from + entry.size as usize,
                        salt,
                        segment,
                    });
                }
                next = end;
            }
            disk.close().await.map_err(io_error("close", path))?;
        }
        Ok(bytes_of
            .into_iter()
            .map(|read| read.expect("every planned record lies in a span read"))
            .collect())
    }
}

/// Zeroes the header block and the first payload block of the segment file at `path`
/// and makes that durable: the file is then a blank spare (`segment_format` invariants).
async fn blank(path: &Path) -> Result<(), StoreError> {
    let zeros = vec![0u8; 2 * SEGMENT_HEADER_SIZE];
    let disk = DmaDisk::open(path).await.map_err(io_error("open", path))?;
    disk.write_at(0, &zeros)
        .await
        .map_err(io_error("blank", path))?;
    disk.sync().await.map_err(io_error("sync", path))?;
    disk.close().await.map_err(io_error("close", path))
}

/// The LSN of the record at file offset `aligned + within` of `disk` if it verifies
/// under `salt` (one block read, two when the record crosses it).
async fn read_lsn(
    disk: &DmaDisk,
    aligned: u64,
    within: usize,
    salt: u32,
    limits: &record::DecodeLimits,
) -> std::io::Result<Option<Lsn>> {
    let mut bytes = disk.read_at(aligned, BLOCK_SIZE).await?;
    let size = bytes.get(within..).and_then(record::peek).map(|p| p.size);
    if let Some(size) = size.filter(|size| within + *size as usize > BLOCK_SIZE) {
        let len = block_align_up((within + size as usize) as u64) as usize;
        bytes = disk.read_at(aligned, len).await?;
    }
    Ok(bytes
        .get(within..)
        .and_then(|at| record::decode(at, salt, limits).ok())
        .and_then(|(decoded, _)| match decoded.content {
            record::Content::Record(_) => Some(decoded.stamp.lsn),
            record::Content::Pad => None,
        }))
}

/// Makes every segment file in `config.dir` a blank spare, renamed to indices `0..n`, so
/// a benchmark or test starts an empty log on files whose extents are already written
/// (recycling instead of deleting and re-creating gigabytes). Zeroes each file's header
/// and first payload block (`segment_format` invariants). Returns the number of files.
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
    super::log_head::remove(&config.dir, config.shard)?;
    for (new_index, name) in names.iter().enumerate() {
        let path = config.dir.join(name);
        blank(&path).await?;
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
mod tests;
