//! Large realistic evaluation pairs, grown from a real one.
//!
//! The scaling benchmarks need pairs of 10^5 to 10^6 entities per side with a known gold
//! alignment; no public benchmark is that large. [`generate`] grows one from a real *source*
//! pair (for example DBP15K fr-en, or the shipped `data/sample`), keeping what makes alignment
//! hard there:
//!
//! * **Names** are the source's gold name pairs (French-side and English-side spellings of the
//!   same thing, with their real cross-lingual noise). Each source pair names one world entity as
//!   is; further world entities get a *qualified* name, `base (qualifier)` on both sides with the
//!   qualifier from another pair, like DBpedia's disambiguated titles, so many entities share a
//!   base name and only the qualifier or the structure tells them apart. Each side then perturbs
//!   its copy on its own: a character edit in one word (`typo_rate`), the qualifier dropped
//!   (`qualifier_drop`).
//! * **Structure** is a Chung-Lu graph over the world: an edge's ends are drawn with probability
//!   proportional to a power-law weight `(rank + 10)^(-1 / (gamma - 1))`, so degrees are
//!   heavy-tailed; every entity has one of 30 hidden types (Zipf), and an edge's relation is
//!   drawn from a small Zipf-weighted set of relations of its head's type, so relations are
//!   typed and their frequencies skewed. The mean degree is the source's.
//! * **The two sides** each hold `n` entities: `overlap x n` world entities are in both (the gold
//!   links), the rest in one side only. Each side keeps a world edge between two of its entities
//!   with probability `edge_keep` and adds `extra_edges x` as many edges of its own, so
//!   neighbourhoods agree only in part. Relation names are the source sides' own (their ids do
//!   not correspond across sides, as in real graphs).
//!
//! Everything is drawn from one ChaCha stream seeded by `seed`: the same seed and source give
//! the same files. Entity rows, triples and links are written in random order (nothing in the
//! files' order tells which entities correspond; entity ids are the perturbed names, made unique
//! with a numeric suffix).

use crate::model::graph::Graph;
use crate::model::import::{Dataset, Links};
use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};

/// Generator settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Entities per side.
    pub n: usize,
    /// Seed of the whole generation.
    pub seed: u64,
    /// Share of each side's entities that are in the other side too (gold links).
    pub overlap: f64,
    /// Probability that a side keeps a world edge between two of its entities.
    pub edge_keep: f64,
    /// Side-specific edges added, as a share of the kept ones.
    pub extra_edges: f64,
    /// Power-law exponent of the degree distribution.
    pub gamma: f64,
    /// Probability of one character edit in a side's copy of a name.
    pub typo_rate: f64,
    /// Probability that a side drops a qualified name's qualifier.
    pub qualifier_drop: f64,
    /// Share of the links written as tune links (the rest are test links).
    pub tune_share: f64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            n: 10_000,
            seed: 1,
            overlap: 0.75,
            edge_keep: 0.85,
            extra_edges: 0.1,
            gamma: 2.3,
            typo_rate: 0.1,
            qualifier_drop: 0.15,
            tune_share: 0.3,
        }
    }
}

impl GenerateOptions {
    fn validate(&self) -> Result<(), String> {
        if self.n < 10 {
            return Err(format!("n = {} is too small (at least 10)", self.n));
        }
        if self.n > 50_000_000 {
            return Err(format!("n = {} is too large (at most 5 x 10^7)", self.n));
        }
        for (name, v) in [
            ("overlap", self.overlap),
            ("edge_keep", self.edge_keep),
            ("typo_rate", self.typo_rate),
            ("qualifier_drop", self.qualifier_drop),
            ("tune_share", self.tune_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} = {v} is not in [0, 1]"));
            }
        }
        if !(0.0..=10.0).contains(&self.extra_edges) {
            return Err(format!(
                "extra_edges = {} is not in [0, 10]",
                self.extra_edges
            ));
        }
        if !(self.gamma > 1.5 && self.gamma < 10.0) {
            return Err(format!("gamma = {} is not in (1.5, 10)", self.gamma));
        }
        Ok(())
    }
}

/// Uniform draws from one seeded stream.
struct Draw(ChaCha12Rng);

impl Draw {
    fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.0.next_u64() as u128 * n as u128) >> 64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Sampling proportional to fixed weights (cumulative sums and binary search).
struct Weighted(Vec<f64>);

