//! A [`ReportInput`] from what a `party run` or an in-process evaluation has at hand.

use crate::eval::evaluate::EvalReport;
use crate::eval::metrics::Groups;
use crate::model::align::JobParams;
use crate::report::files::{read_audit, read_audit_other, read_explanations};
use crate::report::fmt::num;
use crate::report::{Audit, GroupFigures, GroupRow, PrCurve, QualityFigures, ReportInput, Section};
use std::path::Path;

/// Job parameters as `dotted.name = value` rows (sorted).
pub fn flatten_params(p: &JobParams) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, x, out);
                }
            }
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::to_value(p) {
        walk("", &v, &mut out);
    }
    out.sort();
    out
}

/// The per-group figures of a private audit (`audit.json`, or `audit-other.json` with `own`
/// false).
pub fn audit_figures(a: &Audit, own: bool) -> GroupFigures {
    let metrics = ["match rate", "precision", "recall"];
    let rows = a
        .groups
        .iter()
        .map(|g| GroupRow {
            group: g.group.clone(),
            entities: g.entities,
            matched: g.matched,
            values: vec![g.match_rate, g.precision, g.recall],
            suppressed: g.suppressed,
        })
        .collect();
    let key = |m: &str| m.replace(' ', "_");
    let disparity = metrics
        .iter()
        .map(|m| (m.to_string(), a.disparity.get(&key(m)).copied().flatten()))
        .collect();
    let mut notes = Vec::new();
    let noise = match (a.epsilon, &a.mechanism) {
        (Some(e), Some(m)) => format!(
            "Differential privacy: {} noise with epsilon = {}{}, added jointly on shares so \
             that no single server knows it; budget spent by this release: epsilon = {}.",
            m.replace('_', " "),
            num(e, 4),
            a.delta
                .filter(|d| *d > 0.0)
                .map(|d| format!(", delta = {d:e}"))
                .unwrap_or_default(),
            a.spent_epsilon.map_or("n/a".into(), |s| num(s, 4))
        ),
        _ => "No differential-privacy noise: the figures are exact.".into(),
    };
    notes.push(noise);
    if let Some(m) = a.min_group_size {
        notes.push(format!(
            "Groups with fewer than {} entities are suppressed: their figures are not released.",
            num(m, 0)
        ));
    }
    notes.push(
        "Mean match score per group: ".to_string()
            + &a.groups
                .iter()
                .map(|g| {
                    format!(
                        "{} {}",
                        g.group,
                        g.mean_score.map_or("n/a".into(), |s| num(s, 3))
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
            + ".",
    );
    GroupFigures {
        source: if own {
            format!(
                "From the private per-group audit (audit.json{}): the servers computed these \
                 aggregates on shares and revealed only them, to both parties. Groups are the \
                 group labels of entities.tsv, or degree buckets when none is given.",
                a.side
                    .as_deref()
                    .map(|s| format!(", party {s}'s entities"))
                    .unwrap_or_default()
            )
        } else {
            format!(
                "From audit-other.json: the same audit's figures for the other party's \
                 entities{} (its groups are numbered: their names stay with that party).",
                a.side
                    .as_deref()
                    .map(|s| format!(" (party {s})"))
                    .unwrap_or_default()
            )
        },
        unit: "entities".into(),
        metrics: metrics.iter().map(|m| m.to_string()).collect(),
        rows,
        disparity,
        notes,
    }
}

/// The per-group figures of an evaluation against gold links.
pub fn eval_groups(g: &Groups) -> GroupFigures {
    let metrics = ["Hits@1", "precision", "recall"];
    let rows: Vec<GroupRow> = g
        .groups
        .iter()
        .map(|(name, q)| GroupRow {
            group: name.clone(),
            entities: Some(q.pairs as f64),
            matched: None,
            values: vec![Some(q.hits1), Some(q.precision), Some(q.recall)],
            suppressed: false,
        })
        .collect();
    let gap = |i: usize| {
        let v: Vec<f64> = rows.iter().filter_map(|r| r.values[i]).collect();
        (!v.is_empty()).then(|| {
            v.iter().copied().fold(f64::MIN, f64::max) - v.iter().copied().fold(f64::MAX, f64::min)
        })
    };
    let disparity = metrics
        .iter()
        .enumerate()
        .map(|(i, m)| (m.to_string(), gap(i)))
        .collect();
    GroupFigures {
        source: format!(
            "From the evaluation against gold links, by the first graph's entities: {}. \
             Computed in this process from the gold links (no privacy noise: evaluation only).",
            if g.by == "label" {
                "groups are the group labels of entities.tsv"
            } else {
                "groups are degree buckets (number of neighbours)"
            }
        ),
        unit: "gold pairs".into(),
        metrics: metrics.iter().map(|m| m.to_string()).collect(),
        rows,
        disparity,
        notes: vec![
            "In a production job these figures come from the private audit instead, which \
             reveals only noisy aggregates."
                .into(),
        ],
    }
}

/// The report of an in-process evaluation (`party eval`): `scores` are the scores of the first
/// party's matches, `dataset` names the benchmark; `outputs`: the first party's output
/// directory of the evaluation, if it wrote one, whose `explanations.csv` and `audit.json` the
/// report shows (the audit beside the gold figures).
pub fn from_eval(
    r: &EvalReport,
    scores: Vec<f64>,
    params: &JobParams,
    dataset: &str,
    outputs: Option<&Path>,
) -> ReportInput {
    let mut more_groups = Vec::new();
    let mut explanations = Section::Absent(
        "Explanations were not requested in this job (party eval writes them only for jobs \
         with explanations, to its output directory)."
            .into(),
    );
    if let Some(dir) = outputs {
        if let Section::Present(a) = read_audit(dir) {
            more_groups.push((
                "The private audit of the same job".to_string(),
                audit_figures(&a, true),
            ));
        }
        explanations = read_explanations(dir);
    }
    let q = &r.quality;
    let pr = if r.pr_curve.is_empty() {
        Section::Absent("No gold pair of the aligned entities was matched.".into())
    } else {
        Section::Present(PrCurve {
            source: format!(
                "The first graph's reported matches judged against its {} gold pairs ({} \
                 split of {dataset}), as if the threshold were raised to each match score in \
                 turn: the last point (the dot) is this job's threshold ({}), with \
                 precision {} and recall {}.",
                q.pairs,
                format!("{:?}", r.split).to_lowercase(),
                num(params.min_score, 3),
                crate::report::fmt::ratio(Some(q.precision)),
                crate::report::fmt::ratio(Some(q.recall))
            ),
            points: r.pr_curve.clone(),
            auc: None,
        })
    };
    let matched = scores.len();
    ReportInput {
        command: "party eval".into(),
        job: format!("{} ({dataset})", crate::eval::evaluate::EVAL_JOB),
        side: "a (first graph; both parties ran in this process)".into(),
        entities: r.entities_a,
        matched: Some(matched),
        threshold: params.min_score,
        parameters: flatten_params(params),
        servers: (0..r.servers).map(|i| format!("server-{i}")).collect(),
        wall_seconds: r.wall_seconds,
        bytes: vec![
            ("Uploaded by both parties".into(), r.upload_bytes),
            ("Sent per compute server".into(), r.bytes_per_server),
            (
                "Correlated randomness from the dealer".into(),
                r.dealer_bytes,
            ),
        ],
        quality: Some(QualityFigures {
            pairs: q.pairs,
            hits1: q.hits1,
            precision: q.precision,
            recall: q.recall,
            f1: q.f1,
        }),
        scores: Section::Present(scores),
        pr,
        groups: Section::Present(eval_groups(&r.groups)),
        more_groups,
        explanations,
        disclosure: vec![
            format!(
                "In-process evaluation: both parties, the dealer and {} compute servers ran on \
                 this machine over the same protocol as a deployment (additive shares, keyed \
                 blocking tokens); the gold links were used only to judge the results.",
                r.servers
            ),
            format!(
                "Each server held only additive shares (each uniformly random on its own) of \
                 {} + {} entity embeddings, and keyed blocking tokens; from the tokens it sees \
                 which shuffled rows share tokens ({} candidate pairs), never names, \
                 embeddings, scores or decisions.",
                r.entities_a, r.entities_b, r.candidate_pairs
            ),
            format!(
                "Decisions identical to the plaintext reference of the same model: {:.1}% of \
                 rows.",
                100.0 * r.plaintext_agreement
            ),
        ],
    }
}

/// What `party run` knows when it writes its report.
pub struct RunFacts<'a> {
    /// The `summary.json` it wrote.
    pub summary: &'a serde_json::Value,
    /// Parameters as run.
    pub params: &'a JobParams,
    /// Server names.
    pub servers: Vec<String>,
    /// Scores of this party's matches (`None` in aggregate-only jobs).
    pub scores: Option<Vec<f64>>,
    /// Evaluation job (best candidates revealed).
    pub evaluation: bool,
    /// The output directory (where `explanations.csv` and `audit.json` may be).
    pub out: &'a Path,
}

/// The report of a `party run`: the summary, the scores, and the explanations and audit found in
/// the output directory.
pub fn from_run(f: &RunFacts) -> ReportInput {
    let s = f.summary;
    let u = |k: &str| s.get(k).and_then(serde_json::Value::as_u64);
    let text = |k: &str| s.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let k = f.servers.len();
    let mut bytes = vec![(
        "Uploaded by this party (all servers)".to_string(),
        u("upload_bytes").unwrap_or(0),
    )];
    if let Some(b) = u("bytes_per_server") {
        bytes.push(("Sent per compute server (evaluation job)".into(), b));
    }
    if let Some(b) = u("dealer_bytes") {
        bytes.push(("Correlated randomness from the dealer".into(), b));
    }
    let audit = read_audit(f.out);
    let explanations = read_explanations(f.out);
    let partner_ids = s.get("partner_ids").and_then(|v| v.as_bool()) == Some(true);
    let mut disclosure = vec![
        format!(
            "Sent: to each of the {k} compute servers, an additive secret share of this party's \
             {} entity embeddings (each share alone is uniformly random), the row count, and \
             keyed blocking tokens (keyed with the blocking key the two parties agreed on, which \
             no server holds). Names, relations and embeddings never left this machine.",
            u("rows").unwrap_or(0)
        ),
        "The servers learn sizes and which shuffled rows share keyed blocking tokens; never \
         names, embeddings, scores or decisions, unless all of them collude (see the leakage \
         table in docs/design.md)."
            .into(),
        "While waiting, each server told this party only where the job stood (waiting for an \
         upload, linking, the name of the computation step, delivering)."
            .into(),
    ];
    disclosure.push(match f.scores {
        None => "Received: only the number of matches and the sum of their scores \
                 (aggregate-only job)."
            .into(),
        Some(_) => format!(
            "Received: shares of this party's own results only: for each entity, whether it \
             matched, the score and a link token the other party holds for the same match{}.",
            if partner_ids {
                "; and the partner's id, because both parties opted in"
            } else {
                ""
            }
        ),
    });
    if f.evaluation {
        disclosure.push(
            "Evaluation job: each party also learned its best candidate for every entity, and \
             the servers reported their traffic."
                .into(),
        );
    }
    if let Section::Present(_) = explanations {
        disclosure.push(
            "Explanations: each block's contribution to a pair score was revealed only to the \
             two owners of that pair."
                .into(),
        );
    }
    if let Section::Present(a) = &audit {
        disclosure.push(format!(
            "Per-group audit: only per-group aggregates and the disparity were revealed, to both \
             parties{}.",
            a.epsilon
                .map(|e| format!(
                    ", with differential-privacy noise (epsilon = {})",
                    num(e, 4)
                ))
                .unwrap_or_default()
        ));
    }
    let known = u("known_links").unwrap_or(0);
    let pr_why = if known > 0 {
        format!(
            "No precision-recall curve: the {known} known links given to this job are anchors, \
             excluded from the results, so no result can be judged against them, and no \
             labelled sample was supplied. Per-group precision and recall, when the audit had \
             labels, are in the per-group section."
        )
    } else {
        "No precision-recall curve: this job had no gold, known or labelled links to judge \
         matches against (a production job reveals nothing that could check its matches). \
         `party eval` on a benchmark with gold links draws it."
            .into()
    };
    ReportInput {
        command: "party run".into(),
        job: text("job"),
        side: text("side"),
        entities: u("rows").unwrap_or(0) as usize,
        matched: u("matched").map(|m| m as usize),
        threshold: f.params.min_score,
        parameters: flatten_params(f.params),
        servers: f.servers.clone(),
        wall_seconds: s
            .get("wall_seconds")
            .and_then(|v| v.as_f64())
            .unwrap_or(f64::NAN),
        bytes,
        quality: None,
        scores: match &f.scores {
            Some(v) => Section::Present(v.clone()),
            None => Section::Absent(
                "Aggregate-only job: the servers revealed only the number of matches and the \
                 sum of their scores, so there is no per-match score to show."
                    .into(),
            ),
        },
        pr: Section::Absent(pr_why),
        groups: match audit {
            Section::Present(a) => Section::Present(audit_figures(&a, true)),
            Section::Absent(why) => Section::Absent(why),
        },
        more_groups: read_audit_other(f.out)
            .map(|a| {
                (
                    "The other party's groups".to_string(),
                    audit_figures(&a, false),
                )
            })
            .into_iter()
            .collect(),
        explanations,
        disclosure,
    }
}
