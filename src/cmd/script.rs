//! EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT (Redis's `eval.c`).
//!
//! The interpreter, its sandbox and how a script holds its keys are in `src/script/`; this
//! file parses the commands and gives Redis's replies and errors.
//!
//! With the migration router as the store (no embedded engine of its own), scripts cannot
//! run atomically across the two stores; only the lock release every session handler
//! sends is supported there, recognised by its text and run as the store's
//! compare-and-delete (`Store::del_if_equal`), which the router routes by stage.

use std::sync::Arc;

use super::args::{int, is, lossy};
use super::{CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::script::run::{self, Kill, Target};
use crate::script::{parse_sha, vm, Script};

/// A command's keys and the arguments after them.
pub type KeysAndArgs<'a> = (&'a [&'a [u8]], &'a [&'a [u8]]);

/// `numkeys` of EVAL/FCALL: the keys and the arguments after them.
pub fn split_keys<'a>(a: &'a [&'a [u8]], bad_number: &str) -> Result<KeysAndArgs<'a>, CmdError> {
    let numkeys = int(a[2]).map_err(|_| CmdError::msg(bad_number))?;
    if numkeys > (a.len() - 3) as i64 {
        return Err(CmdError::msg(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    if numkeys < 0 {
        return Err(CmdError::msg("ERR Number of keys can't be negative"));
    }
    let n = numkeys as usize;
    Ok((&a[3..3 + n], &a[3 + n..]))
}

/// Whether a queued EVAL/EVALSHA/FCALL (and `_RO`) may touch keys it does not declare, so
/// that the EXEC running it must hold every shard.
pub fn reaches_beyond_keys<S: Deployment>(
    server: &crate::server::Server<S>,
    id: Option<super::table::CmdId>,
    args: &[&[u8]],
) -> bool {
    use super::table::CmdId;
    let scripts = &server.scripts;
    let flags = match id {
        Some(CmdId::Eval | CmdId::EvalRo) => crate::script::shebang::parse(args[1]).ok(),
        Some(CmdId::EvalSha | CmdId::EvalShaRo) => parse_sha(args[1])
            .and_then(|s| scripts.get(&s))
            .map(|s| s.flags),
        Some(CmdId::FCall | CmdId::FCallRo) => scripts
            .libraries()
            .function(&lossy(args[1]))
            .map(|(f, _)| f),
        _ => return false,
    };
    flags.is_some_and(|f| run::needs_every_shard(scripts, f))
}

fn noscript() -> CmdError {
    CmdError::msg("NOSCRIPT No matching script. Please use EVAL.")
}

/// `EVAL script numkeys key... arg...` and its `SHA`/`_RO` forms.
pub async fn eval<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    a: &[&[u8]],
    by_sha: bool,
    read_only: bool,
) -> CmdResult {
    let (keys, argv) = split_keys(a, "ERR value is not an integer or out of range")?;
    let script: Arc<Script> = if by_sha {
        let sha = parse_sha(a[1]).ok_or_else(noscript)?;
        cx.server.scripts.get(&sha).ok_or_else(noscript)?
    } else {
        cx.server.scripts.add(a[1]).map_err(CmdError::Msg)?
    };
    if cx.server.store.engine().is_none() && native::is_lock_release(&script.body) {
        // The migration router runs the lock release as its compare-and-delete, routed by
        // stage like any write.
        return native::eval(cx, &script, keys, argv).await;
    }
    if cx.server.store.engine().is_none() {
        // Between two Redis-protocol stores, a script runs on the store its first key's
        // stage writes first, and its declared keys are mirrored (`migrate/typed.rs`). It
        // is sent as EVAL with its body, so neither store needs it cached.
        let name: &[u8] = if read_only { b"EVAL_RO" } else { b"EVAL" };
        let mut sent: Vec<&[u8]> = Vec::with_capacity(a.len());
        sent.push(name);
        sent.push(&script.body);
        sent.extend_from_slice(&a[2..]);
        if let Some(r) = super::route_migrating(cx, &sent, false).await {
            return r;
        }
        // Otherwise (a legacy store): only in stages with one store (`run`).
    }
    if script.lock_release && !read_only && keys.len() == 1 && !argv.is_empty() {
        return native::lock_release(cx, &script, keys[0], argv[0]);
    }
    if read_only && script.flags.declared && !script.flags.no_writes {
        return Err(CmdError::msg(
            "ERR Can not execute a script with write flag using *_ro command.",
        ));
    }
    run::run(
        cx,
        Target::Eval(&script),
        script.flags,
        keys,
        argv,
        read_only,
        a,
    )
}

const HELP: &[&str] = &[
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
];

/// `SCRIPT LOAD|EXISTS|FLUSH|KILL|HELP`.
pub fn script<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let sub = lossy(a[1]).to_ascii_lowercase();
    let scripts = &cx.server.scripts;
    match sub.as_str() {
        "load" if a.len() == 3 => {
            let s = scripts.add(a[2]).map_err(CmdError::Msg)?;
            // Redis compiles on load: a script that does not compile is refused now.
            vm::with(scripts, |vm| vm.script(&s.sha, &s.body).map(|_| ()))
                .map_err(CmdError::Msg)?
                .map_err(CmdError::Msg)?;
            cx.out.bulk(&s.sha);
        }
        "exists" if a.len() >= 3 => {
            cx.out.array(a.len() - 2);
            for sha in &a[2..] {
                let present = parse_sha(sha).is_some_and(|s| scripts.get(&s).is_some());
                cx.out.int(present as i64);
            }
        }
        "flush" if a.len() <= 3 => {
            if a.len() == 3 && !is(a[2], "async") && !is(a[2], "sync") {
                return Err(CmdError::msg(
                    "ERR SCRIPT FLUSH only support SYNC|ASYNC option",
                ));
            }
            scripts.flush();
            cx.out.ok();
        }
        "kill" if a.len() == 2 => match scripts.busy.kill(false) {
            Kill::Killed => cx.out.ok(),
            Kill::NotBusy => {
                return Err(CmdError::msg("NOTBUSY No scripts in execution right now."))
            }
            Kill::WrongKind => {
                return Err(CmdError::msg("NOTBUSY No scripts in execution right now."))
            }
            Kill::Unkillable => return Err(CmdError::msg(UNKILLABLE)),
        },
        "help" if a.len() == 2 => {
            cx.out.help(HELP);
        }
        "debug" if a.len() == 3 => {
            return Err(CmdError::msg(
                "ERR SCRIPT DEBUG is not supported by sessiond (Lua debugging needs a server that runs one script at a time)",
            ));
        }
        "load" | "exists" | "flush" | "kill" | "help" | "debug" => {
            return Err(CmdError::msg(format!(
                "ERR wrong number of arguments for 'script|{sub}' command"
            )));
        }
        _ => {
            return Err(CmdError::msg(format!(
                "ERR unknown subcommand '{}'. Try SCRIPT HELP.",
                lossy(a[1])
            )));
        }
    }
    Ok(())
}

/// Whether the engine may run this script natively: the lock release, starting on its
/// first line (so an error's line number is the interpreted script's).
pub fn is_native_lock_release(body: &[u8]) -> bool {
    body.first().is_some_and(|c| !c.is_ascii_whitespace()) && native::is_lock_release(body)
}

pub const UNKILLABLE: &str = "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.";

/// The lock-release script, run natively where no interpreter can run it atomically (the
/// migration router).
mod native {
    use super::*;

    /// `GET KEYS[1] == ARGV[1]` then `DEL KEYS[1]`: phpredis's (and Laravel's, Symfony
    /// Lock's, Redlock's) lock release.
    const LOCK_RELEASE: &str = r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end"#;

    /// Whitespace removed, quotes unified, lower-cased: formatting variants of one script
    /// compare equal.
    fn normalise(script: &[u8]) -> Vec<u8> {
        let mut v: Vec<u8> = script
            .iter()
            .filter(|c| !c.is_ascii_whitespace())
            .map(|&c| {
                if c == b'\'' {
                    b'"'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        while v.last() == Some(&b';') {
            v.pop();
        }
        v
    }

    pub fn is_lock_release(body: &[u8]) -> bool {
        normalise(body) == normalise(LOCK_RELEASE.as_bytes())
    }

    /// The engine's native lock release: what the interpreted script does (GET, compare,
    /// DEL), atomically under the key's shard, with the same replies: 1 or 0, and a key of
    /// another type answers the error GET raises in the script, with the script's place
    /// (the text starts on line 1, see [`super::is_native_lock_release`]). Measured against
    /// the interpreted script in BENCHMARKS ("Lua scripts").
    pub fn lock_release<S: Deployment>(
        cx: &mut Ctx<'_, '_, S>,
        script: &Script,
        key: &[u8],
        expected: &[u8],
    ) -> CmdResult {
        let Some(e) = cx.server.store.engine() else {
            return Err(CmdError::msg("ERR no engine"));
        };
        let (db, now) = (cx.db(), cx.now);
        let store = &cx.server.store;
        let outcome = e.atomically(Some(&[key]), || {
            let kind = crate::cmd::run_now(store.key_type(db, key, now));
            match kind {
                Some(Ok(Some(crate::store::KeyType::String)) | Ok(None)) => {
                    crate::cmd::run_now(store.del_if_equal(db, key, expected, now))
                        .unwrap_or(Ok(false))
                        .map(Some)
                }
                Some(Ok(Some(_))) => Ok(None),
                Some(Err(err)) => Err(err),
                None => Ok(Some(false)),
            }
        })?;
        match outcome {
            Some(deleted) => {
                if deleted {
                    cx.notify(crate::pubsub::class::GENERIC, "del", key);
                }
                cx.out.int(deleted as i64);
                Ok(())
            }
            None => Err(CmdError::msg(format!(
                "WRONGTYPE Operation against a key holding the wrong kind of value script: {}, on @user_script:1.",
                String::from_utf8_lossy(&script.sha)
            ))),
        }
    }

    pub async fn eval<S: Deployment>(
        cx: &mut Ctx<'_, '_, S>,
        script: &Script,
        keys: &[&[u8]],
        argv: &[&[u8]],
    ) -> CmdResult {
        if !is_lock_release(&script.body) {
            return Err(CmdError::msg(
                "ERR in migration mode sessiond runs only the lock-release script (if redis.call(\"get\",KEYS[1]) == ARGV[1] then return redis.call(\"del\",KEYS[1]) else return 0 end): other scripts cannot run atomically across two stores (see the README)",
            ));
        }
        let (Some(key), Some(expected)) = (keys.first(), argv.first()) else {
            return Err(CmdError::msg(
                "ERR the lock-release script needs 1 key and 1 argument",
            ));
        };
        let deleted = cx
            .store()
            .del_if_equal(cx.db(), key, expected, cx.now)
            .await?;
        cx.out.int(deleted as i64);
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn phpredis_lock_release_is_recognised_with_its_sha() {
            let s = super::LOCK_RELEASE.as_bytes();
            assert_eq!(
                &crate::script::sha1_hex(s)[..],
                b"b70c2384248f88e6b75b9f89241a180f856ad852"
            );
            assert!(super::is_lock_release(s));
            let symfony = b"if redis.call('GET', KEYS[1]) == ARGV[1] then\n  return redis.call('DEL', KEYS[1])\nelse\n  return 0\nend";
            assert!(super::is_lock_release(symfony));
            assert!(!super::is_lock_release(b"return redis.call('flushall')"));
        }
    }
}
