package github

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/previewd/previewd/github/githubfake"
)

func TestUnchangedListPollsAreFree304s(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	for i := 1; i <= 3; i++ {
		e.f.OpenPR(testRepo, githubfake.PR{Title: fmt.Sprint("change ", i)})
	}
	ctx := testCtx(t)
	for poll := 1; poll <= 20; poll++ {
		prs, err := e.c.ListOpenPRs(ctx, testRepo)
		if err != nil {
			t.Fatalf("poll %d: %v", poll, err)
		}
		if len(prs) != 3 || prs[0].Number != 3 || prs[2].Number != 1 {
			t.Fatalf("poll %d: %+v", poll, prs)
		}
	}
	cnt := e.f.Counters()
	if got := cnt.Route(githubfake.RouteListPulls, http.StatusOK); got != 1 {
		t.Errorf("200s = %d, want 1", got)
	}
	if got := cnt.Route(githubfake.RouteListPulls, http.StatusNotModified); got != 19 {
		t.Errorf("304s = %d, want 19", got)
	}
	if cnt.Charged != 1 {
		t.Errorf("charged = %d, want 1", cnt.Charged)
	}
	if r, _ := e.f.RateLimit(testToken); r.Used != 1 {
		t.Errorf("rate limit used = %d, want 1", r.Used)
	}
	if got := requestsMetric(t, e.reg, "not_modified"); got != 19 {
		t.Errorf("not_modified = %v, want 19", got)
	}
	if got := requestsMetric(t, e.reg, "ok"); got != 1 {
		t.Errorf("ok = %v, want 1", got)
	}
	if got := metric(t, e.reg, "previewd_github_rate_limit_remaining", ""); got != githubfake.DefaultRateLimit-1 {
		t.Errorf("remaining gauge = %v", got)
	}
}

func TestPushIsSeenOnTheNextPoll(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	n := e.f.OpenPR(testRepo, githubfake.PR{SHA: "1111111111111111111111111111111111111111"})
	e.f.OpenPR(testRepo, githubfake.PR{})
	ctx := testCtx(t)
	if _, err := e.c.ListOpenPRs(ctx, testRepo); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.ListOpenPRs(ctx, testRepo); err != nil { // 304
		t.Fatal(err)
	}
	const pushed = "2222222222222222222222222222222222222222"
	if err := e.f.Push(testRepo, n, pushed); err != nil {
		t.Fatal(err)
	}
	prs, err := e.c.ListOpenPRs(ctx, testRepo)
	if err != nil {
		t.Fatal(err)
	}
	if got := prByNumber(t, prs, n).SHA; got != pushed {
		t.Fatalf("SHA after push = %s, want %s (served from cache despite max-age=60?)", got, pushed)
	}
	cnt := e.f.Counters()
	if cnt.Charged != 2 || cnt.Route(githubfake.RouteListPulls, http.StatusOK) != 2 {
		t.Fatalf("charged = %d, 200s = %d; want 2 and 2", cnt.Charged, cnt.Route(githubfake.RouteListPulls, http.StatusOK))
	}
	// And the new version is what is cached now.
	if prs, err := e.c.ListOpenPRs(ctx, testRepo); err != nil || prByNumber(t, prs, n).SHA != pushed {
		t.Fatalf("poll after push: %v", err)
	}
	if got := e.f.Counters().Charged; got != 2 {
		t.Fatalf("charged = %d after an unchanged poll, want 2", got)
	}
}

func prByNumber(t *testing.T, prs []PR, n int) PR {
	t.Helper()
	for _, p := range prs {
		if p.Number == n {
			return p
		}
	}
	t.Fatalf("PR #%d not in %+v", n, prs)
	return PR{}
}

func TestListFollowsEveryPage(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	for i := 0; i < 250; i++ {
		e.f.OpenPR(testRepo, githubfake.PR{})
	}
	ctx := testCtx(t)
	prs, err := e.c.ListOpenPRs(ctx, testRepo)
	if err != nil {
		t.Fatal(err)
	}
	if len(prs) != 250 {
		t.Fatalf("listed %d PRs, want 250", len(prs))
	}
	for i, p := range prs {
		if p.Number != 250-i {
			t.Fatalf("prs[%d] = #%d, want #%d (newest first)", i, p.Number, 250-i)
		}
	}
	cnt := e.f.Counters()
	if got := cnt.Route(githubfake.RouteListPulls, http.StatusOK); got != 3 {
		t.Fatalf("pages = %d, want 3", got)
	}
	if prs, err := e.c.ListOpenPRs(ctx, testRepo); err != nil || len(prs) != 250 {
		t.Fatalf("second poll: %d PRs, %v", len(prs), err)
	}
	cnt = e.f.Counters()
	if got := cnt.Route(githubfake.RouteListPulls, http.StatusNotModified); got != 3 {
		t.Fatalf("second poll: %d 304s, want 3", got)
	}
	if cnt.Charged != 3 {
		t.Fatalf("charged = %d, want 3", cnt.Charged)
	}
}

