// Package promtext reads the Prometheus text exposition format (what
// promhttp serves without content negotiation): the demo's report and the
// benchmarks scrape previewd's and the API server's /metrics with it.
package promtext

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Sample is one line of the Prometheus text exposition format.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Metrics is a scrape of /metrics.
type Metrics []Sample

// Parse reads the Prometheus text format (what promhttp serves
// without content negotiation). Comments and blank lines are skipped.
func Parse(r io.Reader) (Metrics, error) {
	var out Metrics
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d %q: %w", n, line, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

func parseSample(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return s, fmt.Errorf("no value")
	}
	s.Name = line[:i]
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, " ,")
			if rest == "" {
				return s, fmt.Errorf("unterminated labels")
			}
			if rest[0] == '}' {
				rest = rest[1:]
				break
			}
			eq := strings.IndexByte(rest, '=')
			if eq <= 0 || len(rest) < eq+2 || rest[eq+1] != '"' {
				return s, fmt.Errorf("bad label")
			}
			key := strings.TrimSpace(rest[:eq])
			rest = rest[eq+2:]
			var b strings.Builder
			closed := false
			for j := 0; j < len(rest); j++ {
				c := rest[j]
				if c == '\\' && j+1 < len(rest) {
					j++
					switch rest[j] {
					case 'n':
						b.WriteByte('\n')
					default:
						b.WriteByte(rest[j])
					}
					continue
				}
				if c == '"' {
					rest = rest[j+1:]
					closed = true
					break
				}
				b.WriteByte(c)
			}
			if !closed {
				return s, fmt.Errorf("unterminated label value")
			}
			s.Labels[key] = b.String()
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return s, fmt.Errorf("no value")
	}
	v, err := strconv.ParseFloat(fields[0], 64) // handles NaN, +Inf, -Inf
	if err != nil {
		return s, fmt.Errorf("value %q: %w", fields[0], err)
	}
	s.Value = v
	return s, nil
}

// Get returns the value of the series name whose labels include the given
// pairs ("key", "value", ...), and whether it exists.
func (m Metrics) Get(name string, labels ...string) (float64, bool) {
	for _, s := range m {
		if s.Name == name && hasLabels(s, labels) {
			return s.Value, true
		}
	}
	return math.NaN(), false
}

// Value is Get without the second result; a missing series is NaN.
func (m Metrics) Value(name string, labels ...string) float64 {
	v, _ := m.Get(name, labels...)
	return v
}

// ByLabel returns the values of the series name keyed by the label key,
// sorted by key.
func (m Metrics) ByLabel(name, key string) ([]string, map[string]float64) {
	vals := map[string]float64{}
	for _, s := range m {
		if s.Name == name {
			if k, ok := s.Labels[key]; ok {
				vals[k] += s.Value
			}
		}
	}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, vals
}

func hasLabels(s Sample, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		if s.Labels[pairs[i]] != pairs[i+1] {
			return false
		}
	}
	return true
}

// Sum adds the values of every series name whose labels include the
// given pairs ("key", "value", ...).
func (m Metrics) Sum(name string, labels ...string) float64 {
	var sum float64
	for _, s := range m {
		if s.Name == name && hasLabels(s, labels) {
			sum += s.Value
		}
	}
	return sum
}
