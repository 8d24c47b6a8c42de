//! The Rust functions the sandbox (`prelude.lua`) builds the `redis` table from, and the
//! running script's context that `redis.call`/`redis.pcall` (`fast.rs`) reach.
//!
//! The running script's context is a thread-local set by [`super::run`] for the duration of
//! the script (scripts run synchronously on one thread, so it can be nothing else). It
//! points at a [`Host`]: the server side that checks and runs each command. Keeping the
//! host behind a trait object keeps the Lua callbacks monomorphic: they are registered once
//! per interpreter, not once per store type.

use std::cell::Cell;

use bytes::BytesMut;
use mlua::{Lua, Table, Value, Variadic};

/// What runs a script's commands (the engine's implementation is in `run.rs`).
pub trait Host {
    /// Checks and runs one command of the script, appending its reply to `out` in RESP3 if
    /// `resp3` (else RESP2). `Err` is a script-level refusal (unknown command, not allowed
    /// from scripts, undeclared key…); the command did not run.
    fn call(&mut self, args: &[&[u8]], resp3: bool, out: &mut BytesMut) -> Result<(), String>;

    /// `redis.acl_check_cmd`: whether the caller may run this command.
    fn acl_check(&mut self, args: &[&[u8]]) -> Result<bool, String>;

    /// SCRIPT KILL (or a memory failure) ended the script: it cannot catch that.
    fn killed(&self) -> bool;
}

/// The running script's context.
pub struct Current<'a> {
    pub host: &'a mut dyn Host,
    /// `redis.setresp(3)` was called.
    pub resp3: bool,
    /// The reply of the script's last command (`fast.rs` reads it into Lua).
    pub scratch: BytesMut,
}

