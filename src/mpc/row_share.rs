//! A server's share of an uploaded `rows x d` matrix, and where it lives.
//!
//! An upload is shared with PRG compression ([`crate::mpc::share`]): every server but the last
//! receives a 32-byte seed, the last one the explicit correction `z - sum PRG(seed_s)`. Held as
//! words, both sides' uploads are the largest thing a server keeps (10.4 GB at a million rows
//! per side and 648 words per row), and the bilinear form needs them only a group of columns
//! at a time ([`crate::mpc::beaver::Bilinear`]). So a share is one of:
//!
//! * [`RowShare::Held`]: the words in memory (small jobs, tests, in-process runs);
//! * [`RowShare::Seeded`]: the seed's stream, drawn where used, never held;
//! * [`RowShare::Spilled`]: the explicit correction, written as it arrives to an unlinked
//!   temporary file ([`Spill`]) laid out by stripes of [`STRIPE`] columns, so that a group of
//!   columns is read back as a few long sequential reads.
//!
//! All three give the same words through [`RowShare::column_block`]. A spilled share is one
//! server's additive share (uniform on its own); the file is unlinked from creation (no other
//! process can open it by name) and created readable by its owner only; its blocks are freed,
//! not overwritten, when it is dropped.

use crate::error::{Error, Result};
use crate::mpc::correlated::{MAX_PASS_COLUMNS, Part, Stream};
use rayon::prelude::*;
use std::path::Path;
use std::sync::Arc;

/// Columns per stripe of a spilled share's file (64 bytes per row and stripe).
pub const STRIPE: usize = 8;

/// Rows per read when a column block is read back from a spilled share.
const READ_ROWS: usize = 1 << 15;

/// A server's share of a `rows x d` row-major matrix (module docs). `Debug` shows only sizes.
#[derive(Clone)]
pub enum RowShare {
    /// The words, in memory.
    Held(Vec<u64>),
    /// A seed's stream, drawn where used.
    Seeded(Stream),
    /// The words in a temporary file.
    Spilled(Arc<Spill>),
    /// Some columns of every row of another share ([`RowShare::columns`]): a worker of a
    /// server split into workers ([`crate::model::shard`]) computes the bilinear form over its
    /// slice of the columns.
    Columns(Box<Columns>),
}

/// Columns `first..first + width` of every row of a `_ x d` share ([`RowShare::Columns`]).
#[derive(Clone)]
pub struct Columns {
    of: RowShare,
    d: usize,
    first: usize,
    width: usize,
}

impl Default for RowShare {
    fn default() -> Self {
        RowShare::Held(Vec::new())
    }
}

impl std::fmt::Debug for RowShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowShare::Held(w) => write!(f, "RowShare::Held(len={}, <redacted>)", w.len()),
            RowShare::Seeded(s) => write!(f, "RowShare::Seeded(len={}, <redacted>)", s.len()),
            RowShare::Spilled(s) => write!(f, "RowShare::Spilled(len={})", s.len()),
            RowShare::Columns(c) => write!(
                f,
                "RowShare::Columns({}..{} of {:?})",
                c.first,
                c.first + c.width,
                c.of
            ),
        }
    }
}

impl zeroize::Zeroize for RowShare {
    fn zeroize(&mut self) {
        match self {
            RowShare::Held(w) => w.zeroize(),
            RowShare::Columns(c) => c.of.zeroize(),
            // The seed is wiped when the stream drops; the file's blocks are freed.
            _ => *self = RowShare::default(),
        }
    }
}

impl RowShare {
    /// Words in the matrix.
    pub fn len(&self) -> usize {
        match self {
            RowShare::Held(w) => w.len(),
            RowShare::Seeded(s) => s.len(),
            RowShare::Spilled(s) => s.len(),
            RowShare::Columns(c) => c.of.len().checked_div(c.d).unwrap_or(0) * c.width,
        }
    }

    /// Columns `first..first + width` of every row of this `_ x d` share.
    pub fn columns(self, d: usize, first: usize, width: usize) -> Result<RowShare> {
        if d == 0 || !self.len().is_multiple_of(d) || first + width > d {
            return Err(Error::invalid(format!(
                "columns {first}..{} of a matrix of {} words and row length {d}",
                first + width,
                self.len()
            )));
        }
        Ok(RowShare::Columns(Box::new(Columns {
            of: self,
            d,
            first,
            width,
        })))
    }

    /// Whether the matrix is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Columns `at..at + w` of every row, as a `rows x w` row-major block (`rows = len / d`).
    pub fn column_block(&self, d: usize, at: usize, w: usize) -> Result<Vec<u64>> {
        let mut out = vec![0u64; (self.len() / d.max(1)) * w];
        self.column_block_into(d, at, w, &mut out)?;
        Ok(out)
    }

