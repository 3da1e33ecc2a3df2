package wire_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/github/githubfake"
	"github.com/previewd/previewd/internal/harness/e2e"
	"github.com/previewd/previewd/internal/harness/promtext"
	"github.com/previewd/previewd/internal/wire"
	"github.com/previewd/previewd/kube"
	"github.com/previewd/previewd/reconcile"
	"github.com/previewd/previewd/reconcile/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// editConfig rewrites the test's configuration file.
func editConfig(t *testing.T, e *e2e.Env, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	changed := edit(string(b))
	if changed == string(b) {
		t.Fatal("the configuration edit changed nothing")
	}
	if err := os.WriteFile(e.ConfigPath, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
}

// addRepository appends a second repository with the test chart.
func addRepository(t *testing.T, e *e2e.Env, name string) {
	t.Helper()
	editConfig(t, e, func(s string) string {
		return s + fmt.Sprintf("  - name: %s\n    chart: %q\n    image: registry.example.com/acme/other\n", name, filepath.Join(e2e.RepoRoot(), "charts", "preview-app"))
	})
}

func scrape(t *testing.T, d *wire.Daemon, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func skipsOf(res reconcile.Result, state reconcile.State) []reconcile.Skip {
	var out []reconcile.Skip
	for _, s := range res.Skipped {
		if s.State == state {
			out = append(out, s)
		}
	}
	return out
}

// TestRepositoryRemovedFromTheConfiguration: the previews of a repository
// taken out of the configuration are reported (plan, metric) and left
// alone during orphan_grace (no comment edits), then removed; when GitHub
// refuses the last comment (an archived repository), it is not retried.
func TestRepositoryRemovedFromTheConfiguration(t *testing.T) {
	e := e2e.New(t, "")
	editConfig(t, e, func(s string) string { return "orphan_grace: 3s\n" + s })
	d := e.Daemon(false)
	n := e.Open("Soon orphaned", "orphan", e2e.SHA("orphan"))
	e.MustRunOnce(d)
	if p := e.Row(d, n); p.Status != model.StatusReady {
		t.Fatalf("not ready: %s %s", p.Status, p.LastError)
	}
	other := strings.Replace(e.Repo, "web-", "other-", 1)
	e.GH.AddRepo(other)
	editConfig(t, e, func(s string) string { return strings.Replace(s, "- name: "+e.Repo, "- name: "+other, 1) })

	d2 := e.Daemon(false)
	before := e.GH.Counters()
	e.MustRunOnce(d2)
	e.MustRunOnce(d2)
	if !e.NSExists(e.NS(n)) {
		t.Fatal("the namespace went before orphan_grace")
	}
	if m := e.GH.Counters().Mutations - before.Mutations; m != 0 {
		t.Errorf("%d GitHub writes during the grace, want 0 (no comment re-edits)", m)
	}
	res, err := d2.Loop.Plan(context.Background())
	if err != nil || len(skipsOf(res, reconcile.StateOrphaned)) != 1 || len(res.Actions) != 0 {
		t.Errorf("plan during the grace: %v, actions %v, skips %+v", err, res.Actions, res.Skipped)
	}
	if v, ok := metric(t, d2, "previewd_orphaned_previews", "repository", e.Repo); !ok || v != 1 {
		t.Errorf("previewd_orphaned_previews{repository=%q} = %v (%v), want 1", e.Repo, v, ok)
	}

	// The repository was archived: GitHub refuses comment edits.
	e.GH.AddFault(githubfake.Fault{Route: githubfake.RouteEditIssueComment, Repo: e.Repo, Status: http.StatusForbidden,
		Message: "Repository was archived so is read-only."})
	time.Sleep(3 * time.Second)
	_ = e.RunOnce(d2)
	if e.NSExists(e.NS(n)) {
		t.Fatal("namespace kept after orphan_grace")
	}
	if p, ok, _ := d2.Store.Get(context.Background(), model.Key{Repo: e.Repo, Number: n}); !ok || p.Status != model.StatusDeleted {
		t.Errorf("row after the removal: %+v", p)
	}
	edits := e.GH.Counters().Route(githubfake.RouteEditIssueComment, 0)
	e.MustRunOnce(d2)
	e.MustRunOnce(d2)
	if again := e.GH.Counters().Route(githubfake.RouteEditIssueComment, 0); again != edits {
		t.Errorf("refused comment edits retried: %d → %d", edits, again)
	}
}

// TestRepositoryNameLetterCase: the configuration's name changing only in
// letter case changes nothing: same namespace, same single comment, no
// deletion.
func TestRepositoryNameLetterCase(t *testing.T) {
	e := e2e.New(t, "")
	upper := "Acme/" + strings.ToUpper(e.Repo[len("acme/"):len("acme/")+1]) + e.Repo[len("acme/")+1:]
	editConfig(t, e, func(s string) string { return strings.Replace(s, "- name: "+e.Repo, "- name: "+upper, 1) })
	d := e.Daemon(false)
	n := e.Open("Case", "case", e2e.SHA("case"))
	e.MustRunOnce(d)
	c := e.OneComment(n)
	editConfig(t, e, func(s string) string { return strings.Replace(s, "- name: "+upper, "- name: "+e.Repo, 1) })
	d2 := e.Daemon(false)
	res, err := d2.Loop.Plan(context.Background())
	if err != nil || len(res.Actions) != 0 {
		t.Fatalf("plan after the case change: %v %v", err, res.Actions)
	}
	e.MustRunOnce(d2)
	if got := e.OneComment(n); got.ID != c.ID || !e.NSExists(e.NS(n)) {
		t.Errorf("comment %d → %d, namespace exists %v", c.ID, got.ID, e.NSExists(e.NS(n)))
	}
}

// TestUnreadableRepository: GitHub answers 404 for one configured
// repository. Its previews are kept, the other repository converges, the
// cycle is successful (/readyz ready, last successful sync advances) and
// the repository is named by a metric and the plan.
func TestUnreadableRepository(t *testing.T) {
	e := e2e.New(t, "")
	gone := strings.Replace(e.Repo, "web-", "gone-", 1)
	e.GH.AddRepo(gone)
	addRepository(t, e, gone)
	d := e.Daemon(false)
	gn := e.GH.OpenPR(gone, githubfake.PR{Title: "Before", SHA: e2e.SHA("before")})
	e.MustRunOnce(d)
	goneNS := kube.NamespaceName(gone, gn)
	if !e.NSExists(goneNS) {
		t.Fatal("the second repository's preview was not deployed")
	}

	// The repository is deleted (or previewd's access removed): 404.
	e.GH.AddFault(githubfake.Fault{Route: githubfake.RouteListPulls, Repo: gone, Status: http.StatusNotFound})
	d2 := e.Daemon(false) // a restart: readiness must come back
	n := e.Open("After", "after", e2e.SHA("after"))
	if err := e.RunOnce(d2); err != nil {
		t.Fatalf("one unreadable repository failed the cycle: %v", err)
	}
	if p := e.Row(d2, n); p.Status != model.StatusReady {
		t.Errorf("the readable repository did not converge: %s", p.Status)
	}
	if !e.NSExists(goneNS) {
		t.Error("the unreadable repository's preview was deleted")
	}
	if d2.Loop.LastSuccess().IsZero() {
		t.Error("last successful sync did not advance")
	}
	if code, body := scrape(t, d2, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %s", code, body)
	}
	for repo, want := range map[string]float64{gone: 0, e.Repo: 1} {
		if v, ok := metric(t, d2, "previewd_repository_up", "repository", repo); !ok || v != want {
			t.Errorf("previewd_repository_up{repository=%q} = %v (%v), want %v", repo, v, ok, want)
		}
	}
	res, _ := d2.Loop.Plan(context.Background())
	found := false
	for _, s := range res.Skipped {
		if s.Repo == gone && strings.Contains(s.Reason, "no deletion planned") {
			found = true
		}
	}
	if !found || len(res.Actions) != 0 {
		t.Errorf("plan does not name %s: %+v, actions %v", gone, res.Skipped, res.Actions)
	}
}

func metric(t *testing.T, d *wire.Daemon, name string, labels ...string) (float64, bool) {
	t.Helper()
	_, body := scrape(t, d, "/metrics")
	m, err := promtext.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return m.Get(name, labels...)
}

// TestRenamedRepository: the repository is renamed on GitHub while the
// configuration keeps the old name. GitHub redirects (301 for reads, 307
// for writes); previewd follows: the push deploys, the same comment is
// edited, the merge deletes the namespace.
func TestRenamedRepository(t *testing.T) {
	e := e2e.New(t, "")
	d := e.Daemon(false)
	n := e.Open("Rename", "rename", e2e.SHA("rename-1"))
	e.MustRunOnce(d)
	c := e.OneComment(n)
	renamed := e.Repo + "-renamed"
	if err := e.GH.RenameRepo(e.Repo, renamed); err != nil {
		t.Fatal(err)
	}
	if err := e.GH.Push(renamed, n, e2e.SHA("rename-2")); err != nil {
		t.Fatal(err)
	}
	e.MustRunOnce(d)
	if img := e.DeploymentImage(n); img != e.Image+":"+e2e.SHA("rename-2") {
		t.Errorf("after the rename and a push: image %s", img)
	}
	cs := e.GH.Comments(renamed, n)
	if len(cs) != 1 || cs[0].ID != c.ID || !strings.Contains(cs[0].Body, e2e.SHA("rename-2")[:7]) {
		t.Errorf("comments after the rename: %+v", cs)
	}
	moved := e.GH.Counters().Route(githubfake.RouteListPulls, http.StatusMovedPermanently) +
		e.GH.Counters().Route(githubfake.RouteEditIssueComment, http.StatusTemporaryRedirect)
	if moved == 0 {
		t.Error("no request met the redirect: the test did not exercise it")
	}

	// The configuration is changed to the new name: the preview is moved
	// (record, namespace, comment), not orphaned and recreated.
	second := e.GH.OpenPR(renamed, githubfake.PR{Title: "Second", Branch: "second", SHA: e2e.SHA("rename-3"), Author: "octocat"})
	e.MustRunOnce(d)
	editConfig(t, e, func(s string) string { return strings.Replace(s, "- name: "+e.Repo, "- name: "+renamed, 1) })
	d2 := e.Daemon(false)
	res, err := d2.Loop.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, a := range res.Actions {
		kinds = append(kinds, fmt.Sprintf("%s#%d %s %s", a.Repo, a.Number, a.Kind, a.Namespace))
	}
	want := []string{fmt.Sprintf("%s#%d rename %s", renamed, n, e.NS(n)), fmt.Sprintf("%s#%d rename %s", renamed, second, e.NS(second))}
	if !slices.Equal(kinds, want) {
		t.Errorf("plan after the configuration names the new name: %q, want %q", kinds, want)
	}
	writes := e.GH.Counters().Mutations
	e.MustRunOnce(d2)
	e.MustRunOnce(d2)
	for _, num := range []int{n, second} {
		if p, ok, _ := d2.Store.Get(context.Background(), model.Key{Repo: renamed, Number: num}); !ok || p.Status != model.StatusReady || p.Namespace != e.NS(num) {
			t.Errorf("#%d under the new name: %+v (found %v), want ready in %s", num, p, ok, e.NS(num))
		}
		if _, ok, _ := d2.Store.Get(context.Background(), model.Key{Repo: e.Repo, Number: num}); ok {
			t.Errorf("#%d still recorded under the old name", num)
		}
		if cs := e.GH.Comments(renamed, num); len(cs) != 1 {
			t.Errorf("#%d has %d comments, want its one comment kept", num, len(cs))
		}
	}
	if got := e.GH.Counters().Mutations - writes; got > 2 {
		t.Errorf("%d GitHub writes for the move, want at most one comment edit per PR", got)
	}
	if skips := skipsOf(res, reconcile.StateOrphaned); len(skips) != 0 {
		t.Errorf("orphaned after the move: %+v", skips)
	}
	if v, ok := metric(t, d2, "previewd_orphaned_previews", "repository", e.Repo); ok && v != 0 {
		t.Errorf("previewd_orphaned_previews{repository=%q} = %v, want 0", e.Repo, v)
	}
	if ns, err := e.Kube.Client.CoreV1().Namespaces().Get(context.Background(), e.NS(n), metav1.GetOptions{}); err != nil ||
		ns.Annotations[kube.AnnotationRepository] != renamed || ns.Labels[kube.LabelRepository] != kube.RepositoryLabel(renamed) {
		t.Errorf("namespace %s: %v, want it moved to %s", e.NS(n), err, renamed)
	}
	// A push after the move upgrades the same namespace.
	if err := e.GH.Push(renamed, n, e2e.SHA("rename-4")); err != nil {
		t.Fatal(err)
	}
	e.MustRunOnce(d2)
	if img := e.DeploymentImage(n); img != e.Image+":"+e2e.SHA("rename-4") {
		t.Errorf("after the move and a push: image %s", img)
	}
	if err := e.GH.MergePR(renamed, n); err != nil {
		t.Fatal(err)
	}
	e.MustRunOnce(d2)
	if e.NSExists(e.NS(n)) {
		t.Error("namespace kept after the merge")
	}
}
