//! The deployment over real QUIC with mutual TLS on loopback: jobs with 2 and 3 servers take the
//! plaintext reference's decisions, foreign or unlisted certificates are refused, a server killed
//! mid-job fails the job cleanly without taking the others down, concurrent jobs stay apart, and
//! every kind of bad input ends the job with a message that says what happened. Job lifecycle:
//! an upload leaves with its party, a job id runs once, a party waiting is told what for, and a
//! server that dies silently is reported within the configured idle timeout.

mod common;
use common::TempDir;
use common::cluster::{Cluster, Running, T, files, prepare, rt, sample, start, start_on};

use ppea::eval::evaluate::{EvalProtocol, Split, judge, scopes};
use ppea::model::align::{
    JobParams, PartyData, finish_party, job_seed, prepare_party, prepare_party_streamed,
};
use ppea::model::blocking::{BlockingKey, candidates};
use ppea::mpc::prg::Prg;
use ppea::net::config::{Limits, Role};
use ppea::net::job::{JobSpec, OutputMode};
use ppea::net::liveness::{Liveness, Timing};
use ppea::net::party::{ZShare, run_party, upload_to};
use ppea::net::tls::{Identity, write_dev_pki};
use std::time::Duration;

fn eval_params() -> JobParams {
    JobParams {
        reveal_best: true,
        ..JobParams::default()
    }
}

/// Runs both parties of `spec` and judges the results against the gold links and the reference.
fn run_and_judge(
    c: &Cluster,
    spec: &JobSpec,
    a: &PartyData,
    b: &PartyData,
) -> ppea::eval::evaluate::EvalReport {
    run_and_judge_uploading(c, spec, a, a, b)
}

/// [`run_and_judge`], party A uploading `a_up` (the same rows as `a`, perhaps streamed).
fn run_and_judge_uploading(
    c: &Cluster,
    spec: &JobSpec,
    a_up: &PartyData,
    a: &PartyData,
    b: &PartyData,
) -> ppea::eval::evaluate::EvalReport {
    let (ia, ib) = (c.identity("party-a"), c.identity("party-b"));
    let (ra, rb) = rt().block_on(async {
        tokio::join!(
            run_party(spec, 0, &ia, a_up, T, |_| {}),
            run_party(spec, 1, &ib, b, T, |_| {})
        )
    });
    let (ra, rb) = (ra.expect("party A succeeds"), rb.expect("party B succeeds"));
    let words = |r: &[ppea::net::party::ServerResult]| {
        r.iter().map(|x| x.words.clone()).collect::<Vec<_>>()
    };
    let res_a = finish_party(a, &words(&ra), &spec.params).unwrap();
    let res_b = finish_party(b, &words(&rb), &spec.params).unwrap();
    let cand = candidates(
        &a.tokens,
        &b.tokens,
        &spec.params.blocking,
        &job_seed(&spec.job),
    );
    // Byte counts the servers report: one opening per round among k servers.
    assert!(
        ra.iter()
            .all(|r| r.stats.rounds == 138 && r.stats.bytes_sent > 0)
    );
    judge(
        sample(),
        &sample().test,
        a,
        b,
        &res_a,
        &res_b,
        &cand,
        &spec.params,
    )
}

#[test]
fn jobs_with_two_three_and_four_servers_take_the_reference_decisions() {
    for k in [2, 3, 4] {
        let c = Cluster::new(&format!("k{k}"), k, Limits::default());
        let spec = c.spec(&format!("job-k{k}"), eval_params());
        let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
        let r = run_and_judge(&c, &spec, &a, &b);
        assert_eq!(r.plaintext_agreement, 1.0, "k = {k}");
        assert!(
            r.quality.hits1 >= 0.9 && r.quality.f1 >= 0.85,
            "k = {k}: {r:?}"
        );
    }
}

