//! `cjson`: JSON encoding and decoding as Lua CJSON 2.1 (the version Redis ships) does it.
//!
//! Encoding: `nil` and `cjson.null` → `null`; numbers with `%.14g`; strings escaped with
//! `\/` for `/` as Lua CJSON does; a table whose keys are all positive integers is an array
//! (holes become `null`; an *excessively sparse* one, whose largest index is over 10 and
//! more than twice its count, is an error), any other table an object whose keys are
//! strings or numbers; an empty table is `{}`. Nesting is limited to 1000 levels.
//! Decoding: objects and arrays become tables, `null` becomes `cjson.null`.

use mlua::{LightUserData, Lua, Table, Value};

const MAX_DEPTH: usize = 1000;

fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

fn err(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::runtime(msg.into())
}

fn encode_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            c if c < 0x20 || c == 0x7f => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            c => out.push(c),
        }
    }
    out.push(b'"');
}

fn encode_number(out: &mut Vec<u8>, f: f64) -> mlua::Result<()> {
    if !f.is_finite() {
        return Err(err("Cannot serialise number: must not be NaN or Inf"));
    }
    out.extend_from_slice(crate::util::double::fmt_g(f, 14).as_bytes());
    Ok(())
}

fn encode(out: &mut Vec<u8>, v: &Value, depth: usize) -> mlua::Result<()> {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(i) => encode_number(out, *i as f64)?,
        Value::Number(f) => encode_number(out, *f)?,
        Value::String(s) => encode_string(out, &s.as_bytes()),
        Value::Table(t) => {
            if depth >= MAX_DEPTH {
                return Err(err(format!(
                    "Cannot serialise, excessive nesting ({})",
                    depth + 1
                )));
            }
            encode_table(out, t, depth + 1)?
        }
        other => {
            return Err(err(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            )))
        }
    }
    Ok(())
}

