//! Silent OT extension: millions of correlated OTs per pair of servers for a few hundred
//! kilobytes of traffic, in place of IKNP's 16 bytes per OT (Ferret: Yang, Weng, Lan, Zhang
//! and Wang, CCS 2020; semi-honest).
//!
//! **Correlated OT (COT).** The sender holds a global `Δ` of 128 bits; for each OT `i` the
//! receiver holds a choice bit `u_i` and a block `w_i`, the sender a block `v_i`, with
//! `w_i = v_i ^ u_i Δ`. IKNP makes exactly this (its secret `s` is `Δ`, its rows are `v` and
//! `w`) at one column bit per base OT per OT. Ferret expands `M` such COTs into `N > M`:
//!
//! 1. **Single-point COT** on `t` trees of `2^h` leaves. For tree `b` the sender grows a GGM
//!    tree from a fresh root: node `x` has children `G_0(x) = π_0(x) ^ x` and
//!    `G_1(x) = π_1(x) ^ x` (`π_0`, `π_1`: AES-128 under public keys). The receiver's punctured
//!    leaf `α_b` is not chosen but read off the choice bits of `h` base COTs: its bit at level
//!    `l` (from the root) is `a_l = !u_j`. For each level the sender sends
//!    `M_0 = K_0 ^ H(v_j)` and `M_1 = K_1 ^ H(v_j ^ Δ)`, with `K_0` (`K_1`) the XOR of the left
//!    (right) children at that level. The receiver opens `K_{u_j} = M_{u_j} ^ H(w_j)`, the sum
//!    of the side *off* its path, and not the other (it would need `Δ`). One sibling sum per
//!    level lets it regrow every leaf but `α_b` (`regrow`). Last the sender sends
//!    `c_b = Δ ^ (XOR of all leaves)`, from which the receiver gets `leaf(α_b) ^ Δ`. So both
//!    hold the leaves, but the receiver's at `α_b` differs by `Δ`: a COT whose choices are the
//!    unit vector at `α_b`.
//! 2. **LPN.** Over the `N = t 2^h` outputs these choices `e` (one 1 per tree: *regular*
//!    noise) are hidden by a public sparse code: output `i` also adds [`D`] = 10 of `k` further
//!    base COTs, at positions drawn from a public key. The sender's `y_i = s_i ^ XOR v[p_ij]`,
//!    the receiver's `z_i = s'_i ^ XOR w[p_ij]` and choice `c_i = e_i ^ XOR u[p_ij]`, so that
//!    `z_i ^ y_i = c_i Δ` still. The choices `c` are pseudorandom to the sender under primal
//!    learning parity with noise with regular noise over a `D`-local code (Ferret's
//!    assumption).
//! 3. The first `M = k + t h` outputs are the next iteration's base COTs; the others join a
//!    pool.
//!
//! An iteration is **one message, from the sender**: `2 h + 1` blocks per tree. With
//! [`PARAMS`] (`t` = 1,170, `h` = 11, `k` = 2^17: the `ferret_b11` set of EMP's current tuning,
//! chosen there for 128-bit security against the published attacks on regular LPN, the hybrid
//! attack binding) an iteration adds 2,252,160 COTs to the pool for 430.6 KB: 0.19 bytes per
//! OT. The first base COTs come from one IKNP batch at setup, with its KOS check.
//!
//! **Choices in the low bit.** The sender's `Δ` has its low bit 1 (the IKNP sender draws its
//! `s` so, 127 bits secret) and every value `v_i` the sender holds has its low bit 0: it
//! clears it in the seeding batch, in every tree's leaves once grown, and the LPN step's XORs
//! keep it 0. The receiver sets its seeding rows' low bits to their choices and clears its
//! regrown leaves' like the sender, so `w_i = v_i ^ u_i Δ` still holds and the low bit of
//! `w_i` *is* `u_i`, at the punctured leaf too (`c_b` carries `Δ`'s 1). The LPN step then adds
//! the choice bits with the rows, and the receiver reads its pool's choices off its rows: no
//! pass of its own over the code (as EMP's Ferret does; docs/benchmarks.md, "Choices in the
//! rows' low bits"). What this shows: the sender's low bits, a constant, and one bit of
//! `Δ`, whose other 127 bits are all that hides the messages the receiver did not choose.
//!
//! **Chosen choices.** The pool's choices are random. A batch with choices `r` costs the
//! receiver one bit per OT, `d = r ^ u`, and the sender sets `q_i = v_i ^ d_i Δ`; then
//! `w_i = q_i ^ r_i Δ`, exactly the rows of an IKNP batch, so [`RecvBatch`] and [`SendBatch`]
//! make random, correlated and Gilboa OTs from them unchanged. `d` is uniform to the sender
//! (`u` is pseudorandom to it). Random OTs on the pool's own choices need no message: they are
//! hashed one choice word at a time straight from the pool ([`SilentSender::random_words`],
//! [`SilentReceiver::random_words`]), the same hashes a batch of those rows would give.
//!
//! **Tweaks.** Tree messages hash with the tweak `(2^63 + iteration, j)`, batches with
//! `(batch, i)` for batches numbered from 1, so no tweak is used twice under one `Δ`.
//!
//! **Security.** Semi-honest, as Ferret without its consistency check. A receiver only
//! receives, and sends `d` (any `d` is a choice). A *sender* that sends a wrong level message
//! or `c_b` makes the receiver's outputs wrong depending on `α_b`, hence on the receiver's
//! choice bits: the selective-failure class of wrong OT corrections, open for the same reason
//! (design.md, threat model). Ferret's check would bound it to guessing a few noise bits at the
//! risk of an abort. Such an error spreads: an iteration's first outputs seed the next.

use super::extension::{
    RandomSide, RecvBatch, SendBatch, block_words, hash_rows_wide, random_words, words_block,
};
use super::fixed_aes::FixedAes;
use crate::error::{Error, PeerName, Result};
use crate::mpc::prg::Prg;
use rayon::prelude::*;
use zeroize::Zeroize;

type Row = [u64; 2];
type Block = aes::Block;

/// Base COTs each output adds (the code's row weight).
pub const D: usize = 10;

