//! How much memory a job needs on a compute server and on the dealer, from its sizes alone.
//!
//! A compute server holds, per uploaded row, the row's `w` shared words several times over
//! (the upload, the masked copies it opens, the other servers' openings, the material's masks)
//! and, per candidate pair, the pair's score, comparison and matching state. Both grow linearly
//! with rows, and the job's two sides add up, so a server can book each upload's part of the
//! job before reading it ([`server_bytes`]) and refuse what would not fit its memory budget
//! (`limits.memory_mib`) before the job starts, instead of being killed half-way.
//!
//! The coefficients are measured, not derived: peak resident memory (Linux `VmHWM`) of the
//! server processes in `scripts/eval.sh` runs over QUIC on generated pairs
//! (`scripts/make-large.sh`) of 3,000 to 100,000 entities per side, default model and
//! `dim = 64`, 2 and 3 servers (docs/benchmarks.md, "Memory and scale"). Less 64 MiB for the
//! process, the cost per row falls from 22 kB at 6,000 rows in all to 10-12 kB from 40,000 to
//! 200,000 (fixed buffers show in small jobs: the bilinear form's passes over mask columns and
//! one comparison batch are bounded, [`crate::mpc::correlated::PASS_WORDS`],
//! [`crate::mpc::engine::COMPARE_BATCH_VALUES`]) and hardly depends on the width (the same at
//! `dim = 64`): the peak is in the state kept per candidate pair, fitted as 170 bytes per
//! candidate pair plus 2 bytes per word of width, per row, plus 64 MiB per side (with
//! explanations, `explain`, 24 bytes more per pair and model block: every pair's per-block
//! products are kept; measured +67-70 bytes per pair at 3 blocks). The bilinear
//! form holds one copy of every row (masked in place; the masks are drawn a pass of columns at
//! a time), 8 bytes per word plus bounded buffers: counted as 12 bytes per word, the larger
//! term only for rows wider than about 900 words. Each server beyond two adds 10-20%
//! (counted as 25%: every server keeps every other server's openings). The estimate counts the
//! job as twice the booked side (the other side's size is not known when an upload arrives)
//! and adds 15%. Beyond 100,000 rows per side it extrapolates, and says so in the server's
//! log. (Earlier fits were larger: candidate generation kept, per row, the buffer of every row
//! it had touched, which grew as `rows^0.31` and was the peak at 50,000 per side, 7.6 GB; the
//! bilinear form worked on a copy of the uploads, summed the openings into a new buffer and
//! held its masks whole; the range checks and the matching products ran as single batches.
//! At 100,000 per side the peak went from 5.7 GB to 3.6 GB, then to 2.1 GB.)
//!
//! The dealer knows less: each server's link states the job's bound on the material of one
//! request (`max_material_words`, from [`JobParams::max_material_words`] over both sides'
//! rows) and the server list, not the rows or the model. Its peak ([`dealer_bytes`]) is fitted
//! on that bound, from the dealer's peak resident memory in the same runs (3,000 to 100,000
//! rows per side, default model, 2 servers; 10,000 per side with `dim = 64` and with 3
//! servers). Since the dealer sums the servers' random draws in place, part by part, instead
//! of holding every server's draw, and computes the bilinear material a pass of mask columns
//! at a time ([`crate::mpc::dealer`]), its peak above the process is at most 0.42 bytes per
//! word of bound (the bound counts every kind of material a job may ask for, 25,900 words per
//! row per side at the default model), from 56 MiB at 3,000 rows per side to 458 MiB at
//! 100,000 (3,475 MiB, then 1,500 MiB before; 641 MiB with explanations, whose per-block `C`
//! is one unbatched request); from 50,000 rows per side it grows slowly, since the largest
//! requests (comparisons, products) come in bounded batches and corrections are made in
//! place. The estimate is the smaller of 0.5 bytes per word and 180 MiB plus 0.15 bytes per
//! word, +35% per server beyond two (measured at most +21%: each server's correlated shares
//! are drawn), +15%, and the dealer books it, beside [`BASE_BYTES`] for the
//! process, when a job's first link arrives, before any material is
//! generated. Beyond [`DEALER_MEASURED_WORDS`] it extrapolates, and says so in the dealer's log.

use crate::model::align::JobParams;

