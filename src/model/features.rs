//! Party-local model: everything that needs only the owner's graph, computed in the clear.
//!
//! * **Level 0** (the entity itself): hashed TF-IDF over the name's character bigrams and
//!   trigrams (of `#name#`, lower-cased) and its words, plus type tokens and attribute-value
//!   words when present; IDF is computed on the owner's own graph. Features are hashed with a
//!   sign into `dim` dimensions (the same public hash on both sides) and L2-normalised.
//! * **Relation-aware self-attention**: a neighbour reached through relation `r` (in one
//!   direction) weighs `1 / (number of the entity's neighbours reached through r)`, so the one
//!   director of a film weighs as much as all its actors together.
//! * **Capped weighted sampling**: at most `level1_cap` (and `sample_cap` for attention)
//!   neighbours per entity, drawn without replacement with probability proportional to the
//!   weight (Efraimidis-Spirakis keys from a keyed hash: reproducible for a given salt).
//! * **Level 1**: the weighted sum of the sampled neighbours' level-0 vectors, L2-normalised.
//! * **Attention sketch**: `T = sum_u w_u sym(p_u (x) p_u)` over the attention sample, where
//!   `p_u` is the neighbour's level-0 vector under a public random projection to `attention_dim`
//!   dimensions. Then `<T_a, T_b> = sum_{u,v} w_u w_v cos(p_u, p_v)^2`: every neighbour pair
//!   counts with a weight equal to its own similarity, so neighbours of `a` with a close
//!   counterpart among those of `b` dominate and unrelated ones fade (second-order cross-graph
//!   attention), and the servers evaluate it as one more block of the same bilinear form.
//!
//! The vector uploaded per entity is `z = [e | sqrt(w1) h | sqrt(w2) T]`, so that
//! `<z_a, z_b> = cos(e_a, e_b) + w1 cos(h_a, h_b) + w2 att(a, b)`.

use crate::model::graph::Graph;
use rayon::prelude::*;
use std::collections::HashMap;

/// Model parameters shared by both parties of a job.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelParams {
    /// Dimension of the level-0 name vector.
    pub dim: usize,
    /// Weight of level-1 (neighbourhood-sum) similarity.
    pub neighbour_weight: f64,
    /// Weight of the cross-graph attention term (0 disables it).
    pub attention_weight: f64,
    /// Projection dimension of the attention sketch (sketch has `d (d+1) / 2` entries).
    pub attention_dim: usize,
    /// Neighbours sampled for the attention sketch.
    pub sample_cap: usize,
    /// Neighbours sampled for the level-1 sum.
    pub level1_cap: usize,
    /// Salt of the sampling hash.
    pub sampling_salt: String,
    /// The job uses known links (anchors): each party appends an anchor-propagation block
    /// (see [`crate::model::anchors`]) and holds a known-links file.
    pub known_links: bool,
    /// Weight of the anchor-propagation block.
    pub anchor_weight: f64,
    /// Width of the anchor block (the three-view features, [`crate::model::three_view`]).
    pub anchor_dim: usize,
    /// Width of the anchors' random labels during propagation.
    pub anchor_label_dim: usize,
    /// Propagation steps.
    pub anchor_hops: usize,
    /// Nearest anchors per entity used as blocking tokens.
    pub anchor_tokens: usize,
    /// Public seed of the anchors' random labels (both parties use the same).
    pub anchor_seed: String,
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            dim: 256,
            neighbour_weight: 0.9,
            attention_weight: 0.5,
            attention_dim: 16,
            sample_cap: 10,
            level1_cap: 64,
            sampling_salt: "ppea-sampling-v1".to_string(),
            known_links: false,
            anchor_weight: 1.0,
            anchor_dim: 512,
            anchor_label_dim: 128,
            anchor_hops: 2,
            anchor_tokens: 8,
            anchor_seed: "ppea-anchors-v1".to_string(),
        }
    }
}

