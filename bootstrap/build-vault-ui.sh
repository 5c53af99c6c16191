#!/usr/bin/env bash
# Prints the path of the pinned Vault server built WITH its web UI (served at /ui/).
#
# A Vault built from the Go module has no UI assets (/ui/ answers "Vault UI is not available in this binary"). This
# builds them from the ui/ directory of the same module, from the npm registry alone (bootstrap/vault-ui/README.md says
# what is replaced and why), then builds the server of bootstrap/vault with those assets embedded (-tags ui).
#
# Cached outside the checkout like bootstrap/build-vault.sh ($VAULT_CACHE_DIR, default
# ~/.cache/vault-plugin-rotation/vault-ui-<sha>), keyed by the pin (bootstrap/vault/go.mod), bootstrap/vault-ui/
# (its .md files aside) and this script. A cold build takes about 20 minutes on 2 cores (the plain pinned Vault if not cached yet, ~9 min; yarn
# install ~1 min; the UI ~6 min with a 5-8 GB memory peak; the server again ~9 min). Needs go, node 20, curl and the
# npm registry (YARN_NPM_REGISTRY_SERVER overrides it). Build output goes to stderr; stdout is only the path.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${VAULT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-rotation}"
pin="$root/bootstrap/vault"
uisrc="$root/bootstrap/vault-ui"

mkdir -p "$bin_dir"
# One build at a time (parallel test packages, make dev): the UI build alone peaks at 5-8 GB.
exec 8>"$bin_dir/.vault-ui.lock"
flock -w 3600 8 || { echo "build-vault-ui: another build has held $bin_dir/.vault-ui.lock for an hour" >&2; exit 1; }

# The key covers what the build reads from this checkout, as git has it: a file git does not track would be built
# into the binary but missing from every other clone, so it stops the build (found by review: the lineal stand-in's
# dist/ was ignored by git and built only here).
if command -v git >/dev/null && git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
	extra="$(cd "$root" && git ls-files --others -- bootstrap/vault-ui bootstrap/vault)"
	if [ -n "$extra" ]; then
		echo "build-vault-ui: files that git does not track would go into the build: commit or remove them:" >&2
		echo "$extra" >&2
		exit 1
	fi
