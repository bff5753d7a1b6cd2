//! Cross terms: products of one server's values with another's, over OT, for every active
//! ordered pair of servers at once.
//!
//! Additive shares of a product of two shared values, `x = sum_s x_s` and `y = sum_t y_t`, are
//! `x y = sum_s x_s y_s + sum_{s != t} x_s y_t`: each server computes its own term and the
//! *cross terms* need OT between the two servers involved, server `s` as extension sender
//! holding `x_s` and server `t` as receiver whose choices are (the bits of) `y_t`. [`Cross`]
//! runs them for a set of active ordered pairs (all of them, or one receiver and its senders)
//! and returns this server's share of their sum, in one of the [`Kind`]s:
//!
//! * [`Kind::Gilboa`]: `x` and `y` are 64-bit values, one product per choice word (64 OTs);
//! * [`Kind::Cot`]: each choice word holds 64 choice bits `r_i`, `x` one 64-bit value per bit;
//!   the sum of the shares is `sum r_i x_i` over the active pairs (bit times value). With
//!   [`Cross::with_masks`], only the low bits of each product that the masks depend on are
//!   right, and only those bits of each correction travel (packed);
//! * [`Kind::RandomBitPairs`] (two servers): no inputs and no messages but the refills; the
//!   pool's random OTs themselves give random AND-triple pairs. On each link the receiver's
//!   pool choices are its bits `a`, two bits of the hash difference `x_0 ^ x_1` of each OT the
//!   sender's bits `b1`, `b2`, and the hashes' bits XOR shares of `a & b1`, `a & b2` (Gilboa's
//!   bit trick with random instead of chosen inputs);
//! * [`Kind::RandomSixteen`] (one link): no inputs and no messages but the refills; every 4
//!   random OTs make one random 1-out-of-16 OT of 2-bit messages, or of 4-bit messages for
//!   two lanes (below), 16 per choice word, for the millionaires' comparison
//!   ([`crate::mpc::millionaire`]);
//! * [`Kind::Bits`]: each choice word holds 64 bits, `x` `lanes` words per choice word; XOR
//!   shares of the bitwise AND of each lane with the choices (the cross terms of boolean AND
//!   triples; two lanes give both ANDs of two triples sharing one input, `a & b1` and
//!   `a & b2`, for the OTs of one).
//!
//! **1-out-of-16 from 4 random OTs.** The sender holds 64-bit hashes `x_i^0`, `x_i^1` of OTs
//! `i = 0..4`, the receiver its choices `c_i` and `x_i^(c_i)`. Message `w` (of 16) is the XOR
//! over `i` of bits `2w, 2w + 1` of `x_i^(w_i)`, `w_i` bit `i` of `w` (with two lanes, bits
//! `4w` to `4w + 3`: all 64). The receiver can compute message `c = sum 2^i c_i` only: any
//! other `w` differs from `c` in some bit `i` and takes its bits of `x_i^(1 - c_i)`, a hash
//! it cannot compute, at positions no other message uses,
//! so the 15 others are independent and pseudorandom to it (Naor and Pinkas's 1-out-of-N from
//! 1-out-of-2, with the PRF of each key read off its hash).
//!
//! Work is cut into chunks of choice words and pipelined: round `r` carries, on every active
//! link, the receiver's choice message for chunk `r` (one bit per OT, [`super::silent`]) and
//! the sender's corrections for chunk `r - 1`, so `c` chunks take `c + 1` rounds
//! ([`Kind::RandomBitPairs`], with neither, `c` rounds: only refills travel).
//!
//! **Refills.** Each link's pool of correlated OTs is refilled by its sender, whose iteration
//! messages ride with its corrections: in round `r` the sender runs the iterations that bring
//! the pool to chunk `r`'s OTs plus [`Links::ready`] (both sides count the same pool, so the
//! receiver knows how many to expect). The receiver takes chunk `r` before the refill arrives,
//! from the `ready` OTs every pool keeps between rounds, and that floor holds again when the
//! protocol ends.

use super::extension::RecvBatch;
use super::links::Links;
use super::silent;
use crate::error::{Error, PeerName, Result};
use crate::mpc::bit_masks::Masks;
use crate::mpc::bit_pack::{Packer, Unpacker};
use crate::mpc::millionaire::FIELDS;
use crate::mpc::protocol::{Protocol, Step};
use std::collections::VecDeque;

