//! compare (to be written).
use crate::Options;
/// Runs compare.
pub fn main(_o: &Options) -> Result<(), String> {
    Err("todo".into())
}