fi
key="$(
	cd "$root"
	{
		sha256sum bootstrap/vault/go.mod bootstrap/vault/go.sum bootstrap/vault/*.go bootstrap/build-vault-ui.sh
		find bootstrap/vault-ui -type f ! -name '*.md' | LC_ALL=C sort | xargs sha256sum
	} | sha256sum | cut -c1-16
)"
bin="$bin_dir/vault-ui-$key"
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

log() { echo "build-vault-ui: $*" >&2; }
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
for c in go node curl flock patch; do
	command -v "$c" >/dev/null || { log "$c is missing (run scripts/install-deps.sh)"; exit 1; }
done
# Vault 1.21's ui/package.json asks for node 20 ("engines"); Debian 12's own nodejs is 18.
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || { log "node $(node --version) is too old: the pinned Vault's UI needs node 20 or newer"; exit 1; }
start=$(date +%s)

# 1. The plain pinned Vault: it serves the OpenAPI document our vault-client-typescript is generated from.
plain="$(VAULT_BUILD_FORCE=1 "$root/bootstrap/build-vault.sh")"

# 2. A writable copy of the pinned module (the module cache is read-only and must stay as downloaded).
modver="$(cd "$pin" && go list -mod=mod -m -f '{{.Version}}' github.com/hashicorp/vault)"
moddir="$(cd "$pin" && go mod download -json "github.com/hashicorp/vault@$modver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$moddir/ui" ] || { log "no ui/ in $moddir"; exit 1; }
work="$bin_dir/vault-ui-build-$key"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
cp -r "$moddir" "$work/vault"
chmod -R u+w "$work/vault"
ui="$work/vault/ui"
log "building Vault $modver with its UI in $work (about 20 minutes cold)"

# 3. Vault's OpenAPI document, every builtin plugin mounted, with generic mount paths (as Vault's own
# scripts/gen_openapi.sh does for the original client).
port=""
for _ in $(seq 20); do
	p=$((20000 + RANDOM % 20000))
	if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 1))") 2>/dev/null; then
		port=$p
		break
	fi
done
[ -n "$port" ] || { log "no free port"; exit 1; }
export VAULT_ADDR="http://127.0.0.1:$port" VAULT_TOKEN="root-openapi"
"$plain" server -dev -dev-root-token-id="$VAULT_TOKEN" -dev-listen-address="127.0.0.1:$port" >"$work/openapi-vault.log" 2>&1 &
vpid=$!
trap 'kill "$vpid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
	"$plain" status >/dev/null 2>&1 && break
	sleep 0.2
done
for a in alicloud approle aws azure cert cf gcp github jwt kerberos kubernetes ldap oci okta radius userpass; do
	"$plain" auth enable "$a" >/dev/null
done
"$plain" secrets disable secret/ >/dev/null
for s in alicloud aws azure consul database gcp gcpkms kubernetes ldap mongodbatlas nomad pki rabbitmq ssh terraform totp transit; do
	"$plain" secrets enable "$s" >/dev/null
done
"$plain" secrets enable -path=kv-v1 -version=1 kv >/dev/null
"$plain" secrets enable -path=kv-v2 -version=2 kv >/dev/null
curl -sSf -H "X-Vault-Token: $VAULT_TOKEN" --data '{"generic_mount_paths": true}' \
	"$VAULT_ADDR/v1/sys/internal/specs/openapi" >"$work/openapi.json"
kill "$vpid"
wait "$vpid" 2>/dev/null || true
unset VAULT_ADDR VAULT_TOKEN

# 4. The UI's dependencies from the npm registry, our two packages, the lock pinned by our patch.
mkdir -p "$ui/local-packages"
cp -r "$uisrc/packages/." "$ui/local-packages/"
node "$ui/local-packages/vault-client-typescript/gen.mjs" "$work/openapi.json" >"$ui/local-packages/vault-client-typescript/index.js"
node "$uisrc/prepare.mjs" "$ui"
(cd "$ui" && patch -s -p1 <"$uisrc/yarn.lock.patch")

export YARN_NPM_REGISTRY_SERVER="${YARN_NPM_REGISTRY_SERVER:-https://registry.npmjs.org}"
for ca in "${YARN_CA_FILE_PATH:-}" "${NODE_EXTRA_CA_CERTS:-}" /etc/ssl/certs/ca-certificates.crt; do
	if [ -n "$ca" ] && [ -f "$ca" ]; then
		export YARN_CA_FILE_PATH="$ca"
		break
	fi
done
export YARN_GLOBAL_FOLDER="$bin_dir/yarn" YARN_ENABLE_GLOBAL_CACHE=1 # not in $HOME's ~/.yarn; shared by builds
export YARN_ENABLE_SCRIPTS=0 # a dependency's preinstall runs `npx only-allow pnpm`; the build needs no script
export YARN_ENABLE_TELEMETRY=0 YARN_ENABLE_PROGRESS_BARS=0 CI=1
yarn() { (cd "$ui" && nice node .yarn/releases/yarn-3.5.0.cjs "$@"); }
t=$(date +%s)
yarn install --immutable >&2
log "yarn install: $(($(date +%s) - t))s"
t=$(date +%s)
yarn run build >&2
[ -f "$work/vault/http/web_ui/index.html" ] || { log "the UI build left no http/web_ui/index.html"; exit 1; }
log "UI built in $(($(date +%s) - t))s: $(du -sh "$work/vault/http/web_ui" | cut -f1)"

# 5. The server of bootstrap/vault (same main, same dependency versions) on that copy, with the assets embedded.
mkdir -p "$work/main"
cp "$pin/go.mod" "$pin/go.sum" "$pin/main.go" "$work/main/"
t=$(date +%s)
(
	cd "$work/main"
	go mod edit -replace "github.com/hashicorp/vault=$work/vault"
	CGO_ENABLED="${CGO_ENABLED:-0}" nice go build -mod=mod -trimpath -tags ui -ldflags "-s -w" -o "$bin.tmp" . >&2
)
mv -f "$bin.tmp" "$bin"
log "server built in $(($(date +%s) - t))s; total $(($(date +%s) - start))s: $bin ($("$bin" version))"
echo "$bin"
