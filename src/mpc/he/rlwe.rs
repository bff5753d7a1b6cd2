//! Ring-LWE encryption of `Z_2^64` values in the coefficients of `Z_q[X] / (X^N + 1)`.
//!
//! A secret key is a ternary polynomial `s`; a ciphertext of the message polynomial `m`
//! (coefficients in `Z_t`, `t = 2^64`) is `(a, b = -a s + e + round(q m / t))` with `a`
//! uniform (drawn from a public seed, so it costs nothing to send) and `e` small. Decryption
//! computes `b + a s = round(q m / t) + e` and returns `round(t (b + a s) / q) mod t`, exact
//! while the noise stays below `q / 2t`.
//!
//! The message is scaled by the exact ratio `q / t`, rounded, rather than by `floor(q / t)`:
//! multiplying the ciphertext by a plaintext polynomial `P` then gives
//! `q (m P) / t + (rounding) P = q [m P]_t / t (mod q)` plus noise `e P` and at most
//! `||P||_1 / 2`, where `floor(q / t)` would add `(q mod t) (m P) / t`, near `t ||P||_1`.
//!
//! Residues live in RNS form, one row of `N` words per prime (`L = 4` primes: of 54 bits for the
//! coefficient products, [`PRIMES`], of at most 50 bits for the slot products,
//! [`SLOT_PRIMES`]), in the NTT domain except where a step needs coefficients. Dropping the last
//! prime divides a ciphertext by it (`x' = (x - [x]_p) / p`, with `[x]_p` the centred residue):
//! the message's scale follows, the noise shrinks by `p` and gains at most `(1 + ||s||_1) / 2`.

use crate::error::{Error, PeerName, Result};
use crate::mpc::he::modulus::Modulus;
use crate::mpc::he::ntt::NttTables;
use crate::mpc::prg::{Prg, Seed};
use std::sync::OnceLock;
use zeroize::Zeroize;

/// Ring dimension.
pub const N: usize = 8192;

/// The ciphertext primes: the largest four below `2^54` that are `1 mod 2N`. Their product
/// `q` has 216 bits, within the 218 bits that the homomorphic encryption standard
/// (Albrecht et al., 2018) allows for 128-bit security at `N = 8192` with a ternary secret.
pub const PRIMES: [u64; 4] = [
    0x003f_ffff_ffef_8001,
    0x003f_ffff_ffeb_8001,
    0x003f_ffff_ffe7_c001,
    0x003f_ffff_ffe6_4001,
];

/// The ciphertext primes of the slot products ([`super::slots`]): their plaintext prime `T`
/// ([`super::slots::T`], the largest prime below `2^47` that is `1 mod 2N`) and the largest
/// three below `2^50` that are `1 mod 2N`, so that the vectorised transforms (AVX-512 IFMA, or
/// AVX2 double lanes) apply. Their product has 197 bits, within the standard's 218. With `T`
/// among them, a plaintext modulo `T` is already in the evaluation domain at that prime: the
/// slot values themselves (`forward(inverse(v)) = v` at the same tables), so a plaintext costs
/// one forward transform fewer there ([`super::slots`]); the scaling `Q / T` is then exact.
pub const SLOT_PRIMES: [u64; 4] = [
    0x0000_7fff_fffe_c001,
    0x0003_ffff_ffff_c001,
    0x0003_ffff_fffc_c001,
    0x0003_ffff_ffef_4001,
];

/// Number of primes of a fresh ciphertext.
pub const L: usize = PRIMES.len();

/// Bits of each coefficient of a returned ciphertext: results are switched from the returned
/// primes to the modulus `2^RESULT_BITS`, keeping the bits above the flooding noise.
pub const RESULT_BITS: u32 = 96;

/// Half-width of the centred binomial noise (`eta = 21`: standard deviation 3.24, every sample
/// in `[-21, 21]`).
pub const ETA: u32 = 21;

/// Tables of one level: the first `primes` primes.
pub struct Level {
    /// Number of primes.
    pub primes: usize,
    /// `Q` (product of the level's primes) as little-endian words.
    q_words: [u64; 4],
    /// `2^(64 w) mod p_i` for each prime `i` and word `w`.
    word_residues: Vec<[u64; 4]>,
    /// `(Q / p_i)^-1 mod p_i` and Shoup quotients.
    crt: Vec<(u64, u64)>,
    /// `floor(2^128 / p_i)`.
    scale: Vec<u128>,
    /// `floor(2^192 / p_i)`: its bits above 128, then its low 128 bits.
    scale192: Vec<(u64, u128)>,
}

/// Everything precomputed for the ring: NTT tables per prime and the levels of 4 and 3 primes.
pub struct Context {
    /// The primes.
    primes: [u64; L],
    /// NTT tables, one per prime.
    pub ntt: Vec<NttTables>,
    /// Levels indexed by prime count (`levels[l - 1]` has `l` primes).
    levels: Vec<Level>,
    /// `p_last^-1 mod p_i` (and Shoup) for dropping the last prime of level `l`, per `i < l - 1`.
    drop_inv: Vec<Vec<(u64, u64)>>,
    /// Garner's constants over all primes: `inv[i][j] = p_j^-1 mod p_i` for `j < i`.
    garner_inv: Vec<Vec<u64>>,
}

