# vault-plugin-rotation — see README.md.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
PLUGIN := bin/vault-plugin-rotation
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build release vault test lint fuzz dev dev-ha dev-stop bench deps clean

all: build

build: ## the plugin binary (static)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(PLUGIN) ./cmd/vault-plugin-rotation

release: ## versioned, reproducible binaries (linux amd64/arm64, darwin arm64) in dist/ with SHA256SUMS; the version is the git tag on HEAD, else internal/version/VERSION
	scripts/release.sh

vault: ## a Vault server binary (PATH vault >= 1.15, else the pinned build cached in ~/.cache/vault-plugin-rotation)
	bootstrap/build-vault.sh

test: deps build lint ## gofmt, vet, staticcheck + every test, against the real Vault, PostgreSQL, Docker engine and sshd, then the fuzz targets
	VAULT_BIN="$$(bootstrap/build-vault.sh)"; export VAULT_BIN; echo "VAULT_BIN=$$VAULT_BIN"; \
	scripts/with-dockerd.sh $(GO) test -count=1 -timeout 40m ./...
	GO=$(GO) scripts/fuzz.sh

fuzz: ## every fuzz target for FUZZ_TIME (default 10s) each, one after the other (~2 min); fails on a crash
	GO=$(GO) scripts/fuzz.sh

lint:
	@out="$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt -l is not empty:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

dev: deps ## Vault (dev) + PostgreSQL + the plugin mounted at rotation/, demo roles rotated; Ctrl-C stops (DEV_DETACH=1 to detach)
	scripts/dev.sh start

dev-ha: deps ## three Vault nodes on raft (loopback, unsealed) + PostgreSQL + the plugin on every node, mounted once; prints how to kill the leader
	scripts/dev.sh ha

dev-stop:
	scripts/dev.sh stop

bench: build
	VAULT_BIN="$$(bootstrap/build-vault.sh)"; export VAULT_BIN; \
	$(GO) test -run '^$$' -bench . ./...

deps: ## system packages (PostgreSQL 15, openssh-server, docker.io, ...): only what is missing; quick when all are present
	scripts/install-deps.sh

clean:
	rm -rf bin dist
