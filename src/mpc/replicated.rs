//! The three-server replicated correlation source (`correlation = "replicated"`): no dealer and
//! no OT. Three servers make every request's material from seeds each shares with one
//! neighbour; random bits cost at most 62 bits each, everything else no message at all.
//!
//! **Replicated seeds.** Indices are taken mod 3. Server `i` holds the seeds `σ_i` and
//! `σ_{i+1}`: seed `σ_s` is known to servers `s` and `s - 1`, never to `s + 1`. Both holders
//! contribute 32 random bytes to it in one pairwise round when the job starts
//! (`σ_s = SHA-256(s, c_s, c'_{s-1})`), so neither chooses it alone. A random value of a request
//! is `x = x_0 + x_1 + x_2` with `x_s` drawn from `σ_s`; server `i` knows `x_i` and `x_{i+1}`,
//! never `x_{i+2}`, so `x` is uniform to it. Its additive share, what the engine sees, is `x_i`.
//!
//! **Products are local.** For `c = a b` server `i` takes `c_i = a_i b_i + a_i b_{i+1} +
//! a_{i+1} b_i`; over the three servers these terms cover each of the nine `a_s b_t` once.
//! The same holds for AND triples (AND and XOR instead of product and sum), and for the
//! bilinear form:
//! `C_i = <A_i + A_{i+1}, B_i + B_{i+1}> - <A_{i+1}, B_{i+1}>` per pair, with the block norms
//! taken the same way. This is the dealer's work per server, done twice, with no traffic. That
//! is what makes a dealer-free job of the real size possible (OT mode pays 1.5 KB per product).
//!
//! **Bits held both ways (daBits).** A random bit `β = β_0 ⊕ β_1 ⊕ β_2` (XOR shares drawn as
//! above) is, as an integer, `Σ β_s - 2 Σ β_s β_{s+1} + 4 β_0 β_1 β_2`. Server `i` knows
//! `β_i β_{i+1}` and adds `β_i - 2 β_i β_{i+1}`. The cubic term costs one split. A bit's *role*
//! `r` is its word's index mod 3. Server `r` knows `m = β_r β_{r+1}`. It draws `u` from `σ_r`,
//! which server `r - 1` also holds, and sends `v = m - u` to server `r + 1`. To `r + 1`, `v` is
//! uniform, because it does not hold `σ_r`. Then `4 m β_{r+2} = 4 u β_{r+2} + 4 v β_{r+2}`:
//! server `r - 1` adds the first term and server `r + 1` the second. Both of them hold
//! `β_{r+2}`. Truncation, comparison and B2a masks follow from the bits
//! ([`crate::mpc::bit_masks`]). The masks depend on the low `b` bits of a bit's share only
//! ([`Masks::significant_bits`]), and the split enters it times 4, so `v` is sent with its low
//! `b - 2` bits only, packed.
//!
//! **Zero-sharing.** Server `i - 1` holds `σ_i`, so it can compute every plain draw of server
//! `i` (`a_i`, `β_i`, ...). The engine was built for dealer material, whose shares are private
//! to their server, and it opens values masked with them: `x_i - a_i` tells server `i - 1`
//! server `i`'s share `x_i`. Computed shares made that fatal: `c_i = a_i b_i + a_i b_{i+1} +
//! a_{i+1} b_i` is known to server `i - 1` up to terms in `a_{i+1}, b_{i+1}`, so once a product
//! is opened again it learns `x b_i + y a_i`; a random bit's `β_i - 2 β_i β_{i+1}` gives it
//! `β_{i+1}` wherever `β_i = 1`. So every share held as words gets a fresh sharing of zero,
//! `ρ_i - ρ_{i+1}` (XOR for boolean parts) with `ρ_s` drawn from `σ_s` (Araki, Furukawa,
//! Lindell, Nof and Ohara, CCS 2016). The three shares are then uniform subject to their sum, as
//! the dealer's are, and the zero-sharings cancel. Only the bilinear form's masks stay streams
//! of `σ_i`, which server `i - 1` can draw. A first version without the zero-sharing was found
//! in review; `a_server_holding_its_neighbours_seed_cannot_read_the_bits` is the attack.
//!
//! **Trust.** Private against any *one* server that follows the protocol. Server `i - 1` can
//! still read server `i`'s share of a value opened against one of those masks. But everything
//! it sees is no more than what servers `i - 1` and `i` would see together in a dealer job with
//! the same three servers, which stays private against two colluding servers. Each opened
//! *total* stays masked by a share drawn from `σ_{i+1}`, the seed it lacks. Two colluding
//! servers hold all three seeds, hence every mask. So this mode tolerates one curious server of
//! three, where a dealer job with three servers tolerates two (design.md, threat model). A
//! server that sends a wrong `v` makes a bit wrong exactly when the honest `β_{r+2}` is 1. This is
//! the same selective-failure gap as OT mode's wrong corrections, left open in both.

