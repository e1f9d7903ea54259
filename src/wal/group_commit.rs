//! Group commit: the pure planner of one aligned write plus one fdatasync per batch, for
//! all groups of a shard.
//!
//! Records are encoded (LSN assigned, checksum sealed) into an in-memory buffer as they
//! are appended. While fewer than `writes_in_flight_max` writes are in flight,
//! `take_write` closes the batch: it pads it to the next block boundary and hands out
//! the whole buffer as one `WritePlan` (one write plus its own fdatasync); the next
//! batch accumulates while the writes run, so the batch size follows the load with no
//! timer. `on_durable` reports a completion; completions may arrive in any order.
//!
//! The durable watermark advances only over contiguous completions (the contiguity
//! rule): a write that completes while an earlier one is still in flight is held, and
//! `durable_through` passes it only once every earlier write completed. So the log is
//! durable as a prefix, and nothing after a write that a crash could tear was ever
//! reported durable.
//!
//! Every record carries `Stamp::unsynced_from`: an LSN below which every record was
//! durable when its batch was submitted. It is fixed when the batch's first record is
//! appended, as the lower bound the contiguity rule guarantees for the moment the batch
//! can be submitted: with `n` writes in flight then, the batch leaves only once at most
//! `writes_in_flight_max - 1` remain, so the oldest `n - writes_in_flight_max + 1` of
//! them are durable by then (`durable_through + 1` when `n < writes_in_flight_max`).
//! With one write in flight at most this is the batch's own first LSN (the meaning the
//! field always had, so logs written before read the same). Recovery (`wal::recovery`,
//! rows 4 and 5) trusts it: a record whose `unsynced_from` lies past a missing LSN
//! proves that LSN was durable.
//!
//! What the pipelining costs: damage on the medium to a batch that was still in flight
//! when the newest surviving batch was appended (typically the last durable batch, while
//! the next was in flight) reads as a torn write and is truncated, as damage to the
//! last batch does when nothing follows it. With one write in flight the window is the
//! last batch alone, as before.
//!
//! Invariants (`GroupCommit::invariants`, called by the simulator after every step):
//! - at most `writes_in_flight_max` writes are in flight (completed ones held by the
//!   contiguity rule count), in submission order, the oldest not completed;
//!   `durable_through <= written_through <= assigned_through` where `written_through`
//!   is the newest in-flight write's `lsn_through` (or `durable_through`);
//! - every write starts where the previous one ended (or, on a segmented log, at the
//!   start of the next segment), on a block boundary, and is a whole number of blocks: a
//!   block that was handed out is never written again, so a torn write can only damage
//!   the batch being written, never an acknowledged one;
//! - on a segmented log a batch that starts a segment's payload leaves only once
//!   every earlier write is durable (none in flight): its segment header, made durable
//!   before it, names the LSN before it (`lsn_prev`), and recovery reads a header whose
//!   `lsn_prev` the segment before does not reach as a broken chain
//!   (`wal::log_recovery`, row S6), so that LSN must be durable first; such a batch's
//!   `unsynced_from` is its own first LSN;
//! - on a segmented log (`GroupCommit::segmented`) a batch never straddles a segment
//!   boundary: a record that does not fit the rest of the segment closes the batch, and
//!   an empty batch that cannot hold it moves to the next segment's start (the skipped
//!   rest of the segment stays zero; recovery reads it as a clean end of that segment);
//! - the buffer holds exactly the records `written_through + 1 ..= assigned_through`,
//!   starting at `offset_next()`, and never more than `buffer_size_max` bytes once padded;
//! - the reusable buffers do not keep the capacity of a past burst: a buffer given back
//!   by `recycle` is kept only up to `KEEP_SLACK` x the largest batch of the last two
//!   windows of `KEEP_WINDOW` writes (at least `KEEP_SIZE_MIN`; `support::high_water`),
//!   else shrunk to it, so
//!   once a burst (a truncation's rewrites fill a whole `buffer_size_max` batch) has
//!   passed, the shard holds about twice its ordinary batch instead of 2 x
//!   `buffer_size_max` (`retained_capacity` reports what is held).

use super::layout::{block_align_up, record_start, BLOCK_SIZE, HEADER_SIZE};
use super::record::{self, Stamp};
use super::segment_format::{segment_salt, SegmentGeometry, SegmentHeader, SEGMENT_HEADER_SIZE};
use crate::paxos::{Lsn, Record};
use crate::support::high_water::HighWater;
use std::collections::VecDeque;
use std::fmt;

/// The largest batch `GroupCommit` accepts as configuration: keeps the record count of
/// all writes in flight well inside the u32 `batch_delta` field.
pub const BUFFER_SIZE_MAX_LIMIT: usize = 1 << 30;

/// The most writes `GroupCommit` accepts in flight as configuration.
pub const WRITES_IN_FLIGHT_MAX_LIMIT: usize = 8;

const _: () = assert!(BUFFER_SIZE_MAX_LIMIT % BLOCK_SIZE == 0);
// `lsn - unsynced_from` spans at most the batches in flight plus the one being built.
const _: () = assert!(
    (WRITES_IN_FLIGHT_MAX_LIMIT + 1) * (BUFFER_SIZE_MAX_LIMIT / HEADER_SIZE) < u32::MAX as usize
);

