//! The transform and the multiply-adds with AVX2 and FMA on double-precision lanes, for primes
//! below `2^50`, on CPUs without AVX-512 IFMA.
//!
//! **Exact products in doubles.** Residues below `2^50` are exact doubles. For `y, w < p` the
//! product `y w < 2^100` is `h + l` exactly, `h = fl(y w)` and `l = fma(y, w, -h)` (the rounding
//! error of a product is a double; `|l| <= 2^46`). With `q` the nearest integer to `y w / p`
//! as estimated in doubles (`y fl(w / p)` for a twiddle, `h fl(1 / p)` otherwise: each within
//! `3 2^-53` relative, so within `3/8` of `y w / p`, and `q` within `7/8`), the remainder
//! `r = y w - q p` lies in `(-p, p)`, and
//!
//! ```text
//! r = fma(-q, p, h) + l
//! ```
//!
//! is computed exactly: `h - q p = r - l` is an integer below `2^51` in magnitude, so the fused
//! operation rounds nothing, and neither does adding `l`. One conditional `+ p` gives the
//! residue. Every operation is exact and the transforms' outputs are residues in `[0, p)`, so
//! they are exactly [`NttTables::forward_scalar`]'s and [`NttTables::inverse_scalar`]'s
//! (tested); between stages the values are integers of bounded magnitude (below).
//!
//! **Lazy stages** (the forward transform). The same steps without the final `+ p` give, for
//! any integer `y` with `|y| <= 2^51`, `r = y w - q p` exactly, with `|r| < p (1/2 + |y| 2^-52)`
//! (`q` is within `|y| 2^-52` of `y w / p` before rounding); its magnitude bounds the rest of
//! the argument above (`|h - q p| < 2^53`). So a Cooley-Tukey butterfly need not reduce: from
//! inputs of magnitude at most `p`, `|r| < 3p/4` and the outputs `x +- r` stay below `1.75 p`;
//! from those, `|r| < 0.94 p` and the outputs stay below `2.7 p < 2^52`. Every second stage
//! then brings its outputs back to magnitude at most `(p + 1) / 2` by subtracting `p` times
//! the nearest integer to `x fl(1 / p)` (exact: the result is a small integer), and the last
//! stage lifts them to `[0, p)`: a butterfly costs 8 operations on the lazy stages and 14 on
//! the others (20 on the last), about 11 on average at `N = 8192`, against 17 with every
//! residue kept in `[0, p)`. The inverse (Gentleman-Sande) butterfly brings its sum back within
//! `(p + 1) / 2` and leaves the product of its difference (below `2 p`) below `p`: every value
//! stays within `p`, 11 operations against 17, and the last product (by `1 / N`, reduced in
//! full, whose argument above holds for any integer `|y| < p`) lifts them to `[0, p)`.
//!
//! **Layout.** The words are converted to doubles in place (`x | 2^52` read as a double, less
//! `2^52`: exact below `2^52`) and back at the end; butterflies at least 4 apart take 4 lanes of
//! one group, those 2 and 1 apart are gathered from 8 consecutive words by 128-bit-lane
//! permutes and unpacks. Twiddles and `w / p` come from tables of doubles made with the
//! scalar ones.

use super::NttTables;
use std::arch::x86_64::*;

/// Whether the CPU has what this module needs.
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// `2^52` as the bits of a double (exponent 52, mantissa 0).
const MAGIC_BITS: u64 = 0x4330_0000_0000_0000;
const MAGIC: f64 = 4_503_599_627_370_496.0;

/// A prime's constants in every lane, and the exact modular operations on them.
#[derive(Clone, Copy)]
struct Lanes {
    p: __m256d,
    p_inv: __m256d,
    zero: __m256d,
}

impl Lanes {
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn new(p: u64) -> Lanes {
        Lanes {
            p: _mm256_set1_pd(p as f64),
            p_inv: _mm256_set1_pd(1.0 / p as f64),
            zero: _mm256_setzero_pd(),
        }
    }

