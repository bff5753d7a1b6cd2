//! Known links (anchors) and structure: party-local, on the owner's graph only.
//!
//! A job may use **known links**: pairs both parties already hold (ISBNs, registry numbers,
//! Wikidata ids). Each party holds a file of *its own* ids of the shared anchors, one per line,
//! in an order both parties agreed on; anchor `j` is line `j` on both sides.
//!
//! * **Anchor block**: the three-view label propagation of [`crate::model::three_view`] (after
//!   LightEA, Mao et al. 2022): random labels at the anchors (from a public seed both parties
//!   share), propagated between entities and relations through the owner's graph, then a
//!   tensor random projection of "which relations lead to which kinds of neighbours" of width
//!   `anchor_dim`, appended to `z` with weight `anchor_weight`.
//! * **Anchor tokens** for blocking: each entity's `anchor_tokens` nearest anchors, scored by
//!   their exact one- and two-step walk weights (`w1 + w2 / 2`); they join the neighbour tokens
//!   (keyed like every token, so the leakage rules of blocking are unchanged).
//! * **Known-link pairs are excluded** from the aligned rows (they are already matched).
//! * **Opaque names**: when nearly every name looks like an identifier (no word of two or more
//!   letters), names carry no signal across graphs but do add noise (random character n-grams
//!   match by chance). Such a graph is embedded and blocked with blank names (types and
//!   attributes still count), so alignment is driven by structure; callers warn when that
//!   happens without known links. With known links, its level-0 vectors (the name block) are
//!   the same three-view features at width `dim`, so level 1 and the attention sketch are
//!   built on structure as they are on names elsewhere.

use crate::error::{Error, Result};
use crate::model::blocking::{BlockingKey, keyed};
use crate::model::features::{Embedder, ModelParams, words};
use crate::model::graph::Graph;
use crate::model::three_view::{Propagation, Shape};
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
/// rows: `(start, (neighbour, weight))`, used to rank each entity's nearest anchors.
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

/// The anchors' labels propagated through the owner's graph ([`crate::model::three_view`]).
pub fn propagation(g: &Graph, anchors: &[u32], p: &ModelParams) -> Propagation {
    let shape = Shape {
        label: p.anchor_label_dim,
        depth: p.anchor_hops,
    };
    Propagation::new(
        g.len(),
        g.relations.len(),
        &g.triples,
        anchors,
        shape,
        &p.anchor_seed,
    )
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
        let opaque_names = names_look_opaque(g);
        let mut level0 = None;
        let (block, tokens) = if p.known_links {
            let labels = propagation(g, known, p);
            if opaque_names {
                level0 = Some(labels.tensor_view(p.dim));
            }
            let mut block = labels.tensor_view(p.anchor_dim);
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

    /// The rows `z` of every entity (see [`crate::model::features::Embedder`]) with the anchor
    /// block, from structural level-0 vectors when names are opaque and links are known. Moves
    /// the block and the structural vectors out of `self` (memory: they are row-sized), so it
    /// is called once: a second call would give rows without them.
    pub fn embedder(&mut self, g: &Graph, p: &ModelParams) -> Embedder {
        let e = match self.level0.take() {
            Some(e) => e,
            None => crate::model::features::level0(g, p.dim),
        };
        Embedder::new(g, p, e).with_block(std::mem::take(&mut self.block), p.anchor_len())
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
            propagation(&ga, &anchors_a, &p).tensor_view(p.anchor_dim),
            propagation(&gb, &anchors_b, &p).tensor_view(p.anchor_dim),
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
