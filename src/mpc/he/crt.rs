//! Shares modulo `2^64` of `sum over servers s != t of <Z^t_p, Z^s_q>` for rows of 64-bit shares
//! and a list of pairs, from [`super::slots`] runs modulo the primes [`CRT_PRIMES`] combined by
//! the Chinese remainder theorem (five runs, or three or four and a lift with two servers): the
//! products follow the pairs, and the result is a drop-in for the coefficient-packed products
//! ([`super::product`]) of the bilinear form.
//!
//! **Why integers.** The slot products give shares modulo a prime `t` below `2^47`; the bilinear
//! form needs them modulo `2^64`, and no prime's residue says anything about a value modulo
//! `2^64`. But the cross term of one encryptor `s` and one evaluator `t`,
//! `v = sum_k Z^t[p, k] Z^s[q, k]`, taken over the integers (each share below `2^64`), is below
//! `d 2^128 <= 2^139` ([`MAX_D`] values). If the evaluator adds the same **integer** mask `R`,
//! uniform below `2^232` ([`super::slots::INTEGER_MASK_BITS`]), in every run
//! ([`Masking::Integer`]: `R` comes from a seed of its own, [`integer_mask`]), the encryptor
//! decrypts `v + R mod t_i` in run `i` and sums what its (at most three) peers returned: the
//! integer `sum (v + R)` is below `3 (2^139 + 2^232) < M = t_0 t_1 t_2 t_3 t_4` (above
//! `2^234.99`), so the five residues determine it (Garner's mixed radix, [`combine`]), and its
//! low word is the encryptor's share modulo `2^64`. The evaluator's share is `-R mod 2^64`,
//! the low word of its masks negated.
//!
//! **What the encryptor learns** (three or four servers). Each run's decrypted slots are
//! `v + R mod t_i`, the noise being flooded as in every slot run ([`super::harden`]); together
//! they give the integer `v + R`,
//! whose distance from `R` alone is at most `v / 2^232 <= 2^-93` per value (a uniform variable
//! shifted by `v`), `2^-61` over `2^32` slots. The evaluator sees only ciphertexts. (Four primes
//! would leave room for masks of `2^186` only: `2^-47` per value, some `2^-25` over a large
//! job's slots, below the flooding's `2^-41` for a whole run; a review's finding.)
//!
//! **Two servers: fewer runs and one AND** ([`runs`], [`CrtShares::lift`]). With two servers the
//! sum `V = <Z^0_p, Z^1_q> + <Z^1_p, Z^0_q>` (both orders) is below `2^b`, `b = 129 + ceil(log2
//! d)` ([`lift_bits`]). Each evaluator masks with an integer `R` uniform below `M`, the product
//! of the fewest primes with `M >= 2^(b + 1)` (three for rows up to 1,024 values, four up to
//! [`MAX_D`]: [`runs`]). Server `s` then holds `U_s`, its combined integer less its
//! own masks modulo `M`, and `U_0 + U_1 = V + w M` with `w` 0 or 1. Both `U_s` are uniform
//! modulo `M` (each is masked by the other server's `R`), so nothing is statistical here, and
//! `w` is read off two bits each server computes alone, `c_s = [U_s < 2^b]`:
//!
//! * `w = 0`: `U_0 + U_1 = V < 2^b`, so both are below `2^b`;
//! * `w = 1`: `U_0 + U_1 >= M >= 2^(b + 1)`, so not both are.
//!
//! So `w = 1 - c_0 c_1`, and `V = U_0 + U_1 - M + M c_0 c_1` modulo `2^64`: server 0 subtracts
//! `M`, and the product `c_0 c_1 (M mod 2^64)` takes one correlated OT per item (the caller's:
//! [`crate::mpc::ot::source`]), where each run saved is one run's work and traffic.
//!
//! **Cost.** Five (or three or four) slot runs, one after the other (each run's ciphertexts and
//! results are freed before the next): that many times one run's work and traffic, the memory
//! of one plus the residues kept between runs.

use crate::error::{Error, Result};
use crate::mpc::he::modulus::Modulus;
use crate::mpc::he::slots::{
    CRT_PRIMES, Codec, INTEGER_MASK_BITS, MASK_WORDS, MAX_D, Masking, SlotPlan, SlotProducts,
    integer_mask,
};
use crate::mpc::prg::Seed;
use crate::mpc::protocol::{Protocol, Step};
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};

