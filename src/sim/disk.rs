//! `SimDisk`: the simulator's block device. It keeps a live image (what reads see) and a
//! durable image (what survives a crash), at sector granularity, so a crash can tear
//! writes the way real devices do.
//!
//! Invariants:
//! - writes are `BLOCK_SIZE`-aligned in offset and length (asserted, as the O_DIRECT
//!   driver requires), inside the disk;
//! - a sector not marked unsynced has identical live and durable contents;
//! - after `crash`, every sector is either all old (durable) or all new (live): sectors
//!   tear independently, lengths and order of writes are not preserved across a crash;
//!   several writes in flight land (or not) independently of each other;
//! - `sync_range` makes durable only the sectors of one write (an fdatasync may persist
//!   more, so a crash keeping less is one of the device's allowed behaviours);
//! - fault helpers damage the stored medium: both images, so they survive crashes.

use crate::prng::Prng;
use crate::wal::{BLOCK_SIZE, SECTOR_SIZE};

const _: () = assert!(BLOCK_SIZE % SECTOR_SIZE == 0);

/// A simulated disk of fixed size, zero-filled when new. Its images grow with the
/// highest block written (the extent), so a large, mostly unused disk costs only what
/// was written; everything beyond the extent reads as zeros.
#[derive(Clone, Debug)]
pub struct SimDisk {
    size: usize,
    live: Vec<u8>,
    durable: Vec<u8>,
    /// Per sector: written since the last sync.
    unsynced: Vec<bool>,
    /// Indices of unsynced sectors with the number of the write that wrote them, in
    /// first-write order (deduplicated by `unsynced`).
    unsynced_list: Vec<(usize, u64)>,
    /// Writes issued so far (numbers them for `crash`).
    writes: u64,
}

impl SimDisk {
    /// A zeroed disk of `size` bytes, a multiple of `BLOCK_SIZE` (programmer error).
    #[must_use]
    pub fn new(size: usize) -> SimDisk {
        assert!(
            size % BLOCK_SIZE == 0,
            "disk size {size} is not a multiple of {BLOCK_SIZE}"
        );
        SimDisk {
            size,
            live: Vec::new(),
            durable: Vec::new(),
            unsynced: Vec::new(),
            unsynced_list: Vec::new(),
            writes: 0,
        }
    }

    /// Size in bytes.
    #[must_use]
    pub fn size(&self) -> usize {
        self.size
    }

    /// Grows the images (with zeros) to cover `[0, end)`, rounded up to a block.
    fn extend_to(&mut self, end: usize) {
        if end > self.live.len() {
            let end = end.div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
            self.live.resize(end, 0);
            self.durable.resize(end, 0);
            self.unsynced.resize(end / SECTOR_SIZE, false);
        }
    }

    /// Writes `bytes` at `offset` into the live image; durable only after `sync`.
    /// Offset and length must be multiples of `BLOCK_SIZE` and inside the disk.
    pub fn write(&mut self, offset: u64, bytes: &[u8]) {
        let start = self.range_start(offset, bytes.len());
        assert!(
            start % BLOCK_SIZE == 0 && bytes.len() % BLOCK_SIZE == 0,
            "unaligned write: offset {offset}, length {}",
            bytes.len()
        );
        self.extend_to(start + bytes.len());
        self.live[start..start + bytes.len()].copy_from_slice(bytes);
        self.writes += 1;
        for sector in start / SECTOR_SIZE..(start + bytes.len()) / SECTOR_SIZE {
            if !self.unsynced[sector] {
                self.unsynced[sector] = true;
                self.unsynced_list.push((sector, self.writes));
            }
        }
    }

    /// fdatasync: everything written so far becomes durable.
    pub fn sync(&mut self) {
        for (sector, _) in self.unsynced_list.drain(..) {
            let range = sector * SECTOR_SIZE..(sector + 1) * SECTOR_SIZE;
            self.durable[range.clone()].copy_from_slice(&self.live[range]);
            self.unsynced[sector] = false;
        }
    }

    /// The fdatasync of one write: the sectors of `[offset, offset + len)` become
    /// durable; other unsynced sectors (other writes in flight) stay unsynced.
    pub fn sync_range(&mut self, offset: u64, len: usize) {
        let start = self.range_start(offset, len);
        let sectors = start / SECTOR_SIZE..(start + len).div_ceil(SECTOR_SIZE);
        let (live, durable, unsynced) = (&self.live, &mut self.durable, &mut self.unsynced);
        self.unsynced_list.retain(|(sector, _)| {
            if !sectors.contains(sector) {
                return true;
            }
            let range = sector * SECTOR_SIZE..(sector + 1) * SECTOR_SIZE;
            durable[range.clone()].copy_from_slice(&live[range]);
            unsynced[*sector] = false;
            false
        });
    }

