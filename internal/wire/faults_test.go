package wire_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/github/githubfake"
	"github.com/previewd/previewd/internal/harness/cutproxy"
	"github.com/previewd/previewd/internal/harness/e2e"
	"github.com/previewd/previewd/internal/wire"
	"github.com/previewd/previewd/reconcile/model"
)

// faultWorld is a repository with two previews: keep (open, a new push
// waiting to be deployed) and gone (closed on GitHub, its namespace
// waiting to be deleted), set up before a fault.
type faultWorld struct {
	e          *e2e.Env
	d          *wire.Daemon
	keep, gone int
}

func newFaultWorld(t *testing.T, filler int) *faultWorld {
	t.Helper()
	e := e2e.New(t, "")
	if filler > 0 {
		// Enough PRs for two pages of the open list; only labelled
		// ones get previews.
		e.AddRepoConfig("require_labels: [preview]")
	}
	w := &faultWorld{e: e, d: e.Daemon(false)}
	w.keep = e.GH.OpenPR(e.Repo, githubfake.PR{Title: "Keep", Branch: "keep", SHA: e2e.SHA("keep-1"), Labels: []string{"preview"}})
	w.gone = e.GH.OpenPR(e.Repo, githubfake.PR{Title: "Gone", Branch: "gone", SHA: e2e.SHA("gone-1"), Labels: []string{"preview"}})
	for i := range filler {
		e.GH.OpenPR(e.Repo, githubfake.PR{Title: fmt.Sprint("filler ", i)})
	}
	e.MustRunOnce(w.d)
	for _, n := range []int{w.keep, w.gone} {
		if p := e.Row(w.d, n); p.Status != model.StatusReady {
			t.Fatalf("#%d not ready before the fault: %s %s", n, p.Status, p.LastError)
		}
	}
	if err := e.GH.ClosePR(e.Repo, w.gone); err != nil {
		t.Fatal(err)
	}
	if err := e.GH.Push(e.Repo, w.keep, e2e.SHA("keep-2")); err != nil {
		t.Fatal(err)
	}
	return w
}

// nothingLost: the closed PR's namespace is still there (a fault is never
// a closure) and each PR has exactly one comment.
func (w *faultWorld) nothingLost(t *testing.T, when string) {
	t.Helper()
	if !w.e.NSExists(w.e.NS(w.gone)) {
		t.Errorf("%s: the closed PR's namespace was deleted during the fault", when)
	}
	w.oneCommentEach(t, when)
}

func (w *faultWorld) oneCommentEach(t *testing.T, when string) {
	t.Helper()
	for _, n := range []int{w.keep, w.gone} {
		if cs := w.e.BotComments(n); len(cs) != 1 {
			t.Errorf("%s: PR #%d has %d comments, want 1", when, n, len(cs))
		}
	}
}

// converges: once GitHub answers, the push is deployed and the closed
// PR's namespace deleted, with one comment each.
func (w *faultWorld) converges(t *testing.T) {
	t.Helper()
	var err error
	for range 5 {
		if err = w.e.RunOnce(w.d); err == nil && !w.e.NSExists(w.e.NS(w.gone)) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("not converged after the fault: %v", err)
	}
	if p := w.e.Row(w.d, w.keep); p.Status != model.StatusReady || p.DeployedSHA != e2e.SHA("keep-2") {
		t.Errorf("push not deployed after the fault: %s %s", p.Status, p.LastError)
	}
	if w.e.NSExists(w.e.NS(w.gone)) {
		t.Error("closed PR's namespace not deleted after the fault")
	}
	w.oneCommentEach(t, "after the fault")
}

// sentBetween counts the API requests of route sent in [from, to).
func sentBetween(f *githubfake.Server, route string, from, to time.Time) int {
	n := 0
	for _, r := range f.Requests() {
		if (route == "" || r.Route == route) && !r.Time.Before(from) && r.Time.Before(to) && r.Status != 0 {
			n++
		}
	}
	return n
}

