//! Correlated randomness: what each protocol consumes, and the one interface that provides it.
//!
//! Every online protocol here spends precomputed, input-independent material (Beaver triples,
//! masks with their bit decomposition, ...). A [`Request`] names what is needed; a source
//! implementing [`Correlations`] returns this server's share of it as a [`Material`]. The dealer
//! ([`crate::mpc::dealer`]) is one source; the dealer-free sources, over oblivious transfer
//! ([`crate::mpc::ot::source`]) and from three servers' replicated seeds
//! ([`crate::mpc::replicated`]), plug in behind the same trait. The relations between
//! components are what every source must meet; how each server's shares arise is the source's.
//!
//! Each request's material is a list of *components* ([`Request::components`]). A component is
//! either **random** (with the dealer, every server draws its share from its PRG; the secret is
//! whatever they sum to) or **correlated** (a function of the random ones; with the dealer,
//! servers `0..k-1` draw their shares and the last server receives an explicit correction).
//! With the dealer, components are drawn in list order from the PRG stream of the request, so
//! the dealer and the servers agree without talking.

use crate::error::{Error, Result};
use crate::mpc::carry_tree::tree_and_words;
use crate::mpc::channel::Transport;
use crate::mpc::millionaire::MillionaireMaterial;
use crate::mpc::modular::ModMaterial;
use crate::mpc::pairs::Pairs;
use crate::mpc::prg::{Prg, Seed, combine_stream};
use crate::mpc::protocol::Session;
use std::fmt;
use std::future::Future;

/// What a protocol needs from the correlated-randomness source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `n` element-wise Beaver triples whose left factor is reused `fanout` times:
    /// `c[j*n + i] = a[i] * b[j*n + i]`.
    Beaver {
        /// Number of left values.
        n: usize,
        /// Right factors per left value.
        fanout: usize,
    },
    /// A bilinear-form triple: masks `A` (n x d), `B` (m x d) and `C_p = <A_i, B_j>` per pair;
    /// with `blocks`, also the squared norm of every block of every row of `A` and `B`
    /// (`QA[i * blocks + b] = sum of A[i][t]^2 over block b`), for the row audit of
    /// [`crate::mpc::beaver::Bilinear`]. With `split` (and `blocks`), `C` is given per block,
    /// block-major (`C[b * pairs + p]` over block `b` only), so that the form can also return
    /// every pair's per-block products (explanations, [`crate::model::explain`]).
    Bilinear {
        /// Row length.
        d: usize,
        /// The pairs.
        pairs: Pairs,
        /// Lengths of consecutive blocks of a row (summing to `d`), or empty for no norms.
        blocks: Vec<usize>,
        /// `C` per block (needs `blocks`).
        split: bool,
    },
    /// Truncation masks: `r`, `r >> frac` and the top bit of `r`.
    Trunc {
        /// Number of values.
        n: usize,
        /// Bits to shift away.
        frac: u32,
    },
    /// Comparison masks: `r`, the low `ell` bits of `r` as boolean shares, and the AND triples
    /// of the comparison tree.
    Compare {
        /// Number of values.
        n: usize,
        /// Bit width of the compared values.
        ell: u32,
    },
    /// Bit-to-arithmetic conversion: random bits as boolean and as arithmetic shares.
    B2a {
        /// Number of bits.
        n: usize,
    },
}

/// Most norm blocks a bilinear request may name.
pub const MAX_BLOCKS: usize = 16;

/// How the shares of a component add up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sum {
    /// Wrapping addition in Z_2^64.
    Arith,
    /// XOR (boolean shares, 64 bits per word).
    Xor,
}

/// One component of a request's material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    /// Number of words.
    pub len: usize,
    /// How shares combine.
    pub sum: Sum,
    /// Random (all servers draw) or correlated (the last server gets a correction).
    pub random: bool,
}

const fn comp(len: usize, sum: Sum, random: bool) -> Component {
    Component { len, sum, random }
}

