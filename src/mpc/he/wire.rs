//! Ciphertext residues on the wire: a residue of a prime below `2^b` travels in `b` bits (54 for
//! the coefficient products' primes, 50 for the slot products'), a row of `N` at a time.

use crate::error::Result;
use crate::mpc::bit_pack::{Packer, Unpacker};
use crate::mpc::he::rlwe::{Context, L, N};
use rayon::prelude::*;

/// Bits of a residue of the coefficient products' primes on the wire (every prime is below
/// `2^54`).
pub const RESIDUE_BITS: u32 = 54;

/// Words of `residues` residues packed in `bits` bits each.
pub fn packed_words(residues: u64, bits: u32) -> u64 {
    residues.saturating_mul(bits as u64).div_ceil(64)
}

/// Residues packed in `bits` bits each, a row of `N` (padded to a whole number of words) at a
/// time.
pub fn pack(residues: &[u64], bits: u32) -> Vec<u64> {
    let row_words = packed_words(N as u64, bits) as usize;
    let rows = residues.len().div_ceil(N);
    let mut out = vec![0u64; rows * row_words];
    out.par_chunks_mut(row_words)
        .zip(residues.par_chunks(N))
        .for_each(|(dst, src)| {
            let mut p = Packer::with_capacity(row_words);
            for &v in src {
                p.push(v, bits);
            }
            let len = p.words.len().min(dst.len());
            dst[..len].copy_from_slice(&p.words[..len]);
        });
    out
}

/// Inverse of [`pack`], for `count` residues (the words' number was checked against it).
pub fn unpack(words: &[u64], count: usize, bits: u32) -> Vec<u64> {
    let row_words = packed_words(N as u64, bits) as usize;
    let mut out = vec![0u64; count];
    out.par_chunks_mut(N)
        .zip(words.par_chunks(row_words))
        .for_each(|(dst, src)| {
            let mut u = Unpacker::new(src);
            for v in dst.iter_mut() {
                *v = u.take(bits);
            }
        });
    out
}

/// Checks that every residue of a peer's message is below its prime: after `skip` words, rows of
/// `N` residues in `bits` bits, `L` of the public key, then `L` per ciphertext (`what` names
/// them in the error, which names the peer `from`).
pub fn check_rows(
    ctx: &Context,
    message: &[u64],
    skip: usize,
    bits: u32,
    from: usize,
    what: &str,
) -> Result<()> {
    let row_words = packed_words(N as u64, bits) as usize;
    let rows = (message.len() - skip) / row_words;
    (0..rows).into_par_iter().try_for_each(|r| {
        let row = unpack(
            &message[skip + r * row_words..skip + (r + 1) * row_words],
            N,
            bits,
        );
        if row.iter().all(|&v| v < ctx.primes()[r % L]) {
            return Ok(());
        }
        let label = if r < L {
            "public key".to_string()
        } else {
            format!("{what} {}", r / L - 1)
        };
        ctx.check_row(&row, r % L, from, &label)
    })
}
