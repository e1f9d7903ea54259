pub mod cluster;
pub mod harness;
