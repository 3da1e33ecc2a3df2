package github

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gregjones/httpcache"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/previewd/previewd/github/githubfake"
)

const (
	testAppID          = 4242
	testInstallationID = 77
)

// appEnv is a fake with a GitHub App installed on "acme" and a client that
// authenticates as that installation.
func appEnv(t *testing.T, ghe bool, edit func(*Options)) (*env, []byte) {
	t.Helper()
	pub, keyPEM := rsaKeyPEM(t)
	f := githubfake.NewTestServer(t, githubfake.Options{
		GHEPrefix: ghe,
		App:       &githubfake.App{ID: testAppID, PublicKey: pub, Installations: map[int64]string{testInstallationID: "acme"}},
	})
	e := newEnvFor(t, f, f.APIURL(), func(o *Options) {
		o.Token = ""
		o.App = &AppAuth{AppID: testAppID, InstallationID: testInstallationID, PrivateKey: keyPEM}
		if edit != nil {
			edit(o)
		}
	})
	return e, keyPEM
}

// secretsIn returns every credential the fake knows and the markers of
// headers and JWTs, none of which may appear in errors or logs.
func secretsIn(f *githubfake.Server) []string {
	s := []string{"Bearer ", "Authorization", "eyJ", "ghs_", "PRIVATE KEY"}
	for _, tk := range f.Tokens() {
		s = append(s, tk.Token)
	}
	return s
}

func assertNoSecrets(t *testing.T, what, text string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s contains %q: %s", what, s, text)
		}
	}
}

func TestAppInstallationAuth(t *testing.T) {
	e, keyPEM := appEnv(t, false, nil)
	n := e.f.OpenPR(testRepo, githubfake.PR{})
	ctx := testCtx(t)

	prs, err := e.c.ListOpenPRs(ctx, testRepo)
	if err != nil || len(prs) != 1 {
		t.Fatalf("list as the installation: %v, %v", prs, err)
	}
	if _, err := e.c.ListOpenPRs(ctx, testRepo); err != nil {
		t.Fatal(err)
	}
	cnt := e.f.Counters()
	if cnt.Route(githubfake.RouteCreateInstallationToken, http.StatusCreated) != 1 {
		t.Fatalf("token exchanges = %v, want one 201", cnt.ByRoute[githubfake.RouteCreateInstallationToken])
	}
	if cnt.Route(githubfake.RouteListPulls, http.StatusNotModified) != 1 {
		t.Fatalf("the installation's second poll was not a 304: %v", cnt.ByRoute[githubfake.RouteListPulls])
	}

	// The fake serves no GET /app, so the bot login is unknown: comments
	// are matched by the App that posted them, never a human's quote.
	e.f.AddComment(testRepo, n, "mallory", "quoting "+marker)
	id, err := e.c.UpsertComment(ctx, testRepo, n, 0, marker, marker+"\none")
	if err != nil {
		t.Fatal(err)
	}
	id2, err := e.c.UpsertComment(ctx, testRepo, n, 0, marker, marker+"\ntwo")
	if err != nil || id2 != id {
		t.Fatalf("second upsert without id = %d, %v; want %d", id2, err, id)
	}
	bots := botComments(e.f, n, "previewd[bot]")
	if len(bots) != 1 || !strings.HasSuffix(bots[0].Body, "two") {
		t.Fatalf("bot comments = %+v", bots)
	}
	if !strings.Contains(e.logs.String(), "matching comments by marker and App id") {
		t.Errorf("no warning about the unknown bot login:\n%s", e.logs.String())
	}

	// Errors of every kind carry no credential.
	secrets := secretsIn(e.f)
	var errs []error
	_, err = e.c.GetPR(ctx, testRepo, 404)
	errs = append(errs, err)
	e.f.FailNext(githubfake.RouteListPulls, 3, http.StatusBadGateway, 0)
	_, err = e.c.ListOpenPRs(ctx, testRepo)
	errs = append(errs, err)
	e.f.FailNext(githubfake.RouteGetPull, 1, http.StatusUnprocessableEntity, 0)
	_, err = e.c.GetPR(ctx, testRepo, n)
	errs = append(errs, err)

	// A client with the wrong key: the token exchange fails.
	_, wrongKey := rsaKeyPEM(t)
	bad := newTestClient(t, Options{BaseURL: e.f.APIURL(), App: &AppAuth{AppID: testAppID, InstallationID: testInstallationID, PrivateKey: wrongKey}, Log: e.c.log}, nil)
	_, err = bad.ListOpenPRs(ctx, testRepo)
	if err == nil || errors.Is(err, ErrUnavailable) {
		t.Errorf("wrong key: err = %v, want a permanent error", err)
	}
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil {
			t.Fatal("expected an error")
		}
		assertNoSecrets(t, "error", err.Error(), secrets)
	}
	assertNoSecrets(t, "log", e.logs.String(), secrets)
	assertNoSecrets(t, "log", e.logs.String(), []string{string(keyPEM[40:80])})
}

