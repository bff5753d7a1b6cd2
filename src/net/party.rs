//! The party client: the job file a graph owner writes, the upload to every server, and the wait
//! for each server's result shares.

use crate::error::{Error, PeerName, Result};
use crate::model::align::{JobParams, PartyData};
use crate::mpc::prg::Seed;
use crate::mpc::share::ShareMsg;
use crate::net::dial::open;
use crate::net::job::{Hello, JobSpec, JobStats, Node, Outcome, OutputMode};
use crate::net::liveness::{Liveness, Timing};
use crate::net::progress::{Lines, PartyEvent, PartyProgress};
use crate::net::tls::{Identity, TlsFiles};
use crate::net::upload::{send_last_share, send_share, send_tokens};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What one server returned to a party. `Debug` shows only sizes: the words are shares.
#[derive(Clone)]
pub struct ServerResult {
    /// Result shares, `rows x width`, then the job's status word.
    pub words: Vec<u64>,
    /// Words per row.
    pub width: usize,
    /// The server's traffic figures.
    pub stats: JobStats,
}

impl std::fmt::Debug for ServerResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ServerResult(words={}, width={}, stats={:?}, <redacted>)",
            self.words.len(),
            self.width,
            self.stats
        )
    }
}

/// One server's share of a party's `z`, as it is sent.
#[derive(Clone, Copy)]
pub enum ZShare<'a> {
    /// A message made beforehand (a seed, or explicit words).
    Msg(&'a ShareMsg),
    /// The last server's correction `z - sum_s PRG(seed_s)` for the other servers' seeds,
    /// computed from the party's data a block of rows at a time while it is sent (memory: a
    /// block, not the upload).
    Last(&'a [Seed]),
}

impl ZShare<'_> {
    fn wire_bytes(&self, data: &PartyData) -> usize {
        match self {
            ZShare::Msg(m) => m.wire_bytes(),
            ZShare::Last(_) => 8 * data.z_words(),
        }
    }
}

/// Uploads one party's share for server `j` of `spec` and waits for that server's result.
#[allow(clippy::too_many_arguments)]
pub async fn upload_to(
    ep: &quinn::Endpoint,
    spec: &JobSpec,
    j: usize,
    side: u8,
    data: &PartyData,
    z: ZShare<'_>,
    ids: Option<&ShareMsg>,
    audit: Option<&ShareMsg>,
    timing: impl Into<Timing>,
    progress: &dyn PartyProgress,
) -> Result<ServerResult> {
    let to = (j, 0);
    upload_to_worker(ep, spec, to, side, data, z, ids, audit, timing, progress).await
}

