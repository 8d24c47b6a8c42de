//! Conversions between Redis replies and Lua values, by the rules of Redis's documentation
//! ("Data type conversion").
//!
//! **Reply → Lua** (what `redis.call` returns): integer → number; bulk string → string;
//! null bulk or null array → `false`; array → sequence; status → `{ok=…}`; error →
//! `{err=…}`. After `redis.setresp(3)` the command replies in RESP3, and also: map →
//! `{map={…}}`, set → `{set={k=true…}}`, null → `nil`, double → `{double=n}`, boolean →
//! `true`/`false`, big number → `{big_number="…"}`, verbatim string →
//! `{verbatim_string={format=…, string=…}}`.
//!
//! **Lua → reply** (what a script returns): number → integer (truncated); string → bulk;
//! `{ok=…}` → status; `{err=…}` → error; `{double=…}`, `{map=…}`, `{set=…}`,
//! `{big_number=…}`, `{verbatim_string=…}` → the RESP3 type (degraded for a RESP2 client);
//! other tables → array up to the first `nil`; `nil` → null. Booleans depend on the
//! script's protocol: under RESP2 `true` → 1 and `false` → null, under RESP3 the boolean.
//!
//! Commands reply into a scratch buffer in the script's protocol, and [`to_lua`] reads that
//! buffer: the reply bytes are the commands' own, so a script sees exactly what a client
//! would.

use mlua::{Lua, Table, Value};

use crate::resp::Reply;

/// Deepest nesting of a script's return value written out; past it the reply ends in an
/// error (a table that contains itself would otherwise never end).
pub const MAX_DEPTH: usize = 256;

/// A reply the script's command wrote: `(is_error, value)`.
pub fn to_lua(lua: &Lua, buf: &[u8]) -> mlua::Result<(bool, Value)> {
    let mut c = Cursor { buf, at: 0 };
    let is_error = buf.first() == Some(&b'-');
    let v = c.value(lua, 0)?;
    Ok((is_error, v))
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

fn bad() -> mlua::Error {
    mlua::Error::runtime("malformed reply")
}

impl<'a> Cursor<'a> {
    fn line(&mut self) -> mlua::Result<&'a [u8]> {
        let rest = &self.buf[self.at..];
        let end = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        self.at += end + 2;
        Ok(&rest[..end])
    }

    fn int(&mut self) -> mlua::Result<i64> {
        let l = self.line()?;
        std::str::from_utf8(l)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)
    }

    fn bytes(&mut self, n: usize) -> mlua::Result<&'a [u8]> {
        let end = self.at.checked_add(n).ok_or_else(bad)?;
        let b = self.buf.get(self.at..end).ok_or_else(bad)?;
        self.at = end + 2;
        Ok(b)
    }

    fn value(&mut self, lua: &Lua, depth: usize) -> mlua::Result<Value> {
        if depth > MAX_DEPTH {
            return Err(bad());
        }
        let kind = *self.buf.get(self.at).ok_or_else(bad)?;
        self.at += 1;
        Ok(match kind {
            b'+' => {
                let s = self.line()?;
                field(lua, "ok", Value::String(lua.create_string(s)?))?
            }
            b'-' => {
                let s = self.line()?;
                field(lua, "err", Value::String(lua.create_string(s)?))?
            }
            b':' => Value::Integer(self.int()?),
            b'$' => {
                let n = self.int()?;
                if n < 0 {
                    Value::Boolean(false)
                } else {
                    Value::String(lua.create_string(self.bytes(n as usize)?)?)
                }
            }
            b'*' | b'>' => {
                let n = self.int()?;
                if n < 0 {
                    return Ok(Value::Boolean(false));
                }
                let t = lua.create_table_with_capacity(n as usize, 0)?;
                for i in 1..=n {
                    t.raw_set(i, self.value(lua, depth + 1)?)?;
                }
                Value::Table(t)
            }
            b'%' => {
                let n = self.int()?;
                let m = lua.create_table()?;
                for _ in 0..n {
                    let k = self.value(lua, depth + 1)?;
                    let v = self.value(lua, depth + 1)?;
                    m.raw_set(k, v)?;
                }
                field(lua, "map", Value::Table(m))?
            }
            b'~' => {
                let n = self.int()?;
                let s = lua.create_table()?;
                for _ in 0..n {
                    let k = self.value(lua, depth + 1)?;
                    s.raw_set(k, true)?;
                }
                field(lua, "set", Value::Table(s))?
            }
            b'_' => {
                self.line()?;
                Value::Nil
            }
            b',' => {
                let l = self.line()?;
                let d: f64 = match l {
                    b"inf" => f64::INFINITY,
                    b"-inf" => f64::NEG_INFINITY,
                    _ => std::str::from_utf8(l)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(f64::NAN),
                };
                field(lua, "double", Value::Number(d))?
            }
            b'#' => Value::Boolean(self.line()? == b"t"),
            b'(' => {
                let s = self.line()?;
                field(lua, "big_number", Value::String(lua.create_string(s)?))?
            }
            b'=' => {
                let n = self.int()?;
                let b = self.bytes(n as usize)?;
                let (fmt, text) = if b.len() >= 4 && b[3] == b':' {
                    (&b[..3], &b[4..])
                } else {
                    (&b"txt"[..], b)
                };
                let t = lua.create_table()?;
                t.raw_set("format", lua.create_string(fmt)?)?;
                t.raw_set("string", lua.create_string(text)?)?;
                field(lua, "verbatim_string", Value::Table(t))?
            }
            b'|' => {
                // Attributes describe the reply that follows; scripts see only that reply.
                let n = self.int()?;
                for _ in 0..2 * n {
                    self.value(lua, depth + 1)?;
                }
                self.value(lua, depth)?
            }
            _ => return Err(bad()),
        })
    }
}

