//! [`KvMachine`]: one group's map and session table, applied in log order.
//!
//! Invariants (checked by `invariants`, after every apply in tests): `data_size` is
//! the sum of the lengths of every key and value and at most `GROUP_DATA_SIZE_MAX`;
//! the session table and its recency index hold the same sessions, at most
//! `SESSIONS_MAX`, each last used at a distinct tick below `tick`, each id below
//! `next_session`.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use super::format::{Answer, Command, ErrorCode, Query, Session, WriteOp};
use super::image::{self, Image, SessionEntry};
use super::{GROUP_DATA_SIZE_MAX, SESSIONS_MAX};
use crate::api::{CheckpointImage, StateMachine};
use crate::paxos::Instance;

/// One group's key-value state machine (see the module docs of `synod::kv`).
#[derive(Debug, Default)]
pub struct KvMachine {
    /// The map. Shared with a checkpoint's export while it runs (copy on write: a
    /// mutation during an export copies the map once).
    entries: Arc<BTreeMap<Bytes, Bytes>>,
    /// Sum of the lengths of every key and value.
    data_size: u64,
    /// Values applied so far (the log's clock for session recency).
    tick: u64,
    /// The id the next opened session gets.
    next_session: u64,
    /// Sessions by id.
    sessions: BTreeMap<u64, SessionEntry>,
    /// Session ids by the tick of their last use (oldest first).
    recency: BTreeMap<u64, u64>,
}

impl KvMachine {
    /// An empty store.
    #[must_use]
    pub fn new() -> KvMachine {
        KvMachine {
            next_session: 1,
            ..KvMachine::default()
        }
    }

