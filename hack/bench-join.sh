#!/usr/bin/env bash
# `make bench-join`: how long a node that joins with the startup taint waits before it is released,
# with the shipped joining CronJob run by the cluster's own CronJob controller, before and after
# STARTUP_TAINT_WATCH_SECONDS. For each mode of BENCH_JOIN_MODES (default "before after") and each
# count of BENCH_JOIN_NODES (default "10 500"), on a fresh local cluster (controller-manager at
# upstream defaults), COUNT kwok nodes join at random moments over BENCH_JOIN_SECONDS (default 600)
# while the joining CronJob runs:
#   before  the previous shipped CronJob: every 2 minutes, STARTUP_TAINT_ONLY, the Job kind, no watch;
#   after   the shipped one (k8s/deploy): every 5 minutes, a 300 s node watch, PULLER_KIND=pod.
# kwok runs no containers, so the controller's own pod (pinned to a node kwok does not manage) is
# run by hack/bench-join.py as a kubelet would, with the ServiceAccount's token. From the audit log,
# per node: Ready -> released (p50/p95/max) and its parts (waiting for a run to create its puller,
# the pull as kwok charges it, the removal), created -> released, and the controller's writes per
# node. Rows go to bench/join.jsonl; the README quotes them. Then, at BENCH_JOIN_WATCH_NODES (default
# 5000) nodes whose status lists 50 images, what the node watch costs: the bytes the apiserver sends
# on node watches while every node reports its status once per 5 minutes (the kubelet's
# nodeStatusReportFrequency), with and without a joining run watching.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
modes=${BENCH_JOIN_MODES:-before after}
counts=${BENCH_JOIN_NODES:-10 500}
seconds=${BENCH_JOIN_SECONDS:-600}
watch_nodes=${BENCH_JOIN_WATCH_NODES:-5000}
taint=startup-taint.cluster-autoscaler.kubernetes.io/quayctl-images
results=$root/bench/join.jsonl
mkdir -p "$root/bench"
build_static_binary
log() { printf '[bench-join] %s\n' "$*" >&2; }

