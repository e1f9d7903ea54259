//! Properties the simulator checks while a cluster runs, one property per file, each
//! citing its source. The driver feeds every checker after every step; every
//! `observe_*` is O(log n) in the state it keeps, so that is cheap.
//!
//! | file           | property                                                        |
//! |----------------|-----------------------------------------------------------------|
//! | `agreement`    | one entry per (group, instance), against a global oracle        |
//! | `prefix`       | applied logs are gap-free and prefixes of each other            |
//! | `checksum`     | equal running checksums at equal (group, instance)              |
//! | `checkpoint`   | a restart's checkpoint is the chosen log's state; none goes back |
//! | `durability`   | every acknowledged proposal is in the final log, not skipped    |
//! | `ghost`        | no entry older than the latest StartWorking is applied          |
//! | `lease`        | at most one node acts on a group's lease at any true instant    |
//! | `read`         | reads reflect every acknowledged value, and only chosen ones    |
//! | `log_read`     | log reads return exactly the chosen values of their range       |
//! | `monotonic`    | promised/leader ballots and watermarks never go back            |
//! | `bounds`       | rounds and instances in bounds; forged messages change nothing  |
//! | `size`         | messages fit `message_size_max`; the estimate bounds the codec  |
//! | `retention`    | in-memory logs stay within retention and window (bounded memory) |
//! | `install`      | a peer's checkpoint installs forward; no vote on what it covers |
//! | `send_durable` | a Promise/Accepted leaves only once its record is durable on disk |
//! | `recovery`     | each start's recovery returns what the disk durably holds, or says corrupt only after damage |
//! | `truncation`   | the WAL is released only below a durable checkpoint; a restart restores at or above it |
//! | `wire`         | every message crosses the real peer codec (pack, frame, decode, unpack) unchanged |
//! | `membership`   | consecutive memberships differ by one voter and their quorums meet; each ballot's leader had a quorum of the membership in effect |
//! | `liveness`     | after faults heal, the cluster converges within a bound         |
//!
//! Invariant: a checker never panics on what a node reports (that is the system under
//! test misbehaving); it returns a [`Violation`] naming the checker and the values.
//! It panics only on driver misuse (programmer error), saying so.

pub mod agreement;
pub mod bounds;
pub mod checkpoint;
pub mod checksum;
pub mod durability;
pub mod ghost;
pub mod install;
pub mod lease;
pub mod liveness;
pub mod log_read;
pub mod membership;
pub mod monotonic;
pub mod partial;
pub mod prefix;
pub mod read;
pub mod recovery;
pub mod retention;
pub mod send_durable;
pub mod size;
pub mod truncation;
pub mod wire;

pub use agreement::AgreementChecker;
pub use bounds::BoundsChecker;
pub use checkpoint::CheckpointChecker;
pub use checksum::ChecksumChecker;
pub use durability::DurabilityChecker;
pub use ghost::GhostChecker;
pub use install::InstallChecker;
pub use lease::LeaseChecker;
pub use liveness::LivenessChecker;
pub use log_read::{LogReadAnswered, LogReadChecker};
pub use membership::MembershipChecker;
pub use monotonic::{MonotonicChecker, Watermarks};
pub use partial::{PartialKind, PartialRecovery, PartialWindow};
pub use prefix::PrefixChecker;
pub use read::ReadChecker;
pub use recovery::{RecoveryChecker, RecoveryCounts};
pub use retention::{LogShape, RetentionChecker};
pub use send_durable::SendDurableChecker;
pub use size::MessageSizeChecker;
pub use truncation::TruncationChecker;
pub use wire::WireChecker;

use crate::paxos::{Apply, Ballot, Body, Entry, GroupId, Instance, NodeId, ProposalId};
use bytes::Bytes;
use std::fmt;

/// A property the run broke: which checker, and a message with the values that show it
/// (group, instance, nodes, ballots, times).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The checker's name, e.g. `"agreement"`.
    pub checker: &'static str,
    /// What was observed, with the values.
    pub message: String,
}

