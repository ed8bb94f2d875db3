#!/usr/bin/env bash
# A smoke check of a cloud started by start.sh, through the REST APIs only (curl; jq reads the
# answers): a token, a server booted with no NIC and taken through stop, start, soft and hard
# reboot, a rebuild while running, a soft (refused) and a hard reboot while stopped, a rebuild
# while stopped, shelve, unshelve and delete; a delete while its compute is
# down (a local delete: 404 at once, and its instance actions); a Magnum cluster's show,
# nodegroups, health_status updates and a resize. Prints each server's status / task_state
# sequence as Nova showed it (polled every 0.1 s) and the answers' bodies; exits non-zero on
# the first check that fails.
#
#   e2e/openstack/smoke.sh DIR [nova|magnum]   (DIR/cloud.json, as start.sh wrote it; the
#                                               second argument runs one part only)
set -euo pipefail

cloud=${1:?usage: $0 RUN_DIR [nova|magnum]}/cloud.json
part=${2:-all}
[[ -f $cloud ]] || { echo "no $cloud" >&2; exit 2; }
c() { jq -r "$1" "$cloud"; }
ks=$(c .auth_url) nova=$(c .endpoints.compute) magnum=$(c '.endpoints["container-infra"]')
ctl=$(c .ctl)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; echo "$passed passed, $failed failed"; exit 1; }

token() { # token USER PASSWORD PROJECT
  curl -sf -D "$tmp/h" -o /dev/null -H 'Content-Type: application/json' "$ks/auth/tokens" -d "{
    \"auth\": {\"identity\": {\"methods\": [\"password\"], \"password\": {\"user\": {
      \"name\": \"$1\", \"domain\": {\"name\": \"Default\"}, \"password\": \"$2\"}}},
      \"scope\": {\"project\": {\"name\": \"$3\", \"domain\": {\"name\": \"Default\"}}}}}" \
    && sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: \([^\r]*\).*/\1/p' "$tmp/h"
}
# api TOKEN METHOD URL [BODY] [HEADER...]: the body goes to $tmp/body, the status is printed.
api() {
  local tok=$1 method=$2 url=$3 body=${4:-}; shift 4 || shift $#
  local args=(-s -o "$tmp/body" -w '%{http_code}' -X "$method" -H "X-Auth-Token: $tok"
    -H 'Accept: application/json')
  [[ -z $body ]] || args+=(-H 'Content-Type: application/json' -d "$body")
  local h
  for h in "$@"; do args+=(-H "$h"); done
  curl "${args[@]}" "$url"
}
NOVA_MV='OpenStack-API-Version: compute 2.90'
MAGNUM_MV='OpenStack-API-Version: container-infra latest'

user_tok=$(token "$(c .user.name)" "$(c .user.password)" "$(c .project.name)") || bad "token"
admin_tok=$(token admin "$(c .admin.password)" admin) || bad "admin token"
ok "tokens from Keystone"

