package wire_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/previewd/previewd/github/githubfake"
	"github.com/previewd/previewd/internal/harness/e2e"
	"github.com/previewd/previewd/internal/harness/testbed"
	"github.com/previewd/previewd/kube"
	"github.com/previewd/previewd/reconcile"
	"github.com/previewd/previewd/reconcile/model"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// TestPRLifecycle: opened → Ready with one comment carrying the URL; push →
// same namespace upgraded, same comment updated; merged → namespace gone and
// the comment says so.
func TestPRLifecycle(t *testing.T) {
	e := e2e.New(t, "")
	d := e.Daemon(false)
	sha1, sha2 := e2e.SHA("one"), e2e.SHA("two")
	n := e.Open("Add checkout", "feature/checkout,v2=x", sha1)

	start := time.Now()
	e.MustRunOnce(d)
	t.Logf("PR opened → Ready: %s", time.Since(start).Round(time.Millisecond))
	if img := e.DeploymentImage(n); img != "registry.example.com/acme/web:"+sha1 {
		t.Fatalf("image = %q", img)
	}
	c := e.OneComment(n)
	url := "https://" + e.NS(n) + ".preview.test"
	for _, want := range []string{"Preview ready", url, sha1[:7], `feature/checkout,v2=x`} {
		if !strings.Contains(c.Body, want) {
			t.Errorf("comment lacks %q:\n%s", want, c.Body)
		}
	}
	if p := e.Row(d, n); p.Status != model.StatusReady || p.DeployedSHA != sha1 {
		t.Errorf("row = %+v", p)
	}

	if err := e.GH.Push(e.Repo, n, sha2); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	e.MustRunOnce(d)
	t.Logf("push → Ready: %s", time.Since(start).Round(time.Millisecond))
	if img := e.DeploymentImage(n); img != "registry.example.com/acme/web:"+sha2 {
		t.Fatalf("image after push = %q", img)
	}
	c2 := e.OneComment(n)
	if c2.ID != c.ID || !strings.Contains(c2.Body, sha2[:7]) || strings.Contains(c2.Body, sha1[:7]) {
		t.Errorf("comment not updated in place: id %d→%d\n%s", c.ID, c2.ID, c2.Body)
	}

	if err := e.GH.MergePR(e.Repo, n); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	e.MustRunOnce(d)
	t.Logf("merged → namespace gone: %s", time.Since(start).Round(time.Millisecond))
	if e.NSExists(e.NS(n)) {
		t.Fatalf("namespace %s still exists after merge", e.NS(n))
	}
	c3 := e.OneComment(n)
	if c3.ID != c.ID || !strings.Contains(c3.Body, "Preview removed") {
		t.Errorf("comment after merge:\n%s", c3.Body)
	}
}

// TestFailingImage: a preview that cannot start fails with the reason on the
// PR after three attempts, then stays quiet until a new SHA.
func TestFailingImage(t *testing.T) {
	e := e2e.New(t, testbed.FailCrashLoop)
	d := e.Daemon(false)
	n := e.Open("Broken", "broken", e2e.SHA("broken"))
	start := time.Now()
	e.MustRunOnce(d) // an application failure is reported, not a daemon error
	t.Logf("three failing attempts took %s", time.Since(start).Round(time.Millisecond))
	p := e.Row(d, n)
	if p.Status != model.StatusFailed || p.Attempts != 3 || !strings.Contains(p.LastError, "CrashLoopBackOff") {
		t.Fatalf("row = status %s attempts %d error %q", p.Status, p.Attempts, p.LastError)
	}
	c := e.OneComment(n)
	for _, want := range []string{"Preview failed", "CrashLoopBackOff", "3 of 3", "push a new commit"} {
		if !strings.Contains(c.Body, want) {
			t.Errorf("comment lacks %q:\n%s", want, c.Body)
		}
	}
	attempts, _ := d.Store.Attempts(context.Background(), p.Key())
	before := e.GH.Counters()
	e.MustRunOnce(d)
	after := e.GH.Counters()
	again, _ := d.Store.Attempts(context.Background(), p.Key())
	if len(again) != len(attempts) {
		t.Errorf("a failed SHA was retried: %d → %d attempts", len(attempts), len(again))
	}
	if after.Mutations != before.Mutations {
		t.Errorf("quiet cycle sent %d mutations to GitHub", after.Mutations-before.Mutations)
	}
}

