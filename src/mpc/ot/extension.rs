//! OT extension (Ishai, Kilian, Nissim, Petrank, CRYPTO 2003), semi-honest: any number of OTs
//! from [`KAPPA`] = 128 base OTs, then correlated OTs over `Z_2^64` and Gilboa products.
//!
//! **Setup** (once per pair of servers, roles reversed): the extension *sender* draws
//! `s in {0,1}^128` and, as base-OT receiver with choices `s`, learns `k_j^{s_j}`; the
//! extension *receiver*, as base-OT sender, holds both `k_j^0, k_j^1`.
//!
//! **A batch of `m` OTs** with receiver choices `r in {0,1}^m`: with `G(k)` a PRG stretching a
//! key to `m` bits (ChaCha, stream = batch number), the receiver sets `t_j = G(k_j^0)` and sends
//! `u_j = t_j ^ G(k_j^1) ^ r` for `j < 128`. The sender computes
//! `q_j = G(k_j^{s_j}) ^ s_j u_j = t_j ^ s_j r`. Transposing the `128 x m` bit matrices gives,
//! per OT `i`, rows with `q_i = t_i ^ r_i s`. Hashing, `x_i^0 = H(i, q_i)` and
//! `x_i^1 = H(i, q_i ^ s)` are the sender's two random messages and `H(i, t_i) = x_i^{r_i}` the
//! receiver's; the other message hides behind the unknown `s`. Traffic: 16 bytes per OT.
//!
//! **Correlated OT over `Z_2^64`**: for a correlation `D_i` the sender keeps `v_i = x_i^0` and
//! sends `d_i = x_i^1 - x_i^0 - D_i`; the receiver computes `w_i = x_i^{r_i} - r_i d_i`, so that
//! `w_i - v_i = r_i D_i`. 8 more bytes per OT.
//!
//! **Gilboa product** of the sender's `a` and the receiver's `b` (64-bit): 64 correlated OTs
//! with the bits of `b` as choices and `D_j = a 2^j`; the sender's share `-sum v_j` and the
//! receiver's `sum w_j` add up to `a b`. Two such products per pair of servers turn additive
//! shares of random `a`, `b` into shares of `a b`: a multiplication triple without a dealer.
//!
//! Semi-honest only: a malicious receiver could send inconsistent `u_j` and learn bits of `s`
//! (the KOS consistency check closes that; not implemented).

use super::base;
use super::{Key, os_bytes64};
use crate::error::{Error, PeerName, Result};
use crate::mpc::digest::{sha256, to_words};
use crate::mpc::prg::{Prg, Seed};
use crate::mpc::ring::transpose64;

/// Base OTs behind every extension (the computational security parameter).
pub const KAPPA: usize = 128;

/// SHA-256 of (batch, index, 128-bit row), truncated to 64 bits: the correlation-robust hash.
fn h(batch: u64, i: usize, row: [u64; 2]) -> u64 {
    let d = sha256(
        "ppea IKNP v1",
        &[
            &batch.to_le_bytes(),
            &(i as u64).to_le_bytes(),
            bytemuck::cast_slice(&row),
        ],
    );
    to_words(&d)[0]
}

fn expand(k: &Key, batch: u64, words: usize) -> Vec<u64> {
    Prg::new(&Seed(k.0), batch).vec(words)
}

/// Rows of the transposed matrix: `rows[i]` holds bit `j` of `cols[j]`'s OT `i` (column `j` of
/// `KAPPA` is a vector of `words` words).
fn transpose(cols: &[Vec<u64>], words: usize) -> Vec<[u64; 2]> {
    let mut rows = vec![[0u64; 2]; 64 * words];
    let mut block = [0u64; 64];
    for w in 0..words {
        for half in 0..2 {
            for (r, b) in block.iter_mut().enumerate() {
                *b = cols[64 * half + r][w];
            }
            transpose64(&mut block);
            for (c, b) in block.iter().enumerate() {
                rows[64 * w + c][half] = *b;
            }
        }
    }
    rows
}

/// The extension sender after setup. `Debug` is redacted.
pub struct ExtSender {
    s: [u64; 2],
    keys: Vec<Key>,
    batch: u64,
    peer: PeerName,
}

/// The extension receiver after setup. `Debug` is redacted.
pub struct ExtReceiver {
    pairs: Vec<(Key, Key)>,
    batch: u64,
    peer: PeerName,
}

impl std::fmt::Debug for ExtSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExtSender(batches={}, <redacted>)", self.batch)
    }
}

