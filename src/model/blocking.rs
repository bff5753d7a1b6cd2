//! Candidate generation from keyed tokens.
//!
//! **Party side.** Each party turns every entity into two token sets: *own* tokens (the words and
//! character trigrams of its name) and *neighbour* tokens (the words of its sampled neighbours'
//! names). Each token is mapped through HMAC-SHA256 under a 32-byte [`BlockingKey`] that the
//! parties agree on and the servers never see, so servers cannot compute a token from a guessed
//! string, nor invert one.
//!
//! **Server side.** Every server joins the two parties' tokens the same deterministic way: for
//! each entity on one side, candidates on the other side are scored by the summed inverse
//! document frequency of shared tokens (integer arithmetic, identical on every machine); the top
//! `candidates / 2` by own tokens (ties broken by the neighbour score) and the top
//! `candidates / 2` by neighbour tokens (ties broken by the own score) are merged, topped up
//! from the own-token ranking, and padded with pseudo-random entities, so that **every entity
//! has exactly `candidates` candidates**. Tokens shared by too large a fraction of entities are
//! ignored (they cost time and carry no signal); optionally, pairs of them join as tokens of
//! their own ([`BlockingParams::pair_tokens`]).
//!
//! Leakage (see `docs/design.md`): servers see which keyed tokens are equal across entities,
//! hence token frequencies and, per candidate pair, the weight of shared tokens.

use crate::model::features::words;
use crate::mpc::prg::{Prg, Seed};
use rayon::prelude::*;
use std::collections::HashMap;
use std::fmt;

/// The parties' shared blocking key. Never sent to servers; never printed.
#[derive(Clone, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct BlockingKey(pub [u8; 32]);

impl fmt::Debug for BlockingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlockingKey(<redacted>)")
    }
}

impl BlockingKey {
    /// A fresh random key.
    pub fn random() -> Self {
        BlockingKey(Seed::random().0)
    }

    /// The key of one job: HKDF-SHA256 (RFC 5869) of the parties' agreed key, with the job id
    /// as the context. Both parties derive the same key, so tokens still match within the job,
    /// but the tokens of two jobs under the same agreed key are unrelated: a server cannot
    /// link rows across jobs by their tokens (within one job the leakage is unchanged).
    pub fn for_job(&self, job: &str) -> BlockingKey {
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"ppea blocking key per job v1");
        let info = [job.as_bytes()];
        let prk = salt.extract(&self.0);
        let okm = prk
            .expand(&info, ring::hkdf::HKDF_SHA256)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let mut k = [0u8; 32];
        okm.fill(&mut k)
            .expect("the output length is the algorithm's");
        BlockingKey(k)
    }

    /// A tag of what the two parties must agree on beyond the job description, which the
    /// servers compare without learning it: HMAC-SHA256 under this (job's) key of the number
    /// of known links. Equal tags mean, but for a forgery under a key the servers lack, the same
    /// key and the same count; a key typed differently (no candidates at all) or a known-links
    /// file a line short (every later anchor paired with the wrong one) otherwise runs silently.
    pub fn agreement(&self, known_links: usize) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0);
        let mut msg = b"ppea agreement v1".to_vec();
        msg.extend_from_slice(&(known_links as u64).to_le_bytes());
        let mut tag = [0u8; 32];
        tag.copy_from_slice(ring::hmac::sign(&key, &msg).as_ref());
        tag
    }
}

/// Blocking parameters (the same for every server of a job).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockingParams {
    /// Candidates per entity (both directions).
    pub candidates: usize,
    /// Own-name tokens shared by more than this fraction of all entities are ignored.
    pub max_df_own: f64,
    /// Neighbour tokens shared by more than this fraction of all entities are ignored.
    pub max_df_neighbour: f64,
    /// Tokens shared by more than this many entities are ignored whatever the fractions say:
    /// joining a token costs its posting list per row that carries it, so without an absolute
    /// cap candidate generation grows with the square of the rows (at 10^5 rows in all, a
    /// 10% cap admits tokens of 10,000 rows).
    pub max_postings: usize,
    /// Pair tokens: of each row's own tokens that the caps drop, this many of the least
    /// frequent are combined two by two into tokens the servers join like the others (0 or 1,
    /// the default: none; at most [`MAX_PAIR_TOKENS`]). For very large jobs, where the caps
    /// drop common name words and trigrams: at 10^6 generated rows per side, 6 raises blocking
    /// recall from 0.906 to 0.921 and doubles the candidates step's time; at 10^5 it costs
    /// 0.002 of recall (docs/design.md, section 4).
    pub pair_tokens: usize,
}

