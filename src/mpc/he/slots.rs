//! Shares modulo a prime `T` of `<Z^t_p, Z^s_q>` for a list of pairs of rows `(q, p)`, one slot
//! per pair and dimension: the products follow the pairs, not a dense grid.
//!
//! **Slots.** With a plaintext modulus `T` prime and `1 mod 2N`, `Z_T[X] / (X^N + 1)` is `N`
//! copies of `Z_T` (the negacyclic NTT modulo `T`: a polynomial's evaluations at the `N`
//! primitive `2N`-th roots of unity), and the product of two polynomials is the slot-wise product
//! of their evaluations. Server `s` (the *encryptor*) puts its share of the rows that head some
//! pair (the *slot rows*) into the slots of ciphertexts, one ciphertext per group of `N` slot rows
//! and dimension `k`: slot `j` of ciphertext `(c, k)` holds `Z^s[row_cj, k]`. Another server `t`
//! (the *evaluator*) multiplies ciphertext `(c, k)` by a plaintext whose slot `j` holds
//! `Z^t[p, k]` for the `r`-th partner `p` of `row_cj` (round `r`), and sums over `k`: slot `j` of
//! block `(c, r)` is then `<Z^t_p, Z^s_row_cj>`, so one returned ciphertext holds up to `N`
//! useful products and every pair costs `d` slot products, whatever rows the pairs touch. The
//! price is that each (block, dimension) plaintext is new: the evaluator gathers it, takes it to
//! coefficients (an inverse NTT modulo `T`) and to the ciphertext primes (`L - 1` forward NTTs:
//! at the prime `T` itself the slots are the evaluations), where the coefficient-packed
//! products ([`super::product`]) transform nothing but only fill blocks that the pairs make
//! dense.
//!
//! **Plan** ([`SlotPlan`]). Slot rows are sorted by their number of pairs (most first) and cut
//! into ciphertexts of `N`; a ciphertext has as many rounds (blocks) as its first row has pairs.
//! For the pairs of two row sets (`X` and `Y`, stacked as `Z = [X; Y]`),
//! [`orient`](super::orient::orient) heads each pair by one endpoint, so that no row heads more
//! than twice the candidates per row ([`max_blocks`](super::orient::max_blocks)) and the plan
//! takes few blocks (loads balanced by a flow): the cross term `<X^t_i, Y^s_j>`
//! comes from slot row `Y_j` and the term `<Y^t_j, X^s_i>` from slot row `X_i`, and summed over
//! every ordered pair of servers both give `sum_{s != t} <X^s_i, Y^t_j>`.
//!
//! **Scheme.** The ciphertexts are those of [`super::rlwe`] with the message scaled by the exact
//! `Q / T`, rounded ([`Codec::scale`]): a plaintext product adds `(e + 1/2) ||P||_1` to the
//! noise, `||P||_1 <= N (T - 1) / 2` for the centred lift of a dense plaintext. `T` is the largest
//! prime below `2^47` that is `1 mod 2N`: small enough that the sum over `d <= 2,048` dimensions,
//! divided by the dropped prime and flooded ([`super::harden`]), leaves room below `Q' / 2T` for
//! [`super::harden::STAT_BITS`] plus the log of the flooded coefficients, and large enough for
//! values of 46 bits (the bilinear form's results are below `2^40`). The ciphertext primes are
//! their own ([`super::rlwe::SLOT_PRIMES`]: `T` itself and three below `2^50`), so that every
//! transform runs vectorised ([`super::ntt`]). At the prime `T` a plaintext modulo `T` is
//! already in the evaluation domain (its slot values), so a plaintext costs an inverse
//! transform modulo `T` and three forward transforms (four where the plaintext prime is another
//! of [`CRT_PRIMES`]).
//!
//! **What each server learns.** As for the coefficient-packed products: the evaluator sees
//! ciphertexts under a key it does not know; the encryptor decrypts a re-randomised and flooded
//! ciphertext whose slots carry the evaluator's uniform mask `R` (the evaluator keeps `-R`), so
//! its view is uniform slots and noise independent of the evaluator's share (tests below, with
//! controls that drop each part).
//!
//! Semi-honest, like [`super::product`]: an encryptor that sends malformed ciphertexts can make
//! the flooding insufficient.

use crate::error::{Error, PeerName, Result};
use crate::mpc::he::harden::{
    HARDENED, Hardening, MAX_PEERS, OUT_L, flood_bits_over, noise_bound, rerandomize_drop_flood,
    returned_modulus_bits,
};
use crate::mpc::he::modulus::Modulus;
use crate::mpc::he::ntt::NttTables;
use crate::mpc::he::orient::{blocks_of, heads_by_load};
use crate::mpc::he::rlwe::{
    Context, ETA, EncryptBuffers, L, N, PK_STREAM, SLOT_PRIMES, Sampler, SecretKey, product_words,
};
use crate::mpc::he::wire::{check_rows, pack, pack_into, packed_words, unpack, unpack_into};
use crate::mpc::prg::Seed;
use crate::mpc::protocol::{Protocol, Step, check_lengths};
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};

/// The plaintext modulus: the largest prime below `2^47` that is `1 mod 2N`; also the first
/// ciphertext prime ([`SLOT_PRIMES`]).
pub const T: u64 = 0x7fff_fffe_c001;
const _: () = assert!(SLOT_PRIMES[0] == T);

/// The plaintext moduli of the runs that [`super::crt`] combines: the five largest primes below
/// `2^47` that are `1 mod 2N`, [`T`] first (their product is above `2^234.99`). Every one is at
/// most `T`, so the noise bounds computed for `T` hold for all.
pub const CRT_PRIMES: [u64; 5] = [
    T,
    0x7fff_fffc_8001,
    0x7fff_fffb_4001,
    0x7fff_fff0_0001,
    0x7fff_ffef_c001,
];

/// Largest row length accepted (the flooding noise's bound grows with it).
pub const MAX_D: usize = 2048;

/// Bits of a residue on the wire (the slot primes are below `2^50`).
pub const SLOT_RESIDUE_BITS: u32 = 50;

/// Words of one returned block as sent (`a` and `b` at the returned primes).
pub fn block_words() -> usize {
    packed_words((2 * OUT_L * N) as u64, SLOT_RESIDUE_BITS) as usize
}

/// Dimensions whose peer ciphertexts an evaluator prepares at once (16 MiB per peer).
pub const PREP_BATCH: usize = 16;

/// An idle slot in a block.
const NONE: u32 = u32::MAX;

/// The slot encoding modulo a plaintext prime `t` ([`T`] or another of [`CRT_PRIMES`]) and the
/// scaling between `Z_t` and the ciphertext modulus.
pub struct Codec {
    t: u64,
    ntt: NttTables,
    /// Per level `l` (index `l - 1`).
    levels: Vec<Scale>,
}

/// The constants of [`Codec::scale`] at one level `l`: `floor(Q_l / t) mod p_i` for each prime
/// with its Shoup quotient, `Q_l mod t` and its quotient `floor((Q_l mod t) 2^64 / t)`.
struct Scale {
    q_div: Vec<(u64, u64)>,
    q_mod: u64,
    q_mod_quotient: u64,
}