use crate::error::{Error, PeerName, Result};
use crate::mpc::bit_masks::{Masks, add_high};
use crate::mpc::bit_pack::{Packer, Unpacker};
use crate::mpc::carry_tree::tree_and_words;
use crate::mpc::channel::Transport;
use crate::mpc::correlated::{Correlations, Material, Part, Request, Stream, Sum};
use crate::mpc::dealer::bilinear_products;
use crate::mpc::digest::sha256;
use crate::mpc::prg::{Prg, Seed, combine_stream};
use crate::mpc::protocol::{Protocol, Session, Step};
use crate::mpc::ring;
use zeroize::Zeroize;

/// The number of servers this source works with.
pub const SERVERS: usize = 3;

/// PRG streams per request: the components, the bits of truncation masks, the splits `u` of
/// the cubic terms, the high parts of comparison masks, and the zero-sharings.
const STREAMS: u64 = 5;
const COMPONENTS: u64 = 0;
const BITS: u64 = 1;
const SPLITS: u64 = 2;
const HIGH: u64 = 3;
const ZERO: u64 = 4;

fn next(i: usize) -> usize {
    (i + 1) % SERVERS
}

fn prev(i: usize) -> usize {
    (i + SERVERS - 1) % SERVERS
}

/// A seed from its two holders' contributions, bound to its index.
fn derive(s: usize, from_s: &Seed, from_prev: &Seed) -> Seed {
    Seed(sha256(
        "ppea replicated seed v1",
        &[&(s as u64).to_le_bytes(), &from_s.0, &from_prev.0],
    ))
}

/// The two seeds a server holds (`σ_me`, `σ_{me+1}`). `Debug` is redacted.
#[derive(Clone)]
pub struct Seeds {
    me: usize,
    own: Seed,
    next: Seed,
}

impl std::fmt::Debug for Seeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Seeds(me={}, <redacted>)", self.me)
    }
}

impl Seeds {
    fn of(&self, s: usize) -> &Seed {
        match s {
            _ if s == self.me => &self.own,
            _ if s == next(self.me) => &self.next,
            _ => unreachable!("server {} does not hold seed {s}", self.me),
        }
    }

    /// Share `s` (this server's own, or the next one) of `len` words at `at` of `stream`.
    fn draw(&self, s: usize, stream: u64, at: usize, len: usize) -> Vec<u64> {
        Prg::at(self.of(s), stream, at as u64).vec(len)
    }

    /// This server's two shares, `(x_me, x_{me+1})`.
    fn pair(&self, stream: u64, at: usize, len: usize) -> (Vec<u64>, Vec<u64>) {
        let me = self.me;
        (
            self.draw(me, stream, at, len),
            self.draw(next(me), stream, at, len),
        )
    }
}

/// The seed setup, as a state machine: one pairwise round of contributions.
pub enum Setup {
    /// Not started.
    Start {
        /// This server.
        me: usize,
        /// Servers in the job.
        k: usize,
    },
    /// Contributions sent: to `me - 1` for `σ_me`, to `me + 1` for `σ_{me+1}`.
    Sent {
        /// This server.
        me: usize,
        /// This server's contribution to `σ_me`.
        own: Seed,
        /// This server's contribution to `σ_{me+1}`.
        next: Seed,
    },
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setup::Start { me, k } => write!(f, "Setup::Start(me={me}, k={k})"),
            Setup::Sent { me, .. } => write!(f, "Setup::Sent(me={me}, <redacted>)"),
        }
    }
}

impl Setup {
    /// Server `me` of `k`.
    pub fn new(me: usize, k: usize) -> Setup {
        Setup::Start { me, k }
    }
}

impl Protocol for Setup {
    type Output = Seeds;

    fn start(self) -> Result<Step<Self>> {
        let Setup::Start { me, k } = self else {
            return Err(Error::invalid("replicated seed setup started twice"));
        };
        if k != SERVERS {
            return Err(Error::invalid(format!(
                "correlation = \"replicated\" needs exactly {SERVERS} servers (private while \
                 no two of them collude), this job has {k}: use correlation = \"dealer\" or \"ot\""
            )));
        }
        let (own, nxt) = (Seed::random(), Seed::random());
        let mut payloads = vec![Vec::new(); SERVERS];
        payloads[prev(me)] = own.to_words().to_vec();
        payloads[next(me)] = nxt.to_words().to_vec();
        let expected = (0..SERVERS).map(|p| if p == me { 0 } else { 4 }).collect();
        Ok(Step::SendEach(
            Setup::Sent { me, own, next: nxt },
            payloads,
            expected,
        ))
    }

