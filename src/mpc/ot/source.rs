//! The dealer-free correlation source: the servers make every request's material among
//! themselves, over OT, with no dealer.
//!
//! Each server draws its own shares of the random components from a seed of its own (fresh from
//! the operating system's CSPRNG for every job; no other party ever holds it), except the
//! carry tree's AND triples of two servers, which are the pools' random OTs themselves; the
//! correlated components are computed by the protocols of [`super::cross`] over the links of
//! [`super::links`]:
//!
//! * **Beaver** `c = a b`: each server's `a_s b_s` plus Gilboa cross terms of every ordered pair.
//! * **Bilinear form** `C_p = <A_i, B_j>` and block norms: each server's own inner products
//!   plus ring-LWE cross terms ([`crate::mpc::he::product`]: every server encrypts its share of
//!   `B` once, every peer multiplies by its share of `A`), one run for `C` (per block of columns
//!   as rows of their own when `split`) and one for the norms (every row of `A` and `B` against
//!   itself, a row per block). Bounded by the work and memory of the products
//!   ([`OtSource::with_max_multiply_adds`], [`super::bilinear::job_cost`]).
//! * **Random bits shared both ways** (daBits): each server draws bits `b_s`, whose XOR is the
//!   bit `b`; arithmetic shares of `b` come from `x <- x + b_t - 2 x b_t` for each server `t`
//!   after the first of an order (`x` starts as the first server's bit), the product `x b_t`
//!   by correlated OT from the servers before `t` into `t`; the order rotates from one pass of
//!   `BIT_PASS_WORDS` words to the next, so that the servers send alike. From them:
//!   * **B2a**: the bits, as drawn and converted;
//!   * **truncation masks**: `r = sum_i 2^i b_i` over 64 arithmetic bits, `r >> frac` and the top
//!     bit from the same bits;
//!   * **comparison masks**: the low `ell` bits of `r` as boolean shares (bit-sliced) and
//!     arithmetic (`r = sum_{i < ell} 2^i b_i + 2^ell h`, `h` a random share of each server),
//!     and the carry tree's AND triples `(a, b1, b2, a & b1, a & b2)` from bit cross terms,
//!     both ANDs of a triple from one OT per bit (`a` chooses, two correlation bits); with two
//!     servers from random OTs as they are, `a`, `b1`, `b2` included (nothing sent but
//!     refills).
//! * **Millionaires' material** (two servers, [`OtSource::millionaire`]; comparisons then take
//!   no random bits at all, [`crate::mpc::millionaire`]): a random 1-out-of-16 OT per 4-bit
//!   group on one link ([`Kind::RandomSixteen`], the sender alternating from request to
//!   request) and the carry tree's AND triples, both from the pools' random OTs.
//! * **Bit products** (two servers, [`OtSource::bit_products`], online rather than material):
//!   `b y` for an XOR-shared bit `b = b_0 ^ b_1` (a comparison's output) and shared values
//!   `y = y_0 + y_1`. Since `(b_0 ^ b_1) y_s = b_s y_s + b_t (1 - 2 b_s) y_s`, server `s` keeps
//!   `b_s y_s` and sends `(1 - 2 b_s) y_s` into a correlated OT (`Kind::Cot`) on which `t`
//!   chooses with `b_t`: one OT and one 64-bit correction per value and direction, where a
//!   B2a conversion and a Beaver product from Gilboa cross terms take 64 OTs and corrections
//!   per value. The row tournaments' selections take them ([`crate::mpc::engine`]).
//!
//! Privacy against any `k - 1` colluding servers that follow the protocol: each server's view
//! is its own draws and OT messages, pseudorandom to the others (the seeding IKNP batch's
//! columns hide its choices under the base-OT keys; a silent batch's choice message `d = r ^ u`
//! hides them under pool choices pseudorandom by LPN; tree messages and corrections hide under
//! hashes of rows the receiver cannot compute). A server that deviates as an IKNP receiver to
//! learn the sender's secret is caught by the KOS check (except for guessing a few of its
//! bits). Not yet covered: a deviating sender (a wrong correction or tree message) or a server
//! using other values than its shares in a product makes the material wrong *depending on an
//! honest server's share or choice bits*, which a party colluding with it could observe in the
//! results (design.md, threat model).

use super::bilinear::{
    BilinearPlan, CRun, DEFAULT_MAX_MULTIPLY_ADDS, DEFAULT_MAX_SLOT_OPERATIONS, by_span, mod_plan,
};
use super::cross::{Active, Cross, Kind};
use super::links::{Links, Setup};
use crate::error::{Error, Result};
use crate::mpc::bit_masks::{Masks, add_high};
use crate::mpc::carry_tree::{and_words_for, tree_and_words};
use crate::mpc::channel::Transport;
use crate::mpc::correlated::{Correlations, Material, Part, Request, Stream};
use crate::mpc::he::crt::{CrtProducts, Lift};
use crate::mpc::he::modulus::Modulus;
use crate::mpc::he::product::CrossProducts;
use crate::mpc::he::slots::{self, SlotProducts};
use crate::mpc::millionaire::{MillionaireMaterial, choice_words, groups};
use crate::mpc::modular::{JointSeed, ModMaterial, ZeroSharing, own_products, uniform_below};
use crate::mpc::pairs::Pairs;
use crate::mpc::prg::{Prg, Seed};
use crate::mpc::protocol::{Session, cpu_bound};
use rayon::prelude::*;
use std::sync::Arc;

/// Words of random bits (2^21 bits) a pass of [`Gen::masks_from_bits`] converts: its arrays of
/// 64-bit shares hold 16 MiB each.
const BIT_PASS_WORDS: usize = 1 << 15;

/// One ring-LWE product run: shares of `<X_i, Y_j>` for `pairs` (own term plus cross terms),
/// or with no `y`, of `<X_i, X_i>` for pairs of a row with itself ([`CrossProducts::diagonal`]).
struct HeRun {
    run: CRun,
    pairs: Pairs,
    d: usize,
    x: Vec<u64>,
    y: Option<Vec<u64>>,
}

impl HeRun {
    fn new(run: CRun, pairs: Pairs, x: Vec<u64>, y: Option<Vec<u64>>) -> HeRun {
        let d = match &run {
            CRun::Coefficients(lay) => lay.d,
            CRun::Slots(plan) => plan.d,
        };
        HeRun {
            run,
            pairs,
            d,
            x,
            y,
        }
    }