// pageFault answers 502 to the next `left` requests for page 2 of a pulls
// list (or of the list whose path ends in suffix); the fake's faults match
// routes, not pages.
type pageFault struct {
	suffix string // "/pulls" when empty
	mu     sync.Mutex
	left   int
	hits   int
}

func (p *pageFault) set(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.left, p.hits = n, 0
}

func (p *pageFault) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits
}

func (p *pageFault) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		suffix := p.suffix
		if suffix == "" {
			suffix = "/pulls"
		}
		if strings.HasSuffix(r.URL.Path, suffix) && r.URL.Query().Get("page") == "2" {
			p.mu.Lock()
			p.hits++
			fail := p.left > 0
			if fail {
				p.left--
			}
			p.mu.Unlock()
			if fail {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadGateway)
				_, _ = w.Write([]byte(`{"message":"Server Error"}`))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func TestFailedPageFailsTheWholeList(t *testing.T) {
	pf := &pageFault{}
	f, apiURL := newWrappedFake(t, githubfake.Options{}, pf.wrap)
	e := newEnvFor(t, f, apiURL, nil)
	for i := 0; i < 150; i++ {
		f.OpenPR(testRepo, githubfake.PR{})
	}
	ctx := testCtx(t)

	pf.set(3) // the first try and both retries
	prs, err := e.c.ListOpenPRs(ctx, testRepo)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if prs != nil {
		t.Fatalf("got a partial list of %d PRs with the error", len(prs))
	}
	if !strings.Contains(err.Error(), "page 2") {
		t.Errorf("error does not say which page: %v", err)
	}
	if got := pf.count(); got != 3 {
		t.Fatalf("page 2 was asked %d times, want 3", got)
	}
	if got := requestsMetric(t, e.reg, "server_error"); got != 3 {
		t.Fatalf("server_error = %v, want 3", got)
	}

	// Two 502s, then GitHub recovers: the retries get the whole list.
	pf.set(2)
	prs, err = e.c.ListOpenPRs(ctx, testRepo)
	if err != nil || len(prs) != 150 {
		t.Fatalf("after recovery: %d PRs, %v", len(prs), err)
	}
	if got := pf.count(); got != 3 {
		t.Fatalf("page 2 was asked %d times, want 3", got)
	}
}

func TestServerErrorsAreRetriedThenUnavailable(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	n := e.f.OpenPR(testRepo, githubfake.PR{})
	ctx := testCtx(t)

	e.f.FailNext(githubfake.RouteListPulls, 2, http.StatusInternalServerError, 0)
	if prs, err := e.c.ListOpenPRs(ctx, testRepo); err != nil || len(prs) != 1 {
		t.Fatalf("after two 500s: %+v, %v", prs, err)
	}

	e.f.FailNext(githubfake.RouteGetPull, 3, http.StatusServiceUnavailable, 0)
	_, err := e.c.GetPR(ctx, testRepo, n)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if got := e.f.Counters().Route(githubfake.RouteGetPull, http.StatusServiceUnavailable); got != 3 {
		t.Fatalf("GET pull sent %d times, want 3", got)
	}
	if _, err := e.c.GetPR(ctx, testRepo, n); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestNetworkErrorsAreUnavailable(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	e.f.OpenPR(testRepo, githubfake.PR{})
	ctx := testCtx(t)

	id := e.f.AddFault(githubfake.Fault{Route: githubfake.RouteListPulls, Drop: true})
	_, err := e.c.ListOpenPRs(ctx, testRepo)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if got := requestsMetric(t, e.reg, "network_error"); got != 3 {
		t.Fatalf("network_error = %v, want 3", got)
	}
	e.f.RemoveFault(id)
	if _, err := e.c.ListOpenPRs(ctx, testRepo); err != nil {
		t.Fatal(err)
	}
}

func TestPRFields(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	ctx := testCtx(t)
	own := e.f.OpenPR(testRepo, githubfake.PR{Title: "Add cart", Branch: "feature/cart", SHA: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Author: "alice", Labels: []string{"preview", "ui"}, Draft: true})
	fork := e.f.OpenPR(testRepo, githubfake.PR{Author: "mallory", FromFork: true})
	gone := e.f.OpenPR(testRepo, githubfake.PR{Author: "eve", ForkDeleted: true})
	merged := e.f.OpenPR(testRepo, githubfake.PR{})
	closed := e.f.OpenPR(testRepo, githubfake.PR{})
	if err := e.f.MergePR(testRepo, merged); err != nil {
		t.Fatal(err)
	}
	if err := e.f.ClosePR(testRepo, closed); err != nil {
		t.Fatal(err)
	}

	prs, err := e.c.ListOpenPRs(ctx, testRepo)
	if err != nil {
		t.Fatal(err)
	}
	if len(prs) != 3 {
		t.Fatalf("open PRs = %+v, want 3", prs)
	}
	p := prByNumber(t, prs, own)
	if p.Title != "Add cart" || p.Branch != "feature/cart" || p.SHA != "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" ||
		p.Author != "alice" || p.State != "open" || !p.Draft || p.Fork || p.ForkDeleted || p.Merged ||
		strings.Join(p.Labels, ",") != "preview,ui" || !strings.HasSuffix(p.HTMLURL, "/acme/web/pull/1") {
		t.Errorf("own PR = %+v", p)
	}
	if p := prByNumber(t, prs, fork); !p.Fork || p.ForkDeleted || p.Author != "mallory" || p.SHA != e.f.HeadSHA(testRepo, fork) {
		t.Errorf("fork PR = %+v", p)
	}
	if p := prByNumber(t, prs, gone); !p.Fork || !p.ForkDeleted {
		t.Errorf("PR from a deleted fork = %+v", p)
	}

	p, err = e.c.GetPR(ctx, testRepo, merged)
	if err != nil || p.State != "closed" || !p.Merged {
		t.Errorf("merged PR = %+v, %v", p, err)
	}
	p, err = e.c.GetPR(ctx, testRepo, closed)
	if err != nil || p.State != "closed" || p.Merged {
		t.Errorf("closed PR = %+v, %v", p, err)
	}
	p, err = e.c.GetPR(ctx, testRepo, fork)
	if err != nil || p.State != "open" || !p.Fork {
		t.Errorf("GetPR of the fork PR = %+v, %v", p, err)
	}
	if err := e.f.DeleteFork(testRepo, fork); err != nil {
		t.Fatal(err)
	}
	if p, err = e.c.GetPR(ctx, testRepo, fork); err != nil || !p.ForkDeleted {
		t.Errorf("after the fork was deleted = %+v, %v", p, err)
	}

	_, err = e.c.GetPR(ctx, testRepo, 999)
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) {
		t.Errorf("missing PR: err = %v, want ErrNotFound", err)
	}
	_, err = e.c.ListOpenPRs(ctx, "acme/gone")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("missing repository: err = %v, want ErrNotFound", err)
	}
	if _, err := e.c.ListOpenPRs(ctx, "not-a-repo"); err == nil {
		t.Error("a repository without owner/ was accepted")
	}
	if prs, err := e.c.ListOpenPRs(ctx, "acme/empty"); !errors.Is(err, ErrNotFound) || prs != nil {
		t.Errorf("unknown repository: %v, %v", prs, err)
	}
	e.f.AddRepo("acme/empty")
	if prs, err := e.c.ListOpenPRs(ctx, "acme/empty"); err != nil || prs == nil || len(prs) != 0 {
		t.Errorf("repository without PRs: %#v, %v", prs, err)
	}
}

