//! Attacks, played by an adversary against honest processes. The rule they check: **a server,
//! the dealer or a party that deviates may make a job fail, but must never learn more than by
//! following the protocol**, and honest processes keep serving. Each test either shows that
//! the job fails cleanly with a message saying what happened, or that the adversary's view is
//! what an honest run would give it.

mod common;
use common::cluster::{Cluster, NAMES, T, files, prepare, prepare_rows, rt, start};
use ppea::net::config::Role;

use ppea::error::PeerName;
use ppea::eval::evaluate::{
    EvalProtocol, inprocess_inputs, servers_inprocess, servers_inprocess_workers,
};
use ppea::model::align::{JobParams, PartyData, align, finish_party, job_seed, reference};
use ppea::model::blocking::{Part, Tokens, candidates};
use ppea::mpc::channel::{Deviation, memory_network};
use ppea::mpc::correlated::{Correlations, Request};
use ppea::mpc::dealer::{Dealer, DealerClient, serve};
use ppea::mpc::local::run_local_workers;
use ppea::mpc::pairs::Pairs;
use ppea::mpc::prg::Prg;
use ppea::mpc::protocol::Session;
use ppea::mpc::share::{ShareMsg, share_compressed};
use ppea::mpc::source::Correlation;
use ppea::net::config::Limits;
use ppea::net::dial::open;
use ppea::net::job::{Ack, DealerHello, Digest, Hello, JobSpec, JobStats, Outcome};
use ppea::net::party::{ZShare, run_party, upload_to};
use ppea::net::tls::{Identity, write_dev_pki};
use ppea::net::upload::ShareHead;
use rustls_pki_types::pem::PemObject;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// A compute server that asks the dealer for other material than the other servers draw.
// ---------------------------------------------------------------------------------------------

/// The attack from the security review: the last server sends the dealer a request of another
/// kind or size than the one the other servers draw their masks for on the same stream. Served,
/// the corrections would reveal the other servers' masks, and with the honest openings both
/// parties' inputs. The dealer must refuse, sending no material, and say which server differs.
#[test]
fn the_dealer_serves_only_requests_every_server_committed_to() {
    let (n, m, d) = (6, 5, 8);
    let honest = Request::Bilinear {
        d,
        pairs: Pairs::dense(n, m),
        blocks: Vec::new(),
        split: false,
    };
    let swaps = [
        // The reported attack: bits as many as the masks' words, one correction each.
        Request::B2a { n: (n + m) * d },
        // Same kind, other pairs.
        Request::Bilinear {
            d,
            pairs: Pairs::dense(n, m - 1),
            blocks: Vec::new(),
            split: false,
        },
        // Same material size, other kind.
        Request::Beaver {
            n: n * d,
            fanout: 1,
        },
    ];
    for k in [2, 3] {
        for swap in &swaps {
            let (attacker_got, dealer) = rt().block_on(swapped_request(k, &honest, swap));
            let e = attacker_got.expect_err("the attacker must get no material");
            assert!(e.to_string().contains("refused"), "k = {k}, {swap:?}: {e}");
            let e = dealer
                .expect_err("the dealer must refuse the job")
                .to_string();
            assert!(
                e.contains("differs") && e.contains("server 0"),
                "k = {k}, {swap:?}: {e}"
            );
        }
        // Control: the same harness with the honest request gets its material.
        let (got, dealer) = rt().block_on(swapped_request(k, &honest, &honest));
        assert_eq!(got.unwrap().len(), honest.correction_words());
        assert_eq!(dealer.unwrap().requests, 1);
    }
}

/// A non-last server that commits to another request than the last server sends (to make the
/// dealer serve the last server material it did not draw for): the dealer refuses, naming it,
/// and the last server gets a refusal instead of corrections.
#[test]
fn a_non_last_server_with_another_commitment_is_refused() {
    let req = Request::Bilinear {
        d: 4,
        pairs: Pairs::dense(3, 3),
        blocks: Vec::new(),
        split: false,
    };
    let other = Request::B2a { n: 24 };
    let (got, dealer) = rt().block_on(async {
        let (transports, mut dnet) = memory_network(2);
        let dealer = tokio::spawn(async move { serve(Dealer::new(2)?, &mut dnet).await });
        let mut sessions = Vec::new();
        let mut got = None;
        for t in transports {
            let mut session = Session::new(t);
            let mut client = DealerClient::connect(&mut session).await.unwrap();
            if session.me() == 0 {
                let c = ppea::mpc::dealer::request_commitment(1, &other.encode());
                session.send_dealer(c.to_vec()).await.unwrap();
            } else {
                got = Some(client.fetch(&mut session, &req).await.map(|_| ()));
            }
            sessions.push(session);
        }
        drop(sessions);
        (got.unwrap(), dealer.await.unwrap())
    });
    assert!(matches!(got, Err(ppea::Error::Refused { .. })), "{got:?}");
    let e = dealer.unwrap_err().to_string();
    assert!(e.contains("server 0") && e.contains("differs"), "{e}");
}

/// Servers `0..k-1` fetch `honest` as the protocol says; the last server sends `swap` and reads
/// the answer. Returns what the last server received and the dealer's result.
async fn swapped_request(
    k: usize,
    honest: &Request,
    swap: &Request,
) -> (
    ppea::Result<Vec<u64>>,
    ppea::Result<ppea::mpc::dealer::DealerStats>,
) {
    let (transports, mut dnet) = memory_network(k);
    let dealer = tokio::spawn(async move { serve(Dealer::new(k)?, &mut dnet).await });
    let mut sessions = Vec::new();
    let mut got = None;
    for t in transports {
        let mut session = Session::new(t);
        let mut client = DealerClient::connect(&mut session).await.unwrap();
        if session.me() + 1 < k {
            client.fetch(&mut session, honest).await.unwrap();
        } else {
            session.send_dealer(swap.encode()).await.unwrap();
            got = Some(session.recv_dealer(swap.correction_words()).await);
        }
        sessions.push(session);
    }
    // Every server is done with the dealer: closing the links ends its session.
    drop(sessions);
    let dealer = dealer.await.unwrap();
    (got.unwrap(), dealer)
}

// ---------------------------------------------------------------------------------------------
// A compute server that lies to the dealer about who it is or what the job is.
// ---------------------------------------------------------------------------------------------

/// What a server sends the dealer for `job` of a 2-server cluster.
fn dealer_hello(job: &str, server: u32, digest: [u8; 32]) -> DealerHello {
    DealerHello {
        job: job.into(),
        server,
        servers: vec!["server-0".into(), "server-1".into()],
        digest: Digest(digest),
        max_material_words: 1 << 20,
    }
}

/// Links to the dealer with `as_identity`'s certificate and sends `hello`; the dealer's answer.
fn link_to_dealer(c: &Cluster, as_identity: &str, hello: &DealerHello) -> Ack {
    let id = c.identity(as_identity);
    let dealer = c.nodes[0].node.clone();
    rt().block_on(async {
        let ep = id.client_endpoint().unwrap();
        let (_conn, mut s, mut r) = open(&ep, &dealer, PeerName::Dealer, 1 << 20, T)
            .await
            .unwrap();
        s.control(&Hello::Dealer(hello.clone())).await.unwrap();
        let ack = r.control::<Ack>().await.unwrap();
        ep.close(0u32.into(), b"done");
        ack
    })
}

fn refused(ack: Ack) -> String {
    match ack {
        Ack::Refused(why) => why,
        Ack::Ok => panic!("the dealer accepted a forged link"),
    }
}

/// A server that claims another server's index would receive that server's seed, hence its
/// masks. The dealer binds every index to the certificate named at it, accepts each index
/// once, and serves only servers it is configured to trust; honest jobs still run afterwards.
#[test]
fn the_dealer_binds_each_index_to_its_certificate() {
    let c = Cluster::new("attack-index", 2, Limits::default());
    // server-1 claims index 0.
    let why = refused(link_to_dealer(
        &c,
        "server-1",
        &dealer_hello("forged-index", 0, [1; 32]),
    ));
    assert!(why.contains("cannot link as server 0"), "{why}");
    // server-1 names a server list in which it stands at index 0.
    let mut h = dealer_hello("forged-list", 0, [1; 32]);
    h.servers = vec!["server-1".into(), "server-0".into()];
    assert_eq!(link_to_dealer(&c, "server-1", &h), Ack::Ok);
    // ... but the real server-0 then describes the job differently: refused.
    let mut h0 = dealer_hello("forged-list", 0, [1; 32]);
    h0.servers = vec!["server-0".into(), "server-1".into()];
    let why = refused(link_to_dealer(&c, "server-0", &h0));
    assert!(why.contains("disagree"), "{why}");
    // A list naming a server the dealer does not trust.
    let mut h = dealer_hello("untrusted", 1, [1; 32]);
    h.servers = vec!["server-0".into(), "party-c".into()];
    let why = refused(link_to_dealer(&c, "server-0", &h));
    assert!(why.contains("does not trust"), "{why}");
    // The same index twice.
    assert_eq!(
        link_to_dealer(&c, "server-1", &dealer_hello("twice", 1, [2; 32])),
        Ack::Ok
    );
    let why = refused(link_to_dealer(
        &c,
        "server-1",
        &dealer_hello("twice", 1, [2; 32]),
    ));
    assert!(why.contains("already linked"), "{why}");
    c.still_serves("after-forged-indices");
}

/// A server the dealer trusts that is not one of a job's servers cannot fail that job by
/// linking to the dealer first, with a server list of its own (in which it stands at the index
/// it claims): its link forms a group of its own, and the job's servers, which describe the job
/// alike, are served. Before, the first link's description was the one every other link had to
/// match, and the job failed (a review's finding).
#[test]
fn a_server_outside_the_job_cannot_fail_it_at_the_dealer() {
    let c = Cluster::new("attack-dealer-outsider", 3, Limits::default());
    // Its own list, or one naming both of the job's servers too (it stands at index 2).
    for (job, list, at) in [
        ("outsider-own", vec!["server-2", "server-1"], 0),
        ("outsider-all", vec!["server-0", "server-1", "server-2"], 2),
    ] {
        let mut spec = c.spec(job, JobParams::default());
        spec.servers.truncate(2);
        let mut forged = dealer_hello(job, at, [9; 32]);
        forged.servers = list.into_iter().map(String::from).collect();
        assert_eq!(link_to_dealer(&c, "server-2", &forged), Ack::Ok, "{job}");
        let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
        let (ra, rb) = c.run(&spec, &a, &b);
        let words = |r: Vec<ppea::net::party::ServerResult>| {
            r.into_iter().map(|x| x.words).collect::<Vec<_>>()
        };
        let rows = finish_party(&a, &words(ra.expect(job)), &spec.params).unwrap();
        assert!(rows.iter().filter(|r| r.matched).count() > 100, "{job}");
        finish_party(&b, &words(rb.expect(job)), &spec.params).unwrap();
    }
}

/// A link creates its job on first contact, so its id is checked first, as an upload's: a
/// server naming a job id beyond 128 bytes (before: up to 16 MiB, kept for
/// `remember_jobs_secs` and written whole into the logs; a greeting is now at most 1 MiB), or
/// one with control characters, is refused before any job is created.
#[test]
fn a_link_naming_a_malformed_job_id_is_refused() {
    let c = Cluster::new("attack-link-id", 2, Limits::default());
    for (job, want) in [
        ("x".repeat(129), "1 to 128 bytes"),
        ("a\u{1b}[2Jb".to_string(), "control characters"),
        ("a#worker-x".to_string(), "bad worker suffix"),
    ] {
        let why = refused(link_to_dealer(
            &c,
            "server-0",
            &dealer_hello(&job, 0, [1; 32]),
        ));
        assert!(why.contains(want), "{why}");
    }
    // A worker group's id is a dealer job id.
    assert_eq!(
        link_to_dealer(&c, "server-0", &dealer_hello("ok#worker-1", 0, [1; 32])),
        Ack::Ok
    );
    c.still_serves("after-link-ids");
}

/// Two servers that describe the job differently (digest or size bound) are refused by the
/// dealer before any seed is sent.
#[test]
fn the_dealer_refuses_servers_that_disagree_on_the_job() {
    let c = Cluster::new("attack-disagree", 2, Limits::default());
    assert_eq!(
        link_to_dealer(&c, "server-0", &dealer_hello("digest", 0, [3; 32])),
        Ack::Ok
    );
    let why = refused(link_to_dealer(
        &c,
        "server-1",
        &dealer_hello("digest", 1, [4; 32]),
    ));
    assert!(why.contains("disagree"), "{why}");
    assert_eq!(
        link_to_dealer(&c, "server-0", &dealer_hello("sizes", 0, [3; 32])),
        Ack::Ok
    );
    let mut h = dealer_hello("sizes", 1, [3; 32]);
    h.max_material_words = 1 << 40;
    let why = refused(link_to_dealer(&c, "server-1", &h));
    assert!(why.contains("sizes"), "{why}");
    c.still_serves("after-disagreement");
}

// ---------------------------------------------------------------------------------------------
// Job descriptions: agreement by SHA-256 over a canonical encoding.
// ---------------------------------------------------------------------------------------------

