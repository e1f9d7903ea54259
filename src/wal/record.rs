//! The WAL record format: a fixed 48-byte little-endian header, then the payload, padded
//! with zeros to a multiple of 8. `schema/wal.md` has the byte diagram and the rationale.
//!
//! ```text
//!  0 size u32 | 4 checksum u32 | 8 kind u8 | 9 reserved [u8; 3] | 12 group u32
//! 16 instance u64 | 24 ballot.round u64 | 32 ballot.node u32 | 36 batch_delta u32
//! 40 lsn u64 | 48 payload ... zero tail to `size`
//! ```
//!
//! Invariants:
//! - `size` is the record's whole length in the log (header + payload + zero tail), a
//!   multiple of `RECORD_ALIGN`, at least `HEADER_SIZE`; the next record (or the skip to
//!   the next block) starts at `offset + size`.
//! - `checksum = crc32c_append(salt, bytes[8..size])`: every byte after the checksum field,
//!   the zero tail included, seeded with the log's salt (so bytes of another log or of an
//!   earlier use of a recycled segment, and look-alike records inside client values, never
//!   verify).
//! - The encoding is canonical: fields a kind does not use are zero and the decoder
//!   rejects anything else, so `encode(decode(bytes)) == bytes`.
//! - Only `lsn`, `batch_delta` and the salt are local to one log; catch-up streams the
//!   bytes as they lie on disk and the receiver rewrites just those with [`restamp`]
//!   (one pass over the payload, which it needs anyway to verify the checksum).
//!
//! Decoding reads untrusted bytes: every length is bounds-checked before use, nothing is
//! allocated beyond the input's length (or the configured limits), and nothing panics.

use super::layout::{HEADER_SIZE, RECORD_ALIGN};
use crate::paxos::{
    Ballot, Body, Entry, GroupId, Instance, Lsn, Membership, NodeId, Record, Values,
};
use crate::support::{le_u32, le_u64};
use bytes::Bytes;

mod error;
pub use error::RecordError;

const OFFSET_SIZE: usize = 0;
const OFFSET_CHECKSUM: usize = 4;
const OFFSET_KIND: usize = 8;
const OFFSET_RESERVED: usize = 9;
const OFFSET_GROUP: usize = 12;
const OFFSET_INSTANCE: usize = 16;
const OFFSET_BALLOT_ROUND: usize = 24;
const OFFSET_BALLOT_NODE: usize = 32;
const OFFSET_BATCH_DELTA: usize = 36;
const OFFSET_LSN: usize = 40;
/// First byte covered by the checksum.
const OFFSET_CHECKED: usize = 8;

const _: () = assert!(OFFSET_LSN + 8 == HEADER_SIZE);
const _: () = assert!(OFFSET_CHECKSUM + 4 == OFFSET_CHECKED);

/// Bytes of an encoded entry before its body: origin round u64, origin node u32, body
/// tag u8, 3 reserved zero bytes.
const ENTRY_HEAD_SIZE: usize = 16;

const TAG_VALUES: u8 = 1;
const TAG_NOOP: u8 = 2;
const TAG_START_WORKING: u8 = 3;
const TAG_CONFIG: u8 = 4;

/// What a record says; the `kind` byte. 0 is never a kind, so a zeroed sector never
/// decodes; 6 is reserved for Checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// `Record::Promise`.
    Promise = 1,
    /// `Record::Accept`.
    Accept = 2,
    /// `Record::Chosen`.
    Chosen = 3,
    /// `Record::Learn`.
    Learn = 4,
    /// Fills the rest of a batch's last block; carries no fact.
    Pad = 5,
    /// `Record::Installed`.
    Installed = 7,
}

impl Kind {
    /// The kind with byte value `byte`, if any.
    #[must_use]
    pub fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Promise),
            2 => Some(Kind::Accept),
            3 => Some(Kind::Chosen),
            4 => Some(Kind::Learn),
            5 => Some(Kind::Pad),
            7 => Some(Kind::Installed),
            _ => None,
        }
    }

    /// The kind of a protocol record.
    #[must_use]
    pub fn of(record: &Record) -> Kind {
        match record {
            Record::Promise { .. } => Kind::Promise,
            Record::Accept { .. } => Kind::Accept,
            Record::Chosen { .. } => Kind::Chosen,
            Record::Learn { .. } => Kind::Learn,
            Record::Installed { .. } => Kind::Installed,
        }
    }
}

