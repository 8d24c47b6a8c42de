//! Pub/sub for the embedded engine: channels, patterns, shard channels, and keyspace
//! notifications.
//!
//! **Delivery never waits for a subscriber.** `PUBLISH` encodes the message once per protocol
//! and hands it to each subscriber's [`Mailbox`]:
//!
//! * **Idle subscriber: written at once.** While a subscriber's connection waits with
//!   nothing of its own to write, it lends its socket to publishers ([`Mailbox::parked`],
//!   plain TCP and unix sockets only). The publisher then makes one non-blocking `send`: no
//!   queue, no wake-up of the subscriber's task, as Redis writes from its event loop. Fan-out
//!   to 1,000 subscribers measured 4.6 µs of server CPU per delivered message through the
//!   queue and wake-up, against Redis's 3.4; written at once, 3.0 to 3.4 (docs/BENCHMARKS.md).
//! * **Otherwise: queued.** The frame (or the rest of it, if the socket took only part) is
//!   appended to the mailbox (a queue of frames and a byte count) and the connection woken;
//!   it writes the queue out before its next reply, so a reply never lands inside a message.
//!
//! A subscriber that does not read lets its mailbox grow only to `client-output-buffer-limit
//! pubsub` (Redis's default: 32 MB at once, or 8 MB for 60 seconds): past it the mailbox is
//! closed, its frames dropped, and the connection ends, as Redis disconnects such a client.
//! A `send` never blocks, so the publisher's cost is the same whatever its subscribers do.
//!
//! **Keyspace notifications** ([`Notifier`]) are publishes made by the server itself, on
//! `__keyspace@<db>__:<key>` and `__keyevent@<db>__:<event>`, for the classes enabled by
//! `notify-keyspace-events` (Redis's letters). Commands name their events, as Redis's do;
//! the engine reports the ones no command makes (`expired`, by a lazy access or by the
//! sweeper, and `evicted`) through the same notifier.
//!
//! The hub's maps are behind one `RwLock`: publishing (the common case) takes it shared;
//! subscribing and unsubscribing take it exclusively. No other lock is taken while it is
//! held, and it is never held while waiting.

use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

use crate::resp::reply::Proto;
use crate::server::output_limit::OutputLimit;
use crate::util::glob::glob_match;

/// What a subscriber's connection has to write, and whether it must close.
#[derive(Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    bytes: u64,
    /// Since when the queue has been over the soft limit.
    over_soft_since: Option<Instant>,
    closed: bool,
    /// The connection waiting for frames ([`Mailbox::ready`]) and the one waiting for the
    /// mailbox to close while it writes ([`Mailbox::closed`]). Kept under the queue's own lock
    /// so a push costs one lock and at most one wake-up: delivery to 1,000 subscribers is
    /// 1,000 of these, and a general-purpose `Notify` (its own lock, a waiter list) measured
    /// about a quarter of the server's user-space time in fan-out.
    ready_waker: Option<Waker>,
    closed_waker: Option<Waker>,
    /// The subscriber's socket while its connection is parked with nothing of its own to
    /// write (see [`Mailbox::parked`]): a publisher then writes a frame straight to it.
    direct: Option<RawFd>,
}

/// A mailbox was closed: its client passed the pubsub output limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitReached;

/// A subscribed client's queue of messages (see the module docs).
pub struct Mailbox {
    pub client: u64,
    resp3: AtomicBool,
    queue: Mutex<Queue>,
    /// The hub's count of bytes written by publishers.
    direct_bytes: Arc<AtomicU64>,
}

