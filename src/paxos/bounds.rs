//! The sane bounds of every ballot and instance a peer sends, checked before a message
//! may touch any state.
//!
//! A peer message is untrusted input. Beyond what one replica's state can judge (a
//! stale ballot, a gap), some values no honest replica ever sends: a round above
//! [`Ballot::ROUND_MAX`], an instance above [`Instance::MAX`], a log position 0, an
//! inverted range, a run whose last instance lies beyond the log's end. Such a message
//! is forged or corrupt. The rule: it is refused whole, FIRST, before any state changes
//! (not even the highest round seen), counted by a named reason, reported to the
//! executor, and nothing of it is ever persisted.
//!
//! Invariants:
//! - every message an honest replica sends passes [`MessageBody::check_bounds`] (the
//!   simulator checks each one as it leaves a shard);
//! - after a message passed, `first + len` of each of its runs and `last + 1` of each of
//!   its ranges are at most `Instance::MAX + 1`, and every round in it is at most
//!   `Ballot::ROUND_MAX`, so the core's instance and round arithmetic cannot overflow.

use std::fmt;

use super::message::{InstanceRange, MessageBody, PromisedEntry};
use super::types::{Ballot, Entry, Instance};

/// The bound a value broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// The value must be at most this.
    AtMost(u64),
    /// The value must be at least this.
    AtLeast(u64),
}

/// A field of a peer message outside the bounds every honest replica keeps: which
/// field (by schema path, e.g. `Prepare.ballot.round`), the value found, the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfBounds {
    /// The field, e.g. `Accept.first`.
    pub field: &'static str,
    /// The value found.
    pub value: u64,
    /// The bound it broke.
    pub bound: Bound,
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bound {
            Bound::AtMost(max) => write!(
                f,
                "{} = {} is above the bound {max}",
                self.field, self.value
            ),
            Bound::AtLeast(min) => {
                write!(
                    f,
                    "{} = {} is below the bound {min}",
                    self.field, self.value
                )
            }
        }
    }
}

impl std::error::Error for OutOfBounds {}

fn at_most(field: &'static str, value: u64, max: u64) -> Result<(), OutOfBounds> {
    if value > max {
        return Err(OutOfBounds {
            field,
            value,
            bound: Bound::AtMost(max),
        });
    }
    Ok(())
}

fn at_least(field: &'static str, value: u64, min: u64) -> Result<(), OutOfBounds> {
    if value < min {
        return Err(OutOfBounds {
            field,
            value,
            bound: Bound::AtLeast(min),
        });
    }
    Ok(())
}

/// Any ballot (a promise, an accepted or origin ballot; round 0 allowed): its round is
/// at most `Ballot::ROUND_MAX`.
pub fn check_round(field: &'static str, ballot: Ballot) -> Result<(), OutOfBounds> {
    at_most(field, ballot.round, Ballot::ROUND_MAX)
}

/// A proposer's ballot (a prepare, an accept, a heartbeat and their answers): its round
/// is in `1..=Ballot::ROUND_MAX` (round 0 is never campaigned at).
pub fn check_proposer_round(field: &'static str, ballot: Ballot) -> Result<(), OutOfBounds> {
    at_least(field, ballot.round, 1)?;
    check_round(field, ballot)
}

/// A watermark (0 = none): at most `Instance::MAX`.
pub fn check_watermark(field: &'static str, instance: Instance) -> Result<(), OutOfBounds> {
    at_most(field, instance.0, Instance::MAX.0)
}

/// A log position: in `1..=Instance::MAX`.
pub fn check_position(field: &'static str, instance: Instance) -> Result<(), OutOfBounds> {
    at_least(field, instance.0, 1)?;
    check_watermark(field, instance)
}

/// The first instance of a run of `count` consecutive instances: a log position whose
/// run ends at or below `Instance::MAX` (so `first + count` cannot overflow).
pub fn check_run(field: &'static str, first: Instance, count: usize) -> Result<(), OutOfBounds> {
    check_position(field, first)?;
    let extra = u64::try_from(count.saturating_sub(1)).unwrap_or(u64::MAX);
    at_most(field, first.0, Instance::MAX.0.saturating_sub(extra))
}

/// Ascending, disjoint ranges of log positions, each with `first <= last`.
fn check_ranges(ranges: &[InstanceRange]) -> Result<(), OutOfBounds> {
    let mut next_min = 1;
    for range in ranges {
        at_least("Accepted.ranges.first", range.first.0, next_min)?;
        check_position("Accepted.ranges.first", range.first)?;
        check_watermark("Accepted.ranges.last", range.last)?;
        at_least("Accepted.ranges.last", range.last.0, range.first.0)?;
        next_min = range.last.0 + 1;
    }
    Ok(())
}

fn check_origins(field: &'static str, entries: &[Entry]) -> Result<(), OutOfBounds> {
    for entry in entries {
        check_round(field, entry.origin)?;
    }
    Ok(())
}

