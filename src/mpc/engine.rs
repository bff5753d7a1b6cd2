//! A compute server's high-level API: shared-value operations that fetch their correlated
//! randomness and run the matching protocol.
//!
//! Pipeline code calls these methods; each one is "fetch material (offline), run a state machine
//! (online)". Benchmarks that time the online phase alone call [`Engine::prepare`] and
//! [`Engine::run`] separately. All values are this server's additive shares; bit vectors returned
//! by comparisons are arithmetic shares of 0/1 unless the name says `bits` (boolean, bit-sliced).

use crate::error::{Error, Result};
use crate::mpc::beaver::{Bilinear, Mul};
use crate::mpc::channel::Transport;
use crate::mpc::compare::{B2a, Compare};
use crate::mpc::correlated::{Correlations, Material, Request};
use crate::mpc::millionaire::{Millionaire, MillionaireMaterial};
use crate::mpc::modular::{ModMaterial, check_residues};
use crate::mpc::pairs::Pairs;
use crate::mpc::protocol::{Protocol, Session, Stats, Step, check_lengths, open_sum};
use crate::mpc::row_share::RowShare;
use crate::mpc::share::add_public_scalar;
use crate::mpc::truncate::Truncate;

/// A comparison's material: the masked comparison's ([`Compare`]) or, with two servers and no
/// dealer, the millionaires' ([`Millionaire`]); [`Engine::prepare_compare`] picks.
#[derive(Debug)]
pub enum CompareMaterial {
    /// For [`Compare`].
    Masked(Material),
    /// For [`Millionaire`].
    Millionaire(MillionaireMaterial),
}

/// Most values one batch of a row tournament ([`Engine::max_rows`], [`Engine::argmax_onehot`])
/// compares: larger inputs run in blocks of whole rows, one after the other (more rounds, the
/// same bytes and results), so that the comparison state (about 30 words per value at the
/// first level, 2 GB at this size) stays bounded. 2^23 values are 131,072 rows of 64
/// candidates: jobs up to 65,536 entities per side run as one block.
pub const TOURNAMENT_BLOCK_VALUES: usize = 1 << 23;

/// Most values one comparison batch ([`Engine::ltz`] and everything built on it) takes: longer
/// inputs are compared in batches of this many, one after the other (more rounds, the same
/// bytes and results), so that a comparison's material and state (about 30 words per value,
/// 480 MiB per batch) stay bounded whatever the job's size. A multiple of 64 (values are
/// bit-sliced 64 to a word); a protocol constant, so every server's dealer requests agree.
/// DBP15K fr-en's largest comparison (its range checks, 0.8 M values) is one batch.
pub const COMPARE_BATCH_VALUES: usize = 1 << 21;

/// Most right-hand values one product batch ([`Engine::mul`], [`Engine::mul_fanout`]) takes:
/// longer products run in batches, one after the other (more rounds, the same bytes and
/// results), so that a product's material and messages (about 6 words per value, 192 MiB per
/// batch) stay bounded whatever the job's size (except one left value with a larger fanout,
/// which is never split). A protocol constant, so every server's dealer requests agree.
/// DBP15K fr-en's products (at most 2.7 M values) are one batch each.
pub const PRODUCT_BATCH_VALUES: usize = 1 << 22;

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
        Ok(Step::Done(open_sum(incoming)))
    }
}