/// What the OTs compute (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 64-bit products (Gilboa).
    Gilboa,
    /// Bit times 64-bit value.
    Cot,
    /// Bit ANDs of `lanes` words of `x` with each choice word, XOR-shared (outputs laid out
    /// like `x`).
    Bits {
        /// Words of `x` (correlation bits per OT).
        lanes: usize,
    },
    /// Random AND-triple pairs from random OTs, two servers only: per choice word the cross
    /// terms' shares of `a & b1` and `a & b2`, then this server's `a`, `b1`, `b2`.
    RandomBitPairs,
    /// Random 1-out-of-16 OTs of `2 lanes`-bit messages (`lanes` 1 or 2), four random OTs
    /// each, on one link of two servers ([`Active::Into`]): per choice word (16 of them) the
    /// sender's 16 messages of each in `32 lanes` bits (`8 lanes` words: two OTs to a word
    /// with one lane, one with two), the receiver's choices (a 4-bit group per OT, one word)
    /// and the chosen messages (`2 lanes` bits each, one word), then zero words.
    RandomSixteen {
        /// Bit pairs per message.
        lanes: usize,
    },
}

impl Kind {
    /// Words of `x` per choice word.
    pub fn x_per_word(self) -> usize {
        match self {
            Kind::Gilboa => 1,
            Kind::Bits { lanes } => lanes,
            Kind::Cot => 64,
            Kind::RandomBitPairs | Kind::RandomSixteen { .. } => 0,
        }
    }

    fn corr_per_word(self) -> usize {
        match self {
            Kind::Gilboa | Kind::Cot => 64,
            Kind::Bits { lanes } => lanes,
            Kind::RandomBitPairs | Kind::RandomSixteen { .. } => 0,
        }
    }

    /// Words of output per choice word.
    pub fn out_per_word(self) -> usize {
        match self {
            Kind::RandomBitPairs => 5,
            Kind::RandomSixteen { lanes } => 8 * lanes,
            k => k.x_per_word(),
        }
    }

    /// Whether the receiver sends a choice message (not for random OTs).
    fn chooses(self) -> bool {
        !matches!(self, Kind::RandomBitPairs | Kind::RandomSixteen { .. })
    }
}

/// Choice words per chunk by default (and at most): 2^19 OTs per link and round.
pub const DEFAULT_CHUNK: usize = 1 << 13;

/// Which ordered pairs `(sender, receiver)` take part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    /// Every ordered pair of distinct servers.
    All,
    /// Every server before `to` sends to `to`, in the order `first, first + 1, ...` (modulo
    /// the `servers`): with `first = 0`, every server below `to`.
    Into {
        /// The receiver.
        to: usize,
        /// The first server of the order.
        first: usize,
        /// Servers.
        servers: usize,
    },
}

impl Active {
    fn has(self, s: usize, t: usize) -> bool {
        s != t
            && match self {
                Active::All => true,
                Active::Into { to, first, servers } => {
                    let pos = |x: usize| (x + servers - first % servers) % servers;
                    t == to && pos(s) < pos(t)
                }
            }
    }
}

/// The cross-term protocol for one server. `Debug` shows sizes only.
pub struct Cross {
    links: Links,
    kind: Kind,
    active: Active,
    x: Vec<u64>,
    y: Vec<u64>,
    chunk: usize,
    round: usize,
    /// Receiver batches awaiting their corrections, by peer (the oldest first).
    pending: Vec<VecDeque<RecvBatch>>,
    corrections: Vec<Vec<u64>>,
    /// Iterations each peer sends this server this round (as sender on its link to it).
    refills: Vec<usize>,
    /// [`Kind::Cot`] for the random bits of these masks, from this word of theirs on:
    /// corrections cut to [`Cross::width`] bits.
    masks: Option<(Masks, usize)>,
    out: Vec<u64>,
}

impl std::fmt::Debug for Cross {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Cross({:?}, {} choice words, round {}, <redacted>)",
            self.kind,
            self.y.len(),
            self.round
        )
    }
}

