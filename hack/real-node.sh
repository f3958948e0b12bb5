#!/usr/bin/env bash
# Real nodes beside the kwok ones (issue 8): kubelet + containerd + kube-proxy, so images are really
# pulled and containers really run. A node is what a kind node container would be, built from
# namespaces: a network namespace joined by a veth pair to a per-run bridge on the host, a private
# mount namespace (tmpfs over /run, /var/lib, /var/log, /opt: the paths containerd and the kubelet
# hard-code, e.g. /var/lib/kubelet/device-plugins and /run/containerd/s), and a cgroup subtree
# /quayctl-<run>-<node> (the kubelet's cgroupRoot). Its CNI bridge, iptables rules, forwarding and
# mounts live in its namespaces and vanish with them. The node's namespace has no default route: the
# only addresses it can reach are on the run's bridge (the apiserver and the registry on the host end).
#
#   real-node.sh net-up      STATE           per-run id, subnet and bridge (cluster.sh up runs it with REAL_NODES=1)
#   real-node.sh registry-up STATE           two docker-registries on the bridge address (free ports, own storage):
#                                            an open one, and a private one behind basic auth (htpasswd, bcrypt)
#   real-node.sh docker-up   STATE           a dockerd of the run in a namespace of its own (image builds, docker run)
#   real-node.sh up          STATE NODE...   one real node per name; waits until each is Ready. Per call:
#                                            REAL_NODE_TAINTS="key=value:Effect,..." (registerWithTaints),
#                                            REAL_NODE_LABELS="k=v,..." (besides quayctl-e2e/real=true),
#                                            REAL_NODE_GC=age (image GC by age: imageMaximumGCAge 1m)
#   real-node.sh down        STATE           stop every process of the run (nodes, dockerd, registry) by PID
#                                            and cgroup, remove their namespaces, links and cgroups
#   real-node.sh net-down    STATE           remove the bridge; the last run restores the kubelet's sysctls
#   real-node.sh check-clean STATE           fail (listing it) if anything of the run is left on the host
#   real-node.sh box         STATE NAME      a bare box (namespaces, cgroup, tmpfs mounts), no daemon (tests/leak-check.sh)
#   real-node.sh ctr  STATE NODE ARGS...     ctr against NODE's containerd, inside the node's namespaces
#   real-node.sh exec STATE NODE CMD...      any command inside NODE's namespaces (network + mount)
#
# Host-wide changes, all undone by `down`/`net-down` (cluster.sh down runs both):
#   links qc<run>br (bridge) and qc<run><n> (veth host ends); network-namespace bind mounts under
#   STATE/real/netns; cgroups /quayctl-<run>-* in every hierarchy; processes; the kubelet's sysctls
#   (vm.overcommit_memory, vm.panic_on_oom, kernel.panic, kernel.panic_on_oops, kernel.keys.root_max*):
#   recorded before the first run starts, restored when the last one ends (/run/quayctl-real-node).
# Test-only settings, never for production: kubelets accept anonymous requests with AlwaysAllow
# authorization; kubelet and kube-proxy client certs are in system:masters.
set -euo pipefail
# shellcheck source=hack/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
usage="usage: real-node.sh net-up|registry-up|docker-up|up|box|down|net-down|check-clean|ctr|exec STATE [ARGS...]"
cmd=${1:?$usage}
state=$(cd "${2:?$usage}" && pwd)
shift 2
real=$state/real
ledger=/run/quayctl-real-node
export PATH=$PATH:/usr/sbin:/sbin
# kubectl's discovery cache goes to the run's directory, not ~/.kube/cache (check-clean looks at $HOME).
export KUBECACHEDIR=${KUBECACHEDIR:-$state/kube-cache}
# Host-wide values the kubelet (and kube-proxy, dockerd) could change; ip_forward and nf_conntrack_max
# are only watched.
sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes net.ipv4.ip_forward net.netfilter.nf_conntrack_max)

log() { printf '[real-node] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

load_env() {
  [ -f "$real/net.env" ] || die "$real/net.env missing: run cluster.sh up with REAL_NODES=1 first"
  # shellcheck disable=SC1091
  . "$real/net.env"
  run=$QUAYCTL_REAL_RUN
}

# Every cgroup hierarchy mounted on this host (v1 controllers, name=systemd, the unified v2 one).
hierarchies() { awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) ~ /^cgroup2?$/) print $5; break } }' /proc/self/mountinfo; }