func TestAppBotLoginOverride(t *testing.T) {
	e, _ := appEnv(t, false, func(o *Options) { o.BotLogin = "previewd[bot]" })
	n := e.f.OpenPR(testRepo, githubfake.PR{})
	ctx := testCtx(t)
	e.f.AddComment(testRepo, n, "previewd[bot]", marker+"\nfrom before")
	id, err := e.c.UpsertComment(ctx, testRepo, n, 0, marker, marker+"\nnow")
	if err != nil {
		t.Fatal(err)
	}
	if cs := e.f.Comments(testRepo, n); len(cs) != 1 || cs[0].ID != id || !strings.HasSuffix(cs[0].Body, "now") {
		t.Fatalf("comments = %+v", cs)
	}
	if strings.Contains(e.logs.String(), "cannot determine") {
		t.Fatalf("warned despite BotLogin:\n%s", e.logs.String())
	}
}

func TestGitHubEnterpriseBaseURL(t *testing.T) {
	t.Run("token", func(t *testing.T) {
		e := newEnv(t, githubfake.Options{GHEPrefix: true}, func(o *Options) {
			o.BaseURL = strings.TrimSuffix(o.BaseURL, "/") // a missing slash is added
		})
		if !strings.HasSuffix(e.f.APIURL(), "/api/v3/") {
			t.Fatalf("fake API URL %s", e.f.APIURL())
		}
		n := e.f.OpenPR(testRepo, githubfake.PR{})
		ctx := testCtx(t)
		for range 2 {
			if prs, err := e.c.ListOpenPRs(ctx, testRepo); err != nil || len(prs) != 1 {
				t.Fatalf("%v, %v", prs, err)
			}
		}
		if _, err := e.c.UpsertComment(ctx, testRepo, n, 0, marker, marker); err != nil {
			t.Fatal(err)
		}
		cnt := e.f.Counters()
		if cnt.Route(githubfake.RouteUnknown, 0) != 0 || cnt.Route(githubfake.RouteListPulls, http.StatusNotModified) != 1 {
			t.Fatalf("by route = %v", cnt.ByRoute)
		}
	})
	t.Run("app", func(t *testing.T) {
		e, _ := appEnv(t, true, nil)
		e.f.OpenPR(testRepo, githubfake.PR{})
		if prs, err := e.c.ListOpenPRs(testCtx(t), testRepo); err != nil || len(prs) != 1 {
			t.Fatalf("%v, %v", prs, err)
		}
		if got := e.f.Counters().Route(githubfake.RouteCreateInstallationToken, http.StatusCreated); got != 1 {
			t.Fatalf("token exchanges under /api/v3/ = %d", got)
		}
	})
}

// recordingCache is a shared backing store that records its keys.
type recordingCache struct {
	mu    sync.Mutex
	items map[string][]byte
	hits  map[string]int
}

func (c *recordingCache) Get(k string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.items[k]
	if ok {
		c.hits[k]++
	}
	return v, ok
}

func (c *recordingCache) Set(k string, v []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.items[k] = v
}

func (c *recordingCache) Delete(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.items, k)
}

var _ httpcache.Cache = (*recordingCache)(nil)