/// Configuration of a shard's group commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommitConfig {
    /// Bytes one batch (one write) may hold, padding included: a multiple of
    /// `BLOCK_SIZE`, at most `BUFFER_SIZE_MAX_LIMIT`. Also the largest record accepted.
    /// Readers need `DecodeLimits::record_size_max >= buffer_size_max`.
    pub buffer_size_max: usize,
    /// Salt of the log: seeds every record's checksum (see `record`).
    pub salt: u32,
    /// Writes (each with its own fdatasync) that may be in flight at once, 1 to
    /// `WRITES_IN_FLIGHT_MAX_LIMIT`; 1 submits a batch only once the previous one is
    /// durable.
    pub writes_in_flight_max: usize,
}

/// Where a log resumes: from recovery (`Scan::resume`), or `Resume::EMPTY` for a new log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    /// Offset of the first write; a multiple of `BLOCK_SIZE`.
    pub offset: u64,
    /// LSN of the last durable record (0 if none): the next record gets `lsn_through + 1`.
    pub lsn_through: Lsn,
}

impl Resume {
    /// A new, empty log.
    pub const EMPTY: Resume = Resume {
        offset: 0,
        lsn_through: Lsn(0),
    };
}

/// One write to submit: write `bytes` at `offset`, then fdatasync the file it wrote, then
/// call `GroupCommit::on_durable(lsn_through)`. Other plans may be in flight meanwhile;
/// each needs its own fdatasync issued after its own write completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WritePlan {
    /// Log offset; a multiple of `BLOCK_SIZE`.
    pub offset: u64,
    /// The batch, padded: its length is a non-zero multiple of `BLOCK_SIZE`.
    pub bytes: Vec<u8>,
    /// LSN of the last record in `bytes`; durable once the write and its sync complete.
    pub lsn_through: Lsn,
    /// Salt the records of `bytes` are sealed with. On a segmented log, a plan that
    /// starts a segment's payload carries the segment's fresh salt: the executor writes
    /// the segment header with it (and makes it durable) BEFORE the batch.
    pub salt: u32,
}

/// Placement of a segmented log (see `segment_format`): log offsets are concatenated segment
/// payloads of `payload_size` bytes each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentPlacement {
    /// Bytes of records one segment holds (`SegmentGeometry::payload_size`); a multiple
    /// of `BLOCK_SIZE`, at least `buffer_size_max`.
    pub payload_size: u64,
    /// Drawn fresh by the caller at every open: a segment initialised (or re-initialised
    /// after recovery) gets `segment_salt(salt_seed, index)`, so records of an earlier
    /// use of the same file or index never verify.
    pub salt_seed: u64,
}

/// Where an appended record lies in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// Its LSN.
    pub lsn: Lsn,
    /// Log offset of its first byte (see `segment_format` for the mapping to files).
    pub offset: u64,
    /// Its size in bytes (`record::encoded_size`).
    pub size: u32,
}

/// A write in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Its offset.
    pub offset: u64,
    /// Its length in bytes.
    pub size: usize,
    /// LSN of its last record.
    pub lsn_through: Lsn,
    /// Its write and fdatasync completed, but an earlier write has not: held by the
    /// contiguity rule (module docs).
    pub completed: bool,
}

/// Why `append` did not take a record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendError {
    /// The batch being built is full: call `take_write` (once fewer than
    /// `writes_in_flight_max` writes are in flight) and retry. Nothing was appended.
    Backpressure {
        /// Bytes already in the batch.
        buffered_size: usize,
        /// Size of the record.
        record_size: usize,
        /// The limit.
        buffer_size_max: usize,
    },
    /// The record is larger than any batch may be: it can never be appended.
    TooLarge {
        /// Size of the record.
        record_size: usize,
        /// The limit.
        buffer_size_max: usize,
    },
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::Backpressure {
                buffered_size,
                record_size,
                buffer_size_max,
            } => write!(
                f,
                "WAL batch full: {buffered_size} bytes buffered, record of {record_size} bytes, \
                 buffer_size_max {buffer_size_max}"
            ),
            AppendError::TooLarge {
                record_size,
                buffer_size_max,
            } => write!(
                f,
                "WAL record of {record_size} bytes exceeds buffer_size_max {buffer_size_max}"
            ),
        }
    }
}

impl std::error::Error for AppendError {}

/// The group-commit planner of one shard's log. See the module docs.
#[derive(Debug)]
pub struct GroupCommit {
    salt: u32,
    buffer_size_max: usize,
    /// Encoded records of the batch being built; `buffer[0]` goes to `buffer_offset`.
    buffer: Vec<u8>,
    /// Log offset of the batch being built (block-aligned).
    buffer_offset: u64,
    /// LSN of the first record in `buffer` (meaningful when it is not empty).
    batch_first: Lsn,
    /// `Stamp::unsynced_from` of the batch being built (meaningful when it is not
    /// empty; module docs).
    unsynced_from: Lsn,
    assigned_through: Lsn,
    durable_through: Lsn,
    writes_in_flight_max: usize,
    /// The writes in flight, oldest first (module docs).
    in_flight: VecDeque<InFlight>,
    /// A returned write buffer, reused for the next batch.
    spare: Vec<u8>,
    /// Segment placement, if the log is segmented.
    segments: Option<SegmentPlacement>,
    /// Batch-size high-water mark (module docs).
    batch_sizes: HighWater,
}

