// Package bench holds previewd's scenario benchmarks: whole daemons against
// the GitHub fake, the local control plane and PostgreSQL, measuring what the
// Go micro-benchmarks cannot (GitHub requests per cycle, restarts, pushes,
// deploy throughput, cleanup, CPU and memory).
//
// The scenarios are tests gated behind PREVIEWD_BENCH=1, so `go test ./...`
// skips them in milliseconds. `make bench` runs them all:
//
//	TestBurst  scenarios 4 and 5: PREVIEWD_BENCH_BURST (50) PRs opened at once
//	           in front of the real binary at max_parallel_deploys 4, 8 and 16
//	           (PREVIEWD_BENCH_BURST_PARALLEL), then closed at once.
//	TestScale  scenarios 1, 2, 6 and 3: PREVIEWD_BENCH_REPOS (20) ×
//	           PREVIEWD_BENCH_PRS (5) previews deployed by a daemon built in
//	           this process (wire.Build) — idle cycles, restart, resync, one
//	           push, hourly budget — then the real binary on the same world:
//	           memory over PREVIEWD_BENCH_MEMORY_CYCLES (3) idle cycles and
//	           the latency of PREVIEWD_BENCH_PUSHES (24) pushes at
//	           PREVIEWD_BENCH_INTERVAL (30s).
//
// PREVIEWD_BENCH_BINARY names the previewd binary (else it is built once).
// Figures are written to results.json in this directory; each scenario's
// "headline" figures are what bench/regress compares with the committed
// file. BENCHMARKS.md at the top of the repository records a run.
package bench

import (
	"encoding/json"
	"os"
	"sync"
)

var resultsMu sync.Mutex

// Figure is one headline number of a scenario: the regression check
// (bench/regress) compares each against the committed results.json.
type Figure struct {
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Better is "lower" or "higher".
	Better string `json:"better"`
}

const (
	lower  = "lower"
	higher = "higher"
)

// WriteResult stores one scenario's figures under key in path (a JSON object
// of scenarios), keeping the other scenarios' entries.
func WriteResult(path, key string, v any) error {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	all := map[string]json.RawMessage{}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &all)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	all[key] = b
	out, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(out, '\n'), 0o644)
}
