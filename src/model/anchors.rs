//! Known links (anchors) and structure: party-local, on the owner's graph only.
//!
//! A job may use **known links**: pairs both parties already hold (ISBNs, registry numbers,
//! Wikidata ids). Each party holds a file of *its own* ids of the shared anchors, one per line,
//! in an order both parties agreed on; anchor `j` is line `j` on both sides.
//!
//! * **Label propagation** (after LightEA, Mao et al. 2022): anchor `j` gets a random label
//!   `l_j` of width `anchor_dim / anchor_hops` (entries `+-1`, from a public seed both parties
//!   share, so the same anchor has the same label on both sides). Labels are propagated through
//!   the owner's graph by the plain random walk `P` (every neighbour, weight `1 / degree`):
//!   `Y_0` holds the labels at the anchors, `Y_t = P Y_{t-1}`.
//!   `Y_t` is a random projection of the distribution of `t`-step walks over the anchors, so
//!   `<Y_t(a), Y_t(b)>` estimates how much `a` and `b` reach the same anchors in `t` steps.
//!   The block is `[n(n(Y_1) + b V) | n(Y_2) | ... | n(Y_H)] / sqrt(H)` (`n` = L2-normalised,
//!   `V` the relation view below, `b = relation_view_weight`), appended to `z` with weight
//!   `anchor_weight`.
//! * **Anchor tokens** for blocking: each entity's `anchor_tokens` nearest anchors, scored by
//!   their exact one- and two-step walk weights (`w1 + w2 / 2`); they join the neighbour tokens
//!   (keyed like every token, so the leakage rules of blocking are unchanged).
//! * **Known-link pairs are excluded** from the aligned rows (they are already matched).
//! * **Opaque names**: when nearly every name looks like an identifier (no word of two or more
//!   letters), names carry no signal across graphs but do add noise (random character n-grams
//!   match by chance). Such a graph is embedded and blocked with blank names (types and
//!   attributes still count), so alignment is driven by structure; callers warn when that
//!   happens without known links.

use crate::error::{Error, Result};
use crate::model::blocking::{BlockingKey, keyed};
use crate::model::features::{ModelParams, hash64, normalize, words};
use crate::model::graph::Graph;
use std::collections::HashMap;
use std::path::Path;

/// Fraction of opaque names above which a graph's names are treated as opaque.
pub const OPAQUE_FRACTION: f64 = 0.9;

/// Whether a name looks like an identifier rather than a name: it has no word of at least two
/// characters that are all letters (`Q42`, `m.0abc12`, `x3f9a0c`, `12345`, ``).
pub fn name_is_opaque(name: &str) -> bool {
    !words(name)
        .iter()
        .any(|w| w.chars().count() >= 2 && w.chars().all(char::is_alphabetic))
}

/// Whether at least [`OPAQUE_FRACTION`] of the graph's names look like identifiers.
pub fn names_look_opaque(g: &Graph) -> bool {
    if g.is_empty() {
        return false;
    }
    let opaque = g.names.iter().filter(|n| name_is_opaque(n)).count();
    opaque as f64 >= OPAQUE_FRACTION * g.len() as f64
}

/// Reads a known-links file: one of this party's entity ids per line (`#` comments and blank
/// lines skipped), in the order agreed with the other party. Unknown and repeated ids are
/// errors naming the file and line.
pub fn read_known_links(path: &Path, g: &Graph) -> Result<Vec<u32>> {
    let index = g.index();
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for (no, line) in
        crate::model::graph::read_lines(path).map_err(|e| Error::invalid(e.to_string()))?
    {
        let id = line.split('\t').next().unwrap_or("").trim();
        let &e = index.get(id).ok_or_else(|| {
            Error::invalid(format!(
                "{}:{no}: unknown entity {id:?} (not in this party's graph)",
                path.display()
            ))
        })?;
        if let Some(first) = seen.insert(e, no) {
            return Err(Error::invalid(format!(
                "{}:{no}: entity {id:?} is listed again (first on line {first})",
                path.display()
            )));
        }
        out.push(e);
    }
    if out.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no known links in the file",
            path.display()
        )));
    }
    Ok(out)
}