impl GroupCommit {
    /// A planner that appends after `resume`.
    ///
    /// Panics (programmer errors): `buffer_size_max` not a positive multiple of
    /// `BLOCK_SIZE` or above `BUFFER_SIZE_MAX_LIMIT`; `resume.offset` not block-aligned.
    #[must_use]
    pub fn new(config: GroupCommitConfig, resume: Resume) -> GroupCommit {
        assert!(
            config.buffer_size_max > 0
                && config.buffer_size_max % BLOCK_SIZE == 0
                && config.buffer_size_max <= BUFFER_SIZE_MAX_LIMIT,
            "buffer_size_max {} must be a positive multiple of {BLOCK_SIZE} up to {BUFFER_SIZE_MAX_LIMIT}",
            config.buffer_size_max
        );
        assert!(
            (1..=WRITES_IN_FLIGHT_MAX_LIMIT).contains(&config.writes_in_flight_max),
            "writes_in_flight_max {} must be in 1..={WRITES_IN_FLIGHT_MAX_LIMIT}",
            config.writes_in_flight_max
        );
        assert!(
            resume.offset % BLOCK_SIZE as u64 == 0,
            "resume offset {} is not block-aligned",
            resume.offset
        );
        let commit = GroupCommit {
            salt: config.salt,
            buffer_size_max: config.buffer_size_max,
            buffer: Vec::new(),
            buffer_offset: resume.offset,
            batch_first: Lsn(0),
            unsynced_from: Lsn(0),
            assigned_through: resume.lsn_through,
            durable_through: resume.lsn_through,
            writes_in_flight_max: config.writes_in_flight_max,
            in_flight: VecDeque::new(),
            spare: Vec::new(),
            segments: None,
            batch_sizes: HighWater::default(),
        };
        commit.invariants();
        commit
    }

    /// A planner for a segmented log (`segment_format`): batches never straddle a segment
    /// boundary. `config.salt` is the salt of the segment holding `resume.offset` when
    /// that offset is inside a segment's payload (it came from its header); a batch that
    /// starts a segment's payload uses `segment_salt(placement.salt_seed, index)`.
    ///
    /// Panics (programmer errors): as `new`, and a `payload_size` that is not a multiple
    /// of `BLOCK_SIZE` or is below `buffer_size_max`.
    #[must_use]
    pub fn segmented(
        config: GroupCommitConfig,
        resume: Resume,
        placement: SegmentPlacement,
    ) -> GroupCommit {
        assert!(
            placement.payload_size % BLOCK_SIZE as u64 == 0
                && placement.payload_size >= config.buffer_size_max as u64,
            "segment payload_size {} must be a multiple of {BLOCK_SIZE} and >= buffer_size_max {}",
            placement.payload_size,
            config.buffer_size_max
        );
        let mut commit = GroupCommit::new(config, resume);
        commit.segments = Some(placement);
        commit.invariants();
        commit
    }

    /// Bytes left in the segment holding `buffer_offset` (unbounded when unsegmented).
    fn segment_room(&self, offset: u64) -> u64 {
        self.segments
            .map_or(u64::MAX, |s| s.payload_size - offset % s.payload_size)
    }

    /// Encodes `record` into the batch being built and returns its LSN. The record is
    /// durable once `durable_through() >= lsn`. Fails, appending nothing, when the batch
    /// is full (`Backpressure`) or the record can never fit (`TooLarge`).
    pub fn append(&mut self, record: &Record) -> Result<Lsn, AppendError> {
        self.append_placed(record).map(|placed| placed.lsn)
    }

    /// As [`GroupCommit::append`], and says where the record lies in the log (for the
    /// per-group index, `wal::index`).
    pub fn append_placed(&mut self, record: &Record) -> Result<Placed, AppendError> {
        let record_size = record::encoded_size(record);
        if record_size > self.buffer_size_max {
            return Err(AppendError::TooLarge {
                record_size,
                buffer_size_max: self.buffer_size_max,
            });
        }
        // `buffer_offset` is block-aligned, so buffer positions place like log offsets.
        let start = record_start(self.buffer.len() as u64) as usize;
        // A batch never straddles a segment: an empty batch that cannot hold the record
        // in the rest of its segment moves to the next segment (it fits there, since
        // `payload_size >= buffer_size_max >= record_size`).
        let mut offset = self.buffer_offset;
        if self.buffer.is_empty() && record_size as u64 > self.segment_room(offset) {
            offset += self.segment_room(offset);
        }
        let room = self.segment_room(offset).min(self.buffer_size_max as u64);
        // The pad added by `take_write` only fills up to the next block boundary, which
        // stays within the limit because the limit (and the segment room) is a multiple
        // of the block size.
        if (start + record_size) as u64 > room {
            return Err(AppendError::Backpressure {
                buffered_size: self.buffer.len(),
                record_size,
                buffer_size_max: self.buffer_size_max,
            });
        }
        let lsn = Lsn(self.assigned_through.0 + 1);
        if self.buffer.is_empty() {
            self.batch_first = lsn;
            // A batch that starts a segment leaves with nothing in flight (module docs).
            self.unsynced_from = if self.starts_segment(offset) {
                lsn
            } else {
                self.unsynced_bound()
            };
            self.buffer_offset = offset;
            if let Some(placement) = self.segments {
                if offset % placement.payload_size == 0 {
                    self.salt = segment_salt(placement.salt_seed, offset / placement.payload_size);
                }
            }
        }
        self.buffer.resize(start, 0);
        let stamp = Stamp {
            lsn,
            unsynced_from: self.unsynced_from,
        };
        record::encode(record, stamp, self.salt, &mut self.buffer);
        self.assigned_through = lsn;
        assert!(self.buffer.len() <= self.buffer_size_max);
        Ok(Placed {
            lsn,
            offset: self.buffer_offset + start as u64,
            size: u32::try_from(record_size).expect("record_size <= buffer_size_max <= 1 GiB"),
        })
    }