# elapsed TEXT: TEXT after the time since $t0 (nanoseconds), in seconds.
elapsed() {
  local ms=$((($(date +%s%N) - t0) / 1000000))
  printf '       %4d.%d s  %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$1"
}
# watch ID FINAL: polls the server every 0.1 s, prints each change of status / task_state /
# power_state, until the server has shown FINAL with no task for 3 s (a short ACTIVE inside a
# rebuild of a stopped server is no end state) or 120 s passed. "gone" is a 404.
watch() {
  local id=$1 final=$2 last='' line settled_at='' deadline=$((SECONDS + 120)) code
  while ((SECONDS < deadline)); do
    code=$(api "$user_tok" GET "$nova/servers/$id" "" "$NOVA_MV")
    if [[ $code == 404 ]]; then
      line=gone
    else
      line=$(jq -r '.server | "\(.status) / \(.["OS-EXT-STS:task_state"] // "-") / power \(.["OS-EXT-STS:power_state"] // "?")"' "$tmp/body")
    fi
    if [[ $line != "$last" ]]; then
      elapsed "$line"
      last=$line settled_at=
    fi
    if [[ $line == "$final" || $line == "$final / - / "* ]]; then
      settled_at=${settled_at:-$SECONDS}
      ((SECONDS - settled_at >= 3)) && return 0
    fi
    sleep 0.1
  done
  return 1
}
action() { # action ID BODY: a server action; prints Nova's status code
  api "$user_tok" POST "$nova/servers/$1/action" "$2" "$NOVA_MV"
}
step() { # step NAME ID BODY FINAL
  local name=$1 id=$2 body=$3 final=$4 code
  echo "---- $name"
  t0=$(date +%s%N)
  code=$(action "$id" "$body")
  [[ $code == 202 ]] || bad "$name: $code $(cat "$tmp/body")"
  watch "$id" "$final" || bad "$name: not $final"
  ok "$name (202, then $final)"
}
boot() { # boot NAME: prints the new server's id
  local code
  code=$(api "$user_tok" POST "$nova/servers" "{\"server\": {\"name\": \"$1\",
    \"imageRef\": \"$(c .image)\", \"flavorRef\": \"$(c .flavor)\", \"networks\": \"none\"}}" "$NOVA_MV")
  [[ $code == 202 ]] || bad "boot $1: $code $(cat "$tmp/body")"
  jq -r .server.id "$tmp/body"
}

name=smoke-$(date +%s)-$$
if [[ $part == all || $part == nova ]]; then
echo "---- boot $name (no NIC, microversion 2.90)"
t0=$(date +%s%N)
id=$(boot "$name")
watch "$id" ACTIVE || bad "boot: not ACTIVE"
ok "boot $id"
step "stop" "$id" '{"os-stop": null}' SHUTOFF
step "start" "$id" '{"os-start": null}' ACTIVE
step "soft reboot" "$id" '{"reboot": {"type": "SOFT"}}' ACTIVE
step "hard reboot" "$id" '{"reboot": {"type": "HARD"}}' ACTIVE
step "rebuild while running" "$id" "{\"rebuild\": {\"imageRef\": \"$(c .image)\"}}" ACTIVE
step "stop before hard reboot" "$id" '{"os-stop": null}' SHUTOFF
echo "---- soft reboot while stopped"
code=$(action "$id" '{"reboot": {"type": "SOFT"}}')
echo "       -> $code $(cat "$tmp/body")"
[[ $code == 409 ]] || bad "soft reboot of a stopped server: $code, not 409"
ok "soft reboot while stopped: 409"
step "hard reboot while stopped" "$id" '{"reboot": {"type": "HARD"}}' ACTIVE
step "stop before rebuild" "$id" '{"os-stop": null}' SHUTOFF
step "rebuild while stopped" "$id" "{\"rebuild\": {\"imageRef\": \"$(c .rebuild_image)\"}}" SHUTOFF
api "$user_tok" GET "$nova/servers/$id" "" "$NOVA_MV" >/dev/null
[[ $(jq -r .server.image.id "$tmp/body") == "$(c .rebuild_image)" ]] || bad "rebuild: image not $(c .rebuild_image)"
ok "rebuilt with rebuild_image, still SHUTOFF"
step "start after rebuild" "$id" '{"os-start": null}' ACTIVE
step "shelve" "$id" '{"shelve": null}' SHELVED_OFFLOADED
step "unshelve" "$id" '{"unshelve": null}' ACTIVE
echo "---- delete"
t0=$(date +%s%N)
code=$(api "$user_tok" DELETE "$nova/servers/$id" "" "$NOVA_MV")
[[ $code == 204 ]] || bad "delete: $code"
watch "$id" gone || bad "delete: still there"
ok "delete (204, then 404)"
code=$(api "$user_tok" GET "$nova/servers/$id/os-instance-actions" "" "OpenStack-API-Version: compute 2.51")
req=$(jq -r '.instanceActions[] | select(.action == "delete") | .request_id' "$tmp/body")
code=$(api "$user_tok" GET "$nova/servers/$id/os-instance-actions/$req" "" "OpenStack-API-Version: compute 2.51")
echo "       the delete action at 2.51: $code $(jq -c '.instanceAction | {action, message, events: [.events[]? | {event, result}]}' "$tmp/body")"
[[ $code == 200 ]] || bad "instance action of a deleted server: $code"

