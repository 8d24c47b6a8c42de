//! The per-call path of scripts in Lua's C API: `redis.call`/`redis.pcall`, building KEYS
//! and ARGV, calling the script, and turning its result into the reply.
//!
//! mlua's safe API wraps every operation that may raise a Lua error (creating a string or a
//! table, setting a field) in a protected call of its own, and holds every value it hands
//! out in a reference slot. That is the right default, and it is what the rest of
//! `script/` uses; on the path every EVALSHA takes it cost more than the script itself
//! (profiled: a closure pushed and a `lua_pcall` per key and argument, and the allocations
//! and collections they bring). Here the same work is done on the stack, inside one
//! protected call per script run ([`run`] calls [`body`], a C function kept in the
//! registry).
//!
//! The rule that keeps this sound: a Lua API function that can raise (allocating ones:
//! pushing a string, creating a table, `lua_error`) unwinds by `longjmp` through the frames
//! between it and the protected call, so those frames must hold no Rust value with a
//! destructor at that moment. The functions below that can raise take and hold only plain
//! values (pointers, lengths, integers, `&mut Reply`); what needs owning (the command's
//! arguments, the host's call) happens in [`run_command`], which returns before anything is
//! pushed. Conversions follow `convert.rs` (which documents the rules) exactly.

use std::ffi::c_int;

use mlua::ffi;

use super::call;
use crate::resp::Reply;

/// Deepest nesting followed when reading a Lua value into a reply.
const MAX_DEPTH: u32 = super::convert::MAX_DEPTH as u32;

pub(super) unsafe fn push_bytes(l: *mut ffi::lua_State, b: &[u8]) {
    // SAFETY (for the callers): may raise on allocation failure.
    unsafe {
        ffi::lua_pushlstring(l, b.as_ptr() as *const std::ffi::c_char, b.len());
    }
}

/// `{name = <top of stack>}`, replacing the top of the stack.
unsafe fn wrap_field(l: *mut ffi::lua_State, name: &std::ffi::CStr) {
    unsafe {
        ffi::lua_createtable(l, 0, 1);
        ffi::lua_insert(l, -2);
        ffi::lua_setfield(l, -2, name.as_ptr());
    }
}

