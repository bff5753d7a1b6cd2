//! Quality and fairness metrics of an alignment against gold links.
//!
//! Reported together, overall and per group: Hits@1, Hits@10 and MRR (ranking quality), precision,
//! recall and F1 of the reported matches, the area under the precision-recall curve of the top-1
//! predictions ranked by score (average precision), and blocking recall. Groups are the entities'
//! group labels when the graph has them, else degree buckets; the gap is the largest difference
//! between groups.

use serde::Serialize;
use std::collections::BTreeMap;

/// One evaluated gold pair with everything the metrics need.
#[derive(Debug, Clone)]
pub struct Judged {
    /// Group of the left entity.
    pub group: String,
    /// The top-1 prediction is the gold partner.
    pub top1_correct: bool,
    /// 1-based rank of the gold partner among the candidates (`None`: not a candidate).
    pub rank: Option<usize>,
    /// Score of the top-1 prediction.
    pub top1_score: f64,
    /// A match was reported for the left entity.
    pub matched: bool,
    /// The reported match is the gold partner.
    pub match_correct: bool,
    /// Score of the reported match (0 when unmatched).
    pub match_score: f64,
    /// The gold partner is among the candidates.
    pub in_candidates: bool,
}

/// Metrics of one set of judged pairs.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Quality {
    /// Gold pairs evaluated.
    pub pairs: usize,
    /// Hits@1 of the top-1 prediction.
    pub hits1: f64,
    /// Hits@10.
    pub hits10: f64,
    /// Mean reciprocal rank.
    pub mrr: f64,
    /// Correct reported matches / reported matches.
    pub precision: f64,
    /// Correct reported matches / gold pairs.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Area under the precision-recall curve of top-1 predictions ranked by score.
    pub prauc: f64,
    /// Gold pairs whose partner is a candidate.
    pub blocking_recall: f64,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Computes the metrics of `items`.
pub fn quality(items: &[&Judged]) -> Quality {
    let n = items.len();
    let hits1 = items.iter().filter(|j| j.top1_correct).count();
    let hits10 = items
        .iter()
        .filter(|j| j.rank.is_some_and(|r| r <= 10))
        .count();
    let mrr: f64 = items
        .iter()
        .map(|j| j.rank.map_or(0.0, |r| 1.0 / r as f64))
        .sum();
    let matched = items.iter().filter(|j| j.matched).count();
    let correct = items.iter().filter(|j| j.match_correct).count();
    let (precision, recall) = (ratio(correct, matched), ratio(correct, n));
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    let mut ranked: Vec<&&Judged> = items.iter().collect();
    ranked.sort_by(|a, b| b.top1_score.total_cmp(&a.top1_score));
    let (mut tp, mut ap) = (0usize, 0.0);
    for (i, j) in ranked.iter().enumerate() {
        if j.top1_correct {
            tp += 1;
            ap += tp as f64 / (i + 1) as f64;
        }
    }
    Quality {
        pairs: n,
        hits1: ratio(hits1, n),
        hits10: ratio(hits10, n),
        mrr: if n == 0 { 0.0 } else { mrr / n as f64 },
        precision,
        recall,
        f1,
        prauc: if n == 0 { 0.0 } else { ap / n as f64 },
        blocking_recall: ratio(items.iter().filter(|j| j.in_candidates).count(), n),
    }
}

/// Per-group figures and the largest gaps between groups.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Groups {
    /// How groups were formed: "label" or "degree".
    pub by: String,
    /// Every metric, per group.
    pub groups: BTreeMap<String, Quality>,
    /// Largest difference in Hits@1 between two groups.
    pub hits1_gap: f64,
    /// Largest difference in recall between two groups.
    pub recall_gap: f64,
}

/// Splits by group and reports each group and the gaps.
pub fn groups(items: &[Judged], by: &str) -> Groups {
    let mut map: BTreeMap<String, Vec<&Judged>> = BTreeMap::new();
    for j in items {
        map.entry(j.group.clone()).or_default().push(j);
    }
    let groups: BTreeMap<String, Quality> =
        map.into_iter().map(|(g, v)| (g, quality(&v))).collect();
    let gap = |f: fn(&Quality) -> f64| {
        let vals: Vec<f64> = groups.values().map(f).collect();
        let max = vals.iter().copied().fold(f64::MIN, f64::max);
        let min = vals.iter().copied().fold(f64::MAX, f64::min);
        if vals.is_empty() { 0.0 } else { max - min }
    };
    Groups {
        by: by.to_string(),
        hits1_gap: gap(|q| q.hits1),
        recall_gap: gap(|q| q.recall),
        groups,
    }
}

