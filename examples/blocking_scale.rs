//! Blocking recall of a large pair, measured on a sample of rows (no MPC, no embeddings).
//!
//! ```text
//! cargo run --release --example blocking_scale -- /tmp/large1m [--sample 20000] \
//!     [--max-postings 4096] [--pair-tokens 6] [--candidates 64] [--seed 1]
//! ```
//!
//! Each party computes its tokens exactly as `party eval --protocol open` does (key and shuffles
//! from `seeded(seed)`), the servers' candidate lists are computed for one part of A's rows
//! (every `n / sample`-th row, `blocking::candidates_part`), and the line printed gives the share
//! of those rows' gold partners among their candidates and the time taken.

use ppea::eval::evaluate::{EVAL_JOB, EvalProtocol, Split, scopes, seeded};
use ppea::model::align::{JobParams, job_seed, prepare_party_streamed};
use ppea::model::blocking::{Part, candidates_part, per_row};
use ppea::model::import::{Format, load};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

fn die(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2)
}

fn main() {
    let mut dir: Option<PathBuf> = None;
    let mut sample = 20_000usize;
    let mut seed = 1u64;
    let mut params = JobParams::default();
    let mut args = std::env::args().skip(1);
    let num = |v: Option<String>, what: &str| -> u64 {
        v.and_then(|s| s.parse().ok())
            .unwrap_or_else(|| die(&format!("{what} needs a number")))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--sample" => sample = num(args.next(), "--sample") as usize,
            "--seed" => seed = num(args.next(), "--seed"),
            "--pair-tokens" => {
                params.blocking.pair_tokens = num(args.next(), "--pair-tokens") as usize
            }
            "--candidates" => {
                params.blocking.candidates = num(args.next(), "--candidates") as usize
            }
            "--max-postings" => {
                params.blocking.max_postings = num(args.next(), "--max-postings") as usize
            }
            s if !s.starts_with("--") && dir.is_none() => dir = Some(s.into()),
            s => die(&format!("unknown argument {s:?}")),
        }
    }
    params.validate().unwrap_or_else(|e| die(&e.to_string()));
    let dir = dir.unwrap_or_else(|| {
        die("usage: blocking_scale DATASET_DIR [--sample N] [--max-postings N] [--pair-tokens N] [--candidates N] [--seed N]")
    });
    let t0 = Instant::now();
    let ds = load(&dir, Format::detect(&dir).unwrap_or(Format::Native))
        .unwrap_or_else(|e| die(&e.to_string()));
    let (sa, sb) = scopes(&ds, EvalProtocol::Open, Split::Test);
    let (key, mut sh_a, mut sh_b) = seeded(seed);
    let pa = prepare_party_streamed(&ds.a, &sa, &[], &params, &key, &mut sh_a)
        .unwrap_or_else(|e| die(&e.to_string()));
    let pb = prepare_party_streamed(&ds.b, &sb, &[], &params, &key, &mut sh_b)
        .unwrap_or_else(|e| die(&e.to_string()));
    let prep = t0.elapsed().as_secs_f64();
    let (na, nb) = (pa.rows.len(), pb.rows.len());
    let rb: HashMap<u32, u32> = pb
        .rows
        .iter()
        .enumerate()
        .map(|(r, &e)| (e, r as u32))
        .collect();
    let gold: HashMap<u32, u32> = ds.test.iter().copied().collect();
    let part = Part {
        part: 0,
        parts: (na / sample.max(1)).max(1),
    };
    let t1 = Instant::now();
    let lists = candidates_part(
        &pa.tokens,
        &pb.tokens,
        &params.blocking,
        &job_seed(EVAL_JOB),
        part,
    );
    let secs = t1.elapsed().as_secs_f64();
    let c = per_row(na, nb, &params.blocking);
    let (mut total, mut found) = (0usize, 0usize);
    for (t, list) in lists.chunks(c).take(part.len(na)).enumerate() {
        let row = part.part + t * part.parts;
        let Some(b) = gold.get(&pa.rows[row]).and_then(|e| rb.get(e)) else {
            continue;
        };
        total += 1;
        found += usize::from(list.contains(b));
    }
    println!(
        "rows {na} x {nb} | sampled A rows {} (gold {total}) | max_postings {} | pair_tokens {} | candidates {c} | recall {:.4} | candidates {secs:.1} s (x{} for all rows, both sides) | preparation {prep:.1} s",
        part.len(na),
        params.blocking.max_postings,
        params.blocking.pair_tokens,
        found as f64 / total.max(1) as f64,
        part.parts,
    );
}
