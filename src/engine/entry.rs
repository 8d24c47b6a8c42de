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
//!                            allkeys-lru; top 8 bits: the record's [`Kind`] (type and encoding)
//!       20   key_len  (1-5)  LEB128 varint
//!        …   val_len  (1-5)  LEB128 varint
//!        …   key bytes, then value bytes
//! ```
//!
//! Lengths are varints because every byte counts at a million sessions: a session key
//! (`PHPREDIS_SESSION:` + 26 characters) and a value under 16 KiB need 1 + 2 bytes instead of
//! 8, which for 100-byte sessions moves the record into a smaller malloc size class.
//!
//! For a string the value bytes are the string; for a small collection, its pack; for a large
//! one ([`Kind::boxed`]), 8 bytes holding a `Box<Obj>` pointer that the record owns (freed when
//! the record is dropped or its value replaced).
//!
//! This is the only `unsafe` code of the engine; everything above it is safe Rust. The
//! invariants are local: the pointer always comes from `alloc` with `layout_for(k, v)`, the
//! lengths in the header always describe the allocation, `Entry` is the unique owner, and a
//! boxed kind's value is always a pointer from `Box::into_raw`.

use std::alloc::{alloc, dealloc, handle_alloc_error, realloc, Layout};
use std::ptr::NonNull;

use super::value::{Kind, Obj};

const NEXT: usize = 0;
const EXPIRE: usize = 8;
const LRU: usize = 16;
/// Where the varint lengths start.
const LENS: usize = 20;
/// The LRU clock's bits of the word at `LRU`; the top byte is the kind. 24 bits of seconds
/// wrap after 194 days, so idle times are computed modulo 2^24 (as Redis's `LRU_CLOCK_MAX`).
pub const LRU_MASK: u32 = 0x00ff_ffff;
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

