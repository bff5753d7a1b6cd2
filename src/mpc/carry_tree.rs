//! The comparison's carry-lookahead tree (see [`crate::mpc::compare`] and
//! [`crate::mpc::millionaire`]): its shape (how many nodes each level has, how many AND gates
//! it needs, what that costs), on which both the protocols and the description of their
//! correlated material ([`crate::mpc::correlated`]) depend, and its evaluation on XOR shares
//! (`Tree`), which both comparisons share.
//!
//! Each leaf is a pair of XOR-shared bits `(G, E)` for a group of bit positions, the most
//! significant group first: `G` says the group of one number is greater than (or, in the
//! masked comparison, less than) the other's, `E` that they are equal. Two adjacent groups
//! combine as `G = G_hi XOR (E_hi AND G_lo)`, `E = E_hi AND E_lo`; both ANDs share `E_hi`, so
//! it is masked and opened once (a "double" Beaver bit triple `(a, b1, b2, a b1, a b2)`), and
//! the group that holds the least significant position never needs its `E`.

use crate::error::Result;
use crate::mpc::protocol::{check_lengths, open_xor};

/// Number of nodes per tree level for `leaves` leaves, starting with the leaves; the last
/// level has one node.
pub fn level_sizes_for(leaves: usize) -> Vec<usize> {
    let mut sizes = vec![leaves.max(1)];
    while *sizes.last().expect("non-empty") > 1 {
        sizes.push(sizes.last().expect("non-empty").div_ceil(2));
    }
    sizes
}

/// Number of nodes per tree level of the masked comparison of width `ell` (one leaf per bit
/// below the top one).
pub fn level_sizes(ell: u32) -> Vec<usize> {
    level_sizes_for((ell as usize).saturating_sub(1))
}

/// Words of AND-triple material a tree of `leaves` leaves uses for `blocks` 64-value blocks.
pub fn and_words_for(leaves: usize, blocks: usize) -> usize {
    level_sizes_for(leaves).iter().map(|n| n / 2).sum::<usize>() * blocks
}

/// Combines at a tree level of `nodes` nodes, and how many of them also need `E` (all but the
/// one whose low half is the group of bit 0, which is the last node when the count is even).
pub fn combines(nodes: usize) -> (usize, usize) {
    let c = nodes / 2;
    (c, c - usize::from(c > 0 && nodes.is_multiple_of(2)))
}

/// Words of AND-triple material the comparison tree uses for `blocks` 64-value blocks.
pub fn tree_and_words(ell: u32, blocks: usize) -> usize {
    and_words_for((ell as usize).saturating_sub(1), blocks)
}

/// Communication rounds of one comparison of width `ell` (without conversion).
pub fn compare_rounds(ell: u32) -> usize {
    level_sizes(ell).len()
}

/// Bits each server sends to each other server per comparison of width `ell`, excluding the
/// 64-bit opening of the masked value.
pub fn tree_bits(ell: u32) -> usize {
    level_sizes(ell)
        .iter()
        .map(|&n| {
            // Each combine opens E_hi and G_lo, and E_lo where it is needed.
            let (c, with_e) = combines(n);
            2 * c + with_e
        })
        .sum()
}

/// A tree's AND triples `[a, b1, b2, a & b1, a & b2]` (XOR shares), used level after level
/// from word 0 on.
pub(crate) type Triples = [Vec<u64>; 5];

/// A carry tree under evaluation on XOR shares, bit-sliced: 64 comparisons share a word, and
/// each node holds `blocks` words of `G` and of `E`. One level per round: [`Tree::message`]
/// opens the level's masked AND inputs, [`Tree::combine`] halves the nodes, and when one node
/// is left [`Tree::finish`] gives `top XOR G`. The AND triples are five arrays
/// `[a, b1, b2, a & b1, a & b2]` (XOR shares), used level after level from word 0 on.
pub(crate) struct Tree {
    me: usize,
    blocks: usize,
    g: Vec<u64>,
    e: Vec<u64>,
    top: Vec<u64>,
    off: usize,
}

