//! `server`: a compute server (or the dealer) of a privacy-preserving entity-alignment
//! deployment. It holds one additive share of every party's embeddings and computes on shares
//! with the other servers; a single server learns nothing about any graph.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

/// Compute server for privacy-preserving entity alignment.
///
/// Each server holds one additive secret share of every uploaded embedding and computes on
/// shares together with the other servers (2 to 4 in a deployment). As long as one server does
/// not collude with the others (and the dealer, in dealer mode, colludes with none), no server
/// learns anything about a party's graph beyond the documented leakage.
#[derive(Parser, Debug)]
#[command(name = "server", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a compute server or the dealer, as the configuration file says, until SIGINT or
    /// SIGTERM. Logs go to stderr (`RUST_LOG=debug` for more); no secret value is ever logged.
    /// The widest vector extensions the CPU has are used (AVX-512, IFMA, VAES); `PPEA_CPU=avx2`
    /// holds the process to AVX2 and AES-NI, to measure a machine without them (same results).
    ///
    /// Configuration (TOML; relative paths are relative to the file):
    ///
    ///   name = "server-0"               # identity, must be in the certificate
    ///   listen = "0.0.0.0:7000"         # UDP address (QUIC)
    ///   role = "compute"                # or "dealer"
    ///   [tls]
    ///   ca = "ca.pem"
    ///   cert = "server-0.pem"
    ///   key = "server-0.key"
    ///   [peers]
    ///   parties = ["party-a", "party-b"] # who may submit jobs
    ///   servers = ["server-0", "server-1"]
    ///   dealer = "dealer"
    ///   admin = "127.0.0.1:7001"         # optional: `server status` and /metrics (loopback only)
    ///   [limits]                        # optional
    ///   max_message_mib = 4096          # largest single message accepted
    ///   max_jobs = 8                    # jobs held at once
    ///   max_jobs_per_party = 2          # uploads one party may have here at once
    ///   wait_secs = 600                 # wait for the other party, servers, dealer
    ///   keepalive_secs = 3              # QUIC keep-alive interval
    ///   idle_timeout_secs = 10          # a peer silent this long counts as dead
    ///   remember_jobs_secs = 604800     # a job id that ran is refused this long
    #[command(verbatim_doc_comment)]
    Run {
        /// The configuration file.
        #[arg(long)]
        config: std::path::PathBuf,
        /// Write the bound address to this file once listening (useful with port 0).
        #[arg(long)]
        port_file: Option<std::path::PathBuf>,
        /// This process's index among its compute server's worker processes (overrides
        /// `worker` in the configuration; a Kubernetes StatefulSet passes its pod's index, so
        /// every pod can share one configuration).
        #[arg(long)]
        worker: Option<usize>,
    },
    /// Show the jobs a running server holds: state, age, and what each waits for (read from its
    /// admin endpoint, `admin = "127.0.0.1:PORT"` in its configuration).
    Status {
        /// The server's configuration file (for its admin address).
        #[arg(long, required_unless_present = "admin")]
        config: Option<std::path::PathBuf>,
        /// The admin address instead of a configuration file.
        #[arg(long, conflicts_with = "config")]
        admin: Option<std::net::SocketAddr>,
        /// Print the JSON status instead of a table.
        #[arg(long)]
        json: bool,
        /// Print the Prometheus metrics instead.
        #[arg(long, conflicts_with = "json")]
        metrics: bool,
    },
    /// Measure the secure computation core on this machine: all servers and the dealer run in
    /// this one process over in-memory channels (ot-triples: both servers' steps on one thread,
    /// messages counted, not sent). Prints one JSON object per line. `PPEA_CPU=avx2` measures
    /// the AVX2 and AES-NI paths on a machine that has AVX-512 or VAES.
    Bench {
        /// What to measure.
        #[arg(value_enum)]
        what: BenchKind,
        /// Number of compute servers (2 to 4).
        #[arg(long, default_value_t = 2)]
        servers: usize,
        /// Bilinear form: rows of X.
        #[arg(long, default_value_t = 2000)]
        n: usize,
        /// Bilinear form: rows of Y.
        #[arg(long, default_value_t = 2000)]
        m: usize,
        /// Bilinear form: row length (embedding dimension).
        #[arg(long, default_value_t = 128)]
        d: usize,
        /// Comparisons (or OT triples): how many.
        #[arg(long, default_value_t = 1_000_000)]
        count: usize,
        /// Comparisons: bit width of the compared values (2 to 64).
        #[arg(long, default_value_t = 64)]
        ell: u32,
        /// Pair kernel: candidates per row.
        #[arg(long, default_value_t = 64)]
        per_row: usize,
        /// Repetitions (each printed).
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Bilinear form and comparisons: where the correlated randomness comes from, `dealer`,
        /// `ot` (the servers over oblivious transfer) or `replicated` (3 servers holding
        /// replicated seeds); a dealer-free source's time is in `seconds`, not in
        /// `online_seconds`.
        #[arg(long, default_value = "dealer", value_parser = ["dealer", "ot", "replicated"])]
        correlation: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum BenchKind {
    /// The masked-once bilinear form on a dense n x m grid of d-long rows.
    Bilinear,
    /// Secure comparisons [x < 0] with arithmetic 0/1 output.
    Compare,
    /// Multiplication triples from OT alone (no dealer; k = 2): base OT, IKNP, Gilboa.
    OtTriples,
    /// Correlated OTs on one link from the silent extension (Ferret), at least --count.
    SilentOt,
    /// One server's local pair products in the bilinear form: one pass of --d columns over
    /// --n rows per side with --per-row random candidates each, listed both ways.
    PairKernel,
    /// Dealer-free products that follow the pairs (ring-LWE slots): --n rows per side with
    /// --per-row random candidates each, listed both ways, rows of --d.
    SlotProducts,
}

/// Large blocks on huge pages (`ppea::net::heap`).
#[global_allocator]
static HEAP: ppea::net::heap::Heap = ppea::net::heap::Heap;

fn main() {
    ppea::net::heap::return_freed_memory();
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            port_file,
            worker,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let mut cfg = ppea::net::config::ServerConfig::load(&config)?;
            if let Some(w) = worker {
                cfg.worker = w;
            }
            cfg.check_spill_dir()
                .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
            let rt = ppea::mpc::local::runtime()?;
            rt.block_on(async move {
                let daemon = ppea::net::daemon::Daemon::start(cfg)?;
                if let Some(p) = port_file {
                    let tmp = p.with_extension("tmp");
                    std::fs::write(&tmp, daemon.local_addr()?.to_string())?;
                    std::fs::rename(&tmp, &p)?;
                }
                daemon.serve(shutdown_signal()).await;
                anyhow::Ok(())
            })?;
        }
        Command::Status {
            config,
            admin,
            json,
            metrics,
        } => {
            let addr = match (admin, config) {
                (Some(a), _) => a,
                (None, Some(c)) => {
                    ppea::net::admin::configured(&ppea::net::config::ServerConfig::load(&c)?)?
                }
                (None, None) => anyhow::bail!("give --config or --admin"),
            };
            let rt = ppea::mpc::local::runtime()?;
            if metrics {
                print!("{}", rt.block_on(ppea::net::admin::get(addr, "/metrics"))?);
            } else {
                let report = rt.block_on(ppea::net::admin::status(addr))?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print!("{report}");
                }
            }
        }
        Command::Bench {
            what,
            servers,
            n,
            m,
            d,
            count,
            ell,
            per_row,
            repeat,
            correlation,
        } => {
            ppea::mpc::share::check_servers(servers)?;
            let correlation = match correlation.as_str() {
                "ot" => ppea::mpc::source::Correlation::Ot,
                "replicated" => ppea::mpc::source::Correlation::Replicated,
                _ => ppea::mpc::source::Correlation::Dealer,
            };
            let rt = ppea::mpc::local::runtime()?;
            for _ in 0..repeat {
                let line = match what {
                    BenchKind::Bilinear => serde_json::to_string(
                        &rt.block_on(ppea::mpc::bench::bilinear(servers, correlation, n, m, d))?,
                    )?,
                    BenchKind::Compare => serde_json::to_string(
                        &rt.block_on(ppea::mpc::bench::compare(servers, correlation, count, ell))?,
                    )?,
                    BenchKind::OtTriples => {
                        if servers != 2 {
                            anyhow::bail!("ot-triples pairs two servers (--servers 2)");
                        }
                        serde_json::to_string(&ppea::mpc::bench::ot_triples(count)?)?
                    }
                    BenchKind::SilentOt => {
                        serde_json::to_string(&ppea::mpc::bench::silent_ot(count)?)?
                    }
                    BenchKind::SlotProducts => serde_json::to_string(
                        &ppea::mpc::bench::slot_products(servers, n, per_row, d)?,
                    )?,
                    BenchKind::PairKernel => {
                        serde_json::to_string(&ppea::mpc::bench::pair_kernel(n, per_row, d)?)?
                    }
                };
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
