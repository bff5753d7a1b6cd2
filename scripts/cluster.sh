# Shared by demo.sh and eval.sh (source it): starts a dealer and K compute servers as separate
# processes on loopback with a development CA, writes the parties' job files, and stops every
# process it started on exit. Expects $bin (release binaries) and $work (a scratch directory).
# Set KEEP_LOGS=DIR to keep every process's log there.

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp "$work"/*.log "$KEEP_LOGS"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "failed: $*" >&2
  for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $(basename "$f")" >&2; tail -n 20 "$f" >&2; }; done
  exit 1
}

# start_cluster K [W] [dealer|ot|replicated]: certificates, then the dealer (none in the dealer-free
# modes `ot` and `replicated`) and server-0 ..
# server-(K-1), each compute server as W worker processes (default 1): worker 0 writes NODE.addr,
# worker j NODE-wJ.addr (their names and pids also in wnames and wpids).
workers=1
wnames=(); wpids=()
start_cluster() {
  local k=$1 node role servers="" trust_dealer='dealer = "dealer"'
  workers=${2:-1}
  [ "${3:-dealer}" = dealer ] || trust_dealer=
  for ((i = 0; i < k; i++)); do servers+="${servers:+, }\"server-$i\""; done
  local names="dealer,party-a,party-b"
  for ((i = 0; i < k; i++)); do names+=",server-$i"; done
  "$bin/party" certs --out "$work/certs" --names "$names" > /dev/null
  nodes=()
  [ -n "$trust_dealer" ] && nodes+=(dealer)
  for ((i = 0; i < k; i++)); do nodes+=("server-$i"); done
  for node in "${nodes[@]}"; do
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
servers = [$servers]
$trust_dealer
TOML
    "$bin/server" run --config "$work/$node.toml" --port-file "$work/$node.addr" 2> "$work/$node.log" &
    pids+=($!)
  done
  for node in "${nodes[@]}"; do
    [ "$node" = dealer ] && continue
    for ((j = 1; j < workers; j++)); do
      "$bin/server" run --config "$work/$node.toml" --worker "$j" --port-file "$work/$node-w$j.addr" 2> "$work/$node-w$j.log" &
      pids+=($!); wpids+=($!); wnames+=("$node-w$j")
    done
  done
  for node in "${nodes[@]}" "${wnames[@]}"; do
    for _ in $(seq 100); do [ -s "$work/$node.addr" ] && break; sleep 0.1; done
    [ -s "$work/$node.addr" ] || fail "$node did not start"
  done
}

# write_jobs JOB_ID EXTRA_TOML: one job file per party (job-a.toml, job-b.toml).
write_jobs() {
  local job=$1 extra=$2 key side
  key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  for side in a b; do
    {
      echo "job = \"$job\""
      echo "side = \"$side\""
      echo "identity = \"party-$side\""
      echo 'parties = ["party-a", "party-b"]'
      echo "blocking_key = \"$key\""
      echo "$extra"
      echo "[tls]"
      echo 'ca = "certs/ca.pem"'
      echo "cert = \"certs/party-$side.pem\""
      echo "key = \"certs/party-$side.key\""
      for node in "${nodes[@]}"; do
        [ "$node" = dealer ] && continue
        echo "[[servers]]"
        echo "name = \"$node\""
        echo "addr = \"$(cat "$work/$node.addr")\""
        if [ "$workers" -gt 1 ]; then
          local list="" j
          for ((j = 1; j < workers; j++)); do list+="${list:+, }\"$(cat "$work/$node-w$j.addr")\""; done
          echo "workers = [$list]"
        fi
      done
      if [ -s "$work/dealer.addr" ]; then
        echo "[dealer]"
        echo 'name = "dealer"'
        echo "addr = \"$(cat "$work/dealer.addr")\""
      fi
    } > "$work/job-$side.toml"
  done
}

# run_parties GRAPH_A GRAPH_B OUT [extra args for both]: runs both parties (`party ${party_cmd:-run}`),
# fails if either does.
run_parties() {
  local ga=$1 gb=$2 out=$3 p
  shift 3
  local party_pids=()
  "$bin/party" "${party_cmd:-run}" --job "$work/job-a.toml" --graph "$ga" --out "$out/party-a" "${args_a[@]}" "$@" 2> "$work/party-a.log" &
  party_pids+=($!); pids+=($!)
  "$bin/party" "${party_cmd:-run}" --job "$work/job-b.toml" --graph "$gb" --out "$out/party-b" "${args_b[@]}" "$@" 2> "$work/party-b.log" &
  party_pids+=($!); pids+=($!)
  for p in "${party_pids[@]}"; do wait "$p" || fail "a party exited with an error"; done
}