/// Garner's constants for [`CRT_PRIMES`]: each prime's modulus and `inv[i][j] = t_i^-1 mod t_j`.
struct Garner {
    m: [Modulus; P],
    inv: [[u64; P]; P],
}

/// The number of runs (primes).
const P: usize = CRT_PRIMES.len();

impl Garner {
    fn get() -> &'static Garner {
        static G: OnceLock<Garner> = OnceLock::new();
        G.get_or_init(|| {
            let m = CRT_PRIMES.map(Modulus::new);
            let mut inv = [[0u64; P]; P];
            for (i, row) in inv.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    if i != j {
                        *v = pow(&m[j], m[j].reduce(CRT_PRIMES[i]), CRT_PRIMES[j] - 2);
                    }
                }
            }
            Garner { m, inv }
        })
    }
}

fn pow(m: &Modulus, mut b: u64, mut e: u64) -> u64 {
    let mut acc = 1;
    while e > 0 {
        if e & 1 == 1 {
            acc = m.mul(acc, b);
        }
        b = m.mul(b, b);
        e >>= 1;
    }
    acc
}

/// The integer below the product of the first `r.len()` of [`CRT_PRIMES`] whose residues are
/// `r` (`r[i]` modulo `CRT_PRIMES[i]`), as [`MASK_WORDS`] words, least significant first:
/// Garner's mixed radix `x = v_0 + t_0 (v_1 + t_1 (v_2 + ...))`, `v_j` from `r_j` and the `v`
/// before it.
pub fn combine(r: &[u64]) -> [u64; MASK_WORDS] {
    let g = Garner::get();
    let p = r.len();
    assert!((1..=P).contains(&p), "residues of 1 to {P} primes");
    let mut v = [0u64; P];
    for j in 0..p {
        let m = &g.m[j];
        let mut x = m.reduce(r[j]);
        for (i, &vi) in v[..j].iter().enumerate() {
            x = m.mul(m.sub(x, m.reduce(vi)), g.inv[i][j]);
        }
        v[j] = x;
    }
    // Horner from the top digit (the value is below 2^235).
    let mut acc = [0u64; MASK_WORDS];
    acc[0] = v[p - 1];
    for j in (0..p - 1).rev() {
        let mut carry = v[j] as u128;
        for w in acc.iter_mut() {
            let cur = *w as u128 * CRT_PRIMES[j] as u128 + carry;
            *w = cur as u64;
            carry = cur >> 64;
        }
        debug_assert_eq!(carry, 0);
    }
    acc
}

/// With two servers, the bits below which the sum of both cross terms of rows of `d` values
/// lies: `d (2^64 - 1)^2` twice is below `2^(129 + ceil(log2 d))`.
pub fn lift_bits(d: usize) -> u32 {
    129 + d.max(1).next_power_of_two().trailing_zeros()
}

/// The product of the first `p` of [`CRT_PRIMES`], as words.
fn product(p: usize) -> [u64; MASK_WORDS] {
    let mut m = [1u64, 0, 0, 0];
    for &t in &CRT_PRIMES[..p] {
        let mut carry = 0u128;
        for w in m.iter_mut() {
            let cur = *w as u128 * t as u128 + carry;
            *w = cur as u64;
            carry = cur >> 64;
        }
        debug_assert_eq!(carry, 0);
    }
    m
}

/// `2^bits` as words (`bits` below 256).
fn power(bits: u32) -> [u64; MASK_WORDS] {
    let mut x = [0u64; MASK_WORDS];
    x[bits as usize / 64] = 1 << (bits % 64);
    x
}

/// `a < b` for integers in words, least significant first.
fn below(a: &[u64; MASK_WORDS], b: &[u64; MASK_WORDS]) -> bool {
    a.iter().rev().cmp(b.iter().rev()).is_lt()
}

/// `a - b` modulo `2^256`.
fn sub_words(a: &[u64; MASK_WORDS], b: &[u64; MASK_WORDS]) -> [u64; MASK_WORDS] {
    let mut out = [0u64; MASK_WORDS];
    let mut borrow = false;
    for w in 0..MASK_WORDS {
        let (x, b1) = a[w].overflowing_sub(b[w]);
        let (x, b2) = x.overflowing_sub(borrow as u64);
        out[w] = x;
        borrow = b1 || b2;
    }
    out
}

