#!/usr/bin/env bash
# Starts a real, small OpenStack (series 2025.2, installed by build.sh) on 127.0.0.1 and writes
# DIR/cloud.json (the contract in the README's "A real OpenStack" section):
#   MariaDB, RabbitMQ (private instances, own data dirs and ports), Keystone (fernet), Placement,
#   Glance (file store), Neutron API (ML2, no mechanism drivers, no agents), Nova API,
#   conductor, scheduler and three fake.FakeDriver computes, Magnum API and conductor.
# Every service runs in its own process group; DIR/pids/ records them for stop.sh.
#
#   e2e/openstack/start.sh --run-dir DIR [--port-offset N]
#
# --port-offset adds N to every port (Keystone 5000+N, Nova 8774+N, ...), so a second cloud can
# run beside a first one; the default, 0, gives the usual OpenStack ports.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
run=
offset=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --run-dir) run=$2; shift 2 ;;
    --port-offset) offset=$2; shift 2 ;;
    *) echo "usage: $0 --run-dir DIR [--port-offset N]" >&2; exit 2 ;;
  esac
done
[[ -n $run ]] || { echo "usage: $0 --run-dir DIR [--port-offset N]" >&2; exit 2; }

cache=$("$here/build.sh" --dir)
venv=$cache/venv
[[ -e $venv/.complete ]] || { echo "the OpenStack venv is not installed: run make openstack ($here/build.sh)" >&2; exit 1; }
command -v mariadbd >/dev/null && command -v rabbitmq-server >/dev/null \
  || { echo "mariadb-server or rabbitmq-server is not installed: run make openstack" >&2; exit 1; }

mkdir -p "$run"
run=$(cd "$run" && pwd)
# Every service starts in the run dir: whatever one writes into its working directory (an
# erl_crash.dump, say) stays there, not in the checkout.
cd "$run"
if compgen -G "$run/pids/*.pid" >/dev/null; then
  echo "$run already has a cloud's process records (pids/): stop it first ($here/stop.sh --run-dir $run)" >&2
  exit 1
fi
etc=$run/etc logs=$run/logs data=$run/data pids=$run/pids
rm -rf "$etc" "$data" "$logs" "$run/state.json" "$run/bootstrap.json" "$run/cloud.json" "$run/ctl"
mkdir -p "$etc" "$logs" "$data" "$pids"

p_keystone=$((5000 + offset))
p_nova=$((8774 + offset))
p_placement=$((8778 + offset))
p_glance=$((9292 + offset))
p_neutron=$((9696 + offset))
p_magnum=$((9511 + offset))
p_mysql=$((13306 + offset))
# Below the ephemeral range (32768-60999): a port in it may be any outgoing connection's own
# (RabbitMQ failed with dist_port_already_used that way).
p_amqp=$((25672 + offset))
p_dist=$((25682 + offset))
p_epmd=$((24369 + offset))
for p in $p_keystone $p_nova $p_placement $p_glance $p_neutron $p_magnum $p_mysql $p_amqp $p_dist $p_epmd; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p on 127.0.0.1 is taken (another cloud? use --port-offset)" >&2
    exit 1
  fi
done

secret() { head -c 18 /dev/urandom | base64 | tr '+/' 'xy'; }
db_password=$(secret) admin_password=$(secret) svc_password=$(secret)
user_password=$(secret) other_password=$(secret)

started=$SECONDS
phase() { printf '[openstack] %5s s  %s\n' "$((SECONDS - started))" "$*" >&2; }

seq=10
# launch NAME CMD...: starts CMD in a process group of its own (setsid; the script has no job
# control, so the background child is no group leader and setsid does not fork: $! is the
# service), stdout and stderr to logs/NAME.log. The number orders stop.sh's shutdown (last
# started, first stopped).
launch() {
  local name=$1; shift
  setsid "$@" >"$logs/$name.log" 2>&1 </dev/null &
  echo $! >"$pids/$seq-$name.pid"
  seq=$((seq + 1))
}

fail() {
  local name=$1; shift
  echo "[openstack] FAILED: $*" >&2
  local p
  for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -f $logs/$name.log ]]; then
    echo "--- last lines of $logs/$name.log" >&2
    tail -n 40 "$logs/$name.log" >&2
  fi
  # Nothing is left running by a failed start; the logs stay in the run dir.
  if [[ -n ${NODEHEALER_OPENSTACK_KEEP_ON_FAILURE:-} ]]; then
    echo "--- NODEHEALER_OPENSTACK_KEEP_ON_FAILURE: what was started keeps running ($here/stop.sh --run-dir $run)" >&2
  else
    echo "--- stopping what was started (logs stay in $logs)" >&2
    "$here/stop.sh" --run-dir "$run" || true
  fi
  exit 1
}

