//! Seeds and the pseudo-random generator that expands them.
//!
//! Every random value in the protocol comes from ChaCha12 (the generator behind `rand`'s
//! `StdRng`; 12 rounds keep a wide margin over the best known attacks on 7 rounds) keyed with a
//! 32-byte [`Seed`]. Fresh seeds come from the operating system's CSPRNG; fixed seeds are only
//! used in tests.
//!
//! A seed is expanded on a numbered *stream* (ChaCha's 64-bit nonce), so one seed can serve many
//! independent purposes: the dealer gives each server one master seed per job, and request number
//! `t` of that job draws from stream `t`. Both sides draw values in the same documented order, so
//! they agree without ever sending the values.

use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};
use std::fmt;

/// A 32-byte PRG seed. Its bytes never appear in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct Seed(pub [u8; 32]);

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

impl Seed {
    /// A fresh seed from the operating system's CSPRNG.
    ///
    /// # Panics
    /// Panics only if the operating system has no entropy source at all, in which case no
    /// secure computation is possible.
    pub fn random() -> Seed {
        let mut s = [0u8; 32];
        getrandom::fill(&mut s).expect("the operating system's random source is unavailable");
        Seed(s)
    }

    /// The seed as four little-endian words, for sending over a `u64` channel.
    pub fn to_words(&self) -> [u64; 4] {
        let mut w = [0u64; 4];
        for (i, c) in self.0.chunks_exact(8).enumerate() {
            w[i] = u64::from_le_bytes(c.try_into().expect("8-byte chunk"));
        }
        w
    }

    /// Inverse of [`Seed::to_words`].
    pub fn from_words(w: &[u64; 4]) -> Seed {
        let mut s = [0u8; 32];
        for (i, v) in w.iter().enumerate() {
            s[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        Seed(s)
    }
}

/// A ChaCha12 stream: deterministic given (seed, stream number).
pub struct Prg {
    rng: ChaCha12Rng,
}

impl fmt::Debug for Prg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Prg(<redacted>)")
    }
}

impl Prg {
    /// The generator for `seed` on stream `stream`.
    pub fn new(seed: &Seed, stream: u64) -> Prg {
        let mut rng = ChaCha12Rng::from_seed(seed.0);
        rng.set_stream(stream);
        Prg { rng }
    }

    /// The generator for `seed` on stream `stream`, positioned after its first `words` ring
    /// elements: `Prg::at(s, t, w).fill(out)` gives the words `w..w + out.len()` of
    /// `Prg::new(s, t).vec(..)` (ChaCha is seekable), so a long draw can be made in parts,
    /// in parallel, without holding it whole.
    pub fn at(seed: &Seed, stream: u64, words: u64) -> Prg {
        let mut p = Prg::new(seed, stream);
        p.rng.set_word_pos(2 * words as u128);
        p
    }

    /// A generator on a fresh random seed (for one-off masks that nobody else must reproduce).
    pub fn fresh() -> Prg {
        Prg::new(&Seed::random(), 0)
    }

    /// Fills `out` with uniform ring elements.
    pub fn fill(&mut self, out: &mut [u64]) {
        self.rng.fill_bytes(bytemuck::cast_slice_mut(out));
        if cfg!(target_endian = "big") {
            for w in out.iter_mut() {
                *w = u64::from_le(*w);
            }
        }
    }

    /// `len` uniform ring elements.
    pub fn vec(&mut self, len: usize) -> Vec<u64> {
        let mut v = vec![0u64; len];
        self.fill(&mut v);
        v
    }

    /// One uniform ring element.
    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// A fresh seed drawn from this generator.
    pub fn seed(&mut self) -> Seed {
        let mut s = [0u8; 32];
        self.rng.fill_bytes(&mut s);
        Seed(s)
    }
}

/// Words per parallel part of [`combine_stream`].
const PART_WORDS: usize = 1 << 20;
/// Words drawn at a time within a part.
const BUFFER_WORDS: usize = 4096;

/// Combines the words `at..at + acc.len()` of `seed`'s stream `stream` into `acc` with `op`
/// (`op(acc_piece, drawn_piece)`: add, subtract, XOR), in parallel parts of 2^20 words, each
/// drawn through a small buffer: a long draw is never held whole.
pub fn combine_stream(
    seed: &Seed,
    stream: u64,
    at: u64,
    acc: &mut [u64],
    op: impl Fn(&mut [u64], &[u64]) + Sync,
) {
    use rayon::prelude::*;
    acc.par_chunks_mut(PART_WORDS)
        .enumerate()
        .for_each(|(p, part)| {
            let mut prg = Prg::at(seed, stream, at + (p * PART_WORDS) as u64);
            let mut buf = vec![0u64; BUFFER_WORDS.min(part.len())];
            for piece in part.chunks_mut(BUFFER_WORDS) {
                let b = &mut buf[..piece.len()];
                prg.fill(b);
                op(piece, b);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_positioned_stream_continues_the_stream() {
        let seed = Seed([7; 32]);
        let whole = Prg::new(&seed, 3).vec(10_000);
        for at in [0usize, 1, 2, 63, 4096, 9_999] {
            let mut p = Prg::at(&seed, 3, at as u64);
            assert_eq!(p.vec(10_000 - at), whole[at..], "from word {at}");
        }
        // Another stream differs.
        assert_ne!(Prg::at(&seed, 4, 0).vec(4), whole[..4]);
    }

    #[test]
    fn streams_are_deterministic_and_distinct() {
        let s = Seed([7u8; 32]);
        assert_eq!(Prg::new(&s, 3).vec(10), Prg::new(&s, 3).vec(10));
        assert_ne!(Prg::new(&s, 3).vec(10), Prg::new(&s, 4).vec(10));
        assert_eq!(format!("{s:?}"), "Seed(<redacted>)");
        let w = s.to_words();
        assert_eq!(Seed::from_words(&w), s);
    }
}
