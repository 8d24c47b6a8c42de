//! EVAL/EVALSHA/SCRIPT for the session scripts that real session handlers send.
//!
//! sessiond does not embed Lua (see docs/ARCHITECTURE.md, "Scripts"). Session handlers use
//! a handful of fixed scripts; the one that matters is the lock release of phpredis (and
//! Laravel, Symfony Lock, Redlock clients):
//!
//! ```lua
//! if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end
//! ```
//!
//! A script is recognised by its *normalised* text (whitespace removed, quotes unified,
//! lower-cased), so formatting variants of the same script are accepted, and executed natively
//! and atomically by the store ([`Store::del_if_equal`]). Script caching behaves as Redis's:
//! `EVALSHA` of a script never loaded answers `NOSCRIPT`, so clients that fall back to `EVAL`
//! (phpredis does) take the same path as against Redis. Anything else is refused with a clear
//! error instead of being run wrongly.

use std::collections::HashMap;
use std::sync::Mutex;

use super::args::{int, is, lossy};
use super::{CmdError, CmdResult, Ctx};
use crate::store::Store;

/// Scripts sessiond can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// `GET KEYS[1] == ARGV[1]` then `DEL KEYS[1]`: 1 if deleted, else 0.
    DeleteIfEqual,
}

const KNOWN: &[(&str, Known)] = &[(
    r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end"#,
    Known::DeleteIfEqual,
)];

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

fn recognise(script: &[u8]) -> Option<Known> {
    let n = normalise(script);
    KNOWN
        .iter()
        .find(|(text, _)| normalise(text.as_bytes()) == n)
        .map(|(_, k)| *k)
}

pub fn sha1_hex(script: &[u8]) -> String {
    sha1_smol::Sha1::from(script).digest().to_string()
}

/// SHA1 → recognised script, for scripts loaded by EVAL or SCRIPT LOAD (as Redis's cache).
#[derive(Default)]
pub struct ScriptCache {
    loaded: Mutex<HashMap<String, Known>>,
}

impl ScriptCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, sha: String, k: Known) {
        self.lock().insert(sha, k);
    }

    fn get(&self, sha: &str) -> Option<Known> {
        self.lock().get(sha).copied()
    }

    fn flush(&self) {
        self.lock().clear();
    }
}

fn unsupported() -> CmdError {
    CmdError::msg(
        "ERR sessiond does not run arbitrary Lua: only the recognised session scripts (lock release: \
         if redis.call(\"get\",KEYS[1]) == ARGV[1] then return redis.call(\"del\",KEYS[1]) else return 0 end) are supported",
    )
}

/// `EVAL script numkeys key... arg...` / `EVALSHA sha1 numkeys key... arg...`.
pub async fn eval<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], by_sha: bool) -> CmdResult {
    let numkeys = int(a[2])?;
    if numkeys > (a.len() - 3) as i64 {
        return Err(CmdError::msg(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    if numkeys < 0 {
        return Err(CmdError::msg("ERR Number of keys can't be negative"));
    }
    let known = if by_sha {
        let sha = lossy(a[1]).to_ascii_lowercase();
        cx.server
            .scripts
            .get(&sha)
            .ok_or_else(|| CmdError::msg("NOSCRIPT No matching script. Please use EVAL."))?
    } else {
        let k = recognise(a[1]).ok_or_else(unsupported)?;
        cx.server.scripts.add(sha1_hex(a[1]), k);
        k
    };
    let keys = &a[3..3 + numkeys as usize];
    let argv = &a[3 + numkeys as usize..];
    match known {
        Known::DeleteIfEqual => {
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
        }
    }
    Ok(())
}

/// `SCRIPT LOAD|EXISTS|FLUSH|HELP`.
pub fn script<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let sub = lossy(a[1]).to_ascii_lowercase();
    match sub.as_str() {
        "load" if a.len() == 3 => {
            let k = recognise(a[2]).ok_or_else(unsupported)?;
            let sha = sha1_hex(a[2]);
            cx.server.scripts.add(sha.clone(), k);
            cx.out.bulk(sha.as_bytes());
        }
        "exists" if a.len() >= 3 => {
            cx.out.array(a.len() - 2);
            for sha in &a[2..] {
                let present = cx
                    .server
                    .scripts
                    .get(&lossy(sha).to_ascii_lowercase())
                    .is_some();
                cx.out.int(present as i64);
            }
        }
        "flush" if a.len() <= 3 => {
            if a.len() == 3 && !is(a[2], "async") && !is(a[2], "sync") {
                return Err(CmdError::msg(
                    "ERR SCRIPT FLUSH only support SYNC|ASYNC option",
                ));
            }
            cx.server.scripts.flush();
            cx.out.ok();
        }
        "load" | "exists" | "flush" => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phpredis_lock_release_is_recognised_with_its_sha() {
        let s = KNOWN[0].0.as_bytes();
        assert_eq!(sha1_hex(s), "b70c2384248f88e6b75b9f89241a180f856ad852");
        assert_eq!(recognise(s), Some(Known::DeleteIfEqual));
        let symfony = b"if redis.call('GET', KEYS[1]) == ARGV[1] then\n  return redis.call('DEL', KEYS[1])\nelse\n  return 0\nend";
        assert_eq!(recognise(symfony), Some(Known::DeleteIfEqual));
        assert_eq!(recognise(b"return redis.call('flushall')"), None);
    }
}
