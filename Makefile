# Thin wrappers: the scripts in scripts/ are the real commands (CI runs them too).
.DEFAULT_GOAL := help
.PHONY: help test lint tools bench microbench ci

help: ## show this list
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-6s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

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
