//! The plan of the dealer-free bilinear form: which ring-LWE product runs compute `C` and the
//! block norms, what they cost, and the check a job passes before anything is computed.
//!
//! **Two kinds of products for `C`**, chosen from the job's sizes alone (the same choice at the
//! pre-check, [`job_cost`], and at the request, `BilinearPlan::new`):
//!
//! * **coefficient-packed** ([`crate::mpc::he::product`]) when the dense grid of both sides'
//!   rows fits the work and memory bound: their cost is the grid's, whatever the candidates, and
//!   a job the pre-check accepts is never refused later (fewer pairs never cost more with the
//!   same packing);
//! * **slot products modulo `2^64`** ([`crate::mpc::he::crt`]: five slot runs combined by the
//!   CRT, three or four with two servers) otherwise: their cost follows the pairs ([`SlotPlan`]
//!   blocks times the width, once per run). The pre-check bounds the blocks by [`max_blocks`]
//!   for lists of the job's candidates per row (each pair is in the list of one of its
//!   endpoints, so [`orient`] heads at most twice the candidates per row), and the request's
//!   plan never exceeds that bound.
//!
//! The norms (every row against itself) take the same two kinds: coefficient-packed products
//! of the grid's diagonal where they fit, slot products (one round per ciphertext) otherwise.

use crate::error::{Error, Result};
use crate::mpc::he::orient::{max_blocks, orient};
use crate::mpc::he::product::{Layout, Shape, least_traffic, packings};
use crate::mpc::he::slots::SlotPlan;
use crate::mpc::pairs::Pairs;

/// Default bound on the work of one bilinear request with 2 servers: `2^36` multiply-adds of
/// ring-LWE products (about a minute on two cores) and 2 GiB of ciphertexts held by the
/// evaluator. With `k` servers both are divided by `k - 1` (each server evaluates every peer's
/// ciphertexts).
pub const DEFAULT_MAX_MULTIPLY_ADDS: u64 = 1 << 36;

/// Bytes of ciphertexts an evaluator may hold for one request with 2 servers.
const MAX_HELD_BYTES: u64 = 2 << 30;

/// Default bound on the work of a request's slot products with 2 servers (divided by `k - 1`
/// with more), in operations (butterflies and multiply-adds, each about what a coefficient
/// multiply-add costs: 1.3 ns on two cores without AVX-512 IFMA, measured): `2^39`, some 12
/// minutes (4 with IFMA). They run only for the runs whose dense grid the coefficient-packed
/// products cannot take, and may hold twice their memory: DBP15K fr-en's 10,500 rows per side
/// fit at k = 2 to 4.
pub const DEFAULT_MAX_SLOT_OPERATIONS: u64 = DEFAULT_MAX_MULTIPLY_ADDS << 3;
const SLOT_HELD_FACTOR: u64 = 2;

/// The work of a bilinear request's ring-LWE products, per peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Multiply-adds of one evaluation.
    pub multiply_adds: u64,
    /// Bytes the evaluator holds: the peer's ciphertexts, the blocks and the returned results.
    pub held_bytes: u64,
}

/// Two runs one after the other: their work adds up, and what is held is the larger of the two
/// (a run's ciphertexts, blocks and results are freed when it ends).
impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            multiply_adds: self.multiply_adds.saturating_add(o.multiply_adds),
            held_bytes: self.held_bytes.max(o.held_bytes),
        }
    }
}

impl Cost {
    /// The bound of the slot products for `k` servers with `max_operations` at two.
    pub(super) fn slot_limit(max_operations: u64, k: usize) -> Cost {
        let peers = k.saturating_sub(1).max(1) as u64;
        Cost {
            multiply_adds: max_operations / peers,
            held_bytes: MAX_HELD_BYTES * SLOT_HELD_FACTOR / peers,
        }
    }

