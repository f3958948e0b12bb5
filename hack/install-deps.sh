#!/usr/bin/env bash
# The one install step of `make test` and `.ci/run`: every Debian package and tool the suites need.
# As root, installs what is missing (apt-get, Debian 12 packages) and checks it is there; as another
# user, says exactly what to install and why, and fails. Prints nothing to do when all is present.
#
#   hack/install-deps.sh [--check]    --check: only report what is missing (exit 1 if anything is)
#
# What builds from source is not installed here but cached on first use: the control plane, kubelet
# and kube-proxy per Kubernetes version (hack/build-control-plane.sh), the real nodes' containerd,
# runc and CNI plugins (hack/build-node-runtime.sh), Helm (hack/build-helm.sh) and actionlint
# (hack/actionlint.sh), all from the Go module proxy. (docker.io brings Debian's containerd and runc
# for the run's dockerd; the real nodes do not use them.)
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin
check_only=0; [ "${1:-}" = --check ] && check_only=1
log() { printf '[install-deps] %s\n' "$*" >&2; }

libc_a=/usr/lib/$(uname -m)-linux-gnu/libc.a
# need: "command-or-absolute-path package why"
needs=(
  "make make build entry point"
  "file file make build prints what the static binaries are"
  "curl curl readiness probes of the local control plane and registry"
  "openssl openssl certificates and tokens of the local control plane"
  "python3 python3 free ports, audit-log readers, bench tables"
  "shellcheck shellcheck make lint (the shell scripts)"
  "flock util-linux real nodes: a host lock around shared state"
  "nsenter util-linux real nodes: entering a node's namespaces"
  "unshare util-linux real nodes: network and mount namespaces"
  "chroot coreutils e2e: the static binary in an empty root"
  "/usr/include/seccomp.h libseccomp-dev real nodes: runc (built from its module) links libseccomp for seccomp profiles"
  "pkg-config pkg-config real nodes: runc's build finds libseccomp with it"
  "docker-registry docker-registry real nodes: the local registry the test images are pulled from"
  "htpasswd apache2-utils real nodes: bcrypt credentials of the private registry (basic auth)"
  "skopeo skopeo real nodes: pushing the test images built here"
  "dockerd docker.io real nodes: building the Dockerfile and docker run"
  "iptables iptables real nodes: kube-proxy and the CNI bridge (inside each node's namespace)"
  "gcc gcc the static no-op (amd64); real nodes: the static pause image"
  "$libc_a libc6-dev static libc for the no-op and the pause image"
  "aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu the static no-op for arm64 (the helper image's index)"
  "/usr/aarch64-linux-gnu/lib/libc.a libc6-dev-arm64-cross static arm64 libc for the no-op"
  "qemu-aarch64-static qemu-user-static real nodes: running the arm64 no-op of the index here (no binfmt: called by name)"
)
have() { if [[ $1 == /* ]]; then [ -e "$1" ]; else command -v "$1" >/dev/null; fi; }

missing_packages() {
  local line what pkg why out=()
  for line in "${needs[@]}"; do
    read -r what pkg why <<< "$line"
    have "$what" && continue
    [[ " ${out[*]} " == *" $pkg "* ]] || out+=("$pkg")
  done
  echo "${out[*]}"
}
explain() {
  local line what pkg why
  for line in "${needs[@]}"; do
    read -r what pkg why <<< "$line"
    have "$what" || log "  $pkg: $what is missing ($why)"
  done
}

# Toolchains are not Debian packages here: say what is wrong, never try to fetch them.
toolchain_ok=1
command -v cargo >/dev/null || { log "cargo is not installed (a Rust toolchain: rustup, 1.89 or newer)"; toolchain_ok=0; }
if command -v cargo >/dev/null; then
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt >&2 || { log "rustfmt is missing (rustup component add rustfmt)"; toolchain_ok=0; }
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy >&2 || { log "clippy is missing (rustup component add clippy)"; toolchain_ok=0; }
fi
if ! command -v go >/dev/null; then
  log "go is not installed (Go >= 1.26: the control plane, Helm and actionlint are built from Go modules)"; toolchain_ok=0
elif [ "$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')" -lt 26 ]; then
  log "Go >= 1.26 is needed (Kubernetes 1.37 requires it), found $(go env GOVERSION)"; toolchain_ok=0
fi

missing=$(missing_packages)
if [ -z "$missing" ]; then
  [ $toolchain_ok = 1 ] || exit 1
  log "all present"
  exit 0
fi
if [ $check_only = 1 ] || [ "$(id -u)" != 0 ]; then
  log "missing Debian packages: $missing"
  explain
  log "install them as root:  apt-get update && apt-get install -y --no-install-recommends $missing"
  log "(make test itself needs root too: the real nodes use namespaces, cgroups and mounts)"
  exit 1
fi
log "installing Debian packages: $missing"
apt-get update -qq
# shellcheck disable=SC2086 # a list of package names
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
  { log "ERROR: apt-get install $missing failed"; exit 1; }
missing=$(missing_packages)
if [ -n "$missing" ]; then
  log "ERROR: still missing after apt-get install: $missing"; explain; exit 1
fi
[ $toolchain_ok = 1 ] || exit 1
log "installed; all present"
