//! Transactions on the embedded engine (Redis's `multi.c`): MULTI, EXEC, DISCARD, WATCH,
//! UNWATCH.
//!
//! Between `MULTI` and `EXEC` a client's commands are checked as Redis checks them (unknown
//! command, arity, authentication, commands not allowed in a transaction) and queued: each
//! gets `+QUEUED`, or an error that makes the `EXEC` fail with `EXECABORT`. `EXEC` runs the
//! queue as one atomic block (`engine/txn.rs`): the shards of every key the queued commands
//! and the `WATCH`ed keys name (from the command table's key specs; every shard if a queued
//! command reaches beyond its keys, as FLUSHALL or KEYS do) are held for the whole block, its
//! changes are one log frame, and the watches are checked inside it, so nothing can change a
//! watched key between the check and the run.

use super::hashes::engine;
use super::table::{self, CmdId, Flags};
use super::{execute_checked_at, ClientState, CmdError, CmdResult, Ctx, Flow};
use crate::deployment::Deployment;
use crate::engine::Watches;
use crate::resp::Reply;
use crate::server::Server;

/// A queue's buffers are kept from one transaction to the next (a client that sends a
/// transaction per request allocates nothing to queue it) unless they grew past these:
/// argument bytes, and arguments or commands.
const KEEP_QUEUE_BYTES: usize = 64 * 1024;
const KEEP_QUEUE_ARGS: usize = 4096;

/// The commands queued between MULTI and EXEC, as three flat buffers: every argument's bytes
/// one after another, each argument's range in them, and each command's place in the command
/// table with its range of arguments.
#[derive(Debug, Default)]
struct Queue {
    data: Vec<u8>,
    args: Vec<(usize, usize)>,
    cmds: Vec<(usize, std::ops::Range<usize>)>,
    /// EXEC's working vectors (the argument slices, the keys, their positions), empty and
    /// kept for the next EXEC so that it allocates none. Boxed: a client's state, which
    /// holds the queue, is part of every connection's future (see `serve_connection`).
    spare: Option<Box<Spare>>,
}

#[derive(Debug, Default)]
struct Spare {
    argv: Vec<&'static [u8]>,
    keys: Vec<&'static [u8]>,
    positions: Vec<usize>,
}

