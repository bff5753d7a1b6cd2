//! The dealer: a helper that generates correlated randomness from seeds.
//!
//! At the start of a job the dealer sends every server a fresh 32-byte master seed. For the
//! job's `t`-th request each server expands its seed on PRG stream `t` and draws its share of
//! every component (see [`crate::mpc::correlated`]); servers `0..k-1` never hear from the dealer again.
//! The dealer draws the same shares, adds them up to learn the random secrets, computes the
//! correlated values (products, bit decompositions, ...) and sends the last server only the
//! *corrections* that make the shares sum to them. Dealer traffic is therefore one share of the
//! correlated components, independent of `k`.
//!
//! **Agreement on every request.** Corrections are safe to hand to the last server only for the
//! request the other servers draw their shares for: corrections for a request of another kind or
//! size are a function of the other servers' draws, and would reveal their masks (and with them,
//! once the masked values are opened, the inputs). So every server sends the dealer, for its
//! `t`-th request, a commitment `SHA-256(tag || t || request)` ([`request_commitment`]); the last
//! server also sends the request itself. The dealer answers only when every commitment matches
//! the request it received; otherwise it refuses the job ([`DealerTransport::refuse`]) and sends
//! no material for it. A server that deviates can make the job fail, but cannot obtain
//! corrections for anything the others did not agree to.
//!
//! Trust: the dealer knows all masks, so it must not collude with any server; it never sees
//! inputs or masked values. The last server learns nothing from corrections: they are its share,
//! uniformly distributed given everything else it holds.

use crate::error::{Error, PeerName, Result};
use crate::mpc::channel::{DealerTransport, Transport};
use crate::mpc::correlated::{Correlations, Material, Part, Request, Stream, Sum, pass_columns};
use crate::mpc::digest::{sha256, to_words};
use crate::mpc::prg::{Prg, Seed, combine_stream};
use crate::mpc::protocol::{Session, blocking};
use crate::mpc::ring;
use crate::mpc::share::check_servers;
use rayon::prelude::*;

/// Words of a request commitment (SHA-256).
pub const COMMITMENT_WORDS: usize = 4;

/// The commitment a server sends the dealer for its `stream`-th request (encoded as words):
/// SHA-256 over a domain tag, the stream number and the request.
pub fn request_commitment(stream: u64, request: &[u64]) -> [u64; COMMITMENT_WORDS] {
    to_words(&sha256(
        "ppea dealer request v1",
        &[&stream.to_le_bytes(), bytemuck::cast_slice(request)],
    ))
}

/// Default ceiling on the material one request may ask for (2^31 words = 16 GiB would be absurd
/// on any machine this runs on; 2^28 words = 2 GiB per component set).
pub const DEFAULT_MAX_WORDS: usize = 1 << 28;

/// Where each component of a request lies on a server's stream: the word offset of every
/// component the server expands from its seed (all of them, except the correlated components
/// of the last server, which corrections fill: `None`), in component order. The one rule both
/// the servers ([`draw_share`]) and the dealer (which draws every server's shares) follow.
fn stream_offsets(req: &Request, last: bool) -> Vec<Option<u64>> {
    let mut at = 0u64;
    req.components()
        .iter()
        .map(|c| {
            (c.random || !last).then(|| {
                let here = at;
                at += c.len as u64;
                here
            })
        })
        .collect()
}

/// This server's draws for request number `stream`: `Some` for every component it expands from
/// its seed (drawn, or left as a [`Stream`] where [`Request::is_streamed`]), `None` for the
/// correlated components of the last server (filled by corrections).
pub fn draw_share(req: &Request, seed: &Seed, stream: u64, last: bool) -> Vec<Option<Part>> {
    req.components()
        .iter()
        .zip(stream_offsets(req, last))
        .enumerate()
        .map(|(i, (c, at))| {
            at.map(|at| {
                if req.is_streamed(i) {
                    Part::Stream(Stream::new(seed.clone(), stream, at, c.len))
                } else {
                    Part::Words(Prg::at(seed, stream, at).vec(c.len))
                }
            })
        })
        .collect()
}