/// The `party` binary never holds its rows: it computes them, and the last server's share of
/// them, a block at a time while uploading. Such a party's upload (and its evaluation dump)
/// must be word for word the rows it would hold: same decisions as the reference. The servers
/// keep such uploads without holding them either: the first two the seeds' streams, the last
/// its explicit share spilled to disk as it arrives (`spill_above_mib = 0`).
#[test]
fn a_party_streaming_its_rows_uploads_the_rows_it_would_hold() {
    let spilling = Limits {
        spill_above_mib: 0,
        ..Limits::default()
    };
    let c = Cluster::new("stream", 3, spilling);
    let spec = c.spec("job-stream", eval_params());
    let p = &spec.params;
    let ds = sample();
    let (sa, sb) = scopes(ds, EvalProtocol::Standard, Split::Test);
    let key = BlockingKey::random();
    let seed = ppea::mpc::prg::Seed::random();
    let held = prepare_party(&ds.a, &sa, p, &key, &mut Prg::new(&seed, 0)).unwrap();
    let streamed =
        prepare_party_streamed(&ds.a, &sa, &[], p, &key, &mut Prg::new(&seed, 0)).unwrap();
    assert!(streamed.z.is_empty() && streamed.streamed.is_some());
    assert_eq!(streamed.z_words(), held.z.len());
    let encode = |d: &PartyData| bincode::serde::encode_to_vec(d, bincode::config::standard());
    let bytes = encode(&streamed).unwrap();
    assert_eq!(bytes, encode(&held).unwrap());
    let (back, _): (PartyData, usize) =
        bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
    assert!(back.streamed.is_none());
    assert_eq!((&back.z, &back.rows), (&held.z, &held.rows));
    let mut rows = vec![0u64; 3 * held.width];
    streamed.z_rows(5, &mut rows).unwrap();
    assert_eq!(rows, held.z[5 * held.width..8 * held.width]);
    assert!(
        streamed.z_rows(5, &mut rows[1..]).is_err(),
        "not whole rows"
    );
    assert!(
        held.z_rows(held.rows.len() - 1, &mut rows).is_err(),
        "past the end"
    );
    // The computed share is `z` less the other servers' seeds: refused anywhere else (it would
    // reveal `z`), before anything is sent.
    let seeds = ppea::mpc::share::share_seeds(3).unwrap();
    let ia = c.identity("party-a");
    for (j, seeds) in [(0, &seeds[..]), (2, &seeds[..1]), (2, &[][..])] {
        let e = rt().block_on(async {
            let ep = ia.client_endpoint().unwrap();
            let quiet = ppea::net::progress::Lines(|_: &str| {});
            upload_to(
                &ep,
                &spec,
                j,
                0,
                &streamed,
                ZShare::Last(seeds),
                None,
                None,
                T,
                &quiet,
            )
            .await
        });
        let e = e.expect_err("refused").to_string();
        assert!(e.contains("goes to the last of 3 servers"), "{e}");
    }
    // Recording: rows filled out of order are not recorded (the source stays); a file that
    // cannot be written gives recording up, never the fill.
    let again = prepare_party_streamed(&ds.a, &sa, &[], p, &key, &mut Prg::new(&seed, 0)).unwrap();
    let src2 = again.streamed.as_ref().unwrap();
    let read_only = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    src2.record_to(read_only);
    let mut all = vec![0u64; held.z.len()];
    again.z_rows(0, &mut all).unwrap();
    assert!(!src2.is_recorded() && all == held.z);
    again.record_rows(&std::env::temp_dir()).unwrap();
    again.z_rows(5, &mut rows).unwrap();
    assert!(!src2.is_recorded(), "rows from 5 are not the next ones");
    again.z_rows(0, &mut all).unwrap();
    assert!(src2.is_recorded());
    again.z_rows(5, &mut rows).unwrap();
    assert_eq!(
        rows,
        held.z[5 * held.width..8 * held.width],
        "read back from the file"
    );
    // A party that writes an evaluation dump records its rows as they are uploaded (the last
    // server's share is computed from them in order) and drops their source; its dump is
    // still the held rows' dump.
    streamed.record_rows(&std::env::temp_dir()).unwrap();
    let src = streamed.streamed.as_ref().unwrap();
    assert!(!src.is_recorded());
    let b = prepare_party(&ds.b, &sb, p, &key, &mut Prg::fresh()).unwrap();
    let r = run_and_judge_uploading(&c, &spec, &streamed, &held, &b);
    assert_eq!(r.plaintext_agreement, 1.0);
    assert!(r.quality.hits1 >= 0.9, "{r:?}");
    assert!(src.is_recorded(), "every row was uploaded in order");
    assert_eq!(encode(&streamed).unwrap(), encode(&held).unwrap());
}

#[test]
fn two_jobs_at_once_stay_apart() {
    let c = Cluster::new("two", 2, Limits::default());
    let (s1, s2) = (
        c.spec("job-one", eval_params()),
        c.spec("job-two", eval_params()),
    );
    let (a1, b1) = prepare(EvalProtocol::Standard, &s1.params);
    let (a2, b2) = prepare(EvalProtocol::Open, &s2.params);
    let (ia, ib) = (c.identity("party-a"), c.identity("party-b"));
    let (r1a, r1b, r2a, r2b) = rt().block_on(async {
        tokio::join!(
            run_party(&s1, 0, &ia, &a1, T, |_| {}),
            run_party(&s1, 1, &ib, &b1, T, |_| {}),
            run_party(&s2, 0, &ia, &a2, T, |_| {}),
            run_party(&s2, 1, &ib, &b2, T, |_| {})
        )
    });
    for (spec, (a, b), (ra, rb)) in [(&s1, (&a1, &b1), (r1a, r1b)), (&s2, (&a2, &b2), (r2a, r2b))] {
        let words = |r: Vec<ppea::net::party::ServerResult>| {
            r.into_iter().map(|x| x.words).collect::<Vec<_>>()
        };
        let res_a = finish_party(a, &words(ra.unwrap()), &spec.params).unwrap();
        let res_b = finish_party(b, &words(rb.unwrap()), &spec.params).unwrap();
        let cand = candidates(
            &a.tokens,
            &b.tokens,
            &spec.params.blocking,
            &job_seed(&spec.job),
        );
        let r = judge(
            sample(),
            &sample().test,
            a,
            b,
            &res_a,
            &res_b,
            &cand,
            &spec.params,
        );
        assert_eq!(r.plaintext_agreement, 1.0, "{}", spec.job);
        assert_eq!(r.entities_a, a.rows.len());
        assert!(r.quality.hits1 >= 0.85, "{}: {}", spec.job, r.quality.hits1);
    }
    assert_ne!(
        a1.rows.len(),
        a2.rows.len(),
        "the two jobs differ in size, so mixing would show"
    );
}

