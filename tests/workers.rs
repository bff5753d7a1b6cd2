//! One logical server over several workers (`model::shard`, `mpc::mesh`): every server's rows
//! are dealt among W workers, worker j of every server computes with worker j of the others
//! (its own dealer stream) and reads other shards' values from its server's other workers; the
//! scores are computed by columns, each worker a slice of every row, and added up. The
//! decisions and every reconstructed result must be those of one worker per server, and of the
//! plaintext reference.

mod common;
use common::cluster::{Cluster, prepare};

use ppea::eval::evaluate::{EvalOptions, EvalProtocol, JobRun, Split, run_inprocess};
use ppea::model::align::finish_party;
use ppea::model::align::{JobParams, ResultRow};
use ppea::model::import::{Format, load};
use ppea::mpc::local::runtime;
use ppea::net::config::Limits;
use std::path::Path;

fn job(
    servers: usize,
    workers: usize,
    protocol: EvalProtocol,
    params: JobParams,
) -> ppea::error::Result<JobRun> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let ds = load(&dir, Format::Native).expect("the sample loads");
    let opts = EvalOptions {
        protocol,
        split: Split::Test,
        servers,
        workers,
        params,
        seed: Some(11),
        known_links: false,
        dump_scores: None,
    };
    runtime().unwrap().block_on(run_inprocess(&ds, &opts))
}

/// A row's entity, match, similarity bits, best candidate with its score's bits, partner id
/// and explanation (bits).
type Decision = (
    u32,
    bool,
    u64,
    Option<(u32, u64)>,
    Option<String>,
    Option<Vec<u64>>,
);

/// A party's results without the link tokens (fresh random values in every run).
fn decisions(rows: &[ResultRow]) -> Vec<Decision> {
    rows.iter()
        .map(|r| {
            (
                r.entity,
                r.matched,
                r.score.to_bits(),
                r.best.map(|(b, s)| (b, s.to_bits())),
                r.partner_id.clone(),
                r.explanation
                    .as_ref()
                    .map(|e| e.iter().map(|x| x.to_bits()).collect()),
            )
        })
        .collect()
}

#[test]
fn a_server_split_into_workers_takes_the_same_decisions() {
    // Two rounds of CSLS read every row's maximum from the other workers twice.
    let csls2 = JobParams {
        csls_iterations: 2,
        ..JobParams::default()
    };
    // Explanations (per-block products, added up per block over the workers' column slices)
    // and partner ids.
    let explained = JobParams {
        explain: true,
        share_partner_ids: true,
        ..JobParams::default()
    };
    // The per-group audit, exact (no noise) so that its figures compare: the workers' sums
    // add up to the server's.
    let mut audited = JobParams::default();
    audited.audit.enabled = true;
    audited.audit.noise = false;
    audited.audit.labelled = true;
    // Assignment rounds: every round shares the rows' matched flags among the workers and
    // reads the other side's markers of the pairs listed both ways.
    let assigned = JobParams {
        assignment_rounds: 2,
        ..JobParams::default()
    };
    for (protocol, params) in [
        (EvalProtocol::Standard, JobParams::default()),
        (EvalProtocol::Open, csls2),
        (EvalProtocol::Standard, explained),
        (EvalProtocol::Standard, audited),
        (EvalProtocol::Open, assigned),
    ] {
        let one = job(2, 1, protocol, params.clone()).expect("one worker");
        if params.assignment_rounds > 0 {
            // The later rounds match rows that round 1 left unmatched.
            let round1 = job(2, 1, protocol, JobParams::default()).expect("one worker");
            let matched = |r: &JobRun| r.a.1.iter().filter(|r| r.matched).count();
            assert!(
                matched(&one) > matched(&round1),
                "assignment rounds matched nothing"
            );
        }
        if params.explain {
            let m = one.a.1.iter().find(|r| r.matched).expect("a match");
            assert!(m.explanation.is_some() && m.partner_id.is_some(), "{m:?}");
        }
        assert_eq!(one.report.plaintext_agreement, 1.0);
        assert_eq!(one.report.worker_bytes_per_server, 0);
        let three = job(3, 1, protocol, params.clone()).expect("one worker");
        for (k, w) in [(2, 2), (3, 3), (2, 4)] {
            let one = if k == 2 { &one } else { &three };
            let split = job(k, w, protocol, params.clone()).expect("workers");
            let r = &split.report;
            let what = format!("{protocol:?}, {k} servers of {w} workers");
            assert_eq!(r.plaintext_agreement, 1.0, "{what}");
            assert_eq!(r.decisions_digest, one.report.decisions_digest, "{what}");
            assert_eq!(r.workers, w);
            // Every row's match, similarity and best candidate, exactly.
            assert_eq!(decisions(&split.a.1), decisions(&one.a.1), "{what}");
            assert_eq!(decisions(&split.b.1), decisions(&one.b.1), "{what}");
            let reports = |r: &JobRun| r.audit.as_ref().map(|a| format!("{a:?}"));
            assert_eq!(reports(&split), reports(one), "{what}: the audit");
            if params.audit.enabled {
                assert!(one.audit.is_some());
            }
            // The link tokens still pair up: equal on both sides of every match.
            let tokens = |rows: &[ResultRow]| -> Vec<u64> {
                let mut t: Vec<u64> = rows.iter().filter(|r| r.matched).map(|r| r.token).collect();
                t.sort_unstable();
                t
            };
            let (ta, tb) = (tokens(&split.a.1), tokens(&split.b.1));
            assert!(!ta.is_empty(), "{what}");
            assert_eq!(ta, tb, "{what}");
            // The same protocol among the servers, cut per worker: each worker opens its slice
            // of the columns of every row, so a server's workers together send what one
            // process sends, but for a few words per group (digests, the failure counts).
            assert!(r.rounds <= one.report.rounds, "{what}");
            let (split_bytes, one_bytes) = (r.bytes_per_server, one.report.bytes_per_server);
            assert!(
                split_bytes >= one_bytes && split_bytes <= one_bytes + one_bytes / 100,
                "{what}: {split_bytes} bytes per server, {one_bytes} with one worker"
            );
            assert!(r.worker_bytes_per_server > 0, "{what}");
        }
    }
}