impl Context {
    /// The shared context for ring dimension [`N`] (built once).
    pub fn get() -> &'static Context {
        static CTX: OnceLock<Context> = OnceLock::new();
        CTX.get_or_init(|| Context::new(N))
    }

    /// The shared context of the slot products ([`SLOT_PRIMES`], ring dimension [`N`]).
    pub fn slots() -> &'static Context {
        static CTX: OnceLock<Context> = OnceLock::new();
        CTX.get_or_init(|| Context::with_primes(SLOT_PRIMES, N))
    }

    /// A context for ring dimension `n` (tests use small rings; jobs use [`Context::get`]).
    pub fn new(n: usize) -> Context {
        Context::with_primes(PRIMES, n)
    }

    /// A context for ring dimension `n` over `primes`: distinct, each below `2^54` and
    /// `1 mod 2n`, and each just below a power of two (within `2^-28` of it, for the rejection
    /// sampling of [`Context::uniform`] to accept nearly every draw).
    pub fn with_primes(primes: [u64; L], n: usize) -> Context {
        let ntt: Vec<NttTables> = primes.iter().map(|&p| NttTables::new(p, n)).collect();
        let levels = (1..=L).map(|l| Level::new(&primes[..l])).collect();
        let drop_inv = (1..=L)
            .map(|l| {
                let last = primes[l - 1];
                primes[..l - 1]
                    .iter()
                    .map(|&p| {
                        let m = Modulus::new(p);
                        let v = m.inv(m.reduce(last));
                        (v, m.shoup(v))
                    })
                    .collect()
            })
            .collect();
        let garner_inv = (0..L)
            .map(|i| {
                let m = Modulus::new(primes[i]);
                (0..i).map(|j| m.inv(m.reduce(primes[j]))).collect()
            })
            .collect();
        Context {
            primes,
            ntt,
            levels,
            drop_inv,
            garner_inv,
        }
    }

    /// `round(2^RESULT_BITS x / Q) mod 2^RESULT_BITS` for each coefficient `x` of a polynomial
    /// of level `l` (coefficients): the switch of a ciphertext to the modulus `2^RESULT_BITS`.
    /// It is computed from 192 bits of `x / Q` (`Context::fraction192`), off by less than
    /// `l 2^54` units of `2^-192`, that is `2^-40` units of the result: each value is within
    /// `1/2 + 2^-40` of `2^RESULT_BITS x / Q`, the rounding alone. In `b` that adds at most that
    /// to the phase `b + a s`; in `a` it meets the ternary secret, `sum_t e_t s_t`, at most
    /// `N (1/2 + 2^-40) < 2^12.1` for every secret, far below the decoder's room (`2^31` less the
    /// scaled flood, at least `2^30.6`). (With 128 bits, as the decoder uses, each value was off
    /// by up to `2^19.2`, and `N 2^19.2` exceeded that room for some secrets: a review's finding.)
    pub fn to_power_of_two(&self, l: usize, poly: &[u64]) -> Vec<u128> {
        let n = self.n();
        let mut r = [0u64; L];
        (0..n)
            .map(|c| {
                for (i, x) in r.iter_mut().enumerate().take(l) {
                    *x = poly[i * n + c];
                }
                // Add 1/2 in units of 2^-RESULT_BITS, keep the bits from 192 - RESULT_BITS.
                let [w0, w1, w2] = self.fraction192(l, &r);
                let half = 1u128 << (191 - RESULT_BITS);
                let low = (w0 as u128 | (w1 as u128) << 64).wrapping_add(half);
                let carry = (low < half) as u64;
                let top = w2.wrapping_add(carry);
                let v = (low >> (192 - RESULT_BITS)) | (top as u128) << (RESULT_BITS - 64);
                v & ((1u128 << RESULT_BITS) - 1)
            })
            .collect()
    }

    /// `x / Q mod 1` in 192 bits (little-endian words), for `x` given by its residues at level
    /// `l`: the CRT sum `sum_i y_i / p_i mod 1` with each `1 / p_i` as `floor(2^192 / p_i)`,
    /// off by less than `l 2^54` units of `2^-192`.
    fn fraction192(&self, l: usize, residues: &[u64]) -> [u64; 3] {
        let lv = self.level(l);
        let mut acc = [0u64; 3];
        for (i, &x) in residues.iter().enumerate().take(l) {
            let (c, cs) = lv.crt[i];
            let y = self.modulus(i).mul_shoup(x, c, cs);
            let (hi, lo) = lv.scale192[i];
            // y (hi 2^128 + lo) mod 2^192.
            let p0 = y as u128 * (lo as u64) as u128;
            let p1 = y as u128 * ((lo >> 64) as u64) as u128;
            let mid = (p0 >> 64) + (p1 as u64) as u128;
            let t = [
                p0 as u64,
                mid as u64,
                ((p1 >> 64) as u64)
                    .wrapping_add((mid >> 64) as u64)
                    .wrapping_add(y.wrapping_mul(hi)),
            ];
            let s0 = acc[0] as u128 + t[0] as u128;
            let s1 = acc[1] as u128 + t[1] as u128 + (s0 >> 64);
            acc = [
                s0 as u64,
                s1 as u64,
                acc[2].wrapping_add(t[2]).wrapping_add((s1 >> 64) as u64),
            ];
        }
        acc
    }

    /// The integer of absolute value far below `Q / 2` (`Q` of level `l`) whose residues are
    /// `r`, modulo `2^128` (Garner's mixed radix; the top digit gives the sign).
    pub fn centred(&self, l: usize, r: &[u64]) -> u128 {
        let mut digits = [0u64; L];
        for i in 0..l {
            let m = self.modulus(i);
            let mut t = m.reduce(r[i]);
            for (&dj, &inv) in digits[..i].iter().zip(&self.garner_inv[i]) {
                t = m.mul(m.sub(t, m.reduce(dj)), inv);
            }
            digits[i] = t;
        }
        let mut v: u128 = 0;
        let mut radix: u128 = 1;
        for (d, &p) in digits.iter().zip(&self.primes).take(l) {
            v = v.wrapping_add(radix.wrapping_mul(*d as u128));
            radix = radix.wrapping_mul(p as u128);
        }
        // radix is now Q mod 2^128.
        if digits[l - 1] > self.primes[l - 1] / 2 {
            v = v.wrapping_sub(radix);
        }
        v
    }

    /// The primes.
    pub fn primes(&self) -> &[u64; L] {
        &self.primes
    }

    /// Ring dimension.
    pub fn n(&self) -> usize {
        self.ntt[0].len()
    }

    /// The modulus of prime `i`.
    pub fn modulus(&self, i: usize) -> &Modulus {
        &self.ntt[i].m
    }

    /// The primes' moduli, in order.
    pub fn moduli(&self) -> impl Iterator<Item = &Modulus> {
        self.ntt.iter().map(|t| &t.m)
    }

    /// The level of `l` primes.
    pub fn level(&self, l: usize) -> &Level {
        &self.levels[l - 1]
    }

    /// `round(Q m / 2^64) mod p_i` for each prime `i` of level `l`, into `out[i]`.
    #[inline]
    pub fn encode(&self, l: usize, m: u64, out: &mut [u64]) {
        let lv = self.level(l);
        // Q m + 2^63 over five words; drop the lowest.
        let mut carry: u128 = 1 << 63;
        let mut v = [0u64; 4];
        for (w, qw) in lv.q_words.iter().enumerate() {
            let t = *qw as u128 * m as u128 + carry;
            if w > 0 {
                v[w - 1] = t as u64;
            }
            carry = t >> 64;
        }
        v[3] = carry as u64;
        for (i, o) in out.iter_mut().enumerate().take(l) {
            let r = &lv.word_residues[i];
            let acc: u128 = v.iter().zip(r).map(|(a, b)| *a as u128 * *b as u128).sum();
            *o = self.modulus(i).reduce_wide(acc);
        }
    }

    /// `round(2^64 x / Q) mod 2^64` for `x` given by its residues at level `l`, and how far
    /// `2^64 x / Q` was from that integer, as a fraction of one scaled by `2^64` (the noise over
    /// `Q / 2^64`; up to about `2^56` of it is the approximation's).
    #[inline]
    pub fn decode(&self, l: usize, residues: &[u64]) -> (u64, u64) {
        let v = self.fraction(l, residues);
        let r = v.wrapping_add(1 << 63);
        let frac = (v as u64).wrapping_add(1 << 63).wrapping_sub(1 << 63) as i64;
        ((r >> 64) as u64, frac.unsigned_abs())
    }

    /// `x / Q mod 1` in 128 bits, for `x` given by its residues at level `l` (the CRT:
    /// `x / Q = sum_i y_i / p_i mod 1` with `y_i = x_i (Q / p_i)^-1 mod p_i`, each `1 / p_i` as
    /// `floor(2^128 / p_i)`, off by less than `l 2^54` units of `2^-128`).
    #[inline]
    pub fn fraction(&self, l: usize, residues: &[u64]) -> u128 {
        let lv = self.level(l);
        let mut v: u128 = 0;
        for (i, &x) in residues.iter().enumerate().take(l) {
            let (c, cs) = lv.crt[i];
            let y = self.modulus(i).mul_shoup(x, c, cs);
            v = v.wrapping_add((y as u128).wrapping_mul(lv.scale[i]));
        }
        v
    }

    /// The noise of a phase at level 3 (residues of `b + a s`): its distance to the encoding
    /// of the nearest message, exact while below `2^107` (tests).
    #[cfg(test)]
    pub fn noise(&self, l: usize, residues: &[u64]) -> i128 {
        let (v, _) = self.decode(l, residues);
        let mut enc = [0u64; L];
        self.encode(l, v, &mut enc);
        let r: Vec<u64> = (0..l)
            .map(|i| self.modulus(i).sub(residues[i], enc[i]))
            .collect();
        self.centred(l, &r) as i128
    }

    /// Divides a polynomial of level `l` (coefficients, `l` rows of `n`) by its last prime,
    /// rounding: the result has `l - 1` rows.
    pub fn drop_last(&self, l: usize, poly: &[u64]) -> Vec<u64> {
        let n = self.n();
        let last = self.modulus(l - 1);
        let top = &poly[(l - 1) * n..l * n];
        let mut out = vec![0u64; (l - 1) * n];
        for i in 0..l - 1 {
            let m = self.modulus(i);
            let (inv, invs) = self.drop_inv[l - 1][i];
            for ((o, &x), &t) in out[i * n..(i + 1) * n]
                .iter_mut()
                .zip(&poly[i * n..(i + 1) * n])
                .zip(top)
            {
                // The centred residue of the last prime, reduced modulo p_i.
                let c = if t > last.p / 2 {
                    m.neg(m.reduce(last.p - t))
                } else {
                    m.reduce(t)
                };
                *o = m.mul_shoup(m.sub(x, c), inv, invs);
            }
        }
        out
    }

    /// Forward NTT of every row of an `l`-row polynomial.
    pub fn forward(&self, poly: &mut [u64]) {
        let n = self.n();
        for (i, row) in poly.chunks_exact_mut(n).enumerate() {
            self.ntt[i].forward(row);
        }
    }

    /// Inverse NTT of every row.
    pub fn inverse(&self, poly: &mut [u64]) {
        let n = self.n();
        for (i, row) in poly.chunks_exact_mut(n).enumerate() {
            self.ntt[i].inverse(row);
        }
    }

    /// A small signed polynomial (coefficients as `i64`) in RNS form for `l` primes.
    pub fn small(&self, l: usize, coeffs: &[i64]) -> Vec<u64> {
        let mut out = vec![0u64; l * self.n()];
        self.small_into(coeffs, &mut out);
        out
    }

    /// [`Context::small`] into `out` (`l n` words for `l` primes).
    pub fn small_into(&self, coeffs: &[i64], out: &mut [u64]) {
        let n = self.n();
        for (i, row) in out.chunks_exact_mut(n).enumerate() {
            let m = self.modulus(i);
            for (o, &c) in row.iter_mut().zip(coeffs) {
                *o = m.from_signed(c);
            }
        }
    }

    /// A uniform polynomial in the NTT domain of `l` primes, from a seed's stream.
    pub fn uniform(&self, l: usize, seed: &Seed, stream: u64) -> Vec<u64> {
        let mut out = vec![0u64; l * self.n()];
        self.uniform_into(seed, stream, &mut out);
        out
    }

    /// [`Context::uniform`] into `out` (`l n` words for `l` primes).
    pub fn uniform_into(&self, seed: &Seed, stream: u64, out: &mut [u64]) {
        let n = self.n();
        let l = out.len() / n;
        let mut prg = Prg::new(seed, stream);
        for i in 0..l {
            let p = self.primes[i];
            let shift = p.leading_zeros();
            for o in out[i * n..(i + 1) * n].iter_mut() {
                // Rejection sampling from words of the prime's length: every prime is within
                // 2^-28 of a power of two from below, so acceptance is above 1 - 2^-28.
                *o = loop {
                    let v = prg.next_u64() >> shift;
                    if v < p {
                        break v;
                    }
                };
            }
        }
    }

    /// Checks that a peer's polynomial of `l` rows holds residues (each row's words below its
    /// prime).
    pub fn check_residues(&self, poly: &[u64], from: usize, what: &str) -> Result<()> {
        if !poly.len().is_multiple_of(self.n()) || poly.len() / self.n() > self.primes.len() {
            return Err(Error::protocol(
                PeerName::Server(from),
                format!(
                    "{what}: {} words are not whole rows of {} for at most {} primes",
                    poly.len(),
                    self.n(),
                    self.primes.len()
                ),
            ));
        }
        for (i, row) in poly.chunks_exact(self.n()).enumerate() {
            self.check_row(row, i, from, what)?;
        }
        Ok(())
    }

    /// [`Context::check_residues`] for row `i` (prime `i`, below the number of primes) of a
    /// polynomial alone.
    pub fn check_row(&self, row: &[u64], i: usize, from: usize, what: &str) -> Result<()> {
        let p = self.primes[i];
        if let Some(pos) = row.iter().position(|&v| v >= p) {
            return Err(Error::protocol(
                PeerName::Server(from),
                format!(
                    "{what}: word {} of prime {i} is not a residue",
                    i * row.len() + pos
                ),
            ));
        }
        Ok(())
    }
}