# The node the controller's pods run on: not kwok's (no annotation); this script is its kubelet.
controller_node() {
  kubectl apply -f - >/dev/null <<N
apiVersion: v1
kind: Node
metadata:
  name: ctl
  labels: {kubernetes.io/hostname: ctl, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
N
  local now; now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  kubectl patch node ctl --subresource=status --type=merge -p "{\"status\":{
    \"allocatable\":{\"cpu\":\"8\",\"memory\":\"16Gi\",\"pods\":\"110\"},
    \"capacity\":{\"cpu\":\"8\",\"memory\":\"16Gi\",\"pods\":\"110\"},
    \"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"BenchKubelet\",\"lastHeartbeatTime\":\"$now\",\"lastTransitionTime\":\"$now\"}]}}" >/dev/null
}

# install_manifests MODE: the shipped manifests, the hourly run suspended, the joining one pinned to `ctl` and
# unsuspended (as the previous version shipped it, for `before`).
install_manifests() {
  kubectl apply -k k8s/deploy >/dev/null
  kubectl -n quayctl-controller patch cronjob quayctl-controller -p '{"spec":{"suspend":true}}' >/dev/null
  local pin='{"spec":{"suspend":false,"jobTemplate":{"spec":{"template":{"spec":{"nodeSelector":{"kubernetes.io/hostname":"ctl"}}}}}}}'
  kubectl -n quayctl-controller patch cronjob quayctl-controller-joining -p "$pin" >/dev/null
  if [ "$1" = before ]; then
    # The joining CronJob as it was: every 2 minutes, a list and no watch, the Job kind.
    kubectl -n quayctl-controller patch cronjob quayctl-controller-joining --type=json -p '[
      {"op":"replace","path":"/spec/schedule","value":"*/2 * * * *"},
      {"op":"replace","path":"/spec/startingDeadlineSeconds","value":60},
      {"op":"replace","path":"/spec/jobTemplate/spec/template/spec/containers/0/env","value":[
        {"name":"STARTUP_TAINT_ONLY","value":"true"},
        {"name":"POD_NAME","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}},
        {"name":"POD_NAMESPACE","valueFrom":{"fieldRef":{"fieldPath":"metadata.namespace"}}}]}]' >/dev/null
  fi
}

joining_pods_running() {
  kubectl -n quayctl-controller get pods --field-selector spec.nodeName=ctl,status.phase=Running -o name | grep -c . || true
}
released_nodes() {
  local jsonpath='{range .items[*]}{.metadata.name}{" "}{.spec.taints[*].key}{"\n"}{end}'
  kubectl get nodes -l join=1 -o jsonpath="$jsonpath" | grep -vc "$taint" || true
}

for mode in $modes; do
  for count in $counts; do
    log "$mode: $count nodes joining over ${seconds}s"
    KCM_RATE=defaults start_cluster bench-join
    controller_node
    install_manifests "$mode"
    sa_kubeconfig=$state/sa.kubeconfig
    token=$(kubectl -n quayctl-controller create token quayctl-controller --duration 4h)
    server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
    ca=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')
    install -m 600 /dev/null "$sa_kubeconfig"
    printf 'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: %s, certificate-authority: %s}}]\ncontexts: [{name: c, context: {cluster: c, user: sa, namespace: quayctl-controller}}]\ncurrent-context: c\nusers: [{name: sa, user: {token: %s}}]\n' \
      "$server" "$ca" "$token" > "$sa_kubeconfig"
    mkdir -p "$state/runs"
    BENCH_JOIN_LOGS=$state/runs python3 hack/bench-join.py kubelet ctl quayctl-controller "$bin" "$sa_kubeconfig" \
      > "$state/logs/bench-kubelet.log" 2>&1 &
    kubelet_pid=$!
    # Join from the first run on: the schedule is under way, as on a cluster that has run it for long.
    wait_count 1 420 "joining runs" joining_pods_running
    python3 hack/bench-join.py join "$count" "$seconds" 42 "$taint"
    wait_count "$count" 900 "joining nodes released" released_nodes || log "not every node was released"
    kill "$kubelet_pid" 2>/dev/null || true
    wait "$kubelet_pid" 2>/dev/null || true
    python3 hack/bench-join.py report "$state/logs/audit.jsonl" "$results" "$mode" "$count"
    stop_cluster_now
  done
done

# What the node watch costs at $watch_nodes nodes: every node's status lists 50 images (what the
# kubelet reports by default at most) and is written once per 5 minutes (nodeStatusReportFrequency),
# so $watch_nodes / 300 writes per second, each sent whole to every node watcher. The apiserver's
# apiserver_watch_events_sizes counts the bytes it sends on node watches: once without a joining
# run (the scheduler, the controller-manager and kwok watch nodes too), once with one watching.
if [ "$watch_nodes" -gt 0 ]; then
  log "the node watch at $watch_nodes nodes"
  KCM_RATE=defaults start_cluster bench-join-watch
  create_kwok_nodes "$watch_nodes"
  python3 hack/bench-join.py images "$watch_nodes"
  sent() { kubectl get --raw /metrics | python3 hack/bench-join.py watch-bytes; }
  window=120
  before=$(sent)
  python3 hack/bench-join.py heartbeats "$watch_nodes" "$window"
  middle=$(sent)
  # A joining run that watches the nodes for the window while nothing joins (kwok's nodes carry no
  # startup taint), beside the same heartbeats.
  QUAY_IMAGES=nginx:1.27 HELPER_IMAGE=quayctl-controller:bench NAMESPACE=default STARTUP_TAINT="$taint" \
    STARTUP_TAINT_ONLY=true STARTUP_TAINT_WATCH_SECONDS=$((window + 30)) RUST_LOG=warn \
    KUBECONFIG=$state/controller.kubeconfig "$bin" > "$state/logs/watch-run.log" 2>&1 &
  run_pid=$!
  sleep 15
  start=$(sent)
  python3 hack/bench-join.py heartbeats "$watch_nodes" "$window"
  end=$(sent)
  wait "$run_pid" || true
  python3 - "$before" "$middle" "$start" "$end" "$window" "$watch_nodes" "$results" <<'PY'
import json, sys
(b0, e0), (b1, e1), (b2, e2), (b3, e3) = (map(float, a.split()) for a in sys.argv[1:5])
window, nodes, results = float(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
base, with_run = (b1 - b0) / window, (b3 - b2) / window
row = {"mode": "watch-cost", "nodes": nodes, "status_writes_per_s": round(nodes / 300, 1),
       "node_watch_bytes_per_s_without": round(base), "node_watch_bytes_per_s_with": round(with_run),
       "joining_run_bytes_per_s": round(with_run - base),
       "bytes_per_event": round((b3 - b2) / max(e3 - e2, 1))}
open(results, "a").write(json.dumps(row) + "\n")
print(json.dumps(row, indent=2))
PY
  stop_cluster_now
fi
