//! Plaintext study for the dealer-free bilinear form (issue 9): how many ring-LWE blocks the
//! candidate pairs of a real job touch, in the parties' shuffled row order and after the
//! servers reorder both sides' rows so that each group's candidates fall in few chunks; and the
//! blocks of the slot products, which follow the pairs. No MPC.
//!
//! ```text
//! cargo run --release --example he_layout_study -- ../shared/data/dbp15k_fr_en [--seed N]
//! ```
//!
//! The candidate lists are today's token blocking (`JobParams::default()`, standard protocol,
//! test split, key and shuffles from `seeded(seed)`), both sides' lists, as the job scores them.
//! The servers know this candidate graph (section 5 of design.md), so a permutation of the rows
//! computed from it reveals nothing new. The reordering here is recursive spectral
//! co-clustering: the second singular vectors of the normalised bipartite adjacency order both
//! sides, each side is cut at its median, and each half is ordered the same way, down to halves
//! of 64 rows.

use ppea::eval::evaluate::{EVAL_JOB, EvalProtocol, Split, scopes, seeded};
use ppea::model::align::{JobParams, job_seed, prepare_party_known};
use ppea::model::blocking::candidates;
use ppea::model::import::{Format, load};
use ppea::mpc::he::orient::orient;
use ppea::mpc::he::product::Layout;
use ppea::mpc::he::slots::SlotPlan;
use ppea::mpc::pairs::Pairs;
use std::path::PathBuf;

fn die(m: &str) -> ! {
    eprintln!("he_layout_study: {m}");
    std::process::exit(2)
}

