//! The list of (row, column) pairs a bilinear form is evaluated on.
//!
//! Candidate generation gives every left entity the same number of right candidates, so the pair
//! list is a fixed-degree sparse matrix: `per_row` column indices for each of `n` rows. The dense
//! case (every row against every column) is stored without materialising its columns. Results of
//! a bilinear form are laid out in pair order: pair `p = i * per_row + t` is row `i`'s `t`-th
//! column.

use crate::error::{Error, Result};

/// A fixed-degree set of (row, column) pairs over an `n x m` grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairs {
    n: usize,
    m: usize,
    per_row: usize,
    /// `None` for the dense grid; else `n * per_row` column indices.
    cols: Option<Vec<u32>>,
}

impl Pairs {
    /// Every row against every column.
    pub fn dense(n: usize, m: usize) -> Pairs {
        Pairs {
            n,
            m,
            per_row: m,
            cols: None,
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
        if let Some(bad) = cols.iter().find(|&&c| c as usize >= m) {
            return Err(Error::invalid(format!(
                "pair list names column {bad}, but there are only {m} columns"
            )));
        }
        Ok(Pairs {
            n,
            m,
            per_row,
            cols: Some(cols),
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
    /// Pairs per row.
    pub fn per_row(&self) -> usize {
        self.per_row
    }
    /// Total number of pairs.
    pub fn len(&self) -> usize {
        self.n * self.per_row
    }
    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// True for the dense grid.
    pub fn is_dense(&self) -> bool {
        self.cols.is_none()
    }
    /// The explicit column list, `None` when dense.
    pub fn col_list(&self) -> Option<&[u32]> {
        self.cols.as_deref()
    }

    /// Encodes as words for a dealer request: `[n, m, per_row, dense, cols packed two per word]`.
    pub fn encode(&self, out: &mut Vec<u64>) {
        out.extend([
            self.n as u64,
            self.m as u64,
            self.per_row as u64,
            self.cols.is_none() as u64,
        ]);
        if let Some(c) = &self.cols {
            out.extend(
                c.chunks(2)
                    .map(|p| p[0] as u64 | (p.get(1).copied().unwrap_or(0) as u64) << 32),
            );
        }
    }

    /// Decodes from words, returning the pairs and the number of words consumed.
    pub fn decode(w: &[u64]) -> Result<(Pairs, usize)> {
        let bad = || Error::invalid("malformed pair list");
        let head = w.get(..4).ok_or_else(bad)?;
        let to_usize = |v: u64| usize::try_from(v).ok().filter(|&x| x < (1 << 32));
        let (n, m, per_row) = (
            to_usize(head[0]).ok_or_else(bad)?,
            to_usize(head[1]).ok_or_else(bad)?,
            to_usize(head[2]).ok_or_else(bad)?,
        );
        if head[3] == 1 {
            if per_row != m {
                return Err(bad());
            }
            return Ok((Pairs::dense(n, m), 4));
        }
        let count = n.checked_mul(per_row).ok_or_else(bad)?;
        let words = count.div_ceil(2);
        let body = w.get(4..4 + words).ok_or_else(bad)?;
        let mut cols = Vec::with_capacity(count);
        for (i, v) in body.iter().enumerate() {
            cols.push(*v as u32);
            if 2 * i + 1 < count {
                cols.push((*v >> 32) as u32);
            }
        }
        Ok((Pairs::sparse(n, m, per_row, cols)?, 4 + words))
    }

    /// For every pair, `out[p] += <p_rows[i], q_rows[j]>`, where both matrices are row-major with
    /// rows `width` long. Rows are split across threads; dense grids are processed in column
    /// tiles that stay in the L2 cache.
    pub fn accumulate_dots(&self, p_rows: &[u64], q_rows: &[u64], width: usize, out: &mut [u64]) {
        use rayon::prelude::*;
        assert_eq!(p_rows.len(), self.n * width);
        assert_eq!(q_rows.len(), self.m * width);
        assert_eq!(out.len(), self.len());
        if self.per_row == 0 || width == 0 {
            return;
        }
        // Column tile: about 512 KiB of Q rows.
        let tile = (65536 / width).clamp(8, 4096);
        let rows_per_task = 16;
        let iota: Vec<u32>;
        let (cols, dense) = match &self.cols {
            Some(c) => (c.as_slice(), false),
            None => {
                iota = (0..self.m as u32).collect();
                (iota.as_slice(), true)
            }
        };
        out.par_chunks_mut(self.per_row * rows_per_task)
            .enumerate()
            .for_each(|(task, chunk)| {
                let first = task * rows_per_task;
                let rows = chunk.len() / self.per_row;
                if dense {
                    for t0 in (0..self.m).step_by(tile) {
                        let t1 = (t0 + tile).min(self.m);
                        for r in 0..rows {
                            let i = first + r;
                            let row = &p_rows[i * width..(i + 1) * width];
                            let o = &mut chunk[r * self.per_row + t0..r * self.per_row + t1];
                            crate::ring::dot_row_many(row, q_rows, &cols[t0..t1], o);
                        }
                    }
                } else {
                    for r in 0..rows {
                        let i = first + r;
                        let row = &p_rows[i * width..(i + 1) * width];
                        let o = &mut chunk[r * self.per_row..(r + 1) * self.per_row];
                        let c = &cols[i * self.per_row..(i + 1) * self.per_row];
                        crate::ring::dot_row_many(row, q_rows, c, o);
                    }
                }
            });
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
    }

    #[test]
    fn dots_match_naive() {
        let (n, m, w) = (37, 23, 9);
        let p: Vec<u64> = (0..n * w)
            .map(|i| (i as u64).wrapping_mul(0x1234_5678_9ABC_DEF1))
            .collect();
        let q: Vec<u64> = (0..m * w).map(|i| (i as u64) ^ 0xF0F0_F0F0).collect();
        let naive =
            |i: usize, j: usize| crate::ring::dot(&p[i * w..(i + 1) * w], &q[j * w..(j + 1) * w]);
        let d = Pairs::dense(n, m);
        let mut out = vec![1u64; d.len()];
        d.accumulate_dots(&p, &q, w, &mut out);
        for i in 0..n {
            for j in 0..m {
                assert_eq!(out[i * m + j], naive(i, j).wrapping_add(1));
            }
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
