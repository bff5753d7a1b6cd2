//! OT extension (Ishai, Kilian, Nissim, Petrank, CRYPTO 2003) with the consistency check of
//! Keller, Orsini and Scholl (CRYPTO 2015) against a deviating receiver: any number of OTs from
//! [`KAPPA`] = 128 base OTs, then correlated OTs over `Z_2^64` and Gilboa products.
//!
//! **Setup** (once per pair of servers, roles reversed): the extension *sender* draws
//! `s in {0,1}^128` with its bit 0 set (the silent extension seeded from these OTs needs it,
//! [`super::silent`]; 127 bits stay secret) and, as base-OT receiver with choices `s`, learns
//! `k_j^{s_j}`; the
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
//! **The hash** is the tweakable correlation-robust hash of Guo, Katz, Wang and Yu (IEEE S&P
//! 2020) from a fixed-key block cipher, `H(x, t) = pi(pi(x) ^ t) ^ pi(x)` with `pi` AES-128 under
//! a public key and the tweak `t = i + 2^64 batch` unique per OT of an extension (secure in the
//! random-permutation model, as in EMP and libOTe). It replaced SHA-256, which took two thirds
//! of the time of making comparison material (AES-NI makes it about 20 times cheaper).
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
//! **Consistency check** (Keller, Orsini, Scholl, CRYPTO 2015). A deviating receiver could send
//! columns `u_j` built from different choice vectors and, from what it then gets, learn bits
//! of `s` (and with `s` every message of the sender). So the receiver extends
//! [`CHECK_WORDS`] more words of OTs with random choices, and appends to its columns
//! `X = sum_i chi_i r_i` and `T = sum_i chi_i t_i` in `GF(2^128)`, for challenges `chi_i`
//! drawn from a hash of its columns (Fiat-Shamir: fixed before it could choose them); the
//! sender checks `sum_i chi_i q_i = T + X s` and refuses the batch otherwise, before it uses
//! any OT of it. The extra OTs are discarded. A receiver that deviates is caught except with
//! the probability of guessing the bits of `s` it would learn (at most a few bits, the
//! protocol's accepted leakage); `u` and the check cost `128 (w + 3) + 4` words for `w`
//! choice words.

use super::fixed_aes::FixedAes;
use super::{Key, base, gf128, os_bytes64};
use crate::error::{Error, PeerName, Result};
use crate::mpc::digest::sha256;
use crate::mpc::prg::{Prg, Seed};
use crate::mpc::ring::transpose64;
use rayon::prelude::*;
use zeroize::Zeroize;

type Block = aes::Block;

/// Base OTs behind every extension (the computational security parameter).
pub const KAPPA: usize = 128;

/// Extra choice words (192 OTs with random choices) of every batch, for the consistency check
/// (KOS needs at least `KAPPA` + 40).
pub const CHECK_WORDS: usize = 3;

/// Words of the receiver's message for a batch of `words` choice words: its columns (the
/// check's OTs included) and the check values `X`, `T`.
pub fn receiver_msg_words(words: usize) -> usize {
    KAPPA * (words + CHECK_WORDS) + 4
}

/// The check's challenges: one element of GF(2^128) per OT of the batch, from a hash of the
/// receiver's columns and the batch number.
fn challenges(batch: u64, columns: &[u64], count: usize) -> Vec<u128> {
    // The columns as little-endian bytes (their memory layout on little-endian machines).
    let le: std::borrow::Cow<[u8]> = if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(bytemuck::cast_slice(columns))
    } else {
        std::borrow::Cow::Owned(columns.iter().flat_map(|w| w.to_le_bytes()).collect())
    };
    let seed = sha256("ppea KOS challenge v1", &[&batch.to_le_bytes(), &le]);
    let w = Prg::new(&Seed(seed), 0).vec(2 * count);
    w.chunks_exact(2)
        .map(|c| u128::from(c[0]) | u128::from(c[1]) << 64)
        .collect()
}

fn to_u128(s: [u64; 2]) -> u128 {
    u128::from(s[0]) | u128::from(s[1]) << 64
}

/// The fixed-key permutation `pi` of [`hash_rows`]: AES-128 under a public key (nothing up the
/// sleeve: the first 16 bytes of a SHA-256 of its name).
fn pi() -> &'static FixedAes {
    static PI: std::sync::OnceLock<FixedAes> = std::sync::OnceLock::new();
    PI.get_or_init(|| FixedAes::public("ppea IKNP fixed-key AES v1"))
}

