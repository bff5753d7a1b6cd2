//! A job's rows dealt among the `W` workers of one logical compute server.
//!
//! Worker `j` owns the contiguous rows [`Shards::a`]`(j)` of party A and [`Shards::b`]`(j)` of
//! party B: their candidate slots, the scores and comparisons on them, and their results. The
//! candidate lists are public to the servers and every worker holds all of them (4 bytes per
//! slot, against about 50 bytes of state per slot it owns). Values that belong to another
//! worker's rows (a candidate's row maximum, the other side's marker of a pair listed both
//! ways, a kept pair's link token) come over the server's [`crate::mpc::mesh::Mesh`].
//!
//! The bilinear form is the one step cut the other way, **by columns**: worker `j` computes
//! every distinct pair's inner product over its slice [`Shards::columns`]`(j)` of the row width
//! (opening that slice of every row once: a server's workers together open each row once, as
//! one process does), and the workers add their partial products up, each receiving those of
//! the pairs it owns ([`pair_ranges`]: the pairs of its A slots, and of its B slots whose pair A
//! does not list), likewise the range checks' per-row sums. A pair listed both ways belongs to
//! the worker of its A row; the worker of its B row reads the score from it ([`ShardPairs`]).
//! With one worker this is exactly the single-process job.

use crate::error::{Error, Result};
use crate::model::blocking::Candidates;
use crate::mpc::mesh::At;
use crate::mpc::pairs::Pairs;
use std::ops::Range;

/// How the rows of both sides are dealt among the workers ([module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shards {
    na: usize,
    nb: usize,
    workers: usize,
}

