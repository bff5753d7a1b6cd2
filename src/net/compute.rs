//! A compute server's job: collect both uploads, link up with the other servers and the dealer,
//! run the secure alignment, and answer each party with only its own result shares.

use crate::error::{Error, PeerName, Result};
use crate::model::align::{PartyShares, ServerOutput, aggregate_answers, align_worker, job_seed};
use crate::model::shard::Shards;
use crate::mpc::engine::Engine;
use crate::mpc::mesh::Solo;
use crate::mpc::ot;
use crate::mpc::protocol::Session;
use crate::mpc::source::{Correlation, Source};
use crate::net::config::ServerConfig;
use crate::net::daemon::{
    DISAGREE, Event, Jobs, Upload, answer_link, book, next_event_until, refuse_aside, refuse_event,
    refuse_late, timed_out,
};
use crate::net::dial::open;
use crate::net::job::{Ack, DealerHello, Hello, JobSpec, JobStats, Outcome, OutputMode};
use crate::net::quic::{QuicMesh, QuicTransport};
use crate::net::registry::{Ended, Phase, Status};
use crate::net::upload::upload_digest;
use crate::net::wire::{FrameRecv, FrameSend, set_silence};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// A party's upload and the stream to answer it on.
type Party = (Box<Upload>, FrameSend);

