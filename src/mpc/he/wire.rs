//! Ciphertext residues on the wire: every prime is below `2^54`, so a residue travels in 54
//! bits, a row of `N` (a whole number of words) at a time.

use crate::mpc::bit_pack::{Packer, Unpacker};
use crate::mpc::he::rlwe::N;
use rayon::prelude::*;

/// Bits of a residue on the wire (every prime is below `2^54`).
pub const RESIDUE_BITS: u32 = 54;

/// Words of `residues` residues packed in [`RESIDUE_BITS`] bits each.
pub fn packed_words(residues: u64) -> u64 {
    residues.saturating_mul(RESIDUE_BITS as u64).div_ceil(64)
}

/// Residues packed in [`RESIDUE_BITS`] bits each, a row of `N` (a whole number of words) at a
/// time.
pub fn pack(residues: &[u64]) -> Vec<u64> {
    let row_words = packed_words(N as u64) as usize;
    let mut out = vec![0u64; packed_words(residues.len() as u64) as usize];
    out.par_chunks_mut(row_words)
        .zip(residues.par_chunks(N))
        .for_each(|(dst, src)| {
            let mut p = Packer::with_capacity(row_words);
            for &v in src {
                p.push(v, RESIDUE_BITS);
            }
            dst.copy_from_slice(&p.words[..dst.len()]);
        });
    out
}

/// Inverse of [`pack`], for `count` residues (the words' number was checked against it).
pub fn unpack(words: &[u64], count: usize) -> Vec<u64> {
    let row_words = packed_words(N as u64) as usize;
    let mut out = vec![0u64; count];
    out.par_chunks_mut(N)
        .zip(words.par_chunks(row_words))
        .for_each(|(dst, src)| {
            let mut u = Unpacker::new(src);
            for v in dst.iter_mut() {
                *v = u.take(RESIDUE_BITS);
            }
        });
    out
}
