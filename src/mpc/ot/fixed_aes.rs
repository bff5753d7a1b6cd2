//! Fixed-key AES-128 over many blocks at once: the permutation behind the GGM trees, the
//! LPN code and the correlation-robust hash of the OT extensions.
//!
//! Every key here is public (the first 16 bytes of a SHA-256 of a name: nothing up the
//! sleeve), and the blocks are what is secret: tree seeds, OT rows. AES is used as a fixed
//! permutation `π`, so what matters is throughput over long runs of independent blocks, and
//! the `aes` crate's AES-NI code, eight blocks in flight, leaves most of a modern core's AES
//! units idle. Where the CPU has **VAES**, one instruction runs a round on two (256-bit
//! registers) or four (512-bit, with AVX-512F) blocks, and eight registers in flight keep the
//! units busy: 0.8 - 0.9 ns a block against 1.6 - 2.3 ns on the 2-core AMD EPYC of
//! `docs/benchmarks.md`. The round keys are expanded once, by FIPS 197's key schedule in
//! portable code (the keys are public, so nothing hangs on its timing); every
//! path gives the `aes` crate's output bit for bit (tests), which stays the fallback on other
//! CPUs and architectures. All paths are constant-time in the data, as AES-NI is.

use aes::Aes128;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};

/// One AES block (16 bytes).
pub type Block = aes::Block;

/// How a [`FixedAes`] encrypts: chosen once from the CPU's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The `aes` crate (AES-NI where the CPU has it, else its constant-time software).
    Crate,
    /// VAES on 256-bit registers (two blocks per instruction).
    Vaes256,
    /// VAES on 512-bit registers (four blocks per instruction).
    Vaes512,
}

impl Backend {
    /// The fastest backend this CPU runs.
    pub fn best() -> Backend {
        Backend::available()
            .into_iter()
            .last()
            .unwrap_or(Backend::Crate)
    }

    /// Every backend this CPU runs, slowest first ([`Backend::Crate`] always).
    pub fn available() -> Vec<Backend> {
        let mut out = vec![Backend::Crate];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("aes") && has!("avx2") && has!("vaes") && crate::mpc::cpu::wide() {
                out.push(Backend::Vaes256);
                if has!("avx512f") {
                    out.push(Backend::Vaes512);
                }
            }
        }
        out
    }
}

/// AES-128 under one public key, as a permutation of many blocks. `Debug` names the backend
/// only (the key is public, but there is nothing to read in it).
pub struct FixedAes {
    cipher: Aes128,
    /// The expanded key, 11 round keys (for the VAES paths).
    round_keys: [[u8; 16]; 11],
    backend: Backend,
}

impl std::fmt::Debug for FixedAes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FixedAes({:?})", self.backend)
    }
}

impl FixedAes {
    /// AES-128 under `key`, on the fastest backend of this CPU.
    pub fn new(key: [u8; 16]) -> FixedAes {
        FixedAes::with_backend(key, Backend::best())
    }

    /// AES-128 under the key named `name` (the first 16 bytes of its SHA-256).
    pub fn public(name: &str) -> FixedAes {
        let digest = crate::mpc::digest::sha256(name, &[]);
        FixedAes::new(digest[..16].try_into().expect("16 bytes"))
    }

