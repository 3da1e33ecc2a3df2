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

.PHONY: build test test-unit lint kube-bins promtool cluster-up cluster-down demo bench bench-go bench-compare bench-baseline benchstat test-alerts chart-check image clean

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
	$(GO) test -count=1 ./internal/harness/alertcheck/

chart-check: kube-bins ## lint, render and dry-run charts/previewd; prove its ClusterRole least privilege
	$(GO) test -count=1 -v ./internal/harness/chartcheck/

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
bench: kube-bins build ## Go benchmarks vs their baseline (benchstat), then every scenario of BENCHMARKS.md on the real parts (scenarios ~21 min), then the scenarios' report
	@mkdir -p $(BENCH_OUT)
	@git show HEAD:bench/results.json > $(BENCH_OUT)/baseline.json 2>/dev/null || cp bench/results.json $(BENCH_OUT)/baseline.json
	@$(MAKE) --no-print-directory bench-go
	set -o pipefail; PREVIEWD_BENCH=1 PREVIEWD_BENCH_REPOS=$(BENCH_REPOS) PREVIEWD_BENCH_PRS=$(BENCH_PRS) \
	  PREVIEWD_BENCH_BINARY=$(BIN)/previewd \
	  $(GO) test -v -count=1 -timeout 120m -run 'TestBurst|TestScale' ./bench/ 2>&1 | tee $(BENCH_OUT)/scenarios.txt
	@grep -E '^(BURST|CLEANUP|IDLE COST|HOURLY BUDGET|HEAP|MEMORY|DETECTION LATENCY)' $(BENCH_OUT)/scenarios.txt
	$(GO) run ./bench/regress compare -baseline $(BENCH_OUT)/baseline.json -current bench/results.json

# Go benchmarks are compared with benchstat (golang.org/x/perf): the committed
# raw `go test -bench` output bench/gobench.txt is the baseline, a run's goes
# to bin/bench/gobench.txt. benchstat is built once, at this pinned version,
# into the same cache as promtool, so later runs need no network.
BENCHSTAT_VERSION := v0.0.0-20260908200009-22c9c6c9d4da
BENCHSTAT := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/previewd/tools/benchstat-$(BENCHSTAT_VERSION)/benchstat
BENCHSTAT_FLAGS ?=
GOBENCH_PKGS ?= ./reconcile/ ./kube/
GOBENCH_BENCH ?= .
GOBENCH_COUNT ?= 10
GOBENCH_BASE ?= bench/gobench.txt
GOBENCH_NEW ?= bin/bench/gobench.txt

$(BENCHSTAT):
	GOBIN=$(@D) $(GO) install golang.org/x/perf/cmd/benchstat@$(BENCHSTAT_VERSION)

benchstat: $(BENCHSTAT) ## build the pinned benchstat once into ~/.cache/previewd/tools

bench-go: $(BENCHSTAT) ## Go benchmarks (-count 10) into bin/bench/gobench.txt, then benchstat against bench/gobench.txt
	@mkdir -p $(dir $(GOBENCH_NEW))
	set -o pipefail; $(GO) test -run '^$$' -bench '$(GOBENCH_BENCH)' -benchmem -count $(GOBENCH_COUNT) $(GOBENCH_PKGS) | tee $(GOBENCH_NEW)
	@$(MAKE) --no-print-directory bench-compare

bench-compare: $(BENCHSTAT) ## benchstat: the baseline bench/gobench.txt against the last bench-go run (no benchmark is run)
	@set -euo pipefail; base='$(GOBENCH_BASE)'; new='$(GOBENCH_NEW)'; \
	[[ -s "$$new" ]] || { echo "no $$new: run make bench-go first" >&2; exit 1; }; \
	if [[ ! -s "$$base" ]]; then \
	  echo "GO BENCHMARKS: no baseline $$base (record one: make bench-baseline, BENCHMARKS.md); this run alone:"; \
	  $(BENCHSTAT) $(BENCHSTAT_FLAGS) "$$new"; exit 0; \
	fi; \
	for key in cpu pkg; do \
	  if [[ '$(BENCHSTAT_FLAGS)' != *$$key* && "$$(grep "^$$key: " "$$base" | sort -u)" != "$$(grep "^$$key: " "$$new" | sort -u)" ]]; then \
	    echo "WARNING: the '$$key:' lines of $$base and $$new differ; benchstat compares only benchmarks with the same $$key" \
	      "(BENCHSTAT_FLAGS=-ignore=$$key compares across them; for cpu, better re-record the baseline on this machine)"; \
	  fi; \
	done; \
	echo "GO BENCHMARKS: $(strip benchstat $(BENCHSTAT_FLAGS)) $$base $$new  (old vs new; ~ = no significant difference at p < 0.05)"; \
	$(BENCHSTAT) $(BENCHSTAT_FLAGS) "$$base" "$$new"

BASE ?=
BASE_PKGS ?= $(GOBENCH_PKGS)
bench-baseline: ## bench/gobench.txt := the last bench-go run; with BASE=<commit>, a fresh run of that commit's Go benchmarks
	@set -euo pipefail; base='$(GOBENCH_BASE)'; \
	if [[ -z '$(BASE)' ]]; then \
	  [[ -s '$(GOBENCH_NEW)' ]] || { echo "no $(GOBENCH_NEW): run make bench-go first, or give BASE=<commit>" >&2; exit 1; }; \
	  cp '$(GOBENCH_NEW)' "$$base"; \
	else \
	  wt=$$(mktemp -d /tmp/previewd-baseline.XXXXXX); \
	  trap 'rm -f "'"$$base"'.tmp"; git worktree remove --force "'"$$wt"'" >/dev/null 2>&1 || rm -rf "'"$$wt"'"' EXIT; \
	  git worktree add --quiet --detach "$$wt" '$(BASE)'; \
	  echo "Go benchmarks of $$(git rev-parse --short '$(BASE)') in $$wt: $(BASE_PKGS), -count $(GOBENCH_COUNT)"; \
	  (cd "$$wt" && $(GO) test -run '^$$' -bench '$(GOBENCH_BENCH)' -benchmem -count $(GOBENCH_COUNT) $(BASE_PKGS)) | tee "$$base.tmp"; \
	  mv "$$base.tmp" "$$base"; \
	fi; \
	echo "recorded $$base: $$(grep -c '^Benchmark' "$$base") benchmark lines"

clean:
	rm -rf $(BIN)
