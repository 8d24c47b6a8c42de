//! The sorted set type's representation: a pack of (member, score) pairs kept in (score,
//! member) order while small, a [`BigZSet`] once it outgrows the pack limits (`value.rs`). A
//! score is stored as its 8 bytes, so reading one is a copy, not a parse. Reads go through
//! [`ZSetRef`]; the writes are called only by `mutate.rs`.

use super::entry::Entry;
use super::value::{
    packed_len, BigZSet, Kind, Obj, Pack, PackIter, PackWriter, Score, PACK_MAX_BYTES,
    PACK_MAX_ELEMENT, PACK_MAX_ENTRIES,
};

/// A score as a pack element.
pub fn score_bytes(s: f64) -> [u8; 8] {
    s.to_le_bytes()
}

fn score_of(b: &[u8]) -> f64 {
    b.try_into().map(f64::from_le_bytes).unwrap_or(0.0)
}

fn pairs(mut it: PackIter<'_>) -> impl Iterator<Item = (&[u8], f64)> {
    std::iter::from_fn(move || Some((it.next()?, score_of(it.next()?))))
}

/// A sorted set, read-only, in either encoding.
#[derive(Clone, Copy)]
pub enum ZSetRef<'a> {
    Pack(Pack<'a>),
    Big(&'a BigZSet),
}

impl<'a> ZSetRef<'a> {
    pub fn of(e: &'a Entry) -> Option<ZSetRef<'a>> {
        match e.kind() {
            Kind::ZSetPack => Some(ZSetRef::Pack(Pack(e.value()))),
            Kind::ZSet => match e.obj() {
                Some(Obj::ZSet(z)) => Some(ZSetRef::Big(z)),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            ZSetRef::Pack(p) => p.count() / 2,
            ZSetRef::Big(z) => z.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn score(&self, m: &[u8]) -> Option<f64> {
        match self {
            ZSetRef::Pack(p) => pairs(p.iter()).find(|(x, _)| *x == m).map(|(_, s)| s),
            ZSetRef::Big(z) => z.score(m),
        }
    }

    /// Members from the lowest score.
    pub fn asc(&self) -> Box<dyn Iterator<Item = (&'a [u8], f64)> + 'a> {
        match *self {
            ZSetRef::Pack(p) => Box::new(pairs(p.iter())),
            ZSetRef::Big(z) => Box::new(z.iter()),
        }
    }

    /// Members with a score of at least `min`, lowest first (the big encoding seeks to the
    /// first).
    pub fn asc_from(&self, min: f64) -> Box<dyn Iterator<Item = (&'a [u8], f64)> + 'a> {
        match *self {
            ZSetRef::Pack(p) => {
                Box::new(pairs(p.iter()).skip_while(move |(_, s)| Score(*s) < Score(min)))
            }
            ZSetRef::Big(z) => Box::new(z.iter_from(min)),
        }
    }

    /// Members with a score of at most `max`, highest first (the big encoding seeks to the
    /// first).
    pub fn desc_from(&self, max: f64) -> Box<dyn Iterator<Item = (&'a [u8], f64)> + 'a> {
        match *self {
            ZSetRef::Pack(_) => {
                Box::new(self.desc().skip_while(move |(_, s)| Score(*s) > Score(max)))
            }
            ZSetRef::Big(z) => Box::new(z.iter_down_from(max)),
        }
    }

    /// Members from the highest score.
    pub fn desc(&self) -> Box<dyn Iterator<Item = (&'a [u8], f64)> + 'a> {
        match *self {
            ZSetRef::Pack(p) => {
                let v: Vec<(&'a [u8], f64)> = pairs(p.iter()).collect();
                Box::new(v.into_iter().rev())
            }
            ZSetRef::Big(z) => Box::new(z.iter().rev()),
        }
    }

    /// The 0-based rank from the lowest score (or the highest with `rev`).
    pub fn rank(&self, m: &[u8], rev: bool) -> Option<(usize, f64)> {
        let (below, score) = match self {
            ZSetRef::Pack(_) => {
                let score = self.score(m)?;
                let below = self
                    .asc()
                    .take_while(|(x, s)| Score(*s) < Score(score) || (*s == score && *x < m))
                    .count();
                (below, score)
            }
            ZSetRef::Big(z) => z.rank(m)?,
        };
        Some((if rev { self.len() - 1 - below } else { below }, score))
    }

    /// Members from rank `rank` (0 = the lowest score) on, lowest first; the big encoding
    /// finds the rank without walking to it.
    pub fn asc_at(&self, rank: usize) -> Box<dyn Iterator<Item = (&'a [u8], f64)> + 'a> {
        match *self {
            ZSetRef::Pack(p) => Box::new(pairs(p.iter()).skip(rank)),
            ZSetRef::Big(z) => Box::new(z.iter_at(rank)),
        }
    }

    /// Members from rank `rank` counted from the highest score (0 = the highest) down.
    pub fn desc_at(&self, rank: usize) -> Box<dyn Iterator<Item = (&'a [u8], f64)> + 'a> {
        match *self {
            ZSetRef::Pack(_) => Box::new(self.desc().skip(rank)),
            ZSetRef::Big(z) => Box::new(z.iter_down_at(rank)),
        }
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            ZSetRef::Pack(_) => "listpack",
            ZSetRef::Big(_) => "skiplist",
        }
    }
}

fn fits(entries: usize, bytes: usize, longest: usize) -> bool {
    entries <= PACK_MAX_ENTRIES && bytes <= PACK_MAX_BYTES && longest <= PACK_MAX_ELEMENT
}

/// A sorted set built outside a record, in the encoding its size calls for.
pub(super) enum NewZSet {
    Pack(Vec<u8>),
    Big(Box<Obj>),
}

impl NewZSet {
    /// From distinct members with their scores, in any order.
    pub fn from_pairs(items: &[(&[u8], f64)]) -> NewZSet {
        let bytes: usize = items.iter().map(|(m, _)| packed_len(m) + 9).sum();
        let longest = items.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
        if fits(items.len(), bytes, longest) {
            let mut sorted = items.to_vec();
            sorted.sort_by(|a, b| (Score(a.1), a.0).cmp(&(Score(b.1), b.0)));
            let mut w = PackWriter::new(2 * sorted.len(), bytes);
            for (m, s) in sorted {
                w.push(m);
                // A pack holds -0 as 0, as Redis's listpack does; the big encoding keeps it.
                w.push(&score_bytes(s + 0.0));
            }
            NewZSet::Pack(w.finish())
        } else {
            let mut z = BigZSet::default();
            for (m, s) in items {
                z.insert(m, *s);
            }
            NewZSet::Big(Box::new(Obj::ZSet(z)))
        }
    }

    pub fn into_entry(self, key: &[u8], expire: i64, lru: u32) -> Entry {
        match self {
            NewZSet::Pack(p) => Entry::with_kind(key, Kind::ZSetPack, &p, expire, lru),
            NewZSet::Big(o) => Entry::boxed(key, o, expire, lru),
        }
    }
}

/// Sets `m`'s score in the sorted set record `e`; true if `m` is new.
pub(super) fn add(e: &mut Entry, m: &[u8], score: f64) -> bool {
    if let Some(Obj::ZSet(z)) = e.obj_mut() {
        return z.insert(m, score);
    }
    let pack = Pack(e.value());
    let old = pairs(pack.iter()).find(|(x, _)| *x == m).map(|(_, s)| s);
    let n = pack.count() / 2 + usize::from(old.is_none());
    let bytes = e.value().len() + if old.is_none() { packed_len(m) + 9 } else { 0 };
    let longest = pairs(pack.iter())
        .map(|(x, _)| x.len())
        .max()
        .unwrap_or(0)
        .max(m.len());
    if fits(n, bytes, longest) {
        // A pack holds -0 as 0, as Redis's listpack does. A member added to the big encoding
        // (or the one whose addition converts the pack) keeps -0, as in Redis's skiplist.
        let score = score + 0.0;
        let mut w = PackWriter::new(2 * n, bytes);
        let mut placed = false;
        for (x, s) in pairs(pack.iter()).filter(|(x, _)| *x != m) {
            if !placed && (Score(score), m) < (Score(s), x) {
                w.push(m);
                w.push(&score_bytes(score));
                placed = true;
            }
            w.push(x);
            w.push(&score_bytes(s));
        }
        if !placed {
            w.push(m);
            w.push(&score_bytes(score));
        }
        let p = w.finish();
        e.set_packed(Kind::ZSetPack, &p);
    } else {
        let mut z = BigZSet::default();
        for (x, s) in pairs(pack.iter()) {
            z.insert(x, s);
        }
        z.insert(m, score);
        e.set_boxed(Box::new(Obj::ZSet(z)));
    }
    old.is_none()
}

/// Removes `m`; whether it was there (the caller deletes an emptied key).
pub(super) fn remove(e: &mut Entry, m: &[u8]) -> bool {
    if let Some(Obj::ZSet(z)) = e.obj_mut() {
        return z.remove(m);
    }
    let pack = Pack(e.value());
    if !pairs(pack.iter()).any(|(x, _)| x == m) {
        return false;
    }
    let bytes = e.value().len() - packed_len(m) - 9;
    let mut w = PackWriter::new(pack.count() - 2, bytes);
    for (x, s) in pairs(pack.iter()).filter(|(x, _)| *x != m) {
        w.push(x);
        w.push(&score_bytes(s));
    }
    let p = w.finish();
    e.set_packed(Kind::ZSetPack, &p);
    true
}

/// The (member, score) pairs of a VALUE payload (member, 8-byte score, …).
pub(super) fn payload_pairs(p: Pack<'_>) -> Vec<(&[u8], f64)> {
    pairs(p.iter()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(e: &Entry) -> Vec<(Vec<u8>, f64)> {
        ZSetRef::of(e)
            .map(|z| z.asc().map(|(m, s)| (m.to_vec(), s)).collect())
            .unwrap_or_default()
    }

    #[test]
    fn packs_keep_score_then_member_order_and_grow_big() {
        let mut e =
            NewZSet::from_pairs(&[(b"b", 2.0), (b"a", 2.0), (b"z", -1.0)]).into_entry(b"k", 0, 0);
        assert_eq!(
            items(&e),
            vec![
                (b"z".to_vec(), -1.0),
                (b"a".to_vec(), 2.0),
                (b"b".to_vec(), 2.0)
            ]
        );
        assert!(!add(&mut e, b"z", 3.0));
        assert!(add(&mut e, b"m", 2.0));
        let order: Vec<Vec<u8>> = items(&e).into_iter().map(|(m, _)| m).collect();
        assert_eq!(
            order,
            vec![b"a".to_vec(), b"b".to_vec(), b"m".to_vec(), b"z".to_vec()]
        );
        let z = ZSetRef::of(&e).expect("zset");
        assert_eq!(z.rank(b"m", false), Some((2, 2.0)));
        assert_eq!(z.rank(b"m", true), Some((1, 2.0)));
        for i in 0..200 {
            add(&mut e, format!("n{i}").as_bytes(), f64::from(i));
        }
        assert_eq!(e.kind(), Kind::ZSet);
        let all = items(&e);
        assert_eq!(all.len(), 204);
        assert!(all
            .windows(2)
            .all(|w| (Score(w[0].1), &w[0].0) <= (Score(w[1].1), &w[1].0)));
        assert!(remove(&mut e, b"n5"));
        assert!(!remove(&mut e, b"n5"));
        assert_eq!(ZSetRef::of(&e).and_then(|z| z.score(b"n6")), Some(6.0));
    }
}