fn line_end(buf: &[u8], at: usize) -> Option<usize> {
    let mut i = at;
    while i + 1 < buf.len() {
        if buf[i] == b'\r' && buf[i + 1] == b'\n' {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn int_at(buf: &[u8], from: usize, to: usize) -> i64 {
    let s = &buf[from..to];
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for &c in digits {
        n = n
            .wrapping_mul(10)
            .wrapping_add((c.wrapping_sub(b'0')) as i64);
    }
    if neg {
        -n
    } else {
        n
    }
}

/// Pushes one RESP value of `buf` (from `*at`) as a Lua value, by the reply → Lua rules.
/// Malformed input (never written by sessiond's commands) pushes `nil` and stops.
unsafe fn push_reply(l: *mut ffi::lua_State, buf: &[u8], at: &mut usize, depth: u32) {
    unsafe {
        if depth > MAX_DEPTH || ffi::lua_checkstack(l, 4) == 0 {
            ffi::lua_pushnil(l);
            *at = buf.len();
            return;
        }
        let Some(&kind) = buf.get(*at) else {
            ffi::lua_pushnil(l);
            return;
        };
        let Some(end) = line_end(buf, *at + 1) else {
            ffi::lua_pushnil(l);
            *at = buf.len();
            return;
        };
        let body = (*at + 1, end);
        *at = end + 2;
        match kind {
            b'+' => {
                push_bytes(l, &buf[body.0..body.1]);
                wrap_field(l, c"ok");
            }
            b'-' => {
                push_bytes(l, &buf[body.0..body.1]);
                wrap_field(l, c"err");
            }
            b':' => ffi::lua_pushnumber(l, int_at(buf, body.0, body.1) as f64),
            b'$' | b'=' => {
                let n = int_at(buf, body.0, body.1);
                if n < 0 {
                    ffi::lua_pushboolean(l, 0);
                    return;
                }
                let start = *at;
                let stop = (start + n as usize).min(buf.len());
                *at = stop + 2;
                if kind == b'$' {
                    push_bytes(l, &buf[start..stop]);
                } else {
                    // Verbatim: {verbatim_string = {format = "txt", string = …}}.
                    let (fmt, text) = if stop - start >= 4 && buf[start + 3] == b':' {
                        (&buf[start..start + 3], &buf[start + 4..stop])
                    } else {
                        (&b"txt"[..], &buf[start..stop])
                    };
                    ffi::lua_createtable(l, 0, 2);
                    push_bytes(l, fmt);
                    ffi::lua_setfield(l, -2, c"format".as_ptr());
                    push_bytes(l, text);
                    ffi::lua_setfield(l, -2, c"string".as_ptr());
                    wrap_field(l, c"verbatim_string");
                }
            }
            b'*' | b'>' => {
                let n = int_at(buf, body.0, body.1);
                if n < 0 {
                    ffi::lua_pushboolean(l, 0);
                    return;
                }
                ffi::lua_createtable(l, n.min(1 << 20) as c_int, 0);
                for i in 1..=n {
                    push_reply(l, buf, at, depth + 1);
                    ffi::lua_rawseti(l, -2, i as ffi::lua_Integer);
                }
            }
            b'%' | b'~' => {
                let n = int_at(buf, body.0, body.1);
                ffi::lua_createtable(l, 0, n.clamp(0, 1 << 20) as c_int);
                for _ in 0..n.max(0) {
                    push_reply(l, buf, at, depth + 1);
                    if kind == b'%' {
                        push_reply(l, buf, at, depth + 1);
                    } else {
                        ffi::lua_pushboolean(l, 1);
                    }
                    if ffi::lua_type(l, -2) == ffi::LUA_TNIL {
                        ffi::lua_settop(l, -3);
                    } else {
                        ffi::lua_rawset(l, -3);
                    }
                }
                wrap_field(l, if kind == b'%' { c"map" } else { c"set" });
            }
            b'_' => ffi::lua_pushnil(l),
            b',' => {
                let text = &buf[body.0..body.1];
                let d = match text {
                    b"inf" => f64::INFINITY,
                    b"-inf" => f64::NEG_INFINITY,
                    _ => std::str::from_utf8(text)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(f64::NAN),
                };
                ffi::lua_pushnumber(l, d);
                wrap_field(l, c"double");
            }
            b'#' => ffi::lua_pushboolean(l, (buf.get(body.0) == Some(&b't')) as c_int),
            b'(' => {
                push_bytes(l, &buf[body.0..body.1]);
                wrap_field(l, c"big_number");
            }
            b'|' => {
                // Attributes describe the reply that follows; scripts see only that reply.
                let n = int_at(buf, body.0, body.1);
                for _ in 0..2 * n.max(0) {
                    push_reply(l, buf, at, depth + 1);
                    ffi::lua_settop(l, -2);
                }
                push_reply(l, buf, at, depth);
            }
            _ => ffi::lua_pushnil(l),
        }
    }
}

/// What `run_command` left in the host's scratch buffer.
enum Ran {
    /// The reply (or a refusal written as an error reply) is in the scratch buffer.
    Reply(*const u8, usize),
    /// No script runs on this thread (a library's code while it loads).
    NoHost,
}

/// Phase 1 of `redis.call`: reads the arguments and runs the command. Owns Rust values,
/// calls no Lua function that can raise.
unsafe fn run_command(l: *mut ffi::lua_State) -> Ran {
    let n = unsafe { ffi::lua_gettop(l) };
    let mut numbers: Vec<Vec<u8>> = Vec::new();
    let mut refused: Option<&'static str> = None;
    if n == 0 {
        refused = Some("ERR Please specify at least one argument for this redis lib call");
    }
    // Formatted numbers first (their buffers must not move while `argv` borrows them).
    for i in 1..=n {
        if unsafe { ffi::lua_type(l, i) } == ffi::LUA_TNUMBER {
            let v = unsafe { ffi::lua_tonumber(l, i) };
            numbers.push(crate::util::double::fmt_g(v, 14).into_bytes());
        }
    }
    // The arguments: inline for the usual few, on the heap for more.
    let mut inline: [&[u8]; 8] = [&[]; 8];
    let mut heap: Vec<&[u8]> = Vec::new();
    let small = n <= inline.len() as c_int;
    let mut count = 0;
    let mut next_number = 0;
    for i in 1..=n {
        let arg: &[u8] = match unsafe { ffi::lua_type(l, i) } {
            ffi::LUA_TSTRING => {
                let mut len = 0usize;
                // SAFETY: a string's bytes stay valid while it is on the stack (all of
                // this call).
                let p = unsafe { ffi::lua_tolstring(l, i, &mut len) } as *const u8;
                unsafe { std::slice::from_raw_parts(p, len) }
            }
            ffi::LUA_TNUMBER => {
                next_number += 1;
                &numbers[next_number - 1]
            }
            _ => {
                refused = Some("ERR Lua redis lib command arguments must be strings or integers");
                break;
            }
        };
        if small {
            inline[count] = arg;
        } else {
            heap.push(arg);
        }
        count += 1;
    }
    let argv: &[&[u8]] = if small { &inline[..count] } else { &heap };
    let ran = call::with_current(|cur| {
        let scratch = &mut cur.scratch;
        scratch.clear();
        let result = match refused {
            Some(e) => Err(e.to_string()),
            None => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                cur.host.call(argv, cur.resp3, scratch)
            }))
            .unwrap_or_else(|_| Err("ERR the command failed inside the server".into())),
        };
        if let Err(e) = result {
            scratch.clear();
            scratch.extend_from_slice(b"-");
            scratch.extend(
                e.bytes()
                    .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
            scratch.extend_from_slice(b"\r\n");
        }
        (scratch.as_ptr(), scratch.len())
    });
    match ran {
        Some((p, len)) => Ran::Reply(p, len),
        None => Ran::NoHost,
    }
}

unsafe fn call_common(l: *mut ffi::lua_State, raise: bool) -> c_int {
    let ran = unsafe { run_command(l) };
    // Phase 2: nothing with a destructor is live from here on.
    unsafe {
        let (p, len) = match ran {
            Ran::Reply(p, len) => (p, len),
            Ran::NoHost => {
                let msg = b"-ERR redis.call is not available here\r\n";
                (msg.as_ptr(), msg.len())
            }
        };
        // SAFETY: the scratch buffer belongs to the running script's context, which outlives
        // this call and is not written until the next command.
        let buf = std::slice::from_raw_parts(p, len);
        let mut at = 0;
        push_reply(l, buf, &mut at, 0);
        if raise && buf.first() == Some(&b'-') {
            ffi::lua_error(l);
        }
        1
    }
}

/// `redis.call`: the command's reply, or its error raised as `{err=…}`.
///
/// # Safety
/// Called by Lua only, as a C function of the state the running script's thread owns.
pub unsafe extern "C-unwind" fn redis_call(l: *mut ffi::lua_State) -> c_int {
    unsafe { call_common(l, true) }
}

/// `redis.pcall`: the command's reply, its error returned as `{err=…}`.
///
/// # Safety
/// As [`redis_call`].
pub unsafe extern "C-unwind" fn redis_pcall(l: *mut ffi::lua_State) -> c_int {
    unsafe { call_common(l, false) }
}

/// The array size of a table Redis builds for `n` strings. Redis fills KEYS and ARGV one
/// `lua_rawseti` at a time into an empty table, and each insert past the array's end makes
/// Lua 5.1 resize it to the smallest power of two that is more than half full. The size
/// is visible to a script: `#` of a table with holes depends on it.
pub(super) fn redis_array_size(n: usize) -> c_int {
    n.min(1 << 20).next_power_of_two() as c_int * c_int::from(n > 0)
}

/// Pushes a sequence of strings (KEYS, ARGV), in a table shaped as Redis's.
pub(super) unsafe fn push_strings(l: *mut ffi::lua_State, items: &[&[u8]]) {
    unsafe {
        ffi::lua_createtable(l, redis_array_size(items.len()), 0);
        for (i, item) in items.iter().enumerate() {
            push_bytes(l, item);
            ffi::lua_rawseti(l, -2, (i + 1) as ffi::lua_Integer);
        }
    }
}

/// Lua truthiness of a field of the table at `t`, read raw (no metamethods).
unsafe fn raw_field(l: *mut ffi::lua_State, t: c_int, name: &std::ffi::CStr) -> c_int {
    unsafe {
        ffi::lua_pushstring(l, name.as_ptr());
        ffi::lua_rawget(l, if t < 0 { t - 1 } else { t })
    }
}

unsafe fn string_at<'a>(l: *mut ffi::lua_State, idx: c_int) -> &'a [u8] {
    let mut len = 0usize;
    unsafe {
        let p = ffi::lua_tolstring(l, idx, &mut len) as *const u8;
        std::slice::from_raw_parts(p, len)
    }
}

/// Writes the Lua value at `idx` (an absolute index) as a reply, by the Lua → reply rules.
unsafe fn write_value(
    l: *mut ffi::lua_State,
    idx: c_int,
    out: &mut Reply<'_>,
    resp3: bool,
    depth: u32,
) {
    unsafe {
        if depth > MAX_DEPTH || ffi::lua_checkstack(l, 4) == 0 {
            out.error("ERR reached lua stack limit");
            return;
        }
        match ffi::lua_type(l, idx) {
            ffi::LUA_TNIL => out.null(),
            ffi::LUA_TBOOLEAN => match (ffi::lua_toboolean(l, idx) != 0, resp3) {
                (b, true) => out.boolean(b),
                (true, false) => out.int(1),
                (false, false) => out.null(),
            },
            ffi::LUA_TNUMBER => out.int(super::convert::truncate(ffi::lua_tonumber(l, idx))),
            ffi::LUA_TSTRING => out.bulk(string_at(l, idx)),
            ffi::LUA_TTABLE => write_table(l, idx, out, resp3, depth),
            _ => out.null(),
        }
    }
}

unsafe fn write_table(
    l: *mut ffi::lua_State,
    t: c_int,
    out: &mut Reply<'_>,
    resp3: bool,
    depth: u32,
) {
    unsafe {
        let top = ffi::lua_gettop(l);
        if raw_field(l, t, c"err") == ffi::LUA_TSTRING {
            out.error_bytes(string_at(l, -1));
            ffi::lua_settop(l, top);
            return;
        }
        ffi::lua_settop(l, top);
        if raw_field(l, t, c"ok") == ffi::LUA_TSTRING {
            out.simple_bytes(string_at(l, -1));
            ffi::lua_settop(l, top);
            return;
        }
        ffi::lua_settop(l, top);
        if raw_field(l, t, c"double") == ffi::LUA_TNUMBER {
            out.double(ffi::lua_tonumber(l, -1));
            ffi::lua_settop(l, top);
            return;
        }
        ffi::lua_settop(l, top);
        if raw_field(l, t, c"big_number") == ffi::LUA_TSTRING {
            out.big_number(string_at(l, -1));
            ffi::lua_settop(l, top);
            return;
        }
        ffi::lua_settop(l, top);
        if raw_field(l, t, c"verbatim_string") == ffi::LUA_TTABLE {
            let v = ffi::lua_gettop(l);
            let f = raw_field(l, v, c"format");
            let s = raw_field(l, v, c"string");
            if f == ffi::LUA_TSTRING && s == ffi::LUA_TSTRING {
                let fmt = string_at(l, -2);
                if fmt.len() == 3 {
                    out.verbatim_as(&[fmt[0], fmt[1], fmt[2]], string_at(l, -1));
                    ffi::lua_settop(l, top);
                    return;
                }
            }
        }
        ffi::lua_settop(l, top);
        for (name, is_map) in [(c"map", true), (c"set", false)] {
            if raw_field(l, t, name) == ffi::LUA_TTABLE {
                let m = ffi::lua_gettop(l);
                let mut n = 0usize;
                ffi::lua_pushnil(l);
                while ffi::lua_next(l, m) != 0 {
                    n += 1;
                    ffi::lua_settop(l, -2);
                }
                if is_map {
                    out.map(n);
                } else {
                    out.set(n);
                }
                ffi::lua_pushnil(l);
                while ffi::lua_next(l, m) != 0 {
                    let top2 = ffi::lua_gettop(l);
                    write_value(l, top2 - 1, out, resp3, depth + 1);
                    if is_map {
                        write_value(l, top2, out, resp3, depth + 1);
                    }
                    ffi::lua_settop(l, -2);
                }
                ffi::lua_settop(l, top);
                return;
            }
            ffi::lua_settop(l, top);
        }
        // An array: up to the first nil.
        let mut n = 0;
        while ffi::lua_rawgeti(l, t, n + 1) != ffi::LUA_TNIL {
            ffi::lua_settop(l, -2);
            n += 1;
        }
        ffi::lua_settop(l, top);
        out.array(n as usize);
        for i in 1..=n {
            ffi::lua_rawgeti(l, t, i);
            write_value(l, ffi::lua_gettop(l), out, resp3, depth + 1);
            ffi::lua_settop(l, top);
        }
    }
}

/// How a script run ended.
pub enum Outcome {
    /// The reply is written.
    Replied,
    /// The script failed: its error text, and where (source, line), from the prelude's
    /// handler; or (no table) an error value the handler did not see.
    Failed(Vec<u8>, Option<(Vec<u8>, i64)>),
}

/// A compiled script or function and what it is called with: registry references of this
/// thread's state (`vm.rs` takes them once, when the state is built and when a function is
/// compiled), so a run pushes each with `lua_rawgeti` and allocates nothing to start.
pub struct Call {
    pub state: *mut ffi::lua_State,
    /// [`body`], as a C function.
    pub runner: c_int,
    /// The prelude's message handler.
    pub handler: c_int,
    /// The globals' backing table (KEYS and ARGV go there for EVAL).
    pub globals: c_int,
    /// The strings "KEYS" and "ARGV" (not interned again per run).
    pub keys_name: c_int,
    pub argv_name: c_int,
    /// The kept KEYS and ARGV tables (`argtable.rs`), when this state's build allows it.
    pub kept: Option<Kept>,
    pub f: c_int,
    /// A FUNCTION (called with `keys, args`), not an EVAL body (which reads KEYS, ARGV).
    pub function: bool,
}

/// EVAL's kept KEYS and ARGV tables (`argtable.rs`): their registry references, and the
/// address of Lua's shared empty hash part.
#[derive(Clone, Copy)]
pub struct Kept {
    pub keys: c_int,
    pub argv: c_int,
    pub dummy: usize,
}

/// What [`run`] hands [`body`] through a light userdata.
struct Params<'p, 'k, 'r> {
    call: &'p Call,
    keys: &'p [&'k [u8]],
    args: &'p [&'k [u8]],
    out: &'p mut Reply<'r>,
    outcome: Outcome,
}

