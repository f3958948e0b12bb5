#!/usr/bin/env bash
# `make bench`, real-node part: the pull floor (issue 8, item 5), and the status writes a real kubelet
# makes per puller pod and per DaemonSet pod (what make bench's kwok stages charge each). For the ~200 MiB payload image
# (4 layers of random data, gzip), on real nodes (kubelet + containerd, registry on the run's bridge):
#   direct      `ctr images pull` of the image into a node's containerd that has none of its blobs
#               (node floor-a; fetch + unpack, the same registry, the same network path)
#   controller  quayctl-controller started -> the image is in the CRI's image store on node floor-b
#               (polled every 0.1 s), and the controller's own exit
# and their ratio. Both nodes first get the pause and helper images (a warm-up run with a 1 MiB
# payload), so the figure is the payload's pull plus what the controller adds around it.
set -euo pipefail
# shellcheck source=hack/real-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/real-lib.sh"

real_preflight
real_binaries
cd "$root"
trap 'real_teardown $?' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
real_setup bench-real floor-a floor-b

now() { date +%s.%N; }
secs() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.2f", e - s }'; }
controller_run() { # controller_run NAME ENV...
  local name=$1; shift
  env -i PATH=/usr/bin:/bin KUBECONFIG="$state/controller.kubeconfig" HELPER_IMAGE="$QUAYCTL_IMAGE_CONTROLLER" \
    NAMESPACE=bench-real RUN_ID="$name" "$@" "$controller" > "$state/$name.out" 2> "$state/$name.err"
}
present() { "$hack/real-node.sh" ctr "$state" "$1" -n k8s.io images ls -q | grep -qxF "$2"; }

kubectl create namespace bench-real >/dev/null
rlog "warm-up: pause + helper image on both nodes"
controller_run warmup QUAY_IMAGES="$QUAYCTL_IMAGE_SMALL" || { cat "$state/warmup.err" "$state/warmup.out"; exit 1; }
for n in floor-a floor-b; do
  if present "$n" "$QUAYCTL_IMAGE_LARGE"; then rlog "ERROR: $QUAYCTL_IMAGE_LARGE already on $n"; exit 1; fi
done

rlog "direct: ctr images pull on floor-a"
t0=$(now)
"$hack/real-node.sh" ctr "$state" floor-a -n k8s.io images pull --plain-http "$QUAYCTL_IMAGE_LARGE" > "$state/ctr-pull.log"
t1=$(now)
direct=$(secs "$t0" "$t1")

rlog "controller: QUAY_IMAGES=$QUAYCTL_IMAGE_LARGE, NODE_SELECTOR=kubernetes.io/hostname=floor-b"
t0=$(now)
controller_run floor QUAY_IMAGES="$QUAYCTL_IMAGE_LARGE" NODE_SELECTOR=kubernetes.io/hostname=floor-b &
pid=$!
until present floor-b "$QUAYCTL_IMAGE_LARGE"; do
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  sleep 0.1
done
t_present=$(now)
code=0; wait "$pid" || code=$?
t_exit=$(now)
if [ "$code" != 0 ] || ! present floor-b "$QUAYCTL_IMAGE_LARGE"; then
  cat "$state/floor.err" "$state/floor.out"; rlog "ERROR: controller run failed (exit $code)"; exit 1
fi
to_present=$(secs "$t0" "$t_present")
kubelet=$(kubectl -n bench-real get events --field-selector reason=Pulled -o jsonpath='{range .items[*]}{.message}{"\n"}{end}' |
  grep -F "$QUAYCTL_IMAGE_LARGE" | grep -oE 'in [0-9.]+m?s( \([0-9.]+m?s including waiting\))?' | head -n 1 || true)
size=$(du -sb "$(cd "${XDG_CACHE_HOME:-$HOME/.cache}/quayctl-controller/test-images/v1/payload-large/blobs" && pwd)" | cut -f1)

cat <<R

