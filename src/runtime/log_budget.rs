//! The line budget of logs that a peer can flood (closed connections, refused
//! connections, refused messages): per key (a reason), at most `lines_max` lines per
//! window, the rest counted and handed back for summary lines. Pure: time comes in as
//! `now`; the caller writes the lines it is allowed to.
//!
//! Invariants:
//! - per key and per window, [`LogBudget::admit`] says [`Admit::Log`] at most
//!   `lines_max` times;
//! - every admitted event is either logged or counted in exactly one summary count
//!   (handed back by `admit` when the key's next window opens, by
//!   [`LogBudget::take_expired`] or by [`LogBudget::take_suppressed`]).

use std::collections::BTreeMap;

use crate::paxos::Nanos;

/// A window that never ends: each key gets `lines_max` lines in all, and its later
/// events are summed up only by [`LogBudget::take_suppressed`].
pub const WINDOW_NEVER: u64 = u64::MAX;

/// What [`LogBudget::admit`] decides about one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Log it. BEFORE its line, log a summary of `suppressed` events of the key's last
    /// window when > 0. `budget_spent`: this is the key's last line of the window.
    Log {
        /// Events of the key's previous window that were not logged.
        suppressed: u64,
        /// Whether the key has no line left in this window.
        budget_spent: bool,
    },
    /// Count it, log nothing.
    Suppress,
}

/// One key's window.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// When the window began.
    start: Nanos,
    /// Lines logged in it.
    logged: u32,
    /// Events suppressed and not yet handed back.
    suppressed: u64,
    /// When the oldest of those was suppressed (`None`: none).
    suppressed_since: Option<Nanos>,
}

/// A per-key line budget. See the module docs.
#[derive(Clone, Debug)]
pub struct LogBudget<K> {
    lines_max: u32,
    window_ns: u64,
    windows: BTreeMap<K, Window>,
}

impl<K: Ord + Copy> LogBudget<K> {
    /// A budget of `lines_max` lines per key per `window_ns` ([`WINDOW_NEVER`]: one
    /// window for ever).
    #[must_use]
    pub fn new(lines_max: u32, window_ns: u64) -> LogBudget<K> {
        assert!(
            lines_max >= 1 && window_ns >= 1,
            "lines_max = {lines_max}, window_ns = {window_ns}: both must be positive"
        );
        LogBudget {
            lines_max,
            window_ns,
            windows: BTreeMap::new(),
        }
    }

    fn window_over(&self, window: &Window, now: Nanos) -> bool {
        self.window_ns != WINDOW_NEVER && now.0.saturating_sub(window.start.0) >= self.window_ns
    }

    /// Decides about one event of `key` at `now`: log it (within the key's budget of
    /// the window, renewed when the window is over) or count it.
    pub fn admit(&mut self, key: K, now: Nanos) -> Admit {
        let fresh = Window {
            start: now,
            logged: 0,
            suppressed: 0,
            suppressed_since: None,
        };
        let mut window = self.windows.get(&key).copied().unwrap_or(fresh);
        let mut summary = 0;
        if self.window_over(&window, now) {
            summary = window.suppressed;
            window = fresh;
        }
        let admit = if window.logged < self.lines_max {
            window.logged += 1;
            Admit::Log {
                suppressed: summary,
                budget_spent: window.logged == self.lines_max,
            }
        } else {
            window.suppressed += 1;
            window.suppressed_since.get_or_insert(now);
            Admit::Suppress
        };
        self.windows.insert(key, window);
        admit
    }

    /// Takes the counts of every key whose window is over and that suppressed events
    /// (for a summary line even when no later event of that key comes); their next
    /// window starts at `now`.
    pub fn take_expired(&mut self, now: Nanos) -> Vec<(K, u64)> {
        let mut out = Vec::new();
        let window_ns = self.window_ns;
        for (key, window) in &mut self.windows {
            let over =
                window_ns != WINDOW_NEVER && now.0.saturating_sub(window.start.0) >= window_ns;
            if window.suppressed > 0 && over {
                out.push((*key, window.suppressed));
                *window = Window {
                    start: now,
                    logged: 0,
                    suppressed: 0,
                    suppressed_since: None,
                };
            }
        }
        out
    }

    /// When the oldest event not yet handed back was suppressed, over every key
    /// (`None`: nothing is pending).
    #[must_use]
    pub fn suppressed_since(&self) -> Option<Nanos> {
        self.windows
            .values()
            .filter_map(|w| w.suppressed_since)
            .min()
    }

    /// Takes the counts of every key that suppressed events, windows left as they
    /// are (for one summary line over every key).
    pub fn take_suppressed(&mut self) -> Vec<(K, u64)> {
        let mut out = Vec::new();
        for (key, window) in &mut self.windows {
            if window.suppressed > 0 {
                out.push((*key, std::mem::take(&mut window.suppressed)));
                window.suppressed_since = None;
            }
        }
        out
    }

