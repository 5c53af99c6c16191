#!/usr/bin/env bash
# Local stack for trying the plugin: PostgreSQL 15 + `vault server -dev` + the plugin mounted at rotation/, with a demo
# admin role (self-managed) and a demo app role, rotated once. Everything listens on 127.0.0.1 only.
#
#   scripts/dev.sh [start]   foreground until Ctrl-C (DEV_DETACH=1: leave it running and return)
#   scripts/dev.sh stop      stop what a detached run started
#   scripts/dev.sh ha        cluster mode (make dev-ha): three Vault nodes on integrated storage (raft) on loopback,
#                            initialized with one key share and unsealed, the plugin in every node's plugin directory
#                            (same binary, same sha256), registered and mounted once; a demo role rotated every 30 s
#   scripts/dev.sh ha-node N start cluster node N (0-2) again after you killed it, and unseal it
#
# With a Docker engine answering (`docker info` works; DOCKER_HOST is honoured), the demo consumer (demo/consumer) runs
# as container rotation-demo-consumer (host networking, 127.0.0.1:DEV_DEMO_PORT) reading rotation/creds/app, and the
# app role restarts it on rotation and health-checks it. When none answers and we are root, a dockerd is started on the
# default socket (no bridge network; `stop` stops it again); otherwise that part is skipped.
#
# Env: DEV_PG_PORT (55432), DEV_VAULT_PORT (8200; the dev cluster listener takes PORT+1; in cluster mode node N listens
# on PORT+2N and PORT+2N+1), DEV_VAULT_TOKEN (root; cluster mode uses the root token of its init), DEV_DEMO_PORT (3000).
# State (logs, pids, plugin dir) lives in .cache/dev/; each start begins from a fresh PostgreSQL cluster and a fresh
# in-memory Vault.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$PATH:/usr/local/go/bin"

PG_PORT="${DEV_PG_PORT:-55432}"
VAULT_PORT="${DEV_VAULT_PORT:-8200}"
TOKEN="${DEV_VAULT_TOKEN:-root}"
PLUGIN_VERSION="$(cat "$root/internal/version/VERSION")" # the version the plugin reports (internal/version)
state="$root/.cache/dev"
plugin_dir="$state/plugins"
vault_pid_file="$state/vault.pid"
dockerd_pid_file="$state/dockerd.pid"
pg_dir_file="$state/pg.dir"
DEMO_PORT="${DEV_DEMO_PORT:-3000}"
DEMO_CONTAINER="rotation-demo-consumer"
DEMO_IMAGE="vault-plugin-rotation/demo-consumer:dev"
DEMO_LABEL="vault-plugin-rotation.dev=1"
DOCKER_HOST_URL="${DOCKER_HOST:-unix:///var/run/docker.sock}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'dev.sh: %s\n' "$*" >&2; exit 1; }

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
docker_ok() { command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; }

# stop_demo removes the demo consumer container, only if it is ours (it carries DEMO_LABEL).
stop_demo() {
	docker_ok || return 0
	local label
	label="$(docker inspect -f '{{index .Config.Labels "vault-plugin-rotation.dev"}}' "$DEMO_CONTAINER" 2>/dev/null)" || return 0
	if [ "$label" = 1 ]; then
		say "removing container $DEMO_CONTAINER"
		docker rm -f "$DEMO_CONTAINER" >/dev/null || true
	fi
}

# start_dockerd starts a Docker engine on the default socket when none answers and we may (root, dockerd installed,
# DOCKER_HOST unset): containers use host networking, so it needs no bridge.
start_dockerd() {
	docker_ok && return 0
	[ "$(id -u)" -eq 0 ] && [ -z "${DOCKER_HOST:-}" ] && command -v dockerd >/dev/null 2>&1 || return 0
	say "starting a Docker engine (no bridge network; log in $state/dockerd.log)"
	setsid dockerd --bridge=none --iptables=false --ip-masq=false >"$state/dockerd.log" 2>&1 </dev/null &
	echo $! >"$dockerd_pid_file"
	for _ in $(seq 1 150); do docker_ok && return 0; sleep 0.2; done
	echo "dev.sh: WARNING: the Docker engine did not answer within 30 s (see $state/dockerd.log)" >&2
}

