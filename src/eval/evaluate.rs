//! End-to-end evaluation: both parties and all servers of a job on one machine, judged against
//! the dataset's gold links (`scripts/eval.sh`).
//!
//! The parties prepare and share exactly as in a deployment; the servers run [`crate::model::align`]
//! over in-memory channels with a dealer; the parties reconstruct their results. The harness,
//! which holds both parties' row permutations and the gold links, then computes quality and
//! fairness, and compares every decision with the plaintext reference of the same model.

use crate::error::{Error, Result};
use crate::eval::metrics::{Groups, Judged, Quality, degree_bucket, groups, quality};
use crate::model::align::{
    JobParams, PartyData, PartyShares, ResultRow, align_worker, audit_totals, finish_party,
    job_seed, prepare_party_known, reference,
};
use crate::model::blocking::{BlockingKey, Candidates};
use crate::model::import::Dataset;
use crate::mpc::local::run_local_workers;
use crate::mpc::mesh::Mesh;
use crate::mpc::prg::{Prg, Seed};
use crate::mpc::share::{ShareMsg, share_compressed};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Which entities are aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalProtocol {
    /// The literature protocol: candidates are the test entities of both sides.
    Standard,
    /// The whole graphs.
    Open,
}

impl std::str::FromStr for EvalProtocol {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "standard" => Ok(EvalProtocol::Standard),
            "open" => Ok(EvalProtocol::Open),
            _ => Err(format!(
                "unknown protocol {s:?} (expected standard or open)"
            )),
        }
    }
}

/// Which gold links are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The tuning links (the first 30%): for choosing parameters.
    Tune,
    /// The test links (the remaining 70%): for reporting.
    Test,
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tune" => Ok(Split::Tune),
            "test" => Ok(Split::Test),
            _ => Err(format!("unknown split {s:?} (expected tune or test)")),
        }
    }
}

/// How an evaluation run is set up.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Which entities are aligned.
    pub protocol: EvalProtocol,
    /// Which links are judged (and, under the standard protocol, aligned).
    pub split: Split,
    /// Number of compute servers.
    pub servers: usize,
    /// Worker processes per server (1: each server is one process; more: each server's rows
    /// are dealt among that many workers, [`crate::model::shard`]).
    pub workers: usize,
    /// Job parameters.
    pub params: JobParams,
    /// Fixes the parties' row shuffles and blocking key (evaluation only) so that runs with
    /// different numbers of servers can be compared decision by decision. Share randomness
    /// always comes from the operating system's CSPRNG.
    pub seed: Option<u64>,
    /// Use the tuning links (`sup_ent_ids`, OpenEA `train_links`) as known links both parties
    /// hold (sets `model.known_links`); they are excluded from the aligned rows.
    pub known_links: bool,
    /// Also write the plaintext reference's pair scores here ([`crate::eval::score_dump`]).
    pub dump_scores: Option<std::path::PathBuf>,
}

/// The evaluation report (one JSON line).
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Hits@1 (secure top-1 decisions), Hits@10 and MRR (plaintext reference ranking),
    /// precision, recall, F1, PRAUC and blocking recall.
    #[serde(flatten)]
    pub quality: Quality,
    /// Fraction of rows (both sides) where the secure pipeline took the reference's decisions.
    pub plaintext_agreement: f64,
    /// Rows aligned on side A.
    pub entities_a: usize,
    /// Rows aligned on side B.
    pub entities_b: usize,
    /// Candidate pairs scored (both directions).
    pub candidate_pairs: usize,
    /// Wall time of the whole job (preparation, upload, secure computation, results).
    pub wall_seconds: f64,
    /// Wall time of the plaintext reference of the same model on the same machine: party
    /// preparation, candidate lists and the reference decisions.
    pub plaintext_seconds: f64,
    /// Known links (anchors) both parties used.
    pub known_links: usize,
    /// Bytes one server sent to the other servers (largest over servers).
    pub bytes_per_server: u64,
    /// Bytes the parties uploaded to the servers (both parties).
    pub upload_bytes: u64,
    /// Bytes the dealer sent (0 in a dealer-free job).
    pub dealer_bytes: u64,
    /// Where the correlated randomness came from (`dealer`, `ot` or `replicated`).
    pub correlation: crate::mpc::source::Correlation,
    /// Communication rounds among the servers.
    pub rounds: u64,
    /// Number of compute servers.
    pub servers: usize,
    /// Worker processes per server (in-process runs; 1 over the network).
    pub workers: usize,
    /// Bytes one server's workers sent each other (largest over servers; 0 with one worker).
    pub worker_bytes_per_server: u64,
    /// Evaluation protocol.
    pub protocol: EvalProtocol,
    /// Judged split.
    pub split: Split,
    /// Digest of every entity-level decision (best candidate and reported match, both sides):
    /// equal digests mean identical decisions.
    pub decisions_digest: String,
    /// Per-group figures and gaps.
    pub groups: Groups,
    /// Precision and recall of the reported matches as the threshold rises (for the HTML
    /// report; not in the JSON).
    #[serde(skip)]
    pub pr_curve: Vec<crate::eval::metrics::PrPoint>,
}