impl Level {
    fn new(primes: &[u64]) -> Level {
        let q = product_words(primes);
        let word_residues = primes
            .iter()
            .map(|&p| {
                let m = Modulus::new(p);
                let r = m.reduce_wide(1u128 << 64);
                [1 % p, r, m.mul(r, r), m.mul(m.mul(r, r), r)]
            })
            .collect();
        let crt = primes
            .iter()
            .map(|&p| {
                let m = Modulus::new(p);
                let others = primes
                    .iter()
                    .filter(|&&o| o != p)
                    .fold(1u64, |acc, &o| m.mul(acc, m.reduce(o)));
                let c = m.inv(others);
                (c, m.shoup(c))
            })
            .collect();
        let scale = primes.iter().map(|&p| u128::MAX / p as u128).collect();
        // floor(2^192 / p) = 2^64 floor(2^128 / p) + floor(2^64 (2^128 mod p) / p).
        let scale192 = primes
            .iter()
            .map(|&p| {
                let p = p as u128;
                let (a, r) = (u128::MAX / p, (u128::MAX % p + 1) % p);
                let b = (r << 64) / p;
                ((a >> 64) as u64, (a << 64) | b)
            })
            .collect();
        Level {
            primes: primes.len(),
            q_words: q,
            word_residues,
            crt,
            scale,
            scale192,
        }
    }
}

