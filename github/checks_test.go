package github

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/previewd/previewd/github/githubfake"
)

// testSHA opens a pull request in testRepo and returns its head commit.
func testSHA(t *testing.T, e *env) string {
	t.Helper()
	return e.f.HeadSHA(testRepo, e.f.OpenPR(testRepo, githubfake.PR{}))
}

func TestCommitChecksStates(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	sha := testSHA(t, e)
	ctx := testCtx(t)
	runs := []githubfake.CheckRun{
		{Name: "queued", Status: "queued"},
		{Name: "running", Status: "in_progress", DetailsURL: "https://ci.example.com/running"},
		{Name: "waiting", Status: "waiting"},
		{Name: "ok", Conclusion: "success", DetailsURL: "https://ci.example.com/ok"},
		{Name: "neutral", Conclusion: "neutral"},
		{Name: "skipped", Conclusion: "skipped"},
		{Name: "failed", Conclusion: "failure"},
		{Name: "cancelled", Conclusion: "cancelled"},
		{Name: "timed-out", Conclusion: "timed_out"},
		{Name: "needs-action", Conclusion: "action_required"},
		{Name: "stale", Conclusion: "stale"},
		{Name: "startup", Conclusion: "startup_failure"},
		{Name: "lint", Conclusion: "success"}, // also a status context below
	}
	for _, r := range runs {
		e.f.SetCheckRun(testRepo, sha, r)
	}
	e.f.SetStatus(testRepo, sha, githubfake.Status{State: "pending", Context: "ci/jenkins"})
	e.f.SetStatus(testRepo, sha, githubfake.Status{State: "success", Context: "ci/jenkins", TargetURL: "https://jenkins.example.com/1"})
	e.f.SetStatus(testRepo, sha, githubfake.Status{State: "failure", Context: "security"})
	e.f.SetStatus(testRepo, sha, githubfake.Status{State: "error", Context: "coverage"})
	e.f.SetStatus(testRepo, sha, githubfake.Status{State: "pending", Context: "deploy/preview"})
	e.f.SetStatus(testRepo, sha, githubfake.Status{State: "success", Context: "lint"})

	checks, err := e.c.CommitChecks(ctx, testRepo, sha)
	if err != nil {
		t.Fatal(err)
	}
	// check runs without a details_url link to their page on GitHub.
	for i := range checks {
		if checks[i].Kind == CheckKindRun && strings.Contains(checks[i].URL, "/acme/web/runs/") {
			checks[i].URL = "(html_url)"
		}
	}
	want := []Check{
		{Name: "cancelled", Kind: "check_run", State: "failure", Detail: "cancelled", URL: "(html_url)"},
		{Name: "failed", Kind: "check_run", State: "failure", Detail: "failure", URL: "(html_url)"},
		{Name: "lint", Kind: "check_run", State: "success", Detail: "success", URL: "(html_url)"},
		{Name: "needs-action", Kind: "check_run", State: "failure", Detail: "action_required", URL: "(html_url)"},
		{Name: "neutral", Kind: "check_run", State: "success", Detail: "neutral", URL: "(html_url)"},
		{Name: "ok", Kind: "check_run", State: "success", Detail: "success", URL: "https://ci.example.com/ok"},
		{Name: "queued", Kind: "check_run", State: "queued", Detail: "queued", URL: "(html_url)"},
		{Name: "running", Kind: "check_run", State: "in_progress", Detail: "in_progress", URL: "https://ci.example.com/running"},
		{Name: "skipped", Kind: "check_run", State: "success", Detail: "skipped", URL: "(html_url)"},
		{Name: "stale", Kind: "check_run", State: "failure", Detail: "stale", URL: "(html_url)"},
		{Name: "startup", Kind: "check_run", State: "failure", Detail: "startup_failure", URL: "(html_url)"},
		{Name: "timed-out", Kind: "check_run", State: "failure", Detail: "timed_out", URL: "(html_url)"},
		{Name: "waiting", Kind: "check_run", State: "pending", Detail: "waiting", URL: "(html_url)"},
		{Name: "ci/jenkins", Kind: "status", State: "success", Detail: "success", URL: "https://jenkins.example.com/1"},
		{Name: "coverage", Kind: "status", State: "failure", Detail: "error"},
		{Name: "deploy/preview", Kind: "status", State: "pending", Detail: "pending"},
		{Name: "lint", Kind: "status", State: "success", Detail: "success"},
		{Name: "security", Kind: "status", State: "failure", Detail: "failure"},
	}
	if !reflect.DeepEqual(checks, want) {
		t.Fatalf("checks:\n%s\nwant:\n%s", fmtChecks(checks), fmtChecks(want))
	}
	for _, c := range checks {
		if c.Finished() != (c.State == CheckSuccess || c.State == CheckFailure) {
			t.Errorf("%s: Finished() = %v", c.Name, c.Finished())
		}
	}

	// A commit without any is an empty list, not nil.
	bare := testSHA(t, e)
	if checks, err := e.c.CommitChecks(ctx, testRepo, bare); err != nil || checks == nil || len(checks) != 0 {
		t.Fatalf("commit without checks: %#v, %v", checks, err)
	}
}