# stop_dockerd stops the engine start_dockerd started, and only that one.
stop_dockerd() {
	[ -f "$dockerd_pid_file" ] || return 0
	local pid
	pid="$(cat "$dockerd_pid_file")"
	if pid_alive "$pid" && [ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" = "dockerd --bridge=none --iptables=false --ip-masq=false " ]; then
		say "stopping the Docker engine (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 300); do pid_alive "$pid" || break; sleep 0.1; done
		pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$dockerd_pid_file"
}

ha_dir="$state/ha"
ha_nodes=3

# ha_stop stops the cluster nodes this script started (pid files in $ha_dir; a pid counts only while its command line
# names our node's config).
ha_stop() {
	local n pid
	for n in $(seq 0 $((ha_nodes - 1))); do
		[ -f "$ha_dir/node$n.pid" ] || continue
		pid="$(cat "$ha_dir/node$n.pid")"
		if pid_alive "$pid" && grep -qa -- "-config=$ha_dir/node$n/vault.hcl" "/proc/$pid/cmdline" 2>/dev/null; then
			say "stopping Vault node$n (pid $pid)"
			kill -CONT "$pid" 2>/dev/null || true # a node you froze with SIGSTOP
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.1; done
			if pid_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
			kill -KILL -- "-$pid" 2>/dev/null || true
		fi
		rm -f "$ha_dir/node$n.pid"
	done
}

# ha_start_node N starts cluster node N (its config is written by the ha mode) in its own process group.
ha_start_node() {
	local n="$1" d="$ha_dir/node$1"
	HOME="$d" setsid "$VAULT" server -config="$d/vault.hcl" -log-level=info >>"$d/vault.log" 2>&1 </dev/null &
	echo $! >"$ha_dir/node$n.pid"
}

ha_addr() { echo "http://127.0.0.1:$((VAULT_PORT + 2 * $1))"; }

# ha_unseal N unseals node N with the cluster's one key share (a joining node may need a few tries).
ha_unseal() {
	local n="$1" i
	for i in $(seq 1 120); do
		if VAULT_ADDR="$(ha_addr "$n")" "$VAULT" operator unseal "$(cat "$ha_dir/unseal-key")" >/dev/null 2>&1 &&
			[ "$(VAULT_ADDR="$(ha_addr "$n")" "$VAULT" status -format=json 2>/dev/null | jq -r .sealed)" = false ]; then
			return 0
		fi
		sleep 0.5
	done
	die "node$n did not unseal (log: $ha_dir/node$n/vault.log)"
}

stop_all() {
	stop_demo
	ha_stop
	stop_dockerd
	if [ -f "$vault_pid_file" ]; then
		local pid
		pid="$(cat "$vault_pid_file")"
		# Only ever signal the process we started (its command line names our vault server run).
		if pid_alive "$pid" && grep -qa -- "-dev-plugin-dir=$plugin_dir" "/proc/$pid/cmdline" 2>/dev/null; then
			say "stopping Vault (pid $pid)"
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.1; done
			if pid_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
			kill -KILL -- "-$pid" 2>/dev/null || true # plugin processes left in its process group
		fi
		rm -f "$vault_pid_file"
	fi
	if [ -f "$pg_dir_file" ]; then
		local d
		d="$(cat "$pg_dir_file")"
		if [ -d "$d" ]; then
			say "stopping PostgreSQL ($d)"
			bootstrap/postgres.sh stop "$d" fast || true
		fi
		rm -f "$pg_dir_file"
	fi
}

HA=0
case "${1:-start}" in
stop)
	stop_all
	exit 0
	;;
start) ;;
ha) HA=1 ;;
ha-node)
	n="${2:-}"
	case "$n" in 0 | 1 | 2) ;; *) die "usage: $0 ha-node 0|1|2" ;; esac
	[ -f "$ha_dir/node$n/vault.hcl" ] || die "no cluster here; start one with make dev-ha"
	VAULT_PORT="$(cat "$ha_dir/port")" # the cluster's, whatever DEV_VAULT_PORT says now
	if [ -f "$ha_dir/node$n.pid" ] && pid_alive "$(cat "$ha_dir/node$n.pid")"; then die "node$n is running"; fi
	VAULT="$(bootstrap/build-vault-ui.sh)"
	say "starting node$n on $(ha_addr "$n") and unsealing it"
	ha_start_node "$n"
	ha_unseal "$n"
	VAULT_ADDR="$(ha_addr "$n")" "$VAULT" status >&2 || true
	exit 0
	;;
