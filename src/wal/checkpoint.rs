//! The checkpoint file format (pure): one file per checkpoint of one group, holding the
//! group's protocol state at the checkpoint's instance (`paxos::CheckpointBase`) and
//! the state machine's image, each guarded by a CRC32C; the file names; which files a
//! group keeps. The byte layout is specified in `schema/checkpoint.md`.
//!
//! Invariants:
//! - `decode` accepts exactly what `encode_header` + image produced: any other byte
//!   string (truncated, extended, any bit flipped in the header or the image, a field
//!   out of bounds, another group's or instance's file under this name) is refused
//!   with a typed error, never taken as a wrong base;
//! - the image is returned as a slice of the file's bytes (no copy);
//! - a group keeps at most [`KEEP_COUNT`] checkpoint files: the newest durable one and
//!   the newest below it ([`surplus`] names the rest), so a checkpoint found damaged
//!   at start leaves the previous one (or the WAL) to fall back on.

use bytes::Bytes;
use std::fmt;

use crate::paxos::{Ballot, CheckpointBase, GroupId, Instance, Membership, NodeId};
use crate::support::{le_u32, le_u64};

/// The first 8 bytes of every checkpoint file.
pub const MAGIC: [u8; 8] = *b"SYNODCKP";
/// The format version this code writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of the fixed part of the header, before the memberships.
pub const FIXED_HEADER_SIZE: usize = 64;
/// Memberships a header may list (a file claiming more is refused).
pub const CONFIG_COUNT_MAX: usize = 1_024;
/// Voters a membership may list (a file claiming more is refused).
pub const VOTER_COUNT_MAX: usize = 1_024;
/// Checkpoint files a group keeps: the newest and the one before it.
pub const KEEP_COUNT: usize = 2;
/// The directory, inside a node's data directory, that holds the checkpoint files.
pub const DIR_NAME: &str = "checkpoints";

/// A decoded checkpoint file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The group.
    pub group: GroupId,
    /// The protocol state at `base.through`.
    pub base: CheckpointBase,
    /// The state machine's image at `base.through`.
    pub image: Bytes,
}

/// Why a checkpoint file was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Fewer bytes than the header needs.
    Short {
        /// The file's size.
        size: usize,
        /// Bytes needed to read on.
        needed: usize,
    },
    /// The first 8 bytes are not [`MAGIC`].
    Magic,
    /// A version this code does not read.
    Version {
        /// The version found.
        found: u32,
    },
    /// The header's CRC32C does not match its bytes.
    HeaderChecksum {
        /// The CRC stored.
        stored: u32,
        /// The CRC computed.
        computed: u32,
    },
    /// The file's size is not the header's plus the image's.
    Length {
        /// The file's size.
        size: usize,
        /// What the header announces.
        expected: u64,
    },
    /// The image's CRC32C does not match its bytes.
    ImageChecksum {
        /// The CRC stored.
        stored: u32,
        /// The CRC computed.
        computed: u32,
    },
    /// The file belongs to another group or instance than its name says.
    Mismatch {
        /// What the name says: (group, instance).
        named: (u32, u64),
        /// What the header says.
        found: (u32, u64),
    },
    /// A field is out of its bounds (with the field and its value).
    OutOfBounds(String),
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Short { size, needed } => {
                write!(f, "{size} bytes, the header needs {needed}")
            }
            CheckpointError::Magic => write!(f, "not a checkpoint file (bad magic)"),
            CheckpointError::Version { found } => {
                write!(f, "format version {found}, this build reads {VERSION}")
            }
            CheckpointError::HeaderChecksum { stored, computed } => write!(
                f,
                "header CRC32C {computed:#010x} does not match the stored {stored:#010x}"
            ),
            CheckpointError::Length { size, expected } => {
                write!(f, "{size} bytes, the header announces {expected}")
            }
            CheckpointError::ImageChecksum { stored, computed } => write!(
                f,
                "image CRC32C {computed:#010x} does not match the stored {stored:#010x}"
            ),
            CheckpointError::Mismatch { named, found } => write!(
                f,
                "named group {} instance {} but holds group {} instance {}",
                named.0, named.1, found.0, found.1
            ),
            CheckpointError::OutOfBounds(what) => write!(f, "out of bounds: {what}"),
        }
    }
}

