#!/usr/bin/env bash
# Real-node end-to-end tests (issue 8): images really pulled by a kubelet + containerd, the CronJob
# really run, `docker run` really tried, the Dockerfile really built. One cluster (REAL_NODES=1) with
# two real nodes (hack/real-node.sh), a registry and a dockerd of the run, images made here.
#
#   tests/e2e-real.sh [TEST...]      all tests, or only the named ones (test_* function names)
#
# Prints `ok`/`FAILED` per test, then `N passed, N failed` on a line of its own (the teardown's leak
# check counts as a test); exits non-zero on any failure. Everything is torn down by a trap, also on
# failure or Ctrl-C, and the last check asserts nothing of the run is left on the host.
# QUAYCTL_BIN_DIR: the static binaries to test (default: `make build`, run first).
set -euo pipefail
# shellcheck source=hack/real-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../hack/real-lib.sh"

# Upper bound, in seconds, for a run whose every puller hits a pull error (missing tag, registry down),
# from start to exit, with DEADLINE_SECONDS=300 and PULL_ERROR_GRACE_SECONDS=5: the controller fails
# fast on the kubelet's ErrImagePull (~1.5 s) instead of waiting for the deadline.
PULL_FAILURE_MAX_SECONDS=${PULL_FAILURE_MAX_SECONDS:-45}
NODES=(real-1 real-2)
POOL=quayctl-e2e/pool=main # NODES carry it; the nodes of the GC and joining tests do not
GC_KEEP=real-gc-keep GC_DROP=real-gc-drop JOIN=real-join FROM=real-from
NS=quayctl-controller # the shipped manifest's namespace
# The startup taint of the shipped manifest (its ConfigMap's STARTUP_TAINT).
STARTUP_TAINT=$(sed -n 's/^ *STARTUP_TAINT: *//p' "$(dirname "${BASH_SOURCE[0]}")/../k8s/deploy/quayctl-controller-cronjob.yaml")

passed=0; failed=0; current=
k() { kubectl "$@"; }
fail() { echo "    assertion failed: $*" >&2; exit 1; }
note() { echo "    $*" >&2; }

# wait_until DESCRIPTION SECONDS CMD...: poll CMD until it succeeds, or fail the test.
wait_until() { poll "$2" "$1" "${@:3}" || fail "timed out waiting for $1"; }

