//! The order of a big sorted set: its (score, member) pairs in sorted runs ("chunks").
//!
//! Redis keeps a big sorted set in a skiplist whose links carry spans, so a member's rank and
//! the member at a rank are found in O(log n), as are ranges by score. A plain B-tree finds
//! ranges by score as fast but has no ranks: counting one walks every member before it (a
//! rank deep into a million members took about 30 ms, the worker's whole attention).
//!
//! Here the pairs are kept in order in a vector of chunks, each a sorted vector of at most
//! [`MAX`] pairs:
//! * a search by (score, member) or by score is two binary searches: over the chunks' last
//!   pairs, then within one chunk;
//! * an insert or a removal moves at most [`MAX`] pairs within one chunk; a full chunk splits
//!   in two, a chunk that runs below a quarter merges with a neighbour or takes pairs from
//!   it, so every chunk but a lone one stays at least a quarter full;
//! * a rank, or the pair at a rank, adds up the lengths of the chunks before it: at most
//!   n / 64 additions of adjacent integers (4,000 to 16,000 for a million members). (A
//!   Fenwick tree over the lengths would make that O(log n) but must be rebuilt when chunks
//!   split or merge; not needed at these sizes.)
//!
//! The pairs sit next to each other in memory, so a range is read as a sequential scan.
//! Scores compare as Redis compares them ([`Score`]: -0 equal to 0), then members bytewise;
//! a member appears at most once (the caller's member → score map guarantees it).

use std::cmp::Ordering;
use std::sync::Arc;

use super::value::Score;

/// The most pairs a chunk holds; a chunk that would hold more splits in two.
const MAX: usize = 256;
/// A chunk below this many pairs merges with a neighbour, or takes pairs from it.
const LOW: usize = MAX / 4;

type Pair = (Score, Arc<[u8]>);

fn cmp(p: &Pair, score: Score, member: &[u8]) -> Ordering {
    p.0.cmp(&score).then_with(|| (*p.1).cmp(member))
}

fn out(p: &Pair) -> (&[u8], f64) {
    (&*p.1, p.0 .0)
}

/// The (score, member) order of a sorted set (see the module's comment).
#[derive(Debug, Default, Clone)]
pub struct ZOrder {
    chunks: Vec<Vec<Pair>>,
    len: usize,
}

impl ZOrder {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunk where (score, member) is or would go: the first whose last pair is not
    /// below it, else the last chunk. None when there are no chunks.
    fn chunk_for(&self, score: Score, member: &[u8]) -> Option<usize> {
        if self.chunks.is_empty() {
            return None;
        }
        let i = self.chunks.partition_point(|c| {
            c.last()
                .is_some_and(|p| cmp(p, score, member) == Ordering::Less)
        });
        Some(i.min(self.chunks.len() - 1))
    }

    /// Adds a pair whose member is not in the set.
    pub fn insert(&mut self, score: Score, member: Arc<[u8]>) {
        self.len += 1;
        let Some(i) = self.chunk_for(score, &member) else {
            self.chunks.push(vec![(score, member)]);
            return;
        };
        let c = &mut self.chunks[i];
        let at = c.partition_point(|p| cmp(p, score, &member) == Ordering::Less);
        c.insert(at, (score, member));
        if c.len() > MAX {
            let upper = c.split_off(c.len() / 2);
            // The insert that overflowed doubled the capacity; half of it is kept.
            c.shrink_to(MAX + 1);
            self.chunks.insert(i + 1, upper);
        }
    }

    /// Removes the pair (score, member); whether it was there.
    pub fn remove(&mut self, score: Score, member: &[u8]) -> bool {
        let Some(i) = self.chunk_for(score, member) else {
            return false;
        };
        let c = &mut self.chunks[i];
        let Ok(at) = c.binary_search_by(|p| cmp(p, score, member)) else {
            return false;
        };
        c.remove(at);
        self.len -= 1;
        if c.is_empty() {
            self.chunks.remove(i);
        } else if c.len() < LOW {
            self.merge_around(i);
        }
        true
    }