# ---------------------------------------------------------------- processes (by PID and start time)
starttime() { awk '{ sub(/^.*\) /, ""); print $20 }' "/proc/$1/stat" 2>/dev/null; }
# alive PID START: the process still exists, is the one we started (not a reused PID) and is not a
# zombie waiting for its (new) parent to reap it.
alive() {
  [ -n "$2" ] || return 1
  local st
  st=$(awk '{ sub(/^.*\) /, ""); print $1, $20 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$st" != "Z $2" ] && [ "${st#* }" = "$2" ]
}

# spawn BOX NAME CMD...: start CMD in the background, log to STATE/real/logs/NAME.log, record its PID.
spawn() {
  local box=$1 name=$2; shift 2
  ("$@") >"$real/logs/$name.log" 2>&1 &
  local pid=$! start=""
  for _ in $(seq 50); do start=$(starttime "$pid") && [ -n "$start" ] && break; sleep 0.02; done
  echo "$box $name $pid $start" >> "$real/pids"
  echo "$pid"
}

# cg_exec CGROUP CMD...: exec CMD as a member of CGROUP in every hierarchy (so all its descendants,
# the containerd shims included, are found there on teardown).
cg_exec() {
  local cg=$1 h; shift
  for h in $(hierarchies); do echo "$BASHPID" > "$h$cg/cgroup.procs"; done
  exec "$@"
}

# ---------------------------------------------------------------- host snapshot and sysctl ledger
snapshot() { # snapshot DIR: what check-clean compares against
  local dir=$1 k h
  mkdir -p "$dir"
  for k in "${sysctls[@]}"; do printf '%s=%s\n' "$k" "$(sysctl -n "$k" 2>/dev/null || echo -)"; done > "$dir/sysctl"
  for t in iptables ip6tables iptables-legacy ip6tables-legacy; do
    if command -v "$t-save" >/dev/null; then "$t-save" 2>/dev/null | sed -E '/^#/d; s/\[[0-9]+:[0-9]+\]//' || true; fi \
      > "$dir/$t"
  done
  for d in /var/lib /var/log /run /etc /opt "$HOME"; do
    find "$d" -mindepth 1 -maxdepth 1 ! -name quayctl-real-node ! -path "$HOME/.cache"
  done | sort > "$dir/dirs"
  for h in $(hierarchies); do find "$h" -mindepth 1 -maxdepth 1 -type d; done | sort > "$dir/cgroups"
  awk '{print $5}' /proc/self/mountinfo | sort > "$dir/mounts"
  ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort > "$dir/links"
}

lock_host() { exec {host_lock}</run; flock "$host_lock"; }
unlock_host() { flock -u "$host_lock"; exec {host_lock}<&-; }

# The first run to start records the original sysctls; the last one to end restores them (two runs
# at once must not "restore" the values the other's kubelet set). Called under lock_host.
ledger_join() {
  mkdir -p "$ledger/runs"
  if [ -z "$(ls -A "$ledger/runs")" ]; then cp "$real/before/sysctl" "$ledger/sysctl.orig"; fi
  echo "$state" > "$ledger/runs/$run"
}
ledger_leave() {
  [ -d "$ledger" ] || return 0
  rm -f "$ledger/runs/$run"
  local r
  for r in "$ledger"/runs/*; do # forget runs that died without a teardown (their bridge is gone)
    [ -e "$r" ] || continue
    ip link show "qc$(basename "$r")br" >/dev/null 2>&1 || rm -f "$r"
  done
  if [ -n "$(ls -A "$ledger/runs")" ]; then
    log "other real-node runs are active: sysctls stay as they are until the last one ends"
    return 0
  fi
  local k v
  while IFS='=' read -r k v; do
    [ "$v" = - ] && continue
    [ "$(sysctl -n "$k" 2>/dev/null)" = "$v" ] || sysctl -qw "$k=$v" || log "could not restore $k=$v"
  done < "$ledger/sysctl.orig"
  cp "$ledger/sysctl.orig" "$real/sysctl.expected"
  rm -rf "$ledger"
}

# ---------------------------------------------------------------- network
net_up() {
  [ ! -f "$real/net.env" ] || die "$real/net.env exists: net-up ran already for $state"
  mkdir -p "$real/logs" "$real/netns" "$real/nodes"
  snapshot "$real/before"
  lock_host
  # A run id no link or cgroup uses yet, and a /20 in 10.128.0.0-10.239.255.255 that overlaps no
  # route (any table), no address and no nameserver of this host: /24 #0 is the bridge (host .1,
  # nodes .11.., dockerd .250), /24s #8..15 are the nodes' pod subnets (one each).
  while :; do
    run=$(openssl rand -hex 3)
    ip -o link show | grep -q "qc$run" && continue
    ls -d /sys/fs/cgroup/*/quayctl-"$run"-* /sys/fs/cgroup/quayctl-"$run"-* >/dev/null 2>&1 && continue
    break
  done
  local net
  net=$(python3 - <<'PY'
import ipaddress, random, re, subprocess, sys
used = []
def add(s):
    try: used.append(ipaddress.ip_network(s, strict=False))
    except ValueError: pass
for line in subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True).stdout.splitlines():
    tok = line.split()
    if not tok: continue
    dst = tok[1] if tok[0] in ("local", "broadcast", "unreachable", "prohibit", "blackhole", "throw", "multicast", "anycast", "nat", "unicast") else tok[0]
    if dst != "default": add(dst)
for line in subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout.splitlines():
    m = re.search(r"inet (\S+)", line)
    if m: add(m.group(1))
for line in open("/etc/resolv.conf"):
    tok = line.split()
    if len(tok) >= 2 and tok[0] == "nameserver": add(tok[1])
for n in ("10.96.0.0/16", "10.240.0.0/12"): add(n)  # service range, kwok's fake node/pod ranges
for _ in range(500):
    net = ipaddress.ip_network(f"10.{random.randint(128, 239)}.{random.randrange(0, 256, 16)}.0/20")
    if not any(net.overlaps(u) for u in used if u.version == 4):
        print(net); break
else:
    sys.exit("no free /20 in 10.128.0.0/9")
PY
)
  local a b c
  IFS=. read -r a b c _ <<< "${net%/*}"
  local br=qc${run}br
  printf '%s\n' "export QUAYCTL_REAL_RUN=$run" "export QUAYCTL_REAL_NET=$net" \
    "export QUAYCTL_REAL_BRIDGE=$br" "export QUAYCTL_REAL_HOST_IP=$a.$b.$c.1" \
    "export QUAYCTL_REAL_PREFIX=$a.$b.$c" "export QUAYCTL_REAL_POD_PREFIX=$a.$b" \
    "export QUAYCTL_REAL_POD_THIRD=$((c + 8))" "export QUAYCTL_REAL_POD_CIDR=$a.$b.$((c + 8)).0/21" > "$real/net.env"
  ledger_join
  ip link add "$br" type bridge
  sysctl -qw "net.ipv6.conf.$br.disable_ipv6=1"
  ip addr add "$a.$b.$c.1/24" dev "$br"
  ip link set "$br" up
  unlock_host
  log "run $run: bridge $br $a.$b.$c.1/24 (subnet $net, checked against this host's routes and addresses)"
}

