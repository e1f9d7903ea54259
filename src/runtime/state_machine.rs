//! The application's side of a group: a deterministic state machine, applied on the
//! shard that owns the group, in instance order, with hooks for checkpoints (declared
//! for the application to implement; the runtime does not call them yet).
//!
//! Invariants the runtime keeps (and the application may rely on):
//! - `apply` is called once per chosen value, in strictly increasing instance order
//!   (values of one instance in their order), on the owning shard's thread only;
//! - entries that are not client values (no-ops, leader start markers, membership
//!   changes) and entries the protocol skips never reach `apply`;
//! - after a restart the state machine is rebuilt by the same `apply` calls from the
//!   whole log. The runtime never calls `checkpoint` or `restore` today: no checkpoint
//!   is taken, installed by catch-up or used to truncate the log.

use bytes::Bytes;

use crate::paxos::{GroupId, Instance};

/// A replicated state machine of one group. It need not be `Send`: it is created on
/// its shard's thread by the factory and never leaves it.
pub trait StateMachine: 'static {
    /// Applies the chosen `value` at `instance`; the returned bytes are the output
    /// handed to the proposer (when the proposal was made on this node).
    fn apply(&mut self, instance: Instance, value: &[u8]) -> Bytes;

    /// Answers a read-only `query` against the current state (a linearizable read: the
    /// runtime calls it only once every value chosen before the read began is applied).
    fn query(&self, query: &[u8]) -> Bytes;

    /// Checkpoint hook: a serialized image of the state covering every instance up to
    /// and including the returned instance, or `None` when the machine does not
    /// checkpoint. Meant to let the log be truncated below it and lagging replicas be
    /// installed from it; the runtime does not call it yet.
    fn checkpoint(&self) -> Option<(Instance, Bytes)> {
        None
    }

    /// Checkpoint hook: replaces the whole state by a checkpoint produced by
    /// `checkpoint` on some replica (covering every instance through `instance`).
    ///
    /// # Errors
    ///
    /// A message when the image cannot be installed. The contract for when the runtime
    /// installs checkpoints (it does not call `restore` yet): the replica is then kept
    /// out of service for the group rather than apply on a wrong base.
    fn restore(&mut self, instance: Instance, image: &[u8]) -> Result<(), String> {
        let _ = image;
        Err(format!(
            "this state machine does not install checkpoints (asked for instance {})",
            instance.0
        ))
    }
}

/// Builds the state machine of a group; called on the group's shard thread at start.
pub type StateMachineFactory =
    std::sync::Arc<dyn Fn(GroupId) -> Box<dyn StateMachine> + Send + Sync>;
