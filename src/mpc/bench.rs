//! Measured benchmarks of the secure bilinear form and of comparisons, all servers and the
//! dealer in one process (see `scripts/bench.sh` and `docs/benchmarks.md`).
//!
//! `seconds` covers the whole computation: dealer seeds, material generation and transfer, and
//! the online protocol. `online_seconds` runs from the moment the last server holds its
//! material to the moment the last server has its output, so it excludes waiting for the dealer.

use crate::error::Result;
use crate::mpc::beaver::Bilinear;
use crate::mpc::compare::Compare;
use crate::mpc::correlated::Request;
use crate::mpc::local::run_local;
use crate::mpc::pairs::Pairs;
use crate::mpc::prg::Prg;
use serde::Serialize;
use std::time::Instant;

/// Result line of the bilinear-form benchmark.
#[derive(Debug, Serialize)]
pub struct BilinearReport {
    /// Always "bilinear".
    pub bench: &'static str,
    /// Number of compute servers.
    pub servers: usize,
    /// Rows of X.
    pub n: usize,
    /// Rows of Y.
    pub m: usize,
    /// Row length.
    pub d: usize,
    /// Pair products computed (`n * m`, dense).
    pub pairs: usize,
    /// Whole computation, wall time.
    pub seconds: f64,
    /// Online phase, wall time.
    pub online_seconds: f64,
    /// `pairs / online_seconds`.
    pub products_per_s: f64,
    /// Bytes one server sent to the other servers (largest over servers).
    pub bytes_per_server: u64,
    /// Bytes the dealer sent.
    pub dealer_bytes: u64,
    /// Communication rounds among the servers.
    pub rounds: u64,
}

/// Result line of the comparison benchmark.
#[derive(Debug, Serialize)]
pub struct CompareReport {
    /// Always "compare".
    pub bench: &'static str,
    /// Number of compute servers.
    pub servers: usize,
    /// Bit width of the compared values.
    pub ell: u32,
    /// Comparisons.
    pub count: usize,
    /// Whole computation, wall time.
    pub seconds: f64,
    /// Online phase, wall time.
    pub online_seconds: f64,
    /// `count / online_seconds`.
    pub per_s: f64,
    /// Bytes one server sent per comparison (to all other servers together).
    pub bytes_per_compare: f64,
    /// Bytes the dealer sent.
    pub dealer_bytes: u64,
    /// Communication rounds among the servers.
    pub rounds: u64,
}

/// Timestamps each server takes around its online phase.
struct Marks {
    prepared: Instant,
    done: Instant,
}

fn online(marks: &[Marks]) -> f64 {
    let start = marks.iter().map(|m| m.prepared).max().expect("servers");
    let end = marks.iter().map(|m| m.done).max().expect("servers");
    end.duration_since(start).as_secs_f64()
}

/// Secure `<X_i, Y_j>` for all `n * m` pairs of random shared matrices.
pub async fn bilinear(k: usize, n: usize, m: usize, d: usize) -> Result<BilinearReport> {
    let t0 = Instant::now();
    let run = run_local(k, move |mut eng| async move {
        let mut prg = Prg::fresh();
        let x = prg.vec(n * d);
        let y = prg.vec(m * d);
        let pairs = Pairs::dense(n, m);
        let mat = eng
            .prepare(&Request::Bilinear {
                d,
                pairs: pairs.clone(),
                blocks: Vec::new(),
            })
            .await?;
        let prepared = Instant::now();
        let me = eng.me();
        let z = eng.run(Bilinear::new(me, x, y, d, pairs, mat)?).await?;
        let done = Instant::now();
        std::hint::black_box(z);
        Ok((Marks { prepared, done }, eng))
    })
    .await?;
    let seconds = t0.elapsed().as_secs_f64();
    let online_seconds = online(&run.outputs);
    let pairs = n * m;
    Ok(BilinearReport {
        bench: "bilinear",
        servers: k,
        n,
        m,
        d,
        pairs,
        seconds,
        online_seconds,
        products_per_s: pairs as f64 / online_seconds,
        bytes_per_server: run.stats.iter().map(|s| s.bytes_sent).max().unwrap_or(0),
        dealer_bytes: run.dealer.bytes_sent,
        rounds: run.stats.iter().map(|s| s.rounds).max().unwrap_or(0),
    })
}

/// `count` secure comparisons `[x < 0]` of random `ell`-bit shared values, with arithmetic
/// (0/1) shares as output.
pub async fn compare(k: usize, count: usize, ell: u32) -> Result<CompareReport> {
    let t0 = Instant::now();
    let run = run_local(k, move |mut eng| async move {
        let mut prg = Prg::fresh();
        let x = prg.vec(count);
        let cmp = eng.prepare(&Request::Compare { n: count, ell }).await?;
        let conv = eng.prepare(&Request::B2a { n: count }).await?;
        let prepared = Instant::now();
        let me = eng.me();
        let bits = eng.run(Compare::new(me, x, ell, cmp)?).await?;
        let z = eng
            .run(crate::mpc::compare::B2a::new(me, bits, count, conv)?)
            .await?;
        let done = Instant::now();
        std::hint::black_box(z);
        Ok((Marks { prepared, done }, eng))
    })
    .await?;
    let seconds = t0.elapsed().as_secs_f64();
    let online_seconds = online(&run.outputs);
    let bytes = run.stats.iter().map(|s| s.bytes_sent).max().unwrap_or(0);
    Ok(CompareReport {
        bench: "compare",
        servers: k,
        ell,
        count,
        seconds,
        online_seconds,
        per_s: count as f64 / online_seconds,
        bytes_per_compare: bytes as f64 / count as f64,
        dealer_bytes: run.dealer.bytes_sent,
        rounds: run.stats.iter().map(|s| s.rounds).max().unwrap_or(0),
    })
}
