package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/harness/testbed"
)

// TestDemo runs the whole demo on the real parts: a control plane (its
// own, or the one named by $PREVIEWD_TEST_KUBECONFIG), PostgreSQL, the
// GitHub fake and a freshly built previewd.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a control plane, PostgreSQL and previewd (run without -short)")
	}
	o := Options{
		Kubeconfig:       os.Getenv(testbed.EnvKubeconfig),
		AdminDatabaseURL: os.Getenv("PREVIEWD_TEST_DATABASE_URL"), // as internal/pgtest
		Timeout:          5 * time.Minute,
	}
	if o.Kubeconfig != "" {
		// A shared control plane: keep clear of other tests' namespaces.
		var b [3]byte
		_, _ = rand.Read(b[:])
		o.Repo = "acme/shop-" + hex.EncodeToString(b[:])
		o.Instance = "demo-" + hex.EncodeToString(b[:])
	}
	var out bytes.Buffer
	o.Out = &out
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	res, err := Run(ctx, o)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("demo failed: %v", err)
	}
	if len(res.Ready) != 3 {
		t.Errorf("Ready = %v, want all 3 pull requests", res.Ready)
	}
	if res.Redeploy <= 0 || res.Deletion <= 0 {
		t.Errorf("Redeploy = %s, Deletion = %s; want both measured", res.Redeploy, res.Deletion)
	}
	for _, want := range []string{
		"No changes",
		"feature/checkout,v2",
		"Preview ready",
		"Preview removed",
		"previewd_github_requests_total",
		"not_modified=",
		"Stopped previewd with SIGTERM: exit status 0",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if _, err := os.Stat(res.WorkDir); err == nil {
		_ = os.RemoveAll(res.WorkDir)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP previewd_github_requests_total GitHub API requests.
# TYPE previewd_github_requests_total counter
previewd_github_requests_total{outcome="not_modified"} 42
previewd_github_requests_total{outcome="ok"} 7
previewd_deploy_latency_seconds_sum 31.25
previewd_deploy_latency_seconds_count 4
weird{a="x\"y",b="c,d=e"} +Inf 1712345678
`
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if v := m.Value("previewd_github_requests_total", "outcome", "not_modified"); v != 42 {
		t.Errorf("not_modified = %v, want 42", v)
	}
	if v := m.Value("previewd_deploy_latency_seconds_sum"); v != 31.25 {
		t.Errorf("sum = %v", v)
	}
	if got := m.labels("previewd_github_requests_total", "outcome", "ok", "not_modified"); got != "ok=7 not_modified=42" {
		t.Errorf("labels = %q", got)
	}
	if _, ok := m.Get("weird", "a", `x"y`, "b", "c,d=e"); !ok {
		t.Errorf("escaped label values not parsed: %+v", m.Metrics[len(m.Metrics)-1])
	}
	if _, ok := m.Get("absent"); ok {
		t.Error("absent series found")
	}
	if _, err := parseMetrics(strings.NewReader("broken{a=\"x\" 1\n")); err == nil {
		t.Error("unterminated labels accepted")
	}
}

func TestGitHubView(t *testing.T) {
	body := "<!-- previewd:preview acme/shop#1 -->\n### ✅ Preview ready\n\n| | |\n|---|---|\n" +
		"| URL | http://pr\\-shop\\-1.preview.local |\n| Commit | `abc1234` |\n| Branch | feature/checkout,v2 |\n\n" +
		"**Error:** boom\n\n<details><summary>Last log lines</summary>\n\n```text\nline `one`\n```\n</details>\n\n" +
		"<sub>Maintained by previewd; this comment is updated in place.</sub>\n"
	got := strings.Join(githubView(body), "\n")
	want := strings.Join([]string{
		"✅ Preview ready",
		"",
		"URL        http://pr-shop-1.preview.local",
		"Commit     abc1234",
		"Branch     feature/checkout,v2",
		"",
		"Error: boom",
		"",
		"▸ Last log lines",
		"",
		"    line `one`",
		"",
		"Maintained by previewd; this comment is updated in place.",
	}, "\n")
	if got != want {
		t.Errorf("githubView:\n%s\n--- want ---\n%s", got, want)
	}
}

func TestSplitImage(t *testing.T) {
	for _, c := range []struct{ in, repo, tag string }{
		{"registry.example.com/acme/shop:0123abc", "registry.example.com/acme/shop", "0123abc"},
		{"localhost:5000/shop", "localhost:5000/shop", ""},
		{"nginx", "nginx", ""},
	} {
		if r, tag := splitImage(c.in); r != c.repo || tag != c.tag {
			t.Errorf("splitImage(%q) = %q, %q", c.in, r, tag)
		}
	}
}

func TestModulePath(t *testing.T) {
	if got := modulePath([]byte("// x\nmodule github.com/previewd/previewd\n\ngo 1.26.0\n")); got != ModulePath {
		t.Errorf("modulePath = %q", got)
	}
	root, err := FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root + "/charts/preview-app/Chart.yaml"); err != nil {
		t.Errorf("FindRoot = %s without the chart: %v", root, err)
	}
}
