//! The checkpoint image of a [`KvMachine`](super::KvMachine): the whole map and
//! session table of one group, with its own CRC32C, version [`IMAGE_VERSION`].
//!
//! Layout (little-endian; keys and values as in the command format):
//!
//! ```text
//! magic "synod-kv" (8 bytes) | version u8 | tick u64 | next_session u64
//! | session_count u32 | entry_count u64
//! | session_count × (id u64, sequence u64, last_used u64, answer_size u32, answer)
//! | entry_count × (key, value)
//! | crc32c u32 (of every byte before it)
//! ```
//!
//! Invariant: [`decode`] accepts exactly what [`encode`] can produce from a state
//! that holds the machine's invariants: it checks the checksum first, then every
//! count against the bytes left and the bounds ([`SESSIONS_MAX`],
//! [`GROUP_DATA_SIZE_MAX`], key and value sizes), sessions in ascending id order below
//! `next_session` with distinct `last_used` ticks at most `tick`, stored answers that
//! decode, keys strictly ascending, and no trailing byte.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;

use super::format::{Answer, FormatError, Reader, Writer};
use super::{GROUP_DATA_SIZE_MAX, SESSIONS_MAX};

/// The image format's version.
pub const IMAGE_VERSION: u8 = 1;
/// The image's first bytes.
pub const IMAGE_MAGIC: [u8; 8] = *b"synod-kv";
/// Largest stored answer in a session entry (answers to writes are small).
const ANSWER_SIZE_MAX: usize = 1024;
const CRC_SIZE: usize = 4;

/// What a session remembers: its last applied sequence number and that command's
/// answer, and when (by the log's tick) it was last used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SessionEntry {
    pub(super) sequence: u64,
    pub(super) last_used: u64,
    /// The encoded answer of `sequence` (empty while `sequence` is 0).
    pub(super) answer: Bytes,
}

/// A machine's state, as the image holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Image {
    pub(super) tick: u64,
    pub(super) next_session: u64,
    pub(super) sessions: BTreeMap<u64, SessionEntry>,
    pub(super) entries: Arc<BTreeMap<Bytes, Bytes>>,
}

/// The image's bytes.
pub(super) fn encode(image: &Image) -> Bytes {
    let size: usize = image
        .entries
        .iter()
        .map(|(k, v)| 6 + k.len() + v.len())
        .sum();
    let mut w = Writer(Vec::with_capacity(64 + size + image.sessions.len() * 40));
    w.0.extend_from_slice(&IMAGE_MAGIC);
    w.u8(IMAGE_VERSION);
    w.u64(image.tick);
    w.u64(image.next_session);
    w.u32(u32::try_from(image.sessions.len()).expect("at most SESSIONS_MAX sessions"));
    w.u64(image.entries.len() as u64);
    for (id, session) in &image.sessions {
        w.u64(*id);
        w.u64(session.sequence);
        w.u64(session.last_used);
        w.value(&session.answer);
    }
    for (key, value) in image.entries.iter() {
        w.key(key);
        w.value(value);
    }
    let crc = crc32c::crc32c(&w.0);
    w.u32(crc);
    Bytes::from(w.0)
}

/// Why an image is refused.
fn damaged(reason: impl std::fmt::Display) -> String {
    format!("damaged image: {reason}")
}