impl std::error::Error for CheckpointError {}

/// The header of the checkpoint of `group` at `base` over `image`: the file is these
/// bytes followed by `image`.
#[must_use]
pub fn encode_header(group: GroupId, base: &CheckpointBase, image: &[u8]) -> Vec<u8> {
    assert!(
        base.validate().is_ok() && base.configs.len() <= CONFIG_COUNT_MAX,
        "checkpoint base of group {} out of bounds",
        group.0
    );
    let configs_size: usize = base
        .configs
        .iter()
        .map(|(_, m)| 12 + 4 * m.voters().len())
        .sum();
    let header_size = FIXED_HEADER_SIZE + configs_size + 4;
    let mut out = Vec::with_capacity(header_size);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(header_size as u32).to_le_bytes());
    out.extend_from_slice(&group.0.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&base.through.0.to_le_bytes());
    out.extend_from_slice(&base.start_working_applied.round.to_le_bytes());
    out.extend_from_slice(&base.start_working_applied.node.0.to_le_bytes());
    out.extend_from_slice(&base.checksum.to_le_bytes());
    out.extend_from_slice(&(image.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(image).to_le_bytes());
    out.extend_from_slice(&(base.configs.len() as u32).to_le_bytes());
    debug_assert_eq!(out.len(), FIXED_HEADER_SIZE);
    for (effective, membership) in &base.configs {
        out.extend_from_slice(&effective.0.to_le_bytes());
        out.extend_from_slice(&(membership.voters().len() as u32).to_le_bytes());
        for voter in membership.voters() {
            out.extend_from_slice(&voter.0.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(out.len(), header_size, "header size computed wrong");
    out
}

/// Decodes the file named for `group` at `through` (see [`file_name`]). Checks
/// everything before the image is handed out; see the module invariants.
///
/// # Errors
///
/// Why the bytes are not that checkpoint.
pub fn decode(
    bytes: Bytes,
    group: GroupId,
    through: Instance,
) -> Result<Checkpoint, CheckpointError> {
    let need = |needed: usize| {
        if bytes.len() < needed {
            Err(CheckpointError::Short {
                size: bytes.len(),
                needed,
            })
        } else {
            Ok(())
        }
    };
    need(16)?;
    if bytes[..8] != MAGIC {
        return Err(CheckpointError::Magic);
    }
    let version = le_u32(&bytes, 8);
    if version != VERSION {
        return Err(CheckpointError::Version { found: version });
    }
    let header_size = le_u32(&bytes, 12) as usize;
    if header_size < FIXED_HEADER_SIZE + 4 {
        return Err(CheckpointError::OutOfBounds(format!(
            "header size {header_size}"
        )));
    }
    need(header_size)?;
    let stored = le_u32(&bytes, header_size - 4);
    let computed = crc32c::crc32c(&bytes[..header_size - 4]);
    if stored != computed {
        return Err(CheckpointError::HeaderChecksum { stored, computed });
    }
    // The header is as written: read its fields.
    let found_group = le_u32(&bytes, 16);
    let found_through = le_u64(&bytes, 24);
    if (found_group, found_through) != (group.0, through.0) {
        return Err(CheckpointError::Mismatch {
            named: (group.0, through.0),
            found: (found_group, found_through),
        });
    }
    if through.0 == 0 || through > Instance::MAX {
        return Err(CheckpointError::OutOfBounds(format!(
            "instance {}",
            through.0
        )));
    }
    let round = le_u64(&bytes, 32);
    if round > Ballot::ROUND_MAX {
        return Err(CheckpointError::OutOfBounds(format!(
            "StartWorking round {round}"
        )));
    }
    let start_working_applied = Ballot {
        round,
        node: NodeId(le_u32(&bytes, 40)),
    };
    let checksum = le_u32(&bytes, 44);
    let image_size = le_u64(&bytes, 48);
    let image_crc = le_u32(&bytes, 56);
    let config_count = le_u32(&bytes, 60) as usize;
    if config_count == 0 || config_count > CONFIG_COUNT_MAX {
        return Err(CheckpointError::OutOfBounds(format!(
            "{config_count} memberships"
        )));
    }
    let configs = decode_configs(&bytes, header_size, config_count)?;
    let base = CheckpointBase {
        through,
        checksum,
        start_working_applied,
        configs,
    };
    base.validate().map_err(CheckpointError::OutOfBounds)?;
    let expected = header_size as u64 + image_size;
    if bytes.len() as u64 != expected {
        return Err(CheckpointError::Length {
            size: bytes.len(),
            expected,
        });
    }
    let image = bytes.slice(header_size..);
    let computed = crc32c::crc32c(&image);
    if computed != image_crc {
        return Err(CheckpointError::ImageChecksum {
            stored: image_crc,
            computed,
        });
    }
    Ok(Checkpoint { group, base, image })
}

/// The `config_count` memberships of a checkpoint header of `header_size` bytes (its
/// CRC32C already verified), which must fill it exactly up to that CRC.
fn decode_configs(
    bytes: &[u8],
    header_size: usize,
    config_count: usize,
) -> Result<Vec<(Instance, Membership)>, CheckpointError> {
    let mut at = FIXED_HEADER_SIZE;
    let mut configs = Vec::with_capacity(config_count);
    for _ in 0..config_count {
        if at + 12 > header_size - 4 {
            return Err(CheckpointError::OutOfBounds(format!(
                "memberships beyond the header's {header_size} bytes"
            )));
        }
        let effective = Instance(le_u64(bytes, at));
        let voter_count = le_u32(bytes, at + 8) as usize;
        at += 12;
        if voter_count == 0
            || voter_count > VOTER_COUNT_MAX
            || at + 4 * voter_count > header_size - 4
        {
            return Err(CheckpointError::OutOfBounds(format!(
                "membership of {voter_count} voters"
            )));
        }
        let voters: Vec<NodeId> = (0..voter_count)
            .map(|i| NodeId(le_u32(bytes, at + 4 * i)))
            .collect();
        at += 4 * voter_count;
        if voters.windows(2).any(|w| w[0] >= w[1]) {
            return Err(CheckpointError::OutOfBounds(
                "voters not strictly ascending".to_string(),
            ));
        }
        configs.push((effective, Membership::new(voters)));
    }
    if at != header_size - 4 {
        return Err(CheckpointError::OutOfBounds(format!(
            "{} bytes after the memberships",
            header_size - 4 - at
        )));
    }
    Ok(configs)
}

/// What a file name in the checkpoint directory says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileName {
    /// The group.
    pub group: GroupId,
    /// The checkpoint's instance.
    pub through: Instance,
    /// A file being written (renamed to its final name once durable).
    pub temporary: bool,
}

/// The name of the checkpoint of `group` at `through`: `g<group>-<instance>.ckpt`
/// (decimal), with `.tmp` appended while it is written.
#[must_use]
pub fn file_name(group: GroupId, through: Instance, temporary: bool) -> String {
    let suffix = if temporary { ".tmp" } else { "" };
    format!("g{}-{}.ckpt{suffix}", group.0, through.0)
}

/// Parses a name [`file_name`] made; `None` for any other name.
#[must_use]
pub fn parse_file_name(name: &str) -> Option<FileName> {
    let (stem, temporary) = match name.strip_suffix(".tmp") {
        Some(stem) => (stem, true),
        None => (name, false),
    };
    let (group, through) = stem
        .strip_prefix('g')?
        .strip_suffix(".ckpt")?
        .split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(group) || !digits(through) {
        return None;
    }
    let parsed = FileName {
        group: GroupId(group.parse().ok()?),
        through: Instance(through.parse().ok()?),
        temporary,
    };
    // One spelling per file: no leading zeros.
    (file_name(parsed.group, parsed.through, temporary) == name).then_some(parsed)
}

/// The checkpoint files of one group to remove once its checkpoint at `saved` is
/// saved: every one but `saved` and `keep`, the group's durable checkpoint when it
/// asked for `saved` (which is not durable until the WAL is too: a crash meanwhile
/// restarts from `keep`). Keeping "the newest below `saved`" instead once removed the
/// durable file and kept a newer one that the restart had found damaged or unproven,
/// so that the next restart had no checkpoint to start from (seeds 149285921108207,
/// 149285921108262: the checkpoint checker).
#[must_use]
pub fn surplus(existing: &[Instance], saved: Instance, keep: Instance) -> Vec<Instance> {
    let mut remove: Vec<Instance> = existing
        .iter()
        .copied()
        .filter(|i| *i != saved && *i != keep)
        .collect();
    remove.sort_unstable();
    remove.dedup();
    remove
}

/// Why a checkpoint found at start was not installed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unusable {
    /// Its instance is above the chosen watermark the WAL proves (the crash came
    /// before the WAL's `Chosen` record for it was durable): the log around it may
    /// hold slots of unknown value, so it is not a base yet.
    Unproven {
        /// The checkpoint's instance.
        through: Instance,
        /// The chosen watermark the log proves.
        proven: Instance,
    },
    /// The file could not be read.
    Unreadable(String),
    /// The file is damaged (or not the checkpoint its name says).
    Damaged(CheckpointError),
    /// The state machine refused the image.
    Refused(String),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::Unproven { through, proven } => write!(
                f,
                "above the chosen watermark the WAL proves ({} > {})",
                through.0, proven.0
            ),
            Unusable::Unreadable(why) => write!(f, "unreadable: {why}"),
            Unusable::Damaged(why) => write!(f, "damaged: {why}"),
            Unusable::Refused(why) => write!(f, "refused by the state machine: {why}"),
        }
    }
}

