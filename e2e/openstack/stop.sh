#!/usr/bin/env bash
# Stops the cloud that start.sh started in DIR: exactly the process groups recorded in
# DIR/pids/, by PID (never by name), the last started first; SIGTERM, then SIGKILL after a
# grace period. Data and logs stay in DIR.
#
#   e2e/openstack/stop.sh --run-dir DIR
set -euo pipefail

run=
while [[ $# -gt 0 ]]; do
  case $1 in
    --run-dir) run=$2; shift 2 ;;
    *) echo "usage: $0 --run-dir DIR" >&2; exit 2 ;;
  esac
done
[[ -n $run && -d $run/pids ]] || { echo "usage: $0 --run-dir DIR (a run dir of start.sh)" >&2; exit 2; }

started=$SECONDS
# Is any process of group $1 left? (kill -0 on a group succeeds while one member lives.)
group_alive() { kill -0 -- "-$1" 2>/dev/null; }

stop_groups() {
  local grace=$1; shift
  local pid f
  for f in "$@"; do
    pid=$(cat "$f")
    [[ $pid =~ ^[0-9]+$ ]] || continue
    group_alive "$pid" && kill -TERM -- "-$pid" 2>/dev/null || true
  done
  local deadline=$((SECONDS + grace))
  for f in "$@"; do
    pid=$(cat "$f")
    while group_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    if group_alive "$pid"; then
      echo "[openstack] $(basename "$f" .pid) ignored SIGTERM for $grace s: SIGKILL" >&2
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

mapfile -t records < <(ls "$run/pids"/*.pid 2>/dev/null | sort -t/ -k1 -r -V)
# The OpenStack services first (they may still write to the database or the broker), then
# RabbitMQ, MariaDB and epmd: records 10-12 are those three, by start.sh's numbering.
services=() infra=()
for f in "${records[@]}"; do
  n=$(basename "$f"); n=${n%%-*}
  if ((n >= 13)); then services+=("$f"); else infra+=("$f"); fi
done
((${#services[@]} == 0)) || stop_groups 15 "${services[@]}"
((${#infra[@]} == 0)) || stop_groups 30 "${infra[@]}"
echo "[openstack] stopped in $((SECONDS - started)) s" >&2