/// `a + b` modulo `2^256`.
fn add_words(a: &[u64; MASK_WORDS], b: &[u64; MASK_WORDS]) -> [u64; MASK_WORDS] {
    let mut out = [0u64; MASK_WORDS];
    let mut carry = 0u128;
    for w in 0..MASK_WORDS {
        let cur = a[w] as u128 + b[w] as u128 + carry;
        out[w] = cur as u64;
        carry = cur >> 64;
    }
    out
}

/// The runs (primes) of the products for `k` servers over rows of `d` values: with two, the
/// fewest whose product is at least `2^(lift_bits(d) + 1)` (module docs); with more, all five.
pub fn runs(k: usize, d: usize) -> usize {
    if k != 2 {
        return P;
    }
    let need = power(lift_bits(d) + 1);
    let p = (1..=P).find(|&p| !below(&product(p), &need));
    debug_assert!(p.is_some(), "rows of {d} values are beyond five primes");
    p.unwrap_or(P)
}

/// The lift of [`CrtProducts`]' two-server output: the item's value modulo `2^64` is the sum of
/// both servers' words plus `m c_0 c_1`, with `c_s` server `s`'s bit in `small`.
pub struct Lift {
    /// Per item, `[U_s < 2^b]` (bit `x % 64` of word `x / 64`).
    pub small: Vec<u64>,
    /// The primes' product modulo `2^64`.
    pub m: u64,
}

/// What [`CrtProducts`] gives a server: per item its share modulo `2^64`, or with two servers
/// the low word of its share modulo the primes' product (server 0's less that product) and the
/// bit that lifts it.
pub struct CrtShares {
    /// Per item, in the plan's order.
    pub words: Vec<u64>,
    /// With two servers.
    pub lift: Option<Lift>,
}

/// The protocol: for every item `(q, p)` of the plan, in its order, this server's share modulo
/// `2^64` of `sum over servers s != t of <Z^t_p, Z^s_q>` (each server adds its own
/// `<Z^s_p, Z^s_q>`), from `Z`'s shares modulo `2^64`, or with two servers the shares before
/// their lift ([`CrtShares`]). Two rounds per run.
pub struct CrtProducts {
    me: usize,
    k: usize,
    plan: Arc<SlotPlan>,
    z: Vec<u64>,
    seed: Seed,
    /// The runs, and the bound of the evaluator's integer masks.
    runs: usize,
    mask_below: [u64; MASK_WORDS],
    /// The run in progress and the outputs of those before it.
    current: Option<SlotProducts>,
    residues: Vec<Vec<u64>>,
}

impl std::fmt::Debug for CrtProducts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrtProducts")
            .field("me", &self.me)
            .field("k", &self.k)
            .field("run", &self.residues.len())
            .finish_non_exhaustive()
    }
}

impl CrtProducts {
    /// Server `me` of `k`, with its share `z` of `Z` (`rows x d`, row-major, modulo `2^64`).
    pub fn new(me: usize, k: usize, plan: Arc<SlotPlan>, z: Vec<u64>) -> Result<CrtProducts> {
        if plan.d > MAX_D {
            return Err(Error::invalid(format!(
                "slot products take rows of at most {MAX_D} values"
            )));
        }
        if z.len() != plan.rows * plan.d {
            return Err(Error::invalid(
                "slot products: the share's size does not match the plan",
            ));
        }
        let runs = runs(k, plan.d);
        let mask_below = if k == 2 {
            product(runs)
        } else {
            power(INTEGER_MASK_BITS)
        };
        Ok(CrtProducts {
            me,
            k,
            plan,
            z,
            seed: Seed::random(),
            runs,
            mask_below,
            current: None,
            residues: Vec::with_capacity(runs),
        })
    }