impl Violation {
    /// A violation of `checker`'s property.
    #[must_use]
    pub fn new(checker: &'static str, message: impl Into<String>) -> Violation {
        Violation {
            checker,
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violated: {}", self.checker, self.message)
    }
}

impl std::error::Error for Violation {}

/// One position of an applied log: the entry and whether the apply path skipped it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedEntry {
    /// The chosen entry.
    pub entry: Entry,
    /// Whether it was skipped (origin ballot below the latest applied StartWorking).
    pub skip: bool,
}

/// A short, comparable description of an entry for violation messages: the body kind,
/// its size and a CRC32C of its values, and its origin ballot.
#[must_use]
pub fn describe_entry(entry: &Entry) -> String {
    let body = match &entry.body {
        Body::Values(values) => {
            let crc = values
                .iter()
                .fold(0u32, |crc, value| crc32c::crc32c_append(crc, value));
            format!(
                "Values[{} values, {} B, crc32c {crc:#010x}]",
                values.len(),
                entry.payload_size()
            )
        }
        Body::Noop => "Noop".to_string(),
        Body::StartWorking => "StartWorking".to_string(),
        Body::Config(membership) => {
            let voters: Vec<u32> = membership.voters().iter().map(|n| n.0).collect();
            format!("Config{voters:?}")
        }
    };
    format!("{body} origin {}", entry.origin)
}

/// True nanoseconds as seconds, for messages: `12.345678901s`.
pub(crate) fn seconds(true_ns: u64) -> String {
    format!(
        "{}.{:09}s",
        true_ns / 1_000_000_000,
        true_ns % 1_000_000_000
    )
}

/// Every checker, for a driver that wants one call per kind of observation. The fields
/// are public: call a checker directly for what the bundle does not route.
#[derive(Debug, Default)]
pub struct Checkers {
    /// One entry per (group, instance).
    pub agreement: AgreementChecker,
    /// Gap-free, mutually consistent applied logs.
    pub prefix: PrefixChecker,
    /// Equal running checksums.
    pub checksum: ChecksumChecker,
    /// Checkpoints restore the chosen log's state; durable ones never go back.
    pub checkpoint: CheckpointChecker,
    /// Acknowledged proposals survive.
    pub durability: DurabilityChecker,
    /// The StartWorking filter (no ghost replay).
    pub ghost: GhostChecker,
    /// Lease exclusivity.
    pub lease: LeaseChecker,
    /// Linearizable reads.
    pub read: ReadChecker,
    /// Log reads return the chosen log.
    pub log_read: LogReadChecker,
    /// Ballots and watermarks never go back.
    pub monotonic: MonotonicChecker,
    /// Rounds and instances stay in bounds; forged messages change nothing.
    pub bounds: BoundsChecker,
    /// Convergence after faults heal.
    pub liveness: LivenessChecker,
    /// Membership changes and the quorums that elect leaders across them.
    pub membership: MembershipChecker,
    /// What each partial connectivity fault cost (measured; checked by tests).
    pub partial: PartialRecovery,
    /// Messages fit their byte budget, and the estimate bounds the real encoding.
    pub message_size: MessageSizeChecker,
    /// In-memory logs stay within retention and window.
    pub retention: RetentionChecker,
    /// Checkpoints installed from peers move forward and are never voted under.
    pub install: InstallChecker,
    /// The WAL is released only below durable checkpoints.
    pub truncation: TruncationChecker,
    /// Votes leave only once their records are durable on the simulated disk.
    pub send_durable: SendDurableChecker,
    /// Each start's recovery against what the simulated disk durably holds.
    pub recovery: RecoveryChecker,
    /// Every message crosses the real peer codec; what it delivers is what was sent.
    pub wire: WireChecker,
}

impl Checkers {
    /// Fresh checkers with nothing observed.
    #[must_use]
    pub fn new() -> Checkers {
        Checkers::default()
    }