/// Orders `a_rows` and `b_rows` (subsets of the two sides) by recursive spectral co-clustering
/// of the pairs among them, appending the orders to `out_a` and `out_b`.
fn order(
    pairs: &[(u32, u32)],
    a_rows: Vec<u32>,
    b_rows: Vec<u32>,
    na: usize,
    nb: usize,
    out_a: &mut Vec<u32>,
    out_b: &mut Vec<u32>,
) {
    const LEAF: usize = 64;
    if a_rows.len() <= LEAF && b_rows.len() <= LEAF || pairs.is_empty() {
        out_a.extend(a_rows);
        out_b.extend(b_rows);
        return;
    }
    // Local indices.
    let mut ia = vec![u32::MAX; na];
    let mut ib = vec![u32::MAX; nb];
    for (k, &r) in a_rows.iter().enumerate() {
        ia[r as usize] = k as u32;
    }
    for (k, &r) in b_rows.iter().enumerate() {
        ib[r as usize] = k as u32;
    }
    let (la, lb) = (a_rows.len(), b_rows.len());
    let mut da = vec![0f64; la];
    let mut db = vec![0f64; lb];
    for &(i, j) in pairs {
        da[ia[i as usize] as usize] += 1.0;
        db[ib[j as usize] as usize] += 1.0;
    }
    let sa: Vec<f64> = da.iter().map(|d| 1.0 / d.max(1.0).sqrt()).collect();
    let sb: Vec<f64> = db.iter().map(|d| 1.0 / d.max(1.0).sqrt()).collect();
    // Trivial singular vector (square roots of the degrees), to project out.
    let ta: Vec<f64> = da.iter().map(|d| d.sqrt()).collect();
    let tn = ta.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
    let mut u: Vec<f64> = (0..la)
        .map(|k| {
            ((k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) as f64 / (1u64 << 53) as f64
                - 0.5
        })
        .collect();
    let mut v = vec![0f64; lb];
    for _ in 0..30 {
        let dot: f64 = u.iter().zip(&ta).map(|(x, t)| x * t).sum::<f64>() / (tn * tn);
        for (x, t) in u.iter_mut().zip(&ta) {
            *x -= dot * t;
        }
        v.iter_mut().for_each(|x| *x = 0.0);
        for &(i, j) in pairs {
            let (i, j) = (ia[i as usize] as usize, ib[j as usize] as usize);
            v[j] += sa[i] * u[i] * sb[j];
        }
        u.iter_mut().for_each(|x| *x = 0.0);
        for &(i, j) in pairs {
            let (i, j) = (ia[i as usize] as usize, ib[j as usize] as usize);
            u[i] += sa[i] * v[j] * sb[j];
        }
        let n = u.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
        u.iter_mut().for_each(|x| *x /= n);
    }
    let mut oa: Vec<usize> = (0..la).collect();
    let mut ob: Vec<usize> = (0..lb).collect();
    oa.sort_by(|&x, &y| u[x].total_cmp(&u[y]));
    ob.sort_by(|&x, &y| v[x].total_cmp(&v[y]));
    let (a0, a1) = oa.split_at(la / 2);
    let (b0, b1) = ob.split_at(lb / 2);
    let lo_a: Vec<u32> = a0.iter().map(|&k| a_rows[k]).collect();
    let hi_a: Vec<u32> = a1.iter().map(|&k| a_rows[k]).collect();
    let lo_b: Vec<u32> = b0.iter().map(|&k| b_rows[k]).collect();
    let hi_b: Vec<u32> = b1.iter().map(|&k| b_rows[k]).collect();
    let mut in_lo_a = vec![false; na];
    let mut in_lo_b = vec![false; nb];
    lo_a.iter().for_each(|&r| in_lo_a[r as usize] = true);
    lo_b.iter().for_each(|&r| in_lo_b[r as usize] = true);
    // Pairs within each half (pairs across the cut are left to fall where they fall).
    let (mut p0, mut p1) = (Vec::new(), Vec::new());
    for &(i, j) in pairs {
        match (in_lo_a[i as usize], in_lo_b[j as usize]) {
            (true, true) => p0.push((i, j)),
            (false, false) => p1.push((i, j)),
            _ => {}
        }
    }
    order(&p0, lo_a, lo_b, na, nb, out_a, out_b);
    order(&p1, hi_a, hi_b, na, nb, out_a, out_b);
}

fn report(what: &str, pairs: &[(u32, u32)], na: usize, nb: usize, d: usize) {
    let (rows, cols): (Vec<u32>, Vec<u32>) = pairs.iter().copied().unzip();
    let p = Pairs::list(na, nb, rows, cols).unwrap_or_else(|e| die(&e.to_string()));
    let lay = Layout::new(&p, d).unwrap_or_else(|e| die(&e.to_string()));
    let dense = Layout::with_group(&Pairs::dense(na, nb), d, lay.group);
    let mb = |w: u64| w as f64 * 8.0 / 1e6;
    println!(
        "{what}: group {} chunk {} | blocks {} of {} dense | chunks {} | ciphertexts in {:.0} MB, back {:.0} MB | multiply-adds {:.2e}",
        lay.group,
        lay.chunk,
        lay.blocks.len(),
        dense.blocks.len(),
        lay.chunks.len(),
        mb(lay.words_in()),
        mb(lay.words_back()),
        lay.multiply_adds() as f64
    );
    let per_g: Vec<String> = (0..=6)
        .map(|e| {
            let g = 1usize << e;
            let l = Layout::with_group(&p, d, g);
            let dense = na.div_ceil(g) * nb.div_ceil(l.chunk);
            format!("g {g}: {} / {dense}", l.blocks.len())
        })
        .collect();
    println!("  blocks touched / dense, by group: {}", per_g.join(" | "));
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| die("usage: DATASET [--seed N]")),
    );
    let mut seed = 1u64;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seed" => {
                seed = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| die("--seed N"))
            }
            other => die(&format!("unknown argument {other}")),
        }
    }
    let format = Format::detect(&dir).unwrap_or(Format::Dbp15k);
    let ds = load(&dir, format).unwrap_or_else(|e| die(&e.to_string()));
    let params = JobParams::default();
    let (sa, sb) = scopes(&ds, EvalProtocol::Standard, Split::Test);
    let (key, mut sh_a, mut sh_b) = seeded(seed);
    let pa = prepare_party_known(&ds.a, &sa, &[], &params, &key, &mut sh_a)
        .unwrap_or_else(|e| die(&e.to_string()));
    let pb = prepare_party_known(&ds.b, &sb, &[], &params, &key, &mut sh_b)
        .unwrap_or_else(|e| die(&e.to_string()));
    let cand = candidates(
        &pa.tokens,
        &pb.tokens,
        &params.blocking,
        &job_seed(EVAL_JOB),
    );
    let (na, nb, k) = (pa.rows.len(), pb.rows.len(), cand.per_row);
    let mut pairs: Vec<(u32, u32)> = Vec::with_capacity((na + nb) * k);
    for i in 0..na {
        pairs.extend(cand.a[i * k..(i + 1) * k].iter().map(|&j| (i as u32, j)));
    }
    for j in 0..nb {
        pairs.extend(cand.b[j * k..(j + 1) * k].iter().map(|&i| (i, j as u32)));
    }
    pairs.sort_unstable();
    pairs.dedup();
    let d = params.model.width();
    println!(
        "# {} | rows A {na} B {nb} | {k} candidates per row | {} distinct pairs | width {d} | seed {seed}",
        dir.display(),
        pairs.len()
    );
    report("shuffled order", &pairs, na, nb, d);
    let (mut oa, mut ob) = (Vec::with_capacity(na), Vec::with_capacity(nb));
    order(
        &pairs,
        (0..na as u32).collect(),
        (0..nb as u32).collect(),
        na,
        nb,
        &mut oa,
        &mut ob,
    );
    let mut pos_a = vec![0u32; na];
    let mut pos_b = vec![0u32; nb];
    for (p, &r) in oa.iter().enumerate() {
        pos_a[r as usize] = p as u32;
    }
    for (p, &r) in ob.iter().enumerate() {
        pos_b[r as usize] = p as u32;
    }
    let re: Vec<(u32, u32)> = pairs
        .iter()
        .map(|&(i, j)| (pos_a[i as usize], pos_b[j as usize]))
        .collect();
    report("spectral co-clustering", &re, na, nb, d);
    // The slot products (`mpc::he::slots`) follow the pairs: their cost is the plan's blocks
    // times the width, whatever the order.
    let items = orient(na, nb, pairs.iter().map(|&(i, j)| (i as usize, j as usize)));
    let plan = SlotPlan::new(na + nb, d, &items).unwrap_or_else(|e| die(&e.to_string()));
    println!(
        "slot products: {} blocks (at most {} rounds) | {} plaintexts per evaluator | \
         ciphertexts in {:.0} MB, back {:.0} MB",
        plan.blocks(),
        plan.max_rounds(),
        plan.plaintexts(),
        plan.words_in() as f64 * 8.0 / 1e6,
        plan.words_back() as f64 * 8.0 / 1e6
    );
}