/// Promised entries: ascending log positions, every ballot in bounds.
fn check_promised(entries: &[PromisedEntry]) -> Result<(), OutOfBounds> {
    let mut next_min = 1;
    for reported in entries {
        at_least("Promise.entries.instance", reported.instance.0, next_min)?;
        check_position("Promise.entries.instance", reported.instance)?;
        check_round("Promise.entries.ballot.round", reported.ballot)?;
        check_round("Promise.entries.entry.origin.round", reported.entry.origin)?;
        next_min = reported.instance.0 + 1;
    }
    Ok(())
}

/// The largest checkpoint file any honest replica sends (1 TiB): a bound on the
/// sizes and offsets of a transfer, beside the receiver's own, configured, maximum.
pub const CHECKPOINT_SIZE_MAX: u64 = 1 << 40;

impl MessageBody {
    /// Checks every ballot, instance, run and range of the message against the bounds
    /// of the module docs; the first field out of bounds is the error. Pure and cheap
    /// (no allocation); the decoder and `Group::step` both call it.
    ///
    /// # Errors
    ///
    /// The first field out of bounds, its value and the bound.
    pub fn check_bounds(&self) -> Result<(), OutOfBounds> {
        // No wildcard: a new message kind must say what its bounds are.
        match self {
            MessageBody::Prepare { ballot, from } => {
                check_proposer_round("Prepare.ballot.round", *ballot)?;
                check_position("Prepare.from", *from)
            }
            MessageBody::Promise {
                ballot,
                chosen_through,
                entries,
                truncated: _,
            } => {
                check_proposer_round("Promise.ballot.round", *ballot)?;
                check_watermark("Promise.chosen_through", *chosen_through)?;
                check_promised(entries)
            }
            MessageBody::Reject { promised } => check_round("Reject.promised.round", *promised),
            MessageBody::Accept {
                ballot,
                chosen_through,
                first,
                entries,
            } => {
                check_proposer_round("Accept.ballot.round", *ballot)?;
                check_watermark("Accept.chosen_through", *chosen_through)?;
                check_run("Accept.first", *first, entries.len())?;
                check_origins("Accept.entries.origin.round", entries)
            }
            MessageBody::Accepted { ballot, ranges } => {
                check_proposer_round("Accepted.ballot.round", *ballot)?;
                check_ranges(ranges)
            }
            MessageBody::Heartbeat {
                ballot,
                chosen_through,
                sent_at: _,
                checksum_through,
                checksum: _,
            } => {
                check_proposer_round("Heartbeat.ballot.round", *ballot)?;
                check_watermark("Heartbeat.chosen_through", *chosen_through)?;
                check_watermark("Heartbeat.checksum_through", *checksum_through)
            }
            MessageBody::HeartbeatAck { ballot, sent_at: _ } => {
                check_proposer_round("HeartbeatAck.ballot.round", *ballot)
            }
            MessageBody::CatchUpRequest {
                from,
                credit: _,
                retired: _,
            } => check_position("CatchUpRequest.from", *from),
            MessageBody::CatchUpChunk {
                chosen_through,
                promised,
                accepted_max,
                first,
                entries,
                from_voter: _,
                membership_changed: _,
            } => {
                check_watermark("CatchUpChunk.chosen_through", *chosen_through)?;
                check_round("CatchUpChunk.promised.round", *promised)?;
                check_watermark("CatchUpChunk.accepted_max", *accepted_max)?;
                check_run("CatchUpChunk.first", *first, entries.len())?;
                check_origins("CatchUpChunk.entries.origin.round", entries)
            }
            MessageBody::CheckpointRequest { through, offset } => {
                check_position("CheckpointRequest.through", *through)?;
                at_most("CheckpointRequest.offset", *offset, CHECKPOINT_SIZE_MAX)
            }
            MessageBody::CheckpointChunk {
                through,
                offset,
                total_size,
                data,
            } => {
                check_position("CheckpointChunk.through", *through)?;
                at_most(
                    "CheckpointChunk.total_size",
                    *total_size,
                    CHECKPOINT_SIZE_MAX,
                )?;
                // A piece lies inside the file: offset + len <= total_size.
                let end = offset.saturating_add(data.len() as u64);
                at_most("CheckpointChunk.offset", end, *total_size)
            }
            MessageBody::CatchUpRaw {
                chosen_through,
                promised,
                accepted_max,
                run,
                from_voter: _,
                membership_changed: _,
            } => {
                check_watermark("CatchUpRaw.chosen_through", *chosen_through)?;
                check_round("CatchUpRaw.promised.round", *promised)?;
                check_watermark("CatchUpRaw.accepted_max", *accepted_max)?;
                check_position("CatchUpRaw.first", run.first_instance)?;
                check_watermark("CatchUpRaw.last", run.last_instance)?;
                at_least("CatchUpRaw.last", run.last_instance.0, run.first_instance.0)
            }
            MessageBody::Handover { ballot, target: _ } => {
                check_proposer_round("Handover.ballot.round", *ballot)
            }
            MessageBody::PreVote { ballot } => {
                check_proposer_round("PreVote.ballot.round", *ballot)
            }
            MessageBody::PreVoteReply { ballot, granted: _ } => {
                check_proposer_round("PreVoteReply.ballot.round", *ballot)
            }
        }
    }

