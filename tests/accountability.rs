//! Accountability outputs on a small job run in-process (`data/sample`): explanations (per-block
//! contributions of each matched pair, computed on shares) agree with the plaintext blocks of
//! the same fixed-point vectors and sum to the score; the per-group audit equals the plaintext
//! figures with noise off, suppresses small groups, and leaves the job's decisions unchanged.

use ppea::eval::evaluate::{
    EvalOptions, EvalProtocol, Split, evaluate_inprocess, scopes, seeded, servers_inprocess_audited,
};
use ppea::model::align::{JobParams, PartyData, ResultRow, audit_totals, finish_party};
use ppea::model::audit::{AuditParams, AuditReport, attach, finish, row_groups};
use ppea::model::explain::{HEADER, block_columns, csv, reference_blocks};
use ppea::model::import::{Dataset, Format, load};
use ppea::mpc::local::runtime;
use ppea::mpc::share::share_compressed;
use std::collections::HashMap;
use std::path::Path;

fn sample() -> Dataset {
    load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample"),
        Format::Native,
    )
    .expect("sample loads")
}

fn params(noise: bool, epsilon: f64, known_links: bool) -> JobParams {
    let mut p = JobParams {
        explain: true,
        audit: AuditParams {
            enabled: true,
            labelled: true,
            noise,
            epsilon,
            min_group_size: 20,
            ..AuditParams::default()
        },
        ..JobParams::default()
    };
    p.model.known_links = known_links;
    p
}

/// One job's parties and results.
struct Job {
    pa: PartyData,
    pb: PartyData,
    ra: Vec<ResultRow>,
    rb: Vec<ResultRow>,
    /// Both sides' audit reports as each party reads them.
    audit: [[AuditReport; 2]; 2],
}

/// Runs a job with explanations and the audit on (gold test links as both labelled samples).
fn run(ds: &Dataset, p: &JobParams) -> Job {
    let (sa, sb) = scopes(ds, EvalProtocol::Standard, Split::Test);
    let (key, mut sh_a, mut sh_b) = seeded(3);
    let (ka, kb): (Vec<u32>, Vec<u32>) = if p.model.known_links {
        ds.tune.iter().copied().unzip()
    } else {
        (Vec::new(), Vec::new())
    };
    let prep = ppea::model::align::prepare_party_known;
    let mut pa = prep(&ds.a, &sa, &ka, p, &key, &mut sh_a).unwrap();
    let mut pb = prep(&ds.b, &sb, &kb, p, &key, &mut sh_b).unwrap();
    let la: Vec<(u32, String)> = ds
        .test
        .iter()
        .map(|&(a, b)| (a, ds.b.ids[b as usize].clone()))
        .collect();
    let lb: Vec<(u32, String)> = ds
        .test
        .iter()
        .map(|&(a, b)| (b, ds.a.ids[a as usize].clone()))
        .collect();
    attach(&mut pa, &ds.a, p, &key, &la).unwrap();
    attach(&mut pb, &ds.b, p, &key, &lb).unwrap();
    let up = |d: &PartyData| {
        (
            share_compressed(&d.z, 2).unwrap(),
            share_compressed(&d.ids, 2).unwrap(),
            d.tokens.clone(),
        )
    };
    let audit = [
        Some(share_compressed(&pa.audit, 2).unwrap()),
        Some(share_compressed(&pb.audit, 2).unwrap()),
    ];
    let out = runtime()
        .unwrap()
        .block_on(servers_inprocess_audited(
            2,
            [up(&pa), up(&pb)],
            audit,
            p,
            "accountability",
        ))
        .unwrap();
    let ra = finish_party(&pa, &out.a, p).unwrap();
    let rb = finish_party(&pb, &out.b, p).unwrap();
    let ta = audit_totals(&pa, &out.a, p).unwrap();
    let tb = audit_totals(&pb, &out.b, p).unwrap();
    let by_a = finish(&ta, p, [Some(&pa.groups), None]).unwrap();
    let by_b = finish(&tb, p, [None, Some(&pb.groups)]).unwrap();
    Job {
        pa,
        pb,
        ra,
        rb,
        audit: [by_a, by_b],
    }
}

#[test]
fn explanations_sum_to_the_score_and_match_the_plaintext_blocks() {
    let ds = sample();
    for (known, rounds) in [(false, 0), (true, 0), (false, 2)] {
        let mut p = params(false, 1.0, known);
        p.assignment_rounds = rounds;
        let job = run(&ds, &p);
        let w = p.model.width();
        let norm = (1u64 << (2 * p.frac_bits)) as f64 * p.model.max_score();
        let nblk = p.model.blocks().len();
        let cols = block_columns(&p.model);
        assert_eq!(cols[3].is_some(), known, "anchor column iff known links");
        let row_of_b: HashMap<u64, usize> = job
            .rb
            .iter()
            .enumerate()
            .filter(|(_, r)| r.matched)
            .map(|(i, r)| (r.token, i))
            .collect();
        let mut matched = 0;
        for (i, r) in job.ra.iter().enumerate() {
            let e = r.explanation.as_ref().expect("explained job");
            assert_eq!(e.len(), nblk);
            if !r.matched {
                assert!(e.iter().all(|&v| v == 0.0), "unmatched row {i}: {e:?}");
                continue;
            }
            matched += 1;
            let sum: f64 = e.iter().sum();
            assert!(
                (sum - r.score).abs() < 1e-9,
                "row {i}: {sum} vs {}",
                r.score
            );
            // The partner row holds the same token; its explanation is the same pair's.
            let j = row_of_b[&r.token];
            let eb = job.rb[j].explanation.as_ref().unwrap();
            let want = reference_blocks(
                &job.pa.z[i * w..(i + 1) * w],
                &job.pb.z[j * w..(j + 1) * w],
                &p.model,
            );
            for b in 0..nblk {
                let v = want[b] as f64 / norm;
                assert!(
                    (e[b] - v).abs() < 1e-12,
                    "row {i} block {b}: {} vs {v}",
                    e[b]
                );
                assert!((eb[b] - v).abs() < 1e-12, "B row {j} block {b}");
            }
        }
        assert!(matched > 250, "{matched} matches");
        let text = csv(&ds.a, &job.ra, &p);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(HEADER));
        assert_eq!(lines.count(), matched);
    }
}