/// Transition weights of the plain random walk (every neighbour, `1 / degree`), as compressed
/// rows: `(start, (neighbour, weight))`. Relation-aware weights (as in the name model) were
/// measured too: for anchor labels they lose a fifth of Hits@1 on structure alone (see
/// `docs/design.md`), because they concentrate a row's mass on rare relations whose tails
/// are seldom anchors.
fn transitions(g: &Graph) -> (Vec<usize>, Vec<(u32, f64)>) {
    let adj = g.adjacency();
    let mut start = Vec::with_capacity(adj.len() + 1);
    let mut edges = Vec::new();
    for ns in &adj {
        start.push(edges.len());
        let w = 1.0 / ns.len().max(1) as f64;
        edges.extend(ns.iter().map(|&(n, _, _)| (n, w)));
    }
    start.push(edges.len());
    (start, edges)
}

/// The anchor-propagation block of every entity, row-major `len x anchor_dim`, unit norm (or
/// zero for entities no anchor reaches), unweighted.
pub fn propagate(g: &Graph, anchors: &[u32], p: &ModelParams) -> Vec<f64> {
    let hops = p.anchor_hops.max(1);
    let dh = p.anchor_dim / hops;
    let y0 = labels(g.len(), anchors, &p.anchor_seed, dh);
    let mut out = walks(g, &y0, dh, hops);
    let beta = p.relation_view_weight;
    if beta > 0.0 {
        let rv = relation_view(g, &y0, dh);
        let w = dh * hops;
        let scale = 1.0 / (hops as f64).sqrt();
        for i in 0..g.len() {
            let dst = &mut out[i * w..i * w + dh];
            for (d, r) in dst.iter_mut().zip(&rv[i * dh..(i + 1) * dh]) {
                *d += beta * scale * r;
            }
            normalize(dst);
            dst.iter_mut().for_each(|x| *x *= scale);
        }
    }
    out
}

/// The relation view (after LightEA's): each relation, in each direction, is described by the
/// normalised sum of the labels of the anchors it reaches; an entity by the normalised sum of
/// the descriptions of its relations (one per neighbour). Relation ids differ between the
/// graphs, but descriptions built from the shared anchors are comparable, so entities with few
/// anchor neighbours still get a profile ("has a director, a country, actors like these").
fn relation_view(g: &Graph, y0: &[f64], dh: usize) -> Vec<f64> {
    let adj = g.adjacency();
    let mut sig: HashMap<(u32, bool), Vec<f64>> = HashMap::new();
    for ns in &adj {
        for &(n, r, out) in ns {
            let src = &y0[n as usize * dh..(n as usize + 1) * dh];
            if src.iter().all(|x| *x == 0.0) {
                continue;
            }
            let e = sig.entry((r, out)).or_insert_with(|| vec![0.0; dh]);
            e.iter_mut().zip(src).for_each(|(a, b)| *a += b);
        }
    }
    for v in sig.values_mut() {
        normalize(v);
    }
    let mut out = vec![0f64; g.len() * dh];
    for (i, ns) in adj.iter().enumerate() {
        let row = &mut out[i * dh..(i + 1) * dh];
        for &(_, r, o) in ns {
            if let Some(v) = sig.get(&(r, o)) {
                row.iter_mut().zip(v).for_each(|(a, b)| *a += b);
            }
        }
        normalize(row);
    }
    out
}

/// Random `+-1` labels of width `dh` at the anchors' rows (zero elsewhere), `len x dh`.
fn labels(n: usize, anchors: &[u32], seed: &str, dh: usize) -> Vec<f64> {
    let mut y = vec![0f64; n * dh];
    for (j, &a) in anchors.iter().enumerate() {
        let row = &mut y[a as usize * dh..(a as usize + 1) * dh];
        for (c, v) in row.iter_mut().enumerate() {
            let h = hash64(&[
                b"anchor-label",
                seed.as_bytes(),
                &(dh as u64).to_le_bytes(),
                &(j as u64).to_le_bytes(),
                &(c as u64).to_le_bytes(),
            ]);
            *v += if h & 1 == 1 { 1.0 } else { -1.0 };
        }
    }
    y
}

