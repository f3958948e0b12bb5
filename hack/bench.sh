#!/usr/bin/env bash
# `make bench`: figures for the controller against the alternatives, on a real local control plane
# (Kubernetes K8S=newest of hack/versions.env unless set) with kwok nodes, for each N in BENCH_NODES
# (default "100 1000 5000") and each controller-manager rate in BENCH_KCM (default "defaults
# raised": upstream defaults — 20 requests/s, 5 concurrent Job syncs, scheduler 50/s — and raised to
# 200/s, 20 syncs, scheduler 200/s). One cluster per (rate, N); in it, one after the other:
#   1. the controller, once per puller kind in BENCH_KINDS (default "job pod", a namespace each; 2
#      images, pulls that finish almost at once): T_created (start -> every puller exists), T_done
#      (start -> exit), requests by verb and resource under its own user (audit log), peak RSS, the
#      start lag (creation -> the Job controller starts the Job, or the scheduler binds the pod);
#      for Jobs it then waits for the Job controller to finish every Job (exit lag: the last terminal
#      condition -> exit, negative when the controller decided from the pods first). What each costs
#      the controller-manager (Job controller) and the scheduler is counted from the audit log, by
#      user agent;
#   2. two DaemonSet baselines, the same images as init containers: one of the puller pod itself
#      (its DRY_RUN), one bare; time until every pod has run them (numberReady = N, through a watch);
#   3. the raw floor: the same N Job objects (suspended, so the Job controller stays quiet) created
#      by examples/raw_floor.rs, once per concurrency in BENCH_RAW_CONCURRENCY (default "4 16 64", a
#      namespace each); the best is the floor, the others show what CREATE_CONCURRENCY buys.
# For each contender: the CPU seconds of every control-plane process while it ran, and the stored size
# of one of its pods. Each contender's namespace is deleted (and gone) before the next one starts, so
# that each starts on a control plane holding the nodes alone.
# The controller runs with its defaults (DEADLINE_SECONDS=300, CREATE_CONCURRENCY=16, KEEP_LAST_PULLER;
# BENCH_CONCURRENCY overrides the concurrency). BENCH_KWOK_PARALLELISM: kwok's pod stage workers (default 4,
# kwok's own; every simulated kubelet is that one process). Results: bench/results.jsonl (appended, one row per
# rate, N and kind), bench/results.md and bench/results.png (rendered from it).
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
sizes=${BENCH_NODES:-100 1000 5000}
rates=${BENCH_KCM:-defaults raised}
raw_concurrencies=${BENCH_RAW_CONCURRENCY:-4 16 64}
kinds=${BENCH_KINDS:-job pod}
kwok_parallelism=${BENCH_KWOK_PARALLELISM:-4}
results=$root/bench/results.jsonl
mkdir -p "$root/bench"
build_static_binary
cargo build --release --locked --example raw_floor >&2
raw_floor=$root/target/release/examples/raw_floor
command -v python3 >/dev/null || { echo "bench: python3 is needed" >&2; exit 1; }
# The plot: matplotlib from Debian (python3-matplotlib, for /usr/bin/python3) unless the python3 on
# PATH already has it.
plot_python=python3
if ! python3 -c 'import matplotlib' 2>/dev/null; then
  plot_python=/usr/bin/python3
  if ! "$plot_python" -c 'import matplotlib' 2>/dev/null; then
    echo "[bench] installing python3-matplotlib (Debian) for the plot" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-matplotlib; } >/dev/null
  fi
fi

now() { date +%s.%N; }
# How many of the bench's Jobs have a terminal condition.
finished_jobs() {
  local terminal='{range .items[*]}{range .status.conditions[?(@.status=="True")]}{.type}{"\n"}{end}{end}'
  kubectl -n bench-job get jobs -o jsonpath="$terminal" | grep -cE '^(Complete|Failed)$' || true
}

# cpu_snapshot FILE: the CPU seconds (user + system) each control-plane process has used so far.
cpu_snapshot() {
  local name pid hz
  hz=$(getconf CLK_TCK)
  while read -r name pid; do
    if [ -r "/proc/$pid/stat" ]; then awk -v n="$name" -v hz="$hz" '{print n, ($14 + $15) / hz}' "/proc/$pid/stat"; fi
  done < "$state/pids" > "$1"
}
# object_bytes NAMESPACE: the median size of a pod of NAMESPACE as stored (compact JSON with its
# managedFields) -> $state/bytes.NAMESPACE. Every write and every watch event carries the whole pod.
object_bytes() {
  kubectl get --raw "/api/v1/namespaces/$1/pods?limit=50" | python3 -c '
import json, statistics, sys
items = json.load(sys.stdin)["items"]
print(int(statistics.median(len(json.dumps(i, separators=(",", ":"))) for i in items)) if items else 0)' > "$state/bytes.$1"
}

