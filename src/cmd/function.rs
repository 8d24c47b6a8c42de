//! FUNCTION and FCALL/FCALL_RO (Redis's `functions.c`): libraries of named Lua functions.
//! The registry and how a library is loaded on each thread are in `script/function.rs`.

use super::args::{is, lossy};
use super::script::{split_keys, UNKILLABLE};
use super::{CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::script::function::{self, Library};
use crate::script::run::{self, Kill, Target};
use crate::util::glob::glob_match;

/// Functions need the embedded engine, or the migration router (which runs them only in
/// stages with one store; `script/run.rs`).
fn engine_only<S: Deployment>(cx: &Ctx<'_, '_, S>) -> CmdResult {
    if cx.server.store.engine().is_none() && cx.server.store.migration().is_none() {
        return Err(CmdError::msg(
            "ERR functions run only on the embedded engine (see the README)",
        ));
    }
    Ok(())
}

/// `FCALL function numkeys key... arg...` and `FCALL_RO`.
pub async fn fcall<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    a: &[&[u8]],
    read_only: bool,
) -> CmdResult {
    engine_only(cx)?;
    // Between two Redis-protocol stores: on the store the first key's stage writes first,
    // which has the library (FUNCTION LOAD goes to both), declared keys mirrored.
    if let Some(r) = super::route_migrating(cx, a, false).await {
        return r;
    }
    let (keys, argv) = split_keys(a, "ERR Bad number of keys provided")?;
    let name = lossy(a[1]).to_string();
    let (flags, lib) = {
        let libs = cx.server.scripts.libraries();
        let (flags, lib) = libs
            .function(&name)
            .ok_or_else(|| CmdError::msg("ERR Function not found"))?;
        (flags, lib.clone())
    };
    if read_only && !flags.no_writes {
        return Err(CmdError::msg(
            "ERR Can not execute a script with write flag using *_ro command.",
        ));
    }
    run::run(
        cx,
        Target::Function(&name, &lib),
        flags,
        keys,
        argv,
        read_only,
        a,
    )
}

const HELP: &[&str] = &[
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Print this help.",
];

/// `FUNCTION LOAD|DELETE|LIST|FLUSH|DUMP|RESTORE|STATS|KILL|HELP`.
pub async fn function<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let sub = lossy(a[1]).to_ascii_lowercase();
    // Between two Redis-protocol stores the libraries live in the stores: changes go to
    // both, questions to the serving one.
    let changes = matches!(sub.as_str(), "load" | "delete" | "flush" | "restore");
    if sub != "help" {
        if let Some(r) = super::route_migrating(cx, a, changes).await {
            return r;
        }
    }
    let scripts = &cx.server.scripts;
    match sub.as_str() {
        "load" => {
            engine_only(cx)?;
            let (replace, code) = match a {
                [_, _, code] => (false, code),
                [_, _, r, code] if is(r, "replace") => (true, code),
                [_, _, r, _] => {
                    return Err(CmdError::msg(format!(
                        "ERR Unknown option given: {}",
                        lossy(r)
                    )))
                }
                _ => return Err(wrong("load")),
            };
            let name = function::load(scripts, code, replace).map_err(CmdError::Msg)?;
            save(cx)?;
            cx.out.bulk(name.as_bytes());
        }
        "delete" if a.len() == 3 => {
            let name = lossy(a[2]);
            if scripts.libraries_mut().remove(&name).is_none() {
                return Err(CmdError::msg("ERR Library not found"));
            }
            scripts.bump();
            save(cx)?;
            cx.out.ok();
        }
        "flush" if a.len() <= 3 => {
            if a.len() == 3 && !is(a[2], "async") && !is(a[2], "sync") {
                return Err(CmdError::msg(
                    "ERR FUNCTION FLUSH only supports SYNC|ASYNC option",
                ));
            }
            scripts.libraries_mut().clear();
            scripts.bump();
            save(cx)?;
            cx.out.ok();
        }
        "list" => list(cx, &a[2..])?,
        "stats" if a.len() == 2 => {
            cx.out.map(2);
            cx.out.bulk(b"running_script");
            match scripts.busy.running().filter(|(s, _)| s.function) {
                None => cx.out.null(),
                Some((s, ms)) => {
                    cx.out.map(3);
                    cx.out.bulk(b"name");
                    cx.out.bulk(s.name().as_bytes());
                    cx.out.bulk(b"command");
                    let command = s.command.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    cx.out.array(command.len());
                    for c in &command {
                        cx.out.bulk(c.as_bytes());
                    }
                    cx.out.bulk(b"duration_ms");
                    cx.out.int(ms as i64);
                }
            }
            let (libs, funcs) = scripts.libraries().counts();
            cx.out.bulk(b"engines");
            cx.out.map(1);
            cx.out.bulk(b"LUA");
            cx.out.map(2);
            cx.out.bulk(b"libraries_count");
            cx.out.int(libs as i64);
            cx.out.bulk(b"functions_count");
            cx.out.int(funcs as i64);
        }
        "kill" if a.len() == 2 => match scripts.busy.kill(true) {
            Kill::Killed => cx.out.ok(),
            Kill::NotBusy | Kill::WrongKind => {
                return Err(CmdError::msg("NOTBUSY No scripts in execution right now."))
            }
            Kill::Unkillable => return Err(CmdError::msg(UNKILLABLE)),
        },
        "dump" if a.len() == 2 => {
            let libs = scripts.libraries();
            let codes: Vec<&[u8]> = libs.libs.values().map(|l| &l.code[..]).collect();
            cx.out.bulk(&crate::util::rdb::dump_functions(&codes));
        }
        "restore" if a.len() == 3 || a.len() == 4 => {
            engine_only(cx)?;
            restore(cx, a)?;
        }
        "help" if a.len() == 2 => {
            cx.out.help(HELP);
        }
        "delete" | "flush" | "stats" | "kill" | "dump" | "restore" | "help" => {
            return Err(wrong(&sub));
        }
        _ => {
            return Err(CmdError::msg(format!(
                "ERR unknown subcommand '{}'. Try FUNCTION HELP.",
                lossy(a[1])
            )));
        }
    }
    Ok(())
}

