//! Sorted-set algebra: ZUNION, ZINTER, ZDIFF, their STORE forms (WEIGHTS, AGGREGATE; a set
//! counts as a sorted set of score 1, as in Redis) and ZINTERCARD, each run in one
//! multi-shard block.

use super::args::{int, is};
use super::hashes::engine;
use super::zset_ranges::{store_items, stored};
use super::zsets::{emit, Items};
use super::{CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::engine::KeyRef;
use crate::store::StoreError;
use crate::util::double;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

/// The members of one source key: a sorted set, or a set (every score 1, as Redis).
fn source(k: Option<KeyRef<'_>>) -> Result<Option<Items>, StoreError> {
    let Some(k) = k else { return Ok(None) };
    if let Some(z) = k.zset() {
        return Ok(Some(z.asc().map(|(m, s)| (m.to_vec(), s)).collect()));
    }
    if let Some(s) = k.set() {
        return Ok(Some(s.iter().map(|m| (m.to_vec(), 1.0)).collect()));
    }
    Err(StoreError::WrongType)
}

fn combine_scores(a: f64, b: f64, agg: Aggregate) -> f64 {
    match agg {
        Aggregate::Sum => {
            let r = a + b;
            // inf + -inf is NaN in IEEE; Redis makes it 0.
            if r.is_nan() {
                0.0
            } else {
                r
            }
        }
        Aggregate::Min => a.min(b),
        Aggregate::Max => a.max(b),
    }
}

/// `ZUNION|ZINTER|ZDIFF numkeys key … [WEIGHTS …] [AGGREGATE …] [WITHSCORES]` and the STORE
/// forms (`store`: the destination is `a[1]`, numkeys at `a[2]`).
pub async fn zsetop<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    a: &[&[u8]],
    op: SetOp,
    store: bool,
) -> CmdResult {
    let first = if store { 2 } else { 1 };
    let numkeys = int(a[first])?;
    if numkeys < 1 {
        let name = match (op, store) {
            (SetOp::Union, true) => "zunionstore",
            (SetOp::Inter, true) => "zinterstore",
            (SetOp::Diff, true) => "zdiffstore",
            (SetOp::Union, false) => "zunion",
            (SetOp::Inter, false) => "zinter",
            (SetOp::Diff, false) => "zdiff",
        };
        return Err(CmdError::msg(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    let numkeys = numkeys as usize;
    if numkeys > a.len() - first - 1 {
        return Err(CmdError::Syntax);
    }
    let keys = &a[first + 1..first + 1 + numkeys];
    let mut weights = vec![1.0f64; numkeys];
    let mut agg = Aggregate::Sum;
    let mut withscores = false;
    let mut j = first + 1 + numkeys;
    while j < a.len() {
        let left = a.len() - j - 1;
        if op != SetOp::Diff && is(a[j], "weights") && left >= numkeys {
            for (i, w) in weights.iter_mut().enumerate() {
                *w = double::parse(a[j + 1 + i])
                    .ok_or_else(|| CmdError::msg("ERR weight value is not a float"))?;
            }
            j += numkeys + 1;
        } else if op != SetOp::Diff && is(a[j], "aggregate") && left >= 1 {
            agg = if is(a[j + 1], "sum") {
                Aggregate::Sum
            } else if is(a[j + 1], "min") {
                Aggregate::Min
            } else if is(a[j + 1], "max") {
                Aggregate::Max
            } else {
                return Err(CmdError::Syntax);
            };
            j += 2;
        } else if !store && is(a[j], "withscores") {
            withscores = true;
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let lock: &[&[u8]] = if store {
        &a[1..first + 1 + numkeys]
    } else {
        keys
    };
    let keys_owned: Vec<&[u8]> = lock.to_vec();
    let result = e.with_keys(&keys_owned, || -> Result<_, StoreError> {
        let mut sources = Vec::with_capacity(numkeys);
        for k in keys {
            sources.push(e.read(db, k, now, source)?);
        }
        let items = compute(sources, &weights, agg, op);
        if store {
            let (n, existed) = store_items(e, db, a[1], now, &items)?;
            Ok((items, Some((n, existed))))
        } else {
            Ok((items, None))
        }
    })?;
    match result {
        (_, Some((n, existed))) => {
            let event = match op {
                SetOp::Union => "zunionstore",
                SetOp::Inter => "zinterstore",
                SetOp::Diff => "zdiffstore",
            };
            stored(cx, a[1], event, n, existed);
        }
        (items, None) => emit(cx.out, &items, withscores),
    }
    Ok(())
}

/// The result of a set operation, sorted by (score, member) as Redis's result zset is.
fn compute(
    sources: Vec<Option<Items>>,
    weights: &[f64],
    agg: Aggregate,
    op: SetOp,
) -> Vec<(Vec<u8>, f64)> {
    use std::collections::HashMap;
    let weighted: Vec<Vec<(Vec<u8>, f64)>> = sources
        .into_iter()
        .zip(weights)
        .map(|(s, w)| {
            s.unwrap_or_default()
                .into_iter()
                .map(|(m, sc)| {
                    let v = sc * w;
                    (m, if v.is_nan() { 0.0 } else { v })
                })
                .collect()
        })
        .collect();
    let mut out: Vec<(Vec<u8>, f64)> = match op {
        SetOp::Union => {
            let mut acc: HashMap<Vec<u8>, f64> = HashMap::new();
            for src in weighted {
                for (m, s) in src {
                    acc.entry(m)
                        .and_modify(|v| *v = combine_scores(*v, s, agg))
                        .or_insert(s);
                }
            }
            acc.into_iter().collect()
        }
        SetOp::Inter => {
            let mut it = weighted.into_iter();
            let first = it.next().unwrap_or_default();
            let rest: Vec<HashMap<Vec<u8>, f64>> = it.map(|s| s.into_iter().collect()).collect();
            first
                .into_iter()
                .filter_map(|(m, s)| {
                    let mut v = s;
                    for r in &rest {
                        v = combine_scores(v, *r.get(&m)?, agg);
                    }
                    Some((m, v))
                })
                .collect()
        }
        SetOp::Diff => {
            let mut it = weighted.into_iter();
            let first = it.next().unwrap_or_default();
            let rest: Vec<std::collections::HashSet<Vec<u8>>> = it
                .map(|s| s.into_iter().map(|(m, _)| m).collect())
                .collect();
            first
                .into_iter()
                .filter(|(m, _)| !rest.iter().any(|r| r.contains(m)))
                .collect()
        }
    };
    out.sort_by(|x, y| {
        x.1.partial_cmp(&y.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| x.0.cmp(&y.0))
    });
    out
}

/// `ZINTERCARD numkeys key … [LIMIT limit]`.
pub async fn zintercard<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let numkeys = int(a[1])?;
    if numkeys < 1 {
        return Err(CmdError::msg(
            "ERR at least 1 input key is needed for 'zintercard' command",
        ));
    }
    let numkeys = numkeys as usize;
    if numkeys > a.len() - 2 {
        return Err(CmdError::Syntax);
    }
    let keys = &a[2..2 + numkeys];
    let mut limit = 0usize;
    let mut j = 2 + numkeys;
    while j < a.len() {
        if is(a[j], "limit") && j + 1 < a.len() {
            limit = int(a[j + 1])
                .ok()
                .filter(|l| *l >= 0)
                .ok_or_else(|| CmdError::msg("ERR LIMIT can't be negative"))?
                as usize;
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let n = e.with_keys(keys, || -> Result<usize, StoreError> {
        let mut sources = Vec::new();
        for k in keys {
            sources.push(e.read(db, k, now, source)?);
        }
        Ok(compute(sources, &vec![1.0; numkeys], Aggregate::Sum, SetOp::Inter).len())
    })?;
    cx.out.int(if limit > 0 { n.min(limit) } else { n } as i64);
    Ok(())
}