/// Structural level-0 vectors for graphs whose names are opaque (width `dim`): an anchor's is
/// its own label, any other entity's its normalised one-step walk over the anchors. Level 1
/// and the attention sketch are then built on them exactly as on name vectors.
pub fn structural_level0(g: &Graph, anchors: &[u32], p: &ModelParams) -> Vec<f64> {
    let d = p.dim;
    let y = labels(g.len(), anchors, &p.anchor_seed, d);
    let mut e = walks(g, &y, d, 1);
    for &a in anchors {
        let row = &mut e[a as usize * d..(a as usize + 1) * d];
        row.copy_from_slice(&y[a as usize * d..(a as usize + 1) * d]);
        normalize(row);
    }
    e
}

/// `[n(P y) | n(P^2 y) | ...] / sqrt(hops)` for labels `y` of width `dh`.
fn walks(g: &Graph, y0: &[f64], dh: usize, hops: usize) -> Vec<f64> {
    let n = g.len();
    let (start, edges) = transitions(g);
    let mut y = y0.to_vec();
    let w = dh * hops;
    let mut out = vec![0f64; n * w];
    let scale = 1.0 / (hops as f64).sqrt();
    for t in 0..hops {
        let mut next = vec![0f64; n * dh];
        for i in 0..n {
            let row = &mut next[i * dh..(i + 1) * dh];
            for &(nb, wt) in &edges[start[i]..start[i + 1]] {
                let src = &y[nb as usize * dh..(nb as usize + 1) * dh];
                row.iter_mut().zip(src).for_each(|(r, x)| *r += wt * x);
            }
        }
        for i in 0..n {
            let dst = &mut out[i * w + t * dh..i * w + (t + 1) * dh];
            dst.copy_from_slice(&next[i * dh..(i + 1) * dh]);
            normalize(dst);
            dst.iter_mut().for_each(|x| *x *= scale);
        }
        y = next;
    }
    out
}

/// Each entity's nearest anchors (indices into the anchor list), best first: scored by the
/// exact one-step walk weight plus half the two-step weight, ties to the lower anchor index.
pub fn nearest_anchors(g: &Graph, anchors: &[u32], keep: usize) -> Vec<Vec<u32>> {
    let n = g.len();
    let (start, edges) = transitions(g);
    let mut anchor_of = vec![u32::MAX; n];
    for (j, &a) in anchors.iter().enumerate() {
        anchor_of[a as usize] = j as u32;
    }
    // One-step anchor weights per entity (sparse).
    let step1: Vec<Vec<(u32, f64)>> = (0..n)
        .map(|i| {
            edges[start[i]..start[i + 1]]
                .iter()
                .filter(|(nb, _)| anchor_of[*nb as usize] != u32::MAX)
                .map(|&(nb, w)| (anchor_of[nb as usize], w))
                .collect()
        })
        .collect();
    let mut score = vec![0f64; anchors.len()];
    let mut touched: Vec<u32> = Vec::new();
    (0..n)
        .map(|i| {
            let mut add = |j: u32, v: f64, touched: &mut Vec<u32>| {
                if score[j as usize] == 0.0 {
                    touched.push(j);
                }
                score[j as usize] += v;
            };
            for &(j, w) in &step1[i] {
                add(j, w, &mut touched);
            }
            for &(nb, w) in &edges[start[i]..start[i + 1]] {
                for &(j, w2) in &step1[nb as usize] {
                    add(j, 0.5 * w * w2, &mut touched);
                }
            }
            let mut c: Vec<(f64, u32)> = touched.iter().map(|&j| (score[j as usize], j)).collect();
            for &j in &touched {
                score[j as usize] = 0.0;
            }
            touched.clear();
            c.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            c.truncate(keep);
            c.into_iter().map(|(_, j)| j).collect()
        })
        .collect()
}

