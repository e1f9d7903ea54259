//! The chaos run's workload: client threads doing put, get, compare-and-set and delete
//! on a small key set through `synod::client::Client`, each operation recorded in the
//! checker's types (`synod::check::linearizability::Operation`) with times on one
//! monotonic clock shared by every thread.
//!
//! Invariants: every written value is unique in the run (`c<client>-<n>`); a write is
//! sent in an exactly-once session and retried only with its own sequence number, so a
//! retry can never apply it twice; an operation whose effect is unknown at its deadline
//! is recorded `Indeterminate`, one that surely did nothing `Failed`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use synod::check::linearizability::{Call, Operation, Outcome, Reply};
use synod::client::{Client, ClientConfig, Error};
use synod::kv::{group_of, Answer, Command, ErrorCode, Query, Session, WriteOp};
use synod::paxos::GroupId;
use synod::prng::Prng;
use synod::runtime::clock::MonotonicClock;

/// How the workload runs.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The nodes' client addresses.
    pub addresses: Vec<String>,
    /// The cluster id.
    pub cluster: u64,
    /// Groups of the cluster.
    pub groups: u32,
    /// Keys (`k0`, `k1`, ...).
    pub keys: usize,
    /// Pause between one client's operations.
    pub pause: Duration,
    /// How long one operation may take, retries included.
    pub op_timeout: Duration,
}

/// The key named `k<i>`.
pub fn key_name(i: usize) -> Vec<u8> {
    format!("k{i}").into_bytes()
}

/// A client configuration for the run: short request timeouts, so that a fault is
/// noticed within the operation's deadline.
pub fn client_config() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_millis(500),
        handshake_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        ..ClientConfig::default()
    }
}

/// How one attempt sequence ended.
enum Attempt<T> {
    Answer(T),
    /// Surely nothing done.
    Failed,
    /// Possibly done.
    Unknown,
}

/// One client thread's state.
struct Worker {
    id: u64,
    client: Client,
    plan: Plan,
    clock: MonotonicClock,
    prng: Prng,
    sessions: BTreeMap<GroupId, (u64, u64)>,
    last_read: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    written: u64,
    history: Vec<Operation>,
}

