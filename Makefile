# previewd — see README.md. Two commands do all the set-up on a fresh machine:
#   make demo   a local, self-contained run (control plane, PostgreSQL, GitHub fake)
#   make test   unit and integration tests on the real parts
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
STATICCHECK_VERSION := v0.8.2
TEST_TIMEOUT ?= 30m
TEST_FLAGS ?= -race -count=1
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/previewd/previewd/internal/version.Version=$(VERSION)

.PHONY: build test test-unit lint kube-bins promtool cluster-up cluster-down demo bench test-alerts chart-check image clean

build: ## previewd, the GitHub fake and the test-bed launcher into ./bin
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

demo: kube-bins build ## previewd end to end on this machine: control plane, PostgreSQL, GitHub fake
	@$(BIN)/demo --previewd $(BIN)/previewd

kube-bins: ## build the control-plane binaries once into ~/.cache/previewd (about 11 min cold)
	@deploy/testbed/build-kube.sh >/dev/null

test: kube-bins promtool build ## unit + integration tests on a real control plane and PostgreSQL
	@set -euo pipefail; dir=$$(mktemp -d /tmp/previewd-test-cluster.XXXXXX); \
	trap '$(BIN)/testbed down --dir '"$$dir"' >/dev/null 2>&1 || true' EXIT; \
	kc=$$($(BIN)/testbed up --dir "$$dir" | sed 's/^export KUBECONFIG=//'); \
	PREVIEWD_TEST_KUBECONFIG="$$kc" $(GO) test $(TEST_FLAGS) -timeout $(TEST_TIMEOUT) ./...

test-unit: ## tests that start no external process
	$(GO) test -short -count=1 ./...

lint: ## go vet and staticcheck
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

promtool: ## build the pinned promtool (deploy/tools/go.mod) once into ~/.cache/previewd/tools
	@deploy/tools/build-promtool.sh >/dev/null

test-alerts: promtool ## check + unit-test deploy/alerts; dashboard; lint a real previewd scrape
	@set -euo pipefail; pt=$$(deploy/tools/build-promtool.sh); \
	$$pt check rules --lint=all --lint-fatal deploy/alerts/previewd-rules.yaml; \
	$$pt test rules deploy/alerts/previewd-rules.test.yaml
	$(GO) test -count=1 ./internal/alertcheck/

chart-check: kube-bins ## lint, render and dry-run charts/previewd; prove its ClusterRole least privilege
	$(GO) test -count=1 -v ./internal/chartcheck/

IMAGE ?= ghcr.io/previewd/previewd:$(VERSION)
image: ## container image (needs a Docker engine; none on the dev machines or CI, so tests do not build it)
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

cluster-up: kube-bins build ## start the local control plane in ./.testbed and print its KUBECONFIG
	@$(BIN)/testbed up --dir .testbed

cluster-down: ## stop the control plane started by cluster-up
	@$(BIN)/testbed down --dir .testbed || true

BENCH_REPOS ?= 100
BENCH_PRS ?= 10
BENCH_OUT := $(BIN)/bench
bench: kube-bins build ## Go benchmarks, then every scenario of BENCHMARKS.md on the real parts (~21 min), then the regression report
	@mkdir -p $(BENCH_OUT)
	@git show HEAD:bench/results.json > $(BENCH_OUT)/baseline.json 2>/dev/null || cp bench/results.json $(BENCH_OUT)/baseline.json
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchmem -count 5 ./reconcile/ ./kube/ | tee $(BENCH_OUT)/gobench.txt
	$(GO) run ./bench/regress gobench -results bench/results.json < $(BENCH_OUT)/gobench.txt
	set -o pipefail; PREVIEWD_BENCH=1 PREVIEWD_BENCH_REPOS=$(BENCH_REPOS) PREVIEWD_BENCH_PRS=$(BENCH_PRS) \
	  PREVIEWD_BENCH_BINARY=$(BIN)/previewd \
	  $(GO) test -v -count=1 -timeout 120m -run 'TestBurst|TestScale' ./bench/ 2>&1 | tee $(BENCH_OUT)/scenarios.txt
	@grep -E '^(BURST|CLEANUP|IDLE COST|HOURLY BUDGET|HEAP|MEMORY|DETECTION LATENCY)' $(BENCH_OUT)/scenarios.txt
	$(GO) run ./bench/regress compare -baseline $(BENCH_OUT)/baseline.json -current bench/results.json

clean:
	rm -rf $(BIN)