#[test]
fn what_workers_cannot_run_is_refused_by_name() {
    // More workers than rows of a side.
    let err = match job(2, 400, EvalProtocol::Standard, JobParams::default()) {
        Ok(_) => panic!("400 workers for 311 rows"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("400 workers"), "{err}");
}

/// A party whose upload is too small for the servers' workers (fewer rows than a server has
/// workers) is refused before anything of it is read, naming only its own row count: before,
/// the computation failed with a message naming both sides' counts, sent to both parties, so a
/// party could learn the other's exact row count by uploading one row.
#[test]
fn an_upload_too_small_for_the_workers_reveals_nothing_of_the_other_side() {
    // Party B waits for A's upload `wait_secs`: short here.
    let limits = Limits {
        wait_secs: 3,
        silence_secs: 6,
        ..Limits::default()
    };
    let c = Cluster::with_workers_limits("workers-tiny", 2, 2, limits);
    let spec = c.spec("tiny", JobParams::default());
    let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
    let mut one = a.clone();
    one.rows.truncate(1);
    one.z.truncate(one.width);
    one.tokens.own.truncate(1);
    one.tokens.neighbour.truncate(1);
    let (ra, rb) = c.run(&spec, &one, &b);
    let why_a = ra.expect_err("a one-row upload is refused").to_string();
    assert!(
        why_a.contains("an upload of 1 rows is too small"),
        "{why_a}"
    );
    let why_b = rb.expect_err("the job cannot run").to_string();
    let (na, nb) = (a.rows.len(), b.rows.len());
    assert!(
        !why_a.contains(&nb.to_string()),
        "B's {nb} rows reach A: {why_a}"
    );
    assert!(!why_b.contains(&na.to_string()), "{why_b}");
    assert!(
        !why_b.contains("1 rows"),
        "A's row count reaches B: {why_b}"
    );
    c.still_serves("after-tiny");
}

/// Over QUIC: servers of 2 and 3 worker processes each (every worker a daemon with its
/// server's identity; the job description lists their addresses) give each party the results
/// that servers of one process give for the same uploads.
#[test]
fn servers_of_worker_processes_over_quic_give_the_same_results() {
    let params = JobParams {
        reveal_best: true,
        ..JobParams::default()
    };
    let (a, b) = prepare(EvalProtocol::Standard, &params);
    let results = |c: &Cluster, job: &str| {
        let spec = c.spec(job, params.clone());
        let (ra, rb) = c.run(&spec, &a, &b);
        let words = |r: ppea::Result<Vec<ppea::net::party::ServerResult>>| {
            r.expect("the job runs")
                .into_iter()
                .map(|x| x.words)
                .collect::<Vec<_>>()
        };
        (
            decisions(&finish_party(&a, &words(ra), &params).unwrap()),
            decisions(&finish_party(&b, &words(rb), &params).unwrap()),
        )
    };
    // The same job id everywhere: it seeds the candidate lists' padding.
    let one = results(&Cluster::new("workers-1", 2, Limits::default()), "job");
    assert!(one.0.iter().filter(|d| d.1).count() > 100);
    for w in [2, 3] {
        let c = Cluster::with_workers(&format!("workers-{w}"), 2, w);
        let split = results(&c, "job");
        let same = |x: &[Decision], y: &[Decision]| x.iter().zip(y).filter(|(p, q)| p == q).count();
        assert!(
            split == one,
            "{w} workers per server: {} of {} rows of A and {} of {} of B as with one",
            same(&split.0, &one.0),
            one.0.len(),
            same(&split.1, &one.1),
            one.1.len()
        );
        c.still_serves("after");
    }
}

/// Only a server's own workers (its identity) may join its mesh: another server's certificate
/// is refused at once, naming it, and the servers still serve.
#[test]
fn another_servers_identity_cannot_join_a_servers_mesh() {
    use common::cluster::{T, rt};
    use ppea::error::PeerName;
    use ppea::net::dial::open;
    use ppea::net::job::{Ack, Digest, Hello};
    let c = Cluster::with_workers("mesh-identity", 2, 2);
    let target = c.nodes[1].node.clone(); // worker 0 of server-0
    let ack = rt().block_on(async {
        let ep = c.identity("server-1").client_endpoint().unwrap();
        let (_conn, mut s, mut r) = open(&ep, &target, PeerName::Worker(0), 1 << 20, T)
            .await
            .unwrap();
        s.control(&Hello::Mesh {
            job: "steal".into(),
            from: 1,
            digest: Digest([0; 32]),
            uploads: [Digest([0; 32]); 2],
        })
        .await
        .unwrap();
        let ack = r.control::<Ack>().await.unwrap();
        ep.close(0u32.into(), b"done");
        ack
    });
    match ack {
        Ack::Refused(why) => assert!(
            why.contains("server-1 is not a worker of server-0"),
            "{why}"
        ),
        Ack::Ok => panic!("server-0 took server-1 into its mesh"),
    }
    c.still_serves("after-mesh-attempt");
}

/// A party that sends one server's workers different tokens (to have one job's candidate lists
/// built from several token sets) gets the job refused, naming it: the workers of a server
/// compare their uploads' digests when they link, as the servers do.
/// Party A uploads to every worker of both servers of `c` itself (worker `w` gets
/// `data[w]`, with its audit shares when the job audits), party B runs normally; the result of
/// each of party A's uploads (server 0's workers, then server 1's) and party B's.
fn party_a_by_worker(
    c: &Cluster,
    spec: &ppea::net::job::JobSpec,
    data: [&ppea::model::align::PartyData; 2],
    b: &ppea::model::align::PartyData,
) -> (
    Vec<ppea::Result<ppea::net::party::ServerResult>>,
    ppea::Result<Vec<ppea::net::party::ServerResult>>,
) {
    use common::cluster::{T, rt};
    use ppea::mpc::share::ShareMsg;
    use ppea::net::party::{ZShare, run_party, upload_to_worker};
    let (ia, ib) = (c.identity("party-a"), c.identity("party-b"));
    rt().block_on(async {
        let ep = ia.client_endpoint().unwrap();
        let seeds = ppea::mpc::share::share_seeds(2).unwrap();
        let z0 = ShareMsg::Seed {
            seed: seeds[0].clone(),
            len: data[0].z_words(),
        };
        let audit = if spec.params.audit.enabled {
            Some(ppea::mpc::share::share_compressed(&data[0].audit, 2).unwrap())
        } else {
            None
        };
        let quiet = ppea::net::progress::Lines(|_: &str| {});
        let up = |(j, w): (usize, usize)| {
            let z = if j == 0 {
                ZShare::Msg(&z0)
            } else {
                ZShare::Last(&seeds)
            };
            let audit = audit.as_ref().map(|v| &v[j]);
            upload_to_worker(&ep, spec, (j, w), 0, data[w], z, None, audit, T, &quiet)
        };
        let party_a = futures::future::join_all([(0, 0), (0, 1), (1, 0), (1, 1)].map(up));
        let (ra, rb) = tokio::join!(party_a, run_party(spec, 1, &ib, b, T, |_| {}));
        ep.close(0u32.into(), b"done");
        (ra, rb)
    })
}

#[test]
fn a_party_sending_workers_different_uploads_is_refused() {
    let c = Cluster::with_workers("worker-uploads", 2, 2);
    let spec = c.spec("mixed", JobParams::default());
    let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
    // The same rows with their tokens rotated by one row.
    let mut rotated = a.clone();
    rotated.tokens.own.rotate_left(1);
    rotated.tokens.neighbour.rotate_left(1);
    let (ra, rb) = party_a_by_worker(&c, &spec, [&a, &rotated], &b);
    let why = rb.expect_err("the job is refused").to_string();
    assert!(why.contains("party a sent different uploads"), "{why}");
    assert!(ra.iter().all(Result::is_err), "{ra:?}");
    c.still_serves("after-mixed");
}

/// With the audit, only worker 0 of each server releases its shares of the noisy aggregates:
/// the other workers' shares of the exact sums would let a party rebuild them, so they send
/// zeros in their place, and the noisy figures still reach both parties.
#[test]
fn only_worker_0_releases_the_audit_aggregates() {
    let c = Cluster::with_workers("worker-audit", 2, 2);
    let mut params = JobParams::default();
    params.audit.enabled = true;
    let spec = c.spec("audited", params.clone());
    let (mut a, mut b) = prepare(EvalProtocol::Standard, &spec.params);
    let ds = common::cluster::sample();
    let key = ppea::model::blocking::BlockingKey::random();
    ppea::model::audit::attach(&mut a, &ds.a, &params, &key, &[]).unwrap();
    ppea::model::audit::attach(&mut b, &ds.b, &params, &key, &[]).unwrap();
    assert!(!a.audit.is_empty());
    let (ra, rb) = party_a_by_worker(&c, &spec, [&a, &a], &b);
    let ra: Vec<_> = ra
        .into_iter()
        .map(|r| r.expect("party A's workers answer"))
        .collect();
    rb.expect("party B's job runs");
    let aggregates = params.trailer_words() - 1;
    let tail = |r: &ppea::net::party::ServerResult| r.words[r.words.len() - aggregates..].to_vec();
    // ra: (server 0, worker 0), (0, 1), (1, 0), (1, 1).
    for r in [&ra[1], &ra[3]] {
        assert!(
            tail(r).iter().all(|&v| v == 0),
            "worker 1 released aggregates"
        );
    }
    let sums: Vec<u64> = tail(&ra[0])
        .iter()
        .zip(tail(&ra[2]))
        .map(|(x, y)| x.wrapping_add(y))
        .collect();
    assert!(
        sums.iter().any(|&v| v != 0),
        "worker 0 released the aggregates"
    );
}

/// Aggregate-only jobs on split servers: each worker sums its own rows, the workers add their
/// sums up, and worker 0 alone releases the server's (the others send zeros: their own rows'
/// sums would tell a party how the matches fall across the shards). The totals are those of
/// the same job's per-row results.
#[test]
fn aggregate_only_jobs_release_a_servers_sums_from_worker_0() {
    use ppea::net::job::{JobSpec, OutputMode};
    // The same job id runs three times (same candidate padding), so the servers forget ids.
    let forget = Limits {
        remember_jobs_secs: 0,
        ..Limits::default()
    };
    let c = Cluster::with_workers_limits("worker-aggregate", 2, 2, forget);
    let spec = c.spec("job", JobParams::default());
    let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
    let words = |r: Vec<ppea::net::party::ServerResult>| -> Vec<Vec<u64>> {
        r.into_iter().map(|x| x.words).collect()
    };
    let (ra, _) = c.run(&spec, &a, &b);
    let rows = finish_party(&a, &words(ra.unwrap()), &spec.params).unwrap();
    let matched = rows.iter().filter(|r| r.matched).count() as u64;
    assert!(matched > 100);
    let agg = JobSpec {
        output: OutputMode::Aggregate,
        ..spec.clone()
    };
    let (ra, rb) = c.run(&agg, &a, &b);
    let finish = |r: ppea::Result<Vec<ppea::net::party::ServerResult>>| {
        ppea::model::align::finish_aggregate(&words(r.unwrap()), &spec.params).unwrap()
    };
    let (total_a, score_sum) = finish(ra);
    assert_eq!(total_a, matched);
    assert_eq!(
        finish(rb).0,
        matched,
        "both sides count the same mutual matches"
    );
    let sum: f64 = rows.iter().map(|r| r.score).sum();
    assert!((score_sum / spec.params.model.max_score() - sum).abs() < 1e-6);
    // Worker by worker: (server 0, worker 0), (0, 1), (1, 0), (1, 1).
    let (ra, rb) = party_a_by_worker(&c, &agg, [&a, &a], &b);
    assert_eq!(finish(rb).0, matched);
    let ra: Vec<Vec<u64>> = ra.into_iter().map(|r| r.unwrap().words).collect();
    for r in [&ra[1], &ra[3]] {
        assert_eq!(r[..2], [0, 0], "worker 1 released sums");
    }
    assert_eq!(ra[0][0].wrapping_add(ra[2][0]), matched);
}