net_down() {
  [ -f "$real/net.env" ] || return 0
  load_env
  lock_host
  ip link del "$QUAYCTL_REAL_BRIDGE" 2>/dev/null || true
  ledger_leave
  unlock_host
}

# ---------------------------------------------------------------- boxes (node or dockerd namespaces)
# box_up NAME IP TMPFS_DIRS...: netns + veth on the bridge (no default route), cgroup subtree, and a
# holder process (sleep) that owns the private mount namespace with tmpfs over TMPFS_DIRS. Writes
# STATE/real/nodes/NAME/box.env.
box_up() {
  local name=$1 ip=$2; shift 2
  local d=$real/nodes/$name idx veth ns cg h
  mkdir -p "$d/tmp"
  idx=0; [ ! -f "$real/boxes" ] || idx=$(wc -l < "$real/boxes")
  veth=qc${run}$idx; ns=$real/netns/$name; cg=/quayctl-$run-$idx
  echo "$name" >> "$real/boxes"
  printf '%s\n' "BOX_NAME=$name" "BOX_IP=$ip" "BOX_VETH=$veth" "BOX_NETNS=$ns" "BOX_CGROUP=$cg" > "$d/box.env"
  : > "$ns"
  unshare --net="$ns" true
  echo "BOX_NETNS_INODE=$(stat -L -c %i "$ns")" >> "$d/box.env"
  ip link add "$veth" type veth peer name eth0 netns "$ns"
  sysctl -qw "net.ipv6.conf.$veth.disable_ipv6=1"
  ip link set "$veth" master "$QUAYCTL_REAL_BRIDGE" up
  nsenter --net="$ns" sh -ec "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip link set lo up; ip addr add $ip/24 dev eth0; ip link set eth0 up"
  for h in $(hierarchies); do
    mkdir -p "$h$cg/system"
    if [ -f "$h$cg/cpuset.cpus" ]; then # cgroup v1 cpuset: a new group starts with no CPUs/memory nodes
      cat "$h/cpuset.cpus" > "$h$cg/cpuset.cpus"; cat "$h/cpuset.mems" > "$h$cg/cpuset.mems"
      cat "$h/cpuset.cpus" > "$h$cg/system/cpuset.cpus"; cat "$h/cpuset.mems" > "$h$cg/system/cpuset.mems"
    fi
    if [ -f "$h$cg/cgroup.subtree_control" ] && [ -s "$h$cg/cgroup.controllers" ]; then # cgroup v2
      for c in $(< "$h$cg/cgroup.controllers"); do echo "+$c" > "$h$cg/cgroup.subtree_control" || true; done
    fi
  done
  # `mount -n`/`umount -n` everywhere: no entry in libmount's utab, whose directory (/run/mount) the
  # first utab write on a freshly booted host would create on the host's /run (these tmpfs mounts run
  # before /run is covered).
  local mounts="" dir
  for dir in "$@"; do mounts+="mount -n -t tmpfs -o mode=0755,size=256m quayctl-$run $dir; "; done
  local holder
  holder=$(spawn "$name" "$name-holder" cg_exec "$cg/system" nsenter --net="$ns" -- \
    unshare --mount --propagation private -- sh -ec "${mounts}exec sleep infinity")
  local self_mnt; self_mnt=$(readlink /proc/self/ns/mnt)
  for _ in $(seq 100); do
    [ "$(cat "/proc/$holder/comm" 2>/dev/null)" = sleep ] && [ "$(readlink "/proc/$holder/ns/mnt")" != "$self_mnt" ] && break
    sleep 0.05
  done
  [ "$(cat "/proc/$holder/comm" 2>/dev/null)" = sleep ] || die "$name: namespace holder did not start: $(cat "$real/logs/$name-holder.log")"
  printf '%s\n' "BOX_HOLDER=$holder" "BOX_MNTNS=$(readlink "/proc/$holder/ns/mnt")" >> "$d/box.env"
}

