//! Shares of `<X_i, Y_j>` for a list of pairs, where every server holds additive shares of `X`
//! (`n x d`) and `Y` (`m x d`): each server encrypts its share of `Y` once, every other server
//! multiplies those ciphertexts by its plaintext share of `X`, and returns the results masked.
//!
//! **Packing** (coefficient encoding, as in Huang et al.'s Cheetah, USENIX Security 2022).
//! Rows of `Y` are cut into chunks of `w` rows and rows of `X` into groups of `g` rows; a
//! ciphertext holds `D` dimensions of a chunk, with `g D w = N` (`g`, `D`, `w` powers of two).
//! Ciphertext `(c, κ)` holds `Y[c w + j, κ D + k]` at coefficient `k w + j`; group `h`'s
//! plaintext for it holds `X[h g + i, κ D + k]` at coefficient `(i D + D - 1 - k) w`. In their
//! product, coefficient `(i D + D - 1) w + j` collects exactly the terms with the same `k`
//! (other pairs of `k` land on other multiples of `w` within row `i`'s `D w` coefficients, or
//! wrap below `(D - 1) w`, where no result sits), so summing over `κ` gives
//! `<X_(hg+i), Y_(cw+j)>` there: one returned ciphertext per (group, chunk) *block* holds
//! `g w = N / D` inner products. `D = 1` fills the results; a larger `D` fills the
//! ciphertexts sent when a side has far fewer rows than `N`. [`Layout::new`] picks the
//! packing with the fewest words for the pairs at hand.
//!
//! A plaintext is supported on multiples of `w`, so its evaluation at a root `psi^e` depends
//! only on `e mod 2N / w`: the NTT outputs fall into `R = g D` contiguous runs of `w` outputs on
//! which it is constant (the run is given by the top `log2 R` bits of the output index, since
//! outputs are in bit-reversed order). The product is therefore a scalar times each run of the
//! ciphertext: `2 L N` multiply-adds per block and ciphertext (`L` primes, `a` and `b`),
//! summed in 128 bits and reduced once, and nothing is transformed on the plaintext side.
//!
//! **What the encrypting server learns.** The evaluator re-randomises each block with a fresh
//! encryption of zero under the encryptor's public key (`a` becomes `a + u a_pk + e_1`, hiding
//! the `sum_k a_ck P_hk` that would give away `P` given the public `a`s), drops the last prime
//! (dividing the noise by 2^54), and adds a uniform flooding noise `F` far above a proven bound
//! on everything else in the noise (`e P`, the rounding of the exact encoding, the public key's
//! noise, the modulus switch): per coefficient the statistical distance to `F` alone is at most
//! the bound over `2F`, and the margin is [`STAT_BITS`](crate::mpc::he::harden::STAT_BITS) plus the log of the number of flooded
//! coefficients, so all of a run's results are within `2^-41` of noise that does not depend on
//! `X`. It adds the encoding of a uniform mask `R` and keeps `-R` as its share, and
//! switches the result to the modulus `2^96` (`RESULT_BITS`: the bits below are flooding noise),
//! a function of the flooded ciphertext alone. The encryptor decrypts `<X_i, Y_j> + R`:
//! uniform.
//!
//! **What the evaluating server learns**: ciphertexts and a public key under a key it does not
//! know (ring-LWE, 216-bit `q` at `N = 8192`, ternary secret, binomial noise of deviation 3.24:
//! 128-bit security by the homomorphic encryption standard's table).
//!
//! Semi-honest: an encryptor that sends malformed ciphertexts (noise far above the bound) can
//! make the flooding insufficient; authenticated material is future work (design.md).

use crate::error::{Error, PeerName, Result};
use crate::mpc::bit_pack::{Packer, Unpacker};
use crate::mpc::he::harden::{
    HARDENED, Hardening, MAX_PEERS, OUT_L, flood_bits_over, noise_bound, rerandomize_drop_flood,
    returned_modulus_bits,
};
use crate::mpc::he::rlwe::{Context, L, N, PK_STREAM, RESULT_BITS, Sampler, SecretKey};
use crate::mpc::he::wire::{RESIDUE_BITS, check_rows, pack, packed_words, unpack};
use crate::mpc::pairs::Pairs;
use crate::mpc::prg::Seed;
use crate::mpc::protocol::{Protocol, Step, check_lengths};
use crate::mpc::ring;
use rayon::prelude::*;
use std::sync::Arc;

/// Largest row length accepted. Within the dealer-free source's work bound some packing's
/// flooding noise fits the returned modulus for every row length up to it; `Layout::new`
/// refuses pairs for which none does (`flood_bits`).
pub const MAX_D: usize = 2048;

/// Largest group of `X` rows (the plaintexts' evaluations cost `g` products per row, dimension,
/// prime and run).
pub const MAX_GROUP: usize = 64;

/// How the pairs map onto ciphertexts.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Rows of `X`.
    pub n: usize,
    /// Rows of `Y`.
    pub m: usize,
    /// Row length.
    pub d: usize,
    /// Rows of `X` per group (`g`).
    pub group: usize,
    /// Dimensions per ciphertext (`D`).
    pub dims: usize,
    /// Rows of `Y` per chunk (`w = N / (g D)`).
    pub chunk: usize,
    /// Chunks that some pair needs, ascending: each is encrypted once per `D` dimensions.
    pub chunks: Vec<u32>,
    /// Blocks `(chunk, group)` that some pair needs, ascending.
    pub blocks: Vec<(u32, u32)>,
    /// `blocks[b]`'s position in `chunks`.
    block_chunk: Vec<u32>,
}

impl Layout {
    /// The packing for `pairs` of `n x d` and `m x d` rows whose traffic is least
    /// ([`least_traffic`] over [`packings`]).
    pub fn new(pairs: &Pairs, d: usize) -> Result<Layout> {
        Layout::within(pairs, d, |_| true)
    }