thread_local! {
    static CURRENT: Cell<Option<*mut Current<'static>>> = const { Cell::new(None) };
    static SCRATCH: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// Runs `f` with `host` as the running script's host on this thread.
pub fn with_host<R>(host: &mut dyn Host, f: impl FnOnce() -> R) -> (R, bool) {
    // The scratch buffer is the thread's, kept between scripts (one allocation per thread,
    // not per script); a huge reply's buffer is not kept.
    let scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let mut cur = Current {
        host,
        resp3: false,
        scratch,
    };
    let p = std::ptr::from_mut(&mut cur).cast::<Current<'static>>();
    let prev = CURRENT.with(|c| c.replace(Some(p)));
    struct Restore(Option<*mut Current<'static>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let restore = Restore(prev);
    let r = f();
    drop(restore);
    let mut scratch = std::mem::take(&mut cur.scratch);
    if scratch.capacity() <= 64 * 1024 {
        scratch.clear();
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
    }
    (r, cur.resp3)
}

/// Runs `f` with the running script's context, if a script runs on this thread.
pub fn with_current<R>(f: impl FnOnce(&mut Current<'_>) -> R) -> Option<R> {
    current(f)
}

/// Whether the running script asked for RESP3 (`redis.setresp(3)`).
pub fn script_resp3() -> bool {
    current(|c| c.resp3).unwrap_or(false)
}

fn current<R>(f: impl FnOnce(&mut Current<'_>) -> R) -> Option<R> {
    let p = CURRENT.with(Cell::get)?;
    // SAFETY: set by `with_host` to a value on its stack and restored before it returns
    // (also on unwind); only this thread reads it, and Lua callbacks do not nest (a script
    // cannot run a script).
    Some(f(unsafe { &mut *p }))
}

fn err_table(lua: &Lua, msg: &str) -> mlua::Result<Value> {
    let t = lua.create_table_with_capacity(0, 1)?;
    t.raw_set("err", msg)?;
    Ok(Value::Table(t))
}

/// The arguments of a `redis.*` call as bytes: strings as they are, numbers as Lua writes
/// them (`%.14g`); anything else is Redis's error.
fn arguments(lua: &Lua, args: Variadic<Value>) -> Result<Vec<mlua::LuaString>, &'static str> {
    let mut out = Vec::with_capacity(args.len());
    for a in args {
        let s = match a {
            Value::String(s) => s,
            v @ (Value::Integer(_) | Value::Number(_)) => match lua.coerce_string(v) {
                Ok(Some(s)) => s,
                _ => return Err("ERR Lua redis lib command arguments must be strings or integers"),
            },
            _ => return Err("ERR Lua redis lib command arguments must be strings or integers"),
        };
        out.push(s);
    }
    Ok(out)
}

fn acl_check(lua: &Lua, args: Variadic<Value>) -> mlua::Result<(bool, Value)> {
    if args.is_empty() {
        return Ok((
            false,
            err_table(
                lua,
                "ERR Please specify at least one argument for this redis lib call",
            )?,
        ));
    }
    let strings = match arguments(lua, args) {
        Ok(s) => s,
        Err(e) => return Ok((false, err_table(lua, e)?)),
    };
    let bytes: Vec<_> = strings.iter().map(|s| s.as_bytes()).collect();
    let argv: Vec<&[u8]> = bytes.iter().map(|b| &b[..]).collect();
    match current(|cur| cur.host.acl_check(&argv)) {
        Some(Ok(b)) => Ok((true, Value::Boolean(b))),
        Some(Err(e)) => Ok((false, err_table(lua, &e)?)),
        None => Ok((true, Value::Boolean(true))),
    }
}

/// A C closure over the function in its upvalue, which returns `(ok, value)`: returns the
/// value, or raises it as the Lua error (any Lua value, as Redis raises its error tables).
unsafe extern "C-unwind" fn raise_if_failed(l: *mut mlua::ffi::lua_State) -> std::ffi::c_int {
    use mlua::ffi;
    // SAFETY: called by Lua with a valid state; the upvalue was set by `make_raising`. No
    // Rust value with a destructor is live here when Lua unwinds past this frame.
    unsafe {
        let n = ffi::lua_gettop(l);
        ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
        ffi::lua_insert(l, 1);
        ffi::lua_call(l, n, 2);
        if ffi::lua_toboolean(l, -2) != 0 {
            return 1;
        }
        ffi::lua_error(l)
    }
}

/// `raising(f)` for the prelude: wraps `f` in [`raise_if_failed`].
unsafe extern "C-unwind" fn make_raising(l: *mut mlua::ffi::lua_State) -> std::ffi::c_int {
    // SAFETY: as above; the closure takes the first argument as its upvalue.
    unsafe {
        mlua::ffi::lua_settop(l, 1);
        mlua::ffi::lua_pushcclosure(l, raise_if_failed, 1);
    }
    1
}

/// The table of Rust functions the prelude receives as `rt`.
pub fn runtime_table(lua: &Lua) -> mlua::Result<Table> {
    let rt = lua.create_table()?;
    // SAFETY: `make_raising` follows the Lua C API's rules (see above).
    rt.set("raising", unsafe { lua.create_c_function(make_raising)? })?;
    // SAFETY: the fast paths follow the Lua C API's rules (`fast.rs`).
    rt.set("call_c", unsafe {
        lua.create_c_function(super::fast::redis_call)?
    })?;
    rt.set("pcall_c", unsafe {
        lua.create_c_function(super::fast::redis_pcall)?
    })?;
    rt.set("acl_check", lua.create_function(acl_check)?)?;
    rt.set(
        "killed",
        lua.create_function(|_, ()| Ok(current(|c| c.host.killed()).unwrap_or(false)))?,
    )?;
    rt.set(
        "sha1hex",
        lua.create_function(|_, s: mlua::LuaString| {
            let sha = super::sha1_hex(&s.as_bytes());
            Ok(String::from_utf8_lossy(&sha).into_owned())
        })?,
    )?;
    rt.set(
        "log",
        lua.create_function(|_, (level, msg): (i64, mlua::LuaString)| {
            super::run::log(level, &msg.to_string_lossy());
            Ok(())
        })?,
    )?;
    rt.set(
        "setresp",
        lua.create_function(|_, v: i64| {
            current(|c| c.resp3 = v == 3);
            Ok(())
        })?,
    )?;
    rt.set("version", crate::REDIS_COMPAT_VERSION)?;
    rt.set("version_num", version_num(crate::REDIS_COMPAT_VERSION))?;
    Ok(rt)
}

/// `7.0.0` → 0x070000, as `REDIS_VERSION_NUM`.
fn version_num(v: &str) -> i64 {
    v.split('.')
        .take(3)
        .map(|p| p.parse::<i64>().unwrap_or(0))
        .fold(0, |acc, p| (acc << 8) | p)
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_number_is_packed_as_redis_packs_it() {
        assert_eq!(super::version_num("7.0.15"), 458767);
        assert_eq!(super::version_num("7.0.0"), 0x070000);
    }
}
