//! EVAL's KEYS and ARGV tables, kept from one run to the next on a thread's state and
//! refilled in place.
//!
//! # Why
//!
//! Redis gives every EVAL two new tables. Made the same way here, they were the largest
//! user-space cost of a short script: two tables and their two arrays allocated per call,
//! then freed by Lua's collector, which sweeps dead objects about forty at a time. A batch
//! of frees that size overflows glibc's per-thread cache (seven chunks per size), so the
//! next calls' allocations take `malloc`'s slow path. `perf record` of the rate-limiter
//! load (EVALSHA INCR+EXPIRE, one hot counter) put `_int_malloc` at 3–4% of the server's
//! samples, all of it under `lua_createtable` for these two tables, and the collector
//! (`singlestep`, `propagatemark`, `sweeplist`) at about 3% more.
//!
//! # Why a script cannot tell
//!
//! A refilled table is only observable by a script that keeps a reference to it from one
//! run to the next, and the sandbox leaves a script nowhere to keep one: globals and every
//! library table are read-only (`prelude.lua`), and an EVAL body's locals end with the run.
//! Within a run, the table is what a fresh one would be, down to its sizes (`#` of a table
//! with holes depends on the array's size): before each reuse it is checked to have no
//! metatable, no hash part and the array size a fresh table for this call gets, and every
//! array slot is overwritten: `1..n` with this call's strings, the rest with nil. A table
//! a script changed in any other way (Redis allows a script to change KEYS and ARGV) is
//! left to the collector and a fresh one takes its place; so a script that grew ARGV does
//! not pin that memory for later runs either.
//!
//! FUNCTION calls are not served from here: a library's functions share the library
//! chunk's locals, where a function *can* keep the tables it was called with.
//!
//! # Reading a table's sizes
//!
//! Lua 5.1's API does not say how large a table's array and hash parts are. [`Shape`] reads
//! them from the `Table` struct of the Lua 5.1.5 that mlua vendors (`lobject.h`), and an
//! empty hash part by its address (Lua's shared `dummynode`). The mirror is verified on
//! probe tables whenever a state is built ([`layout_matches`]); if it does not match
//! (another Lua build), every run gets fresh tables.

use std::ffi::{c_int, c_void};

use mlua::ffi;

/// Lua 5.1.5's `Table` (`lobject.h`): `CommonHeader` (`next`, `tt`, `marked`), `flags`,
/// `lsizenode`, `metatable`, `array`, `node`, `lastfree`, `gclist`, `sizearray`.
#[repr(C)]
struct Table51 {
    next: *mut c_void,
    tt: u8,
    marked: u8,
    flags: u8,
    lsizenode: u8,
    metatable: *mut c_void,
    array: *mut c_void,
    node: *mut c_void,
    lastfree: *mut c_void,
    gclist: *mut c_void,
    sizearray: c_int,
}

/// What the checks need of a table.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    tt: u8,
    /// log2 of the hash part's node count (0 for an empty hash part, and for one node).
    lsizenode: u8,
    has_metatable: bool,
    sizearray: c_int,
    /// The hash part: Lua's shared empty node (`dummynode`) when it has none.
    node: usize,
}

/// The shape of the table at `idx`.
///
/// # Safety
/// The value at `idx` is a table of the Lua 5.1.5 that mlua vendors (`Cargo.toml` selects
/// it; [`Table51`] is its size). Whether the fields mean what their names say is what
/// [`layout_matches`] checks; callers outside it use a shape only once that check held.
unsafe fn shape(l: *mut ffi::lua_State, idx: c_int) -> Shape {
    unsafe {
        let t = &*(ffi::lua_topointer(l, idx) as *const Table51);
        Shape {
            tt: t.tt,
            lsizenode: t.lsizenode,
            has_metatable: !t.metatable.is_null(),
            sizearray: t.sizearray,
            node: t.node as usize,
        }
    }
}

