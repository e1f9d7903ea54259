//! A linearizability checker for key-value histories: each key is a register that
//! starts absent, with `put`, `get`, `delete` and `compare-and-set`; each operation has
//! an invoke time and an outcome (ok with its reply, failed, or indeterminate).
//!
//! Method: Wing and Gong's search with Lowe's memoization, as Porcupine does it. A
//! history is linearizable exactly when each key's sub-history is (Herlihy and Wing's
//! locality, "P-compositionality"), so keys are checked one at a time. Per key, the
//! calls and returns are laid out in time order on a doubly linked list; the search
//! linearizes a pending call whose effect the register allows, removes its call and
//! return from the list (dancing links), and backtracks when it meets the return of an
//! operation it could not place. A cache of (linearized set, register state) prunes
//! every configuration already explored, so each is searched once.
//!
//! Semantics of the record:
//! - an operation A precedes B in real time only when A returned strictly before B was
//!   invoked: equal times are concurrent (timestamps from several processes are not
//!   ordered finer than that);
//! - `Failed` means the operation took no effect: it is left out;
//! - `Indeterminate` (a timeout, a lost connection) may or may not have taken effect, at
//!   any time after its invoke: its return is at infinity and its reply unknown. An
//!   effect that never happened is the same as one linearized after everything else,
//!   so no subset of the indeterminate operations needs enumerating. An indeterminate
//!   `get` constrains nothing and is left out.
//!
//! Bounds: the search takes at most `CheckConfig::steps_max` steps per key and holds at
//! most `CheckConfig::cache_size_max` bytes of cache; past either, that key's verdict is
//! `Unknown`, never a guess. A violation is explained by a smallest set of the key's
//! operations that is already not linearizable (see [`Violation`]), found within
//! `CheckConfig::minimize_steps_max` further steps.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// A key of the store.
pub type Key = Vec<u8>;
/// A value of the store.
pub type Value = Vec<u8>;

/// What a client asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// Set the key to `value`.
    Put {
        /// The value written.
        value: Value,
    },
    /// Read the key.
    Get,
    /// Remove the key (absent afterwards).
    Delete,
    /// Set the key to `new` if it holds `expected` (`None`: if it is absent).
    Cas {
        /// The value the key must hold.
        expected: Option<Value>,
        /// The value written when it does.
        new: Value,
    },
}

/// What the store answered to a completed call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A put or delete was applied.
    Done,
    /// A get's result: the value, or `None` when the key was absent.
    Value(Option<Value>),
    /// A compare-and-set's result: whether it swapped.
    Swapped(bool),
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It completed at `at_ns` with `reply`.
    Ok {
        /// Return time (same clock as `Operation::invoke_ns`).
        at_ns: u64,
        /// The store's answer.
        reply: Reply,
    },
    /// It definitely took no effect (the store refused it).
    Failed {
        /// Return time.
        at_ns: u64,
    },
    /// Unknown: it may have taken effect, at any time after its invoke.
    Indeterminate,
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client (process) that issued it; for explanations only.
    pub client: u64,
    /// The key it is about.
    pub key: Key,
    /// What was asked.
    pub call: Call,
    /// Invoke time, in nanoseconds on a clock shared by every client of the history.
    pub invoke_ns: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// Bounds of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckConfig {
    /// Most search steps for one key (one step: one call or return looked at).
    pub steps_max: u64,
    /// Most bytes of memoized configurations for one key.
    pub cache_size_max: usize,
    /// Most search steps spent shrinking a violation to its explanation (all keys).
    pub minimize_steps_max: u64,
}

impl Default for CheckConfig {
    fn default() -> CheckConfig {
        CheckConfig {
            steps_max: 10_000_000,
            cache_size_max: 256 << 20,
            minimize_steps_max: 10_000_000,
        }
    }
}

