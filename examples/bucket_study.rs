//! Plaintext feasibility study of oblivious, differentially private padded buckets as the
//! blocking (issue 8; He, Machanavajjhala, Flynn, Srivastava, CCS 2017). No MPC: it measures,
//! per bucket function and parameters, the blocking recall on the gold test links and the number
//! of pairs the servers would score on shares once every bucket is padded with dummies so that
//! the bucket sizes are (epsilon, delta)-differentially private.
//!
//! ```text
//! cargo run --release --example bucket_study -- ../shared/data/dbp15k_fr_en \
//!     [--known-links] [--names given|hidden] [--seed N] [--tsv FILE]
//! ```
//!
//! Each party computes its vectors and tokens exactly as `party eval` does (standard protocol,
//! test split, `JobParams::default()`, key and shuffles from `seeded(seed)`), then assigns every
//! entity to at most `L` buckets from its own rows and shared randomness (or shared public data:
//! the known links' own-side vectors). A bucket id means the same on both sides.
//!
//! Schemes: SimHash tables and random centroids (multi-probe) and cross-polytope LSH on the
//! centred upload vectors; MinHash bands, the rarest own (and neighbour-name) tokens, and an
//! exact-name table on the keyed tokens; with `--known-links`, anchors as shared centroids
//! (nearest by `z`, by the anchor block, or by graph walk as today's anchor tokens). The
//! references printed first are today's token blocking and exact top-k by cosine of `z`.
//! Results and conclusions: docs/design.md, "Oblivious buckets: measured feasibility".
//!
//! DP padding: the histogram of bucket sizes has L1 sensitivity `L` (one entity, `L` buckets).
//! Each party adds to every bucket of the domain (empty ones too) `max(0, k0 + eta)` dummies,
//! `eta` two-sided geometric with `alpha = exp(-eps / L)` and `k0` the least shift with
//! `P(k0 + eta < 0) <= delta` (delta 1e-6). The cost of a bucket is `(nA + dA) (nB + dB)` pairs
//! (both directions at once); its expectation is `nA nB + E[d] (nA + nB) + E[d]^2`.

use ppea::eval::evaluate::{EVAL_JOB, EvalProtocol, Split, scopes, seeded};
use ppea::model::align::{JobParams, job_seed, prepare_party_known};
use ppea::model::anchors::{Structure, names_look_opaque, nearest_anchors};
use ppea::model::blocking::candidates;
use ppea::model::features::{hash64, words};
use ppea::model::graph::Graph;
use ppea::model::import::{Dataset, Format, load};
use ppea::mpc::prg::{Prg, Seed};
use rayon::prelude::*;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// Epsilons reported (per job, over the whole histogram).
const EPSILONS: [f64; 4] = [0.5, 1.0, 2.0, 4.0];
/// Probability that a bucket would need negative noise.
const DELTA: f64 = 1e-6;
/// Today's cost: 2 x rows x 64 candidate slots (filled in from the data).
const PER_ROW: usize = 64;

/// One party's view, rows in its upload order.
struct Side {
    n: usize,
    w: usize,
    /// Upload vectors, L2-normalised (f32, `n x w`).
    raw: Vec<f32>,
    /// Upload vectors minus the party's own mean, L2-normalised.
    cen: Vec<f32>,
    /// Keyed own-name tokens (words and trigrams), as uploaded today.
    tokens: Vec<Vec<u64>>,
    /// Names (for the exact-name table), empty when names are opaque.
    names: Vec<String>,
    /// Anchor (known link) vectors in the agreed order, centred with the rows' mean.
    anchors: Vec<f32>,
    /// Nearest anchors by graph walk (as today's anchor tokens), per row.
    anchor_graph: Vec<Vec<u32>>,
}

/// Buckets of both sides: per row, sorted distinct bucket ids in `0..domain`.
struct Assign {
    a: Vec<Vec<u32>>,
    b: Vec<Vec<u32>>,
    domain: usize,
}

/// One measured setting.
#[derive(Clone)]
struct Row {
    scheme: String,
    setting: String,
    copies: usize,
    domain: usize,
    recall: f64,
    real: u64,
    max_size: u32,
    p99_size: u32,
    /// Per epsilon: expected dummies per bucket (per side) and expected padded pairs.
    dummies: [f64; 4],
    padded: [f64; 4],
}

fn die(msg: &str) -> ! {
    eprintln!("bucket_study: {msg}");
    std::process::exit(2)
}