    /// The cost per peer of the slot runs (one per CRT prime: [`crate::mpc::he::crt::runs`]) of
    /// a plan with `blocks` blocks, `ciphers` ciphertexts (groups of `N` slot rows) of at most
    /// `rounds` rounds, over `rows` rows of `d` values, for `k` servers: each plaintext costs at
    /// most five transforms (shared by the peers; four modulo `T`) and two multiply-adds per
    /// prime and peer; an evaluator holds every peer's ciphertexts and results both ways, one
    /// ciphertext's sums, and the shares (reduced copy included).
    pub fn of_slots(
        blocks: usize,
        ciphers: usize,
        rounds: usize,
        rows: usize,
        d: usize,
        k: usize,
    ) -> Cost {
        use crate::mpc::he::rlwe::{L, N};
        use crate::mpc::he::slots::{SLOT_RESIDUE_BITS, block_words};
        use crate::mpc::he::wire::packed_words;
        let peers = k.saturating_sub(1).max(1) as u64;
        let (n, l) = (N as u64, L as u64);
        let transforms = 5 * (n / 2) * n.trailing_zeros() as u64;
        let plaintexts = (blocks as u64).saturating_mul(d as u64);
        let runs = crate::mpc::he::crt::runs(k, d) as u64;
        let work = plaintexts
            .saturating_mul(transforms / peers + 2 * l * n)
            .saturating_mul(runs);
        let message = 8 + packed_words(l * n, SLOT_RESIDUE_BITS) * (1 + (ciphers * d) as u64);
        let back = (block_words() as u64).saturating_mul(blocks as u64);
        // One ciphertext's sums, and a batch of prepared peer ciphertexts (a, b, quotients).
        let sums = (rounds as u64).saturating_mul(2 * l * n)
            + crate::mpc::he::slots::PREP_BATCH as u64 * 4 * l * n;
        // The shares and their reduced copy; the masks, sums and results of a run, and the
        // residues kept between runs (at most a word per slot each). The combination after
        // the last run (with two servers whole masks per slot and per item, some 9 words a
        // slot) holds less than a run's results held.
        let slots = (blocks as u64).saturating_mul(n);
        let own = (message + 2 * (rows as u64).saturating_mul(d as u64))
            .saturating_add(slots.saturating_mul(runs + 3));
        let words = message + 2 * back + sums + own / peers;
        Cost {
            multiply_adds: work,
            held_bytes: 8u64.saturating_mul(words),
        }
    }

    /// The bound for `k` servers with `max_multiply_adds` at two.
    pub(super) fn limit(max_multiply_adds: u64, k: usize) -> Cost {
        let peers = k.saturating_sub(1).max(1) as u64;
        Cost {
            multiply_adds: max_multiply_adds / peers,
            held_bytes: MAX_HELD_BYTES / peers,
        }
    }

    pub(super) fn within(&self, limit: &Cost) -> bool {
        self.multiply_adds <= limit.multiply_adds && self.held_bytes <= limit.held_bytes
    }

    /// What a bound leaves for a run after an earlier run that cost `used`: the work left, and
    /// all of the memory (the earlier run's is freed when it ends).
    fn after(&self, used: &Cost) -> Cost {
        Cost {
            multiply_adds: self.multiply_adds.saturating_sub(used.multiply_adds),
            held_bytes: self.held_bytes,
        }
    }

