#!/usr/bin/env bash
# `make bench`: figures for one run at BENCH_NODES simulated nodes (default 500) on a real local
# control plane: wall time, time to create every Job, peak memory of the controller, and the API
# requests it made (counted from the apiserver's audit log, by verb and resource).
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
n=${BENCH_NODES:-500}
build_static_binary
start_cluster bench

echo "[bench] creating $n nodes"
specs=(); for i in $(seq -w 1 "$n"); do specs+=("bench-$i"); done
"$hack/nodes.sh" "${specs[@]}" | kubectl apply -f - >/dev/null
wait_ready_nodes "$n" 600
kubectl create namespace bench >/dev/null

echo "[bench] running the controller (user quayctl-controller in the audit log)"
start=$(date +%s.%N)
/usr/bin/time -f '%M' -o "$state/maxrss" env -i KUBECONFIG="$state/controller.kubeconfig" \
  QUAY_IMAGES='nginx:1.27;redis:7' HELPER_IMAGE=quayctl-controller:bench NAMESPACE=bench RUN_ID=bench \
  DEADLINE_SECONDS=600 CREATE_CONCURRENCY="${BENCH_CONCURRENCY:-16}" LOG_FORMAT=json \
  "$bin" > "$state/report.txt" 2> "$state/controller.log" || { cat "$state/controller.log"; exit 1; }
end=$(date +%s.%N)

python3 - "$state" "$n" "$start" "$end" "${BENCH_CONCURRENCY:-16}" <<'PY'
import json, sys, collections, datetime
state, n, start, end, concurrency = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
log = [json.loads(l) for l in open(f"{state}/controller.log")]
t = lambda e: datetime.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
first = t(log[0])
created = next(e for e in log if e.get("message") == "created puller Jobs")
counts = collections.Counter()
for line in open(f"{state}/logs/audit.jsonl"):
    e = json.loads(line)
    if e["user"]["username"] != "quayctl-controller" or e["stage"] != "ResponseComplete":
        continue
    r = e.get("objectRef", {})
    counts[(e["verb"], r.get("resource", "?"))] += 1
rss = int(open(f"{state}/maxrss").read().split()[-1])
total = sum(counts.values())
print(f"\nquayctl-controller bench: {n} nodes, 2 images, kubelet strategy (kwok), CREATE_CONCURRENCY={concurrency}")
print(f"  wall time, start to exit          {end - start:8.1f} s")
print(f"  create phase ({n} Jobs)            {t(created) - first:8.1f} s")
print(f"  peak RSS                          {rss / 1024:8.1f} MiB")
print(f"  API requests                      {total:8d}  ({total / n:.2f} per node)")
for (verb, res), c in sorted(counts.items(), key=lambda kv: -kv[1]):
    print(f"    {verb:<8} {res:<12} {c:6d}")
PY
tail -n 1 "$state/report.txt"