fn links(ds: &Dataset, split: Split) -> &[(u32, u32)] {
    match split {
        Split::Tune => &ds.tune,
        Split::Test => &ds.test,
    }
}

/// The entities each party aligns under `protocol`.
pub fn scopes(ds: &Dataset, protocol: EvalProtocol, split: Split) -> (Vec<u32>, Vec<u32>) {
    match protocol {
        EvalProtocol::Standard => {
            let mut a: Vec<u32> = links(ds, split).iter().map(|p| p.0).collect();
            let mut b: Vec<u32> = links(ds, split).iter().map(|p| p.1).collect();
            a.sort_unstable();
            a.dedup();
            b.sort_unstable();
            b.dedup();
            (a, b)
        }
        EvalProtocol::Open => (
            (0..ds.a.len() as u32).collect(),
            (0..ds.b.len() as u32).collect(),
        ),
    }
}

/// One server's shares of a party's upload.
fn shares_for(data: &PartyData, k: usize) -> Result<(Vec<ShareMsg>, Vec<ShareMsg>)> {
    let z = share_compressed(&data.z, k)?;
    let ids = share_compressed(&data.ids, k)?;
    Ok((z, ids))
}

fn progress(msg: &str, t0: Instant) {
    eprintln!("[{:7.2}s] {msg}", t0.elapsed().as_secs_f64());
}

/// The blocking key and the two parties' row shuffles of an evaluation run with a fixed seed
/// (the same in-process and over the network, so the two can be compared decision by decision).
pub fn seeded(seed: u64) -> (BlockingKey, Prg, Prg) {
    let mut prg = Prg::new(&Seed([7; 32]), seed);
    let key = BlockingKey(prg.seed().0);
    let a = Prg::new(&prg.seed(), 0);
    let b = Prg::new(&prg.seed(), 0);
    (key, a, b)
}

/// The job id of evaluation runs (it seeds candidate padding, so both paths use the same).
pub const EVAL_JOB: &str = "eval";

/// What the servers' part of a job produced (used by the in-process and networked runs).
pub struct JobOutcome {
    /// Every server's output shares for A's rows, by server.
    pub a: Vec<Vec<u64>>,
    /// Every server's output shares for B's rows, by server.
    pub b: Vec<Vec<u64>>,
    /// The candidate lists (identical on every server).
    pub candidates: Candidates,
    /// Largest bytes sent by one server to the others.
    pub bytes_per_server: u64,
    /// Dealer bytes.
    pub dealer_bytes: u64,
    /// Bytes one server's workers sent each other (largest over servers; 0 with one worker).
    pub worker_bytes_per_server: u64,
    /// Rounds.
    pub rounds: u64,
}

/// A labelled sample: own entity, the other side's id.
type Labels = Vec<(u32, String)>;

/// One party's shares for the servers: vectors, ids, tokens.
pub type Uploads = (Vec<ShareMsg>, Vec<ShareMsg>, crate::model::blocking::Tokens);

/// Runs the servers' part in this process.
pub async fn servers_inprocess(
    k: usize,
    uploads: [Uploads; 2],
    params: &JobParams,
    job_id: &str,
) -> Result<JobOutcome> {
    servers_inprocess_audited(k, uploads, [None, None], params, job_id).await
}

/// [`servers_inprocess`] with each party's shares of its audit words (audited jobs).
pub async fn servers_inprocess_audited(
    k: usize,
    uploads: [Uploads; 2],
    audit: [Option<Vec<ShareMsg>>; 2],
    params: &JobParams,
    job_id: &str,
) -> Result<JobOutcome> {
    servers_inprocess_deviating(k, uploads, audit, params, job_id, None).await
}

