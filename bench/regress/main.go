// Command regress is `make bench`'s bookkeeping: it stores Go benchmark
// output in bench/results.json and compares a run's headline figures with
// the committed ones, flagging any more than 20% worse. The comparison is a
// report, not a verdict: it always exits 0 once it could read its inputs,
// because the machines that run it are shared and noisy.
//
//	go test -run '^$' -bench . -benchmem -count 5 ./reconcile/ ./kube/ | regress gobench -results bench/results.json
//	regress compare -baseline old.json -current bench/results.json
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
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
		fmt.Fprintln(os.Stderr, "usage: regress gobench -results FILE < go-test-output | regress compare -baseline FILE -current FILE")
		os.Exit(1)
	}
	var err error
	switch os.Args[1] {
	case "gobench":
		fs := flag.NewFlagSet("gobench", flag.ExitOnError)
		results := fs.String("results", "bench/results.json", "results file to update (key go_benchmarks)")
		_ = fs.Parse(os.Args[2:])
		err = gobench(os.Stdin, *results)
	case "compare":
		fs := flag.NewFlagSet("compare", flag.ExitOnError)
		base := fs.String("baseline", "", "the committed results.json")
		cur := fs.String("current", "bench/results.json", "this run's results.json")
		_ = fs.Parse(os.Args[2:])
		err = compare(os.Stdout, *base, *cur)
	default:
		err = fmt.Errorf("unknown command %q: want gobench or compare", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "regress:", err)
		os.Exit(1)
	}
}

var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// parseGoBench returns, per benchmark, each unit's values over the runs.
func parseGoBench(r io.Reader) (map[string]map[string][]float64, error) {
	out := map[string]map[string][]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			if out[m[1]] == nil {
				out[m[1]] = map[string][]float64{}
			}
			out[m[1]][f[i+1]] = append(out[m[1]][f[i+1]], v)
		}
	}
	return out, sc.Err()
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// gobench stores the medians of every benchmark's ns/op, B/op and
// allocs/op as headline figures under go_benchmarks.
func gobench(in io.Reader, path string) error {
	runs, err := parseGoBench(in)
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		return errors.New("no benchmark lines on standard input")
	}
	type entry struct {
		Runs   int     `json:"runs"`
		NsOp   float64 `json:"ns_per_op_median"`
		BOp    float64 `json:"bytes_per_op_median"`
		Allocs float64 `json:"allocs_per_op_median"`
		MinNs  float64 `json:"ns_per_op_min"`
		MaxNs  float64 `json:"ns_per_op_max"`
	}
	res := struct {
		Scale      string            `json:"scale"`
		Benchmarks map[string]entry  `json:"benchmarks"`
		Headline   map[string]Figure `json:"headline"`
	}{Scale: "go test -bench", Benchmarks: map[string]entry{}, Headline: map[string]Figure{}}
	for name, u := range runs {
		ns := u["ns/op"]
		e := entry{Runs: len(ns), NsOp: median(ns), BOp: median(orZero(u["B/op"])), Allocs: median(orZero(u["allocs/op"]))}
		e.MinNs, e.MaxNs = minMax(ns)
		res.Benchmarks[name] = e
		res.Headline["go."+name+".ns_per_op"] = Figure{e.NsOp, "ns", "lower"}
		res.Headline["go."+name+".allocs_per_op"] = Figure{e.Allocs, "allocs", "lower"}
	}
	all := map[string]json.RawMessage{}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &all); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	all["go_benchmarks"] = b
	out, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(out, '\n'), 0o644)
}

func orZero(xs []float64) []float64 {
	if len(xs) == 0 {
		return []float64{0}
	}
	return xs
}

func minMax(xs []float64) (float64, float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}

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

// compare prints every headline figure of current next to the baseline's
// and flags those more than 20% worse. Scenarios run at another scale are
// reported as not comparable.
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
		fmt.Fprintln(w, "REGRESSION CHECK: no figure more than 20% worse than the committed results (report only)")
	} else {
		fmt.Fprintf(w, "REGRESSION CHECK: %d figure(s) more than 20%% worse than the committed results (report only; shared machines are noisy, rerun before acting): %s\n",
			len(flagged), strings.Join(flagged, ", "))
	}
	return nil
}

func fmtFig(f Figure) string {
	return strconv.FormatFloat(f.Value, 'g', 6, 64) + " " + f.Unit
}
