//! The simulated network: every message between nodes passes through one priority
//! queue keyed by (delivery time, sequence number), with loss, duplication, per-message
//! delay (which reorders), partitions, crashed nodes and a per-link in-flight bound.
//!
//! Invariants:
//! - delivery order is total and deterministic: by delivery time, then by the order
//!   the copies were queued (`seq`), so one seed replays the same run;
//! - a message is never delivered across a cut: it is dropped at send if its link is
//!   cut then, and again at delivery if the link is cut by the time it arrives. A link
//!   is cut by a partition (nodes on different sides) or on its own, in one direction
//!   or both ([`SimNetwork::cut_link`]: partial connectivity, where every node may
//!   still reach every other through a third);
//! - nothing is queued to or from a crashed node: [`SimNetwork::drop_node`] purges the
//!   queue and later sends involving it are dropped until [`SimNetwork::restore_node`];
//! - each directed link holds at most `link_in_flight_max` queued copies; a copy
//!   beyond that is dropped (and counted), as a full socket buffer would;
//! - every message handed to `send` is accounted for exactly once per copy:
//!   `sent + duplicated == delivered + lost + dropped_* + in_flight`.
//!
//! The network does not know what `T` is: the cluster driver decides what a message is
//! (one protocol message, a per-peer batch, a catch-up chunk) and routes it to a shard.

use super::options::SimOptions;
use crate::paxos::{Nanos, NodeId};
use crate::prng::Prng;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// The network's behaviour. Rates are per message, in parts per million.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkOptions {
    /// Shortest one-way delay.
    pub delay_ns_min: u64,
    /// Longest one-way delay before jitter.
    pub delay_ns_max: u64,
    /// Chance a message is lost.
    pub loss_ppm: u32,
    /// Chance a message is delivered twice, each copy with its own delay.
    pub duplicate_ppm: u32,
    /// Chance a copy gets extra jitter in `[0, reorder_jitter_ns_max]`.
    pub reorder_ppm: u32,
    /// Largest extra jitter.
    pub reorder_jitter_ns_max: u64,
    /// Copies queued per directed link, at most.
    pub link_in_flight_max: usize,
}

impl NetworkOptions {
    /// The network part of a seed's options.
    #[must_use]
    pub fn from_options(options: &SimOptions) -> NetworkOptions {
        NetworkOptions {
            delay_ns_min: options.network_delay_ns_min,
            delay_ns_max: options.network_delay_ns_max,
            loss_ppm: options.network_loss_ppm,
            duplicate_ppm: options.network_duplicate_ppm,
            reorder_ppm: options.network_reorder_ppm,
            reorder_jitter_ns_max: options.network_reorder_jitter_ns_max,
            link_in_flight_max: options.network_link_in_flight_max,
        }
    }

    /// A perfect network with a constant delay: no loss, duplication or reordering
    /// (the liveness phase's network, and a baseline for tests).
    #[must_use]
    pub fn reliable(delay_ns: u64, link_in_flight_max: usize) -> NetworkOptions {
        NetworkOptions {
            delay_ns_min: delay_ns,
            delay_ns_max: delay_ns,
            loss_ppm: 0,
            duplicate_ppm: 0,
            reorder_ppm: 0,
            reorder_jitter_ns_max: 0,
            link_in_flight_max,
        }
    }

    fn invariants(&self) {
        assert!(
            self.delay_ns_min <= self.delay_ns_max,
            "delay_ns_min {} > delay_ns_max {}",
            self.delay_ns_min,
            self.delay_ns_max
        );
        for (name, ppm) in [
            ("loss_ppm", self.loss_ppm),
            ("duplicate_ppm", self.duplicate_ppm),
            ("reorder_ppm", self.reorder_ppm),
        ] {
            assert!(ppm <= 1_000_000, "{name} {ppm} > 1_000_000");
        }
        assert!(self.link_in_flight_max > 0, "link_in_flight_max is 0");
    }
}

