//! One key/value record in a single heap allocation.
//!
//! Redis spends four allocations on a string key with a TTL (dict entry, key sds, value
//! object, expires-dict entry). A session store holds millions of small records, so the
//! per-record overhead is what decides memory use. An `Entry` is a thin pointer to:
//!
//! ```text
//! offset 0   next     (8)  chain pointer of the hash table bucket (Option<Entry>)
//!        8   expire   (8)  absolute unix ms, 0 = no TTL
//!       16   lru      (4)  engine clock (seconds) of the last access, for allkeys-lru
//!       20   key_len  (4)
//!       24   val_len  (4)
//!       28   key bytes, then value bytes
//! ```
//!
//! This is the only `unsafe` code of the engine; everything above it is safe Rust. The
//! invariants are local: the pointer always comes from `alloc` with `layout_for(k, v)`, the
//! lengths in the header always describe the allocation, and `Entry` is the unique owner.

use std::alloc::{alloc, dealloc, handle_alloc_error, realloc, Layout};
use std::ptr::NonNull;

const NEXT: usize = 0;
const EXPIRE: usize = 8;
const LRU: usize = 16;
const KLEN: usize = 20;
const VLEN: usize = 24;
const DATA: usize = 28;

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
        let layout = layout_for(DATA + key.len() + value.len());
        // SAFETY: layout has non-zero size; every header field is written before use.
        unsafe {
            let p = alloc(layout);
            let Some(p) = NonNull::new(p) else {
                handle_alloc_error(layout)
            };
            let e = Entry(p);
            e.ptr().add(NEXT).cast::<Option<Entry>>().write(None);
            e.ptr().add(EXPIRE).cast::<i64>().write(expire);
            e.ptr().add(LRU).cast::<u32>().write(lru);
            e.ptr().add(KLEN).cast::<u32>().write(key.len() as u32);
            e.ptr().add(VLEN).cast::<u32>().write(value.len() as u32);
            std::ptr::copy_nonoverlapping(key.as_ptr(), e.ptr().add(DATA), key.len());
            std::ptr::copy_nonoverlapping(
                value.as_ptr(),
                e.ptr().add(DATA + key.len()),
                value.len(),
            );
            e
        }
    }

    #[inline]
    fn ptr(&self) -> *mut u8 {
        self.0.as_ptr()
    }

    #[inline]
    fn key_len(&self) -> usize {
        // SAFETY: header written in `new`, offset aligned to 4.
        unsafe { self.ptr().add(KLEN).cast::<u32>().read() as usize }
    }

    #[inline]
    fn val_len(&self) -> usize {
        // SAFETY: as above.
        unsafe { self.ptr().add(VLEN).cast::<u32>().read() as usize }
    }

    #[inline]
    pub fn key(&self) -> &[u8] {
        // SAFETY: key bytes live at DATA..DATA+key_len of our allocation.
        unsafe { std::slice::from_raw_parts(self.ptr().add(DATA), self.key_len()) }
    }

    #[inline]
    pub fn value(&self) -> &[u8] {
        // SAFETY: value bytes follow the key.
        unsafe { std::slice::from_raw_parts(self.ptr().add(DATA + self.key_len()), self.val_len()) }
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

    #[inline]
    pub fn is_expired(&self, now: i64) -> bool {
        let e = self.expire();
        e != 0 && e <= now
    }

    #[inline]
    pub fn lru(&self) -> u32 {
        // SAFETY: offset 16, 4-aligned.
        unsafe { self.ptr().add(LRU).cast::<u32>().read() }
    }

    #[inline]
    pub fn set_lru(&mut self, clock: u32) {
        // SAFETY: as above.
        unsafe { self.ptr().add(LRU).cast::<u32>().write(clock) }
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

    /// Bytes this record occupies in the allocator (for memory accounting).
    pub fn footprint(&self) -> usize {
        allocated_size(DATA + self.key_len() + self.val_len())
    }

    /// Replace the value in place, reallocating if the size changes. The chain pointer,
    /// TTL and LRU clock are kept, so the record stays where it is in its bucket.
    pub fn set_value(&mut self, value: &[u8]) {
        assert!(value.len() <= u32::MAX as usize);
        let klen = self.key_len();
        let old_total = DATA + klen + self.val_len();
        let new_total = DATA + klen + value.len();
        if old_total != new_total {
            // SAFETY: the pointer came from `alloc` with layout_for(old_total); realloc keeps
            // the prefix (header and key) intact.
            unsafe {
                let p = realloc(self.ptr(), layout_for(old_total), new_total);
                let Some(p) = NonNull::new(p) else {
                    handle_alloc_error(layout_for(new_total))
                };
                self.0 = p;
            }
        }
        // SAFETY: the allocation now holds new_total bytes.
        unsafe {
            self.ptr().add(VLEN).cast::<u32>().write(value.len() as u32);
            std::ptr::copy_nonoverlapping(value.as_ptr(), self.ptr().add(DATA + klen), value.len());
        }
    }

    /// Append to the value (APPEND), reallocating once.
    pub fn append_value(&mut self, tail: &[u8]) {
        let klen = self.key_len();
        let vlen = self.val_len();
        let old_total = DATA + klen + vlen;
        let new_total = old_total + tail.len();
        assert!(vlen + tail.len() <= u32::MAX as usize);
        // SAFETY: as in set_value.
        unsafe {
            let p = realloc(self.ptr(), layout_for(old_total), new_total);
            let Some(p) = NonNull::new(p) else {
                handle_alloc_error(layout_for(new_total))
            };
            self.0 = p;
            self.ptr()
                .add(VLEN)
                .cast::<u32>()
                .write((vlen + tail.len()) as u32);
            std::ptr::copy_nonoverlapping(tail.as_ptr(), self.ptr().add(old_total), tail.len());
        }
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
        let total = DATA + self.key_len() + self.val_len();
        // SAFETY: allocated in `new`/`set_value` with this exact layout.
        unsafe { dealloc(self.ptr(), layout_for(total)) }
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key_len", &self.key_len())
            .field("val_len", &self.val_len())
            .field("expire", &self.expire())
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