    /// The packing whose traffic is least among those whose [`Shape`] `fits` (a work bound).
    pub fn within(pairs: &Pairs, d: usize, fits: impl Fn(&Shape) -> bool) -> Result<Layout> {
        check_width(d)?;
        let layouts = packings(d).map(|(g, dims)| {
            let lay = Layout::with_packing(pairs, d, g, dims);
            (lay.shape(), lay)
        });
        least_traffic(layouts, fits)
            .map(|(_, lay)| lay)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "ring-LWE products of {} pairs of rows of {d}: no packing fits the flooding \
                     noise into the returned modulus within the bound",
                    pairs.len()
                ))
            })
    }

    /// The packing with `group` rows of `X` per group and one dimension per ciphertext.
    pub fn with_group(pairs: &Pairs, d: usize, group: usize) -> Layout {
        Layout::with_packing(pairs, d, group, 1)
    }

    /// The packing with `group` rows of `X` per group and `dims` dimensions per ciphertext
    /// (`group * dims` a power of two up to [`MAX_GROUP`]).
    ///
    /// # Panics
    /// If `group * dims` is not such a power of two (a caller's mistake).
    pub fn with_packing(pairs: &Pairs, d: usize, group: usize, dims: usize) -> Layout {
        let runs = group * dims;
        assert!(
            runs.is_power_of_two() && runs <= MAX_GROUP,
            "a packing of {group} rows and {dims} dimensions"
        );
        let chunk = N / runs;
        let mut keys: Vec<u64> = (0..pairs.len())
            .map(|p| {
                let (i, j) = pairs.pair(p);
                ((j / chunk) as u64) << 32 | (i / group) as u64
            })
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let blocks: Vec<(u32, u32)> = keys.iter().map(|k| ((k >> 32) as u32, *k as u32)).collect();
        let mut chunks: Vec<u32> = blocks.iter().map(|b| b.0).collect();
        chunks.dedup();
        let mut block_chunk = Vec::with_capacity(blocks.len());
        let mut ci = 0;
        for b in &blocks {
            while chunks[ci] != b.0 {
                ci += 1;
            }
            block_chunk.push(ci as u32);
        }
        Layout {
            n: pairs.rows(),
            m: pairs.cols(),
            d,
            group,
            dims,
            chunk,
            chunks,
            blocks,
            block_chunk,
        }
    }

    /// The same chunks with only the blocks `b` for which `keep(b)` holds, and the index of each
    /// kept block in `self` (the ciphertexts, hence the encryptor's message, are unchanged).
    pub fn subset(&self, keep: impl Fn(usize) -> bool) -> (Layout, Vec<u32>) {
        let index: Vec<u32> = (0..self.blocks.len() as u32)
            .filter(|&b| keep(b as usize))
            .collect();
        let lay = Layout {
            blocks: index.iter().map(|&b| self.blocks[b as usize]).collect(),
            block_chunk: index
                .iter()
                .map(|&b| self.block_chunk[b as usize])
                .collect(),
            chunks: self.chunks.clone(),
            ..*self
        };
        (lay, index)
    }

    /// The packing's size: what it sends, holds and computes.
    pub fn shape(&self) -> Shape {
        Shape {
            d: self.d,
            group: self.group,
            dims: self.dims,
            chunks: self.chunks.len() as u64,
            blocks: self.blocks.len() as u64,
        }
    }

    /// Ciphertexts per chunk: `ceil(d / D)`.
    pub fn cipher_dims(&self) -> usize {
        self.shape().cipher_dims()
    }

    /// NTT runs on which the plaintexts are constant: `g D = N / w`.
    pub fn runs(&self) -> usize {
        self.shape().runs()
    }

    /// Words of one server's ciphertexts as sent ([`Shape::words_in`]).
    pub fn words_in(&self) -> u64 {
        self.shape().words_in()
    }

    /// Words of the results one evaluator returns to one encryptor ([`Shape::words_back`]).
    pub fn words_back(&self) -> u64 {
        self.shape().words_back()
    }

    /// Multiply-adds of one evaluation ([`Shape::multiply_adds`]).
    pub fn multiply_adds(&self) -> u64 {
        self.shape().multiply_adds()
    }

    /// The block and coefficient that hold pair `(i, j)` (`None` if no block covers it, which
    /// cannot happen for the pairs the layout was built from).
    pub fn locate(&self, i: usize, j: usize) -> Option<(usize, usize)> {
        let key = ((j / self.chunk) as u32, (i / self.group) as u32);
        let b = self.blocks.binary_search(&key).ok()?;
        let q = (i % self.group) * self.dims + self.dims - 1;
        Some((b, q * self.chunk + j % self.chunk))
    }
}

/// Refuses row lengths outside `1..=MAX_D`.
fn check_width(d: usize) -> Result<()> {
    if d == 0 || d > MAX_D {
        return Err(Error::invalid(format!(
            "ring-LWE products take rows of 1 to {MAX_D} values, not {d}"
        )));
    }
    Ok(())
}

/// The size of a packing, from its parameters and how many chunks and blocks the pairs need:
/// everything the traffic, the work and the flooding noise depend on. A [`Layout`] has one; the
/// dealer-free source's pre-checks make one for a dense grid, a superset of any job's pairs, so
/// that the packing they accept is one [`Layout::within`] can choose (fewer chunks and blocks
/// never cost more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Row length.
    pub d: usize,
    /// Rows of `X` per group (`g`).
    pub group: usize,
    /// Dimensions per ciphertext (`D`).
    pub dims: usize,
    /// Chunks of `Y` rows that some pair needs.
    pub chunks: u64,
    /// Blocks `(chunk, group)` that some pair needs.
    pub blocks: u64,
}

impl Shape {
    /// Rows of `Y` per chunk (`w = N / (g D)`).
    pub fn chunk(&self) -> usize {
        N / self.runs()
    }

    /// Ciphertexts per chunk: `ceil(d / D)`.
    pub fn cipher_dims(&self) -> usize {
        self.d.div_ceil(self.dims)
    }

    /// NTT runs on which the plaintexts are constant: `g D = N / w`.
    pub fn runs(&self) -> usize {
        self.group * self.dims
    }

    /// Words of one server's ciphertexts as sent (seeds, then the public key and one
    /// ciphertext per chunk and `D` dimensions, their `a`s from the seed, residues in
    /// [`RESIDUE_BITS`] bits).
    pub fn words_in(&self) -> u64 {
        8 + packed_words(self.residues_in(), RESIDUE_BITS)
    }

    /// Residues of one server's ciphertexts.
    fn residues_in(&self) -> u64 {
        ((L * N) as u64).saturating_mul(1 + self.chunks.saturating_mul(self.cipher_dims() as u64))
    }

    /// Words of the results one evaluator returns to one encryptor, as sent: per block `2 N`
    /// values of [`RESULT_BITS`] bits.
    pub fn words_back(&self) -> u64 {
        (self.values_back().saturating_mul(RESULT_BITS as u64)).div_ceil(64)
    }

    /// Values (coefficients of `a` and `b`) of the results one evaluator returns.
    fn values_back(&self) -> u64 {
        (2 * N) as u64 * self.blocks
    }

    /// Multiply-adds of one evaluation (both parts of every block, every prime).
    pub fn multiply_adds(&self) -> u64 {
        ((2 * L * N * self.cipher_dims()) as u64).saturating_mul(self.blocks)
    }

    /// Bits of the flooding noise: [`STAT_BITS`](crate::mpc::he::harden::STAT_BITS) plus the log of the number of flooded
    /// coefficients above the bound on the rest of the returned noise (see the module docs),
    /// or an error if the returned modulus cannot hold it.
    pub fn flood_bits(&self) -> Result<u32> {
        let eta = crate::mpc::he::rlwe::ETA as f64;
        // Sum over a chunk's ciphertexts of (e + rounding) times P: ||P||_1 <= g D 2^63.
        let mult = (self.cipher_dims() * self.runs()) as f64 * (eta + 0.5) * 2f64.powi(63);
        let coefficients = N as f64 * self.blocks.max(1) as f64 * MAX_PEERS as f64;
        let bits = flood_bits_over(noise_bound(Context::get(), mult), coefficients);
        let q_out = returned_modulus_bits(Context::get());
        // Flood plus bound below Q' / 2^66.1: after the switch to 2^RESULT_BITS at most 2^29.9
        // of the decoder's 2^31, the rest for the switch's error (`Context::to_power_of_two`).
        if bits as f64 + 66.1 > q_out {
            return Err(Error::invalid(format!(
                "ring-LWE products of rows of {} in groups of {} with {} dimensions per \
                 ciphertext: the flooding noise ({bits} bits) does not fit the returned modulus",
                self.d, self.group, self.dims
            )));
        }
        Ok(bits)
    }
}

/// The packings `(g, D)` considered for rows of `d`: `g D` a power of two up to [`MAX_GROUP`],
/// `D` at most `d` rounded up to a power of two.
pub fn packings(d: usize) -> impl Iterator<Item = (usize, usize)> {
    let runs = (0..=MAX_GROUP.trailing_zeros()).map(|e| 1usize << e);
    runs.flat_map(move |r| {
        (0..=r.trailing_zeros())
            .map(move |e| (1usize << e, r >> e))
            .filter(move |&(_, dims)| dims <= d.next_power_of_two())
    })
}

/// Of `candidates`, the one with the fewest words sent (both directions) whose flooding noise
/// fits and whose shape `fits` a bound; ties go to the first.
pub fn least_traffic<T>(
    candidates: impl Iterator<Item = (Shape, T)>,
    fits: impl Fn(&Shape) -> bool,
) -> Option<(Shape, T)> {
    let mut best: Option<(u64, Shape, T)> = None;
    for (shape, t) in candidates {
        let words = shape.words_in().saturating_add(shape.words_back());
        if best.as_ref().is_none_or(|(w, _, _)| words < *w)
            && shape.flood_bits().is_ok()
            && fits(&shape)
        {
            best = Some((words, shape, t));
        }
    }
    best.map(|(_, shape, t)| (shape, t))
}

