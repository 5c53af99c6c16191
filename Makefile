# vault-plugin-rotation — see README.md.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
PLUGIN := bin/vault-plugin-rotation
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build release vault vault-ui ui-screenshots test lint fuzz dev dev-ha dev-stop bench deps clean

all: build

build: ## the plugin binary (static)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(PLUGIN) ./cmd/vault-plugin-rotation

release: ## versioned, reproducible binaries (linux amd64/arm64, darwin arm64) in dist/ with SHA256SUMS; the version is the git tag on HEAD, else internal/version/VERSION
	scripts/release.sh

vault: ## a Vault server binary (PATH vault >= 1.15, else the pinned build cached in ~/.cache/vault-plugin-rotation)
	bootstrap/build-vault.sh

vault-ui: ## the pinned Vault with its web UI at /ui/ (what make test and make dev run; ~20 min cold, then cached)
	bootstrap/build-vault-ui.sh

ui-screenshots: deps build ## run the browser test (uitest) and keep its screenshots in docs/ui/ (README "Using the Vault UI")
	VAULT_UI_BIN="$$(bootstrap/build-vault-ui.sh)"; export VAULT_UI_BIN; \
	UI_SCREENSHOTS="$(CURDIR)/docs/ui" $(GO) test -count=1 -run TestVaultUI ./uitest/

test: deps build lint ## gofmt, vet, staticcheck + every test, against the real Vault (with its UI, driven in Chromium), PostgreSQL, Docker engine and sshd, then the fuzz targets
	VAULT_BIN="$$(bootstrap/build-vault-ui.sh)"; export VAULT_BIN VAULT_UI_BIN="$$VAULT_BIN"; echo "VAULT_BIN=$$VAULT_BIN"; \
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
	VAULT_BIN="$$(bootstrap/build-vault-ui.sh)"; export VAULT_BIN; \
	$(GO) test -run '^$$' -bench . ./...

deps: ## system packages (PostgreSQL 15, openssh-server, docker.io, ...): only what is missing; quick when all are present
	scripts/install-deps.sh

clean:
	rm -rf bin dist