/// The start-time choice of one group: tries its `saved` checkpoints (any order)
/// newest first, skipping those above `proven` (`paxos::Restore::installable_through`),
/// reading each with `load` and handing it to `install` (which restores the state
/// machine, or refuses and leaves a fresh one); returns the base of the first one
/// installed, if any, and why each newer one was passed over. Never a wrong base: a
/// damaged file is refused by `decode` inside `load`, and whatever is passed over
/// leaves the older checkpoint, or the whole log, to rebuild from.
pub fn install_newest(
    saved: &[Instance],
    proven: Instance,
    mut load: impl FnMut(Instance) -> Result<Checkpoint, Unusable>,
    mut install: impl FnMut(&Checkpoint) -> Result<(), String>,
) -> (Option<CheckpointBase>, Vec<(Instance, Unusable)>) {
    let mut candidates = saved.to_vec();
    candidates.sort_unstable_by(|a, b| b.cmp(a));
    candidates.dedup();
    let mut passed = Vec::new();
    for through in candidates {
        if through > proven {
            passed.push((through, Unusable::Unproven { through, proven }));
            continue;
        }
        let checkpoint = match load(through) {
            Ok(checkpoint) => checkpoint,
            Err(why) => {
                passed.push((through, why));
                continue;
            }
        };
        assert_eq!(
            checkpoint.base.through, through,
            "load returned another file"
        );
        match install(&checkpoint) {
            Ok(()) => return (Some(checkpoint.base), passed),
            Err(why) => passed.push((through, Unusable::Refused(why))),
        }
    }
    (None, passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(through: u64) -> CheckpointBase {
        CheckpointBase {
            through: Instance(through),
            checksum: 0xdead_beef,
            start_working_applied: Ballot {
                round: 7,
                node: NodeId(2),
            },
            configs: vec![
                (
                    Instance(1),
                    Membership::new(vec![NodeId(1), NodeId(2), NodeId(3)]),
                ),
                (
                    Instance(through + 5),
                    Membership::new(vec![NodeId(1), NodeId(2), NodeId(3), NodeId(4)]),
                ),
            ],
        }
    }

    fn file(group: GroupId, base: &CheckpointBase, image: &[u8]) -> Vec<u8> {
        let mut bytes = encode_header(group, base, image);
        bytes.extend_from_slice(image);
        bytes
    }

    // Goal: what is encoded decodes to the same base and image, for empty and large
    // images, one or several memberships.
    // Method: round trips.
    #[test]
    fn round_trip() {
        for (through, image) in [(1, Vec::new()), (99, vec![5u8; 100_000])] {
            let mut b = base(through);
            if image.is_empty() {
                b.configs.truncate(1);
            }
            let bytes = Bytes::from(file(GroupId(3), &b, &image));
            let decoded = decode(bytes, GroupId(3), Instance(through)).expect("decodes");
            assert_eq!(decoded.base, b);
            assert_eq!(decoded.image.as_ref(), image.as_slice());
            assert_eq!(decoded.group, GroupId(3));
        }
    }

    // Goal: every damage is refused: each single bit flipped anywhere in a file,
    // every truncation, an extension, another name, a newer version.
    // Method: exhaustive over a small file's bits and lengths.
    #[test]
    fn every_damage_is_refused() {
        let b = base(42);
        let image = b"the state machine's image".to_vec();
        let good = file(GroupId(9), &b, &image);
        let check = |bytes: Vec<u8>| decode(Bytes::from(bytes), GroupId(9), Instance(42));
        assert!(check(good.clone()).is_ok());
        for bit in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(check(bad).is_err(), "flipped bit {bit} accepted");
        }
        for len in 0..good.len() {
            assert!(check(good[..len].to_vec()).is_err(), "truncated to {len}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(check(longer), Err(CheckpointError::Length { .. })));
        assert!(matches!(
            decode(Bytes::from(good.clone()), GroupId(9), Instance(41)),
            Err(CheckpointError::Mismatch { .. })
        ));
        assert!(matches!(
            decode(Bytes::from(good.clone()), GroupId(8), Instance(42)),
            Err(CheckpointError::Mismatch { .. })
        ));
        // A future version with a valid header checksum is still refused.
        let mut newer = good.clone();
        newer[8..12].copy_from_slice(&2u32.to_le_bytes());
        let header_size = le_u32(&newer, 12) as usize;
        let crc = crc32c::crc32c(&newer[..header_size - 4]);
        newer[header_size - 4..header_size].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(check(newer), Err(CheckpointError::Version { found: 2 }));
        assert!(matches!(check(vec![0; 200]), Err(CheckpointError::Magic)));
    }

    // Goal: fields out of bounds are refused even under a valid header checksum (a
    // writer bug or a forged file must not become a base).
    // Method: rewrite one field, fix the header CRC, decode.
    #[test]
    fn out_of_bounds_fields_are_refused() {
        let b = base(42);
        let good = file(GroupId(9), &b, b"x");
        let header_size = le_u32(&good, 12) as usize;
        let patched = |at: usize, value: &[u8]| {
            let mut bytes = good.clone();
            bytes[at..at + value.len()].copy_from_slice(value);
            let crc = crc32c::crc32c(&bytes[..header_size - 4]);
            bytes[header_size - 4..header_size].copy_from_slice(&crc.to_le_bytes());
            decode(Bytes::from(bytes), GroupId(9), Instance(42))
        };
        let round = (Ballot::ROUND_MAX + 1).to_le_bytes();
        assert!(matches!(
            patched(32, &round),
            Err(CheckpointError::OutOfBounds(_))
        ));
        assert!(matches!(
            patched(60, &0u32.to_le_bytes()),
            Err(CheckpointError::OutOfBounds(_))
        ));
        // First membership effective at 2, not 1.
        assert!(matches!(
            patched(FIXED_HEADER_SIZE, &2u64.to_le_bytes()),
            Err(CheckpointError::OutOfBounds(_))
        ));
        // Voters out of order (3 before 2).
        assert!(matches!(
            patched(FIXED_HEADER_SIZE + 16, &3u32.to_le_bytes()),
            Err(CheckpointError::OutOfBounds(_))
        ));
        assert!(matches!(
            patched(FIXED_HEADER_SIZE + 8, &5_000u32.to_le_bytes()),
            Err(CheckpointError::OutOfBounds(_))
        ));
        assert!(patched(44, &1u32.to_le_bytes()).is_ok(), "checksum is data");
    }

    // Goal: names round-trip; foreign names, leading zeros and partial names are not
    // checkpoints.
    // Method: parse a table of names.
    #[test]
    fn file_names() {
        let name = file_name(GroupId(12), Instance(345), false);
        assert_eq!(name, "g12-345.ckpt");
        let parsed = parse_file_name(&name).expect("parses");
        assert_eq!(
            (parsed.group, parsed.through, parsed.temporary),
            (GroupId(12), Instance(345), false)
        );
        let temp = parse_file_name("g12-345.ckpt.tmp").expect("parses");
        assert!(temp.temporary);
        for bad in [
            "g012-345.ckpt",
            "g12-0345.ckpt",
            "g12-.ckpt",
            "g-1.ckpt",
            "g12-345.ckp",
            "x12-345.ckpt",
            "g12_345.ckpt",
            "g12-345.ckpt.tmp.tmp",
            "g99999999999-1.ckpt",
            "shard-000.rejoin",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    // Goal: a save keeps the new file and the group's durable checkpoint, whatever
    // lies between them (a file a restart found damaged or unproven) or above; with no
    // durable checkpoint, only the new file stays.
    // Method: a table of listings; the third is seed 149285921108262's (62 durable,
    // 152 damaged, 186 saved).
    #[test]
    fn surplus_keeps_the_saved_and_the_durable() {
        let i = |v: &[u64]| v.iter().map(|x| Instance(*x)).collect::<Vec<_>>();
        assert_eq!(surplus(&i(&[10]), Instance(10), Instance(0)), i(&[]));
        assert_eq!(surplus(&i(&[5, 10]), Instance(10), Instance(5)), i(&[]));
        assert_eq!(
            surplus(&i(&[62, 152, 186]), Instance(186), Instance(62)),
            i(&[152])
        );
        assert_eq!(
            surplus(&i(&[12, 5, 1, 10, 3]), Instance(10), Instance(3)),
            i(&[1, 5, 12])
        );
        assert_eq!(surplus(&i(&[5, 10]), Instance(10), Instance(0)), i(&[5]));
    }

    // Goal: the newest usable checkpoint is installed; unproven, damaged and refused
    // ones are passed over with their reason, newest first; none usable gives none.
    // Method: four files (one above the proven watermark, one damaged, one the state
    // machine refuses, one good) and a loader over encoded bytes.
    #[test]
    fn install_newest_falls_back() {
        let g = GroupId(2);
        let files: Vec<(u64, Vec<u8>)> = [10u64, 20, 30, 40]
            .iter()
            .map(|t| {
                let mut bytes = file(g, &base(*t), format!("image {t}").as_bytes());
                if *t == 30 {
                    let last = bytes.len() - 1;
                    bytes[last] ^= 1;
                }
                (*t, bytes)
            })
            .collect();
        let load = |through: Instance| {
            let bytes = files
                .iter()
                .find(|(t, _)| *t == through.0)
                .map(|(_, b)| Bytes::from(b.clone()))
                .ok_or_else(|| Unusable::Unreadable("missing".into()))?;
            decode(bytes, g, through).map_err(Unusable::Damaged)
        };
        let mut installed = Vec::new();
        let saved = [Instance(10), Instance(40), Instance(20), Instance(30)];
        let (chosen, passed) = install_newest(&saved, Instance(35), load, |c| {
            if c.base.through == Instance(20) {
                return Err("no".into());
            }
            installed.push(c.base.through);
            Ok(())
        });
        assert_eq!(chosen.map(|b| b.through), Some(Instance(10)));
        assert_eq!(installed, vec![Instance(10)]);
        let reasons: Vec<(u64, &str)> = passed
            .iter()
            .map(|(i, why)| {
                let kind = match why {
                    Unusable::Unproven { .. } => "unproven",
                    Unusable::Damaged(_) => "damaged",
                    Unusable::Refused(_) => "refused",
                    Unusable::Unreadable(_) => "unreadable",
                };
                (i.0, kind)
            })
            .collect();
        assert_eq!(
            reasons,
            vec![(40, "unproven"), (30, "damaged"), (20, "refused")]
        );
        let (none, passed) =
            install_newest(&[Instance(5)], Instance(4), |_| unreachable!(), |_| Ok(()));
        assert!(none.is_none() && passed.len() == 1);
    }
}
