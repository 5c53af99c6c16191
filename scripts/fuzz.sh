#!/usr/bin/env bash
# Runs every Go fuzz target of the repository (each `func FuzzXxx(f *testing.F)` in a *_test.go file) for a bounded
# time, one after the other: go test accepts one -fuzz target per run. Exits non-zero on the first crash or failed
# property; go test has then written the input to PKG/testdata/fuzz/FuzzXxx/, where it belongs in the commit that
# fixes the bug (it runs as a regular test from then on). The generated corpus stays in the Go build cache
# ($GOCACHE/fuzz), never in the repository.
#
#   scripts/fuzz.sh                     # every target, FUZZ_TIME each (default 10s)
#   FUZZ_TIME=2m scripts/fuzz.sh FuzzConnectionURL
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
GO="${GO:-go}"
time_each="${FUZZ_TIME:-10s}"
only="${1:-}"

# pkg<TAB>target, one line per fuzz target, sorted.
targets="$(git ls-files -co --exclude-standard '*_test.go' |
	xargs grep -H -o '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' |
	sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#./\1\t\2#' | sort -u)"
[ -n "$targets" ] || { echo "fuzz: no fuzz targets found" >&2; exit 1; }

start=$SECONDS
n=0
while IFS=$'\t' read -r pkg target; do
	[ -z "$only" ] || [ "$only" = "$target" ] || continue
	echo "fuzz: $pkg $target ($time_each)"
	for try in 1 2; do
		corpus="$(ls "$pkg/testdata/fuzz/$target" 2>/dev/null || true)"
		out="$(mktemp)"
		if "$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "$time_each" "$pkg" 2>&1 | tee "$out"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
			rm -f "$out"
			break
		fi
		# Go's fuzzing engine itself sometimes ends a run with only "context deadline exceeded" when its time is up
		# while a worker is busy (seen on this 2-core machine under load). With no failing input written, that is
		# not a finding: run the target once more. Anything else is.
		if [ "$try" = 1 ] && grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written' "$out" &&
			[ "$(ls "$pkg/testdata/fuzz/$target" 2>/dev/null || true)" = "$corpus" ]; then
			echo "fuzz: $target: the fuzzing engine's own deadline ended the run with no finding; once more" >&2
			rm -f "$out"
			continue
		fi
		rm -f "$out"
		echo "fuzz: $target in $pkg failed; the input is under $pkg/testdata/fuzz/$target/ (keep it with the fix)" >&2
		exit 1
	done
	n=$((n + 1))
done <<<"$targets"
[ "$n" -gt 0 ] || { echo "fuzz: no target named $only" >&2; exit 1; }
echo "fuzz: $n targets passed in $((SECONDS - start))s"
