//! Range checks of uploads on shares: a party cannot steer the other party's results by
//! uploading vectors that no graph could produce.
//!
//! Every score is `<z_a, z_b>`, and every comparison after it is sized for honest vectors
//! (blocks of norm at most 1, `sqrt(w1)`, `sqrt(w2)`: see
//! [`ModelParams::blocks`](crate::model::features::ModelParams::blocks)). A party that uploads
//! a row ten times too long would win every ranking it enters, and one with entries near
//! `2^63` would make scores wrap and comparisons return garbage for the other party's rows.
//! The servers therefore check, on shares and before anything else uses the scores, every row
//! of both uploads with the row audit of the bilinear form ([`crate::mpc::beaver`]):
//!
//! 1. **Entry bound**: each of [`AUDIT_SUBSETS`] public random subset sums of the row lies in
//!    `[-T, T]`, where `T` bounds the L1 norm of an honest row (`2^f sum_b sqrt(d_b) n_b`
//!    plus rounding). A row with any entry larger than `2T` in magnitude fails each subset
//!    with probability at least 1/2, so it passes all of them with probability at most
//!    `2^-40`.
//! 2. **Block norms**: the squared norm of each block is at most `(n_b 2^f + sqrt(d_b) / 2)^2`
//!    (the honest bound, with fixed-point rounding). With entries at most `2T`, a block's
//!    squared norm is below `d_b (2T)^2 < 2^62`, so it cannot wrap in `Z_2^64` (validation
//!    refuses parameters where it could: [`UploadBounds::sound`]).
//!
//! With both, every score involving the row is at most the honest maximum, and every value the
//! job compares stays inside the comparison width, whatever the party uploaded.
//!
//! **Nothing is opened to the servers.** The outcome stays shared: one bit per party,
//! `ok = [no check failed]`, which gates every match of the job and reaches the parties in a
//! status word ([`crate::model::align::STATUS_WORDS`]). Opening the number of failures instead
//! would hand a deviating server a data-dependent bit: adding an offset to its own share of one
//! subset sum, it could learn whether that (secret) sum of the honest party's row exceeds a
//! threshold of its choice. The servers run the same steps and send the same bytes whether an
//! upload passes or not.
//!
//! What a party can still do is upload any *valid* vectors, for example a copy of a name it
//! hopes to find: that is choosing one's input, which no protocol prevents (see the threat
//! model in `docs/design.md`).

use crate::error::{Error, Result};
use crate::model::align::JobParams;
use crate::mpc::beaver::{AuditShares, RowAudit};
use crate::mpc::channel::Transport;
use crate::mpc::correlated::Correlations;
use crate::mpc::engine::Engine;

/// Random subset sums per row: statistical soundness `2^-40` per job.
pub const AUDIT_SUBSETS: usize = 40;

/// The public bounds a job's uploads are checked against, at the job's fixed-point scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadBounds {
    /// Block lengths of a row.
    pub blocks: Vec<usize>,
    /// Largest squared norm of each block, at scale `2^(2f)`.
    pub norms: Vec<u64>,
    /// Largest magnitude of a subset sum of a row, at scale `2^f`.
    pub sum: u64,
}

impl UploadBounds {
    /// The bounds for `p`.
    pub fn new(p: &JobParams) -> UploadBounds {
        let scale = (1u64 << p.frac_bits) as f64;
        let blocks = p.model.blocks();
        let norms = blocks
            .iter()
            .map(|&(d, n)| {
                let r = n * scale + (d as f64).sqrt() / 2.0;
                (r * r).ceil() as u64
            })
            .collect();
        let l1: f64 = blocks
            .iter()
            .map(|&(d, n)| n * scale * (d as f64).sqrt() + d as f64 / 2.0)
            .sum();
        UploadBounds {
            blocks: blocks.iter().map(|b| b.0).collect(),
            norms,
            sum: l1.ceil() as u64 + 1,
        }
    }

    /// True when the checks are sound for these sizes: a block of entries up to `2T` has a
    /// squared norm below `2^62`, so norms computed in `Z_2^64` are exact.
    pub fn sound(&self) -> bool {
        let entry = 2.0 * self.sum as f64;
        self.blocks
            .iter()
            .all(|&d| (d as f64) * entry * entry < (1u64 << 62) as f64)
    }

    /// The audit the bilinear form computes for these bounds.
    pub fn audit(&self) -> RowAudit {
        RowAudit {
            blocks: self.blocks.clone(),
            subsets: AUDIT_SUBSETS,
        }
    }

