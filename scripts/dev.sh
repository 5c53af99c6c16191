#!/usr/bin/env bash
# Local stack for trying the plugin: PostgreSQL 15 + `vault server -dev` + the plugin mounted at rotation/, with a demo
# admin role (self-managed) and a demo app role, rotated once. Everything listens on 127.0.0.1 only.
#
#   scripts/dev.sh [start]   foreground until Ctrl-C (DEV_DETACH=1: leave it running and return)
#   scripts/dev.sh stop      stop what a detached run started
#
# With a Docker engine answering (`docker info` works; DOCKER_HOST is honoured), the demo consumer (demo/consumer) runs
# as container rotation-demo-consumer (host networking, 127.0.0.1:DEV_DEMO_PORT) reading rotation/creds/app, and the
# app role restarts it on rotation and health-checks it. When none answers and we are root, a dockerd is started on the
# default socket (no bridge network; `stop` stops it again); otherwise that part is skipped.
#
# Env: DEV_PG_PORT (55432), DEV_VAULT_PORT (8200; the dev cluster listener takes PORT+1), DEV_VAULT_TOKEN (root),
# DEV_DEMO_PORT (3000).
# State (logs, pids, plugin dir) lives in .cache/dev/; each start begins from a fresh PostgreSQL cluster and a fresh
# in-memory Vault.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$PATH:/usr/local/go/bin"

PG_PORT="${DEV_PG_PORT:-55432}"
VAULT_PORT="${DEV_VAULT_PORT:-8200}"
TOKEN="${DEV_VAULT_TOKEN:-root}"
PLUGIN_VERSION="v0.1.0" # must equal backend.Version
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

stop_all() {
	stop_demo
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

case "${1:-start}" in
stop)
	stop_all
	exit 0
	;;
start) ;;
*) die "usage: $0 [start|stop]" ;;
esac

mkdir -p "$state"
if [ -f "$vault_pid_file" ] && pid_alive "$(cat "$vault_pid_file")"; then
	die "already running (pid $(cat "$vault_pid_file")); run 'make dev-stop' first"
fi
stop_all 2>/dev/null || true

# PostgreSQL runs as the postgres user when we are root: its directory must be reachable by that user.
pg_dir="$state/pg"
if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$state"; then
	pg_dir="/var/tmp/vault-plugin-rotation-dev-$(printf '%s' "$root" | sha256sum | cut -c1-12)"
fi

say "building the plugin"
make -s build
say "locating/building the Vault server"
VAULT="$(bootstrap/build-vault.sh)"
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

say "starting Vault (dev) on 127.0.0.1:$VAULT_PORT"
export VAULT_ADDR="http://127.0.0.1:$VAULT_PORT" VAULT_TOKEN="$TOKEN"
unset VAULT_NAMESPACE
: >"$state/vault.log"
# setsid: its own session/process group, so a detached run survives this shell and stop can reach its plugin processes.
HOME="$state" setsid "$VAULT" server -dev -dev-root-token-id="$TOKEN" -dev-listen-address="127.0.0.1:$VAULT_PORT" \
	-dev-plugin-dir="$plugin_dir" -log-level=info >>"$state/vault.log" 2>&1 </dev/null &
vault_pid=$!
echo "$vault_pid" >"$vault_pid_file"

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

say "registering and mounting the plugin at rotation/"
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
start_dockerd
if ! docker_ok; then
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
  vault read rotation/creds/pg-admin

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

if [ "${DEV_DETACH:-0}" = 1 ]; then
	echo "Detached (Vault pid $vault_pid). Stop with: make dev-stop"
	exit 0
fi
echo "Press Ctrl-C to stop everything."
wait "$vault_pid" || true
echo "dev.sh: vault exited (log: $state/vault.log)" >&2