# clear_namespace NAMESPACE: delete a contender's namespace and wait until all in it is gone, so that
# the next contender starts on a control plane that holds the nodes alone (every pod left behind
# costs each pod watcher and kwok's resyncs CPU: DaemonSets measured behind 5,000 finished Jobs and
# their pods took 10-18 % longer). The audit log is read only up to that moment for NAMESPACE.
clear_namespace() {
  now > "$state/cleared.$1"
  kubectl delete namespace "$1" --timeout=1800s >/dev/null
}

# time_daemonset NAME MANIFEST: apply the DaemonSet MANIFEST in namespace bench-NAME, wait through one
# watch until every pod has run its init containers (numberReady = N), and record its start and end
# (NAME.times), the CPU every process used meanwhile (cpu.NAME) and one pod's size; then clear it.
time_daemonset() {
  local name=$1 manifest=$2 start
  kubectl create namespace "bench-$name" >/dev/null
  cpu_snapshot "$state/cpu.$name.before"
  start=$(now)
  kubectl -n "bench-$name" apply -f "$manifest" >/dev/null
  kubectl -n "bench-$name" wait --for=jsonpath='{.status.numberReady}'="$n" ds/prepull --timeout=1800s >/dev/null
  echo "$start $(now)" > "$state/$name.times"
  cpu_snapshot "$state/cpu.$name"
  object_bytes "bench-$name"
  clear_namespace "bench-$name"
}

bench_one() { # RATE N
  local rate=$1 n=$2
  KCM_RATE=$rate KWOK_POD_PARALLELISM=$kwok_parallelism start_cluster "bench-$rate-$n" >/dev/null
  echo "[bench] $rate controller-manager, $n nodes: creating the nodes" >&2
  create_kwok_nodes "$n"
  kubectl version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])' > "$state/k8s-version"

  local kind start end
  for kind in $kinds; do
    kubectl create namespace "bench-$kind" >/dev/null
    cpu_snapshot "$state/cpu.$kind.before"
    echo "[bench] running the controller, PULLER_KIND=$kind (user quayctl-controller in the audit log)" >&2
    start=$(now)
    /usr/bin/time -f '%U %S %M' -o "$state/$kind.time" env -i KUBECONFIG="$state/controller.kubeconfig" \
      QUAY_IMAGES='nginx:1.27;redis:7' HELPER_IMAGE=quayctl-controller:bench NAMESPACE="bench-$kind" RUN_ID=bench \
      PULLER_KIND="$kind" LOG_FORMAT=json REPORT_FILE="$state/$kind.report.json" \
      ${BENCH_CONCURRENCY:+CREATE_CONCURRENCY=$BENCH_CONCURRENCY} \
      "$bin" > "$state/$kind.report.txt" 2> "$state/$kind.controller.log" || { tail -n 30 "$state/$kind.controller.log" >&2; return 1; }
    end=$(now)
    cpu_snapshot "$state/cpu.$kind"
    echo "$start $end" > "$state/$kind.times"
    object_bytes "bench-$kind"
    if [ "$kind" = job ]; then
      # The controller exits once every node is decided from its pod; the Job controller may still be
      # writing the Jobs' terminal conditions. Wait for them (the exit lag and the Job controller's
      # writes per Job need them), so that what follows also starts on a quiet control plane.
      echo "[bench] waiting for the Job controller to finish our Jobs" >&2
      wait_count "$n" 1800 "Jobs finished" finished_jobs
      kubectl -n bench-job get jobs -o json > "$state/jobs.json"
    fi
    clear_namespace "bench-$kind"
  done

  # The DaemonSet baselines, each timed until every pod has run the pulls (numberReady = N, seen
  # through a watch: polling with kubectl would charge the baseline a process every 0.2 s).
  #   ds       the puller pod itself (DRY_RUN of PULLER_KIND=pod for one node): same containers,
  #            security context, resources and volume; the pulls as init containers, then a pause
  #            container under the same restrictions. What a user would run instead under the same
  #            policies, and objects of the same size as the pullers'.
  #   ds-bare  the pulls as bare init containers and a pause container: no resources, no security
  #            context (smaller objects: each write and watch event of its pods costs less).
  # As admin, so the audit log's quayctl-controller user is the timed runs alone.
  env -i KUBECONFIG="$state/admin.kubeconfig" QUAY_IMAGES='nginx:1.27;redis:7' HELPER_IMAGE=quayctl-controller:bench \
    NAMESPACE=bench-ds RUN_ID=bench PULLER_KIND=pod DRY_RUN=true NODE_SELECTOR=kubernetes.io/hostname=bench-00001 \
    "$bin" 2> "$state/dry-run.log" | kubectl create --dry-run=client -o json -f - > "$state/puller-pod.json" ||
    { cat "$state/dry-run.log" >&2; return 1; }
  python3 - "$state/puller-pod.json" > "$state/ds.json" <<'PY'