/// What each of `k` in-process servers receives from the two parties (by server), and the
/// dealer's bound on material for the job.
pub fn inprocess_inputs(
    k: usize,
    uploads: [Uploads; 2],
    audit: [Option<Vec<ShareMsg>>; 2],
    params: &JobParams,
) -> (usize, Vec<(PartyShares, PartyShares)>) {
    let [(za, ia, ta), (zb, ib, tb)] = uploads;
    let [aa, ab] = audit.map(|a| -> Vec<Vec<u64>> {
        match a {
            Some(v) => v.into_iter().map(|m| m.expand().into_inner()).collect(),
            None => vec![Vec::new(); k],
        }
    });
    // The dealer refuses requests above the job's declared bound, as a networked one does.
    let max_words = params.max_material_words(ta.own.len(), tb.own.len());
    let per_server: Vec<(PartyShares, PartyShares)> = za
        .into_iter()
        .zip(ia)
        .zip(zb.into_iter().zip(ib))
        .zip(aa.into_iter().zip(ab))
        .map(|(((za, ia), (zb, ib)), (aa, ab))| {
            (
                PartyShares {
                    z: za.into_rows(),
                    ids: ia.expand().into_inner(),
                    audit: aa,
                    tokens: ta.clone(),
                },
                PartyShares {
                    z: zb.into_rows(),
                    ids: ib.expand().into_inner(),
                    audit: ab,
                    tokens: tb.clone(),
                },
            )
        })
        .collect();
    (max_words, per_server)
}

/// [`servers_inprocess_audited`] with one server deviating from the protocol (attack tests:
/// [`crate::mpc::channel::Deviation`]).
pub async fn servers_inprocess_deviating(
    k: usize,
    uploads: [Uploads; 2],
    audit: [Option<Vec<ShareMsg>>; 2],
    params: &JobParams,
    job_id: &str,
    deviation: Option<(usize, crate::mpc::channel::Deviation)>,
) -> Result<JobOutcome> {
    servers_inprocess_workers(k, 1, uploads, audit, params, job_id, deviation).await
}

/// [`servers_inprocess_deviating`] with every server split into `workers` workers
/// ([`crate::model::align::align_worker`]); each server's result is its workers' rows in order
/// with worker 0's trailer, its traffic the sum of its workers'.
pub async fn servers_inprocess_workers(
    k: usize,
    workers: usize,
    uploads: [Uploads; 2],
    audit: [Option<Vec<ShareMsg>>; 2],
    params: &JobParams,
    job_id: &str,
    deviation: Option<(usize, crate::mpc::channel::Deviation)>,
) -> Result<JobOutcome> {
    let (max_words, per_server) = inprocess_inputs(k, uploads, audit, params);
    let trailer = params.trailer_words();
    // Every worker of a server starts from the server's inputs (in a deployment the workers
    // would draw or receive only the rows they touch).
    let inputs = Arc::new(std::sync::Mutex::new(
        per_server
            .into_iter()
            .map(|x| vec![Some(x); workers])
            .collect::<Vec<_>>(),
    ));
    let params = Arc::new(params.clone());
    let seed = Arc::new(job_seed(job_id));
    let correlation = params.correlation;
    let runs = run_local_workers(
        k,
        workers,
        correlation,
        max_words,
        deviation.into_iter().collect(),
        move |mut eng, mut mesh| {
            let (pa, pb) = inputs.lock().expect("inputs")[eng.me()][mesh.me()]
                .take()
                .expect("one job per worker");
            let params = params.clone();
            let seed = seed.clone();
            async move {
                let r = align_worker(&mut eng, &mut mesh, pa, pb, &params, &seed, &|_| {}).await?;
                Ok(((r, mesh.words_sent()), eng))
            }
        },
    )
    .await?;
    let cand = runs[0].outputs[0].0.1.clone();
    if runs.iter().flat_map(|r| &r.outputs).any(|o| o.0.1 != cand) {
        return Err(Error::invalid("servers computed different candidate lists"));
    }
    let join = |s: usize, side: fn(&crate::model::align::ServerOutput) -> &Vec<u64>| {
        let mut out = Vec::new();
        for run in &runs {
            let words = side(&run.outputs[s].0.0);
            out.extend_from_slice(&words[..words.len() - trailer]);
        }
        let first = side(&runs[0].outputs[s].0.0);
        out.extend_from_slice(&first[first.len() - trailer..]);
        out
    };
    let per_server = |f: fn(&crate::mpc::protocol::Stats) -> u64| -> Vec<u64> {
        (0..k)
            .map(|s| runs.iter().map(|r| f(&r.stats[s])).sum())
            .collect()
    };
    Ok(JobOutcome {
        a: (0..k).map(|s| join(s, |o| &o.a)).collect(),
        b: (0..k).map(|s| join(s, |o| &o.b)).collect(),
        candidates: cand,
        bytes_per_server: per_server(|s| s.bytes_sent).into_iter().max().unwrap_or(0),
        dealer_bytes: runs.iter().map(|r| r.dealer.bytes_sent).sum(),
        worker_bytes_per_server: (0..k)
            .map(|s| runs.iter().map(|r| 8 * r.outputs[s].1).sum())
            .max()
            .unwrap_or(0),
        rounds: runs
            .iter()
            .flat_map(|r| r.stats.iter().map(|s| s.rounds))
            .max()
            .unwrap_or(0),
    })
}

