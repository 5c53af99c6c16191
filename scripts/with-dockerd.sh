#!/usr/bin/env bash
# Runs CMD with a Docker engine available. If one answers at $DOCKER_HOST (default unix:///var/run/docker.sock), CMD
# just runs. Otherwise (root only) docker.io is installed when dockerd is missing, a dockerd is started on the default
# socket with no bridge network (--bridge=none --iptables=false --ip-masq=false: containers use host networking),
# logging to .cache/dockerd.log, and it is stopped again when CMD ends, also on failure or a signal. Only the dockerd
# this script started is ever stopped (its pid is in .cache/dockerd.pid while it runs, for .ci/run's cleanup); before
# stopping it, containers left by the test harness (label vault-plugin-rotation.testenv=1) are removed. Exits with
# CMD's status.
#
#   scripts/with-dockerd.sh go test ./internal/testenv/
# shellcheck disable=SC2317 # stop_dockerd and on_exit run from traps
set -euo pipefail

[ "$#" -gt 0 ] || { echo "usage: $0 CMD [ARG...]" >&2; exit 2; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
default_host="unix:///var/run/docker.sock"
host="${DOCKER_HOST:-$default_host}"

say() { printf 'with-dockerd: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# engine_answers: the Engine API at $host answers /_ping.
engine_answers() {
	if command -v docker >/dev/null 2>&1; then
		DOCKER_HOST="$host" timeout 10 docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1
	elif [[ "$host" == unix://* ]] && command -v curl >/dev/null 2>&1; then
		curl -fsS --max-time 5 --unix-socket "${host#unix://}" http://localhost/_ping >/dev/null 2>&1
	else
		return 1
	fi
}

if engine_answers; then
	exec "$@"
fi

[ "$host" = "$default_host" ] || die "DOCKER_HOST=$host does not answer (this script only starts an engine on $default_host)"
[ "$(id -u)" -eq 0 ] || die "no Docker engine answers at $host and starting one needs root (start dockerd, or run as root)"

if ! command -v dockerd >/dev/null 2>&1; then
	say "dockerd is missing: installing docker.io"
	# Keep the package from starting a dockerd of its own (with the default bridge network) where services can start.
	policy_tmp=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		policy_tmp=/usr/sbin/policy-rc.d
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt_rc=0
	{ apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io >/dev/null; } || apt_rc=$?
	[ -z "$policy_tmp" ] || rm -f "$policy_tmp"
	[ "$apt_rc" -eq 0 ] || die "installing docker.io failed (exit $apt_rc)"
fi

mkdir -p "$root/.cache"
log="$root/.cache/dockerd.log"
pid_file="$root/.cache/dockerd.pid"
: >"$log"
say "starting dockerd (no bridge; log $log)"
# setsid: its own session, so a Ctrl-C meant for CMD does not reach it; it is stopped below, after CMD.
setsid dockerd --bridge=none --iptables=false --ip-masq=false >>"$log" 2>&1 </dev/null &
dockerd_pid=$!
echo "$dockerd_pid" >"$pid_file"
cmd_pid=""

# remove_test_containers: containers the test harness (internal/testenv) created and a crashed test left behind.
remove_test_containers() {
	command -v docker >/dev/null 2>&1 || return 0
	local ids
	ids="$(timeout 30 docker ps -aq --filter label=vault-plugin-rotation.testenv=1 2>/dev/null)" || return 0
	[ -z "$ids" ] || {
		say "removing leftover test containers: $(echo "$ids" | tr '\n' ' ')"
		# shellcheck disable=SC2086 # one id per word
		timeout 60 docker rm -f $ids >/dev/null 2>&1 || true
	}
}

stop_dockerd() {
	kill -0 "$dockerd_pid" 2>/dev/null || { rm -f "$pid_file"; return 0; }
	remove_test_containers
	say "stopping dockerd (pid $dockerd_pid)"
	kill -TERM "$dockerd_pid" 2>/dev/null || true
	for _ in $(seq 1 300); do
		kill -0 "$dockerd_pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$dockerd_pid" 2>/dev/null; then
		say "dockerd did not stop within 30s: killing it"
		kill -KILL "$dockerd_pid" 2>/dev/null || true
	fi
	wait "$dockerd_pid" 2>/dev/null || true
	rm -f "$pid_file"
}
on_exit() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$cmd_pid" ] && kill -0 "$cmd_pid" 2>/dev/null; then
		kill -TERM "$cmd_pid" 2>/dev/null || true
		wait "$cmd_pid" 2>/dev/null || true
	fi
	stop_dockerd
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for i in $(seq 1 600); do
	engine_answers && break
	if ! kill -0 "$dockerd_pid" 2>/dev/null; then
		tail -n 30 "$log" >&2
		die "dockerd exited (log: $log)"
	fi
	if [ "$i" -eq 600 ]; then
		tail -n 30 "$log" >&2
		die "dockerd does not answer after 60s (log: $log)"
	fi
	sleep 0.1
done
say "dockerd is up (pid $dockerd_pid)"

# CMD runs in the background (stdin kept) so that a TERM to this script is handled at once: on_exit forwards it.
rc=0
"$@" <&0 &
cmd_pid=$!
wait "$cmd_pid" || rc=$?
cmd_pid=""
exit "$rc"
