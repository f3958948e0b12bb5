#!/usr/bin/env python3
"""Render bench/results.jsonl (written by hack/bench.sh) as bench/results.md and bench/results.png.

The newest result per (controller-manager rate, N) wins. Plot: end-to-end time against N for the
controller and the DaemonSet baseline, and the time to create every Job for the controller and the
raw floor, one panel per controller-manager rate.
"""
import json
import platform
import subprocess
import sys

results_path, out_dir = sys.argv[1], sys.argv[2]
latest = {}
for line in open(results_path):
    if line.strip():
        r = json.loads(line)
        latest[(r["kcm"], r["nodes"])] = r
rows = sorted(latest.values(), key=lambda r: (r["kcm"] != "defaults", r["nodes"]))

cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
md = [
    "# make bench: results",
    "",
    f"Machine: {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores ({cpu or platform.machine()}), "
    "etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and the contender all on it; kwok nodes; "
    "2 images; pulls finish 0.5–3 s after the pod starts (kwok stages).",
    "`defaults`: kube-controller-manager at `--kube-api-qps 20 --kube-api-burst 30 --concurrent-job-syncs 5`, "
    "scheduler at 50/s (what most clusters run); `raised`: 200/400 and 20 syncs, scheduler 200/400.",
    "",
    "**End to end.** `T_done`: start → exit; DaemonSet: its apply → every pod has run the init containers. "
    "Writes per node: what each contender costs its controller in the kube-controller-manager (audit log, by "
    "user agent: the Job controller for our Jobs, the DaemonSet controller for the baseline), object writes + "
    "Events. Floor: N × object writes ÷ the controller-manager's `--kube-api-qps` (each of its controllers "
    "has a client and a rate limit of its own). Exit lag: the last Job's terminal condition on the "
    "apiserver → exit (negative: the controller decided from the pods first).",
    "",
    "| KCM | N | succeeded | T_done | DaemonSet | T_done / DS | Job controller writes/Job | its floor | DaemonSet controller writes/pod | its floor | exit lag | Job start lag median / max | peak RSS |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
QPS = {"defaults": 20, "raised": 200}


def controller_writes(r, key, agent):
    """(object writes, Event writes) per node by the controller-manager's `agent`, or None."""
    writes = (r.get(key) or {}).get("writes")
    if not writes:
        return None
    mine = {k: c for k, c in writes.items() if k.startswith(agent + ":")}
    events = sum(c for k, c in mine.items() if k.endswith(" events"))
    return (sum(mine.values()) - events) / r["nodes"], events / r["nodes"]


def writes_and_floor(r, key, agent):
    w = controller_writes(r, key, agent)
    if w is None:
        return "- | -"
    objects, events = w
    return f"{objects:.2f} + {events:.2f} | {r['nodes'] * objects / QPS[r['kcm']]:.0f} s"


for r in rows:
    lag = r["job_start_lag_ms"]
    md.append(
        f"| {r['kcm']} | {r['nodes']} | {r['succeeded']} | {r['t_done']} s | {r['daemonset_done']} s | {r['t_done'] / r['daemonset_done']:.2f} "
        f"| {writes_and_floor(r, 'job_controller', 'job-controller')} "
        f"| {writes_and_floor(r, 'daemonset_controller', 'daemon-set-controller')} "
        f"| {r['exit_lag']} s | {lag['median_ms'] / 1000:.1f} s / {lag['max_ms'] / 1000:.1f} s | {r['rss_mib']} MiB |"
    )
md += [
    "",
    "**Creating the Jobs.** `T_created`: start → every Job exists (paced to the Job controller); raw floor: the "
    "same N Job objects from `examples/raw_floor.rs`, a bare parallel client, at each concurrency tried "
    "(best in bold); requests: under the controller's own user in the audit log.",
    "",
    "| KCM | N | T_created | raw floor by concurrency | T_created / best raw | writes/node | reads |",
    "|---|---:|---:|---|---:|---:|---:|",
]
for r in rows:
    by = r.get("raw_floor_by_concurrency") or {str(r["raw_concurrency"]): r["raw_floor"]}
    floors = ", ".join((f"**{v:.1f} s @{c}**" if int(c) == r["raw_concurrency"] else f"{v:.1f} s @{c}") for c, v in by.items())
    ratio = f"{r['t_created'] / r['raw_floor']:.1f}" if r.get("t_created") and r["raw_floor"] else "-"
    md.append(f"| {r['kcm']} | {r['nodes']} | {r['t_created']} s | {floors} | {ratio} | {r['writes_per_node']} | {r['reads']} |")
md += ["", "Requests under the controller's own user, by verb and resource:", ""]
for r in rows:
    reqs = ", ".join(f"{k} {v}" for k, v in sorted(r["requests"].items(), key=lambda kv: -kv[1]))
    md.append(f"- {r['kcm']}, {r['nodes']} nodes: {reqs}")
md += ["", "Control-plane writes per node caused by each contender (user agent: verb resource, total):", ""]
for r in rows:
    for key, label in (("job_controller", "Jobs"), ("daemonset_controller", "DaemonSet")):
        if r.get(key):
            writes = ", ".join(f"{k} {v}" for k, v in sorted(r[key]["writes"].items(), key=lambda kv: -kv[1]))
            md.append(f"- {r['kcm']}, {r['nodes']} nodes, {label}: {writes}")
open(f"{out_dir}/results.md", "w").write("\n".join(md) + "\n")

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("bench-render: matplotlib is missing (apt-get install python3-matplotlib); no plot", file=sys.stderr)
    sys.exit(0)
rates = [k for k in ("defaults", "raised") if any(r["kcm"] == k for r in rows)]
fig, axes = plt.subplots(1, len(rates), figsize=(6 * len(rates), 4.2), squeeze=False)
for ax, rate in zip(axes[0], rates):
    rs = [r for r in rows if r["kcm"] == rate]
    n = [r["nodes"] for r in rs]
    ax.plot(n, [r["t_done"] for r in rs], "o-", label="quayctl-controller: start → exit")
    ax.plot(n, [r["daemonset_done"] for r in rs], "s-", label="DaemonSet: every pod ran its init containers")
    ax.plot(n, [r["t_created"] for r in rs], "^--", label="quayctl-controller: every Job created")
    ax.plot(n, [r["raw_floor"] for r in rs], "v:", label="raw floor: N Jobs created")
    floors = [(r["nodes"], controller_writes(r, "job_controller", "job-controller")) for r in rs]
    floors = [(x, x * w[0] / QPS[rate]) for x, w in floors if w]
    if floors:
        ax.plot(*zip(*floors), "x-.", color="grey", label="Job controller floor: N × its writes ÷ qps")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("nodes (kwok)")
    ax.set_ylabel("seconds")
    ax.set_title(f"kube-controller-manager: {rate}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(f"{out_dir}/results.png", dpi=110)
