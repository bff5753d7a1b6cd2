//! [`ReportInput`] to one self-contained HTML page.

use crate::report::fmt::{bytes, count, esc, num, ratio, seconds};
use crate::report::svg::{Series, bars, curve, histogram};
use crate::report::{BLOCKS, Explanation, GroupFigures, PrCurve, ReportInput, Section};

/// How many explanation rows the report shows.
pub const EXPLANATION_SAMPLE: usize = 15;

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:#1d2327;
max-width:1080px;margin:0 auto;padding:24px 32px 48px;line-height:1.45;background:#fff}
h1{font-size:1.7em;margin:0 0 4px}h2{font-size:1.25em;margin:32px 0 8px;padding-bottom:4px;
border-bottom:2px solid #dfe3e8}p.lead{color:#50575e;margin-top:0}
table{border-collapse:collapse;margin:8px 0 12px;font-size:.93em}
th,td{border:1px solid #dfe3e8;padding:4px 9px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f3f5f7;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.summary th{width:230px}
.absent{background:#fbf7e9;border-left:4px solid #dba617;padding:8px 12px;margin:8px 0}
.note{color:#50575e;font-size:.92em}
figure{margin:12px 0 20px}figcaption{color:#50575e;font-size:.92em;max-width:720px}
svg.chart{display:block;max-width:100%;height:auto;font-size:12px;font-family:inherit}
svg .grid{stroke:#eceff2}svg .axis{stroke:#50575e}svg .tick{stroke:#50575e}
svg .label{font-weight:600;fill:#1d2327}svg text{fill:#3c434a}
svg .marker{stroke:#d63638;stroke-width:2;stroke-dasharray:5 4}svg .marker-label{fill:#d63638}
svg .line{stroke-width:2.5}svg .na{fill:#8c8f94}
.cell-bar{display:inline-block;height:9px;vertical-align:middle;margin-left:6px;border-radius:2px}
.pos{background:#0072b2}.neg{background:#d55e00}
details{margin:6px 0}code{background:#f3f5f7;padding:1px 4px;border-radius:3px}
footer{margin-top:36px;color:#50575e;font-size:.88em;border-top:1px solid #dfe3e8;padding-top:8px}
";

/// Records script errors on the root element before anything else runs.
const HEAD_SCRIPT: &str = "window.__reportErrors=[];window.addEventListener('error',function(e){\
window.__reportErrors.push(String(e.message));\
document.documentElement.setAttribute('data-report-error',String(e.message||'error'));});";

/// Runs last: marks the page as rendered without script errors.
const TAIL_SCRIPT: &str = "(function(){var n=document.querySelectorAll('svg.chart').length;\
if(window.__reportErrors.length===0){document.documentElement.setAttribute('data-report-ok','1');\
document.getElementById('report-status').textContent='Rendered in this browser without script \
errors ('+n+(n===1?' chart':' charts')+').';}})();";

/// The report as one HTML page.
pub fn render(r: &ReportInput) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let title = format!("Alignment report: job {}, party {}", r.job, r.side);
    h.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><script>{HEAD_SCRIPT}</script><style>{CSS}</style></head><body>\n",
        esc(&title)
    ));
    h.push_str(&format!(
        "<h1>{}</h1><p class=\"lead\">Written by <code>{}</code> on this party's own machine from \
         what it computed locally and what it received back. Nothing in this file was sent to \
         the compute servers or to the other party.</p>\n",
        esc(&title),
        esc(&r.command)
    ));
    let mut fig = 0;
    summary(&mut h, r);
    disclosure(&mut h, r);
    scores(&mut h, r, &mut fig);
    pr(&mut h, &r.pr, &mut fig);
    groups(&mut h, &r.groups, &r.more_groups, &mut fig);
    explanations(&mut h, &r.explanations, &mut fig);
    h.push_str(&format!(
        "<footer>ppea {} &middot; self-contained page: no external resources. \
         <span id=\"report-status\">Script not run.</span></footer>\n\
         <script>{TAIL_SCRIPT}</script></body></html>\n",
        env!("CARGO_PKG_VERSION")
    ));
    h
}

fn absent(h: &mut String, why: &str) {
    h.push_str(&format!("<p class=\"absent\">{}</p>\n", esc(why)));
}

fn row(h: &mut String, k: &str, v: &str) {
    h.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v)));
}

fn summary(h: &mut String, r: &ReportInput) {
    h.push_str("<h2>Summary</h2><table class=\"summary\">");
    row(h, "Job id", &r.job);
    row(h, "Party (side)", &r.side);
    row(h, "Entities aligned (this party)", &count(r.entities));
    match r.matched {
        Some(m) => {
            let share = if r.entities > 0 {
                format!(
                    " ({:.1}% of the entities)",
                    100.0 * m as f64 / r.entities as f64
                )
            } else {
                String::new()
            };
            row(h, "Matched entities", &format!("{}{share}", count(m)));
        }
        None => row(h, "Matched entities", "not known"),
    }
    row(
        h,
        "Score threshold (min_score)",
        &format!("{} (scores lie in [-1, 1])", num(r.threshold, 4)),
    );
    row(
        h,
        "Compute servers",
        &format!("{} ({})", r.servers.len(), r.servers.join(", ")),
    );
    row(h, "Wall time", &seconds(r.wall_seconds));
    for (label, b) in &r.bytes {
        row(
            h,
            label,
            &format!("{} ({} bytes)", bytes(*b), count(*b as usize)),
        );
    }
    match &r.quality {
        Some(q) => {
            row(h, "Gold pairs judged", &count(q.pairs));
            row(h, "Hits@1", &ratio(Some(q.hits1)));
            row(h, "Precision", &ratio(Some(q.precision)));
            row(h, "Recall", &ratio(Some(q.recall)));
            row(h, "F1", &ratio(Some(q.f1)));
        }
        None => row(
            h,
            "Hits@1, precision, recall, F1",
            "not known: this job had no gold or labelled links to judge against",
        ),
    }
    h.push_str("</table>\n");
    if !r.parameters.is_empty() {
        h.push_str(&format!(
            "<details><summary>Job parameters ({} values, the same for both parties and every \
             server)</summary><table>",
            r.parameters.len()
        ));
        for (k, v) in &r.parameters {
            h.push_str(&format!(
                "<tr><th><code>{}</code></th><td>{}</td></tr>",
                esc(k),
                esc(v)
            ));
        }
        h.push_str("</table></details>\n");
    }
}

fn disclosure(h: &mut String, r: &ReportInput) {
    h.push_str("<h2>What the servers and the other party saw</h2><ul>");
    for line in &r.disclosure {
        h.push_str(&format!("<li>{}</li>", esc(line)));
    }
    h.push_str("</ul>\n");
}

fn figure(h: &mut String, fig: &mut usize, svg: &str, caption: &str) {
    *fig += 1;
    h.push_str(&format!(
        "<figure>{svg}<figcaption><b>Figure {fig}.</b> {}</figcaption></figure>\n",
        esc(caption)
    ));
}

fn scores(h: &mut String, r: &ReportInput, fig: &mut usize) {
    h.push_str("<h2>Scores of the matches</h2>");
    let s = match &r.scores {
        Section::Absent(why) => return absent(h, why),
        Section::Present(s) => s,
    };
    if s.is_empty() {
        return absent(
            h,
            "No entity was matched in this job, so there is no score to show.",
        );
    }
    let (min, max) = s
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let lo = (min.min(r.threshold) * 20.0).floor() / 20.0;
    let hi = ((max * 20.0).ceil() / 20.0).max(lo + 0.05);
    // Bins of 0.05 (0.1 over wide ranges), whole bins from `lo`.
    let step = if hi - lo > 2.0 { 0.1 } else { 0.05 };
    let bins = (((hi - lo) / step).round() as usize).max(1);
    let hi = lo + bins as f64 * step;
    let svg = histogram(
        s,
        (lo, hi),
        bins,
        Some((r.threshold, &format!("threshold {}", num(r.threshold, 3)))),
        ("match score (similarity, -1 to 1)", "matched entities"),
    );
    let mean = s.iter().sum::<f64>() / s.len() as f64;
    figure(
        h,
        fig,
        &svg,
        &format!(
            "How many of this party's {} matches have each score (bins of {}). A match is a \
             mutual best pair whose score is at least the threshold (dashed line); higher \
             scores mean more similar names and neighbourhoods. Lowest {}, mean {}, highest {}.",
            count(s.len()),
            num((hi - lo) / bins as f64, 4),
            num(min, 3),
            num(mean, 3),
            num(max, 3)
        ),
    );
}

fn pr(h: &mut String, pr: &Section<PrCurve>, fig: &mut usize) {
    h.push_str("<h2>Precision and recall</h2>");
    let c = match pr {
        Section::Absent(why) => return absent(h, why),
        Section::Present(c) => c,
    };
    let pts: Vec<(f64, f64)> = c.points.iter().map(|p| (p.recall, p.precision)).collect();
    let svg = curve(&pts, ("recall (share of gold pairs found)", "precision"));
    let auc = c
        .auc
        .map(|a| {
            format!(
                " Area under the curve (average precision): {}.",
                ratio(Some(a))
            )
        })
        .unwrap_or_default();
    figure(
        h,
        fig,
        &svg,
        &format!(
            "{} A higher threshold moves left (fewer gold pairs found) and usually up (fewer \
             wrong matches).{auc}",
            c.source
        ),
    );
}

fn groups(
    h: &mut String,
    g: &Section<GroupFigures>,
    more: &[(String, GroupFigures)],
    fig: &mut usize,
) {
    h.push_str("<h2>Results per group</h2>");
    match g {
        Section::Absent(why) => absent(h, why),
        Section::Present(g) => group_figures(h, g, fig),
    }
    for (heading, o) in more {
        h.push_str(&format!("<h3>{}</h3>", esc(heading)));
        group_figures(h, o, fig);
    }
}

fn group_figures(h: &mut String, g: &GroupFigures, fig: &mut usize) {
    h.push_str(&format!("<p>{}</p>", esc(&g.source)));
    let cats: Vec<String> = g
        .rows
        .iter()
        .map(|r| {
            if r.suppressed {
                format!("{} (suppressed)", r.group)
            } else {
                r.group.clone()
            }
        })
        .collect();
    let series: Vec<Series> = g
        .metrics
        .iter()
        .enumerate()
        .map(|(i, m)| Series {
            name: m.clone(),
            values: g
                .rows
                .iter()
                .map(|r| r.values.get(i).copied().flatten())
                .collect(),
        })
        .collect();
    let gap = g
        .disparity
        .iter()
        .map(|(m, v)| format!("{m} {}", ratio(*v)))
        .collect::<Vec<_>>()
        .join(", ");
    figure(
        h,
        fig,
        &bars(&cats, &series, (0.0, 1.0), ("group", "share (0 to 1)")),
        &format!(
            "Each group's figures side by side; n/a marks a figure that is not available (no \
             labelled links, or a suppressed group). Disparity, the largest difference between \
             two groups: {}.",
            if gap.is_empty() { "n/a".into() } else { gap }
        ),
    );
    h.push_str(&format!(
        "<table><tr><th>group</th><th>{}</th><th>matched</th>",
        esc(&g.unit)
    ));
    for m in &g.metrics {
        h.push_str(&format!("<th>{}</th>", esc(m)));
    }
    h.push_str("</tr>");
    let opt = |x: Option<f64>| x.map_or("n/a".to_string(), |v| num(v, 1));
    for r in &g.rows {
        h.push_str(&format!(
            "<tr><td>{}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
            esc(&r.group),
            if r.suppressed { " (suppressed)" } else { "" },
            opt(r.entities),
            opt(r.matched)
        ));
        for i in 0..g.metrics.len() {
            h.push_str(&format!(
                "<td class=\"n\">{}</td>",
                ratio(r.values.get(i).copied().flatten())
            ));
        }
        h.push_str("</tr>");
    }
    h.push_str("<tr><th>disparity (max - min)</th><td></td><td></td>");
    for m in &g.metrics {
        let v = g
            .disparity
            .iter()
            .find(|(n, _)| n == m)
            .and_then(|(_, v)| *v);
        h.push_str(&format!("<td class=\"n\"><b>{}</b></td>", ratio(v)));
    }
    h.push_str("</tr></table>\n");
    for n in &g.notes {
        h.push_str(&format!("<p class=\"note\">{}</p>", esc(n)));
    }
}

/// Up to `n` rows spread evenly over the score ranking (highest first), so that weak matches
/// are shown as well as strong ones.
pub fn sample(e: &[Explanation], n: usize) -> Vec<&Explanation> {
    let mut v: Vec<&Explanation> = e.iter().collect();
    v.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.link_token.cmp(&b.link_token))
    });
    if v.len() <= n {
        return v;
    }
    (0..n)
        .map(|i| v[i * (v.len() - 1) / (n - 1).max(1)])
        .collect()
}

fn explanations(h: &mut String, e: &Section<Vec<Explanation>>, fig: &mut usize) {
    h.push_str("<h2>Why entities matched: explanations</h2>");
    let e = match e {
        Section::Absent(why) => return absent(h, why),
        Section::Present(e) => e,
    };
    if e.is_empty() {
        return absent(h, "explanations.csv has no rows (no entity was matched).");
    }
    // Mean contribution of each block, over the rows where it is present.
    let means: Vec<Option<f64>> = (0..BLOCKS.len())
        .map(|b| {
            let v: Vec<f64> = e.iter().filter_map(|x| x.blocks[b]).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        })
        .collect();
    let lo = means.iter().flatten().fold(0.0f64, |a, &b| a.min(b));
    let hi = means.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
    let cats: Vec<String> = BLOCKS.iter().map(|b| b.to_string()).collect();
    figure(
        h,
        fig,
        &bars(
            &cats,
            &[Series {
                name: "mean contribution to the match score".into(),
                values: means.clone(),
            }],
            (
                (lo * 10.0).floor() / 10.0,
                ((hi * 10.0).ceil() / 10.0).max(0.1),
            ),
            ("model block", "contribution to the score"),
        ),
        &format!(
            "What drove the {} explained matches on average: each block's contribution to the \
             pair score (name similarity, neighbourhood, cross-graph attention, known-link \
             anchors; n/a when the job had no such block; a match's contributions add up to its \
             score). The contributions were computed on \
             shares and revealed only to the two owners of each pair.",
            count(e.len())
        ),
    );
    let rows = sample(e, EXPLANATION_SAMPLE);
    let max = rows
        .iter()
        .flat_map(|x| x.blocks.iter().flatten())
        .fold(1e-9f64, |a, &b| a.max(b.abs()));
    h.push_str(&format!(
        "<p>A sample of {} of the {} explained matches, spread from the highest score to the \
         lowest. Matched neighbours are this party's own neighbours of the entity that were \
         matched in the same job (local evidence, computed on this machine).</p>\
         <table><tr><th>entity id</th><th>link token</th><th>score</th>",
        rows.len(),
        count(e.len())
    ));
    for b in BLOCKS {
        h.push_str(&format!("<th>{b}</th>"));
    }
    h.push_str("<th>matched neighbours</th></tr>");
    for x in rows {
        h.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td>",
            esc(&x.entity_id),
            esc(&x.link_token),
            num(x.score, 3)
        ));
        for b in &x.blocks {
            match b {
                Some(v) => h.push_str(&format!(
                    "<td class=\"n\">{}<span class=\"cell-bar {}\" style=\"width:{:.0}px\">\
                     </span></td>",
                    num(*v, 3),
                    if *v < 0.0 { "neg" } else { "pos" },
                    (v.abs() / max * 60.0).max(1.0)
                )),
                None => h.push_str("<td class=\"n\">n/a</td>"),
            }
        }
        let ids = &x.matched_neighbour_ids;
        let mut shown: Vec<String> = ids.iter().take(5).map(|s| esc(s)).collect();
        if ids.len() > 5 {
            shown.push(format!("+{} more", ids.len() - 5));
        }
        h.push_str(&format!(
            "<td>{}{}</td></tr>",
            esc(&x.matched_neighbours),
            if shown.is_empty() {
                String::new()
            } else {
                format!(": {}", shown.join(", "))
            }
        ));
    }
    h.push_str("</table><p class=\"note\">All rows: <code>explanations.csv</code> beside this report.</p>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{GroupRow, PrPoint, QualityFigures};

    fn input() -> ReportInput {
        ReportInput {
            command: "party run".into(),
            job: "job <1> & co".into(),
            side: "a".into(),
            entities: 1234,
            matched: Some(1000),
            threshold: -0.5,
            parameters: vec![("model.dim".into(), "64".into())],
            servers: vec!["server-0".into(), "server-1".into()],
            wall_seconds: 12.34,
            bytes: vec![("Uploaded by this party".into(), 3_400_000)],
            quality: None,
            scores: Section::Present(vec![0.2, 0.5, 0.9, 0.91]),
            pr: Section::Absent("No labelled links in this job.".into()),
            groups: Section::Absent("A per-group audit was not requested in this job.".into()),
            more_groups: Vec::new(),
            explanations: Section::Absent("Explanations were not requested in this job.".into()),
            disclosure: vec!["Servers saw shares only.".into()],
        }
    }

    fn explanation(id: &str, score: f64) -> Explanation {
        Explanation {
            entity_id: id.into(),
            link_token: "00ab".into(),
            score,
            blocks: [Some(0.4), Some(-0.1), None, None],
            matched_neighbours: "2".into(),
            matched_neighbour_ids: vec!["n<1>".into(), "n2".into()],
        }
    }

    #[test]
    fn escapes_every_string_from_data() {
        let mut r = input();
        r.explanations = Section::Present(vec![explanation("<script>alert(1)</script>&x", 0.7)]);
        let html = render(&r);
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;x"));
        assert!(html.contains("job &lt;1&gt; &amp; co"));
        assert!(html.contains("n&lt;1&gt;"));
        // Only the report's own two scripts.
        assert_eq!(html.matches("<script>").count(), 2);
    }

    #[test]
    fn absent_sections_are_explained() {
        let html = render(&input());
        assert!(html.contains("No labelled links in this job."));
        assert!(html.contains("A per-group audit was not requested in this job."));
        assert!(html.contains("Explanations were not requested in this job."));
        assert!(html.contains("not known: this job had no gold or labelled links"));
        assert_eq!(html.matches("<svg").count(), 1, "only the histogram");
        assert!(
            !html.contains("http://")
                || html.matches("http://").count()
                    == html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
        );
    }

    #[test]
    fn charts_and_numbers() {
        let mut r = input();
        r.quality = Some(QualityFigures {
            pairs: 500,
            hits1: 0.98123,
            precision: 0.97,
            recall: 0.95,
            f1: 0.96,
        });
        r.pr = Section::Present(PrCurve {
            source: "Judged against gold.".into(),
            points: vec![
                PrPoint {
                    threshold: 0.9,
                    recall: 0.1,
                    precision: 1.0,
                },
                PrPoint {
                    threshold: 0.1,
                    recall: 0.9,
                    precision: 0.8,
                },
            ],
            auc: Some(0.9),
        });
        r.groups = Section::Present(GroupFigures {
            source: "Audit.".into(),
            unit: "entities".into(),
            metrics: vec!["match rate".into(), "precision".into()],
            rows: vec![
                GroupRow {
                    group: "deg 1".into(),
                    entities: Some(812.0),
                    matched: Some(700.0),
                    values: vec![Some(0.862), None],
                    suppressed: false,
                },
                GroupRow {
                    group: "deg 9".into(),
                    entities: None,
                    matched: None,
                    values: vec![None, None],
                    suppressed: true,
                },
            ],
            disparity: vec![("match rate".into(), Some(0.12))],
            notes: vec!["Noise: discrete Laplace.".into()],
        });
        if let Section::Present(g) = &r.groups {
            r.more_groups = vec![(
                "The other party's groups".into(),
                GroupFigures {
                    source: "The other party's.".into(),
                    ..g.clone()
                },
            )];
        }
        r.explanations = Section::Present(
            (0..40)
                .map(|i| explanation(&format!("e{i}"), i as f64 / 40.0))
                .collect(),
        );
        let html = render(&r);
        assert_eq!(html.matches("<svg").count(), 5);
        assert!(html.contains("<h3>The other party&#39;s groups</h3>"));
        assert!(html.contains("class=\"chart histogram\""));
        assert!(html.contains("class=\"chart curve\""));
        assert!(html.contains("class=\"chart bars\""));
        assert!(html.contains("<td>0.981</td>"));
        assert!(html.contains("1\u{202f}234"));
        assert!(html.contains("3.4 MB (3\u{202f}400\u{202f}000 bytes)"));
        assert!(html.contains("12.3 s"));
        assert!(html.contains("deg 9 (suppressed)"));
        assert!(html.contains("match rate 0.120"));
        assert!(html.contains("Figure 5."));
        // The sample: 15 rows, first the best, last the worst.
        assert_eq!(
            html.matches("<code>00ab</code>").count(),
            EXPLANATION_SAMPLE
        );
        assert!(html.contains("<td>e39</td>") && html.contains("<td>e0</td>"));
        assert!(html.contains("data-report-ok"));
    }
}