    fn receive(self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        let Setup::Sent { me, own, next: nxt } = self else {
            return Err(Error::invalid(
                "replicated seed setup fed before it started",
            ));
        };
        let from = |p: usize| -> Result<Seed> {
            let w: &[u64; 4] = incoming
                .get(p)
                .and_then(|m| m.as_slice().try_into().ok())
                .ok_or_else(|| {
                    Error::protocol(
                        PeerName::Server(p),
                        "replicated seed setup: expected 4 words",
                    )
                })?;
            Ok(Seed::from_words(w))
        };
        // Server `me - 1` contributes to `σ_me`, server `me + 1` to `σ_{me+1}`.
        let got = (from(prev(me)), from(next(me)));
        let mut incoming = incoming;
        incoming.iter_mut().for_each(|m| m.zeroize());
        let (for_own, for_next) = (got.0?, got.1?);
        Ok(Step::Done(Seeds {
            me,
            own: derive(me, &own, &for_own),
            next: derive(next(me), &for_next, &nxt),
        }))
    }
}

/// Random bits held both ways, added into their masks ([`Masks`]) as their arithmetic shares
/// complete, so that no array of 64 words per word of bits is ever held.
struct DaBits {
    masks: Masks,
    out: Vec<Vec<u64>>,
    /// This server's second share (`β_{me+1}`) of the bits, by word.
    next: Vec<u64>,
    /// Words expected from server `me - 1`.
    incoming: usize,
}

impl DaBits {
    /// Starts the conversion of the bits whose shares this server holds (`own` = `β_me`,
    /// `nxt` = `β_{me+1}`, by word): adds every share it can complete, and returns the words
    /// `v` for server `me + 1`.
    fn start(
        seeds: &Seeds,
        stream: u64,
        masks: Masks,
        own: &[u64],
        nxt: Vec<u64>,
    ) -> (DaBits, Vec<u64>) {
        let me = seeds.me;
        let mut out = masks.zeros();
        let mut send = Packer::with_capacity(DaBits::expected(&masks, own.len(), me));
        // The splits `u` of the bits of role `r` come from `σ_r`, held by servers `r` and
        // `r - 1`: 64 words per word of that role, in order.
        let mut splits = [me, next(me)].map(|r| Prg::new(seeds.of(r), stream));
        let mut u = [0u64; 64];
        for (w, (&b0, &b1)) in own.iter().zip(&nxt).enumerate() {
            let role = w % SERVERS;
            if role == me {
                splits[0].fill(&mut u);
            } else if role == next(me) {
                splits[1].fill(&mut u);
            }
            for (l, &u) in u.iter().enumerate() {
                let (x, y) = ((b0 >> l) & 1, (b1 >> l) & 1);
                let mut a = x.wrapping_sub(2 * (x & y));
                if role == me {
                    // m = β_me β_{me+1}; server me - 1 adds 4 u β_{me+2}.
                    send.push((x & y).wrapping_sub(u), split_bits(&masks, w, l));
                } else if role == next(me) {
                    // Server me + 1 split its m with u: add 4 u β_{role+2}, and role + 2 = me.
                    a = a.wrapping_add(u.wrapping_mul(4 * x));
                }
                masks.add(&mut out, w, l, a);
            }
        }
        (
            DaBits {
                incoming: DaBits::expected(&masks, nxt.len(), prev(me)),
                masks,
                out,
                next: nxt,
            },
            send.words,
        )
    }

    /// Words server `from` sends the next server: the splits of the bits of its role, packed.
    fn expected(masks: &Masks, words: usize, from: usize) -> usize {
        let bits: usize = (from..words)
            .step_by(SERVERS)
            .map(|w| {
                (0..64)
                    .map(|l| split_bits(masks, w, l) as usize)
                    .sum::<usize>()
            })
            .sum();
        bits.div_ceil(64)
    }

    /// Adds `4 v β_{me+1}` for the bits of role `me - 1` (`v` from server `me - 1`) and returns
    /// the masks.
    fn finish(mut self, me: usize, v: &[u64]) -> Result<Vec<Vec<u64>>> {
        let want = self.incoming;
        if v.len() != want {
            return Err(Error::protocol(
                PeerName::Server(prev(me)),
                format!(
                    "replicated random bits: expected {want} words, received {}",
                    v.len()
                ),
            ));
        }
        let mut v = Unpacker::new(v);
        for (w, &b1) in self.next.iter().enumerate() {
            if w % SERVERS != prev(me) {
                continue;
            }
            for l in 0..64 {
                let v = v.take(split_bits(&self.masks, w, l));
                let t = v.wrapping_mul(4 * ((b1 >> l) & 1));
                self.masks.add(&mut self.out, w, l, t);
            }
        }
        Ok(self.out)
    }
}

/// Bits of the split of bit `l` of word `w` that are sent. The masks depend on the low `b` bits
/// of the bit's share only ([`Masks::significant_bits`]) and the split enters it times 4, so
/// only the split's low `b - 2` bits matter. The split stays uniform in them.
fn split_bits(masks: &Masks, w: usize, l: usize) -> u32 {
    masks.significant_bits(w, l).saturating_sub(2)
}

