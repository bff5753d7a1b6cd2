#!/usr/bin/env bash
# The Kubernetes Secrets of deploy/kubernetes from a certificate directory written by
#   party certs --out certs --names dealer,server-0,server-1,party-a,party-b
# (or by your own CA, with the same file names): ppea-ca (ca.pem, shared) and one TLS Secret
# per in-cluster identity, ppea-NAME (tls.crt = NAME.pem, tls.key = NAME.key).
#
#   scripts/k8s-secrets.sh CERTS_DIR            # print the kubectl commands
#   scripts/k8s-secrets.sh CERTS_DIR --apply    # run them (kubectl's current context)
#
# NAMESPACE (default ppea) and NAMES (default "dealer server-0 server-1") change what is made.
# The parties' keys stay with the parties: a name starting with "party" is refused. Commands
# are idempotent (create --dry-run=client | apply), so rerunning them replaces the Secrets.
set -euo pipefail

usage() {
  echo "usage: $0 CERTS_DIR [--apply]" >&2
  exit 2
}
[ $# -ge 1 ] && [ $# -le 2 ] || usage
dir=${1%/}
apply=false
if [ $# -eq 2 ]; then
  [ "$2" = --apply ] || usage
  apply=true
fi
ns=${NAMESPACE:-ppea}
read -r -a names <<< "${NAMES:-dealer server-0 server-1}"

need() {
  [ -f "$1" ] || { echo "error: $1 is missing (expected from party certs --out $dir)" >&2; exit 1; }
}
need "$dir/ca.pem"
for n in "${names[@]}"; do
  case $n in
    party*) echo "error: $n is a party identity; its key must not go into the cluster" >&2; exit 1 ;;
  esac
  need "$dir/$n.pem"
  need "$dir/$n.key"
done

q() { printf '%q' "$1"; }
cmds=("kubectl create namespace $(q "$ns") --dry-run=client -o yaml | kubectl apply -f -")
cmds+=("kubectl -n $(q "$ns") create secret generic ppea-ca --from-file=ca.pem=$(q "$dir/ca.pem") --dry-run=client -o yaml | kubectl apply -f -")
for n in "${names[@]}"; do
  cmds+=("kubectl -n $(q "$ns") create secret tls $(q "ppea-$n") --cert=$(q "$dir/$n.pem") --key=$(q "$dir/$n.key") --dry-run=client -o yaml | kubectl apply -f -")
done

for c in "${cmds[@]}"; do
  if $apply; then
    echo "+ $c" >&2
    eval "$c"
  else
    echo "$c"
  fi
done