/// Whether the mirror reads what Lua built, on probe tables of known sizes (one with a
/// metatable), and the address of Lua's shared empty hash part: `Some(dummynode)` if the
/// mirror holds. Called when a state is built, inside a protected call (it allocates).
///
/// # Safety
/// `l` is a live state with 3 free stack slots, in a protected call.
pub unsafe fn layout_matches(l: *mut ffi::lua_State) -> Option<usize> {
    unsafe {
        let top = ffi::lua_gettop(l);
        ffi::lua_createtable(l, 3, 5);
        let a = shape(l, -1);
        ffi::lua_createtable(l, 0, 0);
        let b = shape(l, -1);
        ffi::lua_createtable(l, 17, 0);
        ffi::lua_pushvalue(l, -2);
        ffi::lua_setmetatable(l, -2);
        let c = shape(l, -1);
        ffi::lua_settop(l, top);
        let tt = ffi::LUA_TTABLE as u8;
        let dummy = b.node;
        let expect = |s: &Shape, lsizenode, has_metatable, sizearray| {
            s.tt == tt
                && s.lsizenode == lsizenode
                && s.has_metatable == has_metatable
                && s.sizearray == sizearray
        };
        let ok = expect(&a, 3, false, 3)
            && a.node != dummy
            && expect(&b, 0, false, 0)
            && expect(&c, 0, true, 17)
            && c.node == dummy;
        ok.then_some(dummy)
    }
}

/// Whether the table at the top of the stack can be refilled for `n` strings and then be
/// what a fresh one is: no metatable, no hash part (Lua's shared empty one), and the array
/// size a fresh table gets ([`super::fast::redis_array_size`]). Reads only.
///
/// # Safety
/// The top of the stack is a table; `dummy` is what [`layout_matches`] returned.
unsafe fn reusable(l: *mut ffi::lua_State, n: usize, dummy: usize) -> bool {
    unsafe {
        let s = shape(l, -1);
        !s.has_metatable && s.node == dummy && s.sizearray == super::fast::redis_array_size(n)
    }
}

