//! The Multi-Paxos protocol of one group: pure, deterministic, sans-IO.
//!
//! `Group::step(now, input, &mut output)` takes a message, a proposal or a tick and
//! returns records to persist, messages to send, entries to apply and proposals to
//! complete (see `output` for the ordering contract). No I/O, no clock, no async:
//! everything here runs unchanged in the deterministic simulator.

mod acceptor;
pub mod bounds;
pub mod checkpoint;
pub mod config;
mod filters;
pub mod group;
mod joining;
mod leader;
mod leadership;
mod learner;
pub mod message;
mod observe;
pub mod output;
pub mod placement;
pub mod size;
mod slot_log;
mod stream;
#[cfg(test)]
mod test_support;
mod transfer;
pub mod types;

pub use bounds::{Bound, OutOfBounds};
pub use checkpoint::{CheckpointBase, Restore};
pub use config::{GroupConfig, LeaderPlacement};
pub use filters::FILTERS_COUNT_MAX;
pub use group::{entry_checksum, Counters, Group, Input, Role};
pub use joining::{JOIN_ELECTION_TIMEOUTS, RETIRED_REASON};
pub use message::{InstanceRange, Message, MessageBody, PromisedEntry};
pub use output::{
    Apply, CheckpointSend, Completion, Output, ProposeError, RawRun, Record, Refused, WalRead,
    WalReadOutcome, WalReader,
};
pub use types::{
    Ballot, Body, Entry, GroupId, Instance, Lsn, Membership, Nanos, NodeId, ProposalId, Proposals,
    Values,
};
