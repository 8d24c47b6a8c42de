//! The hash type's representation: a pack of field, value pairs while small, a [`BigHash`]
//! once it outgrows the pack limits (see `value.rs` for why). Reads go through [`HashRef`],
//! which hides the encoding; the writes here change one record's value and are called only by
//! `mutate.rs`, which logs them.

use super::entry::Entry;
use super::value::{
    packed_len, packed_len_of, BigHash, Kind, Obj, Pack, PackIter, PackWriter, PACK_MAX_BYTES,
    PACK_MAX_ELEMENT, PACK_MAX_ENTRIES,
};
use crate::util::either::Either;

/// A hash, read-only, in either encoding.
#[derive(Clone, Copy)]
pub enum HashRef<'a> {
    Pack(Pack<'a>),
    Big(&'a BigHash),
}

impl<'a> HashRef<'a> {
    /// The hash a record holds, or None if the record is another type.
    pub fn of(e: &'a Entry) -> Option<HashRef<'a>> {
        match e.kind() {
            Kind::HashPack => Some(HashRef::Pack(Pack(e.value()))),
            Kind::Hash => match e.obj() {
                Some(Obj::Hash(h)) => Some(HashRef::Big(h)),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            HashRef::Pack(p) => p.count() / 2,
            HashRef::Big(h) => h.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, field: &[u8]) -> Option<&'a [u8]> {
        match self {
            HashRef::Pack(p) => pairs(p.iter()).find(|(f, _)| *f == field).map(|(_, v)| v),
            HashRef::Big(h) => h.get(field),
        }
    }

    /// Field, value pairs: in insertion order for a pack, in table order for a big hash (as
    /// Redis's listpack and dict orders).
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        match *self {
            HashRef::Pack(p) => Either::Left(pairs(p.iter())),
            HashRef::Big(h) => Either::Right(h.iter()),
        }
    }

    /// The encoding's name, as `OBJECT ENCODING` reports it.
    pub fn encoding(&self) -> &'static str {
        match self {
            HashRef::Pack(_) => "listpack",
            HashRef::Big(_) => "hashtable",
        }
    }

    /// A field's expiry (unix ms), if it has one (HTTL…).
    pub fn field_expire(&self, field: &[u8]) -> Option<i64> {
        match self {
            HashRef::Pack(_) => None,
            HashRef::Big(h) => h.field_expire(field),
        }
    }

    /// The earliest field expiry, if any field has one.
    pub fn next_expiry(&self) -> Option<i64> {
        match self {
            HashRef::Pack(_) => None,
            HashRef::Big(h) => h.next_expiry(),
        }
    }
}

fn pairs<'a>(mut it: PackIter<'a>) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
    std::iter::from_fn(move || Some((it.next()?, it.next()?)))
}

fn fits_pack(entries: usize, bytes: usize, field: &[u8], value: &[u8]) -> bool {
    entries <= PACK_MAX_ENTRIES
        && bytes <= PACK_MAX_BYTES
        && field.len() <= PACK_MAX_ELEMENT
        && value.len() <= PACK_MAX_ELEMENT
}

/// The value of a new one-field hash (the caller creates the record with it).
pub(super) fn new_value(field: &[u8], value: &[u8]) -> NewHash {
    if fits_pack(1, packed_len(field) + packed_len(value), field, value) {
        let mut w = PackWriter::new(2, field.len() + value.len());
        w.push(field);
        w.push(value);
        NewHash::Pack(w.finish())
    } else {
        let mut h = BigHash::with_capacity(1);
        h.set(field, value);
        NewHash::Big(Box::new(Obj::Hash(h)))
    }
}

/// A hash value built outside a record.
pub(super) enum NewHash {
    Pack(Vec<u8>),
    Big(Box<Obj>),
}

