//! The `server` process: accepts connections, checks each peer's certificate identity, reads
//! the first message of each stream and routes it to its job's task (a compute job or a dealer
//! job), creating the task on first contact.

use crate::error::{Error, PeerName, Result};
use crate::model::align::PartyShares;
use crate::model::blocking::Tokens;
use crate::net::compute::compute_job;
use crate::net::config::{Role, ServerConfig};
use crate::net::dealer_job::dealer_job;
use crate::net::job::{Ack, DealerHello, Digest, Hello, JobSpec, Outcome};
use crate::net::tls::{Identity, peer_identity};
use crate::net::upload::{recv_share, recv_tokens};
use crate::net::wire::{FrameRecv, FrameSend, framed};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// One party's upload as a server holds it.
pub(crate) struct Upload {
    pub(crate) spec: JobSpec,
    pub(crate) from: String,
    pub(crate) shares: PartyShares,
    pub(crate) reply: FrameSend,
    /// Held so the party's connection stays open until its result is delivered.
    pub(crate) _conn: quinn::Connection,
}

/// Events delivered to a job's task.
pub(crate) enum Event {
    Upload(u8, Box<Upload>),
    Link {
        from: usize,
        peer: String,
        digest: Digest,
        uploads: [Digest; 2],
        streams: (FrameSend, FrameRecv),
        conn: quinn::Connection,
    },
    DealerLink {
        hello: DealerHello,
        peer: String,
        streams: (FrameSend, FrameRecv),
        conn: quinn::Connection,
    },
}

pub(crate) type Jobs = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Event>>>>;

/// A running `server` process (compute or dealer).
pub struct Daemon {
    cfg: Arc<ServerConfig>,
    endpoint: quinn::Endpoint,
    jobs: Jobs,
}

impl Daemon {
    /// Loads the identity and starts listening.
    pub fn start(cfg: ServerConfig) -> Result<Daemon> {
        let id = Identity::load(&cfg.name, &cfg.tls)?;
        let endpoint = id.endpoint(cfg.listen_addr()?)?;
        Ok(Daemon {
            cfg: Arc::new(cfg),
            endpoint,
            jobs: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.endpoint
            .local_addr()
            .map_err(|e| Error::invalid(format!("no local address: {e}")))
    }

    /// Accepts connections until `shutdown` resolves, then closes the endpoint.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        info!(name = %self.cfg.name, role = ?self.cfg.role, addr = ?self.endpoint.local_addr().ok(), "listening");
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                inc = self.endpoint.accept() => {
                    let Some(inc) = inc else { break };
                    let (cfg, jobs, ep) = (self.cfg.clone(), self.jobs.clone(), self.endpoint.clone());
                    tokio::spawn(async move {
                        if let Err(e) = connection(inc, cfg, jobs, ep).await {
                            warn!("connection refused or failed: {e}");
                        }
                    });
                }
            }
        }
        info!("shutting down");
        self.endpoint.close(0u32.into(), b"shutdown");
        self.endpoint.wait_idle().await;
    }
}

/// Handles one incoming connection: verifies the peer, then reads the hello of each stream.
pub(crate) async fn connection(
    inc: quinn::Incoming,
    cfg: Arc<ServerConfig>,
    jobs: Jobs,
    ep: quinn::Endpoint,
) -> Result<()> {
    let remote = inc.remote_address();
    let conn = inc
        .await
        .map_err(|e| Error::invalid(format!("TLS handshake with {remote} failed: {e}")))?;
    let peer = match peer_identity(&conn, &cfg.allowed()) {
        Ok(p) => p,
        Err(e) => {
            conn.close(1u32.into(), b"identity not allowed");
            return Err(e);
        }
    };
    info!(%peer, %remote, "peer connected");
    while let Ok((s, r)) = conn.accept_bi().await {
        let (s, mut r) = framed(s, r, PeerName::Unknown, cfg.max_bytes());
        let (cfg, jobs, ep, conn, peer) = (
            cfg.clone(),
            jobs.clone(),
            ep.clone(),
            conn.clone(),
            peer.clone(),
        );
        tokio::spawn(async move {
            match r.control::<Hello>().await {
                Ok(hello) => {
                    if let Err(e) = dispatch(hello, s, r, &cfg, &jobs, &ep, conn, &peer).await {
                        warn!(%peer, "refused: {e}");
                    }
                }
                Err(e) => warn!(%peer, "bad first message: {e}"),
            }
        });
    }
    Ok(())
}