# in_box NAME CMD...: run CMD in box NAME's network + mount namespaces, as a member of its cgroup.
in_box() {
  local name=$1; shift
  # shellcheck disable=SC1090,SC1091
  . "$real/nodes/$name/box.env"
  cg_exec "$BOX_CGROUP/system" nsenter -t "$BOX_HOLDER" -n -m -- env TMPDIR="$real/nodes/$name/tmp" "$@"
}

# Every PID in box NAME: its cgroup subtree (all hierarchies; the names are the run's own), and while
# its network namespace is still mounted (so its inode cannot belong to another run's new namespace:
# inodes of freed namespaces are reused), the processes in it. Never matched by mount namespace: that
# one has no anchor of ours once its processes are gone.
box_pids() {
  local name=$1 h inode
  # shellcheck disable=SC1090,SC1091
  . "$real/nodes/$name/box.env"
  {
    for h in $(hierarchies); do
      if [ -d "$h$BOX_CGROUP" ]; then find "$h$BOX_CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null || true; fi
    done
    if grep -q " $BOX_NETNS " /proc/self/mountinfo && inode=$(stat -L -c %i "$BOX_NETNS" 2>/dev/null); then
      find /proc/[0-9]*/ns -maxdepth 1 -name net -lname "net:\[$inode\]" -printf '%h\n' 2>/dev/null | cut -d/ -f3 || true
    fi
  } | sort -un
}

box_down() {
  local name=$1 h pids BOX_NETNS="" BOX_VETH="" BOX_CGROUP=""
  [ -f "$real/nodes/$name/box.env" ] || return 0
  # shellcheck disable=SC1090,SC1091
  . "$real/nodes/$name/box.env"
  # After the daemons (stop_daemons): everything else in its cgroups and namespaces: pods, shims, holder.
  for _ in $(seq 100); do
    pids=$(box_pids "$name")
    [ -z "$pids" ] && break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  [ -z "$(box_pids "$name")" ] || log "$name: processes left: $(box_pids "$name" | tr '\n' ' ')"
  for h in $(hierarchies); do
    [ -d "$h$BOX_CGROUP" ] || continue
    for _ in $(seq 50); do
      find "$h$BOX_CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [ -d "$h$BOX_CGROUP" ] || break
      sleep 0.1
    done
    if [ -d "$h$BOX_CGROUP" ]; then log "$name: cannot remove cgroup $h$BOX_CGROUP"; fi
  done
  ip link del "$BOX_VETH" 2>/dev/null || true
  if grep -q " $BOX_NETNS " /proc/self/mountinfo; then umount -n "$BOX_NETNS" || umount -n -l "$BOX_NETNS"; fi
  rm -f "$BOX_NETNS"
}

# ---------------------------------------------------------------- registry and dockerd
# serve_registry NAME CONFIG_EXTRA: one docker-registry on the bridge address; prints HOST:PORT.
serve_registry() {
  local name=$1 extra=$2 d=$real/$1 port
  mkdir -p "$d/data"
  port=$(python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$QUAYCTL_REAL_HOST_IP")
  cat > "$d/config.yml" <<Y
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $d/data}
  delete: {enabled: true}
  maintenance: {uploadpurging: {enabled: false}}
http:
  addr: $QUAYCTL_REAL_HOST_IP:$port
  secret: $(openssl rand -hex 16)
$extra
Y
  spawn - "$name" docker-registry serve "$d/config.yml" >/dev/null
  local reg=$QUAYCTL_REAL_HOST_IP:$port
  # Up once it answers at all: 200 when open, 401 behind basic auth.
  poll 10 "the registry $name on $reg" sh -c "curl -s -o /dev/null -w '%{http_code}' http://$reg/v2/ | grep -qE '^(200|401)$'" ||
    die "registry $name did not answer: $(cat "$real/logs/$name.log")"
  echo "$reg"
}