fn encode_table(out: &mut Vec<u8>, t: &Table, depth: usize) -> mlua::Result<()> {
    let pairs: Vec<(Value, Value)> = t.pairs::<Value, Value>().collect::<mlua::Result<_>>()?;
    // An array when every key is a positive integer.
    let mut max = 0i64;
    let mut array = !pairs.is_empty();
    for (k, _) in &pairs {
        let idx = match k {
            Value::Integer(i) if *i >= 1 => Some(*i),
            Value::Number(f) if *f >= 1.0 && f.fract() == 0.0 && *f < 9e15 => Some(*f as i64),
            _ => None,
        };
        match idx {
            Some(i) => max = max.max(i),
            None => {
                array = false;
                break;
            }
        }
    }
    if array {
        if max > 10 && max > 2 * pairs.len() as i64 {
            return Err(err("Cannot serialise table: excessively sparse array"));
        }
        out.push(b'[');
        for i in 1..=max {
            if i > 1 {
                out.push(b',');
            }
            let v: Value = t.raw_get(i)?;
            encode(out, &v, depth)?;
        }
        out.push(b']');
        return Ok(());
    }
    out.push(b'{');
    for (n, (k, v)) in pairs.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        match k {
            Value::String(s) => encode_string(out, &s.as_bytes()),
            Value::Integer(i) => {
                out.push(b'"');
                encode_number(out, *i as f64)?;
                out.push(b'"');
            }
            Value::Number(f) => {
                out.push(b'"');
                encode_number(out, *f)?;
                out.push(b'"');
            }
            _ => {
                return Err(err(
                    "Cannot serialise table: table key must be a number or string",
                ))
            }
        }
        out.push(b':');
        encode(out, v, depth)?;
    }
    out.push(b'}');
    Ok(())
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    /// Lua CJSON's wording: the token found where another was expected.
    fn fail<T>(&self, what: &str) -> mlua::Result<T> {
        let found = match self.s.get(self.at) {
            None => "T_END",
            Some(b'{') => "T_OBJ_BEGIN",
            Some(b'}') => "T_OBJ_END",
            Some(b'[') => "T_ARR_BEGIN",
            Some(b']') => "T_ARR_END",
            Some(b'"') => "T_STRING",
            Some(b'-' | b'0'..=b'9') => "T_NUMBER",
            Some(b't' | b'f') => "T_BOOLEAN",
            Some(b'n') => "T_NULL",
            Some(b':') => "T_COLON",
            Some(b',') => "T_COMMA",
            Some(_) => "invalid token",
        };
        Err(err(format!(
            "Expected {what} but found {found} at character {}",
            self.at + 1
        )))
    }

    fn ws(&mut self) {
        while self.at < self.s.len() && matches!(self.s[self.at], b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
    }

    fn value(&mut self, lua: &Lua, depth: usize) -> mlua::Result<Value> {
        self.ws();
        if depth > MAX_DEPTH {
            return Err(err(format!(
                "Found too many nested data structures ({depth}) at character {}",
                self.at + 1
            )));
        }
        let Some(&c) = self.s.get(self.at) else {
            return self.fail("value");
        };
        match c {
            b'{' => {
                self.at += 1;
                let t = lua.create_table()?;
                self.ws();
                if self.s.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Value::Table(t));
                }
                loop {
                    self.ws();
                    if self.s.get(self.at) != Some(&b'"') {
                        return self.fail("object key string");
                    }
                    let k = self.string(lua)?;
                    self.ws();
                    if self.s.get(self.at) != Some(&b':') {
                        return self.fail("colon");
                    }
                    self.at += 1;
                    let v = self.value(lua, depth + 1)?;
                    t.raw_set(k, v)?;
                    self.ws();
                    match self.s.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Value::Table(t));
                        }
                        _ => return self.fail("comma or object end"),
                    }
                }
            }
            b'[' => {
                self.at += 1;
                let t = lua.create_table()?;
                self.ws();
                if self.s.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Value::Table(t));
                }
                let mut i = 1;
                loop {
                    let v = self.value(lua, depth + 1)?;
                    t.raw_set(i, v)?;
                    i += 1;
                    self.ws();
                    match self.s.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Value::Table(t));
                        }
                        _ => return self.fail("comma or array end"),
                    }
                }
            }
            b'"' => Ok(Value::String(self.string(lua)?)),
            b't' if self.s[self.at..].starts_with(b"true") => {
                self.at += 4;
                Ok(Value::Boolean(true))
            }
            b'f' if self.s[self.at..].starts_with(b"false") => {
                self.at += 5;
                Ok(Value::Boolean(false))
            }
            b'n' if self.s[self.at..].starts_with(b"null") => {
                self.at += 4;
                Ok(null())
            }
            b'-' | b'0'..=b'9' => {
                let start = self.at;
                while self.at < self.s.len()
                    && matches!(
                        self.s[self.at],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.at += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.at]).unwrap_or("");
                match text.parse::<f64>() {
                    Ok(f) => Ok(Value::Number(f)),
                    Err(_) => {
                        self.at = start;
                        self.fail("value")
                    }
                }
            }
            _ => self.fail("value"),
        }
    }

    fn string(&mut self, lua: &Lua) -> mlua::Result<mlua::LuaString> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.at) else {
                return self.fail("string end");
            };
            self.at += 1;
            match c {
                b'"' => return lua.create_string(&out),
                b'\\' => {
                    let Some(&e) = self.s.get(self.at) else {
                        return self.fail("escape");
                    };
                    self.at += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp)
                                && self.s[self.at..].starts_with(b"\\u")
                            {
                                self.at += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                }
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return self.fail("valid escape"),
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> mlua::Result<u32> {
        let h = self
            .s
            .get(self.at..self.at + 4)
            .and_then(|h| std::str::from_utf8(h).ok());
        match h.and_then(|h| u32::from_str_radix(h, 16).ok()) {
            Some(v) => {
                self.at += 4;
                Ok(v)
            }
            None => self.fail("unicode escape"),
        }
    }
}

pub fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "encode",
        lua.create_function(|lua, v: Value| {
            let mut out = Vec::new();
            encode(&mut out, &v, 0)?;
            lua.create_string(&out)
        })?,
    )?;
    t.set(
        "decode",
        lua.create_function(|lua, s: mlua::LuaString| {
            let b = s.as_bytes();
            let mut p = Parser { s: &b, at: 0 };
            let v = p.value(lua, 0)?;
            p.ws();
            if p.at != b.len() {
                return p.fail("the end");
            }
            Ok(v)
        })?,
    )?;
    t.set("null", null())?;
    t.set("_NAME", "cjson")?;
    t.set("_VERSION", "2.1.0")?;
    for name in [
        "encode_sparse_array",
        "encode_max_depth",
        "decode_max_depth",
        "encode_number_precision",
        "encode_keep_buffer",
        "encode_invalid_numbers",
        "decode_invalid_numbers",
    ] {
        // Settings are per interpreter in Lua CJSON; sessiond keeps Redis's defaults and
        // answers with them, so scripts that read a setting work.
        t.set(
            name,
            lua.create_function(move |_, _: mlua::MultiValue| {
                Ok(match name {
                    "encode_max_depth" | "decode_max_depth" => Value::Integer(MAX_DEPTH as i64),
                    "encode_number_precision" => Value::Integer(14),
                    _ => Value::Boolean(true),
                })
            })?,
        )?;
    }
    Ok(t)
}