/// Runs a whole job in this process and judges it.
pub async fn evaluate_inprocess(ds: &Dataset, opts: &EvalOptions) -> Result<EvalReport> {
    Ok(run_inprocess(ds, opts).await?.report)
}

/// Runs a whole job in this process (known links: the tuning links when the options ask for
/// them) and returns what the parties hold with the judged report.
pub async fn run_inprocess(ds: &Dataset, opts: &EvalOptions) -> Result<JobRun> {
    let known = if opts.known_links || opts.params.model.known_links {
        ds.tune.clone()
    } else {
        Vec::new()
    };
    job_inprocess(ds, opts, &known).await
}

/// What one in-process job leaves with the parties (for bootstrapping).
pub struct JobRun {
    /// The judged job.
    pub report: EvalReport,
    /// A's uploaded rows (row -> entity) and results.
    pub a: (Vec<u32>, Vec<ResultRow>),
    /// B's uploaded rows and results.
    pub b: (Vec<u32>, Vec<ResultRow>),
    /// Audited jobs: both sides' reports as A and as B read them.
    pub audit: Option<[[crate::model::audit::AuditReport; 2]; 2]>,
}

/// Runs one job in this process with the given known links (pairs of A's and B's entities, in
/// the agreed order) and judges it.
pub async fn job_inprocess(
    ds: &Dataset,
    opts: &EvalOptions,
    known: &[(u32, u32)],
) -> Result<JobRun> {
    let t0 = Instant::now();
    let k = opts.servers;
    let mut params = opts.params.clone();
    params.reveal_best = true;
    params.model.known_links |= opts.known_links;
    params.validate()?;
    // The dump's file first: a path that cannot be written fails before the job.
    let dump = match &opts.dump_scores {
        Some(path) => Some(crate::eval::score_dump::Dump::create(path)?),
        None => None,
    };
    let (known_a, known_b): (Vec<u32>, Vec<u32>) = if params.model.known_links {
        known.iter().copied().unzip()
    } else {
        (Vec::new(), Vec::new())
    };
    let n_known = known_a.len();
    let (key, mut shuffle_a, mut shuffle_b) = match opts.seed {
        Some(s) => seeded(s),
        None => (BlockingKey::random(), Prg::fresh(), Prg::fresh()),
    };
    let (sa, sb) = scopes(ds, opts.protocol, opts.split);
    progress(
        &format!(
            "preparing parties ({} and {} entities to align)",
            sa.len(),
            sb.len()
        ),
        t0,
    );
    let t_prep = Instant::now();
    let audit_key = key.clone();
    let (mut pa, mut pb) = {
        let (a, b, p) = (ds.a.clone(), ds.b.clone(), params.clone());
        let key2 = key.clone();
        let pa = tokio::task::spawn_blocking(move || {
            prepare_party_known(&a, &sa, &known_a, &p, &key2, &mut shuffle_a)
        });
        let p = params.clone();
        let pb = tokio::task::spawn_blocking(move || {
            prepare_party_known(&b, &sb, &known_b, &p, &key, &mut shuffle_b)
        });
        let join = |r: std::result::Result<Result<PartyData>, tokio::task::JoinError>| {
            r.map_err(|e| Error::invalid(format!("party task failed: {e}")))?
        };
        (join(pa.await)?, join(pb.await)?)
    };
    // The audit's labelled sample: the judged gold links (each side's own view of them).
    if params.audit.enabled {
        let gold = links(ds, opts.split);
        let (la, lb): (Labels, Labels) = if params.audit.labelled {
            gold.iter()
                .map(|&(a, b)| {
                    (
                        (a, ds.b.ids[b as usize].clone()),
                        (b, ds.a.ids[a as usize].clone()),
                    )
                })
                .unzip()
        } else {
            (Vec::new(), Vec::new())
        };
        crate::model::audit::attach(&mut pa, &ds.a, &params, &audit_key, &la)?;
        crate::model::audit::attach(&mut pb, &ds.b, &params, &audit_key, &lb)?;
    }
    let prep_seconds = t_prep.elapsed().as_secs_f64();
    let (za, ia) = shares_for(&pa, k)?;
    let (zb, ib) = shares_for(&pb, k)?;
    let audit_shares = if params.audit.enabled {
        [
            Some(share_compressed(&pa.audit, k)?),
            Some(share_compressed(&pb.audit, k)?),
        ]
    } else {
        [None, None]
    };
    let upload_bytes: usize = za
        .iter()
        .chain(&ia)
        .chain(&zb)
        .chain(&ib)
        .chain(audit_shares.iter().flatten().flatten())
        .map(ShareMsg::wire_bytes)
        .sum::<usize>()
        + 8 * [&pa, &pb]
            .iter()
            .map(|p| {
                p.tokens
                    .own
                    .iter()
                    .chain(&p.tokens.neighbour)
                    .map(Vec::len)
                    .sum::<usize>()
            })
            .sum::<usize>()
            * k;
    progress(&format!("secure alignment on {k} servers"), t0);
    let out = servers_inprocess_workers(
        k,
        opts.workers,
        [(za, ia, pa.tokens.clone()), (zb, ib, pb.tokens.clone())],
        audit_shares,
        &params,
        EVAL_JOB,
        None,
    )
    .await?;
    progress("reconstructing results and judging", t0);
    let ra = finish_party(&pa, &out.a, &params)?;
    let rb = finish_party(&pb, &out.b, &params)?;
    let audit = if params.audit.enabled {
        let ta = audit_totals(&pa, &out.a, &params)?;
        let tb = audit_totals(&pb, &out.b, &params)?;
        let (ga, gb) = (Some(pa.groups.as_slice()), Some(pb.groups.as_slice()));
        let by_a = crate::model::audit::finish(&ta, &params, [ga, None])?;
        let by_b = crate::model::audit::finish(&tb, &params, [None, gb])?;
        Some([by_a, by_b])
    } else {
        None
    };
    let wall = t0.elapsed().as_secs_f64();
    let mut report = judge(
        ds,
        links(ds, opts.split),
        &pa,
        &pb,
        &ra,
        &rb,
        &out.candidates,
        &params,
    );
    if let Some(dump) = dump {
        let gold = links(ds, opts.split);
        let scale = (params.model.width(), params.frac_bits);
        dump.write(&pa, &pb, scale, &out.candidates, gold)?;
    }
    report.split = opts.split;
    report.wall_seconds = wall;
    report.plaintext_seconds += prep_seconds;
    report.known_links = n_known;
    report.bytes_per_server = out.bytes_per_server;
    report.dealer_bytes = out.dealer_bytes;
    report.rounds = out.rounds;
    report.upload_bytes = upload_bytes as u64;
    report.servers = k;
    report.workers = opts.workers;
    report.worker_bytes_per_server = out.worker_bytes_per_server;
    report.protocol = opts.protocol;
    Ok(JobRun {
        report,
        a: (pa.rows.clone(), ra),
        b: (pb.rows.clone(), rb),
        audit,
    })
}

