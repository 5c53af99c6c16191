#!/usr/bin/env bash
# Runs the benchmark suites and prints their results (docs/benchmarks.md explains them).
#
#   scripts/bench.sh            engine benchmarks (backend/) + real-stack benchmarks (bench/)
#   scripts/bench.sh backend    only the engine benchmarks (in-memory storage, fake target; ~20 s)
#   scripts/bench.sh stack      only the real-stack benchmarks (dev Vault + PostgreSQL 15; ~2-3 min)
#
# The real-stack benchmarks start their own PostgreSQL and dev Vault on 127.0.0.1 and run once
# (-benchtime 1x): each does a fixed amount of work. Env knobs: BENCH_ROTATIONS (200),
# BENCH_RSS_ROLES (10000), BENCH_RSS_WORKERS (16), BENCH_RSS_DEADLINE (5m).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$PATH:/usr/local/go/bin"
GO="${GO:-go}"
what="${1:-all}"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

echo "host: $(nproc) CPUs, $(uname -sr), $($GO version | cut -d' ' -f3)"

if [ "$what" = all ] || [ "$what" = backend ]; then
	say "engine: tick cost and worker-pool throughput (backend/)"
	$GO test -run '^$' -bench . -benchtime 2s -count 1 ./backend/
fi

if [ "$what" = all ] || [ "$what" = stack ]; then
	VAULT_BIN="${VAULT_BIN:-$(bootstrap/build-vault.sh)}"
	export VAULT_BIN
	echo "vault: $("$VAULT_BIN" version)"
	say "real stack: rotation latency vs Vault's database engine, plugin RSS with 10,000 roles (bench/)"
	$GO test -run '^$' -bench . -benchtime 1x -count 1 -timeout 20m ./bench/
fi
