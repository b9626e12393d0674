# catalog — see README.md. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO            ?= go
BIN           := bin/catalog
TOOLS_BIN     := $(CURDIR)/.cache/bin
GOLANGCI      := $(TOOLS_BIN)/golangci-lint
GOLANGCI_VER  := v2.15.0
PKGS          := ./...
TEST_FLAGS    ?= -count=1 -timeout 30m
BENCH_FLAGS   ?= -run '^$$' -bench . -benchtime 1x -timeout 60m

include mk/deps.mk
include mk/proto.mk
include mk/drill.mk
include mk/deploy.mk

# `make deps` (recipe in mk/deps.mk) starts PostgreSQL 5432, Kafka 9094 and OpenSearch 9200.
deps:

.PHONY: help
help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-14s\033[0m %s\n",$$1,$$2}'

# Which build this is (`catalog version`, catalog_build_info, the startup log line): the tag
# or commit of the working tree, the commit, and the commit's time (reproducible, unlike the
# clock). Outside a git checkout the toolchain's own stamp is used.
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT        ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
BUILD_TIME    ?= $(shell git log -1 --format=%cI 2>/dev/null)
LDFLAGS       := -X github.com/marketplace/catalog/service.version=$(VERSION) \
                 -X github.com/marketplace/catalog/service.commit=$(COMMIT) \
                 -X github.com/marketplace/catalog/service.buildTime=$(BUILD_TIME)

.PHONY: build
build: ## build bin/catalog (version, commit and build time from git)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/catalog

.PHONY: run
run: build ## install/start PostgreSQL, migrate, run `catalog serve` (embedded Kafka)
	@scripts/deps.sh up postgres
	@$(BIN) migrate
	$(BIN) serve

.PHONY: generate
generate: proto ## regenerate generated code (protobuf, wire)
	$(GO) tool wire gen ./wiring

$(GOLANGCI):
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VER)

.PHONY: lint
lint: $(GOLANGCI) proto-check ## vet, static checks, layer rules, generated-code drift
	$(GO) vet $(PKGS)
	$(GOLANGCI) run --allow-parallel-runners $(PKGS)
	@scripts/lint-layers.sh $(GOLANGCI)
	@$(GO) tool wire diff ./wiring >/dev/null || { echo "wiring/wire_gen.go is stale: run 'make generate' and commit it"; exit 1; }
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt would change:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

.PHONY: lint-layers
lint-layers: $(GOLANGCI) ## plant forbidden imports in a copy and expect the layer rules to flag each one
	@scripts/lint-layers.sh $(GOLANGCI)

.PHONY: test
test: lint deps deps-browser ## lint, start PostgreSQL/Kafka/OpenSearch, install chromium in CI, run every test
	eval "$$(scripts/deps.sh env)" && $(GO) test $(TEST_FLAGS) $(PKGS)

.PHONY: test-unit
test-unit: ## unit tests only (no servers)
	$(GO) test -count=1 -short $(PKGS)

.PHONY: bench
bench: deps build ## run the benchmarks and print their figures
	eval "$$(scripts/deps.sh env)" && $(GO) test $(BENCH_FLAGS) ./bench/...

.PHONY: bench-scale
bench-scale: deps build ## the rebuild at 5,000,000 products (hours; SCALE_* settings in bench/scale_test.go)
	eval "$$(scripts/deps.sh env)" && CATALOG_BENCH_SCALE=1 $(GO) test -run '^$$' -bench '^BenchmarkRebuildScale$$' -benchtime 1x -timeout 12h ./bench/...

.PHONY: clean
clean: ## remove build output
	rm -rf bin
