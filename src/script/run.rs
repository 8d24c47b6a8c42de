//! Running one script or function: the shard locks it holds, the client its commands run
//! as, the checks on each command, the time limit, and the error text.
//!
//! **Locks.** [`run`] takes the shards of the declared keys (or all of them, for scripts
//! that may touch others; see `script/mod.rs`) with `Engine::atomically`, the same block
//! EXEC uses: the script's commands find those shards held and append their changes to
//! the block's one log frame. Inside EXEC the transaction's block already holds them.
//!
//! **The script's client.** Commands run as a client of their own (Redis's "lua client"):
//! the caller's database to start with, RESP2 unless the script asks for RESP3, no
//! transaction or subscriptions. `SELECT` inside a script therefore does not change the
//! caller's database (Redis 7). What the caller must learn afterwards is handed back: that
//! a write ran (its reply waits for the log) and which keys got data for blocked clients.
//!
//! **Time.** A count hook runs every [`HOOK_EVERY`] Lua instructions. After
//! [`HAND_OFF_MS`] a script on the multi-thread runtime hands its worker's other connections
//! (and the I/O driver it may be the one to poll) to a new thread
//! (`tokio::task::block_in_place`), so they are answered while the script runs on. Past
//! `busy-reply-threshold` the script is registered as busy: every other client's commands
//! get `-BUSY` (except those Redis allows: SCRIPT KILL, FUNCTION KILL, SHUTDOWN NOSAVE…); on
//! the current-thread runtime a rescue thread then accepts new connections
//! (`server/listener.rs`). A script that has not written can be killed: the hook raises an
//! error the script cannot catch (the prelude's pcall wrappers re-raise it). One that has
//! written is `UNKILLABLE`, as in Redis: its writes are not undone, so only `SHUTDOWN
//! NOSAVE` (which exits before the script's log frame is appended) ends it.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::BytesMut;
use mlua::Lua;

