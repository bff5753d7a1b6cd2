//! The private per-group audit: per-group match figures for both parties, aggregated on shares,
//! with distributed discrete-Laplace noise ([`crate::mpc::dp`]) before anything is revealed.
//!
//! **Inputs.** Each party labels its rows with groups: the `group` column of `entities.tsv` when
//! present, else degree buckets ([`DEGREE_BUCKETS`]). It uploads, secret-shared like its
//! vectors, per row a one-hot group indicator of width `max_groups` (the group *names* stay with
//! the party) and, when the job allows labels (`labelled = true`), the same indicator again for
//! rows of its labelled sample (zeros otherwise), a keyed hash of the labelled partner's id
//! ([`label_hash`], a sentinel [`NO_LABEL`] otherwise), and the keyed hash of the row's own id
//! (the other side's labels are compared with it). The hashes are keyed with the parties'
//! blocking key, which the servers do not hold.
//!
//! **On the servers** (all on shares; nothing is opened to them beyond uniformly masked
//! Beaver openings): the kept pair's partner hash is selected in the explanation's selection
//! round ([`crate::model::align`]); `correct = [partner hash = label hash]` is one equality test
//! (two comparisons); per-group sums of `matched, score, correct` (with the group indicators)
//! and of `matched` (with the labelled-group indicators) are one Beaver product; per-group
//! entity and labelled counts are local sums. Every server then adds its own
//! discrete Laplace noise to its share of every aggregate ([`crate::mpc::dp::add_noise`]) and
//! sends the shares to *both* parties.
//!
//! **Privacy.** Neighbouring inputs differ in one row of one party (added or removed, with its
//! group, match, score and label). Every count has sensitivity 1, the score sum
//! [`JobParams::score_bound`] (at product scale). The budget `epsilon` is split evenly over the
//! `2 x stats` released statistics of a group (both sides; groups of a side are disjoint, so
//! they compose in parallel): each statistic gets `epsilon / (2 stats)`. Suppression of small
//! groups is decided by the parties on the *noisy* entity counts (post-processing, so it costs
//! no budget and leaks nothing more).

use crate::error::{Error, Result};
use crate::model::align::JobParams;
use crate::model::blocking::BlockingKey;
use crate::model::graph::Graph;
use crate::mpc::channel::Transport;
use crate::mpc::correlated::Correlations;
use crate::mpc::engine::Engine;
use crate::mpc::prg::Prg;
use crate::mpc::share::add_public_scalar;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// The audit's settings, part of the job parameters both parties and all servers agree on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditParams {
    /// Run the audit.
    pub enabled: bool,
    /// Total privacy budget of the release (both sides' aggregates).
    pub epsilon: f64,
    /// Add the noise (default). `false` releases exact aggregates: for tests and for parties
    /// that accept no privacy protection among themselves; the output then says so.
    pub noise: bool,
    /// Groups whose noisy entity count is below this are suppressed.
    pub min_group_size: u64,
    /// Most groups a party may declare (the width of its group indicators).
    pub max_groups: usize,
    /// Parties may supply labelled samples (`party run --labelled`): precision and recall.
    pub labelled: bool,
}

impl Default for AuditParams {
    fn default() -> Self {
        AuditParams {
            enabled: false,
            epsilon: 1.0,
            noise: true,
            min_group_size: 20,
            max_groups: 8,
            labelled: false,
        }
    }
}

/// Degree buckets, the default groups: `(lowest degree, name)`.
pub const DEGREE_BUCKETS: [(usize, &str); 5] = [
    (0, "deg 0-1"),
    (2, "deg 2-3"),
    (4, "deg 4-7"),
    (8, "deg 8-15"),
    (16, "deg 16+"),
];

/// The label hash of an unlabelled row: never equal to a [`label_hash`] (below `2^32`) nor to
/// an unmatched row's selected partner hash (0).
pub const NO_LABEL: u64 = 1 << 40;

/// Bit width of the equality test `partner hash - label hash` (|difference| < 2^41).
const EQ_BITS: u32 = 43;

impl AuditParams {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        if self.noise && !(self.epsilon.is_finite() && self.epsilon > 0.0 && self.epsilon <= 100.0)
        {
            return Err(Error::invalid(format!(
                "audit.epsilon must be in (0, 100], got {}",
                self.epsilon
            )));
        }
        if self.max_groups == 0 || self.max_groups > 64 {
            return Err(Error::invalid(format!(
                "audit.max_groups must be 1 to 64, got {}",
                self.max_groups
            )));
        }
        if self.min_group_size > 1 << 32 {
            return Err(Error::invalid("audit.min_group_size is too large"));
        }
        Ok(())
    }

    /// Statistics released per group: entities, matched, score sum; with labels also
    /// labelled, matched-and-labelled, correct.
    pub fn stats(&self) -> usize {
        if self.labelled { 6 } else { 3 }
    }

    /// Words a party uploads per row.
    pub fn in_width(&self) -> usize {
        if !self.enabled {
            return 0;
        }
        self.max_groups
            + if self.labelled {
                self.max_groups + 2
            } else {
                0
            }
    }

    /// Aggregate words each party receives (both sides).
    pub fn output_words(&self) -> usize {
        if self.enabled {
            2 * self.max_groups * self.stats()
        } else {
            0
        }
    }

    /// Upper bound on one request's material for the audit of `na + nb` rows.
    pub fn material_words(&self, na: usize, nb: usize) -> usize {
        if !self.enabled {
            return 0;
        }
        let rows = na.saturating_add(nb);
        rows.saturating_mul(self.stats() * (1 + 2 * self.max_groups) + 64)
    }

    /// The noise scale of each released statistic (`stats` values, in [`AuditParams::stats`]
    /// order), or zeros without noise.
    pub fn scales(&self, p: &JobParams) -> Vec<f64> {
        let s = self.stats();
        if !self.noise {
            return vec![0.0; s];
        }
        let eps = self.epsilon / (2 * s) as f64;
        let score = (p.score_bound() * (1u64 << (2 * p.frac_bits)) as f64).ceil();
        (0..s)
            .map(|i| if i == 2 { score / eps } else { 1.0 / eps })
            .collect()
    }
}

