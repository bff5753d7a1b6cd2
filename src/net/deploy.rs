//! Jobs over the network: what a job is, the compute-server and dealer daemons, and the party
//! client.
//!
//! **Flow of a job.** Each party opens one stream to every compute server and sends
//! `Hello::Upload` (the job description and its side), then its PRG-compressed share, its id
//! share and its keyed tokens. A server that holds both uploads, with identical job
//! descriptions, connects to every server with a higher index (`Hello::Server`) and to the dealer
//! (`Hello::Dealer`), accepts the links of lower-indexed servers, and runs
//! [`crate::align::align`] over those streams. It then sends each party, on that party's own
//! stream, only the shares of that party's results (or, in aggregate-only jobs, only sums).
//!
//! **Isolation and failure.** Every job has its own streams and its own task; messages carry the
//! job id and a digest of the job description, and a server refuses links whose digest differs
//! from its own ("servers disagree on parameters"). Any failure ends that job only: the parties
//! receive `Outcome::Failed` with the reason (or see the connection drop) and the server goes on.

use crate::align::{JobParams, PartyData, PartyShares, ServerOutput, align, job_seed};
use crate::blocking::Tokens;
use crate::dealer::{Dealer, DealerClient, serve};
use crate::engine::Engine;
use crate::error::{Error, PeerName, Result};
use crate::net::quic::{QuicDealer, QuicTransport};
use crate::net::tls::{Identity, TlsFiles, peer_identity};
use crate::net::wire::{FrameRecv, FrameSend, framed};
use crate::prg::Seed;
use crate::protocol::Session;
use crate::share::ShareMsg;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// A named node and where it listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Identity name (in its certificate).
    pub name: String,
    /// `host:port`.
    pub addr: String,
}

/// What each party receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputMode {
    /// Per-entity results (matched, score, link token, partner id if both opted in).
    #[default]
    Matches,
    /// Only the number of matched entities and the sum of their scores.
    Aggregate,
}

/// A job as the parties describe it to the servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Job id; every message of the job carries it.
    pub job: String,
    /// Identities of party A and party B.
    pub parties: [String; 2],
    /// The compute servers, in index order.
    pub servers: Vec<Node>,
    /// The dealer.
    pub dealer: Node,
    /// Model, blocking and matching parameters (`share_partner_ids` is this party's opt-in).
    pub params: JobParams,
    /// What the parties receive.
    pub output: OutputMode,
}

impl JobSpec {
    /// A digest of everything both parties and all servers must agree on (the parties' opt-ins
    /// excluded: each party states its own).
    pub fn digest(&self) -> u64 {
        let mut s = self.clone();
        s.params.share_partner_ids = false;
        let bytes =
            bincode::serde::encode_to_vec(&s, bincode::config::standard()).unwrap_or_default();
        crate::features::hash64(&[b"job-spec", &bytes])
    }

    /// Checks the description.
    pub fn validate(&self) -> Result<()> {
        crate::share::check_servers(self.servers.len())?;
        self.params.validate()?;
        if self.job.is_empty() || self.job.len() > 128 {
            return Err(Error::invalid("job id must be 1 to 128 characters"));
        }
        if self.parties[0] == self.parties[1] {
            return Err(Error::invalid(
                "the two parties must have different identities",
            ));
        }
        Ok(())
    }
}

/// First message on every stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Hello {
    /// A party's upload: job description, side (0 = A, 1 = B), number of rows.
    Upload {
        /// The job.
        spec: Box<JobSpec>,
        /// 0 for party A, 1 for party B.
        side: u8,
        /// Rows uploaded.
        rows: u64,
    },
    /// Server `from` links to another server for `job`.
    Server {
        /// Job id.
        job: String,
        /// Index of the connecting server.
        from: u32,
        /// Its digest of the job description.
        digest: u64,
    },
    /// A server links to the dealer for `job`.
    Dealer {
        /// Job id.
        job: String,
        /// Index of the connecting server.
        server: u32,
        /// Number of servers in the job.
        servers: u32,
        /// Its digest of the job description.
        digest: u64,
    },
}

