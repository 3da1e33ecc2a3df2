package state

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestLeaderElection(t *testing.T) {
	a, url := newStore(t)
	b := open(t, url)
	ctx := context.Background()
	la, err := a.TryLead(ctx, "default", 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.TryLead(ctx, "default", 100*time.Millisecond); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("second process: %v, want ErrNotLeader", err)
	}
	// Another instance has its own leader.
	lo, err := b.TryLead(ctx, "other", 100*time.Millisecond)
	if err != nil {
		t.Fatalf("other instance: %v", err)
	}
	lo.Release(ctx)

	// The leader's session dies (a crash, a network cut): it notices, and
	// the standby takes over.
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted`); err != nil {
		t.Fatal(err)
	}
	select {
	case <-la.Lost():
		t.Logf("old leader noticed: %v", la.Err())
	case <-time.After(5 * time.Second):
		t.Fatal("the old leader did not notice it lost the lock")
	}
	la.Release(ctx)
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	lb, err := b.Lead(wctx, "default", 100*time.Millisecond)
	if err != nil {
		t.Fatalf("standby did not take over: %v", err)
	}
	t.Logf("standby took over after %s", time.Since(start).Round(time.Millisecond))
	lb.Release(ctx)
	// Released cleanly: free again at once.
	lc, err := a.TryLead(ctx, "default", 100*time.Millisecond)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	lc.Release(ctx)
}
