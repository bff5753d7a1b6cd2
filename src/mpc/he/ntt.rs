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
        NttTables {
            m,
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

    /// Coefficients (residues) to evaluations, in place.
    pub fn forward(&self, a: &mut [u64]) {
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

    /// Evaluations to coefficients, in place.
    pub fn inverse(&self, a: &mut [u64]) {
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

    /// The exponent `e` (odd, below `2N`) of the root `psi^e` at which output `i` of
    /// [`NttTables::forward`] evaluates.
    pub fn exponent(&self, i: usize) -> usize {
        2 * bit_reverse(i, self.len().trailing_zeros()) + 1
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