/// The high bit of a tree message's tweak, apart from the batches' tweaks.
const TREE_TWEAK: u64 = 1 << 63;

/// Outputs of one parallel part of the LPN step. A part's code blocks (32 bytes an output,
/// 64 KiB) stay below the allocator's mapping threshold (128 KiB, [`crate::net::heap`]), so
/// each part's buffer comes from the heap instead of a fresh mapping faulted in page by page.
const LPN_PART: usize = 1 << 11;

/// A parameter set: primal LPN with regular noise, as Ferret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Trees, the noise weight `t`.
    pub trees: usize,
    /// Tree depth `h`: `2^h` leaves per tree.
    pub depth: usize,
    /// `log2 k`, the LPN secret's length (at most 21).
    pub log_k: usize,
}

/// The production set (module docs): `N` = 2,396,160 outputs per iteration, 2,252,160 kept.
pub const PARAMS: Params = Params {
    trees: 1170,
    depth: 11,
    log_k: 17,
};

impl Params {
    /// Leaves per tree.
    pub const fn leaves(&self) -> usize {
        1 << self.depth
    }

    /// Outputs of an iteration, `N`.
    pub const fn n(&self) -> usize {
        self.trees << self.depth
    }

    /// The LPN secret's length `k`.
    pub const fn k(&self) -> usize {
        1 << self.log_k
    }

    /// Base COTs an iteration consumes, `M = k + t h`.
    pub const fn base(&self) -> usize {
        self.k() + self.trees * self.depth
    }

    /// COTs an iteration adds to the pool (whole choice words).
    pub const fn out(&self) -> usize {
        (self.n() - self.base()) / 64 * 64
    }

    /// Words of an iteration's message: `2 h + 1` blocks per tree.
    pub const fn msg_words(&self) -> usize {
        2 * self.trees * (2 * self.depth + 1)
    }

    /// Refuses sets the code cannot run: at least 64 leaves per tree (whole choice words),
    /// `k` at most 2^21 (three positions per word), and a pool that grows.
    pub fn validate(&self) -> Result<()> {
        if self.trees == 0 || self.depth < 6 || self.depth > 20 || self.log_k > 21 {
            return Err(Error::invalid(format!("silent OT parameters {self:?}")));
        }
        if self.n() < self.base() + 64 {
            return Err(Error::invalid(format!(
                "silent OT parameters {self:?} make no more COTs than they use"
            )));
        }
        Ok(())
    }
}

/// Iterations to run so that a pool of `available` COTs holds at least `need`.
pub fn iterations_for(p: &Params, available: usize, need: usize) -> usize {
    need.saturating_sub(available).div_ceil(p.out())
}

/// The GGM tree's two fixed-key permutations `π_0`, `π_1`.
fn ggm() -> &'static [FixedAes; 2] {
    static K: std::sync::OnceLock<[FixedAes; 2]> = std::sync::OnceLock::new();
    K.get_or_init(|| {
        [
            FixedAes::public("ppea GGM left v1"),
            FixedAes::public("ppea GGM right v1"),
        ]
    })
}

/// The public code's key: output `i`'s positions come from encrypting `2 i` and `2 i + 1`.
fn code() -> &'static FixedAes {
    static K: std::sync::OnceLock<FixedAes> = std::sync::OnceLock::new();
    K.get_or_init(|| FixedAes::public("ppea Ferret LPN code v1"))
}

fn xor(a: Row, b: Row) -> Row {
    [a[0] ^ b[0], a[1] ^ b[1]]
}

/// Buffers of one tree's growth, reused across trees.
#[derive(Default)]
struct Scratch {
    cur: Vec<Row>,
    next: Vec<Row>,
    blocks: Vec<Block>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.cur.zeroize();
        self.next.zeroize();
        self.blocks
            .iter_mut()
            .for_each(|b| b.as_mut_slice().zeroize());
    }
}

/// The children of every node of `level` into `next`: `2 i` and `2 i + 1` for node `i`.
fn expand(level: &[Row], next: &mut [Row], blocks: &mut Vec<Block>) {
    for (side, key) in ggm().iter().enumerate() {
        blocks.clear();
        blocks.extend(level.iter().map(|r| words_block(*r)));
        key.encrypt_blocks(blocks);
        for (i, (b, x)) in blocks.iter().zip(level).enumerate() {
            next[2 * i + side] = xor(block_words(b), *x);
        }
    }
}

/// XOR of the left (even) and of the right (odd) nodes of a level.
fn side_sums(level: &[Row]) -> [Row; 2] {
    let mut s = [[0u64; 2]; 2];
    for (i, x) in level.iter().enumerate() {
        s[i & 1] = xor(s[i & 1], *x);
    }
    s
}

/// Grows the tree of `root` into `leaves` (`2^depth` of them); returns each level's
/// [`side_sums`], from the root's children down.
fn grow(root: Row, leaves: &mut [Row], sc: &mut Scratch) -> Vec<[Row; 2]> {
    let depth = leaves.len().trailing_zeros() as usize;
    let Scratch { cur, next, blocks } = sc;
    let mut sums = Vec::with_capacity(depth);
    cur.clear();
    cur.push(root);
    for l in 1..=depth {
        if l == depth {
            expand(cur, leaves, blocks);
            sums.push(side_sums(leaves));
        } else {
            next.clear();
            next.resize(1 << l, [0; 2]);
            expand(cur, next, blocks);
            sums.push(side_sums(next));
            std::mem::swap(cur, next);
        }
    }
    sums
}