echo "---- delete while the server's compute is down (a local delete)"
id=$(boot "$name-local")
t0=$(date +%s%N)
watch "$id" ACTIVE || bad "boot: not ACTIVE"
api "$admin_tok" GET "$nova/servers/$id" "" "$NOVA_MV" >/dev/null
host=$(jq -r '.server["OS-EXT-SRV-ATTR:host"]' "$tmp/body")
"$ctl" compute-down "$host" >"$tmp/ctl" || bad "ctl compute-down $host"
echo "       ctl compute-down $host: $(jq -c . "$tmp/ctl")"
t0=$(date +%s%N)
code=$(api "$user_tok" DELETE "$nova/servers/$id" "" "$NOVA_MV")
[[ $code == 204 ]] || bad "local delete: $code $(cat "$tmp/body")"
code=$(api "$user_tok" GET "$nova/servers/$id" "" "$NOVA_MV")
[[ $code == 404 ]] || bad "local delete: GET answered $code, not 404 at once"
ok "local delete: 204, and 404 at once"
for mv in 2.1 2.21 2.51; do
  code=$(api "$user_tok" GET "$nova/servers/$id/os-instance-actions" "" "OpenStack-API-Version: compute $mv")
  echo "       instance actions at $mv: $code $(jq -c '[.instanceActions[]? | {action, message}] // .' "$tmp/body" 2>/dev/null || cat "$tmp/body")"
done
req=$(jq -r '.instanceActions[] | select(.action == "delete") | .request_id' "$tmp/body")
code=$(api "$user_tok" GET "$nova/servers/$id/os-instance-actions/$req" "" "OpenStack-API-Version: compute 2.51")
echo "       the delete action at 2.51: $code $(jq -c '.instanceAction | {action, message, events: [.events[]? | {event, result}]}' "$tmp/body")"
[[ $code == 200 ]] || bad "instance action of a deleted server: $code"
"$ctl" compute-up "$host" >"$tmp/ctl" || bad "ctl compute-up $host"
ok "instance actions of the deleted server; $host up again"
fi

if [[ $part == all || $part == magnum ]]; then
echo "---- Magnum"
"$ctl" magnum-cluster "$name" --masters 1 --workers 2 >"$tmp/cluster" || bad "ctl magnum-cluster"
uuid=$(jq -r .uuid "$tmp/cluster")
echo "       ctl magnum-cluster: status before: $(jq -r '.status_before + " (" + .status_reason_before + ")"' "$tmp/cluster"); servers: $(jq -r '[.servers[].name] | join(", ")' "$tmp/cluster")"
code=$(api "$user_tok" GET "$magnum/clusters/$uuid" "" "$MAGNUM_MV")
[[ $code == 200 && $(jq -r .status "$tmp/body") == CREATE_COMPLETE ]] || bad "cluster show: $code $(cat "$tmp/body")"
ok "cluster show: CREATE_COMPLETE, health_status $(jq -r .health_status "$tmp/body")"
code=$(api "$user_tok" GET "$magnum/clusters/$uuid/nodegroups" "" "$MAGNUM_MV")
[[ $code == 200 ]] || bad "nodegroups: $code"
ok "nodegroups: $(jq -r '[.nodegroups[] | "\(.name) \(.role) \(.node_count) \(.status)"] | join("; ")' "$tmp/body")"

