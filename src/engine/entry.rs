//! One key/value record in a single heap allocation.
//!
//! Redis spends four allocations on a string key with a TTL (dict entry, key sds, value
//! object, expires-dict entry). A session store holds millions of small records, so the
//! per-record overhead is what decides memory use. An `Entry` is a thin pointer to:
//!
//! ```text
//! offset 0   next     (8)    chain pointer of the hash table bucket (Option<Entry>)
//!        8   expire   (8)    absolute unix ms, 0 = no TTL
//!       16   lru      (4)    low 24 bits: engine clock (seconds) of the last access, for
//!                            allkeys-lru; top 8 bits, the meta byte: bits 0-3 the record's
//!                            [`Kind`], bit 4 "string value packed", bits 5-7 a key prefix id
//!       20   key_len  (1-5)  LEB128 varint: the key bytes stored (after the prefix)
//!        …   val_len  (1-5)  LEB128 varint: the value's length (unpacked)
//!        …   key bytes, then value bytes
//! ```
//!
//! Three things keep a session record small, and each is counted in docs/BENCHMARKS.md
//! ("Memory"):
//! - lengths are varints: a session key and a value under 16 KiB need 1 + 2 bytes, not 8;
//! - a key that starts with a prefix shared by many keys (`PHPREDIS_SESSION:`) stores only
//!   its id, in the meta byte's spare bits, and the rest of the key ([`prefix`]);
//! - a string value of ASCII text is stored seven bits a character ([`ascii`]).
//!
//! Together they take a 43-byte key with a 100-byte value from 165 bytes (a 176-byte glibc
//! chunk) to 136 (a 144-byte chunk).
//!
//! For a string the value bytes are the string (packed or not); for a small collection, its
//! pack; for a large one ([`Kind::boxed`]), 8 bytes holding a `Box<Obj>` pointer that the
//! record owns (freed when the record is dropped or its value replaced).
//!
//! This is the only `unsafe` code of the engine; everything above it is safe Rust. The
//! invariants are local: the pointer always comes from `alloc` with the size `size()`
//! computes from the header, the lengths and flags in the header always describe the
//! allocation, `Entry` is the unique owner, and a boxed kind's value is always a pointer from
//! `Box::into_raw`.

use std::alloc::{alloc, dealloc, handle_alloc_error, realloc, Layout};
use std::ptr::NonNull;

use super::value::{Kind, Obj};
use super::{ascii, prefix};

const NEXT: usize = 0;
const EXPIRE: usize = 8;
const LRU: usize = 16;
/// Where the varint lengths start.
const LENS: usize = 20;
/// The LRU clock's bits of the word at `LRU`; the top byte is the kind. 24 bits of seconds
/// wrap after 194 days, so idle times are computed modulo 2^24 (as Redis's `LRU_CLOCK_MAX`).
pub const LRU_MASK: u32 = 0x00ff_ffff;
/// The meta byte's bits: kind, packed value, prefix id.
const KIND_BITS: u8 = 0x0f;
const PACKED: u8 = 0x10;
const PREFIX_SHIFT: u32 = 5;
const PTR: usize = std::mem::size_of::<usize>();

fn varint_len(n: usize) -> usize {
    match n {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0xfff_ffff => 4,
        _ => 5,
    }
}

/// Stored bytes of a value of `n` bytes, packed or not.
fn stored_len(n: usize, packed: bool) -> usize {
    if packed {
        ascii::packed_len(n)
    } else {
        n
    }
}

/// # Safety
/// `p` must be valid for `varint_len(n)` byte writes.
unsafe fn write_varint(mut p: *mut u8, mut n: usize) {
    while n >= 0x80 {
        p.write((n as u8) | 0x80);
        p = p.add(1);
        n >>= 7;
    }
    p.write(n as u8);
}

/// # Safety
/// `p` must point at a varint written by `write_varint`.
unsafe fn read_varint(p: *const u8) -> (usize, usize) {
    let (mut n, mut shift, mut i) = (0usize, 0, 0);
    loop {
        let b = p.add(i).read();
        n |= ((b & 0x7f) as usize) << shift;
        i += 1;
        if b < 0x80 {
            return (n, i);
        }
        shift += 7;
    }
}

