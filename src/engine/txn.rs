//! Atomic execution of a block of commands (`EXEC`), across shards, without a global lock.
//!
//! Every engine operation takes the locks of its own key's shards (`Inner::lock`), one
//! command at a time. `EXEC` must instead hold the shards of *all* its commands for the whole
//! block, so that no other client sees half of it, and write all its changes to the log as
//! one frame, so that after a crash it is wholly there or wholly absent.
//!
//! [`Engine::atomically`] takes the shards of the block's keys (computed by the caller from
//! the command table's key specs; every shard when a command's reach is not known from its
//! keys) in index order, as every multi-key command does, so it cannot deadlock with them.
//! While it runs, a thread-local points at those guards and at the block's log frame (encoded
//! in a buffer of its own and appended to the log when the block ends, so a long block, a
//! script, does not hold up writers on other shards):
//! `Inner::lock` hands out the held shard instead of locking it again, and
//! `Changes::record` appends to the block's frame instead of opening its own. The operations
//! themselves are unchanged, so a command behaves inside `EXEC` exactly as outside.
//!
//! Rules that keep this sound:
//! * the block runs synchronously on one thread (the engine's operations never await; the
//!   caller polls each command once and refuses at queueing time the few commands that can
//!   wait: AUTH, SAVE, SHUTDOWN);
//! * a shard outside the held set is never locked while inside (the held set covers every
//!   key; eviction, which samples arbitrary shards, is skipped inside a block: a block may
//!   overshoot `maxmemory` by what it writes, and the next write outside evicts);
//! * one engine operation never holds two guards of the same shard (true of the engine
//!   outside blocks too: `lock_keys` takes each shard once).

use std::cell::{Cell, RefCell};
use std::ops::{Deref, DerefMut};
use std::sync::MutexGuard;

use super::{Engine, Inner, ShardData, SHARDS};
use crate::persist::format::Op;
use crate::persist::journal::DetachedFrame;

/// A shard's data, locked for this operation or held by the running block.
pub(crate) enum ShardGuard<'a> {
    Locked(MutexGuard<'a, ShardData>),
    Held(&'a mut ShardData),
}

impl Deref for ShardGuard<'_> {
    type Target = ShardData;
    fn deref(&self) -> &ShardData {
        match self {
            ShardGuard::Locked(g) => g,
            ShardGuard::Held(s) => s,
        }
    }
}

impl DerefMut for ShardGuard<'_> {
    fn deref_mut(&mut self) -> &mut ShardData {
        match self {
            ShardGuard::Locked(g) => g,
            ShardGuard::Held(s) => s,
        }
    }
}

/// What the thread-local points at while a block runs.
struct Block<'a> {
    inner: *const Inner,
    shards: [*mut ShardData; SHARDS],
    frame: RefCell<Option<DetachedFrame>>,
    _life: std::marker::PhantomData<&'a ()>,
}

thread_local! {
    static BLOCK: Cell<*const ()> = const { Cell::new(std::ptr::null()) };
}

fn current<R>(inner: &Inner, f: impl FnOnce(&Block<'_>) -> R) -> Option<R> {
    let p = BLOCK.with(Cell::get);
    if p.is_null() {
        return None;
    }
    // SAFETY: the pointer is set by `atomically` to a `Block` on its stack and cleared before
    // that frame returns (also on unwind, by `Reset`); only this thread reads it.
    let b = unsafe { &*(p as *const Block<'_>) };
    if !std::ptr::eq(b.inner, inner) {
        return None;
    }
    Some(f(b))
}

/// The held guard of `shard`, when a block of this engine is running on this thread.
pub(super) fn held<'a>(inner: &'a Inner, shard: usize) -> Option<ShardGuard<'a>> {
    current(inner, |b| b.shards[shard])
        .filter(|p| !p.is_null())
        // SAFETY: the pointer comes from a guard `atomically` holds until the block ends;
        // engine operations take each shard once (module docs), so this is the only live
        // reference to it.
        .map(|p| ShardGuard::Held(unsafe { &mut *p }))
}

/// Whether a block of this engine runs on this thread.
pub(super) fn active(inner: &Inner) -> bool {
    current(inner, |_| ()).is_some()
}

/// Appends `op` to the running block's frame; false when no block runs (the caller opens a
/// frame of its own).
pub(super) fn record(inner: &Inner, op: &Op<'_>) -> bool {
    current(inner, |b| {
        if inner.journal.get().is_none() {
            return;
        }
        b.frame
            .borrow_mut()
            .get_or_insert_with(DetachedFrame::default)
            .push(op);
    })
    .is_some()
}

/// Clears the thread-local when the block ends, normally or by unwinding.
struct Reset;

impl Drop for Reset {
    fn drop(&mut self) {
        BLOCK.with(|c| c.set(std::ptr::null()));
    }
}

impl Engine {
    /// Runs `f` with the shards of `keys` held (every shard when `keys` is None), as one
    /// atomic block with one log frame. See the module docs. Multi-key commands (SMOVE,
    /// SINTERSTORE…) are such blocks too; inside EXEC they run in EXEC's block, which already
    /// holds their keys' shards.
    pub fn atomically<R>(&self, keys: Option<&[&[u8]]>, f: impl FnOnce() -> R) -> R {
        let i = &*self.inner;
        if active(i) {
            return f();
        }
        // Which shards, in index order, without allocating (a bit per shard).
        let mut wanted: u64 = 0;
        match keys {
            Some(keys) => {
                for k in keys {
                    wanted |= 1 << Inner::shard_of(i.hash(k));
                }
            }
            None => wanted = u64::MAX,
        }
        const _: () = assert!(SHARDS == 64, "one bit per shard");
        // The guards, in index order: inline for the usual few shards (a script or EXEC on
        // a session's keys), on the heap for more.
        type Guard<'g> = (usize, MutexGuard<'g, ShardData>);
        let mut few: [Option<Guard<'_>>; 4] = [const { None }; 4];
        let mut many: Vec<Guard<'_>> = Vec::new();
        let count = wanted.count_ones() as usize;
        if count > few.len() {
            many.reserve_exact(count);
        }
        let mut rest = wanted;
        let mut n = 0;
        while rest != 0 {
            let s = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            let g = (s, i.lock_mutex(s));
            if count <= few.len() {
                few[n] = Some(g);
                n += 1;
            } else {
                many.push(g);
            }
        }
        let mut shards = [std::ptr::null_mut(); SHARDS];
        for (s, g) in few.iter_mut().flatten().chain(many.iter_mut()) {
            shards[*s] = &mut **g as *mut ShardData;
        }
        let block = Block {
            inner: i,
            shards,
            frame: RefCell::new(None),
            _life: std::marker::PhantomData,
        };
        let r = {
            BLOCK.with(|c| c.set(&block as *const Block<'_> as *const ()));
            let _reset = Reset;
            f()
        };
        // The frame is appended while the shards are still held, as for any command.
        if let (Some(frame), Some(j)) = (block.frame.into_inner(), i.journal.get()) {
            j.append_frame(frame);
        }
        for (s, g) in few.iter_mut().flatten().chain(many.iter_mut()) {
            i.publish(*s, g);
        }
        drop(few);
        drop(many);
        r
    }
}
