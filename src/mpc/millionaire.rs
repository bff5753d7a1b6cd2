//! Two-server comparison by a millionaires' protocol on 4-bit groups, with random 1-out-of-16
//! OTs as its material (the construction of CrypTFlow2: Rathee, Rathee, Goyal, Gupta, Sharma,
//! Chandran and Rastogi, CCS 2020).
//!
//! **Why.** The masked comparison ([`crate::mpc::compare`]) needs random bits shared both
//! ways, which a dealer deals for free but which cost an OT and up to 62 bits of correction
//! each without one, plus 62 AND-triple pairs per 64-bit comparison. With two servers the share
//! structure allows a direct comparison instead: 64 random OTs and 15 AND triples, and no
//! random bits at all.
//!
//! **Reduction.** For `x` in `[-2^(l-1), 2^(l-1))` with `x = x_0 + x_1 mod 2^64`, server 0
//! shifts its share, `x_0' = x_0 + 2^(l-1)`, so that `x < 0` iff bit `l-1` of
//! `x' = x_0' + x_1` is 0. That bit is `m_0 XOR m_1 XOR carry`, with `m_s` bit `l-1` of each
//! share and `carry = [a + (x_1 mod 2^(l-1)) >= 2^(l-1)]` for `a = x_0' mod 2^(l-1)`, which is
//! the millionaires' question `[a > b]` for `b = 2^(l-1) - 1 - (x_1 mod 2^(l-1))`: server 0
//! holds `a`, server 1 holds `b`, and each sees nothing of the other's.
//!
//! **Leaves.** Both numbers are cut into `ceil((l-1)/4)` groups of 4 bits. For each group `j`
//! the OT sender (one server; the role alternates from request to request) draws XOR shares
//! of `G_j = [a_j > b_j]` and `E_j = [a_j = b_j]` and offers, for each of the 16 values `w` the
//! chooser's group may take, `G` and `E` for `w` under its share, masked by a random
//! 1-out-of-16 OT: the chooser holds a random choice `c_j` and message `c_j`; it sends
//! `u_j = v_j XOR c_j` for its group value `v_j`, and the sender masks the answer for `w`
//! with its message `w XOR u_j`, so the chooser can unmask exactly the one for `w = v_j`.
//! Everything else it receives is masked by messages it cannot compute; what the sender
//! receives is its value XOR a random choice.
//!
//! **Tree.** The leaves (the most significant group first) combine as in the masked
//! comparison's carry tree (`crate::mpc::carry_tree::Tree`): `G = G_hi XOR (E_hi AND
//! G_lo)`, `E = E_hi AND E_lo`, one level per round, on XOR-shared AND triples. The result
//! is `1 XOR m_0 XOR m_1 XOR G`, bit-sliced like the masked comparison's.
//!
//! **Cost per 64-bit comparison.** Material: 64 random OTs (4 per 1-out-of-16 OT) and 15 AND
//! triple pairs (30 random OTs), no message but the pools' refills. Online: the chooser sends
//! one word, the sender 8 (16 groups, 16 messages of 2 bits), then 41 bits each way in the
//! tree; 2 + 4 rounds.
//!
//! **Two lanes.** One value against two public offsets (`[w + o_0 < 0]`, `[w + o_1 < 0]`,
//! [`crate::mpc::engine::Engine::ltz_offsets`]): the chooser keeps its share in both lanes,
//! the sender adds the offsets to its own, so the chooser's groups are the same and one
//! 1-out-of-16 OT per group carries 4-bit messages, both lanes' `G` and `E`. Per 64-bit value:
//! 64 random OTs for the leaves and 30 AND-triple pairs for the two trees (124 OTs instead of
//! 188), the chooser's one word, the sender's 16; the trees run side by side on `2 n` lanes.

use crate::error::{Error, PeerName, Result};
use crate::mpc::carry_tree::{Tree, and_words_for};
use crate::mpc::prg::Prg;
use crate::mpc::protocol::{Protocol, Step};
use zeroize::Zeroize;

/// `fields(lanes)[i][b]`: the fields `w` (of 16, each `2 lanes` bits wide, field `w` at bit
/// `2 lanes w`) whose index has bit `i` equal to `b`.
const fn fields(lanes: usize) -> [[u64; 2]; 4] {
    let width = 2 * lanes;
    let mut m = [[0u64; 2]; 4];
    let mut i = 0;
    while i < 4 {
        let mut w = 0;
        while w < 16 {
            m[i][(w >> i) & 1] |= ((1u64 << width) - 1) << (width * w);
            w += 1;
        }
        i += 1;
    }
    m
}

