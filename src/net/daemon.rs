//! The `server` process: accepts connections, checks each peer's certificate identity, reads
//! the first message of each stream and routes it to its job's task (a compute job or a dealer
//! job), creating the task on first contact. The `Registry` decides whether a job id may run
//! (a job id runs once) and records each job's state for `server status`.

use crate::error::{Error, PeerName, Result};
use crate::model::align::PartyShares;
use crate::model::blocking::{MAX_TOKENS_PER_ROW, Tokens};
use crate::net::compute::compute_job;
use crate::net::config::{Role, ServerConfig};
use crate::net::dealer_job::dealer_job;
use crate::net::job::{Ack, DealerHello, Digest, Hello, JobSpec, Outcome, check_link_job_id};
use crate::net::liveness::REFUSED_IDENTITY;
use crate::net::registry::{Admit, Booking, Ended, Phase, Refusal, Registry, Resource};
use crate::net::tls::{Identity, peer_identity};
use crate::net::upload::{recv_rows, recv_share, recv_tokens};
use crate::net::wire::{FrameRecv, FrameSend, framed};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// One party's upload as a server holds it (the stream to answer on travels beside it).
pub(crate) struct Upload {
    pub(crate) spec: JobSpec,
    pub(crate) from: String,
    pub(crate) shares: PartyShares,
    /// The party's tag of what both parties must agree on beyond the job description.
    pub(crate) agreement: [u8; 32],
    /// The party's connection: held open until its result is delivered, and watched so the
    /// upload is dropped when the party disconnects.
    pub(crate) conn: quinn::Connection,
    /// The party's upload slot on this server, given back when the upload is dropped.
    pub(crate) _slot: PartySlot,
}

/// One of a party's upload slots ([`Limits::max_jobs_per_party`]), held from the first message
/// of an upload until the upload is dropped, so one party cannot fill the server's memory or
/// its job table with uploads.
///
/// [`Limits::max_jobs_per_party`]: crate::net::config::Limits::max_jobs_per_party
pub(crate) struct PartySlot {
    jobs: Jobs,
    party: String,
    /// Estimated memory ([`crate::model::footprint`]) and spill disk booked for the upload.
    booking: Booking,
}

impl PartySlot {
    /// Takes a slot for `party` and its booking of the memory and disk budgets, or says why
    /// not.
    fn take(
        jobs: &Jobs,
        party: &str,
        limit: usize,
        booking: Booking,
        rows: u64,
    ) -> Result<PartySlot> {
        use crate::model::footprint::mib;
        match book(jobs).reserve_party(party, booking) {
            Ok(()) => Ok(PartySlot {
                jobs: jobs.clone(),
                party: party.to_string(),
                booking,
            }),
            Err(Refusal::PartyLimit) => Err(Error::invalid(format!(
                "{party} already has {limit} uploads on this server (limits.max_jobs_per_party); \
                 wait for those jobs to end"
            ))),
            Err(Refusal::Over {
                what,
                needed,
                budget,
                booked,
            }) => {
                let (log, msg) = match what {
                    Resource::Memory => (
                        "upload refused: over the memory budget",
                        format!(
                            "an upload of {rows} rows needs about {} MiB on this server \
                             (estimated peak of its side of the job), more than it can take now \
                             (limits.memory_mib); try again later, split the job into smaller \
                             ones, or ask the operator for a larger budget",
                            mib(needed)
                        ),
                    ),
                    Resource::Disk => (
                        "upload refused: its spilled share is over the disk budget",
                        format!(
                            "an upload of {rows} rows needs {} MiB of disk on this server for \
                             its share, more than it can take now (limits.spill_max_gib: the \
                             spilled shares of all held uploads together, one party at most \
                             half); try again later, split the job into smaller ones, or ask the \
                             operator for more disk",
                            mib(needed)
                        ),
                    ),
                };
                // The party learns only its own need: what other jobs hold is not its business.
                warn!(
                    %party,
                    rows,
                    needed_mib = mib(needed),
                    budget_mib = mib(budget),
                    booked_mib = mib(booked),
                    "{log}"
                );
                Err(Error::invalid(msg))
            }
        }
    }
}

