//! Tests of the linearizability checker: broken histories it must reject (with the
//! operations to blame), correct concurrent ones it must accept, its bounds and errors,
//! and a property test over simulated registers with one read mutated.

use super::*;
use crate::prng::Prng;

fn v(text: &str) -> Value {
    text.as_bytes().to_vec()
}

fn key(text: &str) -> Key {
    text.as_bytes().to_vec()
}

/// A completed operation on key "k".
fn op(client: u64, call: Call, invoke_ns: u64, at_ns: u64, reply: Reply) -> Operation {
    Operation {
        client,
        key: key("k"),
        call,
        invoke_ns,
        outcome: Outcome::Ok { at_ns, reply },
    }
}

fn put(client: u64, value: &str, invoke_ns: u64, at_ns: u64) -> Operation {
    op(
        client,
        Call::Put { value: v(value) },
        invoke_ns,
        at_ns,
        Reply::Done,
    )
}

fn get(client: u64, read: Option<&str>, invoke_ns: u64, at_ns: u64) -> Operation {
    op(
        client,
        Call::Get,
        invoke_ns,
        at_ns,
        Reply::Value(read.map(v)),
    )
}

fn delete(client: u64, invoke_ns: u64, at_ns: u64) -> Operation {
    op(client, Call::Delete, invoke_ns, at_ns, Reply::Done)
}

fn cas(
    client: u64,
    expected: Option<&str>,
    new: &str,
    range: (u64, u64),
    swapped: bool,
) -> Operation {
    let call = Call::Cas {
        expected: expected.map(v),
        new: v(new),
    };
    op(client, call, range.0, range.1, Reply::Swapped(swapped))
}

fn indeterminate(mut operation: Operation) -> Operation {
    operation.outcome = Outcome::Indeterminate;
    operation
}

fn failed(mut operation: Operation) -> Operation {
    let at_ns = return_ns(&operation);
    operation.outcome = Outcome::Failed { at_ns };
    operation
}

fn verdict(history: &[Operation]) -> Verdict {
    check(history, &CheckConfig::default()).expect("a well-formed history")
}

/// The violation `history` must have, with the operations it must blame.
fn assert_violation(history: &[Operation], blamed: &[usize]) -> Violation {
    match verdict(history) {
        Verdict::Violation(violation) => {
            assert_eq!(violation.operations, blamed, "{violation}");
            assert!(violation.minimal, "{violation}");
            violation
        }
        other => panic!("not rejected: {other:?}"),
    }
}

fn assert_linearizable(history: &[Operation]) {
    assert_eq!(verdict(history), Verdict::Linearizable, "{history:#?}");
}

// Goal: a read of a value overwritten before the read began is rejected, and the
// explanation names the two writes and the read (nothing else).
// Method: put 1, put 2, get -> 1 in sequence, with an unrelated read in between.
#[test]
fn stale_read_is_rejected() {
    let history = [
        put(1, "1", 0, 10),
        get(2, Some("1"), 12, 14),
        put(1, "2", 20, 30),
        get(2, Some("1"), 40, 50),
    ];
    let violation = assert_violation(&history, &[0, 2, 3]);
    let text = violation.to_string();
    assert!(text.contains("key \"k\""), "{text}");
    assert!(
        text.contains("#3 client 2: get [40, 50] -> \"1\""),
        "{text}"
    );
}

// Goal: an acknowledged write that a later read does not see is rejected.
// Method: put 1 completes, then a read finds the key absent.
#[test]
fn lost_acknowledged_write_is_rejected() {
    let history = [put(1, "1", 0, 10), get(2, None, 20, 30)];
    assert_violation(&history, &[0, 1]);
    // The same read concurrent with the write is fine.
    assert_linearizable(&[put(1, "1", 0, 25), get(2, None, 20, 30)]);
}

// Goal: a compare-and-set applied twice is rejected.
// Method: 0 -> 1 and 1 -> 0 both swapped, then a read sees 1 (the first applied again).
#[test]
fn duplicate_cas_apply_is_rejected() {
    let history = [
        put(1, "0", 0, 10),
        cas(1, Some("0"), "1", (20, 30), true),
        cas(2, Some("1"), "0", (40, 50), true),
        get(3, Some("1"), 60, 70),
    ];
    assert_violation(&history, &[0, 1, 2, 3]);
}

