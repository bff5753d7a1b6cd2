//! Masks built from random bits held both ways (daBits): XOR shares of each bit, which the
//! comparison's carry tree consumes, and arithmetic shares of the same bit, from which the
//! arithmetic masks follow by linear combinations every server computes on its own shares.
//!
//! Both dealer-free sources make the arithmetic bits ([`crate::mpc::ot::source`] over OT,
//! [`crate::mpc::replicated`] from replicated seeds) and finish the masks here, so the two agree
//! with the dealer's relations ([`crate::mpc::correlated::Request`]) by construction:
//!
//! * truncation: `r = sum_i 2^i b_i` over 64 bits, `r >> frac = sum_{i >= frac} 2^(i - frac) b_i`
//!   and the top bit `b_63`;
//! * comparison: `r = sum_{i < ell} 2^i b_i + 2^ell h` with `h` any random share (the bits above
//!   `ell` need no boolean form).

/// Truncation masks `[r, r >> frac, top bit]` from arithmetic bits stored value-major (bit `i`
/// of value `v` at `64 v + i`).
pub fn trunc_masks(bits: &[u64], n: usize, frac: u32) -> [Vec<u64>; 3] {
    assert_eq!(bits.len(), 64 * n, "64 bits per value");
    let (mut r, mut hi, mut top) = (vec![0u64; n], vec![0u64; n], vec![0u64; n]);
    for (v, b) in bits.chunks_exact(64).enumerate() {
        for (i, &bi) in b.iter().enumerate() {
            r[v] = r[v].wrapping_add(bi << i);
            if i as u32 >= frac {
                hi[v] = hi[v].wrapping_add(bi << (i as u32 - frac));
            }
        }
        top[v] = b[63];
    }
    [r, hi, top]
}

/// The comparison mask `r` of `n` values from arithmetic bits of the bit-sliced low bits (bit
/// `i` of value `v` at `64 (i * blocks + v / 64) + v % 64`, `blocks = ceil(n / 64)`) and a
/// random share `high` per value for the bits above `ell`.
pub fn compare_mask(bits: &[u64], n: usize, ell: u32, high: &[u64]) -> Vec<u64> {
    let (ell, blocks) = (ell as usize, n.div_ceil(64));
    assert_eq!(bits.len(), 64 * ell * blocks, "ell bit-sliced words");
    assert_eq!(high.len(), n, "one high share per value");
    (0..n)
        .map(|v| {
            let low = (0..ell).fold(0u64, |s, i| {
                s.wrapping_add(bits[64 * (i * blocks + v / 64) + v % 64] << i)
            });
            let high = if ell < 64 { high[v] << ell } else { 0 };
            low.wrapping_add(high)
        })
        .collect()
}