/// `psi^e` for every NTT output run and plaintext coefficient: `zeta[l][r * R + q]` is the
/// factor of coefficient `q w` (`w = N / R`) in the evaluation of a plaintext on run `r` modulo
/// prime `l`.
fn run_factors(ctx: &Context, runs: usize) -> Vec<Vec<u64>> {
    let chunk = ctx.n() / runs;
    let two_n = 2 * ctx.n() as u64;
    (0..L)
        .map(|l| {
            let t = &ctx.ntt[l];
            let mut out = Vec::with_capacity(runs * runs);
            for r in 0..runs {
                let e = t.exponent(r * chunk) as u64;
                for q in 0..runs as u64 {
                    out.push(t.m.pow(t.psi, (e * q * chunk as u64) % two_n));
                }
            }
            out
        })
        .collect()
}

/// The evaluations of every group's plaintexts: `values[((h * L + l) * R + r) * C + c]` for
/// group `h`, prime `l`, run `r` and ciphertext `c` of a chunk (dimensions `c D .. c D + D`).
/// Row `i` of the group and dimension `c D + k` sit at coefficient `(i D + D - 1 - k) w`.
fn plaintext_values(ctx: &Context, lay: &Layout, x: &[u64]) -> Vec<u64> {
    let (g, dims, d, runs, cd) = (lay.group, lay.dims, lay.d, lay.runs(), lay.cipher_dims());
    let groups = lay.n.div_ceil(g);
    let zeta = run_factors(ctx, runs);
    let mut out = vec![0u64; groups * L * runs * cd];
    out.par_chunks_mut(L * runs * cd)
        .enumerate()
        .for_each(|(h, vals)| {
            for l in 0..L {
                let m = ctx.modulus(l);
                let z = &zeta[l];
                for i in 0..g {
                    let row = h * g + i;
                    if row >= lay.n {
                        break;
                    }
                    let xr = &x[row * d..(row + 1) * d];
                    for k in 0..dims {
                        let q = i * dims + dims - 1 - k;
                        for r in 0..runs {
                            let (f, fs) = (z[r * runs + q], m.shoup(z[r * runs + q]));
                            let dst = &mut vals[(l * runs + r) * cd..(l * runs + r + 1) * cd];
                            for (c, o) in dst.iter_mut().enumerate() {
                                if let Some(&v) = xr.get(c * dims + k) {
                                    let v = m.from_signed(v as i64);
                                    *o = m.add(*o, m.mul_shoup(v, f, fs));
                                }
                            }
                        }
                    }
                }
            }
        });
    out
}

/// One server's keys and ciphertexts of its share of `Y`.
struct Encrypted {
    key: SecretKey,
    /// As sent: the public key's and the ciphertexts' seeds (8 words), then the public key's
    /// `b` and every ciphertext's `b`, `N` residues a row, packed ([`pack`]).
    message: Vec<u64>,
}

fn encrypt(ctx: &Context, lay: &Layout, y: &[u64]) -> Encrypted {
    let mut sampler = Sampler::fresh();
    let key = SecretKey::generate(ctx, &mut sampler);
    let (pk_seed, ct_seed) = (Seed::random(), Seed::random());
    let pk = key.public_key(ctx, &mut sampler, &pk_seed);
    let (d, dims, w, cd) = (lay.d, lay.dims, lay.chunk, lay.cipher_dims());
    let noise_seed = Seed::random();
    let per = lay.chunks.len() * cd;
    let cts: Vec<Vec<u64>> = (0..per)
        .into_par_iter()
        .map(|t| {
            let (ci, cc) = (t / cd, t % cd);
            let c = lay.chunks[ci] as usize;
            let rows = w.min(lay.m - c * w);
            // Dimension cc D + k of row c w + j at coefficient k w + j.
            let mut msg = vec![0u64; dims * w];
            for k in 0..dims.min(d - cc * dims) {
                for j in 0..rows {
                    msg[k * w + j] = y[(c * w + j) * d + cc * dims + k];
                }
            }
            let mut s = Sampler::new(&noise_seed, t as u64);
            pack(
                &key.encrypt(ctx, &mut s, &ct_seed, 1 + t as u64, &msg),
                RESIDUE_BITS,
            )
        })
        .collect();
    // The wire form: seeds, then every row of `N` residues in [`RESIDUE_BITS`] bits.
    let mut message = Vec::with_capacity(lay.words_in() as usize);
    message.extend_from_slice(&pk_seed.to_words());
    message.extend_from_slice(&ct_seed.to_words());
    message.extend_from_slice(&pack(&pk, RESIDUE_BITS));
    for c in cts {
        message.extend_from_slice(&c);
    }
    Encrypted { key, message }
}

/// Bits of the flooding noise for a layout ([`Shape::flood_bits`]).
pub fn flood_bits(lay: &Layout) -> Result<u32> {
    lay.shape().flood_bits()
}

/// Evaluates a peer's ciphertexts (as sent) on this server's plaintext values: the payload
/// to return ([`pack_results`] of [`to_results`], [`Shape::words_back`] words) and this
/// server's masks (`N` per block; its share is their negation).
fn evaluate(
    ctx: &Context,
    lay: &Layout,
    values: &[u64],
    message: &[u64],
    from: usize,
) -> Result<(Vec<u64>, Vec<u64>)> {
    let per_block = (lay.words_back() / lay.blocks.len().max(1) as u64) as usize;
    let mut payload = vec![0u64; lay.words_back() as usize];
    let masks = evaluate_with(ctx, lay, values, message, from, HARDENED, |b0, level3| {
        let words = pack_results(&to_results(ctx, &level3));
        payload[b0 * per_block..b0 * per_block + words.len()].copy_from_slice(&words);
    })?;
    Ok((payload, masks))
}

/// Returned blocks modulo the three returned primes, switched to the modulus
/// `2^RESULT_BITS`: per block `2 N` values (`a` then `b`), each as two words (low 64 bits, then
/// the rest). The low bits dropped are below the flooding noise, and the switch is a function of
/// the flooded ciphertext alone.
fn to_results(ctx: &Context, level3: &[u64]) -> Vec<u64> {
    let n = N;
    let mut out = vec![0u64; level3.len() / (2 * OUT_L) * 4];
    out.par_chunks_mut(4 * n)
        .zip(level3.par_chunks_exact(2 * OUT_L * n))
        .for_each(|(dst, block)| {
            let (a, b) = block.split_at(OUT_L * n);
            for (part, src) in [a, b].into_iter().enumerate() {
                let v = ctx.to_power_of_two(OUT_L, src);
                for (c, x) in v.iter().enumerate() {
                    dst[part * 2 * n + 2 * c] = *x as u64;
                    dst[part * 2 * n + 2 * c + 1] = (*x >> 64) as u64;
                }
            }
        });
    out
}

/// Results as sent: every value in [`RESULT_BITS`] bits.
fn pack_results(results: &[u64]) -> Vec<u64> {
    let mut p = Packer::with_capacity(results.len() * RESULT_BITS as usize / 128 + 1);
    for pair in results.chunks_exact(2) {
        p.push(pair[0], 64);
        p.push(pair[1], RESULT_BITS - 64);
    }
    p.words
}

/// Inverse of [`pack_results`] for `values` values (the words' number was checked).
fn unpack_results(words: &[u64], values: usize) -> Vec<u64> {
    let mut u = Unpacker::new(words);
    let mut out = Vec::with_capacity(2 * values);
    for _ in 0..values {
        out.push(u.take(64));
        out.push(u.take(RESULT_BITS - 64));
    }
    out
}

