//! The alignment job: party-side preparation, the secure computation on the servers, the
//! party-side reading of results, and a plaintext reference of exactly the same model.
//!
//! **Score.** For a candidate pair `(a, b)`, `S(a, b) = <z_a, z_b>` (see [`crate::model::features`]):
//! name similarity plus weighted level-1 and cross-graph-attention similarity, computed on the
//! servers as one bilinear form over *both* directions' candidate pairs (each matrix opened once).
//! Products are kept at scale `2^(2f)`, so everything after is exact integer arithmetic.
//!
//! **Hubness correction (CSLS with k = 1).** `r_a` is the best score of `a` over its
//! candidates, `r_b` likewise; a ranks its candidates by `2 S(a, b) - r_b`, b by
//! `2 S(a, b) - r_a`, and a pair's reported score is `2 S(a, b) - r_a - r_b`. A "hub" entity that
//! is close to everything no longer wins every row.
//!
//! **Matching.** Best candidate per entity on each side (a one-hot marker from the secure argmax),
//! mutual best (the product of the two markers of the same pair), and a threshold on the pair's
//! score. Each matched pair gets a random link token (a sum of per-server random shares, so no
//! server knows it), delivered to both sides. Partner ids are exchanged only when the job says
//! both parties opted in.
//!
//! Each party receives, per uploaded row, shares of: `matched`, `score` (the match's similarity
//! `S(a, b)`, reported normalised to [-1, 1]), `token`; with
//! `reveal_best` (evaluation jobs) also its best candidate's row and score; with
//! `share_partner_ids` the partner's id; with `explain` each model block's contribution to the
//! match ([`crate::model::explain`]). After the rows, the status word and, with the audit, both
//! sides' noisy per-group aggregates ([`crate::model::audit`]). Nothing else leaves the servers.

use crate::error::{Error, Result};
use crate::model::anchors::Structure;
use crate::model::blocking::{BlockingKey, BlockingParams, Candidates, Tokens, tokens};
use crate::model::candidate_gather::gather_candidates;
use crate::model::features::ModelParams;
use crate::model::graph::Graph;
use crate::model::shard::{ShardPairs, Shards, pair_ranges};
use crate::model::upload_check::{UploadBounds, fails_ok, max_fails, upload_fails};
use crate::model::upload_rows::UploadRows;
use crate::mpc::channel::Transport;
use crate::mpc::correlated::Correlations;
use crate::mpc::engine::Engine;
use crate::mpc::fixed::FixedPoint;
use crate::mpc::mesh::{At, Mesh, Solo};
use crate::mpc::pairs::Pairs;
use crate::mpc::prg::{Prg, Seed};
use crate::mpc::protocol::cpu_bound;
use crate::mpc::row_share::RowShare;

/// Words reserved for a partner id when ids are exchanged (ids up to 64 bytes).
pub const ID_WORDS: usize = 8;

/// Most CSLS iterations a job may ask for.
pub const MAX_CSLS_ITERATIONS: usize = 4;

/// Everything the parties and servers of one job must agree on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobParams {
    /// The party-local model.
    pub model: ModelParams,
    /// Candidate generation.
    pub blocking: BlockingParams,
    /// Fixed-point fractional bits of uploaded vectors.
    pub frac_bits: u32,
    /// Minimum pair score (`2 S - r_a - r_b`) of a reported match.
    pub min_score: f64,
    /// Both parties opted in to learn each other's ids for matched pairs.
    pub share_partner_ids: bool,
    /// Evaluation jobs: each party also learns its best candidate's row and score.
    pub reveal_best: bool,
    /// Rounds of 1-to-1 assignment after the mutual best ([`crate::model::assign`]; 0: none).
    pub assignment_rounds: usize,
    /// Each party also receives, per matched row, the contribution of every model block to
    /// the pair's score ([`crate::model::explain`]).
    pub explain: bool,
    /// The private per-group audit ([`crate::model::audit`]).
    pub audit: crate::model::audit::AuditParams,
    /// CSLS normalisations of the candidate scores before the best candidate is chosen (1:
    /// `2S - r_a - r_b` with row maxima `r`; each more applies the same step to the result, one
    /// more row-max tournament and 2 more comparison bits). `min_score` applies to the last.
    pub csls_iterations: usize,
    /// Where the correlated randomness comes from: `dealer` (default), `ot` or `replicated`
    /// (the servers alone, [`crate::mpc::source`]).
    pub correlation: crate::mpc::source::Correlation,
}

impl Default for JobParams {
    fn default() -> Self {
        JobParams {
            model: ModelParams::default(),
            blocking: BlockingParams::default(),
            frac_bits: 16,
            min_score: -0.5,
            share_partner_ids: false,
            reveal_best: false,
            assignment_rounds: 0,
            explain: false,
            audit: crate::model::audit::AuditParams::default(),
            csls_iterations: 1,
            correlation: crate::mpc::source::Correlation::Dealer,
        }
    }
}

/// Whether every score of rows that pass the upload range checks is within a quarter of the
/// slot prime ([`crate::mpc::modular`]), so that scores modulo the prime lift back exactly
/// (the bound is about `2^35` at 16 fractional bits, the prime about `2^47`).
fn scores_fit_mod(p: &JobParams) -> bool {
    let bound = p.score_bound() * (1u64 << (2 * p.frac_bits)) as f64;
    bound < (crate::mpc::he::slots::T / 4) as f64
}

impl JobParams {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        self.model.validate().map_err(Error::invalid)?;
        FixedPoint::new(self.frac_bits)?;
        if self.blocking.candidates == 0 || self.blocking.candidates > 1024 {
            return Err(Error::invalid(format!(
                "blocking.candidates must be 1 to 1024, got {}",
                self.blocking.candidates
            )));
        }
        if self.blocking.pair_tokens > crate::model::blocking::MAX_PAIR_TOKENS {
            return Err(Error::invalid(format!(
                "blocking.pair_tokens must be at most {}, got {}",
                crate::model::blocking::MAX_PAIR_TOKENS,
                self.blocking.pair_tokens
            )));
        }
        if !self.min_score.is_finite() || self.min_score.abs() > 100.0 {
            return Err(Error::invalid(format!(
                "min_score must be within [-100, 100], got {}",
                self.min_score
            )));
        }
        if !self.fits_64_bits() {
            return Err(Error::invalid(format!(
                "frac_bits = {} leaves no room, in 64-bit arithmetic, for scores up to {:.1} with \
                 min_score = {} and for the range check of uploads with model.dim = {}; use at most {}",
                self.frac_bits,
                self.model.max_score(),
                self.min_score,
                self.model.dim,
                self.max_frac_bits()
            )));
        }
        if !(1..=MAX_CSLS_ITERATIONS).contains(&self.csls_iterations) {
            return Err(Error::invalid(format!(
                "csls_iterations must be 1 to {MAX_CSLS_ITERATIONS}, got {}",
                self.csls_iterations
            )));
        }
        if self.csls_iterations > 1 && self.assignment_rounds > 0 {
            return Err(Error::invalid(
                "csls_iterations above 1 does not combine with assignment_rounds yet; use one",
            ));
        }
        self.audit.validate()?;
        crate::model::assign::check(self)
    }

    /// True when every compared value fits the comparisons and the upload range check is sound
    /// ([`UploadBounds::sound`]) at these fractional bits.
    fn fits_64_bits(&self) -> bool {
        self.score_bits() <= 64 && UploadBounds::new(self).sound()
    }

    /// The most fractional bits these parameters allow.
    pub fn max_frac_bits(&self) -> u32 {
        (1..=62)
            .rev()
            .find(|&f| {
                JobParams {
                    frac_bits: f,
                    ..self.clone()
                }
                .fits_64_bits()
            })
            .unwrap_or(0)
    }

    /// Bit width of the secure comparisons: it must hold every value the job compares, at
    /// product scale `2^(2f)`, with its sign. With `M` = [`ModelParams::max_score`], scores are
    /// `|S| <= M` and row maxima `|r| <= M`, so ranking scores `2S - r` lie in `[-3M, 3M]` and
    /// their differences in `[-6M, 6M]`; pair scores `2S - r_a - r_b` lie in `[-4M, 4M]` and
    /// are compared with the threshold, so `|score - min_score| <= 4M + |min_score|`.
    ///
    /// [`ModelParams::max_score`]: crate::model::features::ModelParams::max_score
    pub fn compare_bits(&self) -> u32 {
        self.score_bits().min(64)
    }

    /// Bits the compared values need (validation refuses parameters above 64).
    fn score_bits(&self) -> u32 {
        self.spread_bits() + 2 * self.frac_bits + 2
    }

    /// The largest score `|<z_a, z_b>|` of rows that pass the upload range checks, in real
    /// units: by Cauchy-Schwarz per block, `sum_b (n_b + sqrt(d_b) / 2^(f+1))^2`, which is
    /// [`ModelParams::max_score`](crate::model::features::ModelParams::max_score) plus the
    /// fixed-point rounding the checks allow (negligible at 16 fractional bits, not at 4).
    pub fn score_bound(&self) -> f64 {
        let half_ulp = 0.5 / (1u64 << self.frac_bits) as f64;
        self.model
            .blocks()
            .iter()
            .map(|&(d, n)| (n + (d as f64).sqrt() * half_ulp).powi(2))
            .sum()
    }

    /// Integer bits of the largest compared magnitude, `max(6M, 4M + |min_score|)` with `M` the
    /// [`JobParams::score_bound`] (each CSLS iteration beyond the first multiplies the bound
    /// on the normalised scores by 4: `max(6 4^(T-1) M, 4^T M + |min_score|)`).
    fn spread_bits(&self) -> u32 {
        let m = self.score_bound() * 4f64.powi(self.csls_iterations.max(1) as i32 - 1);
        let widest = (6.0 * m).max(4.0 * m + self.min_score.abs());
        widest.log2().ceil().max(0.0) as u32
    }

    /// The threshold at product scale.
    pub fn min_score_fixed(&self) -> u64 {
        ((self.min_score * (1u64 << (2 * self.frac_bits)) as f64).round() as i64) as u64
    }

    /// An upper bound on the material words any one correlated-randomness request of a job with
    /// `na` and `nb` rows can need (the bilinear form's masks and pair products, comparisons and
    /// products over all candidate slots, partner-id selection). The dealer refuses requests
    /// above it, so a server cannot make it generate more than the job's declared sizes allow.
    pub fn max_material_words(&self, na: usize, nb: usize) -> usize {
        use crate::model::upload_check::AUDIT_SUBSETS;
        use crate::mpc::correlated::MAX_BLOCKS;
        let rows = na.saturating_add(nb);
        let slots = rows.saturating_mul(self.blocking.candidates);
        // Bilinear masks and block norms; the audit's 64-bit comparisons (at most 8 words of
        // material per compared value, bit conversion included); comparisons and products over
        // the candidate slots (partner ids: fan-out ID_WORDS).
        rows.saturating_mul(self.model.width() + 2 * MAX_BLOCKS)
            .saturating_add(rows.saturating_mul(8 * (MAX_BLOCKS + 2 * AUDIT_SUBSETS)))
            .saturating_add(slots.saturating_mul(20 * (ID_WORDS + 1)))
            .saturating_add(self.explain_material_words(na, nb))
            .saturating_add(self.audit.material_words(na, nb))
            .saturating_add(1 << 16)
    }

    /// Material for explanations beyond the default job: the split bilinear form's per-block
    /// `C` (`blocks x pairs` instead of `pairs`), and the selection of the kept pair's block
    /// products (one Beaver product over every slot with fan-out `blocks`, hence
    /// `slots x (1 + 2 blocks)`).
    fn explain_material_words(&self, na: usize, nb: usize) -> usize {
        if !self.explain {
            return 0;
        }
        let slots = na
            .saturating_add(nb)
            .saturating_mul(self.blocking.candidates);
        let blocks = self.model.blocks().len();
        slots.saturating_mul(3 * blocks + 1)
    }

    /// Output words per row.
    pub fn out_width(&self) -> usize {
        3 + if self.reveal_best { 2 } else { 0 }
            + if self.share_partner_ids { ID_WORDS } else { 0 }
            + if self.explain {
                self.model.blocks().len()
            } else {
                0
            }
    }

    /// Words after a party's result table: the status word, then the audit's aggregates.
    pub fn trailer_words(&self) -> usize {
        STATUS_WORDS + self.audit.output_words()
    }
}

