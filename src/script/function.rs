//! FUNCTION libraries: Redis 7's named, persistent-by-code functions.
//!
//! The registry keeps each library's code and what it registered (names, flags,
//! descriptions). `FUNCTION LOAD` runs the code once on the loading thread's interpreter to
//! validate it and learn its functions; every other thread runs the same code the first
//! time one of its clients calls a function of the library (library code may only register
//! functions and log, so running it again has no other effect). Any change moves the
//! registry's epoch, so every thread drops what it compiled before.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use bytes::Bytes;
use mlua::{Function, Lua, Value};

use super::{vm, ScriptFlags, Scripts};

/// One registered function.
#[derive(Debug, Clone)]
pub struct FunctionInfo {
    pub name: String,
    pub description: Option<String>,
    pub flags: ScriptFlags,
}

/// One library.
#[derive(Debug, Clone)]
pub struct Library {
    pub name: String,
    pub code: Bytes,
    pub functions: Vec<FunctionInfo>,
}

/// The libraries, and which library each function belongs to.
#[derive(Debug, Default)]
pub struct Libraries {
    pub libs: BTreeMap<String, Library>,
    by_function: HashMap<String, String>,
}

impl Libraries {
    /// The function's flags and its library's name and code.
    pub fn function(&self, name: &str) -> Option<(ScriptFlags, &Library)> {
        let lib = self.libs.get(self.by_function.get(name)?)?;
        let f = lib.functions.iter().find(|f| f.name == name)?;
        Some((f.flags, lib))
    }

    pub fn counts(&self) -> (usize, usize) {
        (self.libs.len(), self.by_function.len())
    }

