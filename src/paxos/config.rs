//! Per-group protocol configuration, validated once at construction.

use super::size::{batch_entry_size_max, MESSAGE_OVERHEAD_SIZE, PROMISED_ENTRY_OVERHEAD_SIZE};
use super::types::{GroupId, Membership, NodeId};

/// The smallest `message_size_max` accepted: room for any control entry (a membership
/// of thousands of voters) beside the message's own overhead.
pub const MESSAGE_SIZE_MIN: usize = 16 << 10;

/// The largest `catch_up_credit_max` accepted: chunks one catch-up stream may have in
/// flight (each up to `message_size_max` bytes in the sender's link queue).
pub const CATCH_UP_CREDIT_LIMIT: usize = 64;

/// The largest `accept_window_instances_max` accepted: a follower holds a slot for every
/// instance from its log's floor to the highest it accepted (`slot_log`), so a leader's
/// accept at the far end of the window costs that many slots of memory (about 100 B
/// each) even when the instances between are empty: at most about 6.5 MB per group.
pub const ACCEPT_WINDOW_LIMIT: u64 = 1 << 16;

/// Everything one group's protocol needs to know. All durations are nanoseconds of
/// the local monotonic clock.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// This replica.
    pub node: NodeId,
    /// The group.
    pub group: GroupId,
    /// The initial voters (in effect from instance 1).
    pub membership: Membership,
    /// W: instances a leader keeps in flight beyond its chosen watermark. A membership
    /// chosen at instance i takes effect at i + W, so W must be equal on every replica.
    pub window_instances_max: u64,
    /// Followers accept instances up to `chosen_through + accept_window_instances_max`
    /// (>= 2 W: a follower's watermark lags the leader's by up to a window; larger
    /// tolerates more lag).
    pub accept_window_instances_max: u64,
    /// Client values coalesced into one instance (1 = every proposal its own instance).
    pub batch_values_max: usize,
    /// Bytes of client values coalesced into one instance.
    pub batch_size_max: usize,
    /// Largest single value accepted from a client.
    pub value_size_max: usize,
    /// Proposals waiting for a window slot before `Overloaded` is returned.
    pub proposal_queue_count_max: usize,
    /// Bytes of proposals waiting before `Overloaded` is returned.
    pub proposal_queue_size_max: usize,
    /// Base election timeout; each wait is drawn from [t, 2t).
    pub election_timeout_ns: u64,
    /// Interval between leader heartbeats.
    pub heartbeat_interval_ns: u64,
    /// Lease length granted by a follower on each heartbeat it accepts.
    pub lease_ns: u64,
    /// Bound on the rate difference between any two clocks, in parts per million.
    pub clock_drift_ppm: u64,
    /// Resend unanswered prepares, accepts and catch-up requests after this long.
    pub retransmit_ns: u64,
    /// Most accepted entries one promise reports (more follow in further promises,
    /// see `message_size_max`).
    pub promise_entries_max: usize,
    /// Most entries in one catch-up chunk.
    pub catch_up_entries_max: usize,
    /// Catch-up chunks in flight per stream (credit-based streaming, `stream`): the
    /// credit this replica grants in its catch-up requests, and the most it serves a
    /// peer's request. 1 is stop-and-wait (one chunk per request round trip); more
    /// overlaps the sender's WAL read of the next chunk with the transfer and the
    /// receiver's verification of the previous ones. Memory and link queue per stream:
    /// at most this many `message_size_max` chunks. Default 4; at most
    /// `CATCH_UP_CREDIT_LIMIT`.
    pub catch_up_credit_max: usize,
    /// Most bytes one peer message may take on the wire, as bounded by
    /// `MessageBody::encoded_size` (never below the real encoding). Accept runs,
    /// promises and catch-up chunks are split to stay within it, beside their count
    /// limits. Must carry one maximal entry (a batch of `batch_values_max` values and
    /// `batch_size_max` bytes) in a promise, and must be at most the transport's frame
    /// limit (`DecodeLimits::frame_size_max`, 16 MiB by default; `api::Config::validate`
    /// checks), or a message would be dropped by the link and rebuilt forever.
    pub message_size_max: usize,
    /// Applied instances kept in memory at and below the applied watermark (the
    /// in-memory retention, beside `retention_size_max`): older ones are dropped from
    /// the group's log and served to lagging peers from the WAL (`Output::wal_reads`).
    /// At least 1; `u64::MAX` keeps every applied entry (memory then grows with the
    /// history). Default 4,096: 16 accept windows, so a follower that missed a few
    /// windows is served from memory and only one that restarted or was cut off for
    /// longer reads the WAL. A group's log then holds at most this many applied slots
    /// plus `accept_window_instances_max` above them (`tuning.md`, "In-memory
    /// retention").
    pub retention_instances_max: u64,
    /// Bytes of applied entries (`Entry::encoded_size`) kept in memory at and below
    /// the applied watermark; the newest applied entry is kept whatever its size (so
    /// any value is valid; 0 keeps only that one). Default 16 MiB: four catch-up
    /// messages (`message_size_max`), and the bound on a group's retained values when
    /// entries are large (4,096 entries of 4 KiB). Per node the worst case is groups
    /// times this: lower it for thousands of busy groups.
    pub retention_size_max: usize,
    /// Where the group's leader should sit (`placement`): `Balanced` (the default)
    /// gives each group a preferred replica, spread evenly over the voters, that a
    /// cold start mostly elects and that a stable leader hands back to once it is live
    /// and caught up; `Off` leaves leadership where elections put it. May differ
    /// between replicas (a replica with `Off` only never moves leadership itself).
    pub leader_placement: LeaderPlacement,
    /// Seed of the group's private PRNG (election jitter).
    pub seed: u64,
}