/// Every leaf but `alpha`'s (left zero) of a tree of `leaves.len()` leaves, from the sums
/// `known[l - 1]` of the nodes off the path to `alpha` at each level `l`.
fn regrow(alpha: usize, known: &[Row], leaves: &mut [Row], sc: &mut Scratch) {
    let depth = known.len();
    debug_assert_eq!(leaves.len(), 1 << depth);
    let bit = |l: usize| alpha >> (depth - l) & 1;
    let Scratch { cur, next, blocks } = sc;
    // Level 1: the off-path node is its side's sum; the path node is unknown (zero).
    let a = bit(1);
    cur.clear();
    cur.resize(2, [0; 2]);
    cur[1 - a] = known[0];
    let mut path = a;
    for l in 2..=depth {
        let out: &mut [Row] = if l == depth {
            &mut *leaves
        } else {
            next.clear();
            next.resize(1 << l, [0; 2]);
            &mut next[..]
        };
        // The unknown path node's children come out as garbage; both are set below.
        expand(cur, out, blocks);
        let a = bit(l);
        let (on, off) = (2 * path + a, 2 * path + 1 - a);
        out[on] = [0; 2];
        out[off] = [0; 2];
        let others = out
            .iter()
            .skip(1 - a)
            .step_by(2)
            .fold([0u64; 2], |s, x| xor(s, *x));
        out[off] = xor(known[l - 1], others);
        path = on;
        if l < depth {
            std::mem::swap(cur, next);
        }
    }
    if depth == 1 {
        leaves.copy_from_slice(cur);
    }
}

/// The code blocks of outputs `i0 .. i0 + count` into `blocks` (the buffer reused): output
/// `i`'s positions come from encrypting `2 i` and `2 i + 1` ([`positions_of`]).
fn code_blocks(i0: usize, count: usize, blocks: &mut Vec<Block>) {
    blocks.clear();
    blocks.extend((2 * i0..2 * (i0 + count)).map(|c| words_block([c as u64, 0])));
    code().encrypt_blocks(blocks);
}

/// One output's [`D`] positions below `k` (a power of two) from its two code blocks: 21 bits
/// each, three per 64-bit word.
#[inline(always)]
fn positions_of(pair: &[Block], k: usize) -> [usize; D] {
    let w = [block_words(&pair[0]), block_words(&pair[1])];
    let words = [w[0][0], w[0][1], w[1][0], w[1][1]];
    let mask = (k - 1) as u64;
    std::array::from_fn(|j| (words[j / 3] >> (21 * (j % 3)) & mask) as usize)
}

#[cfg(test)]
fn positions(i0: usize, count: usize, k: usize) -> Vec<u32> {
    let mut blocks = Vec::new();
    code_blocks(i0, count, &mut blocks);
    blocks
        .chunks_exact(2)
        .flat_map(|pair| positions_of(pair, k).map(|p| p as u32))
        .collect()
}

/// The LPN step in place: output `i` adds the base values at its positions. The receiver's
/// choice bits ride along in the rows' low bits (module docs, "Choices in the low bit").
fn lpn(out: &mut [Row], base: &[Row]) {
    let k = base.len();
    out.par_chunks_mut(LPN_PART)
        .enumerate()
        .for_each_init(Vec::new, |blocks, (c, part)| {
            code_blocks(c * LPN_PART, part.len(), blocks);
            for (r, pair) in part.iter_mut().zip(blocks.chunks_exact(2)) {
                *r = positions_of(pair, k)
                    .iter()
                    .fold(*r, |acc, &p| xor(acc, base[p]));
            }
        });
}

/// The low bits of `rows` as choice words into `out` (bit `i` of word `i / 64`): the
/// receiver's choices (module docs, "Choices in the low bit").
fn low_bits(rows: &[Row], out: &mut [u64]) {
    debug_assert_eq!(rows.len().div_ceil(64), out.len());
    for (w, c) in out.iter_mut().zip(rows.chunks(64)) {
        *w = c.iter().rev().fold(0u64, |w, r| w << 1 | r[0] & 1);
    }
}

/// Clears the low bit of every row: a sender's values have it 0 (module docs).
fn clear_low(rows: &mut [Row]) {
    rows.iter_mut().for_each(|r| r[0] &= !1);
}

/// A pool of COTs (and, on the receiver's side, their choice words), taken from the front.
///
/// The buffer is reused and never shrinks: the pool is `items[at..end]`. An iteration writes
/// its outputs right after the pool's rest, over stale entries (no zero-fill), and then only
/// the rest (at most a round's worth) moves, next to the outputs kept: never the iteration's
/// millions of outputs. The whole buffer, stale entries included, is zeroized on drop.
#[derive(Default)]
struct Pool<T: Copy + Default + Zeroize> {
    items: Vec<T>,
    at: usize,
    end: usize,
}

impl<T: Copy + Default + Zeroize> Pool<T> {
    fn len(&self) -> usize {
        self.end - self.at
    }

    fn take(&mut self, n: usize) -> &[T] {
        assert!(n <= self.len(), "a pool takes at most what it holds");
        let s = &self.items[self.at..self.at + n];
        self.at += n;
        s
    }

    #[cfg(test)]
    fn get(&self, i: usize) -> T {
        assert!(i < self.len());
        self.items[self.at + i]
    }

    /// Moves the pool's rest to the front and makes room for `n` entries after it (stale or
    /// default values, for the caller to overwrite); returns where they start. A buffer too
    /// small grows with a quarter of `n` to spare, and the old one is wiped.
    fn extend(&mut self, n: usize) -> usize {
        let rest = self.len();
        if self.items.len() < rest + n {
            let mut grown = vec![T::default(); rest + n + n / 4];
            grown[..rest].copy_from_slice(&self.items[self.at..self.end]);
            self.items.zeroize();
            self.items = grown;
        } else {
            self.items.copy_within(self.at..self.end, 0);
        }
        self.at = 0;
        self.end = rest + n;
        rest
    }

    /// Of the entries from `start` (where [`Pool::extend`] put them) on, keeps those at `keep`
    /// (counted from `start`): the rest before `start` moves up next to them.
    fn keep_only(&mut self, start: usize, keep: std::ops::Range<usize>) {
        let rest = start - self.at;
        let to = start + keep.start - rest;
        self.items.copy_within(self.at..start, to);
        self.at = to;
        self.end = start + keep.end;
    }

    #[cfg(test)]
    fn refill(&mut self, new: &[T]) {
        let start = self.extend(new.len());
        self.items[start..start + new.len()].copy_from_slice(new);
    }
}

impl<T: Copy + Default + Zeroize> Drop for Pool<T> {
    fn drop(&mut self) {
        self.items.zeroize();
    }
}