    /// [`RowShare::column_block`] into `out` (`rows x w` words).
    pub fn column_block_into(&self, d: usize, at: usize, w: usize, out: &mut [u64]) -> Result<()> {
        if d == 0 || at + w > d || !self.len().is_multiple_of(d) || out.len() != self.len() / d * w
        {
            return Err(Error::invalid(format!(
                "column block {at}..{} of a matrix of {} words and row length {d}",
                at + w,
                self.len()
            )));
        }
        if w == 0 {
            return Ok(());
        }
        match self {
            RowShare::Held(words) => {
                out.par_chunks_mut(w)
                    .zip(words.par_chunks(d))
                    .for_each(|(o, row)| o.copy_from_slice(&row[at..at + w]));
                Ok(())
            }
            RowShare::Seeded(s) => {
                let part = Part::Stream(s.clone());
                let mut done = 0;
                while done < w {
                    let piece = (w - done).min(MAX_PASS_COLUMNS);
                    part.columns(d, at + done, piece, out, w, done, |o, x| {
                        o.copy_from_slice(x)
                    });
                    done += piece;
                }
                Ok(())
            }
            RowShare::Spilled(s) => s.column_block_into(at, w, out),
            RowShare::Columns(c) if d == c.width && at + w <= c.width => {
                c.of.column_block_into(c.d, c.first + at, w, out)
            }
            RowShare::Columns(c) => Err(Error::invalid(format!(
                "columns {at}..{} of a slice of {} columns read with row length {d}",
                at + w,
                c.width
            ))),
        }
    }
}

/// A `rows x d` matrix of words in an unlinked temporary file, laid out by stripes of
/// [`STRIPE`] columns: stripe `t` (columns `8t..8t + width`) holds every row's words of those
/// columns, row after row, and starts after the earlier stripes (`rows * 8t` words in). Rows are
/// written in blocks as they arrive ([`Spill::write_rows`]); a block of columns is read back
/// stripe by stripe, a run of rows per read ([`Spill::column_block_into`]). `Debug` shows sizes.
pub struct Spill {
    file: std::fs::File,
    rows: usize,
    d: usize,
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Spill(rows={}, d={})", self.rows, self.d)
    }
}

impl Spill {
    /// An empty `rows x d` spill in a new unlinked file in `dir`.
    pub fn create(dir: &Path, rows: usize, d: usize) -> Result<Spill> {
        let bytes = rows
            .checked_mul(d)
            .and_then(|w| w.checked_mul(8))
            .ok_or_else(|| Error::invalid("spilled share too large"))?;
        let file = tempfile::tempfile_in(dir).map_err(|e| {
            Error::invalid(format!(
                "cannot create a spill file in {}: {e} (limits.spill_dir)",
                dir.display()
            ))
        })?;
        file.set_len(bytes as u64).map_err(|e| {
            Error::invalid(format!(
                "cannot size a spill file of {bytes} bytes in {}: {e}",
                dir.display()
            ))
        })?;
        Ok(Spill { file, rows, d })
    }

    /// Words in the matrix.
    pub fn len(&self) -> usize {
        self.rows * self.d
    }

    /// Whether the matrix is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Columns of stripe `t` and the word offset where it starts.
    fn stripe(&self, t: usize) -> (usize, usize) {
        let first = t * STRIPE;
        ((self.d - first).min(STRIPE), self.rows * first)
    }

    /// Writes rows `first..first + words.len() / d` (whole rows, row-major).
    pub fn write_rows(&self, first: usize, words: &[u64]) -> Result<()> {
        let d = self.d;
        let n = words.len() / d;
        if !words.len().is_multiple_of(d) || first + n > self.rows {
            return Err(Error::invalid(format!(
                "spill: rows {first}..{} of {}",
                first + n,
                self.rows
            )));
        }
        let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(n * STRIPE));
        for t in 0..d.div_ceil(STRIPE) {
            let (width, start) = self.stripe(t);
            buf.clear();
            for row in words.chunks_exact(d) {
                buf.extend_from_slice(&row[t * STRIPE..t * STRIPE + width]);
            }
            write_words_at(&self.file, &buf, start + first * width)?;
        }
        Ok(())
    }

    /// Columns `at..at + w` of every row into `out`, a `rows x w` row-major block.
    pub fn column_block_into(&self, at: usize, w: usize, out: &mut [u64]) -> Result<()> {
        if at + w > self.d || out.len() != self.rows * w {
            return Err(Error::invalid("spill: columns outside the matrix"));
        }
        if w == 0 {
            return Ok(());
        }
        out.par_chunks_mut(READ_ROWS * w)
            .enumerate()
            .try_for_each(|(task, block)| -> Result<()> {
                let r0 = task * READ_ROWS;
                let n = block.len() / w;
                let mut buf = vec![0u64; n * STRIPE];
                for t in at / STRIPE..(at + w).div_ceil(STRIPE) {
                    let (width, start) = self.stripe(t);
                    let b = &mut buf[..n * width];
                    read_words_at(&self.file, b, start + r0 * width)?;
                    // The stripe's columns that fall in `at..at + w`.
                    let lo = (t * STRIPE).max(at);
                    let hi = (t * STRIPE + width).min(at + w);
                    for (i, row) in block.chunks_exact_mut(w).enumerate() {
                        let src = &b[i * width + lo - t * STRIPE..i * width + hi - t * STRIPE];
                        row[lo - at..hi - at].copy_from_slice(src);
                    }
                }
                Ok(())
            })
    }
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::invalid(format!("temporary file: {what} failed: {e}"))
}

