#!/usr/bin/env bash
# The end-to-end suite: the real static binary against a real local control plane (tests/e2e.rs).
# One cluster per run, a namespace and a node group per test; logs printed when something fails.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root"

echo "[e2e] building the static release binary (what the image ships)"
make --no-print-directory build
target=${TARGET:-$(uname -m)-unknown-linux-gnu}
export QUAYCTL_BIN=$root/target/$target/release/quayctl-controller

state=$(mktemp -d "${TMPDIR:-/tmp}/quayctl-e2e.XXXXXX")
cleanup() {
  status=$?
  if [ $status -ne 0 ]; then
    echo "[e2e] FAILED (exit $status): control-plane logs follow" >&2
    "$here/cluster.sh" logs "$state" >&2 || true
  fi
  "$here/cluster.sh" down "$state" || true
  [ $status -eq 0 ] && rm -rf "$state"
  exit $status
}
trap cleanup EXIT
"$here/cluster.sh" up "$state"
# shellcheck disable=SC1091
. "$state/env"
export QUAYCTL_REPO=$root
cargo test --locked --test e2e -- --ignored --test-threads "${E2E_THREADS:-4}" "$@"
