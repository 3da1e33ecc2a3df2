// Package bench holds previewd's scenario benchmarks: whole daemons (wire.Build)
// against the GitHub fake, the local control plane and PostgreSQL, measuring
// what the Go micro-benchmarks cannot (GitHub requests per cycle, restarts,
// pushes, CPU and heap of an idle daemon).
//
// The scenarios are tests gated behind PREVIEWD_BENCH=1, so `go test ./...`
// skips them in milliseconds:
//
//	PREVIEWD_BENCH=1 go test -v -count=1 -timeout 60m -run TestIdleCost ./bench/
//
// Scale: PREVIEWD_BENCH_REPOS (default 20) × PREVIEWD_BENCH_PRS (default 5)
// open PRs, PREVIEWD_BENCH_IDLE_CYCLES (20), PREVIEWD_BENCH_PARALLEL (8).
// Figures are written to results.json in this directory. BENCHMARKS.md at the
// top of the repository records a run.
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
