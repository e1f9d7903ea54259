//! Who may hold a connection of the client listener, and how a refused one is closed:
//! the connection bounds (in all, per source address, unauthenticated), the eviction
//! of the oldest unauthenticated connection, refusals that cost the refusing thread
//! microseconds, and a log of refusals rate-limited per reason.
//!
//! Invariants:
//! - at most `connections_max` connections hold a [`Slot`], at most
//!   `connections_per_source_max` of them from one IP address;
//! - at most `unauthenticated_max` slots are unauthenticated: admitting one more shuts
//!   the oldest unauthenticated connection down (its reader then ends), so connections
//!   that never prove the key cannot keep a client that does out;
//! - a slot is released when its last thread ends (the [`Slot`] is dropped), whatever
//!   the reason;
//! - a refusal writes its `Refused` frame without blocking and hands the socket to the
//!   closer thread, which drains the peer's input for at most [`REFUSE_LINGER`] (so
//!   that the kernel does not reset the connection before the peer reads the frame)
//!   and holds at most [`CLOSING_MAX`] sockets; past that a refused socket is closed
//!   at once;
//! - per refusal [`Kind`], at most [`LOG_LINES_MAX`] lines per [`LOG_WINDOW`], plus one
//!   line counting those not logged.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::codec::Encoder;
use crate::client::wire::Body;
use crate::paxos::Nanos;
use crate::runtime::clock::MonotonicClock;
use crate::runtime::log_budget::{Admit, LogBudget};
use crate::support::lock;

/// How long the closer drains a refused connection's input before closing it.
pub const REFUSE_LINGER: Duration = Duration::from_millis(200);

/// Refused sockets the closer holds at once.
pub const CLOSING_MAX: usize = 256;

/// Lines logged per refusal kind per [`LOG_WINDOW`].
pub const LOG_LINES_MAX: u32 = 10;

/// The window of the refusal log's rate limit.
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

/// How often the closer looks at the sockets it holds.
const CLOSER_TICK: Duration = Duration::from_millis(10);

/// Largest `Refused` frame.
const REFUSED_FRAME_SIZE_MAX: usize = 4096;

/// Why a connection was refused or closed; the unit of the log's rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `connections_max` reached.
    Busy,
    /// `connections_per_source_max` reached for the peer's address.
    SourceBusy,
    /// The oldest unauthenticated connection, shut down to admit a new one.
    Evicted,
    /// A wrong or missing hello (version, cluster, kind, nonce), or a close before it.
    Hello,
    /// A proof that does not verify, or something else than a proof.
    Proof,
    /// The handshake did not complete within `handshake_timeout`.
    HandshakeTimeout,
    /// A frame that does not decode, or a message a client may not send.
    BadFrame,
    /// A frame begun did not complete within `frame_timeout`.
    FrameTimeout,
    /// Nothing in flight and nothing received for `idle_timeout`.
    IdleTimeout,
    /// The socket or a thread failed.
    Internal,
}

impl Kind {
    /// What an unauthenticated peer is told: nothing about the node's identity or
    /// configuration, nor which check failed.
    fn public(self) -> &'static str {
        match self {
            Kind::Busy => "too many connections",
            Kind::SourceBusy => "too many connections from this address",
            Kind::Evicted
            | Kind::Hello
            | Kind::Proof
            | Kind::HandshakeTimeout
            | Kind::BadFrame
            | Kind::FrameTimeout
            | Kind::IdleTimeout
            | Kind::Internal => "handshake refused",
        }
    }
}

/// The connection bounds of a listener.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Connections at once.
    pub connections_max: usize,
    /// Connections at once from one IP address.
    pub connections_per_source_max: usize,
    /// Connections at once that have not completed the handshake.
    pub unauthenticated_max: usize,
}

#[derive(Default)]
struct Counts {
    open: usize,
    sources: HashMap<IpAddr, usize>,
    /// Unauthenticated connections by admission order (oldest first).
    pending: BTreeMap<u64, Pending>,
    next_id: u64,
}

