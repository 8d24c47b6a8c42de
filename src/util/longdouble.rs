//! `INCRBYFLOAT` and `HINCRBYFLOAT` arithmetic exactly as Redis does it: in the x87 80-bit
//! `long double` (64-bit mantissa), parsed as glibc's `strtold`, printed as `%.17Lf` with
//! trailing zeros removed. Redis's replies show that format's artefacts
//! (`SET a 1000.1; INCRBYFLOAT a 0` answers `1000.09999999999999998`), so an `f64` cannot give
//! the same bytes, and Rust has no `long double`.
//!
//! It is done in software, exactly: a value is `m × 2^e` with a 64-bit `m`. Parsing computes
//! the decimal's value with big integers and rounds once (to nearest, ties to even, as
//! `strtold`); addition adds exactly and rounds once (as the FPU in round-to-nearest);
//! printing expands the binary value exactly and rounds at the 17th decimal (as glibc's
//! `printf`). Only additions happen, a few per command, on short strings, so speed is not a
//! concern; correctness is, and the differential test compares it with Redis.

use std::cmp::Ordering;

/// Longest string Redis reads as a long double (`MAX_LONG_DOUBLE_CHARS`).
pub const MAX_CHARS: usize = 5 * 1024;
/// Exponent of the least significant mantissa bit of the smallest subnormal: 2^-16445.
const EMIN: i64 = -16382 - 63;
/// Largest exponent of the top bit (the value is below 2^16384).
const TOP_MAX: i64 = 16383;

/// A finite or infinite long double (NaN is never produced: Redis refuses it first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongDouble {
    neg: bool,
    /// None = infinity.
    val: Option<(u64, i64)>,
}

impl LongDouble {
    pub const ZERO: LongDouble = LongDouble {
        neg: false,
        val: Some((0, 0)),
    };

    pub fn is_infinite(&self) -> bool {
        self.val.is_none()
    }

    pub fn from_i64(v: i64) -> LongDouble {
        LongDouble {
            neg: v < 0,
            val: Some((v.unsigned_abs(), 0)),
        }
    }

