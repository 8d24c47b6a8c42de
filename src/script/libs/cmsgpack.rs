//! `cmsgpack`: MessagePack as lua-cmsgpack (the version Redis ships) writes and reads it.
//!
//! `pack(...)` encodes each argument and concatenates them: integral numbers in the
//! smallest integer form, others as float32 when that is exact, else float64; strings as
//! fixstr/str8/str16/str32; a table whose keys are exactly 1..n as an array, any other as
//! a map; nesting deeper than 16 levels is written as nil. `unpack(s)` returns every value
//! in `s`; `unpack_one(s, [offset])` and `unpack_limit(s, limit, [offset])` return the
//! offset to continue from (-1 at the end) before the values.

use mlua::{Lua, MultiValue, Table, Value};

const MAX_NESTING: usize = 16;

fn err(msg: &str) -> mlua::Error {
    mlua::Error::runtime(msg.to_string())
}

fn pack_int(out: &mut Vec<u8>, i: i64) {
    if i >= 0 {
        if i <= 127 {
            out.push(i as u8);
        } else if i <= 0xff {
            out.extend_from_slice(&[0xcc, i as u8]);
        } else if i <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(i as u16).to_be_bytes());
        } else if i <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(i as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(i as u64).to_be_bytes());
        }
    } else if i >= -32 {
        out.push(i as i8 as u8);
    } else if i >= -128 {
        out.extend_from_slice(&[0xd0, i as i8 as u8]);
    } else if i >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