/// What a party computed locally, in upload order. Serialized (for evaluation dumps) with `z`
/// as words even when it is streamed: the rows are then computed a block at a time as written.
#[derive(Clone, serde::Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct PartyData {
    /// Upload row -> entity index (a random permutation of the aligned entities).
    pub rows: Vec<u32>,
    /// Fixed-point vectors, `rows x width`; empty when they are streamed (`streamed`).
    pub z: Vec<u64>,
    /// Row length of `z`.
    pub width: usize,
    /// Keyed blocking tokens per row.
    #[zeroize(skip)]
    pub tokens: Tokens,
    /// Entity ids as words, `rows x ID_WORDS` (empty unless ids are shared).
    pub ids: Vec<u64>,
    /// Audit words, `rows x audit.in_width` (empty unless the job audits;
    /// [`crate::model::audit::prepare`]).
    #[serde(default)]
    pub audit: Vec<u64>,
    /// The audit's group names (kept by the party, never uploaded).
    #[serde(default)]
    #[zeroize(skip)]
    pub groups: Vec<String>,
    /// The source of `z`, when the rows are computed as they are uploaded instead of held
    /// ([`prepare_party_streamed`]; it wipes its own vectors on drop).
    #[serde(skip)]
    #[zeroize(skip)]
    pub streamed: Option<std::sync::Arc<UploadRows>>,
    /// What both parties must agree on beyond the job description, as a tag the servers compare
    /// ([`crate::model::blocking::BlockingKey::agreement`] of the key and the known links the
    /// data was prepared with).
    #[serde(skip)]
    pub agreement: [u8; 32],
}

impl serde::Serialize for PartyData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        // The derived layout's fields, in order (`streamed` is not serialized); destructured so
        // that a new field cannot be forgotten here.
        let PartyData {
            rows,
            z: _,
            width,
            tokens,
            ids,
            audit,
            groups,
            streamed: _,
            agreement: _,
        } = self;
        let mut st = s.serialize_struct("PartyData", 7)?;
        st.serialize_field("rows", rows)?;
        st.serialize_field("z", &ZWords(self))?;
        st.serialize_field("width", width)?;
        st.serialize_field("tokens", tokens)?;
        st.serialize_field("ids", ids)?;
        st.serialize_field("audit", audit)?;
        st.serialize_field("groups", groups)?;
        st.end()
    }
}

/// A party's `z` as a sequence of words, computed a block of rows at a time when streamed.
struct ZWords<'a>(&'a PartyData);

impl serde::Serialize for ZWords<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq};
        let d = self.0;
        let (len, w) = (d.z_words(), d.width.max(1));
        let mut seq = s.serialize_seq(Some(len))?;
        let rows = ((1 << 16) / w).max(1);
        let mut buf = zeroize::Zeroizing::new(vec![0u64; rows * w]);
        let mut r = 0;
        while r * w < len {
            let part = &mut buf[..(len - r * w).min(rows * w)];
            d.z_rows(r, part).map_err(S::Error::custom)?;
            for v in part.iter() {
                seq.serialize_element(v)?;
            }
            r += rows;
        }
        seq.end()
    }
}

impl PartyData {
    /// Each entity's row: the inverse of `rows`.
    pub fn row_of(&self) -> std::collections::HashMap<u32, usize> {
        self.rows.iter().enumerate().map(|(r, &e)| (e, r)).collect()
    }

    /// Words of `z` (`rows x width`), held or streamed.
    pub fn z_words(&self) -> usize {
        self.rows.len() * self.width
    }

    /// Rows `first..first + out.len() / width` of `z` into `out` (whole rows): copied when
    /// `z` is held, computed when it is streamed.
    pub fn z_rows(&self, first: usize, out: &mut [u64]) -> Result<()> {
        if let Some(src) = &self.streamed {
            return src.fill(first, out);
        }
        crate::model::upload_rows::check_whole_rows(first, out.len(), self.width, self.rows.len())?;
        let at = first * self.width;
        out.copy_from_slice(&self.z[at..at + out.len()]);
        Ok(())
    }

    /// For a party that needs its rows again after the job (an evaluation dump): streamed rows
    /// are also written, as they are uploaded, to an unlinked temporary file in `dir`, and the
    /// rows' source is dropped once all are ([`UploadRows::record_to`]), so it does not wait
    /// through the job. Nothing for held rows.
    pub fn record_rows(&self, dir: &std::path::Path) -> Result<()> {
        if let Some(src) = &self.streamed {
            let file = tempfile::tempfile_in(dir).map_err(|e| {
                Error::invalid(format!(
                    "cannot create a temporary file in {}: {e}",
                    dir.display()
                ))
            })?;
            src.record_to(file);
        }
        Ok(())
    }
}

impl std::fmt::Debug for PartyData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PartyData(rows={}, width={}, <redacted>)",
            self.rows.len(),
            self.width
        )
    }
}

/// Packs an id into `ID_WORDS` words (length-prefixed); ids over 63 bytes are refused.
pub fn id_to_words(id: &str) -> Result<[u64; ID_WORDS]> {
    let b = id.as_bytes();
    if b.len() >= 8 * ID_WORDS {
        return Err(Error::invalid(format!(
            "entity id {id:?} is {} bytes; partner-id exchange supports ids up to {} bytes",
            b.len(),
            8 * ID_WORDS - 1
        )));
    }
    let mut bytes = [0u8; 8 * ID_WORDS];
    bytes[0] = b.len() as u8;
    bytes[1..=b.len()].copy_from_slice(b);
    let mut w = [0u64; ID_WORDS];
    for (i, c) in bytes.chunks_exact(8).enumerate() {
        w[i] = u64::from_le_bytes(c.try_into().expect("8 bytes"));
    }
    Ok(w)
}

/// Inverse of [`id_to_words`]; `None` for words that are not a packed id.
pub fn words_to_id(w: &[u64]) -> Option<String> {
    let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    let len = *bytes.first()? as usize;
    if len == 0 || len >= bytes.len() {
        return None;
    }
    String::from_utf8(bytes[1..=len].to_vec()).ok()
}

/// A party's local preparation: embeddings, tokens and ids of the entities in `scope`, in a
/// random row order drawn from `shuffle` (so nothing downstream can depend on the owner's id
/// order). Deployments pass [`Prg::fresh`]; evaluation may fix it to reproduce decisions.
pub fn prepare_party(
    g: &Graph,
    scope: &[u32],
    p: &JobParams,
    key: &BlockingKey,
    shuffle: &mut Prg,
) -> Result<PartyData> {
    prepare_party_known(g, scope, &[], p, key, shuffle)
}

/// [`prepare_party`] with known links (this party's entities of the shared anchors, in the
/// agreed order; see [`crate::model::anchors`]): they are excluded from the rows, propagated
/// into the anchor block of `z` and into anchor tokens. `z` is held (in-process evaluation,
/// tests); see [`prepare_party_streamed`] for the networked party.
pub fn prepare_party_known(
    g: &Graph,
    scope: &[u32],
    known: &[u32],
    p: &JobParams,
    key: &BlockingKey,
    shuffle: &mut Prg,
) -> Result<PartyData> {
    let mut d = prepare_party_streamed(g, scope, known, p, key, shuffle)?;
    if let Some(src) = d.streamed.take() {
        d.z = src.all()?;
    }
    Ok(d)
}

