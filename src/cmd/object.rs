//! Introspection of one key: `OBJECT` and `MEMORY USAGE`. Looking does not count as an access
//! (no keyspace hit, no LRU refresh), as in Redis.

use super::args::{int, is};
use super::hashes::engine;
use super::{CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// `OBJECT ENCODING|FREQ|IDLETIME|REFCOUNT key` and `OBJECT HELP`.
pub async fn object<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let sub = a[1];
    if is(sub, "help") && a.len() == 2 {
        cx.out.help(OBJECT_HELP);
        return Ok(());
    }
    let known = ["encoding", "freq", "idletime", "refcount"];
    let Some(which) = known.iter().find(|k| is(sub, k)) else {
        return Err(CmdError::msg(format!(
            "ERR unknown subcommand '{}'. Try OBJECT HELP.",
            String::from_utf8_lossy(sub)
        )));
    };
    if a.len() != 3 {
        return Err(CmdError::msg(format!(
            "ERR wrong number of arguments for 'object|{which}' command"
        )));
    }
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let out = &mut *cx.out;
    e.peek(db, a[2], now, |k, lru_now| {
        let Some(k) = k else {
            out.null();
            return Ok(());
        };
        match *which {
            "encoding" => out.bulk(k.encoding().as_bytes()),
            "idletime" => out.int(i64::from(k.idle_secs(lru_now))),
            "refcount" => {
                // Redis shares the integers 0..9999 between keys (refcount INT_MAX).
                let shared = k
                    .string()
                    .and_then(|s| crate::resp::parse::parse_i64(&s.bytes()))
                    .is_some_and(|n| (0..10_000).contains(&n));
                out.int(if shared { i64::from(i32::MAX) } else { 1 });
            }
            _ => {
                return Err(CmdError::msg(
                    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
                ))
            }
        }
        Ok(())
    })
}

/// `MEMORY USAGE key [SAMPLES count]`: the bytes the key costs in sessiond (its record, its
/// collection, its bucket slot); other `MEMORY` subcommands answer as Redis's help does.
pub async fn memory<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    if !is(a[1], "usage") {
        return Err(CmdError::msg(format!(
            "ERR unknown subcommand '{}'. Try MEMORY HELP.",
            String::from_utf8_lossy(a[1])
        )));
    }
    if a.len() < 3 {
        return Err(CmdError::msg(
            "ERR wrong number of arguments for 'memory|usage' command",
        ));
    }
    let mut j = 3;
    while j < a.len() {
        if is(a[j], "samples") && j + 1 < a.len() {
            if int(a[j + 1])? < 0 {
                return Err(CmdError::Syntax);
            }
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let out = &mut *cx.out;
    e.peek(db, a[2], now, |k, _| match k {
        None => out.null(),
        Some(k) => out.int(k.footprint() as i64),
    });
    Ok(())
}
