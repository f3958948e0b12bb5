# shellcheck shell=bash
# Shared by e2e.sh, demo.sh and bench.sh (source it): the static binary under test and a throwaway
# local cluster, torn down on exit, with the control-plane logs printed if the script fails.

hack=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$hack")
# shellcheck source=hack/common.sh
. "$hack/common.sh"

# build_static_binary: `make build` (cargo decides what is stale); sets $bin.
build_static_binary() {
  make -C "$root" --no-print-directory build >&2
  # shellcheck disable=SC2034 # read by the scripts that source this file
  bin=$root/target/${TARGET:-$(uname -m)-unknown-linux-gnu}/release/quayctl-controller
}

# start_cluster NAME: start a cluster in a fresh temp dir (sets $state, sources its env: KUBECONFIG,
# PATH with kubectl) and arrange for it to be stopped when the script exits.
start_cluster() {
  state=$(mktemp -d "${TMPDIR:-/tmp}/quayctl-$1.XXXXXX")
  trap stop_cluster EXIT
  "$hack/cluster.sh" up "$state"
  # shellcheck disable=SC1091
  . "$state/env"
}

stop_cluster() {
  local status=$?
  if [ $status -ne 0 ]; then
    echo "[$(basename "$0")] FAILED (exit $status): control-plane logs follow" >&2
    "$hack/cluster.sh" logs "$state" >&2 || true
  fi
  "$hack/cluster.sh" down "$state" || true
  if [ $status -eq 0 ]; then rm -rf "$state"; else echo "[$(basename "$0")] state kept in $state" >&2; fi
  exit $status
}

# stop_cluster_now: tear the cluster down now (make bench runs several, one after the other).
stop_cluster_now() {
  "$hack/cluster.sh" down "$state" >/dev/null 2>&1 || true
  rm -rf "$state"
  trap - EXIT
}

# wait_count WANT TIMEOUT WHAT COMMAND...: poll until COMMAND prints a count of at least WANT; on a
# timeout also say how far it got ("12 of 20 WHAT").
wait_count() {
  local want=$1 timeout=$2 what=$3
  shift 3
  poll "$timeout" "$want $what" at_least "$want" "$@" || { echo "got $("$@") of $want $what" >&2; return 1; }
}

# wait_ready_nodes COUNT TIMEOUT: poll until at least COUNT kwok nodes are Ready (one list per poll;
# `kubectl wait` goes node by node and takes minutes at a few thousand nodes).
ready_kwok_nodes() {
  local jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}'
  kubectl get nodes -l type=kwok -o jsonpath="$jsonpath" | grep -c True || true
}
wait_ready_nodes() {
  wait_count "$1" "$2" "nodes Ready" ready_kwok_nodes
}

# create_kwok_nodes N: N plain kwok nodes (bench-00001...), applied 500 at a time, then wait until
# they are Ready (make bench, make heap).
create_kwok_nodes() {
  local n=$1 specs=() i
  for i in $(seq 1 "$n"); do specs+=("$(printf 'bench-%05d' "$i")"); done
  for ((i = 0; i < n; i += 500)); do
    "$hack/nodes.sh" "${specs[@]:i:500}" | kubectl apply -f - >/dev/null
  done
  wait_ready_nodes "$n" 1200
}
