//! `party`: the program a graph owner runs next to its own knowledge graph. It computes
//! everything that needs only the owner's graph locally and uploads only additive secret shares
//! to the compute servers.

use anyhow::Result;
use clap::Parser;

/// Graph-owner side of privacy-preserving entity alignment.
///
/// A party reads its own knowledge graph, computes entity embeddings locally, and uploads only
/// additive secret shares of them to the compute servers; it receives back only the shares of
/// its own results. Raw names, relations and embeddings never leave the machine it runs on.
#[derive(Parser, Debug)]
#[command(name = "party", version, about, long_about)]
struct Cli {}

fn main() -> Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