/// Routes a stream to its job, starting the job's task on first contact.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn dispatch(
    hello: Hello,
    mut s: FrameSend,
    mut r: FrameRecv,
    cfg: &Arc<ServerConfig>,
    jobs: &Jobs,
    ep: &quinn::Endpoint,
    conn: quinn::Connection,
    peer: &str,
) -> Result<()> {
    let refuse = |why: String| Error::invalid(why);
    let link = matches!(hello, Hello::Server { .. } | Hello::Dealer { .. });
    if link && !cfg.peers.servers.iter().any(|p| p == peer) {
        let why = format!("{peer} is not a configured server");
        let _ = s.control(&Ack::Refused(why.clone())).await;
        return Err(refuse(why));
    }
    match (cfg.role, hello) {
        (Role::Compute, Hello::Upload { spec, side, rows }) => {
            let pname = PeerName::Party(side.min(1));
            s.set_peer(pname);
            r.set_peer(pname);
            let checks = (|| {
                if side > 1 {
                    return Err(refuse(format!("side must be 0 or 1, got {side}")));
                }
                if !cfg.peers.parties.iter().any(|p| p == peer)
                    || spec.parties[side as usize] != peer
                {
                    return Err(refuse(format!(
                        "{peer} is not party {} of job {:?}",
                        side, spec.job
                    )));
                }
                spec.validate()?;
                let words = (rows as u128) * spec.params.model.width() as u128 * 8;
                if rows == 0 || words > cfg.max_bytes() as u128 {
                    return Err(refuse(format!(
                        "an upload of {rows} rows exceeds this server's message limit"
                    )));
                }
                Ok(())
            })();
            if let Err(e) = checks {
                let _ = s.control(&Outcome::Failed(e.to_string())).await;
                s.finish().await;
                return Err(e);
            }
            let rows = rows as usize;
            let recv = async {
                let z = recv_share(&mut r, rows * spec.params.model.width(), pname).await?;
                let ids = if spec.params.share_partner_ids {
                    recv_share(&mut r, rows * crate::model::align::ID_WORDS, pname).await?
                } else {
                    Vec::new()
                };
                let own = recv_tokens(&mut r, rows, pname).await?;
                let neighbour = recv_tokens(&mut r, rows, pname).await?;
                Ok::<_, Error>(PartyShares {
                    z,
                    ids,
                    tokens: Tokens { own, neighbour },
                })
            };
            let shares = match recv.await {
                Ok(x) => x,
                Err(e) => {
                    let _ = s
                        .control(&Outcome::Failed(format!("upload rejected: {e}")))
                        .await;
                    s.finish().await;
                    return Err(e);
                }
            };
            info!(job = %spec.job, %peer, rows, "upload received");
            let job = spec.job.clone();
            let up = Upload {
                spec: *spec,
                from: peer.to_string(),
                shares,
                reply: s,
                _conn: conn,
            };
            deliver(cfg, jobs, ep, &job, Event::Upload(side, Box::new(up))).await
        }
        (
            Role::Compute,
            Hello::Server {
                job,
                from,
                digest,
                uploads,
            },
        ) => {
            let ev = Event::Link {
                from: from as usize,
                peer: peer.to_string(),
                digest,
                uploads,
                streams: (s, r),
                conn,
            };
            deliver(cfg, jobs, ep, &job, ev).await
        }
        (Role::Dealer, Hello::Dealer(hello)) => {
            let job = hello.job.clone();
            let ev = Event::DealerLink {
                hello,
                peer: peer.to_string(),
                streams: (s, r),
                conn,
            };
            deliver(cfg, jobs, ep, &job, ev).await
        }
        (role, hello) => {
            let why = format!(
                "this node is a {role:?} node and does not accept {}",
                match hello {
                    Hello::Upload { .. } => "uploads",
                    Hello::Server { .. } => "server links",
                    Hello::Dealer { .. } => "dealer links",
                }
            );
            let _ = s.control(&Outcome::Failed(why.clone())).await;
            s.finish().await;
            Err(refuse(why))
        }
    }
}

/// Hands an event to its job's task, creating the job if it is new and the server has room.
pub(crate) async fn deliver(
    cfg: &Arc<ServerConfig>,
    jobs: &Jobs,
    ep: &quinn::Endpoint,
    job: &str,
    ev: Event,
) -> Result<()> {
    let tx = {
        let mut map = jobs.lock().expect("jobs lock");
        match map.get(job) {
            Some(tx) => Some(tx.clone()),
            None if map.len() >= cfg.limits.max_jobs => None,
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                map.insert(job.to_string(), tx.clone());
                let (cfg, jobs, ep, id) = (cfg.clone(), jobs.clone(), ep.clone(), job.to_string());
                tokio::spawn(async move {
                    match cfg.role {
                        Role::Compute => compute_job(&cfg, &ep, &id, rx).await,
                        Role::Dealer => dealer_job(&cfg, &id, rx).await,
                    }
                    jobs.lock().expect("jobs lock").remove(&id);
                });
                Some(tx)
            }
        }
    };
    match tx {
        Some(tx) => tx
            .send(ev)
            .map_err(|_| Error::invalid(format!("job {job:?} has already ended"))),
        None => {
            let why = format!(
                "this server already holds {} jobs; try again later",
                cfg.limits.max_jobs
            );
            refuse_event(ev, &why).await;
            Err(Error::invalid(why))
        }
    }
}

pub(crate) async fn refuse_event(ev: Event, why: &str) {
    match ev {
        Event::Upload(_, mut up) => {
            let _ = up.reply.control(&Outcome::Failed(why.to_string())).await;
            up.reply.finish().await;
        }
        Event::Link { mut streams, .. } | Event::DealerLink { mut streams, .. } => {
            let _ = streams.0.control(&Ack::Refused(why.to_string())).await;
        }
    }
}

pub(crate) async fn next_event(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    wait: Duration,
    what: &str,
) -> Result<Event> {
    match tokio::time::timeout(wait, rx.recv()).await {
        Ok(Some(ev)) => Ok(ev),
        Ok(None) => Err(Error::invalid("job channel closed")),
        Err(_) => Err(Error::invalid(format!(
            "timed out after {} s waiting for {what}",
            wait.as_secs()
        ))),
    }
}

/// Why a link is refused when two servers hold different job descriptions.
pub(crate) const DISAGREE: &str =
    "servers disagree on the job's parameters (their job descriptions differ)";

/// Answers a link request: refuses it with the reason in `bad`, or accepts it and names the
/// peer in later errors.
pub(crate) async fn answer_link(
    streams: &mut (FrameSend, FrameRecv),
    bad: Option<String>,
    peer: PeerName,
) -> Result<()> {
    if let Some(why) = bad {
        let _ = streams.0.control(&Ack::Refused(why.clone())).await;
        return Err(Error::invalid(why));
    }
    streams.0.control(&Ack::Ok).await?;
    streams.0.set_peer(peer);
    streams.1.set_peer(peer);
    Ok(())
}