/// Blocks evaluated at a time: their sums are re-randomised, switched and handed on before
/// the next batch, so that an evaluator holds a batch's ciphertexts in all primes (64 MiB
/// with the parts they are gathered from) rather than every block's.
pub const BATCH_BLOCKS: usize = 64;

/// Chunks a batch covers at most: their ciphertexts are expanded (`a` from the seed, `b`
/// unpacked) for the batch.
pub const BATCH_CHUNKS: usize = 8;

/// Evaluates a peer's ciphertexts (as sent) on `values`, [`BATCH_BLOCKS`] blocks of at most
/// [`BATCH_CHUNKS`] chunks at a time,
/// handing each batch's hardened blocks (`2 OUT_L N` residues each, `a` then `b`, at the three
/// returned primes) to `emit` with the index of its first block; returns the masks (`N` per
/// block).
fn evaluate_with(
    ctx: &Context,
    lay: &Layout,
    values: &[u64],
    message: &[u64],
    from: usize,
    hard: Hardening,
    mut emit: impl FnMut(usize, Vec<u64>),
) -> Result<Vec<u64>> {
    let (runs, w, cd, n) = (lay.runs(), lay.chunk, lay.cipher_dims(), N);
    // Every residue checked before any work (unpacked a row at a time), and the length (two
    // seeds, then whole rows) before the seeds are read.
    check_rows(ctx, message, 8, RESIDUE_BITS, from, "ciphertext")?;
    let seed = |at: usize| Seed::from_words(message[at..at + 4].try_into().expect("4 words"));
    let (pk_seed, ct_seed) = (seed(0), seed(4));
    // Row `r` of the message: `L` rows of the public key, then `L` per ciphertext.
    let row_words = packed_words(N as u64, RESIDUE_BITS) as usize;
    let row = |r: usize| {
        unpack(
            &message[8 + r * row_words..8 + (r + 1) * row_words],
            N,
            RESIDUE_BITS,
        )
    };
    let pk_a = ctx.uniform(L, &pk_seed, PK_STREAM);
    let pk_b: Vec<u64> = (0..L).flat_map(row).collect();
    let bits = flood_bits(lay)?;
    let fresh = Seed::random();
    let nb = lay.blocks.len();
    let mut masks = vec![0u64; nb * n];
    let tile = ((1usize << 19) / (32 * w)).max(1);
    // A batch's blocks in all primes and hardened, reused from batch to batch (fresh
    // allocations of this size are page faults and zeroing each time).
    let mut blocks = vec![0u64; BATCH_BLOCKS.min(nb) * 2 * L * n];
    let mut b0 = 0;
    while b0 < nb {
        let last = (lay.block_chunk[b0] as usize + BATCH_CHUNKS).min(lay.chunks.len());
        let chunk_end = b0 + lay.block_chunk[b0..].partition_point(|&c| (c as usize) < last);
        let b1 = (b0 + BATCH_BLOCKS).min(chunk_end);
        // The chunks of this batch, and each one's blocks within it (blocks are sorted by
        // chunk).
        let (c0, c1) = (
            lay.block_chunk[b0] as usize,
            lay.block_chunk[b1 - 1] as usize + 1,
        );
        let spans: Vec<std::ops::Range<usize>> = (c0..c1)
            .map(|ci| {
                let lo = b0 + lay.block_chunk[b0..b1].partition_point(|&c| (c as usize) < ci);
                let hi = b0 + lay.block_chunk[b0..b1].partition_point(|&c| (c as usize) <= ci);
                lo..hi
            })
            .collect();
        // The batch's ciphertexts: `a` from the seed, `b` as sent, `L N` each.
        let cts = (c0 * cd..c1 * cd).len();
        let ct_a: Vec<u64> = (c0 * cd..c1 * cd)
            .into_par_iter()
            .flat_map_iter(|t| ctx.uniform(L, &ct_seed, 1 + t as u64))
            .collect();
        let ct_b: Vec<u64> = (0..cts * L)
            .into_par_iter()
            .flat_map_iter(|r| row(L * (1 + c0 * cd) + r))
            .collect();
        // Accumulate every (chunk, prime, run) over the dimensions, a tile of groups at a time.
        let tasks: Vec<(usize, usize, usize)> = (c0..c1)
            .flat_map(|ci| (0..L).flat_map(move |l| (0..runs).map(move |r| (ci, l, r))))
            .collect();
        let parts: Vec<Vec<u64>> = tasks
            .par_iter()
            .map(|&(ci, l, r)| {
                let m = ctx.modulus(l);
                let blocks = &lay.blocks[spans[ci - c0].clone()];
                let mut out = vec![0u64; blocks.len() * 2 * w];
                let mut acc = vec![0u128; tile * 2 * w];
                for (ti, tb) in blocks.chunks(tile).enumerate() {
                    acc.iter_mut().for_each(|v| *v = 0);
                    for k in 0..cd {
                        let at = ((ci - c0) * cd + k) * L * n + l * n + r * w;
                        let (sa, sb) = (&ct_a[at..at + w], &ct_b[at..at + w]);
                        for (t, &(_, h)) in tb.iter().enumerate() {
                            let v = values[((h as usize * L + l) * runs + r) * cd + k] as u128;
                            let (aa, ab) = acc[t * 2 * w..(t + 1) * 2 * w].split_at_mut(w);
                            for ((x, y), (&ca, &cb)) in
                                aa.iter_mut().zip(ab.iter_mut()).zip(sa.iter().zip(sb))
                            {
                                *x += ca as u128 * v;
                                *y += cb as u128 * v;
                            }
                        }
                    }
                    for t in 0..tb.len() {
                        let dst = &mut out[(ti * tile + t) * 2 * w..(ti * tile + t + 1) * 2 * w];
                        for (o, &s) in dst.iter_mut().zip(&acc[t * 2 * w..(t + 1) * 2 * w]) {
                            *o = m.reduce_wide(s);
                        }
                    }
                }
                out
            })
            .collect();
        drop((ct_a, ct_b));
        // Scatter into the batch's blocks: a then b, each L rows of N (every word of them
        // is written: the runs tile each row).
        let blocks = &mut blocks[..(b1 - b0) * 2 * L * n];
        for (&(ci, l, r), part) in tasks.iter().zip(&parts) {
            for (t, b) in spans[ci - c0].clone().enumerate() {
                let src = &part[t * 2 * w..(t + 1) * 2 * w];
                let base = (b - b0) * 2 * L * n;
                blocks[base + l * n + r * w..base + l * n + (r + 1) * w].copy_from_slice(&src[..w]);
                blocks[base + (L + l) * n + r * w..base + (L + l) * n + (r + 1) * w]
                    .copy_from_slice(&src[w..]);
            }
        }
        drop(parts);
        // Re-randomise, switch, flood, mask.
        let mut payload = vec![0u64; (b1 - b0) * 2 * OUT_L * n];
        payload
            .par_chunks_mut(2 * OUT_L * n)
            .zip(masks[b0 * n..b1 * n].par_chunks_mut(n))
            .zip(blocks.par_chunks_mut(2 * L * n))
            .enumerate()
            .for_each(|(t, ((out, mask), block))| {
                let b = b0 + t;
                harden(ctx, hard, bits, &fresh, b, (&pk_a, &pk_b), block, out, mask);
            });
        emit(b0, payload);
        b0 = b1;
    }
    Ok(masks)
}