    /// Lines logged in `key`'s current window and events suppressed not yet handed
    /// back.
    #[must_use]
    pub fn state(&self, key: K) -> (u32, u64) {
        self.windows
            .get(&key)
            .map_or((0, 0), |w| (w.logged, w.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::{Admit, LogBudget, WINDOW_NEVER};
    use crate::paxos::Nanos;
    use crate::prng::Prng;

    const WINDOW: u64 = 10_000;

    fn log(suppressed: u64, budget_spent: bool) -> Admit {
        Admit::Log {
            suppressed,
            budget_spent,
        }
    }

    // Goal: lines_max lines per key per window, the rest counted and handed back once,
    // by the next admit of the key or by take_expired; keys are budgeted separately.
    // Method: drive a budget of 3 through two windows by hand.
    #[test]
    fn budget_per_key_renews_each_window() {
        let mut budget = LogBudget::new(3, WINDOW);
        let at = |n: u64| Nanos(1_000 + n);
        assert_eq!(budget.admit("a", at(0)), log(0, false));
        assert_eq!(budget.admit("a", at(1)), log(0, false));
        assert_eq!(budget.admit("a", at(2)), log(0, true));
        for i in 0..100 {
            assert_eq!(budget.admit("a", at(10 + i)), Admit::Suppress);
        }
        assert_eq!(budget.admit("b", at(200)), log(0, false));
        assert_eq!(budget.state("a"), (3, 100));
        assert!(budget.take_expired(at(WINDOW - 1)).is_empty());
        assert_eq!(budget.admit("a", at(WINDOW)), log(100, false));
        for i in 0..3 + 5 {
            budget.admit("a", at(WINDOW + 1 + i));
        }
        assert_eq!(budget.take_expired(at(2 * WINDOW)), vec![("a", 6)]);
        assert!(budget.take_expired(at(3 * WINDOW)).is_empty());
    }

    // Goal: a budget that never renews logs lines_max lines per key in all; the rest
    // are handed back by take_suppressed, with the time of the oldest.
    // Method: one line per key, then counts over two keys, taken twice.
    #[test]
    fn budget_without_window_hands_back_every_count() {
        let mut budget = LogBudget::new(1, WINDOW_NEVER);
        assert_eq!(budget.admit(1, Nanos(5)), log(0, true));
        assert_eq!(budget.suppressed_since(), None);
        assert_eq!(budget.admit(1, Nanos(7)), Admit::Suppress);
        assert_eq!(budget.admit(2, Nanos(8)), log(0, true));
        assert_eq!(budget.admit(2, Nanos(9)), Admit::Suppress);
        assert_eq!(budget.admit(2, Nanos(u64::MAX)), Admit::Suppress);
        assert_eq!(budget.suppressed_since(), Some(Nanos(7)));
        assert!(budget.take_expired(Nanos(u64::MAX)).is_empty());
        assert_eq!(budget.take_suppressed(), vec![(1, 1), (2, 2)]);
        assert_eq!(budget.suppressed_since(), None);
        assert!(budget.take_suppressed().is_empty());
        assert_eq!(budget.admit(1, Nanos(10)), Admit::Suppress);
        assert_eq!(budget.suppressed_since(), Some(Nanos(10)));
    }

    // Goal: whatever the events, lines per key per window stay within lines_max and
    // every event is logged or counted exactly once.
    // Method: 200 random runs of 2,000 events over 4 keys at random times, draining
    // with take_expired or take_suppressed at random; sum logs and counts.
    #[test]
    fn every_event_is_logged_or_counted_once() {
        let mut rng = Prng::new(0x6c6f_6762_7564);
        for run in 0..200 {
            let lines_max = rng.range(1, 5) as u32;
            let mut budget = LogBudget::new(lines_max, WINDOW);
            let mut now = 0;
            let (mut logged, mut counted) = (0_u64, 0_u64);
            let mut in_window: std::collections::BTreeMap<u64, (u64, u32)> = Default::default();
            for _ in 0..2_000 {
                now += rng.below(WINDOW / 50);
                let key = rng.below(4);
                match budget.admit(key, Nanos(now)) {
                    Admit::Log { suppressed, .. } => {
                        logged += 1;
                        counted += suppressed;
                        let (start, lines) = in_window.entry(key).or_insert((now, 0));
                        if now - *start >= WINDOW {
                            *start = now;
                            *lines = 0;
                        }
                        *lines += 1;
                        assert!(*lines <= lines_max, "run {run}: key {key}");
                    }
                    Admit::Suppress => {}
                }
                match rng.below(20) {
                    0 => {
                        for (key, count) in budget.take_expired(Nanos(now)) {
                            counted += count;
                            in_window.insert(key, (now, 0));
                        }
                    }
                    1 => counted += budget.take_suppressed().iter().map(|(_, c)| c).sum::<u64>(),
                    _ => {}
                }
            }
            counted += budget.take_suppressed().iter().map(|(_, c)| c).sum::<u64>();
            assert_eq!(logged + counted, 2_000, "run {run}");
        }
    }
}
