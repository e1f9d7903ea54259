//! The one place that reads the operating system's clocks. Everything else gets time
//! as `Nanos` from here (the runtime) or from the simulator's virtual clock, so the
//! protocol stays deterministic and the simulator can drive it.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::paxos::Nanos;

/// A monotonic clock: nanoseconds since the clock was created.
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock reading zero now.
    #[must_use]
    pub fn start() -> MonotonicClock {
        MonotonicClock {
            origin: Instant::now(),
        }
    }

    /// Nanoseconds since `start` (saturating at `u64::MAX`, about 584 years).
    #[must_use]
    pub fn now(&self) -> Nanos {
        Nanos(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// Seconds since `start`, for reports.
    #[must_use]
    pub fn elapsed_s(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }
}

/// A seed that differs from run to run (wall-clock nanoseconds, mixed), for choosing
/// which simulator seeds to try; the chosen seeds are printed so any run replays.
#[must_use]
pub fn entropy_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16
}
