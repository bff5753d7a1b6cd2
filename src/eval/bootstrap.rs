//! Evaluation of bootstrapped alignment ([`crate::model::bootstrap`]): a chain of jobs in which
//! each job's most confident matches become known links of the next, judged as a whole.
//!
//! Each job is an ordinary in-process job (secure, compared with its plaintext reference). The
//! combined decisions are: the promoted pairs (fixed when promoted) plus the last job's
//! decisions on the rows left. Hits@1 counts a gold pair as found when its A entity was promoted
//! with its partner, or when it was left and the last job's best candidate is its partner; a
//! gold pair whose B entity was promoted with another A entity is a miss.

use crate::error::{Error, Result};
use crate::eval::evaluate::Split;
use crate::eval::evaluate::{EvalOptions, EvalReport, JobRun, job_inprocess};
use crate::model::align::ResultRow;
use crate::model::bootstrap::{Matched, promote};
use crate::model::import::Dataset;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// The figures of a bootstrapped evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct BootstrapReport {
    /// Jobs run (promotion rounds + 1).
    pub jobs: usize,
    /// Fraction of each job's matches promoted.
    pub fraction: f64,
    /// Pairs promoted to known links, over all rounds.
    pub promoted: usize,
    /// Of which correct.
    pub promoted_correct: usize,
    /// Hits@1 of the combined decisions over the judged links.
    pub hits1: f64,
    /// Precision of the combined matches.
    pub precision: f64,
    /// Recall of the combined matches.
    pub recall: f64,
    /// F1 of the combined matches.
    pub f1: f64,
    /// Plaintext agreement of every job (the smallest).
    pub plaintext_agreement: f64,
    /// Bytes sent by one server, summed over the jobs.
    pub bytes_per_server: u64,
    /// Dealer bytes, summed over the jobs.
    pub dealer_bytes: u64,
    /// Rounds, summed over the jobs.
    pub rounds: u64,
    /// Wall time, summed over the jobs.
    pub wall_seconds: f64,
    /// Each job's own report (the later ones judge only the rows left).
    pub per_job: Vec<EvalReport>,
}

/// Matched rows of one party, as `(entity, score, token)`.
fn matched(rows: &[ResultRow]) -> Vec<Matched<u32>> {
    rows.iter()
        .filter(|r| r.matched)
        .map(|r| Matched {
            entity: r.entity,
            score: r.score,
            token: r.token,
        })
        .collect()
}

/// Runs `1 + rounds` jobs, promoting the best `fraction` of each job's matches (all but the
/// last) to known links of the next. Needs known links to start from.
pub async fn evaluate_bootstrapped(
    ds: &Dataset,
    opts: &EvalOptions,
    rounds: usize,
    fraction: f64,
) -> Result<BootstrapReport> {
    if !(opts.known_links || opts.params.model.known_links) {
        return Err(Error::invalid(
            "bootstrapping extends known links: run it with known links (--known-links train)",
        ));
    }
    if opts.dump_scores.is_some() {
        return Err(Error::invalid(
            "a score dump covers one job: not with bootstrapping",
        ));
    }
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(Error::invalid(format!(
            "the bootstrap fraction must be in (0, 1], got {fraction}"
        )));
    }
    let mut known = ds.tune.clone();
    let mut promoted: Vec<(u32, u32)> = Vec::new();
    let mut per_job = Vec::new();
    let mut last: Option<JobRun> = None;
    for round in 0..=rounds {
        let run = job_inprocess(ds, opts, &known).await?;
        if round < rounds {
            let (ma, mb) = (matched(&run.a.1), matched(&run.b.1));
            let (pa, pb) = (promote(&ma, fraction), promote(&mb, fraction));
            // Each side promotes on its own; the pairs must be the same link tokens, in order.
            let token = |m: &[Matched<u32>]| -> HashMap<u32, u64> {
                m.iter().map(|x| (x.entity, x.token)).collect()
            };
            let (ta, tb) = (token(&ma), token(&mb));
            if pa.len() != pb.len() || pa.iter().zip(&pb).any(|(x, y)| ta[x] != tb[y]) {
                return Err(Error::invalid(
                    "the two parties promoted different matches (link tokens differ)",
                ));
            }
            let pairs: Vec<(u32, u32)> = pa.into_iter().zip(pb).collect();
            known.extend(&pairs);
            promoted.extend(&pairs);
        }
        per_job.push(run.report.clone());
        last = Some(run);
    }
    let last = last.ok_or_else(|| Error::invalid("no job ran"))?;
    let gold: &[(u32, u32)] = match opts.split {
        Split::Tune => &ds.tune,
        Split::Test => &ds.test,
    };
    Ok(combine(gold, &promoted, &last, fraction, per_job))
}

/// Judges the promoted pairs plus the last job's decisions.
fn combine(
    gold: &[(u32, u32)],
    promoted: &[(u32, u32)],
    last: &JobRun,
    fraction: f64,
    per_job: Vec<EvalReport>,
) -> BootstrapReport {
    let gold_set: HashSet<(u32, u32)> = gold.iter().copied().collect();
    let promoted_a: HashMap<u32, u32> = promoted.iter().copied().collect();
    let promoted_b: HashSet<u32> = promoted.iter().map(|p| p.1).collect();
    let (_, res_a) = &last.a;
    let (rows_b, res_b) = &last.b;
    let top1: HashMap<u32, u32> = res_a
        .iter()
        .filter_map(|r| {
            let (row, _) = r.best?;
            Some((r.entity, *rows_b.get(row as usize)?))
        })
        .collect();
    let mut hits = 0usize;
    for &(a, b) in gold {
        let found = match promoted_a.get(&a) {
            Some(&p) => p == b,
            None => !promoted_b.contains(&b) && top1.get(&a) == Some(&b),
        };
        hits += found as usize;
    }
    // Combined matches: promoted pairs and the last job's matched pairs (joined by token).
    let b_by_token: HashMap<u64, u32> = res_b
        .iter()
        .filter(|r| r.matched)
        .map(|r| (r.token, r.entity))
        .collect();
    let mut decided: Vec<(u32, u32)> = promoted.to_vec();
    decided.extend(
        res_a
            .iter()
            .filter(|r| r.matched)
            .filter_map(|r| Some((r.entity, *b_by_token.get(&r.token)?))),
    );
    let correct = decided.iter().filter(|p| gold_set.contains(p)).count();
    let ratio = |x: usize, n: usize| if n == 0 { 0.0 } else { x as f64 / n as f64 };
    let (precision, recall) = (ratio(correct, decided.len()), ratio(correct, gold.len()));
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    BootstrapReport {
        jobs: per_job.len(),
        fraction,
        promoted: promoted.len(),
        promoted_correct: promoted.iter().filter(|p| gold_set.contains(p)).count(),
        hits1: ratio(hits, gold.len()),
        precision,
        recall,
        f1,
        plaintext_agreement: per_job
            .iter()
            .map(|r| r.plaintext_agreement)
            .fold(1.0, f64::min),
        bytes_per_server: per_job.iter().map(|r| r.bytes_per_server).sum(),
        dealer_bytes: per_job.iter().map(|r| r.dealer_bytes).sum(),
        rounds: per_job.iter().map(|r| r.rounds).sum(),
        wall_seconds: per_job.iter().map(|r| r.wall_seconds).sum(),
        per_job,
    }
}