/// The digest parties and servers compare is SHA-256 of the description's bincode encoding
/// (with the per-party opt-in cleared), and changing any agreed field changes it.
#[test]
fn job_digests_are_sha256_and_cover_every_field() {
    let c = Cluster::new("attack-digest", 2, Limits::default());
    let base = c.spec("digest-job", JobParams::default());
    let d = base.digest().unwrap();
    let bytes = bincode::serde::encode_to_vec(&base, bincode::config::standard()).unwrap();
    assert_eq!(
        d.0,
        ppea::mpc::digest::sha256("ppea job description v22", &[&bytes])
    );
    let mut variants: Vec<JobSpec> = Vec::new();
    let mut v = base.clone();
    v.job.push('x');
    variants.push(v);
    let mut v = base.clone();
    v.parties.swap(0, 1);
    variants.push(v);
    let mut v = base.clone();
    v.servers.swap(0, 1);
    variants.push(v);
    let mut v = base.clone();
    v.dealer.as_mut().expect("a dealer").addr = "127.0.0.1:1".into();
    variants.push(v);
    // Servers as workers: their addresses are part of the job.
    let mut v = base.clone();
    for s in &mut v.servers {
        s.workers.push("127.0.0.1:2".into());
    }
    variants.push(v);
    let mut v = base.clone();
    v.params.min_score += 1e-9;
    variants.push(v);
    // The correlation source (no dealer in a dealer-free job).
    let mut v = base.clone();
    v.params.correlation = ppea::mpc::source::Correlation::Ot;
    v.dealer = None;
    variants.push(v);
    let mut v = base.clone();
    v.params.model.dim += 1;
    variants.push(v);
    let mut v = base.clone();
    v.params.blocking.candidates -= 1;
    variants.push(v);
    let mut v = base.clone();
    v.params.reveal_best = true;
    variants.push(v);
    let mut v = base.clone();
    v.params.explain = true;
    variants.push(v);
    let mut v = base.clone();
    v.params.csls_iterations = 2;
    variants.push(v);
    let mut v = base.clone();
    v.params.blocking.max_postings -= 1;
    variants.push(v);
    let mut v = base.clone();
    v.params.blocking.pair_tokens = 6;
    variants.push(v);
    let mut v = base.clone();
    v.params.audit.enabled = true;
    variants.push(v);
    let mut v = base.clone();
    v.params.audit.epsilon = 0.5;
    variants.push(v);
    let mut v = base.clone();
    v.output = ppea::net::job::OutputMode::Aggregate;
    variants.push(v);
    for v in &variants {
        assert_ne!(v.digest().unwrap(), d, "{v:?}");
    }
    // The party's own opt-in is not part of the agreement.
    let mut v = base.clone();
    v.params.share_partner_ids = true;
    assert_eq!(v.digest().unwrap(), d);
}

/// Parties whose descriptions differ in one parameter: both jobs fail with a message saying so,
/// and the servers keep serving.
#[test]
fn a_changed_job_description_fails_the_job_for_both_parties() {
    let c = Cluster::new("attack-changed", 2, Limits::default());
    let spec = c.spec("changed", JobParams::default());
    let mut other = spec.clone();
    other.params.min_score = 0.9;
    let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
    let (ia, ib) = (c.identity("party-a"), c.identity("party-b"));
    let (ra, rb) = rt().block_on(async {
        tokio::join!(
            run_party(&spec, 0, &ia, &a, T, |_| {}),
            run_party(&other, 1, &ib, &b, T, |_| {})
        )
    });
    for r in [ra, rb] {
        let e = r.expect_err("the job must fail").to_string();
        assert!(e.contains("descriptions differ"), "{e}");
    }
    c.still_serves("after-changed");
}

/// Parties whose known-links files differ by a line, or whose blocking keys differ: both jobs
/// fail saying so (the servers compare tags keyed under the blocking key), where they ran
/// silently before (every anchor after the missing line paired with the wrong one; no
/// candidates at all); with the same key and count the job runs.
#[test]
fn parties_disagreeing_on_the_key_or_the_known_links_fail_the_job() {
    use ppea::model::blocking::BlockingKey;
    let c = Cluster::new("attack-agreement", 2, Limits::default());
    let key = BlockingKey::random().for_job("agreement");
    let other_key = BlockingKey::random().for_job("agreement");
    assert_eq!(key.agreement(4500), key.agreement(4500));
    for (i, (kb, nb)) in [(&key, 4499), (&other_key, 4500), (&key, 4500)]
        .into_iter()
        .enumerate()
    {
        let spec = c.spec(&format!("agreement-{i}"), JobParams::default());
        let (mut a, mut b) = prepare(EvalProtocol::Standard, &spec.params);
        // Prepared under one key without known links, both carry the same tag.
        assert_eq!(a.agreement, b.agreement);
        assert_ne!(a.agreement, [0; 32]);
        a.agreement = key.agreement(4500);
        b.agreement = kb.agreement(nb);
        let (ia, ib) = (c.identity("party-a"), c.identity("party-b"));
        let (ra, rb) = rt().block_on(async {
            tokio::join!(
                run_party(&spec, 0, &ia, &a, T, |_| {}),
                run_party(&spec, 1, &ib, &b, T, |_| {})
            )
        });
        if i == 2 {
            ra.expect("the same key and count: the job runs");
            rb.expect("the same key and count: the job runs");
            continue;
        }
        for r in [ra, rb] {
            let e = r.expect_err("the job must fail").to_string();
            assert!(
                e.contains("different blocking keys or different numbers of known links"),
                "{e}"
            );
        }
    }
    c.still_serves("after-agreement");
}

// ---------------------------------------------------------------------------------------------
// Peers that announce huge lengths.
// ---------------------------------------------------------------------------------------------

/// A raw stream to node `at` of `c` as `identity`, for frames written by hand: the endpoint
/// (to close when done), the connection (held while the stream is used) and the stream.
async fn raw_stream(
    c: &Cluster,
    identity: &str,
    at: usize,
) -> (
    quinn::Endpoint,
    quinn::Connection,
    quinn::SendStream,
    quinn::RecvStream,
) {
    let id = c.identity(identity);
    let node = c.nodes[at].node.clone();
    let ep = id.client_endpoint().unwrap();
    let addr = ppea::net::dial::resolve(&node.addr).await.unwrap();
    let conn = ep.connect(addr, &node.name).unwrap().await.unwrap();
    let (s, r) = conn.open_bi().await.unwrap();
    (ep, conn, s, r)
}

/// Writes a raw frame header: kind `W` and a word count, with no data behind it. A server
/// that already refused what came before may have stopped the stream: the write then fails,
/// and the refusal is what the tests check.
async fn raw_words_header(s: &mut quinn::SendStream, words: u64) {
    let mut head = vec![b'W'];
    head.extend_from_slice(&words.to_le_bytes());
    let _ = s.write_all(&head).await;
}

/// Writes a raw control frame.
async fn raw_control<M: serde::Serialize>(s: &mut quinn::SendStream, msg: &M) {
    let body = bincode::serde::encode_to_vec(msg, bincode::config::standard()).unwrap();
    let mut head = vec![b'C'];
    head.extend_from_slice(&(body.len() as u32).to_le_bytes());
    s.write_all(&head).await.unwrap();
    s.write_all(&body).await.unwrap();
}

/// A party that announces a share of 2^61 words (after a valid header), 5,000 tokens per row,
/// or more tokens than its hello announced (and the server booked), gets a clear refusal
/// without the server allocating them, and the server keeps serving.
#[test]
fn a_server_refuses_huge_announced_uploads_without_allocating() {
    let c = Cluster::new("attack-huge-upload", 2, Limits::default());
    let spec = c.spec("huge-upload", JobParams::default());
    let rows = 10u64;
    let width = spec.params.model.width() as u64;
    for case in ["share", "tokens", "misplaced", "unannounced"] {
        // The last server (server-1) is the only one that takes an explicit share; server-0
        // (which booked no memory for one) refuses it.
        let at = if case == "misplaced" { 1 } else { 2 };
        let spec = spec.clone();
        let answer = rt().block_on(async {
            let (ep, _conn, mut s, r) = raw_stream(&c, "party-a", at).await;
            // "unannounced": 100 tokens per row after announcing 10 in all.
            let per_row = if case == "tokens" { 5000 } else { 100 };
            let hello = Hello::Upload {
                spec: Box::new(spec),
                side: 0,
                rows,
                tokens: if case == "unannounced" {
                    10
                } else {
                    rows * per_row
                },
                agreement: [0; 32],
            };
            raw_control(&mut s, &hello).await;
            if case == "share" || case == "misplaced" {
                raw_control(&mut s, &ShareHead::Explicit(rows * width)).await;
                raw_words_header(&mut s, 1 << 61).await;
            } else {
                raw_control(&mut s, &ShareHead::Seed([9; 32], rows * width)).await;
                raw_words_header(&mut s, rows).await;
                let lens: Vec<u8> = (0..rows).flat_map(|_| per_row.to_le_bytes()).collect();
                // The server may refuse (and stop the stream) before reading them all.
                let _ = s.write_all(&lens).await;
            }
            let (_, mut r) = ppea::net::wire::framed(s, r, PeerName::Server(0), 1 << 20);
            let answer = tokio::time::timeout(Duration::from_secs(10), r.control::<Outcome>())
                .await
                .expect("the server answers at once")
                .unwrap();
            ep.close(0u32.into(), b"done");
            answer
        });
        match answer {
            Outcome::Failed(why) if case == "share" => {
                assert!(why.contains("expected exactly"), "{why}")
            }
            Outcome::Failed(why) if case == "misplaced" => {
                assert!(why.contains("last server only"), "{why}")
            }
            Outcome::Failed(why) if case == "unannounced" => {
                assert!(why.contains("at most 10 remain"), "{why}")
            }
            Outcome::Failed(why) => assert!(why.contains("at most 4096"), "{why}"),
            Outcome::Done { .. } | Outcome::Status(_) => {
                panic!("the server accepted a forged upload")
            }
        }
    }
    c.still_serves("after-huge-upload");
}

/// Writes a raw control frame whose body is `tag` (an enum variant's index) and then a string
/// length of `2^40` bytes, with nothing behind it.
async fn raw_control_announcing_a_huge_string(s: &mut quinn::SendStream, tag: u8) {
    let mut body = vec![tag, 0xFD];
    body.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let mut frame = vec![b'C'];
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    let _ = s.write_all(&frame).await;
}

/// A party whose greeting (ten bytes) announces a job id of 2^40 bytes: the server drops the
/// stream (logging "bad first message: ... does not decode") without allocating it
/// (unbounded, the decoder allocated it whole and the allocation's failure aborted the server
/// process, here the test's), and keeps serving.
#[test]
fn a_server_refuses_a_greeting_announcing_a_huge_string() {
    let c = Cluster::new("attack-huge-string", 2, Limits::default());
    let answer = rt().block_on(async {
        let (ep, _conn, mut s, r) = raw_stream(&c, "party-a", 1).await;
        // `Hello::Upload` (variant 0), whose first field is the job id.
        raw_control_announcing_a_huge_string(&mut s, 0).await;
        let (_, mut r) = ppea::net::wire::framed(s, r, PeerName::Server(0), 1 << 20);
        let answer = tokio::time::timeout(Duration::from_secs(10), r.control::<Outcome>())
            .await
            .expect("the server answers at once");
        ep.close(0u32.into(), b"done");
        answer
    });
    // The server cannot tell who sent it (nor so what answer it expects): it closes the stream.
    let e = answer.expect_err("the server answers nothing").to_string();
    assert!(e.contains("stream finished early"), "{e}");
    c.still_serves("after-huge-string");
}

/// A party that announces a greeting and sends only part of it loses the stream after the
/// greeting's time limit (here 10 s: `wait_secs`, 2 s, raised to the limit's floor), and one
/// that announces a greeting beyond 1 MiB (the 16 MiB of other control messages) loses it at
/// once (its server's limit is the default 30 s, beyond the test's 20 s watchdog): before, such
/// a stream was held forever with up to 16 MiB read for it, 256 of them per connection. The
/// servers keep serving.
#[test]
fn a_greeting_must_arrive_whole_and_small_within_its_time_limit() {
    for (wait_secs, announced) in [(2, 1u32 << 20), (600, (1 << 20) + 1)] {
        let limits = Limits {
            wait_secs,
            ..Limits::default()
        };
        let c = Cluster::new(&format!("attack-greeting-{wait_secs}"), 2, limits);
        let ended = rt().block_on(async {
            let (ep, _conn, mut s, mut r) = raw_stream(&c, "party-a", 1).await;
            let mut frame = vec![b'C'];
            frame.extend_from_slice(&announced.to_le_bytes());
            frame.extend(std::iter::repeat_n(0u8, 1000));
            s.write_all(&frame).await.unwrap();
            // The server drops the stream: the read ends (finished or reset).
            let mut buf = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(20), r.read(&mut buf)).await;
            ep.close(0u32.into(), b"done");
            read.is_ok()
        });
        assert!(
            ended,
            "announced {announced}: the stream was held past 20 s"
        );
        c.still_serves("after-greeting");
    }
}