/// The log-local fields of a record, assigned by `GroupCommit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The record's LSN (never 0). A Pad carries the LSN of the last real record of its
    /// batch.
    pub lsn: Lsn,
    /// An LSN below which every record was durable when the batch (one write) holding
    /// this record was submitted: the first LSN not durable then, or an earlier one (a
    /// lower bound, fixed when the batch's first record is appended; see
    /// `group_commit`). With one write in flight it is the batch's first real record.
    /// `1 <= unsynced_from <= lsn` and `lsn - unsynced_from` fits a u32 (the
    /// `batch_delta` field). Recovery uses it to tell a torn write from damage to an
    /// earlier, durable one.
    pub unsynced_from: Lsn,
}

/// Limits the decoder enforces on untrusted bytes. A reader's limits must admit
/// everything the writer may produce (`record_size_max >= buffer_size_max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest `size` field accepted, in bytes.
    pub record_size_max: u32,
    /// Most values in one `Body::Values`.
    pub values_count_max: u32,
    /// Most voters in one `Body::Config`.
    pub voters_count_max: u32,
}

impl Default for DecodeLimits {
    fn default() -> DecodeLimits {
        DecodeLimits {
            record_size_max: 64 << 20,
            values_count_max: 1 << 20,
            voters_count_max: 1024,
        }
    }
}

/// What a decoded record holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// A protocol fact.
    Record(Record),
    /// Padding to the end of a block.
    Pad,
}

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedRecord {
    /// Its log-local fields.
    pub stamp: Stamp,
    /// What it says.
    pub content: Content,
}

/// `size` rounded up to the record alignment.
const fn align_record(size: usize) -> usize {
    size.div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// Bytes of an encoded entry (no alignment).
#[must_use]
pub fn entry_size(entry: &Entry) -> usize {
    ENTRY_HEAD_SIZE
        + match &entry.body {
            Body::Values(values) => 4 + values.iter().map(|v| 4 + v.len()).sum::<usize>(),
            Body::Noop | Body::StartWorking => 0,
            Body::Config(membership) => 4 + 4 * membership.voters().len(),
        }
}

/// The size of `record` in the log (header, payload and zero tail), a multiple of 8.
#[must_use]
pub fn encoded_size(record: &Record) -> usize {
    match record {
        Record::Promise { .. } | Record::Chosen { .. } | Record::Installed { .. } => HEADER_SIZE,
        Record::Accept { entry, .. } | Record::Learn { entry, .. } => {
            align_record(HEADER_SIZE + entry_size(entry))
        }
    }
}

/// Header fields before the checksum is known.
struct Header {
    size: usize,
    kind: Kind,
    group: GroupId,
    instance: Instance,
    ballot: Ballot,
    stamp: Stamp,
}

fn put_header(header: &Header, out: &mut Vec<u8>) {
    let stamp = header.stamp;
    assert!(stamp.lsn.0 >= 1, "LSN 0 is never assigned");
    assert!(
        stamp.unsynced_from.0 >= 1 && stamp.unsynced_from <= stamp.lsn,
        "unsynced_from {} outside [1, lsn {}]",
        stamp.unsynced_from.0,
        stamp.lsn.0
    );
    let batch_delta = u32::try_from(stamp.lsn.0 - stamp.unsynced_from.0)
        .expect("GroupCommit bounds the records of its writes in flight below u32::MAX");
    let size = u32::try_from(header.size).expect("record size is bounded by the buffer size");
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // checksum, filled in last
    out.push(header.kind as u8);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&header.group.0.to_le_bytes());
    out.extend_from_slice(&header.instance.0.to_le_bytes());
    out.extend_from_slice(&header.ballot.round.to_le_bytes());
    out.extend_from_slice(&header.ballot.node.0.to_le_bytes());
    out.extend_from_slice(&batch_delta.to_le_bytes());
    out.extend_from_slice(&stamp.lsn.0.to_le_bytes());
}

