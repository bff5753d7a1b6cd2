#!/usr/bin/env bash
# Runs the whole pipeline on a dataset with gold links and prints, as its last line, one JSON
# object with quality, agreement with the plaintext reference, and cost figures.
#
#   scripts/eval.sh DATASET_DIR [--format dbp15k|openea|native] [--protocol standard|open]
#                   [--servers 2|3|4] [--workers W] [--seed N] [--inprocess] [--known-links none|train]
#                   [--names given|hidden] [--fold N] [--params P.toml] [--correlation dealer|ot|replicated]
#                   [--bootstrap N [--bootstrap-fraction F]] [--labelled] [--report DIR]
#                   [--dump-scores FILE]
#
# --correlation ot: no dealer; the servers make the correlated randomness among themselves over
# oblivious transfer and ring-LWE products (`correlation = "ot"` under [params]; slower than a
# dealer on large jobs: DBP15K fr-en takes some 2.6 minutes on two cores with two servers, 31
# with three, 63 with four, against 20 s with a dealer). --correlation replicated (with
# --servers 3): no dealer; the three servers make it from replicated seeds, at about a dealer
# job's cost, private against any one server (not two colluding).
# --labelled (audited jobs, `[audit] labelled = true` in P.toml): each party gets the judged
# links as its labelled sample (`party run --labelled`), as `party eval` does in-process.
# --known-links train: the tuning links (DBP15K sup_ent_ids, OpenEA train_links) are known links
# both parties hold (model.known_links = true). --names hidden replaces every name by an opaque
# id (structure alone). --fold picks the OpenEA 721_5fold fold. --params: job parameters
# (`[model]`, `[blocking]`, `min_score`, `assignment_rounds`). --bootstrap N (with --known-links
# train and --inprocess) runs N more jobs, each with the best fraction F (default 0.5) of the
# previous job's matches promoted to known links (`party bootstrap` does the same between two
# deployed jobs); the JSON then judges the combined decisions.
#
# By default the dealer, the servers and the two parties run as separate processes on loopback
# over QUIC with mutual TLS. --inprocess runs everything in one process over in-memory channels
# (same protocol code). --seed N fixes the parties' row shuffles and blocking key (evaluation
# only), so both ways give the same decisions_digest. --report DIR keeps the HTML reports:
# DIR/report.html (in-process, `party eval --report`: with the precision-recall curve and the
# per-group figures of the gold links), or each party's own report of the deployed job as
# DIR/party-a/report.html and DIR/party-b/report.html. --dump-scores FILE (with --inprocess) also
# writes every candidate pair's plaintext score, the candidate lists and the gold links, for
# scripts/normalisation.py (`party eval --dump-scores`). Relative paths (FILE, DIR, P.toml) are
# taken from the repository's root.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
usage() { echo "usage: scripts/eval.sh DATASET_DIR [--format F] [--protocol standard|open] [--servers 2|3|4] [--workers W] [--seed N] [--inprocess] [--known-links none|train] [--names given|hidden] [--fold N] [--params P.toml] [--correlation dealer|ot|replicated] [--bootstrap N [--bootstrap-fraction F]] [--labelled] [--report DIR] [--dump-scores FILE]" >&2; exit 2; }
[ $# -ge 1 ] || usage
dataset=$1; shift
labelled=""; format=""; protocol=standard; servers=2; nworkers=1; seed=""; inprocess=""; known=none; names=given; fold=1; params=""; bootstrap=0; fraction=0.5; report=""; correlation=dealer; dump=""
while [ $# -gt 0 ]; do
  case "$1" in
    --known-links) known=$2; shift 2 ;;
    --names) names=$2; shift 2 ;;
    --fold) fold=$2; shift 2 ;;
    --params) params=$2; shift 2 ;;
    --correlation) correlation=$2; shift 2 ;;
    --bootstrap) bootstrap=$2; shift 2 ;;
    --bootstrap-fraction) fraction=$2; shift 2 ;;
    --format) format=$2; shift 2 ;;
    --protocol) protocol=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --workers) nworkers=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --inprocess) inprocess=1; shift ;;
    --labelled) labelled=1; shift ;;
    --report) report=$2; shift 2 ;;
    --dump-scores) dump=$2; shift 2 ;;
    *) usage ;;
  esac
done
[ -d "$dataset" ] || { echo "error: $dataset is not a directory" >&2; exit 2; }
case "$known" in none|train) ;; *) usage ;; esac
case "$correlation" in dealer|ot|replicated) ;; *) usage ;; esac
[ -z "$params" ] || [ -f "$params" ] || { echo "error: $params is not a file" >&2; exit 2; }
if [ "$bootstrap" != 0 ] && [ -z "$inprocess" ]; then
  echo "error: --bootstrap runs in-process (add --inprocess); between deployed jobs use 'party bootstrap'" >&2; exit 2
fi
if [ -n "$dump" ] && [ -z "$inprocess" ]; then
  echo "error: --dump-scores runs in-process (add --inprocess)" >&2; exit 2
fi
if [ -n "$dump" ] && [ "$bootstrap" != 0 ]; then
  echo "error: --dump-scores dumps single jobs (not with --bootstrap)" >&2; exit 2
fi
if [ -n "$report" ]; then
  [ "$bootstrap" = 0 ] || { echo "error: --report reports single jobs (not with --bootstrap)" >&2; exit 2; }
  mkdir -p "$report"
fi
cargo build --release --quiet -p party -p server
bin="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release"
if [ "$correlation" != dealer ] && [ -n "$params" ] && grep -q '^[[:space:]]*correlation[[:space:]]*=' "$params"; then
  echo "error: $params sets correlation already; drop that line or --correlation" >&2; exit 2