/// [`fields`] for one lane (2-bit fields in the low 32 bits) and for two (4-bit fields).
pub(crate) const FIELDS: [[[u64; 2]; 4]; 2] = [fields(1), fields(2)];

/// Bit 0 of every field of one lane's answers (`G`); bit 1 is `E`, and lane `l` of two starts
/// `2 l` bits up.
const FIELD_LOW: [u64; 2] = [0x5555_5555, 0x1111_1111_1111_1111];

/// Groups of 4 bits a comparison of width `ell` cuts its numbers into (at most 16).
pub fn groups(ell: u32) -> usize {
    (ell as usize).saturating_sub(1).div_ceil(4).max(1)
}

/// Words of OT messages the sender sends per value (16 messages of `2 lanes` bits per group:
/// two groups to a word with one lane, one with two).
fn answer_words(ell: u32, lanes: usize) -> usize {
    (groups(ell) * lanes).div_ceil(2)
}

/// Field `j` (of `32 lanes` bits) of a word sequence laid out [`answer_words`]-style: the
/// word and the shift.
fn field_at(j: usize, lanes: usize) -> (usize, u32) {
    if lanes == 1 {
        (j / 2, 32 * (j % 2) as u32)
    } else {
        (j, 0)
    }
}

/// The mask of `bits` low bits (`bits` at most 64).
fn low_bits(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

/// Choice words of random OTs `n` comparisons of width `ell` take: one 1-out-of-16 OT (4 OTs)
/// per group, 16 to a choice word, the groups of consecutive comparisons back to back.
pub fn choice_words(n: usize, ell: u32) -> usize {
    (n * groups(ell)).div_ceil(16)
}

/// The 16 fields of `pads` (of `2 lanes` bits) rearranged so that field `w` holds field
/// `w XOR u`.
fn permute(pads: u64, u: u64, lanes: usize) -> u64 {
    let mut p = pads;
    for (i, f) in FIELDS[lanes - 1].iter().enumerate() {
        if u >> i & 1 == 1 {
            let shift = (2 * lanes) << i;
            p = ((p & f[0]) << shift) | ((p >> shift) & f[0]);
        }
    }
    p
}

/// Field `w` (of `2 lanes` bits) of the sender's answer for one lane: bit 0 `[a > b]`, bit 1
/// `[a = b]` for its group value `v` and the chooser's `w` (server 0 holds `a`, server 1 `b`).
fn answers(sender: usize, v: u64, lanes: usize) -> u64 {
    (0..16u64).fold(0, |t, w| {
        let (a, b) = if sender == 0 { (v, w) } else { (w, v) };
        t | (u64::from(a > b) | u64::from(a == b) << 1) << (2 * lanes as u64 * w)
    })
}

/// One server's material for `n` values of width `ell`, each compared in `lanes` (1 or 2)
/// comparisons that share the chooser's number: its side of the random 1-out-of-16 OTs (one
/// per group and value, whatever the lanes) and its shares of the tree's AND triples (one tree
/// per lane). `Debug` shows sizes only; the words are zeroized on drop.
pub struct MillionaireMaterial {
    me: usize,
    sender: usize,
    n: usize,
    ell: u32,
    lanes: usize,
    /// Per choice word of 16 OTs of 1-out-of-16 (group `j` of value `i` is OT `q = i G + j`
    /// for `G` groups per value, in word `q / 16`): the sender's 16 messages of `2 lanes` bits
    /// for each, `32 lanes` bits per OT ([`field_at`]: `8 lanes` words); the chooser's choices
    /// (4 bits each) and chosen messages (`2 lanes` bits each), 2 words.
    leaves: Vec<u64>,
    /// `[a, b1, b2, a & b1, a & b2]`, XOR shares.
    triples: [Vec<u64>; 5],
}

impl std::fmt::Debug for MillionaireMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MillionaireMaterial(n={}, ell={}, lanes={}, sender={}, <redacted>)",
            self.n, self.ell, self.lanes, self.sender
        )
    }
}

impl Drop for MillionaireMaterial {
    fn drop(&mut self) {
        self.leaves.zeroize();
        self.triples.iter_mut().for_each(|t| t.zeroize());
    }
}

