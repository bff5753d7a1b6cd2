//! Correlated randomness: what each protocol consumes, and the one interface that provides it.
//!
//! Every online protocol here spends precomputed, input-independent material (Beaver triples,
//! masks with their bit decomposition, ...). A [`Request`] names what is needed; a source
//! implementing [`Correlations`] returns this server's share of it as a [`Material`]. The dealer
//! ([`crate::mpc::dealer`]) is one source; a dealer-free source built on oblivious transfer plugs in
//! behind the same trait.
//!
//! Each request's material is a list of *components* ([`Request::components`]). A component is
//! either **random** (every server draws its share from its PRG; the secret is whatever they sum
//! to) or **correlated** (a function of the random ones; servers `0..k-1` draw their shares and
//! the last server receives an explicit correction). Components are drawn in list order from
//! the PRG stream of the request, so the dealer and the servers agree without talking.

use crate::error::{Error, Result};
use crate::mpc::carry_tree::tree_and_words;
use crate::mpc::channel::Transport;
use crate::mpc::pairs::Pairs;
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
                comp(n * fanout, Arith, true),
                comp(n * fanout, Arith, false),
            ],
            Request::Bilinear {
                d,
                pairs,
                blocks,
                split,
            } => {
                let per_pair = if *split { blocks.len() } else { 1 };
                let mut c = vec![
                    comp(pairs.rows() * d, Arith, true),
                    comp(pairs.cols() * d, Arith, true),
                    comp(pairs.len() * per_pair, Arith, false),
                ];
                if !blocks.is_empty() {
                    c.push(comp(pairs.rows() * blocks.len(), Arith, false));
                    c.push(comp(pairs.cols() * blocks.len(), Arith, false));
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

    /// Decodes a request; rejects anything malformed or larger than `max_words` of material.
    pub fn decode(w: &[u64], max_words: usize) -> Result<Request> {
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
        let total: usize = req
            .components()
            .iter()
            .try_fold(0usize, |s, c| s.checked_add(c.len))
            .ok_or_else(|| bad("size overflow"))?;
        if total > max_words {
            return Err(Error::invalid(format!(
                "dealer request for {total} words exceeds the limit of {max_words}"
            )));
        }
        Ok(req)
    }
}

/// One server's share of a request's material: one vector per component, in order.
/// `Debug` shows only sizes.
#[derive(zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct Material(pub Vec<Vec<u64>>);

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes: Vec<usize> = self.0.iter().map(Vec::len).collect();
        write!(f, "Material(sizes={sizes:?}, <redacted>)")
    }
}

impl Material {
    /// Takes the components out, checking their count.
    pub fn into_parts<const N: usize>(mut self) -> Result<[Vec<u64>; N]> {
        let got = self.0.len();
        std::mem::take(&mut self.0)
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
}