// Goal: a put applied twice (a retried request executed again) is rejected.
// Method: put 1, put 2, a read of 2, then a read of 1 again.
#[test]
fn duplicate_put_apply_is_rejected() {
    let history = [
        put(1, "1", 0, 10),
        put(2, "2", 20, 30),
        get(3, Some("2"), 40, 50),
        get(3, Some("1"), 60, 70),
    ];
    let violation = assert_violation(&history, &[0, 1, 3]);
    assert_eq!(violation.key_operations, 4);
}

// Goal: a read of a value nobody wrote is rejected, and blamed on the read alone.
// Method: writes of other values around a read of "99".
#[test]
fn read_of_unwritten_value_is_rejected() {
    let history = [
        put(1, "1", 0, 10),
        put(2, "2", 5, 30),
        get(3, Some("99"), 8, 40),
        delete(1, 50, 60),
    ];
    assert_violation(&history, &[2]);
}

// Goal: overlapping operations are accepted in any order the real-time order allows.
// Method: two concurrent puts observed in opposite orders by reads inside their windows,
// and reads touching a write's return time (equal times are concurrent).
#[test]
fn concurrent_history_is_accepted() {
    assert_linearizable(&[
        put(1, "1", 0, 100),
        put(2, "2", 10, 90),
        get(3, Some("2"), 20, 30),
        get(3, Some("1"), 40, 50),
        get(4, Some("1"), 110, 120),
        cas(4, Some("1"), "3", (130, 140), true),
        cas(5, Some("1"), "4", (135, 150), false),
        get(5, Some("3"), 160, 170),
    ]);
    assert_linearizable(&[put(1, "1", 0, 10), get(2, None, 10, 20)]);
}

// Goal: an indeterminate write may take effect at any time after its invoke, or never,
// but at most once.
// Method: reads that see it late, never, or twice (the last must be rejected).
#[test]
fn indeterminate_writes() {
    // Late: absent first, then the value, long after the client gave up.
    assert_linearizable(&[
        indeterminate(put(1, "1", 0, 0)),
        get(2, None, 50, 60),
        get(2, Some("1"), 70, 80),
    ]);
    // Never.
    assert_linearizable(&[indeterminate(put(1, "1", 0, 0)), get(2, None, 50, 60)]);
    // A compare-and-set counter with one indeterminate step that did happen.
    assert_linearizable(&[
        put(1, "0", 0, 10),
        indeterminate(cas(1, Some("0"), "1", (20, 0), true)),
        get(2, Some("1"), 30, 40),
        cas(2, Some("1"), "2", (50, 60), true),
        get(3, Some("2"), 70, 80),
    ]);
    // Once, late, after the key was reset: still one application.
    assert_linearizable(&[
        put(1, "0", 0, 10),
        indeterminate(cas(1, Some("0"), "1", (20, 0), true)),
        put(2, "0", 30, 40),
        get(3, Some("1"), 50, 60),
    ]);
    // Twice: seen, reset, seen again, reset, seen again.
    let history = [
        put(1, "0", 0, 10),
        indeterminate(cas(1, Some("0"), "1", (20, 0), true)),
        get(2, Some("1"), 30, 40),
        put(2, "0", 50, 60),
        get(3, Some("1"), 70, 80),
        put(2, "0", 90, 100),
        get(3, Some("1"), 110, 120),
    ];
    assert!(matches!(verdict(&history), Verdict::Violation(_)));
    // An indeterminate get says nothing.
    assert_linearizable(&[put(1, "1", 0, 10), indeterminate(get(2, Some("7"), 20, 30))]);
}

// Goal: a failed operation took no effect.
// Method: a refused put followed by reads: absent is fine, its value is not.
#[test]
fn failed_operations_take_no_effect() {
    assert_linearizable(&[failed(put(1, "5", 0, 10)), get(2, None, 20, 30)]);
    assert_violation(
        &[failed(put(1, "5", 0, 10)), get(2, Some("5"), 20, 30)],
        &[1],
    );
}

// Goal: keys are independent, and the violation names the key that has it.
// Method: interleaved histories on keys "a" (fine) and "b" (stale read).
#[test]
fn violation_names_its_key() {
    let on = |k: &str, mut o: Operation| {
        o.key = key(k);
        o
    };
    let history = [
        on("a", put(1, "1", 0, 10)),
        on("b", put(1, "1", 0, 10)),
        on("b", put(2, "2", 20, 30)),
        on("a", get(3, Some("1"), 40, 50)),
        on("b", get(3, Some("1"), 40, 50)),
    ];
    let violation = assert_violation(&history, &[1, 2, 4]);
    assert_eq!(violation.key, key("b"));
    // On one key alone, the same reads are fine (no write on "a" after the read's value).
    let history_a: Vec<Operation> = history
        .iter()
        .filter(|o| o.key == key("a"))
        .cloned()
        .collect();
    assert_linearizable(&history_a);
}