impl MillionaireMaterial {
    /// Server `me`'s material for `n` values of width `ell` in `lanes` comparisons each, with
    /// `sender` as the OT sender: `ots` `8 lanes` words per choice word ([`choice_words`]) as
    /// [`crate::mpc::ot::cross::Kind::RandomSixteen`] lays them out (a random 1-out-of-16 OT per
    /// group), and the trees' triples (`lanes n` of them).
    pub fn new(
        me: usize,
        sender: usize,
        (n, ell, lanes): (usize, u32, usize),
        ots: Vec<u64>,
        triples: [Vec<u64>; 5],
    ) -> Result<MillionaireMaterial> {
        let t = and_words_for(groups(ell), (lanes * n).div_ceil(64));
        if !(2..=64).contains(&ell)
            || !(1..=2).contains(&lanes)
            || sender > 1
            || me > 1
            || ots.len() != 8 * lanes * choice_words(n, ell)
            || triples.iter().any(|x| x.len() != t)
        {
            return Err(Error::invalid(
                "millionaires' comparison: sizes of the material differ",
            ));
        }
        let leaves = if me == sender {
            ots
        } else {
            let mut ots = ots;
            let kept = ots
                .chunks_exact(8 * lanes)
                .flat_map(|c| [c[0], c[1]])
                .collect();
            ots.zeroize();
            kept
        };
        Ok(MillionaireMaterial {
            me,
            sender,
            n,
            ell,
            lanes,
            leaves,
            triples,
        })
    }

    /// The server that sends the OT messages.
    pub fn sender(&self) -> usize {
        self.sender
    }

    /// The server that chooses: with two lanes, its shares of a value must be the same in
    /// both ([`Millionaire::new`]).
    pub fn chooser(&self) -> usize {
        1 - self.sender
    }

    /// The sender's 16 messages of OT `q`, `2 lanes` bits each (`lanes` is this material's).
    fn sender_pads(&self, q: usize, lanes: usize) -> u64 {
        let (w, shift) = field_at(q % 16, lanes);
        self.leaves[8 * lanes * (q / 16) + w] >> shift & low_bits(32 * lanes as u32)
    }
}

enum Phase {
    /// The chooser's masked groups are on their way.
    Choose,
    /// The sender's answers are on their way; the sender's own leaves are ready.
    Answer(Option<(Vec<u64>, Vec<u64>)>),
    Tree(Tree),
}

/// Boolean shares of `[x < 0]` for `lanes n` values of bit width `ell` shared between two
/// servers, bit-sliced (`ceil(lanes n / 64)` words), as [`crate::mpc::compare::Compare`] gives
/// them. With two lanes, values `i` and `n + i` are compared on one set of OTs: the chooser's
/// shares of them must be equal (the other server's may differ, for example by public
/// offsets: two thresholds for one secret), and the sender answers for both in each message.
pub struct Millionaire {
    me: usize,
    blocks: usize,
    /// This server's number per comparison (`a` or `b`, module docs), lane-major.
    value: Vec<u64>,
    /// This server's share of the result before the tree: `1 XOR m_0` or `m_1`, bit-sliced.
    top: Vec<u64>,
    mat: MillionaireMaterial,
    phase: Phase,
}

impl std::fmt::Debug for Millionaire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Millionaire(n={}, lanes={}, <redacted>)",
            self.mat.n, self.mat.lanes
        )
    }
}

impl Drop for Millionaire {
    fn drop(&mut self) {
        self.value.zeroize();
        self.top.zeroize();
    }
}

