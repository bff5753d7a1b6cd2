//! The alignment pipeline on real data: the secure pipeline takes the plaintext reference's
//! decisions for 2, 3 and 4 servers, importers reject bad input with file, line and problem, and
//! a party's upload never contains its names or embeddings in the clear.

mod common;
use common::TempDir;

use ppea::eval::evaluate::{EvalOptions, EvalProtocol, Split, evaluate_inprocess};
use ppea::model::align::{JobParams, prepare_party};
use ppea::model::blocking::BlockingKey;
use ppea::model::graph::Graph;
use ppea::model::import::{Format, load};
use ppea::mpc::local::runtime;
use ppea::mpc::prg::Prg;
use ppea::mpc::share::{ShareMsg, share_compressed};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample")
}

/// The options of these tests' jobs: test split, default parameters, one worker, seed 11.
fn options(protocol: EvalProtocol, servers: usize) -> EvalOptions {
    EvalOptions {
        protocol,
        split: Split::Test,
        servers,
        workers: 1,
        params: JobParams::default(),
        seed: Some(11),
        known_links: false,
        dump_scores: None,
    }
}

fn eval(
    dir: &Path,
    format: Format,
    protocol: EvalProtocol,
    servers: usize,
) -> ppea::eval::evaluate::EvalReport {
    let ds = load(dir, format).expect("dataset loads");
    let opts = options(protocol, servers);
    runtime()
        .unwrap()
        .block_on(evaluate_inprocess(&ds, &opts))
        .expect("job runs")
}

#[test]
fn secure_pipeline_equals_reference_for_2_3_4_servers() {
    let mut digests = Vec::new();
    for k in [2, 3, 4] {
        let r = eval(&sample(), Format::Native, EvalProtocol::Standard, k);
        assert_eq!(r.plaintext_agreement, 1.0, "k = {k}");
        assert!(r.quality.hits1 >= 0.9, "k = {k}: hits1 {}", r.quality.hits1);
        assert!(
            r.quality.precision >= 0.9 && r.quality.recall >= 0.85,
            "k = {k}: {r:?}"
        );
        assert!(r.quality.blocking_recall >= 0.95);
        assert_eq!(r.entities_a, r.quality.pairs);
        // Rounds do not depend on k; bytes per server grow with the number of peers.
        // 1 to gather the candidate lists, 120 for the model, 16 for the upload range checks.
        assert_eq!(r.rounds, 138);
        // Bytes per server: the model's openings to each of the k - 1 peers, and this
        // server's part of the candidate lists (dealt by row, 64 per row, two per word, every
        // payload as long as the longest part) to each peer.
        let part = |s: usize| ppea::model::blocking::Part { part: s, parts: k };
        let longest = (0..k)
            .map(|s| (part(s).len(r.entities_a) + part(s).len(r.entities_b)) * 64)
            .max()
            .unwrap();
        let gather = 8 * longest.div_ceil(2) as u64 * (k as u64 - 1);
        digests.push((
            r.decisions_digest,
            r.quality.hits1,
            r.bytes_per_server - gather,
        ));
    }
    assert!(
        digests
            .iter()
            .all(|d| d.0 == digests[0].0 && d.1 == digests[0].1),
        "{digests:?}"
    );
    assert_eq!(digests[1].2, 2 * digests[0].2);
    assert_eq!(digests[2].2, 3 * digests[0].2);
}

#[test]
fn open_protocol_aligns_whole_graphs() {
    let r = eval(&sample(), Format::Native, EvalProtocol::Open, 2);
    assert_eq!(r.plaintext_agreement, 1.0);
    assert_eq!((r.entities_a, r.entities_b), (952, 937));
    assert!(r.quality.hits1 >= 0.85, "{}", r.quality.hits1);
}

