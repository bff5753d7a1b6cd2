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
//!   of the row positions, drawn from SHA-256 of the first opened group of columns of `E`
//!   and `F` (the rows are opened a group of columns at a time, [`Bilinear`]), which nobody
//!   can predict before the masks are applied. If a row has an entry `x` with `|x| > 2T`, then for
//!   every subset the sums with and without that position differ by `x`, so at most one of the
//!   two lies in `[-T, T]`: each subset sum is out of `[-T, T]` with probability at least 1/2,
//!   and the row escapes all of them with probability at most `2^-subsets`.
//!
//! The caller compares both against public bounds on shares (see `crate::model::upload_check`);
//! nothing is opened here beyond `E` and `F`.

use crate::error::{Error, Result};
use crate::mpc::correlated::{MAX_PASS_COLUMNS, MIN_PASS_COLUMNS, Material, Part, pass_columns};
use crate::mpc::digest::sha256;
use crate::mpc::he::modulus::Modulus;
use crate::mpc::modular::{
    ConversionCheck, DotsModT, ModMaterial, ZeroSharing, check_residues, rerandomise,
    subsets_within, to_residues,
};
use crate::mpc::pairs::Pairs;
use crate::mpc::prg::{Prg, Seed};
use crate::mpc::protocol::{Protocol, Step, check_lengths, open_sum};
use crate::mpc::ring;
use crate::mpc::row_share::RowShare;
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
    /// The subsets (public: drawn from the first opened group, [`audit_subsets`]).
    pub subsets: Vec<Vec<u32>>,
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
    /// With [`Bilinear::with_scores_mod`]: the prime the `scores` are shares modulo (the
    /// caller lifts them to `Z_2^64`, [`crate::mpc::engine::Engine::lift`]); `None` for shares
    /// modulo `2^64`.
    pub modulus: Option<u64>,
    /// With [`Bilinear::with_scores_mod`]: shares modulo the prime of the conversion check's
    /// differences, per row (of `X`, then `Y`) and audit subset, which the caller opens and
    /// checks ([`crate::mpc::modular::ConversionCheck`], `check_conversions`).
    pub conversion: Option<Vec<u64>>,
}

impl std::fmt::Debug for BilinearOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BilinearOutput(scores: {}, audit: {:?}, blocks: {:?}, modulus: {:?}, conversion: {:?}, \
             <redacted>)",
            self.scores.len(),
            self.audit,
            self.blocks.as_ref().map(Vec::len),
            self.modulus,
            self.conversion.as_ref().map(Vec::len)
        )
    }
}

/// Shares of `<X_i, Y_j>` for every pair, opening each row of `X` and `Y` once.
///
/// The rows are opened a **group of columns** at a time: group `g` is columns
/// `g * width..(g + 1) * width` of every row of `X` then of `Y` (`width` = the exchange's words,
/// [`Bilinear::with_chunk`], over the rows, at least 1), and each group's inner products, block
/// norms and subset sums are accumulated as soon as it is open. A server therefore never holds
/// more than one group of the openings or of the masks, whatever the number of rows, and, when
/// its inputs are drawn from a seed or read from disk ([`RowShare`]), one group of the inputs;
/// held inputs stay whole until the form ends (then wiped).
pub struct Bilinear {
    me: usize,
    d: usize,
    pairs: Pairs,
    x: RowShare,
    y: RowShare,
    /// This server's masks `A` (`n x d`) and `B` (`m x d`): streams, drawn a pass of columns
    /// at a time where used (or words, from a source that drew them).
    masks: [Part; 2],
    /// The scores so far: `C` plus every opened group's products (per block with `split`).
    z: Vec<u64>,
    /// With the audit: per row of `X` then `Y`, the block norms then the subset sums so far
    /// (`QA`, `QB` and every opened group's terms), and the subsets, drawn once the first group
    /// is open.
    acc: Vec<u64>,
    subsets: Vec<Vec<u32>>,
    audit: Option<RowAudit>,
    split: bool,
    /// Words of the masked rows per exchange.
    chunk: usize,
    /// Fewest columns per group.
    min_group: usize,
    /// Columns per group.
    width: usize,
    /// First column of the group being opened.
    at: usize,
    /// This server's masked group, opened `chunk` words per exchange (each opened part written
    /// over the masked one), when the group is longer than one exchange.
    opened: Vec<u64>,
    /// Words of `opened` opened so far.
    done: usize,
    /// With [`Bilinear::with_scores_mod`]: the scores modulo a prime.
    modular: Option<Modular>,
}

