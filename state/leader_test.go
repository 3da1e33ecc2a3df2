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
	// Only this test's lock: other packages' tests share the server.
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND ((classid::bigint << 32) | objid::bigint) = $1`, leaderKey("default")); err != nil {
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
	lb, err := b.Lead(wctx, "default", 100*time.Millisecond, nil)
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

// TestExpiredLeaseIsBroken: a leader that stops renewing its lease (frozen:
// here, a check interval longer than the test) keeps its session and the
// lock; a standby ends that session once the lease is LeaseDuration old
// and leads.
func TestExpiredLeaseIsBroken(t *testing.T) {
	a, url := newStore(t)
	b := open(t, url)
	ctx := context.Background()
	la, err := a.TryLead(ctx, "frozen", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if pid, _, err := b.BreakExpiredLease(ctx, "frozen"); err != nil || pid != 0 {
		t.Fatalf("a fresh lease was broken: pid %d, %v", pid, err)
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 3*LeaseDuration)
	defer cancel()
	lb, err := b.Lead(wctx, "frozen", 200*time.Millisecond, nil)
	if err != nil {
		t.Fatalf("standby did not take over from a frozen leader: %v", err)
	}
	took := time.Since(start)
	t.Logf("standby took over from a frozen leader after %s", took.Round(time.Millisecond))
	if took < LeaseDuration-time.Second {
		t.Errorf("took over after %s, before the %s lease expired", took, LeaseDuration)
	}
	if _, err := la.conn.Exec(ctx, `SELECT 1`); err == nil {
		t.Error("the frozen leader's session is still alive")
	}
	lb.Release(ctx)
	la.Release(ctx)
}
