//! The runtime: many groups of one core. `Shard` is its pure core (LSN assignment,
//! group commit planning, durability-gated sends, per-peer merging); `driver` runs it
//! on a pinned glommio executor with its WAL (`wal::store`) and its peer links (`net`);
//! `wal_reads` carries out the catch-up reads below a group's in-memory log for the
//! driver; handles reach a shard through its `mailbox`; a shard that stops for good says why
//! through the node's `fatal::FatalLatch`.

pub mod checkpoints;
pub mod clock;
pub mod driver;
pub mod fatal;
pub mod histogram;
pub mod log_budget;
pub mod log_reads;
pub mod mailbox;
pub mod net;
pub mod notify;
pub mod placement;
pub mod refusals;
pub mod request;
pub mod shard;
pub mod state_machine;
pub mod truncation;
pub mod wal_reads;

pub use checkpoints::{CheckpointOutcome, CheckpointPolicy, TakeCheckpoint};
pub use placement::shard_of;
pub use shard::{
    CheckpointRead, CheckpointReadOutcome, Effects, InstallCheckpoint, Shard, ShardConfig,
    ShardCounters, ShardInput, TransferPolicy,
};
pub use truncation::{TruncationPolicy, WalTruncate};