fn expect_err<T>(r: ppea::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected the job to fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn foreign_and_unlisted_certificates_are_refused() {
    let c = Cluster::new("certs", 2, Limits::default());
    let spec = c.spec("job-certs", eval_params());
    let (a, _) = prepare(EvalProtocol::Standard, &spec.params);
    // A certificate from another CA, with a name the servers trust; and one from the right CA
    // for an identity the servers do not list.
    let other = TempDir::new("other-ca");
    write_dev_pki(&other.0, &["party-a".to_string()]).unwrap();
    let foreign = Identity::load("party-a", &files(&other.0, "party-a")).unwrap();
    let mut unlisted_spec = spec.clone();
    unlisted_spec.parties[0] = "party-c".into();
    let unlisted = c.identity("party-c");
    for (spec, who) in [(&spec, &foreign), (&unlisted_spec, &unlisted)] {
        let quick = Duration::from_secs(3);
        let e = expect_err(rt().block_on(run_party(spec, 0, who, &a, quick, |_| {})));
        assert!(e.contains("server-") && e.contains("certificate"), "{e}");
    }
    // The servers are still up: a proper job succeeds.
    let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
    assert_eq!(run_and_judge(&c, &spec, &a, &b).plaintext_agreement, 1.0);
}

#[test]
fn a_server_killed_mid_job_fails_the_job_but_not_the_others() {
    let mut c = Cluster::new("kill", 2, Limits::default());
    let spec = c.spec("job-kill", eval_params());
    let (a, b) = prepare(EvalProtocol::Open, &spec.params);
    let (ia, ib) = (c.identity("party-a"), c.identity("party-b"));
    let stop = c.nodes[2].stop.take().unwrap();
    let (ra, rb, _) = rt().block_on(async {
        tokio::join!(
            run_party(&spec, 0, &ia, &a, T, |_| {}),
            run_party(&spec, 1, &ib, &b, T, |_| {}),
            async {
                tokio::time::sleep(Duration::from_millis(150)).await;
                let _ = stop.send(());
            }
        )
    });
    let (ea, eb) = (expect_err(ra), expect_err(rb));
    for e in [&ea, &eb] {
        assert!(e.contains("server-"), "the error names a server: {e}");
    }
    rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(10), &mut c.nodes[2].done).await
    })
    .unwrap()
    .unwrap();
    // server-0 and the dealer survive: with a fresh server-1 a new job succeeds.
    c.nodes[2] = start(&c.dir.0, "server-1", Role::Compute, 2, Limits::default());
    let spec = c.spec("job-after-kill", eval_params());
    let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
    assert_eq!(run_and_judge(&c, &spec, &a, &b).plaintext_agreement, 1.0);
}

#[test]
fn disagreements_end_the_job_with_a_reason() {
    let c = Cluster::new("disagree", 2, Limits::default());
    let (ia, ib) = (c.identity("party-a"), c.identity("party-b"));
    // The two parties describe the job differently.
    let spec = c.spec("job-parties", eval_params());
    let mut other = spec.clone();
    other.params.min_score = -0.25;
    let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
    let (ra, rb) = rt().block_on(async {
        tokio::join!(
            run_party(&spec, 0, &ia, &a, T, |_| {}),
            run_party(&other, 1, &ib, &b, T, |_| {})
        )
    });
    for e in [expect_err(ra), expect_err(rb)] {
        assert!(e.contains("job descriptions differ"), "{e}");
    }
    // The servers are told different descriptions: both parties send S to server-0, S' to server-1.
    let spec = c.spec("job-servers", eval_params());
    let mut other = spec.clone();
    other.params.min_score = -0.25;
    let k = 2;
    let _guard = rt().enter();
    let (ea, eb) = (ia.client_endpoint().unwrap(), ib.client_endpoint().unwrap());
    let za = ppea::mpc::share::share_compressed(&a.z, k).unwrap();
    let zb = ppea::mpc::share::share_compressed(&b.z, k).unwrap();
    let quiet = ppea::net::progress::Lines(|_: &str| {});
    let results = rt().block_on(async {
        tokio::join!(
            upload_to(
                &ea,
                &spec,
                0,
                0,
                &a,
                ZShare::Msg(&za[0]),
                None,
                None,
                T,
                &quiet
            ),
            upload_to(
                &ea,
                &other,
                1,
                0,
                &a,
                ZShare::Msg(&za[1]),
                None,
                None,
                T,
                &quiet
            ),
            upload_to(
                &eb,
                &spec,
                0,
                1,
                &b,
                ZShare::Msg(&zb[0]),
                None,
                None,
                T,
                &quiet
            ),
            upload_to(
                &eb,
                &other,
                1,
                1,
                &b,
                ZShare::Msg(&zb[1]),
                None,
                None,
                T,
                &quiet
            )
        )
    });
    let errs = [
        expect_err(results.0),
        expect_err(results.1),
        expect_err(results.2),
        expect_err(results.3),
    ];
    assert!(
        errs.iter()
            .any(|e| e.contains("servers disagree on the job's parameters")),
        "{errs:?}"
    );
}

