//! A compute server's job: collect both uploads, link up with the other servers and the dealer,
//! run the secure alignment, and answer each party with only its own result shares.

use crate::error::{Error, PeerName, Result};
use crate::model::align::{ServerOutput, aggregate_words, align, job_seed};
use crate::mpc::dealer::DealerClient;
use crate::mpc::engine::Engine;
use crate::mpc::protocol::Session;
use crate::net::config::ServerConfig;
use crate::net::daemon::{DISAGREE, Event, Upload, answer_link, next_event};
use crate::net::dial::open;
use crate::net::job::{Ack, DealerHello, Hello, JobStats, Outcome, OutputMode};
use crate::net::quic::QuicTransport;
use crate::net::upload::upload_digest;
use crate::net::wire::{FrameRecv, FrameSend};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// A compute server's job: collect both uploads, link up, compute, answer each party.
pub(crate) async fn compute_job(
    cfg: &ServerConfig,
    ep: &quinn::Endpoint,
    job: &str,
    mut rx: mpsc::UnboundedReceiver<Event>,
) {
    let wait = Duration::from_secs(cfg.limits.wait_secs);
    let mut uploads: [Option<Box<Upload>>; 2] = [None, None];
    let mut stash = Vec::new();
    let mut failure = None;
    while uploads.iter().any(Option::is_none) {
        match next_event(&mut rx, wait, "both parties' uploads").await {
            Ok(Event::Upload(side, up)) => {
                if let Some(mut old) = uploads[side as usize].replace(up) {
                    let _ = old
                        .reply
                        .control(&Outcome::Failed(
                            "replaced by a second upload for the same side".into(),
                        ))
                        .await;
                }
            }
            Ok(ev) => stash.push(ev),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let result = match failure {
        Some(e) => Err(e),
        None => {
            let [a, b] = &uploads;
            let (a, b) = (a.as_ref().expect("present"), b.as_ref().expect("present"));
            run_compute(cfg, ep, job, a, b, &mut rx, stash, wait).await
        }
    };
    for (side, up) in uploads.iter_mut().enumerate() {
        let Some(up) = up else { continue };
        let sent = match &result {
            Ok(out) => {
                let words = if side == 0 { &out.0.a } else { &out.0.b };
                let rows = up.shares.tokens.own.len();
                let (rows, width, words) = match up.spec.output {
                    OutputMode::Matches => (rows, out.1, words.clone()),
                    OutputMode::Aggregate => (1, 2, aggregate_words(words, rows, out.1)),
                };
                async {
                    up.reply
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
                    up.reply.words(&words).await
                }
                .await
            }
            Err(e) => up.reply.control(&Outcome::Failed(e.to_string())).await,
        };
        up.reply.finish().await;
        if let Err(e) = sent {
            warn!(job, party = %up.from, "could not deliver results: {e}");
        }
    }
    match result {
        Ok(_) => info!(job, "job done"),
        Err(e) => error!(job, "job failed: {e}"),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_compute(
    cfg: &ServerConfig,
    ep: &quinn::Endpoint,
    job: &str,
    a: &Upload,
    b: &Upload,
    rx: &mut mpsc::UnboundedReceiver<Event>,
    stash: Vec<Event>,
    wait: Duration,
) -> Result<(ServerOutput, usize, JobStats)> {
    let spec = &a.spec;
    let digest = spec.digest()?;
    let uploads = [
        upload_digest(&a.shares.tokens),
        upload_digest(&b.shares.tokens),
    ];
    if b.spec.digest()? != digest {
        return Err(Error::invalid(
            "the two parties' job descriptions differ (servers, dealer, parameters or output mode)",
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
    if spec.dealer.name != cfg.peers.dealer {
        return Err(Error::invalid(format!(
            "the job names dealer {:?}, but this server trusts {:?}",
            spec.dealer.name, cfg.peers.dealer
        )));
    }
    let k = names.len();
    let max = cfg.max_bytes();
    let mut peers: Vec<Option<(FrameSend, FrameRecv)>> = (0..k).map(|_| None).collect();
    let mut conns = Vec::new();
    // Links to higher-indexed servers.
    for (j, node) in spec.servers.iter().enumerate().skip(me + 1) {
        let (conn, mut s, mut r) =
            open(ep, node, PeerName::Server(j), max, Duration::from_secs(20)).await?;
        s.control(&Hello::Server {
            job: job.to_string(),
            from: me as u32,
            digest,
            uploads,
        })
        .await?;
        match r.control::<Ack>().await? {
            Ack::Ok => {}
            Ack::Refused(why) => {
                return Err(Error::invalid(format!(
                    "{} refused the link: {why}",
                    node.name
                )));
            }
        }
        peers[j] = Some((s, r));
        conns.push(conn);
    }
    // Links from lower-indexed servers.
    let mut pending: std::collections::VecDeque<Event> = stash.into();
    while peers.iter().take(me).any(Option::is_none) {
        let ev = match pending.pop_front() {
            Some(ev) => ev,
            None => next_event(rx, wait, "the other servers").await?,
        };
        match ev {
            Event::Link {
                from,
                peer,
                digest: d,
                uploads: u,
                mut streams,
                conn,
            } => {
                let bad = if from >= me || peer != names[from] {
                    Some(format!("{peer} cannot link as server {from}"))
                } else if d != digest {
                    Some(DISAGREE.to_string())
                } else {
                    (0..2).find(|&i| u[i] != uploads[i]).map(|i| {
                        format!(
                            "party {} sent different uploads (row counts or tokens) to {} and {}",
                            ["a", "b"][i],
                            names[from],
                            names[me]
                        )
                    })
                };
                answer_link(&mut streams, bad, PeerName::Server(from)).await?;
                peers[from] = Some(streams);
                conns.push(conn);
            }
            Event::Upload(_, mut up) => {
                let _ = up
                    .reply
                    .control(&Outcome::Failed("this job already has both uploads".into()))
                    .await;
            }
            Event::DealerLink { .. } => {}
        }
    }
    // The dealer.
    let (dconn, mut ds, mut dr) = open(
        ep,
        &spec.dealer,
        PeerName::Dealer,
        max,
        Duration::from_secs(20),
    )
    .await?;
    let (na, nb) = (a.shares.tokens.own.len(), b.shares.tokens.own.len());
    ds.control(&Hello::Dealer(DealerHello {
        job: job.to_string(),
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
                "the dealer refused the link: {why}"
            )));
        }
    }
    conns.push(dconn);
    let transport = QuicTransport::new(me, peers, (ds, dr))?;
    let mut session = Session::new(transport);
    let client = DealerClient::connect(&mut session).await?;
    let mut eng = Engine::new(session, client);
    let mut params = spec.params.clone();
    params.share_partner_ids = a.spec.params.share_partner_ids && b.spec.params.share_partner_ids;
    info!(job, me, servers = k, "computing");
    let (out, _) = match align(&mut eng, &a.shares, &b.shares, &params, &job_seed(job)).await {
        Ok(r) => r,
        Err(e) => {
            // Only the last server reads the dealer's answers; when the dealer refused the job,
            // the others see a peer vanish. Report the dealer's reason when there is one.
            let mut t = eng.into_session().into_transport();
            return Err(t.dealer_refusal(Duration::from_secs(1)).await.unwrap_or(e));
        }
    };
    let stats = eng.stats();
    info!(
        job,
        bytes_sent = stats.bytes_sent,
        rounds = stats.rounds,
        "secure computation finished"
    );
    eng.into_session().into_transport().shutdown().await;
    drop(conns);
    let stats = JobStats {
        bytes_sent: stats.bytes_sent,
        rounds: stats.rounds,
        bytes_from_dealer: stats.bytes_from_dealer,
    };
    Ok((out, params.out_width(), stats))
}