func TestCredentialsDoNotShareCacheEntries(t *testing.T) {
	const otherToken = "ghp_otherTeamToken00000000000000000002"
	shared := &recordingCache{items: map[string][]byte{}, hits: map[string]int{}}
	e := newEnv(t, githubfake.Options{}, func(o *Options) { o.Cache = shared })
	e.f.AddTokenAs(otherToken, "other-bot", 0)
	e.f.OpenPR(testRepo, githubfake.PR{})
	ctx := testCtx(t)
	opts := testOptions(e.f.APIURL(), prometheus.NewRegistry(), &syncBuffer{})
	opts.Token, opts.Cache = otherToken, shared
	other := newTestClient(t, opts, nil)

	for range 2 {
		if _, err := e.c.ListOpenPRs(ctx, testRepo); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := other.ListOpenPRs(ctx, testRepo); err != nil {
		t.Fatal(err)
	}
	byTok := e.f.Counters().ByToken
	if a := byTok[testToken]; a.Charged != 1 || a.NotModified != 1 {
		t.Fatalf("first client: %+v", a)
	}
	if b := byTok[otherToken]; b.Charged != 1 || b.NotModified != 0 {
		t.Fatalf("second client's first request was not a charged 200: %+v", b)
	}

	shared.mu.Lock()
	defer shared.mu.Unlock()
	prefixes := map[string]bool{}
	for k, v := range shared.items {
		i := strings.Index(k, "http")
		if i <= 0 {
			t.Fatalf("key %q has no credential prefix", k)
		}
		prefixes[k[:i]] = true
		for _, s := range []string{testToken, otherToken, "X-Varied-Authorization", "Bearer"} {
			if strings.Contains(k, s) || bytes.Contains(v, []byte(s)) {
				t.Fatalf("cache entry %q holds %q", k, s)
			}
		}
	}
	if len(prefixes) != 2 || len(shared.items) != 2 {
		t.Fatalf("keys = %v, want one per credential", keys(shared.items))
	}
	// Only the first client's second poll found an entry.
	hits := 0
	for _, n := range shared.hits {
		hits += n
	}
	if hits != 1 {
		t.Fatalf("cache hits = %v, want 1", shared.hits)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestLRUCacheIsBounded(t *testing.T) {
	c := NewLRUCache(100)
	c.Set("a", make([]byte, 39)) // 40 bytes with the key
	c.Set("b", make([]byte, 39))
	if _, ok := c.Get("a"); !ok { // a is now the most recent
		t.Fatal("a missing")
	}
	c.Set("c", make([]byte, 39)) // 120 > 100: b goes
	if _, ok := c.Get("b"); ok {
		t.Fatal("b was not evicted")
	}
	if _, ok := c.Get("a"); !ok {
		t.Fatal("a was evicted although recently used")
	}
	if c.Len() != 2 || c.Bytes() != 80 {
		t.Fatalf("len %d bytes %d", c.Len(), c.Bytes())
	}
	c.Set("huge", make([]byte, 200))
	if _, ok := c.Get("huge"); ok || c.Len() != 2 {
		t.Fatal("an entry larger than the cache was stored")
	}
	c.Set("a", make([]byte, 9))
	c.Delete("c")
	if c.Len() != 1 || c.Bytes() != 10 {
		t.Fatalf("len %d bytes %d", c.Len(), c.Bytes())
	}
}

func TestNewValidatesOptions(t *testing.T) {
	_, keyPEM := rsaKeyPEM(t)
	app := &AppAuth{AppID: 1, InstallationID: 2, PrivateKey: keyPEM}
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"no credential", Options{}, "Options.Token"},
		{"both credentials", Options{Token: "t", App: app}, "not both"},
		{"bad scheme", Options{Token: "t", BaseURL: "ftp://example.com/"}, "Options.BaseURL"},
		{"no host", Options{Token: "t", BaseURL: "https:///api/v3/"}, "Options.BaseURL"},
		{"credentials in URL", Options{Token: "t", BaseURL: "https://user:pw@example.com/api/v3/"}, "Options.BaseURL"},
		{"unparsable URL", Options{Token: "t", BaseURL: "https://user:pw@exa mple.com/%zz"}, "Options.BaseURL"},
		{"token with newline inside", Options{Token: "ghp_abc\ndef"}, "Options.Token"},
		{"no app id", Options{App: &AppAuth{InstallationID: 2, PrivateKey: keyPEM}}, "Options.App.AppID"},
		{"no installation id", Options{App: &AppAuth{AppID: 1, PrivateKey: keyPEM}}, "Options.App.InstallationID"},
		{"no key", Options{App: &AppAuth{AppID: 1, InstallationID: 2}}, "Options.App.PrivateKey"},
		{"bad key", Options{App: &AppAuth{AppID: 1, InstallationID: 2, PrivateKey: []byte("-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----\n")}}, "Options.App.PrivateKey"},
		{"negative spacing", Options{Token: "t", MutationSpacing: -time.Second}, "Options.MutationSpacing"},
		{"negative timeout", Options{Token: "t", HTTPTimeout: -time.Second}, "Options.HTTPTimeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.opts)
			if err == nil {
				c.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %s", err, tc.want)
			}
			assertNoSecrets(t, "error", err.Error(), []string{"ghp_abc", "c2VjcmV0", "pw@"})
		})
	}

	// Defaults; a token read from a file keeps its newline.
	c, err := New(Options{Token: "ghp_fromfile\n"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.gh.BaseURL.String() != DefaultBaseURL || c.spacing != DefaultMutationSpacing || c.http.Timeout != DefaultHTTPTimeout {
		t.Fatalf("defaults: %s %s %s", c.gh.BaseURL, c.spacing, c.http.Timeout)
	}
	// A registry takes one client's metrics.
	reg := prometheus.NewRegistry()
	c, err = New(Options{Token: "t", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	c, err = New(Options{Token: "t", Registerer: reg})
	if err == nil {
		c.Close()
		t.Fatal("a second client registered its metrics on the same registry")
	}
	if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok || !strings.Contains(err.Error(), "registering GitHub metrics") {
		t.Fatalf("second client: err = %v, want a wrapped AlreadyRegisteredError", err)
	}

	// A failed New registers nothing.
	reg = prometheus.NewRegistry()
	if c, err := New(Options{App: &AppAuth{InstallationID: 2, PrivateKey: keyPEM}, Registerer: reg}); err == nil {
		c.Close()
		t.Fatal("accepted an App without id")
	}
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "previewd_github_rate_limit_remaining", Help: "taken"}))
	if c, err := New(Options{Token: "t", Registerer: reg}); err == nil {
		c.Close()
		t.Fatal("registered on a registry that has previewd_github_rate_limit_remaining")
	}
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 1 {
		t.Fatalf("registry after failed New: %d families, %v; want only the gauge registered before", len(mfs), err)
	}
}
