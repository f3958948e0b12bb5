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

# create_kwok_pools N POOLS: N plain kwok nodes (bench-00001...) in POOLS pools, node i labelled
# pool=p<i mod POOLS> (IMAGES_FROM at scale), then wait until they are Ready.
create_kwok_pools() {
  local n=$1 pools=$2 p i specs
  for ((p = 0; p < pools; p++)); do
    specs=()
    for ((i = p + 1; i <= n; i += pools)); do specs+=("$(printf 'bench-%05d' "$i")"); done
    for ((i = 0; i < ${#specs[@]}; i += 500)); do
      NODE_LABELS="pool=p$p" "$hack/nodes.sh" "${specs[@]:i:500}" | kubectl apply -f - >/dev/null
    done
  done
  wait_ready_nodes "$n" 1200
}

# create_workloads COUNT POOLS: hack/workloads.py's workloads (their pods never run: no Deployment or
# StatefulSet controller here, CronJobs scheduled once a year, Jobs and DaemonSets on no node) in
# namespaces w0..w9.
create_workloads() {
  local i
  for i in $(seq 0 9); do kubectl create namespace "w$i" >/dev/null; done
  python3 "$hack/workloads.py" "$1" "$2" | kubectl create -f - >/dev/null
}

# peak_rss_kib COMMAND...: run COMMAND (its stdout and stderr as given), then print its peak resident
# set (ru_maxrss of the child, KiB) on fd 3; its exit code is returned.
peak_rss_kib() {
  python3 -c '
import os, resource, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
os.write(3, f"{usage.ru_maxrss}\n".encode())
sys.exit(os.waitstatus_to_exitcode(status))' "$@"
}