/// Re-randomises block `b` (`2 L N` residues, in NTT form), drops the last prime and floods it
/// ([`rerandomize_drop_flood`]), then adds its mask (a uniform word per coefficient, kept in
/// `mask`, `N`), into `out` (`2 OUT_L N`), all from the stream `b` of `fresh`.
#[allow(clippy::too_many_arguments)]
fn harden(
    ctx: &Context,
    hard: Hardening,
    bits: u32,
    fresh: &Seed,
    b: usize,
    pk: (&[u64], &[u64]),
    block: &mut [u64],
    out: &mut [u64],
    mask: &mut [u64],
) {
    let n = N;
    let mut s = Sampler::new(fresh, b as u64);
    rerandomize_drop_flood(ctx, hard, bits, &mut s, pk, block, out);
    let b2 = &mut out[OUT_L * n..];
    let mut enc = [0u64; L];
    for (c, m_out) in mask.iter_mut().enumerate() {
        *m_out = s.word();
        ctx.encode(OUT_L, *m_out, &mut enc);
        for (l, e) in enc.iter().enumerate().take(OUT_L) {
            let m = ctx.modulus(l);
            let at = l * n + c;
            b2[at] = m.add(b2[at], *e);
        }
    }
}

/// Decrypts the blocks a peer returned (in the form of [`to_results`]): `N` values per block.
#[cfg(test)]
fn decrypt(ctx: &Context, key: &SecretKey, results: &[u64], from: usize) -> Result<Vec<u64>> {
    let mut out = vec![0u64; results.len() / 4];
    out.par_chunks_mut(N)
        .zip(results.par_chunks_exact(4 * N))
        .try_for_each(|(vals, block)| decrypt_block(ctx, key, block, from, vals))?;
    Ok(out)
}

/// Adds to `sums` (`N` per block) the values of the blocks a peer returned, as sent
/// ([`pack_results`]; the length was checked), block `j` of them into block `index[j]` of
/// `sums`, [`BATCH_BLOCKS`] at a time.
fn decrypt_into(
    ctx: &Context,
    key: &SecretKey,
    packed: &[u64],
    from: usize,
    sums: &mut [u64],
    index: &[u32],
) -> Result<()> {
    let per_block = packed.len() / index.len().max(1);
    for (words, idx) in packed
        .chunks(per_block.max(1) * BATCH_BLOCKS)
        .zip(index.chunks(BATCH_BLOCKS))
    {
        let vals: Vec<Vec<u64>> = words
            .par_chunks_exact(per_block.max(1))
            .map(|block| {
                let results = unpack_results(block, 2 * N);
                let mut vals = vec![0u64; N];
                decrypt_block(ctx, key, &results, from, &mut vals)?;
                Ok(vals)
            })
            .collect::<Result<_>>()?;
        for (&b, v) in idx.iter().zip(&vals) {
            let b = b as usize;
            ring::add_assign(&mut sums[b * N..(b + 1) * N], v);
        }
    }
    Ok(())
}

/// Decrypts one returned block (`4 N` words: `2 N` values of two words, `a` then `b`) into
/// `vals`.
fn decrypt_block(
    ctx: &Context,
    key: &SecretKey,
    block: &[u64],
    from: usize,
    vals: &mut [u64],
) -> Result<()> {
    let n = N;
    // `unpack_results` reads 32 bits for the high words; the check guards other callers.
    let top = 1u64 << (RESULT_BITS - 64);
    if let Some(pos) = block.iter().skip(1).step_by(2).position(|&h| h >= top) {
        return Err(Error::protocol(
            PeerName::Server(from),
            format!("ring-LWE results: value {pos} of a block exceeds {RESULT_BITS} bits"),
        ));
    }
    let wide = |w: &[u64]| -> Vec<u128> {
        w.chunks_exact(2)
            .map(|p| p[0] as u128 | (p[1] as u128) << 64)
            .collect()
    };
    let (a, b) = block.split_at(2 * n);
    let ph = key.phase_pow2(ctx, &wide(a), &wide(b));
    let shift = RESULT_BITS - 64;
    for (v, p) in vals.iter_mut().zip(ph) {
        *v = (p.wrapping_add(1 << (shift - 1)) >> shift) as u64;
    }
    Ok(())
}

/// The protocol: shares of `sum over servers s != t of <X^t_i, Y^s_j>` for every pair (the
/// cross terms; each server adds its own `<X^s_i, Y^s_j>`). Two rounds: every server
/// broadcasts its ciphertexts, then returns each peer its evaluated blocks.
pub struct CrossProducts {
    me: usize,
    k: usize,
    layout: Arc<Layout>,
    pairs: Pairs,
    /// Rows against themselves ([`CrossProducts::diagonal`]): each pair of servers computes
    /// its cross term once, half the blocks each way.
    diagonal: bool,
    state: State,
}

enum State {
    Fresh {
        x: Vec<u64>,
        y: Vec<u64>,
    },
    Sent {
        key: SecretKey,
        x: Vec<u64>,
    },
    Returned {
        key: SecretKey,
        /// The sum of the masks of every peer's results (`N` per block).
        masks: Vec<u64>,
    },
    Finished,
}

impl CrossProducts {
    /// Server `me` of `k`, with its shares of `X` (`n x d`) and `Y` (`m x d`), row-major.
    pub fn new(
        me: usize,
        k: usize,
        layout: Arc<Layout>,
        pairs: Pairs,
        x: Vec<u64>,
        y: Vec<u64>,
    ) -> Result<CrossProducts> {
        let d = layout.d;
        if !(2..=MAX_PEERS + 1).contains(&k) || me >= k {
            return Err(Error::invalid(format!(
                "ring-LWE product: server {me} of {k} (2 to {} servers)",
                MAX_PEERS + 1
            )));
        }
        if pairs.rows() != layout.n || pairs.cols() != layout.m {
            return Err(Error::invalid(
                "ring-LWE product: the pairs are not the layout's",
            ));
        }
        let runs = layout.runs();
        if !runs.is_power_of_two() || runs > MAX_GROUP || layout.chunk * runs != N {
            return Err(Error::invalid(
                "ring-LWE product: the layout's group, dimensions and chunk do not tile the ring",
            ));
        }
        if x.len() != layout.n * d || y.len() != layout.m * d {
            return Err(Error::invalid(
                "ring-LWE product: share sizes do not match the layout",
            ));
        }
        flood_bits(&layout)?;
        Ok(CrossProducts {
            me,
            k,
            layout,
            pairs,
            diagonal: false,
            state: State::Fresh { x, y },
        })
    }

    /// Shares of `sum over servers s != t of <X^t_i, X^s_i>` for pairs that are all of the form
    /// `(i, i)` (rows against themselves; each server adds its own `<X^s_i, X^s_i>`). The term
    /// of servers `s` and `t` is the same both ways, so it is computed once: `s < t` evaluates
    /// `t`'s ciphertexts on the even blocks and `t` evaluates `s`'s on the odd ones, each
    /// returns only those, and the evaluator's plaintext is its share doubled, so that the
    /// results are `2 <X^e_i, X^s_i> + R` and both shares stay uniform (doubling the shares
    /// instead would fix their low bit). Half the evaluation, results and decryption of
    /// [`CrossProducts::new`]; the ciphertexts are the same.
    pub fn diagonal(
        me: usize,
        k: usize,
        layout: Arc<Layout>,
        pairs: Pairs,
        x: Vec<u64>,
    ) -> Result<CrossProducts> {
        if (0..pairs.len()).any(|p| {
            let (i, j) = pairs.pair(p);
            i != j
        }) {
            return Err(Error::invalid(
                "ring-LWE product: the diagonal form takes pairs of a row with itself",
            ));
        }
        let mut p = CrossProducts::new(me, k, layout, pairs, x.clone(), x)?;
        p.diagonal = true;
        Ok(p)
    }

    /// Whether `evaluator` evaluates block `b` of `encryptor`'s ciphertexts.
    fn evaluates(&self, evaluator: usize, encryptor: usize, b: usize) -> bool {
        !self.diagonal || b.is_multiple_of(2) == (evaluator < encryptor)
    }

    /// The blocks `evaluator` evaluates of `encryptor`'s ciphertexts, and their indices.
    fn evaluated(&self, evaluator: usize, encryptor: usize) -> (Layout, Vec<u32>) {
        self.layout
            .subset(|b| self.evaluates(evaluator, encryptor, b))
    }
}

