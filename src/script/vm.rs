//! One Lua 5.1 state per thread: built once, with the sandbox of `prelude.lua` and the
//! libraries Redis ships (`libs`), and a table of the scripts it has compiled.
//!
//! A state is never shared between threads (mlua's `Lua` is not `Send` here), so a script
//! runs on the thread of the connection that called it, under the shard locks its block
//! holds; nothing waits for an interpreter. Compiled functions are kept by SHA1 until the
//! registry's epoch moves (SCRIPT FLUSH, FUNCTION changes), then all are dropped at once
//! and rebuilt on demand from the registry's bodies.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_int;

use mlua::{ffi, Function, Lua, LuaOptions, StdLib, Table, Value};

use super::{fast, libs, Scripts, Sha};

/// Bytes one thread's Lua state may hold unless `lua-memory-limit` says otherwise: a
/// script that builds an unbounded table gets "not enough memory", not the machine's RAM.
pub const DEFAULT_MEMORY_LIMIT: u64 = 256 << 20;

const PRELUDE: &str = include_str!("prelude.lua");

/// A thread's interpreter.
///
/// What a run needs is also held in the Lua registry, by reference number: the handler,
/// the globals, `fast::body`, and every compiled script and function. `fast::run` pushes
/// them from there, on the state's own stack, without mlua's per-call set-up.
pub struct Vm {
    pub lua: Lua,
    /// The prelude's message handler (finds where an error happened).
    pub handler: Function,
    /// The globals scripts read through their read-only view (KEYS and ARGV are set here).
    pub globals: Table,
    compile: Function,
    pub load_library: Function,
    /// The main state of `lua`, and the registry references of `fast::body`, the handler,
    /// the globals and the names "KEYS" and "ARGV".
    state: *mut ffi::lua_State,
    runner: c_int,
    handler_ref: c_int,
    globals_ref: c_int,
    keys_name: c_int,
    argv_name: c_int,
    /// Registry references of EVAL's kept KEYS and ARGV tables (`argtable.rs`); `None` when
    /// this Lua build's table layout is not the one `argtable` reads.
    kept: Option<fast::Kept>,
    /// Compiled scripts by SHA1: their registry references.
    compiled: super::ShaMap<c_int>,
    /// Functions of FUNCTION libraries, by function name: their registry references.
    functions: HashMap<String, c_int>,
    /// The registry this state's functions came from, and its epoch then.
    owner: u64,
    epoch: u64,
    limit: u64,
}

thread_local! {
    static VM: RefCell<Option<Vm>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's interpreter for `scripts`, building it first if needed.
pub fn with<R>(scripts: &Scripts, f: impl FnOnce(&mut Vm) -> R) -> Result<R, String> {
    VM.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| "ERR scripts cannot call scripts".to_string())?;
        let stale = match slot.as_ref() {
            Some(vm) => vm.owner != scripts.id(),
            None => true,
        };
        if stale {
            *slot = None;
            *slot = Some(Vm::new(scripts).map_err(|e| format!("ERR cannot start Lua: {e}"))?);
        }
        let Some(vm) = slot.as_mut() else {
            return Err("ERR cannot start Lua".to_string());
        };
        let epoch = scripts.epoch();
        if vm.epoch != epoch {
            vm.unpin_all();
            vm.epoch = epoch;
        }
        let limit = scripts
            .memory_limit
            .load(std::sync::atomic::Ordering::Relaxed);
        if vm.limit != limit {
            let _ = vm.lua.set_memory_limit(limit as usize);
            vm.limit = limit;
        }
        Ok(f(vm))
    })
}