/// Writes `words` (little-endian) at word offset `at`.
pub(crate) fn write_words_at(file: &std::fs::File, words: &[u64], at: usize) -> Result<()> {
    let bytes: std::borrow::Cow<[u8]> = if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(bytemuck::cast_slice(words))
    } else {
        std::borrow::Cow::Owned(words.iter().flat_map(|v| v.to_le_bytes()).collect())
    };
    positioned_write(file, &bytes, (at * 8) as u64).map_err(|e| io_error("write", e))
}

/// Reads `out.len()` words (little-endian) from word offset `at`.
pub(crate) fn read_words_at(file: &std::fs::File, out: &mut [u64], at: usize) -> Result<()> {
    positioned_read(file, bytemuck::cast_slice_mut(out), (at * 8) as u64)
        .map_err(|e| io_error("read", e))?;
    if cfg!(target_endian = "big") {
        out.iter_mut().for_each(|v| *v = u64::from_le(*v));
    }
    Ok(())
}

#[cfg(unix)]
fn positioned_write(file: &std::fs::File, bytes: &[u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, at)
}

#[cfg(unix)]
fn positioned_read(file: &std::fs::File, bytes: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, bytes, at)
}

#[cfg(windows)]
fn positioned_write(file: &std::fs::File, mut bytes: &[u8], mut at: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, bytes, at)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
        at += n as u64;
    }
    Ok(())
}

#[cfg(windows)]
fn positioned_read(file: &std::fs::File, mut bytes: &mut [u8], mut at: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(file, bytes, at)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        bytes = &mut bytes[n..];
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::prg::{Prg, Seed};

    /// Every way of holding a share gives the same column blocks, for widths that do and do
    /// not fill the last stripe, blocks across stripes and rows written in uneven blocks.
    #[test]
    fn held_seeded_and_spilled_shares_give_the_same_columns() {
        let seed = Seed([9; 32]);
        for (rows, d) in [(1usize, 1usize), (5, 8), (37, 21), (70_000, 19)] {
            let words = Prg::new(&seed, 0).vec(rows * d);
            let held = RowShare::Held(words.clone());
            let seeded = RowShare::Seeded(Stream::new(seed.clone(), 0, 0, rows * d));
            let spill = Spill::create(&std::env::temp_dir(), rows, d).unwrap();
            let mut first = 0;
            for (i, n) in [3usize, 1, 500, 40_000].iter().cycle().enumerate() {
                if first == rows {
                    break;
                }
                let n = (*n + i).min(rows - first);
                spill
                    .write_rows(first, &words[first * d..(first + n) * d])
                    .unwrap();
                first += n;
            }
            let spilled = RowShare::Spilled(Arc::new(spill));
            for (at, w) in [(0, d), (0, 1), (d - 1, 1), (d / 3, d - d / 3), (d / 2, 0)] {
                let want: Vec<u64> = words
                    .chunks(d)
                    .flat_map(|r| r[at..at + w].to_vec())
                    .collect();
                for share in [&held, &seeded, &spilled] {
                    assert_eq!(
                        share.column_block(d, at, w).unwrap(),
                        want,
                        "{share:?} {at} {w}"
                    );
                }
                // A slice of columns reads the same columns of each.
                let (first, width) = (d / 4, d - d / 4 - d / 5);
                if at + w <= width {
                    let want_cols: Vec<u64> = words
                        .chunks(d)
                        .flat_map(|r| r[first + at..first + at + w].to_vec())
                        .collect();
                    for share in [&held, &seeded, &spilled] {
                        let cols = share.clone().columns(d, first, width).unwrap();
                        assert_eq!(cols.len(), rows * width);
                        assert_eq!(
                            cols.column_block(width, at, w).unwrap(),
                            want_cols,
                            "slice of {share:?} {at} {w}"
                        );
                        assert!(width == d || cols.column_block(d, at, w).is_err());
                    }
                }
            }
            assert!(spilled.column_block(d, d, 1).is_err());
            assert!(held.clone().columns(d, d / 2, d - d / 2 + 1).is_err());
        }
    }

    /// Rows outside the matrix or not whole are refused; `Debug` shows no words.
    #[test]
    fn bad_writes_are_refused_and_debug_shows_sizes() {
        let spill = Spill::create(&std::env::temp_dir(), 4, 3).unwrap();
        assert!(spill.write_rows(3, &[1; 6]).is_err());
        assert!(spill.write_rows(0, &[1; 4]).is_err());
        spill.write_rows(2, &[0x5ec2e7; 6]).unwrap();
        let held = RowShare::Held(vec![0x5ec2e7; 3]);
        let shown = format!("{held:?} {:?}", RowShare::Spilled(Arc::new(spill)));
        assert!(!shown.contains(&0x5ec2e7.to_string()), "{shown}");
        assert!(Spill::create(Path::new("/nonexistent/dir"), 1, 1).is_err());
    }
}