impl ModelParams {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), String> {
        if !(8..=4096).contains(&self.dim) {
            return Err(format!("model.dim must be 8 to 4096, got {}", self.dim));
        }
        for (name, w) in [
            ("neighbour_weight", self.neighbour_weight),
            ("attention_weight", self.attention_weight),
        ] {
            if !(0.0..=10.0).contains(&w) {
                return Err(format!("model.{name} must be 0 to 10, got {w}"));
            }
        }
        if self.attention_weight > 0.0 && !(2..=64).contains(&self.attention_dim) {
            return Err(format!(
                "model.attention_dim must be 2 to 64, got {}",
                self.attention_dim
            ));
        }
        if self.level1_cap == 0 || self.sample_cap == 0 {
            return Err("model.level1_cap and model.sample_cap must be at least 1".into());
        }
        if self.known_links {
            if !(0.0..=10.0).contains(&self.anchor_weight) {
                return Err(format!(
                    "model.anchor_weight must be 0 to 10, got {}",
                    self.anchor_weight
                ));
            }
            if !(1..=4).contains(&self.anchor_hops) {
                return Err(format!(
                    "model.anchor_hops must be 1 to 4, got {}",
                    self.anchor_hops
                ));
            }
            for (name, d) in [
                ("anchor_dim", self.anchor_dim),
                ("anchor_label_dim", self.anchor_label_dim),
            ] {
                if !(8..=4096).contains(&d) {
                    return Err(format!("model.{name} must be 8 to 4096, got {d}"));
                }
            }
            if self.anchor_tokens > 256 {
                return Err(format!(
                    "model.anchor_tokens must be 0 to 256, got {}",
                    self.anchor_tokens
                ));
            }
        }
        Ok(())
    }

    /// Length of the attention sketch.
    pub fn sketch_len(&self) -> usize {
        if self.attention_weight > 0.0 {
            self.attention_dim * (self.attention_dim + 1) / 2
        } else {
            0
        }
    }

    /// Length of the anchor-propagation block (0 without known links).
    pub fn anchor_len(&self) -> usize {
        if self.known_links { self.anchor_dim } else { 0 }
    }

    /// Length of the uploaded vector `z`.
    pub fn width(&self) -> usize {
        2 * self.dim + self.sketch_len() + self.anchor_len()
    }

    /// The blocks of `z`, in order: `(length, largest norm)`: the name vector (unit norm), the
    /// level-1 vector scaled by `sqrt(w1)`, the attention sketch scaled by `sqrt(w2)` (when
    /// enabled), the anchor-propagation block scaled by `sqrt(anchor_weight)` (with known
    /// links). The servers check every uploaded row against these norms
    /// (`crate::model::upload_check`); the lengths add up to [`ModelParams::width`].
    pub fn blocks(&self) -> Vec<(usize, f64)> {
        let mut b = vec![(self.dim, 1.0), (self.dim, self.neighbour_weight.sqrt())];
        if self.sketch_len() > 0 {
            b.push((self.sketch_len(), self.attention_weight.sqrt()));
        }
        if self.anchor_len() > 0 {
            b.push((self.anchor_len(), self.anchor_weight.sqrt()));
        }
        b
    }

    /// Upper bound on `|<z_a, z_b>|` (each block is at most unit norm).
    pub fn max_score(&self) -> f64 {
        1.0 + self.neighbour_weight
            + if self.sketch_len() > 0 {
                self.attention_weight
            } else {
                0.0
            }
            + if self.known_links {
                self.anchor_weight
            } else {
                0.0
            }
    }
}