/// Adds a fresh sharing of zero to every component held as words: `ρ_me - ρ_{me+1}` (XOR for
/// boolean components), `ρ_s` drawn from `σ_s`. Server `me - 1` holds `σ_me`, so it can compute
/// every draw of this server; without the zero-sharing it would also know enough of a computed
/// share (a product's `a_me b_me + a_me b_{me+1} + a_{me+1} b_me`, a random bit's
/// `β_me - 2 β_me β_{me+1}`) to learn this server's inputs once the engine opens a value masked
/// with it. With it, each share is uniform to that server (it lacks `σ_{me+1}`) and to server
/// `me + 1` (it lacks `σ_me`), and the material is distributed as the dealer's; the
/// zero-sharings cancel in the sum. Plain draws get one too, so that no list of which
/// components are computed has to be kept right: only the bilinear form's masks, left as
/// streams of `σ_me`, stay known to server `me - 1`.
fn rerandomize(seeds: &Seeds, stream: u64, req: &Request, parts: &mut [Part]) {
    let comps = req.components();
    for (c, (at, part)) in offsets(req).into_iter().zip(parts.iter_mut()).enumerate() {
        let Part::Words(w) = part else { continue };
        // Combined into the share in place, a part of the streams at a time (no copies).
        let (me, nx) = (seeds.of(seeds.me), seeds.of(next(seeds.me)));
        match comps[c].sum {
            Sum::Arith => {
                combine_stream(me, stream, at as u64, w, ring::add_assign);
                combine_stream(nx, stream, at as u64, w, ring::sub_assign);
            }
            Sum::Xor => {
                combine_stream(me, stream, at as u64, w, ring::xor_assign);
                combine_stream(nx, stream, at as u64, w, ring::xor_assign);
            }
        }
    }
}

/// Where each component of `req` starts on the components' stream.
fn offsets(req: &Request) -> Vec<usize> {
    req.components()
        .iter()
        .scan(0, |at, c| {
            let here = *at;
            *at += c.len;
            Some(here)
        })
        .collect()
}

/// `x_me y_me + x_me y_next + x_next y_me` under `mul` and `add`: this server's share of the
/// products, where `x` repeats every `x.0.len()` words.
fn local_products(
    x: &(Vec<u64>, Vec<u64>),
    y: &(Vec<u64>, Vec<u64>),
    mul: impl Fn(u64, u64) -> u64,
    add: impl Fn(u64, u64) -> u64,
) -> Vec<u64> {
    let n = x.0.len();
    (0..y.0.len())
        .map(|p| {
            let (a0, a1, b0, b1) = (x.0[p % n], x.1[p % n], y.0[p], y.1[p]);
            add(add(mul(a0, b0), mul(a0, b1)), mul(a1, b0))
        })
        .collect()
}

fn arith_products(x: &(Vec<u64>, Vec<u64>), y: &(Vec<u64>, Vec<u64>)) -> Vec<u64> {
    local_products(x, y, u64::wrapping_mul, u64::wrapping_add)
}

fn and_products(x: &(Vec<u64>, Vec<u64>), y: &(Vec<u64>, Vec<u64>)) -> Vec<u64> {
    local_products(x, y, |a, b| a & b, |a, b| a ^ b)
}

/// One request's material, as a state machine: local draws and products at the start, then,
/// when the request holds random bits, one pairwise round for their cubic terms. The request
/// must be valid ([`Request::validate`]).
struct Deal {
    seeds: Seeds,
    req: Request,
    stream: u64,
    /// Finished components (comparisons: all but `r`).
    parts: Vec<Part>,
    /// Random bits awaiting their cubic terms.
    bits: Option<DaBits>,
    /// This server's share of the comparison masks' high parts.
    high: Vec<u64>,
}

impl std::fmt::Debug for Deal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Deal({:?}, <redacted>)", self.req)
    }
}

impl Deal {
    /// Request number `t` of the job, made with `seeds`.
    fn new(seeds: Seeds, req: Request, t: u64) -> Deal {
        Deal {
            seeds,
            req,
            stream: t * STREAMS,
            parts: Vec::new(),
            bits: None,
            high: Vec::new(),
        }
    }

    fn comps(&self) -> u64 {
        self.stream + COMPONENTS
    }

