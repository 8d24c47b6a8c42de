//! What a record holds beyond a string: its [`Kind`], the compact *pack* encoding of small
//! collections, and the boxed [`Obj`] forms of large ones.
//!
//! **Why two encodings.** A session store's collections are small: a Spring Session hash has
//! about six fields, an ASP.NET Core one three. Stored as a hash table each would cost a table
//! allocation plus two allocations per field. A small collection is therefore stored *inside
//! its record*, right after the key, as a pack: a varint element count, then each element as
//! a varint length and its bytes (a hash alternates field and value). A six-field session is
//! one allocation, the same as a string session. Reads walk the pack (at most
//! [`PACK_MAX_ENTRIES`] elements and [`PACK_MAX_BYTES`] bytes, a few cache lines); a write
//! rebuilds it, which at these sizes costs less than hashing into a table would. This is the
//! role Redis gives its listpacks, with the same kind of thresholds.
//!
//! Once a collection outgrows a pack it moves, for good, to a boxed structure ([`Obj`]) made
//! for its size; the record then holds an 8-byte owning pointer to it in place of the pack.
//! Only `entry.rs` turns that pointer back into a reference.

use std::collections::HashMap;

use super::entry::allocated_size;

/// A collection stays packed while it has at most this many entries (fields of a hash)…
pub const PACK_MAX_ENTRIES: usize = 128;
/// …its pack is at most this many bytes…
pub const PACK_MAX_BYTES: usize = 8 * 1024;
/// …and no element is longer than this. A session attribute (a serialized object of a few
/// hundred bytes) stays packed; Redis's 64-byte listpack limit would move most Spring sessions
/// to a hash table.
pub const PACK_MAX_ELEMENT: usize = 1024;

/// The type and encoding of a record, stored in one byte of its header.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str = 0,
    /// A hash as a pack of field, value, field, value…
    HashPack = 1,
    /// A hash as a boxed [`BigHash`].
    Hash = 2,
    /// A set as a pack of members (sorted numerically while every member is an integer, as
    /// Redis's intset orders them).
    SetPack = 3,
    /// A set as a boxed [`BigSet`].
    Set = 4,
    /// A sorted set as a pack of member, score (8 bytes, little-endian f64) pairs in
    /// (score, member) order.
    ZSetPack = 5,
    /// A sorted set as a boxed [`BigZSet`].
    ZSet = 6,
    /// A list as a pack: its version (8 bytes), then the elements head to tail.
    ListPack = 7,
    /// A list as a boxed [`BigList`].
    List = 8,
}

impl Kind {
    pub fn from_u8(b: u8) -> Kind {
        match b {
            1 => Kind::HashPack,
            2 => Kind::Hash,
            3 => Kind::SetPack,
            4 => Kind::Set,
            5 => Kind::ZSetPack,
            6 => Kind::ZSet,
            7 => Kind::ListPack,
            8 => Kind::List,
            _ => Kind::Str,
        }
    }

    /// The value bytes are an owning pointer to an [`Obj`].
    pub fn boxed(self) -> bool {
        matches!(self, Kind::Hash | Kind::Set | Kind::ZSet | Kind::List)
    }

    /// The Redis type, as `TYPE` names it.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Str => "string",
            Kind::HashPack | Kind::Hash => "hash",
            Kind::SetPack | Kind::Set => "set",
            Kind::ZSetPack | Kind::ZSet => "zset",
            Kind::ListPack | Kind::List => "list",
        }
    }

    /// The logical type, as the log and snapshots store it (encodings are not persisted:
    /// a loaded value gets the encoding its size calls for).
    pub fn type_code(self) -> u8 {
        match self {
            Kind::Str => 0,
            Kind::HashPack | Kind::Hash => 1,
            Kind::SetPack | Kind::Set => 2,
            Kind::ZSetPack | Kind::ZSet => 3,
            Kind::ListPack | Kind::List => 4,
        }
    }
}

/// A large collection, owned by its record through a pointer.
#[derive(Debug, Clone)]
pub enum Obj {
    Hash(BigHash),
    Set(BigSet),
    ZSet(BigZSet),
    List(BigList),
}