impl Request {
    /// The components of this request's material, in draw order.
    pub fn components(&self) -> Vec<Component> {
        use Sum::*;
        match self {
            Request::Beaver { n, fanout } => vec![
                comp(*n, Arith, true),
                comp(n.saturating_mul(*fanout), Arith, true),
                comp(n.saturating_mul(*fanout), Arith, false),
            ],
            Request::Bilinear {
                d,
                pairs,
                blocks,
                split,
            } => {
                // Saturating: a decoded request's sizes are checked against its bound after this
                // (`Request::decode`), where an overflow must be refused, not wrapped.
                let per_pair = if *split { blocks.len() } else { 1 };
                let mut c = vec![
                    comp(pairs.rows().saturating_mul(*d), Arith, true),
                    comp(pairs.cols().saturating_mul(*d), Arith, true),
                    comp(pairs.len().saturating_mul(per_pair), Arith, false),
                ];
                if !blocks.is_empty() {
                    c.push(comp(
                        pairs.rows().saturating_mul(blocks.len()),
                        Arith,
                        false,
                    ));
                    c.push(comp(
                        pairs.cols().saturating_mul(blocks.len()),
                        Arith,
                        false,
                    ));
                }
                c
            }
            Request::Trunc { n, .. } => vec![
                comp(*n, Arith, true),
                comp(*n, Arith, false),
                comp(*n, Arith, false),
            ],
            Request::Compare { n, ell } => {
                let blocks = n.div_ceil(64);
                let t = tree_and_words(*ell, blocks);
                vec![
                    comp(*n, Arith, true),
                    comp(*ell as usize * blocks, Xor, false),
                    comp(t, Xor, true),
                    comp(t, Xor, true),
                    comp(t, Xor, true),
                    comp(t, Xor, false),
                    comp(t, Xor, false),
                ]
            }
            Request::B2a { n } => vec![comp(n.div_ceil(64), Xor, true), comp(*n, Arith, false)],
        }
    }

    /// Whether component `i` is handed to the protocol as a [`Stream`] rather than drawn: the
    /// bilinear form's masks (`A`, `B`), which are as large as the uploads and are used a
    /// slice of columns at a time.
    pub fn is_streamed(&self, i: usize) -> bool {
        matches!(self, Request::Bilinear { .. }) && i < 2
    }

    /// Words the last server receives from the dealer for this request.
    pub fn correction_words(&self) -> usize {
        self.components()
            .iter()
            .filter(|c| !c.random)
            .map(|c| c.len)
            .sum()
    }