/// The product of `primes` as little-endian words (schoolbook multiplication; it fits four).
pub fn product_words(primes: &[u64]) -> [u64; L] {
    let mut q = [0u64; L];
    q[0] = 1;
    for &p in primes {
        let mut carry = 0u128;
        for w in q.iter_mut() {
            let t = *w as u128 * p as u128 + carry;
            *w = t as u64;
            carry = t >> 64;
        }
        assert_eq!(carry, 0, "Q fits in four words");
    }
    q
}

/// Samples small polynomials: ternary secrets and centred binomial noise.
pub struct Sampler {
    prg: Prg,
}

impl Sampler {
    /// A sampler on a fresh seed from the operating system.
    pub fn fresh() -> Sampler {
        Sampler { prg: Prg::fresh() }
    }

    /// A sampler on a seed's stream (tests, and per-block streams of a fresh seed).
    pub fn new(seed: &Seed, stream: u64) -> Sampler {
        Sampler {
            prg: Prg::new(seed, stream),
        }
    }

    /// `n` coefficients uniform in `{-1, 0, 1}`.
    pub fn ternary(&mut self, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let mut w = self.prg.next_u64();
            for _ in 0..32 {
                let v = w & 3;
                w >>= 2;
                if v < 3 && out.len() < n {
                    out.push(v as i64 - 1);
                }
            }
        }
        out
    }

    /// `n` centred binomial samples of parameter [`ETA`].
    pub fn noise(&mut self, n: usize) -> Vec<i64> {
        let mut out = vec![0i64; n];
        self.noise_into(&mut out);
        out
    }

    /// [`Sampler::noise`] into `out` (its length).
    pub fn noise_into(&mut self, out: &mut [i64]) {
        let mask = (1u64 << ETA) - 1;
        for o in out.iter_mut() {
            let w = self.prg.next_u64();
            *o = (w & mask).count_ones() as i64 - ((w >> ETA) & mask).count_ones() as i64;
        }
    }

    /// `n` values uniform in `[-2^bits, 2^bits]` as residues of `l` primes (noise flooding).
    pub fn flood(&mut self, ctx: &Context, l: usize, bits: u32) -> Vec<u64> {
        let n = ctx.n();
        let mut out = vec![0u64; l * n];
        let range: u128 = (1u128 << (bits + 1)) + 1;
        // Rejection from 128-bit draws keeps the distribution exactly uniform.
        let zone = u128::MAX - u128::MAX % range;
        for c in 0..n {
            let v = loop {
                let r = ((self.prg.next_u64() as u128) << 64) | self.prg.next_u64() as u128;
                if r < zone {
                    break (r % range) as i128 - (1i128 << bits);
                }
            };
            for i in 0..l {
                let m = ctx.modulus(i);
                let mag = m.reduce_wide(v.unsigned_abs());
                out[i * n + c] = if v < 0 { m.neg(mag) } else { mag };
            }
        }
        out
    }

    /// The next word (masks).
    pub fn word(&mut self) -> u64 {
        self.prg.next_u64()
    }
}