func fmtChecks(cs []Check) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "  %+v\n", c)
	}
	return b.String()
}

func TestCommitChecksPagesAndRevalidatesForFree(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	sha := testSHA(t, e)
	ctx := testCtx(t)
	for i := range 150 {
		e.f.SetCheckRun(testRepo, sha, githubfake.CheckRun{Name: fmt.Sprintf("job-%03d", i), Conclusion: "success"})
	}
	e.f.SetStatus(testRepo, sha, githubfake.Status{State: "success", Context: "ci/jenkins"})
	e.f.ResetCounters()
	usedBefore := rateUsed(t, e)

	check := func(poll string) []Check {
		t.Helper()
		checks, err := e.c.CommitChecks(ctx, testRepo, sha)
		if err != nil {
			t.Fatalf("%s: %v", poll, err)
		}
		if len(checks) != 151 || checks[0].Name != "job-000" || checks[149].Name != "job-149" || checks[150].Kind != CheckKindStatus {
			t.Fatalf("%s: %d checks:\n%s", poll, len(checks), fmtChecks(checks))
		}
		return checks
	}
	check("first poll")
	cnt := e.f.Counters()
	if ok := cnt.Route(githubfake.RouteListCheckRuns, http.StatusOK); ok != 2 {
		t.Fatalf("check run pages = %d, want 2", ok)
	}
	if ok := cnt.Route(githubfake.RouteGetCombinedStatus, http.StatusOK); ok != 1 {
		t.Fatalf("combined status pages = %d, want 1", ok)
	}
	if got := rateUsed(t, e) - usedBefore; got != 3 {
		t.Fatalf("first poll used %d of the rate limit, want 3", got)
	}

	// Nothing changed: three 304s, none charged.
	for i := range 5 {
		check(fmt.Sprint("unchanged poll ", i+1))
	}
	cnt = e.f.Counters()
	if nm := cnt.Route(githubfake.RouteListCheckRuns, http.StatusNotModified) + cnt.Route(githubfake.RouteGetCombinedStatus, http.StatusNotModified); nm != 15 {
		t.Fatalf("304s = %d, want 15 (by route %v)", nm, cnt.ByRoute)
	}
	if cnt.Charged != 3 {
		t.Fatalf("charged = %d after unchanged polls, want 3", cnt.Charged)
	}
	if got := rateUsed(t, e) - usedBefore; got != 3 {
		t.Fatalf("unchanged polls used %d of the rate limit, want 3", got)
	}
	if got := requestsMetric(t, e.reg, "not_modified"); got != 15 {
		t.Fatalf("not_modified metric = %v, want 15", got)
	}

	// One check run on page 2 fails: the answer changes, and only that page
	// is paid for.
	e.f.SetCheckRun(testRepo, sha, githubfake.CheckRun{Name: "job-140", Conclusion: "timed_out"})
	checks := check("after a change")
	if c := checks[140]; c.Name != "job-140" || c.State != CheckFailure || c.Detail != "timed_out" {
		t.Fatalf("changed check = %+v", c)
	}
	if got := rateUsed(t, e) - usedBefore; got != 4 {
		t.Fatalf("used %d of the rate limit, want 4 (page 2 only)", got)
	}
	// A status changes.
	e.f.SetStatus(testRepo, sha, githubfake.Status{State: "error", Context: "ci/jenkins"})
	checks = check("after a status")
	if c := checks[150]; c.State != CheckFailure || c.Detail != "error" {
		t.Fatalf("changed status = %+v", c)
	}
	if got := rateUsed(t, e) - usedBefore; got != 5 {
		t.Fatalf("used %d of the rate limit, want 5", got)
	}

	// Unconditional (the periodic resync) pays for every page.
	if _, err := e.c.CommitChecks(Unconditional(ctx), testRepo, sha); err != nil {
		t.Fatal(err)
	}
	if got := rateUsed(t, e) - usedBefore; got != 8 {
		t.Fatalf("used %d of the rate limit after a resync, want 8", got)
	}
}