registry_up() {
  load_env
  local reg private user=quayctl password
  reg=$(serve_registry registry "")
  # The private one: basic auth over plain HTTP on the run's bridge (test only), one bcrypt user.
  password=$(openssl rand -hex 12)
  mkdir -p "$real/private-registry"
  htpasswd -Bbn "$user" "$password" > "$real/private-registry/htpasswd"
  private=$(serve_registry private-registry "auth:
  htpasswd: {realm: quayctl-e2e, path: $real/private-registry/htpasswd}")
  printf '%s\n' "export QUAYCTL_REGISTRY=$reg" "export QUAYCTL_PRIVATE_REGISTRY=$private" \
    "export QUAYCTL_PRIVATE_USER=$user" "export QUAYCTL_PRIVATE_PASSWORD=$password" > "$real/registry.env"
  log "registries on http://$reg and http://$private (basic auth), storage under $real"
}

docker_up() {
  load_env
  # shellcheck disable=SC1091
  . "$real/registry.env"
  local d=$real/nodes/docker
  box_up docker "$QUAYCTL_REAL_PREFIX.250" /run /var/lib /var/log /opt /etc/docker
  # shellcheck disable=SC1091
  . "$d/box.env"
  mkdir -p "$d/data" "$d/exec" "$d/cli"
  echo '{}' > "$d/daemon.json"
  # No bridge, no iptables, no forwarding: nothing of it touches the host's network; containers get
  # cgroups under the box's own subtree; the local registry is plain HTTP.
  spawn docker dockerd in_box docker dockerd --data-root "$d/data" --exec-root "$d/exec" \
    -H "unix://$d/docker.sock" --pidfile "$d/docker.pid" --config-file "$d/daemon.json" \
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false --userland-proxy=false \
    --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent "$BOX_CGROUP/containers" \
    --insecure-registry "$QUAYCTL_REGISTRY" --storage-driver overlay2 --log-level warn >/dev/null
  printf '%s\n' "export DOCKER_HOST=unix://$d/docker.sock" "export DOCKER_CONFIG=$d/cli" > "$real/docker.env"
  DOCKER_HOST=unix://$d/docker.sock DOCKER_CONFIG=$d/cli poll 30 dockerd docker_cli version ||
    die "dockerd did not start: $(tail -n 20 "$real/logs/dockerd.log")"
  log "dockerd up (DOCKER_HOST=unix://$d/docker.sock, in its own namespaces at $QUAYCTL_REAL_PREFIX.250)"
}

# ---------------------------------------------------------------- nodes
mint_cert() { # mint_cert OUT SUBJECT: a client cert signed by the cluster CA
  openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA "$QUAYCTL_CA" -CAkey "${QUAYCTL_CA%.crt}.key" -set_serial "0x$(openssl rand -hex 8)" \
    -days 2 -out "$1.crt" 2>/dev/null
}

write_kubeconfig() { # write_kubeconfig FILE CERT
  cat > "$1" <<K
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "$QUAYCTL_APISERVER", certificate-authority: "$QUAYCTL_CA"}
contexts:
- name: local
  context: {cluster: local, user: user}
current-context: local
users:
- name: user
  user: {client-certificate: "$2.crt", client-key: "$2.key"}
K
}

# taints_yaml "key=value:Effect,...": the kubelet's registerWithTaints.
taints_yaml() {
  [ -n "$1" ] || return 0
  local t kv
  echo "registerWithTaints:"
  IFS=',' read -ra list <<< "$1"
  for t in "${list[@]}"; do
    kv=${t%:*}
    if [[ $kv == *=* ]]; then
      printf -- '- {key: %s, value: "%s", effect: %s}\n' "${kv%%=*}" "${kv#*=}" "${t##*:}"
    else
      printf -- '- {key: %s, effect: %s}\n' "$kv" "${t##*:}"
    fi
  done
}

