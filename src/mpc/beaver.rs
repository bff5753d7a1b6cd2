//! Products of shared values with Beaver triples, and the masked-once bilinear form.
//!
//! **Beaver multiplication.** Given shares of `x`, `y` and a triple `(a, b, c = a*b)`, the
//! servers open `d = x - a` and `e = y - b` (uniform, so they reveal nothing) and each computes
//! `c_s + d*b_s + e*a_s` (+ `d*e` on server 0), which sums to `x*y`. When one left factor meets
//! several right factors (`fanout`), `x - a` is opened once for all of them.
//!
//! **Bilinear form.** The workload is many inner products `<X_i, Y_j>` between rows of two
//! shared matrices. Opening each row once, `E = X - A` and `F = Y - B`, with a dealer-provided
//! `C_p = <A_i, B_j>` for every listed pair `p = (i, j)`, gives
//! `<X_i, Y_j> = <E_i, F_j + B_j> + <A_i, F_j> + C_p`,
//! whose terms are local on shares. Server `s` therefore computes one inner product of length
//! `2d` per pair, between `[E_i | A_i^s]` and `[B_j^s (+F_j on server 0) | F_j]`. Online traffic
//! is `(n + m) * d` words per server whatever the number of pairs.
//!
//! Results carry twice the fractional bits of the inputs; they are left untruncated so that
//! comparisons on them are exact (see [`crate::mpc::truncate`] for bringing them back to scale).
//!
//! **Row audit.** The openings `E = X - A` and `F = Y - B` also let the servers check, at no
//! extra communication, that every row is in range ([`RowAudit`]), with `X = E + A`:
//!
//! * *Block norms*: `sum_t X_t^2 = sum_t E_t^2 + 2 sum_t E_t A_t + sum_t A_t^2` over each block
//!   of a row. `E` is public and `A` shared, so the first two terms are local; the dealer adds
//!   shares of `QA = sum_t A_t^2` per row and block. In `Z_2^64` these norms can wrap for huge
//!   entries, hence the second check.
//! * *Random subset sums*: `sum_{t in S_j} X_t` for `j < subsets` public random subsets `S_j`
//!   of the row positions, drawn from SHA-256 of the opened `E` and `F`, which nobody can
//!   predict before the masks are applied. If a row has an entry `x` with `|x| > 2T`, then for
//!   every subset the sums with and without that position differ by `x`, so at most one of the
//!   two lies in `[-T, T]`: each subset sum is out of `[-T, T]` with probability at least 1/2,
//!   and the row escapes all of them with probability at most `2^-subsets`.
//!
//! The caller compares both against public bounds on shares (see `crate::model::upload_check`);
//! nothing is opened here beyond `E` and `F`.

use crate::error::{Error, Result};
use crate::mpc::correlated::{Material, Part, pass_columns};
use crate::mpc::digest::sha256;
use crate::mpc::pairs::Pairs;
use crate::mpc::prg::{Prg, Seed};
use crate::mpc::protocol::{Protocol, Step, check_lengths, open_sum};
use crate::mpc::ring;
use rayon::prelude::*;

/// Element-wise products `x[i] * ys[j*n + i]` for `j < fanout`.
pub struct Mul {
    me: usize,
    n: usize,
    fanout: usize,
    x: Vec<u64>,
    ys: Vec<u64>,
    mat: [Vec<u64>; 3],
}

impl Mul {
    /// Prepares the product of `x` (n values) with `fanout` right vectors stored back to back in
    /// `ys`, using material from `Request::Beaver { n, fanout }`.
    pub fn new(me: usize, x: Vec<u64>, ys: Vec<u64>, fanout: usize, mat: Material) -> Result<Mul> {
        let n = x.len();
        let mat: [Vec<u64>; 3] = mat.into_parts()?;
        if ys.len() != n * fanout
            || mat[0].len() != n
            || mat[1].len() != n * fanout
            || mat[2].len() != n * fanout
        {
            return Err(Error::invalid(
                "Beaver product: sizes of inputs and material differ",
            ));
        }
        Ok(Mul {
            me,
            n,
            fanout,
            x,
            ys,
            mat,
        })
    }
}