    /// `y w mod p` per lane, for an integer `|y| < p`, a residue `w` and `wp = fl(w / p)`
    /// (module docs).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn mul(&self, y: __m256d, w: __m256d, wp: __m256d) -> __m256d {
        self.lift(self.mul_lazy(y, w, wp))
    }

    /// `y w mod p` per lane, for residues `y` and `w` with no quotient of `w` at hand.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn mul_any(&self, y: __m256d, w: __m256d) -> __m256d {
        let h = _mm256_mul_pd(y, w);
        let l = _mm256_fmsub_pd(y, w, h);
        let q = _mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_pd(h, self.p_inv),
        );
        let r = _mm256_add_pd(_mm256_fnmadd_pd(q, self.p, h), l);
        self.lift(r)
    }

    /// `y w - q p` per lane with `q` the nearest integer to `y fl(w / p)`, for an integer `y`
    /// of magnitude at most `2^51`, a residue `w` and `wp = fl(w / p)`: of magnitude below
    /// `p (1/2 + |y| 2^-52)`, so below `p` for `|y| <= 2 p` (module docs, "Lazy stages").
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn mul_lazy(&self, y: __m256d, w: __m256d, wp: __m256d) -> __m256d {
        let h = _mm256_mul_pd(y, w);
        let l = _mm256_fmsub_pd(y, w, h);
        let q = _mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_pd(y, wp),
        );
        _mm256_add_pd(_mm256_fnmadd_pd(q, self.p, h), l)
    }

    /// `x - q p` with `q` the nearest integer to `x fl(1 / p)`, for an integer `x` of magnitude
    /// below `2^52`: congruent to `x`, of magnitude at most `(p + 1) / 2` (`p` odd).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn centre(&self, x: __m256d) -> __m256d {
        let q = _mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_pd(x, self.p_inv),
        );
        _mm256_fnmadd_pd(q, self.p, x)
    }

    /// `r + p` where `r < 0` (for `r` in `(-p, p)`).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn lift(&self, r: __m256d) -> __m256d {
        let neg = _mm256_cmp_pd::<_CMP_LT_OQ>(r, self.zero);
        _mm256_add_pd(r, _mm256_and_pd(neg, self.p))
    }

    /// `x + y mod p` for residues.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn add(&self, x: __m256d, y: __m256d) -> __m256d {
        let s = _mm256_add_pd(x, y);
        let ge = _mm256_cmp_pd::<_CMP_GE_OQ>(s, self.p);
        _mm256_sub_pd(s, _mm256_and_pd(ge, self.p))
    }
}

/// Four words below `2^52` as exact doubles (`x | 2^52` read as a double, less `2^52`).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn as_doubles(v: __m256i) -> __m256d {
    let bits = _mm256_set1_epi64x(MAGIC_BITS as i64);
    _mm256_sub_pd(
        _mm256_castsi256_pd(_mm256_or_si256(v, bits)),
        _mm256_set1_pd(MAGIC),
    )
}

/// Four doubles holding integers in `[0, 2^52)` as words ([`as_doubles`] undone).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn as_words(d: __m256d) -> __m256i {
    let bits = _mm256_set1_epi64x(MAGIC_BITS as i64);
    _mm256_xor_si256(
        _mm256_castpd_si256(_mm256_add_pd(d, _mm256_set1_pd(MAGIC))),
        bits,
    )
}

/// Words below `2^52` to exact doubles, in place.
#[target_feature(enable = "avx2,fma")]
fn to_doubles(a: &mut [u64]) {
    for c in a.chunks_exact_mut(4) {
        // SAFETY: each chunk holds 4 words; unaligned loads and stores.
        unsafe {
            let d = as_doubles(_mm256_loadu_si256(c.as_ptr() as *const _));
            _mm256_storeu_pd(c.as_mut_ptr() as *mut f64, d);
        }
    }
}

/// Doubles holding integers in `[0, 2^52)` back to words, in place.
#[target_feature(enable = "avx2,fma")]
fn to_words(a: &mut [u64]) {
    for c in a.chunks_exact_mut(4) {
        // SAFETY: each chunk holds 4 words; unaligned loads and stores.
        unsafe {
            let v = as_words(_mm256_loadu_pd(c.as_ptr() as *const f64));
            _mm256_storeu_si256(c.as_mut_ptr() as *mut _, v);
        }
    }
}

