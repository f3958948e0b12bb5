#!/usr/bin/env bash
# `make heap`: where the controller's memory goes. Runs the controller under heaptrack (a heap
# profiler that preloads into malloc, hence a dynamically linked build of the same code) against
# HEAP_NODES kwok nodes (default 5000) in 10 pools with the controller-manager's rates raised (the
# heap the run needs does not depend on the pace, only the run's length does), 2 images and, with
# IMAGES_FROM=namespaces=*, HEAP_WORKLOADS workloads (default 10000, hack/workloads.py: every node's
# set is cut at 64 images; 0: no IMAGES_FROM), PULLER_KIND=pod, and prints:
#   - peak heap (what the run's data and buffers need at their highest), peak RSS under heaptrack,
#     number of allocations and temporary ones;
#   - the allocation sites holding the most memory at the peak, with their backtraces.
# The whole profile stays in $HEAP_OUT (default bench/heap) as heaptrack.zst, readable with
# heaptrack_print or heaptrack_gui; the summary is bench/heap.txt.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
n=${HEAP_NODES:-5000}
workloads=${HEAP_WORKLOADS:-10000}
out=${HEAP_OUT:-$root/bench/heap}
if ! command -v heaptrack >/dev/null || ! command -v heaptrack_print >/dev/null; then
  echo "[heap] installing heaptrack (Debian)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq heaptrack; } >/dev/null
fi
# Same code and optimisation as `make build` (profile "heap" inherits "release"), but with symbols
# and without +crt-static: a static binary cannot be preloaded.
cargo build --profile heap --locked --bin quayctl-controller >&2
dynamic=$root/target/heap/quayctl-controller

KCM_RATE=raised start_cluster "heap-$n" >/dev/null
echo "[heap] $n kwok nodes in 10 pools" >&2
create_kwok_pools "$n" 10
from=()
if [ "$workloads" -gt 0 ]; then
  echo "[heap] $workloads workloads" >&2
  create_workloads "$workloads" 10
  from=(IMAGES_FROM='namespaces=*')
fi
kubectl create namespace heap >/dev/null
mkdir -p "$out"
rm -f "$out"/heaptrack.*
echo "[heap] running the controller under heaptrack" >&2
env -i PATH="$PATH" KUBECONFIG="$state/controller.kubeconfig" "${from[@]}" PULLER_KIND=pod \
  QUAY_IMAGES='nginx:1.27;redis:7' HELPER_IMAGE=quayctl-controller:bench NAMESPACE=heap RUN_ID=heap \
  LOG_FORMAT=json REPORT_FILE="$state/report.json" DEADLINE_SECONDS=1200 \
  heaptrack -o "$out/heaptrack" "$dynamic" > "$state/heaptrack.out" 2> "$state/controller.log" \
  || { tail -n 30 "$state/controller.log" >&2; exit 1; }
# The same run again without heaptrack, the static binary as shipped: its own peak RSS.
build_static_binary
kubectl delete namespace heap --wait >/dev/null
kubectl create namespace heap >/dev/null
peak_rss_kib env -i PATH="$PATH" KUBECONFIG="$state/controller.kubeconfig" "${from[@]}" PULLER_KIND=pod \
  QUAY_IMAGES='nginx:1.27;redis:7' HELPER_IMAGE=quayctl-controller:bench NAMESPACE=heap RUN_ID=heap-rss \
  DEADLINE_SECONDS=1200 "$bin" > /dev/null 2> "$state/controller-rss.log" 3> "$state/rss" \
  || { tail -n 30 "$state/controller-rss.log" >&2; exit 1; }
rss_mib=$(awk '{ printf "%.1f", $1 / 1024 }' "$state/rss")
profile=$out/heaptrack.zst
succeeded=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"]["succeeded"])' "$state/report.json")
stop_cluster_now

heaptrack_print -f "$profile" --print-peaks --peak-limit 12 --sub-peak-limit 2 \
  --print-allocators 0 --print-temporary 0 --print-leaks 0 > "$out/print.txt"
{
  if [ "$workloads" -gt 0 ]; then
    echo "# make heap: $n kwok nodes, 2 images and IMAGES_FROM over $workloads workloads, PULLER_KIND=pod, $succeeded nodes succeeded"
  else
    echo "# make heap: $n kwok nodes, 2 images, PULLER_KIND=pod, $succeeded nodes succeeded"
  fi
  echo
  echo "peak RSS of the static binary, the same run without heaptrack: $rss_mib MiB"
  grep -E '^(total runtime|calls to allocation functions|temporary memory allocations|peak heap memory consumption|peak RSS|total memory leaked)' "$out/print.txt"
  echo
  echo "Largest allocation sites at the peak (heaptrack_print --print-peaks; full profile: $(basename "$profile")):"
  echo
  sed -n '/^PEAK MEMORY CONSUMERS/,/^MOST TEMPORARY\|^total runtime/p' "$out/print.txt" | sed '/^total runtime/d'
} > "$root/bench/heap.txt"
cat "$root/bench/heap.txt"
