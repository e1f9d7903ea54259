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

use super::{HEADER_SIZE, RECORD_ALIGN};
use crate::paxos::{Ballot, Body, Entry, GroupId, Instance, Lsn, Membership, NodeId, Record};
use crate::support::{le_u32, le_u64};
use bytes::Bytes;
use std::fmt;

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
        }
    }
}

/// The log-local fields of a record, assigned by `GroupCommit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The record's LSN (never 0). A Pad carries the LSN of the last real record of its
    /// batch.
    pub lsn: Lsn,
    /// LSN of the first real record of the batch (one write) this record belongs to;
    /// `1 <= batch_first <= lsn` and `lsn - batch_first` fits a u32. Recovery uses it to
    /// tell a torn last write from damage to an earlier, durable one.
    pub batch_first: Lsn,
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

/// Why bytes are not a valid record. Offsets are relative to the record's first byte.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// Fewer bytes than the header, or than the record's `size`.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// `size` is below the header size or not a multiple of the record alignment.
    SizeInvalid {
        /// The `size` field.
        size: u32,
    },
    /// `size` exceeds `DecodeLimits::record_size_max`.
    SizeTooLarge {
        /// The `size` field.
        size: u32,
        /// The limit.
        max: u32,
    },
    /// The `kind` byte names no kind.
    KindUnknown {
        /// The `kind` byte.
        kind: u8,
    },
    /// A reserved byte is not zero.
    ReservedNotZero {
        /// Offset of the byte.
        offset: usize,
    },
    /// The LSN is 0.
    LsnZero,
    /// `batch_delta` exceeds `lsn - 1` (the batch would start at or before LSN 0).
    BatchDeltaInvalid {
        /// The LSN.
        lsn: u64,
        /// The `batch_delta` field.
        batch_delta: u32,
    },
    /// The checksum does not match the bytes (damage, a torn write, or another log).
    Checksum {
        /// Checksum stored in the record.
        stored: u32,
        /// Checksum computed over the bytes.
        computed: u32,
    },
    /// A field this kind does not use is not zero.
    FieldNotZero {
        /// The kind.
        kind: Kind,
        /// The field.
        field: &'static str,
    },
    /// An Accept or Learn names instance 0, which is never a log position.
    InstanceZero {
        /// The kind.
        kind: Kind,
    },
    /// The payload ends inside the entry.
    PayloadTruncated {
        /// Offset where more bytes were needed.
        offset: usize,
        /// Bytes needed there.
        needed: usize,
    },
    /// Bytes after the entry (or in a Pad) are not a zero tail shorter than the alignment.
    PayloadTrailing {
        /// Offset of the first unexpected byte.
        offset: usize,
        /// Bytes from there to the end of the record.
        bytes: usize,
    },
    /// The entry's body tag names no body.
    BodyTagUnknown {
        /// The tag.
        tag: u8,
    },
    /// More values than `DecodeLimits::values_count_max`.
    ValuesCountTooLarge {
        /// Count in the record.
        count: u32,
        /// The limit.
        max: u32,
    },
    /// A membership with no voter or more than `DecodeLimits::voters_count_max`.
    VotersCountInvalid {
        /// Count in the record.
        count: u32,
        /// The limit.
        max: u32,
    },
    /// Voters are not strictly increasing (the canonical form of a `Membership`).
    VotersNotSorted {
        /// Index of the first voter out of order.
        index: u32,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Truncated { needed, available } => {
                write!(
                    f,
                    "record truncated: {needed} bytes needed, {available} available"
                )
            }
            RecordError::SizeInvalid { size } => write!(
                f,
                "record size {size} is below {HEADER_SIZE} or not a multiple of {RECORD_ALIGN}"
            ),
            RecordError::SizeTooLarge { size, max } => {
                write!(f, "record size {size} exceeds record_size_max {max}")
            }
            RecordError::KindUnknown { kind } => write!(f, "unknown record kind {kind}"),
            RecordError::ReservedNotZero { offset } => {
                write!(f, "reserved byte at offset {offset} is not zero")
            }
            RecordError::LsnZero => write!(f, "record LSN is 0"),
            RecordError::BatchDeltaInvalid { lsn, batch_delta } => {
                write!(f, "batch_delta {batch_delta} is not below LSN {lsn}")
            }
            RecordError::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            RecordError::FieldNotZero { kind, field } => {
                write!(f, "{kind:?} record has a non-zero {field}")
            }
            RecordError::InstanceZero { kind } => write!(f, "{kind:?} record at instance 0"),
            RecordError::PayloadTruncated { offset, needed } => {
                write!(
                    f,
                    "payload truncated: {needed} bytes needed at offset {offset}"
                )
            }
            RecordError::PayloadTrailing { offset, bytes } => write!(
                f,
                "{bytes} unexpected trailing bytes at offset {offset} (at most {} zero bytes)",
                RECORD_ALIGN - 1
            ),
            RecordError::BodyTagUnknown { tag } => write!(f, "unknown entry body tag {tag}"),
            RecordError::ValuesCountTooLarge { count, max } => {
                write!(f, "{count} values exceed values_count_max {max}")
            }
            RecordError::VotersCountInvalid { count, max } => {
                write!(f, "{count} voters: need 1 to voters_count_max {max}")
            }
            RecordError::VotersNotSorted { index } => {
                write!(f, "voter {index} is not above the one before it")
            }
        }
    }
}

