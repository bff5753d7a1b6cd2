//! How much memory a job needs on a compute server and on the dealer, from its sizes alone.
//!
//! A compute server holds, per uploaded row, at most a bounded slice of the row's `w` shared
//! words (a seed server draws its share from the seed where used; the last server writes its
//! explicit share to disk as it arrives, [`crate::mpc::row_share`], unless it is at most
//! `limits.spill_above_mib`, when it is held: 8 bytes per word) and, per candidate pair, the
//! pair's score, comparison and matching state. Both grow linearly with rows, and the job's two
//! sides add up, so a server can book each upload's part of the job before reading it
//! ([`server_bytes`]) and refuse what would not fit its memory budget (`limits.memory_mib`)
//! before the job starts, instead of being killed half-way.
//!
//! The coefficients are measured, not derived: peak resident memory (Linux `VmHWM`) of the
//! server processes in `scripts/eval.sh` runs over QUIC on generated pairs
//! (`scripts/make-large.sh`) of 3,000 to 200,000 entities per side, default model, `dim = 64`,
//! explanations, 2 and 3 servers (docs/benchmarks.md, "Memory and scale"), with the processes'
//! freed memory returned to the system ([`crate::net::heap`]). The bilinear form holds one
//! group of columns of the openings at a time (at most 2^24 words, and its kernel passes as
//! much again), and comparisons and products run in bounded batches: those buffers are counted
//! as 72 MiB per side; beyond 131,072 rows per side a group is 64 columns of every row, which
//! grows with the rows and is counted apart (24 bytes per word of a group, beyond 2^24 words). Beyond them the peak is in the state kept per candidate pair (scores,
//! one-hot markers, the products of the matching step), fitted as 52 bytes per candidate pair
//! plus 1 byte per word of width, per row (with explanations, `explain`, 24 bytes more per
//! pair and model block: every pair's per-block products are kept). Each server beyond two
//! adds 25% (every server keeps every other server's openings of a group). The estimate counts
//! the job as twice the booked side (the other side's size is not known when an upload
//! arrives) and adds 15%. Beyond [`MEASURED_ROWS`] per side it extrapolates, and says so in
//! the server's log. (Earlier fits were larger, 170 bytes per pair and 12 bytes per word: the
//! uploads were held, and opened whole in the bilinear form; the matching step's products were
//! kept to the end of the job; glibc kept freed blocks resident. At 100,000 per side the
//! measured peak went from 5.7 GB to 3.6, 2.1, then 0.92 GB.)
//!
//! The dealer knows less: each server's link states the job's bound on the material of one
//! request (`max_material_words`, from [`JobParams::max_material_words`] over both sides'
//! rows) and the server list, not the rows or the model. Its peak ([`dealer_bytes`]) is fitted
//! on that bound, from the dealer's peak resident memory in the same runs (3,000 to 200,000
//! rows per side; `dim = 64`, explanations, 3 servers). Since the dealer sums the servers'
//! random draws in place, part by part, computes the bilinear material a pass of mask columns
//! at a time ([`crate::mpc::dealer`]), the largest requests (comparisons, products) come in
//! bounded batches and freed memory goes back to the system, its peak grows slowly with the
//! bound (the bound counts every kind of material a job may ask for, 25,900 words per row per
//! side at the default model): 36 MiB at 3,000 rows per side, 434 MiB at 100,000, 730 MiB at
//! 200,000, 629 MiB with explanations at 100,000 (whose per-block `C` is one unbatched
//! request). The estimate is the smaller of 0.5 bytes per word and 40 MiB plus 0.18 bytes per
//! word, +35% per server beyond two, +15%, and the dealer books it, beside [`BASE_BYTES`] for
//! the process, when a job's first link arrives, before any material is generated. Beyond
//! [`DEALER_MEASURED_WORDS`] it extrapolates, and says so in the dealer's log.

use crate::model::align::JobParams;

