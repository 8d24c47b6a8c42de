//! Key specifications: where a command's keys are, as Redis 7 describes them.
//!
//! A spec is two steps. *Begin search* finds where the keys start: at a fixed argument
//! index, or just after a keyword (`STREAMS`), searched forwards or (negative start)
//! backwards. *Find keys* then takes either a range from there (`lastkey` relative to the
//! start, -1 the last argument, with a step; a `limit` of N keeps 1/N of the remaining
//! arguments, as `XREAD … STREAMS k1 k2 id1 id2` needs), or a count read from an argument
//! (`keynum`, as `EVAL script numkeys k…`). A command has a spec per role its keys play
//! (`ZUNIONSTORE`'s destination, then its sources), and the keys are listed in spec order.
//!
//! This is what the gateway routes by: every key's slot must agree in a cluster, and the
//! first key picks the node. The table file writes a spec as `FLAGS:begin:find`, e.g.
//! `RO,access:keyword(STREAMS,1):range(-1,1,2)`; `tests/command_table.rs` checks the
//! extraction against `COMMAND GETKEYS` for every shape.

use super::table::{resolve, Spec};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    Index(usize),
    Keyword {
        keyword: &'static str,
        start_from: i32,
    },
    /// Only the command's own code knows (`SORT … STORE`, module commands).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Find {
    Range {
        last: i32,
        step: usize,
        limit: usize,
    },
    KeyNum {
        index: usize,
        first: usize,
        step: usize,
    },
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// Access flags (`RW`, `OW`, `RM`, `RO`, `access`, `insert`, `delete`, `incomplete`…).
    pub flags: Vec<&'static str>,
    pub begin: Begin,
    pub find: Find,
}

fn call<'a>(s: &'a str, name: &str) -> Option<Vec<&'a str>> {
    let inner = s.strip_prefix(name)?.strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').collect())
}