import json, sys
pod = json.load(open(sys.argv[1]))
spec = pod["spec"]
pull = spec["containers"]
pause = {"name": "pause", "image": "registry.k8s.io/pause:3.10", "imagePullPolicy": "IfNotPresent",
         "resources": pull[0]["resources"], "securityContext": pull[0]["securityContext"]}
for k in ("affinity", "activeDeadlineSeconds", "nodeName"):
    spec.pop(k, None)
spec.update(initContainers=spec.get("initContainers", []) + pull, containers=[pause], restartPolicy="Always")
print(json.dumps({
    "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "prepull"},
    "spec": {"selector": {"matchLabels": {"app": "prepull"}},
             "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}},
             "template": {"metadata": {"labels": {"app": "prepull"}}, "spec": spec}},
}))
PY
  cat > "$state/ds-bare.yaml" <<'DS'
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: prepull}
spec:
  selector: {matchLabels: {app: prepull}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: "100%"}}
  template:
    metadata: {labels: {app: prepull}}
    spec:
      initContainers:
      - {name: pull-0, image: "nginx:1.27", command: ["/bin/true"]}
      - {name: pull-1, image: "redis:7", command: ["/bin/true"]}
      containers:
      - {name: pause, image: "registry.k8s.io/pause:3.10"}
DS
  echo "[bench] DaemonSet baseline: the puller pod's spec" >&2
  time_daemonset ds "$state/ds.json"
  echo "[bench] DaemonSet baseline: bare init containers" >&2
  time_daemonset ds-bare "$state/ds-bare.yaml"

  local c
  for c in $raw_concurrencies; do
    echo "[bench] raw floor: $n Job objects at concurrency $c" >&2
    kubectl create namespace "bench-raw-$c" >/dev/null
    # As admin, so the audit log's quayctl-controller user is the controller alone.
    KUBECONFIG="$state/admin.kubeconfig" "$raw_floor" bench "$n" "bench-raw-$c" "$c" > "$state/raw-$c.json"
  done

  python3 - "$state" "$rate" "$n" "$raw_concurrencies" "$kinds" "$kwok_parallelism" >> "$results" <<'PY'
import collections, datetime, glob, json, sys
state, rate, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
raw_concurrencies = [int(c) for c in sys.argv[4].split()]
kinds = sys.argv[5].split()
kwok_parallelism = int(sys.argv[6])
times = lambda name: tuple(map(float, open(f"{state}/{name}.times").read().split()))  # start, end
ds_start, ds_end = times("ds")
bare_start, bare_end = times("ds-bare")
def cpu(name, own=0.0):  # CPU seconds per control-plane process while NAME ran, and the contender's own
    read = lambda f: {k: float(v) for k, v in (l.split() for l in open(f"{state}/cpu.{f}"))}
    before, after = read(f"{name}.before"), read(name)
    used = {k: round(after[k] - before.get(k, 0.0), 1) for k in after}
    used["contender"] = round(own, 1)
    return used
size = lambda ns: int(open(f"{state}/bytes.{ns}").read())
# When each contender's namespace was deleted (clear_namespace): what follows is its removal.
cleared = {p.rsplit("/cleared.", 1)[1]: float(open(p).read()) for p in glob.glob(f"{state}/cleared.*")}
k8s = open(f"{state}/k8s-version").read().strip()
ts = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
WRITES = ("create", "update", "patch", "delete")
# Per namespace: the controller's own requests (its user), and the control plane's writes on behalf
# of each contender, by user agent: the Job controller's for the Jobs (bench-job), the scheduler's
# bindings for every puller pod, the DaemonSet controller's for the baseline (bench-ds). Each
# controller of the KCM has a client of its own (user agent ".../job-controller"), so its own
# --kube-api-qps budget: at N x writes-per-object / qps it is the floor of that contender.
mine = collections.defaultdict(collections.Counter)
plane = collections.Counter()
# The last binding and the last status write (kwok's, the simulated kubelets') per namespace: when
# the last puller pod was bound and when it concluded (pods; for Jobs their conditions say it).
last = {}
# Every audit file, should the apiserver ever have rotated one (hack/cluster.sh asks it not to).
audit = sorted(glob.glob(f"{state}/logs/audit*.jsonl"))
for line in (l for path in audit for l in open(path)):
    e = json.loads(line)
    if e["stage"] != "ResponseComplete":
        continue
    ref = e.get("objectRef", {})
    ns = ref.get("namespace")
    if ns in cleared and ts(e["stageTimestamp"]) >= cleared[ns]:
        continue
    what = f'{e["verb"]} {ref.get("resource", "?")}' + (f'/{ref["subresource"]}' if ref.get("subresource") else "")
    if e["user"]["username"] == "quayctl-controller":
        # Cluster-scoped requests (the node lists) belong to the run that made them, in order.
        kind = next((k for k in kinds if ns == f"bench-{k}"), "nodes")
        mine[kind][f'{e["verb"]} {ref.get("resource", "?")}'] += 1
    elif e["verb"] in WRITES and ns and ns.startswith("bench-") and not ns.startswith("bench-raw"):
        # "kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/abc/job-controller" -> job-controller;
        # "kube-scheduler/v1.37.2 ..." -> kube-scheduler; "kwok/v0.8.0 ..." -> kwok.
        agent = e.get("userAgent", "")
        agent = agent.rsplit("/", 1)[-1] if agent.startswith("kube-controller-manager/") else agent.split("/", 1)[0]
        plane[(ns, agent, what)] += 1
        if what in ("create pods/binding", "patch pods/status"):
            last[(ns, what)] = max(last.get((ns, what), 0.0), ts(e["stageTimestamp"]))
