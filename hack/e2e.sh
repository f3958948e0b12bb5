#!/usr/bin/env bash
# The end-to-end suite: the real static binary against a real local control plane (tests/e2e.rs).
# One cluster per run, a namespace and a node group per test; logs printed when something fails.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"

echo "[e2e] building the static release binary (what the image ships)"
build_static_binary
export QUAYCTL_BIN=$bin
QUAYCTL_HELM=$("$hack/build-helm.sh" | tail -n 1)
export QUAYCTL_HELM
start_cluster "e2e-${K8S:-newest}"
echo "[e2e] Kubernetes $(kubectl version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') (K8S=${K8S:-newest} of hack/versions.env)"
export QUAYCTL_REPO=$root
# Restarting kube-apiserver would disturb the tests running beside it: that one runs alone, last.
restart_test=apiserver_restart_mid_watch_keeps_verdicts_right
cargo test --locked --test e2e -- --ignored --test-threads "${E2E_THREADS:-4}" --skip "$restart_test" "$@"
cargo test --locked --test e2e -- --ignored --exact "$restart_test" "$@"
