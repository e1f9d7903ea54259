//! `SimFs`: the simulator's model of one directory of small files (a node's checkpoint
//! directory), with the crash semantics of a journaling file system: file data written
//! but not fdatasynced is lost or torn sector by sector, and names created, renamed or
//! removed since the last directory sync survive only as a prefix of those operations
//! (metadata is journaled in order; `fdatasync` of a file does not make its name
//! durable, a directory sync does).
//!
//! Invariants:
//! - a file's synced bytes (`fdatasync`) survive a crash whole;
//! - after a crash, live and durable states agree, every name points at a file, and
//!   each unsynced sector of a file holds either its old or its new bytes;
//! - all randomness comes from the `Prng` handed to `crash`.

use std::collections::BTreeMap;

use crate::prng::Prng;
use crate::wal::SECTOR_SIZE;

/// One file: what a read sees now, and what survives a crash.
#[derive(Clone, Debug, Default)]
struct File {
    live: Vec<u8>,
    durable: Vec<u8>,
}

/// A name operation not yet made durable by a directory sync.
#[derive(Clone, Debug)]
enum DirOp {
    Link(String, u64),
    Unlink(String),
}

/// One simulated directory. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct SimFs {
    files: BTreeMap<u64, File>,
    live: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
    pending: Vec<DirOp>,
    next_file: u64,
}

impl SimFs {
    /// An empty directory.
    #[must_use]
    pub fn new() -> SimFs {
        SimFs::default()
    }

    /// Creates (or truncates) `name` and writes `bytes` into it, unsynced.
    pub fn write_file(&mut self, name: &str, bytes: &[u8]) {
        self.next_file += 1;
        let id = self.next_file;
        self.files.insert(
            id,
            File {
                live: bytes.to_vec(),
                durable: Vec::new(),
            },
        );
        self.link(name, id);
    }

    /// fdatasync of `name`: its bytes become durable (not its name).
    pub fn fdatasync(&mut self, name: &str) {
        let id = *self
            .live
            .get(name)
            .expect("fdatasync of a file that exists");
        let file = self.files.get_mut(&id).expect("names point at files");
        file.durable = file.live.clone();
    }

    /// Renames `from` to `to` (replacing `to`), unsynced.
    pub fn rename(&mut self, from: &str, to: &str) {
        let id = self
            .live
            .remove(from)
            .expect("rename of a file that exists");
        self.pending.push(DirOp::Unlink(from.to_string()));
        self.link(to, id);
    }

    /// Removes `name`, unsynced.
    pub fn remove(&mut self, name: &str) {
        if self.live.remove(name).is_some() {
            self.pending.push(DirOp::Unlink(name.to_string()));
        }
    }

    /// Syncs the directory: every name operation so far becomes durable.
    pub fn sync_dir(&mut self) {
        self.pending.clear();
        self.durable = self.live.clone();
        self.collect();
    }

    /// The names in the directory, ascending.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.live.keys().cloned().collect()
    }

    /// The bytes of `name`, if it exists.
    #[must_use]
    pub fn read(&self, name: &str) -> Option<Vec<u8>> {
        let id = self.live.get(name)?;
        Some(self.files[id].live.clone())
    }

    /// Flips bit `bit` of byte `offset` of `name` on the medium (live and durable).
    pub fn flip_bit(&mut self, name: &str, offset: usize, bit: u8) {
        let id = *self.live.get(name).expect("flip in a file that exists");
        let file = self.files.get_mut(&id).expect("names point at files");
        for bytes in [&mut file.live, &mut file.durable] {
            if let Some(byte) = bytes.get_mut(offset) {
                *byte ^= 1 << bit;
            }
        }
    }

    /// Power loss: a prefix of the unsynced name operations survives (drawn from
    /// `prng`); each file keeps its durable bytes, except that every sector written
    /// since its last fdatasync independently keeps its new bytes or not, and the
    /// length is the old or the new one.
    pub fn crash(&mut self, prng: &mut Prng) {
        let kept = prng.below(self.pending.len() as u64 + 1) as usize;
        let mut names = self.durable.clone();
        for op in self.pending.drain(..).take(kept) {
            match op {
                DirOp::Link(name, id) => {
                    names.insert(name, id);
                }
                DirOp::Unlink(name) => {
                    names.remove(&name);
                }
            }
        }
        self.live = names;
        self.durable = self.live.clone();
        for file in self.files.values_mut() {
            if file.live == file.durable {
                continue;
            }
            let len = if prng.coin() {
                file.live.len()
            } else {
                file.durable.len()
            };
            let mut torn = vec![0u8; len];
            for (index, sector) in torn.chunks_mut(SECTOR_SIZE).enumerate() {
                let from = if prng.coin() {
                    &file.live
                } else {
                    &file.durable
                };
                let start = index * SECTOR_SIZE;
                let end = (start + sector.len()).min(from.len());
                if start < end {
                    sector[..end - start].copy_from_slice(&from[start..end]);
                }
            }
            file.live = torn.clone();
            file.durable = torn;
        }
        self.collect();
    }

    fn link(&mut self, name: &str, id: u64) {
        self.live.insert(name.to_string(), id);
        self.pending.push(DirOp::Link(name.to_string(), id));
    }

    /// Drops files no name (live, durable or pending) points at any more.
    fn collect(&mut self) {
        let pending: Vec<u64> = self
            .pending
            .iter()
            .filter_map(|op| match op {
                DirOp::Link(_, id) => Some(*id),
                DirOp::Unlink(_) => None,
            })
            .collect();
        let live = &self.live;
        let durable = &self.durable;
        self.files.retain(|id, _| {
            live.values().any(|v| v == id)
                || durable.values().any(|v| v == id)
                || pending.contains(id)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: synced data under a synced name survives every crash; unsynced data and
    // names may or may not; a crash after write + fdatasync + rename + dir sync keeps
    // the new file whole, without the dir sync either name may be there.
    // Method: the checkpoint save sequence, crashed at each point over many seeds.
    #[test]
    fn crash_keeps_what_was_synced() {
        let old = vec![1u8; 3 * SECTOR_SIZE];
        let new = vec![2u8; 5 * SECTOR_SIZE];
        let (mut torn, mut lost_name) = (false, false);
        for seed in 0..200 {
            for stop in 0..4 {
                let mut fs = SimFs::new();
                fs.write_file("a", &old);
                fs.fdatasync("a");
                fs.sync_dir();
                fs.write_file("b.tmp", &new);
                if stop >= 1 {
                    fs.fdatasync("b.tmp");
                }
                if stop >= 2 {
                    fs.rename("b.tmp", "b");
                }
                if stop >= 3 {
                    fs.sync_dir();
                    fs.remove("a");
                }
                fs.crash(&mut Prng::new(seed));
                let names = fs.names();
                if stop < 3 {
                    assert_eq!(fs.read("a"), Some(old.clone()), "synced file kept");
                }
                if stop == 3 {
                    assert_eq!(fs.read("b"), Some(new.clone()), "seed {seed}");
                } else if let Some(bytes) = fs.read("b.tmp").or_else(|| fs.read("b")) {
                    torn |= bytes != new;
                    assert!(stop >= 1 || bytes.len() <= new.len());
                    if stop >= 1 {
                        assert_eq!(bytes, new, "synced data is whole under any name");
                    }
                } else {
                    lost_name = true;
                }
                assert!(names.iter().all(|n| fs.read(n).is_some()));
            }
        }
        assert!(torn && lost_name, "crashes tear data and lose names");
    }
}
