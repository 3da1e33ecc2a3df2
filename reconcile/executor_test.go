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

	"github.com/previewd/previewd/internal/harness/pgtest"
	"github.com/previewd/previewd/reconcile/model"
	"github.com/previewd/previewd/reconcile/render"
	"github.com/previewd/previewd/state"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fakeCluster records calls; WaitReady behaves as waitFn says.
type fakeCluster struct {
	mu        sync.Mutex
	applied   []string // namespace@sha
	waitFn    func(ctx context.Context, ns, sha string) error
	applyErr  error
	active    atomic.Int32
	peak      atomic.Int32
	lastSHA   map[string]string
	charts    []model.ChartRef
	ensured   int
	ensureErr error
}

func (f *fakeCluster) Observe(context.Context, []string) (model.ClusterObservation, error) {
	return model.ClusterObservation{Complete: true}, nil
}
func (f *fakeCluster) EnsureNamespace(context.Context, string, string, int, model.Fence) error {
	f.mu.Lock()
	f.ensured++
	f.mu.Unlock()
	return f.ensureErr
}
func (f *fakeCluster) SecretsVersion(context.Context, string, []string) (string, error) {
	return "", nil
}
func (f *fakeCluster) RenameNamespace(context.Context, string, string, string, int) error { return nil }
func (f *fakeCluster) Apply(_ context.Context, ns string, chart model.ChartRef, values map[string]any, _ time.Duration) error {
	sha := values["image"].(map[string]any)["tag"].(string)
	f.mu.Lock()
	f.charts = append(f.charts, chart)
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
func (g *fakeGitHub) CommitChecks(context.Context, string, string) ([]Check, error) { return nil, nil }
func (g *fakeGitHub) UpsertComment(_ context.Context, repo string, n int, _ string, _ bool, render func() (int64, string, bool)) (int64, bool, error) {
	_, body, ok := render()
	if !ok {
		return 0, false, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.bodies == nil {
		g.bodies = map[string][]string{}
	}
	k := fmt.Sprintf("%s#%d", repo, n)
	g.bodies[k] = append(g.bodies[k], body)
	return int64(n), true, nil
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

func deployOf(n int, sha string) Action {
	pr := &PR{Repo: "acme/web", Number: n, SHA: sha, Branch: "b"}
	return Action{Kind: KindDeploy, Repo: "acme/web", Number: n, Namespace: nsFor("acme/web", n), SHA: sha, PR: pr, Reason: "test", Attempt: 1}
}

func settings(maxPar int) Settings {
	host, err := render.Compile("{{ .Namespace }}.x")
	if err != nil {
		panic(err)
	}
	return Settings{Repos: []Repo{{Name: "acme/web", Chart: model.ChartSource{Kind: model.ChartDir, Location: "/chart"}, Image: "reg/web", Host: host}},
		Interval: time.Minute, DeployTimeout: time.Minute, HelmTimeout: time.Minute,
		MaxParallel: maxPar, MaxAttempts: 3, Backoff: func(int) time.Duration { return 10 * time.Millisecond },
		ImageRecheck: func(time.Duration) time.Duration { return 10 * time.Millisecond }}
}

func newExecutor(t *testing.T, gh GitHub, cl Cluster, st Store, s Settings) *Executor {
	t.Helper()
	ex, err := NewExecutor(gh, cl, st, s, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return ex
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
	ex := newExecutor(t, gh, cl, st, settings(4))
	ctx := context.Background()
	ex.Submit(ctx, []Action{deployOf(1, shaA)})
	if got := <-started; got != shaA {
		t.Fatalf("first wait for %s", got)
	}
	if n := len(ex.InFlight()); n != 1 {
		t.Fatalf("in flight = %d", n)
	}
	ex.Submit(ctx, []Action{deployOf(1, shaA)}) // same SHA again: ignored
	ex.Submit(ctx, []Action{deployOf(1, shaB)})
	if err := ex.Wait(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cl.applied) != "[pr-web-1@aaaaaaa pr-web-1@bbbbbbb]" {
		t.Errorf("applied = %v", cl.applied)
	}
	p, _, _ := st.Get(ctx, model.Key{Repo: "acme/web", Number: 1})
	if p.Status != model.StatusReady || p.DeployedSHA != shaB {
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

// TestExecutorRunsOneAttemptOnThePlansSchedule: the executor makes the
// one attempt the plan asked for and records the retry time the plan's
// schedule gives; the last attempt of the budget schedules none.
func TestExecutorRunsOneAttemptOnThePlansSchedule(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	cl := &fakeCluster{waitFn: func(context.Context, string, string) error { return appErr{} }}
	gh := &fakeGitHub{}
	ex := newExecutor(t, gh, cl, st, settings(4))
	var retries []time.Time
	ex.onRetry = func(at time.Time, wait bool) { retries = append(retries, at) }
	a := deployOf(2, shaA)
	a.RetryAfter = time.Hour
	before := time.Now()
	ex.Submit(ctx, []Action{a})
	if err := ex.Wait(); err != nil {
		t.Fatalf("an application failure is not an executor error: %v", err)
	}
	p, _, _ := st.Get(ctx, model.Key{Repo: "acme/web", Number: 2})
	if p.Status != model.StatusFailed || p.Attempts != 1 || p.NextAttemptAt.Before(before.Add(time.Hour-time.Second)) {
		t.Errorf("after attempt 1: row = %s attempts %d next %v", p.Status, p.Attempts, p.NextAttemptAt)
	}
	if len(cl.applied) != 1 || len(retries) != 1 {
		t.Errorf("applied %v, retries scheduled %v: want one attempt and one retry", cl.applied, retries)
	}
	// The plan's last attempt: no retry.
	a = deployOf(2, shaA)
	a.Attempt, a.RetryAfter = 3, 0
	ex.Submit(ctx, []Action{a})
	if err := ex.Wait(); err != nil {
		t.Fatal(err)
	}
	p, _, _ = st.Get(ctx, model.Key{Repo: "acme/web", Number: 2})
	if p.Status != model.StatusFailed || p.Attempts != 2 || !p.NextAttemptAt.IsZero() || len(retries) != 1 {
		t.Errorf("after the last attempt: row = %s attempts %d next %v; retries %v", p.Status, p.Attempts, p.NextAttemptAt, retries)
	}
	// Infrastructure errors are errors.
	cl2 := &fakeCluster{applyErr: errors.New("the server is currently unable to handle the request")}
	ex2 := newExecutor(t, gh, cl2, st, settings(4))
	ex2.Submit(ctx, []Action{deployOf(3, shaA)})
	if err := ex2.Wait(); err == nil {
		t.Error("API server failure not reported")
	}
}

// listingGitHub lists one open PR.
type listingGitHub struct {
	fakeGitHub
	prs []PR
}

func (g *listingGitHub) ListOpenPRs(context.Context, string) ([]PR, error) { return g.prs, nil }

// TestRunOnceRetriesOnThePlansSchedule: a preview that never becomes
// ready is tried MaxAttempts times by successive plans, waiting the
// schedule's backoff between them, and then left failed with the comment
// saying so.
func TestRunOnceRetriesOnThePlansSchedule(t *testing.T) {
	st := newStore(t)
	var mu sync.Mutex
	var starts []time.Time
	cl := &fakeCluster{waitFn: func(context.Context, string, string) error {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		return appErr{}
	}}
	gh := &listingGitHub{prs: []PR{{Repo: "acme/web", Number: 7, SHA: shaA, Branch: "b", Title: "t"}}}
	s := settings(4)
	s.Backoff = func(n int) time.Duration { return time.Duration(1<<(n-1)) * 100 * time.Millisecond }
	ex := newExecutor(t, gh, cl, st, s)
	l, err := NewLoop(gh, cl, st, ex, s, LoopOptions{NamespaceFor: nsFor}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.RunOnce(context.Background()); err != nil {
		t.Fatalf("an application failure is not a loop error: %v", err)
	}
	p, _, _ := st.Get(context.Background(), model.Key{Repo: "acme/web", Number: 7})
	if p.Status != model.StatusFailed || p.Attempts != 3 || !p.NextAttemptAt.IsZero() {
		t.Errorf("row = %s attempts %d next %v", p.Status, p.Attempts, p.NextAttemptAt)
	}
	if len(starts) != 3 {
		t.Fatalf("%d attempts, want 3", len(starts))
	}
	if d := starts[1].Sub(starts[0]); d < 100*time.Millisecond {
		t.Errorf("second attempt %s after the first, want ≥ 100ms", d)
	}
	if d := starts[2].Sub(starts[1]); d < 200*time.Millisecond {
		t.Errorf("third attempt %s after the second, want ≥ 200ms (doubling)", d)
	}
	bodies := gh.bodies["acme/web#7"]
	if len(bodies) == 0 || !strings.Contains(bodies[len(bodies)-1], "3 of 3") || !strings.Contains(bodies[len(bodies)-1], "push a new commit") {
		t.Errorf("last comment: %q", bodies)
	}
	// The next plan leaves it alone until a new SHA.
	res, _ := l.Plan(context.Background())
	if len(res.Actions) != 0 {
		t.Errorf("plan after the budget: %v", lines(res))
	}
}

func TestExecutorBoundsParallelism(t *testing.T) {
	st := newStore(t)
	cl := &fakeCluster{waitFn: func(context.Context, string, string) error {
		time.Sleep(50 * time.Millisecond)
		return nil
	}}
	ex := newExecutor(t, &fakeGitHub{}, cl, st, settings(2))
	var as []Action
	for n := 1; n <= 6; n++ {
		as = append(as, deployOf(n, shaA))
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
	ex := newExecutor(t, gh, &fakeCluster{}, st, settings(1))
	ex.Submit(context.Background(), []Action{deployOf(4, shaA)})
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
	ex := newExecutor(t, &fakeGitHub{}, cl, st, settings(4))
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

func (g *blockingGitHub) UpsertComment(ctx context.Context, repo string, n int, marker string, final bool, render func() (int64, string, bool)) (int64, bool, error) {
	<-g.release
	return g.fakeGitHub.UpsertComment(ctx, repo, n, marker, final, render)
}

// TestDeletionDoesNotWaitForTheComment: the namespace of a closed PR is
// deleted while its "removing" comment is still waiting to be written.
func TestDeletionDoesNotWaitForTheComment(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	key := model.Key{Repo: "acme/web", Number: 5}
	if _, err := st.RecordOpen(ctx, key, model.Open{Namespace: "pr-web-5", Branch: "b", Title: "t", SHA: "0123456789abcdef0123456789abcdef01234567", Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	gh := &blockingGitHub{release: make(chan struct{})}
	var deletes atomic.Int32
	unblocked := make(chan struct{})
	close(unblocked)
	ex := newExecutor(t, gh, &deletingCluster{fakeCluster: &fakeCluster{}, release: unblocked, n: &deletes}, st, settings(4))
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
	if row, ok, _ := st.Get(ctx, key); ok && row.Status != model.StatusDeleted {
		t.Errorf("row %s, want deleted", row.Status)
	}
}

// pullErr is a pod that cannot pull image.
type pullErr struct{ image string }

func (e pullErr) Error() string       { return "deployment app not ready: ImagePullBackOff: not found" }
func (pullErr) AppFailure() bool      { return true }
func (e pullErr) FailedImage() string { return e.image }

// TestExecutorWaitsForTheImageUntilImageWaitEnds: a pull failure of the
// preview's own image is a wait (no budget used, a look again scheduled)
// until the plan's image_wait deadline; after it, a failure that ends the
// SHA's attempts with the registry's message. Another image's pull
// failure is an ordinary failure.
func TestExecutorWaitsForTheImageUntilImageWaitEnds(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	img := "reg/web:" + shaA
	cl := &fakeCluster{waitFn: func(context.Context, string, string) error { return pullErr{img} }}
	ex := newExecutor(t, &fakeGitHub{}, cl, st, settings(4))
	var looks []bool
	ex.onRetry = func(_ time.Time, wait bool) { looks = append(looks, wait) }
	a := deployOf(8, shaA)
	a.RetryAfter, a.ImageWaitUntil, a.ImageRecheckAfter = time.Minute, time.Now().Add(time.Hour), 15*time.Second
	ex.Submit(ctx, []Action{a})
	if err := ex.Wait(); err != nil {
		t.Fatal(err)
	}
	key := model.Key{Repo: "acme/web", Number: 8}
	p, _, _ := st.Get(ctx, key)
	if p.Status != model.StatusWaiting || p.Attempts != 0 || p.WaitingFor != model.WaitingForImage ||
		time.Until(p.NextAttemptAt) < 10*time.Second || fmt.Sprint(looks) != "[true]" {
		t.Fatalf("while image_wait lasts: %s attempts %d waiting %q next in %s, looks %v", p.Status, p.Attempts, p.WaitingFor, time.Until(p.NextAttemptAt), looks)
	}
	a.ImageWaitUntil = time.Now().Add(-time.Second) // image_wait is over
	ex.Submit(ctx, []Action{a})
	if err := ex.Wait(); err != nil {
		t.Fatal(err)
	}
	p, _, _ = st.Get(ctx, key)
	if p.Status != model.StatusFailed || p.Attempts != 1 || !p.NextAttemptAt.IsZero() ||
		!strings.Contains(p.LastError, "still not available when image_wait ended") || !strings.Contains(p.LastError, "ImagePullBackOff") {
		t.Errorf("after image_wait: %s attempts %d next %v: %q", p.Status, p.Attempts, p.NextAttemptAt, p.LastError)
	}
	// Another image (a sidecar) failing to pull is a failure at once.
	cl.waitFn = func(context.Context, string, string) error { return pullErr{"docker.io/library/redis:7"} }
	b := deployOf(9, shaA)
	b.RetryAfter, b.ImageWaitUntil = time.Minute, time.Now().Add(time.Hour)
	ex.Submit(ctx, []Action{b})
	_ = ex.Wait()
	if p, _, _ := st.Get(ctx, model.Key{Repo: "acme/web", Number: 9}); p.Status != model.StatusFailed || p.Attempts != 1 {
		t.Errorf("a sidecar's pull failure: %s attempts %d", p.Status, p.Attempts)
	}
}

// TestLoopKeepsEveryScheduledRetry: a later retry is not lost when an
// earlier one is taken; run --once ignores looks for an image.
func TestLoopKeepsEveryScheduledRetry(t *testing.T) {
	l, err := NewLoop(&fakeGitHub{}, &fakeCluster{}, nil, nil, settings(1), LoopOptions{NamespaceFor: nsFor}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	l.retryScheduled(t0.Add(2*time.Second), false)
	l.retryScheduled(t0.Add(time.Second), false)
	l.retryScheduled(t0.Add(500*time.Millisecond), true)
	if got := l.nextRetry(false); !got.Equal(t0.Add(time.Second)) {
		t.Errorf("next retry %v", got.Sub(t0))
	}
	if got := l.nextRetry(true); !got.Equal(t0.Add(500 * time.Millisecond)) {
		t.Errorf("next retry or look %v", got.Sub(t0))
	}
	l.dropDue(t0.Add(time.Second), false)
	if got := l.nextRetry(true); !got.Equal(t0.Add(2 * time.Second)) {
		t.Errorf("after the first retry ran: next %v, want the later retry kept", got.Sub(t0))
	}
}

// TestExecutorRepoChartAtTheSHA: a repo: chart is asked for at the SHA
// being deployed; a fork's is refused before anything is created unless
// forks are allowed.
func TestExecutorRepoChartAtTheSHA(t *testing.T) {
	ctx := context.Background()
	repoChart := model.ChartSource{Kind: model.ChartRepo, Location: "deploy/chart"}
	for _, tc := range []struct {
		name        string
		fork, allow bool
		want        string // "" refused
	}{
		{"same repository", false, false, "acme/web@" + shaA},
		{"fork, forks not allowed", true, false, ""},
		{"fork, allow_forks", true, true, "acme/web@" + shaA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore(t)
			cl := &fakeCluster{}
			s := settings(1)
			s.Repos[0].Chart = repoChart
			s.Repos[0].Policy.AllowForks = tc.allow
			ex := newExecutor(t, &fakeGitHub{}, cl, st, s)
			a := deployOf(7, shaA)
			a.PR.Fork = tc.fork
			ex.Submit(ctx, []Action{a})
			err := ex.Wait()
			p, _, _ := st.Get(ctx, model.Key{Repo: "acme/web", Number: 7})
			if tc.want == "" {
				if len(cl.charts) != 0 || cl.ensured != 0 {
					t.Errorf("fork chart used: applied %v, namespaces ensured %d", cl.charts, cl.ensured)
				}
				if p.Status != model.StatusFailed || !strings.Contains(p.LastError, "allow_forks") || err == nil || !strings.Contains(err.Error(), "allow_forks") {
					t.Errorf("row %s %q, err %v: want failed naming allow_forks", p.Status, p.LastError, err)
				}
				return
			}
			if err != nil || len(cl.charts) != 1 {
				t.Fatalf("err %v, charts %v", err, cl.charts)
			}
			if got := cl.charts[0]; got.Repo+"@"+got.SHA != tc.want || got.Source != repoChart {
				t.Errorf("chart = %+v, want %s of %s", got, tc.want, repoChart)
			}
		})
	}
}

type transientErr struct{ error }

func (transientErr) Transient() bool { return true }

// TestExecutorTransientFailureUsesNoAttempt: a PR reopened while its
// namespace is still terminating (or a chart GitHub could not serve now)
// is tried again by a later cycle; it does not burn the attempt budget.
func TestExecutorTransientFailureUsesNoAttempt(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	cl := &fakeCluster{ensureErr: transientErr{errors.New("namespace pr-web-8 (deletion requested 12:00): namespace is terminating")}}
	ex := newExecutor(t, &fakeGitHub{}, cl, st, settings(1))
	var retries []time.Time
	ex.onRetry = func(at time.Time, _ bool) { retries = append(retries, at) }
	a := deployOf(8, shaA)
	a.RetryAfter = time.Second
	ex.Submit(ctx, []Action{a})
	_ = ex.Wait()
	p, _, _ := st.Get(ctx, model.Key{Repo: "acme/web", Number: 8})
	if p.Status == model.StatusFailed || p.Attempts != 0 || len(retries) != 0 {
		t.Errorf("row %s attempts %d, retries %v: want no attempt used and no retry scheduled", p.Status, p.Attempts, retries)
	}
}

// TestPerPreviewStateDoesNotGrow: what the executor and the comment hash
// cache keep per preview goes once the preview is no longer live.
func TestPerPreviewStateDoesNotGrow(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	ex := newExecutor(t, &fakeGitHub{}, &fakeCluster{}, st, settings(2))
	var actions []Action
	for n := 1; n <= 5; n++ {
		actions = append(actions, deployOf(n, shaA))
	}
	ex.Submit(ctx, actions)
	if err := ex.Wait(); err != nil {
		t.Fatal(err)
	}
	live, err := st.List(ctx)
	if err != nil || len(live) != 5 {
		t.Fatalf("rows %d %v", len(live), err)
	}
	hashes := &HashCache{R: NewRenderer(settings(2), nil)}
	for _, p := range live {
		hashes.Hash(p)
	}
	if ex.commentLocks() != 5 || hashes.Len() != 5 {
		t.Fatalf("before: %d comment locks, %d hashes", ex.commentLocks(), hashes.Len())
	}
	ex.forgetExcept(live[:2])
	hashes.Retain(live[:2])
	if ex.commentLocks() != 2 || hashes.Len() != 2 {
		t.Errorf("after 3 previews went: %d comment locks, %d hashes; want 2 and 2", ex.commentLocks(), hashes.Len())
	}
}

// TestCommentWritesTheLatestState: a preview that turned Ready while its
// "deploying" comment waited for its turn gets one write, "ready".
func TestCommentWritesTheLatestState(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	gh := &blockingGitHub{release: make(chan struct{})}
	ex := newExecutor(t, gh, &fakeCluster{}, st, settings(1))
	ex.Submit(ctx, []Action{deployOf(9, shaA)})
	key := model.Key{Repo: "acme/web", Number: 9}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if p, ok, _ := st.Get(ctx, key); ok && p.Status == model.StatusReady {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(gh.release) // GitHub takes the writes now
	if err := ex.Wait(); err != nil {
		t.Fatal(err)
	}
	bodies := gh.bodies["acme/web#9"]
	if len(bodies) != 1 || !strings.Contains(bodies[0], "Preview ready") {
		t.Errorf("comment writes = %d %q; want one, saying ready", len(bodies), bodies)
	}
}

// countingGitHub measures how many open-PR lists run at once.
type countingGitHub struct {
	fakeGitHub
	now, peak atomic.Int32
}

func (g *countingGitHub) ListOpenPRs(context.Context, string) ([]PR, error) {
	n := g.now.Add(1)
	defer g.now.Add(-1)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
	time.Sleep(20 * time.Millisecond)
	return nil, nil
}

// TestObserveBoundsListConcurrency: 40 repositories are read at most
// ListConcurrency at a time.
func TestObserveBoundsListConcurrency(t *testing.T) {
	s := settings(1)
	for i := range 40 {
		s.Repos = append(s.Repos, Repo{Name: fmt.Sprintf("acme/r%d", i), Chart: s.Repos[0].Chart, Image: "reg/x"})
	}
	gh := &countingGitHub{}
	l, err := NewLoop(gh, &fakeCluster{}, newStore(t), nil, s, LoopOptions{NamespaceFor: nsFor}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Observe(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p := gh.peak.Load(); p > ListConcurrency || p < 2 {
		t.Errorf("peak concurrent lists = %d, want 2..%d", p, ListConcurrency)
	}
}