/// Calls the script with the prelude's handler as `lua_pcall`'s message handler and writes
/// its reply, all inside one protected call of [`body`].
///
/// Why not mlua's `Lua::exec_raw`: it pushes two new C closures per call (its message
/// handler and its trampoline), and a script run is short enough for those allocations,
/// and the collections they bring, to show in a profile. `body` is one C function made
/// once per state and kept in the registry.
pub fn run(
    call: &Call,
    keys: &[&[u8]],
    args: &[&[u8]],
    out: &mut Reply<'_>,
) -> Result<Outcome, String> {
    let l = call.state;
    let mut params = Params {
        call,
        keys,
        args,
        out,
        outcome: Outcome::Replied,
    };
    // SAFETY: `l` is this thread's state (`vm.rs`), idle between runs, used on this thread
    // only. Nothing here raises outside the protected call: `lua_rawgeti` on the registry
    // and `lua_pushlightuserdata` do not allocate, and the stack has the two slots
    // (`lua_checkstack`). `params` outlives the call that reads it.
    unsafe {
        let top = ffi::lua_gettop(l);
        if ffi::lua_checkstack(l, 2) == 0 {
            return Err("ERR reached lua stack limit".into());
        }
        ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, call.runner as ffi::lua_Integer);
        ffi::lua_pushlightuserdata(l, std::ptr::from_mut(&mut params).cast());
        let status = ffi::lua_pcall(l, 1, 0, 0);
        if status != 0 {
            // Raised outside the script (out of memory building KEYS or ARGV).
            let msg = if ffi::lua_type(l, -1) == ffi::LUA_TSTRING {
                String::from_utf8_lossy(string_at(l, -1)).into_owned()
            } else {
                "unknown error".to_string()
            };
            ffi::lua_settop(l, top);
            return Err(format!("ERR {msg}"));
        }
        ffi::lua_settop(l, top);
    }
    Ok(params.outcome)
}