    /// The cost of one evaluation of a packing of `shape` whose `X` has `x_rows` rows: its
    /// multiply-adds, and what a server holds for one peer ([`crate::mpc::he::product`]).
    pub fn of(shape: &Shape, x_rows: usize) -> Cost {
        use crate::mpc::he::harden::OUT_L;
        use crate::mpc::he::product::{BATCH_BLOCKS, BATCH_CHUNKS};
        use crate::mpc::he::rlwe::{L, N};
        let (n, ring, cd) = (N as u64, (L * N) as u64, shape.cipher_dims() as u64);
        // A batch: its chunks' ciphertexts expanded (a and b), its blocks' parts and sums in
        // all primes, hardened at three, switched (two words per value).
        let batch_cts = shape
            .chunks
            .min(BATCH_CHUNKS as u64)
            .saturating_mul(cd * 2 * ring);
        let batch =
            shape.blocks.min(BATCH_BLOCKS as u64) * (4 * ring + 2 * OUT_L as u64 * n + 4 * n);
        // Per block: the masks, the results sent (96 bits per value, 3 N words) until they
        // leave, then the results received from the peer; a word of margin.
        let per_block = shape.blocks.saturating_mul(5 * n);
        // The plaintexts' values: every group's rows, `R` runs per ciphertext, every prime.
        let x_words = (x_rows.div_ceil(shape.group) as u64)
            .saturating_mul((shape.runs() * L) as u64)
            .saturating_mul(cd);
        let words = shape
            .words_in()
            .saturating_add(batch_cts)
            .saturating_add(batch)
            .saturating_add(per_block)
            .saturating_add(x_words);
        Cost {
            multiply_adds: shape.multiply_adds(),
            held_bytes: 8u64.saturating_mul(words),
        }
    }
}

/// The refusal of a job too large for the dealer-free source. It reaches both parties, so it
/// states no size that depends on the other party's rows (the figures go to the servers' log).
fn too_large() -> Error {
    Error::invalid(
        "the dealer-free source computes the bilinear form with ring-LWE products, and this \
         job needs more work or memory than their limit (figures in the servers' logs); run it \
         with correlation = \"dealer\", or with fewer rows or dimensions",
    )
}

/// The check made before anything is computed: the cost per peer of a dealer-free job's
/// bilinear form between `na` and `nb` rows of `width` (with `spans`, their norms too) for lists
/// of at most `per_row` candidates per row, with the runs a bilinear request would choose
/// (`BilinearPlan::new`), or the refusal if they do not fit the default bound for `k`
/// servers: the dense grid's coefficient-packed products if it fits, or else the slot products'
/// bound ([`max_blocks`]). Either way a job this accepts is never refused later for its size.
pub fn job_cost(
    k: usize,
    na: usize,
    nb: usize,
    width: usize,
    spans: &[usize],
    split: bool,
    per_row: usize,
) -> Result<Cost> {
    let limit = Cost::limit(DEFAULT_MAX_MULTIPLY_ADDS, k);
    let (norms, c) = dense_costs(&limit, na, nb, width, spans, split)?;
    let widest = spans.iter().copied().max().unwrap_or(width);
    let ns = spans.len().max(1);
    // The runs the dense grid's coefficient-packed products cannot take, as slot products.
    let mut slots = Cost::default();
    if norms.is_none() {
        let rows = (na + nb) * ns;
        let blocks = rows.div_ceil(crate::mpc::he::rlwe::N);
        slots = slots + Cost::of_slots(blocks, blocks, 1, rows, widest, k);
    }
    if c.is_none() {
        let (cs, d) = if split && ns > 1 {
            (ns, widest)
        } else {
            (1, width)
        };
        let (n, m) = (na * cs, nb * cs);
        slots = slots
            + Cost::of_slots(
                max_blocks(n, m, per_row),
                (n + m).div_ceil(crate::mpc::he::rlwe::N),
                2 * per_row,
                n + m,
                d,
                k,
            );
    }
    if !slots.within(&Cost::slot_limit(DEFAULT_MAX_SLOT_OPERATIONS, k)) {
        tracing::warn!(?slots, na, nb, width, per_row, "dealer-free job too large");
        return Err(too_large());
    }
    Ok(norms.unwrap_or_default() + c.unwrap_or_default() + slots)
}

