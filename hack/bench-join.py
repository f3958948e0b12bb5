#!/usr/bin/env python3
"""make bench-join's parts (hack/bench-join.sh runs them):

  bench-join.py kubelet NODE NAMESPACE BINARY KUBECONFIG   run the CronJob's pods scheduled to NODE
  bench-join.py join COUNT SECONDS SEED TAINT              add COUNT kwok nodes at random moments
  bench-join.py report AUDIT_LOG RESULT_JSON MODE COUNT    latency of each joining node, from the audit log
  bench-join.py images COUNT                               give bench-00001.. 50 images in their status
  bench-join.py heartbeats COUNT SECONDS                   write each node's status once per 300 s, for SECONDS
  bench-join.py watch-bytes < METRICS                      "bytes events" the apiserver sent on node watches

kwok plays every node's kubelet, but it does not run containers: the controller's own pod (the
joining CronJob's, pinned to NODE, a node kwok does not manage) is run here, as a kubelet would: its
environment from the ConfigMap and the pod spec (the downward API included), the real static
binary with the ServiceAccount's token, the pod's status written as it starts and when it ends. So
the CronJob controller, the Job controller and the schedule are the cluster's own.
"""
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone


def kubectl(*args, stdin=None):
    out = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def now_rfc3339():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def patch_status(namespace, pod, status):
    kubectl("-n", namespace, "patch", "pod", pod, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))


def environment(namespace, pod):
    """The container's environment as the kubelet builds it: envFrom ConfigMaps, then env (values and
    the downward API's metadata.name / metadata.namespace)."""
    env = {}
    container = pod["spec"]["containers"][0]
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(json.loads(kubectl("-n", namespace, "get", "configmap", name, "-o", "json"))["data"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            path = var["valueFrom"]["fieldRef"]["fieldPath"]
            env[var["name"]] = {"metadata.name": pod["metadata"]["name"],
                                "metadata.namespace": namespace}[path]
    return env


def kubelet(node, namespace, binary, kubeconfig):
    running = {}
    logs = os.environ.get("BENCH_JOIN_LOGS", "/tmp")
    while True:
        pods = json.loads(kubectl("-n", namespace, "get", "pods", "--field-selector", f"spec.nodeName={node}",
                                  "-o", "json"))["items"]
        for pod in pods:
            name = pod["metadata"]["name"]
            if name in running or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                continue
            env = {"PATH": "/usr/bin:/bin", "KUBECONFIG": kubeconfig, "RUST_LOG": "info", **environment(namespace, pod)}
            log = open(os.path.join(logs, f"{name}.log"), "w")
            started = now_rfc3339()
            running[name] = (subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT), started)
            patch_status(namespace, name, {
                "phase": "Running", "startTime": started,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": started}],
                "containerStatuses": [{"name": "quayctl-controller", "ready": True, "restartCount": 0,
                                       "image": "quayctl-controller", "imageID": "",
                                       "state": {"running": {"startedAt": started}}}]})
        for name, (process, started) in list(running.items()):
            code = process.poll()
            if code is None:
                continue
            finished = now_rfc3339()
            patch_status(namespace, name, {
                "phase": "Succeeded" if code == 0 else "Failed",
                "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": finished}],
                "containerStatuses": [{"name": "quayctl-controller", "ready": False, "restartCount": 0,
                                       "image": "quayctl-controller", "imageID": "",
                                       "state": {"terminated": {"exitCode": code, "startedAt": started,
                                                                "finishedAt": finished}}}]})
            del running[name]
        time.sleep(0.5)


def join(count, seconds, seed, taint):
    rng = random.Random(seed)
    moments = sorted(rng.uniform(0, seconds) for _ in range(count))
    start = time.monotonic()
    here = os.path.dirname(os.path.abspath(__file__))
    for i, moment in enumerate(moments, 1):
        delay = start + moment - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        manifest = subprocess.run([os.path.join(here, "nodes.sh"), f"join-{i:05d}"], capture_output=True, text=True,
                                  env={**os.environ, "NODE_TAINTS": f"{taint}:NoSchedule", "NODE_LABELS": "join=1"},
                                  check=True).stdout
        kubectl("apply", "-f", "-", stdin=manifest)


def parse(ts):
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def quantiles(values):
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    at = lambda q: ordered[min(len(ordered) - 1, round((len(ordered) - 1) * q))]
    return {"p50": round(at(0.5), 2), "p95": round(at(0.95), 2), "max": round(ordered[-1], 2)}