impl Obj {
    pub fn kind(&self) -> Kind {
        match self {
            Obj::Hash(_) => Kind::Hash,
            Obj::Set(_) => Kind::Set,
            Obj::ZSet(_) => Kind::ZSet,
            Obj::List(_) => Kind::List,
        }
    }

    /// Allocator bytes held (for `used_memory`), the box included.
    pub fn bytes(&self) -> usize {
        allocated_size(std::mem::size_of::<Obj>())
            + match self {
                Obj::Hash(h) => h.bytes(),
                Obj::Set(h) => h.bytes(),
                Obj::ZSet(z) => z.bytes(),
                Obj::List(l) => l.bytes(),
            }
    }
}

/// Bytes a `HashMap` slot costs beyond its elements: two boxed slices and a control byte.
const MAP_SLOT: usize = 2 * std::mem::size_of::<Box<[u8]>>() + 1;

/// A hash too large for a pack. Fields are hashed with a per-process random key, as keys are:
/// field names can come from clients too.
#[derive(Debug, Default, Clone)]
pub struct BigHash {
    map: HashMap<Box<[u8]>, Box<[u8]>>,
    /// Allocator bytes of the fields and values.
    elems: usize,
    /// Field expiry times (HEXPIRE…), once any field has one. A hash with field TTLs is
    /// always a big hash: the pack has no room for them, and such hashes are rare.
    ttl: Option<Box<FieldTtl>>,
}

/// Absolute expiry (unix ms) per field, and the same ordered by time, so the earliest is
/// found at once and expired fields are reclaimed oldest first, a bounded number at a time.
#[derive(Debug, Default, Clone)]
struct FieldTtl {
    at: HashMap<Box<[u8]>, i64>,
    order: std::collections::BTreeSet<(i64, Box<[u8]>)>,
    /// Allocator bytes of the two copies of each field name and the slots.
    bytes: usize,
}

/// Bytes a field TTL costs: a map slot, a tree slot, and the field name twice.
const TTL_SLOT: usize = 2 * (8 + std::mem::size_of::<Box<[u8]>>()) + 1;

impl BigHash {
    pub fn with_capacity(n: usize) -> Self {
        BigHash {
            map: HashMap::with_capacity(n),
            elems: 0,
            ttl: None,
        }
    }

    pub fn bytes(&self) -> usize {
        self.elems + self.map.capacity() * MAP_SLOT + self.ttl.as_ref().map_or(0, |t| t.bytes)
    }

    /// The field's expiry time (unix ms), if it has one.
    pub fn field_expire(&self, field: &[u8]) -> Option<i64> {
        self.ttl.as_ref()?.at.get(field).copied()
    }

    /// The earliest field expiry.
    pub fn next_expiry(&self) -> Option<i64> {
        self.ttl.as_ref()?.order.first().map(|(t, _)| *t)
    }

    /// Sets (or with 0 removes) an existing field's expiry; false if the field is absent.
    pub fn set_field_expire(&mut self, field: &[u8], at: i64) -> bool {
        if !self.map.contains_key(field) {
            return false;
        }
        self.clear_field_expire(field);
        if at != 0 {
            let t = self.ttl.get_or_insert_with(Default::default);
            t.at.insert(field.into(), at);
            t.order.insert((at, field.into()));
            t.bytes += TTL_SLOT + 2 * allocated_size(field.len());
        }
        true
    }

    fn clear_field_expire(&mut self, field: &[u8]) {
        let Some(t) = self.ttl.as_mut() else { return };
        if let Some(old) = t.at.remove(field) {
            t.order.remove(&(old, Box::from(field)));
            t.bytes -= TTL_SLOT + 2 * allocated_size(field.len());
        }
        if t.at.is_empty() {
            self.ttl = None;
        }
    }