# Image references (repo:tag) in a node's containerd, CRI namespace k8s.io.
node_images() { "$hack/real-node.sh" ctr "$state" "$1" -n k8s.io images ls -q | grep -v '^sha256:' || true; }
node_has_image() { node_images "$1" | grep -qxF "$2"; }
# The image names the kubelet reports in node.status.images.
status_has_image() {
  k get node "$1" -o jsonpath='{range .status.images[*]}{range .names[*]}{@}{"\n"}{end}{end}' | grep -qxF "$2"
}
job_condition() { # job_condition NS JOB -> Complete|Failed|"" (first terminal condition that is True)
  k -n "$1" get job "$2" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{"\n"}{end}' |
    grep -xE 'Complete|Failed' | head -n 1 || true
}
job_done() { [ -n "$(job_condition "$@")" ]; }
pullers_in_phase() { # pullers_in_phase NS PHASE COUNT: exactly COUNT puller pods in NS are in PHASE
  [ "$(k -n "$1" get pods -l quayctl-controller/run -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -cx "$2")" = "$3" ]
}
run_objects_gone() { [ -z "$(k -n "$1" get jobs,pods -l "quayctl-controller/run=$2" -o name)" ]; }
pullers_complete() { # pullers_complete NS RUN_ID COUNT: COUNT puller Jobs of the run, all Complete
  local names j
  names=$(k -n "$1" get jobs -l "quayctl-controller/run=$2" -o name)
  [ "$(echo "$names" | grep -c .)" = "$3" ] || return 1
  for j in $names; do [ "$(job_condition "$1" "${j#*/}")" = Complete ] || return 1; done
}
new_namespace() { # new_namespace NAME: enforcing the restricted Pod Security Standard, like the manifest's
  k create namespace "$1" >/dev/null
  k label namespace "$1" pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest >/dev/null
}
# run_controller LOG_PREFIX ENV...: the static binary on the host, against the apiserver (bridge address).
run_controller() {
  local out=$1; shift
  env -i PATH=/usr/bin:/bin KUBECONFIG="$state/controller.kubeconfig" HELPER_IMAGE="$QUAYCTL_IMAGE_CONTROLLER" \
    "$@" "$controller" > "$out.out" 2> "$out.err"
}
# Puller Jobs of a run and their pods' nodes: "<job> <node-name annotation> <pod spec.nodeName> <pod phase>".
pullers() { # pullers NS RUN_ID
  local job node
  k -n "$1" get jobs -l "quayctl-controller/run=$2" \
    -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.annotations.quayctl-controller/node-name}{"\n"}{end}' |
  while read -r job node; do
    echo "$job $node $(k -n "$1" get pods -l "job-name=$job" -o jsonpath='{range .items[*]}{.spec.nodeName} {.status.phase}{end}')"
  done
}

# ------------------------------------------------------------------------------------------ tests

# 1. The CronJob as users run it: `kubectl apply -k` of a kustomization over k8s/deploy (images: and a
#    patch, as the manifest suggests), one Job from the CronJob; the controller runs in a pod on a real
#    node with in-cluster config, its pullers run on every real node under `restricted`, the images
#    land in containerd and in node.status.images; pullers carry a TTL and are garbage-collected with
#    the controller's Job.
test_cronjob_as_users_run_it() {
  local kdir=$state/kustomize images="$QUAYCTL_IMAGE_SMALL;$QUAYCTL_IMAGE_MEDIUM" job=e2e-cron
  mkdir -p "$kdir"
  cat > "$kdir/kustomization.yaml" <<K
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $(realpath --relative-to="$kdir" "$root/k8s/deploy")
images:
- name: quayctl-controller
  newName: ${QUAYCTL_IMAGE_CONTROLLER%:*}
  newTag: ${QUAYCTL_IMAGE_CONTROLLER##*:}
patches:
- patch: |-
    apiVersion: batch/v1
    kind: CronJob
    metadata: {name: quayctl-controller, namespace: $NS}
    spec:
      jobTemplate:
        spec:
          template:
            spec:
              nodeSelector: {quayctl-e2e/pool: main}
              containers:
              - name: quayctl-controller
                env:
                - {name: QUAY_IMAGES, value: "$images"}
                - {name: DEADLINE_SECONDS, value: "120"}
                - {name: NODE_SELECTOR, value: "$POOL"}
K
  k apply -k "$kdir" >/dev/null
  [ "$(k get cronjob -n "$NS" quayctl-controller -o jsonpath='{.spec.jobTemplate.spec.template.spec.containers[0].image}')" = "$QUAYCTL_IMAGE_CONTROLLER" ] ||
    fail "kustomize images: did not set the controller image"
  wait_until "the quayctl-controller ServiceAccount" 30 k -n "$NS" get serviceaccount quayctl-controller
  k -n "$NS" create job "$job" --from=cronjob/quayctl-controller >/dev/null
  wait_until "Job $job to finish" 180 job_done "$NS" "$job"
  local pod node code
  pod=$(k -n "$NS" get pods -l "job-name=$job" -o jsonpath='{.items[0].metadata.name}')
  k -n "$NS" logs "$pod" > "$state/cron.log" 2>&1 || true
  [ "$(job_condition "$NS" "$job")" = Complete ] || { cat "$state/cron.log" >&2; fail "Job $job is not Complete"; }
  code=$(k -n "$NS" get pod "$pod" -o jsonpath='{.status.containerStatuses[0].state.terminated.exitCode}')
  [ "$code" = 0 ] || fail "controller pod exit code $code"
  node=$(k -n "$NS" get pod "$pod" -o jsonpath='{.spec.nodeName}')
  [[ " ${NODES[*]} " == *" $node "* ]] || fail "controller pod ran on '$node', not on a real node"
  note "controller pod $pod ran on $node, exit 0; report: $(grep -E '^run ' "$state/cron.log" || true)"
  grep -qE "^run $job: 2/2 eligible nodes succeeded" "$state/cron.log" || { cat "$state/cron.log" >&2; fail "report does not say 2/2 succeeded"; }
  # In-cluster config: no kubeconfig in the pod, its ServiceAccount's requests reached the apiserver
  # from the node's address (pod network -> kubernetes Service -> kube-proxy DNAT -> bridge).
  k -n "$NS" get pod "$pod" -o jsonpath='{.spec.containers[0].env[*].name}' | grep -qw KUBECONFIG && fail "pod has KUBECONFIG"
  local node_ip sa=system:serviceaccount:$NS:quayctl-controller
  node_ip=$(k get node "$node" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
  python3 - "$state/logs/audit.jsonl" "$sa" "$node_ip" <<'PY' || fail "no Job create by $sa from $node_ip in the audit log"
import json, sys
log, user, ip = sys.argv[1:]
for line in open(log):
    e = json.loads(line)
    if e["user"]["username"] == user and e["verb"] == "create" and e.get("objectRef", {}).get("resource") == "jobs" \
            and e.get("sourceIPs", [""])[0] == ip and e["stage"] == "ResponseComplete" and e["responseStatus"]["code"] == 201:
        sys.exit(0)
sys.exit(1)
PY
  # The pullers: one per real node, pinned there, all Complete, admitted in the restricted namespace.
  [ "$(k get ns "$NS" -o jsonpath='{.metadata.labels.pod-security\.kubernetes\.io/enforce}')" = restricted ] ||
    fail "namespace $NS does not enforce restricted"
  local lines j n pn phase
  wait_until "both puller Jobs of $job to be Complete" 60 pullers_complete "$NS" "$job" 2
  lines=$(pullers "$NS" "$job")
  note "pullers: $(echo "$lines" | tr '\n' ';')"
  [ "$(echo "$lines" | wc -l)" = 2 ] || fail "expected 2 puller Jobs, got: $lines"
  while read -r j n pn phase; do
    [ "$n" = "$pn" ] || fail "puller $j for $n ran on '$pn'"
    [ "$phase" = Succeeded ] || fail "puller $j pod phase '$phase'"
    [ "$(job_condition "$NS" "$j")" = Complete ] || fail "puller $j not Complete"
  done <<< "$lines"
  [ "$(echo "$lines" | awk '{print $3}' | sort -u | tr '\n' ' ')" = "real-1 real-2 " ] || fail "pullers not on both real nodes"
  # The summary Event on the controller's Job.
  local ev
  ev=$(k -n "$NS" get events --field-selector "involvedObject.kind=Job,involvedObject.name=$job" \
    -o jsonpath='{range .items[*]}{.reason}: {.message}{"\n"}{end}')
  note "events on Job $job: $(echo "$ev" | paste -sd '|')"
  echo "$ev" | grep -qE "^PrePullSucceeded: run $job: 2/2 eligible nodes succeeded" || fail "no PrePullSucceeded summary Event on Job $job"
  # Really on the nodes: containerd's CRI namespace, then the kubelet's node.status.images.
  local img nd
  for nd in "${NODES[@]}"; do
    for img in "$QUAYCTL_IMAGE_SMALL" "$QUAYCTL_IMAGE_MEDIUM" "$QUAYCTL_IMAGE_CONTROLLER"; do
      node_has_image "$nd" "$img" || fail "$img not in $nd's containerd (has: $(node_images "$nd" | tr '\n' ' '))"
    done
  done
  local t0=$SECONDS
  for nd in "${NODES[@]}"; do
    for img in "$QUAYCTL_IMAGE_SMALL" "$QUAYCTL_IMAGE_MEDIUM"; do
      wait_until "$img in $nd's node.status.images" 120 status_has_image "$nd" "$img"
    done
  done
  note "node.status.images listed the payloads after $((SECONDS - t0)) s more"
  # Ownership: the CronJob owns its Job and (KEEP_LAST_PULLER, the default) the pullers, which
  # have no TTL: they keep the images in use until a later run succeeds on their node, and go with
  # the CronJob, not with the run's Job (which its history limit deletes).
  local cj_uid
  cj_uid=$(k -n "$NS" get cronjob quayctl-controller -o jsonpath='{.metadata.uid}')
  [ "$(k -n "$NS" get job "$job" -o jsonpath='{.metadata.ownerReferences[0].uid}')" = "$cj_uid" ] ||
    fail "Job $job is not owned by the CronJob"
  grep -q 'puller kept' "$state/cron.log" || fail "the report does not say the pullers are kept"
  while read -r j _; do
    [ "$(k -n "$NS" get job "$j" -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].uid}/{.metadata.ownerReferences[0].controller}')" = "CronJob/quayctl-controller/$cj_uid/" ] ||
      fail "puller $j is not owned by the CronJob (and only as a non-controller owner)"
    [ -z "$(k -n "$NS" get job "$j" -o jsonpath='{.spec.ttlSecondsAfterFinished}')" ] || fail "puller $j has a TTL"
  done <<< "$lines"
  k -n "$NS" delete job "$job" --cascade=background --wait=false >/dev/null
  wait_until "the garbage collector to delete the controller's pod" 60 sh -c "[ -z \"\$(kubectl -n $NS get pods -l job-name=$job -o name)\" ]"
  [ "$(k -n "$NS" get jobs -l "quayctl-controller/run=$job" -o name | grep -c .)" = 2 ] ||
    fail "the kept pullers went with the run's Job"
  [ "$(k -n "$NS" get pods -l "quayctl-controller/run=$job" --field-selector status.phase=Succeeded -o name | grep -c .)" = 2 ] ||
    fail "the kept pullers' pods (which keep the images in use) are gone"
}

# 2. `docker run` against a kubeconfig, the README's command (plus --network host): the image built
#    from the Dockerfile, run by the run's dockerd; both nodes pull the payload.
test_docker_run_against_a_kubeconfig() {
  local kc=$state/docker.kubeconfig ns=e2e-docker out=$state/docker-run
  new_namespace "$ns"
  # A kubeconfig that carries its CA and token (nothing else to mount), readable by the image's uid.
  k --kubeconfig "$state/controller.kubeconfig" config view --raw --minify --flatten > "$kc"
  chmod 0644 "$kc"
  local code=0 t0=$SECONDS
  docker_cli run --rm --network host -v "$kc:/kubeconfig:ro" -e KUBECONFIG=/kubeconfig \
    -e QUAY_IMAGES="$QUAYCTL_IMAGE_MEDIUM;$QUAYCTL_IMAGE_LARGE" \
    -e HELPER_IMAGE="$QUAYCTL_IMAGE_CONTROLLER" \
    -e NAMESPACE="$ns" -e NODE_SELECTOR="$POOL" \
    "$QUAYCTL_IMAGE_CONTROLLER" > "$out.out" 2> "$out.err" || code=$?
  note "docker run exited $code after $((SECONDS - t0)) s: $(tail -n 1 "$out.out")"
  [ "$code" = 0 ] || { cat "$out.err" "$out.out" >&2; fail "docker run exit code $code"; }
  grep -qE '2/2 eligible nodes succeeded' "$out.out" || fail "report does not say 2/2 succeeded"
  local nd img
  for nd in "${NODES[@]}"; do
    for img in "$QUAYCTL_IMAGE_MEDIUM" "$QUAYCTL_IMAGE_LARGE"; do
      node_has_image "$nd" "$img" || fail "$img not in $nd's containerd"
    done
  done
}

# 2b. The image both of those ran is an OCI index for linux/amd64 and linux/arm64 (hack/images.sh
#     builds it from the Dockerfile, once per platform): each entry's layer holds the no-op of its
#     architecture, the amd64 one the controller too; the arm64 no-op runs under qemu-aarch64 and
#     exits 0 (and installs itself, as the init container does).
test_the_image_is_an_index_for_amd64_and_arm64() {
  local dir=$state/index out arch
  rm -rf "$dir"; mkdir -p "$dir"
  # The registry's HTTP API on the run's bridge: the index, each platform's manifest, its layers.
  out=$(python3 - "$QUAYCTL_IMAGE_CONTROLLER" "$dir" <<'PY'
import gzip, io, json, sys, tarfile, urllib.request
ref, out = sys.argv[1], sys.argv[2]
host, rest = ref.split("/", 1)
repo, tag = rest.rsplit(":", 1)
INDEX = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")
def get(path, accept=()):
    req = urllib.request.Request(f"http://{host}/v2/{repo}/{path}", headers={"Accept": ", ".join(accept)} if accept else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.headers.get("Content-Type", ""), r.read()
kind, body = get(f"manifests/{tag}", INDEX + MANIFEST)
if kind not in INDEX:
    sys.exit(f"{ref} is a {kind}, not an index")
platforms = {}
for m in json.loads(body)["manifests"]:
    p = m.get("platform", {})
    platforms[f"{p.get('os')}/{p.get('architecture')}"] = m["digest"]
print("platforms", " ".join(sorted(platforms)))
for platform, digest in sorted(platforms.items()):
    arch = platform.split("/")[1]
    _, body = get(f"manifests/{digest}", MANIFEST)
    manifest = json.loads(body)
    _, config = get(f"blobs/{manifest['config']['digest']}")
    print("config", arch, json.loads(config)["architecture"])
    for layer in manifest["layers"]:
        _, blob = get(f"blobs/{layer['digest']}")
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob)) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    name = member.name.lstrip("./")
                    with open(f"{out}/{arch}-{name.replace('/', '_')}", "wb") as f:
                        f.write(tar.extractfile(member).read())
                    print("file", arch, name)
PY
) || fail "reading the index from the registry: $out"
  note "$(echo "$out" | paste -sd ' ')"
  grep -qx "platforms linux/amd64 linux/arm64" <<< "$out" || fail "the index does not list exactly linux/amd64 and linux/arm64: $out"
  for arch in amd64 arm64; do
    grep -qx "config $arch $arch" <<< "$out" || fail "the $arch entry's config is not for $arch: $out"
  done
  grep -qx "file amd64 quayctl-controller" <<< "$out" || fail "no controller in the amd64 image"
  file -b "$dir/amd64-quayctl-noop" | grep -q 'x86-64' || fail "the amd64 no-op is $(file -b "$dir/amd64-quayctl-noop")"
  file -b "$dir/arm64-quayctl-noop" | grep -q 'ARM aarch64' || fail "the arm64 no-op is $(file -b "$dir/arm64-quayctl-noop")"
  file -b "$dir/arm64-quayctl-noop" | grep -q 'statically linked' || fail "the arm64 no-op is not static"
  chmod +x "$dir/arm64-quayctl-noop"
  qemu-aarch64-static "$dir/arm64-quayctl-noop" || fail "the arm64 no-op exited $? under qemu-aarch64"
  qemu-aarch64-static "$dir/arm64-quayctl-noop" --install "$dir/installed" || fail "the arm64 no-op's --install failed under qemu"
  cmp -s "$dir/arm64-quayctl-noop" "$dir/installed" || fail "the installed no-op is not a copy"
  note "arm64 no-op: $(file -b "$dir/arm64-quayctl-noop" | cut -d, -f1-2), exit 0 under qemu-aarch64-static"
}

# 3. Real pull failures: a tag the registry does not have, and a registry nothing listens on. The
#    report names the image, the node and the kubelet's own message; exit 1.
test_real_pull_failures() {
  local dead_port missing unreachable t0 code1=0 code2=0
  dead_port=$(python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$QUAYCTL_REAL_HOST_IP")
  missing=$QUAYCTL_REGISTRY/quayctl-e2e/payload-small:no-such-tag
  unreachable=$QUAYCTL_REAL_HOST_IP:$dead_port/quayctl-e2e/payload-small:1
  new_namespace e2e-missing; new_namespace e2e-unreachable
  t0=$(date +%s)
  run_controller "$state/missing" QUAY_IMAGES="$missing" NAMESPACE=e2e-missing DEADLINE_SECONDS=300 PULL_ERROR_GRACE_SECONDS=5 \
    NODE_SELECTOR="$POOL" &
  local p1=$!
  run_controller "$state/unreachable" QUAY_IMAGES="$unreachable" NAMESPACE=e2e-unreachable DEADLINE_SECONDS=300 PULL_ERROR_GRACE_SECONDS=5 \
    NODE_SELECTOR="$POOL" &
  local p2=$!
  wait "$p1" || code1=$?
  wait "$p2" || code2=$?
  local took=$(( $(date +%s) - t0 ))
  note "missing tag: exit $code1; unreachable registry: exit $code2; both done after $took s (bound: $PULL_FAILURE_MAX_SECONDS s)"
  sed 's/^/    | /' "$state/missing.out" "$state/unreachable.out" >&2
  [ "$code1" = 1 ] || { cat "$state/missing.err" >&2; fail "missing tag: exit $code1, want 1"; }
  [ "$code2" = 1 ] || { cat "$state/unreachable.err" >&2; fail "unreachable registry: exit $code2, want 1"; }
  [ "$took" -le "$PULL_FAILURE_MAX_SECONDS" ] || fail "took $took s > PULL_FAILURE_MAX_SECONDS=$PULL_FAILURE_MAX_SECONDS"
  local nd row
  for nd in "${NODES[@]}"; do
    row=$(grep -E "^$nd " "$state/missing.out") || fail "no report row for $nd (missing tag)"
    [[ $row == *"$missing"* ]] || fail "missing-tag row for $nd does not name the image: $row"
    [[ $row == *"not found"* ]] || fail "missing-tag row for $nd lacks the kubelet's 'not found': $row"
    row=$(grep -E "^$nd " "$state/unreachable.out") || fail "no report row for $nd (unreachable)"
    [[ $row == *"$unreachable"* ]] || fail "unreachable row for $nd does not name the image: $row"
    [[ $row == *"connection refused"* ]] || fail "unreachable row for $nd lacks the kubelet's 'connection refused': $row"
  done
}

# 4. Two real nodes: a puller pod runs on its own node and nowhere else. One run over both nodes with
#    a fresh image, then one run per node (NODE_SELECTOR) with an image of its own: present on that
#    node only.
test_two_real_nodes() {
  local ns=e2e-nodes lines j n pn phase
  new_namespace "$ns"
  local code=0
  run_controller "$state/none" QUAY_IMAGES="$QUAYCTL_IMAGE_ONLY_A" NAMESPACE="$ns" RUN_ID=nodes-none \
    NODE_SELECTOR=quayctl-e2e/real=false || code=$?
  [ "$code" = 1 ] || fail "NODE_SELECTOR matching no node: exit $code, want 1"
  grep -q 'no eligible node' "$state/none.out" "$state/none.err" || fail "NODE_SELECTOR matching no node: $(tail -n 1 "$state/none.out")"
  local nd other img
  for nd in "${NODES[@]}"; do
    other=real-1; [ "$nd" = real-1 ] && other=real-2
    img=$QUAYCTL_IMAGE_ONLY_A; [ "$nd" = real-2 ] && img=$QUAYCTL_IMAGE_ONLY_B
    node_has_image "$nd" "$img" && fail "$img already on $nd before the run"
    run_controller "$state/only-$nd" QUAY_IMAGES="$img" NAMESPACE="$ns" RUN_ID="only-$nd" \
      NODE_SELECTOR="kubernetes.io/hostname=$nd" || { cat "$state/only-$nd.err" >&2; fail "run on $nd failed"; }
    wait_until "the puller Job of only-$nd to be Complete" 60 pullers_complete "$ns" "only-$nd" 1
    lines=$(pullers "$ns" "only-$nd")
    note "run only-$nd: $(tail -n 1 "$state/only-$nd.out"); pullers: $lines"
    [ "$(echo "$lines" | wc -l)" = 1 ] || fail "expected 1 puller for $nd, got: $lines"
    read -r j n pn phase <<< "$lines"
    if [ "$n" != "$nd" ] || [ "$pn" != "$nd" ] || [ "$phase" != Succeeded ]; then
      fail "puller $j: node $n, ran on $pn, phase $phase"
    fi
    [ "$(k -n "$ns" get job "$j" -o jsonpath='{.spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].values[0]}')" = "$nd" ] ||
      fail "puller $j is not pinned to $nd by matchFields metadata.name"
    node_has_image "$nd" "$img" || fail "$img not on $nd"
    node_has_image "$other" "$img" && fail "$img also on $other"
  done
  return 0
}

# pod_events NS POD: "reason: message" per Event of the pod, oldest first.
pod_events() {
  k -n "$1" get events --field-selector "involvedObject.kind=Pod,involvedObject.name=$2" --sort-by=.metadata.creationTimestamp \
    -o jsonpath='{range .items[*]}{.reason}: {.message}{"\n"}{end}'
}
pod_phase() { k -n "$1" get pod "$2" -o jsonpath='{.status.phase}'; }
# workload NS NAME NODE IMAGE [SECRET] [VOLUME_IMAGE]: a pod that runs IMAGE's /pause on NODE
# (IfNotPresent), restricted-PSS clean; with VOLUME_IMAGE, that image mounted at /data as an image
# volume (IfNotPresent).
workload() {
  local secrets="" volumes="" mounts=""
  [ -z "${5:-}" ] || secrets="imagePullSecrets: [{name: $5}]"
  if [ -n "${6:-}" ]; then
    volumes="volumes: [{name: data, image: {reference: \"$6\", pullPolicy: IfNotPresent}}]"
    mounts="volumeMounts: [{name: data, mountPath: /data, readOnly: true}]"
  fi
  k -n "$1" apply -f - >/dev/null <<W
apiVersion: v1
kind: Pod
metadata: {name: $2}
spec:
  nodeSelector: {kubernetes.io/hostname: $3}
  restartPolicy: Never
  automountServiceAccountToken: false
  $secrets
  $volumes
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: app
    image: $4
    imagePullPolicy: IfNotPresent
    $mounts
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
W
}

# 5. Image garbage collection for real (first half): two nodes whose kubelets collect images unused
#    for a minute (up since the setup); the same image pre-pulled on both, one run keeping its
#    puller (KEEP_LAST_PULLER, the default), one letting it go at once (TTL 0, no retention).
test_image_gc_prepull() {
  local ns=e2e-gc nd
  new_namespace "$ns"
  for nd in "$GC_KEEP" "$GC_DROP"; do node_has_image "$nd" "$QUAYCTL_IMAGE_GC" && fail "$QUAYCTL_IMAGE_GC already on $nd"; done
  run_controller "$state/gc-keep" QUAY_IMAGES="$QUAYCTL_IMAGE_GC" NAMESPACE="$ns" RUN_ID=gc-keep \
    NODE_SELECTOR="kubernetes.io/hostname=$GC_KEEP" || { cat "$state/gc-keep.err" >&2; fail "the keeping run failed"; }
  run_controller "$state/gc-drop" QUAY_IMAGES="$QUAYCTL_IMAGE_GC" NAMESPACE="$ns" RUN_ID=gc-drop \
    NODE_SELECTOR="kubernetes.io/hostname=$GC_DROP" KEEP_LAST_PULLER=false TTL_SECONDS_AFTER_FINISHED=0 ||
    { cat "$state/gc-drop.err" >&2; fail "the dropping run failed"; }
  grep -q "puller kept" "$state/gc-keep.out" || fail "gc-keep: no 'puller kept' in the report"
  for nd in "$GC_KEEP" "$GC_DROP"; do node_has_image "$nd" "$QUAYCTL_IMAGE_GC" || fail "$QUAYCTL_IMAGE_GC not pulled on $nd"; done
  # The same for an OCI artifact with the volume strategy: what keeps it is the image volume of the
  # kept puller's exited container (the kubelet's handleImageVolumes), not a container image. Another
  # installation (INSTANCE): a run replaces its own instance's kept pullers, whatever they hold.
  for nd in "$GC_KEEP" "$GC_DROP"; do node_has_image "$nd" "$QUAYCTL_IMAGE_GC_ARTIFACT" && fail "$QUAYCTL_IMAGE_GC_ARTIFACT already on $nd"; done
  run_controller "$state/gc-keep-volume" QUAY_IMAGES="$QUAYCTL_IMAGE_GC_ARTIFACT" NAMESPACE="$ns" RUN_ID=gc-keep-volume INSTANCE=gc-volume \
    PULL_STRATEGY=volume RUNNER_IMAGE="$QUAYCTL_IMAGE_PAUSE" NODE_SELECTOR="kubernetes.io/hostname=$GC_KEEP" ||
    { cat "$state/gc-keep-volume.err" >&2; fail "the keeping volume run failed"; }
  run_controller "$state/gc-drop-volume" QUAY_IMAGES="$QUAYCTL_IMAGE_GC_ARTIFACT" NAMESPACE="$ns" RUN_ID=gc-drop-volume INSTANCE=gc-volume \
    PULL_STRATEGY=volume RUNNER_IMAGE="$QUAYCTL_IMAGE_PAUSE" NODE_SELECTOR="kubernetes.io/hostname=$GC_DROP" \
    KEEP_LAST_PULLER=false TTL_SECONDS_AFTER_FINISHED=0 || { cat "$state/gc-drop-volume.err" >&2; fail "the dropping volume run failed"; }
  grep -q "puller kept" "$state/gc-keep-volume.out" || fail "gc-keep-volume: no 'puller kept' in the report"
  for nd in "$GC_KEEP" "$GC_DROP"; do
    node_has_image "$nd" "$QUAYCTL_IMAGE_GC_ARTIFACT" || fail "$QUAYCTL_IMAGE_GC_ARTIFACT not pulled on $nd"
  done
  wait_until "the dropping runs' pullers (TTL 0) to be gone" 60 sh -c \
    "[ -z \"\$(kubectl -n $ns get jobs,pods -l 'quayctl-controller/run in (gc-drop,gc-drop-volume)' -o name)\" ]"
  date +%s > "$state/gc-pulled-at"
  note "$QUAYCTL_IMAGE_GC and $QUAYCTL_IMAGE_GC_ARTIFACT on $GC_KEEP (pullers kept) and $GC_DROP (pullers gone); the verdict comes after the kubelets' next GC"
}

# 5b. (last) The kubelet's image GC has run since (every 5 minutes): the image is gone from the node
#     whose puller went, and still on the node whose puller was kept (containerd, not node.status).
test_image_gc_verdict() {
  local ns=e2e-gc waited=$SECONDS run
  [ -f "$state/gc-pulled-at" ] || fail "test_image_gc_prepull did not run"
  # The kubelets started at the setup; their GC runs then and every 5 minutes: the one at about
  # 5 minutes collects what was unused for a minute. Bounded at two periods (and a margin).
  local deadline=$(( $(cat "$state/gc-nodes-up") + 660 - $(date +%s) ))
  [ "$deadline" -gt 0 ] || deadline=1
  wait_until "the kubelet's image GC to remove $QUAYCTL_IMAGE_GC and $QUAYCTL_IMAGE_GC_ARTIFACT from $GC_DROP" "$deadline" \
    sh -c "! '$hack/real-node.sh' ctr '$state' '$GC_DROP' -n k8s.io images ls -q | grep -qxF -e '$QUAYCTL_IMAGE_GC' -e '$QUAYCTL_IMAGE_GC_ARTIFACT'"
  node_has_image "$GC_KEEP" "$QUAYCTL_IMAGE_GC" || fail "the kept puller did not keep $QUAYCTL_IMAGE_GC on $GC_KEEP"
  node_has_image "$GC_KEEP" "$QUAYCTL_IMAGE_GC_ARTIFACT" ||
    fail "the kept volume puller did not keep $QUAYCTL_IMAGE_GC_ARTIFACT on $GC_KEEP"
  grep -q "Removing image to free bytes" "$state/real/logs/$GC_DROP-kubelet.log" || fail "no image GC in $GC_DROP's kubelet log"
  for run in gc-keep gc-keep-volume; do
    [ "$(k -n "$ns" get pods -l "quayctl-controller/run=$run" --field-selector status.phase=Succeeded -o name | grep -c .)" = 1 ] ||
      fail "the kept puller's pod of $run is gone"
  done
  note "GC removed both from $GC_DROP $(( $(date +%s) - $(cat "$state/gc-pulled-at") )) s after the pulls (waited $((SECONDS - waited)) s here); $GC_KEEP still has both"
}

# 6. A node joins with the startup taint (--register-with-taints) while a run for joining nodes
#    watches (STARTUP_TAINT_WATCH_SECONDS, PULLER_KIND=pod, as the joining CronJob runs): a workload
#    pinned to it waits; the run pulls its image there within seconds of the node being Ready and
#    removes the taint; the workload starts, and the kubelet says the image was already on the
#    machine. The time from Ready to the release is noted (README "Nodes that join").
test_a_joining_node_gets_its_images_before_any_workload() {
  local ns=e2e-join events run_pid ready released
  new_namespace "$ns"
  workload "$ns" app "$JOIN" "$QUAYCTL_IMAGE_JOIN"
  run_controller "$state/join" QUAY_IMAGES="$QUAYCTL_IMAGE_JOIN" NAMESPACE="$ns" STARTUP_TAINT="$STARTUP_TAINT" \
    STARTUP_TAINT_ONLY=true STARTUP_TAINT_WATCH_SECONDS=60 PULLER_KIND=pod &
  run_pid=$!
  wait_until "the run for joining nodes to watch" 30 grep -q "listed nodes" "$state/join.err"
  REAL_NODE_TAINTS="$STARTUP_TAINT=pending:NoSchedule" REAL_NODE_LABELS=quayctl-e2e/pool=join "$hack/real-node.sh" up "$state" "$JOIN"
  k get node "$JOIN" -o jsonpath='{.spec.taints[*].key}' | grep -qw "$STARTUP_TAINT" ||
    k get events -n default --field-selector "involvedObject.name=$JOIN,reason=StartupTaintRemoved" -o name | grep -q . ||
    fail "$JOIN registered without the startup taint"
  wait_until "the run to release $JOIN" 120 sh -c \
    "! kubectl get node $JOIN -o jsonpath='{.spec.taints[*].key}' | grep -qw '$STARTUP_TAINT'"
  released=$(date +%s.%N)
  ready=$(k get node "$JOIN" -o jsonpath='{.status.conditions[?(@.type=="Ready")].lastTransitionTime}')
  note "$JOIN released $(python3 -c "import sys, datetime as d; r=d.datetime.fromisoformat(sys.argv[2].replace('Z','+00:00')).timestamp(); print(f'{float(sys.argv[1]) - r:.1f}')" "$released" "$ready") s after it was Ready (Ready at 1 s resolution)"
  wait "$run_pid" || { cat "$state/join.err" "$state/join.out" >&2; fail "the run for joining nodes failed"; }
  note "run: $(tail -n 1 "$state/join.out")"
  grep -E "^$JOIN " "$state/join.out" | grep -q "startup taint removed" || fail "no 'startup taint removed' for $JOIN"
  grep -q "without the startup taint not considered" "$state/join.out" || fail "the other nodes were considered"
  node_has_image "$JOIN" "$QUAYCTL_IMAGE_JOIN" || fail "$QUAYCTL_IMAGE_JOIN not pulled on $JOIN"
  k get events -n default --field-selector "involvedObject.name=$JOIN,reason=StartupTaintRemoved" -o name | grep -q . ||
    fail "no StartupTaintRemoved Event on $JOIN"
  wait_until "the workload to run" 60 sh -c "[ \"\$(kubectl -n $ns get pod app -o jsonpath='{.status.phase}')\" = Running ]"
  events=$(pod_events "$ns" app)
  note "workload events: $(echo "$events" | paste -sd '|')"
  echo "$events" | grep -q "^Pulled: Container image \"$QUAYCTL_IMAGE_JOIN\" already present on machine" ||
    fail "the kubelet did not find the image already present"
  echo "$events" | grep -q "^Pulling:" && fail "the workload pulled the image itself"
  return 0
}

# 6b. IMAGES_FROM for real: a Deployment pinned to a pool, whose node has not joined yet; a joining
#     run reads the workloads (no QUAY_IMAGES) and watches; the node joins with the startup taint;
#     the run pre-pulls the Deployment's image there and releases it; the ReplicaSet's pod then
#     starts with the image already present on the machine.
test_images_from_a_deployment_reach_a_joining_node() {
  local ns=e2e-from events pod
  new_namespace "$ns"
  k -n "$ns" apply -f - >/dev/null <<D
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  replicas: 1
  selector: {matchLabels: {app: from}}
  template:
    metadata: {labels: {app: from}}
    spec:
      nodeSelector: {quayctl-e2e/pool: from}
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: app
        image: $QUAYCTL_IMAGE_FROM
        imagePullPolicy: IfNotPresent
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
D
  run_controller "$state/from" IMAGES_FROM="namespaces=$ns;kinds=deployments" NAMESPACE="$ns" STARTUP_TAINT="$STARTUP_TAINT" \
    STARTUP_TAINT_ONLY=true STARTUP_TAINT_WATCH_SECONDS=60 PULLER_KIND=pod &
  local run_pid=$!
  wait_until "the run to read the workloads and watch" 30 grep -q "listed nodes" "$state/from.err"
  grep -q "listed the workloads (IMAGES_FROM)" "$state/from.err" || fail "no workload list in the log"
  REAL_NODE_TAINTS="$STARTUP_TAINT=pending:NoSchedule" REAL_NODE_LABELS=quayctl-e2e/pool=from "$hack/real-node.sh" up "$state" "$FROM"
  wait_until "the run to release $FROM" 120 sh -c \
    "! kubectl get node $FROM -o jsonpath='{.spec.taints[*].key}' | grep -qw '$STARTUP_TAINT'"
  wait "$run_pid" || { cat "$state/from.err" "$state/from.out" >&2; fail "the run for joining nodes failed"; }
  note "run: $(tail -n 1 "$state/from.out")"
  grep -q "for Deployment $ns/app" "$state/from.out" || fail "the report does not name the Deployment"
  node_has_image "$FROM" "$QUAYCTL_IMAGE_FROM" || fail "$QUAYCTL_IMAGE_FROM not pulled on $FROM"
  wait_until "the Deployment's pod to run on $FROM" 90 sh -c \
    "kubectl -n $ns get pods -l app=from -o jsonpath='{.items[*].status.phase}' | grep -qw Running"
  pod=$(k -n "$ns" get pods -l app=from -o jsonpath='{.items[0].metadata.name}')
  events=$(pod_events "$ns" "$pod")
  note "workload events: $(echo "$events" | grep -E '^(Pulling|Pulled)' | paste -sd '|')"
  echo "$events" | grep -q "^Pulled: Container image \"$QUAYCTL_IMAGE_FROM\" already present on machine" ||
    fail "the kubelet did not find the Deployment's image already present"
  echo "$events" | grep -q "^Pulling:" && fail "the workload pulled the image itself"
  return 0
}

# 7. A private registry (basic auth) on the newest kubelet, where KubeletEnsureSecretPulledImages is
#    on: a pre-pull with IMAGE_PULL_SECRETS; a workload whose secret holds the same credentials under
#    another name starts without pulling; one without credentials does not get the image.
test_private_registry_pre_pull_and_what_it_gives_workloads() {
  local ns=e2e-private nd=real-1 events
  new_namespace "$ns"
  for secret in regcred othercred; do
    k -n "$ns" create secret docker-registry "$secret" --docker-server="$QUAYCTL_PRIVATE_REGISTRY" \
      --docker-username="$QUAYCTL_PRIVATE_USER" --docker-password="$QUAYCTL_PRIVATE_PASSWORD" >/dev/null
  done
  node_has_image "$nd" "$QUAYCTL_IMAGE_PRIVATE" && fail "$QUAYCTL_IMAGE_PRIVATE already on $nd"
  run_controller "$state/private" QUAY_IMAGES="$QUAYCTL_IMAGE_PRIVATE" NAMESPACE="$ns" IMAGE_PULL_SECRETS=regcred \
    NODE_SELECTOR="kubernetes.io/hostname=$nd" || { cat "$state/private.err" "$state/private.out" >&2; fail "the pre-pull failed"; }
  node_has_image "$nd" "$QUAYCTL_IMAGE_PRIVATE" || fail "not pulled on $nd"
  workload "$ns" same-credentials "$nd" "$QUAYCTL_IMAGE_PRIVATE" othercred
  workload "$ns" no-credentials "$nd" "$QUAYCTL_IMAGE_PRIVATE"
  wait_until "the workload with the same credentials to run" 60 sh -c "[ \"\$(kubectl -n $ns get pod same-credentials -o jsonpath='{.status.phase}')\" = Running ]"
  events=$(pod_events "$ns" same-credentials)
  note "same credentials, another secret: $(echo "$events" | paste -sd '|')"
  echo "$events" | grep -q "^Pulled: Container image \"$QUAYCTL_IMAGE_PRIVATE\" already present on machine and can be accessed by the pod" ||
    fail "the kubelet did not let the pod use the pre-pulled image"
  echo "$events" | grep -q "^Pulling:" && fail "the pod with the same credentials pulled again"
  wait_until "the workload without credentials to be refused the image" 60 sh -c \
    "kubectl -n $ns get events --field-selector involvedObject.name=no-credentials -o jsonpath='{.items[*].reason}' | grep -qw Failed"
  events=$(pod_events "$ns" no-credentials)
  note "no credentials: $(echo "$events" | grep '^Failed: Failed to pull' | head -n 1)"
  [ "$(pod_phase "$ns" no-credentials)" = Pending ] || fail "the pod without credentials is not Pending"
  echo "$events" | grep -q "^Pulling: Pulling image \"$QUAYCTL_IMAGE_PRIVATE\"" || fail "the kubelet did not re-check the registry"
  # containerd 1.6/1.7: "401 Unauthorized"; 2.x: "pull access denied, ... authorization failed".
  echo "$events" | grep -qiE "^Failed: Failed to pull image .*(401|unauthorized|authorization failed)" ||
    fail "the kubelet's events do not say the registry refused it"
}

# 10. PULL_STRATEGY=volume on containerd 2.x: one image volume per image, each mounted by a container
#     of the runner (RUNNER_IMAGE: here the nodes' sandbox image, pinned by containerd, so nothing but
#     the images is pulled), no helper image. A data-only image (no binary: no container could run
#     from it) and an OCI artifact end up on the node; a workload mounting the artifact as an image
#     volume starts without a pull. Then what the kubelet says when an image volume cannot be had:
#     a missing tag, and an artifact with the empty config (containerd/containerd#11907), each
#     reported on its node with the kubelet's reason, beside an image that works.
test_volume_strategy_pulls_data_only_images_and_artifacts() {
  local ns=e2e-volume nd=real-2 img pod spec events code=0 row
  local missing=$QUAYCTL_REGISTRY/quayctl-e2e/data-only:no-such-tag
  new_namespace "$ns"
  for img in "$QUAYCTL_IMAGE_DATA_ONLY" "$QUAYCTL_IMAGE_ARTIFACT"; do
    node_has_image "$nd" "$img" && fail "$img already on $nd"
  done
  run_controller "$state/volume" PULL_STRATEGY=volume RUNNER_IMAGE="$QUAYCTL_IMAGE_PAUSE" PULLER_KIND=pod \
    QUAY_IMAGES="$QUAYCTL_IMAGE_DATA_ONLY;$QUAYCTL_IMAGE_ARTIFACT" NAMESPACE="$ns" RUN_ID=volume \
    NODE_SELECTOR="kubernetes.io/hostname=$nd" || { cat "$state/volume.err" "$state/volume.out" >&2; fail "the volume run failed"; }
  note "run: $(tail -n 1 "$state/volume.out")"
  for img in "$QUAYCTL_IMAGE_DATA_ONLY" "$QUAYCTL_IMAGE_ARTIFACT"; do
    node_has_image "$nd" "$img" || fail "$img not in $nd's containerd"
  done
  pod=$(k -n "$ns" get pods -l quayctl-controller/run=volume -o jsonpath='{.items[0].metadata.name}')
  spec=$(k -n "$ns" get pod "$pod" -o jsonpath='{.spec.initContainers}|{.spec.volumes[*].image.reference}|{.spec.containers[*].image}|{.spec.containers[*].args}')
  note "puller $pod: $spec"
  [[ $spec == "|$QUAYCTL_IMAGE_DATA_ONLY $QUAYCTL_IMAGE_ARTIFACT|$QUAYCTL_IMAGE_PAUSE $QUAYCTL_IMAGE_PAUSE|"* ]] ||
    fail "the puller is not two image volumes and two runners, without an init container: $spec"
  events=$(pod_events "$ns" "$pod")
  note "puller events: $(echo "$events" | grep -E '^(Pulling|Pulled)' | paste -sd '|')"
  echo "$events" | grep -q "^Pulled: Container image \"$QUAYCTL_IMAGE_PAUSE\" already present on machine" ||
    fail "the runner was not already on the node"
  echo "$events" | grep -q "^Pulling: Pulling image \"$QUAYCTL_IMAGE_PAUSE\"" && fail "the runner was pulled"

  # A workload mounting the artifact: it is there, nothing is pulled.
  workload "$ns" uses-artifact "$nd" "$QUAYCTL_IMAGE_PAUSE" "" "$QUAYCTL_IMAGE_ARTIFACT"
  wait_until "the workload mounting the artifact to run" 60 sh -c "[ \"\$(kubectl -n $ns get pod uses-artifact -o jsonpath='{.status.phase}')\" = Running ]"
  events=$(pod_events "$ns" uses-artifact)
  note "workload events: $(echo "$events" | grep -E '^(Pulling|Pulled)' | paste -sd '|')"
  echo "$events" | grep -q "^Pulling:" && fail "the workload pulled"
  echo "$events" | grep -q "^Pulled: .*$QUAYCTL_IMAGE_ARTIFACT.* already present on machine" ||
    fail "the kubelet did not find the artifact already present"

  # What cannot be mounted or pulled: reported per node and image, with the kubelet's reason.
  run_controller "$state/volume-bad" PULL_STRATEGY=volume RUNNER_IMAGE="$QUAYCTL_IMAGE_PAUSE" PULLER_KIND=pod \
    QUAY_IMAGES="$QUAYCTL_IMAGE_SMALL;$missing;$QUAYCTL_IMAGE_ARTIFACT_EMPTY_CONFIG" NAMESPACE="$ns" RUN_ID=volume-bad \
    PULL_ERROR_GRACE_SECONDS=5 DEADLINE_SECONDS=120 NODE_SELECTOR="kubernetes.io/hostname=$nd" || code=$?
  sed 's/^/    | /' "$state/volume-bad.out" >&2
  [ "$code" = 1 ] || { cat "$state/volume-bad.err" >&2; fail "exit $code, want 1"; }
  row=$(grep -E "^$nd " "$state/volume-bad.out") || fail "no report row for $nd"
  [[ $row == *"$missing"*"not found"* ]] || fail "the row does not name the missing tag with the kubelet's 'not found': $row"
  [[ $row =~ ^$nd\ +failed\  ]] || fail "not failed (fast) on $nd: $row"
  [[ $row == *"image 3: pulled, but the runtime cannot mount it as an image volume"* ]] ||
    fail "the row does not say the empty-config artifact cannot be mounted: $row"
  node_has_image "$nd" "$QUAYCTL_IMAGE_SMALL" || fail "the image that works was not pulled beside the failures"
  pod=$(k -n "$ns" get pods -l quayctl-controller/run=volume-bad -o jsonpath='{.items[0].metadata.name}')
  note "kubelet, per container: $(k -n "$ns" get pod "$pod" -o jsonpath='{range .status.containerStatuses[*]}{.name}={.state.waiting.reason}{.state.terminated.reason}: {.state.waiting.message}{"\n"}{end}' | paste -sd '|')"
}

# 11. The platform: an image whose index has linux/arm64 only, on amd64 nodes. The kubelet's "no
#     match for platform" is a failure with that reason on each node (not counted by the breaker
#     against the image: every node reports it, none is skipped as "held back").
test_an_image_without_the_nodes_platform_is_named() {
  local ns=e2e-platform code=0 nd row
  new_namespace "$ns"
  run_controller "$state/platform" QUAY_IMAGES="$QUAYCTL_IMAGE_ARM64_ONLY" NAMESPACE="$ns" PULL_ERROR_GRACE_SECONDS=5 \
    DEADLINE_SECONDS=120 NODE_SELECTOR="$POOL" || code=$?
  sed 's/^/    | /' "$state/platform.out" >&2
  [ "$code" = 1 ] || { cat "$state/platform.err" >&2; fail "exit $code, want 1"; }
  for nd in "${NODES[@]}"; do
    row=$(grep -E "^$nd " "$state/platform.out") || fail "no report row for $nd"
    [[ $row == *"failed"*"no variant for linux/amd64"* ]] || fail "the row for $nd does not say the platform is missing: $row"
  done
}

# 8. PULLER_KIND=pod on real nodes: bare puller pods under `restricted`, the images really pulled,
#    no Job anywhere, the pods kept (KEEP_LAST_PULLER).
test_pod_kind_pulls_for_real() {
  local ns=e2e-pod-kind nd
  new_namespace "$ns"
  for nd in "${NODES[@]}"; do node_has_image "$nd" "$QUAYCTL_IMAGE_POD_KIND" && fail "$QUAYCTL_IMAGE_POD_KIND already on $nd"; done
  run_controller "$state/pod-kind" QUAY_IMAGES="$QUAYCTL_IMAGE_POD_KIND" NAMESPACE="$ns" PULLER_KIND=pod NODE_SELECTOR="$POOL" ||
    { cat "$state/pod-kind.err" "$state/pod-kind.out" >&2; fail "the pod-kind run failed"; }
  note "$(tail -n 1 "$state/pod-kind.out")"
  grep -q '2/2 eligible nodes succeeded' "$state/pod-kind.out" || fail "report does not say 2/2 succeeded"
  for nd in "${NODES[@]}"; do node_has_image "$nd" "$QUAYCTL_IMAGE_POD_KIND" || fail "not pulled on $nd"; done
  [ -z "$(k -n "$ns" get jobs -o name)" ] || fail "PULLER_KIND=pod made a Job"
  # The run concludes from the image containers' exit; the pod's phase follows from the kubelet.
  poll 60 "both puller pods to be Succeeded" pullers_in_phase "$ns" Succeeded 2 || true
  local lines
  lines=$(k -n "$ns" get pods -l quayctl-controller/run -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase} {.metadata.ownerReferences}{"\n"}{end}')
  note "pods: $(echo "$lines" | tr '\n' ';')"
  [ "$(echo "$lines" | grep -c ' Succeeded ')" = 2 ] || fail "expected 2 Succeeded puller pods, kept: $lines"
  [ "$(echo "$lines" | awk '{print $2}' | sort | tr '\n' ' ')" = "real-1 real-2 " ] || fail "pods not on both nodes: $lines"
}

# 9. Helm (the chart, Helm built from its Go module): install; a run from its CronJob exits 0 and
#    the images are on the nodes; an upgrade with other images takes effect on the next run (which
#    replaces the kept pullers); uninstall leaves no object of ours, pullers included.
test_helm_install_upgrade_uninstall() {
  local ns=quayctl-helm rel=qc name=quayctl-helm nd
  h() { HELM_CACHE_HOME=$state/helm/cache HELM_CONFIG_HOME=$state/helm/config HELM_DATA_HOME=$state/helm/data "$helm" "$@"; }
  # The release record in `default`, everything else in the namespace the chart creates.
  local chart_args=(--namespace default --set "namespace.name=$ns" --set "name=$name" --set "image.repository=${QUAYCTL_IMAGE_CONTROLLER%:*}"
    --set "image.tag=${QUAYCTL_IMAGE_CONTROLLER##*:}" --set config.deadlineSeconds=120 --set-string "config.nodeSelector=$POOL")
  h install "$rel" "$root/charts/quayctl-controller" "${chart_args[@]}" --set-string "config.quayImages=$QUAYCTL_IMAGE_HELM_A" >/dev/null
  [ "$(k get ns "$ns" -o jsonpath='{.metadata.labels.pod-security\.kubernetes\.io/enforce}')" = restricted ] || fail "namespace $ns not restricted"
  helm_run() { # helm_run JOB: one run from the chart's CronJob; exit 0
    k -n "$ns" create job "$1" --from=cronjob/"$name" >/dev/null
    wait_until "Job $1 to finish" 180 job_done "$ns" "$1"
    k -n "$ns" logs "job/$1" > "$state/$1.log" 2>&1 || true
    [ "$(job_condition "$ns" "$1")" = Complete ] || { cat "$state/$1.log" >&2; fail "Job $1 is not Complete"; }
    note "$1: $(grep -E '^run ' "$state/$1.log")"
  }
  helm_run helm-1
  for nd in "${NODES[@]}"; do node_has_image "$nd" "$QUAYCTL_IMAGE_HELM_A" || fail "$QUAYCTL_IMAGE_HELM_A not on $nd"; done
  h upgrade "$rel" "$root/charts/quayctl-controller" "${chart_args[@]}" --set-string "config.quayImages=$QUAYCTL_IMAGE_HELM_B" >/dev/null
  helm_run helm-2
  for nd in "${NODES[@]}"; do node_has_image "$nd" "$QUAYCTL_IMAGE_HELM_B" || fail "$QUAYCTL_IMAGE_HELM_B not on $nd after the upgrade"; done
  [ "$(grep -c 'replaced 1 older puller' "$state/helm-2.log")" = 2 ] || fail "the second run did not replace the first run's kept pullers"
  h uninstall "$rel" --namespace default --wait >/dev/null
  wait_until "namespace $ns to be gone" 120 sh -c "! kubectl get namespace $ns"
  local left
  left=$(k get clusterrole,clusterrolebinding,validatingadmissionpolicy,validatingadmissionpolicybinding -o name | grep -F "$name" || true)
  [ -z "$left" ] || fail "left behind by helm uninstall: $left"
  note "helm install, two runs, upgrade and uninstall: nothing of release $rel left"
}

# ------------------------------------------------------------------------------------------ runner

run_test() {
  local name=$1 t0=$SECONDS rc=0
  echo "--- $name"
  current=$name
  set +e
  (set -e; "$name")
  rc=$?
  set -e
  current=
  if [ $rc = 0 ]; then
    echo "ok      $name ($((SECONDS - t0)) s)"; passed=$((passed + 1))
  else
    echo "FAILED  $name ($((SECONDS - t0)) s)"; failed=$((failed + 1))
  fi
}

finish() {
  local status=$?
  set +e
  if [ "$status" != 0 ]; then # interrupted, or the setup failed
    echo "FAILED  ${current:-setup} (exit $status${current:+, interrupted})"; failed=$((failed + 1))
  fi
  echo "--- teardown_leaves_nothing_behind"
  if real_teardown $((status + failed)); then
    echo "ok      teardown_leaves_nothing_behind"; passed=$((passed + 1))
  else
    echo "FAILED  teardown_leaves_nothing_behind"; failed=$((failed + 1))
  fi
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ] || exit 1
  exit 0
}

# The GC test's two halves frame the rest: the kubelets' GC loop runs every 5 minutes.
all_tests=(test_image_gc_prepull test_cronjob_as_users_run_it test_docker_run_against_a_kubeconfig
  test_the_image_is_an_index_for_amd64_and_arm64 test_real_pull_failures
  test_two_real_nodes test_a_joining_node_gets_its_images_before_any_workload test_images_from_a_deployment_reach_a_joining_node
  test_private_registry_pre_pull_and_what_it_gives_workloads test_pod_kind_pulls_for_real test_helm_install_upgrade_uninstall
  test_volume_strategy_pulls_data_only_images_and_artifacts test_an_image_without_the_nodes_platform_is_named
  test_image_gc_verdict)
tests=("$@"); [ ${#tests[@]} -gt 0 ] || tests=("${all_tests[@]}")
for t in "${tests[@]}"; do declare -F "$t" >/dev/null || { echo "unknown test $t (have: ${all_tests[*]})" >&2; exit 2; }; done

real_preflight
real_binaries
helm=$("$hack/build-helm.sh" | tail -n 1)
cd "$root"
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
REAL_NODE_LABELS=$POOL real_setup e2e-real "${NODES[@]}"
# The GC nodes from the start: their kubelets' image GC runs every 5 minutes from now.
REAL_NODE_GC=age REAL_NODE_LABELS=quayctl-e2e/pool=gc "$hack/real-node.sh" up "$state" "$GC_KEEP" "$GC_DROP"
date +%s > "$state/gc-nodes-up"
export DOCKER_HOST DOCKER_CONFIG KUBECONFIG
for t in "${tests[@]}"; do run_test "$t"; done
