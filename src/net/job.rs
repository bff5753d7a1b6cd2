//! What a job is: the description parties send the servers, and the messages about it
//! (stream greetings, link answers, outcomes, traffic figures).
//!
//! **Flow of a job.** Each party opens one stream to every compute server and sends
//! `Hello::Upload` (the job description and its side), then its PRG-compressed share, its id
//! share and its keyed tokens ([`crate::net::upload`]). A server that holds both uploads, with
//! identical job descriptions, connects to every server with a higher index (`Hello::Server`)
//! and to the dealer (`Hello::Dealer`), accepts the links of lower-indexed servers, and runs
//! [`crate::model::align::align`] over those streams. It then sends each party, on that party's
//! own stream, only the shares of that party's results (or, in aggregate-only jobs, only sums).
//!
//! **Isolation and failure.** Every job has its own streams and its own task; messages carry the
//! job id and a digest of the job description, and a server refuses links whose digest differs
//! from its own ("servers disagree on parameters"). Any failure ends that job only: the parties
//! receive `Outcome::Failed` with the reason (or see the connection drop) and the server goes on.

use crate::error::{Error, Result};
use crate::model::align::JobParams;
use crate::mpc::digest::sha256;
use crate::mpc::source::Correlation;
use serde::{Deserialize, Serialize};

/// A named node and where it listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Identity name (in its certificate).
    pub name: String,
    /// `host:port`.
    pub addr: String,
    /// A compute server that runs as several worker processes: the addresses (`host:port`) of
    /// its workers 1, 2, ... (worker 0 is `addr`); every worker holds the server's identity.
    /// Every server of a job has the same number of workers. Empty: one process.
    /// (Always encoded: the wire format, bincode, has no optional fields.)
    #[serde(default)]
    pub workers: Vec<String>,
}

/// Most worker processes one compute server may run as.
pub const MAX_WORKERS: usize = 64;

impl Node {
    /// A node named `name` at `addr`, one process.
    pub fn new(name: impl Into<String>, addr: impl Into<String>) -> Node {
        Node {
            name: name.into(),
            addr: addr.into(),
            workers: Vec::new(),
        }
    }

    /// Worker processes of this server (1 without `workers`).
    pub fn worker_count(&self) -> usize {
        self.workers.len() + 1
    }

    /// Worker `w` of this server, as a node to dial (its identity is the server's).
    pub fn worker(&self, w: usize) -> Node {
        Node::new(
            self.name.clone(),
            if w == 0 {
                self.addr.clone()
            } else {
                self.workers[w - 1].clone()
            },
        )
    }
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
    /// The dealer (none in a dealer-free job: `params.correlation` is `ot` or `replicated`).
    pub dealer: Option<Node>,
    /// Model, blocking and matching parameters (`share_partner_ids` is this party's opt-in).
    pub params: JobParams,
    /// What the parties receive.
    pub output: OutputMode,
}