/// A secret key: a ternary polynomial, kept in the NTT domain of all primes. It never leaves
/// its server, is wiped on drop and is absent from `Debug` output.
pub struct SecretKey {
    s: Vec<u64>,
    /// Each residue's Shoup quotient (products by `s` in [`SecretKey::mask`] and the phases).
    s_shoup: Vec<u64>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.s.zeroize();
        self.s_shoup.zeroize();
    }
}

impl SecretKey {
    /// A fresh key.
    pub fn generate(ctx: &Context, sampler: &mut Sampler) -> SecretKey {
        let mut coeffs = sampler.ternary(ctx.n());
        let mut s = ctx.small(L, &coeffs);
        coeffs.zeroize();
        ctx.forward(&mut s);
        let n = ctx.n();
        let s_shoup = s
            .iter()
            .enumerate()
            .map(|(j, &v)| ctx.modulus(j / n).shoup(v))
            .collect();
        SecretKey { s, s_shoup }
    }

    /// `b = -a s + x` in the NTT domain of `l` primes, for `a` and `x` there.
    pub fn mask(&self, ctx: &Context, a: &[u64], x: &mut [u64]) {
        let n = ctx.n();
        for (i, (xr, ar)) in x.chunks_exact_mut(n).zip(a.chunks_exact(n)).enumerate() {
            let m = ctx.modulus(i);
            let (sr, ss) = (
                &self.s[i * n..(i + 1) * n],
                &self.s_shoup[i * n..(i + 1) * n],
            );
            for ((xv, &av), (&sv, &sq)) in xr.iter_mut().zip(ar).zip(sr.iter().zip(ss)) {
                *xv = m.sub(*xv, m.mul_shoup(av, sv, sq));
            }
        }
    }