    /// Whether a batch at log offset `offset` starts a segment's payload.
    fn starts_segment(&self, offset: u64) -> bool {
        self.segments.is_some_and(|s| offset % s.payload_size == 0)
    }

    /// The `unsynced_from` of a batch begun now (module docs): with `n` writes in
    /// flight, the batch leaves only once at most `writes_in_flight_max - 1` remain, so
    /// the end of write `n - writes_in_flight_max` (oldest first) is durable by then.
    fn unsynced_bound(&self) -> Lsn {
        let n = self.in_flight.len();
        let bound = match n.checked_sub(self.writes_in_flight_max) {
            Some(must_be_durable) => self.in_flight[must_be_durable].lsn_through,
            None => self.durable_through,
        };
        Lsn(bound.0 + 1)
    }

    /// Closes the batch being built and returns it as one write, or `None` when
    /// `writes_in_flight_max` writes are already in flight or nothing was appended. The
    /// batch is padded to the block boundary with a Pad record (or, when fewer than
    /// `HEADER_SIZE` bytes remain, with zeros that readers skip). The caller reports its
    /// completion with `on_durable`, in any order relative to the other writes in flight.
    /// A batch that starts a segment waits until no write is in flight (module docs).
    pub fn take_write(&mut self) -> Option<WritePlan> {
        if !self.can_write() {
            return None;
        }
        // The batch's records claim everything below `unsynced_from` durable now.
        assert!(
            self.unsynced_from.0 <= self.durable_through.0 + 1,
            "batch stamped unsynced_from {} submitted with durable_through {}",
            self.unsynced_from.0,
            self.durable_through.0
        );
        let end = self.buffer.len();
        let padded = block_align_up(end as u64) as usize;
        let remaining = padded - end;
        if remaining >= HEADER_SIZE {
            let stamp = Stamp {
                lsn: self.assigned_through,
                unsynced_from: self.unsynced_from,
            };
            record::encode_pad(remaining, stamp, self.salt, &mut self.buffer);
        } else {
            self.buffer.resize(padded, 0);
        }
        assert_eq!(self.buffer.len(), padded);
        assert!(
            padded <= self.buffer_size_max,
            "padded batch {padded} > buffer_size_max"
        );

        let mut next = std::mem::take(&mut self.spare);
        next.clear();
        let bytes = std::mem::replace(&mut self.buffer, next);
        let plan = WritePlan {
            offset: self.buffer_offset,
            bytes,
            lsn_through: self.assigned_through,
            salt: self.salt,
        };
        self.in_flight.push_back(InFlight {
            offset: plan.offset,
            size: plan.bytes.len(),
            lsn_through: plan.lsn_through,
            completed: false,
        });
        self.buffer_offset += plan.bytes.len() as u64;
        self.batch_sizes.note(plan.bytes.len());
        assert!(plan.offset % BLOCK_SIZE as u64 == 0 && plan.bytes.len() % BLOCK_SIZE == 0);
        Some(plan)
    }

    /// Reports that the write in flight whose plan said `lsn_through`, and its
    /// fdatasync, completed. `durable_through` then advances over every completed write
    /// up to the first one still running (the contiguity rule). Anything else (no such
    /// write, or one reported twice) is a programmer error; a failed write or sync is
    /// fatal to the shard and is never reported here.
    pub fn on_durable(&mut self, lsn_through: Lsn) {
        let write = self
            .in_flight
            .iter_mut()
            .find(|w| w.lsn_through == lsn_through)
            .unwrap_or_else(|| {
                panic!(
                    "on_durable({}) but no write in flight ends there",
                    lsn_through.0
                )
            });
        assert!(
            !write.completed,
            "on_durable({}) reported twice",
            lsn_through.0
        );
        write.completed = true;
        while let Some(oldest) = self.in_flight.front().filter(|w| w.completed) {
            assert!(oldest.lsn_through > self.durable_through);
            self.durable_through = oldest.lsn_through;
            self.in_flight.pop_front();
        }
    }

    /// Gives back a `WritePlan`'s bytes once written, so the next batch reuses the
    /// allocation. Optional. A buffer above `spare_keep_max` is shrunk to it (module
    /// docs), so a past burst does not stay allocated.
    pub fn recycle(&mut self, mut bytes: Vec<u8>) {
        self.batch_sizes.trim(&mut bytes);
        if bytes.capacity() > self.spare.capacity() {
            self.spare = bytes;
        }
    }