/// [`prepare_party_known`] without computing `z`: its rows are computed from
/// [`PartyData::streamed`] as they are uploaded (the networked party; memory per party then
/// grows with what the rows are made of, the level-0 vectors (`dim` numbers per entity) and,
/// with known links, the anchor block, not with the whole upload).
pub fn prepare_party_streamed(
    g: &Graph,
    scope: &[u32],
    known: &[u32],
    p: &JobParams,
    key: &BlockingKey,
    shuffle: &mut Prg,
) -> Result<PartyData> {
    p.validate()?;
    let mut st = Structure::new(g, known, &p.model, key)?;
    let mut rows: Vec<u32> = scope
        .iter()
        .copied()
        .filter(|&e| !st.known.get(e as usize).copied().unwrap_or(false))
        .collect();
    if rows.is_empty() {
        return Err(Error::invalid("no entities to align"));
    }
    if let Some(&e) = rows.iter().find(|&&e| e as usize >= g.len()) {
        return Err(Error::invalid(format!(
            "entity {e} to align is not in the graph ({} entities)",
            g.len()
        )));
    }
    let g = &*st.graph(g);
    let prg = shuffle;
    for i in (1..rows.len()).rev() {
        let j = (prg.next_u64() % (i as u64 + 1)) as usize;
        rows.swap(i, j);
    }
    let width = p.model.width();
    let embedder = st.embedder(g, &p.model);
    let mut tokens = tokens(key, &g.names, embedder.level1_samples(), &rows);
    for (t, &e) in tokens.neighbour.iter_mut().zip(&rows) {
        t.extend_from_slice(&st.tokens[e as usize]);
        t.sort_unstable();
        t.dedup();
        t.truncate(crate::model::blocking::MAX_TOKENS_PER_ROW);
    }
    let source = UploadRows::new(embedder, rows.clone(), FixedPoint::new(p.frac_bits)?)?;
    let mut ids = Vec::new();
    if p.share_partner_ids {
        for &e in &rows {
            ids.extend(id_to_words(&g.ids[e as usize])?);
        }
    }
    Ok(PartyData {
        rows,
        z: Vec::new(),
        width,
        tokens,
        ids,
        audit: Vec::new(),
        groups: Vec::new(),
        streamed: Some(std::sync::Arc::new(source)),
        agreement: key.agreement(known.len()),
    })
}

/// One server's inputs from one party.
#[derive(Clone, Default, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct PartyShares {
    /// This server's share of `z`: held, drawn from its seed or spilled to disk.
    pub z: RowShare,
    /// This server's share of the id words (empty unless ids are shared).
    pub ids: Vec<u64>,
    /// This server's share of the audit words (empty unless the job audits).
    pub audit: Vec<u64>,
    /// The party's keyed tokens (the same for every server).
    #[zeroize(skip)]
    pub tokens: Tokens,
}

impl std::fmt::Debug for PartyShares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PartyShares(rows={}, <redacted>)", self.tokens.own.len())
    }
}

/// One server's output shares: `rows x out_width` per party. `Debug` shows only sizes.
#[derive(Clone, Default, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct ServerOutput {
    /// Shares for party A's rows.
    pub a: Vec<u64>,
    /// Shares for party B's rows.
    pub b: Vec<u64>,
}

impl std::fmt::Debug for ServerOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ServerOutput(a: {} words, b: {} words, <redacted>)",
            self.a.len(),
            self.b.len()
        )
    }
}

/// The seed that drives candidate padding: public, derived from the job id, so that every
/// server computes the same candidate lists.
pub fn job_seed(job_id: &str) -> Seed {
    Seed(crate::mpc::digest::sha256(
        "ppea candidate padding seed v1",
        &[job_id.as_bytes()],
    ))
}

/// The pairs listed in both directions: `(q, m)` for each A-list slot `q = (a, t)` whose
/// candidate `b` also lists `a`, at B-list slot `m` (the last such slot), in A-slot order.
/// Found by scanning `b`'s list (no hash map: memory grows with the slots by 8 bytes each).
fn present_pairs(c: &Candidates, na: usize) -> Result<Vec<(u32, u32)>> {
    use rayon::prelude::*;
    let k = c.per_row;
    if c.b.len() > u32::MAX as usize || na * k > u32::MAX as usize {
        return Err(Error::invalid(format!(
            "{} candidate slots exceed this server's pair index ({})",
            na * k + c.b.len(),
            u32::MAX
        )));
    }
    // Rayon's collect keeps the sequential (A-slot) order.
    Ok((0..na * k)
        .into_par_iter()
        .filter_map(|q| {
            let (a, b) = (q / k, c.a[q] as usize);
            let list = &c.b[b * k..(b + 1) * k];
            // The last position of `a` in b's list, without an early exit (the compiler
            // vectorises the whole scan; this runs for every slot, 64 million at 10^6).
            let a = a as u32;
            let t = list
                .iter()
                .enumerate()
                .fold(usize::MAX, |at, (t, &x)| if x == a { t } else { at });
            (t != usize::MAX).then(|| (q as u32, (b * k + t) as u32))
        })
        .collect())
}

/// For every slot of B's lists, the A slot listing the same pair (the last one `present`
/// names), or `u32::MAX` when A does not list it.
fn pair_index(c: &Candidates, na: usize, nb: usize, present: &[(u32, u32)]) -> Result<Vec<u32>> {
    let k = c.per_row;
    if (na + nb) * k >= u32::MAX as usize {
        return Err(Error::invalid(format!(
            "{} candidate slots exceed this server's pair index ({})",
            (na + nb) * k,
            u32::MAX
        )));
    }
    let mut in_a = vec![u32::MAX; nb * k];
    for &(q, m) in present {
        in_a[m as usize] = q;
    }
    Ok(in_a)
}

/// Per-slot values (a worker's `a_slots` A slots, then its B slots) from per-pair values `z`
/// ([`ShardPairs`]: A's slots first, `b_slots` mapping B's; `remote` B slots take `fetched`,
/// their A slots' values read from other workers, in order).
fn slot_scores(
    z: &[u64],
    a_slots: usize,
    b_slots: &[u32],
    remote: &[(u32, u32)],
    fetched: &[u64],
) -> Vec<u64> {
    let mut out = Vec::with_capacity(a_slots + b_slots.len());
    out.extend_from_slice(&z[..a_slots]);
    out.extend(
        b_slots
            .iter()
            .map(|&i| if i == u32::MAX { 0 } else { z[i as usize] }),
    );
    for (&(m, _), v) in remote.iter().zip(fetched) {
        out[a_slots + m as usize] = *v;
    }
    out
}

/// A worker's B slots' view of the pairs A lists too: for a per-A-slot vector of the job
/// (`keep`, kept link tokens), each own B slot's value at its pair's A slot (the last one
/// listing it), 0 where A does not list the pair; A slots of other workers are read over the
/// mesh.
pub(crate) struct BSidePairs<'a> {
    /// This worker's A slots and B slots (in A's and B's lists).
    qa: std::ops::Range<usize>,
    qb: std::ops::Range<usize>,
    /// The pairs listed both ways whose A slot is this worker's (A-slot order).
    pub(crate) present: &'a [(u32, u32)],
    /// [`ShardPairs::remote`].
    remote: &'a [(u32, u32)],
    /// Where the remote A slots live.
    at: &'a [At],
}

impl BSidePairs<'_> {
    pub(crate) async fn read<M: Mesh>(
        &self,
        mesh: &mut M,
        per_a_slot: &[u64],
        max: usize,
    ) -> Result<Vec<u64>> {
        let fetched = crate::mpc::mesh::fetch(mesh, per_a_slot, self.at, max).await?;
        let mut out = vec![0u64; self.qb.len()];
        // Every A slot listing a B slot's pair is in one A row, so on one worker: here, in
        // A-slot order (the last one wins), or remote.
        for &(q, m) in self.present {
            if self.qb.contains(&(m as usize)) {
                out[m as usize - self.qb.start] = per_a_slot[q as usize - self.qa.start];
            }
        }
        for (&(m, _), v) in self.remote.iter().zip(fetched) {
            out[m as usize] = v;
        }
        Ok(out)
    }
}

/// Every row's value (A's rows, then B's) from this worker's rows' values `own` (its A rows,
/// then its B rows) and the other workers'.
pub(crate) async fn all_rows<M: Mesh>(
    mesh: &mut M,
    sh: &Shards,
    own: &[u64],
    max: usize,
) -> Result<Vec<u64>> {
    if sh.workers() == 1 {
        return Ok(own.to_vec());
    }
    let parts = crate::mpc::mesh::all_gather(mesh, own.to_vec(), max).await?;
    sh.join_rows(&parts)
}

/// Worker `wk`'s columns of the bilinear form (of `workers`, over rows as long as the bounds'
/// blocks), and the pieces of the audit's blocks they hold (block, length): its request's row
/// length and blocks of columns.
pub fn worker_columns(
    bounds: &UploadBounds,
    workers: usize,
    wk: usize,
) -> (std::ops::Range<usize>, Vec<(usize, usize)>) {
    let width = bounds.blocks.iter().sum();
    let cols = crate::model::shard::Shards::rows(width, workers, wk);
    let pieces = block_pieces(&bounds.blocks, &cols);
    (cols, pieces)
}