/// Stores `cx`'s waker in `slot` unless the same task is already there.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl Mailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one frame; false if the mailbox is closed (the client is not counted as a
    /// receiver).
    fn push(&self, frame: Bytes, limit: OutputLimit) -> bool {
        let mut q = self.lock();
        if q.closed {
            return false;
        }
        let mut frame = frame;
        if let (Some(fd), true) = (q.direct, q.frames.is_empty()) {
            // SAFETY: `fd` is the subscriber's open socket: its connection set it under this
            // lock while parked and clears it under this lock before it writes or closes
            // anything (`Parked`'s poll and drop), so the descriptor cannot be closed or
            // reused while it is here. A non-blocking send of a buffer we own.
            let n = unsafe {
                libc::send(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n > 0 {
                self.direct_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            if n == frame.len() as isize {
                return true;
            }
            // The socket took part or nothing (full, or failing): the connection takes over
            // from the first byte not sent, in order.
            q.direct = None;
            if n > 0 {
                frame = frame.slice(n as usize..);
            }
        }
        q.bytes += frame.len() as u64;
        q.frames.push_back(frame);
        let over_hard = limit.hard > 0 && q.bytes > limit.hard;
        let over_soft = limit.soft > 0 && q.bytes > limit.soft;
        let soft_expired = match (over_soft, q.over_soft_since) {
            (false, _) => {
                q.over_soft_since = None;
                false
            }
            (true, None) => {
                q.over_soft_since = Some(Instant::now());
                limit.soft_seconds == 0
            }
            (true, Some(t)) => t.elapsed().as_secs() >= limit.soft_seconds,
        };
        let mut wake = [q.ready_waker.take(), None];
        if over_hard || soft_expired {
            q.closed = true;
            q.frames.clear();
            q.bytes = 0;
            wake[1] = q.closed_waker.take();
            static LOG: crate::logging::Throttle = crate::logging::Throttle::new();
            crate::logging::throttled(
                &LOG,
                format_args!(
                    "closing subscriber client {}: its unread messages passed the {} pubsub \
                     client-output-buffer-limit",
                    self.client,
                    if over_hard { "hard" } else { "soft" }
                ),
            );
        }
        drop(q);
        for w in wake.into_iter().flatten() {
            w.wake();
        }
        true
    }

    /// Resolves once the mailbox is closed for its limit: the connection stops waiting on a
    /// socket its client does not read and ends.
    pub async fn closed(&self) {
        std::future::poll_fn(|cx| {
            let mut q = self.lock();
            if q.closed {
                return Poll::Ready(());
            }
            register(&mut q.closed_waker, cx);
            Poll::Pending
        })
        .await
    }

    /// Waits, like [`ready`](Self::ready), with the connection's socket lent to publishers
    /// (`fd`, if the socket allows it) for as long as the wait lasts: an idle subscriber's
    /// message costs the publisher one `send` and no wake-up of the subscriber's task, as
    /// Redis writes from its event loop. The loan ends when the wait ends, completed or
    /// dropped (the connection then writes again itself, and closes only after that).
    pub fn parked(self: &Arc<Self>, fd: Option<RawFd>) -> Parked {
        Parked {
            mailbox: self.clone(),
            fd,
        }
    }

    /// Waits until there is something to write (or the mailbox closed).
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| {
            let mut q = self.lock();
            if q.closed || !q.frames.is_empty() {
                return Poll::Ready(());
            }
            register(&mut q.ready_waker, cx);
            Poll::Pending
        })
        .await
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Moves the queued frames into `out`; Err if the mailbox was closed for its limit.
    pub fn drain_into(&self, out: &mut BytesMut) -> Result<(), LimitReached> {
        let mut q = self.lock();
        if q.closed {
            return Err(LimitReached);
        }
        for f in q.frames.drain(..) {
            out.put_slice(&f);
        }
        q.bytes = 0;
        q.over_soft_since = None;
        Ok(())
    }
}

/// See [`Mailbox::parked`].
pub struct Parked {
    mailbox: Arc<Mailbox>,
    fd: Option<RawFd>,
}

impl std::future::Future for Parked {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = self.mailbox.lock();
        if q.closed || !q.frames.is_empty() {
            q.direct = None;
            return Poll::Ready(());
        }
        q.direct = self.fd;
        register(&mut q.ready_waker, cx);
        Poll::Pending
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.mailbox.lock().direct = None;
    }
}

/// Which kind of subscription: Redis keeps three namespaces.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Channel,
    Pattern,
    Shard,
}

impl Kind {
    /// The confirmation's name for (un)subscribing.
    pub fn verb(self, subscribe: bool) -> &'static [u8] {
        match (self, subscribe) {
            (Kind::Channel, true) => b"subscribe",
            (Kind::Channel, false) => b"unsubscribe",
            (Kind::Pattern, true) => b"psubscribe",
            (Kind::Pattern, false) => b"punsubscribe",
            (Kind::Shard, true) => b"ssubscribe",
            (Kind::Shard, false) => b"sunsubscribe",
        }
    }
}

type Subscribers = HashMap<Bytes, Vec<Arc<Mailbox>>>;

#[derive(Default)]
struct Maps {
    channels: Subscribers,
    patterns: Subscribers,
    shard: Subscribers,
}

impl Maps {
    fn of(&mut self, kind: Kind) -> &mut Subscribers {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard,
        }
    }
}