/// Rarest tokens: for every row (its tokens rarest first), the buckets of its first `l`
/// tokens, hashed with `seed` into `bk` buckets.
fn rare_codes(rarest: &[Vec<u64>], l: usize, seed: u64, bk: usize) -> Vec<Vec<u32>> {
    rarest
        .iter()
        .map(|t| {
            let mut v: Vec<u32> = t
                .iter()
                .take(l)
                .map(|&x| (mix(x ^ seed) % bk as u64) as u32)
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect()
}

/// MinHash banding: for every row with tokens, `l` bucket ids, band `b` hashing the first `r`
/// of its `per` minima into one of `bk` buckets (bucket ids `b * bk..(b + 1) * bk`).
fn band_codes(
    mins: &[Vec<u64>],
    tokens: &[Vec<u64>],
    l: usize,
    per: usize,
    r: usize,
    bk: usize,
) -> Vec<Vec<u32>> {
    mins.iter()
        .zip(tokens)
        .map(|(m, toks)| {
            if toks.is_empty() {
                return Vec::new();
            }
            let mut v: Vec<u32> = (0..l)
                .map(|band| {
                    let sig = m[band * per..band * per + r]
                        .iter()
                        .fold(band as u64, |h, &x| mix(h ^ x));
                    (band * bk) as u32 + (sig % bk as u64) as u32
                })
                .collect();
            v.sort_unstable();
            v
        })
        .collect()
}

fn main() {
    let mut dir: Option<PathBuf> = None;
    let mut known_links = false;
    let mut hidden = false;
    let mut seed = 1u64;
    let mut tsv: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--known-links" => known_links = true,
            "--names" => match args.next().as_deref() {
                Some("hidden") => hidden = true,
                Some("given") => hidden = false,
                _ => die("--names given|hidden"),
            },
            "--seed" => {
                seed = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| die("--seed N"))
            }
            "--tsv" => tsv = Some(args.next().unwrap_or_else(|| die("--tsv FILE")).into()),
            s if !s.starts_with("--") && dir.is_none() => dir = Some(s.into()),
            s => die(&format!("unknown argument {s:?}")),
        }
    }
    let dir = dir.unwrap_or_else(|| {
        die("usage: bucket_study DATASET_DIR [--known-links] [--names given|hidden] [--seed N] [--tsv FILE]")
    });
    let t0 = Instant::now();
    let format = Format::detect(&dir).unwrap_or(Format::Dbp15k);
    let mut ds = load(&dir, format).unwrap_or_else(|e| die(&e.to_string()));
    if hidden {
        ds.hide_names();
    }
    let mut params = JobParams::default();
    params.model.known_links = known_links;
    params.reveal_best = true;
    let (sa, sb) = scopes(&ds, EvalProtocol::Standard, Split::Test);
    let (ka, kb): (Vec<u32>, Vec<u32>) = if known_links {
        ds.tune.iter().copied().unzip()
    } else {
        (Vec::new(), Vec::new())
    };
    let (key, mut sh_a, mut sh_b) = seeded(seed);
    let pa = prepare_party_known(&ds.a, &sa, &ka, &params, &key, &mut sh_a)
        .unwrap_or_else(|e| die(&e.to_string()));
    let pb = prepare_party_known(&ds.b, &sb, &kb, &params, &key, &mut sh_b)
        .unwrap_or_else(|e| die(&e.to_string()));
    let side = |g: &Graph, rows: &[u32], known: &[u32], tokens: &[Vec<u64>]| {
        let mut st =
            Structure::new(g, known, &params.model, &key).unwrap_or_else(|e| die(&e.to_string()));
        let gg = st.graph(g);
        let z = st.embedder(&gg, &params.model).all();
        build_side(
            &gg,
            &z,
            params.model.width(),
            rows,
            known,
            tokens,
            known_links,
        )
    };
    let a = side(&ds.a, &pa.rows, &ka, &pa.tokens.own);
    let b = side(&ds.b, &pb.rows, &kb, &pb.tokens.own);
    let opaque = names_look_opaque(&ds.a) || names_look_opaque(&ds.b);
    let gold = gold_rows(&ds, &pa.rows, &pb.rows);
    println!(
        "# dataset {} | names {} | known links {} | rows A {} B {} | width {} | gold test pairs {} | seed {seed}",
        dir.display(),
        if hidden { "hidden" } else { "given" },
        ka.len(),
        a.n,
        b.n,
        a.w,
        gold.len()
    );
    let today = (a.n + b.n) * PER_ROW;
    println!(
        "# budgets: today = (rows A + rows B) x {PER_ROW} = {today} pair slots; 2x = {}",
        2 * today
    );

    // Reference 1: today's token blocking at 64 per row (the A-side lists, as `judge` counts).
    let cand = candidates(
        &pa.tokens,
        &pb.tokens,
        &params.blocking,
        &job_seed(EVAL_JOB),
    );
    let k = cand.per_row;
    let hit = gold
        .iter()
        .filter(|&&(ra, rb)| cand.a[ra * k..(ra + 1) * k].contains(&(rb as u32)))
        .count();
    println!(
        "# today's token blocking: recall {:.4} at {k} candidates per row ({:.1}s)",
        hit as f64 / gold.len().max(1) as f64,
        t0.elapsed().as_secs_f64()
    );

    // Reference 2: exact top-k by cosine of the upload vectors (A's rows ranking B's rows).
    let ranks = cosine_ranks(&a, &b, &gold);
    let at = |k: usize| ranks.iter().filter(|&&r| r < k).count() as f64 / gold.len() as f64;
    println!(
        "# exact cosine of upload vectors: recall@1 {:.4} @10 {:.4} @64 {:.4} @256 {:.4} @1024 {:.4} ({:.1}s)",
        at(1),
        at(10),
        at(64),
        at(256),
        at(1024),
        t0.elapsed().as_secs_f64()
    );

    // The DP floor: any scheme with L copies, balanced buckets, best bucket count.
    println!(
        "# DP padding per bucket (expected dummies) and the floor 4 N L E[d] of any L-copy scheme (N = mean rows):"
    );
    let nmean = (a.n + b.n) as f64 / 2.0;
    for l in [1usize, 2, 3, 4, 6, 8, 16] {
        let mut s = format!("#   L {l:>2}:");
        for &eps in &EPSILONS {
            let d = dummies(eps, l);
            let _ = write!(
                s,
                "  eps {eps}: d {d:6.1} floor {:>10.0}",
                4.0 * nmean * l as f64 * d
            );
        }
        println!("{s}");
    }

    let mut rows: Vec<Row> = Vec::new();
    let push = |rows: &mut Vec<Row>, scheme: &str, setting: String, asg: &Assign| {
        rows.push(measure(scheme, setting, asg, &gold));
    };

    // 1. SimHash: L tables of b hyperplane bits on the centred vectors.
    {
        let (tables, bits) = (16usize, 16usize);
        let h = gaussian(seed ^ 0x51, tables * bits, a.w);
        let (pa_, pb_) = (
            matmul(&a.cen, a.n, &h, tables * bits, a.w),
            matmul(&b.cen, b.n, &h, tables * bits, b.w),
        );
        for &l in &[1usize, 2, 3, 4, 6, 8, 12, 16] {
            for bb in 2..=14usize {
                let code = |p: &[f32], n: usize| -> Vec<Vec<u32>> {
                    (0..n)
                        .map(|r| {
                            let row = &p[r * tables * bits..(r + 1) * tables * bits];
                            (0..l)
                                .map(|t| {
                                    let c = (0..bb).fold(0u32, |c, i| {
                                        (c << 1) | (row[t * bits + i] > 0.0) as u32
                                    });
                                    ((t << bb) as u32) | c
                                })
                                .collect()
                        })
                        .collect()
                };
                let asg = Assign {
                    a: code(&pa_, a.n),
                    b: code(&pb_, b.n),
                    domain: l << bb,
                };
                push(&mut rows, "simhash", format!("L={l} b={bb}"), &asg);
            }
        }
        eprintln!("[{:6.1}s] simhash done", t0.elapsed().as_secs_f64());
    }

    // 2. Multi-probe nearest centroid: C random unit centroids, each entity to its L nearest.
    let ls = [1usize, 2, 3, 4, 6, 8];
    {
        let cmax = 2048;
        let c = gaussian(seed ^ 0xc3, cmax, a.w);
        let (sa_, sb_) = (
            matmul(&a.cen, a.n, &c, cmax, a.w),
            matmul(&b.cen, b.n, &c, cmax, b.w),
        );
        for &cc in &[8usize, 16, 32, 64, 128, 256, 512, 1024, 2048] {
            let (ta, tb) = (top_l(&sa_, a.n, cmax, cc, 8), top_l(&sb_, b.n, cmax, cc, 8));
            for &l in &ls {
                let asg = Assign {
                    a: prefix(&ta, l),
                    b: prefix(&tb, l),
                    domain: cc,
                };
                push(&mut rows, "centroid", format!("C={cc} L={l}"), &asg);
            }
        }
        eprintln!("[{:6.1}s] centroids done", t0.elapsed().as_secs_f64());
    }

    // 3. Cross-polytope LSH: per table a random Gaussian projection to m dimensions, the
    // bucket is the signed coordinate of largest magnitude (2m buckets per table), L tables.
    {
        let ms = [4usize, 8, 16, 32, 64, 128, 256];
        let tables = 8usize;
        let total: usize = ms.iter().sum::<usize>() * tables;
        let g = gaussian(seed ^ 0xc9, total, a.w);
        let (pa_, pb_) = (
            matmul(&a.cen, a.n, &g, total, a.w),
            matmul(&b.cen, b.n, &g, total, b.w),
        );
        let mut off = 0;
        for &m in &ms {
            let code = |p: &[f32], n: usize, l: usize| -> Vec<Vec<u32>> {
                (0..n)
                    .map(|r| {
                        let row = &p[r * total..(r + 1) * total];
                        let mut v: Vec<u32> = (0..l)
                            .map(|t| {
                                let s = &row[off + t * m..off + (t + 1) * m];
                                let (i, x) = s
                                    .iter()
                                    .enumerate()
                                    .max_by(|x, y| x.1.abs().total_cmp(&y.1.abs()))
                                    .expect("m > 0");
                                (t * 2 * m + 2 * i + (*x < 0.0) as usize) as u32
                            })
                            .collect();
                        v.sort_unstable();
                        v
                    })
                    .collect()
            };
            for &l in &[1usize, 2, 3, 4, 6, 8] {
                let asg = Assign {
                    a: code(&pa_, a.n, l),
                    b: code(&pb_, b.n, l),
                    domain: l * 2 * m,
                };
                push(&mut rows, "crosspolytope", format!("m={m} L={l}"), &asg);
            }
            off += m * tables;
        }
        eprintln!("[{:6.1}s] cross-polytope done", t0.elapsed().as_secs_f64());
    }

    if !opaque {
        // 4. MinHash banding on the keyed own-name tokens: L bands of r hashes, each band
        // hashed into B buckets.
        let (bands, per) = (16usize, 4usize);
        let salts: Vec<u64> = (0..bands * per)
            .map(|i| hash64(&[b"minhash", &seed.to_le_bytes(), &(i as u64).to_le_bytes()]))
            .collect();
        let mins = |t: &[Vec<u64>]| -> Vec<Vec<u64>> {
            t.par_iter()
                .map(|toks| {
                    salts
                        .iter()
                        .map(|&s| toks.iter().map(|&x| mix(x ^ s)).min().unwrap_or(u64::MAX))
                        .collect()
                })
                .collect()
        };
        let (ma, mb) = (mins(&a.tokens), mins(&b.tokens));
        for r in 1..=per {
            for &l in &[1usize, 2, 4, 8, 16] {
                for &bk in &[64usize, 256, 1024, 4096, 16384] {
                    let code = |m: &[Vec<u64>], t: &[Vec<u64>]| band_codes(m, t, l, per, r, bk);
                    let asg = Assign {
                        a: code(&ma, &a.tokens),
                        b: code(&mb, &b.tokens),
                        domain: l * bk,
                    };
                    push(&mut rows, "minhash", format!("r={r} L={l} B={bk}"), &asg);
                }
            }
        }
        eprintln!("[{:6.1}s] minhash done", t0.elapsed().as_secs_f64());

        // 6a. Rarest own tokens: each entity to the buckets of its L tokens that are rarest in
        // its own party's rows (document frequency on the own side only), hashed into B.
        let (ra, rb) = (by_own_df(&a.tokens), by_own_df(&b.tokens));
        for &l in &[1usize, 2, 3, 4, 6, 8] {
            for &bk in &[256usize, 1024, 4096, 16384, 65536] {
                let code = |r: &[Vec<u64>]| rare_codes(r, l, seed, bk);
                let asg = Assign {
                    a: code(&ra),
                    b: code(&rb),
                    domain: bk,
                };
                push(&mut rows, "rare-tokens", format!("L={l} B={bk}"), &asg);
            }
        }

        // 6c. Rarest own tokens plus rarest neighbour-name tokens (today's blocking ranks by
        // both): each entity to the buckets of its Lo rarest own and Ln rarest neighbour tokens
        // (own-side document frequencies), own and neighbour tables side by side.
        let share = |x: &[Vec<u64>], y: &[Vec<u64>]| {
            gold.iter()
                .filter(|&&(ra, rb)| x[ra].iter().any(|t| y[rb].binary_search(t).is_ok()))
                .count() as f64
                / gold.len().max(1) as f64
        };
        let (nba, nbb) = (&pa.tokens.neighbour, &pb.tokens.neighbour);
        println!(
            "# token ceilings: gold pairs sharing an own token {:.4}, a neighbour token {:.4}",
            share(&a.tokens, &b.tokens),
            share(nba, nbb)
        );
        let (qa, qb) = (by_own_df(nba), by_own_df(nbb));
        for &lo in &[1usize, 2, 3] {
            for &ln in &[1usize, 2, 3] {
                for &bk in &[256usize, 1024, 4096] {
                    let code = |r: &[Vec<u64>], l: usize| -> Vec<Vec<u32>> {
                        r.iter()
                            .map(|t| {
                                let mut v: Vec<u32> = t
                                    .iter()
                                    .take(l)
                                    .map(|&x| (mix(x ^ seed) % bk as u64) as u32)
                                    .collect();
                                v.sort_unstable();
                                v.dedup();
                                v
                            })
                            .collect()
                    };
                    let asg = combine(
                        &code(&ra, lo),
                        &code(&rb, lo),
                        bk,
                        &code(&qa, ln),
                        &code(&qb, ln),
                        bk,
                    );
                    push(
                        &mut rows,
                        "rare-own+nbr",
                        format!("Lo={lo} Ln={ln} B={bk}"),
                        &asg,
                    );
                }
            }
        }

        // 6b. Exact normalised name (keyed hash into B buckets), alone and as one copy next to
        // L - 1 copies of the best fuzzy schemes.
        let name_code = |s: &Side, bk: usize| -> Vec<Vec<u32>> {
            s.names
                .iter()
                .map(|n| {
                    if n.is_empty() {
                        Vec::new()
                    } else {
                        vec![(hash64(&[&seed.to_le_bytes(), n.as_bytes()]) % bk as u64) as u32]
                    }
                })
                .collect()
        };
        for &bk in &[64usize, 128, 256, 512, 1024, 2048, 4096, 16384] {
            let asg = Assign {
                a: name_code(&a, bk),
                b: name_code(&b, bk),
                domain: bk,
            };
            push(&mut rows, "name", format!("B={bk}"), &asg);
        }
        // Combinations: name table + rare tokens, name table + minhash.
        for &bn in &[128usize, 256, 512, 1024] {
            let (na, nb) = (name_code(&a, bn), name_code(&b, bn));
            for &l in &[1usize, 2, 3] {
                for &bk in &[256usize, 1024, 4096, 16384] {
                    let code = |r: &[Vec<u64>]| rare_codes(r, l, seed, bk);
                    let asg = combine(&na, &nb, bn, &code(&ra), &code(&rb), bk);
                    push(
                        &mut rows,
                        "name+rare",
                        format!("Bn={bn} L={} B={bk}", l + 1),
                        &asg,
                    );
                }
            }
            for r in 1..=2 {
                for &l in &[1usize, 2, 3] {
                    for &bk in &[256usize, 1024, 4096] {
                        let code = |m: &[Vec<u64>], t: &[Vec<u64>]| band_codes(m, t, l, per, r, bk);
                        let asg = combine(
                            &na,
                            &nb,
                            bn,
                            &code(&ma, &a.tokens),
                            &code(&mb, &b.tokens),
                            l * bk,
                        );
                        push(
                            &mut rows,
                            "name+minhash",
                            format!("Bn={bn} r={r} L={} B={bk}", l + 1),
                            &asg,
                        );
                    }
                }
            }
        }
        eprintln!("[{:6.1}s] name schemes done", t0.elapsed().as_secs_f64());
    }

    if known_links {
        // 5a. Anchors as shared centroids: the first C known links (agreed order); each entity
        // to the L anchors whose own-side vectors are nearest (cosine of centred vectors).
        let na = ka.len();
        let (sa_, sb_) = (
            matmul(&a.cen, a.n, &a.anchors, na, a.w),
            matmul(&b.cen, b.n, &b.anchors, na, b.w),
        );
        for &cc in &[32usize, 64, 128, 256, 512, 1024, 2048, 4500] {
            let cc = cc.min(na);
            let (ta, tb) = (top_l(&sa_, a.n, na, cc, 8), top_l(&sb_, b.n, na, cc, 8));
            for &l in &ls {
                let asg = Assign {
                    a: prefix(&ta, l),
                    b: prefix(&tb, l),
                    domain: cc,
                };
                push(&mut rows, "anchor-vec", format!("C={cc} L={l}"), &asg);
            }
        }
        // 5b. Anchors by graph walk (today's anchor tokens): the L nearest of all anchors.
        for &l in &ls {
            for g in [na, 2048, 1024, 512, 256] {
                let asg = Assign {
                    a: fold(&prefix(&a.anchor_graph, l), g),
                    b: fold(&prefix(&b.anchor_graph, l), g),
                    domain: g,
                };
                push(&mut rows, "anchor-graph", format!("G={g} L={l}"), &asg);
            }
        }
        // 5c. Anchors by the anchor-propagation block of z alone (the last anchor_len entries).
        let al = params.model.anchor_len();
        let (ca, cb) = (tail_cols(&a.cen, a.w, al), tail_cols(&b.cen, b.w, al));
        let (xa, xb) = (
            tail_cols(&a.anchors, a.w, al),
            tail_cols(&b.anchors, b.w, al),
        );
        let (sa_, sb_) = (matmul(&ca, a.n, &xa, na, al), matmul(&cb, b.n, &xb, na, al));
        let (va, vb) = (top_l(&sa_, a.n, na, na, 8), top_l(&sb_, b.n, na, na, 8));
        for &l in &ls {
            let asg = Assign {
                a: prefix(&va, l),
                b: prefix(&vb, l),
                domain: na,
            };
            push(&mut rows, "anchor-blk", format!("C={na} L={l}"), &asg);
        }
        // 5d. Union, in the same anchor domain, of the Lg nearest anchors by graph walk and the
        // Lv nearest by the anchor block (an entity's copies are the distinct anchors).
        for lg in 1..=4usize {
            for lv in 1..=3usize {
                let union = |g: &[Vec<u32>], v: &[Vec<u32>]| -> Vec<Vec<u32>> {
                    g.iter()
                        .zip(v)
                        .map(|(g, v)| {
                            let mut u: Vec<u32> = g
                                .iter()
                                .take(lg)
                                .chain(v.iter().take(lv))
                                .copied()
                                .collect();
                            u.sort_unstable();
                            u.dedup();
                            u
                        })
                        .collect()
                };
                let (ua, ub) = (union(&a.anchor_graph, &va), union(&b.anchor_graph, &vb));
                // Folding: anchors grouped into G buckets (anchor index mod G, public), which
                // keeps every shared anchor and trades dummies (G d^2) for real pairs.
                for g in [na, 2048, 1024, 512, 256] {
                    let asg = Assign {
                        a: fold(&ua, g),
                        b: fold(&ub, g),
                        domain: g,
                    };
                    push(
                        &mut rows,
                        "anchor-graph+blk",
                        format!("G={g} Lg={lg} Lv={lv}"),
                        &asg,
                    );
                }
            }
        }
        eprintln!("[{:6.1}s] anchors done", t0.elapsed().as_secs_f64());
    }

    // Output: every setting, then per scheme the Pareto fronts and the best within budgets.
    let mut all = String::new();
    let _ = writeln!(
        all,
        "scheme\tsetting\tL\tbuckets\trecall\treal_pairs\tmax_size\tp99_size\td_eps0.5\td_eps1\td_eps2\td_eps4\tpadded_eps0.5\tpadded_eps1\tpadded_eps2\tpadded_eps4"
    );
    for r in &rows {
        let _ = writeln!(
            all,
            "{}\t{}\t{}\t{}\t{:.4}\t{}\t{}\t{}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{:.0}\t{:.0}\t{:.0}\t{:.0}",
            r.scheme,
            r.setting,
            r.copies,
            r.domain,
            r.recall,
            r.real,
            r.max_size,
            r.p99_size,
            r.dummies[0],
            r.dummies[1],
            r.dummies[2],
            r.dummies[3],
            r.padded[0],
            r.padded[1],
            r.padded[2],
            r.padded[3]
        );
    }
    if let Some(p) = &tsv {
        std::fs::write(p, &all).unwrap_or_else(|e| die(&format!("{}: {e}", p.display())));
    } else {
        print!("{all}");
    }
    let mut schemes: Vec<String> = Vec::new();
    for r in &rows {
        if !schemes.contains(&r.scheme) {
            schemes.push(r.scheme.clone());
        }
    }
    for (ei, eps) in [(1usize, 1.0), (3, 4.0)] {
        println!(
            "\n## Pareto front, recall vs padded pairs at eps {eps} (also: real pairs, padded at eps 1 and 4)"
        );
        for s in schemes.iter().map(String::as_str).chain(["ALL"]) {
            let mut pts: Vec<&Row> = rows
                .iter()
                .filter(|r| s == "ALL" || r.scheme == s)
                .collect();
            pts.sort_by(|x, y| {
                x.padded[ei]
                    .total_cmp(&y.padded[ei])
                    .then(y.recall.total_cmp(&x.recall))
            });
            let mut best = -1.0;
            for r in pts {
                if r.recall > best {
                    best = r.recall;
                    println!(
                        "{s:<14} {:<14} {:<26} L {:>2} recall {:.4} real {:>11} padded@1 {:>12.0} padded@4 {:>12.0}",
                        r.scheme, r.setting, r.copies, r.recall, r.real, r.padded[1], r.padded[3]
                    );
                }
            }
        }
    }
    println!("\n## Best recall within budget (padded pairs, expected)");
    for (ei, eps) in EPSILONS.iter().enumerate() {
        for budget in [today as f64, 2.0 * today as f64, 4.0 * today as f64] {
            let mut s = format!("eps {eps:<3} budget {budget:>10.0}:");
            for sc in &schemes {
                let best = rows
                    .iter()
                    .filter(|r| &r.scheme == sc && r.padded[ei] <= budget)
                    .max_by(|x, y| x.recall.total_cmp(&y.recall));
                match best {
                    Some(r) => {
                        let _ = write!(s, " {sc} {:.4} ({});", r.recall, r.setting);
                    }
                    None => {
                        let _ = write!(s, " {sc} -;");
                    }
                }
            }
            println!("{s}");
        }
    }
    for budget in [today as f64, 2.0 * today as f64, 4.0 * today as f64] {
        let mut s = format!("no padding (eps = inf), real pairs <= {budget:>10.0}:");
        for sc in &schemes {
            let best = rows
                .iter()
                .filter(|r| &r.scheme == sc && r.real as f64 <= budget)
                .max_by(|x, y| x.recall.total_cmp(&y.recall));
            match best {
                Some(r) => {
                    let _ = write!(s, " {sc} {:.4} ({});", r.recall, r.setting);
                }
                None => {
                    let _ = write!(s, " {sc} -;");
                }
            }
        }
        println!("{s}");
    }
    println!("\n## Highest recall reached by any setting (whatever the cost)");
    for sc in &schemes {
        if let Some(r) = rows
            .iter()
            .filter(|r| &r.scheme == sc)
            .max_by(|x, y| x.recall.total_cmp(&y.recall))
        {
            println!(
                "{sc:<14} {:<26} recall {:.4} real {:>11} padded@1 {:>12.0} padded@4 {:>12.0}",
                r.setting, r.recall, r.real, r.padded[1], r.padded[3]
            );
        }
    }
    eprintln!("[{:6.1}s] done", t0.elapsed().as_secs_f64());
}

