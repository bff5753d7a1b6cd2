//! An evaluation job's plaintext pair scores, written for offline study of the ranking step
//! (`party eval --dump-scores FILE`; `scripts/normalisation.py` reads it).
//!
//! Evaluation only: the file holds what the plaintext reference computes from both parties'
//! rows (every candidate pair's score `S(a, b) = <z_a, z_b>` at product scale, the candidate
//! lists and the gold links as rows), so it is written by the in-process harness, which holds
//! both parties' data anyway, and never by a deployed party or server.
//!
//! Layout, all little-endian: `na`, `nb`, `k` and `frac_bits` (u64 each); A's candidate lists
//! (`na k` u32, row-major: the rows of B that row `a` lists) and B's (`nb k` u32: rows of A);
//! the scores of A's slots (`na k` i64) and of B's slots (`nb k` i64,
//! [`crate::model::align::pair_scores`]); the number of gold links judged (u64)
//! and each as its two rows (u32 each). Scores are integers at `2^(2 frac_bits)` (the job's
//! product scale).
//!
//! The file is created (as a temporary file next to its path) before the job runs, so that a
//! path that cannot be written fails at once rather than after a long job, and renamed into
//! place when written whole: a failure leaves no partial file.

use crate::error::{Error, Result};
use crate::model::align::PartyData;
use crate::model::blocking::Candidates;
use std::io::Write;
use std::path::Path;

/// A dump being made: its temporary file, created before the job.
pub struct Dump {
    path: std::path::PathBuf,
    file: tempfile::NamedTempFile,
}

impl Dump {
    /// Creates the temporary file next to `path`; fails naming `path` if it cannot.
    pub fn create(path: &Path) -> Result<Dump> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let file = tempfile::NamedTempFile::new_in(dir).map_err(|e| io(path, e))?;
        Ok(Dump {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes the dump of `cand`'s scores between `pa`'s and `pb`'s rows (each `width` numbers
    /// at `frac_bits` fractional bits), with the `gold` links (entity ids) that both sides hold
    /// as rows, and renames it into place.
    pub fn write(
        mut self,
        pa: &PartyData,
        pb: &PartyData,
        (width, frac_bits): (usize, u32),
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
        let (row_a, row_b) = (pa.row_of(), pb.row_of());
        let judged: Vec<(u32, u32)> = gold
            .iter()
            .filter_map(|(a, b)| Some((*row_a.get(a)? as u32, *row_b.get(b)? as u32)))
            .collect();
        let mut out = Vec::with_capacity(32 + 12 * (na + nb) * k + 8 + 8 * judged.len());
        for v in [na, nb, k, frac_bits as usize] {
            out.extend((v as u64).to_le_bytes());
        }
        for &c in cand.a.iter().chain(&cand.b) {
            out.extend(c.to_le_bytes());
        }
        let (sa, sb) = crate::model::align::pair_scores(&pa.z, &pb.z, width, cand);
        for v in sa.iter().chain(&sb) {
            out.extend(v.to_le_bytes());
        }
        out.extend((judged.len() as u64).to_le_bytes());
        for (a, b) in judged {
            out.extend(a.to_le_bytes());
            out.extend(b.to_le_bytes());
        }
        let path = self.path;
        self.file.write_all(&out).map_err(|e| io(&path, e))?;
        self.file.persist(&path).map_err(|e| io(&path, e.error))?;
        Ok(())
    }
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::invalid(format!("{}: {e}", path.display()))
}
