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

use mlua::{Function, Lua, LuaOptions, StdLib, Table, Value};

use super::{fast, libs, Scripts, Sha};

/// Bytes one thread's Lua state may hold unless `lua-memory-limit` says otherwise: a
/// script that builds an unbounded table gets "not enough memory", not the machine's RAM.
pub const DEFAULT_MEMORY_LIMIT: u64 = 256 << 20;

const PRELUDE: &str = include_str!("prelude.lua");

/// A thread's interpreter.
pub struct Vm {
    pub lua: Lua,
    /// The prelude's message handler (finds where an error happened).
    pub handler: Function,
    /// The globals scripts read through their read-only view (KEYS and ARGV are set here).
    pub globals: Table,
    compile: Function,
    pub load_library: Function,
    compiled: super::ShaMap<Function>,
    /// Functions of FUNCTION libraries, by function name.
    pub functions: HashMap<String, Function>,
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
            vm.compiled.clear();
            vm.functions.clear();
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
        Ok(Vm {
            lua,
            handler,
            globals,
            compile,
            load_library,
            compiled: super::ShaMap::default(),
            functions: HashMap::new(),
            owner: scripts.id(),
            epoch: scripts.epoch(),
            limit,
        })
    }

    /// The compiled function of a cached script, compiling it on first use. The error is
    /// Redis's text for a script that does not compile.
    pub fn script(&mut self, sha: &Sha, body: &[u8]) -> Result<&Function, String> {
        if !self.compiled.contains_key(sha) {
            let f = self
                .compile_chunk(body, "@user_script")
                .map_err(|e| format!("ERR Error compiling script (new function): {e}"))?;
            self.compiled.insert(*sha, f);
        }
        self.compiled
            .get(sha)
            .ok_or_else(|| "ERR Error compiling script".to_string())
    }

    /// What `fast::run` calls a cached script with: the interpreter, the handler, the
    /// globals and the script's function.
    pub fn eval_parts(&mut self, sha: &Sha, body: &[u8]) -> Result<fast::Call<'_>, String> {
        self.script(sha, body)?;
        let f = self
            .compiled
            .get(sha)
            .ok_or_else(|| "ERR Error compiling script".to_string())?;
        Ok(fast::Call {
            lua: &self.lua,
            handler: &self.handler,
            globals: &self.globals,
            f,
            function: false,
        })
    }

    /// The same for a FUNCTION library's function (already loaded on this thread).
    pub fn function_parts(&self, name: &str) -> Result<fast::Call<'_>, String> {
        let f = self
            .functions
            .get(name)
            .ok_or_else(|| "ERR Function not found".to_string())?;
        Ok(fast::Call {
            lua: &self.lua,
            handler: &self.handler,
            globals: &self.globals,
            f,
            function: true,
        })
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