/// Pushes the table for `items` kept at registry reference `slot`: refilled in place when
/// [`reusable`], else a fresh one, which the slot then keeps.
///
/// # Safety
/// Inside a protected call (may raise on allocation); `slot` is a registry reference this
/// module owns; `dummy` is what [`layout_matches`] returned for this state; 3 free stack
/// slots.
pub unsafe fn push_kept(l: *mut ffi::lua_State, slot: c_int, dummy: usize, items: &[&[u8]]) {
    unsafe {
        ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, slot as ffi::lua_Integer);
        if items.len() <= 1 << 20
            && ffi::lua_type(l, -1) == ffi::LUA_TTABLE
            && reusable(l, items.len(), dummy)
        {
            for (i, item) in items.iter().enumerate() {
                super::fast::push_bytes(l, item);
                ffi::lua_rawseti(l, -2, (i + 1) as ffi::lua_Integer);
            }
            for i in items.len() as c_int + 1..=super::fast::redis_array_size(items.len()) {
                ffi::lua_pushnil(l);
                ffi::lua_rawseti(l, -2, i as ffi::lua_Integer);
            }
            return;
        }
        ffi::lua_settop(l, -2);
        super::fast::push_strings(l, items);
        ffi::lua_pushvalue(l, -1);
        ffi::lua_rawseti(l, ffi::LUA_REGISTRYINDEX, slot as ffi::lua_Integer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a fresh state's main stack, in a protected call, with Lua's empty hash
    /// part's address (the layout check must hold).
    fn with_state<R: mlua::FromLuaMulti>(
        lua: &mlua::Lua,
        f: impl FnOnce(*mut ffi::lua_State, usize),
    ) -> R {
        // SAFETY: exec_raw runs the closure in a protected call on the main state; the
        // closures below hold only plain values while they call Lua.
        unsafe {
            lua.exec_raw::<R>((), |l| {
                ffi::lua_checkstack(l, 16);
                let dummy =
                    layout_matches(l).expect("Lua's Table struct is not the one argtable.rs reads");
                f(l, dummy);
            })
            .expect("exec_raw")
        }
    }

    /// The mirror of Lua's `Table` matches the Lua this build vendors; if it ever stops
    /// matching, kept tables are off (every run allocates), and this test says why.
    #[test]
    fn the_table_layout_is_the_one_this_build_vendors() {
        let () = with_state(&mlua::Lua::new(), |_, _| {});
    }

    /// Fresh tables have the array size Redis's do (what `#` of a table with holes shows).
    #[test]
    fn fresh_tables_are_sized_as_redis_builds_them() {
        let sizes: Vec<c_int> = (0..=9).map(crate::script::fast::redis_array_size).collect();
        assert_eq!(sizes, vec![0, 1, 2, 4, 4, 8, 8, 8, 8, 16]);
    }

    /// A kept table is refilled when plain, and replaced when a run left it otherwise.
    #[test]
    fn a_table_is_refilled_only_when_plain() {
        let same = |l, slot, dummy, items: &[&[u8]], change: &dyn Fn(*mut ffi::lua_State)| unsafe {
            push_kept(l, slot, dummy, items);
            change(l);
            let before = ffi::lua_topointer(l, -1);
            ffi::lua_settop(l, -2);
            push_kept(l, slot, dummy, items);
            let after = ffi::lua_topointer(l, -1);
            ffi::lua_settop(l, -2);
            before == after
        };
        let lua = mlua::Lua::new();
        let outcome: mlua::Table = with_state(&lua, |l, dummy| unsafe {
            let slot = {
                ffi::lua_createtable(l, 0, 0);
                ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX)
            };
            let two: &[&[u8]] = &[b"a", b"b"];
            let results = [
                // Untouched, or only its values changed: refilled.
                same(l, slot, dummy, two, &|_| {}),
                same(l, slot, dummy, two, &|l| {
                    ffi::lua_pushnil(l);
                    ffi::lua_rawseti(l, -2, 1);
                }),
                // A metatable; a key in the hash part (even one set back to nil); an array
                // grown past what the call needs: replaced.
                !same(l, slot, dummy, two, &|l| {
                    ffi::lua_createtable(l, 0, 0);
                    ffi::lua_setmetatable(l, -2);
                }),
                !same(l, slot, dummy, two, &|l| {
                    ffi::lua_pushinteger(l, 1);
                    ffi::lua_setfield(l, -2, c"extra".as_ptr());
                    ffi::lua_pushnil(l);
                    ffi::lua_setfield(l, -2, c"extra".as_ptr());
                }),
                !same(l, slot, dummy, two, &|l| {
                    for i in 1..=100 {
                        ffi::lua_pushinteger(l, i);
                        ffi::lua_rawseti(l, -2, i as ffi::lua_Integer);
                    }
                }),
            ];
            ffi::lua_createtable(l, 8, 0);
            for (i, r) in results.iter().enumerate() {
                ffi::lua_pushboolean(l, *r as c_int);
                ffi::lua_rawseti(l, -2, (i + 1) as ffi::lua_Integer);
            }
            // Three strings, then one in a table of another size (replaced), then three
            // again: refilled, with what the one-string call left gone.
            push_kept(l, slot, dummy, &[b"x", b"y", b"z"]);
            ffi::lua_settop(l, -2);
            push_kept(l, slot, dummy, &[b"only"]);
            ffi::lua_settop(l, -2);
            push_kept(l, slot, dummy, &[b"p", b"q", b"r"]);
            ffi::lua_settop(l, -2);
            push_kept(l, slot, dummy, &[b"s", b"t"]);
            ffi::lua_rawseti(l, -2, 6);
        });
        for i in 1..=5 {
            assert!(outcome.raw_get::<bool>(i).expect("flag"), "check {i}");
        }
        let last: mlua::Table = outcome.raw_get(6).expect("table");
        let got: Vec<mlua::Value> = (1..=4).map(|i| last.raw_get(i).expect("slot")).collect();
        assert_eq!(
            got[0].as_string().map(|s| s.to_string_lossy()),
            Some("s".into())
        );
        assert_eq!(
            got[1].as_string().map(|s| s.to_string_lossy()),
            Some("t".into())
        );
        assert!(got[2].is_nil() && got[3].is_nil(), "{got:?}");
    }
}