/// Every subscription of the server.
pub struct Hub {
    maps: RwLock<Maps>,
    /// `client-output-buffer-limit pubsub`, read at each publish.
    hard: std::sync::atomic::AtomicU64,
    soft: std::sync::atomic::AtomicU64,
    soft_seconds: std::sync::atomic::AtomicU64,
    /// `notify-keyspace-events` as flag bits.
    pub notify_flags: AtomicU32,
    /// Bytes publishers wrote to subscribers' sockets themselves (INFO's
    /// `total_net_output_bytes` adds them to what connections wrote).
    pub direct_bytes: Arc<AtomicU64>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            maps: RwLock::default(),
            hard: (32 << 20).into(),
            soft: (8 << 20).into(),
            soft_seconds: 60.into(),
            notify_flags: 0.into(),
            direct_bytes: Arc::default(),
        }
    }
}

/// Encodes a message frame: RESP2 array or RESP3 push.
fn frame(resp3: bool, parts: &[&[u8]]) -> Bytes {
    let mut b = BytesMut::with_capacity(16 + parts.iter().map(|p| p.len() + 16).sum::<usize>());
    b.put_u8(if resp3 { b'>' } else { b'*' });
    b.put_slice(parts.len().to_string().as_bytes());
    b.put_slice(b"\r\n");
    for p in parts {
        b.put_u8(b'$');
        b.put_slice(p.len().to_string().as_bytes());
        b.put_slice(b"\r\n");
        b.put_slice(p);
        b.put_slice(b"\r\n");
    }
    b.freeze()
}

/// A frame per protocol, encoded on first use.
struct Frames<'a> {
    parts: &'a [&'a [u8]],
    enc: [Option<Bytes>; 2],
}

impl Frames<'_> {
    fn get(&mut self, resp3: bool) -> Bytes {
        let parts = self.parts;
        self.enc[resp3 as usize]
            .get_or_insert_with(|| frame(resp3, parts))
            .clone()
    }
}

impl Hub {
    pub fn set_limit(&self, l: OutputLimit) {
        self.hard.store(l.hard, Ordering::Relaxed);
        self.soft.store(l.soft, Ordering::Relaxed);
        self.soft_seconds.store(l.soft_seconds, Ordering::Relaxed);
    }

    fn limit(&self) -> OutputLimit {
        OutputLimit {
            hard: self.hard.load(Ordering::Relaxed),
            soft: self.soft.load(Ordering::Relaxed),
            soft_seconds: self.soft_seconds.load(Ordering::Relaxed),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Maps> {
        self.maps.write().unwrap_or_else(|p| p.into_inner())
    }

    /// `PUBLISH` (or `SPUBLISH` with `shard`): the number of clients that received it.
    pub fn publish(&self, channel: &[u8], message: &[u8], shard: bool) -> usize {
        let limit = self.limit();
        let maps = self.read();
        let mut n = 0;
        let kind: &[u8] = if shard { b"smessage" } else { b"message" };
        let parts: [&[u8]; 3] = [kind, channel, message];
        let mut frames = Frames {
            parts: &parts,
            enc: [None, None],
        };
        let subs = if shard { &maps.shard } else { &maps.channels };
        if let Some(list) = subs.get(channel) {
            for m in list {
                n += usize::from(m.push(frames.get(m.resp3.load(Ordering::Relaxed)), limit));
            }
        }
        if !shard {
            for (pattern, list) in &maps.patterns {
                if !glob_match(pattern, channel, false) {
                    continue;
                }
                let parts: [&[u8]; 4] = [b"pmessage", pattern, channel, message];
                let mut pf = Frames {
                    parts: &parts,
                    enc: [None, None],
                };
                for m in list {
                    n += usize::from(m.push(pf.get(m.resp3.load(Ordering::Relaxed)), limit));
                }
            }
        }
        n
    }

    /// `PUBSUB CHANNELS` / `SHARDCHANNELS`: active channels matching `pattern`.
    pub fn channels(&self, pattern: Option<&[u8]>, shard: bool) -> Vec<Bytes> {
        let maps = self.read();
        let subs = if shard { &maps.shard } else { &maps.channels };
        subs.keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c, false)))
            .cloned()
            .collect()
    }

    /// `PUBSUB NUMSUB` / `SHARDNUMSUB`: subscribers of one channel.
    pub fn numsub(&self, channel: &[u8], shard: bool) -> usize {
        let maps = self.read();
        let subs = if shard { &maps.shard } else { &maps.channels };
        subs.get(channel)
            .map_or(0, |l| l.iter().filter(|m| !m.is_closed()).count())
    }

    /// Clients with at least one subscription (`INFO clients`).
    pub fn subscribers(&self) -> usize {
        let maps = self.read();
        let mut ids: Vec<u64> = [&maps.channels, &maps.patterns, &maps.shard]
            .iter()
            .flat_map(|m| m.values().flatten().map(|mb| mb.client))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    /// `PUBSUB NUMPAT`: patterns with at least one subscriber.
    pub fn numpat(&self) -> usize {
        self.read().patterns.len()
    }

    fn add(&self, kind: Kind, name: &Bytes, m: &Arc<Mailbox>) {
        self.write()
            .of(kind)
            .entry(name.clone())
            .or_default()
            .push(m.clone());
    }

    fn remove(&self, kind: Kind, name: &[u8], m: &Arc<Mailbox>) {
        let mut maps = self.write();
        let subs = maps.of(kind);
        if let Some(list) = subs.get_mut(name) {
            list.retain(|x| !Arc::ptr_eq(x, m));
            if list.is_empty() {
                subs.remove(name);
            }
        }
    }
}

