#!/usr/bin/env bash
# Build the real nodes' container runtime from Go modules, once per version, into a cache outside
# the repo: containerd, containerd-shim-runc-v2 and ctr (github.com/containerd/containerd/v2), runc
# (github.com/opencontainers/runc) and the CNI plugins bridge, host-local and loopback
# (github.com/containernetworking/plugins), at the versions of hack/versions.env. Prints the bin
# directory on the last line of stdout (the CNI plugins are in its cni/ subdirectory). Rebuilds only
# what is missing.
#
# containerd, its shim, ctr and the CNI plugins are pure Go (CGO_ENABLED=0; containerd's optional
# btrfs snapshotter and PKCS#11 decryption, which need cgo, are left out). runc needs cgo: its
# nsenter runs as a C constructor before Go starts, and its seccomp filters link libseccomp
# (Debian's libseccomp-dev): pods with the RuntimeDefault profile, as every puller is, fail without.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/versions.env
. "$here/versions.env"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/quayctl-controller
key="containerd-v${CONTAINERD_VERSION}_runc-v${RUNC_VERSION}_cni-v${CNI_PLUGINS_VERSION}"
bin=$cache_root/node-runtime/$key/bin
cni=$bin/cni
mkdir -p "$bin" "$cni"
log() { printf '[build-node-runtime] %s\n' "$*" >&2; }

want=("$bin/containerd" "$bin/containerd-shim-runc-v2" "$bin/ctr" "$bin/runc" "$cni/bridge" "$cni/host-local" "$cni/loopback")
missing=0
for b in "${want[@]}"; do [ -x "$b" ] || missing=1; done
if [ $missing = 0 ]; then
  log "cached: $bin"
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { log "ERROR: go is not installed"; exit 1; }
[ -e /usr/include/seccomp.h ] || { log "ERROR: libseccomp-dev is missing (runc's seccomp): run hack/install-deps.sh"; exit 1; }
start=$(date +%s)
# A build cache of its own, removed once the binaries are in place.
export GOCACHE=$cache_root/node-runtime/$key/gocache

c=github.com/containerd/containerd/v2
ldflags="-s -w -X $c/version.Version=v$CONTAINERD_VERSION -X $c/version.Revision=v$CONTAINERD_VERSION -X $c/version.Package=$c"
log "containerd v$CONTAINERD_VERSION (containerd, ctr, containerd-shim-runc-v2)"
CGO_ENABLED=0 GOBIN=$bin go install -trimpath -tags urfave_cli_no_docs -ldflags "$ldflags" \
  "$c/cmd/containerd@v$CONTAINERD_VERSION" "$c/cmd/ctr@v$CONTAINERD_VERSION"
CGO_ENABLED=0 GOBIN=$bin go install -trimpath -tags urfave_cli_no_docs,no_grpc -ldflags "$ldflags" \
  "$c/cmd/containerd-shim-runc-v2@v$CONTAINERD_VERSION"
log "runc v$RUNC_VERSION (cgo, seccomp)"
CGO_ENABLED=1 GOBIN=$bin go install -trimpath -buildmode=pie -tags seccomp,urfave_cli_no_docs \
  -ldflags "-s -w -X main.gitCommit=v$RUNC_VERSION" "github.com/opencontainers/runc@v$RUNC_VERSION"
log "CNI plugins v$CNI_PLUGINS_VERSION (bridge, host-local, loopback)"
p=github.com/containernetworking/plugins
CGO_ENABLED=0 GOBIN=$cni go install -trimpath \
  -ldflags "-s -w -X $p/pkg/utils/buildversion.BuildVersion=v$CNI_PLUGINS_VERSION" \
  "$p/plugins/main/bridge@v$CNI_PLUGINS_VERSION" "$p/plugins/ipam/host-local@v$CNI_PLUGINS_VERSION" \
  "$p/plugins/main/loopback@v$CNI_PLUGINS_VERSION"
chmod -R u+w "$GOCACHE" 2>/dev/null || true
rm -rf "$GOCACHE"
"$bin/containerd" --version >&2
"$bin/runc" --version >&2
log "built in $(( $(date +%s) - start )) s: $bin"
echo "$bin"
