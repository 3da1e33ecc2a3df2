package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/pgtest"
	"github.com/previewd/previewd/state"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fakeCluster records calls; WaitReady behaves as waitFn says.
type fakeCluster struct {
	mu       sync.Mutex
	applied  []string // namespace@sha
	waitFn   func(ctx context.Context, ns, sha string) error
	applyErr error
	active   atomic.Int32
	peak     atomic.Int32
	lastSHA  map[string]string
}

func (f *fakeCluster) Observe(context.Context, []string) (ClusterObservation, error) {
	return ClusterObservation{Complete: true}, nil
}
func (f *fakeCluster) EnsureNamespace(context.Context, string, string, int) error { return nil }
func (f *fakeCluster) Apply(_ context.Context, ns, _ string, values map[string]any, _ time.Duration) error {
	sha := values["image"].(map[string]any)["tag"].(string)
	f.mu.Lock()
	f.applied = append(f.applied, ns+"@"+sha[:7])
	if f.lastSHA == nil {
		f.lastSHA = map[string]string{}
	}
	f.lastSHA[ns] = sha
	f.mu.Unlock()
	return f.applyErr
}
func (f *fakeCluster) WaitReady(ctx context.Context, ns string, _ time.Duration) error {
	n := f.active.Add(1)
	defer f.active.Add(-1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	f.mu.Lock()
	sha := f.lastSHA[ns]
	f.mu.Unlock()
	if f.waitFn != nil {
		return f.waitFn(ctx, ns, sha)
	}
	return nil
}
func (f *fakeCluster) Unlock(context.Context, string) error { return nil }
func (f *fakeCluster) Delete(context.Context, string) error { return nil }

// fakeGitHub records comment upserts.
type fakeGitHub struct {
	mu     sync.Mutex
	bodies map[string][]string
}

func (g *fakeGitHub) ListOpenPRs(context.Context, string) ([]PR, error) { return nil, nil }
func (g *fakeGitHub) GetPR(context.Context, string, int) (PR, PRState, error) {
	return PR{}, PRClosed, nil
}
func (g *fakeGitHub) UpsertComment(_ context.Context, repo string, n int, _ int64, _, body string) (int64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.bodies == nil {
		g.bodies = map[string][]string{}
	}
	k := fmt.Sprintf("%s#%d", repo, n)
	g.bodies[k] = append(g.bodies[k], body)
	return int64(n), nil
}

type appErr struct{}

func (appErr) Error() string    { return "deployment app not ready: CrashLoopBackOff" }
func (appErr) AppFailure() bool { return true }

func newStore(t *testing.T) *state.Store {
	t.Helper()
	st, err := state.Open(context.Background(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

func deployAction(n int, sha string) Action {
	pr := &PR{Repo: "acme/web", Number: n, SHA: sha, Branch: "b"}
	return Action{Kind: KindDeploy, Repo: "acme/web", Number: n, Namespace: nsFor("acme/web", n), SHA: sha, PR: pr, Reason: "test"}
}

func execOpts(maxPar int) ExecutorOptions {
	return ExecutorOptions{Repos: map[string]RepoSpec{"acme/web": {Name: "acme/web", Chart: "/chart", Image: "reg/web", Host: "{{ .Namespace }}.x"}},
		MaxParallel: maxPar, MaxAttempts: 3, DeployTimeout: time.Minute, Backoff: func(int) time.Duration { return 10 * time.Millisecond }}
}

func TestExecutorNewSHACancelsOldDeploy(t *testing.T) {
	st := newStore(t)
	started := make(chan string, 4)
	cl := &fakeCluster{waitFn: func(ctx context.Context, _ string, sha string) error {
		started <- sha
		if sha == shaA {
			<-ctx.Done() // never ready: only the newer SHA can end it
			return ctx.Err()
		}
		return nil
	}}
	gh := &fakeGitHub{}
	ex := NewExecutor(gh, cl, st, execOpts(4))
	ctx := context.Background()
	ex.Submit(ctx, []Action{deployAction(1, shaA)})
	if got := <-started; got != shaA {
		t.Fatalf("first wait for %s", got)
	}
	if n := len(ex.InFlight()); n != 1 {
		t.Fatalf("in flight = %d", n)
	}
	ex.Submit(ctx, []Action{deployAction(1, shaA)}) // same SHA again: ignored
	ex.Submit(ctx, []Action{deployAction(1, shaB)})
	if err := ex.Wait(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cl.applied) != "[pr-web-1@aaaaaaa pr-web-1@bbbbbbb]" {
		t.Errorf("applied = %v", cl.applied)
	}
	p, _, _ := st.Get(ctx, state.Key{Repo: "acme/web", Number: 1})
	if p.Status != state.StatusReady || p.DeployedSHA != shaB {
		t.Errorf("row = %s %s", p.Status, p.DeployedSHA)
	}
	atts, _ := st.Attempts(ctx, p.Key())
	var outcomes []string
	for _, a := range atts {
		outcomes = append(outcomes, a.SHA[:1]+":"+string(a.Outcome))
	}
	if fmt.Sprint(outcomes) != "[a:cancelled b:ready]" {
		t.Errorf("attempts = %v", outcomes)
	}
}

func TestExecutorRetriesThenStaysFailed(t *testing.T) {
	st := newStore(t)
	var waits []time.Duration
	cl := &fakeCluster{waitFn: func(context.Context, string, string) error { return appErr{} }}
	o := execOpts(4)
	o.Backoff = func(n int) time.Duration {
		d := time.Duration(1<<(n-1)) * 10 * time.Millisecond
		waits = append(waits, d)
		return d
	}
	gh := &fakeGitHub{}
	ex := NewExecutor(gh, cl, st, o)
	ex.Submit(context.Background(), []Action{deployAction(2, shaA)})
	if err := ex.Wait(); err != nil {
		t.Fatalf("an application failure is not an executor error: %v", err)
	}
	p, _, _ := st.Get(context.Background(), state.Key{Repo: "acme/web", Number: 2})
	if p.Status != state.StatusFailed || p.Attempts != 3 || !p.NextAttemptAt.IsZero() {
		t.Errorf("row = %s attempts %d next %v", p.Status, p.Attempts, p.NextAttemptAt)
	}
	if fmt.Sprint(waits) != "[10ms 20ms]" {
		t.Errorf("backoff waits = %v, want 2^n growth between 3 attempts", waits)
	}
	bodies := gh.bodies["acme/web#2"]
	if len(bodies) == 0 || !strings.Contains(bodies[len(bodies)-1], "3 of 3") {
		t.Errorf("last comment: %q", bodies)
	}
	// Infrastructure errors are errors.
	cl2 := &fakeCluster{applyErr: errors.New("the server is currently unable to handle the request")}
	ex2 := NewExecutor(gh, cl2, st, execOpts(4))
	ex2.Submit(context.Background(), []Action{deployAction(3, shaA)})
	if err := ex2.Wait(); err == nil {
		t.Error("API server failure not reported")
	}
}

func TestExecutorBoundsParallelism(t *testing.T) {
	st := newStore(t)
	cl := &fakeCluster{waitFn: func(context.Context, string, string) error {
		time.Sleep(50 * time.Millisecond)
		return nil
	}}
	ex := NewExecutor(&fakeGitHub{}, cl, st, execOpts(2))
	var as []Action
	for n := 1; n <= 6; n++ {
		as = append(as, deployAction(n, shaA))
	}
	ex.Submit(context.Background(), as)
	if err := ex.Wait(); err != nil {
		t.Fatal(err)
	}
	if p := cl.peak.Load(); p != 2 {
		t.Errorf("peak concurrent deploys = %d, want 2", p)
	}
	if len(cl.applied) != 6 {
		t.Errorf("applied %d", len(cl.applied))
	}
}

func TestExecutorSkipsUnchangedComment(t *testing.T) {
	st := newStore(t)
	gh := &fakeGitHub{}
	ex := NewExecutor(gh, &fakeCluster{}, st, execOpts(1))
	ex.Submit(context.Background(), []Action{deployAction(4, shaA)})
	if err := ex.Wait(); err != nil {
		t.Fatal(err)
	}
	n := len(gh.bodies["acme/web#4"])
	ex.Submit(context.Background(), []Action{{Kind: KindComment, Repo: "acme/web", Number: 4}})
	_ = ex.Wait()
	if len(gh.bodies["acme/web#4"]) != n {
		t.Errorf("unchanged comment was sent again")
	}
}

func TestExecutorDoesNotQueueADeletionTwice(t *testing.T) {
	st := newStore(t)
	release := make(chan struct{})
	var deletes atomic.Int32
	cl := &deletingCluster{fakeCluster: &fakeCluster{}, release: release, n: &deletes}
	ex := NewExecutor(&fakeGitHub{}, cl, st, execOpts(4))
	del := Action{Kind: KindDelete, Repo: "acme/web", Number: 9, Namespace: "pr-web-9", Reason: "PR closed"}
	ex.Submit(context.Background(), []Action{del})
	for deletes.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	// Later cycles plan the same deletion while it runs.
	ex.Submit(context.Background(), []Action{del})
	ex.Submit(context.Background(), []Action{{Kind: KindForget, Repo: "acme/web", Number: 9, Namespace: "pr-web-9"}})
	close(release)
	if err := ex.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := deletes.Load(); n != 1 {
		t.Errorf("namespace deleted %d times, want 1", n)
	}
}

type deletingCluster struct {
	*fakeCluster
	release chan struct{}
	n       *atomic.Int32
}

func (d *deletingCluster) Delete(context.Context, string) error {
	d.n.Add(1)
	<-d.release
	return nil
}

// blockingGitHub holds every comment write until released, as GitHub's
// mutation spacing holds the 50th of 50 writes for 50 s.
type blockingGitHub struct {
	fakeGitHub
	release chan struct{}
}

func (g *blockingGitHub) UpsertComment(ctx context.Context, repo string, n int, id int64, marker, body string) (int64, error) {
	<-g.release
	return g.fakeGitHub.UpsertComment(ctx, repo, n, id, marker, body)
}

// TestDeletionDoesNotWaitForTheComment: the namespace of a closed PR is
// deleted while its "removing" comment is still waiting to be written.
func TestDeletionDoesNotWaitForTheComment(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	key := state.Key{Repo: "acme/web", Number: 5}
	if _, err := st.Observe(ctx, key, "pr-web-5", "b", "t", "0123456789abcdef0123456789abcdef01234567", time.Now()); err != nil {
		t.Fatal(err)
	}
	gh := &blockingGitHub{release: make(chan struct{})}
	var deletes atomic.Int32
	unblocked := make(chan struct{})
	close(unblocked)
	ex := NewExecutor(gh, &deletingCluster{fakeCluster: &fakeCluster{}, release: unblocked, n: &deletes}, st, execOpts(4))
	ex.Submit(ctx, []Action{{Kind: KindDelete, Repo: "acme/web", Number: 5, Namespace: "pr-web-5", Reason: "PR closed"}})
	deadline := time.Now().Add(10 * time.Second)
	for deletes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if deletes.Load() == 0 {
		t.Error("the namespace was not deleted while the comment write waited")
	}
	close(gh.release)
	if err := ex.Wait(); err != nil {
		t.Fatal(err)
	}
	if row, ok, _ := st.Get(ctx, key); ok && row.Status != state.StatusDeleted {
		t.Errorf("row %s, want deleted", row.Status)
	}
}
