//! `party`: the program a graph owner runs next to its own knowledge graph. It computes
//! everything that needs only the owner's graph locally and uploads only additive secret shares
//! to the compute servers.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ppea::eval::evaluate::{EvalProtocol, Split};
use ppea::model::align::{JobParams, finish_party, prepare_party_streamed};
use ppea::model::graph::Graph;
use ppea::model::import::Format;
use ppea::mpc::prg::Prg;
use ppea::net::job::OutputMode;
use ppea::net::party::{EvalDump, PartyJob, run_party_with};
use ppea::net::tls::Identity;
use std::path::{Path, PathBuf};
use std::time::Instant;

mod progress;
use progress::{Mode, Progress};

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

/// What `run` and `eval-run` take.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The job file (TOML): job id, side, identities, servers, dealer, blocking key, TLS
    /// files, output options and model parameters. See the README.
    #[arg(long)]
    job: PathBuf,
    /// This party's graph directory (native layout: entities.tsv, triples.tsv,
    /// optional attributes.tsv).
    #[arg(long)]
    graph: PathBuf,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Align only the entities listed in this file (one id per line) [default: all].
    #[arg(long)]
    scope: Option<PathBuf>,
    /// Known links: this party's ids of the anchors both parties hold, one per line, in the
    /// order agreed with the other party (the job must set `model.known_links = true`).
    /// They are propagated through this graph and excluded from the results.
    #[arg(long)]
    known_links: Option<PathBuf>,
    /// Audited jobs (`[params.audit] labelled = true`): a labelled sample of true links,
    /// lines `own_id,other_id` (this party's id, the other party's id), for per-group
    /// precision and recall.
    #[arg(long)]
    labelled: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Align this party's graph with the other party's through the compute servers.
    ///
    /// Prepares locally, uploads shares to every server, waits for the job, downloads only this
    /// party's result shares, reconstructs them and writes OUT/matches.csv (matched entities:
    /// id, score, link token, partner id when both parties opted in) and OUT/summary.json; with
    /// `explain = true` also OUT/explanations.csv, with `[params.audit]` OUT/audit.json and
    /// OUT/audit-other.json (see the README). In aggregate-only jobs only the summary is
    /// written. Nothing is written if the job fails.
    Run {
        #[command(flatten)]
        args: RunArgs,
    },
    /// Evaluation only: one party of an evaluation job (`evaluation = true` in the job file)
    /// over the network, like `run`, but with the blocking key and this party's row shuffle
    /// derived from --seed (as `party eval --seed` does), so that a networked run can be
    /// compared decision by decision with an in-process one. Refuses other job files.
    EvalRun {
        #[command(flatten)]
        args: RunArgs,
        /// Seed of the blocking key and row shuffle (the same on both parties).
        #[arg(long)]
        seed: u64,
    },
    /// Write a development CA and a certificate and key for each name (for local deployments;
    /// production deployments use their own CA).
    Certs {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Identities, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "dealer,server-0,server-1,party-a,party-b"
        )]
        names: Vec<String>,
    },
    /// Convert a benchmark dataset (DBP15K/SRPRS or OpenEA) to the native layout: OUT/a,
    /// OUT/b, OUT/links.tsv (tune links first, then test), OUT/tune-links.tsv and
    /// OUT/test-links.tsv (the split used), OUT/test-a.txt, OUT/test-b.txt (the test entities,
    /// for --scope) and OUT/known-a.txt, OUT/known-b.txt (each side's ids of the tune links, in
    /// the same order, for --known-links).
    Import {
        /// Dataset directory.
        dataset: PathBuf,
        /// Its layout [default: detected].
        #[arg(long, value_parser = choice::<Format>(FORMATS))]
        format: Option<Format>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// OpenEA: fold of the published `721_5fold/` split.
        #[arg(long, default_value_t = 1)]
        fold: usize,
        /// `hidden`: replace every name by an opaque id (to test structure alone).
        #[arg(long, default_value = "given")]
        names: Names,
    },
    /// Grow a large evaluation pair from a real one (for scaling benchmarks): two graphs of N
    /// entities each, with gold links, heavy-tailed degrees, typed relations and the source's
    /// real cross-lingual name noise (see `ppea::eval::generate`). Written like `import`:
    /// OUT/a, OUT/b, OUT/links.tsv, OUT/tune-links.tsv, OUT/test-links.tsv, ... Seeded: the
    /// same source, N and seed give the same files.
    Generate {
        /// Source dataset with gold links (DBP15K, OpenEA or native layout).
        #[arg(long)]
        source: PathBuf,
        /// The source's layout [default: detected].
        #[arg(long, value_parser = choice::<Format>(FORMATS))]
        format: Option<Format>,
        /// Entities per side.
        #[arg(long)]
        n: usize,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Seed of the generation.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of each side's entities that have a counterpart (gold links).
        #[arg(long, default_value_t = 0.75)]
        overlap: f64,
        /// Probability that a side keeps a shared edge.
        #[arg(long, default_value_t = 0.85)]
        edge_keep: f64,
        /// Probability of a character edit in a side's copy of a name.
        #[arg(long, default_value_t = 0.1)]
        typo_rate: f64,
    },
    /// Print a graph's statistics and problems.
    Inspect {
        /// Graph directory (native layout).
        graph: PathBuf,
    },
    /// Judge an evaluation job: both parties' output directories against the gold links.
    /// Prints one JSON object.
    Judge {
        /// Dataset in native layout (as written by `party import`).
        #[arg(long)]
        dataset: PathBuf,
        /// Party A's output directory.
        #[arg(long)]
        a: PathBuf,
        /// Party B's output directory.
        #[arg(long)]
        b: PathBuf,
        /// Which links to judge: `test` (70%) or `tune` (30%).
        #[arg(long, default_value = "test", value_parser = choice::<Split>(SPLITS))]
        split: Split,
    },
    /// Evaluate the whole pipeline on a benchmark with gold links: both parties and all servers
    /// run on this machine, results are judged against the links and against the plaintext
    /// reference of the same model. Progress goes to stderr; the last line of stdout is one
    /// JSON object with the figures.
    Eval {
        /// Dataset directory (DBP15K/SRPRS, OpenEA, or native `a/`, `b/`, `links.tsv`).
        dataset: PathBuf,
        /// Layout of the dataset directory [default: detected from the files].
        #[arg(long, value_parser = choice::<Format>(FORMATS))]
        format: Option<Format>,
        /// `standard`: align the test entities (literature protocol); `open`: the whole graphs.
        #[arg(long, default_value = "standard", value_parser = choice::<EvalProtocol>(PROTOCOLS))]
        protocol: EvalProtocol,
        /// Number of compute servers (2 to 4).
        #[arg(long, default_value_t = 2)]
        servers: usize,
        /// Worker processes per server, run here as tasks: each server's rows are dealt among
        /// them and worker j of every server computes with worker j of the others (the same
        /// decisions as one worker; not with assignment rounds yet).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        workers: u16,
        /// Gold links to judge: `test` (70%, for reporting) or `tune` (30%, for choosing
        /// parameters). Under the standard protocol these links' entities are aligned.
        #[arg(long, default_value = "test", value_parser = choice::<Split>(SPLITS))]
        split: Split,
        /// Fix the parties' row shuffles and blocking key (evaluation only), so that runs with
        /// different numbers of servers can be compared by `decisions_digest`. Secret shares
        /// always use fresh operating-system randomness.
        #[arg(long)]
        seed: Option<u64>,
        /// Job parameters as a TOML file (`[model]`, `[blocking]`, `min_score`); defaults are
        /// used for anything not given.
        #[arg(long)]
        params: Option<PathBuf>,
        /// `train`: the tuning links (DBP15K `sup_ent_ids`, OpenEA `train_links`) are known
        /// links both parties hold; `none`: no known links.
        #[arg(long, default_value = "none")]
        known_links: KnownLinks,
        /// `hidden`: replace every name by an opaque id (to test structure alone).
        #[arg(long, default_value = "given")]
        names: Names,
        /// OpenEA: fold of the published `721_5fold/` split.
        #[arg(long, default_value_t = 1)]
        fold: usize,
        /// Bootstrapping rounds (needs `--known-links train`): after each job but the last, the
        /// best `--bootstrap-fraction` of its matches become known links of the next job, which
        /// aligns the rows left; the JSON then judges the combined decisions.
        #[arg(long, default_value_t = 0)]
        bootstrap: usize,
        /// Fraction of a job's matches (by score) promoted to known links.
        #[arg(long, default_value_t = 0.5)]
        bootstrap_fraction: f64,
        /// Write each party's outputs of explained or audited jobs to OUT/a and OUT/b
        /// (`explanations.csv`, `audit.json`, `audit-other.json`), as `party run` does.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the HTML report of the evaluation to this file (self-contained: summary,
        /// score histogram, precision-recall curve, per-group figures). Not with --bootstrap.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Also write every candidate pair's plaintext score, the candidate lists and the gold
        /// links to this file, for offline study of the ranking step
        /// (`scripts/normalisation.py` reads it; layout in `ppea::eval::score_dump`). Not with
        /// --bootstrap.
        #[arg(long, value_name = "FILE")]
        dump_scores: Option<PathBuf>,
    },
    /// Derive the next job's known-links file from a finished job (bootstrapping).
    ///
    /// Keeps the best FRACTION of the job's matches by score (ties by link token), orders them by
    /// link token and appends their ids to the known-links file. Both parties run it with the
    /// same FRACTION on their own `matches.csv`: score and link token are the same on both sides
    /// of a pair, so both files list the same new anchors in the same order, with nothing
    /// exchanged. The next job (with a new job id) then aligns the rows left.
    Bootstrap {
        /// This party's known-links file of the finished job (one of its ids per line).
        #[arg(long)]
        known: PathBuf,
        /// This party's `matches.csv` of the finished job.
        #[arg(long)]
        matches: PathBuf,
        /// Fraction of the matches (by score) to promote, in (0, 1].
        #[arg(long, default_value_t = 0.5)]
        fraction: f64,
        /// Where to write the next job's known-links file (written atomically).
        #[arg(long)]
        out: PathBuf,
    },
    /// Evaluation only: play one curious compute server against the blocking of a benchmark.
    ///
    /// Builds both parties' blocking uploads exactly as in a job (shuffled rows, keyed tokens)
    /// and the candidate lists the servers compute, then attacks them with auxiliary public
    /// knowledge (plaintext names of a similar population, never linked to rows): `other` = the
    /// names of party B's aligned entities, `half` = the names of a random half of party A's
    /// (the other half is scored), `same` = party A's exact population. The attacks
    /// (document-frequency signatures, token decoding by co-occurrence, name reconstruction from
    /// trigrams, candidate-graph propagation) are described in `docs/design.md`. The last line
    /// of stdout is one JSON object: reidentification_rate, name_recovery_rate, baseline_rate
    /// (the same attack given only row sizes), blocking, blocking_recall and sizes.
    Attack {
        /// Dataset directory with gold links (DBP15K/SRPRS, OpenEA, or native).
        dataset: PathBuf,
        /// Layout of the dataset directory [default: detected from the files].
        #[arg(long)]
        format: Option<Format>,
        /// `standard`: the test entities (literature protocol); `open`: the whole graphs.
        #[arg(long, default_value = "standard")]
        protocol: EvalProtocol,
        /// Auxiliary knowledge: `other`, `half` or `same` (see above).
        #[arg(long, default_value = "other")]
        aux: ppea::eval::attack::AuxSetting,
        /// Blocking mode to judge: `tokens` (today: keyed words and trigrams), `party-cap` (parties
        /// drop tokens held by more than 1% of their rows), `padded` (token lists padded with
        /// random tokens to multiples of 16), `cap-padded` (both), `words` (own tokens are the
        /// name's words only).
        #[arg(long, default_value = "tokens")]
        blocking: ppea::eval::attack::BlockingMode,
        /// Seed of the blocking key, the row shuffles and the auxiliary half.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Job parameters as a TOML file (`[model]`, `[blocking]`); defaults otherwise.
        #[arg(long)]
        params: Option<PathBuf>,
    },
}

