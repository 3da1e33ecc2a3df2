// Package e2e is the shared harness of previewd's end-to-end tests: one
// fake GitHub, one database, one repository and one instance label per test
// on the shared local control plane.
package e2e

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/github/githubfake"
	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/harness/leak"
	"github.com/previewd/previewd/internal/harness/pgtest"
	"github.com/previewd/previewd/internal/harness/testbed"
	"github.com/previewd/previewd/internal/wire"
	"github.com/previewd/previewd/kube"
	"github.com/previewd/previewd/reconcile/model"
	"github.com/previewd/previewd/state"
)

// BotLogin is the login of previewd's token in the fake.
const BotLogin = "previewd[bot]"

// Env is one test's world: its own fake GitHub, database, repository and
// instance label on the shared control plane.
type Env struct {
	T          *testing.T
	GH         *githubfake.Server
	Kube       *testbed.Cluster
	Repo       string
	Image      string
	DBURL      string
	ConfigPath string
	Log        *slog.Logger
	// Listen is the daemon's /metrics address (a free loopback port).
	Listen string
	// Environ is the daemon's environment besides the GitHub token.
	Environ map[string]string
	// HTTPTimeout, if set, bounds each GitHub request of Daemon's
	// daemons (the client's default is 30 s).
	HTTPTimeout time.Duration
	id          string
}

// SHA makes a 40-hex commit id from a word.
func SHA(s string) string {
	h := sha1.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// New builds a test environment; gh, if given, configures the fake GitHub.
func New(t *testing.T, image string, gh ...githubfake.Options) *Env {
	t.Helper()
	c := testbed.Kube(t)
	e := &Env{T: t, Kube: c, Image: image}
	// Unique per run: a re-run against a long-lived control plane (make
	// cluster-up) never meets the namespaces of an earlier run.
	id := SHA(fmt.Sprint(t.Name(), time.Now().UnixNano()))[:6]
	e.id = id
	t.Cleanup(func() {
		// Delete this test's namespaces without waiting for them.
		ctx := context.Background()
		nss, err := c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: kube.LabelInstance + "=t-" + id})
		if err != nil {
			return
		}
		for _, ns := range nss.Items {
			_ = c.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
		}
	})
	e.Repo = "acme/web-" + id
	var ghOpts githubfake.Options
	if len(gh) > 0 {
		ghOpts = gh[0]
	}
	e.GH = githubfake.NewTestServer(t, ghOpts)
	e.GH.AddTokenAs("tok-"+id, BotLogin, 5000)
	e.GH.AddRepo(e.Repo)
	e.DBURL = pgtest.URL(t)
	if e.Image == "" {
		e.Image = "registry.example.com/acme/web"
	}
	dir := t.TempDir()
	e.ConfigPath = filepath.Join(dir, "previewd.yaml")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.Listen = l.Addr().String()
	_ = l.Close()
	cfg := fmt.Sprintf(`interval: 1s
listen: %q
database_url: %q
instance: t-%s
github:
  api_url: %q
  token_env: TEST_GH_TOKEN
kubernetes:
  kubeconfig: %q
deploy_timeout: 60s
max_parallel_deploys: 4
repositories:
  - name: %s
    chart: %q
    image: %s
    host: "{{ .Namespace }}.preview.test"
    values:
      env:
        GREETING: "hello {{ .PR.Branch }}"
`, e.Listen, e.DBURL, id, e.GH.APIURL(), c.Kubeconfig, e.Repo, filepath.Join(RepoRoot(), "charts", "preview-app"), e.Image)
	if err := os.WriteFile(e.ConfigPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// AddRepoConfig appends lines (YAML keys of the repository, unindented) to
// the test's repository in the configuration file.
func (e *Env) AddRepoConfig(lines string) {
	e.T.Helper()
	f, err := os.OpenFile(e.ConfigPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		e.T.Fatal(err)
	}
	defer f.Close()
	for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
		if _, err := fmt.Fprintf(f, "    %s\n", l); err != nil {
			e.T.Fatal(err)
		}
	}
}

func (e *Env) Getenv(k string) string {
	if k == "TEST_GH_TOKEN" {
		return "tok-" + e.id
	}
	return e.Environ[k]
}

// SetChart replaces the test repository's chart: line with lines (YAML
// keys of the repository, unindented: chart: and its companions).
func (e *Env) SetChart(lines string) {
	e.T.Helper()
	b, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		e.T.Fatal(err)
	}
	var out []string
	replaced := false
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "    chart: ") && !replaced {
			replaced = true
			for _, nl := range strings.Split(strings.TrimSpace(lines), "\n") {
				out = append(out, "    "+nl)
			}
			continue
		}
		out = append(out, l)
	}
	if !replaced {
		e.T.Fatal("the test configuration has no chart: line")
	}
	if err := os.WriteFile(e.ConfigPath, []byte(strings.Join(out, "\n")), 0o600); err != nil {
		e.T.Fatal(err)
	}
}