*) die "usage: $0 [start|stop|ha|ha-node N]" ;;
esac

mkdir -p "$state"
if [ -f "$vault_pid_file" ] && pid_alive "$(cat "$vault_pid_file")"; then
	die "already running (pid $(cat "$vault_pid_file")); run 'make dev-stop' first"
fi
if [ -f "$ha_dir/node0.pid" ] && pid_alive "$(cat "$ha_dir/node0.pid")"; then
	die "a cluster is already running; run 'make dev-stop' first"
fi
stop_all 2>/dev/null || true

# PostgreSQL runs as the postgres user when we are root: its directory must be reachable by that user.
pg_dir="$state/pg"
if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$state"; then
	pg_dir="/var/tmp/vault-plugin-rotation-dev-$(printf '%s' "$root" | sha256sum | cut -c1-12)"
fi

say "building the plugin"
make -s build
say "locating/building the Vault server with its web UI (the first build takes about 20 minutes, then it is cached)"
VAULT="$(bootstrap/build-vault-ui.sh)"
# The cached build is named by its pin; give the commands printed below a plain `vault`.
mkdir -p "$state/bin"
ln -sfn "$VAULT" "$state/bin/vault"
"$VAULT" version >&2
rm -rf "$plugin_dir"
mkdir -p "$plugin_dir"
cp bin/vault-plugin-rotation "$plugin_dir/"
SHA="$(sha256sum "$plugin_dir/vault-plugin-rotation" | cut -d' ' -f1)"

say "starting PostgreSQL 15 on 127.0.0.1:$PG_PORT"
if [ -d "$pg_dir" ]; then bootstrap/postgres.sh stop "$pg_dir" immediate 2>/dev/null || true; fi
rm -rf "$pg_dir"
PG_SUPER_PW="super-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
ADMIN_PW="admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
APP_PW="app-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
echo "$pg_dir" >"$pg_dir_file"
bootstrap/postgres.sh start "$pg_dir" "$PG_PORT" "$PG_SUPER_PW" log_connections=on
psql_super() { PGPASSWORD="$PG_SUPER_PW" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"; }
psql_super -f - <<SQL
CREATE ROLE oa_admin LOGIN CREATEROLE PASSWORD '$ADMIN_PW';
CREATE ROLE app LOGIN PASSWORD '$APP_PW';
SQL

unset VAULT_NAMESPACE
if [ "$HA" = 1 ]; then
	command -v jq >/dev/null || die "cluster mode needs jq"
	say "starting a 3-node Vault cluster on integrated storage (raft), 127.0.0.1:$VAULT_PORT-$((VAULT_PORT + 5))"
	trap 'rc=$?; [ "$rc" -eq 0 ] || { echo "dev.sh: failed; stopping" >&2; stop_all; }' EXIT # replaced below
	rm -rf "$ha_dir"
	mkdir -p "$ha_dir"
	echo "$VAULT_PORT" >"$ha_dir/port"
	for n in 0 1 2; do
		d="$ha_dir/node$n"
		mkdir -p "$d/raft"
		joins=""
		for m in 0 1 2; do
			[ "$m" = "$n" ] || joins="$joins  retry_join {
    leader_api_addr = \"$(ha_addr "$m")\"
  }
"
		done
		cat >"$d/vault.hcl" <<HCL