/// The tweakable correlation-robust hash (module docs) of `rows[i] ^ xor`, tweak `(batch, i)`,
/// truncated to 64 bits, for every row.
fn hash_rows(batch: u64, rows: &[[u64; 2]], xor: [u64; 2]) -> Vec<u64> {
    let mut out = vec![0u64; rows.len()];
    hash_into(batch, rows, xor, &mut out, |h| h[0]);
    out
}

/// The same hash at its full 128 bits (the silent extension's tree messages,
/// [`super::silent`]).
pub(super) fn hash_rows_wide(batch: u64, rows: &[[u64; 2]], xor: [u64; 2]) -> Vec<[u64; 2]> {
    let mut out = vec![[0u64; 2]; rows.len()];
    hash_into(batch, rows, xor, &mut out, |h| h);
    out
}

/// Rows one core hashes at a time ([`hash_into`] spreads the pieces over the cores).
const HASH_PIECE: usize = 1 << 14;

/// Rows hashed per AES call: one choice word's OTs.
const CHUNK: usize = 64;

/// The hash of `part[j] ^ xor` (at most [`CHUNK`] rows) under tweak `(batch, first + j)` into
/// `out[j]`, through `take`.
#[inline]
fn hash_chunk<T>(
    batch: u64,
    first: u64,
    part: &[[u64; 2]],
    xor: [u64; 2],
    out: &mut [T],
    take: &impl Fn([u64; 2]) -> T,
) {
    let mut x = [Block::default(); CHUNK];
    let mut y = [Block::default(); CHUNK];
    let n = part.len();
    for (b, r) in x.iter_mut().zip(part) {
        *b = words_block([r[0] ^ xor[0], r[1] ^ xor[1]]);
    }
    pi().encrypt_blocks(&mut x[..n]);
    for (j, (yb, xb)) in y.iter_mut().zip(&x[..n]).enumerate() {
        let w = block_words(xb);
        *yb = words_block([w[0] ^ (first + j as u64), w[1] ^ batch]);
    }
    pi().encrypt_blocks(&mut y[..n]);
    for (o, (xb, yb)) in out.iter_mut().zip(x[..n].iter().zip(&y[..n])) {
        let (xw, yw) = (block_words(xb), block_words(yb));
        *o = take([xw[0] ^ yw[0], xw[1] ^ yw[1]]);
    }
}

/// The hash of `rows[i] ^ xor` under tweak `(batch, i)` into `out[i]`, through `take`; pieces
/// of [`HASH_PIECE`] rows run in parallel, 64 blocks to an AES call.
fn hash_into<T: Send>(
    batch: u64,
    rows: &[[u64; 2]],
    xor: [u64; 2],
    out: &mut [T],
    take: impl Fn([u64; 2]) -> T + Sync,
) {
    out.par_chunks_mut(HASH_PIECE)
        .zip(rows.par_chunks(HASH_PIECE))
        .enumerate()
        .for_each(|(p, (out, rows))| {
            for (c, (out, part)) in out.chunks_mut(CHUNK).zip(rows.chunks(CHUNK)).enumerate() {
                let first = (p * HASH_PIECE + c * CHUNK) as u64;
                hash_chunk(batch, first, part, xor, out, &take);
            }
        });
}