/// The image in `bytes`, verified (see the module docs).
///
/// # Errors
///
/// What is wrong: length, checksum, magic, version, a bound or an order.
pub(super) fn decode(bytes: &[u8]) -> Result<Image, String> {
    if bytes.len() < IMAGE_MAGIC.len() + 1 + 8 + 8 + 4 + 8 + CRC_SIZE {
        return Err(damaged(format!(
            "{} bytes, shorter than a header",
            bytes.len()
        )));
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC_SIZE);
    let stored = u32::from_le_bytes(crc.try_into().expect("CRC_SIZE bytes"));
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(damaged(format!(
            "CRC32C {computed:#010x} over {} bytes, {stored:#010x} stored",
            body.len()
        )));
    }
    let mut r = Reader::new(body);
    let field = |e: FormatError| damaged(e);
    if r.take("magic", IMAGE_MAGIC.len()).map_err(field)? != IMAGE_MAGIC {
        return Err(damaged("not a key-value image (magic)"));
    }
    let version = r.u8("version").map_err(field)?;
    if version != IMAGE_VERSION {
        return Err(damaged(format!(
            "image version {version}, this node reads version {IMAGE_VERSION}"
        )));
    }
    let tick = r.u64("tick").map_err(field)?;
    let next_session = r.u64("next_session").map_err(field)?;
    let session_count = r.u32("session_count").map_err(field)? as usize;
    let entry_count = r.u64("entry_count").map_err(field)?;
    if session_count > SESSIONS_MAX {
        return Err(damaged(format!(
            "{session_count} sessions, above {SESSIONS_MAX}"
        )));
    }
    let sessions = sessions(&mut r, session_count, tick, next_session)?;
    // Each entry takes at least 7 bytes (a 1-byte key, its u16 length, a u32 value
    // length): a count beyond what the bytes can hold is refused before any work.
    if entry_count > (r.left() / 7) as u64 {
        return Err(damaged(format!(
            "{entry_count} entries in {} bytes",
            r.left()
        )));
    }
    let mut entries = BTreeMap::new();
    let mut data_size = 0_u64;
    let mut last: Option<Bytes> = None;
    for _ in 0..entry_count {
        let key = r.key("entry key", 1).map_err(field)?;
        let value = r.value("entry value").map_err(field)?;
        if last.as_ref().is_some_and(|last| *last >= key) {
            return Err(damaged("entry keys not strictly ascending"));
        }
        data_size += (key.len() + value.len()) as u64;
        last = Some(key.clone());
        entries.insert(key, value);
    }
    if data_size > GROUP_DATA_SIZE_MAX {
        return Err(damaged(format!(
            "{data_size} bytes of data, above {GROUP_DATA_SIZE_MAX}"
        )));
    }
    r.end().map_err(field)?;
    Ok(Image {
        tick,
        next_session,
        sessions,
        entries: Arc::new(entries),
    })
}

