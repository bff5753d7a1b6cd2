//! Arithmetic in the ring Z_2^64 on contiguous slices.
//!
//! Every secret value in the system is an element of Z_2^64: a `u64` with wrapping addition and
//! multiplication. Signed quantities use two's complement, so `-1` is `u64::MAX` and the usual
//! identities (`x + (-x) = 0`, `(x * y) mod 2^64`) hold without special cases. Because the ring
//! has characteristic 2^64, additive shares of a value are just `u64`s that sum (wrapping) to it.
//!
//! Functions here operate on whole slices so that hot loops are contiguous and allocation-free;
//! the dot-product kernels pick a vectorised implementation (AVX-512DQ has a native 64-bit lane
//! multiply) at run time and fall back to portable code elsewhere.

/// `dst[i] += src[i]` (wrapping).
#[inline]
pub fn add_assign(dst: &mut [u64], src: &[u64]) {
    assert_eq!(dst.len(), src.len(), "ring::add_assign length mismatch");
    for (d, s) in dst.iter_mut().zip(src) {
        *d = d.wrapping_add(*s);
    }
}

/// `dst[i] -= src[i]` (wrapping).
#[inline]
pub fn sub_assign(dst: &mut [u64], src: &[u64]) {
    assert_eq!(dst.len(), src.len(), "ring::sub_assign length mismatch");
    for (d, s) in dst.iter_mut().zip(src) {
        *d = d.wrapping_sub(*s);
    }
}

/// `dst[i] *= c` (wrapping).
#[inline]
pub fn scale_assign(dst: &mut [u64], c: u64) {
    for d in dst.iter_mut() {
        *d = d.wrapping_mul(c);
    }
}

/// `dst[i] = -dst[i]` (wrapping).
#[inline]
pub fn neg_assign(dst: &mut [u64]) {
    for d in dst.iter_mut() {
        *d = d.wrapping_neg();
    }
}

/// `dst[i] ^= src[i]`: addition in Z_2, 64 bits at a time (boolean shares).
#[inline]
pub fn xor_assign(dst: &mut [u64], src: &[u64]) {
    assert_eq!(dst.len(), src.len(), "ring::xor_assign length mismatch");
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= *s;
    }
}

/// Element-wise sum of several equally long vectors.
pub fn sum_all<'a>(len: usize, parts: impl IntoIterator<Item = &'a [u64]>) -> Vec<u64> {
    let mut out = vec![0u64; len];
    for p in parts {
        add_assign(&mut out, p);
    }
    out
}

/// Squared norms of consecutive blocks of every row: for row-major `rows` (rows x d) and block
/// lengths summing to `d`, `out[r * blocks.len() + b]` is the sum of squares of block `b` of
/// row `r`, in Z_2^64.
pub fn block_squares(rows: &[u64], d: usize, blocks: &[usize]) -> Vec<u64> {
    let mut out = Vec::with_capacity(rows.len() / d.max(1) * blocks.len());
    for row in rows.chunks_exact(d) {
        let mut at = 0;
        for &len in blocks {
            out.push(dot(&row[at..at + len], &row[at..at + len]));
            at += len;
        }
    }
    out
}

/// Inner product `sum a[i] * b[i]` in Z_2^64.
#[inline]
pub fn dot(a: &[u64], b: &[u64]) -> u64 {
    assert_eq!(a.len(), b.len(), "ring::dot length mismatch");
    kernel::dot(a, b)
}

/// For every listed column `j`, `out[t] += <row, q[j]>` where `q` is a row-major matrix whose rows
/// are `row.len()` long. This is the inner loop of the bilinear form: one row against many.
#[inline]
pub fn dot_row_many(row: &[u64], q: &[u64], cols: &[u32], out: &mut [u64]) {
    assert_eq!(cols.len(), out.len(), "ring::dot_row_many length mismatch");
    kernel::dot_row_many(row, q, cols, out)
}

mod kernel {
    //! Portable and AVX-512 variants of the dot-product loops. Both evaluate one row against four
    //! others at a time, so each load of the row feeds four products. The AVX-512 variant uses
    //! `vpmullq`, which multiplies eight 64-bit lanes at once.