/// What happened to the messages handed to the network. Each copy is counted once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Messages handed to `send`.
    pub sent: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Copies handed out by `pop_due`.
    pub delivered: u64,
    /// Messages lost (the loss draw).
    pub lost: u64,
    /// Copies dropped because their link was cut (at send or at delivery).
    pub dropped_partition: u64,
    /// Copies dropped because their link already held `link_in_flight_max`.
    pub dropped_in_flight_max: u64,
    /// Copies dropped because their sender or receiver was crashed.
    pub dropped_down: u64,
}

/// One queued copy. Ordered by (`at`, `seq`) only.
#[derive(Debug)]
struct Pending<T> {
    at: Nanos,
    seq: u64,
    from: NodeId,
    to: NodeId,
    msg: T,
}

impl<T> PartialEq for Pending<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Pending<T> {}
impl<T> PartialOrd for Pending<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Pending<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The simulated network carrying messages of type `T` between nodes.
#[derive(Debug)]
pub struct SimNetwork<T> {
    options: NetworkOptions,
    queue: BinaryHeap<Reverse<Pending<T>>>,
    /// Next sequence number; also the number of copies ever queued.
    seq_next: u64,
    /// Queued copies per directed link (absent = 0).
    in_flight: BTreeMap<(NodeId, NodeId), usize>,
    /// `Some(side of each listed node)` while partitioned.
    sides: Option<BTreeMap<NodeId, usize>>,
    /// Directed links cut on their own (`from`, `to`), beside any partition.
    cut_links: BTreeSet<(NodeId, NodeId)>,
    /// Crashed nodes.
    down: BTreeSet<NodeId>,
    stats: NetworkStats,
}

impl<T: Clone> SimNetwork<T> {
    /// An empty, healed network.
    #[must_use]
    pub fn new(options: NetworkOptions) -> SimNetwork<T> {
        options.invariants();
        SimNetwork {
            options,
            queue: BinaryHeap::new(),
            seq_next: 0,
            in_flight: BTreeMap::new(),
            sides: None,
            cut_links: BTreeSet::new(),
            down: BTreeSet::new(),
            stats: NetworkStats::default(),
        }
    }

    /// Sends `msg` from `from` to `to` at true time `now`. The message is dropped when
    /// either end is crashed or the link is cut; otherwise it may be lost, or queued
    /// once or twice (duplication), each copy with its own sampled delay and subject to
    /// the link's in-flight bound. A node may send to itself (never cut).
    pub fn send(&mut self, now: Nanos, from: NodeId, to: NodeId, msg: T, prng: &mut Prng) {
        self.stats.sent += 1;
        if self.down.contains(&from) || self.down.contains(&to) {
            self.stats.dropped_down += 1;
            return;
        }
        if self.is_cut(from, to) {
            self.stats.dropped_partition += 1;
            return;
        }
        if prng.chance_ppm(self.options.loss_ppm) {
            self.stats.lost += 1;
            return;
        }
        if prng.chance_ppm(self.options.duplicate_ppm) {
            self.stats.duplicated += 1;
            self.enqueue(now, from, to, msg.clone(), prng);
        }
        self.enqueue(now, from, to, msg, prng);
    }

    /// The delivery time of the earliest queued copy, if any. The copy may still be
    /// dropped at delivery (its link cut meanwhile): then `pop_due` skips it.
    #[must_use]
    pub fn next_delivery(&self) -> Option<Nanos> {
        self.queue.peek().map(|Reverse(p)| p.at)
    }

    /// The earliest copy due by `now` (delivery time `<= now`), as `(from, to, msg)`,
    /// in (time, sequence) order. Copies whose link is cut are dropped and skipped.
    pub fn pop_due(&mut self, now: Nanos) -> Option<(NodeId, NodeId, T)> {
        while self.queue.peek().is_some_and(|Reverse(p)| p.at <= now) {
            let Reverse(pending) = self.queue.pop().expect("peeked a queued copy");
            self.release_link(pending.from, pending.to);
            // drop_node purges the queue, so no queued copy involves a crashed node.
            assert!(
                !self.down.contains(&pending.from) && !self.down.contains(&pending.to),
                "queued copy {}->{} involves a crashed node",
                pending.from.0,
                pending.to.0
            );
            if self.is_cut(pending.from, pending.to) {
                self.stats.dropped_partition += 1;
                continue;
            }
            self.stats.delivered += 1;
            return Some((pending.from, pending.to, pending.msg));
        }
        None
    }