    /// The most capacity a recycled buffer keeps: `KEEP_SLACK` x the batch-size
    /// high-water mark, at least `KEEP_SIZE_MIN` (module docs).
    #[must_use]
    pub fn spare_keep_max(&self) -> usize {
        self.batch_sizes.keep_max()
    }

    /// Bytes of capacity held by the batch being built and the spare buffer.
    #[must_use]
    pub fn retained_capacity(&self) -> usize {
        self.buffer.capacity() + self.spare.capacity()
    }

    /// LSN of the last durable record (inclusive; 0 if none).
    #[must_use]
    pub fn durable_through(&self) -> Lsn {
        self.durable_through
    }

    /// LSN of the last appended record (inclusive; 0 if none).
    #[must_use]
    pub fn assigned_through(&self) -> Lsn {
        self.assigned_through
    }

    /// Bytes in the batch being built (before padding).
    #[must_use]
    pub fn buffered_size(&self) -> usize {
        self.buffer.len()
    }

    /// The writes in flight, oldest first (completed ones held by the contiguity rule
    /// included).
    pub fn in_flight(&self) -> impl Iterator<Item = &InFlight> {
        self.in_flight.iter()
    }

    /// How many writes are in flight (completed ones held by the contiguity rule
    /// included).
    #[must_use]
    pub fn writes_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The configured bound on writes in flight.
    #[must_use]
    pub fn writes_in_flight_max(&self) -> usize {
        self.writes_in_flight_max
    }

    /// `take_write` would hand out a plan now: a batch is buffered, fewer than
    /// `writes_in_flight_max` writes are in flight, and none is when the batch starts a
    /// segment.
    #[must_use]
    pub fn can_write(&self) -> bool {
        !self.buffer.is_empty()
            && self.in_flight.len() < self.writes_in_flight_max
            && (self.in_flight.is_empty() || !self.starts_segment(self.buffer_offset))
    }

    /// Log offset the batch being built will be written at.
    #[must_use]
    pub fn offset_next(&self) -> u64 {
        self.buffer_offset
    }

    /// Asserts every invariant of the module docs; panics with the values on violation.
    pub fn invariants(&self) {
        let block = BLOCK_SIZE as u64;
        assert!(
            self.buffer_offset % block == 0,
            "batch offset {} not block-aligned",
            self.buffer_offset
        );
        assert!(
            self.buffer.len() <= self.buffer_size_max,
            "buffer {} > buffer_size_max {}",
            self.buffer.len(),
            self.buffer_size_max
        );
        assert!(
            block_align_up(self.buffer.len() as u64) <= self.buffer_size_max as u64,
            "padded buffer would exceed buffer_size_max"
        );
        assert!(
            block_align_up(self.buffer.len() as u64) <= self.segment_room(self.buffer_offset),
            "batch at {} of {} bytes would straddle a segment",
            self.buffer_offset,
            self.buffer.len()
        );
        let written_through = self.invariants_in_flight();
        assert!(
            self.durable_through <= written_through && written_through <= self.assigned_through,
            "durable {} <= written {} <= assigned {} violated",
            self.durable_through.0,
            written_through.0,
            self.assigned_through.0
        );
        if self.buffer.is_empty() {
            assert_eq!(
                self.assigned_through, written_through,
                "records assigned but neither buffered nor written"
            );
        } else {
            assert_eq!(
                self.batch_first.0,
                written_through.0 + 1,
                "batch does not start right after the written records"
            );
            assert!(self.batch_first <= self.assigned_through);
            assert!(self.unsynced_from.0 >= 1, "unsynced_from 0");
            assert!(
                self.unsynced_from <= self.batch_first,
                "unsynced_from {} after the batch's first LSN {}",
                self.unsynced_from.0,
                self.batch_first.0
            );
            assert!(self.assigned_through.0 - self.unsynced_from.0 < u64::from(u32::MAX));
        }
    }

    /// The invariants of the writes in flight; returns `written_through`.
    fn invariants_in_flight(&self) -> Lsn {
        let block = BLOCK_SIZE as u64;
        assert!(
            self.in_flight.len() <= self.writes_in_flight_max,
            "{} writes in flight, max {}",
            self.in_flight.len(),
            self.writes_in_flight_max
        );
        assert!(
            self.in_flight.front().is_none_or(|w| !w.completed),
            "the oldest write in flight completed but durable_through did not pass it"
        );
        let next_segment = |end: u64| {
            self.segments
                .map(|s| end.div_ceil(s.payload_size) * s.payload_size)
        };
        let mut lsn_prev = self.durable_through;
        let mut end_prev: Option<u64> = None;
        for w in &self.in_flight {
            assert!(
                w.offset % block == 0 && w.size > 0 && w.size % BLOCK_SIZE == 0,
                "write in flight misaligned: {w:?}"
            );
            assert!(
                w.size as u64 <= self.segment_room(w.offset),
                "write in flight {w:?} straddles a segment"
            );
            assert!(
                w.lsn_through > lsn_prev,
                "write in flight {w:?} adds nothing past LSN {}",
                lsn_prev.0
            );
            if let Some(end) = end_prev {
                assert!(
                    !self.starts_segment(w.offset),
                    "write in flight {w:?} starts a segment while an earlier one is in flight"
                );
                assert!(
                    w.offset == end || Some(w.offset) == next_segment(end),
                    "write in flight {w:?} follows neither the previous one ending at {end} \
                     nor the next segment"
                );
            }
            lsn_prev = w.lsn_through;
            end_prev = Some(w.offset + w.size as u64);
        }
        if let Some(end) = end_prev {
            assert!(
                self.buffer_offset == end || Some(self.buffer_offset) == next_segment(end),
                "next batch at {} follows neither the write in flight ending at {end} \
                 nor the next segment",
                self.buffer_offset
            );
        }
        lsn_prev
    }
}