impl Codec {
    /// The shared codec modulo [`T`] (built once).
    pub fn get() -> &'static Codec {
        Codec::crt(0)
    }

    /// The shared codec modulo `CRT_PRIMES[i]` (built once).
    pub fn crt(i: usize) -> &'static Codec {
        static CODECS: [OnceLock<Codec>; CRT_PRIMES.len()] =
            [const { OnceLock::new() }; CRT_PRIMES.len()];
        CODECS[i].get_or_init(|| Codec::new(CRT_PRIMES[i]))
    }

    /// The plaintext prime.
    pub fn t(&self) -> u64 {
        self.t
    }

    fn new(t: u64) -> Codec {
        let primes = Context::slots().primes();
        let levels = (1..=L)
            .map(|l| {
                // Q_l in words, then divided by t (t < 2^64, so each step fits 128 bits).
                let q = product_words(&primes[..l]);
                let (mut quotient, mut rem) = ([0u64; L], 0u128);
                for w in (0..L).rev() {
                    let cur = (rem << 64) | q[w] as u128;
                    quotient[w] = (cur / t as u128) as u64;
                    rem = cur % t as u128;
                }
                let q_div = primes[..l]
                    .iter()
                    .map(|&p| {
                        let m = Modulus::new(p);
                        let r = quotient.iter().rev().fold(0u64, |acc, &w| {
                            m.reduce_wide(((acc as u128) << 64) | w as u128)
                        });
                        (r, m.shoup(r))
                    })
                    .collect();
                let q_mod = rem as u64;
                Scale {
                    q_div,
                    q_mod,
                    q_mod_quotient: ((rem << 64) / t as u128) as u64,
                }
            })
            .collect();
        Codec {
            t,
            ntt: NttTables::new(t, N),
            levels,
        }
    }

    /// Slot values (below `T`) to the coefficients of their polynomial, in place.
    pub fn to_coefficients(&self, slots: &mut [u64]) {
        self.ntt.inverse(slots);
    }

    /// Coefficients (below `T`) to slot values, in place.
    pub fn to_slots(&self, coefficients: &mut [u64]) {
        self.ntt.forward(coefficients);
    }

    /// `round(Q_l m / t) mod p_i` for each prime `i` of level `l`, into `out[i]` (`m < t`, `t`
    /// this codec's prime): `floor(Q_l / t) m + round((Q_l mod t) m / t)`.
    ///
    /// No division: with `r = Q_l mod t` and `r' = floor(r 2^64 / t)`, `e = floor(m r' / 2^64)`
    /// is `floor(m r / t)` or one less (Shoup's bound), so `m r - e t` lies in `[0, 2t)` and is
    /// exact in wrapping 64-bit arithmetic (`t < 2^47`); adding `floor(t / 2)` and counting the
    /// multiples of `t` it reaches rounds. `m < t <= p_i` and the rounded part is below `t`, so
    /// neither needs reducing, and the products by `floor(Q_l / t) mod p_i` take its Shoup
    /// quotient. Where `t` is a ciphertext prime ([`T`]), `r = 0`: the scaling is exact.
    #[inline]
    pub fn scale(&self, ctx: &Context, l: usize, m: u64, out: &mut [u64]) {
        let sc = &self.levels[l - 1];
        let t = self.t;
        debug_assert!(m < t);
        let e = ((m as u128 * sc.q_mod_quotient as u128) >> 64) as u64;
        let rest = m.wrapping_mul(sc.q_mod).wrapping_sub(e.wrapping_mul(t)) + t / 2;
        let frac = e + (rest >= t) as u64 + (rest >= 2 * t) as u64;
        for (o, (md, &(w, ws))) in out[..l].iter_mut().zip(ctx.moduli().zip(&sc.q_div)) {
            *o = md.add(md.mul_shoup(m, w, ws), frac);
        }
    }

    /// `round(T x / Q_l) mod T` for `x` given by its residues at level `l`, from the 128-bit
    /// fraction `x / Q_l mod 1` (off by less than `2^-70`, so by less than `2^-20` after the
    /// product by `T`).
    #[inline]
    pub fn unscale(&self, ctx: &Context, l: usize, residues: &[u64]) -> u64 {
        let f = ctx.fraction(l, residues);
        let t = self.t as u128;
        let hi = t * (f >> 64) + ((t * (f as u64) as u128) >> 64);
        let v = ((hi + (1u128 << 63)) >> 64) as u64;
        if v >= self.t { v - self.t } else { v }
    }
}

/// A uniform value modulo `t` (rejection from words of `t`'s bits: for [`CRT_PRIMES`], accepts
/// with probability above `1 - 2^-27`).
fn uniform_mod_t(s: &mut Sampler, t: u64) -> u64 {
    loop {
        let v = s.word() >> t.leading_zeros();
        if v < t {
            return v;
        }
    }
}

/// How an evaluator masks the slots it returns.
#[derive(Clone)]
pub enum Masking {
    /// Uniform modulo the plaintext prime, drawn fresh; the evaluator's share is their negation
    /// and the protocol's output is shares modulo the prime.
    Uniform,
    /// The residues of integers uniform below the bound (`2^`[`INTEGER_MASK_BITS`], or with
    /// two servers the product of [`super::crt`]'s primes), drawn from this seed
    /// ([`integer_mask`]), the same integers in every run of [`super::crt`]; the protocol's
    /// output is the decrypted sums alone (the caller takes the masks out after combining).
    Integer(Seed, [u64; MASK_WORDS]),
}

impl std::fmt::Debug for Masking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Masking::Uniform => "Uniform",
            Masking::Integer(..) => "Integer(..)",
        })
    }
}

/// Bits of [`Masking::Integer`]'s masks with three or four servers (two take them below the
/// primes' product, [`super::crt`]): three peers' masks plus values below `2^139` (rows of up
/// to [`MAX_D`] values below `2^64`) stay below the product of [`CRT_PRIMES`], and each value
/// moves its mask's distribution by at most `2^139 / 2^232 = 2^-93` (`2^-61` over `2^32` slots).
pub const INTEGER_MASK_BITS: u32 = 232;

/// Words of an integer mask (and of the integers [`super::crt`] combines).
pub const MASK_WORDS: usize = 4;

/// The integer masks of evaluator-side block `block` for the peer `from`, [`N`] slots, as
/// [`MASK_WORDS`] words each (least significant first), uniform below `bound` (above 1): words
/// cut to the bits of `bound - 1`, redrawn while not below `bound` (never for a power of two).
pub fn integer_mask(
    seed: &Seed,
    from: usize,
    block: usize,
    bound: &[u64; MASK_WORDS],
) -> Vec<[u64; MASK_WORDS]> {
    let mut s = Sampler::new(seed, ((from as u64) << 40) | block as u64);
    // bound - 1, and the mask of its bits per word.
    let mut top = *bound;
    for w in top.iter_mut() {
        let (x, borrow) = w.overflowing_sub(1);
        *w = x;
        if !borrow {
            break;
        }
    }
    let high = top.iter().rposition(|&w| w != 0).unwrap_or(0);
    let cut: [u64; MASK_WORDS] = std::array::from_fn(|w| match w.cmp(&high) {
        std::cmp::Ordering::Less => u64::MAX,
        std::cmp::Ordering::Equal => u64::MAX >> top[w].leading_zeros(),
        std::cmp::Ordering::Greater => 0,
    });
    (0..N)
        .map(|_| {
            loop {
                let drawn = [s.word(), s.word(), s.word(), s.word()];
                let x: [u64; MASK_WORDS] = std::array::from_fn(|w| drawn[w] & cut[w]);
                // x <= bound - 1.
                if x.iter().rev().cmp(top.iter().rev()).is_le() {
                    break x;
                }
            }
        })
        .collect()
}