/// The rows' vectors, tokens, names and anchor data of one side.
fn build_side(
    g: &Graph,
    z: &[f64],
    w: usize,
    rows: &[u32],
    known: &[u32],
    tokens: &[Vec<u64>],
    known_links: bool,
) -> Side {
    let n = rows.len();
    let pick = |es: &[u32]| -> Vec<f32> {
        es.iter()
            .flat_map(|&e| {
                z[e as usize * w..(e as usize + 1) * w]
                    .iter()
                    .map(|&x| x as f32)
            })
            .collect()
    };
    let mut raw = pick(rows);
    let mut mean = vec![0f32; w];
    for r in raw.chunks_exact(w) {
        for (m, x) in mean.iter_mut().zip(r) {
            *m += x / n as f32;
        }
    }
    let centre = |v: &mut [f32]| {
        for r in v.chunks_exact_mut(w) {
            for (x, m) in r.iter_mut().zip(&mean) {
                *x -= m;
            }
            normalise(r);
        }
    };
    let mut cen = raw.clone();
    centre(&mut cen);
    let mut anchors = pick(known);
    centre(&mut anchors);
    for r in raw.chunks_exact_mut(w) {
        normalise(r);
    }
    let names = if names_look_opaque(g) {
        vec![String::new(); n]
    } else {
        rows.iter()
            .map(|&e| words(&g.names[e as usize]).join(" "))
            .collect()
    };
    let anchor_graph = if known_links {
        let near = nearest_anchors(g, known, 8);
        rows.iter().map(|&e| near[e as usize].clone()).collect()
    } else {
        Vec::new()
    };
    Side {
        n,
        w,
        raw,
        cen,
        tokens: tokens.to_vec(),
        names,
        anchors,
        anchor_graph,
    }
}

