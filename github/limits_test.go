package github

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/github/githubfake"
)

func rateLimited(t *testing.T, err error) *RateLimitedError {
	t.Helper()
	if !errors.Is(err, ErrRateLimited) {
		t.Fatalf("err = %v, want ErrRateLimited", err)
	}
	rl, ok := errors.AsType[*RateLimitedError](err)
	if !ok {
		t.Fatalf("err = %T %v, want a *RateLimitedError in the chain", err, err)
	}
	if !strings.Contains(err.Error(), "until "+rl.Until.UTC().Format(time.RFC3339)) {
		t.Errorf("error does not say until when: %v", err)
	}
	return rl
}

func TestSecondaryRateLimitHoldsEveryCall(t *testing.T) {
	for _, status := range []int{http.StatusTooManyRequests, http.StatusForbidden} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			e := newEnv(t, githubfake.Options{}, nil)
			n := e.f.OpenPR(testRepo, githubfake.PR{})
			ctx := testCtx(t)

			e.f.FailNext(githubfake.RouteListPulls, 1, status, 2*time.Second)
			start := e.clock.Now()
			_, err := e.c.ListOpenPRs(ctx, testRepo)
			rl := rateLimited(t, err)
			if !rl.Secondary || rl.Until.Before(start.Add(2*time.Second)) || rl.Until.After(start.Add(3*time.Second)) {
				t.Fatalf("held until %s (secondary %v), want 2 s after %s", rl.Until, rl.Secondary, start)
			}
			if got := requestsMetric(t, e.reg, "rate_limited"); got != 1 {
				t.Fatalf("rate_limited = %v, want 1", got)
			}

			// Within the window nothing is sent, reads or mutations.
			before := e.f.Counters().Requests
			_, err = e.c.GetPR(ctx, testRepo, n)
			rateLimited(t, err)
			_, err = e.c.ListOpenPRs(ctx, testRepo)
			rateLimited(t, err)
			_, err = e.c.UpsertComment(ctx, testRepo, n, 0, "<!-- m -->", "<!-- m -->\nhi")
			rateLimited(t, err)
			_, _, _, err = e.c.RateLimit(ctx)
			rateLimited(t, err)
			if got := e.f.Counters().Requests; got != before {
				t.Fatalf("%d requests sent while held", got-before)
			}

			e.clock.Advance(2*time.Second + 100*time.Millisecond)
			if prs, err := e.c.ListOpenPRs(ctx, testRepo); err != nil || len(prs) != 1 {
				t.Fatalf("after the window: %v, %v", prs, err)
			}
		})
	}
}

func TestSecondaryRateLimitWithoutRetryAfterHoldsAMinute(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	e.f.OpenPR(testRepo, githubfake.PR{})
	e.f.FailNext(githubfake.RouteListPulls, 1, http.StatusTooManyRequests, 0)
	start := e.clock.Now()
	_, err := e.c.ListOpenPRs(testCtx(t), testRepo)
	rl := rateLimited(t, err)
	if d := rl.Until.Sub(start); d < DefaultRetryAfter || d > DefaultRetryAfter+time.Second {
		t.Fatalf("held for %s, want %s", d, DefaultRetryAfter)
	}
}

func TestPrimaryRateLimitHoldsUntilReset(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	e.f.OpenPR(testRepo, githubfake.PR{})
	ctx := testCtx(t)
	if _, err := e.c.ListOpenPRs(ctx, testRepo); err != nil {
		t.Fatal(err)
	}
	if err := e.f.SetRateRemaining(testToken, 0); err != nil {
		t.Fatal(err)
	}
	_, err := e.c.ListOpenPRs(ctx, testRepo)
	rl := rateLimited(t, err)
	r, _ := e.f.RateLimit(testToken)
	if rl.Secondary || !rl.Until.Equal(r.Reset) {
		t.Fatalf("held until %s (secondary %v), want the reset %s", rl.Until, rl.Secondary, r.Reset)
	}
	if got := requestsMetric(t, e.reg, "rate_limited"); got != 1 {
		t.Fatalf("rate_limited = %v, want 1", got)
	}
	if got := metric(t, e.reg, "previewd_github_rate_limit_remaining", ""); got != 0 {
		t.Fatalf("remaining gauge = %v, want 0", got)
	}

	before := e.f.Counters().Requests
	for range 5 {
		_, err := e.c.ListOpenPRs(ctx, testRepo)
		rateLimited(t, err)
	}
	if got := e.f.Counters().Requests; got != before {
		t.Fatalf("%d requests sent while held", got-before)
	}

	// The window passes (and GitHub's bucket refills).
	if err := e.f.SetRateRemaining(testToken, 100); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Until(r.Reset) + time.Second)
	if _, err := e.c.ListOpenPRs(ctx, testRepo); err != nil {
		t.Fatalf("after the reset: %v", err)
	}
}