impl Drop for PartySlot {
    fn drop(&mut self) {
        book(&self.jobs).release_party(&self.party, self.booking);
    }
}

impl Upload {
    /// Whether the party is still connected.
    pub(crate) fn connected(&self) -> bool {
        self.conn.close_reason().is_none()
    }
}

/// Events delivered to a job's task.
pub(crate) enum Event {
    /// Side, the upload, and the stream to answer the party on.
    Upload(u8, Box<Upload>, FrameSend),
    Link {
        from: usize,
        worker: usize,
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
    /// Another worker of this server links for the job.
    Mesh {
        from: usize,
        digest: Digest,
        uploads: [Digest; 2],
        streams: (FrameSend, FrameRecv),
        conn: quinn::Connection,
    },
}

impl Event {
    /// Whether the peer that sent this event is still connected.
    pub(crate) fn connected(&self) -> bool {
        match self {
            Event::Upload(_, up, _) => up.connected(),
            Event::Link { conn, .. }
            | Event::DealerLink { conn, .. }
            | Event::Mesh { conn, .. } => conn.close_reason().is_none(),
        }
    }
}

/// The server's jobs, shared by the connection handlers, the job tasks and the admin endpoint.
pub(crate) type Jobs = Arc<Mutex<Registry<Event>>>;

/// Locks the registry. A panic while holding the lock (a bug) does not stop the server: the
/// registry's state is consistent after every method.
pub(crate) fn book(jobs: &Jobs) -> std::sync::MutexGuard<'_, Registry<Event>> {
    jobs.lock().unwrap_or_else(|p| p.into_inner())
}

/// Ends a job in the registry when dropped, as `how`: a job task that panics (the panic unwinds
/// and drops the task's future) still gives back its place among `max_jobs` and is remembered
/// as failed, instead of holding its place forever.
struct JobEnd {
    jobs: Jobs,
    id: String,
    how: Ended,
}

impl Drop for JobEnd {
    fn drop(&mut self) {
        book(&self.jobs).end(&self.id, self.how, Instant::now());
    }
}

/// A running `server` process (compute or dealer).
pub struct Daemon {
    cfg: Arc<ServerConfig>,
    endpoint: quinn::Endpoint,
    jobs: Jobs,
    greetings: Greetings,
    admin: Option<std::net::TcpListener>,
}

/// Longest a stream's first message may take to arrive whole: `wait_secs`, within these
/// bounds (a greeting of kilobytes takes milliseconds; the floor spares a loaded machine with a
/// short `wait_secs`).
const GREETING_SECS: std::ops::RangeInclusive<u64> = 10..=30;
/// Largest first message: a job description with its server list takes kilobytes.
const MAX_GREETING: u32 = 1 << 20;
/// First messages one peer identity may have in flight at once on this node, over all its
/// connections and streams (a stream past them waits, within its time limit).
const GREETINGS_PER_PEER: usize = 64;

/// Each peer identity's share of first messages in flight: without it (and the time and size
/// limits above) a peer could open 256 streams per connection, announce a 16 MiB greeting on
/// each, send all but its last byte and hold some 4 GiB of this node's memory per connection,
/// forever.
#[derive(Clone, Default)]
struct Greetings(Arc<Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>>);

impl Greetings {
    fn of(&self, peer: &str) -> Arc<tokio::sync::Semaphore> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(peer.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(GREETINGS_PER_PEER)))
            .clone()
    }
}

