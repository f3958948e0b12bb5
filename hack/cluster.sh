#!/usr/bin/env bash
# Start or stop a real, local Kubernetes control plane with simulated (kwok) nodes, on loopback only.
#
#   hack/cluster.sh up   STATE_DIR   start etcd, kube-apiserver, kube-controller-manager,
#                                    kube-scheduler and kwok; write STATE_DIR/env (KUBECONFIG, ...)
#   hack/cluster.sh down STATE_DIR   kill every process started by `up` (by PID)
#   hack/cluster.sh logs STATE_DIR   print the tail of every component's log
#   hack/cluster.sh restart STATE_DIR NAME   stop one component and start it again (same flags)
#
# REAL_NODES=1 (for `up`; opt-in, used by tests/e2e-real.sh) prepares the cluster for real nodes
# (hack/real-node.sh): a per-run bridge and subnet on the host (real-node.sh net-up), the apiserver
# serving on the bridge address (its `kubernetes` Service endpoint, reachable from the nodes) with a
# CA made here (serving cert with the bridge, service and loopback SANs; client certs for kubelets and
# kube-proxy), `--kubelet-preferred-address-types=InternalIP` (never the machine's resolver), and the
# root-ca-cert-publisher (kube-root-ca.crt, for pods with ServiceAccount tokens). `down` then also stops
# the real nodes and removes the bridge. Without it, everything is exactly as before: loopback only.
#
# Binaries come from hack/build-control-plane.sh (built once, cached outside the repo).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/common.sh
. "$here/common.sh"
cmd=${1:?usage: cluster.sh up|down|logs STATE_DIR}
state=${2:?usage: cluster.sh up|down|logs STATE_DIR}
log() { printf '[cluster] %s\n' "$*" >&2; }

down() {
  # Real nodes (if any) first: their kubelets and pods go before the apiserver they talk to.
  if [ -d "$state/real" ]; then "$here/real-node.sh" down "$state" || true; fi
  stop_control_plane
  if [ -d "$state/real" ]; then "$here/real-node.sh" net-down "$state" || true; fi
}

stop_control_plane() {
  [ -f "$state/pids" ] || return 0
  # Reverse start order: kwok and controllers first, etcd last.
  tac "$state/pids" | while read -r name pid; do
    if kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
  done
  for _ in $(seq 50); do
    alive=0
    while read -r name pid; do kill -0 "$pid" 2>/dev/null && alive=1; done < "$state/pids"
    [ $alive = 0 ] && break
    sleep 0.1
  done
  while read -r name pid; do kill -9 "$pid" 2>/dev/null || true; done < "$state/pids"
  rm -f "$state/pids"
  log "stopped"
}

