-- The sandbox every script runs in (see src/script/vm.rs). This chunk runs once per Lua
-- state, with the standard libraries loaded; what it does not hand to scripts is out of
-- their reach when it returns: no io, os (but os.clock), debug, package, require,
-- dofile, loadfile, print, getfenv, setfenv, newproxy, module.
--
-- Vanilla Lua 5.1 cannot make a table read-only, so scripts see *proxies*: empty tables
-- whose metatable reads through to the real one and refuses every assignment. The
-- wrappers of rawset, rawget, setmetatable, next, pairs and ipairs see through them (and
-- refuse to change them), and loadstring/load give the functions they make the same
-- environment. A script therefore cannot leave anything behind for the next script on
-- this thread's state.

local rt, libs = ...
local getinfo = debug.getinfo
local raw_error, raw_type, raw_tostring, raw_select = error, type, tostring, select
local raw_pcall, raw_xpcall = pcall, xpcall
local raw_rawset, raw_rawget, raw_setmetatable, raw_getmetatable = rawset, rawget, setmetatable, getmetatable
local raw_next, raw_pairs, raw_ipairs = next, pairs, ipairs
local raw_loadstring, raw_setfenv = loadstring, setfenv
local raw_resume = coroutine.resume
local byte, concat = string.byte, table.concat
local rt_killed = rt.killed
-- raising(f): a C function calling f, which returns (ok, value); it returns the value, or
-- raises it as the error. Being C, it keeps the script's own frame on the stack even in
-- `return redis.call(...)` (a Lua wrapper would be a tail call, and the error would no
-- longer know the script's line).
local raising = rt.raising
local INTERNAL = '=sessiond'

local readonly, backing = {}, {}

local function refuse()
  raw_error('Attempt to modify a readonly table', 2)
end

local function protect(t)
  local p = {}
  raw_setmetatable(p, { __index = t, __newindex = refuse, __metatable = {} })
  readonly[p], readonly[t], backing[p] = true, true, t
  return p
end

local function copy(t, names)
  local c = {}
  for _, n in raw_ipairs(names) do c[n] = t[n] end
  return c
end

-- The globals scripts see: Redis 7's list.
local G = {}
for _, n in raw_ipairs({ 'assert', 'collectgarbage', 'error', 'gcinfo', 'getmetatable',
    'ipairs', 'next', 'pairs', 'rawequal', 'rawget', 'rawset', 'select', 'setmetatable',
    'tonumber', 'tostring', 'type', 'unpack', '_VERSION' }) do
  G[n] = _G[n]
end
local P = protect(G)
G._G = P
raw_setmetatable(G, {
  __index = function(_, k)
    raw_error("Script attempted to access nonexistent global variable '" .. raw_tostring(k) .. "'", 2)
  end,
  __metatable = {},
})

local string_p = protect(string)
G.string = string_p
G.math = protect(math)
G.table = protect(table)
G.os = protect(copy(os, { 'clock' }))
for name, lib in raw_pairs(libs) do G[name] = protect(lib) end

-- Strings' methods read the protected string table; the metatable a script can get is a
-- decoy with the same __index.
local smt = raw_getmetatable('')
smt.__index = string_p
smt.__metatable = { __index = string_p }

G.rawset = raising(function(t, k, v)
  if readonly[t] then return false, 'Attempt to modify a readonly table' end
  return true, raw_rawset(t, k, v)
end)
G.rawget = function(t, k) return raw_rawget(backing[t] or t, k) end
G.setmetatable = raising(function(t, m)
  if readonly[t] then return false, 'Attempt to modify a readonly table' end
  return true, raw_setmetatable(t, m)
end)
G.next = function(t, k) return raw_next(backing[t] or t, k) end
G.pairs = function(t) return raw_pairs(backing[t] or t) end
G.ipairs = function(t) return raw_ipairs(backing[t] or t) end

local function no_bytecode(s)
  return raw_type(s) == 'string' and byte(s, 1) == 27
end

G.loadstring = function(s, name)
  if no_bytecode(s) then return nil, 'loading binary chunks is not allowed' end
  local f, e = raw_loadstring(s, name)
  if f then raw_setfenv(f, P) end
  return f, e
end
G.load = function(chunk, name)
  if raw_type(chunk) == 'function' then
    local parts = {}
    while true do
      local piece = chunk()
      if piece == nil or piece == '' then break end
      if raw_type(piece) ~= 'string' then return nil, 'reader function must return a string' end
      parts[#parts + 1] = piece
    end
    chunk = concat(parts)
  end
  return G.loadstring(chunk, name)
end

-- A script killed by SCRIPT KILL (or past its memory) cannot catch its own end.
local function unless_killed(ok, ...)
  if not ok and rt_killed() then raw_error((...), 0) end
  return ok, ...
end

-- Redis 7's pcall gives a redis.call error as its text, not as the error table.
local function after_pcall(ok, ...)
  if ok then return ok, ... end
  local e = ...
  if rt_killed() then raw_error(e, 0) end
  if raw_type(e) == 'table' then
    local m = raw_rawget(e, 'err')
    if m ~= nil then return false, m end
  end
  return false, e
end
G.pcall = function(...) return after_pcall(raw_pcall(...)) end
G.xpcall = function(f, h) return unless_killed(raw_xpcall(f, h)) end

local co = copy(coroutine, { 'create', 'running', 'status', 'wrap', 'yield' })
co.resume = function(...) return unless_killed(raw_resume(...)) end
G.coroutine = protect(co)

-- The redis table.
local redis = {}
redis.call = rt.call_c
redis.pcall = rt.pcall_c
local function reply_text(...)
  if raw_select('#', ...) ~= 1 or raw_type((...)) ~= 'string' then
    return nil
  end
  return (...)
end
redis.error_reply = function(...)
  local s = reply_text(...)
  if s == nil then return { err = 'ERR wrong number or type of arguments' } end
  if byte(s, 1) == 45 then s = s:sub(2) end
  if not s:find(' ', 1, true) then s = 'ERR ' .. s end
  return { err = s }
end
redis.status_reply = function(...)
  local s = reply_text(...)
  if s == nil then return { err = 'ERR wrong number or type of arguments' } end
  return { ok = s }
end
redis.sha1hex = raising(function(...)
  if raw_select('#', ...) ~= 1 then return false, { err = 'ERR wrong number of arguments' } end
  return true, rt.sha1hex(raw_tostring((...)))
end)
redis.log = raising(function(level, ...)
  local n = raw_select('#', ...)
  if n == 0 then return false, { err = 'ERR redis.log() requires two arguments or more.' } end
  if raw_type(level) ~= 'number' then return false, { err = 'ERR First argument must be a number (log level).' } end
  if level < 0 or level > 3 then return false, { err = 'ERR Invalid debug level.' } end
  local parts = {}
  for i = 1, n do parts[i] = raw_tostring((raw_select(i, ...))) end
  rt.log(level, concat(parts, ' '))
  return true, nil
end)
redis.setresp = raising(function(...)
  local n = raw_select('#', ...)
  local v = ...
  if n ~= 1 or raw_type(v) ~= 'number' then
    return false, { err = 'ERR redis.setresp() requires one argument.' }
  end
  if v ~= 2 and v ~= 3 then return false, { err = 'ERR RESP version must be 2 or 3.' } end
  rt.setresp(v)
  return true, nil
end)
redis.set_repl = function() end
redis.replicate_commands = function() return true end
redis.breakpoint = function() return false end
redis.debug = function() end
redis.acl_check_cmd = raising(rt.acl_check)
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
redis.REDIS_VERSION = rt.version
redis.REDIS_VERSION_NUM = rt.version_num
local redis_p = protect(redis)
G.redis = redis_p

-- Where an error happened: the innermost frame of the script itself (not this chunk's
-- wrappers, not a C function).
local function where()
  local level = 3
  while true do
    local i = getinfo(level, 'Sl')
    if i == nil then return nil end
    if i.what ~= 'C' and i.source ~= INTERNAL then return i end
    level = level + 1
  end
end

local find, sub = string.find, string.sub

-- An error raised by a Rust function (the libraries): its text without mlua's prefix and
-- traceback, placed at the script's line as luaL_error places a C library's errors.
local function rust_error(e, i)
  local text = raw_tostring(e)
  if sub(text, 1, 15) == 'runtime error: ' then text = sub(text, 16) end
  local cut = find(text, '\nstack traceback:', 1, true)
  if cut then text = sub(text, 1, cut - 1) end
  if i and i.currentline and i.currentline > 0 then
    return i.short_src .. ':' .. i.currentline .. ': ' .. text
  end
  return text
end

local function handler(e)
  local i = where()
  local msg
  if raw_type(e) == 'table' and raw_rawget(e, 'err') ~= nil then
    msg = raw_tostring(raw_rawget(e, 'err'))
  elseif raw_type(e) == 'userdata' then
    msg = 'ERR ' .. rust_error(e, i)
  else
    msg = 'ERR ' .. raw_tostring(e)
  end
  if i then return { msg, i.source, i.currentline } end
  return { msg }
end

-- Scripts are called from Rust (`src/script/fast.rs`) with `handler` as the message
-- handler of a plain `lua_pcall`: an EVAL body with KEYS and ARGV set in `G`, a function
-- with `(keys, args)`.

local function compile(src, name)
  local f, e = raw_loadstring(src, name)
  if not f then return nil, e end
  raw_setfenv(f, P)
  return f
end

-- While a library's code runs, `redis` offers only what Redis 7 offers then: registering
-- functions, logging, the constants. The functions it registers see the whole `redis`
-- when they are called (they read the global at call time).
local loading = {
  log = redis.log,
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
  REDIS_VERSION = rt.version, REDIS_VERSION_NUM = rt.version_num,
}
raw_setmetatable(loading, {
  __index = function(_, k)
    raw_error("Script attempted to access nonexistent global variable '" .. raw_tostring(k) .. "'", 2)
  end,
})
local loading_p = protect(loading)

local function load_library(f, register)
  raw_setfenv(f, P)
  loading.register_function = raising(register)
  G.redis = loading_p
  local ok, e = raw_xpcall(f, handler)
  G.redis = redis_p
  loading.register_function = nil
  return ok, e
end

return handler, G, compile, load_library