/// An unauthenticated connection, as eviction needs it.
struct Pending {
    /// A clone of its socket, to shut it down.
    stream: TcpStream,
    source: IpAddr,
    /// Its slot's eviction flag.
    evicted: Arc<AtomicBool>,
}

impl Counts {
    /// Evicts the oldest unauthenticated connection: releases its place at once (in
    /// all and for its source; its slot's drop then releases nothing) and returns its
    /// socket, to be shut down.
    fn evict_oldest(&mut self) -> Option<TcpStream> {
        let (_, pending) = self.pending.pop_first()?;
        pending.evicted.store(true, Ordering::SeqCst);
        self.release(pending.source);
        Some(pending.stream)
    }

    fn release(&mut self, source: IpAddr) {
        self.open -= 1;
        if let Some(count) = self.sources.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                self.sources.remove(&source);
            }
        }
    }
}

/// The shared admission state of one listener.
pub struct Admission {
    bounds: Bounds,
    counts: Mutex<Counts>,
    /// The rate-limited log of refusals.
    pub log: RefusalLog,
    closer: Mutex<Option<SyncSender<TcpStream>>>,
}

/// One admitted connection's hold on the listener's bounds; released on drop.
pub struct Slot {
    admission: Arc<Admission>,
    source: IpAddr,
    id: u64,
    evicted: Arc<AtomicBool>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = lock(&self.admission.counts);
        // An evicted slot's place was released at its eviction (under this lock).
        if !self.evicted.load(Ordering::SeqCst) {
            counts.pending.remove(&self.id);
            counts.release(self.source);
        }
    }
}

impl Slot {
    /// The connection completed the handshake: it no longer counts as
    /// unauthenticated and can no longer be evicted. False when it was evicted first
    /// (its place is gone: the connection must end).
    #[must_use]
    pub fn authenticated(&self) -> bool {
        let mut counts = lock(&self.admission.counts);
        counts.pending.remove(&self.id);
        !self.evicted.load(Ordering::SeqCst)
    }

    /// Whether the connection was evicted (its eviction is logged already: its end
    /// is not a refusal of its own).
    pub fn evicted(&self) -> bool {
        self.evicted.load(Ordering::SeqCst)
    }
}

impl Admission {
    /// The admission state of a listener with `bounds`; starts the closer thread.
    ///
    /// # Errors
    ///
    /// The closer thread cannot start.
    pub fn start(bounds: Bounds) -> std::io::Result<Arc<Admission>> {
        assert!(
            bounds.connections_max >= 1
                && bounds.connections_per_source_max >= 1
                && bounds.unauthenticated_max >= 1,
            "connection bounds must be positive: {bounds:?}"
        );
        let (sender, receiver) = std::sync::mpsc::sync_channel(CLOSING_MAX);
        std::thread::Builder::new()
            .name("synod-client-close".to_string())
            .spawn(move || close_loop(&receiver))?;
        Ok(Arc::new(Admission {
            bounds,
            counts: Mutex::new(Counts::default()),
            log: RefusalLog::new(),
            closer: Mutex::new(Some(sender)),
        }))
    }