/// An empty vector of slices on `v`'s allocation, for another lifetime: how EXEC keeps
/// vectors of slices into a queue that is gone by the next EXEC. (Nothing is mapped, so the
/// collect reuses the allocation in place.)
fn relabel<'b>(mut v: Vec<&[u8]>) -> Vec<&'b [u8]> {
    v.clear();
    v.into_iter().map(|_| -> &'b [u8] { &[] }).collect()
}

impl Queue {
    fn push(&mut self, idx: usize, argv: &[&[u8]]) {
        let first = self.args.len();
        for a in argv {
            let at = self.data.len();
            self.data.extend_from_slice(a);
            self.args.push((at, self.data.len()));
        }
        self.cmds.push((idx, first..self.args.len()));
    }

    /// Every queued argument as a slice, in order, in `out`; [`Queue::cmds`] ranges index it.
    fn argv<'q>(&'q self, mut out: Vec<&'q [u8]>) -> Vec<&'q [u8]> {
        out.extend(self.args.iter().map(|&(a, b)| &self.data[a..b]));
        out
    }

    fn clear(&mut self) {
        if self.data.capacity() > KEEP_QUEUE_BYTES
            || self.args.capacity() > KEEP_QUEUE_ARGS
            || self.cmds.capacity() > KEEP_QUEUE_ARGS
            || self.spare.as_ref().is_some_and(|s| {
                s.argv.capacity() > KEEP_QUEUE_ARGS
                    || s.keys.capacity() > KEEP_QUEUE_ARGS
                    || s.positions.capacity() > KEEP_QUEUE_ARGS
            })
        {
            *self = Queue::default();
        } else {
            self.data.clear();
            self.args.clear();
            self.cmds.clear();
        }
    }
}

/// A client's transaction state.
#[derive(Debug, Default)]
pub struct Transaction {
    /// Between MULTI and EXEC/DISCARD.
    multi: bool,
    /// The queued commands (empty outside MULTI).
    queue: Queue,
    /// Bytes of the queued arguments (bounded by `client-query-buffer-limit`).
    queued_bytes: u64,
    /// A command failed to queue: EXEC answers EXECABORT.
    aborted: bool,
    watches: Option<Watches>,
}

impl Transaction {
    pub fn in_multi(&self) -> bool {
        self.multi
    }

    /// Forgets the queue and every watch (EXEC, DISCARD, RESET).
    pub fn reset(&mut self) {
        self.multi = false;
        self.queue.clear();
        self.queued_bytes = 0;
        self.aborted = false;
        if let Some(w) = self.watches.as_mut() {
            w.clear();
        }
    }

    /// Takes the queue out (EXEC), leaving the transaction ended; give it back with
    /// [`Transaction::give_back`] so its buffers are reused.
    fn take(&mut self) -> Option<Queue> {
        if !self.multi {
            return None;
        }
        self.multi = false;
        Some(std::mem::take(&mut self.queue))
    }

    fn give_back(&mut self, mut q: Queue) {
        q.clear();
        self.queue = q;
    }
}

/// Commands that run at once even inside MULTI (Redis's `processCommand` list).
fn runs_inside(id: Option<CmdId>) -> bool {
    matches!(
        id,
        Some(
            CmdId::Exec | CmdId::Discard | CmdId::Multi | CmdId::Watch | CmdId::Quit | CmdId::Reset
        )
    )
}

/// Commands sessiond does not queue: they may wait (a failed AUTH's delay, SAVE and SHUTDOWN
/// on the disk), and a transaction holds its shards while it runs.
fn waits(id: Option<CmdId>) -> bool {
    matches!(
        id,
        Some(CmdId::Auth | CmdId::Hello | CmdId::Save | CmdId::Shutdown)
    )
}

/// Checks and queues one command of a client inside MULTI; returns None for the commands
/// that run at once instead (the caller executes them).
pub fn queue<S: Deployment>(
    server: &Server<S>,
    client: &mut ClientState,
    args: &[&[u8]],
    out: &mut Reply<'_>,
) -> Option<Flow> {
    let idx = table::lookup(args[0]);
    let id = idx.and_then(|i| table::commands()[i].id);
    if runs_inside(id) {
        return None;
    }
    let checked = match idx {
        Some(i) => super::check_known(server, client, i, args),
        None => Err(super::unknown_command_error(args)),
    };
    let checked = checked.and_then(|spec| {
        if spec.flags.has(Flags::NO_MULTI) || waits(spec.id) {
            Err("ERR Command not allowed inside a transaction".to_string())
        } else {
            Ok(())
        }
    });
    let tx = &mut client.tx;
    let size: u64 = args.iter().map(|a| a.len() as u64 + 16).sum();
    let limit = server
        .settings
        .client_query_buffer_limit
        .load(std::sync::atomic::Ordering::Relaxed);
    let checked = checked.and_then(|()| {
        if tx.queued_bytes + size > limit {
            Err(format!(
                "ERR transaction too large: its queued commands exceed client-query-buffer-limit ({limit} bytes)"
            ))
        } else {
            Ok(())
        }
    });
    match checked {
        Err(e) => {
            tx.aborted = true;
            out.error(&e);
        }
        Ok(()) => {
            tx.queued_bytes += size;
            if let Some(i) = idx {
                tx.queue.push(i, args);
            }
            out.simple("QUEUED");
        }
    }
    Some(Flow::Continue)
}

pub fn multi<S: Deployment>(cx: &mut Ctx<'_, '_, S>) -> CmdResult {
    engine(cx)?;
    begin(cx)
}

/// MULTI's work once the store is known to run transactions.
pub fn begin<S: Deployment>(cx: &mut Ctx<'_, '_, S>) -> CmdResult {
    if cx.client.tx.in_multi() {
        return Err(CmdError::msg("ERR MULTI calls can not be nested"));
    }
    cx.client.tx.multi = true;
    cx.out.ok();
    Ok(())
}

pub fn discard<S: Deployment>(cx: &mut Ctx<'_, '_, S>) -> CmdResult {
    if !cx.client.tx.in_multi() {
        return Err(CmdError::msg("ERR DISCARD without MULTI"));
    }
    cx.client.tx.reset();
    cx.out.ok();
    Ok(())
}

pub fn watch<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let e = engine(cx)?;
    if cx.client.tx.in_multi() {
        return Err(CmdError::msg("ERR WATCH inside MULTI is not allowed"));
    }
    let (db, now) = (cx.db(), cx.now);
    let w = cx.client.tx.watches.get_or_insert_with(|| Watches::new(e));
    for k in &a[1..] {
        w.add(db, k, now);
    }
    cx.out.ok();
    Ok(())
}

