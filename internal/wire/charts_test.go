package wire_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/github/githubfake"
	"github.com/previewd/previewd/internal/harness/e2e"
	"github.com/previewd/previewd/internal/harness/ociregistry"
	"github.com/previewd/previewd/reconcile"
	"github.com/previewd/previewd/reconcile/model"
)

func release(t *testing.T, e *e2e.Env, n int) model.Release {
	t.Helper()
	rel, err := e.Release(n)
	if err != nil || !rel.Exists {
		t.Fatalf("release in %s: %v (exists %v)", e.NS(n), err, rel.Exists)
	}
	return rel
}

// TestChartFromTheRepository: chart: repo:deploy/chart deploys the chart
// the PR carries at its head SHA. A commit that changes the chart gets the
// new chart; a commit whose chart does not render fails with Helm's
// message on the PR, each attempt counted, and the archive read once for
// the SHA; a fork's PR reads nothing.
func TestChartFromTheRepository(t *testing.T) {
	e := e2e.New(t, "")
	e.SetChart("chart: repo:deploy/chart")
	d := e.Daemon(false)
	ctx := context.Background()

	sha1, sha2, sha3 := e2e.SHA("chart-1"), e2e.SHA("chart-2"), e2e.SHA("chart-3")
	e.GH.SetFiles(e.Repo, sha1, e2e.ChartFiles(t, "", "deploy/chart", map[string]string{"../../README.md": "app"}))
	n := e.Open("Repo chart", "repo-chart", sha1)
	e.MustRunOnce(d)
	if p := e.Row(d, n); p.Status != model.StatusReady {
		t.Fatalf("sha1: %s %s", p.Status, p.LastError)
	}
	if rel := release(t, e, n); rel.ChartVersion != "0.1.0" || rel.SHA != sha1 {
		t.Errorf("sha1 release: chart %s at %s", rel.ChartVersion, rel.SHA)
	}

	// The PR changes its chart: a new version with one more object.
	e.GH.SetFiles(e.Repo, sha2, e2e.ChartFiles(t, "", "deploy/chart", map[string]string{
		"Chart.yaml":        "apiVersion: v2\nname: preview-app\nversion: 0.2.0\n",
		"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: added-in-the-pr\ndata:\n  sha: {{ .Values.image.tag | quote }}\n",
	}))
	if err := e.GH.Push(e.Repo, n, sha2); err != nil {
		t.Fatal(err)
	}
	e.MustRunOnce(d)
	if p := e.Row(d, n); p.Status != model.StatusReady || p.DeployedSHA != sha2 {
		t.Fatalf("sha2: %s %s", p.Status, p.LastError)
	}
	if rel := release(t, e, n); rel.ChartVersion != "0.2.0" {
		t.Errorf("sha2 release: chart %s, want the PR's 0.2.0", rel.ChartVersion)
	}
	cm, err := e.Kube.Client.CoreV1().ConfigMaps(e.NS(n)).Get(ctx, "added-in-the-pr", metav1.GetOptions{})
	if err != nil || cm.Data["sha"] != sha2 {
		t.Errorf("the PR's new template was not installed: %v %v", err, cm)
	}

	// A template that does not parse.
	e.GH.SetFiles(e.Repo, sha3, e2e.ChartFiles(t, "", "deploy/chart", map[string]string{
		"templates/broken.yaml": "{{ .Values.image.tag | nosuchfunction }}\n",
	}))
	if err := e.GH.Push(e.Repo, n, sha3); err != nil {
		t.Fatal(err)
	}
	e.MustRunOnce(d)
	p := e.Row(d, n)
	if p.Status != model.StatusFailed || p.Attempts != 3 || !strings.Contains(p.LastError, `function "nosuchfunction" not defined`) {
		t.Fatalf("sha3: status %s attempts %d error %q", p.Status, p.Attempts, p.LastError)
	}
	c := e.OneComment(n)
	for _, want := range []string{"Preview failed", `function "nosuchfunction" not defined`, "repo:deploy/chart", "3 of 3"} {
		if !strings.Contains(c.Body, want) {
			t.Errorf("comment lacks %q:\n%s", want, c.Body)
		}
	}
	for _, sha := range []string{sha1, sha2, sha3} {
		if n := e.GH.Downloads(e.Repo, sha); n != 1 {
			t.Errorf("archive of %s downloaded %d times, want once", sha[:7], n)
		}
	}
	if rel := release(t, e, n); rel.SHA != sha2 || rel.Status != "deployed" {
		t.Errorf("a chart that does not render changed the running release: %s %s", rel.SHA, rel.Status)
	}

	// GitHub fails while the chart of a new commit is fetched: no attempt
	// of the SHA is used up; the next cycle deploys it.
	sha4 := e2e.SHA("chart-4")
	e.GH.SetFiles(e.Repo, sha4, e2e.ChartFiles(t, "", "deploy/chart", nil))
	if err := e.GH.Push(e.Repo, n, sha4); err != nil {
		t.Fatal(err)
	}
	fault := e.GH.AddFault(githubfake.Fault{Route: githubfake.RouteGetTarball, Status: http.StatusBadGateway})
	_ = e.RunOnce(d) // the cycle reports the fetch failure
	if p := e.Row(d, n); p.Status == model.StatusFailed || p.Attempts != 0 || p.DesiredSHA != sha4 {
		t.Fatalf("GitHub 502 on the chart: status %s attempts %d (%s)", p.Status, p.Attempts, p.LastError)
	}
	e.GH.RemoveFault(fault)
	e.MustRunOnce(d)
	if p := e.Row(d, n); p.Status != model.StatusReady || p.DeployedSHA != sha4 {
		t.Fatalf("after GitHub recovered: %s %s", p.Status, p.LastError)
	}

	// A chart that reaches outside the preview's namespace is refused
	// before anything is applied.
	sha5 := e2e.SHA("chart-5")
	e.GH.SetFiles(e.Repo, sha5, e2e.ChartFiles(t, "", "deploy/chart", map[string]string{
		"templates/escape.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: escaped-" + e2e.SHA("x")[:6] + "\n  namespace: default\n",
	}))
	if err := e.GH.Push(e.Repo, n, sha5); err != nil {
		t.Fatal(err)
	}
	e.MustRunOnce(d)
	if p := e.Row(d, n); p.Status != model.StatusFailed || !strings.Contains(p.LastError, "outside the preview's namespace") ||
		!strings.HasPrefix(p.LastError, "chart repo:deploy/chart@") {
		t.Errorf("a chart writing to namespace default: %s %q", p.Status, p.LastError)
	}
	if _, err := e.Kube.Client.CoreV1().ConfigMaps("default").Get(ctx, "escaped-"+e2e.SHA("x")[:6], metav1.GetOptions{}); err == nil {
		t.Error("the chart created an object in namespace default")
	}

	// A fork's PR (forks not allowed) reads nothing from GitHub's archives.
	fsha := e2e.SHA("fork-chart")
	e.GH.SetFiles(e.Repo, fsha, e2e.ChartFiles(t, "", "deploy/chart", nil))
	fn := e.GH.OpenPR(e.Repo, githubfake.PR{Title: "From a fork", SHA: fsha, Author: "mallory", FromFork: true})
	e.MustRunOnce(d)
	if e.GH.Downloads(e.Repo, fsha) != 0 || e.NSExists(e.NS(fn)) {
		t.Errorf("a fork's chart was fetched (%d) or deployed", e.GH.Downloads(e.Repo, fsha))
	}
}