/// Bytes per word of row width per row, on a compute server, beside the pair state (fitted).
const PER_WORD: f64 = 2.0;
/// Bytes per candidate pair, on a compute server (fitted).
const PER_PAIR: f64 = 170.0;
/// Bytes per candidate pair and model block with explanations (`explain`: every pair's
/// per-block products are kept; fitted: +67-70 bytes per pair at 3 blocks).
const PER_PAIR_BLOCK_EXPLAINED: f64 = 24.0;
/// Bytes per side for the bounded buffers (mask passes, one comparison batch; fitted).
const PER_SIDE: f64 = (64 << 20) as f64;
/// Bytes per word of row width per row in the bilinear form: one copy of the row, plus room
/// for the bounded buffers.
const BILINEAR_PER_WORD: f64 = 12.0;
/// Extra cost per server beyond two.
const PER_EXTRA_SERVER: f64 = 0.25;
/// Safety margin over the fit.
const MARGIN: f64 = 1.15;
/// Largest side measured (rows).
pub const MEASURED_ROWS: usize = 300_000;
/// The process itself (runtime, TLS, buffers).
pub const BASE_BYTES: u64 = 64 << 20;

/// Estimated peak memory one side's upload of `rows` rows adds to each compute server of a
/// `servers`-server job (the job's total is the sum of both sides plus [`BASE_BYTES`] for the
/// process); nothing for no rows.
pub fn server_bytes(p: &JobParams, rows: usize, servers: usize) -> u64 {
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
    let per_row =
        (w * PER_WORD + p.blocking.candidates as f64 * per_pair).max(w * BILINEAR_PER_WORD);
    let extra = 1.0 + PER_EXTRA_SERVER * servers.saturating_sub(2) as f64;
    // Saturates at u64::MAX for absurd sizes (f64 to integer casts saturate).
    (MARGIN * (PER_SIDE + rows as f64 * per_row) * extra).ceil() as u64
}

/// Bytes of dealer memory per word of a job's material bound, at two servers, for small jobs.
const DEALER_PER_WORD: f64 = 0.5;
/// For large jobs, whose largest requests come in bounded batches: a fixed part...
const DEALER_FIXED: f64 = 180.0 * (1 << 20) as f64;
/// ... plus this many bytes per word of bound.
const DEALER_PER_WORD_LARGE: f64 = 0.15;
/// Extra dealer cost per server beyond two.
const DEALER_PER_EXTRA_SERVER: f64 = 0.35;
/// Largest material bound measured on the dealer (300,000 rows per side, default model).
pub const DEALER_MEASURED_WORDS: u64 = 7_780_865_536;

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
        // servers and of the runs, with the bilinear masks streamed and comparisons in
        // batches (2026-12-04, docs/benchmarks.md).
        let measured = [
            (&default, 3_000, 2, 195),
            (&default, 10_000, 2, 442),
            (&default, 20_000, 2, 648),
            (&default, 50_000, 2, 1139),
            (&default, 100_000, 2, 2095),
            (&default, 200_000, 2, 4004),
            (&default, 300_000, 2, 5703),
            (&small, 10_000, 2, 377),
            (&small, 50_000, 2, 1240),
            (&default, 10_000, 3, 478),
            (&default, 50_000, 3, 1359),
            (&explained, 50_000, 2, 1647),
            (&explained, 100_000, 2, 2915),
        ];
        for (p, rows, k, server) in measured {
            let s = mib(2 * server_bytes(p, rows, k) + BASE_BYTES);
            assert!(
                s >= server && s < server * 3 / 2 + 100,
                "{rows}: {s} vs {server}"
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
        // (params, rows per side, servers, measured dealer peak MiB), 2026-12-04, with the
        // bilinear material computed a pass of columns at a time, comparisons and products in
        // batches and the corrections made in place. The 3,000-row, `dim = 64` and 3-server
        // rows were measured before the corrections were made in place (higher or equal).
        let measured = [
            (&default, 3_000, 2, 56),
            (&default, 10_000, 2, 115),
            (&default, 20_000, 2, 214),
            (&default, 50_000, 2, 269),
            (&default, 100_000, 2, 458),
            (&default, 200_000, 2, 769),
            (&default, 300_000, 2, 1096),
            (&small, 10_000, 2, 167),
            (&small, 50_000, 2, 347),
            (&default, 10_000, 3, 201),
            (&default, 50_000, 3, 360),
            (&explained, 50_000, 2, 354),
            (&explained, 100_000, 2, 641),
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
            default.max_material_words(300_000, 300_000) as u64
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
    fn the_estimate_grows_with_rows_width_and_servers() {
        let p = JobParams::default();
        assert_eq!(server_bytes(&p, 0, 2), 0);
        // Affine in rows: a fixed part per side, then linear.
        let at = |rows: usize| server_bytes(&p, rows, 2) as f64;
        let (one, hundred, fixed) = (at(1000), at(100_000), MARGIN * PER_SIDE);
        assert!(((hundred - fixed) / (one - fixed) - 100.0).abs() < 1e-3);
        let mut wide = JobParams::default();
        wide.model.dim *= 2;
        assert!(server_bytes(&wide, 1000, 2) > server_bytes(&p, 1000, 2));
        assert!(server_bytes(&p, 1000, 4) > server_bytes(&p, 1000, 3));
        assert_eq!(server_bytes(&p, usize::MAX, 4), u64::MAX);
    }
}
