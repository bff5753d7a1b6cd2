//! Masks built from random bits held both ways (daBits): XOR shares of each bit, which the
//! comparison's carry tree consumes, and arithmetic shares of the same bit, from which the
//! arithmetic masks follow by linear combinations every server computes on its own shares.
//!
//! Both dealer-free sources make the arithmetic bits ([`crate::mpc::ot::source`] over OT,
//! [`crate::mpc::replicated`] from replicated seeds) and finish the masks here, so the two agree
//! with the dealer's relations ([`crate::mpc::correlated::Request`]) by construction:
//!
//! * truncation: `r = sum_i 2^i b_i` over 64 bits, `r >> frac = sum_{i >= frac} 2^(i - frac) b_i`
//!   and the top bit `b_63` (bits value-major: bit `i` of value `v` is bit `i` of word `v`);
//! * comparison: `r = sum_{i < ell} 2^i b_i + 2^ell h` with `h` any random share (the bits above
//!   `ell` need no boolean form; bits bit-sliced: bit `i` of value `v` is bit `v % 64` of word
//!   `i * ceil(n / 64) + v / 64`);
//! * B2a: the bits themselves (bit `i` is bit `i % 64` of word `i / 64`).
//!
//! A source may add each bit's share as soon as it has it ([`Masks::add`]), so that it never
//! holds 64 words per word of bits.

use crate::mpc::correlated::Request;

/// The masks a request builds from its random bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masks {
    /// `n` bits as arithmetic shares.
    B2a {
        /// Bits.
        n: usize,
    },
    /// `[r, r >> frac, top bit]` of `n` values.
    Trunc {
        /// Values.
        n: usize,
        /// Bits shifted away.
        frac: u32,
    },
    /// `[r]` of `n` values, without the high part (see [`add_high`]).
    Compare {
        /// Values.
        n: usize,
        /// Bits held both ways.
        ell: u32,
    },
}

impl Masks {
    /// The masks of `req`, if it is made from random bits.
    pub fn of(req: &Request) -> Option<Masks> {
        match *req {
            Request::B2a { n } => Some(Masks::B2a { n }),
            Request::Trunc { n, frac } => Some(Masks::Trunc { n, frac }),
            Request::Compare { n, ell } => Some(Masks::Compare { n, ell }),
            Request::Beaver { .. } | Request::Bilinear { .. } => None,
        }
    }

    /// Words of random bits the masks are built from.
    pub fn bit_words(&self) -> usize {
        match *self {
            Masks::B2a { n } => n.div_ceil(64),
            Masks::Trunc { n, .. } => n,
            Masks::Compare { n, ell } => ell as usize * n.div_ceil(64),
        }
    }

    /// The masks, all zero.
    pub fn zeros(&self) -> Vec<Vec<u64>> {
        match *self {
            Masks::B2a { n } | Masks::Compare { n, .. } => vec![vec![0; n]],
            Masks::Trunc { n, .. } => vec![vec![0; n]; 3],
        }
    }

    /// Adds `x`, a share of the integer value of bit `l` of word `w` of the random bits, to the
    /// masks that hold it (lanes past the last value hold nothing).
    #[inline]
    pub fn add(&self, out: &mut [Vec<u64>], w: usize, l: usize, x: u64) {
        match *self {
            Masks::B2a { n } => {
                if 64 * w + l < n {
                    out[0][64 * w + l] = out[0][64 * w + l].wrapping_add(x);
                }
            }
            Masks::Trunc { frac, .. } => {
                out[0][w] = out[0][w].wrapping_add(x << l);
                if l as u32 >= frac {
                    out[1][w] = out[1][w].wrapping_add(x << (l as u32 - frac));
                }
                if l == 63 {
                    out[2][w] = out[2][w].wrapping_add(x);
                }
            }
            Masks::Compare { n, .. } => {
                let blocks = n.div_ceil(64);
                let (i, v) = (w / blocks, (w % blocks) * 64 + l);
                if let Some(o) = out[0].get_mut(v) {
                    *o = o.wrapping_add(x << i);
                }
            }
        }
    }

    /// How many low bits of a share of bit `l` of word `w` the masks depend on: what
    /// [`Masks::add`] does with the share is unchanged by adding a multiple of `2^bits` to it.
    /// The masks are taken modulo `2^64`, except a comparison mask `r`, whose bits from `ell` up
    /// may be anything: they are the random high part `h` (uniform to any server that lacks
    /// one of its shares), so only `r mod 2^ell` must be right. A bit added nowhere (lanes past
    /// the last value) has 0.
    pub fn significant_bits(&self, w: usize, l: usize) -> u32 {
        match *self {
            Masks::B2a { n } => {
                if 64 * w + l < n {
                    64
                } else {
                    0
                }
            }
            // Smallest shift: 0 for the top bit (its own mask), `l - frac` in `r >> frac`,
            // else `l` in `r`.
            Masks::Trunc { frac, .. } => {
                64 - match l as u32 {
                    63 => 0,
                    l if l >= frac => l - frac,
                    l => l,
                }
            }
            Masks::Compare { n, ell } => {
                let blocks = n.div_ceil(64);
                if (w % blocks) * 64 + l < n {
                    ell.saturating_sub((w / blocks) as u32)
                } else {
                    0
                }
            }
        }
    }

    /// The masks from arithmetic shares of every bit (bit `l` of word `w` at `64 w + l`).
    #[cfg(test)]
    pub fn from_bits(&self, bits: &[u64]) -> Vec<Vec<u64>> {
        assert_eq!(
            bits.len(),
            64 * self.bit_words(),
            "64 shares per word of bits"
        );
        let mut out = self.zeros();
        for (w, word) in bits.chunks_exact(64).enumerate() {
            for (l, &x) in word.iter().enumerate() {
                self.add(&mut out, w, l, x);
            }
        }
        out
    }
}

/// Adds `2^ell h` to comparison masks `r` (nothing when `ell` is 64).
pub fn add_high(r: &mut [u64], ell: u32, high: &[u64]) {
    assert_eq!(r.len(), high.len(), "one high share per value");
    if ell < 64 {
        r.iter_mut()
            .zip(high)
            .for_each(|(r, h)| *r = r.wrapping_add(h << ell));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `significant_bits` agrees with what `add` does: adding 1 for a bit changes masks at
    /// shifts `t`, each mask taken modulo `2^64` (a comparison's `r`: `2^ell`), so the share's
    /// low `modulus - min t` bits matter (none if nothing changes).
    #[test]
    fn significant_bits_follow_add() {
        let layouts = [
            Masks::B2a { n: 100 },
            Masks::Trunc { n: 3, frac: 1 },
            Masks::Trunc { n: 3, frac: 16 },
            Masks::Trunc { n: 3, frac: 62 },
            Masks::Compare { n: 70, ell: 38 },
            Masks::Compare { n: 64, ell: 64 },
        ];
        for m in layouts {
            let modulus = match m {
                Masks::Compare { ell, .. } => ell,
                _ => 64,
            };
            for w in 0..m.bit_words() {
                for l in 0..64 {
                    let mut out = m.zeros();
                    m.add(&mut out, w, l, 1);
                    let shift = out
                        .iter()
                        .flatten()
                        .filter(|&&x| x != 0)
                        .map(|x| x.trailing_zeros())
                        .min();
                    let want = shift.map_or(0, |t| modulus.saturating_sub(t));
                    assert_eq!(m.significant_bits(w, l), want, "{m:?} word {w} lane {l}");
                }
            }
        }
    }
}