    /// `b + a s` in coefficients, for a ciphertext of `l` primes in coefficients.
    pub fn phase(&self, ctx: &Context, l: usize, a: &[u64], b: &[u64]) -> Vec<u64> {
        let n = ctx.n();
        let mut prod = a[..l * n].to_vec();
        ctx.forward(&mut prod);
        for (i, row) in prod.chunks_exact_mut(n).enumerate() {
            let m = ctx.modulus(i);
            let key = self.s[i * n..(i + 1) * n]
                .iter()
                .zip(&self.s_shoup[i * n..]);
            for (v, (&sv, &sq)) in row.iter_mut().zip(key) {
                *v = m.mul_shoup(*v, sv, sq);
            }
        }
        ctx.inverse(&mut prod);
        for (i, (row, br)) in prod.chunks_exact_mut(n).zip(b.chunks_exact(n)).enumerate() {
            let m = ctx.modulus(i);
            for (v, &bv) in row.iter_mut().zip(br) {
                *v = m.add(*v, bv);
            }
        }
        prod
    }

    /// `b + a s mod 2^RESULT_BITS` for a ciphertext switched to that modulus. The product
    /// `a s` is computed exactly through the NTT of the first three primes and Garner's
    /// reconstruction: each coefficient is below `N 2^RESULT_BITS = 2^109` in absolute value,
    /// far below half their product (`2^161`).
    pub fn phase_pow2(&self, ctx: &Context, a: &[u128], b: &[u128]) -> Vec<u128> {
        const PHASE_L: usize = 3;
        let n = ctx.n();
        let mut prod = vec![0u64; PHASE_L * n];
        for (i, row) in prod.chunks_exact_mut(n).enumerate() {
            let m = ctx.modulus(i);
            for (o, &v) in row.iter_mut().zip(a) {
                *o = m.reduce_wide(v);
            }
            ctx.ntt[i].forward(row);
            let key = self.s[i * n..(i + 1) * n]
                .iter()
                .zip(&self.s_shoup[i * n..]);
            for (o, (&sv, &sq)) in row.iter_mut().zip(key) {
                *o = m.mul_shoup(*o, sv, sq);
            }
            ctx.ntt[i].inverse(row);
        }
        let mask = (1u128 << RESULT_BITS) - 1;
        let mut r = [0u64; PHASE_L];
        (0..n)
            .map(|c| {
                for (i, x) in r.iter_mut().enumerate() {
                    *x = prod[i * n + c];
                }
                ctx.centred(PHASE_L, &r).wrapping_add(b[c]) & mask
            })
            .collect()
    }

    /// A public key `(a, -a s + e)` with `a` from `seed`: only `b` (NTT domain, all primes)
    /// travels.
    pub fn public_key(&self, ctx: &Context, sampler: &mut Sampler, seed: &Seed) -> Vec<u64> {
        let a = ctx.uniform(L, seed, PK_STREAM);
        // With the public key, this noise would give the secret away: wiped once used.
        let mut e = sampler.noise(ctx.n());
        let mut b = ctx.small(L, &e);
        e.zeroize();
        ctx.forward(&mut b);
        self.mask(ctx, &a, &mut b);
        b
    }

    /// Encrypts message polynomials (`n` coefficients each, shorter ones padded with zeros)
    /// under `a`s drawn from `seed` on streams `first, first + 1, ...`: returns each `b` (NTT
    /// domain, all primes).
    pub fn encrypt(
        &self,
        ctx: &Context,
        sampler: &mut Sampler,
        seed: &Seed,
        first: u64,
        message: &[u64],
    ) -> Vec<u64> {
        self.encrypt_scaled(ctx, sampler, seed, first, message, |v, out| {
            ctx.encode(L, v, out)
        })
    }

