#!/usr/bin/env bash
# Lint .github/workflows with actionlint, built once from its Go module into the project cache.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=v1.7.12
bin=${XDG_CACHE_HOME:-$HOME/.cache}/quayctl-controller/tools/actionlint-$version
if [ ! -x "$bin/actionlint" ]; then
  echo "[actionlint] building github.com/rhysd/actionlint@$version" >&2
  mkdir -p "$bin"
  GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$bin" go install "github.com/rhysd/actionlint/cmd/actionlint@$version"
fi
cd "$here/.."
"$bin/actionlint" -no-color .github/workflows/*.yml
echo "[actionlint] ok:" .github/workflows/*.yml
