//! Recovery from partial connectivity, measured: while one link is cut (one way or
//! both) or flaps, every node can still reach every other through a third, so a group
//! whose leader lost a follower, or whose preferred replica sits behind the bad link,
//! must keep choosing values or recover within a few election timeouts. This records,
//! for each partial fault the cluster injects (`cluster::faults`), the longest time any
//! group waited for its chosen watermark to move while a client proposal to it was
//! outstanding, and whether the window was *clean*: no crash, restart, disk fault or
//! membership change during it, all nodes up at its start, so that the stall is the
//! partial fault's alone.
//!
//! Method: per group, `waiting_since` is the time of the first proposal submitted since
//! the group's highest chosen watermark (over all nodes) last moved; when it moves, the
//! wait `now - waiting_since` is a stall candidate. A wait still open when the window
//! ends counts up to the end (what follows is the recovery from the heal, not from the
//! partial fault). Waits that began before the window are not counted.
//!
//! The swarm only reports these figures (seeds combine partial faults with message loss
//! up to 20 % and delays up to tens of milliseconds); `tests/partial_connectivity.rs`
//! asserts the bound on clean windows of a calmer network with
//! [`PartialRecovery::check`].
//!
//! Invariants: at most one window is open; `windows` holds the closed ones in order.

use std::collections::BTreeMap;

use super::{seconds, Violation};
use crate::paxos::{GroupId, Instance};

const NAME: &str = "partial";

/// The shape of a partial fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PartialKind {
    /// One link cut both ways.
    Link,
    /// One link cut in one direction only.
    OneWay,
    /// One link cut and mended in turns.
    Flapping,
}

impl PartialKind {
    /// A short name for reports.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            PartialKind::Link => "link",
            PartialKind::OneWay => "one-way",
            PartialKind::Flapping => "flapping",
        }
    }
}

/// A closed window: what one partial fault cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartialWindow {
    /// The fault's shape.
    pub kind: PartialKind,
    /// True time it began.
    pub start_ns: u64,
    /// How long it lasted.
    pub duration_ns: u64,
    /// The longest wait of a group for progress within it (0: none waited).
    pub stall_ns: u64,
    /// No other fault overlapped it (module docs).
    pub clean: bool,
    /// One end of the link led a group when it was cut.
    pub leader_end: bool,
}

/// The open window.
#[derive(Clone, Debug)]
struct Open {
    kind: PartialKind,
    leader_end: bool,
    start_ns: u64,
    clean: bool,
    stall_ns: u64,
    /// Per group: the first proposal since its chosen watermark last moved.
    waiting_since: BTreeMap<GroupId, u64>,
}

/// The measurement of every partial fault of a run (module docs).
#[derive(Clone, Debug, Default)]
pub struct PartialRecovery {
    open: Option<Open>,
    /// Per group: the highest chosen watermark any node reported.
    chosen: BTreeMap<GroupId, Instance>,
    windows: Vec<PartialWindow>,
}

impl PartialRecovery {
    /// A partial fault of `kind` began at `now_ns`; `clean` says whether every node is
    /// up, `leader_end` whether one end of the link leads a group. Closes an open window
    /// first (a driver that forgot to end it).
    pub fn begin(&mut self, kind: PartialKind, now_ns: u64, clean: bool, leader_end: bool) {
        self.end(now_ns);
        self.open = Some(Open {
            kind,
            leader_end,
            start_ns: now_ns,
            clean,
            stall_ns: 0,
            waiting_since: BTreeMap::new(),
        });
    }

    /// The open partial fault ended at `now_ns` (nothing when none is open).
    pub fn end(&mut self, now_ns: u64) {
        let Some(open) = self.open.take() else {
            return;
        };
        let open_waits = open
            .waiting_since
            .values()
            .map(|since| now_ns.saturating_sub(*since));
        let stall_ns = open_waits.fold(open.stall_ns, u64::max);
        self.windows.push(PartialWindow {
            kind: open.kind,
            start_ns: open.start_ns,
            duration_ns: now_ns.saturating_sub(open.start_ns),
            stall_ns,
            clean: open.clean,
            leader_end: open.leader_end,
        });
    }

