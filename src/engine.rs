//! A compute server's high-level API: shared-value operations that fetch their correlated
//! randomness and run the matching protocol.
//!
//! Pipeline code calls these methods; each one is "fetch material (offline), run a state machine
//! (online)". Benchmarks that time the online phase alone call [`Engine::prepare`] and
//! [`Engine::run`] separately. All values are this server's additive shares; bit vectors returned
//! by comparisons are arithmetic shares of 0/1 unless the name says `bits` (boolean, bit-sliced).

use crate::beaver::{Bilinear, Mul};
use crate::channel::Transport;
use crate::compare::{B2a, Compare};
use crate::correlated::{Correlations, Material, Request};
use crate::error::{Error, Result};
use crate::pairs::Pairs;
use crate::protocol::{Protocol, Session, Stats, Step, check_lengths, open_sum};
use crate::share::{Share, add_public_scalar};
use crate::truncate::Truncate;

/// Opens shared values to all servers (used for outputs that are public by design and in tests).
pub struct Open(Vec<u64>);

impl Protocol for Open {
    type Output = Vec<u64>;
    fn start(self) -> Result<Step<Self>> {
        let msg = self.0.clone();
        Ok(Step::Send(self, msg))
    }
    fn receive(self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        check_lengths(&incoming, self.0.len(), "opening")?;
        Ok(Step::Done(open_sum(&incoming)))
    }
}

/// One compute server in one job: a metered session and a correlated-randomness source.
pub struct Engine<T: Transport, C: Correlations> {
    session: Session<T>,
    corr: C,
}

impl<T: Transport, C: Correlations> std::fmt::Debug for Engine<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine(server {} of {})", self.me(), self.servers())
    }
}

fn same_len(a: &[u64], b: &[u64], what: &str) -> Result<()> {
    if a.len() != b.len() {
        return Err(Error::invalid(format!(
            "{what}: operands have {} and {} values",
            a.len(),
            b.len()
        )));
    }
    Ok(())
}

impl<T: Transport, C: Correlations> Engine<T, C> {
    /// Combines a session and a correlation source.
    pub fn new(session: Session<T>, corr: C) -> Self {
        Engine { session, corr }
    }

    /// This server's index.
    pub fn me(&self) -> usize {
        self.session.me()
    }

    /// Number of servers.
    pub fn servers(&self) -> usize {
        self.session.servers()
    }

    /// Traffic counters so far.
    pub fn stats(&self) -> Stats {
        self.session.stats()
    }

    /// The underlying session (to exchange job-level messages).
    pub fn session(&mut self) -> &mut Session<T> {
        &mut self.session
    }

    /// Fetches material for `req` (the offline phase).
    pub async fn prepare(&mut self, req: &Request) -> Result<Material> {
        self.corr.fetch(&mut self.session, req).await
    }

    /// Runs a protocol state machine (the online phase).
    pub async fn run<P: Protocol>(&mut self, p: P) -> Result<P::Output> {
        self.session.run(p).await
    }

    /// Reveals shared values to all servers.
    pub async fn open(&mut self, x: &[u64]) -> Result<Vec<u64>> {
        self.run(Open(x.to_vec())).await
    }

    /// Element-wise product `x * y` (no truncation).
    pub async fn mul(&mut self, x: &[u64], y: &[u64]) -> Result<Vec<u64>> {
        same_len(x, y, "product")?;
        self.mul_fanout(x, y.to_vec(), 1).await
    }

    /// Products of `x` with `fanout` right vectors stored back to back in `ys`, opening `x` once.
    pub async fn mul_fanout(&mut self, x: &[u64], ys: Vec<u64>, fanout: usize) -> Result<Vec<u64>> {
        let req = Request::Beaver { n: x.len(), fanout };
        let mat = self.prepare(&req).await?;
        let me = self.me();
        self.run(Mul::new(me, x.to_vec(), ys, fanout, mat)?).await
    }

    /// `<x_i, y_j>` for every pair, over row-major `x` (rows x d) and `y` (cols x d).
    pub async fn bilinear(
        &mut self,
        x: &[u64],
        y: &[u64],
        d: usize,
        pairs: &Pairs,
    ) -> Result<Vec<u64>> {
        let req = Request::Bilinear {
            d,
            pairs: pairs.clone(),
        };
        let mat = self.prepare(&req).await?;
        let me = self.me();
        self.run(Bilinear::new(
            me,
            x.to_vec(),
            y.to_vec(),
            d,
            pairs.clone(),
            mat,
        )?)
        .await
    }

    /// Dense matrix product `x (n x d) * y (d x m)`, row-major output `n x m`.
    pub async fn matmul(
        &mut self,
        x: &[u64],
        y: &[u64],
        n: usize,
        d: usize,
        m: usize,
    ) -> Result<Vec<u64>> {
        if y.len() != d * m {
            return Err(Error::invalid(
                "matrix product: right operand has the wrong size",
            ));
        }
        let mut yt = vec![0u64; m * d];
        for r in 0..d {
            for c in 0..m {
                yt[c * d + r] = y[r * m + c];
            }
        }
        self.bilinear(x, &yt, d, &Pairs::dense(n, m)).await
    }

    /// Truncates by `frac` bits: `floor(x / 2^frac)` or one more (see [`crate::truncate`]).
    pub async fn truncate(&mut self, x: &[u64], frac: u32) -> Result<Vec<u64>> {
        let mat = self.prepare(&Request::Trunc { n: x.len(), frac }).await?;
        let me = self.me();
        self.run(Truncate::new(me, x.to_vec(), frac, mat)?).await
    }