/// The pieces of the blocks `blocks` (lengths of consecutive blocks of a row) within the
/// columns `cols`: (block, length) for every block they meet, in order.
fn block_pieces(blocks: &[usize], cols: &std::ops::Range<usize>) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &len) in blocks.iter().enumerate() {
        let (lo, hi) = (start.max(cols.start), (start + len).min(cols.end));
        if lo < hi {
            out.push((i, hi - lo));
        }
        start += len;
    }
    out
}

/// This worker's partial audit values of rows `rows` (A's, then B's), as the rows' owner
/// checks them: every row's norms per block of the whole row (this worker's pieces in their
/// blocks, 0 for the others), then every row's subset sums. `a` holds the form's values of
/// all rows (A's rows, then B's, `na` of A), per piece.
fn own_audit(
    a: &crate::mpc::beaver::AuditShares,
    pieces: &[(usize, usize)],
    bounds: &UploadBounds,
    na: usize,
    [ra, rb]: [std::ops::Range<usize>; 2],
) -> Vec<u64> {
    let (nbk, np) = (bounds.blocks.len(), pieces.len());
    let subsets = crate::model::upload_check::AUDIT_SUBSETS;
    let rows: Vec<usize> = ra.chain(rb.map(|b| na + b)).collect();
    let mut out = vec![0u64; rows.len() * (nbk + subsets)];
    let (norms, sums) = out.split_at_mut(rows.len() * nbk);
    for (i, &r) in rows.iter().enumerate() {
        for (t, &(blk, _)) in pieces.iter().enumerate() {
            norms[i * nbk + blk] = a.norms[r * np + t];
        }
        sums[i * subsets..(i + 1) * subsets]
            .copy_from_slice(&a.sums[r * subsets..(r + 1) * subsets]);
    }
    out
}

/// Sums of each of the first `rows` rows of length `k` of `v` (in the ring).
pub(crate) fn row_sums(v: &[u64], rows: usize, k: usize) -> Vec<u64> {
    (0..rows)
        .map(|i| {
            v[i * k..(i + 1) * k]
                .iter()
                .fold(0u64, |s, x| s.wrapping_add(*x))
        })
        .collect()
}

/// Transposes a `rows x len` matrix to `len x rows` (the layout of fan-out products).
pub(crate) fn slot_major(x: &[u64], rows: usize, len: usize) -> Vec<u64> {
    let mut out = vec![0u64; x.len()];
    for r in 0..rows {
        for s in 0..len {
            out[s * rows + r] = x[r * len + s];
        }
    }
    out
}

/// The secure part of a job, run by every server on its shares. Returns this server's output
/// shares and the candidate lists (public to the servers).
pub async fn align<T: Transport, C: Correlations>(
    eng: &mut Engine<T, C>,
    pa: PartyShares,
    pb: PartyShares,
    p: &JobParams,
    seed: &Seed,
) -> Result<(ServerOutput, Candidates)> {
    align_reporting(eng, pa, pb, p, seed, &|_| {}).await
}

/// [`align`], calling `on_step` with the name of each step as it finishes (a fixed list of
/// public names in protocol order: `candidates`, `score material`, `scores`, ...).
pub async fn align_reporting<T: Transport, C: Correlations>(
    eng: &mut Engine<T, C>,
    pa: PartyShares,
    pb: PartyShares,
    p: &JobParams,
    seed: &Seed,
    on_step: &(dyn Fn(&str) + Sync),
) -> Result<(ServerOutput, Candidates)> {
    align_worker(eng, &mut Solo, pa, pb, p, seed, on_step).await
}