    /// Removes up to `max` fields expired at `now`, oldest first; their names.
    pub fn pop_expired(&mut self, now: i64, max: usize) -> Vec<Box<[u8]>> {
        let mut gone = Vec::new();
        while gone.len() < max {
            let Some((t, f)) = self.next_expiry().and_then(|t| {
                let (_, f) = self.ttl.as_ref()?.order.first()?;
                (t < now).then(|| (t, f.clone()))
            }) else {
                break;
            };
            let _ = t;
            self.remove(&f);
            gone.push(f);
        }
        gone
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        self.map.get(field).map(|v| &**v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.map.iter().map(|(f, v)| (&**f, &**v))
    }

    /// Sets a field; true if it is new.
    pub fn set(&mut self, field: &[u8], value: &[u8]) -> bool {
        let v: Box<[u8]> = value.into();
        self.elems += allocated_size(v.len());
        // Setting a field's value clears its expiry, as Redis's HSET does.
        self.clear_field_expire(field);
        match self.map.get_mut(field) {
            Some(old) => {
                self.elems -= allocated_size(old.len());
                *old = v;
                false
            }
            None => {
                self.elems += allocated_size(field.len());
                self.map.insert(field.into(), v);
                true
            }
        }
    }

    pub fn remove(&mut self, field: &[u8]) -> bool {
        self.clear_field_expire(field);
        match self.map.remove(field) {
            Some(v) => {
                self.elems -= allocated_size(v.len()) + allocated_size(field.len());
                if self.map.capacity() > 64 && self.map.len() * 8 < self.map.capacity() {
                    self.map.shrink_to_fit();
                }
                true
            }
            None => false,
        }
    }
}

/// Bytes a `HashSet` slot costs beyond its element.
const SET_SLOT: usize = std::mem::size_of::<Box<[u8]>>() + 1;

/// A set too large for a pack (members hashed with a per-process key, as fields are).
#[derive(Debug, Default, Clone)]
pub struct BigSet {
    set: std::collections::HashSet<Box<[u8]>>,
    elems: usize,
}

impl BigSet {
    pub fn with_capacity(n: usize) -> Self {
        BigSet {
            set: std::collections::HashSet::with_capacity(n),
            elems: 0,
        }
    }

    pub fn bytes(&self) -> usize {
        self.elems + self.set.capacity() * SET_SLOT
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub fn contains(&self, m: &[u8]) -> bool {
        self.set.contains(m)
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.set.iter().map(|m| &**m)
    }

    pub fn insert(&mut self, m: &[u8]) -> bool {
        if self.set.contains(m) {
            return false;
        }
        self.elems += allocated_size(m.len());
        self.set.insert(m.into())
    }

    pub fn remove(&mut self, m: &[u8]) -> bool {
        if !self.set.remove(m) {
            return false;
        }
        self.elems -= allocated_size(m.len());
        if self.set.capacity() > 64 && self.set.len() * 8 < self.set.capacity() {
            self.set.shrink_to_fit();
        }
        true
    }
}

/// A score with Redis's order: by value, -0 equal to 0 (NaN never gets stored).
#[derive(Debug, Clone, Copy)]
pub struct Score(pub f64);

impl PartialEq for Score {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Score {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0
            .partial_cmp(&o.0)
            .unwrap_or(std::cmp::Ordering::Equal)
    }
}

/// A sorted set too large for a pack: the (score, member) order in sorted chunks
/// ([`super::zorder::ZOrder`]: ranges by score and by rank found by search, as Redis's
/// skiplist finds them), and each member's score in a hash map. The two share each member's
/// bytes (one reference-counted allocation), so changing a score allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct BigZSet {
    order: super::zorder::ZOrder,
    scores: HashMap<std::sync::Arc<[u8]>, f64>,
    elems: usize,
}

/// Bytes per member beyond its bytes: a B-tree slot (score and pointer, with node overhead)
/// and a hash map slot.
const ZSET_SLOT: usize = 2 * (8 + std::mem::size_of::<std::sync::Arc<[u8]>>()) + 8 + SET_SLOT;

impl BigZSet {
    pub fn bytes(&self) -> usize {
        self.elems + self.scores.capacity() * ZSET_SLOT
    }

    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    pub fn score(&self, m: &[u8]) -> Option<f64> {
        self.scores.get(m).copied()
    }

    /// Members in (score, member) order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], f64)> {
        self.order.iter()
    }

    /// Members with a score of at least `min`, lowest first (a search, not a walk).
    pub fn iter_from(&self, min: f64) -> impl Iterator<Item = (&[u8], f64)> {
        self.order.from_score(min)
    }

