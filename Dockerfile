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
ENV CATALOG_DATA_DIR=/var/lib/catalog \
    HTTP_ADDR=0.0.0.0:8080 \
    GRPC_ADDR=0.0.0.0:9090 \
    LOG_FORMAT=json
USER nonroot:nonroot
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/catalog"]
CMD ["serve"]