/// A public, deterministic 64-bit hash of bytes (FNV-1a with a SplitMix64 finaliser). Used for
/// feature hashing and sampling keys: both parties must compute the same values.
pub fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    splitmix(h)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Lower-cased words of a name (runs of letters and digits).
pub fn words(name: &str) -> Vec<String> {
    name.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Character n-grams of `#w1 w2 ...#`.
pub fn char_ngrams(words: &[String], n: usize) -> Vec<String> {
    let s: Vec<char> = format!("#{}#", words.join(" ")).chars().collect();
    if s.len() < n {
        return Vec::new();
    }
    (0..=s.len() - n)
        .map(|i| s[i..i + n].iter().collect())
        .collect()
}

/// The level-0 features of one entity with their raw counts.
fn entity_features(g: &Graph, i: usize, attrs: &[Vec<&str>]) -> HashMap<String, (f64, u32)> {
    let mut f: HashMap<String, (f64, u32)> = HashMap::new();
    let mut add = |k: String, w: f64| {
        let e = f.entry(k).or_insert((w, 0));
        e.1 += 1;
    };
    let ws = words(&g.names[i]);
    for b in char_ngrams(&ws, 2) {
        add(format!("b:{b}"), 1.0);
    }
    for t in char_ngrams(&ws, 3) {
        add(format!("t:{t}"), 1.0);
    }
    for w in &ws {
        add(format!("w:{w}"), 1.0);
    }
    if let Some(ty) = &g.types[i] {
        add(format!("y:{}", ty.to_lowercase()), 1.0);
    }
    for v in &attrs[i] {
        for w in words(v) {
            add(format!("a:{w}"), 0.5);
        }
    }
    f
}

/// Level-0 vectors of all entities, row-major `len x dim`, each L2-normalised.
///
/// Two passes, so that no entity's feature map outlives its use (memory: a million entities'
/// maps took several GB): the first counts document frequencies, the second recomputes each
/// entity's features and hashes them into its row, both in parallel.
pub fn level0(g: &Graph, dim: usize) -> Vec<f64> {
    let mut attrs: Vec<Vec<&str>> = vec![Vec::new(); g.len()];
    for (e, _, v) in &g.attributes {
        attrs[*e as usize].push(v.as_str());
    }
    let attrs = &attrs;
    let df: HashMap<String, u32> = (0..g.len())
        .into_par_iter()
        .fold(HashMap::new, |mut df: HashMap<String, u32>, i| {
            for k in entity_features(g, i, attrs).into_keys() {
                *df.entry(k).or_default() += 1;
            }
            df
        })
        .reduce(HashMap::new, |mut big, mut small| {
            if big.len() < small.len() {
                std::mem::swap(&mut big, &mut small);
            }
            for (k, c) in small {
                *big.entry(k).or_default() += c;
            }
            big
        });
    let n = g.len() as f64;
    let mut out = vec![0f64; g.len() * dim];
    out.par_chunks_mut(dim).enumerate().for_each(|(i, row)| {
        let f = entity_features(g, i, attrs);
        // Sorted for a deterministic summation order.
        let mut keys: Vec<_> = f.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (k, &(w, c)) in keys {
            let idf = (n / df[k.as_str()] as f64).ln().max(0.0) + 1e-3;
            let h = hash64(&[b"feature", k.as_bytes()]);
            let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
            row[(h % dim as u64) as usize] += sign * w * idf * (1.0 + (c as f64).ln());
        }
        normalize(row);
    });
    out
}

/// Scales a vector to unit L2 norm (a zero vector stays zero).
pub fn normalize(v: &mut [f64]) {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Relation-aware weights and capped weighted samples of each entity's neighbours:
/// `(neighbour, weight)` lists, at most `cap` long, weights summing to 1.
pub fn sample_neighbours(g: &Graph, cap: usize, salt: &str) -> Vec<Vec<(u32, f64)>> {
    g.adjacency()
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let mut per_rel: HashMap<(u32, bool), u32> = HashMap::new();
            for &(_, r, out) in ns {
                *per_rel.entry((r, out)).or_default() += 1;
            }
            let mut keyed: Vec<(f64, u32, f64)> = ns
                .iter()
                .map(|&(n, r, out)| {
                    let w = 1.0 / per_rel[&(r, out)] as f64;
                    let u = hash64(&[
                        salt.as_bytes(),
                        g.ids[i].as_bytes(),
                        g.ids[n as usize].as_bytes(),
                        &r.to_le_bytes(),
                    ]);
                    let u = ((u >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                    (u.ln() / w, n, w)
                })
                .collect();
            // Largest keys u^(1/w) (equivalently ln(u)/w) first; ties by neighbour index.
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            keyed.truncate(cap);
            let total: f64 = keyed.iter().map(|k| k.2).sum();
            keyed.into_iter().map(|(_, n, w)| (n, w / total)).collect()
        })
        .collect()
}

/// One level-1 vector (`out` zero on entry, `dim` long).
fn level1_row(e: &[f64], dim: usize, s: &[(u32, f64)], out: &mut [f64]) {
    for &(n, w) in s {
        let src = &e[n as usize * dim..(n as usize + 1) * dim];
        out.iter_mut().zip(src).for_each(|(r, x)| *r += w * x);
    }
    normalize(out);
}

/// The public random projection of the attention sketch (`dim x pdim`, entries +-1).
fn projection(dim: usize, pdim: usize) -> Vec<f64> {
    (0..dim * pdim)
        .map(|k| {
            if hash64(&[b"projection", &(k as u64).to_le_bytes()]) & 1 == 1 {
                1.0
            } else {
                -1.0
            }
        })
        .collect()
}

/// The level-0 vectors under the sketch's projection, each L2-normalised (`len x pdim`).
fn projected(e: &[f64], dim: usize, pdim: usize) -> Vec<f64> {
    let proj = projection(dim, pdim);
    let mut p = vec![0f64; e.len() / dim * pdim];
    p.par_chunks_mut(pdim).enumerate().for_each(|(i, out)| {
        let row = &e[i * dim..(i + 1) * dim];
        for (r, x) in row.iter().enumerate() {
            if *x != 0.0 {
                for (c, o) in out.iter_mut().enumerate() {
                    *o += x * proj[r * pdim + c];
                }
            }
        }
        normalize(out);
    });
    p
}

/// One attention sketch from the projected vectors `p` (`out` zero on entry).
fn sketch_row(p: &[f64], pdim: usize, s: &[(u32, f64)], out: &mut [f64]) {
    let sqrt2 = std::f64::consts::SQRT_2;
    for &(nb, w) in s {
        let v = &p[nb as usize * pdim..(nb as usize + 1) * pdim];
        let mut k = 0;
        for a in 0..pdim {
            out[k] += w * v[a] * v[a];
            k += 1;
            for b in a + 1..pdim {
                out[k] += w * sqrt2 * v[a] * v[b];
                k += 1;
            }
        }
    }
}

/// Computes the vectors `z` one row at a time from what they are made of (the level-0
/// vectors, the neighbour samples, the projected vectors and, with known links, the anchor
/// block), so that a party never needs every row at once: a million entities' rows are 5 GB
/// at the default width, the level-0 vectors 2 GB. [`Embedder::all`] gives every row.
/// `Debug` shows only sizes; the vectors are wiped on drop.
pub struct Embedder {
    dim: usize,
    pdim: usize,
    sketch: usize,
    width: usize,
    r1: f64,
    r2: f64,
    e: Vec<f64>,
    level1: Vec<Vec<(u32, f64)>>,
    attention: Vec<Vec<(u32, f64)>>,
    projected: Vec<f64>,
    block: Vec<f64>,
    block_len: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Embedder(rows={}, width={}, <redacted>)",
            self.len(),
            self.width
        )
    }
}

