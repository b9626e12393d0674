# syntax=docker/dockerfile:1
# catalog: one static binary in a distroless image, running as a non-root user.
#   docker build -t catalog .
#   docker run --rm catalog --help

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first, so a code change does not invalidate the module cache layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/catalog ./cmd/catalog

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/catalog /usr/local/bin/catalog
# The embedded search engine and broker keep local state here when no cluster is configured.
# The gRPC admin port (rebuilds, index pruning, alias rollback) listens on every interface of
# the container, so `catalog serve` refuses to start (exit 2) until it is protected: mount the
# admin token as a secret and point ADMIN_TOKEN_FILE at it, e.g.
#   docker run --mount type=bind,src=$PWD/secrets/admin_token,dst=/run/secrets/admin_token,ro \
#     -e ADMIN_TOKEN_FILE=/run/secrets/admin_token catalog
# (docker-compose.yml does this with a compose secret), or configure mutual TLS
# (GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE, GRPC_TLS_CLIENT_CA_FILE). No secret is baked into
# the image; every credential has a *_FILE variable for mounted secrets.
ENV CATALOG_DATA_DIR=/var/lib/catalog \
    HTTP_ADDR=0.0.0.0:8080 \
    GRPC_ADDR=0.0.0.0:9090 \
    LOG_FORMAT=json
USER nonroot:nonroot
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/catalog"]
CMD ["serve"]
