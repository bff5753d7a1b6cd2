//! The HTML report: generated from a small in-process job on the shipped sample, checked for its
//! structure (sections, charts, escaping, absent parts explained), and rendered in a real
//! headless browser by `scripts/check-report.sh` (which installs Debian's chromium if missing).

mod common;
use common::TempDir;

use ppea::eval::evaluate::{EvalOptions, EvalProtocol, JobRun, Split, run_inprocess};
use ppea::model::align::JobParams;
use ppea::model::import::{Dataset, Format, load};
use ppea::mpc::local::runtime;
use ppea::report::build::{RunFacts, from_eval, from_run};
use ppea::report::files::{EXPLANATION_HEADER, write_atomically};
use ppea::report::render;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn sample() -> &'static Dataset {
    static DS: OnceLock<Dataset> = OnceLock::new();
    DS.get_or_init(|| {
        let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
        load(&dir, Format::Native).expect("sample loads")
    })
}

/// One in-process job on the sample (run once per test binary).
fn job() -> &'static JobRun {
    static RUN: OnceLock<JobRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let opts = EvalOptions {
            protocol: EvalProtocol::Standard,
            split: Split::Test,
            servers: 2,
            workers: 1,
            params: JobParams::default(),
            seed: Some(11),
            known_links: false,
            dump_scores: None,
        };
        runtime()
            .unwrap()
            .block_on(run_inprocess(sample(), &opts))
            .expect("job runs")
    })
}

const NASTY: &str = "<script>alert('x')</script> & co";

/// A `party run` output directory for party A of the job: summary, and the explanations and
/// audit another part of the run writes (one entity id made hostile).
fn run_dir(dir: &Path, with_extras: bool) -> String {
    let run = job();
    let ds = sample();
    let matched: Vec<_> = run.a.1.iter().filter(|r| r.matched).collect();
    let summary = serde_json::json!({
        "job": "report-test", "side": "a", "rows": run.a.0.len(), "servers": 2,
        "wall_seconds": 1.5, "upload_bytes": 5_402_040u64, "known_links": 0,
        "matched": matched.len(), "partner_ids": false,
    });
    if with_extras {
        let mut csv = EXPLANATION_HEADER.join(",") + "\n";
        for (i, r) in matched.iter().enumerate() {
            let id = if i == 0 {
                NASTY.to_string()
            } else {
                ds.a.ids[r.entity as usize].clone()
            };
            let id = format!("\"{}\"", id.replace('"', "\"\""));
            csv.push_str(&format!(
                "{id},{:016x},{:.6},{:.6},{:.6},,,{},n{i}|m{i}\n",
                r.token,
                // The hostile row scores highest, so the sample shows it.
                if i == 0 { 1.0 } else { r.score },
                0.7 * r.score,
                0.3 * r.score,
                i % 3
            ));
        }
        std::fs::write(dir.join("explanations.csv"), csv).unwrap();
        let audit = serde_json::json!({
            "epsilon": 1.0, "delta": 0.0, "mechanism": "discrete_laplace", "spent_epsilon": 1.0,
            "min_group_size": 20, "side": "a",
            "groups": [
                {"group": "deg 1-2", "entities": 412, "matched": 300, "match_rate": 0.728,
                 "mean_score": 0.41, "precision": null, "recall": null, "suppressed": false},
                {"group": "deg 3-5 & <b>", "entities": 380, "matched": 310, "match_rate": 0.816,
                 "mean_score": 0.5, "precision": null, "recall": null, "suppressed": false},
                {"group": "deg >20", "entities": null, "matched": null, "match_rate": null,
                 "mean_score": null, "precision": null, "recall": null, "suppressed": true}
            ],
            "disparity": {"match_rate": 0.088, "precision": null, "recall": null}
        });
        std::fs::write(dir.join("audit.json"), audit.to_string()).unwrap();
        let other = serde_json::json!({
            "epsilon": 1.0, "delta": 0.0, "mechanism": "discrete_laplace", "spent_epsilon": 1.0,
            "min_group_size": 20, "side": "b",
            "groups": [
                {"group": "1", "entities": 500, "matched": 420, "match_rate": 0.84,
                 "mean_score": 0.45, "precision": null, "recall": null, "suppressed": false},
                {"group": "2", "entities": 300, "matched": 200, "match_rate": 0.667,
                 "mean_score": 0.4, "precision": null, "recall": null, "suppressed": false}
            ],
            "disparity": {"match_rate": 0.173, "precision": null, "recall": null}
        });
        std::fs::write(dir.join("audit-other.json"), other.to_string()).unwrap();
    }
    let input = from_run(&RunFacts {
        summary: &summary,
        params: &JobParams::default(),
        servers: vec!["server-0".into(), "server-1".into()],
        scores: Some(matched.iter().map(|r| r.score).collect()),
        evaluation: false,
        out: dir,
    });
    let html = render(&input);
    write_atomically(&dir.join("report.html"), &html).unwrap();
    html
}