/// Answer to a link request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Ack {
    /// Accepted.
    Ok,
    /// Refused, with the reason.
    Refused(String),
}

/// What a server finally sends a party.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Outcome {
    /// Success: a words frame with `rows x width` result shares follows.
    Done {
        /// Rows.
        rows: u64,
        /// Words per row.
        width: u64,
        /// This server's traffic during the job.
        stats: JobStats,
    },
    /// The job failed on this server.
    Failed(String),
}

/// A server's traffic figures for one job (sizes and counts only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStats {
    /// Bytes sent to the other servers.
    pub bytes_sent: u64,
    /// Communication rounds among the servers.
    pub rounds: u64,
    /// Bytes received from the dealer.
    pub bytes_from_dealer: u64,
}

/// How a share travels. No `Debug`: the seed is secret.
#[derive(Clone, Serialize, Deserialize)]
enum ShareHead {
    Seed([u8; 32], u64),
    Explicit(u64),
}

async fn send_share(s: &mut FrameSend, m: &ShareMsg) -> Result<()> {
    match m {
        ShareMsg::Seed { seed, len } => s.control(&ShareHead::Seed(seed.0, *len as u64)).await,
        ShareMsg::Explicit(v) => {
            s.control(&ShareHead::Explicit(v.len() as u64)).await?;
            s.words(v).await
        }
    }
}

async fn recv_share(r: &mut FrameRecv, expected: usize, peer: PeerName) -> Result<Vec<u64>> {
    let v = match r.control::<ShareHead>().await? {
        ShareHead::Seed(seed, len) if len as usize == expected => {
            ShareMsg::Seed {
                seed: Seed(seed),
                len: expected,
            }
            .expand()
            .0
        }
        ShareHead::Explicit(len) if len as usize == expected => r.words().await?,
        _ => {
            return Err(Error::protocol(
                peer,
                format!("share of the wrong size (expected {expected} words)"),
            ));
        }
    };
    if v.len() != expected {
        return Err(Error::protocol(
            peer,
            format!("share has {} words, expected {expected}", v.len()),
        ));
    }
    Ok(v)
}

async fn send_tokens(s: &mut FrameSend, t: &[Vec<u64>]) -> Result<()> {
    s.words(&t.iter().map(|x| x.len() as u64).collect::<Vec<_>>())
        .await?;
    s.words(&t.concat()).await
}

async fn recv_tokens(r: &mut FrameRecv, rows: usize, peer: PeerName) -> Result<Vec<Vec<u64>>> {
    let lens = r.words().await?;
    let flat = r.words().await?;
    let total: u64 = lens
        .iter()
        .try_fold(0u64, |s, &l| s.checked_add(l))
        .unwrap_or(u64::MAX);
    if lens.len() != rows || total != flat.len() as u64 {
        return Err(Error::protocol(
            peer,
            "token lists do not match the declared rows",
        ));
    }
    let mut out = Vec::with_capacity(rows);
    let mut at = 0usize;
    for l in lens {
        out.push(flat[at..at + l as usize].to_vec());
        at += l as usize;
    }
    Ok(out)
}

/// Configuration of a `server` process (TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// This node's identity (must be in its certificate).
    pub name: String,
    /// Address to listen on (`host:port`).
    pub listen: String,
    /// `compute` or `dealer`.
    #[serde(default)]
    pub role: Role,
    /// TLS files (relative paths are relative to the configuration file).
    pub tls: TlsFiles,
    /// Who may connect.
    pub peers: Peers,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
}

/// The role of a `server` process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A compute server.
    #[default]
    Compute,
    /// The correlated-randomness dealer.
    Dealer,
}

/// Identities a server accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peers {
    /// Parties that may submit jobs.
    #[serde(default)]
    pub parties: Vec<String>,
    /// Compute servers (including this one, if it is one).
    pub servers: Vec<String>,
    /// The dealer.
    pub dealer: String,
}