    /// Checks sizes before anything is generated.
    pub fn validate(&self) -> Result<()> {
        match self {
            Request::Compare { ell, .. } if !(2..=64).contains(ell) => Err(Error::invalid(
                format!("comparison bit width must be 2 to 64, got {ell}"),
            )),
            Request::Trunc { frac, .. } if !(1..=62).contains(frac) => Err(Error::invalid(
                format!("truncation must shift 1 to 62 bits, got {frac}"),
            )),
            Request::Beaver { fanout: 0, .. } => Err(Error::invalid("Beaver fanout must be >= 1")),
            Request::Bilinear {
                blocks,
                split: true,
                ..
            } if blocks.is_empty() => Err(Error::invalid(
                "a bilinear request split by blocks must name the blocks",
            )),
            Request::Bilinear { d, blocks, .. }
                if !blocks.is_empty()
                    && (blocks.len() > MAX_BLOCKS
                        || blocks.contains(&0)
                        || blocks.iter().sum::<usize>() != *d) =>
            {
                Err(Error::invalid(format!(
                    "bilinear norm blocks must be 1 to {MAX_BLOCKS} non-empty blocks summing to the row length {d}"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Encodes as words for the dealer link.
    pub fn encode(&self) -> Vec<u64> {
        let mut w = Vec::new();
        match self {
            Request::Beaver { n, fanout } => w.extend([1, *n as u64, *fanout as u64]),
            Request::Bilinear {
                d,
                pairs,
                blocks,
                split,
            } => {
                w.extend([if *split { 6 } else { 2 }, *d as u64, blocks.len() as u64]);
                w.extend(blocks.iter().map(|&b| b as u64));
                pairs.encode(&mut w);
            }
            Request::Trunc { n, frac } => w.extend([3, *n as u64, *frac as u64]),
            Request::Compare { n, ell } => w.extend([4, *n as u64, *ell as u64]),
            Request::B2a { n } => w.extend([5, *n as u64]),
        }
        w
    }

    /// Decodes a request; rejects anything malformed or with more than `max_words` of material
    /// held whole (streamed components, [`Request::is_streamed`], are not held), or whose masks
    /// are beyond `mask_words` (below).
    pub fn decode(w: &[u64], max_words: usize, mask_words: usize) -> Result<Request> {
        let bad = |what: &str| Error::invalid(format!("malformed dealer request: {what}"));
        let arg = |i: usize| -> Result<usize> {
            w.get(i)
                .and_then(|&v| usize::try_from(v).ok())
                .filter(|&v| v <= max_words)
                .ok_or_else(|| bad("missing or oversized argument"))
        };
        let (req, used) = match w.first() {
            Some(1) => (
                Request::Beaver {
                    n: arg(1)?,
                    fanout: arg(2)?,
                },
                3,
            ),
            Some(kind @ (2 | 6)) => {
                let d = arg(1)?;
                let nb = arg(2)?;
                if nb > MAX_BLOCKS {
                    return Err(bad("too many norm blocks"));
                }
                let blocks = (0..nb).map(|i| arg(3 + i)).collect::<Result<Vec<_>>>()?;
                let (pairs, used) = Pairs::decode(&w[3 + nb..])?;
                let split = *kind == 6;
                (
                    Request::Bilinear {
                        d,
                        pairs,
                        blocks,
                        split,
                    },
                    3 + nb + used,
                )
            }
            Some(3) => (
                Request::Trunc {
                    n: arg(1)?,
                    frac: u32::try_from(arg(2)?).map_err(|_| bad("oversized argument"))?,
                },
                3,
            ),
            Some(4) => (
                Request::Compare {
                    n: arg(1)?,
                    ell: u32::try_from(arg(2)?).map_err(|_| bad("oversized argument"))?,
                },
                3,
            ),
            Some(5) => (Request::B2a { n: arg(1)? }, 2),
            _ => return Err(bad("unknown kind")),
        };
        if used != w.len() {
            return Err(bad("trailing words"));
        }
        req.validate()?;
        // What the dealer holds and sends: the streamed components (the bilinear masks, as
        // large as the uploads) are drawn a pass of columns at a time, never whole.
        let total: usize = req
            .components()
            .iter()
            .enumerate()
            .filter(|&(i, _)| !req.is_streamed(i))
            .try_fold(0usize, |s, (_, c)| s.checked_add(c.len))
            .ok_or_else(|| bad("size overflow"))?;
        if total > max_words {
            return Err(Error::invalid(format!(
                "dealer request for {total} words exceeds the limit of {max_words}"
            )));
        }
        // The streamed masks are not held whole, but a pass holds `(n + m)` rows of at least
        // `MIN_PASS_COLUMNS` columns (or `d`), and drawing them takes `(n + m) d` words of PRG
        // output: the pass is bounded by `mask_words` and the draws by `MIN_PASS_COLUMNS`
        // times it (before, `2^32 - 1` rows and no pair passed as 0 words held, and the pass's
        // allocation aborted the dealer). The dealer passes the job's material bound, which
        // holds at least 160 words per row of either side.
        if let Request::Bilinear { d, pairs, .. } = &req {
            let rows = pairs.rows().saturating_add(pairs.cols());
            let pass = rows.saturating_mul(MIN_PASS_COLUMNS.min(*d));
            let drawn = rows.saturating_mul(*d);
            if pass > mask_words || drawn > mask_words.saturating_mul(MIN_PASS_COLUMNS) {
                return Err(Error::invalid(format!(
                    "dealer request for masks of {rows} rows of {d} words exceeds the job's \
                     bound of {mask_words} words"
                )));
            }
        }
        Ok(req)
    }
}

/// A random component left undrawn: the words `at..at + len` of a seed's stream, drawn where
/// they are used, a part at a time. The bilinear form's masks are the size of the uploads; kept
/// as streams they are never held whole (the form draws the columns it works on, pass by pass).
/// `Debug` shows only the length (the seed is secret).
#[derive(Clone)]
pub struct Stream {
    seed: Seed,
    stream: u64,
    at: u64,
    len: usize,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Stream(len={}, <redacted>)", self.len)
    }
}

impl Stream {
    /// The words `at..at + len` of `seed`'s stream `stream`.
    pub fn new(seed: Seed, stream: u64, at: u64, len: usize) -> Stream {
        Stream {
            seed,
            stream,
            at,
            len,
        }
    }

    /// Words in the component.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the component is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole component (drawn in parallel parts).
    pub fn draw(&self) -> Vec<u64> {
        let mut v = vec![0u64; self.len];
        combine_stream(&self.seed, self.stream, self.at, &mut v, |a, x| {
            a.copy_from_slice(x)
        });
        v
    }

    /// `acc[i] op= word from + i` of the component, for every `i` (`op(acc_piece, drawn)`).
    pub fn combine(&self, from: usize, acc: &mut [u64], op: impl Fn(&mut [u64], &[u64]) + Sync) {
        assert!(from + acc.len() <= self.len, "outside the component");
        combine_stream(&self.seed, self.stream, self.at + from as u64, acc, op);
    }

    /// Words `from..from + out.len()` of the component into `out` (one generator, no thread).
    pub fn fill(&self, from: usize, out: &mut [u64]) {
        assert!(from + out.len() <= self.len, "outside the component");
        Prg::at(&self.seed, self.stream, self.at + from as u64).fill(out);
    }
}

/// Rows per parallel task of [`Part::columns`].
const ROWS_PER_TASK: usize = 64;

/// Most columns one pass of [`Part::columns`] may take (its per-thread buffer).
pub const MAX_PASS_COLUMNS: usize = 128;

/// Fewest columns one pass takes, whatever the number of rows. The pair kernel
/// ([`crate::mpc::pairs::Pairs::accumulate_dots`]) fetches each pair's partner row at random;
/// rows of a few columns are too short to stream, so narrow passes pay the memory latency per
/// pair and pass: at 10^6 rows per side and 64 candidates each, passes of 8 columns moved
/// 2.5 GB/s of rows, passes of 64 columns 7.0 GB/s (this machine, `server bench pair-kernel`), at the
/// price of memory that grows with the rows beyond [`PASS_WORDS`].
pub const MIN_PASS_COLUMNS: usize = 64;

/// Columns per pass over `rows` rows of masks: as many as keep one pass's rows within
/// [`PASS_WORDS`] words, between [`MIN_PASS_COLUMNS`] and [`MAX_PASS_COLUMNS`]. The dealer and
/// the bilinear form both work on their masks this way.
pub fn pass_columns(rows: usize) -> usize {
    (PASS_WORDS / rows.max(1)).clamp(MIN_PASS_COLUMNS, MAX_PASS_COLUMNS)
}

/// Words of mask columns one pass may hold (2^24 words, 128 MiB).
pub const PASS_WORDS: usize = 1 << 24;

/// One component of a server's material: its words, or the stream to draw them from.
/// `Debug` shows only the length.
pub enum Part {
    /// The words themselves.
    Words(Vec<u64>),
    /// A random component, drawn where used.
    Stream(Stream),
}

impl Part {
    /// Words in the component.
    pub fn len(&self) -> usize {
        match self {
            Part::Words(w) => w.len(),
            Part::Stream(s) => s.len(),
        }
    }

    /// Whether the component is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Words `from..from + out.len()` of the component into `out`.
    pub fn fill(&self, from: usize, out: &mut [u64]) {
        match self {
            Part::Words(w) => out.copy_from_slice(&w[from..from + out.len()]),
            Part::Stream(s) => s.fill(from, out),
        }
    }

    /// For a component holding a `rows x d` row-major matrix: combines its columns
    /// `col..col + w` (at most [`MAX_PASS_COLUMNS`]) of every row `i` into
    /// `out[i * stride + off..][..w]` with `op(out_piece, columns)`, rows in parallel. The
    /// bilinear form and the dealer work on the masks a pass of columns at a time this way.
    #[allow(clippy::too_many_arguments)]
    pub fn columns(
        &self,
        d: usize,
        col: usize,
        w: usize,
        out: &mut [u64],
        stride: usize,
        off: usize,
        op: impl Fn(&mut [u64], &[u64]) + Sync,
    ) {
        use rayon::prelude::*;
        assert!(w <= MAX_PASS_COLUMNS && col + w <= d && off + w <= stride);
        let rows = out.len() / stride;
        assert!(rows * d <= self.len(), "outside the component");
        out.par_chunks_mut(stride * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(task, chunk)| {
                let mut buf = [0u64; MAX_PASS_COLUMNS];
                let buf = &mut buf[..w];
                for (r, row) in chunk.chunks_mut(stride).enumerate() {
                    let i = task * ROWS_PER_TASK + r;
                    self.fill(i * d + col, buf);
                    op(&mut row[off..off + w], buf);
                }
            });
    }

    /// `acc -= ` the component's words `from..from + acc.len()`.
    pub fn sub_from(&self, from: usize, acc: &mut [u64]) {
        match self {
            Part::Words(w) => crate::mpc::ring::sub_assign(acc, &w[from..from + acc.len()]),
            Part::Stream(s) => s.combine(from, acc, crate::mpc::ring::sub_assign),
        }
    }

    /// The words (drawn now for a stream).
    pub fn into_words(mut self) -> Vec<u64> {
        match &mut self {
            Part::Words(w) => std::mem::take(w),
            Part::Stream(s) => s.draw(),
        }
    }
}

impl fmt::Debug for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Words(w) => write!(f, "Words(len={}, <redacted>)", w.len()),
            Part::Stream(s) => s.fmt(f),
        }
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if let Part::Words(w) = self {
            zeroize::Zeroize::zeroize(w);
        }
    }
}

/// One server's share of a request's material: one part per component, in order. Random
/// components may be left as streams ([`Request::is_streamed`]); the others are words.
/// `Debug` shows only sizes; the words are zeroized on drop.
pub struct Material(Vec<Part>);

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes: Vec<String> = self
            .0
            .iter()
            .map(|p| match p {
                Part::Words(w) => w.len().to_string(),
                Part::Stream(s) => format!("{} (stream)", s.len()),
            })
            .collect();
        write!(f, "Material(sizes={sizes:?}, <redacted>)")
    }
}

