package main

import (
	"bytes"
	"os"
	"path/filepath"
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

func TestGoBenchAndCompare(t *testing.T) {
	dir := t.TempDir()
	base, cur := filepath.Join(dir, "base.json"), filepath.Join(dir, "cur.json")
	out1 := "goos: linux\nBenchmarkPlan-2   \t 200\t 5000000 ns/op\t 1300000 B/op\t 4500 allocs/op\nBenchmarkPlan-2 200 6000000 ns/op 1300000 B/op 4500 allocs/op\nBenchmarkPlan-2 200 5500000 ns/op 1300000 B/op 4500 allocs/op\nPASS\n"
	// Slower, same allocations.
	out2 := strings.NewReplacer("5000000", "9000000", "6000000", "9100000", "5500000", "8000000").Replace(out1)
	if err := gobench(strings.NewReader(out1), base); err != nil {
		t.Fatal(err)
	}
	if err := gobench(strings.NewReader(out2), cur); err != nil {
		t.Fatal(err)
	}
	// A scenario at another scale is not compared.
	for p, v := range map[string]string{base: "100 × 2", cur: "100 × 10"} {
		all, _ := os.ReadFile(p)
		s := strings.Replace(string(all), "{", `{"idle_cost": {"scale": "`+v+`", "headline": {"idle.charged": {"value": 0, "unit": "requests", "better": "lower"}}},`, 1)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if err := compare(&b, base, cur); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{"go.Plan.ns_per_op", "5.5e+06 ns", "9e+06 ns", "+64%", "WORSE", "not comparable", "1 figure(s) more than 20% worse"} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	for _, line := range strings.Split(got, "\n") {
		if strings.HasPrefix(line, "go.Plan.allocs_per_op ") && (strings.Contains(line, "WORSE") || !strings.Contains(line, "+0%")) {
			t.Errorf("allocations did not change, yet: %s", line)
		}
	}
}