impl JobSpec {
    /// A digest of everything both parties and all servers must agree on (the parties' opt-ins
    /// excluded: each party states its own): SHA-256 over the description's canonical encoding
    /// (bincode 2, standard configuration: fields in declaration order, integers as varints,
    /// floats as their IEEE bits, strings and lists length-prefixed), so two descriptions share a
    /// digest only if they are equal.
    pub fn digest(&self) -> Result<Digest> {
        let mut s = self.clone();
        s.params.share_partner_ids = false;
        let bytes = bincode::serde::encode_to_vec(&s, bincode::config::standard())
            .map_err(|e| Error::invalid(format!("cannot encode the job description: {e}")))?;
        // The label carries the protocol's version, so that parties and servers of different
        // versions disagree on every digest (a clear mismatch at the start) instead of running
        // different computations: v2, the row audit's subsets drawn from the bilinear form's
        // first opened group of columns; v3, servers that run as workers; v4, the dealer-free
        // correlation source (an optional dealer); v5, its OT hash from fixed-key AES instead
        // of SHA-256 and the KOS check (servers of v4 and v5 would exchange different OT
        // messages); v6, point-to-point OT messages instead of padded broadcast sections; v7,
        // replicated material's computed shares re-randomised by zero-sharings, v8 every share
        // held as words (servers of different versions would add up different shares); v9, the
        // replicated random bits' splits packed to the bits that matter; v10, comparison bits'
        // splits cut to `ell - 2 - i` bits; v11, OT batches from silent OT (Ferret) instead of
        // IKNP, with two more setup rounds; v12, both ANDs of a carry-tree triple from one OT;
        // v13, random-bit conversion in passes with rotating roles, and two servers' AND
        // triples from random OTs; v14, no empty last round after random OTs; v15, two
        // dealer-free servers compare by the millionaires' protocol; v16, its groups share
        // choice words; v17 and v18, the bilinear form from ring-LWE products and their wire
        // formats; v19, the norms' products once per pair of servers (half the results each
        // way) and packings chosen within the work bound; v20, the evaluator's plaintext
        // doubled there instead of both shares; v21, packings chosen with the two runs'
        // memory as the larger of the two; v22, two thresholds of one value on one set of OTs
        // (the upload range checks' subset sums, the audit's `!= 0` and equality tests), whose
        // shares differ from the two comparisons' before.
        Ok(Digest(sha256("ppea job description v22", &[&bytes])))
    }

    /// Worker processes of the job's server `name` (1 for a server of one process or one the
    /// job does not list).
    pub fn workers_of(&self, name: &str) -> usize {
        self.servers
            .iter()
            .find(|n| n.name == name)
            .map_or(1, Node::worker_count)
    }

    /// The fewest rows an upload of this job may have: every worker of every server needs at
    /// least one row of each side. Checked on every server before an upload is read, so that
    /// a job with too few rows fails alike everywhere, naming only the uploader's own count
    /// (before, the computation failed naming both sides' counts to both parties).
    pub fn min_rows(&self) -> usize {
        (self.servers.iter())
            .map(Node::worker_count)
            .max()
            .unwrap_or(1)
    }

    /// Checks the description.
    pub fn validate(&self) -> Result<()> {
        crate::mpc::share::check_servers(self.servers.len())?;
        for (i, a) in self.servers.iter().enumerate() {
            if self.servers[..i].iter().any(|b| b.name == a.name) {
                return Err(Error::invalid(format!(
                    "server {:?} is listed twice; the servers of a job must be distinct",
                    a.name
                )));
            }
            if a.worker_count() != self.servers[0].worker_count() || a.workers.len() >= MAX_WORKERS
            {
                return Err(Error::invalid(format!(
                    "server {:?} lists {} workers and server {:?} {}: every server of a job runs \
                     as the same number of workers (1 to {MAX_WORKERS})",
                    a.name,
                    a.worker_count(),
                    self.servers[0].name,
                    self.servers[0].worker_count()
                )));
            }
            if self.dealer.as_ref().is_some_and(|d| d.name == a.name) {
                return Err(Error::invalid(format!(
                    "{:?} is listed both as a server and as the dealer",
                    a.name
                )));
            }
        }
        self.params.validate()?;
        match (self.params.correlation, &self.dealer) {
            (Correlation::Dealer, None) => {
                return Err(Error::invalid(
                    "the job names no [dealer]: name one, or set correlation = \"ot\" under \
                     [params] so that the servers make the correlated randomness themselves",
                ));
            }
            (c @ (Correlation::Ot | Correlation::Replicated), Some(d)) => {
                return Err(Error::invalid(format!(
                    "the job names dealer {:?} but sets correlation = \"{}\", which runs \
                     without one: remove the [dealer] table, or use correlation = \"dealer\"",
                    d.name,
                    c.name()
                )));
            }
            (Correlation::Replicated, None) if self.servers.len() != 3 => {
                return Err(Error::invalid(format!(
                    "correlation = \"replicated\" needs exactly 3 servers (private while no \
                     two of them collude), the job lists {}: list 3 [[servers]], or use \
                     correlation = \"ot\" (no dealer) or \"dealer\"",
                    self.servers.len()
                )));
            }
            _ => {}
        }
        if self.output == OutputMode::Aggregate
            && (self.params.explain || self.params.audit.enabled)
        {
            return Err(Error::invalid(
                "explain and audit need per-row results (output = \"matches\"), not an aggregate-only job",
            ));
        }
        check_job_id(&self.job)?;
        if self.parties[0] == self.parties[1] {
            return Err(Error::invalid(
                "the two parties must have different identities",
            ));
        }
        Ok(())
    }
}

