//! Every Redis type through a migration: hashes, sets, sorted sets, lists and the string
//! commands the `Store` trait does not name, between two Redis-protocol stores (the embedded
//! engine, a Redis server, Sentinel, Cluster).
//!
//! The string sessions of the first phase go through the router's semantic methods
//! (`router.rs`), which also serve the legacy stores. Everything else is routed here as a
//! *command*, by its key specification and its read/write flag (the command table), and run
//! on a side with [`CommandStore::command`], whose reply frame goes to the client unchanged.
//!
//! **Which store.** The command's first key decides the stage, as a session's id does for
//! strings. A ramp only ever holds two neighbouring stages, and the only neighbours that
//! serve from different stores are `shadow` and `live`, where both stores are written on
//! every change: running a multi-key command on the first key's store therefore sees every
//! key's latest value, once keys that were never copied forward are (below).
//!
//! **Writes: mirror the result, not the command.** A write runs on the authoritative store
//! first; its reply is the client's. Replaying it on the other store would be wrong for every
//! write that is not idempotent (HINCRBY, LPUSH, SPOP, ZINCRBY…) or that depends on what the
//! other store holds. Instead each key the command may change (its key spec is not `RO`) is
//! copied whole from the authoritative store to the other: `DUMP` and `PEXPIRETIME` there,
//! then `RESTORE … REPLACE ABSTTL` (or `DEL` when the key is gone). After every acknowledged
//! write both stores hold the same value, type and absolute expiry. Writes through this
//! router to one key (string ones too) are serialised by a striped lock held from the write
//! to the end of its mirror, so two clients' mirrors cannot land in the other store out of
//! order; a read that copies a key forward takes the same lock, so it cannot bring back a key
//! a write is deleting from both stores. The cost is
//! three more calls per written key (DUMP and PEXPIRETIME run concurrently): BENCHMARKS has
//! the figures.
//!
//! **Nobody is logged out.** Where the new store serves and the stage falls back (`live`,
//! `rampdown`), a key missing there is copied forward from the old store before a write
//! touches it (a partial hash must never be created and then mirrored over the whole one), and
//! before a read whose reply says "nothing" is trusted: the read runs first, and only a reply
//! with no data in it (nil, an empty or all-nil array, a zero count) costs the existence
//! check. The copy is `RESTORE` *without* `REPLACE`: a key written meanwhile is never
//! overwritten by its older self.
//!
//! **Shadow reads** (`shadow`, `live`) run on both stores at once and compare the frames,
//! as sets of elements for commands whose output order Redis does not define (SMEMBERS,
//! HGETALL…), not at all for random ones (SRANDMEMBER, SPOP) or DUMP (two servers encode
//! the same value differently). Results are counted per command family, with samples.
//!
//! What does not go through here: blocking commands, pub/sub, MULTI/EXEC and scripts during a
//! migration (their own rules, README "Migration"), and MOVE/COPY … DB (two databases).

use std::sync::atomic::{AtomicU64, Ordering};

use super::command::{Call, CommandStore, Frame};
use super::copy::{self, At};
use super::router::Router;
use super::stage::Side;
use crate::cmd::table::{self, Flags, Spec};
use crate::resp::value::{decode, Value};
use crate::store::{Store, StoreError, StoreResult};

/// Stripes of the per-key write lock.
const STRIPES: usize = 1024;

/// The striped lock that orders writes and their mirrors per key.
pub struct KeyLocks {
    stripes: Box<[tokio::sync::Mutex<()>]>,
}

