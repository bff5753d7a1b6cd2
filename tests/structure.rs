//! Known links, structure-only graphs and the 1-to-1 assignment on the shipped sample: the
//! secure pipeline takes the plaintext reference's decisions, known links carry alignment when
//! names are hidden, and importers honour published splits.

mod common;
use common::TempDir;

use ppea::eval::bootstrap::evaluate_bootstrapped;
use ppea::eval::evaluate::{EvalOptions, EvalProtocol, EvalReport, Split, evaluate_inprocess};
use ppea::model::align::JobParams;
use ppea::model::import::{Dataset, Format, LoadOptions, load, load_with};
use ppea::mpc::local::runtime;
use std::path::{Path, PathBuf};

fn sample() -> Dataset {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    load(&dir, Format::Native).expect("sample loads")
}

fn eval(ds: &Dataset, params: JobParams, known_links: bool, servers: usize) -> EvalReport {
    let opts = EvalOptions {
        protocol: EvalProtocol::Standard,
        split: Split::Test,
        servers,
        workers: 1,
        params,
        seed: Some(11),
        known_links,
        dump_scores: None,
    };
    runtime()
        .unwrap()
        .block_on(evaluate_inprocess(ds, &opts))
        .expect("job runs")
}

#[test]
fn known_links_drive_alignment_when_names_are_hidden() {
    let mut ds = sample();
    ds.hide_names();
    assert!(ppea::model::anchors::names_look_opaque(&ds.a));
    let without = eval(&ds, JobParams::default(), false, 2);
    let with = eval(&ds, JobParams::default(), true, 2);
    assert_eq!(without.plaintext_agreement, 1.0);
    assert_eq!(with.plaintext_agreement, 1.0);
    assert_eq!(with.known_links, ds.tune.len());
    assert!(without.quality.hits1 < 0.05, "{}", without.quality.hits1);
    assert!(
        with.quality.hits1 >= 0.15 && with.quality.precision >= 0.4,
        "{:?}",
        with.quality
    );
    assert!(with.quality.blocking_recall > 2.0 * without.quality.blocking_recall);
}

#[test]
fn bootstrapping_promotes_the_same_pairs_on_both_sides_and_aligns_the_rest() {
    let mut ds = sample();
    ds.hide_names();
    let opts = EvalOptions {
        protocol: EvalProtocol::Standard,
        split: Split::Test,
        servers: 2,
        workers: 1,
        params: JobParams::default(),
        seed: Some(11),
        known_links: true,
        dump_scores: None,
    };
    let rt = runtime().unwrap();
    let single = rt.block_on(evaluate_inprocess(&ds, &opts)).unwrap();
    let r = rt
        .block_on(evaluate_bootstrapped(&ds, &opts, 1, 0.5))
        .unwrap();
    eprintln!(
        "single {:.4}, bootstrapped {:.4} ({} promoted, {} correct)",
        single.quality.hits1, r.hits1, r.promoted, r.promoted_correct
    );
    assert_eq!(r.jobs, 2);
    assert_eq!(r.plaintext_agreement, 1.0);
    // The first job is the single job; half of its matches became anchors of the second, which
    // aligns only the rows left (the two sides promoted the same pairs, or the run fails).
    assert_eq!(r.per_job[0].decisions_digest, single.decisions_digest);
    assert!(r.promoted > 0);
    assert_eq!(
        r.per_job[1].entities_a,
        r.per_job[0].entities_a - r.promoted
    );
    assert_eq!(r.per_job[1].known_links, ds.tune.len() + r.promoted);
    assert!(r.promoted_correct * 10 >= r.promoted * 7, "{r:?}");
    assert!(
        r.hits1 >= single.quality.hits1 - 0.02,
        "{} {}",
        r.hits1,
        single.quality.hits1
    );
    assert_eq!(
        r.bytes_per_server,
        r.per_job[0].bytes_per_server + r.per_job[1].bytes_per_server
    );
    // Bootstrapping needs known links to start from, and a sensible fraction.
    let none = EvalOptions {
        known_links: false,
        ..opts.clone()
    };
    assert!(
        rt.block_on(evaluate_bootstrapped(&ds, &none, 1, 0.5))
            .is_err()
    );
    assert!(
        rt.block_on(evaluate_bootstrapped(&ds, &opts, 1, 0.0))
            .is_err()
    );
    // A score dump covers one job.
    let dumped = EvalOptions {
        dump_scores: Some(std::env::temp_dir().join("ppea-never-written.bin")),
        ..opts.clone()
    };
    let e = rt
        .block_on(evaluate_bootstrapped(&ds, &dumped, 1, 0.5))
        .unwrap_err()
        .to_string();
    assert!(e.contains("score dump covers one job"), "{e}");
}

