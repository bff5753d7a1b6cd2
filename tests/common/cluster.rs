//! A dealer and compute servers as daemons on loopback (real QUIC with mutual TLS), with a
//! throw-away development CA, for the integration tests.

use super::TempDir;
use ppea::eval::evaluate::{EvalProtocol, Split, scopes};
use ppea::model::align::{JobParams, PartyData, finish_party, prepare_party};
use ppea::model::blocking::BlockingKey;
use ppea::model::import::{Dataset, Format, load};
use ppea::mpc::prg::Prg;
use ppea::net::config::{Limits, Peers, Role, ServerConfig};
use ppea::net::daemon::Daemon;
use ppea::net::job::{JobSpec, Node, OutputMode};
use ppea::net::party::{ServerResult, run_party};
use ppea::net::tls::{Identity, TlsFiles, write_dev_pki};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::oneshot;

/// The shared multi-threaded runtime of a test binary.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| ppea::mpc::local::runtime().unwrap())
}

/// The shipped DBpedia sample.
pub fn sample() -> &'static Dataset {
    static DS: OnceLock<Dataset> = OnceLock::new();
    DS.get_or_init(|| {
        load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample"),
            Format::Native,
        )
        .unwrap()
    })
}

/// Identities the development CA issues certificates for.
pub const NAMES: &[&str] = &[
    "dealer", "server-0", "server-1", "server-2", "server-3", "party-a", "party-b", "party-c",
];

/// Connection timeout of test parties.
pub const T: Duration = Duration::from_secs(10);

/// The TLS files of `name` in `dir`.
pub fn files(dir: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    }
}