/// Resource limits of a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest single data message accepted, in MiB.
    pub max_message_mib: u64,
    /// Jobs held at once; more are refused.
    pub max_jobs: usize,
    /// Seconds to wait for the second party, the other servers or the dealer.
    pub wait_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_mib: 4096,
            max_jobs: 8,
            wait_secs: 600,
        }
    }
}

impl ServerConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &std::path::Path) -> Result<ServerConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(format!("{}: cannot read: {e}", path.display())))?;
        let mut cfg: ServerConfig = toml::from_str(&text)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        cfg.tls = cfg.tls.relative_to(base);
        cfg.listen_addr()?;
        if cfg.role == Role::Compute && !cfg.peers.servers.contains(&cfg.name) {
            return Err(Error::invalid(format!(
                "{}: peers.servers must list this server's own name {:?}",
                path.display(),
                cfg.name
            )));
        }
        Ok(cfg)
    }

    /// The listening address.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        self.listen
            .parse()
            .map_err(|e| Error::invalid(format!("listen address {:?}: {e}", self.listen)))
    }

    fn max_bytes(&self) -> u64 {
        self.limits.max_message_mib.saturating_mul(1 << 20)
    }

    fn allowed(&self) -> Vec<String> {
        let mut a = self.peers.parties.clone();
        a.extend(self.peers.servers.iter().cloned());
        a.push(self.peers.dealer.clone());
        a
    }
}