impl Protocol for Mul {
    type Output = Vec<u64>;

    fn start(mut self) -> Result<Step<Self>> {
        let mut msg = Vec::with_capacity(self.n * (1 + self.fanout));
        msg.extend(
            self.x
                .iter()
                .zip(&self.mat[0])
                .map(|(x, a)| x.wrapping_sub(*a)),
        );
        msg.extend(
            self.ys
                .iter()
                .zip(&self.mat[1])
                .map(|(y, b)| y.wrapping_sub(*b)),
        );
        // The inputs are not needed once masked: free them before the exchange (memory).
        self.x = Vec::new();
        self.ys = Vec::new();
        Ok(Step::Send(self, msg))
    }

    fn receive(self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        check_lengths(&incoming, self.n * (1 + self.fanout), "Beaver product")?;
        let opened = open_sum(incoming);
        let (d, e) = opened.split_at(self.n);
        let [a, b, mut z] = self.mat;
        for j in 0..self.fanout {
            for i in 0..self.n {
                let p = j * self.n + i;
                let mut v = z[p]
                    .wrapping_add(d[i].wrapping_mul(b[p]))
                    .wrapping_add(e[p].wrapping_mul(a[i]));
                if self.me == 0 {
                    v = v.wrapping_add(d[i].wrapping_mul(e[p]));
                }
                z[p] = v;
            }
        }
        Ok(Step::Done(z))
    }
}

/// What the row audit computes alongside the bilinear form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowAudit {
    /// Lengths of consecutive blocks of a row (summing to the row length `d`).
    pub blocks: Vec<usize>,
    /// Random subset sums per row.
    pub subsets: usize,
}

/// This server's shares of the audit values, for the rows of `X` then those of `Y`.
/// `Debug` shows only sizes.
pub struct AuditShares {
    /// Squared norms, `(n + m) x blocks`.
    pub norms: Vec<u64>,
    /// Subset sums, `(n + m) x subsets`.
    pub sums: Vec<u64>,
}

impl std::fmt::Debug for AuditShares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AuditShares(norms: {}, sums: {}, <redacted>)",
            self.norms.len(),
            self.sums.len()
        )
    }
}

/// The bilinear form's output: the pair scores, and the audit when one was asked for. `Debug`
/// shows only sizes.
pub struct BilinearOutput {
    /// Shares of `<X_i, Y_j>` per pair, in pair order.
    pub scores: Vec<u64>,
    /// Shares of the row audit values.
    pub audit: Option<AuditShares>,
    /// With [`Bilinear::split`]: shares of every pair's product over each audit block,
    /// block-major (`blocks x pairs`); they sum to `scores`.
    pub blocks: Option<Vec<u64>>,
}

impl std::fmt::Debug for BilinearOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BilinearOutput(scores: {}, audit: {:?}, blocks: {:?}, <redacted>)",
            self.scores.len(),
            self.audit,
            self.blocks.as_ref().map(Vec::len)
        )
    }
}

/// Shares of `<X_i, Y_j>` for every pair, opening each row of `X` and `Y` once.
pub struct Bilinear {
    me: usize,
    d: usize,
    pairs: Pairs,
    x: Vec<u64>,
    y: Vec<u64>,
    /// This server's masks `A` (`n x d`) and `B` (`m x d`): streams, drawn a pass of columns
    /// at a time where used (or words, from a source that drew them).
    masks: [Part; 2],
    /// `C`, and with the audit `QA`, `QB`.
    mat: Vec<Vec<u64>>,
    audit: Option<RowAudit>,
    split: bool,
    /// Words of the masked `[X | Y]` per exchange.
    chunk: usize,
    /// This server's masked `[X | Y]`, turned into the opened `[E | F]` one exchange at a time.
    opened: Vec<u64>,
    /// Words of `opened` opened so far.
    done: usize,
}