pub fn unwatch<S: Deployment>(cx: &mut Ctx<'_, '_, S>) -> CmdResult {
    if let Some(w) = cx.client.tx.watches.as_mut() {
        w.clear();
    }
    cx.out.ok();
    Ok(())
}

/// Commands that touch no shard data, so a block holding only its keys' shards may run
/// them (PUBLISH names a channel, not a key). Any other keyless command makes the block
/// hold every shard; a script holding only its keys may not run it.
pub(crate) fn data_free(id: Option<CmdId>) -> bool {
    matches!(
        id,
        Some(
            CmdId::Ping
                | CmdId::Echo
                | CmdId::Time
                | CmdId::Select
                | CmdId::Command
                | CmdId::Publish
                | CmdId::SPublish
        )
    )
}

/// EXEC during a migration: the queue goes to the router (`migrate/typed.rs`), which runs
/// it as one MULTI/EXEC on the authoritative store and mirrors the keys it changed.
pub async fn exec_migrating<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    m: &dyn crate::deployment::MigrationControl,
) -> CmdResult {
    let Some(queued) = cx.client.tx.take() else {
        return Err(CmdError::msg("ERR EXEC without MULTI"));
    };
    let aborted = cx.client.tx.aborted;
    cx.client.tx.reset();
    if aborted {
        return Err(CmdError::msg(
            "EXECABORT Transaction discarded because of previous errors.",
        ));
    }
    let argv = queued.argv(Vec::new());
    let argvs: Vec<Vec<&[u8]>> = queued
        .cmds
        .iter()
        .map(|(_, r)| argv[r.clone()].to_vec())
        .collect();
    for args in &argvs {
        let spec = table::lookup(args[0]).map(|i| &table::commands()[i]);
        if let Some(spec) = spec {
            let eff = table::subcommand(spec, args).unwrap_or(spec);
            if let Some(e) = crate::migrate::typed::refusal(eff, args) {
                return Err(CmdError::Msg(format!(
                    "EXECABORT Transaction discarded: {}",
                    e.trim_start_matches("ERR ")
                )));
            }
            // The user's rules changed since the command was queued: the transaction runs
            // on the store as one block, so it is refused whole (the engine refuses only
            // that command, as Redis).
            if let Err(denied) = super::acl_check(cx.server, cx.client, spec, args, "multi") {
                return Err(CmdError::Msg(format!(
                    "EXECABORT Transaction discarded because of: {}",
                    denied.changed_since_queued()
                )));
            }
        }
    }
    let req = crate::deployment::TransactionRequest {
        client: &cx.client.handle,
        db: cx.client.db,
        commands: &argvs,
        resp3: cx.client.proto == crate::resp::reply::Proto::Resp3,
    };
    let (frame, wrote) = m.transaction(req).await?;
    if wrote {
        cx.client.wrote = true;
    }
    cx.out.buffer().extend_from_slice(&frame);
    Ok(())
}