impl Default for KeyLocks {
    fn default() -> Self {
        KeyLocks {
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl KeyLocks {
    /// Locks the stripes of `keys`, in index order (no deadlock between two commands).
    pub(super) async fn lock(&self, keys: &[&[u8]]) -> Held<'_> {
        let stripe = |k: &[u8]| crc32fast::hash(k) as usize % STRIPES;
        if let [key] = keys {
            // Nearly every session command names one key: no vectors.
            return Held::One {
                _guard: self.stripes[stripe(key)].lock().await,
            };
        }
        let mut idx: Vec<usize> = keys.iter().map(|k| stripe(k)).collect();
        idx.sort_unstable();
        idx.dedup();
        let mut guards = Vec::with_capacity(idx.len());
        for i in idx {
            guards.push(self.stripes[i].lock().await);
        }
        Held::Many { _guards: guards }
    }
}

/// Stripes held until dropped.
pub(super) enum Held<'a> {
    One {
        _guard: tokio::sync::MutexGuard<'a, ()>,
    },
    Many {
        _guards: Vec<tokio::sync::MutexGuard<'a, ()>>,
    },
}

/// Shadow comparisons of typed commands by command family: matched, differed.
pub struct FamilyCompare {
    pub counts: [[AtomicU64; 2]; crate::metrics::FAMILIES.len()],
}

impl Default for FamilyCompare {
    fn default() -> Self {
        FamilyCompare {
            counts: std::array::from_fn(|_| [AtomicU64::new(0), AtomicU64::new(0)]),
        }
    }
}

impl FamilyCompare {
    /// `INFO migration` lines, one per family with comparisons.
    pub fn info(&self) -> String {
        let mut out = String::new();
        for (name, [m, d]) in crate::metrics::FAMILIES.iter().zip(&self.counts) {
            let (m, d) = (m.load(Ordering::Relaxed), d.load(Ordering::Relaxed));
            if m + d > 0 {
                out.push_str(&format!("compare_family_{name}:match={m},differ={d}\r\n"));
            }
        }
        out
    }
}

pub use crate::deployment::{CommandRequest as Request, TransactionRequest as Transaction};

/// Where a command runs (see [`Router::route`]).
struct Route<'k> {
    plan: super::stage::Plan,
    write_both: bool,
    lagging: Vec<&'k [u8]>,
}

/// Whether a command may change its keys: its write flag, or a script that may write (the
/// table does not flag EVAL and FCALL as writes; their `_RO` forms cannot write).
fn writes(spec: &Spec) -> bool {
    table::is_write(spec) || matches!(spec.name, "eval" | "evalsha" | "fcall")
}

/// Why a command is not routed here, as the client's error; `None` when it is.
pub fn refusal(spec: &Spec, args: &[&[u8]]) -> Option<String> {
    let name = spec.name.split('|').next().unwrap_or(spec.name);
    let why = if spec.flags.has(Flags::BLOCKING) || name == "wait" {
        "it would wait on a store"
    } else if spec.flags.has(Flags::PUBSUB) {
        "pub/sub is not routed between two stores"
    } else if name == "watch" {
        "WATCH would have to watch two stores (MULTI/EXEC itself runs, see README)"
    } else if name == "move"
        || (name == "copy" && args.iter().any(|a| a.eq_ignore_ascii_case(b"db")))
    {
        "it spans two databases"
    } else {
        return None;
    };
    Some(format!(
        "ERR '{name}' is not available during a migration: {why} (README, Migration)"
    ))
}

fn other(s: Side) -> Side {
    match s {
        Side::Old => Side::New,
        Side::New => Side::Old,
    }
}

fn is_error(f: &[u8]) -> bool {
    f.first() == Some(&b'-') || f.first() == Some(&b'!')
}

/// Whether a reply holds no data: nil, zero, an empty aggregate, or one of only those. Such
/// a reply from a store that may lack the key is checked against the old store. Every read
/// in a fallback stage asks this, so it walks the frame's header lines and stops at the
/// first datum, allocating nothing.
fn holds_nothing(f: &[u8]) -> bool {
    let mut at = 0;
    while at < f.len() {
        let Some(end) = f[at..].windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let line = &f[at + 1..at + end];
        let next = at + end + 2;
        match f[at] {
            b'_' => at = next,
            b':' if line == b"0" => at = next,
            b'$' if line == b"-1" => at = next,
            b'*' | b'%' | b'~' => at = next,
            // A bulk string of any length, a non-zero integer, a simple string, a double…
            _ => return false,
        }
    }
    true
}

