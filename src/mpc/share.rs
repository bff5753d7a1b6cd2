//! Additive secret sharing among `k` servers.
//!
//! A vector `x` is split into `k` vectors that sum to `x` in Z_2^64: `k - 1` of them are uniform,
//! the last is `x` minus their sum. Any `k - 1` shares together are uniform and independent of `x`,
//! so privacy holds while one server keeps its share to itself. Addition, subtraction and
//! multiplication by public constants act share-wise with no communication; adding a public
//! constant is done by one designated server (index 0).
//!
//! **PRG compression.** The `k - 1` uniform shares need not be sent: the dealer or a party sends
//! each of those servers a 32-byte seed, and only the last server receives an explicit vector
//! (the *correction*). Uploading a vector thus costs one share's worth of bytes whatever `k` is.
//!
//! Boolean (XOR) sharing works the same way over Z_2, 64 bits per word.

use crate::error::{Error, Result};
use crate::mpc::correlated::Stream;
use crate::mpc::prg::{Prg, Seed};
use crate::mpc::ring;
use crate::mpc::row_share::RowShare;
use std::fmt;

/// Smallest and largest supported number of compute servers.
pub const MIN_SERVERS: usize = 2;
/// Largest supported number of compute servers.
pub const MAX_SERVERS: usize = 4;

/// Checks that `k` is a supported number of servers.
pub fn check_servers(k: usize) -> Result<()> {
    if (MIN_SERVERS..=MAX_SERVERS).contains(&k) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "the number of compute servers must be {MIN_SERVERS} to {MAX_SERVERS}, got {k}"
        )))
    }
}

/// One server's additive share of a vector of ring elements. `Debug` shows only the length: a
/// share is secret material.
#[derive(Clone, PartialEq, Eq, Default, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct Share(pub Vec<u64>);

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Share(len={}, <redacted>)", self.0.len())
    }
}

impl Share {
    /// Number of ring elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes the words out (the share is zeroized when dropped, so its vector cannot simply be
    /// moved out of it).
    pub fn into_inner(mut self) -> Vec<u64> {
        std::mem::take(&mut self.0)
    }
}

/// What one server receives when a vector is uploaded with PRG compression.
#[derive(Clone, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub enum ShareMsg {
    /// Expand this seed (stream 0) into `len` words.
    Seed {
        /// The seed.
        seed: Seed,
        /// Number of ring elements.
        len: usize,
    },
    /// The explicit correction share.
    Explicit(Vec<u64>),
}

impl fmt::Debug for ShareMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShareMsg::Seed { len, .. } => write!(f, "ShareMsg::Seed(len={len}, <redacted>)"),
            ShareMsg::Explicit(v) => write!(f, "ShareMsg::Explicit(len={}, <redacted>)", v.len()),
        }
    }
}

impl ShareMsg {
    /// The share this message stands for.
    pub fn expand(mut self) -> Share {
        match &mut self {
            ShareMsg::Seed { seed, len } => Share(Prg::new(seed, 0).vec(*len)),
            ShareMsg::Explicit(v) => Share(std::mem::take(v)),
        }
    }

    /// The share this message stands for, as a server keeps it: a seed's stream stays
    /// undrawn ([`RowShare::Seeded`]), explicit words are held.
    pub fn into_rows(mut self) -> RowShare {
        match &mut self {
            ShareMsg::Seed { seed, len } => RowShare::Seeded(Stream::new(seed.clone(), 0, 0, *len)),
            ShareMsg::Explicit(v) => RowShare::Held(std::mem::take(v)),
        }
    }

    /// Bytes this message costs on the wire (payload only).
    pub fn wire_bytes(&self) -> usize {
        match self {
            ShareMsg::Seed { .. } => 32 + 8,
            ShareMsg::Explicit(v) => 8 * v.len(),
        }
    }
}

