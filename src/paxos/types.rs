//! Identifiers and the value types every layer shares: ballots, instances, entries.
//!
//! Invariants: ballots are totally ordered by (round, node); `Instance(0)` is never a
//! log position (the log starts at 1), so `Instance(0)` as a watermark means "nothing".

use bytes::Bytes;
use std::fmt;

/// A node of the cluster, as configured (never derived from an address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u32);

/// One independent Paxos group (one replicated log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GroupId(pub u32);

/// A position in a group's log. The first position is 1; 0 means "none".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instance(pub u64);

/// A log sequence number in a shard's write-ahead log. 0 means "none".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

/// Monotonic time in nanoseconds, as read by the runtime (never by `paxos`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(pub u64);

/// Identifies one client proposal on the node that received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ProposalId(pub u64);

impl Instance {
    /// The highest instance a log may reach. A group choosing a million instances a
    /// second takes 146,000 years to get here, so a larger instance from a peer or a
    /// disk is forged or corrupt: it is refused (counted, logged), never persisted.
    pub const MAX: Instance = Instance(1 << 62);

    /// The instance after this one.
    #[must_use]
    pub fn next(self) -> Instance {
        Instance(self.0 + 1)
    }
    /// The instance before this one; `Instance(0)` has none (programmer error).
    #[must_use]
    pub fn prev(self) -> Instance {
        assert!(self.0 > 0, "Instance(0) has no predecessor");
        Instance(self.0 - 1)
    }
}

impl Nanos {
    /// `self + ns`, saturating.
    #[must_use]
    pub fn plus(self, ns: u64) -> Nanos {
        Nanos(self.0.saturating_add(ns))
    }
    /// Milliseconds as nanoseconds.
    #[must_use]
    pub const fn from_ms(ms: u64) -> Nanos {
        Nanos(ms * 1_000_000)
    }
}

/// A Paxos ballot: (round, node), totally ordered; the node breaks ties so two
/// proposers never share a ballot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ballot {
    /// Monotonic round number; compared first.
    pub round: u64,
    /// The node that owns this ballot.
    pub node: NodeId,
}

impl Ballot {
    /// The ballot below every real ballot (round 0 is never used by a proposer).
    pub const ZERO: Ballot = Ballot {
        round: 0,
        node: NodeId(0),
    };

    /// The highest round a ballot may carry. Rounds grow by one per election, so a
    /// cluster electing once a microsecond takes nine years to get here: a larger round
    /// from a peer or a disk is forged or corrupt. It is refused (counted, logged) and
    /// never persisted, and no replica campaigns above it, so round arithmetic below it
    /// cannot overflow.
    pub const ROUND_MAX: u64 = 1 << 48;
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.round, self.node.0)
    }
}

/// The voters of a group. Kept sorted and without duplicates.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Membership {
    voters: Vec<NodeId>,
}

impl Membership {
    /// A membership of the given voters (sorted, deduplicated). Must not be empty.
    #[must_use]
    pub fn new(mut voters: Vec<NodeId>) -> Membership {
        voters.sort();
        voters.dedup();
        assert!(!voters.is_empty(), "a membership needs at least one voter");
        Membership { voters }
    }
    /// The voters, sorted.
    #[must_use]
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }
    /// Whether `node` votes in this membership.
    #[must_use]
    pub fn contains(&self, node: NodeId) -> bool {
        self.voters.binary_search(&node).is_ok()
    }
    /// Number of votes that form a quorum (a strict majority).
    #[must_use]
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
    /// Whether the nodes yielded by `nodes` include a quorum of this membership.
    pub fn is_quorum<'a>(&self, nodes: impl IntoIterator<Item = &'a NodeId>) -> bool {
        let mut count = 0;
        for node in nodes {
            if self.contains(*node) {
                count += 1;
            }
        }
        count >= self.quorum()
    }
    /// Whether `other` differs from `self` by exactly one added or removed voter.
    #[must_use]
    pub fn is_single_change(&self, other: &Membership) -> bool {
        let added = other.voters.iter().filter(|n| !self.contains(**n)).count();
        let removed = self.voters.iter().filter(|n| !other.contains(**n)).count();
        added + removed == 1
    }
}

/// The client values of one entry, in order. One value is held inline, so an entry of
/// a single value (every entry at `batch_values_max = 1`, most under light load) is
/// cloned into its WAL record and its Accept messages, and dropped, without a heap
/// allocation; more spill to the heap as a `Vec` would.
pub type Values = smallvec::SmallVec<[Bytes; 1]>;

/// The proposals of this node one entry carries, one per value in order: inline for
/// one (every entry at `batch_values_max = 1`), on the heap beyond, as `Values`.
pub type Proposals = smallvec::SmallVec<[ProposalId; 1]>;

/// What a log entry holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Body {
    /// Client values, coalesced by batch propose; applied in order.
    Values(Values),
    /// Fills a hole found by a new leader; applies nothing.
    Noop,
    /// Appended by a new leader after re-proposing what it learned; entries whose
    /// origin ballot is below the latest applied StartWorking ballot are skipped.
    StartWorking,
    /// A new membership; chosen at instance i, it takes effect at i + window.
    Config(Membership),
}

impl Clone for Body {
    /// As the derived clone, with the single value's case written out: `SmallVec`'s
    /// own clone goes through `Extend` (about 100 instructions for one value), and an
    /// entry is cloned several times per instance per replica (WAL record, Accepts,
    /// apply).
    fn clone(&self) -> Body {
        match self {
            Body::Values(values) => Body::Values(match values.as_slice() {
                [value] => Values::from_buf([value.clone()]),
                many => many.iter().cloned().collect(),
            }),
            Body::Noop => Body::Noop,
            Body::StartWorking => Body::StartWorking,
            Body::Config(membership) => Body::Config(membership.clone()),
        }
    }
}

/// One log entry: its body and the ballot of the leader that first proposed it
/// (kept when a later leader re-proposes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Ballot of the leader that first proposed this entry.
    pub origin: Ballot,
    /// The entry's contents.
    pub body: Body,
}

impl Entry {
    /// Bytes of client payload carried (0 for control entries).
    #[must_use]
    pub fn payload_size(&self) -> usize {
        match &self.body {
            Body::Values(values) => values.iter().map(Bytes::len).sum(),
            Body::Noop | Body::StartWorking | Body::Config(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Body, Membership, NodeId, Values};
    use bytes::Bytes;

    /// The hand-written clone keeps every value, in order, and shares their bytes.
    #[test]
    fn body_clone_keeps_every_value() {
        let values =
            |n: usize| -> Values { (0..n).map(|i| Bytes::from(vec![i as u8; i + 1])).collect() };
        for body in [
            Body::Values(values(0)),
            Body::Values(values(1)),
            Body::Values(values(3)),
            Body::Noop,
            Body::StartWorking,
            Body::Config(Membership::new(vec![NodeId(1), NodeId(4)])),
        ] {
            let copy = body.clone();
            assert_eq!(copy, body);
            if let (Body::Values(a), Body::Values(b)) = (&copy, &body) {
                for (x, y) in a.iter().zip(b.iter()) {
                    assert_eq!(x.as_ptr(), y.as_ptr(), "values are shared, not copied");
                }
            }
        }
    }
}