    async fn run<T: Transport>(self, g: &mut Gen<'_, T>) -> Result<Vec<u64>> {
        let d = self.d;
        let y = self.y.as_ref().unwrap_or(&self.x);
        let own: Vec<u64> = (0..self.pairs.len())
            .into_par_iter()
            .map(|p| {
                let (i, j) = self.pairs.pair(p);
                crate::mpc::ring::dot(&self.x[i * d..(i + 1) * d], &y[j * d..(j + 1) * d])
            })
            .collect();
        let (me, k) = (g.me(), g.k());
        let mut out = match (self.run, self.y) {
            (CRun::Coefficients(lay), Some(y)) => {
                let p = CrossProducts::new(me, k, Arc::new(lay), self.pairs, self.x, y)?;
                g.session.run(p).await?
            }
            (CRun::Coefficients(lay), None) => {
                let p = CrossProducts::diagonal(me, k, Arc::new(lay), self.pairs, self.x)?;
                g.session.run(p).await?
            }
            (CRun::Slots(plan), y) => {
                // The stacked rows [X; Y]; the plan's items are the pairs, in order.
                let mut z = self.x;
                if let Some(y) = y {
                    z.extend_from_slice(&y);
                }
                let shares = g
                    .session
                    .run(CrtProducts::new(me, k, Arc::new(plan), z)?)
                    .await?;
                match shares.lift {
                    None => shares.words,
                    Some(lift) => g.lift(shares.words, lift).await?,
                }
            }
        };
        crate::mpc::ring::add_assign(&mut out, &own);
        Ok(out)
    }
}

/// A server's dealer-free source for one job. `Debug` is redacted.
pub struct OtSource {
    seed: Seed,
    links: Option<Links>,
    /// Whether the links were set up (or their setup started): from then on, no links means a
    /// request failed with them.
    set_up: bool,
    counter: u64,
    /// Millionaires' requests so far (the OT sender alternates with them).
    millionaires: u64,
    max_multiply_adds: u64,
    max_slot_operations: u64,
    chunk: usize,
    bit_pass: usize,
}

impl std::fmt::Debug for OtSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OtSource(requests={}, <redacted>)", self.counter)
    }
}

impl Default for OtSource {
    fn default() -> Self {
        OtSource::new()
    }
}

impl OtSource {
    /// A source with a fresh seed; the OT links are set up with the first request.
    pub fn new() -> OtSource {
        OtSource {
            seed: Seed::random(),
            links: None,
            set_up: false,
            counter: 0,
            millionaires: 0,
            max_multiply_adds: DEFAULT_MAX_MULTIPLY_ADDS,
            max_slot_operations: DEFAULT_MAX_SLOT_OPERATIONS,
            chunk: super::cross::DEFAULT_CHUNK,
            bit_pass: BIT_PASS_WORDS,
        }
    }

    /// Refuses bilinear requests whose slot products need more than `n` operations (at two
    /// servers; [`DEFAULT_MAX_SLOT_OPERATIONS`]). For tests: the job's pre-check
    /// ([`super::bilinear::job_cost`]) assumes the defaults of both bounds.
    pub fn with_max_slot_operations(mut self, n: u64) -> OtSource {
        self.max_slot_operations = n;
        self
    }

    /// Refuses bilinear requests whose coefficient-packed products need more than `n`
    /// multiply-adds (at two servers), and takes slot products for them. For tests, as
    /// [`OtSource::with_max_slot_operations`].
    pub fn with_max_multiply_adds(mut self, n: u64) -> OtSource {
        self.max_multiply_adds = n;
        self
    }

    /// OT chunks of `words` choice words (tests use small chunks to exercise pipelining).
    pub fn with_chunk(mut self, words: usize) -> OtSource {
        self.chunk = words.max(1);
        self
    }

    /// Random bits converted `words` words per pass (tests use small passes).
    pub fn with_bit_pass(mut self, words: usize) -> OtSource {
        self.bit_pass = words.max(1);
        self
    }
}

/// The running state of one request: the session, the links and this server's seed stream.
struct Gen<'a, T: Transport> {
    session: &'a mut Session<T>,
    links: Option<Links>,
    chunk: usize,
    bit_pass: usize,
}