/// Size of a record holding `k` key bytes and `v` value bytes.
fn total_size(k: usize, v: usize) -> usize {
    LENS + varint_len(k) + varint_len(v) + k + v
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
    pub fn new(key: &[u8], value: &[u8], expire: i64, lru: u32) -> Entry {
        assert!(key.len() <= u32::MAX as usize && value.len() <= u32::MAX as usize);
        let layout = layout_for(total_size(key.len(), value.len()));
        // SAFETY: layout has non-zero size; every header field is written before use.
        unsafe {
            let p = alloc(layout);
            let Some(p) = NonNull::new(p) else {
                handle_alloc_error(layout)
            };
            let e = Entry(p);
            e.ptr().add(NEXT).cast::<Option<Entry>>().write(None);
            e.ptr().add(EXPIRE).cast::<i64>().write(expire);
            e.ptr().add(LRU).cast::<u32>().write(lru & LRU_MASK);
            e.write_body(key, value);
            e
        }
    }

    /// A record of a packed kind (`value` is its pack).
    pub fn with_kind(key: &[u8], kind: Kind, value: &[u8], expire: i64, lru: u32) -> Entry {
        debug_assert!(!kind.boxed());
        let mut e = Entry::new(key, value, expire, lru);
        e.set_kind(kind);
        e
    }

    /// A record owning a large collection.
    pub fn boxed(key: &[u8], obj: Box<Obj>, expire: i64, lru: u32) -> Entry {
        let kind = obj.kind();
        let raw = Box::into_raw(obj) as usize;
        let mut e = Entry::new(key, &raw.to_ne_bytes(), expire, lru);
        e.set_kind(kind);
        e
    }

    #[inline]
    pub fn kind(&self) -> Kind {
        // SAFETY: offset 16, 4-aligned.
        Kind::from_u8((unsafe { self.ptr().add(LRU).cast::<u32>().read() } >> 24) as u8)
    }

    fn set_kind(&mut self, kind: Kind) {
        // SAFETY: offset 16, 4-aligned; exclusive through &mut self.
        unsafe {
            let p = self.ptr().add(LRU).cast::<u32>();
            p.write((p.read() & LRU_MASK) | (u32::from(kind as u8) << 24));
        }
    }

    /// The value, if the record is a string.
    #[inline]
    pub fn string(&self) -> Option<&[u8]> {
        (self.kind() == Kind::Str).then(|| self.value())
    }

    /// The value of a string record, or WRONGTYPE.
    #[inline]
    pub fn str_or_wrongtype(&self) -> Result<&[u8], crate::store::StoreError> {
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
    /// (its bytes are a pointer): a pack updated without changing its length needs neither
    /// a new pack nor a new record.
    pub fn packed_mut(&mut self) -> Option<&mut [u8]> {
        if self.kind().boxed() {
            return None;
        }
        let (k, v, off) = self.lens();
        // SAFETY: the value's bytes follow the key inside our allocation, and `&mut self`
        // gives exclusive access to them for the borrow's life.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr().add(off + k), v) })
    }

    /// Replaces the value with a pack of `kind` (releasing a boxed collection).
    pub fn set_packed(&mut self, kind: Kind, pack: &[u8]) {
        self.set_value(pack);
        self.set_kind(kind);
    }

    /// Replaces the value with a boxed collection.
    pub fn set_boxed(&mut self, obj: Box<Obj>) {
        let kind = obj.kind();
        let raw = Box::into_raw(obj) as usize;
        self.set_value(&raw.to_ne_bytes());
        self.set_kind(kind);
    }

    /// The same value, TTL and LRU clock under another key (RENAME, COPY): a boxed
    /// collection moves, it is not copied.
    pub fn rekeyed(mut self, key: &[u8]) -> Entry {
        let (kind, expire, lru) = (self.kind(), self.expire(), self.lru());
        match self.take_obj() {
            Some(obj) => Entry::boxed(key, obj, expire, lru),
            None => {
                let mut e = Entry::new(key, self.value(), expire, lru);
                e.set_kind(kind);
                e
            }
        }
    }

    /// A deep copy under another key (COPY): a boxed collection is cloned.
    pub fn copied(&self, key: &[u8]) -> Entry {
        match self.obj() {
            Some(obj) => Entry::boxed(key, Box::new(obj.clone()), self.expire(), self.lru()),
            None => {
                let mut e = Entry::new(key, self.value(), self.expire(), self.lru());
                e.set_kind(self.kind());
                e
            }
        }
    }

    /// Takes the boxed collection out, leaving an empty string.
    pub fn take_obj(&mut self) -> Option<Box<Obj>> {
        let p = self.obj_ptr()?;
        self.set_kind(Kind::Str);
        self.set_value(b"");
        // SAFETY: the pointer came from Box::into_raw; the record no longer claims it.
        Some(unsafe { Box::from_raw(p) })
    }

    /// Writes lengths, key and value after the fixed header.
    ///
    /// # Safety
    /// The allocation must hold `total_size(key.len(), value.len())` bytes.
    unsafe fn write_body(&self, key: &[u8], value: &[u8]) {
        let p = self.ptr().add(LENS);
        write_varint(p, key.len());
        let kl = varint_len(key.len());
        write_varint(p.add(kl), value.len());
        let data = p.add(kl + varint_len(value.len()));
        std::ptr::copy_nonoverlapping(key.as_ptr(), data, key.len());
        std::ptr::copy_nonoverlapping(value.as_ptr(), data.add(key.len()), value.len());
    }

    /// (key length, value length, offset of the key bytes).
    #[inline]
    fn lens(&self) -> (usize, usize, usize) {
        // SAFETY: both varints were written by `write_body`.
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

    #[inline]
    pub fn key(&self) -> &[u8] {
        let (k, _, off) = self.lens();
        // SAFETY: key bytes live at off..off+k of our allocation.
        unsafe { std::slice::from_raw_parts(self.ptr().add(off), k) }
    }

    #[inline]
    pub fn value(&self) -> &[u8] {
        let (k, v, off) = self.lens();
        // SAFETY: value bytes follow the key.
        unsafe { std::slice::from_raw_parts(self.ptr().add(off + k), v) }
    }

    fn size(&self) -> usize {
        let (k, v, off) = self.lens();
        off + k + v
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
        assert!(value.len() <= u32::MAX as usize);
        self.release_obj();
        self.set_kind(Kind::Str);
        let (k, v, off) = self.lens();
        if varint_len(v) == varint_len(value.len()) {
            // Same header: resize and overwrite the value in place.
            let new_total = off + k + value.len();
            self.resize(off + k + v, new_total);
            // SAFETY: the allocation now holds new_total bytes; the varint size is unchanged.
            unsafe {
                write_varint(self.ptr().add(LENS + varint_len(k)), value.len());
                std::ptr::copy_nonoverlapping(value.as_ptr(), self.ptr().add(off + k), value.len());
            }
        } else {
            let key = self.key().to_vec();
            self.rebuild(&key, value);
        }
    }

    /// Append to the value (APPEND).
    pub fn append_value(&mut self, tail: &[u8]) {
        debug_assert_eq!(self.kind(), Kind::Str);
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
            self.rebuild(&key, &value);
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

    /// Move to a fresh allocation with a new body, keeping chain pointer, TTL, LRU clock and
    /// kind (the caller has released any boxed collection).
    fn rebuild(&mut self, key: &[u8], value: &[u8]) {
        let mut fresh = Entry::new(key, value, self.expire(), self.lru());
        fresh.set_kind(self.kind());
        *fresh.next_mut() = self.take_next();
        std::mem::swap(self, &mut fresh);
        // `fresh` now holds the old allocation with an empty chain: dropping frees only it.
    }

    /// Detach and return the rest of the chain.
    pub fn take_next(&mut self) -> Option<Entry> {
        self.next_mut().take()
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
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let mut e = Entry::new(b"key", b"value", 42, 7);
        assert_eq!(e.key(), b"key");
        assert_eq!(e.value(), b"value");
        assert_eq!(e.expire(), 42);
        assert_eq!(e.lru(), 7);
        e.set_value(b"a much longer value than before");
        assert_eq!(e.key(), b"key");
        assert_eq!(e.value(), b"a much longer value than before");
        assert_eq!(e.expire(), 42);
        e.set_value(b"");
        assert_eq!(e.value(), b"");
        e.append_value(b"xy");
        e.append_value(b"z");
        assert_eq!(e.value(), b"xyz");
        e.set_expire(0);
        assert!(!e.is_expired(i64::MAX));
    }

    #[test]
    fn values_crossing_varint_boundaries_keep_everything() {
        let mut e = Entry::new(b"PHPREDIS_SESSION:abc", b"", 7, 3);
        let next = Entry::new(b"next", b"n", 0, 0);
        *e.next_mut() = Some(next);
        for len in [
            0usize, 1, 127, 128, 129, 16383, 16384, 70000, 100, 0, 2_100_000, 5,
        ] {
            let v: Vec<u8> = (0..len).map(|i| i as u8).collect();
            e.set_value(&v);
            assert_eq!(e.value(), &v[..], "len {len}");
            assert_eq!(e.key(), b"PHPREDIS_SESSION:abc");
            assert_eq!((e.expire(), e.lru()), (7, 3));
            assert_eq!(
                e.next().as_ref().map(|n| n.key().to_vec()),
                Some(b"next".to_vec())
            );
        }
        let mut grown = e.value().to_vec();
        for chunk in [&[1u8; 120][..], &[2u8; 10], &[3u8; 16300]] {
            e.append_value(chunk);
            grown.extend_from_slice(chunk);
            assert_eq!(e.value(), &grown[..]);
        }
        let big_key = vec![b'k'; 300];
        let b = Entry::new(&big_key, b"v", 0, 0);
        assert_eq!((b.key(), b.value()), (&big_key[..], &b"v"[..]));
    }

    #[test]
    fn a_session_record_fits_a_176_byte_chunk() {
        // PHPREDIS_SESSION: + 26-char id, 100-byte value: the benchmark's session.
        let e = Entry::new(&[b'k'; 43], &[b'v'; 100], 1, 1);
        assert_eq!(e.footprint(), 176);
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
}
