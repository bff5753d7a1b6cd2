#!/usr/bin/env bash
# Local demo. Until the alignment pipeline lands, it runs the secure computation core with all
# servers and the dealer in one process and prints its measured figures.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p server
echo "== secure bilinear form, 2 servers + dealer (in-process)"
target/release/server bench bilinear --servers 2 --n 500 --m 500 --d 64
echo "== secure comparisons, 2 servers + dealer (in-process)"
target/release/server bench compare --servers 2 --count 100000
