//! The attack harness: one curious compute server trying to recover the parties' entity names
//! from what it receives in a job (`scripts/attack.sh`, `party attack`).
//!
//! **What the attacker holds.** Exactly a server's view of a job ([`View`]): each party's keyed
//! own-name and neighbour tokens per (shuffled) row, hence row counts and token counts, and the
//! candidate lists every server computes in the clear. Plus auxiliary public knowledge: the
//! plaintext names of a *similar population* ([`Aux`]), with no link to any row. It knows the
//! token recipe ([`own_token_strings`]: words and character trigrams), not the key.
//!
//! **Attacks** (all in [`attack`]; each stage feeds the next):
//!
//! 1. *Document-frequency signatures* (frequency alignment). Keyed tokens keep equality, so the
//!    server knows every token's document frequency within each party. A row's sorted multiset
//!    of `ln(df / rows)` is compared with the same signature of every auxiliary name with as
//!    many distinct token strings (robust L1 distance, each token's term capped). On the exact
//!    population this alone re-identifies nearly every row; on a similar one it gives a set of
//!    mutual-best seed matches.
//! 2. *Token decoding by co-occurrence voting* (pattern mining in the style of Christen et al.).
//!    Each seed match `(row, name)` votes, for each token of the row, for every string of the
//!    name; a token is decoded to the string that most of the seeded rows containing it agree on
//!    (one-to-one, greedy by votes). A matched row whose only unexplained token and string are
//!    one each decodes that token by elimination. Both parties' tokens are keyed with the same
//!    key, so what is decoded on one party's rows decodes the other's.
//! 3. *Re-identification by decoded tokens.* Each row is rescored against the auxiliary names
//!    sharing its rarest decoded strings (Jaccard over the row's full token count), giving new
//!    matches; stages 2-3 iterate.
//! 4. *Name reconstruction.* A row whose tokens are all decoded is spelled out from its
//!    trigrams (a path of overlapping trigrams from `#..` to `..#`, checked against the decoded
//!    words and the token count) even when the name is in no auxiliary list.
//! 5. *Candidate-graph propagation* (graph matching in the spirit of Vidanage et al.): a row
//!    left without a guess takes the identity of its first candidate on the other side when
//!    that candidate was re-identified (candidates are ranked by shared-token weight, so the
//!    first one is usually the same or a near-identical name).
//!
//! The **baseline** is the same stage 1 given only each row's token count (what a server would
//! see with no equality between tokens): a guess among the auxiliary names of the same size.
//!
//! **Blocking modes** ([`BlockingMode`]): besides today's tokens, candidate mitigations applied
//! party side (party frequency caps, padded token counts, words only); [`attack_against`] knows
//! the scheme (Kerckhoffs), so a mitigation is credited only for what an adaptive server cannot
//! undo.

use crate::error::{Error, Result};
use crate::model::blocking::{Candidates, Tokens, own_token_strings};
use crate::model::features::{hash64, words};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};

/// What one server receives in a job (nothing else).
#[derive(Debug, Clone)]
pub struct View {
    /// Each party's keyed tokens per uploaded row (party A, party B).
    pub parties: [Tokens; 2],
    /// The candidate lists the servers compute.
    pub candidates: Candidates,
}

/// Auxiliary public knowledge: plaintext names of a similar population.
#[derive(Debug, Clone)]
pub struct Aux {
    /// The names (no link to any row).
    pub names: Vec<String>,
}

/// The attacker's guess for one row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Guess {
    /// The guessed name (possibly partial: only the recovered words), if any.
    pub name: Option<String>,
    /// The auxiliary entity the row is believed to be, if any.
    pub aux: Option<u32>,
}

/// Attack strength: `Full` runs every stage; `SizesOnly` is the baseline (stage 1 on token
/// counts only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strength {
    /// Every attack.
    Full,
    /// Only row sizes.
    SizesOnly,
}

/// Interned auxiliary strings.
struct AuxIndex {
    /// String ids of each name, sorted, deduplicated.
    strings: Vec<Vec<u32>>,
    /// The strings (`w:word` or `q:tri`).
    text: Vec<String>,
    /// Document frequency of each string over the auxiliary names.
    df: Vec<u32>,
    /// Names containing each string.
    postings: Vec<Vec<u32>>,
}

impl AuxIndex {
    /// `cap`: the attacker applies the parties' own frequency cap to the auxiliary names
    /// (drops strings held by more than that share of them), as the parties do before upload.
    fn new(names: &[String], cap: Option<f64>, words_only: bool) -> AuxIndex {
        let mut id: HashMap<String, u32> = HashMap::new();
        let mut text = Vec::new();
        let strings: Vec<Vec<u32>> = names
            .iter()
            .map(|n| {
                let mut s: Vec<u32> = own_token_strings(n)
                    .into_iter()
                    .filter(|t| !words_only || t.starts_with("w:"))
                    .map(|t| {
                        let next = id.len() as u32;
                        *id.entry(t.clone()).or_insert_with(|| {
                            text.push(t);
                            next
                        })
                    })
                    .collect();
                s.sort_unstable();
                s.dedup();
                s
            })
            .collect();
        let mut strings = strings;
        if let Some(cap) = cap {
            let mut df = vec![0usize; text.len()];
            for s in &strings {
                for &x in s {
                    df[x as usize] += 1;
                }
            }
            let limit = ((cap * names.len() as f64) as usize).max(2);
            for s in &mut strings {
                s.retain(|&x| df[x as usize] <= limit);
            }
        }
        let mut df = vec![0u32; text.len()];
        let mut postings = vec![Vec::new(); text.len()];
        for (n, s) in strings.iter().enumerate() {
            for &x in s {
                df[x as usize] += 1;
                postings[x as usize].push(n as u32);
            }
        }
        AuxIndex {
            strings,
            text,
            df,
            postings,
        }
    }
}

/// A row of the view: which party, and its own tokens as interned ids (sorted).
struct Rows {
    party: Vec<u8>,
    index: Vec<u32>,
    tokens: Vec<Vec<u32>>,
    /// Document frequency of each token within each party.
    df: [Vec<u32>; 2],
    n_tokens: usize,
}

