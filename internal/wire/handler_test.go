package wire

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestProfilingOptIn: /debug/pprof/ is served only with --pprof.
func TestProfilingOptIn(t *testing.T) {
	for _, on := range []bool{false, true} {
		d := &Daemon{Registry: prometheus.NewRegistry(), Profiling: on}
		srv := httptest.NewServer(d.Handler())
		resp, err := http.Get(srv.URL + "/debug/pprof/heap?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Errorf("Profiling=%v: GET /debug/pprof/heap = %d, want %d", on, resp.StatusCode, want)
		}
		if on && len(body) == 0 {
			t.Errorf("Profiling=%v: empty heap profile", on)
		}
	}
}
