//! An evaluation job's plaintext pair scores, written for offline study of the ranking step
//! (`party eval --dump-scores FILE`; `scripts/normalisation.py` reads it).
//!
//! Evaluation only: the file holds what the plaintext reference computes from both parties'
//! rows (every candidate pair's score `S(a, b) = <z_a, z_b>` at product scale, the candidate
//! lists and the gold links as rows), so it is written by the in-process harness, which holds
//! both parties' data anyway, and never by a deployed party or server.
//!
//! Layout, all little-endian: `na`, `nb`, `k` (u64 each); A's candidate lists (`na k` u32,
//! row-major: the rows of B that row `a` lists) and B's (`nb k` u32: rows of A); the scores of
//! A's slots (`na k` i64) and of B's slots (`nb k` i64); the number of gold links judged (u64)
//! and each as its two rows (u32 each). Scores are integers at `2^(2 frac_bits)` (the job's
//! product scale).

use crate::error::{Error, Result};
use crate::model::align::PartyData;
use crate::model::blocking::Candidates;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// Writes the dump of `cand`'s scores between `pa`'s and `pb`'s rows (each `width` numbers),
/// with the `gold` links (entity ids) that both sides hold as rows. Written to a temporary
/// file next to `path` and renamed, so a failure leaves no partial file.
pub fn write(
    path: &Path,
    pa: &PartyData,
    pb: &PartyData,
    width: usize,
    cand: &Candidates,
    gold: &[(u32, u32)],
) -> Result<()> {
    let k = cand.per_row;
    let (na, nb) = (pa.z.len() / width, pb.z.len() / width);
    if cand.a.len() != na * k || cand.b.len() != nb * k {
        return Err(Error::invalid(
            "score dump: the candidate lists do not match the rows",
        ));
    }
    let dot = |a: usize, b: usize| {
        let (x, y) = (
            &pa.z[a * width..(a + 1) * width],
            &pb.z[b * width..(b + 1) * width],
        );
        crate::mpc::ring::dot(x, y) as i64
    };
    let row_a: HashMap<u32, u32> = pa
        .rows
        .iter()
        .enumerate()
        .map(|(r, &e)| (e, r as u32))
        .collect();
    let row_b: HashMap<u32, u32> = pb
        .rows
        .iter()
        .enumerate()
        .map(|(r, &e)| (e, r as u32))
        .collect();
    let judged: Vec<(u32, u32)> = gold
        .iter()
        .filter_map(|(a, b)| Some((*row_a.get(a)?, *row_b.get(b)?)))
        .collect();
    let mut out = Vec::with_capacity(24 + 12 * (na + nb) * k + 8 + 8 * judged.len());
    for v in [na, nb, k] {
        out.extend((v as u64).to_le_bytes());
    }
    for &c in cand.a.iter().chain(&cand.b) {
        out.extend(c.to_le_bytes());
    }
    for q in 0..na * k {
        out.extend(dot(q / k, cand.a[q] as usize).to_le_bytes());
    }
    for m in 0..nb * k {
        out.extend(dot(cand.b[m] as usize, m / k).to_le_bytes());
    }
    out.extend((judged.len() as u64).to_le_bytes());
    for (a, b) in judged {
        out.extend(a.to_le_bytes());
        out.extend(b.to_le_bytes());
    }
    let io = |e: std::io::Error| Error::invalid(format!("{}: {e}", path.display()));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(&out).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}
