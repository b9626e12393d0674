# mk/deps.mk: real servers for tests and local runs (PostgreSQL 5432, Kafka 9094, OpenSearch 9200),
# and the cluster mode (three Kafka brokers 29092-29094, three OpenSearch nodes 29200-29202).
# Included by the top-level Makefile; see docs/deps.md. Downloads go to ~/.m2, state to .deps/.

DEPS_SH := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/../scripts/deps.sh)
DEPS_SCRIPTS := $(DEPS_SH) $(wildcard $(dir $(DEPS_SH))deps/*.sh) $(dir $(DEPS_SH))drill.sh $(dir $(DEPS_SH))lint-layers.sh

.PHONY: deps-browser deps deps-stop deps-env deps-status deps-cluster deps-cluster-stop deps-cluster-env deps-cluster-status deps-lint

deps: ## Start (or reuse) PostgreSQL, Kafka and OpenSearch and wait until they answer
	@bash $(DEPS_SH) up

# The console's browser test drives Debian's chromium. CI installs it from apt when it is missing
# (the test fails there without it, it does not skip); elsewhere `make deps-browser` is optional.
deps-browser: ## Install Debian's chromium for the console's browser test (CI does it in `make test`)
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$${CI:-}" = true ] || [ "$(MAKECMDGOALS)" = deps-browser ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
	      || { echo "deps-browser: cannot install chromium from apt"; exit 1; }; \
	  else \
	    echo "deps-browser: chromium not installed; the console's browser test is skipped (make deps-browser)"; \
	  fi; \
	fi

deps-stop: ## Stop the Kafka and OpenSearch started by `make deps` (PostgreSQL keeps running)
	@bash $(DEPS_SH) stop

deps-env: ## Print `export` lines pointing the service and tests at the `make deps` servers
	@bash $(DEPS_SH) env

deps-status: ## Show whether each `make deps` server is up
	@bash $(DEPS_SH) status

deps-cluster: ## Start (or reuse) 3 Kafka brokers (RF 3) and 3 OpenSearch nodes, wait until replicated
	@bash $(DEPS_SH) up --cluster

deps-cluster-stop: ## Stop the cluster-mode brokers and search nodes (PostgreSQL keeps running)
	@bash $(DEPS_SH) stop --cluster

deps-cluster-env: ## Print `export` lines pointing the service and tests at the cluster mode
	@bash $(DEPS_SH) env --cluster

deps-cluster-status: ## Show each cluster member (pid, memory, ports) and the clusters' health
	@bash $(DEPS_SH) status --cluster

# `make lint` checks the deps scripts too. shellcheck comes from apt: CI installs it when it is
# missing (a lint that silently skips there would hide broken scripts); elsewhere it is optional.
lint: deps-lint
deps-lint: ## bash -n and shellcheck on scripts/deps.sh, scripts/deps/*.sh, scripts/drill.sh and scripts/lint-layers.sh
	@for f in $(DEPS_SCRIPTS); do bash -n "$$f" || exit 1; done
	@if ! command -v shellcheck >/dev/null 2>&1 && [ "$${CI:-}" = true ] && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck) >/dev/null 2>&1 || true; \
	fi
	@if command -v shellcheck >/dev/null 2>&1; then \
	  shellcheck -x $(DEPS_SCRIPTS); \
	elif [ "$${CI:-}" = true ]; then \
	  echo "deps-lint: shellcheck is missing (apt-get install shellcheck)"; exit 1; \
	else \
	  echo "deps-lint: shellcheck not installed, only bash -n ran (apt-get install shellcheck)"; \
	fi