impl Cross {
    /// Cross terms of this server's `x` (as sender) and choice words `y` (as receiver); `x`
    /// has [`Kind::x_per_word`] words per word of `y` (a server that is only a receiver may pass
    /// zeros, one that is only a sender its `y` unused).
    pub fn new(
        links: Links,
        kind: Kind,
        active: Active,
        x: Vec<u64>,
        y: Vec<u64>,
    ) -> Result<Cross> {
        if kind == Kind::RandomBitPairs && (links.servers() != 2 || active != Active::All) {
            return Err(Error::invalid(
                "cross terms: random AND triples are made between two servers",
            ));
        }
        if let Kind::RandomSixteen { lanes } = kind
            && (links.servers() != 2
                || !matches!(active, Active::Into { .. })
                || !(1..=2).contains(&lanes))
        {
            return Err(Error::invalid(
                "cross terms: random 1-out-of-16 OTs of one or two lanes are made on one link of two servers",
            ));
        }
        if x.len() != y.len() * kind.x_per_word() {
            return Err(Error::invalid(format!(
                "cross terms: {} values for {} choice words ({kind:?})",
                x.len(),
                y.len()
            )));
        }
        let k = links.servers();
        let chunk = DEFAULT_CHUNK.min(links.ready() / 64).max(1);
        Ok(Cross {
            chunk,
            refills: vec![0; k],
            masks: None,
            out: vec![0; y.len() * kind.out_per_word()],
            links,
            kind,
            active,
            x,
            y,
            round: 0,
            pending: (0..k).map(|_| VecDeque::new()).collect(),
            corrections: vec![Vec::new(); k],
        })
    }

    /// Uses chunks of `words` choice words (at least 1, at most what the links keep ready).
    pub fn with_chunk(mut self, words: usize) -> Cross {
        self.chunk = words.clamp(1, (self.links.ready() / 64).max(1));
        self
    }

    /// [`Kind::Cot`] computing the products `x b_t` that make arithmetic shares of the random
    /// bits behind `masks` (bit `l` of choice word `w` is bit `l` of word `from + w` of the
    /// masks' layout): a product enters the bit's share times 2, so only its low
    /// `masks.significant_bits(from + w, l) - 1` bits matter, and only those of each
    /// correction are sent. The other bits of the shares come out wrong.
    pub fn with_masks(mut self, masks: Masks, from: usize) -> Result<Cross> {
        if self.kind != Kind::Cot {
            return Err(Error::invalid(
                "cross terms: masks cut only bit-times-value products",
            ));
        }
        self.masks = Some((masks, from));
        Ok(self)
    }

    /// Bits of OT `i`'s correction that are sent.
    fn width(&self, i: usize) -> u32 {
        match self.masks {
            Some((m, from)) => m.significant_bits(from + i / 64, i % 64).saturating_sub(1),
            None => 64,
        }
    }

    /// Words of the corrections of the chunk of choice words `span`.
    fn corr_words(&self, span: std::ops::Range<usize>) -> usize {
        match self.masks {
            Some(_) => (64 * span.start..64 * span.end)
                .map(|i| self.width(i) as usize)
                .sum::<usize>()
                .div_ceil(64),
            None => span.len() * self.kind.corr_per_word(),
        }
    }

    fn chunks(&self) -> usize {
        self.y.len().div_ceil(self.chunk)
    }

    fn span(&self, c: usize) -> std::ops::Range<usize> {
        (c * self.chunk).min(self.y.len())..((c + 1) * self.chunk).min(self.y.len())
    }

    /// Choice words of round `r`'s chunk (none in the last round).
    fn span_at(&self, r: usize) -> std::ops::Range<usize> {
        if r < self.chunks() {
            self.span(r)
        } else {
            0..0
        }
    }

    /// Words peer `f` sends this server in the current round: as sender on its link to this
    /// server, the corrections of the previous chunk and its refills; as receiver on this
    /// server's link to it, its choice message for this round's chunk.
    fn section_len(&self, f: usize) -> usize {
        let (me, r) = (self.links.me(), self.round);
        let mut n = 0;
        if self.active.has(f, me) {
            if r >= 1 {
                n += self.corr_words(self.span(r - 1));
            }
            n += self.refills[f] * self.links.params().msg_words();
        }
        if self.active.has(me, f) && self.kind.chooses() {
            n += self.span_at(r).len();
        }
        n
    }

