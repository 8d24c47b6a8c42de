//! Seven-bit packing of ASCII string values.
//!
//! Session values are text far more often than not: PHP's `serialize` and its session
//! encoding, JSON, base64 of a signed cookie. Every byte of such a value has its top bit
//! clear, so one byte in eight carries nothing. A string record whose whole value is ASCII
//! stores it packed, eight characters in seven bytes; any other value is stored as it is.
//!
//! At a million 100-byte sessions this is what moves a record into a smaller allocator chunk
//! (the arithmetic is in docs/BENCHMARKS.md, "Memory"): 100 bytes become 88.
//!
//! The cost is on the string paths only: a scan for the top bit and a pack on every write, an
//! unpack on every read, a group of eight characters at a time (no table, no branch per
//! byte). BMI2's `pext`/`pdep` do a group in one instruction; AMD before Zen 3 has them in
//! microcode, two orders of magnitude slower, and a feature check cannot tell, so
//! [`fast_bits`] also reads the CPU's vendor and family. Elsewhere three shift-and-mask
//! steps on one 64-bit word do the same. What each costs per request is measured in
//! docs/BENCHMARKS.md. Values outside [`MIN`]..=[`MAX`] are never packed: under 16 bytes the
//! saving is at most a byte or two, and past 4 KiB every `APPEND`, which must unpack and
//! repack the whole value, would cost more than the eighth it saves is worth. An operator who
//! would rather spend the memory than the CPU sets `pack-text-values no`.

use std::sync::atomic::{AtomicBool, Ordering};

/// Shortest value worth packing.
pub const MIN: usize = 16;
/// Longest value packed (see the module's doc).
pub const MAX: usize = 4096;

/// Packing on or off for new values (the `pack-text-values` setting); values stored
/// either way stay readable.
static ENABLED: AtomicBool = AtomicBool::new(true);

pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether `v` would be stored packed.
#[inline]
pub fn worth(v: &[u8]) -> bool {
    (MIN..=MAX).contains(&v.len()) && enabled() && is_ascii(v)
}

#[inline]
fn is_ascii(v: &[u8]) -> bool {
    let mut chunks = v.chunks_exact(8);
    let mut acc = 0u64;
    for c in &mut chunks {
        acc |= u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
    }
    for &b in chunks.remainder() {
        acc |= u64::from(b);
    }
    acc & 0x8080_8080_8080_8080 == 0
}

/// Bytes that `n` packed characters take: ⌈7n/8⌉.
#[inline]
pub const fn packed_len(n: usize) -> usize {
    (n * 7).div_ceil(8)
}

/// Eight 7-bit characters (one per byte, little-endian) into the low 56 bits.
#[inline(always)]
fn squeeze(x: u64) -> u64 {
    let x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
    let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
    (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4)
}

/// The inverse of [`squeeze`].
#[inline(always)]
fn spread(x: u64) -> u64 {
    let x = (x & 0x0fff_ffff) | ((x << 4) & 0x0fff_ffff_0000_0000);
    let x = (x & 0x0000_3fff_0000_3fff) | ((x << 2) & 0x3fff_0000_3fff_0000);
    (x & 0x007f_007f_007f_007f) | ((x << 1) & 0x7f00_7f00_7f00_7f00)
}

/// Packs ASCII `src` into `dst`, which must be [`packed_len`]`(src.len())` bytes.
#[inline]
pub fn pack(src: &[u8], dst: &mut [u8]) {
    debug_assert_eq!(dst.len(), packed_len(src.len()));
    #[cfg(target_arch = "x86_64")]
    if fast_bits() {
        // SAFETY: fast_bits() checked that the CPU has BMI2.
        return unsafe { bmi2::pack(src, dst) };
    }
    pack_with(src, dst, squeeze)
}

/// Unpacks `src` (as [`pack`] wrote it) into `dst`, one byte per character: `dst` must be
/// as long as the string that was packed.
#[inline]
pub fn unpack(src: &[u8], dst: &mut [u8]) {
    debug_assert_eq!(src.len(), packed_len(dst.len()));
    #[cfg(target_arch = "x86_64")]
    if fast_bits() {
        // SAFETY: fast_bits() checked that the CPU has BMI2.
        return unsafe { bmi2::unpack(src, dst) };
    }
    unpack_with(src, dst, spread)
}