alive() { local f; f=$(ls "$pids"/*-"$1".pid) && kill -0 "$(cat "$f")" 2>/dev/null; }

# wait_for NAME SECONDS CMD...: until CMD succeeds; fails with NAME's log if NAME dies or the
# time runs out.
wait_for() {
  local name=$1 limit=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    alive "$name" || fail "$name" "$name exited"
    ((SECONDS < deadline)) || fail "$name" "$name did not answer within $limit s"
    sleep 0.3
  done
}

http_up() { curl -s -o /dev/null -m 5 "$1"; }
tcp_up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# run_step NAME CMD...: a one-shot command (a schema migration, say) logged to logs/NAME.log.
run_step() {
  local name=$1; shift
  "$@" >>"$logs/$name.log" 2>&1 || fail "$name" "$* failed"
}

# bg NAME CMD...: a one-shot step (a schema migration, say) run beside the others, logged to
# logs/NAME.log; join NAME waits for it and fails with its log.
declare -A bg_pids=()
bg() {
  local name=$1; shift
  ( "$@" ) >>"$logs/$name.log" 2>&1 &
  bg_pids[$name]=$!
}
join() {
  wait "${bg_pids[$1]}" || fail "$1" "$1 failed"
  unset "bg_pids[$1]"
}

# --- MariaDB ---------------------------------------------------------------------------------
# A Unix socket's path has at most 107 bytes, and a run dir in a CI clone's target/ may be
# long: the socket lives in /tmp, named after the cloud's MariaDB port (one cloud per port).
sock=/tmp/nodehealer-openstack-mysql-$p_mysql.sock
run_step mariadb-install mariadb-install-db --no-defaults --datadir="$data/mysql" --user=root \
  --auth-root-authentication-method=socket --skip-test-db
# Durability is worthless for a test cloud and costs seconds in every migration.
launch mariadb mariadbd --no-defaults --datadir="$data/mysql" --socket="$sock" \
  --port="$p_mysql" --bind-address=127.0.0.1 --user=root --skip-name-resolve \
  --pid-file="$run/mysql.pid" --max-connections=2000 --character-set-server=utf8mb3 \
  --collation-server=utf8mb3_general_ci --innodb-buffer-pool-size=128M \
  --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --sync-binlog=0 \
  --performance-schema=OFF --log-error="$logs/mariadb.err"
wait_for mariadb 60 mariadb-admin --no-defaults --socket="$sock" -uroot ping
phase "MariaDB on 127.0.0.1:$p_mysql"
dbs="keystone placement nova_api nova nova_cell0 glance neutron magnum"
{
  echo "CREATE USER 'openstack'@'127.0.0.1' IDENTIFIED BY '$db_password';"
  for d in $dbs; do
    echo "CREATE DATABASE $d; GRANT ALL ON $d.* TO 'openstack'@'127.0.0.1';"
  done
} | mariadb --no-defaults --socket="$sock" -uroot || fail mariadb "creating the databases failed"
db() { echo "mysql+pymysql://openstack:$db_password@127.0.0.1:$p_mysql/$1?charset=utf8"; }

# --- RabbitMQ --------------------------------------------------------------------------------
# Our own epmd on our own port, so that the broker neither uses nor leaves behind a shared
# daemon (rabbitmq-server would start a detached one, outside our process groups).
launch epmd epmd -port "$p_epmd" -address 127.0.0.1
mkdir -p "$etc/rabbitmq" "$data/rabbitmq"
cat >"$etc/rabbitmq/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$p_amqp
loopback_users = none
disk_free_limit.absolute = 100MB
log.file = false
log.console = true
log.console.level = warning
EOF
echo '[].' >"$etc/rabbitmq/enabled_plugins"
amqp_password=$(secret)
launch rabbitmq env HOME="$data/rabbitmq" ERL_EPMD_PORT="$p_epmd" \
  RABBITMQ_NODENAME="nodehealer$p_amqp@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
  RABBITMQ_NODE_PORT="$p_amqp" RABBITMQ_DIST_PORT="$p_dist" \
  RABBITMQ_CONFIG_FILE="$etc/rabbitmq/rabbitmq.conf" RABBITMQ_CONF_ENV_FILE=/dev/null \
  RABBITMQ_ENABLED_PLUGINS_FILE="$etc/rabbitmq/enabled_plugins" \
  RABBITMQ_MNESIA_BASE="$data/rabbitmq/mnesia" RABBITMQ_LOG_BASE="$logs" \
  RABBITMQ_PID_FILE="$data/rabbitmq/pid" RABBITMQ_DEFAULT_USER=openstack \
  RABBITMQ_DEFAULT_PASS="$amqp_password" \
  /usr/lib/rabbitmq/bin/rabbitmq-server
transport="rabbit://openstack:$amqp_password@127.0.0.1:$p_amqp/"

# --- common configuration ----------------------------------------------------------------------
ks=http://127.0.0.1:$p_keystone
authtoken() {
  cat <<EOF
[keystone_authtoken]
www_authenticate_uri = $ks
auth_url = $ks
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = service
password = $svc_password
region_name = RegionOne
EOF
}
# keystoneauth sections for service-to-service calls (Nova to Placement, Neutron, Glance).
ksa() {
  cat <<EOF
[$1]
auth_type = password
auth_url = $ks
project_domain_name = Default
user_domain_name = Default
project_name = service
username = service
password = $svc_password
region_name = RegionOne
valid_interfaces = public
EOF
}
gunicorn() {
  local name=$1 port=$2 app=$3; shift 3
  launch "$name" env "$@" NODEHEALER_WSGI_APP="$app" PYTHONPATH="$here" "$venv/bin/gunicorn" \
    --bind "127.0.0.1:$port" --workers 1 --worker-class gthread --threads 8 --timeout 300 \
    --graceful-timeout 5 wsgi_app:application
}

# --- Keystone --------------------------------------------------------------------------------
mkdir -p "$etc/keystone"
cat >"$etc/keystone/keystone.conf" <<EOF
[DEFAULT]
debug = false
[database]
connection = $(db keystone)
[token]
provider = fernet
[fernet_tokens]
key_repository = $etc/keystone/fernet-keys
[credential]
key_repository = $etc/keystone/credential-keys
EOF
kconf=(--config-file "$etc/keystone/keystone.conf")
migrate_keystone() {
  set -e
  "$venv/bin/keystone-manage" "${kconf[@]}" db_sync
  "$venv/bin/keystone-manage" "${kconf[@]}" fernet_setup --keystone-user root --keystone-group root
  "$venv/bin/keystone-manage" "${kconf[@]}" credential_setup --keystone-user root --keystone-group root
  "$venv/bin/keystone-manage" "${kconf[@]}" bootstrap \
    --bootstrap-password "$admin_password" --bootstrap-region-id RegionOne \
    --bootstrap-admin-url "$ks/v3" --bootstrap-internal-url "$ks/v3" --bootstrap-public-url "$ks/v3"
}
bg keystone-manage migrate_keystone

# --- Placement -------------------------------------------------------------------------------
mkdir -p "$etc/placement"
cat >"$etc/placement/placement.conf" <<EOF
[placement_database]
connection = $(db placement)
[api]
auth_strategy = keystone
$(authtoken)
EOF
bg placement-manage "$venv/bin/placement-manage" --config-file "$etc/placement/placement.conf" db sync

# --- Glance ----------------------------------------------------------------------------------
mkdir -p "$etc/glance" "$data/glance"
cp "$venv/etc/glance/glance-api-paste.ini" "$etc/glance/"
cat >"$etc/glance/glance-api.conf" <<EOF
[DEFAULT]
enabled_backends = fs:file
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $data/glance/images
[os_glance_staging_store]
filesystem_store_datadir = $data/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = $data/glance/tasks
[database]
connection = $(db glance)
[paste_deploy]
flavor = keystone
config_file = $etc/glance/glance-api-paste.ini
[oslo_concurrency]
lock_path = $data/glance/locks
$(authtoken)
EOF
bg glance-manage "$venv/bin/glance-manage" --config-file "$etc/glance/glance-api.conf" db_sync

# --- Neutron ---------------------------------------------------------------------------------
mkdir -p "$etc/neutron/plugins/ml2" "$data/neutron"
cp "$venv/etc/neutron/api-paste.ini" "$etc/neutron/"
cat >"$etc/neutron/neutron.conf" <<EOF
[DEFAULT]
core_plugin = ml2
service_plugins =
auth_strategy = keystone
transport_url = $transport
api_paste_config = $etc/neutron/api-paste.ini
state_path = $data/neutron
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
[database]
connection = $(db neutron)
[oslo_concurrency]
lock_path = $data/neutron/locks
[oslo_messaging_notifications]
driver = noop
$(authtoken)
EOF
cat >"$etc/neutron/plugins/ml2/ml2_conf.ini" <<EOF
[ml2]
type_drivers = flat
tenant_network_types =
mechanism_drivers =
extension_drivers =
EOF
bg neutron-db-manage "$venv/bin/neutron-db-manage" --config-file "$etc/neutron/neutron.conf" \
  --config-file "$etc/neutron/plugins/ml2/ml2_conf.ini" upgrade heads

# --- Nova ------------------------------------------------------------------------------------
mkdir -p "$etc/nova" "$data/nova"
cp "$venv/etc/nova/api-paste.ini" "$etc/nova/"
cat >"$etc/nova/nova.conf" <<EOF
[DEFAULT]
transport_url = $transport
state_path = $data/nova
my_ip = 127.0.0.1
# FakeDriver's node uuids are new in every process, and it never writes the node identity
# file that Nova requires from a compute that ran before: a restarted compute (ctl compute-up)
# refuses to start. This FakeDriver keeps one node named after its host, with a stable uuid
# in its state_path.
compute_driver = fake.FakeDriverWithoutFakeNodes
# A test cloud has nothing to finish on SIGTERM: stop.sh and ctl compute-down wait less.
graceful_shutdown_timeout = 3
[api]
auth_strategy = keystone
[wsgi]
api_paste_config = $etc/nova/api-paste.ini
[api_database]
connection = $(db nova_api)
[database]
connection = $(db nova)
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = -1
[oslo_concurrency]
lock_path = $data/nova/locks
[oslo_messaging_notifications]
driver = noop
[glance]
region_name = RegionOne
valid_interfaces = public
[service_user]
send_service_user_token = false
[vnc]
enabled = false
$(authtoken)
$(ksa placement)
$(ksa neutron)
EOF
nconf=(--config-file "$etc/nova/nova.conf")
migrate_nova() {
  set -e
  "$venv/bin/nova-manage" "${nconf[@]}" api_db sync
  "$venv/bin/nova-manage" "${nconf[@]}" cell_v2 map_cell0 --database_connection "$(db nova_cell0)"
  "$venv/bin/nova-manage" "${nconf[@]}" cell_v2 create_cell --name cell1
  "$venv/bin/nova-manage" "${nconf[@]}" db sync
}
bg nova-manage migrate_nova
for host in compute-1 compute-2 compute-3; do
  mkdir -p "$data/$host"
  cat >"$etc/nova/$host.conf" <<EOF
[DEFAULT]
host = $host
state_path = $data/$host
instances_path = $data/$host/instances
EOF
done

# --- Magnum ----------------------------------------------------------------------------------
mkdir -p "$etc/magnum" "$data/magnum"
cp "$venv/etc/magnum/api-paste.ini" "$etc/magnum/"
cat >"$etc/magnum/magnum.conf" <<EOF
[DEFAULT]
transport_url = $transport
state_path = $data/magnum
graceful_shutdown_timeout = 3
[api]
host = 127.0.0.1
port = $p_magnum
workers = 1
api_paste_config = $etc/magnum/api-paste.ini
[conductor]
workers = 1
[database]
connection = $(db magnum)
[certificates]
cert_manager_type = x509keypair
# Magnum's policy checks read the trustee domain's id on every request (cluster_user rules).
[trust]
trustee_domain_name = magnum
trustee_domain_admin_name = magnum_domain_admin
trustee_domain_admin_password = $svc_password
trustee_keystone_interface = public
trustee_keystone_region_name = RegionOne
[heat_client]
region_name = RegionOne
[glance_client]
region_name = RegionOne
[nova_client]
region_name = RegionOne
[neutron_client]
region_name = RegionOne
[cinder_client]
region_name = RegionOne
[magnum_client]
region_name = RegionOne
[octavia_client]
region_name = RegionOne
[barbican_client]
region_name = RegionOne
[oslo_concurrency]
lock_path = $data/magnum/locks
[oslo_messaging_notifications]
driver = noop
$(authtoken)
[keystone_auth]
auth_type = password
auth_url = $ks/v3
project_domain_name = Default
user_domain_name = Default
project_name = service
username = service
password = $svc_password
EOF
mconf=(--config-file "$etc/magnum/magnum.conf")
bg magnum-db-manage "$venv/bin/magnum-db-manage" "${mconf[@]}" upgrade

# --- the services, as their databases become ready ------------------------------------------
join keystone-manage
gunicorn keystone "$p_keystone" keystone.wsgi.api:application \
  OS_KEYSTONE_CONFIG_DIR="$etc/keystone" OS_KEYSTONE_CONFIG_FILES=keystone.conf
wait_for keystone 60 http_up "$ks/v3"
phase "Keystone on $ks"

# Projects, users, the service catalog: everything the services' configuration names.
cat >"$run/bootstrap.json" <<EOF
{"auth_url": "$ks/v3", "mysql_socket": "$sock", "admin_password": "$admin_password", "service_password": "$svc_password",
 "user_password": "$user_password", "other_password": "$other_password",
 "endpoints": {"compute": "http://127.0.0.1:$p_nova/v2.1", "placement": "http://127.0.0.1:$p_placement",
   "image": "http://127.0.0.1:$p_glance", "network": "http://127.0.0.1:$p_neutron",
   "container-infra": "http://127.0.0.1:$p_magnum/v1"}}
EOF
chmod 600 "$run/bootstrap.json"
run_step bootstrap python3 "$here/ctl" --run-dir "$run" bootstrap-keystone

wait_for rabbitmq 90 tcp_up "$p_amqp"
phase "RabbitMQ on 127.0.0.1:$p_amqp"
join placement-manage
gunicorn placement "$p_placement" placement.wsgi.api:application OS_PLACEMENT_CONFIG_DIR="$etc/placement"
join glance-manage
gunicorn glance "$p_glance" glance.wsgi.api:application OS_GLANCE_CONFIG_DIR="$etc/glance"
join neutron-db-manage
gunicorn neutron "$p_neutron" neutron.wsgi.api:application \
  OS_NEUTRON_CONFIG_DIR="$etc/neutron" OS_NEUTRON_CONFIG_FILES="neutron.conf;plugins/ml2/ml2_conf.ini"
join nova-manage
wait_for placement 60 http_up "http://127.0.0.1:$p_placement/"
phase "Placement on 127.0.0.1:$p_placement"
# nova-api reads its paste pipeline from the first of its config files. Without eventlet's
# monkey patching it runs under gunicorn's threads (conductor,
# scheduler and compute keep their default, eventlet).
gunicorn nova-api "$p_nova" nova.wsgi.osapi_compute:application \
  OS_NOVA_CONFIG_DIR="$etc/nova" OS_NOVA_CONFIG_FILES="api-paste.ini;nova.conf" OS_NOVA_DISABLE_EVENTLET_PATCHING=true
launch nova-conductor "$venv/bin/nova-conductor" "${nconf[@]}"
launch nova-scheduler "$venv/bin/nova-scheduler" "${nconf[@]}"
for host in compute-1 compute-2 compute-3; do
  launch "$host" "$venv/bin/nova-compute" "${nconf[@]}" --config-file "$etc/nova/$host.conf"
done

join magnum-db-manage
gunicorn magnum-api "$p_magnum" magnum.wsgi.api:application NODEHEALER_MAGNUM_CONFIG="$etc/magnum/magnum.conf"
launch magnum-conductor "$venv/bin/magnum-conductor" "${mconf[@]}"

wait_for glance 60 http_up "http://127.0.0.1:$p_glance/"
phase "Glance on 127.0.0.1:$p_glance"
wait_for neutron 90 http_up "http://127.0.0.1:$p_neutron/"
phase "Neutron on 127.0.0.1:$p_neutron"
wait_for nova-api 90 http_up "http://127.0.0.1:$p_nova/"
phase "Nova API on 127.0.0.1:$p_nova"
wait_for magnum-api 90 http_up "http://127.0.0.1:$p_magnum/"
phase "Magnum API on 127.0.0.1:$p_magnum"

# Computes: registered as services, mapped to the cell, each with a resource provider, and
# consuming its queue (its service record is up) before anything is scheduled on it.
for host in compute-1 compute-2 compute-3; do
  wait_for "$host" 120 python3 "$here/ctl" --run-dir "$run" _compute-registered "$host"
done
run_step nova-manage "$venv/bin/nova-manage" "${nconf[@]}" cell_v2 discover_hosts
for host in compute-1 compute-2 compute-3; do
  wait_for "$host" 120 python3 "$here/ctl" --run-dir "$run" _compute-ready "$host"
done
phase "computes compute-1..3 up, mapped and in Placement"

# Flavor, quotas, images, the Magnum cluster template; then cloud.json.
run_step bootstrap python3 "$here/ctl" --run-dir "$run" bootstrap-cloud \
  --keystone-port "$p_keystone" --nova-port "$p_nova" --magnum-port "$p_magnum" --repo "$here"
wait_for magnum-conductor 60 python3 "$here/ctl" --run-dir "$run" _conductor-up
phase "cloud ready: $run/cloud.json"
python3 "$here/ctl" --run-dir "$run" memory | sed 's/^/[openstack] /' >&2
echo "$run/cloud.json"