/// Refuses a batch of `words` choice words larger than the pool's `available` ones.
fn check_pool(available: usize, words: usize) -> Result<()> {
    if available < words {
        return Err(Error::invalid(
            "silent OT: a batch larger than the pool (a refill was missed)",
        ));
    }
    Ok(())
}

/// Refuses a word-by-word batch of random OTs ([`SilentSender::random_words`]) larger than
/// the pool's `available` choice words, or whose output is not `stride` (at least one) words
/// per choice word.
fn check_random_words(available: usize, words: usize, out: usize, stride: usize) -> Result<()> {
    check_pool(available, words)?;
    if stride == 0 || out != stride * words {
        return Err(Error::invalid(
            "silent OT: random OTs need one output stride per choice word",
        ));
    }
    Ok(())
}

/// The silent extension's sender on one link. `Debug` is redacted; secrets are zeroized on
/// drop.
pub struct SilentSender {
    params: Params,
    delta: Row,
    base: Vec<Row>,
    /// The pool; an iteration computes its outputs in place at its end.
    pool: Pool<Row>,
    iteration: u64,
    batch: u64,
}

/// The silent extension's receiver on one link. `Debug` is redacted; secrets are zeroized on
/// drop.
pub struct SilentReceiver {
    params: Params,
    /// The base COTs; each row's low bit is its choice.
    base: Vec<Row>,
    pool: Pool<Row>,
    pool_bits: Pool<u64>,
    iteration: u64,
    batch: u64,
    peer: PeerName,
}

impl std::fmt::Debug for SilentSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SilentSender(pool={}, <redacted>)", self.pool.len())
    }
}

impl std::fmt::Debug for SilentReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SilentReceiver(pool={}, <redacted>)", self.pool.len())
    }
}

impl Drop for SilentSender {
    fn drop(&mut self) {
        self.delta.zeroize();
        self.base.zeroize();
    }
}

impl Drop for SilentReceiver {
    fn drop(&mut self) {
        self.base.zeroize();
    }
}

/// Words of choices of the IKNP batch that seeds a link's first iteration.
pub fn boot_words(p: &Params) -> usize {
    p.base().div_ceil(64)
}

impl SilentSender {
    /// The sender of a link seeded by an IKNP batch of [`boot_words`] choice words.
    pub fn new(params: Params, mut boot: SendBatch) -> Result<SilentSender> {
        params.validate()?;
        if boot.rows.len() < params.base() {
            return Err(Error::invalid("silent OT: the seeding batch is too small"));
        }
        if boot.s[0] & 1 != 1 {
            return Err(Error::invalid(
                "silent OT: the seeding batch's correlation has its low bit 0",
            ));
        }
        let mut base = boot.rows[..params.base()].to_vec();
        clear_low(&mut base);
        boot.rows.zeroize();
        Ok(SilentSender {
            params,
            delta: boot.s,
            base,
            pool: Pool::default(),
            iteration: 0,
            batch: 0,
        })
    }

    /// COTs in the pool.
    pub fn available(&self) -> usize {
        self.pool.len()
    }

    /// Runs one iteration: adds [`Params::out`] COTs to the pool; returns the message for the
    /// receiver.
    pub fn iterate(&mut self) -> Vec<u64> {
        let p = self.params;
        self.iteration += 1;
        let (k, depth) = (p.k(), p.depth);
        let tweak = TREE_TWEAK | self.iteration;
        let tree_base = &self.base[k..p.base()];
        let h0 = hash_rows_wide(tweak, tree_base, [0, 0]);
        let h1 = hash_rows_wide(tweak, tree_base, self.delta);
        let mut roots = Prg::fresh().vec(2 * p.trees);
        let start = self.pool.extend(p.n());
        let leaves = &mut self.pool.items[start..start + p.n()];
        let sums: Vec<Vec<[Row; 2]>> = leaves
            .par_chunks_mut(p.leaves())
            .enumerate()
            .map_init(Scratch::default, |sc, (b, tree)| {
                let sums = grow([roots[2 * b], roots[2 * b + 1]], tree, sc);
                clear_low(tree);
                sums
            })
            .collect();
        roots.zeroize();
        let mut msg = Vec::with_capacity(p.msg_words());
        for (b, levels) in sums.iter().enumerate() {
            for (l, [s0, s1]) in levels.iter().enumerate() {
                let i = b * depth + l;
                msg.extend(xor(*s0, h0[i]));
                msg.extend(xor(*s1, h1[i]));
            }
            let tree = &leaves[b * p.leaves()..(b + 1) * p.leaves()];
            let all = tree.iter().fold(self.delta, |s, x| xor(s, *x));
            msg.extend(all);
        }
        let (mut h0, mut h1) = (h0, h1);
        h0.zeroize();
        h1.zeroize();
        for mut levels in sums {
            levels.iter_mut().for_each(|l| l.zeroize());
        }
        lpn(leaves, &self.base[..k]);
        self.base.copy_from_slice(&leaves[..p.base()]);
        self.pool.keep_only(start, p.base()..p.base() + p.out());
        msg
    }

    /// Answers the receiver's batch of `words` choice words: its message `d` (one bit per
    /// OT) turns the next `64 words` pool COTs into the batch's rows.
    pub fn extend(&mut self, msg: &[u64], words: usize, peer: PeerName) -> Result<SendBatch> {
        if msg.len() != words {
            return Err(Error::protocol(
                peer,
                format!("silent OT: {} choice words, expected {words}", msg.len()),
            ));
        }
        self.batch_of(msg, words)
    }

    /// The next `64 words` pool COTs as they are: random OTs whose choices are the receiver's
    /// pool choices ([`SilentReceiver::random_words`]); nothing travels. They are hashed word
    /// by word, never held whole: `f` gets each choice word's `stride` words of `out` and its
    /// 64 OTs' messages `x^0`, `x^1` (`super::extension::random_words`).
    pub fn random_words(
        &mut self,
        words: usize,
        out: &mut [u64],
        stride: usize,
        f: impl Fn(&mut [u64], &[u64; 64], &[u64; 64]) + Sync,
    ) -> Result<()> {
        check_random_words(self.pool.len() / 64, words, out.len(), stride)?;
        self.batch += 1;
        let side = RandomSide::Sender { s: &self.delta };
        let rows = self.pool.take(64 * words);
        random_words(self.batch, rows, side, out, stride, |o, _, x0, x1| {
            f(o, x0, x1)
        });
        Ok(())
    }

