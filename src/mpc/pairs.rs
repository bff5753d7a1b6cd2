//! The list of (row, column) pairs a bilinear form is evaluated on.
//!
//! Three layouts: the dense grid (every row against every column, stored without materialising
//! anything), a fixed-degree sparse matrix (`per_row` columns for each row: candidate lists), and
//! an explicit list (both directions' candidate pairs in one form, so each matrix is opened
//! once). Results of a bilinear form are laid out in pair order.

use crate::error::{Error, Result};

/// How the pairs are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// Every row against every column, row-major.
    Dense,
    /// `per_row` listed columns for each row, row-major.
    Fixed { per_row: usize, cols: Vec<u32> },
    /// An explicit list of (row, column) pairs.
    List { rows: Vec<u32>, cols: Vec<u32> },
}

/// A set of (row, column) pairs over an `n x m` grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairs {
    n: usize,
    m: usize,
    layout: Layout,
}

fn check_cols(cols: &[u32], m: usize, what: &str) -> Result<()> {
    if let Some(bad) = cols.iter().find(|&&c| c as usize >= m) {
        return Err(Error::invalid(format!(
            "pair list names {what} {bad}, but there are only {m}"
        )));
    }
    Ok(())
}

impl Pairs {
    /// Every row against every column.
    pub fn dense(n: usize, m: usize) -> Pairs {
        Pairs {
            n,
            m,
            layout: Layout::Dense,
        }
    }

    /// `per_row` listed columns for each of `n` rows (`cols.len() == n * per_row`).
    pub fn sparse(n: usize, m: usize, per_row: usize, cols: Vec<u32>) -> Result<Pairs> {
        if cols.len() != n * per_row {
            return Err(Error::invalid(format!(
                "pair list has {} columns, expected {n} rows x {per_row}",
                cols.len()
            )));
        }
        check_cols(&cols, m, "column")?;
        Ok(Pairs {
            n,
            m,
            layout: Layout::Fixed { per_row, cols },
        })
    }