/// The DBP15K fr-en targets of the standard protocol (runs where the shared data is present, as
/// in CI; the sample tests above cover machines without it).
#[test]
fn dbp15k_standard_protocol_targets() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/dbp15k_fr_en");
    if !dir.exists() {
        eprintln!("skipped: {} not present", dir.display());
        return;
    }
    let r = eval(&dir, Format::Dbp15k, EvalProtocol::Standard, 2);
    assert!(r.quality.hits1 >= 0.95, "hits1 {}", r.quality.hits1);
    assert!(
        r.plaintext_agreement >= 0.999,
        "agreement {}",
        r.plaintext_agreement
    );
    assert!(
        r.quality.blocking_recall >= 0.98,
        "blocking recall {}",
        r.quality.blocking_recall
    );
    assert!(r.quality.f1 >= 0.93, "f1 {}", r.quality.f1);
    assert_eq!(
        (r.entities_a, r.entities_b, r.quality.pairs),
        (10500, 10500, 10500)
    );
}

fn graph_error(entities: &[u8], triples: &[u8]) -> String {
    let t = TempDir::new(&format!("g{}", entities.len() * 31 + triples.len()));
    std::fs::write(t.0.join("entities.tsv"), entities).unwrap();
    std::fs::write(t.0.join("triples.tsv"), triples).unwrap();
    Graph::load_dir(&t.0)
        .expect_err("bad input is rejected")
        .to_string()
}

#[test]
fn importers_reject_bad_input_with_file_line_and_problem() {
    let cases: [(&[u8], &[u8], [&str; 2]); 6] = [
        (
            b"1\tParis\n2\n",
            b"",
            ["entities.tsv:2:", "expected 2 to 4 TAB-separated columns"],
        ),
        (
            b"1\tParis\n2\tLyon\n",
            b"1\tnear\t2\n1\tnear\t3\n",
            ["triples.tsv:2:", "unknown entity \"3\" as tail"],
        ),
        (
            b"1\tParis\n1\tLyon\n",
            b"",
            ["entities.tsv:2:", "duplicate entity id \"1\""],
        ),
        (b"# only a comment\n", b"", ["entities.tsv", "no entities"]),
        (
            b"1\tParis\n2\tLy\xffon\n",
            b"",
            ["entities.tsv:2:", "not valid UTF-8"],
        ),
        (
            b"1\tParis\n",
            b"1\tnear\n",
            ["triples.tsv:1:", "expected 3 TAB-separated columns"],
        ),
    ];
    for (entities, triples, want) in cases {
        let e = graph_error(entities, triples);
        assert!(want.iter().all(|w| e.contains(w)), "{e}");
    }

    // DBP15K layout: a triple naming an entity of neither list.
    let t = TempDir::new("dbp");
    std::fs::write(
        t.0.join("ent_ids_1"),
        "0\thttp://fr.dbpedia.org/resource/Paris\n",
    )
    .unwrap();
    std::fs::write(
        t.0.join("ent_ids_2"),
        "5\thttp://dbpedia.org/resource/Paris\n",
    )
    .unwrap();
    std::fs::write(t.0.join("triples_1"), "0\t1\t0\n").unwrap();
    std::fs::write(t.0.join("triples_2"), "5\t1\t9\n").unwrap();
    std::fs::write(t.0.join("ref_ent_ids"), "0\t5\n").unwrap();
    let e = load(&t.0, Format::Dbp15k).unwrap_err().to_string();
    assert!(
        e.contains("triples_2:1:") && e.contains("unknown entity \"9\""),
        "{e}"
    );
    std::fs::write(t.0.join("triples_2"), "5\t1\t5\n").unwrap();
    let ds = load(&t.0, Format::Dbp15k).unwrap();
    assert_eq!(ds.a.names[0], "Paris");
    std::fs::write(t.0.join("ref_ent_ids"), "0\t7\n").unwrap();
    let e = load(&t.0, Format::Dbp15k).unwrap_err().to_string();
    assert!(
        e.contains("ref_ent_ids:1:") && e.contains("unknown entity \"7\" of the second graph"),
        "{e}"
    );
}

