// Package alertcheck_test checks previewd's operational artefacts with the
// real tools: the alert rules and their unit tests with promtool (pinned in
// deploy/tools, built by deploy/tools/build-promtool.sh), the metrics that a
// real previewd exports with `promtool check metrics`, and the Grafana
// dashboard and runbook links for consistency with both.
package alertcheck_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/previewd/previewd/internal/harness/e2e"
)

func TestMain(m *testing.M) { e2e.Main(m) }

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

var (
	rulesFile     = filepath.Join(repoRoot(), "deploy", "alerts", "previewd-rules.yaml")
	rulesTestFile = filepath.Join(repoRoot(), "deploy", "alerts", "previewd-rules.test.yaml")
	dashboardFile = filepath.Join(repoRoot(), "deploy", "dashboards", "previewd.json")
	operationsDoc = filepath.Join(repoRoot(), "docs", "operations.md")
	readme        = filepath.Join(repoRoot(), "README.md")
)

const runbookPrefix = "https://github.com/previewd/previewd/blob/main/docs/operations.md#"

var promtoolOnce struct {
	sync.Once
	path string
	err  error
}

// promtool builds (once, cached outside the repository) and returns the
// pinned promtool. $PREVIEWD_PROMTOOL names a binary to use instead.
func promtool(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs promtool: deploy/tools/build-promtool.sh builds it from the Go module proxy (minutes when cold); run without -short, or `make promtool` first")
	}
	promtoolOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot(), "deploy", "tools", "build-promtool.sh"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			promtoolOnce.err = fmt.Errorf("deploy/tools/build-promtool.sh: %v\n%s", err, stderr.String())
			return
		}
		promtoolOnce.path = strings.TrimSpace(string(out))
	})
	if promtoolOnce.err != nil {
		t.Fatal(promtoolOnce.err)
	}
	return promtoolOnce.path
}

// run runs promtool and returns its combined output; a non-zero exit fails
// the test with that output.
func run(t *testing.T, stdin io.Reader, args ...string) string {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = filepath.Join(repoRoot(), "deploy", "alerts")
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPromtoolCheckRules(t *testing.T) {
	out := run(t, nil, "check", "rules", "--lint=all", "--lint-fatal", rulesFile)
	t.Log(out)
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules did not report SUCCESS:\n%s", out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	out := run(t, nil, "test", "rules", rulesTestFile)
	t.Log(out)
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules did not report SUCCESS:\n%s", out)
	}
}

type rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

func readRules(t *testing.T) []rule {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(raw, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// slug is GitHub's heading anchor: lower case, spaces to '-', punctuation
// other than '-' and '_' dropped.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func docAnchors(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	inFence := false
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if !inFence && strings.HasPrefix(line, "#") {
			anchors[slug(strings.TrimLeft(line, "#"))] = true
		}
	}
	return anchors
}

// TestAlertsAreDocumented: every alert has a severity, summary, description
// and a runbook_url whose anchor is a heading of docs/operations.md, and the
// unit tests have a firing and a not-firing case for it.
func TestAlertsAreDocumented(t *testing.T) {
	rules := readRules(t)
	if len(rules) == 0 {
		t.Fatal("no rules")
	}
	anchors := docAnchors(t)

	raw, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `json:"alertname"`
				ExpAlerts []map[string]any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(raw, &tf); err != nil {
		t.Fatal(err)
	}
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tf.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}

	want := []string{"PreviewdDeployStuck", "PreviewdReconcileErrors", "PreviewdNoSuccessfulSync",
		"PreviewdRepositoryUnreadable", "PreviewdGitHubRateLimitLow", "PreviewdNamespaceDeletionFailing", "PreviewdNamespaceDeletionStuck", "PreviewdDown"}
	var got []string
	for _, r := range rules {
		got = append(got, r.Alert)
		if r.Alert == "" {
			t.Errorf("recording rule or unnamed rule %q: this file holds alerts only", r.Expr)
			continue
		}
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
		}
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[k]) == "" {
				t.Errorf("%s: no %s annotation", r.Alert, k)
			}
		}
		u := r.Annotations["runbook_url"]
		anchor, ok := strings.CutPrefix(u, runbookPrefix)
		switch {
		case !ok:
			t.Errorf("%s: runbook_url %q does not start with %s", r.Alert, u, runbookPrefix)
		case anchor != strings.ToLower(r.Alert):
			t.Errorf("%s: runbook anchor %q, want %q", r.Alert, anchor, strings.ToLower(r.Alert))
		case !anchors[anchor]:
			t.Errorf("%s: docs/operations.md has no heading with anchor #%s", r.Alert, anchor)
		}
		if !firing[r.Alert] {
			t.Errorf("%s: %s has no case where it fires", r.Alert, filepath.Base(rulesTestFile))
		}
		if !quiet[r.Alert] {
			t.Errorf("%s: %s has no case where it must not fire", r.Alert, filepath.Base(rulesTestFile))
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("alerts = %v, want %v", got, want)
	}
}