impl Rows {
    fn new(view: &View) -> Rows {
        let mut id: HashMap<u64, u32> = HashMap::new();
        let (mut party, mut index, mut tokens) = (Vec::new(), Vec::new(), Vec::new());
        for (p, t) in view.parties.iter().enumerate() {
            for (i, row) in t.own.iter().enumerate() {
                let mut ids: Vec<u32> = row
                    .iter()
                    .map(|&k| {
                        let next = id.len() as u32;
                        *id.entry(k).or_insert(next)
                    })
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                party.push(p as u8);
                index.push(i as u32);
                tokens.push(ids);
            }
        }
        let n_tokens = id.len();
        let mut df = [vec![0u32; n_tokens], vec![0u32; n_tokens]];
        for (r, ts) in tokens.iter().enumerate() {
            for &t in ts {
                df[party[r] as usize][t as usize] += 1;
            }
        }
        Rows {
            party,
            index,
            tokens,
            df,
            n_tokens,
        }
    }
}

/// Sorted `ln(1 + (df - 1) * ratio)`: a row's own occurrence counts once, the others scale with
/// the population sizes (`ratio` = auxiliary names / party rows), so that the signature of a
/// row and of its own name agree on the exact population and roughly on a sample of it.
fn signature(dfs: impl Iterator<Item = u32>, ratio: f32) -> Vec<f32> {
    let mut s: Vec<f32> = dfs
        .map(|d| (1.0 + (d.max(1) - 1) as f32 * ratio).ln())
        .collect();
    s.sort_unstable_by(f32::total_cmp);
    s
}

fn distance(x: &[f32], y: &[f32]) -> f32 {
    // Sorted signatures of different lengths (padding): unmatched entries cost 1 each.
    x.iter()
        .zip(y)
        .map(|(a, b)| (a - b).abs().min(1.0))
        .sum::<f32>()
        + x.len().abs_diff(y.len()) as f32
}

/// Stage 1: for every row, its best auxiliary name by signature, the distance, and whether the
/// match is mutual-best and strictly better than the row's second best.
fn signature_matches(
    rows: &Rows,
    aux: &AuxIndex,
    sizes_only: bool,
    pad: usize,
) -> Vec<Option<(u32, bool)>> {
    let totals = [
        rows.party.iter().filter(|&&p| p == 0).count(),
        rows.party.iter().filter(|&&p| p == 1).count(),
    ];
    let n_aux = aux.strings.len();
    let mut by_len: HashMap<usize, Vec<u32>> = HashMap::new();
    for (n, s) in aux.strings.iter().enumerate() {
        by_len
            .entry(s.len().div_ceil(pad).max(1) * pad)
            .or_default()
            .push(n as u32);
    }
    let aux_sig: Vec<Vec<f32>> = aux
        .strings
        .par_iter()
        .map(|s| {
            if sizes_only {
                Vec::new()
            } else {
                signature(
                    s.iter()
                        .map(|&x| aux.df[x as usize])
                        .filter(|&d| pad == 1 || d >= 2),
                    1.0,
                )
            }
        })
        .collect();
    let row_sig: Vec<Vec<f32>> = (0..rows.tokens.len())
        .into_par_iter()
        .map(|r| {
            if sizes_only {
                Vec::new()
            } else {
                let p = rows.party[r] as usize;
                signature(
                    rows.tokens[r]
                        .iter()
                        .map(|&t| rows.df[p][t as usize])
                        .filter(|&d| pad == 1 || d >= 2),
                    n_aux as f32 / totals[p].max(1) as f32,
                )
            }
        })
        .collect();
    // Row -> (best name, best distance, second distance).
    let best: Vec<Option<(u32, f32, f32)>> = (0..rows.tokens.len())
        .into_par_iter()
        .map(|r| {
            let names = by_len.get(&rows.tokens[r].len())?;
            let mut b = (u32::MAX, f32::INFINITY, f32::INFINITY);
            for &n in names {
                let d = if sizes_only {
                    // Sizes only: every name of the right size is as good; a public
                    // pseudo-random order picks one.
                    (hash64(&[&(r as u64).to_le_bytes(), &n.to_le_bytes()]) >> 40) as f32
                } else {
                    distance(&row_sig[r], &aux_sig[n as usize])
                };
                if d < b.1 {
                    b = (n, d, b.1);
                } else if d < b.2 {
                    b.2 = d;
                }
            }
            Some(b)
        })
        .collect();
    if sizes_only {
        return best.iter().map(|b| b.map(|b| (b.0, false))).collect();
    }
    // Mutual best within each party.
    let mut name_best: [HashMap<u32, (f32, usize)>; 2] = [HashMap::new(), HashMap::new()];
    for (r, b) in best.iter().enumerate() {
        if let Some((n, d, _)) = b {
            let e = name_best[rows.party[r] as usize]
                .entry(*n)
                .or_insert((f32::INFINITY, usize::MAX));
            if *d < e.0 {
                *e = (*d, r);
            } else if *d == e.0 {
                e.1 = usize::MAX; // tie: not mutual
            }
        }
    }
    best.iter()
        .enumerate()
        .map(|(r, b)| {
            b.map(|(n, d, d2)| {
                let mutual = name_best[rows.party[r] as usize]
                    .get(&n)
                    .is_some_and(|e| e.1 == r);
                let tol = 0.35 * rows.tokens[r].len() as f32;
                (n, mutual && d < d2 && d <= tol)
            })
        })
        .collect()
}