logs() {
  for f in "$state"/logs/*.log; do
    [ -f "$f" ] || continue
    echo "===== $(basename "$f") (last 40 lines)"
    tail -n 40 "$f"
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for DESCRIPTION SECONDS COMMAND...: poll until COMMAND succeeds; on a timeout print every
# component's log and fail.
wait_for() {
  local what=$1 timeout=$2; shift 2
  poll "$timeout" "$what" "$@" || { log "ERROR: $what did not come"; logs >&2; return 1; }
}

start() {
  local name=$1; shift
  printf '%q ' "$@" > "$state/$name.cmd"   # for `restart`
  "$@" >>"$state/logs/$name.log" 2>&1 &
  echo "$name $!" >> "$state/pids"
}

# restart NAME: stop one component by PID and start it again with the same command line (the e2e
# suite restarts kube-apiserver mid-watch).
restart() {
  local name=$1 pid cmd
  pid=$(awk -v n="$name" '$1 == n {p = $2} END {print p}' "$state/pids")
  if [ -z "$pid" ] || [ ! -f "$state/$name.cmd" ]; then log "ERROR: no running $name in $state"; return 1; fi
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  sed -i "/^$name $pid\$/d" "$state/pids"
  cmd=$(cat "$state/$name.cmd")
  eval "set -- $cmd"
  "$@" >>"$state/logs/$name.log" 2>&1 &
  echo "$name $!" >> "$state/pids"
  if [ "$name" = kube-apiserver ]; then
    local bin; bin=$(CONTROL_PLANE_ONLY=1 "$here/build-control-plane.sh" 2>/dev/null | tail -n 1)
    wait_for "kube-apiserver /readyz after a restart" 90 "$bin/kubectl" --kubeconfig "$state/admin.kubeconfig" get --raw /readyz
  fi
  log "restarted $name"
}

kubeconfig() { # kubeconfig FILE TOKEN
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://$apiserver_ip:$apiserver_port
    certificate-authority: $ca_file
contexts:
- name: local
  context: {cluster: local, user: user, namespace: default}
current-context: local
users:
- name: user
  user: {token: $2}
KC
}

# real_pki: REAL_NODES=1 only. The per-run bridge (hack/real-node.sh net-up), a CA, the apiserver's
# serving cert for every address a client uses (bridge IP from the host and the nodes, the `kubernetes`
# Service IP and names from pods, loopback), and the apiserver flags that real nodes need.
real_pki() {
  export KUBECACHEDIR=${KUBECACHEDIR:-$state/kube-cache} # not ~/.kube/cache: the real-node leak check looks at $HOME
  "$here/real-node.sh" net-up "$state"
  # shellcheck disable=SC1091
  . "$state/real/net.env"
  apiserver_ip=$QUAYCTL_REAL_HOST_IP; ca_file=$state/pki/ca.crt
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=quayctl-e2e-ca" \
    -keyout "$state/pki/ca.key" -out "$ca_file" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$state/pki/apiserver.key" -out "$state/pki/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:%s,IP:10.96.0.1,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
    "$apiserver_ip" > "$state/pki/apiserver.ext"
  openssl x509 -req -in "$state/pki/apiserver.csr" -CA "$ca_file" -CAkey "$state/pki/ca.key" -CAcreateserial \
    -days 2 -extfile "$state/pki/apiserver.ext" -out "$state/pki/apiserver.crt" 2>/dev/null
  apiserver_tls=(--tls-cert-file "$state/pki/apiserver.crt" --tls-private-key-file "$state/pki/apiserver.key")
  endpoint_reconciler=()
  # Client certs signed by this CA authenticate kubelets and kube-proxies (real-node.sh mints them).
  # The default lease endpoint reconciler publishes $apiserver_ip:$apiserver_port as the endpoint of the
  # `kubernetes` Service, which kube-proxy on each node routes to. The apiserver reaches kubelets by
  # InternalIP only (the node's veth address), never through the machine's resolver.
  real_apiserver=(--client-ca-file "$ca_file" --kubelet-preferred-address-types InternalIP)
  # Real workloads too (IMAGES_FROM's real-node test runs a Deployment): the Deployment and
  # ReplicaSet controllers. kwok clusters leave them out, so workloads there never make pods.
  real_controllers=,root-ca-certificate-publisher-controller,deployment-controller,replicaset-controller
  real_kcm=(--root-ca-file "$ca_file")
}

up() {
  if [ -n "${KWOK_POD_PARALLELISM:-}" ] && ! [[ $KWOK_POD_PARALLELISM =~ ^[1-9][0-9]*$ ]]; then
    log "ERROR: KWOK_POD_PARALLELISM=$KWOK_POD_PARALLELISM: not a positive integer"; exit 2
  fi
  # The oldest version runs only kwok suites: no kubelet or kube-proxy for it unless REAL_NODES=1. The
  # newest builds all eight at once (its real-node suite follows, and the Go build cache is dropped
  # after a build).
  if [ "${K8S:-newest}" = oldest ] && [ "${REAL_NODES:-0}" != 1 ]; then
    bin=$(CONTROL_PLANE_ONLY=1 "$here/build-control-plane.sh" | tail -n 1)
  else
    bin=$("$here/build-control-plane.sh" | tail -n 1)
  fi
  mkdir -p "$state/logs" "$state/pki" "$state/etcd"
  [ ! -f "$state/pids" ] || { log "ERROR: $state already has a running cluster"; exit 1; }
  trap 'log "start failed"; down' ERR

  etcd_port=$(free_port); peer_port=$(free_port); apiserver_port=$(free_port)
  # Loopback and self-signed certs by default; REAL_NODES=1: the per-run bridge address and a CA of our own.
  apiserver_ip=127.0.0.1; ca_file=$state/pki/apiserver.crt
  apiserver_tls=(--cert-dir "$state/pki"); endpoint_reconciler=(--endpoint-reconciler-type none)
  real_apiserver=(); real_kcm=(); real_controllers=
  if [ "${REAL_NODES:-0}" = 1 ]; then real_pki; fi
  kcm_port=$(free_port); scheduler_port=$(free_port); kwok_port=$(free_port)

  openssl genrsa -out "$state/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$state/pki/sa.key" -pubout -out "$state/pki/sa.pub" 2>/dev/null
  admin_token=$(openssl rand -hex 16); kcm_token=$(openssl rand -hex 16)
  scheduler_token=$(openssl rand -hex 16); kwok_token=$(openssl rand -hex 16); controller_token=$(openssl rand -hex 16)
  cat > "$state/tokens.csv" <<T
$admin_token,admin,admin,"system:masters"
$kcm_token,system:kube-controller-manager,kcm,"system:masters"
$scheduler_token,system:kube-scheduler,scheduler
$kwok_token,kwok,kwok,"system:masters"
$controller_token,quayctl-controller,quayctl-controller,"system:masters"
T
  cat > "$state/audit-policy.yaml" <<'A'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
A

  log "starting etcd on 127.0.0.1:$etcd_port"
  # An 8 GiB quota (etcd's suggested maximum) instead of 2: `make heap` runs 5,000 pullers of 64
  # containers twice on one cluster, and their revisions filled 2 GiB ("mvcc: database space
  # exceeded", kwok's status patches refused, the run stuck). The file grows only as it is used.
  start etcd "$bin/etcd" --name local --data-dir "$state/etcd" --unsafe-no-fsync --quota-backend-bytes 8589934592 \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "local=http://127.0.0.1:$peer_port" --listen-metrics-urls "" --log-level warn
  wait_for "etcd" 30 curl -sf "http://127.0.0.1:$etcd_port/health"

  log "starting kube-apiserver on https://$apiserver_ip:$apiserver_port"
  # The audit log is read whole by make bench and the e2e tests: never rotated (a max size of 0
  # would mean 100 MB, which a 5,000-node bench passes, leaving the first part in another file).
  start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address "$apiserver_ip" --advertise-address "$apiserver_ip" --secure-port "$apiserver_port" \
    "${apiserver_tls[@]}" --token-auth-file "$state/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$state/pki/sa.pub" --service-account-signing-key-file "$state/pki/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 "${endpoint_reconciler[@]}" \
    --disable-admission-plugins TaintNodesByCondition \
    --audit-policy-file "$state/audit-policy.yaml" --audit-log-path "$state/logs/audit.jsonl" \
    --audit-log-mode blocking --audit-log-maxsize 1000000 "${real_apiserver[@]}"
  kubeconfig "$state/admin.kubeconfig" "$admin_token"
  kubeconfig "$state/kcm.kubeconfig" "$kcm_token"
  kubeconfig "$state/scheduler.kubeconfig" "$scheduler_token"
  kubeconfig "$state/kwok.kubeconfig" "$kwok_token"
  # An admin identity of its own, so the audit log can tell the controller's requests apart (make bench).
  kubeconfig "$state/controller.kubeconfig" "$controller_token"
  wait_for "kube-apiserver /readyz" 90 "$bin/kubectl" --kubeconfig "$state/admin.kubeconfig" get --raw /readyz

  # KCM_RATE=defaults (make bench) runs the controller-manager and scheduler at their upstream
  # defaults (20 requests/s, 5 concurrent Job syncs; scheduler 50/s), as most users' clusters do.
  if [ "${KCM_RATE:-raised}" = defaults ]; then
    kcm_rate=(); scheduler_rate=()
  else
    kcm_rate=(--kube-api-qps 200 --kube-api-burst 400 --concurrent-job-syncs 20)
    scheduler_rate=(--kube-api-qps 200 --kube-api-burst 400)
  fi
  log "starting kube-controller-manager, kube-scheduler, kwok"
  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$state/kcm.kubeconfig" --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" \
    --authorization-always-allow-paths /healthz,/readyz,/livez,/metrics \
    --controllers job-controller,garbage-collector-controller,ttl-after-finished-controller,namespace-controller,pod-garbage-collector-controller,cronjob-controller,daemonset-controller,serviceaccount-controller,resourcequota-controller$real_controllers \
    "${kcm_rate[@]}" "${real_kcm[@]}"
  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$state/scheduler.kubeconfig" --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port "$scheduler_port" \
    "${scheduler_rate[@]}"
  # KWOK_POD_PARALLELISM (make bench): how many pod stages kwok plays at once (its default: 4). kwok
  # is every simulated node's kubelet in one process; on a real cluster each node reports its own pods.
  local kwok_options=()
  if [ -n "${KWOK_POD_PARALLELISM:-}" ]; then
    # A KwokConfiguration given by --config is not defaulted: kwok's other defaults (v0.8.0) are spelt out.
    cat > "$state/kwok-options.yaml" <<E
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  podPlayStageParallelism: $KWOK_POD_PARALLELISM
  nodePlayStageParallelism: 4
  nodeLeaseParallelism: 4
  podsOnNodeSyncParallelism: 1
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false
  enableDebuggingHandlers: true
  enableProfilingHandler: true
  enableContentionProfiling: false
  manageAllNodes: false
E
    kwok_options=(--config "$state/kwok-options.yaml")
  fi
  start kwok "$bin/kwok" --kubeconfig "$state/kwok.kubeconfig" \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --config "$here/kwok/stages.yaml" "${kwok_options[@]}" --server-address "127.0.0.1:$kwok_port" \
    --cidr 10.244.0.0/16 --node-ip 10.240.0.1

  if [ "${REAL_NODES:-0}" = 1 ]; then
    printf 'export QUAYCTL_APISERVER=https://%s:%s\nexport QUAYCTL_CA=%s\n' "$apiserver_ip" "$apiserver_port" "$ca_file" \
      > "$state/real/apiserver.env"
  fi
  cat > "$state/env" <<E
export KUBECONFIG=$state/admin.kubeconfig
export QUAYCTL_E2E_STATE=$state
export QUAYCTL_E2E_BIN=$bin
export QUAYCTL_E2E_AUDIT_LOG=$state/logs/audit.jsonl
export PATH=$bin:\$PATH
E
  k() { "$bin/kubectl" --kubeconfig "$state/admin.kubeconfig" "$@"; }
  wait_for "kube-controller-manager /healthz" 60 curl -skf "https://127.0.0.1:$kcm_port/healthz"
  wait_for "kube-scheduler /healthz" 60 curl -skf "https://127.0.0.1:$scheduler_port/healthz"
  wait_for "the default ServiceAccount (serviceaccount controller)" 60 k get serviceaccount default -n default
  # kwok is ready once it brings a probe node to Ready.
  "$here/nodes.sh" probe-ready | k apply -f - >/dev/null
  wait_for "kwok to make a node Ready" 60 k wait --for=condition=Ready node/probe-ready --timeout=1s
  k delete node probe-ready --wait=false >/dev/null
  trap - ERR
  log "up: KUBECONFIG=$state/admin.kubeconfig (source $state/env)"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  logs) logs ;;
  restart) restart "${3:?usage: cluster.sh restart STATE_DIR NAME}" ;;
  *) echo "usage: cluster.sh up|down|logs STATE_DIR | restart STATE_DIR NAME" >&2; exit 2 ;;
esac
