#!/usr/bin/env bash
# Runs the whole pipeline on a dataset with gold links and prints, as its last line, one JSON
# object with quality, agreement with the plaintext reference, and cost figures.
#   scripts/eval.sh DATASET_DIR [--format dbp15k|openea|native] [--protocol standard|open] [--servers 2|3|4]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: scripts/eval.sh DATASET_DIR [--format dbp15k|openea|native] [--protocol standard|open] [--servers 2|3|4]" >&2
  exit 2
fi
cargo build --release --quiet -p party
exec target/release/party eval "$@"