/// [`align_reporting`] on one worker of a server split into `mesh.workers()` workers
/// ([`crate::model::shard`]): the worker runs the job on its shard of the rows with the
/// matching worker of every other server (`eng`), and reads other shards' values over `mesh`.
/// Its output holds its own rows only (A's, then B's, with the trailer: status and aggregates,
/// the same on every worker); every worker returns all candidate lists. With one worker
/// ([`Solo`]) this is the whole job, message for message.
pub async fn align_worker<T: Transport, C: Correlations, M: Mesh>(
    eng: &mut Engine<T, C>,
    mesh: &mut M,
    mut pa: PartyShares,
    mut pb: PartyShares,
    p: &JobParams,
    seed: &Seed,
    on_step: &(dyn Fn(&str) + Sync),
) -> Result<(ServerOutput, Candidates)> {
    p.validate()?;
    let w = p.model.width();
    let (na, nb) = (pa.tokens.own.len(), pb.tokens.own.len());
    // The message reaches both parties: it names the side, not its sizes.
    for (side, n, z) in [("a", na, &pa.z), ("b", nb, &pb.z)] {
        if n == 0 || z.len() != n * w {
            return Err(Error::invalid(format!(
                "party {side}'s upload does not hold {w} words for each of its rows"
            )));
        }
    }
    let ids = p.share_partner_ids;
    if ids && (pa.ids.len() != na * ID_WORDS || pb.ids.len() != nb * ID_WORDS) {
        return Err(Error::invalid(
            "partner ids requested but an upload has none",
        ));
    }
    let sh = Shards::new(na, nb, mesh.workers())?;
    let (workers, wk) = (sh.workers(), mesh.me());
    // This worker's rows (all of them with one worker), and the most values a mesh message
    // of this job may hold (a per-slot vector of both sides).
    if workers > w {
        return Err(Error::invalid(format!(
            "{workers} workers cannot share rows of {w} words (each computes the scores over \
             a slice of the columns)"
        )));
    }
    let (ra, rb) = (sh.a(wk), sh.b(wk));
    let (oa, ob) = (ra.len(), rb.len());
    let t0 = std::time::Instant::now();
    // Progress for operators: step, elapsed time and traffic so far (sizes only, no values).
    let step = |eng: &Engine<T, C>, what: &str| {
        let st = eng.stats();
        tracing::info!(
            step = what,
            worker = wk,
            ms = t0.elapsed().as_millis() as u64,
            bytes_sent = st.bytes_sent,
            rounds = st.rounds,
            "alignment step done"
        );
        on_step(what);
    };
    // The tokens serve only the candidate gather: moved, not copied (memory).
    let (ta, tb) = (
        std::mem::take(&mut pa.tokens),
        std::mem::take(&mut pb.tokens),
    );
    let cand = gather_candidates(eng, mesh, ta, tb, &p.blocking, seed, workers).await?;
    let k = cand.per_row;
    let ell = p.compare_bits();
    // Bound on one mesh message: a per-slot vector of both sides.
    let mesh_max = (na + nb) * k;
    step(eng, "candidates");

    // 1. Scores of both directions' pairs in one bilinear form, each distinct pair once (a
    //    pair listed both ways, `present`, is scored in A's slot and copied to B's).
    //    A worker owns its A slots' pairs and its B slots' pairs that A does not list; a B
    //    slot whose pair another worker's A slot lists reads that score over the mesh. Split
    //    into workers, each computes every pair's product over its slice of the columns, and
    //    the workers add up the partial products of the pairs each owns.
    let present = cpu_bound(|| present_pairs(&cand, na))?;
    let (sp, whole) = cpu_bound(|| {
        let in_a = pair_index(&cand, na, nb, &present)?;
        let sp = ShardPairs::new(&cand, &sh, wk, &in_a)?;
        let whole = if workers == 1 {
            None
        } else {
            let all = ShardPairs::new(&cand, &Shards::new(na, nb, 1)?, 0, &in_a)?;
            Some((all.pairs, pair_ranges(&cand, &sh, &in_a)))
        };
        Ok::<_, Error>((sp, whole))
    })?;
    let ShardPairs {
        pairs,
        b_slots,
        remote,
    } = sp;
    let (pairs, owners) = match whole {
        None => (pairs, None),
        Some((all, ranges)) => (all, Some(ranges)),
    };
    let (qa, qb) = (ra.start * k..ra.end * k, rb.start * k..rb.end * k);
    // The pairs listed both ways whose A slot is this worker's (A-slot order).
    let own_present = present.partition_point(|&(q, _)| (q as usize) < qa.start)
        ..present.partition_point(|&(q, _)| (q as usize) < qa.end);
    // A worker keeps only its own part of that list (memory).
    let (present, own_present) = if workers > 1 {
        let own = present[own_present].to_vec();
        let n = own.len();
        (own, 0..n)
    } else {
        (present, own_present)
    };
    let bounds = UploadBounds::new(p);
    let (cols, pieces) = worker_columns(&bounds, workers, wk);
    debug_assert_eq!(cols, sh.columns(w, wk));
    let row_audit = crate::mpc::beaver::RowAudit {
        blocks: pieces.iter().map(|&(_, l)| l).collect(),
        subsets: crate::model::upload_check::AUDIT_SUBSETS,
    };
    // Scores modulo a prime where the source makes them cheaper (two servers without a dealer:
    // one slot run instead of three or four, `mpc::modular`), when every honest score is far inside it;
    // the audit's material then covers no pairs.
    let modular = if p.explain || !scores_fit_mod(p) {
        None
    } else {
        eng.scores_mod(cols.len(), &pairs, &row_audit.blocks)
            .await?
    };
    let (pairs, scores_pairs) = match &modular {
        Some(_) => (
            Pairs::list(pairs.rows(), pairs.cols(), vec![], vec![])?,
            Some(pairs),
        ),
        None => (pairs, None),
    };
    // The request holds the pair list while the material is fetched, then gives it back (no
    // copy: 8 bytes per slot).
    let req = crate::mpc::correlated::Request::Bilinear {
        d: cols.len(),
        pairs,
        blocks: row_audit.blocks.clone(),
        split: p.explain,
    };
    let mat = eng.prepare(&req).await?;
    let crate::mpc::correlated::Request::Bilinear { pairs, .. } = req else {
        return Err(Error::invalid("the bilinear request changed kind"));
    };
    step(eng, "score material");
    let me = eng.me();
    // The uploaded vectors serve only the bilinear form, which frees them once masked: moved,
    // not copied (a copy held one more upload-sized buffer through the form, its peak).
    let (mut za, mut zb) = (std::mem::take(&mut pa.z), std::mem::take(&mut pb.z));
    if workers > 1 {
        za = za.columns(w, cols.start, cols.len())?;
        zb = zb.columns(w, cols.start, cols.len())?;
    }
    let d = cols.len();
    let audit_subsets = row_audit.subsets;
    let form = if p.explain {
        crate::mpc::beaver::Bilinear::split(me, za, zb, d, pairs, row_audit, mat)?
    } else {
        let form = crate::mpc::beaver::Bilinear::with_audit(me, za, zb, d, pairs, row_audit, mat)?;
        match (scores_pairs, modular) {
            (Some(pairs), Some(mm)) => form.with_scores_mod(pairs, mm)?,
            _ => form,
        }
    }
    // A worker's groups of columns hold every row: it opens 1/W of the words per exchange, so
    // that a server's workers together hold what one process holds.
    .with_chunk((eng.bilinear_chunk() / workers).max(1))
    // ... and its groups are at least 1/W as wide (their rows are every row).
    .with_min_group((eng.bilinear_min_group() / workers).max(1));
    let mut out = eng.run(form).await?;
    if let Some(t) = out.modulus {
        // The conversion check first: nothing depends on the scores before it passed.
        let conversion = out
            .conversion
            .take()
            .ok_or_else(|| Error::invalid("the bilinear form returned no conversion check"))?;
        let opened = eng.open(&conversion).await?;
        crate::mpc::modular::check_conversions(&opened, t, audit_subsets, [na, nb])?;
        out.scores = eng.lift(&out.scores, t).await?;
        step(eng, "scores lifted");
    }
    let audit = out
        .audit
        .take()
        .ok_or_else(|| Error::invalid("the bilinear form returned no audit"))?;
    //    Split into workers: every worker's partial products of this worker's pairs, and
    //    partial audit sums of its rows, added up.
    let mut block_pairs = out.blocks.take();
    let audit = if let Some(ranges) = &owners {
        // Per-block products (explanations): this worker's pieces in their blocks, 0 for the
        // others.
        if let Some(bs) = block_pairs.take() {
            let (all, nblk) = (bs.len() / pieces.len(), bounds.blocks.len());
            let parts = ranges
                .iter()
                .map(|[ra, rb]| {
                    let own = ra.len() + rb.len();
                    let mut v = vec![0u64; nblk * own];
                    for (t, &(blk, _)) in pieces.iter().enumerate() {
                        let piece = &bs[t * all..(t + 1) * all];
                        let dst = &mut v[blk * own..(blk + 1) * own];
                        dst[..ra.len()].copy_from_slice(&piece[ra.clone()]);
                        dst[ra.len()..].copy_from_slice(&piece[rb.clone()]);
                    }
                    v
                })
                .collect();
            drop(bs);
            block_pairs = Some(crate::mpc::mesh::reduce_scatter(mesh, parts).await?);
        }
        let parts = ranges
            .iter()
            .map(|[ra, rb]| [&out.scores[ra.clone()], &out.scores[rb.clone()]].concat())
            .collect();
        // Every pair's partial products are in the parts now (memory).
        out.scores = Vec::new();
        out.scores = crate::mpc::mesh::reduce_scatter(mesh, parts).await?;
        let parts = (0..workers)
            .map(|j| own_audit(&audit, &pieces, &bounds, na, [sh.a(j), sh.b(j)]))
            .collect();
        drop(audit);
        let sums = crate::mpc::mesh::reduce_scatter(mesh, parts).await?;
        let (norms, sums) = sums.split_at((oa + ob) * bounds.blocks.len());
        crate::mpc::beaver::AuditShares {
            norms: norms.to_vec(),
            sums: sums.to_vec(),
            subsets: Vec::new(),
        }
    } else {
        audit
    };
    // Per own slot (A's, then B's) from per-pair values; B slots scored by another worker
    // read their A slot's value there.
    let remote_at: Vec<At> = remote
        .iter()
        .map(|&(_, q)| sh.a_slot(q as usize, k))
        .collect();
    let remote_scores =
        crate::mpc::mesh::fetch(mesh, &out.scores[..oa * k], &remote_at, mesh_max).await?;
    let expand = |z: &[u64]| slot_scores(z, oa * k, &b_slots, &remote, &remote_scores);
    // With explanations: every own slot's products per block (block-major), the remote B
    // slots' read from their A slots' workers block by block.
    let block_scores = match block_pairs {
        None => None,
        Some(bs) => {
            let per = bs.len() / p.model.blocks().len().max(1);
            let mut all = Vec::with_capacity(bs.len() / per.max(1) * (oa + ob) * k);
            for z in bs.chunks(per.max(1)) {
                let fetched =
                    crate::mpc::mesh::fetch(mesh, &z[..oa * k], &remote_at, mesh_max).await?;
                all.extend(cpu_bound(|| {
                    slot_scores(z, oa * k, &b_slots, &remote, &fetched)
                }));
            }
            Some(all)
        }
    };
    step(eng, "scores");
    //    Each worker checks its own rows; the failure counts add up over the workers.
    let mut fails = upload_fails(eng, &audit, &bounds, oa, ob).await?;
    drop(audit);
    //    With the per-group audit, the parties' group indicators too (one-hot 0/1): their
    //    failures join the same counts, which gate every match.
    if p.audit.enabled {
        let aw = p.audit.in_width();
        let missing = || Error::invalid("the job audits but an upload has no audit words");
        let inputs = [
            (pa.audit.get(ra.start * aw..ra.end * aw)).ok_or_else(missing)?,
            (pb.audit.get(rb.start * aw..rb.end * aw)).ok_or_else(missing)?,
        ];
        let bad = crate::model::audit::indicator_fails(eng, &p.audit, inputs).await?;
        fails = [fails[0].wrapping_add(bad[0]), fails[1].wrapping_add(bad[1])];
    }
    if workers > 1 {
        let all = crate::mpc::mesh::all_reduce(mesh, fails.to_vec()).await?;
        fails = [all[0], all[1]];
    }
    let audited = p.audit.enabled.then_some(p.audit.max_groups);
    let ok = fails_ok(eng, fails, max_fails(&bounds, audited, na + nb)).await?;
    step(eng, "upload range checks");
    let mut s = cpu_bound(|| expand(&out.scores));
    drop(out.scores);
    drop(remote_scores);
    drop(b_slots);

    // 2. Row maxima (CSLS, k = 1), both sides in one tournament; with `csls_iterations` > 1,
    //    the normalised scores `2x - r_own - r_other` are normalised again (a local step and
    //    one more tournament each).
    //    `r` holds this worker's rows' maxima, `r_all` every row's (A's, then B's), read from
    //    the other workers.
    let partner_max = |r_all: &[u64], q: usize| {
        if q < oa * k {
            r_all[na + cand.a[qa.start + q] as usize]
        } else {
            r_all[cand.b[qb.start + q - oa * k] as usize]
        }
    };
    let mut r = eng.max_rows(&s, k, ell).await?;
    let mut r_all = all_rows(mesh, &sh, &r, mesh_max).await?;
    let mut x = std::borrow::Cow::Borrowed(&s);
    for _ in 1..p.csls_iterations {
        let next: Vec<u64> = cpu_bound(|| {
            x.iter()
                .enumerate()
                .map(|(q, v)| {
                    v.wrapping_mul(2)
                        .wrapping_sub(r[q / k])
                        .wrapping_sub(partner_max(&r_all, q))
                })
                .collect()
        });
        r = eng.max_rows(&next, k, ell).await?;
        r_all = all_rows(mesh, &sh, &r, mesh_max).await?;
        x = std::borrow::Cow::Owned(next);
    }
    let f: Vec<u64> = cpu_bound(|| {
        x.iter()
            .enumerate()
            .map(|(q, v)| v.wrapping_mul(2).wrapping_sub(partner_max(&r_all, q)))
            .collect()
    });
    drop(r_all);
    drop(x);

    // 3. Best candidate per entity with a one-hot marker; the pair score 2S - r_a - r_b.
    step(eng, "row maxima");
    let (best, oh) = eng.argmax_onehot(&f, k, ell).await?;
    step(eng, "best candidates");
    let score: Vec<u64> = best
        .iter()
        .zip(r.iter())
        .map(|(b, r)| b.wrapping_sub(*r))
        .collect();
    let (oh_a, oh_b) = oh.split_at(oa * k);
    let present_own = &present[own_present];
    //    The other side's markers of the pairs listed both ways (B slots, possibly another
    //    worker's).
    let oh_b_present = if workers == 1 {
        None
    } else {
        let at: Vec<At> = present_own
            .iter()
            .map(|&(_, m)| sh.b_slot(m as usize, k))
            .collect();
        Some(crate::mpc::mesh::fetch(mesh, oh_b, &at, mesh_max).await?)
    };

    // 4. Mutual best: product of the two markers of the same pair; in the same round, the
    //    similarity of each row's chosen pair (marker times score, summed over the row).
    // `f` serves later only the assignment rounds (memory: one word per slot).
    let f = if p.assignment_rounds > 0 {
        f
    } else {
        drop(f);
        Vec::new()
    };
    //    Also in that round: both uploads passed the range checks, `ok_a * ok_b`. The right
    //    factors start with the scores themselves (moved unless assignment rounds need them),
    //    and the products are written over them (memory: no copy of either).
    let s_right = if p.assignment_rounds > 0 {
        s.clone()
    } else {
        std::mem::take(&mut s)
    };
    let (x, y) = cpu_bound(|| {
        let mut x = Vec::with_capacity(oh.len() + present_own.len() + 1);
        x.extend_from_slice(&oh);
        x.extend(
            present_own
                .iter()
                .map(|&(q, _)| oh_a[q as usize - qa.start]),
        );
        x.push(ok[0]);
        let mut y = s_right;
        y.reserve_exact(present_own.len() + 1);
        match &oh_b_present {
            Some(v) => y.extend_from_slice(v),
            None => y.extend(present_own.iter().map(|&(_, m)| oh_b[m as usize])),
        }
        y.push(ok[1]);
        (x, y)
    });
    drop(oh_b_present);
    // Every left factor is a shared bit (markers, the range checks' verdict).
    let mut prod = eng.mul_bits(&x, y, 1).await?;
    drop(x);
    let both_ok = prod.pop().expect("pushed above");
    let row_sum = |v: &[u64], rows: usize| row_sums(v, rows, k);
    let (similarity, mutual) = cpu_bound(|| {
        let (chosen, both) = prod.split_at(oh.len());
        let mut mutual = vec![0u64; oa * k];
        for (&(q, _), v) in present_own.iter().zip(both) {
            mutual[q as usize - qa.start] = *v;
        }
        (row_sum(chosen, oa + ob), mutual)
    });
    drop(prod);

    // 5. Threshold on a's best pair score, gated by the range checks; keep = mutual AND above
    //    threshold AND both uploads in range.
    let pass = eng
        .threshold(&score[..oa], p.min_score_fixed(), ell)
        .await?;
    let pass = eng.mul_bits(&[both_ok], pass, oa).await?;
    let keep = slot_major(
        &eng.mul_bits(&pass, slot_major(&mutual, oa, k), k).await?,
        k,
        oa,
    );
    // A B slot's values (`keep`, link tokens, the assignment's markers) are its pair's A
    // slot's.
    let b_pairs = BSidePairs {
        qa: qa.clone(),
        qb: qb.clone(),
        present: present_own,
        remote: &remote,
        at: &remote_at,
    };
    // 5b. Optional 1-to-1 assignment: further rounds on the rows left unmatched.
    let (keep, oh, score, similarity) = if p.assignment_rounds > 0 {
        let st = crate::model::assign::Round1 {
            cand: &cand,
            shards: &sh,
            f: &f,
            s: &s,
            r: &r,
            onehot: &oh,
            keep,
        };
        let a = crate::model::assign::iterate(eng, mesh, p, st, &b_pairs, mesh_max).await?;
        // Matches of later rounds are gated by the range checks too.
        let keep = eng.mul_bits(&[both_ok], a.keep, oa * k).await?;
        step(eng, "assignment");
        (keep, a.onehot, a.score, a.similarity)
    } else {
        (keep, oh, score, similarity)
    };
    // 6. Link tokens (random shared values, one per pair, selected by `keep`) and the
    //    matched rows' similarity, in one round; in evaluation jobs (`reveal_best`) also each
    //    row's best candidate and its score, gated by the range checks as every other output
    //    (without the gate, a party whose upload failed them still read its rows' best
    //    candidates and scores: a review's finding).
    let keep_b = b_pairs.read(mesh, &keep, mesh_max).await?;
    let rows = oa + ob;
    let (matched, x, y) = cpu_bound(|| {
        let mut matched = row_sum(&keep, oa);
        matched.extend(row_sum(&keep_b, ob));
        let mut x = keep.clone();
        x.extend_from_slice(&matched);
        let mut y = Prg::fresh().vec(oa * k);
        y.extend_from_slice(&similarity);
        if p.reveal_best {
            x.extend(std::iter::repeat_n(both_ok, 2 * rows));
            y.extend((0..rows).map(|i| {
                let (local, list, first) = if i < oa {
                    (i, &cand.a, ra.start)
                } else {
                    (i - oa, &cand.b, rb.start)
                };
                let row = first + local;
                (oh[i * k..(i + 1) * k].iter())
                    .zip(&list[row * k..(row + 1) * k])
                    .fold(0u64, |s, (o, &c)| s.wrapping_add(o.wrapping_mul(c as u64)))
            }));
            y.extend_from_slice(&score[..rows]);
        }
        (matched, x, y)
    });
    // `keep`, `matched` and `both_ok` are shared bits (at most one kept pair per row).
    let prod = eng.mul_bits(&x, y, 1).await?;
    drop(x);
    let (kept_tok, rest) = prod.split_at(oa * k);
    let (score_out, best) = rest.split_at(rows);
    let tok_a = row_sum(kept_tok, oa);
    let kept_tok_b = b_pairs.read(mesh, kept_tok, mesh_max).await?;
    let tok_b = row_sum(&kept_tok_b, ob);
    drop(kept_tok_b);

    // 6b. Explanations and the audit's per-row selection: the kept pair's block products and
    //     partner hash, in one product ([`select_kept`]).
    let nblk = p.model.blocks().len();
    let audit_w = p.audit.in_width();
    let labels = p.audit.enabled && p.audit.labelled;
    if p.audit.enabled && (pa.audit.len() != na * audit_w || pb.audit.len() != nb * audit_w) {
        return Err(Error::invalid(
            "the job audits but an upload has no (or malformed) audit words",
        ));
    }
    let mut per_slot: Vec<Vec<u64>> = Vec::new();
    if p.explain {
        let bs = block_scores
            .as_ref()
            .ok_or_else(|| Error::invalid("the bilinear form returned no block products"))?;
        let np = (oa + ob) * k;
        per_slot.extend((0..nblk - 1).map(|b| bs[b * np..(b + 1) * np].to_vec()));
    }
    if labels {
        // The candidate's own-id hash (the last audit word of the other side's row).
        let own = |up: &PartyShares, row: usize| up.audit[(row + 1) * audit_w - 1];
        let mut hash = Vec::with_capacity((oa + ob) * k);
        hash.extend(cand.a[qa.clone()].iter().map(|&b| own(&pb, b as usize)));
        hash.extend(cand.b[qb.clone()].iter().map(|&a| own(&pa, a as usize)));
        per_slot.push(hash);
    }
    let selected = if per_slot.is_empty() {
        Vec::new()
    } else {
        let mut keep_all = keep.clone();
        keep_all.extend_from_slice(&keep_b);
        select_kept(eng, &keep_all, per_slot, k).await?
    };
    let explained: Vec<Vec<u64>> = if p.explain {
        let mut v = selected[..nblk - 1].to_vec();
        let mut last = score_out.to_vec();
        for b in &v {
            crate::mpc::ring::sub_assign(&mut last, b);
        }
        v.push(last);
        v
    } else {
        Vec::new()
    };
    let audit_out = if p.audit.enabled {
        let none: &[u64] = &[];
        let ph = if labels {
            selected[selected.len() - 1].as_slice()
        } else {
            none
        };
        // This worker's rows (all rows with one worker).
        let side = |i: usize| {
            let (r, up, own) = if i == 0 {
                (0..oa, &pa, ra.clone())
            } else {
                (oa..oa + ob, &pb, rb.clone())
            };
            crate::model::audit::SideValues {
                matched: &matched[r.clone()],
                score: &score_out[r.clone()],
                partner_hash: if labels { &ph[r] } else { none },
                input: &up.audit[own.start * audit_w..own.end * audit_w],
            }
        };
        let sides = [side(0), side(1)];
        let mut out = crate::model::audit::group_sums(eng, p, sides).await?;
        // A split server's workers add up their sums; one worker adds the server's noise,
        // and the others release nothing (the parties read worker 0's aggregates: the others'
        // exact sums must not reach them).
        if workers > 1 {
            out = crate::mpc::mesh::all_reduce(mesh, out).await?;
        }
        if wk == 0 {
            crate::model::audit::add_group_noise(p, &mut out, &mut Prg::fresh());
        } else {
            out.iter_mut().for_each(|v| *v = 0);
        }
        out
    } else {
        Vec::new()
    };

    // 7. Partner ids (both parties opted in): the kept pair's partner id words.
    let mut partner = Vec::new();
    if ids {
        let mut x = keep.clone();
        x.extend_from_slice(&keep_b);
        let n = x.len();
        let mut ys = vec![0u64; ID_WORDS * n];
        // Every worker holds both sides' id shares (small): its slots' partners are anywhere.
        for q in 0..oa * k {
            let b = cand.a[qa.start + q] as usize;
            for wd in 0..ID_WORDS {
                ys[wd * n + q] = pb.ids[b * ID_WORDS + wd];
            }
        }
        for q in 0..ob * k {
            let a = cand.b[qb.start + q] as usize;
            for wd in 0..ID_WORDS {
                ys[wd * n + oa * k + q] = pa.ids[a * ID_WORDS + wd];
            }
        }
        let prod = eng.mul_bits(&x, ys, ID_WORDS).await?;
        partner = vec![0u64; (oa + ob) * ID_WORDS];
        for q in 0..n {
            let row = q / k;
            for wd in 0..ID_WORDS {
                let v = &mut partner[row * ID_WORDS + wd];
                *v = v.wrapping_add(prod[wd * n + q]);
            }
        }
    }

    step(eng, "matching");

    // 8. Assemble per-row outputs.
    let ow = p.out_width();
    let mut out = ServerOutput {
        a: Vec::with_capacity(oa * ow),
        b: Vec::with_capacity(ob * ow),
    };
    for i in 0..oa + ob {
        let (side, tok) = if i < oa {
            (&mut out.a, tok_a[i])
        } else {
            (&mut out.b, tok_b[i - oa])
        };
        side.extend([matched[i], score_out[i], tok]);
        if p.reveal_best {
            side.extend([best[i], best[rows + i]]);
        }
        if ids {
            side.extend_from_slice(&partner[i * ID_WORDS..(i + 1) * ID_WORDS]);
        }
        side.extend(explained.iter().map(|b| b[i]));
    }
    // The status word, the same for both parties: bit 0 = A's upload passed the range checks,
    // bit 1 = B's (`ok_a + 2 ok_b`, linear on shares).
    let status = ok[0].wrapping_add(ok[1].wrapping_mul(2));
    out.a.push(status);
    out.b.push(status);
    // The audit's noisy aggregates go to both parties.
    out.a.extend_from_slice(&audit_out);
    out.b.extend_from_slice(&audit_out);
    Ok((out, cand))
}