/// A frame as compared: its elements sorted when Redis leaves their order undefined (map
/// entries kept as pairs).
fn canonical(f: &[u8], unordered: bool) -> Option<Vec<Vec<u8>>> {
    if !unordered {
        return Some(vec![f.to_vec()]);
    }
    let Ok(Some((v, _))) = decode(f, u64::MAX) else {
        return None;
    };
    let mut items: Vec<Vec<u8>> = match v {
        Value::Array(items) => items.into_iter().map(|i| format!("{i:?}").into()).collect(),
        v => vec![format!("{v:?}").into()],
    };
    items.sort_unstable();
    Some(items)
}

impl<O: Store + CommandStore, N: Store + CommandStore> Router<O, N> {
    /// Runs `call` on one side.
    async fn on(&self, side: Side, call: Call<'_>) -> StoreResult<Frame> {
        match side {
            Side::Old => self.old.command(call).await,
            Side::New => self.new.command(call).await,
        }
    }

    /// Brings `key` on the non-authoritative side to what `from` holds.
    pub(super) async fn mirror_typed(&self, from: Side, at: At<'_>, key: &[u8]) -> StoreResult<()> {
        let copied = match from {
            Side::Old => copy::copy_key(&self.old, &self.new, at, key, true).await?,
            Side::New => copy::copy_key(&self.new, &self.old, at, key, true).await?,
        };
        if copied == copy::Copied::Missing {
            let del: [&[u8]; 2] = [b"DEL", key];
            match other(from) {
                Side::Old => copy::own(&self.old, at, &del, true).await?,
                Side::New => copy::own(&self.new, at, &del, true).await?,
            };
        }
        Ok(())
    }

