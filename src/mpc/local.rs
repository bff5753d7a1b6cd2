//! In-process deployment: `k` servers and a dealer as tasks of one process over in-memory
//! channels. Tests, benchmarks and `--inprocess` evaluation use it; it runs exactly the protocol
//! code the networked deployment runs.

use crate::error::{Error, Result};
use crate::mpc::channel::{Deviation, MemoryTransport, memory_network};
use crate::mpc::dealer::{Dealer, DealerStats, serve};
use crate::mpc::engine::Engine;
use crate::mpc::mesh::{MemoryMesh, memory_mesh};
use crate::mpc::protocol::{Session, Stats};
use crate::mpc::source::{Correlation, Source};
use std::future::Future;

/// A server engine on the in-memory network (with the dealer, or OT, as correlation source).
pub type LocalEngine = Engine<MemoryTransport, Source>;

/// What an in-process run produced.
#[derive(Debug)]
pub struct LocalRun<O> {
    /// Each server's output, by index.
    pub outputs: Vec<O>,
    /// Each server's traffic counters.
    pub stats: Vec<Stats>,
    /// The dealer's traffic (nothing with OT as the correlation source).
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
    let deviations = deviation.into_iter().collect();
    run_single(k, Correlation::Dealer, max_words, deviations, job).await
}

/// [`run_local_with`] with each server `s` of `deviations` sending its messages through its
/// function (which may change them, or only record them: the view tests record what every
/// server sends).
pub async fn run_local_observed<F, Fut, O>(
    k: usize,
    correlation: Correlation,
    deviations: Vec<(usize, Deviation)>,
    job: F,
) -> Result<LocalRun<O>>
where
    F: Fn(LocalEngine) -> Fut,
    Fut: Future<Output = Result<(O, LocalEngine)>> + Send + 'static,
    O: Send + 'static,
{
    let max_words = crate::mpc::dealer::DEFAULT_MAX_WORDS;
    run_single(k, correlation, max_words, deviations, job).await
}

/// [`run_local`] with `correlation` as the source of correlated randomness.
pub async fn run_local_with<F, Fut, O>(
    k: usize,
    correlation: Correlation,
    job: F,
) -> Result<LocalRun<O>>
where
    F: Fn(LocalEngine) -> Fut,
    Fut: Future<Output = Result<(O, LocalEngine)>> + Send + 'static,
    O: Send + 'static,
{
    run_local_observed(k, correlation, Vec::new(), job).await
}

/// One worker per server: [`run_local_workers`]'s one run.
async fn run_single<F, Fut, O>(
    k: usize,
    correlation: Correlation,
    max_words: usize,
    deviations: Vec<(usize, Deviation)>,
    job: F,
) -> Result<LocalRun<O>>
where
    F: Fn(LocalEngine) -> Fut,
    Fut: Future<Output = Result<(O, LocalEngine)>> + Send + 'static,
    O: Send + 'static,
{
    let run = |eng, _mesh| job(eng);
    let mut runs = run_local_workers(k, 1, correlation, max_words, deviations, run).await?;
    Ok(runs.pop().expect("one worker"))
}

/// Runs `job` on each of `workers` workers of each of `k` servers: worker `j` of every server
/// talks to worker `j` of the others over its own network, with its own dealer (or, with
/// a dealer-free [`Correlation`], making its material with them), and to the
/// other workers of its server over a [`MemoryMesh`]. Returns one run per worker (its `k`
/// servers' outputs and its dealer's traffic). For each `(s, f)` of `deviations`, server `s`'s
/// first worker deviates as `f` says. Any worker's error fails the whole run; the others see
/// its links close.
pub async fn run_local_workers<F, Fut, O>(
    k: usize,
    workers: usize,
    correlation: Correlation,
    max_words: usize,
    deviations: Vec<(usize, Deviation)>,
    job: F,
) -> Result<Vec<LocalRun<O>>>
where
    F: Fn(LocalEngine, MemoryMesh) -> Fut,
    Fut: Future<Output = Result<(O, LocalEngine)>> + Send + 'static,
    O: Send + 'static,
{
    let mut deviations = deviations;
    if let Some((s, _)) = deviations.iter().find(|(s, _)| *s >= k) {
        return Err(Error::invalid(format!("no server {s} of {k} to deviate")));
    }
    if workers == 0 {
        return Err(Error::invalid("a server needs at least one worker"));
    }
    // meshes[s][j]: worker j of server s.
    let mut meshes: Vec<std::vec::IntoIter<MemoryMesh>> =
        (0..k).map(|_| memory_mesh(workers).into_iter()).collect();
    let mut dealers = Vec::new();
    let mut tasks: Vec<Vec<_>> = Vec::new();
    for _ in 0..workers {
        let dealer = Dealer::new(k)?.with_max_words(max_words);
        let (transports, mut dnet) = memory_network(k);
        dealers.push(Aborting(tokio::spawn(async move {
            if correlation.has_dealer() {
                serve(dealer, &mut dnet).await
            } else {
                Ok(DealerStats::default())
            }
        })));
        let mut group = Vec::new();
        for (i, t) in transports.into_iter().enumerate() {
            let t = match deviations.iter().position(|(s, _)| *s == i) {
                Some(at) => t.deviating(deviations.swap_remove(at).1),
                None => t,
            };
            let mut session = Session::new(t);
            let client = Source::connect(correlation, &mut session).await?;
            let mesh = meshes[i].next().expect("one mesh end per worker");
            let fut = job(Engine::new(session, client), mesh);
            group.push(Aborting(tokio::spawn(async move {
                let (out, engine) = fut.await?;
                Ok::<_, Error>((out, engine.stats()))
            })));
        }
        tasks.push(group);
    }
    let mut first_err = None;
    let mut results = Vec::new();
    for group in tasks {
        let mut outputs = Vec::new();
        let mut stats = Vec::new();
        for mut t in group {
            match (&mut t.0).await {
                Ok(Ok((o, s))) => {
                    outputs.push(o);
                    stats.push(s);
                }
                // A worker's real failure makes the others see its links close: report the
                // failure, not the closed link.
                Ok(Err(e)) => match &first_err {
                    Some(Error::Transport { .. }) | None
                        if !matches!(e, Error::Transport { .. }) =>
                    {
                        first_err = Some(e)
                    }
                    _ => {
                        first_err.get_or_insert(e);
                    }
                },
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => {
                    first_err.get_or_insert(Error::invalid(format!("server task failed: {e}")));
                }
            }
        }
        results.push((outputs, stats));
    }
    if let Some(e) = first_err {
        for d in &dealers {
            d.0.abort();
        }
        return Err(e);
    }
    let mut runs = Vec::new();
    for ((outputs, stats), mut dealer_task) in results.into_iter().zip(dealers) {
        let dealer = match (&mut dealer_task.0).await {
            Ok(r) => r?,
            Err(e) => return Err(Error::invalid(format!("dealer task failed: {e}"))),
        };
        runs.push(LocalRun {
            outputs,
            stats,
            dealer,
        });
    }
    Ok(runs)
}

/// A spawned task that is aborted when dropped: a run dropped before it ends (under a caller's
/// time limit) leaves no server or dealer task running behind it.
struct Aborting<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Aborting<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A multi-threaded tokio runtime sized for in-process runs.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| Error::invalid(format!("cannot start the async runtime: {e}")))
}
