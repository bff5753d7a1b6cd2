//! Measured benchmarks of the secure bilinear form and of comparisons, all servers and the
//! dealer in one process (see `scripts/bench.sh` and `docs/benchmarks.md`).
//!
//! `seconds` covers the whole computation: dealer seeds, material generation and transfer, and
//! the online protocol. `online_seconds` runs from the moment the last server holds its
//! material to the moment the last server has its output, so it excludes waiting for the dealer.

use crate::error::Result;
use crate::mpc::beaver::Bilinear;
use crate::mpc::correlated::Request;
use crate::mpc::local::run_local_with;
use crate::mpc::pairs::Pairs;
use crate::mpc::prg::Prg;
use crate::mpc::row_share::RowShare;
use crate::mpc::source::Correlation;
use serde::Serialize;
use std::time::Instant;

/// Result line of the bilinear-form benchmark.
#[derive(Debug, Serialize)]
pub struct BilinearReport {
    /// Always "bilinear".
    pub bench: &'static str,
    /// Number of compute servers.
    pub servers: usize,
    /// Where the correlations come from: "dealer", "ot" or "replicated".
    pub correlation: &'static str,
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

/// Result line of the pair-kernel benchmark.
#[derive(Debug, Serialize)]
pub struct PairKernelReport {
    /// Always "pair-kernel".
    pub bench: &'static str,
    /// Rows per side.
    pub rows: usize,
    /// Candidates per row, listed both ways (as the alignment lists them).
    pub per_row: usize,
    /// Pairs: `2 * rows * per_row`.
    pub pairs: usize,
    /// Columns of one pass (each row of a pass is `2 * columns` words, as in the form).
    pub columns: usize,
    /// One pass over every pair, wall time.
    pub seconds: f64,
    /// Partner-row bytes read per second.
    pub gb_per_s: f64,
    /// Seconds for a row of 648 words (the default model's width) in passes this wide.
    pub seconds_per_648: f64,
}

/// One server's local work in the bilinear form: a pass of `columns` columns over every pair
/// of `rows` rows per side with `per_row` random candidates each, listed both ways (the
/// kernel of [`Pairs::accumulate_dots`]). Its speed depends on how far apart the partner rows
/// are and how long each is, which is what the pass width ([`crate::mpc::correlated::pass_columns`]) trades
/// against memory.
pub fn pair_kernel(rows: usize, per_row: usize, columns: usize) -> Result<PairKernelReport> {
    if rows == 0 || per_row == 0 || columns == 0 {
        return Err(crate::error::Error::invalid(
            "pair-kernel: rows, candidates and columns must be positive",
        ));
    }
    let mut prg = Prg::fresh();
    let mut partner = || (prg.next_u64() % rows as u64) as u32;
    let n = rows * per_row;
    let mut r = Vec::with_capacity(2 * n);
    let mut c = Vec::with_capacity(2 * n);
    for i in 0..rows as u32 {
        for _ in 0..per_row {
            r.push(i);
            c.push(partner());
        }
    }
    for j in 0..rows as u32 {
        for _ in 0..per_row {
            r.push(partner());
            c.push(j);
        }
    }
    let pairs = Pairs::list(rows, rows, r, c)?;
    let stride = 2 * columns;
    let mut prg = Prg::fresh();
    let (p, q) = (prg.vec(rows * stride), prg.vec(rows * stride));
    let mut out = vec![0u64; pairs.len()];
    let t0 = Instant::now();
    pairs.accumulate_dots(&p, &q, stride, &mut out);
    let seconds = t0.elapsed().as_secs_f64();
    std::hint::black_box(&out);
    Ok(PairKernelReport {
        bench: "pair-kernel",
        rows,
        per_row,
        pairs: pairs.len(),
        columns,
        seconds,
        gb_per_s: (pairs.len() * stride * 8) as f64 / seconds / 1e9,
        seconds_per_648: seconds * 648usize.div_ceil(columns) as f64,
    })
}

/// Result line of the comparison benchmark.
#[derive(Debug, Serialize)]
pub struct CompareReport {
    /// Always "compare".
    pub bench: &'static str,
    /// Number of compute servers.
    pub servers: usize,
    /// Where the correlations come from: "dealer", "ot" or "replicated" (the last two made by
    /// the servers, in the whole time but not the online time).
    pub correlation: &'static str,
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
pub async fn bilinear(
    k: usize,
    correlation: Correlation,
    n: usize,
    m: usize,
    d: usize,
) -> Result<BilinearReport> {
    let t0 = Instant::now();
    let run = run_local_with(k, correlation, move |mut eng| async move {
        let mut prg = Prg::fresh();
        let x = prg.vec(n * d);
        let y = prg.vec(m * d);
        let pairs = Pairs::dense(n, m);
        let mat = eng
            .prepare(&Request::Bilinear {
                d,
                pairs: pairs.clone(),
                blocks: Vec::new(),
                split: false,
            })
            .await?;
        let prepared = Instant::now();
        let me = eng.me();
        let z = eng
            .run(Bilinear::new(
                me,
                RowShare::Held(x),
                RowShare::Held(y),
                d,
                pairs,
                mat,
            )?)
            .await?;
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
        correlation: correlation.name(),
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
pub async fn compare(
    k: usize,
    correlation: Correlation,
    count: usize,
    ell: u32,
) -> Result<CompareReport> {
    let t0 = Instant::now();
    let run = run_local_with(k, correlation, move |mut eng| async move {
        let mut prg = Prg::fresh();
        let x = prg.vec(count);
        let cmp = eng.prepare_compare(count, ell).await?;
        let conv = eng.prepare(&Request::B2a { n: count }).await?;
        let prepared = Instant::now();
        let me = eng.me();
        let bits = eng.compare_with(x, ell, cmp).await?;
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
        correlation: correlation.name(),
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

/// Result line of the silent-OT benchmark.
#[derive(Debug, Serialize)]
pub struct SilentOtReport {
    /// Always "silent-ot".
    pub bench: &'static str,
    /// Correlated OTs made (whole iterations, at least the count asked).
    pub count: usize,
    /// Iterations run.
    pub iterations: usize,
    /// The sender's time in its iterations.
    pub sender_seconds: f64,
    /// The receiver's time in its iterations.
    pub receiver_seconds: f64,
    /// `count` over the larger of the two (each side runs on its own machine).
    pub per_s: f64,
    /// Bytes the sender sent per OT made (the receiver sends nothing; the IKNP batch that
    /// seeds the link is not counted).
    pub bytes_per_ot: f64,
}

/// Correlated OTs on one link from the silent extension ([`crate::mpc::ot::silent`]), seeded
/// by an IKNP batch; both sides run here, one after the other, over both cores. After each
/// iteration its OTs are taken from the pool, as a job takes them, and checked as random OTs
/// (untimed).
pub fn silent_ot(count: usize) -> Result<SilentOtReport> {
    use crate::error::{Error, PeerName};
    use crate::mpc::ot::{extension, silent};
    let p = silent::PARAMS;
    let (bs, m1) = extension::receiver_setup(PeerName::Server(0));
    let (mut snd, m2) = extension::sender_setup(&m1, PeerName::Server(1))?;
    let mut rcv = extension::receiver_finish(bs, &m2, PeerName::Server(0))?;
    let words = silent::boot_words(&p);
    let (msg, rb) = rcv.extend(&Prg::fresh().vec(words));
    let sb = snd.extend(&msg, words)?;
    let (mut s, mut r) = (
        silent::SilentSender::new(p, sb)?,
        silent::SilentReceiver::new(p, rb)?,
    );
    let iterations = silent::iterations_for(&p, 0, count.max(1));
    let (mut ts, mut tr, mut bytes, mut made) = (0.0, 0.0, 0u64, 0usize);
    for _ in 0..iterations {
        let t0 = Instant::now();
        let m = s.iterate();
        ts += t0.elapsed().as_secs_f64();
        bytes += 8 * m.len() as u64;
        let t0 = Instant::now();
        r.absorb(&m)?;
        tr += t0.elapsed().as_secs_f64();
        // Check every OT, as random OTs taken from the pool (as a job takes them; not timed).
        let words = s.available() / 64;
        made += 64 * words;
        let choices = Prg::fresh().vec(words);
        let (d, rb) = r.extend(&choices)?;
        let sb = s.extend(&d, words, PeerName::Server(1))?;
        let (got, pairs) = (rb.random(), sb.random());
        let ok = got
            .iter()
            .zip(&pairs)
            .enumerate()
            .all(|(i, (g, (x0, x1)))| {
                let c = choices[i / 64] >> (i % 64) & 1 == 1;
                g == if c { x1 } else { x0 }
            });
        if !ok {
            return Err(Error::invalid("a silent OT does not hold its correlation"));
        }
    }
    Ok(SilentOtReport {
        bench: "silent-ot",
        count: made,
        iterations,
        sender_seconds: ts,
        receiver_seconds: tr,
        per_s: made as f64 / ts.max(tr),
        bytes_per_ot: bytes as f64 / made as f64,
    })
}

/// Result line of the OT-triple benchmark (dealer-free correlations, issue 9's foundation).
#[derive(Debug, Serialize)]
pub struct OtTriplesReport {
    /// Always "ot-triples".
    pub bench: &'static str,
    /// Always 2 (the OT code pairs two servers).
    pub servers: usize,
    /// Where the correlations come from: always "ot".
    pub correlation: &'static str,
    /// Multiplication triples over `Z_2^64` produced.
    pub count: usize,
    /// Base OTs and IKNP setup, both directions, wall time.
    pub setup_seconds: f64,
    /// Everything (setup, extension, Gilboa products) with both servers' work on one thread.
    pub seconds: f64,
    /// `count / seconds`.
    pub per_s: f64,
    /// Bytes one server sent to the other (largest of the two).
    pub bytes_per_server: u64,
    /// `bytes_per_server / count`.
    pub bytes_per_triple: f64,
}

/// Multiplication triples over `Z_2^64` between two servers from OT alone (Chou-Orlandi base
/// OTs, IKNP extension, two Gilboa products per triple for the cross terms `a_0 b_1` and
/// `a_1 b_0`), both servers' work run on this thread (the messages are counted, not sent).
/// Every triple is checked (`c_0 + c_1 = (a_0 + a_1)(b_0 + b_1)`).
pub fn ot_triples(count: usize) -> Result<OtTriplesReport> {
    use crate::error::Error;
    use crate::error::PeerName;
    use crate::mpc::ot::extension::{receiver_finish, receiver_setup, sender_setup};
    let t0 = Instant::now();
    let mut sent = [0u64; 2];
    // Direction 0 -> 1: server 0 sends (its `a`), server 1 receives with choices `b_1`.
    let (base01, m1) = receiver_setup(PeerName::Server(0));
    let (mut snd01, m2) = sender_setup(&m1, PeerName::Server(1))?;
    let mut rcv01 = receiver_finish(base01, &m2, PeerName::Server(0))?;
    sent[1] += 8 * m1.len() as u64;
    sent[0] += 8 * m2.len() as u64;
    // Direction 1 -> 0.
    let (base10, m1) = receiver_setup(PeerName::Server(1));
    let (mut snd10, m2) = sender_setup(&m1, PeerName::Server(0))?;
    let mut rcv10 = receiver_finish(base10, &m2, PeerName::Server(1))?;
    sent[0] += 8 * m1.len() as u64;
    sent[1] += 8 * m2.len() as u64;
    let setup_seconds = t0.elapsed().as_secs_f64();
    let mut prg = Prg::fresh();
    let mut done = 0;
    const BATCH: usize = 1 << 14;
    while done < count {
        let n = BATCH.min(count - done);
        let (a0, b0, a1, b1) = (prg.vec(n), prg.vec(n), prg.vec(n), prg.vec(n));
        // a0 * b1: server 1 receives with choices b1.
        let (u, rb) = rcv01.extend(&b1);
        sent[1] += 8 * u.len() as u64;
        let sb = snd01.extend(&u, n)?;
        let (d, x0) = sb.gilboa(&a0)?;
        sent[0] += 8 * d.len() as u64;
        let y1 = rb.gilboa(&d)?;
        // a1 * b0: server 0 receives with choices b0.
        let (u, rb) = rcv10.extend(&b0);
        sent[0] += 8 * u.len() as u64;
        let sb = snd10.extend(&u, n)?;
        let (d, x1) = sb.gilboa(&a1)?;
        sent[1] += 8 * d.len() as u64;
        let y0 = rb.gilboa(&d)?;
        if !crate::mpc::ot::triples_multiply([&a0, &a1], [&b0, &b1], [&x0, &x1], [&y0, &y1]) {
            return Err(Error::invalid("an OT triple does not multiply"));
        }
        done += n;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let bytes = sent[0].max(sent[1]);
    Ok(OtTriplesReport {
        bench: "ot-triples",
        servers: 2,
        correlation: "ot",
        count,
        setup_seconds,
        seconds,
        per_s: count as f64 / seconds,
        bytes_per_server: bytes,
        bytes_per_triple: bytes as f64 / count.max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ot_triples_multiply_and_cost_what_iknp_and_gilboa_cost() {
        let r = super::ot_triples(1000).unwrap();
        assert_eq!(r.count, 1000);
        // Per triple and direction: 64 OTs x 128 bits of extension (1 KiB) plus 64 correlation
        // words (512 B); each server sends one of each, plus setup (base OTs, 32-byte points).
        let per_triple = 1024 + 512;
        let setup = r.bytes_per_server - 1000 * per_triple;
        assert!(
            r.bytes_per_server > 1000 * per_triple && setup < 2 * 129 * 32 + 64,
            "{r:?}"
        );
    }
}

/// Result line of the slot-products benchmark.
#[derive(Debug, Serialize)]
pub struct SlotProductsReport {
    /// Always "slot-products".
    pub bench: &'static str,
    /// Number of compute servers.
    pub servers: usize,
    /// Rows per side.
    pub n: usize,
    /// Row length.
    pub d: usize,
    /// Distinct pairs (each side's rows with `per_row` random partners, listed both ways).
    pub pairs: usize,
    /// Returned ciphertexts per evaluator and encryptor, and the most of one slot ciphertext.
    pub blocks: usize,
    /// The most rounds of one slot ciphertext.
    pub max_rounds: usize,
    /// Plaintexts one evaluator builds per peer (one inverse and three forward NTTs each,
    /// modulo `T`).
    pub plaintexts: u64,
    /// Every server's encryption, one after the other (both cores each).
    pub encrypt_seconds: f64,
    /// Every server's evaluation of its peers' ciphertexts, one after the other.
    pub evaluate_seconds: f64,
    /// Every server's decryption of its results, one after the other.
    pub decrypt_seconds: f64,
    /// All of it.
    pub seconds: f64,
    /// Bytes one server sends (ciphertexts to every peer, results to every peer).
    pub bytes_per_server: u64,
    /// `bytes_per_server / pairs`.
    pub bytes_per_pair: f64,
}

/// Shares modulo `T` of `<X_i, Y_j>` for random candidate pairs of `n` rows per side with
/// `per_row` random partners each (both sides' lists), by slot products
/// ([`crate::mpc::he::slots`]): every server's steps run on this thread one after the other,
/// each over both cores, and the messages are handed over, not sent. A thousand items are
/// checked against the plaintext (untimed).
pub fn slot_products(k: usize, n: usize, per_row: usize, d: usize) -> Result<SlotProductsReport> {
    use crate::error::Error;
    use crate::mpc::he::modulus::Modulus;
    use crate::mpc::he::orient::orient;
    use crate::mpc::he::slots::{SlotPlan, SlotProducts, T, share_mod_t};
    use crate::mpc::protocol::{Protocol, Step};
    use std::collections::HashSet;
    use std::sync::Arc;
    if n == 0 || per_row == 0 || per_row > n {
        return Err(Error::invalid(
            "slot-products: rows must be positive and at least the candidates per row",
        ));
    }
    let mut prg = Prg::fresh();
    let mut seen = HashSet::new();
    let mut pairs = Vec::new();
    for side in 0..2 {
        for r in 0..n {
            let mut got = 0;
            while got < per_row {
                let other = (prg.next_u64() % n as u64) as usize;
                let pair = if side == 0 { (r, other) } else { (other, r) };
                if seen.insert(pair) {
                    pairs.push(pair);
                    got += 1;
                } else if side == 0 {
                    continue;
                } else {
                    got += 1;
                }
            }
        }
    }
    let items = orient(n, n, pairs.iter().copied());
    let plan = Arc::new(SlotPlan::new(2 * n, d, &items)?);
    let tm = Modulus::new(T);
    let rows = 2 * n;
    let z: Vec<u64> = (0..rows * d).map(|_| prg.next_u64() % T).collect();
    let shares = share_mod_t(&mut prg, k, &z);
    let own: Vec<Vec<u64>> = shares.clone();
    let t0 = Instant::now();
    let mut states = Vec::new();
    let mut round1 = Vec::new();
    for (s, sh) in shares.into_iter().enumerate() {
        match SlotProducts::new(s, k, plan.clone(), sh)?.start()? {
            Step::Send(p, m) => {
                states.push(p);
                round1.push(m);
            }
            _ => return Err(Error::invalid("slot-products: the first step sends")),
        }
    }
    let encrypt_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut next = Vec::new();
    let mut payloads = Vec::new();
    for p in states {
        match p.receive(round1.clone())? {
            Step::SendEach(p, each, _) => {
                next.push(p);
                payloads.push(each);
            }
            _ => return Err(Error::invalid("slot-products: the second step returns")),
        }
    }
    drop(round1);
    let evaluate_seconds = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let mut outs = Vec::new();
    for (me, p) in next.into_iter().enumerate() {
        let incoming = (0..k)
            .map(|s| std::mem::take(&mut payloads[s][me]))
            .collect();
        match p.receive(incoming)? {
            Step::Done(o) => outs.push(o),
            _ => return Err(Error::invalid("slot-products: the third step finishes")),
        }
    }
    let decrypt_seconds = t2.elapsed().as_secs_f64();
    let seconds = t0.elapsed().as_secs_f64();
    let dot = |a: &[u64], b: &[u64]| {
        a.iter()
            .zip(b)
            .fold(0u64, |acc, (&x, &y)| tm.add(acc, tm.mul(x, y)))
    };
    for i in (0..items.len()).step_by((items.len() / 1000).max(1)) {
        let (q, p) = (items[i].0 as usize, items[i].1 as usize);
        let mut sum = 0;
        for (s, sh) in own.iter().enumerate() {
            sum = tm.add(sum, outs[s][i]);
            sum = tm.add(sum, dot(&sh[p * d..(p + 1) * d], &sh[q * d..(q + 1) * d]));
        }
        if sum != dot(&z[p * d..(p + 1) * d], &z[q * d..(q + 1) * d]) {
            return Err(Error::invalid(format!(
                "slot-products: item {i} differs from the plaintext"
            )));
        }
    }
    let bytes_per_server = 8 * (k as u64 - 1) * (plan.words_in() + plan.words_back());
    Ok(SlotProductsReport {
        bench: "slot-products",
        servers: k,
        n,
        d,
        pairs: items.len(),
        blocks: plan.blocks(),
        max_rounds: plan.max_rounds(),
        plaintexts: plan.plaintexts(),
        encrypt_seconds,
        evaluate_seconds,
        decrypt_seconds,
        seconds,
        bytes_per_server,
        bytes_per_pair: bytes_per_server as f64 / items.len() as f64,
    })
}
