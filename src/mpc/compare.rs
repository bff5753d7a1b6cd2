//! Secure comparison: shares of `[x < 0]` for shared `x`, and bit-to-arithmetic conversion.
//!
//! **Construction** (dealer-assisted bit decomposition of a mask, as in the edaBits line of
//! work: Escudero, Ghosh, Keller, Rachuri, Scholl, CRYPTO 2020; the prefix circuit follows the
//! classic carry-lookahead comparison). For `x` known to lie in `[-2^(l-1), 2^(l-1))`:
//!
//! 1. Shift: `x' = x + 2^(l-1) in [0, 2^l)`, so `x < 0` iff bit `l-1` of `x'` is 0.
//! 2. Open `c = x' + r` with a uniform mask `r` whose low `l` bits the servers also hold as
//!    boolean shares. `c` is uniform and says nothing about `x`.
//! 3. `x' = (c - r) mod 2^l`, so bit `l-1` of `x'` is `c_{l-1} XOR r_{l-1} XOR borrow`, where the
//!    borrow is `[c mod 2^(l-1) < r mod 2^(l-1)]`: a comparison between a public and a
//!    bit-shared number.
//! 4. That comparison is a prefix tree over the `l-1` bit positions. Leaves are free because
//!    `c` is public (`G_i = r_i AND NOT c_i`, `E_i = NOT (r_i XOR c_i)`), and two adjacent groups
//!    combine as `G = G_hi XOR (E_hi AND G_lo)`, `E = E_hi AND E_lo`. Both ANDs share the
//!    left input `E_hi`, so it is masked and opened once (a "double" Beaver bit triple), and the
//!    group that contains bit 0 never needs its `E`.
//!
//! Everything is bit-sliced: 64 comparisons share one word per bit position, so one AND gate on
//! words evaluates 64 comparisons. The tree's evaluation (`crate::mpc::carry_tree::Tree`) is
//! shared with the two-server millionaires' comparison ([`crate::mpc::millionaire`]), which
//! needs no mask bits and replaces this one where there is no dealer to deal them.
//!
//! **Cost per comparison, per server, to each other server** (bit width `l`, `t = l - 1` leaves,
//! `L = ceil(log2 t)` tree levels): one word (`c`), plus for each tree combine 3 bits (2 on the
//! path of bit 0). For `l = 64`: 8 bytes + 181 bits ~ 30.6 bytes; for `l = 32`: 8 bytes + 86 bits
//! ~ 18.8 bytes. Rounds: `1 + L` (7 for `l = 64`). Converting the boolean result to an arithmetic share
//! ([`B2a`]) adds one round and one bit.

use crate::error::{Error, Result};
use crate::mpc::carry_tree::{Tree, Triples, tree_and_words};
use crate::mpc::correlated::Material;
use crate::mpc::protocol::{Protocol, Step, check_lengths, open_sum, open_xor};
use crate::mpc::ring;

enum Phase {
    Open,
    Tree(Tree),
}

/// Boolean shares of `[x < 0]` for `n` shared values of bit width `ell`, bit-sliced
/// (`ceil(n/64)` words).
pub struct Compare {
    me: usize,
    n: usize,
    ell: u32,
    blocks: usize,
    x: Vec<u64>,
    /// `r` and its low `ell` bits, bit-sliced.
    mask: [Vec<u64>; 2],
    triples: Triples,
    phase: Phase,
}

impl Compare {
    /// Prepares the comparison with material from `Request::Compare { n, ell }`.
    pub fn new(me: usize, x: Vec<u64>, ell: u32, mat: Material) -> Result<Compare> {
        let mat: [Vec<u64>; 7] = mat.into_parts()?;
        let n = x.len();
        let blocks = n.div_ceil(64);
        let t = tree_and_words(ell, blocks);
        let ok = (2..=64).contains(&ell)
            && mat[0].len() == n
            && mat[1].len() == ell as usize * blocks
            && mat[2..].iter().all(|m| m.len() == t);
        if !ok {
            return Err(Error::invalid(
                "comparison: sizes of input and material differ",
            ));
        }
        let [r, rbits, ta, tb1, tb2, tc1, tc2] = mat;
        Ok(Compare {
            me,
            n,
            ell,
            blocks,
            x,
            mask: [r, rbits],
            triples: [ta, tb1, tb2, tc1, tc2],
            phase: Phase::Open,
        })
    }