/// One client's subscriptions; dropping it unsubscribes from everything.
pub struct Subscription {
    hub: Arc<Hub>,
    pub mailbox: Arc<Mailbox>,
    /// In subscription order, as Redis answers an UNSUBSCRIBE without arguments.
    channels: Vec<Bytes>,
    patterns: Vec<Bytes>,
    shard: Vec<Bytes>,
}

impl Subscription {
    pub fn new(hub: &Arc<Hub>, client: u64, proto: Proto) -> Subscription {
        Subscription {
            hub: hub.clone(),
            mailbox: Arc::new(Mailbox {
                client,
                resp3: AtomicBool::new(proto == Proto::Resp3),
                queue: Mutex::default(),
                direct_bytes: hub.direct_bytes.clone(),
            }),
            channels: Vec::new(),
            patterns: Vec::new(),
            shard: Vec::new(),
        }
    }

    fn list(&mut self, kind: Kind) -> &mut Vec<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard,
        }
    }

    /// The count a confirmation shows: channels and patterns together, shard channels apart.
    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Shard => self.shard.len(),
            _ => self.channels.len() + self.patterns.len(),
        }
    }

    /// Whether the client is in subscriber mode (RESP2 then allows only a few commands).
    pub fn active(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shard.is_empty())
    }

    pub fn set_proto(&self, proto: Proto) {
        self.mailbox
            .resp3
            .store(proto == Proto::Resp3, Ordering::Relaxed);
    }

    pub fn subscribe(&mut self, kind: Kind, name: &[u8]) {
        if self.list(kind).iter().any(|c| c == name) {
            return;
        }
        let name = Bytes::copy_from_slice(name);
        self.hub.add(kind, &name, &self.mailbox);
        self.list(kind).push(name);
    }

    /// Unsubscribes `name`; whether the client was subscribed to it.
    pub fn unsubscribe(&mut self, kind: Kind, name: &[u8]) -> bool {
        let list = self.list(kind);
        let Some(i) = list.iter().position(|c| c == name) else {
            return false;
        };
        list.remove(i);
        self.hub.remove(kind, name, &self.mailbox);
        true
    }

    /// Everything of one kind, in subscription order.
    pub fn names(&self, kind: Kind) -> Vec<Bytes> {
        match kind {
            Kind::Channel => self.channels.clone(),
            Kind::Pattern => self.patterns.clone(),
            Kind::Shard => self.shard.clone(),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
            for name in std::mem::take(self.list(kind)) {
                self.hub.remove(kind, &name, &self.mailbox);
            }
        }
    }
}

// ---- keyspace notifications ----

/// Event classes of `notify-keyspace-events` (Redis's `NOTIFY_*` bits).
pub mod class {
    pub const KEYSPACE: u32 = 1 << 0;
    pub const KEYEVENT: u32 = 1 << 1;
    pub const GENERIC: u32 = 1 << 2;
    pub const STRING: u32 = 1 << 3;
    pub const LIST: u32 = 1 << 4;
    pub const SET: u32 = 1 << 5;
    pub const HASH: u32 = 1 << 6;
    pub const ZSET: u32 = 1 << 7;
    pub const EXPIRED: u32 = 1 << 8;
    pub const EVICTED: u32 = 1 << 9;
    pub const STREAM: u32 = 1 << 10;
    pub const KEY_MISS: u32 = 1 << 11;
    pub const MODULE: u32 = 1 << 12;
    pub const NEW: u32 = 1 << 13;
    /// `A`: every class but key misses and new keys.
    pub const ALL: u32 =
        GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;
}