#[test]
fn oversized_and_undecodable_messages_are_refused() {
    let c = Cluster::new(
        "limits",
        2,
        Limits {
            max_message_mib: 3,
            ..Limits::default()
        },
    );
    let spec = c.spec("job-big", eval_params());
    // The open protocol uploads 952 x 648 words (4.9 MB): over the 3 MiB limit.
    let (a, b) = prepare(EvalProtocol::Open, &spec.params);
    let (ia, ib) = (c.identity("party-a"), c.identity("party-b"));
    let (ra, _) = rt().block_on(async {
        tokio::join!(
            run_party(&spec, 0, &ia, &a, T, |_| {}),
            run_party(&spec, 1, &ib, &b, Duration::from_secs(2), |_| {})
        )
    });
    let e = expect_err(ra);
    assert!(e.contains("exceeds"), "{e}");
    // Garbage on a stream: the server drops that stream and carries on.
    rt().block_on(async {
        let ep = ia.client_endpoint().unwrap();
        let node = &spec.servers[0];
        let conn = ep
            .connect(node.addr.parse().unwrap(), &node.name)
            .unwrap()
            .await
            .unwrap();
        let (mut s, mut r) = conn.open_bi().await.unwrap();
        s.write_all(b"C\x05\x00\x00\x00hello").await.unwrap();
        s.finish().unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), r.read_to_end(1024))
            .await
            .map(|x| x.map(|b| buf = b));
        conn.close(0u32.into(), b"done");
    });
    // A small job (100 rows a side: every message well under 3 MiB) still runs.
    let small = JobParams {
        reveal_best: true,
        ..JobParams::default()
    };
    let spec = c.spec("job-small", small.clone());
    let ds = sample();
    let key = BlockingKey::random();
    let (sa, sb) = scopes(ds, EvalProtocol::Standard, Split::Test);
    let a = prepare_party(&ds.a, &sa[..100], &small, &key, &mut Prg::fresh()).unwrap();
    let b = prepare_party(&ds.b, &sb[..100], &small, &key, &mut Prg::fresh()).unwrap();
    let (ra, rb) = rt().block_on(async {
        tokio::join!(
            run_party(&spec, 0, &ia, &a, T, |_| {}),
            run_party(&spec, 1, &ib, &b, T, |_| {})
        )
    });
    assert!(ra.is_ok() && rb.is_ok(), "{:?} {:?}", ra.err(), rb.err());
}

#[test]
fn an_unreachable_server_is_named() {
    let c = Cluster::new("unreachable", 2, Limits::default());
    let mut spec = c.spec("job-unreachable", eval_params());
    let free = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    spec.servers[1].addr = free.to_string();
    let (a, _) = prepare(EvalProtocol::Standard, &spec.params);
    let e = expect_err(rt().block_on(run_party(
        &spec,
        0,
        &c.identity("party-a"),
        &a,
        Duration::from_secs(2),
        |_| {},
    )));
    assert!(
        e.contains("server-1") && e.contains(&free.to_string()),
        "{e}"
    );
}

/// Aggregate-only jobs return one row per party: the number of matches and their score sum,
/// the same totals a per-entity job yields on the same data.
#[test]
fn aggregate_only_jobs_reveal_only_totals() {
    // The same job id runs twice (same candidate padding), so the servers forget ids at once.
    let forget = Limits {
        remember_jobs_secs: 0,
        ..Limits::default()
    };
    let c = Cluster::new("aggregate", 2, forget);
    let spec = c.spec("job-agg", JobParams::default());
    let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
    let (ia, ib) = (c.identity("party-a"), c.identity("party-b"));
    let run = |spec: &JobSpec| {
        rt().block_on(async {
            tokio::join!(
                run_party(spec, 0, &ia, &a, T, |_| {}),
                run_party(spec, 1, &ib, &b, T, |_| {})
            )
        })
    };
    let (ra, _) = run(&spec);
    let words =
        |r: Vec<ppea::net::party::ServerResult>| r.into_iter().map(|x| x.words).collect::<Vec<_>>();
    let rows = finish_party(&a, &words(ra.unwrap()), &spec.params).unwrap();
    let matched = rows.iter().filter(|r| r.matched).count() as u64;
    let agg = JobSpec {
        output: OutputMode::Aggregate,
        ..spec.clone()
    };
    let (ra, rb) = run(&agg);
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(
        ra.iter()
            .chain(&rb)
            .all(|r| r.width == 2 && r.words.len() == 2 + ppea::model::align::STATUS_WORDS)
    );
    let (total, score_sum) =
        ppea::model::align::finish_aggregate(&words(ra), &spec.params).unwrap();
    assert_eq!(total, matched);
    let (total_b, _) = ppea::model::align::finish_aggregate(&words(rb), &spec.params).unwrap();
    assert_eq!(total_b, matched, "both sides count the same mutual matches");
    let sum: f64 = rows.iter().map(|r| r.score).sum();
    assert!((score_sum / spec.params.model.max_score() - sum).abs() < 1e-6);
}

