//! The negacyclic number-theoretic transform of length `N` modulo one prime.
//!
//! A polynomial of `Z_p[X] / (X^N + 1)` is evaluated at the `N` primitive `2N`-th roots of
//! unity `psi^(2 br(i) + 1)` (`br` reverses the `log2 N` bits of the output index `i`), where
//! products of polynomials are pointwise. The forward transform is Cooley-Tukey with the powers of
//! `psi` folded into the twiddles (the "merged" negacyclic NTT of Longa and Naehrig, 2016), the
//! inverse is Gentleman-Sande with the inverse powers, then a division by `N`; every product by
//! a twiddle uses its Shoup quotient.

use crate::mpc::he::modulus::Modulus;

/// The twiddle tables of one prime.
pub struct NttTables {
    /// The modulus.
    pub m: Modulus,
    /// `psi^br(i)` and Shoup quotients, for `i < N`.
    fwd: Vec<u64>,
    fwd_shoup: Vec<u64>,
    /// `psi^-br(i)` and Shoup quotients.
    inv: Vec<u64>,
    inv_shoup: Vec<u64>,
    /// `N^-1 mod p` and its Shoup quotient.
    n_inv: u64,
    n_inv_shoup: u64,
    /// The primitive `2N`-th root used.
    pub psi: u64,
    /// 52-bit Shoup quotients (`floor(w 2^52 / p)`) of `fwd`, `inv` and `n_inv`, for the
    /// vectorised transform ([`ifma`]), used when `p < 2^50` and the CPU has AVX-512 IFMA.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fwd_s52: Vec<u64>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    inv_s52: Vec<u64>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    n_inv_s52: u64,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    ifma: bool,
    /// The twiddles as doubles and `fl(w / p)`, for the transform on double lanes
    /// ([`avx2`]) when `p < 2^50` and the CPU has AVX2 and FMA (empty otherwise), used where
    /// it has no IFMA.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fwd_f64: Vec<f64>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fwd_fp: Vec<f64>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    inv_f64: Vec<f64>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    inv_fp: Vec<f64>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    avx2: bool,
}

/// Reverses the low `bits` bits of `i`.
pub fn bit_reverse(i: usize, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        i.reverse_bits() >> (usize::BITS - bits)
    }
}

impl NttTables {
    /// Tables for length `n` (a power of two) modulo prime `p = 1 (mod 2n)`, with the smallest
    /// generator candidate whose power is a primitive `2n`-th root of unity.
    pub fn new(p: u64, n: usize) -> NttTables {
        assert!(n.is_power_of_two() && (p - 1).is_multiple_of(2 * n as u64));
        let m = Modulus::new(p);
        let psi = (2..)
            .map(|g| m.pow(g, (p - 1) / (2 * n as u64)))
            .find(|&psi| m.pow(psi, n as u64) == p - 1)
            .expect("a primitive root exists for a prime");
        let bits = n.trailing_zeros();
        let psi_inv = m.inv(psi);
        let mut fwd = vec![0; n];
        let mut inv = vec![0; n];
        let (mut pw, mut pw_inv) = (1u64, 1u64);
        for e in 0..n {
            let i = bit_reverse(e, bits);
            fwd[i] = pw;
            inv[i] = pw_inv;
            pw = m.mul(pw, psi);
            pw_inv = m.mul(pw_inv, psi_inv);
        }
        let fwd_shoup = fwd.iter().map(|&w| m.shoup(w)).collect();
        let inv_shoup = inv.iter().map(|&w| m.shoup(w)).collect();
        let n_inv = m.inv(n as u64 % p);
        let s52 = |w: u64| (((w as u128) << 52) / p as u128) as u64;
        let ifma = p < 1 << 50 && ifma::available();
        // The double tables wherever the CPU could use them (so that the tests compare the
        // double lanes with the scalar code on IFMA machines too); used where IFMA is not.
        let with_doubles = p < 1 << 50 && avx2::available();
        let avx2 = with_doubles && !ifma;
        let doubles = |ws: &[u64]| -> (Vec<f64>, Vec<f64>) {
            if !with_doubles {
                return (Vec::new(), Vec::new());
            }
            ws.iter().map(|&w| (w as f64, w as f64 / p as f64)).unzip()
        };
        let (fwd_f64, fwd_fp) = doubles(&fwd);
        let (inv_f64, inv_fp) = doubles(&inv);
        NttTables {
            m,
            fwd_s52: fwd.iter().map(|&w| s52(w)).collect(),
            inv_s52: inv.iter().map(|&w| s52(w)).collect(),
            n_inv_s52: s52(n_inv),
            ifma,
            fwd_f64,
            fwd_fp,
            inv_f64,
            inv_fp,
            avx2,
            fwd,
            fwd_shoup,
            inv,
            inv_shoup,
            n_inv,
            n_inv_shoup: m.shoup(n_inv),
            psi,
        }
    }