#[test]
fn audit_equals_plaintext_figures_with_noise_off() {
    let ds = sample();
    let p = params(false, 1.0, false);
    let job = run(&ds, &p);
    let gold_a: HashMap<u32, u32> = ds.test.iter().copied().collect();
    let b_by_token: HashMap<u64, u32> = job
        .rb
        .iter()
        .filter(|r| r.matched)
        .map(|r| (r.token, r.entity))
        .collect();
    let (names, idx) = row_groups(&ds.a, &job.pa.rows, p.audit.max_groups).unwrap();
    assert_eq!(names, job.pa.groups);
    let g = names.len();
    let (mut ent, mut mat, mut cor) = (vec![0i64; g], vec![0i64; g], vec![0i64; g]);
    for (r, &grp) in job.ra.iter().zip(&idx) {
        ent[grp] += 1;
        if r.matched {
            mat[grp] += 1;
            cor[grp] += (gold_a[&r.entity] == b_by_token[&r.token]) as i64;
        }
    }
    for (reader, reports) in job.audit.iter().enumerate() {
        let rep = &reports[0];
        assert_eq!(rep.mechanism, "none");
        assert_eq!(rep.spent_epsilon, None);
        assert_eq!(rep.groups.len(), if reader == 0 { g } else { 8 });
        for (grp, f) in rep.groups.iter().enumerate().take(g) {
            if ent[grp] < 20 {
                assert!(f.suppressed && f.entities.is_none(), "{f:?}");
                continue;
            }
            assert!(!f.suppressed);
            assert_eq!(f.entities, Some(ent[grp]), "group {grp}");
            assert_eq!(f.matched, Some(mat[grp]));
            // Every aligned row is labelled: recall = correct / entities.
            let prec = cor[grp] as f64 / mat[grp] as f64;
            let rec = cor[grp] as f64 / ent[grp] as f64;
            assert!((f.precision.unwrap() - prec).abs() < 1e-12, "{f:?}");
            assert!((f.recall.unwrap() - rec).abs() < 1e-12, "{f:?}");
            let mean: f64 = job
                .ra
                .iter()
                .zip(&idx)
                .filter(|(r, i)| r.matched && **i == grp)
                .map(|(r, _)| r.score)
                .sum::<f64>()
                / mat[grp] as f64;
            assert!((f.mean_score.unwrap() - mean).abs() < 1e-9);
        }
    }
    // Both parties receive the same figures about each side.
    assert_eq!(job.audit[0][1].groups.len(), 8);
    let rates =
        |r: &AuditReport| -> Vec<Option<f64>> { r.groups.iter().map(|g| g.match_rate).collect() };
    assert_eq!(rates(&job.audit[0][0]), rates(&job.audit[1][0])[..g]);
}

#[test]
fn noisy_audit_suppresses_small_groups_and_reports_its_budget() {
    let ds = sample();
    // A large budget keeps the noise small enough for exact assertions on suppression.
    let p = params(true, 100.0, false);
    let job = run(&ds, &p);
    let rep = &job.audit[0][0];
    let json = serde_json::to_value(rep).unwrap();
    for key in [
        "epsilon",
        "delta",
        "mechanism",
        "spent_epsilon",
        "min_group_size",
        "side",
        "groups",
        "disparity",
    ] {
        assert!(json.get(key).is_some(), "audit.json lacks {key}: {json}");
    }
    assert_eq!(json["mechanism"], "discrete_laplace");
    assert_eq!(json["spent_epsilon"], 100.0);
    assert_eq!(json["side"], "a");
    // The sample's degree buckets: 36, 104, 140, 21 and 10 aligned entities.
    let sizes: Vec<Option<i64>> = rep.groups.iter().map(|g| g.entities).collect();
    assert!(rep.groups[4].suppressed, "{sizes:?}");
    assert_eq!(json["groups"][4]["match_rate"], serde_json::Value::Null);
    assert!(rep.groups[..4].iter().all(|g| !g.suppressed), "{sizes:?}");
    assert!(rep.disparity.match_rate.is_some());
}

/// Explanations and the audit add work after the decisions: the decisions are those of the
/// default job.
#[test]
fn decisions_do_not_change() {
    let ds = sample();
    let eval = |p: JobParams| {
        let opts = EvalOptions {
            protocol: EvalProtocol::Standard,
            split: Split::Test,
            servers: 2,
            workers: 1,
            params: p,
            seed: Some(11),
            known_links: false,
            dump_scores: None,
        };
        runtime()
            .unwrap()
            .block_on(evaluate_inprocess(&ds, &opts))
            .unwrap()
    };
    let plain = eval(JobParams::default());
    let full = eval(params(true, 1.0, false));
    assert_eq!(plain.decisions_digest, full.decisions_digest);
    assert_eq!(plain.rounds, 138);
    assert!(full.rounds > plain.rounds);
}
