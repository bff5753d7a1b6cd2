//! What an evaluator does to a product before returning it to the key holder: re-randomise
//! it with a fresh encryption of zero under the key holder's public key (so that its `a` part
//! is a ring-LWE sample in the evaluator's fresh ternary `u`, not `sum a_k P_k`, which would
//! give the plaintexts away to whoever knows the `a`s), drop the last prime (dividing the noise
//! by it) and add a uniform flooding noise far above a proven bound on the rest (so that the
//! noise, which holds `e P`, says nothing of `P`). Per coefficient the statistical distance to
//! the flood alone is at most the bound over twice the flood; the flood's margin is
//! [`STAT_BITS`] plus the log of the number of flooded coefficients, so that a whole run is
//! within `2^-STAT_BITS`. Shared by the coefficient-packed products ([`super::product`]) and
//! the slot products ([`super::slots`]), which differ in how they encode and mask the result.

use crate::mpc::he::rlwe::{Context, ETA, L, N, Sampler};

/// Statistical security of one product run, in bits: the flooding noise's margin over its
/// bound is this plus the log of the number of flooded coefficients (every block's `N`, for up
/// to [`MAX_PEERS`] peers), so that the whole run's results are within statistical distance
/// `2^-STAT_BITS` of the flood alone. 41: a bilinear request runs two products (`C` and the
/// norms), so a request is within `2^-40` (a job with `W` workers per server makes `W`
/// requests: within `W 2^-40`).
pub const STAT_BITS: u32 = 41;

/// Peers a server evaluates for (at most four servers).
pub const MAX_PEERS: usize = 3;

/// Primes of a returned ciphertext (the last of the fresh ones is dropped).
pub const OUT_L: usize = L - 1;

/// What the evaluator does to its results before returning them (all of it, except in the
/// tests that show why each part is needed).
#[derive(Clone, Copy)]
pub struct Hardening {
    /// Add a fresh encryption of zero under the key holder's public key.
    pub rerandomize: bool,
    /// Add the flooding noise.
    pub flood: bool,
}

/// Everything.
pub const HARDENED: Hardening = Hardening {
    rerandomize: true,
    flood: true,
};

/// The bound on a returned coefficient's noise other than the flood, for a product whose
/// noise before the switch is at most `product` (the sum over the ciphertexts of `(e +
/// rounding) ||P||_1`): the public key's `u e_pk + e_1 s + e_2` (`2 N eta + eta`), divided by
/// the dropped prime, plus the drop's rounding `(1 + ||s||_1) / 2`.
pub fn noise_bound(ctx: &Context, product: f64) -> f64 {
    let n = N as f64;
    let eta = ETA as f64;
    let pk = 2.0 * n * eta + eta;
    (product + pk) / ctx.primes()[L - 1] as f64 + (1.0 + n) / 2.0
}

/// Bits of a flood for noise bounded by `bound` over `coefficients` flooded coefficients: one
/// more than the bound's log (for the floating-point estimate), plus [`STAT_BITS`], plus the
/// log of the coefficients.
pub fn flood_bits_over(bound: f64, coefficients: f64) -> u32 {
    bound.log2().ceil() as u32 + 1 + STAT_BITS + coefficients.max(1.0).log2().ceil() as u32
}

/// Log2 of the product of the returned primes.
pub fn returned_modulus_bits(ctx: &Context) -> f64 {
    ctx.primes()[..OUT_L]
        .iter()
        .map(|&p| (p as f64).log2())
        .sum()
}

/// Re-randomises a product (`2 L N` residues, `a` then `b`, in the NTT domain) with a fresh
/// encryption of zero under the public key `pk` (`a`, `b`, NTT domain), drops the last prime and
/// floods `b` with `bits` bits, all drawn from `s`: returns `a` then `b`, `2 OUT_L N` residues
/// in coefficients. The caller adds its mask's encoding to `b`.
pub fn rerandomize_drop_flood(
    ctx: &Context,
    hard: Hardening,
    bits: u32,
    s: &mut Sampler,
    (pk_a, pk_b): (&[u64], &[u64]),
    block: &mut [u64],
    out: &mut [u64],
) {
    let n = ctx.n();
    let (ca, cb) = block.split_at_mut(L * n);
    let mut u = ctx.small(L, &s.ternary(n));
    ctx.forward(&mut u);
    for l in (0..L).filter(|_| hard.rerandomize) {
        let m = ctx.modulus(l);
        let row = l * n..(l + 1) * n;
        for (((xa, xb), &uv), (&pa, &pb)) in ca[row.clone()]
            .iter_mut()
            .zip(cb[row.clone()].iter_mut())
            .zip(&u[row.clone()])
            .zip(pk_a[row.clone()].iter().zip(&pk_b[row]))
        {
            *xa = m.add(*xa, m.mul(uv, pa));
            *xb = m.add(*xb, m.mul(uv, pb));
        }
    }
    ctx.inverse(ca);
    ctx.inverse(cb);
    let e1 = ctx.small(L, &s.noise(n));
    let e2 = ctx.small(L, &s.noise(n));
    for (l, ((xa, xb), (&v1, &v2))) in ca
        .iter_mut()
        .zip(cb.iter_mut())
        .zip(e1.iter().zip(&e2))
        .enumerate()
        .filter(|_| hard.rerandomize)
    {
        let m = ctx.modulus(l / n);
        *xa = m.add(*xa, v1);
        *xb = m.add(*xb, v2);
    }
    let a2 = ctx.drop_last(L, ca);
    let mut b2 = ctx.drop_last(L, cb);
    if hard.flood {
        let flood = s.flood(ctx, OUT_L, bits);
        for (l, (x, &f)) in b2.iter_mut().zip(&flood).enumerate() {
            let m = ctx.modulus(l / n);
            *x = m.add(*x, f);
        }
    }
    out[..OUT_L * n].copy_from_slice(&a2);
    out[OUT_L * n..].copy_from_slice(&b2);
}