    fn batch_of(&mut self, flips: &[u64], words: usize) -> Result<SendBatch> {
        check_pool(self.pool.len() / 64, words)?;
        let mut rows = self.pool.take(64 * words).to_vec();
        for (i, r) in rows.iter_mut().enumerate() {
            if flips[i / 64] >> (i % 64) & 1 == 1 {
                *r = xor(*r, self.delta);
            }
        }
        self.batch += 1;
        Ok(SendBatch {
            batch: self.batch,
            s: self.delta,
            rows,
        })
    }
}

impl SilentReceiver {
    /// The receiver of a link seeded by an IKNP batch of [`boot_words`] random choice words.
    pub fn new(params: Params, mut boot: RecvBatch) -> Result<SilentReceiver> {
        params.validate()?;
        if boot.rows.len() < params.base() {
            return Err(Error::invalid("silent OT: the seeding batch is too small"));
        }
        // The sender clears its values' low bits; the receiver sets its rows' to its choices,
        // and `w ^ v = u Δ` still holds, `Δ`'s low bit being 1.
        let mut base = boot.rows[..params.base()].to_vec();
        for (i, r) in base.iter_mut().enumerate() {
            r[0] = r[0] & !1 | boot.choices[i / 64] >> (i % 64) & 1;
        }
        boot.rows.zeroize();
        boot.choices.zeroize();
        Ok(SilentReceiver {
            params,
            base,
            pool: Pool::default(),
            pool_bits: Pool::default(),
            iteration: 0,
            batch: 0,
            peer: boot.peer,
        })
    }

    /// COTs in the pool.
    pub fn available(&self) -> usize {
        self.pool.len()
    }

    /// Takes in one iteration's message from the sender: adds [`Params::out`] COTs to the
    /// pool.
    pub fn absorb(&mut self, msg: &[u64]) -> Result<()> {
        let p = self.params;
        if msg.len() != p.msg_words() {
            return Err(Error::protocol(
                self.peer,
                format!(
                    "silent OT: an iteration of {} words, expected {}",
                    msg.len(),
                    p.msg_words()
                ),
            ));
        }
        self.iteration += 1;
        let (k, depth) = (p.k(), p.depth);
        let h = hash_rows_wide(TREE_TWEAK | self.iteration, &self.base[k..p.base()], [0, 0]);
        let base = &self.base;
        let u = |j: usize| (base[j][0] & 1) as usize;
        let per_tree = 2 * (2 * depth + 1);
        let start = self.pool.extend(p.n());
        let leaves = &mut self.pool.items[start..start + p.n()];
        leaves
            .par_chunks_mut(p.leaves())
            .zip(msg.par_chunks(per_tree))
            .enumerate()
            .for_each_init(Scratch::default, |sc, (b, (tree, m))| {
                let mut alpha = 0;
                let mut known = Vec::with_capacity(depth);
                for l in 0..depth {
                    let c = u(k + b * depth + l);
                    alpha |= (1 - c) << (depth - 1 - l);
                    let at = 4 * l + 2 * c;
                    known.push(xor([m[at], m[at + 1]], h[b * depth + l]));
                }
                regrow(alpha, &known, tree, sc);
                known.zeroize();
                clear_low(tree);
                let c = [m[4 * depth], m[4 * depth + 1]];
                tree[alpha] = tree.iter().fold(c, |s, x| xor(s, *x));
            });
        let mut h = h;
        h.zeroize();
        lpn(leaves, &self.base[..k]);
        self.base.copy_from_slice(&leaves[..p.base()]);
        // The kept outputs' choices, straight into the pool's choice words.
        let words = p.out() / 64;
        let at = self.pool_bits.extend(words);
        low_bits(
            &leaves[p.base()..p.base() + p.out()],
            &mut self.pool_bits.items[at..at + words],
        );
        self.pool.keep_only(start, p.base()..p.base() + p.out());
        Ok(())
    }

    /// Starts a batch of `64 choices.len()` OTs with the bits of `choices` as choices (bit `j`
    /// of word `w` is OT `64 w + j`) from the next pool COTs; returns the message `d` for the
    /// sender.
    pub fn extend(&mut self, choices: &[u64]) -> Result<(Vec<u64>, RecvBatch)> {
        let mut batch = self.take_batch(choices.len())?;
        let msg = batch
            .choices
            .iter()
            .zip(choices)
            .map(|(u, r)| u ^ r)
            .collect();
        batch.choices.zeroize();
        batch.choices = choices.to_vec();
        Ok((msg, batch))
    }

    /// The next `64 words` pool COTs with their own random choices: random OTs, for which
    /// nothing travels ([`SilentSender::random_words`]). Hashed word by word, never held
    /// whole: `f` gets each choice word's `stride` words of `out`, the choice word and its 64
    /// chosen messages.
    pub fn random_words(
        &mut self,
        words: usize,
        out: &mut [u64],
        stride: usize,
        f: impl Fn(&mut [u64], u64, &[u64; 64]) + Sync,
    ) -> Result<()> {
        check_random_words(self.pool_bits.len(), words, out.len(), stride)?;
        self.batch += 1;
        let side = RandomSide::Receiver {
            choices: self.pool_bits.take(words),
        };
        let rows = self.pool.take(64 * words);
        random_words(self.batch, rows, side, out, stride, |o, c, x, _| f(o, c, x));
        Ok(())
    }

