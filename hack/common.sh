# shellcheck shell=bash
# Sourced by every script of the harness: the helpers they all need, once.

# poll SECONDS WHAT CMD...: run CMD (its output discarded) every 0.2 s until it succeeds; after
# SECONDS, say on stderr what was awaited and fail. Callers add what else a timeout should do.
poll() {
  local timeout=$1 what=$2 deadline=$(( $(date +%s) + $1 ))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "timed out after $timeout s waiting for $what" >&2
      return 1
    fi
    sleep 0.2
  done
}

# at_least WANT CMD...: CMD prints a count; succeed once it is at least WANT (for poll).
at_least() {
  local want=$1 count
  shift
  count=$("$@") || return 1
  [ "${count:-0}" -ge "$want" ]
}

# The Debian docker.io CLI (its BuildKit client works with the daemon of the same release), even
# where another `docker` comes first on PATH.
docker_cli() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else docker "$@"; fi; }
