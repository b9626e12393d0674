# mk/proto.mk: protobuf code generation (api/proto -> api/gen), included by the top-level
# Makefile. No protoc is needed: buf compiles the .proto files itself and runs the pinned Go
# plugins from .cache/bin (git-ignored). Generated code is committed, so building the service
# never needs these tools; `proto-check` keeps the committed code honest.

PROTO_GO          ?= go
PROTO_TOOLS_BIN   ?= $(CURDIR)/.cache/bin
# buf and the plugins are pinned: a plugin version is written into every generated file, so
# an unpinned plugin would show up as drift on every machine with a different one.
# protoc-gen-go matches go.mod's google.golang.org/protobuf; protoc-gen-go-grpc's output
# needs google.golang.org/grpc >= 1.64 (go.mod has 1.85).
BUF_VERSION                ?= v1.75.0
PROTOC_GEN_GO_VERSION      ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.2

BUF       := $(PROTO_TOOLS_BIN)/buf
PROTO_OUT := api/gen
# Stamp files carry the versions, so changing a pin above reinstalls the tool.
PROTO_STAMPS := $(PROTO_TOOLS_BIN)/.buf@$(BUF_VERSION) \
                $(PROTO_TOOLS_BIN)/.protoc-gen-go@$(PROTOC_GEN_GO_VERSION) \
                $(PROTO_TOOLS_BIN)/.protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
# Plugins are found on PATH (buf.gen.yaml names them without a directory); ours come first.
PROTO_ENV := PATH="$(PROTO_TOOLS_BIN):$$PATH"

$(PROTO_TOOLS_BIN)/.buf@$(BUF_VERSION):
	@mkdir -p $(PROTO_TOOLS_BIN)
	GOBIN=$(PROTO_TOOLS_BIN) $(PROTO_GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@touch $@

$(PROTO_TOOLS_BIN)/.protoc-gen-go@$(PROTOC_GEN_GO_VERSION):
	@mkdir -p $(PROTO_TOOLS_BIN)
	GOBIN=$(PROTO_TOOLS_BIN) $(PROTO_GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@touch $@

$(PROTO_TOOLS_BIN)/.protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION):
	@mkdir -p $(PROTO_TOOLS_BIN)
	GOBIN=$(PROTO_TOOLS_BIN) $(PROTO_GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	@touch $@

.PHONY: proto-tools proto proto-check

proto-tools: $(PROTO_STAMPS) ## install buf and the protoc plugins (pinned) into .cache/bin

proto: proto-tools ## regenerate api/gen from api/proto (commit the result)
	$(PROTO_ENV) $(BUF) format -w
	$(PROTO_ENV) $(BUF) lint
	$(PROTO_ENV) $(BUF) generate

# proto-check changes nothing: it generates into a temporary directory and compares, so it is
# safe in `make lint` and CI. It also fails on unformatted or lint-failing .proto files.
proto-check: proto-tools ## fail if api/gen differs from what api/proto generates, or buf lint/format fails
	@$(PROTO_ENV) $(BUF) lint
	@$(PROTO_ENV) $(BUF) format --diff --exit-code >/dev/null || { echo "api/proto is not buf-formatted: run 'make proto'"; $(PROTO_ENV) $(BUF) format --diff; exit 1; }
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(PROTO_ENV) $(BUF) generate --output "$$tmp" && \
	  diff -r $(PROTO_OUT) "$$tmp/$(PROTO_OUT)" || { echo "$(PROTO_OUT) is stale: run 'make proto' and commit it"; exit 1; }
