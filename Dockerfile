# syntax=docker/dockerfile:1
# The custos binary in a distroless image: no shell, no package manager, and
# it runs as nonroot (uid 65532). It is built with cgo: the Postgres
# inspector is PostgreSQL's own parser (libpg_query), so the image is
# distroless/base (glibc) rather than static.
#   docker build -t custos .
#   docker run -v "$PWD/examples/compose.yaml:/etc/custos/custos.yaml:ro" custos
# compose.yaml builds and runs it next to Envoy.

FROM golang:1.26 AS build
WORKDIR /src
# Download modules in their own layer, so that a change to the source does
# not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath -o /custos ./cmd/custos
# The state directory (audit.dir in examples/compose.yaml), owned by nonroot,
# so that a volume mounted there starts out writable.
RUN mkdir -p /state/var/lib/custos/audit

FROM gcr.io/distroless/base-debian12:nonroot
COPY --from=build /custos /custos
COPY --from=build --chown=65532:65532 /state/var/lib/custos /var/lib/custos
USER 65532:65532
# 9000 gRPC (ext_authz, ext_proc, health), 9090 HTTP (/healthz, /readyz),
# 18000 ADS. The data plane port (10000) belongs to Envoy, not to this image.
EXPOSE 9000 9090 18000
ENTRYPOINT ["/custos"]
CMD ["serve", "--config", "/etc/custos/custos.yaml"]