fn put_entry(entry: &Entry, out: &mut Vec<u8>) {
    out.extend_from_slice(&entry.origin.round.to_le_bytes());
    out.extend_from_slice(&entry.origin.node.0.to_le_bytes());
    let tag = match &entry.body {
        Body::Values(_) => TAG_VALUES,
        Body::Noop => TAG_NOOP,
        Body::StartWorking => TAG_START_WORKING,
        Body::Config(_) => TAG_CONFIG,
    };
    out.extend_from_slice(&[tag, 0, 0, 0]);
    match &entry.body {
        Body::Values(values) => {
            let count = u32::try_from(values.len()).expect("value count bounded by the buffer");
            out.extend_from_slice(&count.to_le_bytes());
            for value in values {
                let len = u32::try_from(value.len()).expect("value size bounded by the buffer");
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(value);
            }
        }
        Body::Noop | Body::StartWorking => {}
        Body::Config(membership) => {
            let voters = membership.voters();
            let count = u32::try_from(voters.len()).expect("voter count is small");
            out.extend_from_slice(&count.to_le_bytes());
            for voter in voters {
                out.extend_from_slice(&voter.0.to_le_bytes());
            }
        }
    }
}

/// Fills in the checksum of the record that occupies `out[start..]`.
fn seal(out: &mut [u8], start: usize, salt: u32) {
    let checksum = crc32c::crc32c_append(salt, &out[start + OFFSET_CHECKED..]);
    out[start + OFFSET_CHECKSUM..start + OFFSET_CHECKED].copy_from_slice(&checksum.to_le_bytes());
}

/// Appends `record`, stamped and sealed with `salt`, to `out`; returns its size
/// (`encoded_size(record)`). The caller places it (see `wal::record_start`).
///
/// Panics (programmer errors): LSN 0, `unsynced_from` outside `[1, lsn]`, an Accept or
/// Learn at instance 0, or a record too large for the u32 size field.
pub fn encode(record: &Record, stamp: Stamp, salt: u32, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    let size = encoded_size(record);
    let (group, instance, ballot, entry) = match record {
        Record::Promise { group, ballot } => (*group, Instance(0), *ballot, None),
        Record::Accept {
            group,
            instance,
            ballot,
            entry,
        } => (*group, *instance, *ballot, Some(entry)),
        Record::Chosen { group, through } | Record::Installed { group, through } => {
            (*group, *through, Ballot::ZERO, None)
        }
        Record::Learn {
            group,
            instance,
            entry,
        } => (*group, *instance, Ballot::ZERO, Some(entry)),
    };
    if entry.is_some() {
        assert!(
            instance.0 >= 1,
            "{:?} record at instance 0",
            Kind::of(record)
        );
    }
    out.reserve(size);
    let header = Header {
        size,
        kind: Kind::of(record),
        group,
        instance,
        ballot,
        stamp,
    };
    put_header(&header, out);
    if let Some(entry) = entry {
        put_entry(entry, out);
    }
    out.resize(start + size, 0);
    seal(out, start, salt);
    assert_eq!(
        out.len() - start,
        size,
        "encoded_size disagrees with encode"
    );
    size
}

/// Appends a Pad record of exactly `size` bytes (header and zeros) to `out`.
/// `size` must be a multiple of 8 and at least `HEADER_SIZE` (programmer error).
pub fn encode_pad(size: usize, stamp: Stamp, salt: u32, out: &mut Vec<u8>) {
    assert!(
        size >= HEADER_SIZE && size % RECORD_ALIGN == 0,
        "pad size {size} must be >= {HEADER_SIZE} and a multiple of {RECORD_ALIGN}"
    );
    let start = out.len();
    let header = Header {
        size,
        kind: Kind::Pad,
        group: GroupId(0),
        instance: Instance(0),
        ballot: Ballot::ZERO,
        stamp,
    };
    put_header(&header, out);
    out.resize(start + size, 0);
    seal(out, start, salt);
}

/// The header fields of a record, read in place by [`peek`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peeked {
    /// Whole length in the log.
    pub size: u32,
    /// Its kind.
    pub kind: Kind,
    /// Its group (0 in a Pad).
    pub group: GroupId,
    /// Accept, Learn: the instance; Chosen: the watermark; else 0.
    pub instance: Instance,
    /// Promise, Accept: the ballot; else zero.
    pub ballot: Ballot,
    /// Its LSN.
    pub lsn: Lsn,
    /// `lsn - batch_delta` (`Stamp::unsynced_from`; saturates at 0 on bytes that were
    /// not encoded here).
    pub unsynced_from: Lsn,
}