impl<T: Transport> Gen<'_, T> {
    fn me(&self) -> usize {
        self.session.me()
    }

    fn k(&self) -> usize {
        self.session.servers()
    }

    /// Two servers' shares modulo `2^64` from [`CrtProducts`]' words and lift: adds
    /// `m c_0 c_1` by one correlated OT per item, server 0 sending `c_0 m` and server 1
    /// choosing with `c_1` ([`crate::mpc::he::crt`]).
    async fn lift(&mut self, mut words: Vec<u64>, lift: Lift) -> Result<Vec<u64>> {
        let n = words.len();
        if n == 0 {
            return Ok(words);
        }
        // A bit product ([`OtSource::bit_products`]) of server 1's bit (server 0's part zero)
        // and server 0's `c_0 m` (server 1's part zero), on the one link that carries anything.
        let (bits, y): (Vec<u64>, Vec<u64>) = if self.me() == 0 {
            let y = (0..n)
                .map(|i| (lift.small[i / 64] >> (i % 64) & 1).wrapping_mul(lift.m))
                .collect();
            (vec![0u64; n.div_ceil(64)], y)
        } else {
            (lift.small, vec![0u64; n])
        };
        let (x, choices) = bit_product_inputs(&bits, n, &y);
        let into = Active::Into {
            to: 1,
            first: 0,
            servers: 2,
        };
        let out = self.cross(Kind::Cot, into, x, choices).await?;
        crate::mpc::ring::add_assign(&mut words, &out[..n]);
        Ok(words)
    }

    /// This server's share of the cross terms (see [`Cross`]).
    async fn cross(
        &mut self,
        kind: Kind,
        active: Active,
        x: Vec<u64>,
        y: Vec<u64>,
    ) -> Result<Vec<u64>> {
        self.cross_for(kind, active, x, y, None).await
    }

    /// [`Gen::cross`], for random bits behind `masks` from their word `from` on, if given
    /// ([`Cross::with_masks`]).
    async fn cross_for(
        &mut self,
        kind: Kind,
        active: Active,
        x: Vec<u64>,
        y: Vec<u64>,
        masks: Option<(Masks, usize)>,
    ) -> Result<Vec<u64>> {
        let links = self.links.take().expect("links are set up");
        let mut p = Cross::new(links, kind, active, x, y)?.with_chunk(self.chunk);
        if let Some((m, from)) = masks {
            p = p.with_masks(m, from)?;
        }
        let (links, out) = self.session.run(p).await?;
        self.links = Some(links);
        Ok(out)
    }

    /// Shares of the products `x y` of shared values (own term plus cross terms).
    async fn products(&mut self, x: Vec<u64>, y: Vec<u64>) -> Result<Vec<u64>> {
        let own: Vec<u64> = x.iter().zip(&y).map(|(a, b)| a.wrapping_mul(*b)).collect();
        let mut out = self.cross(Kind::Gilboa, Active::All, x, y).await?;
        crate::mpc::ring::add_assign(&mut out, &own);
        Ok(out)
    }

    /// Random AND-triple pairs `[a, b1, b2, a & b1, a & b2]` (XOR-shared words) between two
    /// servers, from the pools' random OTs with nothing sent but refills
    /// ([`Kind::RandomBitPairs`]).
    async fn random_and_pairs(&mut self, words: usize) -> Result<[Vec<u64>; 5]> {
        let out = self
            .cross(
                Kind::RandomBitPairs,
                Active::All,
                Vec::new(),
                vec![0; words],
            )
            .await?;
        let mut parts: [Vec<u64>; 5] = std::array::from_fn(|_| Vec::with_capacity(words));
        for o in out.chunks_exact(5) {
            let (a, b1, b2) = (o[2], o[3], o[4]);
            parts[0].push(a);
            parts[1].push(b1);
            parts[2].push(b2);
            parts[3].push(o[0] ^ (a & b1));
            parts[4].push(o[1] ^ (a & b2));
        }
        Ok(parts)
    }

    /// XOR shares of `a & b1` and `a & b2` for XOR-shared words, from one OT per bit with two
    /// correlation bits ([`Kind::Bits`] with two lanes: `a` chooses).
    async fn and_pair(
        &mut self,
        a: &[u64],
        b1: &[u64],
        b2: &[u64],
    ) -> Result<(Vec<u64>, Vec<u64>)> {
        let x: Vec<u64> = b1.iter().zip(b2).flat_map(|(p, q)| [*p, *q]).collect();
        let out = self
            .cross(Kind::Bits { lanes: 2 }, Active::All, x, a.to_vec())
            .await?;
        let (mut c1, mut c2): (Vec<u64>, Vec<u64>) =
            out.chunks_exact(2).map(|c| (c[0], c[1])).unzip();
        for (w, a) in a.iter().enumerate() {
            c1[w] ^= a & b1[w];
            c2[w] ^= a & b2[w];
        }
        Ok((c1, c2))
    }

    /// The masks built from random bits whose XOR shares are `bits` (the masks' layout),
    /// converted to arithmetic shares [`BIT_PASS_WORDS`] words at a time and added into the
    /// masks as each pass ends, so that no pass holds more than a few of its 64-word arrays.
    async fn masks_from_bits(&mut self, bits: &[u64], masks: Masks) -> Result<Vec<Vec<u64>>> {
        let mut out = masks.zeros();
        for (p, part) in bits.chunks(self.bit_pass).enumerate() {
            let from = p * self.bit_pass;
            // The roles rotate from pass to pass, so that the servers send alike.
            let arith = self.arith_bits(part, masks, from, p % self.k()).await?;
            for (j, word) in arith.chunks_exact(64).enumerate() {
                for (l, &x) in word.iter().enumerate() {
                    masks.add(&mut out, from + j, l, x);
                }
            }
        }
        Ok(out)
    }

    /// Arithmetic shares of the bits whose XOR shares are `bits` (64 per word, bit `i` of the
    /// result at index `i`), words `from ..` of `masks`' random bits, right in the bits the
    /// masks depend on ([`Masks::significant_bits`]; the corrections carry no others). The
    /// servers join in the order `first, first + 1, ...`: `x` starts as server `first`'s bit,
    /// and each next server `t` adds its bit `b_t` as `x + b_t - 2 x b_t`, the product from
    /// the servers before it.
    async fn arith_bits(
        &mut self,
        bits: &[u64],
        masks: Masks,
        from: usize,
        first: usize,
    ) -> Result<Vec<u64>> {
        let (me, k) = (self.me(), self.k());
        let mine = crate::mpc::ring::unslice_bit(bits, 64 * bits.len());
        let mut x = if me == first {
            mine.clone()
        } else {
            vec![0; mine.len()]
        };
        for j in 1..k {
            let t = (first + j) % k;
            let p = self
                .cross_for(
                    Kind::Cot,
                    Active::Into {
                        to: t,
                        first,
                        servers: k,
                    },
                    x.clone(),
                    bits.to_vec(),
                    Some((masks, from)),
                )
                .await?;
            // x <- x + b_t - 2 x b_t, with `p` this server's share of x b_t.
            for (i, (x, p)) in x.iter_mut().zip(&p).enumerate() {
                let b = if me == t { mine[i] } else { 0 };
                *x = x.wrapping_add(b).wrapping_sub(p.wrapping_mul(2));
            }
        }
        Ok(x)
    }
}

impl OtSource {
    /// The running state of a request: the links (set up with the first request) and the
    /// request's number (its stream of this server's seed).
    async fn start<'a, T: Transport>(
        &mut self,
        session: &'a mut Session<T>,
    ) -> Result<(Gen<'a, T>, u64)> {
        let links = match self.links.take() {
            Some(l) => l,
            // A request that fails keeps the links (they are in no state to go on: the peers
            // stopped at other points). Setting them up again alone would put this server out
            // of step with peers that kept theirs, so every later request fails too.
            None if self.set_up => {
                return Err(Error::invalid(
                    "dealer-free correlations: an earlier request failed and took this server's \
                     OT links with it; the job cannot go on",
                ));
            }
            None => {
                // Marked before the setup runs: a failed setup leaves no links either.
                self.set_up = true;
                session
                    .run(Setup::new(session.me(), session.servers()))
                    .await?
            }
        };
        let stream = self.counter;
        self.counter += 1;
        let g = Gen {
            session,
            links: Some(links),
            chunk: self.chunk,
            bit_pass: self.bit_pass,
        };
        Ok((g, stream))
    }
}

impl Correlations for OtSource {
    async fn fetch<T: Transport>(
        &mut self,
        session: &mut Session<T>,
        req: &Request,
    ) -> Result<Material> {
        req.validate()?;
        let (mut g, stream) = self.start(session).await?;
        let mut prg = Prg::new(&self.seed, stream);
        let parts = generate(
            &mut g,
            req,
            &self.seed,
            stream,
            &mut prg,
            (self.max_multiply_adds, self.max_slot_operations),
        )
        .await?;
        self.links = g.links.take();
        Ok(Material::new(parts))
    }

    /// With two servers.
    fn makes_millionaire_material(&self, servers: usize) -> bool {
        servers == 2
    }