/// One point of a precision-recall curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PrPoint {
    /// Score threshold of the point (predictions with at least this score count).
    pub threshold: f64,
    /// Recall at the threshold.
    pub recall: f64,
    /// Precision at the threshold.
    pub precision: f64,
}

/// The precision-recall curve of the reported matches as the score threshold rises: for each
/// distinct match score t, precision and recall of the matches scoring at least t (recall over
/// all gold pairs of `items`). The last point is the job's own threshold. At most `max_points`
/// points, by decreasing threshold.
pub fn pr_curve(items: &[Judged], max_points: usize) -> Vec<PrPoint> {
    let mut ranked: Vec<&Judged> = items.iter().filter(|j| j.matched).collect();
    ranked.sort_by(|a, b| b.match_score.total_cmp(&a.match_score));
    let n = items.len();
    let mut all = Vec::with_capacity(ranked.len());
    let mut tp = 0usize;
    for (i, j) in ranked.iter().enumerate() {
        tp += j.match_correct as usize;
        // A point per distinct score: ties enter together.
        if ranked
            .get(i + 1)
            .is_some_and(|k| k.match_score == j.match_score)
        {
            continue;
        }
        all.push(PrPoint {
            threshold: j.match_score,
            recall: ratio(tp, n),
            precision: ratio(tp, i + 1),
        });
    }
    let m = max_points.max(2);
    if all.len() <= m {
        return all;
    }
    (0..m).map(|i| all[i * (all.len() - 1) / (m - 1)]).collect()
}

/// The degree bucket of an entity with `d` neighbours.
pub fn degree_bucket(d: usize) -> &'static str {
    match d {
        0 => "0",
        1..=2 => "1-2",
        3..=5 => "3-5",
        6..=20 => "6-20",
        _ => ">20",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(
        group: &str,
        top1: bool,
        rank: Option<usize>,
        score: f64,
        matched: bool,
        correct: bool,
    ) -> Judged {
        Judged {
            group: group.into(),
            top1_correct: top1,
            rank,
            top1_score: score,
            matched,
            match_correct: correct,
            match_score: if matched { score } else { 0.0 },
            in_candidates: rank.is_some(),
        }
    }

    #[test]
    fn metrics_by_hand() {
        let items = vec![
            j("x", true, Some(1), 0.9, true, true),
            j("x", false, Some(2), 0.8, true, false),
            j("y", true, Some(1), 0.1, false, false),
            j("y", false, None, 0.5, false, false),
        ];
        let refs: Vec<&Judged> = items.iter().collect();
        let q = quality(&refs);
        assert_eq!(q.hits1, 0.5);
        assert_eq!(q.hits10, 0.75);
        assert!((q.mrr - (1.0 + 0.5 + 1.0) / 4.0).abs() < 1e-12);
        assert_eq!(q.precision, 0.5);
        assert_eq!(q.recall, 0.25);
        assert!((q.f1 - 2.0 * 0.5 * 0.25 / 0.75).abs() < 1e-12);
        // Ranked by score: correct at 1, wrong, wrong, correct at 4: AP = (1/1 + 2/4) / 4.
        assert!((q.prauc - (1.0 + 0.5) / 4.0).abs() < 1e-12);
        assert_eq!(q.blocking_recall, 0.75);
        // Matches: 0.9 right, 0.8 wrong; recall over the 4 gold pairs.
        let c = pr_curve(&items, 100);
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].threshold, c[0].recall, c[0].precision),
            (0.9, 0.25, 1.0)
        );
        assert_eq!(
            (c[1].threshold, c[1].recall, c[1].precision),
            (0.8, 0.25, 0.5)
        );
        assert_eq!(pr_curve(&items, 1).len(), 2);
        let g = groups(&items, "label");
        assert_eq!(g.groups["x"].hits1, 0.5);
        assert_eq!(g.groups["y"].recall, 0.0);
        assert_eq!(g.recall_gap, 0.5);
    }
}