/// For every row (`keep` is `rows x k`, 0/1 with at most one 1 per row) and each per-slot
/// vector of `values`, the value at the kept slot (0 for a row without one): one product of
/// the shared bits `keep` with fan-out `values.len()` ([`Engine::mul_bits`]).
///
/// [`Engine::mul_bits`]: crate::mpc::engine::Engine::mul_bits
pub(crate) async fn select_kept<T: Transport, C: Correlations>(
    eng: &mut Engine<T, C>,
    keep: &[u64],
    values: Vec<Vec<u64>>,
    k: usize,
) -> Result<Vec<Vec<u64>>> {
    let (n, f) = (keep.len(), values.len());
    if values.iter().any(|v| v.len() != n) {
        return Err(Error::invalid("selection: per-slot vectors differ in size"));
    }
    let prod = eng.mul_bits(keep, values.concat(), f).await?;
    Ok((0..f)
        .map(|j| row_sums(&prod[j * n..(j + 1) * n], n / k, k))
        .collect())
}

/// Words after a party's result table: the job's status ([`align`]: bit 0 set when party A's
/// upload passed the servers' checks, bit 1 for party B's).
pub const STATUS_WORDS: usize = 1;

/// The reconstructed status word: an error naming the party whose upload failed the range
/// checks, if any.
fn check_status(status: u64) -> Result<()> {
    if status > 3 {
        return Err(Error::invalid(format!(
            "the job's status word is {status}, not 0 to 3 (shares from different jobs?)"
        )));
    }
    let failed: Vec<&str> = [(1, "a"), (2, "b")]
        .iter()
        .filter(|(bit, _)| status & bit == 0)
        .map(|(_, p)| *p)
        .collect();
    match failed.as_slice() {
        [] => Ok(()),
        parties => Err(Error::invalid(format!(
            "the job was refused: the upload of party {} failed the servers' checks (every \
             row must be a vector the model can produce, and with the audit carry one-hot 0/1 \
             group indicators; a deviating server can also cause this); no results are given",
            parties.join(" and party ")
        ))),
    }
}

