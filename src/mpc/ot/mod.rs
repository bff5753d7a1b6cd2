//! Oblivious transfer: the building block of dealer-free correlated randomness.
//!
//! In a 1-out-of-2 OT a *sender* holds two messages `(m0, m1)` and a *receiver* a choice bit `c`;
//! the receiver learns `m_c` and nothing about `m_{1-c}`, the sender learns nothing about `c`.
//! Between any two compute servers, OT turns each server's own random shares into shares of
//! products (Gilboa), so the servers can make the dealer's material themselves.
//!
//! * [`base`]: a few hundred OTs from public-key operations on Ristretto (Chou-Orlandi "simplest
//!   OT"; points are checked to decode and not to be the identity);
//! * [`extension`]: random OTs from 128 base OTs and symmetric crypto (IKNP with the KOS
//!   consistency check, a fixed-key AES hash), correlated OTs over `Z_2^64` and over bits, and
//!   Gilboa products of 64-bit values;
//! * [`silent`]: millions of correlated OTs per link for a fraction of a byte each (Ferret's
//!   GGM trees and LPN), seeded by one IKNP batch; its batches are IKNP batches to the rest;
//! * [`fixed_aes`]: AES-128 under public keys as a permutation of many blocks (VAES where the
//!   CPU has it);
//! * [`gf128`]: the field arithmetic of the consistency check;
//! * [`links`]: one silent extension per ordered pair of servers, set up in four pairwise
//!   rounds;
//! * [`cross`]: cross terms of every active pair of servers' values (products, bit x value,
//!   bit AND), chunked and pipelined;
//! * [`bilinear`]: the plan of the bilinear form's ring-LWE products (coefficient-packed or
//!   slots), their cost and the job's pre-check;
//! * [`source`]: the dealer-free [`crate::mpc::correlated::Correlations`] source built on them.
//!
//! Every protocol here is sans-IO: each party is a chain of states, each consumed by the next
//! message and producing the message to send (as `u64` words), so illegal orders do not
//! compile and the same code runs over any channel.

pub mod base;
pub mod bilinear;
pub mod cross;
pub mod extension;
pub mod fixed_aes;
pub mod gf128;
pub mod links;
pub mod silent;
pub mod source;

/// A 32-byte OT key (a hash output). `Debug` is redacted; zeroized on drop.
#[derive(Clone, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct Key(pub [u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Two servers' triple shares `c_s = a_s b_s + x_s + y_s` (own product plus the two Gilboa
/// cross-term shares), checked against `c_0 + c_1 = (a_0 + a_1)(b_0 + b_1)` for every index.
/// Each argument holds server 0's and server 1's vectors.
pub(crate) fn triples_multiply(
    a: [&[u64]; 2],
    b: [&[u64]; 2],
    x: [&[u64]; 2],
    y: [&[u64]; 2],
) -> bool {
    let c = |s: usize, i: usize| {
        a[s][i]
            .wrapping_mul(b[s][i])
            .wrapping_add(x[s][i])
            .wrapping_add(y[s][i])
    };
    (0..a[0].len()).all(|i| {
        let (sa, sb) = (a[0][i].wrapping_add(a[1][i]), b[0][i].wrapping_add(b[1][i]));
        c(0, i).wrapping_add(c(1, i)) == sa.wrapping_mul(sb)
    })
}

/// 64 fresh bytes from the operating system's CSPRNG.
pub(crate) fn os_bytes64() -> [u8; 64] {
    let mut b = [0u8; 64];
    getrandom::fill(&mut b).expect("the operating system's random source is available");
    b
}