fn pack_number(out: &mut Vec<u8>, f: f64) {
    if f.fract() == 0.0 && (-9.2e18..=9.2e18).contains(&f) {
        pack_int(out, f as i64);
    } else if (f as f32) as f64 == f || f.is_nan() {
        out.push(0xca);
        out.extend_from_slice(&(f as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&f.to_be_bytes());
    }
}

fn pack_len(out: &mut Vec<u8>, len: usize, fix: (u8, usize), forms: [u8; 3]) {
    if len < fix.1 {
        out.push(fix.0 | len as u8);
    } else if forms[0] != 0 && len <= 0xff {
        out.extend_from_slice(&[forms[0], len as u8]);
    } else if len <= 0xffff {
        out.push(forms[1]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(forms[2]);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn pack(out: &mut Vec<u8>, v: &Value, level: usize) -> mlua::Result<()> {
    match v {
        Value::Nil => out.push(0xc0),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => pack_int(out, *i),
        Value::Number(f) => pack_number(out, *f),
        Value::String(s) => {
            let b = s.as_bytes();
            pack_len(out, b.len(), (0xa0, 32), [0xd9, 0xda, 0xdb]);
            out.extend_from_slice(&b);
        }
        Value::Table(t) if level < MAX_NESTING => {
            let pairs: Vec<(Value, Value)> =
                t.pairs::<Value, Value>().collect::<mlua::Result<_>>()?;
            let n = pairs.len();
            let is_array = pairs.iter().all(|(k, _)| match k {
                Value::Integer(i) => *i >= 1 && (*i as usize) <= n,
                Value::Number(f) => f.fract() == 0.0 && *f >= 1.0 && *f <= n as f64,
                _ => false,
            });
            if is_array {
                pack_len(out, n, (0x90, 16), [0, 0xdc, 0xdd]);
                for i in 1..=n {
                    let v: Value = t.raw_get(i)?;
                    pack(out, &v, level + 1)?;
                }
            } else {
                pack_len(out, n, (0x80, 16), [0, 0xde, 0xdf]);
                for (k, v) in &pairs {
                    pack(out, k, level + 1)?;
                    pack(out, v, level + 1)?;
                }
            }
        }
        _ => out.push(0xc0),
    }
    Ok(())
}

struct Reader<'a> {
    s: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> mlua::Result<&[u8]> {
        let end = self
            .at
            .checked_add(n)
            .ok_or_else(|| err("Missing bytes in input."))?;
        let b = self
            .s
            .get(self.at..end)
            .ok_or_else(|| err("Missing bytes in input."))?;
        self.at = end;
        Ok(b)
    }

    fn be(&mut self, n: usize) -> mlua::Result<u64> {
        Ok(self.take(n)?.iter().fold(0u64, |a, &b| (a << 8) | b as u64))
    }

    fn str(&mut self, lua: &Lua, n: usize) -> mlua::Result<Value> {
        let b = self.take(n)?;
        Ok(Value::String(lua.create_string(b)?))
    }

    fn array(&mut self, lua: &Lua, n: usize, depth: usize) -> mlua::Result<Value> {
        let t = lua.create_table_with_capacity(n.min(1024), 0)?;
        for i in 1..=n {
            let v = self.value(lua, depth + 1)?;
            t.raw_set(i, v)?;
        }
        Ok(Value::Table(t))
    }

    fn map(&mut self, lua: &Lua, n: usize, depth: usize) -> mlua::Result<Value> {
        let t = lua.create_table()?;
        for _ in 0..n {
            let k = self.value(lua, depth + 1)?;
            let v = self.value(lua, depth + 1)?;
            if k != Value::Nil {
                t.raw_set(k, v)?;
            }
        }
        Ok(Value::Table(t))
    }

    fn value(&mut self, lua: &Lua, depth: usize) -> mlua::Result<Value> {
        if depth > 1000 {
            return Err(err("Too deeply nested data."));
        }
        let c = self.take(1)?[0];
        Ok(match c {
            0x00..=0x7f => Value::Integer(c as i64),
            0x80..=0x8f => return self.map(lua, (c & 0x0f) as usize, depth),
            0x90..=0x9f => return self.array(lua, (c & 0x0f) as usize, depth),
            0xa0..=0xbf => return self.str(lua, (c & 0x1f) as usize),
            0xc0 => Value::Nil,
            0xc2 => Value::Boolean(false),
            0xc3 => Value::Boolean(true),
            0xc4 | 0xd9 => {
                let n = self.be(1)? as usize;
                return self.str(lua, n);
            }
            0xc5 | 0xda => {
                let n = self.be(2)? as usize;
                return self.str(lua, n);
            }
            0xc6 | 0xdb => {
                let n = self.be(4)? as usize;
                return self.str(lua, n);
            }
            0xca => Value::Number(f32::from_bits(self.be(4)? as u32) as f64),
            0xcb => Value::Number(f64::from_bits(self.be(8)?)),
            0xcc => Value::Integer(self.be(1)? as i64),
            0xcd => Value::Integer(self.be(2)? as i64),
            0xce => Value::Integer(self.be(4)? as i64),
            0xcf => Value::Number(self.be(8)? as f64),
            0xd0 => Value::Integer(self.be(1)? as u8 as i8 as i64),
            0xd1 => Value::Integer(self.be(2)? as u16 as i16 as i64),
            0xd2 => Value::Integer(self.be(4)? as u32 as i32 as i64),
            0xd3 => Value::Integer(self.be(8)? as i64),
            0xdc => {
                let n = self.be(2)? as usize;
                return self.array(lua, n, depth);
            }
            0xdd => {
                let n = self.be(4)? as usize;
                return self.array(lua, n, depth);
            }
            0xde => {
                let n = self.be(2)? as usize;
                return self.map(lua, n, depth);
            }
            0xdf => {
                let n = self.be(4)? as usize;
                return self.map(lua, n, depth);
            }
            0xe0..=0xff => Value::Integer(c as i8 as i64),
            _ => return Err(err("Bad data format in input.")),
        })
    }
}

/// Decodes up to `limit` values (0: all) from `offset`; the next offset (-1 at the end)
/// first when `with_offset`.
fn unpack(
    lua: &Lua,
    s: &[u8],
    limit: usize,
    offset: usize,
    with_offset: bool,
) -> mlua::Result<MultiValue> {
    let mut r = Reader { s, at: offset };
    let mut vals = Vec::new();
    while r.at < s.len() && (limit == 0 || vals.len() < limit) {
        vals.push(r.value(lua, 0)?);
    }
    let mut out = MultiValue::new();
    if with_offset {
        let next = if r.at >= s.len() { -1 } else { r.at as i64 };
        out.push_back(Value::Integer(next));
    }
    for v in vals {
        out.push_back(v);
    }
    Ok(out)
}

pub fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "pack",
        lua.create_function(|lua, args: MultiValue| {
            if args.is_empty() {
                return Err(err("MessagePack pack needs input."));
            }
            let mut out = Vec::new();
            for a in args.iter() {
                pack(&mut out, a, 0)?;
            }
            lua.create_string(&out)
        })?,
    )?;
    t.set(
        "unpack",
        lua.create_function(|lua, s: mlua::LuaString| unpack(lua, &s.as_bytes(), 0, 0, false))?,
    )?;
    t.set(
        "unpack_one",
        lua.create_function(|lua, (s, offset): (mlua::LuaString, Option<i64>)| {
            unpack(
                lua,
                &s.as_bytes(),
                1,
                offset.unwrap_or(0).max(0) as usize,
                true,
            )
        })?,
    )?;
    t.set(
        "unpack_limit",
        lua.create_function(
            |lua, (s, limit, offset): (mlua::LuaString, i64, Option<i64>)| {
                unpack(
                    lua,
                    &s.as_bytes(),
                    limit.max(0) as usize,
                    offset.unwrap_or(0).max(0) as usize,
                    true,
                )
            },
        )?,
    )?;
    t.set("_NAME", "cmsgpack")?;
    t.set("_VERSION", "lua-cmsgpack 0.4.0")?;
    Ok(t)
}
