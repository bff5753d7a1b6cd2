//! The bilinear form's scores modulo the slot prime `T` instead of `2^64`, for two servers
//! without a dealer: one slot run for `C` instead of three or four and a lift.
//!
//! **Why.** Without a dealer, `C_p = <A_i, B_j>` comes from ring-LWE slot products, which give
//! shares modulo the plaintext prime `T` ([`crate::mpc::he::slots::T`], below `2^47`). Shares
//! modulo `2^64` of a product of 64-bit masks take three or four runs, the Chinese remainder
//! theorem and a lift by one correlated OT per value ([`crate::mpc::he::crt`]; five runs with
//! more servers). If the masks, the openings and the pair kernel all work modulo
//! `T`, one run is enough, and only the results come back to `Z_2^64`, by one bit product each.
//! The scores of honest rows are far below `T / 2` (below `2^40`,
//! [`crate::model::align::JobParams::score_bound`] at product scale), so nothing wraps.
//!
//! **Into `Z_T`, locally.** Each server holds a 64-bit share `x_s` of an upload value `x`
//! (signed, small). As integers, `x_0 + x_1` is `x + 2^64` when the two shares wrap (`x`
//! read as signed), and for a small `|x|` they wrap except with probability about
//! `|x| / 2^64` when `x_0` is uniform. So server 0 takes `x_0 mod T`, server 1 takes `x_1 - 2^64 mod T`, and their
//! sum is `x mod T` (with `x` read as signed) except with that probability, a correctness and
//! not a privacy risk. A party chooses its own shares, though, and one that made them *not* wrap
//! would shift its values by `2^64 mod T` past the row audit, which checks them modulo `2^64`.
//! The servers therefore first add a **zero sharing** (`+r` on server 0, `-r` on server 1, `r`
//! from a seed both servers draw together, [`ZeroSharing`]): then `x_0 + r` is uniform whatever
//! the party chose, and a value `x` converts correctly except with probability `|x| / 2^64`.
//! Over a job that is the sum of the values' magnitudes over `2^64`: about `2^-23` for DBP15K
//! fr-en's honest uploads (13.6 million values of at most `2^17`), a wrong score at worst; for
//! a deviating party whose rows pass the audit (an L1 norm up to about `2^21` per row), at most
//! `rows 2^21 / 2^64`, some `2^-30` for `10^4` rows, of a conversion that shifts one of its
//! values by `2^64 mod T` after the audit passed it. The **conversion check**
//! ([`ConversionCheck`]) catches any such value except with probability `2^-40` (the audit's
//! subsets), and the job stops.
//!
//! **Masks.** `A` and `B` are uniform modulo `T`, each value reduced from 128 random bits
//! ([`uniform_below`]: statistical distance `T / 2^128` per value). The openings `X - A mod T`
//! are then uniform, as the openings modulo `2^64` are. `C` is the slot run's shares with
//! uniform masks ([`crate::mpc::he::slots::SlotProducts::new`]) plus each server's own products.
//!
//! **The pair kernel, exactly.** The kernel of [`crate::mpc::pairs::Pairs`] sums products in
//! 64-bit words. Residues below `2^47` are cut at bit 24 (`v = h 2^24 + l`); the dot products of
//! the high halves, of the low halves and of their sums (each below `2^25`, products below
//! `2^50`) are exact in a word for rows of up to `2^13` terms ([`MAX_D`]: a pair sums `2d`),
//! and `<u, v> = H 2^48 + (S - H - L) 2^24 + L` (Karatsuba), reduced modulo `T` at the end:
//! three passes of the same kernel ([`DotsModT`]).
//!
//! **Back to `Z_2^64`** ([`crate::mpc::engine::Engine::lift`]). Every score lies in `[-Q, Q]`,
//! `Q = (T - 1) / 4` rounded down (the route is taken only when the job's score bound is below
//! `T / 4`). With the offset `Q` added by server 0, the shares `u_0, u_1` (below `T`) of
//! `v' = v + Q` sum, as integers, to `v' + w T` with `w` 0 or 1, and `v'` is below
//! `tau = (T + 1) / 2`. If `w = 0`, both `u_s` are at most `v' < tau`; if `w = 1`, their sum is
//! at least `T`, so not both are below `tau` (that would make it at most `T - 1`). So
//! `w = 1 - c_0 c_1` for the bits `c_s = [u_s < tau]` each server computes alone from its own
//! uniform share, and `v = u_0 + u_1 - T + T c_0 c_1 - Q`, where `T c_0 c_1` is one bit product
//! (server 1's bit against server 0's `c_0 T`, each with a zero part on the other server):
//! one correlated OT and one 64-bit correction per score and direction, and one round, where a
//! 48-bit comparison took some 70 random OTs and seven rounds. Nothing is opened, so the lift
//! reveals nothing. A deviating party's scores outside `[-Q, Q]` come back wrong (as some value
//! congruent modulo `T`, which one depending on the shares): the row audit stops such a job
//! before its results count.