/// A compute server's job: collect both uploads, link up, compute, answer each party. A party
/// that disconnects before the job starts takes its upload with it; a party that disconnects
/// later fails the job.
pub(crate) async fn compute_job(
    cfg: &ServerConfig,
    ep: &quinn::Endpoint,
    jobs: &Jobs,
    job: &str,
    mut rx: mpsc::UnboundedReceiver<Event>,
) -> Ended {
    let wait = Duration::from_secs(cfg.limits.wait_secs);
    let probe = cfg.liveness().unwrap_or_default().keepalive;
    let (mut parties, stash) = match collect(jobs, job, &mut rx, wait, probe).await {
        Collected::Both(parties, stash) => (parties, stash),
        Collected::Abandoned => return Ended::Dropped,
        Collected::Failed(mut held, e) => {
            warn!(job, "job ended before it started: {e}");
            for (up, reply) in &mut held {
                let _ = reply.control(&Outcome::Failed(e.to_string())).await;
                reply.finish().await;
                info!(job, party = %up.from, "upload dropped");
            }
            return Ended::Dropped;
        }
    };
    let (tx, mut updates) = mpsc::unbounded_channel::<Status>();
    let report = |phase: Phase, waiting_for: Vec<String>, step: Option<&str>| {
        let st = Status {
            job: job.to_string(),
            phase,
            waiting_for,
            step: step.map(str::to_string),
        };
        book(jobs).set_status(st.clone(), Instant::now());
        let _ = tx.send(st);
    };
    // Rows per side, for the answers: the shares themselves are handed to the computation,
    // which frees them as it goes (memory).
    let rows = parties.each_ref().map(|(up, _)| up.shares.tokens.own.len());
    let [(a, ra), (b, rb)] = &mut parties;
    let shares = [std::mem::take(&mut a.shares), std::mem::take(&mut b.shares)];
    let end = cfg.job_end();
    let result = {
        let run = run_compute(cfg, ep, job, [a, b], shares, &mut rx, stash, wait, &report);
        // Tell both parties where the job stands while it runs.
        let forward = async {
            while let Some(st) = updates.recv().await {
                for r in [&mut *ra, &mut *rb] {
                    let _ = r.control(&Outcome::Status(st.clone())).await;
                }
            }
            std::future::pending::<()>().await
        };
        let names = [a.from.clone(), b.from.clone()];
        tokio::select! {
            r = run => r,
            _ = forward => unreachable!("forwarding ends only with the job"),
            side = disconnected([Some(&a.conn), Some(&b.conn)]) => Err(Error::invalid(format!(
                "{} disconnected during the job", names[side]
            ))),
            e = cfg.job_deadline(end) => Err(e),
        }
    };
    let result = result.map_err(|e| name_lost_server(e, &a.spec, cfg));
    if result.is_ok() {
        report(Phase::Delivering, Vec::new(), None);
    }
    // Only the latest of the statuses still queued: each send may wait `silence_secs` on a party
    // that does not read.
    let mut latest = None;
    while let Ok(st) = updates.try_recv() {
        latest = Some(st);
    }
    if let Some(st) = latest {
        for r in [&mut *ra, &mut *rb] {
            let _ = r.control(&Outcome::Status(st.clone())).await;
        }
    }
    // Both parties at once, so a party that is slow to acknowledge (or to read: bounded by
    // `silence_secs`) does not delay the other; each upload, with its booking, goes as soon as
    // its own party's answer is sent. A party reading its answer a little before each silence
    // limit runs out is cut off at the job's end (or `silence_secs` after the run, if later).
    let deliver_by = end.map(|e| e.max(tokio::time::Instant::now() + cfg.silence()));
    let result = &result;
    let answers = parties
        .into_iter()
        .enumerate()
        .map(|(side, (up, mut reply))| async move {
            let deliver = async {
                let sent = match result {
                    Ok(out) => {
                        let words = if side == 0 { &out.0.a } else { &out.0.b };
                        // A worker of a split server answers for its own rows; aggregate-only
                        // jobs' sums are in `words` already.
                        let (rows, width) = match up.spec.output {
                            OutputMode::Matches => (own_rows(&up.spec, cfg, rows, side), out.1),
                            OutputMode::Aggregate => (1, 2),
                        };
                        let words = words.clone();
                        async {
                            reply
                                .control(&Outcome::Done {
                                    rows: rows as u64,
                                    width: width as u64,
                                    // Traffic figures depend on the candidate lists (hence on
                                    // both parties' data): only evaluation jobs report them.
                                    stats: if up.spec.params.reveal_best {
                                        out.2
                                    } else {
                                        JobStats::default()
                                    },
                                })
                                .await?;
                            reply.words(&words).await
                        }
                        .await
                    }
                    Err(e) => reply.control(&Outcome::Failed(e.to_string())).await,
                };
                reply.finish().await;
                sent
            };
            let sent = match deliver_by {
                Some(by) => tokio::time::timeout_at(by, deliver)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::invalid(
                            "the party had not taken its answer by the job's time limit \
                         ([limits] job_secs)",
                        ))
                    }),
                None => deliver.await,
            };
            if let Err(e) = sent {
                warn!(job, party = %up.from, "could not deliver results: {e}");
            }
            drop(up);
        });
    // Late events are refused while the answers go out too.
    tokio::select! {
        _ = futures::future::join_all(answers) => {}
        never = refuse_late(&mut rx) => match never {},
    }
    match result {
        Ok(out) => {
            book(jobs).count_bytes(0, out.2.bytes_sent);
            info!(job, "job done");
            Ended::Done
        }
        Err(e) => {
            error!(job, "job failed: {e}");
            Ended::Failed
        }
    }
}

/// How collecting the uploads ended.
enum Collected {
    /// Both uploads, and the link requests that came in meanwhile.
    Both([Party; 2], Vec<Event>),
    /// Every party that uploaded disconnected: nothing is held any more.
    Abandoned,
    /// Waited too long: the uploads still held, and why.
    Failed(Vec<Party>, Error),
}

