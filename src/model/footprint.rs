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
//! server and dealer processes in `scripts/eval.sh` runs over QUIC on generated pairs
//! (`scripts/make-large.sh`) of 3,000, 10,000 and 20,000 entities per side, default model and
//! `dim = 64` (docs/benchmarks.md, "Memory"). Per row they were about 62.5 bytes per word of
//! width plus 187 bytes per candidate pair on a server, and 10 bytes per word plus 178 bytes per
//! pair on the dealer; the largest job needed up to 21% more than this linear fit (the cost per row
//! grows slowly with size), so the estimate adds 30% and a fixed 64 MiB for the process itself.
//! Jobs well beyond 20,000 rows per side should be measured again.

use crate::model::align::JobParams;

/// Bytes per word of row width per row, on a compute server.
const SERVER_PER_WORD: f64 = 62.5;
/// Bytes per candidate pair, on a compute server.
const SERVER_PER_PAIR: f64 = 187.0;
/// Bytes per word of row width per row, on the dealer.
const DEALER_PER_WORD: f64 = 10.0;
/// Bytes per candidate pair, on the dealer.
const DEALER_PER_PAIR: f64 = 178.0;
/// Safety margin over the linear fit.
const MARGIN: f64 = 1.3;
/// The process itself (runtime, TLS, buffers).
pub const BASE_BYTES: u64 = 64 << 20;

fn linear(p: &JobParams, rows: usize, per_word: f64, per_pair: f64) -> u64 {
    let w = p.model.width() as f64;
    // Every row brings `candidates` pairs of its own direction.
    let pairs = p.blocking.candidates as f64;
    (MARGIN * rows as f64 * (w * per_word + pairs * per_pair)).ceil() as u64
}

/// Estimated peak memory one side's upload of `rows` rows adds to a compute server (the job's
/// total is the sum of both sides plus [`BASE_BYTES`] for the process).
pub fn server_bytes(p: &JobParams, rows: usize) -> u64 {
    linear(p, rows, SERVER_PER_WORD, SERVER_PER_PAIR)
}

/// Estimated peak memory of the dealer for a job of `rows_a` and `rows_b` rows.
pub fn dealer_bytes(p: &JobParams, rows_a: usize, rows_b: usize) -> u64 {
    linear(p, rows_a + rows_b, DEALER_PER_WORD, DEALER_PER_PAIR) + BASE_BYTES
}

/// Bytes as MiB, rounded up, for messages.
pub fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The estimate covers the measured peaks (docs/benchmarks.md) without exceeding them by
    /// more than half (plus 100 MiB for the smallest jobs).
    #[test]
    fn the_estimate_covers_the_measured_peaks() {
        let default = JobParams::default();
        let mut small = JobParams::default();
        small.model.dim = 64;
        // (params, rows per side, measured server peak MiB, measured dealer peak MiB)
        let measured = [
            (&default, 3_000, 294, 113),
            (&default, 10_000, 1076, 356),
            (&default, 20_000, 2566, 703),
            (&small, 10_000, 603, 280),
        ];
        for (p, rows, server, dealer) in measured {
            let s = mib(2 * server_bytes(p, rows) + BASE_BYTES);
            let d = mib(dealer_bytes(p, rows, rows));
            assert!(
                s >= server && s < server * 3 / 2 + 100,
                "{rows}: {s} vs {server}"
            );
            assert!(
                d >= dealer && d < dealer * 3 / 2 + 100,
                "{rows}: {d} vs {dealer}"
            );
        }
    }

    #[test]
    fn the_estimate_is_linear_in_rows_and_width() {
        let p = JobParams::default();
        assert_eq!(server_bytes(&p, 0), 0);
        let one = server_bytes(&p, 1000) as f64;
        let ten = server_bytes(&p, 10_000) as f64;
        assert!((ten / one - 10.0).abs() < 1e-3);
        let mut wide = JobParams::default();
        wide.model.dim *= 2;
        assert!(server_bytes(&wide, 1000) > server_bytes(&p, 1000));
    }
}