def control_plane(namespace):  # per node and the floors: bench-render.py
    return {"writes": {f"{agent}: {what}": c for (ns, agent, what), c in plane.items() if ns == namespace}}
raw = {c: json.load(open(f"{state}/raw-{c}.json")) for c in raw_concurrencies}
best = min(raw_concurrencies, key=lambda c: raw[c]["seconds"])
for kind in kinds:
    start, end = times(kind)
    log = [json.loads(l) for l in open(f"{state}/{kind}.controller.log") if l.startswith("{")]
    created = next((ts(e["timestamp"]) for e in log if e.get("message") == "no more creates to send"), None)
    terminal = []
    if kind == "job":
        jobs = json.load(open(f"{state}/jobs.json"))["items"]
        terminal = [ts(c["lastTransitionTime"]) for j in jobs for c in j.get("status", {}).get("conditions", [])
                    if c["type"] in ("Complete", "Failed") and c["status"] == "True"]
    elif (f"bench-{kind}", "patch pods/status") in last:
        terminal = [last[(f"bench-{kind}", "patch pods/status")]]
    bound = last.get((f"bench-{kind}", "create pods/binding"))
    report = json.load(open(f"{state}/{kind}.report.json"))
    timing = open(f"{state}/{kind}.time").read().split()  # user s, system s, max RSS KiB
    # The node lists are the same for every run: counted with each (per run: N/100 pages).
    counts = mine[kind] + collections.Counter({k: c // len(kinds) for k, c in mine["nodes"].items()})
    writes = sum(c for k, c in counts.items() if k.split()[0] in WRITES)
    print(json.dumps({
        "kcm": rate, "nodes": n, "kind": kind, "k8s": k8s, "kwok_pod_parallelism": kwok_parallelism,
        "succeeded": report["counts"]["succeeded"], "exit_code": report["exit_code"],
        "t_created": round(created - start, 1) if created else None,
        "t_done": round(end - start, 1),
        "t_last_bound": round(bound - start, 1) if bound else None,
        "exit_lag": round(end - max(terminal), 1) if terminal else None,
        "rss_mib": round(int(timing[-1]) / 1024, 1),
        "cpu_seconds": cpu(kind, float(timing[-3]) + float(timing[-2])),
        "daemonset_cpu_seconds": cpu("ds"), "daemonset_bare_cpu_seconds": cpu("ds-bare"),
        "pod_bytes": size(f"bench-{kind}"), "daemonset_pod_bytes": size("bench-ds"), "daemonset_bare_pod_bytes": size("bench-ds-bare"),
        "daemonset_bare_done": round(bare_end - bare_start, 1), "daemonset_baseline": "puller-pod-spec",
        "namespaces_cleared": True,
        "requests": dict(counts), "writes_per_node": round(writes / n, 2), "reads": sum(counts.values()) - writes,
        "job_start_lag_ms": report["job_start_lag"],
        "daemonset_done": round(ds_end - ds_start, 1),
        "raw_floor": raw[best]["seconds"], "raw_concurrency": best, "raw_failed": sum(r["failed"] for r in raw.values()),
        "raw_floor_by_concurrency": {str(c): raw[c]["seconds"] for c in raw_concurrencies},
        "control_plane": control_plane(f"bench-{kind}"), "daemonset_controller": control_plane("bench-ds"),
    }))
PY
  stop_cluster_now
}

for rate in $rates; do
  for n in $sizes; do
    bench_one "$rate" "$n"
  done
done
"$plot_python" "$hack/bench-render.py" "$results" "$root/bench"
cat "$root/bench/results.md"
