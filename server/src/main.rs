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
    /// Measure the secure computation core on this machine: all servers and the dealer run in
    /// this one process over in-memory channels. Prints one JSON object per line.
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
        /// Comparisons: how many.
        #[arg(long, default_value_t = 1_000_000)]
        count: usize,
        /// Comparisons: bit width of the compared values (2 to 64).
        #[arg(long, default_value_t = 64)]
        ell: u32,
        /// Repetitions (each printed).
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum BenchKind {
    /// The masked-once bilinear form on a dense n x m grid of d-long rows.
    Bilinear,
    /// Secure comparisons [x < 0] with arithmetic 0/1 output.
    Compare,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench {
            what,
            servers,
            n,
            m,
            d,
            count,
            ell,
            repeat,
        } => {
            ppea::share::check_servers(servers)?;
            let rt = ppea::local::runtime()?;
            for _ in 0..repeat {
                let line = match what {
                    BenchKind::Bilinear => serde_json::to_string(
                        &rt.block_on(ppea::bench::bilinear(servers, n, m, d))?,
                    )?,
                    BenchKind::Compare => serde_json::to_string(
                        &rt.block_on(ppea::bench::compare(servers, count, ell))?,
                    )?,
                };
                println!("{line}");
            }
        }
    }
    Ok(())
}