/// Why the upload `up` for `side` may not join the uploads `held` for `job`: another party
/// holds that side, the other side's upload names another party for it, or it names another
/// party for the other side than the one holding it.
fn upload_conflict(
    job: &str,
    held: &[Option<Party>; 2],
    side: usize,
    up: &Upload,
) -> Option<String> {
    let (name, from) = (["a", "b"][side], up.from.as_str());
    // A party that no held upload names learns nothing of who holds the job (before, it was
    // told both parties' names: a review's finding).
    let strangers = (held.iter().flatten()).all(|(h, _)| !h.spec.parties.iter().any(|p| p == from));
    if held.iter().any(Option::is_some) && strangers {
        return Some(format!(
            "job {job:?} is held by other parties here (use another job id)"
        ));
    }
    if let Some((old, _)) = &held[side]
        && old.from != from
    {
        return Some(format!(
            "job {job:?} already holds {}'s upload as party {name}",
            old.from
        ));
    }
    match &held[1 - side] {
        Some((other, _)) if other.spec.parties[side] != from => Some(format!(
            "job {job:?} is {}'s with {} as party {name}",
            other.from, other.spec.parties[side]
        )),
        Some((other, _)) if up.spec.parties[1 - side] != other.from => Some(format!(
            "job {job:?} is held by {} as party {}, not {}",
            other.from,
            ["a", "b"][1 - side],
            up.spec.parties[1 - side]
        )),
        _ => None,
    }
}

/// Collects both parties' uploads. An upload is dropped when its party disconnects; the wait
/// limit runs from the latest upload. Each party is told what the job waits for.
async fn collect(
    jobs: &Jobs,
    job: &str,
    rx: &mut mpsc::UnboundedReceiver<Event>,
    wait: Duration,
    probe: Duration,
) -> Collected {
    let mut held: [Option<Party>; 2] = [None, None];
    let mut stash: Vec<Event> = Vec::new();
    let mut deadline = tokio::time::Instant::now() + wait;
    loop {
        held = match held {
            [Some(mut a), Some(mut b)] => {
                // A party killed without a word still looks connected until the idle timeout:
                // both must acknowledge a message now, before their uploads are used.
                let st = Status {
                    job: job.to_string(),
                    phase: Phase::Starting,
                    waiting_for: vec![a.0.from.clone(), b.0.from.clone()],
                    step: None,
                };
                book(jobs).set_status(st.clone(), Instant::now());
                let (ok_a, ok_b) = tokio::join!(
                    answers(&a.0.conn, &mut a.1, &st, probe),
                    answers(&b.0.conn, &mut b.1, &st, probe)
                );
                if ok_a && ok_b {
                    stash.retain(Event::connected);
                    return Collected::Both([a, b], stash);
                }
                for (p, ok) in [(&a, ok_a), (&b, ok_b)] {
                    if !ok {
                        info!(job, party = %p.0.from, "party did not answer; its upload is dropped");
                        p.0.conn.close(SILENT_PARTY.into(), b"did not answer");
                    }
                }
                // The closed connection is noticed below, as any disconnection.
                [Some(a), Some(b)]
            }
            some => some,
        };
        let next = {
            let conns = [0, 1].map(|i| held[i].as_ref().map(|p| &p.0.conn));
            tokio::select! {
                ev = tokio::time::timeout_at(deadline, rx.recv()) => Ok(ev),
                side = disconnected(conns) => Err(side),
            }
        };
        match next {
            Ok(Ok(Some(Event::Upload(side, up, mut reply)))) => {
                let side = side as usize;
                // Only the party the held uploads name may upload a side, and a held upload
                // is replaced only by its own party's (a retry): another configured party
                // must not evict it, nor claim the other side, and so fail the job.
                if let Some(why) = upload_conflict(job, &held, side, &up) {
                    info!(job, party = %up.from, "upload refused: {why}");
                    // Answered aside: finishing a stream can wait for the peer, and the held
                    // uploads must not wait for that.
                    tokio::spawn(async move {
                        let _ = reply.control(&Outcome::Failed(why)).await;
                        reply.finish().await;
                        drop(up);
                    });
                    continue;
                }
                if let Some((_, mut old)) = held[side].take() {
                    let _ = old
                        .control(&Outcome::Failed(
                            "replaced by a second upload for the same side".into(),
                        ))
                        .await;
                    old.finish().await;
                }
                if held[1 - side].is_none() {
                    let other = up.spec.parties[1 - side].clone();
                    let st = Status {
                        job: job.to_string(),
                        phase: Phase::Waiting,
                        waiting_for: vec![other],
                        step: None,
                    };
                    book(jobs).set_status(st.clone(), Instant::now());
                    let _ = reply.control(&Outcome::Status(st)).await;
                }
                let words = up.shares.z.len()
                    + up.shares.ids.len()
                    + (up.shares.tokens.own.iter())
                        .chain(&up.shares.tokens.neighbour)
                        .map(|t| t.len() + 1)
                        .sum::<usize>();
                book(jobs).count_bytes(8 * words as u64, 0);
                held[side] = Some((up, reply));
                deadline = tokio::time::Instant::now() + wait;
            }
            Ok(Ok(Some(ev))) => stash_newest(&mut stash, ev),
            Ok(Ok(None)) => {
                let e = Error::invalid("job channel closed");
                return Collected::Failed(held.into_iter().flatten().collect(), e);
            }
            Ok(Err(_)) => {
                let missing: Vec<String> = (0..2)
                    .filter(|&i| held[i].is_none())
                    .filter_map(|i| held[1 - i].as_ref().map(|p| p.0.spec.parties[i].clone()))
                    .collect();
                let who = if missing.is_empty() {
                    "both parties".to_string()
                } else {
                    missing.join(" and ")
                };
                let e = timed_out(
                    wait,
                    &format!(
                        "{who} to upload job {job:?} (check that {who} runs a job file with job = \
                         {job:?} and the same servers)"
                    ),
                );
                return Collected::Failed(held.into_iter().flatten().collect(), e);
            }
            Err(side) => {
                if let Some((up, _)) = held[side].take() {
                    info!(job, party = %up.from, "party disconnected before the job started; its upload is dropped");
                }
                if held.iter().all(Option::is_none) {
                    let why = format!(
                        "job {job:?} has no upload any more on this server (its parties disconnected)"
                    );
                    for ev in stash {
                        refuse_event(ev, &why).await;
                    }
                    return Collected::Abandoned;
                }
                let other = held.iter().flatten().next().map(|p| {
                    let side = if p.0.spec.parties[0] == p.0.from {
                        1
                    } else {
                        0
                    };
                    p.0.spec.parties[side].clone()
                });
                let st = Status {
                    job: job.to_string(),
                    phase: Phase::Waiting,
                    waiting_for: other.into_iter().collect(),
                    step: None,
                };
                book(jobs).set_status(st.clone(), Instant::now());
                for (_, reply) in held.iter_mut().flatten() {
                    let _ = reply.control(&Outcome::Status(st.clone())).await;
                }
            }
        }
    }
}

