// Command regress is `make bench`'s report on the scenario figures: it
// compares the headline figures of a run's bench/results.json with the
// committed ones and flags any more than 20% worse. The comparison is a
// report, not a verdict: it always exits 0 once it could read its inputs,
// because each scenario figure is a single run on a shared, noisy machine and
// there is no spread to test a difference against.
//
// Go benchmarks are not compared here: `make bench-go` runs them -count 10 and
// compares them with the committed bench/gobench.txt by benchstat
// (golang.org/x/perf), which tests each difference for significance.
//
//	regress compare -baseline old.json -current bench/results.json
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Threshold is how much worse a figure may get before it is flagged.
const Threshold = 0.20

// Figure mirrors bench.Figure.
type Figure struct {
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Better string  `json:"better"`
}

type scenario struct {
	Scale    string            `json:"scale"`
	Headline map[string]Figure `json:"headline"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: regress compare -baseline FILE -current FILE")
		os.Exit(1)
	}
	var err error
	switch os.Args[1] {
	case "compare":
		fs := flag.NewFlagSet("compare", flag.ExitOnError)
		base := fs.String("baseline", "", "the committed results.json")
		cur := fs.String("current", "bench/results.json", "this run's results.json")
		_ = fs.Parse(os.Args[2:])
		err = compare(os.Stdout, *base, *cur)
	default:
		err = fmt.Errorf("unknown command %q: want compare (Go benchmarks: make bench-go, benchstat)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "regress:", err)
		os.Exit(1)
	}
}

// goBenchmarks is the key under which results.json files from before
// benchstat held the medians of the Go benchmarks; compare skips it.
const goBenchmarks = "go_benchmarks"

func load(path string) (map[string]scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	raw := map[string]json.RawMessage{}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]scenario{}
	for k, v := range raw {
		if k == goBenchmarks {
			continue
		}
		var s scenario
		if json.Unmarshal(v, &s) == nil && len(s.Headline) > 0 {
			out[k] = s
		}
	}
	return out, nil
}

// verdict says how cur compares with base for a figure where better is
// "lower" or "higher"; worse is true past the threshold.
func verdict(base, cur float64, better string) (change string, worse bool) {
	if base == 0 {
		if cur == 0 {
			return "same", false
		}
		return "was 0", better != "higher"
	}
	d := (cur - base) / math.Abs(base)
	change = fmt.Sprintf("%+.0f%%", d*100)
	if better == "higher" {
		return change, d < -Threshold
	}
	return change, d > Threshold
}

// compare prints every scenario's headline figures in current next to the
// baseline's and flags those more than 20% worse. Scenarios run at another
// scale are reported as not comparable. Go benchmark medians left in an older
// results.json are ignored: benchstat compares those (make bench-go).
func compare(w io.Writer, basePath, curPath string) error {
	cur, err := load(curPath)
	if err != nil {
		return err
	}
	base := map[string]scenario{}
	if basePath != "" {
		if base, err = load(basePath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "figure\tbaseline\tthis run\tchange\t\n")
	var flagged []string
	keys := make([]string, 0, len(cur))
	for k := range cur {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c := cur[k]
		b, ok := base[k]
		names := make([]string, 0, len(c.Headline))
		for n := range c.Headline {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			f := c.Headline[n]
			bf, have := b.Headline[n]
			switch {
			case !ok || !have:
				fmt.Fprintf(tw, "%s\t—\t%s\tno baseline\t\n", n, fmtFig(f))
			case b.Scale != c.Scale:
				fmt.Fprintf(tw, "%s\t%s\t%s\tnot comparable (scale %q, now %q)\t\n", n, fmtFig(bf), fmtFig(f), b.Scale, c.Scale)
			default:
				change, worse := verdict(bf.Value, f.Value, f.Better)
				mark := ""
				if worse {
					mark = "  << WORSE by more than 20%"
					flagged = append(flagged, n)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s%s\t\n", n, fmtFig(bf), fmtFig(f), change, mark)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(flagged) == 0 {
		fmt.Fprintln(w, "REGRESSION CHECK (scenarios, single runs): no figure more than 20% worse than the committed results (report only; Go benchmarks: see benchstat above)")
	} else {
		fmt.Fprintf(w, "REGRESSION CHECK (scenarios, single runs): %d figure(s) more than 20%% worse than the committed results (report only; shared machines are noisy, rerun before acting; Go benchmarks: see benchstat above): %s\n",
			len(flagged), strings.Join(flagged, ", "))
	}
	return nil
}

func fmtFig(f Figure) string {
	return strconv.FormatFloat(f.Value, 'g', 6, 64) + " " + f.Unit
}