node_up() {
  local i=$1 name=$2 d=$real/nodes/$2
  local ip=$QUAYCTL_REAL_PREFIX.$((11 + i)) subnet=$QUAYCTL_REAL_POD_PREFIX.$((QUAYCTL_REAL_POD_THIRD + i)).0/24
  box_up "$name" "$ip" /run /var/lib /var/log /opt
  # shellcheck disable=SC1090,SC1091
  . "$d/box.env"
  # Service IPs on-link: the node's own traffic to them gets a route, then kube-proxy's DNAT (a packet
  # it does not rewrite finds no one on the bridge; nothing is forwarded beyond it).
  nsenter --net="$BOX_NETNS" ip route add 10.96.0.0/16 dev eth0
  mkdir -p "$d/containerd/root" "$d/containerd/state" "$d/containerd/opt" "$d/containerd/runc" \
    "$d/cni/net.d" "$d/cni/ipam" "$d/kubelet/root" "$d/kubelet/pki" "$d/kubelet/pod-logs" \
    "$d/kubelet/volume-plugins" "$d/pki"
  local sock=$d/containerd.sock registry
  for registry in "$QUAYCTL_REGISTRY" "$QUAYCTL_PRIVATE_REGISTRY"; do # plain HTTP, on the run's bridge
    mkdir -p "$d/containerd/certs.d/$registry"
    printf 'server = "http://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$registry" "$registry" \
      > "$d/containerd/certs.d/$registry/hosts.toml"
  done
  # containerd 2.x (hack/build-node-runtime.sh), config version 4. Its shim and runc are the ones
  # built beside it (PATH and BinaryName), never Debian's (docker.io brings containerd 1.6 and runc).
  cat > "$d/containerd.toml" <<T
version = 4
root = "$d/containerd/root"
state = "$d/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs",
  "io.containerd.snapshotter.v1.blockfile"]
[plugins."io.containerd.server.v1.grpc"]
  address = "$sock"
[plugins."io.containerd.server.v1.ttrpc"]
  address = "$sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/containerd/opt"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$QUAYCTL_REGISTRY/quayctl-e2e/pause:3.10"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$d/containerd/certs.d"
[plugins."io.containerd.cri.v1.runtime"]
  # This VM lacks CAP_SYS_RESOURCE: a negative oom_score_adj is refused, so never ask for one.
  restrict_oom_score_adj = true
  disable_apparmor = true
  tolerate_missing_hugetlb_controller = true
  netns_mounts_under_state_dir = true
  # cgroup v1 is deprecated in containerd 2.2+ (removal no earlier than 2029); this machine has it.
  ignore_deprecation_warnings = ["io.containerd.deprecation/cgroup-v1"]
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$runtime/runc"
        Root = "$d/containerd/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$runtime/cni"]
    conf_dir = "$d/cni/net.d"
T
  # isGateway (forwarding) and ipMasq (NAT to the node's address) act inside the node's namespace only.
  cat > "$d/cni/net.d/10-quayctl.conflist" <<J
{"cniVersion": "0.4.0", "name": "quayctl-$run", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$d/cni/ipam"}}]}
J
  mint_cert "$d/pki/kubelet" "/O=system:nodes/O=system:masters/CN=system:node:$name"
  mint_cert "$d/pki/kube-proxy" "/O=system:masters/CN=system:kube-proxy"
  write_kubeconfig "$d/kubelet.kubeconfig" "$d/pki/kubelet"
  write_kubeconfig "$d/kube-proxy.kubeconfig" "$d/pki/kube-proxy"
  cat > "$d/kubelet.yaml" <<Y
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
# Test only: anyone who reaches this address may use the kubelet API.
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$sock
cgroupDriver: cgroupfs
cgroupRoot: $BOX_CGROUP
# cgroup v1 is in maintenance; this machine has it, and 1.35 would refuse it by default.
failCgroupV1: false
failSwapOn: false
podLogsDir: $d/kubelet/pod-logs
volumePluginDir: $d/kubelet/volume-plugins
# Never collect the test's images by disk usage; evict only when really out of room. REAL_NODE_GC=age:
# collect images unused for a minute (the kubelet's GC loop runs every 5 minutes).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
$(if [ "${REAL_NODE_GC:-}" = age ]; then printf 'imageMaximumGCAge: 1m\nimageMinimumGCAge: 30s'; fi)
$(taints_yaml "${REAL_NODE_TAINTS:-}")
evictionHard: {memory.available: 20Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
serializeImagePulls: false
# No resolver for pods (no DNS lookups through the machine's resolver); no graceful-shutdown inhibitor.
resolvConf: ""
hairpinMode: none
shutdownGracePeriod: 0s
rotateCertificates: false
maxPods: 30
Y
  cat > "$d/kube-proxy.yaml" <<Y
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $d/kube-proxy.kubeconfig}
hostnameOverride: $name
mode: iptables
clusterCIDR: $QUAYCTL_REAL_POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$ip/32"]
iptables: {localhostNodePorts: false}
# 0: leave the (host-wide) conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
Y
  spawn "$name" "$name-containerd" in_box "$name" env "PATH=$runtime:$PATH" "$runtime/containerd" --config "$d/containerd.toml" >/dev/null
  poll 10 "$name's containerd" "$runtime/ctr" -a "$sock" version || die "$name: containerd did not start: $(tail -n 20 "$real/logs/$name-containerd.log")"
  spawn "$name" "$name-kubelet" in_box "$name" "$QUAYCTL_E2E_BIN/kubelet" --config "$d/kubelet.yaml" \
    --kubeconfig "$d/kubelet.kubeconfig" --root-dir "$d/kubelet/root" --cert-dir "$d/kubelet/pki" \
    --hostname-override "$name" --node-ip "$ip" --node-labels "quayctl-e2e/real=true${REAL_NODE_LABELS:+,$REAL_NODE_LABELS}" >/dev/null
  spawn "$name" "$name-kube-proxy" in_box "$name" "$QUAYCTL_E2E_BIN/kube-proxy" --config "$d/kube-proxy.yaml" >/dev/null
}