var metricRef = regexp.MustCompile(`\bpreviewd_[a-z0-9_]+`)

// metricBase strips a histogram's series suffixes.
func metricBase(name string) string {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, s); ok && strings.HasSuffix(b, "_seconds") {
			return b
		}
	}
	return name
}

// referencedMetrics returns the previewd_* metric families the rules and the
// dashboard query.
func referencedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	refs := map[string][]string{}
	for _, f := range []string{rulesFile, dashboardFile} {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range metricRef.FindAllString(string(raw), -1) {
			b := metricBase(m)
			if !slices.Contains(refs[b], filepath.Base(f)) {
				refs[b] = append(refs[b], filepath.Base(f))
			}
		}
	}
	return refs
}

// TestReferencedMetricsAreDocumented: the rules and the dashboard query only
// metrics that README.md's "Metrics and health" table promises (or the
// leader gauge). TestScrapeLint checks them against a real scrape too.
func TestReferencedMetricsAreDocumented(t *testing.T) {
	raw, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	for m, files := range referencedMetrics(t) {
		if !strings.Contains(doc, "`"+m) && m != "previewd_leader" {
			t.Errorf("%v query %s, which README.md does not document", files, m)
		}
	}
}

// TestDashboard: valid JSON, a Prometheus datasource variable that every
// panel and query uses, and the panels the operations guide refers to.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string `json:"uid"`
		Title      string `json:"title"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title      string          `json:"title"`
			Type       string          `json:"type"`
			Datasource json.RawMessage `json:"datasource"`
			Targets    []struct {
				Expr       string          `json:"expr"`
				Datasource json.RawMessage `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if !json.Valid(raw) {
		var v any
		t.Fatalf("%s is not valid JSON: %v", dashboardFile, json.Unmarshal(raw, &v))
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s does not have the shape of a Grafana dashboard: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard needs uid and title: %q %q", d.UID, d.Title)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && string(v.Query) == `"prometheus"` {
			hasDS = true
		}
	}
	if !hasDS {
		t.Error("no templating variable `datasource` of type datasource (query prometheus)")
	}
	uses := func(ds json.RawMessage) bool { return bytes.Contains(ds, []byte(`${datasource}`)) }
	var titles []string
	all := ""
	for _, p := range d.Panels {
		titles = append(titles, p.Title)
		if p.Type == "row" || p.Type == "text" {
			continue
		}
		if !uses(p.Datasource) {
			t.Errorf("panel %q does not use the ${datasource} variable: %s", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		for _, q := range p.Targets {
			if strings.TrimSpace(q.Expr) == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			if len(q.Datasource) > 0 && !uses(q.Datasource) {
				t.Errorf("panel %q query %q does not use ${datasource}", p.Title, q.Expr)
			}
			all += q.Expr + "\n"
		}
	}
	for _, want := range []string{
		`histogram_quantile(0.5, sum by (le) (rate(previewd_deploy_latency_seconds_bucket`,
		`histogram_quantile(0.95, sum by (le) (rate(previewd_deploy_latency_seconds_bucket`,
		`previewd_previews`,
		`previewd_deploys_in_flight`,
		`previewd_oldest_in_flight_deploy_age_seconds`,
		`previewd_github_requests_total`,
		`previewd_github_rate_limit_remaining`,
		`previewd_reconcile_duration_seconds_bucket`,
		`previewd_reconcile_cycles_total{`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no dashboard query contains %q", want)
		}
	}
	t.Logf("panels: %q", titles)
}

// TestScrapeLint runs the real daemon (one cycle that deploys a PR, so the
// histograms carry observations), scrapes /metrics as Prometheus would and
// lints it with `promtool check metrics`. Every metric family the rules and
// the dashboard query must be in the scrape.
func TestScrapeLint(t *testing.T) {
	pt := promtool(t)
	e := e2e.New(t, "")
	d := e.Daemon(false)
	n := e.Open("Metrics", "feature/metrics", e2e.SHA("metrics"))
	e.MustRunOnce(d)
	if !e.NSExists(e.NS(n)) {
		t.Fatalf("namespace %s not created", e.NS(n))
	}

	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}

	cmd := exec.Command(pt, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics reported problems (exit: %v):\n%s", err, out)
	}

	families := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			families[strings.Fields(name)[0]] = true
		}
	}
	for m, files := range referencedMetrics(t) {
		if !families[m] {
			t.Errorf("%v query %s, which previewd does not export", files, m)
		}
	}
	var ours []string
	for f := range families {
		if strings.HasPrefix(f, "previewd_") {
			ours = append(ours, f)
		}
	}
	sort.Strings(ours)
	t.Logf("previewd exports %d families of its own: %v", len(ours), ours)
}