use super::call::{self, Host};
use super::function::Library;
use super::{fast, vm, Script, ScriptFlags, Scripts};
use crate::cmd::table::{self, Flags};
use crate::cmd::{keyspec, ClientState, CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::resp::reply::Proto;
use crate::resp::Reply;
use crate::server::Server;

/// Lua instructions between two checks of the clock and the kill flag.
pub const HOOK_EVERY: i32 = 100_000;

/// `busy-reply-threshold` (`lua-time-limit`) by default, in ms.
pub const DEFAULT_BUSY_MS: u64 = 5_000;

/// One running script, as the hook and SCRIPT KILL see it.
#[derive(Debug)]
pub struct RunState {
    started: Instant,
    /// A write command ran: the script can no longer be killed.
    wrote: AtomicBool,
    kill: AtomicBool,
    busy: AtomicBool,
    /// The script's SHA1 or the function's name.
    label: Label,
    pub function: bool,
    /// The command that started it, for FUNCTION STATS: filled in when the script turns
    /// busy (nothing is copied for the scripts that do not).
    pub command: Mutex<Vec<String>>,
}

#[derive(Debug)]
enum Label {
    Sha(super::Sha),
    Function(String),
}

thread_local! {
    /// The last run's state, reused by the next run on this thread when nothing else holds
    /// it (a busy script's state is shared with SCRIPT KILL and FUNCTION STATS): one
    /// allocation less per script call.
    static SPARE: Cell<Option<Arc<RunState>>> = const { Cell::new(None) };
}

impl RunState {
    fn start(label: Label, function: bool, started: Instant) -> Arc<RunState> {
        if let Some(mut spare) = SPARE.take() {
            if let Some(s) = Arc::get_mut(&mut spare) {
                s.started = started;
                *s.wrote.get_mut() = false;
                *s.kill.get_mut() = false;
                *s.busy.get_mut() = false;
                s.label = label;
                s.function = function;
                s.command
                    .get_mut()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                return spare;
            }
        }
        Arc::new(RunState {
            started,
            wrote: AtomicBool::new(false),
            kill: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            label,
            function,
            command: Mutex::new(Vec::new()),
        })
    }

    /// Keeps a finished run's state for the next run, if nothing else holds it.
    fn keep(state: Arc<RunState>) {
        if Arc::strong_count(&state) == 1 && Arc::weak_count(&state) == 0 {
            SPARE.set(Some(state));
        }
    }

    /// The script's SHA1 or the function's name, as errors and FUNCTION STATS show it.
    pub fn name(&self) -> &str {
        match &self.label {
            Label::Sha(s) => std::str::from_utf8(s).unwrap_or(""),
            Label::Function(f) => f,
        }
    }
}

/// Scripts running past the threshold: what `-BUSY`, SCRIPT KILL and FUNCTION STATS read.
pub struct Busy {
    slow: Mutex<Vec<Arc<RunState>>>,
    count: AtomicUsize,
    pub threshold_ms: AtomicU64,
    /// Started when a script turns busy on the current-thread runtime
    /// (`server/listener.rs`, `install_rescue`); one at a time.
    rescue: Mutex<Option<Rescue>>,
    rescuing: AtomicBool,
}

type Rescue = Box<dyn Fn() + Send + Sync>;

impl Default for Busy {
    fn default() -> Self {
        Busy {
            slow: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            threshold_ms: AtomicU64::new(DEFAULT_BUSY_MS),
            rescue: Mutex::new(None),
            rescuing: AtomicBool::new(false),
        }
    }
}

/// What SCRIPT KILL / FUNCTION KILL found.
#[derive(Debug, PartialEq, Eq)]
pub enum Kill {
    Killed,
    NotBusy,
    Unkillable,
    /// FUNCTION KILL while only a script (or SCRIPT KILL while only a function) is busy.
    WrongKind,
}

impl Busy {
    /// Whether any script runs past the threshold (one relaxed load: every command asks).
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// The `-BUSY` error for a command other clients send now, if a script is busy.
    pub fn refuse(&self, flags: Flags) -> Option<String> {
        if self.count.load(Ordering::Relaxed) == 0 || flags.has(Flags::ALLOW_BUSY) {
            return None;
        }
        let function = self
            .slow
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .all(|s| s.function);
        Some(if function {
            "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
                .into()
        } else {
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
                .into()
        })
    }

    /// Asks every busy script (of the kind) to stop.
    pub fn kill(&self, function: bool) -> Kill {
        let slow = self.slow.lock().unwrap_or_else(|p| p.into_inner());
        if slow.is_empty() {
            return Kill::NotBusy;
        }
        let mine: Vec<&Arc<RunState>> = slow.iter().filter(|s| s.function == function).collect();
        if mine.is_empty() {
            return Kill::WrongKind;
        }
        if mine.iter().any(|s| s.wrote.load(Ordering::Acquire)) {
            return Kill::Unkillable;
        }
        for s in mine {
            s.kill.store(true, Ordering::Release);
        }
        Kill::Killed
    }

    /// The longest-running busy script (FUNCTION STATS).
    pub fn running(&self) -> Option<(Arc<RunState>, u64)> {
        let slow = self.slow.lock().unwrap_or_else(|p| p.into_inner());
        slow.first()
            .map(|s| (s.clone(), s.started.elapsed().as_millis() as u64))
    }

    pub fn set_rescue(&self, f: Rescue) {
        *self.rescue.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    pub fn rescue_ended(&self) {
        self.rescuing.store(false, Ordering::Release);
    }

    /// Marks the rescue acceptor as running; false if one already is.
    pub fn claim_rescue(&self) -> bool {
        !self.rescuing.swap(true, Ordering::AcqRel)
    }

    /// Starts the rescue acceptor if one is installed and none runs.
    fn rescue(&self) {
        if !self.claim_rescue() {
            return;
        }
        match self
            .rescue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(f) => f(),
            None => self.rescuing.store(false, Ordering::Release),
        }
    }

    fn enter(&self, s: &Arc<RunState>) {
        self.slow
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(s.clone());
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn leave(&self, s: &Arc<RunState>) {
        let mut slow = self.slow.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = slow.iter().position(|x| Arc::ptr_eq(x, s)) {
            slow.swap_remove(i);
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What the count hook reads: the script running on this thread.
struct Watch {
    state: Arc<RunState>,
    busy: *const Busy,
    /// The command's arguments, copied into the state if the script turns busy.
    command: *const [&'static [u8]],
    /// Times the worker was handed off (see [`HAND_OFF_MS`]).
    handoffs: Cell<u32>,
}

/// A script running this long (ms) gives its worker's other connections to another thread
/// (multi-thread runtime). Scripts of sessions take microseconds; this is for the rest.
pub const HAND_OFF_MS: u64 = 10;

thread_local! {
    static WATCH: Cell<*const Watch> = const { Cell::new(std::ptr::null()) };
}

const KILLED: &[u8] = b"ERR Script killed by user with SCRIPT KILL...\0";

unsafe extern "C-unwind" fn hook(l: *mut mlua::ffi::lua_State, _ar: *mut mlua::ffi::lua_Debug) {
    let p = WATCH.with(Cell::get);
    if p.is_null() {
        return;
    }
    // SAFETY: set by `watching` to a value on its stack for the duration of the script and
    // cleared before that frame returns; only this thread reads it.
    let w = unsafe { &*p };
    if w.state.kill.load(Ordering::Acquire) {
        // SAFETY: raising an error from a count hook is allowed in Lua 5.1; no Rust value
        // with a destructor is live in this frame.
        unsafe {
            mlua::ffi::lua_createtable(l, 0, 1);
            mlua::ffi::lua_pushstring(l, KILLED.as_ptr() as *const std::ffi::c_char);
            mlua::ffi::lua_setfield(l, -2, c"err".as_ptr());
            mlua::ffi::lua_error(l);
        }
    }
    // SAFETY: the registry outlives the script (it belongs to the server).
    let busy = unsafe { &*w.busy };
    let elapsed = w.state.started.elapsed().as_millis() as u64;
    if elapsed >= HAND_OFF_MS && w.handoffs.get() < 3 {
        // A long script: the other connections of this worker (and the I/O driver it may
        // be the one to poll) move to another thread, so they are not stalled behind it.
        w.handoffs.set(w.handoffs.get() + 1);
        hand_off_worker();
    }
    // The threshold is read live, so CONFIG SET applies to scripts already running.
    if !w.state.busy.load(Ordering::Relaxed) && elapsed >= busy.threshold_ms.load(Ordering::Relaxed)
    {
        w.state.busy.store(true, Ordering::Relaxed);
        // SAFETY: the arguments live as long as the running command (see `run`).
        let args = unsafe { &*w.command };
        *w.state.command.lock().unwrap_or_else(|p| p.into_inner()) = args
            .iter()
            .take(8)
            .map(|a| String::from_utf8_lossy(&a[..a.len().min(64)]).into_owned())
            .collect();
        busy.enter(&w.state);
        if !hand_off_worker() {
            busy.rescue();
        }
    }
}

/// Lets the other connections of this worker thread be served while the script runs on:
/// on the multi-thread runtime the worker's queue moves to a new thread (true). On the
/// current-thread runtime there is no other worker (false): the caller starts the rescue
/// acceptor instead (`server/listener.rs`).
fn hand_off_worker() -> bool {
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            // block_in_place gives this worker's queue to a new thread, and takes it back
            // when the closure returns if that thread has not taken it yet: the pause lets
            // it do so. This thread then finishes the script outside the worker pool.
            tokio::task::block_in_place(|| {
                std::thread::sleep(std::time::Duration::from_millis(20))
            });
            return true;
        }
    }
    false
}

/// Installs the count hook on a new interpreter.
pub fn install_hook(lua: &Lua) {
    // SAFETY: sets a C hook on the main state; coroutines created later inherit it.
    let _ = unsafe {
        lua.exec_raw::<()>((), |state| {
            mlua::ffi::lua_sethook(state, Some(hook), mlua::ffi::LUA_MASKCOUNT, HOOK_EVERY);
        })
    };
}

fn watching<R>(w: &Watch, f: impl FnOnce() -> R) -> R {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            WATCH.with(|c| c.set(std::ptr::null()));
        }
    }
    WATCH.with(|c| c.set(w as *const Watch));
    let _clear = Clear;
    f()
}

/// `redis.log` from a script: the server's log, rate-limited (scripts are client input).
pub fn log(level: i64, msg: &str) {
    static THROTTLE: crate::logging::Throttle = crate::logging::Throttle::new();
    if THROTTLE.allow().is_none() {
        return;
    }
    let msg: String = msg.chars().take(1024).collect();
    match level {
        0 => tracing::debug!(target: "sessiond::script", "{msg}"),
        1 | 2 => tracing::info!(target: "sessiond::script", "{msg}"),
        _ => tracing::warn!(target: "sessiond::script", "{msg}"),
    }
}

/// What to run.
pub enum Target<'a> {
    Eval(&'a Arc<Script>),
    Function(&'a str, &'a Library),
}

/// The engine's side of a script: checks each command and runs it as the script's client.
struct EngineHost<'a, S: Deployment> {
    server: &'a Server<S>,
    client: ClientState,
    declared: &'a [&'a [u8]],
    all_shards: bool,
    read_only: bool,
    now: i64,
    state: &'a Arc<RunState>,
}