/// What a party of an aggregate-only job receives from one server: the sums of the match flags
/// and scores over its rows, then the status word.
pub fn aggregate_words(words: &[u64], rows: usize, width: usize) -> Vec<u64> {
    let mut s = vec![0u64; 2];
    for r in 0..rows {
        s[0] = s[0].wrapping_add(words[r * width]);
        s[1] = s[1].wrapping_add(words[r * width + 1]);
    }
    s.extend_from_slice(&words[rows * width..]);
    s
}

/// What a worker answers both parties in an aggregate-only job: [`aggregate_words`] over its
/// own rows (`rows`: its A rows and B rows). Split into workers, the workers add their sums up
/// and worker 0 alone releases the server's; the others send zeros in their place (their own
/// rows' sums would tell a party how the matches fall across the shards).
pub async fn aggregate_answers<M: Mesh>(
    mesh: &mut M,
    out: &ServerOutput,
    rows: [usize; 2],
    width: usize,
) -> Result<[Vec<u64>; 2]> {
    let mut ans = [
        aggregate_words(&out.a, rows[0], width),
        aggregate_words(&out.b, rows[1], width),
    ];
    if mesh.workers() > 1 {
        let own = vec![ans[0][0], ans[0][1], ans[1][0], ans[1][1]];
        let all = crate::mpc::mesh::all_reduce(mesh, own).await?;
        let release = mesh.me() == 0;
        for (side, a) in ans.iter_mut().enumerate() {
            for t in 0..2 {
                a[t] = if release { all[2 * side + t] } else { 0 };
            }
        }
    }
    Ok(ans)
}

/// Reconstructs an aggregate-only result: the number of matched rows and the sum of their
/// scores (at product scale), after checking the status.
pub fn finish_aggregate(shares: &[Vec<u64>], p: &JobParams) -> Result<(u64, f64)> {
    if shares.iter().any(|s| s.len() != 2 + STATUS_WORDS) {
        return Err(Error::invalid(
            "aggregate result shares have the wrong size",
        ));
    }
    let total = crate::mpc::ring::sum_all(2 + STATUS_WORDS, shares.iter().map(Vec::as_slice));
    check_status(total[2])?;
    let scale = (1u64 << (2 * p.frac_bits)) as f64;
    Ok((total[0], total[1] as i64 as f64 / scale))
}

/// One row of a party's result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResultRow {
    /// The party's entity (index into its graph).
    pub entity: u32,
    /// Matched (mutual best above the threshold).
    pub matched: bool,
    /// The match's similarity `S(a, b) / (1 + w1 + w2)`, in [-1, 1], 1 for identical names and
    /// neighbourhoods (0 when unmatched).
    pub score: f64,
    /// Link token, equal on both sides of a matched pair (0 when unmatched).
    pub token: u64,
    /// Evaluation jobs: the other party's row of the best candidate and its score.
    pub best: Option<(u32, f64)>,
    /// The partner's id (when both parties opted in).
    pub partner_id: Option<String>,
    /// With `explain`: each model block's contribution to the match's similarity, in the units
    /// of `score` (they sum to it; [`crate::model::explain`]); zeros when unmatched.
    #[serde(default)]
    pub explanation: Option<Vec<f64>>,
}

/// Reconstructs a party's results from every server's output shares for it.
pub fn finish_party(
    data: &PartyData,
    shares: &[Vec<u64>],
    p: &JobParams,
) -> Result<Vec<ResultRow>> {
    let ow = p.out_width();
    let n = data.rows.len();
    let len = n * ow + p.trailer_words();
    if shares.iter().any(|s| s.len() != len) {
        return Err(Error::invalid(format!(
            "result shares have the wrong size: expected {len} words from every server"
        )));
    }
    let sum = crate::mpc::ring::sum_all(len, shares.iter().map(Vec::as_slice));
    check_status(sum[n * ow])?;
    let scale = (1u64 << (2 * p.frac_bits)) as f64;
    let norm = scale * p.model.max_score();
    let mut out = Vec::with_capacity(n);
    for (r, &entity) in data.rows.iter().enumerate() {
        let v = &sum[r * ow..(r + 1) * ow];
        let matched = match v[0] {
            0 => false,
            1 => true,
            other => {
                return Err(Error::invalid(format!(
                    "row {r}: reconstructed match flag is {other}, not 0 or 1 (shares from different jobs?)"
                )));
            }
        };
        let mut at = 3;
        let best = if p.reveal_best {
            at += 2;
            Some((v[3] as u32, v[4] as i64 as f64 / scale))
        } else {
            None
        };
        let partner_id = if p.share_partner_ids && matched {
            words_to_id(&v[at..at + ID_WORDS])
        } else {
            None
        };
        if p.share_partner_ids {
            at += ID_WORDS;
        }
        let explanation = p
            .explain
            .then(|| v[at..ow].iter().map(|&x| x as i64 as f64 / norm).collect());
        out.push(ResultRow {
            entity,
            matched,
            score: v[1] as i64 as f64 / norm,
            token: v[2],
            best,
            partner_id,
            explanation,
        });
    }
    Ok(out)
}

/// Reconstructs the audit's aggregates (both sides; [`crate::model::audit::finish`]) from every
/// server's result shares for this party, after [`finish_party`] checked them.
pub fn audit_totals(data: &PartyData, shares: &[Vec<u64>], p: &JobParams) -> Result<Vec<u64>> {
    let at = data.rows.len() * p.out_width() + STATUS_WORDS;
    let len = at + p.audit.output_words();
    if shares.iter().any(|s| s.len() != len) {
        return Err(Error::invalid("result shares have the wrong size"));
    }
    Ok(crate::mpc::ring::sum_all(
        len - at,
        shares.iter().map(|s| &s[at..]),
    ))
}

/// The plaintext reference's decisions for one side.
#[derive(Debug, Clone, PartialEq)]
pub struct SideReference {
    /// Best candidate (row of the other side) per row.
    pub best: Vec<u32>,
    /// Its pair score at product scale.
    pub score: Vec<i64>,
    /// Mutual best above the threshold.
    pub matched: Vec<bool>,
    /// Ranking scores `2S - r_other` of every candidate, `rows x per_row`.
    pub ranking: Vec<i64>,
}

/// The plaintext scores `S(a, b) = <z_a, z_b>` of every slot of A's and of B's candidate
/// lists (rows of `w` fixed-point numbers), at product scale.
pub fn pair_scores(za: &[u64], zb: &[u64], w: usize, cand: &Candidates) -> (Vec<i64>, Vec<i64>) {
    let k = cand.per_row;
    let (na, nb) = (za.len() / w, zb.len() / w);
    let dot = |a: usize, b: usize| {
        crate::mpc::ring::dot(&za[a * w..(a + 1) * w], &zb[b * w..(b + 1) * w]) as i64
    };
    let sa = (0..na * k)
        .map(|q| dot(q / k, cand.a[q] as usize))
        .collect();
    let sb = (0..nb * k)
        .map(|q| dot(cand.b[q] as usize, q / k))
        .collect();
    (sa, sb)
}