    /// Copies `key` from the old store to the new one if the new one lacks it, never over a
    /// value written there meanwhile. Returns whether it copied.
    pub(super) async fn copy_forward_typed(&self, at: At<'_>, key: &[u8]) -> StoreResult<bool> {
        // Both questions at once: one round trip when there is nothing to copy.
        let (present, dumped) = tokio::join!(
            copy::exists(&self.new, at, key),
            copy::dump(&self.old, at, key)
        );
        if present? {
            return Ok(false);
        }
        let copied = match dumped {
            Ok(None) => return Ok(false),
            Ok(Some((payload, when))) => {
                match copy::restore(&self.new, at, key, &payload, when, false).await {
                    Ok(copy::Restored::Written) => copy::Copied::Written,
                    Ok(copy::Restored::Busy) => copy::Copied::Busy,
                    // A format the new store does not read (a hash with field TTLs): field
                    // by field.
                    Err(_) => copy::copy_key(&self.old, &self.new, at, key, false).await?,
                }
            }
            Err(_) => copy::copy_key(&self.old, &self.new, at, key, false).await?,
        };
        self.stats.fallback_reads.fetch_add(1, Ordering::Relaxed);
        match copied {
            copy::Copied::Written => {
                self.stats.copied_forward.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            // Written meanwhile: the newer value stays.
            copy::Copied::Busy | copy::Copied::Missing => Ok(false),
        }
    }

    /// Where a command (or transaction) naming `keys` runs: its first key's plan, whether
    /// any key's stage writes both stores, and the keys that may still be only in the old
    /// store while the new one serves.
    fn route<'k>(&self, keys: &[(&'k [u8], bool)]) -> Route<'k> {
        let setting = self.setting();
        let plan_of = |k: &[u8]| setting.stage_for(self.keys.session_id(k)).plan();
        let plan = plan_of(keys.first().map_or(&b""[..], |(k, _)| *k));
        let lagging = if plan.serve == Side::New {
            keys.iter()
                .filter(|(k, _)| {
                    let p = plan_of(k);
                    p.fall_back || p.serve == Side::Old
                })
                .map(|(k, _)| *k)
                .collect()
        } else {
            Vec::new()
        };
        Route {
            plan,
            write_both: keys.iter().any(|(k, _)| plan_of(k).write_both),
            lagging,
        }
    }

    /// Mirrors each key (once) from `from` to the other store; failures are counted.
    async fn mirror_all(&self, from: Side, at: At<'_>, keys: &[&[u8]]) {
        let mut seen: Vec<&[u8]> = Vec::new();
        for k in keys {
            if seen.contains(k) {
                continue;
            }
            seen.push(k);
            if self.mirror_typed(from, at, k).await.is_err() {
                self.stats
                    .secondary_write_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A keyless change to the stores' scripts (FUNCTION LOAD, DELETE, FLUSH, RESTORE): on
    /// the serving store, then on the other, so a function runs wherever its keys' stage
    /// sends it. The serving store's reply is the client's; the other's failure is counted.
    pub async fn everywhere(&self, req: Request<'_>) -> StoreResult<Frame> {
        let call = Call {
            client: req.client,
            db: req.db,
            key: None,
            args: req.args,
            write: true,
            resp3: req.resp3,
        };
        let serve = self.serving_side();
        let out = self.on(serve, call).await?;
        if !is_error(&out.0) {
            let r = self.on(other(serve), call).await;
            if !matches!(&r, Ok((f, _)) if !is_error(f)) {
                self.stats
                    .secondary_write_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(out)
    }

    /// `EXEC` of a transaction queued during a migration: the queue runs as one `MULTI …
    /// EXEC` on the store its first key's stage writes first (atomic there), under the
    /// keys' locks, after copying forward keys the new store may lack; then every key a
    /// queued write may have changed is mirrored to the other store. The reply is that
    /// store's `EXEC` reply.
    pub async fn transaction(&self, req: Transaction<'_>) -> StoreResult<Frame> {
        let mut keys: Vec<(&[u8], bool)> = Vec::new();
        let mut any_write = false;
        for args in req.commands {
            let Some(spec) = table::lookup(args[0]).map(|i| &table::commands()[i]) else {
                continue;
            };
            let eff = table::subcommand(spec, args).unwrap_or(spec);
            let ks = crate::cmd::keyspec::keys_with_access(eff, args);
            let w = writes(eff);
            if ks.is_empty() && !crate::cmd::multi::data_free(spec.id) {
                return Err(StoreError::Other(format!(
                    "EXECABORT Transaction discarded: during a migration a transaction runs only commands that name their keys, and '{}' does not",
                    eff.name
                )));
            }
            any_write |= w;
            keys.extend(ks.into_iter().map(|(k, c)| (k, c && w)));
        }
        let mut block: Vec<&[&[u8]]> = Vec::with_capacity(req.commands.len() + 2);
        block.push(&[b"MULTI"]);
        block.extend(req.commands.iter().map(|c| c.as_slice()));
        block.push(&[b"EXEC"]);
        let first = keys.first().map(|(k, _)| *k);
        let call = Call {
            client: req.client,
            db: req.db,
            key: first,
            args: &[],
            write: any_write,
            resp3: req.resp3,
        };
        let route = self.route(&keys);
        let serve = if first.is_some() {
            route.plan.serve
        } else {
            self.serving_side()
        };
        let all: Vec<&[u8]> = keys.iter().map(|(k, _)| *k).collect();
        let _held = self.locks.lock(&all).await;
        self.bring_forward((req.client, req.db), &route.lagging, true)
            .await;
        let out = match serve {
            Side::Old => self.old.block(call, &block).await?,
            Side::New => self.new.block(call, &block).await?,
        };
        // `*-1`/`_`: not run (nothing changed); an error: discarded.
        let ran = out.0.first() == Some(&b'*') && !out.0.starts_with(b"*-1");
        if ran && any_write && route.write_both {
            let changed: Vec<&[u8]> = keys.iter().filter(|(_, c)| *c).map(|(k, _)| *k).collect();
            self.mirror_all(serve, (req.client, req.db), &changed).await;
        }
        Ok(out)
    }

    /// Copies forward every key that may be missing in the new store; whether any was.
    /// `locked`: the caller holds the keys' write locks (a write); a read takes them here, so
    /// a copy cannot bring back a key a write is deleting from both stores.
    async fn bring_forward(&self, at: At<'_>, keys: &[&[u8]], locked: bool) -> bool {
        let _held = if locked {
            None
        } else {
            Some(self.locks.lock(keys).await)
        };
        let mut copied = false;
        for k in keys {
            match self.copy_forward_typed(at, k).await {
                Ok(c) => copied |= c,
                Err(_) => {
                    self.stats
                        .secondary_write_errors
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        copied
    }

    /// Routes one typed command (see the module comment) and returns its reply frame.
    pub async fn command<'a>(&self, req: Request<'a>) -> StoreResult<Frame> {
        let spec = req.spec;
        let keys = crate::cmd::keyspec::keys_with_access(spec, req.args);
        let write = writes(spec);
        let call = |key: Option<&'a [u8]>| Call {
            client: req.client,
            db: req.db,
            key,
            args: req.args,
            write,
            resp3: req.resp3,
        };
        let Some(&(first, _)) = keys.first() else {
            if write {
                return Err(StoreError::Other(format!(
                    "ERR '{}' changes no key it names, so the migration router cannot mirror it",
                    spec.name
                )));
            }
            return self.on(self.serving_side(), call(None)).await;
        };
        let route = self.route(&keys);
        let plan = route.plan;
        let lagging = route.lagging;
        if write {
            // One key (nearly every session write): slices on the stack, no vectors.
            let one: [&[u8]; 1];
            let (all_keys, changed_keys): (Vec<&[u8]>, Vec<&[u8]>);
            let (all, changed): (&[&[u8]], &[&[u8]]) = match keys.as_slice() {
                [(k, writes)] => {
                    one = [*k];
                    (&one, if *writes { &one } else { &[] })
                }
                _ => {
                    all_keys = keys.iter().map(|(k, _)| *k).collect();
                    changed_keys = keys.iter().filter(|(_, c)| *c).map(|(k, _)| *k).collect();
                    (&all_keys, &changed_keys)
                }
            };
            let _held = self.locks.lock(all).await;
            self.bring_forward((req.client, req.db), &lagging, true)
                .await;
            let out = self.on(plan.serve, call(Some(first))).await?;
            if route.write_both && !is_error(&out.0) {
                self.mirror_all(plan.serve, (req.client, req.db), changed)
                    .await;
            }
            return Ok(out);
        }
        let compare = plan.compare
            && self.sampled()
            && !spec.has_tip("nondeterministic_output")
            && !spec.name.eq_ignore_ascii_case("dump");
        // When the old store was read too and found nothing either, there is nothing to
        // bring forward.
        let mut old_empty = false;
        let mut out = if compare {
            let (served, shadow) = tokio::join!(
                self.on(plan.serve, call(Some(first))),
                self.on(other(plan.serve), call(Some(first)))
            );
            let (old, new) = match plan.serve {
                Side::Old => (&served, &shadow),
                Side::New => (&shadow, &served),
            };
            self.compared_frames(spec, first, old, new);
            old_empty = matches!(old, Ok((f, _)) if holds_nothing(f));
            served?
        } else {
            self.on(plan.serve, call(Some(first))).await?
        };
        if !lagging.is_empty()
            && !old_empty
            && holds_nothing(&out.0)
            && self
                .bring_forward((req.client, req.db), &lagging, false)
                .await
        {
            out = self.on(plan.serve, call(Some(first))).await?;
        }
        Ok(out)
    }

    /// The store keyless commands read from.
    fn serving_side(&self) -> Side {
        let s = self.setting();
        s.stage.plan().serve
    }

    fn compared_frames(
        &self,
        spec: &Spec,
        key: &[u8],
        old: &StoreResult<Frame>,
        new: &StoreResult<Frame>,
    ) {
        let c = &self.stats.compare;
        let family = &self.stats.by_family.counts[spec.family.min(crate::metrics::UNKNOWN)];
        let unordered = spec.has_tip("nondeterministic_output_order");
        let kind = match (old, new) {
            (Ok((a, _)), Ok((b, _))) => {
                // Equal bytes first; then whether one side is empty (cheap, and the common
                // difference while the new store fills); only then a sorted comparison of
                // two replies that both hold something.
                let (a_empty, b_empty) = match a == b {
                    true => (true, true),
                    false => (holds_nothing(a), holds_nothing(b)),
                };
                let same = a == b
                    || (a_empty == b_empty
                        && unordered
                        && canonical(a, true) == canonical(b, true));
                if same {
                    c.matched.fetch_add(1, Ordering::Relaxed);
                    family[0].fetch_add(1, Ordering::Relaxed);
                    return;
                }
                match (a_empty, b_empty) {
                    (false, true) => {
                        c.missing_in_new.fetch_add(1, Ordering::Relaxed);
                        "missing-in-new"
                    }
                    (true, false) => {
                        c.missing_in_old.fetch_add(1, Ordering::Relaxed);
                        "missing-in-old"
                    }
                    _ => {
                        c.mismatched.fetch_add(1, Ordering::Relaxed);
                        "mismatch"
                    }
                }
            }
            _ => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                "error"
            }
        };
        family[1].fetch_add(1, Ordering::Relaxed);
        self.stats
            .sample(spec.name, kind, self.keys.session_id(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_replies() {
        for f in [
            &b"$-1\r\n"[..],
            b"_\r\n",
            b":0\r\n",
            b"*0\r\n",
            b"*-1\r\n",
            b"*2\r\n$-1\r\n$-1\r\n",
            b"*2\r\n:0\r\n:0\r\n",
            b"%0\r\n",
        ] {
            assert!(holds_nothing(f), "{}", String::from_utf8_lossy(f));
        }
        for f in [
            &b"$0\r\n\r\n"[..],
            b"$1\r\nx\r\n",
            b":1\r\n",
            b"+OK\r\n",
            b"*2\r\n$-1\r\n$1\r\nx\r\n",
            b"*1\r\n:1\r\n",
            b"-WRONGTYPE x\r\n",
        ] {
            assert!(!holds_nothing(f), "{}", String::from_utf8_lossy(f));
        }
    }

    #[test]
    fn unordered_replies_compare_as_sets() {
        let a = b"*2\r\n$1\r\na\r\n$1\r\nb\r\n";
        let b = b"*2\r\n$1\r\nb\r\n$1\r\na\r\n";
        assert_eq!(canonical(a, true), canonical(b, true));
        assert_ne!(canonical(a, false), canonical(b, false));
    }

    #[test]
    fn refusals() {
        let t = |args: &[&str]| {
            let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
            let i = table::lookup(a[0]).expect("known");
            let spec =
                table::subcommand(&table::commands()[i], &a).unwrap_or(&table::commands()[i]);
            refusal(spec, &a)
        };
        assert!(t(&["blpop", "k", "0"]).is_some());
        assert!(t(&["subscribe", "c"]).is_some());
        assert!(t(&["watch", "k"]).is_some());
        assert!(t(&["multi"]).is_none());
        assert!(t(&["move", "k", "1"]).is_some());
        assert!(t(&["copy", "a", "b", "DB", "1"]).is_some());
        assert!(t(&["copy", "a", "b"]).is_none());
        assert!(t(&["hset", "k", "f", "v"]).is_none());
        assert!(t(&["zadd", "k", "1", "m"]).is_none());
    }
}
