//! openraft (to be written).
use std::collections::BTreeMap;
use std::path::Path;
use crate::load::{Load, Report};
/// Runs the openraft side.
pub fn run(_load: &Load, _dir: &Path) -> Result<(Report, BTreeMap<String, u64>), String> {
    Err("todo".into())
}
