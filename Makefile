# The two commands a newcomer needs (see README):
#   make demo    runs the main job on the embedded default
#   make test    installs and starts what the tests need, then runs every check
GO ?= go
FUZZTIME ?= 10s

.PHONY: test check vet fmt-check unit fuzz checkov stack stack-down bench demo

test: stack check

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

stack:
	scripts/stack.sh up

stack-down:
	scripts/stack.sh down

demo:
	$(GO) run ./cmd/agentbus run "What is 6*7, and what time is it in Europe/Paris?"

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