/// Owning thin pointer to a record. `#[repr(transparent)]` over `NonNull` so that
/// `Option<Entry>` is one pointer wide (the bucket array is 8 bytes per slot).
#[repr(transparent)]
pub struct Entry(NonNull<u8>);

// SAFETY: an Entry uniquely owns its allocation, like a Box<[u8]>.
unsafe impl Send for Entry {}
unsafe impl Sync for Entry {}

fn layout_for(total: usize) -> Layout {
    // Keys and values are bounded by proto-max-bulk-len (< 4 GiB), so this cannot overflow
    // isize; the expect documents the invariant rather than handling input.
    Layout::from_size_align(total, 8).expect("entry size within isize")
}

/// What the allocator really hands out for a request of `n` bytes: glibc malloc adds an
/// 8-byte header and rounds to 16 (minimum chunk 32). Used for `used_memory` accounting.
pub fn allocated_size(n: usize) -> usize {
    ((n + 8 + 15) & !15).max(32)
}

impl Entry {
    /// A string record. The key's shared prefix, if it has one, and the value's packing are
    /// chosen here.
    pub fn new(key: &[u8], value: &[u8], expire: i64, lru: u32) -> Entry {
        Entry::build(key, value, ascii::worth(value), Kind::Str, expire, lru)
    }

    /// A record whose value bytes are stored as they are: a pack, or a boxed pointer.
    fn raw(key: &[u8], kind: Kind, value: &[u8], expire: i64, lru: u32) -> Entry {
        Entry::build(key, value, false, kind, expire, lru)
    }

    fn build(key: &[u8], value: &[u8], packed: bool, kind: Kind, expire: i64, lru: u32) -> Entry {
        assert!(key.len() <= u32::MAX as usize && value.len() <= u32::MAX as usize);
        let (pid, plen) = prefix::global().split(key);
        let rest = &key[plen..];
        let kl = varint_len(rest.len());
        let off = LENS + kl + varint_len(value.len());
        let total = off + rest.len() + stored_len(value.len(), packed);
        let layout = layout_for(total);
        let meta = (pid << PREFIX_SHIFT) | if packed { PACKED } else { 0 } | kind as u8;
        // SAFETY: layout has non-zero size (LENS > 0); every header field, both lengths, the
        // key and the value are written before the record is used, each inside `total`.
        unsafe {
            let p = alloc(layout);
            let Some(p) = NonNull::new(p) else {
                handle_alloc_error(layout)
            };
            let e = Entry(p);
            e.ptr().add(NEXT).cast::<Option<Entry>>().write(None);
            e.ptr().add(EXPIRE).cast::<i64>().write(expire);
            e.ptr()
                .add(LRU)
                .cast::<u32>()
                .write((lru & LRU_MASK) | (u32::from(meta) << 24));
            write_varint(e.ptr().add(LENS), rest.len());
            write_varint(e.ptr().add(LENS + kl), value.len());
            std::ptr::copy_nonoverlapping(rest.as_ptr(), e.ptr().add(off), rest.len());
            e.write_value(off + rest.len(), value, packed);
            e
        }
    }

    /// Writes `value` at `at`, packed or as it is.
    ///
    /// # Safety
    /// The allocation must hold `at + stored_len(value.len(), packed)` bytes.
    unsafe fn write_value(&self, at: usize, value: &[u8], packed: bool) {
        let dst = self.ptr().add(at);
        if packed {
            let n = ascii::packed_len(value.len());
            ascii::pack(value, std::slice::from_raw_parts_mut(dst, n));
        } else {
            std::ptr::copy_nonoverlapping(value.as_ptr(), dst, value.len());
        }
    }

    /// A record of a packed kind (`value` is its pack).
    pub fn with_kind(key: &[u8], kind: Kind, value: &[u8], expire: i64, lru: u32) -> Entry {
        debug_assert!(!kind.boxed());
        Entry::raw(key, kind, value, expire, lru)
    }

