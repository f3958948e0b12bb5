# shellcheck shell=bash
# Shared by tests/e2e-real.sh and hack/bench-real.sh (source it): one local cluster with real nodes
# (REAL_NODES=1 cluster.sh up, then hack/real-node.sh), a registry and a dockerd of the run, the test
# images, and a teardown that undoes every host change and then checks that nothing is left.
#
# QUAYCTL_BIN_DIR: directory with quayctl-controller and quayctl-noop; default: `make build` output.

hack=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$hack")
# shellcheck source=hack/common.sh
. "$hack/common.sh"
export PATH=$PATH:/usr/sbin:/sbin

rlog() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

# real_preflight: what the real nodes need on this machine (.ci/run installs it), and root.
real_preflight() {
  local missing=() t
  for t in containerd containerd-shim-runc-v2 runc ctr docker-registry skopeo dockerd iptables ip nsenter unshare \
    flock gcc curl openssl python3; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  for t in bridge host-local loopback; do [ -x "/usr/lib/cni/$t" ] || missing+=("/usr/lib/cni/$t"); done
  [ ${#missing[@]} -eq 0 ] || { rlog "ERROR: missing: ${missing[*]} (Debian: containerd runc containernetworking-plugins docker-registry skopeo docker.io iptables gcc libc6-dev; .ci/run installs them)"; return 1; }
  [ "$(id -u)" = 0 ] || { rlog "ERROR: real nodes need root (namespaces, cgroups, mounts)"; return 1; }
}

# real_binaries: sets bin_dir and controller (the static binary) — `make build` unless QUAYCTL_BIN_DIR is set.
real_binaries() {
  if [ -z "${QUAYCTL_BIN_DIR:-}" ]; then make -C "$root" --no-print-directory build >&2; fi
  bin_dir=$(cd "${QUAYCTL_BIN_DIR:-$root/target/${TARGET:-$(uname -m)-unknown-linux-gnu}/release}" && pwd)
  controller=$bin_dir/quayctl-controller
  if [ ! -x "$controller" ] || [ ! -x "$bin_dir/quayctl-noop" ]; then
    rlog "ERROR: no quayctl-controller/quayctl-noop in $bin_dir"; return 1
  fi
  export QUAYCTL_BIN_DIR=$bin_dir
}

# real_setup NAME NODE...: a fresh state dir (sets $state), the cluster with real nodes, registry,
# dockerd, images; sources every env file (KUBECONFIG, QUAYCTL_REGISTRY, QUAYCTL_IMAGE_*, ...).
# Prints how long each phase took. The caller must have `trap real_teardown EXIT` set first.
real_setup() {
  local name=$1 t; shift
  state=$(mktemp -d "${TMPDIR:-/tmp}/quayctl-$name.XXXXXX")
  export KUBECACHEDIR=$state/kube-cache # not ~/.kube/cache
  t=$(date +%s.%N)
  REAL_NODES=1 "$hack/cluster.sh" up "$state"
  phase "control plane up" "$t"
  real_env
  t=$(date +%s.%N)
  "$hack/real-node.sh" registry-up "$state"
  "$hack/real-node.sh" docker-up "$state"
  phase "registry + dockerd up" "$t"
  real_env
  # Images (CPU-bound) while the nodes start (they only need the pause image once a pod comes).
  t=$(date +%s.%N)
  "$hack/images.sh" all "$state" > "$state/real/logs/images.log" 2>&1 &
  local images_pid=$!
  "$hack/real-node.sh" up "$state" "$@"
  phase "real nodes Ready: $*" "$t"
  wait "$images_pid" || { cat "$state/real/logs/images.log" >&2; rlog "ERROR: building/pushing the test images failed"; return 1; }
  cat "$state/real/logs/images.log" >&2
  phase "images built and pushed" "$t"
  real_env
}

real_env() {
  local f
  # shellcheck disable=SC1091
  . "$state/env"
  for f in net apiserver registry docker images; do
    # shellcheck disable=SC1090
    if [ -f "$state/real/$f.env" ]; then . "$state/real/$f.env"; fi
  done
}

phase() { rlog "$(awk -v s="$2" -v e="$(date +%s.%N)" -v w="$1" 'BEGIN { printf "%s: %.1f s", w, e - s }')"; }

# real_teardown [STATUS]: stop everything (cluster.sh down stops the real nodes, dockerd and registry,
# the control plane, then removes the bridge), then check that nothing of the run is left. Returns
# non-zero if the teardown left something. On failure the logs stay in $state (images and container
# roots are removed either way).
real_teardown() {
  local status=${1:-0} t clean=0
  [ -n "${state:-}" ] && [ -d "$state" ] || return 0
  trap '' INT TERM # an impatient second Ctrl-C must not leave the host half torn down
  if [ "$status" != 0 ]; then
    "$hack/cluster.sh" logs "$state" >&2 || true
    local f
    for f in "$state"/real/logs/*.log; do
      [ -f "$f" ] || continue
      echo "===== real/$(basename "$f") (last 25 lines)" >&2; tail -n 25 "$f" >&2
    done
  fi
  t=$(date +%s.%N)
  "$hack/cluster.sh" down "$state" || true
  "$hack/real-node.sh" check-clean "$state" || clean=1
  phase "teardown + leak check" "$t"
  if [ "$status" = 0 ] && [ $clean = 0 ]; then
    rm -rf "$state"
  else
    rm -rf "$state/real/registry/data" "$state"/real/nodes/*/containerd "$state/real/nodes/docker/data" "$state/etcd"
    rlog "logs kept in $state"
  fi
  return $clean
}
