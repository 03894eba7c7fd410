# syntax=docker/dockerfile:1
# One image for every agentbus process: `agentbus serve <planner|executor|
# memory|toolgateway>`, `agentbus stack bootstrap`, `agentbus run`, ...
#
# Build stage: a static binary (CGO_ENABLED=0; the SQLite driver is pure Go).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/agentbus ./cmd/agentbus

# Run stage: distroless static (no shell, no package manager), non-root.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/agentbus /agentbus
# The example saga definitions (not their demo scripts), for
# `serve toolgateway`'s AGENTBUS_SAGAS_DIR / terraform's saga_definitions_dir
# (docs/sagas.md). They must match the state machines deployed from them.
COPY examples/sagas/*.json /etc/agentbus/sagas/
USER nonroot:nonroot
ENTRYPOINT ["/agentbus"]