/// `party judge` reads each side's evaluation dump: a dump comes back as written, and the other
/// side's dump, a truncated one, one announcing a job id of 2^40 bytes (nine bytes: unbounded,
/// the decoder allocated it whole, and the process aborted) and one whose parts disagree are
/// refused, naming the file; no temporary file is left behind.
#[test]
fn a_damaged_or_swapped_eval_dump_is_refused_naming_the_file() {
    use ppea::model::align::ResultRow;
    use ppea::net::party::EvalDump;
    let dir = common::TempDir::new("eval-dump");
    let p = JobParams::default();
    let (a, _) = prepare(EvalProtocol::Standard, &p);
    let results = (a.rows.iter())
        .map(|&entity| ResultRow {
            entity,
            matched: false,
            score: 0.0,
            token: 0,
            best: Some((0, 0.0)),
            partner_id: None,
            explanation: None,
        })
        .collect();
    let dump = EvalDump {
        job: "dump".into(),
        side: 0,
        params: p,
        data: a,
        results,
    };
    dump.write(&dir.0).unwrap();
    let back = EvalDump::read(&dir.0, 0).unwrap();
    assert_eq!(back.results, dump.results);
    assert_eq!(back.data.z, dump.data.z);
    let path = dir.0.join(EvalDump::FILE);
    let refused = |side: u8, want: &str| {
        let e = EvalDump::read(&dir.0, side)
            .expect_err("the dump must be refused")
            .to_string();
        assert!(e.contains(EvalDump::FILE) && e.contains(want), "{e}");
    };
    refused(1, "party A's dump where party B's was expected");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    refused(0, "does not decode");
    let mut huge = vec![0xFD];
    huge.extend_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&path, &huge).unwrap();
    refused(0, "does not decode");
    let mut short = dump.clone();
    short.results.pop();
    short.write(&dir.0).unwrap();
    refused(0, "rows but");
    // A pair: the same job and width, best candidates within the other side's rows.
    let mut b = dump.clone();
    b.side = 1;
    EvalDump::check_pair(&dump, &b).unwrap();
    b.results[0].best = Some((b.data.rows.len() as u32, 0.0));
    let e = EvalDump::check_pair(&b, &dump).unwrap_err().to_string();
    assert!(e.contains("party A's dump names row"), "{e}");
    b.job = "other".into();
    let e = EvalDump::check_pair(&dump, &b).unwrap_err().to_string();
    assert!(e.contains("different jobs"), "{e}");
    let left: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [EvalDump::FILE], "only the dump is left");
}

/// Opens an upload of `rows` rows of side `side` of `spec` on `server` as `party` and returns
/// the endpoint, the server's answer if it answers at once, and the upload's streams (the
/// upload stays open, sending nothing, while they are held).
async fn announce_upload(
    c: &Cluster,
    party: &str,
    server: usize,
    spec: &JobSpec,
    side: u8,
    rows: u64,
) -> (quinn::Endpoint, Option<Outcome>, impl Sized) {
    let (ep, conn, mut s, r) = raw_stream(c, party, server).await;
    let hello = Hello::Upload {
        spec: Box::new(spec.clone()),
        side,
        rows,
        tokens: 0,
        agreement: [0; 32],
    };
    raw_control(&mut s, &hello).await;
    let (s, mut r) = ppea::net::wire::framed(s, r, PeerName::Server(0), 1 << 20);
    // A refusal comes at once; an accepted upload waits for its share (nothing is sent).
    let answer = tokio::time::timeout(Duration::from_secs(3), r.control::<Outcome>())
        .await
        .ok()
        .map(Result::unwrap);
    (ep, answer, (s, r, conn))
}

/// The last server books the disk each spilled share will take against `spill_max_gib`, all
/// held uploads together: parties that announce shares which fit one by one cannot together
/// fill the spill directory, and one party cannot take more than half of it.
#[test]
fn spilled_shares_are_booked_on_the_disk_budget() {
    let limits = Limits {
        spill_above_mib: 0,
        spill_max_gib: 1,
        memory_mib: 1 << 20,
        ..Limits::default()
    };
    let c = Cluster::new("attack-disk", 2, limits);
    let spec = c.spec("disk-1", JobParams::default());
    let width = spec.params.model.width() as u64;
    // Rows whose share takes `mib` MiB on the last server (server-1, node 2).
    let rows = |mib: u64| (mib << 20) / (8 * width);
    let refused = |answer: Option<Outcome>| match answer {
        Some(Outcome::Failed(why)) => {
            assert!(
                why.contains("of disk") && why.contains("limits.spill_max_gib"),
                "{why}"
            );
        }
        _ => panic!("an upload over the disk budget was not refused"),
    };
    rt().block_on(async {
        // More than half of the disk for one party.
        let (ep, answer, _streams) = announce_upload(&c, "party-a", 2, &spec, 0, rows(600)).await;
        refused(answer);
        ep.close(0u32.into(), b"done");
        // Both sides of one job fit (900 MiB of 1 GiB) and stay booked while they wait for
        // their shares; a third share of 200 MiB does not fit beside them.
        let (ea, a, _held_a) = announce_upload(&c, "party-a", 2, &spec, 0, rows(450)).await;
        let (eb, b, _held_b) = announce_upload(&c, "party-b", 2, &spec, 1, rows(450)).await;
        let accepted = |o: &Option<Outcome>| !matches!(o, Some(Outcome::Failed(_)));
        assert!(accepted(&a) && accepted(&b), "{a:?} {b:?}");
        let other = c.spec("disk-2", JobParams::default());
        let (ep, answer, _streams) = announce_upload(&c, "party-b", 2, &other, 1, rows(200)).await;
        refused(answer);
        ep.close(0u32.into(), b"done");
        // Seed servers spill nothing: the same upload to server-0 books no disk.
        let (e0, answer, _held_0) = announce_upload(&c, "party-b", 1, &other, 1, rows(200)).await;
        assert!(accepted(&answer), "{answer:?}");
        for ep in [ea, eb, e0] {
            ep.close(0u32.into(), b"done");
        }
    });
    c.still_serves("after-disk");
}

/// Fake compute servers (holding real server certificates) that announce a result far larger
/// than the party's job can produce, a data frame of 2^61 words, or a failure whose reason is
/// 2^40 bytes long (ten bytes on the wire): the party refuses each with a message naming the
/// server, without allocating.
#[test]
fn a_party_refuses_huge_announced_results_without_allocating() {
    for case in ["shape", "frame", "text"] {
        let (dir, spec) = fake_servers(&format!("attack-huge-result-{case}"), [case, case]);
        let (a, _) = prepare(EvalProtocol::Standard, &spec.params);
        let ia = Identity::load("party-a", &files(&dir.0, "party-a")).unwrap();
        let e = rt()
            .block_on(run_party(&spec, 0, &ia, &a, T, |_| {}))
            .expect_err("the party must refuse the result")
            .to_string();
        let want = match case {
            "shape" => "cannot produce",
            "text" => "does not decode",
            _ => "expected exactly",
        };
        assert!(e.contains(want) && e.contains("server"), "{case}: {e}");
    }
}

/// A server that keeps a party waiting with status messages (they keep the connection busy, so
/// no idle timeout ends it) after the other server delivered: the party gives up after its
/// results grace, naming that server, instead of waiting forever.
#[test]
fn a_party_stops_waiting_for_a_server_that_never_delivers() {
    let (dir, spec) = fake_servers("attack-endless-status", ["done", "status"]);
    let (a, _) = prepare(EvalProtocol::Standard, &spec.params);
    let ia = Identity::load("party-a", &files(&dir.0, "party-a")).unwrap();
    let timing = ppea::net::liveness::Timing {
        results_grace: Duration::from_secs(2),
        ..ppea::net::liveness::Timing::from(T)
    };
    let e = rt()
        .block_on(run_party(&spec, 0, &ia, &a, timing, |_| {}))
        .expect_err("the party must give up")
        .to_string();
    assert!(
        e.contains("server-1 did not deliver results within 2 s after server-0 did"),
        "{e}"
    );
}

/// Two fake compute servers holding real server certificates, server `i` answering as
/// [`fake_server`]'s `cases[i]`, and a job description naming them (the certificates' directory
/// must outlive the job).
fn fake_servers(tag: &str, cases: [&'static str; 2]) -> (common::TempDir, JobSpec) {
    let dir = common::TempDir::new(tag);
    write_dev_pki(
        &dir.0,
        &NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    )
    .unwrap();
    let _guard = rt().enter();
    let mut nodes = Vec::new();
    for (i, case) in cases.into_iter().enumerate() {
        let name = format!("server-{i}");
        let id = Identity::load(&name, &files(&dir.0, &name)).unwrap();
        let ep = id.endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
        nodes.push(ppea::net::job::Node::new(
            name,
            ep.local_addr().unwrap().to_string(),
        ));
        rt().spawn(fake_server(ep, case));
    }
    let spec = JobSpec {
        job: tag.into(),
        parties: ["party-a".into(), "party-b".into()],
        servers: nodes,
        dealer: Some(ppea::net::job::Node::new("dealer", "127.0.0.1:9")),
        params: JobParams::default(),
        output: ppea::net::job::OutputMode::Matches,
    };
    (dir, spec)
}

/// Reads one raw control frame.
async fn read_control<M: serde::de::DeserializeOwned>(r: &mut quinn::RecvStream) -> Option<M> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).await.ok()?;
    let mut body = vec![0u8; u32::from_le_bytes(head[1..].try_into().ok()?) as usize];
    r.read_exact(&mut body).await.ok()?;
    bincode::serde::decode_from_slice(&body, bincode::config::standard())
        .ok()
        .map(|(m, _)| m)
}

