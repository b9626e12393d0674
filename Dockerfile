# syntax=docker/dockerfile:1
# catalog: one static binary in a distroless image, running as a non-root user.
#   docker build -t catalog \
#     --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg COMMIT=$(git rev-parse --short=12 HEAD) \
#     --build-arg BUILD_TIME=$(git log -1 --format=%cI) .
#   docker run --rm catalog version
# Without the build arguments the binary reports the toolchain's own stamp (`catalog version`).

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first, so a code change does not invalidate the module cache layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION="" COMMIT="" BUILD_TIME=""
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags="-s -w -X github.com/marketplace/catalog/service.version=${VERSION} -X github.com/marketplace/catalog/service.commit=${COMMIT} -X github.com/marketplace/catalog/service.buildTime=${BUILD_TIME}" \
      -o /out/catalog ./cmd/catalog \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION="" COMMIT="" BUILD_TIME=""
LABEL org.opencontainers.image.title="catalog" \
      org.opencontainers.image.description="Product catalog: Postgres system of record, outbox relay to Kafka, search read models" \
      org.opencontainers.image.source="https://github.com/marketplace/catalog" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.created="${BUILD_TIME}"
COPY --from=build /out/catalog /usr/local/bin/catalog
# The embedded search engine and broker keep local state in CATALOG_DATA_DIR when no cluster
# is configured. The image has no shell to create it at run time and /var/lib belongs to root,
# so the directory ships here, owned by the nonroot user (uid 65532) the image runs as; mount
# a volume on it to keep the state across containers.
COPY --from=build --chown=nonroot:nonroot /out/data /var/lib/catalog
# The gRPC admin port (rebuilds, index pruning, alias rollback) listens on every interface of
# the container, so `catalog serve` refuses to start (exit 2) until it is protected: mount the
# admin token as a secret and point ADMIN_TOKEN_FILE at it, e.g.
#   docker run --mount type=bind,src=$PWD/secrets/admin_token,dst=/run/secrets/admin_token,ro \
#     -e ADMIN_TOKEN_FILE=/run/secrets/admin_token catalog
# (docker-compose.yml does this with a compose secret), or configure mutual TLS
# (GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE, GRPC_TLS_CLIENT_CA_FILE). No secret is baked into
# the image; every credential has a *_FILE variable for mounted secrets.
# No HEALTHCHECK: orchestrators probe /healthz and /readyz over HTTP (the Helm chart does);
# compose runs `catalog healthcheck`, the binary's own probe (the image has no curl).
ENV CATALOG_DATA_DIR=/var/lib/catalog \
    HTTP_ADDR=0.0.0.0:8080 \
    GRPC_ADDR=0.0.0.0:9090 \
    LOG_FORMAT=json
USER nonroot:nonroot
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/catalog"]
CMD ["serve"]
