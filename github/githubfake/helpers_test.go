package githubfake_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-github/v66/github"
	"github.com/gregjones/httpcache"
	"go.uber.org/goleak"

	"github.com/previewd/previewd/github/githubfake"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	tok   = "ghp_previewd_test_token"
	other = "ghp_other_token"
	bot   = "previewd[bot]"
	repo  = "acme/shop"
	owner = "acme"
	name  = "shop"
)

// tokenTransport adds the Authorization header, below the cache.
type tokenTransport struct {
	token string
	base  http.RoundTripper
}

func (t *tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "token "+t.token)
	return t.base.RoundTrip(r)
}

// revalidate rewrites GitHub's "max-age=60" to "no-cache" below the cache, so
// that httpcache asks GitHub (conditionally) on every request instead of
// answering from memory for 60 s.
type revalidate struct{ base http.RoundTripper }

func (t revalidate) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err == nil {
		resp.Header.Set("Cache-Control", "no-cache")
	}
	return resp, err
}

// drainOnClose reads a response body to EOF when it is closed. It sits above
// httpcache, which stores a response only when its body reaches EOF:
// go-github's JSON decoder stops after the closing bracket, so with a chunked
// body (any large list) the EOF is never read and nothing would be cached,
// making every poll a charged 200. previewd's transport needs the same.
type drainOnClose struct{ base http.RoundTripper }

func (t drainOnClose) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err == nil {
		resp.Body = drainingBody{resp.Body}
	}
	return resp, err
}

type drainingBody struct{ io.ReadCloser }

func (b drainingBody) Close() error {
	_, _ = io.Copy(io.Discard, io.LimitReader(b.ReadCloser, 64<<20))
	return b.ReadCloser.Close()
}

type clientMode int

const (
	revalidating clientMode = iota // httpcache over revalidate over token
	cachedPlain                    // httpcache over token: honours max-age=60
	uncached                       // token only
)

func transport(t testing.TB, tk string, mode clientMode) http.RoundTripper {
	t.Helper()
	base := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(base.CloseIdleConnections)
	var rt http.RoundTripper = &tokenTransport{token: tk, base: base}
	switch mode {
	case revalidating:
		ct := httpcache.NewTransport(httpcache.NewMemoryCache())
		ct.Transport = revalidate{base: rt}
		rt = drainOnClose{base: ct}
	case cachedPlain:
		ct := httpcache.NewTransport(httpcache.NewMemoryCache())
		ct.Transport = rt
		rt = drainOnClose{base: ct}
	}
	return rt
}

func newClient(t testing.TB, f *githubfake.Server, tk string, mode clientMode) *github.Client {
	t.Helper()
	c := github.NewClient(&http.Client{Transport: transport(t, tk, mode)})
	u, err := url.Parse(f.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	c.BaseURL = u
	return c
}

func newFake(t testing.TB, opts githubfake.Options) *githubfake.Server {
	t.Helper()
	f := githubfake.NewTestServer(t, opts)
	f.AddTokenAs(tok, bot, 0)
	return f
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func openPRs(t testing.TB, f *githubfake.Server, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		f.OpenPR(repo, githubfake.PR{Title: fmt.Sprintf("change %d", i), Branch: fmt.Sprintf("feature-%d", i)})
	}
}

func listOpen(ctx context.Context, gh *github.Client, perPage, page int) ([]*github.PullRequest, *github.Response, error) {
	return gh.PullRequests.List(ctx, owner, name, &github.PullRequestListOptions{
		State: "open", ListOptions: github.ListOptions{PerPage: perPage, Page: page},
	})
}

// rawGet does one GET with a token (none when empty) and extra headers.
func rawGet(t testing.TB, u, tk string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tk != "" {
		req.Header.Set("Authorization", "Bearer "+tk)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func errorResponse(t testing.TB, err error, status int) *github.ErrorResponse {
	t.Helper()
	var er *github.ErrorResponse
	if !errors.As(err, &er) {
		t.Fatalf("error = %T %v, want *github.ErrorResponse", err, err)
	}
	if er.Response.StatusCode != status {
		t.Fatalf("status = %d, want %d (%v)", er.Response.StatusCode, status, err)
	}
	return er
}

func remaining(t testing.TB, f *githubfake.Server, tk string) int {
	t.Helper()
	r, ok := f.RateLimit(tk)
	if !ok {
		t.Fatalf("token %q unknown", tk)
	}
	return r.Remaining
}
