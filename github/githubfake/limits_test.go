package githubfake_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-github/v66/github"

	"github.com/previewd/previewd/github/githubfake"
)

func TestSecondaryLimit429IsPlainErrorResponse(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 1)
	gh := newClient(t, f, tok, revalidating)
	c := ctx(t)
	f.FailNext(githubfake.RouteListPulls, 1, http.StatusTooManyRequests, 30*time.Second)

	_, _, err := listOpen(c, gh, 100, 0)
	er := errorResponse(t, err, http.StatusTooManyRequests)
	if got := er.Response.Header.Get("Retry-After"); got != "30" {
		t.Fatalf("Retry-After = %q", got)
	}
	var rle *github.RateLimitError
	var are *github.AbuseRateLimitError
	if errors.As(err, &rle) || errors.As(err, &are) {
		t.Fatalf("go-github v66 maps a 429 to a plain ErrorResponse, got %T", err)
	}
	if er.Message == "" || er.DocumentationURL == "" {
		t.Fatalf("error body = %+v", er)
	}
	if got := remaining(t, f, tok); got != githubfake.DefaultRateLimit {
		t.Fatalf("a fault was charged: remaining %d", got)
	}
	if _, _, err := listOpen(c, gh, 100, 0); err != nil {
		t.Fatalf("after the fault was used up: %v", err)
	}
	cs := f.Counters()
	if cs.Route(githubfake.RouteListPulls, 429) != 1 || cs.Route(githubfake.RouteListPulls, 200) != 1 {
		t.Fatalf("by route = %v", cs.ByRoute)
	}
}

func TestSecondaryLimit403IsAbuseRateLimitError(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 1)
	gh := newClient(t, f, tok, uncached)
	f.FailNext("*", 1, http.StatusForbidden, 2*time.Second)
	_, _, err := gh.PullRequests.Get(ctx(t), owner, name, 1)
	var are *github.AbuseRateLimitError
	if !errors.As(err, &are) {
		t.Fatalf("error = %T %v, want *github.AbuseRateLimitError", err, err)
	}
	if are.RetryAfter == nil || *are.RetryAfter != 2*time.Second {
		t.Fatalf("RetryAfter = %v", are.RetryAfter)
	}
}

func TestServerErrors(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 1)
	gh := newClient(t, f, tok, uncached)
	c := ctx(t)
	for _, status := range []int{500, 502, 503} {
		f.FailNext(githubfake.RouteGetPull, 1, status, 0)
		_, _, err := gh.PullRequests.Get(c, owner, name, 1)
		if er := errorResponse(t, err, status); er.Response.Header.Get("Retry-After") != "" {
			t.Fatalf("%d: unexpected Retry-After", status)
		}
	}
	if _, _, err := gh.PullRequests.Get(c, owner, name, 1); err != nil {
		t.Fatal(err)
	}
}

func TestPrimaryRateLimit(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	f.AddToken(other, 2)
	openPRs(t, f, 1)
	gh := newClient(t, f, other, revalidating)
	c := ctx(t)
	for i := 0; i < 2; i++ {
		if err := f.Push(repo, 1, "sha"+string(rune('a'+i))); err != nil { // a 200 every time
			t.Fatal(err)
		}
		if _, _, err := listOpen(c, gh, 100, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got := remaining(t, f, other); got != 0 {
		t.Fatalf("remaining = %d", got)
	}
	// A fresh client asks and gets the 403 (gh itself would not even ask: it
	// remembers Remaining 0 until the reset).
	_, _, err := listOpen(c, newClient(t, f, other, uncached), 100, 0)
	var rle *github.RateLimitError
	if !errors.As(err, &rle) {
		t.Fatalf("error = %T %v, want *github.RateLimitError", err, err)
	}
	if rle.Response.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("403 headers = %v", rle.Response.Header)
	}
	if _, _, err := listOpen(c, gh, 100, 0); !errors.As(err, &rle) {
		t.Fatalf("go-github's own pre-check: %T %v", err, err)
	}
	if rle.Rate.Limit != 2 || rle.Rate.Remaining != 0 || rle.Rate.Reset.Before(time.Now()) {
		t.Fatalf("rate = %+v", rle.Rate)
	}
	if got := f.Counters().Route(githubfake.RouteListPulls, http.StatusForbidden); got != 1 {
		t.Fatalf("403s = %d", got)
	}
	// Other tokens have their own bucket.
	if _, _, err := listOpen(c, newClient(t, f, tok, uncached), 100, 0); err != nil {
		t.Fatal(err)
	}
	// SetRateRemaining exhausts a bucket without spending it.
	if err := f.SetRateRemaining(tok, 0); err != nil {
		t.Fatal(err)
	}
	_, _, err = listOpen(c, newClient(t, f, tok, uncached), 100, 0)
	if !errors.As(err, &rle) {
		t.Fatalf("error = %T %v, want *github.RateLimitError", err, err)
	}
}

func TestBadCredentials(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 1)
	_, _, err := listOpen(ctx(t), newClient(t, f, "ghp_unknown", uncached), 100, 0)
	if er := errorResponse(t, err, http.StatusUnauthorized); er.Message != "Bad credentials" {
		t.Fatalf("message = %q", er.Message)
	}
	if resp, _ := rawGet(t, f.APIURL()+"repos/acme/shop/pulls", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
	f.RevokeToken(tok)
	_, _, err = listOpen(ctx(t), newClient(t, f, tok, uncached), 100, 0)
	errorResponse(t, err, http.StatusUnauthorized)
	if cs := f.Counters(); cs.Route(githubfake.RouteListPulls, 401) != 3 || cs.Charged != 0 {
		t.Fatalf("counters = %+v", cs)
	}
}

func TestRateLimitEndpointIsFree(t *testing.T) {
	f := newFake(t, githubfake.Options{RateLimit: 15000})
	gh := newClient(t, f, tok, uncached)
	c := ctx(t)
	for i := 0; i < 3; i++ {
		rl, _, err := gh.RateLimit.Get(c)
		if err != nil {
			t.Fatal(err)
		}
		if core := rl.GetCore(); core.Limit != 15000 || core.Remaining != 15000 {
			t.Fatalf("core = %+v", core)
		}
	}
	if cs := f.Counters(); cs.Charged != 0 || cs.Route(githubfake.RouteRateLimit, 200) != 3 {
		t.Fatalf("counters = %+v", cs)
	}
	_, _, err := gh.Users.Get(c, "")
	if err != nil {
		t.Fatal(err)
	}
	rl, _, err := gh.RateLimit.Get(c)
	if err != nil || rl.GetCore().Remaining != 14999 {
		t.Fatalf("after one request: %+v %v", rl.GetCore(), err)
	}
}
