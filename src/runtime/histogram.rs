//! A fixed-bucket histogram of `u64` observations, cheap enough for a shard's hot path
//! (one comparison search over a static slice of bounds and two additions), and the
//! bucket bounds the runtime uses: fdatasync latency and WAL write size.
//!
//! Invariants: `counts.len() == bounds.len() + 1` (the last bucket is everything above
//! the largest bound); `bounds` ascend strictly; `count()` is the sum of `counts`.

/// Upper bounds (inclusive, nanoseconds) of the fdatasync latency buckets: 25 µs to
/// 2.5 s, in 1-2.5-5 steps (an NVMe flush to a struggling disk).
pub const SYNC_NS_BOUNDS: &[u64] = &[
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
];

/// Upper bounds (inclusive, bytes) of the WAL write size buckets: one 4 KiB block to
/// 16 MiB, doubling (a write is a whole number of blocks).
pub const WRITE_SIZE_BOUNDS: &[u64] = &[
    4 << 10,
    8 << 10,
    16 << 10,
    32 << 10,
    64 << 10,
    128 << 10,
    256 << 10,
    512 << 10,
    1 << 20,
    2 << 20,
    4 << 20,
    8 << 20,
    16 << 20,
];

/// Observations counted into buckets of fixed upper bounds, and their sum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    bounds: &'static [u64],
    /// Observations per bucket (not cumulative); the last is above every bound.
    counts: Vec<u64>,
    /// The sum of the observations (saturating).
    sum: u64,
}

impl Default for Histogram {
    /// A histogram of one bucket (no bounds): only a count and a sum.
    fn default() -> Histogram {
        Histogram::new(&[])
    }
}

impl Histogram {
    /// An empty histogram over `bounds` (strictly ascending upper bounds).
    #[must_use]
    pub fn new(bounds: &'static [u64]) -> Histogram {
        assert!(
            bounds.windows(2).all(|w| w[0] < w[1]),
            "histogram bounds must ascend strictly: {bounds:?}"
        );
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0,
        }
    }

    /// Counts `value` into the first bucket whose bound is at least `value`.
    pub fn record(&mut self, value: u64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        self.counts[bucket] += 1;
        self.sum = self.sum.saturating_add(value);
    }

    /// The buckets' upper bounds, ascending (the last bucket, above them, has none).
    #[must_use]
    pub fn bounds(&self) -> &'static [u64] {
        self.bounds
    }

    /// Observations per bucket, not cumulative: `bounds().len() + 1` of them.
    #[must_use]
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Observations in all.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of the observations (saturating at `u64::MAX`).
    #[must_use]
    pub fn sum(&self) -> u64 {
        self.sum
    }
}

#[cfg(test)]
mod tests {
    use super::{Histogram, SYNC_NS_BOUNDS, WRITE_SIZE_BOUNDS};

    // Goal: each observation lands in the first bucket whose bound holds it, the
    // overflow bucket takes the rest, and count and sum follow.
    // Method: record values at, just above and far beyond the bounds.
    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        let mut h = Histogram::new(&[10, 100]);
        for value in [0, 10, 11, 100, 101, u64::MAX] {
            h.record(value);
        }
        assert_eq!(h.counts(), &[2, 2, 2]);
        assert_eq!(h.count(), 6);
        assert_eq!(h.sum(), u64::MAX, "the sum saturates");
        let mut empty = Histogram::default();
        empty.record(7);
        assert_eq!((empty.counts(), empty.sum()), (&[1][..], 7));
    }

    // Goal: the runtime's bounds are valid (strictly ascending), else `new` panics.
    // Method: build one of each, and one over descending bounds.
    #[test]
    fn bounds_ascend() {
        assert_eq!(Histogram::new(SYNC_NS_BOUNDS).counts().len(), 17);
        assert_eq!(Histogram::new(WRITE_SIZE_BOUNDS).counts().len(), 14);
        assert!(std::panic::catch_unwind(|| Histogram::new(&[2, 1])).is_err());
    }
}