/// A party's audit input: the uploaded words and the group names (kept locally).
#[derive(Clone, Default)]
pub struct AuditInput {
    /// `rows x in_width` words to share.
    pub words: Vec<u64>,
    /// Group names by index.
    pub groups: Vec<String>,
}

impl std::fmt::Debug for AuditInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AuditInput(words={}, groups={}, <redacted>)",
            self.words.len(),
            self.groups.len()
        )
    }
}

/// The keyed hash of an entity id for label comparison, in `[1, 2^32)`.
pub fn label_hash(key: &BlockingKey, id: &str) -> u64 {
    let d = crate::mpc::digest::sha256("ppea audit label v1", &[&key.0, id.as_bytes()]);
    let w = crate::mpc::digest::to_words(&d)[0];
    (w & 0xffff_ffff).max(1)
}

/// Group of every row: the graph's `group` column when any entity of `rows` has one (rows
/// without get `(none)`), else degree buckets. Returns the sorted group names and each row's
/// index; more than `max_groups` groups is an error.
pub fn row_groups(g: &Graph, rows: &[u32], max_groups: usize) -> Result<(Vec<String>, Vec<usize>)> {
    let labelled = rows.iter().any(|&e| g.groups[e as usize].is_some());
    let label = |e: u32| -> String {
        if labelled {
            g.groups[e as usize]
                .clone()
                .unwrap_or_else(|| "(none)".to_string())
        } else {
            String::new()
        }
    };
    let names: Vec<String> = if labelled {
        let set: BTreeSet<String> = rows.iter().map(|&e| label(e)).collect();
        set.into_iter().collect()
    } else {
        DEGREE_BUCKETS.iter().map(|b| b.1.to_string()).collect()
    };
    if names.len() > max_groups {
        return Err(Error::invalid(format!(
            "the graph's group column has {} distinct groups among the aligned entities; the \
             job's audit.max_groups is {max_groups}",
            names.len()
        )));
    }
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let adj = g.adjacency();
    let idx = rows
        .iter()
        .map(|&e| {
            if labelled {
                index[label(e).as_str()]
            } else {
                let deg = adj[e as usize]
                    .iter()
                    .map(|n| n.0)
                    .collect::<BTreeSet<u32>>()
                    .len();
                DEGREE_BUCKETS.iter().rposition(|b| deg >= b.0).unwrap_or(0)
            }
        })
        .collect();
    Ok((names, idx))
}

/// Reads a labelled sample: lines `own_id,other_id`, or `own_id<TAB>other_id` for ids with
/// commas (a first line `own_id,other_id` is a header; `#` starts a comment). Returns `(own entity, other id)`; unknown own ids and
/// malformed lines are errors naming the file and line.
pub fn read_labelled(path: &Path, g: &Graph) -> Result<Vec<(u32, String)>> {
    let lines = crate::model::graph::read_lines(path).map_err(|e| Error::invalid(e.to_string()))?;
    let index = g.index();
    let mut out = Vec::new();
    // Each own entity's line, to refuse a second label (the later would silently win).
    let mut seen: HashMap<u32, usize> = HashMap::new();
    for (i, (no, line)) in lines.iter().enumerate() {
        if i == 0 && line.trim() == "own_id,other_id" {
            continue;
        }
        let sep = if line.contains('\t') { '\t' } else { ',' };
        let (own, other) = line.split_once(sep).ok_or_else(|| {
            Error::invalid(format!(
                "{}:{no}: expected `own_id,other_id`",
                path.display()
            ))
        })?;
        let (own, other) = (own.trim(), other.trim());
        if other.is_empty() || other.contains(sep) {
            return Err(Error::invalid(format!(
                "{}:{no}: expected `own_id,other_id`",
                path.display()
            )));
        }
        let e = *index.get(own).ok_or_else(|| {
            Error::invalid(format!(
                "{}:{no}: unknown entity {own:?} (not in entities.tsv)",
                path.display()
            ))
        })?;
        if let Some(&first) = seen.get(&e) {
            if out.iter().any(|(o, l)| *o == e && l == other) {
                // The same line again: harmless.
                continue;
            }
            return Err(Error::invalid(format!(
                "{}:{no}: entity {own:?} is labelled again (first on line {first}); give each \
                 entity one label",
                path.display()
            )));
        }
        seen.insert(e, *no);
        out.push((e, other.to_string()));
    }
    Ok(out)
}

/// A party's audit input for its upload rows (`rows`: row -> entity).
pub fn prepare(
    g: &Graph,
    rows: &[u32],
    p: &JobParams,
    key: &BlockingKey,
    labelled: &[(u32, String)],
) -> Result<AuditInput> {
    let a = &p.audit;
    if !a.enabled {
        return Ok(AuditInput::default());
    }
    if !labelled.is_empty() && !a.labelled {
        return Err(Error::invalid(
            "a labelled sample was given but the job's audit has labelled = false",
        ));
    }
    let (groups, idx) = row_groups(g, rows, a.max_groups)?;
    let labels: HashMap<u32, &str> = labelled.iter().map(|(e, o)| (*e, o.as_str())).collect();
    let w = a.in_width();
    let mut words = vec![0u64; rows.len() * w];
    for (r, &e) in rows.iter().enumerate() {
        let row = &mut words[r * w..(r + 1) * w];
        row[idx[r]] = 1;
        if a.labelled {
            let at = 2 * a.max_groups;
            match labels.get(&e) {
                Some(other) => {
                    row[a.max_groups + idx[r]] = 1;
                    row[at] = label_hash(key, other);
                }
                None => row[at] = NO_LABEL,
            }
            row[at + 1] = label_hash(key, &g.ids[e as usize]);
        }
    }
    Ok(AuditInput { words, groups })
}