    /// [`SecretKey::encrypt`] with another plaintext modulus: `scale(m, out)` writes
    /// `round(Q m / t) mod p_i` for every prime `i` (all `L`).
    pub fn encrypt_scaled(
        &self,
        ctx: &Context,
        sampler: &mut Sampler,
        seed: &Seed,
        first: u64,
        message: &[u64],
        scale: impl Fn(u64, &mut [u64]),
    ) -> Vec<u64> {
        let mut buffers = EncryptBuffers::new(ctx);
        self.encrypt_scaled_into(ctx, sampler, (seed, first), message, scale, &mut buffers);
        buffers.b
    }

    /// [`SecretKey::encrypt_scaled`] into `buffers.b`, its other buffers reused (a loop
    /// encrypting many messages allocates nothing per message).
    pub fn encrypt_scaled_into(
        &self,
        ctx: &Context,
        sampler: &mut Sampler,
        (seed, first): (&Seed, u64),
        message: &[u64],
        scale: impl Fn(u64, &mut [u64]),
        buffers: &mut EncryptBuffers,
    ) {
        let n = ctx.n();
        let EncryptBuffers { noise, a, b: x } = buffers;
        sampler.noise_into(noise);
        ctx.small_into(noise, x);
        noise[..].zeroize();
        let mut enc = [0u64; L];
        for (c, &v) in message.iter().enumerate() {
            scale(v, &mut enc);
            for (i, e) in enc.iter().enumerate() {
                let m = ctx.modulus(i);
                x[i * n + c] = m.add(x[i * n + c], *e);
            }
        }
        ctx.forward(x);
        ctx.uniform_into(seed, first, a);
        self.mask(ctx, a, x);
    }
}

/// The buffers of one encryption ([`SecretKey::encrypt_scaled_into`]): the noise, `a`, and the
/// result `b` (NTT domain, all primes). The noise is wiped after each use.
pub struct EncryptBuffers {
    noise: Vec<i64>,
    a: Vec<u64>,
    /// The last ciphertext's `b`.
    pub b: Vec<u64>,
}

impl EncryptBuffers {
    /// Buffers for `ctx`'s ring and primes.
    pub fn new(ctx: &Context) -> EncryptBuffers {
        let n = ctx.n();
        EncryptBuffers {
            noise: vec![0; n],
            a: vec![0; L * n],
            b: vec![0; L * n],
        }
    }
}

