//! Checkpoint files on a real file system: list, read, save durably, remove the
//! surplus. Plain blocking `std::fs` calls: the driver runs `save` on glommio's
//! blocking thread (never on the shard's thread, which keeps serving while an image
//! of any size is written), and `list`/`read` once at start, before the shard serves.
//! The format and every decision (names, which files go) are the pure
//! `wal::checkpoint`'s.
//!
//! Invariants:
//! - a checkpoint file appears under its final name only once its bytes are durable:
//!   written to `<name>.tmp`, fdatasynced, renamed, then the directory is synced;
//! - older files are removed only AFTER the new one is durable (and the directory is
//!   synced again after), so a crash at any point leaves the previous checkpoint;
//! - every error names its operation and path, and is returned (a failed checkpoint
//!   is not fatal to the shard: it is retried later with a new temporary file).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::paxos::{CheckpointBase, GroupId, Instance};
use crate::wal::checkpoint::{encode_header, file_name, parse_file_name, surplus, DIR_NAME};

/// A failed checkpoint file operation.
#[derive(Debug)]
pub struct CheckpointIoError {
    /// What was being done.
    pub op: &'static str,
    /// On which file or directory.
    pub path: PathBuf,
    /// The OS error.
    pub error: io::Error,
}

impl fmt::Display for CheckpointIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "checkpoint {} {}: {}",
            self.op,
            self.path.display(),
            self.error
        )
    }
}

impl std::error::Error for CheckpointIoError {}

fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> CheckpointIoError + 'a {
    move |error| CheckpointIoError {
        op,
        path: path.to_path_buf(),
        error,
    }
}

fn sync_dir(dir: &Path) -> Result<(), CheckpointIoError> {
    crate::support::sync_dir(dir).map_err(io_error("sync directory", dir))
}

/// The checkpoint directory of the data directory `data_dir`.
#[must_use]
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR_NAME)
}

/// The checkpoint files of one group found in a directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Instances of files under their final names, ascending.
    pub saved: Vec<Instance>,
    /// Instances of temporary files (a save a crash interrupted), ascending.
    pub temporary: Vec<Instance>,
}

/// The checkpoint files in `dir` by group (an absent directory holds none). Names that
/// are not checkpoint files are ignored.
///
/// # Errors
///
/// Listing the directory failed.
pub fn list(dir: &Path) -> Result<BTreeMap<GroupId, Listing>, CheckpointIoError> {
    let mut groups: BTreeMap<GroupId, Listing> = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(groups),
        Err(error) => return Err(io_error("list", dir)(error)),
    };
    for entry in entries {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name();
        let Some(parsed) = name.to_str().and_then(parse_file_name) else {
            continue;
        };
        let listing = groups.entry(parsed.group).or_default();
        if parsed.temporary {
            listing.temporary.push(parsed.through);
        } else {
            listing.saved.push(parsed.through);
        }
    }
    for listing in groups.values_mut() {
        listing.saved.sort_unstable();
        listing.temporary.sort_unstable();
    }
    Ok(groups)
}

/// The bytes of the checkpoint of `group` at `through` in `dir` (to `decode`).
///
/// # Errors
///
/// Reading the file failed.
pub fn read(dir: &Path, group: GroupId, through: Instance) -> Result<Bytes, CheckpointIoError> {
    let path = dir.join(file_name(group, through, false));
    std::fs::read(&path)
        .map(Bytes::from)
        .map_err(io_error("read", &path))
}

/// Saves the checkpoint of `group` at `base` over `image` in `dir` durably (see the
/// module invariants), then removes the group's files that `surplus` names (all but
/// this one and `keep`, the group's durable checkpoint) and any temporary file of the
/// group. Returns how many files it removed.
///
/// # Errors
///
/// The first operation that failed. A failure before the rename leaves the previous
/// checkpoints as they were (and at most a temporary file, removed by the next save).
pub fn save(
    dir: &Path,
    group: GroupId,
    base: &CheckpointBase,
    keep: Instance,
    image: &[u8],
) -> Result<usize, CheckpointIoError> {
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
    }
    let through = base.through;
    let temporary = dir.join(file_name(group, through, true));
    let path = dir.join(file_name(group, through, false));
    let header = encode_header(group, base, image);
    let mut file = std::fs::File::create(&temporary).map_err(io_error("create", &temporary))?;
    file.write_all(&header)
        .and_then(|()| file.write_all(image))
        .map_err(io_error("write", &temporary))?;
    // BEFORE the rename: a name must never point at bytes that may not be on disk.
    file.sync_data()
        .map_err(io_error("fdatasync", &temporary))?;
    drop(file);
    std::fs::rename(&temporary, &path).map_err(io_error("rename", &temporary))?;
    sync_dir(dir)?;
    // The new checkpoint is durable: the older ones may go.
    let listing = list(dir)?.remove(&group).unwrap_or_default();
    let mut removed = 0;
    let stale = surplus(&listing.saved, through, keep)
        .into_iter()
        .map(|i| file_name(group, i, false))
        .chain(listing.temporary.iter().map(|i| file_name(group, *i, true)));
    for name in stale {
        let path = dir.join(name);
        std::fs::remove_file(&path).map_err(io_error("remove", &path))?;
        removed += 1;
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Ballot, Membership, NodeId};
    use crate::wal::checkpoint::decode;

    fn base(through: u64) -> CheckpointBase {
        CheckpointBase {
            through: Instance(through),
            checksum: through as u32,
            start_working_applied: Ballot::ZERO,
            configs: vec![(Instance(1), Membership::new(vec![NodeId(1)]))],
        }
    }

    // Goal: saves are readable, a group keeps two files (the new one and the durable
    // one it names), temporary files and other groups' files are left to their
    // owners or cleared by the next save.
    // Method: save four checkpoints of one group and one of another into a temporary
    // directory, with a stale temporary file and a foreign name beside them.
    #[test]
    fn save_list_read_keep_two() {
        let root = std::env::temp_dir().join(format!("synod-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = dir(&root);
        let g = GroupId(3);
        assert!(list(&dir).expect("absent dir").is_empty());
        save(&dir, g, &base(10), Instance(0), b"ten").expect("save");
        std::fs::write(dir.join(file_name(g, Instance(15), true)), b"torn").expect("temp");
        std::fs::write(dir.join("notes.txt"), b"x").expect("foreign");
        assert_eq!(
            save(&dir, g, &base(20), Instance(10), b"twenty").expect("save"),
            1
        );
        save(&dir, GroupId(4), &base(5), Instance(0), b"five").expect("save");
        assert_eq!(
            save(&dir, g, &base(30), Instance(20), b"thirty").expect("save"),
            1
        );
        let listing = list(&dir).expect("list");
        assert_eq!(listing[&g].saved, vec![Instance(20), Instance(30)]);
        assert!(listing[&g].temporary.is_empty());
        assert_eq!(listing[&GroupId(4)].saved, vec![Instance(5)]);
        let bytes = read(&dir, g, Instance(30)).expect("read");
        let checkpoint = decode(bytes, g, Instance(30)).expect("decode");
        assert_eq!(checkpoint.image.as_ref(), b"thirty");
        assert_eq!(checkpoint.base, base(30));
        assert!(dir.join("notes.txt").exists());
        std::fs::remove_dir_all(&root).expect("cleanup");
    }
}