    /// A batch of the next `64 words` pool COTs with their own random choices (in the batch),
    /// for [`SilentReceiver::extend`] to turn into chosen ones.
    fn take_batch(&mut self, words: usize) -> Result<RecvBatch> {
        check_pool(self.pool_bits.len(), words)?;
        let choices = self.pool_bits.take(words).to_vec();
        let rows = self.pool.take(64 * words).to_vec();
        self.batch += 1;
        Ok(RecvBatch {
            batch: self.batch,
            choices,
            rows,
            peer: self.peer,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mpc::ot::extension::{self, ExtReceiver, ExtSender};

    /// A small set for tests: 64 trees of 64 leaves, `k` = 1,024 (2,688 COTs an iteration).
    pub(crate) const SMALL: Params = Params {
        trees: 64,
        depth: 6,
        log_k: 10,
    };

    fn iknp() -> (ExtSender, ExtReceiver) {
        let (bs, m1) = extension::receiver_setup(PeerName::Server(0));
        let (snd, m2) = extension::sender_setup(&m1, PeerName::Server(1)).unwrap();
        let rcv = extension::receiver_finish(bs, &m2, PeerName::Server(0)).unwrap();
        (snd, rcv)
    }

    pub(crate) fn link(p: Params) -> (SilentSender, SilentReceiver) {
        let (mut snd, mut rcv) = iknp();
        let words = boot_words(&p);
        let (msg, rb) = rcv.extend(&Prg::fresh().vec(words));
        let sb = snd.extend(&msg, words).unwrap();
        (
            SilentSender::new(p, sb).unwrap(),
            SilentReceiver::new(p, rb).unwrap(),
        )
    }

    fn bit(words: &[u64], i: usize) -> bool {
        words[i / 64] >> (i % 64) & 1 == 1
    }

    #[test]
    fn regrowing_a_punctured_tree_gives_every_other_leaf() {
        let mut sc = Scratch::default();
        for depth in [1, 2, 3, 6] {
            let n = 1 << depth;
            let mut leaves = vec![[0u64; 2]; n];
            let sums = grow([3, 9], &mut leaves, &mut sc);
            for alpha in 0..n {
                let known: Vec<Row> = (1..=depth)
                    .map(|l| sums[l - 1][1 - (alpha >> (depth - l) & 1)])
                    .collect();
                let mut got = vec![[7u64; 2]; n];
                regrow(alpha, &known, &mut got, &mut sc);
                for i in 0..n {
                    let want = if i == alpha { [0, 0] } else { leaves[i] };
                    assert_eq!(got[i], want, "depth {depth}, alpha {alpha}, leaf {i}");
                }
            }
        }
        // A wrong sibling sum changes the leaves below it.
        let depth = 4;
        let mut leaves = vec![[0u64; 2]; 16];
        let sums = grow([1, 2], &mut leaves, &mut sc);
        let mut known: Vec<Row> = (1..=depth).map(|l| sums[l - 1][1]).collect();
        known[0][0] ^= 1;
        let mut got = vec![[0u64; 2]; 16];
        regrow(0, &known, &mut got, &mut sc);
        assert_ne!(got[8], leaves[8]);
    }

    /// The pool against a plain vector: takes, refills and iterations (outputs written over
    /// stale entries, then only some kept) in a random order keep every entry, in order,
    /// whatever the buffer held before.
    #[test]
    fn the_pool_keeps_its_entries_in_order_through_takes_and_refills() {
        let mut prg = Prg::fresh();
        let mut pool: Pool<u64> = Pool::default();
        let mut model: Vec<u64> = Vec::new();
        let mut next = 1u64;
        for step in 0..2_000 {
            match prg.next_u64() % 3 {
                0 => {
                    let n = (prg.next_u64() % 50) as usize % (model.len() + 1);
                    let got = pool.take(n).to_vec();
                    let want: Vec<u64> = model.drain(..n).collect();
                    assert_eq!(got, want, "step {step}: take {n}");
                }
                1 => {
                    let n = (prg.next_u64() % 40) as usize;
                    let new: Vec<u64> = (next..next + n as u64).collect();
                    next += n as u64;
                    pool.refill(&new);
                    model.extend(&new);
                }
                _ => {
                    // An iteration: n outputs, of which keep.start.. keep.end stay.
                    let n = 1 + (prg.next_u64() % 60) as usize;
                    let ks = (prg.next_u64() as usize) % n;
                    let ke = ks + (prg.next_u64() as usize) % (n - ks + 1);
                    let start = pool.extend(n);
                    let new: Vec<u64> = (next..next + n as u64).collect();
                    next += n as u64;
                    pool.items[start..start + n].copy_from_slice(&new);
                    pool.keep_only(start, ks..ke);
                    model.extend(&new[ks..ke]);
                }
            }
            assert_eq!(pool.len(), model.len(), "step {step}");
            assert!(
                (0..model.len()).all(|i| pool.get(i) == model[i]),
                "step {step}"
            );
        }
    }

    #[test]
    fn every_pool_cot_holds_the_correlation_and_choices_look_random() {
        // SMALL keeps a whole number of choice words for the next base (1,408 COTs); RAGGED
        // does not (1,414), so its pool's choices start inside a word of the outputs.
        const RAGGED: Params = Params {
            trees: 65,
            depth: 6,
            log_k: 10,
        };
        assert_eq!(SMALL.base() % 64, 0);
        assert_ne!(RAGGED.base() % 64, 0);
        for params in [SMALL, RAGGED] {
            let (mut s, mut r) = link(params);
            let mut ones = 0usize;
            for _ in 0..3 {
                let msg = s.iterate();
                assert_eq!(msg.len(), params.msg_words());
                r.absorb(&msg).unwrap();
                assert_eq!(s.available(), r.available());
                ones = 0;
                for i in 0..s.pool.len() {
                    let c = r.pool_bits.get(i / 64) >> (i % 64) & 1 == 1;
                    ones += c as usize;
                    let want = if c {
                        xor(s.pool.get(i), s.delta)
                    } else {
                        s.pool.get(i)
                    };
                    assert_eq!(r.pool.get(i), want, "{params:?}: cot {i}");
                    // The choice is the receiver's low bit; the sender's is 0.
                    assert_eq!(r.pool.get(i)[0] & 1 == 1, c, "{params:?}: cot {i}");
                    assert_eq!(s.pool.get(i)[0] & 1, 0, "{params:?}: cot {i}");
                }
                // Every other bit of the sender's values looks random.
                for (word, bits) in [(0, 1..64), (1, 0..64)] {
                    for bit in bits {
                        let set = (0..s.pool.len())
                            .filter(|&i| s.pool.get(i)[word] >> bit & 1 == 1)
                            .count();
                        let n = s.pool.len() as f64;
                        let z = (set as f64 - n / 2.0) / (n / 4.0).sqrt();
                        assert!(z.abs() < 6.0, "{params:?}: word {word} bit {bit}: z {z:.1}");
                    }
                }
                // The next iteration's base holds the correlation too.
                for j in 0..params.base() {
                    let want = if r.base[j][0] & 1 == 1 {
                        xor(s.base[j], s.delta)
                    } else {
                        s.base[j]
                    };
                    assert_eq!(r.base[j], want, "{params:?}: base {j}");
                }
            }
            // 3 iterations of 2,688 choices: about half are ones.
            let all = 3 * params.out();
            assert_eq!(s.available(), all);
            assert!(
                (ones as f64 / all as f64 - 0.5).abs() < 0.05,
                "{params:?}: {ones} of {all}"
            );
        }
    }

    /// Random OTs taken word by word are exactly the random OTs of the batch they would have
    /// been (same rows, same batch number, so the same tweaks), on both sides, across the
    /// pieces the hashing is cut into; a word-by-word batch beyond the pool is refused.
    #[test]
    fn random_ots_word_by_word_are_the_batches_random_ots() {
        let (mut s, mut r) = link(SMALL);
        // 1 word, then 300 (more than a hashing piece of 256 words), then 2.
        while s.available() < 64 * 303 {
            r.absorb(&s.iterate()).unwrap();
        }
        for words in [1, 300, 2] {
            let n = 64 * words;
            let rows: Vec<Row> = (0..n).map(|i| s.pool.get(i)).collect();
            let sb = SendBatch {
                batch: s.batch + 1,
                s: s.delta,
                rows,
            };
            let rb = RecvBatch {
                batch: r.batch + 1,
                choices: (0..words).map(|w| r.pool_bits.get(w)).collect(),
                rows: (0..n).map(|i| r.pool.get(i)).collect(),
                peer: PeerName::Server(0),
            };
            let (pairs, got) = (sb.random(), rb.random());
            let mut out_s = vec![0u64; 128 * words];
            s.random_words(words, &mut out_s, 128, |o, x0, x1| {
                o[..64].copy_from_slice(x0);
                o[64..].copy_from_slice(x1);
            })
            .unwrap();
            let mut out_r = vec![0u64; 65 * words];
            r.random_words(words, &mut out_r, 65, |o, c, x| {
                o[0] = c;
                o[1..].copy_from_slice(x);
            })
            .unwrap();
            for i in 0..n {
                let (w, l) = (i / 64, i % 64);
                assert_eq!(
                    (out_s[128 * w + l], out_s[128 * w + 64 + l]),
                    pairs[i],
                    "sender, ot {i} of {n}"
                );
                assert_eq!(out_r[65 * w + 1 + l], got[i], "receiver, ot {i} of {n}");
                let c = bit(&rb.choices, i);
                assert_eq!(bit(&out_r[65 * w..65 * w + 1], l), c);
                assert_eq!(got[i], if c { pairs[i].1 } else { pairs[i].0 }, "ot {i}");
                assert_ne!(pairs[i].0, pairs[i].1);
            }
        }
        assert_eq!(s.available(), r.available());
        let words = r.available() / 64 + 1;
        let f = |_: &mut [u64], _: &[u64; 64], _: &[u64; 64]| {};
        assert!(s.random_words(words, &mut vec![0; words], 1, f).is_err());
        let g = |_: &mut [u64], _: u64, _: &[u64; 64]| {};
        assert!(r.random_words(words, &mut vec![0; words], 1, g).is_err());
        // An output that is not one stride (of at least a word) per choice word is refused
        // too, on both sides, and takes nothing from the pool.
        let before = s.available();
        assert!(r.random_words(1, &mut [0; 3], 2, g).is_err());
        assert!(s.random_words(1, &mut [0; 3], 2, f).is_err());
        assert!(r.random_words(0, &mut [], 0, g).is_err());
        assert!(s.random_words(0, &mut [], 0, f).is_err());
        assert_eq!((s.available(), r.available()), (before, before));
    }

    #[test]
    fn batches_with_chosen_choices_are_iknp_batches() {
        let (mut s, mut r) = link(SMALL);
        let m = s.iterate();
        r.absorb(&m).unwrap();
        let mut prg = Prg::fresh();
        for words in [1, 5] {
            let choices = prg.vec(words);
            let (d, rb) = r.extend(&choices).unwrap();
            let sb = s.extend(&d, words, PeerName::Server(1)).unwrap();
            let (got, pairs) = (rb.random(), sb.random());
            for (i, (g, (x0, x1))) in got.iter().zip(&pairs).enumerate() {
                assert_ne!(x0, x1);
                assert_eq!(g, if bit(&choices, i) { x1 } else { x0 }, "ot {i}");
            }
            let (a, b) = (prg.vec(words), prg.vec(words));
            let (d, rb) = r.extend(&b).unwrap();
            let sb = s.extend(&d, words, PeerName::Server(1)).unwrap();
            let (m, s_share) = sb.gilboa(&a).unwrap();
            let r_share = rb.gilboa(&m).unwrap();
            for i in 0..words {
                let sum = s_share[i].wrapping_add(r_share[i]);
                assert_eq!(sum, a[i].wrapping_mul(b[i]), "product {i}");
            }
        }
        assert_eq!(s.available(), r.available());
        // A batch beyond the pool is refused, not served from nothing.
        let words = r.available() / 64 + 1;
        assert!(r.extend(&vec![0; words]).is_err());
        assert!(
            s.extend(&vec![0; words], words, PeerName::Server(1))
                .is_err()
        );
    }

    #[test]
    fn the_choice_message_is_the_choices_masked_by_the_pool() {
        // d = r ^ u: the same choices give unrelated messages on fresh COTs, and a receiver
        // whose choices are all zero sends its pool's (random) choice bits.
        let (mut s, mut r) = link(SMALL);
        let m = s.iterate();
        r.absorb(&m).unwrap();
        let (d1, _) = r.extend(&[0; 4]).unwrap();
        let (d2, _) = r.extend(&[0; 4]).unwrap();
        assert_ne!(d1, d2);
        let ones: u32 = d1.iter().chain(&d2).map(|w| w.count_ones()).sum();
        assert!((180..=332).contains(&ones), "{ones} of 512");
    }

    #[test]
    fn a_wrong_iteration_length_names_the_sender() {
        let (mut s, mut r) = link(SMALL);
        let mut m = s.iterate();
        m.pop();
        let e = r.absorb(&m).unwrap_err();
        assert!(e.to_string().contains("server"), "{e}");
        assert!(format!("{s:?}{r:?}").contains("redacted"));
    }

    /// The IKNP sender draws `s` with its low bit 1, and a seeding batch whose correlation has
    /// it 0 (the receiver's choices could not ride in the low bits) is refused.
    #[test]
    fn a_seed_whose_correlation_has_its_low_bit_0_is_refused() {
        let (mut snd, mut rcv) = iknp();
        let words = boot_words(&SMALL);
        let (msg, _) = rcv.extend(&Prg::fresh().vec(words));
        let mut sb = snd.extend(&msg, words).unwrap();
        assert_eq!(sb.s[0] & 1, 1);
        sb.s[0] ^= 1;
        let e = SilentSender::new(SMALL, sb).unwrap_err().to_string();
        assert!(e.contains("low bit"), "{e}");
    }

    #[test]
    fn a_changed_tree_message_breaks_the_correlation() {
        // What a deviating sender can do (semi-honest scheme, design.md): the receiver's
        // outputs then go wrong, here in tree 0's leaves, which become the next base.
        let (mut s, mut r) = link(SMALL);
        let mut m = s.iterate();
        m[0] ^= 1;
        m[2] ^= 1;
        r.absorb(&m).unwrap();
        let broken = (0..SMALL.base()).any(|j| {
            let want = if r.base[j][0] & 1 == 1 {
                xor(s.base[j], s.delta)
            } else {
                s.base[j]
            };
            r.base[j] != want
        });
        assert!(broken, "a changed tree message must show in the outputs");
    }

    #[test]
    fn production_parameters_are_ferret_b11() {
        PARAMS.validate().unwrap();
        assert_eq!(PARAMS.n(), 2_396_160);
        assert_eq!(PARAMS.base(), 131_072 + 1170 * 11);
        assert_eq!(PARAMS.out(), 2_252_160);
        assert_eq!(PARAMS.msg_words() * 8, 430_560);
        assert!(SMALL.validate().is_ok());
        assert!(
            Params {
                trees: 1,
                depth: 6,
                log_k: 10
            }
            .validate()
            .is_err()
        );
        assert_eq!(iterations_for(&SMALL, 0, 1), 1);
        assert_eq!(iterations_for(&SMALL, 100, 100), 0);
        assert_eq!(iterations_for(&SMALL, 0, SMALL.out() + 1), 2);
    }

    #[test]
    fn positions_are_public_and_in_range() {
        let a = positions(100, 50, 1 << 10);
        assert_eq!(a, positions(100, 50, 1 << 10));
        assert_eq!(&a[D * 10..], &positions(110, 40, 1 << 10)[..]);
        assert!(a.iter().all(|&p| p < 1 << 10));
        let spread: std::collections::HashSet<u32> =
            positions(0, 1000, 1 << 10).into_iter().collect();
        assert!(spread.len() > 1000, "{}", spread.len());
        let rows: Vec<Row> = (0..128u64).map(|i| [(i * 7) ^ (i >> 2), !i]).collect();
        let mut bits = [0u64; 2];
        low_bits(&rows, &mut bits);
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(bits[i / 64] >> (i % 64) & 1, r[0] & 1, "row {i}");
        }
    }

    /// The public code is the one the first silent OT release used (values taken from that
    /// code's `positions`, at 22f92e3): its positions are part of what both ends of a link
    /// must agree on, so a change to how they are drawn must show here.
    #[test]
    fn the_code_is_the_one_both_ends_have_used() {
        let k = 1 << 17;
        assert_eq!(
            positions(0, 2, k),
            [
                47303, 20848, 125852, 66617, 75339, 50010, 59781, 30138, 14696, 122065, 70393,
                47710, 63736, 76815, 2656, 11197, 77066, 8592, 52437, 122216
            ]
        );
        assert_eq!(
            positions(123_456, 1, k),
            [
                127178, 126224, 59024, 64084, 48080, 51339, 13509, 104027, 13013, 111141
            ]
        );
        let weighted: u64 = positions(0, 1000, k)
            .iter()
            .enumerate()
            .map(|(i, &p)| (i as u64 + 1) * p as u64)
            .sum();
        assert_eq!(weighted, 3_253_112_388_317);
    }

    /// The LPN step against the code written out: output `i` adds the base values at output
    /// `i`'s [`D`] positions to what it held, over several parallel parts and a ragged last
    /// one; so its low bit (the receiver's choice) adds the base rows' low bits.
    #[test]
    fn the_lpn_step_adds_each_outputs_d_base_values() {
        let k = 1 << 10;
        let n = 2 * LPN_PART + 192;
        let mut prg = Prg::new(&crate::mpc::prg::Seed([9; 32]), 0);
        let base: Vec<Row> = (0..k).map(|_| [prg.next_u64(), prg.next_u64()]).collect();
        let start: Vec<Row> = (0..n).map(|_| [prg.next_u64(), prg.next_u64()]).collect();
        let pos = positions(0, n, k);
        let mut want = start.clone();
        let mut want_bits = vec![0u64; n / 64];
        low_bits(&start, &mut want_bits);
        for (i, w) in want.iter_mut().enumerate() {
            for &p in &pos[D * i..D * (i + 1)] {
                *w = xor(*w, base[p as usize]);
                want_bits[i / 64] ^= (base[p as usize][0] & 1) << (i % 64);
            }
        }
        let mut rows = start;
        lpn(&mut rows, &base);
        assert_eq!(rows, want);
        let mut bits = vec![0u64; n / 64];
        low_bits(&rows, &mut bits);
        assert_eq!(bits, want_bits);
    }
}
