//! The shard's retired groups on disk: `shard-NNN.retired` beside the log, one group id
//! per line, written whole (a temporary file, synced, renamed, the directory synced).
//! A group retires when this node lost its state in it after its membership changed
//! (`paxos::learner`, "Retirement"); the shard decides, the driver writes.
//!
//! Invariants:
//! - the file lists every group that retired, and only those; it goes only with the
//!   directory (a lost disk: the groups then rejoin and retire again);
//! - the rejoin marker is not cleared after a failed write (`failed`): the next start
//!   rejoins, and retires again, rather than taking a retired group for a voter;
//! - an unreadable file stops the start (a retired group must never vote).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::paxos::GroupId;
use crate::runtime::fatal::DiskError;
use crate::support::sync_dir;

/// Path of the retired-groups file of shard `shard` in `dir`.
pub(super) fn retired_path(dir: &Path, shard: u32) -> PathBuf {
    dir.join(format!("shard-{shard:03}.retired"))
}

/// The groups retired in shard `shard` of `dir` (none without the file).
///
/// # Errors
///
/// The file exists and cannot be read, or a line is not a group id.
pub(super) fn read_retired(dir: &Path, shard: u32) -> Result<BTreeSet<GroupId>, DiskError> {
    let path = retired_path(dir, shard);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(error) => {
            return Err(DiskError::from_io(
                "read retired groups",
                Some(&path),
                &error,
            ))
        }
    };
    let mut groups = BTreeSet::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let group = line.parse::<u32>().map_err(|_| {
            let error = std::io::Error::new(std::io::ErrorKind::InvalidData, line.to_string());
            DiskError::from_io("parse retired groups", Some(&path), &error)
        })?;
        groups.insert(GroupId(group));
    }
    Ok(groups)
}

/// Writes `groups` as shard `shard`'s retired groups in `dir`, durably.
///
/// # Errors
///
/// Creating, writing, syncing or renaming the file, or syncing `dir`, failed.
pub(super) fn write_retired(dir: &Path, shard: u32, groups: &[GroupId]) -> Result<(), DiskError> {
    let path = retired_path(dir, shard);
    let temporary = dir.join(format!("shard-{shard:03}.retired.tmp"));
    let at = |call: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| DiskError::from_io(call, Some(&p), &e)
    };
    let mut text = String::new();
    for group in groups {
        text.push_str(&format!("{}\n", group.0));
    }
    let mut file = std::fs::File::create(&temporary).map_err(at("create", &temporary))?;
    file.write_all(text.as_bytes())
        .map_err(at("write", &temporary))?;
    file.sync_all().map_err(at("sync", &temporary))?;
    std::fs::rename(&temporary, &path).map_err(at("rename", &path))?;
    sync_dir(dir).map_err(at("sync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the retired groups survive a restart (written, read back), and a damaged
    // file stops the start rather than letting a retired group vote.
    #[test]
    fn retired_groups_are_read_back_and_a_damaged_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("synod-retired-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        assert!(read_retired(&dir, 3).expect("absent").is_empty());
        write_retired(&dir, 3, &[GroupId(1), GroupId(7)]).expect("write");
        let read = read_retired(&dir, 3).expect("read");
        assert_eq!(
            read.into_iter().collect::<Vec<_>>(),
            [GroupId(1), GroupId(7)]
        );
        assert!(read_retired(&dir, 4).expect("another shard").is_empty());
        std::fs::write(retired_path(&dir, 3), "1\nseven\n").expect("damage");
        assert!(read_retired(&dir, 3).is_err());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