fn nums<const N: usize>(parts: &[&str], what: &str) -> Result<[i32; N], String> {
    let v: Vec<i32> = parts
        .iter()
        .map(|p| p.parse::<i32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad numbers in {what}"))?;
    v.try_into().map_err(|_| format!("wrong count in {what}"))
}

fn unsigned(n: i32, what: &str) -> Result<usize, String> {
    usize::try_from(n).map_err(|_| format!("negative value in {what}"))
}

impl KeySpec {
    /// Parses `FLAGS:begin:find`.
    pub fn parse(s: &'static str) -> Result<KeySpec, String> {
        let mut parts = s.splitn(3, ':');
        let (Some(flags), Some(begin), Some(find)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("bad key spec {s}"));
        };
        let begin = if begin == "unknown" {
            Begin::Unknown
        } else if let Some(v) = call(begin, "index") {
            let [i] = nums::<1>(&v, begin)?;
            Begin::Index(unsigned(i, begin)?)
        } else if let Some(v) = call(begin, "keyword") {
            let [keyword, start] = v[..] else {
                return Err(format!("bad {begin}"));
            };
            let [start_from] = nums::<1>(&[start], begin)?;
            // The keyword borrows from the static file text.
            let at = begin.find(keyword).unwrap_or(0);
            Begin::Keyword {
                keyword: &begin[at..at + keyword.len()],
                start_from,
            }
        } else {
            return Err(format!("bad begin_search {begin}"));
        };
        let find = if find == "unknown" {
            Find::Unknown
        } else if let Some(v) = call(find, "range") {
            let [last, step, limit] = nums::<3>(&v, find)?;
            Find::Range {
                last,
                step: unsigned(step, find)?.max(1),
                limit: unsigned(limit, find)?,
            }
        } else if let Some(v) = call(find, "keynum") {
            let [index, first, step] = nums::<3>(&v, find)?;
            Find::KeyNum {
                index: unsigned(index, find)?,
                first: unsigned(first, find)?,
                step: unsigned(step, find)?.max(1),
            }
        } else {
            return Err(format!("bad find_keys {find}"));
        };
        Ok(KeySpec {
            flags: flags.split(',').filter(|f| !f.is_empty()).collect(),
            begin,
            find,
        })
    }

    /// Appends the argument indexes of this spec's keys in `args` (name at 0). A spec that
    /// does not apply (keyword absent, index past the end) adds nothing.
    pub fn positions(&self, args: &[&[u8]], out: &mut Vec<usize>) {
        if let Some((first, last, step)) = self.range(args) {
            let mut i = first as i64;
            while i <= last {
                out.push(i as usize);
                i += step as i64;
            }
        }
    }

    /// The argument indexes of this spec's keys in `args`, as [`Self::positions`] appends
    /// them, without a vector.
    pub fn indexes(&self, args: &[&[u8]]) -> impl Iterator<Item = usize> {
        let (first, last, step) = self.range(args).unwrap_or((1, 0, 1));
        let end = (last + 1).max(first as i64) as usize;
        (first..end).step_by(step.max(1))
    }

    /// The index of this spec's first key in `args`, if it finds one: [`Self::positions`]'s
    /// first entry, without a vector.
    pub fn first_position(&self, args: &[&[u8]]) -> Option<usize> {
        let (first, last, _) = self.range(args)?;
        (first as i64 <= last).then_some(first)
    }

    /// Where this spec's keys are: the first index, the last (inclusive, at most the last
    /// argument; below the first when there are none) and the step.
    fn range(&self, args: &[&[u8]]) -> Option<(usize, i64, usize)> {
        let argc = args.len();
        let start = match &self.begin {
            Begin::Index(i) if *i < argc => *i,
            Begin::Index(_) | Begin::Unknown => return None,
            Begin::Keyword {
                keyword,
                start_from,
            } => {
                let kw = keyword.as_bytes();
                let found = if *start_from >= 0 {
                    (*start_from as usize..argc).find(|&i| args[i].eq_ignore_ascii_case(kw))
                } else {
                    let from = argc as i64 + *start_from as i64;
                    (1..=from.max(0) as usize)
                        .rev()
                        .find(|&i| i < argc && args[i].eq_ignore_ascii_case(kw))
                };
                match found {
                    Some(i) if i + 1 < argc => i + 1,
                    _ => return None,
                }
            }
        };
        let (first, last, step) = match &self.find {
            Find::Unknown => return None,
            Find::Range { last, step, limit } => {
                let last = if *last >= 0 {
                    start as i64 + *last as i64
                } else if *limit == 0 {
                    argc as i64 + *last as i64
                } else {
                    start as i64 + ((argc - start) / limit) as i64 + *last as i64
                };
                (start, last, *step)
            }
            Find::KeyNum { index, first, step } => {
                let n = args
                    .get(start + index)
                    .and_then(|a| std::str::from_utf8(a).ok())
                    .and_then(|s| s.parse::<i64>().ok())
                    .filter(|n| *n >= 0)?;
                let first = start + first;
                (first, first as i64 + (n - 1) * *step as i64, *step)
            }
        };
        Some((first, last.min(argc as i64 - 1), step))
    }
}

/// The key argument positions of a command, in spec order (as `COMMAND GETKEYS`); empty for
/// an unknown or keyless command.
pub fn key_positions(args: &[&[u8]]) -> Vec<usize> {
    let mut out = Vec::new();
    if let Some(spec) = resolve(args) {
        for ks in &spec.key_specs {
            ks.positions(args, &mut out);
        }
    }
    out
}

/// The keys of a command, in spec order.
pub fn keys<'a>(args: &[&'a [u8]]) -> Vec<&'a [u8]> {
    key_positions(args).into_iter().map(|i| args[i]).collect()
}

/// The keys of a command whose spec (the subcommand's, for a container) is known.
pub fn keys_of<'a>(spec: &Spec, args: &[&'a [u8]]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    push_keys(spec, args, &mut Vec::new(), &mut out);
    out
}

/// [`keys_of`] one at a time, without collecting them: for a check that looks at each key
/// once (a script's command against the keys it declared).
pub fn each_key_of<'s, 'a: 's>(
    spec: &'s Spec,
    args: &'s [&'a [u8]],
) -> impl Iterator<Item = &'a [u8]> + 's {
    spec.key_specs
        .iter()
        .flat_map(move |ks| ks.indexes(args))
        .map(move |i| args[i])
}