    #[inline(always)]
    fn dot_generic(a: &[u64], b: &[u64]) -> u64 {
        let mut acc = [0u64; 4];
        let ca = a.chunks_exact(4);
        let cb = b.chunks_exact(4);
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for l in 0..4 {
                acc[l] = acc[l].wrapping_add(x[l].wrapping_mul(y[l]));
            }
        }
        let mut s = 0u64;
        for (x, y) in ra.iter().zip(rb) {
            s = s.wrapping_add(x.wrapping_mul(*y));
        }
        acc.iter().fold(s, |s, v| s.wrapping_add(*v))
    }

    fn dot_row_many_generic(row: &[u64], q: &[u64], cols: &[u32], out: &mut [u64]) {
        let w = row.len();
        for (o, &j) in out.iter_mut().zip(cols) {
            let j = j as usize;
            *o = o.wrapping_add(dot_generic(row, &q[j * w..(j + 1) * w]));
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod avx512 {
        use std::arch::x86_64::*;

        /// Loads eight lanes.
        #[target_feature(enable = "avx512f")]
        #[inline]
        fn load(s: &[u64; 8]) -> __m512i {
            // SAFETY: `s` is exactly 64 readable bytes; unaligned loads are allowed.
            unsafe { _mm512_loadu_epi64(s.as_ptr() as *const i64) }
        }

        fn lanes(s: &[u64]) -> impl Iterator<Item = &[u64; 8]> {
            s.chunks_exact(8).map(|c| c.try_into().expect("chunk of 8"))
        }

        /// Sum of lane-wise products of `a` and `b` over their whole 8-lane chunks.
        #[target_feature(enable = "avx512f,avx512dq")]
        fn dot1(a: &[u64], b: &[u64]) -> u64 {
            let mut acc = _mm512_setzero_si512();
            for (x, y) in lanes(a).zip(lanes(b)) {
                acc = _mm512_add_epi64(acc, _mm512_mullo_epi64(load(x), load(y)));
            }
            _mm512_reduce_add_epi64(acc) as u64
        }

        /// Four inner products of `a` with `b[0..4]` over their whole 8-lane chunks.
        #[target_feature(enable = "avx512f,avx512dq")]
        fn dot4(a: &[u64], b: [&[u64]; 4]) -> [u64; 4] {
            let mut acc = [_mm512_setzero_si512(); 4];
            let it = lanes(a)
                .zip(lanes(b[0]))
                .zip(lanes(b[1]))
                .zip(lanes(b[2]))
                .zip(lanes(b[3]));
            for ((((x, y0), y1), y2), y3) in it {
                let x = load(x);
                acc[0] = _mm512_add_epi64(acc[0], _mm512_mullo_epi64(x, load(y0)));
                acc[1] = _mm512_add_epi64(acc[1], _mm512_mullo_epi64(x, load(y1)));
                acc[2] = _mm512_add_epi64(acc[2], _mm512_mullo_epi64(x, load(y2)));
                acc[3] = _mm512_add_epi64(acc[3], _mm512_mullo_epi64(x, load(y3)));
            }
            acc.map(|v| _mm512_reduce_add_epi64(v) as u64)
        }

        fn tail(a: &[u64], b: &[u64], from: usize) -> u64 {
            a[from..]
                .iter()
                .zip(&b[from..])
                .fold(0u64, |s, (x, y)| s.wrapping_add(x.wrapping_mul(*y)))
        }

        #[target_feature(enable = "avx512f,avx512dq")]
        pub(super) fn dot(a: &[u64], b: &[u64]) -> u64 {
            dot1(a, b).wrapping_add(tail(a, b, a.len() / 8 * 8))
        }

        #[target_feature(enable = "avx512f,avx512dq")]
        pub(super) fn dot_row_many(row: &[u64], q: &[u64], cols: &[u32], out: &mut [u64]) {
            let w = row.len();
            let chunks = w / 8;
            let qrow = |j: u32| &q[j as usize * w..(j as usize + 1) * w];
            let mut groups = cols.chunks_exact(4);
            let mut outs = out.chunks_exact_mut(4);
            for (g, o) in (&mut groups).zip(&mut outs) {
                let b = [qrow(g[0]), qrow(g[1]), qrow(g[2]), qrow(g[3])];
                let d = dot4(row, b);
                for l in 0..4 {
                    o[l] = o[l]
                        .wrapping_add(d[l])
                        .wrapping_add(tail(row, b[l], 8 * chunks));
                }
            }
            for (o, &j) in outs.into_remainder().iter_mut().zip(groups.remainder()) {
                *o = o.wrapping_add(dot(row, qrow(j)));
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    fn has_avx512() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && crate::mpc::cpu::wide()
    }

    pub(super) fn dot(a: &[u64], b: &[u64]) -> u64 {
        #[cfg(target_arch = "x86_64")]
        if has_avx512() {
            // SAFETY: the CPU supports the enabled target features (checked above).
            return unsafe { avx512::dot(a, b) };
        }
        dot_generic(a, b)
    }

    pub(super) fn dot_row_many(row: &[u64], q: &[u64], cols: &[u32], out: &mut [u64]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx512() {
            // SAFETY: the CPU supports the enabled target features (checked above).
            return unsafe { avx512::dot_row_many(row, q, cols, out) };
        }
        dot_row_many_generic(row, q, cols, out)
    }

    /// The portable variants, exposed so tests can compare them with the dispatched ones.
    #[cfg(test)]
    pub(super) fn portable_dot_row_many(row: &[u64], q: &[u64], cols: &[u32], out: &mut [u64]) {
        dot_row_many_generic(row, q, cols, out)
    }
}

/// Transposes a 64 x 64 bit matrix in place: afterwards bit `j` of `m[i]` is what bit `i` of
/// `m[j]` was. Used to move between "one value per word" and bit-sliced "one bit position per
/// word, 64 values side by side" layouts.
pub fn transpose64(m: &mut [u64; 64]) {
    let mut width = 32;
    let mut mask: u64 = 0x0000_0000_FFFF_FFFF;
    while width != 0 {
        let mut k = 0;
        while k < 64 {
            for i in k..k + width {
                let a = m[i];
                let b = m[i + width];
                let t = ((a >> width) ^ b) & mask;
                m[i] = a ^ (t << width);
                m[i + width] = b ^ t;
            }
            k += 2 * width;
        }
        width >>= 1;
        mask ^= mask << width;
    }
}

/// Bit-slices `values`: returns `bits * blocks` words, where word `b * blocks + blk` holds bit
/// `b` of values `64*blk .. 64*blk+63` (bit `t` of the word is value `64*blk + t`). Missing values
/// in the last block count as zero.
pub fn bit_slice(values: &[u64], bits: usize) -> Vec<u64> {
    assert!(bits <= 64);
    let blocks = values.len().div_ceil(64);
    let mut out = vec![0u64; bits * blocks];
    let mut m = [0u64; 64];
    for blk in 0..blocks {
        let chunk = &values[blk * 64..((blk + 1) * 64).min(values.len())];
        m[..chunk.len()].copy_from_slice(chunk);
        m[chunk.len()..].fill(0);
        transpose64(&mut m);
        for b in 0..bits {
            out[b * blocks + blk] = m[b];
        }
    }
    out
}

/// Extracts value bits from a bit-sliced single-bit vector: returns `count` words that are 0 or 1.
pub fn unslice_bit(words: &[u64], count: usize) -> Vec<u64> {
    (0..count)
        .map(|i| (words[i / 64] >> (i % 64)) & 1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_is_involution_and_moves_bits() {
        let mut m = [0u64; 64];
        for (i, w) in m.iter_mut().enumerate() {
            *w = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64) << 7;
        }
        let orig = m;
        transpose64(&mut m);
        for (i, row) in m.iter().enumerate() {
            for (j, col) in orig.iter().enumerate() {
                assert_eq!((row >> j) & 1, (col >> i) & 1);
            }
        }
        transpose64(&mut m);
        assert_eq!(m, orig);
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<u64> = (0..203)
            .map(|i| (i as u64).wrapping_mul(0xDEAD_BEEF_1234_5677))
            .collect();
        let b: Vec<u64> = (0..203)
            .map(|i| (i as u64) ^ 0xFFFF_0000_FFFF_0000)
            .collect();
        let naive = a
            .iter()
            .zip(&b)
            .fold(0u64, |s, (x, y)| s.wrapping_add(x.wrapping_mul(*y)));
        assert_eq!(dot(&a, &b), naive);
    }

    #[test]
    fn dispatched_kernel_matches_portable() {
        for w in [1usize, 7, 8, 9, 16, 31, 64, 67] {
            let row: Vec<u64> = (0..w as u64)
                .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 5)
                .collect();
            let q: Vec<u64> = (0..(11 * w) as u64)
                .map(|i| i.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
                .collect();
            let cols = [3u32, 0, 10, 10, 7, 1, 2];
            let mut a = vec![1u64; cols.len()];
            let mut b = vec![1u64; cols.len()];
            dot_row_many(&row, &q, &cols, &mut a);
            kernel::portable_dot_row_many(&row, &q, &cols, &mut b);
            assert_eq!(a, b, "width {w}");
        }
    }

    #[test]
    fn bit_slice_round_trip() {
        let v: Vec<u64> = (0..130).map(|i| (i as u64) * 7 + 3).collect();
        let s = bit_slice(&v, 10);
        let blocks = 3;
        for (i, &x) in v.iter().enumerate() {
            for b in 0..10 {
                assert_eq!((s[b * blocks + i / 64] >> (i % 64)) & 1, (x >> b) & 1);
            }
        }
    }
}