/// The same model in plaintext integer arithmetic, on the reconstructed fixed-point vectors.
pub fn reference(
    za: &[u64],
    zb: &[u64],
    p: &JobParams,
    cand: &Candidates,
) -> (SideReference, SideReference) {
    let w = p.model.width();
    let k = cand.per_row;
    let (na, nb) = (za.len() / w, zb.len() / w);
    let (sa, sb) = pair_scores(za, zb, w, cand);
    let rowmax = |s: &[i64], rows: usize| -> Vec<i64> {
        (0..rows)
            .map(|i| *s[i * k..(i + 1) * k].iter().max().expect("k >= 1"))
            .collect()
    };
    let (mut xa, mut xb) = (sa, sb);
    let (mut ra, mut rb) = (rowmax(&xa, na), rowmax(&xb, nb));
    for _ in 1..p.csls_iterations {
        let ya: Vec<i64> = (0..na * k)
            .map(|q| 2 * xa[q] - ra[q / k] - rb[cand.a[q] as usize])
            .collect();
        let yb: Vec<i64> = (0..nb * k)
            .map(|q| 2 * xb[q] - rb[q / k] - ra[cand.b[q] as usize])
            .collect();
        (xa, xb) = (ya, yb);
        (ra, rb) = (rowmax(&xa, na), rowmax(&xb, nb));
    }
    let rank_a: Vec<i64> = (0..na * k)
        .map(|q| 2 * xa[q] - rb[cand.a[q] as usize])
        .collect();
    let rank_b: Vec<i64> = (0..nb * k)
        .map(|q| 2 * xb[q] - ra[cand.b[q] as usize])
        .collect();
    // First index of the maximum, as the secure tournament does.
    let argmax = |s: &[i64], rows: usize| -> Vec<usize> {
        (0..rows)
            .map(|i| {
                let row = &s[i * k..(i + 1) * k];
                let m = *row.iter().max().expect("k >= 1");
                row.iter().position(|&v| v == m).expect("max present")
            })
            .collect()
    };
    let (ta, tb) = (argmax(&rank_a, na), argmax(&rank_b, nb));
    let best_a: Vec<u32> = (0..na).map(|a| cand.a[a * k + ta[a]]).collect();
    let best_b: Vec<u32> = (0..nb).map(|b| cand.b[b * k + tb[b]]).collect();
    let score_a: Vec<i64> = (0..na).map(|a| rank_a[a * k + ta[a]] - ra[a]).collect();
    let score_b: Vec<i64> = (0..nb).map(|b| rank_b[b * k + tb[b]] - rb[b]).collect();
    let th = p.min_score_fixed() as i64;
    let matched_a: Vec<bool> = (0..na)
        .map(|a| best_b[best_a[a] as usize] as usize == a && score_a[a] >= th)
        .collect();
    let matched_b: Vec<bool> = (0..nb)
        .map(|b| {
            let a = best_b[b] as usize;
            best_a[a] as usize == b && matched_a[a]
        })
        .collect();
    let mut side_a = SideReference {
        best: best_a,
        score: score_a,
        matched: matched_a,
        ranking: rank_a,
    };
    let mut side_b = SideReference {
        best: best_b,
        score: score_b,
        matched: matched_b,
        ranking: rank_b,
    };
    crate::model::assign::reference(&mut side_a, &mut side_b, &ra, p, cand, &rb);
    (side_a, side_b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pairs listed both ways, by scan, are those a map of B's slots finds (the last slot
    /// when a list repeats an entity), in A-slot order.
    #[test]
    fn present_pairs_are_the_mutually_listed_slots() {
        let mut prg = Prg::new(&Seed([3; 32]), 0);
        for (na, nb, k) in [(1, 1, 1), (5, 7, 3), (40, 30, 8), (9, 200, 4)] {
            let mut draw = |n: usize, len: usize| -> Vec<u32> {
                (0..len)
                    .map(|_| (prg.next_u64() % n as u64) as u32)
                    .collect()
            };
            let c = Candidates {
                per_row: k,
                a: draw(nb, na * k),
                b: draw(na, nb * k),
            };
            let mut last = std::collections::HashMap::new();
            for (m, &a) in c.b.iter().enumerate() {
                last.insert((a as usize, m / k), m as u32);
            }
            let want: Vec<(u32, u32)> = (0..na * k)
                .filter_map(|q| last.get(&(q / k, c.a[q] as usize)).map(|&m| (q as u32, m)))
                .collect();
            assert_eq!(present_pairs(&c, na).unwrap(), want, "{na} x {nb}, k = {k}");
        }
    }

    #[test]
    fn pairs_listed_both_ways_are_scored_once() {
        let mut prg = Prg::new(&Seed([5; 32]), 0);
        for (na, nb, k) in [(1, 1, 1), (9, 7, 3), (40, 30, 8)] {
            // Lists of distinct entries, as blocking makes them.
            let mut lists = |n: usize, m: usize| -> Vec<u32> {
                let mut out = Vec::new();
                for _ in 0..n {
                    let mut row: Vec<u32> = Vec::new();
                    while row.len() < k.min(m) {
                        let j = (prg.next_u64() % m as u64) as u32;
                        if !row.contains(&j) {
                            row.push(j);
                        }
                    }
                    out.extend(row);
                }
                out
            };
            let c = Candidates {
                per_row: k,
                a: lists(na, nb),
                b: lists(nb, na),
            };
            let present = present_pairs(&c, na).unwrap();
            let in_a = pair_index(&c, na, nb, &present).unwrap();
            let listed: Vec<(usize, usize)> = (0..na * k)
                .map(|q| (q / k, c.a[q] as usize))
                .chain((0..nb * k).map(|m| (c.b[m] as usize, m / k)))
                .collect();
            let distinct: std::collections::BTreeSet<_> = listed.iter().copied().collect();
            // Every worker's slots read the product of their own pair, and every distinct pair
            // is scored once over all workers.
            for w in 1..=na.min(nb).min(3) {
                let sh = Shards::new(na, nb, w).unwrap();
                let per: Vec<ShardPairs> = (0..w)
                    .map(|j| ShardPairs::new(&c, &sh, j, &in_a).unwrap())
                    .collect();
                let global = |sp: &ShardPairs, i: usize| sp.pairs.pair(i);
                // Each worker's pairs are its ranges of the list of all pairs.
                let all = &ShardPairs::new(&c, &Shards::new(na, nb, 1).unwrap(), 0, &in_a)
                    .unwrap()
                    .pairs;
                for (sp, [x, y]) in per.iter().zip(pair_ranges(&c, &sh, &in_a)) {
                    let mine: Vec<_> = (0..sp.pairs.len()).map(|i| sp.pairs.pair(i)).collect();
                    let there: Vec<_> = x.chain(y).map(|i| all.pair(i)).collect();
                    assert_eq!(mine, there, "{na} x {nb}, k = {k}, {w} workers");
                }
                let tag = 1u64 << 40;
                for (j, sp) in per.iter().enumerate() {
                    let (ra, rb) = (sh.a(j), sh.b(j));
                    let index: Vec<u64> = (0..sp.pairs.len() as u64).collect();
                    let fetched: Vec<u64> = sp
                        .remote
                        .iter()
                        .map(|&(_, q)| {
                            let at = sh.a_slot(q as usize, k);
                            tag | (at.worker as u64) << 32 | at.index as u64
                        })
                        .collect();
                    let per_slot =
                        slot_scores(&index, ra.len() * k, &sp.b_slots, &sp.remote, &fetched);
                    let own = (ra.start * k..ra.end * k)
                        .chain(na * k + rb.start * k..na * k + rb.end * k);
                    for (v, q) in per_slot.iter().zip(own) {
                        let got = if v & tag != 0 {
                            global(
                                &per[((v >> 32) & 0xff) as usize],
                                (v & 0xffff_ffff) as usize,
                            )
                        } else {
                            global(sp, *v as usize)
                        };
                        assert_eq!(
                            got, listed[q],
                            "{na} x {nb}, k = {k}, {w} workers, slot {q}"
                        );
                    }
                }
                let scored: usize = per.iter().map(|sp| sp.pairs.len()).sum();
                assert_eq!(scored, distinct.len(), "{na} x {nb}, k = {k}, {w} workers");
            }
        }
    }

    #[test]
    fn id_words_round_trip() {
        for id in ["a", "Q42", "http://dbpedia.org/resource/Paris", "é"] {
            assert_eq!(words_to_id(&id_to_words(id).unwrap()).as_deref(), Some(id));
        }
        assert!(
            id_to_words(&"x".repeat(64))
                .unwrap_err()
                .to_string()
                .contains("64 bytes")
        );
        assert_eq!(words_to_id(&[0; ID_WORDS]), None);
    }

    #[test]
    fn too_many_fractional_bits_are_refused() {
        let p = JobParams {
            frac_bits: 30,
            ..JobParams::default()
        };
        let e = p.validate().unwrap_err().to_string();
        assert!(
            e.contains("frac_bits = 30") && e.contains("use at most"),
            "{e}"
        );
        let max = p.max_frac_bits();
        assert!((16..30).contains(&max), "{max}");
        let ok = JobParams {
            frac_bits: max,
            ..JobParams::default()
        };
        assert!(ok.validate().is_ok());
        let over = JobParams {
            frac_bits: max + 1,
            ..JobParams::default()
        };
        assert!(over.validate().is_err());
    }

    #[test]
    fn compare_bits_cover_scores() {
        let p = JobParams::default();
        // max score 2.4: |diff| <= 6 * 2.4 * 2^32 < 2^36.
        assert!(p.compare_bits() >= 38);
        assert!(p.compare_bits() <= 64);
    }
}
