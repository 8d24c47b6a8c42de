//! Doubles as Redis reads and writes them: `strtod` with Redis's checks (`string2d`) and
//! `printf("%.17g")` (`addReplyDouble` in Redis 7.0, the oracle of the tests).

/// Redis's `string2d`: the whole string is a number (`inf`, `-inf` included), no leading
/// space, not NaN, not out of range (overflow, or underflow to zero). Hex floats, which
/// `strtod` also reads, go through the exact parser of `longdouble.rs`.
pub fn parse(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    if text.is_empty() || text.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let body = text.trim_start_matches(['+', '-']);
    if text.len() - body.len() > 1 {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    if lower.starts_with("nan") {
        return None;
    }
    if lower == "inf" || lower == "infinity" {
        return Some(if text.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if lower.starts_with("0x") {
        let v = crate::util::longdouble::LongDouble::parse(s)?;
        return v.to_f64().filter(|v| v.is_finite());
    }
    if !lower
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'))
    {
        return None;
    }
    let v: f64 = text.parse().ok()?;
    if v.is_infinite() {
        return None; // overflow (ERANGE with HUGE_VAL)
    }
    if v == 0.0 {
        // Underflow to zero (ERANGE) is refused; a written zero is not.
        let mantissa = lower.split('e').next().unwrap_or("");
        if mantissa.bytes().any(|c| matches!(c, b'1'..=b'9')) {
            return None;
        }
    }
    Some(v)
}

/// `printf("%.17g", d)`, with `inf`/`-inf` as Redis writes them.
pub fn fmt_g17(d: f64) -> String {
    fmt_g(d, 17)
}

/// `printf("%.<precision>g", d)` (1 ≤ precision ≤ 17), with `inf`/`-inf`/`nan` (Lua's
/// `tostring` and cjson use 14).
pub fn fmt_g(d: f64, precision: usize) -> String {
    let precision = precision.clamp(1, 17);
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.into();
    }
    if d.is_nan() {
        return "nan".into();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // `precision` significant digits, correctly rounded, as d.ddde±x.
    let e = format!("{d:.*e}", precision - 1);
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::with_capacity(32);
    if neg {
        out.push('-');
    }
    if !(-4..precision as i32).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let rest = rest.trim_end_matches('0');
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    } else if exp >= 0 {
        let (int, frac) = digits.split_at(exp as usize + 1);
        out.push_str(int);
        let frac = frac.trim_end_matches('0');
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
    } else {
        out.push_str("0.");
        out.push_str(&"0".repeat((-exp - 1) as usize));
        out.push_str(digits.trim_end_matches('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies of redis-server 7.0 to ZADD then ZSCORE.
    #[test]
    fn formats_as_printf_g17() {
        for (v, s) in [
            (0.1, "0.10000000000000001"),
            (1e20, "1e+20"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (16.0, "16"),
            (5e-324, "4.9406564584124654e-324"),
            (1.5, "1.5"),
            (100.0, "100"),
            (2.5e-5, "2.5000000000000001e-05"),
            (-3.0, "-3"),
            (0.0001, "0.0001"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(fmt_g17(v), s);
        }
    }

    #[test]
    fn parses_as_string2d() {
        assert_eq!(parse(b"1.5"), Some(1.5));
        assert_eq!(parse(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse(b"0x10"), Some(16.0));
        assert_eq!(parse(b"0e-999"), Some(0.0));
        for bad in [
            "", " 1", "1 ", "nan", "1e400", "1e-400", "x", "--1", "1e", "inf1",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
