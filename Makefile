# Thin wrappers: the scripts in scripts/ are the real commands (CI runs them too).
.DEFAULT_GOAL := help
.PHONY: help build install test lint tools bench microbench ci

# Stamped into the binaries (--version, the qfetch_build_info gauge).
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/qfetch/qfetch/internal/app.Version=$(VERSION)

help: ## show this list
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-6s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build planner, worker and qfetch into dist/ (VERSION=… to stamp another version)
	go build -trimpath -ldflags "$(LDFLAGS)" -o dist/ ./cmd/planner ./cmd/worker ./cmd/qfetch

install: ## go install planner, worker and qfetch into $(go env GOBIN), else ~/go/bin
	go install -trimpath -ldflags "$(LDFLAGS)" ./cmd/planner ./cmd/worker ./cmd/qfetch

test: ## go test -race over every package, against real NATS and MinIO (scripts/test)
	scripts/test

lint: ## gofmt, go vet, staticcheck (scripts/lint)
	scripts/lint

tools: ## build the pinned nats-server, minio and staticcheck into bin/ (scripts/install-tools)
	scripts/install-tools

bench: tools ## the performance table (go run ./bench; SIZE=small|default|big)
	PATH="$(CURDIR)/bin:$$PATH" go run ./bench -size $(or $(SIZE),default)

microbench: tools ## every go test benchmark once, with allocations
	PATH="$(CURDIR)/bin:$$PATH" QFETCH_BIN_DIR="$(CURDIR)/bin" go test -run='^$$' -bench=. -benchmem ./...

ci: ## what CI runs: lint, then test (.ci/run)
	bash .ci/run