impl Daemon {
    /// Loads the identity and starts listening.
    pub fn start(cfg: ServerConfig) -> Result<Daemon> {
        let id = Identity::load(&cfg.name, &cfg.tls)?;
        let endpoint = id.endpoint_with(cfg.listen_addr()?, &cfg.liveness()?)?;
        let remember = Duration::from_secs(cfg.limits.remember_jobs_secs);
        Ok(Daemon {
            admin: crate::net::admin::bind(&cfg)?,
            jobs: Arc::new(Mutex::new(
                Registry::new(cfg.limits.max_jobs, remember)
                    .with_party_limit(cfg.limits.max_jobs_per_party)
                    .with_memory_budget(cfg.limits.memory_budget())
                    .with_disk_budget(cfg.spill().max),
            )),
            cfg: Arc::new(cfg),
            endpoint,
            greetings: Greetings::default(),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.endpoint
            .local_addr()
            .map_err(|e| Error::invalid(format!("no local address: {e}")))
    }

    /// The admin endpoint's address, if one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Accepts connections until `shutdown` resolves, then closes the endpoint. Also serves
    /// the admin endpoint, if one is configured.
    pub async fn serve(mut self, shutdown: impl std::future::Future<Output = ()>) {
        info!(name = %self.cfg.name, role = ?self.cfg.role, addr = ?self.endpoint.local_addr().ok(), "listening");
        let admin = self.admin.take().and_then(|l| {
            crate::net::admin::serve(l, &self.cfg, self.jobs.clone())
                .map_err(|e| error!("{e}"))
                .ok()
        });
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                inc = self.endpoint.accept() => {
                    let Some(inc) = inc else { break };
                    let (cfg, jobs, ep) = (self.cfg.clone(), self.jobs.clone(), self.endpoint.clone());
                    let greetings = self.greetings.clone();
                    tokio::spawn(async move {
                        if let Err(e) = connection(inc, cfg, jobs, ep, greetings).await {
                            warn!("connection refused or failed: {e}");
                        }
                    });
                }
            }
        }
        info!("shutting down");
        if let Some(a) = admin {
            a.abort();
        }
        self.endpoint.close(0u32.into(), b"shutdown");
        self.endpoint.wait_idle().await;
    }
}

