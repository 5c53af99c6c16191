#!/usr/bin/env bash
# Prints the path of a usable Vault server binary (>= 1.15).
#
# Uses `vault` from PATH when its version is >= 1.15; otherwise builds the pinned server from bootstrap/vault, only
# when no binary for this bootstrap/vault/go.mod exists yet. Binaries are cached outside the checkout, named by the
# sha256 of go.mod ($VAULT_CACHE_DIR, default ~/.cache/vault-plugin-rotation/vault-<sha>), so fresh clones on the
# same machine (CI) reuse them. Build output goes to stderr; stdout is only the path.
# Set VAULT_BUILD_FORCE=1 to ignore the vault on PATH.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${VAULT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-rotation}"
src="$root/bootstrap/vault"

version_ok() { # $1 = vault binary; true when its version is >= 1.15
	local v major minor
	v="$("$1" version 2>/dev/null | sed -n 's/^Vault v\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p' | head -n1)" || return 1
	[ -n "$v" ] || return 1
	read -r major minor <<<"$v"
	[ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -ge 15 ]; }
}

if [ "${VAULT_BUILD_FORCE:-0}" != 1 ] && path_vault="$(command -v vault 2>/dev/null)" && [[ "$path_vault" != "$bin_dir"/* ]] && version_ok "$path_vault"; then
	echo "$path_vault"
	exit 0
fi

mkdir -p "$bin_dir"
# Serialize concurrent callers (parallel test packages) so that only one build runs.
exec 9>"$bin_dir/.vault.lock"
flock 9

sum() { sha256sum "$src/go.mod" | cut -c1-16; }
bin="$bin_dir/vault-$(sum)"

if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
echo "build-vault: building the pinned Vault server from bootstrap/vault (several minutes on a cold cache)..." >&2
start=$(date +%s)
(
	cd "$src"
	CGO_ENABLED="${CGO_ENABLED:-0}" go build -mod=mod -trimpath -ldflags "-s -w" -o "$bin.tmp" . >&2
)
mv -f "$bin.tmp" "$bin"
# go build -mod=mod may have rewritten go.mod: make the binary findable under what is there now, too.
[ -x "$bin_dir/vault-$(sum)" ] || ln -f "$bin" "$bin_dir/vault-$(sum)"
echo "build-vault: built $bin in $(($(date +%s) - start))s: $("$bin" version)" >&2
echo "$bin"