/// [`upload_to`] worker `w` of server `j` (`to = (j, w)`): the same upload (every worker of a
/// server holds the server's shares), and that worker's result, for its shard of this party's
/// rows ([`crate::model::shard`]).
#[allow(clippy::too_many_arguments)]
pub async fn upload_to_worker(
    ep: &quinn::Endpoint,
    spec: &JobSpec,
    (j, w): (usize, usize),
    side: u8,
    data: &PartyData,
    z: ZShare<'_>,
    ids: Option<&ShareMsg>,
    audit: Option<&ShareMsg>,
    timing: impl Into<Timing>,
    progress: &dyn PartyProgress,
) -> Result<ServerResult> {
    let timing = timing.into();
    let node = spec
        .servers
        .get(j)
        .filter(|n| w < n.worker_count())
        .ok_or_else(|| Error::invalid(format!("the job has no worker {w} of server {j}")))?;
    let workers = node.worker_count();
    let node = &node.worker(w);
    // The rows this worker answers for.
    let own_rows = crate::model::shard::Shards::rows(data.rows.len(), workers, w).len();
    if let ZShare::Last(seeds) = z
        && (j + 1 != spec.servers.len() || seeds.len() + 1 != spec.servers.len())
    {
        // The correction is `z` itself less the other servers' seeds: sent anywhere else, or
        // against the wrong seeds, it would reveal `z`.
        return Err(Error::invalid(format!(
            "the computed share of z goes to the last of {} servers against the other {} seeds (here: server {j}, {} seeds)",
            spec.servers.len(),
            spec.servers.len().saturating_sub(1),
            seeds.len()
        )));
    }
    let peer = PeerName::Server(j);
    let (conn, mut s, mut r) = open(ep, node, peer, u64::MAX / 2, timing.connect).await?;
    let server = node.name.as_str();
    let attempt = async {
        let rows = data.rows.len() as u64;
        let total = upload_bytes(data, z, ids);
        let before = conn.stats().udp_tx.bytes;
        let hello = Hello::Upload {
            spec: Box::new(spec.clone()),
            side,
            rows,
            tokens: data.tokens.count(),
            agreement: data.agreement,
        };
        let sent = async {
            s.control(&hello).await?;
            match z {
                ZShare::Msg(m) => send_share(&mut s, m).await?,
                ZShare::Last(seeds) => send_last_share(&mut s, data, seeds).await?,
            }
            if let Some(ids) = ids {
                send_share(&mut s, ids).await?;
            }
            if let Some(audit) = audit {
                send_share(&mut s, audit).await?;
            }
            send_tokens(&mut s, &data.tokens.own).await?;
            send_tokens(&mut s, &data.tokens.neighbour).await
        };
        let uploading = |sent: u64| PartyEvent::Uploading {
            server,
            sent: sent.min(total),
            total,
        };
        let sent = with_ticks(sent, || {
            progress.event(&uploading(conn.stats().udp_tx.bytes - before))
        })
        .await;
        if let Err(e) = sent {
            if matches!(e, Error::Invalid(_) | Error::Range { .. }) {
                // Failed here (computing the rows), not on the wire: nothing to wait for.
                return Err(e);
            }
            // A server that refuses an upload says why before it stops reading.
            let why = tokio::time::timeout(Duration::from_secs(2), r.control::<Outcome>()).await;
            if let Ok(Ok(Outcome::Failed(why))) = why {
                return Err(Error::invalid(format!(
                    "{} refused the upload: {}",
                    node.name,
                    crate::error::peer_text(&why)
                )));
            }
            return Err(e);
        }
        progress.event(&uploading(total));
        let addr = node.addr.to_string();
        progress.event(&PartyEvent::Uploaded {
            server,
            addr: &addr,
        });
        let outcome = loop {
            match r.control::<Outcome>().await? {
                Outcome::Status(status) => progress.event(&PartyEvent::Status {
                    server,
                    status: &status.sanitized(),
                }),
                other => break other,
            }
        };
        match outcome {
            Outcome::Done {
                rows: n,
                width,
                stats,
            } => {
                let (rows, width) = expected_result_shape(spec, own_rows, n, width)
                    .map_err(|why| Error::protocol(peer, why))?;
                let total = 8 * (rows * width + spec.params.trailer_words()) as u64;
                let before = conn.stats().udp_rx.bytes;
                let downloading = |received: u64| PartyEvent::Downloading {
                    server,
                    received: received.min(total),
                    total,
                };
                let words = with_ticks(
                    r.words_exact(rows * width + spec.params.trailer_words()),
                    || progress.event(&downloading(conn.stats().udp_rx.bytes - before)),
                )
                .await?;
                progress.event(&downloading(total));
                progress.event(&PartyEvent::Received { server });
                Ok(ServerResult {
                    words,
                    width,
                    stats,
                })
            }
            Outcome::Failed(why) => Err(Error::invalid(format!(
                "{} reports that the job failed: {}",
                node.name,
                crate::error::peer_text(&why)
            ))),
            Outcome::Status(_) => Err(Error::protocol(peer, "a status where an outcome belongs")),
        }
    };
    let who = format!("{} at {}", node.name, node.addr);
    attempt
        .await
        .map_err(|e| crate::net::liveness::lost(e, &conn, &who, timing.liveness.idle))
}

/// Checks a server's announced result shape against what this party's job can produce: one row
/// per uploaded row and the job's output width (with partner ids only if this party opted in),
/// or one row of two sums in aggregate jobs. Returns `(rows, width)`.
fn expected_result_shape(
    spec: &JobSpec,
    uploaded: usize,
    rows: u64,
    width: u64,
) -> std::result::Result<(usize, usize), String> {
    let allowed: Vec<(usize, usize)> = match spec.output {
        OutputMode::Aggregate => vec![(1, 2)],
        OutputMode::Matches => {
            let mut p = spec.params.clone();
            p.share_partner_ids = false;
            let mut v = vec![(uploaded, p.out_width())];
            if spec.params.share_partner_ids {
                p.share_partner_ids = true;
                v.push((uploaded, p.out_width()));
            }
            v
        }
    };
    allowed
        .into_iter()
        .find(|&(r, w)| r as u64 == rows && w as u64 == width)
        .ok_or_else(|| {
            format!(
                "announced a result of {rows} rows x {width} words, which this job cannot produce"
            )
        })
}