    /// Adds (or with `replace`, replaces) a library after checking its functions' names.
    pub fn insert(&mut self, lib: Library, replace: bool) -> Result<(), String> {
        if !replace && self.libs.contains_key(&lib.name) {
            return Err(format!("ERR Library '{}' already exists", lib.name));
        }
        for f in &lib.functions {
            if let Some(owner) = self.by_function.get(&f.name) {
                if *owner != lib.name {
                    return Err(format!("ERR Function {} already exists", f.name));
                }
            }
        }
        self.remove(&lib.name);
        for f in &lib.functions {
            self.by_function.insert(f.name.clone(), lib.name.clone());
        }
        self.libs.insert(lib.name.clone(), lib);
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Option<Library> {
        let lib = self.libs.remove(name)?;
        for f in &lib.functions {
            self.by_function.remove(&f.name);
        }
        Some(lib)
    }

    pub fn clear(&mut self) {
        self.libs.clear();
        self.by_function.clear();
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

const BAD_NAME: &str = "ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

/// The library name in `#!lua name=<name>`, with Redis's errors.
pub fn library_name(code: &[u8]) -> Result<String, String> {
    if !code.starts_with(b"#!") {
        return Err("ERR Missing library metadata".into());
    }
    let end = code
        .iter()
        .position(|&c| c == b'\n')
        .ok_or_else(|| "ERR Invalid library metadata".to_string())?;
    let line = String::from_utf8_lossy(&code[2..end]).into_owned();
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let engine = parts.next().unwrap_or("");
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(format!("ERR Engine '{engine}' not found"));
    }
    let mut name = None;
    for p in parts {
        match p.strip_prefix("name=") {
            Some(n) => name = Some(n.to_string()),
            None => return Err(format!("ERR Invalid metadata value given: {p}")),
        }
    }
    let name = name.ok_or_else(|| "ERR Library name was not given".to_string())?;
    if !valid_name(&name) {
        return Err(BAD_NAME.into());
    }
    Ok(name)
}

type Registered = Rc<RefCell<Vec<(FunctionInfo, Function)>>>;

/// `redis.register_function(name, callback)` or `redis.register_function{function_name=…,
/// callback=…, flags={…}, description=…}`.
fn register(lua: &Lua, into: Registered, args: mlua::MultiValue) -> mlua::Result<(bool, Value)> {
    // `(false, {err=…})`: the prelude's `raising` wrapper raises it, and the client gets
    // "ERR Error registering functions: <msg>", as Redis words it.
    let fail = |msg: &str| -> mlua::Result<(bool, Value)> {
        let t = lua.create_table()?;
        t.raw_set("err", msg)?;
        Ok((false, Value::Table(t)))
    };
    let args: Vec<Value> = args.into_iter().collect();
    let (name, callback, flags, description) = match args.as_slice() {
        [Value::Table(t)] => {
            let mut name = None;
            let mut callback = None;
            let mut flags = ScriptFlags::default();
            let mut description = None;
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair?;
                let key = match &k {
                    Value::String(s) => s.to_string_lossy().to_string(),
                    _ => return fail(
                        "ERR named argument key given to redis.register_function is not a string",
                    ),
                };
                match (key.as_str(), v) {
                    ("function_name", Value::String(s)) => name = Some(s.to_string_lossy().to_string()),
                    ("function_name", _) => return fail("ERR function_name argument given to redis.register_function must be a string"),
                    ("callback", Value::Function(f)) => callback = Some(f),
                    ("callback", _) => return fail("ERR callback argument given to redis.register_function must be a function"),
                    ("description", Value::String(s)) => description = Some(s.to_string_lossy().to_string()),
                    ("description", _) => return fail("ERR description argument given to redis.register_function must be a string"),
                    ("flags", Value::Table(ft)) => {
                        for f in ft.sequence_values::<Value>() {
                            match f? {
                                Value::String(s) if flags.set(&s.to_string_lossy()) => {}
                                _ => return fail("ERR unknown flag given"),
                            }
                        }
                    }
                    ("flags", _) => return fail("ERR flags argument to redis.register_function must be a table representing function flags"),
                    _ => return fail("ERR unknown argument given to redis.register_function"),
                }
            }
            let Some(name) = name else {
                return fail("ERR redis.register_function must get a function name argument");
            };
            let Some(callback) = callback else {
                return fail("ERR redis.register_function must get a callback argument");
            };
            (name, callback, flags, description)
        }
        [Value::String(n), cb] => {
            let Value::Function(f) = cb else {
                return fail("ERR second argument to redis.register_function must be a function");
            };
            (
                n.to_string_lossy().to_string(),
                f.clone(),
                ScriptFlags::default(),
                None,
            )
        }
        [_, _] => return fail("ERR first argument to redis.register_function must be a string"),
        _ => return fail("ERR wrong number of arguments to redis.register_function"),
    };
    if !valid_name(&name) {
        return fail(BAD_NAME);
    }
    let mut reg = into.borrow_mut();
    if reg.iter().any(|(f, _)| f.name == name) {
        return fail("ERR Function already exists in the library");
    }
    reg.push((
        FunctionInfo {
            name,
            description,
            flags: ScriptFlags {
                declared: true,
                ..flags
            },
        },
        callback,
    ));
    Ok((true, Value::Nil))
}

/// Runs a library's code on this thread's interpreter; returns what it registered.
fn run_library(vm: &vm::Vm, code: &[u8]) -> Result<Vec<(FunctionInfo, Function)>, String> {
    let f = vm
        .compile_chunk(code, "@user_function")
        .map_err(|e| format!("ERR Error compiling function: {e}"))?;
    let registered: Registered = Rc::new(RefCell::new(Vec::new()));
    let into = registered.clone();
    let register_fn = vm
        .lua
        .create_function(move |lua, args: mlua::MultiValue| register(lua, into.clone(), args))
        .map_err(|e| format!("ERR {e}"))?;
    let (ok, e): (bool, Value) = vm
        .load_library
        .call((f, register_fn))
        .map_err(|e| format!("ERR {e}"))?;
    if !ok {
        let msg = match &e {
            Value::Table(t) => match t.raw_get::<Value>(1) {
                Ok(Value::String(s)) => s.to_string_lossy().to_string(),
                _ => "ERR unknown error".into(),
            },
            other => format!("ERR {}", vm::describe(other)),
        };
        return Err(format!("ERR Error registering functions: {}", clean(&msg)));
    }
    let out = std::mem::take(&mut *registered.borrow_mut());
    if out.is_empty() {
        return Err("ERR No functions registered".into());
    }
    Ok(out)
}

/// mlua wraps errors raised from Rust callbacks as "runtime error: …" (and may add a
/// traceback); the client gets Redis's text.
fn clean(msg: &str) -> String {
    let m = msg
        .strip_prefix("ERR runtime error: ")
        .map(|m| m.to_string());
    let m = m.unwrap_or_else(|| msg.to_string());
    m.lines().next().unwrap_or("").to_string()
}

/// Compiles and runs a library's code to learn its functions (FUNCTION LOAD, RESTORE).
pub fn validate(scripts: &Scripts, code: &[u8]) -> Result<Library, String> {
    let name = library_name(code)?;
    let functions = vm::with(scripts, |vm| {
        run_library(vm, code).map(|r| r.into_iter().map(|(info, _)| info).collect::<Vec<_>>())
    })??;
    Ok(Library {
        name,
        code: Bytes::copy_from_slice(code),
        functions,
    })
}

/// FUNCTION LOAD: validates and adds a library; returns its name.
pub fn load(scripts: &Scripts, code: &[u8], replace: bool) -> Result<String, String> {
    let name = library_name(code)?;
    if !replace && scripts.libraries().libs.contains_key(&name) {
        return Err(format!("ERR Library '{name}' already exists"));
    }
    let lib = validate(scripts, code)?;
    scripts.libraries_mut().insert(lib, replace)?;
    scripts.bump();
    Ok(name)
}

/// Makes sure this thread's interpreter has the functions of `lib`.
pub fn ensure_loaded(vm: &mut vm::Vm, lib: &Library) -> Result<(), String> {
    if lib.functions.iter().all(|f| vm.has_function(&f.name)) {
        return Ok(());
    }
    for (info, f) in run_library(vm, &lib.code)? {
        vm.add_function(info.name, &f)?;
    }
    Ok(())
}
