#!/usr/bin/env bash
# Installs the real OpenStack (series 2025.2) that e2e/openstack/start.sh runs: Debian's
# mariadb-server and rabbitmq-server (their distro services are kept from starting), and a
# Python venv with Keystone, Placement, Nova, Glance, Neutron, Magnum and gunicorn, every
# package pinned by constraints.txt, into a version-keyed cache outside the repository. Only
# what is missing is installed. Prints the cache folder on its last line.
#
#   e2e/openstack/build.sh          install what is missing, print the folder
#   e2e/openstack/build.sh --dir    print the folder only (nothing is installed)
set -euo pipefail

SERIES=2025.2
here=$(cd "$(dirname "$0")" && pwd)
cache=${NODEHEALER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodehealer}
python=${NODEHEALER_PYTHON:-python3}

# The key covers the pins, the top-level requirements and the interpreter's version, so a
# change to any of them installs into a new folder and never mixes two venvs.
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
key=$(cat "$here/constraints.txt" "$here/requirements.txt" | sha256sum | cut -c1-10)
dir="$cache/openstack-$SERIES-py$pyver-$key"

if [[ "${1:-}" == "--dir" ]]; then
  echo "$dir"
  exit 0
fi

phase() { printf '[openstack] %-28s %s\n' "$1" "$2" >&2; }
timed() {
  local name=$1; shift
  local start=$SECONDS
  "$@"
  phase "$name" "installed in $((SECONDS - start)) s"
}

# Debian's packages start their services on install; ours run privately (start.sh), so a
# policy-rc.d refuses every start while apt-get runs, and is removed afterwards unless it was
# there before.
install_debian() {
  local policy=/usr/sbin/policy-rc.d ours=
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# nodehealer e2e/openstack/build.sh: no service starts on install\nexit 101\n' > "$policy"
    chmod +x "$policy"
    ours=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    mariadb-server mariadb-client rabbitmq-server jq >/dev/null
  [[ -z $ours ]] || rm -f "$policy"
}

install_venv() {
  rm -rf "$dir/venv"
  "$python" -m venv "$dir/venv"
  "$dir/venv/bin/pip" install -q -c "$here/constraints.txt" -r "$here/requirements.txt"
  # Written last, so an interrupted install is never taken for a complete one.
  touch "$dir/venv/.complete"
}

mkdir -p "$dir"
total=$SECONDS
if command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null && command -v rabbitmq-server >/dev/null && command -v jq >/dev/null; then
  phase "mariadb, rabbitmq (apt)" cached
else
  timed "mariadb, rabbitmq (apt)" install_debian
fi
if [[ -e "$dir/venv/.complete" ]]; then
  phase "python venv" cached
else
  timed "python venv" install_venv
fi
phase total "$((SECONDS - total)) s"
echo "$dir"