    /// Members with a score of at most `max`, highest first (a search, not a walk).
    pub fn iter_down_from(&self, max: f64) -> impl Iterator<Item = (&[u8], f64)> {
        self.order.down_from_score(max)
    }

    /// Members from rank `rank` (0 = the lowest score) on, lowest first.
    pub fn iter_at(&self, rank: usize) -> impl Iterator<Item = (&[u8], f64)> {
        self.order.from_rank(rank)
    }

    /// Members from rank `rank` counted from the highest score (0 = the highest) down.
    pub fn iter_down_at(&self, rank: usize) -> impl Iterator<Item = (&[u8], f64)> {
        self.order.down_from_rank(rank)
    }

    /// A member's 0-based rank from the lowest score, and its score.
    pub fn rank(&self, m: &[u8]) -> Option<(usize, f64)> {
        let score = self.score(m)?;
        Some((self.order.rank(Score(score), m)?, score))
    }

    /// Sets a member's score; true if the member is new.
    pub fn insert(&mut self, m: &[u8], score: f64) -> bool {
        if let Some((k, &old)) = self.scores.get_key_value(m) {
            if old != score || old.is_sign_negative() != score.is_sign_negative() {
                let k = k.clone();
                self.order.remove(Score(old), &k);
                self.order.insert(Score(score), k.clone());
                self.scores.insert(k, score);
            }
            return false;
        }
        let k: std::sync::Arc<[u8]> = m.into();
        // The Arc's two counters precede the bytes in one allocation.
        self.elems += allocated_size(m.len() + 16);
        self.order.insert(Score(score), k.clone());
        self.scores.insert(k, score);
        true
    }

    pub fn remove(&mut self, m: &[u8]) -> bool {
        let Some((k, score)) = self.scores.remove_entry(m) else {
            return false;
        };
        self.order.remove(Score(score), &k);
        self.elems -= allocated_size(m.len() + 16);
        if self.scores.capacity() > 64 && self.scores.len() * 8 < self.scores.capacity() {
            self.scores.shrink_to_fit();
        }
        true
    }
}

/// A list too large for a pack: a ring buffer of elements, and the list's version (see
/// `list.rs` for why lists carry one).
#[derive(Debug, Default, Clone)]
pub struct BigList {
    pub items: std::collections::VecDeque<Box<[u8]>>,
    pub version: u64,
    elems: usize,
}

impl BigList {
    pub fn new(version: u64) -> Self {
        BigList {
            version,
            ..Default::default()
        }
    }

    pub fn bytes(&self) -> usize {
        self.elems + self.items.capacity() * std::mem::size_of::<Box<[u8]>>()
    }

    pub fn push_front(&mut self, e: &[u8]) {
        self.elems += allocated_size(e.len());
        self.items.push_front(e.into());
    }

    pub fn push_back(&mut self, e: &[u8]) {
        self.elems += allocated_size(e.len());
        self.items.push_back(e.into());
    }

    pub fn insert(&mut self, i: usize, e: &[u8]) {
        self.elems += allocated_size(e.len());
        self.items.insert(i, e.into());
    }

    pub fn set(&mut self, i: usize, e: &[u8]) {
        if let Some(slot) = self.items.get_mut(i) {
            self.elems = self.elems + allocated_size(e.len()) - allocated_size(slot.len());
            *slot = e.into();
        }
    }

    pub fn remove(&mut self, i: usize) {
        if let Some(old) = self.items.remove(i) {
            self.elems -= allocated_size(old.len());
        }
    }

    pub fn pop_front(&mut self) {
        if let Some(old) = self.items.pop_front() {
            self.elems -= allocated_size(old.len());
        }
    }

    pub fn pop_back(&mut self) {
        if let Some(old) = self.items.pop_back() {
            self.elems -= allocated_size(old.len());
        }
    }

    pub fn shrink(&mut self) {
        if self.items.capacity() > 64 && self.items.len() * 4 < self.items.capacity() {
            self.items.shrink_to_fit();
        }
    }
}

// ---- the pack encoding ----

fn varint_len(n: usize) -> usize {
    let mut len = 1;
    let mut n = n >> 7;
    while n > 0 {
        len += 1;
        n >>= 7;
    }
    len
}