impl std::error::Error for RecordError {}

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
        Record::Promise { .. } | Record::Chosen { .. } => HEADER_SIZE,
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
        stamp.batch_first.0 >= 1 && stamp.batch_first <= stamp.lsn,
        "batch_first {} outside [1, lsn {}]",
        stamp.batch_first.0,
        stamp.lsn.0
    );
    let batch_delta = u32::try_from(stamp.lsn.0 - stamp.batch_first.0)
        .expect("GroupCommit bounds a batch's record count below u32::MAX");
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
/// Panics (programmer errors): LSN 0, `batch_first` outside `[1, lsn]`, an Accept or
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
        Record::Chosen { group, through } => (*group, *through, Ballot::ZERO, None),
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

fn decode_with(
    buf: &[u8],
    salt: u32,
    limits: &DecodeLimits,
    value: &mut dyn FnMut(std::ops::Range<usize>) -> Bytes,
) -> Result<(DecodedRecord, usize), RecordError> {
    // Cheap header checks first: recovery probes every block boundary after damage.
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

    let group = GroupId(le_u32(record, OFFSET_GROUP));
    let instance = Instance(le_u64(record, OFFSET_INSTANCE));
    let ballot = Ballot {
        round: le_u64(record, OFFSET_BALLOT_ROUND),
        node: NodeId(le_u32(record, OFFSET_BALLOT_NODE)),
    };
    let stamp = Stamp {
        lsn: Lsn(lsn),
        batch_first: Lsn(lsn - u64::from(batch_delta)),
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
            let mut values = Vec::with_capacity(plausible);
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
        stamp.lsn.0 >= 1 && stamp.batch_first.0 >= 1 && stamp.batch_first <= stamp.lsn,
        "restamp: invalid stamp {stamp:?}"
    );
    let batch_delta = u32::try_from(stamp.lsn.0 - stamp.batch_first.0)
        .expect("a batch holds fewer than u32::MAX records");
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
mod tests {
    use super::*;
    use crate::prng::Prng;

    const SALT: u32 = 0x5a17_0001;

    fn stamp(lsn: u64) -> Stamp {
        Stamp {
            lsn: Lsn(lsn),
            batch_first: Lsn(lsn.saturating_sub(2).max(1)),
        }
    }

    fn ballot(round: u64, node: u32) -> Ballot {
        Ballot {
            round,
            node: NodeId(node),
        }
    }

    fn samples() -> Vec<Record> {
        let values = |sizes: &[usize]| {
            Body::Values(sizes.iter().map(|n| Bytes::from(vec![0xab; *n])).collect())
        };
        vec![
            Record::Promise {
                group: GroupId(7),
                ballot: ballot(3, 2),
            },
            Record::Chosen {
                group: GroupId(u32::MAX),
                through: Instance(u64::MAX),
            },
            Record::Chosen {
                group: GroupId(1),
                through: Instance(0),
            },
            Record::Accept {
                group: GroupId(1),
                instance: Instance(9),
                ballot: ballot(5, 1),
                entry: Entry {
                    origin: ballot(4, 3),
                    body: values(&[0, 1, 7, 100]),
                },
            },
            Record::Accept {
                group: GroupId(2),
                instance: Instance(1),
                ballot: ballot(1, 1),
                entry: Entry {
                    origin: ballot(1, 1),
                    body: Body::Values(Vec::new()),
                },
            },
            Record::Learn {
                group: GroupId(3),
                instance: Instance(44),
                entry: Entry {
                    origin: ballot(2, 2),
                    body: Body::Noop,
                },
            },
            Record::Learn {
                group: GroupId(3),
                instance: Instance(45),
                entry: Entry {
                    origin: ballot(2, 2),
                    body: Body::StartWorking,
                },
            },
            Record::Accept {
                group: GroupId(3),
                instance: Instance(46),
                ballot: ballot(2, 2),
                entry: Entry {
                    origin: ballot(2, 2),
                    body: Body::Config(Membership::new(vec![NodeId(3), NodeId(1), NodeId(2)])),
                },
            },
        ]
    }

    // Goal: every record kind round-trips, canonically, at the size encoded_size says.
    // Method: encode samples back to back, decode them in sequence, re-encode, compare.
    #[test]
    fn round_trip_is_canonical() {
        let limits = DecodeLimits::default();
        let mut log = Vec::new();
        for (i, record) in samples().iter().enumerate() {
            let size = encode(record, stamp(i as u64 + 1), SALT, &mut log);
            assert_eq!(size, encoded_size(record));
            assert_eq!(size % RECORD_ALIGN, 0);
        }
        let mut at = 0;
        for (i, record) in samples().iter().enumerate() {
            let (decoded, size) = decode(&log[at..], SALT, &limits).expect("valid record");
            assert_eq!(decoded.content, Content::Record(record.clone()));
            assert_eq!(decoded.stamp, stamp(i as u64 + 1));
            let mut again = Vec::new();
            encode(record, decoded.stamp, SALT, &mut again);
            assert_eq!(again, log[at..at + size]);
            let shared = Bytes::copy_from_slice(&log[at..]);
            assert_eq!(
                decode_shared(&shared, SALT, &limits).expect("valid").0,
                decoded
            );
            at += size;
        }
        assert_eq!(at, log.len());
    }

    // Goal: pads decode, and a record under another salt never verifies.
    // Method: encode a pad; decode under the right and a wrong salt.
    #[test]
    fn pads_and_salts() {
        let limits = DecodeLimits::default();
        let mut buf = Vec::new();
        encode_pad(96, stamp(5), SALT, &mut buf);
        let (decoded, size) = decode(&buf, SALT, &limits).expect("valid pad");
        assert_eq!((decoded.content, size), (Content::Pad, 96));
        assert!(matches!(
            decode(&buf, SALT ^ 1, &limits),
            Err(RecordError::Checksum { .. })
        ));
    }

    // Goal: every single-bit flip of a record is detected, never a panic.
    // Method: flip each bit of each sample in turn and decode.
    #[test]
    fn every_bit_flip_is_detected() {
        let limits = DecodeLimits::default();
        for record in samples() {
            let mut buf = Vec::new();
            encode(&record, stamp(3), SALT, &mut buf);
            for bit in 0..buf.len() * 8 {
                buf[bit / 8] ^= 1 << (bit % 8);
                assert!(
                    decode(&buf, SALT, &limits).is_err(),
                    "bit {bit} of {record:?}"
                );
                buf[bit / 8] ^= 1 << (bit % 8);
            }
        }
    }

    // Goal: typed errors for each malformed shape, with numbers in their messages.
    // Method: hand-build bad headers and payloads (resealed so the checksum passes).
    #[test]
    fn typed_errors() {
        let limits = DecodeLimits::default();
        assert_eq!(
            decode(&[0; 10], SALT, &limits),
            Err(RecordError::Truncated {
                needed: HEADER_SIZE,
                available: 10
            })
        );
        assert_eq!(
            decode(&[0; 64], SALT, &limits),
            Err(RecordError::SizeInvalid { size: 0 })
        );
        let mut buf = Vec::new();
        encode(&samples()[3], stamp(9), SALT, &mut buf);
        let reseal = |mut b: Vec<u8>, edit: &dyn Fn(&mut Vec<u8>)| {
            edit(&mut b);
            seal(&mut b, 0, SALT);
            b
        };
        let tag_at = HEADER_SIZE + 12;
        let bad_tag = reseal(buf.clone(), &|b| b[tag_at] = 9);
        assert_eq!(
            decode(&bad_tag, SALT, &limits),
            Err(RecordError::BodyTagUnknown { tag: 9 })
        );
        let huge_count = reseal(buf.clone(), &|b| {
            b[tag_at + 4..tag_at + 8].copy_from_slice(&u32::MAX.to_le_bytes())
        });
        let error = decode(&huge_count, SALT, &limits).expect_err("count above limit");
        assert_eq!(
            error,
            RecordError::ValuesCountTooLarge {
                count: u32::MAX,
                max: limits.values_count_max
            }
        );
        assert!(error.to_string().contains("4294967295"));
        let bad_kind = reseal(buf.clone(), &|b| b[OFFSET_KIND] = 0);
        assert_eq!(
            decode(&bad_kind, SALT, &limits),
            Err(RecordError::KindUnknown { kind: 0 })
        );
        let reserved = reseal(buf.clone(), &|b| b[10] = 1);
        assert_eq!(
            decode(&reserved, SALT, &limits),
            Err(RecordError::ReservedNotZero { offset: 10 })
        );
        // A one-byte value leaves a 7-byte zero tail (48 + 16 + 4 + 4 + 1 = 73 -> 80).
        let mut short = Vec::new();
        let one = Record::Learn {
            group: GroupId(1),
            instance: Instance(1),
            entry: Entry {
                origin: ballot(1, 1),
                body: Body::Values(vec![Bytes::from_static(b"x")]),
            },
        };
        assert_eq!(encode(&one, stamp(1), SALT, &mut short), 80);
        let trailing = reseal(short, &|b| b[79] = 1);
        assert_eq!(
            decode(&trailing, SALT, &limits),
            Err(RecordError::PayloadTrailing {
                offset: 79,
                bytes: 1
            })
        );
        let mut pad = Vec::new();
        encode_pad(64, stamp(1), SALT, &mut pad);
        let dirty_pad = reseal(pad, &|b| b[50] = 1);
        assert_eq!(
            decode(&dirty_pad, SALT, &limits),
            Err(RecordError::PayloadTrailing {
                offset: 50,
                bytes: 14
            })
        );
        let small = DecodeLimits {
            record_size_max: 64,
            ..limits
        };
        assert!(matches!(
            decode(&buf, SALT, &small),
            Err(RecordError::SizeTooLarge { max: 64, .. })
        ));
        assert!(matches!(
            decode(&buf[..buf.len() - 8], SALT, &limits),
            Err(RecordError::Truncated { .. })
        ));
    }

    // Goal: unsorted or empty memberships are rejected instead of reaching
    // `Membership::new` (which would dedupe silently or panic).
    // Method: rewrite the voter list of a Config record and reseal.
    #[test]
    fn voters_must_be_canonical() {
        let limits = DecodeLimits::default();
        let mut buf = Vec::new();
        encode(&samples()[7], stamp(1), SALT, &mut buf);
        let voters_at = HEADER_SIZE + ENTRY_HEAD_SIZE + 4;
        let mut dup = buf.clone();
        dup[voters_at + 4..voters_at + 8].copy_from_slice(&1u32.to_le_bytes());
        seal(&mut dup, 0, SALT);
        assert_eq!(
            decode(&dup, SALT, &limits),
            Err(RecordError::VotersNotSorted { index: 1 })
        );
        let mut empty = buf.clone();
        empty[voters_at - 4..voters_at].copy_from_slice(&0u32.to_le_bytes());
        seal(&mut empty, 0, SALT);
        assert!(matches!(
            decode(&empty, SALT, &limits),
            Err(RecordError::VotersCountInvalid { count: 0, .. })
        ));
    }

    // Goal: restamping equals re-encoding with the new stamp and salt, and refuses damage.
    // Method: restamp every sample; compare with a fresh encode; flip a payload bit.
    #[test]
    fn restamp_matches_encode() {
        let to = Stamp {
            lsn: Lsn(1000),
            batch_first: Lsn(990),
        };
        for record in samples() {
            let mut bytes = Vec::new();
            encode(&record, stamp(4), SALT, &mut bytes);
            let mut expected = Vec::new();
            encode(&record, to, 77, &mut expected);
            let original = bytes.clone();
            let last = bytes.len() - 1;
            bytes[last] ^= 0x10;
            assert!(restamp(&mut bytes, SALT, to, 77).is_err());
            bytes[last] ^= 0x10;
            assert_eq!(bytes, original);
            restamp(&mut bytes, SALT, to, 77).expect("valid record");
            assert_eq!(bytes, expected);
        }
    }

    // Goal: arbitrary bytes never panic the decoder nor make it allocate beyond the input.
    // Method: decode random buffers and random mutations of valid records.
    #[test]
    fn random_bytes_never_panic() {
        let limits = DecodeLimits::default();
        let mut prng = Prng::new(0xdec0de);
        let mut valid = Vec::new();
        for (i, record) in samples().iter().enumerate() {
            encode(record, stamp(i as u64 + 1), SALT, &mut valid);
        }
        for _ in 0..20_000 {
            let mut buf = if prng.coin() {
                let mut b = vec![0; prng.index(300)];
                prng.fill(&mut b);
                b
            } else {
                valid.clone()
            };
            for _ in 0..prng.range(1, 4) {
                if buf.is_empty() {
                    break;
                }
                let at = prng.index(buf.len());
                buf[at] = prng.next_u64() as u8;
            }
            if buf.len() >= HEADER_SIZE && prng.coin() {
                // Reseal the first record so mutations reach the payload parser.
                let size = (le_u32(&buf, 0) as usize).min(buf.len());
                if size >= HEADER_SIZE {
                    seal(&mut buf[..size], 0, SALT);
                }
            }
            let _ = decode(&buf, SALT, &limits);
        }
    }
}
