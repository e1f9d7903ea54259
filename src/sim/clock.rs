//! A node's monotonic clock in the simulator: true (simulated) time seen through a
//! per-process offset and a bounded drift.
//!
//! Model: an incarnation (process) that starts at true time `T0` reads local time
//! `L0 + floor((t - T0) × (1_000_000 + drift_ppm) / 1_000_000)` at true time `t`, where
//! `L0` is a random offset drawn at start. A restart is a new process: a new `L0`, so
//! local readings of different incarnations are unrelated (like `CLOCK_MONOTONIC` seen
//! by a protocol that must not trust time across restarts). The drift is a property of
//! the hardware and survives restarts.
//!
//! Invariants:
//! - `|drift_ppm| <= drift_bound_ppm < 1_000_000`, so local time never runs backwards
//!   and every local interval is within `(1 ± bound/1e6)` of the true interval, up to
//!   1 ns of rounding;
//! - `local` is non-decreasing in true time within an incarnation;
//! - `true_of` is the exact inverse, rounded up: `true_of(L)` is the FIRST true instant
//!   at which the local clock reads at least `L` (see its doc for why that is the
//!   conservative choice for leases).
//!
//! True time is plain `u64` nanoseconds here; local time is [`Nanos`], the type the
//! runtime and the protocol read.
//!
//! The drifts a seed draws are drawn here too (`draw_drifts`, `draw_large_drift`).

use crate::paxos::Nanos;
use crate::prng::Prng;

const PPM: i64 = 1_000_000;

/// Smallest random offset of a new incarnation's clock (1 s: never near 0).
const OFFSET_NS_MIN: u64 = 1_000_000_000;
/// Largest random offset of a new incarnation's clock (about 2.8 hours).
const OFFSET_NS_MAX: u64 = 10_000_000_000_000;

/// The local monotonic clock of one simulated node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimClock {
    drift_ppm: i32,
    drift_bound_ppm: u32,
    /// True time at which the current incarnation started (`T0`).
    start_true_ns: u64,
    /// Local reading at `start_true_ns` (`L0`).
    start_local: Nanos,
    /// Restarts so far (0 for the first process).
    incarnation: u32,
}

impl SimClock {
    /// A clock for a process starting at true time `true_now_ns`, drifting by
    /// `drift_ppm`, with a random offset drawn from `prng`.
    ///
    /// Panics (programmer error) when `|drift_ppm| > drift_bound_ppm` or the bound is
    /// not below 1_000_000.
    #[must_use]
    pub fn new(drift_ppm: i32, drift_bound_ppm: u32, true_now_ns: u64, prng: &mut Prng) -> Self {
        assert!(
            i64::from(drift_bound_ppm) < PPM,
            "drift bound {drift_bound_ppm} ppm must be below 1_000_000"
        );
        assert!(
            drift_ppm.unsigned_abs() <= drift_bound_ppm,
            "drift {drift_ppm} ppm exceeds the bound {drift_bound_ppm} ppm"
        );
        SimClock {
            drift_ppm,
            drift_bound_ppm,
            start_true_ns: true_now_ns,
            start_local: Nanos(prng.range(OFFSET_NS_MIN, OFFSET_NS_MAX)),
            incarnation: 0,
        }
    }

    /// The local reading at true time `true_ns`.
    ///
    /// Precondition: `true_ns` is not before this incarnation started (a process cannot
    /// read its clock before it exists).
    #[must_use]
    pub fn local(&self, true_ns: u64) -> Nanos {
        assert!(
            true_ns >= self.start_true_ns,
            "true time {true_ns} is before incarnation {} started at {}",
            self.incarnation,
            self.start_true_ns
        );
        let elapsed = u128::from(true_ns - self.start_true_ns);
        let local_elapsed = elapsed * self.rate() / PPM as u128;
        let local_elapsed =
            u64::try_from(local_elapsed).expect("local elapsed time fits in u64 nanoseconds");
        self.start_local.plus(local_elapsed)
    }