/// The twiddles of the stages whose butterflies are `half` apart (2 or 1) for the 8 words at
/// group `g` (the first of the 8's groups), in the lanes [`stage`] gathers them into (a
/// checked slice of the four twiddles from `g`).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn small_twiddles(tw: &[f64], g: usize, half: usize) -> __m256d {
    // SAFETY: a checked slice of 4 doubles; unaligned load.
    let t = unsafe { _mm256_loadu_pd(tw[g..g + 4].as_ptr()) };
    if half == 2 {
        // Words 0-3 are group g, 4-7 group g + 1: lanes [x0, x1, x4, x5].
        _mm256_permute4x64_pd::<0b01_01_00_00>(t)
    } else {
        // Pairs (0, 1), (2, 3), (4, 5), (6, 7) are groups g .. g + 3: lanes [x0, x4, x2, x6].
        _mm256_permute4x64_pd::<0b11_01_10_00>(t)
    }
}

/// One stage: group `i < groups` pairs the words `2 i half + o` and `2 i half + half + o`
/// (`o < half`) through `butterfly(x, y, w, w / p)` with the twiddle `tw[groups + i]`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn stage(
    a: &mut [f64],
    half: usize,
    groups: usize,
    tw: (&[f64], &[f64]),
    butterfly: impl Fn(__m256d, __m256d, __m256d, __m256d) -> (__m256d, __m256d),
) {
    let (tw, twp) = tw;
    if half >= 4 {
        for i in 0..groups {
            let (w, wp) = (
                _mm256_set1_pd(tw[groups + i]),
                _mm256_set1_pd(twp[groups + i]),
            );
            let (lo, hi) = a[2 * i * half..2 * i * half + 2 * half].split_at_mut(half);
            for (x, y) in lo.chunks_exact_mut(4).zip(hi.chunks_exact_mut(4)) {
                // SAFETY: each chunk holds 4 doubles; unaligned loads and stores.
                unsafe {
                    let (nx, ny) = butterfly(
                        _mm256_loadu_pd(x.as_ptr()),
                        _mm256_loadu_pd(y.as_ptr()),
                        w,
                        wp,
                    );
                    _mm256_storeu_pd(x.as_mut_ptr(), nx);
                    _mm256_storeu_pd(y.as_mut_ptr(), ny);
                }
            }
        }
        return;
    }
    // 8 words hold 8 / (2 half) groups.
    let per = 4 / half;
    for (c, chunk) in a.chunks_exact_mut(8).enumerate() {
        let g = groups + c * per;
        let (w, wp) = (small_twiddles(tw, g, half), small_twiddles(twp, g, half));
        // SAFETY: each chunk holds 8 doubles; unaligned loads and stores.
        unsafe {
            let v0 = _mm256_loadu_pd(chunk.as_ptr());
            let v1 = _mm256_loadu_pd(chunk[4..].as_ptr());
            let (o0, o1) = if half == 2 {
                let x = _mm256_permute2f128_pd::<0x20>(v0, v1);
                let y = _mm256_permute2f128_pd::<0x31>(v0, v1);
                let (nx, ny) = butterfly(x, y, w, wp);
                (
                    _mm256_permute2f128_pd::<0x20>(nx, ny),
                    _mm256_permute2f128_pd::<0x31>(nx, ny),
                )
            } else {
                let x = _mm256_unpacklo_pd(v0, v1);
                let y = _mm256_unpackhi_pd(v0, v1);
                let (nx, ny) = butterfly(x, y, w, wp);
                (_mm256_unpacklo_pd(nx, ny), _mm256_unpackhi_pd(nx, ny))
            };
            _mm256_storeu_pd(chunk.as_mut_ptr(), o0);
            _mm256_storeu_pd(chunk[4..].as_mut_ptr(), o1);
        }
    }
}