// TestGitHubFaults is the GitHub part of the fault suite (docs/operations.md
// lists every fault, what previewd does, and its test): during each fault
// nothing is deleted and no comment is duplicated; after it, everything
// converges.
func TestGitHubFaults(t *testing.T) {
	t.Run("5xx for 10 cycles", func(t *testing.T) {
		w := newFaultWorld(t, 0)
		id := w.e.GH.AddFault(githubfake.Fault{Route: "*", Status: http.StatusBadGateway})
		for i := range 10 {
			if err := w.e.RunOnce(w.d); err == nil {
				t.Errorf("cycle %d reported success while GitHub answered 502", i)
			}
		}
		w.nothingLost(t, "after 10 cycles of 502")
		w.e.GH.RemoveFault(id)
		w.converges(t)
	})
	t.Run("requests that hang until the client's timeout", func(t *testing.T) {
		w := newFaultWorld(t, 0)
		w.e.HTTPTimeout = 300 * time.Millisecond
		w.d = w.e.Daemon(false)
		id := w.e.GH.AddFault(githubfake.Fault{Route: "*", Hang: true})
		for i := range 3 {
			if err := w.e.RunOnce(w.d); err == nil {
				t.Errorf("cycle %d reported success while GitHub did not answer", i)
			}
		}
		w.nothingLost(t, "requests hanging")
		w.e.GH.RemoveFault(id)
		w.converges(t)
	})
	t.Run("a page failing mid-pagination", func(t *testing.T) {
		w := newFaultWorld(t, 120)
		id := w.e.GH.AddFault(githubfake.Fault{Route: githubfake.RouteListPulls, Query: "page=2", Status: http.StatusBadGateway})
		for range 3 {
			_ = w.e.RunOnce(w.d)
		}
		if n := w.e.GH.Counters().Route(githubfake.RouteListPulls, http.StatusBadGateway); n == 0 {
			t.Fatal("page 2 was never asked for: the list had one page")
		}
		w.nothingLost(t, "page 2 failing")
		w.e.GH.RemoveFault(id)
		w.converges(t)
	})
	t.Run("invalid JSON", func(t *testing.T) {
		w := newFaultWorld(t, 0)
		id := w.e.GH.AddFault(githubfake.Fault{Route: githubfake.RouteListPulls, Body: `[{"number": 1, "head": {"sha": `})
		for range 3 {
			if err := w.e.RunOnce(w.d); err == nil {
				t.Error("a cycle read a truncated list as complete")
			}
		}
		w.nothingLost(t, "invalid JSON")
		w.e.GH.RemoveFault(id)
		w.converges(t)
	})
	t.Run("secondary limit on writes", func(t *testing.T) {
		w := newFaultWorld(t, 0)
		w.e.GH.AddFault(githubfake.Fault{Route: githubfake.RouteEditIssueComment, Status: http.StatusForbidden, RetryAfter: 3 * time.Second, Times: 1})
		// Cycles as run schedules them: they do not wait for the
		// comment writes the executor holds back.
		deadline := time.Now().Add(2500 * time.Millisecond)
		for time.Now().Before(deadline) {
			_, _ = w.d.Loop.Cycle(context.Background())
			time.Sleep(200 * time.Millisecond)
		}
		var limited time.Time
		for _, r := range w.e.GH.Requests() {
			if r.Route == githubfake.RouteEditIssueComment && r.Status == http.StatusForbidden {
				limited = r.Time
			}
		}
		if limited.IsZero() {
			t.Fatal("no write met the limit")
		}
		if n := sentBetween(w.e.GH, githubfake.RouteEditIssueComment, limited.Add(time.Millisecond), limited.Add(2900*time.Millisecond)); n != 0 {
			t.Errorf("%d writes sent before Retry-After", n)
		}
		if n := sentBetween(w.e.GH, githubfake.RouteListPulls, limited, deadline); n == 0 {
			t.Error("listing stopped while only writes were limited")
		}
		if ns, err := w.e.Kube.Client.CoreV1().Namespaces().Get(context.Background(), w.e.NS(w.gone), metav1.GetOptions{}); err == nil && ns.DeletionTimestamp == nil {
			t.Error("the closed PR's namespace was not being deleted while only writes were limited")
		}
		time.Sleep(time.Until(limited.Add(3 * time.Second)))
		_ = w.d.Executor.Wait()
		w.converges(t)
	})
	t.Run("primary limit exhausted until reset", func(t *testing.T) {
		w := newFaultWorld(t, 0)
		reset := time.Now().Add(3 * time.Second)
		if err := w.e.GH.SetRateRemaining(w.e.Token(), 0); err != nil {
			t.Fatal(err)
		}
		if err := w.e.GH.SetRateReset(w.e.Token(), reset); err != nil {
			t.Fatal(err)
		}
		var refused time.Time
		for time.Now().Before(reset.Add(-time.Second)) {
			_ = w.e.RunOnce(w.d)
			for _, r := range w.e.GH.Requests() {
				if r.Status == http.StatusForbidden && refused.IsZero() {
					refused = r.Time
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		if refused.IsZero() {
			t.Fatal("no request met the exhausted limit")
		}
		if n := sentBetween(w.e.GH, "", refused.Add(time.Millisecond), reset.Add(-time.Second)); n != 0 {
			t.Errorf("%d requests sent before the reset", n)
		}
		w.nothingLost(t, "primary limit exhausted")
		time.Sleep(time.Until(reset.Add(1100 * time.Millisecond)))
		w.converges(t)
	})
}

// TestAPIServerStoppedMidDeploy: the API server goes away (connections
// refused and cut, through a proxy in front of the test bed's) at several
// points of a deploy and comes back. No attempt of the SHA is used by the
// outage, the PR is never told the deploy failed, nothing is deleted, and
// once the API server is back the preview converges at the last push (a
// release left pending by the cut is taken over once stale).
func TestAPIServerStoppedMidDeploy(t *testing.T) {
	e := e2e.New(t, "")
	host := strings.TrimPrefix(e.Kube.RESTConfig.Host, "https://")
	proxy := cutproxy.New(t, host)
	good, err := os.ReadFile(e.Kube.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	viaProxy := bytes.ReplaceAll(good, []byte("server: https://"+host), []byte("server: https://"+proxy.Addr()))
	if bytes.Equal(viaProxy, good) {
		t.Fatalf("kubeconfig does not name the server %s", host)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, viaProxy, 0o600); err != nil {
		t.Fatal(err)
	}
	editConfig(t, e, func(s string) string {
		s = strings.Replace(s, e.Kube.Kubeconfig, kc, 1)
		return strings.Replace(s, "deploy_timeout: 60s", "deploy_timeout: 10s\nhelm_timeout: 10s", 1)
	})
	d := e.Daemon(false)
	n := e.Open("Outage", "outage", e2e.SHA("api-0"))
	e.MustRunOnce(d)
	key := model.Key{Repo: e.Repo, Number: n}
	var last string
	midOperation := 0
	for i, delay := range []time.Duration{50 * time.Millisecond, 250 * time.Millisecond, 600 * time.Millisecond, 1200 * time.Millisecond} {
		last = e2e.SHA(fmt.Sprint("api-", i+1))
		if err := e.GH.Push(e.Repo, n, last); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- e.RunOnce(d) }()
		time.Sleep(delay)
		proxy.Cut()
		err := <-done
		rel, _ := e.Release(n)
		t.Logf("cut after %s: cycle error %v; release status %q rev %d", delay, err, rel.Status, rel.Revision)
		if err != nil && strings.Contains(err.Error(), "upgrading release") {
			midOperation++
		}
		p, _, _ := d.Store.Get(context.Background(), key)
		if p.Status == model.StatusFailed || p.Attempts != 0 {
			t.Errorf("cut after %s: record %s with %d failed attempts (%s), want no attempt used", delay, p.Status, p.Attempts, p.LastError)
		}
		if !e.NSExists(e.NS(n)) {
			t.Fatalf("cut after %s: the namespace is gone", delay)
		}
		if err := proxy.Restore(); err != nil {
			t.Fatal(err)
		}
	}
	if midOperation == 0 {
		t.Error("no cut landed inside a Helm operation: the test did not exercise it")
	}
	// Back: converges at the last push (a release left pending by a cut
	// waits until helm_timeout + 15 s have passed).
	deadline := time.Now().Add(90 * time.Second)
	for {
		_ = e.RunOnce(d)
		p, _, _ := d.Store.Get(context.Background(), key)
		if p.Status == model.StatusReady && p.DeployedSHA == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged after the API server came back: %s %s (%s)", p.Status, model.ShortSHA(p.DeployedSHA), p.LastError)
		}
		time.Sleep(time.Second)
	}
	if img := e.DeploymentImage(n); img != e.Image+":"+last {
		t.Errorf("image = %s, want the last push", img)
	}
	attempts, err := d.Store.Attempts(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range attempts {
		if a.Outcome == model.OutcomeFailed {
			t.Errorf("attempt %d at %s failed: %s", a.Attempt, model.ShortSHA(a.SHA), a.Error)
		}
	}
	c := e.OneComment(n)
	if !strings.Contains(c.Body, "Preview ready") || !strings.Contains(c.Body, last[:7]) {
		t.Errorf("comment after the outages:\n%s", c.Body)
	}
}