    /// Every component that needs no message; random bits started.
    fn local(&mut self) -> Option<Vec<u64>> {
        let (seeds, comps, at) = (&self.seeds, self.comps(), offsets(&self.req));
        let me = seeds.me;
        let masks = Masks::of(&self.req);
        let start_bits = |own: &[u64], nxt: Vec<u64>| {
            let masks = masks.expect("a request made from bits");
            DaBits::start(seeds, self.stream + SPLITS, masks, own, nxt)
        };
        match &self.req {
            Request::Beaver { n, fanout } => {
                let a = seeds.pair(comps, at[0], *n);
                let b = seeds.pair(comps, at[1], n * fanout);
                let c = arith_products(&a, &b);
                self.parts = vec![Part::Words(a.0), Part::Words(b.0), Part::Words(c)];
                None
            }
            Request::Bilinear { d, pairs, .. } => {
                let (n, m) = (pairs.rows() * d, pairs.cols() * d);
                let mask = |s: usize| {
                    let seed = seeds.of(s).clone();
                    [
                        Part::Stream(Stream::new(seed.clone(), comps, at[0] as u64, n)),
                        Part::Stream(Stream::new(seed, comps, at[1] as u64, m)),
                    ]
                };
                let mut out = bilinear_products(&self.req, &[mask(me), mask(next(me))]);
                let next_only = bilinear_products(&self.req, &[mask(next(me))]);
                for (o, x) in out.iter_mut().zip(&next_only) {
                    crate::mpc::ring::sub_assign(o, x);
                }
                let [a, b] = mask(me);
                self.parts = vec![a, b];
                self.parts.extend(out.into_iter().map(Part::Words));
                None
            }
            Request::Trunc { n, .. } => {
                let (own, nxt) = seeds.pair(self.stream + BITS, 0, *n);
                let (bits, send) = start_bits(&own, nxt);
                self.bits = Some(bits);
                Some(send)
            }
            Request::Compare { n, ell } => {
                let (n, ell) = (*n, *ell as usize);
                let blocks = n.div_ceil(64);
                let t = tree_and_words(ell as u32, blocks);
                let (mut own, mut nxt) = seeds.pair(comps, at[1], ell * blocks);
                if n % 64 != 0 {
                    // Lanes past `n` are zero, as in the dealer's material.
                    let keep = (1u64 << (n % 64)) - 1;
                    for i in 0..ell {
                        own[i * blocks + blocks - 1] &= keep;
                        nxt[i * blocks + blocks - 1] &= keep;
                    }
                }
                let ta = seeds.pair(comps, at[2], t);
                let tb1 = seeds.pair(comps, at[3], t);
                let tb2 = seeds.pair(comps, at[4], t);
                let (c1, c2) = (and_products(&ta, &tb1), and_products(&ta, &tb2));
                let (bits, send) = start_bits(&own, nxt);
                self.bits = Some(bits);
                if ell < 64 {
                    self.high = seeds.draw(me, self.stream + HIGH, 0, n);
                }
                self.parts = [own, ta.0, tb1.0, tb2.0, c1, c2].map(Part::Words).into();
                Some(send)
            }
            Request::B2a { n } => {
                let (own, nxt) = seeds.pair(comps, at[0], n.div_ceil(64));
                let (bits, send) = start_bits(&own, nxt);
                self.bits = Some(bits);
                self.parts = vec![Part::Words(own)];
                Some(send)
            }
        }
    }

    /// The material: this server's parts, every one held as words re-randomised.
    fn material(mut self) -> Material {
        let mut parts = std::mem::take(&mut self.parts);
        rerandomize(&self.seeds, self.stream + ZERO, &self.req, &mut parts);
        Material::new(parts)
    }

    /// The material, once the masks built from random bits are complete.
    fn finish(mut self, mut masks: Vec<Vec<u64>>) -> Material {
        match self.req {
            Request::Trunc { .. } => self.parts = masks.into_iter().map(Part::Words).collect(),
            Request::Compare { ell, .. } => {
                let mut r = masks.pop().expect("one mask");
                if ell < 64 {
                    add_high(&mut r, ell, &self.high);
                }
                self.parts.insert(0, Part::Words(r));
            }
            Request::B2a { .. } => self.parts.extend(masks.into_iter().map(Part::Words)),
            Request::Beaver { .. } | Request::Bilinear { .. } => {
                unreachable!("no random bits")
            }
        }
        self.material()
    }
}

impl Protocol for Deal {
    type Output = Material;

    fn start(mut self) -> Result<Step<Self>> {
        let me = self.seeds.me;
        let Some(send) = self.local() else {
            return Ok(Step::Done(self.material()));
        };
        let bits = self.bits.as_ref().expect("a request made from bits");
        let mut payloads = vec![Vec::new(); SERVERS];
        payloads[next(me)] = send;
        let mut expected = vec![0; SERVERS];
        expected[prev(me)] = bits.incoming;
        Ok(Step::SendEach(self, payloads, expected))
    }

    fn receive(mut self, mut incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        let me = self.seeds.me;
        for (p, m) in incoming.iter().enumerate() {
            if p != me && p != prev(me) && !m.is_empty() {
                return Err(Error::protocol(
                    PeerName::Server(p),
                    "replicated random bits: a message from a server that sends none",
                ));
            }
        }
        let bits = self
            .bits
            .take()
            .ok_or_else(|| Error::invalid("replicated material fed with no bits pending"))?;
        let v = incoming.get(prev(me)).map_or(&[][..], |m| &m[..]);
        let masks = bits.finish(me, v);
        incoming.iter_mut().for_each(|m| m.zeroize());
        Ok(Step::Done(self.finish(masks?)))
    }
}