/// Adds the audit input to a party's prepared data (a no-op unless the job audits).
pub fn attach(
    data: &mut crate::model::align::PartyData,
    g: &Graph,
    p: &JobParams,
    key: &BlockingKey,
    labelled: &[(u32, String)],
) -> Result<()> {
    let input = prepare(g, &data.rows, p, key, labelled)?;
    data.audit = input.words.clone();
    data.groups = input.groups.clone();
    Ok(())
}

/// One side's per-row values on the servers (this server's shares), row order of the upload.
pub struct SideValues<'a> {
    /// Matched flags.
    pub matched: &'a [u64],
    /// Matched rows' similarity (0 when unmatched), at product scale.
    pub score: &'a [u64],
    /// With labels: the kept pair's partner hash (0 when unmatched).
    pub partner_hash: &'a [u64],
    /// The party's uploaded audit words, `rows x in_width`.
    pub input: &'a [u64],
}

/// The servers' part: per side, per group, per statistic, this server's share of the noisy
/// aggregate (`2 x max_groups x stats`, side-major). `noise` draws this server's noise. Like
/// [`group_sums`], it does not check the indicators: a job checks them first
/// ([`indicator_fails`]) and gates every match on the outcome.
pub async fn aggregate<T: Transport, C: Correlations>(
    eng: &mut Engine<T, C>,
    p: &JobParams,
    sides: [SideValues<'_>; 2],
    noise: &mut Prg,
) -> Result<Vec<u64>> {
    let mut out = group_sums(eng, p, sides).await?;
    add_group_noise(p, &mut out, noise);
    Ok(out)
}

/// This server's noise on its shares of the aggregates ([`aggregate`]): once per server, on
/// the sums of all its rows (a server split into workers adds it on its workers' summed
/// [`group_sums`], in one worker).
pub fn add_group_noise(p: &JobParams, out: &mut [u64], noise: &mut Prg) {
    let scales = p.audit.scales(p);
    let all: Vec<f64> = (0..2 * p.audit.max_groups)
        .flat_map(|_| scales.iter().copied())
        .collect();
    crate::mpc::dp::add_noise(out, &all, noise);
}

/// [`aggregate`] without the noise: this server's shares of the exact per-group sums over the
/// rows of `sides` (linear in the rows: a split server's workers add theirs up).
/// The indicators are not checked here: the job checks them first ([`indicator_fails`]) and
/// gates every match on the outcome, so a party's malformed indicators weigh only rows whose
/// match figures are all zero.
pub async fn group_sums<T: Transport, C: Correlations>(
    eng: &mut Engine<T, C>,
    p: &JobParams,
    sides: [SideValues<'_>; 2],
) -> Result<Vec<u64>> {
    let a = &p.audit;
    let (g, w, s) = (a.max_groups, a.in_width(), a.stats());
    let rows: Vec<usize> = sides.iter().map(|v| v.matched.len()).collect();
    for v in &sides {
        let n = v.matched.len();
        let labels_ok = !a.labelled || v.partner_hash.len() == n;
        if v.score.len() != n || v.input.len() != n * w || !labels_ok {
            return Err(Error::invalid("audit: per-row values have the wrong size"));
        }
    }
    let n = rows[0] + rows[1];
    let col = |c: usize| -> Vec<u64> {
        sides
            .iter()
            .flat_map(|v| v.input.chunks_exact(w).map(move |r| r[c]))
            .collect()
    };
    // Per-row values summed per group (besides the entity count, which is local).
    let mut values: Vec<Vec<u64>> = vec![
        sides
            .iter()
            .flat_map(|v| v.matched.iter().copied())
            .collect(),
        sides.iter().flat_map(|v| v.score.iter().copied()).collect(),
    ];
    if a.labelled {
        // correct = [partner hash == label hash] = 1 - [d < 0] - [d > 0], and
        // [d > 0] = 1 - [d - 1 < 0]: both against offsets of one value ([`Engine::ltz_offsets`]).
        let label = col(2 * g);
        let partner: Vec<u64> = sides
            .iter()
            .flat_map(|v| v.partner_hash.iter().copied())
            .collect();
        let d: Vec<u64> = partner
            .iter()
            .zip(&label)
            .map(|(x, y)| x.wrapping_sub(*y))
            .collect();
        let (_, [below, not_above]) = eng
            .ltz_offsets(&[], &d, [0, 1u64.wrapping_neg()], EQ_BITS)
            .await?;
        let correct: Vec<u64> = (below.iter().zip(&not_above))
            .map(|(b, na)| na.wrapping_sub(*b))
            .collect();
        values.push(correct);
        // `matched` once more, against the labelled-group indicators: matched AND labelled.
        values.push(values[0].clone());
    }
    let v = values.len();
    let x: Vec<u64> = values.concat();
    let mut ys = vec![0u64; g * v * n];
    for grp in 0..g {
        for j in 0..v {
            // The last value (with labels) meets the labelled-group indicator.
            let ind = if a.labelled && j == v - 1 {
                col(g + grp)
            } else {
                col(grp)
            };
            ys[(grp * v + j) * n..(grp * v + j + 1) * n].copy_from_slice(&ind);
        }
    }
    let prod = eng.mul_fanout(&x, ys, g).await?;
    let mut out = vec![0u64; 2 * g * s];
    for side in 0..2 {
        let range = if side == 0 { 0..rows[0] } else { rows[0]..n };
        for grp in 0..g {
            let at = (side * g + grp) * s;
            let ind = col(grp);
            out[at] = ind[range.clone()]
                .iter()
                .fold(0u64, |t, x| t.wrapping_add(*x));
            let sum = |val: usize| {
                let base = (grp * v + val) * n;
                prod[base + range.start..base + range.end]
                    .iter()
                    .fold(0u64, |t, x| t.wrapping_add(*x))
            };
            // Statistic order: entities, matched, score, labelled, matched_labelled, correct.
            out[at + 1] = sum(0);
            out[at + 2] = sum(1);
            if a.labelled {
                out[at + 3] = col(g + grp)[range.clone()]
                    .iter()
                    .fold(0u64, |t, x| t.wrapping_add(*x));
                out[at + 4] = sum(3);
                out[at + 5] = sum(2);
            }
        }
    }
    Ok(out)
}

/// Checks both parties' indicators on shares, so that no row weighs more than one in any
/// aggregate (a party scaling one row's indicator could otherwise read its partner's
/// correctness through the noise): every group indicator and labelled-group indicator is 0 or 1
/// (`x (x - 1) = 0`, which in `Z_2^64` holds only for 0 and 1), the group indicators of a row
/// sum to 1, the labelled ones to 0 or 1. Returns this server's shares of the number of failed
/// checks per party (`inputs[0]`: party A's audit words, `rows x in_width`), like
/// [`crate::model::upload_check::upload_fails`], whose counts they join: the outcome gates
/// every match and reaches the parties in the status word.
///
/// Nothing is opened: one product, then each product and row sum `v` is tested `v != 0` as
/// `[v < 0] + 1 - [v - 1 < 0]` (64-bit comparisons of one value against two offsets,
/// [`Engine::ltz_offsets`]). An earlier version opened the products and sums,
/// all zero for honest inputs; but a server that shifts its share of an indicator by one makes
/// the opened product `(x + 1) x`, 0 or 2: it read every row's group (test
/// `a_deviating_server_learns_nothing_from_the_indicator_check`).
pub async fn indicator_fails<T: Transport, C: Correlations>(
    eng: &mut Engine<T, C>,
    a: &AuditParams,
    inputs: [&[u64]; 2],
) -> Result<[u64; 2]> {
    let (g, w) = (a.max_groups, a.in_width());
    if inputs.iter().any(|v| v.len() % w != 0) {
        return Err(Error::invalid("audit: per-row values have the wrong size"));
    }
    let me = eng.me();
    let ind = if a.labelled { 2 * g } else { g };
    let total = |r: &[u64]| r.iter().fold(0u64, |t, v| t.wrapping_add(*v));
    let mut x = Vec::new();
    let mut sums = Vec::new();
    for v in inputs {
        for row in v.chunks_exact(w) {
            x.extend_from_slice(&row[..ind]);
            sums.push(total(&row[..g]));
            if a.labelled {
                x.push(total(&row[g..2 * g]));
            }
        }
    }
    let per_row = ind + usize::from(a.labelled);
    let mut y = x.clone();
    add_public_scalar(&mut y, 1u64.wrapping_neg(), me);
    add_public_scalar(&mut sums, 1u64.wrapping_neg(), me);
    let mut v = eng.mul(&x, &y).await?;
    v.extend_from_slice(&sums);
    // v != 0 fails: [v < 0] + [v > 0], and [v > 0] = 1 - [v - 1 < 0] ([`Engine::ltz_offsets`]).
    let (_, [below, not_above]) = eng
        .ltz_offsets(&[], &v, [0, 1u64.wrapping_neg()], 64)
        .await?;
    let rows_a = inputs[0].len() / w;
    let n_prod = x.len();
    let mut fails = [0u64; 2];
    for (i, (b, na)) in below.iter().zip(&not_above).enumerate() {
        let row = if i < n_prod { i / per_row } else { i - n_prod };
        let side = usize::from(row >= rows_a);
        fails[side] = fails[side]
            .wrapping_add(*b)
            .wrapping_add(if me == 0 { 1 } else { 0 })
            .wrapping_sub(*na);
    }
    Ok(fails)
}

/// One group's released figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GroupFigures {
    /// Group name (the other side's groups are numbered).
    pub group: String,
    /// Noisy entity count (null when suppressed).
    pub entities: Option<i64>,
    /// Noisy matched count.
    pub matched: Option<i64>,
    /// `matched / entities`, clamped to [0, 1].
    pub match_rate: Option<f64>,
    /// Mean score of the matched rows (units of `matches.csv`).
    pub mean_score: Option<f64>,
    /// Correct matches among labelled matched rows.
    pub precision: Option<f64>,
    /// Correct matches among labelled rows.
    pub recall: Option<f64>,
    /// Below the minimum size (by the noisy count).
    pub suppressed: bool,
}

/// Largest difference between groups (null with fewer than two comparable groups).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Disparity {
    /// Max minus min match rate.
    pub match_rate: Option<f64>,
    /// Max minus min precision.
    pub precision: Option<f64>,
    /// Max minus min recall.
    pub recall: Option<f64>,
}

