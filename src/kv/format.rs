//! The byte format of the key-value store's commands (proposed values), queries (read
//! requests) and answers (what `apply` and `query` return), version
//! [`FORMAT_VERSION`]. The layout, field by field, is in the module docs of
//! `synod::kv`; every decoder here checks every length, tag and bound before it
//! allocates, and refuses trailing bytes, so a value from a buggy or hostile client
//! becomes a typed [`FormatError`] (and an [`Answer::Error`]), never a panic.
//!
//! Invariant: `decode(encode(x)) == x` for every value within the limits
//! ([`KEY_SIZE_MAX`], [`VALUE_SIZE_MAX`], [`SCAN_KEYS_MAX`], [`SCAN_SIZE_MAX`]).

use std::fmt;

use bytes::Bytes;

/// The format version: the first byte of every command, query and answer.
pub const FORMAT_VERSION: u8 = 1;
/// Largest key, in bytes (keys are 1..=this long).
pub const KEY_SIZE_MAX: usize = 1024;
/// Largest value, in bytes.
pub const VALUE_SIZE_MAX: usize = 256 << 10;
/// Most entries one scan may ask for.
pub const SCAN_KEYS_MAX: u32 = 10_000;
/// Most bytes of keys and values one scan may ask for (a scan returns at least one
/// entry when there is one, whatever its size).
pub const SCAN_SIZE_MAX: u32 = 4 << 20;
/// Longest error reason kept in an answer, in bytes (a longer one is cut).
pub const REASON_SIZE_MAX: usize = 512;

/// Why bytes do not decode as a command, query or answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// The bytes end before the field named.
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left.
        left: usize,
    },
    /// The first byte is not [`FORMAT_VERSION`].
    Version {
        /// The version found.
        found: u8,
    },
    /// A tag byte names no kind.
    Tag {
        /// The field.
        field: &'static str,
        /// The tag found.
        found: u8,
    },
    /// A length or count is outside its bounds.
    Bound {
        /// The field.
        field: &'static str,
        /// The value found.
        found: u64,
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
    },
    /// Bytes remain after the last field.
    Trailing {
        /// How many.
        count: usize,
    },
    /// Fields that contradict each other.
    Invalid {
        /// What is wrong.
        reason: &'static str,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Truncated {
                field,
                needed,
                left,
            } => write!(f, "truncated at {field}: needs {needed} bytes, {left} left"),
            FormatError::Version { found } => write!(
                f,
                "format version {found}, this node speaks version {FORMAT_VERSION}"
            ),
            FormatError::Tag { field, found } => write!(f, "unknown {field} tag {found}"),
            FormatError::Bound {
                field,
                found,
                min,
                max,
            } => write!(f, "{field} = {found}, outside {min}..={max}"),
            FormatError::Trailing { count } => write!(f, "{count} bytes after the last field"),
            FormatError::Invalid { reason } => write!(f, "{reason}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// A mutating command: the value a client proposes and every replica applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Opens a client session; the answer is [`Answer::Session`] with its id.
    OpenSession,
    /// A mutation, deduplicated within its session.
    Write {
        /// The session, or [`Session::NONE`] (no deduplication).
        session: Session,
        /// The mutation.
        op: WriteOp,
    },
}

/// Who sent a mutation, for exactly-once application: a session id from
/// [`Command::OpenSession`] and the sender's sequence number in it (1, 2, ...; one
/// outstanding command per session, a retry repeats its number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Session {
    /// The session id (0: none).
    pub id: u64,
    /// The command's sequence number in the session (0 exactly when `id` is 0).
    pub sequence: u64,
}

impl Session {
    /// No session: the command is applied each time it is chosen.
    pub const NONE: Session = Session { id: 0, sequence: 0 };
}

/// What a mutation does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Sets `key` to `value`; answers [`Answer::Done`].
    Put {
        /// The key.
        key: Bytes,
        /// Its new value.
        value: Bytes,
    },
    /// Removes `key`; answers [`Answer::Deleted`].
    Delete {
        /// The key.
        key: Bytes,
    },
    /// Sets `key` to `new` (removes it when `new` is `None`) only if its value is
    /// `expected` now (`None`: absent); answers [`Answer::Swapped`] or
    /// [`Answer::Mismatch`].
    Cas {
        /// The key.
        key: Bytes,
        /// The value the key must hold, or `None` for absent.
        expected: Option<Bytes>,
        /// The value it then holds, or `None` to remove it.
        new: Option<Bytes>,
    },
}