/// The true values of the correlated components, given the true values of the random ones
/// (`Some` at the random positions of `parts`).
pub(crate) fn correlate(req: &Request, parts: &[Option<Vec<u64>>]) -> Vec<Vec<u64>> {
    let get = |i: usize| parts[i].as_deref().expect("random component present");
    match req {
        Request::Beaver { n, fanout } => {
            let (a, b) = (get(0), get(1));
            let mut c = vec![0u64; n * fanout];
            for j in 0..*fanout {
                for i in 0..*n {
                    c[j * n + i] = a[i].wrapping_mul(b[j * n + i]);
                }
            }
            vec![c]
        }
        Request::Bilinear { .. } => unreachable!("bilinear truths are computed by passes"),
        Request::Trunc { frac, .. } => {
            let r = get(0);
            vec![
                r.iter().map(|v| v >> frac).collect(),
                r.iter().map(|v| v >> 63).collect(),
            ]
        }
        Request::Compare { ell, .. } => {
            let (r, ta, tb1, tb2) = (get(0), get(2), get(3), get(4));
            vec![
                ring::bit_slice(r, *ell as usize),
                ta.iter().zip(tb1).map(|(a, b)| a & b).collect(),
                ta.iter().zip(tb2).map(|(a, b)| a & b).collect(),
            ]
        }
        Request::B2a { n } => vec![ring::unslice_bit(get(0), *n)],
    }
}

/// The correlated components of a bilinear request, `C` and the block norms `QA`, `QB`, from
/// every server's streams of the masks `A` and `B` ([`bilinear_products`]).
fn bilinear_truths(req: &Request, seeds: &[Seed], stream: u64) -> Vec<Vec<u64>> {
    let Request::Bilinear { d, pairs, .. } = req else {
        unreachable!("a bilinear request")
    };
    let (d, n, m) = (*d, pairs.rows(), pairs.cols());
    let k = seeds.len();
    let masks: Vec<[Part; 2]> = seeds
        .iter()
        .enumerate()
        .map(|(s, seed)| {
            let at = stream_offsets(req, s + 1 == k);
            let part = |i: usize, len: usize| {
                let at = at[i].expect("random components are drawn by every server");
                Part::Stream(Stream::new(seed.clone(), stream, at, len))
            };
            [part(0, n * d), part(1, m * d)]
        })
        .collect();
    bilinear_products(req, &masks)
}

/// `C` (per pair, or per block and pair when split) and the block norms of the masks
/// `A = sum_s masks[s][0]` and `B = sum_s masks[s][1]` of a bilinear request, a pass of at
/// most [`pass_columns`] columns at a time (never crossing a block), each pass summing the
/// parts' draws of those columns, so memory holds `(n + m)` rows of one pass, not the masks.
pub(crate) fn bilinear_products(req: &Request, masks: &[[Part; 2]]) -> Vec<Vec<u64>> {
    let Request::Bilinear {
        d,
        pairs,
        blocks,
        split,
    } = req
    else {
        unreachable!("a bilinear request")
    };
    let (d, n, m, np, nb) = (*d, pairs.rows(), pairs.cols(), pairs.len(), blocks.len());
    let whole = [d];
    let spans: &[usize] = if blocks.is_empty() { &whole } else { blocks };
    let mut c = vec![0u64; np * if *split { nb } else { 1 }];
    let (mut qa, mut qb) = (vec![0u64; n * nb], vec![0u64; m * nb]);
    let cols = pass_columns(n + m);
    let mut start = 0;
    for (blk, &len) in spans.iter().enumerate() {
        let out = if *split {
            &mut c[blk * np..(blk + 1) * np]
        } else {
            &mut c[..]
        };
        let mut t = 0;
        while t < len {
            let w = cols.min(len - t);
            let sums = |side: usize, rows: usize| {
                let mut x = vec![0u64; rows * w];
                for mask in masks {
                    mask[side].columns(d, start + t, w, &mut x, w, 0, ring::add_assign);
                }
                x
            };
            let (xa, xb) = (sums(0, n), sums(1, m));
            pairs.accumulate_dots(&xa, &xb, w, out);
            if nb > 0 {
                for (x, q) in [(&xa, &mut qa), (&xb, &mut qb)] {
                    q.par_chunks_mut(nb)
                        .zip(x.par_chunks(w))
                        .for_each(|(q, x)| q[blk] = q[blk].wrapping_add(ring::dot(x, x)));
                }
            }
            t += w;
        }
        start += len;
    }
    let mut out = vec![c];
    if nb > 0 {
        out.extend([qa, qb]);
    }
    out
}