impl Protocol for CrossProducts {
    type Output = Vec<u64>;

    fn start(mut self) -> Result<Step<Self>> {
        let State::Fresh { x, y } = std::mem::replace(&mut self.state, State::Finished) else {
            return Err(Error::invalid("ring-LWE product started twice"));
        };
        let enc = encrypt(Context::get(), &self.layout, &y);
        drop(y);
        self.state = State::Sent { key: enc.key, x };
        Ok(Step::Send(self, enc.message))
    }

    fn receive(mut self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        if incoming.len() != self.k {
            return Err(Error::invalid(format!(
                "ring-LWE product: a round of {} messages for {} servers",
                incoming.len(),
                self.k
            )));
        }
        let ctx = Context::get();
        let lay = self.layout.clone();
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Sent { key, x } => {
                // Every peer's ciphertexts: evaluate them on this server's share of X.
                check_lengths(&incoming, lay.words_in() as usize, "ring-LWE ciphertexts")?;
                // With the diagonal form, each pair of servers' term once: the evaluator's plaintext
                // doubled.
                let x = if self.diagonal {
                    x.iter().map(|v| v.wrapping_add(*v)).collect()
                } else {
                    x
                };
                let values = plaintext_values(ctx, &lay, &x);
                drop(x);
                let mut payloads = vec![Vec::new(); self.k];
                // The masks of every peer's results, summed per block: this server's share is
                // minus that.
                let mut masks = vec![0u64; lay.blocks.len() * N];
                for (from, msg) in incoming.iter().enumerate() {
                    if from != self.me {
                        let (sub, index) = self.evaluated(self.me, from);
                        let (payload, mask) = evaluate(ctx, &sub, &values, msg, from)?;
                        payloads[from] = payload;
                        for (&b, m) in index.iter().zip(mask.chunks_exact(N)) {
                            let b = b as usize;
                            ring::add_assign(&mut masks[b * N..(b + 1) * N], m);
                        }
                    }
                }
                drop(incoming);
                let expected = (0..self.k)
                    .map(|s| {
                        if s == self.me {
                            0
                        } else {
                            self.evaluated(s, self.me).0.words_back() as usize
                        }
                    })
                    .collect();
                self.state = State::Returned { key, masks };
                Ok(Step::SendEach(self, payloads, expected))
            }
            State::Returned { key, masks } => {
                // This server's ciphertexts, evaluated by each peer.
                let mut sums = masks;
                ring::neg_assign(&mut sums);
                for (s, p) in incoming.iter().enumerate() {
                    if s == self.me {
                        continue;
                    }
                    let (sub, index) = self.evaluated(s, self.me);
                    if p.len() as u64 != sub.words_back() {
                        return Err(Error::protocol(
                            PeerName::Server(s),
                            format!(
                                "ring-LWE results: expected {} words, received {}",
                                sub.words_back(),
                                p.len()
                            ),
                        ));
                    }
                    decrypt_into(ctx, &key, p, s, &mut sums, &index)?;
                }
                let out = (0..self.pairs.len())
                    .map(|p| {
                        let (i, j) = self.pairs.pair(p);
                        let (b, c) = lay.locate(i, j).expect("the layout covers its pairs");
                        sums[b * N + c]
                    })
                    .collect();
                Ok(Step::Done(out))
            }
            State::Fresh { .. } | State::Finished => Err(Error::invalid(
                "ring-LWE product: a round arrived out of order",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::prg::Prg;
    use crate::mpc::protocol::run_lockstep;

    fn shares(prg: &mut Prg, k: usize, len: usize) -> (Vec<u64>, Vec<Vec<u64>>) {
        let parts: Vec<Vec<u64>> = (0..k).map(|_| prg.vec(len)).collect();
        let mut whole = vec![0u64; len];
        for p in &parts {
            ring::add_assign(&mut whole, p);
        }
        (whole, parts)
    }

    fn dot(a: &[u64], b: &[u64]) -> u64 {
        a.iter()
            .zip(b)
            .fold(0u64, |s, (x, y)| s.wrapping_add(x.wrapping_mul(*y)))
    }

    /// Runs the protocol for random shares and checks every pair against plaintext.
    fn check(k: usize, pairs: Pairs, d: usize, packing: Option<(usize, usize)>, seed: u8) {
        let mut prg = Prg::new(&Seed([seed; 32]), 0);
        let (n, m) = (pairs.rows(), pairs.cols());
        let (x, xs) = shares(&mut prg, k, n * d);
        let (y, ys) = shares(&mut prg, k, m * d);
        let lay = Arc::new(match packing {
            Some((g, dims)) => Layout::with_packing(&pairs, d, g, dims),
            None => Layout::new(&pairs, d).unwrap(),
        });
        let parties = (0..k)
            .map(|s| {
                CrossProducts::new(
                    s,
                    k,
                    lay.clone(),
                    pairs.clone(),
                    xs[s].clone(),
                    ys[s].clone(),
                )
                .unwrap()
            })
            .collect();
        let (outs, rounds) = run_lockstep(parties).unwrap();
        assert_eq!(rounds, 2);
        for p in 0..pairs.len() {
            let (i, j) = pairs.pair(p);
            let mut got = 0u64;
            for (s, out) in outs.iter().enumerate() {
                // The cross terms, plus each server's own product.
                got = got
                    .wrapping_add(out[p])
                    .wrapping_add(dot(&xs[s][i * d..(i + 1) * d], &ys[s][j * d..(j + 1) * d]));
            }
            let want = dot(&x[i * d..(i + 1) * d], &y[j * d..(j + 1) * d]);
            assert_eq!(
                got, want,
                "pair ({i}, {j}) of {n} x {m}, d = {d}, group {}",
                lay.group
            );
        }
    }

    #[test]
    fn cross_products_equal_plaintext_for_every_packing() {
        // Dense: the chosen packing, groups from one row to the most, several dimensions per
        // ciphertext (dividing the row length or not).
        check(2, Pairs::dense(9, 21), 3, None, 1);
        for (g, dims) in [(1, 1), (4, 1), (MAX_GROUP, 1), (2, 4), (1, 8), (4, 16)] {
            check(2, Pairs::dense(5, 7), 6, Some((g, dims)), 2);
        }
        // Sparse pairs spread over several chunks and groups, three servers.
        let cols: Vec<u32> = (0..40u32)
            .flat_map(|i| [i * 977 % 20_000, (i * 31 + 5) % 20_000])
            .collect();
        check(
            3,
            Pairs::sparse(40, 20_000, 2, cols).unwrap(),
            5,
            Some((8, 4)),
            3,
        );
        // More blocks than a batch: batches end inside a chunk and chunks inside a batch.
        let cols: Vec<u32> = (0..150u32)
            .flat_map(|i| [i * 977 % 20_000, (i * 31 + 5) % 20_000])
            .collect();
        let pairs = Pairs::sparse(150, 20_000, 2, cols).unwrap();
        let lay = Layout::with_packing(&pairs, 2, 1, 1);
        assert!(
            lay.blocks.len() > 3 * BATCH_BLOCKS && lay.chunks.len() == 3,
            "{lay:?}"
        );
        check(2, pairs, 2, Some((1, 1)), 4);
        // A small side packs several dimensions per ciphertext.
        let lay = Layout::new(&Pairs::dense(300, 300), 648).unwrap();
        assert!(lay.dims > 1, "{lay:?}");
    }

    #[test]
    fn diagonal_products_compute_each_pair_of_servers_once() {
        // Rows against themselves: the same sums as the full protocol, with each peer's
        // results half as long (an odd number of blocks included), for k = 2, 3 and 4.
        for (k, rows, d, packing) in [
            (2, 40, 5, Some((4, 2))),
            (3, 37, 3, Some((1, 8))),
            (4, 21, 2, Some((2, 1))),
            (2, 300, 7, None),
        ] {
            let mut prg = Prg::new(&Seed([k as u8 + 40; 32]), 0);
            let (x, xs) = shares(&mut prg, k, rows * d);
            let diag: Vec<u32> = (0..rows as u32).collect();
            let pairs = Pairs::list(rows, rows, diag.clone(), diag).unwrap();
            let lay = Arc::new(match packing {
                Some((g, dims)) => Layout::with_packing(&pairs, d, g, dims),
                None => Layout::new(&pairs, d).unwrap(),
            });
            let parties: Vec<CrossProducts> = (0..k)
                .map(|s| {
                    CrossProducts::diagonal(s, k, lay.clone(), pairs.clone(), xs[s].clone())
                        .unwrap()
                })
                .collect();
            let half = parties[0].evaluated(0, 1).0.blocks.len();
            assert_eq!(half, lay.blocks.len().div_ceil(2));
            assert_eq!(
                parties[0].evaluated(1, 0).0.blocks.len(),
                lay.blocks.len() / 2
            );
            let (outs, rounds) = run_lockstep(parties).unwrap();
            assert_eq!(rounds, 2);
            // Each server's shares have both low bits (doubling the shares would fix it).
            for out in &outs {
                let odd = out.iter().filter(|v| *v & 1 == 1).count();
                assert!(odd > 0 && odd < rows, "k {k}: {odd} odd shares of {rows}");
            }
            for i in 0..rows {
                let mut got = 0u64;
                for (s, out) in outs.iter().enumerate() {
                    let own = &xs[s][i * d..(i + 1) * d];
                    got = got.wrapping_add(out[i]).wrapping_add(dot(own, own));
                }
                let row = &x[i * d..(i + 1) * d];
                assert_eq!(got, dot(row, row), "k {k}, row {i} of {rows}");
            }
        }
        // A peer returning results for every block (the full form's length) is refused, naming
        // it: each side expects only the blocks the other evaluates.
        let diag: Vec<u32> = (0..40).collect();
        let pairs = Pairs::list(40, 40, diag.clone(), diag).unwrap();
        let lay = Arc::new(Layout::with_packing(&pairs, 3, 4, 2));
        let mut parties: Vec<CrossProducts> = (0..2)
            .map(|s| {
                CrossProducts::diagonal(s, 2, lay.clone(), pairs.clone(), vec![s as u64; 120])
                    .unwrap()
            })
            .collect();
        let p1 = parties.pop().unwrap();
        let p0 = parties.pop().unwrap();
        let (Step::Send(p0, m0), Step::Send(p1, m1)) = (p0.start().unwrap(), p1.start().unwrap())
        else {
            panic!("broadcasts")
        };
        let Step::SendEach(p0, _, expected) = p0.receive(vec![m0, m1]).unwrap() else {
            panic!("results to send")
        };
        assert!(expected[1] < lay.words_back() as usize);
        drop(p1);
        let err = match p0.receive(vec![vec![], vec![0; lay.words_back() as usize]]) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("results of the full length were accepted"),
        };
        assert!(
            err.contains("server 1") && err.contains("expected"),
            "{err}"
        );
        // Pairs of different rows are refused.
        let pairs = Pairs::dense(2, 2);
        let lay = Arc::new(Layout::new(&pairs, 1).unwrap());
        let err = CrossProducts::diagonal(0, 2, lay, pairs, vec![1, 2])
            .err()
            .unwrap();
        assert!(err.to_string().contains("itself"), "{err}");
    }

    #[test]
    fn plaintext_values_are_the_plaintexts_transforms() {
        let ctx = Context::get();
        let d = 5;
        for (g, dims) in [(1usize, 1usize), (8, 1), (64, 1), (2, 4), (4, 8)] {
            let pairs = Pairs::dense(g + 3, 5);
            let lay = Layout::with_packing(&pairs, d, g, dims);
            let (runs, cd, w) = (lay.runs(), lay.cipher_dims(), lay.chunk);
            let mut prg = Prg::new(&Seed([7; 32]), g as u64);
            let x = prg.vec(lay.n * d);
            let vals = plaintext_values(ctx, &lay, &x);
            for h in 0..lay.n.div_ceil(g) {
                for c in 0..cd {
                    // Row h g + i, dimension c D + k at coefficient (i D + D - 1 - k) w.
                    let mut coeffs = vec![0i64; N];
                    for i in 0..g {
                        for k in 0..dims {
                            let (row, dim) = (h * g + i, c * dims + k);
                            if row < lay.n && dim < d {
                                coeffs[(i * dims + dims - 1 - k) * w] = x[row * d + dim] as i64;
                            }
                        }
                    }
                    let mut p = ctx.small(L, &coeffs);
                    ctx.forward(&mut p);
                    for l in 0..L {
                        for (o, v) in p[l * N..(l + 1) * N].iter().enumerate() {
                            let r = o / w;
                            assert_eq!(
                                *v,
                                vals[((h * L + l) * runs + r) * cd + c],
                                "g {g} D {dims} h {h} c {c} l {l} output {o}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// One evaluation of an encryptor's ciphertexts of `y` on `x`, as the encryptor sees it:
    /// the returned payload and its key.
    fn view(x: &[u64], y: &[u64], d: usize, hard: Hardening) -> (Vec<u64>, SecretKey, Vec<u64>) {
        let ctx = Context::get();
        let pairs = Pairs::dense(x.len() / d, y.len() / d);
        let lay = Layout::with_group(&pairs, d, 8);
        let enc = encrypt(ctx, &lay, y);
        let values = plaintext_values(ctx, &lay, x);
        let mut payload = Vec::new();
        let masks = evaluate_with(ctx, &lay, &values, &enc.message, 1, hard, |b0, batch| {
            assert_eq!(payload.len(), b0 * 2 * OUT_L * N);
            payload.extend_from_slice(&batch);
        })
        .unwrap();
        (payload, enc.key, masks)
    }

    /// Fraction of the returned `a` part's residues equal to zero.
    fn zero_share(payload: &[u64]) -> f64 {
        let a = &payload[..OUT_L * N];
        a.iter().filter(|&&v| v == 0).count() as f64 / a.len() as f64
    }

    #[test]
    fn the_encryptor_cannot_tell_a_zero_share_by_the_returned_a_part() {
        let y = vec![12345u64; 8];
        // Control: without re-randomisation, a zero share returns a = 0 (and a nonzero one
        // does not): the a part alone gives the evaluator's share away.
        let bare = Hardening {
            rerandomize: false,
            flood: true,
        };
        assert_eq!(zero_share(&view(&[0; 8], &y, 1, bare).0), 1.0);
        assert!(zero_share(&view(&[5; 8], &y, 1, bare).0) < 0.01);
        // With it, the a part of a zero share looks like any other.
        let (p, _, _) = view(&[0; 8], &y, 1, HARDENED);
        assert!(zero_share(&p) < 0.01);
        let mean = p[..OUT_L * N]
            .iter()
            .map(|&v| v as f64 / PRIMES_F[0])
            .sum::<f64>()
            / (OUT_L * N) as f64;
        assert!((0.45..0.55).contains(&mean), "mean residue {mean}");
    }

    const PRIMES_F: [f64; 1] = [crate::mpc::he::rlwe::PRIMES[0] as f64];

    /// Mean magnitude of the noise of the returned ciphertexts.
    fn mean_noise(payload: &[u64], key: &SecretKey) -> f64 {
        let ctx = Context::get();
        let mut total = 0.0;
        let mut count = 0;
        for block in payload.chunks_exact(2 * OUT_L * N) {
            let (a, b) = block.split_at(OUT_L * N);
            let ph = key.phase(ctx, OUT_L, a, b);
            for c in 0..N {
                let r: Vec<u64> = (0..OUT_L).map(|l| ph[l * N + c]).collect();
                total += ctx.noise(OUT_L, &r).unsigned_abs() as f64;
                count += 1;
            }
        }
        total / count as f64
    }

    #[test]
    fn the_encryptor_cannot_tell_shares_apart_by_the_noise() {
        let d = 4;
        let y: Vec<u64> = (0..8 * d as u64)
            .map(|v| v.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let small = vec![1u64; 8 * d];
        let large: Vec<u64> = (0..8 * d as u64).map(|v| (1 << 62) + v).collect();
        // Control: without flooding, the noise grows with the evaluator's share (e P).
        let bare = Hardening {
            rerandomize: true,
            flood: false,
        };
        let (ps, ks, _) = view(&small, &y, d, bare);
        let (pl, kl, _) = view(&large, &y, d, bare);
        let (ns, nl) = (mean_noise(&ps, &ks), mean_noise(&pl, &kl));
        assert!(nl > 100.0 * ns, "control: noise {ns} vs {nl}");
        // With flooding, both are the flood's, within sampling error.
        let (ps, ks, _) = view(&small, &y, d, HARDENED);
        let (pl, kl, _) = view(&large, &y, d, HARDENED);
        let (ns, nl) = (mean_noise(&ps, &ks), mean_noise(&pl, &kl));
        assert!((nl / ns - 1.0).abs() < 0.05, "flooded: noise {ns} vs {nl}");
        // And it stays far below what decryption tolerates (Q' / 2^65).
        assert!(nl < 2f64.powi(94), "noise {nl}");
        assert!(nl > 2f64.powi(70), "the flood is there: {nl}");
    }

    #[test]
    fn the_decrypted_results_are_masked() {
        // Results for a zero share decrypt to the masks: uniform words, the evaluator's share
        // their negation.
        let d = 2;
        let (p, key, masks) = view(&[0; 16], &[7; 16], d, HARDENED);
        let ctx = Context::get();
        let vals = decrypt(ctx, &key, &to_results(ctx, &p), 1).unwrap();
        assert_eq!(vals, masks);
        let ones: u32 = vals.iter().map(|v| v.count_ones()).sum();
        let ratio = ones as f64 / (64 * vals.len()) as f64;
        assert!((0.49..0.51).contains(&ratio), "bit ratio {ratio}");
    }

    #[test]
    fn malformed_messages_are_refused_naming_the_peer() {
        let ctx = Context::get();
        let pairs = Pairs::dense(3, 3);
        let lay = Layout::new(&pairs, 1).unwrap();
        let enc = encrypt(ctx, &lay, &[1, 2, 3]);
        let values = plaintext_values(ctx, &lay, &[4, 5, 6]);
        let mut bad = enc.message.clone();
        // The first residue of ciphertext 0 (after the public key's rows), all ones.
        bad[8 + L * packed_words(N as u64, RESIDUE_BITS) as usize] |= (1 << RESIDUE_BITS) - 1;
        let err = evaluate(ctx, &lay, &values, &bad, 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("server 1") && err.contains("not a residue"),
            "{err}"
        );
        let (payload, _) = evaluate(ctx, &lay, &values, &enc.message, 1).unwrap();
        let mut results = unpack_results(&payload, lay.shape().values_back() as usize);
        results[7] = 1 << (RESULT_BITS - 64);
        let err = decrypt(ctx, &enc.key, &results, 0).unwrap_err().to_string();
        assert!(
            err.contains("server 0") && err.contains("exceeds 96 bits"),
            "{err}"
        );
        // A round of the wrong length.
        let party =
            CrossProducts::new(0, 2, Arc::new(lay.clone()), pairs, vec![1; 3], vec![2; 3]).unwrap();
        let Step::Send(party, msg) = party.start().unwrap() else {
            panic!("a broadcast")
        };
        let err = match party.receive(vec![msg, vec![0; 3]]) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a short message was accepted"),
        };
        assert!(err.contains("server 1"), "{err}");
    }

    #[test]
    fn results_switched_to_96_bits_decrypt_and_pack() {
        // The flooded results of a real evaluation, switched: they decrypt to the same values,
        // with the phase's distance to them far below the decoder's 2^31.
        let (x, y): (Vec<u64>, Vec<u64>) = ((1..=24).collect(), (7..31).collect());
        let (p, key, _) = view(&x, &y, 3, HARDENED);
        let ctx = Context::get();
        // Decrypted at the three primes, as before the switch.
        let mut level3 = Vec::new();
        for block in p.chunks_exact(2 * OUT_L * N) {
            let (a, b) = block.split_at(OUT_L * N);
            let ph = key.phase(ctx, OUT_L, a, b);
            for c in 0..N {
                let r: Vec<u64> = (0..OUT_L).map(|l| ph[l * N + c]).collect();
                level3.push(ctx.decode(OUT_L, &r).0);
            }
        }
        let results = to_results(ctx, &p);
        assert_eq!(decrypt(ctx, &key, &results, 1).unwrap(), level3);
        let wide = |w: &[u64]| -> Vec<u128> {
            w.chunks_exact(2)
                .map(|q| q[0] as u128 | (q[1] as u128) << 64)
                .collect()
        };
        let (a, b) = results[..4 * N].split_at(2 * N);
        let ph = key.phase_pow2(ctx, &wide(a), &wide(b));
        let worst = ph
            .iter()
            .zip(&level3)
            .map(|(p, v)| ((p.wrapping_sub((*v as u128) << 32) << 32) as i128 >> 32).unsigned_abs())
            .max()
            .unwrap();
        assert!(worst < 1 << 27, "noise after the switch: {worst}");
        // 96 bits each on the wire.
        let packed = pack_results(&results);
        assert_eq!(packed.len() * 64, results.len() / 2 * 96);
        assert_eq!(unpack_results(&packed, results.len() / 2), results);
    }

    #[test]
    fn residues_travel_in_54_bits() {
        let mut prg = Prg::new(&Seed([11; 32]), 0);
        let p = crate::mpc::he::rlwe::PRIMES[0];
        let mut v: Vec<u64> = (0..3 * N).map(|_| prg.next_u64() % p).collect();
        v[5] = p - 1;
        v[N] = 0;
        let packed = pack(&v, RESIDUE_BITS);
        assert_eq!(
            packed.len() as u64,
            packed_words(v.len() as u64, RESIDUE_BITS)
        );
        assert_eq!(packed.len() * 64, v.len() * 54);
        assert_eq!(unpack(&packed, v.len(), RESIDUE_BITS), v);
        // A packed word that decodes to a non-residue is refused by the checks that follow.
        let mut bad = packed.clone();
        bad[0] |= (1u64 << 54) - 1;
        let back = unpack(&bad, v.len(), RESIDUE_BITS);
        let err = Context::get()
            .check_residues(&back[..N], 1, "ciphertext 0")
            .unwrap_err();
        assert!(err.to_string().contains("not a residue"), "{err}");
    }

    #[test]
    fn every_row_length_up_to_the_limit_fits_the_noise_budget() {
        let pairs = Pairs::dense(1, 1);
        for g in [1usize, 8, MAX_GROUP] {
            let mut lay = Layout::with_group(&pairs, MAX_D, g);
            assert!(flood_bits(&lay).is_ok(), "group {g}");
            lay.d = 1;
            assert!(flood_bits(&lay).is_ok(), "group {g}, d = 1");
        }
        // The margin grows with the number of results: at the widest rows, as many blocks as the
        // work bound of the dealer-free source allows (2^20 / ciphertexts per chunk) fit in
        // groups of 8 (not 64: `Layout::new` then takes smaller groups), 2^20 do not.
        let mut lay = Layout::with_group(&pairs, MAX_D, 8);
        lay.blocks = vec![(0, 0); (1 << 20) / MAX_D];
        assert!(flood_bits(&lay).is_ok());
        lay.blocks = vec![(0, 0); 1 << 20];
        assert!(flood_bits(&lay).is_err());
        assert!(Layout::new(&pairs, MAX_D + 1).is_err());
    }
}
