# The two commands a newcomer needs (see README):
#   make demo    runs the main job on the embedded default
#   make test    installs and starts what the tests need, then runs every check
GO ?= go
FUZZTIME ?= 10s

.PHONY: test check vet fmt-check unit fuzz checkov stack stack-up stack-down bench demo proto

test: stack-up check

check: vet fmt-check unit fuzz checkov

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -race -count=1 -timeout 30m ./...

# A short pass of every fuzz target (go test -fuzz takes one target at a time).
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

# Static analysis of the Terraform modules (pinned checkov in .tools/checkov).
checkov:
	scripts/checkov.sh

# Local development against the AWS stand-in: start moto and redis, then
# create the bus, rules, queues + DLQs, bucket and table (idempotent).
stack: stack-up
	eval "$$(scripts/stack.sh env)" && $(GO) run ./cmd/agentbus stack bootstrap

# Only the servers (what the tests need: each test makes its own resources).
stack-up:
	scripts/stack.sh up

stack-down:
	scripts/stack.sh down

# Regenerate the gRPC Go code from proto/ (installs protoc and plug-ins).
proto:
	scripts/protoc.sh

demo:
	$(GO) run ./cmd/agentbus run "What is 6*7, and what time is it in Europe/Paris?"

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