/// Why a history could not be checked at all.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistoryError {
    /// A reply that cannot answer the call (a `Swapped` for a put, say).
    ReplyMismatch {
        /// Index of the operation in the history.
        index: usize,
        /// The call's kind.
        call: &'static str,
        /// The reply's kind.
        reply: &'static str,
    },
    /// An operation that returned before it was invoked.
    ReturnBeforeInvoke {
        /// Index of the operation in the history.
        index: usize,
        /// Its invoke time.
        invoke_ns: u64,
        /// Its return time.
        at_ns: u64,
    },
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::ReplyMismatch { index, call, reply } => {
                write!(
                    f,
                    "operation {index}: a {reply} reply cannot answer a {call}"
                )
            }
            HistoryError::ReturnBeforeInvoke {
                index,
                invoke_ns,
                at_ns,
            } => write!(
                f,
                "operation {index}: returned at {at_ns} ns, before its invoke at {invoke_ns} ns"
            ),
        }
    }
}

impl std::error::Error for HistoryError {}

/// The verdict on a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's sub-history has a linearization.
    Linearizable,
    /// Some key's sub-history has none.
    Violation(Violation),
    /// No key violates within the bounds, but some keys were not decided.
    Unknown(Unknown),
}

/// A key whose operations have no linearization, explained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: Key,
    /// Indices (in the history) of a set of this key's operations that is already not
    /// linearizable, and whose being not linearizable implies the whole history is not
    /// (only reads and unobserved writes are ever dropped from it). Minimal (no one
    /// more can be dropped) when `minimal` is true; the whole key otherwise.
    pub operations: Vec<usize>,
    /// Whether `operations` was shrunk to a minimal set within the bound.
    pub minimal: bool,
    /// Operations on the key that took part in the search (failed operations and
    /// indeterminate gets excluded).
    pub key_operations: usize,
    /// The operations of `operations` as text, one per line.
    pub explanation: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key {}: no linearization of these {} operations ({} on this key{}):",
            show(&self.key),
            self.operations.len(),
            self.key_operations,
            if self.minimal { "; minimal" } else { "" }
        )?;
        f.write_str(&self.explanation)
    }
}

/// Keys the check could not decide within its bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unknown {
    /// The undecided keys, in key order.
    pub keys: Vec<Key>,
    /// Search steps spent on them.
    pub steps: u64,
}

/// Checks `history`: `Linearizable`, a `Violation` on the first key (in key order) that
/// has none, or `Unknown` when a key exceeded the bounds of `config` and none violated.
///
/// # Errors
///
/// [`HistoryError`] for a history that is not well formed (checked before any search).
pub fn check(history: &[Operation], config: &CheckConfig) -> Result<Verdict, HistoryError> {
    validate(history)?;
    let mut keys: BTreeMap<&Key, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        if takes_part(op) {
            keys.entry(&op.key).or_default().push(index);
        }
    }
    let mut unknown = Unknown {
        keys: Vec::new(),
        steps: 0,
    };
    for (key, ops) in keys {
        let budget = Budget {
            steps_max: config.steps_max,
            cache_size_max: config.cache_size_max,
        };
        let (result, steps) = search(history, &ops, budget);
        match result {
            Search::Linearizable => {}
            Search::Exhausted => {
                unknown.keys.push(key.clone());
                unknown.steps += steps;
            }
            Search::Violation => {
                return Ok(Verdict::Violation(explain(history, key, &ops, config)));
            }
        }
    }
    Ok(if unknown.keys.is_empty() {
        Verdict::Linearizable
    } else {
        Verdict::Unknown(unknown)
    })
}

fn call_kind(call: &Call) -> &'static str {
    match call {
        Call::Put { .. } => "put",
        Call::Get => "get",
        Call::Delete => "delete",
        Call::Cas { .. } => "cas",
    }
}

fn reply_kind(reply: &Reply) -> &'static str {
    match reply {
        Reply::Done => "done",
        Reply::Value(_) => "value",
        Reply::Swapped(_) => "swapped",
    }
}