impl NewHash {
    /// A hash of these pairs (loading a snapshot, RESTORE), in the encoding its size calls for.
    pub fn from_pairs<'p>(
        n: usize,
        pairs: impl Iterator<Item = (&'p [u8], &'p [u8])> + Clone,
    ) -> Self {
        let bytes: usize = pairs
            .clone()
            .map(|(f, v)| packed_len(f) + packed_len(v))
            .sum();
        let small = n <= PACK_MAX_ENTRIES
            && bytes <= PACK_MAX_BYTES
            && pairs
                .clone()
                .all(|(f, v)| f.len() <= PACK_MAX_ELEMENT && v.len() <= PACK_MAX_ELEMENT);
        if small {
            let mut w = PackWriter::new(2 * n, bytes);
            for (f, v) in pairs {
                w.push(f);
                w.push(v);
            }
            NewHash::Pack(w.finish())
        } else {
            let mut h = BigHash::with_capacity(n);
            for (f, v) in pairs {
                h.set(f, v);
            }
            NewHash::Big(Box::new(Obj::Hash(h)))
        }
    }

    pub fn into_entry(self, key: &[u8], expire: i64, lru: u32) -> Entry {
        match self {
            NewHash::Pack(p) => Entry::with_kind(key, Kind::HashPack, &p, expire, lru),
            NewHash::Big(o) => Entry::boxed(key, o, expire, lru),
        }
    }
}

/// Sets `field` in the hash record `e`; true if the field is new. Converts a pack that
/// outgrows its limits to a big hash.
pub(super) fn set_field(e: &mut Entry, field: &[u8], value: &[u8]) -> bool {
    if let Some(Obj::Hash(h)) = e.obj_mut() {
        return h.set(field, value);
    }
    let n = Pack(e.value()).count() / 2;
    // The field's old value: where it starts in the pack, and its length.
    let start = e.value().as_ptr() as usize;
    let old = pairs(Pack(e.value()).iter())
        .find(|(f, _)| *f == field)
        .map(|(_, v)| (v.as_ptr() as usize - start, v.len()));
    if let Some((at, _)) = old.filter(|&(_, len)| len == value.len()) {
        // A new value of the old one's length (a session's last-access time, a counter of
        // as many digits): written over the old bytes. The usual session write then costs
        // no new pack and no new record.
        if let Some(bytes) = e.packed_mut() {
            bytes[at..at + value.len()].copy_from_slice(value);
            return false;
        }
    }
    let pack = Pack(e.value());
    let is_new = old.is_none();
    let entries = n + usize::from(is_new);
    let bytes = e.value().len() + packed_len(value) - old.map_or(0, |(_, len)| packed_len_of(len))
        + if is_new { packed_len(field) } else { 0 };
    if fits_pack(entries, bytes, field, value) {
        let mut w = PackWriter::new(2 * entries, bytes);
        for (f, v) in pairs(pack.iter()) {
            w.push(f);
            w.push(if f == field { value } else { v });
        }
        if is_new {
            w.push(field);
            w.push(value);
        }
        let p = w.finish();
        e.set_packed(Kind::HashPack, &p);
    } else {
        let mut h = BigHash::with_capacity(entries);
        for (f, v) in pairs(pack.iter()) {
            h.set(f, v);
        }
        h.set(field, value);
        e.set_boxed(Box::new(Obj::Hash(h)));
    }
    is_new
}

/// Sets (or with 0 removes) an existing field's expiry; false if the field is absent. A pack
/// becomes a big hash first (packs hold no field TTLs).
pub(super) fn set_field_expire(e: &mut Entry, field: &[u8], at: i64) -> bool {
    if e.kind() == Kind::HashPack {
        let pack = Pack(e.value());
        if !pairs(pack.iter()).any(|(f, _)| f == field) {
            return false;
        }
        if at == 0 {
            return true; // nothing to clear
        }
        let mut h = BigHash::with_capacity(pack.count() / 2);
        for (f, v) in pairs(pack.iter()) {
            h.set(f, v);
        }
        e.set_boxed(Box::new(Obj::Hash(h)));
    }
    match e.obj_mut() {
        Some(Obj::Hash(h)) => h.set_field_expire(field, at),
        _ => false,
    }
}

/// Removes up to `max` fields expired at `now`; their names.
pub(super) fn pop_expired(e: &mut Entry, now: i64, max: usize) -> Vec<Box<[u8]>> {
    match e.obj_mut() {
        Some(Obj::Hash(h)) => h.pop_expired(now, max),
        _ => Vec::new(),
    }
}