impl std::fmt::Debug for ExtReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExtReceiver(batches={}, <redacted>)", self.batch)
    }
}

impl Drop for ExtSender {
    fn drop(&mut self) {
        self.s = [0; 2];
    }
}

/// Setup, extension receiver's side, step 1: acts as base-OT sender; returns its message.
pub fn receiver_setup(peer: PeerName) -> (base::Sender, Vec<u64>) {
    base::Sender::start(peer)
}

/// Setup, extension sender's side: answers the receiver's base-OT message with fresh `s`.
pub fn sender_setup(first: &[u64], peer: PeerName) -> Result<(ExtSender, Vec<u64>)> {
    let b = os_bytes64();
    let s = [
        u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
        u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
    ];
    let choices: Vec<bool> = (0..KAPPA).map(|j| s[j / 64] >> (j % 64) & 1 == 1).collect();
    let (msg, keys) = base::receive(first, &choices, peer)?;
    Ok((
        ExtSender {
            s,
            keys,
            batch: 0,
            peer,
        },
        msg,
    ))
}

/// Setup, extension receiver's side, step 2: the base-OT sender's keys.
pub fn receiver_finish(sender: base::Sender, msg: &[u64], peer: PeerName) -> Result<ExtReceiver> {
    Ok(ExtReceiver {
        pairs: sender.finish(msg, KAPPA)?,
        batch: 0,
        peer,
    })
}

/// A batch on the receiver's side, waiting for the sender's corrections.
pub struct RecvBatch {
    batch: u64,
    choices: Vec<u64>,
    rows: Vec<[u64; 2]>,
    peer: PeerName,
}

/// A batch on the sender's side.
pub struct SendBatch {
    batch: u64,
    s: [u64; 2],
    rows: Vec<[u64; 2]>,
}

impl ExtReceiver {
    /// Starts a batch of `64 * choices.len()` OTs whose choice bits are the bits of `choices`
    /// (bit `j` of word `w` is OT `64 w + j`); returns the message for the sender.
    pub fn extend(&mut self, choices: &[u64]) -> (Vec<u64>, RecvBatch) {
        self.batch += 1;
        let words = choices.len();
        let mut msg = Vec::with_capacity(KAPPA * words);
        let mut cols = Vec::with_capacity(KAPPA);
        for (k0, k1) in &self.pairs {
            let t = expand(k0, self.batch, words);
            let g1 = expand(k1, self.batch, words);
            msg.extend(t.iter().zip(&g1).zip(choices).map(|((t, g), r)| t ^ g ^ r));
            cols.push(t);
        }
        let rows = transpose(&cols, words);
        (
            msg,
            RecvBatch {
                batch: self.batch,
                choices: choices.to_vec(),
                rows,
                peer: self.peer,
            },
        )
    }
}

impl ExtSender {
    /// Answers a batch of `64 * words` OTs started by the receiver's message.
    pub fn extend(&mut self, msg: &[u64], words: usize) -> Result<SendBatch> {
        if msg.len() != KAPPA * words {
            return Err(Error::protocol(
                self.peer,
                format!(
                    "OT extension: {} words, expected {}",
                    msg.len(),
                    KAPPA * words
                ),
            ));
        }
        self.batch += 1;
        let cols: Vec<Vec<u64>> = (0..KAPPA)
            .map(|j| {
                let mut q = expand(&self.keys[j], self.batch, words);
                if self.s[j / 64] >> (j % 64) & 1 == 1 {
                    let u = &msg[j * words..(j + 1) * words];
                    q.iter_mut().zip(u).for_each(|(q, u)| *q ^= u);
                }
                q
            })
            .collect();
        Ok(SendBatch {
            batch: self.batch,
            s: self.s,
            rows: transpose(&cols, words),
        })
    }
}

impl SendBatch {
    /// The two random messages of every OT.
    pub fn random(&self) -> Vec<(u64, u64)> {
        self.rows
            .iter()
            .enumerate()
            .map(|(i, q)| {
                (
                    h(self.batch, i, *q),
                    h(self.batch, i, [q[0] ^ self.s[0], q[1] ^ self.s[1]]),
                )
            })
            .collect()
    }