/// The header to write, and make durable, BEFORE `plan` when `plan` starts a segment's
/// payload (`None` otherwise). `lsn_prev` is the last LSN written before `plan` (the
/// previous plan's `lsn_through`, or the recovered one); `log_start` the log's first
/// segment (clamped to the new segment's index). Asserts that the plan does not
/// straddle a segment.
#[must_use]
pub fn header_for(
    plan: &WritePlan,
    geometry: &SegmentGeometry,
    shard: u32,
    lsn_prev: Lsn,
    log_start: u64,
) -> Option<SegmentHeader> {
    let (index, file_offset) = geometry.locate(plan.offset);
    assert!(
        file_offset + plan.bytes.len() as u64 <= geometry.segment_size,
        "write at log offset {} of {} bytes straddles segment {index}",
        plan.offset,
        plan.bytes.len()
    );
    (file_offset == SEGMENT_HEADER_SIZE as u64).then_some(SegmentHeader {
        shard,
        salt: plan.salt,
        segment_index: index,
        lsn_prev,
        segment_size: geometry.segment_size,
        log_start: log_start.min(index),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Ballot, Body, Entry, GroupId, Instance, NodeId};
    use crate::support::high_water::{KEEP_SIZE_MIN, KEEP_WINDOW};
    use crate::wal::record::{decode, Content, DecodeLimits, DecodedRecord};
    use bytes::Bytes;

    fn accept(instance: u64, value_size: usize) -> Record {
        Record::Accept {
            group: GroupId(1),
            instance: Instance(instance),
            ballot: Ballot {
                round: 1,
                node: NodeId(1),
            },
            entry: Entry {
                origin: Ballot {
                    round: 1,
                    node: NodeId(1),
                },
                body: Body::Values(smallvec::smallvec![Bytes::from(vec![7; value_size])]),
            },
        }
    }

    /// A new log of 1 MiB batches with up to `writes_in_flight_max` writes in flight.
    fn pipelined(writes_in_flight_max: usize) -> GroupCommit {
        GroupCommit::new(
            GroupCommitConfig {
                writes_in_flight_max,
                ..config(1 << 20)
            },
            Resume::EMPTY,
        )
    }

    fn config(buffer_size_max: usize) -> GroupCommitConfig {
        GroupCommitConfig {
            buffer_size_max,
            salt: 99,
            writes_in_flight_max: 1,
        }
    }

    /// Decodes every record of a write sealed with `salt` (pads included, short block
    /// tails skipped), in order.
    fn decoded_of(bytes: &[u8], salt: u32) -> Vec<DecodedRecord> {
        let mut out = Vec::new();
        let mut at = 0u64;
        loop {
            at = record_start(at);
            if at as usize >= bytes.len() {
                return out;
            }
            let (decoded, size) =
                decode(&bytes[at as usize..], salt, &DecodeLimits::default()).expect("valid");
            out.push(decoded);
            at += size as u64;
        }
    }

    /// A write's records: (lsn, is_pad).
    fn records_of(bytes: &[u8]) -> Vec<(u64, bool)> {
        decoded_of(bytes, 99)
            .into_iter()
            .map(|d| (d.stamp.lsn.0, d.content == Content::Pad))
            .collect()
    }

    /// Appends `count` records of `value_size` bytes from instance `first`, writes them
    /// as one batch, completes it and recycles its bytes.
    fn write_batch(commit: &mut GroupCommit, first: u64, count: u64, value_size: usize) {
        for i in first..first + count {
            commit.append(&accept(i, value_size)).expect("fits");
        }
        let plan = commit.take_write().expect("a batch");
        commit.on_durable(plan.lsn_through);
        commit.recycle(plan.bytes);
        commit.invariants();
    }

    // Goal: a burst that filled the buffer to `buffer_size_max` does not stay allocated:
    // two windows of small batches later, both buffers are back to KEEP_SIZE_MIN.
    // Method: one ~1 MiB batch, then small ones; count the capacity held.
    #[test]
    fn burst_capacity_is_given_back() {
        let mut commit = GroupCommit::new(config(1 << 21), Resume::EMPTY);
        let mut instance = 1;
        for _ in 0..2 {
            write_batch(&mut commit, instance, 250, 4000);
            instance += 250;
        }
        assert!(
            commit.retained_capacity() >= 1 << 20,
            "the burst's buffers are reused while it is recent: {}",
            commit.retained_capacity()
        );
        for _ in 0..2 * KEEP_WINDOW {
            write_batch(&mut commit, instance, 2, 100);
            instance += 2;
        }
        assert!(
            commit.retained_capacity() <= 2 * KEEP_SIZE_MIN,
            "held {} bytes of capacity after the burst, max {}",
            commit.retained_capacity(),
            2 * KEEP_SIZE_MIN
        );
        assert_eq!(commit.spare_keep_max(), KEEP_SIZE_MIN);
    }

    // Goal: one write per batch, aligned, padded, with LSNs continuing across batches;
    // the next batch accumulates while a write is in flight.
    // Method: append, take, append more while in flight, complete, take again; decode.
    #[test]
    fn batches_accumulate_while_in_flight() {
        let mut commit = GroupCommit::new(config(1 << 20), Resume::EMPTY);
        assert_eq!(commit.take_write(), None);
        for i in 1..=3 {
            assert_eq!(commit.append(&accept(i, 100)), Ok(Lsn(i)));
            commit.invariants();
        }
        let first = commit.take_write().expect("a batch");
        commit.invariants();
        assert_eq!(
            (first.offset, first.bytes.len(), first.lsn_through),
            (0, 4096, Lsn(3))
        );
        assert_eq!(
            records_of(&first.bytes),
            [(1, false), (2, false), (3, false), (3, true)]
        );
        assert_eq!(commit.append(&accept(4, 5000)), Ok(Lsn(4)));
        assert_eq!(commit.take_write(), None, "one write in flight at most");
        assert_eq!(commit.durable_through(), Lsn(0));
        commit.on_durable(Lsn(3));
        commit.invariants();
        assert_eq!(commit.durable_through(), Lsn(3));
        let second = commit.take_write().expect("a batch");
        assert_eq!((second.offset, second.bytes.len()), (4096, 8192));
        assert_eq!(records_of(&second.bytes), [(4, false), (4, true)]);
        commit.recycle(first.bytes);
        commit.on_durable(Lsn(4));
        commit.invariants();
        assert_eq!(commit.assigned_through(), Lsn(4));
        assert_eq!(commit.offset_next(), 12288);
    }

    // Goal: a full batch reports backpressure instead of growing; oversized records are
    // refused for good.
    // Method: fill a one-block buffer, then a record larger than the buffer.
    #[test]
    fn bounded_buffer() {
        let mut commit = GroupCommit::new(config(4096), Resume::EMPTY);
        let mut appended = 0;
        let error = loop {
            match commit.append(&accept(appended + 1, 500)) {
                Ok(_) => appended += 1,
                Err(error) => break error,
            }
            commit.invariants();
        };
        assert!(matches!(
            error,
            AppendError::Backpressure {
                buffer_size_max: 4096,
                ..
            }
        ));
        assert!(appended >= 6, "{appended} records of ~570 bytes fit 4 KiB");
        assert!(error.to_string().contains("4096"));
        let plan = commit.take_write().expect("a batch");
        assert_eq!(plan.bytes.len(), 4096);
        assert!(matches!(
            commit.append(&accept(99, 5000)),
            Err(AppendError::TooLarge {
                buffer_size_max: 4096,
                ..
            })
        ));
        commit.invariants();
    }

    // Goal: when fewer than a header's bytes remain in a block, the writer skips to the
    // boundary exactly as the reader does, both mid-batch and at the end of a batch.
    // Method: size records so each one leaves 8..40 bytes in its block.
    #[test]
    fn short_block_tails_are_skipped() {
        for leave in (8..HEADER_SIZE).step_by(8) {
            // One Accept with a single value of `value` bytes takes 48+16+4+4+value.
            let value = BLOCK_SIZE - leave - (HEADER_SIZE + 24);
            let mut commit = GroupCommit::new(config(1 << 16), Resume::EMPTY);
            commit.append(&accept(1, value)).expect("fits");
            commit.append(&accept(2, value)).expect("fits");
            commit.invariants();
            let plan = commit.take_write().expect("a batch");
            assert_eq!(plan.bytes.len(), 2 * BLOCK_SIZE, "leave {leave}");
            assert_eq!(records_of(&plan.bytes), [(1, false), (2, false)]);
        }
    }

    /// The `unsynced_from` of every record (pads included) of a write.
    fn unsynced_of(bytes: &[u8]) -> Vec<u64> {
        unsynced_salted(bytes, 99)
    }

    /// As `unsynced_of`, for a write sealed with `salt`.
    fn unsynced_salted(bytes: &[u8], salt: u32) -> Vec<u64> {
        decoded_of(bytes, salt)
            .into_iter()
            .map(|d| d.stamp.unsynced_from.0)
            .collect()
    }

    // Goal: with two writes in flight a second batch leaves before the first is
    // durable; completions in either order advance `durable_through` only over
    // contiguous ones; `unsynced_from` is the bound the contiguity rule guarantees.
    // Method: two and three batches in flight, completed out of order; decode stamps.
    #[test]
    fn pipelined_writes_complete_in_any_order() {
        let mut commit = pipelined(2);
        commit.append(&accept(1, 100)).expect("fits");
        commit.append(&accept(2, 100)).expect("fits");
        let first = commit.take_write().expect("a batch");
        assert_eq!(unsynced_of(&first.bytes), [1, 1, 1]);
        // Begun with one write in flight: it leaves while that one runs, so nothing
        // after LSN 0 is promised durable.
        commit.append(&accept(3, 100)).expect("fits");
        let second = commit.take_write().expect("a second write in flight");
        commit.invariants();
        assert_eq!(second.offset, 4096);
        assert_eq!(unsynced_of(&second.bytes), [1, 1]);
        // Begun with two in flight: it leaves only once the first is durable.
        commit.append(&accept(4, 100)).expect("fits");
        assert_eq!(commit.take_write(), None, "two writes in flight at most");
        commit.on_durable(Lsn(3));
        commit.invariants();
        assert_eq!(
            commit.durable_through(),
            Lsn(0),
            "held behind the first write"
        );
        assert_eq!(
            commit.take_write(),
            None,
            "a completed write held still counts"
        );
        commit.on_durable(Lsn(2));
        commit.invariants();
        assert_eq!(commit.durable_through(), Lsn(3));
        let third = commit.take_write().expect("both slots free");
        assert_eq!(unsynced_of(&third.bytes), [3, 3]);
        commit.on_durable(Lsn(4));
        assert_eq!(commit.durable_through(), Lsn(4));
        commit.invariants();

        let mut commit = pipelined(3);
        let mut plans = Vec::new();
        for lsn in 1..=3 {
            commit.append(&accept(lsn, 100)).expect("fits");
            plans.push(commit.take_write().expect("three in flight"));
            commit.invariants();
        }
        assert_eq!(
            plans
                .iter()
                .map(|p| unsynced_of(&p.bytes)[0])
                .collect::<Vec<_>>(),
            [1, 1, 1]
        );
        commit.append(&accept(4, 100)).expect("fits");
        commit.on_durable(Lsn(2));
        commit.on_durable(Lsn(1));
        assert_eq!(commit.durable_through(), Lsn(2));
        let fourth = commit.take_write().expect("a slot is free");
        // Begun with three in flight: the oldest had to be durable before it left.
        assert_eq!(unsynced_of(&fourth.bytes), [2, 2]);
        commit.on_durable(Lsn(4));
        assert_eq!(commit.durable_through(), Lsn(2));
        commit.on_durable(Lsn(3));
        assert_eq!(commit.durable_through(), Lsn(4));
        assert_eq!(commit.writes_in_flight(), 0);
        commit.invariants();
    }

    // Goal: on a segmented log a batch that starts a segment leaves only once nothing is
    // in flight (its header names the LSN before it), stamped with its own first LSN.
    // Method: two-block segments, one-block batches with two writes allowed in flight.
    #[test]
    fn segment_start_waits_for_the_writes_in_flight() {
        let block = BLOCK_SIZE as u64;
        let mut commit = GroupCommit::segmented(
            GroupCommitConfig {
                writes_in_flight_max: 2,
                ..config(4096)
            },
            Resume::EMPTY,
            SegmentPlacement {
                payload_size: 2 * block,
                salt_seed: 5,
            },
        );
        // The log's first batch starts segment 0 and nothing is in flight.
        commit.append(&accept(1, 100)).expect("fits");
        let first = commit.take_write().expect("segment 0 starts");
        commit.append(&accept(2, 100)).expect("fits");
        let second = commit
            .take_write()
            .expect("inside segment 0, beside the first");
        assert_eq!((first.offset, second.offset), (0, block));
        commit.append(&accept(3, 100)).expect("fits");
        commit.on_durable(Lsn(1));
        commit.invariants();
        assert!(
            !commit.can_write(),
            "segment 1 starts: waits for the write in flight"
        );
        assert_eq!(commit.take_write(), None);
        commit.on_durable(Lsn(2));
        let third = commit.take_write().expect("nothing in flight");
        assert_eq!(third.offset, 2 * block);
        assert_eq!(unsynced_salted(&third.bytes, third.salt)[0], 3);
        commit.invariants();
    }

    // Goal: a completion for no write in flight, or a second one for the same write, is
    // a programmer error.
    // Method: report a completion twice.
    #[test]
    #[should_panic(expected = "reported twice")]
    fn double_completion_panics() {
        let mut commit = pipelined(2);
        commit.append(&accept(1, 100)).expect("fits");
        let _first = commit.take_write().expect("a batch");
        commit.append(&accept(2, 100)).expect("fits");
        let _second = commit.take_write().expect("a batch");
        commit.on_durable(Lsn(2));
        commit.on_durable(Lsn(2));
    }

    // Goal: a resumed log continues LSNs and offsets after the recovered ones.
    // Method: resume at block 3, LSN 41.
    #[test]
    fn resumes_after_recovery() {
        let resume = Resume {
            offset: 3 * BLOCK_SIZE as u64,
            lsn_through: Lsn(41),
        };
        let mut commit = GroupCommit::new(config(1 << 16), resume);
        assert_eq!(commit.append(&accept(1, 10)), Ok(Lsn(42)));
        let plan = commit.take_write().expect("a batch");
        assert_eq!((plan.offset, plan.lsn_through), (3 * 4096, Lsn(42)));
        assert_eq!(records_of(&plan.bytes), [(42, false), (42, true)]);
    }
}
