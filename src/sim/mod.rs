//! The deterministic simulator: whole clusters (nodes × shards × groups) on a virtual
//! clock, with a simulated network, disk and clocks, driven by one seed.
//!
//! Building blocks, each usable alone:
//! - [`options`]: [`SimOptions::from_seed`] draws everything a run needs (swarm testing);
//!   [`profile`]: a seed's family ([`Profile`]), the default one or one biased toward
//!   rare faults;
//! - [`network`]: [`SimNetwork`], one deterministic delivery queue with loss,
//!   duplication, delay/reorder, partitions, crashed nodes and per-link bounds;
//! - [`clock`]: [`SimClock`], a node's drifting local clock and its exact inverse;
//! - `disk`: the simulated disk (live and durable images, torn writes, bit flips);
//! - `fs`: a node's checkpoint directory (files and names, with a file system's crash
//!   semantics); `machine`: the replicas' state machine (checkpoint and restore);
//! - [`checkers`]: one safety or liveness property per file, fed after every step.
//!
//! Invariants of the whole: all randomness comes from [`crate::prng::Prng`] seeded by the
//! run's seed, and every collection that is iterated is ordered (`BTreeMap`, or a heap
//! keyed by (time, sequence)), so a seed replays the same run on every machine. Time is
//! TRUE (simulated) nanoseconds everywhere in `sim` except what a node reads from its
//! [`SimClock`]: that local time is what the runtime and protocol see.

pub mod checkers;
pub mod clock;
pub mod cluster;
pub mod disk;
pub mod fs;
pub mod machine;
pub mod network;
pub mod options;
pub mod profile;
pub mod swarm;

pub use checkers::{Checkers, Violation};
pub use clock::SimClock;
pub use network::{NetworkOptions, NetworkStats, SimNetwork};
pub use options::{FaultClass, SimOptions};
pub use profile::Profile;