#[test]
fn dbp15k_importer_reads_the_shared_data() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/dbp15k_fr_en");
    if !dir.exists() {
        eprintln!("skipped: {} not present", dir.display());
        return;
    }
    let ds = load(&dir, Format::Dbp15k).unwrap();
    assert_eq!((ds.a.len(), ds.b.len()), (19661, 19993));
    assert_eq!((ds.a.triples.len(), ds.b.triples.len()), (105998, 115722));
    assert_eq!((ds.tune.len(), ds.test.len()), (4500, 10500));
    // Names come from the translated-name file when present.
    let i = ds.a.index()["0"] as usize;
    assert_eq!(ds.a.names[i], "saint joseph de coleraine");
}

/// Finds any 8-byte window of `hay` that starts one of `needles` (names of at least 8 bytes).
fn contains_any(hay: &[u8], needles: &HashSet<[u8; 8]>) -> bool {
    hay.windows(8)
        .any(|w| needles.contains(<&[u8; 8]>::try_from(w).unwrap()))
}

#[test]
fn uploads_contain_no_names_or_embeddings_in_the_clear() {
    let ds = load(&sample(), Format::Native).unwrap();
    let p = JobParams::default();
    let scope: Vec<u32> = (0..ds.a.len() as u32).collect();
    let data = prepare_party(&ds.a, &scope, &p, &BlockingKey::random(), &mut Prg::fresh()).unwrap();
    // What the party sends: per server, its share message and the keyed tokens.
    let mut bytes = Vec::new();
    for msg in share_compressed(&data.z, 2).unwrap() {
        match &msg {
            ShareMsg::Seed { seed, .. } => bytes.extend_from_slice(&seed.0),
            ShareMsg::Explicit(v) => v.iter().for_each(|w| bytes.extend(w.to_le_bytes())),
        }
    }
    for t in data.tokens.own.iter().chain(&data.tokens.neighbour) {
        t.iter().for_each(|w| bytes.extend(w.to_le_bytes()));
    }
    let names: HashSet<[u8; 8]> =
        ds.a.names
            .iter()
            .chain(&ds.a.ids)
            .filter(|n| n.len() >= 8)
            .map(|n| n.as_bytes()[..8].try_into().unwrap())
            .collect();
    assert!(names.len() > 300);
    assert!(
        !contains_any(&bytes, &names),
        "a name appears in the upload"
    );
    let words: HashSet<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let leaked = data
        .z
        .iter()
        .filter(|&&w| w > 1 << 12 && w.wrapping_neg() > 1 << 12 && words.contains(&w))
        .count();
    assert_eq!(leaked, 0, "embedding words appear in the upload");
    // Controls: the same checks catch a plaintext name and a plaintext embedding.
    let mut plain = bytes.clone();
    plain.extend_from_slice(ds.a.names.iter().find(|n| n.len() >= 8).unwrap().as_bytes());
    assert!(contains_any(&plain, &names));
    let raw: HashSet<u64> = data.z.iter().copied().collect();
    assert!(
        data.z
            .iter()
            .filter(|&&w| w > 1 << 12)
            .any(|w| raw.contains(w))
    );
}