    /// Partitions the nodes into `sets`: nodes in different sets cannot talk; a node
    /// named in no set is isolated from every other node. Replaces any earlier
    /// partition. Panics (programmer error) if a node is named twice.
    pub fn partition(&mut self, sets: &[Vec<NodeId>]) {
        let mut sides = BTreeMap::new();
        for (side, set) in sets.iter().enumerate() {
            for node in set {
                let previous = sides.insert(*node, side);
                assert!(
                    previous.is_none(),
                    "node {} named in two partition sets",
                    node.0
                );
            }
        }
        self.sides = Some(sides);
    }

    /// Removes every partition and every cut link (queued copies are kept).
    pub fn heal(&mut self) {
        self.sides = None;
        self.cut_links.clear();
    }

    /// Cuts the directed link `from -> to` (and `to -> from` too when `both`), beside
    /// any partition: partial connectivity. A node is never cut from itself.
    pub fn cut_link(&mut self, from: NodeId, to: NodeId, both: bool) {
        if from == to {
            return;
        }
        self.cut_links.insert((from, to));
        if both {
            self.cut_links.insert((to, from));
        }
    }

    /// Mends the link between `a` and `b`, both directions (a partition in force
    /// still cuts it).
    pub fn mend_link(&mut self, a: NodeId, b: NodeId) {
        self.cut_links.remove(&(a, b));
        self.cut_links.remove(&(b, a));
    }

    /// Whether messages from `a` to `b` are cut: by a partition (symmetric) or by a
    /// cut of that directed link. A node is never cut from itself.
    #[must_use]
    pub fn is_cut(&self, a: NodeId, b: NodeId) -> bool {
        if a == b {
            return false;
        }
        if self.cut_links.contains(&(a, b)) {
            return true;
        }
        match &self.sides {
            None => false,
            Some(sides) => match (sides.get(&a), sides.get(&b)) {
                (Some(side_a), Some(side_b)) => side_a != side_b,
                _ => true,
            },
        }
    }

    /// Whether any partition or cut link is in force.
    #[must_use]
    pub fn is_partitioned(&self) -> bool {
        self.sides.is_some() || !self.cut_links.is_empty()
    }

    /// `node` crashed: every queued copy to or from it is dropped (counted), and sends
    /// involving it are dropped until [`SimNetwork::restore_node`].
    pub fn drop_node(&mut self, node: NodeId) {
        self.down.insert(node);
        let before = self.queue.len();
        self.queue
            .retain(|Reverse(p)| p.from != node && p.to != node);
        self.stats.dropped_down += (before - self.queue.len()) as u64;
        self.in_flight
            .retain(|(from, to), _| *from != node && *to != node);
    }

    /// `node` restarted: it may send and receive again.
    pub fn restore_node(&mut self, node: NodeId) {
        self.down.remove(&node);
    }

    /// Whether `node` is crashed (as far as the network knows).
    #[must_use]
    pub fn is_down(&self, node: NodeId) -> bool {
        self.down.contains(&node)
    }

    /// Replaces the network's behaviour (e.g. a reliable network for the liveness
    /// phase). Queued copies keep their delivery times.
    pub fn set_options(&mut self, options: NetworkOptions) {
        options.invariants();
        self.options = options;
    }

