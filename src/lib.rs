//! synod: a Multi-Paxos replicated log for Linux.
//!
//! Layers, each a module, depending only downward: `paxos` (the pure protocol),
//! `wal` (the shard write-ahead log), `transport` (wire codec), `runtime` (the shard:
//! many groups of one core, on pinned glommio executors), `api` (the embedding surface:
//! `Node`, `NodeHandle`, `StateMachine`), `kv` (the built-in replicated key-value
//! state machine and its format), `client` (a client of running nodes, and the
//! client protocol) and `server` (a node's client listener), and `sim` (the
//! deterministic simulator that drives everything below `api`).
//!
//! No unsafe code but one line: `runtime::net::listen` hands a listening socket it made
//! to glommio (`FromRawFd`), the only way to choose the socket's options.
#![deny(unsafe_code)]

pub mod api;
pub mod check;
pub mod client;
pub mod kv;
pub mod paxos;
pub mod prng;
pub mod runtime;
pub mod server;
pub mod sim;
pub mod support;
pub mod transport;
pub mod wal;
