//! Configuration of a `server` process (TOML): identity, listening address, role, TLS files,
//! the peers it accepts, and resource limits.

use crate::error::{Error, Result};
use crate::net::liveness::Liveness;
use crate::net::tls::TlsFiles;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

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
    /// Loopback address (`127.0.0.1:PORT`) of the admin endpoint that `server status` and
    /// Prometheus read; none if absent.
    #[serde(default)]
    pub admin: Option<String>,
    /// A compute server that runs as several worker processes (the job description lists their
    /// addresses, [`crate::net::job::Node::workers`]): this process's index among them, 0 to
    /// W - 1. Every worker of a server has the server's identity and certificate.
    #[serde(default)]
    pub worker: usize,
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
    /// The dealer this server trusts; servers that only run dealer-free jobs
    /// (`correlation = "ot"` or `"replicated"`) leave it out.
    #[serde(default)]
    pub dealer: Option<String>,
}

/// Resource limits of a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest single data message accepted, in MiB.
    pub max_message_mib: u64,
    /// Jobs held at once; more are refused.
    pub max_jobs: usize,
    /// Uploads one party may have on this server at once (being read or waiting in a job);
    /// more are refused before anything of them is read.
    pub max_jobs_per_party: usize,
    /// Seconds to wait for the second party, the other servers or the dealer.
    pub wait_secs: u64,
    /// Seconds between QUIC keep-alives.
    pub keepalive_secs: u64,
    /// Seconds without any packet after which a peer counts as dead.
    pub idle_timeout_secs: u64,
    /// Seconds a job id that ran (or failed) is remembered and refused.
    pub remember_jobs_secs: u64,
    /// Seconds this node waits, during a job, for the next bytes of a server, worker or the
    /// dealer it is linked with: a live peer (its keep-alives hold the connection open) that
    /// stops sending (or reading) fails the job, naming it, after this long, instead of holding
    /// the job and its parties' bookings forever. At least twice `wait_secs` (a peer answers a
    /// link once it has its own uploads) and longer than the longest local step of your
    /// largest jobs (minutes at 10^6 rows per side on 2 cores).
    pub silence_secs: u64,
    /// Seconds a job may run on this server once both parties' uploads are in (on the dealer,
    /// from the job's first link); past it the job fails here, both parties are told why, and
    /// its bookings are given back (the other servers, their links closed, fail too). Every
    /// wait on a peer is bounded by `silence_secs`, but a peer that sends a little before each
    /// limit runs out could hold a job as long as it liked: this bounds the whole job. At least
    /// twice `wait_secs`, and above your largest jobs' run time; 0: no limit.
    pub job_secs: u64,
    /// Memory budget of this process in MiB: an upload whose share of its job's estimated peak
    /// memory ([`crate::model::footprint`]) does not fit beside the uploads already held is
    /// refused before anything of it is read; one party may book at most half of it. On the
    /// dealer, a job whose estimated peak does not fit beside the jobs it serves is refused
    /// when its first link arrives, before any material is generated. 0: 80% of
    /// the memory this process may use (the machine's, or its container's limit). Per process:
    /// several servers on one machine each need their own share.
    pub memory_mib: u64,
    /// An explicit upload share (the last server's) larger than this many MiB is written, as it
    /// arrives, to an unlinked file in `spill_dir` instead of being held in memory; the bilinear
    /// form reads it back a group of columns at a time ([`crate::mpc::row_share`]). 0 spills
    /// every explicit share.
    pub spill_above_mib: u64,
    /// Directory for spilled shares (relative to the configuration file); empty: the system's
    /// temporary directory (`TMPDIR`, else `/tmp`).
    pub spill_dir: String,
    /// Disk the spilled shares of all the uploads this server holds may take at once, in GiB:
    /// each upload whose share will spill books its size (`rows x width x 8` bytes) when it
    /// arrives, before anything of it is read, and is refused if it does not fit beside the
    /// others, or would give one party more than half (a spilled share is bounded by this,
    /// not by `max_message_mib`). Size it, with `spill_dir`'s volume, for the jobs held at
    /// once.
    pub spill_max_gib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_mib: 4096,
            max_jobs: 8,
            max_jobs_per_party: 2,
            wait_secs: 600,
            keepalive_secs: crate::net::liveness::KEEPALIVE_SECS,
            idle_timeout_secs: crate::net::liveness::IDLE_TIMEOUT_SECS,
            remember_jobs_secs: 7 * 24 * 3600,
            silence_secs: 3600,
            job_secs: 24 * 3600,
            memory_mib: 0,
            spill_above_mib: 64,
            spill_dir: String::new(),
            spill_max_gib: 64,
        }
    }
}

impl Limits {
    /// The memory budget in bytes: `memory_mib`, or 80% of the machine's memory when it is 0
    /// (no limit when the machine does not say).
    pub fn memory_budget(&self) -> u64 {
        if self.memory_mib > 0 {
            return self.memory_mib.saturating_mul(1 << 20);
        }
        machine_memory().map_or(u64::MAX, |b| b / 5 * 4)
    }
}

