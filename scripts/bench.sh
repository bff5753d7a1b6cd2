#!/usr/bin/env bash
# Measures the secure computation core on this machine (release build, all servers and the
# dealer in one process). Prints one JSON object per line; see docs/benchmarks.md.
#   scripts/bench.sh            # k = 2 and 3, the standard sizes
#   REPEAT=3 scripts/bench.sh   # more repetitions
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT="${REPEAT:-1}"
cargo build --release --quiet -p server
bin="${CARGO_TARGET_DIR:-target}/release/server"
for k in 2 3; do
  "$bin" bench bilinear --servers "$k" --n 2000 --m 2000 --d 128 --repeat "$REPEAT"
  "$bin" bench compare --servers "$k" --count 1000000 --ell 64 --repeat "$REPEAT"
done
# Dealer-free correlations (issue 9): triples from OT (IKNP), k = 2; the silent extension
# alone (one link); comparisons with their material
# made by the servers over OT (correlation = "ot"), k = 2 and 3.
"$bin" bench ot-triples --servers 2 --count 100000 --repeat "$REPEAT"
"$bin" bench silent-ot --count 20000000 --repeat "$REPEAT"
for k in 2 3; do
  "$bin" bench compare --servers "$k" --count 100000 --ell 64 --correlation ot --repeat "$REPEAT"
done
# Issue 9's comparison size without a dealer (two servers compare as millionaires), at 64
# bits and at the pipeline's width of about 40.
for ell in 64 40; do
  "$bin" bench compare --servers 2 --count 1000000 --ell "$ell" --correlation ot --repeat "$REPEAT"
done
# Issue 9's secret product (1000 x 128 x 1000) without a dealer: ring-LWE products, k = 2 to 4.
for k in 2 3 4; do
  "$bin" bench bilinear --servers "$k" --n 1000 --m 1000 --d 128 --correlation ot --repeat "$REPEAT"
done
# Dealer-free products that follow the candidates (ring-LWE slots): a small job, then DBP15K
# fr-en's shape (10,500 rows per side, 64 candidates each, width 648; about two minutes).
"$bin" bench slot-products --servers 2 --n 2000 --per-row 16 --d 128 --repeat "$REPEAT"
"$bin" bench slot-products --servers 2 --n 10500 --per-row 64 --d 648 --repeat "$REPEAT"
# Three servers from replicated seeds (correlation = "replicated"): issue 9's sizes.
"$bin" bench compare --servers 3 --count 1000000 --ell 64 --correlation replicated --repeat "$REPEAT"
"$bin" bench bilinear --servers 3 --n 1000 --m 1000 --d 128 --correlation replicated --repeat "$REPEAT"
# The bilinear form's local pair products at 10^5 rows per side (64 candidates each, both
# ways): passes of 8 and 64 columns (PAIR_ROWS=1000000 for the 10^6 figures; 4 GB).
rows="${PAIR_ROWS:-100000}"
for cols in 8 64; do
  "$bin" bench pair-kernel --n "$rows" --per-row 64 --d "$cols" --repeat "$REPEAT"
done
