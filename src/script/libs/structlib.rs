//! `struct`: Roberto Ierusalimschy's library for packing binary records, as Redis ships it.
//!
//! Format characters: `>` big-endian, `<` little-endian, `=` native, `!n` alignment (`!`
//! alone: the native 8), `x` a zero byte, `b`/`B` char, `h`/`H` short, `l`/`L` long (8),
//! `T` size_t (8), `i`/`I` int with an optional size (default 4), `f` float, `d` double,
//! `s` zero-terminated string, `cn` n characters (`c0`: the whole string when packing, the
//! length given by the previous number when unpacking); spaces are ignored.

use mlua::{Lua, MultiValue, Table, Value};

fn err(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::runtime(msg.into())
}

#[derive(Clone, Copy)]
struct State {
    little: bool,
    align: usize,
}

/// One parsed format item: its letter and size argument.
fn items(fmt: &[u8]) -> mlua::Result<Vec<(u8, usize)>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < fmt.len() {
        let c = fmt[i];
        i += 1;
        let start = i;
        while i < fmt.len() && fmt[i].is_ascii_digit() {
            i += 1;
        }
        let n = if i > start {
            std::str::from_utf8(&fmt[start..i])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|&n| n <= 1 << 24)
                .ok_or_else(|| err("size too large"))?
        } else {
            usize::MAX
        };
        out.push((c, n));
    }
    Ok(out)
}

fn size_of(c: u8, n: usize) -> mlua::Result<usize> {
    Ok(match c {
        b'x' | b'b' | b'B' => 1,
        b'h' | b'H' => 2,
        b'l' | b'L' | b'T' | b'd' => 8,
        b'f' => 4,
        b'i' | b'I' => {
            let n = if n == usize::MAX { 4 } else { n };
            if !(1..=8).contains(&n) {
                return Err(err(format!("integral size {n} is larger than limit of 8")));
            }
            n
        }
        b'c' => {
            if n == usize::MAX {
                1
            } else {
                n
            }
        }
        _ => 0,
    })
}

fn pad(at: usize, size: usize, st: State) -> usize {
    let a = size.min(st.align);
    if a <= 1 || !a.is_power_of_two() {
        return 0;
    }
    (a - (at & (a - 1))) & (a - 1)
}

fn control(c: u8, n: usize, st: &mut State) -> mlua::Result<bool> {
    match c {
        b'>' => st.little = false,
        b'<' | b'=' => st.little = true,
        b'!' => st.align = if n == usize::MAX { 8 } else { n },
        b' ' => {}
        _ => return Ok(false),
    }
    Ok(true)
}

fn number(v: Option<&Value>, i: usize) -> mlua::Result<f64> {
    match v {
        Some(Value::Integer(x)) => Ok(*x as f64),
        Some(Value::Number(x)) => Ok(*x),
        Some(Value::String(s)) => s
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                err(format!(
                    "bad argument #{i} to 'pack' (number expected, got string)"
                ))
            }),
        other => Err(err(format!(
            "bad argument #{i} to 'pack' (number expected, got {})",
            other.map_or("no value", |v| v.type_name())
        ))),
    }
}

fn put_int(out: &mut Vec<u8>, v: i128, size: usize, little: bool) {
    let bytes = (v as u128).to_le_bytes();
    let mut b: Vec<u8> = bytes[..size].to_vec();
    if !little {
        b.reverse();
    }
    out.extend_from_slice(&b);
}

fn pack(lua: &Lua, fmt: &[u8], args: &[Value]) -> mlua::Result<mlua::LuaString> {
    let mut st = State {
        little: true,
        align: 1,
    };
    let mut out = Vec::new();
    let mut arg = 0;
    for (c, n) in items(fmt)? {
        if control(c, n, &mut st)? {
            continue;
        }
        let size = size_of(c, n)?;
        let p = pad(out.len(), size, st);
        out.resize(out.len() + p, 0);
        match c {
            b'x' => out.push(0),
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                arg += 1;
                let f = number(args.get(arg - 1), arg + 1)?;
                put_int(&mut out, f as i128, size, st.little);
            }
            b'f' => {
                arg += 1;
                let f = number(args.get(arg - 1), arg + 1)? as f32;
                let b = if st.little {
                    f.to_le_bytes()
                } else {
                    f.to_be_bytes()
                };
                out.extend_from_slice(&b);
            }
            b'd' => {
                arg += 1;
                let f = number(args.get(arg - 1), arg + 1)?;
                let b = if st.little {
                    f.to_le_bytes()
                } else {
                    f.to_be_bytes()
                };
                out.extend_from_slice(&b);
            }
            b'c' | b's' => {
                arg += 1;
                let s = match args.get(arg - 1) {
                    Some(Value::String(s)) => s.as_bytes().to_vec(),
                    Some(v @ (Value::Integer(_) | Value::Number(_))) => {
                        match lua.coerce_string(v.clone())? {
                            Some(s) => s.as_bytes().to_vec(),
                            None => Vec::new(),
                        }
                    }
                    _ => {
                        return Err(err(format!(
                            "bad argument #{} to 'pack' (string expected)",
                            arg + 1
                        )))
                    }
                };
                if c == b's' {
                    out.extend_from_slice(&s);
                    out.push(0);
                } else {
                    let want = if n == usize::MAX {
                        1
                    } else if n == 0 {
                        s.len()
                    } else {
                        n
                    };
                    if s.len() < want {
                        return Err(err(format!(
                            "bad argument #{} to 'pack' (string too short)",
                            arg + 1
                        )));
                    }
                    out.extend_from_slice(&s[..want]);
                }
            }
            _ => return Err(err(format!("invalid format option '{}'", c as char))),
        }
    }
    lua.create_string(&out)
}

