//! The application's side of a group: a deterministic state machine, applied on the
//! shard that owns the group, in instance order, with checkpoint hooks the runtime
//! calls to take local checkpoints and to restart from them.
//!
//! Invariants the runtime keeps (and the application may rely on):
//! - `apply` is called once per chosen value, in strictly increasing instance order
//!   (values of one instance in their order), on the owning shard's thread only;
//! - entries that are not client values (no-ops, leader start markers, membership
//!   changes) and entries the protocol skips never reach `apply`;
//! - `checkpoint` is called on the shard's thread right after the values of some
//!   instance `through` were applied and before any later one is: the image must
//!   cover exactly the state at that moment (the runtime records `through` beside it,
//!   with the protocol's state there, in the checkpoint file);
//! - on start, `restore(through, image)` is called at most once per machine, before
//!   any `apply`, with an image an earlier `checkpoint` of this group produced on this
//!   node (verified by its CRC32C, never a damaged or unproven one); then `apply`
//!   continues from the first value after `through`. Without a usable checkpoint the
//!   machine is rebuilt by the same `apply` calls from the whole log, as before
//!   checkpoints existed;
//! - while running, a group far behind its peers may be sent a peer's checkpoint
//!   (checkpoint transfer): the runtime then builds a FRESH machine with the factory,
//!   calls `restore(through, image)` on it once (an image a machine of the same kind
//!   produced on another node, verified by its CRC32C), replaces the group's machine
//!   with it, and continues `apply` from the first value after `through`. A machine
//!   that refuses such an image stops its shard (applying on would diverge).

use bytes::Bytes;

use crate::paxos::{GroupId, Instance};

/// A state machine's image at one instance, handed to the runtime to write. Either
/// the bytes themselves, or a function that produces them later, OFF the shard's
/// thread (while the shard goes on applying): a machine whose state is an immutable
/// or persistent structure (an `Arc` of a copy-on-write map, an immutable B-tree)
/// hands out a cheap clone of it inside the function, and the export runs beside
/// the writes that follow.
pub struct CheckpointImage(ImageSource);

enum ImageSource {
    Ready(Bytes),
    Deferred(Box<dyn FnOnce() -> Bytes + Send>),
}

impl CheckpointImage {
    /// An image already serialized.
    #[must_use]
    pub fn ready(bytes: Bytes) -> CheckpointImage {
        CheckpointImage(ImageSource::Ready(bytes))
    }

    /// An image serialized by `export` when the runtime writes it, on another thread:
    /// `export` must capture an immutable view of the state at the checkpoint's
    /// instance, never the live (still changing) state.
    #[must_use]
    pub fn deferred(export: impl FnOnce() -> Bytes + Send + 'static) -> CheckpointImage {
        CheckpointImage(ImageSource::Deferred(Box::new(export)))
    }

    /// The image's bytes (runs a deferred export here).
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        match self.0 {
            ImageSource::Ready(bytes) => bytes,
            ImageSource::Deferred(export) => export(),
        }
    }
}

impl std::fmt::Debug for CheckpointImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            ImageSource::Ready(bytes) => write!(f, "CheckpointImage({} bytes)", bytes.len()),
            ImageSource::Deferred(_) => write!(f, "CheckpointImage(deferred)"),
        }
    }
}

/// A replicated state machine of one group. It need not be `Send`: it is created on
/// its shard's thread by the factory and never leaves it.
pub trait StateMachine: 'static {
    /// Applies the chosen `value` at `instance`; the returned bytes are the output
    /// handed to the proposer (when the proposal was made on this node).
    fn apply(&mut self, instance: Instance, value: &[u8]) -> Bytes;

    /// Answers a read-only `query` against the current state (a linearizable read: the
    /// runtime calls it only once every value chosen before the read began is applied).
    fn query(&self, query: &[u8]) -> Bytes;

    /// An image of the whole state as it is now (exactly what the values applied so
    /// far made it; see the module docs for when the runtime calls this), or `None`
    /// when the machine does not checkpoint (the runtime then stops asking for this
    /// group until the node restarts, and always rebuilds it from the whole log).
    /// Called on the shard's thread: an expensive export belongs in
    /// [`CheckpointImage::deferred`].
    fn checkpoint(&self) -> Option<CheckpointImage> {
        None
    }

    /// Replaces the whole state by `image`, an image `checkpoint` produced once every
    /// value through `instance` was applied. Called on a fresh machine before any
    /// `apply`: at start, or when a checkpoint received from a peer is installed.
    ///
    /// # Errors
    ///
    /// A message when the image cannot be installed: the runtime then logs it, builds
    /// a fresh machine with the factory and tries the previous checkpoint, or replays
    /// the whole log (never applies on a half-installed state).
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

/// The default state machine factory for tools and benchmarks: applies nothing and
/// returns an empty output (the log itself is the product). Its state is empty, so its
/// checkpoints are empty images: they still bound what a restart re-applies, and
/// `synod serve` and `synod bench` pay for them as a real machine's would (files,
/// fdatasyncs).
#[must_use]
pub fn null_factory() -> StateMachineFactory {
    struct Null;
    impl StateMachine for Null {
        fn apply(&mut self, _: Instance, _: &[u8]) -> Bytes {
            Bytes::new()
        }
        fn query(&self, _: &[u8]) -> Bytes {
            Bytes::new()
        }
        fn checkpoint(&self) -> Option<CheckpointImage> {
            Some(CheckpointImage::ready(Bytes::new()))
        }
        fn restore(&mut self, _: Instance, image: &[u8]) -> Result<(), String> {
            if image.is_empty() {
                Ok(())
            } else {
                Err(format!("a {}-byte image for an empty state", image.len()))
            }
        }
    }
    std::sync::Arc::new(|_| Box::new(Null))
}