/// Bucket ids folded into `g` buckets (id mod g), sorted and distinct.
fn fold(t: &[Vec<u32>], g: usize) -> Vec<Vec<u32>> {
    t.iter()
        .map(|v| {
            let mut f: Vec<u32> = v.iter().map(|&x| x % g as u32).collect();
            f.sort_unstable();
            f.dedup();
            f
        })
        .collect()
}

/// The last `k` columns of each row (`w` wide), L2-normalised.
fn tail_cols(v: &[f32], w: usize, k: usize) -> Vec<f32> {
    let mut out: Vec<f32> = v
        .chunks_exact(w)
        .flat_map(|r| r[w - k..].iter().copied())
        .collect();
    for r in out.chunks_exact_mut(k) {
        normalise(r);
    }
    out
}

/// Each row's tokens, rarest first by document frequency over this party's own rows.
fn by_own_df(tokens: &[Vec<u64>]) -> Vec<Vec<u64>> {
    let mut df: HashMap<u64, u32> = HashMap::new();
    for t in tokens {
        for &x in t {
            *df.entry(x).or_default() += 1;
        }
    }
    tokens
        .iter()
        .map(|t| {
            let mut v: Vec<(u32, u64)> = t.iter().map(|&x| (df[&x], x)).collect();
            v.sort_unstable();
            v.into_iter().map(|x| x.1).collect()
        })
        .collect()
}