pub async fn exec<S: Deployment>(cx: &mut Ctx<'_, '_, S>) -> CmdResult {
    let e = engine(cx)?;
    let Some(mut queued) = cx.client.tx.take() else {
        return Err(CmdError::msg("ERR EXEC without MULTI"));
    };
    if cx.client.tx.aborted {
        cx.client.tx.reset();
        return Err(CmdError::msg(
            "EXECABORT Transaction discarded because of previous errors.",
        ));
    }
    let mut spare = queued.spare.take().unwrap_or_default();
    let mut positions = std::mem::take(&mut spare.positions);
    let argv = queued.argv(relabel(std::mem::take(&mut spare.argv)));
    // The shards to hold: every key named, or all of them.
    let mut keys: Option<Vec<&[u8]>> = Some(relabel(std::mem::take(&mut spare.keys)));
    for (idx, r) in &queued.cmds {
        let (spec, args) = (&table::commands()[*idx], &argv[r.clone()]);
        let Some(all) = keys.as_mut() else { break };
        let before = all.len();
        super::keyspec::push_keys(
            table::subcommand(spec, args).unwrap_or(spec),
            args,
            &mut positions,
            all,
        );
        if (all.len() == before && !data_free(spec.id))
            || super::script::reaches_beyond_keys(cx.server, spec.id, args)
        {
            keys = None;
        }
    }
    let watches = cx.client.tx.watches.take();
    if let (Some(all), Some(w)) = (keys.as_mut(), watches.as_ref()) {
        all.extend(w.keys());
    }
    let server = cx.server;
    let now = cx.now;
    let client = &mut *cx.client;
    let out = &mut *cx.out;
    client.in_exec = true;
    let ran = e.atomically(keys.as_deref(), || {
        if watches.as_ref().is_some_and(|w| w.broken(now)) {
            return false;
        }
        out.array(queued.cmds.len());
        for (idx, r) in &queued.cmds {
            let (spec, args) = (&table::commands()[*idx], &argv[r.clone()]);
            // Permissions were checked when the command was queued; checked again here in
            // case the user's rules changed since (as Redis does).
            if let Err(denied) = super::acl_check(server, client, spec, args, "multi") {
                out.error(&denied.changed_since_queued());
                continue;
            }
            let fut = execute_checked_at(server, client, spec, args, out, now);
            if super::run_now(fut).is_none() {
                // Not reachable: commands that can wait are refused when queued.
                out.error("ERR command could not run inside the transaction");
            }
        }
        true
    });
    client.in_exec = false;
    *spare = Spare {
        argv: relabel(argv),
        keys: keys.map(relabel).unwrap_or_default(),
        positions,
    };
    queued.spare = Some(spare);
    cx.client.tx.watches = watches;
    cx.client.tx.reset();
    cx.client.tx.give_back(queued);
    if !ran {
        cx.out.null_array();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_gives_each_command_its_arguments_and_keeps_small_buffers() {
        let mut q = Queue::default();
        q.push(3, &[b"HSET", b"k", b"f", b"v"]);
        q.push(7, &[b"PEXPIRE", b"k", b"100"]);
        q.push(9, &[b"PING"]);
        let argv = q.argv(Vec::new());
        let cmds: Vec<(usize, Vec<&[u8]>)> = q
            .cmds
            .iter()
            .map(|(i, r)| (*i, argv[r.clone()].to_vec()))
            .collect();
        assert_eq!(
            cmds,
            vec![
                (3, vec![&b"HSET"[..], b"k", b"f", b"v"]),
                (7, vec![&b"PEXPIRE"[..], b"k", b"100"]),
                (9, vec![&b"PING"[..]]),
            ]
        );
        drop(argv);
        let cap = q.data.capacity();
        q.clear();
        assert!(q.cmds.is_empty() && q.args.is_empty() && q.data.is_empty());
        assert_eq!(q.data.capacity(), cap, "a small queue's buffer is kept");

        // A large transaction's buffers are not kept for the rest of the connection.
        let big = vec![b'x'; KEEP_QUEUE_BYTES + 1];
        q.push(1, &[b"SET", b"k", &big]);
        q.clear();
        assert!(q.data.capacity() <= KEEP_QUEUE_BYTES);
        // Nor one of many small commands.
        for _ in 0..=KEEP_QUEUE_ARGS {
            q.push(2, &[b"PING"]);
        }
        q.clear();
        assert!(q.args.capacity() <= KEEP_QUEUE_ARGS && q.cmds.capacity() <= KEEP_QUEUE_ARGS);
    }

    #[test]
    fn exec_takes_the_queue_and_ends_the_transaction() {
        let mut tx = Transaction::default();
        assert!(tx.take().is_none(), "no queue outside MULTI");
        tx.multi = true;
        tx.queue.push(1, &[b"GET", b"k"]);
        let q = tx.take().expect("in MULTI");
        assert!(!tx.in_multi());
        assert_eq!(q.cmds.len(), 1);
        tx.give_back(q);
        assert!(tx.queue.cmds.is_empty(), "given back empty");
    }
}
