//! One party's local preparation of a large graph, measured: time and peak resident memory
//! after preparing every entity's row (streamed, as the `party` binary does, or held, as
//! in-process evaluation does) and after computing every row once, as an upload would.
//!
//! ```text
//! scripts/make-large.sh 1000000 /tmp/large1m
//! cargo run --release --example prepare_memory -- /tmp/large1m/a [--held]
//! ```
//!
//! Prints one JSON line: rows, width, seconds, peak MiB, and a hash of the rows (the same with
//! and without `--held`). Linux only (reads `/proc/self/status`).

use ppea::model::align::{JobParams, prepare_party_known, prepare_party_streamed};
use ppea::model::graph::Graph;
use std::time::Instant;

/// This process's peak resident memory so far, in MiB.
fn peak_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.iter().find(|a| !a.starts_with("--")) else {
        eprintln!("usage: prepare_memory GRAPH_DIR [--held]");
        std::process::exit(2);
    };
    let held = args.iter().any(|a| a == "--held");
    let t0 = Instant::now();
    let g = Graph::load_dir(std::path::Path::new(dir)).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let (load_s, load_mib) = (t0.elapsed().as_secs_f64(), peak_mib());
    let scope: Vec<u32> = (0..g.len() as u32).collect();
    let p = JobParams::default();
    let (key, mut shuffle, _) = ppea::eval::evaluate::seeded(1);
    let t1 = Instant::now();
    let prepare = if held {
        prepare_party_known
    } else {
        prepare_party_streamed
    };
    let d = prepare(&g, &scope, &[], &p, &key, &mut shuffle).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let (prep_s, prep_mib) = (t1.elapsed().as_secs_f64(), peak_mib());
    // Every row once, a block at a time, as the upload computes them.
    let t2 = Instant::now();
    let rows_per_block = 1024;
    let mut buf = vec![0u64; rows_per_block * d.width];
    let (mut hash, mut r) = (0u64, 0);
    while r < d.rows.len() {
        let n = (d.rows.len() - r).min(rows_per_block);
        d.z_rows(r, &mut buf[..n * d.width]).expect("rows");
        hash = buf[..n * d.width]
            .iter()
            .fold(hash, |h, &x| h.rotate_left(5) ^ x);
        r += n;
    }
    println!(
        "{{\"rows\": {}, \"width\": {}, \"held\": {held}, \"load_seconds\": {load_s:.1}, \"load_peak_mib\": {load_mib}, \"prepare_seconds\": {prep_s:.1}, \"prepare_peak_mib\": {prep_mib}, \"rows_seconds\": {:.1}, \"peak_mib\": {}, \"rows_hash\": \"{hash:016x}\"}}",
        d.rows.len(),
        d.width,
        t2.elapsed().as_secs_f64(),
        peak_mib()
    );
}
