//! Cross terms: products of one server's values with another's, over OT, for every active
//! ordered pair of servers at once.
//!
//! Additive shares of a product of two shared values, `x = sum_s x_s` and `y = sum_t y_t`, are
//! `x y = sum_s x_s y_s + sum_{s != t} x_s y_t`: each server computes its own term and the
//! *cross terms* need OT between the two servers involved, server `s` as extension sender
//! holding `x_s` and server `t` as receiver whose choices are (the bits of) `y_t`. [`Cross`]
//! runs them for a set of active ordered pairs (all of them, or one receiver and its senders)
//! and returns this server's share of their sum, in one of three [`Kind`]s:
//!
//! * [`Kind::Gilboa`]: `x` and `y` are 64-bit values, one product per choice word (64 OTs);
//! * [`Kind::Cot`]: each choice word holds 64 choice bits `r_i`, `x` one 64-bit value per bit;
//!   the sum of the shares is `sum r_i x_i` over the active pairs (bit times value);
//! * [`Kind::Bits`]: each choice word holds 64 bits, `x` 64 bits per word; XOR shares of the
//!   bitwise AND (the cross terms of boolean AND triples).
//!
//! Work is cut into chunks of choice words and pipelined: round `r` carries, on every active
//! link, the receiver's IKNP columns for chunk `r` and the sender's corrections for chunk
//! `r - 1`, so `c` chunks take `c + 1` rounds.

use super::extension::{RecvBatch, receiver_msg_words};
use super::links::Links;
use crate::error::{Error, PeerName, Result};
use crate::mpc::protocol::{Protocol, Step};
use std::collections::VecDeque;

/// What the OTs compute (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 64-bit products (Gilboa).
    Gilboa,
    /// Bit times 64-bit value.
    Cot,
    /// Bit AND, XOR-shared.
    Bits,
}

impl Kind {
    /// Words of `x` per choice word.
    pub fn x_per_word(self) -> usize {
        match self {
            Kind::Gilboa | Kind::Bits => 1,
            Kind::Cot => 64,
        }
    }

    fn corr_per_word(self) -> usize {
        match self {
            Kind::Gilboa | Kind::Cot => 64,
            Kind::Bits => 1,
        }
    }

    /// Words of output per choice word.
    pub fn out_per_word(self) -> usize {
        self.x_per_word()
    }
}

/// Choice words per chunk by default: IKNP columns of `128 x 2^13` words (8 MiB) per link.
pub const DEFAULT_CHUNK: usize = 1 << 13;

/// Which ordered pairs `(sender, receiver)` take part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    /// Every ordered pair of distinct servers.
    All,
    /// Every server below `t` sends to `t`.
    Into(usize),
}