    /// The current behaviour.
    #[must_use]
    pub fn options(&self) -> &NetworkOptions {
        &self.options
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> NetworkStats {
        self.stats
    }

    /// Copies queued now.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Copies queued now on the directed link `from -> to`.
    #[must_use]
    pub fn link_in_flight(&self, from: NodeId, to: NodeId) -> usize {
        self.in_flight.get(&(from, to)).copied().unwrap_or(0)
    }

    /// Asserts the accounting identity and the per-link bookkeeping (the driver may call
    /// this after every step; it is O(links)).
    pub fn invariants(&self) {
        let s = &self.stats;
        let accounted = s.delivered
            + s.lost
            + s.dropped_partition
            + s.dropped_in_flight_max
            + s.dropped_down
            + self.queue.len() as u64;
        assert_eq!(
            s.sent + s.duplicated,
            accounted,
            "network accounting: sent {} + duplicated {} != accounted {accounted} ({s:?}, queued {})",
            s.sent,
            s.duplicated,
            self.queue.len()
        );
        let per_link: usize = self.in_flight.values().sum();
        assert_eq!(
            per_link,
            self.queue.len(),
            "per-link counts disagree with the queue"
        );
        for (&(from, to), &count) in &self.in_flight {
            assert!(count > 0, "link {}->{} kept with no copies", from.0, to.0);
        }
    }

    fn enqueue(&mut self, now: Nanos, from: NodeId, to: NodeId, msg: T, prng: &mut Prng) {
        if self.link_in_flight(from, to) >= self.options.link_in_flight_max {
            self.stats.dropped_in_flight_max += 1;
            return;
        }
        *self.in_flight.entry((from, to)).or_insert(0) += 1;
        let mut delay = prng.range(self.options.delay_ns_min, self.options.delay_ns_max);
        if prng.chance_ppm(self.options.reorder_ppm) {
            delay = delay.saturating_add(prng.range(0, self.options.reorder_jitter_ns_max));
        }
        let seq = self.seq_next;
        self.seq_next += 1;
        self.queue.push(Reverse(Pending {
            at: now.plus(delay),
            seq,
            from,
            to,
            msg,
        }));
    }

    fn release_link(&mut self, from: NodeId, to: NodeId) {
        let count = self
            .in_flight
            .get_mut(&(from, to))
            .expect("a queued copy is counted on its link");
        *count -= 1;
        if *count == 0 {
            self.in_flight.remove(&(from, to));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{NetworkOptions, SimNetwork};
    use crate::paxos::{Nanos, NodeId};
    use crate::prng::Prng;

    const A: NodeId = NodeId(1);
    const B: NodeId = NodeId(2);
    const C: NodeId = NodeId(3);

    fn drain(net: &mut SimNetwork<u32>) -> Vec<(Nanos, NodeId, NodeId, u32)> {
        let mut out = Vec::new();
        while let Some(at) = net.next_delivery() {
            while let Some((from, to, msg)) = net.pop_due(at) {
                out.push((at, from, to, msg));
            }
            net.invariants();
        }
        out
    }

    // Goal: a reliable network delivers everything once, after the delay, in send order
    // (ties on delivery time are broken by sequence number, not by heap layout).
    // Method: send 100 messages, many at the same instant, with a constant delay; drain.
    #[test]
    fn reliable_delivers_in_order() {
        let mut prng = Prng::new(1);
        let mut net = SimNetwork::new(NetworkOptions::reliable(1_000, 1_000));
        for i in 0..100 {
            net.send(Nanos(i / 30), A, B, i as u32, &mut prng);
        }
        assert_eq!(
            net.pop_due(Nanos(999)),
            None,
            "nothing is due before the delay"
        );
        let got = drain(&mut net);
        let msgs: Vec<u32> = got.iter().map(|m| m.3).collect();
        assert_eq!(msgs, (0..100).collect::<Vec<u32>>());
        assert_eq!(got[0].0, Nanos(1_000));
        assert_eq!(net.stats().delivered, 100);
        net.invariants();
    }

    // Goal: the same seed yields the same delivery sequence, and random delays reorder.
    // Method: run a lossy, duplicating, jittery network twice with one seed; compare.
    #[test]
    fn deterministic_and_reordering() {
        let run = |seed| {
            let mut prng = Prng::new(seed);
            let mut net = SimNetwork::new(NetworkOptions {
                delay_ns_min: 100,
                delay_ns_max: 20_000,
                loss_ppm: 100_000,
                duplicate_ppm: 100_000,
                reorder_ppm: 200_000,
                reorder_jitter_ns_max: 50_000,
                link_in_flight_max: 10_000,
            });
            for i in 0..2_000u32 {
                net.send(Nanos(u64::from(i) * 10), A, B, i, &mut prng);
            }
            (drain(&mut net), net.stats())
        };
        let (first, stats) = run(7);
        assert_eq!(first, run(7).0);
        assert_ne!(first, run(8).0);
        let msgs: Vec<u32> = first.iter().map(|m| m.3).collect();
        assert!(
            msgs.windows(2).any(|w| w[0] > w[1]),
            "no reordering happened"
        );
        assert!(stats.lost > 100 && stats.lost < 300, "{stats:?}");
        assert!(
            stats.duplicated > 100 && stats.duplicated < 300,
            "{stats:?}"
        );
        assert_eq!(stats.delivered, stats.sent - stats.lost + stats.duplicated);
        let times: Vec<Nanos> = first.iter().map(|m| m.0).collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "delivery times must not go back"
        );
    }

    // Goal: partitions drop at send and at delivery; unnamed nodes are isolated; heal
    // restores the links.
    // Method: queue a message, partition, send across and within sides, then heal.
    #[test]
    fn partition_cuts_at_send_and_delivery() {
        let mut prng = Prng::new(2);
        let mut net = SimNetwork::new(NetworkOptions::reliable(10, 100));
        net.send(Nanos(0), A, B, 1, &mut prng); // queued before the cut
        net.partition(&[vec![A], vec![B, C]]);
        assert!(net.is_cut(A, B) && net.is_cut(B, A) && !net.is_cut(B, C));
        assert!(!net.is_cut(A, A), "a node is never cut from itself");
        net.send(Nanos(1), A, C, 2, &mut prng); // dropped at send
        net.send(Nanos(1), B, C, 3, &mut prng); // same side: delivered
        let got: Vec<u32> = drain(&mut net).iter().map(|m| m.3).collect();
        assert_eq!(got, vec![3]);
        assert_eq!(net.stats().dropped_partition, 2);
        net.partition(&[vec![A, B]]);
        assert!(
            net.is_cut(A, C) && net.is_cut(C, B),
            "C is named nowhere: isolated"
        );
        net.send(Nanos(100), A, C, 5, &mut prng); // dropped at send, even if healed
        net.heal();
        assert!(!net.is_partitioned() && !net.is_cut(A, C));
        net.send(Nanos(50), A, C, 4, &mut prng);
        let got: Vec<u32> = drain(&mut net).iter().map(|m| m.3).collect();
        assert_eq!(got, vec![4]);
        net.invariants();
    }

    // Goal: a link cut on its own drops only its direction(s), at send and at
    // delivery; the other links stay up; mend and heal restore it.
    // Method: cut A->B one way, then both ways, send every direction, mend, cut, heal.
    #[test]
    fn a_cut_link_drops_its_directions_only() {
        let mut prng = Prng::new(4);
        let mut net = SimNetwork::new(NetworkOptions::reliable(10, 100));
        net.send(Nanos(0), A, B, 1, &mut prng); // queued before the cut: dropped later
        net.cut_link(A, B, false);
        assert!(net.is_partitioned());
        assert!(net.is_cut(A, B) && !net.is_cut(B, A) && !net.is_cut(A, C));
        net.send(Nanos(1), A, B, 2, &mut prng); // dropped at send
        net.send(Nanos(1), B, A, 3, &mut prng); // the other direction: delivered
        net.send(Nanos(1), A, C, 4, &mut prng); // another link: delivered
        let got: Vec<u32> = drain(&mut net).iter().map(|m| m.3).collect();
        assert_eq!(got, vec![3, 4]);
        assert_eq!(net.stats().dropped_partition, 2);
        net.cut_link(B, A, true);
        assert!(net.is_cut(A, B) && net.is_cut(B, A) && !net.is_cut(B, C));
        net.mend_link(A, B);
        assert!(!net.is_cut(A, B) && !net.is_cut(B, A) && !net.is_partitioned());
        net.cut_link(C, C, true);
        assert!(!net.is_cut(C, C), "a node is never cut from itself");
        net.cut_link(C, A, true);
        net.partition(&[vec![A, B, C]]);
        assert!(net.is_cut(A, C), "a cut link stays cut beside a partition");
        net.heal();
        assert!(!net.is_partitioned() && !net.is_cut(A, C) && !net.is_cut(C, A));
        net.invariants();
    }

    // Goal: jitter alone reorders a constant-delay link; without it the link is FIFO.
    // Method: constant delay, reorder_ppm all or nothing; look for an inversion.
    #[test]
    fn jitter_reorders_constant_delay_link() {
        for (reorder_ppm, expect_inversion) in [(1_000_000, true), (0, false)] {
            let mut prng = Prng::new(6);
            let mut options = NetworkOptions::reliable(1_000, 1_000);
            options.reorder_ppm = reorder_ppm;
            options.reorder_jitter_ns_max = 10_000;
            let mut net = SimNetwork::new(options);
            for i in 0..100u32 {
                net.send(Nanos(u64::from(i) * 10), A, B, i, &mut prng);
            }
            let msgs: Vec<u32> = drain(&mut net).iter().map(|m| m.3).collect();
            let inverted = msgs.windows(2).any(|w| w[0] > w[1]);
            assert_eq!(
                inverted, expect_inversion,
                "reorder_ppm {reorder_ppm}: {msgs:?}"
            );
        }
    }

    // Goal: a crashed node neither receives queued copies nor sends or receives new ones.
    // Method: queue copies to, from and around A; drop A; send; restore; send again.
    #[test]
    fn drop_node_purges_and_blocks() {
        let mut prng = Prng::new(3);
        let mut net = SimNetwork::new(NetworkOptions::reliable(10, 100));
        net.send(Nanos(0), A, B, 1, &mut prng);
        net.send(Nanos(0), B, A, 2, &mut prng);
        net.send(Nanos(0), B, C, 3, &mut prng);
        net.drop_node(A);
        assert_eq!(net.link_in_flight(A, B), 0);
        net.send(Nanos(1), B, A, 4, &mut prng);
        net.invariants();
        let got: Vec<u32> = drain(&mut net).iter().map(|m| m.3).collect();
        assert_eq!(got, vec![3]);
        assert_eq!(net.stats().dropped_down, 3);
        net.restore_node(A);
        net.send(Nanos(100), B, A, 5, &mut prng);
        assert_eq!(drain(&mut net).len(), 1);
        net.invariants();
    }

    // Goal: a link holds at most link_in_flight_max copies; the rest are dropped and
    // counted; other links are unaffected.
    // Method: send 5 on a link bounded to 3, then one on another link.
    #[test]
    fn link_in_flight_bound() {
        let mut prng = Prng::new(4);
        let mut net = SimNetwork::new(NetworkOptions::reliable(10, 3));
        for i in 0..5 {
            net.send(Nanos(0), A, B, i, &mut prng);
        }
        net.send(Nanos(0), B, A, 9, &mut prng);
        assert_eq!(net.link_in_flight(A, B), 3);
        assert_eq!(net.stats().dropped_in_flight_max, 2);
        assert_eq!(drain(&mut net).len(), 4);
        net.send(Nanos(100), A, B, 10, &mut prng);
        assert_eq!(net.link_in_flight(A, B), 1, "delivery frees the link");
        net.invariants();
    }

    // Goal: duplicated copies carry the same message with independent delays.
    // Method: duplicate everything with a wide delay range; count copies per message.
    #[test]
    fn duplication_delivers_twice() {
        let mut prng = Prng::new(5);
        let mut options = NetworkOptions::reliable(0, 1_000);
        options.delay_ns_max = 1_000_000;
        options.duplicate_ppm = 1_000_000;
        let mut net = SimNetwork::new(options);
        for i in 0..50 {
            net.send(Nanos(0), A, B, i, &mut prng);
        }
        let got = drain(&mut net);
        assert_eq!(got.len(), 100);
        let mut differing = 0;
        for i in 0..50 {
            let copies: Vec<Nanos> = got.iter().filter(|m| m.3 == i).map(|m| m.0).collect();
            assert_eq!(copies.len(), 2, "message {i}");
            if copies[0] != copies[1] {
                differing += 1;
            }
        }
        assert!(
            differing > 40,
            "copies share delays: {differing} of 50 differ"
        );
    }
}