/// The loop of [`pack`], with `f` packing one group.
#[inline(always)]
fn pack_with(src: &[u8], dst: &mut [u8], f: impl Fn(u64) -> u64) {
    let full = src.len() / 8;
    // The groups whose eight-byte store stays inside `dst` (all but the last one or two),
    // without a bounds check each.
    let fast = (dst.len().saturating_sub(1) / 7).min(full);
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    for i in 0..fast {
        // SAFETY: i < full, so src has 8 bytes at 8i; 7i + 8 <= 7(fast - 1) + 8 <= dst.len()
        // since 7·fast <= dst.len() - 1.
        unsafe {
            let x = sp.add(8 * i).cast::<u64>().read_unaligned();
            dp.add(7 * i)
                .cast::<u64>()
                .write_unaligned(f(u64::from_le(x)).to_le());
        }
    }
    for i in fast..full {
        let g: [u8; 8] = src[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]);
        let w = f(u64::from_le_bytes(g)).to_le_bytes();
        let o = i * 7;
        match dst.get_mut(o..o + 8) {
            // Eight bytes written, the last of them overwritten by the next group: one
            // store instead of a seven-byte copy.
            Some(d) => d.copy_from_slice(&w),
            None => dst[o..o + 7].copy_from_slice(&w[..7]),
        }
    }
    let tail = &src[full * 8..];
    if !tail.is_empty() {
        let mut w = [0u8; 8];
        w[..tail.len()].copy_from_slice(tail);
        let w = f(u64::from_le_bytes(w)).to_le_bytes();
        let o = full * 7;
        let n = dst.len() - o;
        dst[o..].copy_from_slice(&w[..n]);
    }
}

/// The loop of [`unpack`], with `f` unpacking one group.
#[inline(always)]
fn unpack_with(src: &[u8], dst: &mut [u8], f: impl Fn(u64) -> u64) {
    let full = dst.len() / 8;
    // The groups whose eight-byte load stays inside `src`, without a bounds check each.
    let fast = (src.len().saturating_sub(1) / 7).min(full);
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    for i in 0..fast {
        // SAFETY: 7i + 8 <= 7(fast - 1) + 8 <= src.len() since 7·fast <= src.len() - 1; and
        // i < full, so dst has 8 bytes at 8i.
        unsafe {
            let x = u64::from_le(sp.add(7 * i).cast::<u64>().read_unaligned());
            dp.add(8 * i)
                .cast::<u64>()
                .write_unaligned(f(x & 0x00ff_ffff_ffff_ffff).to_le());
        }
    }
    let (head, tail) = dst.split_at_mut(full * 8);
    for (i, o) in head.chunks_exact_mut(8).enumerate().skip(fast) {
        let s = i * 7;
        let x = match src.get(s..s + 8) {
            // One load of eight bytes, the eighth masked off.
            Some(g) => u64::from_le_bytes(g.try_into().unwrap_or([0; 8])) & 0x00ff_ffff_ffff_ffff,
            None => {
                let mut w = [0u8; 8];
                w[..7].copy_from_slice(&src[s..s + 7]);
                u64::from_le_bytes(w)
            }
        };
        o.copy_from_slice(&f(x).to_le_bytes());
    }
    if !tail.is_empty() {
        let rest = &src[full * 7..];
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        let c = f(u64::from_le_bytes(w)).to_le_bytes();
        let n = tail.len();
        tail.copy_from_slice(&c[..n]);
    }
}

