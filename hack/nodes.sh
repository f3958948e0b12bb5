#!/usr/bin/env bash
# Print Node manifests for kwok, one per NAME[:SHAPE] argument. Shapes:
#   ready (default)  Ready, schedulable, pods succeed    (name is used as given)
#   cordoned         spec.unschedulable: true
#   noschedule       taint dedicated=infra:NoSchedule
#   noexecute        taint dedicated=infra:NoExecute
#   gpu              taint nvidia.com/gpu=present:NoSchedule (a GPU pool)
#   notready         Ready=False (the name must start with notready-: kwok's stages key on it)
#   fail             pods fail   (name must start with fail-)
#   slow             pods never finish (name must start with slow-)
#   pullerr          every puller container waits with ErrImagePull (name must start with pullerr-)
#   late             pods succeed after ~10 s (name must start with late-)
# Extra labels for every node: NODE_LABELS="k=v,k2=v2"; extra taints: NODE_TAINTS="key=value:Effect,key:Effect".
set -euo pipefail
for arg in "$@"; do
  name=${arg%%:*}; shape=ready
  [ "$arg" != "$name" ] && shape=${arg#*:}
  case "$shape" in
    notready) [[ $name == notready-* ]] || { echo "nodes.sh: $name: notready nodes must be named notready-*" >&2; exit 2; } ;;
    fail) [[ $name == fail-* ]] || { echo "nodes.sh: $name: failing nodes must be named fail-*" >&2; exit 2; } ;;
    slow) [[ $name == slow-* ]] || { echo "nodes.sh: $name: slow nodes must be named slow-*" >&2; exit 2; } ;;
    late) [[ $name == late-* ]] || { echo "nodes.sh: $name: late nodes must be named late-*" >&2; exit 2; } ;;
    pullerr) [[ $name == pullerr-* ]] || { echo "nodes.sh: $name: pull-error nodes must be named pullerr-*" >&2; exit 2; } ;;
    ready|cordoned|noschedule|noexecute|gpu) ;;
    *) echo "nodes.sh: unknown shape $shape" >&2; exit 2 ;;
  esac
  unschedulable=false; taints="[]"
  [ "$shape" = cordoned ] && unschedulable=true
  [ "$shape" = noschedule ] && taints='[{key: dedicated, value: infra, effect: NoSchedule}]'
  [ "$shape" = noexecute ] && taints='[{key: dedicated, value: infra, effect: NoExecute}]'
  [ "$shape" = gpu ] && taints='[{key: nvidia.com/gpu, value: present, effect: NoSchedule}]'
  if [ -n "${NODE_TAINTS:-}" ]; then
    list=${taints#[}; list=${list%]}
    IFS=',' read -ra more <<< "$NODE_TAINTS"
    for t in "${more[@]}"; do
      effect=${t##*:}; kv=${t%:*}
      if [[ $kv == *=* ]]; then entry="{key: ${kv%%=*}, value: \"${kv#*=}\", effect: $effect}"; else entry="{key: $kv, effect: $effect}"; fi
      list+="${list:+, }$entry"
    done
    taints="[$list]"
  fi
  labels="kubernetes.io/hostname: $name, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok, quayctl-e2e/shape: $shape"
  if [ -n "${NODE_LABELS:-}" ]; then
    IFS=',' read -ra extra <<< "$NODE_LABELS"
    for kv in "${extra[@]}"; do labels="$labels, ${kv%%=*}: \"${kv#*=}\""; done
  fi
  cat <<N
---
apiVersion: v1
kind: Node
metadata:
  name: $name
  annotations: {kwok.x-k8s.io/node: fake}
  labels: {$labels}
spec:
  unschedulable: $unschedulable
  taints: $taints
N
done