impl WriteOp {
    /// The key the mutation touches.
    #[must_use]
    pub fn key(&self) -> &Bytes {
        match self {
            WriteOp::Put { key, .. } | WriteOp::Delete { key } | WriteOp::Cas { key, .. } => key,
        }
    }
}

/// A read-only request, answered by `StateMachine::query` on the linearizable read
/// path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// The value of `key`; answers [`Answer::Value`].
    Get {
        /// The key.
        key: Bytes,
    },
    /// The entries with `start <= key < end` (`end` `None`: to the last key), in key
    /// order, at most `keys_max` of them and `size_max` bytes of keys and values (at
    /// least one entry when there is one); answers [`Answer::Scan`].
    Scan {
        /// The first key wanted (empty: from the first key).
        start: Bytes,
        /// The first key not wanted, if any.
        end: Option<Bytes>,
        /// Entries wanted at most (1..=[`SCAN_KEYS_MAX`]).
        keys_max: u32,
        /// Bytes wanted at most (1..=[`SCAN_SIZE_MAX`]).
        size_max: u32,
    },
}

/// Why a command or query was not carried out (nothing changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The bytes did not decode ([`FormatError`] in the reason).
    Malformed = 1,
    /// The session is unknown: never opened, or expired (the table keeps the
    /// [`SESSIONS_MAX`](super::SESSIONS_MAX) most recently used). A retried command's
    /// outcome is then unknown.
    SessionUnknown = 2,
    /// The sequence number is below the session's last applied one: an old retry
    /// whose answer is no longer kept (it was applied once, earlier).
    SequenceStale = 3,
    /// The put would take the group's keys and values past
    /// [`GROUP_DATA_SIZE_MAX`](super::GROUP_DATA_SIZE_MAX).
    Full = 4,
}

impl ErrorCode {
    fn from_byte(byte: u8) -> Result<ErrorCode, FormatError> {
        Ok(match byte {
            1 => ErrorCode::Malformed,
            2 => ErrorCode::SessionUnknown,
            3 => ErrorCode::SequenceStale,
            4 => ErrorCode::Full,
            found => {
                return Err(FormatError::Tag {
                    field: "error code",
                    found,
                })
            }
        })
    }
}

/// What a command or query returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A put was applied.
    Done,
    /// A delete was applied; whether the key existed.
    Deleted {
        /// Whether there was a value to remove.
        existed: bool,
    },
    /// A compare-and-set matched and was applied.
    Swapped,
    /// A compare-and-set did not match; nothing changed.
    Mismatch,
    /// A get's answer.
    Value(Option<Bytes>),
    /// A scan's answer: entries in key order, and the key to start the next page
    /// from when the scan stopped at its bounds before `end`.
    Scan {
        /// The entries.
        entries: Vec<(Bytes, Bytes)>,
        /// The first key not returned, when there are more.
        next: Option<Bytes>,
    },
    /// A session was opened.
    Session {
        /// Its id.
        id: u64,
    },
    /// Nothing was done.
    Error {
        /// Why.
        code: ErrorCode,
        /// Said in words (at most [`REASON_SIZE_MAX`] bytes).
        reason: String,
    },
}

const OP_OPEN_SESSION: u8 = 1;
const OP_PUT: u8 = 2;
const OP_DELETE: u8 = 3;
const OP_CAS: u8 = 4;
const QUERY_GET: u8 = 1;
const QUERY_SCAN: u8 = 2;
const ANSWER_DONE: u8 = 1;
const ANSWER_DELETED: u8 = 2;
const ANSWER_SWAPPED: u8 = 3;
const ANSWER_MISMATCH: u8 = 4;
const ANSWER_VALUE: u8 = 5;
const ANSWER_SCAN: u8 = 6;
const ANSWER_SESSION: u8 = 7;
const ANSWER_ERROR: u8 = 8;

// ---------------------------------------------------------------------------------------
// Writing.

