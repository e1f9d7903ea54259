//! The admission of accepted connections into their handshake, decided at once with
//! no I/O and no sleep: a source address with `pending_per_source_max` handshakes
//! pending is refused, and with `pending_max` pending the OLDEST is evicted to make
//! room, so idle or half-sent connections cannot lock out a restarting peer. Pure: the
//! link closes what this says to close.
//!
//! Invariant: at most `pending_max` connections are pending, at most
//! `pending_per_source_max` of them from one source address.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyFromSource {
    /// The source address.
    pub source: IpAddr,
    /// Its handshakes pending.
    pub pending: usize,
}

impl TooManyFromSource {
    /// The close counter's name.
    pub const REASON: &'static str = "too many pending from source";
}

impl fmt::Display for TooManyFromSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} handshakes pending from {}",
            self.pending, self.source
        )
    }
}

/// The connection evicted to make room for a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Evicted {
    /// Its connection id.
    pub id: u64,
    /// Its source address.
    pub source: IpAddr,
    /// The bound that was reached (`pending_max`).
    pub pending_max: usize,
}

impl Evicted {
    /// The close counter's name.
    pub const REASON: &'static str = "evicted";
}

impl fmt::Display for Evicted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "oldest of {} pending handshakes, to make room",
            self.pending_max
        )
    }
}

/// The accepted connections still in their handshake, by connection id (ids grow, so
/// the first is the oldest), with their source address.
#[derive(Debug)]
pub struct PendingHandshakes {
    pending: BTreeMap<u64, IpAddr>,
    pending_max: usize,
    per_source_max: usize,
}

impl PendingHandshakes {
    /// No connection pending, with the bounds `pending_max` and `per_source_max`.
    #[must_use]
    pub fn new(pending_max: usize, per_source_max: usize) -> PendingHandshakes {
        assert!(
            pending_max >= 1 && per_source_max >= 1,
            "pending_max = {pending_max}, per_source_max = {per_source_max}: must be positive"
        );
        PendingHandshakes {
            pending: BTreeMap::new(),
            pending_max,
            per_source_max,
        }
    }

    /// Admits connection `id` (above every id admitted before) from `source`; returns
    /// the oldest pending connection, evicted to make room when `pending_max` were
    /// pending (the caller closes it).
    ///
    /// # Errors
    ///
    /// [`TooManyFromSource`] when `source` has `per_source_max` pending: nothing
    /// changed, the caller closes the new connection.
    pub fn admit(&mut self, id: u64, source: IpAddr) -> Result<Option<Evicted>, TooManyFromSource> {
        assert!(
            self.pending
                .last_key_value()
                .is_none_or(|(last, _)| *last < id),
            "connection id {id} is not above every pending one"
        );
        let from_source = self.pending.values().filter(|ip| **ip == source).count();
        if from_source >= self.per_source_max {
            return Err(TooManyFromSource {
                source,
                pending: from_source,
            });
        }
        let mut evicted = None;
        if self.pending.len() >= self.pending_max {
            let (oldest, oldest_source) = self
                .pending
                .pop_first()
                .expect("pending_max >= 1, so a full map has a first entry");
            evicted = Some(Evicted {
                id: oldest,
                source: oldest_source,
                pending_max: self.pending_max,
            });
        }
        self.pending.insert(id, source);
        assert!(self.pending.len() <= self.pending_max);
        Ok(evicted)
    }

    /// Connection `id` left its handshake (passed it, or ended); no-op when it is not
    /// pending.
    pub fn remove(&mut self, id: u64) {
        self.pending.remove(&id);
    }

    /// Connections pending.
    #[cfg(test)]
    #[must_use]
    pub fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{Evicted, PendingHandshakes, TooManyFromSource};
    use crate::prng::Prng;
    use std::net::{IpAddr, Ipv4Addr};

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    // Goal: at pending_max the oldest is evicted, a source at its bound is refused,
    // and a connection that left its handshake frees its place.
    // Method: bounds 4 and 2, admissions from chosen sources.
    #[test]
    fn oldest_is_evicted_and_a_busy_source_refused() {
        let mut pending = PendingHandshakes::new(4, 2);
        for id in 0..4 {
            assert_eq!(pending.admit(id, ip(2 + id as u8)), Ok(None));
        }
        assert_eq!(
            pending.admit(4, ip(6)),
            Ok(Some(Evicted {
                id: 0,
                source: ip(2),
                pending_max: 4
            }))
        );
        assert_eq!(
            pending.admit(5, ip(6)),
            Ok(Some(Evicted {
                id: 1,
                source: ip(3),
                pending_max: 4
            }))
        );
        let refused = pending.admit(6, ip(6)).expect_err("third from one source");
        assert_eq!(
            refused,
            TooManyFromSource {
                source: ip(6),
                pending: 2
            }
        );
        assert_eq!(refused.to_string(), "2 handshakes pending from 127.0.0.6");
        assert_eq!(pending.len(), 4);
        pending.remove(4);
        assert_eq!(pending.admit(7, ip(6)), Ok(None));
        assert_eq!(pending.len(), 4);
    }

    // Goal: whatever the arrivals and departures, the bounds hold.
    // Method: 10,000 random admissions and removals over 5 sources.
    #[test]
    fn bounds_hold_under_random_arrivals() {
        let mut rng = Prng::new(0x7065_6e64);
        let mut pending = PendingHandshakes::new(6, 3);
        let mut live: Vec<(u64, IpAddr)> = Vec::new();
        for id in 0..10_000 {
            if rng.coin() && !live.is_empty() {
                let (gone, _) = live.swap_remove(rng.index(live.len()));
                pending.remove(gone);
            }
            let source = ip(rng.range(1, 5) as u8);
            match pending.admit(id, source) {
                Ok(evicted) => {
                    if let Some(e) = evicted {
                        let oldest = live.iter().map(|(i, _)| *i).min();
                        assert_eq!(Some(e.id), oldest);
                        live.retain(|(i, _)| *i != e.id);
                    }
                    live.push((id, source));
                }
                Err(refused) => {
                    let count = live.iter().filter(|(_, s)| *s == source).count();
                    assert_eq!(refused.pending, count);
                    assert_eq!(count, 3);
                }
            }
            assert!(pending.len() <= 6 && pending.len() == live.len());
            for s in 1..=5 {
                assert!(live.iter().filter(|(_, x)| *x == ip(s)).count() <= 3);
            }
        }
    }
}