/// A running daemon.
pub struct Running {
    /// Its name and address.
    pub node: Node,
    pub stop: Option<oneshot::Sender<()>>,
    /// Its admin endpoint (`GET /status`, `GET /metrics`).
    pub admin: SocketAddr,
    /// The serving task.
    pub done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the daemon.
    pub fn kill(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Dealer and `k` servers, configured to trust party-a and party-b (not party-c).
pub struct Cluster {
    /// Holds the certificates.
    pub dir: TempDir,
    /// The dealer, then the servers by index (worker 0 of a server split into workers); only
    /// the servers in a dealer-free cluster ([`Cluster::dealer_free`]).
    pub nodes: Vec<Running>,
    /// Whether `nodes[0]` is a dealer the servers trust.
    pub has_dealer: bool,
    /// Servers split into workers: workers 1, 2, ... of each server.
    pub workers: Vec<Vec<Running>>,
}

/// Starts one daemon.
pub fn start(dir: &Path, name: &str, role: Role, k: usize, limits: Limits) -> Running {
    start_on(rt(), dir, name, role, k, limits)
}

/// Starts worker `worker` of compute server `name` (the server's identity).
pub fn start_worker(dir: &Path, name: &str, worker: usize, k: usize, limits: Limits) -> Running {
    start_with(rt(), dir, name, Role::Compute, k, limits, worker, true)
}

/// Starts one daemon on `rt` (its own runtime, to kill it as `kill -9` would: no goodbye).
pub fn start_on(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    name: &str,
    role: Role,
    k: usize,
    limits: Limits,
) -> Running {
    start_with(rt, dir, name, role, k, limits, 0, true)
}

/// [`start_on`] as worker `worker` of its server; with `trust_dealer` false the server trusts
/// no dealer (it runs only dealer-free jobs).
#[allow(clippy::too_many_arguments)]
fn start_with(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    name: &str,
    role: Role,
    k: usize,
    limits: Limits,
    worker: usize,
    trust_dealer: bool,
) -> Running {
    let cfg = ServerConfig {
        name: name.to_string(),
        listen: "127.0.0.1:0".into(),
        role,
        tls: files(dir, name),
        peers: Peers {
            parties: vec!["party-a".into(), "party-b".into()],
            servers: (0..k).map(|i| format!("server-{i}")).collect(),
            dealer: trust_dealer.then(|| "dealer".into()),
        },
        limits,
        admin: Some("127.0.0.1:0".into()),
        worker,
    };
    let _guard = rt.enter();
    let daemon = Daemon::start(cfg).unwrap();
    let addr: SocketAddr = daemon.local_addr().unwrap();
    let admin = daemon.admin_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let done = rt.spawn(daemon.serve(async move {
        let _ = rx.await;
    }));
    Running {
        node: Node::new(name, addr.to_string()),
        stop: Some(tx),
        admin,
        done,
    }
}

impl Cluster {
    /// A dealer and `k` servers with fresh certificates.
    pub fn new(tag: &str, k: usize, limits: Limits) -> Cluster {
        Cluster::with_dealer_limits(tag, k, limits.clone(), limits)
    }

    /// A dealer with `dealer_limits` and `k` servers with `limits`.
    pub fn with_dealer_limits(
        tag: &str,
        k: usize,
        limits: Limits,
        dealer_limits: Limits,
    ) -> Cluster {
        let dir = TempDir::new(tag);
        write_dev_pki(
            &dir.0,
            &NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let mut nodes = vec![start(&dir.0, "dealer", Role::Dealer, k, dealer_limits)];
        for i in 0..k {
            nodes.push(start(
                &dir.0,
                &format!("server-{i}"),
                Role::Compute,
                k,
                limits.clone(),
            ));
        }
        Cluster {
            dir,
            nodes,
            has_dealer: true,
            workers: Vec::new(),
        }
    }

    /// `k` servers that trust no dealer, and no dealer: a deployment for dealer-free jobs
    /// (`correlation = "ot"` or `"replicated"`).
    #[allow(dead_code)] // not every test binary uses every helper
    pub fn dealer_free(tag: &str, k: usize) -> Cluster {
        let dir = TempDir::new(tag);
        write_dev_pki(
            &dir.0,
            &NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let nodes = (0..k)
            .map(|i| {
                let name = format!("server-{i}");
                let limits = Limits::default();
                start_with(rt(), &dir.0, &name, Role::Compute, k, limits, 0, false)
            })
            .collect();
        Cluster {
            dir,
            nodes,
            has_dealer: false,
            workers: Vec::new(),
        }
    }

    /// A dealer and `k` servers of `w` worker processes each (default limits).
    pub fn with_workers(tag: &str, k: usize, w: usize) -> Cluster {
        Cluster::with_workers_limits(tag, k, w, Limits::default())
    }

    /// A dealer and `k` servers of `w` worker processes each, every process with `limits`.
    #[allow(dead_code)] // not every test binary uses every helper
    pub fn with_workers_limits(tag: &str, k: usize, w: usize, limits: Limits) -> Cluster {
        let mut c = Cluster::new(tag, k, limits.clone());
        for i in 0..k {
            let name = format!("server-{i}");
            c.workers.push(
                (1..w)
                    .map(|j| start_worker(&c.dir.0, &name, j, k, limits.clone()))
                    .collect(),
            );
        }
        c
    }

    /// A job description for this cluster.
    pub fn spec(&self, job: &str, params: JobParams) -> JobSpec {
        JobSpec {
            job: job.into(),
            parties: ["party-a".into(), "party-b".into()],
            servers: self.nodes[usize::from(self.has_dealer)..]
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let mut node = n.node.clone();
                    if let Some(ws) = self.workers.get(i) {
                        node.workers = ws.iter().map(|w| w.node.addr.clone()).collect();
                    }
                    node
                })
                .collect(),
            dealer: self.has_dealer.then(|| self.nodes[0].node.clone()),
            params,
            output: OutputMode::Matches,
        }
    }

    /// The identity `name` (certificate from this cluster's CA).
    pub fn identity(&self, name: &str) -> Identity {
        Identity::load(name, &files(&self.dir.0, name)).unwrap()
    }

    /// Runs both parties of `spec`; each party's result or error.
    pub fn run(
        &self,
        spec: &JobSpec,
        a: &PartyData,
        b: &PartyData,
    ) -> (
        ppea::Result<Vec<ServerResult>>,
        ppea::Result<Vec<ServerResult>>,
    ) {
        let (ia, ib) = (self.identity("party-a"), self.identity("party-b"));
        rt().block_on(async {
            tokio::join!(
                run_party(spec, 0, &ia, a, T, |_| {}),
                run_party(spec, 1, &ib, b, T, |_| {})
            )
        })
    }

    /// Runs an honest job on the sample and checks that both parties get well-formed results:
    /// the servers still serve.
    pub fn still_serves(&self, job: &str) {
        let spec = self.spec(job, JobParams::default());
        let (a, b) = prepare(EvalProtocol::Standard, &spec.params);
        let (ra, rb) = self.run(&spec, &a, &b);
        let words = |r: Vec<ServerResult>| r.into_iter().map(|x| x.words).collect::<Vec<_>>();
        let res_a = finish_party(&a, &words(ra.expect("party A succeeds")), &spec.params).unwrap();
        let res_b = finish_party(&b, &words(rb.expect("party B succeeds")), &spec.params).unwrap();
        let (ma, mb) = (
            res_a.iter().filter(|r| r.matched).count(),
            res_b.iter().filter(|r| r.matched).count(),
        );
        assert!(ma > 100 && ma == mb, "{ma} and {mb} matches");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self
            .nodes
            .iter_mut()
            .chain(self.workers.iter_mut().flatten())
        {
            n.kill();
        }
    }
}

/// Both parties' prepared data for the sample.
pub fn prepare(protocol: EvalProtocol, p: &JobParams) -> (PartyData, PartyData) {
    prepare_rows(protocol, p, usize::MAX)
}

/// [`prepare`] for the first `rows` entities of each side's scope (all if fewer).
pub fn prepare_rows(protocol: EvalProtocol, p: &JobParams, rows: usize) -> (PartyData, PartyData) {
    let ds = sample();
    let (sa, sb) = scopes(ds, protocol, Split::Test);
    let (sa, sb) = (&sa[..rows.min(sa.len())], &sb[..rows.min(sb.len())]);
    let key = BlockingKey::random();
    let a = prepare_party(&ds.a, sa, p, &key, &mut Prg::fresh()).unwrap();
    let b = prepare_party(&ds.b, sb, p, &key, &mut Prg::fresh()).unwrap();
    (a, b)
}