fi
# with_correlation FILE: the job parameters with `correlation = "ot"` or `"replicated"` (a
# top-level parameter: it goes before any table of P.toml) into FILE, which then serves as --params.
with_correlation() {
  { echo "correlation = \"$correlation\""; [ -z "$params" ] || cat "$params"; } > "$1"
  params=$1
}
free_params=""
if [ -n "$inprocess" ]; then
  if [ "$correlation" != dealer ]; then free_params=$(mktemp); with_correlation "$free_params"; fi
  rc=0
  "$bin/party" eval "$dataset" ${format:+--format "$format"} --protocol "$protocol" --servers "$servers" --workers "$nworkers" ${seed:+--seed "$seed"} \
    --known-links "$known" --names "$names" --fold "$fold" ${params:+--params "$params"} \
    --bootstrap "$bootstrap" --bootstrap-fraction "$fraction" ${report:+--report "$report/report.html"} ${dump:+--dump-scores "$dump"} || rc=$?
  [ -z "$free_params" ] || rm -f "$free_params"
  exit "$rc"
fi
work=$(mktemp -d)
source scripts/cluster.sh
[ "$correlation" != dealer ] && with_correlation "$work/free-params.toml"
t0=$(date +%s.%N)
echo "== importing $dataset" >&2
"$bin/party" import "$dataset" ${format:+--format "$format"} --fold "$fold" --names "$names" --out "$work/data" >&2
echo "== starting $([ "$correlation" != dealer ] && echo "(no dealer)" || echo "a dealer and") $servers compute servers ($nworkers worker process(es) each)" >&2
start_cluster "$servers" "$nworkers" "$correlation"
# Job parameters go under [params] of both job files (tables of P.toml as [params.X]).
job_params="[params]"
[ -n "$params" ] && job_params+=$'\n'$(sed 's/^[[:space:]]*\[\(.*\)\][[:space:]]*$/[params.\1]/' "$params")
if [ "$known" = train ]; then
  if grep -q '^\[params.model\]$' <<< "$job_params"; then
    job_params=$(sed 's/^\[params.model\]$/[params.model]\nknown_links = true/' <<< "$job_params")
  else
    job_params+=$'\n[params.model]\nknown_links = true'
  fi
fi
write_jobs "eval" "evaluation = true"$'\n'"$job_params"
args_a=(); args_b=()
if [ "$protocol" = standard ]; then args_a=(--scope "$work/data/test-a.txt"); args_b=(--scope "$work/data/test-b.txt"); fi
extra=()
[ -n "$seed" ] && { party_cmd=eval-run; extra=(--seed "$seed"); }
echo "== running both parties ($protocol protocol)" >&2
if [ "$known" = train ]; then
  args_a+=(--known-links "$work/data/known-a.txt"); args_b+=(--known-links "$work/data/known-b.txt")
fi
if [ -n "$labelled" ]; then
  awk -F'\t' '{print $1 "\t" $2}' "$work/data/test-links.tsv" > "$work/data/labelled-a.tsv"
  awk -F'\t' '{print $2 "\t" $1}' "$work/data/test-links.tsv" > "$work/data/labelled-b.tsv"
  args_a+=(--labelled "$work/data/labelled-a.tsv"); args_b+=(--labelled "$work/data/labelled-b.tsv")
fi
run_parties "$work/data/a" "$work/data/b" "$work/out" "${extra[@]}"
t1=$(date +%s.%N)
# Peak resident memory of the dealer and the servers (still running; Linux VmHWM, in MiB).
rss="{}"
for i in "${!nodes[@]}"; do
  kib=$(awk '/^VmHWM:/ {print $2}' "/proc/${pids[$i]}/status" 2>/dev/null || true)
  if [ -n "$kib" ]; then rss=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d[sys.argv[2]]=int(sys.argv[3])//1024; print(json.dumps(d))' "$rss" "${nodes[$i]}" "$kib"); fi
done
for i in "${!wnames[@]}"; do
  kib=$(awk '/^VmHWM:/ {print $2}' "/proc/${wpids[$i]}/status" 2>/dev/null || true)
  if [ -n "$kib" ]; then rss=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d[sys.argv[2]]=int(sys.argv[3])//1024; print(json.dumps(d))' "$rss" "${wnames[$i]}" "$kib"); fi
done
if [ -n "$report" ]; then
  for side in a b; do
    mkdir -p "$report/party-$side"
    cp "$work/out/party-$side/report.html" "$report/party-$side/report.html"
    echo "== party-$side's report: $report/party-$side/report.html" >&2
  done
fi
"$bin/party" judge --dataset "$work/data" --a "$work/out/party-a" --b "$work/out/party-b" > "$work/report.json" || fail "judging failed"
python3 - "$work/report.json" "$protocol" "$t0" "$t1" "$rss" "$work/out" "$nworkers" <<'PY' || cat "$work/report.json"
import json, os, sys
r = json.load(open(sys.argv[1]))
rss = json.loads(sys.argv[5])
for side in ("a", "b"):
    try:
        v = json.load(open(os.path.join(sys.argv[6], "party-" + side, "summary.json"))).get("peak_rss_mib")
        if v is not None:
            rss["party-" + side] = v
    except OSError:
        pass
r["peak_rss_mib"] = rss
r["protocol"] = sys.argv[2]
r["job_wall_seconds"] = r.get("wall_seconds")
r["wall_seconds"] = float(sys.argv[4]) - float(sys.argv[3])
r["transport"] = "quic"
r["workers"] = int(sys.argv[7])
print(json.dumps(r))
PY
