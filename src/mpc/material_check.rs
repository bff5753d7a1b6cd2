//! Test support: the true values of a request's material from every server's shares, and the
//! check that they satisfy the dealer's relations. Every correlation source's tests use it, so
//! each source is held to the same definition of right material.

use crate::error::{Error, Result};
use crate::mpc::channel::memory_network;
use crate::mpc::correlated::{Correlations, Material, Request, Sum};
use crate::mpc::dealer::correlate;
use crate::mpc::pairs::Pairs;
use crate::mpc::protocol::{Session, Stats};

/// Every one of `k` servers' material for each of `reqs` in turn, from a source `make` builds
/// per server, over the in-memory network, with its traffic.
pub fn fetch_all<S: Correlations + 'static>(
    k: usize,
    make: impl Fn() -> S,
    reqs: &[Request],
) -> Result<Vec<(Vec<Material>, Stats)>> {
    let rt = crate::mpc::local::runtime()?;
    rt.block_on(async {
        let (ts, _dealer) = memory_network(k);
        let tasks: Vec<_> = ts
            .into_iter()
            .map(|t| {
                let (reqs, mut src) = (reqs.to_vec(), make());
                tokio::spawn(async move {
                    let mut s = Session::new(t);
                    let mut out = Vec::new();
                    for req in &reqs {
                        out.push(src.fetch(&mut s, req).await?);
                    }
                    Ok::<_, Error>((out, s.stats()))
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("server task")?);
        }
        Ok(out)
    })
}

/// The components' true values: every server's shares combined.
pub fn reconstruct(req: &Request, mats: Vec<Material>) -> Vec<Vec<u64>> {
    let comps = req.components();
    let mut acc: Vec<Vec<u64>> = comps.iter().map(|c| vec![0; c.len]).collect();
    for m in mats {
        let parts = m.into_vec();
        assert_eq!(parts.len(), comps.len());
        for ((a, p), c) in acc.iter_mut().zip(parts).zip(&comps) {
            let w = p.into_words();
            assert_eq!(w.len(), c.len);
            match c.sum {
                Sum::Arith => crate::mpc::ring::add_assign(a, &w),
                Sum::Xor => crate::mpc::ring::xor_assign(a, &w),
            }
        }
    }
    acc
}

/// Whether the correlated components are the dealer's function of the random ones (or, for
/// the bilinear form, the inner products and norms of the masks).
pub fn correct(req: &Request, truth: &[Vec<u64>]) -> bool {
    let comps = req.components();
    let want: Vec<Vec<u64>> = match req {
        Request::Bilinear {
            d,
            pairs,
            blocks,
            split,
        } => {
            let whole = [*d];
            let spans: &[usize] = if blocks.is_empty() { &whole } else { blocks };
            let (a, b) = (&truth[0], &truth[1]);
            let dot = |x: &[u64], y: &[u64], from: usize, len: usize| {
                (from..from + len).fold(0u64, |s, t| s.wrapping_add(x[t].wrapping_mul(y[t])))
            };
            let row = |m: &[u64], i: usize| m[i * d..(i + 1) * d].to_vec();
            let starts: Vec<usize> = spans
                .iter()
                .scan(0, |s, &l| {
                    let at = *s;
                    *s += l;
                    Some(at)
                })
                .collect();
            let mut c = Vec::new();
            if *split {
                for (bk, &len) in spans.iter().enumerate() {
                    for p in 0..pairs.len() {
                        let (i, j) = pairs.pair(p);
                        c.push(dot(&row(a, i), &row(b, j), starts[bk], len));
                    }
                }
            } else {
                for p in 0..pairs.len() {
                    let (i, j) = pairs.pair(p);
                    c.push(dot(&row(a, i), &row(b, j), 0, *d));
                }
            }
            let mut out = vec![c];
            if !blocks.is_empty() {
                for (m, rows) in [(a, pairs.rows()), (b, pairs.cols())] {
                    out.push(
                        (0..rows)
                            .flat_map(|i| {
                                let r = row(m, i);
                                spans
                                    .iter()
                                    .zip(&starts)
                                    .map(move |(&len, &at)| dot(&r, &r, at, len))
                                    .collect::<Vec<_>>()
                            })
                            .collect(),
                    );
                }
            }
            out
        }
        _ => {
            let random: Vec<Option<Vec<u64>>> = comps
                .iter()
                .zip(truth)
                .map(|(c, t)| c.random.then(|| t.clone()))
                .collect();
            correlate(req, &random)
        }
    };
    let got: Vec<&Vec<u64>> = comps
        .iter()
        .zip(truth)
        .filter(|(c, _)| !c.random)
        .map(|(_, t)| t)
        .collect();
    got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| *g == w)
}

/// One request of every kind (two of the comparison and of the bilinear form), small.
pub fn requests() -> Vec<Request> {
    let pairs = Pairs::sparse(3, 4, 2, vec![0, 1, 3, 2, 1, 0]).unwrap();
    vec![
        Request::Beaver { n: 5, fanout: 3 },
        Request::Trunc { n: 7, frac: 16 },
        Request::Compare { n: 70, ell: 38 },
        Request::Compare { n: 64, ell: 64 },
        Request::B2a { n: 100 },
        Request::Bilinear {
            d: 6,
            pairs: pairs.clone(),
            blocks: vec![],
            split: false,
        },
        Request::Bilinear {
            d: 6,
            pairs,
            blocks: vec![2, 4],
            split: true,
        },
    ]
}
