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
//! Commands reply into a scratch buffer in the script's protocol, and `fast.rs` reads that
//! buffer into Lua values: the reply bytes are the commands' own, so a script sees exactly
//! what a client would. `fast.rs` also writes a script's result; this file keeps the
//! rules' shared pieces and their tests.

/// Deepest nesting of a script's return value written out; past it the reply ends in an
/// error (a table that contains itself would otherwise never end).
pub const MAX_DEPTH: usize = 256;

/// Truncates a Lua number to an integer reply as Redis's C cast does on x86-64: values out
/// of range (and NaN) become i64::MIN.
pub fn truncate(f: f64) -> i64 {
    if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
        f as i64
    } else {
        i64::MIN
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