/// The memory this process may use in bytes: the machine's (Linux `MemTotal`), or the
/// container's limit when it is lower (cgroup v2 `memory.max`, v1 `memory.limit_in_bytes`);
/// `None` if none can be read.
fn machine_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib.saturating_mul(1024))
        });
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|f| std::fs::read_to_string(f).ok()?.trim().parse::<u64>().ok())
    .min();
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
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
        if !cfg.limits.spill_dir.is_empty() {
            let dir = base.join(&cfg.limits.spill_dir);
            cfg.limits.spill_dir = dir.to_string_lossy().into_owned();
        }
        let at = |e: Error| Error::invalid(format!("{}: {e}", path.display()));
        cfg.listen_addr().map_err(at)?;
        cfg.liveness().map_err(at)?;
        cfg.admin_addr().map_err(at)?;
        let base_mib = crate::model::footprint::mib(crate::model::footprint::BASE_BYTES);
        if cfg.limits.memory_mib > 0 && cfg.limits.memory_mib <= base_mib {
            return Err(Error::invalid(format!(
                "{}: [limits] memory_mib = {} leaves nothing for jobs (the process itself takes \
                 about {base_mib} MiB); give more, or 0 for 80% of the machine's memory",
                path.display(),
                cfg.limits.memory_mib
            )));
        }
        if cfg.limits.silence_secs < cfg.limits.wait_secs.saturating_mul(2) {
            return Err(Error::invalid(format!(
                "{}: [limits] silence_secs = {} must be at least twice wait_secs = {} (a server \
                 answers a link once it holds its own uploads, which may take wait_secs, and \
                 the servers link one after the other)",
                path.display(),
                cfg.limits.silence_secs,
                cfg.limits.wait_secs
            )));
        }
        if cfg.limits.job_secs != 0 && cfg.limits.job_secs < cfg.limits.wait_secs.saturating_mul(2)
        {
            return Err(Error::invalid(format!(
                "{}: [limits] job_secs = {} must be at least twice wait_secs = {} (a job links \
                 its servers within it), or 0 for no limit",
                path.display(),
                cfg.limits.job_secs,
                cfg.limits.wait_secs
            )));
        }
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

    /// The longest wait for a linked peer's next bytes during a job (`silence_secs`).
    pub fn silence(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.limits.silence_secs.max(1))
    }

    /// When a job that starts now must end (`job_secs`); `None` without a limit.
    pub fn job_end(&self) -> Option<tokio::time::Instant> {
        match self.limits.job_secs {
            0 => None,
            secs => Some(tokio::time::Instant::now() + std::time::Duration::from_secs(secs)),
        }
    }

    /// Waits until `end` ([`ServerConfig::job_end`]), then returns the error that fails the
    /// job; never returns without a limit.
    pub async fn job_deadline(&self, end: Option<tokio::time::Instant>) -> Error {
        match end {
            None => std::future::pending().await,
            Some(end) => {
                tokio::time::sleep_until(end).await;
                Error::invalid(format!(
                    "the job ran for {} s, this server's limit ([limits] job_secs): a peer \
                     kept it going too slowly, or the limit is too low for the job",
                    self.limits.job_secs
                ))
            }
        }
    }

    /// The keep-alive and idle timeout of this node's connections.
    pub fn liveness(&self) -> Result<Liveness> {
        Liveness::from_secs(self.limits.keepalive_secs, self.limits.idle_timeout_secs)
            .map_err(|e| Error::invalid(format!("[limits] {e}")))
    }

    /// The admin endpoint's address, which must be on the loopback interface.
    pub fn admin_addr(&self) -> Result<Option<SocketAddr>> {
        let Some(a) = &self.admin else {
            return Ok(None);
        };
        let addr: SocketAddr = a
            .parse()
            .map_err(|e| Error::invalid(format!("admin address {a:?}: {e}")))?;
        if !addr.ip().is_loopback() {
            return Err(Error::invalid(format!(
                "admin address {a:?} must be on the loopback interface (127.0.0.1 or ::1)"
            )));
        }
        Ok(Some(addr))
    }

    /// Where explicit upload shares too large to hold go (`[limits] spill_*`).
    pub(crate) fn spill(&self) -> crate::net::upload::SpillPolicy {
        let dir = if self.limits.spill_dir.is_empty() {
            std::env::temp_dir()
        } else {
            std::path::PathBuf::from(&self.limits.spill_dir)
        };
        crate::net::upload::SpillPolicy {
            dir,
            above: self.limits.spill_above_mib.saturating_mul(1 << 20),
            max: self.limits.spill_max_gib.saturating_mul(1 << 30),
        }
    }

    /// On a compute server, checks at start that its spill directory takes files (a job
    /// would otherwise fail at its first large upload); nothing on the dealer.
    pub fn check_spill_dir(&self) -> Result<()> {
        if self.role == Role::Compute {
            let dir = self.spill().dir;
            tempfile::tempfile_in(&dir).map_err(|e| {
                Error::invalid(format!(
                    "[limits] spill_dir {}: cannot create a file there: {e}",
                    dir.display()
                ))
            })?;
        }
        Ok(())
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.limits.max_message_mib.saturating_mul(1 << 20)
    }

    pub(crate) fn allowed(&self) -> Vec<String> {
        let mut a = self.peers.parties.clone();
        a.extend(self.peers.servers.iter().cloned());
        a.extend(self.peers.dealer.iter().cloned());
        a
    }
}