impl Default for BlockingParams {
    fn default() -> Self {
        BlockingParams {
            candidates: 64,
            max_df_own: 0.1,
            max_df_neighbour: 0.025,
            max_postings: 4096,
            pair_tokens: 0,
        }
    }
}

/// The largest `BlockingParams::pair_tokens`: of a row's tokens that the caps drop, at most
/// this many (the least frequent) are paired, so at most 120 pair tokens per row.
pub const MAX_PAIR_TOKENS: usize = 16;

/// Most tokens of one kind a row may carry (parties keep the first ones in sorted order;
/// servers refuse uploads with more).
pub const MAX_TOKENS_PER_ROW: usize = 4096;

/// Keyed tokens of the rows a party uploads: one list per row, sorted and deduplicated, at most
/// [`MAX_TOKENS_PER_ROW`] each. `Debug` shows only sizes.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tokens {
    /// Own-name tokens per row.
    pub own: Vec<Vec<u64>>,
    /// Neighbour-name tokens per row.
    pub neighbour: Vec<Vec<u64>>,
}

impl Tokens {
    /// Tokens in all rows, own and neighbour lists together.
    pub fn count(&self) -> u64 {
        let n = |l: &[Vec<u64>]| l.iter().map(|t| t.len() as u64).sum::<u64>();
        n(&self.own) + n(&self.neighbour)
    }
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens(rows={}, <redacted>)", self.own.len())
    }
}

/// A token under the blocking key, in a domain (`o` own, `n` neighbour, `a` anchor).
pub fn keyed(key: &ring::hmac::Key, domain: u8, token: &str) -> u64 {
    let mut ctx = ring::hmac::Context::with_key(key);
    ctx.update(&[domain]);
    ctx.update(token.as_bytes());
    let tag = ctx.sign();
    u64::from_le_bytes(
        tag.as_ref()[..8]
            .try_into()
            .expect("HMAC-SHA256 has 32 bytes"),
    )
}

/// Own-name tokens of a name: its words and character trigrams.
pub fn own_token_strings(name: &str) -> Vec<String> {
    let ws = words(name);
    let mut t: Vec<String> = ws.iter().map(|w| format!("w:{w}")).collect();
    t.extend(
        crate::model::features::char_ngrams(&ws, 3)
            .into_iter()
            .map(|q| format!("q:{q}")),
    );
    t
}

/// Tokens for the given rows: `names[e]` for own tokens, and the names of `neighbours[e]`.
pub fn tokens(
    key: &BlockingKey,
    names: &[String],
    neighbours: &[Vec<(u32, f64)>],
    rows: &[u32],
) -> Tokens {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key.0);
    let per_row = |e: u32| {
        let e = e as usize;
        let mut own: Vec<u64> = own_token_strings(&names[e])
            .iter()
            .map(|t| keyed(&k, b'o', t))
            .collect();
        own.sort_unstable();
        own.dedup();
        own.truncate(MAX_TOKENS_PER_ROW);
        let mut nb: Vec<u64> = neighbours[e]
            .iter()
            .flat_map(|&(n, _)| words(&names[n as usize]))
            .map(|w| keyed(&k, b'n', &w))
            .collect();
        nb.sort_unstable();
        nb.dedup();
        nb.truncate(MAX_TOKENS_PER_ROW);
        (own, nb)
    };
    let (own, neighbour) = rows.par_iter().map(|&e| per_row(e)).unzip();
    Tokens { own, neighbour }
}

/// Own tokens made of the names' words only (no trigrams), for judging a "fewer tokens" blocking
/// (`party attack --blocking words`): the same keyed values as the word tokens of [`tokens`].
pub fn word_tokens(key: &BlockingKey, names: &[String], rows: &[u32]) -> Vec<Vec<u64>> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key.0);
    rows.par_iter()
        .map(|&e| {
            let mut t: Vec<u64> = words(&names[e as usize])
                .iter()
                .map(|w| keyed(&k, b'o', &format!("w:{w}")))
                .collect();
            t.sort_unstable();
            t.dedup();
            t.truncate(MAX_TOKENS_PER_ROW);
            t
        })
        .collect()
}