/// Words of the masked rows opened per exchange of the bilinear form: larger forms open in
/// several rounds, so that the payloads in memory at once are at most this long (128 MiB per
/// server) instead of the whole masked input (two row-sized buffers fewer at the exchange). A
/// protocol constant: every server splits the same way. DBP15K fr-en's jobs (up to 40,000
/// rows of 648 words) open in one or two exchanges; 2^22 words measured no lower peak at
/// 50,000 entities per side (the kernel's working set is then the peak).
pub const BILINEAR_CHUNK_WORDS: usize = 1 << 24;

impl Bilinear {
    /// Prepares the form over row-major `x` (rows x d) and `y` (cols x d), with material from
    /// `Request::Bilinear { d, pairs, blocks: vec![] }`.
    pub fn new(
        me: usize,
        x: Vec<u64>,
        y: Vec<u64>,
        d: usize,
        pairs: Pairs,
        mat: Material,
    ) -> Result<Bilinear> {
        Self::build(me, x, y, d, pairs, mat, None, false)
    }

    /// Like [`Bilinear::new`], also computing the row audit; the material comes from
    /// `Request::Bilinear { d, pairs, blocks: audit.blocks }`.
    pub fn with_audit(
        me: usize,
        x: Vec<u64>,
        y: Vec<u64>,
        d: usize,
        pairs: Pairs,
        audit: RowAudit,
        mat: Material,
    ) -> Result<Bilinear> {
        Self::with_blocks(me, x, y, d, pairs, audit, mat, false)
    }

    /// Like [`Bilinear::with_audit`], also returning every pair's product per audit block
    /// ([`BilinearOutput::blocks`]); the material comes from
    /// `Request::Bilinear { d, pairs, blocks: audit.blocks, split: true }`. The openings are
    /// the same: only local work and the dealer's per-block `C` grow.
    pub fn split(
        me: usize,
        x: Vec<u64>,
        y: Vec<u64>,
        d: usize,
        pairs: Pairs,
        audit: RowAudit,
        mat: Material,
    ) -> Result<Bilinear> {
        Self::with_blocks(me, x, y, d, pairs, audit, mat, true)
    }

    /// [`Bilinear::with_audit`] (`split` false) or [`Bilinear::split`] (true).
    #[allow(clippy::too_many_arguments)]
    fn with_blocks(
        me: usize,
        x: Vec<u64>,
        y: Vec<u64>,
        d: usize,
        pairs: Pairs,
        audit: RowAudit,
        mat: Material,
        split: bool,
    ) -> Result<Bilinear> {
        if audit.blocks.is_empty() || audit.blocks.iter().sum::<usize>() != d {
            return Err(Error::invalid(
                "row audit: the blocks must cover the row exactly",
            ));
        }
        Self::build(me, x, y, d, pairs, mat, Some(audit), split)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        me: usize,
        x: Vec<u64>,
        y: Vec<u64>,
        d: usize,
        pairs: Pairs,
        mat: Material,
        audit: Option<RowAudit>,
        split: bool,
    ) -> Result<Bilinear> {
        let mut parts: Vec<Part> = match &audit {
            None => mat.into_mixed::<3>()?.into(),
            Some(_) => mat.into_mixed::<5>()?.into(),
        };
        let mat: Vec<Vec<u64>> = parts.drain(2..).map(Part::into_words).collect();
        let masks: [Part; 2] = parts.try_into().expect("two parts left");
        let (n, m) = (pairs.rows(), pairs.cols());
        if x.len() != n * d || y.len() != m * d {
            return Err(Error::invalid(format!(
                "bilinear form: inputs have {} and {} words, expected {n} x {d} and {m} x {d}",
                x.len(),
                y.len()
            )));
        }
        let nb = audit.as_ref().map_or(0, |a| a.blocks.len());
        let per_pair = if split { nb } else { 1 };
        if masks[0].len() != n * d
            || masks[1].len() != m * d
            || mat[0].len() != pairs.len() * per_pair
            || (nb > 0 && (mat[1].len() != n * nb || mat[2].len() != m * nb))
        {
            return Err(Error::invalid(
                "bilinear form: material does not match the pairs",
            ));
        }
        Ok(Bilinear {
            me,
            d,
            pairs,
            x,
            y,
            masks,
            mat,
            audit,
            split,
            chunk: BILINEAR_CHUNK_WORDS,
            opened: Vec::new(),
            done: 0,
        })
    }