func TestMutationRetriedOnceAfterShortRetryAfter(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	n := e.f.OpenPR(testRepo, githubfake.PR{})
	ctx := testCtx(t)
	e.f.FailNext(githubfake.RouteCreateIssueComment, 1, http.StatusTooManyRequests, time.Second)
	start := time.Now()
	id, err := e.c.UpsertComment(ctx, testRepo, n, 0, "<!-- m -->", "<!-- m -->\nhello")
	if err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("retried after %s, before Retry-After", waited)
	}
	cnt := e.f.Counters()
	if cnt.Route(githubfake.RouteCreateIssueComment, http.StatusTooManyRequests) != 1 || cnt.Route(githubfake.RouteCreateIssueComment, http.StatusCreated) != 1 {
		t.Fatalf("POSTs = %v", cnt.ByRoute[githubfake.RouteCreateIssueComment])
	}
	if cs := e.f.Comments(testRepo, n); len(cs) != 1 || cs[0].ID != id {
		t.Fatalf("comments = %+v", cs)
	}
}

func TestMutationNotRetriedAfterLongRetryAfter(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	n := e.f.OpenPR(testRepo, githubfake.PR{})
	ctx := testCtx(t)
	e.f.FailNext(githubfake.RouteCreateIssueComment, 1, http.StatusTooManyRequests, 30*time.Second)
	start := time.Now()
	_, err := e.c.UpsertComment(ctx, testRepo, n, 0, "<!-- m -->", "<!-- m -->\nhello")
	rl := rateLimited(t, err)
	if !rl.Secondary || time.Since(start) > 5*time.Second {
		t.Fatalf("secondary %v after %s", rl.Secondary, time.Since(start))
	}
	if got := e.f.Counters().Route(githubfake.RouteCreateIssueComment, 0); got != 1 {
		t.Fatalf("POSTs = %d, want 1", got)
	}
	if cs := e.f.Comments(testRepo, n); len(cs) != 0 {
		t.Fatalf("comments = %+v", cs)
	}
}

func TestMutationsAreSerializedAndSpaced(t *testing.T) {
	const spacing = 150 * time.Millisecond
	e := newEnv(t, githubfake.Options{}, func(o *Options) { o.MutationSpacing = spacing; o.BotLogin = botLogin })
	var prs []int
	for range 4 {
		prs = append(prs, e.f.OpenPR(testRepo, githubfake.PR{}))
	}
	e.f.SetLatency(20 * time.Millisecond)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, len(prs))
	for _, n := range prs {
		wg.Go(func() {
			_, err := e.c.UpsertComment(ctx, testRepo, n, 0, "<!-- m -->", "<!-- m -->\nhi")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var times []time.Time
	for _, r := range e.f.Requests() {
		if r.Method == http.MethodPost {
			times = append(times, r.Time)
		}
	}
	if len(times) != len(prs) {
		t.Fatalf("%d POSTs, want %d", len(times), len(prs))
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < spacing {
			t.Errorf("mutations %d and %d only %s apart, want >= %s", i-1, i, gap, spacing)
		}
	}
}

func TestCancelledContextIsNotUnavailable(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	e.f.OpenPR(testRepo, githubfake.PR{})
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	_, err := e.c.ListOpenPRs(ctx, testRepo)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, githubfake.Options{RateLimit: 1000}, nil)
	e.f.OpenPR(testRepo, githubfake.PR{})
	ctx := testCtx(t)
	if _, err := e.c.ListOpenPRs(ctx, testRepo); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		remaining, limit, reset, err := e.c.RateLimit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if remaining != 999 || limit != 1000 || time.Until(reset) < 50*time.Minute {
			t.Fatalf("rate limit = %d/%d reset %s", remaining, limit, reset)
		}
	}
	if got := e.f.Counters().Charged; got != 1 {
		t.Fatalf("charged = %d, want 1 (GET /rate_limit is free)", got)
	}
}