fn validate(history: &[Operation]) -> Result<(), HistoryError> {
    for (index, op) in history.iter().enumerate() {
        let at_ns = match &op.outcome {
            Outcome::Ok { at_ns, reply } => {
                let fits = matches!(
                    (&op.call, reply),
                    (Call::Put { .. } | Call::Delete, Reply::Done)
                        | (Call::Get, Reply::Value(_))
                        | (Call::Cas { .. }, Reply::Swapped(_))
                );
                if !fits {
                    return Err(HistoryError::ReplyMismatch {
                        index,
                        call: call_kind(&op.call),
                        reply: reply_kind(reply),
                    });
                }
                *at_ns
            }
            Outcome::Failed { at_ns } => *at_ns,
            Outcome::Indeterminate => continue,
        };
        if at_ns < op.invoke_ns {
            return Err(HistoryError::ReturnBeforeInvoke {
                index,
                invoke_ns: op.invoke_ns,
                at_ns,
            });
        }
    }
    Ok(())
}

/// Whether `op` can constrain or change the register: failed operations took no
/// effect, and an indeterminate get says nothing.
fn takes_part(op: &Operation) -> bool {
    match (&op.call, &op.outcome) {
        (_, Outcome::Failed { .. }) | (Call::Get, Outcome::Indeterminate) => false,
        (_, Outcome::Ok { .. } | Outcome::Indeterminate) => true,
    }
}

/// The register after `op` from `state`, or `None` when `op`'s reply is impossible
/// there. An indeterminate operation's reply is whatever the register gives.
fn apply(state: &Option<Value>, op: &Operation) -> Option<Option<Value>> {
    let reply = match &op.outcome {
        Outcome::Ok { reply, .. } => Some(reply),
        Outcome::Indeterminate => None,
        Outcome::Failed { .. } => unreachable!("failed operations take no part"),
    };
    match (&op.call, reply) {
        (Call::Put { value }, None | Some(Reply::Done)) => Some(Some(value.clone())),
        (Call::Delete, None | Some(Reply::Done)) => Some(None),
        (Call::Get, None) => Some(state.clone()),
        (Call::Get, Some(Reply::Value(read))) => (read == state).then(|| state.clone()),
        (Call::Cas { expected, new }, reply) => {
            let swaps = expected == state;
            match reply {
                None => Some(if swaps {
                    Some(new.clone())
                } else {
                    state.clone()
                }),
                Some(Reply::Swapped(true)) if swaps => Some(Some(new.clone())),
                Some(Reply::Swapped(false)) if !swaps => Some(state.clone()),
                Some(_) => None,
            }
        }
        (Call::Put { .. } | Call::Delete | Call::Get, Some(_)) => None,
    }
}

/// Return time of `op`: infinity when indeterminate.
fn return_ns(op: &Operation) -> u64 {
    match op.outcome {
        Outcome::Ok { at_ns, .. } | Outcome::Failed { at_ns } => at_ns,
        Outcome::Indeterminate => u64::MAX,
    }
}

#[derive(Clone, Copy, Debug)]
struct Budget {
    steps_max: u64,
    cache_size_max: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Search {
    Linearizable,
    Violation,
    Exhausted,
}

const NIL: usize = usize::MAX;

/// The calls and returns of one key's operations in time order, as a doubly linked list
/// whose node `head` (the last) is the sentinel before the first event.
struct Events {
    /// Per event: the operation (position in the key's list).
    op: Vec<usize>,
    /// Per event: its matching return event, for a call; `NIL` for a return.
    ret: Vec<usize>,
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
}

impl Events {
    fn new(history: &[Operation], ops: &[usize]) -> Events {
        // (time, 0 for a call / 1 for a return, op): at equal times calls come first,
        // so that touching operations are concurrent.
        let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, &index) in ops.iter().enumerate() {
            let op = &history[index];
            order.push((op.invoke_ns, 0, i));
            order.push((return_ns(op), 1, i));
        }
        order.sort_unstable();
        let count = order.len();
        let mut call_at = vec![NIL; ops.len()];
        let mut ret = vec![NIL; count];
        let mut op = vec![0; count];
        for (at, &(_, kind, i)) in order.iter().enumerate() {
            op[at] = i;
            if kind == 0 {
                call_at[i] = at;
            } else {
                ret[call_at[i]] = at;
            }
        }
        let head = count;
        let next = (0..=count)
            .map(|at| {
                if at + 1 < count {
                    at + 1
                } else if at == head && count > 0 {
                    0
                } else {
                    NIL
                }
            })
            .collect();
        let prev = (0..=count)
            .map(|at| {
                if at == 0 {
                    head
                } else if at < count {
                    at - 1
                } else {
                    NIL
                }
            })
            .collect();
        Events {
            op,
            ret,
            next,
            prev,
            head,
        }
    }