/// How often transfers report their byte counts.
const TICK: Duration = Duration::from_millis(200);

/// Runs `fut`, calling `tick` every [`TICK`] until it completes.
async fn with_ticks<T>(fut: impl std::future::Future<Output = T>, tick: impl Fn()) -> T {
    tokio::pin!(fut);
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            r = &mut fut => return r,
            _ = every.tick() => tick(),
        }
    }
}

/// Bytes of an upload to one server as framed on its stream (an estimate for progress: the
/// control messages are counted at a few bytes each).
fn upload_bytes(data: &PartyData, z: ZShare<'_>, ids: Option<&ShareMsg>) -> u64 {
    let tokens: usize = (data.tokens.own.iter())
        .chain(&data.tokens.neighbour)
        .map(Vec::len)
        .sum();
    let frames = z.wire_bytes(data) + ids.map_or(0, ShareMsg::wire_bytes);
    (frames + 8 * (tokens + 2 * data.rows.len()) + 4 * 9 + 512) as u64
}

/// A party's side of a job: uploads to every server, waits, and returns each server's result.
/// Fails if any server fails; nothing partial is returned. `progress` gets one line per step
/// (see [`run_party_with`] for byte counts too).
pub async fn run_party(
    spec: &JobSpec,
    side: u8,
    identity: &Identity,
    data: &PartyData,
    timing: impl Into<Timing>,
    progress: impl Fn(&str) + Send + Sync,
) -> Result<Vec<ServerResult>> {
    run_party_with(spec, side, identity, data, timing, &Lines(progress)).await
}

/// [`run_party`] reporting every [`PartyEvent`] (uploads and downloads in bytes, the servers'
/// status) to `progress`.
pub async fn run_party_with(
    spec: &JobSpec,
    side: u8,
    identity: &Identity,
    data: &PartyData,
    timing: impl Into<Timing>,
    progress: &dyn PartyProgress,
) -> Result<Vec<ServerResult>> {
    spec.validate()?;
    let timing = timing.into();
    let k = spec.servers.len();
    let ep = identity.client_endpoint_with(&timing.liveness)?;
    // `z` is the one row-sized part of the upload: the seed servers get seeds, the last
    // server's correction is computed as it is sent (never held whole).
    let seeds = crate::mpc::share::share_seeds(k)?;
    let z: Vec<ShareMsg> = seeds
        .iter()
        .map(|seed| ShareMsg::Seed {
            seed: seed.clone(),
            len: data.z_words(),
        })
        .collect();
    let ids = if spec.params.share_partner_ids {
        Some(crate::mpc::share::share_compressed(&data.ids, k)?)
    } else {
        None
    };
    let audit = if spec.params.audit.enabled {
        if data.audit.len() != data.rows.len() * spec.params.audit.in_width() {
            return Err(Error::invalid(
                "the job audits but the prepared data has no audit words",
            ));
        }
        Some(crate::mpc::share::share_compressed(&data.audit, k)?)
    } else {
        None
    };
    let (z, seeds, ids, audit, ep_ref) = (&z, &seeds[..], &ids, &audit, &ep);
    // Servers split into workers get the same upload on every worker; only worker 0's
    // progress is shown (the others' is the same job).
    let workers = spec.servers[0].worker_count();
    let quiet = Lines(|_: &str| {});
    let quiet: &dyn PartyProgress = &quiet;
    let mut pending: futures::stream::FuturesUnordered<_> = (0..k)
        .flat_map(|j| (0..workers).map(move |w| (j, w)))
        .map(|(j, w)| async move {
            let r = upload_to_worker(
                ep_ref,
                spec,
                (j, w),
                side,
                data,
                z.get(j).map_or(ZShare::Last(seeds), ZShare::Msg),
                ids.as_ref().map(|v| &v[j]),
                audit.as_ref().map(|v| &v[j]),
                timing,
                if w == 0 { progress } else { quiet },
            )
            .await;
            (j * workers + w, r)
        })
        .collect();
    let mut results: Vec<Option<ServerResult>> = (0..k * workers).map(|_| None).collect();
    let mut errors = Vec::new();
    // Once one server delivered, the others have `results_grace` to deliver theirs.
    let mut first: Option<(tokio::time::Instant, usize)> = None;
    loop {
        let next = futures::StreamExt::next(&mut pending);
        let got = match first {
            None => next.await,
            Some((at, by)) => {
                match tokio::time::timeout_at(at + timing.results_grace, next).await {
                    Ok(got) => got,
                    Err(_) => {
                        errors.push(late(spec, workers, &results, by, timing.results_grace));
                        break;
                    }
                }
            }
        };
        let Some((j, r)) = got else { break };
        match r {
            Ok(x) => {
                results[j] = Some(x);
                first.get_or_insert((tokio::time::Instant::now(), j));
            }
            Err(e) => {
                errors.push(e);
                break;
            }
        }
    }
    if !errors.is_empty() {
        // One failure usually brings the others: give them a moment to say why, so the error
        // names the cause (a server that stopped answering) and not only its consequences.
        let grace = tokio::time::sleep(FAILURE_GRACE);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                _ = &mut grace => break,
                next = futures::StreamExt::next(&mut pending) => match next {
                    None => break,
                    Some((_, Err(e))) => errors.push(e),
                    Some((_, Ok(_))) => {}
                },
            }
        }
        // Say goodbye, so the servers drop this party's uploads at once rather than after
        // their idle timeout.
        ep.close(1u32.into(), b"party gave up");
        let _ = tokio::time::timeout(Duration::from_secs(1), ep.wait_idle()).await;
        return Err(combine_failures(errors));
    }
    let results: Vec<ServerResult> = results.into_iter().flatten().collect();
    let rows = match spec.output {
        OutputMode::Matches => Joined::Rows,
        OutputMode::Aggregate => Joined::Sums(2),
    };
    let results = join_workers(results, workers, rows, spec.params.trailer_words())?;
    if let Some(s) = results.iter().position(|r| r.width != results[0].width) {
        return Err(Error::invalid(format!(
            "servers returned results of different shapes: rows of {} words from {}, of {} from {}",
            results[0].width, spec.servers[0].name, results[s].width, spec.servers[s].name
        )));
    }
    ep.close(0u32.into(), b"done");
    Ok(results)
}