/// With both parties opted in, each matched row carries its partner's id; otherwise none do.
#[test]
fn partner_ids_only_when_both_opted_in() {
    use ppea::eval::evaluate::servers_inprocess;
    use ppea::model::align::finish_party;
    let ds = load(&sample(), Format::Native).unwrap();
    let gold: std::collections::HashMap<u32, u32> = ds.test.iter().copied().collect();
    let (sa, sb) = ppea::eval::evaluate::scopes(&ds, EvalProtocol::Standard, Split::Test);
    for opt_in in [true, false] {
        let p = JobParams {
            share_partner_ids: opt_in,
            ..JobParams::default()
        };
        let key = BlockingKey::random();
        let pa = prepare_party(&ds.a, &sa, &p, &key, &mut Prg::fresh()).unwrap();
        let pb = prepare_party(&ds.b, &sb, &p, &key, &mut Prg::fresh()).unwrap();
        let up = |d: &ppea::model::align::PartyData| {
            (
                share_compressed(&d.z, 2).unwrap(),
                share_compressed(&d.ids, 2).unwrap(),
                d.tokens.clone(),
            )
        };
        let rt = runtime().unwrap();
        let out = rt
            .block_on(servers_inprocess(2, [up(&pa), up(&pb)], &p, "ids"))
            .unwrap();
        let ra = finish_party(&pa, &out.a, &p).unwrap();
        let rb = finish_party(&pb, &out.b, &p).unwrap();
        let matched = ra.iter().filter(|r| r.matched).count();
        assert!(matched > 250, "{matched} matches");
        let mut correct = 0;
        for r in &ra {
            match (&r.partner_id, r.matched, opt_in) {
                (Some(id), true, true) => {
                    let b = ds.b.index()[id.as_str()];
                    correct += (gold.get(&r.entity) == Some(&b)) as usize;
                    // The partner's row holds the same link token and our id.
                    let rowb = rb.iter().find(|x| x.entity == b).unwrap();
                    assert_eq!(rowb.token, r.token);
                    assert_eq!(
                        rowb.partner_id.as_deref(),
                        Some(ds.a.ids[r.entity as usize].as_str())
                    );
                }
                (None, false, _) | (None, true, false) => {}
                other => panic!("unexpected partner id state {other:?}"),
            }
            if !r.matched {
                assert_eq!((r.token, r.score), (0, 0.0));
            }
        }
        if opt_in {
            assert!(
                correct as f64 >= 0.95 * matched as f64,
                "{correct} of {matched}"
            );
        }
        // Without opt-in the result words hold no id at all.
        assert_eq!(
            out.a[0].len(),
            pa.rows.len() * p.out_width() + ppea::model::align::STATUS_WORDS
        );
    }
}

#[test]
fn openea_importer_reads_its_layout() {
    let t = TempDir::new("openea");
    std::fs::write(t.0.join("rel_triples_1"), "http://x/A_(b)\tr\thttp://x/C\n").unwrap();
    std::fs::write(
        t.0.join("rel_triples_2"),
        "http://y/A\tr\thttp://y/C%C3%A9\n",
    )
    .unwrap();
    std::fs::write(t.0.join("attr_triples_1"), "http://x/C\tpop\t12\n").unwrap();
    std::fs::write(
        t.0.join("ent_links"),
        "http://x/A_(b)\thttp://y/A\nhttp://x/C\thttp://y/C%C3%A9\n",
    )
    .unwrap();
    assert_eq!(Format::detect(&t.0), Some(Format::OpenEa));
    let ds = load(&t.0, Format::OpenEa).unwrap();
    assert_eq!(ds.a.names, vec!["A (b)".to_string(), "C".to_string()]);
    assert_eq!(ds.b.names[1], "Cé");
    assert_eq!(ds.a.attributes.len(), 1);
    assert_eq!(ds.tune.len() + ds.test.len(), 2);
    std::fs::write(t.0.join("ent_links"), "http://x/A_(b)\n").unwrap();
    let e = load(&t.0, Format::OpenEa).unwrap_err().to_string();
    assert!(
        e.contains("ent_links:1:") && e.contains("expected 2 TAB-separated columns"),
        "{e}"
    );
}

