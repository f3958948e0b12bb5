#!/usr/bin/env bash
# `make bench`, IMAGES_FROM part: what reading the workloads costs a run at scale. BENCH_FROM_NODES
# kwok nodes (default 5000) in 10 pools, BENCH_FROM_WORKLOADS workloads (default 10000, hack/
# workloads.py: each pool wants a few hundred images, so every node's set is cut at 64), one real
# run of the static binary with IMAGES_FROM=namespaces=* and PULLER_KIND=pod at raised
# controller-manager rates. Prints, and appends to bench/images-from.jsonl: the workload lists
# (requests, objects, bytes read, time), the node list and the sets, the run to exit 0, the
# controller's peak RSS.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
nodes=${BENCH_FROM_NODES:-5000}
workloads=${BENCH_FROM_WORKLOADS:-10000}
log() { printf '[bench-images-from] %s\n' "$*" >&2; }

build_static_binary
KCM_RATE=raised start_cluster "bench-images-from" >/dev/null
t0=$SECONDS
create_kwok_pools "$nodes" 10
log "$nodes nodes in 10 pools ($((SECONDS - t0)) s)"
t0=$SECONDS
create_workloads "$workloads" 10
log "$workloads workloads ($((SECONDS - t0)) s)"
kubectl create namespace bench-from >/dev/null
log "one run: QUAY_IMAGES=nginx:1.27, IMAGES_FROM=namespaces=*, PULLER_KIND=pod"
start=$(date +%s.%N)
code=0
peak_rss_kib env -i PATH="$PATH" KUBECONFIG="$state/controller.kubeconfig" \
  QUAY_IMAGES=nginx:1.27 IMAGES_FROM='namespaces=*' HELPER_IMAGE=quayctl-controller:bench NAMESPACE=bench-from \
  RUN_ID=from PULLER_KIND=pod DEADLINE_SECONDS=1200 LOG_FORMAT=json REPORT_FORMAT=json \
  "$bin" > "$state/report.json" 2> "$state/controller.log" 3> "$state/rss" || code=$?
took=$(python3 -c 'import sys, time; print(f"{time.time() - float(sys.argv[1]):.1f}")' "$start")
[ "$code" = 0 ] || { tail -n 30 "$state/controller.log" >&2; log "ERROR: the run exited $code"; exit 1; }
python3 - "$state" "$nodes" "$workloads" "$took" "$root/bench/images-from.jsonl" <<'PY'
import json, sys
state, nodes, workloads, took, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
events = [json.loads(l) for l in open(f"{state}/controller.log") if l.startswith("{")]
def field(message):
    return next(e for e in events if e.get("message") == message)
listed = field("listed the workloads (IMAGES_FROM)")
report = json.load(open(f"{state}/report.json"))
cut = [n for n in report["nodes"] if n.get("left_out_count")]
sizes = sorted(len(n["images"]) for n in report["nodes"])
row = {
    "nodes": nodes, "workloads": workloads, "kept": listed["workloads"], "objects": listed["objects"],
    "requests": listed["requests"], "bytes": listed["bytes"], "list_ms": listed["elapsed_ms"],
    "images": len(report["images"]), "images_per_node_median": sizes[len(sizes) // 2] if sizes else 0,
    "nodes_cut_at_64": len(cut), "left_out_median": sorted(n["left_out_count"] for n in cut)[len(cut) // 2] if cut else 0,
    "succeeded": report["counts"]["succeeded"], "run_seconds": took,
    "peak_rss_mib": round(int(open(f"{state}/rss").read()) / 1024, 1),
}
open(out, "a").write(json.dumps(row) + "\n")
print(f"""
IMAGES_FROM at {nodes} nodes and {workloads} workloads (namespaces=*, every kind), one run:
  workload lists     {row['requests']} requests, {row['objects']} objects, {row['bytes'] / 1048576:.1f} MiB read, {row['list_ms'] / 1000:.2f} s ({row['kept']} workloads add images)
  images             {row['images']} in the run; a node's set: median {row['images_per_node_median']}, {row['nodes_cut_at_64']} nodes cut at 64 (median {row['left_out_median']} left out)
  run                {row['succeeded']}/{nodes} nodes succeeded, {took:.1f} s to exit 0
  controller         peak RSS {row['peak_rss_mib']} MiB""")
PY