    /// Fresh checkers for groups whose messages may take `message_size_max` bytes
    /// (`None`: the frame limit), over the default frame limit.
    #[must_use]
    pub fn with_message_size_max(message_size_max: Option<usize>) -> Checkers {
        let frame_size_max = crate::transport::DecodeLimits::default().frame_size_max;
        Checkers {
            message_size: MessageSizeChecker::new(
                message_size_max.unwrap_or(frame_size_max),
                frame_size_max,
            ),
            ..Checkers::default()
        }
    }

    /// The client submitted `value` to `node` for `group` at true time `now_ns`, and the
    /// node named it `proposal`. Call BEFORE the step that receives it, so that its
    /// acknowledgement is recognised: durability and liveness see it.
    pub fn observe_propose(
        &mut self,
        node: NodeId,
        group: GroupId,
        proposal: ProposalId,
        value: Bytes,
        now_ns: u64,
    ) -> Result<(), Violation> {
        self.liveness.observe_propose(node, group, proposal, now_ns);
        self.durability
            .observe_propose(node, group, proposal, value)
    }

    /// `node` applied `apply` (call for every `Apply` of every step, in output order):
    /// agreement, prefix, checksum and durability see it; the proposals it acknowledges
    /// (unless skipped) are complete for liveness.
    pub fn observe_apply(&mut self, node: NodeId, apply: &Apply) -> Result<(), Violation> {
        self.agreement.observe_apply(node, apply)?;
        self.prefix.observe_apply(node, apply)?;
        self.checksum.observe_apply(node, apply)?;
        self.durability.observe_apply(node, apply)?;
        self.ghost.observe_apply(node, apply)?;
        self.membership.observe_apply(node, apply)?;
        self.checkpoint.observe_apply(apply);
        self.read.observe_apply(apply);
        if !apply.skip {
            for proposal in &apply.proposals {
                self.liveness.observe_complete(node, apply.group, *proposal);
            }
        }
        Ok(())
    }

    /// `node` failed `proposal` (a `Completion` in the step's output).
    pub fn observe_failed(&mut self, node: NodeId, group: GroupId, proposal: ProposalId) {
        self.durability.observe_failed(node, group, proposal);
        self.liveness.observe_complete(node, group, proposal);
    }

    /// `node` restarted `group` from a checkpoint at `through` (call after `restart`):
    /// its applies continue at `through + 1`, under the StartWorking filter the
    /// canonical log gives there.
    pub fn resume(
        &mut self,
        node: NodeId,
        group: GroupId,
        through: Instance,
    ) -> Result<(), Violation> {
        self.prefix.resume(node, group, through)?;
        self.log_read.observe_restored(node, group, through);
        let prefix = self.prefix.log(group);
        let end = usize::try_from(through.0)
            .expect("instance fits in usize")
            .min(prefix.len());
        let latest = prefix[..end]
            .iter()
            .rev()
            .find(|e| !e.skip && matches!(e.entry.body, Body::StartWorking))
            .map(|e| e.entry.origin)
            .unwrap_or(Ballot::ZERO);
        self.ghost.resume(node, group, latest);
        Ok(())
    }

    /// `node`'s state for `group` after a step: monotonicity and liveness see it.
    pub fn observe_watermarks(
        &mut self,
        node: NodeId,
        group: GroupId,
        watermarks: &Watermarks,
    ) -> Result<(), Violation> {
        self.monotonic.observe_watermarks(node, group, watermarks)?;
        self.bounds.observe_watermarks(node, group, watermarks)?;
        self.liveness
            .observe_chosen(node, group, watermarks.chosen_through);
        self.liveness
            .observe_applied(node, group, watermarks.applied_through);
        Ok(())
    }