// TestImagePushedLater: CI pushes the preview's image minutes after the
// commit. The pull failure of the preview's own image is a wait, not a
// failed attempt: the PR says previewd waits for the image, and once the
// image is there the preview turns Ready without a new push.
func TestImagePushedLater(t *testing.T) {
	e := e2e.New(t, testbed.FailImagePull+"/web")
	d := e.Daemon(false)
	sha := e2e.SHA("late-image")
	n := e.Open("Image later", "late", sha)
	e.MustRunOnce(d) // run --once does not wait for the image
	p := e.Row(d, n)
	if p.Status != model.StatusWaiting || p.WaitingFor != model.WaitingForImage || p.Attempts != 0 || p.NextAttemptAt.IsZero() {
		t.Fatalf("row = status %s waiting for %q attempts %d next %v: %s", p.Status, p.WaitingFor, p.Attempts, p.NextAttemptAt, p.LastError)
	}
	c := e.OneComment(n)
	for _, want := range []string{"Waiting for the image", "ImagePullBackOff", "without a new push"} {
		if !strings.Contains(c.Body, want) {
			t.Errorf("comment lacks %q:\n%s", want, c.Body)
		}
	}
	if strings.Contains(c.Body, "push a new commit") {
		t.Errorf("a wait for the image asks for a new commit:\n%s", c.Body)
	}
	// Looking again before the image is there keeps waiting, and keeps
	// the comment as it is.
	time.Sleep(400 * time.Millisecond)
	before := e.GH.Counters()
	e.MustRunOnce(d)
	if p := e.Row(d, n); p.Status != model.StatusWaiting || p.Attempts != 0 {
		t.Fatalf("second look: status %s attempts %d", p.Status, p.Attempts)
	}
	if after := e.GH.Counters(); after.Mutations != before.Mutations {
		t.Errorf("an unchanged wait rewrote the comment (%d mutations)", after.Mutations-before.Mutations)
	}

	// CI pushes the image: the kubelet's next pull succeeds.
	ctx := context.Background()
	pods, err := e.Kube.Client.CoreV1().Pods(e.NS(n)).List(ctx, metav1.ListOptions{})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("pods of the preview: %v (%d)", err, len(pods.Items))
	}
	for _, pod := range pods.Items {
		patch := []byte(`{"metadata":{"annotations":{"previewd.test/image-pushed":"true"}}}`)
		if _, err := e.Kube.Client.CoreV1().Pods(e.NS(n)).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		time.Sleep(400 * time.Millisecond)
		e.MustRunOnce(d)
		if p := e.Row(d, n); p.Status == model.StatusReady {
			break
		}
		if time.Now().After(deadline) {
			p := e.Row(d, n)
			t.Fatalf("not Ready after the image was pushed: %s %q", p.Status, p.LastError)
		}
	}
	p = e.Row(d, n)
	if p.DeployedSHA != sha || p.Attempts != 0 || p.WaitingFor != "" {
		t.Errorf("ready row: deployed %s attempts %d waiting for %q", p.DeployedSHA, p.Attempts, p.WaitingFor)
	}
	if c := e.OneComment(n); !strings.Contains(c.Body, "Preview ready") {
		t.Errorf("comment after the image arrived:\n%s", c.Body)
	}
	atts, _ := d.Store.Attempts(ctx, p.Key())
	if len(atts) < 2 || atts[0].Outcome != model.OutcomeWaiting || atts[len(atts)-1].Outcome != model.OutcomeReady {
		t.Errorf("attempts: %+v", atts)
	}
}