impl Weighted {
    fn new(weights: impl Iterator<Item = f64>) -> Self {
        let mut acc = 0.0;
        Weighted(
            weights
                .map(|w| {
                    acc += w;
                    acc
                })
                .collect(),
        )
    }
    fn sample(&self, d: &mut Draw) -> usize {
        let total = *self.0.last().expect("non-empty weights");
        let x = d.unit() * total;
        self.0.partition_point(|&c| c <= x).min(self.0.len() - 1)
    }
}

/// One character edit (delete, substitute or swap) in a word of at least four characters.
fn typo(name: &str, d: &mut Draw) -> String {
    let mut words: Vec<Vec<char>> = name.split(' ').map(|w| w.chars().collect()).collect();
    let long: Vec<usize> = (0..words.len()).filter(|&i| words[i].len() >= 4).collect();
    if long.is_empty() {
        return name.to_string();
    }
    let w = &mut words[long[d.below(long.len())]];
    let i = 1 + d.below(w.len() - 2);
    match d.below(3) {
        0 => {
            w.remove(i);
        }
        1 => w[i] = (b'a' + d.below(26) as u8) as char,
        _ => w.swap(i, i + 1),
    }
    words
        .iter()
        .map(|w| w.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The short form of a name used as a qualifier: the name itself if it has at most two words,
/// else its last word.
fn qualifier(name: &str) -> &str {
    let words: Vec<&str> = name.split_whitespace().collect();
    if words.len() <= 2 {
        name.trim()
    } else {
        words[words.len() - 1]
    }
}

/// A side's copy of a world entity's name.
fn side_name(base: &str, qual: Option<&str>, o: &GenerateOptions, d: &mut Draw) -> String {
    let mut name = match qual {
        Some(q) if !d.chance(o.qualifier_drop) => format!("{base} ({q})"),
        _ => base.to_string(),
    };
    if d.chance(o.typo_rate) {
        name = typo(&name, d);
    }
    name
}

/// An id from a name: spaces as `_`, unique within the side.
fn unique_id(name: &str, taken: &mut HashMap<String, usize>) -> String {
    let stem: String = name
        .trim()
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    let stem = if stem.is_empty() {
        "e".to_string()
    } else {
        stem
    };
    let n = taken.entry(stem.clone()).or_insert(0);
    *n += 1;
    if *n == 1 {
        stem
    } else {
        format!("{stem}__{n}")
    }
}

/// Grows a pair of `o.n` entities per side from `source` (see the module docs).
pub fn generate(source: &Dataset, o: &GenerateOptions) -> Result<Dataset, String> {
    o.validate()?;
    let pairs: Vec<(u32, u32)> = source.tune.iter().chain(&source.test).copied().collect();
    if pairs.len() < 10 {
        return Err(format!(
            "the source has {} gold links; at least 10 are needed",
            pairs.len()
        ));
    }
    if source.a.relations.is_empty() || source.b.relations.is_empty() {
        return Err("the source has no relations".to_string());
    }
    let mut d = Draw(ChaCha12Rng::seed_from_u64(o.seed));
    let n = o.n;
    let linked = ((o.overlap * n as f64).round() as usize).min(n);
    let world = 2 * n - linked;

    // Names: world entity w takes source pair order[w % P], qualified once the pairs run out.
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    d.shuffle(&mut order);
    let names = |k: usize| {
        let (a, b) = pairs[k];
        (
            source.a.names[a as usize].as_str(),
            source.b.names[b as usize].as_str(),
        )
    };
    // Which sides hold each world entity: 0 both, 1 a only, 2 b only.
    let mut held: Vec<u8> = (0..world)
        .map(|w| {
            if w < linked {
                0
            } else if w < n {
                1
            } else {
                2
            }
        })
        .collect();
    d.shuffle(&mut held);

    // Structure over the world.
    let alpha = 1.0 / (o.gamma - 1.0);
    let mut rank: Vec<usize> = (0..world).collect();
    d.shuffle(&mut rank);
    let ends = Weighted::new(rank.iter().map(|&r| (r as f64 + 10.0).powf(-alpha)));
    const TYPES: usize = 30;
    const PER_TYPE: usize = 8;
    let rels = source
        .a
        .relations
        .len()
        .min(source.b.relations.len())
        .min(400);
    let type_weights = Weighted::new((0..TYPES).map(|t| 1.0 / (t as f64 + 1.0)));
    let ty: Vec<usize> = (0..world).map(|_| type_weights.sample(&mut d)).collect();
    let type_rels: Vec<Vec<usize>> = (0..TYPES)
        .map(|_| (0..PER_TYPE).map(|_| d.below(rels)).collect())
        .collect();
    let rel_weights = Weighted::new((0..PER_TYPE).map(|i| 1.0 / (i as f64 + 1.0)));
    let src_edges = (source.a.triples.len() + source.b.triples.len()) as f64;
    let mean_edges = src_edges / (source.a.len() + source.b.len()).max(1) as f64;
    // A world edge has both ends on a side with probability about (n / world)^2.
    let on_side = (n as f64 / world as f64).powi(2);
    let world_edges = (mean_edges * n as f64 / (on_side * o.edge_keep * (1.0 + o.extra_edges)))
        .min(1e9)
        .round() as usize;
    let draw_edge = |d: &mut Draw| loop {
        let (h, t) = (ends.sample(d), ends.sample(d));
        if h != t {
            let r = type_rels[ty[h]][rel_weights.sample(d)];
            return (h, r, t);
        }
    };
    let edges: Vec<(usize, usize, usize)> = (0..world_edges).map(|_| draw_edge(&mut d)).collect();

    // The two sides.
    let mut ra: Vec<usize> = (0..source.a.relations.len()).collect();
    let mut rb: Vec<usize> = (0..source.b.relations.len()).collect();
    d.shuffle(&mut ra);
    d.shuffle(&mut rb);
    let mut row: [Vec<u32>; 2] = [vec![u32::MAX; world], vec![u32::MAX; world]];
    let mut graphs = [Graph::default(), Graph::default()];
    for (s, src_rel) in [(0usize, &ra), (1, &rb)] {
        let src_graph = if s == 0 { &source.a } else { &source.b };
        let mut members: Vec<usize> = (0..world)
            .filter(|&w| held[w] == 0 || held[w] as usize == s + 1)
            .collect();
        d.shuffle(&mut members);
        let g = &mut graphs[s];
        g.relations = src_rel[..rels]
            .iter()
            .map(|&r| src_graph.relations[r].clone())
            .collect();
        let mut taken = HashMap::new();
        for &w in &members {
            let k = order[w % order.len()];
            let base = if s == 0 { names(k).0 } else { names(k).1 };
            let qual = (w >= order.len()).then(|| {
                let q = names(order[(w / order.len() * 7919 + w) % order.len()]);
                qualifier(if s == 0 { q.0 } else { q.1 })
            });
            let name = side_name(base, qual, o, &mut d);
            let id = unique_id(&name, &mut taken);
            row[s][w] = g.add_entity(&id, &name, None, None);
        }
        let mut seen = HashSet::new();
        let mut kept = Vec::new();
        for &(h, r, t) in &edges {
            let (rh, rt) = (row[s][h], row[s][t]);
            if rh != u32::MAX && rt != u32::MAX && d.chance(o.edge_keep) {
                let tri = (rh, r as u32, rt);
                if seen.insert(tri) {
                    kept.push(tri);
                }
            }
        }
        let extra = (o.extra_edges * kept.len() as f64).round() as usize;
        let mut added = 0;
        let mut tries = 0;
        while added < extra && tries < 20 * extra + 100 {
            tries += 1;
            let (h, r, t) = draw_edge(&mut d);
            let (rh, rt) = (row[s][h], row[s][t]);
            if rh != u32::MAX && rt != u32::MAX {
                let tri = (rh, r as u32, rt);
                if seen.insert(tri) {
                    kept.push(tri);
                    added += 1;
                }
            }
        }
        d.shuffle(&mut kept);
        g.triples = kept;
    }
    let mut links: Links = (0..world)
        .filter(|&w| held[w] == 0)
        .map(|w| (row[0][w], row[1][w]))
        .collect();
    d.shuffle(&mut links);
    let cut = (o.tune_share * links.len() as f64).round() as usize;
    let test = links.split_off(cut);
    let [a, b] = graphs;
    Ok(Dataset {
        a,
        b,
        tune: links,
        test,
        valid: Vec::new(),
        split: format!(
            "generated: {cut} tune links ({:.0}%), the rest test links",
            100.0 * o.tune_share
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Dataset {
        let mut a = Graph::default();
        let mut b = Graph::default();
        let words = [
            "Paris", "Lyon", "Berlin", "Madrid", "Rome", "Vienna", "Prague", "Oslo", "Lisbon",
            "Dublin", "Athens", "Warsaw",
        ];
        for (i, w) in words.iter().enumerate() {
            a.add_entity(&format!("fr{i}"), &format!("Ville de {w}"), None, None);
            b.add_entity(&format!("en{i}"), &format!("City of {w}"), None, None);
        }
        a.relations = vec!["pays".into(), "voisin".into()];
        b.relations = vec!["country".into(), "neighbour".into()];
        for i in 0..words.len() as u32 {
            a.triples.push((i, i % 2, (i + 1) % 12));
            b.triples.push((i, i % 2, (i + 3) % 12));
        }
        let links: Links = (0..words.len() as u32).map(|i| (i, i)).collect();
        Dataset {
            a,
            b,
            tune: links[..4].to_vec(),
            test: links[4..].to_vec(),
            valid: Vec::new(),
            split: String::new(),
        }
    }

    fn opts(n: usize, seed: u64) -> GenerateOptions {
        GenerateOptions {
            n,
            seed,
            ..GenerateOptions::default()
        }
    }

    #[test]
    fn sizes_links_and_names_follow_the_options() {
        let ds = generate(&source(), &opts(2000, 7)).unwrap();
        assert_eq!(ds.a.len(), 2000);
        assert_eq!(ds.b.len(), 2000);
        assert_eq!(ds.tune.len() + ds.test.len(), 1500);
        assert_eq!(ds.tune.len(), 450);
        // Ids are unique on each side and every link joins a French and an English spelling of
        // the same base name (before perturbation).
        for g in [&ds.a, &ds.b] {
            assert_eq!(g.index().len(), g.len());
        }
        let mut same_base = 0;
        for &(x, y) in ds.tune.iter().chain(&ds.test) {
            let (na, nb) = (&ds.a.names[x as usize], &ds.b.names[y as usize]);
            let city = |s: &str| s.split_whitespace().nth(2).map(str::to_string);
            same_base += (na.starts_with("Ville de ")
                && nb.starts_with("City of ")
                && city(na) == city(nb)) as usize;
        }
        // Typos touch about 10% of names per side: most pairs keep both prefixes and the city.
        assert!(same_base > 1100, "{same_base}");
        // Qualified names make base names ambiguous.
        assert!(ds.a.names.iter().filter(|s| s.contains('(')).count() > 1000);
    }

    #[test]
    fn degrees_are_heavy_tailed_and_edges_partly_shared() {
        let ds = generate(&source(), &opts(5000, 3)).unwrap();
        let mut deg = vec![0usize; ds.a.len()];
        for &(h, _, t) in &ds.a.triples {
            deg[h as usize] += 1;
            deg[t as usize] += 1;
        }
        let mean = deg.iter().sum::<usize>() as f64 / deg.len() as f64;
        let max = *deg.iter().max().unwrap() as f64;
        assert!((1.5..3.0).contains(&mean), "mean degree {mean}");
        assert!(max > 20.0 * mean, "max degree {max} vs mean {mean}");
        // Edges between linked entities appear on both sides more often than by chance.
        let to_b: HashMap<u32, u32> = ds.tune.iter().chain(&ds.test).copied().collect();
        let b_edges: HashSet<(u32, u32)> = ds.b.triples.iter().map(|&(h, _, t)| (h, t)).collect();
        let (mut both, mut mapped) = (0, 0);
        for &(h, _, t) in &ds.a.triples {
            if let (Some(&x), Some(&y)) = (to_b.get(&h), to_b.get(&t)) {
                mapped += 1;
                both += b_edges.contains(&(x, y)) as usize;
            }
        }
        assert!(both * 10 > mapped * 6, "{both} of {mapped}");
    }

    #[test]
    fn the_same_seed_gives_the_same_pair_and_another_seed_another() {
        let x = generate(&source(), &opts(500, 11)).unwrap();
        let y = generate(&source(), &opts(500, 11)).unwrap();
        let z = generate(&source(), &opts(500, 12)).unwrap();
        assert_eq!(x.a, y.a);
        assert_eq!(x.test, y.test);
        assert_ne!(x.a, z.a);
    }

    #[test]
    fn file_order_does_not_reveal_the_alignment() {
        let ds = generate(&source(), &opts(3000, 5)).unwrap();
        let same_row = ds
            .tune
            .iter()
            .chain(&ds.test)
            .filter(|&&(x, y)| x == y)
            .count();
        // About 2250 links over 3000 rows: by chance about 0.75 share a row number.
        assert!(same_row < 10, "{same_row}");
    }

    #[test]
    fn bad_options_are_refused() {
        let mut o = opts(100, 1);
        o.overlap = 1.5;
        assert!(generate(&source(), &o).unwrap_err().contains("overlap"));
        assert!(
            generate(&source(), &opts(3, 1))
                .unwrap_err()
                .contains("too small")
        );
        let mut s = source();
        s.test.clear();
        s.tune.truncate(2);
        assert!(
            generate(&s, &opts(100, 1))
                .unwrap_err()
                .contains("gold links")
        );
    }
}
