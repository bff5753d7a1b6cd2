#!/usr/bin/env bash
# Local demo: a dealer, two compute servers and two parties as separate processes on loopback,
# over QUIC with mutual TLS, aligning the small real DBpedia sample shipped in data/sample
# (French vs English DBpedia). Prints the quality summary and where the results are; stops
# every process it started; exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
echo "== building (release; the first build takes several minutes, cargo shows its progress)"
cargo build --release -p party -p server
bin="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release"
work=$(mktemp -d)
out="${bin%/release}/demo"
source scripts/cluster.sh
args_a=(); args_b=()

echo "== starting a dealer and 2 compute servers (development CA in a temporary directory)"
start_cluster 2
echo "   dealer $(cat "$work/dealer.addr"), server-0 $(cat "$work/server-0.addr"), server-1 $(cat "$work/server-1.addr")"
# The demo job also asks for explanations and the private per-group audit (degree groups,
# epsilon 1), so that the reports show every section.
write_jobs "demo-$$" "evaluation = true"$'\n[params]\nexplain = true\n[params.audit]\nenabled = true'

echo "== aligning data/sample: party-a (French DBpedia, $(wc -l < data/sample/a/entities.tsv) entities) and party-b (English, $(wc -l < data/sample/b/entities.tsv))"
rm -rf "$out"
run_parties data/sample/a data/sample/b "$out"
"$bin/party" judge --dataset data/sample --a "$out/party-a" --b "$out/party-b" > "$work/report.json" || fail "judging failed"
python3 - "$work/report.json" <<'PY' || cat "$work/report.json"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"hits1 {r['hits1']:.3f}  precision {r['precision']:.3f}  recall {r['recall']:.3f}  f1 {r['f1']:.3f}  (gold links: {r['pairs']})")
print(f"secure decisions equal to the plaintext reference: {r['plaintext_agreement']:.3f}")
print(f"{r['candidate_pairs']} candidate pairs scored on shares; {r['bytes_per_server'] / 1e6:.1f} MB sent per server, {r['rounds']} rounds")
PY
echo "== results: $out/party-a/matches.csv and $out/party-b/matches.csv (summary.json, explanations.csv, audit.json and eval-dump.bin beside each)"
echo "== reports (self-contained HTML; check one in a headless browser with scripts/check-report.sh FILE [OUT.png]):"
for side in a b; do
  [ -s "$out/party-$side/report.html" ] || fail "party-$side wrote no report"
  echo "   party-$side: $out/party-$side/report.html"
done