/// Accepts one party, reads its greeting and answers with an oversized result: an impossible
/// shape, or the right shape followed by a data frame announcing 2^61 words.
async fn fake_server(ep: quinn::Endpoint, case: &'static str) {
    let Some(inc) = ep.accept().await else { return };
    let Ok(conn) = inc.await else { return };
    let Ok((mut s, mut r)) = conn.accept_bi().await else {
        return;
    };
    let Some(Hello::Upload { rows, spec, .. }) = read_control::<Hello>(&mut r).await else {
        return;
    };
    if case == "status" {
        // Status messages, never an outcome.
        for _ in 0..300 {
            let st = ppea::net::registry::Status {
                job: spec.job.clone(),
                phase: ppea::net::registry::Phase::Computing,
                waiting_for: Vec::new(),
                step: None,
            };
            raw_control(&mut s, &Outcome::Status(st)).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        return;
    }
    if case == "text" {
        // `Outcome::Failed` (variant 1) announcing a reason of 2^40 bytes.
        raw_control_announcing_a_huge_string(&mut s, 1).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        return;
    }
    let (rows, width) = if case == "shape" {
        (1 << 40, 1 << 20)
    } else {
        (rows, spec.params.out_width() as u64)
    };
    let done = Outcome::Done {
        rows,
        width,
        stats: JobStats::default(),
    };
    raw_control(&mut s, &done).await;
    if case == "frame" {
        raw_words_header(&mut s, 1 << 61).await;
    }
    if case == "done" {
        // A well-formed result (zeros).
        let n = rows * width + spec.params.trailer_words() as u64;
        raw_words_header(&mut s, n).await;
        s.write_all(&vec![0u8; 8 * n as usize]).await.unwrap();
    }
    // Hold the connection until the party has given up.
    tokio::time::sleep(Duration::from_secs(30)).await;
    drop(conn);
}

// ---------------------------------------------------------------------------------------------
// A server that equivocates in the candidate gather.
// ---------------------------------------------------------------------------------------------

/// What [`job_with_liars`] returns: every server's outcome, every server's rounds, the run's.
type LiarsJob = (Vec<Result<(), String>>, Vec<u64>, Result<(), String>);

/// Every server's outcome of one in-process job with correlations from `correlation` in which
/// each server `s` of `deviations` rewrites (or only records) what it sends as its function
/// says, every server's rounds (empty if the run failed), and the run's (`Err` when the dealer
/// refused or a server's task failed).
fn job_with_liars(
    correlation: Correlation,
    k: usize,
    a: &PartyData,
    b: &PartyData,
    p: &JobParams,
    deviations: Vec<(usize, Deviation)>,
) -> LiarsJob {
    let (max_words, inputs) = inprocess_inputs(k, [up_to(a, k), up_to(b, k)], [None, None], p);
    let inputs = Arc::new(Mutex::new(inputs.into_iter().map(Some).collect::<Vec<_>>()));
    let outcomes = Arc::new(Mutex::new(vec![Err("did not finish".to_string()); k]));
    let (p, seed) = (Arc::new(p.clone()), Arc::new(job_seed("equivocate")));
    let seen = outcomes.clone();
    let run = rt().block_on(async move {
        let job = run_local_workers(
            k,
            1,
            correlation,
            max_words,
            deviations,
            move |mut eng, _mesh| {
                let (pa, pb) = inputs.lock().unwrap()[eng.me()].take().unwrap();
                let (p, seed, seen) = (p.clone(), seed.clone(), seen.clone());
                async move {
                    let r = align(&mut eng, pa, pb, &p, &seed).await;
                    seen.lock().unwrap()[eng.me()] = r.map(|_| ()).map_err(|e| e.to_string());
                    Ok(((), eng))
                }
            },
        );
        // A server that hangs fails the test rather than stalling the suite.
        tokio::time::timeout(Duration::from_secs(120), job)
            .await
            .expect("every server of the job ended within 120 s")
    });
    let outcomes = outcomes.lock().unwrap().clone();
    let rounds = match &run {
        Ok(runs) => runs[0].stats.iter().map(|st| st.rounds).collect(),
        Err(_) => Vec::new(),
    };
    (outcomes, rounds, run.map(|_| ()).map_err(|e| e.to_string()))
}

/// Where, in the part of the candidate lists server `liar` of `k` sends in the gather (its A
/// rows' lists, then its B rows', two entries per word), two entries of one of its B rows
/// point at pairs A lists too: swapping them changes which pair each B slot stands for but not
/// the pair list the dealer is asked for.
fn mutually_listed_b_entries(
    cand: &ppea::model::blocking::Candidates,
    na: usize,
    liar: usize,
    k: usize,
) -> (usize, usize) {
    let c = cand.per_row;
    let la = Part {
        part: liar,
        parts: k,
    }
    .len(na);
    let listed =
        |a: u32, b: usize| cand.a[a as usize * c..(a as usize + 1) * c].contains(&(b as u32));
    for (t, b) in (liar..cand.b.len() / c).step_by(k).enumerate() {
        let row = &cand.b[b * c..(b + 1) * c];
        let both: Vec<usize> = (0..c).filter(|&i| listed(row[i], b)).collect();
        if both.len() >= 2 {
            let at = (la + t) * c;
            return (at + both[0], at + both[1]);
        }
    }
    panic!("no B row of server {liar} lists two pairs A lists too");
}

/// Swaps entries `i` and `j` of a payload of `u32` entries packed two per word.
fn swap_packed(payload: &mut [u64], i: usize, j: usize) {
    let get = |p: &[u64], x: usize| (p[x / 2] >> (32 * (x % 2))) as u32;
    let set = |p: &mut [u64], x: usize, v: u32| {
        let shift = 32 * (x % 2);
        p[x / 2] = (p[x / 2] & !(0xffff_ffffu64 << shift)) | (u64::from(v) << shift);
    };
    let (vi, vj) = (get(payload, i), get(payload, j));
    set(payload, i, vj);
    set(payload, j, vi);
}

/// The servers deal candidate generation among themselves and all-gather the parts (the job's
/// first exchange). A server that equivocates there, sending one honest server a forged part of
/// the lists (two entries of one row swapped: in range and distinct, so `assemble` accepts it)
/// and the others the true part, would make the honest servers add shares of different pairs.
/// The servers then compare digests of the lists they assembled (the second exchange), so every
/// server's job fails there, before the dealer is asked for anything. The dealer's commitment
/// check alone would not do: swapping two entries of a B row that point at pairs A lists too
/// leaves the pair list it is asked for unchanged (a review found this). Cases: A rows and such B
/// rows; the liar last or not; k = 2, 3 and 4. The same run without the forgery finishes, so the
/// harness alone does not fail the job.
#[test]
fn a_server_equivocating_in_the_candidate_gather_gets_the_job_refused() {
    let p = JobParams::default();
    let (a, b) = prepare(EvalProtocol::Standard, &p);
    let cand = candidates(&a.tokens, &b.tokens, &p.blocking, &job_seed("equivocate"));
    let na = a.tokens.own.len();
    // (servers, liar, victim, entries swapped in the liar's part; none: the control run)
    let mut cases = vec![
        (2, 1, 0, Some((0, 1))),
        (3, 2, 1, Some((0, 1))),
        (3, 1, 0, Some((0, 1))),
        (4, 1, 3, Some((0, 1))),
        (3, 1, 0, None),
    ];
    for (k, liar, victim) in [(2, 1, 0), (3, 1, 2), (4, 3, 0)] {
        cases.push((
            k,
            liar,
            victim,
            Some(mutually_listed_b_entries(&cand, na, liar, k)),
        ));
    }
    for (k, liar, victim, swap) in cases {
        let deviation: Deviation = Box::new(move |round, to, payload| {
            if let Some((i, j)) = swap
                && round == 0
                && to == victim
            {
                swap_packed(payload, i, j);
            }
        });
        let (outcomes, _, dealer) =
            job_with_liars(Correlation::Dealer, k, &a, &b, &p, vec![(liar, deviation)]);
        let case = format!("k = {k}, server {liar} lies to server {victim}, swapped {swap:?}");
        assert!(dealer.is_ok(), "{case}: {dealer:?}");
        if swap.is_none() {
            assert!(outcomes.iter().all(Result::is_ok), "{case}: {outcomes:?}");
            continue;
        }
        for (s, o) in outcomes.iter().enumerate() {
            let e = o.as_ref().expect_err(&case);
            assert!(
                e.contains("assembled other candidate lists"),
                "{case}, server {s}: {e}"
            );
        }
    }
}

/// A compute server (the last) that garbles what it sends in one round of a job (a word short,
/// a word long, or every word inverted), at rounds spread over the whole job (its first four
/// rounds, the last, and every eighth of it; without a dealer only the middle one of the
/// later rounds), for two servers with a dealer and without one, and three with a dealer and
/// from replicated seeds: no honest server panics or hangs (each job must end within two
/// minutes), whatever the protocol of that round parses (Ristretto points, IKNP columns,
/// silent-OT trees, ring-LWE ciphertexts, seed splits, packed bits, openings). A payload of
/// the wrong length always fails the job on every honest server with an error; inverted words
/// may make results wrong (semi-honest correctness) or fail the job, but never crash a server.
/// Control: the same job without the garbling finishes on every server.
#[test]
fn a_server_garbling_any_round_gets_an_error_never_a_panic() {
    let p = JobParams::default();
    let (a, b) = prepare(EvalProtocol::Standard, &p);
    let cases = [
        (Correlation::Dealer, 2),
        (Correlation::Ot, 2),
        (Correlation::Dealer, 3),
        (Correlation::Replicated, 3),
    ];
    for (correlation, k) in cases {
        let liar = k - 1;
        let none: Deviation = Box::new(|_, _, _| {});
        let (outcomes, rounds, run) =
            job_with_liars(correlation, k, &a, &b, &p, vec![(liar, none)]);
        let rounds = rounds.get(liar).copied().unwrap_or(0);
        assert!(
            run.is_ok() && outcomes.iter().all(Result::is_ok),
            "{correlation:?}, k = {k}: {outcomes:?}"
        );
        assert!(rounds > 16, "{correlation:?}, k = {k}: {rounds} rounds");
        // Without a dealer a job that fails after its setup still takes seconds (the deviating
        // server computes on until its next exchange), so only its middle round is tried.
        let late: Vec<u64> = match correlation {
            Correlation::Ot => vec![rounds / 2],
            _ => (1..8).map(|e| e * rounds / 8).collect(),
        };
        let mut at: Vec<u64> = (0..4).chain(late).chain([rounds - 1]).collect();
        at.sort_unstable();
        at.dedup();
        let mut changed = Vec::new();
        for &round in &at {
            for how in ["short", "long", "inverted"] {
                // The servers whose payload of the round was changed.
                let hit = Arc::new(Mutex::new(vec![false; k]));
                let seen = hit.clone();
                let deviation: Deviation = Box::new(move |r, to, payload| {
                    // Only a payload the deviation changes counts (an empty one stays empty
                    // a word short).
                    if r != round || (how != "long" && payload.is_empty()) {
                        return;
                    }
                    seen.lock().unwrap()[to] = true;
                    match how {
                        "short" => {
                            payload.pop();
                        }
                        "long" => payload.push(0x5a5a),
                        _ => payload.iter_mut().for_each(|w| *w = !*w),
                    }
                });
                let case = format!("{correlation:?}, k = {k}, round {round} of {rounds}, {how}");
                let (outcomes, _, _) =
                    job_with_liars(correlation, k, &a, &b, &p, vec![(liar, deviation)]);
                // In a round in which it sends nothing, a word short changes nothing; a
                // server it sends nothing to may finish (or fail when the others stop).
                let hit = hit.lock().unwrap().clone();
                if !hit.contains(&true) {
                    continue;
                }
                changed.push((round, how));
                if how != "inverted" {
                    for (s, honest) in outcomes[..liar].iter().enumerate() {
                        if hit[s] {
                            let e = honest.as_ref().expect_err(&case);
                            assert!(!e.is_empty() && e != "did not finish", "{case}: {e}");
                        }
                    }
                }
            }
        }
        for how in ["short", "long", "inverted"] {
            let n = changed.iter().filter(|(_, h)| *h == how).count();
            assert!(
                n >= 4,
                "{correlation:?}, k = {k}: only {n} rounds changed {how}"
            );
        }
        // The liar's last round was reached and changed.
        assert!(
            changed.contains(&(rounds - 1, "long")),
            "{correlation:?}, k = {k}: round {} never changed",
            rounds - 1
        );
    }
}

/// What the servers see in a whole alignment job does not depend on the parties' data. Every
/// message of every server is recorded; after the candidate lists' gather and digest exchange
/// (rounds 0 and 1, public by design):
///
/// * every payload, each once, looks uniform in its width (a single server's view: a value
///   sent unmasked, such as the millionaires' answers without their pads, fails it);
/// * in every round that is an opening (each server sends all others one payload), the sum and
///   the XOR of the `k` payloads (what the servers learn, for additive and XOR shares) look
///   uniform, and no opened vector is narrow (a count, a verdict or a flag would be: a uniform
///   word is below `2^40` with probability `2^-24`).
///
/// Run with a dealer (k = 2, 3, 4), without one (k = 2, and k = 3 on 60 rows a side: on the
/// whole sample it records 2.4 GB) and from replicated seeds, each for honest uploads and for
/// party B's rows scaled out of range, so that an opened failure count or verdict (a finding
/// of an earlier review) would fail it. Control: the job ends well on every server.
#[test]
fn nothing_a_job_opens_after_the_candidate_lists_depends_on_the_data() {
    use common::view::{Sent, assert_uniform_by_width, distinct_payloads, opened_values};
    let p = JobParams::default();
    // Party B's rows scaled out of range next to the honest ones.
    let with_scaled = |(a, b): (PartyData, PartyData)| {
        let mut scaled = b.clone();
        scaled.z.iter_mut().for_each(|v| *v = v.wrapping_mul(4));
        (a, b, scaled)
    };
    let whole = with_scaled(prepare(EvalProtocol::Standard, &p));
    let few = with_scaled(prepare_rows(EvalProtocol::Standard, &p, 60));
    let cases = [
        (Correlation::Dealer, 2, &whole),
        (Correlation::Ot, 2, &whole),
        (Correlation::Dealer, 3, &whole),
        (Correlation::Ot, 3, &few),
        (Correlation::Replicated, 3, &whole),
        (Correlation::Dealer, 4, &whole),
    ];
    for (correlation, k, (a, b, scaled)) in cases {
        for (data, bdata) in [("honest uploads", b), ("party b out of range", scaled)] {
            let what = format!("{correlation:?}, k = {k}, {data}, {} rows", a.rows.len());
            let floor = if correlation == Correlation::Ot { 4 } else { 2 };
            let log = Arc::new(Mutex::new(Vec::<Sent>::new()));
            let deviations = (0..k)
                .map(|s| {
                    let log = log.clone();
                    let f: Deviation = Box::new(move |round, to, payload: &mut Vec<u64>| {
                        log.lock().unwrap().push((round, s, to, payload.clone()));
                    });
                    (s, f)
                })
                .collect();
            let (outcomes, rounds, run) = job_with_liars(correlation, k, a, bdata, &p, deviations);
            assert!(
                run.is_ok() && outcomes.iter().all(Result::is_ok),
                "{what}: {outcomes:?}"
            );
            // Taken, not copied: the recording runs to hundreds of MB without a dealer.
            let sent = std::mem::take(&mut *log.lock().unwrap());
            // Rounds 0 and 1: the candidate lists' parts and their digests, public to the servers.
            let (sums, xors) = opened_values(&sent, k, 2);
            let words: usize = sums.iter().map(Vec::len).sum();
            assert!(
                // Without a dealer most rounds are pairwise OT messages, not openings.
                sums.len() as u64 + 2 >= rounds[0] / floor && words > 10_000,
                "{what}: {} openings of {words} words in {} rounds",
                sums.len(),
                rounds[0]
            );
            assert_uniform_by_width(
                &distinct_payloads(&sent, 2),
                &format!("{what}: every message"),
            );
            assert_uniform_by_width(&sums, &format!("{what}: opened values (sums)"));
            assert_uniform_by_width(&xors, &format!("{what}: opened values (XOR)"));
            for (i, (sum, xor)) in sums.iter().zip(&xors).enumerate() {
                let width = |v: &[u64]| v.iter().map(|x| 64 - x.leading_zeros()).max().unwrap_or(0);
                assert!(
                    width(sum) >= 40 && width(xor) >= 40,
                    "{what}: opening {i} is narrow ({} words, widths {} and {})",
                    sum.len(),
                    width(sum),
                    width(xor)
                );
            }
        }
    }
}

/// Servers split into workers: worker 0 of a server equivocates in its group's candidate
/// gather (it sends one server's worker 0 a part with two entries swapped). Every worker holds
/// all lists (its group's parts from the other servers, its server's from its mesh), so the
/// group's digest exchange sees the difference and the job is refused; without the lie the
/// same job runs.
#[test]
fn a_worker_equivocating_in_the_candidate_gather_gets_the_job_refused() {
    let p = JobParams::default();
    let (a, b) = prepare(EvalProtocol::Standard, &p);
    for (k, liar, victim, lie) in [(2, 1, 0, true), (3, 2, 1, true), (3, 2, 1, false)] {
        let deviation: Deviation = Box::new(move |round, to, payload| {
            if lie && round == 0 && to == victim {
                swap_packed(payload, 0, 1);
            }
        });
        let r = rt().block_on(servers_inprocess_workers(
            k,
            2,
            [up_to(&a, k), up_to(&b, k)],
            [None, None],
            &p,
            "equivocate",
            Some((liar, deviation)),
        ));
        let case = format!("k = {k}, worker 0 of server {liar} lies to server {victim}: {lie}");
        match r {
            Ok(_) => assert!(!lie, "{case}: the job ran"),
            Err(e) => {
                assert!(lie, "{case}: {e}");
                let e = e.to_string();
                assert!(e.contains("assembled other candidate lists"), "{case}: {e}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A party that uploads vectors no graph could produce.
// ---------------------------------------------------------------------------------------------

/// What a party uploads to two servers: its share messages and its tokens.
fn up(d: &PartyData) -> (Vec<ShareMsg>, Vec<ShareMsg>, Tokens) {
    up_to(d, 2)
}

/// What a party uploads to `k` servers.
fn up_to(d: &PartyData, k: usize) -> (Vec<ShareMsg>, Vec<ShareMsg>, Tokens) {
    (
        share_compressed(&d.z, k).unwrap(),
        share_compressed(&d.ids, k).unwrap(),
        d.tokens.clone(),
    )
}

/// Runs the servers' part in-process on the two parties' data, then reconstructs both parties'
/// results: (servers' rounds and bytes, A's results, B's results).
type Finished = ppea::Result<Vec<ppea::model::align::ResultRow>>;
fn run_inprocess(a: &PartyData, b: &PartyData, p: &JobParams) -> ((u64, u64), Finished, Finished) {
    let out = rt()
        .block_on(servers_inprocess(2, [up(a), up(b)], p, "range"))
        .expect("the servers finish the job whatever the uploads");
    (
        (out.rounds, out.bytes_per_server),
        finish_party(a, &out.a, p),
        finish_party(b, &out.b, p),
    )
}

/// A party that scales its rows (to win every ranking it enters) or plants one huge entry (to
/// make scores wrap; `2^32` squares to 0 in `Z_2^64`, so the norm alone cannot see it) gets the
/// job refused for both parties, with a message naming it. The servers cannot tell: they run
/// the same rounds and send the same bytes as for honest uploads, and open nothing that depends
/// on the check (a deviating server could otherwise learn threshold bits of an honest party's
/// row by offsetting its share of an audit value).
#[test]
fn an_out_of_range_upload_fails_the_job_naming_the_party() {
    let p = JobParams::default();
    let (a, b) = prepare(EvalProtocol::Standard, &p);
    let (honest_view, ra, rb) = run_inprocess(&a, &b, &p);
    assert!(
        ra.is_ok() && rb.is_ok(),
        "honest uploads pass the range checks"
    );
    let w = p.model.width();
    let bounds = ppea::model::upload_check::UploadBounds::new(&p);
    assert!(b.z.chunks(w).all(|row| bounds.row_in_range(row)));

    // Every row of party B scaled by 4.
    let mut scaled = b.clone();
    scaled.z.iter_mut().for_each(|v| *v = v.wrapping_mul(4));
    let (view, ra, rb) = run_inprocess(&a, &scaled, &p);
    assert_eq!(
        view, honest_view,
        "the servers' traffic does not depend on the check"
    );
    for r in [ra, rb] {
        let e = r.unwrap_err().to_string();
        assert!(e.contains("party b failed the servers' checks"), "{e}");
    }

    // One entry of one row of party A set to 2^32: the wrapping norm of its block is unchanged.
    let mut planted = a.clone();
    let (row, col) = (3, 5);
    let blocks = [p.model.dim, w - p.model.dim];
    let before = ppea::mpc::ring::block_squares(&planted.z[row * w..(row + 1) * w], w, &blocks);
    planted.z[row * w + col] = 1 << 32;
    planted.z[row * w + col + 1] = 0;
    let after = ppea::mpc::ring::block_squares(&planted.z[row * w..(row + 1) * w], w, &blocks);
    assert!(
        after[0] <= before[0],
        "the planted entry hides from the wrapping norm"
    );
    assert!(!bounds.row_in_range(&planted.z[row * w..(row + 1) * w]));
    let (view, ra, rb) = run_inprocess(&planted, &b, &p);
    assert_eq!(view, honest_view);
    for r in [ra, rb] {
        let e = r.unwrap_err().to_string();
        assert!(e.contains("party a failed the servers' checks"), "{e}");
    }

    // Servers split into workers: the planted row is the last worker's (the last row), and
    // worker 0, which delivers the status, still sees its failure (the counts add up).
    let mut planted = a.clone();
    let last = planted.z.len() / w - 1;
    planted.z[last * w + col] = 1 << 32;
    planted.z[last * w + col + 1] = 0;
    assert!(!bounds.row_in_range(&planted.z[last * w..]));
    for workers in [2, 3] {
        for (data, ok) in [(&a, true), (&planted, false)] {
            let out = rt()
                .block_on(servers_inprocess_workers(
                    2,
                    workers,
                    [up(data), up(&b)],
                    [None, None],
                    &p,
                    "range",
                    None,
                ))
                .expect("the servers finish the job whatever the uploads");
            for r in [finish_party(data, &out.a, &p), finish_party(&b, &out.b, &p)] {
                match r {
                    Ok(_) => assert!(ok, "{workers} workers passed a planted row"),
                    Err(e) => assert!(
                        !ok && e.to_string().contains("party a failed the servers' checks"),
                        "{workers} workers: {e}"
                    ),
                }
            }
        }
    }
}

/// In an evaluation job (`reveal_best`), whose rows also carry each row's best candidate and
/// its score, a failed upload's results are all zero too, for both parties: the range checks'
/// verdict gates every per-row word on shares, so a party that ignores the status word reads
/// nothing from its rows (before, the best candidates and scores were not gated: a review's
/// finding). The honest job's best candidates are the control.
#[test]
fn a_failed_upload_leaves_every_result_word_zero_even_in_evaluation_jobs() {
    let p = JobParams {
        reveal_best: true,
        ..JobParams::default()
    };
    let (a, b) = prepare(EvalProtocol::Standard, &p);
    let mut scaled = b.clone();
    scaled.z.iter_mut().for_each(|v| *v = v.wrapping_mul(4));
    let ow = p.out_width();
    for (data_b, failed) in [(&b, false), (&scaled, true)] {
        let out = rt()
            .block_on(servers_inprocess(2, [up(&a), up(data_b)], &p, "range-best"))
            .expect("the servers finish the job whatever the uploads");
        for (shares, rows) in [(&out.a, a.rows.len()), (&out.b, b.rows.len())] {
            let words: Vec<u64> = (0..rows * ow)
                .map(|i| shares.iter().fold(0u64, |s, v| s.wrapping_add(v[i])))
                .collect();
            // Word 3 of a row is its best candidate's row (0 is a row too: count the others).
            let best_rows = words.chunks(ow).filter(|r| r[3] != 0).count();
            if failed {
                assert!(
                    words.iter().all(|&x| x == 0),
                    "a failed job's rows carry words"
                );
            } else {
                assert!(
                    best_rows > rows / 2,
                    "{best_rows} of {rows} best candidates"
                );
            }
        }
    }
}

/// The same over QUIC: both parties are told why and write nothing; the servers keep serving.
#[test]
fn an_out_of_range_upload_over_quic_fails_cleanly_for_both_parties() {
    let c = Cluster::new("attack-range", 2, Limits::default());
    let spec = c.spec("range", JobParams::default());
    let (mut a, b) = prepare(EvalProtocol::Standard, &spec.params);
    a.z.iter_mut().for_each(|v| *v = v.wrapping_mul(3));
    let (ra, rb) = c.run(&spec, &a, &b);
    let words =
        |r: Vec<ppea::net::party::ServerResult>| r.into_iter().map(|x| x.words).collect::<Vec<_>>();
    for (data, r) in [(&a, ra), (&b, rb)] {
        let e = finish_party(data, &words(r.unwrap()), &spec.params)
            .unwrap_err()
            .to_string();
        assert!(e.contains("party a failed the servers' checks"), "{e}");
    }
    c.still_serves("after-range");
}

/// With the per-group audit, a party whose group indicators are not one-hot 0/1 (one row's
/// indicator scaled, to read that row's figures above the noise) gets the job refused for both
/// parties, naming it, through the same status word as the range checks; the servers run the
/// same rounds and send the same bytes as for honest indicators (nothing about the check is
/// opened to them: `model::audit`'s unit tests show what a deviating server sees).
#[test]
fn malformed_audit_indicators_fail_the_job_naming_the_party() {
    let mut p = JobParams::default();
    p.audit.enabled = true;
    p.audit.noise = false;
    let (mut a, mut b) = prepare(EvalProtocol::Standard, &p);
    let ds = common::cluster::sample();
    let key = ppea::model::blocking::BlockingKey::random();
    ppea::model::audit::attach(&mut a, &ds.a, &p, &key, &[]).unwrap();
    ppea::model::audit::attach(&mut b, &ds.b, &p, &key, &[]).unwrap();
    let run = |a: &PartyData, b: &PartyData| {
        let audit = [a, b].map(|d| Some(share_compressed(&d.audit, 2).unwrap()));
        let out = rt()
            .block_on(ppea::eval::evaluate::servers_inprocess_audited(
                2,
                [up(a), up(b)],
                audit,
                &p,
                "indicators",
            ))
            .expect("the servers finish the job whatever the uploads");
        (
            (out.rounds, out.bytes_per_server),
            finish_party(a, &out.a, &p),
            finish_party(b, &out.b, &p),
        )
    };
    let (honest_view, ra, rb) = run(&a, &b);
    assert!(ra.is_ok() && rb.is_ok(), "honest indicators pass");
    let w = p.audit.in_width();
    for (side, scale) in [(0usize, 1000u64), (1, 2)] {
        let mut bad = [a.clone(), b.clone()];
        let row = &mut bad[side].audit[7 * w..8 * w];
        let g = row[..p.audit.max_groups]
            .iter()
            .position(|&v| v == 1)
            .unwrap();
        row[g] = scale;
        let (view, ra, rb) = run(&bad[0], &bad[1]);
        assert_eq!(
            view, honest_view,
            "the servers' traffic does not depend on the check"
        );
        let who = format!("party {} failed the servers' checks", ["a", "b"][side]);
        for r in [ra, rb] {
            let e = r.unwrap_err().to_string();
            assert!(e.contains(&who), "{e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters at the edges of what validation permits.
// ---------------------------------------------------------------------------------------------

/// Rows of `n` vectors in range, built to reach the extremes: every block a unit vector (scaled
/// to its largest norm) that is shared by all rows, its negation, or a random direction, so
/// scores reach +max, -max and values between.
fn extreme_rows(p: &JobParams, n: usize, prg: &mut Prg, shared: &[Vec<f64>]) -> Vec<u64> {
    let fp = ppea::mpc::fixed::FixedPoint::new(p.frac_bits).unwrap();
    let mut z = Vec::new();
    for _ in 0..n {
        for (blk, &(len, norm)) in p.model.blocks().iter().enumerate() {
            let mut v: Vec<f64> = match prg.next_u64() % 3 {
                0 => shared[blk].clone(),
                1 => shared[blk].iter().map(|x| -x).collect(),
                _ => (0..len)
                    .map(|_| (prg.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
                    .collect(),
            };
            let l = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            // Slightly inside the bound, so fixed-point rounding cannot push a row past it.
            v.iter_mut().for_each(|x| *x *= norm * (1.0 - 1e-9) / l);
            z.extend(v.iter().map(|&x| fp.encode(x).unwrap()));
        }
    }
    z
}

/// Property test over the permitted parameter ranges, with the extremes always included:
/// weights 0 and 10, the most fractional bits validation allows, `min_score` at -100, +100 and
/// values between, scores at +max and -max. The secure decisions (match flags, best candidate
/// and its score) equal the plaintext reference every time. Before comparison widths covered
/// `min_score`, `min_score = -50` wrapped and matched nothing.
#[test]
fn extreme_parameters_keep_secure_decisions_equal_to_plaintext() {
    let mut prg = Prg::fresh();
    let n = 6;
    let mut cases = Vec::new();
    // (min_score, w1, w2, fractional bits: None for the most validation allows).
    for min_score in [-100.0, -50.0, 0.0, 100.0] {
        for (w1, w2) in [(0.0, 0.0), (10.0, 10.0), (10.0, 0.0), (0.9, 0.5)] {
            cases.push((min_score, w1, w2, None));
        }
    }
    for _ in 0..8 {
        let r = |prg: &mut Prg, lo: f64, hi: f64| {
            lo + (hi - lo) * ((prg.next_u64() % 1000) as f64 / 999.0)
        };
        cases.push((
            r(&mut prg, -100.0, 100.0),
            r(&mut prg, 0.0, 10.0),
            r(&mut prg, 0.0, 10.0),
            Some(8 + (prg.next_u64() % 8) as u32),
        ));
    }
    for (min_score, w1, w2, frac) in cases {
        let mut p = JobParams {
            min_score,
            reveal_best: true,
            ..JobParams::default()
        };
        p.model.dim = 8;
        p.model.attention_dim = 2;
        p.model.neighbour_weight = w1;
        p.model.attention_weight = w2;
        p.blocking.candidates = n;
        p.frac_bits = frac.unwrap_or(p.max_frac_bits()).min(p.max_frac_bits());
        p.validate().unwrap();
        let shared: Vec<Vec<f64>> = p
            .model
            .blocks()
            .iter()
            .map(|&(len, _)| (0..len).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect())
            .collect();
        let data = |prg: &mut Prg| PartyData {
            rows: (0..n as u32).collect(),
            z: extreme_rows(&p, n, prg, &shared),
            width: p.model.width(),
            tokens: Tokens {
                own: vec![vec![1]; n],
                neighbour: vec![vec![]; n],
            },
            ids: Vec::new(),
            audit: Vec::new(),
            groups: Vec::new(),
            streamed: None,
            agreement: [0; 32],
        };
        let (a, b) = (data(&mut prg), data(&mut prg));
        let case = format!("min_score {min_score}, w1 {w1}, w2 {w2}, f {}", p.frac_bits);
        let (ref_a, ref_b) = secure_equals_plaintext(&p, &a, &b, &case);
        // At the extremes every decision is forced: all or nothing passes the threshold. At
        // -100 every mutual best pair is matched. (Not "some row is matched": with tied scores,
        // which these rows make frequent, the two sides break ties in their candidate lists'
        // orders, which differ, so a job can have no mutual best pair at all; a CI run met one.)
        if min_score == -100.0 {
            for (i, &m) in ref_a.matched.iter().enumerate() {
                let mutual = ref_b.best[ref_a.best[i] as usize] as usize == i;
                assert_eq!(m, mutual, "{case}, row {i}");
            }
        }
        if min_score == 100.0 {
            assert!(ref_a.matched.iter().all(|&m| !m));
        }
    }
}

/// Runs the job in-process (the dealer bounded by the job's declared sizes, as over the
/// network) and checks every party's decisions (match flag, best candidate, its score) against
/// the plaintext reference. Returns the reference.
fn secure_equals_plaintext(
    p: &JobParams,
    a: &PartyData,
    b: &PartyData,
    case: &str,
) -> (
    ppea::model::align::SideReference,
    ppea::model::align::SideReference,
) {
    let out = rt()
        .block_on(servers_inprocess(2, [up(a), up(b)], p, "extremes"))
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let cand = candidates(
        &a.tokens,
        &b.tokens,
        &p.blocking,
        &ppea::model::align::job_seed("extremes"),
    );
    let (ref_a, ref_b) = reference(&a.z, &b.z, p, &cand);
    let scale = (1u64 << (2 * p.frac_bits)) as f64;
    for (data, shares, r) in [(a, &out.a, &ref_a), (b, &out.b, &ref_b)] {
        let res = finish_party(data, shares, p).unwrap_or_else(|e| panic!("{case}: {e}"));
        for (row, got) in res.iter().enumerate() {
            assert_eq!(got.matched, r.matched[row], "{case}, row {row}");
            let (best, score) = got.best.unwrap();
            assert_eq!(best, r.best[row], "{case}, row {row}");
            assert_eq!(score, r.score[row] as f64 / scale, "{case}, row {row}");
        }
    }
    (ref_a, ref_b)
}

/// Rows whose blocks use all the rounding slack the range checks allow (every block filled with
/// the same small integer up to its norm bound), at few fractional bits and large dimensions,
/// where that slack is far above the model's nominal maximum score: comparisons must still be
/// wide enough, and decisions equal to plaintext.
#[test]
fn rows_at_the_rounding_slack_keep_secure_decisions_equal_to_plaintext() {
    let n = 4;
    for (dim, f, w) in [(4096, 4, 0.0), (1024, 4, 0.9), (300, 4, 0.9), (8, 1, 0.0)] {
        let mut p = JobParams {
            reveal_best: true,
            ..JobParams::default()
        };
        p.model.dim = dim;
        p.model.neighbour_weight = w;
        p.model.attention_weight = w;
        p.blocking.candidates = n;
        p.frac_bits = f;
        p.validate().unwrap();
        let bounds = ppea::model::upload_check::UploadBounds::new(&p);
        let slack_row = |sign: u64| -> Vec<u64> {
            let mut z = Vec::new();
            for (&d, &bound) in bounds.blocks.iter().zip(&bounds.norms) {
                let fill = ((bound as f64 / 4.0).floor() as usize).min(d);
                z.extend((0..d).map(|i| if i < fill { 2u64.wrapping_mul(sign) } else { 0 }));
            }
            z
        };
        let mut prg = Prg::fresh();
        let data = |prg: &mut Prg| {
            let z: Vec<u64> = (0..n)
                .flat_map(|_| {
                    slack_row(if prg.next_u64().is_multiple_of(2) {
                        1
                    } else {
                        u64::MAX
                    })
                })
                .collect();
            PartyData {
                rows: (0..n as u32).collect(),
                z,
                width: p.model.width(),
                tokens: Tokens {
                    own: vec![vec![1]; n],
                    neighbour: vec![vec![]; n],
                },
                ids: Vec::new(),
                audit: Vec::new(),
                groups: Vec::new(),
                streamed: None,
                agreement: [0; 32],
            }
        };
        let (a, b) = (data(&mut prg), data(&mut prg));
        assert!(
            a.z.chunks(p.model.width())
                .all(|row| bounds.row_in_range(row)),
            "dim {dim}, f {f}: the slack rows pass the checks"
        );
        secure_equals_plaintext(&p, &a, &b, &format!("dim {dim}, f {f}, w {w}"));
    }
}

/// The dealer refuses requests above the bound derived from a job's declared sizes; the bound
/// covers every request of an honest job, even with one candidate per row (where the range
/// checks, which scale with rows, dominate).
#[test]
fn the_dealers_size_bound_covers_every_request_of_a_job() {
    let n = 500;
    let mut p = JobParams {
        reveal_best: true,
        ..JobParams::default()
    };
    p.model.dim = 8;
    p.model.attention_weight = 0.0;
    p.blocking.candidates = 1;
    let mut prg = Prg::fresh();
    let data = |prg: &mut Prg| PartyData {
        rows: (0..n as u32).collect(),
        z: extreme_rows(&p, n, prg, &[vec![1.0; 8], vec![1.0; 8]]),
        width: p.model.width(),
        tokens: Tokens {
            own: (0..n as u64).map(|i| vec![i]).collect(),
            neighbour: vec![vec![]; n],
        },
        ids: Vec::new(),
        audit: Vec::new(),
        groups: Vec::new(),
        streamed: None,
        agreement: [0; 32],
    };
    let (a, b) = (data(&mut prg), data(&mut prg));
    secure_equals_plaintext(&p, &a, &b, "one candidate per row");
}

// ---------------------------------------------------------------------------------------------
// Certificates that carry more than one identity.
// ---------------------------------------------------------------------------------------------

/// A development PKI whose CA key this test keeps: a certificate for each of `NAMES`, plus one
/// per `(file, names)` of `extra`, all issued by the same CA.
fn pki_with_extra(dir: &std::path::Path, extra: &[(&str, &[&str])]) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ppea test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let singles: Vec<(String, Vec<String>)> = NAMES
        .iter()
        .map(|n| (n.to_string(), vec![n.to_string()]))
        .collect();
    let extras = extra
        .iter()
        .map(|(f, names)| (f.to_string(), names.iter().map(|s| s.to_string()).collect()));
    for (file, sans) in singles.into_iter().chain(extras) {
        let params = rcgen::CertificateParams::new(sans).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
    }
}

/// A certificate valid for several names (or a wildcard) would let one key act as several
/// nodes, for instance as two compute servers of one job. A node refuses to load one, and a
/// server refuses a peer that presents one; the server keeps serving.
#[test]
fn certificates_with_several_identities_are_refused() {
    let tmp = common::TempDir::new("attack-certs");
    pki_with_extra(
        &tmp.0,
        &[
            ("two-names", &["party-a", "party-b"]),
            ("wildcard", &["*.example"]),
        ],
    );
    let mut nodes = vec![start(&tmp.0, "dealer", Role::Dealer, 2, Limits::default())];
    for i in 0..2 {
        let name = format!("server-{i}");
        nodes.push(start(&tmp.0, &name, Role::Compute, 2, Limits::default()));
    }
    let c = Cluster {
        dir: tmp,
        nodes,
        has_dealer: true,
        workers: Vec::new(),
    };
    let dir = &c.dir.0;
    for (file, want) in [("two-names", "2 identities"), ("wildcard", "wildcard")] {
        let e = Identity::load(
            "party-a",
            &ppea::net::tls::TlsFiles {
                ca: dir.join("ca.pem"),
                cert: dir.join(format!("{file}.pem")),
                key: dir.join(format!("{file}.key")),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(want) && e.contains(file), "{e}");
    }
    // As a peer: a client presenting the two-name certificate, which verifies against the CA.
    let cert = rustls_pki_types::CertificateDer::from_pem_file(dir.join("two-names.pem")).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join("two-names.key")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert], key)
        .unwrap();
    tls.alpn_protocols = vec![ppea::net::tls::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let server = c.nodes[1].node.clone();
    let spec = c.spec("two-names", JobParams::default());
    let outcome = rt().block_on(async move {
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(quic)));
        // The handshake completes (the chain is valid); the server then closes the connection,
        // possibly before this side has finished connecting or sending.
        let conn = match ep
            .connect(server.addr.parse().unwrap(), &server.name)
            .unwrap()
            .await
        {
            Ok(conn) => conn,
            Err(e) => return (Err(e.to_string()), Some(e)),
        };
        let r = async {
            let (s, r) = conn.open_bi().await.map_err(|e| e.to_string())?;
            let (mut s, mut r) = ppea::net::wire::framed(s, r, PeerName::Server(0), 1 << 20);
            let hello = Hello::Upload {
                spec: Box::new(spec),
                side: 0,
                rows: 1,
                tokens: 0,
                agreement: [0; 32],
            };
            s.control(&hello).await.map_err(|e| e.to_string())?;
            r.control::<Outcome>().await.map_err(|e| e.to_string())
        };
        let got = tokio::time::timeout(Duration::from_secs(10), r)
            .await
            .unwrap_or_else(|_| Err("no answer".into()));
        (got, conn.close_reason())
    });
    match outcome {
        (Ok(Outcome::Done { .. }), _) => panic!("a two-identity certificate was served"),
        (_, reason) => {
            let reason = format!("{reason:?}");
            assert!(reason.contains("identity not allowed"), "{reason}");
        }
    }
    c.still_serves("after-two-names");
}

/// A party that sends different keyed tokens to different servers (so the servers would compute
/// different candidate lists and mix shares of different pairs): the servers compare digests of
/// what they received before computing, and the job fails for both parties naming the party.
#[test]
fn a_party_sending_different_tokens_to_different_servers_is_caught() {
    let c = Cluster::new("attack-tokens", 2, Limits::default());
    let spec = c.spec("tokens", JobParams::default());
    let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
    let mut a2 = a.clone();
    a2.tokens.own[0] = vec![42];
    let (ea, eb) =
        party_a_uploads_per_server(&c, [(&spec, &a, None), (&spec, &a2, None)], &spec, &b);
    for e in [&ea, &eb] {
        assert!(e.contains("party a sent different uploads"), "{e}");
    }
    c.still_serves("after-tokens");
}

/// Party A uploads to each server of `c` what `uploads[j]` says (job description, data, its
/// share of partner ids; `z` shared from the first data), party B runs `spec_b` normally; both
/// parties' errors (the job must fail).
fn party_a_uploads_per_server(
    c: &Cluster,
    uploads: [(&JobSpec, &PartyData, Option<&ShareMsg>); 2],
    spec_b: &JobSpec,
    b: &PartyData,
) -> (String, String) {
    let (ia, ib) = (c.identity("party-a"), c.identity("party-b"));
    let z = share_compressed(&uploads[0].1.z, 2).unwrap();
    let (ra, rb) = rt().block_on(async {
        let ep = ia.client_endpoint().unwrap();
        let quiet = ppea::net::progress::Lines(|_: &str| {});
        let up = |j: usize| {
            let (spec, data, ids) = uploads[j];
            upload_to(
                &ep,
                spec,
                j,
                0,
                data,
                ZShare::Msg(&z[j]),
                ids,
                None,
                T,
                &quiet,
            )
        };
        let party_a = async { tokio::try_join!(up(0), up(1)).map(|_| ()) };
        tokio::join!(party_a, run_party(spec_b, 1, &ib, b, T, |_| {}))
    });
    (ra.unwrap_err().to_string(), rb.unwrap_err().to_string())
}

/// A party that opts in to partner ids on one server and not on the other (the opt-in is not
/// part of the job digest: each party chooses its own) would have the servers run different
/// protocols (each runs with ids only if both parties opted in there). The servers compare
/// the opt-in with the uploads' digests when they link, and the job fails for both parties
/// naming the party, before anything is computed (found in a review of the attack surface).
#[test]
fn a_party_opting_in_to_partner_ids_on_one_server_only_is_caught() {
    let c = Cluster::new("attack-ids", 2, Limits::default());
    let ids_on = JobParams {
        share_partner_ids: true,
        ..JobParams::default()
    };
    let spec = c.spec("ids", ids_on);
    let mut spec_off = spec.clone();
    spec_off.params.share_partner_ids = false;
    assert_eq!(spec.digest().unwrap(), spec_off.digest().unwrap());
    let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
    let ids = share_compressed(&a.ids, 2).unwrap();
    let uploads = [(&spec, &a, Some(&ids[0])), (&spec_off, &a, None)];
    let (ea, eb) = party_a_uploads_per_server(&c, uploads, &spec, &b);
    for e in [&ea, &eb] {
        assert!(e.contains("party a sent different uploads"), "{e}");
    }
    c.still_serves("after-ids");
}

/// A party that opens many jobs to fill a server's memory or job table: its uploads beyond
/// `max_jobs_per_party` are refused before anything of them is read; its slots come back when
/// its jobs end, and the server keeps serving.
#[test]
fn a_party_cannot_hold_more_uploads_than_its_limit() {
    let limits = Limits {
        wait_secs: 3,
        max_jobs_per_party: 2,
        ..Limits::default()
    };
    let c = Cluster::new("attack-slots", 2, limits);
    let (a, _) = prepare(EvalProtocol::Standard, &JobParams::default());
    let ia = c.identity("party-a");
    let z = share_compressed(&a.z, 2).unwrap();
    let specs: Vec<JobSpec> = (0..3)
        .map(|i| c.spec(&format!("slot-{i}"), JobParams::default()))
        .collect();
    let third = rt().block_on(async {
        let ep = ia.client_endpoint().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let told = ppea::net::progress::Lines(move |m: &str| {
            let _ = tx.send(m.to_string());
        });
        let held = futures::future::join_all(
            specs[..2]
                .iter()
                .map(|s| upload_to(&ep, s, 0, 0, &a, ZShare::Msg(&z[0]), None, None, T, &told)),
        );
        tokio::pin!(held);
        // Wait until the server holds both uploads (it says so), then try a third job.
        let mut holding = 0;
        while holding < 2 {
            tokio::select! {
                m = rx.recv() => if m.is_some_and(|m| m.contains("holding this party's upload")) {
                    holding += 1;
                },
                _ = &mut held => panic!("the held jobs ended before the third upload"),
            }
        }
        let quiet = ppea::net::progress::Lines(|_: &str| {});
        let third = upload_to(
            &ep,
            &specs[2],
            0,
            0,
            &a,
            ZShare::Msg(&z[0]),
            None,
            None,
            T,
            &quiet,
        )
        .await;
        // The two held jobs time out (no party B), which gives the slots back.
        let held = held.await;
        assert!(held.iter().all(|r| r.is_err()));
        third
    });
    let e = third.expect_err("a third upload is refused").to_string();
    assert!(e.contains("max_jobs_per_party"), "{e}");
    c.still_serves("after-slots");
}

/// A party whose upload would not fit the server's memory budget (`limits.memory_mib`, the
/// job's estimated peak from `ppea::model::footprint`) is refused before anything of it is
/// read, with the estimate and the budget in the reason; the server keeps serving jobs that
/// fit.
#[test]
fn an_upload_beyond_the_memory_budget_is_refused_before_it_is_read() {
    use ppea::model::footprint::{BASE_BYTES, mib, server_bytes};
    let (a, b) = prepare(EvalProtocol::Standard, &JobParams::default());
    let p = JobParams::default();
    // Room for one default job beside the process itself (one party may book half of it), on
    // the last server too (which holds these small shares: `held`).
    let room =
        2 * server_bytes(&p, a.rows.len(), 2, true).max(server_bytes(&p, b.rows.len(), 2, true));
    let limits = Limits {
        wait_secs: 3,
        memory_mib: mib(BASE_BYTES + room) + 1,
        ..Limits::default()
    };
    let c = Cluster::new("attack-memory", 2, limits);
    // Eight times the candidates per row: the same rows need more memory (the state per
    // candidate pair) than a party may book.
    let mut wide = JobParams::default();
    wide.blocking.candidates = 512;
    let (big, _) = prepare(EvalProtocol::Standard, &wide);
    // Server 0 draws its share from a seed (not held).
    let needed = server_bytes(&wide, big.rows.len(), 2, false);
    // One party may book at most half of the room.
    assert!(needed > room / 2 + (1 << 20));
    // Party A's upload of `data` to server 0 for `spec`: refused, with this message.
    let refused = |spec: &JobSpec, data: &PartyData| {
        let z = share_compressed(&data.z, 2).unwrap();
        let quiet = ppea::net::progress::Lines(|_: &str| {});
        let id = c.identity("party-a");
        let r = rt().block_on(async {
            let ep = id.client_endpoint().unwrap();
            let up = ZShare::Msg(&z[0]);
            upload_to(&ep, spec, 0, 0, data, up, None, None, T, &quiet).await
        });
        r.expect_err("the upload is refused").to_string()
    };
    let e = refused(&c.spec("memory-0", wide), &big);
    assert!(e.contains("limits.memory_mib"), "{e}");
    assert!(
        e.contains(&format!("needs about {} MiB", mib(needed))),
        "{e}"
    );
    // Tokens beyond what the fit covers are booked as the hello announces them (a review
    // found them unbooked: 4,096 own and 4,096 neighbour tokens per row, 128 times the
    // typical count, let one party hold several times the budget). The default rows fit;
    // with every row's lists full they do not.
    let mut full = a.clone();
    let fill = || (0..4096u64).map(|t| 7 * t + 1).collect::<Vec<u64>>();
    full.tokens.own.iter_mut().for_each(|t| *t = fill());
    full.tokens.neighbour.iter_mut().for_each(|t| *t = fill());
    let rows = full.rows.len();
    assert!(server_bytes(&p, rows, 2, false) <= room / 2);
    let needed = server_bytes(&p, rows, 2, false)
        + ppea::model::footprint::token_bytes(rows as u64, full.tokens.count());
    assert!(needed > room / 2 + (1 << 20));
    let e = refused(&c.spec("memory-tokens", p.clone()), &full);
    assert!(
        e.contains("limits.memory_mib") && e.contains(&format!("needs about {} MiB", mib(needed))),
        "{e}"
    );
    // A job that fits still runs (its memory is booked and given back).
    c.still_serves("after-memory");
    c.still_serves("after-memory-again");
}

/// A configured party cannot evict another party's held upload: party B, naming itself
/// party a of the same job id, uploads for side 0 while party A's upload waits there. Before a
/// review caught it, the server replaced A's upload ("replaced by a second upload"), failing
/// A's job and burning its id; now B's upload is refused, naming the holder, and A's job runs
/// when B uploads its own side.
#[test]
fn a_party_cannot_evict_another_partys_upload() {
    // Short waits: without the check, party B's own upload would wait for an evicted A.
    let quick = Limits {
        wait_secs: 5,
        ..Limits::default()
    };
    let c = Cluster::new("attack-evict", 2, quick);
    let spec = c.spec("evict", JobParams::default());
    let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
    let (ia, ib) = (c.identity("party-a"), c.identity("party-b"));
    let mut evil = spec.clone();
    evil.parties = ["party-b".into(), "party-a".into()];
    let z = share_compressed(&b.z, 2).unwrap();
    let quiet = ppea::net::progress::Lines(|_: &str| {});
    let (ra, (evicting, rb)) = rt().block_on(async {
        let party_b = async {
            // Party A's upload is held by then.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let ep = ib.client_endpoint().unwrap();
            // Party B's upload to server 0 as side `side` under `spec`.
            let up = |spec: JobSpec, side: u8| {
                let (ep, b, z, quiet) = (&ep, &b, &z, &quiet);
                async move {
                    let share = ZShare::Msg(&z[0]);
                    upload_to(ep, &spec, 0, side, b, share, None, None, T, quiet).await
                }
            };
            let evicting = up(evil.clone(), 0).await;
            // Its own side, under a job description naming another party a.
            let mut other = spec.clone();
            other.parties = ["party-c".into(), "party-b".into()];
            let misnamed = up(other, 1).await;
            ep.close(0u32.into(), b"done");
            let why = misnamed.expect_err("an upload naming another party a is refused");
            assert!(
                why.to_string()
                    .contains("is held by party-a as party a, not party-c"),
                "{why}"
            );
            (evicting, run_party(&spec, 1, &ib, &b, T, |_| {}).await)
        };
        tokio::join!(run_party(&spec, 0, &ia, &a, T, |_| {}), party_b)
    });
    let why = evicting
        .expect_err("the second upload for side 0 is refused")
        .to_string();
    assert!(
        why.contains("already holds party-a's upload as party a"),
        "{why}"
    );
    let words = |r: Vec<ppea::net::party::ServerResult>| -> Vec<Vec<u64>> {
        r.into_iter().map(|x| x.words).collect()
    };
    let rows = finish_party(&a, &words(ra.expect("party A's job runs")), &spec.params).unwrap();
    assert!(rows.iter().filter(|r| r.matched).count() > 100);
    rb.expect("party B's own upload runs the job");
    c.still_serves("after-evict");
}

/// A party that the held upload of a job does not name (here party B, while party A's upload
/// for a job with another partner waits) is refused without learning who holds the job: before,
/// the refusal named both of the job's parties (a review's finding).
#[test]
fn a_stranger_to_a_held_job_learns_nothing_of_its_parties() {
    let quick = Limits {
        wait_secs: 3,
        ..Limits::default()
    };
    let c = Cluster::new("attack-stranger", 2, quick);
    let spec = c.spec("stranger", JobParams::default());
    let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
    let (ia, ib) = (c.identity("party-a"), c.identity("party-b"));
    let mut held = spec.clone();
    held.parties = ["party-a".into(), "party-z".into()];
    let quiet = ppea::net::progress::Lines(|_: &str| {});
    // Party A's upload is held once the server says it waits for A's partner.
    let held_now = tokio::sync::Notify::new();
    let a_progress = ppea::net::progress::Lines(|line: &str| {
        if line.contains("party-z") {
            held_now.notify_one();
        }
    });
    let (_, stranger) = rt().block_on(async {
        tokio::join!(upload_to_server_0(&held, 0, &a, &ia, &a_progress), async {
            tokio::time::timeout(Duration::from_secs(60), held_now.notified())
                .await
                .expect("party A's upload is held");
            upload_to_server_0(&spec, 1, &b, &ib, &quiet).await
        })
    });
    let why = stranger.expect_err("the job is not B's").to_string();
    assert!(why.contains("held by other parties"), "{why}");
    assert!(
        !why.contains("party-a") && !why.contains("party-z"),
        "{why}"
    );
    c.still_serves("after-stranger");
}

/// A peer that completes the handshake but allows no stream (its transport settings say zero
/// streams) does not hold a node dialling it: opening the stream is bounded by the dial's time
/// limit, and the error names the peer. Before, only the handshake was, and the job waited
/// until `job_secs` (a review's finding).
#[test]
fn a_peer_allowing_no_stream_does_not_hold_the_dial() {
    let c = Cluster::new("attack-no-stream", 2, Limits::default());
    let _guard = rt().enter();
    let id = Identity::load("server-1", &files(&c.dir.0, "server-1")).unwrap();
    let mut sc = id.server_config().unwrap();
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(0u32.into());
    sc.transport_config(Arc::new(t));
    let fake = quinn::Endpoint::server(sc, "127.0.0.1:0".parse().unwrap()).unwrap();
    let node = ppea::net::job::Node::new("server-1", fake.local_addr().unwrap().to_string());
    rt().spawn(async move {
        let mut held = Vec::new();
        while let Some(inc) = fake.accept().await {
            if let Ok(conn) = inc.await {
                held.push(conn);
            }
        }
    });
    let ep = c.identity("server-0").client_endpoint().unwrap();
    let dialled = rt().block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            open(
                &ep,
                &node,
                PeerName::Server(1),
                1 << 20,
                Duration::from_secs(10),
            ),
        )
        .await
    });
    let why = match dialled {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(_)) => panic!("a stream was opened"),
        Err(_) => panic!("the dial waited 30 s for a stream"),
    };
    assert!(
        why.contains("timed out opening a stream") && why.contains("server-1"),
        "{why}"
    );
}

/// A stand-in for server 1 of `c` holding server-1's real certificate, that accepts every
/// connection and stream and answers nothing (its keep-alives keep the connection open); the
/// job description `job` sends server 0 to it. Runs on [`rt`].
fn mute_server_1(c: &Cluster, job: &str) -> JobSpec {
    let _guard = rt().enter();
    let id = Identity::load("server-1", &files(&c.dir.0, "server-1")).unwrap();
    let ep = id.endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut spec = c.spec(job, JobParams::default());
    spec.servers[1] = ppea::net::job::Node::new("server-1", ep.local_addr().unwrap().to_string());
    rt().spawn(async move {
        while let Some(inc) = ep.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = inc.await else { return };
                // Holds every stream opened to it and answers nothing.
                let mut held = Vec::new();
                while let Ok(st) = conn.accept_bi().await {
                    held.push(st);
                }
            });
        }
    });
    spec
}

/// Like [`mute_server_1`], but the fake server-1 accepts server-0's link (answers its greeting
/// with `Ack::Ok`) and then says nothing: server-0 is past its linking, computing, until the
/// silence limit. A dealer-free job (no dealer to wait on).
fn acking_server_1(c: &Cluster, job: &str) -> JobSpec {
    let _guard = rt().enter();
    let id = Identity::load("server-1", &files(&c.dir.0, "server-1")).unwrap();
    let ep = id.endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut spec = c.spec(job, JobParams::default());
    spec.params.correlation = ppea::mpc::source::Correlation::Ot;
    spec.dealer = None;
    spec.servers[1] = ppea::net::job::Node::new("server-1", ep.local_addr().unwrap().to_string());
    rt().spawn(async move {
        while let Some(inc) = ep.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = inc.await else { return };
                let mut held = Vec::new();
                while let Ok((mut s, mut r)) = conn.accept_bi().await {
                    if read_control::<Hello>(&mut r).await.is_some() {
                        raw_control(&mut s, &Ack::Ok).await;
                    }
                    held.push((s, r));
                }
            });
        }
    });
    spec
}

