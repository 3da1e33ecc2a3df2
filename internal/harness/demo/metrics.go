package demo

import (
	"io"
	"math"
	"strconv"

	"github.com/previewd/previewd/internal/harness/promtext"
)

// metrics is a scrape of previewd's /metrics.
type metrics struct{ promtext.Metrics }

func parseMetrics(r io.Reader) (metrics, error) {
	m, err := promtext.Parse(r)
	return metrics{m}, err
}

// formatNumber prints counters as integers and other values compactly.
func formatNumber(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}
