//! The runtime: many groups of one core. `Shard` is its pure core (LSN assignment,
//! group commit planning, durability-gated sends, per-peer merging); the glommio driver
//! that executes its effects comes with the real cluster.

pub mod clock;
pub mod net;
pub mod placement;
pub mod shard;

pub use placement::shard_of;
pub use shard::{Effects, Shard, ShardConfig, ShardCounters, ShardInput};
