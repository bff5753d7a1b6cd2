//! 1-to-1 assignment on shares: iterated mutual best with removal of matched rows.
//!
//! Round 1 is the pipeline's mutual best above the threshold ([`crate::model::align`]). Each
//! further round (`JobParams::assignment_rounds` of them) removes the rows matched so far, on
//! both sides, and takes the mutual best of what is left:
//!
//! * every ranking score `f(a, b)` (`2S - r_b` on a's row, `2S - r_a` on b's) is lowered by
//!   `BIG * (m_a + m_b)`, where `m_a`, `m_b` are the shared 0/1 "already matched" flags and
//!   `BIG` exceeds every score difference and the threshold: a local, linear step (no
//!   communication);
//! * a new secure argmax per row, mutual best of the two markers, and the threshold on a's
//!   lowered pair score: a pair with a matched end carries a penalty of at least `BIG`, so it
//!   fails the threshold and is never matched twice;
//! * the new matches are added to the old (disjoint one-hot markers).
//!
//! Afterwards each row reports its matched pair if it has one, else its round-1 best: the
//! reported one-hot is `keep + (1 - matched) * onehot_1` (one fan-out product), and its
//! similarity and pair score (unlowered) come from one product with `[S | f]`.
//!
//! Cost per extra round: one tournament over every candidate of both sides, one product per
//! mutual pair and one comparison per row of A; comparisons use `compare_bits` widened to hold
//! the penalty. [`reference()`] is the same algorithm in plaintext integers.

use crate::error::{Error, Result};
use crate::model::align::{BSidePairs, JobParams, SideReference, all_rows, row_sums, slot_major};
use crate::model::blocking::Candidates;
use crate::model::shard::Shards;
use crate::mpc::channel::Transport;
use crate::mpc::correlated::Correlations;
use crate::mpc::engine::Engine;
use crate::mpc::mesh::{At, Mesh};

/// Most assignment rounds a job may ask for.
pub const MAX_ROUNDS: usize = 8;

/// The penalty `BIG` (a power of two, at product scale) and the comparison width that holds
/// every lowered score difference.
pub fn widths(p: &JobParams) -> Result<(u64, u32)> {
    let span = p.min_score.abs() + 6.0 * p.model.max_score() + 1.0;
    let big_bits = span.log2().ceil().max(0.0) as u32 + 2 * p.frac_bits;
    // |differences| < 3 BIG <= 2^(ell - 1).
    let ell = big_bits + 3;
    if ell > 64 {
        return Err(Error::invalid(format!(
            "assignment_rounds needs {ell}-bit comparisons with frac_bits = {} and min_score = {}; lower frac_bits",
            p.frac_bits, p.min_score
        )));
    }
    Ok((1u64 << big_bits, ell))
}

/// Checks the assignment parameters.
pub fn check(p: &JobParams) -> Result<()> {
    if p.assignment_rounds > MAX_ROUNDS {
        return Err(Error::invalid(format!(
            "assignment_rounds must be 0 to {MAX_ROUNDS}, got {}",
            p.assignment_rounds
        )));
    }
    if p.assignment_rounds > 0 {
        widths(p)?;
    }
    Ok(())
}

/// The round-1 state of the secure pipeline on one worker (all vectors are this server's
/// shares over the worker's own rows: its A rows, then its B rows; with one worker, every row).
pub struct Round1<'a> {
    /// Candidate lists (every row's).
    pub cand: &'a Candidates,
    /// How the rows are dealt among the server's workers, and which one this is.
    pub shards: &'a Shards,
    /// Ranking scores, own A rows then own B rows, `k` each.
    pub f: &'a [u64],
    /// Scores `S`, same layout.
    pub s: &'a [u64],
    /// Row maxima of `S`, own A rows then own B rows.
    pub r: &'a [u64],
    /// Round-1 best markers, same layout as `f`.
    pub onehot: &'a [u64],
    /// Round-1 matches on the own A slots.
    pub keep: Vec<u64>,
}

/// What the assignment reports, replacing the round-1 values.
pub struct Assigned {
    /// Matches on the own A slots (one-hot per matched row, all rounds).
    pub keep: Vec<u64>,
    /// Reported candidate per own row (the match, else the round-1 best), layout of `f`.
    pub onehot: Vec<u64>,
    /// Pair score `f - r` of the reported candidate, per own row.
    pub score: Vec<u64>,
    /// Similarity `S` of the reported candidate, per own row.
    pub similarity: Vec<u64>,
}