/// Bytes per word of row width per row, on a compute server, beside the pair state (fitted).
const PER_WORD: f64 = 1.0;
/// Bytes per word of a share held in memory (not spilled).
const HELD_PER_WORD: f64 = 8.0;
/// Bytes per candidate pair, on a compute server (fitted).
const PER_PAIR: f64 = 52.0;
/// Bytes per candidate pair and model block with explanations (`explain`: every pair's
/// per-block products are kept).
const PER_PAIR_BLOCK_EXPLAINED: f64 = 24.0;
/// Bytes per side for the bounded buffers (a group of the bilinear form's openings and its
/// kernel passes, one comparison or product batch).
const PER_SIDE: f64 = (72 << 20) as f64;
/// Extra cost per server beyond two.
const PER_EXTRA_SERVER: f64 = 0.25;
/// Safety margin over the fit.
const MARGIN: f64 = 1.15;
/// Largest side measured (rows).
pub const MEASURED_ROWS: usize = 200_000;
/// The process itself (runtime, TLS, buffers).
pub const BASE_BYTES: u64 = 64 << 20;

/// Estimated peak memory one side's upload of `rows` rows adds to a compute server of a
/// `servers`-server job (the job's total is the sum of both sides plus [`BASE_BYTES`] for the
/// process); `held`: the server keeps this upload's share in memory (the last server, for a
/// share below its spill threshold). Nothing for no rows.
pub fn server_bytes(p: &JobParams, rows: usize, servers: usize, held: bool) -> u64 {
    worker_bytes(p, rows, servers, held, 1)
}

/// Tokens per row (own and neighbour lists together) that the fit covers: twice the measured
/// average (DBpedia names and their neighbours: about 30 per row).
pub const TYPICAL_TOKENS_PER_ROW: u64 = 64;
/// Bytes a token costs a server while an upload is held and its candidates built, when every
/// token is distinct (tokens are opaque words: a party can make them so): the received word,
/// its row's copy and the upload digest's (24), and the blocking's tables per distinct token
/// (document frequency, weight, postings list), measured at 93 bytes per token (1,000 rows a
/// side of 4,096 own and 4,096 neighbour tokens each, all distinct: peak resident memory of
/// `blocking::candidates`, 2026-12-05); rounded up.
const BYTES_PER_TOKEN: u64 = 128;

/// Memory an upload's `tokens` (own and neighbour lists of `rows` rows together) add to a
/// compute server beyond the fit ([`worker_bytes`]), which covers
/// [`TYPICAL_TOKENS_PER_ROW`]: a party may send up to 4,096 of each per row, 128 times that,
/// and books what it announces.
pub fn token_bytes(rows: u64, tokens: u64) -> u64 {
    tokens
        .saturating_sub(rows.saturating_mul(TYPICAL_TOKENS_PER_ROW))
        .saturating_mul(BYTES_PER_TOKEN)
}

/// Bytes per candidate pair that every worker of a server split into workers holds whatever
/// their number ([`crate::model::shard`]): both sides' candidate lists, the list of all pairs
/// and every pair's partial product of the bilinear form.
const WORKER_SHARED_PER_PAIR: f64 = 20.0;

/// [`server_bytes`] for one of `workers` worker processes of the server: the state per
/// candidate pair is the worker's share of the pairs, but for `WORKER_SHARED_PER_PAIR`
/// bytes of every pair; the rows' part (the bilinear form's groups, over every row) stays.
/// Measured with 2 workers: 762-794 MiB per worker against 868 MiB for one process at 100,000
/// rows per side, 1,248-1,285 against 1,476 MiB at 200,000 (benchmarks).
pub fn worker_bytes(p: &JobParams, rows: usize, servers: usize, held: bool, workers: usize) -> u64 {
    if rows == 0 {
        return 0;
    }
    // The audit's group indicators travel and are checked like the row's other words.
    let w = (p.model.width() + p.audit.in_width()) as f64;
    let per_pair = PER_PAIR
        + if p.explain {
            PER_PAIR_BLOCK_EXPLAINED * p.model.blocks().len() as f64
        } else {
            0.0
        };
    let per_word = PER_WORD + if held { HELD_PER_WORD } else { 0.0 };
    let workers = workers.max(1) as f64;
    let per_pair = WORKER_SHARED_PER_PAIR + (per_pair - WORKER_SHARED_PER_PAIR) / workers;
    let per_row = w * per_word + p.blocking.candidates as f64 * per_pair;
    let extra = 1.0 + PER_EXTRA_SERVER * servers.saturating_sub(2) as f64;
    // Saturates at u64::MAX for absurd sizes (f64 to integer casts saturate).
    let fit = (MARGIN * (PER_SIDE + rows as f64 * per_row + wide_group_bytes(rows)) * extra).ceil();
    // Each worker's bilinear form covers its share of the columns.
    let he = he_bytes(p, servers, rows, workers as usize);
    let ot = ot_bytes(p.correlation, servers) + he;
    (fit + MARGIN * ot) as u64
}