/// Why a link is refused when party `side` sent its two ends different uploads (`to`: who).
fn different_uploads(side: usize, to: &str) -> String {
    format!(
        "party {} sent different uploads (row counts, tokens or partner-id opt-in) to {to}",
        ["a", "b"][side]
    )
}

/// Dials `node`, sends `hello` and waits for its answer: the link, or the refusal it gave
/// (`who` names it in the error).
async fn link(
    ep: &quinn::Endpoint,
    node: &crate::net::job::Node,
    peer: PeerName,
    max: u64,
    hello: &Hello,
    who: &str,
    silence: Duration,
) -> Result<(quinn::Connection, FrameSend, FrameRecv)> {
    let (conn, mut s, mut r) = open(ep, node, peer, max, Duration::from_secs(20)).await?;
    s.set_silence(silence);
    r.set_silence(silence);
    s.control(hello).await?;
    match r.control::<Ack>().await? {
        Ack::Ok => Ok((conn, s, r)),
        Ack::Refused(why) => Err(Error::invalid(format!(
            "{who} refused the link: {}",
            crate::error::peer_text(&why)
        ))),
    }
}

/// Keeps a link that arrives before the uploads for when they are in: at most one per peer
/// identity (and one worker link per worker index), a newer one refusing the older aside, so
/// that what waits is bounded by the configured identities whatever a peer sends (before, every
/// link waited, with its connection and the data it sent: a review's finding).
fn stash_newest(stash: &mut Vec<Event>, ev: Event) {
    let key = |e: &Event| match e {
        Event::Link { peer, .. } => Some((peer.clone(), None)),
        Event::Mesh { from, .. } => Some((String::new(), Some(*from))),
        Event::Upload(..) | Event::DealerLink { .. } => None,
    };
    let mine = key(&ev);
    if mine.is_some()
        && let Some(i) = stash.iter().position(|e| key(e) == mine)
    {
        refuse_aside(
            stash.remove(i),
            "replaced by a newer link from the same peer".into(),
        );
    }
    stash.push(ev);
}

