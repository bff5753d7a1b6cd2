#!/usr/bin/env bash
# Grows a large evaluation pair (two graphs of N entities each, with gold links) from a real one,
# for the scaling benchmarks. Seeded: the same N, seed and source give the same files.
#
#   scripts/make-large.sh N OUT [--seed S] [--source DATASET_DIR]
#
# The source defaults to ../shared/data/dbp15k_fr_en when it exists (15,000 real French-English
# name pairs), else the shipped data/sample. See `party generate --help` for the model and the
# other settings (overlap, edge_keep, typo_rate), and ppea::eval::generate for how names,
# degrees and relations are grown. Then, for example:
#
#   scripts/eval.sh OUT --format native --protocol open --seed 1
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: scripts/make-large.sh N OUT [--seed S] [--source DATASET_DIR]" >&2; exit 2; }
[ $# -ge 2 ] || usage
n=$1; out=$2; shift 2
seed=1; source=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) seed=$2; shift 2 ;;
    --source) source=$2; shift 2 ;;
    *) usage ;;
  esac
done
case "$n" in ''|*[!0-9]*) echo "error: N must be a whole number, not '$n'" >&2; exit 2 ;; esac
if [ -z "$source" ]; then
  if [ -d ../shared/data/dbp15k_fr_en ]; then source=../shared/data/dbp15k_fr_en; else source=data/sample; fi
fi
cargo build --release --quiet -p party
bin="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release"
exec "$bin/party" generate --source "$source" --n "$n" --out "$out" --seed "$seed"
