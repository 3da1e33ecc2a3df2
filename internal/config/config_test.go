package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/reconcile/model"
)

func chartDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "charts", "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "charts", "app", "Chart.yaml"), []byte("apiVersion: v2\nname: app\nversion: 0.1.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

const good = `
listen: ":9090"
interval: 30s
database_url: postgres://u:hunter2@db/previewd
github:
  token_env: GH
repositories:
  - name: acme/web
    chart: charts/app
    image: registry.example.com/acme/web
    host: "{{ .Namespace }}.preview.example.com"
    values:
      env:
        BRANCH: "{{ .PR.Branch }}"
`

func TestParseGoodAppliesDefaultsAndSecrets(t *testing.T) {
	dir := chartDir(t)
	cfg, err := Parse(strings.NewReader(good), dir, env(map[string]string{"GH": "ghp_secret"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DeployTimeout != 3*time.Minute || cfg.MaxParallelDeploys != 4 || cfg.MaxAttempts != 3 || cfg.Instance != "default" {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if cfg.GitHub.APIURL != "https://api.github.com/" {
		t.Errorf("api_url default = %q", cfg.GitHub.APIURL)
	}
	if cfg.Token.Reveal() != "ghp_secret" {
		t.Errorf("token not read from env")
	}
	if s := fmt.Sprintf("%v %+v %#v", cfg.Token, cfg, cfg); strings.Contains(s, "ghp_secret") {
		t.Errorf("token printed: %s", s)
	}
	if want := filepath.Join(dir, "charts/app"); cfg.Repositories[0].Chart != want {
		t.Errorf("chart = %q, want %q (relative to the config dir)", cfg.Repositories[0].Chart, want)
	}
}

func TestDatabaseURLFromEnvironmentWins(t *testing.T) {
	cfg, err := Parse(strings.NewReader(good), chartDir(t), env(map[string]string{"GH": "x", EnvDatabaseURL: "postgres://from-env/db"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DatabaseURL != "postgres://from-env/db" {
		t.Errorf("database_url = %q", cfg.DatabaseURL)
	}
}

func TestBadInputNamesFieldAndFix(t *testing.T) {
	cases := []struct {
		name, yaml string
		env        map[string]string
		want       []string
	}{
		{"unknown key", strings.Replace(good, "listen:", "lisen:", 1), nil, []string{"field lisen not found", "unknown keys are errors"}},
		{"unknown nested key", strings.Replace(good, "token_env: GH", "token_env: GH\n  tokn: x", 1), nil, []string{"field tokn not found"}},
		{"missing token", good, map[string]string{}, []string{"github.token_env: environment variable GH is empty"}},
		{"bad repo name", strings.Replace(good, "acme/web", "web", 1), nil, []string{`repositories[0].name: must be owner/name, got "web"`}},
		{"tagged image", strings.Replace(good, "acme/web\n    host", "acme/web:latest\n    host", 1), nil, []string{"repositories[0].image: must not carry a tag"}},
		{"missing chart", strings.Replace(good, "charts/app", "charts/nope", 1), nil, []string{"repositories[0].chart: no Chart.yaml in"}},
		{"bad host template", strings.Replace(good, "{{ .Namespace }}", "{{ .Nope }}", 1), nil, []string{"repositories[0].host: bad template"}},
		{"bad value template", strings.Replace(good, "{{ .PR.Branch }}", "{{ .PR.Nope }}", 1), nil, []string{"repositories[0].values.env.BRANCH: bad template"}},
		{"interval too short", strings.Replace(good, "30s", "10ms", 1), nil, []string{"interval: must be at least 1s"}},
		{"bad duration", strings.Replace(good, "30s", "thirty", 1), nil, []string{"parsing YAML"}},
		{"no database", strings.Replace(good, "database_url: postgres://u:hunter2@db/previewd", "", 1), nil, []string{"database_url: is empty: set it or the environment variable PREVIEWD_DATABASE_URL"}},
		{"both auths", strings.Replace(good, "token_env: GH", "token_env: GH\n  app:\n    app_id: 1", 1), nil, []string{"github: set either token_env or app"}},
		{"app incomplete", strings.Replace(good, "token_env: GH", "app:\n    app_id: 1", 1), nil, []string{"github.app.installation_id", "github.app.private_key_file"}},
		{"duplicate repo", good + `  - name: ACME/web
    chart: charts/app
    image: registry.example.com/acme/web
`, nil, []string{"repositories[1].name: \"ACME/web\" is listed twice"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.env
			if e == nil {
				e = map[string]string{"GH": "x"}
			}
			_, err := Parse(strings.NewReader(tc.yaml), chartDir(t), env(e))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the database password: %v", err)
			}
		})
	}
}

func TestFieldErrorsAreTyped(t *testing.T) {
	_, err := Parse(strings.NewReader(strings.Replace(good, "acme/web", "web", 1)), chartDir(t), env(map[string]string{"GH": "x"}))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "repositories[0].name" {
		t.Fatalf("want *FieldError for repositories[0].name, got %v", err)
	}
}

func TestImageWait(t *testing.T) {
	parse := func(extra string) (*Config, error) {
		return Parse(strings.NewReader(good+extra), chartDir(t), env(map[string]string{"GH": "x"}))
	}
	cfg, err := parse("")
	if err != nil || *cfg.Repositories[0].ImageWait != DefaultImageWait {
		t.Fatalf("default image_wait: %v %v", cfg, err)
	}
	cfg, err = parse("    image_wait: 0s\n")
	if err != nil || *cfg.Repositories[0].ImageWait != 0 {
		t.Fatalf("image_wait: 0s (off) must stay 0: %v", err)
	}
	if _, err := parse("    image_wait: -1m\n"); err == nil || !strings.Contains(err.Error(), "repositories[0].image_wait") {
		t.Errorf("negative image_wait: %v", err)
	}
	if ImageRecheck(0) != 15*time.Second || ImageRecheck(40*time.Second) != 40*time.Second || ImageRecheck(time.Hour) != 2*time.Minute {
		t.Error("ImageRecheck is not 15 s, doubling, at most 2 m")
	}
}

// TestChartSources: chart: is a directory, oci://host/path/chart with
// chart_version (and credentials read from the environment, never
// printed), or repo:path/in/repo; each mistake names its key.
func TestChartSources(t *testing.T) {
	parse := func(chart string, extra string, e map[string]string) (*Config, error) {
		y := strings.Replace(good, "chart: charts/app", "chart: "+chart+extra, 1)
		if e == nil {
			e = map[string]string{"GH": "x"}
		}
		return Parse(strings.NewReader(y), chartDir(t), env(e))
	}
	cfg, err := parse("oci://registry.example.com/charts/web", "\n    chart_version: 1.4.2\n    chart_credentials:\n      username_env: REG_USER\n      password_env: REG_PASS",
		map[string]string{"GH": "x", "REG_USER": "robot", "REG_PASS": "s3cr3t-registry"})
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Repositories[0]
	if r.CompiledChart.Kind != model.ChartOCI || r.CompiledChart.Location != "registry.example.com/charts/web" || r.CompiledChart.Version != "1.4.2" {
		t.Errorf("oci chart = %+v", r.CompiledChart)
	}
	if r.Chart != "oci://registry.example.com/charts/web" {
		t.Errorf("an oci:// chart was resolved as a path: %q", r.Chart)
	}
	if r.RegistryUsername != "robot" || r.RegistryPassword.Reveal() != "s3cr3t-registry" {
		t.Errorf("credentials not read from the environment")
	}
	if s := fmt.Sprintf("%v %+v %#v", r, cfg, cfg); strings.Contains(s, "s3cr3t-registry") {
		t.Errorf("registry password printed")
	}
	cfg, err = parse("repo:deploy/chart/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Repositories[0].CompiledChart; c.Kind != model.ChartRepo || c.Location != "deploy/chart" {
		t.Errorf("repo chart = %+v", c)
	}
	if cfg, err = parse("charts/app", "", nil); err != nil || cfg.Repositories[0].CompiledChart.Kind != model.ChartDir || !filepath.IsAbs(cfg.Repositories[0].Chart) {
		t.Errorf("directory chart: %+v %v", cfg.Repositories[0].CompiledChart, err)
	}

	bad := []struct {
		name, chart, extra string
		env                map[string]string
		want               string
	}{
		{"oci without version", "oci://registry.example.com/charts/web", "", nil, "repositories[0].chart_version: an OCI chart needs chart_version"},
		{"oci with tag", "oci://registry.example.com/charts/web:1.0.0", "\n    chart_version: 1.0.0", nil, "repositories[0].chart: must not carry a tag"},
		{"oci without path", "oci://registry.example.com", "\n    chart_version: 1.0.0", nil, "repositories[0].chart: must be oci://host/path/chart"},
		{"version on a directory", "charts/app", "\n    chart_version: 1.0.0", nil, "repositories[0].chart_version: chart_version is for oci:// charts only"},
		{"repo path escapes", "repo:../other", "", nil, "repositories[0].chart: must be repo:path/in/repo"},
		{"credentials on repo chart", "repo:deploy/chart", "\n    chart_credentials:\n      username_env: U\n      password_env: P", nil, "repositories[0].chart_credentials: is for oci:// charts only"},
		{"plain http on a directory", "charts/app", "\n    chart_plain_http: true", nil, "repositories[0].chart_plain_http: is for oci:// charts only"},
		{"repo chart with forks", "repo:deploy/chart", "\n    allow_forks: true", nil, "repositories[0].chart: a repo: chart is rendered with previewd's own identity, so it is not allowed with allow_forks: true"},
		{"password variable empty", "oci://registry.example.com/charts/web", "\n    chart_version: 1.0.0\n    chart_credentials:\n      username_env: U\n      password_env: P",
			map[string]string{"GH": "x", "U": "robot"}, "repositories[0].chart_credentials.password_env: environment variable P is empty"},
		{"half credentials", "oci://registry.example.com/charts/web", "\n    chart_version: 1.0.0\n    chart_credentials:\n      username_env: U", nil, "repositories[0].chart_credentials: needs both username_env and password_env"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(tc.chart, tc.extra, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRepositoryNamesAreCaseInsensitive: GitHub's names are; previewd's
// identity of a repository is its name in lower case.
func TestRepositoryNamesAreCaseInsensitive(t *testing.T) {
	cfg, err := Parse(strings.NewReader(strings.Replace(good, "acme/web", "Acme/Web", 1)), chartDir(t), env(map[string]string{"GH": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Repositories[0].Name != "acme/web" {
		t.Errorf("name = %q, want acme/web", cfg.Repositories[0].Name)
	}
}

// TestFence: the fence's defaults, a repository's overrides (merged over
// the defaults), and each mistake named by its field.
func TestFence(t *testing.T) {
	parse := func(extra string) (*Config, error) {
		y := strings.Replace(good, "chart: charts/app", "chart: charts/app"+extra, 1)
		return Parse(strings.NewReader(y), chartDir(t), env(map[string]string{"GH": "x"}))
	}
	cfg, err := parse("")
	if err != nil {
		t.Fatal(err)
	}
	f := cfg.Repositories[0].ModelFence()
	if f.PodSecurity != "restricted" || f.IngressFrom["kubernetes.io/metadata.name"] != "ingress-nginx" || len(f.EgressAllow) != 0 ||
		f.Quota["pods"] != "10" || f.Limits["memory"] != "512Mi" || f.Requests["cpu"] != "100m" || f.CopySecretsFrom != "" {
		t.Errorf("default fence = %+v", f)
	}
	cfg, err = parse("\n    fence:\n      pod_security: baseline\n      egress_allow: [10.0.0.0/8]\n      quota: {pods: \"3\"}\n    copy_secrets: {from: shared, names: [regcred]}")
	if err != nil {
		t.Fatal(err)
	}
	f = cfg.Repositories[0].ModelFence()
	if f.PodSecurity != "baseline" || f.EgressAllow[0] != "10.0.0.0/8" || f.Quota["pods"] != "3" || f.Quota["limits.cpu"] != "2" ||
		f.CopySecretsFrom != "shared" || f.CopySecrets[0] != "regcred" {
		t.Errorf("fence = %+v", f)
	}
	for _, c := range []struct{ extra, want string }{
		{"\n    fence: {pod_security: privileged}", "repositories[0].fence.pod_security: must be restricted or baseline"},
		{"\n    fence: {egress_allow: [10.0.0.1]}", "repositories[0].fence.egress_allow[0]: must be a CIDR"},
		{"\n    fence: {quota: {pods: lots}}", "repositories[0].fence.quota.pods: must be a quantity"},
		{"\n    fence: {ingress_from: {\"bad key!\": x}}", "repositories[0].fence.ingress_from"},
		{"\n    copy_secrets: {from: Shared_NS, names: [a]}", "repositories[0].copy_secrets.from: must be the namespace"},
		{"\n    copy_secrets: {from: shared}", "repositories[0].copy_secrets.names: is empty"},
	} {
		if _, err := parse(c.extra); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.extra, err, c.want)
		}
	}
}