/// A server link greeting for `job`, sent by `identity` to node `at` of `c` as server `from`;
/// returns the stream to read the answer on (and what keeps it open).
async fn server_link(
    c: &Cluster,
    identity: &str,
    at: usize,
    job: &str,
    from: u32,
    digest: Digest,
) -> (
    quinn::Endpoint,
    quinn::Connection,
    quinn::SendStream,
    quinn::RecvStream,
) {
    let (ep, conn, mut s, r) = raw_stream(c, identity, at).await;
    let hello = Hello::Server {
        job: job.into(),
        from,
        worker: 0,
        digest,
        uploads: [Digest([0; 32]), Digest([0; 32])],
    };
    raw_control(&mut s, &hello).await;
    (ep, conn, s, r)
}

/// A link that is not the job's to make (here server-1's own identity linking to server-1 as
/// server 0, before the parties upload) is refused by itself, and the job runs with the
/// genuine link: before, it failed the job, so any configured server that knew a job id could
/// end it (a review's finding).
#[test]
fn a_link_that_is_not_the_jobs_to_make_is_refused_alone() {
    let c = Cluster::new("attack-foreign-link", 2, Limits::default());
    let spec = c.spec("foreign", JobParams::default());
    let digest = spec.digest().unwrap();
    // nodes[2] is server-1.
    let mut forged = rt().block_on(server_link(&c, "server-1", 2, "foreign", 0, digest));
    let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
    let (ra, rb) = c.run(&spec, &a, &b);
    let words =
        |r: Vec<ppea::net::party::ServerResult>| r.into_iter().map(|x| x.words).collect::<Vec<_>>();
    let rows = finish_party(&a, &words(ra.expect("the job runs")), &spec.params).unwrap();
    assert!(rows.iter().filter(|r| r.matched).count() > 100);
    finish_party(&b, &words(rb.expect("the job runs")), &spec.params).unwrap();
    let answer = rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(20), read_control::<Ack>(&mut forged.3)).await
    });
    match answer {
        Ok(Some(Ack::Refused(why))) => {
            assert!(why.contains("cannot link as server 0"), "{why}")
        }
        other => panic!("the forged link got {other:?}"),
    }
}