/// A server's replicated source for one job. `Debug` is redacted.
#[derive(Default)]
pub struct ReplicatedSource {
    seeds: Option<Seeds>,
    counter: u64,
}

impl std::fmt::Debug for ReplicatedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplicatedSource(requests={}, <redacted>)", self.counter)
    }
}

impl ReplicatedSource {
    /// A source whose seeds are agreed on with the first request.
    pub fn new() -> ReplicatedSource {
        ReplicatedSource::default()
    }
}

impl Correlations for ReplicatedSource {
    async fn fetch<T: Transport>(
        &mut self,
        session: &mut Session<T>,
        req: &Request,
    ) -> Result<Material> {
        req.validate()?;
        let seeds = match &self.seeds {
            Some(s) => s.clone(),
            None => {
                let s = session
                    .run(Setup::new(session.me(), session.servers()))
                    .await?;
                self.seeds = Some(s.clone());
                s
            }
        };
        let t = self.counter;
        self.counter += 1;
        session.run(Deal::new(seeds, req.clone(), t)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::material_check::{correct, reconstruct, requests};
    use crate::mpc::protocol::Stats;

    /// Every server's material for each of `reqs` in turn, with its traffic.
    fn fetch_all(k: usize, reqs: &[Request]) -> Result<Vec<(Vec<Material>, Stats)>> {
        crate::mpc::material_check::fetch_all(k, ReplicatedSource::new, reqs)
    }

    /// The true values of each request's material, and every server's traffic.
    fn truths(reqs: &[Request]) -> (Vec<Vec<Vec<u64>>>, Vec<Stats>) {
        let runs = fetch_all(SERVERS, reqs).unwrap();
        let stats = runs.iter().map(|r| r.1).collect();
        let mut per_req: Vec<Vec<Material>> = reqs.iter().map(|_| Vec::new()).collect();
        for (mats, _) in runs {
            for (i, m) in mats.into_iter().enumerate() {
                per_req[i].push(m);
            }
        }
        let truths = reqs
            .iter()
            .zip(per_req)
            .map(|(r, m)| reconstruct(r, m))
            .collect();
        (truths, stats)
    }

    #[test]
    fn every_request_is_made_right_by_three_servers() {
        let mut reqs = requests();
        reqs.push(Request::Beaver { n: 3, fanout: 2 });
        let (truths, _) = truths(&reqs);
        for (req, truth) in reqs.iter().zip(&truths) {
            assert!(correct(req, truth), "{req:?}");
        }
    }

    #[test]
    fn random_bits_are_the_only_traffic_and_requests_differ() {
        // Setup: 4 words to each peer. Beaver and the bilinear form: no message at all.
        let (_, stats) = truths(&[Request::Beaver { n: 50, fanout: 2 }, requests()[6].clone()]);
        for s in &stats {
            assert_eq!((s.bytes_sent, s.rounds), (2 * 4 * 8, 1), "{s:?}");
        }
        // 4 words of bits (roles 0, 1, 2, 0): a 62-bit split per bit, from the bit's role
        // server (62 words per word of bits).
        let b2a = Request::B2a { n: 256 };
        let (truths, stats) = truths(&[b2a.clone(), b2a]);
        let sent: Vec<u64> = stats.iter().map(|s| s.bytes_sent - 64).collect();
        assert_eq!(sent, vec![2 * 2 * 62 * 8, 2 * 62 * 8, 2 * 62 * 8]);
        assert!(stats.iter().all(|s| s.rounds == 3));
        // The same request twice: other bits (each request has its own streams).
        assert_ne!(truths[0][0], truths[1][0]);
        // 100 bits: word 0 (role 0) 64 splits of 62 bits, word 1 (role 1) 36 lanes in use.
        let (_, stats) = self::truths(&[Request::B2a { n: 100 }]);
        let sent: Vec<u64> = stats.iter().map(|s| s.bytes_sent / 8 - 8).collect();
        assert_eq!(sent, vec![62, (36 * 62usize).div_ceil(64) as u64, 0]);
        // A comparison of 64 values of 38 bits: bit i (word i, role i mod 3) needs
        // 38 - 2 - i bits per lane, 64 lanes: 36 - i words.
        let (_, stats) = self::truths(&[Request::Compare { n: 64, ell: 38 }]);
        let sent: Vec<u64> = stats.iter().map(|s| s.bytes_sent / 8 - 8).collect();
        let want: Vec<u64> = (0..3)
            .map(|r| (r..36).step_by(3).map(|i| 36 - i as u64).sum())
            .collect();
        assert_eq!(sent, want);
        let ones: u32 = truths[0][0].iter().map(|w| w.count_ones()).sum();
        assert!((80..=176).contains(&ones), "{ones} ones of 256");
    }

    /// Every server's shares of every computed component (products, bilinear `C` and norms,
    /// AND triples, masks from random bits) have balanced low bits. Without the zero-sharing, a
    /// product share `a_0 b_0 + a_0 b_1 + a_1 b_0` has bit 0 set with probability 3/8.
    #[test]
    fn computed_shares_have_balanced_bits() {
        let pairs = crate::mpc::pairs::Pairs::dense(64, 64);
        let reqs = [
            Request::Beaver { n: 4096, fanout: 1 },
            Request::Bilinear {
                d: 4,
                pairs,
                blocks: vec![1, 3],
                split: true,
            },
            Request::Compare { n: 4096, ell: 20 },
            Request::Trunc { n: 4096, frac: 8 },
            Request::B2a { n: 4096 },
        ];
        let runs = fetch_all(SERVERS, &reqs).unwrap();
        for (s, (mats, _)) in runs.into_iter().enumerate() {
            for (req, m) in reqs.iter().zip(mats) {
                for (c, part) in m.into_vec().into_iter().enumerate() {
                    let Part::Words(w) = &part else { continue };
                    if w.len() < 1024 {
                        continue;
                    }
                    for bit in 0..4 {
                        let ones = w.iter().filter(|x| (*x >> bit) & 1 == 1).count();
                        let share = ones as f64 / w.len() as f64;
                        // Six standard deviations (0.5 / sqrt(len) each): 0.094 at 1,024 words,
                        // below the 1/8 off-balance of an unmasked product. A fixed 0.06 was
                        // 3.8 of them there, and with some 300 checks failed about one run in 25.
                        let tol = 3.0 / (w.len() as f64).sqrt();
                        assert!(
                            (share - 0.5).abs() <= tol,
                            "server {s}, {req:?} component {c}, bit {bit}: {share:.3} ones"
                        );
                    }
                }
            }
        }
    }

    /// The attack the zero-sharing stops: server 0 holds `σ_1`, so it knows server 1's boolean
    /// share `β_1` of every random bit. Without the zero-sharing, where `β_1 = 1` server 1's
    /// arithmetic share is `1 - 2 β_2` modulo 4, which gives server 0 the bit itself once the
    /// engine opens a value masked with that share. With it, the guess is a coin toss.
    #[test]
    fn a_server_holding_its_neighbours_seed_cannot_read_the_bits() {
        let req = Request::B2a { n: 8192 };
        let runs = fetch_all(SERVERS, std::slice::from_ref(&req)).unwrap();
        let mats: Vec<Vec<Vec<u64>>> = runs
            .into_iter()
            .map(|(m, _)| {
                let [bits, arith] = m.into_iter().next().unwrap().into_parts::<2>().unwrap();
                vec![bits, arith]
            })
            .collect();
        let bit = |words: &[u64], i: usize| (words[i / 64] >> (i % 64)) & 1;
        let truth: Vec<u64> = (0..8192)
            .map(|i| (0..3).fold(0, |b, s| b ^ bit(&mats[s][0], i)))
            .collect();
        let (b0, b1, a1) = (&mats[0][0], &mats[1][0], &mats[1][1]);
        let (mut tried, mut right) = (0, 0);
        for i in 0..8192 {
            if bit(b1, i) == 1 {
                let b2 = u64::from(a1[i] % 4 == 3);
                tried += 1;
                right += usize::from(bit(b0, i) ^ 1 ^ b2 == truth[i]);
            }
        }
        let rate = right as f64 / tried as f64;
        assert!(
            tried > 3000 && (0.45..=0.55).contains(&rate),
            "{right} of {tried}"
        );
    }

    /// Server 0 holds `σ_1`, so it can draw server 1's plain shares; none of server 1's shares
    /// held as words is such a draw (each carries a zero-sharing with a draw from `σ_2`).
    #[test]
    fn no_share_held_as_words_is_a_draw_the_neighbour_can_make() {
        use crate::mpc::protocol::run_lockstep;
        let (seeds, _) = run_lockstep((0..3).map(|me| Setup::new(me, 3)).collect()).unwrap();
        let reqs = requests();
        for (t, req) in reqs.iter().enumerate() {
            let deals = seeds
                .iter()
                .map(|s| Deal::new(s.clone(), req.clone(), t as u64))
                .collect();
            let (mats, _) = run_lockstep(deals).unwrap();
            let parts = mats.into_iter().nth(1).unwrap().into_vec();
            for ((c, at), part) in offsets(req).into_iter().enumerate().zip(parts) {
                let Part::Words(w) = &part else { continue };
                // What server 0 draws for server 1 at that place of each of its streams.
                for stream in 0..STREAMS {
                    let guess = seeds[0].draw(1, t as u64 * STREAMS + stream, at, w.len());
                    assert!(
                        w.is_empty() || *w != guess,
                        "{req:?} component {c} is server 0's draw (stream {stream})"
                    );
                }
            }
        }
    }

    #[test]
    fn packed_splits_read_back_and_fill_their_words() {
        let mut prg = Prg::new(&Seed([7; 32]), 0);
        let vals: Vec<(u64, u32)> = (0..1000)
            .map(|i| (prg.next_u64(), [0, 1, 2, 31, 61, 62, 63][i % 7]))
            .collect();
        let mut p = Packer::with_capacity(0);
        vals.iter().for_each(|&(v, b)| p.push(v, b));
        let bits: usize = vals.iter().map(|v| v.1 as usize).sum();
        assert_eq!(p.words.len(), bits.div_ceil(64));
        let mut u = Unpacker::new(&p.words);
        for &(v, b) in &vals {
            let want = if b == 0 { 0 } else { v & ((1 << b) - 1) };
            assert_eq!(u.take(b), want);
        }
        // Comparison bits of weight 2^i need 62 - i bits; the top two none.
        let m = Masks::Compare { n: 64, ell: 64 };
        assert_eq!((split_bits(&m, 0, 0), split_bits(&m, 10, 5)), (62, 52));
        assert_eq!((split_bits(&m, 62, 0), split_bits(&m, 63, 0)), (0, 0));
    }

    #[test]
    fn seeds_are_bound_to_their_index() {
        let (a, b) = (Seed([1; 32]), Seed([2; 32]));
        assert!(derive(1, &a, &b) != derive(2, &a, &b));
        assert!(derive(1, &a, &b) != derive(1, &b, &a));
    }

    #[test]
    fn other_server_counts_are_refused_naming_the_alternatives() {
        for k in [2, 4] {
            let e = fetch_all(k, &[Request::B2a { n: 8 }])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("exactly 3 servers") && e.contains(&format!("has {k}")),
                "{e}"
            );
        }
    }

    #[test]
    fn each_seed_is_held_by_exactly_two_servers() {
        // The trust statement in the module docs: each server lacks exactly one seed (so one
        // share of every random value), and any two servers together hold all three.
        let (seeds, rounds) =
            crate::mpc::protocol::run_lockstep((0..3).map(|me| Setup::new(me, 3)).collect())
                .unwrap();
        assert_eq!(rounds, 1);
        let held = |s: usize| -> Vec<usize> {
            let sigma = seeds[s].own.clone();
            (0..3)
                .filter(|&i| seeds[i].own == sigma || seeds[i].next == sigma)
                .collect()
        };
        assert_eq!(held(0), vec![0, 2]);
        assert_eq!(held(1), vec![0, 1]);
        assert_eq!(held(2), vec![1, 2]);
        // Fresh contributions: another setup agrees on other seeds.
        let (again, _) =
            crate::mpc::protocol::run_lockstep((0..3).map(|me| Setup::new(me, 3)).collect())
                .unwrap();
        assert!(again[0].own != seeds[0].own);
    }

    /// Server 1 sends fixed contributions instead of fresh ones (all zero).
    enum Setups {
        Honest(Setup),
        Fixed(usize),
    }

    impl Protocol for Setups {
        type Output = Seeds;

        fn start(self) -> Result<Step<Self>> {
            match self {
                Setups::Honest(p) => Ok(match p.start()? {
                    Step::SendEach(p, m, e) => Step::SendEach(Setups::Honest(p), m, e),
                    _ => unreachable!("setup sends"),
                }),
                Setups::Fixed(me) => {
                    let zero = Seed([0; 32]).to_words().to_vec();
                    let mut m = vec![Vec::new(); 3];
                    (m[prev(me)], m[next(me)]) = (zero.clone(), zero);
                    let e = (0..3).map(|p| if p == me { 0 } else { 4 }).collect();
                    Ok(Step::SendEach(Setups::Fixed(me), m, e))
                }
            }
        }

        fn receive(self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
            let p = match self {
                Setups::Honest(p) => p,
                Setups::Fixed(me) => Setup::Sent {
                    me,
                    own: Seed([0; 32]),
                    next: Seed([0; 32]),
                },
            };
            match p.receive(incoming)? {
                Step::Done(s) => Ok(Step::Done(s)),
                _ => unreachable!("setup ends"),
            }
        }
    }

    #[test]
    fn a_server_choosing_its_contributions_chooses_no_seed() {
        let parties = (0..3)
            .map(|me| {
                if me == 1 {
                    Setups::Fixed(1)
                } else {
                    Setups::Honest(Setup::new(me, 3))
                }
            })
            .collect();
        let (seeds, _) = crate::mpc::protocol::run_lockstep(parties).unwrap();
        // Each seed is still held by its two servers only, the three differ, and the two that
        // server 1 contributed to are not what its contributions alone would give.
        let sigma: Vec<Seed> = (0..3).map(|s| seeds[s].own.clone()).collect();
        assert!(sigma[0] != sigma[1] && sigma[1] != sigma[2] && sigma[0] != sigma[2]);
        assert!(
            seeds[0].next == sigma[1] && seeds[1].next == sigma[2] && seeds[2].next == sigma[0]
        );
        let zero = Seed([0; 32]);
        assert!(sigma[1] != derive(1, &zero, &zero) && sigma[2] != derive(2, &zero, &zero));
    }
}