impl<S: Deployment> Host for EngineHost<'_, S> {
    fn call(&mut self, args: &[&[u8]], resp3: bool, out: &mut BytesMut) -> Result<(), String> {
        let Some(idx) = table::lookup(args[0]) else {
            return Err("ERR Unknown Redis command called from script".into());
        };
        let spec = &table::commands()[idx];
        let Some(id) = spec.id else {
            return Err("ERR Unknown Redis command called from script".into());
        };
        if id.engine_only() && self.server.store.engine().is_none() {
            return Err("ERR Unknown Redis command called from script".into());
        }
        if !table::arity_ok(spec.arity, args.len()) {
            return Err("ERR Wrong number of args calling Redis command from script".into());
        }
        let eff = table::subcommand(spec, args).unwrap_or(spec);
        if spec.flags.has(Flags::NOSCRIPT) || eff.flags.has(Flags::NOSCRIPT) {
            return Err("ERR This Redis command is not allowed from script".into());
        }
        if let Err(denied) = crate::cmd::acl_check(self.server, &mut self.client, spec, args, "lua")
        {
            return Err(denied.script_error());
        }
        let write = table::is_write(eff);
        if write {
            if self.read_only {
                return Err("ERR Write commands are not allowed from read-only scripts.".into());
            }
            if let Some(e) = self.server.persist.as_ref().and_then(|p| p.write_error()) {
                return Err(format!("MISCONF {e}"));
            }
        }
        if !self.all_shards {
            let mut keys = keyspec::each_key_of(eff, args).peekable();
            let keyless = keys.peek().is_none();
            if let Some(k) = keys.find(|k| !self.declared.contains(k)) {
                return Err(format!(
                    "ERR Script attempted to access key '{}' that it did not declare in KEYS: sessiond runs a script under the locks of its declared keys only (declare it, or allow undeclared keys: shebang flag no-cluster, the comment --!sessiond allow-undeclared-keys, or lua-allow-undeclared-keys yes)",
                    String::from_utf8_lossy(&k[..k.len().min(128)])
                ));
            }
            if keyless && !crate::cmd::multi::data_free(spec.id) {
                return Err(format!(
                    "ERR Script attempted to run '{}', which reaches beyond its keys, while holding only its declared keys (allow undeclared keys: shebang flag no-cluster, the comment --!sessiond allow-undeclared-keys, or lua-allow-undeclared-keys yes)",
                    eff.name
                ));
            }
        }
        if write {
            self.state.wrote.store(true, Ordering::Release);
            self.client.wrote = true;
        }
        self.client.proto = if resp3 { Proto::Resp3 } else { Proto::Resp2 };
        let proto = self.client.proto;
        let mut reply = Reply::new(out, proto);
        let fut = crate::cmd::execute_checked_at(
            self.server,
            &mut self.client,
            spec,
            args,
            &mut reply,
            self.now,
        );
        match crate::cmd::run_now(fut) {
            Some(_) => Ok(()),
            None => Err("ERR This Redis command is not allowed from script".into()),
        }
    }

    fn acl_check(&mut self, args: &[&[u8]]) -> Result<bool, String> {
        let Some(idx) = table::lookup(args[0]) else {
            return Err("ERR Invalid command passed to redis.acl_check_cmd()".into());
        };
        let spec = &table::commands()[idx];
        crate::cmd::current_user(self.server, &mut self.client);
        let eff = table::subcommand(spec, args).unwrap_or(spec);
        Ok(crate::acl::user::check(&self.client.user, eff, args).is_ok())
    }

    fn killed(&self) -> bool {
        self.state.kill.load(Ordering::Acquire)
    }
}