// TestWaitForChecks: a repository with wait_for_checks deploys nothing
// (no namespace, no Helm operation) until its named check succeeds on the
// head SHA; the PR says what it waits for and why it was not deployed;
// plan shows the wait first; unchanged checks are read with free 304s; a
// re-run that succeeds deploys the same SHA within one cycle.
func TestWaitForChecks(t *testing.T) {
	e := e2e.New(t, "")
	e.AddRepoConfig("wait_for_checks: [build]\nchecks_timeout: 30m")
	d := e.Daemon(false)
	sha := e2e.SHA("checked")
	n := e.Open("Checked", "checked", sha)
	e.GH.SetCheckRun(e.Repo, sha, githubfake.CheckRun{Name: "build", Status: "in_progress"})
	e.GH.SetCheckRun(e.Repo, sha, githubfake.CheckRun{Name: "unrelated", Conclusion: "failure"})

	res, err := e.Daemon(true).Loop.Plan(context.Background())
	if err != nil || len(res.Actions) != 1 || res.Actions[0].Kind != reconcile.KindWait ||
		res.Actions[0].Reason != "Waiting for checks: build (in progress)" {
		t.Fatalf("plan before run: %v %+v", err, res.Actions)
	}
	e.MustRunOnce(d)
	if e.NSExists(e.NS(n)) {
		t.Fatal("namespace created before the check succeeded")
	}
	p := e.Row(d, n)
	if p.Status != model.StatusWaiting || p.WaitingFor != model.WaitingForChecks {
		t.Fatalf("row: %s waiting for %q", p.Status, p.WaitingFor)
	}
	if c := e.OneComment(n); !strings.Contains(c.Body, "Waiting for checks") || !strings.Contains(c.Body, "build \\(in progress\\)") {
		t.Errorf("comment while waiting:\n%s", c.Body)
	}
	// Nothing changed: the checks are read again, free (304), and nothing
	// is written. (The first cycle after previewd's own comment reads the
	// PR list in full: the comment changed its ETag.)
	e.MustRunOnce(d)
	before := e.GH.Counters()
	e.MustRunOnce(d)
	after := e.GH.Counters()
	if after.Charged != before.Charged || after.Mutations != before.Mutations {
		t.Errorf("an idle waiting cycle: %d charged, %d mutations\nbefore %v\nafter  %v", after.Charged-before.Charged, after.Mutations-before.Mutations, before.ByRoute, after.ByRoute)
	}
	if got := after.ByRoute[githubfake.RouteListCheckRuns][http.StatusNotModified] - before.ByRoute[githubfake.RouteListCheckRuns][http.StatusNotModified]; got != 1 {
		t.Errorf("check runs read %d times with a 304 in an idle cycle, want 1", got)
	}

	e.GH.SetCheckRun(e.Repo, sha, githubfake.CheckRun{Name: "build", Conclusion: "failure"})
	e.MustRunOnce(d)
	if e.NSExists(e.NS(n)) {
		t.Fatal("namespace created although the check failed")
	}
	if c := e.OneComment(n); !strings.Contains(c.Body, "Not deployed: a required check failed") || !strings.Contains(c.Body, "check build failed") {
		t.Errorf("comment after the failure:\n%s", c.Body)
	}

	e.GH.AddCheckRun(e.Repo, sha, githubfake.CheckRun{Name: "build", Conclusion: "success"}) // a re-run
	e.MustRunOnce(d)
	p = e.Row(d, n)
	if p.Status != model.StatusReady || p.DeployedSHA != sha || !e.NSExists(e.NS(n)) {
		t.Fatalf("after a successful re-run: %s deployed %s: %s", p.Status, p.DeployedSHA, p.LastError)
	}
	if c := e.OneComment(n); !strings.Contains(c.Body, "Preview ready") {
		t.Errorf("comment when ready:\n%s", c.Body)
	}
	// Ready: its checks are not read any more.
	before = e.GH.Counters()
	e.MustRunOnce(d)
	after = e.GH.Counters()
	if got := after.ByRoute[githubfake.RouteListCheckRuns]; len(got) != len(before.ByRoute[githubfake.RouteListCheckRuns]) ||
		sum(got) != sum(before.ByRoute[githubfake.RouteListCheckRuns]) {
		t.Errorf("checks of a deployed SHA read again: %v → %v", before.ByRoute[githubfake.RouteListCheckRuns], got)
	}
}

