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
//!
//! A party that also writes an evaluation dump needs the rows again after its job, but its
//! [`Embedder`] (3.8 GB at a million entities) should not wait through the job beside the
//! servers. [`UploadRows::record_to`] makes the rows, as they are computed in order for the
//! upload, also go to a file (the party's own plaintext rows, on its own machine, as the dump
//! itself); once every row has been written, the embedder is dropped and later reads come from
//! the file.

use crate::error::{Error, Result};
use crate::model::features::Embedder;
use crate::mpc::fixed::FixedPoint;
use crate::mpc::row_share::{read_words_at, write_words_at};
use rayon::prelude::*;
use std::sync::{Mutex, OnceLock, RwLock};

/// The rows of `z` in upload order (`order[r]` is the entity of row `r`). `Debug` shows only
/// sizes.
pub struct UploadRows {
    /// The rows' source until they are recorded ([`UploadRows::record_to`]).
    embedder: RwLock<Option<Embedder>>,
    rows: usize,
    width: usize,
    order: Vec<u32>,
    fp: FixedPoint,
    /// Where rows computed in order are also written, and the next row expected.
    record: Mutex<Option<(std::fs::File, usize)>>,
    /// The file holding every row, once all were recorded.
    recorded: OnceLock<std::fs::File>,
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
            rows: order.len(),
            width: embedder.width(),
            embedder: RwLock::new(Some(embedder)),
            order,
            fp,
            record: Mutex::new(None),
            recorded: OnceLock::new(),
        })
    }

    /// From now on, rows computed in order from row 0 are also written to `file` (whole
    /// rows of little-endian words); when the last row is written, the embedder is dropped and
    /// every later [`UploadRows::fill`] reads the file (module docs). Fills out of that order
    /// are not recorded, and a failed write gives recording up (the embedder then stays). A
    /// `file` on a memory file system (tmpfs) keeps the rows in memory after all.
    pub fn record_to(&self, file: std::fs::File) {
        *lock(&self.record) = Some((file, 0));
    }

    /// Whether every row has been recorded and the embedder dropped.
    pub fn is_recorded(&self) -> bool {
        self.recorded.get().is_some()
    }

    /// Rows of the upload.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Words per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Rows `first..first + out.len() / width` into `out`, which must hold a whole number of
    /// rows within the upload. Rows are computed in parallel.
    pub fn fill(&self, first: usize, out: &mut [u64]) -> Result<()> {
        let w = self.width();
        check_whole_rows(first, out.len(), w, self.rows())?;
        if let Some(file) = self.recorded.get() {
            return read_words_at(file, out, first * w);
        }
        {
            let embedder = self.embedder.read().unwrap_or_else(|e| e.into_inner());
            let Some(embedder) = embedder.as_ref() else {
                // Recorded meanwhile by another fill: the rows are in the file.
                let file = self.recorded.get().ok_or_else(|| {
                    Error::invalid("upload rows: the source was dropped unrecorded")
                })?;
                return read_words_at(file, out, first * w);
            };
            out.par_chunks_mut(w).enumerate().try_for_each_init(
                // A row in the clear: wiped when each task's buffer is dropped.
                || zeroize::Zeroizing::new(vec![0f64; w]),
                |buf, (r, words)| {
                    embedder.row(self.order[first + r] as usize, buf);
                    for (o, x) in words.iter_mut().zip(buf.iter()) {
                        *o = self.fp.encode(*x)?;
                    }
                    Ok(())
                },
            )?;
        }
        let mut record = lock(&self.record);
        if let Some((file, next)) = record.as_mut()
            && *next == first
        {
            if let Err(e) = write_words_at(file, out, first * w) {
                // Recording is a convenience (the rows can still be computed): give it up
                // rather than fail the upload.
                tracing::warn!("upload rows: not recorded ({e}); their source is kept");
                *record = None;
                return Ok(());
            }
            *next += out.len() / w;
            if *next == self.rows {
                let (file, _) = record.take().expect("matched above");
                let _ = self.recorded.set(file);
                *self.embedder.write().unwrap_or_else(|e| e.into_inner()) = None;
            }
        }
        Ok(())
    }

    /// Every row, `rows x width`.
    pub fn all(&self) -> Result<Vec<u64>> {
        let mut z = vec![0u64; self.rows() * self.width()];
        self.fill(0, &mut z)?;
        Ok(z)
    }
}

/// Checks that `len` words from row `first` are whole rows of `width` within `rows` rows.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn check_whole_rows(first: usize, len: usize, width: usize, rows: usize) -> Result<()> {
    if width == 0 || !len.is_multiple_of(width) || first + len / width > rows {
        return Err(Error::invalid(format!(
            "upload rows: {len} words from row {first} are not whole rows of {width} within {rows} rows"
        )));
    }
    Ok(())
}