/// Resolves `host:port`.
async fn resolve(addr: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| Error::invalid(format!("cannot resolve {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| Error::invalid(format!("{addr:?} resolves to no address")))
}

/// Connects to `node` (verifying that its certificate is issued for `node.name`) and opens a
/// framed stream.
async fn open(
    ep: &quinn::Endpoint,
    node: &Node,
    peer: PeerName,
    max_bytes: u64,
    timeout: Duration,
) -> Result<(quinn::Connection, FrameSend, FrameRecv)> {
    let addr = resolve(&node.addr).await?;
    let what = |e: &dyn std::fmt::Display| {
        Error::transport(
            peer,
            format!(
                "cannot reach {} at {}: {e} (is it running, and does its certificate name it?)",
                node.name, node.addr
            ),
        )
    };
    let connecting = ep.connect(addr, &node.name).map_err(|e| what(&e))?;
    let conn = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| what(&"timed out"))?
        .map_err(|e| what(&e))?;
    let (s, r) = conn.open_bi().await.map_err(|e| what(&e))?;
    let (s, r) = framed(s, r, peer, max_bytes);
    Ok((conn, s, r))
}

/// One party's upload as a server holds it.
struct Upload {
    spec: JobSpec,
    from: String,
    shares: PartyShares,
    reply: FrameSend,
    /// Held so the party's connection stays open until its result is delivered.
    _conn: quinn::Connection,
}

/// Events delivered to a job's task.
enum Event {
    Upload(u8, Box<Upload>),
    Link {
        from: usize,
        peer: String,
        digest: u64,
        streams: (FrameSend, FrameRecv),
        conn: quinn::Connection,
    },
    DealerLink {
        server: usize,
        servers: usize,
        peer: String,
        digest: u64,
        streams: (FrameSend, FrameRecv),
        conn: quinn::Connection,
    },
}

type Jobs = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Event>>>>;

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
async fn connection(
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
async fn dispatch(
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
                    recv_share(&mut r, rows * crate::align::ID_WORDS, pname).await?
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
        (Role::Compute, Hello::Server { job, from, digest }) => {
            let ev = Event::Link {
                from: from as usize,
                peer: peer.to_string(),
                digest,
                streams: (s, r),
                conn,
            };
            deliver(cfg, jobs, ep, &job, ev).await
        }
        (
            Role::Dealer,
            Hello::Dealer {
                job,
                server,
                servers,
                digest,
            },
        ) => {
            let ev = Event::DealerLink {
                server: server as usize,
                servers: servers as usize,
                peer: peer.to_string(),
                digest,
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
async fn deliver(
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

async fn refuse_event(ev: Event, why: &str) {
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

async fn next_event(
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
const DISAGREE: &str = "servers disagree on the job's parameters (their job descriptions differ)";

/// Answers a link request: refuses it with the reason in `bad`, or accepts it and names the
/// peer in later errors.
async fn answer_link(
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

/// A compute server's job: collect both uploads, link up, compute, answer each party.
async fn compute_job(
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
                    OutputMode::Aggregate => (1, 2, aggregate(words, rows, out.1)),
                };
                async {
                    up.reply
                        .control(&Outcome::Done {
                            rows: rows as u64,
                            width: width as u64,
                            stats: out.2,
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

/// Sums of the match flags and scores over all rows: what aggregate-only jobs reveal.
fn aggregate(words: &[u64], rows: usize, width: usize) -> Vec<u64> {
    let mut s = vec![0u64; 2];
    for r in 0..rows {
        s[0] = s[0].wrapping_add(words[r * width]);
        s[1] = s[1].wrapping_add(words[r * width + 1]);
    }
    s
}

#[allow(clippy::too_many_arguments)]
async fn run_compute(
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
    let digest = spec.digest();
    if b.spec.digest() != digest {
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
                mut streams,
                conn,
            } => {
                let bad = if from >= me || peer != names[from] {
                    Some(format!("{peer} cannot link as server {from}"))
                } else {
                    (d != digest).then(|| DISAGREE.to_string())
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
    ds.control(&Hello::Dealer {
        job: job.to_string(),
        server: me as u32,
        servers: k as u32,
        digest,
    })
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
    let (out, _) = align(&mut eng, &a.shares, &b.shares, &params, &job_seed(job)).await?;
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

/// The dealer's job: collect one link per server, then serve corrections until the last
/// server closes its link.
async fn dealer_job(cfg: &ServerConfig, job: &str, mut rx: mpsc::UnboundedReceiver<Event>) {
    let wait = Duration::from_secs(cfg.limits.wait_secs);
    let result = async {
        let mut links: Vec<Option<(FrameSend, FrameRecv)>> = Vec::new();
        let mut conns = Vec::new();
        let mut want: Option<(usize, u64)> = None;
        loop {
            let ev = next_event(&mut rx, wait, "every server's dealer link").await?;
            let Event::DealerLink {
                server,
                servers,
                peer,
                digest,
                mut streams,
                conn,
            } = ev
            else {
                continue;
            };
            let (k, d) = *want.get_or_insert((servers, digest));
            let bad =
                if crate::share::check_servers(servers).is_err() || servers != k || server >= k {
                    Some(format!("{peer}: inconsistent server count or index"))
                } else {
                    (digest != d).then(|| DISAGREE.to_string())
                };
            answer_link(&mut streams, bad, PeerName::Server(server)).await?;
            links.resize_with(k, || None);
            links[server] = Some(streams);
            conns.push(conn);
            if links.iter().all(Option::is_some) {
                break;
            }
        }
        let k = links.len();
        let mut net = QuicDealer::new(links.into_iter().map(|l| l.expect("all present")).collect());
        let stats = serve(Dealer::new(k)?, &mut net).await?;
        drop(conns);
        Ok::<_, Error>(stats)
    }
    .await;
    match result {
        Ok(s) => info!(
            job,
            bytes_sent = s.bytes_sent,
            requests = s.requests,
            "dealer done"
        ),
        Err(e) => error!(job, "dealer failed: {e}"),
    }
}

/// What one server returned to a party.
#[derive(Debug, Clone)]
pub struct ServerResult {
    /// Result shares, `rows x width`.
    pub words: Vec<u64>,
    /// Words per row.
    pub width: usize,
    /// The server's traffic figures.
    pub stats: JobStats,
}

/// Uploads one party's share for server `j` of `spec` and waits for that server's result.
#[allow(clippy::too_many_arguments)]
pub async fn upload_to(
    ep: &quinn::Endpoint,
    spec: &JobSpec,
    j: usize,
    side: u8,
    data: &PartyData,
    z: &ShareMsg,
    ids: Option<&ShareMsg>,
    connect_timeout: Duration,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<ServerResult> {
    let node = spec
        .servers
        .get(j)
        .ok_or_else(|| Error::invalid(format!("the job has no server {j}")))?;
    let peer = PeerName::Server(j);
    let attempt = async {
        let (_conn, mut s, mut r) = open(ep, node, peer, u64::MAX / 2, connect_timeout).await?;
        let rows = data.rows.len() as u64;
        let hello = Hello::Upload {
            spec: Box::new(spec.clone()),
            side,
            rows,
        };
        let sent = async {
            s.control(&hello).await?;
            send_share(&mut s, z).await?;
            if let Some(ids) = ids {
                send_share(&mut s, ids).await?;
            }
            send_tokens(&mut s, &data.tokens.own).await?;
            send_tokens(&mut s, &data.tokens.neighbour).await
        };
        if let Err(e) = sent.await {
            // A server that refuses an upload says why before it stops reading.
            let why = tokio::time::timeout(Duration::from_secs(2), r.control::<Outcome>()).await;
            if let Ok(Ok(Outcome::Failed(why))) = why {
                return Err(Error::invalid(format!(
                    "{} refused the upload: {why}",
                    node.name
                )));
            }
            return Err(e);
        }
        progress(&format!("uploaded to {} ({})", node.name, node.addr));
        match r.control::<Outcome>().await? {
            Outcome::Done {
                rows: n,
                width,
                stats,
            } => {
                let words = r.words().await?;
                if words.len() as u64 != n.saturating_mul(width) {
                    return Err(Error::protocol(peer, "result of the wrong size"));
                }
                progress(&format!("results received from {}", node.name));
                Ok(ServerResult {
                    words,
                    width: width as usize,
                    stats,
                })
            }
            Outcome::Failed(why) => Err(Error::invalid(format!(
                "{} reports that the job failed: {why}",
                node.name
            ))),
        }
    };
    attempt.await.map_err(|e| match e {
        Error::Transport { what, .. } => Error::transport(
            peer,
            format!(
                "{} at {}: {what} (if this happens right after connecting, {} may not accept \
                 this party's certificate or identity; otherwise see its log)",
                node.name, node.addr, node.name
            ),
        ),
        other => other,
    })
}

/// A party's side of a job: uploads to every server, waits, and returns each server's result.
/// Fails if any server fails; nothing partial is returned.
pub async fn run_party(
    spec: &JobSpec,
    side: u8,
    identity: &Identity,
    data: &PartyData,
    connect_timeout: Duration,
    progress: impl Fn(&str) + Send + Sync,
) -> Result<Vec<ServerResult>> {
    spec.validate()?;
    let k = spec.servers.len();
    let ep = identity.client_endpoint()?;
    let z = crate::share::share_compressed(&data.z, k)?;
    let ids = if spec.params.share_partner_ids {
        Some(crate::share::share_compressed(&data.ids, k)?)
    } else {
        None
    };
    let progress: &(dyn Fn(&str) + Send + Sync) = &progress;
    let per_server = (0..k).map(|j| {
        upload_to(
            &ep,
            spec,
            j,
            side,
            data,
            &z[j],
            ids.as_ref().map(|v| &v[j]),
            connect_timeout,
            progress,
        )
    });
    let results = futures::future::try_join_all(per_server).await?;
    if results.iter().any(|r| r.width != results[0].width) {
        return Err(Error::invalid(
            "servers returned results of different shapes",
        ));
    }
    ep.close(0u32.into(), b"done");
    Ok(results)
}

/// A party's job file (TOML): the common job description plus this party's own settings.
/// `Debug` leaves out the blocking key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyJob {
    /// Job id (the same in both parties' files).
    pub job: String,
    /// `a` or `b`: which party this file is for.
    pub side: String,
    /// This party's identity (in its certificate).
    pub identity: String,
    /// Identities of party A and party B.
    pub parties: [String; 2],
    /// The compute servers, in index order.
    pub servers: Vec<Node>,
    /// The dealer.
    pub dealer: Node,
    /// The 32-byte blocking key both parties agree on, as 64 hex digits. Never sent to servers.
    pub blocking_key: String,
    /// What the parties receive.
    #[serde(default)]
    pub output: OutputMode,
    /// This party opts in to exchanging entity ids for matched pairs (effective only if both do).
    #[serde(default)]
    pub share_partner_ids: bool,
    /// Evaluation job: each party also learns its best candidate, and writes a dump for judging.
    #[serde(default)]
    pub evaluation: bool,
    /// Seconds to wait for each server to answer a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// TLS files of this party (relative paths are relative to the job file).
    pub tls: TlsFiles,
    /// Model, blocking and matching parameters (defaults for anything not given).
    #[serde(default)]
    pub params: JobParams,
}

impl std::fmt::Debug for PartyJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyJob")
            .field("job", &self.job)
            .field("side", &self.side)
            .field("identity", &self.identity)
            .field("servers", &self.servers)
            .field("dealer", &self.dealer)
            .field("blocking_key", &"<redacted>")
            .field("output", &self.output)
            .field("share_partner_ids", &self.share_partner_ids)
            .field("evaluation", &self.evaluation)
            .finish_non_exhaustive()
    }
}

impl PartyJob {
    /// Reads and checks a job file.
    pub fn load(path: &std::path::Path) -> Result<PartyJob> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(format!("{}: cannot read: {e}", path.display())))?;
        let mut job: PartyJob = toml::from_str(&text)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        job.tls = job
            .tls
            .relative_to(path.parent().unwrap_or(std::path::Path::new(".")));
        job.side_index()?;
        job.key()?;
        if job.parties[job.side_index()? as usize] != job.identity {
            return Err(Error::invalid(format!(
                "{}: identity {:?} is not party {} ({:?})",
                path.display(),
                job.identity,
                job.side,
                job.parties[job.side_index()? as usize]
            )));
        }
        job.spec()
            .validate()
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        Ok(job)
    }

    /// 0 for `a`, 1 for `b`.
    pub fn side_index(&self) -> Result<u8> {
        match self.side.as_str() {
            "a" | "A" => Ok(0),
            "b" | "B" => Ok(1),
            other => Err(Error::invalid(format!(
                "side must be \"a\" or \"b\", got {other:?}"
            ))),
        }
    }

    /// The blocking key.
    pub fn key(&self) -> Result<crate::blocking::BlockingKey> {
        let h = self.blocking_key.trim();
        let bad = || Error::invalid("blocking_key must be 64 hexadecimal digits (32 bytes)");
        if h.len() != 64 {
            return Err(bad());
        }
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(crate::blocking::BlockingKey(k))
    }

    /// The description sent to the servers.
    pub fn spec(&self) -> JobSpec {
        let mut params = self.params.clone();
        params.share_partner_ids = self.share_partner_ids;
        params.reveal_best = self.evaluation;
        JobSpec {
            job: self.job.clone(),
            parties: self.parties.clone(),
            servers: self.servers.clone(),
            dealer: self.dealer.clone(),
            params,
            output: self.output,
        }
    }
}

fn default_connect_timeout() -> u64 {
    20
}

/// What an evaluation job leaves for the judge: the party's prepared data and its results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalDump {
    /// Job id (drives candidate padding).
    pub job: String,
    /// Parameters as run (opt-ins resolved).
    pub params: JobParams,
    /// The party's prepared data.
    pub data: PartyData,
    /// Its reconstructed results.
    pub results: Vec<crate::align::ResultRow>,
}