    /// `string2ld`: the whole string must be a number as `strtold` reads it (decimal or hex,
    /// `inf`/`infinity`), with no leading space; NaN, overflow and underflow to zero are
    /// refused. None when Redis would say the value is not a valid float.
    pub fn parse(s: &[u8]) -> Option<LongDouble> {
        if s.is_empty() || s.len() >= MAX_CHARS {
            return None;
        }
        let (neg, body) = match s[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let lower = body.to_ascii_lowercase();
        if lower == b"inf" || lower == b"infinity" {
            return Some(LongDouble { neg, val: None });
        }
        let r = if lower.starts_with(b"0x") {
            parse_hex(&lower[2..])?
        } else {
            parse_dec(body)?
        };
        match r {
            Rounded::Zero { inexact: true } | Rounded::Inf => None,
            Rounded::Zero { inexact: false } => Some(LongDouble {
                neg,
                val: Some((0, 0)),
            }),
            Rounded::Finite(m, e) => Some(LongDouble {
                neg,
                val: Some((m, e)),
            }),
        }
    }

    /// The sum, rounded once; None for infinity or NaN (Redis's "would produce NaN or
    /// Infinity").
    pub fn checked_add(self, o: LongDouble) -> Option<LongDouble> {
        let ((ma, ea), (mb, eb)) = (self.val?, o.val?);
        if ma == 0 && mb == 0 {
            return Some(LongDouble {
                neg: self.neg && o.neg,
                val: Some((0, 0)),
            });
        }
        if ma == 0 {
            return Some(o);
        }
        if mb == 0 {
            return Some(self);
        }
        let e = ea.min(eb);
        let mut a = Big::from_u64(ma);
        a.shl((ea - e) as usize);
        let mut b = Big::from_u64(mb);
        b.shl((eb - e) as usize);
        let (neg, n) = if self.neg == o.neg {
            a.add(&b);
            (self.neg, a)
        } else {
            match a.cmp(&b) {
                Ordering::Equal => return Some(LongDouble::ZERO),
                Ordering::Greater => {
                    a.sub(&b);
                    (self.neg, a)
                }
                Ordering::Less => {
                    b.sub(&a);
                    (o.neg, b)
                }
            }
        };
        match round(&n, e, false) {
            Rounded::Inf => None,
            Rounded::Zero { .. } => Some(LongDouble {
                neg,
                val: Some((0, 0)),
            }),
            Rounded::Finite(m, e) => Some(LongDouble {
                neg,
                val: Some((m, e)),
            }),
        }
    }

    /// The nearest `f64` (for hex scores; exact when the value has at most 53 significant
    /// bits, as any hex string a client writes for a double does).
    pub fn to_f64(&self) -> Option<f64> {
        let (m, e) = self.val?;
        let v = (m as f64) * 2f64.powi(e.clamp(-2000, 2000) as i32);
        Some(if self.neg { -v } else { v })
    }

    /// `ld2string(…, LD_STR_HUMAN)`: `%.17Lf`, trailing zeros (and a bare point) removed,
    /// `-0` written `0`. Infinity is never formatted (Redis refuses it before).
    pub fn to_human(&self) -> String {
        let (m, e) = self.val.unwrap_or((0, 0));
        let mut n = Big::from_u64(m);
        n.mul_pow10(17);
        let q = if e >= 0 {
            n.shl(e as usize);
            n
        } else {
            let sh = (-e) as usize;
            let half = n.bit(sh - 1);
            let rest = n.any_below(sh - 1);
            let mut q = n.shr(sh);
            if half && (rest || q.bit(0)) {
                q.add(&Big::from_u64(1));
            }
            q
        };
        let mut digits = q.to_decimal();
        if digits.len() < 18 {
            digits = format!("{}{digits}", "0".repeat(18 - digits.len()));
        }
        let (int, frac) = digits.split_at(digits.len() - 17);
        let frac = frac.trim_end_matches('0');
        let mut s = String::with_capacity(digits.len() + 2);
        if self.neg {
            s.push('-');
        }
        s.push_str(int);
        if !frac.is_empty() {
            s.push('.');
            s.push_str(frac);
        }
        if s == "-0" {
            s = "0".into();
        }
        s
    }
}

enum Rounded {
    Zero { inexact: bool },
    Finite(u64, i64),
    Inf,
}

/// Rounds `n × 2^e` (plus something below its last bit when `sticky`) to a 64-bit mantissa,
/// to nearest with ties to even, with subnormals below 2^-16382.
fn round(n: &Big, e: i64, sticky: bool) -> Rounded {
    if n.is_zero() {
        return Rounded::Zero { inexact: sticky };
    }
    let bl = n.bits() as i64;
    let mut shift = (bl - 64).max(EMIN - e);
    let m: u64 = if shift <= 0 {
        // Exact: at most 64 bits once shifted into place.
        (n.low_u128() << (-shift) as u32) as u64
    } else {
        let s = shift as usize;
        let half = n.bit(s - 1);
        let rest = sticky || n.any_below(s - 1);
        let q = n.shr(s).low_u128();
        let mut q = q;
        if half && (rest || q & 1 == 1) {
            q += 1;
        }
        if q == 1u128 << 64 {
            q >>= 1;
            shift += 1;
        }
        q as u64
    };
    if m == 0 {
        return Rounded::Zero { inexact: true };
    }
    let exp = e + shift;
    if exp + 63 - i64::from(m.leading_zeros()) > TOP_MAX {
        return Rounded::Inf;
    }
    Rounded::Finite(m, exp)
}

/// Digits (and a point) of a decimal or hex mantissa; `None` if malformed.
fn mantissa(s: &[u8], radix: u32) -> Option<(Vec<u8>, i64, &[u8])> {
    let mut digits = Vec::new();
    let mut frac = 0i64;
    let mut seen_point = false;
    let mut any = false;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == b'.' && !seen_point {
            seen_point = true;
        } else if let Some(d) = (c as char).to_digit(radix) {
            any = true;
            if !(digits.is_empty() && d == 0) {
                digits.push(d as u8);
                if seen_point {
                    frac += 1;
                }
            } else if seen_point {
                frac += 1;
            }
        } else {
            break;
        }
        i += 1;
    }
    any.then_some((digits, frac, &s[i..]))
}

/// An exponent part: sign and decimal digits, saturated (the value is then certainly out of
/// range); it must end the string.
fn exponent(s: &[u8]) -> Option<i64> {
    let (neg, d) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: i64 = 0;
    for &c in d {
        v = (v * 10 + i64::from(c - b'0')).min(1 << 40);
    }
    Some(if neg { -v } else { v })
}

