package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestVerdict(t *testing.T) {
	for _, c := range []struct {
		base, cur float64
		better    string
		worse     bool
	}{
		{100, 119, "lower", false},
		{100, 121, "lower", true},
		{100, 50, "lower", false},
		{100, 79, "higher", true},
		{100, 130, "higher", false},
		{0, 0, "lower", false},
		{0, 1, "lower", true}, // an idle cycle that used to be free now costs
	} {
		if _, worse := verdict(c.base, c.cur, c.better); worse != c.worse {
			t.Errorf("verdict(%v, %v, %s) worse = %v, want %v", c.base, c.cur, c.better, worse, c.worse)
		}
	}
}

func TestCompare(t *testing.T) {
	dir := t.TempDir()
	base, cur := filepath.Join(dir, "base.json"), filepath.Join(dir, "cur.json")
	// Both files still hold an old go_benchmarks entry (medians from before
	// benchstat), 80% apart: compare must leave it to benchstat.
	old := func(ns int) string {
		return `"go_benchmarks": {"scale": "go test -bench", "headline": {"go.Plan.ns_per_op": {"value": ` + strconv.Itoa(ns) + `, "unit": "ns", "better": "lower"}}}`
	}
	files := map[string]string{
		base: `{` + old(5000000) + `,
  "burst_and_cleanup": {"scale": "50 PRs", "headline": {"burst.all_ready_s": {"value": 18, "unit": "s", "better": "lower"}, "cleanup.gone_s": {"value": 23, "unit": "s", "better": "lower"}}},
  "idle_cost": {"scale": "100 × 2", "headline": {"idle.charged": {"value": 0, "unit": "requests", "better": "lower"}}}}`,
		// Slower burst, same cleanup; idle cost at another scale.
		cur: `{` + old(9000000) + `,
  "burst_and_cleanup": {"scale": "50 PRs", "headline": {"burst.all_ready_s": {"value": 30, "unit": "s", "better": "lower"}, "cleanup.gone_s": {"value": 23, "unit": "s", "better": "lower"}}},
  "idle_cost": {"scale": "100 × 10", "headline": {"idle.charged": {"value": 0, "unit": "requests", "better": "lower"}}}}`,
	}
	for p, s := range files {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if err := compare(&b, base, cur); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{"burst.all_ready_s", "18 s", "30 s", "+67%", "WORSE", "not comparable", "1 figure(s) more than 20% worse"} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "go.Plan") {
		t.Errorf("report compares Go benchmark medians, which benchstat compares:\n%s", got)
	}
	for _, line := range strings.Split(got, "\n") {
		if strings.HasPrefix(line, "cleanup.gone_s ") && (strings.Contains(line, "WORSE") || !strings.Contains(line, "+0%")) {
			t.Errorf("cleanup did not change, yet: %s", line)
		}
	}
}