/// Gold test links as (row of A, row of B).
fn gold_rows(ds: &Dataset, ra: &[u32], rb: &[u32]) -> Vec<(usize, usize)> {
    let ia: HashMap<u32, usize> = ra.iter().enumerate().map(|(r, &e)| (e, r)).collect();
    let ib: HashMap<u32, usize> = rb.iter().enumerate().map(|(r, &e)| (e, r)).collect();
    ds.test
        .iter()
        .filter_map(|(a, b)| Some((*ia.get(a)?, *ib.get(b)?)))
        .collect()
}

fn normalise(v: &mut [f32]) {
    let s: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if s > 0.0 {
        v.iter_mut().for_each(|x| *x /= s);
    }
}

/// SplitMix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `count` unit vectors of dimension `w` with Gaussian entries (shared seed).
fn gaussian(seed: u64, count: usize, w: usize) -> Vec<f32> {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    let mut prg = Prg::new(&Seed(s), 0x5eed);
    let mut u = || ((prg.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let mut v: Vec<f32> = (0..count * w)
        .map(|_| {
            let (a, b) = (u(), u());
            ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
        })
        .collect();
    for r in v.chunks_exact_mut(w) {
        normalise(r);
    }
    v
}

fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xc.zip(yc) {
        let a: &[f32; 8] = a.try_into().expect("8 lanes");
        let b: &[f32; 8] = b.try_into().expect("8 lanes");
        for ((s, p), q) in acc.iter_mut().zip(a).zip(b) {
            *s += p * q;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `x (nx x w) * y^T (ny x w)`, row-major `nx x ny`, blocked for the cache.
fn matmul(x: &[f32], nx: usize, y: &[f32], ny: usize, w: usize) -> Vec<f32> {
    assert_eq!(x.len(), nx * w);
    let mut out = vec![0f32; nx * ny];
    const BX: usize = 32;
    out.par_chunks_mut(BX * ny).enumerate().for_each(|(bi, o)| {
        let rows = o.len() / ny;
        for j in 0..ny {
            let yj = &y[j * w..(j + 1) * w];
            for i in 0..rows {
                let r = bi * BX + i;
                o[i * ny + j] = dot(&x[r * w..(r + 1) * w], yj);
            }
        }
    });
    out
}

/// For each gold pair, the rank (0-based) of B's gold row among all B rows by cosine from A's
/// row (ties count against it).
fn cosine_ranks(a: &Side, b: &Side, gold: &[(usize, usize)]) -> Vec<usize> {
    let w = a.w;
    const BX: usize = 32;
    gold.par_chunks(BX)
        .flat_map_iter(|chunk| {
            let mut s = vec![0f32; chunk.len() * b.n];
            for j in 0..b.n {
                let yj = &b.raw[j * w..(j + 1) * w];
                for (i, &(ra, _)) in chunk.iter().enumerate() {
                    s[i * b.n + j] = dot(&a.raw[ra * w..(ra + 1) * w], yj);
                }
            }
            chunk
                .iter()
                .enumerate()
                .map(|(i, &(_, rb))| {
                    let row = &s[i * b.n..(i + 1) * b.n];
                    let v = row[rb];
                    row.iter()
                        .enumerate()
                        .filter(|&(j, &x)| x > v || (x == v && j < rb))
                        .count()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Per row, the indices of the `keep` largest of the first `c` columns of `s` (`n x stride`).
fn top_l(s: &[f32], n: usize, stride: usize, c: usize, keep: usize) -> Vec<Vec<u32>> {
    (0..n)
        .into_par_iter()
        .map(|r| {
            let row = &s[r * stride..r * stride + c];
            let mut idx: Vec<u32> = (0..c as u32).collect();
            let keep = keep.min(c);
            idx.select_nth_unstable_by(keep - 1, |&x, &y| {
                row[y as usize].total_cmp(&row[x as usize])
            });
            idx.truncate(keep);
            idx.sort_by(|&x, &y| row[y as usize].total_cmp(&row[x as usize]));
            idx
        })
        .collect()
}

/// The first `l` of each list, sorted.
fn prefix(t: &[Vec<u32>], l: usize) -> Vec<Vec<u32>> {
    t.iter()
        .map(|v| {
            let mut p: Vec<u32> = v.iter().take(l).copied().collect();
            p.sort_unstable();
            p
        })
        .collect()
}

/// Two tables side by side (the second's ids offset by the first's domain).
fn combine(
    a1: &[Vec<u32>],
    b1: &[Vec<u32>],
    d1: usize,
    a2: &[Vec<u32>],
    b2: &[Vec<u32>],
    d2: usize,
) -> Assign {
    let join = |x: &[Vec<u32>], y: &[Vec<u32>]| -> Vec<Vec<u32>> {
        x.iter()
            .zip(y)
            .map(|(p, q)| {
                p.iter()
                    .copied()
                    .chain(q.iter().map(|&v| v + d1 as u32))
                    .collect()
            })
            .collect()
    };
    Assign {
        a: join(a1, a2),
        b: join(b1, b2),
        domain: d1 + d2,
    }
}

/// Expected dummies per bucket: `E[max(0, k0 + eta)]`, `eta` two-sided geometric with
/// `alpha = exp(-eps / L)`, `k0` the least shift with `P(k0 + eta < 0) <= DELTA`.
fn dummies(eps: f64, l: usize) -> f64 {
    let a = (-eps / l as f64).exp();
    // P(eta <= -(k + 1)) = a^(k + 1) / (1 + a).
    let k = ((DELTA * (1.0 + a)).ln() / a.ln()).ceil() - 1.0;
    let k = k.max(0.0);
    k + a.powf(k + 1.0) / ((1.0 + a) * (1.0 - a))
}

fn measure(scheme: &str, setting: String, asg: &Assign, gold: &[(usize, usize)]) -> Row {
    let mut na = vec![0u32; asg.domain];
    let mut nb = vec![0u32; asg.domain];
    let mut copies = 0;
    for v in &asg.a {
        copies = copies.max(v.len());
        for &x in v {
            na[x as usize] += 1;
        }
    }
    for v in &asg.b {
        copies = copies.max(v.len());
        for &x in v {
            nb[x as usize] += 1;
        }
    }
    let hit = gold
        .iter()
        .filter(|&&(ra, rb)| {
            let (p, q) = (&asg.a[ra], &asg.b[rb]);
            p.iter().any(|x| q.contains(x))
        })
        .count();
    let real: u64 = na.iter().zip(&nb).map(|(&x, &y)| x as u64 * y as u64).sum();
    let (sa, sb): (u64, u64) = (
        na.iter().map(|&x| x as u64).sum(),
        nb.iter().map(|&x| x as u64).sum(),
    );
    let mut sizes: Vec<u32> = na.iter().chain(&nb).copied().collect();
    sizes.sort_unstable();
    let p99 = sizes[((sizes.len() as f64 * 0.99) as usize).min(sizes.len() - 1)];
    let mut dummies_ = [0.0; 4];
    let mut padded = [0.0; 4];
    for (i, &eps) in EPSILONS.iter().enumerate() {
        let d = dummies(eps, copies.max(1));
        dummies_[i] = d;
        padded[i] = real as f64 + d * (sa + sb) as f64 + asg.domain as f64 * d * d;
    }
    Row {
        scheme: scheme.to_string(),
        setting,
        copies,
        domain: asg.domain,
        recall: hit as f64 / gold.len().max(1) as f64,
        real,
        max_size: *sizes.last().unwrap_or(&0),
        p99_size: p99,
        dummies: dummies_,
        padded,
    }
}