/// The ring-LWE products of a dealer-free job's bilinear form: what an evaluator holds per peer
/// ([`crate::mpc::ot::bilinear::job_cost`], for `rows` split evenly, the
/// largest of the `workers`' requests), for each of its peers (`servers - 1`), plus the
/// ciphertexts of its own shares (the same size again). Zero for other correlations.
fn he_bytes(p: &JobParams, servers: usize, rows: usize, workers: usize) -> f64 {
    if p.correlation != crate::mpc::source::Correlation::Ot {
        return 0.0;
    }
    let bounds = crate::model::upload_check::UploadBounds::new(p);
    // A job no packing fits is refused by the job check; book nothing for it here.
    (0..workers.max(1))
        .map(|wk| {
            let (cols, pieces) = crate::model::align::worker_columns(&bounds, workers.max(1), wk);
            let spans: Vec<usize> = pieces.iter().map(|&(_, l)| l).collect();
            let (na, nb) = (rows.div_ceil(2), rows / 2);
            crate::mpc::ot::bilinear::job_cost(
                servers,
                na,
                nb,
                cols.len(),
                &spans,
                p.explain,
                crate::model::blocking::per_row(na, nb, &p.blocking),
            )
            .map_or(0.0, |cost| servers.max(2) as f64 * cost.held_bytes as f64)
        })
        .fold(0.0, f64::max)
}

/// What a dealer-free (`ot`) job holds beyond a dealer job: on each of its `2 (k - 1)` links
/// (one per peer and direction) a pool of silent OTs between rounds (twice the largest chunk),
/// an iteration's outputs and the next base, 16 bytes each (55 MiB with the production
/// parameters); and the random bits' conversion, a pass of [`OT_PASS_BYTES`]. Measured on the
/// tiny generated job (2026-12-06): 124, 230 and 337 MiB above the dealer job's 10 MiB at
/// k = 2, 3, 4.
fn ot_bytes(c: crate::mpc::source::Correlation, servers: usize) -> f64 {
    use crate::mpc::ot::{cross::DEFAULT_CHUNK, silent::PARAMS};
    if c != crate::mpc::source::Correlation::Ot {
        return 0.0;
    }
    let link = 16 * (2 * 64 * DEFAULT_CHUNK + PARAMS.n() + PARAMS.base());
    (2 * servers.saturating_sub(1) * link) as f64 + OT_PASS_BYTES
}

/// A pass of the random bits' conversion over OT: a few arrays of 2^21 64-bit shares and a
/// chunk's OT rows and hashes.
const OT_PASS_BYTES: f64 = (128u64 << 20) as f64;

/// One side's part of the bilinear form's group buffers beyond the fixed part in
/// [`PER_SIDE`]: past 2^24 / 64 rows in all, a group is 64 columns of every row
/// ([`crate::mpc::beaver::group_columns`]), held three times while its kernel pass is built
/// (the openings, then the pass's two sides of twice the columns), counted for a job of two
/// sides of `rows` rows, half each.
fn wide_group_bytes(rows: usize) -> f64 {
    let group = 2.0 * rows as f64 * crate::mpc::correlated::MIN_PASS_COLUMNS as f64;
    let beyond = (group - crate::mpc::beaver::BILINEAR_CHUNK_WORDS as f64).max(0.0);
    3.0 * 8.0 * beyond / 2.0
}

/// Bytes of dealer memory per word of a job's material bound, at two servers, for small jobs.
const DEALER_PER_WORD: f64 = 0.5;
/// For large jobs, whose largest requests come in bounded batches: a fixed part...
const DEALER_FIXED: f64 = 40.0 * (1 << 20) as f64;
/// ... plus this many bytes per word of bound.
const DEALER_PER_WORD_LARGE: f64 = 0.18;
/// Extra dealer cost per server beyond two.
const DEALER_PER_EXTRA_SERVER: f64 = 0.35;
/// Largest material bound measured on the dealer (200,000 rows per side, default model).
pub const DEALER_MEASURED_WORDS: u64 = 5_187_265_536;