/// Random OTs of a batch taken word by word, without materialising the batch or its hashes:
/// for choice word `w` (the OTs `64 w ..`, rows `rows[64 w ..]`), `f` gets word `w`'s
/// `stride` words of `out`, then, on the sender's side (`s` given), the 64 OTs' messages
/// `x^0` and `x^1`, on the receiver's (`choices` given) its choice word and its 64 chosen
/// messages in the first array (the second is unused). The messages are those of
/// [`SendBatch::random`] and [`RecvBatch::random`] for the same batch number; pieces of
/// [`HASH_PIECE`] OTs run in parallel.
pub(super) fn random_words(
    batch: u64,
    rows: &[[u64; 2]],
    side: RandomSide<'_>,
    out: &mut [u64],
    stride: usize,
    f: impl Fn(&mut [u64], u64, &[u64; CHUNK], &[u64; CHUNK]) + Sync,
) {
    debug_assert_eq!(rows.len() % CHUNK, 0);
    debug_assert_eq!(out.len(), stride * rows.len() / CHUNK);
    let take = |h: [u64; 2]| h[0];
    out.par_chunks_mut(stride * (HASH_PIECE / CHUNK))
        .zip(rows.par_chunks(HASH_PIECE))
        .enumerate()
        .for_each(|(p, (out, rows))| {
            let mut x0 = [0u64; CHUNK];
            let mut x1 = [0u64; CHUNK];
            for (c, (o, part)) in out.chunks_mut(stride).zip(rows.chunks(CHUNK)).enumerate() {
                let first = (p * HASH_PIECE + c * CHUNK) as u64;
                hash_chunk(batch, first, part, [0, 0], &mut x0, &take);
                let choice = match side {
                    RandomSide::Sender { s } => {
                        hash_chunk(batch, first, part, *s, &mut x1, &take);
                        0
                    }
                    RandomSide::Receiver { choices } => choices[p * (HASH_PIECE / CHUNK) + c],
                };
                f(o, choice, &x0, &x1);
            }
            x0.zeroize();
            x1.zeroize();
        });
}

/// Which side of a batch [`random_words`] hashes.
#[derive(Clone, Copy)]
pub(super) enum RandomSide<'a> {
    /// The sender, with its secret `s` (borrowed: no copy of it is left behind).
    Sender { s: &'a [u64; 2] },
    /// The receiver, with its choice words.
    Receiver { choices: &'a [u64] },
}

/// A block's two little-endian words.
pub(super) fn block_words(b: &Block) -> [u64; 2] {
    [
        u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
        u64::from_le_bytes(b[8..].try_into().expect("8 bytes")),
    ]
}

/// The block of two little-endian words.
pub(super) fn words_block(w: [u64; 2]) -> Block {
    let mut b = Block::default();
    b[..8].copy_from_slice(&w[0].to_le_bytes());
    b[8..].copy_from_slice(&w[1].to_le_bytes());
    b
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
    /// The receiver failed a consistency check: `s` and the keys are erased and every further
    /// batch is refused (a receiver that could retry would learn `s` a bit per failure).
    caught: bool,
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
        self.s.zeroize();
    }
}

/// Setup, extension receiver's side, step 1: acts as base-OT sender; returns its message.
pub fn receiver_setup(peer: PeerName) -> (base::Sender, Vec<u64>) {
    base::Sender::start(peer)
}

