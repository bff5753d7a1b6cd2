//! The deployment over real QUIC with mutual TLS on loopback: jobs with 2 and 3 servers take the
//! plaintext reference's decisions, foreign or unlisted certificates are refused, a server killed
//! mid-job fails the job cleanly without taking the others down, concurrent jobs stay apart, and
//! every kind of bad input ends the job with a message that says what happened.

mod common;
use common::TempDir;

use ppea::eval::evaluate::{EvalProtocol, Split, judge, scopes};
use ppea::model::align::{JobParams, PartyData, finish_party, job_seed, prepare_party};
use ppea::model::blocking::{BlockingKey, candidates};
use ppea::model::import::{Dataset, Format, load};
use ppea::mpc::prg::Prg;
use ppea::net::config::{Limits, Peers, Role, ServerConfig};
use ppea::net::daemon::Daemon;
use ppea::net::job::{JobSpec, Node, OutputMode};
use ppea::net::party::{run_party, upload_to};
use ppea::net::tls::{Identity, TlsFiles, write_dev_pki};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::oneshot;

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| ppea::mpc::local::runtime().unwrap())
}

fn sample() -> &'static Dataset {
    static DS: OnceLock<Dataset> = OnceLock::new();
    DS.get_or_init(|| {
        load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample"),
            Format::Native,
        )
        .unwrap()
    })
}

const NAMES: &[&str] = &[
    "dealer", "server-0", "server-1", "server-2", "server-3", "party-a", "party-b", "party-c",
];

fn files(dir: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    }
}

/// A running daemon.
struct Running {
    node: Node,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    fn kill(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Dealer and `k` servers, configured to trust party-a and party-b (not party-c).
struct Cluster {
    dir: TempDir,
    nodes: Vec<Running>,
}

fn start(dir: &Path, name: &str, role: Role, k: usize, limits: Limits) -> Running {
    let cfg = ServerConfig {
        name: name.to_string(),
        listen: "127.0.0.1:0".into(),
        role,
        tls: files(dir, name),
        peers: Peers {
            parties: vec!["party-a".into(), "party-b".into()],
            servers: (0..k).map(|i| format!("server-{i}")).collect(),
            dealer: "dealer".into(),
        },
        limits,
    };
    let _guard = rt().enter();
    let daemon = Daemon::start(cfg).unwrap();
    let addr: SocketAddr = daemon.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let done = rt().spawn(daemon.serve(async move {
        let _ = rx.await;
    }));
    Running {
        node: Node {
            name: name.into(),
            addr: addr.to_string(),
        },
        stop: Some(tx),
        done,
    }
}

impl Cluster {
    fn new(tag: &str, k: usize, limits: Limits) -> Cluster {
        let dir = TempDir::new(&format!("deploy-{tag}"));
        write_dev_pki(
            &dir.0,
            &NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let mut nodes = vec![start(&dir.0, "dealer", Role::Dealer, k, limits.clone())];
        for i in 0..k {
            nodes.push(start(
                &dir.0,
                &format!("server-{i}"),
                Role::Compute,
                k,
                limits.clone(),
            ));
        }
        Cluster { dir, nodes }
    }

    fn spec(&self, job: &str, params: JobParams) -> JobSpec {
        JobSpec {
            job: job.into(),
            parties: ["party-a".into(), "party-b".into()],
            servers: self.nodes[1..].iter().map(|n| n.node.clone()).collect(),
            dealer: self.nodes[0].node.clone(),
            params,
            output: OutputMode::Matches,
        }
    }

    fn identity(&self, name: &str) -> Identity {
        Identity::load(name, &files(&self.dir.0, name)).unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }
}

fn eval_params() -> JobParams {
    JobParams {
        reveal_best: true,
        ..JobParams::default()
    }
}

fn prepare(protocol: EvalProtocol, p: &JobParams) -> (PartyData, PartyData) {
    let ds = sample();
    let (sa, sb) = scopes(ds, protocol, Split::Test);
    let key = BlockingKey::random();
    let a = prepare_party(&ds.a, &sa, p, &key, &mut Prg::fresh()).unwrap();
    let b = prepare_party(&ds.b, &sb, p, &key, &mut Prg::fresh()).unwrap();
    (a, b)
}

const T: Duration = Duration::from_secs(10);

/// Runs both parties of `spec` and judges the results against the gold links and the reference.
fn run_and_judge(
    c: &Cluster,
    spec: &JobSpec,
    a: &PartyData,
    b: &PartyData,
) -> ppea::eval::evaluate::EvalReport {
    let (ia, ib) = (c.identity("party-a"), c.identity("party-b"));
    let (ra, rb) = rt().block_on(async {
        tokio::join!(
            run_party(spec, 0, &ia, a, T, |_| {}),
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
            .all(|r| r.stats.rounds == 136 && r.stats.bytes_sent > 0)
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
    let quiet = |_: &str| {};
    let results = rt().block_on(async {
        tokio::join!(
            upload_to(&ea, &spec, 0, 0, &a, &za[0], None, T, &quiet),
            upload_to(&ea, &other, 1, 0, &a, &za[1], None, T, &quiet),
            upload_to(&eb, &spec, 0, 1, &b, &zb[0], None, T, &quiet),
            upload_to(&eb, &other, 1, 1, &b, &zb[1], None, T, &quiet)
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
    let c = Cluster::new("aggregate", 2, Limits::default());
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
