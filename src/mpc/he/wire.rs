//! Ciphertext residues on the wire: a residue of a prime below `2^b` travels in `b` bits (54 for
//! the coefficient products' primes, 50 for the slot products'), a row of `N` at a time.

use crate::error::{Error, PeerName, Result};
use crate::mpc::he::rlwe::{Context, L, N};
use rayon::prelude::*;

/// Bits of a residue of the coefficient products' primes on the wire (every prime is below
/// `2^54`).
pub const RESIDUE_BITS: u32 = 54;

/// Words of `residues` residues packed in `bits` bits each.
pub fn packed_words(residues: u64, bits: u32) -> u64 {
    residues.saturating_mul(bits as u64).div_ceil(64)
}

/// The low `bits` bits of each of `src`, low bits first, into `dst` (at least
/// `packed_words(src.len(), bits)` words; the rest of the last word is zero). The same bits as a
/// `crate::mpc::bit_pack::Packer` given these widths, through a 128-bit accumulator.
pub fn pack_row(src: &[u64], bits: u32, dst: &mut [u64]) {
    assert!((1..64).contains(&bits), "residues of 1 to 63 bits");
    let mask = (1u64 << bits) - 1;
    let (mut acc, mut have, mut o) = (0u128, 0u32, 0usize);
    for &v in src {
        acc |= ((v & mask) as u128) << have;
        have += bits;
        if have >= 64 {
            dst[o] = acc as u64;
            o += 1;
            acc >>= 64;
            have -= 64;
        }
    }
    if have > 0 {
        dst[o] = acc as u64;
    }
}

/// Inverse of [`pack_row`]: `dst.len()` values of `bits` bits from `src` (at least
/// `packed_words(dst.len(), bits)` words).
pub fn unpack_row(src: &[u64], bits: u32, dst: &mut [u64]) {
    assert!((1..64).contains(&bits), "residues of 1 to 63 bits");
    let mask = (1u64 << bits) - 1;
    let (mut acc, mut have, mut i) = (0u128, 0u32, 0usize);
    for d in dst.iter_mut() {
        if have < bits {
            acc |= (src[i] as u128) << have;
            i += 1;
            have += 64;
        }
        *d = acc as u64 & mask;
        acc >>= bits;
        have -= bits;
    }
}

/// [`pack`] into `out` (its length), one row after the other on this thread.
pub fn pack_into(residues: &[u64], bits: u32, out: &mut [u64]) {
    let row_words = packed_words(N as u64, bits) as usize;
    assert_eq!(
        out.len(),
        residues.len().div_ceil(N) * row_words,
        "packed rows' length"
    );
    for (dst, src) in out.chunks_mut(row_words).zip(residues.chunks(N)) {
        pack_row(src, bits, dst);
    }
}

/// Residues packed in `bits` bits each, a row of `N` (padded to a whole number of words) at a
/// time.
pub fn pack(residues: &[u64], bits: u32) -> Vec<u64> {
    let row_words = packed_words(N as u64, bits) as usize;
    let rows = residues.len().div_ceil(N);
    let mut out = vec![0u64; rows * row_words];
    out.par_chunks_mut(row_words)
        .zip(residues.par_chunks(N))
        .for_each(|(dst, src)| pack_row(src, bits, dst));
    out
}

/// [`unpack`] into `out` (its length in residues), one row after the other on this thread.
pub fn unpack_into(words: &[u64], bits: u32, out: &mut [u64]) {
    let row_words = packed_words(N as u64, bits) as usize;
    assert!(
        words.len() >= out.len().div_ceil(N) * row_words,
        "packed rows' length"
    );
    for (dst, src) in out.chunks_mut(N).zip(words.chunks(row_words)) {
        unpack_row(src, bits, dst);
    }
}

/// Inverse of [`pack`], for `count` residues (the words' number was checked against it).
pub fn unpack(words: &[u64], count: usize, bits: u32) -> Vec<u64> {
    let row_words = packed_words(N as u64, bits) as usize;
    let mut out = vec![0u64; count];
    out.par_chunks_mut(N)
        .zip(words.par_chunks(row_words))
        .for_each(|(dst, src)| unpack_row(src, bits, dst));
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
    // The callers check the length first; a message that is not `skip` words and whole rows
    // is refused here too rather than read in part.
    let rows = match message.len().checked_sub(skip) {
        Some(body) if body.is_multiple_of(row_words) => body / row_words,
        _ => {
            return Err(Error::protocol(
                PeerName::Server(from),
                format!(
                    "{what}s: a message of {} words is not {skip} words and whole rows of {row_words}",
                    message.len()
                ),
            ));
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::bit_pack::{Packer, Unpacker};
    use crate::mpc::prg::{Prg, Seed};

    /// Rows packed by the accumulator are the generic packer's bits, and read back, for the
    /// widths the products use and others, full rows and short ones, with high bits set above
    /// the width (cut off).
    #[test]
    fn packed_rows_are_the_packers_bits_and_read_back() {
        let mut prg = Prg::new(&Seed([5; 32]), 0);
        for bits in [1u32, 7, 47, 50, 54, 63] {
            for len in [0usize, 1, 3, 64, 65, 1000, N] {
                let vals: Vec<u64> = (0..len).map(|_| prg.next_u64()).collect();
                let words = packed_words(len as u64, bits) as usize;
                let mut p = Packer::with_capacity(words);
                for &v in &vals {
                    p.push(v, bits);
                }
                let mut got = vec![u64::MAX; words];
                pack_row(&vals, bits, &mut got);
                assert_eq!(got, p.words, "bits {bits}, len {len}");
                let mut back = vec![0u64; len];
                unpack_row(&got, bits, &mut back);
                let mut u = Unpacker::new(&got);
                for (i, &v) in back.iter().enumerate() {
                    assert_eq!(v, vals[i] & ((1u64 << bits) - 1), "bits {bits}, len {len}");
                    assert_eq!(u.take(bits), v);
                }
            }
        }
        // Whole polynomials, in parallel and on one thread alike.
        let vals: Vec<u64> = (0..3 * N).map(|_| prg.next_u64() >> 14).collect();
        let packed = pack(&vals, 50);
        let mut one = vec![0u64; packed.len()];
        pack_into(&vals, 50, &mut one);
        assert_eq!(one, packed);
        assert_eq!(unpack(&packed, vals.len(), 50), vals);
        let mut back = vec![0u64; vals.len()];
        unpack_into(&packed, 50, &mut back);
        assert_eq!(back, vals);
    }
}