fn field(lua: &Lua, name: &str, v: Value) -> mlua::Result<Value> {
    let t = lua.create_table_with_capacity(0, 1)?;
    t.raw_set(name, v)?;
    Ok(Value::Table(t))
}

/// Truncates a Lua number to an integer reply as Redis's C cast does on x86-64: values out
/// of range (and NaN) become i64::MIN.
pub fn truncate(f: f64) -> i64 {
    if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
        f as i64
    } else {
        i64::MIN
    }
}

/// Writes a script's return value as its reply. `resp3` is the script's protocol
/// (`redis.setresp`), which decides how booleans are written.
pub fn write_reply(v: &Value, out: &mut Reply<'_>, resp3: bool) {
    write(v, out, resp3, 0)
}

fn str_field(t: &Table, name: &str) -> Option<mlua::LuaString> {
    match t.raw_get::<Value>(name) {
        Ok(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn write(v: &Value, out: &mut Reply<'_>, resp3: bool, depth: usize) {
    if depth > MAX_DEPTH {
        out.error("ERR reached lua stack limit");
        return;
    }
    match v {
        Value::Nil => out.null(),
        Value::Boolean(true) => {
            if resp3 {
                out.boolean(true)
            } else {
                out.int(1)
            }
        }
        Value::Boolean(false) => {
            if resp3 {
                out.boolean(false)
            } else {
                out.null()
            }
        }
        Value::Integer(i) => out.int(*i),
        Value::Number(f) => out.int(truncate(*f)),
        Value::String(s) => out.bulk(&s.as_bytes()),
        Value::Table(t) => write_table(t, out, resp3, depth),
        _ => out.null(),
    }
}

fn write_table(t: &Table, out: &mut Reply<'_>, resp3: bool, depth: usize) {
    if let Some(e) = str_field(t, "err") {
        out.error_bytes(&e.as_bytes());
        return;
    }
    if let Some(s) = str_field(t, "ok") {
        out.simple_bytes(&s.as_bytes());
        return;
    }
    match t.raw_get::<Value>("double") {
        Ok(Value::Number(d)) => return out.double(d),
        Ok(Value::Integer(i)) => return out.double(i as f64),
        _ => {}
    }
    if let Some(s) = str_field(t, "big_number") {
        out.big_number(&s.as_bytes());
        return;
    }
    if let Ok(Value::Table(v)) = t.raw_get::<Value>("verbatim_string") {
        if let (Some(fmt), Some(text)) = (str_field(&v, "format"), str_field(&v, "string")) {
            let f = fmt.as_bytes();
            if f.len() == 3 {
                out.verbatim_as(&[f[0], f[1], f[2]], &text.as_bytes());
                return;
            }
        }
    }
    if let Ok(Value::Table(m)) = t.raw_get::<Value>("map") {
        let pairs: Vec<(Value, Value)> = m.pairs::<Value, Value>().filter_map(Result::ok).collect();
        out.map(pairs.len());
        for (k, v) in &pairs {
            write(k, out, resp3, depth + 1);
            write(v, out, resp3, depth + 1);
        }
        return;
    }
    if let Ok(Value::Table(s)) = t.raw_get::<Value>("set") {
        let keys: Vec<Value> = s
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, _)| k)
            .collect();
        out.set(keys.len());
        for k in &keys {
            write(k, out, resp3, depth + 1);
        }
        return;
    }
    let mut items = Vec::new();
    let mut i = 1;
    loop {
        match t.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(v) => items.push(v),
        }
        i += 1;
    }
    out.array(items.len());
    for v in &items {
        write(v, out, resp3, depth + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_truncate_as_redis_does() {
        assert_eq!(truncate(3.99), 3);
        assert_eq!(truncate(-3.7), -3);
        assert_eq!(truncate(1e300), i64::MIN);
        assert_eq!(truncate(f64::NAN), i64::MIN);
    }
}
