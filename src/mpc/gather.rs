//! All-gather of public words: every server contributes a part, every server receives all.
//!
//! Work whose result is public to the servers and the same on each (the candidate lists,
//! computed from keyed tokens every server holds) can be dealt among them: server `s` computes
//! its part, and [`Gather`] gives every server every part. The lengths of all parts are known
//! to all in advance (they follow from public sizes), so a peer that sends a part of another
//! length is a protocol violation named as such, and nothing is allocated from a peer's word.
//! Parts travel in exchanges of at most [`GATHER_CHUNK_WORDS`] words; every server's payload of
//! an exchange has the same length (transports require it), a shorter part padded with zeros.
//!
//! Nothing secret goes through here: the parts are sent in the clear between the servers (over
//! their mutually authenticated channels), like the openings of masked values.

use crate::error::{Error, PeerName, Result};
use crate::mpc::protocol::{Protocol, Step};

/// Most words one server sends per exchange of a [`Gather`] (128 MiB).
pub const GATHER_CHUNK_WORDS: usize = 1 << 24;

/// Gives every server every server's part ([module docs](self)).
pub struct Gather {
    me: usize,
    /// What every server has received of every part so far (this server's own part whole).
    parts: Vec<Vec<u64>>,
    /// Every part's length in words.
    lens: Vec<usize>,
    /// Words per exchange.
    chunk: usize,
    /// Exchanges done.
    round: usize,
}

impl std::fmt::Debug for Gather {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Gather {{ me: {}, lens: {:?}, round: {} }}",
            self.me, self.lens, self.round
        )
    }
}

impl Gather {
    /// Server `me`'s part `mine`, with every server's part length `lens` (the same list on
    /// every server).
    pub fn new(me: usize, mine: Vec<u64>, lens: Vec<usize>) -> Result<Gather> {
        if lens.get(me) != Some(&mine.len()) {
            return Err(Error::invalid(format!(
                "gather: this server's part has {} words, the lengths say {:?}",
                mine.len(),
                lens.get(me)
            )));
        }
        let mut parts: Vec<Vec<u64>> = lens.iter().map(|_| Vec::new()).collect();
        parts[me] = mine;
        Ok(Gather {
            me,
            parts,
            lens,
            chunk: GATHER_CHUNK_WORDS,
            round: 0,
        })
    }

    /// At most `words` words per exchange instead of [`GATHER_CHUNK_WORDS`] (every server must
    /// use the same value; tests use it to exercise several exchanges).
    pub fn with_chunk(mut self, words: usize) -> Self {
        self.chunk = words.max(1);
        self
    }

    /// Exchanges needed: enough for the longest part.
    fn rounds(&self) -> usize {
        self.lens
            .iter()
            .map(|l| l.div_ceil(self.chunk))
            .max()
            .unwrap_or(0)
    }

    /// Words `[from, to)` of server `s`'s part in the current exchange.
    fn span(&self, s: usize) -> (usize, usize) {
        let from = (self.round * self.chunk).min(self.lens[s]);
        (from, (from + self.chunk).min(self.lens[s]))
    }

    /// Every payload's length in the current exchange: the longest span.
    fn payload_len(&self) -> usize {
        (0..self.lens.len())
            .map(|s| {
                let (from, to) = self.span(s);
                to - from
            })
            .max()
            .unwrap_or(0)
    }

    fn next(self) -> Step<Self> {
        if self.round >= self.rounds() {
            return Step::Done(self.parts);
        }
        let (from, to) = self.span(self.me);
        let mut msg = Vec::with_capacity(self.payload_len());
        msg.extend_from_slice(&self.parts[self.me][from..to]);
        msg.resize(self.payload_len(), 0);
        Step::Send(self, msg)
    }
}

impl Protocol for Gather {
    type Output = Vec<Vec<u64>>;

    fn start(self) -> Result<Step<Self>> {
        Ok(self.next())
    }

    fn receive(mut self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        if incoming.len() != self.lens.len() {
            return Err(Error::invalid(format!(
                "gather: {} payloads for {} servers",
                incoming.len(),
                self.lens.len()
            )));
        }
        let len = self.payload_len();
        for (s, words) in incoming.into_iter().enumerate() {
            let (from, to) = self.span(s);
            if words.len() != len {
                return Err(Error::protocol(
                    PeerName::Server(s),
                    format!(
                        "gather: expected {len} words of its part, received {}",
                        words.len()
                    ),
                ));
            }
            if s != self.me {
                if self.parts[s].is_empty() {
                    self.parts[s].reserve_exact(self.lens[s]);
                }
                self.parts[s].extend_from_slice(&words[..to - from]);
            }
        }
        self.round += 1;
        Ok(self.next())
    }
}

/// Packs `u32` values two per word (the first in the low half), the last word's high half 0
/// when their number is odd.
pub fn pack_u32(values: &[u32]) -> Vec<u64> {
    values
        .chunks(2)
        .map(|p| p[0] as u64 | (p.get(1).copied().unwrap_or(0) as u64) << 32)
        .collect()
}

/// The first `count` values packed by [`pack_u32`] (`words` has `count.div_ceil(2)` words).
pub fn unpack_u32(words: &[u64], count: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(count);
    for &w in words {
        out.push(w as u32);
        out.push((w >> 32) as u32);
    }
    out.truncate(count);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::protocol::run_lockstep;

    fn parts(lens: &[usize]) -> Vec<Vec<u64>> {
        lens.iter()
            .enumerate()
            .map(|(s, &l)| (0..l as u64).map(|i| (s as u64) << 40 | i).collect())
            .collect()
    }

    #[test]
    fn every_server_receives_every_part_in_bounded_exchanges() {
        for (lens, chunk) in [
            (vec![5, 4, 4], 2),
            (vec![0, 7], 3),
            (vec![3, 3, 3, 3], 100),
            (vec![0, 0], 1),
        ] {
            let want = parts(&lens);
            let servers = (0..lens.len())
                .map(|s| {
                    Gather::new(s, want[s].clone(), lens.clone())
                        .unwrap()
                        .with_chunk(chunk)
                })
                .collect();
            let (outs, rounds) = run_lockstep(servers).unwrap();
            let longest = lens.iter().max().copied().unwrap_or(0);
            assert_eq!(rounds, longest.div_ceil(chunk), "{lens:?} {chunk}");
            for out in outs {
                assert_eq!(out, want);
            }
        }
    }

    #[test]
    fn a_part_of_the_wrong_length_is_refused_naming_the_server() {
        let lens = vec![4, 4];
        let g = Gather::new(0, vec![1; 4], lens.clone()).unwrap();
        let Step::Send(g, msg) = g.start().unwrap() else {
            panic!("sends its part")
        };
        assert_eq!(msg, vec![1; 4]);
        let Err(e) = g.receive(vec![msg, vec![2; 5]]) else {
            panic!("a part of the wrong length must be refused")
        };
        let e = e.to_string();
        assert!(e.contains("server 1") && e.contains("expected 4"), "{e}");
        // This server's own part must have its stated length.
        assert!(Gather::new(1, vec![0; 3], lens).is_err());
    }

    #[test]
    fn u32_values_pack_two_per_word() {
        for n in 0..6 {
            let v: Vec<u32> = (0..n).map(|i| u32::MAX - i).collect();
            let w = pack_u32(&v);
            assert_eq!(w.len(), v.len().div_ceil(2));
            assert_eq!(unpack_u32(&w, v.len()), v);
        }
    }
}