/// The header of the record at the start of `buf`, WITHOUT verifying its checksum or
/// payload: only for bytes this process encoded itself (indexing a `WritePlan` as it is
/// written). `None` when fewer than `HEADER_SIZE` bytes remain, or the kind or size is
/// not that of a record (never panics). Untrusted bytes go through [`decode`].
#[must_use]
pub fn peek(buf: &[u8]) -> Option<Peeked> {
    if buf.len() < HEADER_SIZE {
        return None;
    }
    let size = le_u32(buf, OFFSET_SIZE);
    if (size as usize) < HEADER_SIZE || size as usize % RECORD_ALIGN != 0 {
        return None;
    }
    Some(Peeked {
        size,
        kind: Kind::from_byte(buf[OFFSET_KIND])?,
        group: GroupId(le_u32(buf, OFFSET_GROUP)),
        instance: Instance(le_u64(buf, OFFSET_INSTANCE)),
        ballot: Ballot {
            round: le_u64(buf, OFFSET_BALLOT_ROUND),
            node: NodeId(le_u32(buf, OFFSET_BALLOT_NODE)),
        },
        lsn: Lsn(le_u64(buf, OFFSET_LSN)),
        unsynced_from: Lsn(
            le_u64(buf, OFFSET_LSN).saturating_sub(u64::from(le_u32(buf, OFFSET_BATCH_DELTA)))
        ),
    })
}

/// Decodes the record at the start of `buf` (which may hold more bytes after it);
/// returns it and its size in the log. Values are copied out of `buf`.
pub fn decode(
    buf: &[u8],
    salt: u32,
    limits: &DecodeLimits,
) -> Result<(DecodedRecord, usize), RecordError> {
    decode_with(buf, salt, limits, &mut |range| {
        Bytes::copy_from_slice(&buf[range])
    })
}

/// As [`decode`], but values are zero-copy slices of `buf` (catch-up reads and receives
/// from DMA buffers).
pub fn decode_shared(
    buf: &Bytes,
    salt: u32,
    limits: &DecodeLimits,
) -> Result<(DecodedRecord, usize), RecordError> {
    decode_with(buf, salt, limits, &mut |range| buf.slice(range))
}

/// A bounds-checked cursor over one record's bytes (offsets relative to the record).
struct Cursor<'a> {
    record: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, needed: usize) -> Result<usize, RecordError> {
        if self.record.len() - self.at < needed {
            return Err(RecordError::PayloadTruncated {
                offset: self.at,
                needed,
            });
        }
        let start = self.at;
        self.at += needed;
        Ok(start)
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        let at = self.take(1)?;
        Ok(self.record[at])
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        let at = self.take(4)?;
        Ok(le_u32(self.record, at))
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        let at = self.take(8)?;
        Ok(le_u64(self.record, at))
    }
    fn remaining(&self) -> usize {
        self.record.len() - self.at
    }
}

/// The record at the front of `buf`, and its kind, once its header holds: size, kind,
/// reserved bytes, LSN, batch delta, then the CRC32C over the whole record (the
/// payload is not parsed yet). Cheap checks first: recovery probes every block boundary
/// after damage.
fn verify_header<'b>(
    buf: &'b [u8],
    salt: u32,
    limits: &DecodeLimits,
) -> Result<(&'b [u8], Kind), RecordError> {
    if buf.len() < HEADER_SIZE {
        return Err(RecordError::Truncated {
            needed: HEADER_SIZE,
            available: buf.len(),
        });
    }
    let size_field = le_u32(buf, OFFSET_SIZE);
    let size = size_field as usize;
    if size < HEADER_SIZE || size % RECORD_ALIGN != 0 {
        return Err(RecordError::SizeInvalid { size: size_field });
    }
    if size_field > limits.record_size_max {
        return Err(RecordError::SizeTooLarge {
            size: size_field,
            max: limits.record_size_max,
        });
    }
    if buf.len() < size {
        return Err(RecordError::Truncated {
            needed: size,
            available: buf.len(),
        });
    }
    let record = &buf[..size];
    let kind_byte = record[OFFSET_KIND];
    let kind = Kind::from_byte(kind_byte).ok_or(RecordError::KindUnknown { kind: kind_byte })?;
    if let Some(index) = record[OFFSET_RESERVED..OFFSET_GROUP]
        .iter()
        .position(|b| *b != 0)
    {
        return Err(RecordError::ReservedNotZero {
            offset: OFFSET_RESERVED + index,
        });
    }
    let lsn = le_u64(record, OFFSET_LSN);
    if lsn == 0 {
        return Err(RecordError::LsnZero);
    }
    let batch_delta = le_u32(record, OFFSET_BATCH_DELTA);
    if u64::from(batch_delta) >= lsn {
        return Err(RecordError::BatchDeltaInvalid { lsn, batch_delta });
    }
    let stored = le_u32(record, OFFSET_CHECKSUM);
    let computed = crc32c::crc32c_append(salt, &record[OFFSET_CHECKED..]);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    Ok((record, kind))
}