fn put_varint(buf: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

/// Reads a varint at the start of `p`: (value, bytes used). A pack is only ever written by
/// [`PackWriter`] (or checked by [`Pack::parse`] when it comes from a file), so a short or
/// malformed varint cannot occur; it reads as 0 rather than panicking.
fn get_varint(p: &[u8]) -> (usize, usize) {
    let mut n = 0usize;
    for (i, &b) in p.iter().enumerate().take(10) {
        n |= ((b & 0x7f) as usize) << (7 * i);
        if b < 0x80 {
            return (n, i + 1);
        }
    }
    (0, p.len())
}

/// A borrowed pack: element count, then the elements.
#[derive(Debug, Clone, Copy)]
pub struct Pack<'a>(pub &'a [u8]);

impl<'a> Pack<'a> {
    pub const EMPTY: &'static [u8] = &[0];

    /// Number of elements (a hash has twice its field count).
    pub fn count(&self) -> usize {
        get_varint(self.0).0
    }

    pub fn iter(&self) -> PackIter<'a> {
        let (n, used) = get_varint(self.0);
        PackIter {
            rest: &self.0[used.min(self.0.len())..],
            left: n,
        }
    }

    /// Checks bytes read from a file: every length inside the buffer, nothing after the last
    /// element. Returns the element count.
    pub fn parse(bytes: &'a [u8]) -> Option<usize> {
        let mut p = bytes;
        let (n, used) = read_varint_checked(p)?;
        p = &p[used..];
        for _ in 0..n {
            let (len, used) = read_varint_checked(p)?;
            p = p.get(used..)?;
            p = p.get(len..)?;
        }
        p.is_empty().then_some(n)
    }
}

fn read_varint_checked(p: &[u8]) -> Option<(usize, usize)> {
    let mut n = 0usize;
    for (i, &b) in p.iter().enumerate().take(9) {
        n |= ((b & 0x7f) as usize) << (7 * i);
        if b < 0x80 {
            return Some((n, i + 1));
        }
    }
    None
}

pub struct PackIter<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for PackIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 || self.rest.is_empty() {
            return None;
        }
        self.left -= 1;
        let (len, used) = get_varint(self.rest);
        let end = (used + len).min(self.rest.len());
        let e = &self.rest[used..end];
        self.rest = &self.rest[end..];
        Some(e)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// Builds a pack whose element count is known up front.
pub struct PackWriter {
    buf: Vec<u8>,
}

impl PackWriter {
    pub fn new(count: usize, bytes_hint: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes_hint + 2 * count + 4);
        put_varint(&mut buf, count);
        PackWriter { buf }
    }

    pub fn push(&mut self, e: &[u8]) {
        put_varint(&mut self.buf, e.len());
        self.buf.extend_from_slice(e);
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Size of an element in a pack.
pub fn packed_len(e: &[u8]) -> usize {
    packed_len_of(e.len())
}

/// Size in a pack of an element of `n` bytes.
pub fn packed_len_of(n: usize) -> usize {
    varint_len(n) + n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_round_trip_and_parse_checks_bounds() {
        let elems: Vec<Vec<u8>> = vec![b"".to_vec(), b"a".to_vec(), vec![7u8; 300]];
        let mut w = PackWriter::new(elems.len(), 400);
        for e in &elems {
            w.push(e);
        }
        let p = w.finish();
        assert_eq!(Pack(&p).count(), 3);
        assert_eq!(
            Pack(&p).iter().map(|e| e.to_vec()).collect::<Vec<_>>(),
            elems
        );
        assert_eq!(Pack::parse(&p), Some(3));
        assert_eq!(Pack::parse(&p[..p.len() - 1]), None);
        let mut longer = p.clone();
        longer.push(0);
        assert_eq!(Pack::parse(&longer), None);
        assert_eq!(Pack::parse(Pack::EMPTY), Some(0));
    }

    #[test]
    fn big_hash_counts_its_bytes() {
        let mut h = BigHash::default();
        assert!(h.set(b"f", b"v"));
        assert!(!h.set(b"f", &[1u8; 100]));
        assert_eq!(h.elems, allocated_size(1) + allocated_size(100));
        assert!(h.remove(b"f"));
        assert_eq!(h.elems, 0);
        assert!(h.is_empty());
    }
}