    /// With two servers: a random 1-out-of-16 OT per 4-bit group on one link, of 2-bit
    /// messages or 4-bit ones for two lanes (the sender alternates from request to request, so
    /// the servers work alike), and the carry trees' AND triples, all from the pools' random
    /// OTs (nothing sent but refills).
    async fn millionaire<T: Transport>(
        &mut self,
        session: &mut Session<T>,
        (n, ell, lanes): (usize, u32, usize),
    ) -> Result<Option<MillionaireMaterial>> {
        if session.servers() != 2 {
            return Ok(None);
        }
        Request::Compare { n: lanes * n, ell }.validate()?;
        let me = session.me();
        let (mut g, _) = self.start(session).await?;
        let sender = (self.millionaires % 2) as usize;
        self.millionaires += 1;
        let into = Active::Into {
            to: 1 - sender,
            first: sender,
            servers: 2,
        };
        let words = choice_words(n, ell);
        let ots = g
            .cross(
                Kind::RandomSixteen { lanes },
                into,
                Vec::new(),
                vec![0; words],
            )
            .await?;
        let t = and_words_for(groups(ell), (lanes * n).div_ceil(64));
        let triples = g.random_and_pairs(t).await?;
        self.links = g.links.take();
        MillionaireMaterial::new(me, sender, (n, ell, lanes), ots, triples).map(Some)
    }

    /// With two servers, by correlated OT on the job's inputs (module docs, "Bit products"):
    /// for `b = b_0 ^ b_1` and `y = y_0 + y_1`, `b y_s = b_s y_s + b_t (1 - 2 b_s) y_s`, so each
    /// server `s` sends `(1 - 2 b_s) y_s` into a correlated OT on which the other chooses with
    /// its bit, and adds its own `b_s y_s`: one OT and one 64-bit correction per value and
    /// direction, no B2a conversion and no Beaver triple (whose Gilboa cross terms take 64
    /// OTs and corrections per value).
    async fn bit_products<T: Transport>(
        &mut self,
        session: &mut Session<T>,
        bits: &[u64],
        n: usize,
        y: &[u64],
        fanout: usize,
    ) -> Result<Option<Vec<u64>>> {
        if session.servers() != 2 {
            return Ok(None);
        }
        let total = n * fanout;
        if bits.len() != n.div_ceil(64) || y.len() != total {
            return Err(Error::invalid(format!(
                "bit products: {} bit words and {} values for {n} bits of fan-out {fanout}",
                bits.len(),
                y.len()
            )));
        }
        if total == 0 {
            return Ok(Some(Vec::new()));
        }
        let (x, choices) = bit_product_inputs(bits, n, y);
        let (mut g, _) = self.start(session).await?;
        let mut out = g.cross(Kind::Cot, Active::All, x, choices).await?;
        self.links = g.links.take();
        out.truncate(total);
        for (p, (o, v)) in out.iter_mut().zip(y).enumerate() {
            let i = p % n;
            if bits[i / 64] >> (i % 64) & 1 == 1 {
                *o = o.wrapping_add(*v);
            }
        }
        Ok(Some(out))
    }

    /// With two servers, where `C` modulo `2^64` would take three or four slot runs
    /// (`mod_plan`): masks uniform modulo `T`, one slot run for `C`, and the zero sharing's
    /// seed drawn together ([`crate::mpc::modular`]).
    async fn scores_mod<T: Transport>(
        &mut self,
        session: &mut Session<T>,
        d: usize,
        pairs: &Pairs,
        blocks: &[usize],
    ) -> Result<Option<ModMaterial>> {
        if session.servers() != 2 {
            return Ok(None);
        }
        let limits = (self.max_multiply_adds, self.max_slot_operations);
        // Orienting the pairs takes seconds on large jobs (he::orient).
        let Some(plan) = cpu_bound(|| mod_plan(d, pairs, blocks, limits))? else {
            return Ok(None);
        };
        let (n, m) = (pairs.rows(), pairs.cols());
        let me = session.me();
        let (mut g, stream) = self.start(session).await?;
        let md = Modulus::new(slots::T);
        let a = uniform_below(&self.seed, stream, 0, n * d, &md);
        let b = uniform_below(&self.seed, stream, (n * d) as u64, m * d, &md);
        let joint = g.session.run(JointSeed::new()).await?;
        let mut z = Vec::with_capacity((n + m) * d);
        z.extend_from_slice(&a);
        z.extend_from_slice(&b);
        let cross = g
            .session
            .run(SlotProducts::new(me, 2, Arc::new(plan), z)?)
            .await?;
        self.links = g.links.take();
        let own = own_products(pairs, &a, &b, d, &md);
        let c = cross
            .iter()
            .zip(&own)
            .map(|(&x, &y)| md.add(x, y))
            .collect();
        Ok(Some(ModMaterial {
            t: slots::T,
            masks: [Part::Words(a), Part::Words(b)],
            c,
            zero: ZeroSharing::new(joint, n, m, d),
        }))
    }
}

/// The inputs of [`OtSource::bit_products`]' correlated OTs: this server's values `y` negated
/// where its bit is 1 (padded to whole choice words), and its bits repeated for every vector
/// as choices (value `p` takes bit `p % n`).
fn bit_product_inputs(bits: &[u64], n: usize, y: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let words = y.len().div_ceil(64);
    let mut x = vec![0u64; 64 * words];
    let mut choices = vec![0u64; words];
    for (p, (x, v)) in x.iter_mut().zip(y).enumerate() {
        let i = p % n;
        let b = bits[i / 64] >> (i % 64) & 1;
        choices[p / 64] |= b << (p % 64);
        *x = if b == 1 { v.wrapping_neg() } else { *v };
    }
    (x, choices)
}