def report(audit_log, result_path, mode, count):
    """Per joining node, from the audit log (microsecond timestamps): created (its create), Ready
    (kwok's first status write), puller created (the controller's create of its Job or pod), bound
    (the scheduler's binding), pulled (kwok's last status write of the puller pod before the taint's
    removal), released (the controller's patch of the node)."""
    controller = "system:serviceaccount:quayctl-controller:quayctl-controller"
    node = {}
    puller_events = []
    writes = {}
    for line in open(audit_log):
        e = json.loads(line)
        if e.get("stage") != "ResponseComplete" or e.get("responseStatus", {}).get("code", 200) >= 300:
            continue
        ref, verb, user = e.get("objectRef", {}), e["verb"], e["user"]["username"]
        name, resource, sub = ref.get("name", ""), ref.get("resource"), ref.get("subresource")
        t = parse(e["requestReceivedTimestamp"])
        if resource == "nodes" and name.startswith("join-"):
            n = node.setdefault(name, {})
            if verb == "create" and not sub:
                n.setdefault("created", t)
            elif verb in ("patch", "update") and sub == "status" and user == "kwok":
                n.setdefault("ready", t)
            elif verb == "patch" and not sub and user == controller:
                n.setdefault("released", t)
                writes[name] = writes.get(name, 0) + 1
        elif resource in ("pods", "jobs") and ref.get("namespace") == "quayctl-controller":
            puller_events.append((t, resource, verb, sub, user, ref.get("name") or ""))
    # Names are known from the creates' responses only through the objects' names: prepull-<run>-<node>.
    for t, resource, verb, sub, user, name in puller_events:
        target = next((n for n in node if name.endswith(n) or f"-{n}-" in name), None)
        if target is None:
            continue
        n = node[target]
        if verb == "create" and not sub and user == controller:
            n.setdefault("puller", t)
            writes[target] = writes.get(target, 0) + 1
        elif resource == "pods" and verb == "create" and sub == "binding":
            n.setdefault("bound", t)
        elif resource == "pods" and sub == "status" and user == "kwok" and t <= n.get("released", float("inf")):
            n["pulled"] = max(n.get("pulled", 0), t)
    done = [n for n in node.values() if {"ready", "puller", "released"} <= n.keys()]
    rows = {
        "created_to_released": [n["released"] - n["created"] for n in done if "created" in n],
        "ready_to_released": [n["released"] - n["ready"] for n in done],
        "wait_for_run": [n["puller"] - n["ready"] for n in done],
        "pull": [n["pulled"] - n["bound"] for n in done if {"pulled", "bound"} <= n.keys()],
        "removal": [n["released"] - n["pulled"] for n in done if "pulled" in n],
        "over_pull": [n["released"] - n["ready"] - (n["pulled"] - n["bound"]) for n in done if {"pulled", "bound"} <= n.keys()],
    }
    result = {"mode": mode, "joined": count, "released": len(done), "not_released": count - len(done),
              "writes_per_node": quantiles([float(w) for w in writes.values()]),
              **{k: quantiles(v) for k, v in rows.items()}}
    with open(result_path, "a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=2))


class Proxy:
    """`kubectl proxy` on a free port: many status writes without a process each."""

    def __enter__(self):
        import re
        self.process = subprocess.Popen(["kubectl", "proxy", "--port=0"], stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        self.base = "http://127.0.0.1:" + re.search(r":(\d+)", line).group(1)
        return self

    def patch_status(self, node, body):
        import urllib.request
        request = urllib.request.Request(f"{self.base}/api/v1/nodes/{node}/status", data=json.dumps(body).encode(),
                                         method="PATCH", headers={"Content-Type": "application/merge-patch+json"})
        urllib.request.urlopen(request).read()

    def __exit__(self, *_):
        self.process.terminate()


def images(count):
    """50 images per node, as many as the kubelet lists by default (nodeStatusMaxImages)."""
    listed = [{"names": [f"registry.example.com/team-{i:02d}/service-{i:02d}@sha256:{i:064x}",
                         f"registry.example.com/team-{i:02d}/service-{i:02d}:v1.{i}.0"],
               "sizeBytes": 100_000_000 + i} for i in range(50)]
    with Proxy() as proxy:
        for i in range(1, count + 1):
            proxy.patch_status(f"bench-{i:05d}", {"status": {"images": listed}})


def heartbeats(count, seconds):
    """Each node's status written once per 300 s (nodeStatusReportFrequency), spread evenly."""
    rate = count / 300.0
    with Proxy() as proxy:
        start, i = time.monotonic(), 0
        while time.monotonic() - start < seconds:
            due = start + i / rate
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
            now = now_rfc3339()
            proxy.patch_status(f"bench-{i % count + 1:05d}", {"status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now}]}})
            i += 1


def watch_bytes(metrics):
    """The bytes and events the apiserver has sent on Node watches (apiserver_watch_events_sizes)."""
    total = events = 0.0
    for line in metrics.splitlines():
        if 'kind="Node"' in line or 'resource="nodes"' in line:
            if line.startswith("apiserver_watch_events_sizes_sum"):
                total += float(line.rsplit(" ", 1)[1])
            elif line.startswith("apiserver_watch_events_sizes_count"):
                events += float(line.rsplit(" ", 1)[1])
    print(f"{total:.0f} {events:.0f}")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "kubelet":
        kubelet(*args)
    elif cmd == "join":
        join(int(args[0]), float(args[1]), int(args[2]), args[3])
    elif cmd == "report":
        report(args[0], args[1], args[2], int(args[3]))
    elif cmd == "images":
        images(int(args[0]))
    elif cmd == "heartbeats":
        heartbeats(int(args[0]), float(args[1]))
    elif cmd == "watch-bytes":
        watch_bytes(sys.stdin.read())
    else:
        sys.exit(f"unknown command {cmd}")