/// Handles one incoming connection: verifies the peer, then reads the hello of each stream
/// (whole within `wait_secs` bounded by [`GREETING_SECS`], at most [`MAX_GREETING`] bytes, at
/// most [`GREETINGS_PER_PEER`] of the peer's at once).
async fn connection(
    inc: quinn::Incoming,
    cfg: Arc<ServerConfig>,
    jobs: Jobs,
    ep: quinn::Endpoint,
    greetings: Greetings,
) -> Result<()> {
    let remote = inc.remote_address();
    let conn = inc
        .await
        .map_err(|e| Error::invalid(format!("TLS handshake with {remote} failed: {e}")))?;
    let peer = match peer_identity(&conn, &cfg.allowed()) {
        Ok(p) => p,
        Err(e) => {
            conn.close(REFUSED_IDENTITY.into(), b"identity not allowed");
            return Err(e);
        }
    };
    info!(%peer, %remote, "peer connected");
    let in_flight = greetings.of(&peer);
    let secs = (cfg.limits.wait_secs).clamp(*GREETING_SECS.start(), *GREETING_SECS.end());
    let limit = Duration::from_secs(secs);
    while let Ok((s, r)) = conn.accept_bi().await {
        let (s, mut r) = framed(s, r, PeerName::Unknown, cfg.max_bytes());
        let (cfg, jobs, ep, conn, peer, in_flight) = (
            cfg.clone(),
            jobs.clone(),
            ep.clone(),
            conn.clone(),
            peer.clone(),
            in_flight.clone(),
        );
        tokio::spawn(async move {
            let greeting = async {
                let _turn = in_flight.acquire().await;
                r.control_within::<Hello>(MAX_GREETING).await
            };
            match tokio::time::timeout(limit, greeting).await {
                Ok(Ok(hello)) => {
                    if let Err(e) = dispatch(hello, s, r, &cfg, &jobs, &ep, conn, &peer).await {
                        warn!(%peer, "refused: {e}");
                    }
                }
                Ok(Err(e)) => warn!(%peer, "bad first message: {e}"),
                Err(_) => warn!(
                    %peer,
                    "no whole first message within {} s: stream dropped",
                    limit.as_secs()
                ),
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
    let link = matches!(
        hello,
        Hello::Server { .. } | Hello::Dealer { .. } | Hello::Mesh { .. }
    );
    if link && !cfg.peers.servers.iter().any(|p| p == peer) {
        let why = format!("{peer} is not a configured server");
        let _ = s.control(&Ack::Refused(why.clone())).await;
        return Err(refuse(why));
    }
    // A link creates its job on first contact: its id is checked first, as an upload's is.
    let link_job = match &hello {
        Hello::Server { job, .. } | Hello::Mesh { job, .. } => Some((job.as_str(), false)),
        Hello::Dealer(h) => Some((h.job.as_str(), true)),
        Hello::Upload { .. } => None,
    };
    if let Some(Err(e)) = link_job.map(|(job, dealer)| check_link_job_id(job, dealer)) {
        let why = e.to_string();
        let _ = s.control(&Ack::Refused(why.clone())).await;
        return Err(refuse(why));
    }
    match (cfg.role, hello) {
        (
            Role::Compute,
            Hello::Upload {
                spec,
                side,
                rows,
                tokens,
                agreement,
            },
        ) => {
            let pname = PeerName::Party(side.min(1));
            s.set_peer(pname);
            r.set_peer(pname);
            // A party that stops reading what this server sends it (statuses, results) fails
            // that send after this long, instead of holding the job and both bookings.
            s.set_silence(cfg.silence());
            // Where large explicit shares go, and whether this server is the job's last (the
            // only one that receives an explicit share): for the checks, the booking and the
            // upload alike.
            let spill = cfg.spill();
            let last = spec.servers.last().is_some_and(|s| s.name == cfg.name);
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
                // A share too large to hold is spilled to disk as it arrives, and bounded
                // there instead.
                let bytes = (rows as u128) * spec.params.model.width() as u128 * 8;
                let limit = if bytes > spill.above as u128 {
                    spill.max
                } else {
                    cfg.max_bytes()
                };
                let most = rows.saturating_mul(2 * MAX_TOKENS_PER_ROW as u64);
                if tokens > most {
                    return Err(refuse(format!(
                        "an upload of {rows} rows announces {tokens} tokens; at most \
                         {MAX_TOKENS_PER_ROW} own and {MAX_TOKENS_PER_ROW} neighbour tokens per \
                         row are allowed"
                    )));
                }
                let fewest = spec.min_rows() as u64;
                if rows < fewest {
                    return Err(refuse(format!(
                        "an upload of {rows} rows is too small for this job: its servers' \
                         workers need at least {fewest} rows of each side"
                    )));
                }
                if bytes > limit as u128 {
                    return Err(refuse(format!(
                        "an upload of {rows} rows exceeds this server's limit of {} MiB per share \
                         (limits.max_message_mib, or limits.spill_max_gib for shares spilled to disk, all held \
                         uploads' together)",
                        limit >> 20
                    )));
                }
                Ok(())
            })();
            // A replayed job id and a party over its upload limit are refused before anything
            // of the upload is read.
            let slot = checks
                .and_then(|()| match book(jobs).replayed(&spec.job, Instant::now()) {
                    Some(why) => Err(Error::invalid(why)),
                    None => Ok(()),
                })
                .and_then(|()| {
                    use crate::model::footprint::{MEASURED_ROWS, token_bytes, worker_bytes};
                    // The last server holds an explicit share below its spill threshold;
                    // the others draw theirs from seeds. A worker of a split server books its
                    // share of the job.
                    let share = rows * spec.params.model.width() as u64 * 8;
                    let held = last && share <= spill.above;
                    let workers = spec.workers_of(&cfg.name);
                    // Tokens beyond the typical count are booked on top of the fit.
                    let booking = Booking {
                        memory: worker_bytes(
                            &spec.params,
                            rows as usize,
                            spec.servers.len(),
                            held,
                            workers,
                        )
                        .saturating_add(token_bytes(rows, tokens)),
                        disk: if last && !held { share } else { 0 },
                    };
                    if rows as usize > MEASURED_ROWS {
                        info!(
                            job = %spec.job,
                            rows,
                            "memory estimate extrapolated beyond the measured sizes ({MEASURED_ROWS} rows per side)"
                        );
                    }
                    PartySlot::take(jobs, peer, cfg.limits.max_jobs_per_party, booking, rows)
                });
            let slot = match slot {
                Ok(slot) => slot,
                Err(e) => {
                    let _ = s.control(&Outcome::Failed(e.to_string())).await;
                    s.finish().await;
                    return Err(e);
                }
            };
            let rows = rows as usize;
            let recv = async {
                let w = spec.params.model.width();
                let z = recv_rows(&mut r, [rows, w], last, pname, Some(&spill)).await?;
                let ids = if spec.params.share_partner_ids {
                    recv_share(&mut r, rows * crate::model::align::ID_WORDS, pname).await?
                } else {
                    Vec::new()
                };
                let audit_words = rows * spec.params.audit.in_width();
                let audit = if audit_words > 0 {
                    recv_share(&mut r, audit_words, pname).await?
                } else {
                    Vec::new()
                };
                // No more tokens than announced (and booked).
                let mut left = tokens;
                let own = recv_tokens(&mut r, rows, pname, &mut left).await?;
                let neighbour = recv_tokens(&mut r, rows, pname, &mut left).await?;
                if left != 0 {
                    return Err(Error::protocol(
                        pname,
                        format!("announced {tokens} tokens and sent {}", tokens - left),
                    ));
                }
                Ok::<_, Error>(PartyShares {
                    z,
                    ids,
                    audit,
                    tokens: Tokens { own, neighbour },
                })
            };
            // An upload whose memory is booked must arrive within the wait limit: a party that
            // announces rows and then sends nothing cannot hold the budget.
            let wait = std::time::Duration::from_secs(cfg.limits.wait_secs);
            let recv = async {
                match tokio::time::timeout(wait, recv).await {
                    Ok(r) => r,
                    Err(_) => Err(timed_out(wait, "the rest of the upload")),
                }
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
                agreement,
                conn,
                _slot: slot,
            };
            deliver(cfg, jobs, ep, &job, Event::Upload(side, Box::new(up), s)).await
        }
        (
            Role::Compute,
            Hello::Server {
                job,
                from,
                worker,
                digest,
                uploads,
            },
        ) => {
            let ev = Event::Link {
                from: from as usize,
                worker: worker as usize,
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
        (
            Role::Compute,
            Hello::Mesh {
                job,
                from,
                digest,
                uploads,
            },
        ) => {
            // Only this server's own workers hold its identity.
            if peer != cfg.name {
                let why = format!("{peer} is not a worker of {}", cfg.name);
                let _ = s.control(&Ack::Refused(why.clone())).await;
                return Err(refuse(why));
            }
            let ev = Event::Mesh {
                from: from as usize,
                digest,
                uploads,
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
                    Hello::Mesh { .. } => "worker links",
                }
            );
            let _ = s.control(&Outcome::Failed(why.clone())).await;
            s.finish().await;
            Err(refuse(why))
        }
    }
}

/// Hands an event to its job's task, creating the job if it is new, the server has room and
/// the job id has not run here before.
pub(crate) async fn deliver(
    cfg: &Arc<ServerConfig>,
    jobs: &Jobs,
    ep: &quinn::Endpoint,
    job: &str,
    ev: Event,
) -> Result<()> {
    let admitted = {
        let mut reg = book(jobs);
        let now = std::time::Instant::now();
        // A compute server's links (another server's, its own workers') may create a job
        // before its parties upload: such a job counts against `max_jobs` from its first
        // upload on ([`Registry::admit_link`]).
        let linked_by = match (&ev, cfg.role) {
            (Event::Link { peer, .. }, Role::Compute) => Some(peer.clone()),
            (Event::Mesh { .. }, Role::Compute) => Some(cfg.name.clone()),
            _ => None,
        };
        let admit = match &linked_by {
            Some(peer) => reg.admit_link(job, now, peer),
            None => reg.admit(job, now),
        };
        match admit {
            Admit::Held(tx) => Ok(tx),
            Admit::Refused(why) => Err(why),
            Admit::New => {
                let (tx, rx) = mpsc::unbounded_channel();
                // A dealer job starts with its first link (servers link only once they hold
                // both uploads); a compute job starts once it holds both uploads.
                let (phase, started) = match cfg.role {
                    Role::Compute => (Phase::Waiting, false),
                    Role::Dealer => (Phase::Serving, true),
                };
                reg.insert(job, tx.clone(), phase, started, linked_by.as_deref(), now);
                let (cfg, jobs, ep, id) = (cfg.clone(), jobs.clone(), ep.clone(), job.to_string());
                tokio::spawn(async move {
                    let mut end = JobEnd {
                        jobs: jobs.clone(),
                        id: id.clone(),
                        how: Ended::Failed,
                    };
                    end.how = match cfg.role {
                        Role::Compute => compute_job(&cfg, &ep, &jobs, &id, rx).await,
                        // The dealer's outcome is in its log; its job id is remembered either way.
                        Role::Dealer => {
                            dealer_job(&cfg, &jobs, &id, rx).await;
                            Ended::Done
                        }
                    };
                });
                Ok(tx)
            }
        }
    };
    match admitted {
        Ok(tx) => tx
            .send(ev)
            .map_err(|_| Error::invalid(format!("job {job:?} has already ended"))),
        Err(why) => {
            refuse_event(ev, &why).await;
            Err(Error::invalid(why))
        }
    }
}

pub(crate) async fn refuse_event(ev: Event, why: &str) {
    match ev {
        Event::Upload(_, _, mut reply) => {
            let _ = reply.control(&Outcome::Failed(why.to_string())).await;
            reply.finish().await;
        }
        Event::Link { mut streams, .. }
        | Event::DealerLink { mut streams, .. }
        | Event::Mesh { mut streams, .. } => {
            let _ = streams.0.control(&Ack::Refused(why.to_string())).await;
        }
    }
}

/// How long a refusal sent aside ([`refuse_aside`]) may take: a peer that does not read it
/// loses it, and its streams are dropped.
pub(crate) const ASIDE_SECS: u64 = 10;

/// Refuses `ev` on a task of its own, within [`ASIDE_SECS`], so that the job does not wait on
/// a peer that does not read.
pub(crate) fn refuse_aside(ev: Event, why: String) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(ASIDE_SECS), refuse_event(ev, &why)).await;
    });
}