/// Stage 2: decodes tokens from confident `(row, name)` matches. `decoded[t]` is a string id.
fn decode(
    rows: &Rows,
    aux: &AuxIndex,
    matches: &[Option<(u32, bool)>],
    decoded: &mut [Option<u32>],
) {
    let totals = [
        rows.party.iter().filter(|&&p| p == 0).count(),
        rows.party.iter().filter(|&&p| p == 1).count(),
    ];
    let ratio = totals.map(|n| aux.strings.len() as f32 / n.max(1) as f32);
    let mut postings: Vec<Vec<u32>> = vec![Vec::new(); rows.n_tokens];
    for (r, m) in matches.iter().enumerate() {
        if matches!(m, Some((_, true))) {
            for &t in &rows.tokens[r] {
                postings[t as usize].push(r as u32);
            }
        }
    }
    // (votes, token, string), from every token seen in at least one confident row.
    let mut proposals: Vec<(u32, u32, u32)> = postings
        .par_iter()
        .enumerate()
        .filter_map(|(t, rs)| {
            if rs.len() < 2 {
                return None;
            }
            let mut count: HashMap<u32, u32> = HashMap::new();
            for &r in rs {
                let (n, _) = matches[r as usize].expect("confident");
                for &s in &aux.strings[n as usize] {
                    *count.entry(s).or_default() += 1;
                }
            }
            // Most votes; among equals, the string whose frequency best fits the token's.
            let p = rows.party[rs[0] as usize] as usize;
            let expect = (rows.df[p][t] as f32 * ratio[p]).max(1.0).ln();
            let fit = |s: u32| ((aux.df[s as usize] as f32).ln() - expect).abs();
            let mut best: Option<(u32, u32, f32)> = None;
            let mut second = 0u32;
            for (&s, &c) in &count {
                let f = fit(s);
                match best {
                    Some((_, bc, bf))
                        if c < bc || (c == bc && (f > bf || (f == bf && s > best?.0))) =>
                    {
                        second = second.max(c)
                    }
                    _ => {
                        if let Some((_, bc, _)) = best {
                            second = second.max(bc);
                        }
                        best = Some((s, c, f));
                    }
                }
            }
            let (s, c, _) = best?;
            (c >= 2 && (c > second || 2 * c as usize >= rs.len())).then_some((c, t as u32, s))
        })
        .collect();
    proposals.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut used: HashSet<u32> = decoded.iter().flatten().copied().collect();
    for (_, t, s) in proposals {
        if decoded[t as usize].is_none() && used.insert(s) {
            decoded[t as usize] = Some(s);
        }
    }
    // Elimination: one unexplained token and one unexplained string in a confident match.
    for _ in 0..3 {
        let mut changed = false;
        for (r, m) in matches.iter().enumerate() {
            let Some((n, true)) = m else { continue };
            let open: Vec<u32> = rows.tokens[r]
                .iter()
                .copied()
                .filter(|&t| decoded[t as usize].is_none())
                .collect();
            if open.len() != 1 {
                continue;
            }
            let got: HashSet<u32> = rows.tokens[r]
                .iter()
                .filter_map(|&t| decoded[t as usize])
                .collect();
            let left: Vec<u32> = aux.strings[*n as usize]
                .iter()
                .copied()
                .filter(|s| !got.contains(s))
                .collect();
            if left.len() == 1 && used.insert(left[0]) {
                decoded[open[0] as usize] = Some(left[0]);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

/// Stage 3: rescoring rows against auxiliary names by decoded tokens. Returns, per row, the best
/// name, its Jaccard similarity, and whether it is confident (strictly best, similarity >= 0.7).
fn rescore(
    rows: &Rows,
    aux: &AuxIndex,
    decoded: &[Option<u32>],
    pad: usize,
) -> Vec<Option<(u32, f32, bool)>> {
    (0..rows.tokens.len())
        .into_par_iter()
        .map(|r| {
            let mut d: Vec<u32> = rows.tokens[r]
                .iter()
                .filter_map(|&t| decoded[t as usize])
                .collect();
            if d.is_empty() {
                return None;
            }
            d.sort_unstable();
            let mut rare = d.clone();
            rare.sort_unstable_by_key(|&s| (aux.df[s as usize], s));
            rare.truncate(3);
            let mut cands: Vec<u32> = rare
                .iter()
                .flat_map(|&s| aux.postings[s as usize].iter().copied())
                .collect();
            cands.sort_unstable();
            cands.dedup();
            let k = rows.tokens[r].len();
            let mut best = (u32::MAX, -1.0f32, -1.0f32);
            for n in cands {
                let s = &aux.strings[n as usize];
                if pad > 1 && s.len().div_ceil(pad).max(1) * pad != k {
                    continue;
                }
                let inter = sorted_intersection(&d, s);
                // With padding the row's true count is unknown: count the name's strings.
                let k = if pad > 1 { d.len().max(s.len()) } else { k };
                let j = inter as f32 / (k + s.len() - inter) as f32;
                if j > best.1 {
                    best = (n, j, best.1);
                } else if j > best.2 {
                    best.2 = j;
                }
            }
            (best.0 != u32::MAX).then_some((best.0, best.1, best.1 > best.2 && best.1 >= 0.7))
        })
        .collect()
}

fn sorted_intersection(a: &[u32], b: &[u32]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// Stage 4b: orders a row's decoded words (up to four, every order tried) into a name whose
/// token strings explain every decoded token, number exactly the row's tokens, and whose
/// strings not decoded on this row are decoded on no other row (else the row would carry that
/// token). Undecoded tokens are typically rare trigrams across word boundaries.
fn from_words(
    strings: &[&str],
    n_tokens: usize,
    pad: usize,
    assigned: &HashSet<&str>,
) -> Option<String> {
    let ws: Vec<&str> = strings
        .iter()
        .filter_map(|s| s.strip_prefix("w:"))
        .collect();
    if ws.is_empty() || ws.len() > 4 {
        return None;
    }
    let have: HashSet<&str> = strings.iter().copied().collect();
    let mut order: Vec<usize> = (0..ws.len()).collect();
    let mut found = None;
    permute(&mut order, 0, &mut |o| {
        if found.is_some() {
            return;
        }
        let name = o.iter().map(|&i| ws[i]).collect::<Vec<_>>().join(" ");
        let mut t = own_token_strings(&name);
        t.sort_unstable();
        t.dedup();
        let explains = have.iter().all(|h| t.iter().any(|x| x == h));
        let clean = t
            .iter()
            .all(|x| have.contains(x.as_str()) || !assigned.contains(x.as_str()));
        if t.len().div_ceil(pad).max(1) * pad == n_tokens && explains && clean {
            found = Some(name);
        }
    });
    found
}

fn permute(v: &mut [usize], k: usize, f: &mut impl FnMut(&[usize])) {
    if k == v.len() {
        f(v);
        return;
    }
    for i in k..v.len() {
        v.swap(k, i);
        permute(v, k + 1, f);
        v.swap(k, i);
    }
}

/// Stage 4: spells a name from its decoded trigrams (all of the row's tokens decoded), checked
/// against the decoded words and the token count.
fn reconstruct(strings: &[&str], n_tokens: usize) -> Option<String> {
    let tris: Vec<Vec<char>> = strings
        .iter()
        .filter_map(|s| s.strip_prefix("q:"))
        .map(|q| q.chars().collect())
        .collect();
    let mut ws: Vec<String> = strings
        .iter()
        .filter_map(|s| s.strip_prefix("w:"))
        .map(str::to_string)
        .collect();
    ws.sort_unstable();
    let starts: Vec<usize> = (0..tris.len()).filter(|&i| tris[i][0] == '#').collect();
    let mut budget = 20_000usize;
    for &s in &starts {
        let mut used = vec![0u8; tris.len()];
        used[s] = 1;
        let mut path = tris[s].clone();
        if let Some(name) = extend(&tris, &mut used, &mut path, &ws, n_tokens, &mut budget) {
            return Some(name);
        }
    }
    None
}

fn extend(
    tris: &[Vec<char>],
    used: &mut [u8],
    path: &mut Vec<char>,
    ws: &[String],
    n_tokens: usize,
    budget: &mut usize,
) -> Option<String> {
    if *budget == 0 || path.len() > 200 {
        return None;
    }
    *budget -= 1;
    if *path.last()? == '#' && path.len() >= 3 {
        if used.iter().all(|&u| u > 0) {
            let name: String = path[1..path.len() - 1].iter().collect();
            let mut got = words(&name);
            got.sort_unstable();
            let mut distinct = got.clone();
            distinct.dedup();
            if distinct == ws && distinct.len() + tris.len() == n_tokens {
                return Some(name);
            }
        }
        return None;
    }
    let tail = [path[path.len() - 2], path[path.len() - 1]];
    for i in 0..tris.len() {
        if tris[i][0] == tail[0] && tris[i][1] == tail[1] && used[i] < 2 {
            used[i] += 1;
            path.push(tris[i][2]);
            if let Some(n) = extend(tris, used, path, ws, n_tokens, budget) {
                return Some(n);
            }
            path.pop();
            used[i] -= 1;
        }
    }
    None
}

/// Runs the attack on a server's view with auxiliary names; one guess per row of each party.
pub fn attack(view: &View, aux: &Aux, strength: Strength) -> [Vec<Guess>; 2] {
    attack_padded(view, aux, strength, 1)
}

/// [`attack`] against token lists padded with random tokens to multiples of `pad` (known to the
/// attacker): names are bucketed by padded size, signatures keep only tokens held by at least
/// two rows (padding tokens are unique), and counts are checked up to padding.
pub fn attack_padded(view: &View, aux: &Aux, strength: Strength, pad: usize) -> [Vec<Guess>; 2] {
    attack_scheme(view, aux, strength, pad, None, false)
}

/// The attack against a blocking mode whose scheme it knows (padding, caps, token kinds).
pub fn attack_against(
    view: &View,
    aux: &Aux,
    strength: Strength,
    mode: BlockingMode,
) -> [Vec<Guess>; 2] {
    attack_scheme(
        view,
        aux,
        strength,
        mode.pad(),
        mode.cap(),
        mode == BlockingMode::Words,
    )
}

/// [`attack_padded`] that also knows the parties drop tokens held by more than `cap` of their
/// rows (it drops the same from the auxiliary names).
fn attack_scheme(
    view: &View,
    aux: &Aux,
    strength: Strength,
    pad: usize,
    cap: Option<f64>,
    words_only: bool,
) -> [Vec<Guess>; 2] {
    let pad = pad.max(1);
    let rows = Rows::new(view);
    let ax = AuxIndex::new(&aux.names, cap, words_only);
    let sig = signature_matches(&rows, &ax, strength == Strength::SizesOnly, pad);
    let mut guesses: Vec<Guess> = sig
        .iter()
        .map(|m| Guess {
            name: m.map(|(n, _)| aux.names[n as usize].clone()),
            aux: m.map(|(n, _)| n),
        })
        .collect();
    if strength == Strength::Full {
        let mut decoded: Vec<Option<u32>> = Vec::new();
        let mut matches = sig.clone();
        let mut scored = Vec::new();
        for _ in 0..4 {
            decoded = vec![None; rows.n_tokens];
            decode(&rows, &ax, &matches, &mut decoded);
            scored = rescore(&rows, &ax, &decoded, pad);
            let before = matches
                .iter()
                .filter(|m| matches!(m, Some((_, true))))
                .count();
            // Next round's seeds: rows confidently matched by decoded tokens, and signature
            // matches the decoded tokens do not contradict.
            for (r, m) in matches.iter_mut().enumerate() {
                *m = match (scored[r], sig[r]) {
                    (Some((n, _, true)), _) => Some((n, true)),
                    (Some((n, j, _)), Some((ns, true))) if n == ns && j >= 0.5 => Some((n, true)),
                    (None, Some((ns, true))) => Some((ns, true)),
                    _ => None,
                };
            }
            let after = matches
                .iter()
                .filter(|m| matches!(m, Some((_, true))))
                .count();
            tracing::info!(
                "attack round: {before} -> {after} confident matches, {} of {} tokens decoded",
                decoded.iter().flatten().count(),
                rows.n_tokens
            );

            if after == before {
                break;
            }
        }
        let assigned: HashSet<&str> = decoded
            .iter()
            .flatten()
            .map(|&s| ax.text[s as usize].as_str())
            .collect();
        let judged: Vec<(Guess, bool)> = (0..rows.tokens.len())
            .into_par_iter()
            .map(|r| {
                let strings: Vec<&str> = rows.tokens[r]
                    .iter()
                    .filter_map(|&t| decoded[t as usize])
                    .map(|s| ax.text[s as usize].as_str())
                    .collect();
                let k = rows.tokens[r].len();
                // Every token decoded (with padding: as many as the padded count allows).
                let complete = strings.len() == k
                    || (pad > 1 && strings.len().div_ceil(pad).max(1) * pad == k);
                let by_sig = sig[r].filter(|m| m.1).map(|m| m.0);
                let by_tokens = scored[r].map(|s| (s.0, s.1));
                // An auxiliary name whose strings are exactly the row's decoded tokens.
                if let Some((n, j)) = by_tokens
                    && j >= 1.0
                {
                    return (
                        Guess {
                            name: Some(aux.names[n as usize].clone()),
                            aux: Some(n),
                        },
                        true,
                    );
                }
                if complete
                    && let Some(name) =
                        reconstruct(&strings, strings.len().max(k * (pad == 1) as usize))
                {
                    return (
                        Guess {
                            name: Some(name),
                            aux: None,
                        },
                        true,
                    );
                }
                if let Some(name) = from_words(&strings, k, pad, &assigned) {
                    return (
                        Guess {
                            name: Some(name),
                            aux: None,
                        },
                        true,
                    );
                }
                if let Some(n) = by_sig.or(by_tokens.filter(|s| s.1 >= 0.7).map(|s| s.0)) {
                    return (
                        Guess {
                            name: Some(aux.names[n as usize].clone()),
                            aux: Some(n),
                        },
                        true,
                    );
                }
                // Partial: the recovered words.
                let ws: Vec<&str> = strings
                    .iter()
                    .filter_map(|s| s.strip_prefix("w:"))
                    .collect();
                if ws.is_empty()
                    && let Some((n, _)) = sig[r]
                {
                    // Nothing decoded: the nearest signature, however unsure (not propagated).
                    return (
                        Guess {
                            name: Some(aux.names[n as usize].clone()),
                            aux: Some(n),
                        },
                        false,
                    );
                }
                (
                    Guess {
                        name: (!ws.is_empty()).then(|| ws.join(" ")),
                        aux: None,
                    },
                    false,
                )
            })
            .collect();
        let confident: Vec<bool> = judged.iter().map(|j| j.1 && j.0.aux.is_some()).collect();
        guesses = judged.into_iter().map(|j| j.0).collect();
        // Stage 5: candidate-graph propagation to rows without a confident identity.
        let first = |p: usize, i: usize| -> Option<usize> {
            let c = &view.candidates;
            let list = if p == 0 { &c.a } else { &c.b };
            let j = *list.get(i * c.per_row)? as usize;
            let other = 1 - p;
            Some(
                j + if other == 1 {
                    view.parties[0].own.len()
                } else {
                    0
                },
            )
        };
        let propagated: Vec<Option<Guess>> = (0..rows.tokens.len())
            .map(|r| {
                if confident[r] {
                    return None;
                }
                let o = first(rows.party[r] as usize, rows.index[r] as usize)?;
                if o >= guesses.len() || !confident[o] {
                    return None;
                }
                // The neighbour's identity must contain every word recovered on this row.
                let theirs = words(guesses[o].name.as_deref().unwrap_or(""));
                let consistent = guesses[r].aux.is_some()
                    || words(guesses[r].name.as_deref().unwrap_or(""))
                        .iter()
                        .all(|w| theirs.contains(w));
                consistent.then(|| guesses[o].clone())
            })
            .collect();
        for (g, p) in guesses.iter_mut().zip(propagated) {
            if let Some(p) = p {
                *g = p;
            }
        }
    }
    let na = view.parties[0].own.len();
    let b = guesses.split_off(na);
    [guesses, b]
}

/// The true identity of a row, for scoring only (never given to [`attack`]).
#[derive(Debug, Clone)]
pub struct Truth {
    /// The row's true name.
    pub name: String,
    /// The auxiliary entity that is the same real-world entity, if any.
    pub aux: Option<u32>,
}

/// Re-identification and name-recovery rates of guesses over the scored rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Scores {
    /// Rows whose entity is guessed exactly (same normalised name, or the auxiliary entity
    /// that is the same real-world entity).
    pub reidentification_rate: f64,
    /// Share of the true names' characters (of words) recovered: words of the guess that are
    /// words of the true name, by length.
    pub name_recovery_rate: f64,
    /// Rows scored.
    pub rows: usize,
}

fn norm(name: &str) -> String {
    words(name).join(" ")
}

/// Scores guesses against the truth of each scored row.
pub fn score(guesses: &[&Guess], truth: &[&Truth]) -> Scores {
    let (mut hit, mut chars, mut got) = (0usize, 0usize, 0usize);
    for (g, t) in guesses.iter().zip(truth) {
        let tw = words(&t.name);
        chars += tw.iter().map(|w| w.chars().count()).sum::<usize>();
        let gname = g.name.as_deref().map(norm);
        if gname.as_deref() == Some(norm(&t.name).as_str()) || (g.aux.is_some() && g.aux == t.aux) {
            hit += 1;
            got += tw.iter().map(|w| w.chars().count()).sum::<usize>();
            continue;
        }
        let mut pool: Vec<String> = gname.map(|n| words(&n)).unwrap_or_default();
        for w in &tw {
            if let Some(i) = pool.iter().position(|x| x == w) {
                pool.swap_remove(i);
                got += w.chars().count();
            }
        }
    }
    let n = truth.len().max(1) as f64;
    Scores {
        reidentification_rate: hit as f64 / n,
        name_recovery_rate: got as f64 / chars.max(1) as f64,
        rows: truth.len(),
    }
}

/// Which auxiliary knowledge the attacker holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuxSetting {
    /// The names of the other party's aligned entities (attack party A's rows).
    Other,
    /// The names of a random half of party A's aligned entities (attack the other half).
    Half,
    /// The exact population of party A's names (the independent check's setting; a ceiling).
    Same,
}

impl std::str::FromStr for AuxSetting {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "other" => Ok(AuxSetting::Other),
            "half" => Ok(AuxSetting::Half),
            "same" => Ok(AuxSetting::Same),
            _ => Err(format!(
                "unknown auxiliary setting {s:?} (expected other, half or same)"
            )),
        }
    }
}

/// Blocking modes the harness can judge (the token transformation applied party side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockingMode {
    /// Today's blocking: keyed words and trigrams of own names, keyed neighbour words.
    Tokens,
    /// Party-side frequency caps: each party drops, before upload, the tokens held by more than
    /// [`PARTY_CAP`] of its own rows (the servers never see frequent tokens).
    PartyCap,
    /// Padded token counts: each row's own and neighbour token lists are padded with fresh
    /// random tokens to the next multiple of [`PAD`] (the attacker knows the multiple).
    Padded,
    /// Both.
    CapPadded,
    /// Fewer tokens: own tokens are the name's words only (no trigrams).
    Words,
}