// Goal: a search past its bound says Unknown, never a verdict it did not reach.
// Method: 14 mutually concurrent puts then a read of a value none wrote (deciding needs
// every subset of the puts), with a small step bound; then a large bound decides it.
#[test]
fn step_bound_gives_unknown() {
    let mut history: Vec<Operation> = (0..14).map(|i| put(i, &i.to_string(), i, 1000)).collect();
    history.push(get(99, Some("x"), 2000, 2010));
    let small = CheckConfig {
        steps_max: 1000,
        ..CheckConfig::default()
    };
    match check(&history, &small).expect("well formed") {
        Verdict::Unknown(unknown) => {
            assert_eq!(unknown.keys, vec![key("k")]);
            assert!(unknown.steps > 1000);
        }
        other => panic!("expected Unknown, got {other:?}"),
    }
    let tiny_cache = CheckConfig {
        cache_size_max: 1024,
        ..CheckConfig::default()
    };
    assert!(matches!(
        check(&history, &tiny_cache),
        Ok(Verdict::Unknown(_))
    ));
    assert_violation(&history, &[14]);
}

// Goal: malformed histories are refused with the operation named.
// Method: a reply of the wrong kind, and a return before the invoke.
#[test]
fn malformed_histories_are_refused() {
    let mismatch = [op(1, Call::Get, 0, 10, Reply::Done)];
    assert_eq!(
        check(&mismatch, &CheckConfig::default()),
        Err(HistoryError::ReplyMismatch {
            index: 0,
            call: "get",
            reply: "done"
        })
    );
    let backwards = [put(1, "1", 0, 10), put(1, "2", 20, 15)];
    let error = check(&backwards, &CheckConfig::default()).expect_err("refused");
    assert_eq!(
        error.to_string(),
        "operation 1: returned at 15 ns, before its invoke at 20 ns"
    );
}

// ---------------------------------------------------------------------------------------
// Property test: simulated registers.

/// A history of a correct store: `clients` clients issue operations on `keys` keys
/// one at a time each, with random think and service times; each operation takes
/// effect atomically at a random instant inside its window (an indeterminate one at a
/// random instant after its invoke, or never) and its reply is the register's at that
/// instant. Every write writes a fresh value.
fn simulated(prng: &mut Prng, clients: u64, keys: u64, per_client: u64) -> Vec<Operation> {
    struct Pending {
        op: Operation,
        effect_ns: Option<u64>,
        indeterminate: bool,
        failed: bool,
    }
    let mut pending = Vec::new();
    let mut fresh = 0_u64;
    for client in 0..clients {
        let mut now = prng.below(20);
        for _ in 0..per_client {
            let invoke_ns = now + prng.below(30);
            let at_ns = invoke_ns + prng.below(60);
            fresh += 1;
            let call = match prng.below(10) {
                0..=2 => Call::Put {
                    value: fresh.to_string().into_bytes(),
                },
                3..=5 => Call::Get,
                6 => Call::Delete,
                _ => Call::Cas {
                    expected: match prng.below(3) {
                        0 => None,
                        _ => Some(
                            prng.range(fresh.saturating_sub(8), fresh)
                                .to_string()
                                .into_bytes(),
                        ),
                    },
                    new: fresh.to_string().into_bytes(),
                },
            };
            let indeterminate = prng.below(12) == 0;
            let failed = !indeterminate && prng.below(15) == 0;
            let effect_ns = if failed || (indeterminate && prng.coin()) {
                None
            } else if indeterminate {
                Some(invoke_ns + prng.below(200))
            } else {
                Some(prng.range(invoke_ns, at_ns))
            };
            let op = Operation {
                client,
                key: prng.below(keys).to_string().into_bytes(),
                call,
                invoke_ns,
                outcome: Outcome::Ok {
                    at_ns,
                    reply: Reply::Done,
                },
            };
            pending.push(Pending {
                op,
                effect_ns,
                indeterminate,
                failed,
            });
            // An indeterminate client moves on at once (it gave up waiting).
            now = at_ns + 1;
        }
    }
    // Apply the effects in effect order to one register per key; fill in the replies.
    let mut order: Vec<usize> = (0..pending.len())
        .filter(|&i| pending[i].effect_ns.is_some())
        .collect();
    order.sort_by_key(|&i| (pending[i].effect_ns, i));
    let mut registers: BTreeMap<Key, Option<Value>> = BTreeMap::new();
    for i in order {
        let op = &mut pending[i].op;
        let register = registers.entry(op.key.clone()).or_insert(None);
        let reply = match &op.call {
            Call::Put { value } => {
                *register = Some(value.clone());
                Reply::Done
            }
            Call::Delete => {
                *register = None;
                Reply::Done
            }
            Call::Get => Reply::Value(register.clone()),
            Call::Cas { expected, new } => {
                let swaps = expected == register;
                if swaps {
                    *register = Some(new.clone());
                }
                Reply::Swapped(swaps)
            }
        };
        if let Outcome::Ok { reply: r, .. } = &mut op.outcome {
            *r = reply;
        }
    }
    pending
        .into_iter()
        .map(|p| {
            let mut op = p.op;
            let at_ns = return_ns(&op);
            if p.indeterminate {
                op.outcome = Outcome::Indeterminate;
            } else if p.failed {
                op.outcome = Outcome::Failed { at_ns };
            } else if p.effect_ns.is_none() {
                unreachable!("a completed operation took effect");
            }
            // A failed CAS / get keeps the placeholder reply; it is never read.
            op
        })
        .collect()
}