storage "raft" {
  path    = "$d/raft"
  node_id = "node$n"
  performance_multiplier = 1
$joins}
listener "tcp" {
  address         = "127.0.0.1:$((VAULT_PORT + 2 * n))"
  cluster_address = "127.0.0.1:$((VAULT_PORT + 2 * n + 1))"
  tls_disable     = true
}
plugin_directory = "$plugin_dir"
api_addr      = "$(ha_addr "$n")"
cluster_addr  = "https://127.0.0.1:$((VAULT_PORT + 2 * n + 1))"
disable_mlock = true
ui            = false
HCL
		ha_start_node "$n"
	done
	export VAULT_ADDR="$(ha_addr 0)"
	for i in $(seq 1 150); do
		"$VAULT" status >/dev/null 2>&1 && break
		[ $? -eq 2 ] && break # answering, sealed
		[ "$i" -lt 150 ] || die "node0 not answering after 30s (log: $ha_dir/node0/vault.log)"
		sleep 0.2
	done
	init="$("$VAULT" operator init -key-shares=1 -key-threshold=1 -format=json)"
	# A dev stack: the unseal key and root token are kept in plain files under .cache/dev/ha (never do this in production).
	(umask 077 && jq -r '.unseal_keys_b64[0]' <<<"$init" >"$ha_dir/unseal-key" && jq -r .root_token <<<"$init" >"$ha_dir/root-token")
	TOKEN="$(cat "$ha_dir/root-token")"
	export VAULT_TOKEN="$TOKEN"
	ha_unseal 0
	for i in $(seq 1 150); do
		[ "$("$VAULT" status -format=json 2>/dev/null | jq -r .is_self)" = true ] && break
		[ "$i" -lt 150 ] || die "node0 not active after 30s"
		sleep 0.2
	done
	"$VAULT" write sys/storage/raft/autopilot/configuration server_stabilization_time=1s >/dev/null
	ha_unseal 1
	ha_unseal 2
	for i in $(seq 1 240); do
		[ "$("$VAULT" operator raft list-peers -format=json 2>/dev/null | jq '[.data.config.servers[] | select(.voter)] | length')" = 3 ] && break
		[ "$i" -lt 240 ] || die "the cluster has not 3 voters after 60s"
		sleep 0.25
	done
	vault_pid="$(cat "$ha_dir/node0.pid")"
else
	say "starting Vault (dev) on 127.0.0.1:$VAULT_PORT"
	export VAULT_ADDR="http://127.0.0.1:$VAULT_PORT" VAULT_TOKEN="$TOKEN"
	: >"$state/vault.log"
	# setsid: its own session/process group, so a detached run survives this shell and stop can reach its plugin processes.
	HOME="$state" setsid "$VAULT" server -dev -dev-root-token-id="$TOKEN" -dev-listen-address="127.0.0.1:$VAULT_PORT" \
		-dev-plugin-dir="$plugin_dir" -log-level=info >>"$state/vault.log" 2>&1 </dev/null &
	vault_pid=$!
	echo "$vault_pid" >"$vault_pid_file"
fi

cleanup() {
	local rc="${1:-$?}"
	trap - INT TERM EXIT
	echo >&2
	stop_all
	exit "$rc"
}
if [ "${DEV_DETACH:-0}" != 1 ]; then
	trap 'cleanup 130' INT
	trap 'cleanup 143' TERM
	trap cleanup EXIT
else
	on_exit() {
		local rc=$?
		[ "$rc" -eq 0 ] || { echo "dev.sh: failed; stopping" >&2; stop_all; }
	}
	trap on_exit EXIT
fi

for i in $(seq 1 150); do
	"$VAULT" status >/dev/null 2>&1 && break
	pid_alive "$vault_pid" || { tail -n 40 "$state/vault.log" >&2; die "vault exited (log: $state/vault.log)"; }
	[ "$i" -lt 150 ] || { tail -n 40 "$state/vault.log" >&2; die "vault not ready after 30s"; }
	sleep 0.2
done

say "registering the plugin (sha256 $SHA) once and mounting it at rotation/"
"$VAULT" plugin register -sha256="$SHA" -command=vault-plugin-rotation -version="$PLUGIN_VERSION" secret vault-plugin-rotation >&2
"$VAULT" secrets enable -path=rotation -plugin-version="$PLUGIN_VERSION" vault-plugin-rotation >&2

URL="postgres://{{username}}:{{password}}@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
say "creating roles pg-admin (self-managed oa_admin, granting the login app) and app (rotated by pg-admin, on its server)"
"$VAULT" write rotation/roles/pg-admin type=postgres connection_url="$URL" username=oa_admin password="$ADMIN_PW" \
	allowed_usernames=app rotation_period=2160h >&2