/// Liveness timers for lifecycle tests: a silent peer counts as dead after 2 s.
fn quick() -> Limits {
    Limits {
        keepalive_secs: 1,
        idle_timeout_secs: 2,
        ..Limits::default()
    }
}

fn quick_timing() -> Timing {
    Timing {
        liveness: Liveness::from_secs(1, 2).unwrap(),
        ..Timing::from(T)
    }
}

/// A small job: 100 entities a side.
fn small() -> (JobParams, PartyData, PartyData) {
    let p = JobParams::default();
    let ds = sample();
    let key = BlockingKey::random();
    let (sa, sb) = scopes(ds, EvalProtocol::Standard, Split::Test);
    let a = prepare_party(&ds.a, &sa[..100], &p, &key, &mut Prg::fresh()).unwrap();
    let b = prepare_party(&ds.b, &sb[..100], &p, &key, &mut Prg::fresh()).unwrap();
    (p, a, b)
}

/// Asserts that a party heard `what` in one of its progress messages.
fn assert_heard(heard: &[String], what: &str) {
    assert!(
        heard.iter().any(|m| m.contains(what)),
        "{what:?} in {heard:?}"
    );
}

fn status(n: &Running) -> ppea::net::admin::Report {
    rt().block_on(ppea::net::admin::status(n.admin)).unwrap()
}