/// [`job_cost`]'s two parts within `limit`: the norms' coefficient-packed run, then `C`'s
/// within what the norms leave, each `None` if the dense grid's does not fit (that run takes
/// slot products; no norms cost zero). A request takes its packings within these (the dense
/// grid's packings are among the candidates, and cost no more for fewer pairs), so that it
/// never costs more than the estimate the pre-check accepted and the footprint booked.
fn dense_costs(
    limit: &Cost,
    na: usize,
    nb: usize,
    width: usize,
    spans: &[usize],
    split: bool,
) -> Result<(Option<Cost>, Option<Cost>)> {
    let widest = spans.iter().copied().max().unwrap_or(width);
    if width == 0 || width.max(widest) > crate::mpc::he::product::MAX_D {
        return Err(Error::invalid(format!(
            "dealer-free jobs take rows of 1 to {} values, not {width}",
            crate::mpc::he::product::MAX_D
        )));
    }
    let (na, nb) = (na as u64, nb as u64);
    let ns = spans.len().max(1) as u64;
    // The norms: every row of every block against itself (chunk c holds rows c w .. (c + 1) w,
    // so its blocks are its groups, or the chunk if groups are larger).
    let norms = if spans.is_empty() {
        Some(Cost::default())
    } else {
        let rows = (na + nb) * ns;
        least_dense(widest, rows, limit, true, |g, w| {
            (rows.div_ceil(w), rows.div_ceil(g.min(w)))
        })
    };
    // C: every pair; with `split`, per block of columns, the blocks' rows span-major.
    let budget = limit.after(&norms.unwrap_or_default());
    let c = if split && ns > 1 {
        least_dense(widest, na * ns, &budget, false, |g, w| {
            let touched = |from: u64, len: u64, size: u64| {
                if len == 0 {
                    0
                } else {
                    (from + len - 1) / size - from / size + 1
                }
            };
            let blocks = (0..ns)
                .map(|sp| touched(sp * nb, nb, w) * touched(sp * na, na, g))
                .sum();
            ((ns * nb).div_ceil(w), blocks)
        })
    } else {
        least_dense(width, na, &budget, false, |g, w| {
            let chunks = nb.div_ceil(w);
            (chunks, chunks * na.div_ceil(g))
        })
    };
    Ok((norms, c))
}

/// The cost of one product run of `shape` whose `X` has `x_rows` rows: with `diagonal` (rows
/// against themselves, [`CrossProducts::diagonal`]) each peer evaluates and returns half the
/// blocks.
fn run_cost(shape: &Shape, x_rows: usize, diagonal: bool) -> Cost {
    let blocks = if diagonal {
        shape.blocks.div_ceil(2)
    } else {
        shape.blocks
    };
    Cost::of(&Shape { blocks, ..*shape }, x_rows)
}

/// The cost of the packing a request would choose ([`he_layout`]) for a dense set of pairs
/// of rows of `d`, `x_rows` rows of `X`, whose chunks and blocks at group `g` and chunk `w` are
/// `shape(g, w)`, within `budget`; `None` if none fits.
fn least_dense(
    d: usize,
    x_rows: u64,
    budget: &Cost,
    diagonal: bool,
    shape: impl Fn(u64, u64) -> (u64, u64),
) -> Option<Cost> {
    use crate::mpc::he::rlwe::N;
    let x_rows = x_rows as usize;
    let shapes = packings(d).map(|(group, dims)| {
        let (chunks, blocks) = shape(group as u64, (N / (group * dims)) as u64);
        let s = Shape {
            d,
            group,
            dims,
            chunks,
            blocks,
        };
        (s, ())
    });
    least_traffic(shapes, |s| run_cost(s, x_rows, diagonal).within(budget))
        .map(|(s, ())| run_cost(&s, x_rows, diagonal))
}

/// The packing of a bilinear request's products with the least traffic within `budget`, or
/// the refusal of a request too large for it.
fn he_layout(pairs: &Pairs, d: usize, budget: &Cost, diagonal: bool) -> Result<Layout> {
    let x_rows = pairs.rows();
    Layout::within(pairs, d, |s| run_cost(s, x_rows, diagonal).within(budget)).map_err(|e| {
        tracing::warn!(error = %e, pairs = pairs.len(), d, ?budget, "dealer-free job too large");
        too_large()
    })
}