/// Splits `x` into `k` full shares with a fresh CSPRNG.
pub fn share(x: &[u64], k: usize) -> Result<Vec<Share>> {
    check_servers(k)?;
    let mut prg = Prg::fresh();
    Ok(share_with(x, k, &mut prg))
}

/// Splits `x` into `k` full shares drawing randomness from `prg` (tests use a fixed seed).
pub fn share_with(x: &[u64], k: usize, prg: &mut Prg) -> Vec<Share> {
    let mut last = x.to_vec();
    let mut out = Vec::with_capacity(k);
    for _ in 0..k - 1 {
        let s = prg.vec(x.len());
        ring::sub_assign(&mut last, &s);
        out.push(Share(s));
    }
    out.push(Share(last));
    out
}

/// Splits `x` into `k` PRG-compressed share messages: `k - 1` fresh seeds and one explicit
/// correction for the last server.
pub fn share_compressed(x: &[u64], k: usize) -> Result<Vec<ShareMsg>> {
    let seeds = share_seeds(k)?;
    let mut last = x.to_vec();
    to_last_share(&seeds, 0, &mut last);
    let mut out: Vec<ShareMsg> = seeds
        .into_iter()
        .map(|seed| ShareMsg::Seed { seed, len: x.len() })
        .collect();
    out.push(ShareMsg::Explicit(last));
    Ok(out)
}

/// The shares of servers `0..k - 1` of a PRG-compressed sharing: `k - 1` fresh seeds from the
/// OS-seeded CSPRNG. Server `s` expands its seed (stream 0) into its words.
pub fn share_seeds(k: usize) -> Result<Vec<Seed>> {
    check_servers(k)?;
    Ok((0..k - 1).map(|_| Seed::random()).collect())
}

/// Turns words `at..at + part.len()` of the shared vector (in `part`) into the same words of the
/// last server's share, `x - sum_s PRG(seed_s)`, so that the correction can be computed a part
/// at a time (the seeds' expansions are drawn from position `at`, never held whole).
pub fn to_last_share(seeds: &[Seed], at: usize, part: &mut [u64]) {
    for seed in seeds {
        crate::mpc::prg::combine_stream(seed, 0, at as u64, part, ring::sub_assign);
    }
}

/// Adds up all shares.
pub fn reconstruct(shares: &[Share]) -> Result<Vec<u64>> {
    let len = shares.first().map_or(0, Share::len);
    if shares.iter().any(|s| s.len() != len) {
        return Err(Error::invalid("shares to reconstruct differ in length"));
    }
    Ok(ring::sum_all(len, shares.iter().map(|s| s.0.as_slice())))
}

/// Adds the public vector `c` to a shared vector: only server 0 changes its share.
pub fn add_public(share: &mut [u64], c: &[u64], me: usize) {
    if me == 0 {
        ring::add_assign(share, c);
    }
}

/// Adds the public constant `c` to every element of a shared vector (server 0 only).
pub fn add_public_scalar(share: &mut [u64], c: u64, me: usize) {
    if me == 0 {
        for v in share.iter_mut() {
            *v = v.wrapping_add(c);
        }
    }
}

/// XORs the public bit vector `c` into a boolean-shared vector (server 0 only).
pub fn xor_public(share: &mut [u64], c: &[u64], me: usize) {
    if me == 0 {
        ring::xor_assign(share, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_shares_reconstruct() {
        for k in 2..=4 {
            let x: Vec<u64> = (0..100).map(|i| i * 31 + 5).collect();
            let msgs = share_compressed(&x, k).unwrap();
            let bytes: usize = msgs.iter().map(ShareMsg::wire_bytes).sum();
            assert_eq!(bytes, 800 + 40 * (k - 1));
            let shares: Vec<Share> = msgs.into_iter().map(ShareMsg::expand).collect();
            assert_eq!(reconstruct(&shares).unwrap(), x);
            assert!(format!("{:?}", shares[0]).contains("redacted"));
        }
        assert!(share(&[1], 5).is_err());
        assert!(share(&[1], 1).is_err());
    }
}