/// Combines (adds or XORs) the words `at..at + acc.len()` of `seed`'s stream `stream` into
/// `acc`, in parallel parts.
fn draw_into(seed: &Seed, stream: u64, at: u64, sum: Sum, acc: &mut [u64]) {
    combine_stream(seed, stream, at, acc, |a, x| combine(sum, a, x));
}

fn combine(sum: Sum, acc: &mut [u64], x: &[u64]) {
    match sum {
        Sum::Arith => ring::add_assign(acc, x),
        Sum::Xor => ring::xor_assign(acc, x),
    }
}

/// The dealer's state for one job.
pub struct Dealer {
    seeds: Vec<Seed>,
    counter: u64,
    max_words: usize,
    /// Bound on a bilinear request's masks ([`Request::decode`]).
    mask_words: usize,
}

impl std::fmt::Debug for Dealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Dealer(servers={}, requests={})",
            self.seeds.len(),
            self.counter
        )
    }
}

impl Dealer {
    /// A dealer for `k` servers with fresh master seeds.
    pub fn new(k: usize) -> Result<Dealer> {
        check_servers(k)?;
        Ok(Dealer {
            seeds: (0..k).map(|_| Seed::random()).collect(),
            counter: 0,
            max_words: DEFAULT_MAX_WORDS,
            mask_words: DEFAULT_MAX_WORDS,
        })
    }

    /// Caps the material one request may ask for (and, unless [`Dealer::with_mask_words`]
    /// says otherwise, a bilinear request's masks).
    pub fn with_max_words(mut self, max_words: usize) -> Dealer {
        self.max_words = max_words;
        self.mask_words = max_words;
        self
    }

    /// Caps a bilinear request's masks: the rows one pass over them holds, and their draws
    /// ([`Request::decode`]). The job's material bound, not the message ceiling, which
    /// [`Dealer::with_max_words`] may also take.
    pub fn with_mask_words(mut self, mask_words: usize) -> Dealer {
        self.mask_words = mask_words;
        self
    }

    /// The longest request message accepted: an encoded request never needs more words than
    /// twice the material it asks for, plus a small header.
    pub fn max_request_words(&self) -> usize {
        self.max_words.saturating_mul(2).saturating_add(16)
    }

    /// The seed message for each server (four words each), sent once at job start.
    pub fn seed_messages(&self) -> Vec<Vec<u64>> {
        self.seeds.iter().map(|s| s.to_words().to_vec()).collect()
    }