    /// The first true instant at which this incarnation's clock reads at least `local`:
    /// `min { t >= T0 : self.local(t) >= local }` (a local time before the incarnation's
    /// first reading maps to the start, `T0`).
    ///
    /// Rounding is up (ceiling), which is conservative for leases: if a node believes
    /// its lease holds while its clock reads below `L`, it believes so at every true
    /// time `t < true_of(L)` and at no true time `t >= true_of(L)`. Reporting
    /// `true_of(L)` as the lease end therefore never understates how long the node may
    /// act on the lease.
    #[must_use]
    pub fn true_of(&self, local: Nanos) -> u64 {
        if local <= self.start_local {
            return self.start_true_ns;
        }
        let local_elapsed = u128::from(local.0 - self.start_local.0);
        // Smallest e with floor(e × rate / 1e6) >= d is ceil(d × 1e6 / rate).
        let elapsed = (local_elapsed * PPM as u128).div_ceil(self.rate());
        let elapsed = u64::try_from(elapsed).expect("true elapsed time fits in u64 nanoseconds");
        self.start_true_ns
            .checked_add(elapsed)
            .expect("true time fits in u64 nanoseconds")
    }

    /// A new process on the same hardware starts at true time `true_now_ns`: a new
    /// random offset, the same drift.
    pub fn restart(&mut self, true_now_ns: u64, prng: &mut Prng) {
        assert!(
            true_now_ns >= self.start_true_ns,
            "restart at {true_now_ns} before the previous start {}",
            self.start_true_ns
        );
        self.start_true_ns = true_now_ns;
        self.start_local = Nanos(prng.range(OFFSET_NS_MIN, OFFSET_NS_MAX));
        self.incarnation += 1;
    }

    /// This clock's drift in ppm (positive = runs fast).
    #[must_use]
    pub fn drift_ppm(&self) -> i32 {
        self.drift_ppm
    }

    /// The drift bound the protocol is told.
    #[must_use]
    pub fn drift_bound_ppm(&self) -> u32 {
        self.drift_bound_ppm
    }

    /// How many times the node restarted (0 for the first process).
    #[must_use]
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// True time at which the current incarnation started.
    #[must_use]
    pub fn start_true_ns(&self) -> u64 {
        self.start_true_ns
    }

    /// Local nanoseconds per 1_000_000 true nanoseconds (positive by the bound).
    fn rate(&self) -> u128 {
        let rate = PPM + i64::from(self.drift_ppm);
        u128::try_from(rate).expect("drift bound keeps the rate positive")
    }
}

/// Largest drift bound an ordinary seed picks (ppm).
pub const CLOCK_DRIFT_BOUND_PPM_MAX: u32 = 500;
/// Largest drift bound a large-drift seed picks (ppm): the largest a group's
/// configuration accepts (`GroupConfig::clock_drift_ppm` is below 10 %).
pub const CLOCK_DRIFT_BOUND_PPM_LARGE_MAX: u32 = 99_999;

/// One drift per node within `±bound`: a quarter of the clocks sit exactly on the bound
/// (the edge is where lease arithmetic breaks first), the others anywhere inside it.
pub(super) fn draw_drifts(p: &mut Prng, bound_ppm: u32, node_count: usize) -> Vec<i32> {
    let bound = i64::from(bound_ppm);
    (0..node_count)
        .map(|_| {
            let drift = match p.below(8) {
                0 => bound,
                1 => -bound,
                _ => {
                    let offset = p.range(0, 2 * u64::from(bound_ppm));
                    i64::try_from(offset).expect("at most 2 × 100,000 ppm") - bound
                }
            };
            i32::try_from(drift).expect("drift is within ±100,000 ppm")
        })
        .collect()
}

/// A quarter of the seeds tell the protocol a drift bound far above the ordinary
/// ones, up to the largest a configuration accepts, and draw the clocks within it (the
/// bound and one drift per node; `None` for the other seeds): a lease computed without
/// its drift margin is then wrong by tens of milliseconds, beyond any network delay
/// that could hide it. Own stream: the seed's other draws stay where they were.
pub(super) fn draw_large_drift(seed: u64, node_count: usize) -> Option<(u32, Vec<i32>)> {
    let mut p = Prng::new(seed ^ 0x4452_4946_5442_4947);
    if p.below(4) != 0 {
        return None;
    }
    let bound = if p.below(2) == 0 {
        CLOCK_DRIFT_BOUND_PPM_LARGE_MAX
    } else {
        p.range(
            u64::from(CLOCK_DRIFT_BOUND_PPM_MAX),
            u64::from(CLOCK_DRIFT_BOUND_PPM_LARGE_MAX),
        ) as u32
    };
    Some((bound, draw_drifts(&mut p, bound, node_count)))
}

