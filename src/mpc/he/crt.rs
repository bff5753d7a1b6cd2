//! Shares modulo `2^64` of `sum over servers s != t of <Z^t_p, Z^s_q>` for rows of 64-bit shares
//! and a list of pairs, from five [`super::slots`] runs modulo the primes [`CRT_PRIMES`]
//! combined by the Chinese remainder theorem: the products follow the pairs, and the result is a
//! drop-in for the coefficient-packed products ([`super::product`]) of the bilinear form.
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
//! **What the encryptor learns.** Each run's decrypted slots are `v + R mod t_i`, the noise being
//! flooded as in every slot run ([`super::harden`]); together they give the integer `v + R`,
//! whose distance from `R` alone is at most `v / 2^232 <= 2^-93` per value (a uniform variable
//! shifted by `v`), `2^-61` over `2^32` slots. The evaluator sees only ciphertexts. (Four primes
//! would leave room for masks of `2^186` only: `2^-47` per value, some `2^-25` over a large
//! job's slots, below the flooding's `2^-41` for a whole run; a review's finding.)
//!
//! **Cost.** Five slot runs, one after the other (each run's ciphertexts and results are freed
//! before the next): five times one run's work and traffic, the memory of one plus the
//! residues kept between runs.

use crate::error::{Error, Result};
use crate::mpc::he::modulus::Modulus;
use crate::mpc::he::slots::{
    CRT_PRIMES, Codec, MASK_WORDS, MAX_D, Masking, SlotPlan, SlotProducts, integer_mask,
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

/// The integer below the product of [`CRT_PRIMES`] whose residues are `r` (`r[i]` modulo
/// `CRT_PRIMES[i]`), as [`MASK_WORDS`] words, least significant first: Garner's mixed radix
/// `x = v_0 + t_0 (v_1 + t_1 (v_2 + ...))`, `v_j` from `r_j` and the `v` before it.
pub fn combine(r: [u64; P]) -> [u64; MASK_WORDS] {
    let g = Garner::get();
    let mut v = [0u64; P];
    for j in 0..P {
        let m = &g.m[j];
        let mut x = m.reduce(r[j]);
        for (i, &vi) in v[..j].iter().enumerate() {
            x = m.mul(m.sub(x, m.reduce(vi)), g.inv[i][j]);
        }
        v[j] = x;
    }
    // Horner from the top digit (the value is below 2^235).
    let mut acc = [0u64; MASK_WORDS];
    acc[0] = v[P - 1];
    for j in (0..P - 1).rev() {
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

/// The protocol: for every item `(q, p)` of the plan, in its order, this server's share modulo
/// `2^64` of `sum over servers s != t of <Z^t_p, Z^s_q>` (each server adds its own
/// `<Z^s_p, Z^s_q>`), from `Z`'s shares modulo `2^64`. Ten rounds: the two of each run.
pub struct CrtProducts {
    me: usize,
    k: usize,
    plan: Arc<SlotPlan>,
    z: Vec<u64>,
    seed: Seed,
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
        Ok(CrtProducts {
            me,
            k,
            plan,
            z,
            seed: Seed::random(),
            current: None,
            residues: Vec::with_capacity(CRT_PRIMES.len()),
        })
    }

    /// Starts run `i`: this server's shares reduced modulo its prime.
    fn start_run(self, i: usize) -> Result<Step<Self>> {
        // Progress for the operator (sizes of the servers' own plan, no values).
        tracing::info!(
            run = i + 1,
            of = CRT_PRIMES.len(),
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
            Masking::Integer(self.seed.clone()),
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
                if self.residues.len() < CRT_PRIMES.len() {
                    let i = self.residues.len();
                    self.start_run(i)
                } else {
                    Ok(Step::Done(self.finish()))
                }
            }
        }
    }

    /// Each item's combined integer, less this server's masks (the low words of the integers
    /// it added for each peer), modulo `2^64`.
    fn finish(self) -> Vec<u64> {
        let plan = &self.plan;
        let mut masks = vec![0u64; plan.blocks() * crate::mpc::he::rlwe::N];
        masks
            .par_chunks_mut(crate::mpc::he::rlwe::N)
            .enumerate()
            .for_each(|(b, out)| {
                for from in (0..self.k).filter(|&s| s != self.me) {
                    for (o, w) in out.iter_mut().zip(integer_mask(&self.seed, from, b)) {
                        *o = o.wrapping_add(w[0]);
                    }
                }
            });
        let masks = plan.gather(&masks);
        let r = &self.residues;
        (0..plan.len())
            .into_par_iter()
            .map(|x| combine(std::array::from_fn(|i| r[i][x]))[0].wrapping_sub(masks[x]))
            .collect()
    }
}

impl Protocol for CrtProducts {
    type Output = Vec<u64>;

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
    use crate::mpc::he::slots::orient;
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
            assert_eq!(combine(residues(x)), x, "{x:x?}");
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

    /// Runs the protocol on the servers' `shares` of `z` (rows of `d`) and checks every item
    /// against the plaintext `<Z_p, Z_q>` modulo `2^64`.
    fn check_shares(d: usize, items: &[(u32, u32)], z: &[u64], shares: &[Vec<u64>]) {
        let k = shares.len();
        let plan = Arc::new(SlotPlan::new(z.len() / d, d, items).unwrap());
        let parties = (0..k)
            .map(|s| CrtProducts::new(s, k, plan.clone(), shares[s].clone()).unwrap())
            .collect();
        let (outs, rounds) = run_lockstep(parties).unwrap();
        assert_eq!(rounds, 2 * P);
        let dot = crate::mpc::ring::dot;
        for (x, &(q, p)) in items.iter().enumerate() {
            let (q, p) = (q as usize, p as usize);
            let sum = (0..k).fold(0u64, |acc, s| {
                acc.wrapping_add(outs[s][x]).wrapping_add(dot(
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
    fn the_largest_shares_do_not_wrap_the_primes_product() {
        // Every share near 2^64 with four servers: the integer cross terms at their largest.
        let d = 40;
        let items: Vec<(u32, u32)> = (0..10).map(|r| (r, (r + 3) % 10)).collect();
        let z = vec![u64::MAX - 5; 10 * d];
        let k = 4;
        let shares: Vec<Vec<u64>> = (0..k)
            .map(|s| {
                if s == 0 {
                    z.iter()
                        .map(|&v| v.wrapping_sub((u64::MAX - 1).wrapping_mul(3)))
                        .collect()
                } else {
                    vec![u64::MAX - 1; 10 * d]
                }
            })
            .collect();
        check_shares(d, &items, &z, &shares);
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
                    share(x, 0, Masking::Integer(Seed([1; 32]))),
                    share(y, 1, Masking::Integer(seed.clone())),
                ];
                run_lockstep(parties).unwrap().0.swap_remove(0)
            })
            .collect();
        (0..plan.len())
            .map(|x| combine(std::array::from_fn(|i| runs[i][x])))
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
            .map(|b| integer_mask(&seed, 0, b))
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
            let mut diff = [0u64; MASK_WORDS];
            let mut borrow = false;
            for w in 0..MASK_WORDS {
                let (a, b1) = got[w].overflowing_sub(r[w]);
                let (a, b2) = a.overflowing_sub(borrow as u64);
                diff[w] = a;
                borrow = b1 || b2;
            }
            assert!(!borrow);
            assert_eq!(diff, v, "({q}, {p})");
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