func rateUsed(t *testing.T, e *env) int {
	t.Helper()
	r, ok := e.f.RateLimit(testToken)
	if !ok {
		t.Fatal("test token unknown")
	}
	return r.Used
}

func TestCommitChecksFailedPageFailsTheWholeList(t *testing.T) {
	pf := &pageFault{suffix: "/check-runs"}
	f, apiURL := newWrappedFake(t, githubfake.Options{}, pf.wrap)
	e := newEnvFor(t, f, apiURL, nil)
	sha := testSHA(t, e)
	for i := range 120 {
		f.SetCheckRun(testRepo, sha, githubfake.CheckRun{Name: fmt.Sprintf("job-%03d", i), Conclusion: "success"})
	}
	ctx := testCtx(t)

	pf.set(3) // the first try and both retries
	checks, err := e.c.CommitChecks(ctx, testRepo, sha)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if checks != nil {
		t.Fatalf("got a partial list of %d checks with the error", len(checks))
	}
	if msg := err.Error(); !strings.Contains(msg, "page 2") || !strings.Contains(msg, "check runs of "+testRepo) || strings.Contains(msg, testToken) {
		t.Errorf("error = %q", msg)
	}
	if got := pf.count(); got != 3 {
		t.Fatalf("page 2 was asked %d times, want 3", got)
	}

	// The combined status failing fails the call too.
	pf.set(0)
	f.FailNext(githubfake.RouteGetCombinedStatus, 3, http.StatusBadGateway, 0)
	if checks, err := e.c.CommitChecks(ctx, testRepo, sha); !errors.Is(err, ErrUnavailable) || checks != nil {
		t.Fatalf("combined status failing: %d checks, %v", len(checks), err)
	}

	// Two 502s, then GitHub recovers: the retries get everything.
	pf.set(2)
	if checks, err := e.c.CommitChecks(ctx, testRepo, sha); err != nil || len(checks) != 120 {
		t.Fatalf("after recovery: %d checks, %v", len(checks), err)
	}
}

// TestCommitChecksChangedWhileListing: a check run added between two pages
// may shift another one off the pages read; the call fails rather than
// return a list that misses it.
func TestCommitChecksChangedWhileListing(t *testing.T) {
	var (
		mu   sync.Mutex
		hook func()
	)
	f, apiURL := newWrappedFake(t, githubfake.Options{}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/check-runs") && r.URL.Query().Get("page") == "2" {
				mu.Lock()
				h := hook
				hook = nil
				mu.Unlock()
				if h != nil {
					h()
				}
			}
			next.ServeHTTP(w, r)
		})
	})
	e := newEnvFor(t, f, apiURL, nil)
	sha := testSHA(t, e)
	for i := range 120 {
		f.SetCheckRun(testRepo, sha, githubfake.CheckRun{Name: fmt.Sprintf("job-%03d", i), Conclusion: "success"})
	}
	ctx := testCtx(t)
	mu.Lock()
	hook = func() { f.AddCheckRun(testRepo, sha, githubfake.CheckRun{Name: "late", Conclusion: "failure"}) }
	mu.Unlock()
	checks, err := e.c.CommitChecks(ctx, testRepo, sha)
	if err == nil || checks != nil || !strings.Contains(err.Error(), "changed while listing") {
		t.Fatalf("changed while listing: %d checks, %v", len(checks), err)
	}
	// The next call sees all of it.
	checks, err = e.c.CommitChecks(ctx, testRepo, sha)
	if err != nil || len(checks) != 121 || checks[120].Name != "late" || checks[120].State != CheckFailure {
		t.Fatalf("next call: %d checks, %v", len(checks), err)
	}
}