impl Shards {
    /// `na` and `nb` rows over `workers` workers; every worker gets at least one row of each
    /// side.
    pub fn new(na: usize, nb: usize, workers: usize) -> Result<Shards> {
        // The message reaches both parties: it names no side's row count (each party's
        // upload was refused below the job's `min_rows` already; this is the last guard).
        if workers == 0 || workers > na || workers > nb {
            return Err(Error::invalid(format!(
                "{workers} workers cannot share the rows: each needs at least one row of each \
                 side"
            )));
        }
        Ok(Shards { na, nb, workers })
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    fn cut(n: usize, workers: usize, j: usize) -> usize {
        (n as u128 * j as u128 / workers as u128) as usize
    }

    /// Rows of a side of `n` rows that worker `j` of `workers` owns (what [`Shards::a`] and
    /// [`Shards::b`] give for that side).
    pub fn rows(n: usize, workers: usize, j: usize) -> Range<usize> {
        Self::cut(n, workers, j)..Self::cut(n, workers, j + 1)
    }

    /// Rows of A that worker `j` owns.
    pub fn a(&self, j: usize) -> Range<usize> {
        Self::rows(self.na, self.workers, j)
    }

    /// Rows of B that worker `j` owns.
    pub fn b(&self, j: usize) -> Range<usize> {
        Self::rows(self.nb, self.workers, j)
    }

    /// The worker owning row `row` of a side of `n` rows.
    fn owner(n: usize, workers: usize, row: usize) -> usize {
        // The last worker whose first row is at or before `row`.
        (0..workers)
            .rev()
            .find(|&j| Self::cut(n, workers, j) <= row)
            .unwrap_or(0)
    }

    /// Columns of a row of `d` words whose part of the bilinear form worker `j` computes (every
    /// worker has at least one when `d >= workers`).
    pub fn columns(&self, d: usize, j: usize) -> Range<usize> {
        Self::rows(d, self.workers, j)
    }

    /// Where slot `q` of A's lists (`per_row` slots per row) lives: its row's worker and the
    /// position among that worker's A slots.
    pub fn a_slot(&self, q: usize, per_row: usize) -> At {
        let j = Self::owner(self.na, self.workers, q / per_row);
        At {
            worker: j as u32,
            index: (q - self.a(j).start * per_row) as u32,
        }
    }

    /// Where slot `m` of B's lists lives: its row's worker and the position among that
    /// worker's B slots.
    pub fn b_slot(&self, m: usize, per_row: usize) -> At {
        let j = Self::owner(self.nb, self.workers, m / per_row);
        At {
            worker: j as u32,
            index: (m - self.b(j).start * per_row) as u32,
        }
    }

    /// Both sides' whole per-row vectors (`na` values of A's rows, then `nb` of B's) from every
    /// worker's own part (its A rows' values, then its B rows'), by worker.
    pub fn join_rows(&self, parts: &[Vec<u64>]) -> Result<Vec<u64>> {
        let mut a = Vec::with_capacity(self.na + self.nb);
        let mut b = Vec::with_capacity(self.nb);
        for (j, part) in parts.iter().enumerate() {
            let (ra, rb) = (self.a(j), self.b(j));
            if part.len() != ra.len() + rb.len() {
                return Err(Error::protocol(
                    crate::error::PeerName::Worker(j),
                    format!(
                        "sent {} row values for {} rows",
                        part.len(),
                        ra.len() + rb.len()
                    ),
                ));
            }
            a.extend_from_slice(&part[..ra.len()]);
            b.extend_from_slice(&part[ra.len()..]);
        }
        a.extend(b);
        Ok(a)
    }
}

/// The distinct pairs one worker scores, and where each of its B slots' scores comes from
/// ([module docs](self)).
#[derive(Debug)]
pub struct ShardPairs {
    /// The pairs: the worker's A slots in order, then its B slots whose pair A does not list.
    pub pairs: Pairs,
    /// For each of the worker's B slots, in order: its pair's number (below the worker's A
    /// slots when A lists the pair too: that A slot), or `u32::MAX` when another worker owns
    /// the A slot listing it ([`ShardPairs::remote`]).
    pub b_slots: Vec<u32>,
    /// The worker's B slots (positions among them) whose pair another worker's A slot lists,
    /// with that A slot (in A's lists), in order. Empty with one worker.
    pub remote: Vec<(u32, u32)>,
}

impl ShardPairs {
    /// The pairs of worker `j` of `sh`, from the lists and `in_a` (for every B slot, the A
    /// slot listing the same pair, or `u32::MAX`).
    pub fn new(c: &Candidates, sh: &Shards, j: usize, in_a: &[u32]) -> Result<ShardPairs> {
        let k = c.per_row;
        let (na, nb) = (c.a.len() / k, c.b.len() / k);
        let (ra, rb) = (sh.a(j), sh.b(j));
        let qa = ra.start * k..ra.end * k;
        let b_only = (rb.start * k..rb.end * k)
            .filter(|&m| in_a[m] == u32::MAX)
            .count();
        let mut rows = Vec::with_capacity(qa.len() + b_only);
        let mut cols = Vec::with_capacity(rows.capacity());
        for a in ra.clone() {
            rows.extend(std::iter::repeat_n(a as u32, k));
        }
        cols.extend_from_slice(&c.a[qa.clone()]);
        let mut b_slots = Vec::with_capacity(rb.len() * k);
        let mut remote = Vec::new();
        let mb = rb.start * k..rb.end * k;
        for (m, &q) in mb.clone().zip(&in_a[mb]) {
            b_slots.push(if q == u32::MAX {
                rows.push(c.b[m]);
                cols.push((m / k) as u32);
                (rows.len() - 1) as u32
            } else if qa.contains(&(q as usize)) {
                (q as usize - qa.start) as u32
            } else {
                remote.push(((m - rb.start * k) as u32, q));
                u32::MAX
            });
        }
        Ok(ShardPairs {
            pairs: Pairs::list(na, nb, rows, cols)?,
            b_slots,
            remote,
        })
    }
}

/// Where each worker's pairs ([`ShardPairs`] of that worker) sit in the list of all pairs (the
/// [`ShardPairs`] of a single worker): its A slots' pairs, then its B slots' pairs that A does
/// not list, two ranges of that list per worker. `in_a` as for [`ShardPairs::new`].
pub fn pair_ranges(c: &Candidates, sh: &Shards, in_a: &[u32]) -> Vec<[Range<usize>; 2]> {
    let k = c.per_row;
    let na = c.a.len() / k;
    // B slots whose pair A does not list, before each worker's first B slot.
    let mut before = Vec::with_capacity(sh.workers() + 1);
    let mut count = 0;
    for j in 0..sh.workers() {
        before.push(count);
        let rb = sh.b(j);
        count += in_a[rb.start * k..rb.end * k]
            .iter()
            .filter(|&&q| q == u32::MAX)
            .count();
    }
    before.push(count);
    (0..sh.workers())
        .map(|j| {
            let ra = sh.a(j);
            [
                ra.start * k..ra.end * k,
                na * k + before[j]..na * k + before[j + 1],
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shards cover every row once, in order, and locate every slot in its owner's vectors.
    #[test]
    fn shards_cover_the_rows_and_locate_slots() {
        for (na, nb, w) in [(1, 1, 1), (5, 3, 3), (10, 17, 4), (100, 7, 7)] {
            let sh = Shards::new(na, nb, w).unwrap();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for j in 0..w {
                assert!(!sh.a(j).is_empty() && !sh.b(j).is_empty());
                a.extend(sh.a(j));
                b.extend(sh.b(j));
            }
            assert_eq!(a, (0..na).collect::<Vec<_>>());
            assert_eq!(b, (0..nb).collect::<Vec<_>>());
            let k = 3;
            for q in 0..na * k {
                let at = sh.a_slot(q, k);
                let j = at.worker as usize;
                assert!(sh.a(j).contains(&(q / k)));
                assert_eq!(sh.a(j).start * k + at.index as usize, q);
            }
            for m in 0..nb * k {
                let at = sh.b_slot(m, k);
                let j = at.worker as usize;
                assert_eq!(sh.b(j).start * k + at.index as usize, m);
            }
            let parts: Vec<Vec<u64>> = (0..w)
                .map(|j| {
                    sh.a(j)
                        .chain(sh.b(j).map(|r| 1000 + r))
                        .map(|r| r as u64)
                        .collect()
                })
                .collect();
            let joined = sh.join_rows(&parts).unwrap();
            let want: Vec<u64> = (0..na)
                .chain((0..nb).map(|r| 1000 + r))
                .map(|r| r as u64)
                .collect();
            assert_eq!(joined, want);
        }
        assert!(Shards::new(3, 2, 3).is_err());
        assert!(Shards::new(3, 3, 0).is_err());
    }
}