    /// This round's messages, one per peer: corrections for the previous chunk and refills
    /// (as sender), the choice message for this one (as receiver); and the words expected
    /// from each peer.
    fn payload(&mut self) -> Result<(Vec<Vec<u64>>, Vec<usize>)> {
        let (me, k) = (self.links.me(), self.links.servers());
        let span = self.span_at(self.round);
        let need = 64 * span.len() + self.links.ready();
        let params = *self.links.params();
        let mut sections = vec![Vec::new(); k];
        for (p, sec) in sections.iter_mut().enumerate() {
            if p == me {
                continue;
            }
            sec.append(&mut self.corrections[p]);
            if self.active.has(me, p) {
                let snd = self.links.send[p].as_mut().expect("a link to every peer");
                for _ in 0..silent::iterations_for(&params, snd.available(), need) {
                    sec.extend(snd.iterate());
                }
            }
            self.refills[p] = 0;
            if self.active.has(p, me) {
                let rcv = self.links.recv[p].as_mut().expect("a link to every peer");
                // Counted before this chunk is taken: the sender's pool is the same now.
                self.refills[p] = silent::iterations_for(&params, rcv.available(), need);
                if !span.is_empty() && !self.kind.chooses() {
                    let stride = self.kind.out_per_word();
                    let out = &mut self.out[span.start * stride..span.end * stride];
                    match self.kind {
                        Kind::RandomSixteen { lanes } => {
                            rcv.random_words(span.len(), out, stride, |o, c, x| {
                                sixteen_receiver(o, c, x, lanes)
                            })?
                        }
                        _ => rcv.random_words(span.len(), out, stride, random_receiver)?,
                    }
                } else if !span.is_empty() {
                    let (msg, batch) = rcv.extend(&self.y[span.clone()])?;
                    sec.extend(msg);
                    self.pending[p].push_back(batch);
                }
            }
        }
        let expected = (0..k)
            .map(|f| if f == me { 0 } else { self.section_len(f) })
            .collect();
        Ok((sections, expected))
    }

    fn add(&mut self, at: usize, share: &[u64], negate: bool) {
        let out = &mut self.out[at..at + share.len()];
        match (self.kind, negate) {
            (Kind::Bits { .. }, _) => out.iter_mut().zip(share).for_each(|(o, s)| *o ^= s),
            (_, false) => out
                .iter_mut()
                .zip(share)
                .for_each(|(o, s)| *o = o.wrapping_add(*s)),
            (_, true) => out
                .iter_mut()
                .zip(share)
                .for_each(|(o, s)| *o = o.wrapping_sub(*s)),
        }
    }
}

impl Protocol for Cross {
    type Output = (Links, Vec<u64>);

    fn start(mut self) -> Result<Step<Self>> {
        if self.chunks() == 0 {
            return Ok(Step::Done((self.links, self.out)));
        }
        let (msgs, expected) = self.payload()?;
        Ok(Step::SendEach(self, msgs, expected))
    }

    fn receive(mut self, got: Vec<Vec<u64>>) -> Result<Step<Self>> {
        let (me, r) = (self.links.me(), self.round);
        // The transport delivered exactly the expected words from every peer; checked again
        // here, where a peer's section is cut.
        for (f, sec) in got.iter().enumerate() {
            if f != me && sec.len() != self.section_len(f) {
                return Err(Error::protocol(
                    PeerName::Server(f),
                    format!(
                        "OT cross terms: expected {} words, received {}",
                        self.section_len(f),
                        sec.len()
                    ),
                ));
            }
        }
        let msg_words = self.links.params().msg_words();
        let per = self.kind.x_per_word();
        for (p, sec) in got.into_iter().enumerate() {
            if p == me {
                continue;
            }
            let mut sec = &sec[..];
            // Corrections for the chunk this server received on last round.
            if self.active.has(p, me) && r >= 1 && self.kind.chooses() {
                let span = self.span(r - 1);
                let (corr, rest) = sec.split_at(self.corr_words(span.clone()));
                sec = rest;
                let batch = self.pending[p]
                    .pop_front()
                    .expect("a batch awaits its corrections");
                let share = match self.kind {
                    Kind::Gilboa => batch.gilboa(corr)?,
                    Kind::Cot if self.masks.is_some() => {
                        let mut u = Unpacker::new(corr);
                        let full: Vec<u64> = (64 * span.start..64 * span.end)
                            .map(|i| u.take(self.width(i)))
                            .collect();
                        batch.correlated(&full)?
                    }
                    Kind::Cot => batch.correlated(corr)?,
                    Kind::Bits { lanes } => batch.correlated_bits(corr, lanes)?,
                    Kind::RandomBitPairs | Kind::RandomSixteen { .. } => {
                        return Err(Error::invalid(
                            "cross terms: random OTs take no corrections",
                        ));
                    }
                };
                self.add(span.start * per, &share, false);
            }
            // The sender's refills of this server's pool.
            if self.active.has(p, me) {
                let (fills, rest) = sec.split_at(self.refills[p] * msg_words);
                sec = rest;
                let rcv = self.links.recv[p].as_mut().expect("a link to every peer");
                for m in fills.chunks(msg_words) {
                    rcv.absorb(m)?;
                }
            }
            // The random OTs of this round's chunk, on which this server is the sender.
            if self.active.has(me, p) && r < self.chunks() && !self.kind.chooses() {
                let span = self.span(r);
                let snd = self.links.send[p].as_mut().expect("a link to every peer");
                let stride = self.kind.out_per_word();
                let out = &mut self.out[span.start * stride..span.end * stride];
                match self.kind {
                    Kind::RandomSixteen { lanes } => {
                        snd.random_words(span.len(), out, stride, |o, x0, x1| {
                            sixteen_sender(o, x0, x1, lanes)
                        })?
                    }
                    _ => snd.random_words(span.len(), out, stride, random_sender)?,
                }
            }
            // The choice message of this round's chunk, on which this server is the sender.
            if self.active.has(me, p) && r < self.chunks() && self.kind.chooses() {
                let span = self.span(r);
                let snd = self.links.send[p].as_mut().expect("a link to every peer");
                let batch = snd.extend(sec, span.len(), PeerName::Server(p))?;
                let x = &self.x[span.start * per..span.end * per];
                let (corr, share, negate) = match self.kind {
                    Kind::Gilboa => {
                        let (c, s) = batch.gilboa(x)?;
                        (c, s, false)
                    }
                    Kind::Cot => {
                        let (c, v) = batch.correlated(x)?;
                        let c = match self.masks {
                            Some(_) => {
                                let mut p = Packer::with_capacity(self.corr_words(span.clone()));
                                for (j, c) in c.iter().enumerate() {
                                    p.push(*c, self.width(64 * span.start + j));
                                }
                                p.words
                            }
                            None => c,
                        };
                        (c, v, true)
                    }
                    Kind::Bits { lanes } => {
                        let (c, v) = batch.correlated_bits(x, lanes)?;
                        (c, v, false)
                    }
                    Kind::RandomBitPairs | Kind::RandomSixteen { .. } => {
                        return Err(Error::invalid(
                            "cross terms: random OTs send no corrections",
                        ));
                    }
                };
                self.corrections[p] = corr;
                self.add(span.start * per, &share, negate);
            }
        }
        self.round += 1;
        // Random OTs leave nothing to correct after the last chunk.
        let last = self.chunks() + usize::from(self.kind.chooses());
        if self.round >= last {
            return Ok(Step::Done((self.links, self.out)));
        }
        let (msgs, expected) = self.payload()?;
        Ok(Step::SendEach(self, msgs, expected))
    }
}