/// Appends little-endian fields to a buffer.
pub(super) struct Writer(pub(super) Vec<u8>);

impl Writer {
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// A key or key bound: u16 length, bytes.
    pub(super) fn key(&mut self, key: &[u8]) {
        assert!(key.len() <= KEY_SIZE_MAX, "key of {} bytes", key.len());
        self.u16(key.len() as u16);
        self.0.extend_from_slice(key);
    }
    /// A value: u32 length, bytes.
    pub(super) fn value(&mut self, value: &[u8]) {
        let len = u32::try_from(value.len()).expect("a value's length fits u32");
        self.u32(len);
        self.0.extend_from_slice(value);
    }
    fn option(&mut self, value: Option<&Bytes>) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.value(value);
            }
        }
    }
}

impl Command {
    /// The command's bytes (the value to propose). Keys and values must be within
    /// [`KEY_SIZE_MAX`] and [`VALUE_SIZE_MAX`] (the decoder refuses them otherwise).
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut w = Writer(Vec::with_capacity(64));
        w.u8(FORMAT_VERSION);
        match self {
            Command::OpenSession => w.u8(OP_OPEN_SESSION),
            Command::Write { session, op } => {
                w.u8(match op {
                    WriteOp::Put { .. } => OP_PUT,
                    WriteOp::Delete { .. } => OP_DELETE,
                    WriteOp::Cas { .. } => OP_CAS,
                });
                w.u64(session.id);
                w.u64(session.sequence);
                w.key(op.key());
                match op {
                    WriteOp::Put { value, .. } => w.value(value),
                    WriteOp::Delete { .. } => {}
                    WriteOp::Cas { expected, new, .. } => {
                        w.option(expected.as_ref());
                        w.option(new.as_ref());
                    }
                }
            }
        }
        Bytes::from(w.0)
    }

    /// The command in `bytes`, fully validated.
    ///
    /// # Errors
    ///
    /// What is wrong with the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Command, FormatError> {
        let mut r = Reader::new(bytes);
        r.version()?;
        let op = r.u8("command op")?;
        if op == OP_OPEN_SESSION {
            r.end()?;
            return Ok(Command::OpenSession);
        }
        if !matches!(op, OP_PUT | OP_DELETE | OP_CAS) {
            return Err(FormatError::Tag {
                field: "command op",
                found: op,
            });
        }
        let session = Session {
            id: r.u64("session id")?,
            sequence: r.u64("session sequence")?,
        };
        if (session.id == 0) != (session.sequence == 0) {
            return Err(FormatError::Invalid {
                reason: "a session id needs a sequence number above 0, and no session none",
            });
        }
        let key = r.key("key", 1)?;
        let op = match op {
            OP_PUT => WriteOp::Put {
                key,
                value: r.value("value")?,
            },
            OP_DELETE => WriteOp::Delete { key },
            _ => WriteOp::Cas {
                key,
                expected: r.option("expected")?,
                new: r.option("new")?,
            },
        };
        r.end()?;
        Ok(Command::Write { session, op })
    }
}

impl Query {
    /// The query's bytes (what a read carries).
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut w = Writer(Vec::with_capacity(32));
        w.u8(FORMAT_VERSION);
        match self {
            Query::Get { key } => {
                w.u8(QUERY_GET);
                w.key(key);
            }
            Query::Scan {
                start,
                end,
                keys_max,
                size_max,
            } => {
                w.u8(QUERY_SCAN);
                w.key(start);
                match end {
                    None => w.u8(0),
                    Some(end) => {
                        w.u8(1);
                        w.key(end);
                    }
                }
                w.u32(*keys_max);
                w.u32(*size_max);
            }
        }
        Bytes::from(w.0)
    }

    /// The query in `bytes`, fully validated.
    ///
    /// # Errors
    ///
    /// What is wrong with the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Query, FormatError> {
        let mut r = Reader::new(bytes);
        r.version()?;
        let query = match r.u8("query op")? {
            QUERY_GET => Query::Get {
                key: r.key("key", 1)?,
            },
            QUERY_SCAN => {
                let start = r.key("scan start", 0)?;
                let end = match r.u8("scan end flag")? {
                    0 => None,
                    1 => Some(r.key("scan end", 0)?),
                    found => {
                        return Err(FormatError::Tag {
                            field: "scan end flag",
                            found,
                        })
                    }
                };
                let keys_max = r.u32("scan keys_max")?;
                bound(
                    "scan keys_max",
                    u64::from(keys_max),
                    1,
                    u64::from(SCAN_KEYS_MAX),
                )?;
                let size_max = r.u32("scan size_max")?;
                bound(
                    "scan size_max",
                    u64::from(size_max),
                    1,
                    u64::from(SCAN_SIZE_MAX),
                )?;
                Query::Scan {
                    start,
                    end,
                    keys_max,
                    size_max,
                }
            }
            found => {
                return Err(FormatError::Tag {
                    field: "query op",
                    found,
                })
            }
        };
        r.end()?;
        Ok(query)
    }
}