impl Material {
    /// Material from its parts, in component order.
    pub fn new(parts: Vec<Part>) -> Material {
        Material(parts)
    }

    /// Material whose every component is given as words.
    pub fn from_words(parts: Vec<Vec<u64>>) -> Material {
        Material(parts.into_iter().map(Part::Words).collect())
    }

    /// Words held in memory (streams hold none): what the material costs until it is used.
    pub fn held_words(&self) -> usize {
        self.0
            .iter()
            .map(|p| match p {
                Part::Words(w) => w.len(),
                Part::Stream(_) => 0,
            })
            .sum()
    }

    /// Takes the components out as words (drawing any stream), checking their count.
    pub fn into_parts<const N: usize>(self) -> Result<[Vec<u64>; N]> {
        let parts: [Part; N] = self.into_mixed()?;
        Ok(parts.map(Part::into_words))
    }

    /// Every component, as it is (streams left undrawn).
    #[cfg(test)]
    pub(crate) fn into_vec(self) -> Vec<Part> {
        self.0
    }

    /// Takes the components out as they are (streams left undrawn), checking their count.
    pub fn into_mixed<const N: usize>(self) -> Result<[Part; N]> {
        let got = self.0.len();
        self.0
            .try_into()
            .map_err(|_| Error::invalid(format!("material has {got} components, expected {N}")))
    }
}