/// [`NttTables::forward`] on 4 double lanes.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `t.m.p < 2^50`; `a.len()` the tables' length, at least 8.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn forward(t: &NttTables, a: &mut [u64]) {
    let n = a.len();
    debug_assert!(a.iter().all(|&x| x < t.m.p), "residues in");
    let v = Lanes::new(t.m.p);
    to_doubles(a);
    let d: &mut [f64] = bytemuck::cast_slice_mut(a);
    // Lazy stages (module docs): values within `p` in magnitude grow below `2 p`, then below
    // `3 p` and are brought back within `(p + 1) / 2`; the last stage's outputs to `[0, p)`.
    let lazy = |x: __m256d, y: __m256d, w: __m256d, wp: __m256d| {
        let m = v.mul_lazy(y, w, wp);
        (_mm256_add_pd(x, m), _mm256_sub_pd(x, m))
    };
    let reduced = |x: __m256d, y: __m256d, w: __m256d, wp: __m256d| {
        let m = v.mul_lazy(y, w, wp);
        (v.centre(_mm256_add_pd(x, m)), v.centre(_mm256_sub_pd(x, m)))
    };
    let last = |x: __m256d, y: __m256d, w: __m256d, wp: __m256d| {
        let m = v.mul_lazy(y, w, wp);
        (
            v.lift(v.centre(_mm256_add_pd(x, m))),
            v.lift(v.centre(_mm256_sub_pd(x, m))),
        )
    };
    let (mut half, mut groups, mut s) = (n, 1, 0);
    while groups < n {
        half >>= 1;
        let tw = (&t.fwd_f64[..], &t.fwd_fp[..]);
        if groups * 2 == n {
            stage(d, half, groups, tw, last);
        } else if s % 2 == 1 {
            stage(d, half, groups, tw, reduced);
        } else {
            stage(d, half, groups, tw, lazy);
        }
        groups <<= 1;
        s += 1;
    }
    to_words(a);
}

/// [`NttTables::inverse`] on 4 double lanes.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `t.m.p < 2^50`; `a.len()` the tables' length, at least 8.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn inverse(t: &NttTables, a: &mut [u64]) {
    let n = a.len();
    debug_assert!(a.iter().all(|&x| x < t.m.p), "residues in");
    let v = Lanes::new(t.m.p);
    to_doubles(a);
    let d: &mut [f64] = bytemuck::cast_slice_mut(a);
    // Lazy (module docs): values within `p` in magnitude stay so, the sum brought back within
    // `(p + 1) / 2` and the difference's product below `p`; the product by `1 / N` lifts them.
    let butterfly = |x: __m256d, y: __m256d, w: __m256d, wp: __m256d| {
        (
            v.centre(_mm256_add_pd(x, y)),
            v.mul_lazy(_mm256_sub_pd(x, y), w, wp),
        )
    };
    let (mut half, mut groups) = (1, n >> 1);
    while groups >= 1 {
        stage(d, half, groups, (&t.inv_f64, &t.inv_fp), butterfly);
        half <<= 1;
        groups >>= 1;
    }
    let (w, wp) = (
        _mm256_set1_pd(t.n_inv as f64),
        _mm256_set1_pd(t.n_inv as f64 / t.m.p as f64),
    );
    for c in d.chunks_exact_mut(4) {
        // SAFETY: each chunk holds 4 doubles; unaligned loads and stores.
        unsafe { _mm256_storeu_pd(c.as_mut_ptr(), v.mul(_mm256_loadu_pd(c.as_ptr()), w, wp)) };
    }
    to_words(a);
}