#[test]
fn eval_report_has_every_figure() {
    let run = job();
    let scores: Vec<f64> = run
        .a
        .1
        .iter()
        .filter(|r| r.matched)
        .map(|r| r.score)
        .collect();
    let html = render(&from_eval(
        &run.report,
        scores.clone(),
        &JobParams::default(),
        "data/sample",
        None,
    ));
    assert!(html.starts_with("<!DOCTYPE html>"));
    for h in [
        "Summary",
        "What the servers and the other party saw",
        "Scores of the matches",
        "Precision and recall",
        "Results per group",
    ] {
        assert!(html.contains(&format!("<h2>{h}</h2>")), "{h}");
    }
    assert!(html.contains("class=\"chart histogram\""));
    assert!(html.contains("class=\"chart curve\""));
    assert!(html.contains("class=\"chart bars\""));
    assert!(html.contains(&format!(
        "<td>{}</td>",
        ppea::report::fmt::ratio(Some(run.report.quality.hits1))
    )));
    assert!(html.contains(&format!("of this party&#39;s {} matches", scores.len())));
    assert!(html.contains("degree buckets"));
    assert!(html.contains("Explanations were not requested in this job"));
    assert_eq!(html.matches("<script>").count(), 2);
    assert!(!html.contains("https://"));
    assert!(run.report.pr_curve.len() > 10);
}

#[test]
fn run_report_reads_explanations_and_audit_and_escapes_them() {
    let dir = TempDir::new("report-run");
    let html = run_dir(&dir.0, true);
    assert!(!html.contains("could not be used"), "{html}");
    assert!(!html.contains("<script>alert"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"));
    assert!(html.contains("deg 3-5 &amp; &lt;b&gt;"));
    assert!(html.contains("deg &gt;20 (suppressed)"));
    assert!(html.contains("discrete laplace noise with epsilon = 1"));
    assert!(html.contains("match rate 0.088"));
    assert!(html.contains("<h2>Why entities matched: explanations</h2>"));
    assert!(html.contains("mean contribution to the match score"));
    // Histogram, both parties' groups, explanation blocks; the curve is explained as absent.
    assert_eq!(html.matches("<svg class=\"chart").count(), 4);
    assert!(html.contains("<h3>The other party&#39;s groups</h3>"));
    assert!(html.contains("match rate 0.173"));
    assert!(html.contains("No precision-recall curve: this job had no gold"));
    assert_eq!(html.matches("<script>").count(), 2);
    let on_disk = std::fs::read_to_string(dir.0.join("report.html")).unwrap();
    assert_eq!(on_disk, html);

    let bare = TempDir::new("report-run-bare");
    let html = run_dir(&bare.0, false);
    assert!(html.contains("A per-group audit was not requested in this job"));
    assert!(html.contains("Explanations were not requested in this job"));
}

fn check_report(report: &Path, png: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-report.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(report)
        .arg(png)
        .output()
        .expect("bash runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(2) {
        panic!("check-report.sh could not run (chromium missing and not installable?): {text}");
    }
    (out.status.success(), text)
}

#[test]
fn report_renders_in_headless_chromium_without_script_errors() {
    let dir = TempDir::new("report-browser");
    let keep = std::env::var_os("PPEA_KEEP_REPORT");
    let html = run_dir(&dir.0, true);
    let png = dir.0.join("report.png");
    let (ok, text) = check_report(&dir.0.join("report.html"), &png);
    assert!(ok, "{text}");
    assert!(text.contains("4 charts"), "{text}");
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.len() > 10_000 && bytes.starts_with(b"\x89PNG"),
        "a real screenshot"
    );
    if let Some(k) = keep {
        // PPEA_KEEP_REPORT=DIR keeps the report and its screenshot for a look.
        std::fs::create_dir_all(&k).unwrap();
        std::fs::copy(dir.0.join("report.html"), Path::new(&k).join("report.html")).unwrap();
        std::fs::copy(&png, Path::new(&k).join("report.png")).unwrap();
    }

    // The check catches a script that throws ...
    let throws = html.replacen("<body>", "<body><script>noSuchFunction();</script>", 1);
    std::fs::write(dir.0.join("throws.html"), throws).unwrap();
    let (ok, text) = check_report(&dir.0.join("throws.html"), &png);
    assert!(!ok && text.contains("script error"), "{text}");
    // ... a final script that does not parse ...
    let broken = html.replacen("(function(){var n=", "(function({var n=", 1);
    assert_ne!(broken, html);
    std::fs::write(dir.0.join("broken.html"), broken).unwrap();
    let (ok, text) = check_report(&dir.0.join("broken.html"), &png);
    assert!(!ok && text.contains("FAIL"), "{text}");
    // ... and an external resource.
    let fetches = html.replacen(
        "</head>",
        "<link rel=\"stylesheet\" href=\"https://cdn.example.org/x.css\"></head>",
        1,
    );
    std::fs::write(dir.0.join("fetches.html"), fetches).unwrap();
    let (ok, text) = check_report(&dir.0.join("fetches.html"), &png);
    assert!(!ok && text.contains("external"), "{text}");
}