/// Further rounds of mutual best on the rows left unmatched, then the reported candidates.
///
/// Split into workers, each worker runs its own rows; per round the workers share the rows'
/// "already matched" flags (one all-gather of a word per row) and read the other side's
/// markers of the pairs listed both ways where another worker holds them (`b_pairs`).
pub(crate) async fn iterate<T: Transport, C: Correlations, M: Mesh>(
    eng: &mut Engine<T, C>,
    mesh: &mut M,
    p: &JobParams,
    st: Round1<'_>,
    b_pairs: &BSidePairs<'_>,
    mesh_max: usize,
) -> Result<Assigned> {
    let (big, ell) = widths(p)?;
    let k = st.cand.per_row;
    let (na, wk) = (st.cand.a.len() / k, mesh.me());
    let (ra, rb) = (st.shards.a(wk), st.shards.b(wk));
    let (oa, ob) = (ra.len(), rb.len());
    let (qa, qb) = (ra.start * k, rb.start * k);
    // The other side's marker of each pair listed both ways, where it lives.
    let b_at: Vec<At> = (b_pairs.present.iter())
        .map(|&(_, m)| st.shards.b_slot(m as usize, k))
        .collect();
    let mut keep = st.keep;
    for _ in 0..p.assignment_rounds {
        let keep_b = b_pairs.read(mesh, &keep, mesh_max).await?;
        let mut own = row_sums(&keep, oa, k);
        own.extend(row_sums(&keep_b, ob, k));
        let m = all_rows(mesh, st.shards, &own, mesh_max).await?;
        // Local: lower every score of a matched row or towards a matched row.
        let mut f = st.f.to_vec();
        for (q, v) in f.iter_mut().enumerate() {
            let other = if q < oa * k {
                na + st.cand.a[qa + q] as usize
            } else {
                st.cand.b[qb + q - oa * k] as usize
            };
            let lowered = own[q / k].wrapping_add(m[other]);
            *v = v.wrapping_sub(lowered.wrapping_mul(big));
        }
        let (best, oh) = eng.argmax_onehot(&f, k, ell).await?;
        let score_a: Vec<u64> = best[..oa]
            .iter()
            .zip(&st.r[..oa])
            .map(|(b, r)| b.wrapping_sub(*r))
            .collect();
        let (oh_a, oh_b) = oh.split_at(oa * k);
        let x: Vec<u64> = (b_pairs.present.iter())
            .map(|&(q, _)| oh_a[q as usize - qa])
            .collect();
        let y = crate::mpc::mesh::fetch(mesh, oh_b, &b_at, mesh_max).await?;
        let both = eng.mul_bits(&x, y, 1).await?;
        let mut mutual = vec![0u64; oa * k];
        for (&(q, _), v) in b_pairs.present.iter().zip(&both) {
            mutual[q as usize - qa] = *v;
        }
        let pass = eng.threshold(&score_a, p.min_score_fixed(), ell).await?;
        let new = slot_major(
            &eng.mul_bits(&pass, slot_major(&mutual, oa, k), k).await?,
            k,
            oa,
        );
        keep.iter_mut()
            .zip(&new)
            .for_each(|(a, b)| *a = a.wrapping_add(*b));
    }
    // Reported candidate: the match, else the round-1 best.
    let keep_b = b_pairs.read(mesh, &keep, mesh_max).await?;
    let mut matched = row_sums(&keep, oa, k);
    matched.extend(row_sums(&keep_b, ob, k));
    let rows = oa + ob;
    let lost = slot_major(
        &eng.mul_bits(&matched, slot_major(st.onehot, rows, k), k)
            .await?,
        k,
        rows,
    );
    let onehot: Vec<u64> = keep
        .iter()
        .chain(&keep_b)
        .zip(st.onehot)
        .zip(&lost)
        .map(|((kp, o), l)| kp.wrapping_add(*o).wrapping_sub(*l))
        .collect();
    let mut x = onehot.clone();
    x.extend_from_slice(&onehot);
    let mut y = st.s.to_vec();
    y.extend_from_slice(st.f);
    let prod = eng.mul(&x, &y).await?;
    let (ps, pf) = prod.split_at(rows * k);
    let similarity = row_sums(ps, rows, k);
    let score = row_sums(pf, rows, k)
        .iter()
        .zip(st.r)
        .map(|(b, r)| b.wrapping_sub(*r))
        .collect();
    Ok(Assigned {
        keep,
        onehot,
        score,
        similarity,
    })
}