/// This server's parts of `req`'s material.
async fn generate<T: Transport>(
    g: &mut Gen<'_, T>,
    req: &Request,
    seed: &Seed,
    stream: u64,
    prg: &mut Prg,
    (max_multiply_adds, max_slot_operations): (u64, u64),
) -> Result<Vec<Part>> {
    match req {
        Request::Beaver { n, fanout } => {
            let a = prg.vec(*n);
            let b = prg.vec(n * fanout);
            let x: Vec<u64> = (0..n * fanout).map(|p| a[p % n]).collect();
            let c = g.products(x, b.clone()).await?;
            Ok(vec![Part::Words(a), Part::Words(b), Part::Words(c)])
        }
        Request::Bilinear {
            d,
            pairs,
            blocks,
            split,
        } => {
            let (d, n, m) = (*d, pairs.rows(), pairs.cols());
            let whole = [d];
            let spans: &[usize] = if blocks.is_empty() { &whole } else { blocks };
            let ns = spans.len();
            // The pair lists and packings first: a request too large is refused before any
            // mask is drawn.
            let BilinearPlan {
                c_pairs,
                c_run,
                split_c,
                norms,
            } = cpu_bound(|| {
                BilinearPlan::new(
                    d,
                    pairs,
                    blocks,
                    *split,
                    (max_multiply_adds, max_slot_operations),
                    g.k(),
                )
            })?;
            // The masks are streams of this server's seed, as the dealer's servers draw them.
            let sa = Stream::new(seed.clone(), stream, 0, n * d);
            let sb = Stream::new(seed.clone(), stream, (n * d) as u64, m * d);
            let (a, b) = (sa.draw(), sb.draw());
            let norm_rows = norms.as_ref().map(|_| {
                let mut both = by_span(&a, d, spans, false);
                both.extend_from_slice(&by_span(&b, d, spans, false));
                both
            });
            let (x, y) = if split_c {
                (by_span(&a, d, spans, true), by_span(&b, d, spans, true))
            } else {
                (a, b)
            };
            // No pairs (the audit alone, beside scores modulo `T`): no `C` to make.
            let c = if c_pairs.is_empty() {
                Vec::new()
            } else {
                HeRun::new(c_run, c_pairs, x, Some(y)).run(g).await?
            };
            let mut parts = vec![Part::Stream(sa), Part::Stream(sb), Part::Words(c)];
            if let (Some((diag, lay)), Some(rows)) = (norms, norm_rows) {
                let q = HeRun::new(lay, diag, rows, None).run(g).await?;
                let (qa, qb) = q.split_at(n * ns);
                parts.push(Part::Words(qa.to_vec()));
                parts.push(Part::Words(qb.to_vec()));
            }
            Ok(parts)
        }
        Request::Trunc { n, .. } => {
            // 64 random bits per value, value-major: bit i of value v at 64 v + i.
            let masks = Masks::of(req).expect("made from bits");
            let masks = g.masks_from_bits(&prg.vec(*n), masks).await?;
            Ok(masks.into_iter().map(Part::Words).collect())
        }
        Request::Compare { n, ell } => {
            let (n, ell) = (*n, *ell as usize);
            let blocks = n.div_ceil(64);
            // Bit-sliced: bit i of value v is bit v % 64 of word i * blocks + v / 64. Lanes past
            // `n` are zero, as in the dealer's material.
            let mut sliced = prg.vec(ell * blocks);
            if n % 64 != 0 {
                let keep = (1u64 << (n % 64)) - 1;
                for i in 0..ell {
                    sliced[i * blocks + blocks - 1] &= keep;
                }
            }
            let high = prg.vec(n);
            let t = tree_and_words(ell as u32, blocks);
            let masks = Masks::of(req).expect("made from bits");
            let [mut r] = <[Vec<u64>; 1]>::try_from(g.masks_from_bits(&sliced, masks).await?)
                .expect("one mask");
            add_high(&mut r, ell as u32, &high);
            // Two servers take the carry tree's AND triples from random OTs as they are; more
            // choose random inputs (a server's inputs must be the same on all its links).
            let [ta, tb1, tb2, c1, c2] = if g.k() == 2 {
                g.random_and_pairs(t).await?
            } else {
                let (ta, tb1, tb2) = (prg.vec(t), prg.vec(t), prg.vec(t));
                let (c1, c2) = g.and_pair(&ta, &tb1, &tb2).await?;
                [ta, tb1, tb2, c1, c2]
            };
            Ok([r, sliced, ta, tb1, tb2, c1, c2].map(Part::Words).into())
        }
        Request::B2a { n } => {
            let bits = prg.vec(n.div_ceil(64));
            let masks = Masks::of(req).expect("made from bits");
            let [arith] = <[Vec<u64>; 1]>::try_from(g.masks_from_bits(&bits, masks).await?)
                .expect("one mask");
            Ok(vec![Part::Words(bits), Part::Words(arith)])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::material_check::{correct, reconstruct, requests};
    use crate::mpc::pairs::Pairs;
    use crate::mpc::protocol::Stats;

    /// `job` on each of `k` servers over the in-memory network, each with a session of its own;
    /// their outputs by index.
    fn on_each_server<O, Fut>(
        k: usize,
        job: impl Fn(Session<crate::mpc::channel::MemoryTransport>) -> Fut,
    ) -> Vec<O>
    where
        Fut: std::future::Future<Output = O> + Send + 'static,
        O: Send + 'static,
    {
        let rt = crate::mpc::local::runtime().unwrap();
        rt.block_on(async {
            let (ts, _dealer) = crate::mpc::channel::memory_network(k);
            let tasks: Vec<_> = ts
                .into_iter()
                .map(|t| tokio::spawn(job(Session::new(t))))
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("server task"));
            }
            out
        })
    }

    /// Every server's material for `req` and then for a small Beaver request on the same links,
    /// with its traffic.
    fn fetch_all(
        k: usize,
        req: &Request,
        chunk: usize,
    ) -> Result<Vec<(Material, Material, Stats)>> {
        fetch_from(k, req, chunk, 1 << 24, 1 << 27)
    }

    /// [`fetch_all`] in chunks of 4 with `max` multiply-adds and 2^30 slot operations.
    fn fetch_with(k: usize, req: &Request, max: u64) -> Result<Vec<(Material, Material, Stats)>> {
        fetch_from(k, req, 4, max, 1 << 30)
    }

    fn fetch_from(
        k: usize,
        req: &Request,
        chunk: usize,
        max: u64,
        max_slots: u64,
    ) -> Result<Vec<(Material, Material, Stats)>> {
        // Passes of 3 words: every request of several words of bits takes several.
        let make = || {
            OtSource::new()
                .with_chunk(chunk)
                .with_bit_pass(3)
                .with_max_multiply_adds(max)
                .with_max_slot_operations(max_slots)
        };
        let reqs = [req.clone(), Request::Beaver { n: 3, fanout: 2 }];
        let runs = crate::mpc::material_check::fetch_all(k, make, &reqs)?;
        Ok(runs
            .into_iter()
            .map(|(m, stats)| {
                let [m, again] = <[Material; 2]>::try_from(m).expect("two requests");
                (m, again, stats)
            })
            .collect())
    }

    #[test]
    fn every_request_is_made_right_without_a_dealer() {
        for k in 2..=4 {
            for req in requests() {
                let runs = fetch_all(k, &req, 2).unwrap();
                let (mats, again): (Vec<_>, Vec<_>) =
                    runs.into_iter().map(|(m, a, _)| (m, a)).unzip();
                let truth = reconstruct(&req, mats);
                assert!(correct(&req, &truth), "k {k}: {req:?}");
                let beaver = Request::Beaver { n: 3, fanout: 2 };
                assert!(
                    correct(&beaver, &reconstruct(&beaver, again)),
                    "k {k}: after {req:?}"
                );
            }
        }
    }

    /// The true values of `req`'s material made by 2 servers.
    fn truth_of(req: &Request) -> Vec<Vec<u64>> {
        let runs = fetch_all(2, req, 4).unwrap();
        reconstruct(req, runs.into_iter().map(|r| r.0).collect())
    }

    #[test]
    fn the_check_catches_wrong_material() {
        let req = Request::Compare { n: 70, ell: 38 };
        let mut truth = truth_of(&req);
        assert!(correct(&req, &truth));
        truth[5][0] ^= 1; // one AND triple wrong
        assert!(!correct(&req, &truth));
        let req = Request::Trunc { n: 3, frac: 8 };
        let mut truth = truth_of(&req);
        truth[1][1] = truth[1][1].wrapping_add(1);
        assert!(!correct(&req, &truth), "r >> frac no longer matches r");
    }

    #[test]
    fn large_sparse_bilinear_requests_take_slot_products_and_are_right() {
        // 1,500 rows a side, two candidates each way: the dense grid is above the tests' bound
        // of 2^24 multiply-adds, so C and the norms take slot products (modulo 2^64 from three
        // prime runs and a lift with two servers, five runs with three), which follow the
        // 6,000 pairs.
        let n = 1500u32;
        let rows: Vec<u32> = (0..n).flat_map(|i| [i, i, (i * 7) % n]).collect();
        let cols: Vec<u32> = (0..n).flat_map(|i| [i, (i * 3 + 1) % n, i]).collect();
        let pairs = Pairs::list(n as usize, n as usize, rows, cols).unwrap();
        let plan = BilinearPlan::new(4, &pairs, &[1, 3], false, (1 << 24, 1 << 30), 2).unwrap();
        assert!(matches!(plan.c_run, CRun::Slots(_)));
        assert!(matches!(plan.norms, Some((_, CRun::Coefficients(_)))));
        // With a smaller bound the norms take them too.
        let plan = BilinearPlan::new(4, &pairs, &[1, 3], false, (1 << 12, 1 << 30), 2).unwrap();
        assert!(matches!(plan.norms, Some((_, CRun::Slots(_)))));
        for (k, split) in [(2, false), (3, true)] {
            let req = Request::Bilinear {
                d: 4,
                pairs: pairs.clone(),
                blocks: vec![1, 3],
                split,
            };
            for max in [1 << 24, 1 << 12] {
                let runs = fetch_with(k, &req, max).unwrap();
                let truth = reconstruct(&req, runs.into_iter().map(|r| r.0).collect());
                assert!(correct(&req, &truth), "k {k} split {split} bound {max}");
            }
        }
    }

    /// One server's outputs of [`form_both_ways`].
    struct Form {
        scores: Vec<u64>,
        norms: Vec<u64>,
        sums: Vec<u64>,
        subsets: Vec<Vec<u32>>,
        /// Bytes the server sent for the material, and for the scores modulo the prime's.
        material: u64,
        scores_material: u64,
        /// Whether the scores were taken modulo the prime.
        took: bool,
        /// The rounds of the form itself (before the lift).
        rounds: (u64, u64),
    }

    /// Both servers' outputs of the bilinear form with the row audit over `pairs` of the rows
    /// `x` and `y` (shared as `shares` gives them), modulo a prime ([`crate::mpc::modular`],
    /// lifted) or modulo `2^64`, in groups of 5 columns opened 1,000 words per exchange.
    fn form_both_ways(
        pairs: &Pairs,
        d: usize,
        shares: [(Vec<u64>, Vec<u64>); 2],
        modular: bool,
        max: u64,
    ) -> Vec<Form> {
        let knobs = Knobs {
            min_group: 5,
            ..Knobs::default()
        };
        form_logged(pairs, d, shares, modular, max, knobs)
            .into_iter()
            .map(|r| r.unwrap())
            .collect()
    }

    type Log = std::sync::Arc<std::sync::Mutex<Vec<(u64, Vec<u64>)>>>;

    /// How [`form_logged`] runs the form.
    #[derive(Default)]
    struct Knobs {
        /// Fewest columns per group.
        min_group: usize,
        /// Everything server 1 sends server 0, with its round.
        log: Option<Log>,
        /// The zero sharing replaced by these words over `X` and `Y` (zeros: the attack it
        /// exists for).
        zero: Option<[Vec<u64>; 2]>,
        /// The row audit's subsets (6 when 0).
        subsets: usize,
    }

    /// [`form_both_ways`] as `knobs` say, with the conversion check; each server's output or
    /// error.
    fn form_logged(
        pairs: &Pairs,
        d: usize,
        shares: [(Vec<u64>, Vec<u64>); 2],
        modular: bool,
        max: u64,
        knobs: Knobs,
    ) -> Vec<Result<Form>> {
        let Knobs {
            min_group,
            log,
            zero,
            subsets,
        } = knobs;
        let subsets = if subsets == 0 { 6 } else { subsets };
        use crate::mpc::beaver::{Bilinear, RowAudit};
        use crate::mpc::engine::Engine;
        use crate::mpc::row_share::RowShare;
        let rt = crate::mpc::local::runtime().unwrap();
        rt.block_on(async {
            let (ts, _dealer) = crate::mpc::channel::memory_network(2);
            let tasks: Vec<_> = ts
                .into_iter()
                .zip(shares)
                .map(|(t, (x, y))| {
                    let pairs = pairs.clone();
                    let zero = zero.clone();
                    let rows = [pairs.rows(), pairs.cols()];
                    let t = match &log {
                        Some(log) if t.me() == 1 => {
                            let log = log.clone();
                            t.deviating(Box::new(move |round, to, payload: &mut Vec<u64>| {
                                if to == 0 {
                                    log.lock().unwrap().push((round, payload.clone()));
                                }
                            }))
                        }
                        _ => t,
                    };
                    tokio::spawn(async move {
                        let src = OtSource::new()
                            .with_max_multiply_adds(max)
                            .with_max_slot_operations(1 << 30);
                        let mut eng = Engine::new(Session::new(t), src);
                        let me = eng.me();
                        let audit = RowAudit {
                            blocks: vec![d / 2, d - d / 2],
                            subsets,
                        };
                        // The links first, so that the counts below are the requests' own.
                        eng.prepare(&Request::Beaver { n: 1, fanout: 1 }).await?;
                        let start = eng.stats().bytes_sent;
                        let mm = if modular {
                            eng.scores_mod(d, &pairs, &audit.blocks).await?
                        } else {
                            None
                        };
                        let took = mm.is_some();
                        let mm = mm.map(|mut mm| {
                            if let Some(zero) = zero {
                                mm.zero.parts = zero.map(Part::Words);
                            }
                            mm
                        });
                        let scores_material = eng.stats().bytes_sent - start;
                        let empty = Pairs::list(pairs.rows(), pairs.cols(), vec![], vec![])?;
                        let req = Request::Bilinear {
                            d,
                            pairs: if took { empty.clone() } else { pairs.clone() },
                            blocks: audit.blocks.clone(),
                            split: false,
                        };
                        let mat = eng.prepare(&req).await?;
                        let material = eng.stats().bytes_sent - start;
                        let (x, y) = (RowShare::Held(x), RowShare::Held(y));
                        let form = match mm {
                            Some(mm) => Bilinear::with_audit(me, x, y, d, empty, audit, mat)?
                                .with_scores_mod(pairs, mm)?,
                            None => Bilinear::with_audit(me, x, y, d, pairs, audit, mat)?,
                        }
                        .with_chunk(1000)
                        .with_min_group(min_group);
                        let first = eng.stats().rounds;
                        let mut out = eng.run(form).await?;
                        let rounds = (first, eng.stats().rounds);
                        if let Some(t) = out.modulus {
                            let conversion = out.conversion.take().expect("with the scores");
                            let opened = eng.open(&conversion).await?;
                            crate::mpc::modular::check_conversions(&opened, t, subsets, rows)?;
                            out.scores = eng.lift(&out.scores, t).await?;
                        }
                        let a = out.audit.expect("audit");
                        Ok::<_, Error>(Form {
                            scores: out.scores,
                            norms: a.norms,
                            sums: a.sums,
                            subsets: a.subsets,
                            material,
                            scores_material,
                            took,
                            rounds,
                        })
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("server task"));
            }
            out
        })
    }

    /// Scores modulo the slot prime, lifted, equal the plaintext inner products and the audit
    /// equals the route modulo `2^64`, for uploads whose shares a party chose not to wrap (the
    /// zero sharing undoes that), at a fraction of the material's traffic (one slot run
    /// instead of three and a lift).
    #[test]
    fn scores_modulo_the_slot_prime_equal_plaintext() {
        // 23 columns in groups of 5 (the last of 3), several exchanges each.
        let (n, m, d) = (400usize, 300usize, 23usize);
        let rows: Vec<u32> = (0..n as u32)
            .flat_map(|i| [i, i, (i * 7) % n as u32])
            .collect();
        let cols: Vec<u32> = (0..n as u32)
            .flat_map(|i| [i % m as u32, (i * 3 + 1) % m as u32, (i * 5) % m as u32])
            .collect();
        let pairs = Pairs::list(n, m, rows, cols).unwrap();
        let mut prg = Prg::new(&Seed([4; 32]), 0);
        // Values of up to 2^20 in magnitude, the largest at both signs: every score is within
        // the lift's range, 23 2^40 < (T - 1) / 4 (asserted below).
        let value = |prg: &mut Prg, i: usize| -> u64 {
            match i % 97 {
                0 => 1 << 20,
                1 => (-(1i64 << 20)) as u64,
                _ => ((prg.next_u64() % (1 << 21)) as i64 - (1 << 20)) as u64,
            }
        };
        let x: Vec<u64> = (0..n * d).map(|i| value(&mut prg, i)).collect();
        let y: Vec<u64> = (0..m * d).map(|i| value(&mut prg, i)).collect();
        // Server 0's share is 0 (x0 + x1 never wraps for x >= 0) for even rows, uniform else.
        let split = |v: &[u64], prg: &mut Prg| -> (Vec<u64>, Vec<u64>) {
            let s0: Vec<u64> = v
                .iter()
                .enumerate()
                .map(|(i, _)| if (i / d) % 2 == 0 { 0 } else { prg.next_u64() })
                .collect();
            let s1 = v.iter().zip(&s0).map(|(a, b)| a.wrapping_sub(*b)).collect();
            (s0, s1)
        };
        let (x0, x1) = split(&x, &mut prg);
        let (y0, y1) = split(&y, &mut prg);
        let shares = [(x0, y0), (x1, y1)];
        let add = |a: &[u64], b: &[u64]| -> Vec<u64> {
            a.iter().zip(b).map(|(a, b)| a.wrapping_add(*b)).collect()
        };
        let want: Vec<u64> = (0..pairs.len())
            .map(|p| {
                let (i, j) = pairs.pair(p);
                crate::mpc::ring::dot(&x[i * d..(i + 1) * d], &y[j * d..(j + 1) * d])
            })
            .collect();
        assert!(
            want.iter()
                .all(|&v| (v as i64).unsigned_abs() <= (slots::T - 1) / 4)
        );
        let rows: Vec<&[u64]> = x.chunks(d).chain(y.chunks(d)).collect();
        let norms: Vec<u64> = rows
            .iter()
            .flat_map(|r| [&r[..d / 2], &r[d / 2..]].map(|b| crate::mpc::ring::dot(b, b)))
            .collect();
        let differ = |a: &[u64], b: &[u64]| a.iter().zip(b).filter(|(a, b)| a != b).count();
        let check = |f: &[Form], what: &str| {
            assert_eq!(
                differ(&add(&f[0].scores, &f[1].scores), &want),
                0,
                "{what}: scores"
            );
            assert_eq!(
                differ(&add(&f[0].norms, &f[1].norms), &norms),
                0,
                "{what}: norms"
            );
            let sums: Vec<u64> = rows
                .iter()
                .flat_map(|r| {
                    f[0].subsets
                        .iter()
                        .map(|s| s.iter().fold(0u64, |a, &t| a.wrapping_add(r[t as usize])))
                })
                .collect();
            assert_eq!(
                differ(&add(&f[0].sums, &f[1].sums), &sums),
                0,
                "{what}: sums"
            );
        };
        let modular = form_both_ways(&pairs, d, shares.clone(), true, 1 << 12);
        assert!(
            modular[0].took && modular[1].took,
            "the slot route is taken"
        );
        check(&modular, "modulo the prime");
        let plain = form_both_ways(&pairs, d, shares.clone(), false, 1 << 12);
        assert!(!plain[0].took);
        check(&plain, "modulo 2^64");
        // The material: one slot run (and the audit's norms) against three runs and a lift
        // for C. The norms' runs are the same request both ways: the rest is C's.
        let one_run = modular[0].scores_material;
        let norms = modular[0].material - one_run;
        let three_runs = plain[0].material - norms;
        assert!(
            three_runs > 5 * one_run / 2,
            "C's material: {one_run} bytes modulo the prime, {three_runs} modulo 2^64"
        );
        // A job whose dense grid fits and whose slot run needs no more memory takes it too;
        // with more servers `scores_mod` says None (the pipeline's three- and four-server
        // jobs).
        let small = form_both_ways(&pairs, d, shares.clone(), true, 1 << 40);
        assert!(small[0].took && small[1].took);
        check(&small, "dense grid within the bound");
        // The attack the zero sharing exists for: without it, the shares server 0 holds as
        // zeros (even rows of both parties) do not wrap and convert shifted; the conversion
        // check stops the job on both servers, naming the party whose rows failed (zeros
        // over both parties' rows, then over B's only).
        let caught = |zero: [Vec<u64>; 2], party: &str| {
            // With the audit's 40 subsets: a single failed value escapes with 2^-40.
            let knobs = Knobs {
                min_group: 5,
                zero: Some(zero),
                subsets: 40,
                ..Knobs::default()
            };
            for r in form_logged(&pairs, d, shares.clone(), true, 1 << 12, knobs) {
                let e = r.err().expect("caught").to_string();
                assert!(e.contains(party) && e.contains("conversion check"), "{e}");
            }
        };
        caught([vec![0; n * d], vec![0; m * d]], "party A");
        caught([prg.vec(n * d), vec![0; m * d]], "party B");
        // One value alone: a zero sharing whose word cancels server 0's share of a
        // non-negative value of an odd row (so that its shares do not wrap), random elsewhere.
        let t = (0..n * d)
            .find(|&t| (t / d) % 2 == 1 && (x[t] as i64) >= 0)
            .expect("a value");
        let mut r = prg.vec(n * d);
        r[t] = shares[0].0[t].wrapping_neg();
        caught([r, prg.vec(m * d)], "party A");
    }

    /// What server 0 receives from server 1 during the form modulo the prime, for constant
    /// inputs whose shares do not wrap (server 1 holds every value, server 0 zeros): the
    /// opening modulo `2^64` is uniform in every bit, the opening modulo `T` uniform over
    /// sixteen buckets of `[0, T)`; the residues without their masks fail the statistic.
    #[test]
    fn a_servers_view_of_the_form_modulo_the_prime_looks_uniform() {
        use crate::mpc::he::slots::T;
        let (n, m, d) = (400usize, 300usize, 24usize);
        let rows: Vec<u32> = (0..n as u32)
            .flat_map(|i| [i, (i * 7) % n as u32])
            .collect();
        let cols: Vec<u32> = (0..n as u32)
            .flat_map(|i| [i % m as u32, (i * 3) % m as u32])
            .collect();
        let pairs = Pairs::list(n, m, rows, cols).unwrap();
        let shares = [
            (vec![0u64; n * d], vec![0u64; m * d]),
            (vec![5u64; n * d], vec![5u64; m * d]),
        ];
        let log: Log = Default::default();
        let knobs = Knobs {
            min_group: 64,
            log: Some(log.clone()),
            ..Knobs::default()
        };
        let out: Vec<Form> = form_logged(&pairs, d, shares, true, 1 << 12, knobs)
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert!(out[0].took);
        let (r0, r1) = out[0].rounds;
        let view: Vec<u64> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| (r0..r1).contains(r))
            .flat_map(|(_, p)| p.clone())
            .collect();
        let rows = (n + m) * d;
        assert_eq!(view.len(), 2 * rows, "both openings of every value");
        let (plain, residues) = view.split_at(rows);
        for bit in 0..64 {
            let ones = plain.iter().filter(|w| (*w >> bit) & 1 == 1).count() as f64;
            let z = (ones - rows as f64 / 2.0) / (rows as f64 / 4.0).sqrt();
            assert!(z.abs() < 6.0, "bit {bit}: {ones} ones in {rows}");
        }
        let chi = |v: &[u64]| -> f64 {
            let mut hist = [0f64; 16];
            for &x in v {
                hist[(x as u128 * 16 / T as u128) as usize] += 1.0;
            }
            let e = v.len() as f64 / 16.0;
            hist.iter().map(|h| (h - e) * (h - e) / e).sum()
        };
        assert!(residues.iter().all(|&v| v < T));
        // 15 degrees of freedom: mean 15, sd 5.5; 60 is over eight standard deviations.
        assert!(chi(residues) < 60.0, "chi-square {}", chi(residues));
        // The two openings are independent: their difference modulo `T` is uniform too (masks
        // modulo `T` taken from the masks modulo `2^64` would fail this).
        let joint: Vec<u64> = plain
            .iter()
            .zip(residues)
            .map(|(&p, &r)| (p % T + T - r) % T)
            .collect();
        assert!(chi(&joint) < 60.0, "joint chi-square {}", chi(&joint));
        // Control: what an opening without masks would carry, the value's residues, fails.
        let md = Modulus::new(T);
        let mut bare = vec![5u64; rows];
        crate::mpc::modular::to_residues(0, &mut bare, &vec![0; rows], &md);
        assert!(chi(&bare) > 60.0);
    }

    /// With three servers the source makes no material modulo the prime (a conversion would
    /// have up to two wraps): `None`, before anything is sent.
    #[test]
    fn three_servers_take_no_scores_modulo_the_prime() {
        let pairs = Pairs::list(300, 300, (0..300).collect(), (0..300).collect()).unwrap();
        let out = on_each_server(3, |mut s| {
            let pairs = pairs.clone();
            async move {
                let mut src = OtSource::new().with_max_multiply_adds(1 << 12);
                let mm = src.scores_mod(&mut s, 8, &pairs, &[4, 4]).await.unwrap();
                (mm.is_none(), s.stats().bytes_sent)
            }
        });
        assert!(
            out.iter().all(|&(none, bytes)| none && bytes == 0),
            "{out:?}"
        );
    }

    #[test]
    fn oversized_bilinear_requests_are_refused_with_the_alternative() {
        // 64 x 64 pairs of 2,048 values: 2^27 multiply-adds, above the tests' 2^24.
        let req = Request::Bilinear {
            d: 1 << 11,
            pairs: Pairs::dense(64, 64),
            blocks: vec![],
            split: false,
        };
        let e = fetch_all(2, &req, 4).unwrap_err().to_string();
        assert!(
            e.contains("ring-LWE") && e.contains("correlation = \"dealer\""),
            "{e}"
        );
        // The message reaches both parties: it does not state the pair count, which depends
        // on the other party's rows.
        assert!(!e.contains("4096") && !e.contains("2048"), "{e}");
    }

    /// A request that fails after the links were set up takes them with it; the next request
    /// fails at once, naming why, instead of setting the links up again alone (out of step
    /// with peers that kept theirs). Here both servers' first request is refused after the
    /// setup (too large for the slot bound), so each server's second one must not run.
    #[test]
    fn a_request_after_a_failed_one_is_refused() {
        let oversized = Request::Bilinear {
            d: 1 << 11,
            pairs: Pairs::dense(64, 64),
            blocks: vec![],
            split: false,
        };
        let outcomes = on_each_server(2, |mut s| {
            let req = oversized.clone();
            async move {
                let mut src = OtSource::new()
                    .with_max_multiply_adds(1 << 24)
                    .with_max_slot_operations(1 << 27);
                let first = src.fetch(&mut s, &req).await.map(|_| ());
                let beaver = Request::Beaver { n: 3, fanout: 2 };
                let second = src.fetch(&mut s, &beaver).await.map(|_| ());
                (first, second)
            }
        });
        for (first, second) in outcomes {
            assert!(first.unwrap_err().to_string().contains("ring-LWE"));
            let e = second.unwrap_err().to_string();
            assert!(e.contains("an earlier request failed"), "{e}");
        }
    }
}