/// What known links and name quality change in a party's preparation.
pub struct Structure {
    /// The graph's names look like identifiers (they are blanked for features and tokens).
    pub opaque_names: bool,
    /// Anchor-propagation block per entity (`len x anchor_dim`, weighted), empty without
    /// known links.
    pub block: Vec<f64>,
    /// Keyed anchor tokens per entity (empty lists without known links).
    pub tokens: Vec<Vec<u64>>,
    /// Entities that are known links (excluded from the aligned rows).
    pub known: Vec<bool>,
    /// Structural level-0 vectors replacing name vectors (opaque names with known links).
    pub level0: Option<Vec<f64>>,
}

impl Structure {
    /// Checks the known links against the job and computes the party-local structure features.
    pub fn new(g: &Graph, known: &[u32], p: &ModelParams, key: &BlockingKey) -> Result<Self> {
        if p.known_links && known.is_empty() {
            return Err(Error::invalid(
                "the job uses known links (model.known_links = true) but none were given",
            ));
        }
        if !p.known_links && !known.is_empty() {
            return Err(Error::invalid(
                "known links were given but the job does not use them (set model.known_links = true in both parties' job)",
            ));
        }
        let mut is_known = vec![false; g.len()];
        for &e in known {
            match is_known.get_mut(e as usize) {
                Some(k) => *k = true,
                None => return Err(Error::invalid(format!("known link {e} is not an entity"))),
            }
        }
        let (block, tokens) = if p.known_links {
            let mut block = propagate(g, known, p);
            let r = p.anchor_weight.sqrt();
            block.iter_mut().for_each(|x| *x *= r);
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key.0);
            let tokens = nearest_anchors(g, known, p.anchor_tokens)
                .into_iter()
                .map(|js| {
                    js.into_iter()
                        .map(|j| keyed(&k, b'a', &j.to_string()))
                        .collect()
                })
                .collect();
            (block, tokens)
        } else {
            (Vec::new(), vec![Vec::new(); g.len()])
        };
        let opaque_names = names_look_opaque(g);
        let level0 = (opaque_names && p.known_links).then(|| structural_level0(g, known, p));
        Ok(Structure {
            level0,
            opaque_names,
            block,
            tokens,
            known: is_known,
        })
    }

    /// The graph to embed and block: names blanked when they look opaque.
    pub fn graph<'a>(&self, g: &'a Graph) -> std::borrow::Cow<'a, Graph> {
        if self.opaque_names {
            let mut blank = g.clone();
            blank.names.iter_mut().for_each(String::clear);
            std::borrow::Cow::Owned(blank)
        } else {
            std::borrow::Cow::Borrowed(g)
        }
    }

    /// The vectors `z` of every entity (see [`crate::model::features::embed`]) with the anchor
    /// block, from structural level-0 vectors when names are opaque and links are known.
    pub fn embed(&self, g: &Graph, p: &ModelParams) -> Vec<f64> {
        let mut z = match &self.level0 {
            Some(e) => crate::model::features::embed_from(g, p, e.clone()),
            None => crate::model::features::embed(g, p),
        };
        self.fill(&mut z, p);
        z
    }

    /// Writes the anchor block into the last `anchor_len` entries of every row of `z`.
    fn fill(&self, z: &mut [f64], p: &ModelParams) {
        let (w, al) = (p.width(), p.anchor_len());
        if al == 0 {
            return;
        }
        for (row, src) in z.chunks_exact_mut(w).zip(self.block.chunks_exact(al)) {
            row[w - al..].copy_from_slice(src);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two copies of a ring with chords, ids shuffled differently on each side.
    fn ring(n: u32, perm: impl Fn(u32) -> u32) -> Graph {
        let mut g = Graph::default();
        for i in 0..n {
            g.add_entity(
                &format!("x{}", perm(i) * 7 + 3),
                &format!("q{}", perm(i)),
                None,
                None,
            );
        }
        g.relations = vec!["next".into(), "chord".into()];
        let idx = |i: u32| (0..n).position(|k| perm(k) == i % n).expect("present") as u32;
        for i in 0..n {
            g.triples.push((idx(i), 0, idx(i + 1)));
            if i % 3 == 0 {
                g.triples.push((idx(i), 1, idx(i * 5 + 2)));
            }
        }
        g
    }

    #[test]
    fn opaque_names_are_recognised() {
        for n in ["Q42", "m.0abc12", "x3f9a0c", "12345", "", "e_1"] {
            assert!(name_is_opaque(n), "{n}");
        }
        for n in ["Paris", "Île de France", "u2 band", "北京"] {
            assert!(!name_is_opaque(n), "{n}");
        }
        assert!(names_look_opaque(&ring(20, |i| i)));
    }

    #[test]
    fn propagation_aligns_isomorphic_graphs() {
        let n = 60;
        let ga = ring(n, |i| i);
        let gb = ring(n, |i| (i * 7 + 11) % n);
        let pos_b = |i: u32| (0..n).position(|k| (k * 7 + 11) % n == i).unwrap() as u32;
        let anchors_a: Vec<u32> = (0..n).step_by(4).collect();
        let anchors_b: Vec<u32> = anchors_a.iter().map(|&i| pos_b(i)).collect();
        let p = ModelParams {
            known_links: true,
            anchor_dim: 64,
            ..ModelParams::default()
        };
        let (ya, yb) = (
            propagate(&ga, &anchors_a, &p),
            propagate(&gb, &anchors_b, &p),
        );
        let w = p.anchor_dim;
        let dot = |a: usize, b: usize| -> f64 {
            ya[a * w..(a + 1) * w]
                .iter()
                .zip(&yb[b * w..(b + 1) * w])
                .map(|(x, y)| x * y)
                .sum()
        };
        let mut correct = 0;
        for a in 0..n as usize {
            let self_score = dot(a, pos_b(a as u32) as usize);
            // Isomorphic neighbourhoods give identical blocks: the score is the squared norm.
            let norm2: f64 = ya[a * w..(a + 1) * w].iter().map(|x| x * x).sum();
            assert!(
                norm2 > 0.4 && (self_score - norm2).abs() < 1e-9,
                "{a}: {self_score}"
            );
            let best = (0..n as usize)
                .max_by(|&x, &y| dot(a, x).total_cmp(&dot(a, y)))
                .unwrap();
            correct += (best == pos_b(a as u32) as usize) as usize;
        }
        assert!(correct >= 50, "{correct} of {n}");
        let near_a = nearest_anchors(&ga, &anchors_a, 3);
        let near_b = nearest_anchors(&gb, &anchors_b, 3);
        for a in 0..n {
            assert_eq!(near_a[a as usize], near_b[pos_b(a) as usize]);
        }
    }

    #[test]
    fn known_links_must_match_the_job() {
        let g = ring(10, |i| i);
        let key = BlockingKey([1; 32]);
        let off = ModelParams::default();
        let on = ModelParams {
            known_links: true,
            ..ModelParams::default()
        };
        assert!(Structure::new(&g, &[1], &off, &key).is_err());
        assert!(Structure::new(&g, &[], &on, &key).is_err());
        assert!(Structure::new(&g, &[99], &on, &key).is_err());
        let s = Structure::new(&g, &[1, 4], &on, &key).unwrap();
        assert!(s.opaque_names && s.known[4] && !s.known[0]);
        let dir = std::env::temp_dir().join(format!("ppea-known-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("known.txt");
        std::fs::write(&f, "x3\n# comment\nx10\nx3\n").unwrap();
        let e = read_known_links(&f, &g).unwrap_err().to_string();
        assert!(
            e.contains("known.txt:4") && e.contains("listed again"),
            "{e}"
        );
        std::fs::write(&f, "x3\nnope\n").unwrap();
        let e = read_known_links(&f, &g).unwrap_err().to_string();
        assert!(
            e.contains("known.txt:2") && e.contains("unknown entity"),
            "{e}"
        );
        std::fs::write(&f, "x3\nx10\n").unwrap();
        assert_eq!(read_known_links(&f, &g).unwrap(), vec![0, 1]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