fn parse_dec(s: &[u8]) -> Option<Rounded> {
    let (digits, frac, rest) = mantissa(s, 10)?;
    let exp = match rest.first() {
        None => 0,
        Some(b'e' | b'E') => exponent(&rest[1..])?,
        Some(_) => return None,
    };
    if digits.is_empty() {
        return Some(Rounded::Zero { inexact: false });
    }
    let e10 = exp - frac;
    let dlen = digits.len() as i64;
    if dlen - 1 + e10 > 4933 {
        return Some(Rounded::Inf);
    }
    if dlen + e10 < -4952 {
        return Some(Rounded::Zero { inexact: true });
    }
    let mut d = Big::zero();
    for c in digits {
        d.mul_small(10);
        d.add(&Big::from_u64(u64::from(c)));
    }
    if e10 >= 0 {
        d.mul_pow10(e10 as u32);
        return Some(round(&d, 0, false));
    }
    let mut den = Big::from_u64(1);
    den.mul_pow10((-e10) as u32);
    // Scale so the quotient has 66–67 bits: enough for 64 plus a rounding bit and a bit of
    // margin; the remainder is the sticky bit.
    let s = 66 + den.bits() as i64 - d.bits() as i64;
    let (num, dd) = if s >= 0 {
        d.shl(s as usize);
        (d, den)
    } else {
        den.shl((-s) as usize);
        (d, den)
    };
    let (q, rem) = divide(num, &dd);
    Some(round(&Big::from_u128(q), -s, rem))
}

fn parse_hex(s: &[u8]) -> Option<Rounded> {
    let (digits, frac, rest) = mantissa(s, 16)?;
    let exp = match rest.first() {
        None => 0,
        Some(b'p') => exponent(&rest[1..])?,
        Some(_) => return None,
    };
    if digits.is_empty() {
        return Some(Rounded::Zero { inexact: false });
    }
    let mut h = Big::zero();
    for c in digits {
        h.mul_small(16);
        h.add(&Big::from_u64(u64::from(c)));
    }
    Some(round(&h, exp - 4 * frac, false))
}

/// `num / den` when the quotient is below 2^128: (quotient, remainder is not zero).
fn divide(mut num: Big, den: &Big) -> (u128, bool) {
    let mut q = 0u128;
    let top = num.bits() as i64 - den.bits() as i64;
    let mut i = top.min(127);
    while i >= 0 {
        let mut d = den.clone();
        d.shl(i as usize);
        if num.cmp(&d) != Ordering::Less {
            num.sub(&d);
            q |= 1 << i;
        }
        i -= 1;
    }
    (q, !num.is_zero())
}

/// A non-negative big integer: little-endian 32-bit limbs, no leading zero limbs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Big(Vec<u32>);

impl Big {
    fn zero() -> Big {
        Big(Vec::new())
    }

    fn from_u64(v: u64) -> Big {
        let mut b = Big(vec![v as u32, (v >> 32) as u32]);
        b.trim();
        b
    }