/// The first of [`keys_of`], without collecting the others: what routes a command to a
/// node when nothing needs its other keys (no cluster slot check, no transaction).
pub fn first_key_of<'a>(spec: &Spec, args: &[&'a [u8]]) -> Option<&'a [u8]> {
    spec.key_specs
        .iter()
        .find_map(|ks| ks.first_position(args))
        .map(|i| args[i])
}

/// [`keys_of`] appended to `out`, with `positions` as scratch space: for a caller that
/// collects the keys of many commands (EXEC) without allocating per command.
pub fn push_keys<'a>(
    spec: &Spec,
    args: &[&'a [u8]],
    positions: &mut Vec<usize>,
    out: &mut Vec<&'a [u8]>,
) {
    positions.clear();
    for ks in &spec.key_specs {
        ks.positions(args, positions);
    }
    out.extend(positions.iter().map(|&i| args[i]));
}

/// The keys of a command with whether each may be changed (its spec is not `RO`): the keys
/// a migration must bring to the same state in both stores after the command.
pub fn keys_with_access<'a>(spec: &Spec, args: &[&'a [u8]]) -> Vec<(&'a [u8], bool)> {
    let mut out = Vec::with_capacity(1);
    for ks in &spec.key_specs {
        let writes = !ks.flags.contains(&"RO");
        out.extend(ks.indexes(args).map(|i| (args[i], writes)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(args: &[&str]) -> Vec<String> {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        keys(&a)
            .into_iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    #[test]
    fn every_spec_in_the_table_parses() {
        assert!(super::super::table::commands().iter().any(|s| s
            .key_specs
            .iter()
            .any(|k| matches!(k.find, Find::KeyNum { .. }))));
    }

    #[test]
    fn shapes() {
        assert_eq!(k(&["GET", "a"]), ["a"]);
        assert_eq!(k(&["MSET", "a", "1", "b", "2"]), ["a", "b"]);
        assert_eq!(k(&["EVAL", "s", "2", "x", "y", "arg"]), ["x", "y"]);
        assert_eq!(k(&["EVAL", "s", "0"]), Vec::<String>::new());
        assert_eq!(k(&["EVAL", "s", "-1"]), Vec::<String>::new());
        assert_eq!(k(&["XREAD", "STREAMS", "a", "b", "0", "0"]), ["a", "b"]);
        assert_eq!(k(&["XREAD", "COUNT", "1", "STREAMS", "a", "0"]), ["a"]);
        assert_eq!(k(&["PING"]), Vec::<String>::new());
        assert_eq!(k(&["NOSUCH", "a"]), Vec::<String>::new());
        // A count larger than the arguments never reads past them.
        assert_eq!(k(&["EVAL", "s", "9", "x"]), ["x"]);
    }

    /// The gateway routes most commands by `first_key_of` alone: it must name the key that
    /// `keys_of` lists first, for every command of the table and every argument shape.
    /// Scripts check their commands' keys with `each_key_of`: the same keys, in order.
    #[test]
    fn first_key_and_each_key_agree_with_the_keys() {
        let words: [&[u8]; 9] = [b"k", b"0", b"1", b"2", b"3", b"STREAMS", b"-1", b"x", b"BY"];
        let mut checked = 0;
        for spec in super::super::table::commands() {
            for len in 0..8usize {
                for seed in 0..words.len() {
                    let mut args: Vec<&[u8]> = vec![spec.name.as_bytes()];
                    args.extend((0..len).map(|i| words[(seed + i * 7) % words.len()]));
                    let all = keys_of(spec, &args);
                    assert_eq!(first_key_of(spec, &args), all.first().copied(), "{args:?}");
                    assert_eq!(
                        each_key_of(spec, &args).collect::<Vec<_>>(),
                        all,
                        "{args:?}"
                    );
                    checked += usize::from(!all.is_empty());
                }
            }
        }
        assert!(checked > 1000, "only {checked} shapes had keys");
    }
}