/// One compute server in one job: a metered session and a correlated-randomness source.
pub struct Engine<T: Transport, C: Correlations> {
    session: Session<T>,
    corr: C,
    tournament_block: usize,
    bilinear_chunk: usize,
    bilinear_min_group: usize,
    compare_batch: usize,
    product_batch: usize,
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
        Engine {
            session,
            corr,
            tournament_block: TOURNAMENT_BLOCK_VALUES,
            bilinear_chunk: crate::mpc::beaver::BILINEAR_CHUNK_WORDS,
            bilinear_min_group: crate::mpc::correlated::MIN_PASS_COLUMNS,
            compare_batch: COMPARE_BATCH_VALUES,
            product_batch: PRODUCT_BATCH_VALUES,
        }
    }

    /// Sets the most right-hand values one product batch takes (default
    /// [`PRODUCT_BATCH_VALUES`]). Every server of a job must use the same value; tests use it
    /// to exercise several batches.
    pub fn set_product_batch(&mut self, values: usize) {
        self.product_batch = values.max(1);
    }

    /// Sets the most values one comparison batch takes (default [`COMPARE_BATCH_VALUES`],
    /// rounded up to a multiple of 64). Every server of a job must use the same value; tests
    /// use it to exercise several batches.
    pub fn set_compare_batch(&mut self, values: usize) {
        self.compare_batch = values.max(1).next_multiple_of(64);
    }

    /// Sets the words a bilinear form opens per exchange (default
    /// [`crate::mpc::beaver::BILINEAR_CHUNK_WORDS`]); every server of a job must use the same
    /// value. Tests use it to exercise several rounds.
    pub fn set_bilinear_chunk(&mut self, words: usize) {
        self.bilinear_chunk = words.max(1);
    }

    /// The words a bilinear form opens per exchange ([`Engine::set_bilinear_chunk`]).
    pub fn bilinear_chunk(&self) -> usize {
        self.bilinear_chunk
    }

    /// Sets the fewest columns a group of the bilinear form's openings takes (default
    /// [`crate::mpc::correlated::MIN_PASS_COLUMNS`]); every server of a job must use the same
    /// value. Tests use it to exercise several groups.
    pub fn set_bilinear_min_group(&mut self, columns: usize) {
        self.bilinear_min_group = columns;
    }

    /// The fewest columns per group of a bilinear form ([`Engine::set_bilinear_min_group`]).
    pub fn bilinear_min_group(&self) -> usize {
        self.bilinear_min_group
    }

    /// Sets the most values one batch of a row tournament compares (default
    /// [`TOURNAMENT_BLOCK_VALUES`]). Every server of a job must use the same value (their
    /// requests to the dealer must agree); tests use it to exercise several blocks.
    pub fn set_tournament_block(&mut self, values: usize) {
        self.tournament_block = values.max(1);
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

    /// Gives back the session (to shut its transport down).
    pub fn into_session(self) -> Session<T> {
        self.session
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
    /// Longer than one batch ([`PRODUCT_BATCH_VALUES`] right values), it runs batch by batch
    /// over slices of `x` (each with its slice of every right vector).
    pub async fn mul_fanout(&mut self, x: &[u64], ys: Vec<u64>, fanout: usize) -> Result<Vec<u64>> {
        let n = x.len();
        let per = (self.product_batch / fanout.max(1)).max(1);
        if n <= per || ys.len() != n * fanout {
            // One batch (or sizes that [`Mul::new`] refuses).
            let req = Request::Beaver { n, fanout };
            let mat = self.prepare(&req).await?;
            let me = self.me();
            return self.run(Mul::new(me, x.to_vec(), ys, fanout, mat)?).await;
        }
        // Each batch copies its slices of `ys` before writing the same positions: the results
        // go over the right factors (one vector, not two).
        let mut out = ys;
        for i0 in (0..n).step_by(per) {
            let i1 = (i0 + per).min(n);
            let len = i1 - i0;
            let yb = batch_of(&out, n, fanout, i0..i1);
            let req = Request::Beaver { n: len, fanout };
            let mat = self.prepare(&req).await?;
            let me = self.me();
            let z = self
                .run(Mul::new(me, x[i0..i1].to_vec(), yb, fanout, mat)?)
                .await?;
            put_batch(&mut out, &z, n, fanout, i0..i1);
        }
        Ok(out)
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
            blocks: Vec::new(),
            split: false,
        };
        let mat = self.prepare(&req).await?;
        let me = self.me();
        let form = Bilinear::new(
            me,
            RowShare::Held(x.to_vec()),
            RowShare::Held(y.to_vec()),
            d,
            pairs.clone(),
            mat,
        )?
        .with_chunk(self.bilinear_chunk)
        .with_min_group(self.bilinear_min_group);
        let out = self.run(form).await?;
        Ok(out.scores)
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

    /// Truncates by `frac` bits: `floor(x / 2^frac)` or one more (see [`crate::mpc::truncate`]).
    pub async fn truncate(&mut self, x: &[u64], frac: u32) -> Result<Vec<u64>> {
        let mat = self.prepare(&Request::Trunc { n: x.len(), frac }).await?;
        let me = self.me();
        self.run(Truncate::new(me, x.to_vec(), frac, mat)?).await
    }

    /// Material for `n` comparisons of width `ell` (the offline phase of [`Engine::ltz_bits`]):
    /// for a millionaires' comparison where the source makes that cheaper (two servers without
    /// a dealer), else for the masked comparison.
    pub async fn prepare_compare(&mut self, n: usize, ell: u32) -> Result<CompareMaterial> {
        self.prepare_compare_lanes(n, ell, 1).await
    }

    /// Material for `n` values compared in `lanes` (1 or 2) comparisons each: with two lanes
    /// the millionaires' comparison makes both on one set of OTs ([`Engine::ltz_offsets`]);
    /// the masked comparison takes `lanes n` comparisons.
    async fn prepare_compare_lanes(
        &mut self,
        n: usize,
        ell: u32,
        lanes: usize,
    ) -> Result<CompareMaterial> {
        let sizes = (n, ell, lanes);
        if let Some(m) = self.corr.millionaire(&mut self.session, sizes).await? {
            return Ok(CompareMaterial::Millionaire(m));
        }
        let req = Request::Compare { n: lanes * n, ell };
        Ok(CompareMaterial::Masked(self.prepare(&req).await?))
    }

    /// The online phase of [`Engine::ltz_bits`] with material from [`Engine::prepare_compare`].
    pub async fn compare_with(
        &mut self,
        x: Vec<u64>,
        ell: u32,
        mat: CompareMaterial,
    ) -> Result<Vec<u64>> {
        let me = self.me();
        match mat {
            CompareMaterial::Masked(m) => self.run(Compare::new(me, x, ell, m)?).await,
            CompareMaterial::Millionaire(m) => self.run(Millionaire::new(me, x, ell, m)?).await,
        }
    }

    /// Boolean, bit-sliced shares of `[x < 0]` for values of bit width `ell`.
    pub async fn ltz_bits(&mut self, x: &[u64], ell: u32) -> Result<Vec<u64>> {
        let mat = self.prepare_compare(x.len(), ell).await?;
        self.compare_with(x.to_vec(), ell, mat).await
    }

    /// Arithmetic shares of 0/1 from boolean bit-sliced shares of `n` bits.
    pub async fn b2a(&mut self, bits: &[u64], n: usize) -> Result<Vec<u64>> {
        let mat = self.prepare(&Request::B2a { n }).await?;
        let me = self.me();
        self.run(B2a::new(me, bits.to_vec(), n, mat)?).await
    }

    /// Arithmetic shares of `[x < 0]`; `x` must lie in `[-2^(ell-1), 2^(ell-1))`.
    /// Inputs longer than one batch ([`COMPARE_BATCH_VALUES`]) are compared batch by batch.
    pub async fn ltz(&mut self, x: &[u64], ell: u32) -> Result<Vec<u64>> {
        if x.len() <= self.compare_batch {
            let bits = self.ltz_bits(x, ell).await?;
            return self.b2a(&bits, x.len()).await;
        }
        let mut out = Vec::with_capacity(x.len());
        for part in x.chunks(self.compare_batch) {
            let bits = self.ltz_bits(part, ell).await?;
            out.extend(self.b2a(&bits, part.len()).await?);
        }
        Ok(out)
    }

    /// Arithmetic shares of `[x < 0]` for `singles`, and of `[w + o_0 < 0]` and
    /// `[w + o_1 < 0]` for shared values `w` and public offsets `offsets = [o_0, o_1]`; every
    /// compared value must lie in `[-2^(ell-1), 2^(ell-1))`. Two servers without a dealer
    /// compare each `w` against both offsets on one set of OTs (the chooser keeps its share,
    /// the other server adds the offsets: [`Millionaire`] with two lanes), about two thirds of
    /// two comparisons' OTs, after the singles. Otherwise everything is one [`Engine::ltz`] of
    /// `singles`, `w + o_0` and `w + o_1` (server 0 adds the offsets): the rounds and bytes of
    /// that many comparisons.
    pub async fn ltz_offsets(
        &mut self,
        singles: &[u64],
        w: &[u64],
        offsets: [u64; 2],
        ell: u32,
    ) -> Result<(Vec<u64>, [Vec<u64>; 2])> {
        let me = self.me();
        let (s, n) = (singles.len(), w.len());
        if !self.corr.makes_millionaire_material(self.servers()) {
            let mut x = singles.to_vec();
            for o in offsets {
                let o = if me == 0 { o } else { 0 };
                x.extend(w.iter().map(|v| v.wrapping_add(o)));
            }
            let mut all = self.ltz(&x, ell).await?;
            let second = all.split_off(s + n);
            let first = all.split_off(s);
            return Ok((all, [first, second]));
        }
        let single = if singles.is_empty() {
            Vec::new()
        } else {
            self.ltz(singles, ell).await?
        };
        let mut out = [Vec::with_capacity(n), Vec::with_capacity(n)];
        for part in w.chunks((self.compare_batch / 2).max(1)) {
            let n = part.len();
            let mat = self.prepare_compare_lanes(n, ell, 2).await?;
            let adds = match &mat {
                CompareMaterial::Millionaire(m) => m.sender() == me,
                CompareMaterial::Masked(_) => me == 0,
            };
            let x: Vec<u64> = offsets
                .iter()
                .flat_map(|&o| {
                    let o = if adds { o } else { 0 };
                    part.iter().map(move |v| v.wrapping_add(o))
                })
                .collect();
            let bits = self.compare_with(x, ell, mat).await?;
            let both = self.b2a(&bits, 2 * n).await?;
            out[0].extend_from_slice(&both[..n]);
            out[1].extend_from_slice(&both[n..]);
        }
        Ok((single, out))
    }

    /// Boolean, bit-sliced shares of `[x < 0]` for any number of values, a comparison batch
    /// ([`COMPARE_BATCH_VALUES`], a multiple of 64) at a time, the batches' words back to back.
    pub async fn ltz_bits_batched(&mut self, x: &[u64], ell: u32) -> Result<Vec<u64>> {
        let mut bits = Vec::with_capacity(x.len().div_ceil(64));
        for part in x.chunks(self.compare_batch.max(1)) {
            bits.extend(self.ltz_bits(part, ell).await?);
        }
        Ok(bits)
    }

    /// `b_i * ys[j n + i]` for `n` XOR-shared bits `b` (bit-sliced, as
    /// [`Engine::ltz_bits_batched`] gives them) and `fanout` vectors of `n` values: by the
    /// source's bit products where it has them (two servers without a dealer:
    /// [`Correlations::bit_products`]); otherwise the bits are converted to arithmetic shares
    /// ([`Engine::b2a`], a comparison batch at a time) and multiplied ([`Engine::mul_fanout`]).
    pub async fn bit_times(
        &mut self,
        bits: &[u64],
        n: usize,
        ys: Vec<u64>,
        fanout: usize,
    ) -> Result<Vec<u64>> {
        let mut out = ys;
        if self.bit_products_into(bits, n, &mut out, fanout).await? {
            return Ok(out);
        }
        let mut arith = Vec::with_capacity(n);
        for c0 in (0..n).step_by(self.compare_batch.max(1)) {
            let c1 = (c0 + self.compare_batch).min(n);
            arith.extend(self.b2a(&bits[c0 / 64..c1.div_ceil(64)], c1 - c0).await?);
        }
        self.mul_fanout(&arith, out, fanout).await
    }

    /// Products of `n` shared bits given as **arithmetic** 0/1 shares `x` (a comparison's
    /// output, a one-hot marker; any other value gives a wrong product) with `fanout` vectors of
    /// `n` values: where the source has bit products, the shares' low bits are XOR shares of the
    /// bits (reduction modulo 2 maps `Z_2^64` to `Z_2`), so no conversion is needed; otherwise
    /// Beaver products ([`Engine::mul_fanout`]).
    pub async fn mul_bits(&mut self, x: &[u64], ys: Vec<u64>, fanout: usize) -> Result<Vec<u64>> {
        let n = x.len();
        let mut bits = vec![0u64; n.div_ceil(64)];
        for (i, v) in x.iter().enumerate() {
            bits[i / 64] |= (v & 1) << (i % 64);
        }
        let mut out = ys;
        if self.bit_products_into(&bits, n, &mut out, fanout).await? {
            return Ok(out);
        }
        self.mul_fanout(x, out, fanout).await
    }

    /// [`Correlations::bit_products`] over `out` (the `fanout` vectors of `n` values, replaced
    /// by the products), a product batch ([`PRODUCT_BATCH_VALUES`] values, in whole bit words)
    /// at a time; false, with `out` untouched, if the source has none (it says so before
    /// doing anything).
    async fn bit_products_into(
        &mut self,
        bits: &[u64],
        n: usize,
        out: &mut [u64],
        fanout: usize,
    ) -> Result<bool> {
        if bits.len() != n.div_ceil(64) || out.len() != n * fanout {
            return Err(Error::invalid(format!(
                "bit products: {} bit words and {} values for {n} bits of fan-out {fanout}",
                bits.len(),
                out.len()
            )));
        }
        let per = (self.product_batch / fanout.max(1)).max(64) / 64 * 64;
        for i0 in (0..n).step_by(per) {
            let i1 = (i0 + per).min(n);
            let len = i1 - i0;
            let yb = batch_of(out, n, fanout, i0..i1);
            let words = &bits[i0 / 64..i1.div_ceil(64)];
            let Some(z) = self
                .corr
                .bit_products(&mut self.session, words, len, &yb, fanout)
                .await?
            else {
                if i0 > 0 {
                    // `out` is partly overwritten: no fallback can run on it.
                    return Err(Error::invalid(
                        "bit products: the source stopped making them within one product",
                    ));
                }
                return Ok(false);
            };
            put_batch(out, &z, n, fanout, i0..i1);
        }
        Ok(true)
    }

    /// Material for the bilinear form's scores modulo a prime over `pairs` of rows `d` long,
    /// where the source makes it for less than `C` modulo `2^64`
    /// ([`Correlations::scores_mod`]; `blocks`: the row audit's blocks, whose norms the
    /// request modulo `2^64` makes); `None` otherwise.
    pub async fn scores_mod(
        &mut self,
        d: usize,
        pairs: &Pairs,
        blocks: &[usize],
    ) -> Result<Option<ModMaterial>> {
        self.corr
            .scores_mod(&mut self.session, d, pairs, blocks)
            .await
    }

    /// Shares modulo `2^64` of the values `v` in `[-Q, Q]`, `Q = (t - 1) / 4` rounded down,
    /// whose shares modulo the odd `t < 2^62` are `x`, two servers ([`crate::mpc::modular`],
    /// "Back to `Z_2^64`"): one bit product per value, of bits each server computes alone.
    /// Values outside `[-Q, Q]` come back wrong (the caller's bound keeps them inside).
    pub async fn lift(&mut self, x: &[u64], t: u64) -> Result<Vec<u64>> {
        if self.servers() != 2 || t.is_multiple_of(2) || t >= 1 << 62 {
            return Err(Error::invalid(format!(
                "lifting shares modulo {t} takes two servers and an odd modulus below 2^62"
            )));
        }
        check_residues(x, t, "lift")?;
        let (me, q, tau) = (self.me(), (t - 1) / 4, t.div_ceil(2));
        // Server 0: `u_0 = x_0 + Q mod t`; server 1: `u_1 = x_1`. They sum to `v + Q + w t`.
        let u: Vec<u64> = if me == 0 {
            x.iter()
                .map(|&v| {
                    let s = v + q;
                    if s >= t { s - t } else { s }
                })
                .collect()
        } else {
            x.to_vec()
        };
        let n = u.len();
        // `w = 1 - c_0 c_1` for `c_s = [u_s < tau]`; `c_0 c_1 t` as the bit product of server
        // 1's bit (server 0's part of it zero) and server 0's `c_0 t` (server 1's part zero).
        let (bits, y) = if me == 0 {
            let y = u.iter().map(|&v| if v < tau { t } else { 0 }).collect();
            (vec![0u64; n.div_ceil(64)], y)
        } else {
            let mut bits = vec![0u64; n.div_ceil(64)];
            for (i, &v) in u.iter().enumerate() {
                bits[i / 64] |= ((v < tau) as u64) << (i % 64);
            }
            (bits, vec![0u64; n])
        };
        let tb = self.bit_times(&bits, n, y, 1).await?;
        // v = u_0 + u_1 - t + t c_0 c_1 - Q.
        let less = if me == 0 { t.wrapping_add(q) } else { 0 };
        Ok(u.iter()
            .zip(&tb)
            .map(|(&u, &tb)| u.wrapping_add(tb).wrapping_sub(less))
            .collect())
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
        crate::mpc::ring::add_assign(&mut out, y);
        Ok(out)
    }

    /// Maximum of each row of a row-major `rows x len` matrix of shared values whose pairwise
    /// differences fit in `ell` signed bits.
    pub async fn max_rows(&mut self, values: &[u64], len: usize, ell: u32) -> Result<Vec<u64>> {
        Ok(self.tournament(values, len, ell, false).await?.0)
    }

    /// Maximum of each row and a one-hot `rows x len` marker of its position (the first one on
    /// ties, so exactly one 1 per row).
    pub async fn argmax_onehot(
        &mut self,
        values: &[u64],
        len: usize,
        ell: u32,
    ) -> Result<(Vec<u64>, Vec<u64>)> {
        let (m, oh) = self.tournament(values, len, ell, true).await?;
        Ok((m, oh.expect("one-hot requested")))
    }

    /// Maximum of each row and its column index (the first one on ties).
    pub async fn argmax(
        &mut self,
        values: &[u64],
        len: usize,
        ell: u32,
    ) -> Result<(Vec<u64>, Vec<u64>)> {
        let (m, oh) = self.argmax_onehot(values, len, ell).await?;
        let idx = oh
            .chunks(len)
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold(0u64, |s, (t, v)| s.wrapping_add(v.wrapping_mul(t as u64)))
            })
            .collect();
        Ok((m, idx))
    }

    /// A tournament over each row: `ceil(log2 len)` levels, each one batched comparison and one
    /// fan-out product that selects the winner's value (and one-hot marker) with a single
    /// opening of the comparison bit. The winner's marker is the loser's zeroed and the winner's
    /// kept, so it stays one-hot.
    ///
    /// Rows are processed in blocks of at most [`TOURNAMENT_BLOCK_VALUES`] values (or what
    /// [`Engine::set_tournament_block`] set), one block after the other, so that the comparison
    /// state (about 30 words per value at the first level) is bounded by the block rather than
    /// by the job; a job within one block runs as one batch. Every server derives the same
    /// blocks from the sizes, so their requests to the dealer agree.
    async fn tournament(
        &mut self,
        values: &[u64],
        len: usize,
        ell: u32,
        onehot: bool,
    ) -> Result<(Vec<u64>, Option<Vec<u64>>)> {
        if len == 0 || !values.len().is_multiple_of(len) {
            return Err(Error::invalid(format!(
                "argmax: {} values do not form rows of {len}",
                values.len()
            )));
        }
        let block = (self.tournament_block / len).max(1) * len;
        if values.len() <= block {
            return self.tournament_block(values, len, ell, onehot).await;
        }
        let mut max = Vec::with_capacity(values.len() / len);
        let mut marks = onehot.then(|| Vec::with_capacity(values.len()));
        for part in values.chunks(block) {
            let (m, oh) = self.tournament_block(part, len, ell, onehot).await?;
            max.extend_from_slice(&m);
            if let (Some(all), Some(oh)) = (marks.as_mut(), oh) {
                all.extend_from_slice(&oh);
            }
        }
        Ok((max, marks))
    }

    /// [`Engine::tournament`] over one block of rows, as one batch.
    async fn tournament_block(
        &mut self,
        values: &[u64],
        len: usize,
        ell: u32,
        onehot: bool,
    ) -> Result<(Vec<u64>, Option<Vec<u64>>)> {
        let rows = values.len() / len;
        let me = self.me();
        let one = if me == 0 { 1u64 } else { 0 };
        /// A group of columns: its current maximum and the one-hot marker over its columns
        /// (slot-major: `oh[s * rows + r]`).
        struct Group {
            val: Vec<u64>,
            oh: Vec<u64>,
            width: usize,
        }
        let mut groups: Vec<Group> = (0..len)
            .map(|c| Group {
                val: (0..rows).map(|r| values[r * len + c]).collect(),
                oh: if onehot { vec![one; rows] } else { Vec::new() },
                width: 1,
            })
            .collect();
        while groups.len() > 1 {
            let pairs = groups.len() / 2;
            let n = pairs * rows;
            let mut diff = Vec::with_capacity(n);
            for t in 0..pairs {
                let (u, v) = (&groups[2 * t].val, &groups[2 * t + 1].val);
                diff.extend(u.iter().zip(v).map(|(a, b)| a.wrapping_sub(*b)));
            }
            // bit = [u < v]: the second group wins (XOR-shared, bit-sliced).
            let bits = self.ltz_bits_batched(&diff, ell).await?;
            let wmax = (0..pairs)
                .map(|t| groups[2 * t].width.max(groups[2 * t + 1].width))
                .max()
                .unwrap_or(0);
            let fanout = 1 + if onehot { 2 * wmax } else { 0 };
            let mut ys = vec![0u64; fanout * n];
            for t in 0..pairs {
                let (g0, g1) = (&groups[2 * t], &groups[2 * t + 1]);
                for r in 0..rows {
                    let i = t * rows + r;
                    ys[i] = g1.val[r].wrapping_sub(g0.val[r]);
                    if onehot {
                        for s in 0..g0.width {
                            ys[(1 + s) * n + i] = g0.oh[s * rows + r].wrapping_neg();
                        }
                        for s in 0..g1.width {
                            ys[(1 + wmax + s) * n + i] = g1.oh[s * rows + r];
                        }
                    }
                }
            }
            let prod = self.bit_times(&bits, n, ys, fanout).await?;
            let mut next = Vec::with_capacity(groups.len().div_ceil(2));
            let mut it = groups.into_iter();
            for t in 0..pairs {
                let g0 = it.next().expect("pair");
                let g1 = it.next().expect("pair");
                let mut val = g0.val;
                crate::mpc::ring::add_assign(&mut val, &prod[t * rows..(t + 1) * rows]);
                let mut oh = Vec::new();
                if onehot {
                    oh.reserve((g0.width + g1.width) * rows);
                    for s in 0..g0.width {
                        let at = (1 + s) * n + t * rows;
                        oh.extend(
                            (0..rows).map(|r| g0.oh[s * rows + r].wrapping_add(prod[at + r])),
                        );
                    }
                    for s in 0..g1.width {
                        let at = (1 + wmax + s) * n + t * rows;
                        oh.extend_from_slice(&prod[at..at + rows]);
                    }
                }
                next.push(Group {
                    val,
                    oh,
                    width: g0.width + g1.width,
                });
            }
            next.extend(it);
            groups = next;
        }
        let g = groups.pop().expect("len >= 1");
        if !onehot {
            return Ok((g.val, None));
        }
        // Slot-major to row-major.
        let mut oh = vec![0u64; rows * len];
        for s in 0..len {
            for r in 0..rows {
                oh[r * len + s] = g.oh[s * rows + r];
            }
        }
        Ok((g.val, Some(oh)))
    }
}

/// Values `r` of each of the `fanout` vectors of `n` values in `ys` (stored back to back),
/// back to back: one batch of a fan-out product's right factors.
fn batch_of(ys: &[u64], n: usize, fanout: usize, r: std::ops::Range<usize>) -> Vec<u64> {
    let mut yb = Vec::with_capacity(r.len() * fanout);
    for j in 0..fanout {
        yb.extend_from_slice(&ys[j * n + r.start..j * n + r.end]);
    }
    yb
}

/// Writes a batch's results `z` (laid out as [`batch_of`] lays out its inputs) over values `r`
/// of each of the `fanout` vectors of `n` in `ys`.
fn put_batch(ys: &mut [u64], z: &[u64], n: usize, fanout: usize, r: std::ops::Range<usize>) {
    let len = r.len();
    for j in 0..fanout {
        ys[j * n + r.start..j * n + r.end].copy_from_slice(&z[j * len..(j + 1) * len]);
    }
}
