//! Tests of the record format: round trips, canonical encoding, and damage that never
//! verifies and never panics.

use super::*;
use crate::prng::Prng;

const SALT: u32 = 0x5a17_0001;

fn stamp(lsn: u64) -> Stamp {
    Stamp {
        lsn: Lsn(lsn),
        unsynced_from: Lsn(lsn.saturating_sub(2).max(1)),
    }
}

fn ballot(round: u64, node: u32) -> Ballot {
    Ballot {
        round,
        node: NodeId(node),
    }
}

fn samples() -> Vec<Record> {
    let values =
        |sizes: &[usize]| Body::Values(sizes.iter().map(|n| Bytes::from(vec![0xab; *n])).collect());
    vec![
        Record::Promise {
            group: GroupId(7),
            ballot: ballot(3, 2),
        },
        Record::Chosen {
            group: GroupId(u32::MAX),
            through: Instance(u64::MAX),
        },
        Record::Chosen {
            group: GroupId(1),
            through: Instance(0),
        },
        Record::Accept {
            group: GroupId(1),
            instance: Instance(9),
            ballot: ballot(5, 1),
            entry: Entry {
                origin: ballot(4, 3),
                body: values(&[0, 1, 7, 100]),
            },
        },
        Record::Accept {
            group: GroupId(2),
            instance: Instance(1),
            ballot: ballot(1, 1),
            entry: Entry {
                origin: ballot(1, 1),
                body: Body::Values(crate::paxos::Values::new()),
            },
        },
        Record::Learn {
            group: GroupId(3),
            instance: Instance(44),
            entry: Entry {
                origin: ballot(2, 2),
                body: Body::Noop,
            },
        },
        Record::Learn {
            group: GroupId(3),
            instance: Instance(45),
            entry: Entry {
                origin: ballot(2, 2),
                body: Body::StartWorking,
            },
        },
        Record::Accept {
            group: GroupId(3),
            instance: Instance(46),
            ballot: ballot(2, 2),
            entry: Entry {
                origin: ballot(2, 2),
                body: Body::Config(Membership::new(vec![NodeId(3), NodeId(1), NodeId(2)])),
            },
        },
    ]
}

// Goal: every record kind round-trips, canonically, at the size encoded_size says.
// Method: encode samples back to back, decode them in sequence, re-encode, compare.
#[test]
fn round_trip_is_canonical() {
    let limits = DecodeLimits::default();
    let mut log = Vec::new();
    for (i, record) in samples().iter().enumerate() {
        let size = encode(record, stamp(i as u64 + 1), SALT, &mut log);
        assert_eq!(size, encoded_size(record));
        assert_eq!(size % RECORD_ALIGN, 0);
    }
    let mut at = 0;
    for (i, record) in samples().iter().enumerate() {
        let (decoded, size) = decode(&log[at..], SALT, &limits).expect("valid record");
        assert_eq!(decoded.content, Content::Record(record.clone()));
        assert_eq!(decoded.stamp, stamp(i as u64 + 1));
        let mut again = Vec::new();
        encode(record, decoded.stamp, SALT, &mut again);
        assert_eq!(again, log[at..at + size]);
        let shared = Bytes::copy_from_slice(&log[at..]);
        assert_eq!(
            decode_shared(&shared, SALT, &limits).expect("valid").0,
            decoded
        );
        at += size;
    }
    assert_eq!(at, log.len());
}

// Goal: pads decode, and a record under another salt never verifies.
// Method: encode a pad; decode under the right and a wrong salt.
#[test]
fn pads_and_salts() {
    let limits = DecodeLimits::default();
    let mut buf = Vec::new();
    encode_pad(96, stamp(5), SALT, &mut buf);
    let (decoded, size) = decode(&buf, SALT, &limits).expect("valid pad");
    assert_eq!((decoded.content, size), (Content::Pad, 96));
    assert!(matches!(
        decode(&buf, SALT ^ 1, &limits),
        Err(RecordError::Checksum { .. })
    ));
}

// Goal: every single-bit flip of a record is detected, never a panic.
// Method: flip each bit of each sample in turn and decode.
#[test]
fn every_bit_flip_is_detected() {
    let limits = DecodeLimits::default();
    for record in samples() {
        let mut buf = Vec::new();
        encode(&record, stamp(3), SALT, &mut buf);
        for bit in 0..buf.len() * 8 {
            buf[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode(&buf, SALT, &limits).is_err(),
                "bit {bit} of {record:?}"
            );
            buf[bit / 8] ^= 1 << (bit % 8);
        }
    }
}

