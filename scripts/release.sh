#!/usr/bin/env bash
# Builds the release binaries into dist/: vault-plugin-rotation_VERSION_OS_ARCH for linux/amd64, linux/arm64 and
# darwin/arm64, static (CGO off), reproducible (-trimpath, no build id, no VCS stamp: the same source and Go version
# give the same bytes), with the version stamped in; then dist/SHA256SUMS and the `vault plugin register` line.
# VERSION: the exact git tag on HEAD (vX.Y.Z), else internal/version/VERSION; RELEASE_VERSION overrides both.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$PATH:/usr/local/go/bin"
GO="${GO:-go}"

die() { echo "release: $*" >&2; exit 1; }

# A release is built from committed source only: a stamp must name what was built.
if git rev-parse --git-dir >/dev/null 2>&1 && [ -n "$(git status --porcelain --untracked-files=no)" ] && [ -z "${RELEASE_ALLOW_DIRTY:-}" ]; then
	die "the work tree has uncommitted changes; commit them (or RELEASE_ALLOW_DIRTY=1 for a local try)"
fi
file_version="$(tr -d '[:space:]' <internal/version/VERSION)"
version="${RELEASE_VERSION:-}"
if [ -z "$version" ]; then
	version="$(git describe --tags --exact-match 2>/dev/null || true)"
	if [ -n "$version" ] && [ "$version" != "$file_version" ]; then
		die "the tag $version on HEAD is not internal/version/VERSION ($file_version): make builds and make dev would report another version"
	fi
fi
[ -n "$version" ] || version="$file_version"
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || die "version $version is not vX.Y.Z"
# The builder's environment must not change the bytes.
unset GOFLAGS GOEXPERIMENT GOAMD64 GOARM64 GOARM GO386 CGO_CFLAGS CGO_LDFLAGS
export GOAMD64=v1 GOARM64=v8.0

rm -rf dist
mkdir -p dist
ldflags="-s -w -buildid= -X github.com/vault-plugin-rotation/vault-plugin-rotation/internal/version.stamped=$version"
for target in linux/amd64 linux/arm64 darwin/arm64; do
	os="${target%/*}" arch="${target#*/}"
	out="dist/vault-plugin-rotation_${version}_${os}_${arch}"
	CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" "$GO" build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$out" ./cmd/vault-plugin-rotation
	echo "release: $out"
done
(cd dist && sha256sum vault-plugin-rotation_* >SHA256SUMS)
"$GO" version >dist/GO_VERSION # the same source and this toolchain give the same bytes
echo "release: dist/SHA256SUMS"
cat dist/SHA256SUMS
sha="$(awk -v f="vault-plugin-rotation_${version}_linux_amd64" '$2 == f {print $1}' dist/SHA256SUMS)"
cat <<EOT

On a linux/amd64 Vault, copy dist/vault-plugin-rotation_${version}_linux_amd64 to the plugin directory of every node as
vault-plugin-rotation, then (once, on any node):

  vault plugin register -sha256=$sha -command=vault-plugin-rotation -version=$version secret vault-plugin-rotation
EOT
