#!/usr/bin/env bash
# Local demo: aligns the small real DBpedia sample shipped in data/sample (French vs English
# DBpedia) with two parties, two compute servers and a dealer, and prints the quality summary.
# All processes run inside one program over in-memory channels until the networked deployment
# lands.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== building (release)"
cargo build --release --quiet -p party
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "== aligning data/sample: 2 parties, 2 servers + dealer"
if ! target/release/party eval data/sample --format native --protocol open --servers 2 > "$out/report.json" 2> "$out/log"; then
  cat "$out/log" >&2
  echo "demo failed" >&2
  exit 1
fi
python3 - "$out/report.json" <<'PY' 2>/dev/null || cat "$out/report.json"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"entities: {r['entities_a']} (fr) x {r['entities_b']} (en), {r['candidate_pairs']} candidate pairs scored on shares")
print(f"hits1 {r['hits1']:.3f}  precision {r['precision']:.3f}  recall {r['recall']:.3f}  f1 {r['f1']:.3f}  (gold links: {r['gold_pairs']})")
print(f"secure decisions equal to the plaintext reference: {r['plaintext_agreement']:.3f}")
print(f"wall {r['wall_seconds']:.2f} s, {r['bytes_per_server']/1e6:.1f} MB sent per server, dealer {r['dealer_bytes']/1e6:.1f} MB, {r['rounds']} rounds")
PY
