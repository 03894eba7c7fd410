#!/usr/bin/env bash
# Regenerates the Go code of proto/ (committed). Needs protoc (Debian:
# apt-get install protobuf-compiler); installs the Go plug-ins at pinned
# versions into .tools/bin from the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_GEN_GO_VERSION=v1.36.12     # = google.golang.org/protobuf in go.mod
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

if ! command -v protoc >/dev/null; then
  echo "protoc not found: apt-get install protobuf-compiler (Debian/Ubuntu)" >&2
  exit 1
fi
bin="$PWD/.tools/bin"
mkdir -p "$bin"
want_go="protoc-gen-go $PROTOC_GEN_GO_VERSION"
if [ ! -x "$bin/protoc-gen-go" ] || [ "$("$bin/protoc-gen-go" --version 2>/dev/null)" != "$want_go" ]; then
  GOBIN="$bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
fi
want_grpc="protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION#v}"
if [ ! -x "$bin/protoc-gen-go-grpc" ] || [ "$("$bin/protoc-gen-go-grpc" --version 2>/dev/null)" != "$want_grpc" ]; then
  GOBIN="$bin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
fi

out="${1:-.}"   # output root; the freshness test passes a temporary folder
PATH="$bin:$PATH" protoc -I proto \
  --go_out="$out" --go_opt=module=github.com/agentbus/agentbus \
  --go-grpc_out="$out" --go-grpc_opt=module=github.com/agentbus/agentbus \
  proto/agentbus/v1/agentbus.proto
