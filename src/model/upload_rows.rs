//! A party's upload vectors `z` in upload order and fixed point, computed a block of rows at a
//! time.
//!
//! The rows are the only row-sized part of a party's upload: at the default width a million
//! entities' rows are 5.2 GB as fixed-point words, more again as floating point. The party's
//! networked path therefore never holds them: the `k - 1` seed servers need no data at all,
//! and the last server's correction `z - sum_s PRG(seed_s)` is computed a block of rows at a
//! time while it is sent (`crate::net::party`). In-process evaluation and tests hold `z`
//! whole ([`UploadRows::all`]); both come from the same [`Embedder`] rows, so they agree word
//! for word.

use crate::error::{Error, Result};
use crate::model::features::Embedder;
use crate::mpc::fixed::FixedPoint;
use rayon::prelude::*;

/// The rows of `z` in upload order (`order[r]` is the entity of row `r`). `Debug` shows only
/// sizes.
pub struct UploadRows {
    embedder: Embedder,
    order: Vec<u32>,
    fp: FixedPoint,
}

impl std::fmt::Debug for UploadRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "UploadRows(rows={}, width={}, <redacted>)",
            self.rows(),
            self.width()
        )
    }
}

impl UploadRows {
    /// The rows of the entities `order` (indices into `embedder`'s rows), encoded by `fp`.
    pub fn new(embedder: Embedder, order: Vec<u32>, fp: FixedPoint) -> Result<UploadRows> {
        if let Some(&e) = order.iter().find(|&&e| e as usize >= embedder.len()) {
            return Err(Error::invalid(format!(
                "upload row of entity {e}, but the graph has {} entities",
                embedder.len()
            )));
        }
        Ok(UploadRows {
            embedder,
            order,
            fp,
        })
    }

    /// Rows of the upload.
    pub fn rows(&self) -> usize {
        self.order.len()
    }

    /// Words per row.
    pub fn width(&self) -> usize {
        self.embedder.width()
    }

    /// Rows `first..first + out.len() / width` into `out`, which must hold a whole number of
    /// rows within the upload. Rows are computed in parallel.
    pub fn fill(&self, first: usize, out: &mut [u64]) -> Result<()> {
        let w = self.width();
        check_whole_rows(first, out.len(), w, self.rows())?;
        out.par_chunks_mut(w).enumerate().try_for_each_init(
            // A row in the clear: wiped when each task's buffer is dropped.
            || zeroize::Zeroizing::new(vec![0f64; w]),
            |buf, (r, words)| {
                self.embedder.row(self.order[first + r] as usize, buf);
                for (o, x) in words.iter_mut().zip(buf.iter()) {
                    *o = self.fp.encode(*x)?;
                }
                Ok(())
            },
        )
    }

    /// Every row, `rows x width`.
    pub fn all(&self) -> Result<Vec<u64>> {
        let mut z = vec![0u64; self.rows() * self.width()];
        self.fill(0, &mut z)?;
        Ok(z)
    }
}

/// Checks that `len` words from row `first` are whole rows of `width` within `rows` rows.
pub(crate) fn check_whole_rows(first: usize, len: usize, width: usize, rows: usize) -> Result<()> {
    if width == 0 || !len.is_multiple_of(width) || first + len / width > rows {
        return Err(Error::invalid(format!(
            "upload rows: {len} words from row {first} are not whole rows of {width} within {rows} rows"
        )));
    }
    Ok(())
}