    /// Length of the transform.
    pub fn len(&self) -> usize {
        self.fwd.len()
    }

    /// Always false (a transform has at least one point).
    pub fn is_empty(&self) -> bool {
        self.fwd.is_empty()
    }

    /// Coefficients (residues) to evaluations, in place (`a` of the tables' length).
    pub fn forward(&self, a: &mut [u64]) {
        #[cfg(target_arch = "x86_64")]
        self.dispatch(a, [ifma::forward, avx2::forward], Self::forward_scalar);
        #[cfg(not(target_arch = "x86_64"))]
        self.dispatch(a, Self::forward_scalar);
    }

    /// Runs `vector[0]` (AVX-512 IFMA) or `vector[1]` (AVX2 and FMA) where the tables allow
    /// it, `scalar` elsewhere, on `a` of the tables' length.
    fn dispatch(
        &self,
        a: &mut [u64],
        #[cfg(target_arch = "x86_64")] vector: [unsafe fn(&NttTables, &mut [u64]); 2],
        scalar: fn(&NttTables, &mut [u64]),
    ) {
        assert_eq!(a.len(), self.len(), "a transform of the tables' length");
        #[cfg(target_arch = "x86_64")]
        if self.ifma && a.len() >= 16 {
            // SAFETY: `ifma` is set only when the CPU has AVX-512F and IFMA and p < 2^50.
            unsafe { vector[0](self, a) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.avx2 && a.len() >= 8 {
            // SAFETY: `avx2` is set only when the CPU has AVX2 and FMA and p < 2^50 (and the
            // double tables are then filled).
            unsafe { vector[1](self, a) };
            return;
        }
        scalar(self, a);
    }

    /// [`NttTables::forward`] without vector instructions.
    fn forward_scalar(&self, a: &mut [u64]) {
        let n = a.len();
        debug_assert_eq!(n, self.len());
        let m = &self.m;
        let mut t = n;
        let mut groups = 1;
        while groups < n {
            t >>= 1;
            for i in 0..groups {
                let (w, ws) = (self.fwd[groups + i], self.fwd_shoup[groups + i]);
                let (lo, hi) = a[2 * i * t..2 * i * t + 2 * t].split_at_mut(t);
                for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                    let u = *x;
                    let v = m.mul_shoup(*y, w, ws);
                    *x = m.add(u, v);
                    *y = m.sub(u, v);
                }
            }
            groups <<= 1;
        }
    }

    /// Evaluations to coefficients, in place (`a` of the tables' length).
    pub fn inverse(&self, a: &mut [u64]) {
        #[cfg(target_arch = "x86_64")]
        self.dispatch(a, [ifma::inverse, avx2::inverse], Self::inverse_scalar);
        #[cfg(not(target_arch = "x86_64"))]
        self.dispatch(a, Self::inverse_scalar);
    }

    /// [`NttTables::inverse`] without vector instructions.
    fn inverse_scalar(&self, a: &mut [u64]) {
        let n = a.len();
        debug_assert_eq!(n, self.len());
        let m = &self.m;
        let mut t = 1;
        let mut groups = n >> 1;
        while groups >= 1 {
            for i in 0..groups {
                let (w, ws) = (self.inv[groups + i], self.inv_shoup[groups + i]);
                let (lo, hi) = a[2 * i * t..2 * i * t + 2 * t].split_at_mut(t);
                for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                    let (u, v) = (*x, *y);
                    *x = m.add(u, v);
                    *y = m.mul_shoup(m.sub(u, v), w, ws);
                }
            }
            t <<= 1;
            groups >>= 1;
        }
        for x in a.iter_mut() {
            *x = m.mul_shoup(*x, self.n_inv, self.n_inv_shoup);
        }
    }

