#!/usr/bin/env bash
# Build Helm (v3, the version below) from its Go module, once, into the project's cache; prints the
# binary's path on the last line of stdout. helm.sh/helm/v3 has no replace directives: a plain
# `go install` works. Its Kubernetes version (what `.Capabilities.KubeVersion` says without a
# cluster) is set to the newest of hack/versions.env.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/versions.env
. "$here/versions.env"
version=v3.22.0
bin=${XDG_CACHE_HOME:-$HOME/.cache}/quayctl-controller/tools/helm-$version
if [ ! -x "$bin/helm" ]; then
  echo "[build-helm] building helm.sh/helm/v3/cmd/helm@$version" >&2
  start=$(date +%s)
  mkdir -p "$bin"
  minor=$(echo "$K8S_NEWEST" | cut -d. -f2)
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$bin" \
    go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$version" >&2
  echo "[build-helm] built in $(( $(date +%s) - start )) s" >&2
fi
"$bin/helm" version --short >&2
echo "$bin/helm"