/// Checks a job id: 1 to 128 bytes, no control characters, no `#` (reserved: it separates a
/// job id from a worker group's index in the dealer's job ids).
pub fn check_job_id(job: &str) -> Result<()> {
    if job.is_empty() || job.len() > 128 {
        return Err(Error::invalid(format!(
            "job id must be 1 to 128 bytes, not {}",
            job.len()
        )));
    }
    if job.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "job id {job:?} contains control characters"
        )));
    }
    if job.contains('#') {
        return Err(Error::invalid(format!(
            "job id {job:?} contains '#', which is reserved"
        )));
    }
    Ok(())
}

/// Checks the job id a link names: a job id, or for the dealer also a worker group's
/// (`JOB#worker-J`). A link creates a job on first contact (its parties' uploads may come
/// later), so its id is checked as an upload's is before anything is kept under it.
pub fn check_link_job_id(job: &str, dealer: bool) -> Result<()> {
    match job.split_once("#worker-") {
        Some((base, j)) if dealer && !j.is_empty() && j.len() <= 3 => {
            if !j.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::invalid(format!("job id {job:?}: bad worker suffix")));
            }
            check_job_id(base)
        }
        _ => check_job_id(job),
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
        /// Keyed tokens in all rows, own and neighbour lists together: the server books their
        /// memory before reading anything, and refuses an upload that sends more.
        tokens: u64,
        /// The party's tag of what both parties must agree on beyond the job description (the
        /// blocking key, the number of known links): the server compares both parties' tags.
        agreement: [u8; 32],
    },
    /// Server `from` links to another server for `job`.
    Server {
        /// Job id.
        job: String,
        /// Index of the connecting server.
        from: u32,
        /// Which worker of the connecting server (0 for a server of one process): it links to
        /// the same worker of the other server.
        worker: u32,
        /// Its digest of the job description.
        digest: Digest,
        /// Digests of the public part of each party's upload as this server received it (row
        /// count and keyed tokens): a party that sends different tokens to different servers
        /// is caught here, before inconsistent candidate lists are used.
        uploads: [Digest; 2],
    },
    /// A server links to the dealer.
    Dealer(DealerHello),
    /// Worker `from` of a compute server links to another worker of the same server (same
    /// identity) for `job` ([`crate::mpc::mesh`]).
    Mesh {
        /// Job id.
        job: String,
        /// Index of the connecting worker.
        from: u32,
        /// Its digest of the job description.
        digest: Digest,
        /// Digests of the public part of each party's upload as this worker received it: a
        /// party that sends different tokens to different workers of a server is caught here.
        uploads: [Digest; 2],
    },
}

/// SHA-256 digest of a job description ([`JobSpec::digest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

/// What a server tells the dealer when it links for a job. The dealer serves the job only when
/// every server sends the same description of it, and binds each index to the certificate of
/// the server named at that index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealerHello {
    /// Job id.
    pub job: String,
    /// Index of the connecting server.
    pub server: u32,
    /// The job's compute servers (identities), in index order.
    pub servers: Vec<String>,
    /// Digest of the job description.
    pub digest: Digest,
    /// Most words of material any one request of this job can need, derived from the job's
    /// declared sizes; the dealer refuses larger requests.
    pub max_material_words: u64,
}

/// Answer to a link request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Not an outcome yet: where the job stands on this server (sent when it changes, before
    /// the final `Done` or `Failed`).
    Status(crate::net::registry::Status),
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