/// `k` additive shares modulo [`T`] of `z` (values below `T`), drawn from `prg` (tests and
/// benchmarks; a job's shares come from its parties).
pub fn share_mod_t(prg: &mut crate::mpc::prg::Prg, k: usize, z: &[u64]) -> Vec<Vec<u64>> {
    let m = Modulus::new(T);
    let mut shares: Vec<Vec<u64>> = (0..k.saturating_sub(1))
        .map(|_| (0..z.len()).map(|_| prg.next_u64() % T).collect())
        .collect();
    let last = z
        .iter()
        .enumerate()
        .map(|(i, &v)| shares.iter().fold(v, |acc, s| m.sub(acc, s[i])))
        .collect();
    shares.push(last);
    shares
}

/// One ciphertext's slot rows and its blocks.
#[derive(Clone, Debug)]
struct Cipher {
    /// The row in each slot (at most `N`).
    rows: Vec<u32>,
    /// Its first block.
    first: usize,
    /// Its blocks (rounds): the most pairs any of its rows heads.
    rounds: usize,
}

/// How a list of items `(slot row, partner)` maps onto ciphertexts, blocks and slots.
#[derive(Clone, Debug)]
pub struct SlotPlan {
    /// Row length.
    pub d: usize,
    /// Rows of `Z`.
    pub rows: usize,
    ciphers: Vec<Cipher>,
    /// The partner of each (block, slot), or [`NONE`].
    partners: Vec<u32>,
    /// Where each item's product lands: (block, slot).
    at: Vec<(u32, u32)>,
}

impl SlotPlan {
    /// The plan for `items` over `rows` rows of length `d`; refused if a row index is out of
    /// range or the rows are too long for the noise budget.
    pub fn new(rows: usize, d: usize, items: &[(u32, u32)]) -> Result<SlotPlan> {
        if d == 0 || d > MAX_D {
            return Err(Error::invalid(format!(
                "slot products take rows of 1 to {MAX_D} values, not {d}"
            )));
        }
        if rows >= NONE as usize || items.len() >= u32::MAX as usize {
            return Err(Error::invalid(format!(
                "slot products: {rows} rows and {} items (at most 2^32 - 1 each)",
                items.len()
            )));
        }
        let mut load = vec![0u32; rows];
        for &(q, p) in items {
            if q as usize >= rows || p as usize >= rows {
                return Err(Error::invalid(format!(
                    "slot products: the item ({q}, {p}) is outside the {rows} rows"
                )));
            }
            load[q as usize] += 1;
        }
        let heads = heads_by_load(&load);
        // The blocks (each ciphertext's busiest row's load), checked before anything their size.
        let blocks = blocks_of(&heads, &load);
        let mut plan = SlotPlan {
            d,
            rows,
            ciphers: Vec::new(),
            partners: Vec::new(),
            at: Vec::new(),
        };
        plan.flood_bits_for(blocks)?;
        let mut place = vec![(0u32, 0u32); rows];
        let mut ciphers = Vec::with_capacity(heads.len().div_ceil(N));
        let mut first = 0;
        for (c, part) in heads.chunks(N).enumerate() {
            for (j, &r) in part.iter().enumerate() {
                place[r as usize] = (c as u32, j as u32);
            }
            let rounds = load[part[0] as usize] as usize;
            ciphers.push(Cipher {
                rows: part.to_vec(),
                first,
                rounds,
            });
            first += rounds;
        }
        let mut partners = vec![NONE; first * N];
        let mut next = vec![0u32; rows];
        let at = items
            .iter()
            .map(|&(q, p)| {
                let (c, j) = place[q as usize];
                let block = ciphers[c as usize].first + next[q as usize] as usize;
                next[q as usize] += 1;
                partners[block * N + j as usize] = p;
                (block as u32, j)
            })
            .collect();
        plan.ciphers = ciphers;
        plan.partners = partners;
        plan.at = at;
        tracing::info!(
            items = items.len(),
            blocks = plan.blocks(),
            ciphers = plan.ciphers.len(),
            rounds = ?plan.ciphers.iter().map(|c| c.rounds).collect::<Vec<_>>(),
            "slot plan"
        );
        Ok(plan)
    }

    /// Returned ciphertexts (blocks) per evaluator and encryptor.
    pub fn blocks(&self) -> usize {
        self.partners.len() / N
    }

    /// Items.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// Each item's value from per-slot values (`N` per block), in the items' order.
    pub fn gather<V: Copy>(&self, per_slot: &[V]) -> Vec<V> {
        self.at
            .iter()
            .map(|&(b, j)| per_slot[b as usize * N + j as usize])
            .collect()
    }

    /// Slot ciphertexts one encryptor sends (one per group of `N` slot rows and dimension).
    pub fn ciphertexts(&self) -> usize {
        self.ciphers.len() * self.d
    }

    /// Plaintexts one evaluator builds per encryptor (one per block and dimension: an inverse NTT
    /// modulo `T` and `L - 1` forward NTTs each, `L` modulo another plaintext prime).
    pub fn plaintexts(&self) -> u64 {
        self.blocks() as u64 * self.d as u64
    }

    /// The most rounds of a ciphertext.
    pub fn max_rounds(&self) -> usize {
        self.ciphers.iter().map(|c| c.rounds).max().unwrap_or(0)
    }

    /// Words of one server's ciphertexts as sent: two seeds, the public key and every slot
    /// ciphertext's `b`, in 50-bit residues.
    pub fn words_in(&self) -> u64 {
        8 + packed_words((L * N) as u64, SLOT_RESIDUE_BITS) * (1 + self.ciphertexts() as u64)
    }

    /// Words of the results one evaluator returns to one encryptor: per block `a` and `b` at
    /// the returned primes, in 50-bit residues.
    pub fn words_back(&self) -> u64 {
        block_words() as u64 * self.blocks() as u64
    }

    /// Bits of the flooding noise, or an error if the returned modulus cannot hold it with
    /// room for decryption.
    pub fn flood_bits(&self) -> Result<u32> {
        self.flood_bits_for(self.blocks())
    }

    /// [`SlotPlan::flood_bits`] for `blocks` blocks.
    fn flood_bits_for(&self, blocks: usize) -> Result<u32> {
        flood_bits_at(self.d, blocks)
    }
}

/// The flooding noise's bits for `blocks` blocks of rows of `d` values, or the refusal if the
/// returned modulus cannot hold it with room for decryption ([`SlotPlan::flood_bits`]).
pub(crate) fn flood_bits_at(d: usize, blocks: usize) -> Result<u32> {
    let eta = ETA as f64;
    // Sum over the dimensions of (e + rounding) ||P||_1, ||P||_1 <= N (T - 1) / 2.
    let product = d as f64 * (eta + 0.5) * N as f64 * ((T - 1) / 2) as f64;
    let coefficients = N as f64 * blocks.max(1) as f64 * MAX_PEERS as f64;
    let bits = flood_bits_over(noise_bound(Context::slots(), product), coefficients);
    // Flood plus bound (below 2^(bits + 1)) under Q' / 2T, with 2 bits for the decoder.
    if bits as f64 + 1.0 + (2.0 * T as f64).log2() + 2.0 > returned_modulus_bits(Context::slots()) {
        return Err(Error::invalid(format!(
            "slot products of rows of {d} in {blocks} blocks: the flooding noise ({bits} bits) \
             does not fit the returned modulus"
        )));
    }
    Ok(bits)
}