/// The scores modulo a prime ([`crate::mpc::modular`]): this server's masks modulo the prime,
/// its share of `C`, the zero sharing and the exact sums of the opened groups so far. Each
/// group is opened twice: modulo `2^64` for the row audit, modulo the prime for the scores.
struct Modular {
    m: Modulus,
    masks: [Part; 2],
    zero: [Part; 2],
    c: Vec<u64>,
    dots: DotsModT,
    check: ConversionCheck,
}

impl Drop for Bilinear {
    /// A held input is this server's share of a party's rows: wiped, not just freed.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.x);
        zeroize::Zeroize::zeroize(&mut self.y);
    }
}

/// Words of the masked rows opened per exchange of the bilinear form: the rows are opened a
/// group of columns at a time ([`group_columns`]), as many columns as fit in this many words
/// but at least [`MIN_PASS_COLUMNS`], each group in exchanges of at most this many words. Up
/// to 2^24 / 64 rows (131,072 per side) the payloads, the openings and the inputs in memory at
/// once are therefore at most this long (128 MiB per server); beyond, a group of 64 columns
/// of every row, which keeps the pair kernel's row fetches long enough to stream
/// ([`MIN_PASS_COLUMNS`]). A protocol constant: every server splits the same way. DBP15K
/// fr-en's jobs (up to 40,000 rows of 648 words) open in one or two exchanges; 10^5 rows per
/// side in 8 groups of 83 columns; 10^6 per side in 11 groups of 64 columns, 8 exchanges each.
pub const BILINEAR_CHUNK_WORDS: usize = 1 << 24;

/// Columns per group of a bilinear form over `rows` rows (both sides) of `d` words opened
/// `chunk` words per exchange: as many as fit in one exchange, at least `min_columns` and at
/// least one, at most `d`.
pub fn group_columns(rows: usize, d: usize, chunk: usize, min_columns: usize) -> usize {
    (chunk / rows.max(1)).max(min_columns).clamp(1, d.max(1))
}

impl Bilinear {
    /// Prepares the form over row-major `x` (rows x d) and `y` (cols x d), with material from
    /// `Request::Bilinear { d, pairs, blocks: vec![] }`.
    pub fn new(
        me: usize,
        x: RowShare,
        y: RowShare,
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
        x: RowShare,
        y: RowShare,
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
        x: RowShare,
        y: RowShare,
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
        x: RowShare,
        y: RowShare,
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
        x: RowShare,
        y: RowShare,
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
        let mut mat = parts
            .drain(2..)
            .map(Part::into_words)
            .collect::<Vec<_>>()
            .into_iter();
        let masks: [Part; 2] = parts.try_into().expect("two parts left");
        let (n, m) = (pairs.rows(), pairs.cols());
        if d == 0 || x.len() != n * d || y.len() != m * d {
            return Err(Error::invalid(format!(
                "bilinear form: inputs have {} and {} words, expected {n} x {d} and {m} x {d}",
                x.len(),
                y.len()
            )));
        }
        let nb = audit.as_ref().map_or(0, |a| a.blocks.len());
        let per_pair = if split { nb } else { 1 };
        let z = mat.next().expect("checked");
        let q: Vec<Vec<u64>> = mat.collect();
        if masks[0].len() != n * d
            || masks[1].len() != m * d
            || z.len() != pairs.len() * per_pair
            || (nb > 0 && (q[0].len() != n * nb || q[1].len() != m * nb))
        {
            return Err(Error::invalid(
                "bilinear form: material does not match the pairs",
            ));
        }
        // The audit's accumulators: per row, its block norms (starting from `QA`, `QB`) then
        // its subset sums.
        let mut acc = Vec::new();
        if let Some(a) = &audit {
            let per_row = nb + a.subsets;
            acc = vec![0u64; (n + m) * per_row];
            for (row, q) in acc
                .chunks_mut(per_row)
                .zip(q[0].chunks(nb).chain(q[1].chunks(nb)))
            {
                row[..nb].copy_from_slice(q);
            }
        }
        let mut form = Bilinear {
            me,
            d,
            pairs,
            x,
            y,
            masks,
            z,
            acc,
            subsets: Vec::new(),
            audit,
            split,
            chunk: BILINEAR_CHUNK_WORDS,
            min_group: MIN_PASS_COLUMNS,
            width: 0,
            at: 0,
            opened: Vec::new(),
            done: 0,
            modular: None,
        };
        form.width = form.group_width();
        Ok(form)
    }

