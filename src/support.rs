//! Small helpers shared by several layers, kept in one copy: a poison-tolerant mutex
//! lock, a percentile over sorted samples, a directory fsync, little-endian reads, and
//! the high-water mark that bounds a reused buffer's capacity ([`high_water`]), and the
//! jump consistent hash ([`jump_hash`]).
//!
//! Nothing here knows of Paxos, the WAL or the wire; each helper is a few lines with
//! one meaning.

pub mod high_water;

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The bucket of `key` among `buckets` buckets, by jump consistent hash (Lamping &
/// Veach 2014): growing to more buckets moves only the keys that must move. Places
/// groups on shards (`runtime::shard_of`) and keys on groups (`kv::group_of`).
///
/// # Panics
///
/// When `buckets` is 0.
#[must_use]
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    assert!(buckets > 0, "jump_hash needs at least one bucket");
    // A linear congruential walk whose jumps land in the last bucket before `buckets`.
    let mut bucket: i64 = -1;
    let mut next: i64 = 0;
    while next < i64::from(buckets) {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1_u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    u32::try_from(bucket).expect("a bucket below buckets")
}

/// Locks `mutex`, taking the state as it is if a holder panicked.
///
/// Every mutex of the crate guards state that stays consistent across a panic
/// (queues, counters, maps updated by single assignments), so a poisoned lock is not
/// a reason to panic in turn.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `p`-quantile (0.0..=1.0) of ascending `sorted` samples, nearest rank; 0.0 when
/// there are none.
#[must_use]
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
    sorted[at] as f64
}

/// Makes the entries of directory `dir` (files created, renamed or removed in it)
/// durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The little-endian `u32` at `bytes[at..at + 4]`; the caller has checked the length
/// (panics otherwise, as slicing does).
pub(crate) fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// The little-endian `u64` at `bytes[at..at + 8]`; the caller has checked the length
/// (panics otherwise, as slicing does).
pub(crate) fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_takes_the_nearest_rank() {
        let samples = [10, 20, 30, 40, 50];
        assert_eq!(percentile(&samples, 0.0), 10.0);
        assert_eq!(percentile(&samples, 0.5), 30.0);
        assert_eq!(percentile(&samples, 0.99), 50.0);
        assert_eq!(percentile(&samples, 1.0), 50.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn little_endian_reads() {
        let bytes = [1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(le_u32(&bytes, 0), 1);
        assert_eq!(le_u64(&bytes, 4), 2);
    }

    #[test]
    fn a_poisoned_lock_is_taken_as_it_is() {
        let mutex = std::sync::Arc::new(Mutex::new(7));
        let shared = mutex.clone();
        let _ = std::thread::spawn(move || {
            let _guard = shared.lock();
            panic!("poison the lock");
        })
        .join();
        assert!(mutex.is_poisoned());
        assert_eq!(*lock(&mutex), 7);
    }
}
