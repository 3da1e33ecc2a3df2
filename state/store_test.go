package state

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/previewd/previewd/internal/harness/pgtest"
	"github.com/previewd/previewd/migrations"
	"github.com/previewd/previewd/reconcile/model"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

// open opens a store on url and closes it at the end of the test.
func open(t *testing.T, url string) *Store {
	t.Helper()
	s, err := Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// newStore returns a migrated store on a fresh database, and its URL.
func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	url := pgtest.URL(t)
	s := open(t, url)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s, url
}

func get(t *testing.T, s *Store, key model.Key) model.Preview {
	t.Helper()
	p, ok, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatalf("preview %s not found", key)
	}
	return p
}

func mustObserve(t *testing.T, s *Store, key model.Key, sha string, now time.Time) model.Preview {
	t.Helper()
	p, err := s.RecordOpen(t.Context(), key, model.Open{Namespace: "ns-" + fmt.Sprint(key.Number), Branch: "branch", Title: "title", SHA: sha, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustStart(t *testing.T, s *Store, key model.Key, sha string, now time.Time) int {
	t.Helper()
	n, err := s.StartAttempt(t.Context(), key, sha, now)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

type appliedMigration struct {
	Version   int
	AppliedAt time.Time
}

func applied(t *testing.T, s *Store) []appliedMigration {
	t.Helper()
	rows, err := s.pool.Query(t.Context(), `SELECT version, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := pgx.CollectRows(rows, pgx.RowToStructByPos[appliedMigration])
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestMigrateTwiceIsNoop(t *testing.T) {
	s, _ := newStore(t)
	all, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	first := applied(t, s)
	if len(first) != len(all) {
		t.Fatalf("applied %d migrations, want %d", len(first), len(all))
	}
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	second := applied(t, s)
	if fmt.Sprint(first) != fmt.Sprint(second) {
		t.Errorf("second Migrate changed schema_migrations:\n%v\n%v", first, second)
	}
}

func TestConcurrentMigrate(t *testing.T) {
	url := pgtest.URL(t)
	stores := []*Store{open(t, url), open(t, url), open(t, url)}
	var wg sync.WaitGroup
	errs := make([]error, len(stores))
	for i, s := range stores {
		wg.Go(func() { errs[i] = s.Migrate(t.Context()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			// 0001_init.sql uses plain CREATE TABLE: a second run would fail.
			t.Errorf("Migrate of store %d: %v", i, err)
		}
	}
	all, _ := migrations.All()
	if got := applied(t, stores[0]); len(got) != len(all) {
		t.Errorf("schema_migrations has %d rows, want %d", len(got), len(all))
	}
	if _, err := stores[1].RecordOpen(t.Context(), model.Key{Repo: "o/r", Number: 1}, model.Open{Namespace: "ns", Branch: "b", Title: "t", SHA: "a", Now: t0}); err != nil {
		t.Errorf("schema not usable: %v", err)
	}
}

func TestFailedMigrationRollsBack(t *testing.T) {
	s := open(t, pgtest.URL(t))
	ms := []migrations.Migration{
		{Version: 1, Name: "0001_a.sql", SQL: `CREATE TABLE a (x int);`},
		{Version: 2, Name: "0002_b.sql", SQL: `CREATE TABLE b (x int); SELECT no_such_column FROM a;`},
	}
	err := s.migrate(t.Context(), ms)
	if err == nil || !strings.Contains(err.Error(), "0002_b.sql") {
		t.Fatalf("err = %v, want a failure naming 0002_b.sql", err)
	}
	if got := applied(t, s); len(got) != 1 || got[0].Version != 1 {
		t.Errorf("applied = %v, want only version 1", got)
	}
	var b *string
	if err := s.pool.QueryRow(t.Context(), `SELECT to_regclass('b')::text`).Scan(&b); err != nil {
		t.Fatal(err)
	}
	if b != nil {
		t.Error("table b of the failed migration exists")
	}
	ms[1].SQL = `CREATE TABLE b (x int); SELECT x FROM a;`
	if err := s.migrate(t.Context(), ms); err != nil {
		t.Fatalf("after fixing the migration: %v", err)
	}
	if got := applied(t, s); len(got) != 2 {
		t.Errorf("applied = %v, want versions 1 and 2", got)
	}
}

func TestObserveStartFinishReady(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	key := model.Key{Repo: "acme/web", Number: 7}

	p := mustObserve(t, s, key, "aaa", at(0))
	if p.Status != model.StatusPending || p.DesiredSHA != "aaa" || !p.SHAFirstSeenAt.Equal(at(0)) ||
		p.Namespace != "ns-7" || p.Attempts != 0 || p.CreatedAt.IsZero() {
		t.Fatalf("after first Observe: %+v", p)
	}
	again := mustObserve(t, s, key, "aaa", at(30))
	if again != p {
		t.Errorf("repeated Observe changed the row:\n%+v\n%+v", p, again)
	}
	if _, err := s.RecordOpen(ctx, key, model.Open{Namespace: "other-ns", Branch: "branch2", Title: "title2", SHA: "aaa", Now: at(31)}); err != nil {
		t.Fatal(err)
	}
	p = get(t, s, key)
	if p.Branch != "branch2" || p.Title != "title2" || p.Namespace != "ns-7" || !p.SHAFirstSeenAt.Equal(at(0)) {
		t.Errorf("after title change: %+v", p)
	}

	n := mustStart(t, s, key, "aaa", at(40))
	if n != 1 {
		t.Errorf("attempt = %d, want 1", n)
	}
	p = get(t, s, key)
	if p.Status != model.StatusDeploying || p.Attempts != 0 || !p.DeployStartedAt.Equal(at(40)) {
		t.Errorf("after StartAttempt (Attempts counts failures only): %+v", p)
	}
	if err := s.FinishAttempt(ctx, key, "aaa", 1, model.Finish{Outcome: model.OutcomeReady}, at(70)); err != nil {
		t.Fatal(err)
	}
	p = get(t, s, key)
	if p.Status != model.StatusReady || p.DeployedSHA != "aaa" || !p.ReadyAt.Equal(at(70)) || p.LastError != "" {
		t.Errorf("after FinishAttempt: %+v", p)
	}
	if latency := p.ReadyAt.Sub(p.SHAFirstSeenAt); latency != 70*time.Second {
		t.Errorf("deploy latency = %v, want 70s", latency)
	}
	as, err := s.Attempts(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	want := []model.Attempt{{SHA: "aaa", Attempt: 1, StartedAt: at(40), FinishedAt: at(70), Outcome: model.OutcomeReady}}
	if !equalAttempts(as, want) {
		t.Errorf("attempts = %+v, want %+v", as, want)
	}
	if err := s.FinishAttempt(ctx, key, "aaa", 1, model.Finish{Outcome: model.OutcomeReady}, at(71)); !errors.Is(err, model.ErrStale) {
		t.Errorf("finishing twice: err = %v, want model.ErrStale", err)
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Key() != key {
		t.Errorf("List = %+v", list)
	}
}

func equalAttempts(a, b []model.Attempt) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.SHA != y.SHA || x.Attempt != y.Attempt || !x.StartedAt.Equal(y.StartedAt) ||
			!x.FinishedAt.Equal(y.FinishedAt) || x.Outcome != y.Outcome || x.Error != y.Error {
			return false
		}
	}
	return true
}

func TestNewSHAMidDeployMakesOldFinishStale(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	key := model.Key{Repo: "acme/web", Number: 8}
	mustObserve(t, s, key, "aaa", at(0))
	mustStart(t, s, key, "aaa", at(1))

	p := mustObserve(t, s, key, "bbb", at(10))
	if p.Status != model.StatusPending || p.DesiredSHA != "bbb" || p.Attempts != 0 || !p.SHAFirstSeenAt.Equal(at(10)) {
		t.Fatalf("after new SHA: %+v", p)
	}
	err := s.FinishAttempt(ctx, key, "aaa", 1, model.Finish{Outcome: model.OutcomeReady}, at(20))
	if !errors.Is(err, model.ErrStale) {
		t.Fatalf("finishing the old deploy: err = %v, want model.ErrStale", err)
	}
	p = get(t, s, key)
	if p.Status != model.StatusPending || p.DeployedSHA != "" || !p.ReadyAt.IsZero() {
		t.Errorf("stale finish changed the preview: %+v", p)
	}
	as, _ := s.Attempts(ctx, key)
	if len(as) != 1 || as[0].Outcome != model.OutcomeReady || !as[0].FinishedAt.Equal(at(20)) {
		t.Errorf("the old attempt was not recorded: %+v", as)
	}
	if _, err := s.StartAttempt(ctx, key, "aaa", at(21)); !errors.Is(err, model.ErrStale) {
		t.Errorf("starting the old SHA: err = %v, want model.ErrStale", err)
	}
	if n := mustStart(t, s, key, "bbb", at(22)); n != 1 {
		t.Errorf("first attempt of bbb = %d", n)
	}
	if err := s.FinishAttempt(ctx, key, "bbb", 1, model.Finish{Outcome: model.OutcomeReady}, at(30)); err != nil {
		t.Fatal(err)
	}
	if p := get(t, s, key); p.Status != model.StatusReady || p.DeployedSHA != "bbb" {
		t.Errorf("after deploying bbb: %+v", p)
	}

	// Back to aaa: its attempt numbers continue; Attempts restarts.
	mustObserve(t, s, key, "aaa", at(40))
	if n := mustStart(t, s, key, "aaa", at(41)); n != 2 {
		t.Errorf("attempt of aaa after returning to it = %d, want 2", n)
	}
	if p := get(t, s, key); p.Attempts != 0 {
		t.Errorf("Attempts = %d, want 0 (the budget restarts; nothing failed yet)", p.Attempts)
	}
}

func TestOlderObservationDoesNotMoveSHABack(t *testing.T) {
	s, _ := newStore(t)
	key := model.Key{Repo: "acme/web", Number: 9}
	mustObserve(t, s, key, "new", at(10))
	p := mustObserve(t, s, key, "old", at(5))
	if p.DesiredSHA != "new" || !p.SHAFirstSeenAt.Equal(at(10)) {
		t.Errorf("older observation moved the SHA: %+v", p)
	}
}

func TestRetries(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	key := model.Key{Repo: "acme/web", Number: 10}
	mustObserve(t, s, key, "aaa", at(0))

	mustStart(t, s, key, "aaa", at(1))
	if err := s.FinishAttempt(ctx, key, "aaa", 1, model.Finish{Outcome: model.OutcomeFailed, Error: "image pull backoff", NextAttemptAt: at(62)}, at(2)); err != nil {
		t.Fatal(err)
	}
	p := get(t, s, key)
	if p.Status != model.StatusFailed || p.LastError != "image pull backoff" || !p.NextAttemptAt.Equal(at(62)) || p.Attempts != 1 {
		t.Errorf("after first failure: %+v", p)
	}
	if n := mustStart(t, s, key, "aaa", at(62)); n != 2 {
		t.Errorf("second attempt = %d", n)
	}
	p = get(t, s, key)
	if p.Status != model.StatusDeploying || !p.NextAttemptAt.IsZero() || p.Attempts != 1 {
		t.Errorf("after second start: %+v", p)
	}
	if err := s.FinishAttempt(ctx, key, "aaa", 2, model.Finish{Outcome: model.OutcomeFailed, Error: "crash loop"}, at(70)); err != nil {
		t.Fatal(err)
	}
	p = get(t, s, key)
	if p.Status != model.StatusFailed || p.LastError != "crash loop" || !p.NextAttemptAt.IsZero() || p.Attempts != 2 {
		t.Errorf("after giving up: %+v", p)
	}
	// A push resets the retry budget.
	p = mustObserve(t, s, key, "bbb", at(80))
	if p.Status != model.StatusPending || p.Attempts != 0 || p.LastError != "" || !p.NextAttemptAt.IsZero() {
		t.Errorf("after new SHA: %+v", p)
	}
	as, _ := s.Attempts(ctx, key)
	if len(as) != 2 || as[0].Error != "image pull backoff" || as[1].Outcome != model.OutcomeFailed {
		t.Errorf("attempts = %+v", as)
	}
}

func TestCancelledAttemptReturnsToPending(t *testing.T) {
	s, _ := newStore(t)
	key := model.Key{Repo: "acme/web", Number: 11}
	mustObserve(t, s, key, "aaa", at(0))
	mustStart(t, s, key, "aaa", at(1))
	if err := s.FinishAttempt(t.Context(), key, "aaa", 1, model.Finish{Outcome: model.OutcomeCancelled, Error: "shutting down"}, at(2)); err != nil {
		t.Fatal(err)
	}
	if p := get(t, s, key); p.Status != model.StatusPending {
		t.Errorf("status = %s, want pending", p.Status)
	}
	if err := s.FinishAttempt(t.Context(), key, "aaa", 1, model.Finish{Outcome: "exploded"}, at(2)); err == nil {
		t.Error("unknown outcome accepted")
	}
}

func TestStartAttemptSupersedesOpenAttempt(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	key := model.Key{Repo: "acme/web", Number: 12}
	mustObserve(t, s, key, "aaa", at(0))
	mustStart(t, s, key, "aaa", at(1))
	// previewd crashed mid-deploy; after the restart the deploy starts again.
	if n := mustStart(t, s, key, "aaa", at(100)); n != 2 {
		t.Fatalf("attempt = %d, want 2", n)
	}
	as, _ := s.Attempts(ctx, key)
	if len(as) != 2 || as[0].Outcome != model.OutcomeCancelled || !as[0].FinishedAt.Equal(at(100)) ||
		!strings.Contains(as[0].Error, "superseded") || as[1].Outcome != "" {
		t.Fatalf("attempts = %+v", as)
	}
	if err := s.FinishAttempt(ctx, key, "aaa", 1, model.Finish{Outcome: model.OutcomeReady}, at(101)); !errors.Is(err, model.ErrStale) {
		t.Errorf("finishing the superseded attempt: err = %v, want model.ErrStale", err)
	}
	if p := get(t, s, key); p.Status != model.StatusDeploying {
		t.Errorf("superseded finish changed status to %s", p.Status)
	}
	if err := s.FinishAttempt(ctx, key, "aaa", 3, model.Finish{Outcome: model.OutcomeReady}, at(101)); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("finishing an unknown attempt: err = %v, want model.ErrNotFound", err)
	}
	if err := s.FinishAttempt(ctx, key, "aaa", 2, model.Finish{Outcome: model.OutcomeReady}, at(102)); err != nil {
		t.Fatal(err)
	}
}

func TestCloseAndReopen(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	key := model.Key{Repo: "acme/web", Number: 13}
	mustObserve(t, s, key, "aaa", at(0))
	mustStart(t, s, key, "aaa", at(1))
	if err := s.FinishAttempt(ctx, key, "aaa", 1, model.Finish{Outcome: model.OutcomeReady}, at(2)); err != nil {
		t.Fatal(err)
	}
	mustStart(t, s, key, "aaa", at(3)) // a redeploy is in flight when the PR closes

	if err := s.MarkDeleted(ctx, key, at(9)); !errors.Is(err, model.ErrStale) {
		t.Errorf("MarkDeleted of a live preview: err = %v, want model.ErrStale", err)
	}
	if err := s.MarkDeleting(ctx, key, at(10)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDeleting(ctx, key, at(11)); err != nil {
		t.Fatalf("MarkDeleting again: %v", err)
	}
	p := get(t, s, key)
	if p.Status != model.StatusDeleting || !p.ClosedAt.Equal(at(10)) {
		t.Errorf("after MarkDeleting: %+v", p)
	}
	as, _ := s.Attempts(ctx, key)
	if len(as) != 2 || as[1].Outcome != model.OutcomeCancelled || !as[1].FinishedAt.Equal(at(10)) {
		t.Errorf("in-flight attempt not cancelled: %+v", as)
	}
	if err := s.FinishAttempt(ctx, key, "aaa", 2, model.Finish{Outcome: model.OutcomeReady}, at(12)); !errors.Is(err, model.ErrStale) {
		t.Errorf("finishing after close: err = %v, want model.ErrStale", err)
	}
	if _, err := s.StartAttempt(ctx, key, "aaa", at(12)); !errors.Is(err, model.ErrStale) {
		t.Errorf("starting after close: err = %v, want model.ErrStale", err)
	}
	if list, _ := s.List(ctx); len(list) != 1 {
		t.Errorf("deleting preview missing from List: %+v", list)
	}
	if err := s.MarkDeleted(ctx, key, at(20)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDeleted(ctx, key, at(21)); err != nil {
		t.Fatalf("MarkDeleted again: %v", err)
	}
	p = get(t, s, key)
	if p.Status != model.StatusDeleted || p.DeployedSHA != "" || !p.ReadyAt.IsZero() {
		t.Errorf("after MarkDeleted: %+v", p)
	}
	if list, _ := s.List(ctx); len(list) != 0 {
		t.Errorf("List includes deleted previews: %+v", list)
	}

	// An observation from before the close does not revive.
	p, err := s.RecordOpen(ctx, key, model.Open{Namespace: "ns-new", Branch: "branch", Title: "title", SHA: "aaa", Now: at(5)})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != model.StatusDeleted {
		t.Errorf("stale observation revived the preview: %+v", p)
	}
	// Reopened.
	p, err = s.RecordOpen(ctx, key, model.Open{Namespace: "ns-new", Branch: "branch", Title: "title", SHA: "aaa", Now: at(30)})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != model.StatusPending || p.Namespace != "ns-new" || p.Attempts != 0 || !p.ClosedAt.IsZero() ||
		!p.SHAFirstSeenAt.Equal(at(30)) || p.DeployedSHA != "" {
		t.Errorf("after reopen: %+v", p)
	}
	if n := mustStart(t, s, key, "aaa", at(31)); n != 3 {
		t.Errorf("attempt after reopen = %d, want 3", n)
	}
	if err := s.MarkDeleted(ctx, key, at(32)); !errors.Is(err, model.ErrStale) {
		t.Errorf("MarkDeleted after reopen: err = %v, want model.ErrStale", err)
	}
}

func TestCommentAndError(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	key := model.Key{Repo: "acme/web", Number: 14}
	mustObserve(t, s, key, "aaa", at(0))
	if err := s.SetComment(ctx, key, 123456789012, "h1"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetError(ctx, key, "namespace acme-web-14 exists and is not owned by previewd"); err != nil {
		t.Fatal(err)
	}
	p := get(t, s, key)
	if p.CommentID != 123456789012 || p.CommentHash != "h1" || !strings.Contains(p.LastError, "not owned") ||
		p.Status != model.StatusPending {
		t.Errorf("got %+v", p)
	}
	if err := s.SetComment(ctx, key, 0, ""); err != nil {
		t.Fatal(err)
	}
	if p := get(t, s, key); p.CommentID != 0 {
		t.Errorf("CommentID = %d after reset", p.CommentID)
	}
}

func TestNotFound(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	key := model.Key{Repo: "acme/web", Number: 404}
	if _, ok, err := s.Get(ctx, key); ok || err != nil {
		t.Errorf("Get: ok=%v err=%v", ok, err)
	}
	errs := map[string]error{
		"StartAttempt":  func() error { _, err := s.StartAttempt(ctx, key, "a", t0); return err }(),
		"FinishAttempt": s.FinishAttempt(ctx, key, "a", 1, model.Finish{Outcome: model.OutcomeReady}, t0),
		"MarkDeleting":  s.MarkDeleting(ctx, key, t0),
		"MarkDeleted":   s.MarkDeleted(ctx, key, t0),
		"SetError":      s.SetError(ctx, key, "x"),
		"SetComment":    s.SetComment(ctx, key, 1, "h"),
		"Attempts":      func() error { _, err := s.Attempts(ctx, key); return err }(),
	}
	for name, err := range errs {
		if !errors.Is(err, model.ErrNotFound) {
			t.Errorf("%s: err = %v, want model.ErrNotFound", name, err)
		} else if !strings.Contains(err.Error(), "acme/web#404") {
			t.Errorf("%s: error %q does not name the PR", name, err)
		}
	}
	if _, err := s.RecordOpen(ctx, key, model.Open{Namespace: "ns", Branch: "b", Title: "t", SHA: "", Now: t0}); err == nil {
		t.Error("Observe accepted an empty SHA")
	}
	mustObserve(t, s, key, "a", t0)
	if as, err := s.Attempts(ctx, key); err != nil || len(as) != 0 {
		t.Errorf("Attempts of a PR without deploys = %v, %v", as, err)
	}
}

// TestRacingWriters runs several previewd processes (separate pools) that
// observe, deploy and finish the same PR at once, with pushes in between.
func TestRacingWriters(t *testing.T) {
	_, url := newStore(t)
	key := model.Key{Repo: "acme/web", Number: 15}
	const writers, cycles = 3, 25
	sha := func(cycle int) string { return fmt.Sprintf("sha%02d", cycle/5) } // a push every 5 cycles
	var wg sync.WaitGroup
	errc := make(chan error, writers*cycles)
	for w := range writers {
		s := open(t, url)
		wg.Go(func() {
			ctx := t.Context()
			for c := range cycles {
				now := at(c)
				if _, err := s.RecordOpen(ctx, key, model.Open{Namespace: "ns", Branch: "b", Title: "t", SHA: sha(c), Now: now}); err != nil {
					errc <- err
					continue
				}
				n, err := s.StartAttempt(ctx, key, sha(c), now)
				if errors.Is(err, model.ErrStale) {
					continue
				}
				if err != nil {
					errc <- err
					continue
				}
				outcome := model.OutcomeReady
				if (w+c)%3 == 0 {
					outcome = model.OutcomeFailed
				}
				err = s.FinishAttempt(ctx, key, sha(c), n, model.Finish{Outcome: outcome, Error: "boom"}, now.Add(time.Millisecond))
				if err != nil && !errors.Is(err, model.ErrStale) {
					errc <- err
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}

	s := open(t, url)
	var rows int
	if err := s.pool.QueryRow(t.Context(), `SELECT count(*) FROM previews`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Fatalf("%d rows for one PR", rows)
	}
	p := get(t, s, key)
	if p.DesiredSHA != sha(cycles-1) {
		t.Errorf("desired SHA = %s, want the newest %s", p.DesiredSHA, sha(cycles-1))
	}
	as, err := s.Attempts(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	perSHA, failed := map[string]int{}, map[string]int{}
	for _, a := range as {
		perSHA[a.SHA]++
		switch a.Outcome {
		case model.OutcomeFailed:
			failed[a.SHA]++
		case model.OutcomeReady: // a Ready restores the budget
			failed[a.SHA] = 0
		}
		if a.Attempt != perSHA[a.SHA] {
			t.Errorf("attempt %+v: numbers of %s are not 1, 2, ... in order", a, a.SHA)
		}
		if a.FinishedAt.IsZero() {
			t.Errorf("attempt %+v still open after every writer finished", a)
		}
	}
	if p.Attempts != failed[p.DesiredSHA] {
		t.Errorf("Attempts = %d, but %d failed attempts of %s recorded since its last Ready", p.Attempts, failed[p.DesiredSHA], p.DesiredSHA)
	}
	if p.Status == model.StatusDeploying {
		t.Errorf("status deploying with no attempt in flight: %+v", p)
	}
	if p.Status == model.StatusReady && p.DeployedSHA != p.DesiredSHA {
		t.Errorf("ready at %s but %s desired", p.DeployedSHA, p.DesiredSHA)
	}
	if len(as) == 0 {
		t.Error("no attempt was made")
	}
	t.Logf("%d attempts, final %s at %s", len(as), p.Status, p.DesiredSHA)
}

func TestConnectionLossIsAnError(t *testing.T) {
	s, url := newStore(t)
	ctx := t.Context()
	key := model.Key{Repo: "acme/web", Number: 16}
	mustObserve(t, s, key, "aaa", at(0))
	cache := s.HTTPCache(ctx, HTTPCacheOptions{})
	cache.Set("k", []byte("v"))

	// Fill the pool with idle connections, then kill them all.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { _, _, _ = s.Get(ctx, key) })
	}
	wg.Wait()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var killed int
	err = admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&killed)
	if err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatal("no backend to terminate")
	}

	failures := 0
	for i := range 10 {
		_, _, err := s.Get(ctx, key)
		if err == nil {
			break
		}
		failures++
		if !strings.Contains(err.Error(), "getting preview") {
			t.Errorf("call %d: unwrapped error %v", i, err)
		}
	}
	if failures == 10 {
		t.Fatal("the store did not recover from lost connections")
	}
	t.Logf("killed %d backends; %d calls failed before the pool reconnected", killed, failures)
	if _, err := s.StartAttempt(ctx, key, "aaa", at(1)); err != nil {
		t.Errorf("after reconnect: %v", err)
	}
	if v, ok := cache.Get("k"); !ok || string(v) != "v" {
		// One more try: the cache may have drawn a dead connection.
		if v, ok := cache.Get("k"); !ok || string(v) != "v" {
			t.Errorf("cache after reconnect: %q, %v", v, ok)
		}
	}

	s.Close()
	if _, _, err := s.Get(ctx, key); err == nil {
		t.Error("Get on a closed store succeeded")
	}
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping on a closed store succeeded")
	}
}

// TestLostConnectionsAreReplacedBeforeUse: after PostgreSQL dropped every
// session (a restart), the next calls get live connections: the dead idle
// ones are replaced on acquire, not handed out to fail one call each.
func TestLostConnectionsAreReplacedBeforeUse(t *testing.T) {
	s, url := newStore(t)
	ctx := t.Context()
	key := model.Key{Repo: "acme/web", Number: 17}
	mustObserve(t, s, key, "aaa", at(0))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { _, _, _ = s.Get(ctx, key) })
	}
	wg.Wait()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var killed int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&killed); err != nil || killed < 2 {
		t.Fatalf("terminated %d backends (%v), want the pool's", killed, err)
	}
	time.Sleep(2 * pingAfterIdle)
	for i := range 6 {
		if _, _, err := s.Get(ctx, key); err != nil {
			t.Fatalf("call %d after the sessions were dropped: %v", i, err)
		}
	}
}

func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// Port 1 on loopback: nothing listens there.
	_, err := Open(ctx, "postgres://previewd:s3cret@127.0.0.1:1/previewd?sslmode=disable&connect_timeout=5")
	if err == nil {
		t.Fatal("Open succeeded without a server")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error leaks the password: %v", err)
	}
	_, err = Open(ctx, "postgres://previewd:s3cret@127.0.0.1:notaport/x")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("bad URL: err = %v", err)
	}
}

// TestMigrationBlockedAndBudget: rows written by a previewd before
// migration 2 (a blocked preview stored as failed with the phrase in its
// error; attempts counting every start) read as the new model expects.
func TestMigrationBlockedAndBudget(t *testing.T) {
	s := open(t, pgtest.URL(t))
	all, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.migrate(t.Context(), all[:1]); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	_, err = s.pool.Exec(ctx, `
		INSERT INTO previews (repo, number, namespace, desired_sha, status, attempts, next_attempt_at, last_error, sha_first_seen_at)
		VALUES ('acme/web', 1, 'pr-web-1', 'aaa', 'failed', 1, NULL, 'namespace pr-web-1 already exists and is not managed by previewd; previewd will not touch it.', $1),
		       ('acme/web', 2, 'pr-web-2', 'bbb', 'failed', 3, $2, 'CrashLoopBackOff', $1)`, t0, at(60))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.pool.Exec(ctx, `
		INSERT INTO deploy_attempts (preview_id, sha, attempt, started_at, finished_at, outcome, error)
		SELECT id, 'bbb', n, $1::timestamptz + n * interval '1 second', $1::timestamptz + n * interval '1 second',
		       CASE WHEN n = 2 THEN 'cancelled' ELSE 'failed' END, ''
		FROM previews, generate_series(1, 3) n WHERE number = 2`, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if p := get(t, s, model.Key{Repo: "acme/web", Number: 1}); p.Status != model.StatusBlocked || p.Attempts != 0 {
		t.Errorf("old blocked row: %s, attempts %d", p.Status, p.Attempts)
	}
	if p := get(t, s, model.Key{Repo: "acme/web", Number: 2}); p.Status != model.StatusFailed || p.Attempts != 2 || !p.NextAttemptAt.Equal(at(60)) {
		t.Errorf("old failed row: %s, attempts %d (want the 2 failed, not the cancelled one), next %v", p.Status, p.Attempts, p.NextAttemptAt)
	}
}

func TestBlock(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	key := model.Key{Repo: "acme/web", Number: 21}
	mustObserve(t, s, key, "aaa", at(0))
	if err := s.Block(ctx, key, "aaa", "namespace pr-web-21 already exists"); err != nil {
		t.Fatal(err)
	}
	if p := get(t, s, key); p.Status != model.StatusBlocked || p.LastError != "namespace pr-web-21 already exists" {
		t.Errorf("after Block: %+v", p)
	}
	if err := s.Block(ctx, key, "bbb", "x"); !errors.Is(err, model.ErrStale) {
		t.Errorf("Block at a SHA not desired = %v, want ErrStale", err)
	}
	if err := s.Block(ctx, model.Key{Repo: "acme/web", Number: 99}, "aaa", "x"); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("Block of an unknown PR = %v, want ErrNotFound", err)
	}
	// A push clears the block: the plan tries again.
	if p := mustObserve(t, s, key, "bbb", at(10)); p.Status != model.StatusPending || p.LastError != "" {
		t.Errorf("after a push: %+v", p)
	}
}

// TestMigrationRepositoryNamesInLowerCase: rows written under a letter
// case of the configuration read under the lower-case name; where a case
// change already made two rows for one PR, the one updated last (with its
// comment) is kept.
func TestMigrationRepositoryNamesInLowerCase(t *testing.T) {
	s := open(t, pgtest.URL(t))
	all, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.migrate(t.Context(), all[:4]); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	_, err = s.pool.Exec(ctx, `
		INSERT INTO previews (repo, number, namespace, desired_sha, status, comment_id, sha_first_seen_at, updated_at)
		VALUES ('Acme/Web', 1, 'pr-web-1', 'aaa', 'ready', 11, $1, $1),
		       ('Acme/Web', 2, 'pr-web-2', 'bbb', 'ready', 21, $1, $1),
		       ('acme/web', 2, 'pr-web-2', 'bbb', 'ready', 22, $1, $2)`, t0, at(60))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if p := get(t, s, model.Key{Repo: "acme/web", Number: 1}); p.CommentID != 11 {
		t.Errorf("row of Acme/Web#1 under acme/web: comment %d", p.CommentID)
	}
	if p := get(t, s, model.Key{Repo: "acme/web", Number: 2}); p.CommentID != 22 {
		t.Errorf("duplicate rows of #2: kept comment %d, want 22 (updated last)", p.CommentID)
	}
	rows, err := s.List(ctx)
	if err != nil || len(rows) != 2 {
		t.Errorf("rows after the migration: %d, %v", len(rows), err)
	}
}

// TestPurge: the records of previews deleted before the cut-off go, with
// their attempts; live previews and recent deletions stay.
func TestPurge(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	old, recent, live := model.Key{Repo: "acme/web", Number: 1}, model.Key{Repo: "acme/web", Number: 2}, model.Key{Repo: "acme/web", Number: 3}
	for _, k := range []model.Key{old, recent, live} {
		mustObserve(t, s, k, "aaa", at(0))
		if _, err := s.StartAttempt(ctx, k, "aaa", at(1)); err != nil {
			t.Fatal(err)
		}
	}
	for k, when := range map[model.Key]time.Time{old: at(10), recent: at(1000)} {
		if err := s.MarkDeleting(ctx, k, when); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkDeleted(ctx, k, when); err != nil {
			t.Fatal(err)
		}
	}
	// updated_at is the database's clock: age the old deletion by hand.
	if _, err := s.pool.Exec(ctx, `UPDATE previews SET updated_at = $1 WHERE number = 1`, at(10)); err != nil {
		t.Fatal(err)
	}
	n, err := s.Purge(ctx, at(500))
	if err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v; want 1", n, err)
	}
	if _, ok, _ := s.Get(ctx, old); ok {
		t.Error("the old deletion's record is still there")
	}
	for _, k := range []model.Key{recent, live} {
		if _, ok, _ := s.Get(ctx, k); !ok {
			t.Errorf("%v was purged", k)
		}
	}
	var attempts int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM deploy_attempts`).Scan(&attempts); err != nil || attempts != 2 {
		t.Errorf("attempts left = %d (%v), want 2", attempts, err)
	}
}

// TestRenameFollowsTheRepository: a preview moves to its repository's new
// name with its attempts and comment; a deleted record under the new name
// gives way, a live one refuses the move.
func TestRenameFollowsTheRepository(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	old, gone, clash := model.Key{Repo: "acme/web", Number: 1}, model.Key{Repo: "acme/web", Number: 2}, model.Key{Repo: "acme/web", Number: 3}
	for _, k := range []model.Key{old, gone, clash} {
		mustObserve(t, s, k, "aaa", at(0))
	}
	if n, err := s.RecordRepoID(ctx, "acme/web", 77); err != nil || n != 3 {
		t.Fatalf("RecordRepoID = %d, %v; want 3 records", n, err)
	}
	if n, err := s.RecordRepoID(ctx, "acme/web", 77); err != nil || n != 0 {
		t.Errorf("RecordRepoID again = %d, %v; want nothing written", n, err)
	}
	if _, err := s.RecordRepoID(ctx, "acme/web", 0); err == nil {
		t.Error("RecordRepoID accepted id 0")
	}
	attempt := mustStart(t, s, old, "aaa", at(1))
	if err := s.SetComment(ctx, old, 555, "hash"); err != nil {
		t.Fatal(err)
	}
	// The new name once had a preview of #2 (deleted), and has a live #3.
	shop2, shop3 := model.Key{Repo: "acme/shop", Number: 2}, model.Key{Repo: "acme/shop", Number: 3}
	mustObserve(t, s, shop2, "bbb", at(0))
	if err := s.MarkDeleting(ctx, shop2, at(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDeleted(ctx, shop2, at(1)); err != nil {
		t.Fatal(err)
	}
	mustObserve(t, s, shop3, "bbb", at(0))

	for _, k := range []model.Key{old, gone} {
		if err := s.Rename(ctx, k, "acme/shop"); err != nil {
			t.Fatalf("Rename %s: %v", k, err)
		}
	}
	p := get(t, s, model.Key{Repo: "acme/shop", Number: 1})
	if p.CommentID != 555 || p.Namespace != "ns-1" || p.RepoID != 77 || p.Status != model.StatusDeploying {
		t.Errorf("moved record: %+v", p)
	}
	if as, err := s.Attempts(ctx, p.Key()); err != nil || len(as) != 1 || as[0].Attempt != attempt {
		t.Errorf("attempts after the move: %+v, %v", as, err)
	}
	if p := get(t, s, shop2); p.Status != model.StatusPending || p.DesiredSHA != "aaa" {
		t.Errorf("#2 under the new name: %+v, want the moved live record", p)
	}
	for _, k := range []model.Key{old, gone} {
		if _, ok, _ := s.Get(ctx, k); ok {
			t.Errorf("%s still recorded under the old name", k)
		}
	}
	if err := s.Rename(ctx, clash, "acme/shop"); !errors.Is(err, model.ErrStale) {
		t.Errorf("Rename onto a live record: %v, want ErrStale", err)
	}
	if p := get(t, s, clash); p.Repo != "acme/web" {
		t.Errorf("refused move changed the record: %+v", p)
	}
	if err := s.Rename(ctx, model.Key{Repo: "acme/none", Number: 9}, "acme/shop"); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("Rename of nothing: %v, want ErrNotFound", err)
	}
}