impl Vm {
    fn new(scripts: &Scripts) -> mlua::Result<Vm> {
        let std = StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::OS | StdLib::DEBUG;
        // SAFETY: `debug` is needed by the prelude only (to find the line of an error); the
        // prelude keeps `debug.getinfo` in a local and scripts never see the library.
        let lua = unsafe { Lua::unsafe_new_with(std, LuaOptions::default()) };
        let rt = super::call::runtime_table(&lua)?;
        let libs = libs::all(&lua)?;
        let (handler, globals, compile, load_library): (Function, Table, Function, Function) =
            lua.load(PRELUDE).set_name("=sessiond").call((rt, libs))?;
        let limit = scripts
            .memory_limit
            .load(std::sync::atomic::Ordering::Relaxed);
        lua.set_memory_limit(limit as usize)?;
        super::run::install_hook(&lua);
        let mut refs: (*mut ffi::lua_State, [c_int; 7], Option<usize>) =
            (std::ptr::null_mut(), [0; 7], None);
        let r = &mut refs;
        // SAFETY: the closure holds only plain values; `luaL_ref` may raise (allocation), and
        // does so inside exec_raw's protected call. The state pointer is the main state
        // (exec_raw runs on it outside coroutines), valid as long as `lua`.
        unsafe {
            lua.exec_raw::<()>((&handler, &globals), |l| {
                // Stack: 1 handler, 2 globals.
                ffi::lua_pushcfunction(l, fast::body);
                r.1[0] = ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX);
                r.1[2] = ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX);
                r.1[1] = ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX);
                ffi::lua_pushstring(l, c"KEYS".as_ptr());
                r.1[3] = ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX);
                ffi::lua_pushstring(l, c"ARGV".as_ptr());
                r.1[4] = ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX);
                ffi::lua_createtable(l, 0, 0);
                r.1[5] = ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX);
                ffi::lua_createtable(l, 0, 0);
                r.1[6] = ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX);
                r.2 = super::argtable::layout_matches(l);
                r.0 = l;
            })?;
        }
        let (
            state,
            [runner, handler_ref, globals_ref, keys_name, argv_name, kept_keys, kept_argv],
            layout,
        ) = refs;
        Ok(Vm {
            lua,
            handler,
            globals,
            compile,
            load_library,
            state,
            runner,
            handler_ref,
            globals_ref,
            keys_name,
            argv_name,
            kept: layout.map(|dummy| fast::Kept {
                keys: kept_keys,
                argv: kept_argv,
                dummy,
            }),
            compiled: super::ShaMap::default(),
            functions: HashMap::new(),
            owner: scripts.id(),
            epoch: scripts.epoch(),
            limit,
        })
    }

    /// The compiled function of a cached script, compiling it on first use. The error is
    /// Redis's text for a script that does not compile.
    pub fn script(&mut self, sha: &Sha, body: &[u8]) -> Result<c_int, String> {
        if let Some(&id) = self.compiled.get(sha) {
            return Ok(id);
        }
        let f = self
            .compile_chunk(body, "@user_script")
            .map_err(|e| format!("ERR Error compiling script (new function): {e}"))?;
        let id = self.pin(&f)?;
        self.compiled.insert(*sha, id);
        Ok(id)
    }

    /// What `fast::run` calls a cached script with: the state, the handler, the globals
    /// and the script's function.
    pub fn eval_parts(&mut self, sha: &Sha, body: &[u8]) -> Result<fast::Call, String> {
        let f = self.script(sha, body)?;
        Ok(self.call(f, false))
    }

    /// The same for a FUNCTION library's function (already loaded on this thread).
    pub fn function_parts(&self, name: &str) -> Result<fast::Call, String> {
        let f = *self
            .functions
            .get(name)
            .ok_or_else(|| "ERR Function not found".to_string())?;
        Ok(self.call(f, true))
    }

    fn call(&self, f: c_int, function: bool) -> fast::Call {
        fast::Call {
            state: self.state,
            runner: self.runner,
            handler: self.handler_ref,
            globals: self.globals_ref,
            keys_name: self.keys_name,
            argv_name: self.argv_name,
            kept: if function { None } else { self.kept },
            f,
            function,
        }
    }

    /// Whether a FUNCTION library's function is loaded on this thread.
    pub fn has_function(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    /// Keeps a FUNCTION library's function for `function_parts`.
    pub fn add_function(&mut self, name: String, f: &Function) -> Result<(), String> {
        let id = self.pin(f)?;
        if let Some(old) = self.functions.insert(name, id) {
            self.unpin(&[old]);
        }
        Ok(())
    }

    /// A registry reference to `f`.
    fn pin(&self, f: &Function) -> Result<c_int, String> {
        let mut id = ffi::LUA_NOREF;
        let r = &mut id;
        // SAFETY: `luaL_ref` may raise (allocation) inside exec_raw's protected call; the
        // closure holds only a `&mut` to a plain value.
        unsafe {
            self.lua
                .exec_raw::<()>(f, |l| *r = ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX))
                .map_err(|e| format!("ERR {e}"))?;
        }
        Ok(id)
    }

    fn unpin(&self, ids: &[c_int]) {
        // SAFETY: as in `pin`; the closure borrows `ids`, owned outside the call.
        let _ = unsafe {
            self.lua.exec_raw::<()>((), |l| {
                for &id in ids {
                    ffi::luaL_unref(l, ffi::LUA_REGISTRYINDEX, id);
                }
            })
        };
    }

    /// Drops every compiled script and function (the registry's epoch moved).
    fn unpin_all(&mut self) {
        let ids: Vec<c_int> = self
            .compiled
            .drain()
            .map(|(_, id)| id)
            .chain(self.functions.drain().map(|(_, id)| id))
            .collect();
        self.unpin(&ids);
    }

    /// Compiles Lua source (a shebang line is kept as a comment) in the scripts'
    /// environment; the error is Lua's message.
    pub fn compile_chunk(&self, body: &[u8], name: &str) -> Result<Function, String> {
        let src = super::shebang::lua_source(body);
        let src = self.lua.create_string(&*src).map_err(|e| e.to_string())?;
        let (f, err): (Option<Function>, Option<mlua::LuaString>) =
            self.compile.call((src, name)).map_err(|e| e.to_string())?;
        match f {
            Some(f) => Ok(f),
            None => Err(err
                .map(|e| e.to_string_lossy().to_string())
                .unwrap_or_else(|| "cannot compile".into())),
        }
    }

    /// A sequence of Lua strings (KEYS, ARGV).
    pub fn strings(&self, items: &[&[u8]]) -> mlua::Result<Table> {
        let t = self.lua.create_table_with_capacity(items.len(), 0)?;
        for (i, item) in items.iter().enumerate() {
            t.raw_set(i + 1, self.lua.create_string(item)?)?;
        }
        Ok(t)
    }

    /// Frees what the last script left (after an error, a kill, or a memory failure).
    pub fn collect(&self) {
        let _ = self.lua.gc_collect();
    }
}

