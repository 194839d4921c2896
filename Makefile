# faultbox: `make demo` and `make test` are the two set-up commands (root;
# they install the Debian packages they need via scripts/deps.sh).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

GO      ?= go
BIN     := bin/faultbox
BENCH   := bin/faultbox-bench
E2E_LOG := bin/e2e.log
UNIT_LOG := bin/unit.log
FUZZTIME ?= 10m
# make test runs every fuzz target briefly; minimizing a new input is capped
# so that a short run fuzzes rather than minimizes.
TEST_FUZZTIME ?= 15s
FUZZMINTIME   ?= 2s

.PHONY: build deps test unit e2e demo bench fuzz image clean

# The version `faultbox version` prints and the image is tagged with:
# the latest v* tag, commits since and the commit (or the commit alone).
VERSION ?= $(shell git describe --tags --match 'v[0-9]*' --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X main.version=$(VERSION)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/faultbox

deps:
	./scripts/deps.sh

# Unit tests are every package but e2e; e2e runs once, verbosely, after them.
# With CI=true a skipped test fails the run: testenv fails the tests that
# lack root, /dev/net/tun or chromium, and noskip catches any other t.Skip
# (unit tests run verbosely then, so that their skips are printed).
noskip = if [ "$${CI:-}" = true ] && grep -q -- '--- SKIP' $(1); then \
	echo "make: tests were skipped, which CI does not allow:"; \
	grep -- '--- SKIP' $(1); exit 1; fi

test: deps build
	$(GO) vet ./...
	cd deploy && $(GO) vet ./...
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME) FUZZMINTIME=0s
	$(MAKE) --no-print-directory e2e

# deploy/ is a module of its own, so that the Kubernetes API types its
# tests decode every manifest into stay out of faultbox's go.mod.
unit:
	@mkdir -p bin
	$(GO) test $(if $(filter true,$(CI)),-v) $$($(GO) list ./... | grep -v '/e2e$$') 2>&1 | tee $(UNIT_LOG)
	cd deploy && $(GO) test $(if $(filter true,$(CI)),-v) ./... 2>&1 | tee -a ../$(UNIT_LOG)
	@$(call noskip,$(UNIT_LOG))

e2e:
	@mkdir -p bin
	$(GO) test ./e2e/ -v -count=1 -timeout 30m 2>&1 | tee $(E2E_LOG)
	@$(call noskip,$(E2E_LOG))

# The Juniper DX / TCP_DEFER_ACCEPT reproduction with real Apache and its
# A/B (AcceptFilter none) and C (a DX that checks before reuse) arms:
# `faultbox scenario run dx-defer-accept --report DIR`, about 45 s; prints
# the verdict and where the report is (bin/demo/..., removed by make clean).
DEMO_DIR := bin/demo
demo: deps build
	./scripts/demo.sh $(BIN) $(DEMO_DIR)

# Side by side: veth pair, faultbox labs, and Toxiproxy (installed from the Go
# module proxy; without it its row is skipped).
TOXIPROXY_VERSION ?= v2.5.0
TOXIPROXY := bin/toxiproxy/server
bench: deps build
	$(GO) build -o $(BENCH) ./cmd/faultbox-bench
	@test -x $(TOXIPROXY) || GOBIN=$(CURDIR)/bin/toxiproxy $(GO) install \
		github.com/Shopify/toxiproxy/v2/cmd/server@$(TOXIPROXY_VERSION) || \
		echo "bench: could not install toxiproxy; its row is skipped"
	./$(BENCH) -faultbox $(BIN) -toxiproxy $(TOXIPROXY)

# Every Fuzz* target, $(FUZZTIME) each (make test: $(TEST_FUZZTIME) each). A
# finding fails the run and is written to the package's testdata/fuzz.
fuzz:
	./scripts/fuzz.sh $(FUZZTIME) $(FUZZMINTIME)

# The OCI image: the static binary alone, FROM scratch, non-root, built
# offline with podman (deploy/image/Containerfile, scripts/image.sh);
# tagged $(IMAGE):$(VERSION) and $(IMAGE):latest.
IMAGE ?= localhost/faultbox
image: deps
	./scripts/image.sh $(VERSION) $(IMAGE)

clean:
	rm -rf bin