    /// An explicit list of pairs `(rows[p], cols[p])`.
    pub fn list(n: usize, m: usize, rows: Vec<u32>, cols: Vec<u32>) -> Result<Pairs> {
        if rows.len() != cols.len() {
            return Err(Error::invalid(
                "pair list: rows and columns differ in length",
            ));
        }
        check_cols(&rows, n, "row")?;
        check_cols(&cols, m, "column")?;
        Ok(Pairs {
            n,
            m,
            layout: Layout::List { rows, cols },
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.n
    }
    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.m
    }
    /// Total number of pairs.
    pub fn len(&self) -> usize {
        match &self.layout {
            Layout::Dense => self.n * self.m,
            Layout::Fixed { cols, .. } => cols.len(),
            Layout::List { rows, .. } => rows.len(),
        }
    }
    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The `(row, column)` of pair `p`.
    pub fn pair(&self, p: usize) -> (usize, usize) {
        match &self.layout {
            Layout::Dense => (p / self.m, p % self.m),
            Layout::Fixed { per_row, cols } => (p / per_row, cols[p] as usize),
            Layout::List { rows, cols } => (rows[p] as usize, cols[p] as usize),
        }
    }

    /// Encodes as words for a dealer request: `[n, m, kind, len, indices packed two per word]`.
    pub fn encode(&self, out: &mut Vec<u64>) {
        let pack = |out: &mut Vec<u64>, v: &[u32]| {
            out.extend(
                v.chunks(2)
                    .map(|p| p[0] as u64 | (p.get(1).copied().unwrap_or(0) as u64) << 32),
            );
        };
        out.extend([self.n as u64, self.m as u64]);
        match &self.layout {
            Layout::Dense => out.extend([0, 0]),
            Layout::Fixed { per_row, cols } => {
                out.extend([1, *per_row as u64]);
                pack(out, cols);
            }
            Layout::List { rows, cols } => {
                out.extend([2, rows.len() as u64]);
                pack(out, rows);
                pack(out, cols);
            }
        }
    }

    /// Decodes from words, returning the pairs and the number of words consumed.
    pub fn decode(w: &[u64]) -> Result<(Pairs, usize)> {
        let bad = || Error::invalid("malformed pair list");
        let head = w.get(..4).ok_or_else(bad)?;
        let small = |v: u64| {
            usize::try_from(v)
                .ok()
                .filter(|&x| x < (1 << 32))
                .ok_or_else(bad)
        };
        let (n, m, arg) = (small(head[0])?, small(head[1])?, small(head[3])?);
        let unpack = |from: usize, count: usize| -> Result<Vec<u32>> {
            let body = w.get(from..from + count.div_ceil(2)).ok_or_else(bad)?;
            Ok(body
                .iter()
                .flat_map(|v| [*v as u32, (*v >> 32) as u32])
                .take(count)
                .collect())
        };
        match head[2] {
            0 => Ok((Pairs::dense(n, m), 4)),
            1 => {
                let count = n.checked_mul(arg).ok_or_else(bad)?;
                let cols = unpack(4, count)?;
                Ok((Pairs::sparse(n, m, arg, cols)?, 4 + count.div_ceil(2)))
            }
            2 => {
                let words = arg.div_ceil(2);
                let rows = unpack(4, arg)?;
                let cols = unpack(4 + words, arg)?;
                Ok((Pairs::list(n, m, rows, cols)?, 4 + 2 * words))
            }
            _ => Err(bad()),
        }
    }

    /// For every pair, `out[p] += <p_rows[i], q_rows[j]>`, where both matrices are row-major with
    /// rows `width` long. Work is split across threads; dense grids are processed in column
    /// tiles that stay in the L2 cache.
    pub fn accumulate_dots(&self, p_rows: &[u64], q_rows: &[u64], width: usize, out: &mut [u64]) {
        use rayon::prelude::*;
        assert_eq!(p_rows.len(), self.n * width);
        assert_eq!(q_rows.len(), self.m * width);
        assert_eq!(out.len(), self.len());
        if self.is_empty() || width == 0 {
            return;
        }
        let row = |i: usize| &p_rows[i * width..(i + 1) * width];
        match &self.layout {
            Layout::Dense => {
                let iota: Vec<u32> = (0..self.m as u32).collect();
                // Column tile: about 512 KiB of Q rows.
                let tile = (65536 / width).clamp(8, 4096);
                let rows_per_task = 16;
                out.par_chunks_mut(self.m * rows_per_task)
                    .enumerate()
                    .for_each(|(task, chunk)| {
                        let first = task * rows_per_task;
                        let rows = chunk.len() / self.m;
                        for t0 in (0..self.m).step_by(tile) {
                            let t1 = (t0 + tile).min(self.m);
                            for r in 0..rows {
                                let o = &mut chunk[r * self.m + t0..r * self.m + t1];
                                crate::mpc::ring::dot_row_many(
                                    row(first + r),
                                    q_rows,
                                    &iota[t0..t1],
                                    o,
                                );
                            }
                        }
                    });
            }
            Layout::Fixed { per_row, cols } => {
                let per_row = *per_row;
                if per_row == 0 {
                    return;
                }
                out.par_chunks_mut(per_row)
                    .zip(cols.par_chunks(per_row))
                    .enumerate()
                    .for_each(|(i, (o, c))| {
                        crate::mpc::ring::dot_row_many(row(i), q_rows, c, o);
                    });
            }
            Layout::List { rows, cols } => {
                // Consecutive pairs that share a row (one entity's candidates) or a column (the
                // other direction's lists) go through the blocked one-against-many kernel; the
                // dot product is symmetric, so a shared column works with the roles swapped.
                let q_row = |j: usize| &q_rows[j * width..(j + 1) * width];
                out.par_chunks_mut(4096).enumerate().for_each(|(c, o)| {
                    let base = c * 4096;
                    let (rs, cs) = (&rows[base..base + o.len()], &cols[base..base + o.len()]);
                    let mut t = 0;
                    while t < o.len() {
                        let same_row = rs[t..].iter().take_while(|&&r| r == rs[t]).count();
                        let same_col = cs[t..].iter().take_while(|&&c| c == cs[t]).count();
                        let (one, many, idx, len) = if same_row >= same_col {
                            (row(rs[t] as usize), q_rows, cs, same_row)
                        } else {
                            (q_row(cs[t] as usize), p_rows, rs, same_col)
                        };
                        let end = t + len;
                        crate::mpc::ring::dot_row_many(one, many, &idx[t..end], &mut o[t..end]);
                        t = end;
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_and_validation() {
        let p = Pairs::sparse(3, 5, 2, vec![0, 4, 1, 2, 3, 3]).unwrap();
        let mut w = vec![];
        p.encode(&mut w);
        assert_eq!(Pairs::decode(&w).unwrap(), (p, w.len()));
        let d = Pairs::dense(4, 7);
        let mut w = vec![];
        d.encode(&mut w);
        assert_eq!(Pairs::decode(&w).unwrap().0, d);
        assert!(Pairs::sparse(2, 3, 1, vec![0, 3]).is_err());
        assert!(Pairs::sparse(2, 3, 2, vec![0]).is_err());
        assert!(Pairs::decode(&[1, 2]).is_err());
        let l = Pairs::list(3, 4, vec![0, 2, 1], vec![3, 3, 0]).unwrap();
        let mut w = vec![];
        l.encode(&mut w);
        assert_eq!(Pairs::decode(&w).unwrap(), (l, w.len()));
        assert!(Pairs::list(3, 4, vec![3], vec![0]).is_err());
    }

    #[test]
    fn dots_match_naive() {
        let (n, m, w) = (37, 23, 9);
        let p: Vec<u64> = (0..n * w)
            .map(|i| (i as u64).wrapping_mul(0x1234_5678_9ABC_DEF1))
            .collect();
        let q: Vec<u64> = (0..m * w).map(|i| (i as u64) ^ 0xF0F0_F0F0).collect();
        let naive = |i: usize, j: usize| {
            crate::mpc::ring::dot(&p[i * w..(i + 1) * w], &q[j * w..(j + 1) * w])
        };
        let d = Pairs::dense(n, m);
        let mut out = vec![1u64; d.len()];
        d.accumulate_dots(&p, &q, w, &mut out);
        for i in 0..n {
            for j in 0..m {
                assert_eq!(out[i * m + j], naive(i, j).wrapping_add(1));
            }
        }
        let rows: Vec<u32> = (0..50).map(|x| (x * 11 % n) as u32).collect();
        let lcols: Vec<u32> = (0..50).map(|x| (x * 5 % m) as u32).collect();
        let l = Pairs::list(n, m, rows.clone(), lcols.clone()).unwrap();
        let mut out = vec![0u64; l.len()];
        l.accumulate_dots(&p, &q, w, &mut out);
        for k in 0..50 {
            assert_eq!(out[k], naive(rows[k] as usize, lcols[k] as usize));
            assert_eq!(l.pair(k), (rows[k] as usize, lcols[k] as usize));
        }
        // Shaped like the alignment's list: runs sharing a row, then runs sharing a column.
        let (mut rr, mut cc) = (Vec::new(), Vec::new());
        for i in 0..n {
            for t in 0..5 {
                rr.push(i as u32);
                cc.push(((i * 3 + t * 7) % m) as u32);
            }
        }
        for j in 0..m {
            for t in 0..6 {
                rr.push(((j * 5 + t * 11) % n) as u32);
                cc.push(j as u32);
            }
        }
        let l = Pairs::list(n, m, rr.clone(), cc.clone()).unwrap();
        let mut out = vec![3u64; l.len()];
        l.accumulate_dots(&p, &q, w, &mut out);
        for k in 0..l.len() {
            assert_eq!(
                out[k],
                naive(rr[k] as usize, cc[k] as usize).wrapping_add(3),
                "pair {k}"
            );
        }
        let cols: Vec<u32> = (0..n * 3).map(|x| (x * 7 % m) as u32).collect();
        let s = Pairs::sparse(n, m, 3, cols.clone()).unwrap();
        let mut out = vec![0u64; s.len()];
        s.accumulate_dots(&p, &q, w, &mut out);
        for (k, &j) in cols.iter().enumerate() {
            assert_eq!(out[k], naive(k / 3, j as usize));
        }
    }
}