#[test]
fn known_links_keep_name_quality_and_leave_known_pairs_out() {
    let ds = sample();
    let r = eval(&ds, JobParams::default(), true, 3);
    assert_eq!(r.plaintext_agreement, 1.0);
    assert!(r.quality.hits1 >= 0.9, "{}", r.quality.hits1);
    // Open protocol: the known pairs are not aligned again.
    let opts = EvalOptions {
        protocol: EvalProtocol::Open,
        split: Split::Test,
        servers: 2,
        workers: 1,
        params: JobParams::default(),
        seed: Some(3),
        known_links: true,
        dump_scores: None,
    };
    let open = runtime()
        .unwrap()
        .block_on(evaluate_inprocess(&ds, &opts))
        .unwrap();
    assert_eq!(open.plaintext_agreement, 1.0);
    assert_eq!(open.entities_a, ds.a.len() - ds.tune.len());
    assert_eq!(open.entities_b, ds.b.len() - ds.tune.len());
}

#[test]
fn assignment_equals_reference_and_adds_matches() {
    let mut ds = sample();
    ds.hide_names();
    let base = eval(&ds, JobParams::default(), true, 2);
    let p = JobParams {
        assignment_rounds: 3,
        ..JobParams::default()
    };
    let mut digests = Vec::new();
    for k in [2, 3] {
        let r = eval(&ds, p.clone(), true, k);
        assert_eq!(r.plaintext_agreement, 1.0, "k = {k}");
        assert!(r.quality.recall > base.quality.recall, "{:?}", r.quality);
        digests.push(r.decisions_digest);
    }
    assert_eq!(digests[0], digests[1]);
    assert_ne!(digests[0], base.decisions_digest);
    let bad = JobParams {
        assignment_rounds: 99,
        ..JobParams::default()
    };
    assert!(bad.validate().unwrap_err().to_string().contains("0 to 8"));
}

/// Iterated CSLS (`csls_iterations`): the secure decisions equal the plaintext reference of the
/// same iterations for every k, each iteration costs one more row-max tournament, the decisions
/// differ from one iteration's, and structure alone gains from it on the sample.
#[test]
fn iterated_csls_equals_reference_and_costs_one_tournament_each() {
    let mut ds = sample();
    ds.hide_names();
    let base = eval(&ds, JobParams::default(), true, 2);
    let mut rounds = vec![base.rounds];
    for t in [2, 3] {
        let p = JobParams {
            csls_iterations: t,
            ..JobParams::default()
        };
        let mut digests = Vec::new();
        for k in [2, 3] {
            let r = eval(&ds, p.clone(), true, k);
            assert_eq!(r.plaintext_agreement, 1.0, "t = {t}, k = {k}");
            digests.push(r.decisions_digest);
            if k == 2 {
                rounds.push(r.rounds);
                assert!(
                    r.quality.hits1 >= base.quality.hits1 - 0.01,
                    "{:?}",
                    r.quality
                );
            }
        }
        assert_eq!(digests[0], digests[1]);
        assert_ne!(digests[0], base.decisions_digest);
    }
    // Each iteration adds the same tournament (its rounds do not depend on the iteration).
    assert!(rounds[1] > rounds[0]);
    assert_eq!(rounds[2] - rounds[1], rounds[1] - rounds[0]);
    for bad in [0, 9] {
        let p = JobParams {
            csls_iterations: bad,
            ..JobParams::default()
        };
        assert!(p.validate().unwrap_err().to_string().contains("1 to 4"));
    }
    let both = JobParams {
        csls_iterations: 2,
        assignment_rounds: 1,
        ..JobParams::default()
    };
    assert!(both.validate().is_err());
}

fn write(dir: &Path, name: &str, body: &str) {
    if let Some(parent) = dir.join(name).parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(dir.join(name), body).unwrap();
}

