#!/usr/bin/env bash
# `make demo`: one full run on ~20 simulated nodes of mixed shapes, on a real local control plane:
# a tainted GPU pool reached with TOLERATIONS, a seed wave spread over zones, SKIP_PRESENT, and the
# failures a user meets (a puller that fails, a node that never finishes). Prints the report the
# user would see; exits 0 when the demo ran as designed (the controller's own exit 1 is expected).
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
build_static_binary
start_cluster demo >/dev/null 2>&1 || { echo "demo: the local cluster did not start" >&2; exit 1; }

apply_nodes() { # ZONE NODE[:SHAPE]...
  local zone=$1; shift
  NODE_LABELS="topology.kubernetes.io/zone=$zone" "$hack/nodes.sh" "$@" | kubectl apply -f - >/dev/null
}
apply_nodes zone-a worker-a1 worker-a2 worker-a3 worker-a4 worker-a5 gpu-a1:gpu gpu-a2:gpu fail-a1:fail
apply_nodes zone-b worker-b1 worker-b2 worker-b3 worker-b4 worker-b5 gpu-b1:gpu worker-b6:cordoned slow-b1:slow
apply_nodes zone-c worker-c1 worker-c2 infra-c1:noexecute notready-c1:notready
kubectl create namespace quayctl-demo >/dev/null
wait_ready_nodes 19 60
# Two nodes already hold both images (as the kubelet reports in status.images): SKIP_PRESENT skips them.
images='{"status":{"images":[{"names":["docker.io/library/nginx:1.27"],"sizeBytes":1},{"names":["quay.io/prometheus/node-exporter:v1.8.2"],"sizeBytes":1}]}}'
for n in worker-a5 worker-b5; do kubectl patch node "$n" --subresource=status --type=merge -p "$images" >/dev/null; done

cat <<MSG

=== quayctl-controller demo: 20 simulated nodes in 3 zones
    13 workers (2 already hold both images), a GPU pool of 3 tainted nvidia.com/gpu=present:NoSchedule,
    1 cordoned, 1 NoExecute (not tolerated), 1 NotReady, 1 whose puller fails (fail-a1),
    1 whose puller never finishes (slow-b1, DEADLINE_SECONDS=15)

\$ QUAY_IMAGES='nginx:1.27;quay.io/prometheus/node-exporter:v1.8.2' \\
  TOLERATIONS='nvidia.com/gpu=present:NoSchedule' SEED_NODES=3 SKIP_PRESENT=true \\
  DEADLINE_SECONDS=15 quayctl-controller

MSG
set +e
QUAY_IMAGES='nginx:1.27;quay.io/prometheus/node-exporter:v1.8.2' \
TOLERATIONS='nvidia.com/gpu=present:NoSchedule' SEED_NODES=3 SKIP_PRESENT=true \
DEADLINE_SECONDS=15 WAIT_GRACE_SECONDS=5 NAMESPACE=quayctl-demo HELPER_IMAGE=quayctl-controller:0.1.0 \
RUST_LOG=warn,quayctl_controller::tracker=info "$bin"
code=$?
set -e
echo
if [ "$code" != 1 ]; then
  echo "=== demo: expected exit 1 (fail-a1 failed, slow-b1 timed out), got $code" >&2
  exit 1
fi
echo "=== exit code 1, as designed: fail-a1 failed and slow-b1 timed out (see README \"Exit codes\")"
jobs=$(kubectl -n quayctl-demo get jobs -L quayctl-controller/node --no-headers)
echo "=== $(wc -l <<< "$jobs") puller Jobs for 17 eligible nodes (2 already had both images); the first few:"
sed -n 1,5p <<< "$jobs"
