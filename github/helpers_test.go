package github

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/previewd/previewd/github/githubfake"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testRepo  = "acme/web"
	testToken = "ghp_previewdTestToken0000000000000000001"
	botLogin  = "previewd-bot"
)

// testClock is the real clock plus an offset that tests move forward, to
// leave a rate limit window without waiting for it.
type testClock struct{ off atomic.Int64 }

func (k *testClock) Now() time.Time          { return time.Now().Add(time.Duration(k.off.Load())) }
func (k *testClock) Advance(d time.Duration) { k.off.Add(int64(d)) }

// syncBuffer collects log output from concurrent goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type env struct {
	f     *githubfake.Server
	c     *Client
	reg   *prometheus.Registry
	clock *testClock
	logs  *syncBuffer
}

// testOptions are Options for the fake at apiURL with the test token, small
// delays, a fresh registry and a debug log.
func testOptions(apiURL string, reg *prometheus.Registry, logs *syncBuffer) Options {
	return Options{
		BaseURL:         apiURL,
		Token:           testToken,
		MutationSpacing: time.Millisecond,
		RetryBackoff:    5 * time.Millisecond,
		Registerer:      reg,
		Log:             slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		HTTPTimeout:     10 * time.Second,
	}
}

// newEnv starts a fake with the test token (acting as botLogin) and the
// repository testRepo, and a client for it; edit may change the options.
func newEnv(t *testing.T, fopts githubfake.Options, edit func(*Options)) *env {
	t.Helper()
	f := githubfake.NewTestServer(t, fopts)
	return newEnvFor(t, f, f.APIURL(), edit)
}

func newEnvFor(t *testing.T, f *githubfake.Server, apiURL string, edit func(*Options)) *env {
	t.Helper()
	f.AddTokenAs(testToken, botLogin, 0)
	f.AddRepo(testRepo)
	e := &env{f: f, reg: prometheus.NewRegistry(), clock: &testClock{}, logs: &syncBuffer{}}
	opts := testOptions(apiURL, e.reg, e.logs)
	if edit != nil {
		edit(&opts)
	}
	e.c = newTestClient(t, opts, e.clock)
	return e
}

func newTestClient(t *testing.T, opts Options, clock *testClock) *Client {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if clock != nil {
		c.now = clock.Now
	}
	return c
}

// newWrappedFake serves a fake behind a middleware (for faults the fake
// cannot express, such as "page 2 only") and returns its API URL.
func newWrappedFake(t *testing.T, opts githubfake.Options, mw func(http.Handler) http.Handler) (*githubfake.Server, string) {
	t.Helper()
	f := githubfake.New(opts)
	ts := httptest.NewServer(mw(f))
	t.Cleanup(ts.Close)
	t.Cleanup(f.Close)
	return f, ts.URL + "/"
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// metric returns a counter (with outcome) or gauge value from reg.
func metric(t *testing.T, reg *prometheus.Registry, name, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := outcome == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					match = true
				}
			}
			if !match {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s{outcome=%q} not found", name, outcome)
	return 0
}

func requestsMetric(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	return metric(t, reg, "previewd_github_requests_total", outcome)
}

func rsaKeyPEM(t *testing.T) (*rsa.PublicKey, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &key.PublicKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}