    fn from_u128(v: u128) -> Big {
        let mut b = Big((0..4).map(|i| (v >> (32 * i)) as u32).collect());
        b.trim();
        b
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    fn bits(&self) -> usize {
        match self.0.last() {
            None => 0,
            Some(&top) => 32 * self.0.len() - top.leading_zeros() as usize,
        }
    }

    fn bit(&self, i: usize) -> bool {
        self.0.get(i / 32).is_some_and(|l| (l >> (i % 32)) & 1 == 1)
    }

    /// Whether any bit below position `i` is set.
    fn any_below(&self, i: usize) -> bool {
        let (limbs, bits) = (i / 32, i % 32);
        self.0.iter().take(limbs.min(self.0.len())).any(|&l| l != 0)
            || (bits > 0
                && self
                    .0
                    .get(limbs)
                    .is_some_and(|&l| l & ((1 << bits) - 1) != 0))
    }

    fn low_u128(&self) -> u128 {
        self.0
            .iter()
            .take(4)
            .enumerate()
            .fold(0u128, |acc, (i, &l)| acc | (u128::from(l) << (32 * i)))
    }

    fn mul_small(&mut self, m: u32) {
        let mut carry = 0u64;
        for l in self.0.iter_mut() {
            let v = u64::from(*l) * u64::from(m) + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
        self.trim();
    }

    fn mul_pow10(&mut self, mut n: u32) {
        while n >= 9 {
            self.mul_small(1_000_000_000);
            n -= 9;
        }
        self.mul_small(10u32.pow(n));
    }

    fn add(&mut self, o: &Big) {
        if self.0.len() < o.0.len() {
            self.0.resize(o.0.len(), 0);
        }
        let mut carry = 0u64;
        for (i, l) in self.0.iter_mut().enumerate() {
            let v = u64::from(*l) + u64::from(o.0.get(i).copied().unwrap_or(0)) + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    /// `self -= o`, for `self >= o`.
    fn sub(&mut self, o: &Big) {
        let mut borrow = 0i64;
        for (i, l) in self.0.iter_mut().enumerate() {
            let v = i64::from(*l) - i64::from(o.0.get(i).copied().unwrap_or(0)) - borrow;
            if v < 0 {
                *l = (v + (1 << 32)) as u32;
                borrow = 1;
            } else {
                *l = v as u32;
                borrow = 0;
            }
        }
        self.trim();
    }

    fn cmp(&self, o: &Big) -> Ordering {
        self.0
            .len()
            .cmp(&o.0.len())
            .then_with(|| self.0.iter().rev().cmp(o.0.iter().rev()))
    }

    fn shl(&mut self, n: usize) {
        if self.is_zero() || n == 0 {
            return;
        }
        let (limbs, bits) = (n / 32, n % 32);
        if bits > 0 {
            let mut carry = 0u32;
            for l in self.0.iter_mut() {
                let v = (*l << bits) | carry;
                carry = *l >> (32 - bits);
                *l = v;
            }
            if carry > 0 {
                self.0.push(carry);
            }
        }
        self.0.splice(0..0, std::iter::repeat_n(0, limbs));
    }

    fn shr(&self, n: usize) -> Big {
        let (limbs, bits) = (n / 32, n % 32);
        if limbs >= self.0.len() {
            return Big::zero();
        }
        let src = &self.0[limbs..];
        let mut out: Vec<u32> = Vec::with_capacity(src.len());
        for i in 0..src.len() {
            let lo = src[i] >> bits;
            let hi = if bits > 0 {
                src.get(i + 1).map_or(0, |&h| h << (32 - bits))
            } else {
                0
            };
            out.push(lo | hi);
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    fn divrem_small(&mut self, d: u32) -> u32 {
        let mut rem = 0u64;
        for l in self.0.iter_mut().rev() {
            let v = (rem << 32) | u64::from(*l);
            *l = (v / u64::from(d)) as u32;
            rem = v % u64::from(d);
        }
        self.trim();
        rem as u32
    }

    fn to_decimal(&self) -> String {
        let mut n = self.clone();
        let mut chunks = Vec::new();
        while !n.is_zero() {
            chunks.push(n.divrem_small(1_000_000_000));
        }
        let mut s = chunks.last().map_or("0".to_string(), |c| c.to_string());
        for c in chunks.iter().rev().skip(1) {
            s.push_str(&format!("{c:09}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(a: &str, b: &str) -> String {
        let x = LongDouble::parse(a.as_bytes()).expect("a");
        let y = LongDouble::parse(b.as_bytes()).expect("b");
        x.checked_add(y).expect("finite").to_human()
    }

    /// Replies of redis-server 7.0 (x86-64, glibc) to INCRBYFLOAT.
    #[test]
    fn sums_print_as_redis_prints_them() {
        assert_eq!(incr("1000.1", "0"), "1000.09999999999999998");
        assert_eq!(incr("10.5", "0.1"), "10.6");
        assert_eq!(incr("0", "1e20"), "100000000000000000000");
        assert_eq!(incr("1e20", "0.1"), "100000000000000000000");
        assert_eq!(
            incr("1000.09999999999999998", "0.2"),
            "1000.29999999999999999"
        );
        assert_eq!(incr("0", "3.0e3"), "3000");
        assert_eq!(incr("3000", "2200.15"), "5200.14999999999999991");
        assert_eq!(incr("0", "123456.789"), "123456.78900000000000148");
        assert_eq!(
            incr("123456.78900000000000148", "0.001"),
            "123456.78999999999999915"
        );
        assert_eq!(incr("1.5", "-1.5"), "0");
        assert_eq!(incr("0", "0x10"), "16");
        assert_eq!(incr("5", "-1e-30"), "5");
        assert_eq!(incr("0", "-1e-30"), "0");
    }

    #[test]
    fn parsing_follows_string2ld() {
        for bad in [
            "", " 1", "1 ", "nan", "x", "1e", "1e+", ".", "0x", "1e5000", "1e-5000", "--1", "1..2",
        ] {
            assert!(LongDouble::parse(bad.as_bytes()).is_none(), "{bad:?}");
        }
        for good in [
            "1",
            "+.5",
            "5.",
            "-0",
            "0e-99999",
            "inf",
            "-Infinity",
            "0X1P3",
            "1E3",
        ] {
            assert!(LongDouble::parse(good.as_bytes()).is_some(), "{good:?}");
        }
        assert!(LongDouble::parse(b"inf").is_some_and(|v| v.is_infinite()));
        assert_eq!(
            LongDouble::parse(b"1e400").map(|v| v.to_human().len()),
            Some(401)
        );
    }
}
