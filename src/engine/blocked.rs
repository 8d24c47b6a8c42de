//! Clients blocked on keys (BLPOP, BLMOVE, BZPOPMIN…): the registry.
//!
//! Each shard keeps, per (database, key), the queue of clients blocked on that key, in the
//! order they blocked. A client blocks only after finding all its keys empty *inside the same
//! block of shard locks* in which it registers, so a push can never fall between its check
//! and its registration. A command that may have made a key non-empty asks the command layer
//! to serve that key (`cmd/blocking.rs`): the first waiter in the queue is served (its pop
//! done on its behalf, under the key's locks, and its reply stored in its [`Waiter`]), then
//! the next, while the key has data. A waiter blocked on several keys sits in several
//! queues; whoever serves or cancels it first wins (its slot moves from `Waiting` exactly
//! once), and stale entries are dropped when met.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{Db, Engine, Inner};

/// What a blocked client will do once a key has data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockOp {
    /// BLPOP/BRPOP (`count` None) and BLMPOP (`count` Some).
    ListPop { left: bool, count: Option<usize> },
    /// BLMOVE/BRPOPLPUSH.
    ListMove {
        dst: Vec<u8>,
        from_left: bool,
        to_left: bool,
    },
    /// BZPOPMIN/BZPOPMAX (`count` None) and BZMPOP (`count` Some).
    ZPop { max: bool, count: Option<usize> },
    /// WAIT for replicas: there are none, so only the timeout (or a disconnect) ends it.
    Wait,
}

/// Where a blocked client's reply comes from.
#[derive(Debug)]
pub enum Slot {
    Waiting,
    /// Served: the reply, encoded for the client's protocol.
    Served(Bytes),
    /// Timed out or gone.
    Cancelled,
}

/// One blocked client.
#[derive(Debug)]
pub struct Waiter {
    pub client: u64,
    pub db: Db,
    pub keys: Vec<Vec<u8>>,
    pub op: BlockOp,
    pub resp3: bool,
    slot: Mutex<Slot>,
    wake: tokio::sync::Notify,
    /// Counted in `blocked_clients` (exactly once, however many queues it is in).
    registered: std::sync::atomic::AtomicBool,
}

/// A shard's queues of waiters.
pub(super) type Registry = HashMap<(Db, Box<[u8]>), VecDeque<Arc<Waiter>>>;

impl Waiter {
    pub fn new(client: u64, db: Db, keys: Vec<Vec<u8>>, op: BlockOp, resp3: bool) -> Arc<Waiter> {
        Arc::new(Waiter {
            client,
            db,
            keys,
            op,
            resp3,
            slot: Mutex::new(Slot::Waiting),
            wake: tokio::sync::Notify::new(),
            registered: false.into(),
        })
    }

    /// The slot, locked: the server checks it is `Waiting`, does the pop and stores the reply
    /// while holding it, so a timeout cannot slip in between.
    pub fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Waits until served; the reply.
    pub async fn served(&self) -> Bytes {
        loop {
            let notified = self.wake.notified();
            if let Slot::Served(b) = &*self.slot() {
                return b.clone();
            }
            notified.await;
        }
    }

    /// Gives up waiting (timeout, disconnect). Returns the reply if it was served meanwhile.
    pub fn cancel(&self) -> Option<Bytes> {
        let mut s = self.slot();
        match &*s {
            Slot::Served(b) => Some(b.clone()),
            _ => {
                *s = Slot::Cancelled;
                None
            }
        }
    }

    fn waiting(&self) -> bool {
        matches!(*self.slot(), Slot::Waiting)
    }
}

impl Engine {
    /// Whether any client is blocked (the fast path of every push: nothing to serve).
    pub fn has_blocked(&self) -> bool {
        self.inner.blocked_clients.load(Ordering::Relaxed) > 0
    }

    /// Registers `w` on each of its keys. Call in the block that found its keys empty.
    pub fn block(&self, w: &Arc<Waiter>) {
        let i = &self.inner;
        if !w.registered.swap(true, Ordering::AcqRel) {
            i.blocked_clients.fetch_add(1, Ordering::Relaxed);
        }
        for k in &w.keys {
            let h = i.hash(k);
            i.lock(Inner::shard_of(h))
                .blocked
                .entry((w.db, k.as_slice().into()))
                .or_default()
                .push_back(w.clone());
        }
    }

    /// Removes `w` from every queue (served, timed out or gone).
    pub fn unblock(&self, w: &Arc<Waiter>) {
        let i = &self.inner;
        for k in &w.keys {
            let h = i.hash(k);
            let mut g = i.lock(Inner::shard_of(h));
            let id = (w.db, Box::<[u8]>::from(k.as_slice()));
            if let Some(q) = g.blocked.get_mut(&id) {
                q.retain(|x| !Arc::ptr_eq(x, w));
                if q.is_empty() {
                    g.blocked.remove(&id);
                }
            }
        }
        if w.registered.swap(false, Ordering::AcqRel) {
            i.blocked_clients.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The first client still waiting on `key`, dropping finished ones met on the way.
    pub fn first_waiter(&self, db: Db, key: &[u8]) -> Option<Arc<Waiter>> {
        let i = &self.inner;
        let h = i.hash(key);
        let mut g = i.lock(Inner::shard_of(h));
        let id = (db, Box::<[u8]>::from(key));
        let q = g.blocked.get_mut(&id)?;
        while let Some(w) = q.front() {
            if w.waiting() {
                return Some(w.clone());
            }
            q.pop_front();
        }
        g.blocked.remove(&id);
        None
    }

    /// Clients currently blocked (`INFO clients` `blocked_clients`).
    pub fn blocked_clients(&self) -> usize {
        self.inner.blocked_clients.load(Ordering::Relaxed)
    }
}