use crate::error::{Error, Result};
use crate::mpc::correlated::{Part, Stream};
use crate::mpc::he::modulus::Modulus;
use crate::mpc::pairs::Pairs;
use crate::mpc::prg::{Prg, Seed};
use crate::mpc::protocol::{Protocol, Step, check_lengths, open_sum};
use rayon::prelude::*;

/// Widest rows the exact kernel takes (each pair sums `2d` products below `2^50`).
pub const MAX_D: usize = 4096;

/// Bits of the low half of a residue in the exact kernel.
const HALF: u32 = 24;

/// The material of the scores modulo `T` for one server: its masks `A` (`n x d`) and `B`
/// (`m x d`) uniform modulo `T`, its share of `C_p = <A_i, B_j> mod T` per pair, and the zero
/// sharing that re-randomises the uploads' shares. `Debug` shows only sizes.
pub struct ModMaterial {
    /// The prime.
    pub t: u64,
    /// `A`, then `B`.
    pub masks: [Part; 2],
    /// Shares of `C`, in pair order.
    pub c: Vec<u64>,
    /// The zero sharing.
    pub zero: ZeroSharing,
}

impl std::fmt::Debug for ModMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ModMaterial(t: {}, masks: {} + {}, c: {}, <redacted>)",
            self.t,
            self.masks[0].len(),
            self.masks[1].len(),
            self.c.len()
        )
    }
}

/// `r` from a seed both servers drew together, over the `n x d` rows of `X` then the `m x d`
/// rows of `Y`: server 0 adds it to its shares, server 1 subtracts it. `Debug` shows only
/// sizes.
pub struct ZeroSharing {
    /// `r` over `X`, then over `Y` (streams of the seed; words in tests).
    pub parts: [Part; 2],
}

impl std::fmt::Debug for ZeroSharing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ZeroSharing({} + {}, <redacted>)",
            self.parts[0].len(),
            self.parts[1].len()
        )
    }
}

impl ZeroSharing {
    /// The zero sharing of `n x d` and `m x d` words from `seed`.
    pub fn new(seed: Seed, n: usize, m: usize, d: usize) -> ZeroSharing {
        ZeroSharing {
            parts: [
                Part::Stream(Stream::new(seed.clone(), 0, 0, n * d)),
                Part::Stream(Stream::new(seed, 0, (n * d) as u64, m * d)),
            ],
        }
    }
}

/// `len` values uniform below `m.p` from words `2 at..` of `seed`'s stream `stream`, two
/// words (128 bits) per value, in parallel parts.
pub fn uniform_below(seed: &Seed, stream: u64, at: u64, len: usize, m: &Modulus) -> Vec<u64> {
    const PART: usize = 1 << 16;
    let mut out = vec![0u64; len];
    out.par_chunks_mut(PART).enumerate().for_each(|(p, part)| {
        let mut prg = Prg::at(seed, stream, 2 * (at + (p * PART) as u64));
        let mut buf = vec![0u64; 2 * part.len()];
        prg.fill(&mut buf);
        for (o, w) in part.iter_mut().zip(buf.chunks_exact(2)) {
            *o = m.reduce_wide(((w[0] as u128) << 64) | w[1] as u128);
        }
    });
    out
}

