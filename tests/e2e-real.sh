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
NS=quayctl-controller # the shipped manifest's namespace

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
              containers:
              - name: quayctl-controller
                env:
                - {name: QUAY_IMAGES, value: "$images"}
                - {name: DEADLINE_SECONDS, value: "120"}
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
  # Cleanup: CronJob -> its Job -> puller Jobs -> pods, each owned by the one before; pullers have a TTL.
  local cj_uid job_uid
  cj_uid=$(k -n "$NS" get cronjob quayctl-controller -o jsonpath='{.metadata.uid}')
  job_uid=$(k -n "$NS" get job "$job" -o jsonpath='{.metadata.uid}')
  [ "$(k -n "$NS" get job "$job" -o jsonpath='{.metadata.ownerReferences[0].uid}')" = "$cj_uid" ] ||
    fail "Job $job is not owned by the CronJob"
  while read -r j _; do
    [ "$(k -n "$NS" get job "$j" -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].uid}')" = "Job/$job/$job_uid" ] ||
      fail "puller $j is not owned by Job $job"
    [ "$(k -n "$NS" get job "$j" -o jsonpath='{.spec.ttlSecondsAfterFinished}')" = 3600 ] || fail "puller $j: ttlSecondsAfterFinished is not 3600"
  done <<< "$lines"
  k -n "$NS" delete job "$job" --cascade=background --wait=false >/dev/null
  wait_until "the garbage collector to delete the puller Jobs and pods of $job" 60 run_objects_gone "$NS" "$job"
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
    -e NAMESPACE="$ns" \
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

# 3. Real pull failures: a tag the registry does not have, and a registry nothing listens on. The
#    report names the image, the node and the kubelet's own message; exit 1.
test_real_pull_failures() {
  local dead_port missing unreachable t0 code1=0 code2=0
  dead_port=$(python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$QUAYCTL_REAL_HOST_IP")
  missing=$QUAYCTL_REGISTRY/quayctl-e2e/payload-small:no-such-tag
  unreachable=$QUAYCTL_REAL_HOST_IP:$dead_port/quayctl-e2e/payload-small:1
  new_namespace e2e-missing; new_namespace e2e-unreachable
  t0=$(date +%s)
  run_controller "$state/missing" QUAY_IMAGES="$missing" NAMESPACE=e2e-missing DEADLINE_SECONDS=300 PULL_ERROR_GRACE_SECONDS=5 &
  local p1=$!
  run_controller "$state/unreachable" QUAY_IMAGES="$unreachable" NAMESPACE=e2e-unreachable DEADLINE_SECONDS=300 PULL_ERROR_GRACE_SECONDS=5 &
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

all_tests=(test_cronjob_as_users_run_it test_docker_run_against_a_kubeconfig test_real_pull_failures test_two_real_nodes)
tests=("$@"); [ ${#tests[@]} -gt 0 ] || tests=("${all_tests[@]}")
for t in "${tests[@]}"; do declare -F "$t" >/dev/null || { echo "unknown test $t (have: ${all_tests[*]})" >&2; exit 2; }; done

real_preflight
real_binaries
cd "$root"
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
real_setup e2e-real "${NODES[@]}"
export DOCKER_HOST DOCKER_CONFIG KUBECONFIG
for t in "${tests[@]}"; do run_test "$t"; done