impl Drop for Embedder {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.e.zeroize();
        self.projected.zeroize();
        self.block.zeroize();
    }
}

impl Embedder {
    /// The rows of `g` from level-0 vectors `e` (`len x dim`, unit or zero rows), without an
    /// anchor block (it stays zero until [`Embedder::with_block`]).
    pub fn new(g: &Graph, p: &ModelParams, e: Vec<f64>) -> Embedder {
        let d = p.dim;
        let sketch = p.sketch_len();
        let (attention, projected) = if sketch > 0 {
            (
                sample_neighbours(g, p.sample_cap, &p.sampling_salt),
                projected(&e, d, p.attention_dim),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        Embedder {
            dim: d,
            pdim: p.attention_dim,
            sketch,
            width: p.width(),
            r1: p.neighbour_weight.sqrt(),
            r2: p.attention_weight.sqrt(),
            level1: sample_neighbours(g, p.level1_cap, &p.sampling_salt),
            attention,
            projected,
            e,
            block: Vec::new(),
            block_len: 0,
        }
    }

    /// Sets the last `len` entries of every row (`block` is `rows x len`, already weighted).
    pub fn with_block(mut self, block: Vec<f64>, len: usize) -> Embedder {
        self.block = block;
        self.block_len = if self.block.is_empty() { 0 } else { len };
        self
    }

    /// Rows (entities).
    pub fn len(&self) -> usize {
        self.level1.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Words per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The level-1 neighbour samples (`(neighbour, weight)` per entity; they also choose the
    /// neighbour tokens of blocking).
    pub fn level1_samples(&self) -> &[Vec<(u32, f64)>] {
        &self.level1
    }

    /// Entity `i`'s row into `out` (`width` long; every entry written).
    pub fn row(&self, i: usize, out: &mut [f64]) {
        let (d, sl, w) = (self.dim, self.sketch, self.width);
        out.fill(0.0);
        out[..d].copy_from_slice(&self.e[i * d..(i + 1) * d]);
        let h = &mut out[d..2 * d];
        level1_row(&self.e, d, &self.level1[i], h);
        h.iter_mut().for_each(|x| *x *= self.r1);
        if sl > 0 {
            let t = &mut out[2 * d..2 * d + sl];
            sketch_row(&self.projected, self.pdim, &self.attention[i], t);
            t.iter_mut().for_each(|x| *x *= self.r2);
        }
        let bl = self.block_len;
        if bl > 0 {
            out[w - bl..].copy_from_slice(&self.block[i * bl..(i + 1) * bl]);
        }
    }

    /// Every row, row-major `len x width`.
    pub fn all(&self) -> Vec<f64> {
        let mut z = vec![0f64; self.len() * self.width];
        z.par_chunks_mut(self.width)
            .enumerate()
            .for_each(|(i, row)| self.row(i, row));
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The blocks of `z` one at a time, over every entity (the Embedder computes them per row).

    /// Level-1 vectors: weighted sums of sampled neighbours' level-0 vectors, L2-normalised.
    fn level1(e: &[f64], dim: usize, samples: &[Vec<(u32, f64)>]) -> Vec<f64> {
        let mut out = vec![0f64; samples.len() * dim];
        for (row, s) in out.chunks_exact_mut(dim).zip(samples) {
            level1_row(e, dim, s, row);
        }
        out
    }

    /// Attention sketches `sum_u w_u sym(p_u (x) p_u)`, row-major `len x pdim (pdim + 1) / 2`.
    fn attention_sketch(
        e: &[f64],
        dim: usize,
        pdim: usize,
        samples: &[Vec<(u32, f64)>],
    ) -> Vec<f64> {
        let p = projected(e, dim, pdim);
        let len = pdim * (pdim + 1) / 2;
        let mut out = vec![0f64; samples.len() * len];
        for (row, s) in out.chunks_exact_mut(len).zip(samples) {
            sketch_row(&p, pdim, s, row);
        }
        out
    }

    /// The vectors `z = [e | sqrt(w1) h | sqrt(w2) T | 0]` of every entity, row-major
    /// `len x width`; the anchor block (last `anchor_len` entries) is left zero (with known links,
    /// [`crate::model::anchors::Structure::embedder`] gives rows with it).
    fn embed(g: &Graph, p: &ModelParams) -> Vec<f64> {
        Embedder::new(g, p, level0(g, p.dim)).all()
    }

    fn toy() -> Graph {
        let mut g = Graph::default();
        for (id, name) in [
            ("1", "Paris"),
            ("2", "France"),
            ("3", "Lyon"),
            ("4", "Seine"),
        ] {
            g.add_entity(id, name, None, None);
        }
        g.relations = vec!["capital".into(), "river".into(), "city".into()];
        g.triples = vec![(1, 0, 0), (0, 1, 3), (1, 2, 2), (1, 2, 0)];
        g
    }

    #[test]
    fn vectors_are_normalised_and_weights_sum_to_one() {
        let g = toy();
        let p = ModelParams::default();
        let z = embed(&g, &p);
        let w = p.width();
        for i in 0..g.len() {
            let e: f64 = z[i * w..i * w + p.dim].iter().map(|x| x * x).sum();
            assert!((e - 1.0).abs() < 1e-9);
            let norm: f64 = z[i * w..(i + 1) * w].iter().map(|x| x * x).sum::<f64>();
            assert!(norm <= p.max_score() + 1e-9);
        }
        let s = sample_neighbours(&g, 10, "x");
        // France: capital (in), city (out) x2: the capital counts as much as both cities.
        let fr: HashMap<u32, f64> = s[1].iter().copied().collect();
        assert!((fr[&0] - 0.5).abs() < 1e-9 || (fr[&0] - 0.25 - 0.25).abs() < 1e-9);
        assert!((s[1].iter().map(|x| x.1).sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(sample_neighbours(&g, 1, "x")[1].len() == 1);
    }

    #[test]
    fn embedder_rows_are_the_blocks_of_z() {
        let g = toy();
        for p in [
            ModelParams::default(),
            ModelParams {
                attention_weight: 0.0,
                dim: 16,
                ..ModelParams::default()
            },
        ] {
            let (d, sl, w) = (p.dim, p.sketch_len(), p.width());
            let e = level0(&g, d);
            let h = level1(
                &e,
                d,
                &sample_neighbours(&g, p.level1_cap, &p.sampling_salt),
            );
            let t = if sl > 0 {
                let s2 = sample_neighbours(&g, p.sample_cap, &p.sampling_salt);
                attention_sketch(&e, d, p.attention_dim, &s2)
            } else {
                Vec::new()
            };
            let (r1, r2) = (p.neighbour_weight.sqrt(), p.attention_weight.sqrt());
            let z = embed(&g, &p);
            let mut row = vec![1.5; w];
            for i in 0..g.len() {
                let zi = &z[i * w..(i + 1) * w];
                assert_eq!(zi[..d], e[i * d..(i + 1) * d]);
                let hi: Vec<f64> = h[i * d..(i + 1) * d].iter().map(|x| r1 * x).collect();
                assert_eq!(zi[d..2 * d], hi[..]);
                let ti: Vec<f64> = t[i * sl..(i + 1) * sl].iter().map(|x| r2 * x).collect();
                assert_eq!(zi[2 * d..2 * d + sl], ti[..]);
                assert!(zi[2 * d + sl..].iter().all(|&x| x == 0.0));
                // One row alone (over a dirty buffer) is the same row.
                let emb = Embedder::new(&g, &p, e.clone());
                emb.row(i, &mut row);
                assert_eq!(row, zi);
            }
            // An anchor block fills the last entries.
            let mut pk = p.clone();
            pk.known_links = true;
            pk.anchor_dim = 8;
            let block: Vec<f64> = (0..g.len() * 8).map(|k| k as f64).collect();
            let emb = Embedder::new(&g, &pk, e.clone()).with_block(block.clone(), 8);
            let zk = emb.all();
            let wk = pk.width();
            for i in 0..g.len() {
                assert_eq!(zk[i * wk + wk - 8..(i + 1) * wk], block[i * 8..(i + 1) * 8]);
                assert_eq!(zk[i * wk..i * wk + w], z[i * w..(i + 1) * w]);
            }
        }
    }

    #[test]
    fn attention_sketch_is_squared_cosine_kernel() {
        let d = 8;
        let e: Vec<f64> = (0..3 * d).map(|k| ((k * 7 % 11) as f64) - 5.0).collect();
        let sa = vec![vec![(0u32, 0.25), (1, 0.75)]];
        let sb = vec![vec![(1u32, 0.5), (2, 0.5)]];
        let (ta, tb) = (
            attention_sketch(&e, d, 4, &sa),
            attention_sketch(&e, d, 4, &sb),
        );
        let dot: f64 = ta.iter().zip(&tb).map(|(x, y)| x * y).sum();
        // Direct evaluation of sum_u sum_v w_u w_v cos(p_u, p_v)^2.
        let proj = projection(d, 4);
        let p = |i: usize| {
            let mut v: Vec<f64> = (0..4)
                .map(|c| (0..d).map(|r| e[i * d + r] * proj[r * 4 + c]).sum())
                .collect();
            normalize(&mut v);
            v
        };
        let mut direct = 0.0;
        for &(u, wu) in &sa[0] {
            for &(v, wv) in &sb[0] {
                let c: f64 = p(u as usize)
                    .iter()
                    .zip(p(v as usize))
                    .map(|(x, y)| x * y)
                    .sum();
                direct += wu * wv * c * c;
            }
        }
        assert!((dot - direct).abs() < 1e-9, "{dot} vs {direct}");
    }
}