/// The session table of an image, verified.
fn sessions(
    r: &mut Reader<'_>,
    count: usize,
    tick: u64,
    next_session: u64,
) -> Result<BTreeMap<u64, SessionEntry>, String> {
    let field = |e: FormatError| damaged(e);
    let mut sessions = BTreeMap::new();
    let mut ticks = BTreeSet::new();
    for _ in 0..count {
        let id = r.u64("session id").map_err(field)?;
        let sequence = r.u64("session sequence").map_err(field)?;
        let last_used = r.u64("session last_used").map_err(field)?;
        let size = r.u32("session answer").map_err(field)? as usize;
        if size > ANSWER_SIZE_MAX {
            return Err(damaged(format!("a stored answer of {size} bytes")));
        }
        let answer = Bytes::copy_from_slice(r.take("session answer", size).map_err(field)?);
        if sessions
            .last_key_value()
            .is_some_and(|(last, _)| *last >= id)
        {
            return Err(damaged("session ids not strictly ascending"));
        }
        if id == 0 || id >= next_session || last_used > tick || !ticks.insert(last_used) {
            return Err(damaged(format!(
                "session {id} (last used at {last_used}) against next id {next_session}, tick {tick}"
            )));
        }
        if (sequence == 0) != answer.is_empty() {
            return Err(damaged(format!(
                "session {id}: sequence {sequence} with a {size}-byte answer"
            )));
        }
        if sequence > 0 {
            Answer::decode(&answer).map_err(|e| damaged(format!("session {id}'s answer: {e}")))?;
        }
        sessions.insert(
            id,
            SessionEntry {
                sequence,
                last_used,
                answer,
            },
        );
    }
    Ok(sessions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::StateMachine;
    use crate::kv::format::{Command, Query, Session, WriteOp};
    use crate::kv::KvMachine;
    use crate::paxos::Instance;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// A machine with keys, sessions and a stored answer.
    fn sample() -> KvMachine {
        let mut m = KvMachine::new();
        for i in 0..50 {
            let command = Command::Write {
                session: Session::NONE,
                op: WriteOp::Put {
                    key: b(&format!("key{i:03}")),
                    value: b(&"v".repeat(i)),
                },
            };
            m.apply_command(&command.encode());
        }
        for _ in 0..3 {
            m.apply_command(&Command::OpenSession.encode());
        }
        let write = Command::Write {
            session: Session { id: 2, sequence: 1 },
            op: WriteOp::Cas {
                key: b("key001"),
                expected: Some(b("v")),
                new: Some(b("w")),
            },
        };
        m.apply_command(&write.encode());
        m
    }

    fn export(m: &KvMachine) -> Bytes {
        m.checkpoint()
            .expect("the machine checkpoints")
            .into_bytes()
    }

    // Goal: a restored machine equals the one that took the image: same map, same
    // sessions (a retry is still deduplicated after the restore), same tick.
    // Method: checkpoint a sample, restore into a fresh machine, compare images and
    // behaviour.
    #[test]
    fn restore_reproduces_the_state() {
        let m = sample();
        let bytes = export(&m);
        let mut restored = KvMachine::new();
        restored.restore(Instance(9), &bytes).expect("restores");
        restored.invariants();
        assert_eq!(export(&restored), bytes);
        let retry = Command::Write {
            session: Session { id: 2, sequence: 1 },
            op: WriteOp::Cas {
                key: b("key001"),
                expected: Some(b("v")),
                new: Some(b("w")),
            },
        };
        assert_eq!(restored.apply_command(&retry.encode()), Answer::Swapped);
        let get = Query::Get { key: b("key001") }.encode();
        assert_eq!(restored.answer_query(&get), Answer::Value(Some(b("w"))));
    }

    // Goal: a checkpoint holds the state at the moment it was taken, even when the
    // machine changes before the deferred export runs.
    // Method: take the image, apply more, then export; restore and compare.
    #[test]
    fn deferred_image_is_the_state_when_taken() {
        let mut m = sample();
        let before = export(&m);
        let image = m.checkpoint().expect("the machine checkpoints");
        let delete = Command::Write {
            session: Session::NONE,
            op: WriteOp::Delete { key: b("key000") },
        };
        m.apply_command(&delete.encode());
        assert_eq!(image.into_bytes(), before);
    }

    // Goal: a damaged image is refused with a reason, never installed and never a
    // panic: every single bit flipped, every truncation, and a valid CRC over
    // contents that break an invariant.
    // Method: flip each bit of a small image; cut it at each length; re-seal a
    // modified body with a fresh CRC.
    #[test]
    fn damaged_images_are_refused() {
        let bytes = export(&sample()).to_vec();
        for i in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                KvMachine::new().restore(Instance(1), &bad).is_err(),
                "bit {i}"
            );
        }
        for cut in 0..bytes.len() {
            assert!(KvMachine::new()
                .restore(Instance(1), &bytes[..cut])
                .is_err());
        }
        let reseal = |mut body: Vec<u8>| {
            let crc = crc32c::crc32c(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            body
        };
        let body = bytes[..bytes.len() - CRC_SIZE].to_vec();
        let mut version = body.clone();
        version[8] = 2;
        let error = KvMachine::new()
            .restore(Instance(1), &reseal(version))
            .expect_err("version 2");
        assert!(error.contains("version 2"), "{error}");
        // next_session (bytes 17..25) below the sessions' ids.
        let mut next = body.clone();
        next[17..25].copy_from_slice(&1u64.to_le_bytes());
        assert!(KvMachine::new()
            .restore(Instance(1), &reseal(next))
            .is_err());
        // A huge entry count is refused without allocating for it.
        let mut count = body.clone();
        count[29..37].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(KvMachine::new()
            .restore(Instance(1), &reseal(count))
            .is_err());
        let mut longer = body;
        longer.push(0);
        assert!(KvMachine::new()
            .restore(Instance(1), &reseal(longer))
            .is_err());
    }
}
