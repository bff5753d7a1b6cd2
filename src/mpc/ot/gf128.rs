//! `GF(2^128)` for the OT extension's consistency check ([`super::extension`]): elements are
//! polynomials over GF(2) of degree < 128 (bit `j` of a `u128` is the coefficient of `x^j`),
//! multiplied modulo `x^128 + x^7 + x^2 + x + 1`.
//!
//! The check needs `sum_i chi_i m_i` over every OT `i` of a batch, where `m_i` is the 128-bit
//! row of OT `i`. [`sum_products`] computes it with the CPU's carry-less multiplication
//! (PCLMULQDQ, four 64-bit products per row, one reduction per batch) where the CPU has it, and
//! otherwise from the columns: `sum_j x^j (XOR of chi_i over the OTs whose bit j is set)`,
//! the same element (multiplication distributes over XOR), about 64 XORs per OT.

/// Carry-less product of two polynomials of degree < 128: `(low, high)` halves.
pub fn clmul(a: u128, b: u128) -> (u128, u128) {
    let (mut lo, mut hi) = (0u128, 0u128);
    for i in 0..128 {
        if b >> i & 1 == 1 {
            lo ^= a << i;
            if i > 0 {
                hi ^= a >> (128 - i);
            }
        }
    }
    (lo, hi)
}

/// Reduction of `lo + hi x^128` modulo `x^128 + x^7 + x^2 + x + 1`.
pub fn reduce(lo: u128, hi: u128) -> u128 {
    // h x^128 = h (x^7 + x^2 + x + 1); what that shifts past bit 127 (at most 7 bits) folds
    // once more without overflow.
    let fold = |h: u128| {
        (
            h ^ (h << 1) ^ (h << 2) ^ (h << 7),
            (h >> 127) ^ (h >> 126) ^ (h >> 121),
        )
    };
    let (l1, over) = fold(hi);
    lo ^ l1 ^ fold(over).0
}

/// The product in `GF(2^128)`.
pub fn mul(a: u128, b: u128) -> u128 {
    let (lo, hi) = clmul(a, b);
    reduce(lo, hi)
}

/// The XOR of the `chi[i]` whose bit `i` of `bits` (64 to a word) is set.
pub fn select(bits: &[u64], chi: &[u128]) -> u128 {
    let mut acc = 0u128;
    for (w, &word) in bits.iter().enumerate() {
        let mut b = word;
        while b != 0 {
            acc ^= chi[64 * w + b.trailing_zeros() as usize];
            b &= b - 1;
        }
    }
    acc
}

/// `sum_i chi[i] m_i`, where `m_i` has bit `j` equal to bit `i` of `cols[j]` (the rows are
/// also given, as `rows[i] = m_i`; the faster of the two ways is used).
pub fn sum_products(cols: &[Vec<u64>], rows: &[[u64; 2]], chi: &[u128]) -> u128 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("pclmulqdq") {
        // SAFETY: the CPU supports the enabled target feature (checked above).
        let (lo, hi) = unsafe { x86::sum_products(rows, chi) };
        return reduce(lo, hi);
    }
    sum_products_by_columns(cols, chi)
}

/// [`sum_products`] from the columns, with no special instruction.
fn sum_products_by_columns(cols: &[Vec<u64>], chi: &[u128]) -> u128 {
    let (mut lo, mut hi) = (0u128, 0u128);
    for (j, col) in cols.iter().enumerate() {
        let c = select(col, chi);
        lo ^= c << j;
        if j > 0 {
            hi ^= c >> (128 - j);
        }
    }
    reduce(lo, hi)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `sum_i chi[i] rows[i]`, unreduced: `(low, high)` halves.
    #[target_feature(enable = "pclmulqdq")]
    pub(super) fn sum_products(rows: &[[u64; 2]], chi: &[u128]) -> (u128, u128) {
        let (mut lo, mut mid, mut hi) = (
            _mm_setzero_si128(),
            _mm_setzero_si128(),
            _mm_setzero_si128(),
        );
        for (r, c) in rows.iter().zip(chi) {
            let a = _mm_set_epi64x((c >> 64) as i64, *c as i64);
            let b = _mm_set_epi64x(r[1] as i64, r[0] as i64);
            lo = _mm_xor_si128(lo, _mm_clmulepi64_si128::<0x00>(a, b));
            hi = _mm_xor_si128(hi, _mm_clmulepi64_si128::<0x11>(a, b));
            mid = _mm_xor_si128(mid, _mm_clmulepi64_si128::<0x01>(a, b));
            mid = _mm_xor_si128(mid, _mm_clmulepi64_si128::<0x10>(a, b));
        }
        let w = |v: __m128i| {
            let mut out = [0u64; 2];
            // SAFETY: `out` is 16 writable bytes; unaligned stores are allowed.
            unsafe { _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, v) };
            u128::from(out[0]) | u128::from(out[1]) << 64
        };
        let (lo, mid, hi) = (w(lo), w(mid), w(hi));
        (lo ^ mid << 64, hi ^ mid >> 64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::prg::Prg;

    fn r(p: &mut Prg) -> u128 {
        u128::from(p.next_u64()) | u128::from(p.next_u64()) << 64
    }

    #[test]
    fn products_follow_the_field_laws() {
        let mut prg = Prg::fresh();
        for _ in 0..50 {
            let (a, b, c) = (r(&mut prg), r(&mut prg), r(&mut prg));
            assert_eq!(mul(a, b), mul(b, a));
            assert_eq!(mul(a, b ^ c), mul(a, b) ^ mul(a, c));
            assert_eq!(mul(mul(a, b), c), mul(a, mul(b, c)));
            assert_eq!(mul(a, 1), a);
        }
        // x^127 * x = x^128 = x^7 + x^2 + x + 1.
        assert_eq!(mul(1 << 127, 2), 0x87);
    }

    #[test]
    fn both_ways_of_summing_products_agree_with_the_definition() {
        let mut prg = Prg::fresh();
        let words = 3;
        let cols: Vec<Vec<u64>> = (0..128).map(|_| prg.vec(words)).collect();
        let mut rows = vec![[0u64; 2]; 64 * words];
        for (j, col) in cols.iter().enumerate() {
            for (i, row) in rows.iter_mut().enumerate() {
                row[j / 64] |= (col[i / 64] >> (i % 64) & 1) << (j % 64);
            }
        }
        let chi: Vec<u128> = (0..64 * words).map(|_| r(&mut prg)).collect();
        let want = rows.iter().zip(&chi).fold(0u128, |acc, (m, c)| {
            acc ^ mul(*c, u128::from(m[0]) | u128::from(m[1]) << 64)
        });
        assert_eq!(sum_products_by_columns(&cols, &chi), want);
        assert_eq!(sum_products(&cols, &rows, &chi), want);
    }
}