/// `log2(x)` with 8 fractional bits, in integer arithmetic (identical on every machine).
fn log2_q8(x: u64) -> i64 {
    if x == 0 {
        return 0;
    }
    let int = 63 - x.leading_zeros() as i64;
    // Mantissa in [1, 2) as Q62.
    let mut m: u128 = ((x as u128) << 62) >> int;
    let mut frac = 0i64;
    for _ in 0..8 {
        m = (m * m) >> 62;
        frac <<= 1;
        if m >= 2u128 << 62 {
            m >>= 1;
            frac |= 1;
        }
    }
    (int << 8) | frac
}

/// How many rows of both sides hold each token.
fn doc_freq(x: &[Vec<u64>], y: &[Vec<u64>]) -> HashMap<u64, u64> {
    let mut df: HashMap<u64, u64> = HashMap::new();
    for t in x.iter().chain(y) {
        for &k in t {
            *df.entry(k).or_default() += 1;
        }
    }
    df
}

/// The most rows a token may be held by before it is ignored: the fraction `max_df` of all
/// `total` rows, at most `max_postings`, at least 2.
fn posting_cap(total: usize, max_df: f64, max_postings: usize) -> u64 {
    ((max_df * total as f64) as u64)
        .min(max_postings as u64)
        .max(2)
}

/// Token weights (inverse document frequency, Q8) from the document frequencies of `total`
/// rows, 0 for ignored tokens.
fn weights_of(df: HashMap<u64, u64>, total: usize, cap: u64) -> HashMap<u64, u32> {
    df.into_iter()
        .map(|(k, d)| {
            let w = if d > cap {
                0
            } else {
                (log2_q8(total as u64) - log2_q8(d)).max(1) as u32
            };
            (k, w)
        })
        .collect()
}

/// Token weights (inverse document frequency, Q8) over both sides, 0 for ignored tokens.
fn weights(x: &[Vec<u64>], y: &[Vec<u64>], max_df: f64, max_postings: usize) -> HashMap<u64, u32> {
    let total = x.len() + y.len();
    weights_of(
        doc_freq(x, y),
        total,
        posting_cap(total, max_df, max_postings),
    )
}

/// The value standing for the pair of tokens `{s, t}` (symmetric; a public mixing of two
/// keyed values, so as unpredictable as they are).
fn pair_token(s: u64, t: u64) -> u64 {
    let (lo, hi) = if s <= t { (s, t) } else { (t, s) };
    let mut z = lo.rotate_left(29) ^ hi.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Pair tokens of every row: of the row's own tokens held by too many rows to join on their
/// own (document frequency above `cap`), the `m` least frequent (ties by value) are combined
/// two by two. A common first name and a common last name are each useless, their pair is
/// rare. Computed by the servers from the keyed tokens they already see: nothing new is
/// uploaded or revealed.
fn pair_tokens(own: &[Vec<u64>], df: &HashMap<u64, u64>, cap: u64, m: usize) -> Vec<Vec<u64>> {
    own.par_iter()
        .map(|t| {
            let mut frequent: Vec<(u64, u64)> = t
                .iter()
                .map(|k| (df.get(k).copied().unwrap_or(0), *k))
                .filter(|&(d, _)| d > cap)
                .collect();
            frequent.sort_unstable();
            frequent.truncate(m);
            let mut pairs =
                Vec::with_capacity(frequent.len() * frequent.len().saturating_sub(1) / 2);
            for (i, &(_, s)) in frequent.iter().enumerate() {
                pairs.extend(frequent[i + 1..].iter().map(|&(_, t)| pair_token(s, t)));
            }
            pairs.sort_unstable();
            pairs.dedup();
            pairs
        })
        .collect()
}

/// Posting lists of `y`'s rows, for the tokens of positive weight.
fn postings(y: &[Vec<u64>], w: &HashMap<u64, u32>) -> HashMap<u64, Vec<u32>> {
    let mut postings: HashMap<u64, Vec<u32>> = HashMap::new();
    for (j, t) in y.iter().enumerate() {
        for k in t {
            if w.get(k).copied().unwrap_or(0) > 0 {
                postings.entry(*k).or_default().push(j as u32);
            }
        }
    }
    postings
}

/// One kind of evidence of a side: its rows' tokens, their weights and the other side's
/// posting lists.
struct Evidence<'a> {
    x: &'a [Vec<u64>],
    w: &'a HashMap<u64, u32>,
    postings: HashMap<u64, Vec<u32>>,
}

impl<'a> Evidence<'a> {
    fn new(x: &'a [Vec<u64>], y: &[Vec<u64>], w: &'a HashMap<u64, u32>) -> Self {
        Evidence {
            x,
            w,
            postings: postings(y, w),
        }
    }