patch() { # patch BODY: PATCH the cluster, print code and body
  code=$(api "$user_tok" PATCH "$magnum/clusters/$uuid" "$1" "$MAGNUM_MV")
  echo "       PATCH $1"
  echo "       -> $code $(cat "$tmp/body")"
}
stored() {
  sleep 2 # the conductor stores it, after the API's 202
  api "$user_tok" GET "$magnum/clusters/$uuid" "" "$MAGNUM_MV" >/dev/null
  echo "       stored: health_status $(jq -c .health_status "$tmp/body"), health_status_reason $(jq -c .health_status_reason "$tmp/body")"
}
# Magnum's JSON patch values are strings or integers; a string for /health_status_reason is
# read with Python's ast.literal_eval (magnum/api/utils.py) and must give a map of strings.
patch '[{"op": "replace", "path": "/health_status", "value": "UNHEALTHY"}, {"op": "replace", "path": "/health_status_reason", "value": "node-1 NotReady"}]'
[[ $code == 400 ]] || bad "health_status with a plain string reason: $code (Magnum cannot literal_eval it: 400)"
ok "health_status with a plain string reason: 400"
patch '[{"op": "replace", "path": "/health_status", "value": "UNHEALTHY"}, {"op": "replace", "path": "/health_status_reason", "value": {"node-1.Ready": "False"}}]'
[[ $code == 400 ]] || bad "health_status with an object reason: $code (Magnum refuses it with 400)"
ok "health_status with an object reason: 400"
patch '[{"op": "replace", "path": "/health_status", "value": "UNHEALTHY"}, {"op": "replace", "path": "/health_status_reason", "value": "{\"node-1.Ready\": \"False\", \"api\": \"ok\"}"}]'
[[ $code == 202 ]] || bad "health_status with a map written as a string: $code"
stored
[[ $(jq -r .health_status "$tmp/body") == UNHEALTHY && $(jq -r '.health_status_reason["node-1.Ready"]' "$tmp/body") == False ]] \
  || bad "health_status UNHEALTHY was not stored"
ok "health_status with a map written as a string: 202, stored as a map"
patch '[{"op": "replace", "path": "/health_status", "value": "HEALTHY"}, {"op": "replace", "path": "/health_status_reason", "value": "{'"'"'api'"'"': '"'"'ok'"'"'}"}]'
[[ $code == 202 ]] || bad "health_status with a Python-literal map: $code"
stored
ok "health_status with a Python-literal map: 202"

worker=$(jq -r '.servers[] | select(.role == "worker") | .id' "$tmp/cluster" | head -1)
code=$(api "$user_tok" POST "$magnum/clusters/$uuid/actions/resize" \
  "{\"node_count\": 1, \"nodes_to_remove\": [\"$worker\"], \"nodegroup\": \"default-worker\"}" "$MAGNUM_MV")
echo "       resize -> $code $(cat "$tmp/body")"
[[ $code == 202 ]] || bad "resize: $code"
t0=$(date +%s%N) last=
for _ in $(seq 1 100); do
  api "$user_tok" GET "$magnum/clusters/$uuid" "" "$MAGNUM_MV" >/dev/null
  line="$(jq -r '.status + " (" + (.status_reason // "-") + ")"' "$tmp/body")"
  [[ $line == "$last" ]] || { elapsed "$line"; last=$line; }
  [[ $line == UPDATE_FAILED* || $line == UPDATE_COMPLETE* ]] && break
  sleep 0.3
done
ok "resize accepted (202), then $(jq -r .status "$tmp/body")"

# Clean up: the cluster's servers and record (the record's delete fails without Heat too).
for sid in $(jq -r '.servers[].id' "$tmp/cluster"); do
  api "$user_tok" DELETE "$nova/servers/$sid" "" "$NOVA_MV" >/dev/null
done
fi
echo "$passed passed, $failed failed"
