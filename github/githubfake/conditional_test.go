package githubfake_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gregjones/httpcache"

	"github.com/previewd/previewd/github/githubfake"
)

func TestUnchangedListRevalidatesWith304NotCharged(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 3)
	gh := newClient(t, f, tok, revalidating)
	c := ctx(t)

	prs, resp, err := listOpen(c, gh, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(prs) != 3 || resp.Header.Get("X-From-Cache") != "" {
		t.Fatalf("first list: %d PRs, X-From-Cache %q", len(prs), resp.Header.Get("X-From-Cache"))
	}
	before := remaining(t, f, tok)
	if before != githubfake.DefaultRateLimit-1 {
		t.Fatalf("remaining after one request = %d", before)
	}

	prs, resp, err = listOpen(c, gh, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(prs) != 3 || prs[0].GetNumber() != 3 {
		t.Fatalf("second list from cache: %d PRs, first #%d", len(prs), prs[0].GetNumber())
	}
	if resp.Header.Get("X-From-Cache") != "1" {
		t.Fatal("second list was not answered from the revalidated cache")
	}
	if got := remaining(t, f, tok); got != before {
		t.Fatalf("a 304 was charged: remaining %d → %d", before, got)
	}
	// The 304's rate limit headers reach the client through the cache.
	if got := resp.Header.Get("X-RateLimit-Remaining"); got != "4999" {
		t.Fatalf("X-RateLimit-Remaining on the 304 = %q", got)
	}

	cs := f.Counters()
	if cs.Route(githubfake.RouteListPulls, http.StatusOK) != 1 || cs.Route(githubfake.RouteListPulls, http.StatusNotModified) != 1 {
		t.Fatalf("by route = %v", cs.ByRoute)
	}
	if cs.Charged != 1 || cs.NotModified != 1 || cs.Requests != 2 {
		t.Fatalf("counters = %+v", cs)
	}
	if bt := cs.ByToken[tok]; bt.Requests != 2 || bt.Charged != 1 || bt.NotModified != 1 {
		t.Fatalf("by token = %+v", bt)
	}
}

// httpcache honours GitHub's max-age=60: without rewriting the response
// headers, a second poll never reaches GitHub. A request header
// "Cache-Control: max-age=0" also forces revalidation ("no-cache" on the
// request does not: httpcache then sends no validators and pays a 200).
func TestHTTPCacheAnswersFromMemoryUnlessForced(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 2)
	client := &http.Client{Transport: transport(t, tok, cachedPlain)}
	u := f.APIURL() + "repos/acme/shop/pulls?per_page=100"
	get := func(hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body) // httpcache stores at EOF
		resp.Body.Close()
		return resp
	}

	get()
	resp := get()
	if resp.Header.Get(httpcache.XFromCache) != "1" || f.Counters().Requests != 1 {
		t.Fatalf("fresh cache hit expected; server saw %d requests", f.Counters().Requests)
	}
	get("Cache-Control", "max-age=0")
	if n := f.Counters().Route(githubfake.RouteListPulls, http.StatusNotModified); n != 1 {
		t.Fatalf("max-age=0: 304s = %d, want 1", n)
	}
	get("Cache-Control", "no-cache")
	if n := f.Counters().Route(githubfake.RouteListPulls, http.StatusOK); n != 2 {
		t.Fatalf("no-cache: 200s = %d, want 2", n)
	}
}

func TestCacheHeadersOnGET(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 1)
	resp, _ := rawGet(t, f.APIURL()+"repos/acme/shop/pulls", tok)
	want := map[string]string{
		"Cache-Control":        "private, max-age=60, s-maxage=60",
		"Vary":                 "Accept, Authorization, Cookie, X-GitHub-OTP",
		"X-RateLimit-Limit":    "5000",
		"X-RateLimit-Used":     "1",
		"X-RateLimit-Resource": "core",
		"Content-Type":         "application/json; charset=utf-8",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	etag := resp.Header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, "W/") {
		t.Errorf("ETag %q is not strong", etag)
	}
	if resp.Header.Get("Last-Modified") == "" || resp.Header.Get("X-RateLimit-Reset") == "" {
		t.Error("Last-Modified or X-RateLimit-Reset missing")
	}
}

