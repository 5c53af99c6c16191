#!/usr/bin/env bash
# Installs the system packages the build, the tests and `make dev` need (Debian 12), only those that are missing.
# Quick and silent when everything is present; `apt-get update` runs only when something has to be installed.
set -euo pipefail

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
have_cmd psql || need+=(postgresql-client-15)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
have_cmd ssh-keygen || need+=(openssh-client)
have_cmd dockerd || need+=(docker.io)
have_cmd make || need+=(make)
have_cmd git || need+=(git)
have_cmd flock || need+=(util-linux)
have_cmd runuser || need+=(util-linux)
have_cmd sha256sum || need+=(coreutils)
have_cmd curl || need+=(curl)
have_cmd promtool || need+=(prometheus) # deploy/prometheus: promtool checks the alert rules; the integration test scrapes with it
have_cmd jq || need+=(jq) # scripts/dev.sh cluster mode reads `vault status -format=json`
# node + npm: the OpenAPI validator of integration/openapi_test.go (scripts/openapi)
have_cmd node || need+=(nodejs)
have_cmd npm || need+=(npm)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
# the web UI: bootstrap/build-vault-ui.sh applies a patch; uitest drives Debian's headless Chromium
have_cmd patch || need+=(patch)
[ -x /usr/bin/chromium ] || need+=(chromium)

if [ "${#need[@]}" -eq 0 ]; then
	echo "install-deps: all present"
	exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	have_cmd sudo || { echo "install-deps: need root (or sudo) to install: ${need[*]}" >&2; exit 1; }
	sudo=(sudo)
fi
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
echo "install-deps: installing ${need[*]}"

# Do not let the postgresql package create and start a system-wide cluster on :5432; the project runs its own clusters.
if [[ " ${need[*]} " == *" postgresql-15 "* ]] && [ ! -e /etc/postgresql-common/createcluster.d/no-main-cluster.conf ]; then
	"${sudo[@]}" mkdir -p /etc/postgresql-common/createcluster.d
	echo "create_main_cluster = false" | "${sudo[@]}" tee /etc/postgresql-common/createcluster.d/no-main-cluster.conf >/dev/null
fi

# Packages must not start services (dockerd with its default bridge, sshd on :22): the project starts its own, on
# loopback, without a bridge. policy-rc.d answering 101 tells invoke-rc.d not to start anything during the install.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 755 "$policy"
	added_policy=1
fi
remove_policy() { [ "$added_policy" -eq 0 ] || "${sudo[@]}" rm -f "$policy"; }
trap remove_policy EXIT

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "install-deps: done"