    /// The reason under which `Group` counts this kind of message when it is refused
    /// as out of bounds (`<kind>_out_of_bounds`).
    #[must_use]
    pub fn out_of_bounds_reason(&self) -> &'static str {
        match self {
            MessageBody::Prepare { .. } => "prepare_out_of_bounds",
            MessageBody::Promise { .. } => "promise_out_of_bounds",
            MessageBody::Reject { .. } => "reject_out_of_bounds",
            MessageBody::Accept { .. } => "accept_out_of_bounds",
            MessageBody::Accepted { .. } => "accepted_out_of_bounds",
            MessageBody::Heartbeat { .. } => "heartbeat_out_of_bounds",
            MessageBody::HeartbeatAck { .. } => "heartbeat_ack_out_of_bounds",
            MessageBody::CatchUpRequest { .. } => "catch_up_request_out_of_bounds",
            MessageBody::CatchUpChunk { .. } => "catch_up_chunk_out_of_bounds",
            MessageBody::CheckpointRequest { .. } => "checkpoint_request_out_of_bounds",
            MessageBody::CheckpointChunk { .. } => "checkpoint_chunk_out_of_bounds",
            MessageBody::CatchUpRaw { .. } => "catch_up_raw_out_of_bounds",
            MessageBody::Handover { .. } => "handover_out_of_bounds",
            MessageBody::PreVote { .. } => "pre_vote_out_of_bounds",
            MessageBody::PreVoteReply { .. } => "pre_vote_reply_out_of_bounds",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{check_run, Bound, OutOfBounds};
    use crate::paxos::{Ballot, Instance, InstanceRange, MessageBody, NodeId};

    fn ballot(round: u64) -> Ballot {
        Ballot {
            round,
            node: NodeId(1),
        }
    }

    // Goal: the run check admits a run ending exactly at Instance::MAX and refuses one
    // instance more, without overflowing on huge counts.
    // Method: check runs at the edge, one past it, and a u64::MAX start.
    #[test]
    fn runs_end_at_instance_max() {
        let max = Instance::MAX.0;
        assert_eq!(check_run("x", Instance(max - 9), 10), Ok(()));
        assert_eq!(
            check_run("x", Instance(max - 8), 10),
            Err(OutOfBounds {
                field: "x",
                value: max - 8,
                bound: Bound::AtMost(max - 9)
            })
        );
        assert!(check_run("x", Instance(u64::MAX), usize::MAX).is_err());
        assert!(check_run("x", Instance(0), 0).is_err());
        assert_eq!(check_run("x", Instance(max), 0), Ok(()));
    }

    // Goal: rounds are bounded on both sides where a proposer's ballot is required,
    // and only from above where a promise may be zero.
    // Method: prepares and rejects at 0, ROUND_MAX and ROUND_MAX + 1.
    #[test]
    fn rounds_are_bounded() {
        let prepare = |round| MessageBody::Prepare {
            ballot: ballot(round),
            from: Instance(1),
        };
        assert!(prepare(0).check_bounds().is_err());
        assert_eq!(prepare(Ballot::ROUND_MAX).check_bounds(), Ok(()));
        let error = prepare(u64::MAX).check_bounds().expect_err("u64::MAX");
        assert_eq!(error.field, "Prepare.ballot.round");
        assert_eq!(error.bound, Bound::AtMost(Ballot::ROUND_MAX));
        let reject = |round| MessageBody::Reject {
            promised: ballot(round),
        };
        assert_eq!(reject(0).check_bounds(), Ok(()));
        assert!(reject(Ballot::ROUND_MAX + 1).check_bounds().is_err());
    }

    // Goal: ranges must be ascending, disjoint, not inverted and within the log.
    // Method: one good set, then each way of breaking it.
    #[test]
    fn ranges_are_checked() {
        let r = |a, b| InstanceRange {
            first: Instance(a),
            last: Instance(b),
        };
        let accepted = |ranges| MessageBody::Accepted {
            ballot: ballot(1),
            ranges,
        };
        let max = Instance::MAX.0;
        assert_eq!(
            accepted(vec![r(1, 2), r(4, 4), r(max, max)]).check_bounds(),
            Ok(())
        );
        for bad in [
            vec![r(0, 1)],
            vec![r(3, 2)],
            vec![r(1, 3), r(3, 4)],
            vec![r(5, 6), r(1, 2)],
            vec![r(1, max + 1)],
            vec![r(u64::MAX, u64::MAX)],
        ] {
            assert!(accepted(bad.clone()).check_bounds().is_err(), "{bad:?}");
        }
    }
}