/// The words a party uploads are pinned: these hashes of the shipped sample's rows (seeded key
/// and shuffle, the default model, and with known links) were computed by the code before the
/// rows were streamed (commit f5ceacc), so any change in the arithmetic of the party-local
/// model, held or streamed, shows here (and would change every published digest).
#[test]
fn prepared_rows_are_the_pinned_words() {
    use ppea::eval::evaluate::{scopes, seeded};
    use ppea::model::align::{prepare_party_known, prepare_party_streamed};
    let ds = load(&sample(), Format::Native).expect("sample loads");
    let (sa, sb) = scopes(&ds, EvalProtocol::Standard, Split::Test);
    let hash = |d: &ppea::model::align::PartyData| {
        let mut z = vec![0u64; d.z_words()];
        d.z_rows(0, &mut z).expect("whole rows");
        z.iter().fold(0u64, |h, &x| h.rotate_left(5) ^ x)
    };
    let known: Vec<u32> = ds.tune.iter().map(|l| l.0).collect();
    for (g, scope, links, want) in [
        (&ds.a, &sa, false, 0xbb45_0f8e_ae6a_3ebb_u64),
        (&ds.b, &sb, false, 0x0992_eae3_3393_4ad6),
        (&ds.a, &sa, true, 0xc8a8_0653_85b3_1fe4),
    ] {
        let mut p = JobParams::default();
        p.model.known_links = links;
        let known = if links { &known[..] } else { &[][..] };
        let (key, mut shuffle, _) = seeded(1);
        let held = prepare_party_known(g, scope, known, &p, &key, &mut shuffle).unwrap();
        let (key, mut shuffle, _) = seeded(1);
        let streamed = prepare_party_streamed(g, scope, known, &p, &key, &mut shuffle).unwrap();
        assert_eq!(held.rows.len(), 311);
        assert_eq!(hash(&held), want, "held rows, known links {links}");
        assert_eq!(hash(&streamed), want, "streamed rows, known links {links}");
    }
}

/// Dealer-free modes: with `correlation = "ot"` the servers make every correlation among
/// themselves over OT, and the job takes exactly the dealer mode's decisions for 2, 3 and 4
/// servers, with no byte from a dealer; with `correlation = "replicated"` three servers make
/// them from replicated seeds, with the same decisions, and other server counts are refused.
/// A small generated pair with a narrow model keeps the OT bilinear form (one Gilboa product
/// per pair and dimension) quick.
#[test]
fn dealer_free_jobs_take_the_dealer_jobs_decisions() {
    use ppea::eval::generate::{GenerateOptions, generate};
    use ppea::mpc::source::Correlation;
    let source = load(&sample(), Format::Native).expect("sample loads");
    let ds = generate(
        &source,
        &GenerateOptions {
            n: 60,
            ..GenerateOptions::default()
        },
    )
    .expect("pair generated");
    let mut params = JobParams::default();
    params.model.dim = 16;
    params.model.attention_dim = 4;
    params.blocking.candidates = 8;
    let try_run = |k: usize, correlation: Correlation| {
        let opts = EvalOptions {
            protocol: EvalProtocol::Standard,
            split: Split::Test,
            servers: k,
            workers: 1,
            params: JobParams {
                correlation,
                ..params.clone()
            },
            seed: Some(5),
            known_links: false,
            dump_scores: None,
        };
        runtime().unwrap().block_on(evaluate_inprocess(&ds, &opts))
    };
    let run = |k: usize, correlation: Correlation| try_run(k, correlation).expect("job runs");
    for k in [2, 3, 4] {
        let dealer = run(k, Correlation::Dealer);
        let ot = run(k, Correlation::Ot);
        assert_eq!(ot.plaintext_agreement, 1.0, "k = {k}");
        assert!(dealer.dealer_bytes > 0);
        assert_eq!(ot.dealer_bytes, 0, "k = {k}: no dealer");
        assert_eq!(ot.decisions_digest, dealer.decisions_digest, "k = {k}");
        assert!(ot.quality.hits1 > 0.5, "k = {k}: {}", ot.quality.hits1);
        // The OT messages cross the servers' links: more rounds and bytes than with a dealer.
        assert!(ot.rounds > dealer.rounds && ot.bytes_per_server > dealer.bytes_per_server);
        eprintln!(
            "k = {k}: hits1 {:.3}, rounds {} / {}, MB per server {:.1} / {:.1}, dealer MB {:.1}, \
             wall {:.1} s / {:.1} s",
            ot.quality.hits1,
            ot.rounds,
            dealer.rounds,
            ot.bytes_per_server as f64 / 1e6,
            dealer.bytes_per_server as f64 / 1e6,
            dealer.dealer_bytes as f64 / 1e6,
            ot.wall_seconds,
            dealer.wall_seconds
        );
        if k == 3 {
            let rep = run(k, Correlation::Replicated);
            assert_eq!(rep.plaintext_agreement, 1.0);
            assert_eq!(rep.dealer_bytes, 0, "no dealer");
            assert_eq!(rep.decisions_digest, dealer.decisions_digest);
            // Random bits cost one word each; OT costs far more.
            assert!(rep.bytes_per_server > dealer.bytes_per_server);
            assert!(rep.bytes_per_server < ot.bytes_per_server / 10);
        } else {
            let e = try_run(k, Correlation::Replicated).unwrap_err().to_string();
            assert!(e.contains("exactly 3 servers"), "k = {k}: {e}");
        }
    }
}

