# mk/deps.mk: real servers for tests and local runs (PostgreSQL 5432, Kafka 9094, OpenSearch 9200).
# Included by the top-level Makefile; see docs/deps.md. Downloads go to ~/.m2, state to .deps/.

DEPS_SH := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/../scripts/deps.sh)

.PHONY: deps deps-stop deps-env deps-status

deps: ## Start (or reuse) PostgreSQL, Kafka and OpenSearch and wait until they answer
	@bash $(DEPS_SH) up

deps-stop: ## Stop the Kafka and OpenSearch started by `make deps` (PostgreSQL keeps running)
	@bash $(DEPS_SH) stop

deps-env: ## Print `export` lines pointing the service and tests at the `make deps` servers
	@bash $(DEPS_SH) env

deps-status: ## Show whether each `make deps` server is up
	@bash $(DEPS_SH) status
