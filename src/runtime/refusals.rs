//! Rate-limited reports of peer messages the groups refused as out of bounds (forged or
//! corrupt, see `paxos::bounds`): the first refusal of each reason is reported in full
//! at once, later ones are summed into one summary line per
//! [`REFUSAL_SUMMARY_INTERVAL_NS`] (a [`LogBudget`] of one line per reason, ever). Pure:
//! time comes in as `now`, lines go out as strings for the executor to log.
//!
//! Invariant: however many messages are refused, the lines produced over a span of
//! time `t` number at most (distinct reasons) + `t / REFUSAL_SUMMARY_INTERVAL_NS` + 1:
//! a flood of forged packets never becomes a flood of log lines.

use std::collections::BTreeMap;

use super::log_budget::{Admit, LogBudget, WINDOW_NEVER};
use crate::paxos::{Nanos, Refused};

/// The shortest time between two summary lines.
pub const REFUSAL_SUMMARY_INTERVAL_NS: u64 = 10_000_000_000;

/// The rate limiter of refusal reports. See the module docs.
#[derive(Clone, Debug)]
pub struct RefusalLog {
    /// One full line per reason, ever; the rest counted for the summaries.
    budget: LogBudget<&'static str>,
    /// The last refusal of each reason counted since the last summary.
    last: BTreeMap<&'static str, Refused>,
    /// Lines produced so far.
    lines: u64,
}

impl Default for RefusalLog {
    fn default() -> RefusalLog {
        RefusalLog {
            budget: LogBudget::new(1, WINDOW_NEVER),
            last: BTreeMap::new(),
            lines: 0,
        }
    }
}

fn describe(refused: &Refused) -> String {
    format!(
        "from node {} for group {}: {}",
        refused.from.0, refused.group.0, refused.out_of_bounds
    )
}

impl RefusalLog {
    /// Notes one refusal at `now`; pushes a line onto `lines` when it is the first of
    /// its reason.
    pub fn note(&mut self, now: Nanos, refused: Refused, lines: &mut Vec<String>) {
        match self.budget.admit(refused.reason, now) {
            Admit::Log { .. } => {
                self.lines += 1;
                lines.push(format!(
                    "refused a peer message ({}) {}: forged or corrupt, nothing of it is kept \
                     (further refusals are summarised every {} s)",
                    refused.reason,
                    describe(&refused),
                    REFUSAL_SUMMARY_INTERVAL_NS / 1_000_000_000
                ));
            }
            Admit::Suppress => {
                self.last.insert(refused.reason, refused);
            }
        }
    }

    /// Pushes the summary line onto `lines` when one is due at `now`: at least
    /// [`REFUSAL_SUMMARY_INTERVAL_NS`] after the oldest refusal it sums up.
    pub fn flush(&mut self, now: Nanos, lines: &mut Vec<String>) {
        let Some(since) = self.budget.suppressed_since() else {
            return;
        };
        if now < since.plus(REFUSAL_SUMMARY_INTERVAL_NS) {
            return;
        }
        let counts = self.budget.take_suppressed();
        let total: u64 = counts.iter().map(|(_, count)| count).sum();
        let parts: Vec<String> = counts
            .iter()
            .map(|(reason, count)| {
                let last = self
                    .last
                    .get(reason)
                    .expect("a reason with refusals counted has its last one");
                format!("{reason} {count} (last {})", describe(last))
            })
            .collect();
        self.last.clear();
        self.lines += 1;
        lines.push(format!(
            "refused {total} more out-of-bounds peer messages: {}",
            parts.join("; ")
        ));
    }

    /// Lines produced so far.
    #[must_use]
    pub fn lines(&self) -> u64 {
        self.lines
    }
}

#[cfg(test)]
mod tests {
    use super::{RefusalLog, REFUSAL_SUMMARY_INTERVAL_NS};
    use crate::paxos::{Bound, GroupId, Nanos, NodeId, OutOfBounds, Refused};

    fn refused(reason: &'static str) -> Refused {
        Refused {
            group: GroupId(7),
            from: NodeId(3),
            reason,
            out_of_bounds: OutOfBounds {
                field: "Prepare.ballot.round",
                value: u64::MAX,
                bound: Bound::AtMost(1 << 48),
            },
        }
    }

    // Goal: a flood of refusals yields one full line per reason and at most one summary
    // per interval, and the summary counts every refusal it stands for.
    // Method: refuse 100,000 messages of two reasons over 60 s of simulated time,
    // flushing after each; count the lines and read the summaries' totals back.
    #[test]
    fn flood_is_rate_limited() {
        let mut log = RefusalLog::default();
        let mut lines = Vec::new();
        let n = 100_000_u64;
        let span = 60 * 1_000_000_000_u64;
        for i in 0..n {
            let now = Nanos(i * (span / n));
            let reason = if i % 2 == 0 {
                "prepare_out_of_bounds"
            } else {
                "accept_out_of_bounds"
            };
            log.note(now, refused(reason), &mut lines);
            log.flush(now, &mut lines);
        }
        log.flush(Nanos(span + REFUSAL_SUMMARY_INTERVAL_NS), &mut lines);
        let firsts = lines.iter().filter(|l| l.starts_with("refused a ")).count();
        assert_eq!(firsts, 2, "{lines:#?}");
        assert!(
            lines[0].contains("Prepare.ballot.round = 18446744073709551615"),
            "{}",
            lines[0]
        );
        let summaries = lines.len() - firsts;
        let bound = (span / REFUSAL_SUMMARY_INTERVAL_NS + 1) as usize;
        assert!(summaries <= bound, "{summaries} summaries > {bound}");
        let summed: u64 = lines
            .iter()
            .filter_map(|l| l.strip_prefix("refused "))
            .filter_map(|l| l.split(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(
            summed,
            n - 2,
            "every refusal after the first two is summarised"
        );
        assert_eq!(log.lines(), lines.len() as u64);
    }
}
