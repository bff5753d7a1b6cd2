//! Arithmetic modulo one of the ciphertext primes.
//!
//! Every prime `p` is below `2^54` and `p = 1 (mod 2N)`, so the negacyclic NTT of length `N`
//! exists and sums of a few residues never overflow a word. Products by a value `w` fixed for a
//! whole loop use Shoup's precomputed quotient `w' = floor(w 2^64 / p)`: `a w mod p` is
//! `a w - floor(a w' / 2^64) p`, which lies in `[0, 2p)` for every `a < 2^64`, so one
//! conditional subtraction (a branch-free `min` with the wrapped difference) finishes it. Other reductions use Barrett's `floor(2^64 / p)`.

/// A prime modulus below `2^54` with its precomputed reduction constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modulus {
    /// The prime.
    pub p: u64,
    /// `floor(2^64 / p)`.
    barrett: u64,
    /// `2^64 mod p`.
    r64: u64,
    /// Shoup's quotient of `r64`.
    r64_shoup: u64,
}

impl Modulus {
    /// The constants for prime `p` (`p < 2^54`, odd).
    pub const fn new(p: u64) -> Modulus {
        let barrett = ((1u128 << 64) / p as u128) as u64;
        let r64 = ((1u128 << 64) % p as u128) as u64;
        let r64_shoup = (((r64 as u128) << 64) / p as u128) as u64;
        Modulus {
            p,
            barrett,
            r64,
            r64_shoup,
        }
    }

    /// Shoup's quotient `floor(w 2^64 / p)` of a residue `w < p`.
    #[inline]
    pub fn shoup(&self, w: u64) -> u64 {
        (((w as u128) << 64) / self.p as u128) as u64
    }

    /// `a w mod p` for any `a`, with `ws = self.shoup(w)`.
    #[inline(always)]
    pub fn mul_shoup(&self, a: u64, w: u64, ws: u64) -> u64 {
        let q = ((a as u128 * ws as u128) >> 64) as u64;
        let r = a.wrapping_mul(w).wrapping_sub(q.wrapping_mul(self.p));
        r.min(r.wrapping_sub(self.p))
    }

    /// `a mod p` for any word.
    #[inline(always)]
    pub fn reduce(&self, a: u64) -> u64 {
        let q = ((a as u128 * self.barrett as u128) >> 64) as u64;
        let r = a.wrapping_sub(q.wrapping_mul(self.p));
        r.min(r.wrapping_sub(self.p))
    }

    /// `a mod p` for any 128-bit value.
    #[inline(always)]
    pub fn reduce_wide(&self, a: u128) -> u64 {
        let hi = self.mul_shoup((a >> 64) as u64, self.r64, self.r64_shoup);
        let lo = self.reduce(a as u64);
        self.add(hi, lo)
    }

    /// `a b mod p` for residues.
    #[inline(always)]
    pub fn mul(&self, a: u64, b: u64) -> u64 {
        self.reduce_wide(a as u128 * b as u128)
    }

    /// `a + b mod p` for residues.
    #[inline(always)]
    pub fn add(&self, a: u64, b: u64) -> u64 {
        let s = a + b;
        s.min(s.wrapping_sub(self.p))
    }

    /// `a - b mod p` for residues.
    #[inline(always)]
    pub fn sub(&self, a: u64, b: u64) -> u64 {
        let d = a.wrapping_sub(b);
        d.min(d.wrapping_add(self.p))
    }

    /// `-a mod p` for a residue.
    #[inline(always)]
    pub fn neg(&self, a: u64) -> u64 {
        if a == 0 { 0 } else { self.p - a }
    }

    /// A signed value (a centred share) modulo `p`.
    #[inline(always)]
    pub fn from_signed(&self, v: i64) -> u64 {
        if v >= 0 {
            self.reduce(v as u64)
        } else {
            self.neg(self.reduce(v.unsigned_abs()))
        }
    }

    /// `a^e mod p`.
    pub fn pow(&self, mut a: u64, mut e: u64) -> u64 {
        let mut r = 1 % self.p;
        while e > 0 {
            if e & 1 == 1 {
                r = self.mul(r, a);
            }
            a = self.mul(a, a);
            e >>= 1;
        }
        r
    }

    /// `a^-1 mod p` for a nonzero residue (Fermat).
    pub fn inv(&self, a: u64) -> u64 {
        self.pow(a, self.p - 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: u64 = 0x003f_ffff_ffef_8001;

    proptest! {
        #[test]
        fn reductions_equal_the_remainder(a in any::<u64>(), b in any::<u64>(), w in 0..P) {
            let m = Modulus::new(P);
            prop_assert_eq!(m.reduce(a), a % P);
            let wide = a as u128 * b as u128;
            prop_assert_eq!(m.reduce_wide(wide), (wide % P as u128) as u64);
            prop_assert_eq!(m.mul_shoup(a, w, m.shoup(w)), ((a as u128 * w as u128) % P as u128) as u64);
            let (x, y) = (a % P, b % P);
            prop_assert_eq!(m.add(x, y), ((x as u128 + y as u128) % P as u128) as u64);
            prop_assert_eq!(m.add(m.sub(x, y), y), x);
            prop_assert_eq!(m.add(m.neg(x), x), 0);
            prop_assert_eq!(m.from_signed(a as i64), (a as i64).rem_euclid(P as i64) as u64);
            if x != 0 {
                prop_assert_eq!(m.mul(m.inv(x), x), 1);
            }
        }
    }

    #[test]
    fn the_extremes_reduce() {
        let m = Modulus::new(P);
        assert_eq!(m.reduce(u64::MAX), u64::MAX % P);
        assert_eq!(m.reduce_wide(u128::MAX), (u128::MAX % P as u128) as u64);
        assert_eq!(
            m.from_signed(i64::MIN),
            (i64::MIN as i128).rem_euclid(P as i128) as u64
        );
        assert_eq!(
            m.mul_shoup(u64::MAX, P - 1, m.shoup(P - 1)),
            ((u64::MAX as u128 * (P - 1) as u128) % P as u128) as u64
        );
    }
}