const FORMATS: &[&str] = &["dbp15k", "srprs", "openea", "native"];
const SPLITS: &[&str] = &["test", "tune"];
const PROTOCOLS: &[&str] = &["standard", "open"];

/// A parser that accepts exactly `values` (listed by `--help`) and converts with `FromStr`.
fn choice<T>(values: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(values).try_map(|s| s.parse::<T>())
}

/// `--names`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Names {
    /// The dataset's names.
    Given,
    /// Every name replaced by an opaque id.
    Hidden,
}

/// `--known-links` of `eval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum KnownLinks {
    /// No known links.
    None,
    /// The tuning (training) links.
    Train,
}

/// Loads a benchmark dataset, logging the split, hiding names if asked.
fn load_dataset(
    dataset: &Path,
    format: Format,
    fold: usize,
    names: Names,
) -> Result<ppea::model::import::Dataset> {
    let mut ds =
        ppea::model::import::load_with(dataset, format, ppea::model::import::LoadOptions { fold })?;
    eprintln!("{}: {}", dataset.display(), ds.split);
    if names == Names::Hidden {
        ds.hide_names();
        eprintln!("names hidden: every name replaced by an opaque id");
    }
    Ok(ds)
}

fn detect(dataset: &Path, format: Option<Format>) -> Result<Format> {
    if !dataset.is_dir() {
        bail!("{} is not a directory", dataset.display());
    }
    match format {
        Some(f) => Ok(f),
        None => Format::detect(dataset).with_context(|| {
            format!(
                "cannot tell the layout of {}: pass --format dbp15k|openea|native",
                dataset.display()
            )
        }),
    }
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
        Command::Run { args } => run(&args, None),
        Command::EvalRun { args, seed } => run(&args, Some(seed)),
        Command::Certs { out, names } => {
            ppea::net::tls::write_dev_pki(&out, &names)?;
            println!(
                "wrote a development CA and certificates for {} to {}",
                names.join(", "),
                out.display()
            );
            Ok(())
        }
        Command::Import {
            dataset,
            format,
            out,
            fold,
            names,
        } => import(
            &load_dataset(&dataset, detect(&dataset, format)?, fold, names)?,
            &format!("imported {}", dataset.display()),
            &out,
        ),
        Command::Generate {
            source,
            format,
            n,
            out,
            seed,
            overlap,
            edge_keep,
            typo_rate,
        } => {
            let src = load_dataset(&source, detect(&source, format)?, 1, Names::Given)?;
            let opts = ppea::eval::generate::GenerateOptions {
                n,
                seed,
                overlap,
                edge_keep,
                typo_rate,
                ..Default::default()
            };
            let t0 = Instant::now();
            let ds = ppea::eval::generate::generate(&src, &opts)
                .map_err(|e| anyhow::anyhow!("cannot generate from {}: {e}", source.display()))?;
            eprintln!(
                "generated {} + {} entities, {} + {} triples in {:.1} s",
                ds.a.len(),
                ds.b.len(),
                ds.a.triples.len(),
                ds.b.triples.len(),
                t0.elapsed().as_secs_f64()
            );
            import(
                &ds,
                &format!("generated from {} (seed {seed})", source.display()),
                &out,
            )
        }
        Command::Inspect { graph } => inspect(&graph),
        Command::Judge {
            dataset,
            a,
            b,
            split,
        } => {
            let ds = ppea::model::import::load(&dataset, Format::Native)?;
            let (da, db) = (EvalDump::read(&a, 0)?, EvalDump::read(&b, 1)?);
            EvalDump::check_pair(&da, &db)?;
            let cand = ppea::model::blocking::candidates(
                &da.data.tokens,
                &db.data.tokens,
                &da.params.blocking,
                &ppea::model::align::job_seed(&da.job),
            );
            let gold = match split {
                Split::Tune => &ds.tune,
                Split::Test => &ds.test,
            };
            let mut r = ppea::eval::evaluate::judge(
                &ds,
                gold,
                &da.data,
                &db.data,
                &da.results,
                &db.results,
                &cand,
                &da.params,
            );
            r.split = split;
            let summary = |d: &Path| -> Result<serde_json::Value> {
                let p = d.join("summary.json");
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?;
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))
            };
            let (sa, sb) = (summary(&a)?, summary(&b)?);
            let mut v = serde_json::to_value(&r)?;
            for key in [
                "wall_seconds",
                "bytes_per_server",
                "dealer_bytes",
                "rounds",
                "servers",
                "upload_bytes",
            ] {
                if let Some(x) = sa.get(key) {
                    v[key] = x.clone();
                }
            }
            let prep = |x: &serde_json::Value| x["prepare_seconds"].as_f64().unwrap_or(0.0);
            v["plaintext_seconds"] =
                serde_json::json!(r.plaintext_seconds + prep(&sa).max(prep(&sb)));
            v["known_links"] = sa["known_links"].clone();
            v["upload_bytes"] = serde_json::json!(
                sa["upload_bytes"].as_u64().unwrap_or(0) + sb["upload_bytes"].as_u64().unwrap_or(0)
            );
            println!("{v}");
            Ok(())
        }
        Command::Eval {
            dataset,
            format,
            protocol,
            servers,
            workers,
            split,
            seed,
            params,
            known_links,
            names,
            fold,
            bootstrap,
            bootstrap_fraction,
            out,
            report: report_path,
            dump_scores,
        } => {
            ppea::mpc::share::check_servers(servers)?;
            if bootstrap > 0 && report_path.is_some() {
                bail!("--report is not available with --bootstrap (it reports single jobs)");
            }
            if bootstrap > 0 && dump_scores.is_some() {
                bail!("--dump-scores is not available with --bootstrap (it dumps single jobs)");
            }
            let format = detect(&dataset, format)?;
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
            let ds = load_dataset(&dataset, format, fold, names)?;
            for (side, g) in [("first", &ds.a), ("second", &ds.b)] {
                if known_links == KnownLinks::None && ppea::model::anchors::names_look_opaque(g) {
                    eprintln!(
                        "warning: {}: the {side} graph's names look like opaque identifiers and no known links are given (--known-links train): alignment has almost nothing to go on",
                        dataset.display()
                    );
                }
            }
            let rt = ppea::mpc::local::runtime()?;
            let opts = ppea::eval::evaluate::EvalOptions {
                protocol,
                split,
                servers,
                workers: workers as usize,
                params,
                seed,
                known_links: known_links == KnownLinks::Train,
                dump_scores,
            };
            if bootstrap > 0 {
                let report = rt.block_on(ppea::eval::bootstrap::evaluate_bootstrapped(
                    &ds,
                    &opts,
                    bootstrap,
                    bootstrap_fraction,
                ))?;
                println!("{}", serde_json::to_string(&report)?);
                return Ok(());
            }
            let run = rt.block_on(ppea::eval::evaluate::run_inprocess(&ds, &opts))?;
            if let Some(out) = &out {
                write_eval_outputs(out, &ds, &opts, &run)?;
            }
            if let Some(path) = &report_path {
                let scores: Vec<f64> = run
                    .a
                    .1
                    .iter()
                    .filter(|r| r.matched)
                    .map(|r| r.score)
                    .collect();
                let input = ppea::report::build::from_eval(
                    &run.report,
                    scores,
                    &opts.params,
                    &dataset.display().to_string(),
                    out.as_ref().map(|o| o.join("a")).as_deref(),
                );
                ppea::report::files::write_atomically(path, &ppea::report::render(&input))?;
                eprintln!("report: {}", path.display());
            }
            println!("{}", serde_json::to_string(&run.report)?);
            Ok(())
        }
        Command::Bootstrap {
            known,
            matches,
            fraction,
            out,
        } => {
            use ppea::model::bootstrap::{extend_known, promote, read_matches};
            if !(fraction > 0.0 && fraction <= 1.0) {
                bail!("--fraction must be in (0, 1], got {fraction}");
            }
            let text = std::fs::read_to_string(&known)
                .with_context(|| format!("reading {}", known.display()))?;
            let m = read_matches(&matches)?;
            let promoted = promote(&m, fraction);
            let next = extend_known(&text, &promoted)
                .map_err(|e| anyhow::anyhow!("{}: {e}; nothing written", matches.display()))?;
            // Through a hidden temporary name of this process's (never `known` itself).
            ppea::report::files::write_atomically(&out, &next)?;
            eprintln!(
                "{}: {} known links ({} promoted of {} matches)",
                out.display(),
                next.lines().count(),
                promoted.len(),
                m.len()
            );
            Ok(())
        }
        Command::Attack {
            dataset,
            format,
            protocol,
            aux,
            blocking,
            seed,
            params,
        } => attack(
            &dataset,
            format,
            protocol,
            aux,
            blocking,
            seed,
            params.as_deref(),
        ),
    }
}

