//! Configuration of a `server` process (TOML): identity, listening address, role, TLS files,
//! the peers it accepts, and resource limits.

use crate::error::{Error, Result};
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

    pub(crate) fn max_bytes(&self) -> u64 {
        self.limits.max_message_mib.saturating_mul(1 << 20)
    }

    pub(crate) fn allowed(&self) -> Vec<String> {
        let mut a = self.peers.parties.clone();
        a.extend(self.peers.servers.iter().cloned());
        a.push(self.peers.dealer.clone());
        a
    }
}
