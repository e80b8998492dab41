# Hearth's build. `make demo` and `make test` work on a fresh Debian machine:
# they install what they need first (scripts/install-deps.sh, as root).
GO        ?= go
BIN       := bin
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo dev)
GOFLAGS_STATIC := CGO_ENABLED=0
LDFLAGS   := -s -w -X github.com/hearthdev/hearth/internal/agent.Version=$(VERSION)
EXAMPLES  := examples/hello/hello.zip examples/counter/counter.zip examples/loaded/loaded.zip examples/web/web.zip examples/stream/stream.zip

.PHONY: all build deps kernel runtimes examples test test-unit fuzz demo bench clean

all: build

build: $(BIN)/hearth $(BIN)/hearth-agent examples $(BIN)/testfunction.zip

$(BIN)/hearth: FORCE
	$(GOFLAGS_STATIC) $(GO) build -trimpath -o $@ ./cmd/hearth

# The guest agent must be static: the initramfs has no dynamic loader.
$(BIN)/hearth-agent: FORCE
	$(GOFLAGS_STATIC) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/hearth-agent

examples: $(EXAMPLES)

examples/%.zip: FORCE
	@mkdir -p $(BIN)/fn/$(*F)
	$(GOFLAGS_STATIC) $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/fn/$(*F)/bootstrap ./examples/$(*D)
	$(GO) run ./scripts/mkzip $@ $(BIN)/fn/$(*F)/bootstrap

# The test function, which `hearth bench net` boots.
$(BIN)/testfunction.zip: FORCE
	@mkdir -p $(BIN)/fn/testfunction
	$(GOFLAGS_STATIC) $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/fn/testfunction/bootstrap ./internal/testfunction
	$(GO) run ./scripts/mkzip $@ $(BIN)/fn/testfunction/bootstrap

# Installs the system packages Hearth and its tests need (skips what is there).
deps:
	./scripts/install-deps.sh

# The minimal guest kernel, cached outside the repo by config hash.
kernel:
	./scripts/build-kernel.sh

# The managed runtimes' base roots (python3.11, nodejs18.x), cached outside
# the repo by hash; about 1.5 minutes when built.
runtimes:
	./scripts/build-runtimes.sh

test: deps kernel runtimes build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 40m ./...
	$(MAKE) fuzz

# Logic only: no VM is booted by these.
test-unit:
	$(GO) test -count=1 ./internal/guestproto/... ./internal/guestimage/... ./internal/agent/...

# Each fuzz target for a number of inputs beyond its seed corpus
# (testdata/fuzz, which `go test ./...` runs as plain tests). A count, not a
# time: a time limit can end in the fuzzer's own "context deadline exceeded"
# while it is minimizing a new input, a false failure. A failing input is
# written to the package's testdata/fuzz/FuzzX/: commit it with the fix.
FUZZTIME ?= 20000x
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzReader$$' -fuzztime=$(FUZZTIME) ./internal/guestproto
	$(GO) test -run='^$$' -fuzz='^FuzzLimitedReader$$' -fuzztime=$(FUZZTIME) ./internal/guestproto
	$(GO) test -run='^$$' -fuzz='^FuzzValidateZip$$' -fuzztime=$(FUZZTIME) ./internal/guestimage
	$(GO) test -run='^$$' -fuzz='^FuzzReadRequest$$' -fuzztime=$(FUZZTIME) ./internal/agent/runtimeapi
	$(GO) test -run='^$$' -fuzz='^FuzzZipLayout$$' -fuzztime=$(FUZZTIME) ./internal/guestimage
	$(GO) test -run='^$$' -fuzz='^FuzzBuildEvent$$' -fuzztime=$(FUZZTIME) ./internal/funcurl
	$(GO) test -run='^$$' -fuzz='^FuzzSigV4Auth$$' -fuzztime=$(FUZZTIME) ./internal/api

demo: deps kernel runtimes build
	./scripts/demo.sh

bench: build
	$(BIN)/hearth bench cold -n 5

clean:
	rm -rf $(BIN) $(EXAMPLES)

FORCE:
