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