    /// Boolean, bit-sliced shares of `[x < 0]` for values of bit width `ell`.
    pub async fn ltz_bits(&mut self, x: &[u64], ell: u32) -> Result<Vec<u64>> {
        let mat = self.prepare(&Request::Compare { n: x.len(), ell }).await?;
        let me = self.me();
        self.run(Compare::new(me, x.to_vec(), ell, mat)?).await
    }

    /// Arithmetic shares of 0/1 from boolean bit-sliced shares of `n` bits.
    pub async fn b2a(&mut self, bits: &[u64], n: usize) -> Result<Vec<u64>> {
        let mat = self.prepare(&Request::B2a { n }).await?;
        let me = self.me();
        self.run(B2a::new(me, bits.to_vec(), n, mat)?).await
    }

    /// Arithmetic shares of `[x < 0]`; `x` must lie in `[-2^(ell-1), 2^(ell-1))`.
    pub async fn ltz(&mut self, x: &[u64], ell: u32) -> Result<Vec<u64>> {
        let bits = self.ltz_bits(x, ell).await?;
        self.b2a(&bits, x.len()).await
    }

    /// Arithmetic shares of `[x < y]`; `x - y` must fit in `ell` signed bits.
    pub async fn lt(&mut self, x: &[u64], y: &[u64], ell: u32) -> Result<Vec<u64>> {
        same_len(x, y, "comparison")?;
        let diff: Vec<u64> = x.iter().zip(y).map(|(a, b)| a.wrapping_sub(*b)).collect();
        self.ltz(&diff, ell).await
    }

    /// Arithmetic shares of `[x >= t]` for a public threshold `t` (same scale as `x`).
    pub async fn threshold(&mut self, x: &[u64], t: u64, ell: u32) -> Result<Vec<u64>> {
        let mut diff = x.to_vec();
        add_public_scalar(&mut diff, t.wrapping_neg(), self.me());
        let below = self.ltz(&diff, ell).await?;
        let mut above: Vec<u64> = below.iter().map(|b| b.wrapping_neg()).collect();
        add_public_scalar(&mut above, 1, self.me());
        Ok(above)
    }

    /// Oblivious select: `bit ? x : y` for an arithmetic-shared 0/1 `bit`.
    pub async fn select(&mut self, bit: &[u64], x: &[u64], y: &[u64]) -> Result<Vec<u64>> {
        same_len(x, y, "select")?;
        same_len(bit, x, "select")?;
        let diff: Vec<u64> = x.iter().zip(y).map(|(a, b)| a.wrapping_sub(*b)).collect();
        let mut out = self.mul(bit, &diff).await?;
        crate::ring::add_assign(&mut out, y);
        Ok(out)
    }

    /// Maximum and arg-maximum of each row of a row-major `rows x len` matrix of shared values
    /// whose pairwise differences fit in `ell` signed bits. Returns shares of the maximum and of
    /// its column index (the first one on ties). A tournament: `ceil(log2 len)` levels, each one
    /// batched comparison and one select of value and index together.
    pub async fn argmax(
        &mut self,
        values: &[u64],
        len: usize,
        ell: u32,
    ) -> Result<(Vec<u64>, Vec<u64>)> {
        if len == 0 || !values.len().is_multiple_of(len) {
            return Err(Error::invalid(format!(
                "argmax: {} values do not form rows of {len}",
                values.len()
            )));
        }
        let rows = values.len() / len;
        let me = self.me();
        let mut val: Vec<Share> = (0..len)
            .map(|c| Share((0..rows).map(|r| values[r * len + c]).collect()))
            .collect();
        let mut idx: Vec<Share> = (0..len)
            .map(|c| Share(vec![if me == 0 { c as u64 } else { 0 }; rows]))
            .collect();
        while val.len() > 1 {
            let pairs = val.len() / 2;
            // u = column 2t, v = column 2t+1; keep v where u < v.
            let mut diff = Vec::with_capacity(pairs * rows);
            for t in 0..pairs {
                let (u, v) = (&val[2 * t].0, &val[2 * t + 1].0);
                diff.extend(u.iter().zip(v).map(|(a, b)| a.wrapping_sub(*b)));
            }
            let bit = self.ltz(&diff, ell).await?;
            let mut ys = vec![0u64; 2 * pairs * rows];
            let (vd, id) = ys.split_at_mut(pairs * rows);
            for t in 0..pairs {
                for r in 0..rows {
                    let p = t * rows + r;
                    vd[p] = val[2 * t + 1].0[r].wrapping_sub(val[2 * t].0[r]);
                    id[p] = idx[2 * t + 1].0[r].wrapping_sub(idx[2 * t].0[r]);
                }
            }
            let prod = self.mul_fanout(&bit, ys, 2).await?;
            let (pv, pi) = prod.split_at(pairs * rows);
            let mut nval = Vec::with_capacity(val.len().div_ceil(2));
            let mut nidx = Vec::with_capacity(val.len().div_ceil(2));
            for t in 0..pairs {
                let mut v = val[2 * t].0.clone();
                crate::ring::add_assign(&mut v, &pv[t * rows..(t + 1) * rows]);
                let mut i = idx[2 * t].0.clone();
                crate::ring::add_assign(&mut i, &pi[t * rows..(t + 1) * rows]);
                nval.push(Share(v));
                nidx.push(Share(i));
            }
            if val.len() % 2 == 1 {
                nval.push(val.pop().expect("odd count"));
                nidx.push(idx.pop().expect("odd count"));
            }
            val = nval;
            idx = nidx;
        }
        let v = val.pop().expect("len >= 1").0;
        let i = idx.pop().expect("len >= 1").0;
        Ok((v, i))
    }
}