impl Tree {
    /// The leaves `g`, `e` (`blocks` words per leaf, the most significant leaf first) and the
    /// share `top` XORed into the result.
    pub(crate) fn new(me: usize, blocks: usize, g: Vec<u64>, e: Vec<u64>, top: Vec<u64>) -> Tree {
        Tree {
            me,
            blocks,
            g,
            e,
            top,
            off: 0,
        }
    }

    fn nodes(&self) -> usize {
        self.g.len() / self.blocks.max(1)
    }

    /// The message that opens this level's masked inputs (`E_hi ^ a`, `G_lo ^ b1`, and
    /// `E_lo ^ b2` where needed), or `None` when the tree is down to its root.
    pub(crate) fn message(&self, triples: &Triples) -> Option<Vec<u64>> {
        let (b, nodes) = (self.blocks, self.nodes());
        if nodes <= 1 {
            return None;
        }
        let (combines, with_e) = combines(nodes);
        let [ta, tb1, tb2, ..] = triples;
        let (g, e, off) = (&self.g, &self.e, self.off);
        let mut msg = Vec::with_capacity((2 * combines + with_e) * b);
        for j in 0..combines {
            let (hi, o) = (2 * j * b, off + j * b);
            msg.extend((0..b).map(|w| e[hi + w] ^ ta[o + w]));
        }
        for j in 0..combines {
            let (lo, o) = ((2 * j + 1) * b, off + j * b);
            msg.extend((0..b).map(|w| g[lo + w] ^ tb1[o + w]));
        }
        for j in 0..with_e {
            let (lo, o) = ((2 * j + 1) * b, off + j * b);
            msg.extend((0..b).map(|w| e[lo + w] ^ tb2[o + w]));
        }
        Some(msg)
    }

    /// This server's share of the result, once the tree is down to its root.
    pub(crate) fn finish(self) -> Vec<u64> {
        let mut out = self.top;
        crate::mpc::ring::xor_assign(&mut out, &self.g);
        out
    }

    /// Combines this level's node pairs from every server's [`Tree::message`] (`what` names
    /// the protocol in errors).
    pub(crate) fn combine(
        self,
        incoming: &[Vec<u64>],
        triples: &Triples,
        what: &str,
    ) -> Result<Tree> {
        let (b, nodes) = (self.blocks, self.nodes());
        let (combines, with_e) = combines(nodes);
        check_lengths(incoming, (2 * combines + with_e) * b, what)?;
        let opened = open_xor(incoming);
        let (d, rest) = opened.split_at(combines * b);
        let (e1, e2) = rest.split_at(combines * b);
        let [ta, tb1, tb2, tc1, tc2] = triples;
        let (g, e, off) = (&self.g, &self.e, self.off);
        let next = nodes.div_ceil(2);
        let mut ng = vec![0u64; next * b];
        let mut ne = vec![0u64; next * b];
        let me0 = self.me == 0;
        for j in 0..combines {
            let o = off + j * b;
            for w in 0..b {
                let (dj, aj) = (d[j * b + w], ta[o + w]);
                let (x1, b1) = (e1[j * b + w], tb1[o + w]);
                let mut z1 = tc1[o + w] ^ (dj & b1) ^ (x1 & aj);
                if me0 {
                    z1 ^= dj & x1;
                }
                ng[j * b + w] = g[2 * j * b + w] ^ z1;
                if j < with_e {
                    let (x2, b2) = (e2[j * b + w], tb2[o + w]);
                    let mut z2 = tc2[o + w] ^ (dj & b2) ^ (x2 & aj);
                    if me0 {
                        z2 ^= dj & x2;
                    }
                    ne[j * b + w] = z2;
                }
            }
        }
        if nodes % 2 == 1 {
            let last = (nodes - 1) * b;
            ng[combines * b..].copy_from_slice(&g[last..last + b]);
            ne[combines * b..].copy_from_slice(&e[last..last + b]);
        }
        Ok(Tree {
            g: ng,
            e: ne,
            off: off + combines * b,
            ..self
        })
    }
}