/// Judges a job's results against gold links and the plaintext reference.
#[allow(clippy::too_many_arguments)]
pub fn judge(
    ds: &Dataset,
    gold: &[(u32, u32)],
    pa: &PartyData,
    pb: &PartyData,
    ra: &[ResultRow],
    rb: &[ResultRow],
    cand: &Candidates,
    params: &JobParams,
) -> EvalReport {
    // The plaintext reference of the same job: candidate lists and decisions.
    let t_ref = Instant::now();
    let cand_ref = crate::model::blocking::candidates(
        &pa.tokens,
        &pb.tokens,
        &params.blocking,
        &job_seed(EVAL_JOB),
    );
    let (ref_a, ref_b) = reference(&pa.z, &pb.z, params, &cand_ref);
    let plaintext_seconds = t_ref.elapsed().as_secs_f64();
    let (ref_a, ref_b) = if &cand_ref == cand {
        (ref_a, ref_b)
    } else {
        reference(&pa.z, &pb.z, params, cand)
    };
    let k = cand.per_row;
    let (row_a, row_b) = (pa.row_of(), pb.row_of());
    let labelled = ds.a.groups.iter().any(Option::is_some);
    let degree: Vec<usize> = ds.a.adjacency().iter().map(Vec::len).collect();
    let mut judged = Vec::new();
    for &(a, b) in gold {
        let (Some(&ia), Some(&ib)) = (row_a.get(&a), row_b.get(&b)) else {
            continue;
        };
        let res = &ra[ia];
        let best = res.best.expect("evaluation jobs reveal the best candidate");
        let slots = &cand.a[ia * k..(ia + 1) * k];
        let rank = slots.iter().position(|&c| c as usize == ib).map(|t| {
            let v = ref_a.ranking[ia * k + t];
            let row = &ref_a.ranking[ia * k..(ia + 1) * k];
            1 + row.iter().filter(|&&x| x > v).count()
                + row[..t].iter().filter(|&&x| x == v).count()
        });
        let group = if labelled {
            ds.a.groups[a as usize]
                .clone()
                .unwrap_or_else(|| "(none)".into())
        } else {
            degree_bucket(degree[a as usize]).to_string()
        };
        judged.push(Judged {
            group,
            top1_correct: best.0 as usize == ib,
            rank,
            top1_score: best.1,
            matched: res.matched,
            match_correct: res.matched && rb[ib].matched && rb[ib].token == res.token,
            match_score: if res.matched { res.score } else { 0.0 },
            in_candidates: rank.is_some(),
        });
    }
    let refs: Vec<&Judged> = judged.iter().collect();
    let q = quality(&refs);
    let agree_a = ra
        .iter()
        .enumerate()
        .filter(|(r, x)| {
            x.best.map(|b| b.0) == Some(ref_a.best[*r]) && x.matched == ref_a.matched[*r]
        })
        .count();
    let agree_b = rb
        .iter()
        .enumerate()
        .filter(|(r, x)| {
            x.best.map(|b| b.0) == Some(ref_b.best[*r]) && x.matched == ref_b.matched[*r]
        })
        .count();
    EvalReport {
        quality: q,
        plaintext_agreement: (agree_a + agree_b) as f64 / (ra.len() + rb.len()).max(1) as f64,
        entities_a: pa.rows.len(),
        entities_b: pb.rows.len(),
        candidate_pairs: (pa.rows.len() + pb.rows.len()) * k,
        wall_seconds: 0.0,
        plaintext_seconds,
        known_links: 0,
        bytes_per_server: 0,
        upload_bytes: 0,
        dealer_bytes: 0,
        correlation: params.correlation,
        rounds: 0,
        servers: 0,
        workers: 1,
        worker_bytes_per_server: 0,
        protocol: EvalProtocol::Standard,
        split: Split::Test,
        decisions_digest: decisions_digest(pa, pb, ra, rb),
        groups: groups(&judged, if labelled { "label" } else { "degree" }),
        pr_curve: crate::eval::metrics::pr_curve(&judged, 400),
    }
}