    /// Chunk `i` ran below [`LOW`]: it merges with a neighbour when the two fit in one
    /// chunk, else takes half the difference from the neighbour after (or before) it. Every
    /// chunk but a lone one so stays at [`LOW`] pairs or more.
    fn merge_around(&mut self, i: usize) {
        let n = self.chunks[i].len();
        let last = self.chunks.len() - 1;
        if i < last && n + self.chunks[i + 1].len() <= MAX {
            let next = self.chunks.remove(i + 1);
            self.chunks[i].extend(next);
        } else if i > 0 && self.chunks[i - 1].len() + n <= MAX {
            let this = self.chunks.remove(i);
            self.chunks[i - 1].extend(this);
        } else if i < last {
            let k = (self.chunks[i + 1].len() - n) / 2;
            let moved: Vec<Pair> = self.chunks[i + 1].drain(..k).collect();
            self.chunks[i].extend(moved);
        } else if i > 0 {
            let prev = &mut self.chunks[i - 1];
            let k = (prev.len() - n) / 2;
            let mut moved = prev.split_off(prev.len() - k);
            moved.append(&mut self.chunks[i]);
            self.chunks[i] = moved;
        }
    }

    /// Every pair, lowest first (`.rev()`: highest first).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], f64)> {
        self.chunks.iter().flatten().map(out)
    }

    /// The pairs from position `(i, at)` on, lowest first.
    fn up_from(&self, i: usize, at: usize) -> impl Iterator<Item = (&[u8], f64)> {
        let (here, rest): (&[Pair], &[Vec<Pair>]) = match self.chunks.get(i) {
            Some(c) => (&c[at.min(c.len())..], &self.chunks[i + 1..]),
            None => (&[], &[]),
        };
        here.iter().chain(rest.iter().flatten()).map(out)
    }

    /// The pairs from position `(i, at)` down, highest first (`at` included).
    fn down_from(&self, i: usize, at: usize) -> impl Iterator<Item = (&[u8], f64)> {
        let (here, rest): (&[Pair], &[Vec<Pair>]) = match self.chunks.get(i) {
            Some(c) => (&c[..(at + 1).min(c.len())], &self.chunks[..i]),
            None => (&[], &[]),
        };
        here.iter()
            .rev()
            .chain(rest.iter().rev().flat_map(|c| c.iter().rev()))
            .map(out)
    }

    /// The pairs with a score of at least `min`, lowest first.
    pub fn from_score(&self, min: f64) -> impl Iterator<Item = (&[u8], f64)> {
        let min = Score(min);
        let i = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|p| p.0 < min));
        let at = self
            .chunks
            .get(i)
            .map_or(0, |c| c.partition_point(|p| p.0 < min));
        self.up_from(i, at)
    }

    /// The pairs with a score of at most `max`, highest first.
    pub fn down_from_score(&self, max: f64) -> impl Iterator<Item = (&[u8], f64)> {
        let max = Score(max);
        // The chunks that start at or below `max`; the last of them holds the first pair.
        let n = self
            .chunks
            .partition_point(|c| c.first().is_some_and(|p| p.0 <= max));
        match n.checked_sub(1) {
            Some(i) => {
                let below = self.chunks[i].partition_point(|p| p.0 <= max);
                // `below` ≥ 1: the chunk's first pair is at or below `max`.
                self.down_from(i, below.saturating_sub(1))
            }
            None => self.down_from(self.chunks.len(), 0),
        }
    }

    /// The 0-based rank of (score, member) from the lowest; None if absent.
    pub fn rank(&self, score: Score, member: &[u8]) -> Option<usize> {
        let i = self.chunk_for(score, member)?;
        let at = self.chunks[i]
            .binary_search_by(|p| cmp(p, score, member))
            .ok()?;
        Some(self.chunks[..i].iter().map(Vec::len).sum::<usize>() + at)
    }

    /// The chunk and offset of the pair at `rank` from the lowest; None past the end.
    fn locate(&self, mut rank: usize) -> Option<(usize, usize)> {
        for (i, c) in self.chunks.iter().enumerate() {
            if rank < c.len() {
                return Some((i, rank));
            }
            rank -= c.len();
        }
        None
    }

    /// The pairs from rank `rank` on (0 = the lowest), lowest first.
    pub fn from_rank(&self, rank: usize) -> impl Iterator<Item = (&[u8], f64)> {
        let (i, at) = self.locate(rank).unwrap_or((self.chunks.len(), 0));
        self.up_from(i, at)
    }

    /// The pairs from rank `rank` counted from the highest (0 = the highest), highest first.
    pub fn down_from_rank(&self, rank: usize) -> impl Iterator<Item = (&[u8], f64)> {
        let (i, at) = self
            .len
            .checked_sub(rank + 1)
            .and_then(|r| self.locate(r))
            .unwrap_or((self.chunks.len(), 0));
        self.down_from(i, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// The model: a B-tree of (score, member), scores as Redis orders them.
    fn model_pairs(m: &BTreeSet<(Score, Vec<u8>)>) -> Vec<(Vec<u8>, f64)> {
        m.iter().map(|(s, k)| (k.clone(), s.0)).collect()
    }

    fn owned<'a>(it: impl Iterator<Item = (&'a [u8], f64)>) -> Vec<(Vec<u8>, f64)> {
        it.map(|(m, s)| (m.to_vec(), s)).collect()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(u16, i8),
        Remove(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u16..2000, -20i8..20).prop_map(|(m, s)| Op::Add(m, s)),
            2 => (0u16..2000).prop_map(Op::Remove),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Every operation agrees with the B-tree model, through splits and merges: the
        /// order, the ranks, the pair at a rank and the ranges by score either way.
        #[test]
        fn agrees_with_a_btree(ops in proptest::collection::vec(op(), 1..3000), probe in -22i8..22) {
            let mut z = ZOrder::default();
            let mut model: BTreeSet<(Score, Vec<u8>)> = BTreeSet::new();
            let mut scores = std::collections::HashMap::new();
            for op in ops {
                match op {
                    Op::Add(m, s) => {
                        let key = format!("m{m}").into_bytes();
                        // -0 for some, to check it sorts with 0.
                        let score = if s == 0 && m % 2 == 0 { -0.0 } else { f64::from(s) / 2.0 };
                        if let Some(old) = scores.insert(key.clone(), score) {
                            prop_assert!(z.remove(Score(old), &key));
                            model.remove(&(Score(old), key.clone()));
                        }
                        z.insert(Score(score), Arc::from(&key[..]));
                        model.insert((Score(score), key));
                    }
                    Op::Remove(m) => {
                        let key = format!("m{m}").into_bytes();
                        let had = scores.remove(&key);
                        let removed = had.is_some_and(|s| z.remove(Score(s), &key));
                        prop_assert_eq!(removed, had.is_some());
                        if let Some(s) = had {
                            model.remove(&(Score(s), key));
                        }
                    }
                }
            }
            prop_assert_eq!(z.len(), model.len());
            for c in &z.chunks {
                let low = if z.chunks.len() == 1 { 1 } else { LOW };
                prop_assert!(c.len() >= low && c.len() <= MAX, "a chunk of {}", c.len());
            }
            let all = model_pairs(&model);
            prop_assert_eq!(owned(z.iter()), all.clone());
            let mut rev = all.clone();
            rev.reverse();
            prop_assert_eq!(owned(z.iter().rev()), rev.clone());
            for (r, (k, s)) in all.iter().enumerate().step_by(7) {
                prop_assert_eq!(z.rank(Score(*s), k), Some(r));
                prop_assert_eq!(owned(z.from_rank(r)), all[r..].to_vec());
                prop_assert_eq!(owned(z.down_from_rank(r)), rev[r..].to_vec());
            }
            prop_assert_eq!(z.rank(Score(99.0), b"m1"), None);
            prop_assert_eq!(owned(z.from_rank(all.len())), vec![]);
            prop_assert_eq!(owned(z.down_from_rank(all.len())), vec![]);
            let bound = f64::from(probe) / 2.0;
            let up: Vec<_> = all.iter().filter(|(_, s)| Score(*s) >= Score(bound)).cloned().collect();
            prop_assert_eq!(owned(z.from_score(bound)), up);
            let down: Vec<_> = rev.iter().filter(|(_, s)| Score(*s) <= Score(bound)).cloned().collect();
            prop_assert_eq!(owned(z.down_from_score(bound)), down);
            for b in [f64::NEG_INFINITY, f64::INFINITY, -0.0] {
                let up: Vec<_> = all.iter().filter(|(_, s)| Score(*s) >= Score(b)).cloned().collect();
                prop_assert_eq!(owned(z.from_score(b)), up);
                let down: Vec<_> = rev.iter().filter(|(_, s)| Score(*s) <= Score(b)).cloned().collect();
                prop_assert_eq!(owned(z.down_from_score(b)), down);
            }
        }
    }

    /// Checks the order, every rank and the chunk bounds against the sorted `want`.
    fn check(z: &ZOrder, want: &[(Vec<u8>, f64)]) {
        assert_eq!(owned(z.iter()), want);
        assert_eq!(z.len(), want.len());
        for c in &z.chunks {
            let low = if z.chunks.len() == 1 { 1 } else { LOW };
            assert!(c.len() >= low && c.len() <= MAX, "a chunk of {}", c.len());
        }
        for (r, (k, s)) in want.iter().enumerate() {
            assert_eq!(z.rank(Score(*s), k), Some(r));
        }
    }

    /// Runs of removals drain whole chunks, from the front, the back and the middle, so
    /// chunks empty, run low and merge with the neighbour after and before them.
    #[test]
    fn chunks_split_drain_and_merge_in_order() {
        let mut z = ZOrder::default();
        let mut want: Vec<(Vec<u8>, f64)> = Vec::new();
        for i in 0..3000u32 {
            let m = format!("{i:05}").into_bytes();
            z.insert(Score(f64::from(i % 1000)), Arc::from(&m[..]));
            want.push((m, f64::from(i % 1000)));
        }
        want.sort_by(|a, b| (Score(a.1), &a.0).cmp(&(Score(b.1), &b.0)));
        check(&z, &want);
        let chunks = z.chunks.len();
        assert!(chunks >= 3000 / MAX, "{chunks} chunks");
        // From the back, one at a time, down to a few: the last chunk merges backwards.
        while want.len() > 2500 {
            let (m, s) = want.pop().expect("members");
            assert!(z.remove(Score(s), &m));
            check(&z, &want);
        }
        // From the front.
        while want.len() > 2000 {
            let (m, s) = want.remove(0);
            assert!(z.remove(Score(s), &m));
        }
        check(&z, &want);
        // Every other member of the middle, then the rest of a run.
        let mut i = 500;
        while i < 1500 && i < want.len() {
            let (m, s) = want.remove(i);
            assert!(z.remove(Score(s), &m));
            i += 1;
        }
        check(&z, &want);
        while want.len() > 700 {
            let (m, s) = want.remove(600);
            assert!(z.remove(Score(s), &m));
        }
        check(&z, &want);
        assert!(z.chunks.len() < chunks);
        for (m, s) in std::mem::take(&mut want) {
            assert!(z.remove(Score(s), &m));
        }
        check(&z, &want);
        assert!(z.chunks.is_empty());
    }

    /// The last chunk runs low next to a full one: too many to merge, so it takes pairs
    /// from the chunk before it (and the first chunk from the one after it).
    #[test]
    fn a_low_chunk_takes_pairs_from_a_full_neighbour() {
        let pairs = |from: u32, to: u32| -> Vec<Pair> {
            (from..to)
                .map(|i| (Score(f64::from(i)), Arc::from(format!("{i:04}").as_bytes())))
                .collect()
        };
        for (chunks, victim) in [
            (vec![pairs(0, 250), pairs(250, 250 + LOW as u32)], 300u32),
            (
                vec![pairs(0, LOW as u32), pairs(LOW as u32, LOW as u32 + 250)],
                10,
            ),
        ] {
            let len = chunks.iter().map(Vec::len).sum();
            let mut z = ZOrder { chunks, len };
            let mut want: Vec<(Vec<u8>, f64)> = owned(z.iter());
            let m = format!("{victim:04}").into_bytes();
            assert!(z.remove(Score(f64::from(victim)), &m));
            want.retain(|(k, _)| *k != m);
            assert_eq!(z.chunks.len(), 2);
            check(&z, &want);
        }
    }

    #[test]
    fn an_empty_order_has_nothing_anywhere() {
        let mut z = ZOrder::default();
        assert!(z.is_empty());
        assert!(!z.remove(Score(1.0), b"a"));
        assert_eq!(z.rank(Score(1.0), b"a"), None);
        assert_eq!(z.from_score(0.0).count(), 0);
        assert_eq!(z.down_from_score(0.0).count(), 0);
        assert_eq!(z.from_rank(0).count(), 0);
        assert_eq!(z.down_from_rank(0).count(), 0);
    }
}