    fn unlink(&mut self, at: usize) {
        let (prev, next) = (self.prev[at], self.next[at]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, at: usize) {
        let (prev, next) = (self.prev[at], self.next[at]);
        self.next[prev] = at;
        if next != NIL {
            self.prev[next] = at;
        }
    }

    /// Removes the call at `at` and its return (dancing links: `unlift` in reverse
    /// order restores them).
    fn lift(&mut self, at: usize) {
        self.unlink(at);
        self.unlink(self.ret[at]);
    }

    fn unlift(&mut self, at: usize) {
        self.relink(self.ret[at]);
        self.relink(at);
    }
}

/// Words of a bit set of `n` operations.
fn words(n: usize) -> usize {
    n.div_ceil(64)
}

/// Searches a linearization of the operations `ops` (indices in `history`, all on one
/// key); returns the result and the steps taken.
fn search(history: &[Operation], ops: &[usize], budget: Budget) -> (Search, u64) {
    let mut events = Events::new(history, ops);
    let mut linearized = vec![0_u64; words(ops.len())];
    let entry_size = std::mem::size_of::<(Vec<u64>, Option<Value>)>() + 8 * linearized.len();
    let mut cache: HashSet<(Vec<u64>, Option<Value>)> = HashSet::new();
    let mut cache_size = 0_usize;
    let mut state: Option<Value> = None;
    // The calls linearized so far, each with the state before it.
    let mut stack: Vec<(usize, Option<Value>)> = Vec::new();
    let mut at = events.next[events.head];
    let mut steps = 0_u64;
    while events.next[events.head] != NIL {
        steps += 1;
        if steps > budget.steps_max || cache_size > budget.cache_size_max {
            return (Search::Exhausted, steps);
        }
        assert!(at != NIL, "the list ends with a return, met before its end");
        let i = events.op[at];
        if events.ret[at] != NIL {
            // A call: try to linearize it here.
            if let Some(after) = apply(&state, &history[ops[i]]) {
                linearized[i / 64] |= 1 << (i % 64);
                let size = entry_size + after.as_ref().map_or(0, Vec::len);
                if cache.insert((linearized.clone(), after.clone())) {
                    cache_size += size;
                    stack.push((at, std::mem::replace(&mut state, after)));
                    events.lift(at);
                    at = events.next[events.head];
                    continue;
                }
                linearized[i / 64] &= !(1 << (i % 64));
            }
            at = events.next[at];
        } else {
            // The return of an operation not linearized yet: every choice since the
            // last one failed; undo it and try the next candidate after it.
            let Some((call, before)) = stack.pop() else {
                return (Search::Violation, steps);
            };
            let j = events.op[call];
            linearized[j / 64] &= !(1 << (j % 64));
            state = before;
            events.unlift(call);
            at = events.next[call];
        }
    }
    (Search::Linearizable, steps)
}

/// The value written by `op`, if it is a write: `Some(Some(v))` for a put or a
/// compare-and-set, `Some(None)` for a delete; `None` for a read.
fn written(op: &Operation) -> Option<Option<&Value>> {
    match (&op.call, &op.outcome) {
        (Call::Put { value }, _) => Some(Some(value)),
        (Call::Delete, _) => Some(None),
        (Call::Cas { new, .. }, Outcome::Ok { reply, .. }) => {
            (reply == &Reply::Swapped(true)).then_some(Some(new))
        }
        (Call::Cas { new, .. }, Outcome::Indeterminate) => Some(Some(new)),
        (Call::Get | Call::Cas { .. }, _) => None,
    }
}

/// Whether dropping `op` from `kept` keeps "not linearizable" meaningful: whenever the
/// whole is linearizable, so is the rest. True for a read (removing it from a
/// linearization leaves one); for a write, when no other kept operation could have seen
/// it: no compare-and-set (whose outcome depends on every write) and no get that
/// returned what it wrote.
fn droppable(history: &[Operation], op: usize, kept: &[usize]) -> bool {
    let Some(value) = written(&history[op]) else {
        return true;
    };
    kept.iter().filter(|&&other| other != op).all(|&other| {
        let o = &history[other];
        match (&o.call, &o.outcome) {
            (Call::Cas { .. }, _) => false,
            (Call::Get, Outcome::Ok { reply, .. }) => reply != &Reply::Value(value.cloned()),
            (Call::Get | Call::Put { .. } | Call::Delete, _) => true,
        }
    })
}

/// Shrinks the violating operations `ops` of `key` to a minimal set within the bound
/// and renders it.
fn explain(history: &[Operation], key: &Key, ops: &[usize], config: &CheckConfig) -> Violation {
    let mut kept = ops.to_vec();
    let mut spent = 0_u64;
    let mut minimal = true;
    // Reads first: they are always droppable, and dropping them frees writes.
    let mut order: Vec<usize> = ops.to_vec();
    order.sort_by_key(|&i| written(&history[i]).is_some());
    'shrink: loop {
        let mut dropped_one = false;
        for &candidate in &order {
            if !kept.contains(&candidate) || !droppable(history, candidate, &kept) {
                continue;
            }
            let trial: Vec<usize> = kept.iter().copied().filter(|&i| i != candidate).collect();
            let budget = Budget {
                steps_max: config.minimize_steps_max.saturating_sub(spent),
                cache_size_max: config.cache_size_max,
            };
            let (result, steps) = search(history, &trial, budget);
            spent += steps;
            match result {
                Search::Violation => {
                    kept = trial;
                    dropped_one = true;
                }
                Search::Linearizable => {}
                Search::Exhausted => {
                    minimal = false;
                    break 'shrink;
                }
            }
        }
        // A dropped write can make another write droppable: repeat until none is.
        if !dropped_one {
            break;
        }
    }
    let explanation = kept
        .iter()
        .map(|&i| format!("  {}\n", describe(i, &history[i])))
        .collect();
    Violation {
        key: key.clone(),
        operations: kept,
        minimal,
        key_operations: ops.len(),
        explanation,
    }
}