node_ready() { kubectl get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True; }
wait_node() { # wait_node NAME TIMEOUT: Ready, and the `kubernetes` Service answers from inside the node
  local name=$1
  poll "$2" "$name to be Ready" node_ready "$name" || { tail -n 30 "$real/logs/$name-kubelet.log" >&2; die "$name: not Ready"; }
  # shellcheck disable=SC1090,SC1091
  . "$real/nodes/$name/box.env"
  poll "$2" "10.96.0.1 from $name" nsenter --net="$BOX_NETNS" curl -skf --max-time 2 https://10.96.0.1/livez ||
    { tail -n 30 "$real/logs/$name-kube-proxy.log" >&2; die "$name: 10.96.0.1 not routed by kube-proxy"; }
}

up() {
  [ $# -gt 0 ] || die "$usage"
  load_env
  # shellcheck disable=SC1091
  . "$state/env"
  # shellcheck disable=SC1091
  . "$real/apiserver.env"
  # shellcheck disable=SC1091
  . "$real/registry.env"
  local n i=0 start
  # The nodes' containerd, runc and CNI plugins (built once per version, cached).
  runtime=$("$(dirname "${BASH_SOURCE[0]}")/build-node-runtime.sh" | tail -n 1)
  n=$(grep -cvx docker "$real/boxes" 2>/dev/null || true)
  [ $((n + $#)) -le 8 ] || die "at most 8 real nodes per run"
  start=$(date +%s.%N)
  for name in "$@"; do node_up $((n + i)) "$name"; i=$((i + 1)); done
  for name in "$@"; do wait_node "$name" 120; done
  log "nodes Ready and the kubernetes Service routed: $* ($(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s)"
}

# stop_daemons: SIGTERM to every recorded daemon of the run at once (kubelets, kube-proxies,
# containerds, dockerd, registry; not the namespace holders), wait up to 10 s, then SIGKILL.
stop_daemons() {
  local box name pid start left t0=$SECONDS
  [ -f "$real/pids" ] || return 0
  for sig in TERM KILL; do
    while read -r box name pid start; do
      if [[ $name != *-holder ]] && alive "$pid" "$start"; then kill "-$sig" "$pid" 2>/dev/null || true; fi
    done < "$real/pids"
    for _ in $(seq 100); do
      left=""
      while read -r box name pid start; do
        if [[ $name != *-holder ]] && alive "$pid" "$start"; then left+=" $name"; fi
      done < "$real/pids"
      [ -z "$left" ] && break
      sleep 0.1
    done
    [ -z "$left" ] && break
    log "still running after SIGTERM + 10 s:$left (SIGKILL)"
  done
  log "daemons stopped ($((SECONDS - t0)) s)"
}

down() {
  [ -d "$real" ] || return 0
  [ -f "$real/net.env" ] && load_env
  stop_daemons
  local name
  if [ -f "$real/boxes" ]; then
    for name in $(tac "$real/boxes"); do box_down "$name"; done
  fi
}

# ---------------------------------------------------------------- check-clean
# system_first_use PATH: PATH is a directory the system itself creates the first time it is needed on
# a freshly booted host, and it holds nothing of any run of ours. Today one: /run/mount, libmount's
# utab directory, made by the first `mount`/`umount` anyone runs without -n (ours all use -n). It
# counts only with nothing but libmount's own files in it and no utab entry naming a quayctl path.
system_first_use() {
  case "$1" in
    /run/mount)
      local f
      for f in "$1"/* "$1"/.[!.]*; do
        [ -e "$f" ] || continue
        case "${f##*/}" in utab|utab.lock|utab.act|utab.event) ;; *) return 1 ;; esac
      done
      ! grep -qs 'quayctl' "$1/utab" ;;
    *) return 1 ;;
  esac
}

check_clean() {
  load_env
  local bad=0 after=$real/after line
  problem() { log "LEAK: $*"; bad=1; }
  snapshot "$after"
  local box name pid start p
  if [ -f "$real/pids" ]; then
    while read -r box name pid start; do
      if alive "$pid" "$start"; then problem "process $name (pid $pid) still running"; fi
    done < "$real/pids"
  fi
  # Any process whose command line names this run's directory, except this script and its callers
  # (builtins only in the loop: no child of ours shows up in it).
  local self=" " ppid args
  p=$$
  while [ "$p" -gt 1 ]; do
    self+="$p "
    ppid=$(awk '/^PPid:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || break
    p=${ppid:-1}
  done
  for p in /proc/[0-9]*; do
    [[ $self == *" ${p#/proc/} "* ]] && continue
    mapfile -d '' args < "$p/cmdline" 2>/dev/null || continue
    if [[ "${args[*]}" == *"$state"* ]]; then problem "process ${p#/proc/} mentions $state: ${args[*]}"; fi
  done
  if [ -f "$real/boxes" ]; then
    while read -r name; do
      p=$(box_pids "$name" | tr '\n' ' ')
      if [ -n "$p" ]; then problem "processes in $name's namespaces or cgroups: $p"; fi
    done < "$real/boxes"
  fi
  while read -r line; do problem "mount of this run: $line"; done < <(grep -F "$state" /proc/self/mountinfo)
  # (another run's own netns mounts, STATE/real/netns/*, are that run's to check)
  while read -r line; do problem "new mount $line"; done < <(comm -13 "$real/before/mounts" "$after/mounts" |
    grep -E 'kubelet|containerd|docker|netns|quayctl|kubepods|cni' | grep -v '/real/netns/')
  while read -r line; do problem "link $line"; done < <(ip -o link show | grep -F "qc$run")
  while read -r line; do problem "new link $line"; done < <(comm -13 "$real/before/links" "$after/links" | grep -vE '^qc[0-9a-f]{6}')
  while read -r line; do problem "new cgroup $line"; done < <(comm -13 "$real/before/cgroups" "$after/cgroups" |
    grep -vE '/quayctl-[0-9a-f]{6}-')
  while read -r line; do problem "cgroup $line"; done < <(for h in $(hierarchies); do
    for c in "$h"/quayctl-"$run"-*; do if [ -e "$c" ]; then echo "$c"; fi; done; done)
  while read -r line; do
    if system_first_use "$line"; then
      log "new path $line: created by the system on first use, holding nothing of this run (not a leak)"
    else
      problem "new path $line"
    fi
  done < <(comm -13 "$real/before/dirs" "$after/dirs")
  local t
  for t in iptables ip6tables iptables-legacy ip6tables-legacy; do
    if ! diff -q "$real/before/$t" "$after/$t" >/dev/null; then
      problem "host $t rules changed: $(diff "$real/before/$t" "$after/$t" | grep '^[<>]' | head -n 20 | tr '\n' ' ')"
    fi
  done
  local sysctl_note="as before the run"
  if [ -f "$real/sysctl.expected" ]; then
    if ! diff -q "$real/sysctl.expected" "$after/sysctl" >/dev/null; then
      problem "sysctls differ from before the run: $(diff "$real/sysctl.expected" "$after/sysctl" | grep '^[<>]' | tr '\n' ' ')"
    fi
  elif [ -f "$ledger/runs/$run" ]; then
    problem "still registered in $ledger (net-down did not run)"
  else
    sysctl_note="not compared (another real-node run was active when this one ended; the last one restores them)"
  fi
  if [ $bad = 0 ]; then
    log "clean: no process, mount, link, netns, cgroup, path or host iptables rule of run $run left; sysctls: $sysctl_note"
  fi
  return $bad
}

case "$cmd" in
  box)
    load_env
    boxes=0; [ ! -f "$real/boxes" ] || boxes=$(wc -l < "$real/boxes")
    box_up "${1:?usage: real-node.sh box STATE NAME}" "$QUAYCTL_REAL_PREFIX.$((200 + boxes))" /run /var/lib /var/log /opt ;;
  net-up) net_up ;;
  net-down) net_down ;;
  registry-up) registry_up ;;
  docker-up) docker_up ;;
  up) up "$@" ;;
  down) down ;;
  check-clean) check_clean ;;
  ctr|exec)
    load_env
    node=${1:?usage: real-node.sh $cmd STATE NODE ...}; shift
    # shellcheck disable=SC1090,SC1091
    . "$real/nodes/$node/box.env"
    if [ "$cmd" = ctr ]; then
      runtime=$("$(dirname "${BASH_SOURCE[0]}")/build-node-runtime.sh" 2>/dev/null | tail -n 1)
      set -- "$runtime/ctr" -a "$real/nodes/$node/containerd.sock" "$@"
      # ctr repeats containerd's cgroup v1 deprecation on every call: said once in the node's log.
      exec nsenter -t "$BOX_HOLDER" -n -m -- "$@" 2> >(grep -v 'DEPRECATION: The support for cgroup v1' >&2)
    fi
    exec nsenter -t "$BOX_HOLDER" -n -m -- "$@" ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
