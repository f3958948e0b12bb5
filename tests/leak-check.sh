#!/usr/bin/env bash
# The real-node leak check on a freshly booted host (issue 16): `/run` as such a host has it, without
# the directories the system makes on first use (libmount's /run/mount), reproduced in a private mount
# namespace with an empty tmpfs over /run. Then:
#   1. the harness's own mounts (a box: network namespace, cgroup, tmpfs mounts; its teardown) create
#      nothing on /run, and the leak check passes;
#   2. a directory the system creates on first use (here: a plain `mount`/`umount` by someone else,
#      which makes /run/mount) is not reported as a leak of ours;
#   3. a real leftover on /run still is.
# Root; touches only a bridge and a veth of its own (removed) and its own cgroups.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
hack=$here/../hack
[ "$(id -u)" = 0 ] || { echo "[leak-check] needs root (namespaces, mounts)" >&2; exit 1; }

if [ "${1:-}" != --inside ]; then
  exec unshare --mount --propagation private -- "$0" --inside
fi
mount -n -t tmpfs -o mode=0755 quayctl-fresh-run /run
state=$(mktemp -d "${TMPDIR:-/tmp}/quayctl-leak-check.XXXXXX")
trap '"$hack/real-node.sh" down "$state" >/dev/null 2>&1 || true; "$hack/real-node.sh" net-down "$state" >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
fail() { echo "FAILED  $*"; exit 1; }

echo "--- the harness's own mounts on a fresh /run"
[ ! -e /run/mount ] || fail "setup: /run/mount exists on the fresh /run"
"$hack/real-node.sh" net-up "$state"
"$hack/real-node.sh" box "$state" leak-a
"$hack/real-node.sh" down "$state"
"$hack/real-node.sh" net-down "$state"
[ ! -e /run/mount ] || fail "the harness created /run/mount (a mount or umount without -n)"
"$hack/real-node.sh" check-clean "$state" || fail "check-clean reported a leak after a clean teardown"
echo "ok      nothing created on /run, check-clean passes"

echo "--- a directory the system creates on first use"
rm -rf "$state/real" && mkdir -p "$state"
"$hack/real-node.sh" net-up "$state"
"$hack/real-node.sh" box "$state" leak-b
mkdir -p "$state/first-use"
unshare --mount --propagation private -- sh -ec "mount -t tmpfs quayctl-first-use $state/first-use; umount $state/first-use"
[ -d /run/mount ] || fail "setup: a plain mount/umount did not create /run/mount (libmount changed?)"
"$hack/real-node.sh" down "$state"
"$hack/real-node.sh" net-down "$state"
"$hack/real-node.sh" check-clean "$state" || fail "/run/mount, made by libmount on first use, was reported as a leak"
echo "ok      /run/mount from the system's first mount is not a leak"

echo "--- a real leftover"
rm -rf "$state/real" && mkdir -p "$state"
"$hack/real-node.sh" net-up "$state"
mkdir /run/quayctl-leftover
"$hack/real-node.sh" net-down "$state"
if "$hack/real-node.sh" check-clean "$state" 2> "$state/check.err"; then
  fail "a leftover /run/quayctl-leftover was not reported"
fi
grep -q 'LEAK: new path /run/quayctl-leftover' "$state/check.err" || { cat "$state/check.err"; fail "the leftover was not named"; }
echo "ok      a real leftover on /run is reported: $(grep LEAK "$state/check.err")"
rmdir /run/quayctl-leftover
echo "3 passed, 0 failed"