/// Index of a completed get that can be made to return a stale value: a put W1 of key k
/// returned before a completed write W2 of k was invoked, and W2 returned before the
/// get was invoked. Returns (get, W1's value). Values are fresh per write, so only W1
/// wrote that value, and the get cannot see it.
fn stale_target(history: &[Operation]) -> Option<(usize, Value)> {
    let completed_write = |o: &Operation| {
        matches!(
            (&o.call, &o.outcome),
            (Call::Put { .. } | Call::Delete, Outcome::Ok { .. })
                | (
                    Call::Cas { .. },
                    Outcome::Ok {
                        reply: Reply::Swapped(true),
                        ..
                    }
                )
        )
    };
    for (g, read) in history.iter().enumerate() {
        if !matches!((&read.call, &read.outcome), (Call::Get, Outcome::Ok { .. })) {
            continue;
        }
        for w1 in history.iter().filter(|o| o.key == read.key) {
            let (Call::Put { value }, Outcome::Ok { at_ns: w1_ret, .. }) = (&w1.call, &w1.outcome)
            else {
                continue;
            };
            let overwritten = history.iter().any(|w2| {
                w2.key == read.key
                    && completed_write(w2)
                    && w2.invoke_ns > *w1_ret
                    && return_ns(w2) < read.invoke_ns
            });
            if overwritten {
                return Some((g, value.clone()));
            }
        }
    }
    None
}

// Goal: histories of a correct register are accepted, whatever the concurrency,
// failures and indeterminate outcomes; one read made stale, or made to return a value
// never written, is rejected and blamed (that read among the operations named).
// Method: 300 simulated histories (2-5 clients, 1-3 keys, up to 30 operations each),
// checked as recorded and with one read mutated.
#[test]
fn simulated_registers_accepted_and_mutations_rejected() {
    let config = CheckConfig::default();
    let (mut stale, mut unwritten) = (0, 0);
    for seed in 0..300_u64 {
        let mut prng = Prng::new(seed);
        let clients = prng.range(2, 5);
        let keys = prng.range(1, 3);
        let per_client = prng.range(5, 30);
        let history = simulated(&mut prng, clients, keys, per_client);
        match check(&history, &config).expect("well formed") {
            Verdict::Linearizable => {}
            other => {
                panic!("seed {seed}: a correct register's history was not accepted: {other:?}")
            }
        }
        let mut mutated = history.clone();
        let (target, value) = match stale_target(&history) {
            Some((g, value)) => {
                stale += 1;
                (g, Some(value))
            }
            None => {
                let Some(g) = history
                    .iter()
                    .position(|o| matches!((&o.call, &o.outcome), (Call::Get, Outcome::Ok { .. })))
                else {
                    continue;
                };
                unwritten += 1;
                (g, Some(b"never written".to_vec()))
            }
        };
        if let Outcome::Ok { reply, .. } = &mut mutated[target].outcome {
            *reply = Reply::Value(value);
        }
        match check(&mutated, &config).expect("well formed") {
            Verdict::Violation(violation) => {
                assert!(
                    violation.operations.contains(&target),
                    "seed {seed}: {violation}"
                );
                assert_eq!(violation.key, history[target].key);
            }
            other => panic!("seed {seed}: a mutated read at {target} was accepted: {other:?}"),
        }
    }
    assert!(
        stale > 100 && unwritten > 0,
        "stale {stale}, unwritten {unwritten}"
    );
}