/// `party eval --out`: each party's explanations and audit reports, as `party run` writes them.
fn write_eval_outputs(
    out: &Path,
    ds: &ppea::model::import::Dataset,
    opts: &ppea::eval::evaluate::EvalOptions,
    run: &ppea::eval::evaluate::JobRun,
) -> Result<()> {
    let mut params = opts.params.clone();
    params.model.known_links |= opts.known_links;
    for (side, g, results) in [(0, &ds.a, &run.a.1), (1, &ds.b, &run.b.1)] {
        let mut files: Vec<(&str, String)> = Vec::new();
        if params.explain {
            files.push((
                "explanations.csv",
                ppea::model::explain::csv(g, results, &params),
            ));
        }
        if let Some(reports) = &run.audit {
            let own = &reports[side];
            files.push(("audit.json", serde_json::to_string_pretty(&own[side])?));
            files.push((
                "audit-other.json",
                serde_json::to_string_pretty(&own[1 - side])?,
            ));
        }
        if !files.is_empty() {
            let dir = out.join(["a", "b"][side]);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            ppea::model::graph::write_atomically(&dir, &files)
                .with_context(|| format!("writing {}", dir.display()))?;
        }
    }
    Ok(())
}

fn run(args: &RunArgs, eval_seed: Option<u64>) -> Result<()> {
    let t0 = Instant::now();
    let bar = Progress::new(Mode::detect());
    bar.install_logging();
    let result = run_with(args, eval_seed, t0, &bar);
    bar.finish();
    result
}