impl Active {
    fn has(self, s: usize, t: usize) -> bool {
        s != t
            && match self {
                Active::All => true,
                Active::Into(r) => t == r && s < r,
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
        if x.len() != y.len() * kind.x_per_word() {
            return Err(Error::invalid(format!(
                "cross terms: {} values for {} choice words ({kind:?})",
                x.len(),
                y.len()
            )));
        }
        let k = links.servers();
        Ok(Cross {
            out: vec![0; x.len()],
            links,
            kind,
            active,
            x,
            y,
            chunk: DEFAULT_CHUNK,
            round: 0,
            pending: (0..k).map(|_| VecDeque::new()).collect(),
            corrections: vec![Vec::new(); k],
        })
    }

    /// Uses chunks of `words` choice words (at least 1).
    pub fn with_chunk(mut self, words: usize) -> Cross {
        self.chunk = words.max(1);
        self
    }

    fn chunks(&self) -> usize {
        self.y.len().div_ceil(self.chunk)
    }

    fn span(&self, c: usize) -> std::ops::Range<usize> {
        (c * self.chunk).min(self.y.len())..((c + 1) * self.chunk).min(self.y.len())
    }

    /// Words server `f` sends server `t` in round `r`.
    fn section_len(&self, r: usize, f: usize, t: usize) -> usize {
        let mut n = 0;
        if self.active.has(f, t) && r >= 1 {
            n += self.span(r - 1).len() * self.kind.corr_per_word();
        }
        if self.active.has(t, f) && r < self.chunks() {
            n += receiver_msg_words(self.span(r).len());
        }
        n
    }

    /// This round's messages, one per peer: corrections for the previous chunk, columns for
    /// this one; and the words expected from each peer.
    fn payload(&mut self) -> (Vec<Vec<u64>>, Vec<usize>) {
        let (me, k, r) = (self.links.me(), self.links.servers(), self.round);
        let span = if r < self.chunks() {
            self.span(r)
        } else {
            0..0
        };
        let mut sections = vec![Vec::new(); k];
        for (p, sec) in sections.iter_mut().enumerate() {
            if p == me {
                continue;
            }
            sec.append(&mut self.corrections[p]);
            if self.active.has(p, me) && !span.is_empty() {
                let rcv = self.links.recv[p].as_mut().expect("a link to every peer");
                let (msg, batch) = rcv.extend(&self.y[span.clone()]);
                sec.extend(msg);
                self.pending[p].push_back(batch);
            }
        }
        let expected = (0..k).map(|f| self.section_len(r, f, me)).collect();
        (sections, expected)
    }

    fn add(&mut self, at: usize, share: &[u64], negate: bool) {
        let out = &mut self.out[at..at + share.len()];
        match (self.kind, negate) {
            (Kind::Bits, _) => out.iter_mut().zip(share).for_each(|(o, s)| *o ^= s),
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
        let (msgs, expected) = self.payload();
        Ok(Step::SendEach(self, msgs, expected))
    }

    fn receive(mut self, got: Vec<Vec<u64>>) -> Result<Step<Self>> {
        let (me, r) = (self.links.me(), self.round);
        // The transport delivered exactly the expected words from every peer; checked again
        // here, where a peer's section is cut.
        for (f, sec) in got.iter().enumerate() {
            if f != me && sec.len() != self.section_len(r, f, me) {
                return Err(Error::protocol(
                    PeerName::Server(f),
                    format!(
                        "OT cross terms: expected {} words, received {}",
                        self.section_len(r, f, me),
                        sec.len()
                    ),
                ));
            }
        }
        let per = self.kind.x_per_word();
        for (p, sec) in got.into_iter().enumerate() {
            if p == me {
                continue;
            }
            let mut sec = &sec[..];
            // Corrections for the chunk this server received on last round.
            if self.active.has(p, me) && r >= 1 {
                let span = self.span(r - 1);
                let (corr, rest) = sec.split_at(span.len() * self.kind.corr_per_word());
                sec = rest;
                let batch = self.pending[p]
                    .pop_front()
                    .expect("a batch awaits its corrections");
                let share = match self.kind {
                    Kind::Gilboa => batch.gilboa(corr)?,
                    Kind::Cot => batch.correlated(corr)?,
                    Kind::Bits => batch.correlated_bits(corr)?,
                };
                self.add(span.start * per, &share, false);
            }
            // Columns of this round's chunk, on which this server is the sender.
            if self.active.has(me, p) && r < self.chunks() {
                let span = self.span(r);
                let snd = self.links.send[p].as_mut().expect("a link to every peer");
                let batch = snd.extend(sec, span.len())?;
                let x = &self.x[span.start * per..span.end * per];
                let (corr, share, negate) = match self.kind {
                    Kind::Gilboa => {
                        let (c, s) = batch.gilboa(x)?;
                        (c, s, false)
                    }
                    Kind::Cot => {
                        let (c, v) = batch.correlated(x)?;
                        (c, v, true)
                    }
                    Kind::Bits => {
                        let (c, v) = batch.correlated_bits(x)?;
                        (c, v, false)
                    }
                };
                self.corrections[p] = corr;
                self.add(span.start * per, &share, negate);
            }
        }
        self.round += 1;
        if self.round > self.chunks() {
            return Ok(Step::Done((self.links, self.out)));
        }
        let (msgs, expected) = self.payload();
        Ok(Step::SendEach(self, msgs, expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::ot::links::Setup;
    use crate::mpc::prg::Prg;
    use crate::mpc::protocol::run_lockstep;

    fn links(k: usize) -> Vec<Links> {
        run_lockstep((0..k).map(|me| Setup::new(me, k)).collect())
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
        let (outs, _) = run(Kind::Cot, Active::Into(t), &xs, &ys, 2);
        assert!(outs[3].iter().all(|&v| v == 0), "server 3 takes no part");
        for i in 0..64 * words {
            let bit = ys[t][i / 64] >> (i % 64) & 1;
            let want = (0..t).fold(0u64, |a, s| a.wrapping_add(bit.wrapping_mul(xs[s][i])));
            let got = outs.iter().fold(0u64, |a, o| a.wrapping_add(o[i]));
            assert_eq!(got, want, "bit {i}");
        }
    }

    #[test]
    fn bit_cross_terms_xor_to_the_ands_of_different_servers_bits() {
        let k = 3;
        let mut prg = Prg::fresh();
        let words = 4;
        let xs: Vec<_> = (0..k).map(|_| prg.vec(words)).collect();
        let ys: Vec<_> = (0..k).map(|_| prg.vec(words)).collect();
        let (outs, _) = run(Kind::Bits, Active::All, &xs, &ys, 3);
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