// Goal: typed errors for each malformed shape, with numbers in their messages.
// Method: hand-build bad headers and payloads (resealed so the checksum passes).
#[test]
fn typed_errors() {
    let limits = DecodeLimits::default();
    assert_eq!(
        decode(&[0; 10], SALT, &limits),
        Err(RecordError::Truncated {
            needed: HEADER_SIZE,
            available: 10
        })
    );
    assert_eq!(
        decode(&[0; 64], SALT, &limits),
        Err(RecordError::SizeInvalid { size: 0 })
    );
    let mut buf = Vec::new();
    encode(&samples()[3], stamp(9), SALT, &mut buf);
    let reseal = |mut b: Vec<u8>, edit: &dyn Fn(&mut Vec<u8>)| {
        edit(&mut b);
        seal(&mut b, 0, SALT);
        b
    };
    let tag_at = HEADER_SIZE + 12;
    let bad_tag = reseal(buf.clone(), &|b| b[tag_at] = 9);
    assert_eq!(
        decode(&bad_tag, SALT, &limits),
        Err(RecordError::BodyTagUnknown { tag: 9 })
    );
    let huge_count = reseal(buf.clone(), &|b| {
        b[tag_at + 4..tag_at + 8].copy_from_slice(&u32::MAX.to_le_bytes())
    });
    let error = decode(&huge_count, SALT, &limits).expect_err("count above limit");
    assert_eq!(
        error,
        RecordError::ValuesCountTooLarge {
            count: u32::MAX,
            max: limits.values_count_max
        }
    );
    assert!(error.to_string().contains("4294967295"));
    let bad_kind = reseal(buf.clone(), &|b| b[OFFSET_KIND] = 0);
    assert_eq!(
        decode(&bad_kind, SALT, &limits),
        Err(RecordError::KindUnknown { kind: 0 })
    );
    let reserved = reseal(buf.clone(), &|b| b[10] = 1);
    assert_eq!(
        decode(&reserved, SALT, &limits),
        Err(RecordError::ReservedNotZero { offset: 10 })
    );
    // A one-byte value leaves a 7-byte zero tail (48 + 16 + 4 + 4 + 1 = 73 -> 80).
    let mut short = Vec::new();
    let one = Record::Learn {
        group: GroupId(1),
        instance: Instance(1),
        entry: Entry {
            origin: ballot(1, 1),
            body: Body::Values(smallvec::smallvec![Bytes::from_static(b"x")]),
        },
    };
    assert_eq!(encode(&one, stamp(1), SALT, &mut short), 80);
    let trailing = reseal(short, &|b| b[79] = 1);
    assert_eq!(
        decode(&trailing, SALT, &limits),
        Err(RecordError::PayloadTrailing {
            offset: 79,
            bytes: 1
        })
    );
    let mut pad = Vec::new();
    encode_pad(64, stamp(1), SALT, &mut pad);
    let dirty_pad = reseal(pad, &|b| b[50] = 1);
    assert_eq!(
        decode(&dirty_pad, SALT, &limits),
        Err(RecordError::PayloadTrailing {
            offset: 50,
            bytes: 14
        })
    );
    let small = DecodeLimits {
        record_size_max: 64,
        ..limits
    };
    assert!(matches!(
        decode(&buf, SALT, &small),
        Err(RecordError::SizeTooLarge { max: 64, .. })
    ));
    assert!(matches!(
        decode(&buf[..buf.len() - 8], SALT, &limits),
        Err(RecordError::Truncated { .. })
    ));
}

// Goal: unsorted or empty memberships are rejected instead of reaching
// `Membership::new` (which would dedupe silently or panic).
// Method: rewrite the voter list of a Config record and reseal.
#[test]
fn voters_must_be_canonical() {
    let limits = DecodeLimits::default();
    let mut buf = Vec::new();
    encode(&samples()[7], stamp(1), SALT, &mut buf);
    let voters_at = HEADER_SIZE + ENTRY_HEAD_SIZE + 4;
    let mut dup = buf.clone();
    dup[voters_at + 4..voters_at + 8].copy_from_slice(&1u32.to_le_bytes());
    seal(&mut dup, 0, SALT);
    assert_eq!(
        decode(&dup, SALT, &limits),
        Err(RecordError::VotersNotSorted { index: 1 })
    );
    let mut empty = buf.clone();
    empty[voters_at - 4..voters_at].copy_from_slice(&0u32.to_le_bytes());
    seal(&mut empty, 0, SALT);
    assert!(matches!(
        decode(&empty, SALT, &limits),
        Err(RecordError::VotersCountInvalid { count: 0, .. })
    ));
}

// Goal: restamping equals re-encoding with the new stamp and salt, and refuses damage.
// Method: restamp every sample; compare with a fresh encode; flip a payload bit.
#[test]
fn restamp_matches_encode() {
    let to = Stamp {
        lsn: Lsn(1000),
        unsynced_from: Lsn(990),
    };
    for record in samples() {
        let mut bytes = Vec::new();
        encode(&record, stamp(4), SALT, &mut bytes);
        let mut expected = Vec::new();
        encode(&record, to, 77, &mut expected);
        let original = bytes.clone();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x10;
        assert!(restamp(&mut bytes, SALT, to, 77).is_err());
        bytes[last] ^= 0x10;
        assert_eq!(bytes, original);
        restamp(&mut bytes, SALT, to, 77).expect("valid record");
        assert_eq!(bytes, expected);
    }
}

// Goal: arbitrary bytes never panic the decoder nor make it allocate beyond the input.
// Method: decode random buffers and random mutations of valid records.
#[test]
fn random_bytes_never_panic() {
    let limits = DecodeLimits::default();
    let mut prng = Prng::new(0xdec0de);
    let mut valid = Vec::new();
    for (i, record) in samples().iter().enumerate() {
        encode(record, stamp(i as u64 + 1), SALT, &mut valid);
    }
    for _ in 0..20_000 {
        let mut buf = if prng.coin() {
            let mut b = vec![0; prng.index(300)];
            prng.fill(&mut b);
            b
        } else {
            valid.clone()
        };
        for _ in 0..prng.range(1, 4) {
            if buf.is_empty() {
                break;
            }
            let at = prng.index(buf.len());
            buf[at] = prng.next_u64() as u8;
        }
        if buf.len() >= HEADER_SIZE && prng.coin() {
            // Reseal the first record so mutations reach the payload parser.
            let size = (le_u32(&buf, 0) as usize).min(buf.len());
            if size >= HEADER_SIZE {
                seal(&mut buf[..size], 0, SALT);
            }
        }
        let _ = decode(&buf, SALT, &limits);
    }
}