/// The receiver's part of [`Kind::RandomBitPairs`] for one choice word (its 5 output words):
/// its pool choices are its `a` (word 2), and bits 0 and 1 of each chosen hash add to the
/// cross-term shares (words 0 and 1).
fn random_receiver(out: &mut [u64], a: u64, xs: &[u64; 64]) {
    out[2] = a;
    for (l, x) in xs.iter().enumerate() {
        out[0] ^= (x & 1) << l;
        out[1] ^= (x >> 1 & 1) << l;
    }
}

/// The sender's part of [`Kind::RandomBitPairs`] for one choice word: bits 0 and 1 of
/// `x_0 ^ x_1` are its `b1`, `b2` (words 3 and 4), those of `x_0` add to the cross-term
/// shares.
fn random_sender(out: &mut [u64], x0: &[u64; 64], x1: &[u64; 64]) {
    for (l, (x0, x1)) in x0.iter().zip(x1).enumerate() {
        let b = x0 ^ x1;
        out[0] ^= (x0 & 1) << l;
        out[1] ^= (x0 >> 1 & 1) << l;
        out[3] |= (b & 1) << l;
        out[4] |= (b >> 1 & 1) << l;
    }
}

/// The sender's part of [`Kind::RandomSixteen`] for one choice word (`8 lanes` output words):
/// each 4 OTs' 16 messages (module docs), `32 lanes` bits for each.
fn sixteen_sender(out: &mut [u64], x0: &[u64; 64], x1: &[u64; 64], lanes: usize) {
    let fields = &FIELDS[lanes - 1];
    let per_word = 2 / lanes;
    for (s, (q0, q1)) in x0.chunks_exact(4).zip(x1.chunks_exact(4)).enumerate() {
        let pads = q0
            .iter()
            .zip(q1)
            .zip(fields)
            .fold(0u64, |p, ((x0, x1), f)| p ^ (x0 & f[0]) ^ (x1 & f[1]));
        out[s / per_word] |= pads << (32 * (s % per_word));
    }
}