/// Saves the libraries after a change (with the embedded engine's persistence).
fn save<S: Deployment>(cx: &Ctx<'_, '_, S>) -> CmdResult {
    if cx.server.persist.is_none() {
        return Ok(());
    }
    crate::script::persist::save(&cx.server.scripts, &cx.server.config.dir).map_err(|e| {
        tracing::warn!("cannot save the function libraries: {e}");
        CmdError::msg(format!(
            "ERR the libraries changed in memory but could not be saved ({e}); they will be lost on restart"
        ))
    })
}

fn wrong(sub: &str) -> CmdError {
    CmdError::msg(format!(
        "ERR wrong number of arguments for 'function|{sub}' command"
    ))
}

/// `FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE]`.
fn list<S: Deployment>(cx: &mut Ctx<'_, '_, S>, opts: &[&[u8]]) -> CmdResult {
    let mut pattern: Option<&[u8]> = None;
    let mut with_code = false;
    let mut i = 0;
    while i < opts.len() {
        if is(opts[i], "withcode") && !with_code {
            with_code = true;
        } else if is(opts[i], "libraryname") && pattern.is_none() && i + 1 < opts.len() {
            pattern = Some(opts[i + 1]);
            i += 1;
        } else {
            return Err(CmdError::msg(format!(
                "ERR Unknown argument {}",
                lossy(opts[i])
            )));
        }
        i += 1;
    }
    let libs = cx.server.scripts.libraries();
    let shown: Vec<&Library> = libs
        .libs
        .values()
        .filter(|l| pattern.is_none_or(|p| glob_match(p, l.name.as_bytes(), false)))
        .collect();
    cx.out.array(shown.len());
    for l in shown {
        cx.out.map(if with_code { 4 } else { 3 });
        cx.out.bulk(b"library_name");
        cx.out.bulk(l.name.as_bytes());
        cx.out.bulk(b"engine");
        cx.out.bulk(b"LUA");
        cx.out.bulk(b"functions");
        cx.out.array(l.functions.len());
        for f in &l.functions {
            cx.out.map(3);
            cx.out.bulk(b"name");
            cx.out.bulk(f.name.as_bytes());
            cx.out.bulk(b"description");
            cx.out.bulk_opt(f.description.as_deref().map(str::as_bytes));
            cx.out.bulk(b"flags");
            let names = f.flags.names();
            cx.out.set(names.len());
            for n in names {
                cx.out.simple(n);
            }
        }
        if with_code {
            cx.out.bulk(b"library_code");
            cx.out.bulk(&l.code);
        }
    }
    Ok(())
}

/// `FUNCTION RESTORE payload [FLUSH|APPEND|REPLACE]`: all libraries of the payload load,
/// or none.
fn restore<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    #[derive(PartialEq)]
    enum Policy {
        Flush,
        Append,
        Replace,
    }
    let policy =
        match a.get(3) {
            None => Policy::Append,
            Some(p) if is(p, "flush") => Policy::Flush,
            Some(p) if is(p, "append") => Policy::Append,
            Some(p) if is(p, "replace") => Policy::Replace,
            Some(_) => return Err(CmdError::msg(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            )),
        };
    let codes =
        crate::util::rdb::restore_functions(a[2]).map_err(|e| CmdError::msg(e.message()))?;
    let scripts = &cx.server.scripts;
    // Validate every library first (compiling and running its code), then apply at once.
    let mut loaded = Vec::new();
    for code in &codes {
        let name = function::library_name(code).map_err(CmdError::Msg)?;
        loaded.push((name, code.clone()));
    }
    let mut staged = function::Libraries::default();
    {
        let current = scripts.libraries();
        if policy != Policy::Flush {
            for l in current.libs.values() {
                staged.insert(l.clone(), false).map_err(CmdError::Msg)?;
            }
        }
    }
    for (_, code) in loaded {
        let lib = function::validate(scripts, &code).map_err(CmdError::Msg)?;
        staged
            .insert(lib, policy == Policy::Replace)
            .map_err(CmdError::Msg)?;
    }
    *scripts.libraries_mut() = staged;
    scripts.bump();
    save(cx)?;
    cx.out.ok();
    Ok(())
}