    /// Correlated OT with correlations `deltas` (one per OT): returns the message for the
    /// receiver and this side's values `v_i`.
    pub fn correlated(&self, deltas: &[u64]) -> Result<(Vec<u64>, Vec<u64>)> {
        if deltas.len() != self.rows.len() {
            return Err(Error::invalid(
                "correlated OT: one correlation per OT is needed",
            ));
        }
        let (msg, v) = self
            .random()
            .into_iter()
            .zip(deltas)
            .map(|((x0, x1), d)| (x1.wrapping_sub(x0).wrapping_sub(*d), x0))
            .unzip();
        Ok((msg, v))
    }

    /// Correlated OT over bits: `deltas` packs one correlation bit per OT (64 to a word).
    /// Returns the message for the receiver (one bit per OT, packed) and this side's bits `v`
    /// (packed), with `w ^ v = r & D` on the receiver's side: XOR shares of the AND of the
    /// receiver's choices and the correlations. 1 bit of message per OT instead of 64.
    pub fn correlated_bits(&self, deltas: &[u64]) -> Result<(Vec<u64>, Vec<u64>)> {
        let words = self.rows.len() / 64;
        if deltas.len() != words {
            return Err(Error::invalid(
                "bit-correlated OT: one correlation bit per OT is needed",
            ));
        }
        let mut msg = deltas.to_vec();
        let mut v = vec![0u64; words];
        for (i, (x0, x1)) in self.random().into_iter().enumerate() {
            v[i / 64] |= (x0 & 1) << (i % 64);
            msg[i / 64] ^= ((x0 ^ x1) & 1) << (i % 64);
        }
        Ok((msg, v))
    }

    /// Gilboa: this side's shares of `a_i * b_i`, where the receiver's choices were the words
    /// `b` (64 OTs per value). Returns the message for the receiver and this side's shares.
    pub fn gilboa(&self, a: &[u64]) -> Result<(Vec<u64>, Vec<u64>)> {
        let deltas: Vec<u64> = a
            .iter()
            .flat_map(|&x| (0..64).map(move |j| x << j))
            .collect();
        let (msg, v) = self.correlated(&deltas)?;
        let shares = v
            .chunks_exact(64)
            .map(|c| c.iter().fold(0u64, |s, x| s.wrapping_sub(*x)))
            .collect();
        Ok((msg, shares))
    }
}

impl RecvBatch {
    /// The chosen random message of every OT.
    pub fn random(&self) -> Vec<u64> {
        self.rows
            .iter()
            .enumerate()
            .map(|(i, t)| h(self.batch, i, *t))
            .collect()
    }

    fn choice(&self, i: usize) -> bool {
        self.choices[i / 64] >> (i % 64) & 1 == 1
    }

    /// Correlated OT: this side's values `w_i = v_i + r_i D_i` from the sender's message.
    pub fn correlated(&self, msg: &[u64]) -> Result<Vec<u64>> {
        if msg.len() != self.rows.len() {
            return Err(Error::protocol(
                self.peer,
                format!(
                    "correlated OT: {} words, expected {}",
                    msg.len(),
                    self.rows.len()
                ),
            ));
        }
        Ok(self
            .random()
            .into_iter()
            .enumerate()
            .map(|(i, x)| {
                if self.choice(i) {
                    x.wrapping_sub(msg[i])
                } else {
                    x
                }
            })
            .collect())
    }

    /// Bit-correlated OT: this side's bits `w = v ^ (r & D)` (packed) from the sender's
    /// message.
    pub fn correlated_bits(&self, msg: &[u64]) -> Result<Vec<u64>> {
        if msg.len() != self.choices.len() {
            return Err(Error::protocol(
                self.peer,
                format!(
                    "bit-correlated OT: {} words, expected {}",
                    msg.len(),
                    self.choices.len()
                ),
            ));
        }
        let mut w: Vec<u64> = msg.iter().zip(&self.choices).map(|(m, c)| m & c).collect();
        for (i, x) in self.random().into_iter().enumerate() {
            w[i / 64] ^= (x & 1) << (i % 64);
        }
        Ok(w)
    }