/// Runs client `id` until `stop`, returning its history.
pub fn run(
    id: u64,
    plan: Plan,
    clock: MonotonicClock,
    seed: u64,
    stop: &Arc<AtomicBool>,
) -> Vec<Operation> {
    let client = loop {
        match Client::connect_with(&plan.addresses, plan.cluster, client_config()) {
            Ok(client) => break client,
            Err(_) if !stop.load(Ordering::Relaxed) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(_) => return Vec::new(),
        }
    };
    let mut worker = Worker {
        id,
        client,
        plan,
        clock,
        prng: Prng::new(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        sessions: BTreeMap::new(),
        last_read: BTreeMap::new(),
        written: 0,
        history: Vec::new(),
    };
    while !stop.load(Ordering::Relaxed) {
        worker.one();
        std::thread::sleep(worker.plan.pause);
    }
    worker.history
}

impl Worker {
    fn deadline_passed(&self, invoke_ns: u64) -> bool {
        self.clock.now().0.saturating_sub(invoke_ns) >= self.plan.op_timeout.as_nanos() as u64
    }

    fn one(&mut self) {
        let key = key_name(self.prng.index(self.plan.keys));
        let roll = self.prng.below(100);
        if roll < 40 {
            self.get(key);
            return;
        }
        self.written += 1;
        let value = format!("c{}-{}", self.id, self.written).into_bytes();
        let call = if roll < 70 {
            Call::Put { value }
        } else if roll < 90 {
            let expected = self.last_read.get(&key).cloned().unwrap_or(None);
            Call::Cas {
                expected,
                new: value,
            }
        } else {
            Call::Delete
        };
        self.write(key, call);
    }

    fn get(&mut self, key: Vec<u8>) {
        let invoke_ns = self.clock.now().0;
        let group = group_of(&key, self.plan.groups);
        let query = Query::Get {
            key: Bytes::from(key.clone()),
        }
        .encode();
        let outcome = loop {
            match self.client.read_blocking(group, query.clone()) {
                Ok(bytes) => match Answer::decode(&bytes) {
                    Ok(Answer::Value(value)) => {
                        let value = value.map(|v| v.to_vec());
                        self.last_read.insert(key.clone(), value.clone());
                        break Outcome::Ok {
                            at_ns: self.clock.now().0,
                            reply: Reply::Value(value),
                        };
                    }
                    _ => {
                        break Outcome::Failed {
                            at_ns: self.clock.now().0,
                        }
                    }
                },
                Err(_) if self.deadline_passed(invoke_ns) => {
                    break Outcome::Failed {
                        at_ns: self.clock.now().0,
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        self.history.push(Operation {
            client: self.id,
            key,
            call: Call::Get,
            invoke_ns,
            outcome,
        });
    }

    fn write(&mut self, key: Vec<u8>, call: Call) {
        let invoke_ns = self.clock.now().0;
        let group = group_of(&key, self.plan.groups);
        let op = match &call {
            Call::Put { value } => WriteOp::Put {
                key: Bytes::from(key.clone()),
                value: Bytes::from(value.clone()),
            },
            Call::Delete => WriteOp::Delete {
                key: Bytes::from(key.clone()),
            },
            Call::Cas { expected, new } => WriteOp::Cas {
                key: Bytes::from(key.clone()),
                expected: expected.clone().map(Bytes::from),
                new: Some(Bytes::from(new.clone())),
            },
            Call::Get => unreachable!("reads go through get"),
        };
        let outcome = match self.session(group, invoke_ns) {
            Some(session) => {
                let command = Command::Write { session, op }.encode();
                match self.propose(group, &command, invoke_ns) {
                    Attempt::Answer(answer) => self.outcome_of(group, &call, &answer),
                    Attempt::Failed => Outcome::Failed {
                        at_ns: self.clock.now().0,
                    },
                    Attempt::Unknown => Outcome::Indeterminate,
                }
            }
            None => Outcome::Failed {
                at_ns: self.clock.now().0,
            },
        };
        self.history.push(Operation {
            client: self.id,
            key,
            call,
            invoke_ns,
            outcome,
        });
    }

    fn outcome_of(&mut self, group: GroupId, call: &Call, answer: &Answer) -> Outcome {
        let at_ns = self.clock.now().0;
        let reply = match (call, answer) {
            (Call::Put { .. }, Answer::Done) | (Call::Delete, Answer::Deleted { .. }) => {
                Reply::Done
            }
            (Call::Cas { .. }, Answer::Swapped) => Reply::Swapped(true),
            (Call::Cas { .. }, Answer::Mismatch) => Reply::Swapped(false),
            (
                _,
                Answer::Error {
                    code: ErrorCode::SessionUnknown,
                    ..
                },
            ) => {
                // The session expired while the write was retried: whether an earlier
                // attempt applied is unknown. A new session next time.
                self.sessions.remove(&group);
                return Outcome::Indeterminate;
            }
            _ => {
                eprintln!(
                    "synod-chaos: client {}: unexpected answer {answer:?}",
                    self.id
                );
                return Outcome::Indeterminate;
            }
        };
        Outcome::Ok { at_ns, reply }
    }

    /// The next (session, sequence) of `group`, opening a session when there is none.
    fn session(&mut self, group: GroupId, invoke_ns: u64) -> Option<Session> {
        if !self.sessions.contains_key(&group) {
            let command = Command::OpenSession.encode();
            // A retried open may leave a spare session, which expires unused.
            let Attempt::Answer(Answer::Session { id }) = self.propose(group, &command, invoke_ns)
            else {
                return None;
            };
            self.sessions.insert(group, (id, 0));
        }
        let entry = self.sessions.get_mut(&group)?;
        entry.1 += 1;
        Some(Session {
            id: entry.0,
            sequence: entry.1,
        })
    }

    /// Proposes `command` until it is answered or the operation's deadline; retried
    /// with the same bytes (the same session and sequence).
    fn propose(&mut self, group: GroupId, command: &Bytes, invoke_ns: u64) -> Attempt<Answer> {
        let mut uncertain = false;
        loop {
            match self.client.propose_blocking(group, command.clone()) {
                Ok(proposed) => {
                    return match Answer::decode(&proposed.output) {
                        Ok(answer) => Attempt::Answer(answer),
                        Err(_) => Attempt::Unknown,
                    }
                }
                Err(error) => uncertain |= !retry_is_blind(&error),
            }
            if self.deadline_passed(invoke_ns) {
                return if uncertain {
                    Attempt::Unknown
                } else {
                    Attempt::Failed
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether `error` says the request surely did nothing.
fn retry_is_blind(error: &Error) -> bool {
    error.is_retryable()
}
