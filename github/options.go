package github

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/bradleyfalzon/ghinstallation/v2"
	gh "github.com/google/go-github/v66/github"
	"github.com/gregjones/httpcache"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/previewd/previewd/internal/redact"
)

// DefaultBaseURL is the API of github.com.
const DefaultBaseURL = "https://api.github.com/"

// Defaults of Options.
const (
	DefaultCacheBytes      = 32 << 20
	DefaultMutationSpacing = time.Second
	DefaultHTTPTimeout     = 30 * time.Second
	DefaultRetryBackoff    = 200 * time.Millisecond
)

// archiveTimeout bounds the download of one repository archive.
const archiveTimeout = 5 * time.Minute

// Options configures a Client. Set exactly one of Token and App.
type Options struct {
	// BaseURL is the REST API root: DefaultBaseURL when empty, or
	// "https://host/api/v3/" for GitHub Enterprise Server.
	BaseURL string
	// Token is a personal access token.
	Token string
	// App authenticates as a GitHub App installation.
	App *AppAuth
	// BotLogin is the login previewd's comments are posted as. When empty it
	// is asked once: GET /user for a token, "<slug>[bot]" from GET /app for
	// an App.
	BotLogin string
	// Cache stores responses for conditional requests; nil means an
	// in-memory LRU of DefaultCacheBytes. Keys are prefixed per credential,
	// so one backing store may serve several clients.
	Cache httpcache.Cache
	// MutationSpacing is the minimum gap between two mutating requests;
	// DefaultMutationSpacing when 0.
	MutationSpacing time.Duration
	// WritesPerMinute and WritesPerHour bound the writes sent (GitHub's
	// content creation limits): DefaultWritesPerMinute and
	// DefaultWritesPerHour when 0, none when negative. A write over the
	// budget is not sent: it fails with a *RateLimitedError saying when
	// the next may go.
	WritesPerMinute, WritesPerHour int
	// RetryBackoff is the wait before the first retry of a GET after a 5xx
	// or a network error, doubled for the second; DefaultRetryBackoff when 0.
	RetryBackoff time.Duration
	// Registerer receives the metrics; nil means no metrics. A registry
	// takes the metrics of one Client: New fails on one that has them.
	Registerer prometheus.Registerer
	// Log receives the client's records; nil discards them.
	Log *slog.Logger
	// HTTPTimeout bounds each request; DefaultHTTPTimeout when 0.
	HTTPTimeout time.Duration
}

// AppAuth is GitHub App authentication: a JWT signed with the App's key is
// exchanged for an installation token (renewed before it expires).
type AppAuth struct {
	AppID          int64
	InstallationID int64
	// PrivateKey is the App's PEM-encoded RSA private key.
	PrivateKey []byte
}

