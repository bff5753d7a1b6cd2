//! The admin endpoint: plain HTTP/1.0 on a loopback TCP address (`admin = "127.0.0.1:PORT"` in
//! the server's configuration), for the operator of that machine only.
//!
//! * `GET /status`: the held jobs (state, age, what each waits for) as JSON; `server status`
//!   prints it as a table.
//! * `GET /metrics`: counters in the Prometheus text format (jobs by outcome, bytes, seconds
//!   per phase).
//!
//! It shows job ids, identities, states, sizes and timings, never a secret value.

use crate::error::{Error, Result};
use crate::net::config::{Role, ServerConfig};
use crate::net::daemon::{Jobs, book};
use crate::net::registry::HeldJob;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};

/// What `GET /status` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The server's identity.
    pub name: String,
    /// `compute` or `dealer`.
    pub role: Role,
    /// Held jobs, oldest first.
    pub jobs: Vec<HeldJob>,
    /// Job ids remembered as having run (refused if submitted again).
    pub remembered: usize,
}

/// Binds the admin endpoint if one is configured (port 0 picks a free port).
pub(crate) fn bind(cfg: &ServerConfig) -> Result<Option<std::net::TcpListener>> {
    let Some(addr) = cfg.admin_addr()? else {
        return Ok(None);
    };
    let l = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .map_err(|e| Error::invalid(format!("admin endpoint: cannot listen on {addr}: {e}")))?;
    Ok(Some(l))
}

/// Serves the admin endpoint on `listener` (from [`bind`]) until the task is aborted.
pub(crate) fn serve(
    listener: std::net::TcpListener,
    cfg: &ServerConfig,
    jobs: Jobs,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| Error::invalid(format!("admin endpoint: {e}")))?;
    info!(addr = ?listener.local_addr().ok(), "admin endpoint listening (GET /status, GET /metrics)");
    let (name, role) = (cfg.name.clone(), cfg.role);
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (jobs, name) = (jobs.clone(), name.clone());
            tokio::spawn(async move {
                if let Err(e) = answer(stream, &jobs, &name, role).await {
                    warn!("admin request: {e}");
                }
            });
        }
    }))
}

async fn answer(
    mut stream: tokio::net::TcpStream,
    jobs: &Jobs,
    name: &str,
    role: Role,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    let read = async {
        while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                break;
            }
            len += n;
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request too slow"))??;
    let head = String::from_utf8_lossy(&buf[..len]);
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let (code, kind, body) = match path {
        "/status" => {
            let report = {
                let reg = book(jobs);
                Report {
                    name: name.to_string(),
                    role,
                    jobs: reg.held(Instant::now()),
                    remembered: reg.remembered(),
                }
            };
            let body = serde_json::to_string_pretty(&report).unwrap_or_default();
            ("200 OK", "application/json", body)
        }
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4",
            book(jobs).metrics(name),
        ),
        _ => (
            "404 Not Found",
            "text/plain",
            "try GET /status or GET /metrics\n".to_string(),
        ),
    };
    let reply = format!(
        "HTTP/1.0 {code}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

/// Fetches `path` (`/status` or `/metrics`) from the admin endpoint at `addr` and returns the
/// body.
pub async fn get(addr: SocketAddr, path: &str) -> Result<String> {
    let fail = |e: &dyn std::fmt::Display| {
        Error::invalid(format!(
            "admin endpoint {addr}: {e} (is the server running with `admin = \"{addr}\"`?)"
        ))
    };
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| fail(&"no answer within 10 s"))?
        .map_err(|e| fail(&e))?;
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail(&"malformed answer"))?;
    if !head.starts_with("HTTP/1.0 200") {
        return Err(fail(&head.lines().next().unwrap_or("")));
    }
    Ok(body.to_string())
}

/// The held jobs of the server whose admin endpoint is at `addr`.
pub async fn status(addr: SocketAddr) -> Result<Report> {
    let body = get(addr, "/status").await?;
    serde_json::from_str(&body)
        .map_err(|e| Error::invalid(format!("admin endpoint {addr}: bad status: {e}")))
}

impl std::fmt::Display for Report {
    /// A table for operators: one line per held job.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} ({:?}): {} job(s) held, {} finished job id(s) remembered",
            self.name,
            self.role,
            self.jobs.len(),
            self.remembered
        )?;
        if self.jobs.is_empty() {
            return Ok(());
        }
        writeln!(
            f,
            "{:<32} {:<11} {:>8} {:>8}  waiting for / step done",
            "job", "state", "age s", "state s"
        )?;
        for j in &self.jobs {
            // Job ids and party names come from peers: shown with their controls escaped.
            let status = j.status.clone().sanitized();
            let phase = serde_json::to_value(j.status.phase)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            writeln!(
                f,
                "{:<32} {:<11} {:>8} {:>8}  {}",
                status.job,
                phase,
                j.age_secs,
                j.phase_secs,
                match (&status.step, status.waiting_for.is_empty()) {
                    (Some(step), _) => step.clone(),
                    (None, true) => "-".to_string(),
                    (None, false) => status.waiting_for.join(", "),
                }
            )?;
        }
        Ok(())
    }
}

/// The admin address in a server's configuration file (for `server status --config`).
pub fn configured(cfg: &ServerConfig) -> Result<SocketAddr> {
    cfg.admin_addr()?.ok_or_else(|| {
        Error::invalid(format!(
            "{} has no admin endpoint: add `admin = \"127.0.0.1:PORT\"` to its configuration",
            cfg.name
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::registry::{HeldJob, Phase, Status};

    #[test]
    fn the_status_table_shows_what_each_job_waits_for_or_its_last_step() {
        let job = |name: &str, phase, waiting_for: &[&str], step: Option<&str>| HeldJob {
            status: Status {
                job: name.to_string(),
                phase,
                waiting_for: waiting_for.iter().map(|s| s.to_string()).collect(),
                step: step.map(str::to_string),
            },
            age_secs: 7,
            phase_secs: 3,
        };
        let report = Report {
            name: "server-0".into(),
            role: Role::Compute,
            jobs: vec![
                job("j-wait", Phase::Waiting, &["party-b"], None),
                job("j-run", Phase::Computing, &[], Some("scores")),
                // Names from peers, with terminal escapes.
                job(
                    "j-esc\u{1b}[2J",
                    Phase::Waiting,
                    &["p\u{1b}]0;x\u{7}"],
                    None,
                ),
            ],
            remembered: 1,
        };
        let text = report.to_string();
        let line = |id: &str| {
            text.lines()
                .find(|l| l.starts_with(id))
                .unwrap()
                .to_string()
        };
        assert!(line("j-wait").ends_with("party-b"), "{text}");
        assert!(line("j-run").ends_with("scores"), "{text}");
        assert!(text.contains("3 job(s) held"), "{text}");
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(line("j-esc").contains("p\\u{1b}]0;x"), "{text}");
    }
}