    /// Opens at most `words` words per exchange instead of [`BILINEAR_CHUNK_WORDS`] (every
    /// server of the job must use the same value; tests use it to exercise several rounds).
    pub fn with_chunk(mut self, words: usize) -> Self {
        self.chunk = words.max(1);
        self
    }

    /// The next exchange's payload: a copy of this server's masked words not yet opened.
    fn next_payload(&self) -> Vec<u64> {
        let end = (self.done + self.chunk).min(self.opened.len());
        self.opened[self.done..end].to_vec()
    }
}

impl Protocol for Bilinear {
    type Output = BilinearOutput;

    fn start(mut self) -> Result<Step<Self>> {
        // The masked `[X | Y]` is built in the input's own buffer (masked in place, then
        // extended by the masked `Y`), the inputs freed; it is opened `chunk` words per
        // exchange, each opened part written over the masked one (memory: the masks, this
        // buffer and one chunk of each other server's, not three row-sized buffers).
        let mut masked = std::mem::take(&mut self.x);
        self.masks[0].sub_from(0, &mut masked);
        let y = std::mem::take(&mut self.y);
        let at = masked.len();
        masked.reserve_exact(y.len());
        masked.extend_from_slice(&y);
        drop(y);
        self.masks[1].sub_from(0, &mut masked[at..]);
        if masked.len() <= self.chunk {
            // One exchange: the masked buffer itself is the message (no copy).
            return Ok(Step::Send(self, masked));
        }
        self.opened = masked;
        let msg = self.next_payload();
        Ok(Step::Send(self, msg))
    }

    fn receive(mut self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        let d = self.d;
        let n = self.pairs.rows();
        let m = self.pairs.cols();
        let opened = if self.opened.is_empty() {
            // One exchange (`start` sent the masked buffer itself).
            check_lengths(&incoming, (n + m) * d, "bilinear form")?;
            open_sum(incoming)
        } else {
            let end = (self.done + self.chunk).min(self.opened.len());
            check_lengths(&incoming, end - self.done, "bilinear form")?;
            self.opened[self.done..end].copy_from_slice(&open_sum(incoming));
            self.done = end;
            if self.done < self.opened.len() {
                let msg = self.next_payload();
                return Ok(Step::Send(self, msg));
            }
            std::mem::take(&mut self.opened)
        };
        let (e, f) = opened.split_at(n * d);
        let mut mat = self.mat.into_iter();
        let mut z = mat.next().expect("checked");
        let [a, b] = &self.masks;
        let audit = match &self.audit {
            None => None,
            Some(audit) => {
                let (qa, qb) = (mat.next().expect("checked"), mat.next().expect("checked"));
                Some(row_audit(
                    self.me,
                    audit,
                    d,
                    &opened,
                    [e, f],
                    [a, b],
                    [&qa, &qb],
                ))
            }
        };
        let me = self.me;
        let cols = pass_columns(n + m);
        // One pass over the columns `at..at + len` (at most `cols`): rows `[E | A_s]` and
        // `[B_s (+F on server 0) | F]`, the masks drawn for these columns only.
        let slice_kernel = |at: usize, len: usize, z: &mut [u64]| {
            let w = 2 * len;
            let copy = |o: &mut [u64], x: &[u64]| o.copy_from_slice(x);
            let mut p_rows = vec![0u64; n * w];
            a.columns(d, at, len, &mut p_rows, w, len, copy);
            p_rows.par_chunks_mut(w).enumerate().for_each(|(i, row)| {
                row[..len].copy_from_slice(&e[i * d + at..i * d + at + len]);
            });
            let mut q_rows = vec![0u64; m * w];
            b.columns(d, at, len, &mut q_rows, w, 0, copy);
            q_rows.par_chunks_mut(w).enumerate().for_each(|(j, row)| {
                let fj = &f[j * d + at..j * d + at + len];
                if me == 0 {
                    ring::add_assign(&mut row[..len], fj);
                }
                row[len..].copy_from_slice(fj);
            });
            self.pairs.accumulate_dots(&p_rows, &q_rows, w, z);
        };
        // One inner product of length 2 * len per pair over the columns `at..at + len`, in
        // passes of at most `cols` columns so that the interleaved copies stay small.
        let kernel = |at: usize, len: usize, z: &mut [u64]| {
            let mut done = 0;
            while done < len {
                let part = (len - done).min(cols);
                slice_kernel(at + done, part, z);
                done += part;
            }
        };
        let blocks = match (&self.audit, self.split) {
            (Some(audit), true) => {
                let np = self.pairs.len();
                let mut at = 0;
                for (blk, &len) in audit.blocks.iter().enumerate() {
                    kernel(at, len, &mut z[blk * np..(blk + 1) * np]);
                    at += len;
                }
                let mut total = z[..np].to_vec();
                for blk in 1..audit.blocks.len() {
                    ring::add_assign(&mut total, &z[blk * np..(blk + 1) * np]);
                }
                let per_block = std::mem::replace(&mut z, total);
                Some(per_block)
            }
            _ => {
                kernel(0, d, &mut z);
                None
            }
        };
        Ok(Step::Done(BilinearOutput {
            scores: z,
            audit,
            blocks,
        }))
    }
}