/// The same assignment in plaintext integers, applied to the round-1 reference decisions
/// (`ra`, `rb`: row maxima of `S`): updates `best`, `score` and `matched` of both sides; the
/// rankings stay the round-1 ones.
pub fn reference(
    a: &mut SideReference,
    b: &mut SideReference,
    ra: &[i64],
    p: &JobParams,
    cand: &Candidates,
    rb: &[i64],
) {
    // Parameters are validated before any job; invalid ones leave round 1 as it is.
    let Ok((big, _)) = widths(p) else {
        return;
    };
    if p.assignment_rounds == 0 {
        return;
    }
    let big = big as i64;
    let k = cand.per_row;
    let (na, nb) = (a.best.len(), b.best.len());
    let th = p.min_score_fixed() as i64;
    let find =
        |list: &[u32], i: usize, c: u32| list[i * k..(i + 1) * k].iter().position(|&x| x == c);
    let mut slot_a: Vec<Option<usize>> = vec![None; na];
    let mut slot_b: Vec<Option<usize>> = vec![None; nb];
    for i in (0..na).filter(|&i| a.matched[i]) {
        let j = a.best[i] as usize;
        slot_a[i] = find(&cand.a, i, j as u32);
        slot_b[j] = find(&cand.b, j, i as u32);
    }
    // First index of the maximum of a row lowered by the matched flags, as the tournament does.
    let lowered_best = |rank: &[i64], list: &[u32], i: usize, own: i64, other: &[Option<usize>]| {
        let row: Vec<i64> = (0..k)
            .map(|t| {
                rank[i * k + t] - big * (own + other[list[i * k + t] as usize].is_some() as i64)
            })
            .collect();
        let m = *row.iter().max().expect("k >= 1");
        let t = row.iter().position(|&v| v == m).expect("max present");
        (t, m)
    };
    for _ in 0..p.assignment_rounds {
        let tb: Vec<usize> = (0..nb)
            .map(|j| lowered_best(&b.ranking, &cand.b, j, slot_b[j].is_some() as i64, &slot_a).0)
            .collect();
        let mut new = Vec::new();
        for i in 0..na {
            let (t, v) = lowered_best(&a.ranking, &cand.a, i, slot_a[i].is_some() as i64, &slot_b);
            let j = cand.a[i * k + t] as usize;
            if cand.b[j * k + tb[j]] as usize == i && v - ra[i] >= th {
                new.push((i, t, j, tb[j]));
            }
        }
        for (i, t, j, u) in new {
            slot_a[i] = Some(t);
            slot_b[j] = Some(u);
        }
    }
    for (side, slots, list, r) in [
        (&mut *a, &slot_a, &cand.a, ra),
        (&mut *b, &slot_b, &cand.b, rb),
    ] {
        for (i, s) in slots.iter().enumerate() {
            if let Some(t) = *s {
                side.best[i] = list[i * k + t];
                side.score[i] = side.ranking[i * k + t] - r[i];
                side.matched[i] = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_matches_what_is_left_after_removal() {
        // Both rows of A prefer b0, b0 and b1 both prefer a0: round 1 matches (a0, b0) only;
        // round 2, without them, matches (a1, b1).
        let cand = Candidates {
            per_row: 2,
            a: vec![0, 1, 0, 1],
            b: vec![0, 1, 0, 1],
        };
        let side = |ranking: Vec<i64>, matched: Vec<bool>| SideReference {
            best: vec![0, 0],
            score: vec![ranking[0], ranking[2]],
            matched,
            ranking,
        };
        let a0 = side(vec![10, 5, 9, 3], vec![true, false]);
        let b0 = side(vec![10, 9, 5, 3], vec![true, false]);
        let r = [0i64, 0];
        for (rounds, second) in [(0, false), (1, true), (3, true)] {
            let p = JobParams {
                assignment_rounds: rounds,
                ..JobParams::default()
            };
            let (mut a, mut b) = (a0.clone(), b0.clone());
            reference(&mut a, &mut b, &r, &p, &cand, &r);
            assert_eq!(a.matched, vec![true, second], "rounds {rounds}");
            assert_eq!(b.matched, vec![true, second]);
            if second {
                assert_eq!((a.best[1], a.score[1]), (1, 3));
                assert_eq!((b.best[1], b.score[1]), (1, 3));
            } else {
                assert_eq!((a.best, b.best), (vec![0, 0], vec![0, 0]));
            }
        }
        // A threshold above the leftover pair's score keeps it unmatched.
        let p = JobParams {
            assignment_rounds: 2,
            min_score: 1.0,
            ..JobParams::default()
        };
        let (mut a, mut b) = (a0.clone(), b0.clone());
        reference(&mut a, &mut b, &r, &p, &cand, &r);
        assert_eq!(a.matched, vec![true, false]);
    }
}