quayctl-controller pull floor: $QUAYCTL_IMAGE_LARGE ($((size / 1048576)) MiB compressed, 4 layers), one real node each
  direct ctr images pull (floor-a, clean store)   $(printf '%7.2f' "$direct") s
  controller start -> image on node (floor-b)     $(printf '%7.2f' "$to_present") s   ratio $(awk -v a="$to_present" -v b="$direct" 'BEGIN { printf "%.2f", a / b }')x
  controller start -> exit 0                      $(printf '%7.2f' "$(secs "$t0" "$t_exit")") s
  kubelet's own figure for the pull               ${kubelet:-n/a}
R
tail -n 1 "$state/floor.out"

# What a real kubelet writes per pod, for make bench's kwok model (hack/kwok/stages.yaml): the status
# writes for a puller pod (PULLER_KIND=pod, floor-a) and for a DaemonSet pod running the same pulls
# as init containers (floor-b), the same two images, new to both nodes; from the audit log.
images="$QUAYCTL_IMAGE_MEDIUM;$QUAYCTL_IMAGE_POD_KIND"
controller_run status PULLER_KIND=pod QUAY_IMAGES="$images" NODE_SELECTOR=kubernetes.io/hostname=floor-a ||
  { cat "$state/status.err" "$state/status.out"; rlog "ERROR: controller run failed"; exit 1; }
noop='{name: noop, mountPath: /.quayctl-noop, readOnly: true}'
kubectl create namespace bench-real-ds >/dev/null
kubectl -n bench-real-ds apply -f - >/dev/null <<DS
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: prepull}
spec:
  selector: {matchLabels: {app: prepull}}
  template:
    metadata: {labels: {app: prepull}}
    spec:
      nodeSelector: {kubernetes.io/hostname: floor-b}
      volumes: [{name: noop, emptyDir: {}}]
      initContainers:
      - {name: install, image: "$QUAYCTL_IMAGE_CONTROLLER", command: [/quayctl-noop, --install, /.quayctl-noop/quayctl-noop], volumeMounts: [{name: noop, mountPath: /.quayctl-noop}]}
      - {name: pull-0, image: "$QUAYCTL_IMAGE_MEDIUM", command: [/.quayctl-noop/quayctl-noop], volumeMounts: [$noop]}
      - {name: pull-1, image: "$QUAYCTL_IMAGE_POD_KIND", command: [/.quayctl-noop/quayctl-noop], volumeMounts: [$noop]}
      containers:
      - {name: pause, image: "$QUAYCTL_REGISTRY/quayctl-e2e/pause:3.10"}
DS
for _ in $(seq 120); do
  [ "$(kubectl -n bench-real-ds get ds prepull -o jsonpath='{.status.numberReady}')" = 1 ] && break
  sleep 1
done
[ "$(kubectl -n bench-real-ds get ds prepull -o jsonpath='{.status.numberReady}')" = 1 ] ||
  { kubectl -n bench-real-ds describe pods >&2; rlog "ERROR: the DaemonSet pod is not ready after 120 s"; exit 1; }
sleep 12 # the kubelet's status manager syncs every 10 s: let a late write land
python3 - "$state" <<'PY'
import collections, glob, json, sys
writes = collections.Counter()
for line in (l for path in sorted(glob.glob(f"{sys.argv[1]}/logs/audit*.jsonl")) for l in open(path)):
    e = json.loads(line)
    ref = e.get("objectRef", {})
    if (e["stage"] == "ResponseComplete" and e["verb"] in ("patch", "update") and ref.get("resource") == "pods"
            and ref.get("subresource") == "status" and e["user"]["username"].startswith("system:node:")):
        writes[(ref.get("namespace"), ref.get("name", ""))] += 1
puller = [c for (ns, name), c in writes.items() if ns == "bench-real" and name.startswith("prepull-status-")]
daemon = [c for (ns, name), c in writes.items() if ns == "bench-real-ds"]
if len(puller) != 1 or len(daemon) != 1:
    sys.exit(f"expected one puller pod and one DaemonSet pod in the audit log, found {len(puller)} and {len(daemon)}")
print(f"  kubelet status writes, 2 new images: puller pod {puller[0]}, DaemonSet pod {daemon[0]}")
PY