/// The public random subsets of row positions `0..d` for the audit: `count` index lists, drawn
/// from SHA-256 of everything opened (so fixed only after the masks were applied).
pub fn audit_subsets(opened: &[u64], d: usize, count: usize) -> Vec<Vec<u32>> {
    let seed = sha256("ppea row audit subsets v1", &[bytemuck::cast_slice(opened)]);
    let mut prg = Prg::new(&Seed(seed), 0);
    (0..count)
        .map(|_| {
            let bits = prg.vec(d.div_ceil(64));
            (0..d as u32)
                .filter(|&t| bits[t as usize / 64] >> (t % 64) & 1 == 1)
                .collect()
        })
        .collect()
}

/// This server's shares of the audit values (module docs): per row of `X` then `Y`, block
/// norms `[me = 0] sum E^2 + 2 sum E A_s + QA_s`, and subset sums `[me = 0] sum E + sum A_s`.
fn row_audit(
    me: usize,
    audit: &RowAudit,
    d: usize,
    opened: &[u64],
    ef: [&[u64]; 2],
    ab: [&Part; 2],
    q: [&[u64]; 2],
) -> AuditShares {
    let subsets = audit_subsets(opened, d, audit.subsets);
    let nb = audit.blocks.len();
    let mut norms = Vec::new();
    let mut sums = Vec::new();
    for side in 0..2 {
        let rows = ef[side].len() / d;
        let per_row: Vec<(Vec<u64>, Vec<u64>)> = (0..rows)
            .into_par_iter()
            .map(|r| {
                let e = &ef[side][r * d..(r + 1) * d];
                let mut a = vec![0u64; d];
                ab[side].fill(r * d, &mut a);
                let a = &a[..];
                let mut nrm = q[side][r * nb..(r + 1) * nb].to_vec();
                let mut at = 0;
                for (blk, &len) in audit.blocks.iter().enumerate() {
                    let (eb, ab) = (&e[at..at + len], &a[at..at + len]);
                    let mut v = ring::dot(eb, ab).wrapping_mul(2);
                    if me == 0 {
                        v = v.wrapping_add(ring::dot(eb, eb));
                    }
                    nrm[blk] = nrm[blk].wrapping_add(v);
                    at += len;
                }
                let x: Vec<u64> = if me == 0 {
                    e.iter().zip(a).map(|(e, a)| e.wrapping_add(*a)).collect()
                } else {
                    a.to_vec()
                };
                let s = subsets
                    .iter()
                    .map(|set| set.iter().fold(0u64, |s, &t| s.wrapping_add(x[t as usize])))
                    .collect();
                (nrm, s)
            })
            .collect();
        for (nrm, s) in per_row {
            norms.extend(nrm);
            sums.extend(s);
        }
    }
    AuditShares { norms, sums }
}