/// Estimated peak memory a job adds to the dealer, from its material bound
/// (`max_material_words`, as the servers' links state it) and its number of servers (the
/// process itself, [`BASE_BYTES`], comes on top).
pub fn dealer_bytes(max_material_words: u64, servers: usize) -> u64 {
    let extra = 1.0 + DEALER_PER_EXTRA_SERVER * servers.saturating_sub(2) as f64;
    // Saturates at u64::MAX for absurd bounds (f64 to integer casts saturate).
    let words = max_material_words as f64;
    let fit = (words * DEALER_PER_WORD).min(DEALER_FIXED + words * DEALER_PER_WORD_LARGE);
    (MARGIN * fit * extra).ceil() as u64
}

/// Bytes as MiB, rounded up, for messages.
pub fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The estimate covers the measured peaks (docs/benchmarks.md) without exceeding them by
    /// more than half again (plus 100 MiB for the smallest jobs).
    #[test]
    fn the_estimate_covers_the_measured_peaks() {
        let default = JobParams::default();
        let mut small = JobParams::default();
        small.model.dim = 64;
        let explained = JobParams {
            explain: true,
            ..JobParams::default()
        };
        // (params, rows per side, servers, measured server peak MiB), the largest of the
        // servers, with uploads spilled by the last server above 64 MiB (held below: the
        // 3,000 and 10,000-row jobs), the matching step's products freed and freed memory
        // returned to the system (2026-12-05, docs/benchmarks.md, "Uploads kept without
        // holding them").
        let measured = [
            (&default, 3_000, 2, 146),
            (&default, 10_000, 2, 385),
            (&default, 20_000, 2, 379),
            (&default, 50_000, 2, 616),
            (&default, 100_000, 2, 923),
            (&default, 200_000, 2, 1513),
            (&small, 10_000, 2, 265),
            (&small, 50_000, 2, 623),
            (&default, 10_000, 3, 495),
            (&default, 50_000, 3, 663),
            (&explained, 50_000, 2, 925),
            (&explained, 100_000, 2, 1604),
        ];
        for (p, rows, k, server) in measured {
            let held = rows * p.model.width() * 8 <= 64 << 20;
            let s = mib(2 * server_bytes(p, rows, k, held) + BASE_BYTES);
            assert!(
                s >= server && s < server * 3 / 2 + 100,
                "{rows}, {k} servers: {s} vs {server}"
            );
        }
    }

    /// The dealer's estimate, from the material bound the servers state, covers the dealer's
    /// measured peaks (the same runs) without exceeding them by more than half again (plus
    /// 100 MiB for the smallest jobs).
    #[test]
    fn the_dealer_estimate_covers_the_measured_peaks() {
        let default = JobParams::default();
        let mut small = JobParams::default();
        small.model.dim = 64;
        let explained = JobParams {
            explain: true,
            ..JobParams::default()
        };
        // (params, rows per side, servers, measured dealer peak MiB), 2026-12-05, the runs of
        // the server table, with freed memory returned to the system (`net::heap`).
        let measured = [
            (&default, 3_000, 2, 36),
            (&default, 10_000, 2, 96),
            (&default, 20_000, 2, 119),
            (&default, 50_000, 2, 257),
            (&default, 100_000, 2, 434),
            (&default, 200_000, 2, 730),
            (&small, 10_000, 2, 95),
            (&small, 50_000, 2, 256),
            (&default, 10_000, 3, 96),
            (&default, 50_000, 3, 255),
            (&explained, 50_000, 2, 353),
            (&explained, 100_000, 2, 629),
        ];
        for (p, rows, k, dealer) in measured {
            let words = p.max_material_words(rows, rows) as u64;
            assert!(words <= DEALER_MEASURED_WORDS);
            let d = mib(dealer_bytes(words, k) + BASE_BYTES);
            assert!(
                d >= dealer && d < dealer * 3 / 2 + 100,
                "{rows}, width {}, {k} servers: {d} vs {dealer}",
                p.model.width()
            );
        }
        assert_eq!(
            DEALER_MEASURED_WORDS,
            default.max_material_words(200_000, 200_000) as u64
        );
    }

    #[test]
    fn the_dealer_estimate_grows_with_the_bound_and_servers() {
        assert_eq!(dealer_bytes(0, 2), 0);
        assert!(dealer_bytes(2_000, 2) > dealer_bytes(1_000, 2));
        assert!(dealer_bytes(1_000_000, 3) > dealer_bytes(1_000_000, 2));
        assert!(dealer_bytes(1_000_000, 4) > dealer_bytes(1_000_000, 3));
        // Absurd bounds give absurd estimates, without overflow.
        assert!(dealer_bytes(u64::MAX, 4) > u64::MAX / 8);
    }

    #[test]
    fn dealer_free_jobs_book_their_ot_pools() {
        use crate::mpc::source::Correlation;
        let mut p = JobParams::default();
        let dealer = server_bytes(&p, 1000, 2, false);
        p.correlation = Correlation::Ot;
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        // At least the measured extra of the tiny job (124, 230, 337 MiB at k = 2, 3, 4), and
        // no more than that and the ring-LWE products' bound (every peer's ciphertexts held).
        // (400 rows: a size every k accepts.)
        let rows = 400;
        for (k, measured) in [(2, 124.0), (3, 230.0), (4, 337.0)] {
            p.correlation = Correlation::Dealer;
            let dealer_k = server_bytes(&p, rows, k, false);
            p.correlation = Correlation::Ot;
            let extra = mib(server_bytes(&p, rows, k, false) - dealer_k);
            let he = mib(he_bytes(&p, k, rows, 1) as u64);
            assert!(he > 0.0 && extra >= measured + he, "k {k}: {extra}");
            assert!(
                extra <= MARGIN * (1.5 * measured + 150.0 + he),
                "k {k}: {extra}"
            );
        }
        // The shipped sample with the default model, dealer-free over QUIC (2026-12-06, results
        // evaluated in batches): 468 MiB at most per server.
        let sample = mib(server_bytes(&p, 622, 2, false));
        assert!(sample >= 468.0, "{sample}");
        // A generated pair of 3,000 entities per side, open protocol, the largest size measured
        // (2026-12-06): 2,200 MiB at most per server.
        let large = mib(server_bytes(&p, 6_000, 2, false));
        assert!(large >= 2_200.0, "{large}");
        p.correlation = Correlation::Replicated;
        assert_eq!(server_bytes(&p, rows, 3, false), {
            p.correlation = Correlation::Dealer;
            server_bytes(&p, rows, 3, false)
        });
        assert!(dealer > 0);
    }

    #[test]
    fn the_estimate_grows_with_rows_width_and_servers() {
        let p = JobParams::default();
        assert_eq!(server_bytes(&p, 0, 2, false), 0);
        // Affine in rows: a fixed part per side, then linear.
        let at = |rows: usize| server_bytes(&p, rows, 2, false) as f64;
        let (one, hundred, fixed) = (at(1000), at(100_000), MARGIN * PER_SIDE);
        assert!(((hundred - fixed) / (one - fixed) - 100.0).abs() < 1e-3);
        let mut wide = JobParams::default();
        wide.model.dim *= 2;
        assert!(server_bytes(&wide, 1000, 2, false) > server_bytes(&p, 1000, 2, false));
        assert!(server_bytes(&p, 1000, 2, true) > server_bytes(&p, 1000, 2, false));
        assert!(server_bytes(&p, 1000, 4, false) > server_bytes(&p, 1000, 3, false));
        assert_eq!(server_bytes(&p, usize::MAX, 4, true), u64::MAX);
        // A worker of a split server books less, but never below the pairs every worker holds.
        let (one, two, many) = (
            worker_bytes(&p, 100_000, 2, false, 1),
            worker_bytes(&p, 100_000, 2, false, 2),
            worker_bytes(&p, 100_000, 2, false, 64),
        );
        assert_eq!(one, server_bytes(&p, 100_000, 2, false));
        assert!(two < one && many < two, "{one} {two} {many}");
        let shared = 100_000.0 * p.blocking.candidates as f64 * WORKER_SHARED_PER_PAIR;
        assert!(many as f64 > shared, "{many} {shared}");
    }
}