#[test]
fn importers_honour_published_splits() {
    // DBP15K / SRPRS: top-level sup_ent_ids with a ref_ent_ids that lists every link.
    let t = TempDir::new("splits-dbp");
    write(
        &t.0,
        "ent_ids_1",
        "1\thttp://x/A\n2\thttp://x/B\n3\thttp://x/C\n",
    );
    write(
        &t.0,
        "ent_ids_2",
        "11\thttp://y/A\n12\thttp://y/B\n13\thttp://y/C\n",
    );
    write(&t.0, "triples_1", "1\t0\t2\n2\t0\t3\n");
    write(&t.0, "triples_2", "11\t5\t12\n12\t5\t13\n");
    write(&t.0, "ref_ent_ids", "1\t11\n2\t12\n3\t13\n");
    let ds = load(&t.0, Format::Dbp15k).unwrap();
    assert_eq!((ds.tune.len(), ds.test.len()), (0, 3));
    assert!(ds.split.contains("no published split"), "{}", ds.split);
    write(&t.0, "sup_ent_ids", "2\t12\n");
    let ds = load(&t.0, Format::Dbp15k).unwrap();
    assert_eq!(ds.tune, vec![(1, 1)]);
    assert_eq!(ds.test, vec![(0, 0), (2, 2)]);
    assert!(ds.split.contains("sup_ent_ids"), "{}", ds.split);
    // uea_split/ wins over the top level.
    write(&t.0, "uea_split/sup_ent_ids", "3\t13\n");
    write(&t.0, "uea_split/ref_ent_ids", "1\t11\n");
    let ds = load(&t.0, Format::Dbp15k).unwrap();
    assert_eq!(
        (ds.tune.clone(), ds.test.clone()),
        (vec![(2, 2)], vec![(0, 0)])
    );
    assert!(ds.split.contains("uea_split"), "{}", ds.split);

    // OpenEA: 721_5fold/N, chosen by the fold option.
    let t = TempDir::new("splits-openea");
    write(&t.0, "rel_triples_1", "x/A\tr\tx/B\nx/B\tr\tx/C\n");
    write(&t.0, "rel_triples_2", "y/A\tr\ty/B\ny/B\tr\ty/C\n");
    write(&t.0, "ent_links", "x/A\ty/A\nx/B\ty/B\nx/C\ty/C\n");
    for (fold, train) in [(1, "x/A\ty/A\n"), (2, "x/C\ty/C\n")] {
        write(&t.0, &format!("721_5fold/{fold}/train_links"), train);
        write(&t.0, &format!("721_5fold/{fold}/valid_links"), "x/B\ty/B\n");
        write(&t.0, &format!("721_5fold/{fold}/test_links"), "x/B\ty/B\n");
    }
    let ds = load(&t.0, Format::OpenEa).unwrap();
    assert_eq!((ds.tune.clone(), ds.valid.len()), (vec![(0, 0)], 1));
    let ds = load_with(&t.0, Format::OpenEa, LoadOptions { fold: 2 }).unwrap();
    assert_eq!(ds.tune, vec![(2, 2)]);
    assert!(ds.split.contains("721_5fold/2"), "{}", ds.split);
    let e = load_with(&t.0, Format::OpenEa, LoadOptions { fold: 4 })
        .unwrap_err()
        .to_string();
    assert!(e.contains("721_5fold/4") && e.contains("missing"), "{e}");
    write(&t.0, "721_5fold/1/test_links", "x/B\ty/Nope\n");
    let e = load(&t.0, Format::OpenEa).unwrap_err().to_string();
    assert!(
        e.contains("test_links:1:") && e.contains("unknown entity"),
        "{e}"
    );
}

#[test]
fn hidden_names_are_opaque_and_unrelated_across_sides() {
    let mut ds = sample();
    let before = ds.a.names.clone();
    ds.hide_names();
    assert!(ds.a.names.iter().zip(&before).all(|(a, b)| a != b));
    let b: std::collections::HashSet<&String> = ds.b.names.iter().collect();
    assert!(ds.a.names.iter().all(|n| !b.contains(n)));
    assert!(
        ds.a.names
            .iter()
            .all(|n| ppea::model::anchors::name_is_opaque(n))
    );
}
