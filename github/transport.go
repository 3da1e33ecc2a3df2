package github

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of previewd_github_requests_total.
const (
	outcomeOK           = "ok"
	outcomeNotModified  = "not_modified"
	outcomeClientError  = "client_error"
	outcomeRateLimited  = "rate_limited"
	outcomeServerError  = "server_error"
	outcomeNetworkError = "network_error"
)

var outcomes = []string{outcomeOK, outcomeNotModified, outcomeClientError, outcomeRateLimited, outcomeServerError, outcomeNetworkError}

type metrics struct {
	requests  *prometheus.CounterVec
	remaining prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "previewd_github_requests_total",
			Help: "GitHub API requests by what GitHub answered (counted below the HTTP cache: a revalidated response is not_modified).",
		}, []string{"outcome"}),
		remaining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "previewd_github_rate_limit_remaining",
			Help: "X-RateLimit-Remaining of the last GitHub API answer that carried it.",
		}),
	}
	for _, o := range outcomes {
		m.requests.WithLabelValues(o)
	}
	return m
}

// register registers the metrics on reg (none when nil): all of them or,
// with an error, none.
func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	cs := []prometheus.Collector{m.requests, m.remaining}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("registering GitHub metrics: %w", err)
		}
	}
	return nil
}

// tokenAuth adds a personal access token, only to requests for the API host
// (a redirect elsewhere never carries it).
type tokenAuth struct {
	host  string
	token string
	next  http.RoundTripper
}

func (t *tokenAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != t.host {
		return t.next.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.next.RoundTrip(r)
}

// appAuth adds an installation token (ghinstallation exchanges and renews
// it), only to requests for the API host.
type appAuth struct {
	host  string
	itr   *ghinstallation.Transport
	plain http.RoundTripper
}

func (t *appAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != t.host {
		return t.plain.RoundTrip(r)
	}
	resp, err := t.itr.RoundTrip(r)
	if err != nil {
		// A failed token exchange leaves its response body open.
		if he, ok := errors.AsType[*ghinstallation.HTTPError](err); ok && he.Response != nil && he.Response.Body != nil {
			_ = he.Response.Body.Close()
		}
	}
	return resp, err
}

// hostOnly sends requests for host through next (the App JWT transport) and
// others through plain.
type hostOnly struct {
	host  string
	next  http.RoundTripper
	plain http.RoundTripper
}

func (t *hostOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != t.host {
		return t.plain.RoundTrip(r)
	}
	return t.next.RoundTrip(r)
}

// observe sits between the cache and the authentication. It counts what
// GitHub answered, records X-RateLimit-Remaining and, with revalidate,
// rewrites the cache headers so that the cache above asks GitHub
// (conditionally) on every request instead of answering from memory for
// max-age=60 seconds. It also points resp.Request back at the request it was
// given, which carries no Authorization header.
type observe struct {
	next       http.RoundTripper
	m          *metrics
	revalidate bool
}

func (t *observe) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		outcome := outcomeNetworkError
		if he, ok := errors.AsType[*ghinstallation.HTTPError](err); ok && he.Response != nil {
			outcome = statusOutcome(he.Response.StatusCode)
		}
		t.m.requests.WithLabelValues(outcome).Inc()
		return nil, err
	}
	resp.Request = r
	if v := resp.Header.Get("X-RateLimit-Remaining"); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			t.m.remaining.Set(float64(n))
		}
	}
	t.m.requests.WithLabelValues(responseOutcome(resp)).Inc()
	if t.revalidate && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		// Applies to 304s too: httpcache copies their headers onto the
		// cached response, and GitHub's 304 says max-age=60 again.
		resp.Header.Set("Cache-Control", "private, no-cache")
		resp.Header.Del("Expires")
	}
	return resp, nil
}

func statusOutcome(code int) string {
	switch {
	case code == http.StatusNotModified:
		return outcomeNotModified
	case code == http.StatusTooManyRequests:
		return outcomeRateLimited
	case code >= 500:
		return outcomeServerError
	case code >= 400:
		return outcomeClientError
	}
	return outcomeOK
}

// responseOutcome tells a rate-limit 403 from other 403s the way go-github
// does: X-RateLimit-Remaining: 0, Retry-After, or a rate limit message.
func responseOutcome(resp *http.Response) string {
	if resp.StatusCode != http.StatusForbidden {
		return statusOutcome(resp.StatusCode)
	}
	if resp.Header.Get("X-RateLimit-Remaining") == "0" || resp.Header.Get("Retry-After") != "" {
		return outcomeRateLimited
	}
	peek, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(peek), errReader{err}, resp.Body), resp.Body}
	if strings.Contains(strings.ToLower(string(peek)), "rate limit") {
		return outcomeRateLimited
	}
	return outcomeClientError
}

// errReader returns err (when not nil) so that a failed peek is not hidden.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	return 0, io.EOF
}
