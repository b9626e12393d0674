# mk/drill.mk: the scale-out drill, included by the top-level Makefile (docs/RUNBOOK.md,
# "Scaling out"). It needs the cluster mode of `make deps` (scripts/drill.sh starts it).

.PHONY: drill
drill: build ## scale-out drill (CI budget 15 min): broker, search node and replica kills, a rebuild and a rolling restart under load, checked against Postgres
	@bash scripts/drill.sh

# `make lint` vets the drill too: plain `go vet ./...` does not see files behind a build tag.
lint: drill-vet
.PHONY: drill-vet
drill-vet:
	$(GO) vet -tags drill ./wiring/drill/