fn decode_with(
    buf: &[u8],
    salt: u32,
    limits: &DecodeLimits,
    value: &mut dyn FnMut(std::ops::Range<usize>) -> Bytes,
) -> Result<(DecodedRecord, usize), RecordError> {
    let (record, kind) = verify_header(buf, salt, limits)?;
    let size = record.len();
    let lsn = le_u64(record, OFFSET_LSN);
    let batch_delta = le_u32(record, OFFSET_BATCH_DELTA);
    let group = GroupId(le_u32(record, OFFSET_GROUP));
    let instance = Instance(le_u64(record, OFFSET_INSTANCE));
    let ballot = Ballot {
        round: le_u64(record, OFFSET_BALLOT_ROUND),
        node: NodeId(le_u32(record, OFFSET_BALLOT_NODE)),
    };
    let stamp = Stamp {
        lsn: Lsn(lsn),
        unsynced_from: Lsn(lsn - u64::from(batch_delta)),
    };
    let zero = |field: &'static str, is_zero: bool| {
        if is_zero {
            Ok(())
        } else {
            Err(RecordError::FieldNotZero { kind, field })
        }
    };
    let mut cursor = Cursor {
        record,
        at: HEADER_SIZE,
    };
    let content = match kind {
        Kind::Promise => {
            zero("instance", instance.0 == 0)?;
            Content::Record(Record::Promise { group, ballot })
        }
        Kind::Chosen => {
            zero("ballot", ballot == Ballot::ZERO)?;
            Content::Record(Record::Chosen {
                group,
                through: instance,
            })
        }
        Kind::Installed => {
            zero("ballot", ballot == Ballot::ZERO)?;
            if instance.0 == 0 {
                return Err(RecordError::InstanceZero { kind });
            }
            Content::Record(Record::Installed {
                group,
                through: instance,
            })
        }
        Kind::Accept => {
            if instance.0 == 0 {
                return Err(RecordError::InstanceZero { kind });
            }
            let entry = decode_entry(&mut cursor, limits, value)?;
            Content::Record(Record::Accept {
                group,
                instance,
                ballot,
                entry,
            })
        }
        Kind::Learn => {
            if instance.0 == 0 {
                return Err(RecordError::InstanceZero { kind });
            }
            zero("ballot", ballot == Ballot::ZERO)?;
            let entry = decode_entry(&mut cursor, limits, value)?;
            Content::Record(Record::Learn {
                group,
                instance,
                entry,
            })
        }
        Kind::Pad => {
            zero("group", group.0 == 0)?;
            zero("instance", instance.0 == 0)?;
            zero("ballot", ballot == Ballot::ZERO)?;
            Content::Pad
        }
    };
    // The tail after the payload is zero and shorter than the alignment (a Pad is all tail).
    let tail = &record[cursor.at..];
    let tail_max = if kind == Kind::Pad {
        tail.len()
    } else {
        RECORD_ALIGN - 1
    };
    if let Some(index) = tail.iter().position(|b| *b != 0) {
        return Err(RecordError::PayloadTrailing {
            offset: cursor.at + index,
            bytes: tail.len() - index,
        });
    }
    if tail.len() > tail_max {
        return Err(RecordError::PayloadTrailing {
            offset: cursor.at,
            bytes: tail.len(),
        });
    }
    Ok((DecodedRecord { stamp, content }, size))
}