/// One server's key and the wire form of its slot ciphertexts.
struct Encrypted {
    key: SecretKey,
    /// Two seeds (public key, ciphertexts), then the public key's `b` and every ciphertext's `b`
    /// (NTT domain), `N` residues a row, packed.
    message: Vec<u64>,
}

/// `z` (`rows x d`, row-major) column-major (`d x rows`), in parallel strips of 64 columns.
fn columns(z: &[u64], rows: usize, d: usize) -> Vec<u64> {
    const TILE: usize = 64;
    let mut zc = vec![0u64; z.len()];
    zc.par_chunks_mut(TILE * rows.max(1))
        .enumerate()
        .for_each(|(b, out)| {
            let k0 = b * TILE;
            let width = out.len() / rows.max(1);
            for r0 in (0..rows).step_by(TILE) {
                for r in r0..(r0 + TILE).min(rows) {
                    let row = &z[r * d + k0..r * d + k0 + width];
                    for (j, &v) in row.iter().enumerate() {
                        out[j * rows + r] = v;
                    }
                }
            }
        });
    zc
}

/// Encrypts this server's share `zc` (column-major, `d x rows`, below `T`) in the plan's slots.
fn encrypt(ctx: &Context, codec: &Codec, plan: &SlotPlan, zc: &[u64]) -> Encrypted {
    let mut sampler = Sampler::fresh();
    let key = SecretKey::generate(ctx, &mut sampler);
    let (pk_seed, ct_seed, noise_seed) = (Seed::random(), Seed::random(), Seed::random());
    let pk = key.public_key(ctx, &mut sampler, &pk_seed);
    let d = plan.d;
    // Two seeds, the public key, then every ciphertext's `b`, each written in place by the
    // thread that encrypts it, with buffers reused from one ciphertext to the next.
    let mut message = vec![0u64; plan.words_in() as usize];
    let row = packed_words((L * N) as u64, SLOT_RESIDUE_BITS) as usize;
    message[..4].copy_from_slice(&pk_seed.to_words());
    message[4..8].copy_from_slice(&ct_seed.to_words());
    let (head, cts) = message.split_at_mut(8 + row);
    pack_into(&pk, SLOT_RESIDUE_BITS, &mut head[8..]);
    cts.par_chunks_mut(row).enumerate().for_each_init(
        || (vec![0u64; N], EncryptBuffers::new(ctx)),
        |(msg, buffers), (t, out)| {
            let (c, k) = (t / d, t % d);
            let column = &zc[k * plan.rows..(k + 1) * plan.rows];
            msg.fill(0);
            for (o, &r) in msg.iter_mut().zip(&plan.ciphers[c].rows) {
                *o = column[r as usize];
            }
            codec.to_coefficients(msg);
            let mut s = Sampler::new(&noise_seed, t as u64);
            let scale = |v, out: &mut [u64]| codec.scale(ctx, L, v, out);
            key.encrypt_scaled_into(ctx, &mut s, (&ct_seed, 1 + t as u64), msg, scale, buffers);
            pack_into(&buffers.b, SLOT_RESIDUE_BITS, out);
        },
    );
    Encrypted { key, message }
}

/// A peer's slot ciphertexts as sent (length checked), with every residue checked.
struct Peer<'a> {
    message: &'a [u64],
    ct_seed: Seed,
    pk: (Vec<u64>, Vec<u64>),
}