    /// The live bytes `[offset, offset + len)` (what a read returns now).
    #[must_use]
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let start = self.range_start(offset, len);
        let mut bytes = vec![0; len];
        let end = (start + len).min(self.live.len());
        if start < end {
            bytes[..end - start].copy_from_slice(&self.live[start..end]);
        }
        bytes
    }

    /// The live image up to the extent (for a recovery scan): everything beyond it
    /// reads as zeros.
    #[must_use]
    pub fn image(&self) -> &[u8] {
        &self.live
    }

    /// Number of sectors written since the last sync.
    #[must_use]
    pub fn unsynced_sector_count(&self) -> usize {
        self.unsynced_list.len()
    }

    /// Power loss. The sectors written since their sync (the writes in flight) either
    /// tear, with chance `torn_ppm`, each sector then independently keeping its new
    /// contents with chance `keep_ppm`, or each write lands as one, all its sectors
    /// keeping their new contents with chance `keep_ppm` or none, independently of the
    /// other writes. A sector not kept reverts to its durable contents; then live and
    /// durable agree. (With one write unsynced the draws are those of a disk that knew
    /// one write in flight only, so the runs of older seeds are kept.)
    pub fn crash(&mut self, prng: &mut Prng, keep_ppm: u32, torn_ppm: u32) {
        let torn = prng.chance_ppm(torn_ppm);
        let mut whole = prng.chance_ppm(keep_ppm);
        let mut whole_write = self.unsynced_list.first().map(|(_, write)| *write);
        let mut landed = std::collections::BTreeMap::new();
        for (sector, write) in std::mem::take(&mut self.unsynced_list) {
            let range = sector * SECTOR_SIZE..(sector + 1) * SECTOR_SIZE;
            let keep = if torn {
                prng.chance_ppm(keep_ppm)
            } else {
                if whole_write != Some(write) {
                    whole = *landed
                        .entry(write)
                        .or_insert_with(|| prng.chance_ppm(keep_ppm));
                    whole_write = Some(write);
                }
                landed.entry(write).or_insert(whole);
                whole
            };
            if keep {
                self.durable[range.clone()].copy_from_slice(&self.live[range]);
            } else {
                self.live[range.clone()].copy_from_slice(&self.durable[range]);
            }
            self.unsynced[sector] = false;
        }
        assert!(self.live == self.durable, "images differ after a crash");
    }

    /// Flips bit `bit` (0..8) of the byte at `offset` on the medium (live and durable).
    pub fn flip_bit(&mut self, offset: u64, bit: u8) {
        assert!(bit < 8, "bit {bit} is not in 0..8");
        let at = self.range_start(offset, 1);
        self.extend_to(at + 1);
        self.live[at] ^= 1 << bit;
        self.durable[at] ^= 1 << bit;
    }

    /// Zeroes the sector that holds byte `offset` on the medium (live and durable).
    pub fn zero_sector(&mut self, offset: u64) {
        let at = self.range_start(offset, 1);
        self.extend_to(at + 1);
        let start = at / SECTOR_SIZE * SECTOR_SIZE;
        self.live[start..start + SECTOR_SIZE].fill(0);
        self.durable[start..start + SECTOR_SIZE].fill(0);
    }

    /// The disk is lost and replaced by a zeroed one of the same size.
    pub fn wipe(&mut self) {
        *self = SimDisk::new(self.size());
    }

    /// `offset` as an index, after asserting `[offset, offset + len)` lies on the disk.
    fn range_start(&self, offset: u64, len: usize) -> usize {
        let start = usize::try_from(offset).expect("offset fits the address space");
        assert!(
            start.checked_add(len).is_some_and(|end| end <= self.size),
            "access [{offset}, +{len}) beyond disk size {}",
            self.size
        );
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Ballot, Body, Entry, GroupId, Instance, Lsn, NodeId, Record};
    use crate::wal::{
        replay, scan, DecodeLimits, GroupCommit, GroupCommitConfig, Recovery, Resume, ScanConfig,
    };
    use bytes::Bytes;

    // Goal: synced data survives a crash; a torn write keeps some sectors and reverts
    // others, a write that does not tear lands whole or not at all.
    // Method: sync one block, write two more, crash under many seeds with every write
    // torn, then with none, inspect sectors.
    #[test]
    fn crash_keeps_durable_and_tears_sectors() {
        let mut torn_seen = false;
        for seed in 0..128 {
            let torn_ppm = if seed < 64 { 1_000_000 } else { 0 };
            let mut disk = SimDisk::new(4 * BLOCK_SIZE);
            disk.write(0, &[1; BLOCK_SIZE]);
            disk.sync();
            disk.write(BLOCK_SIZE as u64, &[2; 2 * BLOCK_SIZE]);
            assert_eq!(disk.read(BLOCK_SIZE as u64, 1), [2]);
            assert_eq!(disk.unsynced_sector_count(), 2 * BLOCK_SIZE / SECTOR_SIZE);
            disk.crash(&mut Prng::new(seed), 500_000, torn_ppm);
            assert!(disk.read(0, BLOCK_SIZE).iter().all(|b| *b == 1));
            let mut kinds = std::collections::BTreeSet::new();
            for sector in disk
                .read(BLOCK_SIZE as u64, 2 * BLOCK_SIZE)
                .chunks(SECTOR_SIZE)
            {
                assert!(
                    sector.iter().all(|b| *b == sector[0]),
                    "a sector tore inside"
                );
                kinds.insert(sector[0]);
            }
            torn_seen |= kinds.len() == 2;
            assert!(
                torn_ppm > 0 || kinds.len() == 1,
                "seed {seed}: a write that does not tear lands whole or not at all"
            );
            assert_eq!(disk.unsynced_sector_count(), 0);
        }
        assert!(torn_seen, "some crash kept part of a write");
        // The keep probability is honoured at its ends.
        for (keep_ppm, byte) in [(0, 0), (1_000_000, 3)] {
            let mut disk = SimDisk::new(2 * BLOCK_SIZE);
            disk.write(0, &[3; 2 * BLOCK_SIZE]);
            disk.crash(&mut Prng::new(9), keep_ppm, 1_000_000);
            assert!(disk.image().iter().all(|b| *b == byte), "keep {keep_ppm}");
        }
    }

    // Goal: the same seed tears the same way.
    // Method: two disks, same writes, crash with equal seeds, compare images.
    #[test]
    fn crash_is_deterministic() {
        let run = |seed| {
            let mut disk = SimDisk::new(8 * BLOCK_SIZE);
            disk.write(0, &[9; 8 * BLOCK_SIZE]);
            disk.crash(&mut Prng::new(seed), 500_000, 500_000);
            disk.image().to_vec()
        };
        assert_eq!(run(5), run(5));
    }

    // Goal: fault helpers damage the medium durably; wipe loses everything.
    // Method: flip, zero, crash (nothing unsynced), wipe.
    #[test]
    fn faults_and_wipe() {
        let mut disk = SimDisk::new(BLOCK_SIZE);
        disk.write(0, &[0xff; BLOCK_SIZE]);
        disk.sync();
        disk.flip_bit(3, 0);
        disk.zero_sector(600);
        disk.crash(&mut Prng::new(1), 500_000, 500_000);
        assert_eq!(disk.read(3, 1), [0xfe]);
        assert!(disk.read(512, 512).iter().all(|b| *b == 0));
        assert_eq!(disk.read(1024, 1), [0xff]);
        disk.wipe();
        assert!(disk.image().iter().all(|b| *b == 0));
        assert_eq!(disk.size(), BLOCK_SIZE);
    }

    // Goal: misaligned or out-of-range writes are programmer errors.
    // Method: expect panics.
    #[test]
    #[should_panic(expected = "unaligned write")]
    fn unaligned_write_panics() {
        SimDisk::new(2 * BLOCK_SIZE).write(512, &[0; BLOCK_SIZE]);
    }

    #[test]
    #[should_panic(expected = "beyond disk size")]
    fn out_of_range_write_panics() {
        SimDisk::new(BLOCK_SIZE).write(BLOCK_SIZE as u64, &[0; BLOCK_SIZE]);
    }

    // Goal: end to end, no acknowledged (durable) record is ever lost across crashes
    // that tear the write in flight, and recovery never reports corruption for them.
    // Method: group commit onto a SimDisk, crash at random points, scan, scrub, resume,
    // repeat; compare the recovered Accepts with every acknowledged one.
    #[test]
    fn crash_recover_loop_keeps_acknowledged_records() {
        const SALT: u32 = 0x51d;
        let (mut torn, mut scrubbed, mut gaps) = (0, 0, 0);
        for seed in 0..40 {
            let mut prng = Prng::new(seed);
            let mut disk = SimDisk::new(256 * BLOCK_SIZE);
            let config = GroupCommitConfig {
                buffer_size_max: 16 * BLOCK_SIZE,
                salt: SALT,
                writes_in_flight_max: 1,
            };
            let scan_config = ScanConfig {
                salt: SALT,
                lsn_prev: Lsn(0),
                limits: DecodeLimits::default(),
            };
            let mut acknowledged: Vec<u64> = Vec::new();
            let mut resume = Resume::EMPTY;
            let mut next_instance = 1;
            for _round in 0..6 {
                let mut commit = GroupCommit::new(config, resume);
                let mut pending: Vec<(Lsn, u64)> = Vec::new();
                let steps = prng.range(1, 30);
                for _ in 0..steps {
                    if disk.size() as u64 - commit.offset_next() < 40 * BLOCK_SIZE as u64 {
                        break;
                    }
                    for _ in 0..prng.range(0, 6) {
                        // Some records fill a block exactly (4024 + 72 bytes of framing),
                        // so later records of a batch start on block boundaries too.
                        let size = if prng.coin() { 4024 } else { prng.index(3000) };
                        let value = vec![next_instance as u8; size];
                        let record = Record::Accept {
                            group: GroupId(1),
                            instance: Instance(next_instance),
                            ballot: Ballot {
                                round: 1,
                                node: NodeId(1),
                            },
                            entry: Entry {
                                origin: Ballot {
                                    round: 1,
                                    node: NodeId(1),
                                },
                                body: Body::Values(smallvec::smallvec![Bytes::from(value)]),
                            },
                        };
                        match commit.append(&record) {
                            Ok(lsn) => {
                                pending.push((lsn, next_instance));
                                next_instance += 1;
                            }
                            Err(_) => break,
                        }
                    }
                    commit.invariants();
                    if let Some(plan) = commit.take_write() {
                        disk.write(plan.offset, &plan.bytes);
                        if prng.coin() {
                            disk.sync();
                            commit.on_durable(plan.lsn_through);
                            pending.retain(|(lsn, instance)| {
                                let durable = *lsn <= plan.lsn_through;
                                if durable {
                                    acknowledged.push(*instance);
                                }
                                !durable
                            });
                        } else {
                            break; // crash with this write in flight
                        }
                    }
                }
                disk.crash(&mut prng, 500_000, 1_000_000);
                let result = scan(disk.image(), &scan_config);
                assert!(
                    !result.recovery.is_corrupt(),
                    "seed {seed}: torn writes reported as corruption: {:?}",
                    result.recovery
                );
                torn += usize::from(matches!(result.recovery, Recovery::TornTail { .. }));
                scrubbed += usize::from(!result.scrub.is_empty());
                gaps += result.gaps.len();
                let groups = replay(&result.records);
                let recovered = groups.get(&GroupId(1)).map_or(0, |g| g.accepted.len());
                for instance in &acknowledged {
                    assert!(
                        groups
                            .get(&GroupId(1))
                            .is_some_and(|g| g.accepted.contains_key(&Instance(*instance))),
                        "seed {seed}: acknowledged instance {instance} lost ({recovered} recovered)"
                    );
                }
                // Scrub, then resume; instances past the recovered ones are reissued.
                let scrub = result.scrub.clone();
                if !scrub.is_empty() {
                    let zeros = vec![0; (scrub.end - scrub.start) as usize];
                    disk.write(scrub.start, &zeros);
                    disk.sync();
                }
                acknowledged = result
                    .records
                    .iter()
                    .filter_map(|r| match &r.record {
                        Record::Accept { instance, .. } => Some(instance.0),
                        _ => None,
                    })
                    .collect();
                next_instance = acknowledged.last().map_or(1, |i| i + 1);
                resume = result.resume;
            }
        }
        eprintln!("torn tails {torn}, scrubs {scrubbed}, gaps skipped {gaps}");
        assert!(
            torn > 0 && scrubbed > 0 && gaps > 0,
            "the loop exercises rows 2, 3 and 4"
        );
    }
}