/// `acc += x w (mod p)` for residues, 4 at a time (the tail, if any, is the caller's).
///
/// # Safety
/// The CPU must have AVX2 and FMA; `p < 2^50`; the slices of equal length.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn mul_add(p: u64, acc: &mut [u64], x: &[u64], w: &[u64]) {
    let v = Lanes::new(p);
    for ((a, x), w) in acc
        .chunks_exact_mut(4)
        .zip(x.chunks_exact(4))
        .zip(w.chunks_exact(4))
    {
        // SAFETY: every chunk holds 4 words; unaligned loads and stores.
        unsafe {
            let va = as_doubles(_mm256_loadu_si256(a.as_ptr() as *const _));
            let vx = as_doubles(_mm256_loadu_si256(x.as_ptr() as *const _));
            let vw = as_doubles(_mm256_loadu_si256(w.as_ptr() as *const _));
            let s = v.add(va, v.mul_any(vx, vw));
            _mm256_storeu_si256(a.as_mut_ptr() as *mut _, as_words(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::prg::{Prg, Seed};

    /// The lanes' four values.
    fn lanes(v: __m256d) -> [f64; 4] {
        let mut out = [0.0; 4];
        // SAFETY: 4 doubles; unaligned store.
        unsafe { _mm256_storeu_pd(out.as_mut_ptr(), v) };
        out
    }

    #[test]
    fn lazy_products_and_centring_stay_within_their_bounds() {
        if !available() {
            eprintln!("no AVX2 and FMA on this CPU: nothing to check");
            return;
        }
        // The largest prime the double lanes take, and a slot prime.
        for p in [0x3_ffff_ffff_c001u64, crate::mpc::he::rlwe::SLOT_PRIMES[0]] {
            let t = NttTables::new(p, 64);
            let mut prg = Prg::new(&Seed([21; 32]), p);
            let pi = p as i128;
            let mut ys: Vec<i64> =
                vec![0, 1, (p - 1) as i64, (7 * p / 4) as i64, (2 * p - 2) as i64];
            ys.push((1i64 << 51) - 1);
            ys.extend((0..64).map(|_| (prg.next_u64() % (2 * p)) as i64));
            let ys: Vec<i64> = ys.iter().flat_map(|&y| [y, -y]).collect();
            let mut ws: Vec<u64> = t.fwd.clone();
            ws.extend([1, p - 1, p / 2]);
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe {
                let v = Lanes::new(p);
                for &w in &ws {
                    let (wd, wp) = (
                        _mm256_set1_pd(w as f64),
                        _mm256_set1_pd(w as f64 / p as f64),
                    );
                    for y in ys.chunks(4).filter(|c| c.len() == 4) {
                        let yv = _mm256_set_pd(y[3] as f64, y[2] as f64, y[1] as f64, y[0] as f64);
                        let r = lanes(v.mul_lazy(yv, wd, wp));
                        for (i, &y) in y.iter().enumerate() {
                            let (ri, yw) = (r[i] as i128, y as i128 * w as i128);
                            assert_eq!(r[i], ri as f64, "an integer");
                            assert_eq!((yw - ri).rem_euclid(pi), 0, "congruent: y {y} w {w}");
                            let bound =
                                pi as f64 * (0.5 + (y.unsigned_abs() as f64) / 2f64.powi(52));
                            assert!((ri.abs() as f64) < bound, "y {y} w {w}: {ri}");
                        }
                    }
                }
                // Centring: at the half-way points around multiples of p, and the range's ends.
                let mut xs: Vec<i64> = (-3i64..=3)
                    .flat_map(|k| {
                        let c = k * p as i64;
                        let h = (p / 2) as i64;
                        [c - h, c - h - 1, c + h, c + h + 1, c]
                    })
                    .collect();
                xs.extend([(1i64 << 52) - 1, -((1i64 << 52) - 1)]);
                for x in xs.chunks(4).filter(|c| c.len() == 4) {
                    let xv = _mm256_set_pd(x[3] as f64, x[2] as f64, x[1] as f64, x[0] as f64);
                    let c = lanes(v.centre(xv));
                    for (i, &x) in x.iter().enumerate() {
                        let ci = c[i] as i128;
                        assert_eq!((x as i128 - ci).rem_euclid(pi), 0, "congruent: {x}");
                        assert!(ci.abs() <= (pi + 1) / 2, "{x}: {ci}");
                        // And lifted, a residue.
                        let l = lanes(v.lift(_mm256_set1_pd(c[i])))[0];
                        assert!((0.0..p as f64).contains(&l) && l == l.trunc());
                    }
                }
            }
        }
    }
}