func TestCommitChecksRerunKeepsTheNewest(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	sha := testSHA(t, e)
	ctx := testCtx(t)
	e.f.SetCheckRun(testRepo, sha, githubfake.CheckRun{Name: "build", Conclusion: "failure"})
	e.f.SetCheckRun(testRepo, sha, githubfake.CheckRun{Name: "test", Conclusion: "success"})

	get := func() map[string]Check {
		t.Helper()
		checks, err := e.c.CommitChecks(ctx, testRepo, sha)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]Check{}
		for _, c := range checks {
			if _, dup := m[c.Name]; dup {
				t.Fatalf("%s listed twice: %+v", c.Name, checks)
			}
			m[c.Name] = c
		}
		return m
	}
	if c := get()["build"]; c.State != CheckFailure {
		t.Fatalf("build = %+v", c)
	}
	// Re-run: a new run of the same name; GitHub lists both.
	e.f.AddCheckRun(testRepo, sha, githubfake.CheckRun{Name: "build", Status: "in_progress"})
	got := get()
	if c := got["build"]; c.State != CheckInProgress || len(got) != 2 {
		t.Fatalf("after the re-run started: %+v", got)
	}
	e.f.SetCheckRun(testRepo, sha, githubfake.CheckRun{Name: "build", Conclusion: "success"})
	if c := get()["build"]; c.State != CheckSuccess {
		t.Fatalf("after the re-run passed: %+v", c)
	}
	if n := len(e.f.CheckRuns(testRepo, sha)); n != 3 {
		t.Fatalf("fake holds %d runs, want 3 (the failed one stays)", n)
	}
	// A check removed from the commit is gone from the answer.
	e.f.RemoveCheckRuns(testRepo, sha, "test")
	if got := get(); len(got) != 1 || got["build"].State != CheckSuccess {
		t.Fatalf("after removal: %+v", got)
	}
}

func TestCommitChecksInputsAndNotFound(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	sha := testSHA(t, e)
	ctx := testCtx(t)
	e.f.ResetCounters()
	for _, tc := range []struct{ repo, sha string }{
		{"not-a-repo", sha},
		{"acme/web/x", sha},
		{" acme/web", sha},
		{testRepo, ""},
		{testRepo, "main"},
		{testRepo, "abc"},
		{testRepo, sha + "/../x"},
		{testRepo, strings.Repeat("a", 65)},
	} {
		if checks, err := e.c.CommitChecks(ctx, tc.repo, tc.sha); err == nil || checks != nil {
			t.Errorf("CommitChecks(%q, %q) = %v, %v; want an error", tc.repo, tc.sha, checks, err)
		}
	}
	if n := e.f.Counters().Requests; n != 0 {
		t.Fatalf("invalid inputs sent %d requests", n)
	}
	if _, err := e.c.CommitChecks(ctx, "acme/gone", sha); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown repository: %v, want ErrNotFound", err)
	}
	if _, err := e.c.CommitChecks(ctx, testRepo, "0123456789012345678901234567890123456789"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown commit: %v, want ErrNotFound", err)
	}
	if checks, err := e.c.CommitChecks(ctx, testRepo, sha[:12]); err != nil || len(checks) != 0 {
		t.Errorf("abbreviated SHA: %v, %v", checks, err)
	}
}