/// A digest of every entity-level decision: for each row of both sides, the entity, the entity
/// of its best candidate, and whether and with whom it was matched (by link token).
pub fn decisions_digest(
    pa: &PartyData,
    pb: &PartyData,
    ra: &[ResultRow],
    rb: &[ResultRow],
) -> String {
    let by_token: HashMap<u64, u32> = rb
        .iter()
        .filter(|r| r.matched)
        .map(|r| (r.token, r.entity))
        .collect();
    let mut lines: Vec<(u8, u32, u32, i64)> = Vec::new();
    for r in ra {
        let best = r.best.and_then(|b| pb.rows.get(b.0 as usize).copied());
        let best = best.unwrap_or(u32::MAX);
        let partner = if r.matched {
            by_token.get(&r.token).map_or(-2, |&e| e as i64)
        } else {
            -1
        };
        lines.push((0, r.entity, best, partner));
    }
    for r in rb {
        let best = r.best.and_then(|b| pa.rows.get(b.0 as usize).copied());
        let best = best.unwrap_or(u32::MAX);
        lines.push((1, r.entity, best, r.matched as i64));
    }
    lines.sort_unstable();
    let mut bytes = Vec::with_capacity(lines.len() * 17);
    for (s, e, b, p) in lines {
        bytes.push(s);
        bytes.extend(e.to_le_bytes());
        bytes.extend(b.to_le_bytes());
        bytes.extend(p.to_le_bytes());
    }
    format!("{:016x}", crate::model::features::hash64(&[&bytes]))
}