impl<'a> Peer<'a> {
    fn parse(ctx: &Context, from: usize, message: &'a [u64]) -> Result<Peer<'a>> {
        // The length first (two seeds, then whole rows), then every residue.
        check_rows(ctx, message, 8, SLOT_RESIDUE_BITS, from, "slot ciphertext")?;
        let seed = |at: usize| Seed::from_words(message[at..at + 4].try_into().expect("4 words"));
        let (pk_seed, ct_seed) = (seed(0), seed(4));
        let peer = Peer {
            message,
            ct_seed,
            pk: (ctx.uniform(L, &pk_seed, PK_STREAM), Vec::new()),
        };
        let mut pk_b = vec![0u64; L * N];
        peer.rows_into(0, &mut pk_b);
        Ok(Peer {
            pk: (peer.pk.0, pk_b),
            ..peer
        })
    }

    fn row_words() -> usize {
        packed_words(N as u64, SLOT_RESIDUE_BITS) as usize
    }

    /// Rows `r, r + 1, ...` of the message (`L` rows of the public key, then `L` per
    /// ciphertext) into `out` (`N` residues each).
    fn rows_into(&self, r: usize, out: &mut [u64]) {
        let w = Peer::row_words();
        let rows = out.len() / N;
        unpack_into(
            &self.message[8 + r * w..8 + (r + rows) * w],
            SLOT_RESIDUE_BITS,
            out,
        );
    }

    /// Ciphertext `t` into `ct`: `a` (from the seed), `b`, and their 52-bit quotients (NTT
    /// domain; none on the double lanes), `ct`'s buffers reused.
    fn ciphertext_into(&self, ctx: &Context, t: usize, ct: &mut [Vec<u64>; 4]) {
        let [a, aq, b, bq] = ct;
        a.resize(L * N, 0);
        b.resize(L * N, 0);
        ctx.uniform_into(&self.ct_seed, 1 + t as u64, a);
        self.rows_into(L * (1 + t), b);
        let quotients = |v: &[u64], q: &mut Vec<u64>| {
            q.clear();
            for (i, row) in v.chunks_exact(N).enumerate() {
                q.extend_from_slice(&ctx.ntt[i].mul_add_quotients(row));
            }
        };
        quotients(a, aq);
        quotients(b, bq);
    }
}

/// Evaluates peers' slot ciphertexts (`(from, message as sent)`, lengths checked) on this
/// server's share `zc` (column-major, `d x rows`), each plaintext built once for all of them: each peer's payload to return
/// ([`SlotPlan::words_back`] words) and this server's masks summed over the peers (`N` slot
/// values per block; its share is their negation).
#[allow(clippy::too_many_arguments)]
fn evaluate(
    ctx: &Context,
    codec: &Codec,
    plan: &SlotPlan,
    zc: &[u64],
    messages: &[(usize, &[u64])],
    hard: Hardening,
    masking: &Masking,
) -> Result<(Vec<Vec<u64>>, Vec<u64>)> {
    let t = codec.t;
    let (n, d) = (N, plan.d);
    let peers: Vec<Peer> = messages
        .iter()
        .map(|&(from, m)| Peer::parse(ctx, from, m))
        .collect::<Result<_>>()?;
    let np = peers.len();
    let bits = plan.flood_bits()?;
    let fresh = Seed::random();
    let block_words = block_words();
    let mut payloads = vec![vec![0u64; plan.words_back() as usize]; np];
    let mut masks = vec![0u64; plan.blocks() * n];
    let tm = Modulus::new(t);
    let half = t / 2;
    let part = 2 * L * n;
    // The ciphertext prime equal to the plaintext prime, if any (`T`: [`SLOT_PRIMES`]'s first),
    // first, then the others.
    let at_t = ctx.primes().iter().position(|&p| p == t);
    let primes: Vec<usize> = at_t
        .into_iter()
        .chain((0..L).filter(|&l| Some(l) != at_t))
        .collect();
    // The peers' ciphertexts of a batch of dimensions, buffers reused from batch to batch.
    let mut batch: Vec<Vec<[Vec<u64>; 4]>> = (0..PREP_BATCH.min(d))
        .map(|_| (0..np).map(|_| Default::default()).collect())
        .collect();
    for (c, cipher) in plan.ciphers.iter().enumerate() {
        let span = cipher.first..cipher.first + cipher.rounds;
        // Every round's sums over the dimensions, per peer `a` then `b`, L rows of N each (NTT
        // domain).
        let mut acc = vec![0u64; cipher.rounds * np * part];
        // The peers' ciphertexts are prepared a batch of dimensions at a time, in parallel: a
        // ciphertext's preparation is serial, and with few rounds (the norms: one) it was most
        // of the work.
        for k0 in (0..d).step_by(PREP_BATCH) {
            let k1 = (k0 + PREP_BATCH).min(d);
            batch[..k1 - k0]
                .par_iter_mut()
                .enumerate()
                .for_each(|(j, cts)| {
                    for (p, ct) in peers.iter().zip(cts.iter_mut()) {
                        p.ciphertext_into(ctx, c * d + k0 + j, ct);
                    }
                });
            for (k, cts) in (k0..k1).zip(&batch) {
                acc.par_chunks_mut(np * part)
                    .zip(plan.partners[span.start * n..span.end * n].par_chunks(n))
                    .for_each_init(
                        || (vec![0u64; n], vec![0u64; n]),
                        |(slots, lifted), (sums, partners)| {
                            let column = &zc[k * plan.rows..(k + 1) * plan.rows];
                            for (o, &p) in slots.iter_mut().zip(partners.iter()) {
                                *o = if p == NONE { 0 } else { column[p as usize] };
                            }
                            // At the prime `t` itself the plaintext's evaluations are
                            // the slot values: that prime comes first, from them as they are.
                            if at_t.is_some() {
                                lifted.copy_from_slice(slots);
                            }
                            codec.to_coefficients(slots);
                            for &l in &primes {
                                let (ntt, p) = (&ctx.ntt[l], ctx.primes()[l]);
                                if Some(l) != at_t {
                                    // The centred lift of each coefficient, modulo prime l.
                                    for (o, &v) in lifted.iter_mut().zip(slots.iter()) {
                                        *o = if v > half { p - (t - v) } else { v };
                                    }
                                    ntt.forward(lifted);
                                }
                                let r = l * n..(l + 1) * n;
                                for (sum, [a, aq, b, bq]) in
                                    sums.chunks_exact_mut(part).zip(cts.iter())
                                {
                                    let (sa, sb) = sum.split_at_mut(L * n);
                                    // The quotients, where the tables want them (none on
                                    // double lanes).
                                    let aq = aq.get(r.clone()).unwrap_or(&[]);
                                    let bq = bq.get(r.clone()).unwrap_or(&[]);
                                    let (a, b) = (&a[r.clone()], &b[r.clone()]);
                                    ntt.mul_add(&mut sa[r.clone()], lifted, a, aq);
                                    ntt.mul_add(&mut sb[r.clone()], lifted, b, bq);
                                }
                            }
                        },
                    );
            }
        }
        // Per peer and round: re-randomise, drop a prime, flood, add the mask's encoding, pack.
        // Each round's output slices, one per peer, written in place.
        let mut outs: Vec<Vec<&mut [u64]>> = (0..cipher.rounds).map(|_| Vec::new()).collect();
        for payload in payloads.iter_mut() {
            let region = &mut payload[span.start * block_words..span.end * block_words];
            for (r, chunk) in region.chunks_mut(block_words).enumerate() {
                outs[r].push(chunk);
            }
        }
        outs.into_par_iter()
            .zip(acc.par_chunks_mut(np * part))
            .zip(masks[span.start * n..span.end * n].par_chunks_mut(n))
            .enumerate()
            .for_each(|(r, ((out, sums), mask_sum))| {
                let b = span.start + r;
                for (i, ((dst, sum), peer)) in out
                    .into_iter()
                    .zip(sums.chunks_exact_mut(part))
                    .zip(&peers)
                    .enumerate()
                {
                    let mut s = Sampler::new(&fresh, ((i as u64) << 40) | b as u64);
                    let mut ret = vec![0u64; 2 * OUT_L * n];
                    let pk = (&peer.pk.0[..], &peer.pk.1[..]);
                    rerandomize_drop_flood(ctx, hard, bits, &mut s, pk, sum, &mut ret);
                    let mut coeffs: Vec<u64> = match masking {
                        Masking::Uniform => {
                            let c: Vec<u64> = (0..n).map(|_| uniform_mod_t(&mut s, t)).collect();
                            for (m, &v) in mask_sum.iter_mut().zip(&c) {
                                *m = tm.add(*m, v);
                            }
                            c
                        }
                        // The caller takes these out after combining the runs.
                        Masking::Integer(seed, bound) => {
                            integer_mask(seed, messages[i].0, b, bound)
                                .iter()
                                .map(|w| {
                                    w.iter().rev().fold(0, |acc, &x| {
                                        tm.reduce_wide(((acc as u128) << 64) | x as u128)
                                    })
                                })
                                .collect()
                        }
                    };
                    codec.to_coefficients(&mut coeffs);
                    let mut enc = [0u64; L];
                    let b2 = &mut ret[OUT_L * n..];
                    for (j, &v) in coeffs.iter().enumerate() {
                        codec.scale(ctx, OUT_L, v, &mut enc);
                        for (l, e) in enc.iter().enumerate().take(OUT_L) {
                            let m = ctx.modulus(l);
                            b2[l * n + j] = m.add(b2[l * n + j], *e);
                        }
                    }
                    dst.copy_from_slice(&pack(&ret, SLOT_RESIDUE_BITS));
                }
            });
    }
    Ok((payloads, masks))
}

/// Decrypts the blocks a peer returned (as sent, length checked) and adds their slot values into
/// `sums` (`N` per block, modulo `T`).
fn decrypt_into(
    ctx: &Context,
    codec: &Codec,
    key: &SecretKey,
    payload: &[u64],
    from: usize,
    sums: &mut [u64],
) -> Result<()> {
    let n = N;
    let block_words = block_words();
    sums.par_chunks_mut(n)
        .zip(payload.par_chunks(block_words))
        .enumerate()
        .try_for_each(|(b, (sum, words))| {
            let ret = unpack(words, 2 * OUT_L * n, SLOT_RESIDUE_BITS);
            for (i, r) in ret.chunks_exact(n).enumerate() {
                if r.iter().any(|&v| v >= ctx.primes()[i % OUT_L]) {
                    ctx.check_row(r, i % OUT_L, from, &format!("slot results, block {b}"))?;
                }
            }
            let (a, bb) = ret.split_at(OUT_L * n);
            let phase = key.phase(ctx, OUT_L, a, bb);
            let mut vals: Vec<u64> = (0..n)
                .map(|c| {
                    let r: [u64; OUT_L] = std::array::from_fn(|i| phase[i * n + c]);
                    codec.unscale(ctx, OUT_L, &r)
                })
                .collect();
            codec.to_slots(&mut vals);
            let m = Modulus::new(codec.t);
            for (s, v) in sum.iter_mut().zip(vals) {
                *s = m.add(*s, v);
            }
            Ok(())
        })
}

/// The protocol: shares modulo [`T`] of `sum over servers s != t of <Z^t_p, Z^s_q>` for every
/// item `(q, p)` of the plan, in its order (each server adds its own `<Z^s_p, Z^s_q>`); with
/// [`Masking::Integer`], the decrypted sums alone (the masks are the caller's to take out). Two
/// rounds: every server broadcasts its slot ciphertexts, then returns each peer its evaluated
/// blocks.
pub struct SlotProducts {
    me: usize,
    k: usize,
    plan: Arc<SlotPlan>,
    codec: &'static Codec,
    masking: Masking,
    state: State,
}

/// The share is held column-major from the start on (`d x rows`): both the encryption and the
/// evaluation read one dimension of many rows at a time, which row-major would scatter over the
/// whole share (a cache miss per slot on large jobs).
enum State {
    Fresh { z: Vec<u64> },
    Sent { key: SecretKey, zc: Vec<u64> },
    Returned { key: SecretKey, masks: Vec<u64> },
    Finished,
}

impl std::fmt::Debug for SlotProducts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotProducts")
            .field("me", &self.me)
            .field("k", &self.k)
            .field("t", &self.codec.t)
            .field("masking", &self.masking)
            .finish_non_exhaustive()
    }
}

