//! A shard's tables, one per logical database, with the sum of their byte counts kept
//! current at the cost of the tables a command actually changed.
//!
//! The shard publishes its bytes after every command, so `used_memory` (INFO, maxmemory)
//! is read without a lock. Summing every table each time read 16 tables of 72 bytes,
//! about 18 cache lines, for a command that touched one: a quarter of the simulated L1
//! data misses of the string session mix (BENCHMARKS, issue #14's instruction counts).
//! Here a table reached mutably (`IndexMut`, `iter_mut`, `swap`) is marked, and [`total`]
//! re-reads the marked ones only. Debug builds check the running total against the full
//! sum every time, so a path that changes a table without marking it fails the tests.
//!
//! [`total`]: Tables::total

use std::ops::{Index, IndexMut};

use super::table::Table;

pub(crate) struct Tables {
    dbs: Box<[Table]>,
    /// Each table's bytes when last read.
    bytes: Box<[usize]>,
    /// Their sum.
    total: usize,
    /// Tables that may have changed since: bit `db % 64`.
    dirty: u64,
}

impl Tables {
    pub fn new(databases: usize) -> Tables {
        let dbs: Box<[Table]> = (0..databases).map(|_| Table::new()).collect();
        let bytes: Box<[usize]> = dbs.iter().map(Table::bytes).collect();
        Tables {
            total: bytes.iter().sum(),
            dbs,
            bytes,
            dirty: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.dbs.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Table> {
        self.dbs.iter()
    }

    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Table> {
        self.dirty = u64::MAX;
        self.dbs.iter_mut()
    }

    pub fn swap(&mut self, a: usize, b: usize) {
        self.dirty |= bit(a) | bit(b);
        self.dbs.swap(a, b);
    }

    /// The bytes of all tables, re-reading those marked since the last call.
    pub fn total(&mut self) -> usize {
        let mut dirty = std::mem::take(&mut self.dirty);
        while dirty != 0 {
            let first = dirty.trailing_zeros() as usize;
            dirty &= dirty - 1;
            // Bit b stands for databases b, b + 64, b + 128…
            for db in (first..self.dbs.len()).step_by(64) {
                let now = self.dbs[db].bytes();
                self.total = self.total + now - self.bytes[db];
                self.bytes[db] = now;
            }
        }
        debug_assert_eq!(
            self.total,
            self.dbs.iter().map(Table::bytes).sum::<usize>(),
            "a table changed without being marked"
        );
        self.total
    }
}

fn bit(db: usize) -> u64 {
    1 << (db % 64)
}

impl Index<usize> for Tables {
    type Output = Table;

    fn index(&self, db: usize) -> &Table {
        &self.dbs[db]
    }
}

impl IndexMut<usize> for Tables {
    fn index_mut(&mut self, db: usize) -> &mut Table {
        self.dirty |= bit(db);
        &mut self.dbs[db]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::entry::Entry;
    use crate::engine::mutate::test_token;

    #[test]
    fn the_total_follows_the_marked_tables() {
        let mut t = Tables::new(70);
        let empty = t.total();
        let hasher = |k: &[u8]| k.iter().fold(7u64, |h, &b| h.wrapping_mul(31) ^ b as u64);
        for db in [0usize, 5, 69] {
            let e = Entry::new(b"key", b"value", 0, 0);
            t[db].insert_new(hasher(b"key"), e, &hasher, test_token());
        }
        let full: usize = t.iter().map(Table::bytes).sum();
        assert!(full > empty);
        assert_eq!(t.total(), full);
        t.swap(5, 6);
        assert_eq!(t.total(), full);
        for table in t.iter_mut() {
            *table = Table::new();
        }
        assert_eq!(t.total(), empty);
    }
}