/// Waits until `done` holds for every compute server's status. The bound only keeps a broken
/// build from hanging; nothing is asserted about how long it takes.
fn until(c: &Cluster, what: &str, done: impl Fn(&ppea::net::admin::Report) -> bool) {
    for _ in 0..600 {
        if c.nodes[1..].iter().all(|n| done(&status(n))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("never happened: {what}");
}

/// Runs `side` of `spec` until it has heard `wanted` from every server, then drops it (as if
/// the party were killed). Returns what it heard; panics if the job finished instead.
fn run_until_heard(
    c: &Cluster,
    spec: &JobSpec,
    side: u8,
    data: &PartyData,
    wanted: &str,
) -> Vec<String> {
    let id = c.identity(if side == 0 { "party-a" } else { "party-b" });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let k = spec.servers.len();
    rt().block_on(async {
        let run = run_party(spec, side, &id, data, quick_timing(), |m| {
            let _ = tx.send(m.to_string());
        });
        let listen = async {
            let mut heard = Vec::new();
            while let Some(m) = rx.recv().await {
                heard.push(m);
                if heard.iter().filter(|m| m.contains(wanted)).count() == k {
                    return heard;
                }
            }
            heard
        };
        tokio::select! {
            r = run => panic!("party {side} must not finish alone: {:?}", r.map(|_| ())),
            heard = listen => heard,
        }
    })
}

/// Issue 13, case 1: party A uploads and is killed while it waits; party B then starts the same
/// job. The servers drop A's upload when A disconnects (at once if A closed its connections,
/// when B arrives if A vanished without a word), so B is not matched against it: B is told the
/// servers wait for party-a.
#[test]
fn an_upload_leaves_with_its_party_and_is_never_matched_stale() {
    // A long idle timeout: a silent party must be found out by the start check, not by it.
    let limits = Limits {
        idle_timeout_secs: 30,
        ..quick()
    };
    let c = Cluster::new("stale", 2, limits);
    let (params, a, b) = small();
    let spec = c.spec("job-stale", params);
    let heard = run_until_heard(&c, &spec, 0, &a, "waiting for party-b");
    assert_heard(&heard, "server-0: holding this party's upload");
    // Party A is gone (its connections closed when it was dropped): every server lets go of the
    // job, which never started.
    until(&c, "the abandoned upload is dropped", |r| r.jobs.is_empty());
    let r = status(&c.nodes[1]);
    assert_eq!(
        r.remembered, 0,
        "a job that never started may be submitted again"
    );
    let metrics = rt()
        .block_on(ppea::net::admin::get(c.nodes[1].admin, "/metrics"))
        .unwrap();
    assert!(
        metrics.contains("ppea_jobs_total{server=\"server-0\",outcome=\"dropped\"} 1"),
        "{metrics}"
    );
    // Party B alone: the servers hold only B's upload and wait for party-a.
    let heard = run_until_heard(&c, &spec, 1, &b, "waiting for party-a");
    assert!(heard.iter().all(|m| !m.contains("computing")), "{heard:?}");
    until(&c, "B's upload is dropped too", |r| r.jobs.is_empty());
    // Party A again, now killed without a word (its runtime vanishes, as with kill -9): its
    // connections look alive for the 30 s idle timeout. B comes at once; the servers find A
    // silent when the job would start, drop its upload and tell B they wait for party-a.
    let own = ppea::mpc::local::runtime().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (ia, spec_a, data_a) = (c.identity("party-a"), spec.clone(), a.clone());
    let slow = Timing {
        liveness: Liveness::from_secs(1, 30).unwrap(),
        ..Timing::from(T)
    };
    own.spawn(async move {
        let note = move |m: &str| {
            let _ = tx.send(m.to_string());
        };
        let _ = run_party(&spec_a, 0, &ia, &data_a, slow, note).await;
    });
    rt().block_on(async {
        let mut n = 0;
        while let Some(m) = rx.recv().await {
            n += usize::from(m.contains("waiting for party-b"));
            if n == spec.servers.len() {
                break;
            }
        }
    });
    own.shutdown_background();
    let heard = run_until_heard(&c, &spec, 1, &b, "waiting for party-a");
    assert_heard(&heard, "checking that party-a, party-b still answer");
    assert!(heard.iter().all(|m| !m.contains("computing")), "{heard:?}");
    until(&c, "B's upload is dropped again", |r| r.jobs.is_empty());
    // Both parties together still run the job id.
    let (ra, rb) = c.run(&spec, &a, &b);
    assert!(ra.is_ok() && rb.is_ok(), "{:?} {:?}", ra.err(), rb.err());
}

/// A server that cannot create its spill file refuses the upload before the job starts; the
/// party hears which setting to ask about, the server's log where it tried.
#[test]
fn an_upload_that_cannot_be_spilled_is_refused_naming_the_setting() {
    let limits = Limits {
        spill_above_mib: 0,
        spill_dir: "/nonexistent/ppea-spill".into(),
        ..quick()
    };
    let c = Cluster::new("nospill", 2, limits);
    let (params, a, b) = small();
    let spec = c.spec("job-nospill", params);
    let (ra, _rb) = c.run(&spec, &a, &b);
    let e = expect_err(ra);
    assert!(
        e.contains("cannot store the upload") && e.contains("limits.spill_dir"),
        "{e}"
    );
    assert!(
        !e.contains("/nonexistent"),
        "the server's paths stay in its log: {e}"
    );
}

/// A share larger than the spill limit is refused before anything of it is read.
#[test]
fn a_share_beyond_the_spill_limit_is_refused() {
    let limits = Limits {
        spill_above_mib: 0,
        spill_max_gib: 0,
        ..quick()
    };
    let c = Cluster::new("spillmax", 2, limits);
    let (params, a, b) = small();
    let spec = c.spec("job-spillmax", params);
    let (ra, _rb) = c.run(&spec, &a, &b);
    let e = expect_err(ra);
    assert!(e.contains("limits.spill_max_gib"), "{e}");
}

/// Issue 13, case 1 (replay): a job id that ran cannot run again on the servers.
#[test]
fn a_job_id_that_ran_is_refused() {
    let c = Cluster::new("replay", 2, quick());
    let (params, a, b) = small();
    let spec = c.spec("job-replay", params);
    let (ra, rb) = c.run(&spec, &a, &b);
    assert!(ra.is_ok() && rb.is_ok(), "{:?} {:?}", ra.err(), rb.err());
    let (ra, rb) = c.run(&spec, &a, &b);
    for e in [expect_err(ra), expect_err(rb)] {
        assert!(
            e.contains("job \"job-replay\" already ran on this server")
                && e.contains("use a new job id"),
            "{e}"
        );
    }
    assert!(c.nodes[1..].iter().all(|n| status(n).remembered == 1));
    // The dealer remembers it too.
    assert_eq!(status(&c.nodes[0]).remembered, 1);
}

/// Issue 13, case 3: two parties with different job ids are each told what the servers wait
/// for, and after the wait limit why the job gave up and what to check.
#[test]
fn mismatched_job_ids_say_what_they_wait_for() {
    let c = Cluster::new(
        "mismatch",
        2,
        Limits {
            wait_secs: 2,
            ..quick()
        },
    );
    let (params, a, b) = small();
    let (sx, sy) = (c.spec("job-x", params.clone()), c.spec("job-y", params));
    let (ia, ib) = (c.identity("party-a"), c.identity("party-b"));
    let heard = std::sync::Mutex::new(Vec::<String>::new());
    let note = |m: &str| heard.lock().unwrap().push(m.to_string());
    let (ra, rb) = rt().block_on(async {
        tokio::join!(
            run_party(&sx, 0, &ia, &a, quick_timing(), note),
            run_party(&sy, 1, &ib, &b, quick_timing(), note)
        )
    });
    let heard = heard.into_inner().unwrap();
    for (e, side, other, job) in [
        (expect_err(ra), 0, "party-b", "job-x"),
        (expect_err(rb), 1, "party-a", "job-y"),
    ] {
        assert!(
            e.contains(&format!(
                "timed out after 2 s (wait_secs) waiting for {other} to upload job \"{job}\""
            )) && e.contains("check that"),
            "side {side}: {e}"
        );
        let told = format!(
            "holding this party's upload of job \"{job}\", waiting for {other} to upload the same job id"
        );
        assert_heard(&heard, &told);
    }
}

/// Issue 13, case 2: a compute server that dies without a word (as `kill -9` does) is noticed
/// within the configured idle timeout, and the parties are told it stopped answering (not that
/// it refused their certificate).
#[test]
fn a_silently_killed_server_is_reported_within_the_idle_timeout() {
    let mut c = Cluster::new("silent", 2, quick());
    // server-1 on its own runtime, so that it can vanish without closing its connections.
    let own = ppea::mpc::local::runtime().unwrap();
    c.nodes[2].kill();
    c.nodes[2] = start_on(&own, &c.dir.0, "server-1", Role::Compute, 2, quick());
    let spec = c.spec("job-silent", eval_params());
    let (a, b) = prepare(EvalProtocol::Open, &spec.params);
    let (ia, ib) = (c.identity("party-a"), c.identity("party-b"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut own = Some(own);
    let (ra, rb) = rt().block_on(async {
        let parties = async {
            tokio::join!(
                run_party(&spec, 0, &ia, &a, quick_timing(), |m| {
                    let _ = tx.send(m.to_string());
                }),
                run_party(&spec, 1, &ib, &b, quick_timing(), |_| {})
            )
        };
        let killer = async {
            while let Some(m) = rx.recv().await {
                if m.starts_with("server-1: computing")
                    && let Some(rt) = own.take()
                {
                    rt.shutdown_background();
                }
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            r = parties => r,
            _ = killer => unreachable!("the killer listens until the parties end"),
        }
    });
    assert!(own.is_none(), "server-1 was killed while computing");
    for e in [expect_err(ra), expect_err(rb)] {
        assert!(
            e.contains("server-1") && e.contains("stopped answering") && e.contains("2 s"),
            "{e}"
        );
        assert!(!e.contains("refused"), "{e}");
    }
    // server-0 lives on, lets go of the failed job and remembers its id.
    for _ in 0..600 {
        let r = status(&c.nodes[1]);
        if r.jobs.is_empty() {
            assert_eq!(r.remembered, 1);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server-0 still holds the failed job");
}

/// Explanations and the audit travel over QUIC like the other results: each party's rows carry
/// their block contributions, and both parties receive the same audit aggregates (exact here:
/// noise off), whose entity counts cover every uploaded row.
#[test]
fn explanations_and_the_audit_reach_both_parties() {
    let c = Cluster::new("accountability", 2, Limits::default());
    let mut p = JobParams {
        explain: true,
        ..JobParams::default()
    };
    p.audit.enabled = true;
    p.audit.labelled = true;
    p.audit.noise = false;
    let spec = c.spec("job-explain-audit", p.clone());
    let ds = sample();
    let (sa, sb) = scopes(ds, EvalProtocol::Standard, Split::Test);
    let key = BlockingKey::random();
    let mut a = prepare_party(&ds.a, &sa, &p, &key, &mut Prg::fresh()).unwrap();
    let mut b = prepare_party(&ds.b, &sb, &p, &key, &mut Prg::fresh()).unwrap();
    let labels: Vec<(u32, String)> = ds
        .test
        .iter()
        .map(|&(x, y)| (x, ds.b.ids[y as usize].clone()))
        .collect();
    ppea::model::audit::attach(&mut a, &ds.a, &p, &key, &labels).unwrap();
    ppea::model::audit::attach(&mut b, &ds.b, &p, &key, &[]).unwrap();
    let (ra, rb) = c.run(&spec, &a, &b);
    let words =
        |r: Vec<ppea::net::party::ServerResult>| r.into_iter().map(|x| x.words).collect::<Vec<_>>();
    let (wa, wb) = (words(ra.unwrap()), words(rb.unwrap()));
    let res_a = finish_party(&a, &wa, &p).unwrap();
    let matched: Vec<_> = res_a.iter().filter(|r| r.matched).collect();
    assert!(matched.len() > 250);
    let mut named = 0;
    for r in &matched {
        let e = r.explanation.as_ref().unwrap();
        assert!((e.iter().sum::<f64>() - r.score).abs() < 1e-9);
        named += (e[0] > 0.0) as usize;
    }
    // Names drive most of the sample's matches.
    assert!(
        named * 10 > matched.len() * 9,
        "{named} of {}",
        matched.len()
    );
    let ta = ppea::model::align::audit_totals(&a, &wa, &p).unwrap();
    let tb = ppea::model::align::audit_totals(&b, &wb, &p).unwrap();
    assert_eq!(ta, tb, "both parties receive the same aggregates");
    let [side_a, side_b] = ppea::model::audit::finish(&ta, &p, [Some(&a.groups), None]).unwrap();
    let count = |r: &ppea::model::audit::AuditReport| -> i64 {
        r.groups.iter().filter_map(|g| g.entities).sum()
    };
    // Every group of the sample but the smallest (10 rows) is reported.
    assert_eq!(count(&side_a), a.rows.len() as i64 - 10);
    assert!(
        side_a
            .groups
            .iter()
            .all(|g| g.suppressed || g.precision.is_some())
    );
    // Party B gave no labels: no precision for its side.
    assert!(side_b.groups.iter().all(|g| g.precision.is_none()));
    assert!(count(&side_b) > 250);
}

/// A dealer-free deployment: servers that trust no dealer, no dealer running, and a job with
/// `correlation = "ot"` (2 servers) or `"replicated"` (3 servers) over QUIC takes the same
/// decisions as the same job with a dealer (and the plaintext reference's). The servers refuse,
/// naming why, a job that names a dealer they do not trust; the parties' job checks refuse a
/// dealer named beside `ot`, none without it, and `replicated` without exactly 3 servers.
#[test]
fn a_dealer_free_deployment_takes_the_dealer_deployments_decisions() {
    use ppea::mpc::source::Correlation;
    let mut p = eval_params();
    p.model.dim = 16;
    p.model.attention_dim = 4;
    p.blocking.candidates = 8;
    let ds = sample();
    let key = BlockingKey::random();
    let (sa, sb) = scopes(ds, EvalProtocol::Standard, Split::Test);
    let a = prepare_party(&ds.a, &sa[..40], &p, &key, &mut Prg::fresh()).unwrap();
    let b = prepare_party(&ds.b, &sb[..40], &p, &key, &mut Prg::fresh()).unwrap();
    let run = |c: &Cluster, spec: &JobSpec| {
        let (ra, rb) = c.run(spec, &a, &b);
        let words = |r: Vec<ppea::net::party::ServerResult>| {
            r.into_iter().map(|x| x.words).collect::<Vec<_>>()
        };
        let ra = finish_party(&a, &words(ra.expect("party A succeeds")), &spec.params).unwrap();
        let rb = finish_party(&b, &words(rb.expect("party B succeeds")), &spec.params).unwrap();
        (ra, rb)
    };
    let with_dealer = Cluster::new("ot-vs-dealer", 2, Limits::default());
    // The same job id on both clusters: candidate lists depend on it.
    let (da, db) = run(&with_dealer, &with_dealer.spec("job", p.clone()));
    let free = Cluster::dealer_free("ot", 2);
    let ot_params = JobParams {
        correlation: Correlation::Ot,
        ..p.clone()
    };
    let spec = free.spec("job", ot_params.clone());
    assert!(spec.dealer.is_none());
    let (oa, ob) = run(&free, &spec);
    let decisions = |r: &[ppea::model::align::ResultRow]| {
        r.iter()
            .map(|x| (x.entity, x.best.map(|b| b.0), x.matched))
            .collect::<Vec<_>>()
    };
    assert_eq!(decisions(&oa), decisions(&da));
    assert_eq!(decisions(&ob), decisions(&db));
    assert!(oa.iter().filter(|r| r.matched).count() >= 10);
    let cand = candidates(&a.tokens, &b.tokens, &p.blocking, &job_seed("job"));
    let r = judge(ds, &ds.test, &a, &b, &oa, &ob, &cand, &ot_params);
    assert_eq!(r.plaintext_agreement, 1.0);
    // Three servers holding replicated seeds: the same decisions (they do not depend on k).
    let three = Cluster::dealer_free("replicated", 3);
    let rep_params = JobParams {
        correlation: Correlation::Replicated,
        ..p.clone()
    };
    let (pa, pb) = run(&three, &three.spec("job", rep_params.clone()));
    assert_eq!(decisions(&pa), decisions(&da));
    assert_eq!(decisions(&pb), decisions(&db));
    let mut two = free.spec("two", rep_params);
    let e = two.validate().unwrap_err().to_string();
    assert!(
        e.contains("exactly 3 servers") && e.contains("lists 2"),
        "{e}"
    );
    two.dealer = Some(with_dealer.nodes[0].node.clone());
    let e = two.validate().unwrap_err().to_string();
    assert!(e.contains("correlation = \"replicated\""), "{e}");
    // A job naming a dealer, sent to servers that trust none, is refused with the reason.
    let mut named = free.spec("dealer-on-free", p.clone());
    named.dealer = Some(with_dealer.nodes[0].node.clone());
    let (ra, _) = free.run(&named, &a, &b);
    let e = expect_err(ra);
    assert!(e.contains("trusts no dealer"), "{e}");
    // The job checks: `ot` with a dealer, or the dealer mode without one.
    let mut both = with_dealer.spec("both", ot_params);
    let e = both.validate().unwrap_err().to_string();
    assert!(e.contains("remove the [dealer] table"), "{e}");
    both.params.correlation = Correlation::Dealer;
    both.dealer = None;
    let e = both.validate().unwrap_err().to_string();
    assert!(e.contains("names no [dealer]"), "{e}");
}

/// A node of another protocol version (another ALPN) is refused in the TLS handshake, and the
/// one that dialled is told it is a version mismatch, not a certificate or reachability problem.
#[test]
fn a_node_of_another_protocol_version_is_told_so() {
    let c = Cluster::new("version", 2, Limits::default());
    let server = &c.nodes[1].node;
    let old = c.identity("party-a");
    let dial = |cfg: quinn::ClientConfig| {
        rt().block_on(async {
            let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            ep.set_default_client_config(cfg);
            let peer = ppea::error::PeerName::Server(0);
            ppea::net::dial::open(&ep, server, peer, 1 << 20, Duration::from_secs(5))
                .await
                .map(|_| ())
        })
    };
    let e = expect_err(dial(old.client_config_speaking(b"ppea/2").unwrap()));
    assert!(
        e.contains("protocol version") && e.contains("ppea/3"),
        "{e}"
    );
    // The same identity speaking this version connects.
    dial(old.client_config().unwrap()).expect("same version connects");
}
