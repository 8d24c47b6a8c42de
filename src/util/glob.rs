//! Glob-style matching with Redis's `stringmatchlen` rules, for `KEYS`, `SCAN MATCH` and
//! `CONFIG GET`: `*`, `?`, `[abc]`, `[^abc]`, `[a-z]`, and `\` to escape.
//!
//! Iterative with single-star backtracking, so a hostile pattern like `*a*a*a*…b` costs
//! O(pattern × key) rather than exponential time.

pub fn glob_match(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    let eq = |a: u8, b: u8| {
        if nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    while i < s.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, i));
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(pattern, p, s[i], nocase) {
                        if matched {
                            p = next;
                            i += 1;
                            continue;
                        }
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if eq(pattern[p + 1], s[i]) {
                        p += 2;
                        i += 1;
                        continue;
                    }
                }
                c => {
                    if eq(c, s[i]) {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
            }
        }
        // Mismatch: retry from the last star, consuming one more character.
        match star {
            Some((sp, si)) => {
                p = sp;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

/// Matches `c` against the class starting at `pattern[p] == '['`. Returns whether it matched
/// and the index after the class. An unterminated class extends to the end of the pattern,
/// as in Redis.
fn class(pattern: &[u8], p: usize, c: u8, nocase: bool) -> Option<(bool, usize)> {
    let mut j = p + 1;
    let not = j < pattern.len() && pattern[j] == b'^';
    if not {
        j += 1;
    }
    let lower = |x: u8| if nocase { x.to_ascii_lowercase() } else { x };
    let c = lower(c);
    let mut matched = false;
    loop {
        if j >= pattern.len() {
            break;
        }
        if pattern[j] == b']' {
            j += 1;
            break;
        }
        if pattern[j] == b'\\' && j + 1 < pattern.len() {
            j += 1;
            if lower(pattern[j]) == c {
                matched = true;
            }
            j += 1;
        } else if j + 2 < pattern.len() && pattern[j + 1] == b'-' {
            let (mut a, mut b) = (lower(pattern[j]), lower(pattern[j + 2]));
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            if c >= a && c <= b {
                matched = true;
            }
            j += 3;
        } else {
            if lower(pattern[j]) == c {
                matched = true;
            }
            j += 1;
        }
    }
    Some((matched != not, j))
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn redis_glob_cases() {
        let m = |p: &str, s: &str| glob_match(p.as_bytes(), s.as_bytes(), false);
        assert!(m("*", ""));
        assert!(m("h?llo", "hello"));
        assert!(m("h*llo", "heeeello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("PHPREDIS_SESSION:*", "PHPREDIS_SESSION:abc"));
        assert!(!m("sess:*", "PHPREDIS_SESSION:abc"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("*a*b*c", "xxaxxbxxc"));
        assert!(!m("*a*b*c", "xxaxxbxx"));
        assert!(glob_match(b"maxMEMORY*", b"maxmemory-policy", true));
        let long = "a".repeat(5000);
        assert!(!m(&format!("{}b", "*a".repeat(30)), &long));
    }
}