#[cfg(test)]
mod tests {
    use super::SimClock;
    use crate::paxos::Nanos;
    use crate::prng::Prng;

    // Goal: local time runs at (1 + drift) of true time, within 1 ns of rounding.
    // Method: compare local intervals against true intervals for fast, slow, exact clocks.
    #[test]
    fn local_runs_at_drifted_rate() {
        let mut prng = Prng::new(1);
        for drift in [-500, -1, 0, 1, 200, 500] {
            let clock = SimClock::new(drift, 500, 7_000, &mut prng);
            let start = clock.local(7_000);
            let second = clock.local(7_000 + 1_000_000_000);
            let expected = (1_000_000_000i64 + i64::from(drift) * 1_000) as u64;
            assert_eq!(second.0 - start.0, expected, "drift {drift}");
            let mut last = start;
            for t in (7_000..7_000 + 5_000).step_by(7) {
                let now = clock.local(t);
                assert!(now >= last, "local time ran backwards at {t}");
                last = now;
            }
        }
    }

    // Goal: true_of is the exact ceiling inverse of local.
    // Method: for random local readings L, check local(true_of(L)) >= L and
    // local(true_of(L) - 1) < L whenever true_of(L) is after the start.
    #[test]
    fn true_of_is_ceiling_inverse() {
        let mut prng = Prng::new(2);
        for drift in [-500, -37, 0, 41, 500] {
            let clock = SimClock::new(drift, 500, 1_000, &mut prng);
            let base = clock.local(1_000).0;
            for _ in 0..2_000 {
                let local = Nanos(base + prng.range(0, 10_000_000_000));
                let t = clock.true_of(local);
                assert!(
                    clock.local(t) >= local,
                    "drift {drift}: local({t}) < {local:?}"
                );
                if t > 1_000 {
                    assert!(
                        clock.local(t - 1) < local,
                        "drift {drift}: not the first instant"
                    );
                }
            }
            assert_eq!(
                clock.true_of(Nanos(base - 1)),
                1_000,
                "before start maps to start"
            );
            for t in [1_000, 1_001, 123_456_789, 9_999_999_999] {
                // Several true instants may share a reading; the first one is returned.
                assert!(clock.true_of(clock.local(t)) <= t, "drift {drift} t {t}");
            }
        }
    }

    // Goal: a restart is a new process: new offset, same drift, incarnation counted.
    // Method: restart and compare readings and the rate across the restart.
    #[test]
    fn restart_changes_offset_keeps_drift() {
        let mut prng = Prng::new(3);
        let mut clock = SimClock::new(100, 100, 0, &mut prng);
        let before = clock.local(5_000_000);
        clock.restart(5_000_000, &mut prng);
        assert_eq!(clock.incarnation(), 1);
        assert_eq!(clock.drift_ppm(), 100);
        assert_eq!(clock.start_true_ns(), 5_000_000);
        assert_ne!(clock.local(5_000_000), before, "offset should be redrawn");
        let a = clock.local(5_000_000);
        let b = clock.local(6_000_000);
        assert_eq!(b.0 - a.0, 1_000_100);
        let mut starts = vec![a];
        for restart in 1..=5u64 {
            clock.restart(5_000_000 + restart * 1_000, &mut prng);
            starts.push(clock.local(clock.start_true_ns()));
        }
        starts.sort();
        starts.dedup();
        assert_eq!(
            starts.len(),
            6,
            "every incarnation starts at a fresh reading"
        );
    }

    // Goal: a drift beyond the told bound is refused.
    // Method: construct a clock with drift 501 and bound 500; expect a panic.
    #[test]
    #[should_panic(expected = "exceeds the bound")]
    fn drift_beyond_bound_panics() {
        let _ = SimClock::new(501, 500, 0, &mut Prng::new(4));
    }

    // Goal: reading the clock before the incarnation existed is a programmer error.
    // Method: restart at 10 and read at 9; expect a panic.
    #[test]
    #[should_panic(expected = "before incarnation")]
    fn reading_before_start_panics() {
        let mut prng = Prng::new(5);
        let mut clock = SimClock::new(0, 0, 0, &mut prng);
        clock.restart(10, &mut prng);
        let _ = clock.local(9);
    }
}