/// The seed stream of a public key's `a`; ciphertexts use streams from 1.
pub const PK_STREAM: u64 = 0;

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(b: u8) -> Seed {
        Seed([b; 32])
    }

    #[test]
    fn the_switch_to_a_power_of_two_is_the_rounding_alone() {
        // Against exact integers: for random residues, the extremes and values next to a tie,
        // every switched value v satisfies |v Q - 2^96 x| <= Q (1/2 + 2^-40) modulo 2^96 Q.
        use num_bigint::BigInt;
        let ctx = Context::get();
        let l = 3;
        let q: BigInt = PRIMES[..l].iter().map(|&p| BigInt::from(p)).product();
        let scale = BigInt::from(1) << RESULT_BITS;
        let modulus = &scale * &q;
        let residues = |x: &BigInt| -> Vec<u64> {
            PRIMES[..l]
                .iter()
                .map(|&p| {
                    let r = x % BigInt::from(p);
                    let r = if r < BigInt::from(0) {
                        r + BigInt::from(p)
                    } else {
                        r
                    };
                    u64::try_from(r).unwrap()
                })
                .collect()
        };
        let mut xs: Vec<BigInt> = vec![BigInt::from(0), &q - 1, &q / 2, &q / 2 + 1];
        let mut prg = Prg::new(&seed(9), 0);
        for _ in 0..2000 {
            let x = (0..3).fold(BigInt::from(0), |acc, _| (acc << 64) + prg.next_u64());
            xs.push(x % &q);
        }
        // Next to ties: the smallest x with 2^96 x / Q above k + 1/2, and the one below.
        for k in [0u64, 1, 12345, u64::MAX] {
            let t = (BigInt::from(2) * BigInt::from(k) + 1) * &q;
            let x = (&t + (&scale * 2) - 1) / (&scale * 2);
            xs.push(&x % &q);
            xs.push((&x - 1) % &q);
        }
        let n = ctx.n();
        for x in &xs {
            let r = residues(x);
            let mut poly = vec![0u64; l * n];
            for (i, v) in r.iter().enumerate() {
                poly[i * n] = *v;
            }
            let v = BigInt::from(ctx.to_power_of_two(l, &poly)[0]);
            let half: BigInt = &modulus / 2;
            let mut diff: BigInt = (&v * &q - &scale * x) % &modulus;
            if diff > half {
                diff -= &modulus;
            } else if diff < -half {
                diff += &modulus;
            }
            let bound: BigInt = &q / 2 + (&q >> 40u32);
            assert!(
                diff.magnitude() <= bound.magnitude(),
                "x {x}: off by {diff}"
            );
        }
    }

    #[test]
    fn the_primes_are_prime_and_ntt_friendly() {
        for &p in &PRIMES {
            assert!(p < 1 << 54 && (p - 1) % (2 * N as u64) == 0);
            let m = Modulus::new(p);
            // Miller-Rabin with the first 12 primes as bases is exact below 3.3 * 10^24.
            let (mut d, mut s) = (p - 1, 0);
            while d % 2 == 0 {
                d /= 2;
                s += 1;
            }
            for a in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
                let mut x = m.pow(a, d);
                if x == 1 || x == p - 1 {
                    continue;
                }
                let mut ok = false;
                for _ in 1..s {
                    x = m.mul(x, x);
                    if x == p - 1 {
                        ok = true;
                        break;
                    }
                }
                assert!(ok, "{p} is composite (witness {a})");
            }
        }
        let bits: f64 = PRIMES.iter().map(|&p| (p as f64).log2()).sum();
        assert!(bits <= 218.0, "log q = {bits}");
    }

    #[test]
    fn encoding_then_decoding_is_the_identity_at_every_level() {
        let ctx = Context::new(16);
        let mut prg = Prg::new(&seed(1), 0);
        // One prime (54 bits) is below t = 2^64: levels start at two.
        for l in 2..=L {
            for v in [0u64, 1, u64::MAX, 1 << 63, (1 << 63) - 1]
                .into_iter()
                .chain((0..200).map(|_| prg.next_u64()))
            {
                let mut r = [0u64; L];
                ctx.encode(l, v, &mut r);
                let (got, frac) = ctx.decode(l, &r);
                assert_eq!(got, v, "level {l}");
                assert!(
                    frac < 1 << 58,
                    "exact encoding decodes near an integer: {frac}"
                );
            }
        }
    }

    #[test]
    fn ciphertexts_decrypt_after_dropping_a_prime() {
        let ctx = Context::new(64);
        let n = ctx.n();
        let mut sampler = Sampler::new(&seed(2), 0);
        let sk = SecretKey::generate(&ctx, &mut sampler);
        let mut prg = Prg::new(&seed(3), 0);
        let msg: Vec<u64> = (0..n).map(|_| prg.next_u64()).collect();
        let mut b = sk.encrypt(&ctx, &mut sampler, &seed(4), 1, &msg);
        let mut a = ctx.uniform(L, &seed(4), 1);
        ctx.inverse(&mut a);
        ctx.inverse(&mut b);
        for (l, a, b) in [
            (L, a.clone(), b.clone()),
            (L - 1, ctx.drop_last(L, &a), ctx.drop_last(L, &b)),
        ] {
            let ph = sk.phase(&ctx, l, &a, &b);
            for c in 0..n {
                let r: Vec<u64> = (0..l).map(|i| ph[i * n + c]).collect();
                let (v, frac) = ctx.decode(l, &r);
                assert_eq!(v, msg[c], "level {l} coefficient {c}");
                assert!(frac < 1 << 60, "fresh noise is tiny: {frac}");
            }
        }
        // Without the key's part the phase is far from the message.
        let wrong = sk.phase(&ctx, L, &vec![0; L * n], &b);
        let hits = (0..n)
            .filter(|&c| {
                let r: Vec<u64> = (0..L).map(|i| wrong[i * n + c]).collect();
                ctx.decode(L, &r).0 == msg[c]
            })
            .count();
        assert!(hits < 2, "b alone hides the message ({hits} hits)");
    }

    #[test]
    fn samplers_stay_in_range() {
        let mut s = Sampler::new(&seed(5), 0);
        let t = s.ternary(30_000);
        assert!(t.iter().all(|v| (-1..=1).contains(v)));
        for v in [-1, 0, 1] {
            let c = t.iter().filter(|&&x| x == v).count();
            assert!((9_000..11_000).contains(&c), "{v}: {c}");
        }
        let e = s.noise(30_000);
        assert!(e.iter().all(|v| v.abs() <= ETA as i64));
        let var = e.iter().map(|v| (v * v) as f64).sum::<f64>() / e.len() as f64;
        assert!((9.5..11.5).contains(&var), "variance {var}");
        // Flooding noise: every value of [-8, 8], the same on both primes.
        let ctx = Context::new(1024);
        let f = s.flood(&ctx, 2, 3);
        let (m0, m1) = (ctx.modulus(0), ctx.modulus(1));
        let mut seen = [0usize; 17];
        for c in 0..1024 {
            let v = (-8i64..=8)
                .find(|&v| m0.from_signed(v) == f[c])
                .expect("in range");
            assert_eq!(m1.from_signed(v), f[1024 + c]);
            seen[(v + 8) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 20), "{seen:?}");
    }
}