impl Millionaire {
    /// Prepares the comparison of server `me`'s shares `x` (`lanes n` of them, lane-major)
    /// with its material.
    pub fn new(me: usize, x: Vec<u64>, ell: u32, mat: MillionaireMaterial) -> Result<Millionaire> {
        let (n, lanes) = (mat.n, mat.lanes);
        if me != mat.me || x.len() != lanes * n || mat.ell != ell {
            return Err(Error::invalid(
                "millionaires' comparison: sizes of input and material differ",
            ));
        }
        if lanes == 2 && me == mat.chooser() && x[..n] != x[n..] {
            return Err(Error::invalid(
                "millionaires' comparison: the chooser's shares differ between lanes",
            ));
        }
        let blocks = (lanes * n).div_ceil(64);
        let low = (1u64 << (ell - 1)) - 1;
        let mut top = vec![0u64; blocks];
        let mut x = x;
        let value = x
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let (v, msb) = if me == 0 {
                    let s = s.wrapping_add(1 << (ell - 1));
                    (s & low, !(s >> (ell - 1)) & 1)
                } else {
                    (low - (s & low), s >> (ell - 1) & 1)
                };
                top[i / 64] |= msb << (i % 64);
                v
            })
            .collect();
        x.zeroize();
        Ok(Millionaire {
            me,
            blocks,
            value,
            top,
            mat,
            phase: Phase::Choose,
        })
    }

    fn chooser(&self) -> usize {
        self.mat.chooser()
    }

    fn payloads(&self, to_peer: Vec<u64>) -> Vec<Vec<u64>> {
        let mut p = vec![Vec::new(), Vec::new()];
        p[1 - self.me] = to_peer;
        p
    }

    fn expect(&self, words: usize) -> Vec<usize> {
        let mut e = vec![0, 0];
        e[1 - self.me] = words;
        e
    }

    /// The sender's answers to the chooser's masked groups `u`, and its own leaves.
    fn answer(&self, u: &[u64]) -> (Vec<u64>, (Vec<u64>, Vec<u64>)) {
        match self.mat.lanes {
            1 => self.answer_lanes::<1>(u),
            _ => self.answer_lanes::<2>(u),
        }
    }

    /// [`Millionaire::answer`] for `LANES` lanes (a constant, so that one lane's loop is as
    /// tight as before lanes existed).
    fn answer_lanes<const LANES: usize>(&self, u: &[u64]) -> (Vec<u64>, (Vec<u64>, Vec<u64>)) {
        let (n, ell, lanes, b) = (self.mat.n, self.mat.ell, LANES, self.blocks);
        let (groups, per) = (groups(ell), answer_words(ell, lanes));
        let table: Vec<u64> = (0..16)
            .map(|v| answers(self.mat.sender, v, lanes))
            .collect();
        // This server's shares of the leaves, drawn fresh; lanes past `lanes n` stay zero.
        let mut prg = Prg::fresh();
        let mut g = prg.vec(groups * b);
        let mut e = prg.vec(groups * b);
        if (lanes * n) % 64 != 0 {
            let keep = (1u64 << ((lanes * n) % 64)) - 1;
            for t in 0..groups {
                g[t * b + b - 1] &= keep;
                e[t * b + b - 1] &= keep;
            }
        }
        let mut msg = vec![0u64; per * n];
        let low = FIELD_LOW[lanes - 1];
        for (i, &u) in u.iter().enumerate() {
            // Each lane's value, word and bit in the bit-sliced leaves.
            let lane = |l: usize| {
                let at = l * n + i;
                (self.value[at], at / 64, at % 64)
            };
            let ls = [lane(0), lane(lanes - 1)];
            for j in 0..groups {
                // Leaf t is group groups - 1 - t: the most significant first.
                let t = groups - 1 - j;
                let mut field = permute(
                    self.mat.sender_pads(i * groups + j, lanes),
                    u >> (4 * j) & 15,
                    lanes,
                );
                for (l, &(v, w, s)) in ls[..lanes].iter().enumerate() {
                    let (sg, se) = (g[t * b + w] >> s & 1, e[t * b + w] >> s & 1);
                    field ^= (table[(v >> (4 * j) & 15) as usize] ^ (sg * low) ^ ((se * low) << 1))
                        << (2 * l);
                }
                let (w, shift) = field_at(j, lanes);
                msg[per * i + w] |= field << shift;
            }
        }
        (msg, (g, e))
    }

    /// The chooser's leaves from the sender's answers.
    fn unmask(&self, msg: &[u64]) -> (Vec<u64>, Vec<u64>) {
        match self.mat.lanes {
            1 => self.unmask_lanes::<1>(msg),
            _ => self.unmask_lanes::<2>(msg),
        }
    }

    /// [`Millionaire::unmask`] for `LANES` lanes.
    fn unmask_lanes<const LANES: usize>(&self, msg: &[u64]) -> (Vec<u64>, Vec<u64>) {
        let (n, ell, lanes, b) = (self.mat.n, self.mat.ell, LANES, self.blocks);
        let (groups, per) = (groups(ell), answer_words(ell, lanes));
        let width = 2 * lanes as u32;
        let mut g = vec![0u64; groups * b];
        let mut e = vec![0u64; groups * b];
        for (i, &v) in self.value[..n].iter().enumerate() {
            let ats = [(i / 64, i % 64), ((n + i) / 64, (n + i) % 64)];
            for j in 0..groups {
                let (t, q) = (groups - 1 - j, i * groups + j);
                let pad = self.mat.leaves[2 * (q / 16) + 1] >> (width * (q % 16) as u32);
                let (w, shift) = field_at(j, lanes);
                let field = msg[per * i + w] >> shift;
                let f = (field >> (width * (v >> (4 * j) & 15) as u32)) ^ pad;
                for (l, &(w, s)) in ats[..lanes].iter().enumerate() {
                    g[t * b + w] |= (f >> (2 * l) & 1) << s;
                    e[t * b + w] |= (f >> (2 * l + 1) & 1) << s;
                }
            }
        }
        (g, e)
    }

    fn tree_step(mut self, g: Vec<u64>, e: Vec<u64>) -> Step<Self> {
        let top = std::mem::take(&mut self.top);
        let tree = Tree::new(self.me, self.blocks, g, e, top);
        self.next(tree)
    }

    fn next(mut self, tree: Tree) -> Step<Self> {
        match tree.message(&self.mat.triples) {
            None => Step::Done(tree.finish()),
            Some(msg) => {
                self.phase = Phase::Tree(tree);
                Step::Send(self, msg)
            }
        }
    }
}