/// Share of a party's rows above which `party-cap` drops a token.
pub const PARTY_CAP: f64 = 0.01;
/// Multiple to which `padded` pads token counts.
pub const PAD: usize = 16;

impl BlockingMode {
    fn cap(self) -> Option<f64> {
        matches!(self, BlockingMode::PartyCap | BlockingMode::CapPadded).then_some(PARTY_CAP)
    }

    fn pad(self) -> usize {
        match self {
            BlockingMode::Padded | BlockingMode::CapPadded => PAD,
            _ => 1,
        }
    }

    /// Applies the mode to a party's tokens (party side, before upload).
    pub fn apply(self, t: &mut Tokens, prg: &mut crate::mpc::prg::Prg) {
        if matches!(self, BlockingMode::PartyCap | BlockingMode::CapPadded) {
            for lists in [&mut t.own, &mut t.neighbour] {
                let mut df: HashMap<u64, usize> = HashMap::new();
                for row in lists.iter() {
                    for &k in row {
                        *df.entry(k).or_default() += 1;
                    }
                }
                let cap = ((PARTY_CAP * lists.len() as f64) as usize).max(2);
                for row in lists.iter_mut() {
                    row.retain(|k| df[k] <= cap);
                }
            }
        }
        let pad = self.pad();
        if pad > 1 {
            for lists in [&mut t.own, &mut t.neighbour] {
                for row in lists.iter_mut() {
                    let target = row.len().div_ceil(pad).max(1) * pad;
                    while row.len() < target {
                        row.push(prg.next_u64());
                    }
                    row.sort_unstable();
                    row.dedup();
                }
            }
        }
    }
}