/// A source of correlated randomness for one server of one job.
pub trait Correlations: Send {
    /// This server's share of the material for `req`.
    fn fetch<T: Transport>(
        &mut self,
        session: &mut Session<T>,
        req: &Request,
    ) -> impl Future<Output = Result<Material>> + Send;

    /// Whether [`Correlations::millionaire`] gives material for a job of `servers` servers
    /// (false by default).
    fn makes_millionaire_material(&self, servers: usize) -> bool {
        let _ = servers;
        false
    }

    /// Material for two-server millionaires' comparisons ([`crate::mpc::millionaire`]) of
    /// `n` values of width `ell`, each in `lanes` (1 or 2) comparisons, where this source makes
    /// it at less cost than the masked comparison's (two servers without a dealer); `None` (the
    /// default) where it does not, and the comparison takes [`Request::Compare`] for
    /// `lanes n` values.
    fn millionaire<T: Transport>(
        &mut self,
        session: &mut Session<T>,
        (n, ell, lanes): (usize, u32, usize),
    ) -> impl Future<Output = Result<Option<MillionaireMaterial>>> + Send {
        let _ = (session, n, ell, lanes);
        async { Ok(None) }
    }

    /// Shares of `b_i y[j n + i]` for `n` shared bits `b` (XOR-shared, bit-sliced: bit `i` is
    /// bit `i % 64` of word `i / 64`) and `fanout` vectors of `n` shared values `y`, where this
    /// source makes them at less cost than converting the bits to arithmetic shares and taking
    /// Beaver products (two servers without a dealer, [`crate::mpc::ot::source`]); `None` (the
    /// default) where it does not, and the caller takes that route.
    fn bit_products<T: Transport>(
        &mut self,
        session: &mut Session<T>,
        bits: &[u64],
        n: usize,
        y: &[u64],
        fanout: usize,
    ) -> impl Future<Output = Result<Option<Vec<u64>>>> + Send {
        let _ = (session, bits, n, y, fanout);
        async { Ok(None) }
    }

