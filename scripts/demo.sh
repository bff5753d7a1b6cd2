#!/usr/bin/env bash
# Local demo: a dealer, two compute servers and two parties as separate processes on loopback,
# over QUIC with mutual TLS, aligning the small real DBpedia sample shipped in data/sample
# (French vs English DBpedia). Prints the quality summary and where the results are; stops
# every process it started; exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
echo "== building (release)"
cargo build --release --quiet -p party -p server
bin="$root/target/release"
work=$(mktemp -d)
out="$root/target/demo"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP_LOGS:-}" ] && cp "$work"/*.log "$root/target/demo/" 2>/dev/null; rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "demo failed: $*" >&2
  for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $(basename "$f")" >&2; tail -n 20 "$f" >&2; }; done
  exit 1
}

echo "== certificates (development CA) in $work/certs"
"$bin/party" certs --out "$work/certs" --names dealer,server-0,server-1,party-a,party-b > /dev/null

for node in dealer server-0 server-1; do
  role=compute; [ "$node" = dealer ] && role=dealer
  cat > "$work/$node.toml" <<TOML
name = "$node"
listen = "127.0.0.1:0"
role = "$role"
[tls]
ca = "certs/ca.pem"
cert = "certs/$node.pem"
key = "certs/$node.key"
[peers]
parties = ["party-a", "party-b"]
servers = ["server-0", "server-1"]
dealer = "dealer"
TOML
  "$bin/server" run --config "$work/$node.toml" --port-file "$work/$node.addr" 2> "$work/$node.log" &
  pids+=($!)
done
for node in dealer server-0 server-1; do
  for _ in $(seq 100); do [ -s "$work/$node.addr" ] && break; sleep 0.1; done
  [ -s "$work/$node.addr" ] || fail "$node did not start"
done
echo "== dealer $(cat "$work/dealer.addr"), server-0 $(cat "$work/server-0.addr"), server-1 $(cat "$work/server-1.addr")"

key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
for side in a b; do
  cat > "$work/job-$side.toml" <<TOML
job = "demo-$$"
side = "$side"
identity = "party-$side"
parties = ["party-a", "party-b"]
blocking_key = "$key"
evaluation = true
[tls]
ca = "certs/ca.pem"
cert = "certs/party-$side.pem"
key = "certs/party-$side.key"
[[servers]]
name = "server-0"
addr = "$(cat "$work/server-0.addr")"
[[servers]]
name = "server-1"
addr = "$(cat "$work/server-1.addr")"
[dealer]
name = "dealer"
addr = "$(cat "$work/dealer.addr")"
TOML
done

echo "== aligning data/sample: party-a (fr, $(wc -l < data/sample/a/entities.tsv) entities) and party-b (en, $(wc -l < data/sample/b/entities.tsv) entities)"
rm -rf "$out"
party_pids=()
for side in a b; do
  "$bin/party" run --job "$work/job-$side.toml" --graph "data/sample/$side" --out "$out/party-$side" 2> "$work/party-$side.log" &
  party_pids+=($!)
  pids+=($!)
done
for p in "${party_pids[@]}"; do wait "$p" || fail "a party exited with an error"; done

"$bin/party" judge --dataset data/sample --a "$out/party-a" --b "$out/party-b" > "$work/report.json" || fail "judging failed"
python3 - "$work/report.json" <<'PY' || cat "$work/report.json"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"hits1 {r['hits1']:.3f}  precision {r['precision']:.3f}  recall {r['recall']:.3f}  f1 {r['f1']:.3f}  (gold links: {r['gold_pairs']})")
print(f"secure decisions equal to the plaintext reference: {r['plaintext_agreement']:.3f}")
print(f"{r['candidate_pairs']} candidate pairs scored on shares; {r['bytes_per_server'] if isinstance(r['bytes_per_server'], int) else 0} bytes per server")
PY
echo "== results: $out/party-a/matches.csv, $out/party-b/matches.csv (summaries beside them)"