    /// Computes the scores over `pairs` modulo the prime of `mat` ([`crate::mpc::modular`])
    /// instead of modulo `2^64`: the form must have been built with the audit and the material
    /// of `Request::Bilinear` over **no** pairs (the audit's masks and norms alone), for the
    /// same rows as `pairs`. Each group of columns is then opened modulo `2^64` (the audit) and
    /// modulo the prime (the scores), and [`BilinearOutput::modulus`] says what the scores are
    /// shares modulo.
    pub fn with_scores_mod(mut self, pairs: Pairs, mat: ModMaterial) -> Result<Self> {
        let (n, m, d) = (self.pairs.rows(), self.pairs.cols(), self.d);
        let ZeroSharing { parts: [zx, zy] } = mat.zero;
        if !self.pairs.is_empty()
            || self.audit.is_none()
            || self.split
            || pairs.rows() != n
            || pairs.cols() != m
            || d > crate::mpc::modular::MAX_D
            || mat.masks[0].len() != n * d
            || mat.masks[1].len() != m * d
            || zx.len() != n * d
            || zy.len() != m * d
            || mat.c.len() != pairs.len()
        {
            return Err(Error::invalid(
                "bilinear form modulo a prime: material does not match the pairs",
            ));
        }
        if self.audit.as_ref().is_none_or(|a| a.subsets == 0) {
            return Err(Error::invalid(
                "bilinear form modulo a prime: the conversion check needs the audit's subsets",
            ));
        }
        if mat.t.is_multiple_of(2) || mat.t >= 1 << 47 {
            return Err(Error::invalid(
                "bilinear form modulo a prime: the modulus must be odd and below 2^47",
            ));
        }
        check_residues(&mat.c, mat.t, "bilinear form modulo a prime")?;
        self.modular = Some(Modular {
            m: Modulus::new(mat.t),
            masks: mat.masks,
            zero: [zx, zy],
            check: ConversionCheck::new(n + m, self.audit.as_ref().map_or(0, |a| a.subsets)),
            c: mat.c,
            dots: DotsModT::new(pairs.len()),
        });
        self.pairs = pairs;
        self.width = self.group_width();
        Ok(self)
    }

    /// Opens at most `words` words per exchange instead of [`BILINEAR_CHUNK_WORDS`] (every
    /// server of the job must use the same value; tests use it to exercise several rounds).
    pub fn with_chunk(mut self, words: usize) -> Self {
        self.chunk = words.max(1);
        self.width = self.group_width();
        self
    }

    /// Groups at least `columns` wide (default [`MIN_PASS_COLUMNS`]) instead, however many
    /// exchanges they take (every server of the job must use the same value; tests use it to
    /// exercise narrow groups).
    pub fn with_min_group(mut self, columns: usize) -> Self {
        self.min_group = columns;
        self.width = self.group_width();
        self
    }

    /// Columns per group ([`group_columns`]).
    fn group_width(&self) -> usize {
        group_columns(self.opened_rows(), self.d, self.chunk, self.min_group)
    }

    /// Rows opened per column: every row of `X` and `Y`, twice with the scores modulo a prime.
    fn opened_rows(&self) -> usize {
        let rows = self.pairs.rows() + self.pairs.cols();
        if self.modular.is_some() {
            2 * rows
        } else {
            rows
        }
    }

    /// Columns of the group starting at `self.at`.
    fn group_len(&self) -> usize {
        self.width.min(self.d - self.at)
    }

    /// This server's masked group at `self.at`: columns of `X - A`, then of `Y - B`, each
    /// `rows x len` row-major; with the scores modulo a prime, then the same modulo the prime
    /// (the shares re-randomised by the zero sharing and taken to residues first).
    fn masked_group(&self) -> Result<Vec<u64>> {
        let len = self.group_len();
        let rows = self.pairs.rows() + self.pairs.cols();
        let mut masked = vec![0u64; self.opened_rows() * len];
        let (plain, residues) = masked.split_at_mut(rows * len);
        self.inputs_into(plain)?;
        for (mask, block) in self.masks.iter().zip(self.sides(plain)) {
            self.each_piece(mask, block, ring::sub_assign);
        }
        if let Some(md) = &self.modular {
            let (me, m) = (self.me, md.m);
            self.inputs_into(residues)?;
            for ((zero, mask), block) in md.zero.iter().zip(&md.masks).zip(self.sides(residues)) {
                self.each_piece(zero, block, |o, r| to_residues(me, o, r, &m));
                self.each_piece(mask, block, |o, a| {
                    for (o, a) in o.iter_mut().zip(a) {
                        *o = m.sub(*o, *a);
                    }
                });
            }
        }
        Ok(masked)
    }