    /// Gilboa: this side's shares of `a_i * b_i` (the choices were the words `b`).
    pub fn gilboa(&self, msg: &[u64]) -> Result<Vec<u64>> {
        Ok(self
            .correlated(msg)?
            .chunks_exact(64)
            .map(|c| c.iter().fold(0u64, |s, x| s.wrapping_add(*x)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (ExtSender, ExtReceiver) {
        let (bs, m1) = receiver_setup(PeerName::Server(0));
        let (snd, m2) = sender_setup(&m1, PeerName::Server(1)).unwrap();
        let rcv = receiver_finish(bs, &m2, PeerName::Server(0)).unwrap();
        (snd, rcv)
    }

    #[test]
    fn transpose_matches_the_naive_one() {
        let mut prg = Prg::fresh();
        let words = 3;
        let cols: Vec<Vec<u64>> = (0..KAPPA).map(|_| prg.vec(words)).collect();
        let rows = transpose(&cols, words);
        for (i, row) in rows.iter().enumerate() {
            for (j, col) in cols.iter().enumerate() {
                let want = col[i / 64] >> (i % 64) & 1;
                assert_eq!(row[j / 64] >> (j % 64) & 1, want, "ot {i}, column {j}");
            }
        }
    }

    #[test]
    fn random_ots_give_the_chosen_message_only() {
        let (mut snd, mut rcv) = setup();
        for _batch in 0..2 {
            let choices = Prg::fresh().vec(4);
            let (msg, rb) = rcv.extend(&choices);
            let sb = snd.extend(&msg, 4).unwrap();
            let (got, pairs) = (rb.random(), sb.random());
            for (i, (g, (x0, x1))) in got.iter().zip(&pairs).enumerate() {
                assert_ne!(x0, x1);
                let c = choices[i / 64] >> (i % 64) & 1 == 1;
                assert_eq!(g, if c { x1 } else { x0 }, "ot {i}");
            }
        }
    }

    #[test]
    fn correlated_ots_and_gilboa_products() {
        let (mut snd, mut rcv) = setup();
        let mut prg = Prg::fresh();
        let (a, b) = (prg.vec(5), prg.vec(5));
        let (msg, rb) = rcv.extend(&b);
        let sb = snd.extend(&msg, b.len()).unwrap();
        let (m, s_share) = sb.gilboa(&a).unwrap();
        let r_share = rb.gilboa(&m).unwrap();
        for i in 0..a.len() {
            assert_eq!(
                s_share[i].wrapping_add(r_share[i]),
                a[i].wrapping_mul(b[i]),
                "product {i}"
            );
        }
        // Each share alone is not the product (shares are masked by random OT messages).
        assert!((0..a.len()).all(|i| r_share[i] != a[i].wrapping_mul(b[i])));
    }

    #[test]
    fn a_dealer_free_multiplication_triple_for_two_servers() {
        // Server 0 holds (a0, b0), server 1 holds (a1, b1); c = (a0 + a1)(b0 + b1) from two
        // Gilboa products, one in each direction.
        let mut prg = Prg::fresh();
        let n = 8;
        let (a0, b0, a1, b1) = (prg.vec(n), prg.vec(n), prg.vec(n), prg.vec(n));
        let (mut s01, mut r01) = setup(); // server 0 sends (a0), server 1 receives (b1)
        let (mut s10, mut r10) = setup(); // server 1 sends (a1), server 0 receives (b0)
        let (m, rb) = r01.extend(&b1);
        let (m, x0) = s01.extend(&m, n).unwrap().gilboa(&a0).unwrap();
        let y1 = rb.gilboa(&m).unwrap();
        let (m, rb) = r10.extend(&b0);
        let (m, x1) = s10.extend(&m, n).unwrap().gilboa(&a1).unwrap();
        let y0 = rb.gilboa(&m).unwrap();
        assert!(crate::mpc::ot::triples_multiply(
            [&a0, &a1],
            [&b0, &b1],
            [&x0, &x1],
            [&y0, &y1]
        ));
    }

    #[test]
    fn bit_correlated_ots_share_the_and_of_choices_and_correlations() {
        let (mut snd, mut rcv) = setup();
        let mut prg = Prg::fresh();
        let (r, d) = (prg.vec(3), prg.vec(3));
        let (msg, rb) = rcv.extend(&r);
        let (m, v) = snd.extend(&msg, 3).unwrap().correlated_bits(&d).unwrap();
        assert_eq!(m.len(), 3, "one bit of message per OT");
        let w = rb.correlated_bits(&m).unwrap();
        for i in 0..3 {
            assert_eq!(w[i] ^ v[i], r[i] & d[i], "word {i}");
        }
        // The sender's bits alone are not the AND (they are masked by the random messages).
        assert_ne!(v, (0..3).map(|i| r[i] & d[i]).collect::<Vec<_>>());
        assert!(rb.correlated_bits(&m[..2]).is_err());
    }

    #[test]
    fn wrong_sizes_are_refused() {
        let (mut snd, _) = setup();
        assert!(snd.extend(&[0; 10], 1).is_err());
    }
}