    /// A record owning a large collection.
    pub fn boxed(key: &[u8], obj: Box<Obj>, expire: i64, lru: u32) -> Entry {
        let kind = obj.kind();
        let raw = Box::into_raw(obj) as usize;
        Entry::raw(key, kind, &raw.to_ne_bytes(), expire, lru)
    }

    #[inline]
    fn meta(&self) -> u8 {
        // SAFETY: offset 16, 4-aligned.
        (unsafe { self.ptr().add(LRU).cast::<u32>().read() } >> 24) as u8
    }

    fn set_meta(&mut self, meta: u8) {
        // SAFETY: offset 16, 4-aligned; exclusive through &mut self.
        unsafe {
            let p = self.ptr().add(LRU).cast::<u32>();
            p.write((p.read() & LRU_MASK) | (u32::from(meta) << 24));
        }
    }

    #[inline]
    pub fn kind(&self) -> Kind {
        Kind::from_u8(self.meta() & KIND_BITS)
    }

    fn set_kind(&mut self, kind: Kind) {
        self.set_meta((self.meta() & !KIND_BITS) | kind as u8);
    }

    /// Whether the value is a string stored seven bits a character.
    #[inline]
    fn packed(&self) -> bool {
        self.meta() & PACKED != 0
    }

    /// The value, if the record is a string.
    #[inline]
    pub fn string(&self) -> Option<Str<'_>> {
        if self.kind() != Kind::Str {
            return None;
        }
        let (k, v, off) = self.lens();
        let packed = self.packed();
        // SAFETY: the value's stored bytes follow the key inside our allocation.
        let bytes =
            unsafe { std::slice::from_raw_parts(self.ptr().add(off + k), stored_len(v, packed)) };
        Some(if packed {
            Str::Packed(bytes, v)
        } else {
            Str::Plain(bytes)
        })
    }

    /// The value of a string record, or WRONGTYPE.
    #[inline]
    pub fn str_or_wrongtype(&self) -> Result<Str<'_>, crate::store::StoreError> {
        self.string().ok_or(crate::store::StoreError::WrongType)
    }

    /// The boxed collection, for a boxed kind.
    pub fn obj(&self) -> Option<&Obj> {
        // SAFETY: a boxed kind's value is a pointer from Box::into_raw, owned by this record.
        self.obj_ptr().map(|p| unsafe { &*p })
    }

    pub fn obj_mut(&mut self) -> Option<&mut Obj> {
        // SAFETY: as above; &mut self gives exclusive access to what the record owns.
        self.obj_ptr().map(|p| unsafe { &mut *p })
    }

    fn obj_ptr(&self) -> Option<*mut Obj> {
        if !self.kind().boxed() {
            return None;
        }
        let v = self.value();
        let raw = usize::from_ne_bytes(v[..PTR].try_into().ok()?);
        Some(raw as *mut Obj)
    }

    /// Frees the boxed collection, if any, and marks the record a string with an empty value
    /// slot, ready for a new value.
    fn release_obj(&mut self) {
        if let Some(p) = self.obj_ptr() {
            self.set_kind(Kind::Str);
            // SAFETY: the pointer came from Box::into_raw and the kind no longer claims it.
            drop(unsafe { Box::from_raw(p) });
        }
    }

    /// The value's bytes, writable where they are, unless the value is a boxed collection
    /// (its bytes are a pointer) or a packed string: a pack updated without changing its
    /// length needs neither a new pack nor a new record.
    pub fn packed_mut(&mut self) -> Option<&mut [u8]> {
        if self.kind().boxed() || self.packed() {
            return None;
        }
        let (k, v, off) = self.lens();
        // SAFETY: the value's bytes follow the key inside our allocation, and `&mut self`
        // gives exclusive access to them for the borrow's life.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr().add(off + k), v) })
    }

    /// Replaces the value with a pack of `kind` (releasing a boxed collection).
    pub fn set_packed(&mut self, kind: Kind, pack: &[u8]) {
        self.store_value(pack, false);
        self.set_kind(kind);
    }

    /// Replaces the value with a boxed collection.
    pub fn set_boxed(&mut self, obj: Box<Obj>) {
        let kind = obj.kind();
        let raw = Box::into_raw(obj) as usize;
        self.store_value(&raw.to_ne_bytes(), false);
        self.set_kind(kind);
    }

    /// The same value, TTL and LRU clock under another key (RENAME, COPY): a boxed
    /// collection moves, it is not copied.
    pub fn rekeyed(mut self, key: &[u8]) -> Entry {
        let (expire, lru) = (self.expire(), self.lru());
        match self.take_obj() {
            Some(obj) => Entry::boxed(key, obj, expire, lru),
            None => self.copied(key),
        }
    }

    /// A deep copy under another key (COPY): a boxed collection is cloned.
    pub fn copied(&self, key: &[u8]) -> Entry {
        let (expire, lru) = (self.expire(), self.lru());
        if let Some(obj) = self.obj() {
            return Entry::boxed(key, Box::new(obj.clone()), expire, lru);
        }
        match self.string() {
            Some(s) => Entry::new(key, &s.bytes(), expire, lru),
            None => Entry::raw(key, self.kind(), self.value(), expire, lru),
        }
    }

    /// Takes the boxed collection out, leaving an empty string.
    pub fn take_obj(&mut self) -> Option<Box<Obj>> {
        let p = self.obj_ptr()?;
        self.set_kind(Kind::Str);
        self.store_value(b"", false);
        // SAFETY: the pointer came from Box::into_raw; the record no longer claims it.
        Some(unsafe { Box::from_raw(p) })
    }

    /// (stored key length, value length unpacked, offset of the key bytes).
    #[inline]
    fn lens(&self) -> (usize, usize, usize) {
        // SAFETY: both varints were written by `build` (or rewritten in place).
        unsafe {
            let p = self.ptr().add(LENS);
            let (k, a) = read_varint(p);
            let (v, b) = read_varint(p.add(a));
            (k, v, LENS + a + b)
        }
    }

    #[inline]
    fn ptr(&self) -> *mut u8 {
        self.0.as_ptr()
    }

    /// The key: its shared prefix, if any, and the bytes this record stores.
    #[inline]
    pub fn key(&self) -> Key<'_> {
        let (k, _, off) = self.lens();
        Key {
            pre: prefix::global().get(self.meta() >> PREFIX_SHIFT),
            // SAFETY: the stored key bytes live at off..off+k of our allocation.
            rest: unsafe { std::slice::from_raw_parts(self.ptr().add(off), k) },
        }
    }

    /// The value's bytes as stored: a pack or a boxed pointer (collections), or a string's
    /// bytes when not packed. Strings are read through [`string`](Self::string).
    #[inline]
    pub fn value(&self) -> &[u8] {
        debug_assert!(
            !self.packed(),
            "a packed string read as bytes: {:?} meta {:x}",
            self.kind(),
            self.meta()
        );
        let (k, v, off) = self.lens();
        let n = stored_len(v, self.packed());
        // SAFETY: value bytes follow the key.
        unsafe { std::slice::from_raw_parts(self.ptr().add(off + k), n) }
    }

    fn size(&self) -> usize {
        let (k, v, off) = self.lens();
        off + k + stored_len(v, self.packed())
    }

    /// Absolute expiry in unix ms, 0 when the key has no TTL.
    #[inline]
    pub fn expire(&self) -> i64 {
        // SAFETY: offset 8 is 8-aligned in an 8-aligned allocation.
        unsafe { self.ptr().add(EXPIRE).cast::<i64>().read() }
    }

    #[inline]
    pub fn set_expire(&mut self, at: i64) {
        // SAFETY: as above; &mut self gives exclusive access.
        unsafe { self.ptr().add(EXPIRE).cast::<i64>().write(at) }
    }

    /// Whether the key's time has passed: as Redis, a key lives through the millisecond
    /// of its expiry time and is gone after it (`now > when`).
    #[inline]
    pub fn is_expired(&self, now: i64) -> bool {
        let e = self.expire();
        e != 0 && e < now
    }

    #[inline]
    pub fn lru(&self) -> u32 {
        // SAFETY: offset 16, 4-aligned.
        unsafe { self.ptr().add(LRU).cast::<u32>().read() & LRU_MASK }
    }

    #[inline]
    pub fn set_lru(&mut self, clock: u32) {
        // SAFETY: as above.
        unsafe {
            let p = self.ptr().add(LRU).cast::<u32>();
            p.write((p.read() & !LRU_MASK) | (clock & LRU_MASK));
        }
    }

    #[inline]
    pub fn next(&self) -> &Option<Entry> {
        // SAFETY: offset 0 holds an initialised Option<Entry> (pointer-sized, 8-aligned).
        unsafe { &*self.ptr().add(NEXT).cast::<Option<Entry>>() }
    }

    #[inline]
    pub fn next_mut(&mut self) -> &mut Option<Entry> {
        // SAFETY: as above, exclusive through &mut self.
        unsafe { &mut *self.ptr().add(NEXT).cast::<Option<Entry>>() }
    }

    /// Bytes this record occupies in the allocator, a boxed collection included (for memory
    /// accounting).
    pub fn footprint(&self) -> usize {
        allocated_size(self.size()) + self.obj().map_or(0, Obj::bytes)
    }

    /// Replace the value with a string, reallocating if the size changes. The chain pointer,
    /// TTL and LRU clock are kept, so the record stays where it is in its bucket.
    pub fn set_value(&mut self, value: &[u8]) {
        self.store_value(value, ascii::worth(value));
    }

    /// Replace the value with `value`'s bytes, packed or as they are, and mark the record a
    /// string (callers storing a pack set the kind after).
    fn store_value(&mut self, value: &[u8], packed: bool) {
        assert!(value.len() <= u32::MAX as usize);
        self.release_obj();
        let (k, v, off) = self.lens();
        if varint_len(v) == varint_len(value.len()) {
            // Same header: resize and overwrite the value in place.
            let old_total = off + k + stored_len(v, self.packed());
            let new_total = off + k + stored_len(value.len(), packed);
            self.resize(old_total, new_total);
            let meta = (self.meta() & !(KIND_BITS | PACKED)) | if packed { PACKED } else { 0 };
            self.set_meta(meta | Kind::Str as u8);
            // SAFETY: the allocation now holds new_total bytes; the varint size is unchanged.
            unsafe {
                write_varint(self.ptr().add(LENS + varint_len(k)), value.len());
                self.write_value(off + k, value, packed);
            }
        } else {
            let key = self.key().to_vec();
            self.rebuild(&key, value, packed);
        }
    }

    /// Append to the value (APPEND).
    pub fn append_value(&mut self, tail: &[u8]) {
        debug_assert_eq!(self.kind(), Kind::Str);
        if self.packed() {
            let mut value = self.string().map(|s| s.to_vec()).unwrap_or_default();
            value.extend_from_slice(tail);
            return self.set_value(&value);
        }
        let (k, v, off) = self.lens();
        let new_v = v + tail.len();
        assert!(new_v <= u32::MAX as usize);
        if varint_len(v) == varint_len(new_v) {
            self.resize(off + k + v, off + k + new_v);
            // SAFETY: the allocation now holds off+k+new_v bytes.
            unsafe {
                write_varint(self.ptr().add(LENS + varint_len(k)), new_v);
                std::ptr::copy_nonoverlapping(
                    tail.as_ptr(),
                    self.ptr().add(off + k + v),
                    tail.len(),
                );
            }
        } else {
            let key = self.key().to_vec();
            let mut value = self.value().to_vec();
            value.extend_from_slice(tail);
            self.rebuild(&key, &value, false);
        }
    }

    /// `realloc` to `new_total` bytes, keeping the prefix.
    fn resize(&mut self, old_total: usize, new_total: usize) {
        if old_total == new_total {
            return;
        }
        // SAFETY: the pointer came from `alloc` with layout_for(old_total); realloc keeps the
        // prefix (header, lengths, key) intact.
        unsafe {
            let p = realloc(self.ptr(), layout_for(old_total), new_total);
            let Some(p) = NonNull::new(p) else {
                handle_alloc_error(layout_for(new_total))
            };
            self.0 = p;
        }
    }

    /// Move to a fresh allocation with a new string body, keeping chain pointer, TTL and LRU
    /// clock (the caller has released any boxed collection; one storing a pack sets the kind
    /// after).
    fn rebuild(&mut self, key: &[u8], value: &[u8], packed: bool) {
        let mut fresh = Entry::build(key, value, packed, Kind::Str, self.expire(), self.lru());
        *fresh.next_mut() = self.take_next();
        std::mem::swap(self, &mut fresh);
        // `fresh` now holds the old allocation with an empty chain: dropping frees only it.
    }

    /// Detach and return the rest of the chain.
    pub fn take_next(&mut self) -> Option<Entry> {
        self.next_mut().take()
    }
}