impl Answer {
    /// An error answer; `reason` is cut to [`REASON_SIZE_MAX`] bytes (at a character
    /// boundary).
    #[must_use]
    pub fn error(code: ErrorCode, reason: impl Into<String>) -> Answer {
        let mut reason = reason.into();
        if reason.len() > REASON_SIZE_MAX {
            let mut cut = REASON_SIZE_MAX;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        Answer::Error { code, reason }
    }

    /// The answer's bytes.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut w = Writer(Vec::with_capacity(16));
        w.u8(FORMAT_VERSION);
        match self {
            Answer::Done => w.u8(ANSWER_DONE),
            Answer::Deleted { existed } => {
                w.u8(ANSWER_DELETED);
                w.u8(u8::from(*existed));
            }
            Answer::Swapped => w.u8(ANSWER_SWAPPED),
            Answer::Mismatch => w.u8(ANSWER_MISMATCH),
            Answer::Value(value) => {
                w.u8(ANSWER_VALUE);
                w.option(value.as_ref());
            }
            Answer::Scan { entries, next } => {
                w.u8(ANSWER_SCAN);
                let count = u32::try_from(entries.len()).expect("at most SCAN_KEYS_MAX entries");
                w.u32(count);
                for (key, value) in entries {
                    w.key(key);
                    w.value(value);
                }
                match next {
                    None => w.u8(0),
                    Some(next) => {
                        w.u8(1);
                        w.key(next);
                    }
                }
            }
            Answer::Session { id } => {
                w.u8(ANSWER_SESSION);
                w.u64(*id);
            }
            Answer::Error { code, reason } => {
                w.u8(ANSWER_ERROR);
                w.u8(*code as u8);
                w.key(reason.as_bytes());
            }
        }
        Bytes::from(w.0)
    }

    /// The answer in `bytes`, fully validated.
    ///
    /// # Errors
    ///
    /// What is wrong with the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Answer, FormatError> {
        let mut r = Reader::new(bytes);
        r.version()?;
        let answer = match r.u8("answer kind")? {
            ANSWER_DONE => Answer::Done,
            ANSWER_DELETED => Answer::Deleted {
                existed: r.flag("existed")?,
            },
            ANSWER_SWAPPED => Answer::Swapped,
            ANSWER_MISMATCH => Answer::Mismatch,
            ANSWER_VALUE => Answer::Value(r.option("value")?),
            ANSWER_SCAN => {
                let count = r.u32("scan count")?;
                bound("scan count", u64::from(count), 0, u64::from(SCAN_KEYS_MAX))?;
                // Each entry takes at least 7 bytes: a count beyond the bytes left is
                // refused before anything is allocated for it.
                let left = r.left() as u64;
                bound("scan count", u64::from(count), 0, left / 7)?;
                let mut entries = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    entries.push((r.key("scan key", 1)?, r.value("scan value")?));
                }
                let next = if r.flag("scan next flag")? {
                    Some(r.key("scan next", 1)?)
                } else {
                    None
                };
                Answer::Scan { entries, next }
            }
            ANSWER_SESSION => Answer::Session {
                id: r.u64("session id")?,
            },
            ANSWER_ERROR => {
                let code = ErrorCode::from_byte(r.u8("error code")?)?;
                let reason = r.key("error reason", 0)?;
                if reason.len() > REASON_SIZE_MAX {
                    return Err(FormatError::Bound {
                        field: "error reason",
                        found: reason.len() as u64,
                        min: 0,
                        max: REASON_SIZE_MAX as u64,
                    });
                }
                Answer::Error {
                    code,
                    reason: String::from_utf8_lossy(&reason).into_owned(),
                }
            }
            found => {
                return Err(FormatError::Tag {
                    field: "answer kind",
                    found,
                })
            }
        };
        r.end()?;
        Ok(answer)
    }
}