/// Where a group's leader should sit (`GroupConfig::leader_placement`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LeaderPlacement {
    /// A preferred replica per group (`placement::preferred_leader`): its first
    /// election deadline comes earlier, and a leader that is not it hands leadership
    /// to it once it is live and caught up.
    #[default]
    Balanced,
    /// Leadership stays wherever elections put it.
    Off,
}

impl GroupConfig {
    /// A configuration with the defaults of `tuning.md` for `node` in `group`.
    #[must_use]
    pub fn new(node: NodeId, group: GroupId, membership: Membership) -> GroupConfig {
        GroupConfig {
            node,
            group,
            membership,
            window_instances_max: 64,
            accept_window_instances_max: 256,
            batch_values_max: 256,
            batch_size_max: 1 << 20,
            value_size_max: 1 << 20,
            proposal_queue_count_max: 16_384,
            proposal_queue_size_max: 64 << 20,
            election_timeout_ns: 1_000_000_000,
            heartbeat_interval_ns: 100_000_000,
            lease_ns: 500_000_000,
            clock_drift_ppm: 1_000,
            retransmit_ns: 200_000_000,
            promise_entries_max: 4_096,
            catch_up_entries_max: 256,
            catch_up_credit_max: 4,
            message_size_max: 4 << 20,
            // 16 accept windows and 4 catch-up messages: a follower that missed a
            // few windows is served from memory, one that restarted or was cut off
            // from the WAL (`tuning.md`, "In-memory retention").
            retention_instances_max: 4_096,
            retention_size_max: 16 << 20,
            leader_placement: LeaderPlacement::Balanced,
            seed: u64::from(node.0) << 32 | u64::from(group.0),
        }
    }

    /// Checks the relations between fields; the message names the field, its value
    /// and why it is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let check = |ok: bool, msg: String| if ok { Ok(()) } else { Err(msg) };
        check(
            self.window_instances_max >= 1,
            format!(
                "window_instances_max = {}: must be at least 1",
                self.window_instances_max
            ),
        )?;
        check(
            self.accept_window_instances_max >= self.window_instances_max.saturating_mul(2),
            format!(
                "accept_window_instances_max = {}: must be >= 2 x window_instances_max = {} \
                 (a follower's chosen watermark lags the leader's by up to a window; with \
                 less room it refuses accepts the leader may send, and every refusal costs \
                 a retransmission timeout)",
                self.accept_window_instances_max, self.window_instances_max
            ),
        )?;
        check(
            self.accept_window_instances_max <= ACCEPT_WINDOW_LIMIT,
            format!(
                "accept_window_instances_max = {}: must be at most {ACCEPT_WINDOW_LIMIT} \
                 (a follower holds a slot for every instance of the window a leader's \
                 accept reaches)",
                self.accept_window_instances_max
            ),
        )?;
        check(
            self.batch_values_max >= 1,
            format!(
                "batch_values_max = {}: must be at least 1",
                self.batch_values_max
            ),
        )?;
        check(
            self.batch_size_max >= self.value_size_max,
            format!(
                "batch_size_max = {}: must be >= value_size_max = {} (a maximal value must fit)",
                self.batch_size_max, self.value_size_max
            ),
        )?;
        check(
            self.heartbeat_interval_ns > 0 && self.heartbeat_interval_ns * 2 <= self.lease_ns,
            format!(
                "heartbeat_interval_ns = {}: must be positive and at most half of lease_ns = {}",
                self.heartbeat_interval_ns, self.lease_ns
            ),
        )?;
        check(
            self.lease_ns < self.election_timeout_ns,
            format!(
                "lease_ns = {}: must be below election_timeout_ns = {} (a follower waits out \
                 the lease before it can promise a new leader)",
                self.lease_ns, self.election_timeout_ns
            ),
        )?;
        check(
            self.clock_drift_ppm < 100_000,
            format!(
                "clock_drift_ppm = {}: must be below 100000 (10 %)",
                self.clock_drift_ppm
            ),
        )?;
        check(
            self.retransmit_ns > 0,
            "retransmit_ns = 0: must be positive".to_string(),
        )?;
        check(
            self.promise_entries_max as u64 >= self.accept_window_instances_max,
            format!(
                "promise_entries_max = {}: must be >= accept_window_instances_max = {}",
                self.promise_entries_max, self.accept_window_instances_max
            ),
        )?;
        check(
            self.catch_up_entries_max >= 1,
            "catch_up_entries_max = 0: must be at least 1".to_string(),
        )?;
        check(
            (1..=CATCH_UP_CREDIT_LIMIT).contains(&self.catch_up_credit_max),
            format!(
                "catch_up_credit_max = {}: must be in 1..={CATCH_UP_CREDIT_LIMIT}",
                self.catch_up_credit_max
            ),
        )?;
        check(
            self.message_size_max >= self.message_size_min(),
            format!(
                "message_size_max = {}: must be >= {} (a promise carrying one maximal entry: \
                 batch_size_max = {} bytes in batch_values_max = {} values, with the \
                 encoding's overhead; and at least {MESSAGE_SIZE_MIN})",
                self.message_size_max,
                self.message_size_min(),
                self.batch_size_max,
                self.batch_values_max
            ),
        )?;
        check(
            self.proposal_queue_count_max >= 1,
            "proposal_queue_count_max = 0: must be at least 1".to_string(),
        )?;
        check(
            self.retention_instances_max >= 1,
            "retention_instances_max = 0: must be at least 1 (the newest applied entry \
             carries the checksum a leader's heartbeat is compared with)"
                .to_string(),
        )?;
        Ok(())
    }

    /// The smallest `message_size_max` `validate` accepts with the other fields as they
    /// are: a promise carrying one maximal batch (`batch_values_max` values,
    /// `batch_size_max` bytes), and at least `MESSAGE_SIZE_MIN`.
    #[must_use]
    pub fn message_size_min(&self) -> usize {
        (MESSAGE_OVERHEAD_SIZE + PROMISED_ENTRY_OVERHEAD_SIZE)
            .saturating_add(batch_entry_size_max(
                self.batch_size_max,
                self.batch_values_max,
            ))
            .max(MESSAGE_SIZE_MIN)
    }

    /// How long the leader may rely on a lease granted for a heartbeat it sent:
    /// `lease × (1 − ρ) / (1 + ρ)`, so that a follower whose clock runs at the other
    /// extreme of the drift bound has not yet let the lease lapse.
    #[must_use]
    pub fn leader_lease_ns(&self) -> u64 {
        let rho = self.clock_drift_ppm;
        (u128::from(self.lease_ns) * u128::from(1_000_000 - rho) / u128::from(1_000_000 + rho))
            as u64
    }
}