/// Whether `pext`/`pdep` are there and fast: BMI2, and not an AMD CPU before family 0x19
/// (Zen 3), whose microcoded forms take hundreds of cycles. Read once.
#[cfg(target_arch = "x86_64")]
#[inline]
fn fast_bits() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    static FAST: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 no, 2 yes
    match FAST.load(Ordering::Relaxed) {
        2 => true,
        1 => false,
        _ => {
            let yes = std::arch::is_x86_feature_detected!("bmi2") && !slow_pdep();
            FAST.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
            yes
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn slow_pdep() -> bool {
    use std::arch::x86_64::__cpuid;
    #[allow(unused_unsafe)]
    // SAFETY: CPUID leaves 0 and 1 exist on every x86-64 CPU.
    let (v, f) = unsafe { (__cpuid(0), __cpuid(1)) };
    let amd = (v.ebx, v.edx, v.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163);
    let base = (f.eax >> 8) & 0xf;
    let family = if base == 0xf {
        base + ((f.eax >> 20) & 0xff)
    } else {
        base
    };
    amd && family < 0x19
}

#[cfg(target_arch = "x86_64")]
mod bmi2 {
    use std::arch::x86_64::{_pdep_u64, _pext_u64};

    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

    /// # Safety
    /// The CPU must have BMI2.
    #[target_feature(enable = "bmi2")]
    pub unsafe fn pack(src: &[u8], dst: &mut [u8]) {
        super::pack_with(src, dst, |x| _pext_u64(x, LOW7))
    }

    /// # Safety
    /// The CPU must have BMI2.
    #[target_feature(enable = "bmi2")]
    pub unsafe fn unpack(src: &[u8], dst: &mut [u8]) {
        super::unpack_with(src, dst, |x| _pdep_u64(x, LOW7))
    }
}

/// Whether `packed` (as [`pack`] wrote it) is `plain`, without unpacking it into a new
/// buffer: `plain` is packed 64 bytes at a time on the stack and compared (a lock release
/// compares a stored token on every call).
pub fn equals(packed: &[u8], plain: &[u8]) -> bool {
    // Packing drops the top bit, so a non-ASCII `plain` could pack to the same bytes.
    if packed.len() != packed_len(plain.len()) || !is_ascii(plain) {
        return false;
    }
    let mut buf = [0u8; 56];
    plain.chunks(64).enumerate().all(|(i, c)| {
        let m = packed_len(c.len());
        pack(c, &mut buf[..m]);
        packed.get(i * 56..i * 56 + m) == Some(&buf[..m])
    })
}

/// Unpacks `n` characters from `src`, appending them to `out`.
pub fn unpack_into(src: &[u8], n: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + n, 0);
    unpack(src, &mut out[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(v: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; packed_len(v.len())];
        pack(v, &mut p);
        let mut out = b"prefix".to_vec();
        unpack_into(&p, v.len(), &mut out);
        out.split_off(6)
    }

    #[test]
    fn a_session_value_takes_88_bytes() {
        assert_eq!(packed_len(100), 88);
        assert_eq!(packed_len(8), 7);
        assert_eq!(packed_len(9), 8);
    }

    #[test]
    fn only_ascii_within_bounds_is_worth_packing() {
        assert!(worth(&[b'a'; MIN]));
        assert!(!worth(&[b'a'; MIN - 1]));
        assert!(worth(&[0x7f; MAX]));
        assert!(!worth(&[b'a'; MAX + 1]));
        let mut v = vec![b'a'; 100];
        for i in [0, 7, 8, 63, 96, 99] {
            v[i] = 0x80;
            assert!(!worth(&v), "high bit at {i}");
            v[i] = b'a';
        }
    }

    #[test]
    fn equals_compares_without_unpacking() {
        let v: Vec<u8> = (0..300).map(|i| b' ' + (i * 7 % 95) as u8).collect();
        for n in [16, 63, 64, 65, 128, 300] {
            let mut p = vec![0u8; packed_len(n)];
            pack(&v[..n], &mut p);
            assert!(equals(&p, &v[..n]), "{n}");
            let mut w = v[..n].to_vec();
            w[n - 1] ^= 1;
            assert!(!equals(&p, &w), "{n}: last byte");
            // The same seven bits with the top bit set: not equal.
            w[n - 1] ^= 0x81;
            assert!(!equals(&p, &w), "{n}: top bit");
            assert!(!equals(&p, &v[..n - 1]), "{n}: shorter");
        }
    }

    proptest! {
        #[test]
        fn ascii_survives_packing(v in proptest::collection::vec(0u8..0x80, 0..300)) {
            prop_assert_eq!(round_trip(&v), v.clone());
            // Both ways of packing a group write the same bytes.
            let mut a = vec![0u8; packed_len(v.len())];
            let mut b = a.clone();
            pack_with(&v, &mut a, squeeze);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("bmi2") {
                // SAFETY: checked just above.
                unsafe { bmi2::pack(&v, &mut b) };
                prop_assert_eq!(&a, &b);
                let mut out = vec![0u8; v.len()];
                // SAFETY: as above.
                unsafe { bmi2::unpack(&a, &mut out) };
                prop_assert_eq!(&out, &v);
            }
            let mut out = vec![0u8; v.len()];
            unpack_with(&a, &mut out, spread);
            prop_assert_eq!(out, v);
        }
    }
}