    /// Another fault (a crash, a restart, a disk fault, a membership change) happened:
    /// the open window's stall is no longer the partial fault's alone.
    pub fn spoil(&mut self) {
        if let Some(open) = self.open.as_mut() {
            open.clean = false;
        }
    }

    /// A client submitted a proposal for `group` at `now_ns`.
    pub fn observe_propose(&mut self, group: GroupId, now_ns: u64) {
        if let Some(open) = self.open.as_mut() {
            open.waiting_since.entry(group).or_insert(now_ns);
        }
    }

    /// A node reported `group` chosen through `chosen_through` at `now_ns`.
    pub fn observe_chosen(&mut self, group: GroupId, chosen_through: Instance, now_ns: u64) {
        let known = self.chosen.entry(group).or_insert(Instance(0));
        if chosen_through <= *known {
            return;
        }
        *known = chosen_through;
        if let Some(open) = self.open.as_mut() {
            if let Some(since) = open.waiting_since.remove(&group) {
                open.stall_ns = open.stall_ns.max(now_ns.saturating_sub(since));
            }
        }
    }

    /// The closed windows, in order.
    #[must_use]
    pub fn windows(&self) -> &[PartialWindow] {
        &self.windows
    }

    /// Fails on the first clean window whose stall exceeded `bound_ns`.
    pub fn check(&self, bound_ns: u64) -> Result<(), Violation> {
        match self
            .windows
            .iter()
            .find(|w| w.clean && w.stall_ns > bound_ns)
        {
            None => Ok(()),
            Some(w) => Err(Violation::new(
                NAME,
                format!(
                    "a {} fault from {} for {} ms stalled a group for {} ms (bound {} ms)",
                    w.kind.name(),
                    seconds(w.start_ns),
                    w.duration_ns / 1_000_000,
                    w.stall_ns / 1_000_000,
                    bound_ns / 1_000_000
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{PartialKind, PartialRecovery};
    use crate::paxos::{GroupId, Instance};

    const MS: u64 = 1_000_000;

    // Goal: a stall is the wait from the first proposal after the last progress to the
    // next progress, the longest one per window, open waits counted to the window's end.
    // Method: script proposals and watermarks around one window and read it back.
    #[test]
    fn the_longest_wait_for_progress_is_the_stall() {
        let mut m = PartialRecovery::default();
        let g = GroupId(1);
        m.observe_propose(g, 0); // before any window: not counted
        m.begin(PartialKind::Link, 10 * MS, true, true);
        m.observe_propose(g, 20 * MS);
        m.observe_propose(g, 30 * MS); // the wait still runs from 20
        m.observe_chosen(g, Instance(1), 120 * MS); // 100 ms
        m.observe_chosen(g, Instance(1), 130 * MS); // no move: nothing
        m.observe_propose(g, 140 * MS);
        m.observe_chosen(g, Instance(2), 150 * MS); // 10 ms
        m.observe_propose(GroupId(2), 160 * MS);
        m.end(400 * MS); // group 2 waited 240 ms, still open
        let w = m.windows()[0];
        assert_eq!(w.stall_ns, 240 * MS);
        assert_eq!(w.duration_ns, 390 * MS);
        assert!(w.clean);
        assert!(m.check(240 * MS).is_ok());
        assert!(m.check(239 * MS).is_err());
    }

    // Goal: another fault during a window marks it unclean, and the bound ignores it.
    // Method: spoil a window with a long stall; check passes; a clean one fails.
    #[test]
    fn a_spoiled_window_is_not_checked() {
        let mut m = PartialRecovery::default();
        m.begin(PartialKind::Flapping, 0, true, false);
        m.observe_propose(GroupId(1), 0);
        m.spoil();
        m.end(10_000 * MS);
        assert!(!m.windows()[0].clean);
        assert!(m.check(MS).is_ok());
        m.begin(PartialKind::OneWay, 20_000 * MS, true, false);
        m.observe_propose(GroupId(1), 20_000 * MS);
        m.end(25_000 * MS);
        assert!(m.check(MS).is_err());
    }
}