"$VAULT" write rotation/roles/app type=postgres admin_role=pg-admin username=app \
	rotation_schedule='0 0 1 1,4,7,10 *' >&2

say "rotating app once"
"$VAULT" write -f rotation/rotate/app >&2
NEW_APP_PW="$("$VAULT" read -field=password rotation/creds/app)"
if PGPASSWORD="$NEW_APP_PW" psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U app -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
	say "app logs in to PostgreSQL with the rotated password from rotation/creds/app"
else
	echo "dev.sh: WARNING: app cannot log in with the password read from rotation/creds/app" >&2
fi

# The demo consumer: reads rotation/creds/app once at start; the app role restarts it after each rotation and checks
# its /health (a fresh PostgreSQL login with the password it read), rolling back when it does not come up healthy.
# start_demo builds the image and starts the container; non-zero (with a message) when that fails.
start_demo() {
	say "building the demo consumer image $DEMO_IMAGE"
	mkdir -p "$state/demo"
	CGO_ENABLED=0 go build -trimpath -o "$state/demo/demo-consumer" ./demo/consumer || return 1
	chmod 0755 "$state/demo/demo-consumer"
	tar -C "$state/demo" -c demo-consumer | docker import -c 'ENTRYPOINT ["/demo-consumer"]' - "$DEMO_IMAGE" >/dev/null ||
		return 1
	say "starting container $DEMO_CONTAINER on 127.0.0.1:$DEMO_PORT (host network)"
	stop_demo
	docker run -d --name "$DEMO_CONTAINER" --network host --label "$DEMO_LABEL" \
		-e VAULT_ADDR="$VAULT_ADDR" -e VAULT_TOKEN="$VAULT_TOKEN" -e ROTATION_ROLE=app -e LISTEN="127.0.0.1:$DEMO_PORT" \
		"$DEMO_IMAGE" >/dev/null || return 1
	local i
	for i in $(seq 1 100); do
		if curl -fsS --max-time 5 "http://127.0.0.1:$DEMO_PORT/health" >/dev/null 2>&1; then
			say "demo consumer is healthy: $(curl -sS --max-time 5 "http://127.0.0.1:$DEMO_PORT/")"
			return 0
		fi
		if [ "$(docker inspect -f '{{.State.Running}}' "$DEMO_CONTAINER" 2>/dev/null)" != true ] || [ "$i" -eq 100 ]; then
			echo "dev.sh: the demo consumer is not healthy: $(curl -sS --max-time 5 "http://127.0.0.1:$DEMO_PORT/health" 2>&1)" >&2
			docker logs --tail 20 "$DEMO_CONTAINER" >&2 || true
			return 1
		fi
		sleep 0.2
	done
}

demo=0
[ "$HA" = 1 ] || start_dockerd
if [ "$HA" = 1 ]; then
	say "cluster mode: role ticker (rotation_period=30s) shows the schedule moving with the leader"
	psql_super -c "CREATE ROLE ticker LOGIN PASSWORD 'ticker-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')'"
	"$VAULT" write rotation/roles/pg-admin allowed_usernames=app,ticker >&2
	"$VAULT" write rotation/roles/ticker type=postgres admin_role=pg-admin username=ticker rotation_period=30s >&2
elif ! docker_ok; then
	say "no Docker engine: the demo consumer is skipped (start dockerd to see rotate → restart → healthy)"
elif ! start_demo; then
	echo "dev.sh: WARNING: the demo consumer could not be started; going on without it" >&2
	stop_demo
else
	demo=1
	say "app role: restart $DEMO_CONTAINER on rotation and health-check it"
	# allowed_consumers is empty by default: no role may restart a container until the operator
	# names which ones. The demo role's health check is on loopback, which the default allows.
	if ! out="$("$VAULT" write rotation/config docker_host="$DOCKER_HOST_URL" allowed_consumers="docker:$DEMO_CONTAINER" 2>&1)"; then
		echo "dev.sh: WARNING: setting rotation/config docker_host and allowed_consumers failed:" >&2
		echo "$out" >&2
	fi
	if out="$("$VAULT" write rotation/roles/app consumers="docker:$DEMO_CONTAINER" \
		health_checks="http://127.0.0.1:$DEMO_PORT/health" health_timeout=20s 2>&1)"; then
		demo=2
	else
		echo "dev.sh: WARNING: setting the app role's consumers failed (consumers not available yet?):" >&2
		echo "$out" >&2
	fi