    /// Admits `stream` from `source` within the bounds (evicting the oldest
    /// unauthenticated connection when `unauthenticated_max` is reached), or says why
    /// not.
    pub fn admit(
        self: &Arc<Admission>,
        stream: &TcpStream,
        source: IpAddr,
    ) -> Result<Slot, (Kind, String)> {
        let clone = stream
            .try_clone()
            .map_err(|e| (Kind::Internal, format!("cannot clone the socket: {e}")))?;
        let evicted = {
            let mut counts = lock(&self.counts);
            let from_source = counts.sources.get(&source).copied().unwrap_or(0);
            if from_source >= self.bounds.connections_per_source_max {
                return Err((
                    Kind::SourceBusy,
                    format!(
                        "too many connections from {source}: {from_source} open, \
                         connections_per_source_max = {}",
                        self.bounds.connections_per_source_max
                    ),
                ));
            }
            // Full, but some connections have not proved the key: the oldest of them
            // makes room, so that unauthenticated connections never keep one out.
            let mut evicted = None;
            if counts.open >= self.bounds.connections_max {
                evicted = counts.evict_oldest().map(|s| (s, "connections_max"));
            }
            if counts.open >= self.bounds.connections_max {
                return Err((
                    Kind::Busy,
                    format!(
                        "too many connections: {} open, connections_max = {}",
                        counts.open, self.bounds.connections_max
                    ),
                ));
            }
            counts.open += 1;
            *counts.sources.entry(source).or_insert(0) += 1;
            let id = counts.next_id;
            counts.next_id += 1;
            let flag = Arc::new(AtomicBool::new(false));
            counts.pending.insert(
                id,
                Pending {
                    stream: clone,
                    source,
                    evicted: Arc::clone(&flag),
                },
            );
            if evicted.is_none() && counts.pending.len() > self.bounds.unauthenticated_max {
                evicted = counts.evict_oldest().map(|s| (s, "unauthenticated_max"));
            }
            assert!(counts.pending.len() <= self.bounds.unauthenticated_max);
            assert!(counts.open <= self.bounds.connections_max);
            (
                Slot {
                    admission: Arc::clone(self),
                    source,
                    id,
                    evicted: flag,
                },
                evicted,
            )
        };
        let (slot, evicted) = evicted;
        if let Some((oldest, bound)) = evicted {
            // Its reader sees the end of its input and ends (its slot was released
            // at the eviction already).
            let peer = oldest
                .peer_addr()
                .map_or_else(|_| "?".to_string(), |a| a.to_string());
            let _ = oldest.shutdown(Shutdown::Both);
            self.log.refused(
                Kind::Evicted,
                &peer,
                &format!(
                    "evicted: the oldest unauthenticated connection, to admit one more \
                     within {bound} (connections_max = {}, unauthenticated_max = {})",
                    self.bounds.connections_max, self.bounds.unauthenticated_max
                ),
            );
        }
        Ok(slot)
    }

    /// Logs the refusal (rate-limited), writes a `Refused` frame without blocking
    /// (`detail` when `public`, else what [`Kind`] lets an unauthenticated peer know),
    /// and hands the socket to the closer. Costs the caller microseconds.
    pub fn refuse(&self, stream: TcpStream, peer: &str, kind: Kind, detail: &str, public: bool) {
        self.log.refused(kind, peer, detail);
        let reason = if public { detail } else { kind.public() };
        let mut out = Vec::new();
        let refused = Body::Refused {
            reason: reason.to_string(),
        };
        let mut stream = stream;
        if Encoder::new()
            .encode(&refused, REFUSED_FRAME_SIZE_MAX, &mut out)
            .is_ok()
            && stream.set_nonblocking(true).is_ok()
        {
            // One attempt: a fresh socket's buffer takes these few bytes; a peer whose
            // buffer is full is not waited for.
            let _ = stream.write(&out);
        }
        let _ = stream.shutdown(Shutdown::Write);
        let closer = lock(&self.closer).clone();
        if let Some(closer) = closer {
            match closer.try_send(stream) {
                Ok(()) => {}
                // Full or gone: closed at once (the peer may miss the frame).
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
            }
        }
    }

    /// Stops the closer thread once it has closed what it holds.
    pub fn stop(&self) {
        lock(&self.closer).take();
    }

    /// Connections holding a slot, and of those the unauthenticated ones.
    #[cfg(test)]
    pub fn counts(&self) -> (usize, usize) {
        let counts = lock(&self.counts);
        (counts.open, counts.pending.len())
    }
}

