//! Recycled buffers for client connections.
//!
//! Every connection reads into a 16 KB buffer and writes its replies from another.
//! Allocating them per connection is cheap for a client that stays, but a PHP-style client
//! connects for one request: then the buffers' allocation and release (glibc's large-chunk
//! path, with its consolidation) are a visible share of the connection's user CPU. Redis (a
//! shared query buffer) and twemproxy (a free list of mbufs) both avoid it the same way:
//! buffers are kept for the next connection.
//!
//! The pool is per thread (no lock; a buffer returned on another worker simply joins that
//! worker's pool) and bounded: at most [`KEEP`] buffers of at most [`MAX_KEPT`] bytes each.
//! A burst of connections leaves about 1 MB per worker behind (64 buffers of the usual
//! 16 KB), 4 MB at the very most.

use std::cell::RefCell;

use bytes::BytesMut;

/// How many idle buffers a worker keeps.
const KEEP: usize = 64;
/// Buffers that grew past this (a large pipeline, a big value) are freed, not kept.
const MAX_KEPT: usize = 64 * 1024;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least `capacity` bytes: a recycled one if the pool has
/// one, a new one otherwise.
pub fn take(capacity: usize) -> BytesMut {
    let recycled = POOL.try_with(|p| p.borrow_mut().pop()).ok().flatten();
    match recycled {
        Some(mut b) => {
            b.reserve(capacity);
            b
        }
        None => BytesMut::with_capacity(capacity),
    }
}

/// Gives a buffer back. Its contents are dropped; it is kept only if it is of a reusable
/// size and the pool has room.
pub fn give(mut b: BytesMut) {
    b.clear();
    // `reserve` of 0 after `clear` moves the start back to the allocation's beginning when
    // the buffer is not shared, so the full capacity is reusable.
    b.reserve(0);
    let cap = b.capacity();
    if cap == 0 || cap > MAX_KEPT {
        return;
    }
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < KEEP {
            p.push(b);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_is_taken_again_empty_and_whole() {
        let mut b = take(1024);
        b.extend_from_slice(b"hello world");
        let ptr = b.as_ptr();
        bytes::Buf::advance(&mut b, 6);
        give(b);
        let b = take(1024);
        assert!(b.is_empty());
        assert!(b.capacity() >= 1024);
        assert_eq!(b.as_ptr(), ptr, "the same allocation comes back");
    }

    #[test]
    fn oversized_buffers_are_not_kept() {
        let b = BytesMut::with_capacity(MAX_KEPT * 2);
        give(b);
        let b = take(16);
        assert!(b.capacity() < MAX_KEPT * 2);
    }

    #[test]
    fn the_pool_is_bounded() {
        for _ in 0..KEEP * 2 {
            give(BytesMut::with_capacity(1024));
        }
        assert_eq!(POOL.with(|p| p.borrow().len()), KEEP);
    }
}