    /// Answers one request from the last server with its corrections, after checking that
    /// every other server committed to the same request (`commitments[s]` from server `s`).
    /// Refuses, generating nothing, when any commitment differs.
    pub fn handle(&mut self, words: &[u64], commitments: &[Vec<u64>]) -> Result<Vec<u64>> {
        let k = self.seeds.len();
        let stream = self.counter + 1;
        let expected = request_commitment(stream, words);
        if commitments.len() != k - 1 {
            return Err(Error::invalid(format!(
                "request {stream}: {} commitments for {} servers",
                commitments.len(),
                k - 1
            )));
        }
        if let Some(s) = (0..k - 1).find(|&s| commitments[s] != expected) {
            // Not a protocol violation by either: the dealer cannot tell which of the two
            // deviated, or whether a third server sent them different values.
            return Err(Error::invalid(format!(
                "server {s}'s dealer request {stream} differs from the one server {} sent (one \
                 of the two deviates, or another server sent them different values); the dealer \
                 serves only requests every server agrees on",
                k - 1
            )));
        }
        let req = Request::decode(words, self.max_words, self.mask_words)
            .map_err(|e| Error::protocol(PeerName::Server(k - 1), e.to_string()))?;
        self.counter = stream;
        let comps = req.components();
        // True values of the random components: the sum of all servers' draws, accumulated
        // server by server in parts (no server's draw is held whole: memory), at the positions
        // each server draws them ([`stream_offsets`]).
        // Streamed components (the bilinear masks) are summed a pass of columns at a time
        // where they are used ([`bilinear_truths`]), never whole.
        let mut totals: Vec<Option<Vec<u64>>> = comps
            .iter()
            .enumerate()
            .map(|(i, c)| (c.random && !req.is_streamed(i)).then(|| vec![0u64; c.len]))
            .collect();
        for (s, seed) in self.seeds.iter().enumerate() {
            for (i, (c, at)) in comps
                .iter()
                .zip(stream_offsets(&req, s == k - 1))
                .enumerate()
            {
                if let (true, Some(at)) = (c.random && !req.is_streamed(i), at) {
                    let acc = totals[i].as_mut().expect("random components are summed");
                    draw_into(seed, stream, at, c.sum, acc);
                }
            }
        }
        let truths = match &req {
            Request::Bilinear { .. } => bilinear_truths(&req, &self.seeds, stream),
            _ => correlate(&req, &totals),
        };
        drop(totals);
        // The corrections: each truth less the servers before the last's shares of it, drawn
        // and subtracted part by part (no server's share is held whole), then the truths
        // concatenated in place (the first, usually the largest, is not copied).
        let offsets = stream_offsets(&req, false);
        let mut out: Option<Vec<u64>> = None;
        for ((i, c), mut truth) in comps
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.random)
            .zip(truths)
        {
            let at = offsets[i].expect("drawn by the servers before the last");
            for seed in &self.seeds[..k - 1] {
                combine_stream(seed, stream, at, &mut truth, |a, x| match c.sum {
                    Sum::Arith => ring::sub_assign(a, x),
                    Sum::Xor => ring::xor_assign(a, x),
                });
            }
            match &mut out {
                None => {
                    truth.reserve_exact(req.correction_words() - truth.len());
                    out = Some(truth);
                }
                Some(out) => out.extend_from_slice(&truth),
            }
        }
        let out = out.unwrap_or_default();
        Ok(out)
    }
}

impl Dealer {
    /// Every server's material for one request, generated in one place: what the servers would
    /// obtain from [`DealerClient::fetch`], without a network. Used by the lock-step simulator.
    pub fn deal_all(&mut self, req: &Request) -> Result<Vec<Material>> {
        let k = self.seeds.len();
        let words = req.encode();
        let c = request_commitment(self.counter + 1, &words).to_vec();
        let corr = self.handle(&words, &vec![c; k - 1])?;
        let stream = self.counter;
        let mut out = Vec::with_capacity(k);
        for (s, seed) in self.seeds.iter().enumerate() {
            let mut parts = draw_share(req, seed, stream, s == k - 1);
            fill_corrections(&mut parts, req, &corr);
            out.push(complete(parts));
        }
        Ok(out)
    }
}

/// Puts the last server's corrections into the components it did not draw.
fn fill_corrections(parts: &mut [Option<Part>], req: &Request, corr: &[u64]) {
    let mut rest = corr;
    for (p, c) in parts.iter_mut().zip(req.components()) {
        if p.is_none() {
            let (head, tail) = rest.split_at(c.len);
            *p = Some(Part::Words(head.to_vec()));
            rest = tail;
        }
    }
}

/// The material once every component is present.
fn complete(parts: Vec<Option<Part>>) -> Material {
    Material::new(
        parts
            .into_iter()
            .map(|p| p.expect("every component drawn or corrected"))
            .collect(),
    )
}

