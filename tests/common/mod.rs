pub mod cluster;
pub mod harness;
pub mod serve;