func TestNextPage(t *testing.T) {
	cases := map[string]int{
		``: 0,
		`<https://api.github.com/repositories/1/pulls?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/pulls?per_page=100&page=3>; rel="last"`: 2,
		`<https://x/y?page=1>; rel="prev", <https://x/y?page=3>; rel="next"`:                                                                                           3,
		`<https://x/y?page=1>; rel="prev", <https://x/y?page=1>; rel="first"`:                                                                                          0,
	}
	for link, want := range cases {
		if got, err := nextPage(link); err != nil || got != want {
			t.Errorf("nextPage(%q) = %d, %v; want %d", link, got, err, want)
		}
	}
	if _, err := nextPage(`<https://x/y?after=abc>; rel="next"`); err == nil {
		t.Error("a next link without a page number was accepted")
	}
}

func TestUnconditionalResyncIsChargedAndRefreshesTheCache(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	e.f.OpenPR(testRepo, githubfake.PR{Title: "one"})
	ctx := testCtx(t)
	for i := 0; i < 2; i++ {
		if _, err := e.c.ListOpenPRs(ctx, testRepo); err != nil {
			t.Fatal(err)
		}
	}
	if prs, err := e.c.ListOpenPRs(Unconditional(ctx), testRepo); err != nil || len(prs) != 1 {
		t.Fatalf("resync: %v %v", prs, err)
	}
	if _, err := e.c.ListOpenPRs(ctx, testRepo); err != nil {
		t.Fatal(err)
	}
	cnt := e.f.Counters()
	if ok, nm := cnt.Route(githubfake.RouteListPulls, http.StatusOK), cnt.Route(githubfake.RouteListPulls, http.StatusNotModified); ok != 2 || nm != 2 {
		t.Errorf("200s = %d, 304s = %d; want 2 full answers (first poll, resync) and 2 revalidations", ok, nm)
	}
}