impl std::str::FromStr for BlockingMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tokens" => Ok(BlockingMode::Tokens),
            "party-cap" => Ok(BlockingMode::PartyCap),
            "padded" => Ok(BlockingMode::Padded),
            "cap-padded" => Ok(BlockingMode::CapPadded),
            "words" => Ok(BlockingMode::Words),
            _ => Err(format!(
                "unknown blocking mode {s:?} (expected tokens, party-cap, padded, cap-padded or words)"
            )),
        }
    }
}

/// The harness's report (one JSON line).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttackReport {
    /// Rows of party A whose entity the full attack guessed exactly.
    pub reidentification_rate: f64,
    /// Share of name characters the full attack recovered.
    pub name_recovery_rate: f64,
    /// The same attack given only row sizes.
    pub baseline_rate: f64,
    /// Name recovery of the baseline.
    pub baseline_name_recovery_rate: f64,
    /// The blocking mode judged.
    pub blocking: BlockingMode,
    /// Gold links of the scored split whose B entity is among A's candidates.
    pub blocking_recall: f64,
    /// Candidates per entity.
    pub candidates: usize,
    /// Auxiliary knowledge.
    pub aux: AuxSetting,
    /// Auxiliary names known to the attacker.
    pub aux_names: usize,
    /// Rows scored (party A rows not in the auxiliary list under `half`).
    pub rows_scored: usize,
    /// Rows of each party in the job.
    pub rows_a: usize,
    /// Rows of party B.
    pub rows_b: usize,
    /// Wall time of the attack (both runs).
    pub attack_seconds: f64,
}

