#!/usr/bin/env bash
# `make bench`, real-node part: the pull floor (issue 8, item 5; issue 24), and the status writes a
# real kubelet makes per puller pod and per DaemonSet pod (what make bench's kwok stages charge each).
# For the ~200 MiB payload image (4 layers of random data, gzip), on one real node (kubelet +
# containerd 2.x, registry on the run's bridge), three ways, each into a containerd that has none of
# its blobs:
#   direct   `ctr images pull` (fetch + unpack, the same registry, the same network path)
#   kubelet  quayctl-controller, PULL_STRATEGY=kubelet: started -> the image is in the CRI's image
#            store (polled every 0.1 s), and the controller's own exit
#   volume   the same with PULL_STRATEGY=volume (an image volume, the node's pause as the runner)
# medians of BENCH_REAL_ROUNDS (3) rounds, and the ratios to direct. The node first gets the pause
# and helper images (a warm-up run with a 1 MiB payload), so the figures are the payload's pull plus
# what each strategy adds around it.
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
images_cache=${XDG_CACHE_HOME:-$HOME/.cache}/quayctl-controller/test-images/v2

kubectl create namespace bench-real >/dev/null
rlog "warm-up: pause + helper image on both nodes"
controller_run warmup QUAY_IMAGES="$QUAYCTL_IMAGE_SMALL" || { cat "$state/warmup.err" "$state/warmup.out"; exit 1; }

# The large image's manifest (every reference to it goes), and its first layer: gone from the
# content store means the next pull fetches it all.
read -r manifest layer diff_id < <(python3 - "$images_cache/payload-large" <<'PY'
import json, sys
d = sys.argv[1]
blob = lambda digest: json.load(open(f"{d}/blobs/sha256/{digest.split(':')[1]}"))
m = json.load(open(f"{d}/index.json"))["manifests"][0]["digest"]
manifest = blob(m)
print(m, manifest["layers"][0]["digest"], blob(manifest["config"]["digest"])["rootfs"]["diff_ids"][0])
PY
)
# forget NODE: the large image off NODE's containerd, blobs and all, once no container of a run
# holds it (the runs' pods are gone: PULLER_KIND=pod, KEEP_LAST_PULLER=false).
forget() {
  for _ in $(seq 100); do
    [ -z "$(kubectl -n bench-real get pods -o name)" ] &&
      [ -z "$("$hack/real-node.sh" ctr "$state" "$1" -n k8s.io containers ls -q 'labels."io.kubernetes.pod.namespace"==bench-real')" ] && break
    sleep 0.2
  done
  # The CRI keeps each image under its tag, its repo@digest and its ID (sha256:...): all of them go;
  # then the garbage collector takes the blobs, and the unpacked layers once no sandbox's image
  # volume leases them (the pod's sandbox goes a moment after the pod).
  local refs
  for _ in $(seq 60); do
    refs=$("$hack/real-node.sh" ctr "$state" "$1" -n k8s.io images ls | awk -v m="$manifest" '$3 == m { print $1 }')
    # shellcheck disable=SC2086
    [ -z "$refs" ] || "$hack/real-node.sh" ctr "$state" "$1" -n k8s.io images rm --sync $refs >/dev/null
    if ! "$hack/real-node.sh" ctr "$state" "$1" -n k8s.io content ls -q | grep -qxF "$layer" &&
      ! "$hack/real-node.sh" ctr "$state" "$1" -n k8s.io snapshots ls | awk '{ print $1 }' | grep -qxF "$diff_id"; then
      return 0
    fi
    sleep 0.5
  done
  rlog "ERROR: $layer or its unpacked layer $diff_id still on $1 after removing the image: the next pull would not fetch and unpack it"
  exit 1
}
# measure METHOD: seconds from start to the image in floor-a's CRI image store (m_present), and to
# the end (m_exit: ctr's exit, or the controller's exit 0).
measure() {
  local t0 t_present t_exit pid code=0 run=$1-$round
  t0=$(now)
  case $1 in
    direct) "$hack/real-node.sh" ctr "$state" floor-a -n k8s.io images pull --plain-http "$QUAYCTL_IMAGE_LARGE" > "$state/$run.log" 2>&1 &
            pid=$! ;;
    kubelet|volume)
      controller_run "$run" PULL_STRATEGY="$1" RUNNER_IMAGE="$QUAYCTL_IMAGE_PAUSE" PULLER_KIND=pod KEEP_LAST_PULLER=false \
        QUAY_IMAGES="$QUAYCTL_IMAGE_LARGE" NODE_SELECTOR=kubernetes.io/hostname=floor-a &
      pid=$! ;;
  esac
  until present floor-a "$QUAYCTL_IMAGE_LARGE"; do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  t_present=$(now)
  wait "$pid" || code=$?
  t_exit=$(now)
  if [ "$code" != 0 ] || ! present floor-a "$QUAYCTL_IMAGE_LARGE"; then
    cat "$state/$run".*; rlog "ERROR: $1 (round $round) failed (exit $code)"; exit 1
  fi
  m_present=$(secs "$t0" "$t_present"); m_exit=$(secs "$t0" "$t_exit")
}

# The same node, the same image, three ways, three rounds in turn (the order rotates per round).
rounds=${BENCH_REAL_ROUNDS:-3}
declare -A present_s exit_s
order=(direct kubelet volume)
for round in $(seq "$rounds"); do
  for method in "${order[@]}"; do
    forget floor-a
    measure "$method"
    present_s[$method]+="$m_present "; exit_s[$method]+="$m_exit "
    rlog "round $round: $method: image on floor-a after $m_present s, done after $m_exit s"
  done
  order=("${order[@]:1}" "${order[0]}")
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
size=$(du -sb "$images_cache/payload-large/blobs" | cut -f1)
direct=$(median <<< "${present_s[direct]}")

cat <<R

quayctl-controller pull floor: $QUAYCTL_IMAGE_LARGE ($((size / 1048576)) MiB compressed, 4 layers), node floor-a,
medians of $rounds rounds (the image and its blobs removed before each):
                                            image on node      done   vs ctr pull
  direct ctr images pull                    $(printf '%9.2f s %8.2f s' "$direct" "$(median <<< "${exit_s[direct]}")")     1.00x
R
for method in kubelet volume; do
  p=$(median <<< "${present_s[$method]}")
  printf '  controller, PULL_STRATEGY=%-8s        %9.2f s %8.2f s %8.2fx\n' "$method" "$p" "$(median <<< "${exit_s[$method]}")" \
    "$(awk -v a="$p" -v b="$direct" 'BEGIN { printf "%.2f", a / b }')"
done
echo "  (controller rows: from the binary's start, through its node list, puller pod and the kubelet's pull, to its exit 0)"

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