fn run_with(args: &RunArgs, eval_seed: Option<u64>, t0: Instant, bar: &Progress) -> Result<()> {
    let (job_path, graph_dir, out) = (&args.job, &args.graph, &args.out);
    let (scope, known_links) = (args.scope.as_deref(), args.known_links.as_deref());
    let job = PartyJob::load(job_path)?;
    if eval_seed.is_some() && !job.evaluation {
        bail!(
            "{}: `party eval-run` needs an evaluation job (evaluation = true); use `party run` for real data",
            job_path.display()
        );
    }
    let side = job.side_index()?;
    let identity = Identity::load(&job.identity, &job.tls)?;
    bar.begin(&format!("loading {}", graph_dir.display()));
    let g = Graph::load_dir(graph_dir)?;
    bar.done(&format!(
        "loaded {}: {} entities, {} triples",
        graph_dir.display(),
        g.len(),
        g.triples.len()
    ));
    let rows: Vec<u32> = match scope {
        None => (0..g.len() as u32).collect(),
        Some(p) => {
            let index = g.index();
            let mut v = Vec::new();
            for (no, line) in ppea::model::graph::read_lines(p)? {
                let id = line.trim();
                v.push(
                    *index
                        .get(id)
                        .with_context(|| format!("{}:{no}: unknown entity {id:?}", p.display()))?,
                );
            }
            v.sort_unstable();
            v.dedup();
            v
        }
    };
    let spec = job.spec();
    bar.step(&spec.params.correlation.trust(spec.servers.len()));
    let (key, mut shuffle) = match eval_seed {
        Some(seed) => {
            let (key, a, b) = ppea::eval::evaluate::seeded(seed);
            (key, if side == 0 { a } else { b })
        }
        None => (job.key()?, Prg::fresh()),
    };
    let known = match known_links {
        Some(p) => ppea::model::anchors::read_known_links(p, &g)?,
        None => Vec::new(),
    };
    if known.is_empty() && ppea::model::anchors::names_look_opaque(&g) {
        eprintln!(
            "warning: {}: the names look like opaque identifiers and no known links are given (--known-links): alignment has almost nothing to go on",
            graph_dir.join("entities.tsv").display()
        );
    }
    let t_prep = Instant::now();
    let labelled = match args.labelled.as_deref() {
        Some(p) => ppea::model::audit::read_labelled(p, &g)?,
        None => Vec::new(),
    };
    let takes_labels = spec.params.audit.enabled && spec.params.audit.labelled;
    if !labelled.is_empty() && !takes_labels {
        bail!("--labelled needs a job with [params.audit] enabled = true and labelled = true");
    }
    bar.begin(&format!(
        "preparing {} rows (features, neighbourhoods, keyed tokens, shuffle)",
        rows.len()
    ));
    let mut data = prepare_party_streamed(&g, &rows, &known, &spec.params, &key, &mut shuffle)?;
    ppea::model::audit::attach(&mut data, &g, &spec.params, &key, &labelled)?;
    let prepare_seconds = t_prep.elapsed().as_secs_f64();
    bar.done(&format!(
        "prepared {} rows of width {} (shuffled, fixed point, keyed tokens)",
        data.rows.len(),
        data.width
    ));
    if job.evaluation {
        // The dump needs the rows after the job: recorded to a temporary file ($TMPDIR) as
        // they are uploaded, so that their source (row-sized vectors) does not wait through
        // the job.
        data.record_rows(&std::env::temp_dir())?;
    }
    let rt = ppea::mpc::local::runtime()?;
    let timing = job.timing()?;
    bar.step(&format!(
        "uploading shares to {} servers: {}",
        spec.servers.len(),
        spec.servers
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let results = rt.block_on(async {
        // What each server last said about the job, repeated while waiting (log lines only).
        let ticker = async {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
            tick.tick().await;
            loop {
                tick.tick().await;
                bar.remind();
            }
        };
        tokio::select! {
            r = run_party_with(&spec, side, &identity, &data, timing, bar) => r,
            _ = ticker => unreachable!("the ticker never ends"),
        }
    })?;
    bar.finish();
    if !job.evaluation {
        // The rows' source (row-sized vectors) serves only the upload and an evaluation dump.
        data.streamed = None;
    }
    let width = results[0].width;
    let shares: Vec<Vec<u64>> = results.iter().map(|r| r.words.clone()).collect();
    let mut params = spec.params.clone();
    let base = JobParams {
        share_partner_ids: false,
        ..params.clone()
    }
    .out_width();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut summary = serde_json::json!({
        "job": job.job, "side": job.side, "rows": data.rows.len(), "servers": spec.servers.len(),
        "wall_seconds": t0.elapsed().as_secs_f64(),
        "prepare_seconds": prepare_seconds,
        "known_links": known.len(),
        "upload_bytes": data.z_words() * 8 + 40 * (spec.servers.len() - 1)
            + if data.audit.is_empty() { 0 } else { data.audit.len() * 8 + 40 * (spec.servers.len() - 1) }
            + 8 * spec.servers.len() * (data.tokens.own.iter().chain(&data.tokens.neighbour).map(Vec::len).sum::<usize>() + 2 * data.rows.len()),
    });
    if job.evaluation {
        // Servers report their traffic only in evaluation jobs (see the leakage table).
        summary["bytes_per_server"] =
            serde_json::json!(results.iter().map(|r| r.stats.bytes_sent).max());
        summary["rounds"] = serde_json::json!(results.iter().map(|r| r.stats.rounds).max());
        summary["peak_rss_mib"] = serde_json::json!(peak_rss_mib());
        summary["dealer_bytes"] = serde_json::json!(
            results
                .iter()
                .map(|r| r.stats.bytes_from_dealer)
                .sum::<u64>()
        );
    }
    let mut files: Vec<(&str, String)> = Vec::new();
    // The report is written last, from these files: an earlier one is removed with the rest.
    let mut files_written: Vec<&str> = Vec::new();
    let mut match_scores = None;
    match job.output {
        OutputMode::Aggregate => {
            let (matched, score_sum) = ppea::model::align::finish_aggregate(&shares, &params)?;
            summary["matched"] = serde_json::json!(matched);
            summary["score_sum"] = serde_json::json!(score_sum);
        }
        OutputMode::Matches => {
            params.share_partner_ids = width == base + ppea::model::align::ID_WORDS;
            let results = finish_party(&data, &shares, &params)?;
            let mut csv = String::from("entity_id,score,link_token,partner_id\n");
            let esc = |s: &str| {
                if s.contains([',', '"', '\n']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s.to_string()
                }
            };
            let mut matched = 0;
            let mut scores = Vec::new();
            for r in results.iter().filter(|r| r.matched) {
                matched += 1;
                scores.push(r.score);
                csv.push_str(&format!(
                    "{},{:.6},{:016x},{}\n",
                    esc(&g.ids[r.entity as usize]),
                    r.score,
                    r.token,
                    r.partner_id.as_deref().map(esc).unwrap_or_default()
                ));
            }
            summary["matched"] = serde_json::json!(matched);
            summary["partner_ids"] = serde_json::json!(params.share_partner_ids);
            files.push(("matches.csv", csv));
            if params.explain {
                files.push((
                    "explanations.csv",
                    ppea::model::explain::csv(&g, &results, &params),
                ));
            }
            if params.audit.enabled {
                let totals = ppea::model::align::audit_totals(&data, &shares, &params)?;
                let mut names: [Option<&[String]>; 2] = [None, None];
                names[side as usize] = Some(&data.groups);
                let reports = ppea::model::audit::finish(&totals, &params, names)?;
                files.push((
                    "audit.json",
                    serde_json::to_string_pretty(&reports[side as usize])?,
                ));
                files.push((
                    "audit-other.json",
                    serde_json::to_string_pretty(&reports[1 - side as usize])?,
                ));
            }
            match_scores = Some(scores);
            if job.evaluation {
                let dump = EvalDump {
                    job: job.job.clone(),
                    side,
                    params: params.clone(),
                    data,
                    results,
                };
                dump.write(out)?;
                files_written.push(EvalDump::FILE);
            }
        }
    }
    summary["wall_seconds"] = serde_json::json!(t0.elapsed().as_secs_f64());
    files.push(("summary.json", serde_json::to_string_pretty(&summary)?));
    // An earlier run's outputs that this one does not write (its explanations, audit, matches
    // or dump) would otherwise sit beside this run's results, and the report would read them
    // as this job's.
    files_written.extend(files.iter().map(|(name, _)| *name));
    remove_stale_outputs(out, &files_written)?;
    ppea::model::graph::write_atomically(out, &files)?;
    bar.step(&format!(
        "wrote {} (matched: {})",
        out.display(),
        summary["matched"]
    ));
    // Last: the report reads the explanations and the audit written beside the results.
    let report = ppea::report::build::from_run(&ppea::report::build::RunFacts {
        summary: &summary,
        params: &params,
        servers: spec.servers.iter().map(|n| n.name.clone()).collect(),
        scores: match_scores,
        evaluation: job.evaluation,
        out,
    });
    let path = out.join("report.html");
    ppea::report::files::write_atomically(&path, &ppea::report::render(&report)).with_context(
        || {
            format!(
                "the results are written, but not the report {}",
                path.display()
            )
        },
    )?;
    bar.step(&format!("report: {}", path.display()));
    Ok(())
}

/// Every file `party run` may write into its output folder.
const RUN_OUTPUTS: [&str; 7] = [
    "matches.csv",
    "explanations.csv",
    "audit.json",
    "audit-other.json",
    EvalDump::FILE,
    "summary.json",
    "report.html",
];

/// Removes from `out` every file of [`RUN_OUTPUTS`] that this run does not write (`written`).
fn remove_stale_outputs(out: &Path, written: &[&str]) -> Result<()> {
    for name in RUN_OUTPUTS.iter().filter(|n| !written.contains(n)) {
        let p = out.join(name);
        match std::fs::remove_file(&p) {
            Ok(()) => eprintln!(
                "removed {} (an earlier run's; this job does not write it)",
                p.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("removing the earlier {}", p.display()));
            }
        }
    }
    Ok(())
}

/// This process's peak resident memory in MiB (Linux `VmHWM`), if the system tells.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Writes a dataset in the native layout; `what` says where it came from (for the last line).
fn import(ds: &ppea::model::import::Dataset, what: &str, out: &Path) -> Result<()> {
    let mut links = String::new();
    for &(a, b) in ds.tune.iter().chain(&ds.test) {
        links.push_str(&format!(
            "{}\t{}\n",
            ds.a.ids[a as usize], ds.b.ids[b as usize]
        ));
    }
    let ids = |side: &Graph, pick: &dyn Fn(&(u32, u32)) -> u32| -> String {
        ds.test
            .iter()
            .map(|p| format!("{}\n", side.ids[pick(p) as usize]))
            .collect()
    };
    let pairs = |l: &[(u32, u32)]| -> String {
        l.iter()
            .map(|&(a, b)| format!("{}\t{}\n", ds.a.ids[a as usize], ds.b.ids[b as usize]))
            .collect()
    };
    let known = |side: &Graph, pick: &dyn Fn(&(u32, u32)) -> u32| -> String {
        ds.tune
            .iter()
            .map(|p| format!("{}\n", side.ids[pick(p) as usize]))
            .collect()
    };
    // Both graphs and the link files in one batch: every file is written and synced before
    // any is renamed, so a failure leaves the folder as it was, never one side new and the
    // other old.
    let side_files = |dir: &str, g: &Graph| -> Vec<(String, String)> {
        (g.native_files().into_iter())
            .map(|(name, body)| (format!("{dir}/{name}"), body))
            .collect()
    };
    let mut files = side_files("a", &ds.a);
    files.extend(side_files("b", &ds.b));
    files.extend(
        [
            ("links.tsv", links),
            ("tune-links.tsv", pairs(&ds.tune)),
            ("test-links.tsv", pairs(&ds.test)),
            ("test-a.txt", ids(&ds.a, &|p| p.0)),
            ("test-b.txt", ids(&ds.b, &|p| p.1)),
            ("known-a.txt", known(&ds.a, &|p| p.0)),
            ("known-b.txt", known(&ds.b, &|p| p.1)),
        ]
        .map(|(name, body)| (name.to_string(), body)),
    );
    let writing = || format!("writing {}", out.display());
    ppea::model::graph::write_atomically(out, &files).with_context(writing)?;
    for (side, g) in [("a", &ds.a), ("b", &ds.b)] {
        g.remove_stale_files(&out.join(side))
            .with_context(writing)?;
    }
    println!(
        "{what}: {} + {} entities, {} tune and {} test links -> {}",
        ds.a.len(),
        ds.b.len(),
        ds.tune.len(),
        ds.test.len(),
        out.display()
    );
    Ok(())
}

fn inspect(dir: &Path) -> Result<()> {
    let g = Graph::load_dir(dir)?;
    let adj = g.adjacency();
    let isolated = adj.iter().filter(|a| a.is_empty()).count();
    let self_loops = g.triples.iter().filter(|t| t.0 == t.2).count();
    let empty_names = g
        .names
        .iter()
        .filter(|n| ppea::model::features::words(n).is_empty())
        .count();
    let mut by_name = std::collections::HashMap::new();
    for n in &g.names {
        *by_name.entry(n.to_lowercase()).or_insert(0usize) += 1;
    }
    let dup_names = by_name
        .values()
        .filter(|&&c| c > 1)
        .map(|c| c - 1)
        .sum::<usize>();
    let mut degrees: Vec<usize> = adj.iter().map(Vec::len).collect();
    degrees.sort_unstable();
    let pct = |p: f64| {
        degrees
            .get(((degrees.len() - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    let mut buckets = std::collections::BTreeMap::new();
    for d in &degrees {
        *buckets
            .entry(ppea::eval::metrics::degree_bucket(*d))
            .or_insert(0usize) += 1;
    }
    println!("graph {}", dir.display());
    println!("  entities      {}", g.len());
    println!("  relations     {}", g.relations.len());
    println!("  triples       {}", g.triples.len());
    println!("  attributes    {}", g.attributes.len());
    println!(
        "  typed         {}",
        g.types.iter().filter(|t| t.is_some()).count()
    );
    println!(
        "  grouped       {}",
        g.groups.iter().filter(|t| t.is_some()).count()
    );
    println!(
        "  degree        median {}, p90 {}, max {}",
        pct(0.5),
        pct(0.9),
        degrees.last().copied().unwrap_or(0)
    );
    println!("  degree groups {buckets:?}");
    println!("problems:");
    let mut any = false;
    for (n, what) in [
        (
            isolated,
            "entities with no relation (only their names can align them)",
        ),
        (empty_names, "entities whose name has no letters or digits"),
        (
            dup_names,
            "entities sharing a name with another entity (case-insensitive)",
        ),
        (self_loops, "self-loop triples"),
    ] {
        if n > 0 {
            any = true;
            println!("  {n} {what}");
        }
    }
    if !any {
        println!("  none found");
    }
    Ok(())
}

fn attack(
    dataset: &Path,
    format: Option<Format>,
    protocol: EvalProtocol,
    aux: ppea::eval::attack::AuxSetting,
    blocking: ppea::eval::attack::BlockingMode,
    seed: u64,
    params: Option<&Path>,
) -> Result<()> {
    let format = detect(dataset, format)?;
    let params: JobParams = match params {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("{}: invalid job parameters", p.display()))?
        }
        None => JobParams::default(),
    };
    params.validate()?;
    eprintln!("loading {} ({format:?})", dataset.display());
    let ds = ppea::model::import::load(dataset, format)?;
    let opts = ppea::eval::attack::HarnessOptions {
        protocol,
        aux,
        blocking,
        params,
        seed,
    };
    let report = ppea::eval::attack::run_harness(&ds, &opts)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An earlier run's outputs that this run does not write are removed; the ones it writes,
    /// and any other file, are left.
    #[test]
    fn an_earlier_runs_outputs_are_removed_unless_written_again() {
        let dir = std::env::temp_dir().join(format!("ppea-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["matches.csv", "explanations.csv", "audit.json", "notes.txt"] {
            std::fs::write(dir.join(name), "old").unwrap();
        }
        remove_stale_outputs(&dir, &["matches.csv", "summary.json"]).unwrap();
        let mut left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["matches.csv", "notes.txt"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Importing over an earlier import replaces both graphs and the links in one batch, and
    /// an earlier graph's attributes do not outlive it (they would be read with the new one);
    /// no temporary file is left.
    #[test]
    fn an_import_over_an_earlier_one_leaves_nothing_of_it() {
        let root = std::env::temp_dir().join(format!("ppea-reimport-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (src, out) = (root.join("src"), root.join("out"));
        for side in ["a", "b"] {
            let d = src.join(side);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("entities.tsv"), "e1\tOne\ne2\tTwo\n").unwrap();
            std::fs::write(d.join("triples.tsv"), "e1\tr\te2\n").unwrap();
            std::fs::write(d.join("attributes.tsv"), "e1\tcolour\tred\n").unwrap();
        }
        std::fs::write(src.join("links.tsv"), "e1\te1\ne2\te2\n").unwrap();
        let load = |dir: &Path| ppea::model::import::load(dir, Format::Native).unwrap();
        import(&load(&src), "first", &out).unwrap();
        assert_eq!(load(&out).a.attributes.len(), 1);
        // The source loses its attributes and an entity's name changes.
        for side in ["a", "b"] {
            std::fs::remove_file(src.join(side).join("attributes.tsv")).unwrap();
            std::fs::write(src.join(side).join("entities.tsv"), "e1\tUno\ne2\tTwo\n").unwrap();
        }
        import(&load(&src), "second", &out).unwrap();
        let again = load(&out);
        for g in [&again.a, &again.b] {
            assert!(g.attributes.is_empty());
            assert_eq!(g.names[0], "Uno");
        }
        for side in ["a", "b"] {
            assert!(!out.join(side).join("attributes.tsv").exists());
        }
        let mut names: Vec<_> = ["", "a", "b"]
            .iter()
            .flat_map(|d| std::fs::read_dir(out.join(d)).unwrap())
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