/// The error for servers (or workers: `workers` per server) that have not delivered, in
/// `results`, within `grace` after server `by` did.
fn late(
    spec: &JobSpec,
    workers: usize,
    results: &[Option<ServerResult>],
    by: usize,
    grace: Duration,
) -> Error {
    let name = |j: usize| match workers {
        1 => spec.servers[j].name.clone(),
        _ => format!(
            "worker {} of {}",
            j % workers,
            spec.servers[j / workers].name
        ),
    };
    let missing: Vec<String> = (0..results.len())
        .filter(|&j| results[j].is_none())
        .map(name)
        .collect();
    Error::invalid(format!(
        "{} did not deliver results within {} s after {} did (servers finish a job together; \
         one that keeps a party waiting deviates or is stuck: see its log)",
        missing.join(" and "),
        grace.as_secs(),
        name(by)
    ))
}

/// How a server's workers' results join.
#[derive(Debug, Clone, Copy)]
enum Joined {
    /// Each worker's rows, in worker order.
    Rows,
    /// The sum of the workers' first `n` words (aggregate-only jobs: worker 0 holds the
    /// server's sums, the others zeros).
    Sums(usize),
}

/// Each server's result from its workers' (`workers` per server, in order): their rows in
/// order (or their sums), then worker 0's trailer (`trailer` words: the status and aggregates,
/// of the same value on every worker); traffic added up (rounds: the largest).
fn join_workers(
    results: Vec<ServerResult>,
    workers: usize,
    rows: Joined,
    trailer: usize,
) -> Result<Vec<ServerResult>> {
    if workers == 1 {
        return Ok(results);
    }
    results
        .chunks(workers)
        .enumerate()
        .map(|(server, ws)| {
            if let Some(j) = ws.iter().position(|r| r.width != ws[0].width) {
                return Err(Error::invalid(format!(
                    "server {server}'s workers returned results of different shapes: rows of {} \
                     words from worker 0, of {} from worker {j}",
                    ws[0].width, ws[j].width
                )));
            }
            let mut words = Vec::with_capacity(ws.iter().map(|r| r.words.len()).sum());
            match rows {
                Joined::Rows => {
                    for r in ws {
                        let rows = r.words.len().checked_sub(trailer).ok_or_else(|| {
                            Error::invalid(
                                "a server's worker returned fewer words than its trailer",
                            )
                        })?;
                        words.extend_from_slice(&r.words[..rows]);
                    }
                }
                Joined::Sums(n) => {
                    if ws.iter().any(|r| r.words.len() != n + trailer) {
                        return Err(Error::invalid(
                            "a server's workers returned aggregates of different sizes",
                        ));
                    }
                    let heads = ws.iter().map(|r| &r.words[..n]);
                    words = crate::mpc::ring::sum_all(n, heads);
                }
            }
            words.extend_from_slice(&ws[0].words[ws[0].words.len() - trailer..]);
            let mut stats = ws[0].stats;
            for r in &ws[1..] {
                stats.bytes_sent += r.stats.bytes_sent;
                stats.bytes_from_dealer += r.stats.bytes_from_dealer;
                stats.rounds = stats.rounds.max(r.stats.rounds);
            }
            Ok(ServerResult {
                words,
                width: ws[0].width,
                stats,
            })
        })
        .collect()
}