impl Protocol for Millionaire {
    type Output = Vec<u64>;

    fn start(self) -> Result<Step<Self>> {
        let n = self.mat.n;
        if self.me == self.chooser() {
            // u = v XOR c: each 4-bit group masked by its OT's random choice.
            let groups = groups(self.mat.ell);
            let u = self.value[..n]
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    (0..groups).fold(*v, |u, j| {
                        let q = i * groups + j;
                        u ^ (self.mat.leaves[2 * (q / 16)] >> (4 * (q % 16)) & 15) << (4 * j)
                    })
                })
                .collect();
            let payloads = self.payloads(u);
            let expected = self.expect(0);
            Ok(Step::SendEach(self, payloads, expected))
        } else {
            let payloads = self.payloads(Vec::new());
            let expected = self.expect(n);
            Ok(Step::SendEach(self, payloads, expected))
        }
    }

    fn receive(mut self, mut incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        let phase = match std::mem::replace(&mut self.phase, Phase::Choose) {
            Phase::Tree(tree) => {
                let tree = tree.combine(&incoming, &self.mat.triples, "millionaires' tree")?;
                return Ok(self.next(tree));
            }
            phase => phase,
        };
        let (n, peer) = (self.mat.n, 1 - self.me);
        let per = answer_words(self.mat.ell, self.mat.lanes);
        let sender = self.me == self.mat.sender;
        let got = std::mem::take(incoming.get_mut(peer).ok_or_else(|| {
            Error::invalid("millionaires' comparison: a message slot is missing")
        })?);
        let want = |words: usize, what: &str| -> Result<()> {
            if got.len() != words {
                return Err(Error::protocol(
                    PeerName::Server(peer),
                    format!(
                        "millionaires' comparison: {what} of {} words, expected {words}",
                        got.len()
                    ),
                ));
            }
            Ok(())
        };
        match phase {
            Phase::Choose if sender => {
                want(n, "masked groups")?;
                let (msg, own) = self.answer(&got);
                self.phase = Phase::Answer(Some(own));
                let payloads = self.payloads(msg);
                let expected = self.expect(0);
                Ok(Step::SendEach(self, payloads, expected))
            }
            Phase::Choose | Phase::Tree(_) => {
                want(0, "a first message")?;
                self.phase = Phase::Answer(None);
                let payloads = self.payloads(Vec::new());
                let expected = self.expect(per * n);
                Ok(Step::SendEach(self, payloads, expected))
            }
            Phase::Answer(Some((g, e))) => {
                want(0, "a second message")?;
                Ok(self.tree_step(g, e))
            }
            Phase::Answer(None) => {
                want(per * n, "answers")?;
                let (g, e) = self.unmask(&got);
                Ok(self.tree_step(g, e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random 1-out-of-16 OTs (all pads zero with `zero_pads`: a valid but open OT) and AND
    /// triples for `n` comparisons, dealt in the clear (tests only).
    fn dealt(
        (n, ell, lanes): (usize, u32, usize),
        sender: usize,
        zero_pads: bool,
        prg: &mut Prg,
    ) -> [MillionaireMaterial; 2] {
        let words = choice_words(n, ell);
        let per = 8 * lanes;
        let width = 2 * lanes as u64;
        let mut ots = [vec![0u64; per * words], vec![0u64; per * words]];
        for i in 0..words {
            for s in 0..16 {
                let pads = if zero_pads {
                    0
                } else {
                    prg.next_u64() & low_bits(32 * lanes as u32)
                };
                let c = prg.next_u64() & 15;
                let (w, shift) = field_at(s, lanes);
                ots[sender][per * i + w] |= pads << shift;
                ots[1 - sender][per * i] |= c << (4 * s);
                ots[1 - sender][per * i + 1] |=
                    (pads >> (width * c) & low_bits(width as u32)) << (width * s as u64);
            }
        }
        let t = and_words_for(groups(ell), (lanes * n).div_ceil(64));
        let [a0, b10, b20, a1, b11, b21, c10, c20] = std::array::from_fn(|_| prg.vec(t));
        // Server 1's shares of a & b1 and a & b2 complete server 0's random ones.
        let and = |b0: &[u64], b1: &[u64], c0: &[u64]| -> Vec<u64> {
            (0..t)
                .map(|w| ((a0[w] ^ a1[w]) & (b0[w] ^ b1[w])) ^ c0[w])
                .collect()
        };
        let c11 = and(&b10, &b11, &c10);
        let c21 = and(&b20, &b21, &c20);
        let [o0, o1] = ots;
        [
            MillionaireMaterial::new(0, sender, (n, ell, lanes), o0, [a0, b10, b20, c10, c20])
                .unwrap(),
            MillionaireMaterial::new(1, sender, (n, ell, lanes), o1, [a1, b11, b21, c11, c21])
                .unwrap(),
        ]
    }

    /// What each server received, round by round.
    type Rounds = Vec<[Vec<u64>; 2]>;

    /// Runs both servers in lockstep; returns the XOR of their results and what each received,
    /// round by round.
    fn drive(parties: [Millionaire; 2]) -> (Vec<u64>, Rounds) {
        let mut steps: Vec<Step<Millionaire>> = parties.map(|p| p.start().unwrap()).into();
        let mut seen = Vec::new();
        loop {
            if let [Step::Done(a), Step::Done(b)] = &steps[..] {
                return (a.iter().zip(b).map(|(x, y)| x ^ y).collect(), seen);
            }
            let sent: Vec<Vec<Vec<u64>>> = steps
                .iter()
                .enumerate()
                .map(|(s, st)| match st {
                    Step::Send(_, m) => vec![m.clone(), m.clone()],
                    Step::SendEach(_, m, _) => {
                        let mut m = m.clone();
                        m[s].clear();
                        m
                    }
                    Step::Done(_) => panic!("one server finished early"),
                })
                .collect();
            seen.push([sent[1][0].clone(), sent[0][1].clone()]);
            steps = steps
                .into_iter()
                .enumerate()
                .map(|(s, st)| {
                    let incoming = vec![sent[0][s].clone(), sent[1][s].clone()];
                    match st {
                        Step::Send(p, _) | Step::SendEach(p, _, _) => p.receive(incoming).unwrap(),
                        Step::Done(_) => unreachable!(),
                    }
                })
                .collect();
        }
    }

    fn run(
        xs: &[u64],
        ell: u32,
        sender: usize,
        zero_pads: bool,
        seed: u64,
    ) -> (Vec<u64>, Rounds, [Vec<u64>; 2]) {
        let mut prg = Prg::new(&crate::mpc::prg::Seed([5; 32]), seed);
        let x0 = prg.vec(xs.len());
        let x1: Vec<u64> = xs
            .iter()
            .zip(&x0)
            .map(|(x, a)| x.wrapping_sub(*a))
            .collect();
        let [m0, m1] = dealt((xs.len(), ell, 1), sender, zero_pads, &mut prg);
        let parties = [
            Millionaire::new(0, x0.clone(), ell, m0).unwrap(),
            Millionaire::new(1, x1.clone(), ell, m1).unwrap(),
        ];
        let (bits, seen) = drive(parties);
        (bits, seen, [x0, x1])
    }

    fn lt(bits: &[u64], i: usize) -> bool {
        bits[i / 64] >> (i % 64) & 1 == 1
    }

    /// Low-entropy secrets of width `ell`: -1, 0, 1 over and over.
    fn secrets(n: usize) -> Vec<u64> {
        (0..n)
            .map(|i| (i % 3) as u64)
            .map(|v| v.wrapping_sub(1))
            .collect()
    }

    #[test]
    fn either_server_may_send_and_the_results_are_right() {
        for ell in [2, 9, 40, 64] {
            for sender in [0, 1] {
                let xs = secrets(200);
                let (bits, seen, _) = run(&xs, ell, sender, false, 1);
                for (i, x) in xs.iter().enumerate() {
                    assert_eq!(
                        lt(&bits, i),
                        (*x as i64) < 0,
                        "ell {ell}, sender {sender}, value {i}"
                    );
                }
                // 2 rounds of OT, then one per tree level.
                assert_eq!(
                    seen.len(),
                    2 + crate::mpc::carry_tree::level_sizes_for(groups(ell)).len() - 1
                );
            }
        }
    }

    /// The OT sender reads the chooser's masked groups as if they were its number and
    /// rebuilds the secrets from them and its own share: it never gets one right. Control: the
    /// same attack on the chooser's number itself rebuilds every secret.
    #[test]
    fn the_sender_cannot_read_the_choosers_number() {
        let ell = 64;
        let low = (1u64 << 63) - 1;
        let xs = secrets(640);
        for sender in [0, 1] {
            let chooser = 1 - sender;
            let (_, seen, shares) = run(&xs, ell, sender, false, 2);
            let u = &seen[0][sender];
            assert_eq!(u.len(), xs.len());
            // The chooser's number `v` gives its share's low bits (server 1: `low - v`; server
            // 0: `v - 2^63`), and the sender knows the top bit is what makes `x` small.
            let rebuild = |i: usize, v: u64| -> u64 {
                let own = shares[sender][i];
                let other_low = if chooser == 1 {
                    low - (v & low)
                } else {
                    (v & low).wrapping_sub(1 << 63) & low
                };
                let mut hits = 0;
                for top in [0u64, 1] {
                    let other = other_low | top << 63;
                    if own.wrapping_add(other) == xs[i] {
                        hits += 1;
                    }
                }
                hits
            };
            let from_u: u64 = (0..xs.len()).map(|i| rebuild(i, u[i])).sum();
            assert_eq!(from_u, 0, "sender {sender}");
            let v: Vec<u64> = (0..xs.len())
                .map(|i| {
                    let s = shares[chooser][i];
                    if chooser == 0 {
                        s.wrapping_add(1 << 63) & low
                    } else {
                        low - (s & low)
                    }
                })
                .collect();
            let from_v: u64 = (0..xs.len()).map(|i| rebuild(i, v[i])).sum();
            assert_eq!(from_v, xs.len() as u64, "control, sender {sender}");
        }
    }

    /// `explained(zero_pads)` counts the groups whose 16 answers some value of the sender's
    /// explains: none under the OT's pads, all `groups` with zero pads (the control, an OT that
    /// hides nothing).
    fn only_open_ots_explain(explained: impl Fn(bool) -> usize, groups: usize, sender: usize) {
        assert_eq!(explained(false), 0, "sender {sender}");
        assert_eq!(explained(true), groups, "control, sender {sender}");
    }

    /// The chooser looks for a group value of the sender's that explains all 16 answers of a
    /// group (under some share of `G` and `E`): with the OT's pads it never finds one; control:
    /// with zero pads (an OT that hides nothing) it finds one for every group.
    #[test]
    fn the_chooser_sees_one_answer_per_group() {
        let ell = 64;
        let xs = secrets(256);
        for sender in [0, 1] {
            let chooser = 1 - sender;
            let explained = |zero_pads: bool| -> usize {
                let (_, seen, _) = run(&xs, ell, sender, zero_pads, 3);
                let answers_msg = &seen[1][chooser];
                let mut found = 0;
                for i in 0..xs.len() {
                    for j in 0..groups(ell) {
                        let f = answers_msg[8 * i + j / 2] >> (32 * (j % 2)) & 0xffff_ffff;
                        let fits = (0..16).any(|v| {
                            (0..4u64).any(|s| {
                                let share = ((s & 1) * 0x5555_5555) ^ ((s >> 1) * 0xaaaa_aaaa);
                                answers(sender, v, 1) ^ share == f
                            })
                        });
                        found += usize::from(fits);
                    }
                }
                found
            };
            only_open_ots_explain(explained, xs.len() * groups(ell), sender);
        }
    }

    /// Two lanes: shares of `w` (the chooser's share kept, the other server's plus each
    /// offset), run on dealt two-lane material.
    fn run_pairs(
        ws: &[u64],
        offsets: [u64; 2],
        ell: u32,
        sender: usize,
        zero_pads: bool,
        seed: u64,
    ) -> (Vec<u64>, Rounds) {
        let mut prg = Prg::new(&crate::mpc::prg::Seed([6; 32]), seed);
        let n = ws.len();
        let chooser = 1 - sender;
        let mut shares = [Vec::new(), Vec::new()];
        shares[chooser] = prg.vec(n);
        shares[sender] = ws
            .iter()
            .zip(&shares[chooser])
            .map(|(w, c)| w.wrapping_sub(*c))
            .collect();
        let lanes = |s: usize| -> Vec<u64> {
            offsets
                .iter()
                .flat_map(|&o| {
                    let o = if s == sender { o } else { 0 };
                    shares[s].iter().map(move |v| v.wrapping_add(o))
                })
                .collect()
        };
        let [m0, m1] = dealt((n, ell, 2), sender, zero_pads, &mut prg);
        let parties = [
            Millionaire::new(0, lanes(0), ell, m0).unwrap(),
            Millionaire::new(1, lanes(1), ell, m1).unwrap(),
        ];
        drive(parties)
    }

    #[test]
    fn two_lanes_compare_each_value_against_two_offsets() {
        for ell in [2, 9, 40, 64] {
            let half = 1u64 << (ell - 1);
            // Values around zero, at random, and, for each lane, the values whose sums with
            // its offset are the range's ends and their neighbours (-2^(ell-1), 2^(ell-1) - 1,
            // -1, 0). The protocol compares the sums' low `ell` bits as signed numbers, and so
            // does the check below.
            let mut prg = Prg::new(&crate::mpc::prg::Seed([7; 32]), u64::from(ell));
            let span = (half / 4).max(1);
            for offsets in [
                [1u64, 0u64.wrapping_sub(1)],
                [span / 2, (span / 2 + 1).wrapping_neg()],
            ] {
                let mut ws: Vec<u64> = (0..300)
                    .map(|i| match i % 4 {
                        0 => (i as u64 % 5).wrapping_sub(2),
                        1 => prg.next_u64() % span,
                        2 => (prg.next_u64() % span).wrapping_neg(),
                        _ => (half / 2).wrapping_sub(i as u64 % 3),
                    })
                    .collect();
                for o in offsets {
                    for end in [half.wrapping_neg(), half - 1, u64::MAX, 0] {
                        ws.push(end.wrapping_sub(o));
                    }
                }
                for sender in [0, 1] {
                    let (bits, seen) = run_pairs(&ws, offsets, ell, sender, false, 4);
                    let n = ws.len();
                    for (i, w) in ws.iter().enumerate() {
                        for (l, o) in offsets.iter().enumerate() {
                            // The sum as a signed number of width ell.
                            let x = w.wrapping_add(*o) << (64 - ell);
                            assert_eq!(
                                lt(&bits, l * n + i),
                                (x as i64) < 0,
                                "ell {ell}, sender {sender}, value {i}, lane {l}"
                            );
                        }
                    }
                    // The rounds of one lane: the trees run side by side.
                    assert_eq!(
                        seen.len(),
                        2 + crate::mpc::carry_tree::level_sizes_for(groups(ell)).len() - 1
                    );
                    // One word of masked groups per value, one answer word per group.
                    assert_eq!(seen[0][sender].len(), n);
                    assert_eq!(seen[1][1 - sender].len(), n * groups(ell));
                }
            }
        }
    }

    #[test]
    fn two_lanes_need_the_choosers_shares_equal() {
        let mut prg = Prg::new(&crate::mpc::prg::Seed([8; 32]), 1);
        for sender in [0, 1] {
            let chooser = 1 - sender;
            let [m0, m1] = dealt((3, 64, 2), sender, false, &mut prg);
            let m = if chooser == 0 { m0 } else { m1 };
            let x = vec![1, 2, 3, 1, 2, 4];
            assert!(Millionaire::new(chooser, x, 64, m).is_err());
        }
        // The sender's may differ, and one lane's material does not take two lanes' input.
        let [m0, _] = dealt((3, 64, 2), 0, false, &mut prg);
        assert!(Millionaire::new(0, vec![1, 2, 3, 1, 2, 4], 64, m0).is_ok());
        let [m0, _] = dealt((3, 64, 1), 0, false, &mut prg);
        assert!(Millionaire::new(0, vec![1, 2, 3, 1, 2, 4], 64, m0).is_err());
    }

    /// As [`the_chooser_sees_one_answer_per_group`] with two lanes: no pair of the sender's
    /// group values explains a group's 16 answers under the pads; with zero pads every group
    /// is explained.
    #[test]
    fn with_two_lanes_the_chooser_still_sees_one_answer_per_group() {
        let ell = 64;
        let ws = secrets(128);
        let offsets = [5, 3u64.wrapping_neg()];
        for sender in [0, 1] {
            let chooser = 1 - sender;
            let explained = |zero_pads: bool| -> usize {
                let (_, seen) = run_pairs(&ws, offsets, ell, sender, zero_pads, 5);
                let msg = &seen[1][chooser];
                let table: Vec<u64> = (0..16).map(|v| answers(sender, v, 2)).collect();
                let mut found = 0;
                for i in 0..ws.len() {
                    for j in 0..groups(ell) {
                        let f = msg[groups(ell) * i + j];
                        let fits = (0..256).any(|vv: usize| {
                            let base = table[vv & 15] | table[vv >> 4] << 2;
                            (0..16u64).any(|s| {
                                let share =
                                    (0..4).fold(0, |m, k| m ^ ((s >> k & 1) * (FIELD_LOW[1] << k)));
                                base ^ share == f
                            })
                        });
                        found += usize::from(fits);
                    }
                }
                found
            };
            only_open_ots_explain(explained, ws.len() * groups(ell), sender);
        }
    }
}