// TestChartFromAnOCIRegistry: chart: oci://… with chart_version installs
// from a real registry with credentials from the environment, which never
// show in logs or comments; a new chart_version is an upgrade that plan
// shows first.
func TestChartFromAnOCIRegistry(t *testing.T) {
	e := e2e.New(t, "")
	const password = "oci-pa55-w0rd"
	reg := ociregistry.Start(t, "robot", password)
	ref := reg.Push(filepath.Join(e2e.RepoRoot(), "charts", "preview-app"), "charts/preview-app")
	// A second version of the chart.
	v2 := t.TempDir()
	for name, b := range e2e.ChartFiles(t, "", "", map[string]string{"Chart.yaml": "apiVersion: v2\nname: preview-app\nversion: 0.1.1\n"}) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(v2, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(v2, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reg.Push(v2, "charts/preview-app")

	e.Environ = map[string]string{"REGISTRY_USER": "robot", "REGISTRY_PASSWORD": password}
	e.SetChart("chart: " + ref + "\nchart_version: 0.1.0\nchart_plain_http: true\nchart_credentials:\n  username_env: REGISTRY_USER\n  password_env: REGISTRY_PASSWORD")
	logs := &e2e.SyncBuffer{}
	e.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d := e.Daemon(false)
	n := e.Open("OCI chart", "oci", e2e.SHA("oci"))
	e.MustRunOnce(d)
	if p := e.Row(d, n); p.Status != model.StatusReady {
		t.Fatalf("status %s: %s\n%s", p.Status, p.LastError, logs)
	}
	if rel := release(t, e, n); rel.ChartName != "preview-app" || rel.ChartVersion != "0.1.0" {
		t.Errorf("release chart %s-%s", rel.ChartName, rel.ChartVersion)
	}

	// Only chart_version changes.
	b, err := os.ReadFile(e.ConfigPath)
	if err == nil {
		err = os.WriteFile(e.ConfigPath, []byte(strings.Replace(string(b), "chart_version: 0.1.0", "chart_version: 0.1.1", 1)), 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Daemon(true).Loop.Plan(context.Background())
	if err != nil || len(res.Actions) != 1 || res.Actions[0].State != reconcile.StateDrifted {
		t.Fatalf("plan after chart_version changed: %v %+v", err, res.Actions)
	}
	d2 := e.Daemon(false)
	e.MustRunOnce(d2)
	if rel := release(t, e, n); rel.ChartVersion != "0.1.1" || rel.Revision != 2 {
		t.Errorf("after the version change: chart %s revision %d", rel.ChartVersion, rel.Revision)
	}
	for _, where := range []string{logs.String(), e.OneComment(n).Body} {
		if strings.Contains(where, password) {
			t.Errorf("the registry password is shown:\n%s", where)
		}
	}
}