    fn finish_or_send(mut self, tree: Tree) -> Step<Self> {
        match tree.message(&self.triples) {
            None => Step::Done(tree.finish()),
            Some(msg) => {
                self.phase = Phase::Tree(tree);
                Step::Send(self, msg)
            }
        }
    }
}

impl Protocol for Compare {
    type Output = Vec<u64>;

    fn start(self) -> Result<Step<Self>> {
        let shift = if self.me == 0 {
            1u64 << (self.ell - 1)
        } else {
            0
        };
        let msg = self
            .x
            .iter()
            .zip(&self.mask[0])
            .map(|(x, r)| x.wrapping_add(*r).wrapping_add(shift))
            .collect();
        Ok(Step::Send(self, msg))
    }

    fn receive(mut self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        let b = self.blocks;
        let phase = std::mem::replace(&mut self.phase, Phase::Open);
        match phase {
            Phase::Open => {
                check_lengths(&incoming, self.n, "comparison opening")?;
                let ell = self.ell as usize;
                let mut c = open_sum(incoming);
                if ell < 64 {
                    let mask = (1u64 << ell) - 1;
                    c.iter_mut().for_each(|v| *v &= mask);
                }
                let cbits = ring::bit_slice(&c, ell);
                let rbits = &self.mask[1];
                let leaves = (ell - 1).max(1);
                let mut g = vec![0u64; leaves * b];
                let mut e = vec![0u64; leaves * b];
                // Leaf t is bit position l-2-t: most significant first, bit 0 last.
                for t in 0..ell - 1 {
                    let bit = ell - 2 - t;
                    for w in 0..b {
                        let (r, cb) = (rbits[bit * b + w], cbits[bit * b + w]);
                        g[t * b + w] = r & !cb;
                        e[t * b + w] = if self.me == 0 { r ^ !cb } else { r };
                    }
                }
                let top: Vec<u64> = (0..b)
                    .map(|w| {
                        let r = rbits[(ell - 1) * b + w];
                        if self.me == 0 {
                            r ^ !cbits[(ell - 1) * b + w]
                        } else {
                            r
                        }
                    })
                    .collect();
                let tree = Tree::new(self.me, b, g, e, top);
                Ok(self.finish_or_send(tree))
            }
            Phase::Tree(tree) => {
                let tree = tree.combine(&incoming, &self.triples, "comparison tree")?;
                Ok(self.finish_or_send(tree))
            }
        }
    }
}

/// Converts boolean-shared bits (bit-sliced, `ceil(n/64)` words) into arithmetic shares of 0/1.
///
/// With a random bit `b` shared both ways, open `e = x XOR b`; then `x = e + (1 - 2e) * b`,
/// linear in the arithmetic shares of `b`. One round, one bit per value.
pub struct B2a {
    me: usize,
    n: usize,
    bits: Vec<u64>,
    mat: [Vec<u64>; 2],
}

impl B2a {
    /// Prepares the conversion with material from `Request::B2a { n }`.
    pub fn new(me: usize, bits: Vec<u64>, n: usize, mat: Material) -> Result<B2a> {
        let mat: [Vec<u64>; 2] = mat.into_parts()?;
        if bits.len() != n.div_ceil(64) || mat[0].len() != bits.len() || mat[1].len() != n {
            return Err(Error::invalid(
                "bit conversion: sizes of input and material differ",
            ));
        }
        Ok(B2a { me, n, bits, mat })
    }
}

impl Protocol for B2a {
    type Output = Vec<u64>;

    fn start(self) -> Result<Step<Self>> {
        let msg = self
            .bits
            .iter()
            .zip(&self.mat[0])
            .map(|(x, b)| x ^ b)
            .collect();
        Ok(Step::Send(self, msg))
    }

    fn receive(self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        check_lengths(&incoming, self.bits.len(), "bit conversion")?;
        let e = open_xor(&incoming);
        let ba = &self.mat[1];
        let out = (0..self.n)
            .map(|i| {
                let ei = (e[i / 64] >> (i % 64)) & 1;
                let v = if ei == 1 { ba[i].wrapping_neg() } else { ba[i] };
                if self.me == 0 { v.wrapping_add(ei) } else { v }
            })
            .collect();
        Ok(Step::Done(out))
    }
}
