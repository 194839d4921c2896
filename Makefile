# faultbox: `make demo` and `make test` are the two set-up commands (root;
# they install the Debian packages they need via scripts/deps.sh).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

GO      ?= go
BIN     := bin/faultbox
BENCH   := bin/faultbox-bench
E2E_LOG := bin/e2e.log
FUZZTIME ?= 10m

.PHONY: build deps test unit e2e demo bench fuzz clean

build:
	$(GO) build -o $(BIN) ./cmd/faultbox

deps:
	./scripts/deps.sh

# Unit tests are every package but e2e; e2e runs once, verbosely, after them.
# With CI=true a skipped end-to-end test fails the run.
test: deps build
	$(GO) vet ./...
	$(MAKE) --no-print-directory unit e2e

unit:
	$(GO) test $$($(GO) list ./... | grep -v '/e2e$$')

e2e:
	@mkdir -p bin
	$(GO) test ./e2e/ -v -count=1 -timeout 30m 2>&1 | tee $(E2E_LOG)
	@if [ "$${CI:-}" = true ] && grep -q -- '--- SKIP' $(E2E_LOG); then \
		echo "make: end-to-end tests were skipped, which CI does not allow:"; \
		grep -- '--- SKIP' $(E2E_LOG); exit 1; fi

# A passthrough smoke run on the built-in lab: fetch a file through the
# device over IPv4 and IPv6, show the device's counters, take the lab down.
DEMO_LAB := demo
demo: deps build
	./scripts/demo.sh $(BIN) $(DEMO_LAB)

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

# Every Fuzz* target, $(FUZZTIME) each.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz: $$pkg $$f ($(FUZZTIME))"; \
			$(GO) test $$pkg -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME); \
		done; \
	done

clean:
	rm -rf bin