fn unpack(lua: &Lua, fmt: &[u8], data: &[u8], pos: usize) -> mlua::Result<MultiValue> {
    let mut st = State {
        little: true,
        align: 1,
    };
    let mut at = pos;
    let mut out = MultiValue::new();
    let mut last: Option<usize> = None;
    let short = || err("bad argument #2 to 'unpack' (data string too short)");
    for (c, n) in items(fmt)? {
        if control(c, n, &mut st)? {
            continue;
        }
        let size = size_of(c, n)?;
        at += pad(at, size, st);
        match c {
            b'x' => at += 1,
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let b = data.get(at..at + size).ok_or_else(short)?;
                let mut v: u64 = 0;
                for i in 0..size {
                    let byte = if st.little { b[size - 1 - i] } else { b[i] };
                    v = (v << 8) | byte as u64;
                }
                let signed = matches!(c, b'b' | b'h' | b'l' | b'i');
                let num = if signed && size < 8 {
                    let shift = 64 - 8 * size;
                    (((v << shift) as i64) >> shift) as f64
                } else if signed {
                    v as i64 as f64
                } else {
                    v as f64
                };
                last = Some(num.max(0.0) as usize);
                out.push_back(Value::Number(num));
                at += size;
            }
            b'f' => {
                let b: [u8; 4] = data
                    .get(at..at + 4)
                    .ok_or_else(short)?
                    .try_into()
                    .map_err(|_| short())?;
                let f = if st.little {
                    f32::from_le_bytes(b)
                } else {
                    f32::from_be_bytes(b)
                };
                out.push_back(Value::Number(f as f64));
                at += 4;
            }
            b'd' => {
                let b: [u8; 8] = data
                    .get(at..at + 8)
                    .ok_or_else(short)?
                    .try_into()
                    .map_err(|_| short())?;
                let f = if st.little {
                    f64::from_le_bytes(b)
                } else {
                    f64::from_be_bytes(b)
                };
                out.push_back(Value::Number(f));
                at += 8;
            }
            b'c' => {
                let len = if n == 0 {
                    last.take()
                        .ok_or_else(|| err("format 'c0' needs a previous size"))?
                } else if n == usize::MAX {
                    1
                } else {
                    n
                };
                let b = data.get(at..at + len).ok_or_else(short)?;
                out.push_back(Value::String(lua.create_string(b)?));
                at += len;
            }
            b's' => {
                let rest = data.get(at..).ok_or_else(short)?;
                let end = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| err("unfinished string in data"))?;
                out.push_back(Value::String(lua.create_string(&rest[..end])?));
                at += end + 1;
            }
            _ => return Err(err(format!("invalid format option '{}'", c as char))),
        }
    }
    out.push_back(Value::Integer(at as i64 + 1));
    Ok(out)
}

pub fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "pack",
        lua.create_function(|lua, (fmt, rest): (mlua::LuaString, MultiValue)| {
            let args: Vec<Value> = rest.into_iter().collect();
            pack(lua, &fmt.as_bytes(), &args)
        })?,
    )?;
    t.set(
        "unpack",
        lua.create_function(
            |lua, (fmt, data, pos): (mlua::LuaString, mlua::LuaString, Option<i64>)| {
                let start = pos.unwrap_or(1);
                if start < 1 {
                    return Err(err(
                        "bad argument #3 to 'unpack' (offset must be 1 or greater)",
                    ));
                }
                unpack(lua, &fmt.as_bytes(), &data.as_bytes(), start as usize - 1)
            },
        )?,
    )?;
    t.set(
        "size",
        lua.create_function(|_, fmt: mlua::LuaString| {
            let mut st = State {
                little: true,
                align: 1,
            };
            let mut at = 0usize;
            for (c, n) in items(&fmt.as_bytes())? {
                if control(c, n, &mut st)? {
                    continue;
                }
                if c == b's' || (c == b'c' && n == 0) {
                    return Err(err("options 'c0' - 's' have undefined sizes"));
                }
                let size = size_of(c, n)?;
                at += pad(at, size, st) + size;
            }
            Ok(at as i64)
        })?,
    )?;
    Ok(t)
}
