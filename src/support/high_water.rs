//! How much capacity a reused byte buffer keeps: the links' buffers (the writer's
//! buffer and spare toward each peer, each reader's frame buffer) and the WAL's batch
//! buffers (`wal::group_commit`).
//!
//! Invariant: a buffer given back through [`HighWater::recycle`] or
//! [`HighWater::trim`] keeps at most
//! `KEEP_SLACK` x the largest use of the last two windows of `KEEP_WINDOW` uses, and
//! never less than `KEEP_SIZE_MIN`; so once a burst (a catch-up run, a backlog after a
//! slow peer, a truncation's rewrites filling a whole batch) has passed, a buffer holds
//! about twice its ordinary use instead of the largest it ever had, while the ordinary
//! uses still reuse their allocation.

/// Uses per window of the high-water mark: the mark is the largest use of the current
/// and the previous window, so a burst is forgotten after two windows.
pub const KEEP_WINDOW: u32 = 256;

/// A recycled buffer keeps up to this many times the high-water mark.
pub const KEEP_SLACK: usize = 2;

/// Capacity a recycled buffer may always keep (small rounds do not reallocate).
pub const KEEP_SIZE_MIN: usize = 64 << 10;

/// The largest use of a buffer over the last two windows of `KEEP_WINDOW` uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct HighWater {
    previous_max: usize,
    window_max: usize,
    uses: u32,
}

impl HighWater {
    /// Notes one use of `size` bytes.
    pub fn note(&mut self, size: usize) {
        self.window_max = self.window_max.max(size);
        self.uses += 1;
        if self.uses >= KEEP_WINDOW {
            self.previous_max = self.window_max;
            self.window_max = 0;
            self.uses = 0;
        }
    }

    /// The most capacity a recycled buffer keeps now.
    pub fn keep_max(&self) -> usize {
        self.previous_max
            .max(self.window_max)
            .saturating_mul(KEEP_SLACK)
            .max(KEEP_SIZE_MIN)
    }

    /// Notes the use `buffer.len()`, then [`HighWater::trim`]s `buffer`.
    pub fn recycle(&mut self, buffer: &mut Vec<u8>) {
        self.note(buffer.len());
        self.trim(buffer);
    }

    /// Empties `buffer` and shrinks it to `keep_max()` when it holds more capacity
    /// (for a buffer whose use was noted already).
    pub fn trim(&self, buffer: &mut Vec<u8>) {
        buffer.clear();
        let keep = self.keep_max();
        if buffer.capacity() > keep {
            buffer.shrink_to(keep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a buffer keeps the capacity of a burst only while the burst is recent, and
    // ordinary uses never shrink it below what they need.
    // Method: 1 KiB uses, one 8 MiB burst, then 2 windows of 100 KiB uses; count the
    // capacity the buffer keeps after each recycle.
    #[test]
    fn a_burst_is_kept_only_while_recent() {
        let mut mark = HighWater::default();
        let mut buffer = Vec::new();
        for _ in 0..10 {
            buffer.resize(1 << 10, 1);
            mark.recycle(&mut buffer);
            assert!(buffer.is_empty() && buffer.capacity() <= KEEP_SIZE_MIN);
        }
        buffer.resize(8 << 20, 1);
        mark.recycle(&mut buffer);
        assert!(
            buffer.capacity() >= 8 << 20,
            "a recent burst is reused: {}",
            buffer.capacity()
        );
        let ordinary = 100 << 10;
        for _ in 0..2 * KEEP_WINDOW {
            buffer.resize(ordinary, 1);
            mark.recycle(&mut buffer);
        }
        assert!(
            buffer.capacity() >= ordinary && buffer.capacity() <= KEEP_SLACK * ordinary,
            "after two windows the burst is forgotten: {}",
            buffer.capacity()
        );
        assert_eq!(mark.keep_max(), KEEP_SLACK * ordinary);
    }
}