/// Bytes as text when they are printable ASCII, else as hex.
fn show(bytes: &[u8]) -> String {
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("{:?}", String::from_utf8_lossy(bytes))
    } else {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("0x{hex}")
    }
}

fn show_option(value: Option<&Value>) -> String {
    value.map_or_else(|| "absent".to_string(), |v| show(v))
}

/// One operation as a line: `#index client c: call [invoke, return] -> reply`.
fn describe(index: usize, op: &Operation) -> String {
    let call = match &op.call {
        Call::Put { value } => format!("put {}", show(value)),
        Call::Get => "get".to_string(),
        Call::Delete => "delete".to_string(),
        Call::Cas { expected, new } => {
            format!("cas {} -> {}", show_option(expected.as_ref()), show(new))
        }
    };
    let end = match &op.outcome {
        Outcome::Ok { at_ns, reply } => {
            let reply = match reply {
                Reply::Done => "ok".to_string(),
                Reply::Value(v) => show_option(v.as_ref()),
                Reply::Swapped(s) => format!("swapped {s}"),
            };
            format!("{at_ns}] -> {reply}")
        }
        Outcome::Failed { at_ns } => format!("{at_ns}] -> failed"),
        Outcome::Indeterminate => "...] -> indeterminate".to_string(),
    };
    format!(
        "#{index} client {}: {call} [{}, {end}",
        op.client, op.invoke_ns
    )
}

#[cfg(test)]
mod tests;