// New checks opts and builds a Client. It sends no request.
func New(opts Options) (*Client, error) {
	base, err := parseBaseURL(opts.BaseURL)
	if err != nil {
		return nil, err
	}
	token := strings.TrimSpace(opts.Token)
	switch {
	case token != "" && opts.App != nil:
		return nil, errors.New("github: set either Options.Token or Options.App, not both")
	case token == "" && opts.App == nil:
		return nil, errors.New("github: set Options.Token (a personal access token) or Options.App")
	case token != "" && strings.IndexFunc(token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return nil, errors.New("github: Options.Token contains whitespace or control characters")
	}
	if opts.MutationSpacing < 0 {
		return nil, fmt.Errorf("github: Options.MutationSpacing must not be negative, got %s", opts.MutationSpacing)
	}
	if opts.RetryBackoff < 0 {
		return nil, fmt.Errorf("github: Options.RetryBackoff must not be negative, got %s", opts.RetryBackoff)
	}
	if opts.HTTPTimeout < 0 {
		return nil, fmt.Errorf("github: Options.HTTPTimeout must not be negative, got %s", opts.HTTPTimeout)
	}
	if strings.TrimSpace(opts.BotLogin) != opts.BotLogin {
		return nil, fmt.Errorf("github: Options.BotLogin %q has surrounding whitespace", opts.BotLogin)
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cache := opts.Cache
	if cache == nil {
		cache = NewLRUCache(DefaultCacheBytes)
	}
	spacing := cmpOr(opts.MutationSpacing, DefaultMutationSpacing)
	backoff := cmpOr(opts.RetryBackoff, DefaultRetryBackoff)
	timeout := cmpOr(opts.HTTPTimeout, DefaultHTTPTimeout)

	m := newMetrics()

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 4
	c := &Client{
		log:       log,
		base:      transport,
		spacing:   spacing,
		backoff:   backoff,
		retries:   2,
		botLogin:  opts.BotLogin,
		mutations: make(chan struct{}, 1),
		budget:    writeBudget{perMinute: budgetOr(opts.WritesPerMinute, DefaultWritesPerMinute), perHour: budgetOr(opts.WritesPerHour, DefaultWritesPerHour)},
		now:       time.Now,
		sleep:     sleepCtx,
	}
	var auth http.RoundTripper
	var identity string
	if token != "" {
		c.redactor = redact.New(token)
		auth = &tokenAuth{host: base.Host, token: token, next: transport}
		identity = "token\x00" + token
	} else {
		app := opts.App
		switch {
		case app.AppID <= 0:
			return nil, fmt.Errorf("github: Options.App.AppID must be the App's numeric id (> 0), got %d", app.AppID)
		case app.InstallationID <= 0:
			return nil, fmt.Errorf("github: Options.App.InstallationID must be the installation's numeric id (> 0), got %d", app.InstallationID)
		case len(app.PrivateKey) == 0:
			return nil, errors.New("github: Options.App.PrivateKey is empty: give the App's PEM private key")
		}
		atr, err := ghinstallation.NewAppsTransport(transport, app.AppID, app.PrivateKey)
		if err != nil {
			// The parser's message carries no key material, but say what is
			// expected rather than how parsing failed.
			return nil, errors.New("github: Options.App.PrivateKey is not a PEM-encoded RSA private key (PKCS#1 or PKCS#8)")
		}
		apiRoot := strings.TrimRight(base.String(), "/")
		atr.BaseURL = apiRoot
		itr := ghinstallation.NewFromAppsTransport(atr, app.InstallationID)
		itr.BaseURL = apiRoot
		auth = &appAuth{host: base.Host, itr: itr, plain: transport}
		c.appID = app.AppID
		c.appHTTP = &http.Client{
			Transport: &observe{next: &hostOnly{host: base.Host, next: atr, plain: transport}, m: m},
			Timeout:   timeout,
		}
		identity = "app\x00" + strconv.FormatInt(app.AppID, 10) + "\x00" + strconv.FormatInt(app.InstallationID, 10)
	}
	sum := sha256.Sum256([]byte(base.String() + "\x00" + identity))
	prefix := "previewd-github:" + hex.EncodeToString(sum[:8]) + ":"
	c.http = &http.Client{
		Transport: &httpcache.Transport{
			Transport:           &observe{next: auth, m: m, revalidate: true},
			Cache:               prefixCache{prefix: prefix, c: cache},
			MarkCachedResponses: true,
		},
		Timeout: timeout,
	}
	// Repository archives: not cached (each is read once per commit and
	// may be large), redirects followed (the credential is added for the
	// API's host only).
	c.archive = &http.Client{Transport: &observe{next: auth, m: m}, Timeout: archiveTimeout}
	// After every check, so that a failed New leaves the registry as it was.
	if err := m.register(opts.Registerer); err != nil {
		return nil, err
	}
	c.gh = gh.NewClient(nil)
	c.gh.BaseURL = base
	c.gh.UserAgent = "previewd"
	if base.Host != "api.github.com" && !strings.HasSuffix(base.Path, "/api/v3/") {
		log.Warn("GitHub API URL does not end in /api/v3/ as GitHub Enterprise Server's does", "base_url", base.String())
	}
	return c, nil
}

func parseBaseURL(raw string) (*url.URL, error) {
	if raw == "" {
		raw = DefaultBaseURL
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL, which might hold credentials.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, fmt.Errorf("github: Options.BaseURL is not a URL: %w", err)
	}
	switch {
	case u.User != nil:
		return nil, errors.New("github: Options.BaseURL must not carry credentials; use Options.Token or Options.App")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("github: Options.BaseURL %q must be an http(s) URL such as %s or https://ghe.example.com/api/v3/", u.String(), DefaultBaseURL)
	case u.Host == "":
		return nil, fmt.Errorf("github: Options.BaseURL %q has no host", u.String())
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("github: Options.BaseURL %s must not have a query or fragment", u.Scheme+"://"+u.Host+u.Path)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u, nil
}

func cmpOr(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// budgetOr is n, def when n is 0, and 0 (no bound) when n is negative.
func budgetOr(n, def int) int {
	switch {
	case n < 0:
		return 0
	case n == 0:
		return def
	}
	return n
}
