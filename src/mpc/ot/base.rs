//! Base OT over the Ristretto group (Chou and Orlandi, "The Simplest Protocol for Oblivious
//! Transfer", LATINCRYPT 2015), in its semi-honest form, batched: one sender message for any
//! number of OTs.
//!
//! With `G` the Ristretto base point and `H` SHA-256 over a domain tag, the OT index and the
//! transcript:
//!
//! 1. The sender draws `a` and sends `A = aG`.
//! 2. For OT `i` with choice `c_i`, the receiver draws `b_i` and sends `B_i = b_i G + c_i A`.
//! 3. The sender's keys are `k_i^0 = H(i, A, B_i, a B_i)` and `k_i^1 = H(i, A, B_i, a (B_i - A))`;
//!    the receiver's is `H(i, A, B_i, b_i A)`, which equals `k_i^{c_i}` because
//!    `b_i A = a b_i G`.
//!
//! `B_i` is uniform whatever `c_i` (a uniform `b_i G` plus a constant), so the sender learns
//! nothing; the receiver cannot compute `a (B_i - (1 - c_i) A)` without solving a
//! Diffie-Hellman problem, so the other key looks random to it (in the random-oracle model).
//! Points travel compressed, 32 bytes (4 words) each; a sender refuses a point that does not
//! decompress.

use super::{Key, os_bytes64};
use crate::error::{Error, PeerName, Result};
use crate::mpc::digest::sha256;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use zeroize::Zeroize;

fn random_scalar() -> Scalar {
    let mut b = os_bytes64();
    let s = Scalar::from_bytes_mod_order_wide(&b);
    b.zeroize();
    s
}

fn to_words(p: &RistrettoPoint) -> [u64; 4] {
    crate::mpc::digest::to_words(p.compress().as_bytes())
}

fn from_words(w: &[u64], peer: PeerName) -> Result<RistrettoPoint> {
    let mut b = [0u8; 32];
    for (i, v) in w.iter().enumerate() {
        b[8 * i..8 * i + 8].copy_from_slice(&v.to_le_bytes());
    }
    let p = CompressedRistretto(b)
        .decompress()
        .ok_or_else(|| Error::protocol(peer, "base OT: a point does not decode"))?;
    // The identity would make every key computable by anyone who sees the messages.
    if p == RistrettoPoint::identity() {
        return Err(Error::protocol(
            peer,
            "base OT: the identity point is not a key",
        ));
    }
    Ok(p)
}

fn key(i: usize, a: &RistrettoPoint, b: &RistrettoPoint, shared: &RistrettoPoint) -> Key {
    Key(sha256(
        "ppea base OT v1",
        &[
            &(i as u64).to_le_bytes(),
            a.compress().as_bytes(),
            b.compress().as_bytes(),
            shared.compress().as_bytes(),
        ],
    ))
}

/// The sender after its first message. `Debug` is redacted.
pub struct Sender {
    a: Scalar,
    big_a: RistrettoPoint,
    peer: PeerName,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("base::Sender(<redacted>)")
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.a.zeroize();
    }
}

impl Sender {
    /// Starts a batch of base OTs with `peer` (the receiver); returns the first message.
    pub fn start(peer: PeerName) -> (Sender, Vec<u64>) {
        let a = random_scalar();
        let big_a = RistrettoPoint::mul_base(&a);
        let msg = to_words(&big_a).to_vec();
        (Sender { a, big_a, peer }, msg)
    }

    /// Consumes the receiver's message (`n` points) and returns the `n` key pairs.
    pub fn finish(self, msg: &[u64], n: usize) -> Result<Vec<(Key, Key)>> {
        if msg.len() != 4 * n {
            return Err(Error::protocol(
                self.peer,
                format!("base OT: {} words, expected {}", msg.len(), 4 * n),
            ));
        }
        msg.chunks_exact(4)
            .enumerate()
            .map(|(i, w)| {
                let b = from_words(w, self.peer)?;
                let k0 = key(i, &self.big_a, &b, &(self.a * b));
                let k1 = key(i, &self.big_a, &b, &(self.a * (b - self.big_a)));
                Ok((k0, k1))
            })
            .collect()
    }
}

/// The receiver's whole part: answers the sender's message for `choices` and returns its
/// message and its keys.
pub fn receive(first: &[u64], choices: &[bool], peer: PeerName) -> Result<(Vec<u64>, Vec<Key>)> {
    if first.len() != 4 {
        return Err(Error::protocol(
            peer,
            format!(
                "base OT: first message of {} words, expected 4",
                first.len()
            ),
        ));
    }
    let big_a = from_words(first, peer)?;
    let mut msg = Vec::with_capacity(4 * choices.len());
    let mut keys = Vec::with_capacity(choices.len());
    for (i, &c) in choices.iter().enumerate() {
        let mut b = random_scalar();
        let mut big_b = RistrettoPoint::mul_base(&b);
        if c {
            big_b += big_a;
        }
        keys.push(key(i, &big_a, &big_b, &(b * big_a)));
        b.zeroize();
        msg.extend(to_words(&big_b));
    }
    Ok((msg, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_gets_exactly_the_chosen_key() {
        let choices: Vec<bool> = (0..40).map(|i| (i * 7) % 3 == 0).collect();
        let (sender, m1) = Sender::start(PeerName::Server(1));
        let (m2, got) = receive(&m1, &choices, PeerName::Server(0)).unwrap();
        let pairs = sender.finish(&m2, choices.len()).unwrap();
        for ((c, k), (k0, k1)) in choices.iter().zip(&got).zip(&pairs) {
            assert_ne!(k0, k1);
            assert_eq!(k, if *c { k1 } else { k0 });
            assert_ne!(k, if *c { k0 } else { k1 });
        }
        // Every key is distinct (indices are hashed in).
        let mut all: Vec<[u8; 32]> = pairs.iter().flat_map(|(a, b)| [a.0, b.0]).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 2 * choices.len());
    }

    #[test]
    fn malformed_messages_are_refused() {
        let (sender, _) = Sender::start(PeerName::Server(1));
        assert!(sender.finish(&[1, 2, 3], 1).is_err());
        let (sender, _) = Sender::start(PeerName::Server(1));
        // Not a valid encoding of a point (the top bit must be clear).
        assert!(sender.finish(&[u64::MAX; 4], 1).is_err());
        assert!(receive(&[0; 3], &[true], PeerName::Server(0)).is_err());
        // The identity (all-zero encoding) would make every key public: refused either way.
        let e = receive(&[0; 4], &[true], PeerName::Server(0)).unwrap_err();
        assert!(e.to_string().contains("identity"), "{e}");
        let (sender, _) = Sender::start(PeerName::Server(1));
        assert!(sender.finish(&[0; 4], 1).is_err());
        let (sender, first) = Sender::start(PeerName::Server(1));
        let (answer, _) = receive(&first, &[false], PeerName::Server(0)).unwrap();
        assert!(sender.finish(&answer, 1).is_ok(), "a valid point passes");
    }
}
