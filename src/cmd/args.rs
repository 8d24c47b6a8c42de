//! Argument parsing helpers with Redis's error texts.

use super::CmdError;
use crate::resp::parse::parse_i64;

/// An integer argument (`ERR value is not an integer or out of range` otherwise).
pub fn int(arg: &[u8]) -> Result<i64, CmdError> {
    parse_i64(arg).ok_or(CmdError::NotInteger)
}

/// Case-insensitive keyword comparison.
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

pub fn lossy(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// `numkeys key … WHICH [COUNT n]` of LMPOP/BLMPOP (`LEFT|RIGHT`) and ZMPOP/BZMPOP
/// (`MIN|MAX`), numkeys at `a[first]`: the keys, whether the second word was given, and the
/// count (1 by default), with Redis's errors.
pub fn mpop<'a, 'b>(
    a: &'b [&'a [u8]],
    first: usize,
    words: (&str, &str),
) -> Result<(&'b [&'a [u8]], bool, usize), CmdError> {
    let numkeys = int(a[first])
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| CmdError::msg("ERR numkeys should be greater than 0"))?
        as usize;
    if numkeys > a.len() - first - 1 {
        return Err(CmdError::Syntax);
    }
    let keys = &a[first + 1..first + 1 + numkeys];
    let mut j = first + 1 + numkeys;
    let second = match a.get(j) {
        Some(w) if is(w, words.0) => false,
        Some(w) if is(w, words.1) => true,
        _ => return Err(CmdError::Syntax),
    };
    j += 1;
    let mut count = None;
    while j < a.len() {
        if count.is_none() && is(a[j], "count") && j + 1 < a.len() {
            let c = int(a[j + 1])
                .ok()
                .filter(|c| *c > 0)
                .ok_or_else(|| CmdError::msg("ERR count should be greater than 0"))?;
            count = Some(c as usize);
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok((keys, second, count.unwrap_or(1)))
}

/// Which of `len` elements HRANDFIELD, SRANDMEMBER, ZRANDMEMBER and SPOP return for `count`:
/// with repetitions (`unique` false, a negative count), distinct ones in random order, or
/// all of them in order when `count` covers the collection (as Redis does).
pub fn random_picks(len: usize, count: u64, unique: bool) -> Vec<usize> {
    if len == 0 {
        return Vec::new();
    }
    if !unique {
        return (0..count).map(|_| fastrand::usize(..len)).collect();
    }
    if count as usize >= len {
        return (0..len).collect();
    }
    let mut idx: Vec<usize> = (0..len).collect();
    fastrand::shuffle(&mut idx);
    idx.truncate(count as usize);
    idx
}

/// The `count [WITH…]` of HRANDFIELD (`WITHVALUES`) and ZRANDMEMBER (`WITHSCORES`), checked in
/// Redis's order: (how many, distinct or not, with the values). A negative count (repetitions
/// allowed) is bounded by `max`: Redis would build a reply of any size.
pub fn random_count(
    a: &[&[u8]],
    with: &str,
    name: &str,
    max: u64,
) -> Result<(u64, bool, bool), CmdError> {
    let l = int(a[2])?;
    if l == i64::MIN {
        return Err(CmdError::msg(format!(
            "ERR value is out of range, value must between -{max} and {max}",
            max = i64::MAX
        )));
    }
    let with_values = match a.len() {
        3 => false,
        4 if is(a[3], with) => true,
        _ => return Err(CmdError::Syntax),
    };
    if with_values && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&l) {
        return Err(CmdError::msg("ERR value is out of range"));
    }
    let (count, unique) = (l.unsigned_abs(), l >= 0);
    if !unique && count > max {
        return Err(CmdError::msg(format!(
            "ERR {name} count is too large for one reply (at most {max} with repetitions)"
        )));
    }
    Ok((count, unique, with_values))
}
