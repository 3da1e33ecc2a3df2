package github

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/github/githubfake"
)

// TestWriteBudget: writes over the per-minute budget are not sent (an
// error says when the next may go); reads go on.
func TestWriteBudget(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, func(o *Options) { o.WritesPerMinute = 3 })
	ctx := testCtx(t)
	n := e.f.OpenPR(testRepo, githubfake.PR{})
	marker := "<!-- m -->"
	id, err := e.c.UpsertComment(ctx, testRepo, n, 0, marker, marker+" v0")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		if _, err := e.c.UpsertComment(ctx, testRepo, n, id, marker, marker+" v"+string(rune('0'+i))); err != nil {
			t.Fatalf("write %d: %v", i+1, err)
		}
	}
	before := e.f.Counters().Mutations
	_, err = e.c.UpsertComment(ctx, testRepo, n, id, marker, marker+" v3")
	var rl *RateLimitedError
	if !errors.As(err, &rl) || rl.sent || rl.Until.Before(time.Now().Add(50*time.Second)) {
		t.Fatalf("fourth write in a minute: %v, want a not-sent rate limit for about a minute", err)
	}
	if e.f.Counters().Mutations != before {
		t.Error("a write over the budget was sent")
	}
	if _, err := e.c.ListOpenPRs(ctx, testRepo); err != nil {
		t.Errorf("reads stopped with the write budget: %v", err)
	}
	// A minute later the budget has room again.
	e.clock.Advance(61 * time.Second)
	if _, err := e.c.UpsertComment(ctx, testRepo, n, id, marker, marker+" v3"); err != nil {
		t.Errorf("after a minute: %v", err)
	}
}

// TestSecondaryLimitOnWritesHoldsWritesOnly: GitHub's secondary limit met
// by a comment write holds writes until Retry-After; listing goes on.
func TestSecondaryLimitOnWritesHoldsWritesOnly(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	ctx := testCtx(t)
	n := e.f.OpenPR(testRepo, githubfake.PR{})
	marker := "<!-- m -->"
	id, err := e.c.UpsertComment(ctx, testRepo, n, 0, marker, marker+" a")
	if err != nil {
		t.Fatal(err)
	}
	e.f.AddFault(githubfake.Fault{Route: githubfake.RouteEditIssueComment, Status: http.StatusForbidden, RetryAfter: 5 * time.Minute, Times: 1})
	if _, err := e.c.UpsertComment(ctx, testRepo, n, id, marker, marker+" b"); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("write met a secondary limit: %v", err)
	}
	sent := e.f.Counters().Requests
	if _, err := e.c.ListOpenPRs(ctx, testRepo); err != nil {
		t.Errorf("a limit on writes stopped reads: %v", err)
	}
	if e.f.Counters().Requests == sent {
		t.Error("the read was not sent")
	}
	writes := e.f.Counters().Mutations
	if _, err := e.c.UpsertComment(ctx, testRepo, n, id, marker, marker+" c"); !errors.Is(err, ErrRateLimited) || e.f.Counters().Mutations != writes {
		t.Errorf("a write during the hold: %v (sent %d)", err, e.f.Counters().Mutations-writes)
	}
}

// TestCommentTurns: queued comment writes go final states first, and each
// renders its body when its turn comes.
func TestCommentTurns(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	ctx := testCtx(t)
	n := e.f.OpenPR(testRepo, githubfake.PR{})
	marker := "<!-- m -->"
	// The first write holds the turn (GitHub is slow to answer it).
	e.f.AddFault(githubfake.Fault{Route: githubfake.RouteCreateIssueComment, Delay: 500 * time.Millisecond, Times: 1})
	var mu sync.Mutex
	var order []string
	state := "deploying"
	write := func(name string, final bool, wg *sync.WaitGroup) {
		defer wg.Done()
		_, _, err := e.c.UpsertCommentLatest(ctx, testRepo, n, marker, final, func() (int64, string, bool) {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, name+"="+state)
			return 0, marker + " " + state, true
		})
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go write("first", true, &wg)
	time.Sleep(100 * time.Millisecond) // first holds the turn
	wg.Add(2)
	go write("passing", false, &wg)
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	state = "ready" // the preview got Ready while its writes waited
	mu.Unlock()
	go write("final", true, &wg)
	wg.Wait()
	if got := strings.Join(order, " "); got != "first=deploying final=ready passing=ready" {
		t.Errorf("turns: %s; want the final write before the passing one, each rendering the state of its turn", got)
	}
}
