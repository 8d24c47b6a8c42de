//! `bit`: LuaBitOp's operations on 32-bit integers, as Redis ships it.
//!
//! Arguments are Lua numbers taken modulo 2^32 after rounding to the nearest integer (ties
//! to even, as LuaBitOp's `2^52 + 2^51` addition does); results are signed 32-bit numbers.
//! Shift counts use their low 5 bits.

use mlua::{Lua, Table, Value, Variadic};

fn tobit(v: &Value) -> mlua::Result<i32> {
    let f = match v {
        Value::Integer(i) => *i as f64,
        Value::Number(n) => *n,
        Value::String(s) => s
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .ok_or_else(|| mlua::Error::runtime("bad argument (number expected, got string)"))?,
        other => {
            return Err(mlua::Error::runtime(format!(
                "bad argument (number expected, got {})",
                other.type_name()
            )))
        }
    };
    let r = f.round_ties_even();
    if !r.is_finite() {
        return Ok(0);
    }
    Ok(((r as i128).rem_euclid(1 << 32)) as u32 as i32)
}

fn fold(args: Variadic<Value>, op: fn(i32, i32) -> i32) -> mlua::Result<i32> {
    let mut it = args.iter();
    let first = it
        .next()
        .ok_or_else(|| mlua::Error::runtime("bad argument #1 (number expected, got no value)"))?;
    let mut acc = tobit(first)?;
    for v in it {
        acc = op(acc, tobit(v)?);
    }
    Ok(acc)
}

pub fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("tobit", lua.create_function(|_, v: Value| tobit(&v))?)?;
    t.set("bnot", lua.create_function(|_, v: Value| Ok(!tobit(&v)?))?)?;
    t.set(
        "band",
        lua.create_function(|_, a: Variadic<Value>| fold(a, |x, y| x & y))?,
    )?;
    t.set(
        "bor",
        lua.create_function(|_, a: Variadic<Value>| fold(a, |x, y| x | y))?,
    )?;
    t.set(
        "bxor",
        lua.create_function(|_, a: Variadic<Value>| fold(a, |x, y| x ^ y))?,
    )?;
    let shift = |f: fn(u32, u32) -> u32| {
        move |_: &Lua, (x, n): (Value, Value)| -> mlua::Result<i32> {
            Ok(f(tobit(&x)? as u32, (tobit(&n)? & 31) as u32) as i32)
        }
    };
    t.set("lshift", lua.create_function(shift(|x, n| x << n))?)?;
    t.set("rshift", lua.create_function(shift(|x, n| x >> n))?)?;
    t.set(
        "arshift",
        lua.create_function(shift(|x, n| ((x as i32) >> n) as u32))?,
    )?;
    t.set("rol", lua.create_function(shift(|x, n| x.rotate_left(n)))?)?;
    t.set("ror", lua.create_function(shift(|x, n| x.rotate_right(n)))?)?;
    t.set(
        "bswap",
        lua.create_function(|_, v: Value| Ok(tobit(&v)?.swap_bytes()))?,
    )?;
    t.set(
        "tohex",
        lua.create_function(|_, (v, n): (Value, Option<Value>)| {
            let x = tobit(&v)? as u32;
            let n = match n {
                Some(n) => tobit(&n)?,
                None => 8,
            };
            let upper = n < 0;
            let width = n.unsigned_abs().min(8) as usize;
            let masked = if width >= 8 {
                x
            } else {
                x & ((1u32 << (4 * width)) - 1)
            };
            let s = if upper {
                format!("{masked:0width$X}")
            } else {
                format!("{masked:0width$x}")
            };
            Ok(s)
        })?,
    )?;
    Ok(t)
}