const LETTERS: &[(u8, u32)] = &[
    (b'g', class::GENERIC),
    (b'$', class::STRING),
    (b'l', class::LIST),
    (b's', class::SET),
    (b'h', class::HASH),
    (b'z', class::ZSET),
    (b'x', class::EXPIRED),
    (b'e', class::EVICTED),
    (b't', class::STREAM),
    (b'd', class::MODULE),
    (b'n', class::NEW),
];

/// Parses Redis's letters; None for an unknown letter.
pub fn parse_flags(s: &[u8]) -> Option<u32> {
    let mut f = 0;
    for &c in s {
        f |= match c {
            b'A' => class::ALL,
            b'K' => class::KEYSPACE,
            b'E' => class::KEYEVENT,
            b'm' => class::KEY_MISS,
            c => LETTERS.iter().find(|(l, _)| *l == c)?.1,
        };
    }
    Some(f)
}

/// The flags as `CONFIG GET` shows them (Redis's `keyspaceEventsFlagsToString`).
pub fn flags_to_string(f: u32) -> String {
    let mut s = String::new();
    if f & class::ALL == class::ALL {
        // Redis shows `n` only without `A` (it is still in effect).
        s.push('A');
    } else {
        for (l, bit) in LETTERS {
            if f & bit != 0 {
                s.push(*l as char);
            }
        }
    }
    if f & class::KEYSPACE != 0 {
        s.push('K');
    }
    if f & class::KEYEVENT != 0 {
        s.push('E');
    }
    if f & class::KEY_MISS != 0 {
        s.push('m');
    }
    s
}

/// Publishes keyspace notifications through the hub.
#[derive(Clone)]
pub struct Notifier(pub Arc<Hub>);

impl Notifier {
    /// Whether events of `class` are published at all (checked before building anything).
    #[inline]
    pub fn wants(&self, class: u32) -> bool {
        let f = self.0.notify_flags.load(Ordering::Relaxed);
        f & class != 0 && f & (class::KEYSPACE | class::KEYEVENT) != 0
    }

    /// Redis's `notifyKeyspaceEvent`.
    pub fn notify(&self, class: u32, event: &str, key: &[u8], db: usize) {
        let f = self.0.notify_flags.load(Ordering::Relaxed);
        if f & class == 0 {
            return;
        }
        if f & class::KEYSPACE != 0 {
            let mut ch = format!("__keyspace@{db}__:").into_bytes();
            ch.extend_from_slice(key);
            self.0.publish(&ch, event.as_bytes(), false);
        }
        if f & class::KEYEVENT != 0 {
            let ch = format!("__keyevent@{db}__:{event}");
            self.0.publish(ch.as_bytes(), key, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_as_redis_writes_them() {
        for (given, shown) in [
            ("KEA", "AKE"),
            ("Ex", "xE"),
            ("Kg$lshzxetd", "AK"),
            ("", ""),
            ("KEAnm", "AKEm"),
            ("nK", "nK"),
            ("hK", "hK"),
        ] {
            let f = parse_flags(given.as_bytes()).expect("valid");
            assert_eq!(flags_to_string(f), shown, "{given}");
        }
        assert_eq!(parse_flags(b"Kq"), None);
    }

    #[test]
    fn a_subscriber_that_does_not_read_is_cut_off_at_the_hard_limit() {
        let hub = Arc::new(Hub::default());
        hub.set_limit(OutputLimit {
            hard: 1000,
            soft: 0,
            soft_seconds: 0,
        });
        let mut s = Subscription::new(&hub, 1, Proto::Resp2);
        s.subscribe(Kind::Channel, b"c");
        for _ in 0..5 {
            assert_eq!(hub.publish(b"c", &[b'x'; 100], false), 1);
        }
        let mut out = BytesMut::new();
        assert!(s.mailbox.drain_into(&mut out).is_ok(), "under the limit");
        assert!(out.len() > 500);
        for _ in 0..20 {
            hub.publish(b"c", &[b'x'; 100], false);
        }
        assert!(
            s.mailbox.drain_into(&mut out).is_err(),
            "closed past the limit"
        );
        drop(s);
        assert_eq!(hub.numsub(b"c", false), 0, "dropping unsubscribes");
    }
}