    /// A plaintext condition under which a row always passes the secure checks (for tests):
    /// every block norm within its bound and the row's L1 norm at most `T` (so every subset
    /// sum is within `[-T, T]`). The secure check is looser: it only guarantees entries up to
    /// `2T`, with probability `1 - 2^-40`.
    pub fn row_in_range(&self, row: &[u64]) -> bool {
        let mut at = 0;
        self.blocks.iter().zip(&self.norms).all(|(&d, &bound)| {
            let b = &row[at..at + d];
            at += d;
            let norm: i128 = b.iter().map(|&v| (v as i64 as i128).pow(2)).sum();
            norm <= bound as i128
        }) && row.iter().map(|&v| (v as i64 as i128).abs()).sum::<i128>() <= self.sum as i128
    }
}

/// Compares every row's audit values with the bounds on shares. `na` rows of party A come first,
/// then party B's. Returns shares of `ok` per party (1 when every check of its rows passed),
/// opening nothing.
pub async fn check_uploads<T: Transport, C: Correlations>(
    eng: &mut Engine<T, C>,
    audit: &AuditShares,
    bounds: &UploadBounds,
    na: usize,
    nb: usize,
) -> Result<[u64; 2]> {
    let fails = upload_fails(eng, audit, bounds, na, nb).await?;
    fails_ok(eng, fails, max_fails(bounds, None, na + nb)).await
}

/// The most failures [`upload_fails`] (and, with the audit's indicators of `max_groups`
/// groups, [`crate::model::audit::indicator_fails`]) can count over `rows` rows.
pub fn max_fails(bounds: &UploadBounds, max_groups: Option<usize>, rows: usize) -> u64 {
    let range = bounds.blocks.len() + 2 * AUDIT_SUBSETS;
    let indicators = max_groups.map_or(0, |g| 2 * (2 * g + 2));
    (rows as u64).saturating_mul((range + indicators) as u64)
}

/// The first half of [`check_uploads`]: shares of the number of failed checks per party. A
/// server split into workers sums its workers' counts (linear, on shares) before
/// [`fails_ok`].
pub async fn upload_fails<T: Transport, C: Correlations>(
    eng: &mut Engine<T, C>,
    audit: &AuditShares,
    bounds: &UploadBounds,
    na: usize,
    nb: usize,
) -> Result<[u64; 2]> {
    let me = eng.me();
    let nbk = bounds.blocks.len();
    let rows = na + nb;
    if audit.norms.len() != rows * nbk || audit.sums.len() != rows * AUDIT_SUBSETS {
        return Err(Error::invalid("upload check: audit sizes do not match"));
    }
    let public = |v: u64| if me == 0 { v } else { 0 };
    // Norms: N - bound - 1 < 0 passes. Sums, both ends against offsets of one value
    // ([`Engine::ltz_offsets`]): with `w = -v`, `T - v < 0` fails and so does `v + T < 0`,
    // which is `w - T - 1 >= 0`.
    let norms: Vec<u64> = (audit.norms.iter().enumerate())
        .map(|(i, n)| n.wrapping_sub(public(bounds.norms[i % nbk] + 1)))
        .collect();
    let w: Vec<u64> = audit.sums.iter().map(|v| v.wrapping_neg()).collect();
    let offsets = [bounds.sum, bounds.sum.wrapping_add(1).wrapping_neg()];
    let (norm_bits, [above, not_below]) = eng.ltz_offsets(&norms, &w, offsets, 64).await?;
    let mut fails = [0u64; 2];
    for (i, b) in norm_bits.iter().enumerate() {
        let side = usize::from(i / nbk >= na);
        fails[side] = fails[side].wrapping_add(public(1)).wrapping_sub(*b);
    }
    for (i, (a, b)) in above.iter().zip(&not_below).enumerate() {
        let side = usize::from(i / AUDIT_SUBSETS >= na);
        fails[side] = fails[side]
            .wrapping_add(*a)
            .wrapping_add(public(1))
            .wrapping_sub(*b);
    }
    Ok(fails)
}

/// The second half of [`check_uploads`]: `ok = [fails - 1 < 0]` per party, where no count
/// exceeds `max_count` (public, from the job's sizes: [`max_fails`]). The comparison is 32 bits
/// wide while counts stay below 2^31 (every job measured so far), else 64 (one round more).
pub async fn fails_ok<T: Transport, C: Correlations>(
    eng: &mut Engine<T, C>,
    fails: [u64; 2],
    max_count: u64,
) -> Result<[u64; 2]> {
    let bits = if max_count < 1 << 31 { 32 } else { 64 };
    let me = eng.me();
    let public = |v: u64| if me == 0 { v } else { 0 };
    let minus_one: Vec<u64> = fails.iter().map(|f| f.wrapping_sub(public(1))).collect();
    let ok = eng.ltz(&minus_one, bits).await?;
    Ok([ok[0], ok[1]])
}