/// The text of a Lua value, as `tostring` would give it (for error values).
pub fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string_lossy().to_string(),
        Value::Nil => "nil".into(),
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Error(e) => e.to_string(),
        other => other.type_name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiled scripts are held by registry references; a flush must release them, or
    /// every SCRIPT FLUSH would leak the functions compiled before it.
    #[test]
    fn a_flush_releases_compiled_scripts() {
        let scripts = Scripts::default();
        let compile_batch = |round: usize| {
            with(&scripts, |vm| {
                for i in 0..200 {
                    // Each body is a new function with a large constant table.
                    let body = format!(
                        "local t = {{{}}} return #t + {round} + {i}",
                        "1,".repeat(200)
                    );
                    let sha = super::super::sha1_hex(body.as_bytes());
                    vm.script(&sha, body.as_bytes()).map(|_| ())?;
                }
                vm.collect();
                Ok::<usize, String>(vm.lua.used_memory())
            })
            .and_then(|r| r)
        };
        let first = compile_batch(0).expect("compiles");
        let mut last = first;
        for round in 1..6 {
            scripts.flush();
            last = compile_batch(round).expect("compiles");
        }
        // Five more batches after flushes: the memory of one batch, not of six.
        assert!(
            last < first * 2,
            "Lua memory grew from {first} to {last} bytes"
        );
        // And without the flush, the batches accumulate: the check above can fail.
        let mut kept = last;
        for round in 6..9 {
            kept = compile_batch(round).expect("compiles");
        }
        assert!(kept > last * 2, "{kept} vs {last}");
    }
}