/// The closer thread: drains each refused socket's input until the peer closes or
/// [`REFUSE_LINGER`] passes, then closes it.
fn close_loop(receiver: &Receiver<TcpStream>) {
    let clock = MonotonicClock::start();
    let linger = Nanos(REFUSE_LINGER.as_nanos() as u64);
    let mut closing: Vec<(TcpStream, Nanos)> = Vec::new();
    let mut sink = [0_u8; 4096];
    loop {
        let received = if closing.is_empty() {
            receiver.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            receiver.recv_timeout(CLOSER_TICK)
        };
        match received {
            Ok(stream) => {
                if closing.len() < CLOSING_MAX && stream.set_nonblocking(true).is_ok() {
                    closing.push((stream, clock.now().plus(linger.0)));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) if closing.is_empty() => return,
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(CLOSER_TICK),
        }
        let now = clock.now();
        closing.retain_mut(|(stream, deadline)| {
            if now >= *deadline {
                return false;
            }
            loop {
                match stream.read(&mut sink) {
                    Ok(0) => return false,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
        });
    }
}

/// A log of refusals, rate-limited per [`Kind`] by a [`LogBudget`]: [`LOG_LINES_MAX`]
/// lines per [`LOG_WINDOW`], then one line saying how many were not logged.
pub struct RefusalLog {
    clock: MonotonicClock,
    budget: Mutex<LogBudget<Kind>>,
}

impl RefusalLog {
    fn new() -> RefusalLog {
        RefusalLog {
            clock: MonotonicClock::start(),
            budget: Mutex::new(LogBudget::new(LOG_LINES_MAX, LOG_WINDOW.as_nanos() as u64)),
        }
    }

    /// Logs that `peer` was refused for `detail` (a warning), unless `kind` has used
    /// its lines in this window.
    pub fn refused(&self, kind: Kind, peer: &str, detail: &str) {
        let admit = lock(&self.budget).admit(kind, self.clock.now());
        let Admit::Log {
            suppressed,
            budget_spent,
        } = admit
        else {
            return;
        };
        if suppressed > 0 {
            log::warn!(
                "client listener: {suppressed} more refusals ({kind:?}) in {} s were not logged",
                LOG_WINDOW.as_secs()
            );
        }
        log::warn!("client listener: closing {peer}: {detail}");
        if budget_spent {
            log::warn!(
                "client listener: further refusals ({kind:?}) are not logged for {} s",
                LOG_WINDOW.as_secs()
            );
        }
    }

    /// Lines logged and refusals not logged in `kind`'s current window.
    #[cfg(test)]
    fn window(&self, kind: Kind) -> (u32, u64) {
        lock(&self.budget).state(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let dialer = TcpStream::connect(listener.local_addr().expect("address")).expect("dial");
        let (accepted, _) = listener.accept().expect("accept");
        (dialer, accepted)
    }

    // Goal: the bounds hold: in all, per source, and the oldest unauthenticated
    // connection is evicted (its socket shut down, its place released at once, before
    // its reader ends) when one more unauthenticated connection comes, or when one
    // comes while connections_max are open; an authenticated one is never evicted,
    // and a dropped slot frees its place.
    // Method: admit loopback sockets into an admission of small bounds.
    #[test]
    fn bounds_and_eviction() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let admission = Admission::start(Bounds {
            connections_max: 5,
            connections_per_source_max: 4,
            unauthenticated_max: 2,
        })
        .expect("start");
        let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        let mut held = Vec::new();
        let (mut first_dialer, first) = pair(&listener);
        let first_slot = admission.admit(&first, a).expect("first");
        let (_d2, second) = pair(&listener);
        let second_slot = admission.admit(&second, a).expect("second");
        assert!(second_slot.authenticated());
        let (_d3, third) = pair(&listener);
        let third_slot = admission.admit(&third, a).expect("third");
        assert_eq!(admission.counts(), (3, 2));
        // A fourth unauthenticated one evicts the first (oldest unauthenticated),
        // whose place is free before its slot is dropped.
        let (_d4, fourth) = pair(&listener);
        let fourth_slot = admission.admit(&fourth, a).expect("fourth");
        assert_eq!(admission.counts(), (3, 2));
        assert!(first_slot.evicted() && !second_slot.evicted());
        first_dialer
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        assert_eq!(
            first_dialer.read(&mut [0_u8; 8]).expect("EOF"),
            0,
            "evicted"
        );
        assert!(!first_slot.authenticated(), "evicted first: it must end");
        drop(first_slot);
        assert_eq!(admission.counts(), (3, 2), "released once, at the eviction");
        assert!(third_slot.authenticated());
        assert!(fourth_slot.authenticated());
        held.extend([third_slot, fourth_slot]);
        assert_eq!(admission.counts(), (3, 0));
        // Per source: a holds 3 (second, third, fourth); one more fits, then refused.
        let (_d5, fifth) = pair(&listener);
        let fifth_slot = admission.admit(&fifth, a).expect("fifth");
        assert!(fifth_slot.authenticated());
        held.push(fifth_slot);
        let (_d6, sixth) = pair(&listener);
        assert!(matches!(
            admission.admit(&sixth, a),
            Err((Kind::SourceBusy, _))
        ));
        // In all: 4 open, one more from b fits; at connections_max the next one
        // evicts it (unauthenticated), and once all are authenticated, Busy.
        let sixth_slot = admission.admit(&sixth, b).expect("from b");
        assert_eq!(admission.counts(), (5, 1));
        let (_d7, seventh) = pair(&listener);
        let seventh_slot = admission.admit(&seventh, b).expect("evicts the sixth");
        assert!(sixth_slot.evicted());
        assert_eq!(admission.counts(), (5, 1));
        drop(sixth_slot);
        assert!(seventh_slot.authenticated());
        held.push(seventh_slot);
        let (_d8, eighth) = pair(&listener);
        assert!(matches!(admission.admit(&eighth, b), Err((Kind::Busy, _))));
        drop(second_slot);
        held.push(admission.admit(&eighth, b).expect("a freed slot"));
        assert_eq!(admission.counts(), (5, 1));
        drop(held);
        assert_eq!(admission.counts(), (0, 0));
        admission.stop();
    }

    // Goal: a refusal costs the refusing thread no wait on the peer, and the peer
    // still reads the `Refused` frame before the end of the stream.
    // Method: refuse 100 accepted sockets whose peers sent bytes and read nothing yet
    // (the old refusal drained each for 100 ms on the caller: 10 s in all; the bound
    // is 1 s); then read from a peer: the frame, then EOF.
    #[test]
    fn refusal_is_sent_and_does_not_block() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let admission = Admission::start(Bounds {
            connections_max: 1,
            connections_per_source_max: 1,
            unauthenticated_max: 1,
        })
        .expect("start");
        let mut dialers = Vec::new();
        let mut accepted = Vec::new();
        for _ in 0..100 {
            let (mut dialer, socket) = pair(&listener);
            dialer.write_all(&[1, 2, 3, 4]).expect("write");
            dialers.push(dialer);
            accepted.push(socket);
        }
        let clock = MonotonicClock::start();
        for socket in accepted {
            admission.refuse(socket, "peer", Kind::Busy, "too many connections: 1", false);
        }
        assert!(
            clock.now().0 < 1_000_000_000,
            "100 refusals took {} ms",
            clock.now().0 / 1_000_000
        );
        let dialer = &mut dialers[0];
        dialer
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut received = Vec::new();
        dialer.read_to_end(&mut received).expect("read to EOF");
        let (body, _) = crate::client::codec::decode_next(&received, 4096)
            .expect("frame")
            .expect("whole");
        assert_eq!(
            body,
            Body::Refused {
                reason: "too many connections".to_string()
            }
        );
        admission.stop();
    }

    // Goal: the refusal log keeps LOG_LINES_MAX lines per kind per window and counts
    // the rest; kinds are limited separately.
    // Method: 300 refusals of one kind and 3 of another within one window.
    #[test]
    fn refusal_log_is_rate_limited() {
        let log = RefusalLog::new();
        for i in 0..300 {
            log.refused(Kind::Hello, "peer", &format!("bad hello {i}"));
        }
        for _ in 0..3 {
            log.refused(Kind::Proof, "peer", "bad proof");
        }
        assert_eq!(log.window(Kind::Hello), (LOG_LINES_MAX, 300 - 10));
        assert_eq!(log.window(Kind::Proof), (3, 0));
    }
}