/// Setup, extension sender's side: answers the receiver's base-OT message with fresh `s`.
pub fn sender_setup(first: &[u64], peer: PeerName) -> Result<(ExtSender, Vec<u64>)> {
    let mut b = os_bytes64();
    // Bit 0 is 1: the silent extension, seeded from these OTs with `Δ = s`, keeps the
    // receiver's choices in its rows' low bits, which needs `Δ`'s low bit 1 (silent module,
    // "Choices in the low bit"); 127 bits stay secret.
    let s = [
        u64::from_le_bytes(b[..8].try_into().expect("8 bytes")) | 1,
        u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
    ];
    b.zeroize();
    // The bits of `s` (the silent extension's `Δ` later): wiped once used.
    let mut choices: Vec<bool> = (0..KAPPA).map(|j| s[j / 64] >> (j % 64) & 1 == 1).collect();
    let received = base::receive(first, &choices, peer);
    choices.zeroize();
    let (msg, keys) = received?;
    Ok((
        ExtSender {
            s,
            keys,
            batch: 0,
            peer,
            caught: false,
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
    pub(super) batch: u64,
    pub(super) choices: Vec<u64>,
    pub(super) rows: Vec<[u64; 2]>,
    pub(super) peer: PeerName,
}

/// A batch on the sender's side (it holds a copy of the extension's secret `s`, zeroized on
/// drop).
pub struct SendBatch {
    pub(super) batch: u64,
    pub(super) s: [u64; 2],
    pub(super) rows: Vec<[u64; 2]>,
}

impl Drop for SendBatch {
    fn drop(&mut self) {
        self.s.zeroize();
        self.rows.zeroize();
    }
}

impl Drop for RecvBatch {
    fn drop(&mut self) {
        self.choices.zeroize();
        self.rows.zeroize();
    }
}

impl ExtReceiver {
    /// Starts a batch of `64 * choices.len()` OTs whose choice bits are the bits of `choices`
    /// (bit `j` of word `w` is OT `64 w + j`); returns the message for the sender.
    pub fn extend(&mut self, choices: &[u64]) -> (Vec<u64>, RecvBatch) {
        self.batch += 1;
        let words = choices.len();
        let all = words + CHECK_WORDS;
        let mut r = choices.to_vec();
        r.extend(Prg::fresh().vec(CHECK_WORDS));
        let mut msg = Vec::with_capacity(receiver_msg_words(words));
        let mut cols = Vec::with_capacity(KAPPA);
        for (k0, k1) in &self.pairs {
            let t = expand(k0, self.batch, all);
            let mut g1 = expand(k1, self.batch, all);
            msg.extend(t.iter().zip(&g1).zip(&r).map(|((t, g), r)| t ^ g ^ r));
            g1.zeroize();
            cols.push(t);
        }
        let chi = challenges(self.batch, &msg, 64 * all);
        let mut rows = transpose(&cols, all);
        let (x, t) = (
            gf128::select(&r, &chi),
            gf128::sum_products(&cols, &rows, &chi),
        );
        r.zeroize();
        cols.iter_mut().for_each(|c| c.zeroize());
        msg.extend([x as u64, (x >> 64) as u64, t as u64, (t >> 64) as u64]);
        rows.truncate(64 * words);
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
        if self.caught {
            return Err(Error::protocol(
                self.peer,
                "OT extension: this receiver already failed a consistency check",
            ));
        }
        if msg.len() != receiver_msg_words(words) {
            return Err(Error::protocol(
                self.peer,
                format!(
                    "OT extension: {} words, expected {}",
                    msg.len(),
                    receiver_msg_words(words)
                ),
            ));
        }
        self.batch += 1;
        let all = words + CHECK_WORDS;
        let (u, check) = msg.split_at(KAPPA * all);
        let mut cols: Vec<Vec<u64>> = (0..KAPPA)
            .map(|j| {
                let mut q = expand(&self.keys[j], self.batch, all);
                if self.s[j / 64] >> (j % 64) & 1 == 1 {
                    let u = &u[j * all..(j + 1) * all];
                    q.iter_mut().zip(u).for_each(|(q, u)| *q ^= u);
                }
                q
            })
            .collect();
        let chi = challenges(self.batch, u, 64 * all);
        let (x, t) = (to_u128([check[0], check[1]]), to_u128([check[2], check[3]]));
        let mut rows = transpose(&cols, all);
        let consistent =
            gf128::sum_products(&cols, &rows, &chi) == t ^ gf128::mul(x, to_u128(self.s));
        cols.iter_mut().for_each(|c| c.zeroize());
        if !consistent {
            rows.zeroize();
            self.caught = true;
            self.s.zeroize();
            self.keys.clear();
            return Err(Error::protocol(
                self.peer,
                "OT extension: the receiver's columns fail the consistency check (KOS); \
                 it deviated from the protocol",
            ));
        }
        rows.truncate(64 * words);
        Ok(SendBatch {
            batch: self.batch,
            s: self.s,
            rows,
        })
    }
}

impl SendBatch {
    /// The two random messages of every OT.
    pub fn random(&self) -> Vec<(u64, u64)> {
        let x0 = hash_rows(self.batch, &self.rows, [0, 0]);
        let x1 = hash_rows(self.batch, &self.rows, self.s);
        x0.into_iter().zip(x1).collect()
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

    /// Correlated OT over bits, `lanes` correlation bits per OT (from as many bits of each
    /// hash): word `lanes w + j` of `deltas` holds lane `j` of the OTs of choice word `w`
    /// (64 OTs to a word). Returns the message for the receiver and this side's bits `v`, laid
    /// out the same way, with `w ^ v = r & D` lane by lane on the receiver's side: XOR shares
    /// of the AND of the receiver's choices and the correlations. `lanes` bits of message per
    /// OT instead of 64.
    pub fn correlated_bits(&self, deltas: &[u64], lanes: usize) -> Result<(Vec<u64>, Vec<u64>)> {
        let words = self.rows.len() / 64;
        if !(1..=64).contains(&lanes) || deltas.len() != lanes * words {
            return Err(Error::invalid(
                "bit-correlated OT: one correlation bit per OT and lane is needed",
            ));
        }
        let mut msg = deltas.to_vec();
        let mut v = vec![0u64; lanes * words];
        for (i, (x0, x1)) in self.random().into_iter().enumerate() {
            let (w, l) = (i / 64, i % 64);
            for j in 0..lanes {
                v[lanes * w + j] |= (x0 >> j & 1) << l;
                msg[lanes * w + j] ^= ((x0 ^ x1) >> j & 1) << l;
            }
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
        hash_rows(self.batch, &self.rows, [0, 0])
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

    /// Bit-correlated OT with `lanes` bits per OT (see [`SendBatch::correlated_bits`]): this
    /// side's bits `w = v ^ (r & D)` from the sender's message.
    pub fn correlated_bits(&self, msg: &[u64], lanes: usize) -> Result<Vec<u64>> {
        let expected = lanes * self.choices.len();
        if !(1..=64).contains(&lanes) || msg.len() != expected {
            return Err(Error::protocol(
                self.peer,
                format!(
                    "bit-correlated OT: {} words, expected {expected}",
                    msg.len()
                ),
            ));
        }
        let mut w: Vec<u64> = msg
            .iter()
            .enumerate()
            .map(|(i, m)| m & self.choices[i / lanes])
            .collect();
        for (i, x) in self.random().into_iter().enumerate() {
            let (word, l) = (i / 64, i % 64);
            for j in 0..lanes {
                w[lanes * word + j] ^= (x >> j & 1) << l;
            }
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
    fn the_hash_is_the_fixed_key_tccr_construction() {
        let mut prg = Prg::fresh();
        // Several pieces of the parallel hash, the last one partial.
        let rows: Vec<[u64; 2]> = (0..2 * HASH_PIECE + 130)
            .map(|_| [prg.next_u64(), prg.next_u64()])
            .collect();
        let xor = [prg.next_u64(), prg.next_u64()];
        let got = hash_rows(7, &rows, xor);
        let block = |w: [u64; 2]| {
            let mut b = Block::default();
            b[..8].copy_from_slice(&w[0].to_le_bytes());
            b[8..].copy_from_slice(&w[1].to_le_bytes());
            b
        };
        let words = |b: &Block| {
            [
                u64::from_le_bytes(b[..8].try_into().unwrap()),
                u64::from_le_bytes(b[8..].try_into().unwrap()),
            ]
        };
        for (i, r) in rows.iter().enumerate() {
            let mut y = block([r[0] ^ xor[0], r[1] ^ xor[1]]);
            pi().encrypt_block(&mut y);
            let py = words(&y);
            let mut z = block([py[0] ^ i as u64, py[1] ^ 7]);
            pi().encrypt_block(&mut z);
            assert_eq!(got[i], words(&z)[0] ^ py[0], "row {i}");
        }
        // The tweak separates equal rows at different indices and batches.
        let same = vec![rows[0]; 2];
        let a = hash_rows(7, &same, [0, 0]);
        assert_ne!(a[0], a[1]);
        assert_ne!(a[0], hash_rows(8, &same, [0, 0])[0]);
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
        let sb = snd.extend(&msg, 3).unwrap();
        let (m, v) = sb.correlated_bits(&d, 1).unwrap();
        assert_eq!(m.len(), 3, "one bit of message per OT");
        let w = rb.correlated_bits(&m, 1).unwrap();
        for i in 0..3 {
            assert_eq!(w[i] ^ v[i], r[i] & d[i], "word {i}");
        }
        // The sender's bits alone are not the AND (they are masked by the random messages).
        assert_ne!(v, (0..3).map(|i| r[i] & d[i]).collect::<Vec<_>>());
        assert!(rb.correlated_bits(&m[..2], 1).is_err());
        // Two lanes: each lane of a word against the same choices.
        let d2 = prg.vec(6);
        let (m, v) = sb.correlated_bits(&d2, 2).unwrap();
        let w = rb.correlated_bits(&m, 2).unwrap();
        for i in 0..6 {
            assert_eq!(
                w[i] ^ v[i],
                r[i / 2] & d2[i],
                "word {}, lane {}",
                i / 2,
                i % 2
            );
        }
        assert!(sb.correlated_bits(&d2, 0).is_err());
    }

    #[test]
    fn wrong_sizes_are_refused() {
        let (mut snd, _) = setup();
        assert!(snd.extend(&[0; 10], 1).is_err());
    }

    /// The selective-failure attack on IKNP: a receiver builds column `j` from another choice
    /// vector (OT 0's choice flipped), then computes its check values honestly from its own
    /// columns and the challenges of what it sends. If `s_j = 0` the sender never uses that
    /// column's `u`, so nothing changes and the receiver learns `s_j` from not being caught:
    /// the one bit KOS lets it guess, at the risk of being caught. If `s_j = 1` the check
    /// catches it, and the sender then refuses every further batch (a receiver that could
    /// retry would learn `s` a bit per failure). Adjusting `X` (as if OT 0's choice were
    /// flipped everywhere) does not help unless `s` has a single bit set, and changing a word
    /// of the check's own columns after computing `X` and `T` changes the challenges.
    #[test]
    fn a_receiver_with_inconsistent_columns_is_caught_unless_it_guessed_the_bit() {
        let words = 2;
        let all = words + CHECK_WORDS;
        // The receiver's message with column `column` tampered, and its check values
        // recomputed (`adjust`: X also as if OT 0's choice were flipped).
        let attack = |rcv: &mut ExtReceiver, column: usize, adjust: bool| {
            let (mut msg, _) = rcv.extend(&Prg::fresh().vec(words));
            let b = rcv.batch;
            let t: Vec<Vec<u64>> = rcv.pairs.iter().map(|(k0, _)| expand(k0, b, all)).collect();
            // Its full choice vector (the check's random words too), from an honest column.
            let c = if column == 0 { 1 } else { 0 };
            let g1 = expand(&rcv.pairs[c].1, b, all);
            let r: Vec<u64> = (0..all)
                .map(|w| msg[c * all + w] ^ t[c][w] ^ g1[w])
                .collect();
            msg[column * all] ^= 1;
            let chi = challenges(b, &msg[..KAPPA * all], 64 * all);
            let mut x = gf128::select(&r, &chi);
            if adjust {
                x ^= chi[0];
            }
            let tt = gf128::sum_products(&t, &transpose(&t, all), &chi);
            let n = msg.len();
            msg[n - 4..].copy_from_slice(&[
                x as u64,
                (x >> 64) as u64,
                tt as u64,
                (tt >> 64) as u64,
            ]);
            msg
        };
        // Until both outcomes were seen (each column is a fresh extension, a fresh `s`).
        let (mut caught, mut passed) = (0, 0);
        for column in (0..KAPPA).cycle().step_by(37).take(64) {
            let (mut snd, mut rcv) = setup();
            let s_bit = snd.s[column / 64] >> (column % 64) & 1 == 1;
            let r = snd.extend(&attack(&mut rcv, column, false), words);
            assert_eq!(r.is_err(), s_bit, "column {column}");
            match r {
                Err(e) => {
                    assert!(e.to_string().contains("consistency check"), "{e}");
                    caught += 1;
                    let (msg, _) = rcv.extend(&Prg::fresh().vec(words));
                    let e = snd
                        .extend(&msg, words)
                        .err()
                        .expect("refused after a failure");
                    assert!(e.to_string().contains("already failed"), "{e}");
                }
                Ok(_) => passed += 1,
            }
            let (mut snd, mut rcv) = setup();
            let msg = attack(&mut rcv, column, true);
            assert!(
                snd.extend(&msg, words).is_err(),
                "column {column}, X adjusted"
            );
            if caught > 0 && passed > 0 {
                break;
            }
        }
        assert!(
            caught > 0 && passed > 0,
            "64 fresh secrets with one outcome is a 2^-63 event"
        );
        // The challenges cover the check's own columns: changing one after X and T were
        // computed is caught.
        let (mut snd, mut rcv) = setup();
        let (mut msg, _) = rcv.extend(&Prg::fresh().vec(words));
        msg[5 * all + words] ^= 1 << 9;
        assert!(snd.extend(&msg, words).is_err());
        // An honest batch passes and gives the chosen messages.
        let (mut snd, mut rcv) = setup();
        let choices = Prg::fresh().vec(words);
        let (msg, rb) = rcv.extend(&choices);
        let sb = snd.extend(&msg, words).unwrap();
        for (i, (g, (x0, x1))) in rb.random().iter().zip(sb.random()).enumerate() {
            let c = choices[i / 64] >> (i % 64) & 1 == 1;
            assert_eq!(*g, if c { x1 } else { x0 }, "ot {i}");
        }
    }
}
