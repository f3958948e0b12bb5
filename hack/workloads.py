#!/usr/bin/env python3
"""Workloads for IMAGES_FROM at scale (make heap, make bench): a kubectl List on stdout.

    hack/workloads.py COUNT POOLS

COUNT workloads over POOLS node pools (nodes labelled pool=p0..p<POOLS-1>), in namespaces w0..w9:
70 % Deployments (nodeSelector on one pool, 1-5 replicas, ~2,100 images), 15 % StatefulSets
(required affinity on two pools), 10 % CronJobs (one pool, scheduled once a year: no Jobs), 3 %
Jobs and 2 % DaemonSets (nodeSelector pool=none: their pods wait and nothing runs, so the cluster
stays quiet while they are listed). Each pool then wants a few hundred images: more than the 64 a
node gets, so ranking and left-out lists are exercised at full size. Deterministic.
"""
import json
import sys

count, pools = int(sys.argv[1]), int(sys.argv[2])
r = "registry.example.com"
items = []


def meta(kind, i):
    return {"name": f"{kind.lower()}-{i:05d}", "namespace": f"w{i % 10}", "labels": {"bench": "images-from"}}


def template(i, spec):
    return {"metadata": {"labels": {"app": f"a{i}"}}, "spec": spec}


shares = [("Deployment", 70), ("StatefulSet", 15), ("CronJob", 10), ("Job", 3), ("DaemonSet", 2)]
kinds = [k for k, share in shares for _ in range(share)]
for i in range(count):
    kind, pool = kinds[i % 100], f"p{i % pools}"
    selector = {"matchLabels": {"app": f"a{i}"}}
    if kind == "Deployment":
        containers = [{"name": "app", "image": f"{r}/team-{i % 700}/app:{i % 3}"}]
        init = [{"name": "init", "image": f"{r}/base/init:{i % 5}"}] if i % 10 == 0 else []
        spec = {"nodeSelector": {"pool": pool}, "containers": containers, "initContainers": init}
        items.append({"apiVersion": "apps/v1", "kind": kind, "metadata": meta(kind, i),
                      "spec": {"replicas": 1 + i % 5, "selector": selector, "template": template(i, spec)}})
    elif kind == "StatefulSet":
        pair = [pool, f"p{(i + 1) % pools}"]
        affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": pair}]}]}}}
        spec = {"affinity": affinity, "containers": [{"name": "db", "image": f"{r}/db-{i % 150}/db:1"}]}
        items.append({"apiVersion": "apps/v1", "kind": kind, "metadata": meta(kind, i),
                      "spec": {"serviceName": "db", "selector": selector, "template": template(i, spec)}})
    elif kind == "CronJob":
        spec = {"restartPolicy": "Never", "nodeSelector": {"pool": pool},
                "containers": [{"name": "job", "image": f"{r}/batch-{i % 100}/job:1"}]}
        items.append({"apiVersion": "batch/v1", "kind": kind, "metadata": meta(kind, i),
                      "spec": {"schedule": "0 0 1 1 *", "jobTemplate": {"spec": {"template": template(i, spec)}}}})
    elif kind == "Job":
        spec = {"restartPolicy": "Never", "nodeSelector": {"pool": "none"},
                "containers": [{"name": "run", "image": f"{r}/job-{i % 30}/run:1"}]}
        items.append({"apiVersion": "batch/v1", "kind": kind, "metadata": meta(kind, i),
                      "spec": {"template": template(i, spec)}})
    else:
        spec = {"nodeSelector": {"pool": "none"}, "containers": [{"name": "agent", "image": f"{r}/agent-{i % 20}/agent:1"}]}
        items.append({"apiVersion": "apps/v1", "kind": kind, "metadata": meta(kind, i),
                      "spec": {"selector": selector, "template": template(i, spec)}})
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
