//! Checkers of recorded histories, pure functions over data a test or a tool collected:
//! nothing here runs a node, reads a clock or touches a file. [`linearizability`] checks
//! a key-value history (put, get, delete, compare-and-set, with indeterminate outcomes)
//! against a sequential register per key.

pub mod linearizability;