    /// AES-128 under `key` on `backend`, which must be one of [`Backend::available`].
    pub fn with_backend(key: [u8; 16], backend: Backend) -> FixedAes {
        assert!(
            Backend::available().contains(&backend),
            "{backend:?} is not available on this CPU"
        );
        FixedAes {
            cipher: Aes128::new(GenericArray::from_slice(&key)),
            round_keys: expand_key(key),
            backend,
        }
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Encrypts every block in place.
    pub fn encrypt_blocks(&self, blocks: &mut [Block]) {
        match self.backend {
            Backend::Crate => self.cipher.encrypt_blocks(blocks),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the backend is one of `Backend::available()` (checked when made), so the
            // CPU has the features the function is compiled for.
            Backend::Vaes256 => unsafe { vaes::encrypt256(&self.round_keys, blocks) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Backend::Vaes512 => unsafe { vaes::encrypt512(&self.round_keys, blocks) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("VAES backends are x86-64 only"),
        }
    }

    /// Encrypts one block in place.
    pub fn encrypt_block(&self, block: &mut Block) {
        self.cipher.encrypt_block(block)
    }
}

/// FIPS 197's key expansion of AES-128 (portable: the keys are public and expanded once).
fn expand_key(key: [u8; 16]) -> [[u8; 16]; 11] {
    const SBOX: [u8; 256] = sbox();
    const RCON: [u8; 10] = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1b, 0x36];
    let mut rk = [[0u8; 16]; 11];
    rk[0] = key;
    for r in 1..11 {
        let prev = rk[r - 1];
        let mut t = [prev[13], prev[14], prev[15], prev[12]].map(|b| SBOX[b as usize]);
        t[0] ^= RCON[r - 1];
        for w in 0..4 {
            for i in 0..4 {
                let v = prev[4 * w + i] ^ t[i];
                rk[r][4 * w + i] = v;
                t[i] = v;
            }
        }
    }
    rk
}

/// The AES S-box, computed (inverse in GF(2^8) then the affine map) rather than typed in.
const fn sbox() -> [u8; 256] {
    const fn mul(mut a: u8, mut b: u8) -> u8 {
        let mut p = 0u8;
        while b != 0 {
            if b & 1 != 0 {
                p ^= a;
            }
            let hi = a & 0x80;
            a <<= 1;
            if hi != 0 {
                a ^= 0x1b;
            }
            b >>= 1;
        }
        p
    }
    let mut s = [0u8; 256];
    let mut x = 0usize;
    while x < 256 {
        // x^254 = x^-1 (0 for 0).
        let mut inv = 1u8;
        let mut e = 0;
        while e < 254 {
            inv = mul(inv, x as u8);
            e += 1;
        }
        let b = if x == 0 { 0 } else { inv };
        s[x] = b ^ b.rotate_left(1) ^ b.rotate_left(2) ^ b.rotate_left(3) ^ b.rotate_left(4) ^ 0x63;
        x += 1;
    }
    s
}

#[cfg(target_arch = "x86_64")]
mod vaes {
    use super::Block;
    use std::arch::x86_64::*;

    /// Registers in flight per loop.
    const LANES: usize = 8;

    /// One block with AES-NI (the tail of a run).
    #[target_feature(enable = "aes,sse2")]
    unsafe fn one(rk: &[__m128i; 11], p: *mut __m128i) {
        // SAFETY: `p` points at 16 readable and writable bytes (the caller's block).
        unsafe {
            let mut x = _mm_xor_si128(_mm_loadu_si128(p), rk[0]);
            for k in &rk[1..10] {
                x = _mm_aesenc_si128(x, *k);
            }
            _mm_storeu_si128(p, _mm_aesenclast_si128(x, rk[10]));
        }
    }

    #[target_feature(enable = "sse2")]
    unsafe fn keys128(round_keys: &[[u8; 16]; 11]) -> [__m128i; 11] {
        // SAFETY: each round key is 16 readable bytes.
        std::array::from_fn(|i| unsafe {
            _mm_loadu_si128(round_keys[i].as_ptr() as *const __m128i)
        })
    }

    /// Defines an encryption of many blocks with VAES on one register width: `LANES`
    /// registers of `$per` blocks in flight, each round key broadcast to every block of a
    /// register, the tail (fewer than a chunk) a block at a time.
    ///
    /// SAFETY (of the code it makes): `Block` is 16 bytes without padding (`GenericArray<u8,
    /// U16>` is transparent over `[u8; 16]`), so the `LANES` registers of `$per` blocks cover
    /// exactly one chunk of `$per LANES` blocks; loads and stores are unaligned.
    macro_rules! vaes_blocks {
        ($(#[$doc:meta])* $name:ident, $features:literal, $reg:ty, $per:literal,
         $broadcast:ident, $load:ident, $store:ident, $xor:ident, $enc:ident, $last:ident) => {
            $(#[$doc])*
            #[target_feature(enable = $features)]
            pub unsafe fn $name(round_keys: &[[u8; 16]; 11], blocks: &mut [Block]) {
                // SAFETY: see the macro's docs.
                unsafe {
                    let rk = keys128(round_keys);
                    let k: [$reg; 11] = std::array::from_fn(|i| $broadcast(rk[i]));
                    let mut chunks = blocks.chunks_exact_mut($per * LANES);
                    for c in &mut chunks {
                        let p = c.as_mut_ptr() as *mut $reg;
                        let mut x: [$reg; LANES] =
                            std::array::from_fn(|j| $xor($load(p.add(j) as *const _), k[0]));
                        for key in &k[1..10] {
                            for v in x.iter_mut() {
                                *v = $enc(*v, *key);
                            }
                        }
                        for (j, v) in x.iter().enumerate() {
                            $store(p.add(j) as *mut _, $last(*v, k[10]));
                        }
                    }
                    for b in chunks.into_remainder() {
                        one(&rk, b.as_mut_ptr() as *mut __m128i);
                    }
                }
            }
        };
    }

    vaes_blocks!(
        /// [`super::FixedAes::encrypt_blocks`] with VAES on 256-bit registers.
        ///
        /// # Safety
        /// The CPU must have AES, AVX2 and VAES.
        encrypt256, "aes,avx2,vaes", __m256i, 2, _mm256_broadcastsi128_si256,
        _mm256_loadu_si256, _mm256_storeu_si256, _mm256_xor_si256, _mm256_aesenc_epi128,
        _mm256_aesenclast_epi128
    );

    vaes_blocks!(
        /// [`super::FixedAes::encrypt_blocks`] with VAES on 512-bit registers.
        ///
        /// # Safety
        /// The CPU must have AES, AVX-512F and VAES.
        encrypt512, "aes,avx512f,vaes", __m512i, 4, _mm512_broadcast_i32x4,
        _mm512_loadu_si512, _mm512_storeu_si512, _mm512_xor_si512, _mm512_aesenc_epi128,
        _mm512_aesenclast_epi128
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::prg::{Prg, Seed};

    fn random16(prg: &mut Prg) -> [u8; 16] {
        let w = [prg.next_u64(), prg.next_u64()];
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&w[0].to_le_bytes());
        b[8..].copy_from_slice(&w[1].to_le_bytes());
        b
    }

    #[test]
    fn the_key_schedule_is_fips_197s() {
        // FIPS 197, appendix A.1: the last round key of 2b7e1516 28aed2a6 abf71588 09cf4f3c.
        let key = [
            0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf,
            0x4f, 0x3c,
        ];
        let rk = expand_key(key);
        assert_eq!(
            rk[10],
            [
                0xd0, 0x14, 0xf9, 0xa8, 0xc9, 0xee, 0x25, 0x89, 0xe1, 0x3f, 0x0c, 0xc8, 0xb6, 0x63,
                0x0c, 0xa6
            ]
        );
    }

    #[test]
    fn every_backend_encrypts_as_the_aes_crate() {
        let mut prg = Prg::new(&Seed([5; 32]), 0);
        let backends = Backend::available();
        assert_eq!(backends[0], Backend::Crate);
        for _ in 0..4 {
            let key = random16(&mut prg);
            let reference = Aes128::new(GenericArray::from_slice(&key));
            for len in [0, 1, 7, 15, 16, 17, 31, 32, 33, 63, 100, 1000] {
                let blocks: Vec<Block> = (0..len)
                    .map(|_| *GenericArray::from_slice(&random16(&mut prg)))
                    .collect();
                let mut want = blocks.clone();
                reference.encrypt_blocks(&mut want);
                for &b in &backends {
                    let mut got = blocks.clone();
                    FixedAes::with_backend(key, b).encrypt_blocks(&mut got);
                    assert_eq!(got, want, "{b:?}, {len} blocks");
                }
                if let Some(first) = blocks.first() {
                    let mut one = *first;
                    FixedAes::new(key).encrypt_block(&mut one);
                    assert_eq!(one, want[0]);
                }
            }
        }
    }

    #[test]
    fn the_fips_197_example_encrypts_right() {
        // FIPS 197, appendix C.1.
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let plain: [u8; 16] = std::array::from_fn(|i| (i as u8) * 0x11);
        let want = [
            0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4,
            0xc5, 0x5a,
        ];
        for b in Backend::available() {
            let mut blocks = vec![*GenericArray::from_slice(&plain); 40];
            FixedAes::with_backend(key, b).encrypt_blocks(&mut blocks);
            assert!(blocks.iter().all(|x| x.as_slice() == want), "{b:?}");
        }
    }
}
