//! The libraries Redis gives scripts besides Lua's own: `bit` (LuaBitOp), `cjson`,
//! `cmsgpack` and `struct`, written here in Rust against their documented behaviour. Each
//! is a table of functions; the prelude hands scripts read-only views of them.

pub mod bit;
pub mod cjson;
pub mod cmsgpack;
pub mod structlib;

use mlua::{Lua, Table};

/// `name → library table`, for the prelude.
pub fn all(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("bit", bit::table(lua)?)?;
    t.set("cjson", cjson::table(lua)?)?;
    t.set("cmsgpack", cmsgpack::table(lua)?)?;
    t.set("struct", structlib::table(lua)?)?;
    Ok(t)
}