fn decode_entry(
    cursor: &mut Cursor<'_>,
    limits: &DecodeLimits,
    value: &mut dyn FnMut(std::ops::Range<usize>) -> Bytes,
) -> Result<Entry, RecordError> {
    let origin = Ballot {
        round: cursor.u64()?,
        node: NodeId(cursor.u32()?),
    };
    let tag = cursor.u8()?;
    for _ in 0..3 {
        let offset = cursor.at;
        if cursor.u8()? != 0 {
            return Err(RecordError::ReservedNotZero { offset });
        }
    }
    let body = match tag {
        TAG_VALUES => {
            let count = cursor.u32()?;
            if count > limits.values_count_max {
                return Err(RecordError::ValuesCountTooLarge {
                    count,
                    max: limits.values_count_max,
                });
            }
            // Each value takes at least its 4-byte length: never reserve more than the
            // bytes present could describe.
            let plausible = (cursor.remaining() / 4).min(count as usize);
            let mut values = Values::with_capacity(plausible);
            for _ in 0..count {
                let len = cursor.u32()? as usize;
                let start = cursor.take(len)?;
                values.push(value(start..start + len));
            }
            Body::Values(values)
        }
        TAG_NOOP => Body::Noop,
        TAG_START_WORKING => Body::StartWorking,
        TAG_CONFIG => {
            let count = cursor.u32()?;
            if count == 0 || count > limits.voters_count_max {
                return Err(RecordError::VotersCountInvalid {
                    count,
                    max: limits.voters_count_max,
                });
            }
            let plausible = (cursor.remaining() / 4).min(count as usize);
            let mut voters = Vec::with_capacity(plausible);
            for index in 0..count {
                let voter = NodeId(cursor.u32()?);
                if voters.last().is_some_and(|last| *last >= voter) {
                    return Err(RecordError::VotersNotSorted { index });
                }
                voters.push(voter);
            }
            // Non-empty, sorted and unique: `Membership::new` keeps them as they are.
            Body::Config(Membership::new(voters))
        }
        _ => return Err(RecordError::BodyTagUnknown { tag }),
    };
    Ok(Entry { origin, body })
}

/// Verifies the one encoded record that fills `bytes` under `salt_from`, then rewrites
/// its log-local fields to `stamp` and reseals it under `salt_to`, in place. The payload
/// is read once (its CRC is combined with the old and the new header's). This is how a
/// catch-up receiver appends records streamed from a peer's disk to its own log.
/// On error `bytes` is unchanged.
pub fn restamp(
    bytes: &mut [u8],
    salt_from: u32,
    stamp: Stamp,
    salt_to: u32,
) -> Result<(), RecordError> {
    if bytes.len() < HEADER_SIZE {
        return Err(RecordError::Truncated {
            needed: HEADER_SIZE,
            available: bytes.len(),
        });
    }
    let size_field = le_u32(bytes, OFFSET_SIZE);
    let size = size_field as usize;
    if size < HEADER_SIZE || size % RECORD_ALIGN != 0 || size != bytes.len() {
        return Err(RecordError::SizeInvalid { size: size_field });
    }
    assert!(
        stamp.lsn.0 >= 1 && stamp.unsynced_from.0 >= 1 && stamp.unsynced_from <= stamp.lsn,
        "restamp: invalid stamp {stamp:?}"
    );
    let batch_delta = u32::try_from(stamp.lsn.0 - stamp.unsynced_from.0)
        .expect("the writes in flight hold fewer than u32::MAX records");
    let payload_len = size - HEADER_SIZE;
    let payload_crc = crc32c::crc32c(&bytes[HEADER_SIZE..]);
    let stored = le_u32(bytes, OFFSET_CHECKSUM);
    let head_from = crc32c::crc32c_append(salt_from, &bytes[OFFSET_CHECKED..HEADER_SIZE]);
    let computed = crc32c::crc32c_combine(head_from, payload_crc, payload_len);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    bytes[OFFSET_BATCH_DELTA..OFFSET_LSN].copy_from_slice(&batch_delta.to_le_bytes());
    bytes[OFFSET_LSN..HEADER_SIZE].copy_from_slice(&stamp.lsn.0.to_le_bytes());
    let head_to = crc32c::crc32c_append(salt_to, &bytes[OFFSET_CHECKED..HEADER_SIZE]);
    let checksum = crc32c::crc32c_combine(head_to, payload_crc, payload_len);
    bytes[OFFSET_CHECKSUM..OFFSET_CHECKED].copy_from_slice(&checksum.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests;
