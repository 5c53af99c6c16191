#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster listening on 127.0.0.1 only.
#
#   bootstrap/postgres.sh start DIR PORT PASSWORD [name=value ...]   create (first time) and start; extra args become `-c name=value`
#   bootstrap/postgres.sh stop DIR [fast|immediate]                  stop it (no-op when not running)
#   bootstrap/postgres.sh status DIR
#
# Layout: DIR/data (cluster), DIR/postgres.log (server log), DIR/.s.PGSQL.PORT (socket). The superuser is `postgres` with
# PASSWORD (set at initdb; later starts keep the existing password). Host logins use scram-sha-256 from 127.0.0.1/32 only; the
# local socket trusts (setup only). As root the server runs as the `postgres` user, so DIR and all its parents must be
# traversable by it: use a directory under /tmp or /var/tmp.
set -euo pipefail

PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
die() { echo "postgres.sh: $*" >&2; exit 1; }
[ -x "$PGBIN/postgres" ] || die "PostgreSQL 15 not found in $PGBIN (run scripts/install-deps.sh)"

as_pg() { # run a command as the cluster owner
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd="${1:-}"
dir="${2:-}"
{ [ -n "$cmd" ] && [ -n "$dir" ]; } || die "usage: $0 start DIR PORT PASSWORD [name=value ...] | stop DIR [mode] | status DIR"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
data="$dir/data"
log="$dir/postgres.log"

running() { [ -f "$data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; }

case "$cmd" in
start)
	port="${3:-}"
	password="${4:-}"
	{ [ -n "$port" ] && [ -n "$password" ]; } || die "usage: $0 start DIR PORT PASSWORD [name=value ...]"
	shift 4
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres: "$dir"
		chmod 755 "$dir"
		runuser -u postgres -- test -x "$dir" -a -w "$dir" ||
			die "user postgres cannot reach $dir (a parent directory is not traversable); use a directory under /tmp or /var/tmp"
	fi
	if running; then
		echo "postgres.sh: already running in $dir" >&2
	else
		if [ ! -f "$data/PG_VERSION" ]; then
			rm -rf "$data"
			pwfile="$(mktemp "$dir/.pwfile.XXXXXX")"
			printf '%s\n' "$password" >"$pwfile"
			[ "$(id -u)" -ne 0 ] || chown postgres: "$pwfile"
			as_pg "$PGBIN/initdb" -D "$data" -U postgres --pwfile="$pwfile" --auth-host=scram-sha-256 --auth-local=trust \
				-E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || { rm -f "$pwfile"; cat "$dir/initdb.log" >&2; die "initdb failed"; }
			rm -f "$pwfile"
			cat >"$data/pg_hba.conf" <<-HBA
				# TYPE  DATABASE  USER  ADDRESS       METHOD
				local   all       all                 trust
				host    all       all   127.0.0.1/32  scram-sha-256
			HBA
			[ "$(id -u)" -ne 0 ] || chown postgres: "$data/pg_hba.conf"
		fi
		rm -f "$data/postmaster.pid" # stale after a kill -9 (pg_ctl status said it is not running)
		opts="-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c password_encryption=scram-sha-256"
		for o in "$@"; do
			[[ "$o" != *"'"* ]] || die "option must not contain a single quote: $o"
			opts+=" -c '$o'"
		done
		as_pg "$PGBIN/pg_ctl" -D "$data" -l "$log" -w -t 60 -o "$opts" start >/dev/null ||
			{ tail -n 30 "$log" >&2 || true; die "pg_ctl start failed (log: $log)"; }
	fi
	for _ in $(seq 1 120); do
		if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres; then
			echo "postgres.sh: ready on 127.0.0.1:$port (data $data, log $log)" >&2
			exit 0
		fi
		sleep 0.5
	done
	die "not ready after 60s on 127.0.0.1:$port (log: $log)"
	;;
stop)
	mode="${3:-fast}"
	if running; then
		as_pg "$PGBIN/pg_ctl" -D "$data" -m "$mode" -w -t 60 stop >/dev/null
		echo "postgres.sh: stopped $dir" >&2
	fi
	;;
status)
	if running; then echo running; else echo stopped; exit 3; fi
	;;
*)
	die "unknown command $cmd"
	;;
esac