/// Server `me`'s shares modulo `m.p` of the values whose 64-bit shares are `x`, with `r` the
/// zero sharing's words at the same places (module docs): `x_0 + r mod 2^64 mod T`, or
/// `x_1 - r mod 2^64 - 2^64 mod T`.
pub fn to_residues(me: usize, x: &mut [u64], r: &[u64], m: &Modulus) {
    rerandomise(me, x, r);
    let wrap = wrap_of(m);
    for v in x.iter_mut() {
        *v = residue(me, *v, m, wrap);
    }
}

/// `x_0 + r` on server 0, `x_1 - r` on server 1, modulo `2^64` (the zero sharing applied).
pub fn rerandomise(me: usize, x: &mut [u64], r: &[u64]) {
    for (v, &r) in x.iter_mut().zip(r) {
        *v = if me == 0 {
            v.wrapping_add(r)
        } else {
            v.wrapping_sub(r)
        };
    }
}

/// `2^64 mod m.p`.
fn wrap_of(m: &Modulus) -> u64 {
    m.reduce(m.reduce(u64::MAX) + 1)
}

/// A re-randomised 64-bit share as a residue: reduced, less `2^64 mod T` on server 1.
#[inline]
fn residue(me: usize, y: u64, m: &Modulus, wrap: u64) -> u64 {
    if me == 0 {
        m.reduce(y)
    } else {
        m.sub(m.reduce(y), wrap)
    }
}

/// **The conversion check.** A value whose shares did not wrap converts to a residue shifted
/// by `2^64 mod T` (module docs): rare for honest uploads, but a deviating party's chance is
/// above the row audit's `2^-40` on large jobs. The check compares, for each row and each of
/// the row audit's public random subsets `S` (drawn after the uploads and the zero sharing),
/// the residue of the subset's **sum** of re-randomised shares with the **sum** of the
/// values' residues: server `s` holds `L_s = residue(sum_S y_s) - sum_S residue(y_s) mod T`,
/// and `L_0 + L_1 = T_c (e_S - sum_S e_t) mod T`, where `e_t` in `{-1, 0, 1}` is value `t`'s
/// conversion error (its shares wrapped `1 + e_t` times: a non-negative value fails as `-1`, a
/// negative one as `+1`), `e_S` the sum's, and `T_c = 2^64 mod T` is not 0 modulo `T`; the
/// difference is at most `d + 1 < T` in magnitude, so the sum is 0 exactly when it is. It is 0
/// when nothing failed, so opening it reveals nothing then; a non-zero vector of errors has a
/// zero sum over a random subset with probability at most 1/2, so a failed value escapes
/// every subset with probability at most `2^-subsets` (`2^-40` with the audit's subsets), and
/// the job stops naming the party ([`check_conversions`]). The sum's own conversion fails as
/// rarely as a value's (`|sum| / 2^64`), so an honest job stops, naming an honest party, with
/// about the probability that one of its values converts wrongly (`2^-22` on DBP15K fr-en):
/// it stops rather than computing on a wrong value. A party that knows `r` in advance (one
/// colluding with the server that chose the seed last) can make one value fail and the
/// subset sums agree; and a server can always open a non-zero part and stop a job (design.md,
/// threat model). Costs one pass over the shares per group and one opened residue per row and
/// subset.
pub struct ConversionCheck {
    subsets: usize,
    /// Per row and subset: the subset's sum of re-randomised shares (modulo `2^64`) and of
    /// their residues (below `d T < 2^64`).
    sums: Vec<u64>,
}

/// Rows per parallel task of [`ConversionCheck::add_group`].
const CHECK_ROWS: usize = 64;

