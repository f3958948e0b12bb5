#!/usr/bin/env bash
# Test images for the real-node suite, all made on this machine (nothing is pulled from outside):
#
#   images.sh oci DIR          OCI layouts (cached in DIR; built only when missing):
#                                pause          a static C pause (containerd's sandbox_image; -v exits 0)
#                                payload-small  1 layer,  1 MiB
#                                payload-medium 2 layers, 2 x 8 MiB
#                                payload-large  4 layers, 4 x 50 MiB (~200 MiB)
#                                data-only      1 layer, one 64 MiB file, no binary (FROM scratch)
#                                artifact       an OCI artifact (artifactType), 4 MiB, image config
#                                artifact-empty-config  the same with the empty config, 1 MiB
#                                arm64-only     an index with linux/arm64 only
#                              layers of random bytes, gzip-compressed (compression cannot shrink them)
#   images.sh push STATE       push those layouts to the run's registry (skopeo), write STATE/real/images.env
#                              (payload-small also as quayctl-e2e/only-a:1, only-b:1, gc:1, pod-kind:1, helm-a:1
#                              and helm-b:1; artifact also as quayctl-e2e/gc-artifact:1; the runnable
#                              pause as quayctl-e2e/join:3.10 and from:3.10 and, to the private registry with its
#                              credentials, as quayctl-e2e/private:3.10: workloads run them)
#   images.sh controller STATE the controller image from the project's Dockerfile, built by the run's
#                              dockerd from the `make build` binaries (BINARIES=prebuilt, BASE=scratch:
#                              offline) once per architecture and pushed to the run's registry as an
#                              index of linux/amd64 (controller + no-op) and linux/arm64 (the arm64 no-op)
#   images.sh all STATE        oci (cache) + push + controller
#
# QUAYCTL_BIN_DIR: the directory with quayctl-controller and quayctl-noop (default: `make build` output);
# QUAYCTL_NOOP_ARM64: the arm64 no-op (default: `make noop` output).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/common.sh
. "$here/common.sh"
root=$(dirname "$here")
cache=${XDG_CACHE_HOME:-$HOME/.cache}/quayctl-controller/test-images/v2
bin_dir=${QUAYCTL_BIN_DIR:-$root/target/${TARGET:-$(uname -m)-unknown-linux-gnu}/release}
log() { printf '[images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# layout NAME TAG SPEC: one OCI layout in $1/NAME (SPEC: JSON with "layers": a list of layers, each a
# list of [path, mode, source] where source is a file to copy or "random:BYTES"; optional "entrypoint";
# "arch" (default: this host's); "artifact_type" (an OCI artifact: the manifest's artifactType, and
# each layer titled by org.opencontainers.image.title); "empty_config" (with artifact_type: the
# config is the empty descriptor, the OCI spec's "Guidelines for Artifact Usage" case 2);
# "index" (the manifest wrapped in an image index that lists its one platform)).
layout() {
  local out=$1 name=$2 tag=$3 spec=$4
  [ -f "$out/$name/index.json" ] && return 0
  rm -rf "$out/$name.tmp"
  python3 - "$out/$name.tmp" "$tag" "$spec" <<'PY'
import gzip, hashlib, io, json, os, platform, sys, tarfile
out, tag, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
host = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
arch = spec.get("arch", host)
os.makedirs(f"{out}/blobs/sha256")
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    with open(f"{out}/blobs/sha256/{d}", "wb") as f: f.write(data)
    return {"digest": f"sha256:{d}", "size": len(data)}
layers, diff_ids, entrypoint = [], [], None
for files in spec["layers"]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, mode, source in files:
            data = os.urandom(int(source[7:])) if source.startswith("random:") else open(source, "rb").read()
            parts = path.split("/")
            for i in range(1, len(parts)):  # parent directories
                d = tarfile.TarInfo("/".join(parts[:i])); d.type = tarfile.DIRTYPE; d.mode = 0o755
                if d.name not in tar.getnames(): tar.addfile(d)
            info = tarfile.TarInfo(path); info.size = len(data); info.mode = int(mode, 8)
            tar.addfile(info, io.BytesIO(data))
    raw = raw.getvalue()
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    layer = dict(mediaType="application/vnd.oci.image.layer.v1.tar+gzip", **blob(gzip.compress(raw, compresslevel=1, mtime=0)))
    if spec.get("artifact_type"):
        layer["annotations"] = {"org.opencontainers.image.title": files[0][0].split("/")[-1]}
    layers.append(layer)
if spec.get("empty_config"):
    config = dict(mediaType="application/vnd.oci.empty.v1+json", **blob(b"{}"))
else:
    config = {"architecture": arch, "os": "linux", "created": "1970-01-01T00:00:00Z",
              "config": {"Entrypoint": spec["entrypoint"]} if spec.get("entrypoint") else {},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    config = dict(mediaType="application/vnd.oci.image.config.v1+json", **blob(json.dumps(config).encode()))
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": layers}
if spec.get("artifact_type"):
    manifest["artifactType"] = spec["artifact_type"]
top = dict(mediaType="application/vnd.oci.image.manifest.v1+json", **blob(json.dumps(manifest).encode()))
if spec.get("index"):
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [dict(top, platform={"architecture": arch, "os": "linux"})]}
    top = dict(mediaType="application/vnd.oci.image.index.v1+json", **blob(json.dumps(index).encode()))
with open(f"{out}/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [dict(annotations={"org.opencontainers.image.ref.name": tag}, **top)]}, f)
with open(f"{out}/oci-layout", "w") as f: json.dump({"imageLayoutVersion": "1.0.0"}, f)
PY
  mv "$out/$name.tmp" "$out/$name"
}

oci() {
  local out=$1 start=$SECONDS
  mkdir -p "$out"
  if [ ! -f "$out/pause/index.json" ]; then
    local tmp; tmp=$(mktemp -d)
    cat > "$tmp/pause.c" <<'C'
/* The pod sandbox's process: sleeps until SIGTERM/SIGINT, reaps children. `-v` prints the version
   and exits 0, as Kubernetes' build/pause/linux/pause.c does (the volume strategy runs that). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) { printf("pause.c quayctl-e2e\n"); return 0; }
  signal(SIGTERM, quit); signal(SIGINT, quit); signal(SIGCHLD, reap);
  for (;;) pause();
}
C
    gcc -static -Os -s -o "$tmp/pause" "$tmp/pause.c"
    layout "$out" pause 3.10 "{\"entrypoint\": [\"/pause\"], \"layers\": [[[\"pause\", \"0755\", \"$tmp/pause\"]]]}"
    rm -rf "$tmp"
  fi
  layout "$out" payload-small 1 '{"layers": [[["data/small-0", "0644", "random:1048576"]]]}'
  layout "$out" payload-medium 1 '{"layers": [[["data/medium-0", "0644", "random:8388608"]],
    [["data/medium-1", "0644", "random:8388608"]]]}'
  layout "$out" payload-large 1 '{"layers": [[["data/large-0", "0644", "random:52428800"]],
    [["data/large-1", "0644", "random:52428800"]], [["data/large-2", "0644", "random:52428800"]],
    [["data/large-3", "0644", "random:52428800"]]]}'
  # For the volume strategy: what no container can run. A data-only image (FROM scratch, one large
  # file, no binary); an OCI artifact (artifactType, titled layer) with an image config, the form
  # containerd 2.x mounts; the same with the empty config (containerd cannot unpack it:
  # containerd/containerd#11907); and an image whose index has linux/arm64 only.
  layout "$out" data-only 1 '{"layers": [[["weights/model.bin", "0644", "random:67108864"]]]}'
  layout "$out" artifact 1 '{"artifact_type": "application/vnd.quayctl.e2e.weights.v1",
    "layers": [[["weights.bin", "0644", "random:4194304"]]]}'
  layout "$out" artifact-empty-config 1 '{"artifact_type": "application/vnd.quayctl.e2e.weights.v1",
    "empty_config": true, "layers": [[["weights.bin", "0644", "random:1048576"]]]}'
  layout "$out" arm64-only 1 '{"arch": "arm64", "index": true, "layers": [[["data/arm64", "0644", "random:65536"]]]}'
  log "OCI layouts ready in $out ($((SECONDS - start)) s)"
}

push() {
  local state=$1 start=$SECONDS name tag ref
  # shellcheck disable=SC1091
  . "$state/real/registry.env"
  oci "$cache"
  : > "$state/real/images.env.tmp"
  # only-a/only-b: payload-small under names of their own (a node has them only if it pulled them).
  for spec in pause:3.10:PAUSE payload-small:1:SMALL payload-medium:1:MEDIUM payload-large:1:LARGE \
    payload-small:1:ONLY_A:only-a payload-small:1:ONLY_B:only-b payload-small:1:GC:gc payload-small:1:POD_KIND:pod-kind payload-small:1:HELM_A:helm-a \
    payload-small:1:HELM_B:helm-b pause:3.10:JOIN:join \
    data-only:1:DATA_ONLY artifact:1:ARTIFACT artifact-empty-config:1:ARTIFACT_EMPTY_CONFIG \
    artifact:1:GC_ARTIFACT:gc-artifact arm64-only:1:ARM64_ONLY pause:3.10:FROM:from \
    pause:3.10:PRIVATE:private:private; do
    IFS=: read -r name tag var repo private <<< "$spec"
    local registry=$QUAYCTL_REGISTRY creds=()
    if [ -n "$private" ]; then
      registry=$QUAYCTL_PRIVATE_REGISTRY; creds=(--dest-creds "$QUAYCTL_PRIVATE_USER:$QUAYCTL_PRIVATE_PASSWORD")
    fi
    ref=$registry/quayctl-e2e/${repo:-$name}:$tag
    # skopeo (as root) keeps a blob-info cache in /var/lib/containers: give it a tmpfs there instead.
    unshare --mount --propagation private -- sh -ec 'mount -n -t tmpfs quayctl-skopeo /var/lib; exec "$@"' skopeo \
      skopeo --insecure-policy copy --quiet --all --dest-tls-verify=false "${creds[@]}" "oci:$cache/$name:$tag" "docker://$ref"
    echo "export QUAYCTL_IMAGE_$var=$ref" >> "$state/real/images.env.tmp"
  done
  cat "$state/real/images.env.tmp" >> "$state/real/images.env"; rm "$state/real/images.env.tmp"
  log "pushed pause and payload images to $QUAYCTL_REGISTRY and $QUAYCTL_PRIVATE_REGISTRY ($((SECONDS - start)) s)"
}

controller() {
  local state=$1 start=$SECONDS ctx arch ref refs=()
  [ "$(uname -m)" = x86_64 ] || die "the prebuilt controller image is assembled on amd64 hosts (this is $(uname -m))"
  # shellcheck disable=SC1091
  . "$state/real/registry.env"
  # shellcheck disable=SC1091
  . "$state/real/docker.env"
  for b in quayctl-controller quayctl-noop; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b missing (make build, or set QUAYCTL_BIN_DIR)"
  done
  local arm64_noop=${QUAYCTL_NOOP_ARM64:-$root/target/aarch64-unknown-linux-gnu/release/quayctl-noop}
  [ -x "$arm64_noop" ] || die "$arm64_noop missing (make noop, or set QUAYCTL_NOOP_ARM64)"
  # The context: the Dockerfile and target/prebuilt/<arch>/ (what .dockerignore lets in). amd64 gets
  # the controller and its no-op; arm64 the arm64 no-op only (no aarch64 Rust standard library here):
  # a helper-only variant, as the Dockerfile's header says.
  ctx=$state/real/image-context
  rm -rf "$ctx"; mkdir -p "$ctx/target/prebuilt/amd64" "$ctx/target/prebuilt/arm64"
  cp "$root/Dockerfile" "$root/.dockerignore" "$ctx/"
  cp "$bin_dir/quayctl-controller" "$bin_dir/quayctl-noop" "$ctx/target/prebuilt/amd64/"
  cp "$arm64_noop" "$ctx/target/prebuilt/arm64/quayctl-noop"
  ref=$QUAYCTL_REGISTRY/quayctl-controller:e2e
  for arch in amd64 arm64; do
    DOCKER_BUILDKIT=1 docker_cli build --quiet --platform "linux/$arch" --build-arg BINARIES=prebuilt \
      --build-arg BASE=scratch -t "$ref-$arch" "$ctx" >/dev/null
    docker_cli push --quiet "$ref-$arch" >/dev/null 2>&1 || docker_cli push "$ref-$arch" >&2
    refs+=("$ref-$arch")
  done
  # The index: docker manifest (the registry is on 127.0.0.1, which Docker treats as insecure).
  docker_cli manifest rm "$ref" >/dev/null 2>&1 || true
  docker_cli manifest create --insecure "$ref" "${refs[@]}" >/dev/null
  for arch in amd64 arm64; do
    docker_cli manifest annotate --os linux --arch "$arch" "$ref" "$ref-$arch"
  done
  docker_cli manifest push --insecure --purge "$ref" >/dev/null
  echo "export QUAYCTL_IMAGE_CONTROLLER=$ref" >> "$state/real/images.env"
  log "controller image $ref: an index of linux/amd64 (controller + no-op from $bin_dir) and linux/arm64 (no-op $arm64_noop), built from the Dockerfile and pushed ($((SECONDS - start)) s)"
}

case "${1:-}" in
  oci) oci "${2:?usage: images.sh oci DIR}" ;;
  push) push "${2:?usage: images.sh push STATE}" ;;
  controller) controller "${2:?usage: images.sh controller STATE}" ;;
  all) push "${2:?usage: images.sh all STATE}"; controller "$2" ;;
  *) echo "usage: images.sh oci DIR | push STATE | controller STATE | all STATE" >&2; exit 2 ;;
esac