#[cfg(test)]
mod tests {
    use super::{GroupConfig, MESSAGE_SIZE_MIN};
    use crate::paxos::size::{MESSAGE_OVERHEAD_SIZE, PROMISED_ENTRY_OVERHEAD_SIZE};
    use crate::paxos::{Ballot, Body, Entry, GroupId, Membership, NodeId, PromisedEntry};
    use crate::paxos::{Instance, MessageBody};
    use bytes::Bytes;

    fn config() -> GroupConfig {
        GroupConfig::new(NodeId(1), GroupId(1), Membership::new(vec![NodeId(1)]))
    }

    // Goal: the default message budget is well under the 16 MiB frame limit and carries
    // a promise of one maximal batch; a budget that cannot is refused, naming the field.
    // Method: validate the defaults; build the largest batch the defaults admit and
    // estimate it; then shrink the budget one byte below the bound.
    #[test]
    fn message_budget_carries_one_maximal_entry() {
        let c = config();
        assert_eq!(c.validate(), Ok(()));
        assert!(c.message_size_max <= 4 << 20);
        // batch_values_max values sharing batch_size_max bytes.
        let each = c.batch_size_max / c.batch_values_max;
        let values: crate::paxos::Values =
            smallvec::smallvec![Bytes::from(vec![7u8; each]); c.batch_values_max];
        let promise = MessageBody::Promise {
            ballot: Ballot::ZERO,
            chosen_through: Instance(0),
            entries: vec![PromisedEntry {
                instance: Instance(1),
                ballot: Ballot::ZERO,
                chosen: false,
                entry: Entry {
                    origin: Ballot::ZERO,
                    body: Body::Values(values),
                },
            }],
            truncated: false,
        };
        assert!(promise.encoded_size() <= c.message_size_max);

        let mut small = config();
        small.batch_size_max = 1 << 20;
        small.value_size_max = 1 << 20;
        small.batch_values_max = 4;
        let bound = MESSAGE_OVERHEAD_SIZE
            + PROMISED_ENTRY_OVERHEAD_SIZE
            + crate::paxos::size::batch_entry_size_max(1 << 20, 4);
        small.message_size_max = bound;
        assert_eq!(small.message_size_min(), bound);
        assert_eq!(small.validate(), Ok(()));
        small.message_size_max = bound - 1;
        let why = small.validate().expect_err("one byte short");
        assert!(why.starts_with("message_size_max = "), "{why}");
        small.batch_size_max = 1;
        small.value_size_max = 1;
        small.message_size_max = MESSAGE_SIZE_MIN - 1;
        assert!(small.validate().is_err(), "below the floor");
    }
}
