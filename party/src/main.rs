//! `party`: the program a graph owner runs next to its own knowledge graph. It computes
//! everything that needs only the owner's graph locally and uploads only additive secret shares
//! to the compute servers.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ppea::align::JobParams;
use ppea::evaluate::EvalProtocol;
use ppea::import::Format;
use std::path::PathBuf;

/// Graph-owner side of privacy-preserving entity alignment.
///
/// A party reads its own knowledge graph, computes entity embeddings locally, and uploads only
/// additive secret shares of them to the compute servers; it receives back only the shares of
/// its own results. Raw names, relations and embeddings never leave the machine it runs on.
#[derive(Parser, Debug)]
#[command(name = "party", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Evaluate the whole pipeline on a benchmark with gold links: both parties and all servers
    /// run on this machine, results are judged against the links and against the plaintext
    /// reference of the same model. Progress goes to stderr; the last line of stdout is one
    /// JSON object with the figures.
    Eval {
        /// Dataset directory (DBP15K/SRPRS, OpenEA, or native `a/`, `b/`, `links.tsv`).
        dataset: PathBuf,
        /// Layout of the dataset directory [default: detected from the files].
        #[arg(long)]
        format: Option<Format>,
        /// `standard`: align the test entities (literature protocol); `open`: the whole graphs.
        #[arg(long, default_value = "standard")]
        protocol: EvalProtocol,
        /// Number of compute servers (2 to 4).
        #[arg(long, default_value_t = 2)]
        servers: usize,
        /// Gold links to judge: `test` (70%, for reporting) or `tune` (30%, for choosing
        /// parameters). Under the standard protocol these links' entities are aligned.
        #[arg(long, default_value = "test")]
        split: ppea::evaluate::Split,
        /// Fix the parties' row shuffles and blocking key (evaluation only), so that runs with
        /// different numbers of servers can be compared by `decisions_digest`. Secret shares
        /// always use fresh operating-system randomness.
        #[arg(long)]
        seed: Option<u64>,
        /// Job parameters as a TOML file (the `[model]`, `[blocking]` and top-level keys of a
        /// job file); defaults are used for anything not given.
        #[arg(long)]
        params: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Eval {
            dataset,
            format,
            protocol,
            servers,
            split,
            seed,
            params,
        } => {
            ppea::share::check_servers(servers)?;
            let format = match format {
                Some(f) => f,
                None => Format::detect(&dataset).with_context(|| {
                    format!(
                        "cannot tell the layout of {}: pass --format dbp15k|openea|native",
                        dataset.display()
                    )
                })?,
            };
            let params: JobParams = match params {
                Some(p) => {
                    let text = std::fs::read_to_string(&p)
                        .with_context(|| format!("reading {}", p.display()))?;
                    toml::from_str(&text)
                        .with_context(|| format!("{}: invalid job parameters", p.display()))?
                }
                None => JobParams::default(),
            };
            eprintln!("loading {} ({format:?})", dataset.display());
            let ds = ppea::import::load(&dataset, format)?;
            let rt = ppea::local::runtime()?;
            let opts = ppea::evaluate::EvalOptions {
                protocol,
                split,
                servers,
                params,
                seed,
            };
            let report = rt.block_on(ppea::evaluate::evaluate_inprocess(&ds, &opts))?;
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}