    /// `floor(w 2^52 / p)` for each `w` of `ws` (below `p`): the quotients
    /// [`NttTables::mul_add`] takes.
    pub fn quotients52(&self, ws: &[u64]) -> Vec<u64> {
        // A floating-point estimate within a few units (every w < p), corrected with the exact
        // remainder: no 128-bit division per value.
        let p = self.m.p;
        let scale = (1u64 << 52) as f64 / p as f64;
        ws.iter()
            .map(|&w| {
                let mut q = (w as f64 * scale) as u64;
                let target = (w as i128) << 52;
                let mut r = target - q as i128 * p as i128;
                while r < 0 {
                    q -= 1;
                    r += p as i128;
                }
                while r >= p as i128 {
                    q += 1;
                    r -= p as i128;
                }
                q
            })
            .collect()
    }

    /// What [`NttTables::mul_add`] takes with the multipliers `ws`: their
    /// [`NttTables::quotients52`] where it uses them (IFMA or scalar), nothing on the double
    /// lanes, which need none.
    pub fn mul_add_quotients(&self, ws: &[u64]) -> Vec<u64> {
        if self.avx2 {
            Vec::new()
        } else {
            self.quotients52(ws)
        }
    }

    /// `acc += x w (mod p)` slot-wise, for residues `acc`, `x`, `w` (below `p`) of equal length
    /// and `w52` the [`NttTables::mul_add_quotients`] of `w` (the [`NttTables::quotients52`],
    /// or empty), modulo a prime below `2^50` (the product's remainder must fit 52 bits);
    /// vectorised (IFMA, or AVX2 and FMA) where the transform is.
    pub fn mul_add(&self, acc: &mut [u64], x: &[u64], w: &[u64], w52: &[u64]) {
        assert!(
            self.m.p < 1 << 50,
            "multiply-adds modulo a prime below 2^50"
        );
        assert!(
            x.len() == acc.len() && w.len() == acc.len() && w52.len() == acc.len()
                || w52.is_empty() && x.len() == acc.len() && w.len() == acc.len(),
            "multiply-adds of equal lengths"
        );
        #[cfg(target_arch = "x86_64")]
        if self.ifma && acc.len().is_multiple_of(8) && !w52.is_empty() {
            // SAFETY: `ifma` is set only when the CPU has AVX-512F and IFMA, and p < 2^50.
            unsafe { ifma::mul_add(self.m.p, acc, x, w, w52) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.avx2 && acc.len().is_multiple_of(4) {
            // SAFETY: `avx2` is set only when the CPU has AVX2 and FMA, and p < 2^50.
            unsafe { avx2::mul_add(self.m.p, acc, x, w) };
            return;
        }
        let m = &self.m;
        if w52.is_empty() {
            for ((a, &xv), &wv) in acc.iter_mut().zip(x).zip(w) {
                *a = m.add(*a, m.mul(xv, wv));
            }
            return;
        }
        for (((a, &xv), &wv), &w52v) in acc.iter_mut().zip(x).zip(w).zip(w52) {
            let q = ((xv as u128 * w52v as u128) >> 52) as u64;
            let r = (wv.wrapping_mul(xv).wrapping_sub(q.wrapping_mul(m.p))) & ((1 << 52) - 1);
            *a = m.add(*a, r.min(r.wrapping_sub(m.p)));
        }
    }

    /// The exponent `e` (odd, below `2N`) of the root `psi^e` at which output `i` of
    /// [`NttTables::forward`] evaluates.
    pub fn exponent(&self, i: usize) -> usize {
        2 * bit_reverse(i, self.len().trailing_zeros()) + 1
    }
}

/// The transform with AVX-512 IFMA (52-bit multiplies), for primes below `2^50`, with Harvey's
/// lazy butterflies (as in Intel's HEXL): values stay in `[0, 4p)` (forward) or `[0, 2p)`
/// (inverse) between stages, and a product by a twiddle `w` is `w y - floor(w' y / 2^52) p` with
/// `w' = floor(w 2^52 / p)`, in `[0, 2p)` for every `y < 2^52`; the last step reduces to
/// `[0, p)`, so the outputs are exactly the scalar transform's. Stages whose butterflies are
/// fewer than 8 apart run the same lazy butterflies on scalars.
#[cfg(target_arch = "x86_64")]
mod ifma {
    use super::NttTables;
    use std::arch::x86_64::*;

    /// Whether the CPU has what [`forward`] and [`inverse`] need.
    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512ifma")
            && crate::mpc::cpu::wide()
    }

    const MASK52: u64 = (1 << 52) - 1;

    /// A prime's constants in every lane, and the lazy products on them.
    struct Lanes {
        p: __m512i,
        two_p: __m512i,
        zero: __m512i,
        mask: __m512i,
    }

    impl Lanes {
        #[inline]
        fn new(p: u64) -> Lanes {
            // SAFETY: AVX-512F broadcasts; callers run only where the CPU has it.
            unsafe {
                Lanes {
                    p: _mm512_set1_epi64(p as i64),
                    two_p: _mm512_set1_epi64(2 * p as i64),
                    zero: _mm512_setzero_si512(),
                    mask: _mm512_set1_epi64(MASK52 as i64),
                }
            }
        }

        /// `w y mod p` in `[0, 2p)` per lane, for `y < 2^52` and `ws` the 52-bit Shoup
        /// quotient of `w`.
        ///
        /// # Safety
        /// The CPU must have AVX-512F and IFMA.
        #[inline]
        #[target_feature(enable = "avx512f,avx512ifma")]
        unsafe fn mul(&self, y: __m512i, w: __m512i, ws: __m512i) -> __m512i {
            let q = _mm512_madd52hi_epu64(self.zero, y, ws);
            let wy = _mm512_madd52lo_epu64(self.zero, y, w);
            let qp = _mm512_madd52lo_epu64(self.zero, q, self.p);
            _mm512_and_si512(_mm512_sub_epi64(wy, qp), self.mask)
        }

        /// `x` less `m` where `x >= m` (`x < 2m`), per lane.
        #[inline]
        #[target_feature(enable = "avx512f")]
        fn reduce(&self, x: __m512i, m: __m512i) -> __m512i {
            _mm512_min_epu64(x, _mm512_sub_epi64(x, m))
        }
    }

    /// `w y mod p` in `[0, 2p)`, for `y < 2^52`.
    #[inline(always)]
    fn mul_lazy(y: u64, w: u64, ws: u64, p: u64) -> u64 {
        let q = ((y as u128 * ws as u128) >> 52) as u64;
        (w.wrapping_mul(y).wrapping_sub(q.wrapping_mul(p))) & MASK52
    }

    #[inline(always)]
    fn reduce_2p(x: u64, two_p: u64) -> u64 {
        x.min(x.wrapping_sub(two_p))
    }

    /// The lanes of the butterflies `half` (1, 2 or 4) apart in 16 consecutive words: `x` and
    /// `y` take element `g 2 half + o` and `g 2 half + half + o` for lane `g half + o`; `back`
    /// puts them back (indices into `x` then `y`); `w` is each lane's group.
    fn lanes(half: usize) -> ([i64; 8], [i64; 8], [i64; 16], [i64; 8]) {
        let x = std::array::from_fn(|l| ((l / half) * 2 * half + l % half) as i64);
        let y = std::array::from_fn(|l| ((l / half) * 2 * half + half + l % half) as i64);
        let back = std::array::from_fn(|e| {
            let (g, o) = (e / (2 * half), e % (2 * half));
            if o < half {
                (g * half + o) as i64
            } else {
                (8 + g * half + o - half) as i64
            }
        });
        let w = std::array::from_fn(|l| (l / half) as i64);
        (x, y, back, w)
    }

    /// One stage whose butterflies are `half` (at least 8) apart: group `i` pairs its words
    /// with the twiddle `tw[groups + i]`, 8 lanes at a time.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and IFMA; `half` a multiple of 8.
    #[target_feature(enable = "avx512f,avx512ifma")]
    unsafe fn wide_stage(
        a: &mut [u64],
        half: usize,
        groups: usize,
        tw: &[u64],
        tw52: &[u64],
        butterfly: impl Fn(__m512i, __m512i, __m512i, __m512i) -> (__m512i, __m512i),
    ) {
        for i in 0..groups {
            let (w, ws) = (tw[groups + i], tw52[groups + i]);
            let (lo, hi) = a[2 * i * half..2 * i * half + 2 * half].split_at_mut(half);
            let (vw, vws) = (_mm512_set1_epi64(w as i64), _mm512_set1_epi64(ws as i64));
            for (x, y) in lo.chunks_exact_mut(8).zip(hi.chunks_exact_mut(8)) {
                // SAFETY: each chunk holds 8 words; unaligned loads and stores.
                unsafe {
                    let vx = _mm512_loadu_si512(x.as_ptr() as *const _);
                    let vy = _mm512_loadu_si512(y.as_ptr() as *const _);
                    let (nx, ny) = butterfly(vx, vy, vw, vws);
                    _mm512_storeu_si512(x.as_mut_ptr() as *mut _, nx);
                    _mm512_storeu_si512(y.as_mut_ptr() as *mut _, ny);
                }
            }
        }
    }

    /// One stage whose butterflies are `half` (1, 2 or 4) apart, 16 words at a time: the lanes
    /// gathered, `butterfly(x, y, w, w')` on them, and put back.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and IFMA; `a.len()` a multiple of 16. (The twiddle loads are
    /// bounds-checked slices of 8 words, from `groups` up to `groups + a.len() / (2 half) - 8 /
    /// half + 8`: `n / 4 + 6`, `n / 2 + 4` and `n` for `half` 4, 2 and 1 with `groups = n / (2
    /// half)`, within tables of `n` words.)
    #[target_feature(enable = "avx512f,avx512ifma")]
    unsafe fn small_stage(
        a: &mut [u64],
        half: usize,
        groups: usize,
        tw: &[u64],
        tw52: &[u64],
        butterfly: impl Fn(__m512i, __m512i, __m512i, __m512i) -> (__m512i, __m512i),
    ) {
        let (x, y, back, w) = lanes(half);
        // SAFETY: the index arrays hold 8 words each; loads and stores are unaligned and within
        // the 16-word chunks and the twiddle tables (checked by the caller's lengths).
        unsafe {
            let (vx_i, vy_i, vw_i) = (
                _mm512_loadu_si512(x.as_ptr() as *const _),
                _mm512_loadu_si512(y.as_ptr() as *const _),
                _mm512_loadu_si512(w.as_ptr() as *const _),
            );
            let (b0, b1) = (
                _mm512_loadu_si512(back.as_ptr() as *const _),
                _mm512_loadu_si512(back[8..].as_ptr() as *const _),
            );
            let per = 8 / half;
            for (c, chunk) in a.chunks_exact_mut(16).enumerate() {
                let g = groups + c * per;
                let v0 = _mm512_loadu_si512(chunk.as_ptr() as *const _);
                let v1 = _mm512_loadu_si512(chunk[8..].as_ptr() as *const _);
                let vx = _mm512_permutex2var_epi64(v0, vx_i, v1);
                let vy = _mm512_permutex2var_epi64(v0, vy_i, v1);
                let vw = _mm512_permutexvar_epi64(
                    vw_i,
                    _mm512_loadu_si512(tw[g..g + 8].as_ptr() as *const _),
                );
                let vws = _mm512_permutexvar_epi64(
                    vw_i,
                    _mm512_loadu_si512(tw52[g..g + 8].as_ptr() as *const _),
                );
                let (nx, ny) = butterfly(vx, vy, vw, vws);
                _mm512_storeu_si512(
                    chunk.as_mut_ptr() as *mut _,
                    _mm512_permutex2var_epi64(nx, b0, ny),
                );
                _mm512_storeu_si512(
                    chunk[8..].as_mut_ptr() as *mut _,
                    _mm512_permutex2var_epi64(nx, b1, ny),
                );
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX-512F and IFMA; `t.m.p < 2^50`.
    #[target_feature(enable = "avx512f,avx512ifma")]
    pub unsafe fn forward(t: &NttTables, a: &mut [u64]) {
        let n = a.len();
        let (p, two_p) = (t.m.p, 2 * t.m.p);
        let v = Lanes::new(p);
        let butterfly = |vx: __m512i, vy: __m512i, vw: __m512i, vws: __m512i| {
            let vx = v.reduce(vx, v.two_p);
            // SAFETY: the CPU has AVX-512F and IFMA (this function's contract).
            let vq = unsafe { v.mul(vy, vw, vws) };
            (
                _mm512_add_epi64(vx, vq),
                _mm512_add_epi64(_mm512_sub_epi64(vx, vq), v.two_p),
            )
        };
        let mut half = n;
        let mut groups = 1;
        while groups < n {
            half >>= 1;
            if half < 8 {
                // SAFETY: the CPU has AVX-512F and IFMA (the caller's contract), n >= 16 is a
                // power of two (so a multiple of 16), and the twiddle loads are checked slices.
                unsafe { small_stage(a, half, groups, &t.fwd, &t.fwd_s52, butterfly) };
                groups <<= 1;
                continue;
            }
            // SAFETY: the CPU has AVX-512F and IFMA (the caller's contract), half >= 8.
            unsafe { wide_stage(a, half, groups, &t.fwd, &t.fwd_s52, butterfly) };
            groups <<= 1;
        }
        for x in a.iter_mut() {
            let v = reduce_2p(*x, two_p);
            *x = v.min(v.wrapping_sub(p));
        }
    }

    /// # Safety
    /// The CPU must have AVX-512F and IFMA; `t.m.p < 2^50`.
    #[target_feature(enable = "avx512f,avx512ifma")]
    pub unsafe fn inverse(t: &NttTables, a: &mut [u64]) {
        let n = a.len();
        let p = t.m.p;
        let v = Lanes::new(p);
        let butterfly = |vx: __m512i, vy: __m512i, vw: __m512i, vws: __m512i| {
            let sum = v.reduce(_mm512_add_epi64(vx, vy), v.two_p);
            let d = _mm512_sub_epi64(_mm512_add_epi64(vx, v.two_p), vy);
            // SAFETY: the CPU has AVX-512F and IFMA (this function's contract).
            (sum, unsafe { v.mul(d, vw, vws) })
        };
        let mut half = 1;
        let mut groups = n >> 1;
        while groups >= 1 {
            if half < 8 {
                // SAFETY: as in `forward`.
                unsafe { small_stage(a, half, groups, &t.inv, &t.inv_s52, butterfly) };
                half <<= 1;
                groups >>= 1;
                continue;
            }
            // SAFETY: as in `forward`.
            unsafe { wide_stage(a, half, groups, &t.inv, &t.inv_s52, butterfly) };
            half <<= 1;
            groups >>= 1;
        }
        for x in a.iter_mut() {
            let v = mul_lazy(*x, t.n_inv, t.n_inv_s52, p);
            *x = v.min(v.wrapping_sub(p));
        }
    }

    /// `acc += x w (mod p)` for residues, 8 at a time (the tail, if any, is the caller's).
    ///
    /// # Safety
    /// The CPU must have AVX-512F and IFMA; `p < 2^50`; the slices of equal length.
    #[target_feature(enable = "avx512f,avx512ifma")]
    pub unsafe fn mul_add(p: u64, acc: &mut [u64], x: &[u64], w: &[u64], w52: &[u64]) {
        let v = Lanes::new(p);
        for (((a, x), w), w52) in acc
            .chunks_exact_mut(8)
            .zip(x.chunks_exact(8))
            .zip(w.chunks_exact(8))
            .zip(w52.chunks_exact(8))
        {
            // SAFETY: every chunk holds 8 words; unaligned loads and stores.
            unsafe {
                let va = _mm512_loadu_si512(a.as_ptr() as *const _);
                let vx = _mm512_loadu_si512(x.as_ptr() as *const _);
                let vw = _mm512_loadu_si512(w.as_ptr() as *const _);
                let vw52 = _mm512_loadu_si512(w52.as_ptr() as *const _);
                let r = v.reduce(v.mul(vx, vw, vw52), v.p);
                let s = v.reduce(_mm512_add_epi64(va, r), v.p);
                _mm512_storeu_si512(a.as_mut_ptr() as *mut _, s);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2;

#[cfg(not(target_arch = "x86_64"))]
mod ifma {
    // Never used: `available` is false.
    pub fn available() -> bool {
        false
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    // Never used: `available` is false.
    pub fn available() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::prg::{Prg, Seed};

    const P: u64 = 0x003f_ffff_ffef_8001;

    /// Schoolbook product in `Z_p[X] / (X^n + 1)`.
    fn negacyclic(m: &Modulus, a: &[u64], b: &[u64]) -> Vec<u64> {
        let n = a.len();
        let mut c = vec![0u64; n];
        for i in 0..n {
            for j in 0..n {
                let v = m.mul(a[i], b[j]);
                if i + j < n {
                    c[i + j] = m.add(c[i + j], v);
                } else {
                    c[i + j - n] = m.sub(c[i + j - n], v);
                }
            }
        }
        c
    }

    #[test]
    fn products_through_the_transform_are_negacyclic_products() {
        for n in [1usize, 2, 8, 64, 256] {
            let t = NttTables::new(P, n);
            let mut prg = Prg::new(&Seed([n as u8; 32]), 0);
            let a: Vec<u64> = (0..n).map(|_| prg.next_u64() % P).collect();
            let b: Vec<u64> = (0..n).map(|_| prg.next_u64() % P).collect();
            let want = negacyclic(&t.m, &a, &b);
            let (mut fa, mut fb) = (a.clone(), b.clone());
            t.forward(&mut fa);
            t.forward(&mut fb);
            let mut fc: Vec<u64> = fa.iter().zip(&fb).map(|(x, y)| t.m.mul(*x, *y)).collect();
            t.inverse(&mut fc);
            assert_eq!(fc, want, "n = {n}");
            t.inverse(&mut fa);
            assert_eq!(fa, a, "round trip, n = {n}");
        }
    }

    #[test]
    fn the_vectorised_transform_equals_the_scalar_one() {
        // The largest prime below 2^50 that is 1 mod 2^14, where IFMA, or else AVX2
        // and FMA, is used when the CPU has it (on other CPUs both sides are the scalar
        // transform). 8 is the shortest the double lanes take, 16 the IFMA lanes.
        const Q: u64 = 0x3_ffff_ffff_c001;
        for n in [8usize, 16, 64, 8192] {
            let t = NttTables::new(Q, n);
            assert_matches_scalar(&t, Q, n);
        }
        // The primes the slot products use, at their length.
        let primes = crate::mpc::he::rlwe::SLOT_PRIMES
            .into_iter()
            .chain(crate::mpc::he::slots::CRT_PRIMES);
        for q in primes {
            assert_matches_scalar(&NttTables::new(q, 8192), q, 8192);
        }
        if !ifma::available() && !avx2::available() {
            eprintln!("no IFMA and no AVX2 on this CPU: only the scalar transform was compared");
        }
    }

    /// The dispatched transforms (vectorised where the CPU allows) against the scalar ones, on
    /// all-`p - 1` words, words at the ends of the range and random ones.
    fn assert_matches_scalar(t: &NttTables, q: u64, n: usize) {
        let mut prg = Prg::new(&Seed([n as u8; 32]), q);
        // Inputs whose first stage's remainders are all (q + 1) / 2, so that half its outputs
        // are (3q - 1) / 2, the lazy forward transform's largest inputs to its second stage.
        let c = t.m.mul(q.div_ceil(2), t.m.inv(t.fwd[1]));
        for round in 0..6 {
            let a: Vec<u64> = match round {
                0 => vec![q - 1; n],
                1 => (0..n as u64)
                    .map(|i| [0, 1, q - 1, q - 2][i as usize % 4])
                    .collect(),
                2 => (0..n).map(|i| if i < n / 2 { q - 1 } else { c }).collect(),
                3 => (0..n)
                    .map(|i| if i < n / 2 { q - 1 } else { q - c })
                    .collect(),
                _ => (0..n).map(|_| prg.next_u64() % q).collect(),
            };
            let (mut v, mut s) = (a.clone(), a.clone());
            t.forward(&mut v);
            t.forward_scalar(&mut s);
            assert_eq!(v, s, "forward, n = {n}, p = {q}");
            t.inverse(&mut v);
            t.inverse_scalar(&mut s);
            assert_eq!(v, s, "inverse, n = {n}, p = {q}");
            assert_eq!(v, a, "round trip, n = {n}, p = {q}");
            // The double lanes themselves, where the CPU has them (also behind IFMA).
            #[cfg(target_arch = "x86_64")]
            if !t.fwd_f64.is_empty() {
                let mut d = a.clone();
                // SAFETY: the double tables are filled only where the CPU has AVX2 and FMA and
                // p < 2^50; n >= 8 is the tables' length.
                unsafe { avx2::forward(t, &mut d) };
                t.forward_scalar(&mut s);
                assert_eq!(d, s, "double lanes forward, n = {n}, p = {q}");
                // SAFETY: as above.
                unsafe { avx2::inverse(t, &mut d) };
                assert_eq!(d, a, "double lanes round trip, n = {n}, p = {q}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "tables' length")]
    fn a_transform_of_another_length_is_refused() {
        // Longer than the tables: the vectorised stages would read past the twiddles.
        let t = NttTables::new(0x3_ffff_ffff_c001, 16);
        t.forward(&mut [0u64; 64]);
    }

    #[test]
    fn multiply_adds_equal_the_remainders() {
        const Q: u64 = 0x3_ffff_ffff_c001;
        let t = NttTables::new(Q, 64);
        let mut prg = Prg::new(&Seed([7; 32]), 2);
        let mut draw = |n: usize| -> Vec<u64> { (0..n).map(|_| prg.next_u64() % Q).collect() };
        // 64 words (vectorised where IFMA is) and 13 (the scalar path), extremes included.
        for n in [64usize, 13] {
            let (mut acc, mut x, mut w) = (draw(n), draw(n), draw(n));
            acc[0] = Q - 1;
            w[1] = Q - 1;
            // The largest product, in one lane.
            (x[2], w[2], acc[2]) = (Q - 1, Q - 1, Q - 1);
            let want: Vec<u64> = acc
                .iter()
                .zip(&x)
                .zip(&w)
                .map(|((&a, &xv), &wv)| ((a as u128 + xv as u128 * wv as u128) % Q as u128) as u64)
                .collect();
            let q = t.quotients52(&w);
            for (&wv, &qv) in w.iter().zip(&q) {
                assert_eq!(qv, (((wv as u128) << 52) / Q as u128) as u64);
            }
            let mut acc2 = acc.clone();
            t.mul_add(&mut acc, &x, &w, &q);
            assert_eq!(acc, want, "n = {n}");
            // With what the tables ask for (nothing on double lanes), and with no quotients.
            let mut acc3 = acc2.clone();
            t.mul_add(&mut acc2, &x, &w, &t.mul_add_quotients(&w));
            assert_eq!(acc2, want, "n = {n}, the tables' quotients");
            t.mul_add(&mut acc3, &x, &w, &[]);
            assert_eq!(acc3, want, "n = {n}, no quotients");
            #[cfg(target_arch = "x86_64")]
            if avx2::available() && n % 4 == 0 {
                let mut acc4 = acc3.clone();
                for ((a, &xv), &wv) in acc4.iter_mut().zip(&x).zip(&w) {
                    *a = ((*a as u128 + xv as u128 * wv as u128) % Q as u128) as u64;
                }
                let mut lanes = acc3.clone();
                // SAFETY: the CPU has AVX2 and FMA (checked), Q < 2^50, equal lengths.
                unsafe { avx2::mul_add(Q, &mut lanes, &x, &w) };
                assert_eq!(lanes, acc4, "n = {n}, double lanes");
            }
        }
    }

    #[test]
    fn outputs_are_evaluations_at_the_stated_roots() {
        let n = 16;
        let t = NttTables::new(P, n);
        let a: Vec<u64> = (0..n as u64).map(|i| i * i + 3).collect();
        let mut fa = a.clone();
        t.forward(&mut fa);
        for (i, v) in fa.iter().enumerate() {
            let x = t.m.pow(t.psi, t.exponent(i) as u64);
            let eval = a
                .iter()
                .rev()
                .fold(0, |acc, c| t.m.add(t.m.mul(acc, x), *c));
            assert_eq!(*v, eval, "output {i}");
        }
        assert_eq!(t.m.pow(t.psi, n as u64), P - 1);
    }
}