/// One side's audit report (`OUT/audit.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditReport {
    /// The job's epsilon (null without noise).
    pub epsilon: Option<f64>,
    /// 0: pure DP.
    pub delta: f64,
    /// `discrete_laplace`, or `none` without noise.
    pub mechanism: String,
    /// The budget this release spent (null: no protection).
    pub spent_epsilon: Option<f64>,
    /// The suppression threshold.
    pub min_group_size: u64,
    /// `a` or `b`.
    pub side: String,
    /// Per group, in group order (unused group slots left out).
    pub groups: Vec<GroupFigures>,
    /// Largest disparities among the groups not suppressed.
    pub disparity: Disparity,
}

/// Both sides' reports from the reconstructed aggregates (`2 x max_groups x stats` words).
/// `names[side]`: that side's group names if known (the other side's groups are numbered).
pub fn finish(
    totals: &[u64],
    p: &JobParams,
    names: [Option<&[String]>; 2],
) -> Result<[AuditReport; 2]> {
    let a = &p.audit;
    let (g, s) = (a.max_groups, a.stats());
    if totals.len() != 2 * g * s {
        return Err(Error::invalid("audit aggregates have the wrong size"));
    }
    let norm = (1u64 << (2 * p.frac_bits)) as f64 * p.model.max_score();
    let side_report = |side: usize| -> AuditReport {
        let mut groups = Vec::new();
        for grp in 0..g {
            let v: Vec<i64> = totals[(side * g + grp) * s..(side * g + grp + 1) * s]
                .iter()
                .map(|&x| x as i64)
                .collect();
            let name = match names[side] {
                Some(n) => match n.get(grp) {
                    Some(n) => n.clone(),
                    None => continue,
                },
                None => format!("group {}", grp + 1),
            };
            let ratio = |num: i64, den: i64| -> Option<f64> {
                (den > 0).then(|| (num as f64 / den as f64).clamp(0.0, 1.0))
            };
            let suppressed = v[0] < a.min_group_size as i64 || v[0] <= 0;
            if suppressed {
                groups.push(GroupFigures {
                    group: name,
                    entities: None,
                    matched: None,
                    match_rate: None,
                    mean_score: None,
                    precision: None,
                    recall: None,
                    suppressed,
                });
                continue;
            }
            let (precision, recall) = if a.labelled {
                (ratio(v[5], v[4]), ratio(v[5], v[3]))
            } else {
                (None, None)
            };
            groups.push(GroupFigures {
                group: name,
                entities: Some(v[0]),
                matched: Some(v[1].max(0)),
                match_rate: ratio(v[1], v[0]),
                mean_score: (v[1] > 0).then(|| (v[2] as f64 / norm / v[1] as f64).clamp(-1.0, 1.0)),
                precision,
                recall,
                suppressed,
            });
        }
        let spread = |f: fn(&GroupFigures) -> Option<f64>| -> Option<f64> {
            let vals: Vec<f64> = groups.iter().filter_map(f).collect();
            (vals.len() >= 2).then(|| {
                vals.iter().cloned().fold(f64::MIN, f64::max)
                    - vals.iter().cloned().fold(f64::MAX, f64::min)
            })
        };
        let disparity = Disparity {
            match_rate: spread(|x| x.match_rate),
            precision: spread(|x| x.precision),
            recall: spread(|x| x.recall),
        };
        AuditReport {
            epsilon: a.noise.then_some(a.epsilon),
            delta: 0.0,
            mechanism: if a.noise { "discrete_laplace" } else { "none" }.to_string(),
            spent_epsilon: a.noise.then_some(a.epsilon),
            min_group_size: a.min_group_size,
            side: ["a", "b"][side].to_string(),
            groups,
            disparity,
        }
    };
    Ok([side_report(0), side_report(1)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> Graph {
        let mut g = Graph::default();
        for i in 0..6 {
            g.add_entity(&format!("e{i}"), "n", None, None);
        }
        g.triples = vec![(0, 0, 1), (0, 0, 2), (0, 0, 3), (0, 0, 4), (5, 0, 5)];
        g.relations = vec!["r".into()];
        g
    }

    #[test]
    fn degree_buckets_are_the_default_groups() {
        let g = graph();
        let (names, idx) = row_groups(&g, &[0, 1, 5], 8).unwrap();
        assert_eq!(names.len(), 5);
        assert_eq!(idx, vec![2, 0, 0]);
    }

    #[test]
    fn group_column_overrides_and_is_bounded() {
        let mut g = graph();
        g.groups[0] = Some("x".into());
        g.groups[1] = Some("y".into());
        let (names, idx) = row_groups(&g, &[0, 1, 2], 8).unwrap();
        assert_eq!(names, vec!["(none)", "x", "y"]);
        assert_eq!(idx, vec![1, 2, 0]);
        let e = row_groups(&g, &[0, 1, 2], 2).unwrap_err().to_string();
        assert!(e.contains("3 distinct groups"), "{e}");
    }

    #[test]
    fn labelled_file_errors_name_the_line() {
        let g = graph();
        let dir = std::env::temp_dir().join(format!("ppea-labels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("l.csv");
        std::fs::write(&f, "own_id,other_id\ne1,x\ne9,y\n").unwrap();
        let e = read_labelled(&f, &g).unwrap_err().to_string();
        assert!(e.contains("l.csv:3") && e.contains("e9"), "{e}");
        std::fs::write(&f, "e1,x\ne2\n").unwrap();
        let e = read_labelled(&f, &g).unwrap_err().to_string();
        assert!(e.contains("l.csv:2"), "{e}");
        std::fs::write(&f, "e1,x\n").unwrap();
        assert_eq!(read_labelled(&f, &g).unwrap(), vec![(1, "x".to_string())]);
        std::fs::write(&f, "e1\tx,y\n").unwrap();
        assert_eq!(read_labelled(&f, &g).unwrap(), vec![(1, "x,y".to_string())]);
        std::fs::write(&f, "own_id,other_id\ne1,x\ne1,x\n").unwrap();
        assert_eq!(read_labelled(&f, &g).unwrap(), vec![(1, "x".to_string())]);
        std::fs::write(&f, "own_id,other_id\ne1,x\ne2,x\ne1,y\n").unwrap();
        let e = read_labelled(&f, &g).unwrap_err().to_string();
        assert!(
            e.contains("l.csv:4") && e.contains("first on line 2"),
            "{e}"
        );
    }

    #[test]
    fn small_groups_are_suppressed_and_disparity_computed() {
        let p = JobParams {
            audit: AuditParams {
                enabled: true,
                max_groups: 2,
                min_group_size: 10,
                ..AuditParams::default()
            },
            ..JobParams::default()
        };
        // Side a: group 0 has 40 entities, 30 matched; group 1 has 5. Side b: 20/10, 20/20.
        let t: Vec<u64> = [[40, 30, 0], [5, 5, 0], [20, 10, 0], [20, 20, 0]].concat();
        let names = vec!["x".to_string(), "y".to_string()];
        let [ra, rb] = finish(&t, &p, [Some(&names), None]).unwrap();
        assert!(!ra.groups[0].suppressed && ra.groups[1].suppressed);
        assert_eq!(ra.groups[1].entities, None);
        assert_eq!(ra.groups[0].match_rate, Some(0.75));
        assert_eq!(ra.disparity.match_rate, None);
        assert_eq!(rb.groups[0].group, "group 1");
        assert_eq!(rb.disparity.match_rate, Some(0.5));
        assert_eq!(ra.mechanism, "discrete_laplace");
    }

    use crate::mpc::channel::{MemoryTransport, Transport, memory_network};
    use crate::mpc::dealer::{Dealer, DealerClient, serve};
    use crate::mpc::prg::Seed;
    use crate::mpc::protocol::Session;
    use crate::mpc::share::share_with;
    use std::sync::{Arc, Mutex};

    /// A transport that records everything this server receives from the other servers, and
    /// (in `opened`) every broadcast exchange's words added up over all servers: what an
    /// opening in that round reveals (pairwise rounds are OT messages, not openings).
    struct Recording {
        inner: MemoryTransport,
        log: Arc<Mutex<Vec<u64>>>,
        opened: Arc<Mutex<Vec<u64>>>,
    }

    impl Transport for Recording {
        fn me(&self) -> usize {
            self.inner.me()
        }
        fn servers(&self) -> usize {
            self.inner.servers()
        }
        async fn exchange(&mut self, payload: Vec<u64>) -> Result<Vec<Vec<u64>>> {
            let got = self.inner.exchange(payload).await?;
            let me = self.me();
            let mut l = self.log.lock().unwrap();
            for (i, m) in got.iter().enumerate() {
                if i != me {
                    l.extend_from_slice(m);
                }
            }
            let sum = crate::mpc::ring::sum_all(got[me].len(), got.iter().map(Vec::as_slice));
            self.opened.lock().unwrap().extend(sum);
            Ok(got)
        }
        async fn exchange_each(
            &mut self,
            payloads: Vec<Vec<u64>>,
            expected: Vec<usize>,
        ) -> Result<Vec<Vec<u64>>> {
            let got = self.inner.exchange_each(payloads, expected).await?;
            let mut l = self.log.lock().unwrap();
            got.iter().for_each(|m| l.extend_from_slice(m));
            Ok(got)
        }
        async fn send_dealer(&mut self, payload: Vec<u64>) -> Result<()> {
            self.inner.send_dealer(payload).await
        }
        async fn recv_dealer(&mut self, expected: usize) -> Result<Vec<u64>> {
            self.inner.recv_dealer(expected).await
        }
    }

    /// Plaintext per-row values of both sides: matched, score, partner hash, matched AND
    /// labelled, and the audit words.
    struct Plain {
        matched: [Vec<u64>; 2],
        score: [Vec<u64>; 2],
        partner: [Vec<u64>; 2],
        ml: [Vec<u64>; 2],
        input: [Vec<u64>; 2],
    }

    fn plain(p: &JobParams, n: usize, prg: &mut Prg) -> Plain {
        let a = &p.audit;
        let side = |prg: &mut Prg| {
            let (mut m, mut s, mut ph, mut ml, mut inp) = (vec![], vec![], vec![], vec![], vec![]);
            for _ in 0..n {
                let r = prg.next_u64();
                let matched = r & 1;
                let labelled = (r >> 1) & 1;
                let own = 1 + (r >> 8) % 50;
                // Half of the labelled matched rows point at their label.
                let label = if labelled == 1 {
                    1 + (r >> 20) % 50
                } else {
                    NO_LABEL
                };
                let partner = if matched == 1 {
                    if (r >> 2) & 1 == 1 {
                        label.min(60)
                    } else {
                        1 + (r >> 30) % 50
                    }
                } else {
                    0
                };
                m.push(matched);
                s.push(matched * ((r >> 40) % 1000));
                ph.push(partner);
                ml.push(matched * labelled);
                let mut row = vec![0u64; a.in_width()];
                let grp = ((r >> 3) % a.max_groups as u64) as usize;
                row[grp] = 1;
                if a.labelled {
                    row[a.max_groups + grp] = labelled;
                    row[2 * a.max_groups] = label;
                    row[2 * a.max_groups + 1] = own;
                }
                inp.extend(row);
            }
            (m, s, ph, ml, inp)
        };
        let (a0, b0) = (side(prg), side(prg));
        Plain {
            matched: [a0.0, b0.0],
            score: [a0.1, b0.1],
            partner: [a0.2, b0.2],
            ml: [a0.3, b0.3],
            input: [a0.4, b0.4],
        }
    }

    /// The aggregates computed in the clear.
    fn reference(p: &JobParams, x: &Plain) -> Vec<u64> {
        let a = &p.audit;
        let (g, w, s) = (a.max_groups, a.in_width(), a.stats());
        let mut out = vec![0u64; 2 * g * s];
        for side in 0..2 {
            for (i, row) in x.input[side].chunks_exact(w).enumerate() {
                let grp = row[..g].iter().position(|&v| v == 1).unwrap();
                let o = &mut out[(side * g + grp) * s..(side * g + grp + 1) * s];
                o[0] += 1;
                o[1] += x.matched[side][i];
                o[2] += x.score[side][i];
                if a.labelled {
                    o[3] += row[g + grp];
                    o[4] += x.ml[side][i];
                    o[5] += u64::from(x.partner[side][i] == row[2 * g]);
                }
            }
        }
        out
    }

    /// Runs [`aggregate`] on `k` servers over a recording network; returns the revealed
    /// aggregates and what server 0 received. Server `s` draws its noise from `noise_seed(s)`.
    fn run(
        k: usize,
        p: &JobParams,
        x: &Plain,
        noise_seed: impl Fn(usize) -> Prg,
    ) -> (Vec<u64>, Vec<u64>) {
        try_run(k, p, x, noise_seed).unwrap()
    }

    fn try_run(
        k: usize,
        p: &JobParams,
        x: &Plain,
        noise_seed: impl Fn(usize) -> Prg,
    ) -> Result<(Vec<u64>, Vec<u64>)> {
        let mut prg = Prg::new(&Seed([5; 32]), 9);
        let sh = |v: &Vec<u64>, prg: &mut Prg| share_with(v, k, prg);
        let per: Vec<[Vec<Vec<u64>>; 2]> = [&x.matched, &x.score, &x.partner, &x.input]
            .iter()
            .map(|vals| {
                [0, 1].map(|side| {
                    sh(&vals[side], &mut prg)
                        .into_iter()
                        .map(|s| s.into_inner())
                        .collect()
                })
            })
            .collect();
        let log = Arc::new(Mutex::new(Vec::new()));
        let rt = crate::mpc::local::runtime().unwrap();
        let out = rt.block_on(async {
            let (transports, mut dnet) = memory_network(k);
            let dealer = Dealer::new(k).unwrap();
            let dealer_task = tokio::spawn(async move { serve(dealer, &mut dnet).await });
            let mut tasks = Vec::new();
            for (s, t) in transports.into_iter().enumerate() {
                let t = Recording {
                    inner: t,
                    log: if s == 0 {
                        log.clone()
                    } else {
                        Arc::new(Mutex::new(Vec::new()))
                    },
                    opened: Arc::new(Mutex::new(Vec::new())),
                };
                let mut session = Session::new(t);
                let client = DealerClient::connect(&mut session).await.unwrap();
                let mut eng = Engine::new(session, client);
                let v: Vec<[Vec<u64>; 2]> = per
                    .iter()
                    .map(|x| [x[0][s].clone(), x[1][s].clone()])
                    .collect();
                let p = p.clone();
                let mut noise = noise_seed(s);
                tasks.push(tokio::spawn(async move {
                    let side = |i: usize| SideValues {
                        matched: &v[0][i],
                        score: &v[1][i],
                        partner_hash: &v[2][i],
                        input: &v[3][i],
                    };
                    aggregate(&mut eng, &p, [side(0), side(1)], &mut noise).await
                }));
            }
            let mut outs = Vec::new();
            for t in tasks {
                outs.push(t.await.unwrap()?);
            }
            dealer_task.await.unwrap()?;
            Ok::<_, Error>(outs)
        })?;
        let total = crate::mpc::ring::sum_all(out[0].len(), out.iter().map(Vec::as_slice));
        let seen = log.lock().unwrap().clone();
        Ok((total, seen))
    }

    /// Runs [`indicator_fails`] on `k` servers over a recording network, server 0 adding
    /// `shift` to its share of every indicator (a deviating server; 0 for an honest one).
    /// Returns the failure counts per party (opened here, by the test) and every exchange's
    /// words added up over the servers (what the rounds would reveal if they were openings).
    fn run_checks(k: usize, p: &JobParams, x: &Plain, shift: u64) -> ([u64; 2], Vec<u64>) {
        let mut prg = Prg::fresh();
        let w = p.audit.in_width();
        let ind = if p.audit.labelled {
            2 * p.audit.max_groups
        } else {
            p.audit.max_groups
        };
        let shares: [Vec<Vec<u64>>; 2] = [0, 1].map(|side| {
            let mut sh: Vec<Vec<u64>> = share_with(&x.input[side], k, &mut prg)
                .into_iter()
                .map(|s| s.into_inner())
                .collect();
            for row in sh[0].chunks_exact_mut(w) {
                row[..ind]
                    .iter_mut()
                    .for_each(|v| *v = v.wrapping_add(shift));
            }
            sh
        });
        let opened = Arc::new(Mutex::new(Vec::new()));
        let rt = crate::mpc::local::runtime().unwrap();
        let fails = rt.block_on(async {
            let (transports, mut dnet) = memory_network(k);
            let dealer_task = tokio::spawn(async move { serve(Dealer::new(k)?, &mut dnet).await });
            let mut tasks = Vec::new();
            for (s, t) in transports.into_iter().enumerate() {
                let t = Recording {
                    inner: t,
                    log: Arc::new(Mutex::new(Vec::new())),
                    opened: if s == 0 {
                        opened.clone()
                    } else {
                        Arc::new(Mutex::new(Vec::new()))
                    },
                };
                let mut session = Session::new(t);
                let client = DealerClient::connect(&mut session).await.unwrap();
                let mut eng = Engine::new(session, client);
                let (a, b) = (shares[0][s].clone(), shares[1][s].clone());
                let p = p.clone();
                tasks.push(tokio::spawn(async move {
                    let f = indicator_fails(&mut eng, &p.audit, [&a, &b]).await?;
                    // The test opens the counts.
                    eng.open(&f).await
                }));
            }
            let mut outs = Vec::new();
            for t in tasks {
                outs.push(t.await.unwrap().unwrap());
            }
            dealer_task.await.unwrap().unwrap();
            outs
        });
        assert!(fails.iter().all(|f| f == &fails[0]));
        // The last exchange is the test's own opening of the two counts: not the job's.
        let mut seen = opened.lock().unwrap().clone();
        seen.truncate(seen.len().saturating_sub(2));
        ([fails[0][0], fails[0][1]], seen)
    }

    /// A party that scales or duplicates a row's group indicator (to read one row's figures
    /// through the noise) fails the check, and the failure is counted against it alone;
    /// honest inputs pass whatever they hold. The job gates every match on the outcome
    /// (`tests/attacks.rs` runs it whole).
    #[test]
    fn malformed_indicators_are_counted_against_their_party() {
        let p = audited(true, true, 1.0);
        let g = p.audit.max_groups;
        let w = p.audit.in_width();
        for k in [2, 3] {
            let x = plain(&p, 50, &mut Prg::new(&Seed([1; 32]), 0));
            assert_eq!(run_checks(k, &p, &x, 0).0, [0, 0], "honest inputs");
        }
        let cases: [(usize, usize, u64); 4] = [
            (0, 3, 20),    // scaled group indicator
            (1, 5, 1),     // a second group
            (0, g + 1, 7), // scaled labelled indicator
            (1, g, 1),     // two labelled groups (with the next one)
        ];
        for (side, row, value) in cases {
            let mut x = plain(&p, 50, &mut Prg::new(&Seed([1; 32]), 0));
            let r = &mut x.input[side][row * w..(row + 1) * w];
            if value == 1 {
                // Set every indicator of the kind to 1.
                let at = if row == 5 { 0 } else { g };
                r[at..at + g].iter_mut().for_each(|v| *v = 1);
            } else {
                let at = if row == 3 { 0 } else { g };
                let i = r[at..at + g].iter().position(|&v| v == 1).unwrap_or(0);
                r[at + i] = value;
            }
            let fails = run_checks(2, &p, &x, 0).0;
            assert!(fails[side] > 0, "side {side}, row {row}: {fails:?}");
            assert_eq!(fails[1 - side], 0, "side {side}, row {row}");
        }
    }

    /// The attack an earlier version allowed: a server shifts its share of every indicator by
    /// one, so that the check's products become `(x + 1) x` (0 or 2 by the row's group). What
    /// it sees must still be uniform: nothing is opened but masked values, whatever the
    /// parties' groups. (With the products opened, as before, this fails: mutation-checked.)
    #[test]
    fn a_deviating_server_learns_nothing_from_the_indicator_check() {
        let p = audited(true, true, 1.0);
        for seed in [4u8, 5] {
            let x = plain(&p, 400, &mut Prg::new(&Seed([seed; 32]), 0));
            let (fails, seen) = run_checks(2, &p, &x, 1);
            // The shifted shares fail the check (the job is refused, for both parties) ...
            assert!(fails[0] > 0 && fails[1] > 0, "{fails:?}");
            // ... and every round's words, added up over the servers, look uniform.
            assert!(seen.len() > 10_000, "{}", seen.len());
            assert_uniform(&seen, "opened during the indicator check");
        }
    }

    fn audited(labelled: bool, noise: bool, epsilon: f64) -> JobParams {
        JobParams {
            audit: AuditParams {
                enabled: true,
                labelled,
                noise,
                epsilon,
                max_groups: 3,
                ..AuditParams::default()
            },
            ..JobParams::default()
        }
    }

    #[test]
    fn aggregates_equal_plaintext_without_noise() {
        for (k, labelled) in [(2, true), (3, true), (2, false)] {
            let p = audited(labelled, false, 1.0);
            let x = plain(&p, 200, &mut Prg::new(&Seed([1; 32]), k as u64));
            let (got, _) = run(k, &p, &x, |s| Prg::new(&Seed([2; 32]), s as u64));
            assert_eq!(got, reference(&p, &x), "k = {k}, labelled = {labelled}");
        }
        // With noise the figures differ (the check above can fail).
        let p = audited(true, true, 1.0);
        let x = plain(&p, 200, &mut Prg::new(&Seed([1; 32]), 2));
        let (got, _) = run(2, &p, &x, |s| Prg::new(&Seed([2; 32]), s as u64));
        assert_ne!(got, reference(&p, &x));
    }

    /// The revealed noise (revealed minus true, over many seeded runs) follows the sum of one
    /// discrete Laplace sample per server, at the scale the budget gives.
    #[test]
    fn revealed_noise_follows_the_intended_distribution() {
        let k = 2;
        // 3 statistics, 2 sides: each count gets epsilon / 6 = 0.5, scale b = 2.
        let p = audited(false, true, 3.0);
        let b = p.audit.scales(&p)[0];
        assert!((b - 2.0).abs() < 1e-12, "{b}");
        let x = plain(&p, 6, &mut Prg::new(&Seed([1; 32]), 0));
        let truth = reference(&p, &x);
        let s = p.audit.stats();
        let mut noise = Vec::new();
        for it in 0..400u64 {
            let (got, _) = run(k, &p, &x, |srv| {
                Prg::new(&Seed([7; 32]), it * 8 + srv as u64)
            });
            // The entity and matched counts of every group and side (score noise has another
            // scale).
            for (i, (g, t)) in got.iter().zip(&truth).enumerate() {
                if i % s != 2 {
                    noise.push(g.wrapping_sub(*t) as i64);
                }
            }
        }
        // pmf of the sum of two independent samples.
        let one = |x: i64| crate::mpc::dp::discrete_laplace_pmf(b, x);
        let two = |x: i64| (-200..=200).map(|y| one(y) * one(x - y)).sum::<f64>();
        let (chi, dof) = crate::mpc::dp::tests::chi_square(&noise, two, 8);
        assert_eq!(dof, 16);
        // 0.999 quantile of chi-square with 16 degrees of freedom: 39.25.
        assert!(chi < 39.25, "chi-square {chi} over {} samples", noise.len());
        // A single server's noise alone would be rejected (the test can fail).
        let (wrong, _) = crate::mpc::dp::tests::chi_square(&noise, one, 8);
        assert!(wrong > 39.25, "chi-square {wrong}");
    }

    /// What a server receives during the audit is uniform (masked openings only): no aggregate,
    /// noisy or not, and nothing about group membership is opened to the servers; its share of
    /// the group indicators is uniform too.
    #[test]
    fn a_servers_view_is_uniform() {
        let p = audited(true, true, 1.0);
        let x = plain(&p, 600, &mut Prg::new(&Seed([4; 32]), 0));
        let (_, seen) = run(2, &p, &x, |s| Prg::new(&Seed([2; 32]), s as u64));
        assert!(seen.len() > 1000);
        assert_uniform(&seen, "received during the audit");
        // Shares of the one-hot group indicators (low-entropy words) as either server holds them.
        let mut prg = Prg::new(&Seed([6; 32]), 0);
        for share in share_with(&x.input[0], 2, &mut prg) {
            assert_uniform(&share.into_inner(), "a share of the audit words");
        }
        // The check detects structure: the indicators themselves are far from uniform.
        assert!(std::panic::catch_unwind(|| assert_uniform(&x.input[0], "plain")).is_err());
    }

    fn assert_uniform(words: &[u64], what: &str) {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let n = bytes.len() as f64;
        let mut hist = [0f64; 256];
        for b in &bytes {
            hist[*b as usize] += 1.0;
        }
        let e = n / 256.0;
        let chi: f64 = hist.iter().map(|h| (h - e) * (h - e) / e).sum();
        // 255 degrees of freedom: mean 255, sd 22.6; 400 is over six standard deviations.
        assert!(chi < 400.0, "{what}: chi-square {chi:.1} over {n} bytes");
    }
}
