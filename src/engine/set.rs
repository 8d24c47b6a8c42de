//! The set type's representation: a pack of members while small, a [`BigSet`] once it
//! outgrows the pack limits (`value.rs`). A pack whose members are all integers is kept in
//! numeric order with up to [`INT_PACK_MAX`] members, as Redis's intset, so that small integer
//! sets list their members in the order Redis does. Writes are called only by `mutate.rs`.

use super::entry::Entry;
use super::value::{
    packed_len, BigSet, Kind, Obj, Pack, PackWriter, PACK_MAX_BYTES, PACK_MAX_ELEMENT,
    PACK_MAX_ENTRIES,
};
use crate::resp::parse::parse_i64;
use crate::util::either::Either;

/// Members an all-integer pack may hold (Redis's `set-max-intset-entries` default).
pub const INT_PACK_MAX: usize = 512;

/// A set, read-only, in either encoding.
#[derive(Clone, Copy)]
pub enum SetRef<'a> {
    Pack(Pack<'a>),
    Big(&'a BigSet),
}

impl<'a> SetRef<'a> {
    pub fn of(e: &'a Entry) -> Option<SetRef<'a>> {
        match e.kind() {
            Kind::SetPack => Some(SetRef::Pack(Pack(e.value()))),
            Kind::Set => match e.obj() {
                Some(Obj::Set(s)) => Some(SetRef::Big(s)),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            SetRef::Pack(p) => p.count(),
            SetRef::Big(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, m: &[u8]) -> bool {
        match self {
            SetRef::Pack(p) => p.iter().any(|x| x == m),
            SetRef::Big(s) => s.contains(m),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        match *self {
            SetRef::Pack(p) => Either::Left(p.iter()),
            SetRef::Big(s) => Either::Right(s.iter()),
        }
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            SetRef::Pack(p) if p.iter().all(|m| parse_i64(m).is_some()) => "intset",
            SetRef::Pack(_) => "listpack",
            SetRef::Big(_) => "hashtable",
        }
    }
}

fn fits(entries: usize, bytes: usize, all_int: bool, longest: usize) -> bool {
    let max = if all_int {
        INT_PACK_MAX
    } else {
        PACK_MAX_ENTRIES
    };
    entries <= max && bytes <= PACK_MAX_BYTES && longest <= PACK_MAX_ELEMENT
}

/// A set value built outside a record, in the encoding its size calls for.
pub(super) enum NewSet {
    Pack(Vec<u8>),
    Big(Box<Obj>),
}

impl NewSet {
    /// A set of `members` (duplicates are the caller's to remove).
    pub fn from_members(members: &[&[u8]]) -> NewSet {
        let bytes: usize = members.iter().map(|m| packed_len(m)).sum();
        let all_int = members.iter().all(|m| parse_i64(m).is_some());
        let longest = members.iter().map(|m| m.len()).max().unwrap_or(0);
        if fits(members.len(), bytes, all_int, longest) {
            let mut sorted: Vec<&[u8]> = members.to_vec();
            if all_int {
                sorted.sort_by_key(|m| parse_i64(m).unwrap_or(0));
            }
            let mut w = PackWriter::new(sorted.len(), bytes);
            for m in sorted {
                w.push(m);
            }
            NewSet::Pack(w.finish())
        } else {
            let mut s = BigSet::with_capacity(members.len());
            for m in members {
                s.insert(m);
            }
            NewSet::Big(Box::new(Obj::Set(s)))
        }
    }

    pub fn into_entry(self, key: &[u8], expire: i64, lru: u32) -> Entry {
        match self {
            NewSet::Pack(p) => Entry::with_kind(key, Kind::SetPack, &p, expire, lru),
            NewSet::Big(o) => Entry::boxed(key, o, expire, lru),
        }
    }
}

/// Adds `m` to the set record `e`; true if it was not there.
pub(super) fn add(e: &mut Entry, m: &[u8]) -> bool {
    if let Some(Obj::Set(s)) = e.obj_mut() {
        return s.insert(m);
    }
    let pack = Pack(e.value());
    if pack.iter().any(|x| x == m) {
        return false;
    }
    let n = pack.count() + 1;
    let bytes = e.value().len() + packed_len(m);
    let new_int = parse_i64(m);
    let all_int = new_int.is_some() && pack.iter().all(|x| parse_i64(x).is_some());
    let longest = pack.iter().map(<[u8]>::len).max().unwrap_or(0).max(m.len());
    if fits(n, bytes, all_int, longest) {
        let mut w = PackWriter::new(n, bytes);
        let mut placed = false;
        for x in pack.iter() {
            if all_int && !placed && new_int < parse_i64(x) {
                w.push(m);
                placed = true;
            }
            w.push(x);
        }
        if !placed {
            w.push(m);
        }
        let p = w.finish();
        e.set_packed(Kind::SetPack, &p);
    } else {
        let mut s = BigSet::with_capacity(n);
        for x in pack.iter() {
            s.insert(x);
        }
        s.insert(m);
        e.set_boxed(Box::new(Obj::Set(s)));
    }
    true
}

/// Removes `m`; whether it was there (the caller deletes an emptied key).
pub(super) fn remove(e: &mut Entry, m: &[u8]) -> bool {
    if let Some(Obj::Set(s)) = e.obj_mut() {
        return s.remove(m);
    }
    let pack = Pack(e.value());
    if !pack.iter().any(|x| x == m) {
        return false;
    }
    let bytes = e.value().len() - packed_len(m);
    let mut w = PackWriter::new(pack.count() - 1, bytes);
    for x in pack.iter().filter(|x| *x != m) {
        w.push(x);
    }
    let p = w.finish();
    e.set_packed(Kind::SetPack, &p);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(e: &Entry) -> Vec<Vec<u8>> {
        SetRef::of(e)
            .map(|s| s.iter().map(<[u8]>::to_vec).collect())
            .unwrap_or_default()
    }

    #[test]
    fn integer_packs_stay_sorted_until_a_string_joins() {
        let NewSet::Pack(p) = NewSet::from_members(&[b"3", b"1"]) else {
            panic!()
        };
        let mut e = Entry::with_kind(b"k", Kind::SetPack, &p, 0, 0);
        assert!(add(&mut e, b"2"));
        assert!(!add(&mut e, b"2"));
        assert!(add(&mut e, b"-5"));
        assert_eq!(
            members(&e),
            vec![b"-5".to_vec(), b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]
        );
        assert_eq!(SetRef::of(&e).map(|s| s.encoding()), Some("intset"));
        assert!(add(&mut e, b"x"));
        assert_eq!(members(&e).last(), Some(&b"x".to_vec()));
        assert!(remove(&mut e, b"1"));
        assert!(!remove(&mut e, b"1"));
        assert_eq!(SetRef::of(&e).map(|s| s.len()), Some(4));
    }

    #[test]
    fn packs_grow_into_big_sets() {
        let NewSet::Pack(p) = NewSet::from_members(&[b"m0"]) else {
            panic!()
        };
        let mut e = Entry::with_kind(b"k", Kind::SetPack, &p, 9, 0);
        for i in 1..300 {
            assert!(add(&mut e, format!("m{i}").as_bytes()));
        }
        assert_eq!(e.kind(), Kind::Set);
        assert_eq!(SetRef::of(&e).map(|s| s.len()), Some(300));
        assert_eq!(e.expire(), 9);
        let mut ints = NewSet::from_members(&[b"1"]).into_entry(b"i", 0, 0);
        for i in 2..=INT_PACK_MAX {
            add(&mut ints, i.to_string().as_bytes());
        }
        assert_eq!(ints.kind(), Kind::SetPack);
        add(&mut ints, b"100000");
        assert_eq!(ints.kind(), Kind::Set);
    }
}