func TestETagCoversAuthorization(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	f.AddToken(other, 0)
	openPRs(t, f, 2)
	u := f.APIURL() + "repos/acme/shop/pulls"

	a, bodyA := rawGet(t, u, tok)
	b, bodyB := rawGet(t, u, other)
	if string(bodyA) != string(bodyB) {
		t.Fatal("bodies differ between tokens")
	}
	etagA, etagB := a.Header.Get("ETag"), b.Header.Get("ETag")
	if etagA == etagB {
		t.Fatalf("same ETag %s for two tokens", etagA)
	}
	if resp, _ := rawGet(t, u, other, "If-None-Match", etagA); resp.StatusCode != http.StatusOK {
		t.Fatalf("other token with the first token's ETag: %d, want 200", resp.StatusCode)
	}
	resp, body := rawGet(t, u, tok, "If-None-Match", etagA)
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Fatalf("same token: %d with %d bytes, want 304 without body", resp.StatusCode, len(body))
	}
	// A weak form of the same validator matches too (weak comparison).
	if resp, _ := rawGet(t, u, tok, "If-None-Match", "W/"+etagA); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("weak validator: %d, want 304", resp.StatusCode)
	}
	// Without If-None-Match, If-Modified-Since is honoured.
	if resp, _ := rawGet(t, u, tok, "If-Modified-Since", a.Header.Get("Last-Modified")); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-Modified-Since: %d, want 304", resp.StatusCode)
	}
	if err := f.Push(repo, 1, "1111111111111111111111111111111111111111"); err != nil {
		t.Fatal(err)
	}
	if resp, _ := rawGet(t, u, tok, "If-Modified-Since", a.Header.Get("Last-Modified")); resp.StatusCode != http.StatusOK {
		t.Fatalf("If-Modified-Since after a push: %d, want 200", resp.StatusCode)
	}
}

func TestPushChangesETagOfEveryPage(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 3)
	gh := newClient(t, f, tok, revalidating)
	c := ctx(t)
	pollBoth := func() (statuses []int, pushedAt string) {
		t.Helper()
		f.ResetCounters()
		for page := 1; page <= 2; page++ {
			prs, _, err := listOpen(c, gh, 2, page)
			if err != nil {
				t.Fatal(err)
			}
			pushedAt = prs[0].GetBase().GetRepo().GetPushedAt().String()
		}
		cs := f.Counters()
		return []int{cs.Route(githubfake.RouteListPulls, 200), cs.Route(githubfake.RouteListPulls, 304)}, pushedAt
	}

	pollBoth()
	if got, _ := pollBoth(); got[0] != 0 || got[1] != 2 {
		t.Fatalf("unchanged: 200s/304s = %v, want [0 2]", got)
	}

	// A push to one PR changes its page...
	if err := f.Push(repo, 3, "2222222222222222222222222222222222222222"); err != nil {
		t.Fatal(err)
	}
	prs, _, err := listOpen(c, gh, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if prs[0].GetHead().GetSHA() != "2222222222222222222222222222222222222222" {
		t.Fatalf("head sha after push = %s", prs[0].GetHead().GetSHA())
	}

	// ...and every page, through base.repo.pushed_at, as does a push to a
	// branch that has no pull request.
	_, at1 := pollBoth()
	f.PushBranch(repo, "main", "3333333333333333333333333333333333333333")
	got, at2 := pollBoth()
	if got[0] != 2 || got[1] != 0 {
		t.Fatalf("after a push to main: 200s/304s = %v, want [2 0]", got)
	}
	if at1 == at2 {
		t.Fatalf("base.repo.pushed_at did not move: %s", at1)
	}
}