    /// Material for the bilinear form's scores modulo a prime ([`crate::mpc::modular`]) over
    /// `pairs` of rows `d` long, where this source makes it at less cost than `C` modulo `2^64`
    /// (two servers without a dealer, [`crate::mpc::ot::source`]); `None` (the default) where
    /// it does not, and the caller asks for [`Request::Bilinear`] as usual. `blocks` are the
    /// row audit's, whose norms the request modulo `2^64` still makes (they weigh on the
    /// choice). Every server of the job gets the same answer (it depends on public sizes only).
    fn scores_mod<T: Transport>(
        &mut self,
        session: &mut Session<T>,
        d: usize,
        pairs: &Pairs,
        blocks: &[usize],
    ) -> impl Future<Output = Result<Option<ModMaterial>>> + Send {
        let _ = (session, d, pairs, blocks);
        async { Ok(None) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Material's and its parts' `Debug` show sizes, never words or seeds; a stream draws the
    /// words of its seed's stream.
    #[test]
    fn parts_show_sizes_only_and_streams_draw_their_words() {
        let secret = 0x005e_c2e7_u64;
        let seed = Seed([3; 32]);
        let stream = Stream::new(seed.clone(), 5, 10, 4);
        assert_eq!(stream.draw(), Prg::at(&seed, 5, 10).vec(4));
        let words = Part::Words(vec![secret; 3]);
        let shown = format!("{words:?} {:?}", Part::Stream(stream.clone()));
        assert_eq!(shown, "Words(len=3, <redacted>) Stream(len=4, <redacted>)");
        let m = Material::new(vec![Part::Words(vec![secret; 2]), Part::Stream(stream)]);
        let shown = format!("{m:?}");
        assert!(
            !shown.contains(&secret.to_string()) && shown.contains("(stream)"),
            "{shown}"
        );
        assert_eq!(m.held_words(), 2);
        let [w, s] = m.into_parts::<2>().unwrap();
        assert_eq!((w, s), (vec![secret; 2], Prg::at(&seed, 5, 10).vec(4)));
    }

    /// Requests whose sizes overflow or whose streamed masks are beyond the bound are refused
    /// (before: `2^32 - 1` rows and no pair passed, and the dealer's pass over the masks
    /// aborted on its allocation; `2^32 x 2^32` Beaver words wrapped to 0); requests of the
    /// same kinds within the bound decode.
    #[test]
    fn requests_beyond_their_bound_are_refused_whatever_their_sizes() {
        let max = 1 << 28;
        let dense = |rows: u64, cols: u64, d: u64| {
            let pairs = Pairs::dense(rows as usize, cols as usize);
            Request::Bilinear {
                d: d as usize,
                pairs,
                blocks: Vec::new(),
                split: false,
            }
            .encode()
        };
        assert!(Request::decode(&dense(u32::MAX as u64, 0, 64), max, max).is_err());
        assert!(Request::decode(&dense(1 << 20, 0, 1 << 20), max, max).is_err());
        assert!(Request::decode(&dense(1000, 1000, 128), max, max).is_ok());
        assert!(Request::decode(&[1, 1 << 32, 1 << 32], 1 << 33, 1 << 33).is_err());
        assert!(Request::decode(&[1, 1 << 10, 3], max, max).is_ok());
    }
}