    /// Adds row `i`'s weighted shared tokens to `scores[j][KIND]` for every row `j` of the
    /// other side holding one (recording in `touched` the rows first touched by any kind).
    fn score<const KIND: usize>(&self, i: usize, scores: &mut [[u32; 2]], touched: &mut Vec<u32>) {
        for k in &self.x[i] {
            let wk = self.w.get(k).copied().unwrap_or(0);
            if wk == 0 {
                continue;
            }
            for &j in self.postings.get(k).map_or(&[][..], Vec::as_slice) {
                let s = &mut scores[j as usize];
                if *s == [0, 0] {
                    touched.push(j);
                }
                s[KIND] += wk;
            }
        }
    }
}

/// For every row of `x` in `rows`, two rankings of the rows of `y` sharing tokens, best first,
/// at most `keep` each: by own-name score (own and pair tokens), ties broken by the neighbour
/// score, and by neighbour score, ties broken by the own score (then by index ascending). The
/// tie-breaks matter at scale: at 10^6 rows per side dozens of entities share a name's tokens
/// (same base name), and their neighbourhoods tell them apart. Both scores of a row of `y` sit
/// side by side (one cache line for both: the scan is bound by these random accesses).
fn ranked(x: Side, rows: Part, y: Side, w: &Weights, keep: usize) -> Vec<(Vec<u32>, Vec<u32>)> {
    const OWN: usize = 0;
    const NEIGHBOUR: usize = 1;
    let (
        Side {
            tokens: x,
            pairs: pairs_x,
        },
        Side {
            tokens: y,
            pairs: pairs_y,
        },
    ) = (x, y);
    let own = Evidence::new(&x.own, &y.own, &w.own);
    let pairs = Evidence::new(pairs_x, pairs_y, &w.pairs);
    let nb = Evidence::new(&x.neighbour, &y.neighbour, &w.neighbour);
    let ny = y.own.len();
    let n = x.own.len();
    (rows.part..n)
        .into_par_iter()
        .step_by(rows.parts)
        .map_init(
            || (vec![[0u32; 2]; ny], Vec::new(), Vec::new(), Vec::new()),
            |(scores, touched, by_own, by_nb), i| {
                own.score::<OWN>(i, scores, touched);
                if !pairs_x.is_empty() {
                    pairs.score::<OWN>(i, scores, touched);
                }
                nb.score::<NEIGHBOUR>(i, scores, touched);
                for &j in touched.iter() {
                    let [o, g] = std::mem::take(&mut scores[j as usize]);
                    if o > 0 {
                        by_own.push((u64::from(o) << 32 | u64::from(g), j));
                    }
                    if g > 0 {
                        by_nb.push((u64::from(g) << 32 | u64::from(o), j));
                    }
                }
                touched.clear();
                (best(by_own, keep), best(by_nb, keep))
            },
        )
        .collect()
}

/// The `keep` best of `(score << 32 | tie-break, row)`, best first: scores descending, then
/// tie-breaks descending, then rows ascending. Empties `c` (its buffer serves the next row).
fn best(c: &mut Vec<(u64, u32)>, keep: usize) -> Vec<u32> {
    let by = |a: &(u64, u32), b: &(u64, u32)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
    if c.len() > keep {
        c.select_nth_unstable_by(keep, by);
        c.truncate(keep);
    }
    c.sort_unstable_by(by);
    // A list of its own length: the buffer keeps the capacity of every touched row (gigabytes
    // at 10^5 rows if the lists kept it).
    let mut out = Vec::with_capacity(c.len());
    out.extend(c.iter().map(|&(_, j)| j));
    c.clear();
    out
}

/// The token weights of a job, own, pair and neighbour: over both sides, so the same for both
/// directions.
struct Weights {
    own: HashMap<u64, u32>,
    pairs: HashMap<u64, u32>,
    neighbour: HashMap<u64, u32>,
}

/// A side's tokens as uploaded and its pair tokens (computed by the servers).
#[derive(Clone, Copy)]
struct Side<'a> {
    tokens: &'a Tokens,
    pairs: &'a [Vec<u64>],
}