    /// This server's shares of the group's columns of `X`, then of `Y`, into `out`.
    fn inputs_into(&self, out: &mut [u64]) -> Result<()> {
        let (d, at, len) = (self.d, self.at, self.group_len());
        let [x, y] = self.sides(out);
        self.x.column_block_into(d, at, len, x)?;
        self.y.column_block_into(d, at, len, y)
    }

    /// A group's block of `X` rows and of `Y` rows.
    fn sides<'a>(&self, block: &'a mut [u64]) -> [&'a mut [u64]; 2] {
        let (x, y) = block.split_at_mut(self.pairs.rows() * self.group_len());
        [x, y]
    }

    /// `op(block columns, component columns)` over the group's columns of a `rows x d`
    /// component, a pass of at most [`MAX_PASS_COLUMNS`] at a time.
    fn each_piece(&self, part: &Part, block: &mut [u64], op: impl Fn(&mut [u64], &[u64]) + Sync) {
        let (d, at, len) = (self.d, self.at, self.group_len());
        let mut done = 0;
        while done < len {
            let piece = (len - done).min(MAX_PASS_COLUMNS);
            part.columns(d, at + done, piece, block, len, done, &op);
            done += piece;
        }
    }

    /// Starts the group at `self.at`: its first payload.
    fn begin_group(mut self) -> Result<Step<Self>> {
        let masked = self.masked_group()?;
        self.done = 0;
        if masked.len() <= self.chunk {
            // One exchange: the masked buffer itself is the message (no copy).
            self.opened = Vec::new();
            return Ok(Step::Send(self, masked));
        }
        self.opened = masked;
        let msg = self.next_payload();
        Ok(Step::Send(self, msg))
    }

    /// The next exchange's payload: a copy of this server's masked words not yet opened.
    fn next_payload(&self) -> Vec<u64> {
        let end = (self.done + self.chunk).min(self.opened.len());
        self.opened[self.done..end].to_vec()
    }

    /// Accumulates the opened group `[E | F]` at `self.at`: the products of its columns, and
    /// with the audit its block norms and subset sums (the subsets are drawn from the first
    /// group).
    fn accumulate(&mut self, mut opened: Vec<u64>) -> Result<()> {
        let (d, at, len) = (self.d, self.at, self.group_len());
        let (n, m) = (self.pairs.rows(), self.pairs.cols());
        let plain = (n + m) * len;
        let (e, f) = opened[..plain].split_at(n * len);
        if let Some(audit) = &self.audit {
            if at == 0 {
                self.subsets = audit_subsets(&opened[..plain], d, audit.subsets);
            }
            let nb = audit.blocks.len();
            let per_row = nb + audit.subsets;
            let (acc_x, acc_y) = self.acc.split_at_mut(n * per_row);
            for (side, (ef, acc)) in [(e, acc_x), (f, acc_y)].into_iter().enumerate() {
                audit_group(
                    self.me,
                    audit,
                    &self.subsets,
                    [d, at, len],
                    ef,
                    &self.masks[side],
                    acc,
                );
            }
        }
        if let Some(mut md) = self.modular.take() {
            // The conversion check's sums over this group: the re-randomised shares again.
            let mut ys = vec![0u64; plain];
            self.inputs_into(&mut ys)?;
            let me = self.me;
            for (zero, block) in md.zero.iter().zip(self.sides(&mut ys)) {
                self.each_piece(zero, block, |o, r| rerandomise(me, o, r));
            }
            md.check.add_group(me, &md.m, &ys, [at, len], &self.subsets);
            zeroize::Zeroize::zeroize(&mut ys);
            // The scores modulo the prime: the opened residues (sums of the servers' residues,
            // reduced), then the passes over them, exactly ([`DotsModT`]).
            opened.drain(..plain);
            let m = md.m;
            for v in opened.iter_mut() {
                *v = m.reduce(*v);
            }
            let cols = pass_columns(n + self.pairs.cols());
            let mut opened = Some(opened);
            let mut c = at;
            while c < at + len {
                let w = (at + len - c).min(cols);
                let residues = opened.as_deref().expect("until the last");
                let (p, q) = self.pass_rows(residues, &md.masks, c, w, |o, x| {
                    for (o, x) in o.iter_mut().zip(x) {
                        *o = m.add(*o, *x);
                    }
                });
                if c + w == at + len {
                    // The group's openings are in the pass rows now: freed before the products.
                    drop(opened.take());
                }
                md.dots.accumulate(&self.pairs, &p, &q, 2 * w);
                c += w;
            }
            self.modular = Some(md);
            return Ok(());
        }
        // The group's passes: (first column, columns, block of `z` they add to), never
        // crossing a block when the products are kept per block.
        let cols = pass_columns(n + m);
        let spans = match (&self.audit, self.split) {
            (Some(audit), true) => {
                let mut spans = Vec::new();
                let mut start = 0;
                for (blk, &bl) in audit.blocks.iter().enumerate() {
                    let (lo, hi) = (start.max(at), (start + bl).min(at + len));
                    if lo < hi {
                        spans.push((lo, hi - lo, blk));
                    }
                    start += bl;
                }
                spans
            }
            _ => vec![(at, len, 0)],
        };
        let mut passes = Vec::new();
        for (c, w, blk) in spans {
            let mut done = 0;
            while done < w {
                let part = (w - done).min(cols);
                passes.push((c + done, part, blk));
                done += part;
            }
        }
        let per_block = if self.split {
            self.pairs.len()
        } else {
            self.z.len()
        };
        let mut opened = Some(opened);
        let last = passes.len().saturating_sub(1);
        for (t, (c, w, blk)) in passes.into_iter().enumerate() {
            let (p_rows, q_rows) = self.pass_rows(
                opened.as_deref().expect("until the last"),
                &self.masks,
                c,
                w,
                ring::add_assign,
            );
            if t == last {
                // The group's openings are in the pass rows now: freed before the products.
                drop(opened.take());
            }
            let z = &mut self.z[blk * per_block..(blk + 1) * per_block];
            self.pairs.accumulate_dots(&p_rows, &q_rows, 2 * w, z);
        }
        Ok(())
    }

    /// One kernel pass over the columns `c..c + w` of the opened group `[E | F]` at
    /// `self.at`: rows `[E | A_s]` and `[B_s (+F on server 0) | F]`, the masks drawn for these
    /// columns only (`masks`: modulo `2^64` or modulo a prime, with its `add`).
    fn pass_rows(
        &self,
        opened: &[u64],
        [a, b]: &[Part; 2],
        c: usize,
        w: usize,
        add: impl Fn(&mut [u64], &[u64]) + Sync,
    ) -> (Vec<u64>, Vec<u64>) {
        let (d, len) = (self.d, self.group_len());
        let (n, m) = (self.pairs.rows(), self.pairs.cols());
        let (e, f) = opened.split_at(n * len);
        let stride = 2 * w;
        let copy = |o: &mut [u64], x: &[u64]| o.copy_from_slice(x);
        let local = c - self.at;
        let mut p_rows = vec![0u64; n * stride];
        a.columns(d, c, w, &mut p_rows, stride, w, copy);
        p_rows
            .par_chunks_mut(stride)
            .enumerate()
            .for_each(|(i, row)| {
                row[..w].copy_from_slice(&e[i * len + local..i * len + local + w]);
            });
        let mut q_rows = vec![0u64; m * stride];
        b.columns(d, c, w, &mut q_rows, stride, 0, copy);
        let me = self.me;
        q_rows
            .par_chunks_mut(stride)
            .enumerate()
            .for_each(|(j, row)| {
                let fj = &f[j * len + local..j * len + local + w];
                if me == 0 {
                    add(&mut row[..w], fj);
                }
                row[w..].copy_from_slice(fj);
            });
        (p_rows, q_rows)
    }

    /// The output, once every group is accumulated.
    fn finish(mut self) -> BilinearOutput {
        let (n, m) = (self.pairs.rows(), self.pairs.cols());
        let audit = self.audit.as_ref().map(|audit| {
            let nb = audit.blocks.len();
            let per_row = nb + audit.subsets;
            let mut norms = Vec::with_capacity((n + m) * nb);
            let mut sums = Vec::with_capacity((n + m) * audit.subsets);
            for row in self.acc.chunks(per_row) {
                norms.extend_from_slice(&row[..nb]);
                sums.extend_from_slice(&row[nb..]);
            }
            AuditShares {
                norms,
                sums,
                subsets: std::mem::take(&mut self.subsets),
            }
        });
        if let Some(md) = self.modular.take() {
            return BilinearOutput {
                scores: md.dots.finish(&md.c, &md.m),
                audit,
                blocks: None,
                modulus: Some(md.m.p),
                conversion: Some(md.check.finish(self.me, &md.m)),
            };
        }
        let mut z = std::mem::take(&mut self.z);
        let blocks = match (&self.audit, self.split) {
            (Some(audit), true) => {
                let np = self.pairs.len();
                let mut total = z[..np].to_vec();
                for blk in 1..audit.blocks.len() {
                    ring::add_assign(&mut total, &z[blk * np..(blk + 1) * np]);
                }
                Some(std::mem::replace(&mut z, total))
            }
            _ => None,
        };
        BilinearOutput {
            scores: z,
            audit,
            blocks,
            modulus: None,
            conversion: None,
        }
    }
}