/// A link that reaches a job past its linking (here server-1's identity greeting server-0
/// again while server-0 computes) is refused at once, not held unread with its connection and
/// the data it sent until the job ends (a review's finding: up to 128 MiB per connection, for
/// up to `job_secs`).
#[test]
fn a_link_to_a_running_job_is_refused_at_once() {
    let limits = Limits {
        wait_secs: 5,
        silence_secs: 15,
        ..Limits::default()
    };
    let c = Cluster::new("attack-late-link", 2, limits);
    let spec = acking_server_1(&c, "late");
    let digest = spec.digest().unwrap();
    let job = std::thread::scope(|scope| {
        let job = scope.spawn(|| both_upload_to_server_0(&c, &spec, Duration::from_secs(120)));
        // Until server-0 is past its linking: a greeting then gets "already running" (before
        // it, a greeting waiting with the uploads is refused once the linking is done, as not
        // a link of the job).
        let mut answers = Vec::new();
        for _ in 0..40 {
            let answer = rt().block_on(async {
                let mut late = server_link(&c, "server-1", 1, "late", 1, digest).await;
                tokio::time::timeout(Duration::from_secs(5), read_control::<Ack>(&mut late.3)).await
            });
            let running =
                matches!(&answer, Ok(Some(Ack::Refused(why))) if why.contains("already running"));
            answers.push(format!("{answer:?}"));
            if running {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        assert!(
            answers
                .last()
                .is_some_and(|a| a.contains("already running")),
            "{answers:?}"
        );
        job.join().unwrap()
    });
    for r in job {
        let e = r.expect_err("server-1 says nothing").to_string();
        assert!(e.contains("silence_secs"), "{e}");
    }
    c.still_serves("after-late-link");
}

/// `id`'s upload of `data` as side `side` of `spec`, to server 0 alone (its share of two), to
/// the end of the job.
async fn upload_to_server_0(
    spec: &JobSpec,
    side: u8,
    data: &PartyData,
    id: &Identity,
    progress: &dyn ppea::net::progress::PartyProgress,
) -> ppea::Result<ppea::net::party::ServerResult> {
    let z = share_compressed(&data.z, 2).unwrap();
    let ep = id.client_endpoint().unwrap();
    let share = ZShare::Msg(&z[0]);
    let r = upload_to(&ep, spec, 0, side, data, share, None, None, T, progress).await;
    ep.close(0u32.into(), b"done");
    r
}

/// Both parties' uploads to server 0 of `c` under `spec`, each to the end of its job, within
/// `watchdog` (a regression fails instead of hanging).
fn both_upload_to_server_0(
    c: &Cluster,
    spec: &JobSpec,
    watchdog: Duration,
) -> [ppea::Result<()>; 2] {
    let quiet = ppea::net::progress::Lines(|_: &str| {});
    let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
    let (ia, ib) = (c.identity("party-a"), c.identity("party-b"));
    let (ra, rb) = rt().block_on(async {
        let both = async {
            tokio::join!(
                upload_to_server_0(spec, 0, &a, &ia, &quiet),
                upload_to_server_0(spec, 1, &b, &ib, &quiet)
            )
        };
        tokio::time::timeout(watchdog, both)
            .await
            .expect("the parties got no answer: the job was held")
    });
    [ra.map(|_| ()), rb.map(|_| ())]
}

/// A live server that stops answering (here one holding server-1's real certificate, that
/// accepts server-0's link and never acknowledges it; its keep-alives keep the connection
/// open) fails the job after `silence_secs`, naming it, instead of holding server-0's job and
/// both parties' bookings forever; both parties get the reason, and server-0 serves on.
#[test]
fn a_silent_server_fails_the_job_after_the_silence_limit() {
    let limits = Limits {
        wait_secs: 2,
        silence_secs: 4,
        ..Limits::default()
    };
    let c = Cluster::new("attack-silent", 2, limits);
    let spec = mute_server_1(&c, "silent");
    // A watchdog far above the limit.
    for r in both_upload_to_server_0(&c, &spec, Duration::from_secs(600)) {
        let e = r.expect_err("the job fails").to_string();
        assert!(e.contains("silence_secs") && e.contains("server 1"), "{e}");
    }
    c.still_serves("after-silent");
}

/// A peer that keeps a job alive without finishing it cannot hold it past `job_secs`: here
/// server 1 answers nothing and the silence limit is far away (600 s), as it is for a peer
/// that sends a little before each silence limit runs out (each wait is bounded, the whole
/// job was not). The job fails at its time limit, both parties get the reason naming the
/// limit, and server 0 serves on, with both parties' upload slots given back (one each: a slot
/// still held would refuse the next job's upload).
#[test]
fn a_job_cannot_outlive_its_time_limit() {
    // Room for the next job on a loaded machine; far below the silence limit.
    let limits = Limits {
        wait_secs: 2,
        silence_secs: 600,
        job_secs: 30,
        max_jobs_per_party: 1,
        ..Limits::default()
    };
    let c = Cluster::new("attack-job-limit", 2, limits);
    let spec = mute_server_1(&c, "job-limit");
    // A watchdog far below the silence limit: only the job limit can end the job in time.
    for r in both_upload_to_server_0(&c, &spec, Duration::from_secs(120)) {
        let e = r.expect_err("the job fails").to_string();
        assert!(e.contains("job_secs") && e.contains("ran for 30 s"), "{e}");
    }
    c.still_serves("after-job-limit");
}

/// A job whose estimated peak on the dealer (`ppea::model::footprint::dealer_bytes`, from the
/// material bound the servers' links state) does not fit the dealer's memory budget is refused
/// when its first link arrives, before any material is generated: both parties are told it is
/// the dealer's memory budget, with the budget but not the estimate (which would tell each
/// party the other's size), and the dealer and the servers keep serving jobs that fit (the
/// second one only if the first gave its booking back).
#[test]
fn a_job_beyond_the_dealers_memory_budget_is_refused_before_it_starts() {
    use ppea::model::footprint::{BASE_BYTES, dealer_bytes, mib};
    let p = JobParams::default();
    let (a, b) = prepare(EvalProtocol::Standard, &p);
    // The dealer has room for one default job beside the process itself; the servers have
    // their default budgets.
    let words = |p: &JobParams| p.max_material_words(a.rows.len(), b.rows.len()) as u64;
    let room = dealer_bytes(words(&p), 2);
    let limits = Limits {
        wait_secs: 10,
        ..Limits::default()
    };
    let dealer_limits = Limits {
        memory_mib: mib(BASE_BYTES + room) + 1,
        ..limits.clone()
    };
    let c = Cluster::with_dealer_limits("attack-dealer-memory", 2, limits, dealer_limits.clone());
    // Twice the candidates per entity: about twice the dealer's material.
    let mut big = JobParams::default();
    big.blocking.candidates *= 2;
    let needed = dealer_bytes(words(&big), 2);
    assert!(needed > room + (1 << 20));
    let (ba, bb) = prepare(EvalProtocol::Standard, &big);
    let spec = c.spec("dealer-memory-0", big);
    let (ra, rb) = c.run(&spec, &ba, &bb);
    for (party, r) in [("A", ra), ("B", rb)] {
        let e = r.expect_err("the job is refused").to_string();
        assert!(e.contains("the dealer refused the link"), "{party}: {e}");
        assert!(e.contains("dealer's memory budget"), "{party}: {e}");
        assert!(!e.contains(&format!("{} MiB", mib(needed))), "{party}: {e}");
        assert!(
            e.contains(&format!("budget of {} MiB", dealer_limits.memory_mib)),
            "{party}: {e}"
        );
    }
    // Jobs that fit still run, one after the other (each gives its booking back).
    c.still_serves("after-dealer-memory");
    c.still_serves("after-dealer-memory-again");
}

/// A party that announces a large upload (booking memory) and then sends nothing cannot hold
/// the budget: the server gives up on the upload after `wait_secs`, says why, and gives the
/// memory back, so the party's next job fits again.
#[test]
fn a_party_announcing_an_upload_and_stalling_gives_its_memory_back() {
    use ppea::model::footprint::{BASE_BYTES, mib, server_bytes};
    let p = JobParams::default();
    let (a, b) = prepare(EvalProtocol::Standard, &p);
    // Server 0 (where the upload stalls) draws its shares from seeds; the last server holds
    // these small ones (`held`), and must fit both sides too.
    let side_at =
        |held| server_bytes(&p, a.rows.len(), 2, held).max(server_bytes(&p, b.rows.len(), 2, held));
    let (side, room) = (side_at(false), 4 * side_at(true));
    let limits = Limits {
        wait_secs: 2,
        memory_mib: mib(BASE_BYTES + room),
        ..Limits::default()
    };
    // The stalled upload books just under half of the room: party-a's next upload would not fit
    // beside it.
    let (mut lo, mut hi) = (1usize, 1usize << 30);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if server_bytes(&p, mid, 2, false) <= room / 2 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let rows = lo as u64;
    assert!(
        server_bytes(&p, lo, 2, false) + side > room / 2,
        "without the release, A's next upload would not fit"
    );
    let c = Cluster::new("attack-stall", 2, limits);
    let ia = c.identity("party-a");
    let spec = c.spec("stall", p.clone());
    let server = c.nodes[1].node.clone();
    let answer = rt().block_on(async move {
        let ep = ia.client_endpoint().unwrap();
        let conn = ep
            .connect(server.addr.parse().unwrap(), &server.name)
            .unwrap()
            .await
            .unwrap();
        let (s, r) = conn.open_bi().await.unwrap();
        let (mut s, mut r) = ppea::net::wire::framed(s, r, PeerName::Server(0), 1 << 20);
        let hello = Hello::Upload {
            spec: Box::new(spec),
            side: 0,
            rows,
            tokens: 0,
            agreement: [0; 32],
        };
        s.control(&hello).await.unwrap();
        // Nothing more is sent; the connection stays alive (keep-alives).
        tokio::time::timeout(Duration::from_secs(20), r.control::<Outcome>())
            .await
            .expect("the server answers within its wait limit")
    });
    match answer {
        Ok(Outcome::Failed(why)) => {
            assert!(why.contains("wait_secs") && why.contains("upload"), "{why}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    c.still_serves("after-stall");
}
