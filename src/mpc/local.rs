//! In-process deployment: `k` servers and a dealer as tasks of one process over in-memory
//! channels. Tests, benchmarks and `--inprocess` evaluation use it; it runs exactly the protocol
//! code the networked deployment runs.

use crate::error::{Error, Result};
use crate::mpc::channel::{Deviation, MemoryTransport, memory_network};
use crate::mpc::dealer::{Dealer, DealerClient, DealerStats, serve};
use crate::mpc::engine::Engine;
use crate::mpc::protocol::{Session, Stats};
use std::future::Future;

/// A server engine on the in-memory network with the dealer as correlation source.
pub type LocalEngine = Engine<MemoryTransport, DealerClient>;

/// What an in-process run produced.
#[derive(Debug)]
pub struct LocalRun<O> {
    /// Each server's output, by index.
    pub outputs: Vec<O>,
    /// Each server's traffic counters.
    pub stats: Vec<Stats>,
    /// The dealer's traffic.
    pub dealer: DealerStats,
}

/// Runs `job` on each of `k` servers (given its engine) with a dealer, and collects the results.
/// Any server's error fails the whole run.
pub async fn run_local<F, Fut, O>(k: usize, job: F) -> Result<LocalRun<O>>
where
    F: Fn(LocalEngine) -> Fut,
    Fut: Future<Output = Result<(O, LocalEngine)>> + Send + 'static,
    O: Send + 'static,
{
    run_local_bounded(k, crate::mpc::dealer::DEFAULT_MAX_WORDS, job).await
}

/// [`run_local`] with the dealer refusing requests for more than `max_words` words of material,
/// as a networked dealer does with a job's declared sizes.
pub async fn run_local_bounded<F, Fut, O>(k: usize, max_words: usize, job: F) -> Result<LocalRun<O>>
where
    F: Fn(LocalEngine) -> Fut,
    Fut: Future<Output = Result<(O, LocalEngine)>> + Send + 'static,
    O: Send + 'static,
{
    run_local_deviating(k, max_words, None, job).await
}

/// [`run_local_bounded`] with server `deviation.0` deviating from the protocol as
/// `deviation.1` says (attack tests).
pub async fn run_local_deviating<F, Fut, O>(
    k: usize,
    max_words: usize,
    deviation: Option<(usize, Deviation)>,
    job: F,
) -> Result<LocalRun<O>>
where
    F: Fn(LocalEngine) -> Fut,
    Fut: Future<Output = Result<(O, LocalEngine)>> + Send + 'static,
    O: Send + 'static,
{
    let dealer = Dealer::new(k)?.with_max_words(max_words);
    let mut deviation = deviation;
    if let Some((s, _)) = &deviation
        && *s >= k
    {
        return Err(Error::invalid(format!("no server {s} of {k} to deviate")));
    }
    let (transports, mut dnet) = memory_network(k);
    let dealer_task = tokio::spawn(async move { serve(dealer, &mut dnet).await });
    let mut tasks = Vec::new();
    for (i, t) in transports.into_iter().enumerate() {
        let t = match deviation.take_if(|(s, _)| *s == i) {
            Some((_, f)) => t.deviating(f),
            None => t,
        };
        let mut session = Session::new(t);
        let client = DealerClient::connect(&mut session).await?;
        let fut = job(Engine::new(session, client));
        tasks.push(tokio::spawn(async move {
            let (out, engine) = fut.await?;
            Ok::<_, Error>((out, engine.stats()))
        }));
    }
    let mut outputs = Vec::new();
    let mut stats = Vec::new();
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok((o, s))) => {
                outputs.push(o);
                stats.push(s);
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                first_err.get_or_insert(Error::invalid(format!("server task failed: {e}")));
            }
        }
    }
    if let Some(e) = first_err {
        dealer_task.abort();
        return Err(e);
    }
    let dealer = match dealer_task.await {
        Ok(r) => r?,
        Err(e) => return Err(Error::invalid(format!("dealer task failed: {e}"))),
    };
    Ok(LocalRun {
        outputs,
        stats,
        dealer,
    })
}

/// A multi-threaded tokio runtime sized for in-process runs.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| Error::invalid(format!("cannot start the async runtime: {e}")))
}
