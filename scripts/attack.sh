#!/usr/bin/env bash
# Plays one curious compute server against the blocking of a benchmark with gold links and prints,
# as its last line, one JSON object: reidentification_rate, name_recovery_rate, baseline_rate,
# blocking, blocking_recall (and sizes).
#
#   scripts/attack.sh DATASET_DIR [--format dbp15k|openea|native] [--blocking tokens|party-cap|padded|cap-padded|words]
#                     [--aux other|half|same] [--protocol standard|open] [--seed N]
#
# The attacker holds exactly a server's view of the job (each party's keyed tokens per shuffled
# row, the candidate lists) plus plaintext names of a similar population: `other` (default) the
# names of party B's aligned entities, `half` a random half of party A's (the other half is
# scored), `same` party A's exact population. See `party attack --help` and docs/design.md.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: scripts/attack.sh DATASET_DIR [--format F] [--blocking MODE] [--aux other|half|same] [--protocol standard|open] [--seed N]" >&2; exit 2; }
[ $# -ge 1 ] || usage
dataset=$1; shift
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --format|--blocking|--aux|--protocol|--seed|--params)
      [ $# -ge 2 ] || usage
      args+=("$1" "$2"); shift 2 ;;
    -h|--help) usage ;;
    *) usage ;;
  esac
done
[ -d "$dataset" ] || { echo "error: $dataset is not a directory" >&2; exit 2; }
cargo build --release --quiet -p party
bin="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release"
exec "$bin/party" attack "$dataset" "${args[@]}"
