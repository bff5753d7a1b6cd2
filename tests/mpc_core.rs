//! The MPC core against plaintext: every secure operation, for 2, 3 and 4 servers, equals the
//! plaintext computation (exactly for ring operations, within the documented bound for
//! truncation), a server's view looks uniform, and traffic matches the documented counts.

mod common;

use common::view::{
    Sent, assert_uniform, assert_uniform_by_width, lagged_differences, opened_values,
};
use ppea::mpc::carry_tree::{compare_rounds, tree_and_words, tree_bits};
use ppea::mpc::compare::Compare;
use ppea::mpc::correlated::Request;
use ppea::mpc::dealer::Dealer;
use ppea::mpc::engine::CompareMaterial;
use ppea::mpc::fixed::FixedPoint;
use ppea::mpc::local::{LocalEngine, LocalRun, run_local_with, runtime};
use ppea::mpc::pairs::Pairs;
use ppea::mpc::prg::{Prg, Seed};
use ppea::mpc::protocol::{Protocol, Step, run_lockstep};
use ppea::mpc::share::{Share, reconstruct, share_with};
use ppea::mpc::source::Correlation;
use proptest::prelude::*;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| runtime().expect("runtime"))
}

/// Shares each input vector among k servers (fixed test seed), runs `job` on every server with
/// its shares, and reconstructs each output vector.
fn secure<F, Fut>(
    k: usize,
    inputs: Vec<Vec<u64>>,
    job: F,
) -> (Vec<Vec<u64>>, LocalRun<Vec<Vec<u64>>>)
where
    F: Fn(LocalEngine, Vec<Vec<u64>>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ppea::Result<(Vec<Vec<u64>>, LocalEngine)>> + Send + 'static,
{
    secure_with(k, Correlation::Dealer, inputs, job)
}

/// [`secure`] with the given correlation source.
fn secure_with<F, Fut>(
    k: usize,
    correlation: Correlation,
    inputs: Vec<Vec<u64>>,
    job: F,
) -> (Vec<Vec<u64>>, LocalRun<Vec<Vec<u64>>>)
where
    F: Fn(LocalEngine, Vec<Vec<u64>>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ppea::Result<(Vec<Vec<u64>>, LocalEngine)>> + Send + 'static,
{
    let mut prg = Prg::new(&Seed([42; 32]), 0);
    let shared: Vec<Vec<Share>> = inputs.iter().map(|x| share_with(x, k, &mut prg)).collect();
    let shared = Arc::new(shared);
    let run = rt()
        .block_on(run_local_with(k, correlation, move |eng: LocalEngine| {
            let mine: Vec<Vec<u64>> = shared.iter().map(|s| s[eng.me()].0.clone()).collect();
            job.clone()(eng, mine)
        }))
        .expect("secure run");
    let outs = (0..run.outputs[0].len())
        .map(|o| {
            let shares: Vec<Share> = run
                .outputs
                .iter()
                .map(|srv| Share(srv[o].clone()))
                .collect();
            reconstruct(&shares).unwrap()
        })
        .collect();
    (outs, run)
}

/// `n` values of `ell` signed bits for the comparison tests: the range's edges and their
/// neighbours first, then values drawn from `seed`.
fn compared_values(ell: u32, seed: u64, n: usize) -> Vec<u64> {
    let lim = if ell == 64 {
        i64::MAX
    } else {
        (1i64 << (ell - 1)) - 1
    };
    let mut prg = Prg::new(&Seed([7; 32]), seed);
    let edges = [-lim - 1, lim, 0, -1, 1, -lim, lim - 1];
    let span = (lim as i128) * 2 + 2;
    (0..n)
        .map(|i| match edges.get(i) {
            Some(&e) => e as u64,
            None => ((prg.next_u64() as i128 % span) - lim as i128 - 1) as i64 as u64,
        })
        .collect()
}

fn signed_in(bits: u32) -> impl Strategy<Value = u64> {
    let lim = if bits >= 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    prop_oneof![
        Just((-lim - 1) as u64),
        Just(lim as u64),
        Just(0u64),
        Just(u64::MAX),
        Just(1u64),
        (-lim - 1..=lim).prop_map(|v| v as u64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    #[test]
    fn products_equal_plaintext(k in 2usize..=4, dealer_free in any::<bool>(),
                                xy in prop::collection::vec((any::<u64>(), any::<u64>()), 1..70)) {
        // The ring's edges against each other first: 0, 1, -1, 2^63, 2^63 - 1, 2^32.
        let edges = [0, 1, u64::MAX, 1 << 63, (1 << 63) - 1, 1 << 32];
        let (mut x, mut y): (Vec<u64>, Vec<u64>) =
            edges.iter().flat_map(|&a| edges.iter().map(move |&b| (a, b))).unzip();
        x.extend(xy.iter().map(|p| p.0));
        y.extend(xy.iter().map(|p| p.1));
        let expect: Vec<u64> = x.iter().zip(&y).map(|(a, b)| a.wrapping_mul(*b)).collect();
        let correlation = if dealer_free { Correlation::Ot } else { Correlation::Dealer };
        let (out, _) = secure_with(k, correlation, vec![x, y], |mut e, i| async move {
            let z = e.mul(&i[0], &i[1]).await?;
            Ok((vec![z], e))
        });
        prop_assert_eq!(&out[0], &expect);
    }

    #[test]
    fn bilinear_equals_plaintext(k in 2usize..=4, n in 1usize..9, m in 1usize..9, d in 1usize..20,
                                 per in 1usize..5, seed in any::<u64>(), dense in any::<bool>(),
                                 chunk in 1usize..400, min_group in 1usize..=64) {
        let mut prg = Prg::new(&Seed([seed as u8; 32]), seed);
        let x = prg.vec(n * d);
        let y = prg.vec(m * d);
        let pairs = if dense { Pairs::dense(n, m) } else {
            let cols = (0..n * per).map(|_| (prg.next_u64() % m as u64) as u32).collect();
            Pairs::sparse(n, m, per, cols).unwrap()
        };
        // The reference: each pair's dot product on its own, not the servers' pair kernel.
        let expect: Vec<u64> = (0..pairs.len())
            .map(|p| {
                let (i, j) = pairs.pair(p);
                (0..d).fold(0u64, |s, c| s.wrapping_add(x[i * d + c].wrapping_mul(y[j * d + c])))
            })
            .collect();
        let p2 = pairs.clone();
        let (out, run) = secure(k, vec![x, y], move |mut e, i| {
            let p = p2.clone();
            async move {
                // The masked rows open `chunk` words per exchange.
                e.set_bilinear_chunk(chunk);
                e.set_bilinear_min_group(min_group);
                let z = e.bilinear(&i[0], &i[1], d, &p).await?;
                Ok((vec![z], e))
            }
        });
        prop_assert_eq!(&out[0], &expect);
        // The rows open a group of columns at a time (as many as fit in `chunk` words, at least
        // `min_group` and at most `d`), each group in exchanges of at most `chunk` words.
        let width = (chunk / (n + m)).max(min_group).min(d);
        let exchanges: usize = (0..d)
            .step_by(width)
            .map(|at| ((n + m) * width.min(d - at)).div_ceil(chunk))
            .sum();
        for s in &run.stats {
            prop_assert_eq!(s.rounds as usize, exchanges);
            prop_assert_eq!(s.bytes_sent, ((n + m) * d * 8 * (k - 1)) as u64);
        }
    }

    #[test]
    fn truncation_within_one_ulp(k in 2usize..=4, frac in 1u32..=62, dealer_free in any::<bool>(),
                                 xs in prop::collection::vec(signed_in(63), 1..50)) {
        // Every `frac` the protocol takes (1 to 62), on inputs up to its bound `|x| < 2^62`.
        let correlation = if dealer_free { Correlation::Ot } else { Correlation::Dealer };
        let (out, _) = secure_with(k, correlation, vec![xs.clone()], move |mut e, i| async move {
            let z = e.truncate(&i[0], frac).await?;
            Ok((vec![z], e))
        });
        for (x, z) in xs.iter().zip(&out[0]) {
            let fl = (*x as i64) >> frac; // arithmetic shift = floor division
            let z = *z as i64;
            prop_assert!(z == fl || z == fl + 1, "x={} frac={} got {} want {} or {}", *x as i64, frac, z, fl, fl + 1);
        }
    }

    #[test]
    fn comparison_equals_plaintext(k in 2usize..=4, ell in prop::sample::select(vec![2u32, 3, 8, 17, 32, 40, 63, 64]),
                                   seed in any::<u64>(), n in 1usize..150) {
        let xs = compared_values(ell, seed, n);
        let expect: Vec<u64> = xs.iter().map(|&x| ((x as i64) < 0) as u64).collect();
        let (out, run) = secure(k, vec![xs], move |mut e, i| async move {
            let z = e.ltz(&i[0], ell).await?;
            Ok((vec![z], e))
        });
        prop_assert_eq!(&out[0], &expect);
        for s in &run.stats {
            prop_assert_eq!(s.rounds as usize, compare_rounds(ell) + 1);
        }
    }

    /// Two servers without a dealer compare by the millionaires' protocol: the same results,
    /// for every width (one 4-bit group at `ell` <= 5, a short top group at 6, 8, 32, 63 and
    /// 64, four whole ones at 17; the groups of consecutive values share choice words),
    /// the edges of the range, and several 64-value blocks; two batches, so both servers act
    /// as the OT sender; online, the chooser sends one word per value and the sender one per
    /// two groups (the rest is the tree's bits and the conversion's).
    #[test]
    fn millionaires_comparison_equals_plaintext(ell in prop::sample::select(vec![2u32, 3, 5, 6, 8, 17, 32, 63, 64]),
                                                seed in any::<u64>(), n in 1usize..150) {
        let xs = compared_values(ell, seed, n);
        let expect: Vec<u64> = xs.iter().map(|&x| ((x as i64) < 0) as u64).collect();
        let (out, run) = secure_with(2, Correlation::Ot, vec![xs], move |mut e, i| async move {
            let mut senders = Vec::new();
            let mut outs = Vec::new();
            for _ in 0..2 {
                let mat = e.prepare_compare(i[0].len(), ell).await?;
                let CompareMaterial::Millionaire(m) = &mat else {
                    return Err(ppea::Error::invalid("two dealer-free servers compare as millionaires"));
                };
                senders.push(m.sender() as u64);
                let before = e.stats().bytes_sent;
                let bits = e.compare_with(i[0].clone(), ell, mat).await?;
                outs.push(vec![e.stats().bytes_sent - before]);
                outs.push(e.b2a(&bits, i[0].len()).await?);
            }
            outs.push(senders);
            Ok((outs, e))
        });
        prop_assert_eq!(&out[1], &expect);
        prop_assert_eq!(&out[3], &expect);
        let senders = &run.outputs[0][4];
        prop_assert!(senders[0] != senders[1], "the sender alternates: {:?}", senders);
        // Online bytes: the chooser's masked groups or the sender's answers, then the tree.
        let groups = (ell as usize - 1).div_ceil(4);
        let blocks = n.div_ceil(64) as u64;
        let tree = ppea::mpc::carry_tree::level_sizes_for(groups).iter().map(|&nodes| {
            let c = nodes / 2;
            (2 * c + c - usize::from(c > 0 && nodes % 2 == 0)) as u64
        }).sum::<u64>() * blocks * 8;
        for (s, srv) in run.outputs.iter().enumerate() {
            let sent = srv[0][0];
            let first = if srv[4][0] as usize == s { groups.div_ceil(2) * n } else { n } as u64;
            prop_assert_eq!(sent, 8 * first + tree, "server {}", s);
        }
    }

    /// One shared value against two public offsets (`Engine::ltz_offsets`, the upload range
    /// checks' two ends): the same results as plaintext with and without a dealer, for two to
    /// four servers, several widths, the range's edges, and more values than one comparison
    /// batch (two servers without a dealer: one set of OTs for both lanes, each batch with the
    /// other sender).
    #[test]
    fn comparison_against_two_offsets_equals_plaintext(k in 2usize..=4, dealer_free in any::<bool>(),
                                                       ell in prop::sample::select(vec![3u32, 8, 17, 40, 63, 64]),
                                                       seed in any::<u64>(), n in 1usize..150,
                                                       o in prop::array::uniform2(any::<u64>())) {
        // Values and offsets of ell - 1 signed bits: their sums fit ell.
        let ws = compared_values(ell - 1, seed, n);
        let quarter = 1u64 << (ell - 2);
        let offsets = o.map(|v| (v % (2 * quarter)).wrapping_sub(quarter));
        let correlation = if dealer_free { Correlation::Ot } else { Correlation::Dealer };
        let (out, _) = secure_with(k, correlation, vec![ws.clone()], move |mut e, i| async move {
            e.set_compare_batch(64);
            // Singles beside the pairs: the values themselves, reversed.
            let singles: Vec<u64> = i[0].iter().rev().copied().collect();
            let (c, [a, b]) = e.ltz_offsets(&singles, &i[0], offsets, ell).await?;
            Ok((vec![a, b, c], e))
        });
        for (l, off) in offsets.iter().enumerate() {
            let expect: Vec<u64> = ws.iter().map(|w| ((w.wrapping_add(*off) as i64) < 0) as u64).collect();
            prop_assert_eq!(&out[l], &expect, "lane {}", l);
        }
        let singles: Vec<u64> = ws.iter().rev().map(|w| ((*w as i64) < 0) as u64).collect();
        prop_assert_eq!(&out[2], &singles);
    }

    #[test]
    fn lt_threshold_select(k in 2usize..=4, xs in prop::collection::vec(signed_in(40), 1..40), t in signed_in(40)) {
        let ys: Vec<u64> = xs.iter().rev().copied().collect();
        let n = xs.len();
        let (out, _) = secure(k, vec![xs.clone(), ys.clone()], move |mut e, i| async move {
            let lt = e.lt(&i[0], &i[1], 42).await?;
            let same = e.lt(&i[0], &i[0], 42).await?;
            let th = e.threshold(&i[0], t, 42).await?;
            let sel = e.select(&lt, &i[0], &i[1]).await?;
            Ok((vec![lt, same, th, sel], e))
        });
        for j in 0..n {
            let (x, y) = (xs[j] as i64, ys[j] as i64);
            prop_assert_eq!(out[0][j], (x < y) as u64);
            prop_assert_eq!(out[1][j], 0);
            prop_assert_eq!(out[2][j], (x >= t as i64) as u64);
            prop_assert_eq!(out[3][j], if x < y { xs[j] } else { ys[j] });
        }
    }

    #[test]
    fn argmax_equals_plaintext(k in 2usize..=4, rows in 1usize..6, len in 1usize..11,
                               block_rows in 1usize..8, dealer_free in any::<bool>(),
                               extreme in any::<bool>(), vals in prop::collection::vec(-20i64..20, 60)) {
        // Small value range so ties are frequent; tournaments in blocks of `block_rows` rows
        // (one block when it covers every row). Without a dealer, two servers select by bit
        // products (`Engine::bit_times`), more take the B2a conversion and Beaver products.
        // With `extreme`, values at the edges of the range whose differences still fit in the
        // 40 signed bits compared (`[-2^38, 2^38)`), where a carry or sign slip would show.
        let edge = [-(1i64 << 38), -(1 << 38) + 1, (1 << 38) - 1, (1 << 38) - 2, 0, -1];
        let values: Vec<u64> = (0..rows * len)
            .map(|i| {
                let v = vals[i % vals.len()];
                if extreme { edge[v.rem_euclid(6) as usize] as u64 } else { v.wrapping_mul(1 << 20) as u64 }
            })
            .collect();
        let correlation = if dealer_free { Correlation::Ot } else { Correlation::Dealer };
        let (out, _) = secure_with(k, correlation, vec![values.clone()], move |mut e, i| async move {
            e.set_tournament_block(block_rows * len);
            let (m, a) = e.argmax(&i[0], len, 40).await?;
            let (m2, oh) = e.argmax_onehot(&i[0], len, 40).await?;
            let m3 = e.max_rows(&i[0], len, 40).await?;
            Ok((vec![m, a, m2, oh, m3], e))
        });
        for r in 0..rows {
            let row: Vec<i64> = values[r * len..(r + 1) * len].iter().map(|&v| v as i64).collect();
            let max = *row.iter().max().unwrap();
            let first = row.iter().position(|&v| v == max).unwrap();
            prop_assert_eq!(out[0][r] as i64, max);
            prop_assert_eq!(out[1][r] as usize, first);
            prop_assert_eq!(out[2][r] as i64, max);
            prop_assert_eq!(out[4][r] as i64, max);
            for c in 0..len {
                prop_assert_eq!(out[3][r * len + c], (c == first) as u64);
            }
        }
    }
}

/// Truncation by 0 or 63 bits is refused naming the width and the bounds, with a dealer and
/// without one, before any material is made.
#[test]
fn truncation_by_a_width_outside_1_to_62_is_refused() {
    for c in [Correlation::Dealer, Correlation::Ot] {
        for frac in [0u32, 63] {
            let run = rt().block_on(run_local_with(2, c, move |mut e: LocalEngine| async move {
                let z = e.truncate(&[1, 2, 3], frac).await?;
                Ok((z, e))
            }));
            let Err(e) = run else {
                panic!("{c:?}: truncation by {frac} bits ran");
            };
            let e = e.to_string();
            assert!(
                e.contains("1 to 62") && e.contains(&format!("got {frac}")),
                "{c:?}, {frac} bits: {e}"
            );
        }
    }
}

/// Two dealer-free servers multiply XOR-shared bits by shared values with one correlated OT per
/// value and direction (`Engine::bit_times`; `Engine::mul_bits` for bits given as arithmetic
/// 0/1 shares, whose low bits are XOR shares): the products equal plaintext for a bit count that
/// is not a whole number of words, in one batch and in several, and each server sends its
/// choice bits and one 64-bit correction per value, where converting the bits and taking
/// Beaver products sends far more.
#[test]
fn dealer_free_bit_products_equal_plaintext_and_cost_a_word_per_value() {
    let (n, fanout) = (200usize, 3usize);
    let mut prg = Prg::new(&Seed([9; 32]), 4);
    let x: Vec<u64> = (0..n as u64)
        .map(|i| (i * 7919 % 101).wrapping_sub(50).wrapping_mul(1 << 30))
        .collect();
    let ys = prg.vec(n * fanout);
    let expect: Vec<u64> = (0..n * fanout)
        .map(|q| if (x[q % n] as i64) < 0 { ys[q] } else { 0 })
        .collect();
    let run = |batch: usize| {
        secure_with(
            2,
            Correlation::Ot,
            vec![x.clone(), ys.clone()],
            move |mut e, i| async move {
                e.set_product_batch(batch);
                let bits = e.ltz_bits_batched(&i[0], 40).await?;
                let (before, rounds) = (e.stats().bytes_sent, e.stats().rounds);
                let z = e.bit_times(&bits, n, i[1].clone(), fanout).await?;
                let sent = e.stats().bytes_sent - before;
                let rounds = e.stats().rounds - rounds;
                // The other route, on the same bits.
                let before = e.stats().bytes_sent;
                let arith = e.b2a(&bits, n).await?;
                let w = e.mul_fanout(&arith, i[1].clone(), fanout).await?;
                let beaver = e.stats().bytes_sent - before;
                // Arithmetic 0/1 shares multiply as bit products too (their low bits).
                let before = e.stats().bytes_sent;
                let m = e.mul_bits(&arith, i[1].clone(), fanout).await?;
                let from_arith = e.stats().bytes_sent - before;
                Ok((
                    vec![
                        z,
                        w,
                        vec![sent],
                        vec![beaver],
                        m,
                        vec![from_arith],
                        vec![rounds],
                    ],
                    e,
                ))
            },
        )
    };
    // Batches as the engine cuts them: whole bit words of at most `batch / fanout` bits.
    let per = |batch: usize| (batch / fanout).max(64) / 64 * 64;
    let mut rounds = Vec::new();
    for batch in [256 * fanout, 64 * fanout] {
        let (out, run) = run(batch);
        rounds.push((n.div_ceil(per(batch)) as u64, run.outputs[0][6][0]));
        assert_eq!(out[0], expect, "batch {batch}");
        assert_eq!(out[1], expect, "batch {batch}");
        assert_eq!(out[4], expect, "batch {batch}, from arithmetic bits");
        for srv in &run.outputs {
            let (sent, beaver) = (srv[2][0], srv[3][0]);
            assert_eq!(
                srv[5][0], sent,
                "arithmetic bits cost what XOR-shared ones do"
            );
            // Per batch, a choice word per 64 values (one bit each) and a 64-bit correction per
            // value, padded to whole choice words, and nothing else (the pools need no refill
            // at this size): 5,200 bytes either way, against some 320 KB the other way.
            let per = per(batch);
            let words: u64 = (0..n)
                .step_by(per)
                .map(|i0| ((per.min(n - i0) * fanout).div_ceil(64)) as u64)
                .sum();
            assert_eq!(sent, 8 * 65 * words, "batch {batch}");
            assert!(
                beaver > 50 * sent,
                "the Beaver route sent {beaver}, bit products {sent}"
            );
        }
    }
    // One batch, then four: the same bytes, four times the rounds.
    assert_eq!(rounds[0].0, 1);
    assert_eq!(rounds[1].0, 4);
    assert_eq!(rounds[1].1, 4 * rounds[0].1, "{rounds:?}");
    // Three servers have no bit products: the bits are converted a comparison batch at a
    // time (here 64 values, so four) and multiplied.
    let (out, _) = secure_with(
        3,
        Correlation::Ot,
        vec![x.clone(), ys.clone()],
        move |mut e, i| async move {
            e.set_compare_batch(64);
            let bits = e.ltz_bits_batched(&i[0], 40).await?;
            let z = e.bit_times(&bits, n, i[1].clone(), fanout).await?;
            Ok((vec![z], e))
        },
    );
    assert_eq!(out[0], expect, "three servers");
}

/// A tournament in blocks of rows costs the same bytes as in one batch and one batch's rounds
/// per block, with the same results: the memory bound costs latency only. (Blocks of 64 rows:
/// comparison bits travel packed 64 to a word, so smaller blocks would pay for padding.)
#[test]
fn tournament_blocks_cost_rounds_not_bytes() {
    let (rows, len) = (256usize, 8usize);
    let values: Vec<u64> = (0..rows * len)
        .map(|i| ((i * 7919) % 61) as u64 * (1 << 20))
        .collect();
    let run = |block_rows: usize| {
        secure(2, vec![values.clone()], move |mut e, i| async move {
            e.set_tournament_block(block_rows * len);
            let (m, oh) = e.argmax_onehot(&i[0], len, 40).await?;
            Ok((vec![m, oh], e))
        })
    };
    let (one, one_run) = run(rows);
    let (four, four_run) = run(rows / 4);
    assert_eq!(one, four);
    let (s1, s4) = (&one_run.stats[0], &four_run.stats[0]);
    assert_eq!(s1.bytes_sent, s4.bytes_sent);
    assert_eq!(s4.rounds, 4 * s1.rounds);
}

/// Comparisons longer than one batch run batch by batch: the same results and bytes (batches
/// of whole 64-value words), the rounds of one comparison per batch.
#[test]
fn comparison_batches_cost_rounds_not_bytes() {
    let n = 64 * 40 + 17; // the last batch is partial
    let values: Vec<u64> = (0..n as u64)
        .map(|i| (i * 7919 % 101).wrapping_sub(50).wrapping_mul(1 << 30))
        .collect();
    let expect: Vec<u64> = values.iter().map(|&v| ((v as i64) < 0) as u64).collect();
    let run = |batch: usize| {
        secure(3, vec![values.clone()], move |mut e, i| async move {
            e.set_compare_batch(batch);
            let z = e.ltz(&i[0], 40).await?;
            Ok((vec![z], e))
        })
    };
    let (one, one_run) = run(n);
    let (many, many_run) = run(64 * 8);
    assert_eq!(one[0], expect);
    assert_eq!(many[0], expect);
    let (s1, s6) = (&one_run.stats[0], &many_run.stats[0]);
    assert_eq!(s1.bytes_sent, s6.bytes_sent);
    assert_eq!(s6.rounds, 6 * s1.rounds);
}

/// Products longer than one batch run batch by batch (each batch a slice of the left values
/// with its slice of every right vector): the same results and bytes, one round per batch.
#[test]
fn product_batches_cost_rounds_not_bytes() {
    let (n, fanout) = (1000usize, 3usize);
    let mut prg = Prg::new(&Seed([5; 32]), 2);
    let x = prg.vec(n);
    let ys = prg.vec(n * fanout);
    let expect: Vec<u64> = (0..n * fanout)
        .map(|q| x[q % n].wrapping_mul(ys[q]))
        .collect();
    let run = |batch: usize| {
        secure(2, vec![x.clone(), ys.clone()], move |mut e, i| async move {
            e.set_product_batch(batch);
            let z = e.mul_fanout(&i[0], i[1].clone(), fanout).await?;
            Ok((vec![z], e))
        })
    };
    let (one, one_run) = run(n * fanout);
    let (many, many_run) = run(300 * fanout); // batches of 300, 300, 300, 100 left values
    assert_eq!(one[0], expect);
    assert_eq!(many[0], expect);
    let (s1, s4) = (&one_run.stats[0], &many_run.stats[0]);
    assert_eq!(s1.bytes_sent, s4.bytes_sent);
    assert_eq!(s4.rounds, 4 * s1.rounds);
}

#[test]
fn fixed_point_products_within_bound() {
    let fp = FixedPoint::default();
    let f = fp.frac_bits();
    let xs = [0.5, -1.25, 3.0, -0.0001, 100.75, -181.0];
    let ys = [0.5, 2.0, -3.5, 0.9999, -0.01, -181.0];
    for k in 2..=4 {
        let x = fp.encode_all(&xs).unwrap();
        let y = fp.encode_all(&ys).unwrap();
        let (out, _) = secure(k, vec![x, y], move |mut e, i| async move {
            let p = e.mul(&i[0], &i[1]).await?;
            let t = e.truncate(&p, f).await?;
            Ok((vec![t], e))
        });
        for j in 0..xs.len() {
            let got = fp.decode(out[0][j]);
            // Encoding rounds each input by half an ulp; truncation adds at most one ulp.
            let ulp = 1.0 / fp.scale();
            let bound = ulp + 0.5 * ulp * (xs[j].abs() + ys[j].abs()) + 0.25 * ulp * ulp;
            assert!(
                (got - xs[j] * ys[j]).abs() <= bound,
                "{} * {} = {got}",
                xs[j],
                ys[j]
            );
        }
    }
}

#[test]
fn dense_matmul_equals_plaintext() {
    let (n, d, m) = (5, 7, 3);
    let mut prg = Prg::new(&Seed([3; 32]), 1);
    let x = prg.vec(n * d);
    let y = prg.vec(d * m);
    let mut expect = vec![0u64; n * m];
    for i in 0..n {
        for j in 0..m {
            for r in 0..d {
                expect[i * m + j] =
                    expect[i * m + j].wrapping_add(x[i * d + r].wrapping_mul(y[r * m + j]));
            }
        }
    }
    for k in 2..=4 {
        let (out, _) = secure(k, vec![x.clone(), y.clone()], move |mut e, i| async move {
            let z = e.matmul(&i[0], &i[1], n, d, m).await?;
            Ok((vec![z], e))
        });
        assert_eq!(out[0], expect);
    }
}

/// Byte and round counts of a bilinear form and a batch of comparisons (counts, not times).
#[test]
fn traffic_counts() {
    let (n, m, d) = (40, 30, 16);
    for k in [2usize, 3] {
        let x = vec![1u64; n * d];
        let y = vec![2u64; m * d];
        let (out, run) = secure(k, vec![x, y], move |mut e, i| async move {
            let z = e.bilinear(&i[0], &i[1], d, &Pairs::dense(n, m)).await?;
            Ok((vec![z], e))
        });
        assert!(out[0].iter().all(|&v| v == 2 * d as u64));
        for s in &run.stats {
            assert_eq!(
                (s.rounds, s.bytes_sent),
                (1, (8 * (n + m) * d * (k - 1)) as u64)
            );
        }
        // The dealer sends 4 seed words per server plus one correction word per pair.
        assert_eq!(run.dealer.bytes_sent, (8 * (4 * k + n * m)) as u64);

        let count = 1024usize;
        let blocks = count / 64;
        let xs: Vec<u64> = (0..count as u64).map(|v| v.wrapping_sub(512)).collect();
        let (out, run) = secure(k, vec![xs], move |mut e, i| async move {
            let z = e.ltz(&i[0], 64).await?;
            Ok((vec![z], e))
        });
        assert_eq!(out[0].iter().sum::<u64>(), 512);
        // Opening of c (one word each), tree bits (bit-sliced), conversion (one bit each).
        let words = count + tree_bits(64) * blocks + blocks;
        // 63 leaves: combines per level 31, 16, 8, 4, 2, 1; 3 bits each, 2 on bit 0's path.
        assert_eq!(tree_bits(64), 93 + 47 + 23 + 11 + 5 + 2);
        for s in &run.stats {
            assert_eq!(s.rounds, 8);
            assert_eq!(s.bytes_sent, (8 * words * (k - 1)) as u64);
        }
        let per_compare = 8.0 * words as f64 / count as f64;
        assert!(
            per_compare < 32.0,
            "{per_compare} bytes per comparison per peer"
        );
        // Dealer: seeds, then bits of r, two AND-correction vectors, and the conversion.
        let dealer_words = 4 * k + 64 * blocks + 2 * tree_and_words(64, blocks) + count;
        assert_eq!(run.dealer.bytes_sent, 8 * dealer_words as u64);
    }
}

/// A protocol wrapper that records what this server receives from the others.
struct Recorder<P> {
    inner: P,
    me: usize,
    log: Arc<Mutex<Vec<u64>>>,
}

impl<P: Protocol> Protocol for Recorder<P> {
    type Output = P::Output;
    fn start(self) -> ppea::Result<Step<Self>> {
        let Recorder { inner, me, log } = self;
        Ok(match inner.start()? {
            Step::Send(p, m) => Step::Send(Recorder { inner: p, me, log }, m),
            Step::SendEach(p, m, e) => Step::SendEach(Recorder { inner: p, me, log }, m, e),
            Step::Done(o) => Step::Done(o),
        })
    }
    fn receive(self, incoming: Vec<Vec<u64>>) -> ppea::Result<Step<Self>> {
        {
            let mut l = self.log.lock().unwrap();
            for (i, m) in incoming.iter().enumerate() {
                if i != self.me {
                    l.extend_from_slice(m);
                }
            }
        }
        let Recorder { inner, me, log } = self;
        Ok(match inner.receive(incoming)? {
            Step::Send(p, m) => Step::Send(Recorder { inner: p, me, log }, m),
            Step::SendEach(p, m, e) => Step::SendEach(Recorder { inner: p, me, log }, m, e),
            Step::Done(o) => Step::Done(o),
        })
    }
}

/// A server's view of a highly structured input (its share and everything it receives during a
/// comparison and a product) is statistically uniform; with the mask removed it is not.
#[test]
fn server_view_looks_uniform() {
    for k in [2usize, 3, 4] {
        let n = 64 * 512;
        let x: Vec<u64> = (0..n as u64).map(|i| i % 3).collect(); // low-entropy secret
        let mut prg = Prg::new(&Seed([9; 32]), 0);
        let shares = share_with(&x, k, &mut prg);
        let mut dealer = Dealer::new(k).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mats = dealer.deal_all(&Request::Compare { n, ell: 64 }).unwrap();
        let parties: Vec<_> = mats
            .into_iter()
            .enumerate()
            .map(|(s, mat)| Recorder {
                inner: Compare::new(s, shares[s].0.clone(), 64, mat).unwrap(),
                me: s,
                log: if s == 0 {
                    log.clone()
                } else {
                    Arc::new(Mutex::new(Vec::new()))
                },
            })
            .collect();
        let (bits, rounds) = run_lockstep(parties).unwrap();
        assert_eq!(rounds, compare_rounds(64));
        // The result (boolean shares, XOR them) is right: no value is negative.
        let lt = bits.iter().fold(vec![0u64; n / 64], |mut acc, b| {
            ppea::mpc::ring::xor_assign(&mut acc, b);
            acc
        });
        assert!(lt.iter().all(|&w| w == 0));
        assert_uniform(&shares[0].0, "server 0's input share");
        let view = log.lock().unwrap().clone();
        assert!(view.len() >= n * (k - 1));
        assert_uniform(&view, "server 0's received messages");
        // Control: the same statistic on the unmasked secret fails, so the test can fail.
        let caught = std::panic::catch_unwind(|| assert_uniform(&x, "secret"));
        assert!(caught.is_err());
    }
}

/// Two dealer-free servers lift shares modulo the slot prime to shares modulo `2^64`
/// (`Engine::lift`: bits each server computes alone and one bit product per value) for values
/// at both ends of `[-Q, Q]` (`Q = (T - 1) / 4`), next to zero and drawn at random, with server
/// 0's share 0, `T - 1`, at both sides of its bit's threshold and uniform; three servers are
/// refused.
#[test]
fn dealer_free_lift_from_the_slot_prime_equals_plaintext() {
    use ppea::mpc::he::slots::T;
    let (q, tau) = ((T - 1) / 4, T.div_ceil(2));
    let mut prg = Prg::new(&Seed([5; 32]), 1);
    let mut v: Vec<i64> = vec![
        -(q as i64),
        -(q as i64) + 1,
        -1,
        0,
        1,
        q as i64 - 1,
        q as i64,
    ];
    v.extend((0..500).map(|_| (prg.next_u64() % (2 * q + 1)) as i64 - q as i64));
    let n = v.len();
    // Server 0 adds Q before its bit [u_0 < tau]: shares at both sides of that threshold.
    let s0: Vec<u64> = (0..n)
        .map(|i| match i % 6 {
            0 => 0,
            1 => T - 1,
            2 => (tau - 1 + T - q) % T,
            3 => (tau + T - q) % T,
            4 => (T - q) % T,
            _ => prg.next_u64() % T,
        })
        .collect();
    let s1: Vec<u64> = v
        .iter()
        .zip(&s0)
        .map(|(&v, &a)| ((v as i128 - a as i128).rem_euclid(T as i128)) as u64)
        .collect();
    let shares = Arc::new([s0, s1]);
    let (out, _) = secure_with(2, Correlation::Ot, vec![], move |mut e, _| {
        let shares = shares.clone();
        async move {
            let mine = shares[e.me()].clone();
            let z = e.lift(&mine, T).await?;
            Ok((vec![z], e))
        }
    });
    let want: Vec<u64> = v.iter().map(|&v| v as u64).collect();
    assert_eq!(out[0], want);
    let err = rt()
        .block_on(run_local_with(
            3,
            Correlation::Ot,
            |mut e: LocalEngine| async move {
                let r = e.lift(&[0, 1], T).await;
                Ok((r.err().map(|e| e.to_string()), e))
            },
        ))
        .unwrap();
    assert!(
        err.outputs[0]
            .as_deref()
            .unwrap_or("")
            .contains("two servers")
    );
}

/// What the servers run in [`dealer_free_view`].
#[derive(Clone)]
enum Work {
    /// The material of these requests.
    Fetch(Vec<Request>),
    /// Bit products of `n` bits by `fanout` vectors, every server's bits all ones and its values
    /// all `value` (`Correlations::bit_products`).
    BitProducts { n: usize, fanout: usize, value: u64 },
}

/// Everything server 0 of `k` receives, from round `from` on, while the servers make the
/// material of `reqs` with the dealer-free source `c`.
fn dealer_free_view(
    k: usize,
    c: ppea::mpc::source::Correlation,
    from: usize,
    reqs: &[Request],
) -> Vec<u64> {
    dealer_free_view_of(k, c, from, Work::Fetch(reqs.to_vec()))
}

/// [`dealer_free_view`] while the servers do `work`.
fn dealer_free_view_of(
    k: usize,
    c: ppea::mpc::source::Correlation,
    from: usize,
    work: Work,
) -> Vec<u64> {
    use ppea::mpc::channel::memory_network;
    use ppea::mpc::correlated::Correlations;
    use ppea::mpc::protocol::Session;
    use ppea::mpc::source::Source;
    let log = Arc::new(Mutex::new(Vec::<Vec<u64>>::new()));
    runtime().unwrap().block_on(async {
        let (ts, _dealer) = memory_network(k);
        let tasks: Vec<_> = ts
            .into_iter()
            .enumerate()
            .map(|(s, t)| {
                let log = log.clone();
                // Every other server records what it sends server 0 (unchanged).
                let t = if s == 0 {
                    t
                } else {
                    t.deviating(Box::new(move |round, to, payload: &mut Vec<u64>| {
                        if to == 0 && round >= from as u64 {
                            log.lock().unwrap().push(payload.clone());
                        }
                    }))
                };
                let work = work.clone();
                tokio::spawn(async move {
                    let mut session = Session::new(t);
                    let mut src = Source::connect(c, &mut session).await.unwrap();
                    match work {
                        Work::Fetch(reqs) => {
                            for req in reqs {
                                src.fetch(&mut session, &req).await.unwrap();
                            }
                        }
                        Work::BitProducts { n, fanout, value } => {
                            let bits = vec![u64::MAX; n.div_ceil(64)];
                            let y = vec![value; n * fanout];
                            let out = src.bit_products(&mut session, &bits, n, &y, fanout);
                            assert!(out.await.unwrap().is_some());
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let view = log.lock().unwrap();
    view.iter().flatten().copied().collect()
}

/// Two dealer-free servers' bit products: with every bit share 1 and every value share 5 (the
/// OTs' correlations `(1 - 2 b_s) y_s` all `-5`), everything server 0 receives after the links'
/// setup (choice messages and corrections) is statistically uniform; the correlations
/// themselves fail the statistic.
#[test]
fn a_servers_view_of_bit_products_looks_uniform() {
    let work = Work::BitProducts {
        n: 64 * 200,
        fanout: 3,
        value: 5,
    };
    let view = dealer_free_view_of(2, Correlation::Ot, 4, work);
    assert!(view.len() > 38_400, "{} words", view.len());
    assert_uniform(&view, "server 0's received bit-product messages");
    let clear = vec![5u64.wrapping_neg(); 38_400];
    let caught = std::panic::catch_unwind(|| assert_uniform(&clear, "correlations"));
    assert!(
        caught.is_err(),
        "the statistic sees the correlations in the clear"
    );
}

/// Dealer-free material: everything server 0 receives while the servers make the material of
/// products, comparisons and truncations is statistically uniform. Over OT (`correlation =
/// "ot"`, k = 2 and 3): from the third round on (after the base OTs, whose Ristretto points
/// are uniform group elements but not uniform bytes: the IKNP batch seeding each silent
/// extension, its first iterations, then choice messages, refills and corrections), and from
/// the fifth (the material alone). From replicated seeds (`"replicated"`, k = 3; after
/// the seed setup): the random bits' split cubic terms `m - u`. Controls: the correlations the OT
/// corrections hide (a Gilboa sender's `a 2^j`) and the cubic terms `m` the splits hide fail
/// the statistic.
#[test]
fn a_servers_view_of_dealer_free_material_looks_uniform() {
    for k in [2usize, 3] {
        let reqs = [
            Request::Beaver { n: 256, fanout: 2 },
            Request::Compare { n: 256, ell: 40 },
            Request::Trunc { n: 64, frac: 16 },
        ];
        let view = dealer_free_view(k, Correlation::Ot, 2, &reqs);
        assert!(view.len() > 100_000, "k = {k}: {} words", view.len());
        assert_uniform(&view, &format!("k = {k}: server 0's received OT messages"));
        let view = dealer_free_view(k, Correlation::Ot, 4, &reqs);
        assert!(view.len() > 20_000, "k = {k}: {} words", view.len());
        assert_uniform(
            &view,
            &format!("k = {k}: server 0's OT messages after setup"),
        );
    }
    let reqs = [
        Request::Beaver { n: 256, fanout: 2 },
        Request::Compare { n: 16384, ell: 40 },
        Request::Trunc { n: 1024, frac: 16 },
        Request::B2a { n: 8192 },
    ];
    let view = dealer_free_view(3, Correlation::Replicated, 1, &reqs);
    assert!(view.len() > 50_000, "{} words", view.len());
    assert_uniform(&view, "server 0's received replicated splits");
    // Control: the cubic terms themselves (a product of two random bits: 1 in 4).
    let mut prg = Prg::fresh();
    let m: Vec<u64> = (0..50_000)
        .map(|_| (prg.next_u64() & prg.next_u64()) & 1)
        .collect();
    let caught = std::panic::catch_unwind(|| assert_uniform(&m, "cubic terms"));
    assert!(
        caught.is_err(),
        "the statistic sees the cubic terms in the clear"
    );
    let a = Prg::fresh().vec(2048);
    let hidden: Vec<u64> = a
        .iter()
        .flat_map(|&x| (0..64).map(move |j| x << j))
        .collect();
    let caught = std::panic::catch_unwind(|| assert_uniform(&hidden, "Gilboa correlations"));
    assert!(
        caught.is_err(),
        "the statistic sees the correlations in the clear"
    );
}

/// Every message every server sends while the `k` servers, with correlations from `c`, take
/// products, truncations, comparisons and a bilinear form of low-entropy secrets (`i mod 3`,
/// `i mod 5`), and the number of values `n`. The results are checked against the plaintext.
fn every_message_of_a_job(k: usize, c: Correlation) -> (Vec<Sent>, usize) {
    let n = 4096usize;
    let x: Vec<u64> = (0..n as u64).map(|i| i % 3).collect();
    let y: Vec<u64> = (0..n as u64).map(|i| i % 5).collect();
    let mut prg = Prg::new(&Seed([7; 32]), 0);
    let shares = Arc::new([share_with(&x, k, &mut prg), share_with(&y, k, &mut prg)]);
    let log = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let deviations = (0..k)
        .map(|s| {
            let log = log.clone();
            let f: ppea::mpc::channel::Deviation =
                Box::new(move |round, to, payload: &mut Vec<u64>| {
                    log.lock().unwrap().push((round, s, to, payload.clone()));
                });
            (s, f)
        })
        .collect();
    let run = rt()
        .block_on(ppea::mpc::local::run_local_observed(
            k,
            c,
            deviations,
            move |mut e: LocalEngine| {
                let shares = shares.clone();
                async move {
                    let (xs, ys) = (&shares[0][e.me()].0, &shares[1][e.me()].0);
                    let p = e.mul(xs, ys).await?;
                    // x 2^20, truncated by 16 bits: x 2^4 (within one unit).
                    let scaled: Vec<u64> = xs.iter().map(|v| v << 20).collect();
                    let t = e.truncate(&scaled, 16).await?;
                    // x - 1 < 0 exactly where x = 0.
                    let mut m = xs.clone();
                    if e.me() == 0 {
                        m.iter_mut().for_each(|v| *v = v.wrapping_sub(1));
                    }
                    let lt = e.ltz(&m, 40).await?;
                    // The bilinear form over 64 rows of 64 words each side, every pair.
                    let f = e.bilinear(xs, ys, 64, &Pairs::dense(64, 64)).await?;
                    Ok((vec![p, t, lt, f], e))
                }
            },
        ))
        .expect("the job runs");
    let open = |o: usize| -> Vec<u64> {
        let shares: Vec<Share> = run.outputs.iter().map(|s| Share(s[o].clone())).collect();
        reconstruct(&shares).unwrap()
    };
    let (p, t, lt, f) = (open(0), open(1), open(2), open(3));
    for (q, got) in f.iter().enumerate() {
        let (i, j) = (q / 64, q % 64);
        let want = ppea::mpc::ring::dot(&x[i * 64..(i + 1) * 64], &y[j * 64..(j + 1) * 64]);
        assert_eq!(*got, want, "{c:?}, k = {k}: pair {q}");
    }
    for i in 0..n {
        assert_eq!(p[i], x[i] * y[i], "{c:?}, k = {k}: product {i}");
        assert!(
            t[i].abs_diff(x[i] << 4) <= 1,
            "{c:?}, k = {k}: truncation {i}"
        );
        assert_eq!(lt[i], (x[i] == 0) as u64, "{c:?}, k = {k}: comparison {i}");
    }
    let sent = log.lock().unwrap().clone();
    (sent, n)
}

/// What any `k - 1` servers see together, for every source of correlations and every server
/// count it supports: everything each server sends (what the others receive from it) is
/// statistically uniform, and so are the values the servers open (the sum and the XOR of all
/// servers' payloads in an opening round, which any `k - 1` of them can compute with the
/// honest one's payload), while the secrets are `i mod 3` and `i mod 5`. A source whose masks
/// were biased, or reused, or zero would show in the openings even where each server's payload
/// alone looks uniform (a share is uniform whatever the mask). The secure results are checked
/// against the plaintext; controls: the secrets themselves fail the statistic, and openings
/// are found (at least the products' `2n` words).
#[test]
fn what_any_k_minus_1_servers_see_together_looks_uniform() {
    let cases = [
        (Correlation::Dealer, 2, 0),
        (Correlation::Dealer, 3, 0),
        (Correlation::Dealer, 4, 0),
        // After the base OTs (Ristretto points: uniform group elements, not uniform bytes).
        (Correlation::Ot, 2, 4),
        (Correlation::Ot, 3, 4),
        (Correlation::Ot, 4, 4),
        (Correlation::Replicated, 3, 1),
    ];
    for (c, k, from) in cases {
        let (sent, n) = every_message_of_a_job(k, c);
        for s in 0..k {
            // A payload sent to several servers (a broadcast) counts once: repeated samples
            // would inflate the statistic.
            let mut own: Vec<Vec<u64>> = Vec::new();
            let mut seen: Vec<(u64, &Vec<u64>)> = Vec::new();
            for m in sent.iter().filter(|m| m.1 == s && m.0 >= from) {
                if !seen.contains(&(m.0, &m.3)) {
                    seen.push((m.0, &m.3));
                    own.push(m.3.clone());
                }
            }
            let words: usize = own.iter().map(Vec::len).sum();
            assert!(words >= n, "{c:?}, k = {k}: server {s} sent {words} words");
            assert_uniform_by_width(&own, &format!("{c:?}, k = {k}: what server {s} sends"));
        }
        let (sums, xors) = opened_values(&sent, k, from);
        let words: usize = sums.iter().map(Vec::len).sum();
        assert!(words >= 2 * n, "{c:?}, k = {k}: {words} opened words");
        assert_uniform_by_width(&sums, &format!("{c:?}, k = {k}: opened values (sums)"));
        assert_uniform_by_width(&xors, &format!("{c:?}, k = {k}: opened values (XOR)"));
        // No mask hides two values of one opening.
        let what = format!("{c:?}, k = {k}: differences within openings");
        assert_uniform_by_width(&lagged_differences(&sums, false), &what);
        assert_uniform_by_width(&lagged_differences(&xors, true), &what);
    }
    // Controls: the secrets in the clear fail, as do 40-bit values whose top bit is never set
    // (a mask one bit short), while uniform 40-bit values pass.
    let x: Vec<u64> = (0..8192u64).map(|i| i % 3).collect();
    let caught = std::panic::catch_unwind(|| assert_uniform_by_width(&[x], "secret"));
    assert!(
        caught.is_err(),
        "the statistic sees the secret in the clear"
    );
    let short: Vec<u64> = Prg::fresh()
        .vec(8192)
        .iter()
        .map(|v| v & ((1 << 39) - 1))
        .collect();
    let mut wide = short.clone();
    wide[0] |= 1 << 39;
    let caught = std::panic::catch_unwind(|| assert_uniform_by_width(&[wide], "short mask"));
    assert!(caught.is_err(), "the statistic sees a mask one bit short");
    let full: Vec<u64> = Prg::fresh().vec(8192).iter().map(|v| v >> 24).collect();
    assert_uniform_by_width(&[full], "uniform 40-bit values");
    // An opening whose mask is missing: each server's payload is uniform (`r`, `x - r`), their
    // sum is the secret. Each payload passes, the opening fails.
    let r = Prg::fresh().vec(8192);
    let x: Vec<u64> = (0..8192u64).map(|i| i % 3).collect();
    let other: Vec<u64> = x.iter().zip(&r).map(|(x, r)| x.wrapping_sub(*r)).collect();
    let sent: Vec<Sent> = vec![(0, 0, 1, r.clone()), (0, 1, 0, other.clone())];
    assert_uniform_by_width(&[r, other], "each payload of a maskless opening");
    let (sums, _) = opened_values(&sent, 2, 0);
    let caught = std::panic::catch_unwind(|| assert_uniform_by_width(&sums, "maskless opening"));
    assert!(
        caught.is_err(),
        "the openings' statistic sees an opening without its mask"
    );
    // An opening of two vectors under one mask (`x + r` and `y + r`, as the bilinear form's two
    // sides would be with a reused mask): the differences half the opening apart are `y - x`.
    let r = Prg::fresh().vec(4096);
    let y: Vec<u64> = (0..4096u64).map(|i| i % 5).collect();
    let reused: Vec<u64> = (x.iter().zip(&r).map(|(x, r)| x.wrapping_add(*r)))
        .chain(y.iter().zip(&r).map(|(y, r)| y.wrapping_add(*r)))
        .collect();
    let diffs = lagged_differences(&[reused], false);
    let caught = std::panic::catch_unwind(|| assert_uniform_by_width(&diffs, "reused mask"));
    assert!(caught.is_err(), "the differences see a mask used twice");
    // Fresh masks for both halves pass.
    let fresh: Vec<u64> = Prg::fresh().vec(8192);
    assert_uniform_by_width(&lagged_differences(&[fresh], false), "fresh masks");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Local operations on shares: add, subtract, multiply by a public constant, add a public
    /// constant (server 0 only), all equal their plaintext counterparts.
    #[test]
    fn local_linear_ops(k in 2usize..=4, xy in prop::collection::vec((signed_in(64), signed_in(64)), 1..40),
                        c in any::<u64>(), seed in any::<u64>()) {
        let (x, y): (Vec<u64>, Vec<u64>) = xy.into_iter().unzip();
        let mut prg = Prg::new(&Seed([1; 32]), seed);
        let sx = share_with(&x, k, &mut prg);
        let sy = share_with(&y, k, &mut prg);
        let mut sum = Vec::new();
        let mut diff = Vec::new();
        let mut lin = Vec::new();
        for s in 0..k {
            let mut a = sx[s].0.clone();
            ppea::mpc::ring::add_assign(&mut a, &sy[s].0);
            sum.push(Share(a));
            let mut d = sx[s].0.clone();
            ppea::mpc::ring::sub_assign(&mut d, &sy[s].0);
            diff.push(Share(d));
            let mut l = sx[s].0.clone();
            ppea::mpc::ring::scale_assign(&mut l, c);
            ppea::mpc::share::add_public_scalar(&mut l, c, s);
            lin.push(Share(l));
        }
        let n = x.len();
        prop_assert_eq!(reconstruct(&sum).unwrap(), (0..n).map(|i| x[i].wrapping_add(y[i])).collect::<Vec<_>>());
        prop_assert_eq!(reconstruct(&diff).unwrap(), (0..n).map(|i| x[i].wrapping_sub(y[i])).collect::<Vec<_>>());
        prop_assert_eq!(reconstruct(&lin).unwrap(), (0..n).map(|i| x[i].wrapping_mul(c).wrapping_add(c)).collect::<Vec<_>>());
    }
}

/// The bilinear form's masks stay streams until used (the material holds only `C` and the
/// block norms), and the form and the dealer, working a pass of columns at a time (passes
/// within blocks wider than one pass) and opening the rows a group of columns at a time
/// (groups across blocks), still give the plaintext scores, per-block products, block norms and
/// subset sums, for 2, 3 and 4 servers, split by blocks or not, over more rows than one
/// parallel task of mask columns (64), with the inputs held, drawn from seeds (every server but
/// the last) or spilled to disk (the last).
#[test]
fn bilinear_masks_are_streamed_and_passes_add_up() {
    use ppea::mpc::beaver::{Bilinear, BilinearOutput, RowAudit};
    use ppea::mpc::correlated::Stream;
    use ppea::mpc::row_share::{RowShare, Spill};
    // Server `s`'s share of `v` (rows x d): a seed's stream for all but the last, whose
    // correction is spilled; or the words of `held`.
    let compressed = |v: &[u64], rows: usize, k: usize, s: usize, salt: u8| -> RowShare {
        let stream = |t: usize| Stream::new(Seed([salt + t as u8; 32]), 0, 0, v.len());
        if s + 1 < k {
            return RowShare::Seeded(stream(s));
        }
        let mut last = v.to_vec();
        for t in 0..k - 1 {
            ppea::mpc::ring::sub_assign(&mut last, &stream(t).draw());
        }
        let spill = Spill::create(&std::env::temp_dir(), rows, v.len() / rows).unwrap();
        spill.write_rows(0, &last).unwrap();
        RowShare::Spilled(Arc::new(spill))
    };
    let (n, m, per, d) = (70usize, 90usize, 3usize, 300usize);
    let blocks = vec![100usize, 150, 50];
    let mut prg = Prg::new(&Seed([4; 32]), 1);
    let x = prg.vec(n * d);
    let y = prg.vec(m * d);
    let cols: Vec<u32> = (0..n * per)
        .map(|_| (prg.next_u64() % m as u64) as u32)
        .collect();
    let pairs = Pairs::sparse(n, m, per, cols).unwrap();
    let np = pairs.len();
    // (servers, split, words per exchange, shares compressed): groups of 300 columns (one),
    // 7 columns (across blocks and the subsets' positions) and 1 column in 2 exchanges.
    let cases = [
        (2usize, true, 1usize << 24, false),
        (3, false, (n + m) * 7, true),
        (4, true, (n + m) * 7 + 5, true),
        (2, false, 100, true),
        (4, false, 1 << 24, false),
    ];
    for (k, split, chunk, compress) in cases {
        let req = Request::Bilinear {
            d,
            pairs: pairs.clone(),
            blocks: blocks.clone(),
            split,
        };
        let mats = Dealer::new(k).unwrap().deal_all(&req).unwrap();
        let per_pair = if split { blocks.len() } else { 1 };
        let held = np * per_pair + (n + m) * blocks.len();
        for mat in &mats {
            assert_eq!(mat.held_words(), held, "only C and the norms are held");
        }
        let sx = share_with(&x, k, &mut prg);
        let sy = share_with(&y, k, &mut prg);
        let audit = RowAudit {
            blocks: blocks.clone(),
            subsets: 2,
        };
        let parties: Vec<Bilinear> = mats
            .into_iter()
            .enumerate()
            .map(|(s, mat)| {
                let (xs, ys) = if compress {
                    (compressed(&x, n, k, s, 10), compressed(&y, m, k, s, 20))
                } else {
                    (
                        RowShare::Held(sx[s].0.clone()),
                        RowShare::Held(sy[s].0.clone()),
                    )
                };
                let (p, a) = (pairs.clone(), audit.clone());
                if split {
                    Bilinear::split(s, xs, ys, d, p, a, mat).unwrap()
                } else {
                    Bilinear::with_audit(s, xs, ys, d, p, a, mat).unwrap()
                }
                .with_chunk(chunk)
                .with_min_group(1)
            })
            .collect();
        let (outs, _): (Vec<BilinearOutput>, _) = run_lockstep(parties).unwrap();
        let sum = |get: &dyn Fn(&BilinearOutput) -> Vec<u64>| {
            outs.iter().fold(None::<Vec<u64>>, |acc, o| {
                let v = get(o);
                Some(match acc {
                    None => v,
                    Some(mut a) => {
                        ppea::mpc::ring::add_assign(&mut a, &v);
                        a
                    }
                })
            })
        };
        let scores = sum(&|o| o.scores.clone()).unwrap();
        let per_block = sum(&|o| o.blocks.clone().unwrap_or_default()).unwrap();
        assert_eq!(per_block.len(), if split { np * blocks.len() } else { 0 });
        let norms = sum(&|o| o.audit.as_ref().unwrap().norms.clone()).unwrap();
        let sums = sum(&|o| o.audit.as_ref().unwrap().sums.clone()).unwrap();
        let subsets = &outs[0].audit.as_ref().unwrap().subsets;
        assert_eq!(subsets.len(), 2);
        assert!(
            outs.iter()
                .all(|o| &o.audit.as_ref().unwrap().subsets == subsets)
        );
        assert!(
            subsets
                .iter()
                .all(|s| s.len() > d / 4 && s.len() < 3 * d / 4)
        );
        for (r, row) in x.chunks(d).chain(y.chunks(d)).enumerate() {
            for (j, set) in subsets.iter().enumerate() {
                let want = set
                    .iter()
                    .fold(0u64, |a, &t| a.wrapping_add(row[t as usize]));
                assert_eq!(
                    sums[r * 2 + j],
                    want,
                    "k={k} chunk {chunk} subset sum {r} {j}"
                );
            }
        }
        let mut at = 0;
        for (b, &len) in blocks.iter().enumerate() {
            for p in (0..np).filter(|_| split) {
                let (i, j) = pairs.pair(p);
                let dot = ppea::mpc::ring::dot(
                    &x[i * d + at..i * d + at + len],
                    &y[j * d + at..j * d + at + len],
                );
                assert_eq!(per_block[b * np + p], dot, "k={k} block {b} pair {p}");
            }
            for (r, row) in x.chunks(d).chain(y.chunks(d)).enumerate() {
                let v = &row[at..at + len];
                let nrm = ppea::mpc::ring::dot(v, v);
                assert_eq!(norms[r * blocks.len() + b], nrm, "k={k} norm {r} {b}");
            }
            at += len;
        }
        for (p, score) in scores.iter().enumerate() {
            let (i, j) = pairs.pair(p);
            let dot = ppea::mpc::ring::dot(&x[i * d..(i + 1) * d], &y[j * d..(j + 1) * d]);
            assert_eq!(*score, dot, "k={k} pair {p}");
        }
    }
}