/// The receiver's part of [`Kind::RandomSixteen`] for one choice word: the word itself (a
/// 4-bit choice per 4 OTs) and the 16 chosen messages of `2 lanes` bits.
fn sixteen_receiver(out: &mut [u64], c: u64, xs: &[u64; 64], lanes: usize) {
    let width = 2 * lanes;
    let mask = (1u64 << width) - 1;
    let mut pads = 0u64;
    for (s, quad) in xs.chunks_exact(4).enumerate() {
        let ch = (c >> (4 * s) & 15) as usize;
        let pad = quad.iter().fold(0, |p, x| p ^ (x >> (width * ch) & mask));
        pads |= pad << (width * s);
    }
    out[0] = c;
    out[1] = pads;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::ot::links::Setup;
    use crate::mpc::prg::Prg;
    use crate::mpc::protocol::run_lockstep;

    /// Links with the small test parameters, ready for chunks of up to 64 words.
    fn links(k: usize) -> Vec<Links> {
        let small = crate::mpc::ot::silent::tests::SMALL;
        run_lockstep(
            (0..k)
                .map(|me| Setup::with_params(me, k, small, 64 * 64))
                .collect(),
        )
        .unwrap()
        .0
    }

    /// Runs one cross-term protocol on every server; returns the shares and the rounds.
    fn run(
        kind: Kind,
        active: Active,
        xs: &[Vec<u64>],
        ys: &[Vec<u64>],
        chunk: usize,
    ) -> (Vec<Vec<u64>>, usize) {
        let k = xs.len();
        let parties = links(k)
            .into_iter()
            .enumerate()
            .map(|(s, l)| {
                Cross::new(l, kind, active, xs[s].clone(), ys[s].clone())
                    .unwrap()
                    .with_chunk(chunk)
            })
            .collect();
        let (outs, rounds) = run_lockstep(parties).unwrap();
        (outs.into_iter().map(|(_, o)| o).collect(), rounds)
    }

    #[test]
    fn gilboa_cross_terms_sum_to_the_products_of_different_servers_values() {
        for k in 2..=4 {
            let mut prg = Prg::fresh();
            let n = 5;
            let xs: Vec<_> = (0..k).map(|_| prg.vec(n)).collect();
            let ys: Vec<_> = (0..k).map(|_| prg.vec(n)).collect();
            for chunk in [1, 2, 64] {
                let (outs, rounds) = run(Kind::Gilboa, Active::All, &xs, &ys, chunk);
                assert_eq!(rounds, n.div_ceil(chunk) + 1);
                for i in 0..n {
                    let got = outs.iter().fold(0u64, |a, o| a.wrapping_add(o[i]));
                    let mut want = 0u64;
                    for (s, x) in xs.iter().enumerate() {
                        for (_, y) in ys.iter().enumerate().filter(|&(t, _)| t != s) {
                            want = want.wrapping_add(x[i].wrapping_mul(y[i]));
                        }
                    }
                    assert_eq!(got, want, "k {k}, chunk {chunk}, value {i}");
                }
            }
        }
    }

    #[test]
    fn cot_into_one_server_sums_its_bits_times_the_senders_values() {
        let k = 4;
        let mut prg = Prg::fresh();
        let words = 3;
        let xs: Vec<_> = (0..k).map(|_| prg.vec(64 * words)).collect();
        let ys: Vec<_> = (0..k).map(|_| prg.vec(words)).collect();
        let t = 2;
        let into = Active::Into {
            to: t,
            first: 0,
            servers: k,
        };
        let (outs, _) = run(Kind::Cot, into, &xs, &ys, 2);
        assert!(outs[3].iter().all(|&v| v == 0), "server 3 takes no part");
        for i in 0..64 * words {
            let bit = ys[t][i / 64] >> (i % 64) & 1;
            let want = (0..t).fold(0u64, |a, s| a.wrapping_add(bit.wrapping_mul(xs[s][i])));
            let got = outs.iter().fold(0u64, |a, o| a.wrapping_add(o[i]));
            assert_eq!(got, want, "bit {i}");
        }
    }

    #[test]
    fn cot_for_masks_is_right_in_the_bits_that_matter_and_sends_only_those() {
        let (k, t, words) = (2, 1, 6);
        let masks = Masks::Compare { n: 128, ell: 40 };
        let mut prg = Prg::fresh();
        let xs: Vec<_> = (0..k).map(|_| prg.vec(64 * words)).collect();
        let ys: Vec<_> = (0..k).map(|_| prg.vec(words)).collect();
        let parties: Vec<Cross> = links(k)
            .into_iter()
            .enumerate()
            .map(|(s, l)| {
                let into = Active::Into {
                    to: t,
                    first: 0,
                    servers: k,
                };
                Cross::new(l, Kind::Cot, into, xs[s].clone(), ys[s].clone())
                    .unwrap()
                    .with_chunk(2)
                    .with_masks(masks, 0)
                    .unwrap()
            })
            .collect();
        let widths: Vec<u32> = (0..64 * words)
            .map(|i| masks.significant_bits(i / 64, i % 64).saturating_sub(1))
            .collect();
        // Exactly the widths' bits travel: the corrections of a chunk of 2 choice words.
        assert_eq!(
            parties[0].corr_words(0..2),
            widths[..128].iter().sum::<u32>().div_ceil(64) as usize
        );
        assert!(parties[0].corr_words(0..2) < 2 * 64);
        let (outs, _) = run_lockstep(parties).unwrap();
        let mut cut = 0;
        for i in 0..64 * words {
            let bit = ys[t][i / 64] >> (i % 64) & 1;
            let want = bit.wrapping_mul(xs[0][i]);
            let got = outs[0].1[i].wrapping_add(outs[1].1[i]);
            let w = widths[i];
            let low = |v: u64| if w >= 64 { v } else { v & ((1u64 << w) - 1) };
            assert_eq!(low(got), low(want), "ot {i}, width {w}");
            cut += usize::from(w < 64 && got != want);
        }
        assert!(cut > 0, "the bits beyond the widths are not sent");
        assert!(
            Cross::new(
                links(2).remove(0),
                Kind::Gilboa,
                Active::All,
                vec![0],
                vec![0]
            )
            .unwrap()
            .with_masks(masks, 0)
            .is_err()
        );
    }

    #[test]
    fn bit_pair_cross_terms_xor_to_both_ands_with_the_shared_choice() {
        let k = 3;
        let mut prg = Prg::fresh();
        let words = 4;
        let xs: Vec<_> = (0..k).map(|_| prg.vec(2 * words)).collect();
        let ys: Vec<_> = (0..k).map(|_| prg.vec(words)).collect();
        let (outs, _) = run(Kind::Bits { lanes: 2 }, Active::All, &xs, &ys, 3);
        for w in 0..words {
            for lane in 0..2 {
                let got = outs.iter().fold(0u64, |a, o| a ^ o[2 * w + lane]);
                let mut want = 0u64;
                for (s, x) in xs.iter().enumerate() {
                    for (_, y) in ys.iter().enumerate().filter(|&(t, _)| t != s) {
                        want ^= x[2 * w + lane] & y[w];
                    }
                }
                assert_eq!(got, want, "word {w}, lane {lane}");
            }
        }
    }

    #[test]
    fn random_sixteen_gives_the_receiver_the_message_of_its_choice_only() {
        let words = 5;
        for (lanes, (sender, receiver)) in
            [1, 2].into_iter().flat_map(|l| [(l, (0, 1)), (l, (1, 0))])
        {
            let active = Active::Into {
                to: receiver,
                first: sender,
                servers: 2,
            };
            let (o, rounds) = run(
                Kind::RandomSixteen { lanes },
                active,
                &[vec![], vec![]],
                &[vec![0; words], vec![0; words]],
                2,
            );
            assert_eq!(rounds, words.div_ceil(2));
            let (snd, rcv) = (&o[sender], &o[receiver]);
            let (per, width) = (8 * lanes, 2 * lanes);
            let mask = (1u64 << width) - 1;
            let mut ones = 0;
            for w in 0..words {
                let c = rcv[per * w];
                ones += c.count_ones()
                    + snd[per * w..per * w + per]
                        .iter()
                        .map(|x| x.count_ones())
                        .sum::<u32>();
                for s in 0..16 {
                    let pads = if lanes == 1 {
                        snd[per * w + s / 2] >> (32 * (s % 2)) & 0xffff_ffff
                    } else {
                        snd[per * w + s]
                    };
                    let ch = c >> (4 * s) & 15;
                    let mine = rcv[per * w + 1] >> (width * s) & mask;
                    assert_eq!(
                        mine,
                        pads >> (width as u64 * ch) & mask,
                        "word {w}, group {s}"
                    );
                    // The other messages differ from the chosen one as often as random ones.
                    let same = (0..16)
                        .filter(|&v| v != ch && pads >> (width as u64 * v) & mask == mine)
                        .count();
                    let most = if lanes == 1 { 12 } else { 7 };
                    assert!(
                        same <= most,
                        "lanes {lanes}, word {w}, group {s}: {same} of 15 equal the chosen one"
                    );
                }
                assert!(rcv[per * w + 2..per * w + per].iter().all(|&x| x == 0));
            }
            // Choices and messages are random: about half their bits are ones.
            let bits = words * (per + 1) * 64;
            assert!(
                (bits * 43 / 100..=bits * 57 / 100).contains(&(ones as usize)),
                "lanes {lanes}: {ones} of {bits}"
            );
        }
        let three = links(3).remove(0);
        let into = Active::Into {
            to: 1,
            first: 0,
            servers: 3,
        };
        let one = Kind::RandomSixteen { lanes: 1 };
        assert!(Cross::new(three, one, into, vec![], vec![0]).is_err());
        let two = links(2).remove(0);
        assert!(Cross::new(two, one, Active::All, vec![], vec![0]).is_err());
        let into = Active::Into {
            to: 1,
            first: 0,
            servers: 2,
        };
        let two = links(2).remove(0);
        let three_lanes = Kind::RandomSixteen { lanes: 3 };
        assert!(Cross::new(two, three_lanes, into, vec![], vec![0]).is_err());
    }

    #[test]
    fn random_bit_pairs_make_and_triples_with_no_message_but_refills() {
        let words = 5;
        let parties: Vec<Cross> = links(2)
            .into_iter()
            .map(|l| {
                Cross::new(l, Kind::RandomBitPairs, Active::All, vec![], vec![0; words])
                    .unwrap()
                    .with_chunk(2)
            })
            .collect();
        // Nothing but refills: the first round's expected sections are empty.
        let (outs, rounds) = run_lockstep(parties).unwrap();
        assert_eq!(rounds, words.div_ceil(2));
        let o: Vec<&Vec<u64>> = outs.iter().map(|(_, o)| o).collect();
        let mut ones = 0;
        for w in 0..words {
            let at = |s: usize, j: usize| o[s][5 * w + j];
            let a = at(0, 2) ^ at(1, 2);
            for lane in 0..2 {
                let b = at(0, 3 + lane) ^ at(1, 3 + lane);
                let own = (at(0, 2) & at(0, 3 + lane)) ^ (at(1, 2) & at(1, 3 + lane));
                let c = at(0, lane) ^ at(1, lane) ^ own;
                assert_eq!(c, a & b, "word {w}, lane {lane}");
                ones += b.count_ones();
            }
            ones += a.count_ones();
        }
        // a, b1 and b2 are random: about half their bits are ones.
        assert!((300..=660).contains(&ones), "{ones} of 960");
        let three = links(3).remove(0);
        assert!(Cross::new(three, Kind::RandomBitPairs, Active::All, vec![], vec![0]).is_err());
    }

    #[test]
    fn bit_cross_terms_xor_to_the_ands_of_different_servers_bits() {
        let k = 3;
        let mut prg = Prg::fresh();
        let words = 4;
        let xs: Vec<_> = (0..k).map(|_| prg.vec(words)).collect();
        let ys: Vec<_> = (0..k).map(|_| prg.vec(words)).collect();
        let (outs, _) = run(Kind::Bits { lanes: 1 }, Active::All, &xs, &ys, 3);
        for w in 0..words {
            let got = outs.iter().fold(0u64, |a, o| a ^ o[w]);
            let mut want = 0u64;
            for (s, x) in xs.iter().enumerate() {
                for (_, y) in ys.iter().enumerate().filter(|&(t, _)| t != s) {
                    want ^= x[w] & y[w];
                }
            }
            assert_eq!(got, want, "word {w}");
        }
    }

    #[test]
    fn a_short_payload_names_its_server() {
        let k = 2;
        let mut parties: Vec<Cross> = links(k)
            .into_iter()
            .map(|l| Cross::new(l, Kind::Gilboa, Active::All, vec![1; 2], vec![2; 2]).unwrap())
            .collect();
        let p1 = parties.pop().unwrap();
        let p0 = parties.pop().unwrap();
        let Step::SendEach(p0, _, expected) = p0.start().unwrap() else {
            panic!("a pairwise round")
        };
        let Step::SendEach(_, mut m1, _) = p1.start().unwrap() else {
            panic!("a pairwise round")
        };
        // Only the peer's section travels, and it is what server 0 expects.
        assert!(m1[1].is_empty() && m1[0].len() == expected[1]);
        m1[0].pop();
        let Err(e) = p0.receive(vec![Vec::new(), std::mem::take(&mut m1[0])]) else {
            panic!("a short payload is refused")
        };
        assert!(e.to_string().contains("server 1"), "{e}");
    }
}
