//! Script flags: the `#!lua flags=…` first line of Redis 7, and sessiond's own comment.
//!
//! A script without a shebang runs as Redis runs it for compatibility: it may write, and
//! declares nothing else. With `#!lua`, it may say `flags=no-writes,allow-oom,allow-stale,
//! no-cluster,allow-cross-slot-keys` (the only options EVAL accepts; `name=` belongs to
//! FUNCTION libraries). Errors have Redis's texts.

/// What a script's shebang (or a function's registration) says about it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptFlags {
    /// A shebang was present: Redis then applies the flags strictly (e.g. a script without
    /// `no-writes` is refused by `EVAL_RO`… only for functions; see `run`).
    pub declared: bool,
    pub no_writes: bool,
    pub allow_oom: bool,
    pub allow_stale: bool,
    /// Redis: not routable in a cluster. sessiond reads it as "touches keys it does not
    /// declare": such a script runs under every shard lock.
    pub no_cluster: bool,
    pub allow_cross_slot: bool,
    /// `--!sessiond allow-undeclared-keys` in the text: same effect as `no-cluster` here,
    /// and invisible to Redis (a comment), so one script serves both.
    pub undeclared_keys: bool,
}

impl ScriptFlags {
    /// Whether the script may touch keys beyond `KEYS` (and so needs every shard).
    pub fn reaches_beyond_keys(&self) -> bool {
        self.no_cluster || self.undeclared_keys
    }

    /// Sets one flag by its Redis name; false if unknown.
    pub fn set(&mut self, name: &str) -> bool {
        match name {
            "no-writes" => self.no_writes = true,
            "allow-oom" => self.allow_oom = true,
            "allow-stale" => self.allow_stale = true,
            "no-cluster" => self.no_cluster = true,
            "allow-cross-slot-keys" => self.allow_cross_slot = true,
            _ => return false,
        }
        true
    }

    /// The flags by Redis name, in Redis's order (FUNCTION LIST).
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.no_writes {
            v.push("no-writes");
        }
        if self.allow_oom {
            v.push("allow-oom");
        }
        if self.allow_stale {
            v.push("allow-stale");
        }
        if self.no_cluster {
            v.push("no-cluster");
        }
        if self.allow_cross_slot {
            v.push("allow-cross-slot-keys");
        }
        v
    }
}

/// The marker comment that lets a script touch undeclared keys (see `script/mod.rs`).
pub const UNDECLARED_MARK: &[u8] = b"--!sessiond allow-undeclared-keys";

/// Parses an EVAL body's shebang, if any.
pub fn parse(body: &[u8]) -> Result<ScriptFlags, String> {
    let mut flags = ScriptFlags {
        undeclared_keys: contains(body, UNDECLARED_MARK),
        ..ScriptFlags::default()
    };
    if !body.starts_with(b"#!") {
        return Ok(flags);
    }
    let Some(end) = body.iter().position(|&c| c == b'\n') else {
        return Err("ERR Invalid script shebang".into());
    };
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let engine = parts.next().unwrap_or("#!");
    if engine != "#!lua" {
        return Err(format!("ERR Unexpected engine in script shebang: {engine}"));
    }
    flags.declared = true;
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {part}"));
        };
        for f in list.split(',').filter(|f| !f.is_empty()) {
            if !flags.set(f) {
                return Err(format!("ERR Unexpected flag in script shebang: {f}"));
            }
        }
    }
    Ok(flags)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The body as Lua compiles it: a shebang line becomes a comment of the same length, so
/// line numbers in errors stay those of the text the client sent.
pub fn lua_source(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if body.starts_with(b"#!") {
        let mut v = body.to_vec();
        v[0] = b'-';
        v[1] = b'-';
        std::borrow::Cow::Owned(v)
    } else {
        std::borrow::Cow::Borrowed(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebangs_parse_as_redis_does() {
        assert_eq!(parse(b"return 1").unwrap(), ScriptFlags::default());
        let f = parse(b"#!lua flags=no-writes,allow-oom\nreturn 1").unwrap();
        assert!(f.declared && f.no_writes && f.allow_oom && !f.no_cluster);
        assert!(parse(b"#!lua  flags=  \nreturn 1").unwrap().declared);
        assert_eq!(
            parse(b"#!lua flags=bad\n").unwrap_err(),
            "ERR Unexpected flag in script shebang: bad"
        );
        assert_eq!(
            parse(b"#!python\n").unwrap_err(),
            "ERR Unexpected engine in script shebang: #!python"
        );
        assert_eq!(
            parse(b"#!lua name=x\n").unwrap_err(),
            "ERR Unknown lua shebang option: name=x"
        );
        assert_eq!(parse(b"#!lua").unwrap_err(), "ERR Invalid script shebang");
        assert!(parse(b"return 1 --!sessiond allow-undeclared-keys")
            .unwrap()
            .reaches_beyond_keys());
        assert_eq!(&*lua_source(b"#!lua\nreturn 1"), b"--lua\nreturn 1");
    }
}