func sum(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestWorkloadsBreakAndRecover: a Ready preview whose workloads break (the
// Deployment edited to an image that crash-loops) is reported failed with
// the reason, not left "ready"; when the workloads are Ready again the
// preview is reported Ready without a new push.
func TestWorkloadsBreakAndRecover(t *testing.T) {
	e := e2e.New(t, "")
	d := e.Daemon(false)
	sha := e2e.SHA("recover")
	n := e.Open("Recover", "recover", sha)
	e.MustRunOnce(d)
	if p := e.Row(d, n); p.Status != model.StatusReady {
		t.Fatalf("not ready: %s %q", p.Status, p.LastError)
	}
	ctx := context.Background()
	setImage := func(image string) {
		t.Helper()
		deps, err := e.Kube.Client.AppsV1().Deployments(e.NS(n)).List(ctx, metav1.ListOptions{})
		if err != nil || len(deps.Items) != 1 {
			t.Fatalf("deployments: %v (%d)", err, len(deps.Items))
		}
		dep := deps.Items[0]
		dep.Spec.Template.Spec.Containers[0].Image = image
		if _, err := e.Kube.Client.AppsV1().Deployments(e.NS(n)).Update(ctx, &dep, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	good := e.DeploymentImage(n)
	setImage(testbed.FailCrashLoop + "/web:" + sha)
	waitFor := func(what string, want model.Status) model.Preview {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for {
			e.MustRunOnce(d)
			p := e.Row(d, n)
			if p.Status == want {
				return p
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still %s (%q)", what, p.Status, p.LastError)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	p := waitFor("after the workloads broke", model.StatusFailed)
	if !strings.Contains(p.LastError, "CrashLoopBackOff") || p.DesiredSHA != sha {
		t.Errorf("broken preview: %q", p.LastError)
	}
	if c := e.OneComment(n); !strings.Contains(c.Body, "Preview failed") || !strings.Contains(c.Body, "CrashLoopBackOff") {
		t.Errorf("comment after the breakage:\n%s", c.Body)
	}
	setImage(good)
	p = waitFor("after the workloads recovered", model.StatusReady)
	if p.DeployedSHA != sha || e.GH.HeadSHA(e.Repo, n) != sha {
		t.Errorf("recovered at %s, head %s", p.DeployedSHA, e.GH.HeadSHA(e.Repo, n))
	}
	if c := e.OneComment(n); !strings.Contains(c.Body, "Preview ready") {
		t.Errorf("comment after the recovery:\n%s", c.Body)
	}
}

// TestConfigurationChangeUpgrades: a change of the repository's values
// (or its chart) reaches running previews: plan shows the upgrade first,
// run applies it, and the next plan is empty.
func TestConfigurationChangeUpgrades(t *testing.T) {
	e := e2e.New(t, "")
	d := e.Daemon(false)
	n := e.Open("Drift", "drift", e2e.SHA("drift"))
	e.MustRunOnce(d)
	if p := e.Row(d, n); p.Status != model.StatusReady || p.DeployedFingerprint == "" {
		t.Fatalf("not ready with a fingerprint: %s %q", p.Status, p.DeployedFingerprint)
	}
	if res, err := e.Daemon(true).Loop.Plan(context.Background()); err != nil || len(res.Actions) != 0 {
		t.Fatalf("plan right after the deploy: %v %v", err, res.Actions)
	}
	cfg, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(cfg), `GREETING: "hello {{ .PR.Branch }}"`, `GREETING: "bonjour {{ .PR.Branch }}"`, 1)
	if changed == string(cfg) {
		t.Fatal("test config has no GREETING value to change")
	}
	if err := os.WriteFile(e.ConfigPath, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	d2 := e.Daemon(false) // previewd restarted with the new configuration
	res, err := e.Daemon(true).Loop.Plan(context.Background())
	if err != nil || len(res.Actions) != 1 || res.Actions[0].State != reconcile.StateDrifted || res.Actions[0].Reason != "configuration changed" {
		t.Fatalf("plan after the change: %v %+v", err, res.Actions)
	}
	e.MustRunOnce(d2)
	rel, err := e.Release(n)
	if err != nil {
		t.Fatal(err)
	}
	env, _ := rel.Values["env"].(map[string]any)
	if env["GREETING"] != "bonjour drift" || rel.Revision != 2 {
		t.Errorf("release after the change: revision %d, env %v", rel.Revision, env)
	}
	if res, err := e.Daemon(true).Loop.Plan(context.Background()); err != nil || len(res.Actions) != 0 {
		t.Errorf("plan after the upgrade: %v %v", err, res.Actions)
	}
}

// TestGitHubOutageDeletesNothing: 5xx and 429 answers for several cycles
// delete nothing and duplicate no comment; the next good cycle recovers.
func TestGitHubOutageDeletesNothing(t *testing.T) {
	e := e2e.New(t, "")
	d := e.Daemon(false)
	n := e.Open("Keep me", "keep", e2e.SHA("keep"))
	e.MustRunOnce(d)
	if !e.NSExists(e.NS(n)) {
		t.Fatal("preview not created")
	}
	// The PR really is closed meanwhile, but GitHub cannot say so.
	if err := e.GH.ClosePR(e.Repo, n); err != nil {
		t.Fatal(err)
	}
	for i, status := range []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		id := e.GH.AddFault(githubfake.Fault{Route: githubfake.RouteListPulls, Status: status, RetryAfter: time.Second})
		if err := e.RunOnce(d); err == nil {
			t.Errorf("cycle %d with GitHub answering %d reported success", i, status)
		}
		e.GH.RemoveFault(id)
		if !e.NSExists(e.NS(n)) {
			t.Fatalf("namespace deleted while GitHub answered %d", status)
		}
		time.Sleep(1100 * time.Millisecond) // let a Retry-After hold pass
	}
	// The list answers, but the confirming GET fails: still nothing deleted.
	id := e.GH.AddFault(githubfake.Fault{Route: githubfake.RouteGetPull, Status: http.StatusInternalServerError})
	_ = e.RunOnce(d)
	if !e.NSExists(e.NS(n)) {
		t.Fatal("namespace deleted on an unconfirmed closure")
	}
	e.GH.RemoveFault(id)
	e.MustRunOnce(d)
	if e.NSExists(e.NS(n)) {
		t.Fatal("namespace not deleted once GitHub recovered")
	}
	if c := e.OneComment(n); !strings.Contains(c.Body, "Preview removed") {
		t.Errorf("comment after recovery:\n%s", c.Body)
	}
}

// TestForeignNamespaceUntouched: a namespace of the preview's name that
// previewd does not own is never changed or deleted; the PR says why.
func TestForeignNamespaceUntouched(t *testing.T) {
	e := e2e.New(t, "")
	ctx := context.Background()
	name := kube.NamespaceName(e.Repo, 1)
	if _, err := e.Kube.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name, Labels: map[string]string{"team": "payments"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Kube.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}) })
	if _, err := e.Kube.Client.CoreV1().ConfigMaps(name).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "precious"},
		Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d := e.Daemon(false)
	n := e.Open("Collides", "collide", e2e.SHA("collide"))
	if n != 1 {
		t.Fatalf("PR number %d", n)
	}
	_ = e.RunOnce(d)
	c := e.OneComment(n)
	if !strings.Contains(c.Body, "not managed by previewd") {
		t.Errorf("comment does not explain:\n%s", c.Body)
	}
	if err := e.GH.ClosePR(e.Repo, n); err != nil {
		t.Fatal(err)
	}
	_ = e.RunOnce(d)
	live, err := e.Kube.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil || live.DeletionTimestamp != nil {
		t.Fatalf("foreign namespace gone or terminating: %v", err)
	}
	if live.Labels[kube.LabelManagedBy] != "" || live.Labels["team"] != "payments" {
		t.Errorf("foreign namespace labels changed: %v", live.Labels)
	}
	if _, err := e.Kube.Client.CoreV1().ConfigMaps(name).Get(ctx, "precious", metav1.GetOptions{}); err != nil {
		t.Errorf("foreign content touched: %v", err)
	}
	secrets, _ := e.Kube.Client.CoreV1().Secrets(name).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm"})
	if len(secrets.Items) != 0 {
		t.Errorf("a Helm release was installed into the foreign namespace")
	}
}

// TestRestartChangesNothing: a new daemon on the same database makes no
// Helm operation and no charged GitHub request when nothing changed.
func TestRestartChangesNothing(t *testing.T) {
	e := e2e.New(t, "")
	d := e.Daemon(false)
	n1 := e.Open("One", "one", e2e.SHA("r1"))
	n2 := e.Open("Two", "two", e2e.SHA("r2"))
	e.MustRunOnce(d)
	// Posting the comments changed the PRs' updated_at (as on GitHub), so
	// one more cycle reads the list as it now is: the steady state.
	e.MustRunOnce(d)
	revs := map[int]int{}
	for _, n := range []int{n1, n2} {
		rel, err := e.Release(n)
		if err != nil || !rel.Exists {
			t.Fatalf("release in %s: %v", e.NS(n), err)
		}
		revs[n] = rel.Revision
	}
	d.Close()

	restarted := e.Daemon(false)
	before := e.GH.Counters()
	e.MustRunOnce(restarted)
	e.MustRunOnce(restarted)
	after := e.GH.Counters()
	t.Logf("two idle cycles after restart: %d requests, %d charged, %d not modified",
		after.Requests-before.Requests, after.Charged-before.Charged, after.NotModified-before.NotModified)
	if after.Charged != before.Charged {
		t.Errorf("restart with nothing changed cost %d charged GitHub requests", after.Charged-before.Charged)
	}
	if after.Mutations != before.Mutations {
		t.Errorf("restart with nothing changed sent %d mutations", after.Mutations-before.Mutations)
	}
	for _, n := range []int{n1, n2} {
		rel, _ := e.Release(n)
		if rel.Revision != revs[n] {
			t.Errorf("release in %s went from revision %d to %d", e.NS(n), revs[n], rel.Revision)
		}
	}
}

// TestPostgresConnectionsLost: PostgreSQL dropping every connection (a
// restart, a failover) costs at most one cycle; the next converges.
func TestPostgresConnectionsLost(t *testing.T) {
	e := e2e.New(t, "")
	d := e.Daemon(false)
	n := e.Open("PG", "pg", e2e.SHA("pg1"))
	e.MustRunOnce(d)
	admin, err := pgx.Connect(context.Background(), e.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var killed int
	if err := admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	t.Logf("terminated %d connections", killed)
	if err := e.GH.Push(e.Repo, n, e2e.SHA("pg2")); err != nil {
		t.Fatal(err)
	}
	first := e.RunOnce(d)
	t.Logf("cycle right after the connections were lost: %v", first)
	e.MustRunOnce(d)
	if img := e.DeploymentImage(n); img != "registry.example.com/acme/web:"+e2e.SHA("pg2") {
		t.Errorf("image = %q", img)
	}
	if p := e.Row(d, n); p.Status != model.StatusReady || p.DeployedSHA != e2e.SHA("pg2") {
		t.Errorf("row = %s %s", p.Status, p.DeployedSHA)
	}
	e.OneComment(n)
	if err := d.Ready(context.Background()); err != nil {
		t.Errorf("readyz after recovery: %v", err)
	}
	d.Store.Close() // PostgreSQL unreachable from the daemon's point of view
	if err := d.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Errorf("readyz without PostgreSQL: %v", err)
	}
}

// TestAPIServerDown: with the API server unreachable a cycle fails, plans
// nothing against the cluster and tells GitHub nothing; when it is back,
// the same daemon converges.
func TestAPIServerDown(t *testing.T) {
	e := e2e.New(t, "")
	n := e.Open("Down", "down", e2e.SHA("down"))
	good, err := os.ReadFile(e.Kube.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	// Point the kubeconfig at a closed port.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	_ = l.Close()
	bad := regexp.MustCompile(`server: https://[0-9.:]+`).ReplaceAll(good, []byte("server: https://"+dead))
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	cfgText, _ := os.ReadFile(e.ConfigPath)
	if err := os.WriteFile(e.ConfigPath, []byte(strings.Replace(string(cfgText), e.Kube.Kubeconfig, kc, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	d := e.Daemon(false)
	before := e.GH.Counters()
	if err := e.RunOnce(d); err == nil || !strings.Contains(err.Error(), "observing the cluster") {
		t.Fatalf("cycle with the API server down: %v", err)
	}
	if after := e.GH.Counters(); after.Mutations != before.Mutations {
		t.Errorf("%d GitHub mutations while the cluster was unreachable", after.Mutations-before.Mutations)
	}
	if err := d.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "Kubernetes API server") {
		t.Errorf("readyz with the API server down: %v", err)
	}
	if err := os.WriteFile(kc, good, 0o600); err != nil {
		t.Fatal(err)
	}
	d2 := e.Daemon(false)
	e.MustRunOnce(d2)
	if p := e.Row(d2, n); p.Status != model.StatusReady {
		t.Errorf("after recovery: %s", p.Status)
	}
	if err := d2.Ready(context.Background()); err != nil {
		t.Errorf("readyz after recovery: %v", err)
	}
}

// TestIdleCyclesWriteNothing: once every preview is Ready, idle cycles
// write no row to PostgreSQL (records, attempts, release records, HTTP
// cache) although every GitHub answer is revalidated (the fake's clock is
// behind, so every cached response is stale and answered 304).
func TestIdleCyclesWriteNothing(t *testing.T) {
	e := e2e.New(t, "", githubfake.Options{Now: func() time.Time { return time.Now().Add(-5 * time.Minute) }})
	d := e.Daemon(false)
	for i := range 3 {
		e.Open(fmt.Sprint("Idle ", i), fmt.Sprint("idle-", i), e2e.SHA(fmt.Sprint("idle-", i)))
	}
	e.MustRunOnce(d)
	e.MustRunOnce(d) // the first revalidations (bodies already stored)
	conn, err := pgx.Connect(context.Background(), e.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// A row written (inserted, updated, deleted) changes its table's set
	// of row versions (xmin, ctid).
	writes := func() map[string]string {
		out := map[string]string{}
		for _, table := range []string{"previews", "deploy_attempts", "helm_releases", "http_cache"} {
			var v string
			if err := conn.QueryRow(context.Background(), `SELECT count(*) || ':' || coalesce(md5(string_agg(xmin::text || ctid::text, ',' ORDER BY ctid)), '')
				FROM `+table).Scan(&v); err != nil {
				t.Fatal(err)
			}
			out[table] = v
		}
		return out
	}
	before, gh := writes(), e.GH.Counters()
	for range 5 {
		e.MustRunOnce(d)
	}
	after, gh2 := writes(), e.GH.Counters()
	if gh2.NotModified == gh.NotModified {
		t.Fatal("no revalidation happened: the test did not exercise it")
	}
	for table, v := range after {
		if v != before[table] {
			t.Errorf("rows of %s written in 5 idle cycles (%s → %s), want none", table, before[table], v)
		}
	}
	t.Logf("5 idle cycles: %d requests, %d charged, %d answered 304", gh2.Requests-gh.Requests, gh2.Charged-gh.Charged, gh2.NotModified-gh.NotModified)
}