/// Refuses, aside, every event that reaches a job past its linking (a link, a worker link or
/// an upload for a job already running), so that none is held unread, with its connection,
/// until the job ends. Never returns; run it beside the job.
pub(crate) async fn refuse_late(
    rx: &mut mpsc::UnboundedReceiver<Event>,
) -> std::convert::Infallible {
    while let Some(ev) = rx.recv().await {
        refuse_aside(ev, "this job is already running".to_string());
    }
    std::future::pending().await
}

/// The job's next event, waiting until `deadline` (a wait of `wait`, which the caller restarts
/// only for the events that make progress).
pub(crate) async fn next_event_until(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    deadline: tokio::time::Instant,
    wait: Duration,
    what: &str,
) -> Result<Event> {
    match tokio::time::timeout_at(deadline, rx.recv()).await {
        Ok(Some(ev)) => Ok(ev),
        Ok(None) => Err(Error::invalid("job channel closed")),
        Err(_) => Err(timed_out(wait, what)),
    }
}

/// The error after waiting `wait` in vain for `what`.
pub(crate) fn timed_out(wait: Duration, what: &str) -> Error {
    Error::invalid(format!(
        "timed out after {} s (wait_secs) waiting for {what}",
        wait.as_secs()
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A job task that panics gives its place back and is remembered as failed.
    #[test]
    fn a_job_task_that_panics_ends_its_job() {
        let jobs: Jobs = Arc::new(Mutex::new(Registry::new(1, Duration::from_secs(60))));
        let now = Instant::now();
        let (tx, _rx) = mpsc::unbounded_channel();
        book(&jobs).insert("j", tx, Phase::Computing, true, None, now);
        assert!(
            matches!(book(&jobs).admit("k", now), Admit::Refused(_)),
            "full"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let task = rt.spawn({
            let jobs = jobs.clone();
            async move {
                let _end = JobEnd {
                    jobs,
                    id: "j".into(),
                    how: Ended::Failed,
                };
                tokio::task::yield_now().await;
                panic!("a bug in a job");
            }
        });
        assert!(rt.block_on(task).unwrap_err().is_panic());
        let mut reg = book(&jobs);
        assert!(
            matches!(reg.admit("k", now), Admit::New),
            "the place is back"
        );
        assert!(
            matches!(reg.admit("j", now), Admit::Refused(_)),
            "remembered"
        );
    }
}