/// `--dump-scores`: the file holds the job's candidate lists and pair scores, so that ranking
/// each row of A by the default job's CSLS (`2 S - r_b`, ties to the first slot) from the file
/// alone gives the job's Hits@1; a path that cannot be written fails the evaluation naming it,
/// before the job runs.
#[test]
fn a_score_dump_ranks_as_the_job_did() {
    let dir = TempDir::new("dump");
    let path = dir.0.join("scores.bin");
    let ds = load(&sample(), Format::Native).expect("dataset loads");
    let mut opts = EvalOptions {
        dump_scores: Some(path.clone()),
        ..options(EvalProtocol::Standard, 2)
    };
    let rt = runtime().unwrap();
    let report = rt
        .block_on(evaluate_inprocess(&ds, &opts))
        .expect("job runs");
    let d = std::fs::read(&path).unwrap();
    let word = |at: usize| u64::from_le_bytes(d[at..at + 8].try_into().unwrap()) as usize;
    let (na, nb, k) = (word(0), word(8), word(16));
    assert_eq!((na, nb, k), (report.entities_a, report.entities_b, 64));
    let u32_at = |at: usize| u32::from_le_bytes(d[at..at + 4].try_into().unwrap()) as usize;
    let i64_at = |at: usize| i64::from_le_bytes(d[at..at + 8].try_into().unwrap());
    assert_eq!(word(24), 16, "frac_bits");
    let (ca, cb) = (32, 32 + 4 * na * k);
    let (sa, sb) = (cb + 4 * nb * k, cb + 4 * nb * k + 8 * na * k);
    let g = sb + 8 * nb * k;
    let gold = word(g);
    assert_eq!(d.len(), g + 8 + 8 * gold, "the file's length");
    assert_eq!(gold, report.quality.pairs);
    let r_b: Vec<i64> = (0..nb)
        .map(|b| (0..k).map(|t| i64_at(sb + 8 * (b * k + t))).max().unwrap())
        .collect();
    let mut right = 0;
    for i in 0..gold {
        let (a, b) = (u32_at(g + 8 + 8 * i), u32_at(g + 12 + 8 * i));
        let rank = |t: usize| 2 * i64_at(sa + 8 * (a * k + t)) - r_b[u32_at(ca + 4 * (a * k + t))];
        let best = (0..k).fold(0, |m, t| if rank(t) > rank(m) { t } else { m });
        right += (u32_at(ca + 4 * (a * k + best)) == b) as usize;
    }
    assert_eq!(right as f64 / gold as f64, report.quality.hits1);
    assert!(report.quality.hits1 > 0.9);
    opts.dump_scores = Some(dir.0.join("missing").join("scores.bin"));
    let e = rt
        .block_on(evaluate_inprocess(&ds, &opts))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing"), "{e}");
}