/// How `C` is computed.
pub(super) enum CRun {
    /// Coefficient-packed products.
    Coefficients(Layout),
    /// Slot products modulo `2^64` over the stacked rows `[X; Y]`.
    Slots(SlotPlan),
}

/// The ring-LWE product runs of a bilinear request, chosen before any mask is drawn.
pub(super) struct BilinearPlan {
    /// C's pairs: the request's, or with `split` per block of columns, each block's rows a
    /// side of their own (span-major, so that blocks do not mix).
    pub c_pairs: Pairs,
    pub c_run: CRun,
    pub split_c: bool,
    /// With blocks: every row of A and B against itself, a row per block of columns.
    pub norms: Option<(Pairs, CRun)>,
}

impl BilinearPlan {
    /// The runs of `Request::Bilinear { d, pairs, blocks, split }` for `k` servers within the
    /// bounds (multiply-adds, slot operations): the norms and a coefficient-packed `C`, each
    /// within its part of the dense grid's estimate (`dense_costs`, the norms first, C within
    /// what they leave), or, where the dense grid does not fit, slot products within their
    /// bound; or the refusal.
    pub fn new(
        d: usize,
        pairs: &Pairs,
        blocks: &[usize],
        split: bool,
        (max_multiply_adds, max_slot_operations): (u64, u64),
        k: usize,
    ) -> Result<BilinearPlan> {
        let limit = Cost::limit(max_multiply_adds, k);
        let (n, m) = (pairs.rows(), pairs.cols());
        let ns = blocks.len().max(1);
        let width = blocks.iter().copied().max().unwrap_or(d);
        let split_c = split && ns > 1;
        let c_pairs = if split_c {
            let mut rows = Vec::with_capacity(pairs.len() * ns);
            let mut cols = Vec::with_capacity(pairs.len() * ns);
            for sp in 0..ns {
                for p in 0..pairs.len() {
                    let (i, j) = pairs.pair(p);
                    rows.push((sp * n + i) as u32);
                    cols.push((sp * m + j) as u32);
                }
            }
            Pairs::list(n * ns, m * ns, rows, cols)?
        } else {
            pairs.clone()
        };
        // Within the dense grid's estimate, part by part (`dense_costs`).
        let (norms_cost, c_cost) = dense_costs(&limit, n, m, d, blocks, split)?;
        let norms = if blocks.is_empty() {
            None
        } else {
            let rows = (n + m) * ns;
            let diag: Vec<u32> = (0..rows as u32).collect();
            let run = match norms_cost {
                Some(cost) => {
                    let diag = Pairs::list(rows, rows, diag.clone(), diag.clone())?;
                    CRun::Coefficients(he_layout(&diag, width, &cost, true)?)
                }
                None => {
                    let items: Vec<(u32, u32)> = diag.iter().map(|&r| (r, r)).collect();
                    CRun::Slots(SlotPlan::new(rows, width, &items)?)
                }
            };
            Some((Pairs::list(rows, rows, diag.clone(), diag)?, run))
        };
        let c_d = if split_c { width } else { d };
        let c_run = match c_cost {
            Some(c_cost) => CRun::Coefficients(he_layout(&c_pairs, c_d, &c_cost, false)?),
            None => {
                let (cn, cm) = (c_pairs.rows(), c_pairs.cols());
                let items = orient(cn, cm, (0..c_pairs.len()).map(|p| c_pairs.pair(p)));
                CRun::Slots(SlotPlan::new(cn + cm, c_d, &items)?)
            }
        };
        // The slot runs' work adds up against their bound.
        let slots = [Some(&c_run), norms.as_ref().map(|(_, r)| r)]
            .into_iter()
            .flatten()
            .fold(Cost::default(), |acc, r| match r {
                CRun::Slots(plan) => acc + slot_cost(plan, k),
                CRun::Coefficients(_) => acc,
            });
        if !slots.within(&Cost::slot_limit(max_slot_operations, k)) {
            tracing::warn!(?slots, pairs = c_pairs.len(), "dealer-free job too large");
            return Err(too_large());
        }
        Ok(BilinearPlan {
            c_pairs,
            c_run,
            split_c,
            norms,
        })
    }