/// How long a party waits, after one server failed, for the others' reasons.
const FAILURE_GRACE: Duration = Duration::from_secs(3);

/// One error from several servers' failures: a lost link first (the likely cause), then what
/// the servers reported, without repeats.
fn combine_failures(mut errors: Vec<Error>) -> Error {
    errors.sort_by_key(|e| !matches!(e, Error::Transport { .. }));
    let mut seen = Vec::new();
    for e in &errors {
        let t = e.to_string();
        if !seen.contains(&t) {
            seen.push(t);
        }
    }
    if seen.len() == 1 {
        return errors.swap_remove(0);
    }
    let first = errors.swap_remove(0);
    let rest = seen[1..].join("; ");
    match first {
        Error::Transport { peer, what } => Error::transport(peer, format!("{what}; also: {rest}")),
        other => Error::invalid(format!("{other}; also: {rest}")),
    }
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
    /// The dealer (leave it out with `correlation = "ot"` or `"replicated"` under `[params]`).
    #[serde(default)]
    pub dealer: Option<Node>,
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
    /// Seconds between QUIC keep-alives.
    #[serde(default = "default_keepalive")]
    pub keepalive_secs: u64,
    /// Seconds without any packet from a server after which it counts as dead.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
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
    /// Reads and checks a job file. Every error names the file.
    pub fn load(path: &std::path::Path) -> Result<PartyJob> {
        let at = |e: &dyn std::fmt::Display| Error::invalid(format!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| at(&format!("cannot read: {e}")))?;
        let mut job: PartyJob = toml::from_str(&text).map_err(|e| at(&e))?;
        job.tls = job
            .tls
            .relative_to(path.parent().unwrap_or(std::path::Path::new(".")));
        job.check().map_err(|e| at(&e))?;
        Ok(job)
    }

    /// Checks the fields against each other.
    fn check(&self) -> Result<()> {
        let side = self.side_index()?;
        self.key()?;
        if self.parties[side as usize] != self.identity {
            return Err(Error::invalid(format!(
                "identity {:?} is not party {} ({:?})",
                self.identity, self.side, self.parties[side as usize]
            )));
        }
        self.timing()?;
        self.spec().validate()
    }

    /// Connection timing: connect timeout, keep-alive and idle timeout.
    pub fn timing(&self) -> Result<Timing> {
        Ok(Timing {
            connect: Duration::from_secs(self.connect_timeout_secs),
            liveness: Liveness::from_secs(self.keepalive_secs, self.idle_timeout_secs)?,
            results_grace: Duration::from_secs(crate::net::liveness::RESULTS_GRACE_SECS),
        })
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

    /// This job's blocking key: the agreed `blocking_key` bound to the job id
    /// ([`crate::model::blocking::BlockingKey::for_job`]), so that two jobs never share tokens.
    pub fn key(&self) -> Result<crate::model::blocking::BlockingKey> {
        let h = self.blocking_key.trim();
        let bad = || Error::invalid("blocking_key must be 64 hexadecimal digits (32 bytes)");
        // Checked byte by byte before any slicing: a multi-byte character would not split at
        // every second byte, and `from_str_radix` alone takes a leading `+`.
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(crate::model::blocking::BlockingKey(k).for_job(&self.job))
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

fn default_keepalive() -> u64 {
    crate::net::liveness::KEEPALIVE_SECS
}

fn default_idle_timeout() -> u64 {
    crate::net::liveness::IDLE_TIMEOUT_SECS
}

/// What an evaluation job leaves for the judge: the party's prepared data and its results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalDump {
    /// Job id (drives candidate padding).
    pub job: String,
    /// The party's side: 0 for A, 1 for B.
    pub side: u8,
    /// Parameters as run (opt-ins resolved).
    pub params: JobParams,
    /// The party's prepared data.
    pub data: PartyData,
    /// Its reconstructed results.
    pub results: Vec<crate::model::align::ResultRow>,
}

impl EvalDump {
    /// The dump's name in a run's output folder.
    pub const FILE: &'static str = "eval-dump.bin";

    /// Writes the dump into `dir`, encoded as it goes (a streamed party's rows are computed as
    /// they are written) under a temporary name, then renamed: never a half-written dump.
    pub fn write(&self, dir: &std::path::Path) -> Result<()> {
        let path = dir.join(Self::FILE);
        crate::model::graph::write_file_atomically(&path, |mut w| {
            bincode::serde::encode_into_std_write(self, &mut w, bincode::config::standard())
                .map(|_| ())
                .map_err(std::io::Error::other)
        })
        .map_err(|e| Error::invalid(format!("writing {}: {e}", path.display())))
    }

    /// Reads party `side`'s dump from `dir`, refusing, naming the file, one that does not
    /// decode (its lengths bounded by the file's size before anything is allocated), that is
    /// the other side's, or whose parts do not fit together.
    pub fn read(dir: &std::path::Path, side: u8) -> Result<EvalDump> {
        let path = dir.join(Self::FILE);
        let bad = |what: String| Error::invalid(format!("{}: {what}", path.display()));
        let f = std::fs::File::open(&path)
            .map_err(|e| bad(format!("{e} (was the job an evaluation job?)")))?;
        let len = f.metadata().map_err(|e| bad(e.to_string()))?.len();
        let dump: EvalDump = crate::net::wire::decode_file(&mut std::io::BufReader::new(f), len)
            .map_err(|e| bad(format!("does not decode: {e}")))?;
        dump.check(side).map_err(bad)?;
        Ok(dump)
    }

    /// Party A's and party B's dumps are of one job: the same job id and row width, and every
    /// best candidate names a row of the other side.
    pub fn check_pair(a: &EvalDump, b: &EvalDump) -> Result<()> {
        if a.job != b.job {
            return Err(Error::invalid(format!(
                "the two dumps come from different jobs ({:?} and {:?})",
                a.job, b.job
            )));
        }
        if a.data.width != b.data.width {
            return Err(Error::invalid(format!(
                "the two dumps' rows differ in width ({} and {})",
                a.data.width, b.data.width
            )));
        }
        for (d, other, name) in [(a, b, "A"), (b, a, "B")] {
            let rows = other.data.rows.len();
            let best = d.results.iter().filter_map(|r| r.best);
            if let Some((row, _)) = best.into_iter().find(|&(row, _)| row as usize >= rows) {
                return Err(Error::invalid(format!(
                    "party {name}'s dump names row {row} of the other side, which has {rows} rows"
                )));
            }
        }
        Ok(())
    }

    /// The dump's parts fit together and it is `side`'s.
    fn check(&self, side: u8) -> std::result::Result<(), String> {
        let name = |s: u8| if s == 0 { "A" } else { "B" };
        if self.side != side {
            return Err(format!(
                "it is party {}'s dump where party {}'s was expected",
                name(self.side),
                name(side)
            ));
        }
        self.params.validate().map_err(|e| e.to_string())?;
        let d = &self.data;
        let rows = d.rows.len();
        let shape = [
            ("results", self.results.len()),
            ("vector rows", d.z.len().checked_div(d.width).unwrap_or(0)),
            ("own token rows", d.tokens.own.len()),
            ("neighbour token rows", d.tokens.neighbour.len()),
        ];
        if let Some((what, n)) = shape.iter().find(|(_, n)| *n != rows) {
            return Err(format!("{rows} rows but {n} {what}"));
        }
        if d.z.len() != rows * d.width {
            return Err(format!(
                "{} vector words are not {rows} rows of {}",
                d.z.len(),
                d.width
            ));
        }
        if let Some(r) = self.results.iter().position(|r| r.best.is_none()) {
            return Err(format!(
                "row {r} has no best candidate (not an evaluation job's result)"
            ));
        }
        Ok(())
    }
}