    /// How many keys the store holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store holds no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many sessions the table holds.
    #[must_use]
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Applies the command in `value` and returns its answer (a pure function of the
    /// state and the value: the same on every replica).
    pub fn apply_command(&mut self, value: &[u8]) -> Answer {
        self.tick += 1;
        let command = match Command::decode(value) {
            Ok(command) => command,
            Err(error) => return Answer::error(ErrorCode::Malformed, error.to_string()),
        };
        match command {
            Command::OpenSession => self.open_session(),
            Command::Write { session, op } if session == Session::NONE => self.write(&op),
            Command::Write { session, op } => self.write_in_session(session, &op),
        }
    }

    fn open_session(&mut self) -> Answer {
        let id = self.next_session;
        self.next_session += 1;
        if self.sessions.len() == SESSIONS_MAX {
            let (_, oldest) = self
                .recency
                .pop_first()
                .expect("a full session table has a least recent session");
            self.sessions.remove(&oldest);
        }
        self.sessions.insert(
            id,
            SessionEntry {
                sequence: 0,
                last_used: self.tick,
                answer: Bytes::new(),
            },
        );
        self.recency.insert(self.tick, id);
        Answer::Session { id }
    }

    fn write_in_session(&mut self, session: Session, op: &WriteOp) -> Answer {
        let Some(entry) = self.sessions.get_mut(&session.id) else {
            return Answer::error(
                ErrorCode::SessionUnknown,
                format!(
                    "session {} is unknown or expired (next id {}): open a new one",
                    session.id, self.next_session
                ),
            );
        };
        if session.sequence < entry.sequence {
            return Answer::error(
                ErrorCode::SequenceStale,
                format!(
                    "sequence {} of session {} is below its last applied {}",
                    session.sequence, session.id, entry.sequence
                ),
            );
        }
        self.recency.remove(&entry.last_used);
        entry.last_used = self.tick;
        self.recency.insert(self.tick, session.id);
        if session.sequence == entry.sequence {
            // A retry of the last applied command: its answer, and no second effect.
            return Answer::decode(&entry.answer)
                .expect("a stored answer was encoded by this machine");
        }
        let answer = self.write(op);
        let entry = self
            .sessions
            .get_mut(&session.id)
            .expect("the session was found above");
        entry.sequence = session.sequence;
        entry.answer = answer.encode();
        answer
    }

    fn write(&mut self, op: &WriteOp) -> Answer {
        match op {
            WriteOp::Put { key, value } => self.put(key, value),
            WriteOp::Delete { key } => Answer::Deleted {
                existed: self.remove(key),
            },
            WriteOp::Cas { key, expected, new } => {
                if self.entries.get(key) != expected.as_ref() {
                    return Answer::Mismatch;
                }
                match new {
                    Some(new) => match self.put(key, new) {
                        Answer::Done => Answer::Swapped,
                        other => other,
                    },
                    None => {
                        self.remove(key);
                        Answer::Swapped
                    }
                }
            }
        }
    }

    fn put(&mut self, key: &Bytes, value: &Bytes) -> Answer {
        let old = self
            .entries
            .get(key)
            .map_or(0, |old| (key.len() + old.len()) as u64);
        let new = (key.len() + value.len()) as u64;
        let size = self.data_size - old + new;
        if size > GROUP_DATA_SIZE_MAX {
            return Answer::error(
                ErrorCode::Full,
                format!(
                    "the group holds {} bytes; this put would make it {size}, above {GROUP_DATA_SIZE_MAX}",
                    self.data_size
                ),
            );
        }
        Arc::make_mut(&mut self.entries).insert(key.clone(), value.clone());
        self.data_size = size;
        Answer::Done
    }

    fn remove(&mut self, key: &Bytes) -> bool {
        if !self.entries.contains_key(key) {
            return false;
        }
        let old = Arc::make_mut(&mut self.entries)
            .remove(key)
            .expect("the key is present");
        self.data_size -= (key.len() + old.len()) as u64;
        true
    }

    /// Answers the query in `bytes` against the current state.
    #[must_use]
    pub fn answer_query(&self, bytes: &[u8]) -> Answer {
        match Query::decode(bytes) {
            Err(error) => Answer::error(ErrorCode::Malformed, error.to_string()),
            Ok(Query::Get { key }) => Answer::Value(self.entries.get(&key).cloned()),
            Ok(Query::Scan {
                start,
                end,
                keys_max,
                size_max,
            }) => self.scan(&start, end.as_ref(), keys_max, size_max),
        }
    }

    fn scan(&self, start: &Bytes, end: Option<&Bytes>, keys_max: u32, size_max: u32) -> Answer {
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let mut range = self
            .entries
            .range::<Bytes, _>((Bound::Included(start), upper))
            .peekable();
        let mut entries = Vec::new();
        let mut size = 0_u64;
        while let Some((key, value)) = range.peek() {
            let entry_size = (key.len() + value.len()) as u64;
            let full = entries.len() >= keys_max as usize
                || (!entries.is_empty() && size + entry_size > u64::from(size_max));
            if full {
                break;
            }
            size += entry_size;
            entries.push(((*key).clone(), (*value).clone()));
            range.next();
        }
        let next = range.next().map(|(key, _)| key.clone());
        Answer::Scan { entries, next }
    }

    /// The state as a checkpoint image's parts (the map shared, not copied).
    fn image(&self) -> Image {
        Image {
            tick: self.tick,
            next_session: self.next_session,
            sessions: self.sessions.clone(),
            entries: Arc::clone(&self.entries),
        }
    }

    /// Replaces the state by a decoded image.
    fn install(&mut self, image: Image) {
        let data_size = image
            .entries
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        self.recency = image
            .sessions
            .iter()
            .map(|(id, s)| (s.last_used, *id))
            .collect();
        self.entries = image.entries;
        self.data_size = data_size;
        self.tick = image.tick;
        self.next_session = image.next_session;
        self.sessions = image.sessions;
    }

    /// Checks the invariants of the module docs.
    ///
    /// # Panics
    ///
    /// When one does not hold.
    pub fn invariants(&self) {
        let size: u64 = self
            .entries
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        assert_eq!(size, self.data_size);
        assert!(self.data_size <= GROUP_DATA_SIZE_MAX);
        assert!(self.sessions.len() <= SESSIONS_MAX);
        assert_eq!(self.sessions.len(), self.recency.len());
        for (tick, id) in &self.recency {
            assert_eq!(self.sessions[id].last_used, *tick);
            assert!(*tick <= self.tick && *id < self.next_session);
        }
    }
}

impl StateMachine for KvMachine {
    fn apply(&mut self, _: Instance, value: &[u8]) -> Bytes {
        self.apply_command(value).encode()
    }