// ChartFiles are the files of a chart directory (charts/preview-app when
// dir is ""), by path under prefix, with edits applied (an empty edit
// removes the file): a commit's tree for repo: charts.
func ChartFiles(t *testing.T, dir, prefix string, edits map[string]string) map[string][]byte {
	t.Helper()
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "charts", "preview-app")
	}
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[path.Join(prefix, filepath.ToSlash(rel))] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range edits {
		if v == "" {
			delete(files, path.Join(prefix, k))
		} else {
			files[path.Join(prefix, k)] = []byte(v)
		}
	}
	return files
}

func (e *Env) Config() *config.Config {
	e.T.Helper()
	cfg, err := config.Load(e.ConfigPath, e.Getenv)
	if err != nil {
		e.T.Fatal(err)
	}
	return cfg
}

func (e *Env) Daemon(readOnly bool) *wire.Daemon {
	e.T.Helper()
	zero := time.Duration(0)
	d, err := wire.Build(context.Background(), e.Config(), wire.Options{ReadOnly: readOnly, Log: e.Log,
		Backoff:      func(int) time.Duration { return 200 * time.Millisecond },
		ImageRecheck: func(time.Duration) time.Duration { return 300 * time.Millisecond }, MutationSpacing: &zero,
		HTTPTimeout: e.HTTPTimeout})
	if err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(d.Close)
	return d
}

func (e *Env) RunOnce(d *wire.Daemon) error {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	return d.Loop.RunOnce(ctx)
}

func (e *Env) MustRunOnce(d *wire.Daemon) {
	e.T.Helper()
	if err := e.RunOnce(d); err != nil {
		e.T.Fatalf("cycle failed: %v", err)
	}
}

func (e *Env) Open(title, branch, sha string) int {
	return e.GH.OpenPR(e.Repo, githubfake.PR{Title: title, Branch: branch, SHA: sha, Author: "octocat"})
}

func (e *Env) NS(n int) string { return kube.NamespaceName(e.Repo, n) }

// Release reads PR n's Helm release; its records are in the test's
// PostgreSQL (state.HelmReleases), as the daemon keeps them.
func (e *Env) Release(n int) (model.Release, error) {
	ctx := context.Background()
	st, err := state.Open(ctx, e.DBURL)
	if err != nil {
		return model.Release{}, err
	}
	defer st.Close()
	return (&kube.Releases{RESTConfig: e.Kube.RESTConfig, Store: st.HelmReleases()}).Get(ctx, e.NS(n), kube.ReleaseName)
}

func (e *Env) BotComments(n int) []githubfake.Comment {
	var out []githubfake.Comment
	for _, c := range e.GH.Comments(e.Repo, n) {
		if c.Login == BotLogin {
			out = append(out, c)
		}
	}
	return out
}

func (e *Env) OneComment(n int) githubfake.Comment {
	e.T.Helper()
	cs := e.BotComments(n)
	if len(cs) != 1 {
		e.T.Fatalf("PR #%d has %d bot comments, want exactly 1: %+v", n, len(cs), cs)
	}
	return cs[0]
}

func (e *Env) DeploymentImage(n int) string {
	e.T.Helper()
	ds, err := e.Kube.Client.AppsV1().Deployments(e.NS(n)).List(context.Background(), metav1.ListOptions{})
	if err != nil || len(ds.Items) != 1 {
		e.T.Fatalf("deployments in %s: %v (%d)", e.NS(n), err, len(ds.Items))
	}
	d := ds.Items[0]
	if d.Status.ReadyReplicas != 1 || d.Status.UpdatedReplicas != 1 {
		e.T.Errorf("deployment %s not ready: %+v", d.Name, d.Status)
	}
	return d.Spec.Template.Spec.Containers[0].Image
}

func (e *Env) NSExists(name string) bool {
	_, err := e.Kube.Client.CoreV1().Namespaces().Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		e.T.Fatal(err)
	}
	return true
}

func (e *Env) Row(d *wire.Daemon, n int) model.Preview {
	e.T.Helper()
	p, ok, err := d.Store.Get(context.Background(), model.Key{Repo: e.Repo, Number: n})
	if err != nil || !ok {
		e.T.Fatalf("preview row %s#%d: ok=%v err=%v", e.Repo, n, ok, err)
	}
	return p
}

// Token is the fake GitHub token previewd uses; child processes get it as
// $TEST_GH_TOKEN.
func (e *Env) Token() string { return e.Getenv("TEST_GH_TOKEN") }

// Main runs a package's end-to-end tests, then stops the control plane and
// the throwaway PostgreSQL server its tests started (if any), keeping the
// control plane's logs when a test failed. Use it as TestMain.
func Main(m *testing.M) {
	kube.UseFieldManager()
	code := m.Run()
	testbed.StopShared(code)
	if err := pgtest.Shutdown(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		if code == 0 {
			code = 1
		}
	}
	// After the control plane's and PostgreSQL's process watchers ended.
	os.Exit(leak.After(code))
}