impl ConversionCheck {
    /// Empty sums for `rows` rows and `subsets` subsets.
    pub fn new(rows: usize, subsets: usize) -> ConversionCheck {
        ConversionCheck {
            subsets,
            sums: vec![0u64; 2 * rows * subsets],
        }
    }

    /// Adds one group of columns `at..at + len` of every row: `ys` are server `me`'s
    /// re-randomised shares, `rows x len`; `subsets` the audit's (increasing positions).
    pub fn add_group(
        &mut self,
        me: usize,
        m: &Modulus,
        ys: &[u64],
        [at, len]: [usize; 2],
        subsets: &[Vec<u32>],
    ) {
        let wrap = wrap_of(m);
        let in_group = subsets_within(subsets, at, len);
        let per_row = 2 * self.subsets;
        self.sums
            .par_chunks_mut(per_row * CHECK_ROWS)
            .zip(ys.par_chunks(len * CHECK_ROWS))
            .for_each(|(sums, ys)| {
                // Each value's residue once per row, then the subsets' sums.
                let mut res = vec![0u64; len];
                for (row, y) in sums.chunks_mut(per_row).zip(ys.chunks(len)) {
                    for (r, &v) in res.iter_mut().zip(y) {
                        *r = residue(me, v, m, wrap);
                    }
                    for (s, set) in in_group.iter().enumerate() {
                        let (mut words, mut residues) = (0u64, 0u64);
                        for &t in set.iter() {
                            let i = t as usize - at;
                            words = words.wrapping_add(y[i]);
                            residues += res[i];
                        }
                        row[2 * s] = row[2 * s].wrapping_add(words);
                        row[2 * s + 1] += residues;
                    }
                }
            });
    }

    /// Server `me`'s shares of the differences, per row and subset (module docs).
    pub fn finish(self, me: usize, m: &Modulus) -> Vec<u64> {
        let wrap = wrap_of(m);
        self.sums
            .chunks_exact(2)
            .map(|p| m.sub(residue(me, p[0], m, wrap), m.reduce(p[1])))
            .collect()
    }
}

/// The positions of each subset (increasing) within the columns `at..at + len` of a group.
pub fn subsets_within(subsets: &[Vec<u32>], at: usize, len: usize) -> Vec<&[u32]> {
    subsets
        .iter()
        .map(|s| {
            let lo = s.partition_point(|&t| (t as usize) < at);
            let hi = s.partition_point(|&t| (t as usize) < at + len);
            &s[lo..hi]
        })
        .collect()
}

/// Checks the opened differences of [`ConversionCheck`] (sums of both servers' shares), per
/// row and subset, the `rows_a` rows of party A first: an error naming the party whose row
/// converted wrongly.
pub fn check_conversions(
    opened: &[u64],
    t: u64,
    subsets: usize,
    [rows_a, rows_b]: [usize; 2],
) -> Result<()> {
    if subsets == 0 || opened.len() != (rows_a + rows_b) * subsets {
        return Err(Error::invalid(format!(
            "conversion check: {} differences for {rows_a} + {rows_b} rows and {subsets} subsets",
            opened.len()
        )));
    }
    let m = Modulus::new(t);
    if let Some(i) = opened.iter().position(|&v| m.reduce(v) != 0) {
        let party = if i / subsets < rows_a { "A" } else { "B" };
        return Err(Error::invalid(format!(
            "party {party}'s upload failed the conversion check of the scores modulo the slot \
             prime (a value's shares converted differently from their sums; or a server \
             deviated): the job stops"
        )));
    }
    Ok(())
}

/// `<p_i, q_j> mod T` per pair, accumulated exactly over passes of the pair kernel (module
/// docs): per pair, the dot products of the high halves, the low halves and their sums.
pub struct DotsModT {
    parts: [Vec<u64>; 3],
}

impl DotsModT {
    /// Zero sums for `pairs` pairs.
    pub fn new(pairs: usize) -> DotsModT {
        DotsModT {
            parts: std::array::from_fn(|_| vec![0u64; pairs]),
        }
    }