/// A record's key: a shared prefix (maybe empty) and the bytes the record stores.
#[derive(Clone, Copy)]
pub struct Key<'a> {
    pre: &'a [u8],
    rest: &'a [u8],
}

impl Key<'_> {
    pub fn len(&self) -> usize {
        self.pre.len() + self.rest.len()
    }

    /// Whether this is `key`, compared where the bytes are.
    #[inline]
    pub fn is(&self, key: &[u8]) -> bool {
        key.len() == self.len()
            && key[..self.pre.len()] == *self.pre
            && key[self.pre.len()..] == *self.rest
    }

    pub fn to_vec(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        v.extend_from_slice(self.pre);
        v.extend_from_slice(self.rest);
        v
    }

    /// Runs `f` on the key's bytes in one piece (on the stack when short).
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        if self.pre.is_empty() {
            return f(self.rest);
        }
        let n = self.len();
        let mut buf = [0u8; 128];
        match buf.get_mut(..n) {
            Some(b) => {
                b[..self.pre.len()].copy_from_slice(self.pre);
                b[self.pre.len()..].copy_from_slice(self.rest);
                f(b)
            }
            None => f(&self.to_vec()),
        }
    }
}

/// A string record's value: as it is, or packed seven bits a character ([`ascii`]).
#[derive(Clone, Copy, Debug)]
pub enum Str<'a> {
    Plain(&'a [u8]),
    /// The packed bytes and the string's length.
    Packed(&'a [u8], usize),
}

impl<'a> Str<'a> {
    pub fn len(&self) -> usize {
        match self {
            Str::Plain(b) => b.len(),
            Str::Packed(_, n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the string's bytes into `dst`, which is [`len`](Self::len) bytes long.
    #[inline]
    pub fn copy_to(&self, dst: &mut [u8]) {
        match self {
            Str::Plain(b) => dst.copy_from_slice(b),
            Str::Packed(p, _) => ascii::unpack(p, dst),
        }
    }

    /// Appends the string's bytes to `out`.
    #[inline]
    pub fn extend_into(&self, out: &mut Vec<u8>) {
        match self {
            Str::Plain(b) => out.extend_from_slice(b),
            Str::Packed(p, n) => ascii::unpack_into(p, *n, out),
        }
    }

    pub fn to_vec(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        self.extend_into(&mut v);
        v
    }

    /// The bytes: borrowed when stored as they are, unpacked into a new buffer otherwise.
    pub fn bytes(&self) -> std::borrow::Cow<'a, [u8]> {
        match self {
            Str::Plain(b) => std::borrow::Cow::Borrowed(b),
            Str::Packed(..) => std::borrow::Cow::Owned(self.to_vec()),
        }
    }
}

impl PartialEq<[u8]> for Str<'_> {
    fn eq(&self, other: &[u8]) -> bool {
        match self {
            Str::Plain(b) => *b == other,
            Str::Packed(p, n) => *n == other.len() && ascii::equals(p, other),
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        // Unlink the chain iteratively so a long chain cannot overflow the stack.
        let mut next = self.take_next();
        while let Some(mut e) = next {
            next = e.take_next();
            drop(e);
        }
        self.release_obj();
        let total = self.size();
        // SAFETY: allocated in `new`/`resize` with this exact size.
        unsafe { dealloc(self.ptr(), layout_for(total)) }
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key_len", &self.lens().0)
            .field("val_len", &self.lens().1)
            .field("expire", &self.expire())
            .field("kind", &self.kind())
            .finish()
    }
}

#[cfg(test)]
#[path = "entry_tests.rs"]
mod tests;