    fn query(&self, query: &[u8]) -> Bytes {
        self.answer_query(query).encode()
    }

    fn checkpoint(&self) -> Option<CheckpointImage> {
        // The map is shared with the export (cheap here); the sessions are copied
        // (at most SESSIONS_MAX small entries). The bytes are made off this thread.
        let image = self.image();
        Some(CheckpointImage::deferred(move || image::encode(&image)))
    }

    fn restore(&mut self, instance: Instance, bytes: &[u8]) -> Result<(), String> {
        let image = image::decode(bytes)
            .map_err(|e| format!("key-value image at instance {}: {e}", instance.0))?;
        self.install(image);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn put(session: Session, key: &str, value: &str) -> Bytes {
        Command::Write {
            session,
            op: WriteOp::Put {
                key: b(key),
                value: b(value),
            },
        }
        .encode()
    }

    fn cas(session: Session, key: &str, expected: Option<&str>, new: Option<&str>) -> Bytes {
        Command::Write {
            session,
            op: WriteOp::Cas {
                key: b(key),
                expected: expected.map(b),
                new: new.map(b),
            },
        }
        .encode()
    }

    fn get(m: &KvMachine, key: &str) -> Option<Bytes> {
        match m.answer_query(&Query::Get { key: b(key) }.encode()) {
            Answer::Value(v) => v,
            other => panic!("get answered {other:?}"),
        }
    }

    fn open(m: &mut KvMachine) -> u64 {
        match m.apply_command(&Command::OpenSession.encode()) {
            Answer::Session { id } => id,
            other => panic!("open answered {other:?}"),
        }
    }

    // Goal: put, get, delete and compare-and-set do what they say; a malformed
    // command changes nothing and says why.
    // Method: a sequence of commands without sessions, checking answers and state.
    #[test]
    fn operations() {
        let mut m = KvMachine::new();
        let none = Session::NONE;
        assert_eq!(m.apply_command(&put(none, "a", "1")), Answer::Done);
        assert_eq!(get(&m, "a"), Some(b("1")));
        assert_eq!(get(&m, "b"), None);
        assert_eq!(
            m.apply_command(&cas(none, "a", Some("2"), Some("3"))),
            Answer::Mismatch
        );
        assert_eq!(
            m.apply_command(&cas(none, "a", Some("1"), Some("3"))),
            Answer::Swapped
        );
        assert_eq!(
            m.apply_command(&cas(none, "b", None, Some("x"))),
            Answer::Swapped
        );
        assert_eq!(
            m.apply_command(&cas(none, "b", Some("x"), None)),
            Answer::Swapped
        );
        assert_eq!(get(&m, "a"), Some(b("3")));
        assert_eq!(get(&m, "b"), None);
        let delete = |key: &str| {
            Command::Write {
                session: none,
                op: WriteOp::Delete { key: b(key) },
            }
            .encode()
        };
        assert_eq!(
            m.apply_command(&delete("a")),
            Answer::Deleted { existed: true }
        );
        assert_eq!(
            m.apply_command(&delete("a")),
            Answer::Deleted { existed: false }
        );
        assert!(m.is_empty());
        let Answer::Error { code, reason } = m.apply_command(b"\x01\x02garbage") else {
            panic!("garbage applied")
        };
        assert_eq!(code, ErrorCode::Malformed);
        assert!(reason.contains("truncated"), "{reason}");
        assert!(matches!(
            m.answer_query(b""),
            Answer::Error {
                code: ErrorCode::Malformed,
                ..
            }
        ));
        m.invariants();
    }

    // Goal: a retried command (same session and sequence) is applied once and gets
    // the first answer again; an older sequence is refused as stale; an unknown
    // session is refused; nothing of a refused command is applied.
    // Method: an increment by compare-and-set, applied twice, then a stale and an
    // unknown-session command.
    #[test]
    fn retried_command_is_applied_once() {
        let mut m = KvMachine::new();
        let id = open(&mut m);
        let s1 = Session { id, sequence: 1 };
        let first = cas(s1, "counter", None, Some("1"));
        assert_eq!(m.apply_command(&first), Answer::Swapped);
        // The retry: the counter is "1" now, so a second effect would answer Mismatch.
        assert_eq!(m.apply_command(&first), Answer::Swapped);
        assert_eq!(get(&m, "counter"), Some(b("1")));
        let s2 = Session { id, sequence: 2 };
        assert_eq!(m.apply_command(&put(s2, "x", "a")), Answer::Done);
        assert_eq!(m.apply_command(&put(s2, "x", "b")), Answer::Done);
        assert_eq!(
            get(&m, "x"),
            Some(b("a")),
            "the retry's value was not applied"
        );
        assert!(matches!(
            m.apply_command(&put(s1, "x", "c")),
            Answer::Error {
                code: ErrorCode::SequenceStale,
                ..
            }
        ));
        let unknown = Session {
            id: id + 100,
            sequence: 1,
        };
        assert!(matches!(
            m.apply_command(&put(unknown, "x", "d")),
            Answer::Error {
                code: ErrorCode::SessionUnknown,
                ..
            }
        ));
        assert_eq!(get(&m, "x"), Some(b("a")));
        m.invariants();
    }

    // Goal: the session table is bounded and expires the least recently used session
    // (by log order), not the oldest opened.
    // Method: open SESSIONS_MAX sessions, use the first, open one more: the second
    // expires, the first stays.
    #[test]
    fn sessions_expire_least_recently_used() {
        let mut m = KvMachine::new();
        let ids: Vec<u64> = (0..SESSIONS_MAX).map(|_| open(&mut m)).collect();
        let first = Session {
            id: ids[0],
            sequence: 1,
        };
        assert_eq!(m.apply_command(&put(first, "k", "v")), Answer::Done);
        open(&mut m);
        assert_eq!(m.session_count(), SESSIONS_MAX);
        let second = Session {
            id: ids[1],
            sequence: 1,
        };
        assert!(matches!(
            m.apply_command(&put(second, "k", "w")),
            Answer::Error {
                code: ErrorCode::SessionUnknown,
                ..
            }
        ));
        let first_again = Session {
            id: ids[0],
            sequence: 2,
        };
        assert_eq!(m.apply_command(&put(first_again, "k", "w")), Answer::Done);
        m.invariants();
    }

    // Goal: scans return keys in order within [start, end), stop at keys_max or
    // size_max (at least one entry), and say where to continue.
    // Method: ten keys; scans with each bound; follow `next` to the end.
    #[test]
    fn scans_are_bounded_and_continue() {
        let mut m = KvMachine::new();
        for i in 0..10 {
            m.apply_command(&put(Session::NONE, &format!("k{i}"), "vv"));
        }
        let scan = |start: &str, end: Option<&str>, keys_max, size_max| {
            m.answer_query(
                &Query::Scan {
                    start: b(start),
                    end: end.map(b),
                    keys_max,
                    size_max,
                }
                .encode(),
            )
        };
        let Answer::Scan { entries, next } = scan("k2", Some("k5"), 100, 1000) else {
            panic!("not a scan")
        };
        let keys: Vec<_> = entries.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![b("k2"), b("k3"), b("k4")]);
        assert_eq!(next, None);
        let Answer::Scan { entries, next } = scan("", None, 3, 1000) else {
            panic!("not a scan")
        };
        assert_eq!(entries.len(), 3);
        assert_eq!(next, Some(b("k3")));
        // Each entry is 4 bytes: 9 bytes hold two.
        let Answer::Scan { entries, next } = scan("k8", None, 100, 9) else {
            panic!("not a scan")
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(next, None);
        let Answer::Scan { entries, .. } = scan("k0", None, 100, 1) else {
            panic!("not a scan")
        };
        assert_eq!(entries.len(), 1, "at least one entry whatever size_max");
        let mut seen = 0;
        let mut start = String::new();
        loop {
            let Answer::Scan { entries, next } = scan(&start, None, 4, 1000) else {
                panic!("not a scan")
            };
            seen += entries.len();
            match next {
                Some(next) => start = String::from_utf8(next.to_vec()).expect("utf-8"),
                None => break,
            }
        }
        assert_eq!(seen, 10);
    }

    // Goal: arbitrary and mutated bytes never panic the machine (as command or as
    // query), change nothing when refused, and keep its invariants; two machines fed
    // the same bytes stay equal (apply is deterministic).
    // Method: 20,000 inputs from the in-house PRNG: valid commands with bytes flipped,
    // cut or appended, and pure noise; compare both machines' images at the end.
    #[test]
    fn mutated_bytes_never_panic_and_stay_deterministic() {
        let mut prng = crate::prng::Prng::new(0x6b76);
        let (mut one, mut two) = (KvMachine::new(), KvMachine::new());
        let id = open(&mut one);
        assert_eq!(open(&mut two), id);
        for round in 0..20_000_u64 {
            let key = format!("k{}", prng.below(50));
            let session = if prng.coin() {
                Session {
                    id,
                    sequence: round + 1,
                }
            } else {
                Session::NONE
            };
            let mut bytes = match prng.below(4) {
                0 => put(session, &key, "value").to_vec(),
                1 => cas(session, &key, Some("value"), None).to_vec(),
                2 => Query::Get { key: b(&key) }.encode().to_vec(),
                _ => {
                    let mut noise = vec![0_u8; prng.index(40)];
                    prng.fill(&mut noise);
                    noise
                }
            };
            match prng.below(4) {
                0 if !bytes.is_empty() => {
                    let at = prng.index(bytes.len());
                    bytes[at] ^= 1 << prng.below(8);
                }
                1 => bytes.truncate(prng.index(bytes.len() + 1)),
                2 => bytes.push(prng.below(256) as u8),
                _ => {}
            }
            assert_eq!(one.apply_command(&bytes), two.apply_command(&bytes));
            let _ = one.answer_query(&bytes);
            one.invariants();
        }
        let image = |m: &KvMachine| m.checkpoint().expect("checkpoints").into_bytes();
        assert_eq!(image(&one), image(&two));
        assert!(!one.is_empty(), "some commands were valid");
    }

    // Goal: a put that would take the group past GROUP_DATA_SIZE_MAX is refused and
    // changes nothing; replacing a value counts only the difference.
    // Method: a machine whose data size is set just under the bound.
    #[test]
    fn puts_beyond_the_size_bound_are_refused() {
        let mut m = KvMachine::new();
        assert_eq!(m.apply_command(&put(Session::NONE, "k", "v")), Answer::Done);
        // Pretend the rest of the group holds all but 3 bytes of the bound.
        m.data_size = GROUP_DATA_SIZE_MAX - 1;
        assert!(matches!(
            m.apply_command(&put(Session::NONE, "j", "vvv")),
            Answer::Error {
                code: ErrorCode::Full,
                ..
            }
        ));
        assert_eq!(m.apply_command(&put(Session::NONE, "k", "w")), Answer::Done);
        assert_eq!(get(&m, "j"), None);
    }
}