impl Protocol for Bilinear {
    type Output = BilinearOutput;

    fn start(self) -> Result<Step<Self>> {
        self.begin_group()
    }

    fn receive(mut self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        let words = self.opened_rows() * self.group_len();
        let opened = if self.opened.is_empty() {
            // One exchange for the group (`begin_group` sent the masked buffer itself).
            check_lengths(&incoming, words, "bilinear form")?;
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
        self.accumulate(opened)?;
        self.at += self.group_len();
        if self.at < self.d {
            return self.begin_group();
        }
        Ok(Step::Done(self.finish()))
    }
}

/// The public random subsets of row positions `0..d` for the audit: `count` index lists (in
/// increasing order), drawn from SHA-256 of the first opened group of columns, which nobody
/// can predict before the masks are applied (every row is uploaded before anything is opened).
pub fn audit_subsets(opened: &[u64], d: usize, count: usize) -> Vec<Vec<u32>> {
    let seed = sha256("ppea row audit subsets v2", &[bytemuck::cast_slice(opened)]);
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

/// Rows per parallel task of the audit.
const AUDIT_ROWS: usize = 64;

/// Adds one opened group's terms to this server's audit shares of one side's rows (module
/// docs): for columns `at..at + len` of each row, to each block norm its part of
/// `[me = 0] sum E^2 + 2 sum E A_s`, to each subset sum its part of `[me = 0] sum E + sum A_s`.
/// `acc` holds per row the block norms then the subset sums; `e` is the group's opening,
/// `rows x len`.
fn audit_group(
    me: usize,
    audit: &RowAudit,
    subsets: &[Vec<u32>],
    [d, at, len]: [usize; 3],
    e: &[u64],
    mask: &Part,
    acc: &mut [u64],
) {
    let nb = audit.blocks.len();
    let per_row = nb + subsets.len();
    // Each block's and each subset's positions within the group.
    let mut blocks = Vec::with_capacity(nb);
    let mut start = 0;
    for &bl in &audit.blocks {
        let (lo, hi) = (start.max(at), (start + bl).min(at + len));
        blocks.push(if lo < hi { (lo - at, hi - at) } else { (0, 0) });
        start += bl;
    }
    let in_group = subsets_within(subsets, at, len);
    acc.par_chunks_mut(per_row * AUDIT_ROWS)
        .enumerate()
        .for_each(|(task, rows)| {
            let mut a = vec![0u64; len];
            let mut x = vec![0u64; len];
            for (r, out) in rows.chunks_mut(per_row).enumerate() {
                let i = task * AUDIT_ROWS + r;
                let e = &e[i * len..(i + 1) * len];
                mask.fill(i * d + at, &mut a);
                for (blk, &(lo, hi)) in blocks.iter().enumerate() {
                    if lo < hi {
                        let (eb, ab) = (&e[lo..hi], &a[lo..hi]);
                        let mut v = ring::dot(eb, ab).wrapping_mul(2);
                        if me == 0 {
                            v = v.wrapping_add(ring::dot(eb, eb));
                        }
                        out[blk] = out[blk].wrapping_add(v);
                    }
                }
                if me == 0 {
                    for ((x, e), a) in x.iter_mut().zip(e).zip(&a) {
                        *x = e.wrapping_add(*a);
                    }
                } else {
                    x.copy_from_slice(&a);
                }
                for (s, set) in in_group.iter().enumerate() {
                    let sum = set
                        .iter()
                        .fold(0u64, |s, &t| s.wrapping_add(x[t as usize - at]));
                    out[nb + s] = out[nb + s].wrapping_add(sum);
                }
            }
        });
}