    /// Adds `<p_rows[i], q_rows[j]>` per pair of `pairs` (rows `width` long, residues below
    /// `2^47`). The caller keeps each pair's total count of terms below `2 MAX_D`.
    pub fn accumulate(&mut self, pairs: &Pairs, p_rows: &[u64], q_rows: &[u64], width: usize) {
        let mask = (1u64 << HALF) - 1;
        let halves: [fn(u64, u64) -> u64; 3] = [
            |v, _| v >> HALF,
            |v, mask| v & mask,
            |v, mask| (v >> HALF) + (v & mask),
        ];
        // One pair of buffers for the three halves.
        let (mut p, mut q) = (vec![0u64; p_rows.len()], vec![0u64; q_rows.len()]);
        for (half, acc) in halves.into_iter().zip(&mut self.parts) {
            for (out, rows) in [(&mut p, p_rows), (&mut q, q_rows)] {
                out.par_iter_mut()
                    .zip(rows.par_iter())
                    .for_each(|(o, &v)| *o = half(v, mask));
            }
            pairs.accumulate_dots(&p, &q, width, acc);
        }
    }

    /// `c + <p_i, q_j> mod T` per pair.
    pub fn finish(self, c: &[u64], m: &Modulus) -> Vec<u64> {
        let [hi, lo, sum] = self.parts;
        let (s48, s24) = (m.reduce(1 << 48), 1u64 << HALF);
        c.par_iter()
            .zip(&hi)
            .zip(&lo)
            .zip(&sum)
            .map(|(((&c, &h), &l), &s)| {
                let mid = m.reduce(s - h - l);
                let v = m.add(m.mul(m.reduce(h), s48), m.add(m.mul(mid, s24), m.reduce(l)));
                m.add(c, v)
            })
            .collect()
    }
}

/// `<a_i, b_j> mod T` per pair for rows of residues (a server's own products of its masks).
pub fn own_products(pairs: &Pairs, a: &[u64], b: &[u64], d: usize, m: &Modulus) -> Vec<u64> {
    (0..pairs.len())
        .into_par_iter()
        .map(|p| {
            let (i, j) = pairs.pair(p);
            let s: u128 = a[i * d..(i + 1) * d]
                .iter()
                .zip(&b[j * d..(j + 1) * d])
                .map(|(&x, &y)| x as u128 * y as u128)
                .sum();
            m.reduce_wide(s)
        })
        .collect()
}

/// The zero sharing's seed, drawn together: every server sends 256 fresh bits from the OS and
/// the seed is their sum, uniform while the servers follow the protocol (a server that waited
/// for the other's bits could choose the sum: only a party colluding with it could use that,
/// on its own rows; design.md, threat model). Both servers know it by design. One round.
pub struct JointSeed(Seed);

impl JointSeed {
    /// A fresh contribution.
    pub fn new() -> JointSeed {
        JointSeed(Seed::random())
    }
}

impl Default for JointSeed {
    fn default() -> Self {
        JointSeed::new()
    }
}

impl Protocol for JointSeed {
    type Output = Seed;

    fn start(self) -> Result<Step<Self>> {
        let words = self.0.to_words().to_vec();
        Ok(Step::Send(self, words))
    }

    fn receive(self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        check_lengths(&incoming, 4, "joint seed")?;
        let sum: [u64; 4] = open_sum(incoming).try_into().expect("checked");
        Ok(Step::Done(Seed::from_words(&sum)))
    }
}