    /// The cost of both runs.
    #[cfg(test)]
    fn cost(&self, k: usize) -> Cost {
        let cost = |r: &CRun, diagonal| match r {
            CRun::Coefficients(lay) => run_cost(&lay.shape(), lay.n, diagonal),
            CRun::Slots(plan) => slot_cost(plan, k),
        };
        cost(&self.c_run, false)
            + self
                .norms
                .as_ref()
                .map_or(Cost::default(), |(_, r)| cost(r, true))
    }
}

/// The slot plan of the scores modulo `T` ([`crate::mpc::modular`]) over `pairs` of rows `d`
/// long for two servers, or `None` where the request modulo `2^64` should run instead. They
/// run where `C` modulo `2^64` would take three or four slot runs (its dense grid does not fit
/// the coefficient-packed products within what the norms of `blocks` leave of
/// `max_multiply_adds`, as [`BilinearPlan::new`] decides), and where the dense grid fits but
/// the one run needs no more memory than it (so the job's booked footprint still holds: small
/// jobs of few candidates, and the tests'). Their work is bounded as those runs' at the
/// pre-check ([`job_cost`], [`Cost::of_slots`]), so a job is accepted or refused alike either
/// way; the refusal if it exceeds `max_slot_operations` where the dense grid does not fit.
pub(super) fn mod_plan(
    d: usize,
    pairs: &Pairs,
    blocks: &[usize],
    (max_multiply_adds, max_slot_operations): (u64, u64),
) -> Result<Option<SlotPlan>> {
    let (n, m) = (pairs.rows(), pairs.cols());
    if pairs.is_empty() || d == 0 || d > crate::mpc::modular::MAX_D {
        return Ok(None);
    }
    let limit = Cost::limit(max_multiply_adds, 2);
    let Ok((_, dense)) = dense_costs(&limit, n, m, d, blocks, false) else {
        return Ok(None);
    };
    let items = orient(n, m, (0..pairs.len()).map(|p| pairs.pair(p)));
    let plan = SlotPlan::new(n + m, d, &items)?;
    let cost = slot_cost(&plan, 2);
    let fits = cost.within(&Cost::slot_limit(max_slot_operations, 2));
    match dense {
        None if !fits => {
            tracing::warn!(?cost, pairs = pairs.len(), "dealer-free job too large");
            Err(too_large())
        }
        None => Ok(Some(plan)),
        Some(c) => Ok((fits && cost.held_bytes <= c.held_bytes).then_some(plan)),
    }
}

/// The cost per peer of a slot plan's runs for `k` servers.
fn slot_cost(plan: &SlotPlan, k: usize) -> Cost {
    Cost::of_slots(
        plan.blocks(),
        plan.ciphertexts() / plan.d.max(1),
        plan.max_rounds(),
        plan.rows,
        plan.d,
        k,
    )
}