/// The protected part of [`run`]: pushes the handler, KEYS and ARGV (or a function's two
/// tables), calls the script and reads its result into the reply.
///
/// # Safety
/// Called by Lua only, from [`run`], with the light userdata of a live [`Params`] as its
/// one argument. Follows the module's rule: while it calls functions that may raise it
/// holds only plain values and `&mut` to values owned by `run`.
pub unsafe extern "C-unwind" fn body(l: *mut ffi::lua_State) -> c_int {
    unsafe {
        let p = &mut *(ffi::lua_touserdata(l, 1) as *mut Params<'_, '_, '_>);
        ffi::lua_settop(l, 0);
        ffi::lua_checkstack(l, 8);
        let call = p.call;
        // Stack: 1 handler, 2 globals, 3 the function.
        ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, call.handler as ffi::lua_Integer);
        ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, call.globals as ffi::lua_Integer);
        ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, call.f as ffi::lua_Integer);
        let nargs = if call.function {
            ffi::lua_pushvalue(l, 3);
            push_strings(l, p.keys);
            push_strings(l, p.args);
            2
        } else {
            ffi::lua_rawgeti(
                l,
                ffi::LUA_REGISTRYINDEX,
                call.keys_name as ffi::lua_Integer,
            );
            match call.kept {
                Some(k) => super::argtable::push_kept(l, k.keys, k.dummy, p.keys),
                None => push_strings(l, p.keys),
            }
            ffi::lua_rawset(l, 2);
            ffi::lua_rawgeti(
                l,
                ffi::LUA_REGISTRYINDEX,
                call.argv_name as ffi::lua_Integer,
            );
            match call.kept {
                Some(k) => super::argtable::push_kept(l, k.argv, k.dummy, p.args),
                None => push_strings(l, p.args),
            }
            ffi::lua_rawset(l, 2);
            ffi::lua_pushvalue(l, 3);
            0
        };
        let status = ffi::lua_pcall(l, nargs, 1, 1);
        let top = ffi::lua_gettop(l);
        if status == 0 {
            let resp3 = call::script_resp3();
            write_value(l, top, p.out, resp3, 0);
        } else {
            p.outcome = failed(l);
        }
        ffi::lua_settop(l, 0);
        0
    }
}

/// Reads the handler's `{msg, source, line}` (or a bare error value) at the top.
unsafe fn failed(l: *mut ffi::lua_State) -> Outcome {
    unsafe {
        let e = ffi::lua_gettop(l);
        if ffi::lua_type(l, e) != ffi::LUA_TTABLE {
            let msg = if ffi::lua_type(l, e) == ffi::LUA_TSTRING {
                let mut m = b"ERR ".to_vec();
                m.extend_from_slice(string_at(l, e));
                m
            } else {
                b"ERR unknown error".to_vec()
            };
            return Outcome::Failed(msg, None);
        }
        let msg = if ffi::lua_rawgeti(l, e, 1) == ffi::LUA_TSTRING {
            string_at(l, -1).to_vec()
        } else {
            b"ERR unknown error".to_vec()
        };
        let source =
            (ffi::lua_rawgeti(l, e, 2) == ffi::LUA_TSTRING).then(|| string_at(l, -1).to_vec());
        let line = (ffi::lua_rawgeti(l, e, 3) == ffi::LUA_TNUMBER)
            .then(|| ffi::lua_tonumber(l, -1) as i64);
        Outcome::Failed(msg, source.zip(line))
    }
}