fi

cat <<EOT

The stack is up (Vault $VAULT_ADDR, PostgreSQL 127.0.0.1:$PG_PORT, logs in $state/).
The Vault UI: $VAULT_ADDR/ui/ (sign in with the token $TOKEN; the plugin is used there through the web console,
the >_ button, and Tools > API Explorer: README "Using the Vault UI").
Try:

  export VAULT_ADDR=$VAULT_ADDR
  export VAULT_TOKEN=$TOKEN
  export PATH="$state/bin:\$PATH"

  vault list rotation/roles
  vault read rotation/roles/app
  vault read rotation/creds/app
  vault write -f rotation/rotate/app
  vault read rotation/versions/app
  vault read rotation/history/app
  vault read rotation/status                 # every role: age, next due, overdue, failures
  vault write -f rotation/rollback/app       # put the previous password back (as a new version)
  vault read rotation/creds/pg-admin
  vault read -field=text rotation/metrics    # Prometheus metrics (deploy/prometheus/ has alert rules)
  vault read rotation/exposure/app           # containers that hold one of app's passwords in their definition

  # log in as app with the current password:
  PGPASSWORD="\$(vault read -field=password rotation/creds/app)" psql -h 127.0.0.1 -p $PG_PORT -U app -d postgres -c 'select current_user'

EOT
if [ "$demo" != 0 ]; then
	if [ "$demo" = 2 ]; then
		rotate_note="# rotates, restarts $DEMO_CONTAINER, checks its /health (rolls back if unhealthy)"
	else
		rotate_note="# (consumers not configured: the container keeps the old password, /health turns 503)"
	fi
	cat <<EOT
  # the demo consumer (container $DEMO_CONTAINER) logs in with the app password it read at start:
  curl -i http://127.0.0.1:$DEMO_PORT/health
  curl http://127.0.0.1:$DEMO_PORT/version
  vault write -f rotation/rotate/app   $rotate_note
  curl -i http://127.0.0.1:$DEMO_PORT/health
  curl http://127.0.0.1:$DEMO_PORT/version
  docker logs $DEMO_CONTAINER

EOT
fi

if [ "$HA" = 1 ]; then
	cat <<EOT
Cluster mode: node0 $(ha_addr 0), node1 $(ha_addr 1), node2 $(ha_addr 2); root token and unseal key in $ha_dir/.
A standby forwards every request to the active node, so any address works.

  vault operator raft list-peers                    # who leads
  vault read rotation/history/ticker                # scheduled rotations (Vault's periodic function: ~once a minute)

  # kill the leader (server and plugin), then watch the new leader take over the schedule:
  L=\$(vault operator raft list-peers -format=json | jq -r '.data.config.servers[] | select(.leader) | .node_id | ltrimstr("node")')
  kill -KILL -- -\$(cat $ha_dir/node\$L.pid)
  export VAULT_ADDR=http://127.0.0.1:\$(( $VAULT_PORT + 2 * ((L + 1) % 3) ))
  watch -n 5 'vault read -format=json rotation/history/ticker | jq -c ".data.history[0] | {time, trigger, outcome, version_after}"'
  vault write -f rotation/rotate/app                # rotation works on the new leader
  scripts/dev.sh ha-node \$L                          # bring the node back (it rejoins as a standby)

EOT
fi

if [ "${DEV_DETACH:-0}" = 1 ]; then
	echo "Detached (Vault pid $vault_pid). Stop with: make dev-stop"
	exit 0
fi
echo "Press Ctrl-C to stop everything."
if [ "$HA" = 1 ]; then
	# Nodes come and go in this mode (that is the point): stay until Ctrl-C.
	while :; do sleep 3600; done
fi
wait "$vault_pid" || true
echo "dev.sh: vault exited (log: $state/vault.log)" >&2