/// Exactly `c` candidate rows of `y` for every row of `x` in `rows` (row-major, `c` per row
/// in `rows`, in order).
fn one_direction(
    x: Side,
    rows: Part,
    y: Side,
    w: &Weights,
    c: usize,
    seed: &Seed,
    stream: u64,
) -> Vec<u32> {
    let lists = ranked(x, rows, y, w, c);
    let m = y.tokens.own.len();
    let mut out = vec![0u32; rows.len(x.tokens.own.len()) * c];
    out.par_chunks_mut(c).enumerate().for_each(|(t, row)| {
        // `t` indexes the part's rows; the padding is drawn per row of the whole side.
        let ((own, nb), row_index) = (&lists[t], rows.part + t * rows.parts);
        let mut chosen: Vec<u32> = Vec::with_capacity(c);
        let mut seen = std::collections::HashSet::with_capacity(2 * c);
        let half = c / 2;
        let take = |list: &[u32],
                    limit: usize,
                    chosen: &mut Vec<u32>,
                    seen: &mut std::collections::HashSet<u32>| {
            for &j in list {
                if chosen.len() >= limit {
                    break;
                }
                if seen.insert(j) {
                    chosen.push(j);
                }
            }
        };
        take(&own[..own.len().min(half)], c, &mut chosen, &mut seen);
        take(&nb[..nb.len().min(c - half)], c, &mut chosen, &mut seen);
        take(own, c, &mut chosen, &mut seen);
        take(nb, c, &mut chosen, &mut seen);
        let mut prg = Prg::new(seed, stream.wrapping_mul(1 << 32) + row_index as u64);
        while chosen.len() < c {
            let j = (prg.next_u64() % m as u64) as u32;
            if seen.insert(j) {
                chosen.push(j);
            }
        }
        row.copy_from_slice(&chosen);
    });
    out
}

/// Candidate lists of a job: `a` (rows of A x `per_row` columns of B) and `b` (rows of B x
/// `per_row` rows of A). `seed` (public, derived from the job id) drives the padding so that
/// every server computes the same lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidates {
    /// Candidates per entity.
    pub per_row: usize,
    /// For each row of A, `per_row` rows of B.
    pub a: Vec<u32>,
    /// For each row of B, `per_row` rows of A.
    pub b: Vec<u32>,
}

/// The rows `part, part + parts, part + 2 * parts, ...` of a side: the share of the candidate
/// lists one of `parts` servers computes ([`candidates_part`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// This part's index, below `parts`.
    pub part: usize,
    /// How many parts the rows are dealt into.
    pub parts: usize,
}

impl Part {
    /// Every row.
    pub const ALL: Part = Part { part: 0, parts: 1 };

    /// Rows of a side of `n` rows in this part.
    pub fn len(&self, n: usize) -> usize {
        n.saturating_sub(self.part).div_ceil(self.parts)
    }

    /// Whether this part of a side of `n` rows is empty.
    pub fn is_empty(&self, n: usize) -> bool {
        self.len(n) == 0
    }
}

/// Candidates per entity of a job with `na` and `nb` rows per side.
pub fn per_row(na: usize, nb: usize, p: &BlockingParams) -> usize {
    p.candidates.min(na).min(nb).max(1)
}

