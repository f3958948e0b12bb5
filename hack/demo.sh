#!/usr/bin/env bash
# `make demo`: a full run on ~20 simulated nodes of mixed shapes, on a real local control plane.
# Builds what is missing (control plane, static binary), starts the cluster, runs the controller
# with its human log, prints the table and exit code, and tears everything down.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
build_static_binary
start_cluster demo

nodes=()
for i in $(seq -w 1 14); do nodes+=("worker-$i"); done
nodes+=(worker-15:cordoned gpu-01:noschedule infra-01:noexecute notready-01:notready fail-01:fail slow-01:slow)
"$hack/nodes.sh" "${nodes[@]}" | kubectl apply -f - >/dev/null
kubectl create namespace quayctl-demo >/dev/null
wait_ready_nodes 19 60

cat <<MSG

=== quayctl-controller demo: ${#nodes[@]} simulated nodes
    14 healthy, 1 cordoned, 1 NoSchedule, 1 NoExecute, 1 NotReady,
    1 whose puller fails (fail-01), 1 whose puller never finishes (slow-01, DEADLINE_SECONDS=15)

\$ QUAY_IMAGES='nginx:1.27;quay.io/prometheus/node-exporter:v1.8.2;docker.io/library/nginx:1.27' DEADLINE_SECONDS=15 quayctl-controller

MSG
set +e
QUAY_IMAGES='nginx:1.27;quay.io/prometheus/node-exporter:v1.8.2;docker.io/library/nginx:1.27' \
DEADLINE_SECONDS=15 WAIT_GRACE_SECONDS=30 NAMESPACE=quayctl-demo HELPER_IMAGE=quayctl-controller:0.1.0 \
  "$bin"
code=$?
set -e
echo
echo "=== exit code $code (1: fail-01 failed and slow-01 timed out; see README \"Exit codes\")"
echo "=== the Jobs it left (ttlSecondsAfterFinished removes them):"
kubectl -n quayctl-demo get jobs -L quayctl-controller/node | head -8
echo "    ..."