/// Removes `field`; whether it was there. The caller deletes the key when the hash is left
/// empty (Redis never keeps an empty collection).
pub(super) fn del_field(e: &mut Entry, field: &[u8]) -> bool {
    if let Some(Obj::Hash(h)) = e.obj_mut() {
        return h.remove(field);
    }
    let pack = Pack(e.value());
    let Some((_, v)) = pairs(pack.iter()).find(|(f, _)| *f == field) else {
        return false;
    };
    let n = pack.count() / 2;
    let bytes = e.value().len() - packed_len(field) - packed_len(v);
    let mut w = PackWriter::new(2 * (n - 1), bytes);
    for (f, v) in pairs(pack.iter()) {
        if f != field {
            w.push(f);
            w.push(v);
        }
    }
    let p = w.finish();
    e.set_packed(Kind::HashPack, &p);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(e: &Entry) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut v: Vec<_> = HashRef::of(e)
            .map(|h| h.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// A value of the old one's length is written over it, in the same record; the other
    /// fields, the order, the TTL and the record's size stay as they were.
    #[test]
    fn a_same_length_value_is_written_in_place() {
        let NewHash::Pack(p) = new_value(b"creationTime", b"1700000000000") else {
            panic!("a one-field hash is packed")
        };
        let mut e = Entry::with_kind(b"k", Kind::HashPack, &p, 9, 1);
        assert!(set_field(&mut e, b"lastAccessedTime", b"1700000000001"));
        assert!(set_field(&mut e, b"maxInactiveInterval", b"1800"));
        let (size, record) = (e.footprint(), e.value().as_ptr());
        assert!(!set_field(&mut e, b"lastAccessedTime", b"1700000099999"));
        assert!(!set_field(&mut e, b"maxInactiveInterval", b"3600"));
        assert_eq!((e.footprint(), e.value().as_ptr()), (size, record));
        let order: Vec<(&[u8], &[u8])> = HashRef::of(&e).map(|h| h.iter().collect()).unwrap();
        assert_eq!(
            order,
            [
                (&b"creationTime"[..], &b"1700000000000"[..]),
                (b"lastAccessedTime", b"1700000099999"),
                (b"maxInactiveInterval", b"3600"),
            ]
        );
        assert_eq!((e.kind(), e.expire()), (Kind::HashPack, 9));
        // Another length still rebuilds the pack.
        assert!(!set_field(&mut e, b"maxInactiveInterval", b"60"));
        assert_eq!(
            HashRef::of(&e).and_then(|h| h.get(b"maxInactiveInterval")),
            Some(&b"60"[..])
        );
    }

    #[test]
    fn a_pack_grows_into_a_big_hash_and_keeps_every_field() {
        let NewHash::Pack(p) = new_value(b"f0", b"v0") else {
            panic!("a one-field hash is packed")
        };
        let mut e = Entry::with_kind(b"k", Kind::HashPack, &p, 5, 1);
        let mut want = vec![(b"f0".to_vec(), b"v0".to_vec())];
        for i in 1..200u32 {
            let f = format!("f{i}").into_bytes();
            let v = format!("value-{i}").into_bytes();
            assert!(set_field(&mut e, &f, &v));
            want.push((f, v));
            assert_eq!(
                e.kind(),
                if i < PACK_MAX_ENTRIES as u32 {
                    Kind::HashPack
                } else {
                    Kind::Hash
                }
            );
        }
        assert!(!set_field(&mut e, b"f3", b"new"));
        want[3].1 = b"new".to_vec();
        want.sort();
        assert_eq!(fields(&e), want);
        assert_eq!(e.expire(), 5);
        assert!(del_field(&mut e, b"f3"));
        assert!(!del_field(&mut e, b"f3"));
        assert_eq!(HashRef::of(&e).map(|h| h.len()), Some(199));
        assert!(e.footprint() > 199 * 16);
    }

    #[test]
    fn a_long_value_makes_a_big_hash_and_packs_shrink_on_delete() {
        let NewHash::Pack(p) = new_value(b"a", b"1") else {
            panic!()
        };
        let mut e = Entry::with_kind(b"k", Kind::HashPack, &p, 0, 0);
        assert!(set_field(&mut e, b"b", b"2"));
        assert!(del_field(&mut e, b"a"));
        assert_eq!(fields(&e), vec![(b"b".to_vec(), b"2".to_vec())]);
        assert!(!set_field(&mut e, b"b", &vec![b'x'; PACK_MAX_ELEMENT + 1]));
        assert_eq!(e.kind(), Kind::Hash);
        // Replacing the value with a string frees the box (checked by Miri/ASan-free drop).
        e.set_value(b"plain");
        assert_eq!(e.kind(), Kind::Str);
        assert_eq!(e.value(), b"plain");
    }
}
