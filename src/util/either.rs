//! One of two iterators of the same item, without a box.
//!
//! A small hash or set is a pack, a large one a table, and their iterators are different
//! types. Returning `Box<dyn Iterator>` from one function was an allocation on every
//! `HGETALL` and `SMEMBERS`, the commands a session store answers most.

pub enum Either<L, R> {
    Left(L),
    Right(R),
}

impl<L, R> Iterator for Either<L, R>
where
    L: Iterator,
    R: Iterator<Item = L::Item>,
{
    type Item = L::Item;

    fn next(&mut self) -> Option<L::Item> {
        match self {
            Either::Left(l) => l.next(),
            Either::Right(r) => r.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Either::Left(l) => l.size_hint(),
            Either::Right(r) => r.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Either;

    #[test]
    fn yields_the_chosen_side() {
        let pick = |left: bool| -> Either<std::ops::Range<u8>, std::vec::IntoIter<u8>> {
            if left {
                Either::Left(0..3)
            } else {
                Either::Right(vec![7, 8].into_iter())
            }
        };
        assert_eq!(pick(true).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(pick(false).collect::<Vec<_>>(), [7, 8]);
        assert_eq!(pick(false).size_hint(), (2, Some(2)));
    }
}
