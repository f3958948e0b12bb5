#!/usr/bin/env bash
# Build a real Kubernetes control plane from Go modules, once, into a cache outside the repo:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, and for the real-node tests
#   kubelet and kube-proxy (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3) and kwok (sigs.k8s.io/kwok).
# Prints the bin directory on the last line of stdout. Rebuilds only what is missing.
#
#   K8S=newest (default) | oldest   which version of hack/versions.env; one cache directory per version
#   CONTROL_PLANE_ONLY=1            skip kubelet and kube-proxy (only the real-node suite needs them)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/versions.env
. "$here/versions.env"
case "${K8S:-newest}" in
  newest) K8S_VERSION=$K8S_NEWEST ETCD_VERSION=$ETCD_NEWEST ;;
  oldest) K8S_VERSION=$K8S_OLDEST ETCD_VERSION=$ETCD_OLDEST ;;
  *) printf '[build-control-plane] ERROR: K8S=%s: expected newest or oldest (hack/versions.env)\n' "$K8S" >&2; exit 2 ;;
esac

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/quayctl-controller
key="k8s-v${K8S_VERSION}_etcd-v${ETCD_VERSION}_kwok-v${KWOK_VERSION}"
bin="$cache_root/control-plane/$key/bin"
mkdir -p "$bin"

log() { printf '[build-control-plane] %s\n' "$*" >&2; }

command -v go >/dev/null || { log "ERROR: go is not installed (need Go >= 1.24)"; exit 1; }
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
[ "$go_minor" -ge 24 ] || { log "ERROR: Go >= 1.24 is needed, found $(go env GOVERSION)"; exit 1; }

want=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)
[ "${CONTROL_PLANE_ONLY:-0}" = 1 ] || want+=(kubelet kube-proxy)
missing=()
for b in "${want[@]}"; do [ -x "$bin/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then
  log "cached: $bin"
  echo "$bin"
  exit 0
fi
log "missing: ${missing[*]} -> building into $bin (cold build: ~20 min on 2 cores, see README)"
start=$(date +%s)
# A build cache of our own (~3.7 GB while building), removed once the binaries are in place.
export GOCACHE="$cache_root/control-plane/$key/gocache"

need() { local b; for b in "${missing[@]}"; do [ "$b" = "$1" ] && return 0; done; return 1; }

k8s_bins=()
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy etcd; do need "$b" && k8s_bins+=("$b"); done
if [ ${#k8s_bins[@]} -gt 0 ]; then
  # Throwaway wrapper module: require k8s.io/kubernetes and map every staging module it replaces with a
  # local path (./staging/src/...) to the published v0.X.Y of the same release. The list comes from the
  # tag's own go.mod. etcd is built from the same module graph (k8s pins go.etcd.io/etcd/server/v3).
  work="$cache_root/control-plane/$key/wrapper"
  rm -rf "$work" && mkdir -p "$work"
  log "resolving k8s.io/kubernetes@v${K8S_VERSION}"
  gomod=$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -f "$gomod" ] || { log "ERROR: could not download k8s.io/kubernetes@v${K8S_VERSION}"; exit 1; }
  staging_minor="0.${K8S_VERSION#1.}"
  {
    echo "module quayctl-controller.local/control-plane"
    echo
    echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"
    echo
    echo "require ("
    echo "	k8s.io/kubernetes v${K8S_VERSION}"
    echo "	go.etcd.io/etcd/server/v3 v${ETCD_VERSION}"
    echo ")"
    echo
    echo "replace ("
    grep -E '^[[:space:]]*k8s\.io/[^ ]+ => \./staging/' "$gomod" | awk -v v="v${staging_minor}" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$work/go.mod"
  log "wrapper go.mod maps $(grep -c '=> k8s.io' "$work/go.mod") staging modules to v${staging_minor}"
  cat > "$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
  (cd "$work" && go mod tidy -e >&2) || { log "ERROR: go mod tidy failed in $work"; exit 1; }

  build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v${K8S_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor}"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${build_date}"
  done
  for b in "${k8s_bins[@]}"; do
    t0=$(date +%s)
    if [ "$b" = etcd ]; then pkg=go.etcd.io/etcd/server/v3; fl="-s -w"; else pkg=k8s.io/kubernetes/cmd/$b; fl=$ldflags; fi
    log "go build $pkg"
    (cd "$work" && go build -trimpath -pgo=off -ldflags "$fl" -o "$bin/$b.tmp" "$pkg") || { log "ERROR: building $b failed"; exit 1; }
    mv "$bin/$b.tmp" "$bin/$b"
    log "built $b in $(( $(date +%s) - t0 ))s"
  done
fi

if need kwok; then
  t0=$(date +%s)
  log "go install sigs.k8s.io/kwok/cmd/kwok@v${KWOK_VERSION}"
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v${KWOK_VERSION}" >&2 \
    || { log "ERROR: building kwok failed"; exit 1; }
  log "built kwok in $(( $(date +%s) - t0 ))s"
fi

rm -rf "$GOCACHE" "$cache_root/control-plane/$key/wrapper"
"$bin/kube-apiserver" --version >&2
"$bin/etcd" --version | head -1 >&2
log "control plane built in $(( $(date +%s) - start ))s; cache: $(du -sh "$cache_root" | cut -f1), module cache: $(du -sh "$(go env GOMODCACHE)" | cut -f1)"
echo "$bin"
