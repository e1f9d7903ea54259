//! The real files: the only part of `wal` that performs I/O. It lists, reads and writes
//! the segment files of a shard's log directory through O_DIRECT (`dma_disk`), and does
//! exactly what the pure modules above decide: `recover_dir` reads a directory for
//! `log_recovery`, `store` executes `group_commit`'s write plans, prepares spares and
//! carries out `compaction`'s plans (writing the log head hint through `log_head`), `checkpoint` saves and reads the checkpoint files
//! of `wal::checkpoint`. The simulator replaces this room with `sim::disk` and
//! `sim::fs`.
//!
//! Invariants: no pure `wal` module imports this room (`tests/tidy.rs`); every I/O error
//! is returned to the caller: a segment's stops the shard (never retried), a checkpoint
//! file's fails that checkpoint only (the next one writes a new file).

pub mod checkpoint;
mod config;
pub mod dma_disk;
pub mod log_head;
pub mod recover_dir;
pub mod store;
