//! Unit tests of the record layout (`entry.rs`): fields, varint boundaries, the session
//! record's size with a shared prefix and packed text, moves, chains, and a property test of
//! SET/APPEND sequences against a plain byte string.

use super::*;
use proptest::prelude::*;

fn val(e: &Entry) -> Vec<u8> {
    e.string().map(|s| s.to_vec()).unwrap_or_default()
}

#[test]
fn fields_round_trip() {
    let mut e = Entry::new(b"key", b"value", 42, 7);
    assert_eq!(e.key().to_vec(), b"key");
    assert_eq!(val(&e), b"value");
    assert_eq!(e.expire(), 42);
    assert_eq!(e.lru(), 7);
    e.set_value(b"a much longer value than before");
    assert!(e.packed());
    assert_eq!(e.key().to_vec(), b"key");
    assert_eq!(val(&e), b"a much longer value than before");
    assert_eq!(e.expire(), 42);
    e.set_value(b"");
    assert_eq!(val(&e), b"");
    e.append_value(b"xy");
    e.append_value(b"z");
    assert_eq!(val(&e), b"xyz");
    e.set_expire(0);
    assert!(!e.is_expired(i64::MAX));
}

#[test]
fn values_crossing_varint_boundaries_keep_everything() {
    let mut e = Entry::new(b"PHPREDIS_SESSION:abc", b"", 7, 3);
    let next = Entry::new(b"next", b"n", 0, 0);
    *e.next_mut() = Some(next);
    for len in [
        0usize, 1, 127, 128, 129, 16383, 16384, 70000, 100, 0, 2_100_000, 5, 4096, 4097,
    ] {
        // Even lengths ASCII (packed within bounds), odd ones binary.
        let v: Vec<u8> = (0..len)
            .map(|i| (i as u8) & if len % 2 == 0 { 0x7f } else { 0xff })
            .collect();
        e.set_value(&v);
        assert_eq!(val(&e), v, "len {len}");
        assert_eq!(e.key().to_vec(), b"PHPREDIS_SESSION:abc");
        assert_eq!((e.expire(), e.lru()), (7, 3));
        assert_eq!(
            e.next().as_ref().map(|n| n.key().to_vec()),
            Some(b"next".to_vec())
        );
    }
    let mut grown = val(&e);
    for chunk in [&[1u8; 120][..], &[2u8; 10], &[3u8; 16300], &[0x80; 3]] {
        e.append_value(chunk);
        grown.extend_from_slice(chunk);
        assert_eq!(val(&e), grown);
    }
    let big_key = vec![b'k'; 300];
    let b = Entry::new(&big_key, b"v", 0, 0);
    assert_eq!((b.key().to_vec(), val(&b)), (big_key, b"v".to_vec()));
}

#[test]
fn a_session_record_fits_a_144_byte_chunk() {
    // PHPREDIS_SESSION: + 26-char id, 100-byte text value: the benchmark's session. The
    // prefix is stored once ([`prefix`]), the value seven bits a character ([`ascii`]).
    let key = b"PHPREDIS_SESSION:a1b2c3d4e5f6g7h8i9j0k1l2m3";
    let text: Vec<u8> = (0..100).map(|i| b'!' + (i * 7 % 90) as u8).collect();
    let e = Entry::new(key, &text, 1, 1);
    assert_eq!((e.key().to_vec(), val(&e)), (key.to_vec(), text.clone()));
    assert!(e.key().is(key));
    assert!(!e.key().is(b"PHPREDIS_SESSION:a1b2c3d4e5f6g7h8i9j0k1l2m4"));
    assert!(!e.key().is(b"a1b2c3d4e5f6g7h8i9j0k1l2m3"));
    assert_eq!(e.footprint(), 144);
    // A binary value is stored as it is: 148 bytes, a 160-byte chunk.
    assert_eq!(Entry::new(key, &[0xff; 100], 1, 1).footprint(), 160);
    // A key with no shared prefix is stored whole: 165 bytes, 176.
    assert_eq!(Entry::new(&[b'k'; 43], &[0xff; 100], 1, 1).footprint(), 176);
}

#[test]
fn moving_a_record_keeps_its_value_and_kind() {
    let text = vec![b't'; 50];
    let e = Entry::new(b"PHPREDIS_SESSION:x", &text, 5, 6);
    let c = e.copied(b"other");
    assert_eq!(
        (c.key().to_vec(), val(&c), c.expire()),
        (b"other".to_vec(), text.clone(), 5)
    );
    let r = e.rekeyed(b"PHPREDIS_SESSION:y");
    assert_eq!(
        (r.key().to_vec(), val(&r), r.lru()),
        (b"PHPREDIS_SESSION:y".to_vec(), text, 6)
    );
    let p = Entry::with_kind(b"PHPREDIS_SESSION:h", Kind::HashPack, &[b'a'; 40], 0, 0);
    assert_eq!((p.kind(), p.value()), (Kind::HashPack, &[b'a'; 40][..]));
    let mut p = p.copied(b"h2");
    assert_eq!((p.kind(), p.value()), (Kind::HashPack, &[b'a'; 40][..]));
    assert!(p.packed_mut().is_some());
    p.set_value(&[b's'; 40]);
    assert!(p.packed_mut().is_none());
    assert_eq!((p.kind(), val(&p)), (Kind::Str, vec![b's'; 40]));
}

#[test]
fn chains_drop_without_leak_or_recursion() {
    let mut head = Entry::new(b"0", b"", 0, 0);
    for i in 1..100_000u32 {
        let mut e = Entry::new(&i.to_le_bytes(), b"v", 0, 0);
        *e.next_mut() = Some(head);
        head = e;
    }
    drop(head);
}

#[test]
fn option_entry_is_pointer_sized() {
    assert_eq!(std::mem::size_of::<Option<Entry>>(), 8);
}

#[derive(Debug, Clone)]
enum Op {
    Set(Vec<u8>),
    Append(Vec<u8>),
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(0u8..0x80, 0..200),
        proptest::collection::vec(any::<u8>(), 0..200),
        (0usize..5000).prop_map(|n| vec![b'a'; n]),
    ]
}

proptest! {
    /// Any sequence of SET and APPEND leaves the value a plain byte string would have, and
    /// the key, TTL and accounting as they were.
    #[test]
    fn a_record_holds_what_was_written(
        key in prop_oneof![Just(b"PHPREDIS_SESSION:k".to_vec()), proptest::collection::vec(any::<u8>(), 0..40)],
        first in bytes(),
        ops in proptest::collection::vec(prop_oneof![bytes().prop_map(Op::Set), bytes().prop_map(Op::Append)], 0..8),
    ) {
        let mut e = Entry::new(&key, &first, 9, 4);
        let mut model = first;
        for op in ops {
            match op {
                Op::Set(v) => { e.set_value(&v); model = v; }
                Op::Append(t) => { e.append_value(&t); model.extend_from_slice(&t); }
            }
            prop_assert_eq!(val(&e), model.clone());
            prop_assert_eq!(e.string().map(|s| s.len()), Some(model.len()));
            prop_assert_eq!(e.key().to_vec(), key.clone());
            prop_assert!(e.key().is(&key));
            prop_assert_eq!((e.expire(), e.lru(), e.kind()), (9, 4, Kind::Str));
            prop_assert!(e.footprint() >= model.len().min(ascii::packed_len(model.len())));
        }
    }
}