/// Shuffled scope of a party (a Fisher-Yates shuffle from `prg`).
fn shuffled(scope: &[u32], prg: &mut crate::mpc::prg::Prg) -> Vec<u32> {
    let mut rows = scope.to_vec();
    for i in (1..rows.len()).rev() {
        let j = (prg.next_u64() % (i as u64 + 1)) as usize;
        rows.swap(i, j);
    }
    rows
}

/// Harness options.
#[derive(Debug, Clone)]
pub struct HarnessOptions {
    /// Which entities the job aligns.
    pub protocol: crate::eval::evaluate::EvalProtocol,
    /// Auxiliary knowledge.
    pub aux: AuxSetting,
    /// Blocking mode.
    pub blocking: BlockingMode,
    /// Job parameters (blocking and sampling).
    pub params: crate::model::align::JobParams,
    /// Seed of the key, shuffles and the auxiliary half.
    pub seed: u64,
}

/// Plays one curious server on a dataset: builds both parties' uploads as in a job, computes the
/// candidate lists, attacks, and scores against the test links.
pub fn run_harness(
    ds: &crate::model::import::Dataset,
    opts: &HarnessOptions,
) -> Result<AttackReport> {
    use crate::eval::evaluate::{Split, scopes, seeded};
    use crate::model::align::job_seed;
    use crate::model::blocking::{candidates, tokens};
    use crate::model::features::sample_neighbours;
    let (sa, sb) = scopes(ds, opts.protocol, Split::Test);
    if sa.is_empty() || sb.is_empty() {
        return Err(Error::invalid("the dataset has no entities to align"));
    }
    let (key, mut pa, mut pb) = seeded(opts.seed);
    let rows_a = shuffled(&sa, &mut pa);
    let rows_b = shuffled(&sb, &mut pb);
    let m = &opts.params.model;
    let na = sample_neighbours(&ds.a, m.level1_cap, &m.sampling_salt);
    let nb = sample_neighbours(&ds.b, m.level1_cap, &m.sampling_salt);
    let mut ta = tokens(&key, &ds.a.names, &na, &rows_a);
    let mut tb = tokens(&key, &ds.b.names, &nb, &rows_b);
    if opts.blocking == BlockingMode::Words {
        ta.own = crate::model::blocking::word_tokens(&key, &ds.a.names, &rows_a);
        tb.own = crate::model::blocking::word_tokens(&key, &ds.b.names, &rows_b);
    }
    opts.blocking.apply(&mut ta, &mut pa);
    opts.blocking.apply(&mut tb, &mut pb);
    let cand = candidates(&ta, &tb, &opts.params.blocking, &job_seed("attack"));
    let view = View {
        parties: [ta, tb],
        candidates: cand,
    };
    // Gold partner of each A entity.
    let gold: HashMap<u32, u32> = ds.test.iter().chain(&ds.tune).copied().collect();
    // Auxiliary names and their entities.
    let (aux_entities, scored_rows): (Vec<u32>, Vec<usize>) = match opts.aux {
        AuxSetting::Other => (sb.clone(), (0..rows_a.len()).collect()),
        AuxSetting::Same => (sa.clone(), (0..rows_a.len()).collect()),
        AuxSetting::Half => {
            let mut prg = crate::mpc::prg::Prg::new(&crate::mpc::prg::Seed([9; 32]), opts.seed);
            let half: HashSet<u32> = sa
                .iter()
                .copied()
                .filter(|_| prg.next_u64() & 1 == 0)
                .collect();
            let mut known: Vec<u32> = half.iter().copied().collect();
            known.sort_unstable();
            let scored = (0..rows_a.len())
                .filter(|&r| !half.contains(&rows_a[r]))
                .collect();
            (known, scored)
        }
    };
    let aux_names: Vec<String> = aux_entities
        .iter()
        .map(|&e| match opts.aux {
            AuxSetting::Other => ds.b.names[e as usize].clone(),
            _ => ds.a.names[e as usize].clone(),
        })
        .collect();
    let aux_index: HashMap<u32, u32> = aux_entities
        .iter()
        .enumerate()
        .map(|(i, &e)| (e, i as u32))
        .collect();
    let truth: Vec<Truth> = rows_a
        .iter()
        .map(|&e| Truth {
            name: ds.a.names[e as usize].clone(),
            aux: match opts.aux {
                AuxSetting::Other => gold.get(&e).and_then(|b| aux_index.get(b)).copied(),
                _ => aux_index.get(&e).copied(),
            },
        })
        .collect();
    let aux = Aux { names: aux_names };
    let t0 = std::time::Instant::now();
    let full = attack_against(&view, &aux, Strength::Full, opts.blocking);
    let base = attack_against(&view, &aux, Strength::SizesOnly, opts.blocking);
    let secs = t0.elapsed().as_secs_f64();
    let pick = |g: &[Guess]| -> Scores {
        let gs: Vec<&Guess> = scored_rows.iter().map(|&r| &g[r]).collect();
        let ts: Vec<&Truth> = scored_rows.iter().map(|&r| &truth[r]).collect();
        score(&gs, &ts)
    };
    let (sf, sbase) = (pick(&full[0]), pick(&base[0]));
    // Blocking recall over the test links.
    let row_b: HashMap<u32, u32> = rows_b
        .iter()
        .enumerate()
        .map(|(r, &e)| (e, r as u32))
        .collect();
    let c = &view.candidates;
    let (mut found, mut total) = (0usize, 0usize);
    let row_a: HashMap<u32, usize> = rows_a.iter().enumerate().map(|(r, &e)| (e, r)).collect();
    for (a, b) in &ds.test {
        let (Some(&ra), Some(b)) = (row_a.get(a), row_b.get(b)) else {
            continue;
        };
        total += 1;
        found += c.a[ra * c.per_row..(ra + 1) * c.per_row].contains(b) as usize;
    }
    Ok(AttackReport {
        reidentification_rate: sf.reidentification_rate,
        name_recovery_rate: sf.name_recovery_rate,
        baseline_rate: sbase.reidentification_rate,
        baseline_name_recovery_rate: sbase.name_recovery_rate,
        blocking: opts.blocking,
        blocking_recall: found as f64 / total.max(1) as f64,
        candidates: c.per_row,
        aux: opts.aux,
        aux_names: aux.names.len(),
        rows_scored: sf.rows,
        rows_a: rows_a.len(),
        rows_b: rows_b.len(),
        attack_seconds: secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::blocking::{BlockingKey, BlockingParams, candidates, tokens};
    use crate::mpc::prg::{Prg, Seed};

    /// A tiny population: names of one to three words drawn (skewed) from a small vocabulary,
    /// all distinct, like entity names.
    fn population(n: usize, words: usize, seed: u64) -> Vec<String> {
        let syll = [
            "ka", "ro", "mi", "tan", "el", "su", "vor", "li", "ne", "da", "pe", "gu", "or", "zi",
        ];
        let mut prg = Prg::new(&Seed([3; 32]), seed);
        let vocab: Vec<String> = (0..words)
            .map(|_| {
                let k = 2 + (prg.next_u64() % (words as u64 / 100).clamp(2, 3)) as usize;
                (0..k)
                    .map(|_| syll[(prg.next_u64() % syll.len() as u64) as usize])
                    .collect()
            })
            .collect();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        while out.len() < n {
            let k = 1 + (prg.next_u64() % 3) as usize;
            let name: Vec<&str> = (0..k)
                .map(|_| {
                    // Skewed: squares favour early words.
                    let u = (prg.next_u64() % 1000) as f64 / 1000.0;
                    vocab[(u * u * vocab.len() as f64) as usize].as_str()
                })
                .collect();
            let name = name.join(" ");
            if seen.insert(norm(&name)) {
                out.push(name);
            }
        }
        out
    }

    fn shuffle(n: usize, seed: u64) -> Vec<u32> {
        let mut prg = Prg::new(&Seed([4; 32]), seed);
        shuffled(&(0..n as u32).collect::<Vec<_>>(), &mut prg)
    }

    /// Unkeyed tokens: a public hash of each token string (the attack is not told).
    fn unkeyed(names: &[String], rows: &[u32]) -> Tokens {
        Tokens {
            own: rows
                .iter()
                .map(|&e| {
                    let mut t: Vec<u64> = own_token_strings(&names[e as usize])
                        .iter()
                        .map(|s| hash64(&[s.as_bytes()]))
                        .collect();
                    t.sort_unstable();
                    t.dedup();
                    t
                })
                .collect(),
            neighbour: vec![Vec::new(); rows.len()],
        }
    }

    fn view(ta: Tokens, tb: Tokens) -> View {
        let p = BlockingParams {
            candidates: 8,
            ..BlockingParams::default()
        };
        let candidates = candidates(&ta, &tb, &p, &Seed([1; 32]));
        View {
            parties: [ta, tb],
            candidates,
        }
    }

    fn rates(g: &[Guess], names: &[String], rows: &[u32], scored: &[usize]) -> Scores {
        let truth: Vec<Truth> = rows
            .iter()
            .map(|&e| Truth {
                name: names[e as usize].clone(),
                aux: None,
            })
            .collect();
        let gs: Vec<&Guess> = scored.iter().map(|&r| &g[r]).collect();
        let ts: Vec<&Truth> = scored.iter().map(|&r| &truth[r]).collect();
        score(&gs, &ts)
    }

    /// Attacks `v` and scores party A's `scored` rows.
    fn attacked(
        v: &View,
        aux: &Aux,
        st: Strength,
        names: &[String],
        ra: &[u32],
        scored: &[usize],
    ) -> Scores {
        rates(&attack(v, aux, st)[0], names, ra, scored)
    }

    #[test]
    fn signatures_reidentify_the_exact_population_keyed_or_not() {
        let names = population(400, 400, 1);
        let other = population(400, 400, 2);
        let (ra, rb) = (shuffle(400, 1), shuffle(400, 2));
        let none = vec![Vec::new(); 400];
        let key = BlockingKey([8; 32]);
        let keyed = view(
            tokens(&key, &names, &none, &ra),
            tokens(&key, &other, &none, &rb),
        );
        let plain = view(unkeyed(&names, &ra), unkeyed(&other, &rb));
        let aux = Aux {
            names: names.clone(),
        };
        let all: Vec<usize> = (0..400).collect();
        for v in [&keyed, &plain] {
            let full = attacked(v, &aux, Strength::Full, &names, &ra, &all);
            let base = attacked(v, &aux, Strength::SizesOnly, &names, &ra, &all);
            assert!(full.reidentification_rate >= 0.75, "{full:?}");
            assert!(full.name_recovery_rate >= 0.75, "{full:?}");
            assert!(base.reidentification_rate <= 0.15, "{base:?}");
        }
    }

    #[test]
    fn decoding_spells_names_the_attacker_never_saw() {
        // The attacker knows half of party A's names; the other half is scored. Party B holds
        // an unrelated population from the same vocabulary.
        let names = population(600, 80, 5);
        let other = population(600, 80, 6);
        let (ra, rb) = (shuffle(600, 3), shuffle(600, 4));
        let aux = Aux {
            names: names[..300].to_vec(),
        };
        let v = view(unkeyed(&names, &ra), unkeyed(&other, &rb));
        let scored: Vec<usize> = (0..600).filter(|&r| ra[r] >= 300).collect();
        let full = attacked(&v, &aux, Strength::Full, &names, &ra, &scored);
        let base = attacked(&v, &aux, Strength::SizesOnly, &names, &ra, &scored);
        // Every scored name is outside the auxiliary list: only decoding and reconstruction
        // can re-identify it.
        assert_eq!(base.reidentification_rate, 0.0);
        assert!(full.reidentification_rate >= 0.03, "{full:?}");
        assert!(full.name_recovery_rate >= 0.25, "{full:?}");
        assert!(base.name_recovery_rate <= 0.1, "{base:?}");
    }

    #[test]
    fn tokens_without_equality_leave_only_the_baseline() {
        // Fresh random tokens per row (what an ideal blocking would show): the attack can do no
        // better than sizes, so a high rate above can only come from token equality.
        let names = population(300, 400, 7);
        let ra = shuffle(300, 5);
        let mut prg = Prg::new(&Seed([5; 32]), 0);
        let mut t = unkeyed(&names, &ra);
        for row in &mut t.own {
            for x in row.iter_mut() {
                *x = prg.next_u64();
            }
        }
        let v = view(t.clone(), t);
        let aux = Aux {
            names: names.clone(),
        };
        let all: Vec<usize> = (0..300).collect();
        let full = attacked(&v, &aux, Strength::Full, &names, &ra, &all);
        assert!(full.reidentification_rate <= 0.1, "{full:?}");
    }

    #[test]
    fn party_caps_and_padding_do_not_stop_an_attacker_who_knows_them() {
        // Large enough that a 1% cap keeps tokens held by up to 20 rows.
        let n = 2000;
        let names = population(n, 1500, 1);
        let other = population(n, 1500, 2);
        let (ra, rb) = (shuffle(n, 1), shuffle(n, 2));
        let aux = Aux {
            names: names.clone(),
        };
        let all: Vec<usize> = (0..n).collect();
        let mut prg = Prg::new(&Seed([6; 32]), 0);
        for mode in [
            BlockingMode::PartyCap,
            BlockingMode::Padded,
            BlockingMode::CapPadded,
        ] {
            let (mut ta, mut tb) = (unkeyed(&names, &ra), unkeyed(&other, &rb));
            mode.apply(&mut ta, &mut prg);
            mode.apply(&mut tb, &mut prg);
            if mode.pad() > 1 {
                assert!(ta.own.iter().all(|r| r.len() % PAD == 0));
            }
            let v = view(ta, tb);
            let full = attack_against(&v, &aux, Strength::Full, mode);
            let full = rates(&full[0], &names, &ra, &all);
            assert!(full.reidentification_rate >= 0.5, "{mode:?} {full:?}");
        }
    }

    #[test]
    fn word_tokens_are_the_word_part_of_the_uploaded_tokens() {
        let names = population(50, 100, 9);
        let rows: Vec<u32> = (0..50).collect();
        let key = BlockingKey([2; 32]);
        let none = vec![Vec::new(); 50];
        let all = tokens(&key, &names, &none, &rows);
        let ws = crate::model::blocking::word_tokens(&key, &names, &rows);
        for (r, w) in ws.iter().enumerate() {
            let distinct: HashSet<String> = words(&names[r]).into_iter().collect();
            assert_eq!(w.len(), distinct.len());
            assert!(w.iter().all(|t| all.own[r].contains(t)), "row {r}");
        }
    }

    #[test]
    fn reconstruction_spells_from_trigrams_and_checks_counts() {
        let strings = own_token_strings("new york city");
        let refs: Vec<&str> = strings.iter().map(String::as_str).collect();
        let mut distinct = refs.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            reconstruct(&distinct, distinct.len()).as_deref(),
            Some("new york city")
        );
        // A wrong token count refuses the spelling.
        assert_eq!(reconstruct(&distinct, distinct.len() + 1), None);
        // A missing trigram breaks the path.
        let partial: Vec<&str> = distinct.iter().copied().filter(|s| *s != "q:ork").collect();
        assert_eq!(reconstruct(&partial, partial.len()), None);
    }

    #[test]
    fn scores_count_exact_names_entities_and_characters() {
        let g = [
            Guess {
                name: Some("New  York".into()),
                aux: None,
            },
            Guess {
                name: Some("paris texas".into()),
                aux: None,
            },
            Guess {
                name: None,
                aux: Some(7),
            },
            Guess::default(),
        ];
        let t = [
            Truth {
                name: "new york".into(),
                aux: None,
            },
            Truth {
                name: "paris".into(),
                aux: None,
            },
            Truth {
                name: "lyon".into(),
                aux: Some(7),
            },
            Truth {
                name: "nice".into(),
                aux: Some(8),
            },
        ];
        let s = score(&g.iter().collect::<Vec<_>>(), &t.iter().collect::<Vec<_>>());
        assert_eq!(s.reidentification_rate, 0.5);
        // new york (7) + paris (5) + lyon (4) of 7 + 5 + 4 + 4 characters.
        assert!((s.name_recovery_rate - 16.0 / 20.0).abs() < 1e-9);
        assert_eq!(s.rows, 4);
    }
}