/// Checks that every share is a residue modulo `t` (a peer's or a bug's value is not).
pub fn check_residues(x: &[u64], t: u64, what: &str) -> Result<()> {
    if x.iter().any(|&v| v >= t) {
        return Err(Error::invalid(format!(
            "{what}: a share is not reduced modulo {t}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::he::slots::T;

    fn centred(v: u64, t: u64) -> i128 {
        if v > t / 2 {
            v as i128 - t as i128
        } else {
            v as i128
        }
    }

    #[test]
    fn shares_taken_to_residues_sum_to_the_value() {
        let m = Modulus::new(T);
        let mut rng = Prg::new(&Seed([7; 32]), 0);
        for _ in 0..20_000 {
            let x = (rng.next_u64() % (2 << 40)) as i64 - (1 << 40);
            // The party's shares, chosen not to wrap where it can (the attack), and the zero
            // sharing that undoes the choice.
            let x0: u64 = if x >= 0 { 0 } else { rng.next_u64() };
            let x1 = (x as u64).wrapping_sub(x0);
            let r = rng.next_u64();
            let (mut s0, mut s1) = ([x0], [x1]);
            to_residues(0, &mut s0, &[r], &m);
            to_residues(1, &mut s1, &[r], &m);
            assert_eq!(centred(m.add(s0[0], s1[0]), T), x as i128);
        }
        // Without the zero sharing, shares that do not wrap give `x - 2^64 mod T`: the shift
        // the zero sharing exists for.
        let (mut s0, mut s1) = ([2u64], [3u64]);
        to_residues(0, &mut s0, &[0], &m);
        to_residues(1, &mut s1, &[0], &m);
        assert_ne!(m.add(s0[0], s1[0]), 5);
    }

    #[test]
    fn exact_kernel_equals_wide_products_at_the_largest_residues() {
        let m = Modulus::new(T);
        let mut rng = Prg::new(&Seed([3; 32]), 0);
        let (n, cols, w) = (5, 4, 2 * MAX_D);
        let rows: Vec<u32> = (0..12).map(|p| p % n as u32).collect();
        let cs: Vec<u32> = (0..12).map(|p| (p * 3 + 1) % cols as u32).collect();
        let pairs = Pairs::list(n, cols, rows, cs).unwrap();
        for top in [true, false] {
            let draw = |rng: &mut Prg, len: usize| -> Vec<u64> {
                (0..len)
                    .map(|_| if top { T - 1 } else { rng.next_u64() % T })
                    .collect()
            };
            let p = draw(&mut rng, n * w);
            let q = draw(&mut rng, cols * w);
            let c: Vec<u64> = (0..pairs.len()).map(|_| rng.next_u64() % T).collect();
            // In two passes, as the form accumulates its groups.
            let mut dots = DotsModT::new(pairs.len());
            let half = w / 2;
            let cut = |x: &[u64], r: usize, lo: usize| -> Vec<u64> {
                x.chunks(w)
                    .take(r)
                    .flat_map(|row| row[lo..lo + half].to_vec())
                    .collect()
            };
            for lo in [0, half] {
                dots.accumulate(&pairs, &cut(&p, n, lo), &cut(&q, cols, lo), half);
            }
            let got = dots.finish(&c, &m);
            for (k, g) in got.iter().enumerate() {
                let (i, j) = pairs.pair(k);
                let want: u128 = p[i * w..(i + 1) * w]
                    .iter()
                    .zip(&q[j * w..(j + 1) * w])
                    .map(|(&a, &b)| (a as u128 * b as u128) % T as u128)
                    .sum::<u128>()
                    + c[k] as u128;
                assert_eq!(*g as u128, want % T as u128, "pair {k}, top {top}");
            }
        }
    }

    #[test]
    fn masks_are_residues_and_spread_over_the_range() {
        let m = Modulus::new(T);
        let v = uniform_below(&Seed([9; 32]), 1, 0, 1 << 17, &m);
        assert!(v.iter().all(|&x| x < T));
        // Top bit of 47 set about half the time, and distinct parts differ.
        let top = v.iter().filter(|&&x| x >= 1 << 46).count() as f64 / v.len() as f64;
        assert!(
            (top - (T - (1 << 46)) as f64 / T as f64).abs() < 0.01,
            "{top}"
        );
        let w = uniform_below(&Seed([9; 32]), 1, 1 << 16, 1 << 16, &m);
        assert_eq!(&v[1 << 16..], &w[..], "seekable");
    }
}