/// What the dealer sent during a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DealerStats {
    /// Bytes sent to all servers (seeds and corrections).
    pub bytes_sent: u64,
    /// Requests answered.
    pub requests: u64,
}

/// Runs the dealer for one job over `net`: sends the seeds, then answers the last server's
/// requests until it closes the link.
pub async fn serve<D: DealerTransport>(mut dealer: Dealer, net: &mut D) -> Result<DealerStats> {
    let k = net.servers();
    if k != dealer.seeds.len() {
        return Err(Error::invalid(
            "dealer and network disagree on the number of servers",
        ));
    }
    let mut stats = DealerStats::default();
    for (s, msg) in dealer.seed_messages().into_iter().enumerate() {
        stats.bytes_sent += 8 * msg.len() as u64;
        net.send(s, msg).await?;
    }
    let max_request = dealer.max_request_words();
    loop {
        let words = match net.recv(k - 1, max_request).await {
            Ok(Some(w)) => w,
            Ok(None) => break,
            Err(e) => {
                refuse_unless_lost(net, &e).await;
                return Err(e);
            }
        };
        let mut commitments = Vec::with_capacity(k - 1);
        for s in 0..k - 1 {
            match net.recv(s, COMMITMENT_WORDS).await {
                Ok(Some(c)) => commitments.push(c),
                Err(e) => {
                    refuse_unless_lost(net, &e).await;
                    return Err(e);
                }
                Ok(None) => {
                    let why = format!(
                        "server {s} closed its dealer link while server {} asked for material",
                        k - 1
                    );
                    net.refuse(&why).await;
                    return Err(Error::protocol(PeerName::Server(s), why));
                }
            }
        }
        let (d, corr) = blocking(move || {
            let r = dealer.handle(&words, &commitments);
            (dealer, r)
        })
        .await;
        dealer = d;
        let corr = match corr {
            Ok(c) => c,
            Err(e) => {
                net.refuse(&e.to_string()).await;
                return Err(e);
            }
        };
        stats.bytes_sent += 8 * corr.len() as u64;
        stats.requests += 1;
        net.send(k - 1, corr).await?;
    }
    Ok(stats)
}

/// Tells the servers why the dealer stops, unless the cause is a lost link: then the servers
/// see the same loss themselves, and their own report names the server that went away.
async fn refuse_unless_lost<D: DealerTransport>(net: &mut D, e: &Error) {
    if !matches!(e, Error::Transport { .. }) {
        net.refuse(&e.to_string()).await;
    }
}

/// A server's client of the dealer: expands its master seed and, on the last server, fetches
/// corrections.
pub struct DealerClient {
    seed: Seed,
    counter: u64,
}

impl std::fmt::Debug for DealerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DealerClient(requests={})", self.counter)
    }
}

impl DealerClient {
    /// Receives this server's master seed from the dealer.
    pub async fn connect<T: Transport>(session: &mut Session<T>) -> Result<DealerClient> {
        let w = session.recv_dealer(4).await?;
        let words: [u64; 4] = w.as_slice().try_into().map_err(|_| {
            Error::protocol(
                PeerName::Dealer,
                format!("seed message of {} words, expected 4", w.len()),
            )
        })?;
        Ok(DealerClient {
            seed: Seed::from_words(&words),
            counter: 0,
        })
    }
}

impl Correlations for DealerClient {
    async fn fetch<T: Transport>(
        &mut self,
        session: &mut Session<T>,
        req: &Request,
    ) -> Result<Material> {
        req.validate()?;
        self.counter += 1;
        let stream = self.counter;
        let last = session.me() + 1 == session.servers();
        let words = req.encode();
        if last {
            session.send_dealer(words).await?;
        } else {
            session
                .send_dealer(request_commitment(stream, &words).to_vec())
                .await?;
        }
        let (seed, r) = (self.seed.clone(), req.clone());
        let mut parts = blocking(move || draw_share(&r, &seed, stream, last)).await;
        if last {
            let corr = session.recv_dealer(req.correction_words()).await?;
            fill_corrections(&mut parts, req, &corr);
        }
        Ok(complete(parts))
    }
}