// ---------------------------------------------------------------------------------------
// Reading.

fn bound(field: &'static str, found: u64, min: u64, max: u64) -> Result<(), FormatError> {
    if found < min || found > max {
        return Err(FormatError::Bound {
            field,
            found,
            min,
            max,
        });
    }
    Ok(())
}

/// Reads little-endian fields from the front of a slice, checking every length.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub(super) fn left(&self) -> usize {
        self.bytes.len()
    }

    pub(super) fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], FormatError> {
        if self.bytes.len() < n {
            return Err(FormatError::Truncated {
                field,
                needed: n,
                left: self.bytes.len(),
            });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FormatError> {
        let mut out = [0_u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(field)?[0])
    }
    pub(super) fn u16(&mut self, field: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    pub(super) fn u64(&mut self, field: &'static str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    fn flag(&mut self, field: &'static str) -> Result<bool, FormatError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            found => Err(FormatError::Tag { field, found }),
        }
    }

    fn version(&mut self) -> Result<(), FormatError> {
        match self.u8("version")? {
            FORMAT_VERSION => Ok(()),
            found => Err(FormatError::Version { found }),
        }
    }

    /// A key (or key bound): u16 length in `min..=KEY_SIZE_MAX`, then the bytes.
    pub(super) fn key(&mut self, field: &'static str, min: usize) -> Result<Bytes, FormatError> {
        let len = usize::from(self.u16(field)?);
        bound(field, len as u64, min as u64, KEY_SIZE_MAX as u64)?;
        Ok(Bytes::copy_from_slice(self.take(field, len)?))
    }

    /// A value: u32 length up to `VALUE_SIZE_MAX`, then the bytes.
    pub(super) fn value(&mut self, field: &'static str) -> Result<Bytes, FormatError> {
        let len = self.u32(field)? as usize;
        bound(field, len as u64, 0, VALUE_SIZE_MAX as u64)?;
        Ok(Bytes::copy_from_slice(self.take(field, len)?))
    }

    fn option(&mut self, field: &'static str) -> Result<Option<Bytes>, FormatError> {
        if self.flag(field)? {
            self.value(field).map(Some)
        } else {
            Ok(None)
        }
    }

    pub(super) fn end(&self) -> Result<(), FormatError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(FormatError::Trailing {
                count: self.bytes.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn samples() -> (Vec<Command>, Vec<Query>, Vec<Answer>) {
        let s = Session { id: 7, sequence: 3 };
        let commands = vec![
            Command::OpenSession,
            Command::Write {
                session: s,
                op: WriteOp::Put {
                    key: b("k"),
                    value: b("v"),
                },
            },
            Command::Write {
                session: Session::NONE,
                op: WriteOp::Delete { key: b("k") },
            },
            Command::Write {
                session: s,
                op: WriteOp::Cas {
                    key: b("k"),
                    expected: None,
                    new: Some(Bytes::new()),
                },
            },
        ];
        let queries = vec![
            Query::Get { key: b("k") },
            Query::Scan {
                start: Bytes::new(),
                end: Some(b("z")),
                keys_max: 10,
                size_max: 100,
            },
        ];
        let answers = vec![
            Answer::Done,
            Answer::Deleted { existed: true },
            Answer::Swapped,
            Answer::Mismatch,
            Answer::Value(None),
            Answer::Value(Some(b("v"))),
            Answer::Scan {
                entries: vec![(b("a"), b("1")), (b("b"), Bytes::new())],
                next: Some(b("c")),
            },
            Answer::Session { id: 9 },
            Answer::error(ErrorCode::Full, "full"),
        ];
        (commands, queries, answers)
    }

    // Goal: every kind round-trips, and every strict prefix and every one-byte
    // extension of an encoding is refused (no field is read past its bytes, no
    // trailing byte is ignored).
    // Method: encode samples of each kind; decode them whole, cut and extended.
    #[test]
    fn round_trip_and_refuse_cut_or_extended_bytes() {
        let (commands, queries, answers) = samples();
        fn check<T: PartialEq + fmt::Debug>(
            x: &T,
            bytes: &Bytes,
            decode: fn(&[u8]) -> Result<T, FormatError>,
        ) {
            assert_eq!(&decode(bytes).expect("decodes"), x);
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "{x:?} cut at {cut}");
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert_eq!(decode(&longer), Err(FormatError::Trailing { count: 1 }));
        }
        for c in &commands {
            check(c, &c.encode(), Command::decode);
        }
        for q in &queries {
            check(q, &q.encode(), Query::decode);
        }
        for a in &answers {
            check(a, &a.encode(), Answer::decode);
        }
    }

    // Goal: bounds and contradictions are refused with a typed error: a wrong version,
    // an unknown op, an empty or oversized key, an oversized value, a session id with
    // sequence 0, a scan asking for zero or too many keys, a huge scan count.
    // Method: hand-built byte strings.
    #[test]
    fn refuse_out_of_bounds_fields() {
        assert_eq!(
            Command::decode(&[2, OP_OPEN_SESSION]),
            Err(FormatError::Version { found: 2 })
        );
        assert!(matches!(
            Command::decode(&[1, 99]),
            Err(FormatError::Tag { .. })
        ));
        let mut put = vec![1, OP_PUT];
        put.extend_from_slice(&[0; 16]);
        put.extend_from_slice(&0u16.to_le_bytes());
        assert!(matches!(
            Command::decode(&put),
            Err(FormatError::Bound { field: "key", .. })
        ));
        let mut big_key = vec![1, OP_DELETE];
        big_key.extend_from_slice(&[0; 16]);
        big_key.extend_from_slice(&((KEY_SIZE_MAX + 1) as u16).to_le_bytes());
        big_key.extend(std::iter::repeat_n(b'k', KEY_SIZE_MAX + 1));
        assert!(matches!(
            Command::decode(&big_key),
            Err(FormatError::Bound { field: "key", .. })
        ));
        let mut big_value = vec![1, OP_PUT];
        big_value.extend_from_slice(&[0; 16]);
        big_value.extend_from_slice(&1u16.to_le_bytes());
        big_value.push(b'k');
        big_value.extend_from_slice(&((VALUE_SIZE_MAX + 1) as u32).to_le_bytes());
        assert!(matches!(
            Command::decode(&big_value),
            Err(FormatError::Bound { field: "value", .. })
        ));
        let mut half_session = vec![1, OP_DELETE];
        half_session.extend_from_slice(&5u64.to_le_bytes());
        half_session.extend_from_slice(&0u64.to_le_bytes());
        half_session.extend_from_slice(&1u16.to_le_bytes());
        half_session.push(b'k');
        assert!(matches!(
            Command::decode(&half_session),
            Err(FormatError::Invalid { .. })
        ));
        for keys_max in [0, SCAN_KEYS_MAX + 1] {
            let scan = Query::Scan {
                start: Bytes::new(),
                end: None,
                keys_max,
                size_max: 1,
            };
            assert!(matches!(
                Query::decode(&scan.encode()),
                Err(FormatError::Bound { .. })
            ));
        }
        let mut scan = vec![1, ANSWER_SCAN];
        scan.extend_from_slice(&SCAN_KEYS_MAX.to_le_bytes());
        scan.push(0);
        assert!(matches!(
            Answer::decode(&scan),
            Err(FormatError::Bound { .. })
        ));
    }

    // Goal: a long error reason is cut at a character boundary within the bound, and
    // still decodes.
    // Method: a reason of 600 two-byte characters.
    #[test]
    fn long_reasons_are_cut() {
        let answer = Answer::error(ErrorCode::Malformed, "é".repeat(600));
        let Answer::Error { reason, .. } = &answer else {
            unreachable!("error() builds an Error")
        };
        assert!(reason.len() <= REASON_SIZE_MAX && reason.len() >= REASON_SIZE_MAX - 1);
        assert_eq!(Answer::decode(&answer.encode()), Ok(answer));
    }
}