impl SlotProducts {
    /// Server `me` of `k`, with its share `z` of `Z` (`rows x d`, row-major, every value below
    /// [`T`]): shares modulo [`T`], uniform masks.
    pub fn new(me: usize, k: usize, plan: Arc<SlotPlan>, z: Vec<u64>) -> Result<SlotProducts> {
        SlotProducts::with(me, k, plan, z, Codec::get(), Masking::Uniform)
    }

    /// As [`SlotProducts::new`], modulo `codec`'s prime (every value of `z` below it) with
    /// `masking`.
    pub fn with(
        me: usize,
        k: usize,
        plan: Arc<SlotPlan>,
        z: Vec<u64>,
        codec: &'static Codec,
        masking: Masking,
    ) -> Result<SlotProducts> {
        if !(2..=MAX_PEERS + 1).contains(&k) || me >= k {
            return Err(Error::invalid(format!(
                "slot products: server {me} of {k} (2 to {} servers)",
                MAX_PEERS + 1
            )));
        }
        if z.len() != plan.rows * plan.d {
            return Err(Error::invalid(
                "slot products: the share's size does not match the plan",
            ));
        }
        if z.iter().any(|&v| v >= codec.t) {
            return Err(Error::invalid(
                "slot products: a share value is not reduced modulo the plaintext prime",
            ));
        }
        Ok(SlotProducts {
            me,
            k,
            plan,
            codec,
            masking,
            state: State::Fresh { z },
        })
    }
}

impl Protocol for SlotProducts {
    type Output = Vec<u64>;

    fn start(mut self) -> Result<Step<Self>> {
        let State::Fresh { z } = std::mem::replace(&mut self.state, State::Finished) else {
            return Err(Error::invalid("slot products started twice"));
        };
        let zc = columns(&z, self.plan.rows, self.plan.d);
        drop(z);
        let enc = encrypt(Context::slots(), self.codec, &self.plan, &zc);
        self.state = State::Sent { key: enc.key, zc };
        Ok(Step::Send(self, enc.message))
    }

