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
//! process, the cost per row is flat from 20,000 to 200,000 rows in all (18.6-19.4 kB at the
//! default width) and hardly depends on the width (16.9 kB at `dim = 64`): the peak is in the
//! comparisons over candidate pairs, fitted as 10 bytes per word of width plus 265 bytes per
//! candidate pair, per row, which also covers the smallest job (26 kB per row at 6,000 rows in
//! all, where fixed buffers show). The bilinear form holds three copies of every row at its
//! peak (the masks, this server's masked copy, another server's), 24 bytes per word: for wide
//! rows (known links, audit words) that phase is the larger, so the estimate takes the larger
//! of the two. Each server beyond two adds about 45% (every server keeps every other server's
//! openings). The estimate counts the job as twice the booked side (the other side's size is
//! not known when an upload arrives) and adds 15%. Beyond 100,000 rows per side it
//! extrapolates, and says so in the server's log. (Earlier fits were larger: candidate
//! generation kept, per row, the buffer of every row it had touched, which grew as
//! `rows^0.31` and was the peak at 50,000 per side, 7.6 GB; the bilinear form worked on a
//! copy of the uploads and summed the openings into a new buffer. At 100,000 per side the peak
//! went from 5.7 GB to 3.6 GB.)
//!
//! The dealer knows less: each server's link states the job's bound on the material of one
//! request (`max_material_words`, from [`JobParams::max_material_words`] over both sides'
//! rows) and the server list, not the rows or the model. Its peak ([`dealer_bytes`]) is fitted
//! on that bound, from the dealer's peak resident memory in the same runs (3,000 to 100,000
//! rows per side, default model, 2 servers; 10,000 per side with `dim = 64` and with 3
//! servers). Since the dealer sums the servers' random draws in place, part by part, instead
//! of holding every server's draw ([`crate::mpc::dealer`]), its peak above the process is
//! 0.38-0.63 bytes per word of bound (the bound counts every kind of material a job may ask
//! for, 25,900 words per row per side at the default model), from 73 MiB at 3,000 rows per
//! side to 1,500 MiB at 100,000 (3,475 MiB before); a narrow model (`dim = 64`) is at the top
//! of that range, since its peak comes from other requests than the bilinear form's. The
//! estimate is 0.58 bytes per word, +40% per server beyond two (measured +37%: each server's
//! correlated shares are drawn), +15%, and the dealer books it, beside [`BASE_BYTES`] for the
//! process, when a job's first link arrives, before any material is
//! generated. Beyond [`DEALER_MEASURED_WORDS`] it extrapolates, and says so in the dealer's log.

use crate::model::align::JobParams;

/// Bytes per word of row width per row, on a compute server, in the comparisons (fitted).
const PER_WORD: f64 = 10.0;
/// Bytes per candidate pair, on a compute server, in the comparisons (fitted).
const PER_PAIR: f64 = 265.0;
/// Bytes per word of row width per row in the bilinear form: three copies of the row.
const BILINEAR_PER_WORD: f64 = 24.0;
/// Extra cost per server beyond two.
const PER_EXTRA_SERVER: f64 = 0.45;
/// Safety margin over the fit.
const MARGIN: f64 = 1.15;
/// Largest side measured (rows).
pub const MEASURED_ROWS: usize = 100_000;
/// The process itself (runtime, TLS, buffers).
pub const BASE_BYTES: u64 = 64 << 20;

/// Estimated peak memory one side's upload of `rows` rows adds to each compute server of a
/// `servers`-server job (the job's total is the sum of both sides plus [`BASE_BYTES`] for the
/// process).
pub fn server_bytes(p: &JobParams, rows: usize, servers: usize) -> u64 {
    // The audit's group indicators travel and are checked like the row's other words.
    let w = (p.model.width() + p.audit.in_width()) as f64;
    let per_row =
        (w * PER_WORD + p.blocking.candidates as f64 * PER_PAIR).max(w * BILINEAR_PER_WORD);
    let extra = 1.0 + PER_EXTRA_SERVER * servers.saturating_sub(2) as f64;
    // Saturates at u64::MAX for absurd sizes (f64 to integer casts saturate).
    (MARGIN * rows as f64 * per_row * extra).ceil() as u64
}

/// Bytes of dealer memory per word of a job's material bound, at two servers.
const DEALER_PER_WORD: f64 = 0.58;
/// Extra dealer cost per server beyond two.
const DEALER_PER_EXTRA_SERVER: f64 = 0.4;
/// Largest material bound measured on the dealer (100,000 rows per side, default model).
pub const DEALER_MEASURED_WORDS: u64 = 2_593_665_536;

/// Estimated peak memory a job adds to the dealer, from its material bound
/// (`max_material_words`, as the servers' links state it) and its number of servers (the
/// process itself, [`BASE_BYTES`], comes on top).
pub fn dealer_bytes(max_material_words: u64, servers: usize) -> u64 {
    let extra = 1.0 + DEALER_PER_EXTRA_SERVER * servers.saturating_sub(2) as f64;
    // Saturates at u64::MAX for absurd bounds (f64 to integer casts saturate).
    (MARGIN * max_material_words as f64 * DEALER_PER_WORD * extra).ceil() as u64
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
        // (params, rows per side, servers, measured server peak MiB), the largest of the
        // servers, after candidate generation stopped keeping touched rows' buffers and the
        // bilinear form stopped copying the uploads (2026-12-04, docs/benchmarks.md).
        let measured = [
            (&default, 3_000, 2, 213),
            (&default, 10_000, 2, 419),
            (&default, 20_000, 2, 803),
            (&default, 50_000, 2, 1862),
            (&default, 100_000, 2, 3616),
            (&small, 10_000, 2, 387),
            (&default, 10_000, 3, 579),
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
        // (params, rows per side, servers, measured dealer peak MiB), 2026-12-04, after the
        // dealer stopped holding every server's draws.
        let measured = [
            (&default, 3_000, 2, 73),
            (&default, 10_000, 2, 158),
            (&default, 20_000, 2, 306),
            (&default, 50_000, 2, 752),
            (&default, 100_000, 2, 1500),
            (&small, 10_000, 2, 215),
            (&default, 10_000, 3, 193),
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
            default.max_material_words(100_000, 100_000) as u64
        );
    }

    #[test]
    fn the_dealer_estimate_grows_with_the_bound_and_servers() {
        assert_eq!(dealer_bytes(0, 2), 0);
        assert!(dealer_bytes(2_000, 2) > dealer_bytes(1_000, 2));
        assert!(dealer_bytes(1_000_000, 3) > dealer_bytes(1_000_000, 2));
        assert!(dealer_bytes(1_000_000, 4) > dealer_bytes(1_000_000, 3));
        assert_eq!(dealer_bytes(u64::MAX, 4), u64::MAX);
    }

    #[test]
    fn the_estimate_grows_with_rows_width_and_servers() {
        let p = JobParams::default();
        assert_eq!(server_bytes(&p, 0, 2), 0);
        // Linear in rows.
        let one = server_bytes(&p, 1000, 2) as f64;
        let hundred = server_bytes(&p, 100_000, 2) as f64;
        assert!((hundred / one - 100.0).abs() < 1e-3);
        let mut wide = JobParams::default();
        wide.model.dim *= 2;
        assert!(server_bytes(&wide, 1000, 2) > server_bytes(&p, 1000, 2));
        assert!(server_bytes(&p, 1000, 4) > server_bytes(&p, 1000, 3));
        assert_eq!(server_bytes(&p, usize::MAX, 4), u64::MAX);
    }
}