/// The rows of side `side` this process answers for: all of them, or a worker's shard.
fn own_rows(spec: &JobSpec, cfg: &ServerConfig, rows: [usize; 2], side: usize) -> usize {
    let workers = spec.workers_of(&cfg.name);
    crate::model::shard::Shards::rows(rows[side], workers, cfg.worker.min(workers - 1)).len()
}

/// Application close code for a party that did not acknowledge the start of its job.
const SILENT_PARTY: u32 = 2;

/// Whether the party on `conn` acknowledges `st`, sent on its stream, within `within`. A live
/// party's QUIC stack acknowledges within a round trip and its ack delay (25 ms).
async fn answers(
    conn: &quinn::Connection,
    reply: &mut FrameSend,
    st: &Status,
    within: Duration,
) -> bool {
    let before = conn.stats().frame_rx.acks;
    if reply.control(&Outcome::Status(st.clone())).await.is_err() {
        return false;
    }
    let deadline = Instant::now() + within;
    while conn.close_reason().is_none() && Instant::now() < deadline {
        if conn.stats().frame_rx.acks > before {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Resolves with the side of the first of `conns` that closes; never, if there are none.
async fn disconnected(conns: [Option<&quinn::Connection>; 2]) -> usize {
    let watches: Vec<_> = conns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            c.map(|c| {
                Box::pin(async move {
                    c.closed().await;
                    i
                })
            })
        })
        .collect();
    if watches.is_empty() {
        std::future::pending().await
    } else {
        futures::future::select_all(watches).await.0
    }
}

/// Names the server or dealer a transport failure is with, and the bound on noticing it.
fn name_lost_server(e: Error, spec: &JobSpec, cfg: &ServerConfig) -> Error {
    let idle = cfg.limits.idle_timeout_secs;
    match e {
        Error::Transport { peer, what } => {
            let name = match peer {
                PeerName::Server(j) => spec.servers.get(j).map(|n| n.name.clone()),
                PeerName::Dealer => spec.dealer.as_ref().map(|d| d.name.clone()),
                _ => None,
            }
            .unwrap_or_else(|| peer.to_string());
            Error::invalid(format!(
                "lost {name} mid-job: {what} (this server's idle timeout: {idle} s)"
            ))
        }
        other => other,
    }
}

/// Reports a job's phase, who it waits for, and the computation step that just finished.
pub(crate) type Report<'a> = dyn Fn(Phase, Vec<String>, Option<&str>) + Sync + 'a;

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_compute(
    cfg: &ServerConfig,
    ep: &quinn::Endpoint,
    job: &str,
    [a, b]: [&Upload; 2],
    [sa, sb]: [PartyShares; 2],
    rx: &mut mpsc::UnboundedReceiver<Event>,
    stash: Vec<Event>,
    wait: Duration,
    report: &Report<'_>,
) -> Result<(ServerOutput, usize, JobStats)> {
    let spec = &a.spec;
    let digest = spec.digest()?;
    let uploads = [(a, &sa), (b, &sb)]
        .map(|(up, sh)| upload_digest(&sh.tokens, up.spec.params.share_partner_ids));
    if b.spec.digest()? != digest {
        return Err(Error::invalid(
            "the two parties' job descriptions differ (servers, dealer, parameters or output mode)",
        ));
    }
    if a.agreement != b.agreement {
        return Err(Error::invalid(
            "the two parties hold different blocking keys or different numbers of known links \
             (the servers compare a tag keyed under the blocking key, so they learn neither): \
             check that both job files have the same blocking_key and both known-links files \
             the same number of lines",
        ));
    }
    let names: Vec<&str> = spec.servers.iter().map(|n| n.name.as_str()).collect();
    let me = names.iter().position(|n| *n == cfg.name).ok_or_else(|| {
        Error::invalid(format!(
            "this server ({}) is not in the job's server list {names:?}",
            cfg.name
        ))
    })?;
    if let Some(n) = names
        .iter()
        .find(|n| !cfg.peers.servers.iter().any(|p| p == *n))
    {
        return Err(Error::invalid(format!(
            "the job names server {n:?}, which this server does not trust"
        )));
    }
    match (&spec.dealer, &cfg.peers.dealer) {
        (Some(d), Some(trusted)) if d.name != *trusted => {
            return Err(Error::invalid(format!(
                "the job names dealer {:?}, but this server trusts {trusted:?}",
                d.name
            )));
        }
        (Some(d), None) => {
            return Err(Error::invalid(format!(
                "the job names dealer {:?}, but this server trusts no dealer (it runs only \
                 dealer-free jobs: correlation = \"ot\" or \"replicated\")",
                d.name
            )));
        }
        _ => {}
    }
    let k = names.len();
    // A server split into workers: this process is worker `wk`; it links to worker `wk` of
    // every other server and to its own server's other workers.
    let (workers, wk) = (spec.servers[me].worker_count(), cfg.worker);
    if wk >= workers {
        return Err(Error::invalid(format!(
            "this process is worker {wk} of {}, but the job lists {workers} worker(s) for it",
            cfg.name
        )));
    }
    let max = cfg.max_bytes();
    // A linked peer that stops sending fails the job after this long.
    let silence = cfg.silence();
    let mut peers: Vec<Option<(FrameSend, FrameRecv)>> = (0..k).map(|_| None).collect();
    let mut mesh: Vec<Option<(FrameSend, FrameRecv)>> = (0..workers).map(|_| None).collect();
    let mut conns = Vec::new();
    let others = names.iter().filter(|n| **n != cfg.name);
    report(
        Phase::Linking,
        others.map(|n| n.to_string()).collect(),
        None,
    );
    // Links to higher-indexed servers.
    for (j, node) in spec.servers.iter().enumerate().skip(me + 1) {
        let hello = Hello::Server {
            job: job.to_string(),
            from: me as u32,
            worker: wk as u32,
            digest,
            uploads,
        };
        let who = node.name.clone();
        let (conn, s, r) = link(
            ep,
            &node.worker(wk),
            PeerName::Server(j),
            max,
            &hello,
            &who,
            silence,
        )
        .await?;
        peers[j] = Some((s, r));
        conns.push(conn);
    }
    // Links to this server's higher-indexed workers.
    for (w, slot) in mesh.iter_mut().enumerate().skip(wk + 1) {
        let hello = Hello::Mesh {
            job: job.to_string(),
            from: wk as u32,
            digest,
            uploads,
        };
        let who = format!("worker {w} of {}", cfg.name);
        let node = spec.servers[me].worker(w);
        let (conn, s, r) = link(ep, &node, PeerName::Worker(w), max, &hello, &who, silence).await?;
        *slot = Some((s, r));
        conns.push(conn);
    }
    // Links from lower-indexed servers and workers. The wait restarts only when a link of the
    // job's is accepted, so that links refused by themselves cannot keep it open.
    let mut pending: std::collections::VecDeque<Event> = stash.into();
    let mut deadline = tokio::time::Instant::now() + wait;
    while peers.iter().take(me).any(Option::is_none) || mesh.iter().take(wk).any(Option::is_none) {
        let ev = match pending.pop_front() {
            Some(ev) => ev,
            None => next_event_until(rx, deadline, wait, "the other servers").await?,
        };
        // A link that is not this job's to make (another identity, an index that does not
        // link here, a second link) is refused by itself and the job waits on for the genuine
        // one: before, it failed the job, so any configured server that knew a job id could
        // end it (a review's finding).
        let foreign = match &ev {
            Event::Link { from, peer, .. } if *from >= me || *peer != names[*from] => {
                Some(format!("{peer} cannot link as server {from} of this job"))
            }
            Event::Link { from, peer, .. } if peers[*from].is_some() => {
                Some(format!("{peer} linked twice for this job"))
            }
            _ => None,
        };
        if let Some(why) = foreign {
            warn!(job, "link refused: {why}");
            refuse_aside(ev, why);
            continue;
        }
        match ev {
            Event::Link {
                from,
                worker,
                peer,
                digest: d,
                uploads: u,
                mut streams,
                conn,
            } => {
                let bad = if worker != wk {
                    Some(format!(
                        "worker {worker} of {peer} linked to worker {wk} of {}: the job's server \
                         lists disagree on the workers' addresses",
                        names[me]
                    ))
                } else if d != digest {
                    Some(DISAGREE.to_string())
                } else {
                    (0..2).find(|&i| u[i] != uploads[i]).map(|i| {
                        different_uploads(i, &format!("{} and {}", names[from], names[me]))
                    })
                };
                answer_link(&mut streams, bad, PeerName::Server(from)).await?;
                set_silence(&mut streams, silence);
                peers[from] = Some(streams);
                conns.push(conn);
                deadline = tokio::time::Instant::now() + wait;
            }
            ev @ Event::Upload(..) => refuse_aside(ev, "this job already has both uploads".into()),
            Event::Mesh {
                from,
                digest: d,
                uploads: u,
                mut streams,
                conn,
            } => {
                let bad = if from >= wk || mesh[from].is_some() {
                    Some(format!("worker {from} cannot link to worker {wk} now"))
                } else if d != digest {
                    Some(DISAGREE.to_string())
                } else {
                    (0..2).find(|&i| u[i] != uploads[i]).map(|i| {
                        different_uploads(i, &format!("workers {from} and {wk} of {}", names[me]))
                    })
                };
                answer_link(&mut streams, bad, PeerName::Worker(from)).await?;
                set_silence(&mut streams, silence);
                mesh[from] = Some(streams);
                conns.push(conn);
                deadline = tokio::time::Instant::now() + wait;
            }
            Event::DealerLink { .. } => {}
        }
    }
    // Links still waiting (another identity's, or behind the genuine ones) are answered now,
    // not held until the job ends.
    for ev in pending {
        refuse_aside(ev, "not a link of this job".into());
    }
    // Past linking, nothing more reaches this job: a late link or upload is refused aside
    // (before, it sat unread in the job's channel, with its connection and the data it sent,
    // until the job ended: a review's finding).
    let linked = async {
        let (na, nb) = (sa.tokens.own.len(), sb.tokens.own.len());
        if spec.params.correlation == Correlation::Ot {
            let p = &spec.params;
            // Each worker's bilinear form covers its share of the columns (and pieces of the
            // blocks): every worker's request must fit.
            let bounds = crate::model::upload_check::UploadBounds::new(p);
            let per_row = crate::model::blocking::per_row(na, nb, &p.blocking);
            for wk in 0..workers {
                let (cols, pieces) = crate::model::align::worker_columns(&bounds, workers, wk);
                if cols.is_empty() {
                    // More workers than columns: the alignment refuses that with its own reason.
                    continue;
                }
                let spans: Vec<usize> = pieces.iter().map(|&(_, l)| l).collect();
                ot::bilinear::job_cost(k, na, nb, cols.len(), &spans, p.explain, per_row)?;
            }
        }
        // The dealer, unless the servers make the correlated randomness themselves.
        let dealer_link = match &spec.dealer {
            None => None,
            Some(dealer) => {
                report(Phase::Linking, vec![dealer.name.clone()], None);
                let (dconn, mut ds, mut dr) =
                    open(ep, dealer, PeerName::Dealer, max, Duration::from_secs(20)).await?;
                ds.set_silence(silence);
                dr.set_silence(silence);
                // Each group of workers (worker `wk` of every server) is one job for the dealer.
                let dealer_job = if workers == 1 {
                    job.to_string()
                } else {
                    format!("{job}#worker-{wk}")
                };
                ds.control(&Hello::Dealer(DealerHello {
                    job: dealer_job,
                    server: me as u32,
                    servers: names.iter().map(|n| n.to_string()).collect(),
                    digest,
                    max_material_words: spec.params.max_material_words(na, nb) as u64,
                }))
                .await?;
                match dr.control::<Ack>().await? {
                    Ack::Ok => {}
                    Ack::Refused(why) => {
                        return Err(Error::invalid(format!(
                            "the dealer refused the link: {}",
                            crate::error::peer_text(&why)
                        )));
                    }
                }
                conns.push(dconn);
                Some((ds, dr))
            }
        };
        let transport = QuicTransport::new(me, peers, dealer_link)?;
        let mut session = Session::new(transport);
        let client = Source::connect(spec.params.correlation, &mut session).await?;
        let mut eng = Engine::new(session, client);
        let mut params = spec.params.clone();
        params.share_partner_ids =
            a.spec.params.share_partner_ids && b.spec.params.share_partner_ids;
        info!(job, me, servers = k, "computing");
        report(Phase::Computing, Vec::new(), None);
        // The parties see each finished step's name (public, fixed order; no value, no size).
        let step = |what: &str| report(Phase::Computing, Vec::new(), Some(what));
        let seed = job_seed(job);
        let mut mesh = if workers > 1 {
            Some(QuicMesh::new(wk, mesh)?)
        } else {
            None
        };
        let run = async {
            match &mut mesh {
                Some(m) => align_worker(&mut eng, m, sa, sb, &params, &seed, &step).await,
                None => align_worker(&mut eng, &mut Solo, sa, sb, &params, &seed, &step).await,
            }
        };
        let (mut out, _) = match run.await {
            Ok(r) => r,
            // The last server holds the dealer's refusal already: nothing more to wait for.
            Err(e @ Error::Refused { .. }) => return Err(e),
            Err(e) => {
                // Only the last server reads the dealer's answers; when the dealer refused the job,
                // the others see a peer vanish. Report the dealer's reason when there is one.
                let mut t = eng.into_session().into_transport();
                return Err(t.dealer_refusal(Duration::from_secs(1)).await.unwrap_or(e));
            }
        };
        // Aggregate-only jobs answer with sums over the rows, added up over a server's workers.
        if spec.output == OutputMode::Aggregate {
            let sh = Shards::new(na, nb, workers)?;
            let (rows, width) = ([sh.a(wk).len(), sh.b(wk).len()], params.out_width());
            let [a, b] = match &mut mesh {
                Some(m) => aggregate_answers(m, &out, rows, width).await?,
                None => aggregate_answers(&mut Solo, &out, rows, width).await?,
            };
            out = ServerOutput { a, b };
        }
        let stats = eng.stats();
        info!(
            job,
            bytes_sent = stats.bytes_sent,
            rounds = stats.rounds,
            "secure computation finished"
        );
        eng.into_session().into_transport().shutdown().await;
        if let Some(m) = mesh {
            m.shutdown().await;
        }
        drop(conns);
        let stats = JobStats {
            bytes_sent: stats.bytes_sent,
            rounds: stats.rounds,
            bytes_from_dealer: stats.bytes_from_dealer,
        };
        Ok((out, params.out_width(), stats))
    };
    tokio::select! {
        r = linked => r,
        never = refuse_late(rx) => match never {},
    }
}