    fn receive(mut self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        if incoming.len() != self.k {
            return Err(Error::invalid(format!(
                "slot products: a round of {} messages for {} servers",
                incoming.len(),
                self.k
            )));
        }
        let ctx = Context::slots();
        let plan = self.plan.clone();
        let tm = Modulus::new(self.codec.t);
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Sent { key, zc } => {
                check_lengths(&incoming, plan.words_in() as usize, "slot ciphertexts")?;
                let peers: Vec<(usize, &[u64])> = incoming
                    .iter()
                    .enumerate()
                    .filter(|&(from, _)| from != self.me)
                    .map(|(from, m)| (from, &m[..]))
                    .collect();
                let (evaluated, masks) =
                    evaluate(ctx, self.codec, &plan, &zc, &peers, HARDENED, &self.masking)?;
                let mut payloads = vec![Vec::new(); self.k];
                for (&(from, _), p) in peers.iter().zip(evaluated) {
                    payloads[from] = p;
                }
                let expected = (0..self.k)
                    .map(|s| {
                        if s == self.me {
                            0
                        } else {
                            plan.words_back() as usize
                        }
                    })
                    .collect();
                self.state = State::Returned { key, masks };
                Ok(Step::SendEach(self, payloads, expected))
            }
            State::Returned { key, masks } => {
                // With integer masks the caller takes them out after combining the runs.
                let mut sums: Vec<u64> = match self.masking {
                    Masking::Uniform => masks.iter().map(|&m| tm.neg(m)).collect(),
                    Masking::Integer(..) => vec![0; masks.len()],
                };
                for (s, p) in incoming.iter().enumerate() {
                    if s == self.me {
                        continue;
                    }
                    if p.len() as u64 != plan.words_back() {
                        return Err(Error::protocol(
                            PeerName::Server(s),
                            format!(
                                "slot results: expected {} words, received {}",
                                plan.words_back(),
                                p.len()
                            ),
                        ));
                    }
                    decrypt_into(ctx, self.codec, &key, p, s, &mut sums)?;
                }
                Ok(Step::Done(plan.gather(&sums)))
            }
            State::Fresh { .. } | State::Finished => Err(Error::invalid(
                "slot products: a round arrived out of order",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::he::orient::orient;
    use crate::mpc::prg::Prg;
    use crate::mpc::protocol::run_lockstep;

    fn tm() -> Modulus {
        Modulus::new(T)
    }

    #[test]
    fn shares_are_held_column_major() {
        for (rows, d) in [(0usize, 5usize), (1, 1), (3, 130), (131, 7), (200, 65)] {
            let z: Vec<u64> = (0..(rows * d) as u64).collect();
            let zc = columns(&z, rows, d);
            for r in 0..rows {
                for k in 0..d {
                    assert_eq!(zc[k * rows + r], z[r * d + k], "rows {rows}, d {d}");
                }
            }
            assert_eq!(zc.len(), z.len());
        }
    }

    /// `k` shares modulo `T` of a random `rows x d` matrix, and the matrix.
    fn shared(prg: &mut Prg, k: usize, rows: usize, d: usize) -> (Vec<u64>, Vec<Vec<u64>>) {
        let z: Vec<u64> = (0..rows * d).map(|_| prg.next_u64() % T).collect();
        let shares = share_mod_t(prg, k, &z);
        (z, shares)
    }

    fn dot(a: &[u64], b: &[u64]) -> u64 {
        let m = tm();
        a.iter()
            .zip(b)
            .fold(0, |acc, (&x, &y)| m.add(acc, m.mul(x, y)))
    }

    /// Runs the protocol and checks every item: the outputs plus each server's own products sum
    /// to `<Z_p, Z_q>` modulo `T`.
    fn check(k: usize, rows: usize, d: usize, items: Vec<(u32, u32)>, seed: u8) {
        let mut prg = Prg::new(&Seed([seed; 32]), 0);
        let (z, shares) = shared(&mut prg, k, rows, d);
        let plan = Arc::new(SlotPlan::new(rows, d, &items).unwrap());
        let parties = shares
            .iter()
            .enumerate()
            .map(|(s, sh)| SlotProducts::new(s, k, plan.clone(), sh.clone()).unwrap())
            .collect();
        let (outs, rounds) = run_lockstep(parties).unwrap();
        assert_eq!(rounds, 2);
        let m = tm();
        for (i, &(q, p)) in items.iter().enumerate() {
            let (q, p) = (q as usize, p as usize);
            let mut sum = 0;
            for (s, sh) in shares.iter().enumerate() {
                sum = m.add(sum, outs[s][i]);
                sum = m.add(sum, dot(&sh[p * d..(p + 1) * d], &sh[q * d..(q + 1) * d]));
            }
            assert_eq!(
                sum,
                dot(&z[p * d..(p + 1) * d], &z[q * d..(q + 1) * d]),
                "k = {k}, item {i} ({q}, {p})"
            );
        }
    }

    #[test]
    fn slot_products_equal_plaintext() {
        // Rows with many partners and with few, repeated items, a row with itself (norms).
        let mut items = Vec::new();
        for p in 0..40u32 {
            items.push((3, p));
        }
        for q in 0..60u32 {
            items.push((q, (q * 7 + 1) % 60));
            items.push((q, q));
        }
        items.push((5, 9));
        items.push((5, 9));
        for k in [2, 3] {
            check(k, 60, 5, items.clone(), k as u8);
        }
    }

    #[test]
    fn slot_products_span_several_ciphertexts() {
        let rows = N + 100;
        let items: Vec<(u32, u32)> = (0..rows as u32)
            .map(|q| (q, (q * 31 + 7) % rows as u32))
            .chain((0..50).map(|p| (N as u32 + 3, p)))
            .collect();
        let plan = SlotPlan::new(rows, 2, &items).unwrap();
        assert_eq!(plan.ciphers.len(), 2);
        // The busiest row leads the first ciphertext; the rest fit one round.
        assert_eq!(plan.blocks(), 51 + 1);
        check(2, rows, 2, items, 9);
    }

    #[test]
    fn the_plan_places_every_item_once() {
        let items = orient(
            50,
            70,
            (0..50).flat_map(|i| (0..8).map(move |t| (i, (i * 5 + t * 11) % 70))),
        );
        let plan = SlotPlan::new(120, 4, &items).unwrap();
        let mut seen = std::collections::HashSet::new();
        for (&(q, p), &(b, j)) in items.iter().zip(&plan.at) {
            assert!(seen.insert((b, j)), "two items in one slot");
            assert_eq!(plan.partners[b as usize * N + j as usize], p);
            let c = &plan.ciphers[plan
                .ciphers
                .iter()
                .position(|c| (c.first..c.first + c.rounds).contains(&(b as usize)))
                .unwrap()];
            assert_eq!(c.rows[j as usize], q);
        }
        // Orienting balances the load: 400 pairs over 120 rows, at most 8 per X row before.
        let mut load = vec![0; 120];
        for &(q, _) in &items {
            load[q as usize] += 1;
        }
        assert!(*load.iter().max().unwrap() <= 6, "{load:?}");
        assert_eq!(plan.blocks(), plan.max_rounds());
    }

    #[test]
    fn bad_plans_and_shares_are_refused() {
        assert!(SlotPlan::new(4, 0, &[]).is_err());
        assert!(SlotPlan::new(4, MAX_D + 1, &[]).is_err());
        assert!(SlotPlan::new(4, 2, &[(4, 0)]).is_err());
        let plan = Arc::new(SlotPlan::new(4, 2, &[(0, 1)]).unwrap());
        assert!(SlotProducts::new(0, 2, plan.clone(), vec![0; 7]).is_err());
        assert!(SlotProducts::new(0, 2, plan.clone(), vec![T; 8]).is_err());
        assert!(SlotProducts::new(2, 2, plan.clone(), vec![0; 8]).is_err());
        assert!(SlotProducts::new(0, 5, plan, vec![0; 8]).is_err());
        // No items: nothing to evaluate, empty outputs.
        let plan = Arc::new(SlotPlan::new(4, 2, &[]).unwrap());
        assert_eq!(plan.blocks(), 0);
        let parties = (0..2)
            .map(|s| SlotProducts::new(s, 2, plan.clone(), vec![0; 8]).unwrap())
            .collect();
        let (outs, _) = run_lockstep(parties).unwrap();
        assert!(outs.iter().all(|o| o.is_empty()));
    }

    #[test]
    fn scaling_round_trips_at_every_level() {
        let ctx = Context::slots();
        let codec = Codec::get();
        let mut prg = Prg::new(&Seed([3; 32]), 0);
        for l in 1..=L {
            for m in [0, 1, T - 1, T / 2, prg.next_u64() % T] {
                let mut r = [0u64; L];
                codec.scale(ctx, l, m, &mut r);
                assert_eq!(codec.unscale(ctx, l, &r[..l]), m, "level {l}, m {m}");
            }
        }
        // Slots and coefficients are inverse transforms, and products are slot-wise.
        let mut v: Vec<u64> = (0..N as u64).map(|i| (i * i + 3) % T).collect();
        let orig = v.clone();
        codec.to_coefficients(&mut v);
        let coefficients = v.clone();
        codec.to_slots(&mut v);
        assert_eq!(v, orig);
        // At the ciphertext prime equal to `T`, the evaluation domain is the slots (what the
        // evaluator relies on to skip that prime's transform); at the others it is not.
        assert_eq!(ctx.primes()[0], T);
        for (l, &p) in ctx.primes().iter().enumerate() {
            let mut w: Vec<u64> = coefficients
                .iter()
                .map(|&c| if c > T / 2 { p - (T - c) } else { c })
                .collect();
            ctx.ntt[l].forward(&mut w);
            assert_eq!(w == orig, l == 0, "prime {l}");
        }
    }

    /// The division-free scaling equals `round(Q_l m / t) mod p_i` computed with 128-bit
    /// divisions, for every plaintext prime, level and prime, at the ends of the range and at
    /// random.
    #[test]
    fn scaling_equals_the_exact_rounding() {
        let ctx = Context::slots();
        let mut prg = Prg::new(&Seed([4; 32]), 0);
        for (i, &t) in CRT_PRIMES.iter().enumerate() {
            let codec = Codec::crt(i);
            for l in 1..=L {
                // Q_l as words, its quotient by t and remainder (long division, as `Codec::new`).
                let q = product_words(&ctx.primes()[..l]);
                let (mut quotient, mut rem) = ([0u64; L], 0u128);
                for w in (0..L).rev() {
                    let cur = (rem << 64) | q[w] as u128;
                    quotient[w] = (cur / t as u128) as u64;
                    rem = cur % t as u128;
                }
                let ms = [0, 1, 2, t / 2, t / 2 + 1, t - 2, t - 1]
                    .into_iter()
                    .chain((0..2000).map(|_| prg.next_u64() % t));
                for m in ms {
                    let frac = ((rem * m as u128 + t as u128 / 2) / t as u128) as u64;
                    let mut got = [0u64; L];
                    codec.scale(ctx, l, m, &mut got);
                    for (j, &p) in ctx.primes()[..l].iter().enumerate() {
                        let md = Modulus::new(p);
                        let q_div = quotient.iter().rev().fold(0u64, |acc, &w| {
                            md.reduce_wide(((acc as u128) << 64) | w as u128)
                        });
                        let want = md.add(md.mul(q_div, md.reduce(m)), md.reduce(frac));
                        assert_eq!(got[j], want, "t {t}, level {l}, prime {j}, m {m}");
                    }
                }
            }
        }
    }

    /// One evaluator's view for an encryptor holding `z_enc` against the evaluator's `z_eval`
    /// (rows of length `d`, items each row with itself), under `hard`.
    fn view(
        z_enc: &[u64],
        z_eval: &[u64],
        d: usize,
        hard: Hardening,
    ) -> (Vec<u64>, SecretKey, Vec<u64>, SlotPlan) {
        let rows = z_enc.len() / d;
        let items: Vec<(u32, u32)> = (0..rows as u32).map(|r| (r, r)).collect();
        let plan = SlotPlan::new(rows, d, &items).unwrap();
        let ctx = Context::slots();
        let enc = encrypt(ctx, Codec::get(), &plan, &columns(z_enc, rows, d));
        let (mut payloads, masks) = evaluate(
            ctx,
            Codec::get(),
            &plan,
            &columns(z_eval, rows, d),
            &[(0, &enc.message[..])],
            hard,
            &Masking::Uniform,
        )
        .unwrap();
        (payloads.remove(0), enc.key, masks, plan)
    }

    /// The returned `a` part of the first block at the first returned prime.
    fn a_part(payload: &[u64]) -> Vec<u64> {
        unpack(payload, 2 * OUT_L * N, SLOT_RESIDUE_BITS)[..N].to_vec()
    }

    #[test]
    fn the_encryptor_cannot_tell_a_zero_share_by_the_returned_a_part() {
        let z = vec![5u64; 16 * 4];
        let zero = vec![0u64; 16 * 4];
        let bare = Hardening {
            rerandomize: false,
            flood: true,
        };
        // Control: without re-randomisation the `a` part of a zero share is zero.
        let (p, _, _, _) = view(&z, &zero, 4, bare);
        assert!(a_part(&p).iter().all(|&v| v == 0));
        // With it, the residues look uniform (mean near p / 2).
        let (p, _, _, _) = view(&z, &zero, 4, HARDENED);
        let a = a_part(&p);
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        let half = Context::slots().primes()[0] as f64 / 2.0;
        assert!((mean - half).abs() < half * 0.05, "{mean} vs {half}");
    }

    /// The mean absolute noise of the returned blocks' phases: each coefficient's distance to the
    /// nearest scaled message.
    fn mean_noise(payload: &[u64], key: &SecretKey, blocks: usize) -> f64 {
        let ctx = Context::slots();
        let codec = Codec::get();
        let n = N;
        let words = block_words();
        let mut total = 0.0;
        for b in 0..blocks {
            let ret = unpack(
                &payload[b * words..(b + 1) * words],
                2 * OUT_L * n,
                SLOT_RESIDUE_BITS,
            );
            let (a, bb) = ret.split_at(OUT_L * n);
            let phase = key.phase(ctx, OUT_L, a, bb);
            for c in 0..n {
                let r: [u64; OUT_L] = std::array::from_fn(|i| phase[i * n + c]);
                let m = codec.unscale(ctx, OUT_L, &r);
                let mut enc = [0u64; L];
                codec.scale(ctx, OUT_L, m, &mut enc);
                let diff: [u64; OUT_L] = std::array::from_fn(|i| ctx.modulus(i).sub(r[i], enc[i]));
                total += (ctx.centred(OUT_L, &diff) as i128).unsigned_abs() as f64;
            }
        }
        total / (blocks * n) as f64
    }

    #[test]
    fn the_encryptor_cannot_tell_shares_apart_by_the_noise() {
        let d = 64;
        let mut prg = Prg::new(&Seed([5; 32]), 0);
        let z: Vec<u64> = (0..32 * d).map(|_| prg.next_u64() % T).collect();
        // A share whose plaintexts are zero against one whose plaintexts are dense.
        let zero = vec![0u64; 32 * d];
        let dense: Vec<u64> = (0..32 * d).map(|_| prg.next_u64() % T).collect();
        let bare = Hardening {
            rerandomize: true,
            flood: false,
        };
        // Control: without flooding, the dense share's noise (its e P) is well above the zero
        // share's (the switch's rounding alone).
        let (pz, kz, _, plan) = view(&z, &zero, d, bare);
        let (pd, kd, _, _) = view(&z, &dense, d, bare);
        let blocks = plan.blocks();
        let (nz, nd) = (mean_noise(&pz, &kz, blocks), mean_noise(&pd, &kd, blocks));
        assert!(nd > 1.5 * nz, "{nd} vs {nz}");
        // With it, the two are the same within 5 %, and far above both.
        let (pz, kz, _, _) = view(&z, &zero, d, HARDENED);
        let (pd, kd, _, _) = view(&z, &dense, d, HARDENED);
        let (fz, fd) = (mean_noise(&pz, &kz, blocks), mean_noise(&pd, &kd, blocks));
        assert!((fd / fz - 1.0).abs() < 0.05, "{fd} vs {fz}");
        assert!(fz > 1e6 * nd, "{fz} vs {nd}");
    }

    #[test]
    fn the_decrypted_slots_are_masked() {
        // A zero share: the encryptor decrypts the evaluator's masks alone, uniform modulo T.
        let d = 3;
        let z = vec![11u64; 100 * d];
        let (p, key, masks, plan) = view(&z, &vec![0; 100 * d], d, HARDENED);
        let mut sums = vec![0u64; plan.blocks() * N];
        decrypt_into(Context::slots(), Codec::get(), &key, &p, 1, &mut sums).unwrap();
        assert_eq!(sums, masks);
        let mean = masks.iter().map(|&v| v as f64).sum::<f64>() / masks.len() as f64;
        assert!((mean / (T as f64 / 2.0) - 1.0).abs() < 0.05);
    }

    #[test]
    fn malformed_messages_are_refused_naming_the_peer() {
        let items: Vec<(u32, u32)> = (0..8).map(|r| (r, (r + 1) % 8)).collect();
        let plan = Arc::new(SlotPlan::new(8, 2, &items).unwrap());
        let mk = |me| SlotProducts::new(me, 2, plan.clone(), vec![1; 16]).unwrap();
        let Step::Send(s0, m0) = mk(0).start().unwrap() else {
            panic!("sends first")
        };
        let Step::Send(_, m1) = mk(1).start().unwrap() else {
            panic!("sends first")
        };
        // A word that is no residue in server 1's ciphertexts.
        let mut bad = m1.clone();
        let at = 8 + 2 * L * packed_words(N as u64, SLOT_RESIDUE_BITS) as usize;
        bad[at] |= (1 << SLOT_RESIDUE_BITS) - 1;
        let err = s0.receive(vec![m0.clone(), bad]).err().unwrap().to_string();
        assert!(
            err.contains("server 1") && err.contains("not a residue"),
            "{err}"
        );
        // A short message.
        let Step::Send(s0, _) = mk(0).start().unwrap() else {
            panic!("sends first")
        };
        assert!(s0.receive(vec![m0.clone(), m1[1..].to_vec()]).is_err());
        // Results of the wrong length.
        let Step::Send(s0, _) = mk(0).start().unwrap() else {
            panic!("sends first")
        };
        let Step::SendEach(s0, _, _) = s0.receive(vec![m0, m1]).unwrap() else {
            panic!("returns results")
        };
        let err = s0
            .receive(vec![vec![], vec![0; 5]])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("server 1") && err.contains("expected"),
            "{err}"
        );
    }
}