/// The candidate lists of `rows` of both sides: those of A's rows in `rows`, then those of
/// B's, [`per_row`] each, in order. Every list depends only on the tokens of both whole sides,
/// the parameters and the seed, never on which part computes it, so that servers can deal the
/// rows among themselves ([`assemble`]) and obtain the lists [`candidates`] computes.
pub fn candidates_part(
    ta: &Tokens,
    tb: &Tokens,
    p: &BlockingParams,
    seed: &Seed,
    rows: Part,
) -> Vec<u32> {
    let (na, nb) = (ta.own.len(), tb.own.len());
    let c = per_row(na, nb, p);
    let total = na + nb;
    let df = doc_freq(&ta.own, &tb.own);
    let cap = posting_cap(total, p.max_df_own, p.max_postings);
    let (pa, pb) = if p.pair_tokens >= 2 {
        (
            pair_tokens(&ta.own, &df, cap, p.pair_tokens),
            pair_tokens(&tb.own, &df, cap, p.pair_tokens),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let w = Weights {
        own: weights_of(df, total, cap),
        pairs: weights(&pa, &pb, p.max_df_own, p.max_postings),
        neighbour: weights(
            &ta.neighbour,
            &tb.neighbour,
            p.max_df_neighbour,
            p.max_postings,
        ),
    };
    let (a, b) = (
        Side {
            tokens: ta,
            pairs: &pa,
        },
        Side {
            tokens: tb,
            pairs: &pb,
        },
    );
    let mut out = one_direction(a, rows, b, &w, c, seed, 1);
    out.extend(one_direction(b, rows, a, &w, c, seed, 2));
    out
}

/// The candidate lists of a job with `na` and `nb` rows per side from the lists of every part
/// ([`candidates_part`] of part `s` of `parts.len()`, computed by `by(s)`: server `s`, or a
/// worker of a split server), or a protocol error naming who sent a part of the wrong length
/// or with a row outside the other side.
pub fn assemble(
    na: usize,
    nb: usize,
    c: usize,
    parts: &[Vec<u32>],
    by: &dyn Fn(usize) -> crate::error::PeerName,
) -> crate::error::Result<Candidates> {
    let k = parts.len();
    let mut a = vec![0u32; na * c];
    let mut b = vec![0u32; nb * c];
    for (s, lists) in parts.iter().enumerate() {
        let part = Part { part: s, parts: k };
        let (la, lb) = (part.len(na), part.len(nb));
        let refuse = |why: String| {
            crate::error::Error::protocol(by(s), format!("candidate lists of part {s}: {why}"))
        };
        if lists.len() != (la + lb) * c {
            return Err(refuse(format!(
                "{} entries, expected {}",
                lists.len(),
                (la + lb) * c
            )));
        }
        let (xa, xb) = lists.split_at(la * c);
        // Every later step indexes the other side by these entries.
        if let Some(e) = xa.iter().find(|&&e| e as usize >= nb) {
            return Err(refuse(format!("row {e} of B, which has {nb}")));
        }
        if let Some(e) = xb.iter().find(|&&e| e as usize >= na) {
            return Err(refuse(format!("row {e} of A, which has {na}")));
        }
        for (side, x) in [(&mut a, xa), (&mut b, xb)] {
            for (t, list) in x.chunks(c).enumerate() {
                let r = s + t * k;
                side[r * c..(r + 1) * c].copy_from_slice(list);
            }
        }
    }
    Ok(Candidates { per_row: c, a, b })
}

/// Joins the two parties' tokens into candidate lists.
pub fn candidates(ta: &Tokens, tb: &Tokens, p: &BlockingParams, seed: &Seed) -> Candidates {
    let (na, nb) = (ta.own.len(), tb.own.len());
    let mut a = candidates_part(ta, tb, p, seed, Part::ALL);
    let c = per_row(na, nb, p);
    let b = a.split_off(na * c);
    Candidates { per_row: c, a, b }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PeerName;

    #[test]
    fn integer_log2() {
        assert_eq!(log2_q8(1), 0);
        assert_eq!(log2_q8(2), 256);
        assert_eq!(log2_q8(1024), 10 * 256);
        let l3 = log2_q8(3) as f64 / 256.0;
        assert!((l3 - 3f64.log2()).abs() < 1.0 / 128.0, "{l3}");
    }

    #[test]
    fn candidates_find_shared_names_and_pad() {
        let key = BlockingKey([5; 32]);
        let na: Vec<String> = ["alpha beta", "gamma", "delta epsilon", "zeta"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let nb: Vec<String> = ["gamma", "zeta", "alpha beta", "omega"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let none = vec![Vec::new(); 4];
        let rows: Vec<u32> = (0..4).collect();
        let (ta, tb) = (
            tokens(&key, &na, &none, &rows),
            tokens(&key, &nb, &none, &rows),
        );
        let p = BlockingParams {
            candidates: 2,
            max_df_own: 0.5,
            max_df_neighbour: 0.5,
            max_postings: 4096,
            pair_tokens: 0,
        };
        let c = candidates(&ta, &tb, &p, &Seed([1; 32]));
        assert_eq!(c.per_row, 2);
        // Row i's first candidate is at index 2i.
        assert_eq!(c.a[0], 2); // alpha beta
        assert_eq!(c.a[2], 0); // gamma
        assert_eq!(c.a[6], 1); // zeta
        assert_eq!(c.b[0], 1); // gamma
        for row in c.a.chunks(2).chain(c.b.chunks(2)) {
            assert_ne!(row[0], row[1]);
        }
        // Deterministic: every server computes the same lists.
        assert_eq!(c, candidates(&ta, &tb, &p, &Seed([1; 32])));
        // A different key gives unrelated tokens.
        assert_ne!(tokens(&BlockingKey([6; 32]), &na, &none, &rows), ta);
    }

    #[test]
    fn lists_dealt_among_servers_assemble_to_the_whole() {
        let key = BlockingKey([7; 32]);
        let words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"];
        let name = |i: usize| format!("{} {}", words[i % 7], words[(i * 3 + 1) % 7]);
        // Few shared tokens: most lists are padded, so the padding's row index matters.
        let (na, nb) = (23, 17);
        let an: Vec<String> = (0..na).map(name).collect();
        let bn: Vec<String> = (0..nb).map(|i| name(i * 5 + 2)).collect();
        let (ra, rb): (Vec<u32>, Vec<u32>) = ((0..na as u32).collect(), (0..nb as u32).collect());
        let ta = tokens(&key, &an, &vec![Vec::new(); na], &ra);
        let tb = tokens(&key, &bn, &vec![Vec::new(); nb], &rb);
        let p = BlockingParams {
            candidates: 6,
            ..BlockingParams::default()
        };
        let seed = Seed([3; 32]);
        let whole = candidates(&ta, &tb, &p, &seed);
        for k in 1..=4 {
            let parts: Vec<Vec<u32>> = (0..k)
                .map(|s| candidates_part(&ta, &tb, &p, &seed, Part { part: s, parts: k }))
                .collect();
            assert_eq!(
                assemble(na, nb, whole.per_row, &parts, &PeerName::Server).unwrap(),
                whole,
                "{k} parts"
            );
            // A part of the wrong length, or naming a row the other side lacks, is refused,
            // naming the server that sent it.
            let mut bad = parts.clone();
            bad[k - 1].pop();
            let e = assemble(na, nb, whole.per_row, &bad, &PeerName::Server)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("server {}", k - 1)), "{e}");
            for (at, beyond) in [(0, nb), (parts[k - 1].len() - 1, na)] {
                let mut bad = parts.clone();
                bad[k - 1][at] = beyond as u32;
                let e = assemble(na, nb, whole.per_row, &bad, &PeerName::Server)
                    .unwrap_err()
                    .to_string();
                assert!(
                    e.contains(&format!("server {}", k - 1)) && e.contains("which has"),
                    "{e}"
                );
            }
        }
        assert_eq!(Part { part: 3, parts: 4 }.len(23), 5);
        assert!(Part { part: 5, parts: 6 }.is_empty(4));
    }

    #[test]
    fn per_job_keys_unlink_jobs_but_keep_the_candidates() {
        let agreed = BlockingKey([4; 32]);
        let (k1, k2) = (agreed.for_job("job-1"), agreed.for_job("job-2"));
        // Deterministic (both parties derive the same), distinct per job and from the agreed key.
        assert_eq!(k1, agreed.for_job("job-1"));
        assert_ne!(k1, k2);
        assert_ne!(k1, agreed);
        let names: Vec<String> = ["alpha beta", "gamma", "beta gamma"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let none = vec![Vec::new(); 3];
        let rows: Vec<u32> = (0..3).collect();
        let (t1, t2) = (
            tokens(&k1, &names, &none, &rows),
            tokens(&k2, &names, &none, &rows),
        );
        // No token of one job appears in the other.
        let all1: std::collections::HashSet<u64> = t1.own.iter().flatten().copied().collect();
        assert!(t2.own.iter().flatten().all(|t| !all1.contains(t)));
        // The candidates depend only on token equality within the job.
        let p = BlockingParams {
            candidates: 2,
            ..BlockingParams::default()
        };
        let seed = Seed([1; 32]);
        assert_eq!(
            candidates(&t1, &t1, &p, &seed),
            candidates(&t2, &t2, &p, &seed)
        );
    }

    #[test]
    fn ranked_lists_hold_no_more_than_they_keep() {
        // Every row of x shares a token with all 500 rows of y but keeps 3: the lists must not
        // keep the buffer of the touched rows (the 50,000-per-side job's peak, 7.6 GB).
        let x = Tokens {
            own: vec![vec![1u64]; 10],
            neighbour: vec![vec![2u64]; 10],
        };
        let y = Tokens {
            own: vec![vec![1u64]; 500],
            neighbour: vec![vec![2u64]; 500],
        };
        let w = Weights {
            own: weights(&x.own, &y.own, 1.0, 4096),
            pairs: HashMap::new(),
            neighbour: weights(&x.neighbour, &y.neighbour, 1.0, 4096),
        };
        let lists = ranked(side(&x, &[]), Part::ALL, side(&y, &[]), &w, 3);
        for (own, nb) in &lists {
            for l in [own, nb] {
                assert_eq!(l, &[0, 1, 2]);
                assert!(l.capacity() <= 3, "capacity {}", l.capacity());
            }
        }
    }

    fn side<'a>(tokens: &'a Tokens, pairs: &'a [Vec<u64>]) -> Side<'a> {
        Side { tokens, pairs }
    }

    /// Weights as [`candidates_part`] computes them.
    fn job_weights(
        x: &Tokens,
        px: &[Vec<u64>],
        y: &Tokens,
        py: &[Vec<u64>],
        p: &BlockingParams,
    ) -> Weights {
        Weights {
            own: weights(&x.own, &y.own, p.max_df_own, p.max_postings),
            pairs: weights(px, py, p.max_df_own, p.max_postings),
            neighbour: weights(
                &x.neighbour,
                &y.neighbour,
                p.max_df_neighbour,
                p.max_postings,
            ),
        }
    }

    #[test]
    fn equal_name_evidence_is_ranked_by_the_neighbourhoods() {
        // a0 shares its one own token with b0, b1 and b2 alike; only b2 also shares a
        // neighbour token. The own ranking puts b2 first (not the lowest index), the
        // neighbour ranking has b2 alone.
        let x = Tokens {
            own: vec![vec![1]],
            neighbour: vec![vec![9]],
        };
        let y = Tokens {
            own: vec![vec![1], vec![1], vec![1]],
            neighbour: vec![vec![8], vec![7], vec![9]],
        };
        let p = BlockingParams {
            max_df_own: 1.0,
            max_df_neighbour: 1.0,
            ..BlockingParams::default()
        };
        let w = job_weights(&x, &[], &y, &[], &p);
        let lists = ranked(side(&x, &[]), Part::ALL, side(&y, &[]), &w, 2);
        assert_eq!(lists, vec![(vec![2, 0], vec![2])]);
    }

    #[test]
    fn pairs_of_frequent_tokens_join_rows_their_parts_cannot() {
        // Tokens 1 and 2 are each held by 4 rows, over the cap of 3, so they are ignored; the
        // pair {1, 2} is held by a0 and b0 only.
        let own = |v: &[&[u64]]| Tokens {
            own: v.iter().map(|t| t.to_vec()).collect(),
            neighbour: vec![Vec::new(); v.len()],
        };
        let x = own(&[&[1, 2]]);
        let y = own(&[&[1, 3], &[4, 2], &[1, 2], &[6, 2], &[1, 5]]);
        let mut p = BlockingParams {
            max_df_own: 1.0,
            max_postings: 3,
            pair_tokens: 2,
            ..BlockingParams::default()
        };
        let total = x.own.len() + y.own.len();
        let cap = posting_cap(total, p.max_df_own, p.max_postings);
        let df = doc_freq(&x.own, &y.own);
        let (px, py) = (
            pair_tokens(&x.own, &df, cap, 2),
            pair_tokens(&y.own, &df, cap, 2),
        );
        assert_eq!(px, vec![vec![pair_token(1, 2)]]);
        assert_eq!(py[2], px[0]);
        // Symmetric, and unlike either part.
        assert_eq!(pair_token(2, 1), pair_token(1, 2));
        assert!(pair_token(1, 2) != 1 && pair_token(1, 2) != 2);
        let w = job_weights(&x, &px, &y, &py, &p);
        assert_eq!(
            ranked(side(&x, &px), Part::ALL, side(&y, &py), &w, 3),
            vec![(vec![2], vec![])]
        );
        let w = job_weights(&x, &[], &y, &[], &p);
        assert_eq!(
            ranked(side(&x, &[]), Part::ALL, side(&y, &[]), &w, 3),
            vec![(vec![], vec![])]
        );
        // Through the whole candidate generation: b2 is a0's first candidate.
        p.candidates = 2;
        assert_eq!(candidates(&x, &y, &p, &Seed([1; 32])).a[0], 2);
        // Only the least frequent `pair_tokens` of a row's dropped tokens are paired.
        let df: HashMap<u64, u64> = [(1, 9), (2, 8), (3, 7), (4, 1)].into_iter().collect();
        let pairs = pair_tokens(&[vec![1, 2, 3, 4]], &df, 5, 2);
        assert_eq!(pairs, vec![vec![pair_token(2, 3)]]);
    }

    #[test]
    fn the_absolute_posting_cap_drops_frequent_tokens_whatever_the_fraction() {
        // Token 7 in 5 of 8 rows, token 8 in 2: a 90% fraction admits both, 3 postings only 8.
        let x = vec![vec![7, 8], vec![7], vec![7], vec![]];
        let y = vec![vec![7, 8], vec![7], vec![], vec![]];
        let w = weights(&x, &y, 0.9, 4096);
        assert!(w[&7] > 0 && w[&8] > 0);
        let w = weights(&x, &y, 0.9, 3);
        assert_eq!(w[&7], 0);
        assert!(w[&8] > 0);
    }
}