    /// Starts run `i`: this server's shares reduced modulo its prime.
    fn start_run(self, i: usize) -> Result<Step<Self>> {
        // Progress for the operator (sizes of the servers' own plan, no values).
        tracing::info!(
            run = i + 1,
            of = self.runs,
            blocks = self.plan.blocks(),
            plaintexts = self.plan.plaintexts(),
            "slot products modulo 2^64: run"
        );
        let t = CRT_PRIMES[i];
        let zt: Vec<u64> = self.z.par_iter().map(|&v| v % t).collect();
        let run = SlotProducts::with(
            self.me,
            self.k,
            self.plan.clone(),
            zt,
            Codec::crt(i),
            Masking::Integer(self.seed.clone(), self.mask_below),
        )?;
        let step = run.start()?;
        self.lift(step)
    }

    /// Takes a step of the current run to a step of the whole: the next run starts when one
    /// ends, and the last one's residues are combined.
    fn lift(mut self, step: Step<SlotProducts>) -> Result<Step<Self>> {
        match step {
            Step::Send(run, m) => {
                self.current = Some(run);
                Ok(Step::Send(self, m))
            }
            Step::SendEach(run, m, expected) => {
                self.current = Some(run);
                Ok(Step::SendEach(self, m, expected))
            }
            Step::Done(out) => {
                self.residues.push(out);
                if self.residues.len() < self.runs {
                    let i = self.residues.len();
                    self.start_run(i)
                } else {
                    Ok(Step::Done(self.finish()))
                }
            }
        }
    }

    /// Each item's combined integer, less this server's masks (the integers it added for each
    /// peer), modulo `2^64`; with two servers modulo the primes' product `M`, as its low word
    /// (server 0's less `M`) and the bit that lifts it (module docs).
    fn finish(self) -> CrtShares {
        use crate::mpc::he::rlwe::N;
        let plan = &self.plan;
        let r = &self.residues;
        let combined = |x: usize| {
            let mut at = [0u64; P];
            for (a, run) in at.iter_mut().zip(r) {
                *a = run[x];
            }
            combine(&at[..r.len()])
        };
        let draw = |b: usize, from: usize| integer_mask(&self.seed, from, b, &self.mask_below);
        if self.k != 2 {
            // Only the low words matter modulo 2^64.
            let mut masks = vec![0u64; plan.blocks() * N];
            masks.par_chunks_mut(N).enumerate().for_each(|(b, out)| {
                for from in (0..self.k).filter(|&s| s != self.me) {
                    for (o, w) in out.iter_mut().zip(draw(b, from)) {
                        *o = o.wrapping_add(w[0]);
                    }
                }
            });
            let masks = plan.gather(&masks);
            let words = (0..plan.len())
                .into_par_iter()
                .map(|x| combined(x)[0].wrapping_sub(masks[x]))
                .collect();
            return CrtShares { words, lift: None };
        }
        // Two servers: one peer's masks, whole. U = combined - R modulo M (both below M); its
        // low word (server 0's less M) and its bit, 64 items at a time.
        let mut masks = vec![[0u64; MASK_WORDS]; plan.blocks() * N];
        let peer = 1 - self.me;
        masks
            .par_chunks_mut(N)
            .enumerate()
            .for_each(|(b, out)| out.copy_from_slice(&draw(b, peer)));
        let masks = plan.gather(&masks);
        let m = self.mask_below;
        let (small_below, less) = (
            power(lift_bits(plan.d)),
            if self.me == 0 { m[0] } else { 0 },
        );
        let mut words = vec![0u64; plan.len()];
        let mut small = vec![0u64; plan.len().div_ceil(64)];
        words
            .par_chunks_mut(64)
            .zip(small.par_iter_mut())
            .enumerate()
            .for_each(|(c, (ws, bits))| {
                for (j, w) in ws.iter_mut().enumerate() {
                    let x = 64 * c + j;
                    let (c, r) = (combined(x), &masks[x]);
                    let u = sub_words(&c, r);
                    let u = if below(&c, r) { add_words(&u, &m) } else { u };
                    *w = u[0].wrapping_sub(less);
                    *bits |= (below(&u, &small_below) as u64) << j;
                }
            });
        CrtShares {
            words,
            lift: Some(Lift { small, m: m[0] }),
        }
    }
}

impl Protocol for CrtProducts {
    type Output = CrtShares;

    fn start(self) -> Result<Step<Self>> {
        if self.current.is_some() || !self.residues.is_empty() {
            return Err(Error::invalid("CRT slot products started twice"));
        }
        self.start_run(0)
    }