    /// `node` crashed and restarts as a new process (`disk_lost`: some of its logs lost
    /// state, those of `lost_groups`). Its volatile state is forgotten by every checker
    /// that tracks it.
    pub fn restart(
        &mut self,
        node: NodeId,
        disk_lost: bool,
        lost_groups: &std::collections::BTreeSet<GroupId>,
    ) {
        self.checkpoint.reset(node, disk_lost);
        self.prefix.reset(node);
        self.durability.reset(node);
        self.ghost.reset(node);
        self.monotonic
            .reset(node, |group| lost_groups.contains(&group));
        self.liveness.reset(node);
        self.read.reset(node);
        self.install.reset(node);
        self.log_read.reset(node);
        self.truncation.reset(node, disk_lost);
        // `send_durable` is reset by the executor, which re-feeds it what recovery read.
    }

    /// A log read was answered: checked against the canonical log of its group.
    pub fn observe_log_read(&mut self, answered: &LogReadAnswered<'_>) -> Result<(), Violation> {
        self.log_read
            .observe(answered, self.prefix.log(answered.group))
    }
}

#[cfg(test)]
mod tests {
    use super::{describe_entry, Checkers, Watermarks};
    use crate::paxos::{Apply, Ballot, Body, Entry, GroupId, Instance, NodeId, ProposalId};
    use bytes::Bytes;

    fn apply(instance: u64, value: &'static [u8], proposals: Vec<ProposalId>) -> Apply {
        Apply {
            group: GroupId(1),
            instance: Instance(instance),
            entry: Entry {
                origin: Ballot {
                    round: 2,
                    node: NodeId(0),
                },
                body: Body::Values(smallvec::smallvec![Bytes::from_static(value)]),
            },
            skip: false,
            proposals: proposals.into(),
            checksum: u32::from(value[0]),
        }
    }

    // Goal: the bundle routes applies and watermarks to every checker, and a restart
    // lets a node re-apply from 1 while a divergent apply is still caught.
    // Method: node 0 proposes twice, applies one and fails one; node 1 applies,
    // restarts, re-applies, then diverges; durability and liveness see the same run.
    #[test]
    fn bundle_routes_and_restarts() {
        let mut checkers = Checkers::new();
        let (n0, n1, g) = (NodeId(0), NodeId(1), GroupId(1));
        checkers.liveness.start(0, 1_000);
        checkers
            .observe_propose(n0, g, ProposalId(1), Bytes::from_static(b"a"), 10)
            .unwrap();
        checkers
            .observe_propose(n0, g, ProposalId(2), Bytes::from_static(b"x"), 10)
            .unwrap();
        assert_eq!(checkers.liveness.pending_count(), 2);
        checkers
            .observe_apply(n0, &apply(1, b"a", vec![ProposalId(1)]))
            .unwrap();
        checkers.observe_failed(n0, g, ProposalId(2));
        assert_eq!(checkers.liveness.pending_count(), 0);
        assert_eq!(checkers.durability.pending_count(), 0);
        assert_eq!(checkers.durability.acknowledged().len(), 1);
        checkers.observe_apply(n1, &apply(1, b"a", vec![])).unwrap();
        checkers.restart(n1, false, &Default::default());
        checkers.observe_apply(n1, &apply(1, b"a", vec![])).unwrap();
        let marks = Watermarks {
            promised: Ballot {
                round: 2,
                node: NodeId(0),
            },
            chosen_through: Instance(1),
            applied_through: Instance(1),
            leader_ballot: None,
        };
        checkers.observe_watermarks(n1, g, &marks).unwrap();
        assert_eq!(checkers.liveness.target(g).0, Instance(1));
        let logs = checkers.prefix.final_logs(&[n0, n1]);
        checkers.durability.check_final(&logs).unwrap();
        let violation = checkers
            .observe_apply(n1, &apply(2, b"b", vec![]))
            .and_then(|()| checkers.observe_apply(n0, &apply(2, b"c", vec![])))
            .unwrap_err();
        assert_eq!(violation.checker, "agreement");
        assert!(violation
            .to_string()
            .starts_with("agreement violated: group 1 instance 2"));
        assert!(describe_entry(&apply(1, b"a", vec![]).entry).contains("1 values, 1 B"));
    }
}