/// Rows of `d` words cut into blocks of columns (`spans`), each block a row of its own padded
/// with zeros to the widest: row `i`'s block `s` is row `i * spans.len() + s`, or with
/// `span_major` row `s * rows + i`.
pub(super) fn by_span(x: &[u64], d: usize, spans: &[usize], span_major: bool) -> Vec<u64> {
    let width = spans.iter().copied().max().unwrap_or(0);
    let rows = x.len() / d.max(1);
    let ns = spans.len();
    let mut out = vec![0u64; rows * ns * width];
    for (i, row) in x.chunks_exact(d.max(1)).enumerate() {
        let mut at = 0;
        for (s, &len) in spans.iter().enumerate() {
            let r = if span_major { s * rows + i } else { i * ns + s };
            out[r * width..r * width + len].copy_from_slice(&row[at..at + len]);
            at += len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// However many blocks a slot plan may take within the default bound's work (any row
    /// length up to the largest, any server count), the flooding noise fits the returned
    /// modulus, so a plan the pre-check accepts is never refused for its noise.
    #[test]
    fn the_default_bound_keeps_every_plan_within_the_flood_room() {
        use crate::mpc::he::slots::{MAX_D, flood_bits_at};
        for k in 2..=4 {
            let limit = Cost::slot_limit(DEFAULT_MAX_SLOT_OPERATIONS, k);
            for d in [1usize, 16, 64, 256, 648, 1024, MAX_D] {
                // The work grows with the blocks alone: the most blocks within the bound.
                let work = |b: usize| Cost::of_slots(b, 1, 1, 1, d, k).multiply_adds;
                let (mut lo, mut hi) = (0usize, 1usize);
                while work(hi) <= limit.multiply_adds {
                    hi *= 2;
                }
                while hi - lo > 1 {
                    let mid = (lo + hi) / 2;
                    if work(mid) <= limit.multiply_adds {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                assert!(lo > 0, "k {k}, d {d}: no block fits the bound");
                assert!(
                    flood_bits_at(d, lo).is_ok(),
                    "k {k}, d {d}: {lo} blocks within the bound overflow the flood room"
                );
            }
        }
    }

    const TINY: [usize; 3] = [16, 16, 10];
    const DEFAULT: [usize; 3] = [256, 256, 136];

    /// Candidate lists as the alignment builds its pairs: `c` per row of A, then the pairs of
    /// B's lists of `c` that A does not list; a few hubs.
    fn lists(na: usize, nb: usize, c: usize, seed: u64) -> Pairs {
        let mut x = seed | 1;
        let mut next = |m: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m as u64) as u32
        };
        let mut seen = std::collections::HashSet::new();
        let (mut rows, mut cols) = (Vec::new(), Vec::new());
        for i in 0..na as u32 {
            for t in 0..c {
                let j = if t == 0 { i % 7 } else { next(nb) };
                seen.insert((i, j));
                rows.push(i);
                cols.push(j);
            }
        }
        for j in 0..nb as u32 {
            for t in 0..c {
                let i = if t == 0 { j % 5 } else { next(na) };
                if seen.insert((i, j)) {
                    rows.push(i);
                    cols.push(j);
                }
            }
        }
        Pairs::list(na, nb, rows, cols).unwrap()
    }

    #[test]
    fn jobs_too_large_for_ot_are_refused_before_they_start() {
        // The tests' narrow model and the default model on the shipped sample (311 + 311 rows,
        // width 648) fit, with coefficient-packed products; DBP15K fr-en's test rows (10,500
        // per side, 64 candidates) with slot products, for 2 to 4 servers; a million rows per
        // side do not.
        job_cost(2, 31, 31, 42, &TINY, false, 8).unwrap();
        job_cost(4, 31, 31, 42, &TINY, true, 8).unwrap();
        job_cost(2, 311, 311, 648, &DEFAULT, false, 64).unwrap();
        for k in 2..=4 {
            let c = job_cost(k, 10_500, 10_500, 648, &DEFAULT, false, 64).unwrap();
            assert!(c.multiply_adds > DEFAULT_MAX_MULTIPLY_ADDS / 2, "{c:?}");
        }
        let e = job_cost(2, 1_000_000, 1_000_000, 648, &DEFAULT, false, 64)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ring-LWE") && e.contains("correlation = \"dealer\""),
            "{e}"
        );
        assert!(!e.contains("1000000") && !e.contains("1,000,000"), "{e}");
        // Each server evaluates every peer's ciphertexts: with k = 3 the bound per peer halves.
        let first_refused = |k| {
            (1..400)
                .map(|r| r * 1000)
                .find(|&rows| job_cost(k, rows / 2, rows / 2, 648, &DEFAULT, false, 64).is_err())
                .expect("some size is refused")
        };
        assert!(first_refused(3) < first_refused(2));
        assert!(job_cost(2, 31, 31, 0, &[], false, 8).is_err());
        assert!(job_cost(2, 31, 31, 4096, &[], false, 8).is_err());
        // C per block of columns costs more than C over whole rows, and less than a whole
        // product per block (blocks do not mix: mixed, the three blocks would cost nine).
        let whole = job_cost(2, 500, 500, 648, &DEFAULT, false, 64).unwrap();
        let split = job_cost(2, 500, 500, 648, &DEFAULT, true, 64).unwrap();
        assert!(split.multiply_adds > whole.multiply_adds);
        assert!(
            split.multiply_adds < 3 * whole.multiply_adds,
            "{split:?} vs {whole:?}"
        );
    }

    /// The largest total of rows (a multiple of 25, split evenly) whose dense grid the
    /// coefficient-packed products take.
    fn last_dense(k: usize, split: bool) -> usize {
        let limit = Cost::limit(DEFAULT_MAX_MULTIPLY_ADDS, k);
        (1..2000)
            .map(|r| r * 25)
            .take_while(|&rows| {
                matches!(
                    dense_costs(&limit, rows / 2, rows / 2, 648, &DEFAULT, split),
                    Ok((_, Some(_)))
                )
            })
            .last()
            .expect("small jobs fit")
    }

    #[test]
    fn jobs_the_pre_check_accepts_are_never_refused_later_for_their_size() {
        // On both sides of the largest size whose dense grid the coefficient-packed products
        // take, whatever the candidates (every pair where the grid is taken, or lists of 64 per
        // row), a request of a job `job_cost` accepts finds runs within the bound, and their
        // cost is at most the estimate's.
        for (k, split) in [(2, false), (2, true), (3, false)] {
            let last = last_dense(k, split);
            let mut sizes = vec![
                (last / 2 - 13, last / 2 - 12),
                (last / 2 + 40, last / 2 - 60),
                (last / 2 + 13, last / 2 + 12),
            ];
            if !split {
                sizes.push((10_500, 10_500));
            }
            for (at, (na, nb)) in sizes.into_iter().enumerate() {
                let Ok(estimate) = job_cost(k, na, nb, 648, &DEFAULT, split, 64) else {
                    panic!("k {k} split {split}: {na} x {nb} refused");
                };
                let limit = Cost::limit(DEFAULT_MAX_MULTIPLY_ADDS, k);
                let (norms_fit, c_fit) = match dense_costs(&limit, na, nb, 648, &DEFAULT, split) {
                    Ok((norms, c)) => (norms.is_some(), c.is_some()),
                    Err(e) => panic!("{e}"),
                };
                let dense = norms_fit && c_fit;
                let mut all = vec![lists(na, nb, 64, (na * nb) as u64)];
                // Every pair (slow to lay out: once per case).
                if dense && at == 0 {
                    all.push(Pairs::dense(na, nb));
                }
                for pairs in all {
                    let plan = BilinearPlan::new(
                        648,
                        &pairs,
                        &DEFAULT,
                        split,
                        (DEFAULT_MAX_MULTIPLY_ADDS, DEFAULT_MAX_SLOT_OPERATIONS),
                        k,
                    )
                    .unwrap_or_else(|e| panic!("k {k} split {split} {na} x {nb}: {e}"));
                    assert_eq!(matches!(plan.c_run, CRun::Slots(_)), !c_fit);
                    let norms_slots = matches!(plan.norms, Some((_, CRun::Slots(_))));
                    assert_eq!(norms_slots, !norms_fit);
                    let cost = plan.cost(k);
                    assert!(
                        cost.multiply_adds <= estimate.multiply_adds
                            && cost.held_bytes <= estimate.held_bytes,
                        "k {k} split {split} {na} x {nb}: {cost:?} {estimate:?}"
                    );
                }
            }
        }
    }
}