    fn receive(mut self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        let Some(run) = self.current.take() else {
            return Err(Error::invalid(
                "CRT slot products: a round arrived out of order",
            ));
        };
        let step = run.receive(incoming)?;
        self.lift(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::he::orient::orient;
    use crate::mpc::prg::Prg;
    use crate::mpc::protocol::run_lockstep;

    /// `x mod t` for an integer of [`MASK_WORDS`] words.
    fn residue(x: [u64; MASK_WORDS], t: u64) -> u64 {
        let m = Modulus::new(t);
        x.iter().rev().fold(0, |acc, &w| {
            m.reduce_wide(((acc as u128) << 64) | w as u128)
        })
    }

    fn residues(x: [u64; MASK_WORDS]) -> [u64; P] {
        CRT_PRIMES.map(|t| residue(x, t))
    }

    #[test]
    fn the_primes_product_holds_three_peers_masks_and_values() {
        // M = prod t_i, in four words; 3 (2^232 + 2^139) must be below it.
        let mut m = [1u64, 0, 0, 0];
        for &t in &CRT_PRIMES {
            let mut carry = 0u128;
            for w in m.iter_mut() {
                let cur = *w as u128 * t as u128 + carry;
                *w = cur as u64;
                carry = cur >> 64;
            }
            assert_eq!(carry, 0);
        }
        // 3 (2^INTEGER_MASK_BITS + 2^139), in four words.
        let bits = crate::mpc::he::slots::INTEGER_MASK_BITS as usize;
        let mut bound = [0u64; MASK_WORDS];
        for b in [bits, bits + 1, 139, 140] {
            bound[b / 64] |= 1 << (b % 64);
        }
        assert!(m.iter().rev().cmp(bound.iter().rev()).is_gt(), "{m:x?}");
        // Distinct primes, each 1 mod 2N and below 2^47.
        for (i, &t) in CRT_PRIMES.iter().enumerate() {
            assert!(t < 1 << 47 && t % (2 * crate::mpc::he::rlwe::N as u64) == 1);
            assert!(CRT_PRIMES[..i].iter().all(|&u| u != t));
        }
    }

    #[test]
    fn combine_inverts_the_residues_up_to_the_bound() {
        let mut prg = Prg::new(&Seed([3; 32]), 0);
        let top = (1u64 << 41) | (1 << 40);
        for case in 0..2000 {
            let x = match case {
                0 => [0, 0, 0, 0],
                1 => [u64::MAX, u64::MAX, u64::MAX, top - 1],
                _ => [
                    prg.next_u64(),
                    prg.next_u64(),
                    prg.next_u64(),
                    prg.next_u64() % top,
                ],
            };
            assert_eq!(combine(&residues(x)), x, "{x:x?}");
        }
        // The first three and four primes (two servers' runs): integers below their product.
        for p in [3, 4] {
            let m = product(p);
            for case in 0..500 {
                let x = if case == 0 {
                    sub_words(&m, &[1, 0, 0, 0])
                } else {
                    let top = m.iter().rposition(|&w| w != 0).unwrap();
                    let mut x = [0u64; MASK_WORDS];
                    for w in x.iter_mut().take(top) {
                        *w = prg.next_u64();
                    }
                    x[top] = prg.next_u64() % m[top];
                    x
                };
                assert_eq!(combine(&residues(x)[..p]), x, "{p} primes, {x:x?}");
            }
        }
    }

    /// Runs the protocol for `k` servers on 64-bit shares and checks every item against the
    /// plaintext `<Z_p, Z_q>` modulo `2^64`.
    fn check(k: usize, rows: usize, d: usize, items: &[(u32, u32)], z: &[u64], seed: u8) {
        let mut prg = Prg::new(&Seed([seed; 32]), 1);
        let mut shares: Vec<Vec<u64>> = (1..k).map(|_| prg.vec(rows * d)).collect();
        let last: Vec<u64> = (0..rows * d)
            .map(|x| {
                shares
                    .iter()
                    .fold(z[x], |acc, s: &Vec<u64>| acc.wrapping_sub(s[x]))
            })
            .collect();
        shares.push(last);
        check_shares(d, items, z, &shares);
    }

    /// Item `x`'s lift in plaintext, `M c_0 c_1` modulo `2^64` (what the caller's correlated OT
    /// shares), or zero without one.
    fn lifted(outs: &[CrtShares], x: usize) -> u64 {
        let bit = |o: &CrtShares| {
            let l = o.lift.as_ref().expect("two servers lift");
            l.small[x / 64] >> (x % 64) & 1
        };
        match outs {
            [a, b] => {
                let m = a.lift.as_ref().unwrap().m;
                assert_eq!(m, b.lift.as_ref().unwrap().m);
                m.wrapping_mul(bit(a) & bit(b))
            }
            _ => 0,
        }
    }

    /// Runs the protocol on the servers' `shares` of `z` (rows of `d`) and checks every item
    /// against the plaintext `<Z_p, Z_q>` modulo `2^64`.
    fn check_shares(d: usize, items: &[(u32, u32)], z: &[u64], shares: &[Vec<u64>]) {
        let k = shares.len();
        let plan = Arc::new(SlotPlan::new(z.len() / d, d, items).unwrap());
        let parties = (0..k)
            .map(|s| CrtProducts::new(s, k, plan.clone(), shares[s].clone()).unwrap())
            .collect();
        let (outs, rounds) = run_lockstep(parties).unwrap();
        assert_eq!(rounds, 2 * runs(k, d));
        assert_eq!(outs.iter().all(|o| o.lift.is_some()), k == 2);
        let dot = crate::mpc::ring::dot;
        for (x, &(q, p)) in items.iter().enumerate() {
            let (q, p) = (q as usize, p as usize);
            let sum = (0..k).fold(lifted(&outs, x), |acc, s| {
                acc.wrapping_add(outs[s].words[x]).wrapping_add(dot(
                    &shares[s][p * d..(p + 1) * d],
                    &shares[s][q * d..(q + 1) * d],
                ))
            });
            let want = dot(&z[p * d..(p + 1) * d], &z[q * d..(q + 1) * d]);
            assert_eq!(sum, want, "item {x} ({q}, {p}), k = {k}");
        }
    }

    #[test]
    fn shares_modulo_2_64_match_the_plaintext_for_two_three_and_four_servers() {
        let mut prg = Prg::new(&Seed([9; 32]), 0);
        let (n, m, d) = (30, 25, 6);
        let mut pairs: Vec<(usize, usize)> = (0..120)
            .map(|_| {
                (
                    (prg.next_u64() % n as u64) as usize,
                    (prg.next_u64() % m as u64) as usize,
                )
            })
            .collect();
        pairs.push(pairs[0]);
        let mut items = orient(n, m, pairs.into_iter());
        // A row with itself.
        items.push((3, 3));
        let z = prg.vec((n + m) * d);
        for k in 2..=4 {
            check(k, n + m, d, &items, &z, k as u8);
        }
    }

    #[test]
    fn two_servers_take_three_or_four_runs_whose_product_lifts() {
        for (d, want) in [(1, 3), (256, 3), (648, 3), (1024, 3), (1025, 4), (MAX_D, 4)] {
            assert_eq!(runs(2, d), want, "d {d}");
            // M >= 2^(b + 1), and the largest sum is below 2^b: 2 d (2^64 - 1)^2 < 2^b.
            let m = product(runs(2, d));
            assert!(!below(&m, &power(lift_bits(d) + 1)), "d {d}");
            let top = (d as f64).log2() + 129.0;
            assert!(top <= lift_bits(d) as f64, "d {d}");
            for k in 3..=4 {
                assert_eq!(runs(k, d), P);
            }
        }
        // One prime fewer would not do.
        assert!(below(&product(2), &power(lift_bits(1) + 1)));
        assert!(below(&product(3), &power(lift_bits(1025) + 1)));
    }

    #[test]
    fn two_servers_lift_where_the_shares_wrap_the_primes_product() {
        // Rows of 256 values near 2^64 on both servers: the sum of the cross terms is close
        // to 2^137 = 2^b, a sixteenth of M, so about a sixteenth of the items take the branch
        // where both shares are small (no wrap of M, the lift adds M back) and the rest the
        // other; both must come out right.
        let (rows, d) = (1024usize, 256usize);
        let items: Vec<(u32, u32)> = (0..rows as u32).map(|r| (r, (r + 5) % 1024)).collect();
        let plan = Arc::new(SlotPlan::new(rows, d, &items).unwrap());
        let mut prg = Prg::new(&Seed([8; 32]), 0);
        let s1: Vec<u64> = (0..rows * d)
            .map(|_| u64::MAX - prg.next_u64() % 4096)
            .collect();
        let s0: Vec<u64> = (0..rows * d)
            .map(|_| u64::MAX - prg.next_u64() % 4096)
            .collect();
        let z: Vec<u64> = s0
            .iter()
            .zip(&s1)
            .map(|(a, b)| a.wrapping_add(*b))
            .collect();
        let parties = vec![
            CrtProducts::new(0, 2, plan.clone(), s0.clone()).unwrap(),
            CrtProducts::new(1, 2, plan.clone(), s1.clone()).unwrap(),
        ];
        let (outs, rounds) = run_lockstep(parties).unwrap();
        assert_eq!(rounds, 2 * 3);
        let dot = crate::mpc::ring::dot;
        let mut both_small = 0;
        for (x, &(q, p)) in items.iter().enumerate() {
            let (q, p) = (q as usize, p as usize);
            let (rp, rq) = (p * d..(p + 1) * d, q * d..(q + 1) * d);
            let sum = lifted(&outs, x)
                .wrapping_add(outs[0].words[x])
                .wrapping_add(outs[1].words[x])
                .wrapping_add(dot(&s0[rp.clone()], &s0[rq.clone()]))
                .wrapping_add(dot(&s1[rp.clone()], &s1[rq.clone()]));
            assert_eq!(sum, dot(&z[rp], &z[rq]), "item {x}");
            both_small += (lifted(&outs, x) != 0) as usize;
        }
        assert!(
            (16..200).contains(&both_small),
            "{both_small} of 1,024 items with both shares small"
        );
    }

    #[test]
    fn lifted_shares_are_uniform_modulo_the_product() {
        // Constant inputs shared without randomness on server 1 (all zero) and on server 0
        // (the value): each server's share modulo M still looks uniform, and the fraction of
        // small ones is 2^b / M.
        let (rows, d) = (2000, 4);
        let items: Vec<(u32, u32)> = (0..rows as u32).map(|r| (r, (r + 1) % 2000)).collect();
        let plan = Arc::new(SlotPlan::new(rows, d, &items).unwrap());
        let z = vec![7u64; rows * d];
        let parties = vec![
            CrtProducts::new(0, 2, plan.clone(), z.clone()).unwrap(),
            CrtProducts::new(1, 2, plan.clone(), vec![0; rows * d]).unwrap(),
        ];
        let (outs, _) = run_lockstep(parties).unwrap();
        let m = product(runs(2, d));
        let expect = 2f64.powi(lift_bits(d) as i32) / (m[2] as f64 * 2f64.powi(128));
        for (s, o) in outs.iter().enumerate() {
            let lift = o.lift.as_ref().unwrap();
            let small = lift.small.iter().map(|w| w.count_ones()).sum::<u32>() as f64;
            let f = small / items.len() as f64;
            assert!(
                (f - expect).abs() < 0.05,
                "server {s}: {f} against {expect}"
            );
            // Every bit of the low words about half set (server 0's words are less M).
            for bit in 0..64 {
                let ones = o.words.iter().filter(|&&w| w >> bit & 1 == 1).count() as f64;
                let f = ones / items.len() as f64;
                assert!((0.44..0.56).contains(&f), "server {s}, bit {bit}: {f}");
            }
        }
        // And the values come out: the cross terms of a share and zero are zero.
        for x in 0..items.len() {
            let v = outs[0].words[x]
                .wrapping_add(outs[1].words[x])
                .wrapping_add(lifted(&outs, x));
            assert_eq!(v, 0, "the cross terms of a share and zero are zero");
        }
    }

    #[test]
    fn the_largest_shares_do_not_wrap_the_primes_product() {
        // Every share near 2^64 with four servers: the integer cross terms at their largest.
        let d = 40;
        let items: Vec<(u32, u32)> = (0..10).map(|r| (r, (r + 3) % 10)).collect();
        let z = vec![u64::MAX - 5; 10 * d];
        // Two servers: the largest sum of both cross terms, next to the lift's bound.
        for k in [2, 4] {
            let shares: Vec<Vec<u64>> = (0..k)
                .map(|s| {
                    if s == 0 {
                        z.iter()
                            .map(|&v| v.wrapping_sub((u64::MAX - 1).wrapping_mul(k as u64 - 1)))
                            .collect()
                    } else {
                        vec![u64::MAX - 1; 10 * d]
                    }
                })
                .collect();
            check_shares(d, &items, &z, &shares);
        }
    }

    /// The integers server 0 of 2 reconstructs as the encryptor from its runs' decrypted
    /// slots, its share `x` against the evaluator's `y`, the evaluator masking with `seed`.
    fn encryptor_integers(
        x: &[u64],
        y: &[u64],
        d: usize,
        items: &[(u32, u32)],
        seed: &Seed,
    ) -> Vec<[u64; MASK_WORDS]> {
        let plan = Arc::new(SlotPlan::new(x.len() / d, d, items).unwrap());
        let runs: Vec<Vec<u64>> = (0..P)
            .map(|i| {
                let t = CRT_PRIMES[i];
                let share = |z: &[u64], s: usize, m: Masking| {
                    let zt = z.iter().map(|&v| v % t).collect();
                    SlotProducts::with(s, 2, plan.clone(), zt, Codec::crt(i), m).unwrap()
                };
                let parties = vec![
                    share(
                        x,
                        0,
                        Masking::Integer(Seed([1; 32]), power(INTEGER_MASK_BITS)),
                    ),
                    share(
                        y,
                        1,
                        Masking::Integer(seed.clone(), power(INTEGER_MASK_BITS)),
                    ),
                ];
                run_lockstep(parties).unwrap().0.swap_remove(0)
            })
            .collect();
        (0..plan.len())
            .map(|x| combine(&runs.iter().map(|r| r[x]).collect::<Vec<u64>>()))
            .collect()
    }

    #[test]
    fn the_encryptor_sees_its_cross_terms_under_integer_masks() {
        let d = 8;
        let mut prg = Prg::new(&Seed([4; 32]), 0);
        // Rows 0..50 are server 0's slot rows, each against row (r + 50).
        let items: Vec<(u32, u32)> = (0..50).map(|r| (r, r + 50)).collect();
        let x = prg.vec(100 * d);
        let seed = Seed([7; 32]);
        let plan = SlotPlan::new(100, d, &items).unwrap();
        // The evaluator's share zero: the encryptor decrypts exactly the evaluator's integers.
        let zero = encryptor_integers(&x, &vec![0; 100 * d], d, &items, &seed);
        let blocks: Vec<Vec<[u64; MASK_WORDS]>> = (0..plan.blocks())
            .map(|b| integer_mask(&seed, 0, b, &power(INTEGER_MASK_BITS)))
            .collect();
        let flat: Vec<[u64; MASK_WORDS]> = blocks.concat();
        let want: Vec<[u64; MASK_WORDS]> = {
            let idx: Vec<u64> = (0..flat.len() as u64).collect();
            plan.gather(&idx)
                .iter()
                .map(|&i| flat[i as usize])
                .collect()
        };
        assert_eq!(zero, want);
        // A dense share: the integers are the cross terms plus those masks, exactly.
        let y = prg.vec(100 * d);
        let dense = encryptor_integers(&x, &y, d, &items, &seed);
        for (&(q, p), (got, r)) in items.iter().zip(dense.iter().zip(&want)) {
            let (q, p) = (q as usize, p as usize);
            // The integer cross term, and got - r, in four words.
            let mut v = [0u64; MASK_WORDS];
            for k in 0..d {
                let prod = y[p * d + k] as u128 * x[q * d + k] as u128;
                let mut carry = 0u128;
                for (w, add) in v.iter_mut().zip([prod as u64, (prod >> 64) as u64, 0, 0]) {
                    let cur = *w as u128 + add as u128 + carry;
                    *w = cur as u64;
                    carry = cur >> 64;
                }
            }
            assert!(!below(got, r));
            assert_eq!(sub_words(got, r), v, "({q}, {p})");
        }
        // The top bit of the masks is set for about half the items in both views.
        let half = |v: &[[u64; MASK_WORDS]]| {
            v.iter().filter(|w| w[3] >> 39 & 1 == 1).count() as f64 / v.len() as f64
        };
        for f in [half(&zero), half(&dense)] {
            assert!((0.25..0.75).contains(&f), "{f}");
        }
    }
}
