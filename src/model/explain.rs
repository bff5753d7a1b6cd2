//! Explanations for the owner: what drove each match.
//!
//! **Block contributions (on shares).** The pair score is one bilinear form `<z_a, z_b>` over
//! the concatenated blocks `[e | sqrt(w1) h | sqrt(w2) T | sqrt(w3) anchors]`
//! ([`crate::model::features`]), so it is the sum of one inner product per block. With
//! `explain = true` the servers' bilinear form also returns every candidate pair's per-block
//! products (same openings; the dealer supplies `C` per block), and after the match is decided
//! each row's kept pair is selected on shares: one Beaver product of the `keep` marker (0/1
//! per candidate slot, at most one 1 per row) with the per-slot block products, summed over the
//! row ([`crate::model::align`]). The last block is the matched similarity minus the others
//! (local). Nothing is opened to the servers but uniformly masked values; each party receives
//! shares of its own rows' contributions only, like its other results. Unmatched rows get 0.
//!
//! **Local evidence (at the owner).** For each matched entity, its neighbours in the owner's
//! own graph that were matched in the same job ([`matched_neighbours`]). The owner sees only its
//! side: this counts own neighbours that have *some* link token in this job, not whether their
//! partners are neighbours of the partner (which only the two parties together could tell by
//! comparing tokens).
//!
//! `OUT/explanations.csv`: `entity_id,link_token,score,name,neighbourhood,attention,anchors,
//! matched_neighbours,matched_neighbour_ids`, one row per matched entity in the order of
//! `matches.csv`; block columns in the units of `score` (they sum to it), empty for a block the
//! job does not have.

use crate::model::align::{JobParams, ResultRow};
use crate::model::features::ModelParams;
use crate::model::graph::Graph;
use std::collections::{BTreeSet, HashSet};

/// The block columns of `explanations.csv`.
pub const COLUMNS: [&str; 4] = ["name", "neighbourhood", "attention", "anchors"];

/// The header of `explanations.csv`.
pub const HEADER: &str = "entity_id,link_token,score,name,neighbourhood,attention,anchors,matched_neighbours,matched_neighbour_ids";

/// Most neighbour ids listed per row.
pub const MAX_LISTED: usize = 5;

/// For each column of [`COLUMNS`], the index of the model block that fills it (`None` when the
/// job has no such block), following [`ModelParams::blocks`].
pub fn block_columns(m: &ModelParams) -> [Option<usize>; 4] {
    let mut at = 2;
    let mut next = |present: bool| {
        present.then(|| {
            at += 1;
            at - 1
        })
    };
    let attention = next(m.sketch_len() > 0);
    let anchors = next(m.anchor_len() > 0);
    [Some(0), Some(1), attention, anchors]
}

/// Own neighbours (in `g`, either direction, self excluded) of each matched entity that were
/// matched in the same job, by row of `results`: empty for unmatched rows.
pub fn matched_neighbours(g: &Graph, results: &[ResultRow]) -> Vec<Vec<u32>> {
    let matched: HashSet<u32> = results
        .iter()
        .filter(|r| r.matched)
        .map(|r| r.entity)
        .collect();
    let adj = g.adjacency();
    results
        .iter()
        .map(|r| {
            if !r.matched {
                return Vec::new();
            }
            adj[r.entity as usize]
                .iter()
                .map(|n| n.0)
                .filter(|&n| n != r.entity && matched.contains(&n))
                .collect::<BTreeSet<u32>>()
                .into_iter()
                .collect()
        })
        .collect()
}

/// Quotes a CSV field when needed.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `explanations.csv` for a party's results (rows without explanations are left out).
pub fn csv(g: &Graph, results: &[ResultRow], p: &JobParams) -> String {
    let cols = block_columns(&p.model);
    let neighbours = matched_neighbours(g, results);
    let mut out = format!("{HEADER}\n");
    for (r, nb) in results.iter().zip(&neighbours) {
        let Some(blocks) = r.explanation.as_ref().filter(|_| r.matched) else {
            continue;
        };
        let cell = |c: Option<usize>| {
            c.and_then(|i| blocks.get(i))
                .map(|v| format!("{v:.6}"))
                .unwrap_or_default()
        };
        let ids: Vec<String> = nb
            .iter()
            .take(MAX_LISTED)
            .map(|&n| g.ids[n as usize].replace('|', "%7C"))
            .collect();
        out.push_str(&format!(
            "{},{:016x},{:.6},{},{},{},{},{},{}\n",
            csv_field(&g.ids[r.entity as usize]),
            r.token,
            r.score,
            cell(cols[0]),
            cell(cols[1]),
            cell(cols[2]),
            cell(cols[3]),
            nb.len(),
            csv_field(&ids.join("|"))
        ));
    }
    out
}

/// The plaintext reference of the block contributions of one pair: the inner product of each
/// block of the two fixed-point rows, at product scale.
pub fn reference_blocks(za: &[u64], zb: &[u64], m: &ModelParams) -> Vec<i64> {
    let mut at = 0;
    m.blocks()
        .iter()
        .map(|&(d, _)| {
            let v = crate::mpc::ring::dot(&za[at..at + d], &zb[at..at + d]) as i64;
            at += d;
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_follow_the_model_blocks() {
        let mut m = ModelParams::default();
        assert_eq!(block_columns(&m), [Some(0), Some(1), Some(2), None]);
        m.known_links = true;
        assert_eq!(block_columns(&m), [Some(0), Some(1), Some(2), Some(3)]);
        m.attention_weight = 0.0;
        m.attention_dim = 0;
        let cols = block_columns(&m);
        assert_eq!(cols[2], None);
        assert_eq!(cols[3].is_some(), m.anchor_len() > 0);
        assert_eq!(m.blocks().len(), 2 + cols[2..].iter().flatten().count());
    }

    #[test]
    fn matched_neighbours_are_own_matched_neighbours() {
        let mut g = Graph::default();
        for i in 0..4 {
            g.add_entity(&format!("e{i}"), "n", None, None);
        }
        g.relations = vec!["r".into()];
        g.triples = vec![(0, 0, 1), (2, 0, 0), (0, 0, 3), (0, 0, 0)];
        let row = |e: u32, matched: bool| ResultRow {
            entity: e,
            matched,
            score: 0.5,
            token: 1,
            best: None,
            partner_id: None,
            explanation: Some(vec![0.25, 0.25, 0.0]),
        };
        let res = vec![row(0, true), row(1, true), row(2, true), row(3, false)];
        let nb = matched_neighbours(&g, &res);
        assert_eq!(nb[0], vec![1, 2]);
        assert_eq!(nb[1], vec![0]);
        assert!(nb[3].is_empty());
        let p = JobParams::default();
        let text = csv(&g, &res, &p);
        let first = text.lines().nth(1).unwrap();
        assert_eq!(
            first,
            "e0,0000000000000001,0.500000,0.250000,0.250000,0.000000,,2,e1|e2"
        );
        assert_eq!(text.lines().count(), 4);
    }
}
