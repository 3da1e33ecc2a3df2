package githubfake_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-github/v66/github"

	"github.com/previewd/previewd/github/githubfake"
)

func TestHangUntilClientTimeout(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 1)
	gh := newClient(t, f, tok, uncached)
	f.HangNext(githubfake.RouteGetPull, 1)

	start := time.Now()
	c, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, _, err := gh.PullRequests.Get(c, owner, name, 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want the client's deadline", err)
	}
	if time.Since(start) < 200*time.Millisecond {
		t.Fatal("answered before the deadline")
	}
	if _, _, err := gh.PullRequests.Get(ctx(t), owner, name, 1); err != nil {
		t.Fatalf("after the hang: %v", err)
	}
	// The hung request is counted as unanswered once the server notices the
	// client left.
	deadline := time.Now().Add(5 * time.Second)
	for f.Counters().ByRoute[githubfake.RouteGetPull][0] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("by route = %v", f.Counters().ByRoute)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHangReleasedByClose(t *testing.T) {
	f := githubfake.NewTestServer(t, githubfake.Options{})
	f.AddToken(tok, 0)
	f.HangNext("*", 1)
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, f.APIURL()+"rate_limit", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	for len(f.Faults()) != 0 { // the hang has been taken
		time.Sleep(5 * time.Millisecond)
	}
	f.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not release a hanging request")
	}
}

func TestLatencyAndDrop(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 1)
	gh := newClient(t, f, tok, uncached)
	c := ctx(t)

	f.SetLatency(100 * time.Millisecond)
	start := time.Now()
	if _, _, err := gh.PullRequests.Get(c, owner, name, 1); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("latency not applied: %v", d)
	}
	f.SetLatency(0)

	// Times 0: Go's transport retries a GET once when a reused connection
	// drops, so a single drop would go unnoticed.
	id := f.AddFault(githubfake.Fault{Route: githubfake.RouteGetPull, Drop: true})
	_, _, err := gh.PullRequests.Get(c, owner, name, 1)
	var er *github.ErrorResponse
	if err == nil || errors.As(err, &er) {
		t.Fatalf("dropped connection: %v, want a transport error", err)
	}
	f.RemoveFault(id)
	if _, _, err := gh.PullRequests.Get(c, owner, name, 1); err != nil {
		t.Fatal(err)
	}

	// A fault with a delay and no status answers normally, late.
	f.AddFault(githubfake.Fault{Route: "/repos/{owner}/{repo}/pulls/{number}", Delay: 50 * time.Millisecond, Times: 1})
	start = time.Now()
	if _, _, err := gh.PullRequests.Get(c, owner, name, 1); err != nil || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("delayed: %v after %v", err, time.Since(start))
	}
}

func TestFaultMatching(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 1)
	f.OpenPR("acme/other", githubfake.PR{})
	gh := newClient(t, f, tok, uncached)
	c := ctx(t)

	id := f.AddFault(githubfake.Fault{Route: githubfake.RouteListPulls, Repo: "ACME/other", Status: 503})
	for i := 0; i < 3; i++ { // Times 0: until removed
		_, _, err := gh.PullRequests.List(c, "acme", "other", nil)
		errorResponse(t, err, http.StatusServiceUnavailable)
		if _, _, err := listOpen(c, gh, 100, 0); err != nil {
			t.Fatalf("other repository affected: %v", err)
		}
	}
	if _, _, err := gh.PullRequests.Get(c, "acme", "other", 1); err != nil {
		t.Fatalf("other route affected: %v", err)
	}
	f.RemoveFault(id)
	if _, _, err := gh.PullRequests.List(c, "acme", "other", nil); err != nil {
		t.Fatal(err)
	}

	// Faults apply in order; each use counts down.
	f.FailNext("*", 1, 500, 0)
	f.FailNext("*", 1, 502, 0)
	_, _, err := listOpen(c, gh, 100, 0)
	errorResponse(t, err, 500)
	_, _, err = listOpen(c, gh, 100, 0)
	errorResponse(t, err, 502)
	if len(f.Faults()) != 0 {
		t.Fatalf("faults left: %v", f.Faults())
	}
	f.FailNext("*", 5, 500, 0)
	f.ClearFaults()
	if _, _, err := listOpen(c, gh, 100, 0); err != nil {
		t.Fatal(err)
	}
	var faulted int
	for _, r := range f.Requests() {
		if r.Fault {
			faulted++
		}
	}
	if faulted != 5 {
		t.Fatalf("journal has %d faulted requests, want 5", faulted)
	}
}

// The fake is used by a polling daemon and a test at once: run every kind of
// request concurrently under -race.
func TestConcurrentUse(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 10)
	c := ctx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gh := newClient(t, f, tok, revalidating)
			for i := 0; i < 20; i++ {
				if _, _, err := listOpen(c, gh, 5, 1+i%2); err != nil {
					errs <- err
					return
				}
				if _, _, err := gh.Issues.CreateComment(c, owner, name, 1+i%10, &github.IssueComment{Body: github.String("hi")}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 40; i++ {
			if err := f.Push(repo, 1+i%10, fmt.Sprintf("%040d", i)); err != nil {
				errs <- err
				return
			}
			_ = f.SetLabels(repo, 1+i%10, "preview")
			f.Counters()
			f.Requests()
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := f.Counters().Route(githubfake.RouteCreateIssueComment, http.StatusCreated); n != 80 {
		t.Fatalf("%d comments created", n)
	}
}