/// Whether a script or function call must hold every shard (it may touch keys it does
/// not declare). EXEC asks this of the scripts it queued.
pub fn needs_every_shard(scripts: &Scripts, flags: ScriptFlags) -> bool {
    flags.reaches_beyond_keys() || scripts.allow_undeclared.load(Ordering::Relaxed)
}

/// Runs a script or function for the command in `cx`, writing its reply.
pub fn run<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    target: Target<'_>,
    flags: ScriptFlags,
    keys: &[&[u8]],
    args: &[&[u8]],
    read_only: bool,
    command: &[&[u8]],
) -> CmdResult {
    let scripts = &cx.server.scripts;
    // In migration mode, the engine that serves every session in the current stage; the
    // router maps key names on the way to it, so the script holds every shard.
    let (engine, migrating) = match (cx.server.store.engine(), cx.server.store.migration()) {
        (Some(e), _) => (e, false),
        (None, Some(m)) => (m.script_engine().map_err(CmdError::Msg)?, true),
        (None, None) => {
            return Err(CmdError::msg("ERR scripts run only on the embedded engine"));
        }
    };
    let all_shards = migrating || needs_every_shard(scripts, flags);
    let (label, function) = match &target {
        Target::Eval(s) => (Label::Sha(s.sha), false),
        Target::Function(n, _) => (Label::Function(n.to_string()), true),
    };
    // With a clock chain the run starts where the calling command did (`clock::Chain`).
    // The commands the script calls read the clock at their start and end: between two of
    // them runs Lua, which is not theirs to count.
    let started = cx.client.clock.map_or_else(Instant::now, |c| c.last());
    let state = RunState::start(label, function, started);
    let mut client = ClientState::new(
        cx.client.handle.clone(),
        true,
        cx.client.local,
        cx.client.user.clone(),
    );
    client.acl_version = cx.client.acl_version;
    client.db = cx.client.db;
    client.in_exec = true;
    let mut host = EngineHost {
        server: cx.server,
        client,
        declared: keys,
        all_shards,
        read_only: read_only || flags.no_writes,
        now: cx.now,
        state: &state,
    };
    // SAFETY (lifetime): `command` outlives the script, and `watch` with it.
    let command_ptr: *const [&'static [u8]] = unsafe { std::mem::transmute(command) };
    let watch = Watch {
        state: state.clone(),
        busy: &scripts.busy,
        command: command_ptr,
        handoffs: Cell::new(0),
    };
    scripts.runs.fetch_add(1, Ordering::Relaxed);
    let out = &mut *cx.out;
    let scope = if all_shards { None } else { Some(keys) };
    let result = engine.atomically(scope, || {
        vm::with(scripts, |vm| {
            let (r, _) = call::with_host(&mut host, || {
                watching(&watch, || invoke(vm, &target, keys, args, out))
            });
            match r {
                Ok(fast::Outcome::Replied) => Ok(()),
                Ok(fast::Outcome::Failed(msg, place)) => {
                    vm.collect();
                    Err(error_text(&msg, place, &state))
                }
                Err(e) => {
                    vm.collect();
                    Err(e)
                }
            }
        })
    });
    if state.busy.load(Ordering::Relaxed) {
        scripts.busy.leave(&state);
    }
    let client = host.client;
    drop(watch);
    RunState::keep(state);
    if client.wrote {
        cx.client.wrote = true;
    }
    cx.client.ready.extend(client.ready);
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) | Err(e) => Err(CmdError::Msg(e)),
    }
}

/// Calls the compiled script or function, writing its reply.
fn invoke(
    vm: &mut vm::Vm,
    target: &Target<'_>,
    keys: &[&[u8]],
    args: &[&[u8]],
    out: &mut Reply<'_>,
) -> Result<fast::Outcome, String> {
    match target {
        Target::Eval(script) => {
            let call = vm.eval_parts(&script.sha, &script.body)?;
            fast::run(&call, keys, args, out)
        }
        Target::Function(name, lib) => {
            super::function::ensure_loaded(vm, lib)?;
            let call = vm.function_parts(name)?;
            fast::run(&call, keys, args, out)
        }
    }
}

/// Redis's text for a script that failed: the error, then where (`script: <sha or
/// function>, on @user_script:<line>.`).
fn error_text(msg: &[u8], place: Option<(Vec<u8>, i64)>, state: &RunState) -> String {
    let msg = String::from_utf8_lossy(msg);
    match place {
        Some((source, line)) => format!(
            "{msg} script: {}, on {}:{line}.",
            state.name(),
            String::from_utf8_lossy(&source)
        ),
        None => format!("{msg} script: {}", state.name()),
    }
}
